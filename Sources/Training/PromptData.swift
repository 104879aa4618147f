// PromptData: the prompts of on-line RL (`train --task grpo`): JSON lines {"prompt": TEXT} (other keys are ignored, as
// TRL passes extra columns to reward functions only). Every malformed row is a one-line `DataError` naming file:line.
//
// Deliberately not here: tokenization and the length limit (GRPOTask tokenizes with the policy's tokenizer and refuses
// a prompt that leaves no room for --max-completion-length), sampling and scoring.
import Foundation

/// One prompt as the file gives it.
public struct PromptRow: Sendable, Equatable {
    public var prompt: String
    /// 1-based line in the file (for messages).
    public var line: Int
    public init(prompt: String, line: Int) { self.prompt = prompt; self.line = line }
}

/// The prompts of one file, in file order.
public struct PromptDataset: Sendable {
    /// The file as the user named it.
    public var file: String
    public var rows: [PromptRow]
    /// SHA-256 of the file's bytes (recorded in checkpoints).
    public var fingerprint: String
}

public enum PromptData {
    static let shape = "each line must be one JSON object like {\"prompt\": \"Once upon a time\"}"

    /// Reads `url` (JSONL; `-` reads standard input). Refused, naming file:line: a line that is not a JSON object, a
    /// missing or non-string "prompt", a conversational prompt (a list of messages: no chat templates here), and an
    /// empty prompt (the policy needs at least one token to continue). A file with no prompt at all is refused too.
    public static func load(_ url: URL) throws -> PromptDataset {
        let source = try DataLoader.Source.read(url, format: .jsonl)
        let file = source.file
        var rows: [PromptRow] = []
        try DataLoader.forEachJSONObject(source, shape: shape) { object, line in
            guard let v = object["prompt"] else {
                let keys = object.keys.sorted().map(LabelSet.quote).joined(separator: ", ")
                let hint = object["chosen"] != nil ? "; this looks like a preference file (give {\"prompt\"} rows to sample from)"
                    : object["text"] != nil ? "; this looks like a text file" : ""
                throw DataError(file: file, line: line, problem: "missing \"prompt\" (keys on this line: \(keys))\(hint)",
                                fix: "a prompt file has {\"prompt\": \"...\"} on every line")
            }
            if v is [Any] {
                throw DataError(file: file, line: line,
                                problem: "\"prompt\" is a list (conversational prompts need a chat template, which disttrain does not apply)",
                                fix: "give \"prompt\" as plain text, rendered as the model should see it")
            }
            guard let s = v as? String else {
                throw DataError(file: file, line: line, problem: "\"prompt\" is \(DataLoader.describeJSONType(v)), not a string",
                                fix: "give every row a JSON string there, e.g. \"prompt\": \"Once upon a time\"")
            }
            guard !s.isEmpty else {
                throw DataError(file: file, line: line, problem: "\"prompt\" is empty; the policy needs at least one token to continue",
                                fix: "remove the row or give it some text")
            }
            rows.append(PromptRow(prompt: s, line: line))
        }
        guard !rows.isEmpty else {
            throw TrainingError("\(file): no prompts; \(shape)", exitCode: 2)
        }
        return PromptDataset(file: file, rows: rows, fingerprint: source.fingerprint)
    }
}
