// `disttrain merge`: folds a PEFT LoRA adapter into its base model and writes a plain Hugging Face model folder
// (config.json, model.safetensors, tokenizer files) that `from_pretrained` and `disttrain predict` load without peft.
// Every kind ModelFolder opens (BERT-family and GPT-2 classifiers, GPT-2 LMs); the work is Training's AdapterMerge.
// Deliberately not here: the merge itself (Training/AdapterMerge.swift, Model/LoRAFiles.swift); registering the
// command (main.swift).
import ArgumentParser
import Foundation
import Training

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a LoRA adapter (PEFT format) into its base model.",
        discussion: """
        Writes W + (lora_alpha/r)·B·A for every adapted layer and the adapter's trained head \
        (modules_to_save):
          disttrain merge --model models/all-MiniLM-L6-v2 --adapter runs/spam-lora \\
              --output runs/spam-merged
        (--adapter: the --output-dir of `train --lora-r`, or one of its checkpoint-N folders.)
        """)
    @OptionGroup var config: ConfigFileOption
    @Option(help: "The base model folder the adapter was trained on.") var model: String
    @Option(help: "The adapter folder (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "Output folder for the merged model (created if needed).") var output: String

    func validate() throws {
        guard URL(fileURLWithPath: output).standardizedFileURL != URL(fileURLWithPath: model).standardizedFileURL else {
            throw ValidationError("--output must differ from --model (the base model folder is not overwritten)")
        }
        guard URL(fileURLWithPath: output).standardizedFileURL != URL(fileURLWithPath: adapter).standardizedFileURL else {
            throw ValidationError("--output must differ from --adapter (the adapter folder is not overwritten); name a new folder")
        }
    }

    func run() throws {
        try AdapterMerge.merge(modelDir: URL(fileURLWithPath: model), adapterDir: URL(fileURLWithPath: adapter),
                               output: URL(fileURLWithPath: output))
        FileHandle.standardError.write(Data("merged \(adapter) into \(model): wrote \(output)\n".utf8))
    }
}
