// BF16GemmTests.swift: the bf16 GEMM (ck_bf16_gemm behind MatmulPrecision.bf16) against naive Float64 references,
// for every transpose combination, odd sizes (1, and sizes that are not multiples of the 6×64 tile or of the K
// block), beta 0 and 1, strided leading dimensions; and the fp32 path of Linear bit-identical to cblas_sgemm.
// Tolerances (u = 2⁻⁸, bf16's unit roundoff: 8 significant bits, round to nearest):
//  - against the exact product of the fp32 inputs: each input is off by ≤ u relative, so each product by
//    ≤ 2u + u², and |C - ref| ≤ |alpha|·(2u + u²)·Σ|a·b| + the fp32 summation error below (a rigorous bound);
//  - against the exact product of the bf16-ROUNDED inputs (ck_bf16_round): only fp32 summation is left; its
//    worst case is k·2⁻²⁴·Σ|a·b|, its typical size √k·2⁻²⁴·Σ|a·b|; we allow 1e-5·Σ|a·b| (≥ 3× √k·2⁻²⁴ for the
//    k ≤ 3100 used here). A lost or doubled term (size ~Σ|a·b|/k ≥ 3e-4·Σ|a·b|) or a wrongly rounded input
//    (~2⁻⁸ of a term) is far outside it.
import XCTest
@testable import Model
import CKernels

final class BF16GemmTests: XCTestCase {
    override func setUpWithError() throws {
        guard MatmulPrecision.bf16Supported else { throw XCTSkip("this CPU has no AVX512-BF16") }
    }

    /// The scalar rounding: ties to even, carries into the exponent, NaN/inf kept.
    func testScalarRounding() {
        func f(_ bits: UInt32) -> Float { Float(bitPattern: bits) }
        XCTAssertEqual(ck_bf16_round_one(1), 1)
        XCTAssertEqual(ck_bf16_round_one(1 + 0x1p-8), 1, "tie rounds to the even mantissa (down)")
        XCTAssertEqual(ck_bf16_round_one(1 + 3 * 0x1p-8), 1 + 0x1p-6, "tie rounds to the even mantissa (up)")
        XCTAssertEqual(ck_bf16_round_one(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7, "above the tie rounds up")
        XCTAssertEqual(ck_bf16_round_one(-(1 + 0x1p-8 + 0x1p-20)), -(1 + 0x1p-7))
        XCTAssertEqual(ck_bf16_round_one(f(0x3FFF_FFFF)), 2, "carry into the exponent")
        XCTAssertEqual(ck_bf16_round_one(.greatestFiniteMagnitude), .infinity, "overflow to inf, as vcvtne2ps2bf16")
        XCTAssertEqual(ck_bf16_round_one(-.infinity), -.infinity)
        XCTAssertTrue(ck_bf16_round_one(.nan).isNaN)
        XCTAssertEqual(ck_bf16_round_one(0x1p-130), 0x1p-130, "a bf16-exact subnormal stays")
    }

    /// The kernel's vector rounding (vcvtne2ps2bf16, both pack paths) equals the scalar one: a 1×n×1 product with
    /// A = 1 returns bf16(B) exactly, and an m×1×1 product with B = 1 returns bf16(A) exactly.
    func testKernelRoundsLikeScalar() {
        var rng = TestRNG(3)
        let n = 1000
        var v = rng.floats(n)
        // exact ties and near-ties on both sides
        for i in 0..<200 { v[i] = Float(bitPattern: (v[i].bitPattern & 0xFFFF_0000) | [0x8000, 0x7FFF, 0x8001, 0x18000][i % 4]) }
        let want = v.map { ck_bf16_round_one($0) }
        let one: [Float] = [1]
        for transB in [false, true] {
            var c = [Float](repeating: 0, count: n)
            // op(B) is [1, n]: row-major [1, n] (ldb n) or, transposed, [n, 1] (ldb 1)
            XCTAssertTrue(bf16Gemm(transA: false, transB: transB, m: 1, n: n, k: 1, alpha: 1, one, lda: 1, v,
                                   ldb: transB ? 1 : n, beta: 0, &c, ldc: n))
            XCTAssertEqual(c, want, "B packing (transB \(transB)) rounds like ck_bf16_round_one")
        }
        for transA in [false, true] {
            var c = [Float](repeating: 0, count: n)
            XCTAssertTrue(bf16Gemm(transA: transA, transB: false, m: n, n: 1, k: 1, alpha: 1, v, lda: transA ? n : 1,
                                   one, ldb: 1, beta: 0, &c, ldc: 1))
            XCTAssertEqual(c, want, "A packing (transA \(transA)) rounds like ck_bf16_round_one")
        }
    }

    func testAllTransposesOddSizesBetaAndStrides() {
        // (m, n, k): 1s; below, at and past the 6-row × 64-column tile; odd k; k past the 1536 K block.
        let shapes = [(1, 1, 1), (1, 17, 1), (5, 1, 2), (6, 64, 2), (7, 65, 3), (13, 70, 33), (12, 128, 64),
                      (65, 129, 1537), (3, 200, 3100), (100, 17, 9), (31, 1, 300)]
        var rng = TestRNG(17)
        for (m, n, k) in shapes {
            for transA in [false, true] {
                for transB in [false, true] {
                    for beta: Float in [0, 1] {
                        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
                        let a = rng.floats((transA ? k : m) * lda), b = rng.floats((transB ? n : k) * ldb)
                        let c0 = rng.floats(m * ldc)
                        // beta 0: C must not be read, so NaN there must not leak into the result
                        var c = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : c0
                        for i in 0..<m { for j in n..<ldc { c[i * ldc + j] = c0[i * ldc + j] } }
                        let alpha: Float = 0.75
                        XCTAssertTrue(bf16Gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda,
                                               b, ldb: ldb, beta: beta, &c, ldc: ldc))
                        let what = "m \(m) n \(n) k \(k) transA \(transA) transB \(transB) beta \(beta)"
                        var worstRounded = 0.0, worstExact = 0.0
                        for i in 0..<m {
                            for j in 0..<n {
                                var exact = 0.0, rounded = 0.0, mag = 0.0
                                for p in 0..<k {
                                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                                    exact += Double(x) * Double(y)
                                    rounded += Double(ck_bf16_round_one(x)) * Double(ck_bf16_round_one(y))
                                    mag += abs(Double(x) * Double(y))
                                }
                                let cb = Double(beta) * Double(c0[i * ldc + j])
                                let got = Double(c[i * ldc + j])
                                let scale = Double(alpha) * mag + abs(cb) + 1e-30
                                let u = 0x1p-8
                                worstRounded = max(worstRounded, abs(got - (Double(alpha) * rounded + cb)) / scale)
                                // exact: per-product 2u+u², plus the fp32 allowance and the beta term's own rounding
                                worstExact = max(worstExact, abs(got - (Double(alpha) * exact + cb))
                                                   / (Double(alpha) * mag * (2 * u + u * u) + 1e-5 * scale))
                            }
                            for j in n..<ldc {
                                XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], "\(what): padding column \(j) of row \(i) written")
                            }
                        }
                        XCTAssertLessThanOrEqual(worstRounded, 1e-5, "\(what): vs Float64 on bf16-rounded inputs (relative to Σ|ab|)")
                        XCTAssertLessThanOrEqual(worstExact, 1, "\(what): vs exact Float64 beyond the bf16 bound (ratio to bound)")
                    }
                }
            }
        }
    }

    /// Threads split M or N into whole panels without changing any element's summation order, so 2 and 3 threads
    /// give bitwise the single-thread result (whose accuracy the test above checks), for both split directions.
    func testThreadsGiveTheSingleThreadResult() {
        var rng = TestRNG(41)
        // (m ≥ n: rows split; m < n: columns split), both above the kernel's ~32 MFLOP threading threshold
        for (m, n, k) in [(400, 130, 350), (130, 401, 333)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let lda = (transA ? m : k) + 1, ldb = (transB ? k : n) + 2, ldc = n + 3
                    let a = rng.floats((transA ? k : m) * lda), b = rng.floats((transB ? n : k) * ldb)
                    let c0 = rng.floats(m * ldc)
                    var c1 = c0
                    XCTAssertTrue(bf16Gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1.5, a, lda: lda, b,
                                           ldb: ldb, beta: 1, &c1, ldc: ldc, threads: 1))
                    for t in [2, 3] {
                        var ct = c0
                        XCTAssertTrue(bf16Gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1.5, a, lda: lda, b,
                                               ldb: ldb, beta: 1, &ct, ldc: ldc, threads: t))
                        XCTAssertEqual(ct, c1, "m \(m) n \(n) k \(k) transA \(transA) transB \(transB): \(t) threads")
                    }
                }
            }
        }
    }

    /// It really computes in bf16 (not a silent sgemm): on random data the results differ from fp32 by about 2⁻⁹
    /// of Σ|ab| per element, far above fp32 noise, yet within the bound.
    func testDiffersFromFP32() {
        var rng = TestRNG(5)
        let m = 40, n = 70, k = 300
        let a = rng.floats(m * k), b = rng.floats(k * n)
        var c1 = [Float](repeating: 0, count: m * n), c2 = c1
        XCTAssertTrue(bf16Gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a, lda: k, b, ldb: n, beta: 0, &c1, ldc: n))
        fp32Gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a, lda: k, b, ldb: n, beta: 0, &c2, ldc: n)
        let rms = (zip(c1, c2).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(m * n)).squareRoot()
        // each product carries ~N(0, (2u/√3)²)-ish relative error; over k=300 unit-normal products rms ≈ √k·0.0045 ≈ 0.08
        XCTAssertGreaterThan(rms, 0.01, "bf16 and fp32 results are too close: is the kernel rounding its inputs?")
        XCTAssertLessThan(rms, 0.3)
    }

    /// Linear in bf16 (forward, and backward with accumulation) against the naive Float64 reference, with the
    /// bf16 bound; the model-shaped sizes N=37 (not a multiple of 6), IC=70, OC=65 (past one 64-column panel).
    func testLinearBF16AgainstNaive() {
        var rng = TestRNG(23)
        let N = 37, IC = 70, OC = 65
        let x = rng.floats(N * IC), w = rng.floats(OC * IC, scale: 0.1), b = rng.floats(OC), dy = rng.floats(N * OC)
        var y1 = [Float](repeating: 0, count: N * OC), y2 = y1
        Linear.forward(y: &y1, x: x, w: w, b: b, n: N, inC: IC, outC: OC, precision: .bf16)
        Linear.forwardNaive(y: &y2, x: x, w: w, b: b, n: N, inC: IC, outC: OC)
        // Σ|x·w| over IC=70 unit-normal × 0.1-normal products ≈ 70·0.064 = 4.5; bound 2⁻⁷·4.5 ≈ 0.035 worst case
        assertClose(y1, y2, atol: 0.035, "bf16 linear forward")
        XCTAssertNotEqual(y1, y2, "bf16 forward equals the Float64 reference exactly: rounding not applied?")
        let dw0 = rng.floats(OC * IC), db0 = rng.floats(OC), dx0 = rng.floats(N * IC)
        var dwA = dw0, dbA = db0, dxA = dx0, dwB = dw0, dbB = db0, dxB = dx0
        Linear.backward(dx: &dxA, dw: &dwA, db: &dbA, dy: dy, x: x, w: w, n: N, inC: IC, outC: OC, accumulateDx: true,
                        precision: .bf16)
        Linear.backwardNaive(dx: &dxB, dw: &dwB, db: &dbB, dy: dy, x: x, w: w, n: N, inC: IC, outC: OC, accumulateDx: true)
        assertClose(dxA, dxB, atol: 0.05, "bf16 linear dx (Σ|dy·w| over OC=65 ≈ 5.2)")
        assertClose(dwA, dwB, atol: 0.25, "bf16 linear dW (Σ|dy·x| over N=37 ≈ 24)")
        assertClose(dbA, dbB, atol: 1e-5, rtol: 1e-5, "linear db (fp32 in both precisions)")
    }

    /// The fp32 path is the same cblas_sgemm call as before: Linear's default and explicit .fp32 agree bitwise
    /// with cblas_sgemm.
    func testFP32PathIsSgemm() {
        var rng = TestRNG(29)
        let N = 37, IC = 70, OC = 65
        let x = rng.floats(N * IC), w = rng.floats(OC * IC)
        var y0 = [Float](repeating: 0, count: N * OC), y1 = y0, y2 = y0
        Linear.forward(y: &y0, x: x, w: w, b: nil, n: N, inC: IC, outC: OC)
        Linear.forward(y: &y1, x: x, w: w, b: nil, n: N, inC: IC, outC: OC, precision: .fp32)
        fp32Gemm(transA: false, transB: true, m: N, n: OC, k: IC, alpha: 1, x, lda: IC, w, ldb: IC, beta: 0, &y2, ldc: OC)
        XCTAssertEqual(y0, y2)
        XCTAssertEqual(y1, y2)
    }

    /// The whole tiny BERT fixture with matmulPrecision = .bf16 against the transformers fp32 goldens: logits and
    /// the flat gradient within a relative L2 error of a few bf16 roundoffs (u = 2⁻⁸ ≈ 0.004 per product; the errors
    /// of ~8 chained products per layer partly cancel, so we allow 4u = 0.016), and clearly not the fp32 result.
    func testTinyBertInBF16AgainstGoldens() throws {
        let (config, store, golden) = try Fixtures.load("bert-tiny-cls")
        let (batch, labels) = try Fixtures.batch(golden, 0, bert: true)
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: batch.batchSize, maxSeq: batch.seqLen)
        model.matmulPrecision = .bf16
        let logits = Array(model.forward(batch, dropout: DropoutContext(seed: 1, step: 0)))
        let refLogits = try golden.floats("logits")
        func relL2(_ a: [Float], _ b: [Float]) -> Double {
            let d = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
            let r = b.map { Double($0) * Double($0) }.reduce(0, +)
            return (d / max(r, 1e-30)).squareRoot()
        }
        let eLogits = relL2(logits, refLogits)
        XCTAssertLessThan(eLogits, 0.016, "bf16 logits vs fp32 goldens (relative L2)")
        XCTAssertGreaterThan(eLogits, 1e-5, "bf16 logits equal the fp32 goldens: is the bf16 path active?")
        let B = batch.batchSize, NL = config.numLabels
        var dLogits = [Float](repeating: 0, count: B * NL)
        _ = dLogits.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: model.forward(batch, dropout: nil), labels: labels, batch: B, classes: NL,
                              scale: 1 / Float(B), dLogits: $0)
        }
        store.zeroGrads()
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        var got: [Float] = [], want: [Float] = []
        for e in store.entries {
            got += Array(store.grad(e.name))
            want += try golden.floats("grad/\(e.name)")
        }
        let eGrad = relL2(got, want)
        XCTAssertLessThan(eGrad, 0.016, "bf16 flat gradient vs fp32 goldens (relative L2)")
        XCTAssertGreaterThan(eGrad, 1e-5)
        print("bf16 tiny BERT: logits rel L2 \(eLogits), gradient rel L2 \(eGrad)")
    }
}
