// Loss.swift: classification losses by problem_type, as sums over the batch with the gradient written for a
// caller-chosen scale. The trainer passes scale = 1/globalCount (examples over all ranks and micro-batches) so
// that gradients are normalised globally; with scale = 1/B and one micro-batch, (returned sum) × scale and
// dLogits equal transformers' loss and its gradient exactly:
//   single_label_classification: CrossEntropyLoss(mean over B)      = Σ_b ce_b / B
//   multi_label_classification:  BCEWithLogitsLoss(mean over B·NL)   = Σ_b (Σ_c bce_bc / NL) / B
//   regression:                  MSELoss(mean over B·NL; NL=1 squeezed) = Σ_b (Σ_c (x-y)² / NL) / B
// So each function returns Σ_b ℓ_b where ℓ_b is the per-example loss averaged over its NL outputs.
// Sums are accumulated in Double. Deliberately not here: the model, LM losses, label smoothing.
import Foundation

public enum Loss {
    /// Cross-entropy over `classes` logits per row; labels [B] in 0..<classes, or -100 (ignored: zero loss and
    /// gradient, like torch's ignore_index; the caller then counts only non-ignored rows in scale).
    public static func crossEntropy(logits: UnsafeBufferPointer<Float>, labels: [Int32], batch: Int, classes: Int,
                                    scale: Float, dLogits: UnsafeMutableBufferPointer<Float>) -> Double {
        precondition(logits.count >= batch * classes && dLogits.count >= batch * classes && labels.count >= batch)
        var total = 0.0
        for b in 0..<batch {
            let row = b * classes
            let y = Int(labels[b])
            if y == -100 {
                for c in 0..<classes { dLogits[row + c] = 0 }
                continue
            }
            precondition(y >= 0 && y < classes, "label \(y) outside 0..<\(classes)")
            var m = -Double.infinity
            for c in 0..<classes { m = max(m, Double(logits[row + c])) }
            var s = 0.0
            for c in 0..<classes { s += Foundation.exp(Double(logits[row + c]) - m) }
            let lse = m + Foundation.log(s)
            total += lse - Double(logits[row + y])
            for c in 0..<classes {
                let p = Foundation.exp(Double(logits[row + c]) - lse)
                dLogits[row + c] = Float((p - (c == y ? 1 : 0)) * Double(scale))
            }
        }
        return total
    }

    /// Multi-label BCE with logits; labels [B*classes] (0/1 or soft targets). Per example: mean over classes.
    public static func bceWithLogits(logits: UnsafeBufferPointer<Float>, labels: [Float], batch: Int, classes: Int,
                                     scale: Float, dLogits: UnsafeMutableBufferPointer<Float>) -> Double {
        precondition(logits.count >= batch * classes && dLogits.count >= batch * classes && labels.count >= batch * classes)
        var total = 0.0
        let inv = 1.0 / Double(classes)
        for i in 0..<(batch * classes) {
            let x = Double(logits[i]), y = Double(labels[i])
            // stable: max(x,0) - x y + log(1 + exp(-|x|))
            total += (max(x, 0) - x * y + Foundation.log1p(Foundation.exp(-abs(x)))) * inv
            let sig = 1 / (1 + Foundation.exp(-x))
            dLogits[i] = Float((sig - y) * inv * Double(scale))
        }
        return total
    }

    /// Regression MSE; labels [B*classes]. Per example: mean of squared errors over its outputs.
    public static func mse(logits: UnsafeBufferPointer<Float>, labels: [Float], batch: Int, classes: Int,
                           scale: Float, dLogits: UnsafeMutableBufferPointer<Float>) -> Double {
        precondition(logits.count >= batch * classes && dLogits.count >= batch * classes && labels.count >= batch * classes)
        var total = 0.0
        let inv = 1.0 / Double(classes)
        for i in 0..<(batch * classes) {
            let d = Double(logits[i]) - Double(labels[i])
            total += d * d * inv
            dLogits[i] = Float(2 * d * inv * Double(scale))
        }
        return total
    }
}
