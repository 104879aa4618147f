// Issue 22's remaining misleading errors and friction in the commands other than `train`'s run folders, through the
// built binary: predict keeps blank lines aligned and counts truncation; tokenize writes what a transformers tokenizer
// call returns (golden from transformers); eval's advice names flags it has, and --data-format exists where the data
// format is read; generate on a classifier and a wrong-base adapter are usage errors (exit 2) with one message;
// --version; help examples survive 80 columns; --threads on eval/predict; merge's example; an early-stopped run rerun
// is finished. Each check is one line on stderr with the right exit code and advice.
// Deliberately not here: run-folder semantics (RunFolderTests), bench flags (BenchFlagsTests).
import ArgumentParser
import Foundation
import XCTest
@testable import disttrain

final class CommandFrictionTests: XCTestCase {
    var dir: URL!
    let fm = FileManager.default
    var bert: String { TestPaths.fixture("bert-tiny-cls").path }
    var gpt2: String { TestPaths.fixture("gpt2-tiny-lm").path }
    var bertAdapter: String { TestPaths.fixture("bert-tiny-lora/adapter-step6").path }
    var gpt2Adapter: String { TestPaths.fixture("gpt2-tiny-lora/adapter-step6").path }

    override func setUpWithError() throws { dir = try CLI.tempDir("friction") }
    override func tearDownWithError() throws { try? fm.removeItem(at: dir) }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// One line on stderr (the `error:` line), the exit code, the advice; no trace or internal names.
    func assertOneLine(_ r: RunResult, status: Int32, contains parts: [String], lacks: [String] = [],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        for p in parts { XCTAssertTrue(r.stderr.contains(p), "'\(p)' in: \(r.stderr)", file: file, line: line) }
        for bad in lacks + ["Fatal error", "Stack dump", "NSCocoaErrorDomain"] {
            XCTAssertFalse(r.stderr.contains(bad), "'\(bad)' in: \(r.stderr)", file: file, line: line)
        }
    }

    /// A flag error from ArgumentParser's validation: exit 2, the message first (then only the help pointer).
    func assertUsage(_ r: RunResult, contains part: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 2, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.split(separator: "\n").first?.contains(part) == true, r.stderr, file: file, line: line)
    }

    func json(_ line: Substring) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    }

    // MARK: 1. predict: blank lines keep their place; truncation is counted

    func testPredictKeepsBlankLinesAlignedAndReportsTruncation() throws {
        let long = Array(repeating: "free prize call now to claim", count: 6).joined(separator: " ")
        let input = try write("in.jsonl", "{\"text\": \"see you at lunch\"}\n\n   \n{\"text\": \"\(long)\"}\n{\"text\": \"ok\"}\n")
        let r = try CLI.run(["predict", "--model", bert, "--input", input.path, "--max-length", "8", "--no-logits", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertEqual(lines.count, 5, "one output line per input line:\n\(r.stdout)")
        for (i, text) in [(0, "see you at lunch"), (3, long), (4, "ok")] {
            XCTAssertEqual(try json(lines[i])["text"] as? String, text, "output line \(i + 1) answers input line \(i + 1)")
            XCTAssertNotNil(try json(lines[i])["label"])
        }
        for i in [1, 2] {
            let o = try json(lines[i])
            XCTAssertEqual(o["error"] as? String, "empty input")
            XCTAssertEqual(o["line"] as? Int, i + 1)
        }
        // One stderr line at the end, with the count and the limit.
        let warnings = r.stderr.split(separator: "\n")
        XCTAssertEqual(warnings.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("1 of 3 inputs longer than 8 tokens was truncated"), r.stderr)
        XCTAssertTrue(r.stderr.contains("raise --max-length"), r.stderr)
        // Nothing cut: nothing said.
        let quiet = try CLI.run(["predict", "--model", bert, "--input", input.path, "--threads", "1"])
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        XCTAssertEqual(quiet.stderr, "")
        // --threads is validated like train's.
        assertUsage(try CLI.run(["predict", "--model", bert, "--input", input.path, "--threads", "0"]),
                    contains: "--threads must be positive")
    }

    // MARK: 2. tokenize: transformers' keys and values

    func testTokenizeWritesWhatATransformersTokenizerCallReturns() throws {
        let fixture = TestPaths.fixture("tokenize-hf")
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("golden.json"))) as! [String: [[String: [Int]]]]
        let input = fixture.appendingPathComponent("input.jsonl").path
        for (name, model) in [("bert-tiny-cls", bert), ("gpt2-tiny-lm", gpt2)] {
            for maxLength in [nil, 6] as [Int?] {
                let key = "\(name)/\(maxLength.map(String.init) ?? "full")"
                let want = try XCTUnwrap(golden[key], key)
                let r = try CLI.run(["tokenize", "--tokenizer", model, "--input", input] + (maxLength.map { ["--max-length", "\($0)"] } ?? []))
                XCTAssertEqual(r.status, 0, r.stderr)
                let lines = r.stdout.split(separator: "\n")
                XCTAssertEqual(lines.count, want.count, key)
                for (line, w) in zip(lines, want) {
                    var got = try json(line)
                    XCTAssertEqual((got.removeValue(forKey: "tokens") as? [String])?.count, w["input_ids"]?.count, "\(key): one token string per id")
                    XCTAssertEqual(Set(got.keys), Set(w.keys), "\(key): transformers returns \(w.keys.sorted())")
                    for (k, v) in w { XCTAssertEqual(got[k] as? [Int], v, "\(key) \(k)") }
                }
            }
        }
        // --max-length too small for the special tokens: flag names, not the library's parameter names.
        assertOneLine(try CLI.run(["tokenize", "--tokenizer", bert, "--input", input, "--max-length", "2"]), status: 2,
                      contains: ["--max-length 2", "3 special tokens", "--max-length 3 or more", "--no-special-tokens"],
                      lacks: ["maxLength", "addSpecialTokens"])
    }

    // MARK: 3. eval's advice; --data-format

    func testEvalAdviceNamesItsOwnFlagsAndDataFormatIsAFlag() throws {
        let unknown = try write("unknown.jsonl", "{\"text\": \"fine\", \"label\": \"pos\"}\n{\"text\": \"meh\", \"label\": \"spam\"}\n")
        assertOneLine(try CLI.run(["eval", "--model", bert, "--eval-file", unknown.path]), status: 1,
                      contains: ["unknown.jsonl:2", "\"spam\"", "id2label"], lacks: ["--labels"])

        // A CSV file whose extension does not say so.
        let csv = try write("data.txt", "text,label\nfine,pos\nbad,neg\nso so,neu\n")
        let noFormat = try CLI.run(["eval", "--model", bert, "--eval-file", csv.path])
        assertOneLine(noFormat, status: 1, contains: ["data.txt", "--data-format jsonl|csv|tsv"], lacks: ["explicitly"])
        let evaluated = try CLI.run(["eval", "--model", bert, "--eval-file", csv.path, "--data-format", "csv", "--threads", "1"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        XCTAssertNotNil(try json(Substring(evaluated.stdout.trimmingCharacters(in: .newlines)))["eval_accuracy"])
        assertUsage(try CLI.run(["eval", "--model", bert, "--eval-file", csv.path, "--threads", "0"]),
                    contains: "--threads must be positive")
        let predicted = try CLI.run(["predict", "--model", bert, "--input", csv.path, "--data-format", "csv"])
        XCTAssertEqual(predicted.status, 0, predicted.stderr)
        XCTAssertEqual(predicted.stdout.split(separator: "\n").count, 3)
        // The LM's data is JSON lines only: a CSV format is refused rather than ignored.
        assertOneLine(try CLI.run(["eval", "--model", gpt2, "--eval-file", csv.path, "--data-format", "csv"]), status: 2,
                      contains: ["--data-format csv", "JSON lines only"])
        // train reads the same flag.
        let trained = try CLI.run(["train", "--model", bert, "--train-file", csv.path, "--data-format", "csv",
                                   "--output-dir", dir.appendingPathComponent("run").path, "--max-steps", "1",
                                   "--batch-size", "2", "--max-length", "16", "--threads", "1", "--no-report"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let untrained = try CLI.run(["train", "--model", bert, "--train-file", csv.path,
                                     "--output-dir", dir.appendingPathComponent("run2").path, "--max-steps", "1"])
        assertOneLine(untrained, status: 1, contains: ["--data-format"])
    }

    // MARK: 4. generate on a classifier

    func testGenerateOnAClassifierIsAUsageErrorWithAdvice() throws {
        assertOneLine(try CLI.run(["generate", "--model", bert, "--prompt", "hello"]), status: 2,
                      contains: ["not a GPT-2 language model", "disttrain predict --model \(bert)"])
        // The mirror case, for reference: predict on a language model.
        assertOneLine(try CLI.run(["predict", "--model", gpt2, "--input", try write("x.jsonl", "{\"text\": \"a\"}\n").path]),
                      status: 2, contains: ["disttrain generate --model"])
    }

    // MARK: 5. a wrong-base adapter: one message, exit 2, in every command

    func testWrongBaseAdapterIsOneMessageAndExit2Everywhere() throws {
        let input = try write("in.jsonl", "{\"text\": \"free prize\", \"label\": \"pos\"}\n")
        let merged = dir.appendingPathComponent("merged")
        let cases: [(String, [String])] = [
            ("predict", ["predict", "--model", bert, "--adapter", gpt2Adapter, "--input", input.path]),
            ("eval", ["eval", "--model", bert, "--adapter", gpt2Adapter, "--eval-file", input.path]),
            ("merge", ["merge", "--model", bert, "--adapter", gpt2Adapter, "--output", merged.path]),
            ("generate", ["generate", "--model", gpt2, "--adapter", bertAdapter, "--prompt", "hi"]),
            ("merge into gpt2", ["merge", "--model", gpt2, "--adapter", bertAdapter, "--output", merged.path]),
        ]
        for (name, args) in cases {
            let r = try CLI.run(args)
            assertOneLine(r, status: 2, contains: ["was trained on another base model than --model",
                                                   "pass the --model the adapter was trained on"])
            XCTAssertFalse(fm.fileExists(atPath: merged.path), "\(name): nothing written")
        }
        // Same widths, one layer more: the adapter covers layers 0-1 only, so it belongs to another model.
        let deeper = try deeperCopy(of: "bert-tiny-cls")
        for args in [["predict", "--model", deeper.path, "--adapter", bertAdapter, "--input", input.path],
                     ["merge", "--model", deeper.path, "--adapter", bertAdapter, "--output", merged.path]] {
            assertOneLine(try CLI.run(args), status: 2, contains: ["was trained on another base model than --model",
                                                                 "encoder.layer.2.attention.self.query.weight", "the base is deeper"])
        }
        XCTAssertFalse(fm.fileExists(atPath: merged.path))
        // The right base still works (and merge says what it wrote).
        let ok = try CLI.run(["merge", "--model", bert, "--adapter", bertAdapter, "--output", merged.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let gen = try CLI.run(["generate", "--model", gpt2, "--adapter", gpt2Adapter, "--prompt", "hi", "--max-new-tokens", "2"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
    }

    /// A copy of a BERT fixture with one more encoder layer (a copy of its last): the same widths, another model.
    func deeperCopy(of name: String) throws -> URL {
        let src = TestPaths.fixture(name), dst = dir.appendingPathComponent("deeper")
        try fm.createDirectory(at: dst, withIntermediateDirectories: true)
        for f in ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try fm.copyItem(at: src.appendingPathComponent(f), to: dst.appendingPathComponent(f))
        }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as! [String: Any]
        let layers = config["num_hidden_layers"] as! Int
        config["num_hidden_layers"] = layers + 1
        try JSONSerialization.data(withJSONObject: config).write(to: dst.appendingPathComponent("config.json"))
        // safetensors: 8-byte header length, JSON header, data; the new layer's tensors are appended to the data.
        let d = try Data(contentsOf: src.appendingPathComponent("model.safetensors"))
        let n = Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: d[8..<(8 + n)]) as! [String: Any]
        var body = Data(d[(8 + n)...])
        let last = ".layer.\(layers - 1).", new = ".layer.\(layers)."
        for (k, v) in header where k.contains(last) {
            var t = v as! [String: Any]
            let offs = t["data_offsets"] as! [Int]
            let start = body.count
            body.append(d[(8 + n + offs[0])..<(8 + n + offs[1])])
            t["data_offsets"] = [start, body.count]
            header[k.replacingOccurrences(of: last, with: new)] = t
        }
        var h = try JSONSerialization.data(withJSONObject: header)
        while h.count % 8 != 0 { h.append(0x20) }
        var out = Data(withUnsafeBytes(of: UInt64(h.count).littleEndian) { Data($0) })
        out.append(h); out.append(body)
        try out.write(to: dst.appendingPathComponent("model.safetensors"))
        return dst
    }

    // MARK: 6. --version

    func testVersion() throws {
        let r = try CLI.run(["--version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), Disttrain.configuration.version)
        XCTAssertTrue(r.stdout.hasPrefix("disttrain "), r.stdout)
    }

    // MARK: 7, 9. help examples at 80 columns; merge's example

    /// Every example line (a command after indentation) of every help text reads the same at 80 columns as unwrapped:
    /// ArgumentParser wraps long lines, which breaks copy-paste.
    func testHelpExamplesAreCopyPasteableAt80Columns() {
        let commands: [any ParsableCommand.Type] = [Disttrain.self, Train.self, Eval.self, Predict.self, Generate.self,
                                                    Inspect.self, Tokenize.self, Merge.self, Bench.self, Plan.self]
        for c in commands {
            let wide = Disttrain.helpMessage(for: c, columns: 1000)
            let narrow = Disttrain.helpMessage(for: c, columns: 80).split(separator: "\n").map(String.init)
            // A command line, or the continuation of one ending in a backslash.
            var examples: [String] = [], continued = false
            for l in wide.split(separator: "\n").map(String.init) {
                let t = l.trimmingCharacters(in: .whitespaces)
                if continued || ["disttrain ", "mpirun ", "cat "].contains(where: { t.hasPrefix($0) }) { examples.append(l) }
                continued = t.hasSuffix("\\")
            }
            XCTAssertFalse(ObjectIdentifier(c) == ObjectIdentifier(Merge.self) && examples.isEmpty, "merge has an example")
            for e in examples {
                XCTAssertTrue(narrow.contains(e), "\(c): example wrapped at 80 columns: \(e)")
                XCTAssertLessThanOrEqual(e.count, 80, "\(c): \(e)")
            }
        }
        let merge = Disttrain.helpMessage(for: Merge.self, columns: 80)
        XCTAssertTrue(merge.contains("--adapter runs/spam-lora \\"), merge)
        XCTAssertFalse(merge.contains("spam-lora/adapter"), "train --lora-r writes the adapter into --output-dir itself")
    }

    // MARK: 10. an early-stopped run, rerun

    func testRerunOfAnEarlyStoppedRunSaysItIsFinished() throws {
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = try write("train.jsonl", lines[0..<16].joined(separator: "\n") + "\n")
        let eval = try write("eval.jsonl", lines[40..<46].joined(separator: "\n") + "\n")
        let out = dir.appendingPathComponent("run")
        // Learning rate 0: the loss never improves, so patience 1 stops the run at step 2 of 8.
        let args = ["train", "--model", bert, "--train-file", train.path, "--eval-file", eval.path, "--output-dir", out.path,
                    "--max-steps", "8", "--batch-size", "4", "--learning-rate", "0", "--eval-steps", "1", "--save-steps", "1",
                    "--early-stopping-patience", "1", "--metric-for-best-model", "loss", "--max-length", "16", "--threads", "1"]
        let first = try CLI.run(args)
        XCTAssertEqual(first.status, 0, first.stderr)
        let results = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("eval_results.json"))) as! [String: Any]
        let stopped = try XCTUnwrap(results["global_step"] as? Int)
        XCTAssertLessThan(stopped, 8, "the run stopped early")
        let before = try snapshot(out)
        let again = try CLI.run(args)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("already finished (early-stopped at step \(stopped))"), again.stderr)
        XCTAssertEqual(again.stdout, "", "no new results line")
        XCTAssertEqual(try snapshot(out), before, "nothing rewritten, nothing left behind")
        // More steps do not reopen it: patience ran out.
        var more = args
        more[more.firstIndex(of: "--max-steps")! + 1] = "12"
        let longer = try CLI.run(more)
        XCTAssertEqual(longer.status, 0, longer.stderr)
        XCTAssertTrue(longer.stderr.contains("already finished (early-stopped at step \(stopped))"), longer.stderr)
        XCTAssertEqual(try snapshot(out), before)
    }

    /// Every file under `url` (relative path → modification date and bytes).
    func snapshot(_ url: URL) throws -> [String: String] {
        var s: [String: String] = [:]
        let e = fm.enumerator(at: url, includingPropertiesForKeys: [.contentModificationDateKey, .isRegularFileKey])!
        for case let f as URL in e {
            let v = try f.resourceValues(forKeys: [.contentModificationDateKey, .isRegularFileKey])
            guard v.isRegularFile == true else { continue }
            s[String(f.path.dropFirst(url.path.count))] = "\(v.contentModificationDate?.timeIntervalSince1970 ?? 0) "
                + (try Data(contentsOf: f)).base64EncodedString()
        }
        return s
    }
}
