// RewardTask: a reward model trained on human-preference pairs, as TRL 1.16.0's RewardTrainer trains one: a sequence
// classifier with ONE output (BERT family, a base encoder with a fresh head, or GPT2ForSequenceClassification) scores
// the chosen and the rejected text of each pair, and the loss is −log σ(r_chosen − r_rejected − margin) (margin: the
// row's optional "margin", else 0), plus TRL's optional centring term c·(r_chosen + r_rejected)² (--center-rewards-
// coefficient; off by default, as in TRL).
//
// Data as TRL prepares it (trl/trainer/reward_trainer.py, `_prepare_dataset`):
//   - the tokenizer's EOS token text is appended to chosen and to rejected unless it already ends them; the prompt (if
//     any) is prepended as plain text (prompt + response), and the whole is tokenized with the tokenizer's special
//     tokens. BERT-family tokenizers have no EOS token (TRL 1.16.0 then fails with `str.endswith(None)`); for them
//     nothing is appended ([CLS] prompt+response [SEP]).
//   - pairs whose chosen or rejected sequence is longer than --max-length are dropped, not truncated (TRL filters
//     them); they are counted and reported.
// One sample is one pair: the trainer shards and batches pair indices, so a pair is never split across ranks or
// micro-batches; a micro-batch of k pairs runs 2k sequences (chosen first, then rejected, as TRL's collator), and the
// loss is normalised by the global number of pairs.
// Metrics (TRL's names, eval_ prefixed): eval_loss, eval_accuracy (share of pairs with r_chosen > r_rejected),
// eval_margin (mean r_chosen − r_rejected), eval_mean_reward, eval_samples (pairs). TRL averages them per batch;
// here they are exact over the whole eval set.
// Deliberately not here: reading the preference file (PreferenceData), the forward passes (ClassifierBackend: the one
// inference path `predict` and `eval` share), the loop (Trainer).
import Dist
import Foundation
import Model
import Tokenizers

public final class RewardTask: FolderTrainingTask, @unchecked Sendable {
    let backend: ClassifierBackend
    var model: any SequenceClassifierModel { backend.model }
    /// Two sequences per pair: chosen at 2i, rejected at 2i + 1.
    let train: [EncodedExample]
    let eval: [EncodedExample]
    let trainMargins: [Double]
    let evalMargins: [Double]
    /// Pairs dropped because a sequence was longer than the maximum length (as TRL filters them).
    public let trainSkipped: Int
    public let evalSkipped: Int
    /// The longest sequence kept.
    public let maxLength: Int
    public let labels = ["LABEL_0"]
    public let dataFingerprint: String
    public let truncated = 0
    /// TRL's center_rewards_coefficient (0: off).
    let center: Double
    private var dLogits: [Float]
    /// With LoRA: the adapter's plan and its trainable store (the head is trained as modules_to_save, as peft does).
    let lora: (plan: LoRAPlan, store: ParameterStore)?

    public var store: ParameterStore { lora?.store ?? backend.store }
    public var trainCount: Int { train.count / 2 }
    public var evalCount: Int { eval.count / 2 }
    public var trainLengths: [Int] { (0..<trainCount).map { max(train[2 * $0].ids.count, train[2 * $0 + 1].ids.count) } }
    public var configPath: String { backend.configPath }
    public var initialized: [String] { backend.initialized }

    /// Training: pairs from --train-file; the eval pairs from --eval-file, else a --validation-split of the train pairs.
    public convenience init(folder: ModelFolder, adapterDir: URL?, trainConfig config: TrainConfig, microBatch: Int) throws {
        if config.labelsFile != nil || config.columns != ColumnOptions() {
            throw TrainingError("--labels, --text-column, --text-pair-column and --label-column do not apply to --task reward: a preference file has \"chosen\" and \"rejected\" (and optionally \"prompt\" and \"margin\") on every line", exitCode: 2)
        }
        var trainSet = try PreferenceData.load(config.trainFile)
        guard !trainSet.pairs.isEmpty else {
            throw TrainingError("\(config.trainFile.path): no preference pairs; the file must hold one {\"prompt\", \"chosen\", \"rejected\"} or {\"chosen\", \"rejected\"} object per line")
        }
        var evalSet: PreferenceDataset?
        if let evalFile = config.evalFile {
            evalSet = try PreferenceData.load(evalFile)
        } else if config.validationSplit > 0 {
            (trainSet, evalSet) = try Self.split(trainSet, fraction: config.validationSplit, seed: config.seed)
        }
        try self.init(folder: folder, adapterDir: adapterDir, trainSet: trainSet, evalSet: evalSet, config: config, microBatch: microBatch)
    }

    /// Loads the classifier in `folder` with a one-output head (re-initialised from the seed unless the folder already
    /// is a reward model) and tokenizes the pairs as TRL does.
    public init(folder: ModelFolder, adapterDir: URL? = nil, trainSet: PreferenceDataset, evalSet: PreferenceDataset?,
                config: TrainConfig, microBatch: Int) throws {
        if config.matmulPrecision == .bf16, case .gpt2 = folder.config {
            throw TrainingError("--bf16: bf16 matrix products are implemented for BERT-family encoders only; drop --bf16 for GPT-2", exitCode: 2)
        }
        backend = try .load(folder: folder, labels: ["LABEL_0"], maxLength: config.maxLength, seed: config.seed,
                            microBatch: 2 * microBatch, reward: true)
        backend.encoder?.matmulPrecision = config.matmulPrecision
        maxLength = config.maxLength
        center = config.centerRewardsCoefficient ?? 0
        dataFingerprint = trainSet.fingerprint
        let eos = Self.eosText(folder: folder, tokenizer: backend.tokenizer)
        (train, trainMargins, trainSkipped) = try Self.encode(trainSet, backend: backend, eos: eos, maxLength: maxLength)
        guard !train.isEmpty else {
            throw TrainingError("\(trainSet.file): all \(trainSet.pairs.count) pairs have a chosen or rejected text longer than --max-length \(maxLength) tokens and were skipped (as TRL filters them); raise --max-length or shorten the texts", exitCode: 2)
        }
        if let evalSet {
            (eval, evalMargins, evalSkipped) = try Self.encode(evalSet, backend: backend, eos: eos, maxLength: maxLength)
        } else {
            (eval, evalMargins, evalSkipped) = ([], [], 0)
        }
        dLogits = [Float](repeating: 0, count: 2 * microBatch)
        if var lc = config.lora {
            lc.baseModelNameOrPath = lc.baseModelNameOrPath ?? folder.directory.path
            lora = try attachLoRA(lc, to: backend.loraModel, adapterDir: adapterDir, seed: config.seed)
        } else {
            lora = nil
        }
    }

    /// Evaluation only (`disttrain eval` on a reward model): the model in `folder` (with the PEFT adapter in
    /// `adapterDir` run unmerged) on the preference pairs of `evalFile`; pairs longer than `maxLength` (nil: min(128,
    /// the model's positions)) are skipped and counted, as in training. `batchSize` pairs per forward pass.
    public init(folder: ModelFolder, adapterDir: URL?, evalFile: URL, maxLength: Int?, batchSize: Int) throws {
        let limit = try folder.maxLength(maxLength)
        backend = try .forInference(folder: folder, adapterDir: adapterDir, maxLength: limit, batchSize: 2 * batchSize)
        guard backend.labels.count == 1 else {
            throw TrainingError("\(folder.configURL.path): this classifier has \(backend.labels.count) outputs; preference pairs need a reward model (one output, e.g. from `disttrain train --task reward`)", exitCode: 2)
        }
        self.maxLength = limit
        let data = try PreferenceData.load(evalFile)
        (eval, evalMargins, evalSkipped) = try Self.encode(data, backend: backend, eos: Self.eosText(folder: folder, tokenizer: backend.tokenizer),
                                                           maxLength: limit)
        guard !eval.isEmpty else {
            throw TrainingError("\(data.file): no preference pairs to evaluate" + (evalSkipped > 0 ? " (all \(evalSkipped) are longer than --max-length \(limit) tokens; raise --max-length)" : "; the file must hold one {\"prompt\", \"chosen\", \"rejected\"} or {\"chosen\", \"rejected\"} object per line"), exitCode: 2)
        }
        train = []; trainMargins = []; trainSkipped = 0
        center = 0
        dataFingerprint = ""
        dLogits = []
        lora = nil
    }

    /// Whether `folder` (with the adapter in `adapterDir`, if any) runs as a reward model: a one-output classifier
    /// (ModelFolder.isRewardModel), or an adapter whose trained head has one row.
    public static func isRewardModel(folder: ModelFolder, adapterDir: URL?) throws -> Bool {
        guard folder.kind.isClassifier || adapterDir != nil else { return false }
        if let adapterDir, let labels = try ClassifierBundle.labelsForAdapter(modelDir: folder.directory, adapterDir: adapterDir) {
            return labels.count == 1
        }
        return folder.isRewardModel
    }

    /// The EOS text TRL appends to each response: GPT-2's eos token (config eos_token_id, else 50256) as the tokenizer
    /// spells it; nil for BERT-family tokenizers, which have none.
    static func eosText(folder: ModelFolder, tokenizer: any Tokenizer) -> String? {
        guard case .gpt2(let c) = folder.config else { return nil }
        return tokenizer.token(forId: Int32(c.eosTokenId ?? 50256)).flatMap { tokenizer.specialTokens[$0] != nil ? $0 : nil }
    }

    /// The text TRL's RewardTrainer tokenizes for one response: `eos` appended unless the response already ends with
    /// it, then the prompt (if any) in front.
    public static func text(prompt: String?, response: String, eos: String?) -> String {
        var r = response
        if let eos, !r.hasSuffix(eos) { r += eos }
        return (prompt ?? "") + r
    }

    /// Tokenizes every pair (chosen at 2i, rejected at 2i + 1) with the tokenizer's special tokens; pairs with a
    /// sequence longer than `maxLength` are skipped and counted.
    static func encode(_ ds: PreferenceDataset, backend: ClassifierBackend, eos: String?, maxLength: Int)
        throws -> (seqs: [EncodedExample], margins: [Double], skipped: Int) {
        var seqs: [EncodedExample] = [], margins: [Double] = [], skipped = 0
        for p in ds.pairs {
            let c = try backend.tokenizer.encode(text(prompt: p.prompt, response: p.chosen, eos: eos), pair: nil, addSpecialTokens: true, maxLength: nil)
            let r = try backend.tokenizer.encode(text(prompt: p.prompt, response: p.rejected, eos: eos), pair: nil, addSpecialTokens: true, maxLength: nil)
            guard c.ids.count <= maxLength, r.ids.count <= maxLength else { skipped += 1; continue }
            seqs.append(try backend.checked(c))
            seqs.append(try backend.checked(r))
            margins.append(p.margin ?? 0)
        }
        return (seqs, margins, skipped)
    }

    /// A seeded hold-out of `fraction` of the pairs (the same permutation rule as DataLoader.split).
    static func split(_ ds: PreferenceDataset, fraction: Double, seed: UInt64) throws -> (PreferenceDataset, PreferenceDataset) {
        let n = ds.pairs.count
        let exact = Double(n) * fraction
        let nVal = max(1, Int((exact - exact * 1e-12).rounded(.up)))
        guard nVal < n else {
            throw DataError(file: ds.file, line: nil, problem: "validation split \(fraction) of \(n) pair\(n == 1 ? "" : "s") leaves no training pairs",
                            fix: "use a smaller --validation-split, more data, or a separate --eval-file")
        }
        var order = Array(0..<n)
        var rng = DataSplitRNG(seed: seed)
        for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next(below: UInt64(i + 1)))) }
        func part(_ idx: ArraySlice<Int>, _ name: String) -> PreferenceDataset {
            PreferenceDataset(file: ds.file, pairs: idx.sorted().map { ds.pairs[$0] },
                              fingerprint: "\(ds.fingerprint)|split|\(fraction)|\(seed)|\(name)")
        }
        return (part(order[nVal...], "train"), part(order[..<nVal], "validation"))
    }

    /// −log σ(d) and its derivative −σ(−d), stably.
    static func pairLoss(_ d: Double) -> (loss: Double, grad: Double) {
        let loss = d > 0 ? Foundation.log1p(Foundation.exp(-d)) : -d + Foundation.log1p(Foundation.exp(d))
        let s = d > 0 ? Foundation.exp(-d) / (1 + Foundation.exp(-d)) : 1 / (1 + Foundation.exp(d))   // σ(−d)
        return (loss, -s)
    }

    /// The sequences of `pairs` as one batch: every chosen first, then every rejected (TRL's collator order).
    func sequenceIndices(_ pairs: [Int]) -> [Int] { pairs.map { 2 * $0 } + pairs.map { 2 * $0 + 1 } }

    public func lossCount(_ indices: [Int]) -> Int { indices.count }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        let k = indices.count
        let seq = sequenceIndices(indices)
        let rewards = model.forward(backend.makeBatch(seq, from: train), dropout: dropout)
        var lossSum = 0.0
        for (b, i) in indices.enumerated() {
            let rc = Double(rewards[b]), rr = Double(rewards[k + b])
            let (loss, g) = Self.pairLoss(rc - rr - trainMargins[i])
            // TRL's centring term c·(r_chosen + r_rejected)² per pair (its mean over the batch is TRL's term).
            let sum = rc + rr
            lossSum += loss + center * sum * sum
            dLogits[b] = Float((g + 2 * center * sum) * Double(scale))
            dLogits[k + b] = Float((-g + 2 * center * sum) * Double(scale))
        }
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: UnsafeBufferPointer(rebasing: $0[0..<(2 * k)])) }
        return (lossSum, seq.reduce(0) { $0 + train[$1].ids.count })
    }

    /// The rewards of the eval sequences of `pairs` (chosen at 2j, rejected at 2j + 1 for the j-th pair), through the
    /// one inference path, `batchSize` pairs per forward pass.
    func rewards(_ pairs: [Int], batchSize: Int) -> [Float] {
        var position = [Int: Int]()
        for (j, p) in pairs.enumerated() { position[2 * p] = 2 * j; position[2 * p + 1] = 2 * j + 1 }
        var out = [Float](repeating: 0, count: 2 * pairs.count)
        backend.forEachBatch(eval, pairs.flatMap { [2 * $0, 2 * $0 + 1] }, batchSize: 2 * batchSize) { idx, logits in
            for (b, s) in idx.enumerated() { out[position[s]!] = logits[b] }
        }
        return out
    }

    /// Loss sum and pair count; counts = [pairs with r_chosen > r_rejected]; sums = [Σ (r_chosen − r_rejected), Σ rewards].
    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats {
        var stats = EvalStats(counts: [0], sums: [0, 0])
        let pairs = Array(range)
        let r = rewards(pairs, batchSize: batchSize)
        for (j, p) in pairs.enumerated() {
            let rc = Double(r[2 * j]), rr = Double(r[2 * j + 1])
            stats.lossSum += Self.pairLoss(rc - rr - evalMargins[p]).loss + center * (rc + rr) * (rc + rr)
            stats.lossCount += 1
            if rc > rr { stats.counts[0] += 1 }
            stats.sums[0] += rc - rr
            stats.sums[1] += rc + rr
        }
        return stats
    }

    public func metrics(_ stats: EvalStats) -> [String: Double] {
        let n = max(stats.lossCount, 1)
        return ["eval_loss": stats.lossSum / n, "eval_accuracy": Double(stats.counts.first ?? 0) / n,
                "eval_margin": (stats.sums.first ?? 0) / n, "eval_mean_reward": (stats.sums.last ?? 0) / (2 * n),
                "eval_samples": stats.lossCount]
    }

    /// The eval metric names `--metric-for-best-model` accepts (default: accuracy, as for classification).
    public static let metricNames = ["accuracy", "loss", "margin", "mean_reward"]

    /// Full fine-tuning writes a Hugging Face …ForSequenceClassification folder (num_labels 1); LoRA the PEFT adapter
    /// with the head as modules_to_save (and labels.txt, as classification writes it).
    public func save(to dir: URL, weights: ParameterStore?) throws {
        if let lora {
            try saveAdapterWithLabels(plan: lora.plan, store: weights ?? lora.store, labels: labels, to: dir)
        } else {
            try backend.save(dir, weights)
        }
    }

    // MARK: gradient all-reduce layout (as ClassificationTask's, over both sequences of each pair)

    var wordSync: WordTableSync { WordTableSync(store: backend.store, architecture: backend.architecture, usesLoRA: lora != nil, padId: backend.padId) }
    public var gradientSync: GradientSyncLayout { wordSync.layout }
    public func touchedRows(_ indices: [Int]) -> [[Int]] { wordSync.touchedRows(sequenceIndices(indices).lazy.map { self.train[$0].ids }) }

    public func setBackwardHook(_ hook: ((Int) -> Void)?) {
        guard lora == nil else { return }
        backend.setBackwardHook(hook)
    }

    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { backend.setProbe(probe) }
}

/// `eval` of a reward model (TaskFactory.inference): pairwise accuracy, mean margin, loss and mean reward on
/// preference pairs through RewardTask's evaluation (the trainer's); pairs longer than --max-length are skipped and
/// counted, as in training. `predict` scores texts as a classifier's inference does (Predictor knows reward models).
public struct RewardInference: InferenceTask {
    let folder: ModelFolder
    let adapterDir: URL?
    let options: InferenceOptions

    public func evaluate(evalFile: String, comm: Communicator, warn: (String) -> Void) throws -> [String: Any] {
        if options.blockSize != nil || options.lmPerRow || options.columns.textPair != nil {
            throw TrainingError("--block-size, --lm-per-row and --text-pair-column do not apply to a reward model; \(options.model) takes a preference file ({\"prompt\", \"chosen\", \"rejected\"} lines)", exitCode: 2)
        }
        try options.jsonlOnly("a reward model's preference data")
        let task = try RewardTask(folder: folder, adapterDir: adapterDir, evalFile: URL(fileURLWithPath: evalFile),
                                  maxLength: options.maxLength, batchSize: options.batchSize)
        if comm.isRoot && task.evalSkipped > 0 {
            warn("warning: \(evalFile): \(task.evalSkipped) pair\(task.evalSkipped == 1 ? "" : "s") with a chosen or rejected text longer than \(task.maxLength) tokens skipped (as TRL filters them); raise --max-length to score them")
        }
        return task.metrics(try task.evaluateAll(comm: comm, batchSize: options.batchSize))
    }

    public func predictLines(input: String, warn: (String) -> Void) throws -> [String] {
        try SequenceClassifierInference(folder: folder, adapterDir: adapterDir, options: options).predictLines(input: input, warn: warn)
    }
}
