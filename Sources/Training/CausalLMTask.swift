// CausalLMTask: fine-tuning a GPT-2-family language model on text ({"text"} lines, packed into blocks with EOS
// between documents, or one example per row) or on prompt→response pairs ({"prompt", "response"}, prompt tokens
// masked from the loss). The loss is normalised by the global count of counted target tokens of the step, across
// micro-batches and ranks (the trainer passes scale = 1/count).
// Deliberately not here: the loop (Trainer), generation (GPT2Generator), GPT-2 classification.
import Dist
import Foundation
import Model
import Tokenizers

public final class CausalLMTask: FolderTrainingTask, @unchecked Sendable {
    let config: GPT2Config
    /// The full model's parameters (frozen under LoRA).
    let baseStore: ParameterStore
    let model: GPT2LMHead
    /// With LoRA: the adapter's plan and its trainable store (the base is frozen and never updated).
    let lora: (plan: LoRAPlan, store: ParameterStore)?
    public var store: ParameterStore { lora?.store ?? baseStore }
    let train: [LMExample]
    let eval: [LMExample]
    let eos: Int32
    let modelDir: URL
    public let dataFingerprint: String
    public let truncated: Int
    /// Eval rows truncated (longer than `LMDataOptions.limit`), and prompt→response eval rows dropped because
    /// truncation left no response token.
    public let evalTruncated: Int, evalDropped: Int
    /// Prompt→response training rows dropped because truncation left no response token (reported by `train`).
    public let trainDropped: Int
    public let initialized: [String]

    public var labels: [String] { [] }
    public var trainCount: Int { train.count }
    public var evalCount: Int { eval.count }
    public var trainLengths: [Int] { train.map(\.inputIds.count) }
    public var configPath: String { config.path }
    /// The model's n_positions.
    public var maxPositions: Int { config.maxPositions }

    /// Fine-tuning: the model in `modelDir`, the training file and the optional eval file of `tc`. With `tc.lora` the
    /// model in `modelDir` is the frozen base, and `adapterDir` (a LoRA checkpoint) holds the adapter to continue from
    /// (nil: a fresh adapter from the seed).
    public required convenience init(folder: ModelFolder, adapterDir: URL? = nil, trainConfig tc: TrainConfig, microBatch: Int) throws {
        let modelDir = folder.directory
        let m = try LoadedLM(folder: folder, seed: tc.seed)
        let trainSet = try m.dataset(tc.trainFile, tc.lmData)
        guard !trainSet.examples.isEmpty else {
            throw TrainingError("\(tc.trainFile.path): no training examples with a target token; each line must be {\"text\": ...} or {\"prompt\": ..., \"response\": ...}")
        }
        let evalSet = try tc.evalFile.map { try m.dataset($0, tc.lmData) }
        var lc = tc.lora?.forCausalLM()
        if lc != nil { lc!.baseModelNameOrPath = lc!.baseModelNameOrPath ?? modelDir.path }
        try self.init(m, train: trainSet, eval: evalSet, fingerprint: try Checkpoint.sha256(of: tc.trainFile), microBatch: microBatch,
                      lora: lc, adapterDir: adapterDir, seed: tc.seed)
        model.matmulPrecision = tc.matmulPrecision   // --bf16: the Conv1D products in bf16
    }

    /// Evaluation only (`disttrain eval`): the model in `modelDir` and `evalFile` prepared exactly as `train` prepares
    /// its eval file with the same `data` options, so that evaluate/metrics give the trainer's numbers. `adapterDir`: a
    /// PEFT LoRA adapter run unmerged on the base in `modelDir`.
    public convenience init(folder: ModelFolder, adapterDir: URL? = nil, evalFile: URL, data: LMDataOptions, batchSize: Int) throws {
        let m = try LoadedLM(folder: folder, seed: 0)
        let evalSet = try m.dataset(evalFile, data)
        guard !evalSet.examples.isEmpty else {
            throw TrainingError("\(evalFile.path): no examples with a target token to evaluate; each line must be {\"text\": ...} or {\"prompt\": ..., \"response\": ...}")
        }
        try self.init(m, train: LMDataset(examples: [], truncated: 0, droppedNoTarget: 0), eval: evalSet, fingerprint: "",
                      microBatch: batchSize, lora: nil, adapterDir: adapterDir, seed: 0)
    }

    /// LoRA: a fresh adapter for `lora`, or the one in `adapterDir` (which wins), attached with the base frozen.
    private init(_ m: LoadedLM, train trainSet: LMDataset, eval evalSet: LMDataset?, fingerprint: String, microBatch: Int,
                 lora lc: LoRAConfig?, adapterDir: URL?, seed: UInt64) throws {
        modelDir = m.modelDir
        config = m.config
        baseStore = m.store
        initialized = m.initialized
        eos = m.eos
        train = trainSet.examples
        eval = evalSet?.examples ?? []
        truncated = trainSet.truncated + (evalSet?.truncated ?? 0)
        evalTruncated = evalSet?.truncated ?? 0
        evalDropped = evalSet?.droppedNoTarget ?? 0
        trainDropped = trainSet.droppedNoTarget
        dataFingerprint = fingerprint
        let maxSeq = max(train.map(\.inputIds.count).max() ?? 1, eval.map(\.inputIds.count).max() ?? 1)
        try ModelFolder.checkArena(batch: microBatch, seq: maxSeq, architecture: m.config)
        model = GPT2LMHead(config: config, parameters: m.store, maxBatch: microBatch, maxSeq: maxSeq)
        if lc != nil || adapterDir != nil {
            lora = try attachLoRA(lc ?? LoRAConfig(r: 1, alpha: 1), to: model, adapterDir: adapterDir, seed: seed)
        } else {
            lora = nil
        }
    }

    public func lossCount(_ indices: [Int]) -> Int { indices.reduce(0) { $0 + train[$1].targetCount } }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        let (batch, labels) = LMData.batch(indices.map { train[$0] }, padId: eos, sampleIndices: indices)
        let loss = model.forward(batch, labels: labels, gradientScale: scale, dropout: dropout)
        model.backward()
        return (loss.sum, batch.attentionMask.reduce(0) { $0 + Int($1) })
    }

    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats {
        var stats = EvalStats()
        var i = range.lowerBound
        while i < range.upperBound {
            let idx = Array(i..<min(i + batchSize, range.upperBound))
            i += idx.count
            let (batch, labels) = LMData.batch(idx.map { eval[$0] }, padId: eos, sampleIndices: idx)
            let loss = model.forward(batch, labels: labels, gradientScale: nil, dropout: nil)
            stats.lossSum += loss.sum
            stats.lossCount += Double(loss.count)
        }
        return stats
    }

    public func metrics(_ stats: EvalStats) -> [String: Double] {
        let loss = stats.lossSum / max(stats.lossCount, 1)
        return ["eval_loss": loss, "eval_perplexity": Foundation.exp(loss), "eval_tokens": stats.lossCount,
                "eval_samples": Double(eval.count)]
    }

    /// Full fine-tuning writes a Hugging Face model folder; LoRA writes the PEFT adapter only.
    public func save(to dir: URL, weights: ParameterStore?) throws { try lmParts.save(to: dir, weights: weights) }
}

/// How LM rows become examples: `train`'s --max-length, --block-size and --lm-per-row (eval takes the same flags).
public struct LMDataOptions: Sendable {
    /// Rows (per-row text, prompt→response) longer than min(maxLength, n_positions) tokens are TRUNCATED at the end and
    /// counted; they are not an error (`train` and `eval` report how many).
    public var maxLength: Int
    /// Packed block size (default: min(maxLength, n_positions)).
    public var blockSize: Int?
    /// One example per {"text"} row instead of packed blocks.
    public var perRow: Bool
    public init(maxLength: Int, blockSize: Int? = nil, perRow: Bool = false) {
        self.maxLength = maxLength; self.blockSize = blockSize; self.perRow = perRow
    }
    /// The truncation length for a model with `positions` = n_positions.
    public func limit(positions: Int) -> Int { min(maxLength, positions) }
}

extension TrainConfig {
    public var lmData: LMDataOptions { LMDataOptions(maxLength: maxLength, blockSize: blockSize, perRow: lmPerRow) }
}

/// A GPT-2 folder opened as a language model (training, evaluation, generation): config, weights, tokenizer.
/// A GPT2ForSequenceClassification folder opens too (its score head is not used: the LM head is the tied wte).
struct LoadedLM {
    let modelDir: URL
    let config: GPT2Config
    let store: ParameterStore
    let tokenizer: any Tokenizer
    let initialized: [String]
    let eos: Int32

    init(folder: ModelFolder, seed: UInt64) throws {
        modelDir = folder.directory
        config = try folder.gpt2Config(for: "a language model")
        if let initSeed = folder.initSeed {
            // train --init-from-config: every weight from the config, as transformers initialises GPT2LMHeadModel.
            try ModelFolder.checkParameters(of: config, path: config.path)
            store = GPT2Layout.initializedStore(config: config, classifier: false, seed: initSeed)
            initialized = []
        } else {
            let weights = modelDir.appendingPathComponent("model.safetensors")
            guard FileManager.default.fileExists(atPath: weights.path) else {
                throw TrainingError("\(weights.path): not found; the model folder needs model.safetensors")
            }
            let (store, report) = try GPT2Layout.loadLMStore(from: SafeTensorsFile(url: weights), config: config, seed: seed)
            self.store = store
            initialized = report.initialized
        }
        do { tokenizer = try loadTokenizer(directory: modelDir) } catch { throw TrainingError("\(error)") }
        guard config.eosTokenId != nil || config.vocabSize > 50256 else {
            throw TrainingError("\(config.path): no eos_token_id, and GPT-2's 50256 is outside this vocabulary of \(config.vocabSize) tokens; add \"eos_token_id\" to config.json")
        }
        eos = Int32(config.eosTokenId ?? 50256)
    }

    /// {"prompt", "response"} files (by their first row) or {"text"} files, tokenized; too-long rows truncated.
    func dataset(_ url: URL, _ o: LMDataOptions) throws -> LMDataset {
        let limit = o.limit(positions: config.maxPositions)
        let data: LMDataset
        let rows = try LMData.readObjects(url)
        if LMData.isPromptResponse(rows) {
            data = try LMData.loadPromptResponse(rows, file: url.relativePath, tokenizer: tokenizer, eosId: eos, maxLength: limit)
        } else {
            let mode: LMTextMode = o.perRow ? .perRow : .packed(blockSize: o.blockSize ?? limit)
            data = try LMData.loadText(rows, file: url.relativePath, tokenizer: tokenizer, eosId: eos, mode: mode,
                                       maxLength: o.perRow ? limit : config.maxPositions)
        }
        // A tokenizer that does not belong to the model would index past its embedding table.
        for ex in data.examples {
            if let bad = ex.inputIds.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
                throw TrainingError("\(url.path):\(ex.line): the tokenizer produced token id \(bad), outside the model's vocab_size \(config.vocabSize) (\(config.path)); the tokenizer files do not belong to this model")
            }
        }
        return data
    }
}

/// `eval` of a GPT-2 language model (TaskFactory.inference): loss and perplexity through CausalLMTask's evaluation
/// (the trainer's), on the file prepared with the same --max-length/--block-size/--lm-per-row as `train` prepares it.
public struct CausalLMInference: InferenceTask {
    let folder: ModelFolder
    let adapterDir: URL?
    let options: InferenceOptions

    public func evaluate(evalFile: String, comm: Communicator, warn: (String) -> Void) throws -> [String: Any] {
        try options.jsonlOnly("a GPT-2 language model's data")
        let data = LMDataOptions(maxLength: options.maxLength ?? 128, blockSize: options.blockSize, perRow: options.lmPerRow)
        let task = try CausalLMTask(folder: folder, adapterDir: adapterDir, evalFile: URL(fileURLWithPath: evalFile), data: data,
                                    batchSize: options.batchSize)
        if comm.isRoot && (task.evalTruncated > 0 || task.evalDropped > 0) {
            var msg = "warning: \(evalFile): \(task.evalTruncated) rows longer than \(data.limit(positions: task.maxPositions)) tokens (the smaller of --max-length and n_positions) were truncated at the end and scored on their first tokens"
            if task.evalDropped > 0 { msg += "; \(task.evalDropped) prompt→response rows left no response token and were skipped" }
            warn(msg)
        }
        return task.metrics(try task.evaluateAll(comm: comm, batchSize: options.batchSize))
    }

    /// A language model does not classify: the classifier's inference refuses it with the pointer to `generate` and
    /// `eval` (and runs a classifier adapter on a GPT-2 base, as before).
    public func predictLines(input: String, warn: (String) -> Void) throws -> [String] {
        try SequenceClassifierInference(folder: folder, adapterDir: adapterDir, options: options).predictLines(input: input, warn: warn)
    }
}
