// ClassificationTask: sequence classification as a training task: labelled texts tokenized once, cross-entropy loss
// over the class logits (normalised by the global example count), evaluation statistics (loss sum and the confusion
// matrix, all-reduced), metrics, and saving the fine-tuned model (a Hugging Face folder, or a PEFT adapter under LoRA).
// The forward passes go through ClassifierBackend (ClassifierInference.swift), as `eval` and `predict` do.
// Deliberately not here: the loop (Trainer), the gradient all-reduce layout (GradientSync.swift).
import Dist
import Foundation
import Model
import Tokenizers

/// Sequence classification with a BERT-family encoder (BERT, DistilBERT, MiniLM) or GPT-2.
public final class ClassificationTask: FolderTrainingTask, @unchecked Sendable {
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

    /// Training: labels from --labels, else from the training file; the eval set from --eval-file, else a
    /// --validation-split of the training file.
    public convenience init(folder: ModelFolder, adapterDir: URL?, trainConfig config: TrainConfig, microBatch: Int) throws {
        let fixedLabels = try config.labelsFile.map { try LabelSet.fromFile($0) }
        var (trainSet, labelSet) = try DataLoader.loadLabeled(config.trainFile, columns: config.columns, labels: fixedLabels,
                                                                format: config.dataFormat)
        guard !trainSet.examples.isEmpty else {
            throw TrainingError("\(config.trainFile.path): no training examples; the file must hold one {\"text\", \"label\"} object per line")
        }
        var evalSet: TextDataset?
        if let evalFile = config.evalFile {
            evalSet = try DataLoader.loadLabeled(evalFile, columns: config.columns, labels: labelSet, format: config.dataFormat).0
        } else if config.validationSplit > 0 {
            let parts = try DataLoader.split(trainSet, validationFraction: config.validationSplit, seed: config.seed)
            trainSet = parts.train
            evalSet = parts.validation
        }
        try self.init(folder: folder, adapterDir: adapterDir, trainSet: trainSet, evalSet: evalSet, labels: labelSet.names,
                      config: config, microBatch: microBatch)
    }

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
            if let model = backend.encoder { model.matmulPrecision = .bf16 }
            else if let model = backend.loraModel as? GPT2Classifier { model.matmulPrecision = .bf16 }
            else {
                throw TrainingError("--bf16: bf16 matrix products are implemented for BERT-family encoders and GPT-2 only; drop --bf16", exitCode: 2)
            }
        }
        let maxLength = config.maxLength, backend = self.backend
        let (trainEnc, t1) = try Self.encode(trainSet, backend: backend, maxLength: maxLength)
        let (evalEnc, t2) = try evalSet.map { try Self.encode($0, backend: backend, maxLength: maxLength) } ?? ([], 0)
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

    /// Evaluation only (`disttrain eval`): the trained classifier in `folder` (with the PEFT adapter in `adapterDir` run
    /// unmerged, as `predict` runs it) on the labelled `evalFile`, whose labels must be among the model's; inputs are
    /// truncated to `maxLength` (nil: min(128, the model's positions)). evaluate/metrics then give the trainer's numbers.
    public init(folder: ModelFolder, adapterDir: URL?, evalFile: URL, columns: ColumnOptions, maxLength: Int?, batchSize: Int,
                format: DataFormat? = nil) throws {
        let maxLength = try folder.maxLength(maxLength)
        backend = try .forInference(folder: folder, adapterDir: adapterDir, maxLength: maxLength, batchSize: batchSize)
        labels = backend.labels
        let (data, _) = try DataLoader.loadLabeled(evalFile, columns: columns, labels: LabelSet(names: labels), format: format)
        guard !data.examples.isEmpty else {
            throw TrainingError("\(evalFile.path): no examples to evaluate; the file must hold one {\"text\", \"label\"} row per example")
        }
        (eval, truncated) = try Self.encode(data, backend: backend, maxLength: maxLength)
        train = []
        dataFingerprint = ""
        dLogits = []
        lora = nil
    }

    /// Tokenizes every example (special tokens on), truncating to `maxLength`; returns how many were truncated.
    static func encode(_ ds: TextDataset, backend: ClassifierBackend, maxLength: Int) throws -> ([EncodedExample], Int) {
        let tokenizer = backend.tokenizer
        var truncated = 0
        let out = try ds.examples.map { ex -> EncodedExample in
            var enc = try tokenizer.encode(ex.text, pair: ex.textPair, addSpecialTokens: true, maxLength: nil)
            if enc.ids.count > maxLength {
                truncated += 1
                enc = try tokenizer.encode(ex.text, pair: ex.textPair, addSpecialTokens: true, maxLength: maxLength)
            }
            var e = try backend.checked(enc)
            e.label = ex.label ?? 0
            return e
        }
        return (out, truncated)
    }

    public func lossCount(_ indices: [Int]) -> Int { indices.count }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        let C = labels.count
        let tb = backend.makeBatch(indices, from: train)
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
        backend.forEachBatch(eval, Array(range), batchSize: batchSize) { idx, logits in
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
            try saveAdapterWithLabels(plan: lora.plan, store: weights ?? lora.store, labels: labels, to: dir)
        } else {
            try backend.save(dir, weights)
        }
    }
}
