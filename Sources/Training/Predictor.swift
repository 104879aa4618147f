// Predictor: batched inference of a trained sequence classifier over texts, in input order.
// Deliberately not here: reading/writing files (the CLI streams JSON lines), training.
import Foundation
import Model
import Tokenizers

/// One prediction: the arg-max label, the softmax probabilities by label, and the raw logits.
public struct Prediction: Sendable {
    public var label: String
    public var probs: [String: Double]
    public var logits: [Float]
}

public final class Predictor {
    public let bundle: ClassifierBundle
    let model: EncoderClassifier
    let maxLength: Int
    let batchSize: Int

    /// `adapterDir`: a PEFT LoRA adapter run unmerged on the base in `modelDir` (its classifier head, if trained, too).
    public init(modelDir: URL, adapterDir: URL? = nil, maxLength: Int, batchSize: Int = 32) throws {
        let labels = try adapterDir.flatMap { try ClassifierBundle.labelsForAdapter(modelDir: modelDir, adapterDir: $0) }
        bundle = try ClassifierBundle(directory: modelDir, labels: labels, seed: 0)
        guard maxLength >= 2, maxLength <= bundle.config.maxPositions else {
            throw TrainingError("--max-length \(maxLength) must be in 2...\(bundle.config.maxPositions) (the model's max_position_embeddings)", exitCode: 2)
        }
        self.maxLength = maxLength
        self.batchSize = batchSize
        model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: batchSize, maxSeq: maxLength)
        if let adapterDir {
            do { try PEFTAdapter.load(adapterDir, into: model, freezeBase: true) } catch let e as LoRAError {
                throw TrainingError("--adapter \(adapterDir.path): \(e.message)", exitCode: 2)
            }
        }
    }

    /// Predicts every (text, pair) in order.
    public func predict(_ texts: [(String, String?)]) throws -> [Prediction] {
        let names = bundle.config.id2label
        let C = names.count
        let pad = Int32(bundle.config.padTokenId)
        var out: [Prediction] = []
        out.reserveCapacity(texts.count)
        var i = 0
        while i < texts.count {
            let chunk = texts[i..<min(i + batchSize, texts.count)]
            let encs = try chunk.map { try bundle.tokenizer.encode($0.0, pair: $0.1, addSpecialTokens: true, maxLength: maxLength) }
            let T = encs.map(\.ids.count).max() ?? 1
            let B = encs.count
            var ids = [Int32](repeating: pad, count: B * T), mask = [Int32](repeating: 0, count: B * T)
            var types = [Int32](repeating: 0, count: B * T)
            for (b, e) in encs.enumerated() {
                for t in 0..<e.ids.count {
                    ids[b * T + t] = e.ids[t]; mask[b * T + t] = 1
                    types[b * T + t] = t < e.typeIds.count ? e.typeIds[t] : 0
                }
            }
            let batch = TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask, tokenTypeIds: types,
                                   sampleIndices: Array(i..<(i + B)))
            let logits = model.forward(batch, dropout: nil)
            for b in 0..<B {
                let row = Array(logits[(b * C)..<(b * C + C)])
                let mx = row.max() ?? 0
                let ex = row.map { Foundation.exp(Double($0 - mx)) }
                let z = ex.reduce(0, +)
                var probs: [String: Double] = [:]
                for c in 0..<C { probs[names[c]] = ex[c] / z }
                let best = row.indices.max { row[$0] < row[$1] } ?? 0
                out.append(Prediction(label: names[best], probs: probs, logits: row))
            }
            i += B
        }
        return out
    }
}
