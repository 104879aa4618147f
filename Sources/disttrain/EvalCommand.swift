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
// The command does not know model kinds: TaskFactory.inference decides what the folder serves, and that task's
// inference checks which flags apply to it.
// Deliberately not here: the metric definitions (Training/Metrics.swift), the evaluation itself (each task's: the
// trainer's own code).
import ArgumentParser
import Dist       // makeCommunicator: the launch environment's communicator
import Foundation
import Model      // ComputeThreads: the compute pool's size (--threads)
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained model: a classifier, token tagger (seqeval), QA model (SQuAD EM/F1), reward model, or a GPT-2 LM's loss and perplexity.",
        discussion: """
        Classifiers: labels in the data must be among the model's id2label names (or class ids 0...n-1). \
        Prints one JSON line; keys follow `train`'s eval_results.json (eval_accuracy, eval_macro_f1, eval_loss, \
        eval_precision_<label>, eval_recall_<label>, eval_f1_<label>, eval_support_<label>, eval_confusion_matrix).

        GPT-2 language models: {"text"} or {"prompt", "response"} JSONL; prints eval_loss (mean over counted tokens), \
        eval_perplexity, eval_tokens, eval_samples. Pass the --max-length/--block-size/--lm-per-row used in `train` \
        to get its numbers; rows longer than min(--max-length, n_positions) are truncated and counted on stderr.

        Reward models (`train --task reward`): preference JSONL ({"prompt", "chosen", "rejected"} or {"chosen", \
        "rejected"}); prints eval_accuracy (share of pairs scored chosen > rejected), eval_margin, eval_loss.

        Token classifiers: CoNLL or {"tokens", "tags"} JSONL; prints seqeval's eval_precision/recall/f1 (micro over \
        entity types), per-type scores, eval_accuracy, eval_loss (docs/token-classification.md). Question answering: \
        SQuAD JSON or JSONL; prints eval_exact_match, eval_f1, eval_loss (docs/question-answering.md).

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

    /// The flags as Training's inference settings; each task refuses the ones that do not apply to it.
    var options: InferenceOptions {
        InferenceOptions(model: modelOptions.model, maxLength: inference.maxLength, batchSize: inference.batchSize, columns: columns.columns, dataFormat: dataFormat,
                         blockSize: blockSize, lmPerRow: lmPerRow, tagScheme: tagScheme, qa: qa.settings, docStride: qa.docStride)
    }

    /// Open the folder, ask the factory what it serves, evaluate, print (rank 0).
    func evaluate(comm: Communicator) throws {
        ComputeThreads.set(threads.count)
        let folder = try ModelFolder.open(modelOptions.modelURL)
        let task = try TaskFactory.inference(folder: folder, adapterDir: modelOptions.adapterURL, options: options, for: .evaluation)
        let result = try task.evaluate(evalFile: evalFile, comm: comm) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
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
}
