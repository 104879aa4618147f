// LoRA fine-tuning through the binary: only the PEFT adapter is trained and saved, a crash-and-resume run ends on
// the same adapter bytes as an uninterrupted one, 2 ranks give the 1-process losses, and `merge` folds the adapter
// into a plain model folder that `predict` uses.
import Foundation
import XCTest

final class LoRATrainingTests: XCTestCase {
    func testLoRATrainResumeRanksAndMerge() throws {
        let dir = try CLI.tempDir("lora")
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = dir.appendingPathComponent("train.jsonl")
        try (lines[0..<40].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        func args(_ out: String, _ extra: [String] = []) -> [String] {
            ["train", "--model", base.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "10", "--save-steps", "2", "--logging-steps", "1", "--learning-rate", "1e-2",
             "--max-length", "32", "--seed", "2", "--lora-r", "4", "--lora-alpha", "8", "--lora-dropout", "0.1"] + extra
        }
        let ref = try CLI.run(args("ref"))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refDir = dir.appendingPathComponent("ref")
        XCTAssertTrue(FileManager.default.fileExists(atPath: refDir.appendingPathComponent("adapter_config.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: refDir.appendingPathComponent("model.safetensors").path),
                       "LoRA saves the adapter, not a full model")
        let adapter = try CLI.tensors(refDir.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertTrue(adapter.keys.allSatisfy { $0.hasPrefix("base_model.model.") }, "\(adapter.keys)")
        XCTAssertTrue(adapter.keys.contains("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"))
        XCTAssertTrue(adapter.keys.contains("base_model.model.classifier.weight"))

        // Crash right after checkpoint 4 is complete, resume: same adapter bytes as the uninterrupted run.
        let crashed = try CLI.run(args("re", ["--fault-inject", "before-latest:4"]))
        XCTAssertEqual(crashed.status, 137)
        let resumed = try CLI.run(args("re"))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-4"), resumed.stderr)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("re/adapter_model.safetensors")),
                       try Data(contentsOf: refDir.appendingPathComponent("adapter_model.safetensors")))

        // Two ranks: same per-step losses.
        let two = try CLI.run(args("two"), ranks: 2, timeout: 180)
        XCTAssertEqual(two.status, 0, two.stderr)
        func losses(_ d: String) throws -> [Double] {
            try CLI.jsonLines(dir.appendingPathComponent("\(d)/metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
        }
        let a = try losses("ref"), b = try losses("two")
        XCTAssertEqual(a.count, 10)
        for (k, (x, y)) in zip(a, b).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1)") }

        // Merge into a plain folder and predict with it.
        let merged = dir.appendingPathComponent("merged")
        let m = try CLI.run(["merge", "--model", base.path, "--adapter", refDir.path, "--output", merged.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        let p = try CLI.run(["predict", "--model", merged.path, "--input", train.path, "--max-length", "32"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(p.stdout.split(separator: "\n").count, 40)
    }

    func testLoRARankMustBePositive() throws {
        let base = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        let dir = try CLI.tempDir("lora-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = dir.appendingPathComponent("t.jsonl")
        try "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n".write(to: train, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--model", base.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent("o").path,
                             "--batch-size", "2", "--max-length", "16", "--lora-r", "-2"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.lowercased().contains("r"), r.stderr)
        let r2 = try CLI.run(["train", "--model", base.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent("o").path,
                              "--batch-size", "2", "--max-length", "16", "--lora-r", "4", "--lora-target-modules", "nonexistent"])
        XCTAssertEqual(r2.status, 2, r2.stderr)
        XCTAssertTrue(r2.stderr.contains("nonexistent"), r2.stderr)
    }
}
