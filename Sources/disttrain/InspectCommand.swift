// `disttrain inspect PATH`: describes a model folder (any kind ModelFolder opens: BERT-family and GPT-2 classifiers,
// GPT-2 language models), a LoRA adapter folder, or a checkpoint of either, without loading it for training:
// architecture, parameter counts, labels, problem type (an adapter: r, alpha, targets, base model); for a checkpoint also the training state from
// trainer_state.json and whether its manifest verifies. `--json` prints one machine-readable object.
// Deliberately not here: changing anything on disk, loading the tokenizer, or running the model.
// Exit codes: 0 described, 2 the path does not exist, 1 unreadable files or a checkpoint that fails verification.
import ArgumentParser
import Foundation
import Model      // SafeTensorsFile, PEFTAdapter, ModelArchitecture: the files `inspect` describes
import Training

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model or checkpoint folder: architecture, parameters, labels, training state.",
        discussion: """
        A checkpoint folder (checkpoint-STEP inside a training output folder) also shows the step, epoch, world size
        and global batch at save time and the data fingerprint, and is verified against its manifest (size and sha256
        of every file); a checkpoint that does not verify exits with code 1.
          disttrain inspect runs/spam
          disttrain inspect runs/spam/checkpoint-200 --json
        """)

    @Argument(help: "A model folder (config.json, model.safetensors) or a checkpoint folder.") var path: String
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() throws {
        let dir = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingError("\(path): no such folder; pass a model folder or a checkpoint folder", exitCode: 2)
        }
        let info = try Inspect.describe(dir)
        if json {
            let d = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: d, as: UTF8.self))
        } else {
            print(Inspect.text(info))
        }
        if let ck = info["checkpoint"] as? [String: Any], ck["verified"] as? Bool == false { throw ExitCode(ExitPolicy.runtime) }
    }

    /// Everything known about the folder, as JSON-ready values: a model folder of any supported kind (through
    /// ModelFolder), or a LoRA adapter folder (adapter_config.json); either may be a checkpoint.
    static func describe(_ dir: URL) throws -> [String: Any] {
        let isCheckpoint = FileManager.default.fileExists(atPath: dir.appendingPathComponent("trainer_state.json").path)
        var out: [String: Any] = ["path": dir.path, "kind": isCheckpoint ? "checkpoint" : "model"]
        let hasConfig = FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path)
        if !hasConfig && FileManager.default.fileExists(atPath: dir.appendingPathComponent(PEFTAdapter.configFileName).path) {
            out["adapter"] = try describeAdapter(dir)
        } else if !hasConfig {
            throw TrainingError("\(dir.appendingPathComponent("config.json").path): not found; inspect needs a model folder or a checkpoint folder (one with config.json, or adapter_config.json for a LoRA adapter)")
        } else {
            let folder = try ModelFolder.open(dir)
            let a: any ModelArchitecture = switch folder.config { case .encoder(let c): c; case .gpt2(let c): c }
            let head = folder.kind != .gpt2LanguageModel && !a.id2label.isEmpty
            let layout = a.parameterLayout(head: head)
            out["model_kind"] = folder.kind.rawValue
            if let arch = folder.architecture { out["architectures"] = arch }
            out["architecture"] = [
                "family": a.familyName, "layers": a.layers, "hidden": a.hidden, "heads": a.heads,
                "intermediate": a.intermediate, "vocab": a.vocabSize, "max_positions": a.maxPositions,
                "activation": a.activation.rawValue,
            ] as [String: Any]
            out["labels"] = folder.kind == .gpt2LanguageModel ? [] : a.id2label
            switch folder.config {
            case .encoder(let config):
                out["problem_type"] = folder.kind == .encoderTokenClassifier ? "token_classification"
                    : folder.kind == .encoderQuestionAnswering ? "question_answering (start/end logits)" : config.problemType?.rawValue ?? (config.id2label.isEmpty ? "none (no id2label: not a trained classifier)" : "single_label_classification (default)")
            case .gpt2:
                out["problem_type"] = folder.kind == .gpt2LanguageModel ? "causal_lm"
                    : (a.id2label.isEmpty ? "none (no id2label: not a trained classifier)" : "single_label_classification (default)")
            }
            out["parameters"] = layout.count
            let embeddings = layout.entries.filter { a.isEmbedding($0.name) }.reduce(0) { $0 + $1.count }
            out["parameters_non_embedding"] = layout.count - embeddings
            out["weights_file"] = try describeWeights(dir.appendingPathComponent("model.safetensors"))
        }
        if isCheckpoint {
            let state = try Checkpoint.readState(dir)
            let problem = Checkpoint.verify(dir)
            var ck: [String: Any] = [
                "step": state.globalStep, "epoch": state.epoch, "total_steps": state.totalSteps,
                "world_size_at_save": state.worldSize, "global_batch_at_save": state.globalBatch,
                "sample_cursor": state.sampleCursor, "seed": state.seed,
                "data_fingerprint": String(state.dataFingerprint.prefix(12)),
                "trainer_version": state.trainerVersion, "learning_rate_schedule": state.schedule.kind.rawValue,
                "verified": problem == nil,
            ]
            if let problem { ck["verify_problem"] = problem }
            // The metric `--metric-for-best-model` chose (recorded since this field exists; older checkpoints: unnamed).
            if let b = state.bestMetric { ck["best_metric"] = b }
            if let n = state.bestMetricName { ck["best_metric_name"] = n }
            if let s = state.bestStep { ck["best_step"] = s }
            out["checkpoint"] = ck
        }
        return out
    }

    /// A safetensors file's tensor count, element count and dtypes (or why it is missing).
    static func describeWeights(_ url: URL) throws -> Any {
        guard FileManager.default.fileExists(atPath: url.path) else { return "missing (\(url.lastPathComponent) not found)" }
        let file = try SafeTensorsFile(url: url)
        return ["tensors": file.tensors.count, "elements": file.tensors.reduce(0) { $0 + $1.elementCount },
                "dtypes": Array(Set(file.tensors.map(\.dtype.rawValue))).sorted()] as [String: Any]
    }

    /// A PEFT LoRA adapter folder: its config, weights and (from `train --lora-r`) label names.
    static func describeAdapter(_ dir: URL) throws -> [String: Any] {
        let c: LoRAConfig
        do { c = try PEFTAdapter.readConfig(dir) } catch let e as LoRAError { throw TrainingError(e.message) }
        let labels = (try? String(contentsOf: dir.appendingPathComponent("labels.txt"), encoding: .utf8))?
            .split(separator: "\n").map(String.init) ?? []
        var out: [String: Any] = [
            "r": c.r, "lora_alpha": c.alpha, "lora_dropout": c.dropout, "use_rslora": c.useRSLoRA, "task_type": c.taskType,
            "target_modules": c.targetRegex ?? (c.targetModules ?? []).joined(separator: ","),
            "modules_to_save": c.modulesToSave ?? [], "base_model": c.baseModelNameOrPath ?? "unknown", "labels": labels,
        ]
        out["weights_file"] = try describeWeights(dir.appendingPathComponent(PEFTAdapter.weightsFileName))
        return out
    }

    static func text(_ info: [String: Any]) -> String {
        var lines = ["\(info["kind"] ?? "model"): \(info["path"] ?? "")"]
        if let ad = info["adapter"] as? [String: Any] {
            lines.append("  LoRA adapter (PEFT): r \(ad["r"] ?? "?"), alpha \(ad["lora_alpha"] ?? "?"), dropout \(ad["lora_dropout"] ?? "?"), targets \(ad["target_modules"] ?? "?"), task \(ad["task_type"] ?? "?")")
            lines.append("  base model: \(ad["base_model"] ?? "unknown")")
            lines.append(weightsLine(PEFTAdapter.weightsFileName, ad["weights_file"]))
            let labels = ad["labels"] as? [String] ?? []
            lines.append("  labels: " + (labels.isEmpty ? "none recorded" : "\(labels.count) (\(labels.joined(separator: ", ")))"))
        } else {
            lines += modelLines(info)
        }
        if let ck = info["checkpoint"] as? [String: Any] {
            lines += checkpointLines(ck)
        }
        return lines.joined(separator: "\n")
    }

    static func modelLines(_ info: [String: Any]) -> [String] {
        let a = info["architecture"] as? [String: Any] ?? [:]
        var lines: [String] = []
        if let k = info["model_kind"] as? String { lines.append("  kind: \(k)" + ((info["architectures"] as? String).map { " (\($0))" } ?? "")) }
        lines.append("  architecture: \(a["family"] ?? "?"), \(a["layers"] ?? "?") layers, hidden \(a["hidden"] ?? "?"), \(a["heads"] ?? "?") heads, FFN \(a["intermediate"] ?? "?"), vocab \(a["vocab"] ?? "?"), max positions \(a["max_positions"] ?? "?"), \(a["activation"] ?? "?")")
        lines.append("  parameters: \(grouped(info["parameters"] as? Int ?? 0)) (\(grouped(info["parameters_non_embedding"] as? Int ?? 0)) non-embedding)")
        lines.append(weightsLine("model.safetensors", info["weights_file"]))
        let labels = info["labels"] as? [String] ?? []
        lines.append("  labels: " + (labels.isEmpty ? "none" : "\(labels.count) (\(labels.joined(separator: ", ")))"))
        lines.append("  problem type: \(info["problem_type"] ?? "?")")
        return lines
    }

    /// "  FILE: N tensors, M elements, F32" (or why the file is missing), from `describeWeights`.
    static func weightsLine(_ name: String, _ w: Any?) -> String {
        guard let w = w as? [String: Any] else { return "  \(name): \(w ?? "?")" }
        return "  \(name): \(w["tensors"] ?? 0) tensors, \(grouped(w["elements"] as? Int ?? 0)) elements, \((w["dtypes"] as? [String] ?? []).joined(separator: ", "))"
    }

    static func checkpointLines(_ ck: [String: Any]) -> [String] {
        var lines: [String] = []
        lines.append("  training state: step \(ck["step"] ?? "?")/\(ck["total_steps"] ?? "?"), epoch \(String(format: "%.3f", ck["epoch"] as? Double ?? 0)), saved with world size \(ck["world_size_at_save"] ?? "?") and global batch \(ck["global_batch_at_save"] ?? "?"), seed \(ck["seed"] ?? "?")")
        lines.append("  data fingerprint: \(ck["data_fingerprint"] ?? "?")…")
        if let b = ck["best_metric"] as? Double {
            lines.append("  best \(ck["best_metric_name"] as? String ?? "metric"): \(String(format: "%.4f", b)) at step \(ck["best_step"] ?? "?")")
        }
        if ck["verified"] as? Bool == true {
            lines.append("  manifest: verified (every file's size and sha256 match)")
        } else {
            lines.append("  manifest: FAILED: \(ck["verify_problem"] ?? "?"); do not resume from this checkpoint")
        }
        return lines
    }

    static func grouped(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, ch) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out += "," }
            out.append(ch)
        }
        return out
    }
}
