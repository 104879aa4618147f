// Question answering's data path against the references (Fixtures/qa-golden, scripts/goldens/qa_goldens.py):
// run_qa's windowing (the fast tokenizer's only_second truncation with stride and overflow, offsets, the
// prepare_train_features targets) on hand-made examples (long context, answer across a window boundary, no answer,
// accents), run_qa's postprocess_qa_predictions (v1 and v2, n-best, max answer length, thresholds) on seeded logits,
// and the official SQuAD normalisation / EM / F1 (transformers 4's squad_metrics, the v2.0 script). Plus bad input:
// each a one-line error naming file:line, exit code 2.
import Foundation
import XCTest
import Tokenizers
@testable import Training

final class QuestionAnsweringDataTests: XCTestCase {
    func golden(_ name: String) throws -> [String: Any] {
        let url = TestPaths.fixture("qa-golden").appendingPathComponent(name)
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    func examples(_ w: [String: Any]) -> [QAExample] {
        (w["examples"] as! [[String: Any]]).enumerated().map { i, e in
            let a = e["answers"] as! [String: Any]
            let answers = zip(a["text"] as! [String], a["answer_start"] as! [Int]).map { QAAnswer(text: $0, start: $1) }
            return QAExample(id: e["id"] as! String, question: e["question"] as! String, context: e["context"] as! String, answers: answers, line: i + 1)
        }
    }

    func testWindowsMatchTransformers() throws {
        let w = try golden("windows.json")
        let tk = try loadTokenizer(directory: TestPaths.fixture("bert-tiny-cls"))
        let (cls, sep) = try QAWindows.specials(tk, path: "bert-tiny-cls")
        let exs = examples(w)
        for size in w["sizes"] as! [[String: Any]] {
            let L = size["max_length"] as! Int, S = size["stride"] as! Int
            let ours = try exs.enumerated().flatMap { i, e in try QAWindows.encode(e, index: i, tokenizer: tk, cls: cls, sep: sep, maxLength: L, stride: S) }
            let ref = size["features"] as! [[String: Any]]
            XCTAssertEqual(ours.count, ref.count, "windows at max_length \(L)")
            for (k, (o, r)) in zip(ours, ref).enumerated() {
                let tag = "L\(L) feature \(k) (\(r["example_id"] as! String))"
                XCTAssertEqual(exs[o.example].id, r["example_id"] as? String, tag)
                XCTAssertEqual(o.ids.map(Int.init), r["input_ids"] as! [Int], "\(tag) input_ids")
                XCTAssertEqual(o.typeIds.map(Int.init), r["token_type_ids"] as! [Int], "\(tag) token_type_ids")
                let offs = r["offset_mapping"] as! [Any]
                for p in 0..<offs.count {
                    let want = (offs[p] as? [Int]).map { "\($0[0])-\($0[1])" } ?? "none"
                    let got = o.offset(at: p).map { "\($0.0)-\($0.1)" } ?? "none"
                    XCTAssertEqual(got, want, "\(tag) offset at \(p)")
                }
                XCTAssertEqual(o.startPosition, r["start_position"] as? Int, "\(tag) start_position")
                XCTAssertEqual(o.endPosition, r["end_position"] as? Int, "\(tag) end_position")
            }
        }
    }

    func testPostprocessMatchesRunQA() throws {
        let w = try golden("windows.json"), p = try golden("postprocess.json")
        let exs = examples(w)
        let sizes = w["sizes"] as! [[String: Any]], logits = p["logits"] as! [[String: Any]]
        var checked = 0
        for c in p["cases"] as! [[String: Any]] {
            let L = c["max_length"] as! Int
            let si = sizes.firstIndex { $0["max_length"] as! Int == L }!
            let feats = sizes[si]["features"] as! [[String: Any]]
            let starts = logits[si]["start"] as! [[Double]], ends = logits[si]["end"] as! [[Double]]
            let settings = QAPostprocessSettings(nBestSize: c["n_best_size"] as! Int, maxAnswerLength: c["max_answer_length"] as! Int,
                                                 version2WithNegative: c["version_2_with_negative"] as! Bool,
                                                 nullScoreDiffThreshold: c["null_score_diff_threshold"] as! Double)
            let preds = c["predictions"] as! [String: String]
            let nbest = c["nbest"] as! [String: [[String: Any]]]
            let diffs = c["null_score_diff"] as! [String: Double]
            for e in exs {
                let windows = feats.indices.filter { feats[$0]["example_id"] as! String == e.id }.map { f in
                    QAPostprocess.WindowLogits(start: starts[f].map(Float.init), end: ends[f].map(Float.init),
                                               offsets: (feats[f]["offset_mapping"] as! [Any]).map { ($0 as? [Int]).map { ($0[0], $0[1]) } })
                }
                let ours = QAPostprocess.predict(context: e.context, windows: windows, settings: settings)
                let tag = "\(e.id) L\(L) v2 \(settings.version2WithNegative) nbest \(settings.nBestSize) max \(settings.maxAnswerLength) thr \(settings.nullScoreDiffThreshold)"
                XCTAssertEqual(ours.text, preds[e.id], tag)
                if let entry = nbest[e.id]!.first(where: { $0["text"] as? String == ours.text }) {
                    XCTAssertEqual(ours.score, (entry["probability"] as! NSNumber).doubleValue, accuracy: 1e-6, "\(tag) probability")
                } else {
                    XCTFail("\(tag): our answer \(ours.text) is not in run_qa's n-best")
                }
                if settings.version2WithNegative {
                    XCTAssertEqual(ours.nullScoreDiff ?? .nan, diffs[e.id]!, accuracy: 1e-5, "\(tag) null score diff")
                }
                if !ours.text.isEmpty && ours.text != "empty" {
                    let sc = Array(e.context.unicodeScalars)
                    var t = ""; t.unicodeScalars.append(contentsOf: sc[ours.start..<ours.end])
                    XCTAssertEqual(t, ours.text, "\(tag): start/end are the answer's character offsets")
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 80)
    }

    func testSquadNormalisationAndScores() throws {
        let s = try golden("squad.json")
        for n in s["normalize"] as! [[String: String]] {
            XCTAssertEqual(SquadMetric.normalize(n["s"]!), n["normalized"]!, "normalize_answer(\(n["s"]!.debugDescription))")
        }
        for c in s["cases"] as! [[String: Any]] {
            let pred = c["prediction"] as! String, golds = c["golds"] as! [String]
            let (em, f1) = SquadMetric.score(pred, golds: golds, version2: true)
            XCTAssertEqual(em, (c["exact"] as! NSNumber).doubleValue, "exact \(pred) vs \(golds)")
            XCTAssertEqual(f1, (c["f1"] as! NSNumber).doubleValue, accuracy: 1e-12, "f1 \(pred) vs \(golds)")
        }
        // v1.1 differs only for empty token lists: F1 0 (v2: 1 when both are empty).
        XCTAssertEqual(SquadMetric.f1("the", "a", version2: false), 0)
        XCTAssertEqual(SquadMetric.f1("the", "a", version2: true), 1)
    }

    // MARK: bad input

    func write(_ text: String, _ name: String = "qa.jsonl") throws -> URL {
        let d = try TestPaths.tempDir("qa-data")
        let u = d.appendingPathComponent(name)
        try Data(text.utf8).write(to: u)
        return u
    }

    func assertFails(_ text: String, name: String = "qa.jsonl", line: Int, _ fragments: [String], requireAnswers: Bool = false,
                     file: StaticString = #filePath, testLine: UInt = #line) throws {
        let url = try write(text, name)
        do {
            _ = try QAData.load(url, requireAnswers: requireAnswers)
            XCTFail("no error", file: file, line: testLine)
        } catch let e as TrainingError {
            XCTAssertEqual(e.exitCode, 2, file: file, line: testLine)
            XCTAssertTrue(e.message.hasPrefix("\(url.relativePath):\(line): "), "location in: \(e.message)", file: file, line: testLine)
            XCTAssertFalse(e.message.contains("\n"), file: file, line: testLine)
            for f in fragments { XCTAssertTrue(e.message.contains(f), "missing \(f) in: \(e.message)", file: file, line: testLine) }
        }
    }

    func testBadInputNamesFileAndLine() throws {
        let ok = #"{"question": "Q?", "context": "The cat sat.", "answers": {"text": ["cat"], "answer_start": [4]}}"#
        try assertFails(ok + "\n" + #"{"question": "Q?", "context": "The cat sat.", "answers": {"text": ["cat"], "answer_start": [3]}}"#,
                        line: 2, ["answer_start 3 does not match the answer text \"cat\"", "\" ca\""])
        try assertFails(ok + "\n\n" + #"{"question": "Q?", "context": "  ", "answers": {"text": [], "answer_start": []}}"#,
                        line: 3, ["the context is empty"])
        try assertFails(#"{"question": "Q?", "context": "The cat.", "answers": {"text": ["cat", "The"], "answer_start": [4]}}"#,
                        line: 1, ["2 answer texts but 1 answer_start"])
        try assertFails(#"{"question": "Q?", "context": "The cat."}"#, line: 1, ["missing \"answers\""])
        try assertFails(#"{"context": "The cat.", "answers": {"text": [], "answer_start": []}}"#, line: 1, ["missing \"question\""])
        try assertFails(#"{"question": "Q?", "context": "The cat.", "answers": {"text": ["cat"], "answer_start": [40]}}"#, line: 1, ["outside the context"])
        try assertFails(#"{"question": "Q?", "context": "The cat.", "answers": {"text": [], "answer_start": []}}"#, line: 1,
                        ["has no answer", "--version-2-with-negative"], requireAnswers: true)
        let squad = """
        {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The cat sat.", "qas": [
          {"id": "q1", "question": "Who?", "answers": [{"text": "cat", "answer_start": 4}]},
          {"id": "q2", "question": "What?", "answers": [{"text": "sat", "answer_start": 9}]}
        ]}]}]}
        """
        try assertFails(squad, name: "squad.json", line: 3, ["question \"q2\"", "answer_start 9"])
        // The good SQuAD file loads, with the lines of its questions.
        let good = try QAData.load(try write(squad.replacingOccurrences(of: "\"answer_start\": 9", with: "\"answer_start\": 8"), "squad.json")).examples
        XCTAssertEqual(good.map(\.id), ["q1", "q2"])
        XCTAssertEqual(good.map(\.line), [2, 3])
        XCTAssertEqual(good[1].answers, [QAAnswer(text: "sat", start: 8)])
    }

    func testDocStrideMustLeaveProgress() throws {
        let tk = try loadTokenizer(directory: TestPaths.fixture("bert-tiny-cls"))
        let (cls, sep) = try QAWindows.specials(tk, path: "x")
        let e = QAExample(id: "a", question: "Who?", context: String(repeating: "word ", count: 80), answers: [], line: 7)
        XCTAssertThrowsError(try QAWindows.encode(e, index: 0, tokenizer: tk, cls: cls, sep: sep, maxLength: 32, stride: 30)) { err in
            XCTAssertTrue("\(err)".contains("--doc-stride 30"), "\(err)")
        }
        XCTAssertThrowsError(try QAWindows.encode(e, index: 0, tokenizer: tk, cls: cls, sep: sep, maxLength: 4, stride: 0)) { err in
            XCTAssertTrue("\(err)".contains("raise --max-length"), "\(err)")
        }
    }
}
