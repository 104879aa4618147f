// Trainer: the data-parallel fine-tuning loop for sequence classifiers. Every rank holds a full replica, runs its
// slice of each global batch (split into micro-batches), and all-reduces the flat gradient buffer; the loss is
// normalised by the global number of examples in the step, so the result does not depend on the rank count or on
// the accumulation split. The loop emits typed events; the caller decides what to print (rank 0 only).
// Deliberately not here: CLI parsing (the executable), layer math (Model), MPI (Dist, behind Communicator).
import Foundation
import Dist
import Model
import Tokenizers
#if canImport(Glibc)
import Glibc
#endif

/// What the loop reports. `log` and `evaluated` carry the metrics written to metrics.jsonl.
public enum TrainingEvent {
    case started(TrainingSummary)
    case log([String: Double])
    case evaluated([String: Double])
    case saved(URL)
    case finished([String: Double])
}

/// The shape of a run, reported once at the start.
public struct TrainingSummary: Sendable {
    public var trainExamples: Int
    public var evalExamples: Int
    public var labels: [String]
    public var totalSteps: Int
    public var stepsPerEpoch: Int
    public var worldSize: Int
    public var microBatch: Int
    public var accumulationSteps: Int
    /// Trainable parameters (the all-reduced, optimised buffer: everything, or only a LoRA adapter and head).
    public var parameters: Int
    /// Bytes the gradient all-reduce moves per optimizer step (the trainable buffer, padding included).
    public var allReduceBytes: Int
    public var initialized: [String]
    public var truncated: Int
    /// What the resume logic decided (and warnings about skipped checkpoints).
    public var notices: [String]
}

/// One tokenized example.
struct EncodedExample {
    var ids: [Int32]
    var typeIds: [Int32]
    var label: Int
}

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
    let resumed: (ref: CheckpointRef, state: TrainerState)?
    /// Messages about the resume decision, reported at start.
    var notices: [String] = []
    let writer = CheckpointWriter()
    /// Every logged and evaluated record (restored on resume), written to metrics.jsonl.
    var history: [[String: Double]] = []
    var best: (metric: Double, step: Int)?
    /// Evaluations since `best` last improved (early stopping).
    var evalsWithoutImprovement = 0
    /// The confusion matrix [true][predicted] of the latest evaluation.
    public private(set) var lastConfusion: [[Int64]]?
    /// The data order (global sample cursor over seeded per-epoch permutations, this rank's slices).
    let plan: GlobalBatchPlan
    private var epochCache: (epoch: Int, steps: [StepPlan])?
    private(set) var reducer: GradientReducer
    /// ZeRO-1 on one node: the window whose rank-0 segment holds the node's single copy of the parameters (the
    /// store's values); each rank's AdamW writes its own shares there, and a barrier on it publishes them.
    private var sharedValues: NodeSharedMemory?
    /// The last checkpoint rank 0 committed in the foreground (step, folder); the final model links its files.
    private var lastSynchronousCheckpoint: (step: Int, url: URL)?

    public init(config: TrainConfig, comm: Communicator) throws {
        self.config = config
        self.comm = comm
        try config.validate(worldSize: comm.worldSize)

        // Start-up work that can fail on its own (checkpoint, model and data files) runs before any collective, and
        // usually fails alike on every rank: one all-reduce then tells every rank who failed, so the job prints one
        // message and ends cleanly with its exit code instead of one copy per rank and an MPI abort.
        do {
            // Resume decision: an explicit checkpoint must verify; `auto` takes the newest that does.
            var notes: [String] = []
            var resumeRef: CheckpointRef?
            switch config.resume {
            case .never: break
            case .path(let url):
                if let problem = Checkpoint.verify(url) {
                    throw TrainingError("--resume \(url.path): \(problem); pick another checkpoint or use --resume auto")
                }
                let name = url.lastPathComponent
                resumeRef = CheckpointRef(url: url, step: Int(name.dropFirst("checkpoint-".count)) ?? 0)
            case .auto:
                resumeRef = Checkpoint.newestValid(in: config.outputDir) { notes.append("warning: \($0)") }
            }
            var resumedState: TrainerState?
            if let ref = resumeRef {
                let state = try Checkpoint.readState(ref.url)
                if state.globalBatch != config.batchSize && !config.ignoreResumeMismatch {
                    throw TrainingError("\(ref.url.path): the checkpoint used --batch-size \(state.globalBatch), this run \(config.batchSize); the global batch must stay the same to continue the same sample order (or pass --resume-ignore-mismatch)")
                }
                notes.append("resuming from \(ref.url.lastPathComponent) (step \(state.globalStep), saved with \(state.worldSize) rank(s), now \(comm.worldSize))")
                // Changing a hyperparameter on resume is allowed (e.g. a lower learning rate), but never silent.
                let now = config.hyperparameterSummary
                let changed = state.hyperparameters.keys.sorted().filter { k in now[k] != nil && now[k] != state.hyperparameters[k] }
                if !changed.isEmpty {
                    notes.append("warning: resuming with other settings than \(ref.url.lastPathComponent) was trained with: "
                                 + changed.map { "\($0) \(state.hyperparameters[$0]!) -> \(now[$0]!)" }.joined(separator: ", "))
                }
                resumedState = state
            }
            notices = notes

            // Weights: the checkpoint folder is itself a model folder.
            let (micro, _) = config.accumulation(worldSize: comm.worldSize)
            task = try TaskFactory.make(config: config, checkpoint: resumeRef?.url, microBatch: micro)
            if let ref = resumeRef, let state = resumedState {
                if state.dataFingerprint != task.dataFingerprint && !config.ignoreResumeMismatch {
                    throw TrainingError("\(ref.url.path): the checkpoint was trained on different data (fingerprint \(state.dataFingerprint.prefix(12)) vs \(task.dataFingerprint.prefix(12))); use the same --train-file, a new --output-dir, or --resume-ignore-mismatch")
                }
                if state.labels != task.labels {
                    throw TrainingError("\(ref.url.path): the checkpoint's labels \(state.labels) differ from the data's \(task.labels); use a new --output-dir")
                }
            }
            do {
                plan = try GlobalBatchPlan(sampleCount: task.trainCount, globalBatch: config.batchSize, microBatch: micro,
                                           worldSize: comm.worldSize, rank: comm.rank, seed: config.seed,
                                           lengths: config.groupByLength ? task.trainLengths : nil)
            } catch {
                throw TrainingError("\(error)", exitCode: 2)
            }
            reducer = GradientReducer(communicator: comm)
            ComputeThreads.set(config.threads)
            optimizer = AdamW(store: task.store, config: AdamWConfig(
                beta1: Float(config.adamBeta1), beta2: Float(config.adamBeta2),
                eps: Float(config.adamEpsilon), weightDecay: Float(config.weightDecay)),
                rowSparse: task.gradientSync.sparseTables)
            if let ref = resumeRef, let state = resumedState {
                let opt = try SafeTensorsFile(url: ref.url.appendingPathComponent(Checkpoint.optimizerName))
                var m = [Float](repeating: 0, count: task.store.count), v = m
                for e in task.store.entries {
                    try m.withUnsafeMutableBufferPointer { try opt.copyFloats("exp_avg/" + e.name, into: UnsafeMutableBufferPointer(rebasing: $0[e.range])) }
                    try v.withUnsafeMutableBufferPointer { try opt.copyFloats("exp_avg_sq/" + e.name, into: UnsafeMutableBufferPointer(rebasing: $0[e.range])) }
                }
                optimizer.restore(m: m, v: v, stepCount: state.adamStep)
                history = state.logHistory
                if let bm = state.bestMetric, let bs = state.bestStep { best = (bm, bs) }
                modelFingerprintFuture = BackgroundValue(ready: state.modelFingerprint)
                resumed = (ref, state)
                lastSynchronousCheckpoint = (state.globalStep, ref.url)  // the weights just loaded are that checkpoint's
            } else {
                let weights = config.modelDir.appendingPathComponent("model.safetensors")
                modelFingerprintFuture = comm.isRoot ? BackgroundValue { (try? Checkpoint.sha256(of: weights)) ?? "" } : BackgroundValue(ready: "")
                resumed = nil
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
        // A single-node job keeps its gradients in node-shared memory, where the reducer sums them in place, if every
        // rank sees room for all ranks' segments (a container's /dev/shm is often 64 MB): decided together.
        if config.sharedMemoryReduction, comm.worldSize > 1 {
            // Under ZeRO-1 the node also keeps one copy of the parameters, which every rank reads and each owner
            // updates in place (rank 0's segment of a second window).
            let shmBytes = GradientReducer.sharedBytes(elements: task.store.count, worldSize: comm.worldSize)
            let valueBytes = config.shardOptimizer ? task.store.count * MemoryLayout<Float>.stride : 0
            let needed = shmBytes * comm.worldSize + valueBytes
            var room: [Int64] = [(NodeSharedMemory.freeBackingBytes() ?? 0) >= needed + (64 << 20) ? 1 : 0]
            try comm.allReduce(&room, op: .min)
            if room[0] == 0 {
                notices.append("\(NodeSharedMemory.backingDirectory) has less than \(needed >> 20) MB free for node-shared gradients\(valueBytes > 0 ? " and parameters" : ""): all-reducing with MPI messages (enlarge it, e.g. docker --shm-size, for the in-place path)")
            } else if let shm = try comm.makeNodeSharedMemory(segmentBytes: shmBytes) {
                task.store.adoptGradientBuffer(UnsafeMutableBufferPointer(start: shm.base.assumingMemoryBound(to: Float.self), count: task.store.count), owner: shm)
                reducer = GradientReducer(communicator: comm, shared: shm)
                if valueBytes > 0, let values = try comm.makeNodeSharedMemory(segmentBytes: comm.isRoot ? valueBytes : 0) {
                    // Every replica holds rank 0's parameters (broadcast above): rank 0 copies its own into the node's
                    // buffer, and after the barrier every rank reads that one.
                    let buffer = UnsafeMutableBufferPointer(start: values.segment(of: 0).assumingMemoryBound(to: Float.self), count: task.store.count)
                    if comm.isRoot { task.store.adoptValueBuffer(buffer, owner: values, copy: true) }
                    try values.sync()
                    if !comm.isRoot { task.store.adoptValueBuffer(buffer, owner: values, copy: false) }
                    sharedValues = values
                }
                notices.append("gradients all-reduced in place in node-shared memory, \(sharedValues != nil ? "AdamW sharded over the ranks (ZeRO-1)" : "AdamW on every rank") (all \(comm.worldSize) ranks on one node; --no-shared-memory for MPI messages)")
            } else if let h = try comm.makeHierarchicalGroups(segmentBytes: GradientReducer.sharedBytes(elements: task.store.count, worldSize: comm.topology.localSize)) {
                // Several nodes: in place within each node, then each share across the nodes (GradientReducer).
                task.store.adoptGradientBuffer(UnsafeMutableBufferPointer(start: h.node.base.assumingMemoryBound(to: Float.self), count: task.store.count), owner: h.node)
                reducer = GradientReducer(communicator: comm, shared: h.node, crossNode: h.peers)
                notices.append("gradients reduced hierarchically: in place in node-shared memory within each node, each rank's share all-reduced with MPI messages across the \(comm.topology.nodeCount) nodes; AdamW on every rank (\(comm.topology); --no-shared-memory for MPI messages only)")
            }
        }
        if comm.worldSize > 1, reducer.shared == nil { notices.append("gradients all-reduced with MPI messages, AdamW on every rank (\(comm.topology)\(comm.topology.ranksPerNode == nil ? "; the hierarchical reduction needs the same number of ranks on every node" : ""))") }
    }

    var stepsPerEpoch: Int { plan.stepsPerEpoch }

    var totalSteps: Int {
        config.maxSteps > 0 ? config.maxSteps : Int((Double(stepsPerEpoch) * config.numTrainEpochs).rounded(.up))
    }

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
    public func run(onEvent: (TrainingEvent) -> Void) throws -> [String: Double] {
        let world = comm.worldSize
        let (micro, accum) = config.accumulation(worldSize: world)
        let total = totalSteps
        let schedule = schedule()
        let firstStep = resumed?.state.globalStep ?? 0
        onEvent(.started(TrainingSummary(
            trainExamples: task.trainCount, evalExamples: task.evalCount, labels: task.labels, totalSteps: total,
            stepsPerEpoch: stepsPerEpoch, worldSize: world, microBatch: micro, accumulationSteps: accum,
            parameters: task.store.parameterCount, allReduceBytes: task.store.count * 4, initialized: resumed == nil ? task.initialized : [],
            truncated: task.truncated, notices: notices)))
        Preemption.install()
        var sampleLog: FileHandle?
        if comm.isRoot, let url = config.sampleLog {
            if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
            sampleLog = FileHandle(forWritingAtPath: url.path)
            _ = try? sampleLog?.seekToEnd()
        }
        defer { try? sampleLog?.close() }

        let start = Date()
        // Carried across resumes so that train_loss is the mean over every step of the run.
        var lossSumAll = resumed?.state.trainLossSum ?? 0
        var tokensAll: Int64 = 0
        var windowLoss = 0.0, windowSteps = 0, windowTokens: Int64 = 0
        var windowOptimizer = 0.0   // seconds in the AdamW step this window (optimizer_s in metrics.jsonl)
        var windowStart = Date()
        var lastEval: [String: Double] = [:]
        var step = firstStep
        var stoppedEarly = false
        let sync = task.gradientSync
        let probe = config.debug ? NonFiniteProbe(rank: comm.rank) : nil
        if let probe { task.setProbe(probe.record) }
        defer { task.setProbe(nil) }
        var windowReduce = reducer.stats
        var launchToFirstStep: Double?
        var loggedStartup = false
        // Rows of the row-sparse tables that the previous step's gradient may have written (nil: unknown, zero all).
        var dirtyRows: [[Int]]?
        // ZeRO-1: which rank owns each table row (nil: every rank reduces and updates every row).
        let rowOwner: ((Int) -> Int)? = shardsOptimizer ? { [world] in GradientSyncLayout.tableRowOwner($0, worldSize: world) } : nil
        let ownsTableRow = rowOwner.map { owner in { [rank = comm.rank] (r: Int) in owner(r) == rank } }
        while step < total {
            let sp = stepPlan(step)
            // A row-sparse table's gradient is zero outside the rows the previous step touched (backward writes only the
            // rows of its tokens; --debug checks that), so only those rows are cleared: half of MiniLM's buffer.
            task.store.zeroGrads(rowSparse: sync.sparseTables, dirtyRows: dirtyRows)
            let rows = sync.sparseTables.isEmpty ? [] : task.touchedRows(sp.globalIndices)
            var stats = [0.0, 0.0]  // loss sum, real tokens
            let dropout = config.dropout ? DropoutContext(seed: config.seed, step: step) : nil
            // Every rank holds every sample's tokens, so the global normaliser needs no communication.
            let normaliser = max(task.lossCount(sp.globalIndices), 1)
            // The gradients are scaled by 1/g in the loss, so the sum over ranks is the global mean. Each layer is
            // all-reduced as soon as the last micro-batch's backward has finished it (GradientSync.swift); --debug
            // reduces after backward instead, so that a non-finite value is reported by the rank that made it.
            try reducer.begin(task.store.grads, scale: 1, scatterOnly: shardsOptimizer)
            var stage = 0
            var hookError: Error?
            for (m, chunk) in sp.microBatches.enumerated() {
                if m == sp.microBatches.count - 1 && !config.debug && !sync.stages.isEmpty {
                    task.setBackwardHook { [reducer, sync] k in
                        guard hookError == nil else { return }
                        do {
                            guard k == stage else { throw TrainingError("internal error: backward finished gradient stage \(k) before stage \(stage)") }
                            try reducer.reduceNow(range: sync.stages[k])
                            stage += 1
                        } catch { hookError = error }
                    }
                }
                probe?.locate(step: step + 1, microBatch: m)
                let r = task.trainMicroBatch(chunk, dropout: dropout, scale: Float(1.0 / Double(normaliser)))
                stats[0] += r.lossSum
                stats[1] += Double(r.tokens)
                if let probe { try probe.check(task.store) }
            }
            task.setBackwardHook(nil)
            if let hookError { throw hookError }
            // A rank without samples in a short final step ran no backward: it joins the same reductions in order.
            while stage < sync.stages.count {
                try reducer.reduceNow(range: sync.stages[stage])
                stage += 1
            }
            for (t, tableRows) in zip(sync.sparseTables, rows) {
                if config.debug { try NonFiniteProbe.checkUntouchedRowsAreZero(task.store, table: t, rows: tableRows, step: step + 1) }
                try reducer.reduceRows(range: t.range, rowLength: t.rowLength, rows: tableRows, rowOwner: rowOwner)
            }
            dirtyRows = rows
            try reducer.finish()
            try comm.allReduceSum(&stats)
            let stepLoss = stats[0] / Double(normaliser)
            // The norm was summed while each bucket was reduced; the clipping factor goes into the AdamW update
            // (torch's clip_grad_norm_ scales the same float32 gradients by the same factor first).
            let norm = reducer.sumOfSquares.squareRoot()
            let lr = schedule.lr(forStep: step)
            let optStart = ContinuousClock.now
            optimizer.step(lr: lr, gradScale: GradientClipping.coefficient(norm: norm, maxNorm: config.maxGradNorm),
                           touchedRows: sync.sparseTables.isEmpty ? nil : rows,
                           denseOwned: shardsOptimizer ? reducer.ownedShares : nil,
                           ownsTableRow: ownsTableRow)
            // ZeRO stage 1: each rank updated its shares and table rows in the node's one copy of the parameters;
            // once every rank has passed this barrier all see all of them. The wait counts as optimizer time
            // (optimizer_s in metrics.jsonl).
            try sharedValues?.sync()
            windowOptimizer += (ContinuousClock.now - optStart).seconds
            guard stepLoss.isFinite else {
                throw TrainingError("the loss became \(stepLoss) at step \(step + 1); lower --learning-rate or check the data")
            }
            if comm.isRoot, let log = sampleLog {
                log.write(Data("{\"step\": \(step + 1), \"samples\": [\(sp.globalIndices.map(String.init).joined(separator: ","))], \"loss\": \(stepLoss)}\n".utf8))
            }
            if step == firstStep, let t = ProcessClock.secondsSinceLaunch() {
                // Start-up cost as a user sees it: process creation → the first optimizer step done (slowest rank).
                var v = [t]
                try comm.allReduce(&v, op: .max)
                launchToFirstStep = v[0]
            }
            if config.stepDelayMs > 0 { usleep(UInt32(config.stepDelayMs) * 1000) }
            lossSumAll += stepLoss
            tokensAll += Int64(stats[1])
            windowLoss += stepLoss; windowSteps += 1; windowTokens += Int64(stats[1])
            step += 1
            let epoch = Double(step) / Double(stepsPerEpoch)
            if step % max(config.loggingSteps, 1) == 0 || step == total {
                let dt = Date().timeIntervalSince(windowStart)
                var rec: [String: Double] = ["step": Double(step), "epoch": epoch, "loss": windowLoss / Double(windowSteps),
                           "learning_rate": lr, "grad_norm": norm, "tokens_per_s": Double(windowTokens) / max(dt, 1e-9),
                           "elapsed_s": Date().timeIntervalSince(start), "total_steps": Double(total)]
                let red = reducer.stats
                if world > 1, red.steps > windowReduce.steps {
                    // The all-reduce's share of the window: seconds per step blocked in it, and its bus bandwidth.
                    let secs = red.seconds - windowReduce.seconds, steps = Double(red.steps - windowReduce.steps)
                    rec["allreduce_s"] = secs / steps
                    rec["allreduce_mb"] = Double(red.bytes - windowReduce.bytes) / steps / 1e6
                    rec["allreduce_bus_gbps"] = secs > 0 ? Double(red.bytes - windowReduce.bytes) * 2 * Double(world - 1) / Double(world) / secs / 1e9 : 0
                }
                windowReduce = red
                rec["optimizer_s"] = windowOptimizer / Double(max(windowSteps, 1))
                windowOptimizer = 0
                if !loggedStartup, let t = launchToFirstStep {   // in this run's first record only
                    rec["launch_to_first_step_s"] = t
                    loggedStartup = true
                }
                if let cs = writer.takeStats() {
                    // A background checkpoint finished since the last log line: its cost, for the user and the note.
                    rec["checkpoint_write_s"] = cs.seconds
                    rec["checkpoint_mb_per_s"] = Double(cs.bytes) / 1e6 / max(cs.seconds, 1e-9)
                }
                history.append(rec)
                onEvent(.log(rec))
                windowLoss = 0; windowSteps = 0; windowTokens = 0; windowStart = Date()
            }
            let epochEnd = step % stepsPerEpoch == 0
            if task.evalCount > 0 && ((config.evalSteps > 0 && step % config.evalSteps == 0) || epochEnd || step == total) {
                var m = try evaluate()
                m["step"] = Double(step); m["epoch"] = epoch
                lastEval = m
                history.append(m)
                onEvent(.evaluated(m))
                let key = m[config.metricForBestModel] != nil ? config.metricForBestModel : "eval_loss"
                if let v = m[key] {
                    let lowerIsBetter = key.contains("loss") || key.contains("perplexity")
                    if best == nil || (lowerIsBetter ? v < best!.metric : v > best!.metric) {
                        best = (v, step)
                        evalsWithoutImprovement = 0
                    } else {
                        evalsWithoutImprovement += 1
                    }
                }
                if config.earlyStoppingPatience > 0 && evalsWithoutImprovement >= config.earlyStoppingPatience && step < total {
                    // Every rank saw the same all-reduced metrics, so they all stop at this step together.
                    let rec: [String: Double] = ["step": Double(step), "early_stopped": 1,
                                                 "best_step": Double(best?.step ?? step), "best_metric": best?.metric ?? 0]
                    history.append(rec)
                    onEvent(.log(rec))
                    _ = try saveCheckpoint(step: step, total: total, schedule: schedule, background: false, lossSoFar: lossSumAll, onEvent: onEvent)
                    stoppedEarly = true
                    break
                }
            }
            // Preemption: every rank learns whether any rank got a signal, then all save together.
            var flag: [Int64] = [Int64(Preemption.pending)]
            try comm.allReduce(&flag, op: .max)
            if flag[0] != 0 && step < total {
                let url = try saveCheckpoint(step: step, total: total, schedule: schedule, background: false, lossSoFar: lossSumAll, onEvent: onEvent)
                throw PreemptedError(signal: Int32(flag[0]), checkpoint: url)
            }
            let periodic = config.saveSteps > 0 && step % config.saveSteps == 0
            if periodic || epochEnd || step == total {
                _ = try saveCheckpoint(step: step, total: total, schedule: schedule, background: step != total, lossSoFar: lossSumAll, onEvent: onEvent)
            }
        }
        if firstStep >= total, task.evalCount > 0 {
            // Nothing left to train (resumed a finished run): report the final evaluation again.
            var m = try evaluate()
            m["step"] = Double(total); m["epoch"] = Double(total) / Double(stepsPerEpoch)
            lastEval = m
        }
        let runtime = Date().timeIntervalSince(start)
        var result = lastEval.filter { $0.key.hasPrefix("eval_") }
        let lastStep = stoppedEarly ? step : total
        result["train_loss"] = resumed != nil && resumed?.state.trainLossSum == nil
            ? lossSumAll / Double(max(lastStep - firstStep, 1))   // an old checkpoint without the running sum
            : lossSumAll / Double(max(lastStep, 1))
        result["train_runtime_s"] = runtime
        if let t = launchToFirstStep { result["launch_to_first_step_s"] = t }
        result["train_tokens_per_s"] = Double(tokensAll) / max(runtime, 1e-9)
        result["train_samples"] = Double(task.trainCount)
        result["global_step"] = Double(stoppedEarly ? step : total)
        if let b = best { result["best_step"] = Double(b.step); result["best_metric"] = b.metric }
        result["epoch"] = Double(total) / Double(stepsPerEpoch)
        if comm.isRoot {
            try writer.wait()
            if let c = lastSynchronousCheckpoint, c.step == lastStep {
                // The weights have not moved since that checkpoint: link its model files instead of rewriting them.
                try Checkpoint.publishModel(from: c.url, to: config.outputDir)
            } else {
                try task.save(to: config.outputDir, weights: nil)
            }
            try writeHistory()
            onEvent(.saved(config.outputDir))
        }
        try comm.barrier()
        onEvent(.finished(result))
        return result
    }

    /// Writes metrics.jsonl (rank 0) from the history, atomically.
    func writeHistory() throws {
        let lines = history.map(jsonObjectLine).joined(separator: "\n") + "\n"
        try FileManager.default.createDirectory(at: config.outputDir, withIntermediateDirectories: true)
        try FileIO.writeAtomically(Data(lines.utf8), to: config.outputDir.appendingPathComponent("metrics.jsonl"))
    }

    /// Rank 0 snapshots the state and commits checkpoint-STEP (in the background unless `background` is false);
    /// the other ranks only meet it at the barrier, so the slow part never blocks them.
    @discardableResult
    func saveCheckpoint(step: Int, total: Int, schedule: LRSchedule, background: Bool, lossSoFar: Double,
                        onEvent: (TrainingEvent) -> Void) throws -> URL {
        let url = config.outputDir.appendingPathComponent("checkpoint-\(step)")
        try gatherOptimizerState()
        // A foreground save on one node (shared memory in use) splits the writing: the last rank, which holds the
        // complete optimizer state too, writes optimizer.safetensors into the partial folder while rank 0 writes the
        // model; rank 0 still commits (manifest, rename, `latest`). Rank 1 would otherwise wait idle for 2/3 of it.
        let helper = comm.worldSize - 1
        let split = !background && reducer.shared != nil && helper > 0
        var receiver: OptimizerFileReport?
        if split {
            if comm.isRoot {
                try writer.wait()
                try Checkpoint.preparePartialFolder(outputDir: config.outputDir, step: step)
            }
            try comm.barrier()
            if comm.rank == helper {
                var report: Result<(size: Int, sha256: String), Error>
                do {
                    let partial = Checkpoint.partialFolder(outputDir: config.outputDir, step: step)
                    let entries = task.store.entries
                    report = .success(try optimizer.withMoments(0..<task.store.count) { mp, vp in
                        try Checkpoint.writeOptimizerFile(Checkpoint.optimizerTensors(entries, m: UnsafeBufferPointer(mp), v: UnsafeBufferPointer(vp)), into: partial)
                    })
                } catch { report = .failure(error) }
                try OptimizerFileReport.send(report, comm: comm, root: helper)
            } else if !comm.isRoot {
                // A bystander joins the broadcast; a failed write is reported (and fails the job) on rank 0.
                do { _ = try OptimizerFileReport(comm: comm, root: helper).receive() } catch is TrainingError {}
            } else {
                receiver = OptimizerFileReport(comm: comm, root: helper)
            }
        }
        if comm.isRoot {
            let state = TrainerState(
                globalStep: step, epoch: Double(step) / Double(stepsPerEpoch),
                sampleCursor: step < total ? stepPlan(step).cursor : stepPlan(step - 1).nextCursor,
                adamStep: optimizer.stepCount, seed: config.seed, worldSize: comm.worldSize, globalBatch: config.batchSize,
                totalSteps: total, schedule: schedule, dataFingerprint: task.dataFingerprint, modelFingerprint: modelFingerprint,
                hyperparameters: config.hyperparameterSummary, labels: task.labels, bestMetric: best?.metric, bestStep: best?.step,
                logHistory: history, trainLossSum: lossSoFar)
            // Snapshot: the optimizer keeps training while the copy is written.
            let snapshot = ParameterStore(layout: task.store.layout)
            _ = snapshot.values.update(fromContentsOf: task.store.values)
            let m = optimizer.m, v = optimizer.v
            let entries = task.store.entries
            let task = self.task, outputDir = config.outputDir, limit = config.saveTotalLimit, bestStep = best?.step
            let history = self.history
            let fault = config.faultInjection
            let work: @Sendable (OptimizerFileReport?) throws -> URL = { elsewhere in
                // Views into the snapshot arrays (no per-tensor copies: 2 × 91 MB less at every MiniLM save).
                let u = try m.withUnsafeBufferPointer { mp in
                    try v.withUnsafeBufferPointer { vp in
                        let source: Checkpoint.OptimizerFile = elsewhere.map { r in .writtenElsewhere { try r.receive() } }
                            ?? .tensors(Checkpoint.optimizerTensors(entries, m: mp, v: vp))
                        return try Checkpoint.commit(outputDir: outputDir, state: state, optimizer: source,
                                                     partialPrepared: elsewhere != nil, hook: { phase in
                            if let f = fault, f.step == step, f.phase == phase { _exit(137) }
                        }) { dir in
                            try task.save(to: dir, weights: snapshot)
                        }
                    }
                }
                Checkpoint.rotate(outputDir, keep: limit, protect: bestStep)
                let lines = history.map(jsonObjectLine).joined(separator: "\n") + "\n"
                try FileIO.writeAtomically(Data(lines.utf8), to: outputDir.appendingPathComponent("metrics.jsonl"))
                return u
            }
            if background {
                try writer.submit { try work(nil) }
                lastSynchronousCheckpoint = nil
            } else {
                try writer.wait()
                lastSynchronousCheckpoint = (step, try work(receiver))
            }
            onEvent(.saved(url))
        }
        if !background { try comm.barrier() }
        return url
    }

    /// Whether AdamW is sharded over the ranks (ZeRO stage 1): on the in-place, node-shared-memory path, where each
    /// rank is left with only its shares of the reduced dense gradient (and its rows of the word-embedding table)
    /// anyway, and updates them in the node's one copy of the parameters. The result is the same bits: every
    /// element's update is the same arithmetic, only computed once per node instead of once per rank.
    var shardsOptimizer: Bool { sharedValues != nil }

    /// ZeRO stage 1 before a checkpoint: every rank's moments of the ranges and table rows it owns go to all ranks (collective),
    /// so rank 0 writes, and any rank could resume from, the complete optimizer state.
    func gatherOptimizerState() throws {
        guard shardsOptimizer else { return }
        for q in 0..<comm.worldSize {
            for r in reducer.shares(of: q) {
                try optimizer.withMoments(r) { m, v in
                    try comm.broadcast(m, root: q)
                    try comm.broadcast(v, root: q)
                }
            }
        }
        // Table rows: only live ones have moments (the others are zero on every rank, and every rank knows which
        // are live); each owner's live rows travel packed in one message per rank and moment.
        for (k, table) in task.gradientSync.sparseTables.enumerated() {
            let live = optimizer.liveRows(ofTable: k), n = table.rowLength
            for q in 0..<comm.worldSize {
                let rows = live.filter { GradientSyncLayout.tableRowOwner($0, worldSize: comm.worldSize) == q }
                guard !rows.isEmpty else { continue }
                var packed = [Float](repeating: 0, count: rows.count * n)
                try optimizer.withMoments(table.range) { m, v in
                    for moments in [m, v] {
                        try packed.withUnsafeMutableBufferPointer { p in
                            let buf = p.baseAddress!, mom = moments.baseAddress!
                            if comm.rank == q { for (i, r) in rows.enumerated() { (buf + i * n).update(from: mom + r * n, count: n) } }
                            try comm.broadcast(UnsafeMutableRawBufferPointer(p), root: q)
                            if comm.rank != q { for (i, r) in rows.enumerated() { (mom + r * n).update(from: buf + i * n, count: n) } }
                        }
                    }
                }
            }
        }
    }

    /// Exact metrics over the eval set: each rank evaluates a contiguous shard (no duplicates), and the integer
    /// counts and loss sums are all-reduced.
    public func evaluate() throws -> [String: Double] {
        let (micro, _) = config.accumulation(worldSize: comm.worldSize)
        let stats = try task.evaluateAll(comm: comm, batchSize: micro)
        if let cls = task as? ClassificationTask { lastConfusion = cls.confusion(stats) }
        return task.metrics(stats)
    }
}

/// The size and sha256 of optimizer.safetensors, or the error, sent by the rank that wrote it to every rank in one
/// fixed-size broadcast (rank 0 records it in the manifest without re-reading the file).
final class OptimizerFileReport: @unchecked Sendable {
    static let bytes = 8 + 64 + 448
    let comm: Communicator
    let root: Int
    init(comm: Communicator, root: Int) { self.comm = comm; self.root = root }

    static func send(_ r: Result<(size: Int, sha256: String), Error>, comm: Communicator, root: Int) throws {
        var b = [UInt8](repeating: 0, count: bytes)
        switch r {
        case .success(let ok):
            withUnsafeBytes(of: Int64(ok.size).littleEndian) { for i in 0..<8 { b[i] = $0[i] } }
            for (i, c) in ok.sha256.utf8.prefix(64).enumerated() { b[8 + i] = c }
        case .failure(let e):
            withUnsafeBytes(of: Int64(-1).littleEndian) { for i in 0..<8 { b[i] = $0[i] } }
            for (i, c) in "\(e)".utf8.prefix(448).enumerated() { b[72 + i] = c }
        }
        try comm.broadcast(&b, root: root)
    }

    func receive() throws -> (size: Int, sha256: String) {
        var b = [UInt8](repeating: 0, count: Self.bytes)
        try comm.broadcast(&b, root: root)
        let size = Int(Int64(littleEndian: b[0..<8].withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
        guard size >= 0 else {
            throw TrainingError("rank \(root) could not write the checkpoint's optimizer state: \(String(decoding: b[72...].prefix { $0 != 0 }, as: UTF8.self))")
        }
        return (size, String(decoding: b[8..<72], as: UTF8.self))
    }
}

/// One JSON object per line with sorted keys; integral values print without a fraction.
public func jsonObjectLine(_ m: [String: Double]) -> String {
    let parts = m.keys.sorted().map { k -> String in
        let v = m[k]!
        let s: String
        if !v.isFinite { s = "null" }
        else if v == v.rounded(), abs(v) < 1e15 { s = String(Int64(v)) }
        else { s = "\(v)" }
        return "\"\(k)\": \(s)"
    }
    return "{" + parts.joined(separator: ", ") + "}"
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
