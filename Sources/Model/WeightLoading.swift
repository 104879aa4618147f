// WeightLoading: fills a ParameterStore from Hugging Face safetensors and writes it back with HF names.
// Accepted spellings of each layout name (layout names are what save_pretrained writes for *ForSequenceClassification):
//   exact; without the base-model prefix ("bert.", "distilbert.": BertModel checkpoints such as all-MiniLM-L6-v2 have
//   none); legacy LayerNorm "gamma"/"beta" for "weight"/"bias".
// Tensors the layout does not use (position_ids buffers, MLM/NSP heads) are ignored and counted. Missing optional
// heads (pooler, classifier, pre_classifier) are initialised like transformers' _init_weights — N(0, initializer_range)
// weights, zero biases — from a seeded generator, and reported in one log line by the caller. Any other missing
// or mis-shaped tensor is an error naming it and its expected shape.
// Deliberately not here: LoRA adapters, sharded checkpoints (model.safetensors.index.json), PyTorch pickles.
import Foundation
import SplitMix

/// What a load did besides copying tensors.
public struct LoadReport: Sendable {
    /// Layout entries not found in the file and freshly initialised.
    public var initialized: [String] = []
    /// File tensors the layout has no use for.
    public var unused: [String] = []
}

public enum WeightLoader {
    /// Loads `file` into `store`. `prefix` is the base-model prefix ("bert." / "distilbert."); `isOptional` says which
    /// layout entries may be missing (then initialised with `seed` / `initializerRange`); entries `reinitialize`
    /// accepts are initialised even when present (a classifier head trained for other labels).
    public static func load(into store: ParameterStore, from file: SafeTensorsFile, prefix: String,
                            isOptional: (String) -> Bool, reinitialize: (String) -> Bool = { _ in false },
                            seed: UInt64, initializerRange: Float) throws -> LoadReport {
        var report = LoadReport()
        var used = Set<String>()
        var rng = SplitMix64(seed: seed)
        for entry in store.entries {
            let found = reinitialize(entry.name) ? nil : try resolve(entry, in: file, prefix: prefix, isOptional: isOptional)
            guard let fileName = found else {
                let v = store.value(entry.name)
                if entry.name.hasSuffix(".bias") || entry.shape.count == 1 {
                    v.update(repeating: 0)
                } else {
                    for i in 0..<v.count { v[i] = Float(rng.nextNormal()) * initializerRange }
                }
                report.initialized.append(entry.name)
                continue
            }
            try file.copyFloats(fileName, into: store.value(entry.name))
            used.insert(fileName)
        }
        report.unused = file.names.filter { !used.contains($0) && !reinitialize($0) }
        return report
    }

    /// The checks `load` makes, without a store: every entry `isOptional` does not accept is in `file` with the
    /// layout's shape, and so is every optional entry the file has. Run it before allocating a store for `layout`, so
    /// that a config.json with absurd sizes is reported against the weights instead of exhausting memory.
    public static func check(_ layout: ParameterLayout, against file: SafeTensorsFile, prefix: String,
                             isOptional: (String) -> Bool, reinitialize: (String) -> Bool = { _ in false }) throws {
        for entry in layout.entries where !reinitialize(entry.name) {
            _ = try resolve(entry, in: file, prefix: prefix, isOptional: isOptional)
        }
    }

    /// The file's tensor for `entry` (checked to have its shape), nil for a missing optional entry; a missing
    /// required entry or a shape mismatch is an error naming the tensor.
    static func resolve(_ entry: ParameterEntry, in file: SafeTensorsFile, prefix: String,
                        isOptional: (String) -> Bool) throws -> String? {
        guard let fileName = candidates(for: entry.name, prefix: prefix).first(where: file.contains) else {
            if isOptional(entry.name) { return nil }
            throw SafeTensorsError(path: file.url.path,
                "missing tensor '\(entry.name)' (expected shape \(entry.shape)); the weights do not match config.json — check that the folder's config.json belongs to this model.safetensors")
        }
        let info = file.info(fileName)!
        guard info.shape == entry.shape else {
            throw SafeTensorsError(path: file.url.path,
                "tensor '\(fileName)' has shape \(info.shape) but config.json implies \(entry.shape); the weights do not match config.json")
        }
        return fileName
    }

    /// File names that may hold a layout entry, most specific first.
    static func candidates(for name: String, prefix: String) -> [String] {
        var names = [name]
        if !prefix.isEmpty, name.hasPrefix(prefix) { names.append(String(name.dropFirst(prefix.count))) }
        else if !prefix.isEmpty { names.append(prefix + name) }
        var legacy: [String] = []
        for n in names {
            if n.hasSuffix("LayerNorm.weight") || n.hasSuffix("layer_norm.weight") {
                legacy.append(String(n.dropLast("weight".count)) + "gamma")
            } else if n.hasSuffix("LayerNorm.bias") || n.hasSuffix("layer_norm.bias") {
                legacy.append(String(n.dropLast("bias".count)) + "beta")
            }
        }
        return names + legacy
    }

    /// Writes every entry of `store` (or only those `include` accepts) as F32 with its layout name.
    public static func save(_ store: ParameterStore, to url: URL, include: (String) -> Bool = { _ in true }) throws {
        let tensors = store.entries.filter { include($0.name) }.map {
            TensorToWrite(name: $0.name, shape: $0.shape, floats: UnsafeBufferPointer(store.value($0.name)))
        }
        try SafeTensorsWriter.write(tensors, to: url)
    }
}

extension EncoderClassifier {
    /// The head's parameter prefixes (`classifier.`, DistilBERT's `pre_classifier.`, question answering's `qa_outputs.`).
    public static let headPrefixes = ["classifier.", "pre_classifier.", "qa_outputs."]

    /// Whether a layout entry belongs to the head a sequence classifier adds to a base encoder.
    public static func isHead(_ name: String) -> Bool { headPrefixes.contains { name.hasPrefix($0) } }

    /// The parameters of an encoder checkpoint, in `makeLayout(config:)`: the base model under its prefix or without
    /// it; a missing pooler or head is initialised from `seed`, and `reinitializeHead` re-initialises a present head
    /// (trained for other labels). Shapes are checked against the file before anything is allocated.
    public static func loadStore(from file: SafeTensorsFile, config: ModelConfig,
                                 reinitializeHead: Bool, seed: UInt64) throws -> (ParameterStore, LoadReport) {
        let prefix = config.family == .bert ? "bert." : "distilbert."
        let layout = makeLayout(config: config)
        let optional: (String) -> Bool = { $0.hasPrefix("bert.pooler.") || isHead($0) }
        let reinit: (String) -> Bool = { reinitializeHead && isHead($0) }
        try WeightLoader.check(layout, against: file, prefix: prefix, isOptional: optional, reinitialize: reinit)
        let store = ParameterStore(layout: layout)
        let report = try WeightLoader.load(into: store, from: file, prefix: prefix, isOptional: optional, reinitialize: reinit,
                                           seed: seed, initializerRange: config.initializerRange)
        return (store, report)
    }
}

extension GPT2Layout {
    /// The sequence classifier's head ([numLabels, C], not tied to wte).
    public static let scoreHead = "score.weight"

    /// The parameters of a GPT2ForSequenceClassification: `headOptional` (training) lets a checkpoint without the
    /// head (an LM) get a fresh one; `reinitializeHead` re-initialises a head trained for other labels. Shapes are
    /// checked against the file before anything is allocated.
    public static func loadClassifierStore(from file: SafeTensorsFile, config: GPT2Config, headOptional: Bool,
                                           reinitializeHead: Bool, seed: UInt64) throws -> (ParameterStore, LoadReport) {
        let layout = make(config: config, classifier: true)
        let optional: (String) -> Bool = { headOptional && $0 == scoreHead }
        let reinit: (String) -> Bool = { reinitializeHead && $0 == scoreHead }
        try WeightLoader.check(layout, against: file, prefix: prefix, isOptional: optional, reinitialize: reinit)
        let store = ParameterStore(layout: layout)
        let report = try WeightLoader.load(into: store, from: file, prefix: prefix, isOptional: optional, reinitialize: reinit,
                                           seed: seed, initializerRange: config.initializerRange)
        return (store, report)
    }

    /// The parameters of a GPT-2 language model (`load`), checked against the file before anything is allocated.
    public static func loadLMStore(from file: SafeTensorsFile, config: GPT2Config, seed: UInt64) throws -> (ParameterStore, LoadReport) {
        let layout = make(config: config, classifier: false)
        try WeightLoader.check(layout, against: file, prefix: prefix, isOptional: { $0 == scoreHead })
        let store = ParameterStore(layout: layout)
        return (store, try load(into: store, from: file, config: config, seed: seed))
    }
}
