// Inference: what `disttrain eval` and `disttrain predict` ask of a model folder, without knowing its kind. The CLI
// opens the folder, asks `TaskFactory.inference(folder:adapterDir:options:for:)` (TaskFactory.swift, the one place
// that decides what a folder serves) and runs the `InferenceTask` it gets; each task's inference lives beside the task
// (SequenceClassifierInference in ClassifierInference.swift, RewardInference, TokenClassificationInference,
// QuestionAnsweringInference, CausalLMInference) and rejects the options that do not apply to it.
// Deliberately not here: reading flags, printing and writing files (the CLI), the evaluation itself (each task's
// `evaluate`/`metrics`, the trainer's own code).
import Dist
import Foundation

/// The settings of one `eval` or `predict` run, as the flags give them; each task reads the ones that apply to it and
/// refuses the ones that cannot (a usage error, exit 2).
public struct InferenceOptions: Sendable {
    /// The model as the user named it (`--model`), for messages.
    public var model: String
    /// Truncation length (nil: the task's default, min(128, the model's positions); 384 for question answering).
    public var maxLength: Int?
    /// Sequences (pairs, windows) per forward pass.
    public var batchSize: Int
    /// Text, text-pair and label columns of classifier data.
    public var columns: ColumnOptions
    /// `--data-format` when the extension does not say.
    public var dataFormat: DataFileFormat?
    /// GPT-2 LM: tokens per packed block of {"text"} data (nil: the maximum length), or one example per row.
    public var blockSize: Int?
    public var lmPerRow: Bool
    /// Token classification: seqeval's mode and scheme.
    public var tagScheme: TagScheme
    /// Question answering: post-processing and the stride of a long context's windows.
    public var qa: QAPostprocessSettings
    public var docStride: Int
    /// `predict` of a classifier: include the raw logits in each line.
    public var logits: Bool

    public init(model: String, maxLength: Int? = nil, batchSize: Int = 32, columns: ColumnOptions = ColumnOptions(),
                dataFormat: DataFileFormat? = nil, blockSize: Int? = nil, lmPerRow: Bool = false, tagScheme: TagScheme = .default,
                qa: QAPostprocessSettings = QAPostprocessSettings(), docStride: Int = 128, logits: Bool = true) {
        self.model = model; self.maxLength = maxLength; self.batchSize = batchSize; self.columns = columns
        self.dataFormat = dataFormat; self.blockSize = blockSize; self.lmPerRow = lmPerRow; self.tagScheme = tagScheme
        self.qa = qa; self.docStride = docStride; self.logits = logits
    }

    /// `--data-format` csv/tsv/conll is refused for data that is JSON lines only (`what` names that data).
    func jsonlOnly(_ what: String) throws {
        if let dataFormat, dataFormat != .jsonl {
            throw TrainingError("--data-format \(dataFormat.rawValue): \(what) is JSON lines only; drop --data-format (or give jsonl)", exitCode: 2)
        }
    }

    /// `--data-format` of sequence-classifier data: jsonl, csv or tsv (conll is token-classification data).
    func tableFormat() throws -> DataFormat? {
        guard let d = dataFormat else { return nil }
        guard let f = d.table else {
            throw TrainingError("--data-format \(d.rawValue) applies to token-classification data; \(model) is a sequence classifier: give jsonl, csv or tsv", exitCode: 2)
        }
        return f
    }
}

/// `--data-format` of `train` and `eval`: the table formats of classification data, or CoNLL columns of token data.
public enum DataFileFormat: String, Sendable, CaseIterable {
    case jsonl, csv, tsv, conll
    /// As classification data (nil for conll).
    public var table: DataFormat? { DataFormat(rawValue: rawValue) }
    /// As token-classification data (nil for csv/tsv).
    public var token: TokenDataFormat? { TokenDataFormat(rawValue: rawValue) }
}

/// Evaluation and prediction of one kind of model folder (and adapter), as `TaskFactory.inference` resolves it.
public protocol InferenceTask {
    /// `disttrain eval`: the metrics of the model on `evalFile` (the path as given), exact over `comm`'s ranks (each
    /// scores a shard; the statistics are all-reduced); the same object on every rank. `warn` gets stderr lines (rank 0
    /// only).
    func evaluate(evalFile: String, comm: Communicator, warn: (String) -> Void) throws -> [String: Any]
    /// `disttrain predict`: one JSON line per input of `input` (the path as given; "-" is standard input), in input
    /// order (JSONL: a blank input line keeps its place as {"error": "empty input", "line": N}). `warn` gets stderr lines.
    func predictLines(input: String, warn: (String) -> Void) throws -> [String]
}

/// The output lines of `predict`, with JSONL input lines that produced nothing (blank lines) kept in place.
struct PredictOutput {
    private(set) var lines: [String] = []
    /// The input line the next output line answers.
    private var nextLine = 1

    /// Appends the answer to JSONL input line `line` (nil: no line numbers to keep, e.g. CSV rows or a SQuAD file).
    mutating func append(_ object: [String: Any], line: Int?) throws {
        if let line {
            while nextLine < line { lines.append("{\"error\":\"empty input\",\"line\":\(nextLine)}"); nextLine += 1 }
            nextLine = line + 1
        }
        let d = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        lines.append(String(decoding: d, as: UTF8.self))
    }
}
