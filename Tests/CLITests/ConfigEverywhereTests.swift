// `--config FILE.yaml` for eval, predict, generate and bench (train's is in ReportTests/HelpTests): the file's keys are
// flag names, and a flag on the command line wins. Each test runs the built binary once with the file and checks both
// a value only the file sets and one the command line overrides; the tiny fixtures keep each run under a second.
import Foundation
import XCTest
@testable import disttrain

final class ConfigEverywhereTests: XCTestCase {
    var dir: URL!
    let fixtures = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")

    override func setUpWithError() throws { dir = try CLI.tempDir("config-everywhere") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func yaml(_ name: String, _ text: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func labelled() throws -> URL {
        let url = dir.appendingPathComponent("data.jsonl")
        let rows = (0..<6).map { $0 % 2 == 0 ? "{\"text\": \"free prize \($0) call now\", \"label\": \"pos\"}" : "{\"text\": \"lunch on day \($0)\", \"label\": \"neg\"}" }
        try (rows.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testEvalReadsItsFlagsFromAConfigFile() throws {
        let data = try labelled()
        let a = dir.appendingPathComponent("a.json"), b = dir.appendingPathComponent("b.json")
        let cfg = try yaml("eval.yaml", """
        model: \(fixtures.appendingPathComponent("bert-tiny-cls").path)
        eval_file: \(data.path)
        max-length: 16
        batch_size: 4
        output: \(a.path)
        """)
        let r = try CLI.run(["eval", "--config", cfg.path, "--output", b.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: b.path), "--output on the command line wins")
        XCTAssertFalse(FileManager.default.fileExists(atPath: a.path))
        // The same numbers as the flags spelled out.
        let flags = try CLI.run(["eval", "--model", fixtures.appendingPathComponent("bert-tiny-cls").path, "--eval-file", data.path,
                                 "--max-length", "16", "--batch-size", "4"])
        XCTAssertEqual(flags.status, 0, flags.stderr)
        XCTAssertEqual(r.stdout, flags.stdout)
        // A key of the wrong type names the file and the key; usage error.
        let bad = try CLI.run(["eval", "--config", try yaml("bad.yaml", "batch-size: many\n").path])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("bad.yaml: key 'batch-size' must be an integer (got 'many')"), bad.stderr)
    }

    func testPredictReadsItsFlagsFromAConfigFile() throws {
        let data = try labelled()
        let cfg = try yaml("predict.yaml", """
        model: \(fixtures.appendingPathComponent("bert-tiny-cls").path)
        input: \(data.path)
        no-logits: true
        max_length: 16
        batch-size: 100
        """)
        let r = try CLI.run(["predict", "--config", cfg.path, "--batch-size", "0"])
        XCTAssertEqual(r.status, 2, "--batch-size 0 on the command line beats the file's 100 and is refused: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("--batch-size must be positive (got 0)"), r.stderr)
        let ok = try CLI.run(["predict", "--config", cfg.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let lines = ok.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertNil(first["logits"], "no-logits: true from the file")
        XCTAssertNotNil(first["probs"])
    }

    func testGenerateReadsItsFlagsFromAConfigFile() throws {
        let cfg = try yaml("generate.yaml", """
        model: \(fixtures.appendingPathComponent("gpt2-tiny-lm").path)
        prompt: "To be"
        max-new-tokens: 5
        json: true
        threads: 1
        """)
        let r = try CLI.run(["generate", "--config", cfg.path, "--max-new-tokens", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(obj["prompt"] as? String, "To be")
        XCTAssertEqual((obj["new_ids"] as? [Int])?.count, 2, "--max-new-tokens 2 on the command line beats the file's 5")
    }

    func testBenchReadsAYAMLConfigAndStillTakesAConfigJSON() throws {
        let shape = fixtures.appendingPathComponent("bert-tiny-cls/config.json")
        let cfg = try yaml("bench.yaml", """
        config: \(shape.path)
        batch-size: 2
        seq_len: 8
        steps: 3
        """)
        let r = try CLI.run(["bench", "--config", cfg.path, "--steps", "1", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(obj["batch"] as? Int, 2)
        XCTAssertEqual(obj["seq"] as? Int, 8)
        XCTAssertEqual(obj["steps"] as? Int, 1, "--steps on the command line beats the file's 3")
        XCTAssertTrue(r.stderr.contains(shape.path), "the shape came from the file's config.json: \(r.stderr)")
        // A config.json given directly keeps its meaning: the model shape.
        let direct = try CLI.run(["bench", "--config", shape.path, "--batch-size", "2", "--seq-len", "8", "--steps", "1"])
        XCTAssertEqual(direct.status, 0, direct.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(direct.stdout.utf8)) as! [String: Any])["flops_per_step"] as? Int,
                       obj["flops_per_step"] as? Int)
        // An unknown key is refused with the closest flag names.
        let bad = try CLI.run(["bench", "--config", try yaml("b.yml", "seq-length: 8\n").path])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("unknown key 'seq-length'; did you mean 'seq-len'?"), bad.stderr)
    }

    /// The value types ConfigFile checks come from the command's properties, option groups included.
    func testKnownFlagsOfTheOtherCommandsHaveTheirTypes() throws {
        let eval = try ConfigFile.knownFlags(of: Eval.self)
        XCTAssertEqual(eval["batch-size"], .integer, "a flag inside an option group")
        XCTAssertEqual(eval["max-length"], .integer)
        XCTAssertEqual(eval["threads"], .integer)
        XCTAssertEqual(eval["lm-per-row"], .flag)
        let gen = try ConfigFile.knownFlags(of: Generate.self)
        XCTAssertEqual(gen["temperature"], .number)
        XCTAssertEqual(gen["seed"], .unsignedInteger)
        XCTAssertEqual(gen["max-new-tokens"], .integer)
        let train = try ConfigFile.knownFlags(of: Train.self)
        XCTAssertEqual(train["lora-alpha"], .number)
        XCTAssertEqual(train["validation-split"], .number)
        XCTAssertEqual(train["quiet"], .flag)
    }
}
