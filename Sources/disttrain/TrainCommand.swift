// `disttrain train`: flags → TrainConfig, communicator from the launch environment, events shown on rank 0
// (Progress.swift), and at the end eval_results.json and report.html (Training/Report.swift) on rank 0.
// Deliberately not here: the loop (Training/Trainer.swift) and parsing the --config YAML (ConfigFile.swift expands it
// into flags before this struct is parsed; the option below only documents it and keeps it out of "unknown option").
import ArgumentParser
import Dist       // makeCommunicator, MPI finalize, GradientReducer.CommDtype (--grad-comm-dtype)
import Foundation
import Model      // LRScheduleKind (--lr-scheduler-type)
import Training
#if canImport(Glibc)
import Glibc
#endif

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a BERT-family or GPT-2 model, fully or with LoRA: sequence classification or regression, token tagging, extractive QA, causal LM, a reward model, DPO or GRPO (--task).",
        discussion: """
        --batch-size is the GLOBAL batch (samples per optimizer step over all ranks); each rank runs \
        --micro-batch-size samples per forward/backward and gradients accumulate to the global batch.

        Example:
          disttrain train --model models/all-MiniLM-L6-v2 --train-file train.jsonl \\
              --eval-file test.jsonl --output-dir runs/spam --num-train-epochs 1 \\
              --batch-size 32 --learning-rate 1e-4

        With a config file (keys are the long flag names, - or _; flags on the command line win):
          disttrain train --config run.yaml --learning-rate 2e-5
        """)

    @Option(help: ArgumentHelp("YAML file of flag values (e.g. `learning-rate: 5e-5`); flags given here override it.",
                               valueName: "file.yaml"))
    var config: String?

    @Option(help: ArgumentHelp("What to train: \(TaskKind.names) (default: auto, what the model folder is — a classifier or base encoder: classification; a GPT-2 LM: causal-lm; a reward model: reward).", valueName: "task"))
    var task: TaskKind = .auto
    // Model, data, LoRA, threads and logging flags: the shared groups of Options.swift.
    @OptionGroup var modelOptions: TrainModelOptions
    @OptionGroup var data: TrainDataOptions
    @Option(help: "Passes over the training data.") var numTrainEpochs: Double = 1
    // .unconditional: `--max-steps -1` reaches validate() (a clear message) instead of reading as a missing value.
    @Option(parsing: .unconditional, help: "Stop after this many optimizer steps (overrides --num-train-epochs when > 0).") var maxSteps: Int = 0
    @Option(help: "Global batch: samples per optimizer step, summed over all ranks.") var batchSize: Int = 32
    @Option(name: [.customLong("micro-batch-size"), .customLong("per-device-train-batch-size")],
            help: "Samples per rank per forward/backward (default: batch-size / world size).")
    var microBatchSize: Int?
    @Option(help: "Peak learning rate.") var learningRate: Double = 5e-5
    @Option(help: "AdamW decoupled weight decay (not applied to biases and LayerNorm).") var weightDecay: Double = 0
    @Option(help: "Linear warmup steps (the first step runs at lr 0, as in transformers).") var warmupSteps: Int = 0
    @Option(help: "Warmup as a fraction of the total steps (used when --warmup-steps is 0).") var warmupRatio: Double = 0
    @Option(help: "linear, cosine, constant or constant_with_warmup.") var lrSchedulerType: LRScheduleKind = .linear
    @Option(help: "Clip gradients to this global L2 norm (0 = off).") var maxGradNorm: Double = 1
    @Option(help: "Truncate inputs to this many tokens (special tokens included).") var maxLength: Int = 128
    @Option(help: "Seed for the data order, head initialisation and dropout.") var seed: UInt64 = 42
    @Option(help: "Log every N optimizer steps.") var loggingSteps: Int = 10
    @Option(help: "Evaluate every N steps (0 = at the end of each epoch).") var evalSteps: Int = 0
    @OptionGroup var threadsOption: ThreadsOption
    @Flag(help: "Turn dropout off during training.") var noDropout = false
    @Flag(help: "Matrix products of the layers (BERT family; GPT-2 except its LM head, not for DPO/reward) in bfloat16 with fp32 accumulation (needs AVX512-BF16); fp32 weights and optimizer.")
    var bf16 = false
    @Option(help: ArgumentHelp("--task reward: add c·mean((r_chosen + r_rejected)²) to the loss to keep rewards centred at 0 (TRL's center_rewards_coefficient; off by default, TRL suggests 0.01).", valueName: "c"))
    var centerRewardsCoefficient: Double?
    @OptionGroup var lora: LoRAOptions
    @Option(help: "Causal LM: tokens per packed block (default: --max-length).") var blockSize: Int?
    @Flag(help: "Causal LM: one example per text row instead of packed blocks.") var lmPerRow = false
    @Option(help: "DPO (--task dpo): beta, how far the policy may move from the reference (default 0.1). GRPO: the KL coefficient (default 0: no reference).") var beta: Double?
    @Option(help: ArgumentHelp("DPO: loss type, one of \(DPOLossType.names) (default sigmoid), as TRL 1.16 defines them. GRPO: \(GRPOLossType.allCases.map(\.rawValue).joined(separator: ", ")) (default \(GRPOSettings.defaultLossType.rawValue)).", valueName: "type"))
    var lossType: LossTypeOption?
    @Option(help: "DPO: label smoothing epsilon of --loss-type robust, in [0, 0.5).") var labelSmoothing: Double?
    @Option(help: "DPO: keep only the last N prompt tokens (prompt truncated from the left; must be < --max-length). Default: no prompt truncation, as TRL 1.16.")
    var maxPromptLength: Int?
    @Option(help: ArgumentHelp("DPO: compute the reference log-probabilities once before training and cache them in --output-dir (true), or each step (false, TRL's default).", valueName: "bool"))
    var precomputeRefLogProbs: Bool?
    @Option(help: ArgumentHelp("GRPO (--task grpo): the reward model, a sequence classifier with one output (BERT family or GPT-2, any tokenizer) scoring prompt + completion.", valueName: "dir"))
    var rewardModel: String?
    @Option(help: "GRPO: completions sampled per prompt (at least 2; default 8). --batch-size counts prompts, so a step trains on batch-size × num-generations completions.")
    var numGenerations: Int?
    @Option(help: "GRPO: completion tokens sampled at most (default 64; sampling stops earlier at EOS).") var maxCompletionLength: Int?
    @Option(help: "GRPO: sampling temperature (default 1; the objective's log-probabilities use it too, as TRL).") var temperature: Double?
    @Option(help: "GRPO: nucleus sampling probability (default 1: off).") var topP: Double?
    @Option(help: "GRPO: sample among the k most likely tokens (default 0: off).") var topK: Int?
    @Option(help: "GRPO: clipping range of the importance ratio (default 0.2; with --num-iterations > 1).") var epsilon: Double?
    @Option(help: "GRPO: upper clipping range (default: --epsilon).") var epsilonHigh: Double?
    @Option(help: "GRPO: optimizer steps per batch of rollouts, TRL's μ (default 1).") var numIterations: Int?
    @Option(help: ArgumentHelp("GRPO: reward scaling of the advantages: group (by each prompt's reward std; default), batch or none (default for --advantage rloo; batch normalises RLOO's advantages).", valueName: "mode"))
    var scaleRewards: RewardScaling?
    @Option(help: ArgumentHelp("GRPO: the objective: grpo (GRPOTrainer: group-mean baseline; default) or rloo (RLOOTrainer: leave-one-out baseline, KL in the reward, --beta default 0.05).", valueName: "kind"))
    var advantage: AdvantageEstimator?
    @Option(help: ArgumentHelp("GRPO: write every completion of each logged step to samples.jsonl (default true).", valueName: "bool"))
    var logCompletions: Bool?
    @Option(help: ArgumentHelp("Eval metric that picks the best checkpoint, as Hugging Face names it (`accuracy` or `eval_accuracy`; lower is better for loss and perplexity). Default: accuracy for classification, loss for language modelling.", valueName: "name"))
    var metricForBestModel: String?
    @Flag(help: "The final folder holds the best checkpoint's model (by --metric-for-best-model) instead of the last step's; needs evaluation data and a checkpoint at every evaluation.")
    var loadBestModelAtEnd = false
    @Option(help: "Stop after this many evaluations without improvement (0 = never).") var earlyStoppingPatience: Int = 0
    @Flag(help: "Plain random batches instead of grouping similar lengths (grouping cuts padding).") var noGroupByLength = false
    @Flag(help: "Check every collective's sequence and size across ranks, and activations/gradients for NaN/Inf.")
    var debug = false
    @OptionGroup var logging: LoggingOptions
    @Flag(help: "Do not write report.html at the end.") var noReport = false
    @Option(help: "Abort the job when a collective waits longer than this many seconds (0 = never).")
    var watchdogTimeout: Double = 300
    @Flag(help: "All-reduce gradients through MPI messages even when every rank runs on one node (default there: read the other ranks' gradients in place, in node-shared memory).")
    var noSharedMemory = false
    @Flag(help: "With node-shared memory: run the whole AdamW step on every rank instead of 1/W of it each (ZeRO-1, the default; same results).")
    var noShardOptimizer = false
    @Option(help: "Element type of gradients sent between nodes: fp32 (default) or bf16 (half the bytes, summed in float32; results then depend on how ranks are spread over nodes). No effect on one node.")
    var gradCommDtype: String = "fp32"
    @Option(help: "Save a checkpoint every N steps (0 = at the end of each epoch and of training).") var saveSteps: Int = 0
    @Option(help: "Keep at most K checkpoints, the newest and the best by --metric-for-best-model among them (0 = all).") var saveTotalLimit: Int = 0
    @Option(help: "auto (continue the run in --output-dir from its newest valid checkpoint, if any), never (start over: --output-dir must be empty, or give --overwrite-output-dir), or a checkpoint folder.") var resume: String = "auto"
    @Flag(help: "Delete what an earlier run wrote in a non-empty --output-dir and start over (refused if it holds files disttrain did not write).")
    var overwriteOutputDir = false
    @Flag(help: "Resume even if the data or the global batch differ from the checkpoint's.") var resumeIgnoreMismatch = false
    // Testing hooks, hidden from help: crash at a checkpoint phase, slow steps down, log sample indices.
    @Flag(help: "Token classification: later sub-tokens of a word carry its tag too (B-X as I-X), as run_ner's --label_all_tokens (default: only the first).")
    var labelAllTokens = false
    @Option(help: ArgumentHelp("Token classification: entity metrics in seqeval's default mode, or strict mode with a scheme: \(TagScheme.names).", valueName: "scheme"))
    var tagScheme: TagScheme = .default
    @OptionGroup var qa: QAOptions   // --doc-stride, --n-best-size, --max-answer-length, --version-2-with-negative, …
    @Option(help: .hidden) var faultInject: String?
    @Option(help: .hidden) var stepDelayMs: Int = 0
    @Option(help: .hidden) var logSamples: String?

    // The moved flags under their old names, for the task-specific code below (and code added beside it).
    var model: String? { modelOptions.model }
    var initFromConfig: String? { modelOptions.initFromConfig }
    var trainFile: String { data.trainFile }
    var evalFile: String? { data.evalFile }
    var outputDir: String { data.outputDir }
    var dataFormat: DataFormatOption? { data.dataFormat }
    var threads: Int? { threadsOption.threads }
    var loraR: Int { lora.loraR }

    func validate() throws {
        // Each group checks its own flags (Options.swift); these are train's.
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(microBatchSize, "--micro-batch-size")
        try Check.nonNegative(learningRate, "--learning-rate")
        try Check.maxLength(maxLength)
        guard GradientReducer.CommDtype(rawValue: gradCommDtype) != nil else {
            throw ValidationError("--grad-comm-dtype '\(gradCommDtype)' is unknown; use fp32 or bf16")
        }
        // --task, --tag-scheme, --scale-rewards and --advantage are enums (a bad value is refused by the parser with the
        // list of values); --loss-type takes DPO's or GRPO's names, and which ones depends on --task.
        let grpo = task == .grpo
        if let l = lossType, grpo, l.grpo == nil {
            throw ValidationError("--loss-type '\(l.rawValue)' is unknown for --task grpo; use one of \(GRPOLossType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let l = lossType, !grpo, l.dpo == nil {
            throw ValidationError("--loss-type '\(l.rawValue)' is unknown; use one of \(DPOLossType.names)")
        }
        if !grpo {
            let given = [("--reward-model", rewardModel != nil), ("--num-generations", numGenerations != nil),
                         ("--max-completion-length", maxCompletionLength != nil), ("--temperature", temperature != nil),
                         ("--top-p", topP != nil), ("--top-k", topK != nil), ("--epsilon", epsilon != nil),
                         ("--epsilon-high", epsilonHigh != nil), ("--num-iterations", numIterations != nil),
                         ("--scale-rewards", scaleRewards != nil), ("--advantage", advantage != nil), ("--log-completions", logCompletions != nil)]
            if let flag = given.first(where: { $0.1 })?.0 {
                throw ValidationError("\(flag) applies to --task grpo only; add --task grpo, or drop \(flag)")
            }
        }
        if task != .dpo {
            let given = [("--beta", beta != nil && !grpo), ("--loss-type", lossType != nil && !grpo), ("--label-smoothing", labelSmoothing != nil),
                         ("--max-prompt-length", maxPromptLength != nil), ("--precompute-ref-log-probs", precomputeRefLogProbs != nil)]
            if let flag = given.first(where: { $0.1 })?.0 {
                throw ValidationError("\(flag) applies to --task dpo only; add --task dpo, or drop \(flag)")
            }
        }
        if let d = dataFormat {
            if task == .tokenClassification, d.token == nil {
                throw ValidationError("--data-format \(d.rawValue): token-classification data is jsonl or conll")
            }
            if d == .conll, task != .tokenClassification, task != .auto {
                throw ValidationError("--data-format conll is token-classification data; --task \(task.rawValue) reads jsonl, csv or tsv")
            }
        }
    }

    var trainConfig: TrainConfig {
        let initConfig = initFromConfig.map { URL(fileURLWithPath: $0) }
        var c = TrainConfig(modelDir: modelOptions.modelDir, trainFile: URL(fileURLWithPath: trainFile),
                            evalFile: evalFile.map { URL(fileURLWithPath: $0) }, outputDir: URL(fileURLWithPath: outputDir))
        c.task = task
        c.labelAllTokens = labelAllTokens
        c.tagScheme = tagScheme
        c.tokenDataFormat = dataFormat?.token
        c.docStride = qa.docStride
        c.qaPostprocess = qa.settings
        c.numTrainEpochs = numTrainEpochs; c.maxSteps = maxSteps; c.batchSize = batchSize
        c.microBatchSize = microBatchSize; c.learningRate = learningRate; c.weightDecay = weightDecay
        c.warmupSteps = warmupSteps; c.warmupRatio = warmupRatio
        c.lrSchedule = lrSchedulerType
        c.maxGradNorm = maxGradNorm; c.maxLength = maxLength; c.seed = seed
        c.loggingSteps = loggingSteps; c.evalSteps = evalSteps
        c.columns = data.columns.columns
        c.labelsFile = data.labels.map { URL(fileURLWithPath: $0) }
        c.dataFormat = dataFormat?.table
        c.validationSplit = data.validationSplit
        c.threads = threadsOption.count
        c.dropout = !noDropout
        c.centerRewardsCoefficient = centerRewardsCoefficient
        c.matmulPrecision = bf16 ? .bf16 : .fp32
        c.lora = lora.config
        c.initFromConfig = initConfig
        c.blockSize = blockSize
        c.lmPerRow = lmPerRow
        if c.task == .grpo {
            c.grpo.rewardModel = rewardModel.map { URL(fileURLWithPath: $0) }
            if let advantage { c.grpo.advantage = advantage }
            // TRL's defaults differ by trainer: GRPOTrainer beta 0, scale_rewards group; RLOOTrainer beta 0.05, none.
            let rloo = c.grpo.advantage == .rloo
            c.grpo.beta = beta ?? (rloo ? 0.05 : 0)
            c.grpo.scaleRewards = scaleRewards ?? (rloo ? .none : .group)
            if let l = lossType?.grpo { c.grpo.lossType = l }
            if let numGenerations { c.grpo.numGenerations = numGenerations }
            if let maxCompletionLength { c.grpo.maxCompletionLength = maxCompletionLength }
            if let temperature { c.grpo.temperature = temperature }
            if let topP { c.grpo.topP = topP }
            if let topK { c.grpo.topK = topK }
            if let epsilon { c.grpo.epsilon = epsilon }
            c.grpo.epsilonHigh = epsilonHigh
            if let numIterations { c.grpo.numIterations = numIterations }
            if let logCompletions { c.grpo.logCompletions = logCompletions }
        } else {
            if let beta { c.dpo.beta = beta }
            if let l = lossType?.dpo { c.dpo.lossType = l }
        }
        if let labelSmoothing { c.dpo.labelSmoothing = labelSmoothing }
        c.dpo.maxPromptLength = maxPromptLength
        if let precomputeRefLogProbs { c.dpo.precomputeRefLogProbs = precomputeRefLogProbs }
        c.metricForBestModel = metricForBestModel
        c.earlyStoppingPatience = earlyStoppingPatience
        c.groupByLength = !noGroupByLength
        c.saveSteps = saveSteps
        c.saveTotalLimit = saveTotalLimit
        c.overwriteOutputDir = overwriteOutputDir
        c.loadBestModelAtEnd = loadBestModelAtEnd
        switch resume {
        case "auto": c.resume = .auto
        case "never", "none", "false": c.resume = .never
        default: c.resume = .path(URL(fileURLWithPath: resume))
        }
        c.ignoreResumeMismatch = resumeIgnoreMismatch
        c.debug = debug
        c.sharedMemoryReduction = !noSharedMemory
        c.shardOptimizer = !noShardOptimizer
        c.gradCommDtype = GradientReducer.CommDtype(rawValue: gradCommDtype) ?? .fp32
        if let f = faultInject, let colon = f.lastIndex(of: ":"), let st = Int(f[f.index(after: colon)...]) {
            c.faultInjection = (String(f[..<colon]), st)
        }
        c.stepDelayMs = stepDelayMs
        c.sampleLog = logSamples.map { URL(fileURLWithPath: $0) }
        return c
    }

    func run() throws {
        // Before anything slow: a preemption signal during start-up must set the flag, not kill the process.
        Preemption.install()
        let comm: Communicator
        do {
            comm = try makeCommunicator(environment: ProcessInfo.processInfo.environment,
                                        watchdogTimeout: watchdogTimeout, debug: debug)
        } catch {
            throw TrainingError("cannot start MPI: \(error)")
        }
        // Flag checks that depend only on the arguments and the world size fail identically on every rank, so every
        // rank can end MPI cleanly and exit 2, with rank 0 alone printing the one line (no MPI_ABORT banner).
        do {
            // Checked here, not in validate(): ConfigFile parses an instance without --model to learn the flag types.
            guard model != nil || initFromConfig != nil else {
                throw TrainingError("missing --model <folder> (or --init-from-config <config.json> to pre-train from scratch)", exitCode: 2)
            }
            try trainConfig.validate(worldSize: comm.worldSize)
        } catch let e as TrainingError {
            // Rank 0 prints before MPI_Finalize (a fence in OpenMPI): no rank can exit, and make mpirun kill the job,
            // before the line is out.
            if comm.isRoot { FileHandle.standardError.write(Data("error: \(e.message)\n".utf8)) }
            try? finalizeMPI(comm)
            throw ExitCode(e.exitCode)
        }
        do {
            try train(comm: comm)
            try finalizeMPI(comm)
        } catch let e as ExitCode {
            if e.rawValue == ExitPolicy.preempted { try? finalizeMPI(comm) }
            throw e
        } catch let e as StartupFailure {
            // Every rank knows start-up failed: one prints why, all end MPI cleanly (as for the flag checks above).
            if let m = e.message { FileHandle.standardError.write(Data("error: \(m)\n".utf8)) }
            try? finalizeMPI(comm)
            throw ExitCode(e.exitCode)
        } catch {
            // With several ranks, one rank's error must end the whole job rather than leave the others waiting in
            // a collective: print it (naming the rank) and abort through MPI.
            guard comm.worldSize > 1 else { throw error }
            let code = ExitPolicy.code(for: error)
            FileHandle.standardError.write(Data("error: [rank \(comm.rank)] \(error)\n".utf8))
            comm.abort(code: code)
        }
    }

    func train(comm: Communicator) throws {
        let config = trainConfig
        let trainer = try Trainer(config: config, comm: comm)
        let reporter = ProgressReporter(enabled: comm.isRoot, level: logging.level.level,
                                        terminal: Terminal(isTTY: isatty(STDERR_FILENO) == 1))
        if let step = trainer.finishedStep {
            // A rerun of a finished command: nothing to train, and the folder's results stay as they are.
            if comm.isRoot {
                for n in trainer.resumeNotices {
                    if n.hasPrefix("warning: ") { reporter.logger.warning("\(n.dropFirst("warning: ".count))") } else { reporter.logger.notice("\(n)") }
                }
                if trainer.stoppedEarlyAt != nil {
                    reporter.logger.notice("already finished (early-stopped at step \(step)): \(config.outputDir.path) holds its model and eval_results.json; nothing was written (--overwrite-output-dir to start over)")
                } else {
                    reporter.logger.notice("already finished at step \(step): \(config.outputDir.path) holds its model and eval_results.json; nothing was written (raise --max-steps or --num-train-epochs to train further, or --overwrite-output-dir to start over)")
                }
            }
            return
        }
        let result: TrainingResult
        do { result = try trainer.run(onEvent: reporter.handle) } catch let e as PreemptedError {
            reporter.terminal.finish()
            if comm.isRoot {
                var line = "\(e)"
                // OpenMPI's mpirun turns Ctrl-C (SIGINT, which it cannot forward) and SIGTERM into a SIGTERM to every
                // rank; the ranks save and exit 75, but mpirun then exits 1 whatever they return. Say so, and how to
                // get 75 through (SIGUSR1/SIGUSR2 are forwarded and mpirun then exits with the ranks' code).
                if e.signal == SIGTERM, ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil {
                    line += "; note: after Ctrl-C or SIGTERM mpirun itself exits 1 although the save completed — send SIGUSR1 to mpirun (it forwards it) to get exit code 75"
                }
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            throw ExitCode(ExitPolicy.preempted)
        }
        if comm.isRoot {
            // [[Int64]] prints as a JSON array of arrays.
            let line = jsonObjectLine(result.metrics, appending: result.confusion.map { [("eval_confusion_matrix", "\($0)")] } ?? [])
            print(line)
            try FileIO.writeAtomically(Data((line + "\n").utf8), to: config.outputDir.appendingPathComponent("eval_results.json"))
            if !noReport {
                // The run has succeeded: a report that cannot be written is a warning, not a failure.
                let report = config.outputDir.appendingPathComponent("report.html")
                do {
                    var input = ReportInput.load(outputDir: config.outputDir)
                    input.run = RunSummary(config: config, task: RunSummary.taskName(trainer.task, configured: config.task),
                                           summary: reporter.summary, worldSize: comm.worldSize)
                    try FileIO.writeAtomically(Data(TrainingReport.html(input).utf8), to: report)
                    reporter.logger.info("wrote \(report.path)")
                } catch {
                    reporter.logger.warning("could not write \(report.path): \(error)")
                }
            }
        }
    }
}

/// Ends MPI cleanly after the last collective (a world-size-1 run without mpirun has nothing to end).
func finalizeMPI(_ comm: Communicator) throws {
    if let mpi = comm as? MPICommunicator { try mpi.finalize() }
    if let dbg = comm as? DebugCommunicator, let mpi = dbg.inner as? MPICommunicator { try mpi.finalize() }
}
