// AdapterMerge: `disttrain merge` — folds a PEFT LoRA adapter into its base model and writes a plain Hugging Face
// folder (config.json, model.safetensors, tokenizer files) that `from_pretrained` and `disttrain predict` load without
// peft. The base is opened by ModelFolder (an unsupported architecture is refused by name):
//   - BERT/DistilBERT through the classifier loader (a headless base, or one with a head for other labels, takes the
//     adapter's trained head and label names);
//   - a GPT-2 classifier whose adapter was trained for other labels likewise (its `score` head is the adapter's);
//   - any other GPT-2 folder (LM, or a classifier with the same labels) tensor file to tensor file, keeping the base's
//     config.json and tensor names.
// Deliberately not here: the merge arithmetic and PEFT file format (Model/LoRAFiles.swift), flags (the CLI).
import Foundation
import Model

public enum AdapterMerge {
    public static func merge(modelDir: URL, adapterDir: URL, output: URL) throws {
        do {
            let folder = try ModelFolder.open(modelDir)
            try AdapterBase.check(folder: folder, adapterDir: adapterDir)
            let labels = folder.kind.isClassifier
                ? try ClassifierBundle.labelsForAdapter(modelDir: modelDir, adapterDir: adapterDir) : nil
            switch folder.config {
            case .encoder:
                let config = try PEFTAdapter.readConfig(adapterDir)
                // A TOKEN_CLS adapter (train --task token-classification) folds into a …ForTokenClassification, a
                // QUESTION_ANS one (--task question-answering) into a …ForQuestionAnswering.
                let bundle = try ClassifierBundle(folder: folder, labels: labels, seed: 0,
                                                  head: config.taskType == "TOKEN_CLS" ? .token : config.taskType == "QUESTION_ANS" ? .span : nil)
                let plan = try LoRAPlan(config: config, model: bundle.config)
                let store = ParameterStore(layout: plan.layout)
                try PEFTAdapter.loadWeights(adapterDir, plan: plan, into: store)
                PEFTAdapter.merge(plan: plan, adapter: store, into: bundle.store)
                try bundle.save(to: output)
            case .gpt2 where labels != nil:
                // The smallest arena: the model is only a container for the weights here.
                let backend = try ClassifierBackend.load(folder: folder, labels: labels, maxLength: 1, seed: 0, microBatch: 1)
                let adapter = try PEFTAdapter.load(adapterDir, into: backend.loraModel, freezeBase: true)
                PEFTAdapter.merge(plan: adapter.plan, adapter: adapter.store, into: backend.store)
                try backend.save(output, nil)
            case .gpt2:
                try mergeFiles(modelDir: modelDir, adapterDir: adapterDir, output: output)   // Conv1D, fan_in_fan_out
            }
        } catch let error as LoRAError {
            // As predict and generate name an adapter they cannot use: a usage error, fixed by another --adapter/--model.
            throw TrainingError("--adapter \(adapterDir.path): \(error.message)", exitCode: 2)
        }
    }

    /// Merge at the tensor-file level and copy the folder's config and tokenizer files.
    static func mergeFiles(modelDir: URL, adapterDir: URL, output: URL) throws {
        let weights = modelDir.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw TrainingError("\(weights.path): not found; the base model folder needs model.safetensors")
        }
        let tensors = try PEFTAdapter.mergeTensors(base: try SafeTensorsFile(url: weights), adapterDir: adapterDir)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(tensors, to: output.appendingPathComponent("model.safetensors"))
        try FileIO.copyFiles(["config.json"] + FileIO.companionFiles, from: modelDir, to: output)
    }
}
