// DPOCLITests.swift: `disttrain train --task dpo` end to end on the tiny GPT-2 LM: the same per-step losses and eval
// metrics without mpirun and at 1, 2 and 4 ranks under real mpirun (pairs sharded whole, the loss normalised by the
// global pair count); a crash and resume that continues exactly, reading the cached reference log-probabilities
// back; a LoRA run whose adapter `generate` loads; and bad input: --task dpo on a classifier folder,
// --max-prompt-length ≥ --max-length, DPO flags without --task dpo, malformed preference rows — each one line, the
// documented exit code (2 usage, 1 bad data file), nothing written.
import Foundation
import XCTest
import TestSupport

final class DPOCLITests: XCTestCase {
    var dir: URL!
    var model: URL { CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm") }
    var train: URL { dir.appendingPathComponent("train.jsonl") }
    var eval: URL { dir.appendingPathComponent("eval.jsonl") }

    override func setUpWithError() throws {
        dir = try CLI.tempDir("dpo-cli")
        let rows: [(String, String, String)] = [
            ("The food was", " delicious.", " cold and bad."), ("The movie was", " great fun.", " boring."),
            ("My day was", " wonderful.", " awful."), ("The weather is", " sunny and warm.", " rainy."),
            ("The service was", " quick and kind.", " slow."), ("This book is", " a joy to read.", " dull."),
            ("The hotel was", " clean.", " dirty and loud."), ("Our trip was", " relaxing.", " a mess."),
        ]
        func line(_ r: (String, String, String)) -> String {
            String(data: try! JSONSerialization.data(withJSONObject: ["prompt": r.0, "chosen": r.1, "rejected": r.2], options: [.sortedKeys]), encoding: .utf8)!
        }
        try (rows.map(line).joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        try (rows.prefix(5).map { line(($0.0, $0.1 + " Really.", $0.2)) }.joined(separator: "\n") + "\n").write(to: eval, atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func args(_ out: String, _ extra: [String] = []) -> [String] {
        ["train", "--task", "dpo", "--model", model.path, "--train-file", train.path, "--eval-file", eval.path,
         "--output-dir", dir.appendingPathComponent(out).path, "--max-steps", "6", "--batch-size", "4", "--learning-rate", "1e-2",
         "--max-length", "16", "--logging-steps", "1", "--seed", "3", "--no-report", "--threads", "1"] + extra
    }

    func losses(_ out: String) throws -> [Int: Double] {
        var byStep: [Int: Double] = [:]
        for l in try CLI.jsonLines(dir.appendingPathComponent(out).appendingPathComponent("metrics.jsonl")) where l["loss"] != nil {
            byStep[l["step"] as! Int] = (l["loss"] as! NSNumber).doubleValue
        }
        return byStep
    }

    /// TRL's training metric `key` per logged step.
    func stepMetric(_ out: String, _ key: String) throws -> [Int: Double] {
        var byStep: [Int: Double] = [:]
        for l in try CLI.jsonLines(dir.appendingPathComponent(out).appendingPathComponent("metrics.jsonl")) where l["loss"] != nil {
            if let v = l[key] as? NSNumber { byStep[l["step"] as! Int] = v.doubleValue }
        }
        return byStep
    }

    func results(_ out: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(out).appendingPathComponent("eval_results.json"))) as! [String: Any]
    }

    func testSameLossesAtOneTwoAndFourRanksAndWithAccumulationAndGenerateLoadsTheResult() throws {
        var runs: [(String, [Int: Double], [String: Any])] = []
        // "accum": one process, micro-batches of one pair accumulated to the global batch of 4.
        for (ranks, extra) in [(nil, []), (1, []), (2, []), (4, []), (nil, ["--micro-batch-size", "1"])] as [(Int?, [String])] {
            let name = extra.isEmpty ? (ranks.map { "mpi\($0)" } ?? "single") : "accum"
            let r = try CLI.run(args(name, extra), ranks: ranks, timeout: 240)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            guard r.status == 0 else { return }
            runs.append((name, try losses(name), try results(name)))
        }
        let (_, ref, refResult) = runs[0]
        XCTAssertEqual(ref.count, 6, "one loss per step")
        XCTAssertEqual(ref[1]!, 0.6931471805599453, accuracy: 1e-6, "step 1: policy = reference, loss log 2")
        XCTAssertLessThan(ref[6]!, ref[1]! - 1e-3, "DPO lowers the loss")
        for key in ["eval_loss", "eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/accuracies", "eval_rewards/margins",
                    "eval_logps/chosen", "eval_logps/rejected"] {
            XCTAssertNotNil(refResult[key], "eval_results.json has \(key): \(refResult.keys.sorted())")
        }
        XCTAssertEqual(refResult["eval_samples"] as? Int, 5)
        let margins = try stepMetric("single", "rewards/margins")
        XCTAssertEqual(margins.count, 6, "rewards/margins logged at every step")
        XCTAssertEqual(try stepMetric("single", "rewards/accuracies").count, 6)
        for (name, l, result) in runs.dropFirst() {
            let m = try stepMetric(name, "rewards/margins")
            for step in 2...6 { XCTAssertEqual(m[step] ?? .nan, margins[step]!, accuracy: 1e-4 * abs(margins[step]!) + 1e-9, "\(name) step \(step) rewards/margins") }
            for step in 1...6 {
                let a = ref[step]!, b = l[step] ?? .nan
                XCTAssertEqual(b, a, accuracy: 1e-5 * abs(a), "\(name) step \(step) loss")
            }
            for key in ["eval_loss", "eval_rewards/margins", "eval_logps/chosen"] {
                let a = (refResult[key] as! NSNumber).doubleValue, b = (result[key] as! NSNumber).doubleValue
                XCTAssertEqual(b, a, accuracy: 1e-5 * max(abs(a), 1e-3), "\(name) \(key)")
            }
        }
        // The saved folder is a plain GPT-2 LM folder.
        let g = try CLI.run(["generate", "--model", dir.appendingPathComponent("single").path, "--prompt", "The food was", "--max-new-tokens", "3"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stdout.hasPrefix("The food was"), g.stdout)
    }

    /// Precomputed reference log-probs are shared out over the ranks (pairs r, r + W, …, pair by pair) and summed:
    /// 3 ranks (13 pairs: uneven shares) write the same cache, byte for byte, as one process, and train the same losses.
    func testPrecomputeSharedOverRanksEqualsOneProcess() throws {
        let pre = ["--precompute-ref-log-probs", "true", "--max-steps", "2", "--batch-size", "6"]
        let one = try CLI.run(args("p1", pre))
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stderr.contains("computed for 13 pairs and cached"), one.stderr)
        let three = try CLI.run(args("p3", pre), ranks: 3, timeout: 180)
        XCTAssertEqual(three.status, 0, three.stderr)
        XCTAssertTrue(three.stderr.contains("computed for 13 pairs, shared by 3 ranks and cached"), three.stderr)
        let a = try Data(contentsOf: dir.appendingPathComponent("p1/.dpo-ref-logps"))
        let b = try Data(contentsOf: dir.appendingPathComponent("p3/.dpo-ref-logps"))
        XCTAssertGreaterThan(a.count, 13 * 2 * 8)
        XCTAssertEqual(a, b, "the cache of 3 ranks differs from one process's")
        let want = try losses("p1"), got = try losses("p3")
        for step in 1...2 { XCTAssertEqual(got[step] ?? .nan, want[step]!, accuracy: 1e-5 * abs(want[step]!), "step \(step)") }
    }

    func testResumeIsExactWithCachedReferenceLogProbs() throws {
        let pre = ["--precompute-ref-log-probs", "true", "--save-steps", "2"]
        let ref = try CLI.run(args("ref", pre))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        XCTAssertTrue(ref.stderr.contains("computed for 13 pairs and cached"), ref.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("ref/.dpo-ref-logps").path))
        let crashed = try CLI.run(args("w", pre + ["--fault-inject", "before-latest:4"]))
        XCTAssertNotEqual(crashed.status, 0, "the run should have been stopped at step 4")
        let resumed = try CLI.run(args("w", pre), ranks: 2, timeout: 180)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-"), resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("reference log-probabilities: read from"), resumed.stderr)
        let want = try losses("ref"), got = try losses("w")
        for step in 1...6 {
            XCTAssertEqual(got[step] ?? .nan, want[step]!, accuracy: 1e-5 * abs(want[step]!), "step \(step) loss after resume")
        }
        // On the fly (TRL's default), the reference after a resume is still --model's weights, not the checkpoint's.
        let crashed2 = try CLI.run(args("f", ["--save-steps", "2", "--fault-inject", "before-latest:4"]))
        XCTAssertNotEqual(crashed2.status, 0)
        let resumed2 = try CLI.run(args("f", ["--save-steps", "2"]), ranks: 4, timeout: 180)
        XCTAssertEqual(resumed2.status, 0, resumed2.stderr)
        let fly = try losses("f")
        for step in 1...6 {
            XCTAssertEqual(fly[step] ?? .nan, want[step]!, accuracy: 1e-5 * abs(want[step]!), "step \(step) loss, on-the-fly reference, resumed")
        }
        // A cache that no longer matches (here: corrupted) is recomputed, not trusted.
        let cache = dir.appendingPathComponent("w/.dpo-ref-logps")
        try "disttrain DPO reference log-probs v1\nkey 0\n".write(to: cache, atomically: true, encoding: .utf8)
        let again = try CLI.run(args("w", pre + ["--max-steps", "7"]))
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("computed for 13 pairs"), again.stderr)
        // --overwrite-output-dir clears the cache with the rest (it is a file disttrain writes).
        let over = try CLI.run(args("w", ["--overwrite-output-dir", "--max-steps", "1"]))
        XCTAssertEqual(over.status, 0, over.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache.path))
    }

    func testLoRARunWritesAnAdapterThatGenerateLoads() throws {
        let r = try CLI.run(args("lora", ["--lora-r", "4", "--learning-rate", "5e-2", "--metric-for-best-model", "rewards/accuracies"]),
                            ranks: 2, timeout: 180)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = dir.appendingPathComponent("lora")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_config.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        let l = try losses("lora")
        XCTAssertEqual(l[1]!, 0.6931471805599453, accuracy: 1e-6, "a fresh adapter (B = 0) is the reference")
        XCTAssertLessThan(l[6]!, l[1]!, "the adapter learns")
        let res = try results("lora")
        XCTAssertEqual((res["best_metric"] as! NSNumber).doubleValue, (res["eval_rewards/accuracies"] as! NSNumber).doubleValue)
        let g = try CLI.run(["generate", "--model", model.path, "--adapter", out.path, "--prompt", "The food was", "--max-new-tokens", "2"])
        XCTAssertEqual(g.status, 0, g.stderr)
    }

    func testPairWhosePromptFillsMaxLengthIsSkippedAndReportedOnce() throws {
        let long = String(data: try JSONSerialization.data(withJSONObject: ["prompt": String(repeating: "word ", count: 30), "chosen": " a", "rejected": " b"]), encoding: .utf8)!
        try (try String(contentsOf: train, encoding: .utf8) + long + "\n").write(to: train, atomically: true, encoding: .utf8)
        let r = try CLI.run(args("skip", ["--max-steps", "1"]), ranks: 2)
        XCTAssertEqual(r.status, 0, r.stderr)
        let note = "warning: 1 pair of train.jsonl left no response token within 16 tokens"
        XCTAssertEqual(r.stderr.components(separatedBy: note).count - 1, 1, "reported once (rank 0): \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("train: 8 examples"), r.stderr)
    }

    // MARK: - Bad input

    func assertCleanFailure(_ r: RunResult, status: Int32, out: String, mentions: [String], line: UInt = #line) {
        XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", line: line)
        // One line (flag checks in ArgumentParser's validate() add its "See 'disttrain train --help'" hint).
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty && !$0.contains("See 'disttrain train --help'") }
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", line: line)
        XCTAssertTrue(r.stderr.lowercased().hasPrefix("error: "), r.stderr, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "mentions \(m): \(r.stderr)", line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error"), line: line)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent(out).path)) ?? []
        XCTAssertEqual(entries, [], "nothing written in --output-dir", line: line)
    }

    func testBadInputIsOneLineAndWritesNothing() throws {
        let cls = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-cls").path
        var a = args("b1")
        a[a.firstIndex(of: model.path)!] = cls
        assertCleanFailure(try CLI.run(a), status: 2, out: "b1", mentions: ["--task dpo needs a GPT-2 language model folder", "gpt2-tiny-cls"])
        assertCleanFailure(try CLI.run(args("b2", ["--max-prompt-length", "16"])), status: 2, out: "b2",
                           mentions: ["--max-prompt-length 16 must be less than --max-length 16"])
        var c = args("b4", ["--beta", "0.5"])
        c[c.firstIndex(of: "dpo")!] = "causal-lm"
        assertCleanFailure(try CLI.run(c), status: 2, out: "b4", mentions: ["--beta applies to --task dpo only"])
        assertCleanFailure(try CLI.run(args("b5", ["--label-smoothing", "0.1"])), status: 2, out: "b5", mentions: ["--loss-type robust"])
        // Malformed rows: a data error names file:line (exit 1, as every bad data file).
        let bad: [(String, String)] = [
            ("{\"prompt\": \"a\", \"chosen\": \"b\"}", "missing \"rejected\""),
            ("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"b\"}", "identical"),
            ("{\"chosen\": \"a b\", \"rejected\": \"a c\"}", "has no \"prompt\""),
            ("not json", "train.jsonl:2"),
        ]
        let good = try String(contentsOf: train, encoding: .utf8).split(separator: "\n").first!
        for (k, (row, message)) in bad.enumerated() {
            try "\(good)\n\(row)\n".write(to: train, atomically: true, encoding: .utf8)
            assertCleanFailure(try CLI.run(args("m\(k)")), status: 1, out: "m\(k)", mentions: ["train.jsonl:2", message])
        }
    }

    /// Seeded mutations of a preference file (missing keys, wrong types, empty and huge texts, special tokens,
    /// combining characters, layouts mixed, broken JSON): every run ends normally, with status 0 or one error line.
    func testSeededFuzzOfPreferenceFiles() throws {
        var rng = TestRNG(16)
        let texts = ["", " ", "a", "<|endoftext|>", "x<|endoftext|>y", "e\u{301}\u{301}", "😀 emoji", String(repeating: "long ", count: 60),
                     "The food was", " fine.", "\n\t", "\u{0}"]
        let values: [Any] = [1, 2.5, true, NSNull(), ["a"], ["role": "user"]]
        var outcomes: [Int32: Int] = [:]
        for k in 0..<24 {
            var lines: [String] = []
            for _ in 0..<(1 + rng.below(4)) {
                var row: [String: Any] = [:]
                let explicit = k % 3 != 0
                if explicit { row["prompt"] = texts[rng.below(texts.count)] }
                row["chosen"] = texts[rng.below(texts.count)] + (rng.below(2) == 0 ? " yes" : "")
                row["rejected"] = texts[rng.below(texts.count)] + " no"
                switch rng.below(8) {
                case 0: row.removeValue(forKey: ["prompt", "chosen", "rejected"][rng.below(3)])
                case 1: row[["prompt", "chosen", "rejected", "margin"][rng.below(4)]] = values[rng.below(values.count)]
                case 2: row["rejected"] = row["chosen"]
                default: break
                }
                var line = String(data: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), encoding: .utf8)!
                if rng.below(10) == 0 { line = String(line.prefix(rng.below(line.count + 1))) }
                lines.append(line)
            }
            try (lines.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
            let r = try CLI.run(args("fuzz\(k)", ["--max-steps", "1", "--batch-size", "2"] + (k % 2 == 0 ? ["--max-prompt-length", "4"] : [])),
                                timeout: 60)
            let what = "case \(k): \(lines)\nstderr: \(r.stderr)"
            outcomes[r.status, default: 0] += 1
            XCTAssertFalse(r.signaled, what)
            XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), what)
            if r.status != 0 {
                XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, what)
                XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("fuzz\(k)/model.safetensors").path), what)
            }
        }
        XCTAssertGreaterThan(outcomes[0] ?? 0, 2, "some mutated files still train: \(outcomes)")
        XCTAssertGreaterThan(outcomes[1] ?? 0, 2, "some are refused as bad data: \(outcomes)")
    }
}
