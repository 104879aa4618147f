// `disttrain eval`: scores a trained model on data and prints one JSON line of metrics. Writes nothing unless
// --output is given.
//   - A classifier (BERT family, GPT2ForSequenceClassification) on labelled data: accuracy, macro/weighted F1,
//     per-class precision/recall/F1/support, the confusion matrix, eval_loss.
//   - A reward model (one output) on preference pairs: eval_accuracy (pairwise), eval_margin, eval_loss,
//     eval_mean_reward, eval_samples (RewardTask's evaluation).
//   - A GPT-2 language model on {"text"} or {"prompt", "response"} JSONL: eval_loss (mean over the counted target
//     tokens; prompt tokens masked), eval_perplexity, eval_tokens, eval_samples: CausalLMTask's evaluation, the very
//     code the trainer reports with, on the file prepared with the same --max-length/--block-size/--lm-per-row.
// Under mpirun each rank scores a contiguous shard (EvalSharding, as in training); integer counts and the loss sums
// are all-reduced, so the result equals the one-process result; rank 0 prints.
// Deliberately not here: the metric definitions (Training/Metrics.swift), the evaluation itself (ClassificationTask and
// CausalLMTask: the trainer's own code).
import ArgumentParser
import Dist
import Foundation
import Model
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained classifier on labelled data, or a GPT-2 language model's loss and perplexity.",
        discussion: """
        Classifiers: labels in the data must be among the model's id2label names (or class ids 0...n-1). \
        Prints one JSON line; keys follow `train`'s eval_results.json (eval_accuracy, eval_macro_f1, eval_loss, \
        eval_precision_<label>, eval_recall_<label>, eval_f1_<label>, eval_support_<label>, eval_confusion_matrix).

        GPT-2 language models: {"text"} or {"prompt", "response"} JSONL; prints eval_loss (mean over counted tokens), \
        eval_perplexity, eval_tokens, eval_samples. Pass the --max-length/--block-size/--lm-per-row used in `train` \
        to get its numbers; rows longer than min(--max-length, n_positions) are truncated and counted on stderr.

        Reward models (`train --task reward`): preference JSONL ({"prompt", "chosen", "rejected"} or {"chosen", \
        "rejected"}); prints eval_accuracy (share of pairs scored chosen > rejected), eval_margin, eval_loss.

          disttrain eval --model runs/spam --eval-file data/sms-spam/test.jsonl
          disttrain eval --model runs/lm --eval-file data/hamlet-lm/pairs.jsonl \\
              --max-length 128
        Under mpirun each rank scores a shard; rank 0 prints one line, the same numbers:
          mpirun -n 2 disttrain eval ...
        """)

    @OptionGroup var config: ConfigFileOption
    @OptionGroup var modelOptions: InferenceModelOptions
    @Option(help: "Labelled data: JSONL, CSV or TSV (the format follows the extension); for a GPT-2 LM, {\"text\"} or {\"prompt\", \"response\"} JSONL.")
    var evalFile: String
    @OptionGroup var inference: InferenceRunOptions
    @OptionGroup var columns: DataColumnOptions
    @Option(help: "Format of --eval-file when the extension does not say: jsonl, csv or tsv (classifier data), or conll (token classification).")
    var dataFormat: DataFormatOption?
    @Option(help: "Also write the JSON object to this file.") var output: String?
    @Option(help: "GPT-2 LM: tokens per packed block of {\"text\"} data (default: --max-length).") var blockSize: Int?
    @Flag(help: "GPT-2 LM: one example per {\"text\"} row instead of packed blocks.") var lmPerRow = false
    @Option(help: ArgumentHelp("Token classifier: entity metrics in seqeval's default mode, or strict mode with a scheme: \(TagScheme.names).", valueName: "scheme"))
    var tagScheme: TagScheme = .default
    @OptionGroup var threads: ThreadsOption
    @OptionGroup var qa: QAOptions

    var model: String { modelOptions.model }
    var adapter: String? { modelOptions.adapter }
    var maxLength: Int? { inference.maxLength }
    var batchSize: Int { inference.batchSize }

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
            comm.abort(code: ExitPolicy.code(for: error))
        }
    }

    func evaluate(comm: Communicator) throws {
        ComputeThreads.set(threads.count)
        let folder = try ModelFolder.open(URL(fileURLWithPath: model))
        if let adapter { try AdapterBase.check(folder: folder, adapterDir: URL(fileURLWithPath: adapter)) }
        let result: [String: Any]
        // A GPT-2 LM with an LM adapter (no head) is no classifier: isRewardModel's "no classifier to run" does not apply.
        let adapterDir = adapter.map { URL(fileURLWithPath: $0) }
        let isReward = folder.kind.isClassifier ? try RewardTask.isRewardModel(folder: folder, adapterDir: adapterDir)
                                                : (try? RewardTask.isRewardModel(folder: folder, adapterDir: adapterDir)) ?? false
        if isReward {
            result = try evaluateReward(folder, comm: comm)
        } else if QuestionAnsweringTask.serves(folder: folder, adapterDir: adapterDir) {
            let task = try QuestionAnsweringTask(folder: folder, adapterDir: adapterDir, evalFile: URL(fileURLWithPath: evalFile),
                                                 settings: qa.settings, docStride: qa.docStride, maxLength: maxLength, batchSize: batchSize)
            result = task.metrics(try task.evaluateAll(comm: comm, batchSize: batchSize))
        } else if folder.kind == .encoderTokenClassifier || (adapter.map { TokenPredictor.isTokenAdapter(URL(fileURLWithPath: $0)) } ?? false) {
            result = try evaluateTokenClassifier(folder, comm: comm)
        } else if folder.kind.isClassifier {
            result = try evaluateClassifier(folder, comm: comm)
        } else {
            result = try evaluateLanguageModel(folder, comm: comm)
        }
        guard comm.isRoot else { return }
        let d = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .withoutEscapingSlashes])
        let line = String(decoding: d, as: UTF8.self)
        print(line)
        if let output {
            do { try Data((line + "\n").utf8).write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
                throw TrainingError("--output \(output): cannot write (\((error as NSError).localizedDescription)); check the folder exists and is writable")
            }
        }
    }

    /// Loss and perplexity of a GPT-2 LM, through CausalLMTask (the trainer's evaluation).
    func evaluateLanguageModel(_ folder: ModelFolder, comm: Communicator) throws -> [String: Any] {
        try jsonlOnly("a GPT-2 language model's data")
        let data = LMDataOptions(maxLength: maxLength ?? 128, blockSize: blockSize, perRow: lmPerRow)
        let task = try CausalLMTask(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                    evalFile: URL(fileURLWithPath: evalFile), data: data, batchSize: batchSize)
        if comm.isRoot && (task.evalTruncated > 0 || task.evalDropped > 0) {
            var msg = "warning: \(evalFile): \(task.evalTruncated) rows longer than \(data.limit(positions: task.maxPositions)) tokens (the smaller of --max-length and n_positions) were truncated at the end and scored on their first tokens"
            if task.evalDropped > 0 { msg += "; \(task.evalDropped) prompt→response rows left no response token and were skipped" }
            FileHandle.standardError.write(Data((msg + "\n").utf8))
        }
        let stats = try task.evaluateAll(comm: comm, batchSize: batchSize)
        return task.metrics(stats)
    }

    /// A reward model on preference pairs: pairwise accuracy, mean margin, loss and mean reward through RewardTask's
    /// evaluation (the trainer's); pairs longer than --max-length are skipped and counted on stderr, as in training.
    func evaluateReward(_ folder: ModelFolder, comm: Communicator) throws -> [String: Any] {
        if blockSize != nil || lmPerRow || columns.text.textPairColumn != nil {
            throw TrainingError("--block-size, --lm-per-row and --text-pair-column do not apply to a reward model; \(model) takes a preference file ({\"prompt\", \"chosen\", \"rejected\"} lines)", exitCode: 2)
        }
        try jsonlOnly("a reward model's preference data")
        let task = try RewardTask(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                  evalFile: URL(fileURLWithPath: evalFile), maxLength: maxLength, batchSize: batchSize)
        if comm.isRoot && task.evalSkipped > 0 {
            FileHandle.standardError.write(Data("warning: \(evalFile): \(task.evalSkipped) pair\(task.evalSkipped == 1 ? "" : "s") with a chosen or rejected text longer than \(task.maxLength) tokens skipped (as TRL filters them); raise --max-length to score them\n".utf8))
        }
        return task.metrics(try task.evaluateAll(comm: comm, batchSize: batchSize))
    }

    /// seqeval entity precision/recall/F1 (overall and per type), token accuracy and eval_loss through
    /// TokenClassificationTask's evaluation (the trainer's), exact over ranks.
    func evaluateTokenClassifier(_ folder: ModelFolder, comm: Communicator) throws -> [String: Any] {
        let scheme = tagScheme
        if let d = dataFormat, d.token == nil {
            throw TrainingError("--data-format \(d.rawValue): token-classification data is jsonl or conll; drop --data-format or give one of those", exitCode: 2)
        }
        let format = dataFormat?.token
        let task = try TokenClassificationTask(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                               evalFile: URL(fileURLWithPath: evalFile), format: format, scheme: scheme,
                                               maxLength: maxLength, batchSize: batchSize)
        return task.metrics(try task.evaluateAll(comm: comm, batchSize: batchSize))
    }

    /// --data-format for classifier data: jsonl, csv or tsv (conll is token-classification data).
    func tableFormat() throws -> DataFormat? {
        guard let d = dataFormat else { return nil }
        guard let f = d.table else {
            throw TrainingError("--data-format \(d.rawValue) applies to token-classification data; \(model) is a sequence classifier: give jsonl, csv or tsv", exitCode: 2)
        }
        return f
    }

    /// --data-format csv/tsv applies to classifier data only.
    func jsonlOnly(_ what: String) throws {
        if let dataFormat, dataFormat != .jsonl {
            throw TrainingError("--data-format \(dataFormat.rawValue): \(what) is JSON lines only; drop --data-format (or give jsonl)", exitCode: 2)
        }
    }

    /// Accuracy, F1 and the rest through ClassificationTask's evaluation (the trainer's, on the same inference path as
    /// `predict`), exact over ranks.
    func evaluateClassifier(_ folder: ModelFolder, comm: Communicator) throws -> [String: Any] {
        if blockSize != nil || lmPerRow {
            throw TrainingError("--block-size and --lm-per-row apply to GPT-2 language models only; \(model) is a classifier", exitCode: 2)
        }
        let task: ClassificationTask
        do {
            task = try ClassificationTask(folder: folder, adapterDir: adapter.map { URL(fileURLWithPath: $0) },
                                          evalFile: URL(fileURLWithPath: evalFile),
                                          columns: columns.columns,
                                          maxLength: maxLength, batchSize: batchSize, format: try tableFormat())
        } catch let e as DataError where e.fix.contains("--labels") {
            // The loader's advice is train's (`--labels FILE`); eval has no such flag: the classes are the model's.
            throw DataError(file: e.file, line: e.line, problem: e.problem,
                            fix: "correct the label; \(model) knows only the classes of its config.json id2label (data with other classes needs a model trained on them)")
        }
        let stats = try task.evaluateAll(comm: comm, batchSize: batchSize)
        var result = ClassificationMetrics(confusion: task.confusion(stats), labels: task.labels).asDictionary(prefix: "eval_")
        result["eval_loss"] = stats.lossSum / max(stats.lossCount, 1)
        return result
    }
}
