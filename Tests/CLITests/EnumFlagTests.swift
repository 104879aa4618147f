// `train`'s enum flags (issue 15 point 5: enum options as ExpressibleByArgument): --task, --tag-scheme, --loss-type,
// --scale-rewards and --advantage parse into Training's enums; a bad value is refused by the parser with the list of
// allowed values; the values work from a --config YAML as on the command line. In-process (`@testable import
// disttrain`), as HelpTests.
import ArgumentParser
import Foundation
import XCTest
@testable import disttrain

final class EnumFlagTests: XCTestCase {
    let required = ["--model", "m", "--train-file", "t.jsonl", "--output-dir", "o"]

    func testABadValueNamesTheAllowedValues() {
        let cases: [(flag: String, bad: String, values: [String])] = [
            ("--task", "clasification", ["auto", "classification", "causal-lm", "reward", "dpo", "token-classification", "question-answering", "grpo"]),
            ("--tag-scheme", "iob3", ["default", "iob1", "iob2", "ioe1", "ioe2", "iobes", "bilou"]),
            ("--loss-type", "hinge", ["sigmoid", "ipo", "robust", "grpo", "dr_grpo", "bnpo", "dapo"]),
            ("--scale-rewards", "prompt", ["group", "batch", "none"]),
            ("--advantage", "ppo", ["grpo", "rloo"]),
        ]
        for c in cases {
            do {
                _ = try Train.parse(required + [c.flag, c.bad])
                XCTFail("\(c.flag) \(c.bad) was accepted")
            } catch {
                let message = Train.message(for: error)
                XCTAssertTrue(message.contains("'\(c.bad)'") && message.contains(c.flag), message)
                // Fewer than six values: 'a', 'b' or 'c'; more: one "  - a" line each (main.swift joins them into the error line).
                for v in c.values { XCTAssertTrue(message.contains("'\(v)'") || message.contains("  - \(v)\n") || message.hasSuffix("  - \(v)"),
                                                  "\(c.flag): '\(v)' not listed in: \(message)") }
                XCTAssertEqual(Train.exitCode(for: error), .validationFailure, message)
            }
        }
    }

    func testValuesParseIntoTrainConfig() throws {
        let t = try Train.parse(required + ["--task", "grpo", "--tag-scheme", "IOB2", "--loss-type", "dr_grpo",
                                            "--scale-rewards", "batch", "--advantage", "rloo"])
        let c = t.trainConfig
        XCTAssertEqual(c.task, .grpo)
        XCTAssertEqual(c.tagScheme, .iob2)   // seqeval's class names in any case
        XCTAssertEqual(c.grpo.lossType, .drGrpo)
        XCTAssertEqual(c.grpo.scaleRewards, .batch)
        XCTAssertEqual(c.grpo.advantage, .rloo)
        let dpo = try Train.parse(required + ["--task", "dpo", "--loss-type", "ipo"]).trainConfig
        XCTAssertEqual(dpo.dpo.lossType, .ipo)
        XCTAssertEqual(try Train.parse(required).trainConfig.task, .auto)
    }

    /// --loss-type takes both tasks' names; which ones is checked against --task, with the messages of before.
    func testLossTypeMustBelongToTheTask() {
        for (args, expected) in [(["--task", "grpo", "--loss-type", "ipo"], "--loss-type 'ipo' is unknown for --task grpo; use one of grpo, dr_grpo, bnpo, dapo"),
                                 (["--task", "dpo", "--loss-type", "bnpo"], "--loss-type 'bnpo' is unknown; use one of sigmoid, ipo, robust")] {
            XCTAssertThrowsError(try Train.parse(required + args)) { error in
                XCTAssertTrue(Train.message(for: error).contains(expected), Train.message(for: error))
            }
        }
    }

    func testEnumValuesFromConfigYAML() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("disttrain-enumflags-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = dir.appendingPathComponent("run.yaml")
        try "task: dpo\ntag_scheme: bilou\nloss-type: robust\n".write(to: yaml, atomically: true, encoding: .utf8)
        let args = try ConfigFile.expand(["train", "--config", yaml.path] + required)
        let c = try Train.parse(Array(args.dropFirst())).trainConfig
        XCTAssertEqual(c.task, .dpo)
        XCTAssertEqual(c.tagScheme, .bilou)
        XCTAssertEqual(c.dpo.lossType, .robust)
        try "task: causal_lm\n".write(to: yaml, atomically: true, encoding: .utf8)
        let bad = try ConfigFile.expand(["train", "--config", yaml.path] + required)
        XCTAssertThrowsError(try Train.parse(Array(bad.dropFirst()))) { error in
            XCTAssertTrue(Train.message(for: error).contains("'causal_lm'") && Train.message(for: error).contains("causal-lm"), Train.message(for: error))
        }
    }

    /// Through the binary: the bad value, every allowed value and the help pointer, on one error line (exit 2).
    func testTheBinaryPrintsOneErrorLine() throws {
        let r = try CLI.run(["train", "--model", "m", "--train-file", "t.jsonl", "--output-dir", "o", "--task", "clasification"])
        XCTAssertEqual(r.status, 2, r.stderr)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.lowercased().hasPrefix("error:") }.count, 1, r.stderr)
        let line = try XCTUnwrap(lines.first { $0.lowercased().hasPrefix("error:") })
        XCTAssertTrue(line.contains("'clasification'") && line.contains("--task"), r.stderr)
        XCTAssertTrue(line.hasSuffix("auto, classification, causal-lm, reward, dpo, token-classification, question-answering, grpo"), r.stderr)
        XCTAssertFalse(r.stderr.contains("  - "), r.stderr)
    }
}
