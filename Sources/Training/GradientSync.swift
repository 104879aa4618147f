// GradientSync: how a task's trainable gradient buffer is all-reduced, so that communication follows backward
// instead of waiting for all of it, and so that a big embedding table costs only the rows a step touched.
//
//   - Stages: ranges of the trainable store in the order backward finishes them (an encoder's layers, last first).
//     During the last micro-batch of a step the task calls the trainer's hook with k as soon as range k is final,
//     and the trainer all-reduces it at once, while it is still in cache (on 2 busy cores a non-blocking
//     all-reduce makes no progress in the background, so a blocking, cache-hot reduction is what pays here).
//   - Row-sparse tables: the word-embedding gradient is non-zero only in the rows of token ids present in the step;
//     every rank holds every sample's tokens, so each names the same rows without communicating, and the reducer
//     moves only those rows (exact: every other row is zero on every rank; `--debug` checks that).
//   - Everything else (heads, position/type embeddings, LayerNorms) is reduced by `GradientReducer.finish()`.
// Every rank issues the same collectives in the same order: a rank without samples in a short final step replays
// the stage list after its (empty) backward.
// Deliberately not here: the reduction itself (Dist's GradientReducer), clipping and the optimizer (Trainer).
import Dist
import Model

/// The all-reduce plan of a trainable store (see the file header).
public struct GradientSyncLayout: Sendable {
    /// Ranges of the store in backward completion order; `setBackwardHook` reports k when range k is final.
    public var stages: [Range<Int>] = []
    /// Row-sparse tables (range in the store, floats per row), in the order `touchedRows` reports their rows.
    public var sparseTables: [(range: Range<Int>, rowLength: Int)] = []
    public init(stages: [Range<Int>] = [], sparseTables: [(range: Range<Int>, rowLength: Int)] = []) {
        self.stages = stages; self.sparseTables = sparseTables
    }

    /// ZeRO stage 1 with one node-wide copy of the parameters: the rank that reduces and updates row `row` of a
    /// row-sparse table. Blocks of 8 rows are dealt round-robin, so the rows a corpus touches (clustered at low token
    /// ids: SMS spam touches 4,915 of the first 15,261 vocabulary rows and 1,646 of the rest) split about evenly.
    public static func tableRowOwner(_ row: Int, worldSize: Int) -> Int { (row / 8) % worldSize }

    /// The union of the entries whose names start with `prefix`, which must be contiguous in the store (no entry
    /// of another prefix inside it); nil when nothing matches or the entries are interleaved with others.
    static func contiguousRange(of store: ParameterStore, prefix: String) -> Range<Int>? {
        let mine = store.entries.filter { $0.name.hasPrefix(prefix) }
        guard let lo = mine.map(\.range.lowerBound).min(), let hi = mine.map(\.range.upperBound).max() else { return nil }
        let intruder = store.entries.contains { !$0.name.hasPrefix(prefix) && $0.range.overlaps(lo..<hi) }
        return intruder ? nil : lo..<hi
    }

    /// Stages for per-layer prefixes given last layer first (backward order); empty if any layer is not contiguous.
    static func layerStages(store: ParameterStore, prefixes: [String]) -> [Range<Int>] {
        let ranges = prefixes.compactMap { contiguousRange(of: store, prefix: $0) }
        return ranges.count == prefixes.count ? ranges : []
    }

    /// A row-sparse table for entry `name` ([rows, C]), if the store has it.
    static func table(_ store: ParameterStore, _ name: String) -> [(range: Range<Int>, rowLength: Int)] {
        guard let e = store.layout.entry(name), e.shape.count == 2 else { return [] }
        return [(e.range, e.shape[1])]
    }

    /// A per-layer hook for models that report layers last-to-first: maps layer l to stage (layers - 1 - l).
    static func stageHook(_ hook: ((Int) -> Void)?, layers: Int) -> ((Int) -> Void)? {
        hook.map { h in { layer in h(layers - 1 - layer) } }
    }

    /// Sorted unique token ids of `samples`, plus `extra` (the padding id, whose row a padded batch may touch).
    static func sortedRows<S: Sequence>(_ samples: S, extra: Int32, tableRows: Int) -> [Int] where S.Element == [Int32] {
        var seen = [Bool](repeating: false, count: tableRows)
        if Int(extra) >= 0 && Int(extra) < tableRows { seen[Int(extra)] = true }
        for ids in samples { for id in ids where Int(id) >= 0 && Int(id) < tableRows { seen[Int(id)] = true } }
        return seen.indices.filter { seen[$0] }
    }
}

/// The all-reduce layout every task training a model with its own (untied) word embeddings shares — BERT-family
/// encoders with any head, and the GPT-2 classifier: its layers as stages and the word-embedding table row-sparse.
/// LoRA: the adapter is small and reduced in one go, with no table. Each task builds one and forwards to it, giving
/// only which token ids a step's samples hold.
struct WordTableSync {
    let store: ParameterStore
    let architecture: any ModelArchitecture
    let usesLoRA: Bool
    let padId: Int32

    var layout: GradientSyncLayout {
        guard !usesLoRA else { return GradientSyncLayout() }
        return GradientSyncLayout(stages: GradientSyncLayout.layerStages(store: store, architecture: architecture),
                                  sparseTables: table)
    }

    /// The row-sparse word-embedding table of full fine-tuning (an O(1) lookup: called every step).
    private var table: [(range: Range<Int>, rowLength: Int)] {
        guard !usesLoRA else { return [] }
        return GradientSyncLayout.table(store, architecture.wordEmbeddingName)
    }

    /// The table rows a step touches: the token ids of its samples, and the padding id.
    func touchedRows<S: Sequence>(_ samples: S) -> [[Int]] where S.Element == [Int32] {
        table.map { t in GradientSyncLayout.sortedRows(samples, extra: padId, tableRows: t.range.count / t.rowLength) }
    }
}

extension ClassificationTask {
    /// Full fine-tuning of an encoder: its layers as stages and the word embeddings row-sparse; a GPT-2 classifier:
    /// its blocks as stages and its word embeddings row-sparse (its head is `score`, not tied to them). LoRA: the
    /// adapter is small, reduced in one go.
    var wordSync: WordTableSync {
        WordTableSync(store: backend.store, architecture: backend.architecture, usesLoRA: lora != nil, padId: backend.padId)
    }
    public var gradientSync: GradientSyncLayout { wordSync.layout }
    public func touchedRows(_ indices: [Int]) -> [[Int]] { wordSync.touchedRows(indices.lazy.map { self.train[$0].ids }) }

    public func setBackwardHook(_ hook: ((Int) -> Void)?) {
        guard lora == nil else { return }
        backend.setBackwardHook(hook)
    }

    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { backend.setProbe(probe) }
}

extension GradientSyncLayout {
    /// The model's layers as stages, last layer first (empty if any layer is not contiguous in `store`).
    static func layerStages(store: ParameterStore, architecture: any ModelArchitecture) -> [Range<Int>] {
        layerStages(store: store, prefixes: architecture.layerPrefixes.reversed())
    }
}

extension CausalLMTask {
    var lmParts: GPT2LMParts { GPT2LMParts(model: model, config: config, baseStore: baseStore, lora: lora, modelDir: modelDir) }
    public var gradientSync: GradientSyncLayout { lmParts.gradientSync }
    public func setBackwardHook(_ hook: ((Int) -> Void)?) { lmParts.setBackwardHook(hook) }
    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { lmParts.setProbe(probe) }
}

/// What a task over a BERT-family encoder with a head of its own (token classification, question answering) gives
/// for the all-reduce: the encoder (its layers' backward hook and probe) and its word-table layout.
public struct EncoderHeadSync {
    let model: EncoderClassifier
    let words: WordTableSync
}

/// The all-reduce members of the encoder-head tasks, written once: a task gives its `encoderSync` and the token ids
/// of a training sample.
public protocol EncoderHeadTask: TrainingTask {
    var encoderSync: EncoderHeadSync { get }
    /// The token ids of training sample `index` (the rows of the word table it touches).
    func trainTokenIds(_ index: Int) -> [Int32]
}

extension EncoderHeadTask {
    public var gradientSync: GradientSyncLayout { encoderSync.words.layout }
    public func touchedRows(_ indices: [Int]) -> [[Int]] { encoderSync.words.touchedRows(indices.lazy.map { self.trainTokenIds($0) }) }

    public func setBackwardHook(_ hook: ((Int) -> Void)?) {
        let sync = encoderSync
        guard !sync.words.usesLoRA else { return }
        sync.model.onLayerBackward = GradientSyncLayout.stageHook(hook, layers: sync.model.config.layers)
    }

    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { encoderSync.model.probe = probe }
}
