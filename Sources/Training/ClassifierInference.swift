// ClassifierInference: a sequence classifier (BERT-family encoder or GPT2ForSequenceClassification) loaded from its
// folder, and the one inference path over it: examples batched by similar length (longest first), padded, run
// forward. Training-time evaluation (ClassificationTask.evaluate), `eval` and `predict` all score through
// `ClassifierBackend.forEachBatch`, so the three agree to the bit.
// `SequenceClassifierInference` (end of file) is what `eval` and `predict` run on a sequence classifier.
// Deliberately not here: the loss and metrics (ClassificationTask, Metrics.swift), file formats (DataLoader).
import Dist
import Foundation
import Model
import Tokenizers

/// One tokenized example of a sequence-level task (classification, reward pairs): what `ClassifierBackend`
/// batches; `label` is the class id (0 where there is none, as in prediction).
struct EncodedExample {
    var ids: [Int32]
    var typeIds: [Int32]
    var label: Int
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
    /// `reward`: training a reward model (one output, saved with problem_type "regression", as transformers infers
    /// for num_labels 1).
    static func load(folder: ModelFolder, labels: [String]?, maxLength: Int, seed: UInt64, microBatch: Int,
                     reward: Bool = false) throws -> ClassifierBackend {
        let a: any ModelArchitecture = switch folder.config { case .encoder(let c): c; case .gpt2(let c): c }
        try ModelFolder.checkArena(batch: microBatch, seq: min(maxLength, a.maxPositions), architecture: a)
        switch folder.config {
        case .encoder:
            return try encoder(folder: folder, labels: labels, maxLength: maxLength, seed: seed, microBatch: microBatch, reward: reward)
        case .gpt2(let config):
            guard folder.kind == .gpt2Classifier || labels != nil else {
                let dir = folder.directory.path
                throw TrainingError("\(folder.configURL.path): this is a GPT-2 language model (\(folder.architecture ?? "GPT2LMHeadModel")), not a classifier; use `disttrain generate --model \(dir) --prompt TEXT` for text, or `disttrain eval --model \(dir) --eval-file FILE` for loss and perplexity", exitCode: 2)
            }
            return try gpt2(folder: folder, config: config, labels: labels, maxLength: maxLength, seed: seed, microBatch: microBatch, reward: reward)
        }
    }

    /// BERT, DistilBERT, MiniLM: a head for `labels` (re-initialised when the checkpoint's labels differ).
    static func encoder(folder: ModelFolder, labels: [String]?, maxLength: Int, seed: UInt64, microBatch: Int,
                        reward: Bool = false) throws -> ClassifierBackend {
        let bundle = try ClassifierBundle(folder: folder, labels: labels, problemType: reward ? .regression : nil, seed: seed)
        guard labels == nil || bundle.config.problemType == (reward ? .regression : .singleLabel) else {
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
    static func gpt2(folder: ModelFolder, config: GPT2Config, labels: [String]?, maxLength: Int, seed: UInt64, microBatch: Int,
                     reward: Bool = false) throws -> ClassifierBackend {
        var config = config
        if reward { config.raw["problem_type"] = ProblemType.regression.rawValue }
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
        let store: ParameterStore, report: LoadReport
        if let initSeed = folder.initSeed {
            // train --init-from-config: every weight (score included) as transformers initialises the classifier.
            try ModelFolder.checkParameters(of: config, path: config.path)
            (store, report) = (GPT2Layout.initializedStore(config: config, classifier: true, seed: initSeed), LoadReport.fromConfig)
        } else {
            let weights = modelDir.appendingPathComponent("model.safetensors")
            guard FileManager.default.fileExists(atPath: weights.path) else {
                throw TrainingError("\(weights.path): not found; the model folder needs model.safetensors")
            }
            // Training may start a fresh head; inference needs the trained one (a missing head is an error).
            (store, report) = try GPT2Layout.loadClassifierStore(from: SafeTensorsFile(url: weights), config: config,
                                                                 headOptional: labels != nil, reinitializeHead: reinit, seed: seed)
        }
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

    /// Pads `indices` of `examples` into a TokenBatch (dynamic padding to the longest example).
    func makeBatch(_ indices: [Int], from examples: [EncodedExample]) -> TokenBatch {
        let T = indices.map { examples[$0].ids.count }.max() ?? 1
        let B = indices.count
        let pad = padId
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

    /// An encoding the model can embed, or an error naming the tokenizer: token ids within vocab_size (and token type
    /// ids within type_vocab_size) — a tokenizer that does not belong to the model would otherwise index past its tables.
    func checked(_ e: Encoding) throws -> EncodedExample {
        let vocab = architecture.vocabSize
        if let bad = e.ids.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw TrainingError("\(configPath): the tokenizer produced token id \(bad), outside the model's vocab_size \(vocab); the tokenizer files do not belong to this model")
        }
        if let enc = encoder, enc.config.family == .bert,
           let bad = e.typeIds.first(where: { $0 < 0 || Int($0) >= enc.config.typeVocabSize }) {
            throw TrainingError("\(configPath): token type id \(bad) (a text pair) is outside the model's type_vocab_size \(enc.config.typeVocabSize); drop the second text or use a model with token types")
        }
        return EncodedExample(ids: e.ids, typeIds: e.typeIds, label: 0)
    }

    /// The one inference path: runs the model over `examples[indices]` in batches of at most `batchSize` examples of
    /// similar length (longest first, ties in index order: far less padding than file order, and results do not depend
    /// on the order the caller lists them in), calling `body(batchIndices, logits [B, numLabels])` for each batch.
    func forEachBatch(_ examples: [EncodedExample], _ indices: [Int], batchSize: Int,
                      _ body: ([Int], UnsafeBufferPointer<Float>) -> Void) {
        let order = indices.sorted {
            examples[$0].ids.count != examples[$1].ids.count ? examples[$0].ids.count > examples[$1].ids.count : $0 < $1
        }
        var i = 0
        while i < order.count {
            let idx = Array(order[i..<min(i + batchSize, order.count)])
            i += idx.count
            body(idx, model.forward(makeBatch(idx, from: examples), dropout: nil))
        }
    }

    /// The trained classifier in `folder` for inference, with the PEFT adapter in `adapterDir` (if any) attached
    /// unmerged; a base without a head, or with a head for other labels, takes the adapter's labels.
    static func forInference(folder: ModelFolder, adapterDir: URL?, maxLength: Int, batchSize: Int) throws -> ClassifierBackend {
        if let adapterDir { try AdapterBase.check(folder: folder, adapterDir: adapterDir) }
        let labels = try adapterDir.flatMap { try ClassifierBundle.labelsForAdapter(modelDir: folder.directory, adapterDir: $0) }
        let backend = try ClassifierBackend.load(folder: folder, labels: labels, maxLength: maxLength, seed: 0, microBatch: batchSize)
        try loadInferenceAdapter(adapterDir, into: backend.loraModel)
        return backend
    }
}

/// Inference with a PEFT adapter (`--adapter`): loads it unmerged into `model` over the frozen base; its errors are
/// usage errors naming the flag. Nothing without an adapter.
func loadInferenceAdapter(_ adapterDir: URL?, into model: any LoRAModel) throws {
    guard let adapterDir else { return }
    do { try PEFTAdapter.load(adapterDir, into: model, freezeBase: true) } catch let e as LoRAError {
        throw TrainingError("--adapter \(adapterDir.path): \(e.message)", exitCode: 2)
    }
}

/// A LoRA checkpoint of a task with class names: the PEFT adapter plus labels.txt (PEFT keeps no label names; `merge`
/// and users read them from there, one per line in class-id order). Shared by classification, reward and token tasks.
func saveAdapterWithLabels(plan: LoRAPlan, store: ParameterStore, labels: [String], to dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try PEFTAdapter.save(plan: plan, store: store, to: dir)
    try FileIO.writeAtomically(Data((labels.joined(separator: "\n") + "\n").utf8), to: dir.appendingPathComponent("labels.txt"))
}

extension ClassifierBackend {
    /// Calls `hook(k)` as each layer's gradient is final (full fine-tuning of an encoder or a GPT-2 classifier).
    func setBackwardHook(_ hook: ((Int) -> Void)?) {
        if let enc = encoder {
            enc.onLayerBackward = GradientSyncLayout.stageHook(hook, layers: enc.config.layers)
        } else if let gpt = model as? GPT2Classifier {
            gpt.onLayerBackward = GradientSyncLayout.stageHook(hook, layers: gpt.config.layers)
        }
    }

    func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) {
        encoder?.probe = probe
        (model as? GPT2Classifier)?.probe = probe
    }
}

/// `eval` and `predict` of a sequence classifier (TaskFactory.inference): `eval` through ClassificationTask's
/// evaluation (the trainer's: accuracy, F1, per-class scores, the confusion matrix, eval_loss), `predict` through
/// `Predictor` ({"text", "label", "probs", "logits"}; a reward model, one output, {"text", "reward"}).
public struct SequenceClassifierInference: InferenceTask {
    let folder: ModelFolder
    let adapterDir: URL?
    let options: InferenceOptions

    public func evaluate(evalFile: String, comm: Communicator, warn: (String) -> Void) throws -> [String: Any] {
        if options.blockSize != nil || options.lmPerRow {
            throw TrainingError("--block-size and --lm-per-row apply to GPT-2 language models only; \(options.model) is a classifier", exitCode: 2)
        }
        let task: ClassificationTask
        do {
            task = try ClassificationTask(folder: folder, adapterDir: adapterDir, evalFile: URL(fileURLWithPath: evalFile),
                                          columns: options.columns, maxLength: options.maxLength, batchSize: options.batchSize,
                                          format: try options.tableFormat())
        } catch let e as DataError where e.fix.contains("--labels") {
            // The loader's advice is train's (`--labels FILE`); eval has no such flag: the classes are the model's.
            throw DataError(file: e.file, line: e.line, problem: e.problem,
                            fix: "correct the label; \(options.model) knows only the classes of its config.json id2label (data with other classes needs a model trained on them)")
        }
        let stats = try task.evaluateAll(comm: comm, batchSize: options.batchSize)
        var result = ClassificationMetrics(confusion: task.confusion(stats), labels: task.labels).asDictionary(prefix: "eval_")
        result["eval_loss"] = stats.lossSum / max(stats.lossCount, 1)
        return result
    }

    /// JSONL/CSV/TSV texts in; a language-model folder is refused by `Predictor` with its pointer to `generate`.
    public func predictLines(input: String, warn: (String) -> Void) throws -> [String] {
        let predictor = try Predictor(modelDir: folder.directory, adapterDir: adapterDir, maxLength: options.maxLength,
                                      batchSize: options.batchSize)
        let data = try DataLoader.loadTexts(URL(fileURLWithPath: input), columns: options.columns, format: options.dataFormat?.table)
        let preds = try predictor.predict(data.examples.map { ($0.text, $0.textPair) })
        var out = PredictOutput()
        for (ex, p) in zip(data.examples, preds) {
            // A reward model (one output, e.g. from `train --task reward`): its score.
            var obj: [String: Any] = predictor.isReward ? ["text": ex.text, "reward": Double(p.logits[0])]
                                                         : ["text": ex.text, "label": p.label, "probs": p.probs]
            if let pair = ex.textPair { obj["text_pair"] = pair }
            if options.logits && !predictor.isReward { obj["logits"] = p.logits.map(Double.init) }
            // CSV/TSV: blank lines are not rows (as pandas reads them); output row N answers data row N.
            try out.append(obj, line: data.format == .jsonl ? ex.line : nil)
        }
        let cut = preds.filter(\.truncated).count
        if cut > 0 {
            let limit = predictor.maxLength
            let advice = limit < predictor.maxPositions
                ? "raise --max-length (the model takes up to \(predictor.maxPositions)) to keep more"
                : "\(limit) is the model's position limit, so they cannot be scored whole"
            warn("warning: \(input == "-" ? "<stdin>" : input): \(cut) of \(preds.count) input\(preds.count == 1 ? "" : "s") longer than \(limit) tokens \(cut == 1 ? "was" : "were") truncated (the model saw the first \(limit)); \(advice)")
        }
        return out.lines
    }
}
