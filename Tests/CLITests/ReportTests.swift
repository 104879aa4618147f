// End-to-end through the built binary on the tiny fixture: a short training run writes report.html, and its output
// folder and checkpoint feed `eval`, `inspect` and `predict`; `--config` drives a run. Kept small: 32 tokens, a few steps.
import Foundation
import XCTest
@testable import disttrain

final class ReportTests: XCTestCase {
    var dir: URL!
    var model: URL!
    var train: URL!

    override func setUpWithError() throws {
        dir = try CLI.tempDir("report")
        model = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        train = dir.appendingPathComponent("train.jsonl")
        try CLI.writeSpamHamRows(16, to: train)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func trainRun(_ out: URL, extra: [String] = []) throws -> RunResult {
        try CLI.run(["train", "--model", model.path, "--train-file", train.path, "--eval-file", train.path,
                     "--output-dir", out.path, "--batch-size", "4", "--max-steps", "6", "--max-length", "32",
                     "--logging-steps", "1", "--eval-steps", "3", "--learning-rate", "1e-3", "--save-steps", "3"] + extra)
    }

    func testTrainingWritesAReportAndTheOtherCommandsReadItsOutput() throws {
        let out = dir.appendingPathComponent("out")
        let r = try trainRun(out)
        XCTAssertEqual(r.status, 0, r.stderr)
        // Not a terminal: timestamped lines, no carriage returns.
        XCTAssertTrue(r.stderr.contains("] step 6/6 epoch 1.50 loss "), r.stderr)
        XCTAssertFalse(r.stderr.contains("\r"))

        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4)
        XCTAssertFalse(html.contains("no data"), "every chart has data after 6 logged steps and 2 evaluations")
        XCTAssertTrue(html.contains("<td class=\"name\">spam</td>"))
        XCTAssertFalse(html.contains("Not recorded"), "a two-class confusion matrix is always available")

        // eval: one JSON line with the metrics, the confusion matrix summing to the 16 examples, nothing written.
        let e = try CLI.run(["eval", "--model", out.path, "--eval-file", train.path, "--max-length", "32"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let lines = e.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1)
        let m = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let cm = try XCTUnwrap(m["eval_confusion_matrix"] as? [[Int]])
        XCTAssertEqual(cm.flatMap { $0 }.reduce(0, +), 16)
        XCTAssertEqual(m["eval_support_spam"] as? Int, 8)
        // The same model on the same data gives the trainer's final numbers (both evaluate the saved weights).
        let final = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("eval_results.json"))) as! [String: Any]
        XCTAssertEqual(m["eval_accuracy"] as! Double, final["eval_accuracy"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(m["eval_loss"] as! Double, final["eval_loss"] as! Double, accuracy: 1e-4)
        let acc = Double(cm[0][0] + cm[1][1]) / 16
        XCTAssertEqual(m["eval_accuracy"] as! Double, acc, accuracy: 1e-12)
        // Under mpirun -n 2 each rank scores half; the reduced counts are the same and only rank 0 prints.
        let e2 = try CLI.run(["eval", "--model", out.path, "--eval-file", train.path, "--max-length", "32"], ranks: 2)
        XCTAssertEqual(e2.status, 0, e2.stderr)
        let lines2 = e2.stdout.split(separator: "\n")
        XCTAssertEqual(lines2.count, 1, e2.stdout)
        let m2 = try JSONSerialization.jsonObject(with: Data(lines2[0].utf8)) as! [String: Any]
        XCTAssertEqual(m2["eval_confusion_matrix"] as? [[Int]], cm)
        // Each shard is padded and multiplied as its own batch, so the Float logits round differently (BLAS picks
        // other blockings for other shapes): agreement to Float precision of a loss near 0.69, not bitwise.
        XCTAssertEqual(m2["eval_loss"] as! Double, m["eval_loss"] as! Double, accuracy: 1e-6)

        // inspect: the checkpoint verifies and records its state; corrupting it makes inspect fail with exit 1.
        let ck = out.appendingPathComponent("checkpoint-6")
        let i = try CLI.run(["inspect", ck.path, "--json"])
        XCTAssertEqual(i.status, 0, i.stderr)
        let info = try JSONSerialization.jsonObject(with: Data(i.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(info["kind"] as? String, "checkpoint")
        XCTAssertEqual(info["labels"] as? [String], ["ham", "spam"])
        let arch = try XCTUnwrap(info["architecture"] as? [String: Any])
        XCTAssertEqual(arch["layers"] as? Int, 2); XCTAssertEqual(arch["hidden"] as? Int, 16)
        XCTAssertEqual(arch["heads"] as? Int, 2); XCTAssertEqual(arch["max_positions"] as? Int, 40)
        let weights = try XCTUnwrap(info["weights_file"] as? [String: Any])
        XCTAssertEqual(info["parameters"] as? Int, weights["elements"] as? Int, "layout count = elements in the saved file")
        let state = try XCTUnwrap(info["checkpoint"] as? [String: Any])
        XCTAssertEqual(state["step"] as? Int, 6)
        XCTAssertEqual(state["world_size_at_save"] as? Int, 1)
        XCTAssertEqual(state["global_batch_at_save"] as? Int, 4)
        XCTAssertEqual(state["verified"] as? Bool, true)
        XCTAssertEqual((state["data_fingerprint"] as? String)?.count, 12)
        let text = try CLI.run(["inspect", out.path])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("labels: 2 (ham, spam)"), text.stdout)
        let cfg = ck.appendingPathComponent("config.json")
        try (String(contentsOf: cfg, encoding: .utf8) + " ").write(to: cfg, atomically: true, encoding: .utf8)
        let bad = try CLI.run(["inspect", ck.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stdout.contains("manifest: FAILED"), bad.stdout)

        // predict: stdin CSV; logits by default (issue 2's output contract), dropped with --no-logits.
        let p = try CLI.run(["predict", "--model", out.path, "--input", "-", "--input-format", "csv", "--max-length", "32", "--no-logits"],
                            stdin: "text\nfree prize call now\nlunch tomorrow?\n")
        XCTAssertEqual(p.status, 0, p.stderr)
        let preds = try p.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(preds.count, 2)
        XCTAssertEqual(preds[1]["text"] as? String, "lunch tomorrow?")
        XCTAssertNil(preds[0]["logits"])
        let probs = try XCTUnwrap(preds[0]["probs"] as? [String: Double])
        XCTAssertEqual(probs.values.reduce(0, +), 1, accuracy: 1e-9)
        let pl = try CLI.run(["predict", "--model", out.path, "--input", train.path, "--max-length", "32", "--batch-size", "5"])
        XCTAssertEqual(pl.status, 0, pl.stderr)
        let withLogits = try pl.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(withLogits.count, 16)
        XCTAssertEqual((withLogits[0]["logits"] as? [Double])?.count, 2)
    }

    func testConfigFileDrivesARunAndFlagsOverrideIt() throws {
        let out = dir.appendingPathComponent("cfg")
        let yaml = dir.appendingPathComponent("run.yaml")
        try """
        # a run described in YAML; underscores and hyphens both work
        model: \(model.path)
        train_file: \(train.path)
        output-dir: \(out.path)
        batch_size: 4
        max_steps: 50
        max-length: 32
        logging_steps: 1
        no_dropout: true
        no-report: false
        """.write(to: yaml, atomically: true, encoding: .utf8)
        let r = try CLI.run(["train", "--config", yaml.path, "--max-steps", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let records = try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.compactMap { $0["step"] as? Int }.max(), 2, "--max-steps on the command line beats the file's 50")
        XCTAssertEqual(records.first?["total_steps"] as? Int, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("report.html").path))
    }

    func testLogLevelWarningSilencesProgress() throws {
        let out = dir.appendingPathComponent("quiet")
        let r = try trainRun(out, extra: ["--log-level", "warning", "--no-report"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("step 6/6"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("report.html").path))
    }

    func testProgressTextAndETA() {
        let m: [String: Double] = ["step": 25, "total_steps": 100, "epoch": 0.5, "loss": 0.6931, "learning_rate": 5e-5,
                                   "grad_norm": 1.5, "tokens_per_s": 1234.4, "elapsed_s": 30]
        XCTAssertEqual(ProgressReporter.progressText(m, eta: 90, bar: true),
                       "step 25/100 [█████░░░░░░░░░░░░░░░] epoch 0.50 loss 0.6931 lr 5e-05 grad_norm 1.500 tokens/s 1234 elapsed 30s ETA 1m30s")
        XCTAssertEqual(ProgressReporter.progressText(m, eta: nil, bar: false),
                       "step 25/100 epoch 0.50 loss 0.6931 lr 5e-05 grad_norm 1.500 tokens/s 1234 elapsed 30s")
        XCTAssertEqual(ProgressReporter.formatDuration(3725), "1h02m")
        // ETA from the rate since the first record: 20 steps in 40 s → 2 s/step, 55 steps left → 110 s.
        let r = ProgressReporter(enabled: true, level: .critical, terminal: Terminal(isTTY: false))
        XCTAssertNil(r.eta(["step": 5, "total_steps": 80, "elapsed_s": 10]))
        XCTAssertEqual(r.eta(["step": 25, "total_steps": 80, "elapsed_s": 50]), 110)
    }
}
