// `disttrain predict`: JSONL/CSV/TSV texts in (a file or standard input), one JSON line per input out, in input
// order: {"text", "label", "probs": {label: p}, "logits": [...]} ("logits" dropped with --no-logits); for a reward
// model (one output) {"text", "reward"}. Batched. Output line N answers JSONL input line N: a blank line gets
// {"line": N, "error": "empty input"} (CSV/TSV: blank lines are not rows, as pandas reads them; output row N answers
// data row N). Inputs cut at --max-length are counted in one stderr line at the end.
// Deliberately not here: metrics (that is `eval`), streaming of unbounded input (the input is read whole).
// The command does not know model kinds: TaskFactory.inference decides what the folder serves.
import ArgumentParser
import Foundation
import Model      // ComputeThreads: the compute pool's size (--threads)
import Training

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a trained model on new texts: labels and probabilities, rewards, entities, or answers to questions.",
        discussion: """
        Reads {"text"} lines (or CSV/TSV with a header); writes {"text", "label", "probs": {...}} per input, \
        and "logits": [...] unless --no-logits. A reward model (`train --task reward`) writes {"text", "reward"}; \
        a token classifier its words, tags and entities (character offsets); a QA model reads {"question", "context"} and writes \
        {"id", "question", "answer", "start", "end", "score"}. \
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


    /// Open the folder, ask the factory what it serves, predict, write; warnings (truncated inputs) after the output.
    func run() throws {
        if OutputRank.isSecondary() { return }   // under mpirun/srun: rank 0 predicts and prints, once
        ComputeThreads.set(threads.count)
        let folder = try ModelFolder.open(modelOptions.modelURL)
        let options = InferenceOptions(model: modelOptions.model, maxLength: inference.maxLength, batchSize: inference.batchSize, columns: columns.columns,
                                       dataFormat: inputFormat.flatMap { DataFileFormat(rawValue: $0.rawValue) },
                                       qa: qa.settings, docStride: qa.docStride, logits: logits)
        let task = try TaskFactory.inference(folder: folder, adapterDir: modelOptions.adapterURL, options: options, for: .prediction)
        var warnings: [String] = []
        try write(task.predictLines(input: input) { warnings.append($0) })
        for w in warnings { FileHandle.standardError.write(Data((w + "\n").utf8)) }
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
