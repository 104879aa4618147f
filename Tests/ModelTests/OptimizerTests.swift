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

    /// The vectorised AdamW kernel is bit-identical to the scalar reference (no FMA contraction), on segments whose
    /// lengths are not multiples of the 8-lane width, with and without decay, over several steps.
    func testVectorisedAdamWIsBitIdenticalToTheScalarReference() {
        var l = ParameterLayout()
        l.add("a.weight", [37, 5]); l.add("a.bias", [13]); l.add("LayerNorm.weight", [3]); l.add("c.weight", [1000])
        func make() -> (ParameterStore, AdamW) {
            let s = ParameterStore(layout: l)
            var x: UInt64 = 12345
            func r() -> Float { x = x &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: x >> 11) % 2000 - 1000) / 997 }
            for i in s.values.indices { s.values[i] = r() }
            return (s, AdamW(store: s, config: AdamWConfig(weightDecay: 0.01)))
        }
        let (s1, o1) = make(), (s2, o2) = make()
        for step in 0..<4 {
            var x: UInt64 = UInt64(step) &+ 99
            for i in s1.grads.indices {
                x = x &* 6364136223846793005 &+ 1442695040888963407
                let g = Float(Int64(bitPattern: x >> 11) % 2000 - 1000) / 1000 * (step == 2 ? 1e-6 : 1)
                s1.grads[i] = g; s2.grads[i] = g
            }
            o1.step(lr: 3e-3)
            o2.stepReference(lr: 3e-3)
            XCTAssertEqual(Array(s1.values).map(\.bitPattern), Array(s2.values).map(\.bitPattern), "parameters after step \(step + 1)")
            XCTAssertEqual(o1.v.map(\.bitPattern), o2.v.map(\.bitPattern), "second moments after step \(step + 1)")
        }
        XCTAssertNotEqual(Array(s1.values), Array(make().0.values), "the steps must change the parameters")
    }

    func testGlobalNormMatchesADoubleSumOnAnOddLength() {
        let g: [Float] = (0..<1001).map { Float($0 % 17) * 0.25 - 2 }
        let ref = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let n = g.withUnsafeBufferPointer { GradientClipping.globalNorm($0) }
        XCTAssertEqual(n, ref, accuracy: ref * 1e-15)
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
