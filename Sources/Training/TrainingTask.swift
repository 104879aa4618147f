// TrainingTask: what the training loop needs from one kind of fine-tuning (a model together with its data), so that
// one loop serves sequence classification and causal language modelling alike. A task owns the trainable parameters,
// the tokenized data, and the model's forward/backward; the Trainer owns the data order, the all-reduce, the
// optimizer, checkpoints and events.
// Deliberately not here: anything about ranks (a task sees only the sample indices it is given).
import Dist
import Foundation
import Model
import Tokenizers

/// Additive evaluation statistics of one shard; the trainer all-reduces them, so metrics are exact over all ranks.
public struct EvalStats: Sendable {
    public var lossSum: Double = 0
    public var lossCount: Double = 0
    /// Task-specific integer counts (the flattened confusion matrix for classification).
    public var counts: [Int64] = []
    public init(lossSum: Double = 0, lossCount: Double = 0, counts: [Int64] = []) {
        self.lossSum = lossSum; self.lossCount = lossCount; self.counts = counts
    }
}

/// Sendable: checkpoints call `save` from the writer thread; `save` only reads immutable state.
public protocol TrainingTask: AnyObject, Sendable {
    /// The trainable parameters: all-reduced, clipped and updated by the trainer.
    var store: ParameterStore { get }
    var trainCount: Int { get }
    var evalCount: Int { get }
    /// Tokens per training sample (for length grouping).
    var trainLengths: [Int] { get }
    /// Class names for classification, [] for language modelling (recorded in checkpoints).
    var labels: [String] { get }
    var dataFingerprint: String { get }
    /// The model's config.json path (named in consistency checks and errors).
    var configPath: String { get }
    /// Heads initialised because the checkpoint lacked them.
    var initialized: [String] { get }
    /// Samples truncated to the maximum length.
    var truncated: Int { get }
    /// What the loss of these samples is normalised by: examples (classification) or counted target tokens (LM).
    func lossCount(_ indices: [Int]) -> Int
    /// Forward and backward of one micro-batch; gradients (+=) are those of `scale` × the loss sum.
    /// Returns the loss sum and the number of real (non-padding) tokens.
    func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int)
    /// Statistics over the eval samples in `range` (this rank's shard), in micro-batches of `batchSize`.
    func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats
    /// Metrics (keys prefixed `eval_`) from statistics summed over all ranks.
    func metrics(_ stats: EvalStats) -> [String: Double]
    /// Writes a loadable Hugging Face folder with `weights` (default: the live parameters).
    func save(to dir: URL, weights: ParameterStore?) throws
    /// How the trainable gradient is all-reduced (stages in backward order, row-sparse tables; GradientSync.swift).
    var gradientSync: GradientSyncLayout { get }
    /// The rows of each of `gradientSync.sparseTables` that these samples touch (sorted, unique).
    func touchedRows(_ indices: [Int]) -> [[Int]]
    /// During the next micro-batches, call `hook(k)` as soon as stage k's gradients are final (nil: stop calling).
    func setBackwardHook(_ hook: ((Int) -> Void)?)
    /// `--debug`: call `probe(name, values)` with each layer's output in forward and its gradient in backward.
    func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?)
}

/// Defaults: the whole trainable buffer is reduced in one go after backward, and there is nothing to probe.
extension TrainingTask {
    public var gradientSync: GradientSyncLayout { GradientSyncLayout() }
    public func touchedRows(_ indices: [Int]) -> [[Int]] { [] }
    public func setBackwardHook(_ hook: ((Int) -> Void)?) {}
    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) {}
}

extension TrainingTask {
    /// Exact statistics over the whole eval set: each rank evaluates its contiguous shard (EvalSharding: no
    /// duplicates), and the loss sums and integer counts are all-reduced, so every rank gets the one-process result.
    /// Used by the trainer's periodic evaluation and by `disttrain eval`.
    public func evaluateAll(comm: Communicator, batchSize: Int) throws -> EvalStats {
        let shard = EvalSharding.range(count: evalCount, rank: comm.rank, worldSize: comm.worldSize)
        var stats = evaluate(shard, batchSize: batchSize)
        var sums = [stats.lossSum, stats.lossCount]
        try comm.allReduceSum(&sums)
        try comm.allReduceSum(&stats.counts)
        stats.lossSum = sums[0]; stats.lossCount = sums[1]
        return stats
    }
}

/// A classifier's forward/backward: BERT-family encoders and GPT-2 alike.
public protocol SequenceClassifierModel: AnyObject {
    func forward(_ batch: TokenBatch, dropout: DropoutContext?) -> UnsafeBufferPointer<Float>
    func backward(dLogits: UnsafeBufferPointer<Float>)
}
extension EncoderClassifier: SequenceClassifierModel {}
extension GPT2Classifier: SequenceClassifierModel {}

/// The model-specific half of a classification task.
struct ClassifierBackend {
    let model: any SequenceClassifierModel
    /// The full model's parameters (frozen under LoRA).
    let store: ParameterStore
    let tokenizer: any Tokenizer
    let padId: Int32
    let configPath: String
    let initialized: [String]
    /// Writes a loadable Hugging Face folder with the given (or live) weights.
    let save: @Sendable (URL, ParameterStore?) throws -> Void
    /// Set for BERT-family encoders (per-layer all-reduce hooks and the debug probe live there).
    let encoder: EncoderClassifier?
    /// The same model, as LoRA attaches to it.
    let loraModel: any LoRAModel
    /// The class names in force (the head's rows, in class-id order).
    let labels: [String]
    /// The model's sizes and parameter names (layer prefixes, word embeddings), as the Model target spells them.
    let architecture: any ModelArchitecture

    /// The classifier in `folder`, by its kind (BERT family or GPT-2), for sequences of at most `maxLength` tokens
    /// in batches of at most `microBatch`. With `labels` (training), the head is sized for them and re-initialised
    /// from `seed` when the folder's labels differ; nil (inference) uses the folder's trained head, which must exist.
    /// The one place that turns a folder into a classifier: train, eval and predict all come through here.
    static func load(folder: ModelFolder, labels: [String]?, maxLength: Int, seed: UInt64, microBatch: Int) throws -> ClassifierBackend {
        switch folder.config {
        case .encoder:
            return try encoder(folder: folder, labels: labels, maxLength: maxLength, seed: seed, microBatch: microBatch)
        case .gpt2(let config):
            guard folder.kind == .gpt2Classifier || labels != nil else {
                let dir = folder.directory.path
                throw TrainingError("\(folder.configURL.path): this is a GPT-2 language model (\(folder.architecture ?? "GPT2LMHeadModel")), not a classifier; use `disttrain generate --model \(dir) --prompt TEXT` for text, or `disttrain eval --model \(dir) --eval-file FILE` for loss and perplexity", exitCode: 2)
            }
            return try gpt2(folder: folder, config: config, labels: labels, maxLength: maxLength, seed: seed, microBatch: microBatch)
        }
    }

    /// BERT, DistilBERT, MiniLM: a head for `labels` (re-initialised when the checkpoint's labels differ).
    static func encoder(folder: ModelFolder, labels: [String]?, maxLength: Int, seed: UInt64, microBatch: Int) throws -> ClassifierBackend {
        let bundle = try ClassifierBundle(folder: folder, labels: labels, seed: seed)
        guard labels == nil || bundle.config.problemType == .singleLabel else {
            throw TrainingError("\(bundle.config.path): problem_type \(bundle.config.problemType!.rawValue) is not supported by `train` yet; use single_label_classification")
        }
        guard maxLength <= bundle.config.maxPositions else {
            throw TrainingError("--max-length \(maxLength) exceeds the model's max_position_embeddings \(bundle.config.maxPositions); use --max-length \(bundle.config.maxPositions) or less", exitCode: 2)
        }
        let model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: microBatch, maxSeq: maxLength)
        return ClassifierBackend(model: model, store: bundle.store, tokenizer: bundle.tokenizer,
                                 padId: Int32(bundle.config.padTokenId), configPath: bundle.config.path,
                                 initialized: bundle.report.initialized,
                                 save: { dir, w in try bundle.save(to: dir, weights: w) }, encoder: model, loraModel: model,
                                 labels: bundle.config.id2label, architecture: bundle.config)
    }

    /// GPT2ForSequenceClassification (or, given `labels`, a GPT-2 LM checkpoint with a fresh `score` head), pooled
    /// at the last non-padding token; the config must name a pad token.
    static func gpt2(folder: ModelFolder, config: GPT2Config, labels: [String]?, maxLength: Int, seed: UInt64, microBatch: Int) throws -> ClassifierBackend {
        var config = config
        let modelDir = folder.directory
        guard let pad = config.padTokenId else {
            throw TrainingError("\(config.path): GPT-2 classification needs pad_token_id in config.json (transformers pools at the last non-padding token); add \"pad_token_id\": 50256")
        }
        guard maxLength <= config.maxPositions else {
            throw TrainingError("--max-length \(maxLength) exceeds the model's n_positions \(config.maxPositions); use --max-length \(config.maxPositions) or less", exitCode: 2)
        }
        if labels == nil && config.id2label.isEmpty {
            throw TrainingError("\(config.path): the model has no id2label or num_labels, so it is not a trained classifier; train one with `disttrain train` first")
        }
        let reinit = labels.map { config.id2label != $0 } ?? false
        if let labels { config.id2label = labels }
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: true))
        let weights = modelDir.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw TrainingError("\(weights.path): not found; the model folder needs model.safetensors")
        }
        // Training may start a fresh head; inference needs the trained one (a missing head is an error).
        let report = try GPT2Layout.loadClassifier(into: store, from: SafeTensorsFile(url: weights), config: config,
                                                   headOptional: labels != nil, reinitializeHead: reinit, seed: seed)
        let tokenizer: any Tokenizer
        do { tokenizer = try loadTokenizer(directory: modelDir) } catch { throw TrainingError("\(error)") }
        let model: GPT2Classifier
        do { model = try GPT2Classifier(config: config, parameters: store, maxBatch: microBatch, maxSeq: maxLength) } catch {
            throw TrainingError("\(error)")
        }
        let frozen = config
        return ClassifierBackend(model: model, store: store, tokenizer: tokenizer, padId: Int32(pad), configPath: config.path,
                                 initialized: report.initialized, save: { dir, w in
            try GPT2Layout.save(w ?? store, config: frozen, classifier: true, to: dir)
            try FileIO.copyFiles(FileIO.companionFiles, from: modelDir, to: dir)
        }, encoder: nil, loraModel: model, labels: frozen.id2label, architecture: frozen)
    }
}

/// Sequence classification with a BERT-family encoder (BERT, DistilBERT, MiniLM) or GPT-2.
public final class ClassificationTask: TrainingTask, @unchecked Sendable {
    let backend: ClassifierBackend
    var model: any SequenceClassifierModel { backend.model }
    let train: [EncodedExample]
    let eval: [EncodedExample]
    public let labels: [String]
    public let dataFingerprint: String
    public let truncated: Int
    private var dLogits: [Float]
    /// With LoRA: the adapter's plan and its trainable store (the base is frozen and never updated).
    let lora: (plan: LoRAPlan, store: ParameterStore)?

    public var store: ParameterStore { lora?.store ?? backend.store }
    public var trainCount: Int { train.count }
    public var evalCount: Int { eval.count }
    public var trainLengths: [Int] { train.map(\.ids.count) }
    public var configPath: String { backend.configPath }
    public var initialized: [String] { backend.initialized }

    /// Loads the model from `modelDir` (a model folder or a checkpoint) sized for `labels`, and tokenizes the data.
    /// With `config.lora` the model in `modelDir` is the frozen base, and `adapterDir` (a LoRA checkpoint) holds the
    /// adapter to continue from (nil: a fresh adapter from the seed).
    public convenience init(modelDir: URL, adapterDir: URL? = nil, trainSet: TextDataset, evalSet: TextDataset?, labels: [String],
                            config: TrainConfig, microBatch: Int) throws {
        try self.init(folder: ModelFolder.open(modelDir), adapterDir: adapterDir, trainSet: trainSet, evalSet: evalSet,
                      labels: labels, config: config, microBatch: microBatch)
    }

    /// As `init(modelDir:…)`, for an opened folder.
    public init(folder: ModelFolder, adapterDir: URL? = nil, trainSet: TextDataset, evalSet: TextDataset?, labels: [String],
                config: TrainConfig, microBatch: Int) throws {
        let modelDir = folder.directory
        self.labels = labels
        dataFingerprint = trainSet.fingerprint
        backend = try .load(folder: folder, labels: labels, maxLength: config.maxLength, seed: config.seed, microBatch: microBatch)
        if config.matmulPrecision == .bf16 {
            guard let model = backend.encoder else {
                throw TrainingError("--bf16: bf16 matrix products are implemented for BERT-family encoders only; drop --bf16 for GPT-2", exitCode: 2)
            }
            model.matmulPrecision = .bf16
        }
        let tokenizer = backend.tokenizer, maxLength = config.maxLength
        let (trainEnc, t1) = try Self.encode(trainSet, tokenizer: tokenizer, maxLength: maxLength)
        let (evalEnc, t2) = try evalSet.map { try Self.encode($0, tokenizer: tokenizer, maxLength: maxLength) } ?? ([], 0)
        train = trainEnc
        eval = evalEnc
        truncated = t1 + t2
        dLogits = [Float](repeating: 0, count: microBatch * labels.count)
        if var lc = config.lora {
            lc.baseModelNameOrPath = lc.baseModelNameOrPath ?? modelDir.path
            lora = try attachLoRA(lc, to: backend.loraModel, adapterDir: adapterDir, seed: config.seed)
        } else {
            lora = nil
        }
    }

    /// Tokenizes every example (special tokens on), truncating to `maxLength`; returns how many were truncated.
    static func encode(_ ds: TextDataset, tokenizer: any Tokenizer, maxLength: Int) throws -> ([EncodedExample], Int) {
        var truncated = 0
        let out = try ds.examples.map { ex -> EncodedExample in
            var enc = try tokenizer.encode(ex.text, pair: ex.textPair, addSpecialTokens: true, maxLength: nil)
            if enc.ids.count > maxLength {
                truncated += 1
                enc = try tokenizer.encode(ex.text, pair: ex.textPair, addSpecialTokens: true, maxLength: maxLength)
            }
            return EncodedExample(ids: enc.ids, typeIds: enc.typeIds, label: ex.label ?? 0)
        }
        return (out, truncated)
    }

    /// Pads `indices` of `examples` into a TokenBatch (dynamic padding to the longest example).
    func makeBatch(_ indices: [Int], from examples: [EncodedExample]) -> TokenBatch {
        let T = indices.map { examples[$0].ids.count }.max() ?? 1
        let B = indices.count
        let pad = backend.padId
        var ids = [Int32](repeating: pad, count: B * T)
        var mask = [Int32](repeating: 0, count: B * T)
        var types = [Int32](repeating: 0, count: B * T)
        for (b, i) in indices.enumerated() {
            let e = examples[i]
            for t in 0..<e.ids.count {
                ids[b * T + t] = e.ids[t]
                mask[b * T + t] = 1
                types[b * T + t] = t < e.typeIds.count ? e.typeIds[t] : 0
            }
        }
        return TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask, tokenTypeIds: types, sampleIndices: indices)
    }

    public func lossCount(_ indices: [Int]) -> Int { indices.count }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        let C = labels.count
        let tb = makeBatch(indices, from: train)
        let logits = model.forward(tb, dropout: dropout)
        let lab = indices.map { Int32(train[$0].label) }
        let lossSum = dLogits.withUnsafeMutableBufferPointer { d in
            Loss.crossEntropy(logits: logits, labels: lab, batch: indices.count, classes: C, scale: scale, dLogits: d)
        }
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: UnsafeBufferPointer(rebasing: $0[0..<(indices.count * C)])) }
        return (lossSum, indices.reduce(0) { $0 + train[$1].ids.count })
    }

    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats {
        let C = labels.count
        var stats = EvalStats(counts: [Int64](repeating: 0, count: C * C))
        var scratch = [Float](repeating: 0, count: batchSize * C)
        // Batches of similar length (longest first): far less padding than file order, and the counts and loss
        // sums do not depend on the order in which samples are scored.
        let order = range.sorted { eval[$0].ids.count != eval[$1].ids.count ? eval[$0].ids.count > eval[$1].ids.count : $0 < $1 }
        var i = 0
        while i < order.count {
            let idx = Array(order[i..<min(i + batchSize, order.count)])
            i += idx.count
            let logits = model.forward(makeBatch(idx, from: eval), dropout: nil)
            let lab = idx.map { Int32(eval[$0].label) }
            stats.lossSum += scratch.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: lab, batch: idx.count, classes: C, scale: 0, dLogits: $0)
            }
            stats.lossCount += Double(idx.count)
            for (b, j) in idx.enumerated() {
                var best = 0
                for c in 1..<max(C, 1) where logits[b * C + c] > logits[b * C + best] { best = c }
                stats.counts[eval[j].label * C + best] += 1
            }
        }
        return stats
    }

    public func metrics(_ stats: EvalStats) -> [String: Double] {
        let C = labels.count
        let matrix = (0..<C).map { Array(stats.counts[($0 * C)..<($0 * C + C)]) }
        var out: [String: Double] = [:]
        for (k, v) in ClassificationMetrics(confusion: matrix, labels: labels).asDictionary(prefix: "eval_") {
            if let d = v as? Double { out[k] = d } else if let i = v as? Int64 { out[k] = Double(i) } else if let i = v as? Int { out[k] = Double(i) }
        }
        out["eval_loss"] = stats.lossSum / max(stats.lossCount, 1)
        out["eval_samples"] = stats.lossCount
        return out
    }

    /// The confusion matrix [true][predicted] from all-reduced statistics.
    public func confusion(_ stats: EvalStats) -> [[Int64]] {
        let C = labels.count
        return (0..<C).map { Array(stats.counts[($0 * C)..<($0 * C + C)]) }
    }

    /// Full fine-tuning writes a Hugging Face model folder; LoRA writes the PEFT adapter (adapter_config.json +
    /// adapter_model.safetensors, which `peft` loads and `disttrain merge` folds into the base).
    public func save(to dir: URL, weights: ParameterStore?) throws {
        if let lora {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try PEFTAdapter.save(plan: lora.plan, store: weights ?? lora.store, to: dir)
            // PEFT keeps no label names; `merge` and users read them from here (one per line, in class-id order).
            try FileIO.writeAtomically(Data((labels.joined(separator: "\n") + "\n").utf8), to: dir.appendingPathComponent("labels.txt"))
        } else {
            try backend.save(dir, weights)
        }
    }
}

/// Attaches LoRA to `model` with a frozen base: the adapter in `adapterDir` (a LoRA checkpoint to continue from), or a
/// fresh one for `config` from `seed`. Returns the plan and the trainable store; LoRA errors become usage errors.
func attachLoRA(_ config: LoRAConfig, to model: any LoRAModel, adapterDir: URL?, seed: UInt64) throws -> (plan: LoRAPlan, store: ParameterStore) {
    do {
        if let adapterDir {
            let adapter = try PEFTAdapter.load(adapterDir, into: model, freezeBase: true)
            return (adapter.plan, adapter.store)
        }
        let trainable = try model.enableLoRA(config, seed: seed)
        return (model.adapter!.plan, trainable)
    } catch let e as LoRAError {
        throw TrainingError("\(e)", exitCode: 2)
    }
}
