// Seeded fuzzing of question-answering input (the QA part of issue 15's rule for user files): mutated JSONL lines and
// SQuAD JSON (fields dropped, wrong types, offsets out of range or negative or fractional, truncated text, odd Unicode)
// go through QAData.load and run_qa's windowing in-process. Nothing may trap; every failure is a TrainingError with
// exit code 2 whose one-line message starts with the file (and names a line for line-level problems).
import Foundation
import XCTest
import SplitMix
import Tokenizers
@testable import Training

final class QADataFuzzTests: XCTestCase {
    func testSeededMutationsFailCleanlyOrLoad() throws {
        let tk = try loadTokenizer(directory: TestPaths.fixture("bert-tiny-cls"))
        let (cls, sep) = try QAWindows.specials(tk, path: "x")
        let dir = try TestPaths.tempDir("qa-fuzz")
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SplitMix64(seed: 20261207)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let contexts = ["The cat sat on the mat.", "Café Müller in São Paulo — opened 1999!", "東京は日本の首都です。", "a\u{0301}b\tc\nd",
                        String(repeating: "word ", count: 60), "", "   ", "x"]
        let values: [Any] = [NSNull(), 3, -1, 1e9, 2.5, "7", [Any](), [String: Any](), true, "", "cat", [1, 2], ["a", 3]]
        var loaded = 0, failed = 0
        for i in 0..<300 {
            var lines: [String] = []
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let c = pick(contexts)
                let sc = Array(c.unicodeScalars)
                let s = sc.isEmpty ? 0 : Int(rng.next() % UInt64(sc.count))
                let n = sc.isEmpty ? 0 : 1 + Int(rng.next() % UInt64(min(5, sc.count - s)))
                var text = ""; text.unicodeScalars.append(contentsOf: sc[s..<min(s + n, sc.count)])
                var obj: [String: Any] = ["question": pick(["Who?", " What is it?", "", "¿Qué?"]), "context": c,
                                          "answers": ["text": [text], "answer_start": [s]]]
                switch rng.next() % 8 {
                case 0: obj.removeValue(forKey: pick(["question", "context", "answers"]))
                case 1: obj[pick(["question", "context", "answers"])] = pick(values)
                case 2: obj["answers"] = ["text": [text], "answer_start": [pick(values)]]
                case 3: obj["answers"] = ["text": pick(values), "answer_start": [s]]
                case 4: obj["answers"] = [["text": text, "answer_start": pick([s, s + 1, -s - 1, 10_000])]]
                case 5: obj["id"] = pick(values)
                default: break
                }
                var line = String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.fragmentsAllowed]), as: UTF8.self)
                if rng.next() % 10 == 0 { line = String(line.prefix(Int(rng.next() % UInt64(max(line.count, 1))))) }
                lines.append(line)
            }
            var body = lines.joined(separator: "\n") + "\n"
            var name = "f\(i).jsonl"
            if rng.next() % 4 == 0 {   // the same questions as SQuAD JSON
                let qas = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                let paras: [[String: Any]] = qas.map { q in
                    var qa = q; let c = q["context"] ?? NSNull(); qa.removeValue(forKey: "context")
                    if let a = qa["answers"] as? [String: Any], let t = a["text"] as? [Any], let st = a["answer_start"] as? [Any] {
                        qa["answers"] = zip(t, st).map { ["text": $0, "answer_start": $1] }
                    }
                    return ["context": c, "qas": [qa]]
                }
                body = String(decoding: try JSONSerialization.data(withJSONObject: ["data": [["title": "t", "paragraphs": paras]]]), as: UTF8.self)
                name = "f\(i).json"
            }
            let url = dir.appendingPathComponent(name)
            try Data(body.utf8).write(to: url)
            do {
                let exs = try QAData.load(url).examples
                for (k, e) in exs.enumerated() {
                    _ = try QAWindows.encode(e, index: k, tokenizer: tk, cls: cls, sep: sep, maxLength: pick([8, 16, 40]), stride: pick([0, 2, 4]))
                }
                loaded += 1
            } catch let e as TrainingError {
                failed += 1
                XCTAssertEqual(e.exitCode, 2, "case \(i): \(e.message)\n\(body)")
                XCTAssertFalse(e.message.contains("\n"), "case \(i): not one line: \(e.message)")
                XCTAssertTrue(e.message.hasPrefix(url.relativePath) || e.message.hasPrefix("question ") || e.message.hasPrefix("--doc-stride"),
                              "case \(i): does not name the file: \(e.message)")
            } catch {
                XCTFail("case \(i): not a TrainingError: \(error)\n\(body)")
            }
        }
        XCTAssertGreaterThan(loaded, 20)
        XCTAssertGreaterThan(failed, 100)
    }
}
