// Predictor: batched inference of a trained sequence classifier (BERT family or GPT2ForSequenceClassification) over
// texts, in input order, through ClassifierBackend's one inference path (the trainer's evaluation and `eval` use it).
// Deliberately not here: reading/writing files (the CLI streams JSON lines), training, language models (`generate`).
import Foundation
import Model
import Tokenizers

/// One prediction: the arg-max label, the softmax probabilities by label, and the raw logits.
public struct Prediction: Sendable {
    public var label: String
    public var probs: [String: Double]
    public var logits: [Float]
    /// The input was longer than `--max-length` tokens and was cut (the model saw its first tokens only).
    public var truncated = false
}

public final class Predictor {
    let backend: ClassifierBackend
    /// Inputs are truncated to this many tokens (special tokens included).
    public let maxLength: Int
    /// The model's position limit (max_position_embeddings or n_positions): the largest `--max-length` it takes.
    public let maxPositions: Int
    let batchSize: Int
    /// The class names, in class-id order (the folder's id2label).
    public var labels: [String] { backend.labels }
    /// A reward model (RewardTask.isRewardModel): its one output is the reward, and each text is tokenized as reward
    /// training tokenizes a response (TRL's EOS appended for GPT-2).
    public let isReward: Bool
    /// The EOS text appended to reward-model inputs (nil: none, BERT family).
    let rewardEOS: String?

    /// Loads the trained classifier in `modelDir`; a GPT-2 language model folder is a usage error (exit 2) that
    /// points to `generate` and `eval`. `adapterDir`: a PEFT LoRA adapter run unmerged on the base in `modelDir` (its
    /// trained head too; a base without one, or with one for other labels, takes the adapter's labels).
    /// `maxLength` nil: min(128, the model's positions).
    public init(modelDir: URL, adapterDir: URL? = nil, maxLength: Int?, batchSize: Int = 32) throws {
        if let maxLength, maxLength < 2 { throw TrainingError("--max-length \(maxLength) must be at least 2", exitCode: 2) }
        let folder = try ModelFolder.open(modelDir)
        let maxLength = try folder.maxLength(maxLength)
        backend = try .forInference(folder: folder, adapterDir: adapterDir, maxLength: maxLength, batchSize: batchSize)
        isReward = try RewardTask.isRewardModel(folder: folder, adapterDir: adapterDir)
        rewardEOS = isReward ? RewardTask.eosText(folder: folder, tokenizer: backend.tokenizer) : nil
        self.maxLength = maxLength
        maxPositions = folder.maxPositions
        self.batchSize = batchSize
    }

    /// Predicts every (text, pair) in order, through the classifier's one inference path (as `eval` and the
    /// trainer's evaluation score).
    public func predict(_ texts: [(String, String?)]) throws -> [Prediction] {
        let names = labels
        let C = names.count
        var cut = [Bool](repeating: false, count: texts.count)
        let all = try texts.enumerated().map { (i, t) -> EncodedExample in
            let text = isReward && t.1 == nil ? RewardTask.text(prompt: nil, response: t.0, eos: rewardEOS) : t.0
            let e = try backend.tokenizer.encode(text, pair: t.1, addSpecialTokens: true, maxLength: maxLength)
            // At the limit: encode once more without it to tell "exactly maxLength tokens" from "cut".
            if e.ids.count >= maxLength {
                cut[i] = try backend.tokenizer.encode(text, pair: t.1, addSpecialTokens: true, maxLength: nil).ids.count > maxLength
            }
            return try backend.checked(e)
        }
        var slots = [Prediction?](repeating: nil, count: texts.count)
        backend.forEachBatch(all, Array(all.indices), batchSize: batchSize) { idx, logits in
            for (b, j) in idx.enumerated() {
                let row = Array(logits[(b * C)..<(b * C + C)])
                let mx = row.max() ?? 0
                let ex = row.map { Foundation.exp(Double($0 - mx)) }
                let z = ex.reduce(0, +)
                var probs: [String: Double] = [:]
                for c in 0..<C { probs[names[c]] = ex[c] / z }
                let best = row.indices.max { row[$0] < row[$1] } ?? 0
                slots[j] = Prediction(label: names[best], probs: probs, logits: row, truncated: cut[j])
            }
        }
        return slots.map { $0! }
    }
}
