// Run folders through the real binary (issue 22): a rerun in an existing --output-dir never produces a wrong or
// mislabelled result. A checkpoint past the requested end is refused; a non-empty folder is refused unless the run
// continues it or --overwrite-output-dir empties it (only files disttrain wrote); auto-resume follows `latest`'s run;
// another --model on resume is refused naming both; --metric-for-best-model takes Hugging Face's names;
// --save-total-limit keeps the best among at most N; --load-best-model-at-end publishes the best checkpoint's model;
// a finished command rerun leaves the folder untouched. Plus the train-side misleading errors.
import Foundation
import XCTest

final class RunFolderTests: XCTestCase {
    var dir: URL!
    var model: URL!
    var train: URL!
    var eval: URL!
    let fm = FileManager.default

    override func setUpWithError() throws {
        dir = try CLI.tempDir("runfolder")
        let fixture = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        model = dir.appendingPathComponent("model")
        try fm.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["model.safetensors", "vocab.txt", "tokenizer_config.json", "config.json"] {
            try fm.copyItem(at: fixture.appendingPathComponent(f), to: model.appendingPathComponent(f))
        }
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        train = dir.appendingPathComponent("train.jsonl")
        eval = dir.appendingPathComponent("eval.jsonl")
        try (lines[0..<32].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        try (lines[40..<52].joined(separator: "\n") + "\n").write(to: eval, atomically: true, encoding: .utf8)
    }
    override func tearDownWithError() throws { try? fm.removeItem(at: dir) }

    func out(_ name: String) -> URL { dir.appendingPathComponent(name) }

    func args(_ out: String, steps: Int, _ extra: [String] = [], model m: URL? = nil) -> [String] {
        ["train", "--model", (m ?? model).path, "--train-file", train.path, "--output-dir", self.out(out).path,
         "--batch-size", "8", "--max-steps", "\(steps)", "--save-steps", "2", "--logging-steps", "1", "--learning-rate", "1e-3",
         "--max-length", "24", "--seed", "5", "--threads", "1"] + extra
    }

    func bytes(_ url: URL) throws -> Data { try Data(contentsOf: url) }

    func inode(_ url: URL) throws -> Int? { try fm.attributesOfItem(atPath: url.path)[.systemFileNumber] as? Int }

    func results(_ out: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: bytes(self.out(out).appendingPathComponent("eval_results.json"))) as! [String: Any]
    }

    func checkpoints(_ out: String) -> [String] {
        ((try? fm.contentsOfDirectory(atPath: self.out(out).path)) ?? []).filter { $0.hasPrefix("checkpoint-") }.sorted()
    }

    /// Every file under `url` (relative path → bytes and modification date): "untouched" means equal snapshots.
    func snapshot(_ url: URL) throws -> [String: String] {
        var s: [String: String] = [:]
        let e = fm.enumerator(at: url, includingPropertiesForKeys: [.contentModificationDateKey, .isRegularFileKey])!
        for case let f as URL in e {
            let v = try f.resourceValues(forKeys: [.contentModificationDateKey, .isRegularFileKey])
            guard v.isRegularFile == true else { continue }
            let rel = String(f.path.dropFirst(url.path.count))
            s[rel] = "\(v.contentModificationDate?.timeIntervalSince1970 ?? 0) " + (try bytes(f)).base64EncodedString()
        }
        return s
    }

    /// One line on stderr, no Swift trace or Foundation error dump.
    /// Under mpirun (`ranks`), mpirun's own banner about a non-zero exit is not ours: only `error:` lines count.
    func assertOneLine(_ r: RunResult, status: Int32, contains parts: [String], ranks: Int? = nil,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty && (ranks == nil || $0.hasPrefix("error:")) }
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        for p in parts { XCTAssertTrue(r.stderr.contains(p), "'\(p)' in: \(r.stderr)", file: file, line: line) }
        for bad in ["NSCocoaErrorDomain", "Fatal error", "Stack dump", "Missing value"] {
            XCTAssertFalse(r.stderr.contains(bad), r.stderr, file: file, line: line)
        }
    }

    // MARK: point 1: a checkpoint past the requested end

    func testFinishedRunRerunWithFewerStepsIsRefusedNotRelabelled() throws {
        let first = try CLI.run(args("a", steps: 4))
        XCTAssertEqual(first.status, 0, first.stderr)
        let before = try snapshot(out("a"))
        let r = try CLI.run(args("a", steps: 2))
        assertOneLine(r, status: 2, contains: ["checkpoint-4 is at step 4, past the end of this run", "--max-steps 4 or more", "--overwrite-output-dir"])
        XCTAssertEqual(try snapshot(out("a")), before, "a refused run writes nothing")
        XCTAssertEqual(try results("a")["global_step"] as? Int, 4)
    }

    // MARK: point 2: Hugging Face semantics for a non-empty output folder

    func testResumeNeverIntoAFolderWithCheckpointsIsRefusedAndOverwriteStartsOver() throws {
        let fresh = try CLI.run(args("fresh", steps: 2))
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        let first = try CLI.run(args("a", steps: 4))
        XCTAssertEqual(first.status, 0, first.stderr)
        let before = try snapshot(out("a"))
        let never = try CLI.run(args("a", steps: 2, ["--resume", "never"]))
        assertOneLine(never, status: 2, contains: ["already holds 2 checkpoints of an earlier run", "--overwrite-output-dir"])
        XCTAssertEqual(try snapshot(out("a")), before)
        // --overwrite-output-dir: the folder is emptied first; the run is exactly a run into an empty folder.
        let over = try CLI.run(args("a", steps: 2, ["--resume", "never", "--overwrite-output-dir"]))
        XCTAssertEqual(over.status, 0, over.stderr)
        XCTAssertFalse(over.stderr.contains("resuming"), over.stderr)
        XCTAssertTrue(over.stderr.contains("--overwrite-output-dir: deleted what an earlier run wrote in \(out("a").path)"), over.stderr)
        XCTAssertEqual(checkpoints("a"), ["checkpoint-2"], "the earlier run's checkpoint-4 is gone")
        XCTAssertEqual(try bytes(out("a/model.safetensors")), try bytes(out("fresh/model.safetensors")))
        XCTAssertEqual(try results("a")["global_step"] as? Int, 2)
        XCTAssertFalse(try fm.contentsOfDirectory(atPath: dir.path).contains { $0.contains("overwritten") }, "no trash left")
    }

    func testAFolderWithOtherFilesIsRefusedAndOverwriteDeletesNothingItDidNotWrite() throws {
        let a = out("a")
        try fm.createDirectory(at: a, withIntermediateDirectories: true)
        try "mine".write(to: a.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let auto = try CLI.run(args("a", steps: 2))
        assertOneLine(auto, status: 2, contains: ["already holds files (notes.txt)", "no checkpoint to resume from"])
        // A finished run plus the user's file: --overwrite-output-dir names the file and deletes nothing.
        try fm.removeItem(at: a.appendingPathComponent("notes.txt"))
        let run = try CLI.run(args("a", steps: 2))
        XCTAssertEqual(run.status, 0, run.stderr)
        try "mine".write(to: a.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let before = try snapshot(a)
        let over = try CLI.run(args("a", steps: 2, ["--overwrite-output-dir"]))
        assertOneLine(over, status: 2, contains: ["did not write (notes.txt)", "nothing was deleted"])
        XCTAssertEqual(try snapshot(a), before)
    }

    func testOutputDirThatIsOrContainsTheModelIsRefused() throws {
        let weights = try bytes(model.appendingPathComponent("model.safetensors"))
        for (o, what) in [(model.path, "is the --model folder"), (dir.path, "contains the --model folder")] {
            var a = args("x", steps: 2, ["--overwrite-output-dir"])
            a[a.firstIndex(of: "--output-dir")! + 1] = o
            assertOneLine(try CLI.run(a), status: 2, contains: [what, "would overwrite the pre-trained model"])
        }
        XCTAssertEqual(try bytes(model.appendingPathComponent("model.safetensors")), weights)
        XCTAssertTrue(fm.fileExists(atPath: train.path), "nothing in the folder holding the model was deleted")
    }

    /// A folder written before this fix (another run's newer checkpoint next to the run `latest` names): auto-resume
    /// follows `latest`'s run and ends exactly where an uninterrupted run of it ends.
    func testAutoResumeFollowsLatestsRunNotAnotherRunsNewerCheckpoint() throws {
        let ref = try CLI.run(args("ref", steps: 6))
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let other = try CLI.run(args("other", steps: 8, ["--learning-rate", "5e-3"]))
        XCTAssertEqual(other.status, 0, other.stderr)
        // The run of interest dies inside its step-6 save: checkpoint-2 and -4 committed, `latest` → checkpoint-4.
        let crashed = try CLI.run(args("k", steps: 6, ["--fault-inject", "model-written:6"]))
        XCTAssertEqual(crashed.status, 137, crashed.stderr)
        try fm.copyItem(at: out("other/checkpoint-8"), to: out("k/checkpoint-8"))
        let resumed = try CLI.run(args("k", steps: 6))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("skipping checkpoint-8: written by another run"), resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-4"), resumed.stderr)
        XCTAssertEqual(try bytes(out("k/model.safetensors")), try bytes(out("ref/model.safetensors")))
        XCTAssertEqual(try results("k")["global_step"] as? Int, 6)
    }

    // MARK: point 3: the model's identity

    func testResumeWithAnotherModelIsRefusedNamingBoth() throws {
        let crashed = try CLI.run(args("a", steps: 6, ["--fault-inject", "model-written:4"]))
        XCTAssertEqual(crashed.status, 137, crashed.stderr)
        let gpt2 = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-cls")
        let r = try CLI.run(args("a", steps: 6, model: gpt2))
        assertOneLine(r, status: 2, contains: ["was trained from --model \(model.path)", "but --model \(gpt2.path) is another model"])
        // Same config, other weights: refused too (the weights' sha256 is part of the identity).
        let tweaked = out("tweaked")
        try fm.copyItem(at: model, to: tweaked)
        try CLI.poison(tweaked.appendingPathComponent("model.safetensors"), tensor: "classifier.bias", index: 0)
        let w = try CLI.run(args("a", steps: 6, model: tweaked))
        assertOneLine(w, status: 2, contains: ["its model.safetensors differs", tweaked.path])
        // The same model from another path continues the run.
        let moved = out("moved")
        try fm.copyItem(at: model, to: moved)
        let ok = try CLI.run(args("a", steps: 6, model: moved))
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stderr.contains("resuming from checkpoint-2"), ok.stderr)
    }

    // MARK: point 4: --metric-for-best-model

    func testMetricForBestModelTakesHuggingFaceNamesAndRefusesOthers() throws {
        let ok = try CLI.run(args("a", steps: 4, ["--eval-file", eval.path, "--eval-steps", "1", "--metric-for-best-model", "macro_f1"]))
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let evals = try CLI.jsonLines(out("a/metrics.jsonl")).filter { $0["eval_macro_f1"] != nil }
        XCTAssertEqual(evals.count, 4)
        let best = evals.map { ($0["eval_macro_f1"] as! NSNumber).doubleValue }.max()!
        XCTAssertEqual((try results("a")["best_metric"] as? NSNumber)?.doubleValue, best, "macro_f1 (not eval_loss) picked the best")
        for (name, valid) in [("bogus", "accuracy, loss, macro_f1"), ("eval_f1_nope", "f1_ham")] {
            let r = try CLI.run(args("b", steps: 4, ["--eval-file", eval.path, "--metric-for-best-model", name]))
            assertOneLine(r, status: 2, contains: ["--metric-for-best-model \(name) is not a metric of sequence classification", valid])
            XCTAssertTrue(checkpoints("b").isEmpty, "refused before training")
        }
    }

    // MARK: point 5: --save-total-limit and --load-best-model-at-end

    func testSaveTotalLimitKeepsTheBestAmongNAndLoadBestPublishesIt() throws {
        // Learning rate 0: every evaluation ties, so the first stays the best (a tie is no improvement) and the
        // weights never move; which checkpoint the final folder holds shows in its hard links (the same file).
        let extra = ["--eval-file", eval.path, "--eval-steps", "1", "--save-steps", "1", "--metric-for-best-model", "loss",
                     "--save-total-limit", "2", "--learning-rate", "0"]
        let plain = try CLI.run(args("a", steps: 6, extra))
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let best = try XCTUnwrap(try results("a")["best_step"] as? Int)
        XCTAssertEqual(best, 1, "ties are no improvement")
        XCTAssertEqual(checkpoints("a"), ["checkpoint-\(best)", "checkpoint-6"].sorted(), "at most 2: the best and the newest")
        XCTAssertEqual(try inode(out("a/model.safetensors")), try inode(out("a/checkpoint-6/model.safetensors")), "default: the last step's model")
        XCTAssertNil(try results("a")["final_model_step"])
        // inspect names the metric --metric-for-best-model chose (not "accuracy" whatever decided).
        let ck = try CLI.run(["inspect", out("a/checkpoint-6").path])
        XCTAssertEqual(ck.status, 0, ck.stderr)
        XCTAssertTrue(ck.stdout.contains("best eval_loss: "), ck.stdout)
        XCTAssertTrue(ck.stdout.contains(" at step \(best)"), ck.stdout)
        let ckJSON = try CLI.run(["inspect", out("a/checkpoint-6").path, "--json"])
        let state = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(ckJSON.stdout.utf8)) as? [String: Any])?["checkpoint"] as? [String: Any])
        XCTAssertEqual(state["best_metric_name"] as? String, "eval_loss")
        XCTAssertEqual((state["best_metric"] as? NSNumber)?.doubleValue, (try results("a")["best_metric"] as? NSNumber)?.doubleValue)

        let b = try CLI.run(args("b", steps: 6, extra + ["--load-best-model-at-end"]))
        XCTAssertEqual(b.status, 0, b.stderr)
        let r = try results("b")
        XCTAssertEqual(r["final_model_step"] as? Int, best)
        XCTAssertEqual(try inode(out("b/model.safetensors")), try inode(out("b/checkpoint-\(best)/model.safetensors")), "the best checkpoint's model")
        XCTAssertTrue(b.stderr.contains("final model: checkpoint-\(best)"), b.stderr)
        let bestEval = try CLI.jsonLines(out("b/metrics.jsonl")).first { $0["eval_loss"] != nil && $0["step"] as? Int == best }
        XCTAssertEqual((r["eval_loss"] as? NSNumber)?.doubleValue, (bestEval?["eval_loss"] as? NSNumber)?.doubleValue,
                       "eval_results.json reports the published model's evaluation")
        // The best checkpoint must exist: evaluations that are not save steps are refused.
        let mismatch = try CLI.run(args("c", steps: 6, ["--eval-file", eval.path, "--eval-steps", "3", "--save-steps", "2", "--load-best-model-at-end"]))
        assertOneLine(mismatch, status: 2, contains: ["--load-best-model-at-end needs a checkpoint at every evaluation", "--save-steps 3"])
    }

    // MARK: point 6: a finished command rerun

    func testRerunningAFinishedCommandLeavesTheFolderUntouched() throws {
        let a = args("a", steps: 4, ["--eval-file", eval.path])
        let first = try CLI.run(a)
        XCTAssertEqual(first.status, 0, first.stderr)
        let before = try snapshot(out("a"))
        let again = try CLI.run(a)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("already finished at step 4"), again.stderr)
        XCTAssertEqual(again.stdout, "", "no new results line")
        XCTAssertEqual(try snapshot(out("a")), before, "nothing rewritten, nothing left behind")
        // Two ranks agree and print it once.
        let two = try CLI.run(a, ranks: 2)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertEqual(two.stderr.components(separatedBy: "already finished at step 4").count - 1, 1, two.stderr)
        XCTAssertEqual(try snapshot(out("a")), before)
    }

    // MARK: train-side misleading errors

    func testOutputDirThatIsAFileIsRefusedBeforeTraining() throws {
        let file = out("file")
        try "x".write(to: file, atomically: true, encoding: .utf8)
        var a = args("x", steps: 2)
        a[a.firstIndex(of: "--output-dir")! + 1] = file.path
        assertOneLine(try CLI.run(a), status: 2, contains: ["--output-dir \(file.path) is a file, not a folder"])
        XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), "x")
    }

    func testResumeFromAPathThatDoesNotExistSaysSo() throws {
        let r = try CLI.run(args("a", steps: 2, ["--resume", "/nonexistent/checkpoint-4"]))
        assertOneLine(r, status: 2, contains: ["--resume /nonexistent/checkpoint-4: no such checkpoint folder"])
    }

    func testNegativeMaxStepsIsAClearUsageError() throws {
        let r = try CLI.run(args("a", steps: -1))
        assertOneLine(r, status: 2, contains: ["--max-steps must be 0"])
    }

    func testEvalFlagsWithoutEvalDataAreRefused() throws {
        for flag in [["--eval-steps", "2"], ["--early-stopping-patience", "2"]] {
            let r = try CLI.run(args("a", steps: 2, flag))
            assertOneLine(r, status: 2, contains: ["\(flag[0]) needs evaluation data", "--eval-file"])
        }
        // Under mpirun: every rank refuses alike, one line.
        let two = try CLI.run(args("a", steps: 2, ["--eval-steps", "2"]), ranks: 2)
        assertOneLine(two, status: 2, contains: ["--eval-steps needs evaluation data"], ranks: 2)
        XCTAssertTrue(checkpoints("a").isEmpty)
    }

    func testModelGivenAsItsWeightsFileSaysPassTheFolder() throws {
        let r = try CLI.run(args("a", steps: 2, model: model.appendingPathComponent("model.safetensors")))
        assertOneLine(r, status: 2, contains: ["--model \(model.path)/model.safetensors is a file; pass the model folder that holds it (\(model.path))"])
    }

    /// A wrong --train-file path is a usage error like a wrong --model path: both exit 2.
    func testMissingTrainFileExitsLikeAMissingModel() throws {
        let noModel = try CLI.run(args("a", steps: 2, model: out("no-model")))
        XCTAssertEqual(noModel.status, 2, noModel.stderr)
        var a = args("a", steps: 2)
        a[a.firstIndex(of: "--train-file")! + 1] = out("missing.jsonl").path
        assertOneLine(try CLI.run(a), status: 2, contains: ["--train-file \(out("missing.jsonl").path) does not exist"])
    }

    func testStdinTrainFileUnderMpirunIsRefused() throws {
        var a = args("a", steps: 2)
        a[a.firstIndex(of: "--train-file")! + 1] = "-"
        let r = try CLI.run(a, ranks: 2, stdin: try String(contentsOf: train, encoding: .utf8))
        assertOneLine(r, status: 2, contains: ["--train-file -", "needs a single process", "write the data to a file"], ranks: 2)
    }

    // MARK: point 9 and the LM summary

    /// GPT-2 (n_positions 40), --max-length 16: a prompt of 30 words leaves no response token, and `train` says so
    /// (as `eval` does). A language model has no labels (no empty `labels:`); one step is "1 step".
    func testLanguageModelTrainReportsSkippedPromptResponseRows() throws {
        let rows = [["prompt": String(repeating: "the ", count: 30), "response": " end"], ["prompt": "hi", "response": " there friend"],
                    ["prompt": "a b", "response": " c d"]]
        let data = out("pr.jsonl")
        try (rows.map { String(decoding: try! JSONSerialization.data(withJSONObject: $0, options: .sortedKeys), as: UTF8.self) }
            .joined(separator: "\n") + "\n").write(to: data, atomically: true, encoding: .utf8)
        let lm = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm")
        let r = try CLI.run(["train", "--model", lm.path, "--train-file", data.path, "--output-dir", out("lm").path, "--max-steps", "1",
                             "--batch-size", "1", "--max-length", "16", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: 1 prompt→response row of pr.jsonl left no response token within 16 tokens and was skipped; raise --max-length"), r.stderr)
        XCTAssertTrue(r.stderr.contains("train: 2 examples, eval: 0\n"), r.stderr)
        XCTAssertFalse(r.stderr.contains("labels:"), r.stderr)
        XCTAssertTrue(r.stderr.contains(", 1 step (2/epoch)"), r.stderr)
    }
}
