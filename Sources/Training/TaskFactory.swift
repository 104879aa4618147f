// TaskFactory: which training task a run gets, from its model folder. The one place the trainer learns what it
// trains (the trainer itself only drives `TrainingTask`), and the one registration a new task needs: a case in
// `taskType(for:)`. Each task builds itself from the opened folder and the run's settings (its data included).
import Foundation
import Model

/// A training task that `train` can create from a model folder and the run's flags.
public protocol FolderTrainingTask: TrainingTask {
    /// Loads the model in `folder` (with `adapterDir`, a LoRA checkpoint's adapter, to continue from) and the data of
    /// `trainConfig`, for micro-batches of at most `microBatch` samples.
    init(folder: ModelFolder, adapterDir: URL?, trainConfig: TrainConfig, microBatch: Int) throws
}

enum TaskFactory {
    /// The task that trains a folder of this kind.
    static func taskType(for kind: ModelKind) -> any FolderTrainingTask.Type {
        switch kind {
        case .encoderClassifier, .gpt2Classifier: ClassificationTask.self   // sequence classification
        case .gpt2LanguageModel: CausalLMTask.self                          // causal LM on text or prompt→response
        }
    }

    /// The task for this run. A full fine-tuning checkpoint is itself the model folder; a LoRA checkpoint holds only
    /// the adapter, and the base comes from --model.
    static func make(config: TrainConfig, checkpoint: URL?, microBatch: Int) throws -> TrainingTask {
        let folder = try ModelFolder.open(config.lora == nil ? (checkpoint ?? config.modelDir) : config.modelDir)
        return try taskType(for: folder.kind).init(folder: folder, adapterDir: config.lora == nil ? nil : checkpoint,
                                                   trainConfig: config, microBatch: microBatch)
    }
}
