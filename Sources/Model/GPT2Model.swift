// GPT2Model.swift: GPT-2 assembled from the layers: the shared transformer body (embeddings, blocks, ln_f) with its
// activation arena, GPT2LMHead (GPT2LMHeadModel: tied LM head, shifted causal-LM loss fused with the head's
// backward) and GPT2Classifier (GPT2ForSequenceClassification: `score` without bias, pooled at the last non-pad
// token). Parameter names are what save_pretrained writes ("transformer.h.0.attn.c_attn.weight", ...), in
// named_parameters() order; there is no lm_head.weight (tied to transformer.wte.weight).
// Forward lines and backward lines mirror each other in reverse order.
// Work nobody reads is skipped, exactly: the LM head computes logits only where a label counts (headAllPositions:
// everywhere), and under the classifier the last block after c_attn runs on the pooled rows (lastBlockAllRows).
// LoRA (LoRA.swift) hooks into every Conv1D of the body; with a frozen base no base gradient is formed.
// Deliberately not here: generation and the KV cache (GPT2Generate.swift), data preparation (Training/LMData.swift),
// the optimizer, BERT-family models.
import CBLAS
import CKernels
import Foundation

/// Parameter offsets of one GPT-2 block (the same offsets index values and grads).
struct GPT2BlockParams {
    var ln1w, ln1b, attnW, attnB, projW, projB, ln2w, ln2b, fcW, fcB, mlpW, mlpB: Int
}

/// Saved activations of one block (capacity BT = maxBatch·maxSeq).
struct GPT2BlockActs {
    var y1: UnsafeMutablePointer<Float>             // [BT, C] ln_1 output
    var mean1, rstd1: UnsafeMutablePointer<Float>   // [BT]
    var qkv: UnsafeMutablePointer<Float>            // [BT, 3C] c_attn output
    var probs: UnsafeMutablePointer<Float>          // [B, NH, T, T]
    var ctx: UnsafeMutablePointer<Float>            // [BT, C] attention output before c_proj
    var h1: UnsafeMutablePointer<Float>             // [BT, C] residual stream after attention
    var y2: UnsafeMutablePointer<Float>             // [BT, C] ln_2 output
    var mean2, rstd2: UnsafeMutablePointer<Float>   // [BT]
    var f: UnsafeMutablePointer<Float>              // [BT, FF] c_fc pre-activation (becomes act'(f) in backward)
    var out: UnsafeMutablePointer<Float>            // [BT, C] residual stream after the MLP: the block output
}

public enum GPT2Layout {
    /// The base-model prefix of every body parameter in save_pretrained files.
    public static let prefix = "transformer."

    /// The layout in named_parameters() order; `classifier` appends `score.weight` [numLabels, C].
    public static func make(config: GPT2Config, classifier: Bool) -> ParameterLayout {
        var L = ParameterLayout()
        let C = config.hidden, FF = config.intermediate
        L.add("transformer.wte.weight", [config.vocabSize, C])
        L.add("transformer.wpe.weight", [config.maxPositions, C])
        for l in 0..<config.layers {
            let p = "transformer.h.\(l)."
            L.add(p + "ln_1.weight", [C]); L.add(p + "ln_1.bias", [C])
            L.add(p + "attn.c_attn.weight", [C, 3 * C]); L.add(p + "attn.c_attn.bias", [3 * C])
            L.add(p + "attn.c_proj.weight", [C, C]); L.add(p + "attn.c_proj.bias", [C])
            L.add(p + "ln_2.weight", [C]); L.add(p + "ln_2.bias", [C])
            L.add(p + "mlp.c_fc.weight", [C, FF]); L.add(p + "mlp.c_fc.bias", [FF])
            L.add(p + "mlp.c_proj.weight", [FF, C]); L.add(p + "mlp.c_proj.bias", [C])
        }
        L.add("transformer.ln_f.weight", [C]); L.add("transformer.ln_f.bias", [C])
        if classifier {
            precondition(config.numLabels > 0, "config has no labels: set id2label or num_labels")
            L.add("score.weight", [config.numLabels, C])
        }
        return L
    }

    /// Loads save_pretrained's layout (`transformer.` keys) or the hub's (`h.N.…`, `wte`, `wpe`, `ln_f`) into `store`.
    /// The hub's `attn.bias` / `attn.masked_bias` causal-mask buffers and any `lm_head.weight` (tied) are ignored
    /// (listed in `unused`). A classifier checkpoint without `score.weight` (a plain LM) gets a fresh N(0, range) head.
    public static func load(into store: ParameterStore, from file: SafeTensorsFile, config: GPT2Config,
                            seed: UInt64 = 0) throws -> LoadReport {
        if let lm = file.info("lm_head.weight"), let wte = store.layout.entry("transformer.wte.weight"), lm.shape != wte.shape {
            throw SafeTensorsError(path: file.url.path, "lm_head.weight has shape \(lm.shape) but wte is \(wte.shape); untied heads are not supported")
        }
        return try WeightLoader.load(into: store, from: file, prefix: prefix, isOptional: { $0 == "score.weight" },
                                     seed: seed, initializerRange: config.initializerRange)
    }

    /// Writes the save_pretrained layout (`transformer.` keys, no tied lm_head.weight) and config.json into `dir`.
    public static func save(_ store: ParameterStore, config: GPT2Config, classifier: Bool, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try WeightLoader.save(store, to: dir.appendingPathComponent("model.safetensors"))
        try ModelConfig.write(config.json(classifier: classifier), to: dir.appendingPathComponent("config.json"))
    }
}

/// The GPT-2 body (GPT2Model): embeddings → blocks → ln_f, with the arena. Used by both heads.
final class GPT2Transformer {
    let config: GPT2Config
    let parameters: ParameterStore
    let maxBatch: Int, maxSeq: Int
    let C: Int, NH: Int, FF: Int
    let wte: Int, wpe: Int, lnfW: Int, lnfB: Int
    let blocks: [GPT2BlockParams]

    private let arena = ActivationArena()
    private(set) var activationBytes = 0
    let keyMask: UnsafeMutablePointer<Float>        // [BT]
    let x0: UnsafeMutablePointer<Float>             // [BT, C] wte[ids] + wpe[t] (after embd dropout)
    let acts: [GPT2BlockActs]
    let xf: UnsafeMutablePointer<Float>             // [BT, C] ln_f output (the head's input)
    let meanF, rstdF: UnsafeMutablePointer<Float>   // [BT]
    let dXf: UnsafeMutablePointer<Float>            // [BT, C] dLoss/d(ln_f output), written by the head
    let dRes, dTmp, dDrop, dCtx: UnsafeMutablePointer<Float>   // [BT, C] backward buffers
    let dQKV: UnsafeMutablePointer<Float>           // [BT, 3C]
    let ffScratch: UnsafeMutablePointer<Float>      // [BT, FF] activation output (fwd), its gradient (bwd)
    let scratchP, scratchDP, scratchS: UnsafeMutablePointer<Float>   // [maxSeq²]; S: the probabilities tile (recompute)
    let attnThreads: AttentionScratch   // [maxSeq²] ×3 per pool thread, mapped when the attention loops are split
    /// Keep no per-block attention probabilities: forward computes each (b, h)'s in a [T, T] tile and backward
    /// recomputes them right before use (bit-identical: the same product and causal softmax). Saves B·NH·T² floats
    /// per block (12×768 at 1×1024: 50 MB per block, 604 MB in all) for one more Q Kᵀ per (b, h). On by default.
    let recomputesAttention: Bool
    let lnSink: UnsafeMutablePointer<Float>         // [2C] LayerNorm dw/db of a frozen base (discarded)
    /// The last block on the head's rows only (`headRows`), compact [maxBatch, ·]: the block input's rows (the
    /// residual), attention output, h1, ln_2 output and statistics, c_fc pre-activation, block output, ln_f output
    /// and statistics; in backward the residual gradient, a dropout/temporary buffer and the attention's dctx.
    let cX, cCtx, cH1, cY2, cOut, cXf, cD, cDrop, cTmp, cDCtx: UnsafeMutablePointer<Float>
    let cMean2, cRstd2, cMeanF, cRstdF: UnsafeMutablePointer<Float>   // [maxBatch]
    let cF: UnsafeMutablePointer<Float>             // [maxBatch, FF]

    /// Compute every row of the last block, as transformers does (tests compare every hidden state). Off (the
    /// default), when the head passes the one row per sample it reads (`forward(_:dropout:headRows:)`, the sequence
    /// classifier's last non-pad token), the last block computes ln_1 and c_attn (keys and values) on every row and
    /// the attention, c_proj, ln_2, the MLP and ln_f on those rows only: the logits, the loss and every gradient are
    /// the same (those ops are row-wise, the other rows' gradient is zero, and a causal query reads no later row).
    var lastBlockAllRows = false
    /// The rows the last forward computed its last block on (one per sample), nil: every row.
    private(set) var headRows: [Int]?

    /// The attached LoRA adapter (LoRA.swift), nil for the plain model: its hooks run at each target Conv1D (site
    /// layer·4 + c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj), and modules_to_save tensors (`score`) are read from, and
    /// their gradients written to, its trainable store.
    var adapter: LoRAAdapter?
    /// Number format of the Conv1D products (four per block, forward and backward); the tied LM head's products and
    /// attention's per-head products stay fp32. `.bf16` only when `MatmulPrecision.bf16Supported`.
    var matmulPrecision: MatmulPrecision = .fp32
    /// Frozen base: no gradient is computed for base parameters (Conv1D dW/db, LayerNorm, embeddings and the tied
    /// LM head's wte products are skipped); input gradients still flow down to the lowest adapter.
    var frozenBase = false
    /// Called during backward with block l as soon as its parameter gradients are final (last block first), so the
    /// trainer can all-reduce them while they are in cache. Nil: no calls.
    var onLayerBackward: ((Int) -> Void)?
    /// Debug probe (`--debug`): a stage name and its values after the embeddings, each block and ln_f in forward,
    /// and the gradient into each block's input in backward, so the first non-finite value names its layer.
    var probe: ((String, UnsafeBufferPointer<Float>) -> Void)?

    private(set) var lastB = 0, lastT = 0
    private(set) var lastBatch: TokenBatch?
    private var lastDropout: DropoutContext?

    init(config: GPT2Config, parameters: ParameterStore, maxBatch: Int, maxSeq: Int, recomputeAttention: Bool = true) {
        recomputesAttention = recomputeAttention
        precondition(maxSeq <= config.maxPositions, "maxSeq \(maxSeq) exceeds n_positions \(config.maxPositions)")
        precondition(maxBatch > 0 && maxSeq > 0)
        self.config = config
        self.parameters = parameters
        self.maxBatch = maxBatch
        self.maxSeq = maxSeq
        C = config.hidden; NH = config.heads; FF = config.intermediate
        let lay = parameters.layout
        func off(_ n: String) -> Int {
            guard let e = lay.entry(n) else { preconditionFailure("parameter store lacks \(n); build it from GPT2Layout.make") }
            return e.offset
        }
        wte = off("transformer.wte.weight"); wpe = off("transformer.wpe.weight")
        lnfW = off("transformer.ln_f.weight"); lnfB = off("transformer.ln_f.bias")
        blocks = (0..<config.layers).map { l in
            let p = "transformer.h.\(l)."
            return GPT2BlockParams(
                ln1w: off(p + "ln_1.weight"), ln1b: off(p + "ln_1.bias"),
                attnW: off(p + "attn.c_attn.weight"), attnB: off(p + "attn.c_attn.bias"),
                projW: off(p + "attn.c_proj.weight"), projB: off(p + "attn.c_proj.bias"),
                ln2w: off(p + "ln_2.weight"), ln2b: off(p + "ln_2.bias"),
                fcW: off(p + "mlp.c_fc.weight"), fcB: off(p + "mlp.c_fc.bias"),
                mlpW: off(p + "mlp.c_proj.weight"), mlpB: off(p + "mlp.c_proj.bias"))
        }
        let BT = maxBatch * maxSeq
        let arena = self.arena
        func buf(_ n: Int) -> UnsafeMutablePointer<Float> { arena.floats(n) }
        keyMask = buf(BT); x0 = buf(BT * C)
        let C = config.hidden, NH = config.heads, FF = config.intermediate
        var a: [GPT2BlockActs] = []
        for _ in 0..<config.layers {
            a.append(GPT2BlockActs(y1: buf(BT * C), mean1: buf(BT), rstd1: buf(BT), qkv: buf(BT * 3 * C),
                          probs: buf(recomputeAttention ? 1 : maxBatch * NH * maxSeq * maxSeq), ctx: buf(BT * C), h1: buf(BT * C),
                          y2: buf(BT * C), mean2: buf(BT), rstd2: buf(BT), f: buf(BT * FF), out: buf(BT * C)))
        }
        acts = a
        xf = buf(BT * C); meanF = buf(BT); rstdF = buf(BT); dXf = buf(BT * C)
        dRes = buf(BT * C); dTmp = buf(BT * C); dDrop = buf(BT * C); dCtx = buf(BT * C)
        dQKV = buf(BT * 3 * C); ffScratch = buf(BT * FF)
        scratchP = buf(maxSeq * maxSeq); scratchDP = buf(maxSeq * maxSeq); scratchS = buf(maxSeq * maxSeq)
        attnThreads = AttentionScratch(arena: arena, floats: maxSeq * maxSeq, perThread: 3)
        lnSink = buf(2 * C)
        cX = buf(maxBatch * C); cCtx = buf(maxBatch * C); cH1 = buf(maxBatch * C); cY2 = buf(maxBatch * C)
        cOut = buf(maxBatch * C); cXf = buf(maxBatch * C); cD = buf(maxBatch * C); cDrop = buf(maxBatch * C)
        cTmp = buf(maxBatch * C); cDCtx = buf(maxBatch * C)
        cMean2 = buf(maxBatch); cRstd2 = buf(maxBatch); cMeanF = buf(maxBatch); cRstdF = buf(maxBatch)
        cF = buf(maxBatch * FF)
        activationBytes = arena.bytes
    }

    /// Weight reads, gradient writes and the LoRA hooks (LoRARoute, shared with the encoder).
    @inline(__always) var route: LoRARoute {
        LoRARoute(parameters: parameters, adapter: adapter, frozenBase: frozenBase, lnSink: lnSink, C: C)
    }
    @inline(__always) func P(_ off: Int) -> UnsafeMutablePointer<Float> { route.value(off) }
    @inline(__always) func G(_ off: Int) -> UnsafeMutablePointer<Float> { route.grad(off) }
    /// LayerNorm parameter gradient: a discarded sink when the base is frozen ([C] at 0 for dw, at C for db).
    @inline(__always) func GLN(_ off: Int, _ half: Int) -> UnsafeMutablePointer<Float> { route.layerNormGrad(off, half) }
    /// A trainable base tensor: the base is not frozen, or the tensor is a modules_to_save copy.
    @inline(__always) func trains(_ off: Int) -> Bool { route.trains(off) }
    /// The LoRA hooks' view of the last batch: every row, or (compact) the head's row of each sample.
    private func step(compact: Bool) -> LoRAStep {
        guard adapter != nil, let batch = lastBatch else { return LoRAStep(B: 0, T: 0, dropout: nil, samples: []) }
        return compact ? LoRAStep(B: lastB, T: 1, dropout: lastDropout, samples: batch.sampleIndices, rowOf: headRows)
                       : LoRAStep(B: lastB, T: lastT, dropout: lastDropout, samples: batch.sampleIndices)
    }

    /// Conv1D forward plus, at a LoRA target `site`, the adapter's update y += s·(x Aᵀ) Bᵀ. compact: x holds the
    /// head's rows (one per sample).
    private func convForward(_ site: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: Int, b: Int,
                             n: Int, inC: Int, outC: Int, compact: Bool = false) {
        Conv1D.forward(y: y, x: x, w: P(w), b: P(b), n: n, inC: inC, outC: outC, precision: matmulPrecision)
        if adapter != nil { route.forward(site: site, y: y, x: x, step: step(compact: compact)) }
    }

    /// Conv1D backward: the adapter's dA/dB first (dx may alias x), dW/db only for a trainable base, then the
    /// adapter's share of dx. dx nil: no input gradient wanted.
    private func convBackward(_ site: Int, dx: UnsafeMutablePointer<Float>?, w: Int, b: Int, dy: UnsafePointer<Float>,
                              x: UnsafePointer<Float>, n: Int, inC: Int, outC: Int, compact: Bool = false) {
        let precision = matmulPrecision
        route.backward(site: site, w: w, dx: dx, dy: dy, x: x, step: step(compact: compact), full: {
            Conv1D.backward(dx: dx, dw: G(w), db: G(b), dy: dy, x: x, w: P(w), n: n, inC: inC, outC: outC, precision: precision)
        }, inputOnly: { dx in
            Conv1D.backwardInput(dx: dx, dy: dy, w: P(w), n: n, inC: inC, outC: outC, precision: precision)
        })
    }

    /// Runs the body; xf holds the ln_f output [B*T, C] afterwards. headRows (one row t per sample): the only rows
    /// the head reads; the last block then runs on those (see lastBlockAllRows) and only those rows of xf are set.
    func forward(_ batch: TokenBatch, dropout: DropoutContext?, headRows rows: [Int]? = nil) {
        let B = batch.batchSize, T = batch.seqLen
        precondition(B <= maxBatch && T <= maxSeq, "batch \(B)×\(T) exceeds the arena's \(maxBatch)×\(maxSeq)")
        precondition(rows == nil || (rows!.count == B && rows!.allSatisfy { $0 >= 0 && $0 < T }), "one head row per sample, within the sequence")
        let BT = B * T
        lastB = B; lastT = T; lastBatch = batch; lastDropout = dropout
        headRows = lastBlockAllRows || blocks.isEmpty ? nil : rows
        for i in 0..<BT { keyMask[i] = batch.attentionMask[i] != 0 ? 1 : 0 }
        for id in batch.inputIds {
            precondition(id >= 0 && Int(id) < config.vocabSize, "token id \(id) outside the vocabulary of \(config.vocabSize)")
        }
        let samples = batch.sampleIndices
        let pResid = dropout == nil ? 0 : config.residDropout
        let pAttn = dropout == nil ? 0 : config.attnDropout
        Embeddings.forward(out: x0, ids: batch.inputIds, types: nil, wte: P(wte), wpe: P(wpe), tte: nil, B: B, T: T, C: C)
        if let d = dropout, config.embdDropout > 0 {
            dropoutRows(x0, x0, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.embeddings, p: config.embdDropout)
        }
        probe?("output of transformer.wte + wpe", UnsafeBufferPointer(start: x0, count: BT * C))
        var x = UnsafePointer(x0)
        for (l, w) in blocks.enumerated() {
            let s = acts[l]
            LayerNorm.forward(y: s.y1, mean: s.mean1, rstd: s.rstd1, x: x, w: P(w.ln1w), b: P(w.ln1b), n: BT, C: C,
                              eps: config.layerNormEps)
            convForward(4 * l, y: s.qkv, x: s.y1, w: w.attnW, b: w.attnB, n: BT, inC: C, outC: 3 * C)
            let ad = pAttn > 0 ? AttentionDropout(ctx: dropout!, samples: samples, site: DropoutSite.attentionProbs(layer: l), p: pAttn) : nil
            if let r = headRows, l == blocks.count - 1 {
                lastBlockOnHeadRows(l, rows: r, x: x, dropout: dropout, attentionDropout: ad)
                return
            }
            CausalAttention.forward(ctx: s.ctx, probs: recomputesAttention ? scratchS : s.probs, qkv: s.qkv, keyMask: keyMask,
                                    B: B, T: T, C: C, NH: NH, dropout: ad, scratch: scratchP, keepProbs: !recomputesAttention,
                                    threadScratch: attnThreads)
            convForward(4 * l + 1, y: s.h1, x: s.ctx, w: w.projW, b: w.projB, n: BT, inC: C, outC: C)
            if pResid > 0, let d = dropout {
                dropoutRows(s.h1, s.h1, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.attentionOutput(layer: l), p: pResid)
            }
            ck_p_add(ComputeThreads.pool, s.h1, x, BT * C)
            LayerNorm.forward(y: s.y2, mean: s.mean2, rstd: s.rstd2, x: s.h1, w: P(w.ln2w), b: P(w.ln2b), n: BT, C: C,
                              eps: config.layerNormEps)
            convForward(4 * l + 2, y: s.f, x: s.y2, w: w.fcW, b: w.fcB, n: BT, inC: C, outC: FF)
            ck_p_act_fwd(ComputeThreads.pool, config.actCode, s.f, ffScratch, BT * FF)
            convForward(4 * l + 3, y: s.out, x: ffScratch, w: w.mlpW, b: w.mlpB, n: BT, inC: FF, outC: C)
            if pResid > 0, let d = dropout {
                dropoutRows(s.out, s.out, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.ffnOutput(layer: l), p: pResid)
            }
            ck_p_add(ComputeThreads.pool, s.out, s.h1, BT * C)
            x = UnsafePointer(s.out)
            probe?("output of transformer.h.\(l)", UnsafeBufferPointer(start: s.out, count: BT * C))
        }
        LayerNorm.forward(y: xf, mean: meanF, rstd: rstdF, x: x, w: P(lnfW), b: P(lnfB), n: BT, C: C, eps: config.layerNormEps)
        probe?("output of transformer.ln_f", UnsafeBufferPointer(start: xf, count: BT * C))
    }

    /// Forward of the last block l after c_attn, and ln_f, on the head's rows (compact, one per sample): the
    /// attention for those queries, then c_proj, ln_2, the MLP and ln_f row-wise on B rows. The results go to the
    /// head's rows of s.out and xf (the rest of those is not computed).
    private func lastBlockOnHeadRows(_ l: Int, rows: [Int], x: UnsafePointer<Float>, dropout: DropoutContext?,
                                     attentionDropout ad: AttentionDropout?) {
        let B = lastB, T = lastT, w = blocks[l], s = acts[l], samples = lastBatch!.sampleIndices
        let pResid = dropout == nil ? 0 : config.residDropout
        CausalAttention.forwardRows(ctx: cCtx, qkv: s.qkv, rows: rows, keyMask: keyMask, B: B, T: T, C: C, NH: NH,
                                    dropout: ad, scratch: scratchP)
        for b in 0..<B { (cX + b * C).update(from: x + (b * T + rows[b]) * C, count: C) }
        convForward(4 * l + 1, y: cH1, x: cCtx, w: w.projW, b: w.projB, n: B, inC: C, outC: C, compact: true)
        if pResid > 0, let d = dropout {
            dropoutRows(cH1, cH1, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.attentionOutput(layer: l),
                        p: pResid, rowOf: rows)
        }
        ck_p_add(ComputeThreads.pool, cH1, cX, B * C)
        LayerNorm.forward(y: cY2, mean: cMean2, rstd: cRstd2, x: cH1, w: P(w.ln2w), b: P(w.ln2b), n: B, C: C,
                          eps: config.layerNormEps)
        convForward(4 * l + 2, y: cF, x: cY2, w: w.fcW, b: w.fcB, n: B, inC: C, outC: FF, compact: true)
        ck_p_act_fwd(ComputeThreads.pool, config.actCode, cF, ffScratch, B * FF)
        convForward(4 * l + 3, y: cOut, x: ffScratch, w: w.mlpW, b: w.mlpB, n: B, inC: FF, outC: C, compact: true)
        if pResid > 0, let d = dropout {
            dropoutRows(cOut, cOut, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.ffnOutput(layer: l),
                        p: pResid, rowOf: rows)
        }
        ck_p_add(ComputeThreads.pool, cOut, cH1, B * C)
        probe?("output of transformer.h.\(l) (the row the head reads of each sample)", UnsafeBufferPointer(start: cOut, count: B * C))
        LayerNorm.forward(y: cXf, mean: cMeanF, rstd: cRstdF, x: cOut, w: P(lnfW), b: P(lnfB), n: B, C: C, eps: config.layerNormEps)
        probe?("output of transformer.ln_f (the row the head reads of each sample)", UnsafeBufferPointer(start: cXf, count: B * C))
        for b in 0..<B {
            (s.out + (b * T + rows[b]) * C).update(from: cOut + b * C, count: C)
            (xf + (b * T + rows[b]) * C).update(from: cXf + b * C, count: C)
        }
    }

    /// Backward of ln_f and of the last block l down to the attention's input gradient on the head's rows (the
    /// mirror of lastBlockOnHeadRows): dQKV for every row, and dRes = dLoss/dh1 on the head's rows (zero elsewhere).
    private func lastBlockOnHeadRowsBackward(_ l: Int, rows: [Int]) {
        let B = lastB, T = lastT, w = blocks[l], s = acts[l], samples = lastBatch!.sampleIndices, dropout = lastDropout
        let pResid = dropout == nil ? 0 : config.residDropout, pAttn = dropout == nil ? 0 : config.attnDropout
        for b in 0..<B { (cTmp + b * C).update(from: dXf + (b * T + rows[b]) * C, count: C) }
        LayerNorm.backward(dx: cD, dw: GLN(lnfW, 0), db: GLN(lnfB, 1), dy: cTmp, x: cOut, mean: cMeanF, rstd: cRstdF,
                           w: P(lnfW), n: B, C: C)
        var dOut = UnsafePointer(cD)
        if pResid > 0, let d = dropout {
            dropoutRows(cD, cDrop, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.ffnOutput(layer: l),
                        p: pResid, rowOf: rows)
            dOut = UnsafePointer(cDrop)
        }
        ck_p_act_fwd_grad(ComputeThreads.pool, config.actCode, cF, ffScratch, B * FF)   // ffScratch = act(f), f = act'(f)
        convBackward(4 * l + 3, dx: ffScratch, w: w.mlpW, b: w.mlpB, dy: dOut, x: ffScratch, n: B, inC: FF, outC: C, compact: true)
        ck_p_mul(ComputeThreads.pool, ffScratch, cF, B * FF)
        convBackward(4 * l + 2, dx: cTmp, w: w.fcW, b: w.fcB, dy: ffScratch, x: cY2, n: B, inC: C, outC: FF, compact: true)
        LayerNorm.backward(dx: cDCtx, dw: GLN(w.ln2w, 0), db: GLN(w.ln2b, 1), dy: cTmp, x: cH1, mean: cMean2, rstd: cRstd2,
                           w: P(w.ln2w), n: B, C: C)
        ck_p_add(ComputeThreads.pool, cD, cDCtx, B * C)                                    // cD = dLoss/dh1
        var dProj = UnsafePointer(cD)
        if pResid > 0, let d = dropout {
            dropoutRows(cD, cDrop, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.attentionOutput(layer: l),
                        p: pResid, rowOf: rows)
            dProj = UnsafePointer(cDrop)
        }
        convBackward(4 * l + 1, dx: cDCtx, w: w.projW, b: w.projB, dy: dProj, x: cCtx, n: B, inC: C, outC: C, compact: true)
        let ad = pAttn > 0 ? AttentionDropout(ctx: dropout!, samples: samples, site: DropoutSite.attentionProbs(layer: l), p: pAttn) : nil
        CausalAttention.backwardRows(dqkv: dQKV, dctx: cDCtx, qkv: s.qkv, rows: rows, keyMask: keyMask, B: B, T: T, C: C,
                                     NH: NH, dropout: ad, scratch: scratchP)
        dRes.update(repeating: 0, count: B * T * C)
        for b in 0..<B { (dRes + (b * T + rows[b]) * C).update(from: cD + b * C, count: C) }
    }

    /// Accumulates every body gradient given dXf (dLoss/d ln_f output) of the last forward.
    func backward() {
        guard let batch = lastBatch else { return }
        let B = lastB, T = lastT, BT = B * T
        let dropout = lastDropout, samples = batch.sampleIndices
        if headRows == nil {
            let xLast = blocks.isEmpty ? UnsafePointer(x0) : UnsafePointer(acts[blocks.count - 1].out)
            LayerNorm.backward(dx: dRes, dw: GLN(lnfW, 0), db: GLN(lnfB, 1), dy: dXf, x: xLast, mean: meanF, rstd: rstdF,
                               w: P(lnfW), n: BT, C: C)
        }
        // dRes = dLoss/d(residual stream) going down
        for l in stride(from: blocks.count - 1, through: 0, by: -1) {
            let w = blocks[l], s = acts[l]
            let x = l == 0 ? UnsafePointer(x0) : UnsafePointer(acts[l - 1].out)
            if let r = headRows, l == blocks.count - 1 {
                lastBlockOnHeadRowsBackward(l, rows: r)   // dQKV, and dRes = dLoss/dh1
            } else {
                blockTailBackward(l)
            }
            let below = !(frozenBase && l == 0)   // a frozen base needs no gradient below block 0
            convBackward(4 * l, dx: below ? dTmp : nil, w: w.attnW, b: w.attnB, dy: dQKV, x: s.y1, n: BT, inC: C, outC: 3 * C)
            if !below { onLayerBackward?(l); break }
            LayerNorm.backward(dx: dCtx, dw: GLN(w.ln1w, 0), db: GLN(w.ln1b, 1), dy: dTmp, x: x, mean: s.mean1, rstd: s.rstd1,
                               w: P(w.ln1w), n: BT, C: C)
            ck_p_add(ComputeThreads.pool, dRes, dCtx, BT * C)                                   // dRes = dLoss/dx (block input)
            probe?("gradient into the input of transformer.h.\(l) (backward)", UnsafeBufferPointer(start: dRes, count: BT * C))
            onLayerBackward?(l)
        }
        if frozenBase { return }   // the embeddings' gradients are all the rest computes
        if let d = dropout, config.embdDropout > 0 {
            dropoutRows(dRes, dRes, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.embeddings, p: config.embdDropout)
        }
        Embeddings.backward(dout: dRes, ids: batch.inputIds, types: nil, dwte: G(wte), dwpe: G(wpe), dtte: nil, B: B, T: T, C: C)
    }

    /// Block l's backward from dRes (dLoss/d block output) down to the attention's input gradient: the MLP, ln_2,
    /// c_proj and the attention; leaves dQKV and dRes = dLoss/dh1.
    private func blockTailBackward(_ l: Int) {
        let B = lastB, T = lastT, BT = B * T, w = blocks[l], s = acts[l]
        let dropout = lastDropout, samples = lastBatch!.sampleIndices
        let pResid = dropout == nil ? 0 : config.residDropout
        let pAttn = dropout == nil ? 0 : config.attnDropout
        var dOut = UnsafePointer(dRes)
        if pResid > 0, let d = dropout {
            dropoutRows(dRes, dDrop, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.ffnOutput(layer: l), p: pResid)
            dOut = UnsafePointer(dDrop)
        }
        ck_p_act_fwd_grad(ComputeThreads.pool, config.actCode, s.f, ffScratch, BT * FF)   // ffScratch = act(f), f = act'(f)
        convBackward(4 * l + 3, dx: ffScratch, w: w.mlpW, b: w.mlpB, dy: dOut, x: ffScratch, n: BT, inC: FF, outC: C)
        ck_p_mul(ComputeThreads.pool, ffScratch, s.f, BT * FF)
        convBackward(4 * l + 2, dx: dTmp, w: w.fcW, b: w.fcB, dy: ffScratch, x: s.y2, n: BT, inC: C, outC: FF)
        LayerNorm.backward(dx: dCtx, dw: GLN(w.ln2w, 0), db: GLN(w.ln2b, 1), dy: dTmp, x: s.h1, mean: s.mean2, rstd: s.rstd2,
                           w: P(w.ln2w), n: BT, C: C)
        ck_p_add(ComputeThreads.pool, dRes, dCtx, BT * C)                                   // dRes = dLoss/dh1
        var dProj = UnsafePointer(dRes)
        if pResid > 0, let d = dropout {
            dropoutRows(dRes, dDrop, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.attentionOutput(layer: l), p: pResid)
            dProj = UnsafePointer(dDrop)
        }
        convBackward(4 * l + 1, dx: dCtx, w: w.projW, b: w.projB, dy: dProj, x: s.ctx, n: BT, inC: C, outC: C)
        let ad = pAttn > 0 ? AttentionDropout(ctx: dropout!, samples: samples, site: DropoutSite.attentionProbs(layer: l), p: pAttn) : nil
        CausalAttention.backward(dqkv: dQKV, dctx: dCtx, probs: s.probs, qkv: s.qkv, B: B, T: T, C: C, NH: NH,
                                 dropout: ad, scratchP: scratchP, scratchDP: scratchDP,
                                 recomputeWith: recomputesAttention ? (scratchS, UnsafePointer(keyMask)) : nil,
                                 threadScratch: attnThreads)
    }

    /// output_hidden_states of the last forward: [0] wte+wpe, then each block's output, the last one after ln_f.
    func hiddenStates() -> [[Float]] {
        let n = lastB * lastT * C
        var out = [Array(UnsafeBufferPointer(start: x0, count: n))]
        for (l, s) in acts.enumerated() where l < acts.count - 1 { out.append(Array(UnsafeBufferPointer(start: s.out, count: n))) }
        out.append(Array(UnsafeBufferPointer(start: xf, count: n)))
        return out
    }
}

/// The summed causal-LM loss of one micro-batch: `sum` over the `count` counted (label != -100) shifted positions.
/// The trainer adds these over micro-batches and ranks; loss = Σ sum / Σ count.
public struct LMLossSum: Sendable, Equatable {
    public var sum: Double
    public var count: Int
    public init(sum: Double, count: Int) { self.sum = sum; self.count = count }
    public var mean: Double { count > 0 ? sum / Double(count) : 0 }
}

/// GPT2LMHeadModel: the body plus the tied LM head (logits = ln_f(x) · wteᵀ) and the shifted LM loss.
///
/// Training: `forward(batch, labels:, gradientScale: s)` computes the loss and, because the fused softmax-CE turns
/// each chunk of logits into its gradient in place, also the head's share of wte's gradient and dLoss/d(ln_f output);
/// `backward()` then does the body. So zero the gradients BEFORE forward, never between forward and backward.
/// dLogits = s · (softmax − onehot) on counted positions: with s = 1/globalTokenCount the gradients are those of the
/// mean over every counted token of every micro-batch on every rank.
public final class GPT2LMHead {
    public let config: GPT2Config
    public let parameters: ParameterStore
    let body: GPT2Transformer
    /// Rows of logits per LM-head chunk: the [rows, V] buffer is bounded by `logitBudget` floats.
    public let chunkRows: Int
    let logitChunk: UnsafeMutablePointer<Float>     // [chunkRows, V]
    let targets: UnsafeMutablePointer<Int32>        // [BT] shifted labels (-100 where not counted)
    let lse, nll, rowMax: UnsafeMutablePointer<Float>   // [BT] per position
    /// One chunk of the head's rows gathered: the ln_f outputs, their input gradients, targets, and three per-row
    /// values (lse, nll, max in forward; log-probs and entropies, or scales, for the per-token statistics).
    let chunkX, chunkDX: UnsafeMutablePointer<Float>   // [chunkRows, C]
    let chunkTargets: UnsafeMutablePointer<Int32>    // [chunkRows]
    let chunkRow0, chunkRow1, chunkRow2: UnsafeMutablePointer<Float>   // [chunkRows]
    private var pendingBackward = false
    /// Compute the head's logits at every position, as transformers does (tests compare every position's
    /// statistics). Off (the default), `forward` with labels computes them at the labelled positions only, gathered
    /// into chunks: prompt, padding and each row's last position need no logits (their loss term and gradient are
    /// zero), so the loss, every gradient and the labelled positions' statistics are the same; positionStats() is 0
    /// elsewhere.
    public var headAllPositions = false

    public var maxBatch: Int { body.maxBatch }
    public var maxSeq: Int { body.maxSeq }
    /// Number format of the body's Conv1D products (the tied head stays fp32; see GPT2Transformer); fp32 default.
    public var matmulPrecision: MatmulPrecision { get { body.matmulPrecision } set { body.matmulPrecision = newValue } }
    public var activationBytes: Int { body.activationBytes + (chunkRows * config.vocabSize + 4 * maxBatch * maxSeq) * 4 }

    public static func makeLayout(config: GPT2Config) -> ParameterLayout { GPT2Layout.make(config: config, classifier: false) }
    /// See GPT2Transformer.onLayerBackward / probe.
    public var onLayerBackward: ((Int) -> Void)? { get { body.onLayerBackward } set { body.onLayerBackward = newValue } }
    public var probe: ((String, UnsafeBufferPointer<Float>) -> Void)? { get { body.probe } set { body.probe = newValue } }

    /// Rows per LM-head chunk for `tokens` rows of a `vocab`-wide head within `logitBudget` floats (`bench --gemm`
    /// times the head at this shape).
    public static func chunkRows(tokens: Int, vocab: Int, logitBudget: Int = 1 << 24) -> Int {
        max(1, min(tokens, logitBudget / vocab))
    }

    /// `logitBudget`: the most floats the logits chunk may hold (default 16 Mi floats = 64 MB).
    /// `recomputeAttention`: see GPT2Transformer.recomputesAttention (false keeps every block's probabilities).
    public init(config: GPT2Config, parameters: ParameterStore, maxBatch: Int, maxSeq: Int, logitBudget: Int = 1 << 24,
                recomputeAttention: Bool = true) {
        self.config = config
        self.parameters = parameters
        body = GPT2Transformer(config: config, parameters: parameters, maxBatch: maxBatch, maxSeq: maxSeq,
                               recomputeAttention: recomputeAttention)
        let BT = maxBatch * maxSeq
        chunkRows = Self.chunkRows(tokens: BT, vocab: config.vocabSize, logitBudget: logitBudget)
        logitChunk = .allocate(capacity: chunkRows * config.vocabSize)
        targets = .allocate(capacity: BT)
        lse = .allocate(capacity: BT); nll = .allocate(capacity: BT); rowMax = .allocate(capacity: BT)
        chunkX = .allocate(capacity: chunkRows * config.hidden); chunkDX = .allocate(capacity: chunkRows * config.hidden)
        chunkTargets = .allocate(capacity: chunkRows)
        chunkRow0 = .allocate(capacity: chunkRows); chunkRow1 = .allocate(capacity: chunkRows); chunkRow2 = .allocate(capacity: chunkRows)
    }

    deinit {
        logitChunk.deallocate(); targets.deallocate(); lse.deallocate(); nll.deallocate(); rowMax.deallocate()
        chunkX.deallocate(); chunkDX.deallocate(); chunkTargets.deallocate()
        chunkRow0.deallocate(); chunkRow1.deallocate(); chunkRow2.deallocate()
    }

    /// Forward with the shifted LM loss. labels [B*T] (token ids, -100 = not counted; nil: no loss, count 0).
    /// Position t of a row predicts labels[t+1]; the last position predicts nothing.
    /// gradientScale non-nil: training (see the type's doc); nil: evaluation (no gradients touched). With neither labels
    /// nor gradientScale only the body runs (positionStats() is then stale; use logits(rows:)).
    @discardableResult
    public func forward(_ batch: TokenBatch, labels: [Int32]?, gradientScale: Float?, dropout: DropoutContext?) -> LMLossSum {
        let B = batch.batchSize, T = batch.seqLen, BT = B * T, V = config.vocabSize
        body.forward(batch, dropout: dropout)
        var count = 0
        for b in 0..<B {
            for t in 0..<T {
                var y: Int32 = -100
                if let labels, t + 1 < T { y = labels[b * T + t + 1] }
                if y != -100 {
                    precondition(y >= 0 && Int(y) < V, "label \(y) outside the vocabulary (use -100 to ignore a position)")
                    count += 1
                } else { y = -1 }
                targets[b * T + t] = y
            }
        }
        let training = gradientScale != nil
        pendingBackward = false
        if labels == nil && !training { return LMLossSum(sum: 0, count: 0) }   // body only (generation)
        headForward(headAllPositions ? Array(0..<BT) : (0..<BT).filter { targets[$0] >= 0 }, scale: gradientScale ?? 0,
                    training: training)
        var sum = 0.0
        for i in 0..<BT where targets[i] >= 0 { sum += Double(nll[i]) }
        pendingBackward = training
        return LMLossSum(sum: sum, count: count)
    }

    /// The head on the positions `rows` (flat b·T + t; the labelled ones, or all with headAllPositions): their logits,
    /// loss statistics and (training) dLoss/dlogits = scale · (softmax − onehot) at once (the fused kernel), dX into
    /// dXf (zero at every other row) and the tied head's share of wte's gradient. Other positions get lse = nll =
    /// max = 0; a position without a label gets lse and max and a zero gradient.
    private func headForward(_ rows: [Int], scale: Float, training: Bool) {
        let n = body.lastB * body.lastT, V = config.vocabSize
        lse.update(repeating: 0, count: n); nll.update(repeating: 0, count: n); rowMax.update(repeating: 0, count: n)
        if training { body.dXf.update(repeating: 0, count: n * config.hidden) }
        forEachLogitChunk(rows) { r0, R in
            for k in 0..<R { chunkTargets[k] = targets[rows[r0 + k]] }
            g2_p_xent_fwd_bwd(ComputeThreads.pool, logitChunk, R, V, chunkTargets, scale, training ? 1 : 0, chunkRow0, chunkRow1, chunkRow2)
            for k in 0..<R { lse[rows[r0 + k]] = chunkRow0[k]; nll[rows[r0 + k]] = chunkRow1[k]; rowMax[rows[r0 + k]] = chunkRow2[k] }
            if training { headBackwardChunk(rows, r0: r0, R: R) }
        }
    }

    /// Runs `work(r0, R)` over `rows` (flat positions) in chunks of at most chunkRows: chunkX holds the ln_f outputs
    /// of rows[r0..<r0+R], gathered, and logitChunk their logits [R, V] = chunkX · wteᵀ.
    /// The head stays fp32: its bf16 products (k = V = 50257 for dX) measured slower than sgemm here (MFU 0.45 vs
    /// 0.69–0.83 for the whole step with the head in fp32; docs/performance.md). Its products go through gemm: the
    /// same bits at every thread count.
    func forEachLogitChunk(_ rows: [Int], _ work: (_ r0: Int, _ R: Int) -> Void) {
        let V = config.vocabSize, C = config.hidden
        let wte = UnsafePointer(body.P(body.wte))
        var r0 = 0
        while r0 < rows.count {
            let R = min(chunkRows, rows.count - r0)
            for k in 0..<R { (chunkX + k * C).update(from: body.xf + rows[r0 + k] * C, count: C) }
            gemm(.fp32, transA: false, transB: true, m: R, n: V, k: C, alpha: 1, chunkX, lda: C, wte, ldb: C, beta: 0, logitChunk, ldc: V)
            work(r0, R)
            r0 += R
        }
    }

    /// After `work` turned logitChunk into dLoss/dlogits of rows[r0..<r0+R]: dX = dLogits · wte into those rows of dXf,
    /// and dwte += dLogitsᵀ · X (the tied head's share of wte's gradient; none for a frozen base).
    func headBackwardChunk(_ rows: [Int], r0: Int, R: Int) {
        let V = config.vocabSize, C = config.hidden
        let wte = UnsafePointer(body.P(body.wte))
        gemm(.fp32, transA: false, transB: false, m: R, n: C, k: V, alpha: 1, logitChunk, lda: V, wte, ldb: C, beta: 0, chunkDX, ldc: C)
        for k in 0..<R { (body.dXf + rows[r0 + k] * C).update(from: chunkDX + k * C, count: C) }
        if body.trains(body.wte) {
            gemm(.fp32, transA: true, transB: false, m: V, n: C, k: R, alpha: 1, logitChunk, lda: V, chunkX, ldb: C,
                 beta: 1, body.G(body.wte), ldc: C)
        }
    }

    /// The body's backward for the last training forward (the head's gradient was formed in forward).
    public func backward() {
        precondition(pendingBackward, "backward needs a forward with gradientScale (and runs once per forward)")
        pendingBackward = false
        body.backward()
    }

    /// Full logits [rows.count, V] of the last forward's positions `rows` (flat b·T + t), recomputed from ln_f's output.
    public func logits(rows: Range<Int>) -> [Float] {
        let V = config.vocabSize, C = config.hidden
        precondition(rows.upperBound <= body.lastB * body.lastT)
        var out = [Float](repeating: 0, count: rows.count * V)
        out.withUnsafeMutableBufferPointer {
            if rows.count == 1 {   // generation without cache: a GEMV (sgemm would pack all of wte for one row)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(V), Int32(C), 1, body.P(body.wte), Int32(C),
                            body.xf + rows.lowerBound * C, 1, 0, $0.baseAddress!, 1)
            } else {
                sgemm(transA: false, transB: true, m: rows.count, n: V, k: C, alpha: 1, body.xf + rows.lowerBound * C, lda: C,
                      body.P(body.wte), ldb: C, beta: 0, $0.baseAddress!, ldc: V)
            }
        }
        return out
    }

    /// Per-position statistics of the last forward, [B*T] each: logsumexp and max over the vocabulary, and the loss
    /// term of the position (0 where not counted).
    public func positionStats() -> (logsumexp: [Float], max: [Float], nll: [Float]) {
        let n = body.lastB * body.lastT
        return (Array(UnsafeBufferPointer(start: lse, count: n)), Array(UnsafeBufferPointer(start: rowMax, count: n)),
                Array(UnsafeBufferPointer(start: nll, count: n)))
    }

    /// output_hidden_states of the last forward (see GPT2Transformer.hiddenStates), [B*T*C] each.
    public func hiddenStates() -> [[Float]] { body.hiddenStates() }
}

/// GPT2ForSequenceClassification: the body, `score` (Linear C → numLabels, no bias) on every position's ln_f output,
/// pooled at the last non-pad token of each row exactly as transformers: argmax_t(t · [input_ids[t] != pad]),
/// i.e. the last position whose id is not pad_token_id (0 when there is none). Note that this looks at ids, not at
/// the attention mask, like transformers; a real pad-id token inside the text would end the pooling early.
public final class GPT2Classifier {
    public let config: GPT2Config
    public let parameters: ParameterStore
    let body: GPT2Transformer
    let scoreW: Int
    let padId: Int32
    let pooled: UnsafeMutablePointer<Float>   // [B, C]
    let logitsBuf: UnsafeMutablePointer<Float>   // [B, NL]
    let dPooled: UnsafeMutablePointer<Float>  // [B, C]
    private(set) var poolIndex: [Int] = []
    private var backwardDone = true

    public var maxBatch: Int { body.maxBatch }
    public var maxSeq: Int { body.maxSeq }
    public var activationBytes: Int { body.activationBytes }
    /// Compute every row of the last block (see GPT2Transformer.lastBlockAllRows). Off (the default), the last block
    /// after c_attn and ln_f run on each row's pooled token only, so only those rows of its hidden state are set.
    public var lastBlockAllRows: Bool { get { body.lastBlockAllRows } set { body.lastBlockAllRows = newValue } }
    /// Number format of the body's Conv1D products (the score head stays fp32); fp32 default.
    public var matmulPrecision: MatmulPrecision { get { body.matmulPrecision } set { body.matmulPrecision = newValue } }

    public static func makeLayout(config: GPT2Config) -> ParameterLayout { GPT2Layout.make(config: config, classifier: true) }
    /// See GPT2Transformer.onLayerBackward / probe.
    public var onLayerBackward: ((Int) -> Void)? { get { body.onLayerBackward } set { body.onLayerBackward = newValue } }
    public var probe: ((String, UnsafeBufferPointer<Float>) -> Void)? { get { body.probe } set { body.probe = newValue } }

    /// Throws when the config has no pad_token_id (transformers refuses batches > 1 then; we refuse up front).
    public init(config: GPT2Config, parameters: ParameterStore, maxBatch: Int, maxSeq: Int) throws {
        guard let pad = config.padTokenId else {
            throw ConfigError(path: config.path, "GPT-2 sequence classification needs 'pad_token_id' to find the last real token; set it in config.json (GPT-2 uses 50256, <|endoftext|>)")
        }
        guard config.numLabels > 0 else {
            throw ConfigError(path: config.path, "no labels: set 'id2label' or 'num_labels' in config.json")
        }
        self.config = config
        self.parameters = parameters
        padId = Int32(pad)
        body = GPT2Transformer(config: config, parameters: parameters, maxBatch: maxBatch, maxSeq: maxSeq)
        guard let e = parameters.layout.entry("score.weight") else { preconditionFailure("store lacks score.weight; build it from GPT2Classifier.makeLayout") }
        scoreW = e.offset
        pooled = .allocate(capacity: maxBatch * config.hidden)
        dPooled = .allocate(capacity: maxBatch * config.hidden)
        logitsBuf = .allocate(capacity: maxBatch * config.numLabels)
    }

    deinit { pooled.deallocate(); dPooled.deallocate(); logitsBuf.deallocate() }

    /// Logits [B, numLabels] (a view into the model, valid until the next forward).
    public func forward(_ batch: TokenBatch, dropout: DropoutContext?) -> UnsafeBufferPointer<Float> {
        let B = batch.batchSize, T = batch.seqLen, C = config.hidden, NL = config.numLabels
        poolIndex = (0..<B).map { b in
            var best = 0, bestVal = -1
            for t in 0..<T {
                let v = batch.inputIds[b * T + t] != padId ? t : 0
                if v > bestVal { bestVal = v; best = t }   // first maximum, as torch.argmax
            }
            return best
        }
        body.forward(batch, dropout: dropout, headRows: poolIndex)   // the last block runs on those rows only
        for b in 0..<B { (pooled + b * C).update(from: body.xf + (b * T + poolIndex[b]) * C, count: C) }
        Linear.forward(y: logitsBuf, x: pooled, w: body.P(scoreW), b: nil, n: B, inC: C, outC: NL)
        backwardDone = false
        body.probe?("logits of score", UnsafeBufferPointer(start: logitsBuf, count: B * NL))
        return UnsafeBufferPointer(start: logitsBuf, count: B * NL)
    }

    /// Accumulates every gradient given dLoss/dLogits [B, numLabels] of the last forward.
    public func backward(dLogits: UnsafeBufferPointer<Float>) {
        precondition(!backwardDone, "backward called twice for one forward (or before any forward)")
        backwardDone = true
        let B = body.lastB, T = body.lastT, C = config.hidden, NL = config.numLabels
        if body.trains(scoreW) {
            Linear.backward(dx: dPooled, dw: body.G(scoreW), db: nil, dy: dLogits.baseAddress!, x: pooled, w: body.P(scoreW),
                            n: B, inC: C, outC: NL)
        } else {
            Linear.backwardInput(dx: dPooled, dy: dLogits.baseAddress!, w: body.P(scoreW), n: B, inC: C, outC: NL)
        }
        body.dXf.update(repeating: 0, count: B * T * C)
        for b in 0..<B { (body.dXf + (b * T + poolIndex[b]) * C).update(from: dPooled + b * C, count: C) }
        body.backward()
    }

    public func hiddenStates() -> [[Float]] { body.hiddenStates() }
}

extension GPT2LMHead: LoRAModel {
    public var loraBase: LoRABase { .gpt2(config, classifier: false) }
    public var loraMaxRows: Int { maxBatch * maxSeq }
    public var adapter: LoRAAdapter? { body.adapter }
    public func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool = true) { body.adapter = adapter; body.frozenBase = freezeBase }
    public func detachLoRA() { body.adapter = nil; body.frozenBase = false }
}

extension GPT2Classifier: LoRAModel {
    public var loraBase: LoRABase { .gpt2(config, classifier: true) }
    public var loraMaxRows: Int { maxBatch * maxSeq }
    public var adapter: LoRAAdapter? { body.adapter }
    public func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool = true) { body.adapter = adapter; body.frozenBase = freezeBase }
    public func detachLoRA() { body.adapter = nil; body.frozenBase = false }
}
