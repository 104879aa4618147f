// Causal-LM fine-tuning of the tiny GPT-2 through the real binary: the loss falls on Hamlet text and on derived
// prompt→response pairs, the saved folder reloads for generation, and `mpirun -n 2` gives the single-process
// per-step losses (normalised by the global count of target tokens) within 1e-5.
import Foundation
import XCTest

final class LanguageModelTests: XCTestCase {
    let model = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm")

    func subset(_ file: String, _ range: Range<Int>, _ dir: URL, _ name: String) throws -> URL {
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/hamlet-lm/\(file)"), encoding: .utf8)
            .split(separator: "\n")
        let url = dir.appendingPathComponent(name)
        try (lines[range].joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func losses(_ out: URL) throws -> [Double] {
        try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    func testTextAndPromptResponseTrainingLossFallsAndRanksAgree() throws {
        let dir = try CLI.tempDir("lm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try subset("lm.jsonl", 0..<12, dir, "text.jsonl")
        let pairs = try subset("pairs.jsonl", 0..<96, dir, "pairs.jsonl")
        func args(_ train: URL, _ out: String) -> [String] {
            ["train", "--model", model.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "10", "--logging-steps", "1", "--learning-rate", "3e-3",
             "--max-length", "32", "--seed", "4", "--threads", "1"]
        }
        for (train, name) in [(text, "text"), (pairs, "pairs")] {
            let single = try CLI.run(args(train, "\(name)-1"), timeout: 240)
            XCTAssertEqual(single.status, 0, single.stderr)
            let two = try CLI.run(args(train, "\(name)-2"), ranks: 2, timeout: 240)
            XCTAssertEqual(two.status, 0, two.stderr)
            let a = try losses(dir.appendingPathComponent("\(name)-1")), b = try losses(dir.appendingPathComponent("\(name)-2"))
            XCTAssertEqual(a.count, 10, name)
            XCTAssertLessThan(a.last!, a.first! - 0.05, "\(name): the loss must fall (\(a.first!) → \(a.last!))")
            for (k, (x, y)) in zip(a, b).enumerated() {
                XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "\(name) step \(k + 1): 1 process vs 2 ranks")
            }
        }
        // The saved folder is a GPT-2 model again: generation runs from it.
        let gen = try CLI.run(["generate", "--model", dir.appendingPathComponent("pairs-1").path, "--prompt", "Hamlet: Who is there?",
                               "--max-new-tokens", "5", "--json"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(gen.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((obj?["new_ids"] as? [Int])?.count, 5, gen.stdout)
    }

    /// --debug on GPT-2: a NaN weight in block 1's MLP projection is reported at that block's output (forward), and
    /// the per-block all-reduce (on without --debug) still gives the 1-process losses at 4 ranks.
    func testDebugNamesTheGPT2BlockAndFourRanksAgree() throws {
        let dir = try CLI.tempDir("lmdbg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try subset("lm.jsonl", 0..<12, dir, "text.jsonl")
        func args(_ m: URL, _ out: String, steps: Int) -> [String] {
            ["train", "--model", m.path, "--train-file", text.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "4", "--max-steps", "\(steps)", "--logging-steps", "1", "--learning-rate", "3e-3",
             "--max-length", "32", "--seed", "4", "--threads", "1"]
        }
        let one = try CLI.run(args(model, "one", steps: 12), timeout: 240)
        XCTAssertEqual(one.status, 0, one.stderr)
        let four = try CLI.run(args(model, "four", steps: 12), ranks: 4, timeout: 240)
        XCTAssertEqual(four.status, 0, four.stderr)
        let a = try losses(dir.appendingPathComponent("one")), b = try losses(dir.appendingPathComponent("four"))
        XCTAssertEqual(a.count, 12)
        for (k, (x, y)) in zip(a, b).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1): 1 process vs 4 ranks") }

        let bad = dir.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        for f in try FileManager.default.contentsOfDirectory(atPath: model.path) where !f.hasPrefix("golden") && f != "hub-layout" {
            try FileManager.default.copyItem(at: model.appendingPathComponent(f), to: bad.appendingPathComponent(f))
        }
        try CLI.poison(bad.appendingPathComponent("model.safetensors"), tensor: "transformer.h.1.mlp.c_proj.weight", index: 3)
        let r = try CLI.run(args(bad, "dbg", steps: 2) + ["--debug"], ranks: 2, timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--debug: first non-finite value at step 1, micro-batch 1, rank "), r.stderr)
        XCTAssertTrue(r.stderr.contains("nan in the output of transformer.h.1, element"), r.stderr)
    }

    /// GPT2ForSequenceClassification through `train`: a fresh `score` head for the data's labels, the loss falls,
    /// and 2 ranks give the 1-process losses.
    /// `generate` on a GPT-2 classifier folder works as transformers' GPT2LMHeadModel would (tied embeddings as the
    /// LM head) and says so; on a language model it prints no such note.
    func testGenerateOnAGPT2ClassifierFolderSaysWhatItUses() throws {
        let cls = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-cls")
        let r = try CLI.run(["generate", "--model", cls.path, "--prompt", "hello", "--max-new-tokens", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("is a GPT2ForSequenceClassification checkpoint"), r.stderr)
        XCTAssertTrue(r.stderr.contains("disttrain predict"), r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("hello"), r.stdout)
        let lm = try CLI.run(["generate", "--model", model.path, "--prompt", "hello", "--max-new-tokens", "3"])
        XCTAssertEqual(lm.status, 0, lm.stderr)
        XCTAssertFalse(lm.stderr.contains("GPT2ForSequenceClassification"), lm.stderr)
    }

    func testGPT2ClassifierTrainsAndRanksAgree() throws {
        let dir = try CLI.tempDir("g2cls")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cls = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-cls")
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = dir.appendingPathComponent("train.jsonl")
        try (lines[0..<48].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        func args(_ out: String) -> [String] {
            ["train", "--model", cls.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "12", "--logging-steps", "1", "--learning-rate", "5e-3",
             "--max-length", "32", "--seed", "6", "--threads", "1"]
        }
        let one = try CLI.run(args("one"), timeout: 240)
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stderr.contains("score.weight"), "the 3-label score head is re-initialised for 2 labels: \(one.stderr)")
        let two = try CLI.run(args("two"), ranks: 2, timeout: 240)
        XCTAssertEqual(two.status, 0, two.stderr)
        let a = try losses(dir.appendingPathComponent("one")), b = try losses(dir.appendingPathComponent("two"))
        XCTAssertEqual(a.count, 12)
        XCTAssertLessThan(a.suffix(4).reduce(0, +), a.prefix(4).reduce(0, +), "the loss must fall: \(a)")
        for (k, (x, y)) in zip(a, b).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1)") }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("one/config.json"))) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["GPT2ForSequenceClassification"])
    }
}
