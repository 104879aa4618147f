// GRPOCLITests.swift: `disttrain train --task grpo` end to end on the tiny GPT-2 LM (policy) and a tiny BERT reward
// model with one output and another tokenizer (Fixtures/grpo-reward-bert, made by scripts/goldens/grpo_reward_fixture.py):
// identical sampled completions, rewards and per-step losses without mpirun and at 1, 2 and 4 ranks under real mpirun
// (and with accumulation); the logged step-1 loss equal to the objective recomputed from the logged rewards and
// completions (the wiring: rewards → advantages → loss normalisers); a crash and resume equal to the uninterrupted
// run; LoRA, RLOO and --num-iterations runs with their metrics; and bad input — each one line, exit 2, nothing written.
// The objective's own goldens (TRL's loss and gradients) are GRPOObjectiveTests'.
import Foundation
import XCTest
import TestSupport

final class GRPOCLITests: XCTestCase {
    var dir: URL!
    var model: URL { CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm") }
    var reward: URL { CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/grpo-reward-bert") }
    var prompts: URL { dir.appendingPathComponent("prompts.jsonl") }

    override func setUpWithError() throws {
        dir = try CLI.tempDir("grpo-cli")
        let rows = ["The food was", "The movie was", "My day was", "The weather is", "The service was", "This book is",
                    "The hotel was", "Our trip was"]
        let lines = rows.map { String(data: try! JSONSerialization.data(withJSONObject: ["prompt": $0]), encoding: .utf8)! }
        try (lines.joined(separator: "\n") + "\n").write(to: prompts, atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func args(_ out: String, _ extra: [String] = []) -> [String] {
        ["train", "--task", "grpo", "--model", model.path, "--reward-model", reward.path, "--train-file", prompts.path,
         "--output-dir", dir.appendingPathComponent(out).path, "--max-steps", "5", "--batch-size", "4", "--num-generations", "4",
         "--max-completion-length", "8", "--max-length", "24", "--learning-rate", "1e-2", "--beta", "0.1",
         "--top-k", "20", "--logging-steps", "1", "--seed", "3", "--no-report", "--threads", "1"] + extra
    }

    func metrics(_ out: String) throws -> [Int: [String: Any]] {
        var byStep: [Int: [String: Any]] = [:]
        for l in try CLI.jsonLines(dir.appendingPathComponent(out).appendingPathComponent("metrics.jsonl")) where l["loss"] != nil {
            byStep[l["step"] as! Int] = l
        }
        return byStep
    }

    func losses(_ out: String) throws -> [Int: Double] { try metrics(out).mapValues { ($0["loss"] as! NSNumber).doubleValue } }

    struct Sample: Equatable {
        var ids: [Int]
        var reward: Double
        var advantage: Double
    }

    /// samples.jsonl by (step, prompt index, completion index).
    func samples(_ out: String) throws -> [String: Sample] {
        var s: [String: Sample] = [:]
        for l in try CLI.jsonLines(dir.appendingPathComponent(out).appendingPathComponent("samples.jsonl")) {
            let key = "\(l["step"]!)/\(l["prompt_index"]!)/\(l["completion_index"]!)"
            XCTAssertNil(s[key], "\(out): one line per completion and step (\(key))")
            s[key] = Sample(ids: (l["completion_ids"] as! [NSNumber]).map(\.intValue), reward: (l["reward"] as! NSNumber).doubleValue,
                            advantage: (l["advantage"] as! NSNumber).doubleValue)
        }
        return s
    }

    func assertSameRun(_ name: String, _ ref: String, steps: Int = 5, line: UInt = #line) throws {
        let want = try losses(ref), got = try losses(name)
        XCTAssertEqual(got.count, steps, "\(name): one loss per step", line: line)
        for step in 1...steps {
            let w = want[step] ?? .nan
            XCTAssertEqual(got[step] ?? .nan, w, accuracy: 1e-5 * max(abs(w), 1e-3), "\(name) step \(step) loss", line: line)
        }
        let ws = try samples(ref), gs = try samples(name)
        XCTAssertEqual(gs.count, ws.count, "\(name): as many samples", line: line)
        for (k, w) in ws {
            guard let g = gs[k] else { XCTFail("\(name): no sample \(k)", line: line); continue }
            XCTAssertEqual(g.ids, w.ids, "\(name) completion \(k)", line: line)
            XCTAssertEqual(g.reward, w.reward, accuracy: 1e-5 * max(abs(w.reward), 1e-3), "\(name) reward \(k)", line: line)
        }
    }

    func testSameCompletionsAndLossesAtOneTwoAndFourRanksAndWithAccumulation() throws {
        for (ranks, extra) in [(nil, []), (1, []), (2, []), (4, []), (nil, ["--micro-batch-size", "1"])] as [(Int?, [String])] {
            let name = extra.isEmpty ? (ranks.map { "mpi\($0)" } ?? "single") : "accum"
            let r = try CLI.run(args(name, extra), ranks: ranks, timeout: 300)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            guard r.status == 0 else { return }
            if name != "single" { try assertSameRun(name, "single") }
        }
        let s = try samples("single")
        XCTAssertEqual(s.count, 5 * 4 * 4, "every completion of every step logged")
        // Sampling is stochastic: the 4 completions of a prompt are not all the same.
        let firstGroup = (0..<4).compactMap { s["1/\(s.keys.first { $0.hasPrefix("1/") }!.split(separator: "/")[1])/\($0)"]?.ids }
        XCTAssertGreaterThan(Set(firstGroup.map { $0.description }).count, 1, "different completions in a group: \(firstGroup)")
        let m = try metrics("single")
        for key in ["reward", "reward_std", "reward_group_std", "frac_reward_zero_std", "kl", "entropy", "completions/mean_length",
                    "completions/min_length", "completions/max_length", "completions/clipped_ratio", "clip_ratio/region_mean",
                    "time/generation_s", "time/reward_s", "time/update_s"] {
            XCTAssertNotNil(m[1]?[key], "metrics.jsonl has \(key): \(m[1]?.keys.sorted() ?? [])")
        }
        XCTAssertEqual((m[1]!["kl"] as! NSNumber).doubleValue, 0, accuracy: 1e-6, "step 1: the policy is the reference")
        XCTAssertGreaterThan((m[5]!["kl"] as! NSNumber).doubleValue, 0, "the policy moved away from the reference")
        // The saved folder is a plain GPT-2 LM folder.
        let g = try CLI.run(["generate", "--model", dir.appendingPathComponent("single").path, "--prompt", "The food was", "--max-new-tokens", "3"])
        XCTAssertEqual(g.status, 0, g.stderr)
    }

    /// Step 1 (policy = reference, ratio 1, KL 0): TRL's dapo loss is −Σ_b A_b·|c_b| / Σ_b |c_b|, and each advantage is
    /// (r − group mean) / (group std + 1e-4): recomputed here from the rewards and lengths the run logged.
    func testLoggedLossIsTheObjectiveOfTheLoggedRewardsAndCompletions() throws {
        let r = try CLI.run(args("w", ["--max-steps", "1", "--loss-type", "dapo"]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try CLI.jsonLines(dir.appendingPathComponent("w/samples.jsonl"))
        XCTAssertEqual(lines.count, 16)
        var byPrompt: [Int: [(Double, Int, Double)]] = [:]
        for l in lines {
            byPrompt[l["prompt_index"] as! Int, default: []].append(((l["reward"] as! NSNumber).doubleValue, l["length"] as! Int,
                                                                      (l["advantage"] as! NSNumber).doubleValue))
        }
        XCTAssertEqual(byPrompt.count, 4)
        var num = 0.0, den = 0.0
        for (_, g) in byPrompt {
            let mean = g.map(\.0).reduce(0, +) / 4
            let std = (g.map { ($0.0 - mean) * ($0.0 - mean) }.reduce(0, +) / 3).squareRoot()
            for (rw, len, adv) in g {
                let a = (rw - mean) / (std + 1e-4)
                XCTAssertEqual(adv, a, accuracy: 1e-4 * max(1, abs(a)), "advantage of reward \(rw)")
                num += a * Double(len); den += Double(len)
            }
        }
        let loss = try losses("w")[1]!
        XCTAssertEqual(loss, -num / den, accuracy: 1e-4 * max(abs(num / den), 1e-2), "step-1 dapo loss from the logged values")
        // grpo's per-sequence mean of a group-normalised advantage sums to 0 over each group.
        let g = try CLI.run(args("g", ["--max-steps", "1", "--loss-type", "grpo"]))
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertEqual(try losses("g")[1]!, 0, accuracy: 1e-5, "grpo loss at ratio 1 and KL 0")
    }

    func testResumeEqualsTheUninterruptedRun() throws {
        let ref = try CLI.run(args("ref", ["--save-steps", "2"]))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let crashed = try CLI.run(args("w", ["--save-steps", "2", "--fault-inject", "before-latest:4"]))
        XCTAssertNotEqual(crashed.status, 0, "the run should have been stopped at step 4")
        let resumed = try CLI.run(args("w", ["--save-steps", "2"]), ranks: 2, timeout: 240)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-"), resumed.stderr)
        try assertSameRun("w", "ref")
    }

    func testLoRARLOOAndIterationsRunWithTheirMetrics() throws {
        let lora = try CLI.run(args("lora", ["--lora-r", "4", "--learning-rate", "5e-2"]), ranks: 2, timeout: 240)
        XCTAssertEqual(lora.status, 0, lora.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lora/adapter_config.json").path))
        let lm = try metrics("lora")
        XCTAssertEqual((lm[1]!["kl"] as! NSNumber).doubleValue, 0, accuracy: 1e-6, "a fresh adapter (B = 0): the policy is the reference")
        XCTAssertGreaterThan((lm[5]!["kl"] as! NSNumber).doubleValue, 0, "the adapter moved the policy")

        let rloo = try CLI.run(args("rloo", ["--advantage", "rloo", "--max-steps", "2"]), ranks: 2, timeout: 240)
        XCTAssertEqual(rloo.status, 0, rloo.stderr)
        let rs = try samples("rloo")
        for step in 1...2 {
            // RLOO (no scaling): the advantages of a group sum to 0 (reward − leave-one-out mean, rewards KL-penalised).
            for p in Set(rs.keys.filter { $0.hasPrefix("\(step)/") }.map { $0.split(separator: "/")[1] }) {
                let a = (0..<4).map { rs["\(step)/\(p)/\($0)"]!.advantage }
                XCTAssertEqual(a.reduce(0, +), 0, accuracy: 1e-4, "step \(step) prompt \(p): \(a)")
            }
        }
        let rloo1 = try CLI.run(args("rloo1", ["--advantage", "rloo", "--max-steps", "2"]), timeout: 240)
        XCTAssertEqual(rloo1.status, 0, rloo1.stderr)
        try assertSameRun("rloo", "rloo1", steps: 2)

        let it = try CLI.run(args("it", ["--num-iterations", "2", "--max-steps", "4", "--learning-rate", "5e-2", "--epsilon", "0.01"]), timeout: 240)
        XCTAssertEqual(it.status, 0, it.stderr)
        let im = try metrics("it"), isamp = try samples("it")
        // Steps 1-2 train on step 1's rollouts, steps 3-4 on step 3's (only generation steps are logged).
        XCTAssertTrue(isamp.keys.contains { $0.hasPrefix("1/") } && isamp.keys.contains { $0.hasPrefix("3/") })
        XCTAssertFalse(isamp.keys.contains { $0.hasPrefix("2/") || $0.hasPrefix("4/") }, "no new samples on reuse steps")
        XCTAssertEqual((im[1]!["clip_ratio/region_mean"] as! NSNumber).doubleValue, 0, "step 1: the ratio is 1")
        XCTAssertGreaterThan((im[2]!["clip_ratio/region_mean"] as! NSNumber).doubleValue, 0, "step 2: the policy moved past ε = 0.01")
    }

    /// The pipeline's step (f) config, on the tiny fixtures for 2 steps (flags after --config win).
    func testPipelineGRPOConfigRuns() throws {
        let r = try CLI.run(["train", "--config", "examples/preference-pipeline/grpo.yaml", "--model", model.path, "--reward-model", reward.path,
                             "--train-file", prompts.path, "--output-dir", dir.appendingPathComponent("pipe").path, "--max-steps", "2",
                             "--save-steps", "0", "--threads", "1"], timeout: 240, in: CLI.repoRoot)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try losses("pipe").count, 2)
        let html = try String(contentsOf: dir.appendingPathComponent("pipe/report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("Reward of fresh samples") && html.contains("Samples (step"), "report.html: reward curve and samples")
    }

    // MARK: - Bad input

    /// `mpi`: under mpirun, whose own notice about the non-zero exit follows; disttrain's part is still one line.
    func assertCleanFailure(_ r: RunResult, status: Int32 = 2, out: String, mentions: [String], mpi: Bool = false, line: UInt = #line) {
        XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", line: line)
        var lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty && !$0.contains("See 'disttrain train --help'") }
        if mpi { lines = Array(lines.prefix { !$0.hasPrefix("-----") }) }
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", line: line)
        XCTAssertTrue(r.stderr.lowercased().hasPrefix("error: "), r.stderr, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "mentions \(m): \(r.stderr)", line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error"), line: line)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent(out).path)) ?? []
        XCTAssertEqual(entries, [], "nothing written in --output-dir", line: line)
    }

    func testBadInputIsOneLineExitTwoAndWritesNothing() throws {
        func with(_ out: String, _ flag: String, _ value: String, _ extra: [String] = []) -> [String] {
            var a = args(out, extra)
            a[a.firstIndex(of: flag)! + 1] = value
            return a
        }
        let fx = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")
        // A reward model with three outputs, and one that is not a classifier at all.
        assertCleanFailure(try CLI.run(with("b1", "--reward-model", fx.appendingPathComponent("bert-tiny-cls").path)), out: "b1",
                           mentions: ["--reward-model", "has 3 outputs", "exactly one"])
        assertCleanFailure(try CLI.run(with("b2", "--reward-model", model.path)), out: "b2",
                           mentions: ["--reward-model", "without a trained sequence-classification head"])
        assertCleanFailure(try CLI.run(with("b3", "--reward-model", dir.appendingPathComponent("nowhere").path)), out: "b3",
                           mentions: ["--reward-model"])
        // --num-generations 1 with group scaling.
        assertCleanFailure(try CLI.run(with("b4", "--num-generations", "1")), out: "b4",
                           mentions: ["--num-generations 1", "at least 2"])
        // 3 prompts per step do not split into whole groups over 2 ranks.
        assertCleanFailure(try CLI.run(with("b5", "--batch-size", "3"), ranks: 2), out: "b5",
                           mentions: ["--batch-size 3", "whole prompt groups over 2 ranks"], mpi: true)
        // A prompt longer than the limit (--max-length 24 − --max-completion-length 8 = 16 tokens) names file:line.
        let long = String(data: try JSONSerialization.data(withJSONObject: ["prompt": String(repeating: "word ", count: 20)]), encoding: .utf8)!
        try (try String(contentsOf: prompts, encoding: .utf8) + long + "\n").write(to: prompts, atomically: true, encoding: .utf8)
        assertCleanFailure(try CLI.run(args("b6")), out: "b6", mentions: ["prompts.jsonl:9", "more than the 16"])
        // No reward model; GRPO flags without --task grpo; an unknown loss type.
        var a = args("b7")
        a.removeSubrange(a.firstIndex(of: "--reward-model")!...(a.firstIndex(of: "--reward-model")! + 1))
        assertCleanFailure(try CLI.run(a), out: "b7", mentions: ["--task grpo needs --reward-model"])
        assertCleanFailure(try CLI.run(with("b8", "--task", "causal-lm")), out: "b8", mentions: ["applies to --task grpo only"])
        assertCleanFailure(try CLI.run(args("b9", ["--loss-type", "sigmoid"])), out: "b9", mentions: ["--loss-type 'sigmoid'", "dapo"])
        // A prompt file row without "prompt" is a data error naming file:line (exit 1, as every bad data file).
        try "{\"prompt\": \"a\"}\n{\"text\": \"b\"}\n".write(to: prompts, atomically: true, encoding: .utf8)
        assertCleanFailure(try CLI.run(args("b10")), status: 1, out: "b10", mentions: ["prompts.jsonl:2", "missing \"prompt\""])
    }
}
