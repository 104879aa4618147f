// ModelFolder: opens a Hugging Face model folder (config.json + model.safetensors + tokenizer files) as a sequence
// classifier ready to train or predict, and writes one back in the layout `from_pretrained` loads.
// Deliberately not here: the training loop (Trainer.swift) or the layers (Model target).
import Foundation
import Model
import Tokenizers

/// A user-facing error: one line naming the file or flag and what to do. `exitCode` 2 = usage, 1 = runtime.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) { self.message = message; self.exitCode = exitCode }
    public var description: String { message }
}

/// What a model folder holds, read from its config.json: it decides which loader opens the folder (train, eval, predict).
public enum ModelKind: Sendable, Equatable {
    /// BERT, DistilBERT, MiniLM, and anything that is not GPT-2 (its loader then names what is wrong).
    case encoderClassifier
    /// A GPT-2 config whose architectures name GPT2ForSequenceClassification.
    case gpt2Classifier
    /// Any other GPT-2 config (GPT2LMHeadModel, or no architectures field).
    case gpt2LanguageModel

    /// Never throws: an unreadable or missing config.json is left to the loader, whose error names the file.
    public static func of(_ modelDir: URL) -> ModelKind {
        guard let data = try? Data(contentsOf: modelDir.appendingPathComponent("config.json")),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], GPT2Config.isGPT2(json) else {
            return .encoderClassifier
        }
        let arch = (json["architectures"] as? [String]) ?? []
        return arch.contains("GPT2ForSequenceClassification") ? .gpt2Classifier : .gpt2LanguageModel
    }
}

/// A loaded classifier: config (with the label set in force), parameters, tokenizer.
/// Sendable: after init only `save` reads it (from the checkpoint thread), and nothing mutates it.
public final class ClassifierBundle: @unchecked Sendable {
    public var config: ModelConfig
    public let store: ParameterStore
    public let tokenizer: any Tokenizer
    public let report: LoadReport
    public let directory: URL

    /// Loads `directory`. With `labels`, the classifier head is sized for them: a checkpoint whose id2label has the
    /// same names keeps its trained head; otherwise the head is (re)initialised from `seed`.
    public init(directory: URL, labels: [String]?, problemType: ProblemType? = nil, seed: UInt64) throws {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingError("model folder '\(directory.path)' does not exist; pass --model a Hugging Face model folder (config.json, model.safetensors, vocab.txt or tokenizer.json)", exitCode: 2)
        }
        var config = try ModelConfig.load(url: directory.appendingPathComponent("config.json"))
        var reinitHead = false
        if let labels {
            if config.id2label != labels {
                // A head trained for other labels cannot be reused; a fresh head for the data's labels is.
                reinitHead = !config.id2label.isEmpty
                config.id2label = labels
            }
        } else if config.id2label.isEmpty {
            throw TrainingError("\(config.path): the model has no id2label, so it is not a trained classifier; train one with `disttrain train` first", exitCode: 1)
        }
        if let problemType { config.problemType = problemType }
        if config.problemType == nil { config.problemType = config.numLabels == 1 ? .regression : .singleLabel }
        self.config = config

        let weights = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else {
            let hasBin = FileManager.default.fileExists(atPath: directory.appendingPathComponent("pytorch_model.bin").path)
            throw TrainingError("\(weights.path): not found" + (hasBin
                ? "; only pytorch_model.bin is present: convert it with `transformers` (save_pretrained(..., safe_serialization=True))"
                : "; the model folder needs model.safetensors"))
        }
        let file = try SafeTensorsFile(url: weights)
        let layout = EncoderClassifier.makeLayout(config: config)
        store = ParameterStore(layout: layout)
        let prefix = config.family == .bert ? "bert." : "distilbert."
        let headPrefixes = ["classifier.", "pre_classifier."]
        let optional: (String) -> Bool = { name in
            name.hasPrefix("bert.pooler.") || headPrefixes.contains { name.hasPrefix($0) }
        }
        let isHead: (String) -> Bool = { name in headPrefixes.contains { name.hasPrefix($0) } }
        report = try WeightLoader.load(into: store, from: file, prefix: prefix, isOptional: optional,
                                       reinitialize: { reinitHead && isHead($0) },
                                       seed: seed, initializerRange: config.initializerRange)
        do {
            tokenizer = try loadTokenizer(directory: directory)
        } catch {
            throw TrainingError("\(error)")
        }
    }

    /// Writes config.json, model.safetensors (from `weights`, default the live store) and the tokenizer files into
    /// `output` (created if needed).
    public func save(to output: URL, weights: ParameterStore? = nil) throws {
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try WeightLoader.save(weights ?? store, to: output.appendingPathComponent("model.safetensors"))
        try ModelConfig.write(config.classifierJSON(), to: output.appendingPathComponent("config.json"))
        try FileIO.copyFiles(FileIO.companionFiles, from: directory, to: output)
    }
}

extension ClassifierBundle {
    /// The label names a classifier base (BERT family or GPT-2) takes for a LoRA adapter: a base without a head (e.g. a
    /// sentence encoder or a GPT-2 LM),
    /// or with a head for other labels, takes them from the adapter's trained classifier (modules_to_save): names
    /// from the adapter's labels.txt (written by `disttrain train --lora-r`), else LABEL_k. nil: keep the base's.
    public static func labelsForAdapter(modelDir: URL, adapterDir: URL) throws -> [String]? {
        let weights = adapterDir.appendingPathComponent(PEFTAdapter.weightsFileName)
        do {
            _ = try PEFTAdapter.readConfig(adapterDir)
            guard FileManager.default.fileExists(atPath: weights.path) else {
                throw LoRAError("\(weights.path): not found; a PEFT adapter folder holds adapter_model.safetensors (adapter_model.bin is not supported)")
            }
        } catch let e as LoRAError { throw TrainingError(e.message, exitCode: 2) }
        let configURL = modelDir.appendingPathComponent("config.json")
        let baseLabels = ModelKind.of(modelDir) == .encoderClassifier ? try ModelConfig.load(url: configURL).id2label
                                                                       : try GPT2Config.load(url: configURL).id2label
        let file = try SafeTensorsFile(url: weights)
        let headInfo = file.info("base_model.model.classifier.weight") ?? file.info("base_model.model.score.weight")
        if let head = headInfo, head.shape.count == 2, head.shape[0] != baseLabels.count {
            let names = (try? String(contentsOf: adapterDir.appendingPathComponent("labels.txt"), encoding: .utf8))?
                .split(separator: "\n").map(String.init) ?? []
            return names.count == head.shape[0] ? names : (0..<head.shape[0]).map { "LABEL_\($0)" }
        }
        if baseLabels.isEmpty {
            throw TrainingError("\(adapterDir.path): the adapter has no trained classifier and the base model has no labels; there is no classifier to run")
        }
        return nil
    }
}
