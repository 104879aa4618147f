// BF16PackTests: the bf16 GEMM's packing paths against each other, bit for bit. Every layout of an operand (B
// transposed or not, A transposed or not) must give exactly the same panel words, so a product computed from a
// transposed operand equals, in every bit, the product from an explicit transposed copy: the same bf16 rounding
// (vcvtne2ps2bf16) and the same fp32 summation order. This pins the vectorised transposed-B pack (16×16 register
// transposes, masked tails at odd k and partial 16-column groups) to the untransposed pack that
// BF16GemmTests checks against Float64 references. Skipped on a CPU without AVX512-BF16.
import XCTest
@testable import Model

final class BF16PackTests: XCTestCase {
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
}
