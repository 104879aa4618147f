// Linear.swift: the one BLAS wrapper of the model (fully connected layers as cblas_sgemm calls, or as the bf16
// kernel ck_bf16_gemm when the model's MatmulPrecision says so), with the naive reference implementation next to
// it that the tests compare against, and the thread-count switch.
// Layout follows PyTorch nn.Linear: weight W is [OC, IC] row-major, y = x Wᵀ + b.
// Deliberately not here: activations, attention (Layers.swift, GPT2Layers.swift), any allocation (callers pass arena buffers).
import CBLAS
import CKernels

/// Thread control for the model's compute: OpenBLAS threads and (when they are parallelised) element-wise kernels.
public enum ComputeThreads {
    /// Sets the thread count for this process's compute (1 per rank under mpirun is the sensible default): OpenBLAS's
    /// threads for the matrix products and the pool (ThreadPool.swift) that splits the element-wise kernels, the
    /// attention loops and AdamW.
    public static func set(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        setPool(n)
    }
    public static var blasThreads: Int { Int(openblas_get_num_threads()) }

    /// Runs `body` with OpenBLAS on one thread (the model's products, which spread their blocks over the pool
    /// instead), restoring the setting after.
    @inline(__always)
    static func withBLASOnOneThread<R>(_ body: () -> R) -> R {
        let blas = openblas_get_num_threads()
        if blas <= 1 { return body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(blas) }
        return body()
    }

    /// The kernel family OpenBLAS chose for this CPU at load time (e.g. "Cooperlake", "Haswell", "Prescott").
    public static var blasCore: String { String(cString: openblas_get_corename()) }

    /// The OPENBLAS_CORETYPE this process should have been started with, or nil when OpenBLAS's choice is fine.
    /// OpenBLAS 0.3.21 (Debian bookworm) does not recognise some newer CPUs (seen: an Intel Xeon VM with AVX-512
    /// reporting a model it does not know) and falls back to its generic "Prescott" (SSE3) kernels: sgemm ran at
    /// 31 GFLOP/s there instead of 148 with its Cooper Lake kernels, and a training step at a quarter of the speed.
    /// Only a generic fallback is overridden, and only with a family whose instructions this CPU has; OpenBLAS reads
    /// the variable when it is loaded, so the process must re-execute itself with it (the CLI does, before MPI starts).
    /// An OPENBLAS_CORETYPE the user set is always left alone.
    public static func betterBLASCoretype(environment: [String: String]) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil else { return nil }
        let generic: Set = ["prescott", "core2", "penryn", "dunnington", "nehalem", "katmai", "coppermine", "northwood",
                            "banias", "atom", "unknown"]
        guard generic.contains(blasCore.lowercased()) else { return nil }
        if ck_cpu_supports("avx512bf16") != 0 { return "COOPERLAKE" }
        if ck_cpu_supports("avx512f") != 0 { return "SKYLAKEX" }
        if ck_cpu_supports("avx2") != 0 && ck_cpu_supports("fma") != 0 { return "HASWELL" }
        return nil
    }
}

/// The number format of a model's large matrix products (the Linear layers). A value carried by the model and passed
/// to each call, not a process-wide switch. Parameters, gradients, activations and the optimizer stay fp32 either way.
public enum MatmulPrecision: String, Sendable, CaseIterable {
    /// cblas_sgemm.
    case fp32
    /// Inputs rounded to bfloat16 (nearest even; 8-bit mantissa, relative error ≤ 2⁻⁹ per input), products summed in
    /// fp32, fp32 output: ck_bf16_gemm with AVX512-BF16 `vdpbf16ps`. Needs a CPU with AVX512-BF16 (check
    /// `bf16Supported` before choosing it); on a CPU without it every product falls back to cblas_sgemm.
    case bf16

    /// True when this CPU has AVX512-BF16 (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later).
    public static var bf16Supported: Bool { ck_has_avx512bf16() != 0 }
}

/// How this CPU runs a bf16 product, decided once per process from the measured issue rates of its bf16 dot
/// product (vdpbf16ps) and fp32 FMA (ck_bf16_peak_rates), as OpenBLAS picks its kernels once at load time.
/// AVX512-BF16 does not make a bf16 product faster everywhere: AMD Zen 4 issues vdpbf16ps at the rate of its fp32
/// FMA, so it does twice the FLOP (the bf16 kernel ran 2.45–3.65× sgemm there); the Intel Xeon VM (model 207, AMX
/// not exposed) issues it every other cycle, half the FLOP of its FMA (84 vs 170 GFLOP/s), and the bf16 kernel ran
/// at 0.55× sgemm, making a `--bf16` step 0.65× as fast as fp32. There the same arithmetic — inputs rounded to
/// bf16, products (exact in fp32) summed in fp32 — runs as cblas_sgemm on bf16-rounded copies instead.
public enum BF16Path: String, Sendable {
    /// ck_bf16_gemm: vdpbf16ps on packed bf16 pairs.
    case dotProduct = "vdpbf16ps"
    /// cblas_sgemm (splitSgemm) on copies of A and B rounded to bf16.
    case roundedSgemm = "sgemm on bf16-rounded inputs"

    public struct Rates: Sendable { public let bf16GFLOPS: Double, fp32GFLOPS: Double }
    /// Issue rates measured once (about 3 ms), the first time a bf16 product or a benchmark asks.
    public static let rates: Rates = {
        var b = 0.0, f = 0.0
        ck_bf16_peak_rates(&b, &f)
        return Rates(bf16GFLOPS: b, fp32GFLOPS: f)
    }()
    /// The path of this process: the dot product when it does at least the FLOP of the FMA.
    public static let chosen: BF16Path = rates.bf16GFLOPS >= rates.fp32GFLOPS ? .dotProduct : .roundedSgemm
}

/// Row-major GEMM shorthand: C[M,N] = alpha * op(A) op(B) + beta * C with explicit leading dimensions,
/// so that strided views (one attention head inside [B*T, C]) need no copies.
@inline(__always)
func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
           _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
           beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// `sgemm` in the given precision: the bf16 kernel (on the compute pool's threads) when asked for and the CPU has it
/// (ck_bf16_gemm returns non-zero and leaves C untouched otherwise), else cblas_sgemm in row blocks (`splitSgemm`).
/// With .bf16 the path is BF16Path.chosen: the bf16 kernel, or splitSgemm on bf16-rounded copies (same results up to
/// the order of the fp32 sums; deterministic and the same at every thread count either way).
@inline(__always)
func gemm(_ precision: MatmulPrecision, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
          beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    if precision == .bf16 && m > 0 && n > 0 && k > 0 {
        switch BF16Path.chosen {
        case .dotProduct:
            if ck_bf16_gemm_pool(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                 ComputeThreads.pool) == 0 { return }
        case .roundedSgemm:
            if roundedSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb,
                            beta: beta, c, ldc: ldc) { return }
        }
    }
    splitSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
}

/// BF16Path.roundedSgemm: A and B copied densely (same transposition) with every element rounded to bf16
/// (ck_bf16_round_rows_pool, the kernel's rounding), then splitSgemm. False (C untouched) without AVX512-BF16.
/// The copies are allocated per call (as ck_bf16_gemm's pack buffer; glibc reuses the same-size blocks).
func roundedSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                  _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                  beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
    let (aRows, aCols) = transA ? (k, m) : (m, k), (bRows, bCols) = transB ? (n, k) : (k, n)
    let ra = UnsafeMutablePointer<Float>.allocate(capacity: aRows * aCols)
    let rb = UnsafeMutablePointer<Float>.allocate(capacity: bRows * bCols)
    defer { ra.deallocate(); rb.deallocate() }
    guard ck_bf16_round_rows_pool(a, lda, ra, aCols, aRows, aCols, ComputeThreads.pool) == 0,
          ck_bf16_round_rows_pool(b, ldb, rb, bCols, bRows, bCols, ComputeThreads.pool) == 0 else { return false }
    splitSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, ra, lda: aCols, rb, ldb: bCols, beta: beta, c, ldc: ldc)
    return true
}

/// The model's fp32 products: C cut along its larger side (rows or columns, so that what each block packs again is
/// the operand along the smaller side) into 2–4 blocks whose size depends on the shape only (one block under
/// ~4 MFLOP), each block one single-threaded cblas_sgemm, the blocks spread over the compute pool. OpenBLAS's own
/// threads are not used here: its multi-threaded driver cuts K differently from its single-threaded one (so
/// results would change with the thread count) and its idle workers spin while the pool works. Every element of C
/// is computed by the same call whatever the thread count, so the bits do not depend on it. Measured cost of the
/// cut on one thread (thread CPU time, the MiniLM 32×128 shapes): 1–2 % for the 4096-row products, 2–7 % for the
/// weight gradients (k = 4096).
func splitSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    let cut = GemmBlocks.cut(m: m, n: n, k: k)
    ComputeThreads.withBLASOnOneThread {
        if cut.count <= 1 {
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
            return
        }
        ComputeThreads.parallelFor(cut.count) { r, _ in
            for blk in r {
                let s0 = blk * cut.size
                if cut.rows {
                    let rows = min(cut.size, m - s0)
                    sgemm(transA: transA, transB: transB, m: rows, n: n, k: k, alpha: alpha, transA ? a + s0 : a + s0 * lda,
                          lda: lda, b, ldb: ldb, beta: beta, c + s0 * ldc, ldc: ldc)
                } else {
                    let cols = min(cut.size, n - s0)
                    sgemm(transA: transA, transB: transB, m: m, n: cols, k: k, alpha: alpha, a, lda: lda,
                          transB ? b + s0 * ldb : b + s0, ldb: ldb, beta: beta, c + s0, ldc: ldc)
                }
            }
        }
    }
}

/// The cut of `splitSgemm` (a function of the shape only): along rows when m ≥ n, `count` blocks of `size`.
enum GemmBlocks {
    static func cut(m: Int, n: Int, k: Int) -> (rows: Bool, size: Int, count: Int) {
        let rows = m >= n, side = rows ? m : n
        if 2 * m * n * k < 4_000_000 || side < 128 { return (rows, side, 1) }
        // 2 or 4 blocks, never 3: the blocks are taken whole by 2 or 4 threads, so an odd count leaves one idle
        // for a block's time (MiniLM's FFN weight gradients, 1536 wide, were cut in 3).
        let want = side < 1536 ? 2 : 4
        let size = ((side + want - 1) / want + 15) / 16 * 16
        return (rows, size, (side + size - 1) / size)
    }
}

/// The bf16 kernel for tests and benchmarks, on `threads` threads (default: the ComputeThreads setting):
/// false when the CPU lacks AVX512-BF16 (C untouched).
public func bf16Gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                     _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int? = nil) -> Bool {
    ck_bf16_gemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                 Int32(threads ?? ComputeThreads.blasThreads)) == 0
}

/// cblas_sgemm (row-major), public for tests and benchmarks.
public func fp32Gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                     _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
}

public enum Linear {
    /// y[N, OC] = x[N, IC] · W[OC, IC]ᵀ + b[OC]   (b optional)
    public static func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                               b: UnsafePointer<Float>?, n: Int, inC: Int, outC: Int, precision: MatmulPrecision = .fp32) {
        // With a bias, rows are pre-filled with it and the product accumulated (beta = 1): OpenBLAS would otherwise
        // zero C in a separate pass (beta = 0) and the bias would need another read-modify-write pass.
        if let b { ck_p_fill_rows(ComputeThreads.pool, y, b, n, outC) }
        gemm(precision, transA: false, transB: true, m: n, n: outC, k: inC, alpha: 1, x, lda: inC, w, ldb: inC,
             beta: b == nil ? 0 : 1, y, ldc: outC)
    }

    /// Given dy[N, OC]: dx[N, IC] = dy · W (overwritten, or accumulated when accumulateDx), dW[OC, IC] += dyᵀ · x,
    /// db[OC] += Σ_n dy. dx may be nil when the input needs no gradient.
    public static func backward(dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>,
                                db: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, w: UnsafePointer<Float>, n: Int, inC: Int, outC: Int,
                                accumulateDx: Bool = false, precision: MatmulPrecision = .fp32) {
        gemm(precision, transA: true, transB: false, m: outC, n: inC, k: n, alpha: 1, dy, lda: outC, x, ldb: inC,
             beta: 1, dw, ldc: inC)
        if let db { ck_p_bias_grad(ComputeThreads.pool, dy, db, n, outC) }
        if let dx {
            gemm(precision, transA: false, transB: false, m: n, n: inC, k: outC, alpha: 1, dy, lda: outC, w, ldb: inC,
                 beta: accumulateDx ? 1 : 0, dx, ldc: inC)
        }
    }

    /// Naive reference of `forward` (triple loop, Double accumulation) for tests.
    public static func forwardNaive(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                    b: UnsafePointer<Float>?, n: Int, inC: Int, outC: Int) {
        for r in 0..<n {
            for o in 0..<outC {
                var s = Double(b?[o] ?? 0)
                for i in 0..<inC { s += Double(x[r * inC + i]) * Double(w[o * inC + i]) }
                y[r * outC + o] = Float(s)
            }
        }
    }

    /// Naive reference of `backward` (same semantics: dx overwritten unless accumulateDx, dW and db accumulated).
    public static func backwardNaive(dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>,
                                     db: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>,
                                     x: UnsafePointer<Float>, w: UnsafePointer<Float>, n: Int, inC: Int, outC: Int,
                                     accumulateDx: Bool = false) {
        for o in 0..<outC {
            for i in 0..<inC {
                var s = 0.0
                for r in 0..<n { s += Double(dy[r * outC + o]) * Double(x[r * inC + i]) }
                dw[o * inC + i] += Float(s)
            }
            if let db {
                var s = 0.0
                for r in 0..<n { s += Double(dy[r * outC + o]) }
                db[o] += Float(s)
            }
        }
        if let dx {
            for r in 0..<n {
                for i in 0..<inC {
                    var s = accumulateDx ? Double(dx[r * inC + i]) : 0
                    for o in 0..<outC { s += Double(dy[r * outC + o]) * Double(w[o * inC + i]) }
                    dx[r * inC + i] = Float(s)
                }
            }
        }
    }
}
