// `train --bf16` through the real binary on the tiny BERT fixture: the flag reaches the model (the logged losses
// differ from the fp32 run's) and training is the same up to bf16 rounding (losses within 2 %: bf16 keeps 8
// significant bits, u = 2⁻⁸ ≈ 0.4 % per product; over 4 steps of a 2-layer model the loss moves by far less than
// a few u). The same for GPT-2 (the tiny LM fixture). On a CPU without AVX512-BF16 the flag is a usage error (exit 2).
import Foundation
import XCTest

final class BF16TrainTests: XCTestCase {
    func losses(_ out: URL) throws -> [Double] {
        try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    func testBF16TrainingTracksFP32() throws {
        let dir = try CLI.tempDir("bf16")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        let train = dir.appendingPathComponent("train.jsonl")
        let rows = (0..<32).map { i in "{\"text\": \"sample \(i) is \(i % 3 == 0 ? "great fun" : "a dull bore") indeed\", \"label\": \"\(i % 3 == 0 ? "pos" : "neg")\"}" }
        try (rows.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        func args(_ out: String, _ extra: [String]) -> [String] {
            ["train", "--model", model.path, "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path,
             "--batch-size", "8", "--max-steps", "4", "--logging-steps", "1", "--learning-rate", "1e-3", "--max-length", "16",
             "--threads", "1", "--no-dropout", "--no-report"] + extra
        }
        let r32 = try CLI.run(args("fp32", []), timeout: 240)
        XCTAssertEqual(r32.status, 0, r32.stderr)
        let r16 = try CLI.run(args("bf16", ["--bf16"]), timeout: 240)
        if r16.status == 2 && r16.stderr.contains("AVX512-BF16") { throw XCTSkip("this CPU has no AVX512-BF16") }
        XCTAssertEqual(r16.status, 0, r16.stderr)
        let a = try losses(dir.appendingPathComponent("fp32")), b = try losses(dir.appendingPathComponent("bf16"))
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(b.count, 4)
        for (k, (x, y)) in zip(a, b).enumerated() {
            XCTAssertLessThanOrEqual(abs(x - y), 0.02 * abs(x), "step \(k + 1): fp32 loss \(x), bf16 loss \(y)")
        }
        XCTAssertNotEqual(a, b, "--bf16 gave the fp32 losses exactly: the flag did not reach the model")
    }

    /// GPT-2 (the tiny LM fixture): --bf16 reaches the model (the Conv1D products) and the losses track fp32.
    func testBF16GPT2TrainingTracksFP32() throws {
        let dir = try CLI.tempDir("bf16-gpt2")
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = dir.appendingPathComponent("text.jsonl")
        let rows = (0..<16).map { i in "{\"text\": \"to be or not to be, line \(i) of the play, that is the question \(i % 5)\"}" }
        try (rows.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        func args(_ out: String, _ extra: [String]) -> [String] {
            ["train", "--model", CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm").path,
             "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path, "--batch-size", "4",
             "--max-steps", "4", "--logging-steps", "1", "--learning-rate", "1e-3", "--threads", "1", "--no-dropout",
             "--no-report"] + extra
        }
        let r32 = try CLI.run(args("fp32", []), timeout: 240)
        XCTAssertEqual(r32.status, 0, r32.stderr)
        let r16 = try CLI.run(args("bf16", ["--bf16"]), timeout: 240)
        if r16.status == 2 && r16.stderr.contains("AVX512-BF16") { throw XCTSkip("this CPU has no AVX512-BF16") }
        XCTAssertEqual(r16.status, 0, r16.stderr)
        let a = try losses(dir.appendingPathComponent("fp32")), b = try losses(dir.appendingPathComponent("bf16"))
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(b.count, 4)
        for (k, (x, y)) in zip(a, b).enumerated() {
            XCTAssertLessThanOrEqual(abs(x - y), 0.02 * abs(x), "step \(k + 1): fp32 loss \(x), bf16 loss \(y)")
        }
        XCTAssertNotEqual(a, b, "--bf16 gave the fp32 losses exactly: the flag did not reach the model")
    }
}
