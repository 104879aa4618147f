// PreferenceData: reads human-preference pairs from JSON lines, in TRL's two standard layouts — explicit prompt
// `{"prompt", "chosen", "rejected"}` and implicit prompt `{"chosen", "rejected"}` (each a whole text) — with an optional
// `margin` per pair (TRL's RewardTrainer). Every malformed row is a one-line `DataError` naming file:line.
//
// Deliberately not here: tokenization and truncation (each task tokenizes as TRL's trainer for it does, and counts
// the pairs truncation leaves without a response token), sharding and shuffling (the trainer owns those).
import Foundation

/// One preference pair as the file gives it.
public struct PreferencePair: Sendable, Equatable {
    /// The prompt (explicit layout), or nil when chosen and rejected are whole texts (implicit layout).
    public var prompt: String?
    public var chosen: String
    public var rejected: String
    /// How much better chosen is than rejected (TRL's optional `margin` column), or nil.
    public var margin: Double?
    /// 1-based line in the file (for messages).
    public var line: Int

    public init(prompt: String?, chosen: String, rejected: String, margin: Double? = nil, line: Int) {
        self.prompt = prompt; self.chosen = chosen; self.rejected = rejected; self.margin = margin; self.line = line
    }
}

/// The pairs of one file, in file order.
public struct PreferenceDataset: Sendable {
    /// The file as the user named it.
    public var file: String
    public var pairs: [PreferencePair]
    /// SHA-256 of the file's bytes (recorded in checkpoints, keys cached reference log-probabilities).
    public var fingerprint: String
    /// True when the rows carry an explicit "prompt".
    public var explicitPrompt: Bool { pairs.first?.prompt != nil }
}

public enum PreferenceData {
    static let shape = "each line must be one JSON object like {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} or {\"chosen\": ..., \"rejected\": ...}"

    /// Reads `url` (JSONL; `-` reads standard input). Refused, naming file:line: a line that is not a JSON object, a
    /// missing or non-string "chosen"/"rejected"/"prompt", conversational rows (lists of messages: there are no chat
    /// templates here), a non-numeric "margin", chosen identical to rejected, and a file mixing rows with and without
    /// a prompt. A classification file (`{"text", "label"}`) gets a message saying what a preference file looks like.
    public static func load(_ url: URL) throws -> PreferenceDataset {
        let source = try DataLoader.Source.read(url, format: .jsonl)
        let file = source.file
        var pairs: [PreferencePair] = []
        try DataLoader.forEachJSONObject(source, shape: shape) { object, line in
            var keys: String { object.keys.sorted().map(LabelSet.quote).joined(separator: ", ") }
            func text(_ key: String) throws -> String? {
                guard let v = object[key] else { return nil }
                if let s = v as? String { return s }
                if v is [Any] {
                    throw DataError(file: file, line: line,
                                    problem: "\"\(key)\" is a list (conversational rows need a chat template, which disttrain does not apply)",
                                    fix: "give \"\(key)\" as plain text, with the conversation rendered as the model should see it")
                }
                throw DataError(file: file, line: line, problem: "\"\(key)\" is \(DataLoader.describeJSONType(v)), not a string",
                                fix: "give every row a JSON string there, e.g. \"\(key)\": \"some text\"")
            }
            func required(_ key: String) throws -> String {
                if let s = try text(key) { return s }
                let looksLabeled = object["text"] != nil && object["label"] != nil
                throw DataError(file: file, line: line,
                                problem: "missing \"\(key)\" (keys on this line: \(keys))" + (looksLabeled ? "; this looks like a classification file" : ""),
                                fix: "a preference file has \"chosen\" and \"rejected\" on every line (and optionally \"prompt\" and \"margin\")")
            }
            let chosen = try required("chosen")
            let rejected = try required("rejected")
            let prompt = try text("prompt")
            var margin: Double? = nil
            if let m = object["margin"], !(m is NSNull) {
                guard let n = m as? NSNumber, !DataLoader.isJSONBool(m), n.doubleValue.isFinite else {
                    throw DataError(file: file, line: line, problem: "\"margin\" is \(DataLoader.describeJSONType(m)), not a number",
                                    fix: "give \"margin\" as a number (how much better chosen is than rejected), or leave it out")
                }
                margin = n.doubleValue
            }
            if chosen == rejected {
                throw DataError(file: file, line: line, problem: "\"chosen\" and \"rejected\" are identical, so the pair prefers nothing",
                                fix: "remove the row, or correct one of the two responses")
            }
            if let first = pairs.first, (first.prompt == nil) != (prompt == nil) {
                throw DataError(file: file, line: line,
                                problem: "this row \(prompt == nil ? "has no" : "has a") \"prompt\" but line \(first.line) \(first.prompt == nil ? "has none" : "has one")",
                                fix: "give every row a \"prompt\" (explicit prompt), or none (chosen and rejected are whole texts)")
            }
            pairs.append(PreferencePair(prompt: prompt, chosen: chosen, rejected: rejected, margin: margin, line: line))
        }
        return PreferenceDataset(file: file, pairs: pairs, fingerprint: source.fingerprint)
    }
}
