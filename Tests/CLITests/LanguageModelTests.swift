// Causal-LM fine-tuning of the tiny GPT-2 through the real binary: the loss falls on Hamlet text and on derived
// prompt→response pairs, the saved folder reloads for generation, and `mpirun -n 2` gives the single-process
// per-step losses (normalised by the global count of target tokens) within 1e-5.
import Foundation
import XCTest

final class LanguageModelTests: XCTestCase {
    let model = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm")

    func subset(_ file: String, _ range: Range<Int>, _ dir: URL, _ name: String) throws -> URL {
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/hamlet-lm/\(file)"), encoding: .utf8)
            .split(separator: "\n")
        let url = dir.appendingPathComponent(name)
        try (lines[range].joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func losses(_ out: URL) throws -> [Double] {
        try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    func testTextAndPromptResponseTrainingLossFallsAndRanksAgree() throws {
        let dir = try CLI.tempDir("lm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try subset("lm.jsonl", 0..<12, dir, "text.jsonl")
        let pairs = try subset("pairs.jsonl", 0..<96, dir, "pairs.jsonl")
        func args(_ train: URL, _ out: String) -> [String] {
            ["train", "--model", model.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "10", "--logging-steps", "1", "--learning-rate", "3e-3",
             "--max-length", "32", "--seed", "4", "--threads", "1"]
        }
        for (train, name) in [(text, "text"), (pairs, "pairs")] {
            let single = try CLI.run(args(train, "\(name)-1"), timeout: 240)
            XCTAssertEqual(single.status, 0, single.stderr)
            let two = try CLI.run(args(train, "\(name)-2"), ranks: 2, timeout: 240)
            XCTAssertEqual(two.status, 0, two.stderr)
            let a = try losses(dir.appendingPathComponent("\(name)-1")), b = try losses(dir.appendingPathComponent("\(name)-2"))
            XCTAssertEqual(a.count, 10, name)
            XCTAssertLessThan(a.last!, a.first! - 0.05, "\(name): the loss must fall (\(a.first!) → \(a.last!))")
            for (k, (x, y)) in zip(a, b).enumerated() {
                XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "\(name) step \(k + 1): 1 process vs 2 ranks")
            }
        }
        // The saved folder is a GPT-2 model again: generation runs from it.
        let gen = try CLI.run(["generate", "--model", dir.appendingPathComponent("pairs-1").path, "--prompt", "Hamlet: Who is there?",
                               "--max-new-tokens", "5", "--json"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(gen.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((obj?["new_ids"] as? [Int])?.count, 5, gen.stdout)
    }
}
