// DataJSONLTests: JSONL loading — correct parsing, label handling, and one test per bad-input case, each checking
// the file:line and the words a user needs in the one-line error.
//
// Deliberately not here: CSV/TSV (DataCSVTests), label-set rules in isolation (LabelsTests), split (DataSplitTests).

import Foundation
import XCTest
@testable import Training

final class DataJSONLTests: XCTestCase {
    let cols = ColumnOptions()

    // MARK: parsing

    func testStringLabelsBlankLinesCRLFAndExtraKeys() throws {
        let dir = try TempFolder()
        // Rows copied from the real sms-spam / vader-tweets sets; line 3 is blank, line 4 ends in CRLF,
        // the vader-style row carries an extra "score" key that must be ignored.
        let url = try dir.write("train.jsonl", """
            {"text": "Ok lar... Joking wif u oni...", "label": "ham"}
            {"text": "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.", "label": "spam"}

            {"text": "Yay. Another good phone interview.", "label": "ham", "score": 1.443298969}\r
            {"text": "U dun say so early hor... U c already then say...", "label": "ham"}
            """)
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        XCTAssertEqual(labels.names, ["ham", "spam"])
        XCTAssertEqual(ds.format, .jsonl)
        XCTAssertEqual(ds.examples.map(\.label), [0, 1, 0, 0])
        XCTAssertEqual(ds.examples.map(\.line), [1, 2, 4, 5])
        XCTAssertEqual(ds.examples[2].text, "Yay. Another good phone interview.")
        XCTAssertEqual(ds.examples[0].text, "Ok lar... Joking wif u oni...")
        XCTAssertNil(ds.examples[0].textPair)
    }

    func testIntegerLabelsUseNumericOrder() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", """
            {"text": "a", "label": 10}
            {"text": "b", "label": 2}
            {"text": "c", "label": 0}
            {"text": "d", "label": 2.0}
            """)
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        // Numeric, not string, order ("10" < "2" as strings); 2.0 is the integer 2.
        XCTAssertEqual(labels.names, ["0", "2", "10"])
        XCTAssertEqual(ds.examples.map(\.label), [2, 1, 0, 1])
    }

    func testIntegerJSONAndIntegerStringLabelsAreTheSameClass() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", """
            {"text": "a", "label": "1"}
            {"text": "b", "label": 0}
            {"text": "c", "label": 1}
            """)
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        XCTAssertEqual(labels.names, ["0", "1"])
        XCTAssertEqual(ds.examples.map(\.label), [1, 0, 1])
    }

    func testGivenLabelSetKeepsItsOrder() throws {
        let dir = try TempFolder()
        let url = try dir.write("eval.jsonl", "{\"text\": \"a\", \"label\": \"spam\"}\n{\"text\": \"b\", \"label\": \"ham\"}\n")
        let known = try LabelSet(names: ["spam", "ham"])
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: known)
        XCTAssertEqual(labels, known)
        XCTAssertEqual(ds.examples.map(\.label), [0, 1])
    }

    func testIntegerClassIdsWithNamedLabelSet() throws {
        let dir = try TempFolder()
        let url = try dir.write("sst2.jsonl", "{\"text\": \"great\", \"label\": 1}\n{\"text\": \"awful\", \"label\": \"0\"}\n")
        let names = try LabelSet(names: ["negative", "positive"])
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: names)
        XCTAssertEqual(labels, names)
        XCTAssertEqual(ds.examples.map(\.label), [1, 0])
    }

    func testClassIdOutOfRangeAndMixedIdsAndNamesAreRejected() throws {
        let dir = try TempFolder()
        let names = try LabelSet(names: ["negative", "positive"])
        let out = try dir.write("out.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"text\": \"b\", \"label\": 2}\n")
        assertDataError(try DataLoader.loadLabeled(out, columns: cols, labels: names), line: 2,
                        contains: ["unknown label \"2\" nor a class id 0...1", "\"negative\", \"positive\""])
        let mixed = try dir.write("mixed.jsonl", "{\"text\": \"a\", \"label\": \"positive\"}\n{\"text\": \"b\", \"label\": 0}\n")
        assertDataError(try DataLoader.loadLabeled(mixed, columns: cols, labels: names), line: 2,
                        contains: ["is a class id but line 1 uses class names", "not both"])
    }

    func testIntegerNamesNeverActAsIds() throws {
        // Names "1", "2": the label 0 is not id 0 (it would be ambiguous), so it is unknown.
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": 0}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: try LabelSet(names: ["1", "2"])), line: 1,
                        contains: ["unknown label \"0\" (known labels: \"1\", \"2\")"])
    }

    func testCustomColumnsAndTextPairs() throws {
        let dir = try TempFolder()
        let url = try dir.write("nli.jsonl", """
            {"premise": "A man plays.", "hypothesis": "Someone plays.", "y": "entailment"}
            {"premise": "A man plays.", "hypothesis": "Nobody plays.", "y": "contradiction"}
            """)
        let c = ColumnOptions(text: "premise", textPair: "hypothesis", label: "y")
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: c, labels: nil)
        XCTAssertEqual(labels.names, ["contradiction", "entailment"])
        XCTAssertEqual(ds.examples[1].text, "A man plays.")
        XCTAssertEqual(ds.examples[1].textPair, "Nobody plays.")
        XCTAssertEqual(ds.examples.map(\.label), [1, 0])
    }

    func testUnicodeAndEscapesSurvive() throws {
        let dir = try TempFolder()
        let url = try dir.write("u.jsonl", #"{"text": "caf\u00e9 \"quoted\"\nnew line 😀 naïve", "label": "x"}"# + "\n" +
                                #"{"text": "b", "label": "y"}"#)
        let (ds, _) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        XCTAssertEqual(ds.examples[0].text, "café \"quoted\"\nnew line 😀 naïve")
    }

    func testByteOrderMarkIsStripped() throws {
        let dir = try TempFolder()
        let url = try dir.write("bom.jsonl", bytes: [0xEF, 0xBB, 0xBF] + Array("{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\"}".utf8))
        let (ds, _) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        XCTAssertEqual(ds.count, 2)
    }

    func testLoadTextsIgnoresLabels() throws {
        let dir = try TempFolder()
        let url = try dir.write("p.jsonl", """
            {"text": "with label", "label": true}
            {"text": "without label"}
            """)
        let ds = try DataLoader.loadTexts(url, columns: cols)
        XCTAssertEqual(ds.examples.map(\.text), ["with label", "without label"])
        XCTAssertEqual(ds.examples.map(\.label), [nil, nil])
    }

    func testFormatOverrideAndUnknownExtension() throws {
        let dir = try TempFolder()
        let url = try dir.write("data.txt", "{\"text\": \"a\"}\n")
        XCTAssertEqual(try DataLoader.loadTexts(url, columns: cols, format: .jsonl).count, 1)
        assertDataError(try DataLoader.loadTexts(url, columns: cols), line: nil,
                        contains: ["cannot tell the data format", "\"txt\"", ".jsonl, .csv or .tsv"])
    }

    func testFormatInference() {
        XCTAssertEqual(DataFormat.infer(from: URL(fileURLWithPath: "a/b.JSONL")), .jsonl)
        XCTAssertEqual(DataFormat.infer(from: URL(fileURLWithPath: "b.json")), .jsonl)
        XCTAssertEqual(DataFormat.infer(from: URL(fileURLWithPath: "b.csv")), .csv)
        XCTAssertEqual(DataFormat.infer(from: URL(fileURLWithPath: "b.tsv")), .tsv)
        XCTAssertEqual(DataFormat.infer(from: URL(fileURLWithPath: "b.tab")), .tsv)
        XCTAssertNil(DataFormat.infer(from: URL(fileURLWithPath: "b.parquet")))
    }

    func testReadsStdinWhenPathIsDash() throws {
        // Swap fd 0 for a pipe holding the data, and restore it whatever happens.
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let payload = Array("{\"text\": \"from stdin\"}\n{\"text\": \"second\"}\n".utf8)
        XCTAssertEqual(write(fds[1], payload, payload.count), payload.count)
        close(fds[1])
        let saved = dup(0)
        XCTAssertEqual(dup2(fds[0], 0), 0)
        defer { dup2(saved, 0); close(saved); close(fds[0]) }
        let ds = try DataLoader.loadTexts(URL(fileURLWithPath: "-"), columns: cols)
        XCTAssertEqual(ds.examples.map(\.text), ["from stdin", "second"])
        XCTAssertEqual(ds.format, .jsonl)
    }

    // MARK: bad input, one test each

    func testMalformedLineNamesTheLine() throws {
        let dir = try TempFolder()
        let url = try dir.write("train.jsonl", """
            {"text": "a", "label": "x"}
            {"text": "b", "label": "y"}
            {"text": "c", "label":
            """)
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 3,
                        contains: ["train.jsonl:3: ", "not valid JSON", "unexpected end of line", "one JSON object"])
    }

    func testGarbageInsideLineReportsColumn() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\" 1}\n")
        // Foundation reports "around character 8" (0-based); we say column 9.
        assertDataError(try DataLoader.loadTexts(url, columns: cols), line: 1, contains: ["not valid JSON", "column 9"])
    }

    func testPythonDictLineGetsAHint() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{'text': 'b', 'label': 'y'}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 2,
                        contains: ["single quotes", "Python dict", "json.dumps"])
    }

    func testUnterminatedStringSaysEndOfLine() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": \"x}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1,
                        contains: ["not valid JSON (unexpected end of line"])
    }

    func testNonObjectLine() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n[\"b\", \"y\"]\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 2,
                        contains: ["an array, not a JSON object"])
    }

    func testWholeFileJSONArrayIsDiagnosed() throws {
        let dir = try TempFolder()
        let pretty = try dir.write("data.json", "[\n  {\"text\": \"a\", \"label\": \"x\"},\n  {\"text\": \"b\", \"label\": \"y\"}\n]\n")
        assertDataError(try DataLoader.loadLabeled(pretty, columns: cols, labels: nil), line: 1,
                        contains: ["one JSON array, not JSON lines", "jq -c"])
        let oneLine = try dir.write("one.json", "[{\"text\": \"a\", \"label\": \"x\"}, {\"text\": \"b\", \"label\": \"y\"}]\n")
        assertDataError(try DataLoader.loadLabeled(oneLine, columns: cols, labels: nil), line: 1,
                        contains: ["one JSON array, not JSON lines"])
    }

    func testEmptyFile() throws {
        let dir = try TempFolder()
        let empty = try dir.write("empty.jsonl", "")
        assertDataError(try DataLoader.loadLabeled(empty, columns: cols, labels: nil), line: nil,
                        contains: ["empty.jsonl: file is empty"])
        let blank = try dir.write("blank.jsonl", "\n  \n\r\n")
        assertDataError(try DataLoader.loadLabeled(blank, columns: cols, labels: nil), line: nil, contains: ["file is empty"])
    }

    func testMissingTextColumnListsKeys() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"body\": \"a\", \"label\": \"x\"}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1,
                        contains: ["missing column \"text\"", "\"body\", \"label\"", "--text-column"])
    }

    func testMissingTextPairColumn() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"text2\": \"b\", \"label\": \"x\"}\n{\"text\": \"a\", \"label\": \"y\"}\n")
        let c = ColumnOptions(textPair: "text2")
        assertDataError(try DataLoader.loadLabeled(url, columns: c, labels: nil), line: 2,
                        contains: ["missing column \"text2\"", "--text-pair-column"])
    }

    func testNonStringText() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"ok\", \"label\": 0}\n{\"text\": 42, \"label\": 1}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 2,
                        contains: ["\"text\" is a number (42), not a string"])
        let nulls = try dir.write("n.jsonl", "{\"text\": null, \"label\": 1}\n")
        assertDataError(try DataLoader.loadLabeled(nulls, columns: cols, labels: nil), line: 1,
                        contains: ["\"text\" is null, not a string"])
    }

    func testMissingLabel() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 2,
                        contains: ["missing label column \"label\"", "keys on this line: \"text\"", "--label-column"])
    }

    func testBooleanLabelIsRejected() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": true}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1, contains: ["boolean (true)"])
    }

    func testFractionalAndNullAndEmptyLabelsAreRejected() throws {
        let dir = try TempFolder()
        let frac = try dir.write("f.jsonl", "{\"text\": \"a\", \"label\": 1.5}\n")
        assertDataError(try DataLoader.loadLabeled(frac, columns: cols, labels: nil), line: 1, contains: ["1.5", "not an integer"])
        let null = try dir.write("n.jsonl", "{\"text\": \"a\", \"label\": null}\n")
        assertDataError(try DataLoader.loadLabeled(null, columns: cols, labels: nil), line: 1, contains: ["is null"])
        let empty = try dir.write("e.jsonl", "{\"text\": \"a\", \"label\": \"\"}\n")
        assertDataError(try DataLoader.loadLabeled(empty, columns: cols, labels: nil), line: 1, contains: ["empty string"])
        let array = try dir.write("a.jsonl", "{\"text\": \"a\", \"label\": [1, 2]}\n")
        assertDataError(try DataLoader.loadLabeled(array, columns: cols, labels: nil), line: 1, contains: ["an array", "multi-label"])
    }

    func testUnknownLabelInEvalListsKnownLabels() throws {
        let dir = try TempFolder()
        let url = try dir.write("eval.jsonl", """
            {"text": "good", "label": "positive"}
            {"text": "meh", "label": "neutral"}
            """)
        let known = try LabelSet(names: ["negative", "positive"])
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: known), line: 2,
                        contains: ["eval.jsonl:2: unknown label \"neutral\"", "known labels: \"negative\", \"positive\"", "--labels"])
    }

    func testUnknownLabelWithNewlineStaysOneLine() throws {
        let dir = try TempFolder()
        let url = try dir.write("eval.jsonl", #"{"text": "x", "label": "a\nb"}"#)
        let err = assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: try LabelSet(names: ["a", "b"])),
                                  line: 1, contains: ["unknown label \"a\\nb\""])
        XCTAssertNotNil(err)
    }

    func testSingleClassTrainingDataIsRejected() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.jsonl", "{\"text\": \"a\", \"label\": \"ham\"}\n{\"text\": \"b\", \"label\": \"ham\"}\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: nil,
                        contains: ["same label \"ham\"", "at least two classes"])
    }

    func testInvalidUTF8NamesTheLine() throws {
        let dir = try TempFolder()
        // Line 2 holds a Latin-1 "é" (0xE9), which is not UTF-8.
        let bytes = Array("{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"caf".utf8) + [0xE9] + Array("\", \"label\": \"y\"}\n".utf8)
        let url = try dir.write("latin1.jsonl", bytes: bytes)
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 2,
                        contains: ["not valid UTF-8", "0xE9", "iconv"])
    }

    func testNonexistentFile() throws {
        let dir = try TempFolder()
        let url = dir.url.appendingPathComponent("nope.jsonl")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: nil,
                        contains: ["nope.jsonl: cannot read the file (no such file)", "check the path"])
    }

    func testMissingFileWinsOverUnknownExtension() throws {
        let dir = try TempFolder()
        assertDataError(try DataLoader.loadTexts(dir.url.appendingPathComponent("typo.jsnl"), columns: cols), line: nil,
                        contains: ["no such file"])
    }

    func testDirectoryInsteadOfFile() throws {
        let dir = try TempFolder()
        let sub = dir.url.appendingPathComponent("folder.jsonl")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        assertDataError(try DataLoader.loadTexts(sub, columns: cols), line: nil, contains: ["directory"])
    }

    func testErrorUsesThePathAsGiven() throws {
        // A relative URL is reported relative, as the user typed it.
        let err = DataError(file: URL(fileURLWithPath: "data/train.jsonl", relativeTo: URL(fileURLWithPath: "/tmp")).relativePath,
                            line: 17, problem: "not valid JSON (unexpected end of line)", fix: "each line must be one JSON object")
        XCTAssertEqual(err.description, "data/train.jsonl:17: not valid JSON (unexpected end of line); each line must be one JSON object")
    }

    // MARK: performance

    /// The SMS training file has 4,654 rows of ~100 bytes; loading that shape must take milliseconds.
    /// The bound is loose (debug build, busy shared CI cores) but still catches anything quadratic.
    func testLoadsSMSSizedFileQuickly() throws {
        let dir = try TempFolder()
        var text = ""
        for i in 0..<4654 {
            text += "{\"text\": \"Message number \(i): Free entry in 2 a wkly comp to win FA Cup final tkts, txt now\", \"label\": \"\(i % 7 == 0 ? "spam" : "ham")\"}\n"
        }
        let url = try dir.write("sms.jsonl", text)
        let start = Date()
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(ds.count, 4654)
        XCTAssertEqual(labels.names, ["ham", "spam"])
        XCTAssertLessThan(seconds, 1.0, "loading 4,654 rows took \(seconds) s")
    }
}
