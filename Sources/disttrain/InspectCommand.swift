// `disttrain inspect PATH`: describes a model folder or a checkpoint folder without loading it for training:
// architecture, parameter counts, labels, problem type; for a checkpoint also the training state from
// trainer_state.json and whether its manifest verifies. `--json` prints one machine-readable object.
// Deliberately not here: changing anything on disk, loading the tokenizer, or running the model.
// Exit codes: 0 described, 2 the path does not exist, 1 unreadable files or a checkpoint that fails verification.
import ArgumentParser
import Foundation
import Model
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
        if let ck = info["checkpoint"] as? [String: Any], ck["verified"] as? Bool == false { throw ExitCode(1) }
    }

    /// Everything known about the folder, as JSON-ready values.
    static func describe(_ dir: URL) throws -> [String: Any] {
        let configURL = dir.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw TrainingError("\(configURL.path): not found; inspect needs a model folder or a checkpoint folder (one with config.json)")
        }
        let config = try ModelConfig.load(url: configURL)
        let layout = EncoderClassifier.makeLayout(config: config)
        var out: [String: Any] = [
            "path": dir.path,
            "kind": FileManager.default.fileExists(atPath: dir.appendingPathComponent("trainer_state.json").path) ? "checkpoint" : "model",
            "architecture": [
                "family": config.family.rawValue, "layers": config.layers, "hidden": config.hidden, "heads": config.heads,
                "intermediate": config.intermediate, "vocab": config.vocabSize, "max_positions": config.maxPositions,
                "activation": config.activation.rawValue,
            ] as [String: Any],
            "labels": config.id2label,
            "problem_type": config.problemType?.rawValue ?? (config.id2label.isEmpty ? "none (no id2label: not a trained classifier)" : "single_label_classification (default)"),
            "parameters": layout.count,
        ]
        let embeddings = layout.entries.filter { $0.name.contains("embeddings.") }.reduce(0) { $0 + $1.count }
        out["parameters_non_embedding"] = layout.count - embeddings
        let weights = dir.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: weights.path) {
            let file = try SafeTensorsFile(url: weights)
            out["weights_file"] = ["tensors": file.tensors.count, "elements": file.tensors.reduce(0) { $0 + $1.elementCount },
                                   "dtypes": Array(Set(file.tensors.map(\.dtype.rawValue))).sorted()] as [String: Any]
        } else {
            out["weights_file"] = "missing (model.safetensors not found)"
        }
        if out["kind"] as? String == "checkpoint" {
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
            if let b = state.bestMetric { ck["best_eval_accuracy"] = b }
            if let s = state.bestStep { ck["best_step"] = s }
            out["checkpoint"] = ck
        }
        return out
    }

    static func text(_ info: [String: Any]) -> String {
        let a = info["architecture"] as? [String: Any] ?? [:]
        var lines = ["\(info["kind"] ?? "model"): \(info["path"] ?? "")"]
        lines.append("  architecture: \(a["family"] ?? "?"), \(a["layers"] ?? "?") layers, hidden \(a["hidden"] ?? "?"), \(a["heads"] ?? "?") heads, FFN \(a["intermediate"] ?? "?"), vocab \(a["vocab"] ?? "?"), max positions \(a["max_positions"] ?? "?"), \(a["activation"] ?? "?")")
        lines.append("  parameters: \(grouped(info["parameters"] as? Int ?? 0)) (\(grouped(info["parameters_non_embedding"] as? Int ?? 0)) non-embedding)")
        if let w = info["weights_file"] as? [String: Any] {
            lines.append("  model.safetensors: \(w["tensors"] ?? 0) tensors, \(grouped(w["elements"] as? Int ?? 0)) elements, \((w["dtypes"] as? [String] ?? []).joined(separator: ", "))")
        } else if let w = info["weights_file"] as? String {
            lines.append("  model.safetensors: \(w)")
        }
        let labels = info["labels"] as? [String] ?? []
        lines.append("  labels: " + (labels.isEmpty ? "none" : "\(labels.count) (\(labels.joined(separator: ", ")))"))
        lines.append("  problem type: \(info["problem_type"] ?? "?")")
        if let ck = info["checkpoint"] as? [String: Any] {
            lines.append("  training state: step \(ck["step"] ?? "?")/\(ck["total_steps"] ?? "?"), epoch \(String(format: "%.3f", ck["epoch"] as? Double ?? 0)), saved with world size \(ck["world_size_at_save"] ?? "?") and global batch \(ck["global_batch_at_save"] ?? "?"), seed \(ck["seed"] ?? "?")")
            lines.append("  data fingerprint: \(ck["data_fingerprint"] ?? "?")…")
            if let b = ck["best_eval_accuracy"] as? Double { lines.append("  best eval accuracy: \(String(format: "%.4f", b)) at step \(ck["best_step"] ?? "?")") }
            if ck["verified"] as? Bool == true {
                lines.append("  manifest: verified (every file's size and sha256 match)")
            } else {
                lines.append("  manifest: FAILED: \(ck["verify_problem"] ?? "?"); do not resume from this checkpoint")
            }
        }
        return lines.joined(separator: "\n")
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
