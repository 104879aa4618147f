// `train --init-from-config` through the real binary, on the tiny GPT-2 fixture's config.json and tokenizer (no
// weights): a from-scratch run trains (its first loss is ln(vocab) territory and falls), 1 process and `mpirun -n 2`
// start from the same bytes and give the same per-step losses, a folder without weights and without the flag is
// refused in one line naming the flag, bad --init-from-config arguments are usage errors, and resuming a
// from-scratch run continues its checkpoint instead of initialising again.
import Foundation
import XCTest

final class InitFromConfigTests: XCTestCase {
    let fixture = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm")

    /// A folder holding the fixture's config.json and tokenizer files, and no weights.
    func configFolder(_ dir: URL, name: String = "scratch") throws -> URL {
        let folder = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for f in ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(f), to: folder.appendingPathComponent(f))
        }
        return folder
    }

    func textFile(_ dir: URL) throws -> URL {
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/hamlet-lm/lm.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let url = dir.appendingPathComponent("text.jsonl")
        try (lines[0..<12].joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func args(_ config: URL, _ train: URL, _ out: URL, steps: Int, lr: String = "3e-3", seed: String = "4") -> [String] {
        ["train", "--init-from-config", config.path, "--train-file", train.path, "--output-dir", out.path,
         "--batch-size", "8", "--max-steps", "\(steps)", "--logging-steps", "1", "--learning-rate", lr,
         "--max-length", "32", "--seed", seed, "--threads", "1", "--no-report"]
    }

    func losses(_ out: URL) throws -> [Double] {
        try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    func testFromScratchTrainsAndRanksStartFromTheSameBytes() throws {
        let dir = try CLI.tempDir("init-ranks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try configFolder(dir).appendingPathComponent("config.json"), train = try textFile(dir)
        // A step at learning rate 0 saves the initial weights unchanged (AdamW's update is exactly 0).
        var weights: [String: Data] = [:]
        for (name, ranks, seed) in [("one", 1, "4"), ("two", 2, "4"), ("again", 1, "4"), ("other", 1, "5")] {
            let out = dir.appendingPathComponent("step0-\(name)")
            let r = try CLI.run(args(config, train, out, steps: 1, lr: "0", seed: seed), ranks: ranks == 1 ? nil : ranks, timeout: 240)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssert(r.stderr.contains("initialised every weight from"), r.stderr)
            weights[name] = try Data(contentsOf: out.appendingPathComponent("model.safetensors"))
        }
        XCTAssertEqual(weights["one"], weights["two"], "1 process and 2 ranks must start from the same bytes")
        XCTAssertEqual(weights["one"], weights["again"], "same seed, same bytes")
        XCTAssertNotEqual(weights["one"], weights["other"], "another --seed, other weights")
        // The saved step-0 folder is a normal model folder: it trains without the flag.
        let step0 = dir.appendingPathComponent("step0-one")
        XCTAssert(FileManager.default.fileExists(atPath: step0.appendingPathComponent("vocab.json").path), "tokenizer copied")

        // Training from scratch: 1 and 2 ranks give the same per-step losses; the loss starts near ln(50257) and falls.
        let a = dir.appendingPathComponent("train-1"), b = dir.appendingPathComponent("train-2")
        let r1 = try CLI.run(args(config, train, a, steps: 6), timeout: 240)
        XCTAssertEqual(r1.status, 0, r1.stderr)
        let r2 = try CLI.run(args(config, train, b, steps: 6), ranks: 2, timeout: 240)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let la = try losses(a), lb = try losses(b)
        XCTAssertEqual(la.count, 6)
        XCTAssertEqual(la.first!, log(50257.0), accuracy: 0.3, "a fresh GPT-2 predicts ~uniformly over its vocabulary")
        XCTAssertLessThan(la.last!, la.first! - 0.05, "the loss must fall (\(la))")
        for (k, (x, y)) in zip(la, lb).enumerated() {
            XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1): 1 process \(x), 2 ranks \(y)")
        }
    }

    func testFolderWithoutWeightsNeedsTheFlag() throws {
        let dir = try CLI.tempDir("init-refuse")
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = try configFolder(dir), train = try textFile(dir)
        let out = dir.appendingPathComponent("out")
        let r = try CLI.run(["train", "--model", folder.path, "--train-file", train.path, "--output-dir", out.path, "--max-steps", "1"])
        XCTAssertEqual(r.status, 2, r.stderr)
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains("] ") || $0.hasPrefix("error") }
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)")
        XCTAssert(r.stderr.hasPrefix("error: ") && r.stderr.contains("--init-from-config") && r.stderr.contains("no model.safetensors"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path), "nothing written")
        // With the flag, --model naming the same folder is accepted.
        let ok = try CLI.run(["train", "--model", folder.path, "--init-from-config", folder.appendingPathComponent("config.json").path,
                              "--train-file", train.path, "--output-dir", out.path, "--max-steps", "1", "--batch-size", "2",
                              "--max-length", "32", "--no-report"], timeout: 240)
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    func testBadInitFromConfigArgumentsAreUsageErrors() throws {
        let dir = try CLI.tempDir("init-usage")
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = try configFolder(dir), train = try textFile(dir)
        let bare = dir.appendingPathComponent("bare")
        try FileManager.default.createDirectory(at: bare, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("config.json"), to: bare.appendingPathComponent("config.json"))
        let config = folder.appendingPathComponent("config.json").path
        let cases: [([String], String)] = [
            (["--init-from-config", dir.appendingPathComponent("nope.json").path], "does not exist"),
            (["--init-from-config", bare.appendingPathComponent("config.json").path], "no tokenizer beside it"),
            (["--init-from-config", config, "--model", fixture.path], "is not in --model"),
            (["--init-from-config", config, "--lora-r", "4"], "--lora-r"),
        ]
        for (extra, expect) in cases {
            let out = dir.appendingPathComponent("out-\(expect.filter(\.isLetter))")
            let r = try CLI.run(["train", "--train-file", train.path, "--output-dir", out.path, "--max-steps", "1"] + extra)
            XCTAssertEqual(r.status, 2, "\(extra): \(r.stderr)")
            XCTAssert(r.stderr.contains(expect), "\(extra): expected '\(expect)' in \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        }
    }

    /// A from-scratch run stopped at step 2 and continued to step 4 gives the uninterrupted run's losses: the resumed
    /// run loads checkpoint-2's weights (initialising again would restart the loss near ln(50257)).
    func testResumeContinuesTheCheckpointWithoutReinitialising() throws {
        let dir = try CLI.tempDir("init-resume")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try configFolder(dir).appendingPathComponent("config.json"), train = try textFile(dir)
        let whole = dir.appendingPathComponent("whole"), split = dir.appendingPathComponent("split")
        let w = try CLI.run(args(config, train, whole, steps: 4) + ["--lr-scheduler-type", "constant"], timeout: 240)
        XCTAssertEqual(w.status, 0, w.stderr)
        let first = try CLI.run(args(config, train, split, steps: 2) + ["--lr-scheduler-type", "constant"], timeout: 240)
        XCTAssertEqual(first.status, 0, first.stderr)
        let second = try CLI.run(args(config, train, split, steps: 4) + ["--lr-scheduler-type", "constant"], timeout: 240)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertFalse(second.stderr.contains("initialised every weight"), "a resumed run must not initialise: \(second.stderr)")
        let a = try losses(whole), b = try losses(split)
        XCTAssertEqual(a.count, 4); XCTAssertEqual(b.count, 4, "metrics.jsonl keeps the first run's records")
        for (k, (x, y)) in zip(a, b).enumerated() {
            XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1): uninterrupted \(x), resumed \(y)")
        }
    }
}
