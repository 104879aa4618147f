// Word → sub-token alignment, windowing and predict's entity grouping against transformers
// (Fixtures/ner-golden/<kind>-tok.json from scripts/goldens/ner_goldens.py):
//   - run_ner's alignment: the fast tokenizer with is_split_into_words, first sub-token labelled, the rest -100;
//   - windows of a 40-word sentence at --max-length 16: each window is [CLS] + the HF ids of its words + [SEP], every
//     word predicted in exactly one window, at its first sub-token;
//   - TokenPredictor against pipeline("token-classification", aggregation_strategy="first") on the seeded model.
// Plus the data readers' errors (file:line, exit code 2).
import Foundation
import XCTest
@testable import Training
import Model
import Tokenizers

final class TokenAlignmentTests: XCTestCase {
    func golden(_ kind: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: TestPaths.fixture("ner-golden").appendingPathComponent("\(kind)-tok.json"))) as! [String: Any]
    }

    func testAlignmentMatchesRunNer() throws {
        for kind in ["bert", "distilbert"] {
            let g = try golden(kind)
            let tok = try loadTokenizer(directory: TestPaths.fixture("\(kind)-tiny-cls"))
            let file = try SafeTensorsFile(url: TestPaths.fixture("ner-golden").appendingPathComponent("\(kind)-tok.safetensors"))
            let labels = g["labels"] as! [String]
            let (cls, sep) = try TokenWindows.specials(tok, path: kind)
            for (k, batch) in (g["batches"] as! [[[String: Any]]]).enumerated() {
                let ids = try file.int64s("batch\(k)/input_ids"), lab = try file.int64s("batch\(k)/labels")
                let T = file.info("batch\(k)/input_ids")!.shape[1]
                for (b, s) in batch.enumerated() {
                    let words = s["tokens"] as! [String], tags = (s["tags"] as! [String]).map { labels.firstIndex(of: $0)! }
                    let w = TokenWindows.encode(pieces: try TokenWindows.pieces(words, tokenizer: tok), tags: tags, cls: cls, sep: sep,
                                                maxLength: 128, bToI: nil, sentence: b)
                    XCTAssertEqual(w.count, 1)
                    let n = w[0].ids.count
                    XCTAssertEqual(w[0].ids.map(Int64.init), Array(ids[(b * T)..<(b * T + n)]), "\(kind) batch \(k) row \(b) ids")
                    XCTAssertEqual(w[0].labels.map(Int64.init), Array(lab[(b * T)..<(b * T + n)]), "\(kind) batch \(k) row \(b) labels")
                    XCTAssertTrue(lab[(b * T + n)..<(b * T + T)].allSatisfy { $0 == -100 }, "padding labelled")
                    XCTAssertEqual(w[0].owned.map(\.word), Array(words.indices))
                }
            }
        }
    }

    func testLabelAllTokensTurnsBIntoI() {
        let labels = ["B-PER", "I-PER", "B-MISC", "O"]
        XCTAssertEqual(TokenWindows.bToI(labels), [1, 1, 2, 3])   // B-MISC has no I-MISC: kept
        let w = TokenWindows.encode(pieces: [[5, 6, 7], [8]], tags: [0, 3], cls: 1, sep: 2, maxLength: 10,
                                    bToI: TokenWindows.bToI(labels), sentence: 0)
        XCTAssertEqual(w[0].labels, [-100, 0, 1, 1, 3, -100])
    }

    func testWindowsCoverEveryWordOnceWithTransformersIds() throws {
        for kind in ["bert", "distilbert"] {
            let win = try golden(kind)["window"] as! [String: Any]
            let words = win["tokens"] as! [String], wordIds = win["word_ids"] as! [Int], hfIds = win["input_ids"] as! [Int]
            let tok = try loadTokenizer(directory: TestPaths.fixture("\(kind)-tiny-cls"))
            let (cls, sep) = try TokenWindows.specials(tok, path: kind)
            let pieces = try TokenWindows.pieces(words, tokenizer: tok)
            XCTAssertEqual([Int(cls)] + pieces.joined().map(Int.init) + [Int(sep)], hfIds, "\(kind): sub-tokens of the words")
            let maxLength = 16
            let windows = TokenWindows.encode(pieces: pieces, tags: Array(repeating: 0, count: words.count), cls: cls, sep: sep,
                                              maxLength: maxLength, bToI: nil, sentence: 0)
            XCTAssertGreaterThan(windows.count, 3)
            var owner = [Int](repeating: 0, count: words.count)
            let plan = TokenWindows.plan(counts: pieces.map(\.count), capacity: maxLength - 2)
            for (k, w) in windows.enumerated() {
                XCTAssertLessThanOrEqual(w.ids.count, maxLength)
                // [CLS] + transformers' ids of the span's words + [SEP]
                let span = plan[k].span
                let inner = hfIds.indices.filter { wordIds[$0] >= 0 && span.contains(wordIds[$0]) }.map { hfIds[$0] }
                XCTAssertEqual(w.ids.map(Int.init), [Int(cls)] + inner + [Int(sep)], "\(kind) window \(k)")
                for (pos, word) in w.owned {
                    owner[word] += 1
                    XCTAssertEqual(w.ids[pos], pieces[word][0], "owned position is the word's first sub-token")
                    XCTAssertEqual(w.labels[pos], 0)
                }
                XCTAssertEqual(w.labelled, w.owned.count)
                if k > 0 { XCTAssertLessThan(plan[k].span.lowerBound, plan[k - 1].span.upperBound, "windows overlap") }
            }
            XCTAssertEqual(owner, [Int](repeating: 1, count: words.count), "\(kind): every word predicted exactly once")
        }
    }

    /// A saved token-classification folder: the cls fixture's encoder with the golden's seeded head.
    func tokenFolder(_ kind: String) throws -> URL {
        let g = try golden(kind)
        let file = try SafeTensorsFile(url: TestPaths.fixture("ner-golden").appendingPathComponent("\(kind)-tok.safetensors"))
        let bundle = try ClassifierBundle(folder: ModelFolder.open(TestPaths.fixture("\(kind)-tiny-cls")), head: .token,
                                          labels: g["labels"] as? [String], seed: 1)
        XCTAssertEqual(Set(bundle.report.initialized), ["classifier.weight", "classifier.bias"], "a sequence head is not reused as a token head")
        for n in ["classifier.weight", "classifier.bias"] { try file.copyFloats("head/" + n, into: bundle.store.value(n)) }
        let dir = try TestPaths.tempDir("ner-\(kind)")
        try bundle.save(to: dir)
        return dir
    }

    func testSavedFolderReopensAsTokenClassifier() throws {
        let dir = try tokenFolder("bert")
        let folder = try ModelFolder.open(dir)
        XCTAssertEqual(folder.kind, .encoderTokenClassifier)
        XCTAssertEqual(folder.architecture, "BertForTokenClassification")
        let names = try SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors")).names
        XCTAssertFalse(names.contains { $0.contains("pooler") }, "BertForTokenClassification has no pooler")
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertNil(cfg["problem_type"])
        XCTAssertEqual((cfg["id2label"] as! [String: String])["6"], "O")
    }

    func testPredictGroupsAsTheTransformersPipeline() throws {
        for kind in ["bert", "distilbert"] {
            let g = try golden(kind)
            let predictor = try TokenPredictor(folder: ModelFolder.open(tokenFolder(kind)), adapterDir: nil, maxLength: nil, batchSize: 2)
            let cases = g["pipeline"] as! [[String: Any]]
            let inputs: [TokenClassificationData.PredictInput] = cases.map {
                if let t = $0["text"] as? String { return .text(t) } else { return .tokens($0["tokens"] as! [String]) }
            }
            let preds = try predictor.predict(inputs.map(\.text))
            for (c, p) in zip(cases, preds) {
                let ref = c["entities"] as! [[String: Any]]
                XCTAssertEqual(p.entities.count, ref.count, "\(kind) \(p.text): \(p.entities.map(\.text)) vs \(ref.map { $0["word"]! })")
                for (e, r) in zip(p.entities, ref) {
                    XCTAssertEqual(e.type, r["type"] as? String, "\(kind) \(p.text)")
                    XCTAssertEqual(e.start, r["start"] as? Int, "\(kind) \(p.text) start of \(e.text)")
                    XCTAssertEqual(e.end, r["end"] as? Int, "\(kind) \(p.text) end of \(e.text)")
                    // pipeline scores are float32 softmax means; ours Double over fp32 logits
                    XCTAssertEqual(e.score, (r["score"] as! NSNumber).doubleValue, accuracy: 1e-5, "\(kind) \(p.text) score of \(e.text)")
                }
            }
        }
    }

    func testWordSpansOfTheBertPreTokenizer() {
        let t = "Café owners, in São-Paulo\u{0001}x 東京!"
        let spans = WordSpans.bert(t)
        let sc = Array(t.unicodeScalars)
        let words = spans.map { r -> String in var s = ""; s.unicodeScalars.append(contentsOf: sc[r]); return s }
        XCTAssertEqual(words, ["Café", "owners", ",", "in", "São", "-", "Paulo\u{0001}x", "東", "京", "!"])
    }

    // MARK: data errors: one line naming file:line, exit code 2

    func write(_ name: String, _ text: String) throws -> URL {
        let url = try TestPaths.tempDir("nerdata").appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func assertDataError(_ url: URL, labels: [String]? = nil, line: Int, contains: String, file: StaticString = #filePath, l: UInt = #line) {
        XCTAssertThrowsError(try TokenClassificationData.load(url, format: nil, labels: labels), file: file, line: l) { e in
            guard let e = e as? TrainingError else { return XCTFail("\(e)", file: file, line: l) }
            XCTAssertEqual(e.exitCode, 2, file: file, line: l)
            XCTAssertTrue(e.message.contains("\(url.lastPathComponent):\(line):"), e.message, file: file, line: l)
            XCTAssertTrue(e.message.contains(contains), e.message, file: file, line: l)
            XCTAssertFalse(e.message.contains("\n"), file: file, line: l)
        }
    }

    func testDataErrorsNameFileAndLine() throws {
        assertDataError(try write("a.jsonl", "{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n"),
                        line: 2, contains: "2 tokens but 1 tags")
        assertDataError(try write("b.jsonl", "\n{\"tokens\": [], \"tags\": []}\n"), line: 2, contains: "\"tokens\" is empty")
        assertDataError(try write("c.jsonl", "{\"tokens\": [\"a\"], \"tags\": [\"B-XYZ\"]}\n"), labels: ["O", "B-PER"], line: 1, contains: "unknown tag \"B-XYZ\"")
        assertDataError(try write("d.conll", "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects\n"), line: 4, contains: "no tag")
        assertDataError(try write("e.conll", "EU B-ORG\n\nGerman B-MISC\n"), labels: ["B-ORG", "O"], line: 3, contains: "unknown tag \"B-MISC\"")
        assertDataError(try write("f.jsonl", "{\"tokens\": [\"a\"], \"tags\": [3]}\n"), line: 1, contains: "--labels")
    }

    func testCoNLLAndIntegerTags() throws {
        let c = try TokenClassificationData.load(try write("x.conll", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n"),
                                                 format: nil, labels: nil)
        XCTAssertEqual(c.labels, ["B-ORG", "B-PER", "O"])
        XCTAssertEqual(c.sentences.map(\.words), [["EU", "rejects"], ["Peter"]])
        XCTAssertEqual(c.sentences.map(\.tags), [[0, 2], [1]])
        XCTAssertEqual(c.sentences[1].lines, [7])
        let j = try TokenClassificationData.load(try write("y.jsonl", "{\"tokens\": [\"EU\", \"x\"], \"ner_tags\": [1, 0]}\n"),
                                                 format: nil, labels: ["O", "B-ORG"])
        XCTAssertEqual(j.sentences[0].tags, [1, 0])
    }
}
