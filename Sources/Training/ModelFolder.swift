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

/// What a model folder holds, decided from its config.json (`architectures`, else `model_type`). This file is the
/// one place that decides it: train, eval, predict, generate, inspect, merge and bench all open folders through
/// `ModelFolder`. To add a model kind: a case here, its row in `ModelFolder.architectures`, and its loader.
public enum ModelKind: String, Sendable, Equatable, CaseIterable {
    /// BERT, DistilBERT, MiniLM: a sequence classifier, or a base encoder (BertModel, …ForMaskedLM) that gets a head.
    case encoderClassifier = "BERT-family sequence classifier"
    /// BertForTokenClassification, DistilBertForTokenClassification: a label per token (named-entity recognition).
    case encoderTokenClassifier = "BERT-family token classifier"
    /// BertForQuestionAnswering, DistilBertForQuestionAnswering: start/end logits per token (extractive QA).
    case encoderQuestionAnswering = "BERT-family question-answering model"
    /// GPT2ForSequenceClassification.
    case gpt2Classifier = "GPT-2 sequence classifier"
    /// GPT2LMHeadModel or GPT2Model (the LM head is tied to wte).
    case gpt2LanguageModel = "GPT-2 language model"

    /// True for the kinds that answer with class labels (train on labelled data, predict, eval with accuracy).
    public var isClassifier: Bool { self != .gpt2LanguageModel }
    /// True for the BERT-family kinds (config decoded as ModelConfig).
    public var isEncoder: Bool { self == .encoderClassifier || self == .encoderTokenClassifier || self == .encoderQuestionAnswering }

    /// The kind of the folder's config.json; throws for a folder without a readable config or an architecture we do
    /// not support (named).
    public static func of(_ modelDir: URL) throws -> ModelKind { try ModelFolder.open(modelDir).kind }
}

/// A model folder's config.json, decoded once by the config type of its family.
public enum ModelFolderConfig: @unchecked Sendable {
    case encoder(ModelConfig)
    case gpt2(GPT2Config)
}

/// A Hugging Face model folder (or a full fine-tuning checkpoint) whose config.json has been read and whose kind is
/// known. Opening reads only config.json; the loaders (ClassifierBackend, LoadedLM) read the weights and tokenizer.
public struct ModelFolder: @unchecked Sendable {
    public let directory: URL
    public let kind: ModelKind
    public let config: ModelFolderConfig
    /// The architecture named in config.json (nil when it names none and model_type decided).
    public let architecture: String?
    /// `train --init-from-config`: the loaders build every weight from the config, initialised from this seed as
    /// transformers initialises a model built from its config (Model's WeightInit), instead of reading
    /// model.safetensors; nil: the weights are read from the folder.
    public var initSeed: UInt64?

    /// Whether the folder holds weights (model.safetensors) to load.
    public var hasWeights: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("model.safetensors").path)
    }

    public var configURL: URL { directory.appendingPathComponent("config.json") }
    /// max_position_embeddings / n_positions: the longest input the model takes.
    public var maxPositions: Int {
        switch config { case .encoder(let c): c.maxPositions; case .gpt2(let c): c.maxPositions }
    }
    /// The class names of a trained head (empty for a base model or a language model).
    public var labels: [String] {
        switch config { case .encoder(let c): c.id2label; case .gpt2(let c): c.id2label }
    }

    /// A reward model: a sequence classifier with one output whose problem_type is absent or "regression" (what TRL's
    /// RewardTrainer and `train --task reward` write). `predict` prints its score as {"reward"}; `eval` takes
    /// preference pairs.
    public var isRewardModel: Bool {
        guard kind.isClassifier, labels.count == 1 else { return false }
        let problemType: String? = switch config {
        case .encoder(let c): c.problemType?.rawValue
        case .gpt2(let c): c.raw["problem_type"] as? String
        }
        return problemType == nil || problemType == "regression"
    }

    /// The length inputs are truncated to when --max-length is not given: 128, or the model's positions when fewer
    /// (as a tokenizer's model_max_length would be). An explicit length above the model's positions is a usage error.
    public func maxLength(_ requested: Int?) throws -> Int {
        guard let requested else { return min(128, maxPositions) }
        guard requested <= maxPositions else {
            let field = kind.isEncoder ? "max_position_embeddings" : "n_positions"
            throw TrainingError("--max-length \(requested) exceeds the model's \(field) \(maxPositions); use --max-length \(maxPositions) or less", exitCode: 2)
        }
        return requested
    }

    /// The supported `architectures` values and the kind each opens as. Anything else is refused by name.
    public static let architectures: [String: ModelKind] = [
        "BertForSequenceClassification": .encoderClassifier, "BertModel": .encoderClassifier,
        "BertForMaskedLM": .encoderClassifier, "BertForPreTraining": .encoderClassifier,
        "DistilBertForSequenceClassification": .encoderClassifier, "DistilBertModel": .encoderClassifier,
        "DistilBertForMaskedLM": .encoderClassifier,
        "BertForTokenClassification": .encoderTokenClassifier, "DistilBertForTokenClassification": .encoderTokenClassifier,
        "BertForQuestionAnswering": .encoderQuestionAnswering, "DistilBertForQuestionAnswering": .encoderQuestionAnswering,
        "GPT2ForSequenceClassification": .gpt2Classifier,
        "GPT2LMHeadModel": .gpt2LanguageModel, "GPT2Model": .gpt2LanguageModel,
    ]
    /// The supported model_type values.
    static let modelTypes = ["bert", "distilbert", "gpt2"]

    /// The model_type an architecture class belongs to, from its name.
    static func modelType(ofArchitecture name: String) -> String? {
        name.hasPrefix("DistilBert") ? "distilbert" : name.hasPrefix("Bert") ? "bert" : name.hasPrefix("GPT2") ? "gpt2" : nil
    }

    /// Opens `directory`: it must exist and hold a config.json of a supported architecture.
    public static func open(_ directory: URL) throws -> ModelFolder {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingError("model folder '\(directory.path)' does not exist; pass --model a Hugging Face model folder (config.json, model.safetensors, vocab.txt or tokenizer.json)", exitCode: 2)
        }
        let url = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            let adapter = FileManager.default.fileExists(atPath: directory.appendingPathComponent(PEFTAdapter.configFileName).path)
            throw TrainingError("\(url.path): not found; " + (adapter
                ? "this is a LoRA adapter folder: pass the base model as --model and this folder as --adapter"
                : "pass --model a Hugging Face model folder (config.json, model.safetensors, vocab.txt or tokenizer.json)"))
        }
        return try read(configFile: url, directory: directory)
    }

    /// Reads one config.json (`bench --config` takes a file, not a folder); `directory` defaults to its folder.
    public static func read(configFile url: URL, directory: URL? = nil) throws -> ModelFolder {
        let json = try ModelConfig.readJSONObject(url, hint: "a Hugging Face model folder containing config.json")
        let (kind, arch) = try kind(of: json, path: url.path)
        let config: ModelFolderConfig
        if kind.isEncoder {
            var c = try ModelConfig(json: json, path: url.path)
            if kind == .encoderTokenClassifier { c.head = .token }
            if kind == .encoderQuestionAnswering { c.head = .span }
            config = .encoder(c)
        } else {
            config = .gpt2(try GPT2Config(json: json, path: url.path))
        }
        return ModelFolder(directory: directory ?? url.deletingLastPathComponent(), kind: kind, config: config, architecture: arch)
    }

    /// `train --init-from-config CONFIG`: the config (a config.json file, or a folder holding one) read as a model
    /// folder whose weights are initialised from `seed`; the tokenizer files are read beside the config.
    public static func forInitialization(config path: URL, seed: UInt64) throws -> ModelFolder {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir) else {
            throw TrainingError("--init-from-config \(path.relativePath) does not exist; pass a Hugging Face config.json (with the tokenizer files beside it)", exitCode: 2)
        }
        let file = isDir.boolValue ? path.appendingPathComponent("config.json") : path
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw TrainingError("--init-from-config \(path.relativePath): the folder holds no config.json; pass the config file itself", exitCode: 2)
        }
        var folder = try read(configFile: file)
        let dir = folder.directory
        let tokenizerFiles = ["tokenizer.json", "vocab.json", "vocab.txt"]
        guard tokenizerFiles.contains(where: { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).path) }) else {
            throw TrainingError("--init-from-config \(file.relativePath): no tokenizer beside it; put the tokenizer files (vocab.json and merges.txt, or tokenizer.json; vocab.txt for BERT) in \(dir.relativePath)", exitCode: 2)
        }
        folder.initSeed = seed
        return folder
    }

    /// The kind a decoded config.json describes: its first `architectures` entry, else its `model_type`.
    public static func kind(of json: [String: Any], path: String) throws -> (ModelKind, String?) {
        guard let type = json["model_type"] as? String else {
            throw ConfigError(path: path, "missing field 'model_type' (expected \"bert\", \"distilbert\" or \"gpt2\")")
        }
        guard modelTypes.contains(type) else {
            throw ConfigError(path: path, "model_type '\(type)' is not supported; supported: bert, distilbert (MiniLM), gpt2")
        }
        if let arch = (json["architectures"] as? [Any])?.first {
            guard let name = arch as? String else {
                throw ConfigError(path: path, "field 'architectures' must be a list of class names, found \(arch)")
            }
            guard let kind = architectures[name], modelType(ofArchitecture: name) == type else {
                let supported = architectures.keys.filter { modelType(ofArchitecture: $0) == type }.sorted()
                throw ConfigError(path: path, "architecture \(name) is not supported (model_type '\(type)'); supported: \(supported.joined(separator: ", "))")
            }
            return (kind, name)
        }
        return (type == "gpt2" ? .gpt2LanguageModel : .encoderClassifier, nil)
    }

    /// The BERT-family config, or a usage error naming what this folder is instead.
    public func encoderConfig(for command: String) throws -> ModelConfig {
        if case .encoder(let c) = config { return c }
        throw TrainingError("\(configURL.path): this is a \(kind.rawValue); \(command) needs a BERT-family model (bert, distilbert)", exitCode: 2)
    }

    /// The GPT-2 config, or a usage error naming what this folder is instead.
    public func gpt2Config(for command: String) throws -> GPT2Config {
        if case .gpt2(let c) = config { return c }
        throw TrainingError("\(configURL.path): this is a \(kind.rawValue) (\(architecture ?? "BERT family")); \(command) needs a GPT-2 model (model_type gpt2)", exitCode: 2)
    }
}

extension ModelFolder {
    /// `--init-from-config`: refuses a config whose parameters could not be allocated (there is no weights file to
    /// check its sizes against): more floats than can be addressed, or more than the machine's memory.
    static func checkParameters(of a: any ModelArchitecture, path: String) throws {
        // Estimated in Double (no overflow for absurd sizes): embeddings plus per layer four C×C and two C×FF matrices.
        let C = Double(a.hidden), FF = Double(a.intermediate)
        let n = (Double(a.vocabSize) + Double(a.maxPositions) + 2) * C + Double(a.layers) * (4 * C * C + 2 * C * FF + 10 * C + FF)
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        guard n * 4 <= memory else {
            throw TrainingError("\(path): this config has about \(String(format: "%.3g", n)) parameters (\(String(format: "%.1f", 4 * n / 1e9)) GB in fp32), more than this machine's \(String(format: "%.1f", memory / 1e9)) GB; check its sizes (vocab_size, n_embd or hidden_size, n_layer)", exitCode: 2)
        }
    }

    /// Refuses a micro-batch × sequence length whose activation arena cannot exist: a size that overflows, or an upper
    /// estimate (every layer's saved activations and attention probabilities) above 4× the machine's memory (the
    /// arena is mapped lazily, so only absurd sizes are refused).
    static func checkArena(batch: Int, seq: Int, architecture a: any ModelArchitecture) throws {
        func mul(_ xs: Int...) -> Int? {
            var p = 1
            for x in xs { let (r, o) = p.multipliedReportingOverflow(by: max(x, 0)); if o { return nil }; p = r }
            return p
        }
        let perRow = a.layers * (14 * a.hidden + 2 * a.intermediate) + 8 * a.hidden
        let rows = mul(batch, seq, perRow), probs = mul(batch, a.heads, seq, seq, a.layers)
        let (floats, o) = (rows ?? .max).addingReportingOverflow(probs ?? .max)
        let memory = ProcessInfo.processInfo.physicalMemory
        guard rows != nil, probs != nil, !o, floats <= Int.max / 4, UInt64(floats) <= memory else {
            let gb = rows == nil || probs == nil || o ? "more than can be addressed" : String(format: "%.1f GB", 4 * Double(floats) / 1e9)
            throw TrainingError("a batch of \(batch) × \(seq) tokens needs activation memory of \(gb), far more than this machine's \(String(format: "%.1f", Double(memory) / 1e9)) GB; lower --batch-size (train: raise --gradient-accumulation-steps instead) or --max-length", exitCode: 2)
        }
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
    public convenience init(directory: URL, labels: [String]?, problemType: ProblemType? = nil, seed: UInt64) throws {
        try self.init(folder: ModelFolder.open(directory), labels: labels, problemType: problemType, seed: seed)
    }

    /// A token classifier (`head: .token`, TokenClassifierHead.swift) or a sequence classifier from an opened
    /// BERT-family folder: a head of the other kind (or a base encoder's) is not reused but freshly initialised.
    public convenience init(folder: ModelFolder, head: EncoderHead, labels: [String]?, seed: UInt64) throws {
        try self.init(folder: folder, labels: labels, problemType: nil, seed: seed, head: head)
    }

    /// Loads an opened BERT-family folder (see `init(directory:labels:problemType:seed:)`).
    public init(folder: ModelFolder, labels: [String]?, problemType: ProblemType? = nil, seed: UInt64, head: EncoderHead? = nil) throws {
        let directory = folder.directory
        self.directory = directory
        var config = try folder.encoderConfig(for: "a BERT-family classifier")
        var reinitHead = false
        if let head, head != config.head {
            // A sequence head's classifier is not a token head's (and vice versa): start the asked-for head fresh.
            reinitHead = !config.id2label.isEmpty
            config.head = head
        }
        if let labels {
            if config.id2label != labels {
                // A head trained for other labels cannot be reused; a fresh head for the data's labels is.
                reinitHead = reinitHead || !config.id2label.isEmpty
                config.id2label = labels
            }
        } else if config.id2label.isEmpty {
            throw TrainingError("\(config.path): the model has no id2label, so it is not a trained classifier; train one with `disttrain train` first", exitCode: 1)
        }
        if let problemType { config.problemType = problemType }
        if config.problemType == nil && config.head == .sequence { config.problemType = config.numLabels == 1 ? .regression : .singleLabel }
        self.config = config

        let weights = directory.appendingPathComponent("model.safetensors")
        if let initSeed = folder.initSeed {
            // train --init-from-config: every weight (head included) as transformers initialises the model.
            try ModelFolder.checkParameters(of: config, path: config.path)
            store = EncoderClassifier.initializedStore(config: config, seed: initSeed)
            report = LoadReport.fromConfig
        } else {
        guard FileManager.default.fileExists(atPath: weights.path) else {
            let hasBin = FileManager.default.fileExists(atPath: directory.appendingPathComponent("pytorch_model.bin").path)
            throw TrainingError("\(weights.path): not found" + (hasBin
                ? "; only pytorch_model.bin is present: convert it with `transformers` (save_pretrained(..., safe_serialization=True))"
                : "; the model folder needs model.safetensors"))
        }
        let file = try SafeTensorsFile(url: weights)
        (store, report) = try EncoderClassifier.loadStore(from: file, config: config, reinitializeHead: reinitHead, seed: seed)
        }
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
        let baseLabels = try ModelFolder.open(modelDir).labels
        if let rows = PEFTAdapter.headRows(try SafeTensorsFile(url: weights)), rows != baseLabels.count {
            let names = (try? String(contentsOf: adapterDir.appendingPathComponent("labels.txt"), encoding: .utf8))?
                .split(separator: "\n").map(String.init) ?? []
            return names.count == rows ? names : (0..<rows).map { "LABEL_\($0)" }
        }
        if baseLabels.isEmpty {
            throw TrainingError("\(adapterDir.path): the adapter has no trained classifier and the base model has no labels; there is no classifier to run")
        }
        return nil
    }
}
