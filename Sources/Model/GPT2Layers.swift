// GPT2Layers.swift: the two GPT-2 layers the encoder core does not have, as mirrored forward/backward pairs over
// explicit buffers: Conv1D (HF's transposed linear, weight [in, out], y = x W + b) and causal multi-head attention
// over the fused q|k|v buffer of c_attn. Everything else (LayerNorm, embeddings, gelu_new, dropout rows) is the
// model core's, called as is. Notation: B batch, T sequence, C hidden, NH heads, HS = C/NH, FF inner size.
// Deliberately not here: allocation (the arena in GPT2Model.swift), the block wiring, the LM loss.
import CBLAS
import CKernels
import Foundation

public enum Conv1D {
    /// y[N, OUT] = x[N, IN] · W[IN, OUT] + b[OUT]  (W stored [in, out], as GPT-2 checkpoints hold it).
    /// `precision` .bf16: the product in bf16 with fp32 sums (Linear.swift's `gemm`); one-token GEMVs stay fp32.
    public static func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                               b: UnsafePointer<Float>?, n: Int, inC: Int, outC: Int, precision: MatmulPrecision = .fp32) {
        // With a bias, rows are pre-filled with it and the product accumulated (beta = 1), as Linear does.
        if let b { ck_p_fill_rows(ComputeThreads.pool, y, b, n, outC) }
        let beta: Float = b == nil ? 0 : 1
        if n == 1 {   // one token (KV-cache generation): a GEMV; sgemm would pack all of W for one row
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(inC), Int32(outC), 1, w, Int32(outC), x, 1, beta, y, 1)
        } else {
            gemm(precision, transA: false, transB: false, m: n, n: outC, k: inC, alpha: 1, x, lda: inC, w, ldb: outC,
                 beta: beta, y, ldc: outC)
        }
    }

    /// dW[IN, OUT] += xᵀ dy; db += Σ_n dy; dx[N, IN] = dy Wᵀ (overwritten, or accumulated when accumulateDx).
    /// dW is formed before dx is written, so dx may alias x.
    public static func backward(dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>,
                                db: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                w: UnsafePointer<Float>, n: Int, inC: Int, outC: Int, accumulateDx: Bool = false,
                                precision: MatmulPrecision = .fp32) {
        gemm(precision, transA: true, transB: false, m: inC, n: outC, k: n, alpha: 1, x, lda: inC, dy, ldb: outC,
             beta: 1, dw, ldc: outC)
        if let db { ck_p_bias_grad(ComputeThreads.pool, dy, db, n, outC) }
        if let dx {
            gemm(precision, transA: false, transB: true, m: n, n: inC, k: outC, alpha: 1, dy, lda: outC, w, ldb: outC,
                 beta: accumulateDx ? 1 : 0, dx, ldc: inC)
        }
    }

    /// dx[N, IN] = dy Wᵀ (or += with accumulateDx) without dW/db: a frozen layer's backward.
    public static func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                     n: Int, inC: Int, outC: Int, accumulateDx: Bool = false, precision: MatmulPrecision = .fp32) {
        gemm(precision, transA: false, transB: true, m: n, n: inC, k: outC, alpha: 1, dy, lda: outC, w, ldb: outC,
             beta: accumulateDx ? 1 : 0, dx, ldc: inC)
    }
}

/// Causal self-attention on the c_attn output qkv[B*T, 3C] (q | k | v column blocks; head h of q is columns
/// h*HS..<(h+1)*HS, of k C + h*HS..., of v 2C + h*HS...), so a (b, h) slice is a strided [T, HS] view with leading
/// dimension 3C and every product is one sgemm on views. ctx: [B*T, C]. probs: [B, NH, T, T], saved for backward,
/// exactly 0 above the diagonal and at padded keys (keyMask[B*T]: 1 real, 0 padding).
public enum CausalAttention {
    /// threadScratch (2 buffers per thread): the (b, h) pairs are split over the compute pool when it is free (as
    /// Attention.forward; the same products and kernels per pair, so the same bits).
    /// keepProbs false: `probs` is a [T, T] tile reused by every (b, h) (per thread when split), for a backward that
    /// recomputes them (`backward(..., recomputeWith:)`): attention memory is one tile per thread, not B·NH·T².
    public static func forward(ctx: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                               qkv: UnsafePointer<Float>, keyMask: UnsafePointer<Float>?, B: Int, T: Int, C: Int,
                               NH: Int, dropout: AttentionDropout?, scratch: UnsafeMutablePointer<Float>,
                               keepProbs: Bool = true, threadScratch: AttentionScratch? = nil) {
        let HS = C / NH, ld = 3 * C
        let scale = 1 / Float(HS).squareRoot()
        let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0, sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
        func pair(_ bh: Int, scratch: UnsafeMutablePointer<Float>, tile: UnsafeMutablePointer<Float>) {
            let b = bh / NH, h = bh % NH
            let q = qkv + b * T * ld + h * HS, k = q + C, v = q + 2 * C
            let p = keepProbs ? probs + bh * T * T : tile
            causalScores(p, q: q, k: k, keyMask: keyMask.map { $0 + b * T }, T: T, ld: ld, HS: HS, scale: scale)
            var pv = UnsafePointer(p)
            if let d = dropout {
                let sk = DropoutKey.sample(d.ctx, sample: d.samples[b], site: d.site)
                DropoutKey.dropAttentionRows(p, into: scratch, T: T, sampleKey: sk, head: h, threshold: thr, scale: sc)
                pv = UnsafePointer(scratch)
            }
            // O[T, HS] = P' V
            sgemm(transA: false, transB: false, m: T, n: HS, k: T, alpha: 1, pv, lda: T, v, ldb: ld,
                  beta: 0, ctx + b * T * C + h * HS, ldc: C)
        }
        ComputeThreads.withPoolOwningCores { split in
            if split, let ts = threadScratch, B * NH > 1 {
                ts.ensure(ComputeThreads.poolSize)
                ComputeThreads.parallelFor(B * NH) { r, th in for bh in r { pair(bh, scratch: ts.slots[th][0], tile: ts.slots[th][1]) } }
            } else {
                for bh in 0..<(B * NH) { pair(bh, scratch: scratch, tile: probs) }
            }
        }
    }

    /// S[T, T] = causal softmax(scale · Q Kᵀ) of one (b, h) (the upper triangle is computed and then zeroed).
    @inline(__always) static func causalScores(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                               keyMask: UnsafePointer<Float>?, T: Int, ld: Int, HS: Int, scale: Float) {
        sgemm(transA: false, transB: true, m: T, n: T, k: HS, alpha: scale, q, lda: ld, k, ldb: ld, beta: 0, p, ldc: T)
        g2_softmax_causal_fwd(p, keyMask, T, T, 0)
    }

    /// dqkv[B*T, 3C] overwritten. scratchP, scratchDP: [T*T] each. threadScratch (3 buffers per thread): as `forward`.
    /// recomputeWith: the probabilities were not kept (`probs` is ignored); each (b, h)'s are recomputed with this
    /// tile [T, T] and key mask (bit-identical to forward's) right before use.
    public static func backward(dqkv: UnsafeMutablePointer<Float>, dctx: UnsafePointer<Float>,
                                probs: UnsafePointer<Float>, qkv: UnsafePointer<Float>, B: Int, T: Int, C: Int,
                                NH: Int, dropout: AttentionDropout?, scratchP: UnsafeMutablePointer<Float>,
                                scratchDP: UnsafeMutablePointer<Float>,
                                recomputeWith: (tile: UnsafeMutablePointer<Float>, keyMask: UnsafePointer<Float>?)? = nil,
                                threadScratch: AttentionScratch? = nil) {
        let HS = C / NH, ld = 3 * C
        let scale = 1 / Float(HS).squareRoot()
        let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0
        let sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
        func pair(_ bh: Int, scratchP: UnsafeMutablePointer<Float>, scratchDP: UnsafeMutablePointer<Float>,
                  tile: UnsafeMutablePointer<Float>) {
            let b = bh / NH, h = bh % NH
            let o = b * T * ld + h * HS
            let q = qkv + o, k = q + C, v = q + 2 * C
            let dq = dqkv + o, dk = dq + C, dv = dq + 2 * C
            let dO = dctx + b * T * C + h * HS
            let p: UnsafePointer<Float>
            if let r = recomputeWith {
                causalScores(tile, q: q, k: k, keyMask: r.keyMask.map { $0 + b * T }, T: T, ld: ld, HS: HS, scale: scale)
                p = UnsafePointer(tile)
            } else {
                p = probs + bh * T * T
            }
            let sk = dropout.map { DropoutKey.sample($0.ctx, sample: $0.samples[b], site: $0.site) }
            var pv = p
            if let sk {   // regenerate P' (cheaper than keeping it)
                DropoutKey.dropAttentionRows(p, into: scratchP, T: T, sampleKey: sk, head: h, threshold: thr, scale: sc)
                pv = UnsafePointer(scratchP)
            }
            // dP'[T, T] = dO Vᵀ ; dV = P'ᵀ dO
            sgemm(transA: false, transB: true, m: T, n: T, k: HS, alpha: 1, dO, lda: C, v, ldb: ld,
                  beta: 0, scratchDP, ldc: T)
            sgemm(transA: true, transB: false, m: T, n: HS, k: T, alpha: 1, pv, lda: T, dO, ldb: C,
                  beta: 0, dv, ldc: ld)
            if let sk {
                DropoutKey.dropAttentionRows(scratchDP, into: scratchDP, T: T, sampleKey: sk, head: h, threshold: thr, scale: sc)
            }
            // dS = P ⊙ (dP − rowsum(P ⊙ dP)); zero where P is zero (future and padded keys)
            ck_softmax_bwd_inplace(p, scratchDP, T, T)
            // dQ = scale · dS K ; dK = scale · dSᵀ Q
            sgemm(transA: false, transB: false, m: T, n: HS, k: T, alpha: scale, scratchDP, lda: T, k, ldb: ld,
                  beta: 0, dq, ldc: ld)
            sgemm(transA: true, transB: false, m: T, n: HS, k: T, alpha: scale, scratchDP, lda: T, q, ldb: ld,
                  beta: 0, dk, ldc: ld)
        }
        ComputeThreads.withPoolOwningCores { split in
            if split, let ts = threadScratch, B * NH > 1 {
                ts.ensure(ComputeThreads.poolSize)
                ComputeThreads.parallelFor(B * NH) { r, th in
                    let s = ts.slots[th]
                    for bh in r { pair(bh, scratchP: s[0], scratchDP: s[1], tile: s[2]) }
                }
            } else {
                for bh in 0..<(B * NH) {
                    pair(bh, scratchP: scratchP, scratchDP: scratchDP, tile: recomputeWith?.tile ?? scratchP)
                }
            }
        }
    }

    /// One query per sample, at row rows[b] (the row a sequence head reads): ctx [B, C] (compact) = that row's
    /// attention output over the keys and values of rows 0...rows[b]. The same scores, causal softmax and dropout
    /// mask as `forward` gives that row (as GEMVs). scratch: [2T].
    public static func forwardRows(ctx: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, rows: [Int],
                                   keyMask: UnsafePointer<Float>?, B: Int, T: Int, C: Int, NH: Int,
                                   dropout: AttentionDropout?, scratch: UnsafeMutablePointer<Float>) {
        let HS = C / NH, ld = 3 * C
        let scale = 1 / Float(HS).squareRoot()
        let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0, sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
        let p = scratch, pd = scratch + T
        for b in 0..<B {
            let t = rows[b], n = t + 1
            let sk = dropout.map { DropoutKey.sample($0.ctx, sample: $0.samples[b], site: $0.site) }
            for h in 0..<NH {
                let q = qkv + (b * T + t) * ld + h * HS, k = qkv + b * T * ld + C + h * HS, v = k + C
                rowScores(p, q: q, k: k, keyMask: keyMask.map { $0 + b * T }, t: t, T: T, ld: ld, HS: HS, scale: scale)
                var pv = UnsafePointer(p)
                if let sk {
                    ck_dropout_row(p, pd, n, DropoutKey.attentionRow(sk, head: h, row: t), thr, sc)
                    pv = UnsafePointer(pd)
                }
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(n), Int32(HS), 1, v, Int32(ld), pv, 1, 0, ctx + b * C + h * HS, 1)
            }
        }
    }

    /// p[0...t] = causal softmax(scale · K q) of query row t of one (b, h) (keys beyond t are not read).
    @inline(__always) static func rowScores(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                            keyMask: UnsafePointer<Float>?, t: Int, T: Int, ld: Int, HS: Int, scale: Float) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(t + 1), Int32(HS), scale, k, Int32(ld), q, 1, 0, p, 1)
        g2_softmax_causal_fwd(p, keyMask, 1, T, t)
    }

    /// Backward of `forwardRows`: dqkv [B·T, 3C] overwritten (dq on rows[b] only, dk and dv on rows 0...rows[b],
    /// zero elsewhere), given dctx [B, C] (compact). The probabilities are recomputed. scratch: [3T].
    public static func backwardRows(dqkv: UnsafeMutablePointer<Float>, dctx: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                                    rows: [Int], keyMask: UnsafePointer<Float>?, B: Int, T: Int, C: Int, NH: Int,
                                    dropout: AttentionDropout?, scratch: UnsafeMutablePointer<Float>) {
        let HS = C / NH, ld = 3 * C
        let scale = 1 / Float(HS).squareRoot()
        let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0, sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
        let p = scratch, pd = scratch + T, dp = scratch + 2 * T
        dqkv.update(repeating: 0, count: B * T * ld)
        for b in 0..<B {
            let t = rows[b], n = t + 1
            let sk = dropout.map { DropoutKey.sample($0.ctx, sample: $0.samples[b], site: $0.site) }
            for h in 0..<NH {
                let o = b * T * ld + h * HS
                let q = qkv + o + t * ld, k = qkv + o + C, v = k + C
                let dq = dqkv + o + t * ld, dk = dqkv + o + C, dv = dk + C
                let dO = dctx + b * C + h * HS
                rowScores(p, q: q, k: k, keyMask: keyMask.map { $0 + b * T }, t: t, T: T, ld: ld, HS: HS, scale: scale)
                var pv = UnsafePointer(p)
                let rk = sk.map { DropoutKey.attentionRow($0, head: h, row: t) }
                if let rk {
                    ck_dropout_row(p, pd, n, rk, thr, sc)
                    pv = UnsafePointer(pd)
                }
                // dP'[j] = dO · V[j]; dV[j] = P'[j] dO
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(HS), 1, v, Int32(ld), dO, 1, 0, dp, 1)
                cblas_sger(CblasRowMajor, Int32(n), Int32(HS), 1, pv, 1, dO, 1, dv, Int32(ld))
                if let rk { ck_dropout_row(dp, dp, n, rk, thr, sc) }
                ck_softmax_bwd_inplace(p, dp, 1, n)   // dS = P ⊙ (dP − P · dP)
                // dq = scale · dS K ; dK[j] = scale · dS[j] q
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(n), Int32(HS), scale, k, Int32(ld), dp, 1, 0, dq, 1)
                cblas_sger(CblasRowMajor, Int32(n), Int32(HS), scale, dp, 1, q, 1, dk, Int32(ld))
            }
        }
    }

    /// Naive reference of `forward` without dropout (Double accumulation, explicit causal mask) for tests.
    public static func forwardNaive(qkv: [Float], keyMask: [Float]?, B: Int, T: Int, C: Int, NH: Int) -> [Float] {
        let HS = C / NH, ld = 3 * C
        let scale = 1 / Double(HS).squareRoot()
        var out = [Float](repeating: 0, count: B * T * C)
        for b in 0..<B {
            for h in 0..<NH {
                for i in 0..<T {
                    var s = [Double](repeating: -.infinity, count: T)
                    for j in 0...i where (keyMask?[b * T + j] ?? 1) != 0 {
                        var d = 0.0
                        for c in 0..<HS {
                            d += Double(qkv[(b * T + i) * ld + h * HS + c]) * Double(qkv[(b * T + j) * ld + C + h * HS + c])
                        }
                        s[j] = d * scale
                    }
                    let m = s.max()!
                    let e = s.map { $0 == -.infinity ? 0 : _exp($0 - m) }
                    let z = e.reduce(0, +)
                    for c in 0..<HS {
                        var acc = 0.0
                        for j in 0..<T { acc += e[j] / z * Double(qkv[(b * T + j) * ld + 2 * C + h * HS + c]) }
                        out[(b * T + i) * C + h * HS + c] = Float(acc)
                    }
                }
            }
        }
        return out
    }
}

@inline(__always) private func _exp(_ x: Double) -> Double { x.isFinite ? Foundation.exp(x) : 0 }
