// LayerTests.swift: each layer's forward and backward against a Float64 reference (finite differences on the
// Float64 reference function, or the naive reference implementation), with seeded inputs.
// Tolerances: the optimised paths run in float32 (~6e-8 relative per operation, sums of a few dozen terms), so
// 1e-5 absolute on O(1) values leaves ~100x margin over float32 rounding, while any real mistake (a missing
// term, a wrong transpose, a mask applied at the wrong place) produces errors of order 1e-2..1.
// Central differences in Float64 with h = 1e-6 have truncation + rounding error ~1e-9: negligible here.
import Foundation
import XCTest
import CKernels
@testable import Model

/// Central-difference gradient of a Float64 scalar function of a vector.
func numericGradient(_ x: [Double], h: Double = 1e-6, _ f: ([Double]) -> Double) -> [Double] {
    var g = [Double](repeating: 0, count: x.count)
    var xp = x
    for i in 0..<x.count {
        xp[i] = x[i] + h; let a = f(xp)
        xp[i] = x[i] - h; let b = f(xp)
        xp[i] = x[i]
        g[i] = (a - b) / (2 * h)
    }
    return g
}

final class LayerTests: XCTestCase {
    // ---------------------------------------------------------------- Linear: sgemm path vs naive reference
    func testLinearBlasMatchesNaive() {
        var rng = TestRNG(11)
        let N = 7, IC = 13, OC = 5
        let x = rng.floats(N * IC), w = rng.floats(OC * IC), b = rng.floats(OC), dy = rng.floats(N * OC)
        var y1 = [Float](repeating: 0, count: N * OC), y2 = y1
        Linear.forward(y: &y1, x: x, w: w, b: b, n: N, inC: IC, outC: OC)
        Linear.forwardNaive(y: &y2, x: x, w: w, b: b, n: N, inC: IC, outC: OC)
        assertClose(y1, y2, atol: 1e-5, rtol: 1e-5, "linear forward")
        // backward with pre-existing gradient contents: dW, db accumulate; dx accumulates when asked
        let dw0 = rng.floats(OC * IC), db0 = rng.floats(OC), dx0 = rng.floats(N * IC)
        var dwA = dw0, dbA = db0, dxA = dx0, dwB = dw0, dbB = db0, dxB = dx0
        Linear.backward(dx: &dxA, dw: &dwA, db: &dbA, dy: dy, x: x, w: w, n: N, inC: IC, outC: OC, accumulateDx: true)
        Linear.backwardNaive(dx: &dxB, dw: &dwB, db: &dbB, dy: dy, x: x, w: w, n: N, inC: IC, outC: OC, accumulateDx: true)
        assertClose(dxA, dxB, atol: 1e-5, rtol: 1e-5, "linear dx (accumulated)")
        assertClose(dwA, dwB, atol: 1e-5, rtol: 1e-5, "linear dW")
        assertClose(dbA, dbB, atol: 1e-5, rtol: 1e-5, "linear db")
        // and the naive reference itself against finite differences of Σ y·dy in Float64
        let xd = x.map(Double.init), wd = w.map(Double.init), bd = b.map(Double.init), dyd = dy.map(Double.init)
        func loss(_ xs: [Double]) -> Double {
            var s = 0.0
            for r in 0..<N { for o in 0..<OC {
                var acc = bd[o]
                for i in 0..<IC { acc += xs[r * IC + i] * wd[o * IC + i] }
                s += acc * dyd[r * OC + o]
            } }
            return s
        }
        var dxC = [Float](repeating: 0, count: N * IC), dwC = [Float](repeating: 0, count: OC * IC)
        Linear.backwardNaive(dx: &dxC, dw: &dwC, db: nil, dy: dy, x: x, w: w, n: N, inC: IC, outC: OC)
        assertClose(dxC, numericGradient(xd, loss).map(Float.init), atol: 1e-5, rtol: 1e-5, "naive linear dx vs finite differences")
    }

    // ---------------------------------------------------------------- LayerNorm vs Float64 finite differences
    func testLayerNormBackward() {
        var rng = TestRNG(12)
        let N = 3, C = 37   // C not a multiple of 8: exercises the vector remainder
        let x = rng.floats(N * C, scale: 2).map { $0 + 0.5 }, w = rng.floats(C), b = rng.floats(C), dy = rng.floats(N * C)
        let eps: Float = 1e-5
        var y = [Float](repeating: 0, count: N * C), mean = [Float](repeating: 0, count: N), rstd = mean
        LayerNorm.forward(y: &y, mean: &mean, rstd: &rstd, x: x, w: w, b: b, n: N, C: C, eps: eps)
        func ref(_ xs: [Double], _ ws: [Double], _ bs: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: N * C)
            for r in 0..<N {
                let row = xs[(r * C)..<(r * C + C)]
                let m = row.reduce(0, +) / Double(C)
                let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(C)
                let s = 1 / (v + Double(eps)).squareRoot()
                for c in 0..<C { out[r * C + c] = (xs[r * C + c] - m) * s * ws[c] + bs[c] }
            }
            return out
        }
        let xd = x.map(Double.init), wd = w.map(Double.init), bd = b.map(Double.init), dyd = dy.map(Double.init)
        assertClose(y, ref(xd, wd, bd).map(Float.init), atol: 1e-5, "layernorm forward")
        var dx = [Float](repeating: 9, count: N * C)   // overwritten
        var dw = [Float](repeating: 0, count: C), db = dw
        LayerNorm.backward(dx: &dx, dw: &dw, db: &db, dy: dy, x: x, mean: mean, rstd: rstd, w: w, n: N, C: C)
        func dot(_ a: [Double]) -> Double { zip(a, dyd).reduce(0) { $0 + $1.0 * $1.1 } }
        assertClose(dx, numericGradient(xd) { dot(ref($0, wd, bd)) }.map(Float.init), atol: 1e-5, rtol: 1e-4, "layernorm dx")
        assertClose(dw, numericGradient(wd) { dot(ref(xd, $0, bd)) }.map(Float.init), atol: 1e-5, rtol: 1e-4, "layernorm dw")
        assertClose(db, numericGradient(bd) { dot(ref(xd, wd, $0)) }.map(Float.init), atol: 1e-5, rtol: 1e-4, "layernorm db")
    }

    // ---------------------------------------------------------------- attention with a padding mask
    func testAttentionWithPaddingMask() {
        var rng = TestRNG(13)
        let B = 2, T = 5, NH = 2, C = 8, HS = C / NH
        let q = rng.floats(B * T * C), k = rng.floats(B * T * C), v = rng.floats(B * T * C), dctx = rng.floats(B * T * C)
        let maskI: [Int32] = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]   // sample 1 has 2 padded positions
        let mask = maskI.map { Float($0) }
        let nValid = [5, 3]
        var ctx = [Float](repeating: 0, count: B * T * C), probs = [Float](repeating: 0, count: B * NH * T * T)
        var scratch = [Float](repeating: 0, count: T * T), scratch2 = scratch
        Attention.forward(ctx: &ctx, probs: &probs, q: q, k: k, v: v, keyMask: mask, nValid: nValid, B: B, T: T, C: C,
                          NH: NH, dropout: nil, scratch: &scratch)
        // Float64 reference: softmax(q kᵀ/sqrt(HS) + (1-mask)·finfo.min) v, exactly as HF's eager path
        func ref(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: B * T * C)
            for b in 0..<B { for h in 0..<NH { for i in 0..<T {
                var s = [Double](repeating: 0, count: T)
                for j in 0..<T {
                    var d = 0.0
                    for e in 0..<HS { d += q[(b * T + i) * C + h * HS + e] * k[(b * T + j) * C + h * HS + e] }
                    s[j] = d / Double(HS).squareRoot() + (mask[b * T + j] == 0 ? -Double(Float.greatestFiniteMagnitude) : 0)
                }
                let m = s.max()!
                let ex = s.map { exp($0 - m) }
                let z = ex.reduce(0, +)
                for e in 0..<HS {
                    var acc = 0.0
                    for j in 0..<T { acc += ex[j] / z * v[(b * T + j) * C + h * HS + e] }
                    out[(b * T + i) * C + h * HS + e] = acc
                }
            } } }
            return out
        }
        let qd = q.map(Double.init), kd = k.map(Double.init), vd = v.map(Double.init), dd = dctx.map(Double.init)
        assertClose(ctx, ref(qd, kd, vd).map(Float.init), atol: 1e-5, "attention forward")
        // masked keys get exactly zero probability, padded query rows are still normalised
        for h in 0..<NH { for i in 0..<T { for j in 3..<5 {
            XCTAssertEqual(probs[((1 * NH + h) * T + i) * T + j], 0, "masked key \(j) of sample 1 must have probability 0")
        } } }
        var dq = [Float](repeating: 0, count: B * T * C), dk = dq, dv = dq
        Attention.backward(dq: &dq, dk: &dk, dv: &dv, dctx: dctx, probs: probs, q: q, k: k, v: v, B: B, T: T, C: C, NH: NH,
                           dropout: nil, scratchP: &scratch, scratchDP: &scratch2)
        func dot(_ a: [Double]) -> Double { zip(a, dd).reduce(0) { $0 + $1.0 * $1.1 } }
        assertClose(dq, numericGradient(qd) { dot(ref($0, kd, vd)) }.map(Float.init), atol: 1e-5, rtol: 1e-4, "attention dq")
        assertClose(dk, numericGradient(kd) { dot(ref(qd, $0, vd)) }.map(Float.init), atol: 1e-5, rtol: 1e-4, "attention dk")
        assertClose(dv, numericGradient(vd) { dot(ref(qd, kd, $0)) }.map(Float.init), atol: 1e-5, rtol: 1e-4, "attention dv")
    }

    // ---------------------------------------------------------------- activations and the maths kernels
    func testErfTanhExpAccuracy() {
        // Dense grid over the whole useful range; Float64 libm is the reference.
        let x = (0..<20001).map { Float(-6 + 12 * Double($0) / 20000) }
        var y = [Float](repeating: 0, count: x.count)
        ck_erf(x, &y, x.count)
        assertClose(y, x.map { Float(erf(Double($0))) }, atol: 2e-7, "erf (fitted to 1.1e-7)")
        ck_tanh(x, &y, x.count)
        assertClose(y, x.map { Float(tanh(Double($0))) }, atol: 2e-7, "tanh")
        let xe = (0..<20001).map { Float(-80 + 160 * Double($0) / 20000) }
        ck_exp(xe, &y, xe.count)
        assertClose(y, xe.map { Float(exp(Double($0))) }, atol: 0, rtol: 3e-7, "exp (relative)")
    }

    func testActivationsForwardBackward() {
        let x = (0..<4001).map { Float(-8 + 16 * Double($0) / 4000) }
        let sqrt2 = 2.0.squareRoot()
        let refs: [(Int32, String, (Double) -> Double)] = [
            (0, "gelu", { 0.5 * $0 * (1 + erf($0 / sqrt2)) }),
            (1, "gelu_new", { 0.5 * $0 * (1 + tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }),
            (2, "relu", { max($0, 0) }),
        ]
        for (code, name, f) in refs {
            var y = [Float](repeating: 0, count: x.count)
            ck_act_fwd(code, x, &y, x.count)
            // |x| <= 8: 1e-7 relative error in erf/tanh becomes <= 8·0.5·2e-7 absolute; allow 1e-6
            assertClose(y, x.map { Float(f(Double($0))) }, atol: 1e-6, "\(name) forward")
            var d = [Float](repeating: 1, count: x.count)
            ck_act_bwd_inplace(code, x, &d, x.count)
            // relu: skip the kink at 0 (the grid contains x = 0 exactly; torch uses 0 there, so do we)
            let num = x.map { xv -> Float in
                let v = Double(xv)
                if code == 2 && v == 0 { return 0 }
                return Float((f(v + 1e-6) - f(v - 1e-6)) / 2e-6)
            }
            assertClose(d, num, atol: 2e-6, "\(name) backward")
            // the fused recompute gives the same value and derivative
            var fcopy = x, g = [Float](repeating: 0, count: x.count)
            ck_act_fwd_grad(code, &fcopy, &g, x.count)
            XCTAssertEqual(g, y, "\(name) fused forward differs")
            assertClose(fcopy, d, atol: 1e-7, "\(name) fused derivative")
        }
    }

    // ---------------------------------------------------------------- losses
    func testCrossEntropyGradientAndNormalisation() {
        var rng = TestRNG(14)
        let B = 3, K = 4
        let logits = rng.floats(B * K)
        let labels: [Int32] = [2, 0, 3]
        var d = [Float](repeating: 0, count: B * K)
        let sum = logits.withUnsafeBufferPointer { l in
            d.withUnsafeMutableBufferPointer { Loss.crossEntropy(logits: l, labels: labels, batch: B, classes: K, scale: 1 / Float(B), dLogits: $0) }
        }
        func meanCE(_ z: [Double]) -> Double {
            var s = 0.0
            for b in 0..<B {
                let row = Array(z[(b * K)..<(b * K + K)])
                let m = row.max()!
                s += m + log(row.map { exp($0 - m) }.reduce(0, +)) - row[Int(labels[b])]
            }
            return s / Double(B)   // torch CrossEntropyLoss(reduction="mean")
        }
        let zd = logits.map(Double.init)
        XCTAssertEqual(sum / Double(B), meanCE(zd), accuracy: 1e-12, "sum × 1/B must equal the torch mean")
        assertClose(d, numericGradient(zd, meanCE).map(Float.init), atol: 1e-7, "cross-entropy dLogits")
    }

    func testBCEAndMSEMatchTorchMeans() {
        var rng = TestRNG(15)
        let B = 3, K = 2
        let logits = rng.floats(B * K, scale: 3)
        let y: [Float] = [1, 0, 0, 1, 1, 1]
        var d = [Float](repeating: 0, count: B * K)
        let zd = logits.map(Double.init), yd = y.map(Double.init)
        // torch BCEWithLogitsLoss(): mean over all B·K elements of -(y log σ(x) + (1-y) log(1-σ(x)))
        func bce(_ z: [Double]) -> Double {
            var s = 0.0
            for i in 0..<(B * K) { let p = 1 / (1 + exp(-z[i])); s -= yd[i] * log(p) + (1 - yd[i]) * log(1 - p) }
            return s / Double(B * K)
        }
        let sb = logits.withUnsafeBufferPointer { l in
            d.withUnsafeMutableBufferPointer { Loss.bceWithLogits(logits: l, labels: y, batch: B, classes: K, scale: 1 / Float(B), dLogits: $0) }
        }
        XCTAssertEqual(sb / Double(B), bce(zd), accuracy: 1e-12, "BCE: sum × 1/B must equal the torch mean over B·K")
        assertClose(d, numericGradient(zd, bce).map(Float.init), atol: 1e-7, "BCE dLogits")
        // torch MSELoss(): mean over all elements
        func mse(_ z: [Double]) -> Double { zip(z, yd).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(B * K) }
        let sm = logits.withUnsafeBufferPointer { l in
            d.withUnsafeMutableBufferPointer { Loss.mse(logits: l, labels: y, batch: B, classes: K, scale: 1 / Float(B), dLogits: $0) }
        }
        XCTAssertEqual(sm / Double(B), mse(zd), accuracy: 1e-12, "MSE: sum × 1/B must equal the torch mean")
        assertClose(d, numericGradient(zd, mse).map(Float.init), atol: 1e-6, "MSE dLogits")
    }
}
