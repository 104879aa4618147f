// TaskFactory: which training task a run gets, from its model folder. The one place the trainer learns what it
// trains (the trainer itself only drives `TrainingTask`), and the one registration a new task needs: a case in
// `taskType(for:kind:modelDir:)` (and a `TaskKind` case for `--task`). Each task builds itself from the opened folder and the run's settings (its data included).
// Likewise for `eval` and `predict`: `inference(folder:adapterDir:options:for:)` decides what a folder (and adapter)
// serves and returns that task's `InferenceTask` (Inference.swift); the CLI never branches on a model's kind.
import Foundation
import Model

/// A training task that `train` can create from a model folder and the run's flags.
public protocol FolderTrainingTask: TrainingTask {
    /// Loads the model in `folder` (with `adapterDir`, a LoRA checkpoint's adapter, to continue from) and the data of
    /// `trainConfig`, for micro-batches of at most `microBatch` samples.
    init(folder: ModelFolder, adapterDir: URL?, trainConfig: TrainConfig, microBatch: Int) throws
}

public enum TaskFactory {
    /// The task that trains `kind` as `task` asks; a task the folder cannot train is a usage error naming both.
    static func taskType(for task: TaskKind, kind: ModelKind, modelDir: URL) throws -> any FolderTrainingTask.Type {
        switch (task, kind) {
        case (.auto, .encoderClassifier), (.auto, .gpt2Classifier),
             (.classification, .encoderClassifier), (.classification, .gpt2Classifier):
            return ClassificationTask.self   // sequence classification
        case (.auto, .gpt2LanguageModel), (.causalLM, .gpt2LanguageModel):
            return CausalLMTask.self         // causal LM on text or prompt→response
        case (.auto, .encoderTokenClassifier), (.tokenClassification, .encoderTokenClassifier),
             (.tokenClassification, .encoderClassifier):
            return TokenClassificationTask.self   // a label per word (NER); a base encoder gets a fresh token head
        case (.auto, .encoderQuestionAnswering), (.questionAnswering, .encoderQuestionAnswering),
             (.questionAnswering, .encoderClassifier):
            return QuestionAnsweringTask.self     // extractive QA; a base encoder gets a fresh qa_outputs head
        case (.questionAnswering, _):
            throw TrainingError("--task question-answering needs a BERT-family encoder folder (BertModel, DistilBertModel, MiniLM, or a …ForQuestionAnswering), but \(modelDir.relativePath) is a \(kind.rawValue); pass such a --model", exitCode: 2)
        case (.tokenClassification, _):
            throw TrainingError("--task token-classification needs a BERT-family encoder folder (BertModel, DistilBertModel, MiniLM, or a …ForTokenClassification), but \(modelDir.relativePath) is a \(kind.rawValue); pass such a --model", exitCode: 2)
        case (.reward, .encoderClassifier), (.reward, .gpt2Classifier):
            return RewardTask.self           // reward model on preference pairs
        case (.reward, _):
            throw TrainingError("--task reward needs a sequence classifier or a base encoder folder (BERT family, GPT2ForSequenceClassification), but \(modelDir.relativePath) is a \(kind.rawValue); a reward model scores whole texts with one output: pass such a --model, or use --task causal-lm to train this language model", exitCode: 2)
        case (.dpo, .gpt2LanguageModel):
            return DPOTask.self              // preference pairs, policy vs frozen reference
        case (.grpo, .gpt2LanguageModel):
            return GRPOTask.self             // on-line RL: sampled completions scored by --reward-model
        case (.classification, _), (.causalLM, _), (.dpo, _), (.grpo, _):
            throw TrainingError("--task \(task.rawValue) needs \(task == .classification ? "a sequence classifier or a base encoder" : "a GPT-2 language model") folder, but \(modelDir.relativePath) is a \(kind.rawValue); pass such a --model, or leave --task out to train what the folder is", exitCode: 2)
        }
    }

    /// The task for this run. A full fine-tuning checkpoint is itself the model folder; a LoRA checkpoint holds only
    /// the adapter, and the base comes from --model.
    /// With `--init-from-config` a fresh run builds the model from the config with initialised weights; a resumed run
    /// loads its checkpoint (never re-initialised). A folder with a config but no weights needs that flag.
    static func make(config: TrainConfig, checkpoint: URL?, microBatch: Int) throws -> TrainingTask {
        let folder: ModelFolder
        if let initConfig = config.initFromConfig, checkpoint == nil {
            folder = try ModelFolder.forInitialization(config: initConfig, seed: config.seed)
        } else {
            folder = try ModelFolder.open(config.lora == nil ? (checkpoint ?? config.modelDir) : config.modelDir)
            if !folder.hasWeights && !FileManager.default.fileExists(atPath: folder.directory.appendingPathComponent("pytorch_model.bin").path) {
                throw TrainingError("\(folder.directory.relativePath) has config.json but no model.safetensors: to pre-train this model from scratch (every weight initialised from --seed), pass --init-from-config \(folder.configURL.relativePath); otherwise point --model at a folder with weights", exitCode: 2)
            }
        }
        // A reward model (one output, problem_type absent or regression) continues as one.
        let task = config.task == .auto && folder.isRewardModel ? .reward : config.task
        let type = try taskType(for: task, kind: folder.kind, modelDir: config.modelDir)
        if config.centerRewardsCoefficient != nil && !(type is RewardTask.Type) {
            throw TrainingError("--center-rewards-coefficient applies to --task reward only; drop it", exitCode: 2)
        }
        return try type.init(folder: folder, adapterDir: config.lora == nil ? nil : checkpoint,
                                                   trainConfig: config, microBatch: microBatch)
    }

    /// What an inference command does with the model.
    public enum InferencePurpose: Sendable { case evaluation, prediction }

    /// The inference of the model in `folder` (with the PEFT adapter in `adapterDir` run unmerged): a reward model, a
    /// question-answering model, a token classifier, a sequence classifier or a GPT-2 language model. The registration
    /// a task serving `eval`/`predict` needs. A question-answering or token-classification adapter (its task_type) makes
    /// a base encoder one. `eval` asks about a reward model first (as it always has: an unreadable adapter on a
    /// classifier is reported from there); `predict` lets the sequence classifier's `Predictor` tell reward models,
    /// and refuse language models, itself.
    public static func inference(folder: ModelFolder, adapterDir: URL?, options: InferenceOptions,
                                 for purpose: InferencePurpose) throws -> any InferenceTask {
        let questionAnswering = folder.kind == .encoderQuestionAnswering || adapterDir.map(QuestionAnsweringTask.isQAAdapter) == true
        let tokenClassifier = folder.kind == .encoderTokenClassifier || adapterDir.map(TokenPredictor.isTokenAdapter) == true
        switch purpose {
        case .evaluation:
            if let adapterDir { try AdapterBase.check(folder: folder, adapterDir: adapterDir) }
            // A GPT-2 LM with an LM adapter (no head) is no classifier: isRewardModel's "no classifier to run" does not apply.
            let reward = folder.kind.isClassifier ? try RewardTask.isRewardModel(folder: folder, adapterDir: adapterDir)
                                                  : (try? RewardTask.isRewardModel(folder: folder, adapterDir: adapterDir)) ?? false
            if reward { return RewardInference(folder: folder, adapterDir: adapterDir, options: options) }
            if questionAnswering { return QuestionAnsweringInference(folder: folder, adapterDir: adapterDir, options: options) }
            if tokenClassifier { return TokenClassificationInference(folder: folder, adapterDir: adapterDir, options: options) }
            if folder.kind.isClassifier { return SequenceClassifierInference(folder: folder, adapterDir: adapterDir, options: options) }
            return CausalLMInference(folder: folder, adapterDir: adapterDir, options: options)
        case .prediction:
            if questionAnswering { return QuestionAnsweringInference(folder: folder, adapterDir: adapterDir, options: options) }
            if tokenClassifier { return TokenClassificationInference(folder: folder, adapterDir: adapterDir, options: options) }
            return SequenceClassifierInference(folder: folder, adapterDir: adapterDir, options: options)
        }
    }
}
