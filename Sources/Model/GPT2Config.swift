// GPT2Config.swift: what we read from (and write back to) a Hugging Face GPT-2 `config.json` (model_type "gpt2":
// GPT2LMHeadModel and GPT2ForSequenceClassification). Same error style as ModelConfig: a missing or ill-typed field
// throws a ConfigError naming the file and the field. The decoded JSON is kept whole (`raw`) so saving writes back
// every field we do not interpret.
// Deliberately not here: BERT-family configs (ModelConfig.swift), tokenizer settings, CLI flags.
import Foundation

/// The architecture of a GPT-2 model, normalised from config.json.
public struct GPT2Config: @unchecked Sendable {
    /// `vocab_size` (V): rows of wte, columns of the tied LM head.
    public var vocabSize: Int
    /// `n_embd` (C).
    public var hidden: Int
    /// `n_layer`.
    public var layers: Int
    /// `n_head` (NH); C must be divisible by it.
    public var heads: Int
    /// `n_inner`, or 4·n_embd when null/absent (FF).
    public var intermediate: Int
    /// `n_positions`: rows of wpe, the longest sequence the model accepts.
    public var maxPositions: Int
    /// `activation_function`: GPT-2 uses gelu_new (tanh form); gelu and relu are accepted too.
    public var activation: Activation
    /// `layer_norm_epsilon` (1e-5 for GPT-2).
    public var layerNormEps: Float
    /// `resid_pdrop`: dropout after the attention and MLP projections.
    public var residDropout: Float
    /// `embd_pdrop`: dropout on wte+wpe.
    public var embdDropout: Float
    /// `attn_pdrop`: dropout on the attention probabilities.
    public var attnDropout: Float
    /// `initializer_range`: std of N(0, ·) for freshly initialised weights (the `score` head).
    public var initializerRange: Float
    /// `pad_token_id` (nil for the LM fixtures; needed by the sequence classifier to find the last real token).
    public var padTokenId: Int?
    /// `eos_token_id` (50256 for GPT-2): appended between documents and after responses; optional stop token.
    public var eosTokenId: Int?
    /// `bos_token_id`.
    public var bosTokenId: Int?
    /// Class names from `id2label` (empty for the LM).
    public var id2label: [String]
    /// The decoded config.json.
    public var raw: [String: Any]
    public var path: String

    public var numLabels: Int { id2label.count }
    public var headDim: Int { hidden / heads }
    /// The activation code of the CKernels `ck_act_*` functions.
    var actCode: Int32 { switch activation { case .gelu: 0; case .geluNew: 1; case .relu: 2 } }

    /// Reads and validates `config.json` at `url`.
    public static func load(url: URL) throws -> GPT2Config {
        try GPT2Config(json: ModelConfig.readJSONObject(url, hint: "a Hugging Face GPT-2 folder containing config.json"),
                       path: url.path)
    }

    public init(json: [String: Any], path: String) throws {
        raw = json
        self.path = path
        let r = ConfigReader(json: json, path: path, missingHint: "(GPT-2 config.json)")
        func int(_ key: String) throws -> Int { try r.int(key) }
        func optionalInt(_ key: String) throws -> Int? { try r.optionalInt(key) }
        func double(_ key: String, default def: Double) throws -> Double { try r.double(key, default: def) }
        guard let modelType = json["model_type"] as? String else {
            throw ConfigError(path: path, "missing field 'model_type' (expected \"gpt2\")")
        }
        guard modelType == "gpt2" else {
            throw ConfigError(path: path, "model_type '\(modelType)' is not GPT-2; GPT2Config reads only model_type \"gpt2\"")
        }
        vocabSize = try int("vocab_size")
        hidden = try int("n_embd")
        layers = try int("n_layer")
        heads = try int("n_head")
        maxPositions = try int("n_positions")
        intermediate = try optionalInt("n_inner") ?? 4 * hidden
        let act = (json["activation_function"] as? String) ?? "gelu_new"
        guard let a = Activation(rawValue: act) else {
            throw ConfigError(path: path, "field 'activation_function' is '\(act)'; supported: gelu_new, gelu, relu")
        }
        activation = a
        layerNormEps = Float(try double("layer_norm_epsilon", default: 1e-5))
        residDropout = Float(try double("resid_pdrop", default: 0.1))
        embdDropout = Float(try double("embd_pdrop", default: 0.1))
        attnDropout = Float(try double("attn_pdrop", default: 0.1))
        initializerRange = Float(try double("initializer_range", default: 0.02))
        padTokenId = try optionalInt("pad_token_id")
        eosTokenId = try optionalInt("eos_token_id")
        bosTokenId = try optionalInt("bos_token_id")
        guard hidden > 0, heads > 0, hidden % heads == 0 else {
            throw ConfigError(path: path, "n_embd \(hidden) is not divisible by n_head \(heads)")
        }
        guard layers > 0, vocabSize > 0, intermediate > 0, maxPositions > 0 else {
            throw ConfigError(path: path, "n_layer, vocab_size, n_inner and n_positions must be positive")
        }
        for key in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"] {
            if (json[key] as? Bool) == true {
                throw ConfigError(path: path, "'\(key)': true is not supported (plain GPT-2 attention only)")
            }
        }
        if (json["scale_attn_weights"] as? Bool) == false {
            throw ConfigError(path: path, "'scale_attn_weights': false is not supported (scores are scaled by 1/sqrt(head_dim))")
        }
        if (json["tie_word_embeddings"] as? Bool) == false {
            throw ConfigError(path: path, "'tie_word_embeddings': false is not supported (the LM head is wte)")
        }
        id2label = try r.labels()
        for (key, id) in [("pad_token_id", padTokenId), ("eos_token_id", eosTokenId), ("bos_token_id", bosTokenId)] {
            if let id, id >= vocabSize {
                throw ConfigError(path: path, "\(key) \(id) is outside the vocabulary of \(vocabSize) tokens")
            }
        }
    }

    /// The config.json to save: the original fields plus the architecture (and labels for the classifier).
    public func json(classifier: Bool) -> [String: Any] {
        var j = raw
        j["architectures"] = [classifier ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel"]
        if classifier {
            var id2 = [String: String](), l2i = [String: Int]()
            for (i, n) in id2label.enumerated() { id2[String(i)] = n; l2i[n] = i }
            j["id2label"] = id2
            j["label2id"] = l2i
            j.removeValue(forKey: "num_labels")
        }
        j.removeValue(forKey: "_name_or_path")
        return j
    }
}
