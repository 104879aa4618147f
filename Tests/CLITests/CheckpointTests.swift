// Checkpoints and resume through the real binary: crash-injected saves never lead to resuming from an incomplete
// checkpoint, a corrupt checkpoint falls back to the previous one with a warning, a resumed run ends bitwise equal
// to an uninterrupted one, resuming at another world size keeps the exact sample order, and a preemption signal
// saves and exits with the documented code.
import Foundation
import XCTest

final class CheckpointTests: XCTestCase {
    var dir: URL!
    var model: URL!
    var train: URL!

    override func setUpWithError() throws {
        dir = try CLI.tempDir("ckpt")
        let fixture = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["model.safetensors", "vocab.txt", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(f), to: model.appendingPathComponent(f))
        }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("config.json"))) as! [String: Any]
        config["hidden_dropout_prob"] = 0.1  // dropout on: its masks must also resume exactly
        try JSONSerialization.data(withJSONObject: config).write(to: model.appendingPathComponent("config.json"))
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        train = dir.appendingPathComponent("train.jsonl")
        try (lines[0..<36].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func args(_ out: String, _ extra: [String] = []) -> [String] {
        ["train", "--model", model.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
         "--batch-size", "8", "--max-steps", "10", "--save-steps", "2", "--logging-steps", "1", "--learning-rate", "1e-3",
         "--warmup-steps", "2", "--max-length", "24", "--seed", "11", "--threads", "1"] + extra
    }

    func weights(_ out: String) throws -> Data { try Data(contentsOf: dir.appendingPathComponent(out).appendingPathComponent("model.safetensors")) }

    func samples(_ url: URL) throws -> [Int: [Int]] {
        var bySteps: [Int: [Int]] = [:]
        for l in try CLI.jsonLines(url) { bySteps[l["step"] as! Int] = l["samples"] as? [Int] }
        return bySteps
    }

    func testCrashDuringSaveNeverResumesFromIncompleteCheckpoint() throws {
        let ref = try CLI.run(args("ref"))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refWeights = try weights("ref")
        // 5 phases × 4 steps = 20 trials: kill inside the save, resume, compare with the uninterrupted run.
        var trial = 0
        for phase in ["model-written", "optimizer-written", "before-manifest", "before-rename", "before-latest"] {
            for step in [2, 4, 6, 8] {
                trial += 1
                let out = "t\(trial)"
                let crashed = try CLI.run(args(out, ["--fault-inject", "\(phase):\(step)"]))
                XCTAssertEqual(crashed.status, 137, "\(phase)@\(step) should die: \(crashed.stderr)")
                let outDir = dir.appendingPathComponent(out)
                // Whatever survived, the resume must pick a complete checkpoint (never `checkpoint-N.partial`).
                let resumed = try CLI.run(args(out))
                XCTAssertEqual(resumed.status, 0, "\(phase)@\(step) resume: \(resumed.stderr)")
                XCTAssertFalse(resumed.stderr.contains(".partial"), resumed.stderr)
                XCTAssertEqual(try weights(out), refWeights, "\(phase)@\(step): resumed run differs from the uninterrupted one")
                try? FileManager.default.removeItem(at: outDir)
            }
        }
    }

    /// 2 ranks on one node: the final (foreground) save is split, rank 1 writing optimizer.safetensors while rank 0
    /// writes the model and commits. Killing rank 0 inside that save never leaves a checkpoint that is resumed
    /// from, and the resumed job ends bitwise equal to an uninterrupted one; the split checkpoint verifies.
    func testCrashDuringASplitSaveOfTwoRanks() throws {
        let ref = try CLI.run(args("ref2"), ranks: 2, timeout: 120)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refWeights = try weights("ref2")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("ref2/checkpoint-10/manifest.json"))) as! [String: Any]
        let files = manifest["files"] as! [String: [String: Any]]
        let opt = dir.appendingPathComponent("ref2/checkpoint-10/optimizer.safetensors")
        let sum = Process(), pipe = Pipe()
        sum.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        sum.arguments = [opt.path]
        sum.standardOutput = pipe
        try sum.run()
        sum.waitUntilExit()
        let digest = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
        XCTAssertEqual(files["optimizer.safetensors"]?["sha256"] as? String, String(digest), "the helper rank's digest")
        for phase in ["model-written", "optimizer-written", "before-manifest"] {
            let out = "s-\(phase)"
            let crashed = try CLI.run(args(out, ["--fault-inject", "\(phase):10"]), ranks: 2, timeout: 120)
            XCTAssertNotEqual(crashed.status, 0, "\(phase): rank 0 should die inside the final save")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("\(out)/checkpoint-10/manifest.json").path))
            let resumed = try CLI.run(args(out), ranks: 2, timeout: 120)
            XCTAssertEqual(resumed.status, 0, "\(phase) resume: \(resumed.stderr)")
            XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-8"), resumed.stderr)
            XCTAssertEqual(try weights(out), refWeights, "\(phase): resumed run differs from the uninterrupted one")
        }
    }

    /// Resuming with other hyperparameters than the checkpoint recorded (here a longer run at a lower learning rate)
    /// is allowed, but the warning names each changed setting with both values.
    func testResumingWithOtherSettingsWarnsNamingThem() throws {
        let first = try CLI.run(args("w", ["--max-steps", "6"]))
        XCTAssertEqual(first.status, 0, first.stderr)
        let state = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("w/checkpoint-6/trainer_state.json"))) as! [String: Any]
        XCTAssertEqual((state["hyperparameters"] as? [String: String])?["precision"], "fp32", "the precision is recorded")
        let second = try CLI.run(args("w", ["--max-steps", "8", "--learning-rate", "5e-4"]))
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("resuming from checkpoint-6"), second.stderr)
        XCTAssertTrue(second.stderr.contains("warning: resuming with other settings than checkpoint-6"), second.stderr)
        XCTAssertTrue(second.stderr.contains("learning_rate 0.001 -> 0.0005"), second.stderr)
        XCTAssertTrue(second.stderr.contains("max_steps 6 -> 8"), second.stderr)
        let line = second.stderr.split(separator: "\n").first { $0.contains("other settings") } ?? ""
        XCTAssertFalse(line.contains("seed") || line.contains("batch_size"), "unchanged settings are not listed: \(line)")
    }

    func testCorruptCheckpointFallsBackWithWarning() throws {
        let ref = try CLI.run(args("ref", ["--max-steps", "12"]))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refWeights = try weights("ref")
        // Stop at step 8 by crashing after its checkpoint is complete, then corrupt that checkpoint.
        let crashed = try CLI.run(args("c", ["--max-steps", "12", "--fault-inject", "before-latest:8"]))
        XCTAssertEqual(crashed.status, 137)
        let victim = dir.appendingPathComponent("c/checkpoint-8/model.safetensors")
        var bytes = try Data(contentsOf: victim)
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: victim)
        let resumed = try CLI.run(args("c", ["--max-steps", "12"]))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("skipping checkpoint-8"), resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("sha256"), resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-6"), resumed.stderr)
        XCTAssertFalse(resumed.stderr.contains("other settings"), "same settings: no warning\n\(resumed.stderr)")
        XCTAssertEqual(try weights("c"), refWeights, "fallback resume must still end on the uninterrupted result")
        // train_loss covers the whole run, not only the resumed part.
        func trainLoss(_ d: String) throws -> Double {
            let o = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("\(d)/eval_results.json"))) as! [String: Any]
            return (o["train_loss"] as! NSNumber).doubleValue
        }
        XCTAssertEqual(try trainLoss("c"), try trainLoss("ref"), accuracy: 1e-12)
    }

    func testKilledRankAndResumeIsBitwiseExact() throws {
        // 2 ranks: uninterrupted reference, then runs killed with SIGKILL at seeded random moments and resumed.
        let ref = try CLI.run(args("ref", ["--max-steps", "30"]), ranks: 2, timeout: 180)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refWeights = try weights("ref")
        var rng = SeededRNG(seed: 2024)
        var attempts = 0, killed = 0
        while attempts < 10 {
            attempts += 1
            // Kill at a seeded random moment after this attempt has committed a new checkpoint, so every
            // attempt makes progress and the kill lands anywhere in a step (compute, all-reduce or a save).
            let latest = dir.appendingPathComponent("k/latest")
            let before = (try? String(contentsOf: latest, encoding: .utf8)) ?? ""
            let killAfter = Double(rng.next() % 1000) / 1000 * 0.4
            let r = try CLI.runAndKill(args("k", ["--max-steps", "30", "--step-delay-ms", "80"]), ranks: 2,
                                       killAfter: killAfter, pickRank: Int(rng.next() % 2),
                                       ready: { ((try? String(contentsOf: latest, encoding: .utf8)) ?? "") != before })
            if r.status == 0 { break }  // finished before the kill: the run is complete
            killed += 1
        }
        XCTAssertGreaterThanOrEqual(killed, 8, "the kills must actually interrupt the run for this test to mean anything")
        let final = try CLI.run(args("k", ["--max-steps", "30"]), ranks: 2, timeout: 180)
        XCTAssertEqual(final.status, 0, final.stderr)
        XCTAssertTrue(final.stderr.contains("resuming from checkpoint-"), final.stderr)
        XCTAssertEqual(try weights("k"), refWeights, "resumed 2-rank run differs from the uninterrupted one")
        // The final model is the last checkpoint's weights: published as a hard link, not written a second time.
        let inode = { (u: URL) in try FileManager.default.attributesOfItem(atPath: u.path)[.systemFileNumber] as? Int }
        let out = dir.appendingPathComponent("k")
        XCTAssertEqual(try inode(out.appendingPathComponent("model.safetensors")),
                       try inode(out.appendingPathComponent("checkpoint-30/model.safetensors")))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("config.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("optimizer.safetensors").path),
                       "optimizer state stays in the checkpoint")
    }

    func testResumeAtOtherWorldSizesKeepsSampleOrder() throws {
        let refLog = dir.appendingPathComponent("ref-samples.jsonl")
        let ref = try CLI.run(args("ref", ["--max-steps", "16", "--log-samples", refLog.path]), ranks: 4, timeout: 180)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        // 4 ranks → 2 → 1 → 8, interrupted by crashes right after complete checkpoints at steps 4, 8, 12.
        let log = dir.appendingPathComponent("samples.jsonl")
        for (ranks, stop) in [(4, 4), (2, 8), (1, 12)] {
            let r = try CLI.run(args("w", ["--max-steps", "16", "--log-samples", log.path, "--fault-inject", "before-latest:\(stop)"]),
                                ranks: ranks, timeout: 180)
            XCTAssertNotEqual(r.status, 0, "\(ranks) ranks should have been stopped at step \(stop)")
        }
        let last = try CLI.run(args("w", ["--max-steps", "16", "--log-samples", log.path]), ranks: 8, timeout: 240)
        XCTAssertEqual(last.status, 0, last.stderr)
        let want = try samples(refLog), got = try samples(log)
        XCTAssertEqual(want.count, 16)
        for step in 1...16 { XCTAssertEqual(got[step], want[step], "samples of step \(step)") }
        let wantLoss = try CLI.jsonLines(refLog), gotLoss = try CLI.jsonLines(log)
        var lastByStep: [Int: Double] = [:]
        for l in gotLoss { lastByStep[l["step"] as! Int] = (l["loss"] as! NSNumber).doubleValue }
        for l in wantLoss {
            let s = l["step"] as! Int, a = (l["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(lastByStep[s] ?? .nan, a, accuracy: 1e-5 * abs(a), "loss of step \(s)")
        }
    }

    func testPreemptionSignalSavesAndExitsWithRequeueCode() throws {
        // Signal once training is under way (the first periodic checkpoint exists), mid-run.
        let latestFile = dir.appendingPathComponent("p/latest")
        let r = try CLI.runAndSignal(args("p", ["--max-steps", "40", "--step-delay-ms", "100"]), ranks: 2,
                                     signalAfter: 0.3, signal: SIGUSR1,
                                     ready: { FileManager.default.fileExists(atPath: latestFile.path) })
        XCTAssertEqual(r.status, 75, "exit code for 'saved, requeue me'; stderr: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("received SIGUSR1"), r.stderr)
        let latest = try String(contentsOf: dir.appendingPathComponent("p/latest"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let resumed = try CLI.run(args("p", ["--max-steps", "40"]), ranks: 2, timeout: 180)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from \(latest)"), resumed.stderr)
    }
}

final class EarlyStoppingTests: XCTestCase {
    /// With learning rate 0 the eval loss never improves after the first evaluation, so patience 2 with an
    /// evaluation every step must stop after step 3 with the best at step 1, on every rank alike.
    func testEarlyStoppingStopsAllRanksAfterPatience() throws {
        let dir = try CLI.tempDir("early")
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = dir.appendingPathComponent("train.jsonl"), eval = dir.appendingPathComponent("eval.jsonl")
        try (lines[0..<32].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        try (lines[40..<50].joined(separator: "\n") + "\n").write(to: eval, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("o")
        let r = try CLI.run(["train", "--model", base.path, "--train-file", train.path, "--eval-file", eval.path,
                             "--output-dir", out.path, "--batch-size", "4", "--max-steps", "20", "--learning-rate", "0",
                             "--eval-steps", "1", "--early-stopping-patience", "2", "--metric-for-best-model", "eval_loss",
                             "--max-length", "24", "--logging-steps", "1"], ranks: 2, timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("eval_results.json"))) as! [String: Any]
        XCTAssertEqual(o["global_step"] as? Int, 3, "\(o)")
        XCTAssertEqual(o["best_step"] as? Int, 1, "\(o)")
        XCTAssertTrue(try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).contains { $0["early_stopped"] != nil })
    }
}

struct SeededRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
