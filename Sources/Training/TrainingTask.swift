// TrainingTask: what the training loop needs from one kind of fine-tuning (a model together with its data), so that
// one loop serves sequence classification and causal language modelling alike. A task owns the trainable parameters,
// the tokenized data, and the model's forward/backward; the Trainer owns the data order, the all-reduce, the
// optimizer, checkpoints and events.
// Ranks reach a task only through `evaluateAll` (the eval shard and the all-reduce of its statistics); training
// sees only the sample indices it is given.
// Deliberately not here: the data order, sharding of the training data, gradient reduction (the Trainer, Dist).
import Dist
import Foundation
import Model
import Tokenizers

/// Additive evaluation statistics of one shard; the trainer all-reduces them, so metrics are exact over all ranks.
public struct EvalStats: Sendable {
    public var lossSum: Double = 0
    public var lossCount: Double = 0
    /// Task-specific integer counts (the flattened confusion matrix for classification).
    public var counts: [Int64] = []
    /// Task-specific real-valued sums (reward: margin and reward sums; DPO: rewards and log-probabilities summed over
    /// pairs); all-reduced like the loss sum.
    public var sums: [Double] = []
    public init(lossSum: Double = 0, lossCount: Double = 0, counts: [Int64] = [], sums: [Double] = []) {
        self.lossSum = lossSum; self.lossCount = lossCount; self.counts = counts; self.sums = sums
    }
}

/// Sendable: checkpoints call `save` from the writer thread; `save` only reads immutable state.
public protocol TrainingTask: AnyObject, Sendable {
    /// The trainable parameters: all-reduced, clipped and updated by the trainer.
    var store: ParameterStore { get }
    var trainCount: Int { get }
    var evalCount: Int { get }
    /// Tokens per training sample (for length grouping).
    var trainLengths: [Int] { get }
    /// Class names for classification, [] for language modelling (recorded in checkpoints).
    var labels: [String] { get }
    var dataFingerprint: String { get }
    /// The model's config.json path (named in consistency checks and errors).
    var configPath: String { get }
    /// Heads initialised because the checkpoint lacked them.
    var initialized: [String] { get }
    /// Samples truncated to the maximum length.
    var truncated: Int { get }
    /// What the loss of these samples is normalised by: examples (classification) or counted target tokens (LM).
    func lossCount(_ indices: [Int]) -> Int
    /// Forward and backward of one micro-batch; gradients (+=) are those of `scale` × the loss sum.
    /// Returns the loss sum and the number of real (non-padding) tokens.
    func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int)
    /// Statistics over the eval samples in `range` (this rank's shard), in micro-batches of `batchSize`.
    func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats
    /// Metrics (keys prefixed `eval_`) from statistics summed over all ranks.
    func metrics(_ stats: EvalStats) -> [String: Double]
    /// Writes a loadable Hugging Face folder with `weights` (default: the live parameters).
    func save(to dir: URL, weights: ParameterStore?) throws
    /// How the trainable gradient is all-reduced (stages in backward order, row-sparse tables; GradientSync.swift).
    var gradientSync: GradientSyncLayout { get }
    /// The rows of each of `gradientSync.sparseTables` that these samples touch (sorted, unique).
    func touchedRows(_ indices: [Int]) -> [[Int]]
    /// During the next micro-batches, call `hook(k)` as soon as stage k's gradients are final (nil: stop calling).
    func setBackwardHook(_ hook: ((Int) -> Void)?)
    /// `--debug`: call `probe(name, values)` with each layer's output in forward and its gradient in backward.
    func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?)
    /// Task-specific sums accumulated by `trainMicroBatch` since the last call (DPO: rewards, log-probs), then reset.
    /// The same length on every rank (zeros without samples): the trainer all-reduces them with the step's loss.
    func takeStepSums() -> [Double]
    /// Training-log metrics (metrics.jsonl) from a step's all-reduced `takeStepSums` over the step's `count` loss units.
    func stepMetrics(_ sums: [Double], count: Int) -> [String: Double]
    /// Once per optimizer step (0-based `step`) on every rank, before its micro-batches, with the step's plan.
    /// Collectives are allowed: every rank calls it for every step, in order. On-line tasks (GRPO) sample and score
    /// their rollouts here; the default does nothing.
    func beginStep(_ plan: StepPlan, step: Int, comm: Communicator) throws
    /// Once on every rank, after start-up succeeded everywhere and the replicas hold rank 0's weights, before the
    /// first step. Collectives are allowed. DPO precomputes its reference log-probabilities here, each rank a share;
    /// the default does nothing.
    func prepare(comm: Communicator) throws
}

/// Defaults: the whole trainable buffer is reduced in one go after backward, and there is nothing to probe.
extension TrainingTask {
    public var gradientSync: GradientSyncLayout { GradientSyncLayout() }
    public func touchedRows(_ indices: [Int]) -> [[Int]] { [] }
    public func setBackwardHook(_ hook: ((Int) -> Void)?) {}
    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) {}
    public func takeStepSums() -> [Double] { [] }
    public func stepMetrics(_ sums: [Double], count: Int) -> [String: Double] { [:] }
    public func beginStep(_ plan: StepPlan, step: Int, comm: Communicator) throws {}
    public func prepare(comm: Communicator) throws {}
}

extension TrainingTask {
    /// Exact statistics over the whole eval set: each rank evaluates its contiguous shard (EvalSharding: no
    /// duplicates), and the loss sums and integer counts are all-reduced, so every rank gets the one-process result.
    /// Used by the trainer's periodic evaluation and by `disttrain eval`.
    public func evaluateAll(comm: Communicator, batchSize: Int) throws -> EvalStats {
        let shard = EvalSharding.range(count: evalCount, rank: comm.rank, worldSize: comm.worldSize)
        var stats = evaluate(shard, batchSize: batchSize)
        var sums = [stats.lossSum, stats.lossCount] + stats.sums
        try comm.allReduceSum(&sums)
        try comm.allReduceSum(&stats.counts)
        stats.lossSum = sums[0]; stats.lossCount = sums[1]; stats.sums = Array(sums[2...])
        return stats
    }
}

/// Attaches LoRA to `model` with a frozen base: the adapter in `adapterDir` (a LoRA checkpoint to continue from), or a
/// fresh one for `config` from `seed`. Returns the plan and the trainable store; LoRA errors become usage errors.
func attachLoRA(_ config: LoRAConfig, to model: any LoRAModel, adapterDir: URL?, seed: UInt64) throws -> (plan: LoRAPlan, store: ParameterStore) {
    do {
        if let adapterDir {
            let adapter = try PEFTAdapter.load(adapterDir, into: model, freezeBase: true)
            return (adapter.plan, adapter.store)
        }
        let trainable = try model.enableLoRA(config, seed: seed)
        return (model.adapter!.plan, trainable)
    } catch let e as LoRAError {
        throw TrainingError("\(e)", exitCode: 2)
    }
}
