// TrainConfig: every setting of a fine-tuning run, as library types (the CLI maps its flags onto this; the library
// never sees ArgumentParser). Names follow Hugging Face TrainingArguments where one exists.
import Foundation
import Dist
import Model

/// `--resume`: auto (newest valid checkpoint in the output folder, if any), never, or one checkpoint folder.
public enum ResumeMode: Sendable, Equatable {
    case auto, never
    case path(URL)
}

/// `--task`: what a run trains. `auto` takes it from the model folder (a classifier folder: classification; a GPT-2
/// LM folder: causal language modelling); the others are asked for by name and checked against the folder's kind by
/// `TaskFactory`. A new task adds a case here and a row in `TaskFactory.taskType` (and, if it serves `eval`/`predict`,
/// a line in `TaskFactory.inference`). The CLI parses `--task` straight into this enum (Options.swift).
public enum TaskKind: String, Sendable, Equatable, CaseIterable {
    case auto
    case classification
    case causalLM = "causal-lm"
    /// A reward model (one-output sequence classifier) on preference pairs (RewardTask).
    case reward
    /// Direct Preference Optimization of a GPT-2 LM on preference pairs (DPOTask.swift).
    case dpo
    case tokenClassification = "token-classification"
    /// Extractive question answering (QuestionAnsweringTask.swift).
    case questionAnswering = "question-answering"
    /// On-line RL of a GPT-2 LM against a reward model: GRPO / RLOO as TRL 1.16 defines them (GRPOTask.swift).
    case grpo

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

public struct TrainConfig: Sendable {
    /// What to train (default: what the model folder is).
    public var task: TaskKind = .auto
    public var modelDir: URL
    public var trainFile: URL
    public var evalFile: URL?
    public var outputDir: URL
    public var columns: ColumnOptions = ColumnOptions()
    public var labelsFile: URL?
    /// Format of --train-file/--eval-file for classification data (`--data-format`); nil: by extension.
    public var dataFormat: DataFormat?
    /// Fraction of the training file held out for evaluation when no eval file is given (0 = none).
    public var validationSplit: Double = 0
    public var numTrainEpochs: Double = 1
    /// Overrides the epoch count when > 0.
    public var maxSteps: Int = 0
    /// The global batch: samples per optimizer step, summed over ranks and accumulation micro-steps.
    public var batchSize: Int = 32
    /// Samples per forward/backward on one rank; nil = globalBatch / worldSize (no accumulation).
    public var microBatchSize: Int?
    public var learningRate: Double = 5e-5
    public var weightDecay: Double = 0.0
    public var warmupSteps: Int = 0
    public var warmupRatio: Double = 0
    public var lrSchedule: LRScheduleKind = .linear
    public var maxGradNorm: Double = 1.0
    public var adamBeta1: Double = 0.9
    public var adamBeta2: Double = 0.999
    public var adamEpsilon: Double = 1e-8
    public var maxLength: Int = 128
    public var seed: UInt64 = 42
    /// Log every N optimizer steps.
    public var loggingSteps: Int = 10
    /// Evaluate every N steps (0 = only at the end of each epoch and of training).
    public var evalSteps: Int = 0
    public var evalBatchSize: Int = 64
    public var threads: Int = 1
    /// Number format of the model's Linear/Conv1D products (encoders; GPT-2 without its LM head): .bf16 (`--bf16`) rounds their inputs to bfloat16 and sums in
    /// fp32 (AVX512-BF16 CPUs only: validate() rejects it elsewhere); weights, gradients and AdamW stay fp32.
    public var matmulPrecision: MatmulPrecision = .fp32
    /// Dropout as configured by the model (true) or switched off (false).
    public var dropout: Bool = true
    /// Save a checkpoint every N optimizer steps (0 = only at the end of each epoch and of training).
    public var saveSteps: Int = 0
    /// Keep at most this many checkpoints (the newest, plus the best by `metricForBestModel`); 0 = keep all.
    public var saveTotalLimit: Int = 0
    /// Where to resume from.
    public var resume: ResumeMode = .auto
    /// Empty a non-empty output folder before training (only files disttrain writes; docs/run-folders.md). Without
    /// it such a folder is refused unless the run continues it.
    public var overwriteOutputDir: Bool = false
    /// The eval metric that picks the best checkpoint and drives early stopping (lower is better for "*loss*" and
    /// "*perplexity*"), with or without Hugging Face's `eval_` prefix; nil: eval_accuracy for classification,
    /// eval_loss for language modelling. A name the task does not report is refused before training.
    public var metricForBestModel: String?
    /// The final folder holds the best checkpoint's model (by `metricForBestModel`) instead of the last step's.
    public var loadBestModelAtEnd: Bool = false
    /// Stop after this many evaluations without improvement of `metricForBestModel` (0 = never).
    public var earlyStoppingPatience: Int = 0
    /// LoRA fine-tuning (PEFT format) instead of full fine-tuning; nil = full.
    public var lora: LoRAConfig?
    /// Reward models: TRL's center_rewards_coefficient c, adding c · mean((r_chosen + r_rejected)²) to the loss so the
    /// rewards stay near zero (nil: off, TRL's default; TRL recommends 0.01).
    public var centerRewardsCoefficient: Double?
    /// `--init-from-config`: a config.json (any file name, or a folder holding config.json) whose model is built with
    /// every weight initialised from `seed` as transformers initialises a model built from its config (pre-training
    /// from scratch); the tokenizer files are read beside it, and `modelDir` is its folder. nil: load `modelDir`'s
    /// weights. A resumed run loads its checkpoint's weights and never re-initialises.
    public var initFromConfig: URL?
    /// Causal LM: tokens per packed block (default: --max-length, capped at n_positions).
    public var blockSize: Int?
    /// Causal LM: one example per text row (padded) instead of packed blocks.
    public var lmPerRow: Bool = false
    /// DPO (`--task dpo`): β, loss type, label smoothing, prompt truncation, reference log-probabilities.
    public var dpo: DPOSettings = DPOSettings()
    /// GRPO (`--task grpo`): the reward model, sampling and the objective (GRPOSettings, GRPOTask.swift).
    public var grpo: GRPOSettings = GRPOSettings()
    /// Token classification: later sub-tokens of a word carry its tag too (B- as I-), as run_ner's label_all_tokens.
    public var labelAllTokens: Bool = false
    /// Token classification: seqeval's default mode, or strict mode with a scheme (`--tag-scheme`).
    public var tagScheme: TagScheme = .default
    /// Token classification: the data format (nil: from the extension; .conll/.txt are CoNLL columns).
    public var tokenDataFormat: TokenDataFormat?
    /// Question answering: context tokens shared by consecutive windows of a long context (run_qa's doc_stride).
    public var docStride: Int = 128
    /// Question answering: n-best, maximum answer length, SQuAD v2 no-answer and its threshold (run_qa's).
    public var qaPostprocess = QAPostprocessSettings()
    /// Group samples of similar length into the same batches (less padding; see GlobalBatchPlan).
    public var groupByLength: Bool = true
    /// Testing hooks (hidden flags): kill the process with _exit(137) at a checkpoint phase of a given step,
    /// sleep after every step, and log every step's global sample indices (rank 0) to a JSONL file.
    public var faultInjection: (phase: String, step: Int)?
    public var stepDelayMs: Int = 0
    public var sampleLog: URL?
    /// `--debug`: check activations and gradients for NaN/Inf after every layer (naming the first layer and step),
    /// and that row-sparse gradient rows outside the step's tokens are zero. The communicator's sequence checks are
    /// set up by the executable.
    public var debug: Bool = false
    /// Resume even when the data fingerprint or the global batch differ from the checkpoint's.
    public var ignoreResumeMismatch: Bool = false
    /// When every rank runs on one node, all-reduce gradients by reading the other ranks' buffers in node-shared
    /// memory (GradientReducer's in-place path) instead of sending messages. Off: `--no-shared-memory`.
    public var sharedMemoryReduction: Bool = true
    /// With the node-shared-memory reduction, the node keeps one copy of the parameters and each rank updates only
    /// its shares of it (ZeRO stage 1); off (`--no-shard-optimizer`): every rank runs the whole AdamW on its own copy.
    public var shardOptimizer: Bool = true
    /// Element type of the gradients sent between nodes (multi-node jobs; `--grad-comm-dtype bf16` halves those
    /// bytes, summing in float32; results then depend on the topology). Single-node jobs send none.
    public var gradCommDtype: GradientReducer.CommDtype = .fp32

    public init(modelDir: URL, trainFile: URL, evalFile: URL?, outputDir: URL) {
        self.modelDir = modelDir; self.trainFile = trainFile; self.evalFile = evalFile; self.outputDir = outputDir
    }

    /// Cross-field checks that need no files (usage errors, exit code 2).
    public func validate(worldSize: Int) throws {
        func usage(_ m: String) -> TrainingError { TrainingError(m, exitCode: 2) }
        guard batchSize > 0 else { throw usage("--batch-size must be positive (got \(batchSize))") }
        guard learningRate >= 0, learningRate.isFinite else { throw usage("--learning-rate must be a non-negative number (got \(learningRate))") }
        guard weightDecay >= 0 else { throw usage("--weight-decay must be non-negative (got \(weightDecay))") }
        guard maxLength >= 2 else { throw usage("--max-length must be at least 2 (got \(maxLength))") }
        guard numTrainEpochs > 0 || maxSteps > 0 else { throw usage("--num-train-epochs must be positive (or give --max-steps)") }
        guard (0..<1).contains(validationSplit) else { throw usage("--validation-split must be in [0, 1) (got \(validationSplit))") }
        guard (0...1).contains(warmupRatio) else { throw usage("--warmup-ratio must be in [0, 1] (got \(warmupRatio))") }
        if matmulPrecision == .bf16 && !MatmulPrecision.bf16Supported {
            throw usage("--bf16 needs a CPU with AVX512-BF16 (Intel Cooper Lake/Sapphire Rapids, AMD Zen 4 or later; `grep avx512_bf16 /proc/cpuinfo` finds nothing here); drop --bf16 to train in fp32")
        }
        if worldSize > 1, trainFile.relativePath == "-" || evalFile?.relativePath == "-" {
            throw usage("--train-file - / --eval-file - (standard input) needs a single process: mpirun gives stdin to rank 0 only; write the data to a file and pass its path")
        }
        if let c = centerRewardsCoefficient, !(c >= 0 && c.isFinite) {
            throw usage("--center-rewards-coefficient must be a non-negative number (got \(c))")
        }
        if task == .dpo { try dpo.validate(maxLength: maxLength, validationSplit: validationSplit) }
        if task == .grpo { try grpo.validate(config: self, worldSize: worldSize) }
        guard maxSteps >= 0 else { throw usage("--max-steps must be 0 (train --num-train-epochs) or positive (got \(maxSteps))") }
        if loadBestModelAtEnd {
            // The best evaluation must have a checkpoint: every evaluation step is a save step.
            let ok = evalSteps == 0 ? saveSteps == 0 : (saveSteps > 0 && evalSteps % saveSteps == 0)
            guard ok else {
                throw usage("--load-best-model-at-end needs a checkpoint at every evaluation: give --save-steps \(evalSteps == 0 ? "0 (save at each epoch end, where evaluation runs)" : "\(evalSteps) (the --eval-steps)")")
            }
        }
        if initFromConfig != nil && lora != nil {
            throw usage("--init-from-config with --lora-r: LoRA trains adapters on a frozen pre-trained base, and a freshly initialised base has learned nothing; train every weight (drop --lora-r), then add LoRA to the result")
        }
        let micro = microBatchSize ?? (batchSize / max(worldSize, 1))
        guard micro > 0, batchSize % (worldSize * micro) == 0 else {
            let perRank = Double(batchSize) / Double(worldSize)
            throw usage("--batch-size \(batchSize) (the global batch) must be a multiple of world size \(worldSize) × --micro-batch-size \(micro)"
                        + (perRank.rounded() == perRank ? "" : "; with \(worldSize) ranks use a global batch divisible by \(worldSize), e.g. \(batchSize / worldSize * worldSize + worldSize)"))
        }
    }

    /// The model's config file: the `--init-from-config` file, else `modelDir`/config.json.
    public var modelConfigFile: URL {
        guard let c = initFromConfig else { return modelDir.appendingPathComponent("config.json") }
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: c.path, isDirectory: &isDir) && isDir.boolValue ? c.appendingPathComponent("config.json") : c
    }

    /// The settings a resumed run must share with the checkpoint, in a stable text form.
    public var hyperparameterSummary: [String: String] {
        var summary = ["batch_size": "\(batchSize)", "learning_rate": "\(learningRate)", "weight_decay": "\(weightDecay)",
         "warmup_steps": "\(warmupSteps)", "warmup_ratio": "\(warmupRatio)", "lr_scheduler_type": lrSchedule.rawValue,
         "max_grad_norm": "\(maxGradNorm)", "adam_beta1": "\(adamBeta1)", "adam_beta2": "\(adamBeta2)",
         "adam_epsilon": "\(adamEpsilon)", "max_length": "\(maxLength)", "seed": "\(seed)",
         "num_train_epochs": "\(numTrainEpochs)", "max_steps": "\(maxSteps)", "dropout": "\(dropout)", "group_by_length": "\(groupByLength)",
         "precision": matmulPrecision.rawValue,
         "dpo": task == .dpo ? dpo.summary : "none",
         "lora": lora.map { "r=\($0.r) alpha=\($0.alpha) dropout=\($0.dropout) rslora=\($0.useRSLoRA) targets=\($0.targetModules ?? [])" } ?? "none"]
        if let c = centerRewardsCoefficient { summary["center_rewards_coefficient"] = "\(c)" }
        if task == .grpo { summary["grpo"] = grpo.summary }   // only for GRPO: older runs match   // only when set: older runs match
        return summary
    }

    /// Micro-batch per rank and accumulation steps for `worldSize`.
    public func accumulation(worldSize: Int) -> (micro: Int, steps: Int) {
        let micro = microBatchSize ?? (batchSize / max(worldSize, 1))
        return (micro, batchSize / (worldSize * micro))
    }
}
