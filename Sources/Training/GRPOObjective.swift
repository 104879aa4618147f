// GRPOObjective.swift: the on-line RL objective of TRL 1.16.0's GRPOTrainer and RLOOTrainer as pure functions on flat
// arrays (no model, no MPI): group-relative or leave-one-out advantages from rewards, RLOO's KL-in-the-reward, and the
// clipped surrogate loss with its per-token gradient dLoss/dlogp and the statistics TRL logs.
// Shapes: rows = completions on this rank, cols = the padded completion length; per-token arrays are [rows * cols]
// row-major, mask[b*cols + t] = 1 on completion tokens (up to and including EOS), 0 on padding.
// The caller gets logps (and entropies) from `GPT2LMHead.forwardTokenStats(batch, labels:, temperature:)` (or forward +
// `logProbsAndEntropies(temperature:)`), and turns the per-token gradient into parameter gradients with
// `GPT2LMHead.backward(tokenScales: result.dLogps.map { -$0 }, temperature:)` (tokenScales weight the NLL = −logp).
// Deliberately not here: sampling, rewards, the model, the all-reduce (Training/GRPOTask.swift does those).
//
// Where we differ from TRL on purpose: every normaliser is GLOBAL (rows and tokens of the whole step over all ranks
// and micro-batches, passed in as globalRows / globalTokens), so the sum over ranks of each rank's loss and gradient is
// the loss and gradient of one process holding the whole batch, and 1 and N ranks agree. TRL normalises per process
// (and per micro-batch) and lets DDP average; the two coincide for one process without gradient accumulation, which
// is what the goldens record. Per loss type:
//   grpo     Σ_b (Σ_t m·l / max(1, Σ_t m)) / globalRows          TRL: / local rows (equal per rank: same)
//   dr_grpo  Σ m·l / (globalRows · maxCompletionLength)           TRL: local rows (equal per rank: same)
//   dapo     Σ m·l / globalTokens                                 TRL: num_items_in_batch (global tokens): same
//   bnpo     Σ m·l / globalTokens                                 TRL: / local micro-batch tokens, then DDP's mean
//            (so in ours bnpo ≡ dapo; TRL's bnpo depends on how the tokens fall across ranks and micro-batches)
//   rloo     Σ_b −min(c·A, clip(c)·A) / globalRows (sequence-level ratio c = exp(Σ_t m·(logp − old)))
// TRL options not modelled (their defaults are assumed): importance_sampling_level "token", delta None,
// top_entropy_quantile 1, off_policy_mask_threshold None, no entropy bonus, no vLLM. use_bias_correction_kl (TRL 1.16
// default True: the k3 KL is multiplied by the ratio, whose gradient flows even where it is 1) is `biasCorrectedKL`.
import Foundation

/// How GRPO aggregates per-token losses (TRL's `loss_type`; raw values are TRL's names).
public enum GRPOLossType: String, CaseIterable, Sendable {
    /// Per-sequence mean over its tokens, then mean over sequences.
    case grpo
    /// Sum over tokens / (sequences · max_completion_length) (Dr. GRPO: no length bias).
    case drGrpo = "dr_grpo"
    /// Sum over tokens / tokens (TRL: of the local micro-batch; ours: global, see the file header).
    case bnpo
    /// Sum over tokens / tokens of the whole generation batch across processes (TRL 1.16's default).
    case dapo
}

/// How rewards are scaled into advantages (TRL's `scale_rewards`; for RLOO `batch` is `normalize_advantages=True`).
public enum RewardScaling: String, CaseIterable, Sendable {
    /// Divide by the group's reward std (+1e-4). GRPO only (TRL's default).
    case group
    /// GRPO: divide by the std of every reward of the step (+1e-4). RLOO: normalise the advantages over the step,
    /// (A − mean A) / (std A + 1e-4).
    case batch
    /// No scaling (GRPO: reward − group mean; RLOO: reward − leave-one-out baseline; RLOO's default).
    case none
}

/// Which trainer's objective: GRPOTrainer (group-mean baseline, per-token ratio, k3 KL in the loss) or RLOOTrainer
/// (leave-one-out baseline, sequence-level ratio, k1 KL subtracted from the reward).
public enum AdvantageEstimator: String, CaseIterable, Sendable {
    case grpo
    case rloo
}

/// The objective's settings (TRL names in the comments; defaults are TRL 1.16.0's for GRPO).
public struct GRPOObjectiveConfig: Sendable, Equatable {
    /// grpo (GRPOTrainer) or rloo (RLOOTrainer): which loss `evaluate` computes.
    public var estimator: AdvantageEstimator
    /// `beta`: KL coefficient. GRPO: β·k3 per token in the loss; RLOO: β·Σ_t(old − ref) off the reward
    /// (`rlooRewards`), not in the loss. 0: no reference needed. TRL defaults: GRPO 0, RLOO 0.05.
    public var beta: Double
    /// `epsilon`: lower clip, ratio ≥ 1 − epsilonLow.
    public var epsilonLow: Double
    /// `epsilon_high` (defaults to epsilon): upper clip, ratio ≤ 1 + epsilonHigh.
    public var epsilonHigh: Double
    /// `loss_type` (GRPO only; RLOO has one loss).
    public var lossType: GRPOLossType
    /// `max_completion_length`: dr_grpo's per-sequence normaliser (TRL default 256).
    public var maxCompletionLength: Int
    /// `use_bias_correction_kl` (TRL 1.16 default true): GRPO's per-token KL is multiplied by the importance ratio
    /// (value 1 on-policy, but its gradient still flows), which also changes the logged kl when the ratio is not 1.
    public var biasCorrectedKL: Bool
    /// `temperature`: TRL divides the logits by the sampling temperature before its log-probs, so the caller passes this
    /// to `tokenLogProbs(temperature:)`, `tokenEntropies(temperature:)` and `backward(tokenScales:temperature:)`.
    /// `evaluate` itself does not use it.
    public var temperature: Float

    public init(estimator: AdvantageEstimator = .grpo, beta: Double = 0, epsilonLow: Double = 0.2, epsilonHigh: Double? = nil,
                lossType: GRPOLossType = .dapo, maxCompletionLength: Int = 256, temperature: Float = 1,
                biasCorrectedKL: Bool = true) {
        self.estimator = estimator; self.beta = beta; self.epsilonLow = epsilonLow
        self.epsilonHigh = epsilonHigh ?? epsilonLow; self.lossType = lossType
        self.maxCompletionLength = maxCompletionLength; self.temperature = temperature
        self.biasCorrectedKL = biasCorrectedKL
    }

    /// One line naming what is wrong with the settings for groups of `groupSize` completions, or nil. TRL refuses
    /// fewer than 2 generations; RLOOTrainer has no per-group scaling.
    public func validationError(groupSize: Int, scaling: RewardScaling) -> String? {
        if groupSize < 2 { return "--num-generations \(groupSize): group-relative advantages need at least 2 completions per prompt" }
        if estimator == .rloo && scaling == .group {
            return "--advantage rloo takes --scale-rewards batch (normalise the advantages) or none, not group"
        }
        if epsilonLow < 0 || epsilonHigh < 0 { return "epsilon must be >= 0" }
        if beta < 0 { return "beta must be >= 0" }
        if lossType == .drGrpo && maxCompletionLength < 1 { return "dr_grpo needs max_completion_length >= 1" }
        return nil
    }
}

/// What `evaluate` returns: this rank's loss share, the per-token gradient, and the sums behind TRL's metrics (sum them
/// over ranks, then divide: the *Mean properties are the one-process values).
public struct GRPOLossResult: Sendable {
    /// This rank's share of the global loss (Σ over ranks = the loss TRL reports for one process).
    public var loss: Double
    /// dLoss/dlogp per token [rows*cols] (0 off the mask). Feed −dLogps as tokenScales to backward(tokenScales:).
    public var dLogps: [Float]
    /// Σ over masked tokens of the per-token KL (GRPO: k3 = exp(ref−logp) − (ref−logp) − 1, times the ratio when
    /// biasCorrectedKL, as TRL logs it; 0 when beta is 0 or no reference; RLOO reports its KL from `rlooRewards`).
    public var klSum: Double
    /// Σ mask (this rank's completion tokens).
    public var tokenCount: Double
    /// Clip indicators summed over the clip unit (GRPO: masked tokens; RLOO: sequences): ratio < 1−ε_low with A < 0,
    /// ratio > 1+ε_high with A > 0, and either.
    public var lowClipped: Double, highClipped: Double, regionClipped: Double
    /// The denominator of the clip means: tokenCount (GRPO) or rows (RLOO).
    public var clipUnits: Double
    /// min over this rank's sequences of its low-clipped fraction (TRL's clip_ratio/low_min; RLOO: of its 0/1
    /// indicator); +inf when no sequence has a token. Reduce with min over ranks.
    public var lowClipMin: Double
    /// max over sequences of the high-clipped fraction (clip_ratio/high_max); −inf when none. Reduce with max.
    public var highClipMax: Double

    public var klMean: Double { klSum / max(1, tokenCount) }
    public var lowClipMean: Double { lowClipped / max(1, clipUnits) }
    public var highClipMean: Double { highClipped / max(1, clipUnits) }
    public var regionClipMean: Double { regionClipped / max(1, clipUnits) }
}

public enum GRPOObjective {
    /// TRL's epsilon in every std denominator.
    public static let stdEpsilon = 1e-4

    /// Advantages of `rewards` ([groups * groupSize], the completions of one prompt consecutive, groups in order),
    /// as TRL computes them in `_generate_and_score_completions` (Double inside, TRL computes in float32):
    ///   grpo: A = r − mean_group(r); divided by (std + 1e-4) with std the group's (`group`) or the whole array's
    ///         (`batch`) Bessel-corrected std; `none`: not divided.
    ///   rloo: A = r − (Σ_group r − r) / (G − 1); `batch`: A = (A − mean A) / (std A + 1e-4) (normalize_advantages);
    ///         `group` is not TRL's (validationError refuses it) and is treated as `none` here.
    /// For `group` (and for `none`) local groups suffice: a group never spans ranks. For `batch` pass the rewards of the
    /// WHOLE step (all ranks, in global order; with RLOO already KL-penalised) and take this rank's slice of the result.
    /// groupSize 1: all advantages 0 (TRL's eval case).
    public static func advantages(rewards: [Float], groupSize G: Int, estimator: AdvantageEstimator,
                                  scaling: RewardScaling) -> [Float] {
        precondition(G > 0 && rewards.count % G == 0, "rewards (\(rewards.count)) must be whole groups of \(G)")
        let r = rewards.map(Double.init)
        if G == 1 { return [Float](repeating: 0, count: r.count) }
        var a = [Double](repeating: 0, count: r.count)
        switch estimator {
        case .grpo:
            let batchStd = scaling == .batch ? std(r) : 0
            for g in stride(from: 0, to: r.count, by: G) {
                let grp = Array(r[g..<(g + G)])
                let m = mean(grp)
                let s = scaling == .group ? std(grp) : batchStd
                for i in 0..<G {
                    a[g + i] = r[g + i] - m
                    if scaling != .none { a[g + i] /= s + stdEpsilon }
                }
            }
        case .rloo:
            for g in stride(from: 0, to: r.count, by: G) {
                let sum = r[g..<(g + G)].reduce(0, +)
                for i in 0..<G { a[g + i] = r[g + i] - (sum - r[g + i]) / Double(G - 1) }
            }
            if scaling == .batch {
                let m = mean(a), s = std(a)
                a = a.map { ($0 - m) / (s + stdEpsilon) }
            }
        }
        return a.map(Float.init)
    }

    /// RLOO's KL in the reward (RLOOTrainer with beta ≠ 0): per sequence kl_b = Σ_t m·(old − ref) (the first-order
    /// estimator on the sampling policy's log-probs, which may be negative), reward_b − β·kl_b. Returns the penalised
    /// rewards and kl_b [rows]; TRL's logged `kl` is Σ_b kl_b / Σ mask (over all ranks).
    public static func rlooRewards(rewards: [Float], oldLogps: [Float], refLogps: [Float], mask: [Float],
                                   rows: Int, cols: Int, beta: Double) -> (rewards: [Float], sequenceKL: [Double]) {
        precondition(rewards.count == rows && oldLogps.count == rows * cols && refLogps.count == rows * cols && mask.count == rows * cols)
        var kl = [Double](repeating: 0, count: rows)
        for b in 0..<rows {
            var s: Float = 0   // float32 as TRL
            for t in 0..<cols { let i = b * cols + t; s += (oldLogps[i] - refLogps[i]) * mask[i] }
            kl[b] = Double(s)
        }
        return (zip(rewards, kl).map { Float(Double($0) - beta * $1) }, kl)
    }

    static func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(x.count) }
    /// Bessel-corrected (TRL's nanstd); 0 for fewer than 2 values (TRL: NaN, then zeroed).
    static func std(_ x: [Double]) -> Double {
        guard x.count > 1 else { return 0 }
        let m = mean(x)
        return (x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(x.count - 1)).squareRoot()
    }
}

extension GRPOObjectiveConfig {
    /// The loss of this rank's `rows` completions and dLoss/dlogp per token, as TRL's `_compute_loss` with
    /// the normalisers made global (see the file header).
    /// - logps: the policy's per-token log-probs (at `temperature`) [rows*cols], from the forward that will be
    ///   back-propagated.
    /// - oldLogps: the sampling policy's (num_iterations > 1); nil: logps themselves, detached (ratio exactly 1), as TRL
    ///   when num_iterations == 1.
    /// - refLogps: the reference's (GRPO with beta > 0; ignored otherwise; nil with beta > 0: no KL term).
    /// - advantages: [rows], from `GRPOObjective.advantages` (this rank's slice).
    /// - globalRows / globalTokens: completions and Σ mask of the whole step over all ranks.
    public func evaluate(logps: [Float], oldLogps: [Float]?, refLogps: [Float]?, advantages: [Float], mask: [Float],
                         rows: Int, cols: Int, globalRows: Int, globalTokens: Int) -> GRPOLossResult {
        let n = rows * cols
        precondition(logps.count == n && mask.count == n && advantages.count == rows, "shapes: logps/mask [rows*cols], advantages [rows]")
        precondition(oldLogps == nil || oldLogps!.count == n, "oldLogps [rows*cols]")
        precondition(refLogps == nil || refLogps!.count == n, "refLogps [rows*cols]")
        var res = GRPOLossResult(loss: 0, dLogps: [Float](repeating: 0, count: n), klSum: 0, tokenCount: 0,
                                 lowClipped: 0, highClipped: 0, regionClipped: 0, clipUnits: 0,
                                 lowClipMin: .infinity, highClipMax: -.infinity)
        let lo = 1 - epsilonLow, hi = 1 + epsilonHigh
        for i in 0..<n { res.tokenCount += Double(mask[i]) }

        /// −min(c·A, clip(c)·A) and its derivative in c, with torch's tie rule (min's gradient split in halves, clamp
        /// passing the gradient on [lo, hi] inclusive).
        func surrogate(_ c: Double, _ A: Double) -> (loss: Double, dc: Double) {
            let cc = Swift.min(Swift.max(c, lo), hi)
            let l1 = c * A, l2 = cc * A
            let inRange = c >= lo && c <= hi
            if l1 < l2 { return (-l1, -A) }
            if l1 > l2 { return (-l2, inRange ? -A : 0) }
            return (-l1, -A * 0.5 + (inRange ? -A * 0.5 : 0))
        }

        switch estimator {
        case .grpo:
            let useKL = beta != 0 && refLogps != nil
            for b in 0..<rows {
                let A = Double(advantages[b])
                var rowTokens = 0.0, rowLow = 0.0, rowHigh = 0.0
                for t in 0..<cols { rowTokens += Double(mask[b * cols + t]) }
                let w: Double
                switch lossType {
                case .grpo: w = 1 / Swift.max(1, rowTokens) / Double(globalRows)
                case .bnpo, .dapo: w = 1 / Swift.max(1, Double(globalTokens))
                case .drGrpo: w = 1 / (Double(globalRows) * Double(maxCompletionLength))
                }
                for t in 0..<cols {
                    let i = b * cols + t
                    let m = Double(mask[i])
                    guard m != 0 else { continue }
                    let lp = logps[i]
                    // ratio in float32 as TRL: exp(logp − old)
                    let c = oldLogps.map { Double(Foundation.exp(lp - $0[i])) } ?? 1
                    var (l, dl) = surrogate(c, A)
                    dl *= c                                  // dc/dlogp = c
                    if useKL {
                        let d = Double(refLogps![i] - lp)    // float32 difference as TRL
                        let e = Foundation.exp(d)
                        var kl = e - d - 1, dkl = 1 - e
                        if biasCorrectedKL { dkl = dkl * c + kl * c; kl *= c }
                        l += beta * kl
                        dl += beta * dkl
                        res.klSum += m * kl
                    }
                    res.loss += w * m * l
                    res.dLogps[i] = Float(w * m * dl)
                    let low = c < lo && A < 0, high = c > hi && A > 0
                    if low { res.lowClipped += m; rowLow += m }
                    if high { res.highClipped += m; rowHigh += m }
                    if low || high { res.regionClipped += m }
                }
                if rowTokens > 0 {
                    res.lowClipMin = Swift.min(res.lowClipMin, rowLow / rowTokens)
                    res.highClipMax = Swift.max(res.highClipMax, rowHigh / rowTokens)
                }
            }
            res.clipUnits = res.tokenCount
        case .rloo:
            let w = 1 / Double(globalRows)
            for b in 0..<rows {
                let A = Double(advantages[b])
                var s: Float = 0, so: Float = 0              // float32 sums as TRL
                for t in 0..<cols {
                    let i = b * cols + t
                    s += logps[i] * mask[i]
                    if let o = oldLogps { so += o[i] * mask[i] }
                }
                let c = oldLogps == nil ? 1 : Double(Foundation.exp(s - so))
                let (l, dc) = surrogate(c, A)
                res.loss += w * l
                let g = Float(w * dc * c)
                for t in 0..<cols where mask[b * cols + t] != 0 { res.dLogps[b * cols + t] = g * mask[b * cols + t] }
                let low = c < lo && A < 0, high = c > hi && A > 0
                if low { res.lowClipped += 1 }
                if high { res.highClipped += 1 }
                if low || high { res.regionClipped += 1 }
                res.lowClipMin = Swift.min(res.lowClipMin, low ? 1 : 0)
                res.highClipMax = Swift.max(res.highClipMax, high ? 1 : 0)
            }
            res.clipUnits = Double(rows)
        }
        return res
    }
}
