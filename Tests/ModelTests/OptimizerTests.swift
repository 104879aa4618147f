// AdamW, clipping and schedules against hand-derived values and the fixtures' recorded learning rates.
import XCTest
@testable import Model

final class OptimizerTests: XCTestCase {
    func testLinearWarmupMatchesTransformers() {
        // golden.json train_log: lr used in steps 1..6 with warmup 2, total 6, peak 1e-3.
        let s = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 2, totalSteps: 6)
        let expected = [0, 5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4]
        for (k, e) in expected.enumerated() { XCTAssertEqual(s.lr(forStep: k), e, accuracy: 1e-15, "step \(k + 1)") }
    }

    func testCosineAndConstant() {
        let c = LRSchedule(kind: .cosine, peak: 1.0, warmupSteps: 0, totalSteps: 4)
        // 0.5 (1 + cos(pi * k/4)) for k = 0..4.
        for k in 0...4 { XCTAssertEqual(c.lr(forStep: k), 0.5 * (1 + cos(Double.pi * Double(k) / 4)), accuracy: 1e-12) }
        XCTAssertEqual(LRSchedule(kind: .constant, peak: 0.3, warmupSteps: 5, totalSteps: 9).lr(forStep: 0), 0.3)
        XCTAssertEqual(LRSchedule(kind: .constantWithWarmup, peak: 0.4, warmupSteps: 4, totalSteps: 9).lr(forStep: 1), 0.1, accuracy: 1e-15)
    }

    func testAdamWFirstStepsByHand() {
        var l = ParameterLayout()
        l.add("w", [1])
        l.add("b.bias", [1])
        let store = ParameterStore(layout: l)
        store.value("w")[0] = 1
        store.value("b.bias")[0] = 1
        let opt = AdamW(store: store, config: AdamWConfig(weightDecay: 0.1))
        store.grad("w")[0] = 0.5
        store.grad("b.bias")[0] = 0.5
        opt.step(lr: 0.01)
        // t=1: m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25 → update = lr * 0.5 / (0.5 + 1e-8).
        // w also decays first: 1 * (1 - 0.01*0.1) = 0.999.
        XCTAssertEqual(Double(store.value("w")[0]), 0.999 - 0.01 * 0.5 / (0.5 + 1e-8), accuracy: 1e-6)
        XCTAssertEqual(Double(store.value("b.bias")[0]), 1 - 0.01 * 0.5 / (0.5 + 1e-8), accuracy: 1e-6)
        // t=2 with lr 0: weights unchanged, moments still advance (the fixtures' first step runs at lr 0).
        let before = Array(store.values)
        opt.step(lr: 0)
        XCTAssertEqual(Array(store.values), before)
        XCTAssertEqual(opt.stepCount, 2)
    }

    func testClipScalesToMaxNormAndReturnsPreClipNorm() {
        var g: [Float] = [3, 4]
        let n = g.withUnsafeMutableBufferPointer { GradientClipping.clip($0, maxNorm: 1) }
        XCTAssertEqual(n, 5, accuracy: 1e-12)
        XCTAssertEqual(Double(g[0]), 3 / (5 + 1e-6), accuracy: 1e-7)
        var small: [Float] = [0.3, 0.4]
        _ = small.withUnsafeMutableBufferPointer { GradientClipping.clip($0, maxNorm: 1) }
        XCTAssertEqual(small, [0.3, 0.4], "below the max norm nothing changes")
    }

    func testDecayRuleFollowsTrainer() {
        XCTAssertTrue(ParameterLayout.defaultDecay("bert.embeddings.word_embeddings.weight"))
        XCTAssertFalse(ParameterLayout.defaultDecay("bert.embeddings.LayerNorm.weight"))
        XCTAssertFalse(ParameterLayout.defaultDecay("classifier.bias"))
        XCTAssertFalse(ParameterLayout.defaultDecay("distilbert.transformer.layer.0.sa_layer_norm.weight"))
        XCTAssertFalse(ParameterLayout.defaultDecay("transformer.h.0.ln_1.weight"))
        XCTAssertTrue(ParameterLayout.defaultDecay("transformer.h.0.attn.c_attn.weight"))
    }
}
