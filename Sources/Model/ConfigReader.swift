// ConfigReader: typed reads of config.json fields with one error style (the file and the field named), shared by
// every model family's config (ModelConfig, GPT2Config): integers within the sizes a model can have, numbers, and the
// label set (id2label, or num_labels alone) that every Hugging Face config spells the same way.
// Deliberately not here: which fields a family has (its config type decides), defaults of transformers' classes.
import Foundation

public struct ConfigReader {
    public let json: [String: Any]
    public let path: String
    /// A hint appended to "missing field" errors (e.g. "(GPT-2 config.json)").
    public var missingHint = ""

    public init(json: [String: Any], path: String, missingHint: String = "") {
        self.json = json; self.path = path; self.missingHint = missingHint
    }

    /// The largest size any dimension may have: far above every real model, and small enough that products of two
    /// sizes cannot overflow (a corrupt or hostile config is refused here, not by running out of memory).
    public static let maxDimension = 1 << 24

    /// An integer field, required; within 0...maxDimension unless `allowNegative`.
    public func int(_ key: String) throws -> Int {
        guard let v = try optionalInt(key) else {
            throw ConfigError(path: path, "missing field '\(key)'" + (missingHint.isEmpty ? "" : " \(missingHint)"))
        }
        return v
    }

    /// An integer field; nil when absent or null.
    public func optionalInt(_ key: String, allowNegative: Bool = false) throws -> Int? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        // (No `is Bool` test: on Linux JSONSerialization's numbers 0 and 1 also answer `is Bool`.)
        guard let n = v as? NSNumber, !(v is String), n.doubleValue == n.doubleValue.rounded() else {
            throw ConfigError(path: path, "field '\(key)' must be an integer, found \(v)")
        }
        let d = n.doubleValue
        guard d <= Double(Self.maxDimension), allowNegative ? d >= -Double(Self.maxDimension) : d >= 0 else {
            throw ConfigError(path: path, "field '\(key)' is \(v), outside \(allowNegative ? -Self.maxDimension : 0)...\(Self.maxDimension); the config.json is corrupt")
        }
        return Int(d)
    }

    /// A number field, `def` when absent or null (required when `def` is nil).
    public func double(_ key: String, default def: Double? = nil) throws -> Double {
        guard let v = try optionalDouble(key) else {
            if let def { return def }
            throw ConfigError(path: path, "missing field '\(key)'")
        }
        return v
    }

    /// A finite number field; nil when absent or null.
    public func optionalDouble(_ key: String) throws -> Double? {
        guard let v = json[key], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber, !(v is String), n.doubleValue.isFinite else {
            throw ConfigError(path: path, "field '\(key)' must be a number, found \(v)")
        }
        return n.doubleValue
    }

    /// A probability field (dropout rates): a number in [0, 1).
    public func probability(_ key: String, default def: Double) throws -> Double {
        let p = try double(key, default: def)
        guard p >= 0 && p < 1 else { throw ConfigError(path: path, "field '\(key)' is \(p); a dropout probability must be in [0, 1)") }
        return p
    }

    /// Class names by id: id2label with string keys "0".."n-1", else num_labels alone (LABEL_k), else none.
    public func labels() throws -> [String] {
        if let raw = json["id2label"], !(raw is NSNull) {
            guard let m = raw as? [String: Any] else {
                throw ConfigError(path: path, "id2label must be an object mapping \"0\"..\"n-1\" to names, found \(raw)")
            }
            if !m.isEmpty {
                var names = [String](repeating: "", count: m.count)
                for (k, v) in m {
                    guard let i = Int(k), i >= 0, i < m.count, let s = v as? String else {
                        throw ConfigError(path: path, "id2label must map \"0\"..\"\(m.count - 1)\" to names; found key '\(k)'")
                    }
                    names[i] = s
                }
                return names
            }
        }
        if let n = try optionalInt("num_labels"), n > 0 { return (0..<n).map { "LABEL_\($0)" } }
        return []
    }
}
