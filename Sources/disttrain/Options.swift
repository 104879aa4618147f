// Options: the flag groups several commands share (`@OptionGroup`), the enum flags' argument conformances, and the
// flag checks (`Check`), each written once. A command's own flags stay in its file.
//   ConfigFileOption      --config FILE.yaml (eval, predict, generate, tokenize, merge; train and bench declare theirs)
//   InferenceModelOptions --model, --adapter (eval, predict)
//   InferenceRunOptions   --max-length, --batch-size (eval, predict)
//   ThreadsOption         --threads (train, eval, predict)
//   TextColumnOptions     --text-column, --text-pair-column (train, eval, predict); DataColumnOptions adds --label-column
//   TrainModelOptions     --model, --init-from-config (train)
//   TrainDataOptions      --train-file, --eval-file, --output-dir, columns, --data-format, --labels, --validation-split
//   LoRAOptions           --lora-r, --lora-alpha, --lora-dropout, --lora-target-modules, --use-rslora (train)
//   LoggingOptions        --log-level, --quiet (train)
// Deliberately not here: mapping onto TrainConfig (TrainCommand.trainConfig) and the task-specific flags of train.
import ArgumentParser
import Dist       // availableCores(): the --threads default
import Foundation
import Model      // LoRAConfig and LRScheduleKind, the library types these flags map onto
import Training

/// Every flag check that more than one command makes, with one wording.
enum Check {
    /// `flag` must be positive when given.
    static func positive(_ value: Int?, _ flag: String) throws {
        if let value, value <= 0 { throw ValidationError("\(flag) must be positive (got \(value))") }
    }

    /// A truncation length holds at least `minimum` tokens ([CLS] and [SEP], or one token and its target).
    static func maxLength(_ value: Int?, minimum: Int = 2, flag: String = "--max-length") throws {
        if let value, value < minimum { throw ValidationError("\(flag) must be at least \(minimum) (got \(value))") }
    }

    /// `flag` must not be negative.
    static func nonNegative(_ value: Double, _ flag: String) throws {
        guard value >= 0 else { throw ValidationError("\(flag) must not be negative (got \(value))") }
    }
}

/// `--config FILE.yaml`: expanded into flags before parsing (ConfigFile.swift); declared so help shows it and the
/// parser accepts it.
struct ConfigFileOption: ParsableArguments {
    @Option(help: ArgumentHelp("YAML file of flag values (keys are the long flag names, e.g. `batch-size: 16`); flags given here override it.",
                               valueName: "file.yaml"))
    var config: String?
}

/// The model an inference command runs, and an optional LoRA adapter on it.
struct InferenceModelOptions: ParsableArguments {
    @Option(help: "A trained model folder (as written by `disttrain train`) or a checkpoint folder.") var model: String
    @Option(help: "A PEFT LoRA adapter folder (from `train --lora-r`) to run unmerged on --model (the base it was trained on).")
    var adapter: String?

    var modelURL: URL { URL(fileURLWithPath: model) }
    var adapterURL: URL? { adapter.map { URL(fileURLWithPath: $0) } }
}

/// Truncation and batching of an inference command.
struct InferenceRunOptions: ParsableArguments {
    @Option(help: "Truncate inputs to this many tokens (special tokens included; default: 128, or the model's positions when fewer).")
    var maxLength: Int?
    @Option(help: "Texts per forward pass.") var batchSize: Int = 32

    func validate() throws {
        try Check.positive(batchSize, "--batch-size")
        try Check.maxLength(maxLength)
    }
}

/// `--threads`, per rank.
struct ThreadsOption: ParsableArguments {
    @Option(help: "Compute threads per rank (default: the cores available to the rank).") var threads: Int?

    func validate() throws { try Check.positive(threads, "--threads") }

    /// The threads to use: the flag, or the cores this rank may use.
    var count: Int { threads ?? availableCores() }
}

/// Which columns (JSONL keys, CSV/TSV header names) hold the text and the optional second text of a pair.
struct TextColumnOptions: ParsableArguments {
    @Option(help: "Column holding the text.") var textColumn: String = "text"
    @Option(help: "Column holding the second text of a pair.") var textPairColumn: String?

    var columns: ColumnOptions { ColumnOptions(text: textColumn, textPair: textPairColumn) }
}

/// The text columns and the label column of labelled data.
struct DataColumnOptions: ParsableArguments {
    @OptionGroup var text: TextColumnOptions
    @Option(help: "Column holding the label.") var labelColumn: String = "label"

    var columns: ColumnOptions { ColumnOptions(text: text.textColumn, textPair: text.textPairColumn, label: labelColumn) }
}

/// `train`: the model to fine-tune, or the config.json to build one from.
struct TrainModelOptions: ParsableArguments {
    @Option(help: "Hugging Face model folder (config.json, model.safetensors, vocab.txt or tokenizer.json); with --init-from-config, the folder holding that config (default: its folder).")
    var model: String?
    @Option(help: ArgumentHelp("Pre-train from scratch: build the model of this config.json (any name, or a folder holding config.json) with every weight initialised from --seed as transformers initialises a new model; the tokenizer files are read beside it. A resumed run continues its checkpoint instead.", valueName: "config.json"))
    var initFromConfig: String?

    func validate() throws {
        guard let m = model, let c = initFromConfig else { return }
        let dir = URL(fileURLWithPath: m).standardizedFileURL
        guard configFolder(c).standardizedFileURL.path == dir.path else {
            throw ValidationError("--init-from-config \(c) is not in --model \(m): the tokenizer is read beside the config, so give the config inside the model folder, or leave --model out")
        }
    }

    /// The folder of `path` when it is a config file, or `path` itself when it is a folder.
    func configFolder(_ path: String) -> URL {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue ? url : url.deletingLastPathComponent()
    }

    /// --model, else the folder of --init-from-config, else the working directory (refused later as no model).
    var modelDir: URL {
        model.map { URL(fileURLWithPath: $0) } ?? initFromConfig.map(configFolder) ?? URL(fileURLWithPath: ".")
    }
}

/// `train`: the data, its columns and format, and where the run goes.
struct TrainDataOptions: ParsableArguments {
    @Option(help: "Training data: JSONL with {\"text\", \"label\"} per line, or CSV/TSV with a header.")
    var trainFile: String
    @Option(help: "Evaluation data in the same format (labels must be among the training labels).")
    var evalFile: String?
    @Option(help: "Folder for the trained model, eval_results.json and metrics.jsonl.")
    var outputDir: String
    @OptionGroup var columns: DataColumnOptions
    @Option(help: "Format of --train-file and --eval-file when the extension does not say: jsonl, csv or tsv (classification data), or conll (token classification: word … tag columns; the default for .conll/.txt/.iob/.bio files).")
    var dataFormat: DataFormatOption?
    @Option(help: "File with one label name per line (default: the labels of the training file).") var labels: String?
    @Option(help: "Hold out this fraction of the training data for evaluation when no --eval-file is given.")
    var validationSplit: Double = 0
}

/// `train --lora-r`: a PEFT LoRA adapter instead of full fine-tuning.
struct LoRAOptions: ParsableArguments {
    @Option(help: "LoRA rank: train a PEFT LoRA adapter (frozen base) instead of every weight (0 = full fine-tuning).")
    var loraR: Int = 0
    @Option(help: "LoRA alpha (scaling alpha/r).") var loraAlpha: Double = 8
    @Option(help: "Dropout on the LoRA input.") var loraDropout: Double = 0
    @Option(help: "Comma-separated LoRA target modules (default: query,value; q_lin,v_lin for DistilBERT; c_attn for GPT-2).")
    var loraTargetModules: String?
    @Flag(help: "Rank-stabilised LoRA scaling alpha/sqrt(r).") var useRslora = false

    /// nil for full fine-tuning (--lora-r 0).
    var config: LoRAConfig? {
        guard loraR != 0 else { return nil }
        return LoRAConfig(r: loraR, alpha: loraAlpha, dropout: loraDropout, useRSLoRA: useRslora,
                          targetModules: loraTargetModules.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } })
    }
}

/// What rank 0 prints while training.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Least severe messages shown: trace, debug (every metrics record), info, notice, warning, error, critical.")
    var logLevel: LogLevelOption = .info
    @Flag(help: "No progress line and no per-step or per-evaluation lines: only notices, warnings, errors and the final JSON (as --log-level notice).")
    var quiet = false

    /// The level in effect: --quiet raises it to notice.
    var level: LogLevelOption { quiet && logLevel.level < .notice ? .notice : logLevel }
}

// Enum flags: a bad value is refused by the parser, which lists the allowed values (help lists them too); values are
// the raw names (`causal-lm`, `dr_grpo`), on the command line and in --config YAML alike.
extension LRScheduleKind: ExpressibleByArgument {}
extension TagScheme: ExpressibleByArgument {
    /// seqeval's scheme names in any case (`IOB2` as seqeval's class names them, `iob2`).
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
    public var defaultValueDescription: String { rawValue }
}
extension TaskKind: ExpressibleByArgument {
    public var defaultValueDescription: String { rawValue }
}
extension RewardScaling: ExpressibleByArgument {
    public var defaultValueDescription: String { rawValue }
}
extension AdvantageEstimator: ExpressibleByArgument {
    public var defaultValueDescription: String { rawValue }
}

/// `train --loss-type`: a DPO loss (sigmoid, ipo, robust) or a GRPO one (grpo, dr_grpo, bnpo, dapo); `Train.validate`
/// checks that the name belongs to the --task.
struct LossTypeOption: ExpressibleByArgument {
    let rawValue: String
    init?(argument: String) {
        guard DPOLossType(rawValue: argument) != nil || GRPOLossType(rawValue: argument) != nil else { return nil }
        rawValue = argument
    }
    static var allValueStrings: [String] { DPOLossType.allCases.map(\.rawValue) + GRPOLossType.allCases.map(\.rawValue) }
    var dpo: DPOLossType? { DPOLossType(rawValue: rawValue) }
    var grpo: GRPOLossType? { GRPOLossType(rawValue: rawValue) }
}
extension DataFormat: ExpressibleByArgument {}

/// `--data-format` of train and eval: Training's DataFileFormat (jsonl, csv, tsv; conll for token classification).
typealias DataFormatOption = DataFileFormat
extension DataFileFormat: ExpressibleByArgument {}
