// Bad input through the real binary: each case must give one clear line naming the file/line/field and the fix,
// a non-zero exit (2 usage, 1 runtime), no crash trace, and nothing half-written in the output folder.
import Foundation
import XCTest

final class BadInputTests: XCTestCase {
    var dir: URL!
    var model: URL!
    var train: URL!

    override func setUpWithError() throws {
        dir = try CLI.tempDir("bad")
        let fixture = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(f), to: model.appendingPathComponent(f))
        }
        train = dir.appendingPathComponent("train.jsonl")
        try write(train, """
        {"text": "free prize now", "label": "spam"}
        {"text": "see you at lunch", "label": "ham"}
        {"text": "call to claim your reward", "label": "spam"}
        {"text": "running late, sorry", "label": "ham"}

        """)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ url: URL, _ s: String) throws { try s.write(to: url, atomically: true, encoding: .utf8) }

    func runTrain(_ extra: [String] = [], trainFile: URL? = nil, evalFile: URL? = nil, modelDir: URL? = nil) throws -> RunResult {
        var args = ["train", "--model", (modelDir ?? model).path, "--train-file", (trainFile ?? train).path,
                    "--output-dir", dir.appendingPathComponent("out").path, "--batch-size", "2", "--max-steps", "1",
                    "--max-length", "16"]
        if let evalFile { args += ["--eval-file", evalFile.path] }
        return try CLI.run(args + extra)
    }

    /// The common contract of every bad-input case.
    func assertCleanFailure(_ r: RunResult, status: Int32, mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", file: file, line: line)
        for n in needles { XCTAssertTrue(r.stderr.contains(n), "stderr lacks '\(n)': \(r.stderr)", file: file, line: line) }
        for bad in ["Fatal error", "Stack dump", "Current stack trace", "Illegal instruction"] {
            XCTAssertFalse(r.stderr.contains(bad), "crash trace in: \(r.stderr)", file: file, line: line)
        }
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        XCTAssertLessThanOrEqual(lines.count, 3, "one clear line expected, got: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/model.safetensors").path),
                       "nothing may be written on failure", file: file, line: line)
    }

    func testSanityTheWorkspaceTrains() throws {
        let r = try runTrain()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/model.safetensors").path))
    }

    func testMissingTensor() throws {
        // Rewrite the weights without one encoder tensor.
        let t = try CLI.tensors(model.appendingPathComponent("model.safetensors"))
        try writeSafetensors(t.filter { $0.key != "bert.encoder.layer.1.output.dense.weight" }, shapesFrom: model.appendingPathComponent("model.safetensors"))
        assertCleanFailure(try runTrain(), status: 1, mentions: ["model.safetensors", "bert.encoder.layer.1.output.dense.weight", "[16, 48]"])
    }

    func testRenamedTensor() throws {
        let t = try CLI.tensors(model.appendingPathComponent("model.safetensors"))
        var renamed = t
        renamed["bert.encoder.layer.0.attention.self.qurey.weight"] = renamed.removeValue(forKey: "bert.encoder.layer.0.attention.self.query.weight")
        try writeSafetensors(renamed, shapesFrom: model.appendingPathComponent("model.safetensors"),
                             rename: ["bert.encoder.layer.0.attention.self.qurey.weight": "bert.encoder.layer.0.attention.self.query.weight"])
        assertCleanFailure(try runTrain(), status: 1, mentions: ["missing tensor 'bert.encoder.layer.0.attention.self.query.weight'"])
    }

    func testConfigThatDoesNotMatchTheWeights() throws {
        try patchConfig { $0["intermediate_size"] = 64 }
        assertCleanFailure(try runTrain(), status: 1, mentions: ["config.json", "bert.encoder.layer.0.intermediate.dense.weight"])
    }

    func testConfigMissingAField() throws {
        try patchConfig { $0.removeValue(forKey: "num_attention_heads") }
        assertCleanFailure(try runTrain(), status: 1, mentions: ["config.json", "missing field 'num_attention_heads'"])
    }

    func testTruncatedWeights() throws {
        let url = model.appendingPathComponent("model.safetensors")
        let d = try Data(contentsOf: url)
        try d.prefix(d.count / 2).write(to: url)
        assertCleanFailure(try runTrain(), status: 1, mentions: ["model.safetensors", "truncated"])
    }

    func testMissingModelFolder() throws {
        assertCleanFailure(try runTrain(modelDir: dir.appendingPathComponent("nope")), status: 2, mentions: ["nope", "does not exist"])
    }

    func testMalformedJSONLNamesTheLine() throws {
        try write(train, "{\"text\": \"ok\", \"label\": \"ham\"}\n{\"text\": \"broken\", \"label\": \n")
        assertCleanFailure(try runTrain(), status: 1, mentions: ["train.jsonl:2"])
    }

    func testEmptyTrainingSet() throws {
        try write(train, "")
        assertCleanFailure(try runTrain(), status: 1, mentions: ["train.jsonl"])
    }

    func testUnknownLabelInEvalData() throws {
        let eval = dir.appendingPathComponent("eval.jsonl")
        try write(eval, "{\"text\": \"hello\", \"label\": \"ham\"}\n{\"text\": \"what\", \"label\": \"eggs\"}\n")
        assertCleanFailure(try runTrain(evalFile: eval), status: 1, mentions: ["eval.jsonl:2", "eggs"])
    }

    func testBatchSizeZeroIsAUsageError() throws {
        let r = try runTrain(["--batch-size", "0"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--batch-size"), r.stderr)
    }

    func testNegativeLearningRateIsAUsageError() throws {
        let r = try runTrain(["--learning-rate", "-1"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--learning-rate"), r.stderr)
    }

    // MARK: helpers

    func patchConfig(_ f: (inout [String: Any]) -> Void) throws {
        let url = model.appendingPathComponent("config.json")
        var c = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        f(&c)
        try JSONSerialization.data(withJSONObject: c).write(to: url)
    }

    /// Writes F32 tensors with the shapes recorded in `shapesFrom` (a minimal writer, independent of the code under test).
    func writeSafetensors(_ tensors: [String: [Float]], shapesFrom: URL, rename: [String: String] = [:]) throws {
        let d = try Data(contentsOf: shapesFrom)
        let n = Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: d[8..<(8 + n)]) as! [String: Any]
        var newHeader: [String: Any] = [:]
        var body = Data()
        for name in tensors.keys.sorted() {
            let src = rename[name] ?? name
            let shape = (header[src] as! [String: Any])["shape"]!
            let vals = tensors[name]!
            newHeader[name] = ["dtype": "F32", "shape": shape, "data_offsets": [body.count, body.count + vals.count * 4]]
            vals.withUnsafeBytes { body.append(contentsOf: $0) }
        }
        var h = try JSONSerialization.data(withJSONObject: newHeader)
        while h.count % 8 != 0 { h.append(0x20) }
        var out = Data()
        var len = UInt64(h.count)
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(h); out.append(body)
        try out.write(to: shapesFrom)
    }
}
