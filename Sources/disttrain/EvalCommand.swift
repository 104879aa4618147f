// `disttrain eval`: scores a trained classifier on labelled data and prints one JSON line of metrics (accuracy,
// macro/weighted F1, per-class precision/recall/F1/support, the confusion matrix, eval_loss). Writes nothing unless
// --output is given.
// Under mpirun each rank scores a contiguous shard (EvalSharding, as in training); integer confusion counts and the loss
// sum are all-reduced, so the result equals the one-process result; rank 0 prints.
// Deliberately not here: the metric definitions (Training/Metrics.swift) and the forward pass (Predictor).
import ArgumentParser
import Dist
import Foundation
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained classifier on labelled JSONL/CSV/TSV data.",
        discussion: """
        Labels in the data must be among the model's id2label names (or class ids 0...n-1).
        Prints one JSON line; keys follow `train`'s eval_results.json (eval_accuracy, eval_macro_f1, eval_loss,
        eval_precision_<label>, eval_recall_<label>, eval_f1_<label>, eval_support_<label>, eval_confusion_matrix).
          disttrain eval --model runs/spam --eval-file data/sms-spam/test.jsonl
          mpirun -n 2 disttrain eval ...   (each rank scores a shard; one line from rank 0, same numbers)
        """)

    @Option(help: "A trained model folder (as written by `disttrain train`) or a checkpoint folder.") var model: String
    @Option(help: "A PEFT LoRA adapter folder (from `train --lora-r`) to run unmerged on --model (the base it was trained on).")
    var adapter: String?
    @Option(help: "Labelled data: JSONL, CSV or TSV (the format follows the extension).") var evalFile: String
    @Option(help: "Truncate inputs to this many tokens (special tokens included).") var maxLength: Int = 128
    @Option(help: "Texts per forward pass.") var batchSize: Int = 32
    @Option(help: "Column holding the text.") var textColumn: String = "text"
    @Option(help: "Column holding the second text of a pair.") var textPairColumn: String?
    @Option(help: "Column holding the label.") var labelColumn: String = "label"
    @Option(help: "Also write the JSON object to this file.") var output: String?

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive (got \(batchSize))") }
        guard maxLength >= 2 else { throw ValidationError("--max-length must be at least 2 (got \(maxLength))") }
    }

    func run() throws {
        let comm: Communicator
        do { comm = try makeCommunicator(environment: ProcessInfo.processInfo.environment) } catch {
            throw TrainingError("cannot start MPI: \(error)")
        }
        do {
            try evaluate(comm: comm)
            try finalizeMPI(comm)
        } catch {
            // One rank's error must end the whole job, not leave the others waiting in the all-reduce.
            guard comm.worldSize > 1 else { throw error }
            FileHandle.standardError.write(Data("error: [rank \(comm.rank)] \(error)\n".utf8))
            comm.abort(code: (error as? TrainingError)?.exitCode ?? 1)
        }
    }

    func evaluate(comm: Communicator) throws {
        let predictor = try Predictor(modelDir: URL(fileURLWithPath: model), adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                      maxLength: maxLength, batchSize: batchSize)
        let names = predictor.bundle.config.id2label
        let labelSet = try LabelSet(names: names)
        let (data, _) = try DataLoader.loadLabeled(URL(fileURLWithPath: evalFile),
                                                   columns: ColumnOptions(text: textColumn, textPair: textPairColumn, label: labelColumn),
                                                   labels: labelSet)
        guard !data.examples.isEmpty else {
            throw TrainingError("\(evalFile): no examples to evaluate; the file must hold one {\"text\", \"label\"} row per example")
        }
        let shard = EvalSharding.range(count: data.examples.count, rank: comm.rank, worldSize: comm.worldSize)
        let mine = Array(data.examples[shard])
        let preds = try predictor.predict(mine.map { ($0.text, $0.textPair) })
        var (counts, lossSum) = Eval.counts(classCount: names.count, truth: mine.map { $0.label ?? 0 }, logits: preds.map(\.logits))
        var loss = [lossSum]
        try comm.allReduceSum(&counts.counts)
        try comm.allReduceSum(&loss)
        guard comm.isRoot else { return }
        var result = ClassificationMetrics(confusion: counts.matrix, labels: names).asDictionary(prefix: "eval_")
        result["eval_loss"] = loss[0] / Double(data.examples.count)
        let d = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .withoutEscapingSlashes])
        let line = String(decoding: d, as: UTF8.self)
        print(line)
        if let output {
            do { try Data((line + "\n").utf8).write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
                throw TrainingError("--output \(output): cannot write (\((error as NSError).localizedDescription)); check the folder exists and is writable")
            }
        }
    }

    /// Confusion counts and the summed cross-entropy for true class ids and logits rows (the loss in Double with the
    /// max subtracted, as the trainer computes it in Float).
    static func counts(classCount C: Int, truth: [Int], logits: [[Float]]) -> (ConfusionCounts, Double) {
        var counts = ConfusionCounts(classCount: C)
        var lossSum = 0.0
        for (t, row) in zip(truth, logits) {
            let mx = Double(row.max() ?? 0)
            let z = row.reduce(0.0) { $0 + Foundation.exp(Double($1) - mx) }
            lossSum += -(Double(row[t]) - mx - Foundation.log(z))
            var best = 0
            for c in 1..<max(C, 1) where row[c] > row[best] { best = c }
            counts.add(truth: t, predicted: best)
        }
        return (counts, lossSum)
    }
}
