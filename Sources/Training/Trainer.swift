// Trainer: the data-parallel fine-tuning loop for any `TrainingTask` (sequence classification, causal language
// modelling). Every rank holds a full replica, runs its slice of each global batch (split into micro-batches), and
// all-reduces the flat gradient buffer; the loss is normalised by the global loss count of the step (examples or
// target tokens), so the result does not depend on the rank count or on the accumulation split. The loop emits typed
// events (TrainingEvents.swift); its consumers (best-model tracking and early stopping, the caller's display) may
// stop it. The parts: ResumePlan (what to continue from), NodeSharedSetup (shared memory, ZeRO-1), TrainStep (one
// optimizer step, also timed by `bench`), MetricsWindow (log records), CheckpointSaver (saves and the final folder).
// Deliberately not here: CLI parsing (the executable), layer math (Model), MPI (Dist, behind Communicator).
import Foundation
import Dist
import Model
import Tokenizers
#if canImport(Glibc)
import Glibc
#endif

public final class Trainer {
    public let config: TrainConfig
    public let comm: Communicator
    /// The model and data being fine-tuned (classification or causal LM).
    public let task: TrainingTask
    let optimizer: AdamW
    /// sha256 of the base weights, recorded in checkpoints; hashed on a background thread (91 MB for MiniLM is
    /// ~0.1 s that start-up need not wait for) and awaited at the first save.
    let modelFingerprintFuture: BackgroundValue<String>
    var modelFingerprint: String { modelFingerprintFuture.value }
    /// The checkpoint this run resumes from, and its state.
    let resumed: ResumePlan?
    /// The run's identity, recorded in every checkpoint: a fresh start makes one, a resume keeps the checkpoint's.
    let runId: String?
    /// sha256 of the base model's config.json and the `--model` path (recorded with the weights' sha256).
    let modelConfigFingerprint: String?
    /// `--metric-for-best-model` as the task reports it (`eval_` prefixed; the task's default when not given).
    let bestMetric: String
    /// Messages about the resume decision and the all-reduce path, reported at start.
    var notices: [String] = []
    /// Every logged and evaluated record (restored on resume), written to metrics.jsonl.
    var history: [[String: Double]] = []
    /// The data order (global sample cursor over seeded per-epoch permutations, this rank's slices).
    let plan: GlobalBatchPlan
    private var epochCache: (epoch: Int, steps: [StepPlan])?
    let stepper: TrainStep
    let saver: CheckpointSaver

    public init(config: TrainConfig, comm: Communicator) throws {
        self.config = config
        self.comm = comm
        try config.validate(worldSize: comm.worldSize)

        // Start-up work that can fail on its own (checkpoint, model and data files) runs before any collective, and
        // usually fails alike on every rank: one all-reduce then tells every rank who failed, so the job prints one
        // message and ends cleanly with its exit code instead of one copy per rank and an MPI abort.
        do {
            let decision = try ResumePlan.decide(config: config, worldSize: comm.worldSize, isRoot: comm.isRoot)
            resumed = decision.plan
            notices = decision.notices
            // Weights: the checkpoint folder is itself a model folder.
            let (micro, _) = config.accumulation(worldSize: comm.worldSize)
            task = try TaskFactory.make(config: config, checkpoint: resumed?.ref.url, microBatch: micro)
            try resumed?.check(task, ignoreMismatch: config.ignoreResumeMismatch)
            do {
                plan = try GlobalBatchPlan(sampleCount: task.trainCount, globalBatch: config.batchSize, microBatch: micro,
                                           worldSize: comm.worldSize, rank: comm.rank, seed: config.seed,
                                           lengths: config.groupByLength ? task.trainLengths : nil)
            } catch {
                throw TrainingError("\(error)", exitCode: 2)
            }
            let total = Self.totalSteps(config: config, stepsPerEpoch: plan.stepsPerEpoch)
            if let r = resumed, r.state.globalStep > total {
                // Its weights are step N's: relabelling them as an earlier step would report a wrong result.
                throw TrainingError("\(r.ref.url.path) is at step \(r.state.globalStep), past the end of this run (\(total) step\(total == 1 ? "" : "s")\(config.maxSteps > 0 ? ", --max-steps \(config.maxSteps)" : "")); give --max-steps \(r.state.globalStep) or more to continue that run, another --output-dir, or --overwrite-output-dir to start over", exitCode: 2)
            }
            bestMetric = try BestModelTracker.metricName(config.metricForBestModel, task: task)
            if task.evalCount == 0 {
                for (flag, given) in [("--eval-steps", config.evalSteps > 0), ("--early-stopping-patience", config.earlyStoppingPatience > 0),
                                      ("--load-best-model-at-end", config.loadBestModelAtEnd)] where given {
                    throw TrainingError("\(flag) needs evaluation data: give --eval-file or --validation-split", exitCode: 2)
                }
            }
            ComputeThreads.set(config.threads)
            optimizer = TrainStep.makeOptimizer(task, config: config)
            if let r = resumed {
                try r.restore(optimizer, store: task.store)
                history = r.state.logHistory
                modelFingerprintFuture = BackgroundValue(ready: r.state.modelFingerprint)
                runId = r.state.runId
                modelConfigFingerprint = r.state.modelConfigFingerprint ?? Self.configFingerprint(config)
            } else {
                runId = UUID().uuidString
                modelConfigFingerprint = Self.configFingerprint(config)
                let weights = config.modelDir.appendingPathComponent("model.safetensors")
                if let initConfig = config.initFromConfig {
                    // No weights were read: the run starts from the config's initialisation.
                    modelFingerprintFuture = BackgroundValue(ready: "")
                    notices.append("initialised every weight from \(initConfig.relativePath) as transformers initialises a new model (seed \(config.seed))")
                } else {
                    modelFingerprintFuture = comm.isRoot ? BackgroundValue { (try? Checkpoint.sha256(of: weights)) ?? "" } : BackgroundValue(ready: "")
                }
            }
        } catch {
            throw try StartupFailure.agreed(error, comm: comm)
        }
        try StartupFailure.agreeNoneFailed(comm: comm)

        // A rank started with other arguments or data must fail now, naming itself, not diverge silently.
        var fields = config.hyperparameterSummary.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        fields += [("shared_memory_reduction", "\(config.sharedMemoryReduction)"), ("shard_optimizer", "\(config.shardOptimizer)"), ("train_data", task.dataFingerprint), ("eval_examples", "\(task.evalCount)"),
                   ("labels", task.labels.joined(separator: ",")), ("model", task.configPath), ("resume_step", "\(resumed?.state.globalStep ?? 0)")]
        do { try ConsistencyCheck.verify(fields, communicator: comm) } catch {
            throw TrainingError("\(error)")
        }
        // Replicas start bit-identical: rank 0's parameters (including any freshly initialised head) win.
        try comm.broadcast(UnsafeMutableRawBufferPointer(task.store.values), root: 0)
        try task.prepare(comm: comm)
        let setup = try NodeSharedSetup.make(comm: comm, store: task.store, sharedMemory: config.sharedMemoryReduction,
                                             shardOptimizer: config.shardOptimizer, gradCommDtype: config.gradCommDtype)
        if let n = setup.notice { notices.append(n) }
        stepper = TrainStep(task: task, comm: comm, setup: setup, optimizer: optimizer, debug: config.debug)
        // The weights just loaded from a checkpoint are that checkpoint's: a final model at its step links its files.
        saver = CheckpointSaver(comm: comm, task: task, stepper: stepper, config: config,
                                resumedFrom: resumed.map { ($0.state.globalStep, $0.ref.url) })
    }

    var stepsPerEpoch: Int { plan.stepsPerEpoch }

    var totalSteps: Int { Self.totalSteps(config: config, stepsPerEpoch: stepsPerEpoch) }

    static func totalSteps(config: TrainConfig, stepsPerEpoch: Int) -> Int {
        config.maxSteps > 0 ? config.maxSteps : Int((Double(stepsPerEpoch) * config.numTrainEpochs).rounded(.up))
    }

    /// The step this run already finished at, when it is a rerun of a finished run with nothing left to train (its
    /// last checkpoint is at the end and eval_results.json records that step): the caller then leaves the folder
    /// untouched. nil when there is training (or the final publishing, after a crash) left to do.
    /// An early-stopped run counts as finished at its stop step (its checkpoint there records the stop).
    public var finishedStep: Int? {
        guard let r = resumed, r.state.globalStep == totalSteps || stoppedEarlyAt != nil else { return nil }
        let step = r.state.globalStep
        let results = config.outputDir.appendingPathComponent("eval_results.json")
        guard let d = try? Data(contentsOf: results), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
              (o["global_step"] as? NSNumber)?.intValue == step else { return nil }
        return step
    }

    /// The step early stopping ended the resumed run at, when its checkpoint is that stop's (before the requested end).
    public var stoppedEarlyAt: Int? {
        guard let r = resumed, r.state.globalStep < totalSteps,
              r.state.logHistory.contains(where: { $0["early_stopped"] == 1 && $0["step"] == Double(r.state.globalStep) })
        else { return nil }
        return r.state.globalStep
    }

    /// What the resume decision reported (for a caller that does not run the loop: `finishedStep`).
    public var resumeNotices: [String] { notices }

    static func configFingerprint(_ config: TrainConfig) -> String? {
        try? Checkpoint.sha256(of: config.modelConfigFile)
    }

    /// Whether AdamW is sharded over the ranks (ZeRO stage 1; NodeSharedSetup).
    var shardsOptimizer: Bool { stepper.shardsOptimizer }

    /// The plan of global step `step`: the next global batch of the epoch's seeded permutation and this rank's
    /// micro-batches of it. Depends only on (seed, step, data size, global batch), never on the world size, so a
    /// resumed run may use another rank count and still see the same samples.
    func stepPlan(_ step: Int) -> StepPlan {
        let epoch = step / stepsPerEpoch
        if epochCache?.epoch != epoch { epochCache = (epoch, plan.steps(epoch: epoch)) }
        return epochCache!.steps[step % stepsPerEpoch]
    }

    func schedule() -> LRSchedule {
        let total = totalSteps
        let warmup = config.warmupSteps > 0 ? config.warmupSteps : Int((config.warmupRatio * Double(total)).rounded(.up))
        return LRSchedule(kind: config.lrSchedule, peak: config.learningRate, warmupSteps: warmup, totalSteps: total)
    }

    /// Runs the training (from the resumed step, if any) and returns the final metrics (identical on every rank).
    /// `onEvent` hears every event on every rank; answering `.stop` (on any rank) ends the loop after the current
    /// step with a checkpoint, as early stopping does.
    public func run(onEvent: (TrainingEvent) -> LoopControl = { _ in .continue }) throws -> TrainingResult {
        let total = totalSteps, schedule = schedule(), firstStep = resumed?.state.globalStep ?? 0
        var tracker = BestModelTracker(metric: bestMetric, patience: config.earlyStoppingPatience,
                                       totalSteps: total, best: resumed?.best)
        // Every event goes to the history (metrics.jsonl), to best-model tracking and early stopping, and to the caller.
        var bestEval: EvalRecord?
        func emit(_ event: TrainingEvent) -> LoopControl {
            if let record = event.metricsRecord { history.append(record) }
            let mine = tracker.observe(event), theirs = onEvent(event)
            if case .evaluated(let e) = event, tracker.best?.step == e.step { bestEval = e }
            return mine == .stop || theirs == .stop ? .stop : .continue
        }
        _ = emit(.started(summary(total: total)))
        Preemption.install()
        let sampleLog = comm.isRoot ? config.sampleLog.flatMap(SampleLog.init) : nil
        let start = Date()
        // Carried across resumes so that train_loss is the mean over every step of the run.
        var lossSum = resumed?.state.trainLossSum ?? 0, tokens: Int64 = 0
        var window = MetricsWindow(reducerStats: stepper.reducer.stats)
        var lastEval: EvalRecord?, launchToFirstStep: Double?
        var step = firstStep, stoppedEarly = false
        if let probe = stepper.probe { task.setProbe(probe.record) }
        defer { task.setProbe(nil) }
        func phase(_ p: ProgressRecord.Phase) {   // an evaluation or save begins (progress display)
            _ = emit(.progress(ProgressRecord(phase: p, step: step, totalSteps: total, epoch: Double(step) / Double(stepsPerEpoch),
                                              elapsedSeconds: Date().timeIntervalSince(start))))
        }
        @discardableResult func save(background: Bool) throws -> URL {
            phase(.saving)
            let url = try saver.save(step: step, background: background, state: {
                checkpointState(step: step, total: total, schedule: schedule, lossSum: lossSum, best: tracker.best)
            }, history: history, bestStep: tracker.best?.step)
            if comm.isRoot { _ = emit(.saved(url)) }
            return url
        }
        while step < total {
            let sp = stepPlan(step), lr = schedule.lr(forStep: step)
            let r = try stepper.run(sp, step: step, lr: lr, maxGradNorm: config.maxGradNorm,
                                    dropout: config.dropout ? DropoutContext(seed: config.seed, step: step) : nil)
            sampleLog?.write(step: step + 1, samples: sp.globalIndices, loss: r.loss)
            if step == firstStep { launchToFirstStep = try agreedSecondsSinceLaunch() }
            if config.stepDelayMs > 0 { usleep(UInt32(config.stepDelayMs) * 1000) }
            lossSum += r.loss; tokens += Int64(r.tokens); window.add(r)
            step += 1
            _ = emit(.progress(window.progress(step: step, totalSteps: total, epoch: Double(step) / Double(stepsPerEpoch),
                                               elapsed: Date().timeIntervalSince(start))))
            var control = LoopControl.continue
            if step % max(config.loggingSteps, 1) == 0 || step == total {
                let record = window.record(step: step, epoch: Double(step) / Double(stepsPerEpoch), totalSteps: total, lr: lr,
                                           last: r, elapsed: Date().timeIntervalSince(start), worldSize: comm.worldSize,
                                           reducerStats: stepper.reducer.stats, launchToFirstStep: launchToFirstStep,
                                           checkpoint: saver.takeStats())
                control = emit(.step(record))
            }
            let epochEnd = step % stepsPerEpoch == 0
            if task.evalCount > 0 && ((config.evalSteps > 0 && step % config.evalSteps == 0) || epochEnd || step == total) {
                phase(.evaluating)
                let e = try window.excluding { try evaluate(step: step) }
                lastEval = e
                if emit(.evaluated(e)) == .stop { control = .stop }
            }
            // Every rank learns whether any rank's consumer stopped the loop or any rank got a preemption signal.
            let agreed = try agreeOnStop(control == .stop && step < total)
            if agreed.stop {
                _ = emit(.stopped(StopRecord(step: step, bestStep: tracker.best?.step, bestMetric: tracker.best?.metric)))
                try save(background: false)
                stoppedEarly = true
                break
            }
            if agreed.signal != 0 && step < total {
                throw PreemptedError(signal: agreed.signal, checkpoint: try save(background: false))
            }
            if (config.saveSteps > 0 && step % config.saveSteps == 0) || epochEnd || step == total {
                try save(background: step != total)
            }
        }
        return try finish(lastEval: lastEval, bestEval: bestEval, best: tracker.best, lossSum: lossSum, tokens: tokens,
                          since: start, firstStep: firstStep, lastStep: stoppedEarly ? step : total, total: total,
                          launchToFirstStep: launchToFirstStep, emit: emit)
    }

    /// The end of a run: the final evaluation again when nothing was left to train, the final model published (the
    /// best checkpoint's with --load-best-model-at-end), the result reported (identical on every rank).
    func finish(lastEval: EvalRecord?, bestEval: EvalRecord?, best: (metric: Double, step: Int)?, lossSum: Double,
                tokens: Int64, since start: Date, firstStep: Int, lastStep: Int, total: Int, launchToFirstStep: Double?,
                emit: (TrainingEvent) -> LoopControl) throws -> TrainingResult {
        var lastEval = lastEval
        // Nothing left to train (resumed a finished run): report the final evaluation again.
        if firstStep >= total, task.evalCount > 0 { lastEval = try evaluate(step: total) }
        // --load-best-model-at-end: the final folder holds the best checkpoint's model, and the results are its
        // evaluation (a best found before this resume: its record in the history, without the confusion matrix).
        let finalStep = config.loadBestModelAtEnd ? best?.step : nil
        if let b = finalStep, b != lastEval?.step {
            lastEval = bestEval ?? history.last { $0["step"] == Double(b) && $0.keys.contains { $0.hasPrefix("eval_") } }
                .map { EvalRecord(step: b, epoch: $0["epoch"] ?? 0, values: $0.filter { $0.key.hasPrefix("eval_") }, confusion: nil) }
        }
        var result = finalResult(lastEval: lastEval, lossSum: lossSum, tokens: tokens, since: start, firstStep: firstStep,
                                 lastStep: lastStep, launchToFirstStep: launchToFirstStep, best: best)
        result.finalModelStep = finalStep
        if comm.isRoot {
            try saver.publishFinal(step: result.globalStep, best: finalStep, history: history)
            _ = emit(.saved(config.outputDir))
        }
        try comm.barrier()
        _ = emit(.finished(result))
        return result
    }

    /// The run's outcome: the last evaluation, train_loss over every step of the run (across resumes; an old
    /// checkpoint without the running sum: over this run's steps), throughput and the best evaluation.
    func finalResult(lastEval: EvalRecord?, lossSum: Double, tokens: Int64, since start: Date, firstStep: Int, lastStep: Int,
                     launchToFirstStep: Double?, best: (metric: Double, step: Int)?) -> TrainingResult {
        let oldCheckpoint = resumed != nil && resumed?.state.trainLossSum == nil
        let runtime = Date().timeIntervalSince(start)
        return TrainingResult(
            eval: lastEval?.values ?? [:], confusion: lastEval?.confusion,
            trainLoss: lossSum / Double(max(oldCheckpoint ? lastStep - firstStep : lastStep, 1)),
            runtimeSeconds: runtime, launchToFirstStep: launchToFirstStep, tokensPerSecond: Double(tokens) / max(runtime, 1e-9),
            trainSamples: task.trainCount, globalStep: lastStep, best: best.map { ($0.step, $0.metric) },
            epoch: Double(totalSteps) / Double(stepsPerEpoch))
    }

    /// The run's shape, for `.started`.
    func summary(total: Int) -> TrainingSummary {
        let (micro, accum) = config.accumulation(worldSize: comm.worldSize)
        return TrainingSummary(
            trainExamples: task.trainCount, evalExamples: task.evalCount, labels: task.labels, totalSteps: total,
            stepsPerEpoch: stepsPerEpoch, worldSize: comm.worldSize, microBatch: micro, accumulationSteps: accum,
            parameters: task.store.parameterCount, allReduceBytes: task.store.count * 4,
            initialized: resumed == nil ? task.initialized : [], truncated: task.truncated,
            truncatedAtPositions: (task as? CausalLMTask).map { config.maxLength >= $0.maxPositions } ?? false,
            notices: notices + skippedRowsNotice + ((task as? DPOTask)?.notices ?? []) + ((task as? GRPOTask)?.notices ?? []))
    }

    /// Causal LM: the prompt→response rows truncation left without a response token, which were skipped (as `eval`
    /// reports them).
    var skippedRowsNotice: [String] {
        if let rm = task as? RewardTask, rm.trainSkipped + rm.evalSkipped > 0 {
            let n = rm.trainSkipped + rm.evalSkipped
            let evalName = config.evalFile?.lastPathComponent ?? "the validation split"
            let parts = (rm.trainSkipped > 0 ? ["\(rm.trainSkipped) of \(config.trainFile.lastPathComponent)"] : [])
                + (rm.evalSkipped > 0 ? ["\(rm.evalSkipped) of \(evalName)"] : [])
            return ["warning: preference pairs with a chosen or rejected text longer than --max-length \(rm.maxLength) tokens were skipped (as TRL's RewardTrainer filters them): \(parts.joined(separator: " and ")); raise --max-length to keep \(n == 1 ? "it" : "them")"]
        }
        guard let lm = task as? CausalLMTask, lm.trainDropped + lm.evalDropped > 0 else { return [] }
        let limit = min(config.maxLength, lm.maxPositions)
        return ["warning: \(lm.trainDropped) prompt→response row\(lm.trainDropped == 1 ? "" : "s") of \(config.trainFile.lastPathComponent)"
                + (lm.evalDropped > 0 ? " and \(lm.evalDropped) of \(config.evalFile?.lastPathComponent ?? "the eval file")" : "")
                + " left no response token within \(limit) tokens and \(lm.trainDropped + lm.evalDropped == 1 ? "was" : "were") skipped"
                + (config.maxLength < lm.maxPositions ? "; raise --max-length to keep them" : " (the model's n_positions); shorten their prompts to keep them")]
    }

    /// Collective: whether any rank asks to stop, and the preemption signal any rank received (0: none).
    func agreeOnStop(_ stop: Bool) throws -> (stop: Bool, signal: Int32) {
        var flags: [Int64] = [Int64(Preemption.pending), stop ? 1 : 0]
        try comm.allReduce(&flags, op: .max)
        return (flags[1] != 0, Int32(flags[0]))
    }

    /// Start-up cost as a user sees it: process creation → the first optimizer step done (slowest rank; collective).
    func agreedSecondsSinceLaunch() throws -> Double? {
        guard let t = ProcessClock.secondsSinceLaunch() else { return nil }
        var v = [t]
        try comm.allReduce(&v, op: .max)
        return v[0]
    }

    /// What a checkpoint at `step` records besides tensors (rank 0).
    func checkpointState(step: Int, total: Int, schedule: LRSchedule, lossSum: Double, best: (metric: Double, step: Int)?) -> TrainerState {
        TrainerState(
            globalStep: step, epoch: Double(step) / Double(stepsPerEpoch),
            sampleCursor: step < total ? stepPlan(step).cursor : stepPlan(step - 1).nextCursor,
            adamStep: optimizer.stepCount, seed: config.seed, worldSize: comm.worldSize, globalBatch: config.batchSize,
            totalSteps: total, schedule: schedule, dataFingerprint: task.dataFingerprint, modelFingerprint: modelFingerprint,
            hyperparameters: config.hyperparameterSummary, labels: task.labels, bestMetric: best?.metric, bestStep: best?.step,
            logHistory: history, trainLossSum: lossSum, runId: runId, modelConfigFingerprint: modelConfigFingerprint,
            modelPath: config.modelDir.path, bestMetricName: best == nil ? nil : bestMetric)
    }

    /// Exact metrics over the eval set at `step` (collective): each rank evaluates a contiguous shard (no duplicates),
    /// and the integer counts and loss sums are all-reduced.
    public func evaluate(step: Int) throws -> EvalRecord {
        let (micro, _) = config.accumulation(worldSize: comm.worldSize)
        let stats = try task.evaluateAll(comm: comm, batchSize: micro)
        return EvalRecord(step: step, epoch: Double(step) / Double(stepsPerEpoch), values: task.metrics(stats),
                          confusion: (task as? ClassificationTask)?.confusion(stats))
    }
}

extension TrainingEvent {
    /// The metrics.jsonl object of a step, evaluation or early-stop record (nil for the other events).
    var metricsRecord: [String: Double]? {
        switch self {
        case .step(let r): return r.metrics
        case .evaluated(let r): return r.metrics
        case .stopped(let r): return r.metrics
        case .started, .saved, .finished, .progress: return nil
        }
    }
}

/// `--log-samples` (a testing hook): every step's global sample indices and loss, appended as JSON lines (rank 0).
final class SampleLog {
    private let handle: FileHandle
    init?(_ url: URL) {
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: url.path) else { return nil }
        _ = try? h.seekToEnd()
        handle = h
    }
    deinit { try? handle.close() }

    func write(step: Int, samples: [Int], loss: Double) {
        let line = JSONLines.objectLine(["step": Double(step), "loss": loss],
                                        appending: [("samples", "[" + samples.map(String.init).joined(separator: ",") + "]")])
        handle.write(Data((line + "\n").utf8))
    }
}

/// A value computed once on a background thread; `value` waits for it. For start-up work nothing needs at once.
/// The semaphore orders the write of `result` before every read.
final class BackgroundValue<T: Sendable>: @unchecked Sendable {
    private var result: T?
    private let done = DispatchSemaphore(value: 0)

    init(ready: T) { result = ready; done.signal() }

    init(_ compute: @escaping @Sendable () -> T) {
        Thread.detachNewThread { [self] in
            result = compute()
            done.signal()
        }
    }

    var value: T {
        done.wait()
        defer { done.signal() }   // later callers pass straight through
        return result!
    }
}
