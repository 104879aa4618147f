// Help text and argument parsing, tested in-process through `@testable import disttrain` (SwiftPM on Linux builds
// executable targets for testing with a renamed entry point, so the command types are importable).
// Deliberately not here: running commands (the other CLITests spawn the built binary for that).
import ArgumentParser
import Foundation
import XCTest
@testable import disttrain

final class HelpTests: XCTestCase {
    func testRootHelpListsEverySubcommand() {
        let help = Disttrain.helpMessage()
        for sub in ["train", "eval", "predict", "inspect", "tokenize", "bench"] {
            XCTAssertTrue(help.contains("  \(sub)"), "root help lacks '\(sub)':\n\(help)")
        }
        XCTAssertTrue(help.contains("mpirun -n 2 disttrain train"), help)
        XCTAssertFalse(help.contains("comm-check"), "comm-check is a test-only executable, not in the shipped binary")
    }

    /// The issue-2 flag names are a contract; they must all appear in `train --help`.
    func testTrainHelpHasTheContractFlags() {
        let help = Disttrain.helpMessage(for: Train.self)
        for flag in ["--model", "--train-file", "--eval-file", "--output-dir", "--num-train-epochs", "--max-steps",
                     "--batch-size", "--micro-batch-size", "--per-device-train-batch-size", "--learning-rate",
                     "--weight-decay", "--warmup-steps", "--warmup-ratio", "--lr-scheduler-type", "--max-grad-norm",
                     "--max-length", "--seed", "--logging-steps", "--eval-steps", "--save-steps", "--config", "--log-level"] {
            XCTAssertTrue(help.contains(flag), "train help lacks \(flag)")
        }
        XCTAssertFalse(help.contains("--fault-inject"), "testing hooks must stay hidden")
    }

    func testEvalHelp() {
        let help = Disttrain.helpMessage(for: Eval.self)
        for flag in ["--model", "--eval-file", "--max-length", "--batch-size", "--output", "eval_confusion_matrix"] {
            XCTAssertTrue(help.contains(flag), "eval help lacks \(flag)")
        }
    }

    func testPredictHelp() {
        let help = Disttrain.helpMessage(for: Predict.self)
        for flag in ["--model", "--input", "--output", "--logits", "--input-format", "jsonl, csv", "--input -"] {
            XCTAssertTrue(help.contains(flag), "predict help lacks \(flag):\n\(help)")
        }
    }

    func testInspectHelp() {
        let help = Disttrain.helpMessage(for: Inspect.self)
        XCTAssertTrue(help.contains("<path>"), help)
        XCTAssertTrue(help.contains("--json"), help)
        XCTAssertTrue(help.contains("manifest"), help)
    }

    func testBenchAndTokenizeHelp() {
        XCTAssertTrue(Disttrain.helpMessage(for: Bench.self).contains("--seq-len"))
        XCTAssertTrue(Disttrain.helpMessage(for: Tokenize.self).contains("USAGE: disttrain tokenize"))
    }

    /// The comm-check harness is a test-only executable (Tests/CommCheck): the shipped binary does not know it.
    func testCommCheckIsNotInTheShippedBinary() throws {
        let r = try CLI.run(["comm-check"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("comm-check"), r.stderr)
    }

    /// `--help` is not an error: the binary prints the subcommand's help on stdout and exits 0 (main.swift's policy).
    func testHelpFlagExitsZeroWithTheHelpOnStdout() throws {
        for sub in ["train", "eval", "predict", "inspect"] {
            let r = try CLI.run([sub, "--help"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("USAGE: disttrain \(sub)"), r.stdout)
            XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                           Disttrain.helpMessage(for: [Train.self, Eval.self, Predict.self, Inspect.self][["train", "eval", "predict", "inspect"].firstIndex(of: sub)!]).trimmingCharacters(in: .whitespacesAndNewlines),
                           "the binary prints what the in-process help renders")
        }
    }

    func testFlagsMapOntoTrainConfig() throws {
        let cmd = try XCTUnwrap(Disttrain.parseAsRoot([
            "train", "--model", "m", "--train-file", "t.jsonl", "--output-dir", "o", "--learning-rate", "1e-4",
            "--per-device-train-batch-size", "4", "--lr-scheduler-type", "cosine", "--no-dropout"]) as? Train)
        let c = cmd.trainConfig
        XCTAssertEqual(c.learningRate, 1e-4)
        XCTAssertEqual(c.microBatchSize, 4)
        XCTAssertEqual(c.lrSchedule.rawValue, "cosine")
        XCTAssertFalse(c.dropout)
    }

    func testBF16FlagMapsOntoTrainConfig() throws {
        let args = ["train", "--model", "m", "--train-file", "t.jsonl", "--output-dir", "o"]
        let plain = try XCTUnwrap(Disttrain.parseAsRoot(args) as? Train)
        XCTAssertEqual(plain.trainConfig.matmulPrecision.rawValue, "fp32", "fp32 unless asked")
        let bf16 = try XCTUnwrap(Disttrain.parseAsRoot(args + ["--bf16"]) as? Train)
        XCTAssertEqual(bf16.trainConfig.matmulPrecision.rawValue, "bf16")
    }

    // MARK: --config, in-process

    func writeConfig(_ yaml: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("disttrain-help-\(UUID().uuidString.prefix(8)).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testConfigFileSetsFlagsAndTheCommandLineWins() throws {
        let url = try writeConfig("""
        model: m
        train_file: t.jsonl
        output-dir: o
        learning_rate: 3e-5
        batch-size: 8
        no_dropout: true
        lr-scheduler-type: constant
        """)
        defer { try? FileManager.default.removeItem(at: url) }
        let args = try ConfigFile.expand(["train", "--config", url.path, "--learning-rate", "1e-4"])
        let cmd = try XCTUnwrap(Disttrain.parseAsRoot(args) as? Train)
        XCTAssertEqual(cmd.learningRate, 1e-4, "the command line overrides the file")
        XCTAssertEqual(cmd.batchSize, 8)
        XCTAssertEqual(cmd.trainFile, "t.jsonl")
        XCTAssertTrue(cmd.noDropout)
        XCTAssertEqual(cmd.lrSchedulerType, .constant)
    }

    func testKnownFlagsHaveTheirSwiftTypes() throws {
        let known = try ConfigFile.knownFlags(of: Train.self)
        XCTAssertEqual(known["learning-rate"], .number)
        XCTAssertEqual(known["batch-size"], .integer)
        XCTAssertEqual(known["micro-batch-size"], .integer)
        XCTAssertEqual(known["per-device-train-batch-size"], .integer)
        XCTAssertEqual(known["seed"], .unsignedInteger)
        XCTAssertEqual(known["no-dropout"], .flag)
        XCTAssertEqual(known["model"], .string)
    }

    func testCloseMatches() {
        XCTAssertEqual(ConfigFile.closeMatches("learning-rat", in: ["learning-rate", "seed", "max-length"]), ["learning-rate"])
        XCTAssertEqual(ConfigFile.closeMatches("zzzzzzzzzz", in: ["learning-rate", "seed"]), [])
    }
}
