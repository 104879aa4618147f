// `train --task reward` end to end through the built binary: a reward model from the tiny classifiers, the saved
// folder (num_labels 1), `predict` ({"reward"} per line) and `eval` (pairwise accuracy on a preference file);
// 1/2/4 ranks under real mpirun give the same per-step losses; resume is exact; every malformed preference row, an
// over-long pair (skipped and counted, as TRL filters it) and --task reward on a language model.
import Foundation
import XCTest

final class RewardCLITests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try CLI.tempDir("reward") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    static func fixture(_ name: String) -> URL { CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/\(name)") }

    /// `n` seeded pairs in the explicit layout (with a margin on every third) or the implicit one.
    func pairs(_ name: String, n: Int, explicit: Bool = true, seed: UInt64 = 1) throws -> URL {
        let good = ["great", "helpful", "kind", "clear", "correct", "lovely"], bad = ["rude", "wrong", "vague", "slow", "broken", "sad"]
        let topics = ["the answer", "this reply", "the summary", "her note", "the story", "his advice", "the plan"]
        var rng = TestRNG(seed)
        var lines: [String] = []
        for i in 0..<n {
            let t = topics[rng.below(topics.count)]
            let g = good[rng.below(good.count)], b = bad[rng.below(bad.count)]
            var obj: [String: Any] = explicit
                ? ["prompt": "Rate \(t):", "chosen": " it is \(g) and \(good[rng.below(good.count)])", "rejected": " it is \(b)"]
                : ["chosen": "\(t) is \(g)", "rejected": "\(t) is \(b) and \(bad[rng.below(bad.count)])"]
            if explicit && i % 3 == 0 { obj["margin"] = 0.5 }
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
        }
        let url = dir.appendingPathComponent(name)
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func trainArgs(model: String, train: URL, eval: URL?, out: String, _ extra: [String] = []) -> [String] {
        ["train", "--task", "reward", "--model", Self.fixture(model).path, "--train-file", train.path]
            + (eval.map { ["--eval-file", $0.path] } ?? [])
            + ["--output-dir", dir.appendingPathComponent(out).path, "--max-length", "24", "--batch-size", "4",
               "--learning-rate", "1e-3", "--logging-steps", "1", "--seed", "7"] + extra
    }

    func losses(_ out: String) throws -> [Double] {
        try CLI.jsonLines(dir.appendingPathComponent(out).appendingPathComponent("metrics.jsonl"))
            .compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    func json(_ url: URL) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any] }

    func testTrainPredictEvalOnBothTinyClassifiers() throws {
        for model in ["bert-tiny-cls", "gpt2-tiny-cls"] {
            let train = try pairs("train.jsonl", n: 12), eval = try pairs("eval.jsonl", n: 6, seed: 2)
            let r = try CLI.run(trainArgs(model: model, train: train, eval: eval, out: model, ["--max-steps", "6", "--eval-steps", "3"]))
            XCTAssertEqual(r.status, 0, "\(model): \(r.stderr)")
            guard r.status == 0 else { continue }
            let out = dir.appendingPathComponent(model)
            let config = try json(out.appendingPathComponent("config.json"))
            XCTAssertEqual(config["id2label"] as? [String: String], ["0": "LABEL_0"], model)
            XCTAssertEqual(config["problem_type"] as? String, "regression", model)
            XCTAssertEqual((config["architectures"] as? [String])?.first, model.hasPrefix("bert") ? "BertForSequenceClassification" : "GPT2ForSequenceClassification")
            let results = try json(out.appendingPathComponent("eval_results.json"))
            for key in ["eval_accuracy", "eval_margin", "eval_loss", "eval_mean_reward"] { XCTAssertNotNil(results[key], "\(model) \(key)") }
            XCTAssertEqual(results["eval_samples"] as? Int, 6, "\(model): every eval pair counted once")
            XCTAssertEqual(try losses(model).count, 6, model)
            // predict: one {"reward"} per input line, in order; the chosen text of a pair scores as `eval` scores it.
            let texts = dir.appendingPathComponent("texts.jsonl")
            try "{\"text\": \"the answer is great\"}\n{\"text\": \"the answer is rude\"}\n{\"text\": \"hello\"}\n".write(to: texts, atomically: true, encoding: .utf8)
            let p = try CLI.run(["predict", "--model", out.path, "--input", texts.path, "--max-length", "24"])
            XCTAssertEqual(p.status, 0, p.stderr)
            let lines = p.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            XCTAssertEqual(lines.count, 3, p.stdout)
            XCTAssertEqual(lines.map { $0["text"] as? String }, ["the answer is great", "the answer is rude", "hello"])
            XCTAssertTrue(lines.allSatisfy { ($0["reward"] as? NSNumber)?.doubleValue.isFinite == true && $0["label"] == nil }, p.stdout)
            // eval on the preference file: the trainer's final numbers.
            let e = try CLI.run(["eval", "--model", out.path, "--eval-file", eval.path, "--max-length", "24"])
            XCTAssertEqual(e.status, 0, e.stderr)
            let m = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
            XCTAssertEqual((m["eval_accuracy"] as! NSNumber).doubleValue, (results["eval_accuracy"] as! NSNumber).doubleValue, model)
            XCTAssertEqual((m["eval_loss"] as! NSNumber).doubleValue, (results["eval_loss"] as! NSNumber).doubleValue, accuracy: 1e-6, model)
            XCTAssertEqual((m["eval_margin"] as! NSNumber).doubleValue, (results["eval_margin"] as! NSNumber).doubleValue, accuracy: 1e-6, model)
            // A reward folder keeps training as a reward model without --task (auto), its head kept.
            let more = try CLI.run(["train", "--model", out.path, "--train-file", train.path, "--eval-file", eval.path,
                                    "--output-dir", dir.appendingPathComponent("\(model)-more").path, "--max-length", "24",
                                    "--batch-size", "4", "--max-steps", "1"])
            XCTAssertEqual(more.status, 0, more.stderr)
            XCTAssertFalse(more.stderr.contains("initialised (not in the checkpoint)"), more.stderr)
            XCTAssertNotNil(try json(dir.appendingPathComponent("\(model)-more/eval_results.json"))["eval_margin"], model)
        }
    }

    func testLoRARewardModelPredictsAndEvaluatesWithTheAdapter() throws {
        let train = try pairs("train.jsonl", n: 8), eval = try pairs("eval.jsonl", n: 4, seed: 2)
        let r = try CLI.run(trainArgs(model: "bert-tiny-cls", train: train, eval: eval, out: "lora", ["--max-steps", "3", "--lora-r", "4"]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = dir.appendingPathComponent("lora")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))
        let results = try json(out.appendingPathComponent("eval_results.json"))
        let e = try CLI.run(["eval", "--model", Self.fixture("bert-tiny-cls").path, "--adapter", out.path, "--eval-file", eval.path, "--max-length", "24"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let m = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((m["eval_loss"] as! NSNumber).doubleValue, (results["eval_loss"] as! NSNumber).doubleValue, accuracy: 1e-6)
        let texts = dir.appendingPathComponent("texts.jsonl")
        try "{\"text\": \"fine\"}\n".write(to: texts, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", Self.fixture("bert-tiny-cls").path, "--adapter", out.path, "--input", texts.path])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("\"reward\":"), p.stdout)
    }

    /// Pairs are sharded whole and the loss is normalised by the global pair count: the per-step losses and the eval
    /// metrics do not depend on the rank count.
    func testSameLossesAtOneTwoAndFourRanks() throws {
        let train = try pairs("train.jsonl", n: 16, explicit: false), eval = try pairs("eval.jsonl", n: 6, explicit: false, seed: 3)
        var runs: [(String, [Double], [String: Any])] = []
        // One process; mpirun with 1, 2 and 4 ranks; one process accumulating 4 micro-batches of one pair.
        let variants: [(Int?, [String])] = [(nil, []), (1, []), (2, []), (4, []), (nil, ["--micro-batch-size", "1"])]
        for (ranks, extra) in variants {
            let name = (ranks.map { "mpi\($0)" } ?? "single") + (extra.isEmpty ? "" : "-accumulate")
            // GPT-2: the tiny BERT's untrained encoder scores every text almost alike, so its loss would hardly move.
            let r = try CLI.run(trainArgs(model: "gpt2-tiny-cls", train: train, eval: eval, out: name, ["--max-steps", "8"] + extra),
                                ranks: ranks, timeout: 240)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            guard r.status == 0 else { return }
            runs.append((name, try losses(name), try json(dir.appendingPathComponent(name).appendingPathComponent("eval_results.json"))))
        }
        let (refName, ref, refResult) = runs[0]
        XCTAssertEqual(ref.count, 8)
        XCTAssertGreaterThan(abs(ref.first! - ref.last!), 1e-3, "training did not change the loss")
        for (name, l, result) in runs.dropFirst() {
            XCTAssertEqual(l.count, ref.count, name)
            for (k, (a, b)) in zip(ref, l).enumerated() {
                XCTAssertEqual(a, b, accuracy: 1e-5 * abs(a), "\(name) step \(k + 1) loss vs \(refName)")
            }
            XCTAssertEqual(result["eval_samples"] as? Int, 6, name)
            for key in ["eval_loss", "eval_margin", "eval_accuracy"] {
                XCTAssertEqual((result[key] as! NSNumber).doubleValue, (refResult[key] as! NSNumber).doubleValue, accuracy: 1e-5, "\(name) \(key)")
            }
        }
    }

    /// A run stopped after a checkpoint and resumed ends with the uninterrupted run's weights, bit for bit.
    func testResumeIsExact() throws {
        let train = try pairs("train.jsonl", n: 12)
        let common = ["--max-steps", "6", "--save-steps", "2"]
        let ref = try CLI.run(trainArgs(model: "gpt2-tiny-cls", train: train, eval: nil, out: "ref", common))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let cut = try CLI.run(trainArgs(model: "gpt2-tiny-cls", train: train, eval: nil, out: "cut", common + ["--fault-inject", "before-latest:4"]))
        XCTAssertNotEqual(cut.status, 0, "the run should have been stopped at step 4")
        let resumed = try CLI.run(trainArgs(model: "gpt2-tiny-cls", train: train, eval: nil, out: "cut", common))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-"), resumed.stderr)
        let weights = { (o: String) in try Data(contentsOf: self.dir.appendingPathComponent(o).appendingPathComponent("model.safetensors")) }
        XCTAssertEqual(try weights("cut"), try weights("ref"), "resumed run differs from the uninterrupted one")
        let a = try losses("ref"), b = try losses("cut")
        XCTAssertEqual(Array(b.suffix(2)), Array(a.suffix(2)), "losses of the steps after the resume")
    }

    // MARK: bad input

    func assertCleanFailure(_ r: RunResult, status: Int32, mentions needles: [String], out: String = "out",
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", file: file, line: line)
        for n in needles { XCTAssertTrue(r.stderr.contains(n), "stderr lacks '\(n)': \(r.stderr)", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), "crash trace: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { !$0.isEmpty }.count, 1, "one line expected: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(out).appendingPathComponent("model.safetensors").path),
                       "nothing may be written on failure", file: file, line: line)
    }

    func testEachMalformedRowIsOneLineNamingFileAndLine() throws {
        let ok = #"{"prompt": "Q:", "chosen": " yes", "rejected": " no"}"#
        let cases: [(String, String, [String])] = [
            ("missing", #"{"prompt": "Q:", "chosen": " yes"}"#, [":2:", "missing \"rejected\""]),
            ("identical", #"{"prompt": "Q:", "chosen": " same", "rejected": " same"}"#, [":2:", "identical"]),
            ("margin", #"{"prompt": "Q:", "chosen": " a", "rejected": " b", "margin": "big"}"#, [":2:", "\"margin\""]),
            ("mixed", #"{"chosen": "a", "rejected": "b"}"#, [":2:", "\"prompt\""]),
            ("notjson", #"{"prompt": "Q:", "chosen": " a", "rejected"#, [":2:"]),
        ]
        for (name, bad, needles) in cases {
            let file = dir.appendingPathComponent("\(name).jsonl")
            try "\(ok)\n\(bad)\n\(ok)\n".write(to: file, atomically: true, encoding: .utf8)
            let r = try CLI.run(trainArgs(model: "bert-tiny-cls", train: file, eval: nil, out: "out", ["--max-steps", "1"]))
            assertCleanFailure(r, status: 1, mentions: ["\(name).jsonl"] + needles)
        }
    }

    /// Seeded mutations of a valid preference file (bytes flipped, cut, JSON-ish fragments and odd Unicode inserted,
    /// lines duplicated or dropped) fed to `train --task reward`: no run ends by a signal or prints a trace, a failing
    /// run prints one `error:` line (exit 1 or 2) and writes no model.
    func testFuzzedPreferenceFilesFailCleanly() throws {
        let base = Array(try Data(contentsOf: try pairs("base.jsonl", n: 6, explicit: true, seed: 9)))
        let fragments = ["\"", "{", "}", ",", ":", "null", "\"margin\": \"x\"", "\"margin\": 1e999", "\\u0000", "\u{FFFF}", "é", "\n", "[]", "\"prompt\": 3", "\u{1F600}"]
        var rng = TestRNG(2026)
        for i in 0..<40 {
            var bytes = base
            for _ in 0..<(1 + rng.below(3)) {
                let at = rng.below(max(bytes.count, 1))
                switch rng.below(4) {
                case 0: bytes[at] = UInt8(rng.below(256))
                case 1: bytes = Array(bytes[..<at])
                case 2: bytes.insert(contentsOf: Array(fragments[rng.below(fragments.count)].utf8), at: at)
                default:
                    var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
                    let j = rng.below(lines.count)
                    if rng.below(2) == 0 { lines.insert(lines[j], at: j) } else { lines.remove(at: j) }
                    bytes = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
                }
            }
            let file = dir.appendingPathComponent("fuzz\(i).jsonl")
            try Data(bytes).write(to: file)
            let out = "fuzz-out\(i)"
            let r = try CLI.run(trainArgs(model: "bert-tiny-cls", train: file, eval: nil, out: out, ["--max-steps", "1", "--batch-size", "2"]))
            let what = "case \(i) (\(file.path))"
            XCTAssertFalse(r.signaled, "\(what) ended by a signal: \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), "\(what): \(r.stderr)")
            if r.status != 0 {
                XCTAssertTrue([1, 2].contains(r.status), "\(what) exit \(r.status)")
                let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
                XCTAssertEqual(lines.count, 1, "\(what): \(r.stderr)")
                XCTAssertTrue(lines.first?.hasPrefix("error: ") == true, "\(what): \(r.stderr)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent(out).appendingPathComponent("model.safetensors").path), what)
            }
        }
    }

    func testOverlongPairIsSkippedAndCounted() throws {
        let file = dir.appendingPathComponent("long.jsonl")
        let long = Array(repeating: "word", count: 40).joined(separator: " ")
        try """
        {"chosen": "short good", "rejected": "short bad"}
        {"chosen": "\(long)", "rejected": "tiny"}
        {"chosen": "fine answer", "rejected": "poor answer"}

        """.write(to: file, atomically: true, encoding: .utf8)
        let r = try CLI.run(trainArgs(model: "bert-tiny-cls", train: file, eval: nil, out: "out", ["--max-steps", "1", "--batch-size", "2"]))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("preference pairs with a chosen or rejected text longer than --max-length 24 tokens were skipped (as TRL's RewardTrainer filters them): 1 of long.jsonl"), r.stderr)
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last.map(String.init)!.utf8)) as! [String: Any]
        XCTAssertEqual(summary["train_samples"] as? Int, 2, "the two kept pairs: \(r.stdout)")
        // Every pair too long: one line, nothing written.
        try "{\"chosen\": \"\(long)\", \"rejected\": \"tiny\"}\n".write(to: file, atomically: true, encoding: .utf8)
        let all = try CLI.run(trainArgs(model: "bert-tiny-cls", train: file, eval: nil, out: "out2", ["--max-steps", "1", "--batch-size", "2"]))
        assertCleanFailure(all, status: 2, mentions: ["long.jsonl", "--max-length 24"], out: "out2")
    }

    func testRewardOnALanguageModelFolderIsAUsageError() throws {
        let train = try pairs("train.jsonl", n: 4)
        let r = try CLI.run(trainArgs(model: "gpt2-tiny-lm", train: train, eval: nil, out: "out", ["--max-steps", "1"]))
        assertCleanFailure(r, status: 2, mentions: ["--task reward", "GPT-2 language model"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out").path), "no output folder for a refused run")
        // Classification-only flags are refused, not ignored.
        let labels = try CLI.run(trainArgs(model: "bert-tiny-cls", train: train, eval: nil, out: "out3", ["--max-steps", "1", "--text-column", "body"]))
        assertCleanFailure(labels, status: 2, mentions: ["--text-column", "--task reward"], out: "out3")
        let negative = try CLI.run(trainArgs(model: "bert-tiny-cls", train: train, eval: nil, out: "out4", ["--max-steps", "1", "--center-rewards-coefficient=-1"]))
        assertCleanFailure(negative, status: 2, mentions: ["--center-rewards-coefficient"], out: "out4")
        let classify = dir.appendingPathComponent("cls.jsonl")
        try "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}\n".write(to: classify, atomically: true, encoding: .utf8)
        let wrongTask = try CLI.run(["train", "--model", Self.fixture("bert-tiny-cls").path, "--train-file", classify.path, "--output-dir",
                                     dir.appendingPathComponent("out5").path, "--max-steps", "1", "--batch-size", "2", "--max-length", "16",
                                     "--center-rewards-coefficient", "0.01"])
        assertCleanFailure(wrongTask, status: 2, mentions: ["--center-rewards-coefficient applies to --task reward only"], out: "out5")
    }
}
