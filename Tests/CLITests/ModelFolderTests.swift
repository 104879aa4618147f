// One way into model folders (issue 15, points 1 and 8), through the real binary:
//   - `inspect` describes every supported kind (GPT-2 LM and classifier, BERT/DistilBERT classifiers, a LoRA adapter
//     folder); its parameter count equals the element count of the weights transformers wrote (the fixtures);
//   - a base model's config.json (no id2label/num_labels) works in `inspect` and `bench --config` (no precondition
//     trace: transformers' default of 2 labels);
//   - `predict`/`eval` without --max-length on a model with fewer than 128 positions truncate at its positions (same
//     output as an explicit --max-length 40); only an explicit larger --max-length is a usage error;
//   - the `architectures` field decides the head: BertForQuestionAnswering (and other heads we lack) is refused by
//     name in predict, eval, train, inspect and merge, in one line, instead of running as a sequence classifier.
import Foundation
import XCTest

final class ModelFolderTests: XCTestCase {
    let fixtures = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")
    var dir: URL!

    override func setUpWithError() throws { dir = try CLI.tempDir("mfolder") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ text: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// A copy of fixture `name` whose config.json is changed by `edit`.
    func variant(of name: String, as copy: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
        let out = dir.appendingPathComponent(copy)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent(name), to: out)
        let url = out.appendingPathComponent("config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return out
    }

    func assertOneErrorLine(_ r: RunResult, status: Int32? = nil, mentions needles: [String],
                            file: StaticString = #filePath, line: UInt = #line) {
        if let status { XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", file: file, line: line) }
        XCTAssertTrue(r.status == 1 || r.status == 2, "exit \(r.status): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        XCTAssertEqual(lines.count, 1, "expected one error line: \(r.stderr)", file: file, line: line)
        for n in needles { XCTAssertTrue(r.stderr.contains(n), "stderr lacks '\(n)': \(r.stderr)", file: file, line: line) }
        for bad in ["Fatal error", "Stack dump", "Current stack trace", "Illegal instruction", "Backtrace"] {
            XCTAssertFalse(r.stderr.contains(bad), "crash trace in: \(r.stderr)", file: file, line: line)
        }
    }

    func inspectJSON(_ path: URL, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let r = try CLI.run(["inspect", path.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout, file: file, line: line)
    }

    func testInspectDescribesEveryKind() throws {
        // (fixture, family, kind, labels): the parameter count must equal what transformers saved (no buffers there).
        let cases: [(String, String, String, Int)] = [
            ("gpt2-tiny-lm", "gpt2", "GPT-2 language model", 0),
            ("gpt2-tiny-cls", "gpt2", "GPT-2 sequence classifier", 3),
            ("bert-tiny-cls", "bert", "BERT-family sequence classifier", 3),
            ("distilbert-tiny-cls", "distilbert", "BERT-family sequence classifier", 3),
        ]
        for (name, family, kind, labels) in cases {
            let info = try inspectJSON(fixtures.appendingPathComponent(name))
            XCTAssertEqual((info["architecture"] as? [String: Any])?["family"] as? String, family, name)
            XCTAssertEqual(info["model_kind"] as? String, kind, name)
            XCTAssertEqual((info["labels"] as? [String])?.count, labels, name)
            let weights = try XCTUnwrap(info["weights_file"] as? [String: Any], name)
            // The layout we would build holds exactly the tensors in the file, minus position_ids buffers (I64).
            let file = try CLI.tensors(fixtures.appendingPathComponent(name).appendingPathComponent("model.safetensors"))
            let floats = file.values.reduce(0) { $0 + $1.count }
            XCTAssertEqual(info["parameters"] as? Int, floats, "\(name): \(weights)")
            XCTAssertLessThan(info["parameters_non_embedding"] as? Int ?? .max, floats, name)
        }
        let text = try CLI.run(["inspect", fixtures.appendingPathComponent("gpt2-tiny-lm").path])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("architecture: gpt2, 2 layers, hidden 16"), text.stdout)
        // A PEFT adapter folder (peft wrote it): r and alpha from adapter_config.json, tensors from the weights file.
        let adapterDir = fixtures.appendingPathComponent("gpt2-tiny-lora/adapter-step6")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: adapterDir.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        let info = try inspectJSON(adapterDir)
        let adapter = try XCTUnwrap(info["adapter"] as? [String: Any])
        XCTAssertEqual(adapter["r"] as? Int, config["r"] as? Int)
        let adapterTensors = try CLI.tensors(adapterDir.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertEqual((adapter["weights_file"] as? [String: Any])?["tensors"] as? Int, adapterTensors.count)
    }

    func testBaseModelConfigWithoutLabelsInInspectAndBench() throws {
        // What every base model's config.json looks like: BertModel, no id2label/num_labels.
        let base = try variant(of: "bert-tiny-cls", as: "base") { j in
            j["architectures"] = ["BertModel"]
            j.removeValue(forKey: "id2label"); j.removeValue(forKey: "label2id"); j.removeValue(forKey: "num_labels")
        }
        let info = try inspectJSON(base)
        XCTAssertEqual((info["labels"] as? [String])?.count, 0)
        // The layout without a head: what BertModel holds (the fixture's file minus its 3-label classifier).
        let file = try CLI.tensors(fixtures.appendingPathComponent("bert-tiny-cls/model.safetensors"))
        let head = (file["classifier.weight"]?.count ?? 0) + (file["classifier.bias"]?.count ?? 0)
        XCTAssertGreaterThan(head, 0)
        XCTAssertEqual(info["parameters"] as? Int, file.values.reduce(0) { $0 + $1.count } - head)
        let r = try CLI.run(["bench", "--config", base.appendingPathComponent("config.json").path,
                             "--steps", "1", "--batch-size", "1", "--seq-len", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(line["steps"] as? Int, 1)
        XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
    }

    func testDefaultMaxLengthFollowsTheModelsPositions() throws {
        let input = try write("in.jsonl", (0..<3).map { "{\"text\": \"\(String(repeating: "a long text with many words ", count: 12 + $0))\", \"label\": \"neg\"}" }.joined(separator: "\n") + "\n")
        for name in ["bert-tiny-cls", "gpt2-tiny-cls"] {   // both have 40 positions
            let model = fixtures.appendingPathComponent(name).path
            let implicit = try CLI.run(["predict", "--model", model, "--input", input.path])
            let explicit = try CLI.run(["predict", "--model", model, "--input", input.path, "--max-length", "40"])
            XCTAssertEqual(implicit.status, 0, "\(name): \(implicit.stderr)")
            XCTAssertEqual(explicit.status, 0, "\(name): \(explicit.stderr)")
            XCTAssertEqual(implicit.stdout, explicit.stdout, name)
            XCTAssertEqual(implicit.stdout.split(separator: "\n").count, 3)
            let ev = try CLI.run(["eval", "--model", model, "--eval-file", input.path])
            let ev40 = try CLI.run(["eval", "--model", model, "--eval-file", input.path, "--max-length", "40"])
            XCTAssertEqual(ev.status, 0, "\(name): \(ev.stderr)")
            XCTAssertEqual(ev.stdout, ev40.stdout, name)
            // Only an explicit length above the model's positions is a usage error.
            let tooLong = try CLI.run(["predict", "--model", model, "--input", input.path, "--max-length", "64"])
            assertOneErrorLine(tooLong, status: 2, mentions: ["--max-length 64", "40"])
        }
    }

    func testUnsupportedArchitecturesAreRefusedByName() throws {
        // (BertForTokenClassification and BertForQuestionAnswering are supported since token classification and
        // question answering: NERCLITests, QACLITests.)
        let token = try variant(of: "bert-tiny-cls", as: "mc") { $0["architectures"] = ["BertForMultipleChoice"] }
        let input = try write("in.jsonl", "{\"text\": \"hello there\", \"label\": \"neg\"}\n{\"text\": \"bye\", \"label\": \"pos\"}\n")
        let runs: [[String]] = [
            // (--max-length 40 so that the old code got past the length check and showed the defect.)
            ["predict", "--model", token.path, "--input", input.path, "--max-length", "40"],
            ["eval", "--model", token.path, "--eval-file", input.path, "--max-length", "40"],
            ["train", "--model", token.path, "--train-file", input.path, "--output-dir", dir.appendingPathComponent("out").path, "--max-steps", "1"],
            ["inspect", token.path],
            ["merge", "--model", token.path, "--adapter", fixtures.appendingPathComponent("bert-tiny-lora/adapter-step6").path,
             "--output", dir.appendingPathComponent("merged").path],
        ]
        for args in runs {
            let r = try CLI.run(args)
            assertOneErrorLine(r, mentions: ["BertForMultipleChoice", "not supported", "config.json"])
            XCTAssertTrue(r.stdout.isEmpty, "\(args[0]) printed: \(r.stdout)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("merged").path))
        let gpt2 = try variant(of: "gpt2-tiny-lm", as: "gpt2qa") { $0["architectures"] = ["GPT2ForQuestionAnswering"] }
        assertOneErrorLine(try CLI.run(["generate", "--model", gpt2.path, "--prompt", "Hi"]), mentions: ["GPT2ForQuestionAnswering"])
        let llama = try variant(of: "gpt2-tiny-lm", as: "llama") { $0["model_type"] = "llama"; $0["architectures"] = ["LlamaForCausalLM"] }
        assertOneErrorLine(try CLI.run(["inspect", llama.path]), mentions: ["model_type 'llama' is not supported"])
        // Generating with a BERT classifier names what the folder is.
        assertOneErrorLine(try CLI.run(["generate", "--model", fixtures.appendingPathComponent("bert-tiny-cls").path, "--prompt", "Hi"]),
                           status: 2, mentions: ["BertForSequenceClassification", "GPT-2"])
    }

    func testMergeAGPT2ClassifierAdapterTrainedForOtherLabels() throws {
        // gpt2-tiny-cls has 3 labels (neg/neu/pos); an adapter trained on ham/spam carries a 2-row score head.
        let base = fixtures.appendingPathComponent("gpt2-tiny-cls")
        let data = try write("t.jsonl", (0..<16).map { "{\"text\": \"message number \($0) \(String(repeating: "win ", count: $0 % 3))\", \"label\": \"\($0 % 2 == 0 ? "ham" : "spam")\"}" }.joined(separator: "\n") + "\n")
        let lora = dir.appendingPathComponent("lora"), merged = dir.appendingPathComponent("merged")
        let t = try CLI.run(["train", "--model", base.path, "--train-file", data.path, "--output-dir", lora.path, "--max-steps", "2",
                             "--lora-r", "2", "--max-length", "32", "--batch-size", "8", "--learning-rate", "1e-2", "--threads", "1"], timeout: 240)
        XCTAssertEqual(t.status, 0, t.stderr)
        let m = try CLI.run(["merge", "--model", base.path, "--adapter", lora.path, "--output", merged.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        let info = try inspectJSON(merged)
        XCTAssertEqual(info["labels"] as? [String], ["ham", "spam"])
        // The merged folder predicts what the base with the adapter (unmerged) predicts.
        let a = try CLI.run(["predict", "--model", merged.path, "--input", data.path])
        let b = try CLI.run(["predict", "--model", base.path, "--adapter", lora.path, "--input", data.path])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(b.status, 0, b.stderr)
        let la = a.stdout.split(separator: "\n"), lb = b.stdout.split(separator: "\n")
        XCTAssertEqual(la.count, 16)
        for (x, y) in zip(la, lb) {
            let px = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(x.utf8)) as? [String: Any])
            let py = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(y.utf8)) as? [String: Any])
            let lx = (px["logits"] as? [Double]) ?? [], ly = (py["logits"] as? [Double]) ?? []
            XCTAssertEqual(lx.count, 2)
            // W + s·(BA)ᵀ folded once vs applied as two products: float32 rounding apart.
            for (u, v) in zip(lx, ly) { XCTAssertEqual(u, v, accuracy: 1e-4 * max(1, abs(v))) }
        }
    }
}
