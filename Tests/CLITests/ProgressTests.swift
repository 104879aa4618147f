// The progress display of `train` (disttrain/Progress.swift): on a terminal one line redrawn in place after every
// optimizer step, showing evaluations and saves as they run; in a pipe (CI, SLURM logs) one line per logging step and
// one as each evaluation begins; `--quiet` shows neither. The terminal is a real pty from util-linux `script`.
import Foundation
import Training
import XCTest
@testable import disttrain

final class ProgressTests: XCTestCase {
    var dir: URL!
    var train: URL!
    let model = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")

    override func setUpWithError() throws {
        dir = try CLI.tempDir("progress")
        train = dir.appendingPathComponent("train.jsonl")
        try CLI.writeSpamHamRows(16, to: train)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// 6 steps of 4 examples, evaluation every 3 steps; `--step-delay-ms` (a hidden testing hook) spaces the steps
    /// beyond the bar's 0.1 s redraw interval so every step is drawn.
    func args(_ out: String, logging: Int, extra: [String] = []) -> [String] {
        ["train", "--model", model.path, "--train-file", train.path, "--eval-file", train.path,
         "--output-dir", dir.appendingPathComponent(out).path, "--batch-size", "4", "--max-steps", "6", "--max-length", "32",
         "--logging-steps", "\(logging)", "--eval-steps", "3", "--step-delay-ms", "120", "--no-report"] + extra
    }

    /// Runs the binary with stdin, stdout and stderr on a pty (`script -qec CMD /dev/null`); returns what the
    /// terminal received.
    func runOnATerminal(_ args: [String]) throws -> (status: Int32, text: String) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("util-linux `script` not installed") }
        let quoted = ([try CLI.binary().path] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        p.arguments = ["-qec", quoted.joined(separator: " "), "/dev/null"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testOnATerminalTheLineMovesEveryStepAndShowsEvaluationAndSaving() throws {
        // --logging-steps 100: no log record until the last step, yet the line moves at every step.
        let r = try runOnATerminal(args("tty", logging: 100))
        XCTAssertEqual(r.status, 0, r.text)
        for k in 1...6 {
            XCTAssertTrue(r.text.contains("\r\u{1B}[Kstep \(k)/6 ["), "step \(k) not drawn:\n\(r.text)")
        }
        XCTAssertTrue(r.text.contains("\r\u{1B}[Kstep 3/6 [██████████░░░░░░░░░░] epoch 0.75 loss "), r.text)
        XCTAssertTrue(r.text.contains("\r\u{1B}[Kstep 6/6 [████████████████████] epoch 1.50 loss "), r.text)
        XCTAssertTrue(r.text.contains(" tokens/s "), r.text)
        XCTAssertTrue(r.text.contains(" elapsed "), r.text)
        XCTAssertTrue(r.text.contains(" ETA "), "an ETA once two steps give a rate:\n\(r.text)")
        XCTAssertTrue(r.text.contains(" · evaluating…"), "the evaluation phase is shown:\n\(r.text)")
        XCTAssertTrue(r.text.contains(" · saving…"), "the save phase is shown:\n\(r.text)")
        // The evaluation's result is a line printed above the bar (the bar is cleared first, then redrawn).
        XCTAssertTrue(r.text.contains("\r\u{1B}[K[") && r.text.contains("eval step 3: accuracy"), r.text)
        // No log-file style step lines on a terminal.
        XCTAssertFalse(r.text.contains("] step 3/6 epoch"), r.text)
    }

    func testInAPipeOneLinePerLoggingStepAndEvaluationsAnnounced() throws {
        let r = try CLI.run(args("pipe", logging: 3))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("\r"), "no redraws in a log")
        XCTAssertFalse(r.stderr.contains("\u{1B}["), "no terminal escapes in a log")
        let stepLines = r.stderr.split(separator: "\n").filter { $0.contains("] step ") && $0.contains(" epoch ") }
        XCTAssertEqual(stepLines.count, 2, "steps 3 and 6 of --logging-steps 3:\n\(r.stderr)")
        XCTAssertTrue(stepLines[0].contains("] step 3/6 epoch 0.75 loss "), r.stderr)
        XCTAssertTrue(stepLines[1].contains("] step 6/6 epoch 1.50 loss "), r.stderr)
        XCTAssertTrue(stepLines[1].contains(" elapsed ") && stepLines[1].contains(" ETA "), r.stderr)
        XCTAssertTrue(r.stderr.contains("] step 3/6: evaluating 16 examples"), r.stderr)
        XCTAssertTrue(r.stderr.contains("] step 6/6: evaluating 16 examples"), r.stderr)
    }

    func testQuietShowsNoProgressButTheResult() throws {
        let r = try CLI.run(args("quiet", logging: 1, extra: ["--quiet"]))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("step "), r.stderr)
        XCTAssertFalse(r.stderr.contains("evaluating"), r.stderr)
        XCTAssertFalse(r.stderr.contains("eval step"), r.stderr)
        let result = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(result?["global_step"] as? Int, 6, r.stdout)
        let tty = try runOnATerminal(args("quiet-tty", logging: 1, extra: ["--quiet"]))
        XCTAssertEqual(tty.status, 0, tty.text)
        XCTAssertFalse(tty.text.contains("\u{1B}[K"), "no bar on a terminal either:\n\(tty.text)")
    }

    func testBarText() {
        let p = ProgressRecord(phase: .training, step: 25, totalSteps: 100, epoch: 0.5, elapsedSeconds: 30,
                               runningLoss: 0.6931, tokensPerSecond: 1234.4)
        XCTAssertEqual(ProgressReporter.barText(p, eta: 90),
                       "step 25/100 [█████░░░░░░░░░░░░░░░] epoch 0.50 loss 0.6931 tokens/s 1234 elapsed 30s ETA 1m30s")
        var e = p
        e.phase = .evaluating
        XCTAssertEqual(ProgressReporter.barText(e, eta: nil),
                       "step 25/100 [█████░░░░░░░░░░░░░░░] epoch 0.50 loss 0.6931 tokens/s 1234 elapsed 30s · evaluating…")
        let start = ProgressRecord(phase: .saving, step: 0, totalSteps: 10, epoch: 0, elapsedSeconds: 0)
        XCTAssertEqual(ProgressReporter.barText(start, eta: nil), "step 0/10 [░░░░░░░░░░░░░░░░░░░░] epoch 0.00 elapsed 0s · saving…")
    }
}
