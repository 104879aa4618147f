// TaskFactory: which training task a run gets, from its model folder and data flags. The one place the trainer
// learns what it trains; the trainer itself only drives `TrainingTask`.
import Foundation
import Model

enum TaskFactory {
    /// The task for this model folder: classification for BERT-family encoders.
    /// A full fine-tuning checkpoint is itself the model folder; a LoRA checkpoint holds only the adapter, and the
    /// base comes from --model.
    static func make(config: TrainConfig, checkpoint: URL?, microBatch: Int) throws -> TrainingTask {
        let folder = try ModelFolder.open(config.lora == nil ? (checkpoint ?? config.modelDir) : config.modelDir)
        // GPT-2 language models train on text; the classifier kinds (GPT2ForSequenceClassification too) classify.
        if !folder.kind.isClassifier {
            return try CausalLMTask(folder: folder, adapterDir: config.lora == nil ? nil : checkpoint,
                                    trainConfig: config, microBatch: microBatch)
        }
        // Labels: from --labels, else from the training file.
        let fixedLabels = try config.labelsFile.map { try LabelSet.fromFile($0) }
        var (trainSet, labelSet) = try DataLoader.loadLabeled(config.trainFile, columns: config.columns, labels: fixedLabels)
        guard !trainSet.examples.isEmpty else {
            throw TrainingError("\(config.trainFile.path): no training examples; the file must hold one {\"text\", \"label\"} object per line")
        }
        var evalSet: TextDataset?
        if let evalFile = config.evalFile {
            evalSet = try DataLoader.loadLabeled(evalFile, columns: config.columns, labels: labelSet).0
        } else if config.validationSplit > 0 {
            let parts = try DataLoader.split(trainSet, validationFraction: config.validationSplit, seed: config.seed)
            trainSet = parts.train
            evalSet = parts.validation
        }
        return try ClassificationTask(folder: folder, adapterDir: config.lora == nil ? nil : checkpoint,
                                      trainSet: trainSet, evalSet: evalSet, labels: labelSet.names,
                                      config: config, microBatch: microBatch)
    }
}
