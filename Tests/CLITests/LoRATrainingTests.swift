// LoRA fine-tuning through the binary (BERT classifier, GPT-2 language model, GPT-2 classifier): only the PEFT
// adapter is trained and saved, a crash-and-resume run ends on the same adapter bytes as an uninterrupted one, 2 ranks
// give the 1-process losses, and `merge` folds the adapter into a plain model folder that `predict` uses.
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
        XCTAssertTrue(m.stderr.contains("wrote \(merged.path)"), "merge says what it wrote: \(m.stderr)")
        // The adapter folder is never the output (it would be overwritten by the merged model).
        let same = try CLI.run(["merge", "--model", base.path, "--adapter", refDir.path, "--output", refDir.path])
        XCTAssertEqual(same.status, 2, same.stderr)
        XCTAssertTrue(same.stderr.contains("--output must differ from --adapter"), same.stderr)
        let p = try CLI.run(["predict", "--model", merged.path, "--input", train.path, "--max-length", "32"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(p.stdout.split(separator: "\n").count, 40)

        // predict/eval --adapter: the base (3-label head) with the adapter unmerged (its 2-label classifier from
        // labels.txt) gives the merged folder's labels and logits within 1e-5, and its metrics.
        let pa = try CLI.run(["predict", "--model", base.path, "--adapter", refDir.path, "--input", train.path, "--max-length", "32"])
        XCTAssertEqual(pa.status, 0, pa.stderr)
        func rows(_ out: String) throws -> [[String: Any]] {
            try out.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        }
        let merged1 = try rows(p.stdout), unmerged = try rows(pa.stdout)
        XCTAssertEqual(unmerged.count, 40)
        var maxDiff = 0.0
        for (a, b) in zip(unmerged, merged1) {
            XCTAssertEqual(a["label"] as? String, b["label"] as? String)
            let la = (a["logits"] as? [Double]) ?? [], lb = (b["logits"] as? [Double]) ?? []
            XCTAssertEqual(la.count, 2)
            for (x, y) in zip(la, lb) { maxDiff = max(maxDiff, abs(x - y)) }
        }
        XCTAssertLessThanOrEqual(maxDiff, 1e-5, "unmerged vs merged logits")
        let pb = try CLI.run(["predict", "--model", base.path, "--input", train.path, "--max-length", "32"])
        XCTAssertEqual(pb.status, 0, pb.stderr)
        XCTAssertNotEqual(try rows(pb.stdout).first?["label"] as? String, "ham", "the plain base has its own 3 labels")
        let em = try CLI.run(["eval", "--model", merged.path, "--eval-file", train.path, "--max-length", "32"])
        let ea = try CLI.run(["eval", "--model", base.path, "--adapter", refDir.path, "--eval-file", train.path, "--max-length", "32"])
        XCTAssertEqual(em.status, 0, em.stderr); XCTAssertEqual(ea.status, 0, ea.stderr)
        let jm = try JSONSerialization.jsonObject(with: Data(em.stdout.utf8)) as! [String: Any]
        let ja = try JSONSerialization.jsonObject(with: Data(ea.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(ja["eval_accuracy"] as? Double, jm["eval_accuracy"] as? Double)
        XCTAssertEqual((ja["eval_loss"] as? Double) ?? -1, (jm["eval_loss"] as? Double) ?? 1, accuracy: 1e-5)
        let bad = try CLI.run(["predict", "--model", base.path, "--adapter", dir.path, "--input", train.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("adapter_model.safetensors") || bad.stderr.contains("adapter_config.json"), bad.stderr)
    }

    func losses(_ dir: URL) throws -> [Double] {
        try CLI.jsonLines(dir.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    /// GPT-2 language model (CausalLMTask) with LoRA on every Conv1D kind: the loss falls, the output is a CAUSAL_LM
    /// PEFT adapter (fan_in_fan_out, no modules_to_save, no model.safetensors), a crash-and-resume run ends on the
    /// same adapter bytes, and 2 ranks give the 1-process losses within 1e-5.
    func testGPT2LanguageModelLoRA() throws {
        let dir = try CLI.tempDir("lora-lm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm")
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/hamlet-lm/pairs.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = dir.appendingPathComponent("pairs.jsonl")
        try (lines[0..<8].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        func args(_ out: String, _ extra: [String] = []) -> [String] {
            ["train", "--model", base.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "10", "--save-steps", "2", "--logging-steps", "1", "--learning-rate", "5e-2",
             "--max-length", "32", "--seed", "4", "--threads", "1", "--lora-r", "4", "--lora-alpha", "8",
             "--lora-target-modules", "c_attn,c_proj,c_fc"] + extra
        }
        let ref = try CLI.run(args("ref"), timeout: 240)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refDir = dir.appendingPathComponent("ref")
        XCTAssertFalse(FileManager.default.fileExists(atPath: refDir.appendingPathComponent("model.safetensors").path),
                       "LoRA saves the adapter, not a full model")
        let adapter = try CLI.tensors(refDir.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertEqual(adapter.count, 2 * 2 * 4, "lora_A and lora_B of c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj in 2 blocks: \(adapter.keys.sorted())")
        for m in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
            XCTAssertEqual(adapter["base_model.model.transformer.h.1.\(m).lora_A.weight"]?.count, 4 * (m == "mlp.c_proj" ? 48 : 16), m)
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: refDir.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(config["task_type"] as? String, "CAUSAL_LM")
        XCTAssertEqual(config["fan_in_fan_out"] as? Bool, true)
        XCTAssertTrue(config["modules_to_save"] is NSNull, "\(config["modules_to_save"] ?? "missing")")
        let a = try losses(refDir)
        XCTAssertEqual(a.count, 10)
        XCTAssertLessThan(a.last!, a.first! - 0.05, "the loss must fall (\(a.first!) → \(a.last!))")

        // generate --adapter (unmerged, with and without the KV cache) gives the ids of the folder `merge` writes.
        let merged = dir.appendingPathComponent("merged")
        let m = try CLI.run(["merge", "--model", base.path, "--adapter", refDir.path, "--output", merged.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        func generate(_ extra: [String]) throws -> [Int] {
            let g = try CLI.run(["generate", "--prompt", "Hamlet: Who is there?", "--max-new-tokens", "12", "--json"] + extra)
            XCTAssertEqual(g.status, 0, g.stderr)
            let obj = try JSONSerialization.jsonObject(with: Data(g.stdout.utf8)) as? [String: Any]
            return obj?["new_ids"] as? [Int] ?? []
        }
        let viaMerged = try generate(["--model", merged.path])
        XCTAssertEqual(viaMerged.count, 12)
        XCTAssertEqual(try generate(["--model", base.path, "--adapter", refDir.path]), viaMerged, "unmerged adapter vs merged folder")
        XCTAssertEqual(try generate(["--model", base.path, "--adapter", refDir.path, "--no-cache"]), viaMerged, "without the KV cache")
        XCTAssertNotEqual(try generate(["--model", base.path]), viaMerged, "the adapter changes the generation (so the comparison is not base vs base)")
        let bad = try CLI.run(["generate", "--model", base.path, "--adapter", dir.path, "--prompt", "x"])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("adapter_config.json"), bad.stderr)

        let crashed = try CLI.run(args("re", ["--fault-inject", "before-latest:4"]), timeout: 240)
        XCTAssertEqual(crashed.status, 137)
        let resumed = try CLI.run(args("re"), timeout: 240)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-4"), resumed.stderr)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("re/adapter_model.safetensors")),
                       try Data(contentsOf: refDir.appendingPathComponent("adapter_model.safetensors")))

        let two = try CLI.run(args("two"), ranks: 2, timeout: 240)
        XCTAssertEqual(two.status, 0, two.stderr)
        let b = try losses(dir.appendingPathComponent("two"))
        XCTAssertEqual(b.count, 10)
        for (k, (x, y)) in zip(a, b).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1): 1 process vs 2 ranks") }
    }

    /// GPT2ForSequenceClassification with LoRA: the fresh `score` head trains as modules_to_save, the loss falls,
    /// and 2 ranks give the 1-process losses within 1e-5.
    func testGPT2ClassifierLoRA() throws {
        let dir = try CLI.tempDir("lora-g2cls")
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-cls")
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = dir.appendingPathComponent("train.jsonl")
        try (lines[0..<40].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        func args(_ out: String) -> [String] {
            ["train", "--model", base.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "12", "--logging-steps", "1", "--learning-rate", "2e-2",
             "--max-length", "32", "--seed", "6", "--threads", "1", "--lora-r", "4", "--lora-alpha", "8"]
        }
        let one = try CLI.run(args("one"), timeout: 240)
        XCTAssertEqual(one.status, 0, one.stderr)
        let oneDir = dir.appendingPathComponent("one")
        let adapter = try CLI.tensors(oneDir.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertEqual(Set(adapter.keys), ["base_model.model.score.weight",
                                           "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
                                           "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"],
                       "peft's GPT-2 default target c_attn, and the 2-label score head")
        XCTAssertEqual(adapter["base_model.model.score.weight"]?.count, 2 * 16)
        let two = try CLI.run(args("two"), ranks: 2, timeout: 240)
        XCTAssertEqual(two.status, 0, two.stderr)
        let a = try losses(oneDir), b = try losses(dir.appendingPathComponent("two"))
        XCTAssertEqual(a.count, 12)
        XCTAssertLessThan(a.suffix(4).reduce(0, +), a.prefix(4).reduce(0, +) - 0.2, "the loss must fall: \(a)")
        for (k, (x, y)) in zip(a, b).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1)") }
    }

    /// predict/eval --adapter on GPT-2 folders equal the folder `merge` writes: a GPT2ForSequenceClassification adapter
    /// (trained on the base's own labels, so the merged folder keeps its config) in predict (logits within 1e-5), and
    /// a GPT-2 LM adapter in eval (eval_loss within 1e-5 relative).
    func testGPT2AdapterPredictAndEvalEqualMerged() throws {
        let dir = try CLI.tempDir("lora-g2-adapter")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fixtures = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")
        let sms = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(24)
        let cls = dir.appendingPathComponent("cls.jsonl")
        let relabelled = try sms.enumerated().map { i, line -> String in   // the base's own labels: its head is kept
            var o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            o["label"] = ["neg", "neu", "pos"][i % 3]
            return String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self)
        }
        try (relabelled.joined(separator: "\n") + "\n").write(to: cls, atomically: true, encoding: .utf8)
        let pairs = dir.appendingPathComponent("pairs.jsonl")
        let lm = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/hamlet-lm/pairs.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(16)
        try (lm.joined(separator: "\n") + "\n").write(to: pairs, atomically: true, encoding: .utf8)
        for (base, data, tag) in [("gpt2-tiny-cls", cls, "cls"), ("gpt2-tiny-lm", pairs, "lm")] {
            let b = fixtures.appendingPathComponent(base).path
            let out = dir.appendingPathComponent("\(tag)-adapter").path, merged = dir.appendingPathComponent("\(tag)-merged").path
            let t = try CLI.run(["train", "--model", b, "--train-file", data.path, "--output-dir", out, "--batch-size", "8",
                                 "--max-steps", "4", "--learning-rate", "3e-2", "--max-length", "32", "--seed", "3",
                                 "--lora-r", "4", "--lora-alpha", "8", "--lora-target-modules", "c_attn,c_fc"], timeout: 240)
            XCTAssertEqual(t.status, 0, t.stderr)
            let m = try CLI.run(["merge", "--model", b, "--adapter", out, "--output", merged])
            XCTAssertEqual(m.status, 0, m.stderr)
            if tag == "cls" {
                func logits(_ args: [String]) throws -> [[Double]] {
                    let r = try CLI.run(["predict", "--input", data.path, "--max-length", "32"] + args)
                    XCTAssertEqual(r.status, 0, r.stderr)
                    return try r.stdout.split(separator: "\n").map {
                        (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["logits"] as? [Double] ?? []
                    }
                }
                let viaMerged = try logits(["--model", merged]), unmerged = try logits(["--model", b, "--adapter", out])
                let plain = try logits(["--model", b])
                XCTAssertEqual(viaMerged.count, 24)
                XCTAssertEqual(unmerged.count, 24)
                let diff = zip(viaMerged.joined(), unmerged.joined()).map { abs($0 - $1) }.max() ?? 1
                XCTAssertLessThanOrEqual(diff, 1e-5, "GPT-2 classifier: unmerged vs merged logits")
                XCTAssertGreaterThan(zip(viaMerged.joined(), plain.joined()).map { abs($0 - $1) }.max() ?? 0, 1e-4, "the adapter changes the logits")
            } else {
                func loss(_ args: [String]) throws -> Double {
                    let r = try CLI.run(["eval", "--eval-file", data.path, "--max-length", "32"] + args)
                    XCTAssertEqual(r.status, 0, r.stderr)
                    return ((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["eval_loss"] as? Double) ?? -1
                }
                let viaMerged = try loss(["--model", merged]), unmerged = try loss(["--model", b, "--adapter", out])
                XCTAssertGreaterThan(viaMerged, 0)
                XCTAssertEqual(unmerged, viaMerged, accuracy: 1e-5 * viaMerged, "GPT-2 LM: eval_loss unmerged vs merged")
                XCTAssertNotEqual(try loss(["--model", b]), viaMerged, "the adapter changes the loss")
            }
        }
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
