// Optimizer: AdamW with PyTorch semantics (torch.optim.AdamW, foreach=False), global-norm clipping, and the
// learning-rate schedules of transformers. The optimizer takes gradients and never computes them: between backward
// and `step` the trainer all-reduces and clips the flat gradient buffer.
// Deliberately not here: gradient accumulation or averaging (the trainer normalises the loss), LoRA freezing
// (a frozen parameter simply has no entry in the store that the optimizer updates).
import Foundation
import CKernels

/// AdamW hyperparameters (transformers' TrainingArguments defaults).
public struct AdamWConfig: Sendable, Equatable, Codable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 0.0
    public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.0) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }
}

/// AdamW over the flat buffers of a ParameterStore. Moments have the store's layout; `stepCount` is Adam's t.
public final class AdamW: @unchecked Sendable {
    public let config: AdamWConfig
    public let store: ParameterStore
    public private(set) var m: [Float]
    public private(set) var v: [Float]
    public var stepCount: Int = 0
    /// Contiguous ranges with their decay flag (padding between entries is skipped).
    private let segments: [(range: Range<Int>, decay: Bool)]

    public init(store: ParameterStore, config: AdamWConfig) {
        self.store = store
        self.config = config
        m = [Float](repeating: 0, count: store.count)
        v = [Float](repeating: 0, count: store.count)
        segments = store.entries.map { ($0.range, $0.decay) }
    }

    /// One update with learning rate `lr` using the gradients currently in `store.grads`.
    /// Matches torch: p *= 1 - lr·wd; m = lerp(m, g, 1-β1); v = β2·v + (1-β2)·g²;
    /// p -= (lr / (1-β1^t)) · m / (sqrt(v)/sqrt(1-β2^t) + eps).
    public func step(lr: Double) {
        update(lr: lr) { p, g, m, v, n, decay, stepSize, bc2Sqrt in
            ck_adamw(p, g, m, v, n, decay, config.beta1, config.beta2, stepSize, bc2Sqrt, config.eps)
        }
    }

    /// The scalar reference of `step` (the same arithmetic one element at a time, in Swift), for tests.
    public func stepReference(lr: Double) {
        let b1 = config.beta1, b2 = config.beta2, eps = config.eps
        update(lr: lr) { p, g, mp, vp, n, decay, stepSize, bc2Sqrt in
            for i in 0..<n {
                let gi = g[i]
                var pi = p[i] * decay
                let mi = mp[i] + (1 - b1) * (gi - mp[i])
                let vi = b2 * vp[i] + (1 - b2) * gi * gi
                mp[i] = mi
                vp[i] = vi
                pi -= stepSize * mi / (vi.squareRoot() / bc2Sqrt + eps)
                p[i] = pi
            }
        }
    }

    /// Advances the step count and applies `kernel` to every contiguous segment with its decay factor and the
    /// bias-corrected step size and sqrt(1-β2^t).
    private func update(lr: Double, kernel: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
                                             UnsafeMutablePointer<Float>, Int, Float, Float, Float) -> Void) {
        stepCount += 1
        let t = Double(stepCount)
        let bc1 = 1 - pow(Double(config.beta1), t)
        let bc2Sqrt = Float((1 - pow(Double(config.beta2), t)).squareRoot())
        let stepSize = Float(lr / bc1)
        let lrF = Float(lr)
        let p = store.values.baseAddress!, g = store.grads.baseAddress!
        m.withUnsafeMutableBufferPointer { mb in
            v.withUnsafeMutableBufferPointer { vb in
                for seg in segments {
                    let decay: Float = seg.decay ? 1 - lrF * config.weightDecay : 1
                    let o = seg.range.lowerBound
                    kernel(p + o, g + o, mb.baseAddress! + o, vb.baseAddress! + o, seg.range.count, decay, stepSize, bc2Sqrt)
                }
            }
        }
    }

    /// Restores moments and step count (checkpoint resume); counts must match the store.
    public func restore(m: [Float], v: [Float], stepCount: Int) {
        precondition(m.count == store.count && v.count == store.count)
        self.m = m; self.v = v; self.stepCount = stepCount
    }
}

public enum GradientClipping {
    /// The L2 norm of `grads`, accumulated in Float64 (the exact norm of the float32 gradients).
    public static func globalNorm(_ grads: UnsafeBufferPointer<Float>) -> Double {
        guard let base = grads.baseAddress else { return 0 }
        return ck_sumsq_f64(base, grads.count).squareRoot()
    }

    /// torch.nn.utils.clip_grad_norm_: scales by min(1, maxNorm / (norm + 1e-6)); returns the pre-clip norm.
    @discardableResult
    public static func clip(_ grads: UnsafeMutableBufferPointer<Float>, maxNorm: Double) -> Double {
        let norm = globalNorm(UnsafeBufferPointer(grads))
        guard maxNorm > 0 else { return norm }
        let coef = Float(min(1.0, maxNorm / (norm + 1e-6)))
        if coef < 1, let base = grads.baseAddress { ck_scale(base, grads.count, coef) }
        return norm
    }
}

/// Learning-rate schedules with transformers' semantics: `lr(forStep: k)` is the rate used by optimizer step k
/// (0-based), i.e. LambdaLR's factor at k. With warmup the first step runs at lr 0.
public enum LRScheduleKind: String, Sendable, CaseIterable, Codable {
    case linear, cosine, constant
    case constantWithWarmup = "constant_with_warmup"
}

public struct LRSchedule: Sendable, Equatable, Codable {
    public var kind: LRScheduleKind
    public var peak: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    public init(kind: LRScheduleKind, peak: Double, warmupSteps: Int, totalSteps: Int) {
        self.kind = kind; self.peak = peak; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
    }

    public func lr(forStep step: Int) -> Double {
        if kind == .constant { return peak }
        if step < warmupSteps { return peak * Double(step) / Double(max(1, warmupSteps)) }
        switch kind {
        case .linear:
            return peak * max(0, Double(totalSteps - step) / Double(max(1, totalSteps - warmupSteps)))
        case .cosine:
            let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
            return peak * max(0, 0.5 * (1 + cos(Double.pi * 2 * 0.5 * progress)))
        case .constant, .constantWithWarmup:
            return peak
        }
    }
}
