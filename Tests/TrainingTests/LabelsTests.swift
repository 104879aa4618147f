// LabelsTests: the --labels file reader and the rule that orders labels inferred from training data.
//
// Deliberately not here: labels read out of data rows (DataJSONLTests, DataCSVTests).

import Foundation
import XCTest
@testable import Training

final class LabelsTests: XCTestCase {
    func testFromFileKeepsOrderTrimsAndSkipsBlankLines() throws {
        let dir = try TempFolder()
        let url = try dir.write("labels.txt", "spam\r\n  ham \n\nneutral\n")
        let labels = try LabelSet.fromFile(url)
        XCTAssertEqual(labels.names, ["spam", "ham", "neutral"])  // file order, not sorted
        XCTAssertEqual(labels.id(of: "ham"), 1)
        XCTAssertNil(labels.id(of: "eggs"))
        XCTAssertNil(labels.id(of: " ham "))
    }

    func testFromFileRejectsDuplicates() throws {
        let dir = try TempFolder()
        let url = try dir.write("labels.txt", "ham\nspam\n\nham\n")
        assertDataError(try LabelSet.fromFile(url), line: 4,
                        contains: ["labels.txt:4: duplicate label \"ham\" (already at line 1)", "once"])
    }

    func testFromFileRejectsEmptyFile() throws {
        let dir = try TempFolder()
        for content in ["", "\n \n\n"] {
            let url = try dir.write("labels.txt", content)
            assertDataError(try LabelSet.fromFile(url), line: nil, contains: ["labels file is empty", "one class name per line"])
        }
    }

    func testFromFileMissing() throws {
        let dir = try TempFolder()
        assertDataError(try LabelSet.fromFile(dir.url.appendingPathComponent("none.txt")), line: nil,
                        contains: ["no such file", "--labels"])
    }

    func testFromFileRejectsInvalidUTF8() throws {
        let dir = try TempFolder()
        let url = try dir.write("labels.txt", bytes: Array("a\nb".utf8) + [0xFF] + [0x0A])
        assertDataError(try LabelSet.fromFile(url), line: 2, contains: ["not valid UTF-8"])
    }

    func testInitRejectsDuplicatesAndEmpty() {
        XCTAssertThrowsError(try LabelSet(names: []))
        XCTAssertThrowsError(try LabelSet(names: ["a", "a"]))
        XCTAssertThrowsError(try LabelSet(names: ["a", ""]))
        XCTAssertNoThrow(try LabelSet(names: ["a"]))
    }

    func testInferredStringsSortByCodePointLikePython() throws {
        // Python: sorted(["positive", "Negative", "neutral", "é", "z"]) == ["Negative", "neutral", "positive", "z", "é"]
        let l = try LabelSet.inferred(from: ["positive", "neutral", "Negative", "positive", "é", "z"])
        XCTAssertEqual(l.names, ["Negative", "neutral", "positive", "z", "é"])
    }

    func testInferredIntegersSortNumerically() throws {
        XCTAssertEqual(try LabelSet.inferred(from: ["10", "2", "-1", "0", "2"]).names, ["-1", "0", "2", "10"])
        // Gaps are not filled (as run_glue.py): ids 0, 1, 2 for 0, 2, 5.
        XCTAssertEqual(try LabelSet.inferred(from: ["5", "0", "2"]).names, ["0", "2", "5"])
    }

    func testInferredMixedIntegerAndTextFallsBackToStrings() throws {
        XCTAssertEqual(try LabelSet.inferred(from: ["10", "2", "two"]).names, ["10", "2", "two"])
        // "1.0" and " 1" are not integer-looking.
        XCTAssertEqual(try LabelSet.inferred(from: ["2", "1.0"]).names, ["1.0", "2"])
        XCTAssertEqual(try LabelSet.inferred(from: ["10", " 1"]).names, [" 1", "10"])
    }

    func testInferredEmptyThrows() {
        XCTAssertThrowsError(try LabelSet.inferred(from: [String]()))
    }

    func testCodableRoundTrip() throws {
        let l = try LabelSet(names: ["spam", "ham"])
        let data = try JSONEncoder().encode(l)
        XCTAssertEqual(String(decoding: data, as: UTF8.self), #"{"names":["spam","ham"]}"#)
        let back = try JSONDecoder().decode(LabelSet.self, from: data)
        XCTAssertEqual(back, l)
        XCTAssertEqual(back.id(of: "ham"), 1)
        XCTAssertThrowsError(try JSONDecoder().decode(LabelSet.self, from: Data(#"{"names":["a","a"]}"#.utf8)))
    }
}
