// Layers.swift: the encoder's layers as mirrored forward/backward pairs over explicit buffers: embeddings,
// LayerNorm, multi-head self-attention with the padding mask. Backward passes accumulate (+=) into parameter
// gradients and overwrite input gradients unless stated. Notation: B batch, T sequence, C hidden,
// NH heads, HS = C/NH head size, V vocabulary.
// Deliberately not here: allocation (the arena in EncoderClassifier owns every buffer), the model wiring, losses.
import CKernels

public enum Embeddings {
    /// out[B*T, C] = wte[ids] + wpe[t] (+ tte[types] when tte is given; DistilBERT has none).
    /// Positions are absolute 0..<T for every row, as HF's default position_ids. Rows split over the compute pool.
    public static func forward(out: UnsafeMutablePointer<Float>, ids: [Int32], types: [Int32]?,
                               wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>, tte: UnsafePointer<Float>?,
                               B: Int, T: Int, C: Int) {
        ids.withUnsafeBufferPointer { ib in
            if let tte, let types {
                types.withUnsafeBufferPointer { tb in
                    ck_p_embed_rows(ComputeThreads.pool, out, wte, ib.baseAddress, wpe, T, tte, tb.baseAddress, B * T, C)
                }
            } else {
                ck_p_embed_rows(ComputeThreads.pool, out, wte, ib.baseAddress, wpe, T, nil, nil, B * T, C)
            }
        }
    }
    /// Scatter-add of dout[B*T, C] into the three tables' gradients (rows touched by the batch only), each table's
    /// rows receiving their additions in token order (split over column ranges: the same bits on any thread count).
    public static func backward(dout: UnsafePointer<Float>, ids: [Int32], types: [Int32]?,
                                dwte: UnsafeMutablePointer<Float>, dwpe: UnsafeMutablePointer<Float>,
                                dtte: UnsafeMutablePointer<Float>?, B: Int, T: Int, C: Int) {
        let pool = ComputeThreads.pool
        ids.withUnsafeBufferPointer { ck_p_scatter_add_rows(pool, dwte, dout, $0.baseAddress, 0, B * T, C) }
        ck_p_scatter_add_rows(pool, dwpe, dout, nil, T, B * T, C)
        if let dtte, let types {
            types.withUnsafeBufferPointer { ck_p_scatter_add_rows(pool, dtte, dout, $0.baseAddress, 0, B * T, C) }
        }
    }
}

public enum LayerNorm {
    /// y[N, C] = (x - mean) * rstd * w + b; saves mean[N], rstd[N] (biased variance, like torch).
    public static func forward(y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                               w: UnsafePointer<Float>, b: UnsafePointer<Float>, n: Int, C: Int, eps: Float) {
        ck_p_layernorm_fwd(ComputeThreads.pool, x, y, mean, rstd, w, b, n, C, eps)
    }
    /// dx[N, C] overwritten; dw, db accumulated.
    public static func backward(dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                db: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                n: Int, C: Int) {
        ck_p_layernorm_bwd(ComputeThreads.pool, dx, dy, x, mean, rstd, w, dw, db, n, C)
    }
}

/// Multi-head self-attention core (after the Q/K/V projections, before the output projection).
/// q, k, v, ctx: [B*T, C], head h is the column block h*HS..<(h+1)*HS, so a (b, h) slice is a strided [T, HS]
/// view with leading dimension C and every product is one sgemm on views (no transposes, no copies).
/// probs: [B, NH, T, T] softmax(Q Kᵀ / sqrt(HS) + mask), saved for backward, exactly 0 at masked keys
/// (HF adds finfo.min there, so exp underflows to exactly 0; padded query rows are computed like any other).
public struct AttentionDropout {
    public var ctx: DropoutContext
    public var samples: [Int]
    public var site: Int
    public var p: Float
}

/// Per-thread [T, T] scratch of the attention loops when they are split over the compute pool: `perThread` buffers of
/// `floats` each for every pool thread, mapped from the model's arena the first time that many threads run
/// (resident only once written). Attention memory is one (b, h) tile per buffer, never B·NH·T².
public final class AttentionScratch {
    let arena: ActivationArena
    let floats: Int, perThread: Int
    private(set) var slots: [[UnsafeMutablePointer<Float>]] = []
    public init(arena: ActivationArena, floats: Int, perThread: Int) {
        self.arena = arena; self.floats = floats; self.perThread = perThread
    }
    /// Slots for `threads` threads (maps the missing ones).
    func ensure(_ threads: Int) {
        while slots.count < threads { slots.append((0..<perThread).map { _ in arena.floats(floats) }) }
    }
}

public enum Attention {
    /// keyMask[B*T]: 1 for real tokens, 0 for padding; nValid[b] = number of real keys of sample b.
    /// scratch: [T*T], receives the dropped-out probabilities of one (b, h) when dropout is active.
    /// probs: [B, NH, T, T] saved for backward; with `keepProbs` false a [T, T] scratch reused by every (b, h), for a
    /// caller whose backward recomputes them (a frozen base: `backward(..., recompute:)`).
    /// threadScratch (2 buffers per thread): the (b, h) pairs are split over the compute pool when it is free, each
    /// thread with its own scratch (and its own probability tile when `keepProbs` is false), OpenBLAS on one thread
    /// meanwhile; the same products and kernels per pair, so the same bits.
    /// queries: only the first `queries` rows of each sample attend (their ctx rows are written, the others left
    /// as they are; q is read on those rows only); nil: all T. A sequence head's last layer needs the first only.
    public static func forward(ctx: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                               q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               keyMask: UnsafePointer<Float>, nValid: [Int], B: Int, T: Int, C: Int, NH: Int,
                               dropout: AttentionDropout?, scratch: UnsafeMutablePointer<Float>, keepProbs: Bool = true,
                               threadScratch: AttentionScratch? = nil, queries: Int? = nil) {
        let HS = C / NH, TQ = min(queries ?? T, T)
        let scale = 1 / Float(HS).squareRoot()
        let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0, sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
        nValid.withUnsafeBufferPointer { nv in
            func pair(_ bh: Int, scratch: UnsafeMutablePointer<Float>, tile: UnsafeMutablePointer<Float>) {
                let b = bh / NH, h = bh % NH
                let off = b * T * C + h * HS
                let p = keepProbs ? probs + bh * T * T : tile
                scores(p, q: q + off, k: k + off, keyMask: keyMask + b * T, nValid: nv[b], T: T, C: C, HS: HS, scale: scale,
                       rows: TQ)
                var pv = UnsafePointer(p)
                if let d = dropout {
                    let sk = DropoutKey.sample(d.ctx, sample: d.samples[b], site: d.site)
                    DropoutKey.dropAttentionRows(p, into: scratch, T: T, rows: TQ, sampleKey: sk, head: h, threshold: thr, scale: sc)
                    pv = UnsafePointer(scratch)
                }
                // O_bh[TQ, HS] = P' V_bh
                sgemm(transA: false, transB: false, m: TQ, n: HS, k: T, alpha: 1, pv, lda: T, v + off, ldb: C,
                      beta: 0, ctx + off, ldc: C)
            }
            ComputeThreads.withPoolOwningCores { split in
                if split, let ts = threadScratch, B * NH > 1 {
                    ts.ensure(ComputeThreads.poolSize)
                    ComputeThreads.parallelFor(B * NH) { r, th in
                        for bh in r { pair(bh, scratch: ts.slots[th][0], tile: ts.slots[th][1]) }
                    }
                } else {
                    for bh in 0..<(B * NH) { pair(bh, scratch: scratch, tile: probs) }
                }
            }
        }
    }

    /// P[rows, T] = masked softmax(scale · Q_bh Kᵀ_bh) of one (b, h), for its first `rows` queries (default all T).
    @inline(__always) static func scores(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                         keyMask: UnsafePointer<Float>, nValid: Int, T: Int, C: Int, HS: Int, scale: Float,
                                         rows: Int? = nil) {
        let r = rows ?? T
        sgemm(transA: false, transB: true, m: r, n: T, k: HS, alpha: scale, q, lda: C, k, ldb: C, beta: 0, p, ldc: T)
        ck_softmax_masked_fwd(p, keyMask, r, T, nValid)
    }

    /// dq, dk, dv: [B*T, C] overwritten. scratchP, scratchDP: [T*T] each.
    /// recompute: the probabilities were not kept (`probs` is ignored); each (b, h)'s are recomputed (bit-identical to
    /// forward's: the same product and softmax) into `scratch` [T, T] right before they are used, so they stay in cache.
    /// threadScratch (3 buffers per thread): split over the compute pool as `forward`.
    /// queries: as forward's; dctx is read and dq written on those rows only, dk and dv on every row.
    public static func backward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                dv: UnsafeMutablePointer<Float>, dctx: UnsafePointer<Float>,
                                probs: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int,
                                dropout: AttentionDropout?, scratchP: UnsafeMutablePointer<Float>,
                                scratchDP: UnsafeMutablePointer<Float>,
                                recompute: (scratch: UnsafeMutablePointer<Float>, keyMask: UnsafePointer<Float>, nValid: [Int])? = nil,
                                threadScratch: AttentionScratch? = nil, queries: Int? = nil) {
        let HS = C / NH, TQ = min(queries ?? T, T)
        let scale = 1 / Float(HS).squareRoot()
        let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0
        let sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
        func pair(_ bh: Int, scratchP: UnsafeMutablePointer<Float>, scratchDP: UnsafeMutablePointer<Float>,
                  tile: UnsafeMutablePointer<Float>) {
            let b = bh / NH, h = bh % NH
            let off = b * T * C + h * HS
            let p: UnsafePointer<Float>
            if let r = recompute {
                scores(tile, q: q + off, k: k + off, keyMask: r.keyMask + b * T, nValid: r.nValid[b], T: T, C: C, HS: HS, scale: scale,
                       rows: TQ)
                p = UnsafePointer(tile)
            } else {
                p = probs + bh * T * T
            }
            // dP'[TQ, T] = dO_bh V_bhᵀ
            sgemm(transA: false, transB: true, m: TQ, n: T, k: HS, alpha: 1, dctx + off, lda: C, v + off, ldb: C,
                  beta: 0, scratchDP, ldc: T)
            var pv = UnsafePointer(p)
            if let d = dropout {   // regenerate P' (cheaper than keeping it) and form dP = dP' ⊙ mask/(1-p), one hash each
                let sk = DropoutKey.sample(d.ctx, sample: d.samples[b], site: d.site)
                for i in 0..<TQ {
                    ck_dropout_pair_row(p + i * T, scratchP + i * T, scratchDP + i * T, T,
                                        DropoutKey.attentionRow(sk, head: h, row: i), thr, sc)
                }
                pv = UnsafePointer(scratchP)
            }
            // dV_bh = P'ᵀ dO_bh
            sgemm(transA: true, transB: false, m: T, n: HS, k: TQ, alpha: 1, pv, lda: T, dctx + off, ldb: C,
                  beta: 0, dv + off, ldc: C)
            // dS = P ⊙ (dP - rowsum(P ⊙ dP)); the 1/sqrt(HS) of the scores goes into alpha below.
            ck_softmax_bwd_inplace(p, scratchDP, TQ, T)
            // dQ_bh = scale · dS K_bh ; dK_bh = scale · dSᵀ Q_bh
            sgemm(transA: false, transB: false, m: TQ, n: HS, k: T, alpha: scale, scratchDP, lda: T, k + off, ldb: C,
                  beta: 0, dq + off, ldc: C)
            sgemm(transA: true, transB: false, m: T, n: HS, k: TQ, alpha: scale, scratchDP, lda: T, q + off, ldb: C,
                  beta: 0, dk + off, ldc: C)
        }
        ComputeThreads.withPoolOwningCores { split in
            if split, let ts = threadScratch, B * NH > 1 {
                ts.ensure(ComputeThreads.poolSize)
                ComputeThreads.parallelFor(B * NH) { r, th in
                    let s = ts.slots[th]
                    for bh in r { pair(bh, scratchP: s[0], scratchDP: s[1], tile: s[2]) }
                }
            } else {
                for bh in 0..<(B * NH) { pair(bh, scratchP: scratchP, scratchDP: scratchDP, tile: recompute?.scratch ?? scratchP) }
            }
        }
    }
}
