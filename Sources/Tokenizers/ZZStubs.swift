import Foundation
public protocol Tokenizer: Sendable { func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int?) throws -> Encoding }
public func loadTokenizer(directory: URL) throws -> any Tokenizer { fatalError() }
