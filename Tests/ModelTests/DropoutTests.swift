// DropoutTests.swift: the counter-based dropout: keep-rate and scaling, p = 0 identity, masks keyed by
// (seed, step, sample index) independent of batch position and padded length, and the model's backward
// consistent with the masks its forward drew (directional finite differences with dropout active).
import Foundation
import XCTest
import CKernels
@testable import Model

final class DropoutTests: XCTestCase {
    func testKeepRateScaleAndIdentityAtZero() {
        let n = 200_000
        let x = [Float](repeating: 1, count: n)
        var y = [Float](repeating: 0, count: n)
        let p: Float = 0.1
        ck_dropout_row(x, &y, n, DropoutKey.row(DropoutKey.sample(DropoutContext(seed: 3, step: 5), sample: 17, site: 1), 4),
                       DropoutKey.threshold(p: p), DropoutKey.scale(p: p))
        let kept = y.filter { $0 != 0 }
        // binomial sd = sqrt(0.09 / 2e5) = 6.7e-4; ±0.005 is 7 sd
        XCTAssertEqual(Double(kept.count) / Double(n), 0.9, accuracy: 0.005, "keep rate")
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.9) < 1e-6 }, "kept values must be scaled by 1/(1-p)")
        ck_dropout_row(x, &y, n, 12345, DropoutKey.threshold(p: 0), DropoutKey.scale(p: 0))
        XCTAssertEqual(y, x, "p = 0 must be the identity")
        // different rows / samples / steps give different masks
        let k1 = DropoutKey.sample(DropoutContext(seed: 3, step: 5), sample: 17, site: 1)
        let k2 = DropoutKey.sample(DropoutContext(seed: 3, step: 6), sample: 17, site: 1)
        var y2 = y
        ck_dropout_row(x, &y, 1000, k1, DropoutKey.threshold(p: 0.5), 2)
        ck_dropout_row(x, &y2, 1000, k2, DropoutKey.threshold(p: 0.5), 2)
        XCTAssertNotEqual(Array(y[0..<1000]), Array(y2[0..<1000]), "the step must change the mask")
    }

    private func droppy(_ name: String = "bert-tiny-cls") throws -> (ModelConfig, ParameterStore, TokenBatch) {
        var (config, store, golden) = try Fixtures.load(name)
        config.hiddenDropout = 0.2; config.attentionDropout = 0.2; config.classifierDropout = 0.2
        let (batch, _) = try Fixtures.batch(golden, 0, bert: config.family == .bert)
        return (config, store, batch)
    }

    private func rows(_ b: TokenBatch, _ idx: [Int], T: Int, samples: [Int]) -> TokenBatch {
        var ids: [Int32] = [], mask: [Int32] = []
        for r in idx { for t in 0..<T {
            let inRange = t < b.seqLen
            ids.append(inRange ? b.inputIds[r * b.seqLen + t] : 0)
            mask.append(inRange ? b.attentionMask[r * b.seqLen + t] : 0)
        } }
        return TokenBatch(batchSize: idx.count, seqLen: T, inputIds: ids, attentionMask: mask, sampleIndices: samples)
    }

    /// Recomputing the attention probabilities in backward (the default) gives bit-identical logits and gradients to
    /// keeping them, with every dropout site active.
    func testAttentionRecomputationIsBitIdenticalToKeptProbabilities() throws {
        let (config, store, batch) = try droppy()
        let NL = config.numLabels
        func run(_ recompute: Bool) -> (logits: [Float], grads: [Float]) {
            store.zeroGrads()
            let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40, recomputeAttention: recompute)
            let logits = Array(model.forward(batch, dropout: DropoutContext(seed: 5, step: 1)))
            let d = logits.indices.map { Float(($0 % NL) + 1) * 0.1 }
            d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
            return (logits, Array(store.grads))
        }
        let kept = run(false), recomputed = run(true)
        XCTAssertEqual(kept.logits.map(\.bitPattern), recomputed.logits.map(\.bitPattern))
        XCTAssertEqual(kept.grads.map(\.bitPattern), recomputed.grads.map(\.bitPattern))
        XCTAssertTrue(kept.grads.contains { $0 != 0 }, "backward must produce gradients")
    }

    func testMaskFollowsSampleNotPositionOrPadding() throws {
        let (config, store, batch) = try droppy()
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
        let ctx = DropoutContext(seed: 99, step: 3)
        let NL = config.numLabels
        let ab = Array(model.forward(rows(batch, [0, 1], T: batch.seqLen, samples: [7, 9]), dropout: ctx))
        let ba = Array(model.forward(rows(batch, [1, 0], T: batch.seqLen, samples: [9, 7]), dropout: ctx))
        assertClose(Array(ab[0..<NL]), Array(ba[NL..<(2 * NL)]), atol: 1e-7, "sample 7 moved from row 0 to row 1")
        assertClose(Array(ab[NL..<(2 * NL)]), Array(ba[0..<NL]), atol: 1e-7, "sample 9 moved from row 1 to row 0")
        // the same sample alone, with less padding (T = 12 covers its 12 real tokens) and with more (T = 40)
        let short = Array(model.forward(rows(batch, [0], T: 12, samples: [7]), dropout: ctx))
        let long = Array(model.forward(rows(batch, [0], T: 40, samples: [7]), dropout: ctx))
        assertClose(short, Array(ab[0..<NL]), atol: 1e-7, "sample 7 at T=12")
        assertClose(long, Array(ab[0..<NL]), atol: 1e-7, "sample 7 at T=40")
        // dropout really acts, and depends on the step and the sample index
        let eval = Array(model.forward(rows(batch, [0], T: 12, samples: [7]), dropout: nil))
        let otherStep = Array(model.forward(rows(batch, [0], T: 12, samples: [7]), dropout: DropoutContext(seed: 99, step: 4)))
        let otherSample = Array(model.forward(rows(batch, [0], T: 12, samples: [8]), dropout: ctx))
        XCTAssertNotEqual(eval, short, "dropout had no effect")
        XCTAssertNotEqual(otherStep, short, "the step does not change the masks")
        XCTAssertNotEqual(otherSample, short, "the sample index does not change the masks")
    }

    /// With every dropout site active, the analytic gradient along d = g/|g| equals (L(θ + h d) - L(θ - h d)) / 2h
    /// for the same masks. The loss comes from float32 logits (scale 5e-3, rounding ~3e-10 each, a few 1e-9 after the
    /// layers), so the slope carries ~1e-5 absolute noise at h = 2e-4; h is that small so that ReLU kinks crossed by
    /// the step (DistilBERT's head: error linear in h, 2.7% at h = 1e-2) and curvature stay well below 1%.
    /// Bound: 1% + 1e-5. Tensors whose whole gradient is below ~1e-4 (the query projections of these tiny models)
    /// would be noise-dominated and are left to the golden gradients.
    /// A mask applied inconsistently between forward and backward is off by 10-20% (checked by mutation).
    func testBackwardMatchesFiniteDifferencesWithDropout() throws {
        try checkDirectionalDerivatives("bert-tiny-cls", [
            "bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.attention.self.value.weight", "bert.encoder.layer.0.attention.output.dense.weight",
            "bert.encoder.layer.1.intermediate.dense.weight", "bert.encoder.layer.1.output.dense.bias",
            "bert.pooler.dense.weight", "classifier.weight"])
    }

    func testDistilBertBackwardMatchesFiniteDifferencesWithDropout() throws {
        try checkDirectionalDerivatives("distilbert-tiny-cls", [
            "distilbert.embeddings.LayerNorm.bias", "distilbert.transformer.layer.0.attention.v_lin.weight", "distilbert.transformer.layer.0.attention.out_lin.weight",
            "distilbert.transformer.layer.1.ffn.lin1.weight", "distilbert.transformer.layer.1.ffn.lin2.bias",
            "pre_classifier.weight", "classifier.weight"])
    }

    private func checkDirectionalDerivatives(_ fixture: String, _ names: [String]) throws {
        let (config, store, batch) = try droppy(fixture)
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
        let ctx = DropoutContext(seed: 5, step: 1)
        let labels: [Int32] = [0, 1, 2, 2]
        let B = batch.batchSize, NL = config.numLabels
        func loss(backward: Bool) -> Double {
            let logits = model.forward(batch, dropout: ctx)
            var d = [Float](repeating: 0, count: B * NL)
            let s = d.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: labels, batch: B, classes: NL, scale: 1 / Float(B), dLogits: $0)
            }
            if backward { d.withUnsafeBufferPointer { model.backward(dLogits: $0) } }
            return s / Double(B)
        }
        store.zeroGrads()
        _ = loss(backward: true)
        for name in names {
            let g = Array(store.grad(name))
            let norm = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertGreaterThan(norm, 1e-4, "\(fixture) \(name): gradient too small for this check")
            let v = store.value(name), orig = Array(v), h = 2e-4
            for i in 0..<v.count { v[i] = orig[i] + Float(h * Double(g[i]) / norm) }
            let lp = loss(backward: false)
            for i in 0..<v.count { v[i] = orig[i] - Float(h * Double(g[i]) / norm) }
            let lm = loss(backward: false)
            for i in 0..<v.count { v[i] = orig[i] }
            let slope = (lp - lm) / (2 * h)
            XCTAssertEqual(slope, norm, accuracy: 0.01 * norm + 1e-5, "\(fixture) \(name): directional derivative \(slope) vs |grad| \(norm)")
        }
    }
}
