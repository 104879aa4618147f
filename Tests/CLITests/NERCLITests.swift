// `train --task token-classification` end to end with the built binary and real mpirun: a base-encoder fixture gets a
// fresh token head and trains a few steps on seeded synthetic NER sentences (JSONL train, CoNLL eval, some longer than
// --max-length so they run in windows); 1 and 2 ranks give the same losses, parameters and entity metrics (1e-5);
// `eval` reproduces the trainer's numbers at 1 and 2 ranks; `predict` answers {"text"} and {"tokens"} lines in input
// order; LoRA writes a TOKEN_CLS adapter that predict runs; bad input is one line naming file:line, exit code 2, and
// no model is written.
import Foundation
import SplitMix
import XCTest

final class NERCLITests: XCTestCase {
    let fixture = TestPaths.fixture("bert-tiny-cls")

    /// Seeded sentences "<PER> met <PER> in <LOC> …" with IOB2 tags.
    func sentences(_ n: Int, seed: UInt64) -> [([String], [String])] {
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let people = [["Peter", "Blackburn"], ["Werner", "Zwingmann"], ["Ann"], ["Maria", "de", "Souza"]]
        let places = [["Paris"], ["São", "Paulo"], ["Dar", "es", "Salaam"], ["Brussels"]]
        let orgs = [["Reuters"], ["European", "Commission"], ["Microsoft"]]
        var out: [([String], [String])] = []
        for i in 0..<n {
            var w: [String] = [], t: [String] = []
            func add(_ words: [String], _ type: String?) {
                for (k, x) in words.enumerated() { w.append(x); t.append(type.map { (k == 0 ? "B-" : "I-") + $0 } ?? "O") }
            }
            add(pick(people), "PER"); add(["met"], nil); add(pick(people), "PER"); add(["in"], nil); add(pick(places), "LOC")
            if i % 3 == 0 { add(["while", "officials", "of"], nil); add(pick(orgs), "ORG"); add(["watched", "unbelievably", "closely"], nil) }
            add(["."], nil)
            out.append((w, t))
        }
        return out
    }

    func workspace() throws -> (dir: URL, train: URL, eval: URL) {
        let dir = try TestPaths.tempDir("ner-cli")
        let train = dir.appendingPathComponent("train.jsonl"), eval = dir.appendingPathComponent("eval.conll")
        let lines = try sentences(24, seed: 1).map { w, t in
            String(decoding: try JSONSerialization.data(withJSONObject: ["tokens": w, "tags": t]), as: UTF8.self)
        }
        try (lines.joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        var conll = "-DOCSTART- -X- -X- O\n\n"
        for (w, t) in sentences(9, seed: 2) { conll += zip(w, t).map { "\($0) NN \($1)" }.joined(separator: "\n") + "\n\n" }
        try conll.write(to: eval, atomically: true, encoding: .utf8)
        return (dir, train, eval)
    }

    func trainArgs(_ w: (dir: URL, train: URL, eval: URL), out: String) -> [String] {
        ["train", "--task", "token-classification", "--model", fixture.path, "--train-file", w.train.path, "--eval-file", w.eval.path,
         "--output-dir", w.dir.appendingPathComponent(out).path, "--batch-size", "4", "--max-steps", "6", "--logging-steps", "1",
         "--learning-rate", "1e-3", "--max-length", "12", "--seed", "3", "--threads", "1"]
    }

    func json(_ s: String) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any] }
    func number(_ d: [String: Any], _ k: String) -> Double { (d[k] as? NSNumber)?.doubleValue ?? .nan }

    func testTrainOneAndTwoRanksEvalAndPredict() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        // Dropout on (0.1 everywhere, the token head's included): masks are keyed by sample and token, never by rank.
        let model = try TestPaths.copyFixture("bert-tiny-cls")
        defer { try? FileManager.default.removeItem(at: model) }
        var cfg = try json(String(contentsOf: model.appendingPathComponent("config.json"), encoding: .utf8))
        for k in ["hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"] { cfg[k] = 0.1 }
        try JSONSerialization.data(withJSONObject: cfg).write(to: model.appendingPathComponent("config.json"))
        func trainArgs(_ w: (dir: URL, train: URL, eval: URL), out: String) -> [String] {
            var a = self.trainArgs(w, out: out)
            a[a.firstIndex(of: "--model")! + 1] = model.path
            return a
        }
        var runs: [(losses: [Double], params: [String: [Float]], result: [String: Any])] = []
        for ranks in [nil, 2] as [Int?] {
            let name = ranks == nil ? "one" : "two"
            let r = try CLI.run(trainArgs(w, out: name), ranks: ranks, timeout: 240)
            XCTAssertEqual(r.status, 0, r.stderr)
            guard r.status == 0 else { return }
            let out = w.dir.appendingPathComponent(name)
            let losses = try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
            XCTAssertEqual(losses.count, 6)
            let result = try json(String(contentsOf: out.appendingPathComponent("eval_results.json"), encoding: .utf8))
            runs.append((losses, try CLI.tensors(out.appendingPathComponent("model.safetensors")), result))
            let cfg = try json(String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8))
            XCTAssertEqual(cfg["architectures"] as? [String], ["BertForTokenClassification"])
            XCTAssertEqual((cfg["id2label"] as? [String: String])?.count, 7)
            XCTAssertTrue((r.stdout + r.stderr).contains("classifier.weight"), "the fresh head is logged: \(r.stderr)")
        }
        guard runs.count == 2 else { return }
        let (a, b) = (runs[0], runs[1])
        XCTAssertGreaterThan(abs(a.losses.first! - a.losses.last!), 1e-3, "training did not move the loss")
        for (k, (x, y)) in zip(a.losses, b.losses).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1) loss: 2 ranks vs 1") }
        XCTAssertNil(a.params.keys.first { $0.contains("pooler") })
        for (key, ref) in a.params {
            let got = b.params[key] ?? []
            XCTAssertEqual(got.count, ref.count, key)
            let worst = zip(ref, got).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, "\(key): 2 ranks vs 1")
        }
        for key in ["eval_loss", "eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_tokens"] {
            XCTAssertFalse(number(a.result, key).isNaN, "\(key) reported")
            XCTAssertEqual(number(b.result, key), number(a.result, key), accuracy: 1e-5, "\(key): 2 ranks vs 1")
        }
        XCTAssertNotNil(a.result["eval_PER_f1"], "per-type metrics")

        // eval reproduces the trainer's numbers, at 1 and 2 ranks
        let folder = w.dir.appendingPathComponent("one")
        let evalArgs = ["eval", "--model", folder.path, "--eval-file", w.eval.path, "--max-length", "12"]
        for ranks in [nil, 2] as [Int?] {
            let e = try CLI.run(evalArgs, ranks: ranks, timeout: 120)
            XCTAssertEqual(e.status, 0, e.stderr)
            let m = try json(e.stdout.split(separator: "\n").last.map(String.init) ?? "{}")
            for key in ["eval_loss", "eval_f1", "eval_accuracy"] {
                XCTAssertEqual(number(m, key), number(a.result, key), accuracy: 1e-5, "eval \(key) (ranks \(ranks ?? 1)) vs the trainer's")
            }
        }

        // predict: {"text"} and {"tokens"} lines, answered in input order
        let inputs: [[String: Any]] = [["text": "Peter Blackburn met Ann in São Paulo."], ["tokens": ["Werner", "Zwingmann", "in", "Brussels", "."]],
                                       ["text": "Maria de Souza met Peter Blackburn in Dar es Salaam while officials of the European Commission watched unbelievably closely ."],
                                       ["text": ""]]
        let input = w.dir.appendingPathComponent("predict.jsonl")
        try (inputs.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }.joined(separator: "\n") + "\n")
            .write(to: input, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", folder.path, "--input", input.path, "--max-length", "12", "--batch-size", "2"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let rows = try p.stdout.split(separator: "\n").map { try json(String($0)) }
        XCTAssertEqual(rows.count, inputs.count)
        for (row, inp) in zip(rows, inputs) {
            if let t = inp["text"] as? String {
                XCTAssertEqual(row["text"] as? String, t, "input order")
                XCTAssertEqual((row["tags"] as? [Any])?.count, (row["words"] as? [Any])?.count)
            } else {
                XCTAssertEqual(row["tokens"] as? [String], inp["tokens"] as? [String], "input order")
                XCTAssertEqual((row["tags"] as? [Any])?.count, 5)
            }
            let text = (inp["text"] as? String) ?? (inp["tokens"] as! [String]).joined(separator: " ")
            for e in row["entities"] as? [[String: Any]] ?? [] {
                let s = e["start"] as! Int, en = e["end"] as! Int
                let sc = Array(text.unicodeScalars)
                var sub = ""; sub.unicodeScalars.append(contentsOf: sc[s..<en])
                XCTAssertEqual(e["text"] as? String, sub, "entity text is the span of the input")
                XCTAssertNotNil(e["type"] as? String); XCTAssertTrue((0...1).contains(number(e, "score")))
            }
        }
    }

    func testLoRAWritesATokenClassificationAdapterThatPredictRuns() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let r = try CLI.run(trainArgs(w, out: "lora") + ["--lora-r", "4", "--lora-alpha", "8"], timeout: 240)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = w.dir.appendingPathComponent("lora")
        let cfg = try json(String(contentsOf: out.appendingPathComponent("adapter_config.json"), encoding: .utf8))
        XCTAssertEqual(cfg["task_type"] as? String, "TOKEN_CLS")
        XCTAssertTrue((cfg["modules_to_save"] as? [String] ?? []).contains("classifier"))
        let names = try CLI.tensors(out.appendingPathComponent("adapter_model.safetensors")).keys
        XCTAssertTrue(names.contains("base_model.model.classifier.weight"), "\(names.sorted())")
        let input = w.dir.appendingPathComponent("p.jsonl")
        try "{\"text\": \"Peter met Ann in Paris.\"}\n".write(to: input, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", fixture.path, "--adapter", out.path, "--input", input.path])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertNotNil(try json(p.stdout)["entities"])
        // merge folds the adapter into a BertForTokenClassification that predicts the same
        let merged = w.dir.appendingPathComponent("merged")
        let m = try CLI.run(["merge", "--model", fixture.path, "--adapter", out.path, "--output", merged.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        let cfg2 = try json(String(contentsOf: merged.appendingPathComponent("config.json"), encoding: .utf8))
        XCTAssertEqual(cfg2["architectures"] as? [String], ["BertForTokenClassification"])
        let q = try CLI.run(["predict", "--model", merged.path, "--input", input.path])
        XCTAssertEqual(q.status, 0, q.stderr)
        let a = try json(p.stdout), b = try json(q.stdout)
        XCTAssertEqual(a["tags"] as? [String], b["tags"] as? [String], "merged model tags = adapter tags")
        let sa = (a["entities"] as? [[String: Any]] ?? []).map { number($0, "score") }, sb = (b["entities"] as? [[String: Any]] ?? []).map { number($0, "score") }
        XCTAssertEqual(sa.count, sb.count)
        for (x, y) in zip(sa, sb) { XCTAssertEqual(x, y, accuracy: 1e-5) }
    }

    func testBadInputIsOneLineNamingFileAndLineExitTwoNothingWritten() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let good = try String(contentsOf: w.train, encoding: .utf8)
        let cases: [(String, String, Bool, String)] = [
            ("mismatch.jsonl", good + "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n", true, "mismatch.jsonl:25: 2 tokens but 1 tags"),
            ("empty.jsonl", "{\"tokens\": [], \"tags\": []}\n" + good, true, "empty.jsonl:1: \"tokens\" is empty"),
            ("unknown.conll", "Peter B-PER\nmet O\n\nAnn B-PERSON\n", false, "unknown.conll:4: unknown tag \"B-PERSON\""),
            ("notag.conll", "Peter B-PER\nmet\n", false, "notag.conll:2:"),
        ]
        for (name, text, isTrain, expected) in cases {
            let f = w.dir.appendingPathComponent(name)
            try text.write(to: f, atomically: true, encoding: .utf8)
            var args = trainArgs(w, out: "bad-\(name)")
            args[args.firstIndex(of: isTrain ? "--train-file" : "--eval-file")! + 1] = f.path
            let r = try CLI.run(args)
            XCTAssertEqual(r.status, 2, "\(name): \(r.stderr)")
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            XCTAssertEqual(errors.count, 1, r.stderr)
            XCTAssertTrue(errors.first?.contains(expected) ?? false, "\(name): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: w.dir.appendingPathComponent("bad-\(name)/model.safetensors").path))
        }
        // predict on a line with neither text nor tokens
        let one = try CLI.run(trainArgs(w, out: "ok") + ["--max-steps", "1"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let bad = w.dir.appendingPathComponent("bad-predict.jsonl"), out = w.dir.appendingPathComponent("pred.jsonl")
        try "{\"text\": \"fine\"}\n{\"sentence\": \"x\"}\n".write(to: bad, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", w.dir.appendingPathComponent("ok").path, "--input", bad.path, "--output", out.path])
        XCTAssertEqual(p.status, 2, p.stderr)
        XCTAssertTrue(p.stderr.contains("bad-predict.jsonl:2:"), p.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no half-written predictions")
        // a strict scheme the tags do not fit
        let s = try CLI.run(trainArgs(w, out: "scheme") + ["--tag-scheme", "ioe2"])
        XCTAssertEqual(s.status, 2, s.stderr)
        XCTAssertTrue(s.stderr.contains("--tag-scheme ioe2"), s.stderr)
    }
}
