// RewardScorer: the reward model of on-line RL (`train --task grpo --reward-model DIR`): any sequence classifier with
// ONE output that disttrain loads (BERT family or GPT2ForSequenceClassification, with its own tokenizer), scoring
// decoded text. Each text is prompt + completion (TRL 1.16's `_calculate_rewards` for non-conversational prompts:
// the completion decoded with special tokens skipped, the two strings concatenated) and is re-tokenized with the
// reward model's tokenizer, so the policy and the reward model may use different vocabularies.
// Tokenization differs from TRL 1.16 on purpose in one respect: TRL calls the reward tokenizer with
// add_special_tokens=False, which for a BERT-family reward model drops the [CLS] … [SEP] it was trained with (and the
// GPT-2 EOS its RewardTrainer appended); we score a text exactly as `predict` scores it and as `train --task reward`
// trained it (Predictor's one inference path). For a GPT-2 reward model with GPT-2's tokenizer the only difference is
// that EOS. Texts longer than `maxLength` reward tokens are cut at the end (TRL would not cut; the model's positions
// bound it anyway).
// Each text is scored alone (a batch of one): a padded batch's attention sums over the padded length, so a score
// would otherwise change in its last bits with the other texts of the batch, and group-normalised advantages
// ((r − mean)/(std + 1e-4)) amplify such differences by 1/std — 1, 2 and 4 ranks must score the same texts the same.
// Deliberately not here: sampling (GPT2BatchGenerator), advantages (GRPOObjective), the training loop.
import Foundation
import Model

public final class RewardScorer {
    let predictor: Predictor
    /// The folder, as the user named it (for messages).
    public let directory: URL

    /// Opens the reward model in `dir`. Refused with exit code 2 and one line: a folder that is not a model, a
    /// language model or a base encoder without a trained head, a classifier with other than one output.
    public init(dir: URL, maxLength: Int) throws {
        directory = dir
        let folder: ModelFolder
        do { folder = try ModelFolder.open(dir) } catch let e as TrainingError {
            throw TrainingError("--reward-model \(dir.relativePath): \(e.message)", exitCode: 2)
        }
        guard folder.kind.isClassifier, !folder.labels.isEmpty else {
            throw TrainingError("--reward-model \(dir.relativePath) is a \(folder.kind.rawValue) (\(folder.architecture ?? "no architectures")) without a trained sequence-classification head; a reward model is a sequence classifier with one output (train one with `disttrain train --task reward`)", exitCode: 2)
        }
        guard folder.labels.count == 1 else {
            throw TrainingError("--reward-model \(dir.relativePath) has \(folder.labels.count) outputs (\(folder.labels.joined(separator: ", "))); a reward model has exactly one (num_labels 1, as `train --task reward` and TRL's RewardTrainer write)", exitCode: 2)
        }
        guard folder.kind != .encoderTokenClassifier else {
            throw TrainingError("--reward-model \(dir.relativePath) is a token classifier; a reward model scores whole texts (a sequence classifier with one output)", exitCode: 2)
        }
        predictor = try Predictor(modelDir: dir, maxLength: min(maxLength, folder.maxPositions), batchSize: 1)
    }

    /// The reward of each text (prompt + completion), in order: the model's one output.
    public func score(_ texts: [String]) throws -> [Float] {
        try predictor.predict(texts.map { ($0, nil) }).map { $0.logits[0] }
    }
}
