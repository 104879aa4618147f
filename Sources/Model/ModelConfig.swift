// ModelConfig: what we read from (and write back to) a Hugging Face `config.json`, for BERT-family encoders
// (BertModel / BertForSequenceClassification, DistilBertModel / DistilBertForSequenceClassification).
// The decoded file is kept whole (`raw`) so that saving writes back every field we do not interpret.
// Deliberately not here: CLI flags (the executable maps those), tokenizer settings (Tokenizers target).
import Foundation

/// A config.json problem, naming the file and the field.
public struct ConfigError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// How transformers computes the classification loss (`problem_type`).
public enum ProblemType: String, Sendable, CaseIterable {
    case singleLabel = "single_label_classification"
    case multiLabel = "multi_label_classification"
    case regression = "regression"
}

/// Which architecture family a config describes.
public enum ModelFamily: String, Sendable {
    case bert, distilbert
}

/// Activation functions named by `hidden_act` / `activation`.
public enum Activation: String, Sendable {
    case gelu            // exact, erf-based
    case geluNew = "gelu_new"  // tanh approximation (GPT-2)
    case relu
}

/// Which head sits on the encoder: `.sequence` (*ForSequenceClassification: BERT's pooler or DistilBERT's
/// pre_classifier, then `classifier`, on the first token) or `.token` (*ForTokenClassification: `classifier` over
/// every token's last hidden state, no pooler) or `.span` (*ForQuestionAnswering: `qa_outputs` Linear C → 2 over every
/// token, start and end logits; QuestionAnsweringHead.swift). Decided by the folder's architecture or the task.
public enum EncoderHead: String, Sendable {
    case sequence, token, span

    /// A head over every token's last hidden state (no pooler / pre_classifier).
    public var perToken: Bool { self != .sequence }
    /// The head's module name: `qa_outputs` for question answering, `classifier` otherwise.
    public var module: String { self == .span ? "qa_outputs" : "classifier" }
    /// The architecture suffix transformers names the head by.
    var architectureSuffix: String {
        switch self { case .sequence: "ForSequenceClassification"; case .token: "ForTokenClassification"; case .span: "ForQuestionAnswering" }
    }
}

/// The normalised architecture description the model code uses, whatever the family's field names.
public struct ModelConfig: @unchecked Sendable {
    public var family: ModelFamily
    public var vocabSize: Int
    public var hidden: Int
    public var layers: Int
    public var heads: Int
    public var intermediate: Int
    public var maxPositions: Int
    /// 0 for DistilBERT (no token type embeddings).
    public var typeVocabSize: Int
    public var activation: Activation
    public var layerNormEps: Float
    public var initializerRange: Float
    /// Dropout on embeddings and sub-layer outputs.
    public var hiddenDropout: Float
    public var attentionDropout: Float
    /// Dropout before the classifier (BERT `classifier_dropout` ?? hidden dropout; DistilBERT `seq_classif_dropout`).
    public var classifierDropout: Float
    /// DistilBERT's `qa_dropout` (before qa_outputs; BertForQuestionAnswering has no head dropout).
    public var qaDropout: Float = 0.1
    public var padTokenId: Int
    /// Class names by id; `numLabels == id2label.count`.
    public var id2label: [String]
    public var problemType: ProblemType?
    /// The head on the encoder (parameter layout, forward, saved architecture).
    public var head: EncoderHead = .sequence
    /// The decoded config.json (for round-tripping fields we do not model).
    public var raw: [String: Any]
    public var path: String

    public var numLabels: Int { id2label.count }
    public var headDim: Int { hidden / heads }

    /// Reads and validates `config.json` at `url`.
    public static func load(url: URL) throws -> ModelConfig {
        try ModelConfig(json: readJSONObject(url, hint: "a Hugging Face model folder containing config.json"), path: url.path)
    }

    /// The JSON object in a config file, or a ConfigError naming the file (`hint` says what --model should be).
    public static func readJSONObject(_ url: URL, hint: String) throws -> [String: Any] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError(path: url.path, "cannot read config.json; pass --model \(hint)")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError(path: url.path, "not a JSON object; the file is corrupt")
        }
        return obj
    }

    public init(json: [String: Any], path: String) throws {
        self.raw = json
        self.path = path
        let r = ConfigReader(json: json, path: path)
        func int(_ key: String) throws -> Int { try r.int(key) }
        func double(_ key: String, default def: Double? = nil) throws -> Double { try r.double(key, default: def) }
        func optionalDouble(_ key: String) throws -> Double? { try r.optionalDouble(key) }
        guard let modelType = json["model_type"] as? String else {
            throw ConfigError(path: path, "missing field 'model_type' (expected \"bert\" or \"distilbert\")")
        }
        switch modelType {
        case "bert":
            family = .bert
            vocabSize = try int("vocab_size")
            hidden = try int("hidden_size")
            layers = try int("num_hidden_layers")
            heads = try int("num_attention_heads")
            intermediate = try int("intermediate_size")
            maxPositions = try int("max_position_embeddings")
            typeVocabSize = try int("type_vocab_size")
            let act = (json["hidden_act"] as? String) ?? "gelu"
            guard let a = Activation(rawValue: act) else {
                throw ConfigError(path: path, "field 'hidden_act' is '\(act)'; supported: gelu, gelu_new, relu")
            }
            activation = a
            layerNormEps = Float(try double("layer_norm_eps", default: 1e-12))
            hiddenDropout = Float(try double("hidden_dropout_prob", default: 0.1))
            attentionDropout = Float(try double("attention_probs_dropout_prob", default: 0.1))
            classifierDropout = Float(try optionalDouble("classifier_dropout") ?? Double(hiddenDropout))
            if let pet = json["position_embedding_type"] as? String, pet != "absolute" {
                throw ConfigError(path: path, "position_embedding_type '\(pet)' is not supported (only 'absolute')")
            }
        case "distilbert":
            family = .distilbert
            vocabSize = try int("vocab_size")
            hidden = try int("dim")
            layers = try int("n_layers")
            heads = try int("n_heads")
            intermediate = try int("hidden_dim")
            maxPositions = try int("max_position_embeddings")
            typeVocabSize = 0
            let act = (json["activation"] as? String) ?? "gelu"
            guard let a = Activation(rawValue: act) else {
                throw ConfigError(path: path, "field 'activation' is '\(act)'; supported: gelu, relu")
            }
            activation = a
            layerNormEps = 1e-12
            hiddenDropout = Float(try double("dropout", default: 0.1))
            attentionDropout = Float(try double("attention_dropout", default: 0.1))
            classifierDropout = Float(try double("seq_classif_dropout", default: 0.2))
            qaDropout = Float(try double("qa_dropout", default: 0.1))
            if (json["sinusoidal_pos_embds"] as? Bool) == true {
                throw ConfigError(path: path, "sinusoidal_pos_embds true is not supported (learned positions only)")
            }
        default:
            throw ConfigError(path: path, "model_type '\(modelType)' is not supported; supported: bert, distilbert")
        }
        initializerRange = Float(try double("initializer_range", default: 0.02))
        padTokenId = try r.optionalInt("pad_token_id") ?? 0
        guard hidden > 0, heads > 0, hidden % heads == 0 else {
            throw ConfigError(path: path, "hidden size \(hidden) is not divisible by the \(heads) attention heads")
        }
        guard layers > 0, vocabSize > 0, intermediate > 0, maxPositions > 0 else {
            throw ConfigError(path: path, "layer count, vocab size, intermediate size and max positions must be positive")
        }
        // Labels: id2label has string keys "0".."n-1"; num_labels may be given alone.
        id2label = try r.labels()
        guard padTokenId < vocabSize else {
            throw ConfigError(path: path, "pad_token_id \(padTokenId) is outside the vocabulary of \(vocabSize) tokens")
        }
        if let pt = json["problem_type"] as? String {
            guard let p = ProblemType(rawValue: pt) else {
                throw ConfigError(path: path, "problem_type '\(pt)' is unknown; use one of \(ProblemType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            problemType = p
        } else {
            problemType = nil
        }
    }

    /// The config.json to save for a sequence classifier: the original fields plus architecture, labels and problem type.
    public func classifierJSON() -> [String: Any] {
        var j = raw
        j["architectures"] = [(family == .bert ? "Bert" : "DistilBert") + head.architectureSuffix]
        var id2 = [String: String](), l2i = [String: Int]()
        for (i, n) in id2label.enumerated() { id2[String(i)] = n; l2i[n] = i }
        j["id2label"] = id2
        j["label2id"] = l2i
        j.removeValue(forKey: "num_labels")
        if let p = problemType, head == .sequence { j["problem_type"] = p.rawValue }
        if head.perToken { j.removeValue(forKey: "problem_type") }   // a sequence classifier's; token and span heads have none
        j.removeValue(forKey: "_name_or_path")
        return j
    }

    /// Writes `json` as a pretty, sorted config.json atomically.
    public static func write(_ json: [String: Any], to url: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try FileIO.writeAtomically(data + Data("\n".utf8), to: url)
    }
}
