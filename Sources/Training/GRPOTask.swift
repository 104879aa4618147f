// GRPOTask: on-line reinforcement learning (`train --task grpo`) of a GPT-2 language model against a reward model,
// with the objective of TRL 1.16.0's GRPOTrainer (and RLOO's leave-one-out baseline with `--advantage rloo`).
//
// One optimizer step (docs/grpo.md):
//   1. rollouts (`beginStep`, on every rank): the step's global batch is `--batch-size` PROMPTS (a sample is a prompt);
//      each rank takes its slice of whole prompts, so a prompt's group of `--num-generations` G completions stays on one
//      rank. All of the rank's P·G completions are sampled in ONE batch by the KV-cache generator (GPT2BatchGenerator),
//      row (prompt p, completion k) from SplitMix64 keyed by (seed, step, p, k): 1 process and N ranks sample the same
//      completions, and a resumed run needs no RNG state. Sampling stops at EOS (kept in the completion, as TRL's
//      completion mask keeps it) or after --max-completion-length tokens.
//   2. rewards: each completion decoded (special tokens skipped), prompt + completion re-tokenized and scored by the
//      reward model (RewardScorer). The rewards, completion lengths and ids of the whole global batch are gathered
//      (a sum all-reduce of zero-filled buffers: a few KB), because the advantages with --scale-rewards batch, the
//      logged statistics and the sample log need them; advantages are then computed identically on every rank.
//   3. the update (`trainMicroBatch`, micro-batches of whole prompts): prompt + completion rows through the policy
//      (log-probabilities and entropies per completion token, logits divided by the sampling temperature as TRL does),
//      the reference (a frozen copy of --model, or the same model with its LoRA adapter off; none when β = 0), and
//      GRPOObjective, whose normalisers are GLOBAL counts (rows and completion tokens of the whole step), so the loss
//      and gradient summed over micro-batches and ranks are one process's. Its dLoss/dlogp goes into the policy's
//      per-token backward; the Trainer all-reduces and steps as for every task (the task's loss count is 1: the loss
//      is already normalised).
//   With --num-iterations μ > 1 the rollouts of step kμ (and their log-probabilities under the sampling policy, the
//   "old" ones of the ratio) are trained on for μ steps (TRL's μ); the prompts the data order gives the steps in
//   between are not sampled.
// Dropout stays off (GPT-2's dropout would make the policy's log-probabilities differ from the sampling policy's).
// Deliberately not here: the objective's math (GRPOObjective), batched sampling and per-token log-probs (Model), the
// loop, all-reduce and optimizer (Trainer), reading prompts (PromptData), scoring (RewardScorer).
import Dist
import Foundation
import Model
import SplitMix
import Tokenizers

/// The GRPO settings of a run (TRL's GRPOConfig field names, with dashes on the command line).
public struct GRPOSettings: Sendable, Equatable {
    /// The reward model's folder (a sequence classifier with one output).
    public var rewardModel: URL?
    /// G: completions sampled per prompt (TRL: num_generations). At least 2.
    public var numGenerations: Int = 8
    /// Completion tokens sampled at most (TRL: max_completion_length, default 512 there; 64 here, for small models).
    public var maxCompletionLength: Int = 64
    /// Sampling temperature; the log-probabilities of the objective use the same (TRL divides the logits by it).
    public var temperature: Double = 1
    /// Nucleus sampling (1: off) and top-k (0: off).
    public var topP: Double = 1
    public var topK: Int = 0
    /// β of the KL to the reference (0: no reference is kept). GRPO: k3 per token in the loss (TRL default 0); RLOO:
    /// β·Σ(old − ref) off each reward (TRL's RLOOTrainer default 0.05; the CLI applies that default for --advantage rloo).
    public var beta: Double = 0
    /// Clipping range of the importance ratio: [1 − ε, 1 + ε_high] (ε_high defaults to ε).
    public var epsilon: Double = 0.2
    public var epsilonHigh: Double?
    /// μ: optimizer steps per batch of rollouts.
    public var numIterations: Int = 1
    public var lossType: GRPOLossType = GRPOSettings.defaultLossType
    /// TRL's scale_rewards (GRPO default group); for RLOO, batch is its normalize_advantages and the default is none
    /// (the CLI applies it for --advantage rloo).
    public var scaleRewards: RewardScaling = .group
    /// grpo: GRPOTrainer's objective (reward − group mean, per-token ratio, k3 KL in the loss); rloo: RLOOTrainer's
    /// (reward − mean of the other G − 1, sequence-level ratio, KL subtracted from the reward).
    public var advantage: AdvantageEstimator = .grpo
    /// Write every completion of each logged step to samples.jsonl (rank 0), as TRL's log_completions.
    public var logCompletions: Bool = true

    public init() {}

    /// TRL 1.16's default loss_type is "dapo" when GRPOObjective implements it, else "grpo".
    public static var defaultLossType: GRPOLossType { GRPOLossType(rawValue: "dapo") ?? .grpo }

    /// Usage errors (exit 2) that need no files.
    func validate(config c: TrainConfig, worldSize: Int) throws {
        func usage(_ m: String) -> TrainingError { TrainingError(m, exitCode: 2) }
        guard rewardModel != nil else {
            throw usage("--task grpo needs --reward-model DIR: a sequence classifier with one output that scores prompt + completion (e.g. one trained with `disttrain train --task reward`)")
        }
        guard numGenerations >= 2 else {
            throw usage("--num-generations \(numGenerations): GRPO compares the completions of one prompt (advantage = reward − group mean\(scaleRewards == .group ? ", divided by the group's standard deviation with --scale-rewards group" : "")), so it needs at least 2 per prompt, as TRL requires")
        }
        if let m = objectiveConfig.validationError(groupSize: numGenerations, scaling: scaleRewards) { throw usage(m) }
        guard maxCompletionLength >= 1 else { throw usage("--max-completion-length must be at least 1 (got \(maxCompletionLength))") }
        guard maxCompletionLength < c.maxLength else {
            throw usage("--max-completion-length \(maxCompletionLength) leaves no room for a prompt within --max-length \(c.maxLength) (prompt + completion tokens); raise --max-length or lower --max-completion-length")
        }
        guard temperature > 0, temperature.isFinite else { throw usage("--temperature must be positive (got \(temperature)); the log-probabilities divide the logits by it, as TRL does") }
        guard topP > 0, topP <= 1 else { throw usage("--top-p must be in (0, 1] (got \(topP))") }
        guard topK >= 0 else { throw usage("--top-k must be 0 (off) or positive (got \(topK))") }
        guard beta >= 0, beta.isFinite else { throw usage("--beta must be a non-negative number (got \(beta))") }
        guard epsilon >= 0, epsilon < 1 else { throw usage("--epsilon must be in [0, 1) (got \(epsilon))") }
        if let e = epsilonHigh, !(e >= 0 && e.isFinite) { throw usage("--epsilon-high must be a non-negative number (got \(e))") }
        guard numIterations >= 1 else { throw usage("--num-iterations must be at least 1 (got \(numIterations))") }
        if c.evalFile != nil || c.validationSplit > 0 {
            throw usage("--task grpo does not evaluate on held-out data: its on-line metric is the reward of the fresh samples in the training log; drop \(c.evalFile != nil ? "--eval-file" : "--validation-split")")
        }
        if c.lmPerRow || c.blockSize != nil { throw usage("--lm-per-row / --block-size apply to --task causal-lm; drop them for --task grpo") }
        // A prompt's group stays on one rank: the global batch of prompts splits into whole prompts per rank.
        guard c.batchSize % worldSize == 0 else {
            throw usage("--batch-size \(c.batchSize) prompts (× --num-generations \(numGenerations) = \(c.batchSize * numGenerations) completions per step) does not split into whole prompt groups over \(worldSize) ranks; give a multiple of \(worldSize), e.g. \((c.batchSize / worldSize + 1) * worldSize)")
        }
        if let m = c.microBatchSize, (c.batchSize / worldSize) % m != 0 {
            throw usage("--micro-batch-size \(m) prompts must divide each rank's \(c.batchSize / worldSize) prompts (--batch-size \(c.batchSize) over \(worldSize) ranks)")
        }
    }

    /// The objective's settings (GRPOObjective.swift).
    public var objectiveConfig: GRPOObjectiveConfig {
        GRPOObjectiveConfig(estimator: advantage, beta: beta, epsilonLow: epsilon, epsilonHigh: epsilonHigh, lossType: lossType,
                            maxCompletionLength: maxCompletionLength, temperature: Float(temperature))
    }

    /// In the checkpoint's hyperparameters: a resumed run must sample and score as the run it continues.
    var summary: String {
        "reward_model=\(rewardModel?.standardizedFileURL.path ?? "") G=\(numGenerations) max_completion_length=\(maxCompletionLength) "
            + "temperature=\(temperature) top_p=\(topP) top_k=\(topK) beta=\(beta) epsilon=\(epsilon) epsilon_high=\(epsilonHigh ?? epsilon) "
            + "num_iterations=\(numIterations) loss_type=\(lossType.rawValue) scale_rewards=\(scaleRewards.rawValue) advantage=\(advantage.rawValue)"
    }
}

public final class GRPOTask: FolderTrainingTask, @unchecked Sendable {
    let config: GPT2Config
    let settings: GRPOSettings
    /// The full model's parameters (frozen under LoRA).
    let baseStore: ParameterStore
    let model: GPT2LMHead
    /// The frozen reference for β > 0 with full fine-tuning (with LoRA: the policy with its adapter off).
    let reference: GPT2LMHead?
    let lora: (plan: LoRAPlan, store: ParameterStore)?
    public var store: ParameterStore { lora?.store ?? baseStore }
    let tokenizer: any Tokenizer
    let scorer: RewardScorer
    let prompts: [PromptRow]
    let promptIds: [[Int32]]
    let eos: Int32
    let modelDir: URL
    let seed: UInt64
    let outputDir: URL
    let loggingSteps: Int
    let microBatch: Int
    public let dataFingerprint: String
    public let initialized: [String]
    public var truncated: Int { 0 }
    public var labels: [String] { [] }
    public var trainCount: Int { prompts.count }
    public var evalCount: Int { 0 }
    public var trainLengths: [Int] { promptIds.map(\.count) }
    public var configPath: String { config.path }
    /// Messages for the start of training (the reward model and the reference in use).
    public private(set) var notices: [String] = []

    /// The batched sampler over the policy's weights (made at the first step, sized for the rank's rollouts).
    private var generator: GPT2BatchGenerator?
    /// The rollouts of the current step (of step kμ with --num-iterations μ > 1), this rank's rows.
    var rollout: Rollout?
    /// Sums of the step's micro-batches (takeStepSums) and the rank-identical statistics of its rollouts (added by
    /// rank 0 only, so the all-reduced sum is their value).
    private var stepSums = [Double](repeating: 0, count: GRPOTask.sumCount)
    private var rolloutStats = [Double](repeating: 0, count: GRPOTask.sumCount)
    private var worldSize = 1
    private var updateStart = ContinuousClock.now
    private var sampleLogTrimmed = false
    /// The next micro-batch of the step (trainMicroBatch trains the rollouts' micro-batch of this index).
    private var microIndex = 0

    /// One step's rollouts on this rank: rows (prompt, completion k) in the order of the rank's prompts.
    struct Rollout {
        /// The step whose seeds sampled them (kμ).
        var step: Int
        /// The rank's micro-batches of prompts at that step: micro-batch m of every step that reuses the rollouts
        /// trains on these prompts (the data order's prompts of those steps are not sampled).
        var microBatches: [[Int]]
        /// Dataset index of each of the rank's prompts, and its first row.
        var firstRow: [Int: Int]
        var completions: [[Int32]]
        var rewards: [Float]
        var advantages: [Float]
        /// Log-probabilities of each completion token under the sampling policy (μ > 1 only), per row.
        var oldLogps: [[Float]]?
        /// Over the whole global batch: rows and completion tokens (the objective's normalisers).
        var globalRows: Int
        var globalTokens: Int
        /// RLOO with β: this rank's Σ over its completions of Σ_t (old − ref) (the logged kl's numerator).
        var rewardKL: Double
    }

    public required init(folder: ModelFolder, adapterDir: URL?, trainConfig tc: TrainConfig, microBatch: Int) throws {
        guard tc.matmulPrecision == .fp32 else {
            throw TrainingError("--bf16: bf16 matrix products are implemented for BERT-family encoders only; drop --bf16 for GPT-2", exitCode: 2)
        }
        settings = tc.grpo
        let m = try LoadedLM(folder: folder, seed: tc.seed)
        config = m.config
        baseStore = m.store
        initialized = m.initialized
        tokenizer = m.tokenizer
        eos = m.eos
        modelDir = m.modelDir
        seed = tc.seed
        outputDir = tc.outputDir
        loggingSteps = max(tc.loggingSteps, 1)
        self.microBatch = microBatch
        // Prompts: tokenized with the policy's tokenizer; each must leave room for the completion.
        let data = try PromptData.load(tc.trainFile)
        dataFingerprint = data.fingerprint
        prompts = data.rows
        let total = min(tc.maxLength, m.config.maxPositions)
        let limit = total - settings.maxCompletionLength
        guard limit >= 1 else {
            throw TrainingError("--max-completion-length \(settings.maxCompletionLength) leaves no room for a prompt: prompt + completion must fit in \(total) tokens (min of --max-length \(tc.maxLength) and the model's n_positions \(m.config.maxPositions)); lower --max-completion-length", exitCode: 2)
        }
        var ids: [[Int32]] = []
        for row in data.rows {
            let e: [Int32]
            do { e = try m.tokenizer.encode(row.prompt, pair: nil, addSpecialTokens: true, maxLength: nil).ids } catch {
                throw TrainingError("\(data.file):\(row.line): \(error)")
            }
            guard !e.isEmpty else {
                throw TrainingError("\(data.file):\(row.line): the prompt tokenizes to no tokens; give it some text", exitCode: 2)
            }
            guard e.count <= limit else {
                throw TrainingError("\(data.file):\(row.line): the prompt has \(e.count) tokens, more than the \(limit) that leave room for --max-completion-length \(settings.maxCompletionLength) within \(total) tokens (--max-length \(tc.maxLength), n_positions \(m.config.maxPositions)); shorten the prompt, raise --max-length or lower --max-completion-length", exitCode: 2)
            }
            if let bad = e.first(where: { $0 < 0 || Int($0) >= m.config.vocabSize }) {
                throw TrainingError("\(data.file):\(row.line): the tokenizer produced token id \(bad), outside the model's vocab_size \(m.config.vocabSize) (\(m.config.path)); the tokenizer files do not belong to this model")
            }
            ids.append(e)
        }
        promptIds = ids
        let maxSeq = (ids.map(\.count).max() ?? 1) + settings.maxCompletionLength
        let rows = microBatch * settings.numGenerations
        try ModelFolder.checkArena(batch: rows, seq: maxSeq, architecture: m.config)
        scorer = try RewardScorer(dir: settings.rewardModel!, maxLength: max(2 * total, 64))
        model = GPT2LMHead(config: m.config, parameters: m.store, maxBatch: rows, maxSeq: maxSeq)
        var lc = tc.lora?.forCausalLM()
        if lc != nil { lc!.baseModelNameOrPath = lc!.baseModelNameOrPath ?? m.modelDir.path }
        if lc != nil || adapterDir != nil {
            lora = try attachLoRA(lc ?? LoRAConfig(r: 1, alpha: 1), to: model, adapterDir: adapterDir, seed: tc.seed)
        } else {
            lora = nil
        }
        // The reference is the starting weights of --model (on resume the policy comes from the checkpoint).
        if settings.beta > 0 && lora == nil {
            let r = try LoadedLM(folder: ModelFolder.open(tc.modelDir), seed: tc.seed)
            reference = GPT2LMHead(config: r.config, parameters: r.store, maxBatch: rows, maxSeq: maxSeq)
            notices.append("GRPO reference: a frozen copy of \(tc.modelDir.relativePath) (β \(settings.beta))")
        } else {
            reference = nil
            if settings.beta > 0 { notices.append("GRPO reference: \(tc.modelDir.relativePath) with the LoRA adapter off (β \(settings.beta))") }
        }
        notices.append("GRPO reward model: \(settings.rewardModel!.relativePath); \(settings.numGenerations) completions of at most \(settings.maxCompletionLength) tokens per prompt, loss \(settings.lossType.rawValue), advantage \(settings.advantage.rawValue), scale_rewards \(settings.scaleRewards.rawValue)")
    }

    // MARK: - Rollouts

    /// The seed of completion `k` of prompt `prompt` (a dataset index) sampled at `step`: independent of the ranks.
    static func sampleSeed(seed: UInt64, step: Int, prompt: Int, completion k: Int) -> UInt64 {
        SplitMix64(keys: 0x4752_504F, seed, UInt64(step), UInt64(prompt), UInt64(k)).state
    }

    var objective: GRPOObjectiveConfig { settings.objectiveConfig }

    public func beginStep(_ plan: StepPlan, step: Int, comm: Communicator) throws {
        worldSize = comm.worldSize
        microIndex = 0
        let mu = settings.numIterations
        if mu > 1, let r = rollout, r.step == step - step % mu {
            // --num-iterations: the same rollouts again (their old log-probabilities are the sampling policy's).
            rolloutStats = [Double](repeating: 0, count: Self.sumCount)
            rolloutStats[Self.iKL] = r.rewardKL
            updateStart = .now
            return
        }
        let G = settings.numGenerations
        let genStep = step - step % mu
        let mine = Array(plan.globalIndices[plan.rankSlice])
        // 1. Sample every completion of the rank's prompts in one batch.
        let t0 = ContinuousClock.now
        var rowPrompts: [[Int32]] = [], seeds: [UInt64] = []
        for p in mine {
            for k in 0..<G {
                rowPrompts.append(promptIds[p])
                seeds.append(Self.sampleSeed(seed: seed, step: genStep, prompt: p, completion: k))
            }
        }
        var completions: [[Int32]] = []
        if !rowPrompts.isEmpty {
            if generator == nil || generator!.maxBatch < rowPrompts.count {
                let g = GPT2BatchGenerator(config: config, parameters: baseStore, maxBatch: rowPrompts.count,
                                           maxSeq: (promptIds.map(\.count).max() ?? 1) + settings.maxCompletionLength)
                if let adapter = model.adapter { g.attachLoRA(adapter) }
                generator = g
            }
            let options = GenerationOptions(maxNewTokens: settings.maxCompletionLength, temperature: Float(settings.temperature),
                                            topK: settings.topK, topP: Float(settings.topP), seed: 0, stopToken: eos, useCache: true)
            do { completions = try generator!.generate(prompts: rowPrompts, options: options, seeds: seeds) } catch {
                throw TrainingError("sampling the rollouts of step \(step + 1): \(error)")
            }
        }
        let t1 = ContinuousClock.now
        // 2. Score prompt + decoded completion with the reward model.
        var texts: [String] = []
        for (j, p) in mine.enumerated() {
            for k in 0..<G { texts.append(prompts[p].prompt + tokenizer.decode(completions[j * G + k], skipSpecialTokens: true)) }
        }
        let rewards = texts.isEmpty ? [] : try scorer.score(texts)
        let t2 = ContinuousClock.now
        var firstRow: [Int: Int] = [:]
        for (j, p) in mine.enumerated() { firstRow[p] = j * G }
        var r = Rollout(step: genStep, microBatches: plan.microBatches, firstRow: firstRow, completions: completions, rewards: rewards, advantages: [],
                        oldLogps: nil, globalRows: 0, globalTokens: 0, rewardKL: 0)
        rollout = r
        // The sampling policy's log-probabilities: the "old" ones of the next μ steps' ratio, and RLOO's KL.
        let rlooKL = settings.advantage == .rloo && settings.beta > 0
        var penalised = rewards
        if mu > 1 || rlooKL {
            let L = settings.maxCompletionLength, n = completions.count
            var old = [[Float]](repeating: [], count: n), ref = old
            for chunk in stride(from: 0, to: mine.count, by: max(microBatch, 1)) {
                let rows = mine[chunk..<min(chunk + microBatch, mine.count)].flatMap { p in (0..<G).map { firstRow[p]! + $0 } }
                for (i, lp) in zip(rows, forwardRows(rows, model: model)) { old[i] = lp }
                if rlooKL { for (i, lp) in zip(rows, referenceRows(rows)) { ref[i] = lp } }
            }
            if mu > 1 { r.oldLogps = old }
            if rlooKL {
                // RLOOTrainer: reward − β·Σ_t(old − ref) per completion, before the advantages.
                func flat(_ v: [[Float]]) -> [Float] {
                    var out = [Float](repeating: 0, count: n * L)
                    for (i, row) in v.enumerated() { for (t, x) in row.enumerated() { out[i * L + t] = x } }
                    return out
                }
                var mask = [Float](repeating: 0, count: n * L)
                for (i, c) in completions.enumerated() { for t in 0..<c.count { mask[i * L + t] = 1 } }
                let res = GRPOObjective.rlooRewards(rewards: rewards, oldLogps: flat(old), refLogps: flat(ref), mask: mask,
                                                    rows: n, cols: L, beta: settings.beta)
                penalised = res.rewards
                r.rewardKL = res.sequenceKL.reduce(0, +)
            }
        }
        // 3. Gather the global batch's rewards (raw and, for RLOO with β, penalised), lengths and ids (zero-filled,
        //    summed), in global order.
        let P = plan.globalIndices.count, L = settings.maxCompletionLength
        let offset = plan.rankSlice.lowerBound * G, N = P * G
        var gRewards = [Double](repeating: 0, count: 2 * N)
        var gIds = [Int64](repeating: 0, count: N * (L + 1))   // per row: length, then id + 1 (0: none)
        for (row, c) in completions.enumerated() {
            gRewards[offset + row] = Double(rewards[row])
            gRewards[N + offset + row] = Double(penalised[row])
            let base = (offset + row) * (L + 1)
            gIds[base] = Int64(c.count)
            for (t, id) in c.enumerated() { gIds[base + 1 + t] = Int64(id) + 1 }
        }
        try comm.allReduceSum(&gRewards)
        try comm.allReduceSum(&gIds)
        let allRewards = gRewards[0..<N].map(Float.init)
        let lengths = (0..<N).map { Int(gIds[$0 * (L + 1)]) }
        let advantages = GRPOObjective.advantages(rewards: gRewards[N...].map(Float.init), groupSize: G,
                                                  estimator: settings.advantage, scaling: settings.scaleRewards)
        r.advantages = Array(advantages[offset..<(offset + completions.count)])
        r.globalRows = N
        r.globalTokens = lengths.reduce(0, +)
        rollout = r
        // Statistics of the whole batch (identical on every rank: rank 0 contributes them to the step's sums).
        rolloutStats = [Double](repeating: 0, count: Self.sumCount)
        rolloutStats[Self.iKL] = r.rewardKL   // RLOO: every rank's share of Σ kl_b
        if comm.isRoot {
            var s = rolloutStats
            let n = Double(N)
            let mean = allRewards.reduce(0.0) { $0 + Double($1) } / n
            s[Self.iReward] = mean
            s[Self.iRewardStd] = Self.std(allRewards.map(Double.init))
            var groupStd = 0.0, zeroStd = 0.0
            for g in 0..<P {
                let sd = Self.std(allRewards[(g * G)..<((g + 1) * G)].map(Double.init))
                groupStd += sd
                if abs(sd) < 1e-8 { zeroStd += 1 }
            }
            s[Self.iGroupStd] = groupStd / Double(max(P, 1))
            s[Self.iZeroStd] = zeroStd / Double(max(P, 1))
            s[Self.iLenMean] = Double(lengths.reduce(0, +)) / n
            s[Self.iLenMin] = Double(lengths.min() ?? 0)
            s[Self.iLenMax] = Double(lengths.max() ?? 0)
            var clipped = 0.0
            for row in 0..<N where lengths[row] > 0 {
                if gIds[row * (L + 1) + lengths[row]] - 1 != Int64(eos) { clipped += 1 }
            }
            s[Self.iClipped] = clipped / n
            rolloutStats = s
            if settings.logCompletions && ((step + 1) % loggingSteps == 0 || step == 0) {
                writeSamples(step: step + 1, prompts: plan.globalIndices, gIds: gIds, rewards: allRewards,
                             advantages: advantages, width: L + 1)
            }
        }
        // Each rank's own seconds, averaged over the ranks in stepMetrics.
        rolloutStats[Self.iGenSeconds] += (t1 - t0).seconds
        rolloutStats[Self.iRewardSeconds] += (t2 - t1).seconds
        updateStart = .now
    }

    /// (per-row completion log-probabilities, per-row entropies) of `rows` under `model`, a forward without gradients
    /// (logits / temperature, as TRL's `_get_per_token_logps_and_entropies`).
    func forwardRows(_ rows: [Int], model: GPT2LMHead) -> [[Float]] {
        let (batch, labels, starts) = makeBatch(rows)
        let lp = model.forwardTokenStats(batch, labels: labels, temperature: Float(settings.temperature), entropies: false).logps
        return extract(rows, batch: batch, starts: starts, values: lp, entropies: nil).0
    }

    /// The reference's log-probabilities of `rows` (the frozen copy, or the policy with its adapter off).
    func referenceRows(_ rows: [Int]) -> [[Float]] {
        if let reference { return forwardRows(rows, model: reference) }
        return model.withAdapterDisabled { forwardRows(rows, model: model) }
    }

    /// Rows prompt + completion, right-padded with EOS; labels: the completion tokens (prompt and padding −100).
    /// `starts[i]`: where row i's completion begins.
    func makeBatch(_ rows: [Int]) -> (TokenBatch, [Int32], [Int]) {
        guard let r = rollout else { preconditionFailure("GRPOTask: trainMicroBatch before beginStep") }
        var examples: [LMExample] = [], starts: [Int] = [], sample: [Int] = []
        let byRow = Dictionary(uniqueKeysWithValues: r.firstRow.map { ($0.value, $0.key) })
        for row in rows {
            let p = byRow[row - row % settings.numGenerations]!
            let prompt = promptIds[p], c = r.completions[row]
            examples.append(LMExample(inputIds: prompt + c, labels: [Int32](repeating: -100, count: prompt.count) + c, line: prompts[p].line))
            starts.append(prompt.count)
            sample.append(p * settings.numGenerations + row % settings.numGenerations)
        }
        let (b, l) = LMData.batch(examples, padId: eos, sampleIndices: sample)
        return (b, l, starts)
    }

    /// Per-row completion values out of a [B*T] per-position array (position t holds the value for token t + 1).
    func extract(_ rows: [Int], batch: TokenBatch, starts: [Int], values: [Float], entropies: [Float]?) -> ([[Float]], [[Float]]) {
        let T = batch.seqLen
        var lp: [[Float]] = [], ent: [[Float]] = []
        for (i, row) in rows.enumerated() {
            let n = rollout!.completions[row].count, base = i * T + starts[i] - 1
            lp.append(Array(values[base..<(base + n)]))
            if let entropies { ent.append(Array(entropies[base..<(base + n)])) }
        }
        return (lp, ent)
    }

    // MARK: - TrainingTask

    /// The objective is already normalised by the step's global counts: the trainer's scale stays 1.
    public func lossCount(_ indices: [Int]) -> Int { 1 }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        // The rollouts' own micro-batch: the plan's on a sampling step, the sampling step's when --num-iterations
        // reuses them.
        defer { microIndex += 1 }
        guard !indices.isEmpty, let r = rollout, microIndex < r.microBatches.count else { return (0, 0) }
        let indices = r.microBatches[microIndex]
        let G = settings.numGenerations
        let rows = indices.flatMap { p in (0..<G).map { r.firstRow[p]! + $0 } }
        let (batch, labels, starts) = makeBatch(rows)
        let temperature = Float(settings.temperature)
        // GRPO's KL is in the loss (the reference per micro-batch); RLOO's went into the rewards at the rollout.
        let ref: [[Float]]? = settings.beta > 0 && settings.advantage == .grpo ? referenceRows(rows) : nil
        let lpe = model.forwardTokenStats(batch, labels: labels, temperature: temperature, entropies: true)
        let (logps, ents) = extract(rows, batch: batch, starts: starts, values: lpe.logps, entropies: lpe.entropies)
        // Flat [rows, cols] with a mask, cols = the longest completion here.
        let cols = max(rows.map { r.completions[$0].count }.max() ?? 1, 1)
        func flat(_ v: [[Float]]) -> [Float] {
            var out = [Float](repeating: 0, count: rows.count * cols)
            for (i, row) in v.enumerated() { for (t, x) in row.enumerated() { out[i * cols + t] = x } }
            return out
        }
        var mask = [Float](repeating: 0, count: rows.count * cols)
        for (i, row) in rows.enumerated() { for t in 0..<r.completions[row].count { mask[i * cols + t] = 1 } }
        let res = objective.evaluate(logps: flat(logps), oldLogps: r.oldLogps.map { o in flat(rows.map { o[$0] }) },
                                     refLogps: ref.map(flat), advantages: rows.map { r.advantages[$0] }, mask: mask,
                                     rows: rows.count, cols: cols, globalRows: r.globalRows, globalTokens: r.globalTokens)
        // Token (row i, t) of the completion sits at position starts[i] + t − 1 of the batch; NLL = −logp.
        let T = batch.seqLen
        var scales = [Float](repeating: 0, count: batch.batchSize * T)
        for i in rows.indices {
            for t in 0..<r.completions[rows[i]].count { scales[i * T + starts[i] - 1 + t] = -scale * res.dLogps[i * cols + t] }
        }
        model.backward(tokenScales: scales, temperature: temperature)
        // Sums of the step (all-reduced by the trainer): token-weighted KL, entropy and clipping fractions.
        let tokens = Double(mask.reduce(0, +))
        stepSums[Self.iTokens] += tokens
        stepSums[Self.iEntropy] += ents.reduce(0.0) { $0 + $1.reduce(0.0) { $0 + Double($1) } }
        stepSums[Self.iKL] += res.klSum
        stepSums[Self.iClipLow] += res.lowClipped
        stepSums[Self.iClipHigh] += res.highClipped
        stepSums[Self.iClipRegion] += res.regionClipped
        stepSums[Self.iClipUnits] += res.clipUnits
        return (res.loss, batch.attentionMask.reduce(0) { $0 + Int($1) })
    }

    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats { EvalStats() }
    public func metrics(_ stats: EvalStats) -> [String: Double] { [:] }

    // MARK: - Step metrics

    static let (iTokens, iEntropy, iKL, iClipLow, iClipHigh, iClipRegion) = (0, 1, 2, 3, 4, 5)
    static let (iReward, iRewardStd, iGroupStd, iZeroStd, iLenMean, iLenMin, iLenMax, iClipped) = (6, 7, 8, 9, 10, 11, 12, 13)
    static let (iGenSeconds, iRewardSeconds, iUpdateSeconds, iClipUnits) = (14, 15, 16, 17)
    static let sumCount = 18

    public func takeStepSums() -> [Double] {
        var s = stepSums
        for i in s.indices { s[i] += rolloutStats[i] }
        s[Self.iUpdateSeconds] += (ContinuousClock.now - updateStart).seconds
        stepSums = [Double](repeating: 0, count: Self.sumCount)
        rolloutStats = stepSums
        return s
    }

    /// TRL's names where TRL logs the value (reward, reward_std, frac_reward_zero_std, kl, entropy, completions/*,
    /// clip_ratio/*); ours: reward_group_std (mean over prompts of the group's std), time/* (seconds per step, mean
    /// over ranks: sampling, reward model, and the update's forward/backward/all-reduce).
    public func stepMetrics(_ s: [Double], count: Int) -> [String: Double] {
        guard s.count == Self.sumCount else { return [:] }
        let tok = max(s[Self.iTokens], 1), w = Double(max(worldSize, 1))
        var m: [String: Double] = [
            "reward": s[Self.iReward], "reward_std": s[Self.iRewardStd], "reward_group_std": s[Self.iGroupStd],
            "frac_reward_zero_std": s[Self.iZeroStd], "entropy": s[Self.iEntropy] / tok,
            "completions/mean_length": s[Self.iLenMean], "completions/min_length": s[Self.iLenMin],
            "completions/max_length": s[Self.iLenMax], "completions/clipped_ratio": s[Self.iClipped],
            "time/generation_s": s[Self.iGenSeconds] / w, "time/reward_s": s[Self.iRewardSeconds] / w,
            "time/update_s": s[Self.iUpdateSeconds] / w]
        if settings.beta > 0 { m["kl"] = s[Self.iKL] / tok }
        // Clipping needs a ratio ≠ 1: only with --num-iterations > 1 (TRL logs zeros otherwise).
        let units = max(s[Self.iClipUnits], 1)
        m["clip_ratio/low_mean"] = s[Self.iClipLow] / units
        m["clip_ratio/high_mean"] = s[Self.iClipHigh] / units
        m["clip_ratio/region_mean"] = s[Self.iClipRegion] / units
        return m
    }

    /// Sample standard deviation (Bessel-corrected, as torch.std); 0 for fewer than two values.
    static func std(_ v: [Double]) -> Double {
        guard v.count > 1 else { return 0 }
        let mean = v.reduce(0, +) / Double(v.count)
        return (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count - 1)).squareRoot()
    }

    // MARK: - The sample log

    static let samplesFileName = "samples.jsonl"

    /// Rank 0: every completion of the step as {"step", "prompt_index", "completion_index", "prompt", "completion",
    /// "reward", "advantage", "length"} lines appended to samples.jsonl. A resumed run first drops the lines of steps
    /// after the one it resumes from (they are sampled again, identically).
    func writeSamples(step: Int, prompts indices: [Int], gIds: [Int64], rewards: [Float], advantages: [Float], width: Int) {
        let url = outputDir.appendingPathComponent(Self.samplesFileName)
        if !sampleLogTrimmed {
            sampleLogTrimmed = true
            if let d = try? Data(contentsOf: url), let text = String(data: d, encoding: .utf8) {
                let kept = text.split(separator: "\n").filter { line in
                    guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                          let s = (o["step"] as? NSNumber)?.intValue else { return false }
                    return s < step
                }
                try? Data(kept.map { $0 + "\n" }.joined().utf8).write(to: url)
            }
        }
        let G = settings.numGenerations
        var out = ""
        for (j, p) in indices.enumerated() {
            for k in 0..<G {
                let row = j * G + k, base = row * width
                let n = Int(gIds[base])
                let ids = (0..<n).map { Int32(gIds[base + 1 + $0] - 1) }
                let completion = tokenizer.decode(ids, skipSpecialTokens: true)
                out += JSONLines.objectLine(["step": Double(step), "prompt_index": Double(p), "completion_index": Double(k),
                                             "reward": Double(rewards[row]), "advantage": Double(advantages[row]), "length": Double(n)],
                                            appending: [("prompt", Self.jsonString(prompts[p].prompt)),
                                                        ("completion", Self.jsonString(completion)),
                                                        ("completion_ids", "[" + ids.map(String.init).joined(separator: ",") + "]")]) + "\n"
            }
        }
        try? FileManager.default.createDirectory(at: outputDir, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        if let h = FileHandle(forWritingAtPath: url.path) {
            _ = try? h.seekToEnd()
            h.write(Data(out.utf8))
            try? h.close()
        }
    }

    static func jsonString(_ s: String) -> String {
        let d = (try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
        let a = String(decoding: d, as: UTF8.self)
        return String(a.dropFirst().dropLast())
    }

    // MARK: - Saving, gradient sync

    var lmParts: GPT2LMParts { GPT2LMParts(model: model, config: config, baseStore: baseStore, lora: lora, modelDir: modelDir) }
    public func save(to dir: URL, weights: ParameterStore?) throws { try lmParts.save(to: dir, weights: weights) }
    public var gradientSync: GradientSyncLayout { lmParts.gradientSync }
    public func setBackwardHook(_ hook: ((Int) -> Void)?) { lmParts.setBackwardHook(hook) }
    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { lmParts.setProbe(probe) }
}
