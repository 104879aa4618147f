// `train --task question-answering` end to end with the built binary and real mpirun: a base-encoder fixture gets a
// fresh qa_outputs head and trains a few steps on seeded synthetic SQuAD-style examples (JSONL train, SQuAD JSON eval;
// long contexts run in several windows at --max-length 32 --doc-stride 8); 1 and 2 ranks give the same losses,
// parameters and EM/F1 (1e-5); `eval` reproduces the trainer's numbers at 1 and 2 ranks; `predict` answers
// {"question", "context"} lines in input order with the answer's character offsets; LoRA writes a QUESTION_ANS adapter
// (qa_outputs in modules_to_save) that eval and predict run; bad input is one line naming file:line, exit code 2, and
// no model is written.
import Foundation
import SplitMix
import XCTest

final class QACLITests: XCTestCase {
    let fixture = TestPaths.fixture("bert-tiny-cls")

    /// Seeded examples: a context of filler sentences with one fact "<name> lives in <city>." somewhere in it.
    func examples(_ n: Int, seed: UInt64) -> [(question: String, context: String, answer: String, start: Int)] {
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let names = ["Peter", "Werner", "Ann", "Maria"], cities = ["Paris", "São Paulo", "Dar es Salaam", "Brussels", "Oslo"]
        let filler = ["The weather was mild that year.", "Markets rose on Tuesday.", "Officials of the commission watched closely.",
                      "Nobody expected the rain.", "The river runs north."]
        return (0..<n).map { i in
            let name = pick(names), city = pick(cities)
            var parts = (0..<(i % 4 == 0 ? 6 : 2)).map { _ in pick(filler) }
            let fact = "\(name) lives in \(city)."
            parts.insert(fact, at: Int(rng.next() % UInt64(parts.count + 1)))
            let context = parts.joined(separator: " ")
            let factStart = context.unicodeScalars.count - context.components(separatedBy: fact).dropFirst().joined(separator: fact).unicodeScalars.count - fact.unicodeScalars.count
            let start = factStart + "\(name) lives in ".unicodeScalars.count
            return ("Where does \(name) live?", context, city, start)
        }
    }

    func line(_ e: (question: String, context: String, answer: String, start: Int)) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: ["question": e.question, "context": e.context,
                                                                     "answers": ["text": [e.answer], "answer_start": [e.start]]], options: [.sortedKeys]), as: UTF8.self)
    }

    func workspace() throws -> (dir: URL, train: URL, eval: URL) {
        let dir = try TestPaths.tempDir("qa-cli")
        let train = dir.appendingPathComponent("train.jsonl"), eval = dir.appendingPathComponent("dev.json")
        try (examples(20, seed: 1).map(line).joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        let qas: [[String: Any]] = examples(7, seed: 2).enumerated().map { i, e in
            ["id": "q\(i)", "question": e.question, "answers": [["text": e.answer, "answer_start": e.start]], "context_": e.context]
        }
        let squad: [String: Any] = ["version": "1.1", "data": [["title": "synthetic", "paragraphs": qas.map { q in
            ["context": q["context_"]!, "qas": [q.filter { $0.key != "context_" }]] as [String: Any] }]]]
        try JSONSerialization.data(withJSONObject: squad, options: [.prettyPrinted, .sortedKeys]).write(to: eval)
        return (dir, train, eval)
    }

    func trainArgs(_ w: (dir: URL, train: URL, eval: URL), out: String, model: URL? = nil) -> [String] {
        ["train", "--task", "question-answering", "--model", (model ?? fixture).path, "--train-file", w.train.path, "--eval-file", w.eval.path,
         "--output-dir", w.dir.appendingPathComponent(out).path, "--batch-size", "4", "--max-steps", "6", "--logging-steps", "1",
         "--learning-rate", "1e-3", "--max-length", "32", "--doc-stride", "8", "--seed", "3", "--threads", "1"]
    }

    func json(_ s: String) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any] }
    func number(_ d: [String: Any], _ k: String) -> Double { (d[k] as? NSNumber)?.doubleValue ?? .nan }

    func testTrainOneAndTwoRanksEvalAndPredict() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        // Dropout on (0.1): masks are keyed by sample and token, never by rank.
        let model = try TestPaths.copyFixture("bert-tiny-cls")
        defer { try? FileManager.default.removeItem(at: model) }
        var cfg = try json(String(contentsOf: model.appendingPathComponent("config.json"), encoding: .utf8))
        for k in ["hidden_dropout_prob", "attention_probs_dropout_prob"] { cfg[k] = 0.1 }
        try JSONSerialization.data(withJSONObject: cfg).write(to: model.appendingPathComponent("config.json"))
        var runs: [(losses: [Double], params: [String: [Float]], result: [String: Any])] = []
        for ranks in [nil, 2] as [Int?] {
            let name = ranks == nil ? "one" : "two"
            let r = try CLI.run(trainArgs(w, out: name, model: model), ranks: ranks, timeout: 240)
            XCTAssertEqual(r.status, 0, r.stderr)
            guard r.status == 0 else { return }
            let out = w.dir.appendingPathComponent(name)
            let losses = try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
            XCTAssertEqual(losses.count, 6)
            let result = try json(String(contentsOf: out.appendingPathComponent("eval_results.json"), encoding: .utf8))
            runs.append((losses, try CLI.tensors(out.appendingPathComponent("model.safetensors")), result))
            let saved = try json(String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8))
            XCTAssertEqual(saved["architectures"] as? [String], ["BertForQuestionAnswering"])
            XCTAssertTrue((r.stdout + r.stderr).contains("qa_outputs.weight"), "the fresh head is logged: \(r.stderr)")
            XCTAssertTrue((r.stdout + r.stderr).contains("exact_match"), r.stderr)
        }
        guard runs.count == 2 else { return }
        let (a, b) = (runs[0], runs[1])
        XCTAssertGreaterThan(abs(a.losses.first! - a.losses.last!), 1e-3, "training did not move the loss")
        for (k, (x, y)) in zip(a.losses, b.losses).enumerated() { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "step \(k + 1) loss: 2 ranks vs 1") }
        XCTAssertEqual(a.params.keys.filter { $0.hasPrefix("qa_outputs") }.sorted(), ["qa_outputs.bias", "qa_outputs.weight"])
        XCTAssertNil(a.params.keys.first { $0.contains("pooler") || $0.hasPrefix("classifier") })
        // qa_outputs.bias and the LayerNorm bias below the head have an exactly zero gradient (the span softmax's
        // gradient sums to 0 over positions), so AdamW moves them by m/√v of rounding noise, which differs with the
        // summation order (as in PyTorch; QuestionAnsweringGoldenTests): not compared.
        let noiseOnly: Set<String> = ["qa_outputs.bias", "bert.encoder.layer.1.output.LayerNorm.bias"]
        for (key, ref) in a.params where !noiseOnly.contains(key) {
            let got = b.params[key] ?? []
            XCTAssertEqual(got.count, ref.count, key)
            let worst = zip(ref, got).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, "\(key): 2 ranks vs 1")
        }
        for key in ["eval_loss", "eval_f1", "eval_exact_match", "eval_samples"] {
            XCTAssertFalse(number(a.result, key).isNaN, "\(key) reported")
            XCTAssertEqual(number(b.result, key), number(a.result, key), accuracy: 1e-5, "\(key): 2 ranks vs 1")
        }
        XCTAssertEqual(number(a.result, "eval_samples"), 7)

        // eval reproduces the trainer's numbers, at 1 and 2 ranks
        let folder = w.dir.appendingPathComponent("one")
        let evalArgs = ["eval", "--model", folder.path, "--eval-file", w.eval.path, "--max-length", "32", "--doc-stride", "8"]
        for ranks in [nil, 2] as [Int?] {
            let e = try CLI.run(evalArgs, ranks: ranks, timeout: 120)
            XCTAssertEqual(e.status, 0, e.stderr)
            let m = try json(e.stdout.split(separator: "\n").last.map(String.init) ?? "{}")
            for key in ["eval_loss", "eval_f1", "eval_exact_match"] {
                XCTAssertEqual(number(m, key), number(a.result, key), accuracy: 1e-5, "eval \(key) (ranks \(ranks ?? 1)) vs the trainer's")
            }
        }

        // predict: answers in input order, a blank line keeps its place, start/end are character offsets
        let exs = examples(5, seed: 9)
        let input = w.dir.appendingPathComponent("predict.jsonl")
        var lines = try exs.map { e in String(decoding: try JSONSerialization.data(withJSONObject: ["question": e.question, "context": e.context]), as: UTF8.self) }
        lines.insert("", at: 2)
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", folder.path, "--input", input.path, "--max-length", "32", "--doc-stride", "8", "--batch-size", "3"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let rows = try p.stdout.split(separator: "\n").map { try json(String($0)) }
        XCTAssertEqual(rows.count, exs.count + 1)
        XCTAssertEqual(rows[2]["error"] as? String, "empty input")
        for (row, e) in zip(rows.enumerated().filter { $0.offset != 2 }.map(\.element), exs) {
            XCTAssertEqual(row["question"] as? String, e.question, "input order")
            let s = row["start"] as! Int, en = row["end"] as! Int, sc = Array(e.context.unicodeScalars)
            var sub = ""; sub.unicodeScalars.append(contentsOf: sc[s..<en])
            XCTAssertEqual(row["answer"] as? String, sub, "answer is the context's span [start, end)")
            XCTAssertTrue((0...1).contains(number(row, "score")))
        }
        // SQuAD JSON input: one line per question, ids kept, no blank-line placeholders
        let sq = try CLI.run(["predict", "--model", folder.path, "--input", w.eval.path, "--max-length", "32", "--doc-stride", "8"])
        XCTAssertEqual(sq.status, 0, sq.stderr)
        let ids = try sq.stdout.split(separator: "\n").map { try json(String($0))["id"] as? String }
        XCTAssertEqual(ids, (0..<7).map { "q\($0)" })
    }

    func testLoRAWritesAQuestionAnsweringAdapterThatEvalAndPredictRun() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let r = try CLI.run(trainArgs(w, out: "lora") + ["--lora-r", "4", "--lora-alpha", "8"], timeout: 240)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = w.dir.appendingPathComponent("lora")
        let cfg = try json(String(contentsOf: out.appendingPathComponent("adapter_config.json"), encoding: .utf8))
        XCTAssertEqual(cfg["task_type"] as? String, "QUESTION_ANS")
        XCTAssertEqual(cfg["modules_to_save"] as? [String], ["qa_outputs"])
        let names = try CLI.tensors(out.appendingPathComponent("adapter_model.safetensors")).keys
        XCTAssertTrue(names.contains("base_model.model.qa_outputs.weight"), "\(names.sorted())")
        XCTAssertTrue(names.contains { $0.contains("lora_A") })
        let result = try json(String(contentsOf: out.appendingPathComponent("eval_results.json"), encoding: .utf8))
        let e = try CLI.run(["eval", "--model", fixture.path, "--adapter", out.path, "--eval-file", w.eval.path, "--max-length", "32", "--doc-stride", "8"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let m = try json(e.stdout.split(separator: "\n").last.map(String.init) ?? "{}")
        for key in ["eval_loss", "eval_f1", "eval_exact_match"] {
            XCTAssertEqual(number(m, key), number(result, key), accuracy: 1e-5, "eval with the adapter: \(key) vs the trainer's")
        }
        let input = w.dir.appendingPathComponent("p.jsonl")
        try "{\"question\": \"Where does Ann live?\", \"context\": \"Ann lives in Oslo.\"}\n".write(to: input, atomically: true, encoding: .utf8)
        let p = try CLI.run(["predict", "--model", fixture.path, "--adapter", out.path, "--input", input.path])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertNotNil(try json(p.stdout)["answer"])
        // merge folds the adapter into a BertForQuestionAnswering that answers the same
        let merged = w.dir.appendingPathComponent("merged")
        let mg = try CLI.run(["merge", "--model", fixture.path, "--adapter", out.path, "--output", merged.path])
        XCTAssertEqual(mg.status, 0, mg.stderr)
        let cfg2 = try json(String(contentsOf: merged.appendingPathComponent("config.json"), encoding: .utf8))
        XCTAssertEqual(cfg2["architectures"] as? [String], ["BertForQuestionAnswering"])
        let q = try CLI.run(["predict", "--model", merged.path, "--input", input.path])
        XCTAssertEqual(q.status, 0, q.stderr)
        let a = try json(p.stdout), b = try json(q.stdout)
        XCTAssertEqual(a["answer"] as? String, b["answer"] as? String, "merged model answer = adapter answer")
        XCTAssertEqual(number(a, "score"), number(b, "score"), accuracy: 1e-5)
    }

    /// A run killed during a checkpoint save resumes from the last complete checkpoint and ends with the weights of an
    /// uninterrupted run, bit for bit (dropout on: masks are keyed by step and sample).
    func testCrashAndResumeIsBitwiseExact() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let extra = ["--save-steps", "2", "--eval-steps", "2"]
        let ref = try CLI.run(trainArgs(w, out: "ref") + extra, timeout: 240)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let crashed = try CLI.run(trainArgs(w, out: "k") + extra + ["--fault-inject", "before-latest:4"], timeout: 240)
        XCTAssertNotEqual(crashed.status, 0, "the fault injection did not stop the run")
        let resumed = try CLI.run(trainArgs(w, out: "k") + extra, timeout: 240)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming from checkpoint-"), resumed.stderr)
        XCTAssertEqual(try CLI.tensors(w.dir.appendingPathComponent("k/model.safetensors")),
                       try CLI.tensors(w.dir.appendingPathComponent("ref/model.safetensors")), "resumed run differs from the uninterrupted one")
    }

    func testBadInputIsOneLineNamingFileAndLineExitTwoNothingWritten() throws {
        let w = try workspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let good = try String(contentsOf: w.train, encoding: .utf8)
        let cases: [(String, String, Bool, String)] = [
            ("shifted.jsonl", good + #"{"question": "Q?", "context": "Ann lives in Oslo.", "answers": {"text": ["Oslo"], "answer_start": [12]}}"# + "\n", true,
             "shifted.jsonl:21: question \"20\": answer_start 12 does not match the answer text \"Oslo\""),
            ("empty.jsonl", #"{"question": "Q?", "context": "", "answers": {"text": [], "answer_start": []}}"# + "\n" + good, true, "empty.jsonl:1: question \"0\": the context is empty"),
            ("noanswer.jsonl", #"{"question": "Q?", "context": "Ann lives in Oslo.", "answers": {"text": [], "answer_start": []}}"# + "\n", false,
             "noanswer.jsonl:1: question \"0\" has no answer"),
            ("notjson.jsonl", good + "{\"question\": \n", true, "notjson.jsonl:21:"),
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
        // a --doc-stride that leaves no progress, and a model that cannot answer questions
        let s = try CLI.run(trainArgs(w, out: "stride") + ["--doc-stride", "40"])
        XCTAssertEqual(s.status, 2, s.stderr)
        XCTAssertTrue(s.stderr.contains("--doc-stride 40"), s.stderr)
        var gpt = trainArgs(w, out: "gpt")
        gpt[gpt.firstIndex(of: "--model")! + 1] = TestPaths.fixture("gpt2-tiny-lm").path
        let g = try CLI.run(gpt)
        XCTAssertEqual(g.status, 2, g.stderr)
        XCTAssertTrue(g.stderr.contains("--task question-answering needs a BERT-family encoder"), g.stderr)
    }
}
