// ModelArchitecture: what every model family's config tells the rest of the program about its shape and names,
// without the caller spelling a Hugging Face parameter name: the sizes `inspect` prints, the parameter layout with or
// without the task head, which parameters are embeddings, and the per-layer prefixes that the gradient all-reduce
// uses as stages. A new model family conforms its config here (and brings its layout, loader and model).
// Deliberately not here: decoding config.json (ModelConfig.swift, GPT2Config.swift), the models themselves.
import Foundation

public protocol ModelArchitecture {
    /// The family name shown to users ("bert", "distilbert", "gpt2").
    var familyName: String { get }
    var layers: Int { get }
    var hidden: Int { get }
    var heads: Int { get }
    var intermediate: Int { get }
    var vocabSize: Int { get }
    var maxPositions: Int { get }
    var activation: Activation { get }
    /// Class names of the trained head (empty: none).
    var id2label: [String] { get }
    /// The parameter layout (Hugging Face names); `head`: with the sequence-classification head, sized for
    /// `id2label` or, when it is empty, for transformers' default of 2 labels.
    func parameterLayout(head: Bool) -> ParameterLayout
    /// Whether a layout entry is an embedding table (word, position, token type).
    func isEmbedding(_ name: String) -> Bool
    /// The prefix of each transformer layer's parameters, layer 0 first.
    var layerPrefixes: [String] { get }
    /// The word-embedding table's layout name.
    var wordEmbeddingName: String { get }
}

extension ModelConfig: ModelArchitecture {
    public var familyName: String { family.rawValue }
    public func parameterLayout(head: Bool) -> ParameterLayout {
        var c = self
        if c.id2label.isEmpty { c.id2label = ["LABEL_0", "LABEL_1"] }
        let full = EncoderClassifier.makeLayout(config: c)
        guard !head else { return full }
        var L = ParameterLayout()
        for e in full.entries where !EncoderClassifier.isHead(e.name) { L.add(e.name, e.shape) }
        return L
    }
    public func isEmbedding(_ name: String) -> Bool { name.contains("embeddings.") }
    public var layerPrefixes: [String] {
        (0..<layers).map { family == .bert ? "bert.encoder.layer.\($0)." : "distilbert.transformer.layer.\($0)." }
    }
    public var wordEmbeddingName: String { "\(family.rawValue).embeddings.word_embeddings.weight" }
}

extension GPT2Config: ModelArchitecture {
    public var familyName: String { "gpt2" }
    public func parameterLayout(head: Bool) -> ParameterLayout {
        var c = self
        if head && c.id2label.isEmpty { c.id2label = ["LABEL_0", "LABEL_1"] }
        return GPT2Layout.make(config: c, classifier: head)
    }
    public func isEmbedding(_ name: String) -> Bool { name == "transformer.wte.weight" || name == "transformer.wpe.weight" }
    public var layerPrefixes: [String] { (0..<layers).map { "transformer.h.\($0)." } }
    public var wordEmbeddingName: String { "transformer.wte.weight" }
}
