// The per-token heads beyond their own suites (NERCLITests, QACLITests): `train --bf16` with the token-classification
// head and with the question-answering head reaches the model (losses differ from fp32) and tracks fp32 within 2 %
// (as BF16TrainTests for sequence classification; skipped without AVX512-BF16); token-classification `predict` keeps
// a blank JSONL input line's place ({"line": N, "error": "empty input"}), as classifier and QA predict do.
import Foundation
import XCTest

final class TokenHeadExtrasTests: XCTestCase {
    let fixture = TestPaths.fixture("bert-tiny-cls")

    func losses(_ out: URL) throws -> [Double] {
        try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
    }

    func bf16TracksFP32(_ args: (String, [String]) -> [String], dir: URL) throws {
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

    func testBF16WithTheTokenClassificationHead() throws {
        let dir = try TestPaths.tempDir("bf16-tok")
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = dir.appendingPathComponent("train.jsonl")
        let rows = (0..<16).map { i in #"{"tokens": ["Ann", "met", "Peter", "in", "Paris", "on", "day", "\#(i)"], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC", "O", "O", "O"]}"# }
        try (rows.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        try bf16TracksFP32({ out, extra in
            ["train", "--task", "token-classification", "--model", self.fixture.path, "--train-file", train.path,
             "--output-dir", dir.appendingPathComponent(out).path, "--batch-size", "8", "--max-steps", "4", "--logging-steps", "1",
             "--learning-rate", "1e-3", "--max-length", "16", "--threads", "1", "--no-dropout", "--no-report"] + extra
        }, dir: dir)
    }

    func testBF16WithTheQuestionAnsweringHead() throws {
        let dir = try TestPaths.tempDir("bf16-qa")
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = dir.appendingPathComponent("train.jsonl")
        let rows = (0..<16).map { i in #"{"question": "Where does Ann live?", "context": "On day \#(i) Ann lives in Paris.", "answers": {"text": ["Paris"], "answer_start": [\#(String(i).count + 21)]}}"# }
        try (rows.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        try bf16TracksFP32({ out, extra in
            ["train", "--task", "question-answering", "--model", self.fixture.path, "--train-file", train.path,
             "--output-dir", dir.appendingPathComponent(out).path, "--batch-size", "8", "--max-steps", "4", "--logging-steps", "1",
             "--learning-rate", "1e-3", "--max-length", "24", "--threads", "1", "--no-dropout", "--no-report"] + extra
        }, dir: dir)
    }

    func testTokenPredictKeepsBlankLinesInPlace() throws {
        let dir = try TestPaths.tempDir("tok-blank")
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = dir.appendingPathComponent("train.jsonl")
        let rows = (0..<8).map { _ in #"{"tokens": ["Ann", "met", "Peter"], "tags": ["B-PER", "O", "B-PER"]}"# }
        try (rows.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("m")
        let r = try CLI.run(["train", "--task", "token-classification", "--model", fixture.path, "--train-file", train.path,
                             "--output-dir", out.path, "--batch-size", "4", "--max-steps", "1", "--max-length", "16", "--threads", "1", "--no-report"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let input = dir.appendingPathComponent("in.jsonl")
        try "{\"text\": \"Ann met Peter\"}\n\n{\"tokens\": [\"Peter\", \"met\"]}\n\n\n{\"text\": \"Ann\"}\n".write(to: input, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", out.path, "--input", input.path])
        XCTAssertEqual(p.status, 0, p.stderr)
        let rows2 = try p.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(rows2.count, 6, "output line N answers input line N")
        XCTAssertEqual(rows2[0]["text"] as? String, "Ann met Peter")
        XCTAssertEqual(rows2[1]["error"] as? String, "empty input"); XCTAssertEqual(rows2[1]["line"] as? Int, 2)
        XCTAssertEqual(rows2[2]["tokens"] as? [String], ["Peter", "met"])
        XCTAssertEqual(rows2[3]["line"] as? Int, 4); XCTAssertEqual(rows2[4]["line"] as? Int, 5)
        XCTAssertEqual(rows2[5]["text"] as? String, "Ann")
    }
}
