// Commands that only read and print run once under mpirun: every output line appears once, not once per rank
// (issue 22, point 7). `eval` shards instead and is tested in InferencePathTests.
import Foundation
import XCTest

final class OutputOnceTests: XCTestCase {
    let fixtures = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")

    func testPredictGenerateTokenizePrintOnceUnderMpirun() throws {
        let dir = try CLI.tempDir("once")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.jsonl")
        let texts = ["free prize call now", "see you at lunch", "win cash", "ok"]
        try (texts.map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let bert = fixtures.appendingPathComponent("bert-tiny-cls").path
        let gpt2 = fixtures.appendingPathComponent("gpt2-tiny-lm").path
        let cases: [(String, [String], Int)] = [
            ("predict", ["predict", "--model", bert, "--input", input.path], texts.count),
            ("tokenize", ["tokenize", "--tokenizer", bert, "--input", input.path], texts.count),
            ("generate", ["generate", "--model", gpt2, "--prompt", "hello", "--max-new-tokens", "3"], -1),
        ]
        for (name, args, expected) in cases {
            let one = try CLI.run(args)
            XCTAssertEqual(one.status, 0, "\(name), 1 process: \(one.stderr)")
            let two = try CLI.run(args, ranks: 2)
            XCTAssertEqual(two.status, 0, "\(name), mpirun -n 2: \(two.stderr)")
            let lines = two.stdout.split(separator: "\n")
            if expected > 0 { XCTAssertEqual(lines.count, expected, "\(name) under mpirun -n 2 printed \(lines.count) lines:\n\(two.stdout)") }
            // The same output as one process, exactly once.
            XCTAssertEqual(two.stdout, one.stdout, "\(name): mpirun -n 2 output differs from 1 process")
        }
    }
}
