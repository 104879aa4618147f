// EncoderClassifier.swift: BERT / DistilBERT sequence classifiers assembled from the layers, with the activation
// arena (every buffer allocated once at init for maxBatch × maxSeq) and the parameter layout under Hugging Face
// names exactly as *ForSequenceClassification.save_pretrained writes them.
// Forward lines and backward lines mirror each other in reverse order.
// Arena size (floats), BT = maxBatch·maxSeq: per layer 8·BT·C (q, k, v, ctx, h1, y1, h2, y2) + BT·FF (pre-activation)
// + 4·BT, plus maxBatch·NH·maxSeq² (probabilities) only when attention is not recomputed (`recomputesAttention`, on
// by default); shared: 9·BT·C (embeddings and backward buffers) + BT·FF (activation output / its gradient) + 3·maxSeq²
// (attention scratch) + small. The activation output and the dropped-out probabilities are recomputed in backward
// instead of kept (MiniLM, 32×128: 536 MB by default, 687 MB when the probabilities are kept). The arena is
// anonymous mappings, resident as written: a frozen base (LoRA) keeps no per-layer ctx/y1 and no probabilities (see
// savedActs).
// Deliberately not here: losses (Loss.swift), weight loading/aliases (WeightLoading.swift), the optimizer.
import CKernels
import Foundation

/// One padded micro-batch.
public struct TokenBatch: Sendable {
    public var batchSize: Int
    public var seqLen: Int
    /// [B*T]
    public var inputIds: [Int32]
    /// [B*T], 1 = real token, 0 = padding.
    public var attentionMask: [Int32]
    /// [B*T], zeros when the tokenizer gives none (ignored by DistilBERT).
    public var tokenTypeIds: [Int32]
    /// [B] global sample indices: the dropout key, so masks do not depend on rank or micro-batch split.
    public var sampleIndices: [Int]
    /// tokenTypeIds nil = all zeros. sampleIndices are required (no default): they key the dropout masks, and a
    /// default such as 0..<B would silently give every micro-batch of a step the same masks.
    public init(batchSize: Int, seqLen: Int, inputIds: [Int32], attentionMask: [Int32],
                tokenTypeIds: [Int32]? = nil, sampleIndices: [Int]) {
        precondition(inputIds.count == batchSize * seqLen && attentionMask.count == batchSize * seqLen,
                     "TokenBatch: inputIds/attentionMask must hold batchSize*seqLen = \(batchSize * seqLen) values")
        self.batchSize = batchSize
        self.seqLen = seqLen
        self.inputIds = inputIds
        self.attentionMask = attentionMask
        self.tokenTypeIds = tokenTypeIds ?? [Int32](repeating: 0, count: batchSize * seqLen)
        self.sampleIndices = sampleIndices
        precondition(self.tokenTypeIds.count == batchSize * seqLen && self.sampleIndices.count == batchSize)
    }
}

/// Parameter offsets of one encoder layer (same offsets index values and grads).
struct EncoderLayerParams {
    var wq, bq, wk, bk, wv, bv, wo, bo, ln1w, ln1b, w1, b1, w2, b2, ln2w, ln2b: Int
}

/// Saved activations of one encoder layer (shapes for the arena's capacity BTmax = maxBatch*maxSeq).
struct EncoderLayerActs {
    var q, k, v: UnsafeMutablePointer<Float>        // [BT, C]
    var probs: UnsafeMutablePointer<Float>          // [B, NH, T, T]
    var ctx: UnsafeMutablePointer<Float>            // [BT, C] attention output before out-projection
    var h1: UnsafeMutablePointer<Float>             // [BT, C] x + dropout(proj): LN1 input
    var mean1, rstd1: UnsafeMutablePointer<Float>   // [BT]
    var y1: UnsafeMutablePointer<Float>             // [BT, C] LN1 output
    var f: UnsafeMutablePointer<Float>              // [BT, FF] pre-activation (becomes act'(f) during backward)
    var h2: UnsafeMutablePointer<Float>             // [BT, C] y1 + dropout(ffn out): LN2 input
    var mean2, rstd2: UnsafeMutablePointer<Float>   // [BT]
    var y2: UnsafeMutablePointer<Float>             // [BT, C] layer output
}

public final class EncoderClassifier {
    public let config: ModelConfig
    public let parameters: ParameterStore
    public let maxBatch: Int
    public let maxSeq: Int
    /// Number format of the Linear products behind linearForward/linearBackward (the six per encoder layer, forward and
    /// backward, and the head's backward); attention's per-head products and the head's forward stay fp32.
    /// Choose `.bf16` only when `MatmulPrecision.bf16Supported` (elsewhere it silently computes in fp32).
    public var matmulPrecision: MatmulPrecision = .fp32
    let C: Int, NH: Int, FF: Int, NL: Int
    let isBert: Bool
    let actCode: Int32

    // parameter offsets
    let wte: Int, wpe: Int, tte: Int?, lnEw: Int, lnEb: Int
    let layers: [EncoderLayerParams]
    /// BERT: pooler (wp, bp); DistilBERT: pre_classifier (-1 under a token head, which has neither). Then the classifier.
    let wp: Int, bp: Int, wc: Int, bc: Int
    /// Token head (TokenClassifierHead.swift): its input after dropout [BT, C] and its logits [BT, NL] (1-float stubs
    /// under the sequence head).
    let tokDrop, tokLogits: UnsafeMutablePointer<Float>

    // arena
    private let arena = ActivationArena()
    public private(set) var activationBytes: Int = 0
    let keyMask: UnsafeMutablePointer<Float>       // [BT]
    let embSum: UnsafeMutablePointer<Float>        // [BT, C] LN input
    let meanE, rstdE: UnsafeMutablePointer<Float>  // [BT]
    let hidden0: UnsafeMutablePointer<Float>       // [BT, C] embeddings output (after LN, dropout)
    let acts: [EncoderLayerActs]
    let ffScratch: UnsafeMutablePointer<Float>     // [BT, FF] activation output (fwd), its gradient (bwd)
    let dA, dB, dDrop, dq, dk, dv, dCtx: UnsafeMutablePointer<Float>   // [BT, C] backward buffers
    let attnScratchP, attnScratchDP, attnScratchS: UnsafeMutablePointer<Float>   // [maxSeq²]; S: probs of a frozen base
    let attnThreads: AttentionScratch   // [maxSeq²] ×3 per pool thread, mapped when the attention loops are split
    let cls, pooled, pooledDrop, logits: UnsafeMutablePointer<Float>   // head: [B, C] ×3, [B, NL]
    let dHead1, dHead2, dCls: UnsafeMutablePointer<Float>             // [B, C]
    let lnSink: UnsafeMutablePointer<Float>                            // [2C] LayerNorm dw/db of a frozen base (discarded)
    // First-token rows of a sequence head's last layer (forward and backward): [B, C] / [B, FF] / [B] gathers and results
    let cDy, cH2, cH1, cOutA, cOutCtx, cF, cM2, cR2, cM1, cR1, cCtx, cY1, cXq, cQ: UnsafeMutablePointer<Float>

    /// The attached LoRA adapter (LoRA.swift), nil for the plain model: its hooks run at each target linear, and the
    /// modules_to_save tensors are read from (and their gradients written to) its trainable store.
    public internal(set) var adapter: LoRAAdapter?
    /// Frozen base: no gradient is computed for base parameters (dW/db products, LayerNorm and embedding gradients are
    /// skipped); input gradients still flow to the adapters.
    public internal(set) var frozenBase = false
    /// Keep no per-layer attention probabilities: forward computes each (b, h) in a [T, T] scratch and backward
    /// recomputes it right before use (bit-identical Q Kᵀ + masked softmax + the keyed dropout mask). Costs ~1 % of
    /// the step's FLOPs and saves B·NH·T² floats per layer (151 MB at MiniLM 32×128; 2.4 GB at 32×512). On by
    /// default; when on, the per-layer probability buffers are not even allocated (nor counted in activationBytes).
    public let recomputesAttention: Bool
    private var recompute: Bool { frozenBase || recomputesAttention }

    /// Called during backward with layer l as soon as layer l's parameter gradients are final (last layer first), so
    /// the trainer can all-reduce them while they are in cache. Nil: no calls.
    public var onLayerBackward: ((Int) -> Void)?
    /// Debug probe (`--debug`): called with a stage name and its values after the embeddings, each layer and the head
    /// in forward (outputs), and after the head and each layer in backward (the gradient flowing out of it), so the
    /// first non-finite value can be traced to its layer. Nil: no calls and no cost.
    public var probe: ((String, UnsafeBufferPointer<Float>) -> Void)?

    /// Layer names as in the checkpoint (bert.encoder.layer.N / distilbert.transformer.layer.N), for the probe.
    private func layerName(_ l: Int) -> String { isBert ? "bert.encoder.layer.\(l)" : "distilbert.transformer.layer.\(l)" }

    // the last forward
    private var lastB = 0, lastT = 0
    private var lastBatch: TokenBatch?
    private var lastDropout: DropoutContext?
    private var nValid: [Int] = []
    private var backwardDone = true

    /// The parameter layout with Hugging Face names, in named_parameters() order.
    public static func makeLayout(config: ModelConfig) -> ParameterLayout {
        precondition(config.numLabels > 0, "config has no labels: set id2label or num_labels")
        var L = ParameterLayout()
        let C = config.hidden, FF = config.intermediate, NL = config.numLabels
        switch config.family {
        case .bert:
            L.add("bert.embeddings.word_embeddings.weight", [config.vocabSize, C])
            L.add("bert.embeddings.position_embeddings.weight", [config.maxPositions, C])
            L.add("bert.embeddings.token_type_embeddings.weight", [config.typeVocabSize, C])
            L.add("bert.embeddings.LayerNorm.weight", [C])
            L.add("bert.embeddings.LayerNorm.bias", [C])
            for l in 0..<config.layers {
                let p = "bert.encoder.layer.\(l)."
                for n in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
                    L.add(p + n + ".weight", [C, C]); L.add(p + n + ".bias", [C])
                }
                L.add(p + "attention.output.LayerNorm.weight", [C]); L.add(p + "attention.output.LayerNorm.bias", [C])
                L.add(p + "intermediate.dense.weight", [FF, C]); L.add(p + "intermediate.dense.bias", [FF])
                L.add(p + "output.dense.weight", [C, FF]); L.add(p + "output.dense.bias", [C])
                L.add(p + "output.LayerNorm.weight", [C]); L.add(p + "output.LayerNorm.bias", [C])
            }
            if config.head == .sequence { L.add("bert.pooler.dense.weight", [C, C]); L.add("bert.pooler.dense.bias", [C]) }
        case .distilbert:
            L.add("distilbert.embeddings.word_embeddings.weight", [config.vocabSize, C])
            L.add("distilbert.embeddings.position_embeddings.weight", [config.maxPositions, C])
            L.add("distilbert.embeddings.LayerNorm.weight", [C])
            L.add("distilbert.embeddings.LayerNorm.bias", [C])
            for l in 0..<config.layers {
                let p = "distilbert.transformer.layer.\(l)."
                for n in ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin"] {
                    L.add(p + n + ".weight", [C, C]); L.add(p + n + ".bias", [C])
                }
                L.add(p + "sa_layer_norm.weight", [C]); L.add(p + "sa_layer_norm.bias", [C])
                L.add(p + "ffn.lin1.weight", [FF, C]); L.add(p + "ffn.lin1.bias", [FF])
                L.add(p + "ffn.lin2.weight", [C, FF]); L.add(p + "ffn.lin2.bias", [C])
                L.add(p + "output_layer_norm.weight", [C]); L.add(p + "output_layer_norm.bias", [C])
            }
            if config.head == .sequence { L.add("pre_classifier.weight", [C, C]); L.add("pre_classifier.bias", [C]) }
        }
        L.add(config.head.module + ".weight", [NL, C]); L.add(config.head.module + ".bias", [NL])
        return L
    }

    public init(config: ModelConfig, parameters: ParameterStore, maxBatch: Int, maxSeq: Int, recomputeAttention: Bool = true) {
        recomputesAttention = recomputeAttention
        precondition(maxSeq <= config.maxPositions, "maxSeq \(maxSeq) exceeds max_position_embeddings \(config.maxPositions)")
        precondition(maxBatch > 0 && maxSeq > 0)
        self.config = config
        self.parameters = parameters
        self.maxBatch = maxBatch
        self.maxSeq = maxSeq
        C = config.hidden; NH = config.heads; FF = config.intermediate; NL = config.numLabels
        isBert = config.family == .bert
        switch config.activation { case .gelu: actCode = 0; case .geluNew: actCode = 1; case .relu: actCode = 2 }
        let lay = parameters.layout
        func off(_ n: String) -> Int {
            guard let e = lay.entry(n) else { preconditionFailure("parameter store lacks \(n); build it from EncoderClassifier.makeLayout") }
            return e.offset
        }
        if isBert {
            wte = off("bert.embeddings.word_embeddings.weight"); wpe = off("bert.embeddings.position_embeddings.weight")
            tte = off("bert.embeddings.token_type_embeddings.weight")
            lnEw = off("bert.embeddings.LayerNorm.weight"); lnEb = off("bert.embeddings.LayerNorm.bias")
            layers = (0..<config.layers).map { l in
                let p = "bert.encoder.layer.\(l)."
                return EncoderLayerParams(
                    wq: off(p + "attention.self.query.weight"), bq: off(p + "attention.self.query.bias"),
                    wk: off(p + "attention.self.key.weight"), bk: off(p + "attention.self.key.bias"),
                    wv: off(p + "attention.self.value.weight"), bv: off(p + "attention.self.value.bias"),
                    wo: off(p + "attention.output.dense.weight"), bo: off(p + "attention.output.dense.bias"),
                    ln1w: off(p + "attention.output.LayerNorm.weight"), ln1b: off(p + "attention.output.LayerNorm.bias"),
                    w1: off(p + "intermediate.dense.weight"), b1: off(p + "intermediate.dense.bias"),
                    w2: off(p + "output.dense.weight"), b2: off(p + "output.dense.bias"),
                    ln2w: off(p + "output.LayerNorm.weight"), ln2b: off(p + "output.LayerNorm.bias"))
            }
            (wp, bp) = config.head.perToken ? (-1, -1) : (off("bert.pooler.dense.weight"), off("bert.pooler.dense.bias"))
        } else {
            wte = off("distilbert.embeddings.word_embeddings.weight"); wpe = off("distilbert.embeddings.position_embeddings.weight")
            tte = nil
            lnEw = off("distilbert.embeddings.LayerNorm.weight"); lnEb = off("distilbert.embeddings.LayerNorm.bias")
            layers = (0..<config.layers).map { l in
                let p = "distilbert.transformer.layer.\(l)."
                return EncoderLayerParams(
                    wq: off(p + "attention.q_lin.weight"), bq: off(p + "attention.q_lin.bias"),
                    wk: off(p + "attention.k_lin.weight"), bk: off(p + "attention.k_lin.bias"),
                    wv: off(p + "attention.v_lin.weight"), bv: off(p + "attention.v_lin.bias"),
                    wo: off(p + "attention.out_lin.weight"), bo: off(p + "attention.out_lin.bias"),
                    ln1w: off(p + "sa_layer_norm.weight"), ln1b: off(p + "sa_layer_norm.bias"),
                    w1: off(p + "ffn.lin1.weight"), b1: off(p + "ffn.lin1.bias"),
                    w2: off(p + "ffn.lin2.weight"), b2: off(p + "ffn.lin2.bias"),
                    ln2w: off(p + "output_layer_norm.weight"), ln2b: off(p + "output_layer_norm.bias"))
            }
            (wp, bp) = config.head.perToken ? (-1, -1) : (off("pre_classifier.weight"), off("pre_classifier.bias"))
        }
        wc = off(config.head.module + ".weight"); bc = off(config.head.module + ".bias")

        // ---- the arena: every activation buffer, once (64-byte aligned, zeroed) ----
        let BT = maxBatch * maxSeq
        let arena = self.arena
        func buf(_ n: Int) -> UnsafeMutablePointer<Float> { arena.floats(n) }
        keyMask = buf(BT)
        embSum = buf(BT * C); meanE = buf(BT); rstdE = buf(BT); hidden0 = buf(BT * C)
        var a: [EncoderLayerActs] = []
        for _ in 0..<config.layers {
            a.append(EncoderLayerActs(q: buf(BT * C), k: buf(BT * C), v: buf(BT * C),
                                      probs: buf(recomputeAttention ? 1 : maxBatch * NH * maxSeq * maxSeq), ctx: buf(BT * C),
                                      h1: buf(BT * C), mean1: buf(BT), rstd1: buf(BT), y1: buf(BT * C),
                                      f: buf(BT * FF), h2: buf(BT * C), mean2: buf(BT), rstd2: buf(BT), y2: buf(BT * C)))
        }
        acts = a
        ffScratch = buf(BT * FF)
        dA = buf(BT * C); dB = buf(BT * C); dDrop = buf(BT * C)
        dq = buf(BT * C); dk = buf(BT * C); dv = buf(BT * C); dCtx = buf(BT * C)
        attnScratchP = buf(maxSeq * maxSeq); attnScratchDP = buf(maxSeq * maxSeq); attnScratchS = buf(maxSeq * maxSeq)
        attnThreads = AttentionScratch(arena: arena, floats: maxSeq * maxSeq, perThread: 3)
        cls = buf(maxBatch * C); pooled = buf(maxBatch * C); pooledDrop = buf(maxBatch * C); logits = buf(maxBatch * NL)
        dHead1 = buf(maxBatch * C); dHead2 = buf(maxBatch * C); dCls = buf(maxBatch * C)
        lnSink = buf(2 * C)
        tokDrop = buf(config.head.perToken ? BT * C : 1); tokLogits = buf(config.head.perToken ? BT * NL : 1)
        cDy = buf(maxBatch * C); cH2 = buf(maxBatch * C); cH1 = buf(maxBatch * C); cOutA = buf(maxBatch * C)
        cOutCtx = buf(maxBatch * C); cF = buf(maxBatch * FF); cCtx = buf(maxBatch * C); cY1 = buf(maxBatch * C)
        cXq = buf(maxBatch * C); cQ = buf(maxBatch * C)
        cM2 = buf(maxBatch); cR2 = buf(maxBatch); cM1 = buf(maxBatch); cR1 = buf(maxBatch)
        activationBytes = arena.bytes
        nValid = [Int](repeating: 0, count: maxBatch)
    }


    /// Weight reads, gradient writes and the LoRA hooks (LoRARoute, shared with GPT-2).
    @inline(__always) private var route: LoRARoute {
        LoRARoute(parameters: parameters, adapter: adapter, frozenBase: frozenBase, lnSink: lnSink, C: C)
    }
    @inline(__always) func P(_ off: Int) -> UnsafeMutablePointer<Float> { route.value(off) }
    @inline(__always) private func G(_ off: Int) -> UnsafeMutablePointer<Float> { route.grad(off) }
    /// LayerNorm parameter gradient: a discarded sink when the base is frozen ([C] at 0 for dw, at C for db).
    @inline(__always) private func GLN(_ off: Int, _ half: Int) -> UnsafeMutablePointer<Float> { route.layerNormGrad(off, half) }
    /// The batch as a LoRA hook over `n` rows sees it: B·T rows, or B (one per sample: the last layer's first tokens).
    private func step(rows n: Int) -> LoRAStep {
        LoRAStep(B: lastB, T: n == lastB ? 1 : lastT, dropout: lastDropout, samples: lastBatch!.sampleIndices)
    }

    /// A linear layer's forward plus, at a LoRA target `site` (layer·6 + module), the adapter's update.
    func linearForward(_ site: Int?, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: Int, b: Int,
                               n: Int, inC: Int, outC: Int) {
        Linear.forward(y: y, x: x, w: P(w), b: P(b), n: n, inC: inC, outC: outC, precision: matmulPrecision)
        if site != nil && adapter != nil { route.forward(site: site, y: y, x: x, step: step(rows: n)) }
    }

    /// A linear layer's backward: the adapter's dA/dB first (x may be overwritten by dx), dW/db only for trainable
    /// weights, then the adapter's share of dx.
    func linearBackward(_ site: Int?, dx: UnsafeMutablePointer<Float>?, w: Int, b: Int, dy: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, n: Int, inC: Int, outC: Int, accumulateDx: Bool = false) {
        let precision = matmulPrecision
        route.backward(site: site, w: w, dx: dx, dy: dy, x: x, step: adapter == nil ? LoRAStep(B: 0, T: 0, dropout: nil, samples: []) : step(rows: n),
                       full: {
            Linear.backward(dx: dx, dw: G(w), db: G(b), dy: dy, x: x, w: P(w), n: n, inC: inC, outC: outC, accumulateDx: accumulateDx,
                            precision: precision)
        }, inputOnly: { dx in
            Linear.backwardInput(dx: dx, dy: dy, w: P(w), n: n, inC: inC, outC: outC, accumulateDx: accumulateDx, precision: precision)
        })
    }

    private var hiddenDropout: Float { config.hiddenDropout }

    /// Whether backward needs the input of linear `site` (layer·6 + module) kept: for its dW, or for a LoRA adapter
    /// there. A frozen base needs neither at an un-adapted linear.
    private func keepsInput(_ site: Int) -> Bool { !frozenBase || (adapter?.hasSite(site) ?? false) }

    /// The last layer under a sequence head (it reads each row's first token only): after the attention, the layer
    /// runs forward and backward on those B rows (see forward and backward), unless `lastLayerAllRows`.
    private func clsRowsSuffice(_ l: Int) -> Bool {
        config.head == .sequence && l == layers.count - 1 && !lastLayerAllRows
    }

    /// Compute every row of the last layer under a sequence head, as transformers does (tests compare every hidden
    /// state). Off (the default), the layer's query, attention, output projection, FFN and LayerNorms run on the
    /// first token of each row only (keys and values on every row): the head reads nothing else, so the logits, the
    /// loss and every gradient are the same (those ops are row-wise, and the other rows' gradient is zero): 13.7 %
    /// of MiniLM's FLOPs per step at 32×128.
    public var lastLayerAllRows = false

    /// Layer l's activation buffers for this run. Under a frozen base, ctx (the attention output, input of the output
    /// projection) and y1 (LN1 output, input of the FFN) are needed only within the layer's forward unless a LoRA
    /// target reads them in backward; then they go to backward buffers that forward does not otherwise use (dCtx, dDrop),
    /// and the layer's own pages are never touched (never resident): 2·L·BT·C floats less, 75 MB for MiniLM at 32×128.
    /// The attention probabilities are not kept at all: forward computes each (b, h)'s in a [T, T] scratch, backward
    /// recomputes them there right before use (one Q Kᵀ product per layer, in cache): L·B·NH·T² floats less, 151 MB
    /// for MiniLM at 32×128.
    private func savedActs(_ l: Int) -> EncoderLayerActs {
        var s = acts[l]
        if !keepsInput(6 * l + 3) { s.ctx = dCtx }
        if !keepsInput(6 * l + 4) { s.y1 = dDrop }
        return s
    }

    /// Row t = 0 of each of the B samples of `src` [B·T, C] into `dst` [B, C], compactly.
    private func firstTokens(of src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, B: Int, T: Int) {
        for b in 0..<B { (dst + b * C).update(from: src + b * T * C, count: C) }
    }

    /// Logits [B, numLabels] (a view into the arena, valid until the next forward).
    public func forward(_ batch: TokenBatch, dropout: DropoutContext?) -> UnsafeBufferPointer<Float> {
        let B = batch.batchSize, T = batch.seqLen
        precondition(B <= maxBatch && T <= maxSeq, "batch \(B)×\(T) exceeds the arena's \(maxBatch)×\(maxSeq)")
        let BT = B * T
        lastB = B; lastT = T; lastBatch = batch; lastDropout = dropout; backwardDone = false
        let samples = batch.sampleIndices
        for b in 0..<B { nValid[b] = 0 }   // sized maxBatch at init: no allocation here
        for i in 0..<BT {
            let m: Float = batch.attentionMask[i] != 0 ? 1 : 0
            keyMask[i] = m
            if m != 0 { nValid[i / T] += 1 }
        }
        for id in batch.inputIds { precondition(id >= 0 && Int(id) < config.vocabSize, "token id \(id) outside the vocabulary") }
        if isBert {
            for t in batch.tokenTypeIds {
                precondition(t >= 0 && Int(t) < config.typeVocabSize, "token type id \(t) outside type_vocab_size \(config.typeVocabSize)")
            }
        }
        let pHidden = config.hiddenDropout, pAttn = config.attentionDropout
        let dropH = dropout != nil && pHidden > 0
        // embeddings → LayerNorm → dropout
        Embeddings.forward(out: embSum, ids: batch.inputIds, types: isBert ? batch.tokenTypeIds : nil,
                           wte: P(wte), wpe: P(wpe), tte: tte.map { UnsafePointer(P($0)) }, B: B, T: T, C: C)
        LayerNorm.forward(y: hidden0, mean: meanE, rstd: rstdE, x: embSum, w: P(lnEw), b: P(lnEb), n: BT, C: C,
                          eps: config.layerNormEps)
        if dropH, let d = dropout {
            dropoutRows(hidden0, hidden0, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.embeddings, p: pHidden)
        }
        probe?("output of " + (isBert ? "bert" : "distilbert") + ".embeddings", UnsafeBufferPointer(start: hidden0, count: BT * C))
        var x = UnsafePointer(hidden0)
        for (l, w) in layers.enumerated() {
            let s = savedActs(l)
            let firstOnly = clsRowsSuffice(l)
            if firstOnly {   // only the first token of each row queries: its layer input kept (cXq) for dWq
                firstTokens(of: x, into: cXq, B: B, T: T)
                linearForward(6 * l, y: cQ, x: cXq, w: w.wq, b: w.bq, n: B, inC: C, outC: C)
                for b in 0..<B { (s.q + b * T * C).update(from: cQ + b * C, count: C) }
            } else {
                linearForward(6 * l, y: s.q, x: x, w: w.wq, b: w.bq, n: BT, inC: C, outC: C)
            }
            linearForward(6 * l + 1, y: s.k, x: x, w: w.wk, b: w.bk, n: BT, inC: C, outC: C)
            linearForward(6 * l + 2, y: s.v, x: x, w: w.wv, b: w.bv, n: BT, inC: C, outC: C)
            let ad = (dropout != nil && pAttn > 0)
                ? AttentionDropout(ctx: dropout!, samples: samples, site: DropoutSite.attentionProbs(layer: l), p: pAttn) : nil
            Attention.forward(ctx: s.ctx, probs: recompute ? attnScratchS : s.probs, q: s.q, k: s.k, v: s.v, keyMask: keyMask,
                              nValid: nValid, B: B, T: T, C: C, NH: NH, dropout: ad, scratch: attnScratchP, keepProbs: !recompute,
                              threadScratch: attnThreads, queries: firstOnly ? 1 : nil)
            if firstOnly {
                // The head reads only each sample's first token: the rest of the last layer runs on those B rows,
                // gathered compactly (the buffers its backward reads); the full-size h1/f/h2 of this layer are never
                // touched, so never resident (37 MB less at MiniLM 32×128).
                // cXq holds the layer input's first tokens (the residual); cCtx and cY1 are kept for backward's dW;
                // cOutA is free until backward overwrites it and takes LN2's output.
                firstTokens(of: s.ctx, into: cCtx, B: B, T: T)
                linearForward(6 * l + 3, y: cH1, x: cCtx, w: w.wo, b: w.bo, n: B, inC: C, outC: C)
                if isBert && dropH, let d = dropout {
                    dropoutRows(cH1, cH1, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.attentionOutput(layer: l), p: pHidden)
                }
                ck_p_add(ComputeThreads.pool, cH1, cXq, B * C)
                LayerNorm.forward(y: cY1, mean: cM1, rstd: cR1, x: cH1, w: P(w.ln1w), b: P(w.ln1b), n: B, C: C, eps: config.layerNormEps)
                linearForward(6 * l + 4, y: cF, x: cY1, w: w.w1, b: w.b1, n: B, inC: C, outC: FF)
                ck_p_act_fwd(ComputeThreads.pool, actCode, cF, ffScratch, B * FF)
                linearForward(6 * l + 5, y: cH2, x: ffScratch, w: w.w2, b: w.b2, n: B, inC: FF, outC: C)
                if dropH, let d = dropout {
                    dropoutRows(cH2, cH2, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.ffnOutput(layer: l), p: pHidden)
                }
                ck_p_add(ComputeThreads.pool, cH2, cY1, B * C)
                // LN2 of the CLS rows straight into their places in y2 (the only rows the head reads).
                LayerNorm.forward(y: cOutA, mean: cM2, rstd: cR2, x: cH2, w: P(w.ln2w), b: P(w.ln2b), n: B, C: C, eps: config.layerNormEps)
                for b in 0..<B { (s.y2 + b * T * C).update(from: cOutA + b * C, count: C) }
                x = UnsafePointer(s.y2)
                probe?("output of " + layerName(l) + " (first token of each row)", UnsafeBufferPointer(start: cOutA, count: B * C))
                continue
            }
            linearForward(6 * l + 3, y: s.h1, x: s.ctx, w: w.wo, b: w.bo, n: BT, inC: C, outC: C)
            if isBert && dropH, let d = dropout {   // DistilBERT has no dropout after out_lin
                dropoutRows(s.h1, s.h1, B: B, T: T, C: C, ctx: d, samples: samples,
                            site: DropoutSite.attentionOutput(layer: l), p: pHidden)
            }
            ck_p_add(ComputeThreads.pool, s.h1, x, BT * C)
            LayerNorm.forward(y: s.y1, mean: s.mean1, rstd: s.rstd1, x: s.h1, w: P(w.ln1w), b: P(w.ln1b), n: BT, C: C,
                              eps: config.layerNormEps)
            linearForward(6 * l + 4, y: s.f, x: s.y1, w: w.w1, b: w.b1, n: BT, inC: C, outC: FF)
            ck_p_act_fwd(ComputeThreads.pool, actCode, s.f, ffScratch, BT * FF)
            linearForward(6 * l + 5, y: s.h2, x: ffScratch, w: w.w2, b: w.b2, n: BT, inC: FF, outC: C)
            if dropH, let d = dropout {
                dropoutRows(s.h2, s.h2, B: B, T: T, C: C, ctx: d, samples: samples,
                            site: DropoutSite.ffnOutput(layer: l), p: pHidden)
            }
            ck_p_add(ComputeThreads.pool, s.h2, s.y1, BT * C)
            LayerNorm.forward(y: s.y2, mean: s.mean2, rstd: s.rstd2, x: s.h2, w: P(w.ln2w), b: P(w.ln2b), n: BT, C: C,
                              eps: config.layerNormEps)
            x = UnsafePointer(s.y2)
            probe?("output of " + layerName(l), UnsafeBufferPointer(start: s.y2, count: BT * C))
        }
        if config.head.perToken { return tokenHeadForward(x, B: B, T: T, dropout: dropout, samples: samples) }
        // head on the first token of every row
        firstTokens(of: x, into: cls, B: B, T: T)
        Linear.forward(y: pooled, x: cls, w: P(wp), b: P(bp), n: B, inC: C, outC: C)
        if isBert { ck_tanh(pooled, pooled, B * C) } else { ck_p_act_fwd(ComputeThreads.pool, 2, pooled, pooled, B * C) }
        var head = UnsafePointer(pooled)
        if let d = dropout, config.classifierDropout > 0 {
            dropoutRows(pooled, pooledDrop, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.classifier,
                        p: config.classifierDropout)
            head = UnsafePointer(pooledDrop)
        }
        Linear.forward(y: logits, x: head, w: P(wc), b: P(bc), n: B, inC: C, outC: NL)
        probe?(isBert ? "logits of bert.pooler + classifier" : "logits of pre_classifier + classifier",
               UnsafeBufferPointer(start: logits, count: B * NL))
        return UnsafeBufferPointer(start: logits, count: B * NL)
    }

    /// Accumulates every parameter gradient for the last forward, given dLoss/dLogits [B, numLabels].
    /// Once per forward: it consumes saved activations (the FFN pre-activation becomes its derivative).
    public func backward(dLogits: UnsafeBufferPointer<Float>) {
        precondition(!backwardDone, "backward called twice for one forward (or before any forward)")
        backwardDone = true
        guard let batch = lastBatch else { return }
        let B = lastB, T = lastT, BT = B * T
        precondition(dLogits.count >= B * NL)
        let dropout = lastDropout, samples = batch.sampleIndices
        let pHidden = config.hiddenDropout, pAttn = config.attentionDropout
        let dropH = dropout != nil && pHidden > 0
        let dl = dLogits.baseAddress!
        if config.head.perToken {
            precondition(dLogits.count >= BT * NL)
            tokenHeadBackward(dl, B: B, T: T, dropout: dropout, samples: samples)   // writes dA
        } else {
            // head
            let head: UnsafePointer<Float> = (dropout != nil && config.classifierDropout > 0) ? UnsafePointer(pooledDrop) : UnsafePointer(pooled)
            linearBackward(nil, dx: dHead1, w: wc, b: bc, dy: dl, x: head, n: B, inC: C, outC: NL)
            if let d = dropout, config.classifierDropout > 0 {
                dropoutRows(dHead1, dHead1, B: B, T: 1, C: C, ctx: d, samples: samples, site: DropoutSite.classifier,
                            p: config.classifierDropout)
            }
            if isBert { ck_tanh_bwd_inplace(pooled, dHead1, B * C) } else { ck_p_act_bwd_inplace(ComputeThreads.pool, 2, pooled, dHead1, B * C) }
            linearBackward(nil, dx: dCls, w: wp, b: bp, dy: dHead1, x: cls, n: B, inC: C, outC: C)
            dA.update(repeating: 0, count: BT * C)
            for b in 0..<B { (dA + b * T * C).update(from: dCls + b * C, count: C) }
            probe?("gradient out of the classifier head (backward)", UnsafeBufferPointer(start: dCls, count: B * C))
        }
        // layers, last to first; dA holds dLoss/d(layer output)
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let w = layers[l], s = savedActs(l)
            let x = l == 0 ? UnsafePointer(hidden0) : UnsafePointer(acts[l - 1].y2)
            // LN2 → FFN → LN1 → out-projection backward over n rows of T' per sample (full: BT rows, T' = T; or the
            // CLS rows only, T' = 1, gathered compactly, y1 and ctx then the compact copies forward kept). dyIn and
            // outA may alias; y1 and ctx are read only when kept (dW or an adapter).
            func tail(dyIn: UnsafePointer<Float>, h2: UnsafePointer<Float>, mean2: UnsafePointer<Float>, rstd2: UnsafePointer<Float>,
                      f: UnsafeMutablePointer<Float>, h1: UnsafePointer<Float>, mean1: UnsafePointer<Float>, rstd1: UnsafePointer<Float>,
                      y1: UnsafePointer<Float>, ctx: UnsafePointer<Float>,
                      outA: UnsafeMutablePointer<Float>, outCtx: UnsafeMutablePointer<Float>, n: Int, TT: Int) {
                LayerNorm.backward(dx: dB, dw: GLN(w.ln2w, 0), db: GLN(w.ln2b, 1), dy: dyIn, x: h2, mean: mean2, rstd: rstd2,
                                   w: P(w.ln2w), n: n, C: C)
                var dOut = UnsafePointer(dB)                   // dB = dL/dh2 = dL/dy1 (residual part)
                if dropH, let d = dropout {
                    dropoutRows(dB, dDrop, B: B, T: TT, C: C, ctx: d, samples: samples, site: DropoutSite.ffnOutput(layer: l), p: pHidden)
                    dOut = UnsafePointer(dDrop)
                }
                if keepsInput(6 * l + 5) {
                    // recompute act(f) into ffScratch for dW2 (or the adapter) and turn f into act'(f) in one pass
                    ck_p_act_fwd_grad(ComputeThreads.pool, actCode, f, ffScratch, n * FF)
                    // dW2 is formed before dx is written, so dx may alias x (ffScratch) here
                    linearBackward(6 * l + 5, dx: ffScratch, w: w.w2, b: w.b2, dy: dOut, x: ffScratch, n: n, inC: FF, outC: C)
                    ck_p_mul(ComputeThreads.pool, ffScratch, f, n * FF)            // dF = dAct ⊙ act'(f)
                } else {   // frozen, not adapted: act(f) is not needed, only dF = dAct ⊙ act'(f)
                    linearBackward(6 * l + 5, dx: ffScratch, w: w.w2, b: w.b2, dy: dOut, x: ffScratch, n: n, inC: FF, outC: C)
                    ck_p_act_bwd_inplace(ComputeThreads.pool, actCode, f, ffScratch, n * FF)
                }
                linearBackward(6 * l + 4, dx: dB, w: w.w1, b: w.b1, dy: ffScratch, x: y1, n: n, inC: C, outC: FF,
                               accumulateDx: true)
                LayerNorm.backward(dx: outA, dw: GLN(w.ln1w, 0), db: GLN(w.ln1b, 1), dy: dB, x: h1, mean: mean1, rstd: rstd1,
                                   w: P(w.ln1w), n: n, C: C)   // dA = dL/dh1 = dL/dx (residual part)
                var dProj = UnsafePointer(outA)
                if isBert && dropH, let d = dropout {
                    dropoutRows(outA, dDrop, B: B, T: TT, C: C, ctx: d, samples: samples,
                                site: DropoutSite.attentionOutput(layer: l), p: pHidden)
                    dProj = UnsafePointer(dDrop)
                }
                linearBackward(6 * l + 3, dx: outCtx, w: w.wo, b: w.bo, dy: dProj, x: ctx, n: n, inC: C, outC: C)
            }
            if clsRowsSuffice(l) {
                // The head reads only each row's first token, so dLoss/d(last layer output) is zero elsewhere: the
                // backward of LN2 → FFN → LN1 → out-projection, their weight gradients included, is needed only on
                // those B rows (exact: the other rows carry zeros through the row-wise ops and add nothing to dW).
                // The attention then spreads the gradient to every row again.
                // Forward left h2, f, h1, the LayerNorm statistics, y1 and ctx of the CLS rows compact in cH2 … cY1.
                firstTokens(of: dA, into: cDy, B: B, T: T)
                tail(dyIn: cDy, h2: cH2, mean2: cM2, rstd2: cR2, f: cF, h1: cH1, mean1: cM1, rstd1: cR1,
                     y1: cY1, ctx: cCtx, outA: cOutA, outCtx: cOutCtx, n: B, TT: 1)
                dA.update(repeating: 0, count: BT * C)   // the attention reads dCtx on the first rows only
                for b in 0..<B {
                    (dA + b * T * C).update(from: cOutA + b * C, count: C)
                    (dCtx + b * T * C).update(from: cOutCtx + b * C, count: C)
                }
            } else {
                tail(dyIn: dA, h2: s.h2, mean2: s.mean2, rstd2: s.rstd2, f: s.f, h1: s.h1, mean1: s.mean1, rstd1: s.rstd1,
                     y1: s.y1, ctx: s.ctx, outA: dA, outCtx: dCtx, n: BT, TT: T)
            }
            let ad = (dropout != nil && pAttn > 0)
                ? AttentionDropout(ctx: dropout!, samples: samples, site: DropoutSite.attentionProbs(layer: l), p: pAttn) : nil
            Attention.backward(dq: dq, dk: dk, dv: dv, dctx: dCtx, probs: s.probs, q: s.q, k: s.k, v: s.v,
                               B: B, T: T, C: C, NH: NH, dropout: ad, scratchP: attnScratchP, scratchDP: attnScratchDP,
                               recompute: recompute ? (attnScratchS, UnsafePointer(keyMask), nValid) : nil,
                               threadScratch: attnThreads, queries: clsRowsSuffice(l) ? 1 : nil)
            let dxQKV = frozenBase && l == 0 ? nil : dA   // a frozen base needs no gradient below layer 0
            if clsRowsSuffice(l) {   // dq exists on the first rows only: the query product's backward on those B rows
                firstTokens(of: dq, into: cDy, B: B, T: T)
                linearBackward(6 * l, dx: dxQKV == nil ? nil : cOutCtx, w: w.wq, b: w.bq, dy: cDy, x: cXq, n: B, inC: C, outC: C)
                if dxQKV != nil {
                    for b in 0..<B { ck_add(dA + b * T * C, cOutCtx + b * C, C) }
                }
            } else {
                linearBackward(6 * l, dx: dxQKV, w: w.wq, b: w.bq, dy: dq, x: x, n: BT, inC: C, outC: C, accumulateDx: true)
            }
            linearBackward(6 * l + 1, dx: dxQKV, w: w.wk, b: w.bk, dy: dk, x: x, n: BT, inC: C, outC: C, accumulateDx: true)
            linearBackward(6 * l + 2, dx: dxQKV, w: w.wv, b: w.bv, dy: dv, x: x, n: BT, inC: C, outC: C, accumulateDx: true)
            if let probe, dxQKV != nil { probe("gradient into the input of \(layerName(l)) (backward)", UnsafeBufferPointer(start: dA, count: BT * C)) }
            onLayerBackward?(l)
        }
        if frozenBase { return }   // the embeddings' gradients are all the rest computes
        // embeddings: dropout → LayerNorm → scatter
        if dropH, let d = dropout {
            dropoutRows(dA, dA, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.embeddings, p: pHidden)
        }
        LayerNorm.backward(dx: dB, dw: G(lnEw), db: G(lnEb), dy: dA, x: embSum, mean: meanE, rstd: rstdE, w: P(lnEw),
                           n: BT, C: C)
        Embeddings.backward(dout: dB, ids: batch.inputIds, types: isBert ? batch.tokenTypeIds : nil,
                            dwte: G(wte), dwpe: G(wpe), dtte: tte.map { G($0) }, B: B, T: T, C: C)
        // nn.Embedding(padding_idx=pad_token_id): the pad row never gets a gradient. It matters when padding positions
        // carry loss gradient (question answering's softmax runs over the padded length, as in transformers).
        if config.padTokenId >= 0 && config.padTokenId < config.vocabSize {
            (G(wte) + config.padTokenId * C).update(repeating: 0, count: C)
        }
    }

    /// Hidden states of the last forward: [0] embeddings output (after LayerNorm and dropout), then each layer; [B*T*C] each.
    /// Under a sequence head the last layer is computed on the first token of each row only (all the head reads;
    /// `lastLayerAllRows` turns that off), so only those rows of its entry are meaningful.
    public func hiddenStates() -> [[Float]] {
        let n = lastB * lastT * C
        var out = [Array(UnsafeBufferPointer(start: hidden0, count: n))]
        for s in acts { out.append(Array(UnsafeBufferPointer(start: s.y2, count: n))) }
        return out
    }
}
