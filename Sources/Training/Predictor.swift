// Predictor: batched inference of a trained sequence classifier (BERT family or GPT2ForSequenceClassification) over
// texts, in input order. The model comes from ClassifierBackend.load, as in training.
// Deliberately not here: reading/writing files (the CLI streams JSON lines), training, language models (`generate`).
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
    let backend: ClassifierBackend
    let maxLength: Int
    let batchSize: Int
    /// The class names, in class-id order (the folder's id2label).
    public var labels: [String] { backend.labels }

    /// Loads the trained classifier in `modelDir`; a GPT-2 language model folder is a usage error (exit 2) that
    /// points to `generate` and `eval`. `adapterDir`: a PEFT LoRA adapter run unmerged on the base in `modelDir` (its
    /// trained head too; a base without one, or with one for other labels, takes the adapter's labels).
    /// `maxLength` nil: min(128, the model's positions).
    public init(modelDir: URL, adapterDir: URL? = nil, maxLength: Int?, batchSize: Int = 32) throws {
        if let maxLength, maxLength < 2 { throw TrainingError("--max-length \(maxLength) must be at least 2", exitCode: 2) }
        let folder = try ModelFolder.open(modelDir)
        let maxLength = try folder.maxLength(maxLength)
        let labels = try adapterDir.flatMap { try ClassifierBundle.labelsForAdapter(modelDir: modelDir, adapterDir: $0) }
        backend = try ClassifierBackend.load(folder: folder, labels: labels, maxLength: maxLength, seed: 0, microBatch: batchSize)
        self.maxLength = maxLength
        self.batchSize = batchSize
        if let adapterDir {
            do { try PEFTAdapter.load(adapterDir, into: backend.loraModel, freezeBase: true) } catch let e as LoRAError {
                throw TrainingError("--adapter \(adapterDir.path): \(e.message)", exitCode: 2)
            }
        }
    }

    /// Predicts every (text, pair) in order.
    public func predict(_ texts: [(String, String?)]) throws -> [Prediction] {
        let names = labels
        let C = names.count
        let pad = backend.padId
        // Batches of similar length (longest first), as the trainer evaluates: padding a batch to its longest text
        // in file order cost SMS spam's 517 test texts 2x the forward passes. Results come back in input order.
        let all = try texts.map { try backend.tokenizer.encode($0.0, pair: $0.1, addSpecialTokens: true, maxLength: maxLength) }
        let order = all.indices.sorted { all[$0].ids.count != all[$1].ids.count ? all[$0].ids.count > all[$1].ids.count : $0 < $1 }
        var slots = [Prediction?](repeating: nil, count: texts.count)
        var i = 0
        while i < order.count {
            let chunk = order[i..<min(i + batchSize, order.count)]
            let encs = chunk.map { all[$0] }
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
                                   sampleIndices: Array(chunk))
            let logits = backend.model.forward(batch, dropout: nil)
            for b in 0..<B {
                let row = Array(logits[(b * C)..<(b * C + C)])
                let mx = row.max() ?? 0
                let ex = row.map { Foundation.exp(Double($0 - mx)) }
                let z = ex.reduce(0, +)
                var probs: [String: Double] = [:]
                for c in 0..<C { probs[names[c]] = ex[c] / z }
                let best = row.indices.max { row[$0] < row[$1] } ?? 0
                slots[chunk[chunk.startIndex + b]] = Prediction(label: names[best], probs: probs, logits: row)
            }
            i += B
        }
        return slots.map { $0! }
    }
}
