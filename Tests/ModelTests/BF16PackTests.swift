// BF16PackTests: the bf16 GEMM's packing paths against each other, bit for bit. Every layout of an operand (B
// transposed or not, A transposed or not) must give exactly the same panel words, so a product computed from a
// transposed operand equals, in every bit, the product from an explicit transposed copy: the same bf16 rounding
// (vcvtne2ps2bf16) and the same fp32 summation order. This pins the vectorised transposed-B pack (16×16 register
// transposes, masked tails at odd k and partial 16-column groups) to the untransposed pack that
// BF16GemmTests checks against Float64 references. Skipped on a CPU without AVX512-BF16.
import XCTest
import CKernels
@testable import Model

final class BF16PackTests: XCTestCase {
    override func tearDown() { ComputeThreads.set(1) }
    override func setUpWithError() throws {
        guard MatmulPrecision.bf16Supported else { throw XCTSkip("this CPU has no AVX512-BF16") }
    }

    /// transB: op(B) read from b[j·ldb + k] equals op(B) read from its explicit copy bt[k·n + j].
    /// Shapes: k below, at and past one 32-k register chunk (odd: zero partner), past the 1536 K block; n in partial
    /// 16-column groups and past one 64-column panel; threads split M (m ≥ n) and N (m < n).
    func testTransposedBPackMatchesExplicitTranspose() {
        var rng = TestRNG(29)
        let shapes = [(1, 1, 1), (3, 5, 31), (7, 17, 32), (6, 64, 33), (13, 100, 70), (9, 130, 129), (5, 65, 1601),
                      (400, 130, 350), (130, 401, 333)]
        for (m, n, k) in shapes {
            for threads in [1, 2] {
                let lda = k + 1, ldb = k + 3
                let a = rng.floats(m * lda), b = rng.floats(n * ldb)
                var bt = [Float](repeating: 0, count: k * n)
                for j in 0..<n { for p in 0..<k { bt[p * n + j] = b[j * ldb + p] } }
                let c0 = rng.floats(m * n)
                var viaT = c0, viaCopy = c0
                XCTAssertTrue(bf16Gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 0.5, a, lda: lda, b, ldb: ldb,
                                       beta: 1, &viaT, ldc: n, threads: threads))
                XCTAssertTrue(bf16Gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 0.5, a, lda: lda, bt, ldb: n,
                                       beta: 1, &viaCopy, ldc: n, threads: threads))
                XCTAssertTrue(zip(viaT, viaCopy).allSatisfy { $0.bitPattern == $1.bitPattern },
                              "m \(m) n \(n) k \(k), \(threads) thread(s): transposed B differs from its explicit copy")
            }
        }
    }

    /// transA likewise: op(A) read from a[k·lda + i] equals op(A) from its explicit copy at[i·k + p].
    func testTransposedAPackMatchesExplicitTranspose() {
        var rng = TestRNG(31)
        for (m, n, k) in [(1, 1, 1), (7, 17, 33), (13, 100, 70), (65, 64, 1601), (400, 130, 350)] {
            let lda = m + 2
            let a = rng.floats(k * lda), b = rng.floats(k * n)
            var at = [Float](repeating: 0, count: m * k)
            for p in 0..<k { for i in 0..<m { at[i * k + p] = a[p * lda + i] } }
            var viaT = [Float](repeating: 0, count: m * n), viaCopy = viaT
            XCTAssertTrue(bf16Gemm(transA: true, transB: false, m: m, n: n, k: k, alpha: 1, a, lda: lda, b, ldb: n,
                                   beta: 0, &viaT, ldc: n, threads: 1))
            XCTAssertTrue(bf16Gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, at, lda: k, b, ldb: n,
                                   beta: 0, &viaCopy, ldc: n, threads: 1))
            XCTAssertTrue(zip(viaT, viaCopy).allSatisfy { $0.bitPattern == $1.bitPattern },
                          "m \(m) n \(n) k \(k): transposed A differs from its explicit copy")
        }
    }

    /// BF16Path.roundedSgemm (what `gemm(.bf16, ...)` runs where vdpbf16ps is slower than the fp32 FMA) computes the
    /// same arithmetic as the kernel: against Float64 on the bf16-rounded inputs within the fp32 summation allowance
    /// of BF16GemmTests (1e-5·Σ|ab|), differing from the kernel only there, and bitwise the same at 1 and 2 threads.
    func testRoundedSgemmPathIsTheKernelsArithmetic() {
        var rng = TestRNG(37)
        for (m, n, k) in [(1, 1, 1), (7, 65, 33), (37, 70, 65), (300, 130, 257)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2
                let a = rng.floats((ta ? k : m) * lda), b = rng.floats((tb ? n : k) * ldb), c0 = rng.floats(m * n)
                var viaSgemm = c0, viaKernel = c0
                ComputeThreads.set(1)
                XCTAssertTrue(roundedSgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a, lda: lda, b, ldb: ldb,
                                           beta: 1, &viaSgemm, ldc: n))
                XCTAssertTrue(bf16Gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a, lda: lda, b, ldb: ldb,
                                       beta: 1, &viaKernel, ldc: n, threads: 1))
                let what = "m \(m) n \(n) k \(k) transA \(ta) transB \(tb)"
                var worst = 0.0, worstKernel = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var ref = 0.0, mag = 0.0
                        for p in 0..<k {
                            let x = ck_bf16_round_one(ta ? a[p * lda + i] : a[i * lda + p])
                            let y = ck_bf16_round_one(tb ? b[j * ldb + p] : b[p * ldb + j])
                            ref += Double(x) * Double(y); mag += abs(Double(x) * Double(y))
                        }
                        let want = 0.5 * ref + Double(c0[i * n + j]), scale = 0.5 * mag + abs(Double(c0[i * n + j])) + 1e-30
                        worst = max(worst, abs(Double(viaSgemm[i * n + j]) - want) / scale)
                        worstKernel = max(worstKernel, abs(Double(viaSgemm[i * n + j]) - Double(viaKernel[i * n + j])) / scale)
                    }
                }
                XCTAssertLessThanOrEqual(worst, 1e-5, "\(what): rounded sgemm vs Float64 on bf16-rounded inputs")
                XCTAssertLessThanOrEqual(worstKernel, 2e-5, "\(what): rounded sgemm vs the vdpbf16ps kernel")
                ComputeThreads.set(2)
                var two = c0
                XCTAssertTrue(roundedSgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a, lda: lda, b, ldb: ldb,
                                           beta: 1, &two, ldc: n))
                XCTAssertTrue(zip(two, viaSgemm).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(what): 2 threads differ from 1")
            }
        }
        // It rounds: on random data the result is not the fp32 product.
        let a = rng.floats(40 * 300), b = rng.floats(300 * 70)
        var r = [Float](repeating: 0, count: 40 * 70), f = r
        XCTAssertTrue(roundedSgemm(transA: false, transB: false, m: 40, n: 70, k: 300, alpha: 1, a, lda: 300, b, ldb: 70, beta: 0, &r, ldc: 70))
        fp32Gemm(transA: false, transB: false, m: 40, n: 70, k: 300, alpha: 1, a, lda: 300, b, ldb: 70, beta: 0, &f, ldc: 70)
        XCTAssertNotEqual(r, f, "rounded sgemm gave the fp32 product: the inputs were not rounded")
    }

    /// The path choice follows the measured issue rates (both positive on a CPU with AVX512-BF16).
    func testPathFollowsTheMeasuredRates() {
        let r = BF16Path.rates
        XCTAssertGreaterThan(r.bf16GFLOPS, 0); XCTAssertGreaterThan(r.fp32GFLOPS, 0)
        XCTAssertEqual(BF16Path.chosen, r.bf16GFLOPS >= r.fp32GFLOPS ? .dotProduct : .roundedSgemm)
        print("bf16 dot product \(r.bf16GFLOPS) GFLOP/s, fp32 FMA \(r.fp32GFLOPS) GFLOP/s: \(BF16Path.chosen.rawValue)")
    }
}
