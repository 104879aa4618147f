// TrainStep: one optimizer step of data-parallel training, shared by the Trainer and by `bench` (ScalingBenchmark),
// so the benchmark times the step that trains. Zero the gradients (only the rows a row-sparse table's previous step
// wrote), run this rank's micro-batches with the loss scaled by 1/(the step's global loss count), all-reduce each
// backward stage as soon as the last micro-batch's backward has finished it, then the table rows the step touched,
// then the rest; clip by the global norm inside the AdamW kernel; under ZeRO-1, a barrier publishes every rank's
// updated shares of the node's one copy of the parameters.
// Every rank issues the same collectives in the same order (a rank without samples replays the stage list).
// Deliberately not here: the data order (GlobalBatchPlan gives the StepPlan), the schedule, logging, checkpoints.
import Dist
import Foundation
import Model

/// What one step did, identical on every rank.
struct StepResult {
    /// The step's loss: the loss sum over all ranks / the global loss count.
    var loss: Double
    /// Real (non-padding) tokens over all ranks.
    var tokens: Int
    /// The global L2 norm of the gradient before clipping.
    var gradNorm: Double
    /// Seconds in the AdamW update and, under ZeRO-1, the barrier that publishes it (this rank); across nodes also
    /// the all-gather of the updated parameters.
    var optimizerSeconds: Double
    /// The task's own training metrics of the step (DPO: TRL's rewards/*, logps/*), from all-reduced sums.
    var taskMetrics: [String: Double] = [:]
}

final class TrainStep {
    let task: TrainingTask
    let comm: Communicator
    let reducer: GradientReducer
    let optimizer: AdamW
    /// ZeRO-1's window of the node's parameters (NodeSharedSetup); nil: AdamW on every rank.
    let sharedValues: NodeSharedMemory?
    /// `--debug`: reduce after backward (so the rank that made a non-finite value reports it), check every
    /// micro-batch's activations and gradients, and that untouched table rows are zero.
    let probe: NonFiniteProbe?
    let sync: GradientSyncLayout
    /// Rows of the row-sparse tables that the previous step's gradient may have written (nil: unknown, zero all).
    private var dirtyRows: [[Int]]?
    /// ZeRO-1: which rank of the reducer's node group owns each table row (nil: every rank reduces and updates every
    /// row); and a world rank holding its moments (the checkpoint gather).
    private let rowOwner: ((Int) -> Int)?
    let rowOwnerWorldRank: ((Int) -> Int)?
    private let ownsTableRow: ((Int) -> Bool)?

    var shardsOptimizer: Bool { sharedValues != nil }

    init(task: TrainingTask, comm: Communicator, setup: NodeSharedSetup, optimizer: AdamW, debug: Bool = false) {
        self.task = task
        self.comm = comm
        reducer = setup.reducer
        sharedValues = setup.sharedValues
        self.optimizer = optimizer
        probe = debug ? NonFiniteProbe(rank: comm.rank) : nil
        sync = task.gradientSync
        rowOwner = setup.shardsOptimizer ? setup.rowOwner : nil
        rowOwnerWorldRank = setup.shardsOptimizer ? setup.rowOwnerWorldRank : nil
        ownsTableRow = rowOwner.map { owner in { [me = setup.groupRank] (r: Int) in owner(r) == me } }
    }

    /// An AdamW for `task`'s trainable store with `config`'s hyperparameters (its row-sparse tables skip untouched rows).
    static func makeOptimizer(_ task: TrainingTask, config: TrainConfig) -> AdamW {
        AdamW(store: task.store, config: AdamWConfig(
            beta1: Float(config.adamBeta1), beta2: Float(config.adamBeta2),
            eps: Float(config.adamEpsilon), weightDecay: Float(config.weightDecay)),
            rowSparse: task.gradientSync.sparseTables)
    }

    /// Collective: trains the samples of `plan` (global step `step`, 0-based) and updates the parameters; throws when
    /// the step's loss is not finite (on every rank alike: the loss is all-reduced).
    func run(_ plan: StepPlan, step: Int, lr: Double, maxGradNorm: Double, dropout: DropoutContext?) throws -> StepResult {
        let debug = probe != nil
        // On-line tasks (GRPO) sample and score the step's rollouts first (a collective on every rank).
        try task.beginStep(plan, step: step, comm: comm)
        // A row-sparse table's gradient is zero outside the rows the previous step touched (backward writes only the
        // rows of its tokens; --debug checks that), so only those rows are cleared: half of MiniLM's buffer.
        task.store.zeroGrads(rowSparse: sync.sparseTables, dirtyRows: dirtyRows)
        let rows = sync.sparseTables.isEmpty ? [] : task.touchedRows(plan.globalIndices)
        var stats = [0.0, 0.0]  // loss sum, real tokens
        // Every rank holds every sample's tokens, so the global normaliser needs no communication.
        let normaliser = max(task.lossCount(plan.globalIndices), 1)
        // The gradients are scaled by 1/g in the loss, so the sum over ranks is the global mean. Each stage is
        // all-reduced as soon as the last micro-batch's backward has finished it (GradientSync.swift); --debug
        // reduces after backward instead, so that a non-finite value is reported by the rank that made it.
        try reducer.begin(task.store.grads, scale: 1, scatterOnly: shardsOptimizer)
        var stage = 0
        var hookError: Error?
        for (m, chunk) in plan.microBatches.enumerated() {
            if m == plan.microBatches.count - 1 && !debug && !sync.stages.isEmpty {
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
            if debug { try NonFiniteProbe.checkUntouchedRowsAreZero(task.store, table: t, rows: tableRows, step: step + 1) }
            try reducer.reduceRows(range: t.range, rowLength: t.rowLength, rows: tableRows, rowOwner: rowOwner)
        }
        dirtyRows = rows
        try reducer.finish()
        stats += task.takeStepSums()
        try comm.allReduceSum(&stats)
        // The norm was summed while each bucket was reduced; the clipping factor goes into the AdamW update
        // (torch's clip_grad_norm_ scales the same float32 gradients by the same factor first).
        let norm = reducer.sumOfSquares.squareRoot()
        let optStart = ContinuousClock.now
        optimizer.step(lr: lr, gradScale: GradientClipping.coefficient(norm: norm, maxNorm: maxGradNorm),
                       touchedRows: sync.sparseTables.isEmpty ? nil : rows,
                       denseOwned: shardsOptimizer ? reducer.ownedShares : nil,
                       ownsTableRow: ownsTableRow)
        // ZeRO stage 1: each rank updated its shares and table rows in the node's one copy of the parameters; across
        // nodes each rank then all-gathers its blocks from its peers (counted as all-reduce time). Once every rank
        // has passed this barrier all see all of them. The wait counts as optimizer time.
        if shardsOptimizer { try reducer.gatherUpdatedValues(task.store.values) }
        try sharedValues?.sync()
        let optimizerSeconds = (ContinuousClock.now - optStart).seconds
        let loss = stats[0] / Double(normaliser)
        guard loss.isFinite else {
            throw TrainingError("the loss became \(loss) at step \(step + 1); lower --learning-rate or check the data")
        }
        return StepResult(loss: loss, tokens: Int(stats[1]), gradNorm: norm, optimizerSeconds: optimizerSeconds,
                          taskMetrics: task.stepMetrics(Array(stats.dropFirst(2)), count: normaliser))
    }
}
