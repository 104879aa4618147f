// DataCSVTests: the RFC 4180 parser on its own, and CSV/TSV loading with its bad-input cases.
//
// Deliberately not here: JSONL (DataJSONLTests) and label-set ordering (LabelsTests).

import Foundation
import Tokenizers
import XCTest
@testable import Training

final class DataCSVTests: XCTestCase {
    let cols = ColumnOptions()

    private func records(_ s: String, delimiter: Character = ",") throws -> [CSVRecord] {
        try Array(s.utf8).withUnsafeBufferPointer {
            try CSVParser.parse($0, delimiter: delimiter.asciiValue!, file: "t.csv")
        }
    }

    // MARK: parser

    func testQuotingEmbeddedCommaNewlineAndDoubledQuotes() throws {
        let r = try records(#"""
            text,label
            "a, b",x
            "line one
            line two",y
            "she said ""hi""",z
            plain "inner" quote,w
            """#)
        XCTAssertEqual(r.map(\.fields), [
            ["text", "label"],
            ["a, b", "x"],
            ["line one\nline two", "y"],
            ["she said \"hi\"", "z"],
            ["plain \"inner\" quote", "w"],  // a quote inside an unquoted field is literal
        ])
        // The record after the two-line field starts on physical line 5.
        XCTAssertEqual(r.map(\.line), [1, 2, 3, 5, 6])
    }

    func testCRLFEmptyFieldsBlankLinesAndNoFinalNewline() throws {
        let r = try records("a,b,c\r\n1,,\r\n\r\n\"\",2,\"x\r\ny\"\r\nlast,row,end")
        XCTAssertEqual(r.map(\.fields), [["a", "b", "c"], ["1", "", ""], ["", "2", "x\r\ny"], ["last", "row", "end"]])
        XCTAssertEqual(r.map(\.line), [1, 2, 4, 6])
    }

    func testTabDelimiterKeepsCommas() throws {
        let r = try records("text\tlabel\nhello, world\tx\n\"tab\tinside\"\ty\n", delimiter: "\t")
        XCTAssertEqual(r.map(\.fields), [["text", "label"], ["hello, world", "x"], ["tab\tinside", "y"]])
    }

    func testUnclosedQuoteNamesTheLineItOpened() throws {
        assertDataError(try records("text,label\nok,x\n\"never closed,y\nmore\n"), line: 3,
                        contains: ["quoted field is never closed", "two quotes"])
    }

    func testTextAfterClosingQuote() throws {
        assertDataError(try records("text,label\n\"a\"b,x\n"), line: 2, contains: ["after the closing quote"])
    }

    func testRoundTripOfRandomFields() throws {
        // Seeded property test: fields drawn from the awkward characters (delimiters, quotes, CR, LF, non-ASCII)
        // survive writing with RFC 4180 quoting and parsing back, and every record reports the line it starts on.
        var rng = DataSplitRNG(seed: 2024)
        let alphabet: [String] = ["a", "b", " ", ",", "\t", "\"", "\n", "\r\n", "\r", "é", "😀", "\"\""]
        for delimiter in [",", "\t"] {
            for _ in 0..<200 {
                let columns = 1 + Int(rng.next(below: 4))
                var rows: [[String]] = []
                for _ in 0..<(1 + Int(rng.next(below: 6))) {
                    rows.append((0..<columns).map { _ in
                        (0..<Int(rng.next(below: 6))).map { _ in alphabet[Int(rng.next(below: UInt64(alphabet.count)))] }.joined()
                    })
                }
                // An all-empty single-column row is a blank line, which the parser skips by design; avoid it.
                rows = rows.map { $0.count == 1 && $0[0].isEmpty ? ["x"] : $0 }
                var text = ""
                var expectedLines: [Int] = []
                var line = 1
                for row in rows {
                    expectedLines.append(line)
                    let encoded = row.map { f -> String in
                        let needsQuotes = f.contains(delimiter) || f.contains("\"") || f.contains("\n") || f.contains("\r")
                        return needsQuotes ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
                    }
                    let record = encoded.joined(separator: delimiter) + (rng.next(below: 2) == 0 ? "\n" : "\r\n")
                    text += record
                    line += record.utf8.filter { $0 == UInt8(ascii: "\n") }.count
                }
                let parsed = try records(text, delimiter: Character(delimiter))
                XCTAssertEqual(parsed.map(\.fields), rows, text.debugDescription)
                XCTAssertEqual(parsed.map(\.line), expectedLines, text.debugDescription)
            }
        }
    }

    func testArbitraryBytesNeverCrashTheLoader() throws {
        // Seeded fuzzing over fragments that hit every branch; the only acceptable outcomes are a dataset or a
        // one-line DataError.
        var rng = DataSplitRNG(seed: 99)
        let fragments: [[UInt8]] = [Array("text".utf8), Array("label".utf8), [0x2C], [0x09], [0x22], [0x0A], [0x0D], [0x7B], [0x7D],
                                    [0x3A], [0x5B], Array("\"text\": ".utf8), Array("\"label\": 1".utf8), [0xC3, 0xA9], [0xFF], [0xE2, 0x82],
                                    [0xEF, 0xBB, 0xBF], Array("null".utf8), Array("true".utf8)]
        let dir = try TempFolder()
        var loaded = 0, rejected = 0
        for i in 0..<300 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(rng.next(below: 40)) { bytes += fragments[Int(rng.next(below: UInt64(fragments.count)))] }
            let ext = ["csv", "tsv", "jsonl"][i % 3]
            let url = try dir.write("fuzz\(i).\(ext)", bytes: bytes)
            do {
                _ = try DataLoader.loadLabeled(url, columns: ColumnOptions(), labels: nil)
                loaded += 1
            } catch let e as DataError {
                XCTAssertFalse(e.description.contains("\n"), e.description)
                rejected += 1
            }
        }
        XCTAssertEqual(loaded + rejected, 300)
        XCTAssertGreaterThan(rejected, 0)
    }

    // MARK: loading

    func testLoadCSVWithQuotingAndIntegerLabels() throws {
        let dir = try TempFolder()
        let url = try dir.write("train.csv", #"""
            id,text,label
            1,"Hello, world",1
            2,"multi
            line",0
            3,"say ""yes""",1
            """#)
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        XCTAssertEqual(ds.format, .csv)
        XCTAssertEqual(labels.names, ["0", "1"])
        XCTAssertEqual(ds.examples.map(\.text), ["Hello, world", "multi\nline", "say \"yes\""])
        XCTAssertEqual(ds.examples.map(\.label), [1, 0, 1])
        XCTAssertEqual(ds.examples.map(\.line), [2, 3, 5])
    }

    func testLoadTSVWithTextPairs() throws {
        let dir = try TempFolder()
        let url = try dir.write("mrpc.tsv", "s1\ts2\tquality\nA cat sat.\tA cat was sitting.\tyes\nIt rained.\tThe sun shone.\tno\n")
        let c = ColumnOptions(text: "s1", textPair: "s2", label: "quality")
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: c, labels: nil)
        XCTAssertEqual(ds.format, .tsv)
        XCTAssertEqual(labels.names, ["no", "yes"])
        XCTAssertEqual(ds.examples[0].text, "A cat sat.")
        XCTAssertEqual(ds.examples[0].textPair, "A cat was sitting.")
        XCTAssertEqual(ds.examples.map(\.label), [1, 0])
    }

    func testBOMAndCRLFFromExcel() throws {
        let dir = try TempFolder()
        let url = try dir.write("excel.csv", bytes: [0xEF, 0xBB, 0xBF] + Array("text,label\r\nfirst,a\r\nsecond,b\r\n".utf8))
        let (ds, labels) = try DataLoader.loadLabeled(url, columns: cols, labels: nil)
        XCTAssertEqual(ds.examples.map(\.text), ["first", "second"])
        XCTAssertEqual(labels.names, ["a", "b"])  // "b\r" would mean CRLF was not handled
    }

    func testLoadTextsCSVWithoutLabelColumn() throws {
        let dir = try TempFolder()
        let url = try dir.write("in.csv", "text\nfirst\n\"second, with comma\"\n")
        let ds = try DataLoader.loadTexts(url, columns: cols)
        XCTAssertEqual(ds.examples.map(\.text), ["first", "second, with comma"])
        XCTAssertEqual(ds.examples.map(\.label), [nil, nil])
    }

    // MARK: bad input

    func testRaggedRowNamesItsLine() throws {
        let dir = try TempFolder()
        // Line 2's quoted field spans lines 2–3, so the ragged row is physical line 4, not record 3.
        let url = try dir.write("train.csv", "text,label\n\"two\nlines\",a\nunquoted, comma,b\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 4,
                        contains: ["train.csv:4: row has 3 fields but the header has 2", "quote fields that contain a comma"])
    }

    func testRaggedTSVRowMentionsTabs() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.tsv", "text\tlabel\nonly one field\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 2,
                        contains: ["row has 1 field but the header has 2", "tab"])
    }

    func testMissingColumnListsColumnsFound() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "sentence,label\nhi,a\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1,
                        contains: ["missing column \"text\"", "columns found: \"sentence\", \"label\"", "--text-column"])
    }

    func testMissingColumnSuggestsNearMiss() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "Text, Label\nhi,a\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1,
                        contains: ["missing columns \"text\" and \"label\"", "did you mean \"Text\" for \"text\" and \" Label\" for \"label\"?"])
    }

    func testMissingLabelColumn() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "text,category\nhi,a\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1,
                        contains: ["missing column \"label\"", "--label-column"])
    }

    func testTSVNamedCSVIsDiagnosed() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "text\tlabel\nhi\ta\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1, contains: ["TSV"])
    }

    func testHeaderOnly() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "text,label\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: nil,
                        contains: ["header row but no data rows"])
    }

    func testEmptyCSV() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: nil,
                        contains: ["file is empty", "header row"])
    }

    func testEmptyLabelField() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "text,label\nhi,a\nthere,\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 3,
                        contains: ["missing label", "\"label\" field is empty"])
    }

    func testDuplicateColumn() throws {
        let dir = try TempFolder()
        let url = try dir.write("t.csv", "text,text,label\na,b,c\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 1,
                        contains: ["column \"text\" appears 2 times"])
    }

    func testUnknownLabelInCSVEval() throws {
        let dir = try TempFolder()
        let url = try dir.write("eval.csv", "text,label\nfine,ham\nodd,eggs\n")
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: try LabelSet(names: ["ham", "spam"])), line: 3,
                        contains: ["unknown label \"eggs\"", "\"ham\", \"spam\""])
    }

    func testInvalidUTF8InCSV() throws {
        let dir = try TempFolder()
        // An overlong encoding of "/" (C0 AF) on line 3.
        let url = try dir.write("t.csv", bytes: Array("text,label\nok,a\nbad".utf8) + [0xC0, 0xAF] + Array(",b\n".utf8))
        assertDataError(try DataLoader.loadLabeled(url, columns: cols, labels: nil), line: 3, contains: ["not valid UTF-8"])
    }

    func testUTF8CheckerAgreesWithStandardLibrary() {
        // Valid and invalid sequences from Unicode table 3-7's edges; the standard library is the reference.
        let cases: [[UInt8]] = [
            Array("plain ascii".utf8), Array("é中😀".utf8),
            [0xC2, 0x80], [0xC1, 0xBF], [0xE0, 0xA0, 0x80], [0xE0, 0x9F, 0xBF], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],
            [0xF0, 0x90, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
            [0xF5, 0x80, 0x80, 0x80], [0x80], [0xE2, 0x82], [0x61, 0xFF],
        ]
        for bytes in cases {
            let valid = String(validating: bytes, as: UTF8.self) != nil
            XCTAssertEqual(UTF8Check.firstInvalidOffset(bytes) == nil, valid, "\(bytes)")
        }
        XCTAssertEqual(UTF8Check.firstInvalidOffset([0x61, 0x62, 0xFF]), 2)
    }
}
