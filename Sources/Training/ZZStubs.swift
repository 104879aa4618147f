// TEMPORARY compile stubs (removed at merge).
import Foundation
public struct ColumnOptions: Sendable { public var text = "text"; public var textPair: String? = nil; public var label = "label"
  public init(text: String = "text", textPair: String? = nil, label: String = "label") { self.text = text; self.textPair = textPair; self.label = label } }
public struct LabelSet: Sendable, Equatable { public let names: [String]; public static func fromFile(_ url: URL) throws -> LabelSet { fatalError() } }
public struct Example: Sendable { public var text: String; public var textPair: String?; public var label: Int?; public var line: Int }
public struct TextDataset: Sendable { public let url: URL; public let examples: [Example]; public let fingerprint: String }
public enum DataLoader {
  public static func loadLabeled(_ url: URL, columns: ColumnOptions, labels: LabelSet?) throws -> (TextDataset, LabelSet) { fatalError() }
  public static func loadTexts(_ url: URL, columns: ColumnOptions) throws -> TextDataset { fatalError() }
  public static func split(_ ds: TextDataset, validationFraction: Double, seed: UInt64) throws -> (train: TextDataset, validation: TextDataset) { fatalError() }
}
public struct ClassificationMetrics { public init(confusion: [[Int64]], labels: [String]) {}; public func asDictionary(prefix: String) -> [String: Any] { [:] } }
