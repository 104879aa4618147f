// `disttrain merge`: folds a PEFT LoRA adapter into its base model and writes a plain Hugging Face model folder
// (config.json, model.safetensors, tokenizer files) that `from_pretrained` and `disttrain predict` load without peft.
// The base folder is opened by ModelFolder (an unsupported architecture is refused by name). BERT/DistilBERT go through
// the classifier loader (a headless base takes the adapter's head); GPT-2 (LM and classifier) is merged tensor file
// to tensor file.
// Deliberately not here: the merge arithmetic and PEFT file format (Model/LoRAFiles.swift); registering the command
// (main.swift).
import ArgumentParser
import Foundation
import Model
import Training

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a LoRA adapter (PEFT format) into its base model.",
        discussion: """
        Writes W + (lora_alpha/r)·B·A for every adapted layer and the adapter's trained head (modules_to_save):
          disttrain merge --model models/all-MiniLM-L6-v2 --adapter runs/spam-lora/adapter --output runs/spam-merged
        """)
    @Option(help: "The base model folder the adapter was trained on.") var model: String
    @Option(help: "The adapter folder (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "Output folder for the merged model (created if needed).") var output: String

    func validate() throws {
        guard URL(fileURLWithPath: output).standardizedFileURL != URL(fileURLWithPath: model).standardizedFileURL else {
            throw ValidationError("--output must differ from --model (the base model folder is not overwritten)")
        }
    }

    func run() throws {
        let adapterDir = URL(fileURLWithPath: adapter), modelDir = URL(fileURLWithPath: model)
        do {
            let folder = try ModelFolder.open(modelDir)
            guard case .encoder = folder.config else {
                try mergeFiles(modelDir: modelDir, adapterDir: adapterDir)   // GPT-2 LM and classifier (Conv1D, fan_in_fan_out)
                return
            }
            let config = try PEFTAdapter.readConfig(adapterDir)
            // A base without a head, or with a head for other labels, takes the adapter's trained classifier.
            let labels = try ClassifierBundle.labelsForAdapter(modelDir: modelDir, adapterDir: adapterDir)
            let bundle = try ClassifierBundle(folder: folder, labels: labels, seed: 0)
            let plan = try LoRAPlan(config: config, model: bundle.config)
            let store = ParameterStore(layout: plan.layout)
            try PEFTAdapter.loadWeights(adapterDir, plan: plan, into: store)
            PEFTAdapter.merge(plan: plan, adapter: store, into: bundle.store)
            try bundle.save(to: URL(fileURLWithPath: output))
        } catch let error as LoRAError {
            throw TrainingError(error.message)
        }
    }

    /// Any other architecture: merge at the tensor-file level and copy the folder's config and tokenizer files.
    func mergeFiles(modelDir: URL, adapterDir: URL) throws {
        let weights = modelDir.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw TrainingError("\(weights.path): not found; the base model folder needs model.safetensors")
        }
        let tensors = try PEFTAdapter.mergeTensors(base: try SafeTensorsFile(url: weights), adapterDir: adapterDir)
        let out = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(tensors, to: out.appendingPathComponent("model.safetensors"))
        try FileIO.copyFiles(["config.json"] + FileIO.companionFiles, from: modelDir, to: out)
    }
}
