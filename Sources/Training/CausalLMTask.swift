// CausalLMTask: fine-tuning a GPT-2-family language model on text ({"text"} lines, packed into blocks with EOS
// between documents, or one example per row) or on prompt→response pairs ({"prompt", "response"}, prompt tokens
// masked from the loss). The loss is normalised by the global count of counted target tokens of the step, across
// micro-batches and ranks (the trainer passes scale = 1/count).
// Deliberately not here: the loop (Trainer), generation (GPT2Generator), GPT-2 classification.
import Foundation
import Model
import Tokenizers

public final class CausalLMTask: TrainingTask, @unchecked Sendable {
    let config: GPT2Config
    public let store: ParameterStore
    let model: GPT2LMHead
    let train: [LMExample]
    let eval: [LMExample]
    let eos: Int32
    let modelDir: URL
    public let dataFingerprint: String
    public let truncated: Int
    public let initialized: [String]

    public var labels: [String] { [] }
    public var trainCount: Int { train.count }
    public var evalCount: Int { eval.count }
    public var trainLengths: [Int] { train.map(\.inputIds.count) }
    public var configPath: String { config.path }

    public init(modelDir: URL, trainConfig tc: TrainConfig, microBatch: Int) throws {
        self.modelDir = modelDir
        guard tc.matmulPrecision == .fp32 else {
            throw TrainingError("--bf16: bf16 matrix products are implemented for BERT-family encoders only; drop --bf16 for GPT-2", exitCode: 2)
        }
        config = try GPT2Config.load(url: modelDir.appendingPathComponent("config.json"))
        let weights = modelDir.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw TrainingError("\(weights.path): not found; the model folder needs model.safetensors")
        }
        store = ParameterStore(layout: GPT2LMHead.makeLayout(config: config))
        let report = try GPT2Layout.load(into: store, from: SafeTensorsFile(url: weights), config: config, seed: tc.seed)
        initialized = report.initialized
        let tokenizer: any Tokenizer
        do { tokenizer = try loadTokenizer(directory: modelDir) } catch { throw TrainingError("\(error)") }
        let eosId = Int32(config.eosTokenId ?? 50256)
        eos = eosId
        let positions = config.maxPositions
        let maxLength = min(tc.maxLength, positions)
        let load = { (url: URL) throws -> LMDataset in
            if try CausalLMTask.isPromptResponse(url) {
                return try LMData.loadPromptResponse(url, tokenizer: tokenizer, eosId: eosId, maxLength: maxLength)
            }
            let mode: LMTextMode = tc.lmPerRow ? .perRow : .packed(blockSize: tc.blockSize ?? maxLength)
            return try LMData.loadText(url, tokenizer: tokenizer, eosId: eosId, mode: mode, maxLength: positions)
        }
        let trainSet = try load(tc.trainFile)
        guard !trainSet.examples.isEmpty else {
            throw TrainingError("\(tc.trainFile.path): no training examples with a target token; each line must be {\"text\": ...} or {\"prompt\": ..., \"response\": ...}")
        }
        let evalSet = try tc.evalFile.map(load)
        train = trainSet.examples
        eval = evalSet?.examples ?? []
        truncated = trainSet.truncated + (evalSet?.truncated ?? 0)
        dataFingerprint = try Checkpoint.sha256(of: tc.trainFile)
        let maxSeq = max(train.map(\.inputIds.count).max() ?? 1, eval.map(\.inputIds.count).max() ?? 1)
        model = GPT2LMHead(config: config, parameters: store, maxBatch: microBatch, maxSeq: maxSeq)
    }

    /// A file whose first object has "prompt" and "response" keys holds prompt→response pairs.
    static func isPromptResponse(_ url: URL) throws -> Bool {
        guard let h = FileHandle(forReadingAtPath: url.path) else {
            throw TrainingError("\(url.path): cannot open; check the path", exitCode: 1)
        }
        defer { try? h.close() }
        let head = String(decoding: h.readData(ofLength: 1 << 16), as: UTF8.self)
        guard let line = head.split(separator: "\n").first(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }),
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return false }
        return obj["prompt"] != nil && obj["response"] != nil
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

    public func save(to dir: URL, weights: ParameterStore?) throws {
        try GPT2Layout.save(weights ?? store, config: config, classifier: false, to: dir)
        try FileIO.copyFiles(FileIO.companionFiles, from: modelDir, to: dir)
    }
}
