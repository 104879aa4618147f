// DataTypes: the value types of the data layer — file formats, column choices, one example, a loaded dataset,
// and the one-line error every bad input turns into.
//
// Deliberately not here: parsing (DataLoader.swift, CSVParser.swift), label-set rules (Labels.swift),
// tokenization, padding and batching (the trainer owns those; examples stay plain text so nothing is
// pre-tokenized behind the user's back).

import Foundation

/// The on-disk layout of a text dataset.
///
/// Inferred from the file extension by `DataFormat.infer(from:)` (`.jsonl`, `.json`, `.ndjson` → jsonl; `.csv` → csv;
/// `.tsv`, `.tab` → tsv); callers may pass one explicitly to override the extension.
public enum DataFormat: String, Sendable, CaseIterable, Codable {
    /// One JSON object per non-blank line, e.g. `{"text": "...", "label": "spam"}`.
    case jsonl
    /// Comma-separated values with a header row, RFC 4180 quoting.
    case csv
    /// Tab-separated values with a header row, same quoting rules as CSV.
    case tsv

    /// The format implied by `url`'s extension, or nil when the extension says nothing we know.
    public static func infer(from url: URL) -> DataFormat? {
        switch url.pathExtension.lowercased() {
        case "jsonl", "json", "ndjson": return .jsonl
        case "csv": return .csv
        case "tsv", "tab": return .tsv
        default: return nil
        }
    }
}

/// Which columns (JSON keys or CSV header names) hold the text, the optional second text and the label.
/// Names match exactly (case-sensitive), as in Hugging Face `datasets`.
public struct ColumnOptions: Sendable, Equatable {
    /// Column with the input text (`--text-column`).
    public var text: String
    /// Column with the second text of a pair task such as NLI or paraphrase (`--text-pair-column`); nil for single texts.
    public var textPair: String?
    /// Column with the class label (`--label-column`); ignored when loading texts for prediction.
    public var label: String

    public init(text: String = "text", textPair: String? = nil, label: String = "label") {
        self.text = text
        self.textPair = textPair
        self.label = label
    }
}

/// A bad data file, described in one line: `"<file>:<line>: <what is wrong>; <what to do>"`
/// (`"<file>: ..."` when no single line is to blame, e.g. a missing or empty file).
///
/// The fields are kept separately so callers (and tests) can inspect them; `description` is what users see.
public struct DataError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file as the user named it (`url.relativePath`), or `<stdin>`.
    public let file: String
    /// 1-based physical line number in the file, or nil when the whole file is at fault.
    public let line: Int?
    /// What is wrong, e.g. `missing column "text" (found: "body", "label")`.
    public let problem: String
    /// What the user can do about it, e.g. `pass --text-column body`.
    public let fix: String

    public init(file: String, line: Int?, problem: String, fix: String) {
        self.file = file
        self.line = line
        self.problem = problem
        self.fix = fix
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        // Values quoted from the data could carry newlines; the message must stay one line.
        return DataError.oneLine("\(location): \(problem); \(fix)")
    }

    static func oneLine(_ s: String) -> String {
        guard s.contains(where: \.isNewline) else { return s }
        return s.replacingOccurrences(of: "\r\n", with: "\\n")
            .replacingOccurrences(of: "\n", with: "\\n")
            .replacingOccurrences(of: "\r", with: "\\r")
    }
}

/// One row of a dataset, still as text.
public struct Example: Sendable, Equatable {
    /// The input text.
    public var text: String
    /// The second text of a pair, when `ColumnOptions.textPair` is set.
    public var textPair: String?
    /// Class id (index into the dataset's `LabelSet`), nil for unlabeled data.
    public var label: Int?
    /// 1-based line in the source file where the row starts, so later stages (tokenizer, predict) can point at it.
    public var line: Int

    public init(text: String, textPair: String? = nil, label: Int? = nil, line: Int) {
        self.text = text
        self.textPair = textPair
        self.label = label
        self.line = line
    }
}

/// A loaded text dataset: its rows in file order and a fingerprint of the exact bytes they came from.
public struct TextDataset: Sendable {
    /// Where the rows came from (`-` for stdin).
    public let url: URL
    public let format: DataFormat
    /// Rows in file order (blank lines skipped).
    public let examples: [Example]
    /// Lowercase hex SHA-256 of the file's bytes, recorded in checkpoints and reports so a run can tell it is
    /// resuming on the same data. For a split part it is derived from the parent's fingerprint and the split
    /// parameters (see `DataLoader.split`).
    public let fingerprint: String

    public init(url: URL, format: DataFormat, examples: [Example], fingerprint: String) {
        self.url = url
        self.format = format
        self.examples = examples
        self.fingerprint = fingerprint
    }

    public var count: Int { examples.count }
    public var isEmpty: Bool { examples.isEmpty }
}
