// BadInputTests: every user mistake the issue lists must end in one clear TokenizerError that names the file
// (and line where there is one) and says what to do; none may crash or load silently.
import Foundation
import XCTest
import Tokenizers

final class BadInputTests: XCTestCase {
    private func tempDir(_ files: [String: String]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokbad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Asserts `body` throws a TokenizerError whose one-line description contains every fragment.
    private func assertTokenizerError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                                      _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected a TokenizerError containing \(fragments)", file: file, line: line)
        } catch let e as TokenizerError {
            let text = e.description
            XCTAssertFalse(text.contains("\n"), "error must be one line: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains("Fix:"), "error must suggest a fix: \(text)", file: file, line: line)
            for f in fragments { XCTAssertTrue(text.contains(f), "\"\(text)\" lacks \"\(f)\"", file: file, line: line) }
        } catch {
            XCTFail("expected TokenizerError, got \(error)", file: file, line: line)
        }
    }

    func testMissingFolderAndMissingVocabulary() throws {
        let nowhere = FileManager.default.temporaryDirectory.appendingPathComponent("no-such-\(UUID().uuidString)")
        assertTokenizerError([nowhere.path, "not found"]) { _ = try loadTokenizer(directory: nowhere) }

        let onlyConfig = try tempDir(["tokenizer_config.json": "{\"do_lower_case\": true}"])
        assertTokenizerError([onlyConfig.path, "no tokenizer.json, vocab.txt or vocab.json+merges.txt"]) {
            _ = try loadTokenizer(directory: onlyConfig)
        }
        let noMerges = try tempDir(["vocab.json": "{\"a\": 0}"])
        assertTokenizerError(["merges.txt", "file not found"]) { _ = try loadTokenizer(directory: noMerges) }
    }

    func testMergeReferringToMissingToken() throws {
        // "c" is not in the vocabulary: the pair that names it must be reported with its line number.
        let dir = try tempDir(["vocab.json": "{\"a\": 0, \"b\": 1, \"ab\": 2}",
                               "merges.txt": "#version: 0.2\na b\na c\n"])
        assertTokenizerError(["merges.txt:3", "\"c\"", "vocab.json"]) { _ = try loadTokenizer(directory: dir) }
        // The merged token itself must exist too.
        let dir2 = try tempDir(["vocab.json": "{\"a\": 0, \"b\": 1}", "merges.txt": "#version: 0.2\na b\n"])
        assertTokenizerError(["merges.txt:2", "\"ab\""]) { _ = try loadTokenizer(directory: dir2) }
        // CRLF line endings are fine (Rust `lines()` semantics), and "\r\n" must not hide a line break.
        let crlf = try tempDir(["vocab.json": "{\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3}",
                                "merges.txt": "#version: 0.2\r\na b\r\n"])
        let tok = try loadTokenizer(directory: crlf)
        XCTAssertEqual(tok.encode("ab").ids, [2])
        let dir3 = try tempDir(["vocab.json": "{\"a\": 0, \"b\": 1}", "merges.txt": "#version: 0.2\na b c\n"])
        assertTokenizerError(["merges.txt:2", "not two"]) { _ = try loadTokenizer(directory: dir3) }
    }

    func testUnsupportedModelTypeInTokenizerJSON() throws {
        let unigram = """
        {"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null,
         "decoder": null, "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}}
        """
        let dir = try tempDir(["tokenizer.json": unigram])
        assertTokenizerError(["tokenizer.json", "Unigram", "not supported"]) { _ = try loadTokenizer(directory: dir) }
        // A normalized added token under a normalizer would need matching on normalized text: refused, not guessed.
        let original = try String(contentsOf: Fixtures.root.appendingPathComponent("bert-base-uncased/tokenizer.json"), encoding: .utf8)
        let mask = "\"content\":\"[MASK]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":"
        let bert = original.replacingOccurrences(of: mask + "false", with: mask + "true")
        XCTAssertNotEqual(bert, original, "fixture layout changed; update the replacement")
        let normalized = try tempDir(["tokenizer.json": bert])
        assertTokenizerError(["tokenizer.json", "[MASK]", "normalized=true"]) { _ = try loadTokenizer(directory: normalized) }
        let bad = try tempDir(["tokenizer.json": "{not json"])
        assertTokenizerError(["tokenizer.json", "invalid JSON"]) { _ = try loadTokenizer(directory: bad) }
    }

    func testMissingUnknownTokenInVocabTxt() throws {
        let dir = try tempDir(["vocab.txt": "[PAD]\n[CLS]\n[SEP]\nhello\n"])
        assertTokenizerError(["vocab.txt", "[UNK]"]) { _ = try loadTokenizer(directory: dir) }
    }

    func testCLIInputErrorsNameFileAndLine() throws {
        var invalid = Data("{\"text\": \"fine\"}\n{\"text\": \"caf".utf8)
        invalid.append(contentsOf: [0xE9, 0x22, 0x7D, 0x0A])   // Latin-1 é: not UTF-8
        assertTokenizerError(["in.jsonl:2", "invalid UTF-8", "iconv"]) { _ = try JSONLines.readRecords(invalid, path: "in.jsonl") }

        let badJSON = Data("{\"text\": \"a\"}\n\n{\"text\": \"b\"\n".utf8)
        assertTokenizerError(["in.jsonl:3", "bad JSON"]) { _ = try JSONLines.readRecords(badJSON, path: "in.jsonl") }

        let noText = Data("{\"txt\": \"a\"}\n".utf8)
        assertTokenizerError(["in.jsonl:1", "\"text\""]) { _ = try JSONLines.readRecords(noText, path: "in.jsonl") }

        let good = Data("{\"text\": \"\u{FEFF}a\", \"text_pair\": \"b\"}\r\n\n{\"text\": \"c\"}".utf8)
        let records = try JSONLines.readRecords(good, path: "in.jsonl")
        XCTAssertEqual(records.count, 2)
        XCTAssertEqual(Array(records[0].text.unicodeScalars), ["\u{FEFF}", "a"], "a leading BOM in a value must survive")
        XCTAssertEqual(records[0].pair, "b")
        XCTAssertNil(records[1].pair)
    }

    /// The shared line loop: lines split at LF and numbered from 1, lines of only spaces, tabs and CRs skipped, a CR
    /// before the LF kept (JSON takes it as white space); the lenient reader keeps only the lines that are objects.
    func testJSONLinesLineLoopAndLenientReader() {
        let bytes = Array("a\r\n \t\r\n\nb c\n\r\nd".utf8)
        var seen: [(String, Int)] = []
        bytes.withUnsafeBufferPointer { b in
            JSONLines.forEachLine(b) { line, n in seen.append((String(decoding: line, as: UTF8.self), n)) }
        }
        XCTAssertEqual(seen.map(\.0), ["a\r", "b c", "d"])
        XCTAssertEqual(seen.map(\.1), [1, 4, 6])
        let objects = JSONLines.lenientObjects(Data("{\"a\": 1}\r\n{torn\n[1]\n\n{\"b\": \"x\"}".utf8))
        XCTAssertEqual(objects.count, 2)
        XCTAssertEqual(objects[0]["a"] as? Int, 1)
        XCTAssertEqual(objects[1]["b"] as? String, "x")
    }

    func testMaxLengthBelowSpecialTokenCountThrows() throws {
        let bert = try Fixtures.bertFromJSON()
        assertTokenizerError(["maxLength 2", "3 special tokens"]) {
            _ = try bert.encode("a", pair: "b", addSpecialTokens: true, maxLength: 2)
        }
        XCTAssertEqual(try bert.encode("a b c", pair: nil, addSpecialTokens: false, maxLength: 2).ids.count, 2)
    }
}
