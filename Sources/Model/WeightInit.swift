// WeightInit: a model's parameters initialised from its config alone, as transformers' `_init_weights` does when a
// model is built from a config (`GPT2LMHeadModel(config)`), so that `train --init-from-config` pre-trains from scratch.
//   GPT-2 (GPT2PreTrainedModel._init_weights, transformers 5.23): wte, wpe, every Conv1D weight and the classifier's
//     `score` N(0, initializer_range); the residual projections attn.c_proj and mlp.c_proj N(0, initializer_range /
//     sqrt(2·n_layer)); biases 0; LayerNorm weight 1, bias 0. The LM head is tied to wte (no tensor of its own).
//   BERT family (PreTrainedModel._init_weights): every Linear weight and embedding N(0, initializer_range), the
//     word-embedding row of pad_token_id 0 (nn.Embedding's padding_idx), biases 0, LayerNorm weight 1, bias 0.
// (`initializer_range` 0 means 0.02, as transformers reads it with `or 0.02`.)
// Random numbers: each tensor is cut into blocks of `blockSize` values; block k of tensor `name` draws from
// SplitMix64(keys: seed, fnv1a(name), k) through Box-Muller pairs. The bytes therefore depend only on (seed, name,
// shape, std) — not on the layout's order, on the thread count, or on whether the model is a classifier or an LM (a
// GPT-2 classifier's body equals the LM's for the same seed) — and blocks fill in parallel.
// Deliberately not here: matching PyTorch's own random stream (torch.manual_seed gives other numbers; the
// distributions match, which scripts/goldens/init_stats.py records and GPT2InitTests checks), loading weights
// (WeightLoading.swift), the decision to initialise (Training's ModelFolder).
import Dispatch
import Foundation
import SplitMix

/// How one tensor starts.
public enum InitRule: Equatable, Sendable {
    /// i.i.d. N(0, std²).
    case normal(std: Float)
    /// Every value `value` (biases 0, LayerNorm weights 1).
    case constant(Float)
}

public enum WeightInit {
    /// Values per independently seeded random stream.
    public static let blockSize = 1 << 16

    /// Fills every entry of `store` by `rule(entry)`; then zeroes row `zeroRows[name]` of the named tensors.
    public static func fill(_ store: ParameterStore, seed: UInt64, zeroRows: [String: Int] = [:],
                            rule: (ParameterEntry) -> InitRule) {
        // (offset into store.values, count, std, name key, block index): plain values, so the closure may share them.
        var jobs: [(offset: Int, count: Int, std: Float, key: UInt64, block: Int)] = []
        for e in store.entries {
            let v = store.value(e.name)
            switch rule(e) {
            case .constant(let c):
                v.update(repeating: c)
            case .normal(let std):
                let key = fnv1a(e.name)
                var k = 0, start = 0
                while start < v.count {
                    let n = min(blockSize, v.count - start)
                    jobs.append((e.offset + start, n, std, key, k))
                    start += n; k += 1
                }
            }
        }
        let work = jobs
        DispatchQueue.concurrentPerform(iterations: work.count) { i in
            let j = work[i]
            var rng = SplitMix64(keys: seed, j.key, UInt64(j.block))
            // Blocks are disjoint slices of the one value buffer.
            fillNormal(UnsafeMutableBufferPointer(rebasing: store.values[j.offset..<(j.offset + j.count)]), std: j.std, rng: &rng)
        }
        for (name, row) in zeroRows {
            guard let e = store.layout.entry(name), e.shape.count == 2, row >= 0, row < e.shape[0] else { continue }
            let cols = e.shape[1]
            store.value(name).baseAddress!.advanced(by: row * cols).update(repeating: 0, count: cols)
        }
    }

    /// `out` ← std · N(0, 1) by Box-Muller, both values of each pair used (u1 in (0, 1] so the log is finite).
    static func fillNormal(_ out: UnsafeMutableBufferPointer<Float>, std: Float, rng: inout SplitMix64) {
        let s = Double(std)
        var i = 0
        while i < out.count {
            let u1 = 1 - rng.nextUniform(), u2 = rng.nextUniform()
            let r = (-2 * Foundation.log(u1)).squareRoot() * s
            let t = 2 * Double.pi * u2
            out[i] = Float(r * Foundation.cos(t))
            if i + 1 < out.count { out[i + 1] = Float(r * Foundation.sin(t)) }
            i += 2
        }
    }

    /// 64-bit FNV-1a of the name's UTF-8 bytes (a stable key: Swift's `hashValue` is seeded per process).
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// transformers reads the range as `config.initializer_range or 0.02`.
    static func range(_ r: Float) -> Float { r == 0 ? 0.02 : r }
}

extension GPT2Layout {
    /// The rule GPT2PreTrainedModel._init_weights applies to the tensor `name` (see the file header).
    public static func initRule(_ e: ParameterEntry, config: GPT2Config) -> InitRule {
        let std = WeightInit.range(config.initializerRange)
        let n = e.name
        if n.hasSuffix(".bias") { return .constant(0) }
        if n.hasSuffix("ln_1.weight") || n.hasSuffix("ln_2.weight") || n.hasSuffix("ln_f.weight") { return .constant(1) }
        if n.hasSuffix("attn.c_proj.weight") || n.hasSuffix("mlp.c_proj.weight") {
            return .normal(std: std / Float(2 * config.layers).squareRoot())
        }
        return .normal(std: std)
    }

    /// A GPT-2 (LM, or with `classifier` a GPT2ForSequenceClassification with `score` for config.numLabels) whose
    /// every parameter is initialised from `seed` as transformers initialises a model built from its config.
    public static func initializedStore(config: GPT2Config, classifier: Bool, seed: UInt64) -> ParameterStore {
        let store = ParameterStore(layout: make(config: config, classifier: classifier))
        WeightInit.fill(store, seed: seed) { initRule($0, config: config) }
        return store
    }
}

extension EncoderClassifier {
    /// The rule BERT/DistilBERT's `_init_weights` applies to the tensor `name` (see the file header).
    public static func initRule(_ e: ParameterEntry, config: ModelConfig) -> InitRule {
        let n = e.name
        if n.hasSuffix(".bias") { return .constant(0) }
        if e.shape.count == 1 { return .constant(1) }   // LayerNorm / sa_layer_norm / output_layer_norm weights
        return .normal(std: WeightInit.range(config.initializerRange))
    }

    /// A BERT-family sequence classifier (its layout for config.id2label) initialised from `seed` as transformers
    /// initialises a model built from its config, the pad token's word-embedding row zero.
    public static func initializedStore(config: ModelConfig, seed: UInt64) -> ParameterStore {
        let store = ParameterStore(layout: makeLayout(config: config))
        let words = (config.family == .bert ? "bert." : "distilbert.") + "embeddings.word_embeddings.weight"
        WeightInit.fill(store, seed: seed, zeroRows: [words: config.padTokenId]) { initRule($0, config: config) }
        return store
    }
}

extension LoadReport {
    /// An initialised-from-config model's report: nothing was read from a file, and nothing was missing from one.
    public static let fromConfig = LoadReport()
}
