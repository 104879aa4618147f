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
        let (initial, _) = make()  // kept alive: `values` points into the store
        XCTAssertNotEqual(Array(s1.values), Array(initial.values), "the steps must change the parameters")
    }

    /// A row-sparse table updates only the rows that were ever touched, and the result is bit-identical to the dense
    /// update of every row (untouched rows have g = m = v = 0, so the full formula only decays them), with weight
    /// decay and a clipping factor, across a restore (live rows recovered from the moments).
    func testRowSparseTableIsBitIdenticalToTheDenseUpdate() {
        var l = ParameterLayout()
        l.add("emb.weight", [40, 6]); l.add("dense.weight", [7, 3]); l.add("dense.bias", [7])
        let table = (range: l.entry("emb.weight")!.range, rowLength: 6)
        func make() -> ParameterStore {
            let s = ParameterStore(layout: l)
            for i in s.values.indices { s.values[i] = Float(i % 13) * 0.1 - 0.6 }
            return s
        }
        let cfg = AdamWConfig(weightDecay: 0.05)
        let dense = make(), sparse = make()
        let od = AdamW(store: dense, config: cfg)
        var os = AdamW(store: sparse, config: cfg, rowSparse: [table])
        let touched: [[Int]] = [[1, 2, 9], [2, 30], [], [5, 39], [0, 1, 2, 3]]
        for (step, rows) in touched.enumerated() {
            if step == 3 {  // a resumed optimizer: same moments, live rows rebuilt from them
                let fresh = AdamW(store: sparse, config: cfg, rowSparse: [table])
                fresh.restore(m: os.m, v: os.v, stepCount: os.stepCount)
                XCTAssertEqual(fresh.liveRows, os.liveRows)
                os = fresh
            }
            for s in [dense, sparse] {
                s.zeroGrads()
                for r in rows { for c in 0..<6 { s.grads[table.range.lowerBound + r * 6 + c] = Float(r + c + step) * 0.01 - 0.02 } }
                for i in l.entry("dense.weight")!.range { s.grads[i] = Float(i + step) * 0.003 }
            }
            od.step(lr: 1e-2, gradScale: 0.75)
            os.step(lr: 1e-2, gradScale: 0.75, touchedRows: [rows])
            XCTAssertEqual(Array(sparse.values).map(\.bitPattern), Array(dense.values).map(\.bitPattern), "parameters after step \(step + 1)")
            XCTAssertEqual(os.m.map(\.bitPattern), od.m.map(\.bitPattern), "first moments after step \(step + 1)")
            XCTAssertEqual(os.v.map(\.bitPattern), od.v.map(\.bitPattern), "second moments after step \(step + 1)")
        }
        XCTAssertEqual(os.liveRows, [8], "rows 0, 1, 2, 3, 5, 9, 30, 39 were touched")
        // Weight decay reached the rows never touched (row 20) and the step changed the touched ones.
        let initial = make()
        XCTAssertNotEqual(sparse.values[table.range.lowerBound + 20 * 6], initial.values[table.range.lowerBound + 20 * 6])
    }

    /// ZeRO-1 arithmetic with one node-wide copy of the parameters: two "ranks" whose stores share one values buffer
    /// (`adoptValueBuffer`), each updating complementary owned dense ranges and table rows in it, are bit-identical
    /// to one AdamW over everything, step after step; each rank's moments are complete for what it owns, and after
    /// taking the other's (as the trainer does before a checkpoint) equal the full optimizer's.
    func testShardedStepsIntoOneSharedParameterBufferEqualTheFullUpdate() {
        var l = ParameterLayout()
        l.add("emb.weight", [10, 4]); l.add("a.weight", [9, 7]); l.add("a.bias", [9]); l.add("b.weight", [31])
        let table = (range: l.entry("emb.weight")!.range, rowLength: 4)
        func make() -> ParameterStore {
            let s = ParameterStore(layout: l)
            for i in s.values.indices { s.values[i] = Float(i % 11) * 0.05 - 0.2 }
            return s
        }
        let dense = l.entry("a.weight")!.range.lowerBound..<l.count
        let cut = dense.lowerBound + 37
        let shares = [[dense.lowerBound..<cut], [cut..<dense.upperBound]]
        let rowOwner: (Int) -> Int = { $0 % 2 }
        let full = make(), r0 = make(), r1 = make()
        r1.adoptValueBuffer(r0.values, owner: r0, copy: false)
        XCTAssertEqual(r1.values.baseAddress, r0.values.baseAddress)
        let cfg = AdamWConfig(weightDecay: 0.01)
        let of = AdamW(store: full, config: cfg, rowSparse: [table])
        let o = [AdamW(store: r0, config: cfg, rowSparse: [table]), AdamW(store: r1, config: cfg, rowSparse: [table])]
        let touched = [[0, 1], [1, 2, 5], [0, 7]]
        var everTouched = Set<Int>()
        for step in 0..<4 {
            let rows = touched[step % touched.count]
            everTouched.formUnion(rows)
            for s in [full, r0, r1] {
                s.zeroGrads()
                for i in s.grads.indices {
                    let row = (i - table.range.lowerBound) / table.rowLength
                    if !table.range.contains(i) || rows.contains(row) { s.grads[i] = Float((i * 7 + step) % 13) * 0.01 - 0.06 }
                }
            }
            of.step(lr: 1e-2, gradScale: 0.9, touchedRows: [rows])
            for (k, opt) in o.enumerated() {
                opt.step(lr: 1e-2, gradScale: 0.9, touchedRows: [rows], denseOwned: shares[k], ownsTableRow: { rowOwner($0) == k })
            }
            XCTAssertEqual(Array(r0.values).map(\.bitPattern), Array(full.values).map(\.bitPattern), "step \(step + 1)")
        }
        XCTAssertEqual(o[0].liveRows, of.liveRows, "every rank records every live row")
        XCTAssertEqual(o[1].liveRows(ofTable: 0), everTouched.sorted())
        // The moments are complete only after the owners' values are gathered (as before a checkpoint).
        XCTAssertNotEqual(o[0].m.map(\.bitPattern), of.m.map(\.bitPattern), "rank 0's moments of rank 1's part are stale")
        var ranges = shares[1]
        for r in everTouched where rowOwner(r) == 1 {
            let lo = table.range.lowerBound + r * table.rowLength
            ranges.append(lo..<(lo + table.rowLength))
        }
        for range in ranges {
            o[1].withMoments(range) { m1, v1 in
                o[0].withMoments(range) { m0, v0 in _ = m0.update(fromContentsOf: m1); _ = v0.update(fromContentsOf: v1) }
            }
        }
        XCTAssertEqual(o[0].m.map(\.bitPattern), of.m.map(\.bitPattern))
        XCTAssertEqual(o[0].v.map(\.bitPattern), of.v.map(\.bitPattern))
    }

    /// The clipping factor passed to the step equals scaling the gradient buffer first (torch's clip_grad_norm_).
    func testGradScaleEqualsClippingTheBufferFirst() {
        var l = ParameterLayout()
        l.add("w.weight", [29])
        let a = ParameterStore(layout: l), b = ParameterStore(layout: l)
        for i in a.values.indices { a.values[i] = Float(i) * 0.01; b.values[i] = Float(i) * 0.01
            a.grads[i] = Float(i % 5) - 2; b.grads[i] = Float(i % 5) - 2 }
        let norm = GradientClipping.globalNorm(UnsafeBufferPointer(a.grads))
        let coef = GradientClipping.coefficient(norm: norm, maxNorm: 1)
        XCTAssertLessThan(coef, 1)
        XCTAssertEqual(GradientClipping.coefficient(norm: norm, maxNorm: 0), 1, "max norm 0 turns clipping off")
        GradientClipping.clip(b.grads, maxNorm: 1)
        AdamW(store: a, config: AdamWConfig()).step(lr: 1e-3, gradScale: coef)
        AdamW(store: b, config: AdamWConfig()).step(lr: 1e-3)
        XCTAssertEqual(Array(a.values).map(\.bitPattern), Array(b.values).map(\.bitPattern))
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
