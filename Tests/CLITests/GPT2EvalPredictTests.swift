// `disttrain eval` and `predict` on GPT-2 folders saved by `disttrain train`, through the real binary:
//   - a GPT2LMHeadModel folder: eval's eval_loss/eval_perplexity/eval_tokens equal the trainer's final evaluation
//     (eval_results.json) within 1e-5, at another batch size, and under `mpirun -n 2`;
//   - a GPT2ForSequenceClassification folder: eval's metrics equal the trainer's, 2 ranks equal 1 process, and
//     predict's labels are the arg-max of its logits and reproduce eval_accuracy;
//   - predict on an LM folder, a prompt→response row missing a field, a row longer than n_positions (truncated and
//     counted, not an error), a GPT-2 classifier without pad_token_id: exit code and first stderr line.
import Foundation
import XCTest

final class GPT2EvalPredictTests: XCTestCase {
    let fixtures = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")
    var dir: URL!

    override func setUpWithError() throws { dir = try CLI.tempDir("g2ep") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Lines `range` of a repository data file, written to `name` in the temp folder.
    func subset(_ file: String, _ range: Range<Int>, _ name: String) throws -> URL {
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/\(file)"), encoding: .utf8).split(separator: "\n")
        return try write(name, lines[range].joined(separator: "\n") + "\n")
    }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func json(_ s: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let obj = try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any]
        XCTAssertNotNil(obj, "not one JSON object: \(s)", file: file, line: line)
        return obj ?? [:]
    }

    func number(_ obj: [String: Any], _ key: String) -> Double { (obj[key] as? NSNumber)?.doubleValue ?? .nan }

    func trainArgs(_ model: URL, _ train: URL, _ eval: URL, _ out: String) -> [String] {
        ["train", "--model", model.path, "--train-file", train.path, "--eval-file", eval.path,
         "--output-dir", dir.appendingPathComponent(out).path, "--batch-size", "8", "--max-steps", "4",
         "--learning-rate", "3e-3", "--max-length", "32", "--seed", "5", "--threads", "1"]
    }

    /// Trains `model` for 4 steps and returns the saved folder and the trainer's eval_results.json.
    func trainTiny(_ model: URL, _ train: URL, _ eval: URL, _ out: String) throws -> (URL, [String: Any]) {
        let r = try CLI.run(trainArgs(model, train, eval, out), timeout: 240)
        XCTAssertEqual(r.status, 0, r.stderr)
        let folder = dir.appendingPathComponent(out)
        let results = try json(String(contentsOf: folder.appendingPathComponent("eval_results.json"), encoding: .utf8))
        return (folder, results)
    }

    /// Relative agreement within 1e-5 (the numbers are sums of float losses in different orders).
    func assertClose(_ a: Double, _ b: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(a.isFinite && b.isFinite, "\(what): \(a) vs \(b)", file: file, line: line)
        XCTAssertEqual(a, b, accuracy: 1e-5 * max(abs(a), abs(b), 1e-3), what, file: file, line: line)
    }

    func testLanguageModelEvalEqualsTheTrainersEvaluationAtAnyBatchAndRankCount() throws {
        let lm = fixtures.appendingPathComponent("gpt2-tiny-lm")
        // Text (packed blocks) and prompt→response pairs (prompt tokens masked): both data kinds of the trainer.
        let cases = [(try subset("hamlet-lm/lm.jsonl", 0..<10, "text.jsonl"), try subset("hamlet-lm/lm.jsonl", 10..<16, "text-eval.jsonl"), "text"),
                     (try subset("hamlet-lm/pairs.jsonl", 0..<48, "pairs.jsonl"), try subset("hamlet-lm/pairs.jsonl", 48..<72, "pairs-eval.jsonl"), "pairs")]
        for (train, eval, name) in cases {
            let (folder, trained) = try trainTiny(lm, train, eval, name)
            let args = ["eval", "--model", folder.path, "--eval-file", eval.path, "--max-length", "32"]
            let one = try CLI.run(args)
            XCTAssertEqual(one.status, 0, one.stderr)
            let a = try json(one.stdout)
            for key in ["eval_loss", "eval_perplexity"] { assertClose(number(a, key), number(trained, key), "\(name) \(key): eval vs train") }
            XCTAssertEqual(number(a, "eval_tokens"), number(trained, "eval_tokens"), "\(name): counted tokens")
            XCTAssertEqual(number(a, "eval_samples"), number(trained, "eval_samples"), "\(name): examples")
            XCTAssertGreaterThan(number(a, "eval_tokens"), 0)
            assertClose(number(a, "eval_perplexity"), Foundation.exp(number(a, "eval_loss")), "\(name): perplexity = exp(loss)")
            let small = try CLI.run(args + ["--batch-size", "3"])
            XCTAssertEqual(small.status, 0, small.stderr)
            assertClose(number(try json(small.stdout), "eval_loss"), number(a, "eval_loss"), "\(name): batch 3 vs 32")
            let two = try CLI.run(args, ranks: 2, timeout: 180)
            XCTAssertEqual(two.status, 0, two.stderr)
            let b = try json(two.stdout)   // one line, from rank 0
            for key in ["eval_loss", "eval_perplexity"] { assertClose(number(b, key), number(a, key), "\(name) \(key): 2 ranks vs 1") }
            XCTAssertEqual(number(b, "eval_tokens"), number(a, "eval_tokens"), "\(name): 2 ranks count every token once")
        }
    }

    func testClassifierEvalAndPredictMatchTheTrainer() throws {
        let cls = fixtures.appendingPathComponent("gpt2-tiny-cls")
        let train = try subset("sms-spam/train.jsonl", 0..<48, "train.jsonl")
        let eval = try subset("sms-spam/test.jsonl", 0..<30, "eval.jsonl")
        let (folder, trained) = try trainTiny(cls, train, eval, "cls")
        let args = ["eval", "--model", folder.path, "--eval-file", eval.path, "--max-length", "32"]
        let one = try CLI.run(args)
        XCTAssertEqual(one.status, 0, one.stderr)
        let a = try json(one.stdout)
        for key in ["eval_loss", "eval_accuracy", "eval_macro_f1"] { assertClose(number(a, key), number(trained, key), "\(key): eval vs train") }
        let matrix = a["eval_confusion_matrix"] as? [[Int]]
        XCTAssertEqual(matrix, trained["eval_confusion_matrix"] as? [[Int]])
        XCTAssertEqual(matrix?.joined().reduce(0, +), 30)
        let two = try CLI.run(args, ranks: 2, timeout: 180)
        XCTAssertEqual(two.status, 0, two.stderr)
        let b = try json(two.stdout)
        assertClose(number(b, "eval_loss"), number(a, "eval_loss"), "eval_loss: 2 ranks vs 1")
        XCTAssertEqual(b["eval_confusion_matrix"] as? [[Int]], matrix, "2 ranks vs 1")

        let pred = try CLI.run(["predict", "--model", folder.path, "--input", eval.path, "--max-length", "32"])
        XCTAssertEqual(pred.status, 0, pred.stderr)
        let rows = try pred.stdout.split(separator: "\n").map { try json(String($0)) }
        let truth = try String(contentsOf: eval, encoding: .utf8).split(separator: "\n").map { try json(String($0)) }
        XCTAssertEqual(rows.count, truth.count)
        var correct = 0
        for (row, t) in zip(rows, truth) {
            XCTAssertEqual(row["text"] as? String, t["text"] as? String, "predictions come back in input order")
            let logits = (row["logits"] as? [Double]) ?? [], probs = (row["probs"] as? [String: Double]) ?? [:]
            XCTAssertEqual(logits.count, 2)
            XCTAssertEqual(Set(probs.keys), ["ham", "spam"])
            XCTAssertEqual(probs.values.reduce(0, +), 1, accuracy: 1e-9)
            let label = row["label"] as? String
            XCTAssertEqual(label, logits[0] >= logits[1] ? "ham" : "spam", "label is the arg-max (id2label order ham, spam)")
            if label == t["label"] as? String { correct += 1 }
        }
        assertClose(Double(correct) / Double(rows.count), number(a, "eval_accuracy"), "predict's labels give eval's accuracy")
    }

    // MARK: bad input

    /// Exit `status`, and the first non-empty stderr line mentions every needle; no crash trace.
    func assertFirstLine(_ r: RunResult, status: Int32, mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", file: file, line: line)
        let first = r.stderr.split(separator: "\n").first { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(String.init) ?? ""
        for n in needles { XCTAssertTrue(first.contains(n), "first stderr line lacks '\(n)': \(r.stderr)", file: file, line: line) }
        for bad in ["Fatal error", "Stack dump", "Current stack trace", "Illegal instruction"] {
            XCTAssertFalse(r.stderr.contains(bad), "crash trace in: \(r.stderr)", file: file, line: line)
        }
    }

    func testPredictOnALanguageModelPointsToGenerate() throws {
        let input = try write("in.jsonl", "{\"text\": \"To be\"}\n")
        let r = try CLI.run(["predict", "--model", fixtures.appendingPathComponent("gpt2-tiny-lm").path, "--input", input.path])
        assertFirstLine(r, status: 2, mentions: ["config.json", "GPT2LMHeadModel", "not a classifier", "disttrain generate", "disttrain eval"])
        XCTAssertTrue(r.stdout.isEmpty, r.stdout)
    }

    func testPromptResponseRowMissingAFieldNamesTheLine() throws {
        let lm = fixtures.appendingPathComponent("gpt2-tiny-lm")
        let bad = try write("pairs.jsonl", "{\"prompt\": \"Who is there?\", \"response\": \"Nay, answer me.\"}\n{\"prompt\": \"Long live the king!\"}\n")
        let out = dir.appendingPathComponent("out")
        let t = try CLI.run(["train", "--model", lm.path, "--train-file", bad.path, "--output-dir", out.path,
                             "--batch-size", "1", "--max-steps", "1", "--max-length", "32"])
        assertFirstLine(t, status: 1, mentions: ["pairs.jsonl:2", "missing field \"response\"", "{\"prompt\": \"...\", \"response\": \"...\"}"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        // The first row decides the format: one without "response" is a prompt→response row missing it, not a text row.
        let first = try write("first.jsonl", "{\"prompt\": \"Who is there?\"}\n")
        let e = try CLI.run(["eval", "--model", lm.path, "--eval-file", first.path])
        assertFirstLine(e, status: 1, mentions: ["first.jsonl:1", "missing field \"response\""])
    }

    /// Rows longer than n_positions (40 in the tiny model) or --max-length are truncated and counted, not an error: one
    /// 100-token row scores exactly 39 next-token targets, and both `train` and `eval` say what they cut.
    func testRowsLongerThanThePositionsAreTruncatedAndCounted() throws {
        let lm = fixtures.appendingPathComponent("gpt2-tiny-lm")
        let long = try write("long.jsonl", "{\"text\": \"\(String(repeating: " the", count: 100))\"}\n")
        let e = try CLI.run(["eval", "--model", lm.path, "--eval-file", long.path, "--lm-per-row", "--max-length", "128"])
        assertFirstLine(e, status: 0, mentions: ["warning:", "long.jsonl", "1 rows longer than 40 tokens", "truncated"])
        XCTAssertEqual(number(try json(e.stdout), "eval_tokens"), 39, "n_positions 40 → 39 counted targets")
        // Below n_positions, --max-length is the limit.
        let short = try CLI.run(["eval", "--model", lm.path, "--eval-file", long.path, "--lm-per-row", "--max-length", "16"])
        assertFirstLine(short, status: 0, mentions: ["1 rows longer than 16 tokens"])
        XCTAssertEqual(number(try json(short.stdout), "eval_tokens"), 15)
        let t = try CLI.run(["train", "--model", lm.path, "--train-file", long.path, "--output-dir", dir.appendingPathComponent("out").path,
                             "--batch-size", "1", "--max-steps", "1", "--max-length", "128", "--lm-per-row", "--threads", "1"])
        XCTAssertEqual(t.status, 0, t.stderr)
        // n_positions (40) is the limit, not --max-length 128: the hint must not say "raise --max-length".
        XCTAssertTrue(t.stderr.contains("1 example longer than the model's positions (n_positions) truncated at the end"), t.stderr)
        XCTAssertFalse(t.stderr.contains("raise --max-length"), t.stderr)
    }

    func testGPT2ClassifierWithoutAPadTokenIsAClearError() throws {
        let src = fixtures.appendingPathComponent("gpt2-tiny-cls")
        let model = dir.appendingPathComponent("nopad")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: model.appendingPathComponent(f))
        }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as! [String: Any]
        config.removeValue(forKey: "pad_token_id")
        try JSONSerialization.data(withJSONObject: config).write(to: model.appendingPathComponent("config.json"))
        let data = try write("data.jsonl", "{\"text\": \"great\", \"label\": \"pos\"}\n{\"text\": \"awful\", \"label\": \"neg\"}\n")
        let needles = ["nopad/config.json", "pad_token_id", "\"pad_token_id\": 50256"]
        let t = try CLI.run(["train", "--model", model.path, "--train-file", data.path, "--output-dir", dir.appendingPathComponent("out").path,
                             "--batch-size", "2", "--max-steps", "1", "--max-length", "16"])
        assertFirstLine(t, status: 1, mentions: needles)
        let p = try CLI.run(["predict", "--model", model.path, "--input", data.path, "--max-length", "16"])
        assertFirstLine(p, status: 1, mentions: needles)
        let e = try CLI.run(["eval", "--model", model.path, "--eval-file", data.path, "--max-length", "16"])
        assertFirstLine(e, status: 1, mentions: needles)
    }
}
