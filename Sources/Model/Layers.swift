// Layers.swift: the encoder's layers as mirrored forward/backward pairs over explicit buffers: embeddings,
// LayerNorm, multi-head self-attention with the padding mask. Backward passes accumulate (+=) into parameter
// gradients and overwrite input gradients unless stated. Notation: B batch, T sequence, C hidden,
// NH heads, HS = C/NH head size, V vocabulary.
// Deliberately not here: allocation (the arena in EncoderClassifier owns every buffer), the model wiring, losses.
import CKernels

public enum Embeddings {
    /// out[B*T, C] = wte[ids] + wpe[t] (+ tte[types] when tte is given; DistilBERT has none).
    /// Positions are absolute 0..<T for every row, as HF's default position_ids.
    public static func forward(out: UnsafeMutablePointer<Float>, ids: [Int32], types: [Int32]?,
                               wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>, tte: UnsafePointer<Float>?,
                               B: Int, T: Int, C: Int) {
        for b in 0..<B {
            for t in 0..<T {
                let i = b * T + t
                let o = out + i * C, w = wte + Int(ids[i]) * C, p = wpe + t * C
                for c in 0..<C { o[c] = w[c] + p[c] }
                if let tte, let types { ck_add(o, tte + Int(types[i]) * C, C) }
            }
        }
    }
    /// Scatter-add of dout[B*T, C] into the three tables' gradients (rows touched by the batch only).
    public static func backward(dout: UnsafePointer<Float>, ids: [Int32], types: [Int32]?,
                                dwte: UnsafeMutablePointer<Float>, dwpe: UnsafeMutablePointer<Float>,
                                dtte: UnsafeMutablePointer<Float>?, B: Int, T: Int, C: Int) {
        for b in 0..<B {
            for t in 0..<T {
                let i = b * T + t
                let d = dout + i * C
                ck_add(dwte + Int(ids[i]) * C, d, C)
                ck_add(dwpe + t * C, d, C)
                if let dtte, let types { ck_add(dtte + Int(types[i]) * C, d, C) }
            }
        }
    }
}

public enum LayerNorm {
    /// y[N, C] = (x - mean) * rstd * w + b; saves mean[N], rstd[N] (biased variance, like torch).
    public static func forward(y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                               w: UnsafePointer<Float>, b: UnsafePointer<Float>, n: Int, C: Int, eps: Float) {
        ck_layernorm_fwd(x, y, mean, rstd, w, b, n, C, eps)
    }
    /// dx[N, C] overwritten; dw, db accumulated.
    public static func backward(dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>,
                                db: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                n: Int, C: Int) {
        ck_layernorm_bwd(dx, dy, x, mean, rstd, w, dw, db, n, C)
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

public enum Attention {
    /// keyMask[B*T]: 1 for real tokens, 0 for padding; nValid[b] = number of real keys of sample b.
    /// scratch: [T*T], receives the dropped-out probabilities of one (b, h) when dropout is active.
    /// probs: [B, NH, T, T] saved for backward; with `keepProbs` false a [T, T] scratch reused by every (b, h), for a
    /// caller whose backward recomputes them (a frozen base: `backward(..., recompute:)`).
    public static func forward(ctx: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                               q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               keyMask: UnsafePointer<Float>, nValid: [Int], B: Int, T: Int, C: Int, NH: Int,
                               dropout: AttentionDropout?, scratch: UnsafeMutablePointer<Float>, keepProbs: Bool = true) {
        let HS = C / NH
        let scale = 1 / Float(HS).squareRoot()
        for b in 0..<B {
            let sk = dropout.map { DropoutKey.sample($0.ctx, sample: $0.samples[b], site: $0.site) }
            for h in 0..<NH {
                let off = b * T * C + h * HS
                let p = keepProbs ? probs + (b * NH + h) * T * T : probs
                scores(p, q: q + off, k: k + off, keyMask: keyMask + b * T, nValid: nValid[b], T: T, C: C, HS: HS, scale: scale)
                var pv = UnsafePointer(p)
                if let d = dropout, let sk {
                    let thr = DropoutKey.threshold(p: d.p), sc = DropoutKey.scale(p: d.p)
                    DropoutKey.dropAttentionRows(p, into: scratch, T: T, sampleKey: sk, head: h, threshold: thr, scale: sc)
                    pv = UnsafePointer(scratch)
                }
                // O_bh[T, HS] = P' V_bh
                sgemm(transA: false, transB: false, m: T, n: HS, k: T, alpha: 1, pv, lda: T, v + off, ldb: C,
                      beta: 0, ctx + off, ldc: C)
            }
        }
    }

    /// P[T, T] = masked softmax(scale · Q_bh Kᵀ_bh) of one (b, h).
    @inline(__always) static func scores(_ p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                         keyMask: UnsafePointer<Float>, nValid: Int, T: Int, C: Int, HS: Int, scale: Float) {
        sgemm(transA: false, transB: true, m: T, n: T, k: HS, alpha: scale, q, lda: C, k, ldb: C, beta: 0, p, ldc: T)
        ck_softmax_masked_fwd(p, keyMask, T, T, nValid)
    }

    /// dq, dk, dv: [B*T, C] overwritten. scratchP, scratchDP: [T*T] each.
    /// recompute: the probabilities were not kept (`probs` is ignored); each (b, h)'s are recomputed (bit-identical to
    /// forward's: the same product and softmax) into `scratch` [T, T] right before they are used, so they stay in cache.
    public static func backward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
                                dv: UnsafeMutablePointer<Float>, dctx: UnsafePointer<Float>,
                                probs: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, B: Int, T: Int, C: Int, NH: Int,
                                dropout: AttentionDropout?, scratchP: UnsafeMutablePointer<Float>,
                                scratchDP: UnsafeMutablePointer<Float>,
                                recompute: (scratch: UnsafeMutablePointer<Float>, keyMask: UnsafePointer<Float>, nValid: [Int])? = nil) {
        let HS = C / NH
        let scale = 1 / Float(HS).squareRoot()
        for b in 0..<B {
            let sk = dropout.map { DropoutKey.sample($0.ctx, sample: $0.samples[b], site: $0.site) }
            for h in 0..<NH {
                let off = b * T * C + h * HS
                let p: UnsafePointer<Float>
                if let r = recompute {
                    scores(r.scratch, q: q + off, k: k + off, keyMask: r.keyMask + b * T, nValid: r.nValid[b], T: T, C: C, HS: HS, scale: scale)
                    p = UnsafePointer(r.scratch)
                } else {
                    p = probs + (b * NH + h) * T * T
                }
                let thr = dropout.map { DropoutKey.threshold(p: $0.p) } ?? 0
                let sc = dropout.map { DropoutKey.scale(p: $0.p) } ?? 1
                // dP'[T, T] = dO_bh V_bhᵀ
                sgemm(transA: false, transB: true, m: T, n: T, k: HS, alpha: 1, dctx + off, lda: C, v + off, ldb: C,
                      beta: 0, scratchDP, ldc: T)
                var pv = UnsafePointer(p)
                if let sk {   // regenerate P' (cheaper than keeping it) and form dP = dP' ⊙ mask/(1-p), one hash each
                    for i in 0..<T {
                        ck_dropout_pair_row(p + i * T, scratchP + i * T, scratchDP + i * T, T,
                                            DropoutKey.attentionRow(sk, head: h, row: i), thr, sc)
                    }
                    pv = UnsafePointer(scratchP)
                }
                // dV_bh = P'ᵀ dO_bh
                sgemm(transA: true, transB: false, m: T, n: HS, k: T, alpha: 1, pv, lda: T, dctx + off, ldb: C,
                      beta: 0, dv + off, ldc: C)
                // dS = P ⊙ (dP - rowsum(P ⊙ dP)); the 1/sqrt(HS) of the scores goes into alpha below.
                ck_softmax_bwd_inplace(p, scratchDP, T, T)
                // dQ_bh = scale · dS K_bh ; dK_bh = scale · dSᵀ Q_bh
                sgemm(transA: false, transB: false, m: T, n: HS, k: T, alpha: scale, scratchDP, lda: T, k + off, ldb: C,
                      beta: 0, dq + off, ldc: C)
                sgemm(transA: true, transB: false, m: T, n: HS, k: T, alpha: scale, scratchDP, lda: T, q + off, ldb: C,
                      beta: 0, dk + off, ldc: C)
            }
        }
    }
}
