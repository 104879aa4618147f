// `disttrain predict`: JSONL/CSV/TSV texts in (a file or standard input), one JSON line per input out, in input
// order: {"text", "label", "probs": {label: p}, "logits": [...]} ("logits" dropped with --no-logits); for a reward
// model (one output) {"text", "reward"}. Batched. Output line N answers JSONL input line N: a blank line gets
// {"line": N, "error": "empty input"} (CSV/TSV: blank lines are not rows, as pandas reads them; output row N answers
// data row N). Inputs cut at --max-length are counted in one stderr line at the end.
// Deliberately not here: metrics (that is `eval`), streaming of unbounded input (the input is read whole).
import ArgumentParser
import Dist
import Foundation
import Model
import Training

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify texts with a trained model.",
        discussion: """
        Reads {"text"} lines (or CSV/TSV with a header); writes {"text", "label", "probs": {...}} per input, \
        and "logits": [...] unless --no-logits. A reward model (`train --task reward`) writes {"text", "reward"}. \
        Output line N answers JSONL line N: a blank input line gets {"line": N, "error": "empty input"}. \
        Inputs longer than --max-length are truncated and counted on stderr.

          disttrain predict --model runs/spam --input new.jsonl \\
              --output predictions.jsonl
          cat texts.csv | disttrain predict --model runs/spam --input - \\
              --data-format csv
        """)
    @OptionGroup var config: ConfigFileOption
    @OptionGroup var modelOptions: InferenceModelOptions
    @Option(help: "Input file (JSONL, CSV or TSV by extension); '-' for standard input.") var input: String
    @Option(name: [.customLong("data-format"), .customLong("input-format")],
            help: "Input format when the extension does not say (standard input defaults to jsonl): jsonl, csv or tsv.")
    var inputFormat: DataFormat?
    @Option(help: "Output JSONL file (default: standard output).") var output: String?
    @OptionGroup var inference: InferenceRunOptions
    @OptionGroup var columns: TextColumnOptions
    @Flag(inversion: .prefixedNo, help: "Include the raw logits in each output line.") var logits = true
    @OptionGroup var threads: ThreadsOption
    @OptionGroup var qa: QAOptions

    var model: String { modelOptions.model }
    var adapter: String? { modelOptions.adapter }
    var maxLength: Int? { inference.maxLength }
    var batchSize: Int { inference.batchSize }

    func run() throws {
        if OutputRank.isSecondary() { return }   // under mpirun/srun: rank 0 predicts and prints, once
        ComputeThreads.set(threads.count)
        let folder = try ModelFolder.open(URL(fileURLWithPath: model))
        if QuestionAnsweringTask.serves(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) }) {
            return try write(qa.predictLines(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) }, input: URL(fileURLWithPath: input),
                                             maxLength: maxLength, batchSize: batchSize))
        }
        if folder.kind == .encoderTokenClassifier || (adapter.map { TokenPredictor.isTokenAdapter(URL(fileURLWithPath: $0)) } ?? false) {
            return try predictTokens(folder)
        }
        let predictor = try Predictor(modelDir: URL(fileURLWithPath: model), adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                      maxLength: maxLength, batchSize: batchSize)
        let data = try DataLoader.loadTexts(URL(fileURLWithPath: input),
                                            columns: columns.columns,
                                            format: inputFormat)
        let preds = try predictor.predict(data.examples.map { ($0.text, $0.textPair) })
        var lines: [String] = []
        lines.reserveCapacity(preds.count)
        var nextLine = 1   // JSONL: the input line the next output line answers
        for (ex, p) in zip(data.examples, preds) {
            if data.format == .jsonl {
                // Blank lines (skipped by the loader) keep their place, so output line N answers input line N.
                while nextLine < ex.line { lines.append("{\"error\":\"empty input\",\"line\":\(nextLine)}"); nextLine += 1 }
                nextLine = ex.line + 1
            }
            // A reward model (one output, e.g. from `train --task reward`): its score.
            var obj: [String: Any] = predictor.isReward ? ["text": ex.text, "reward": Double(p.logits[0])]
                                                         : ["text": ex.text, "label": p.label, "probs": p.probs]
            if let pair = ex.textPair { obj["text_pair"] = pair }
            if logits && !predictor.isReward { obj["logits"] = p.logits.map(Double.init) }
            let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            lines.append(String(decoding: d, as: UTF8.self))
        }
        try write(lines)
        let cut = preds.filter(\.truncated).count
        if cut > 0 {
            let limit = predictor.maxLength
            let advice = limit < predictor.maxPositions
                ? "raise --max-length (the model takes up to \(predictor.maxPositions)) to keep more"
                : "\(limit) is the model's position limit, so they cannot be scored whole"
            FileHandle.standardError.write(Data("warning: \(input == "-" ? "<stdin>" : input): \(cut) of \(preds.count) input\(preds.count == 1 ? "" : "s") longer than \(limit) tokens \(cut == 1 ? "was" : "were") truncated (the model saw the first \(limit)); \(advice)\n".utf8))
        }
    }

    /// A token classifier: {"text"} or {"tokens"} in; {"text" | "tokens", "tags", "entities": [{"type", "start",
    /// "end", "text", "score"}]} out, grouped as transformers' token-classification pipeline (aggregation "first").
    func predictTokens(_ folder: ModelFolder) throws {
        let predictor = try TokenPredictor(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                           maxLength: maxLength, batchSize: batchSize)
        let numbered = try TokenClassificationData.loadPredictInputLines(URL(fileURLWithPath: input))
        let inputs = numbered.map(\.input)
        let preds = try predictor.predict(inputs.map(\.text))
        var lines: [String] = []
        var nextLine = 1   // the input line the next output line answers: a blank line keeps its place, as for classifiers
        for ((inp, lineNo), p) in zip(numbered, preds) {
            while nextLine < lineNo { lines.append("{\"error\":\"empty input\",\"line\":\(nextLine)}"); nextLine += 1 }
            nextLine = lineNo + 1
            var obj: [String: Any] = [:]
            switch inp {
            case .text(let t):
                obj["text"] = t
                obj["words"] = p.words.map { r in var s = ""; s.unicodeScalars.append(contentsOf: Array(t.unicodeScalars)[r]); return s }
                obj["tags"] = p.tags.map { $0 ?? NSNull() as Any }
            case .tokens(let w):
                obj["tokens"] = w
                obj["tags"] = p.tags(forTokens: w).map { $0 ?? NSNull() as Any }
            }
            obj["entities"] = p.entities.map { ["type": $0.type, "start": $0.start, "end": $0.end, "text": $0.text, "score": $0.score] as [String: Any] }
            let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            lines.append(String(decoding: d, as: UTF8.self))
        }
        try write(lines)
    }

    func write(_ lines: [String]) throws {
        let text = lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
        if let output {
            let url = URL(fileURLWithPath: output)
            do { try Data(text.utf8).write(to: url, options: .atomic) } catch {
                throw TrainingError("\(output): cannot write (\(error.localizedDescription)); check the folder exists and is writable")
            }
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}
