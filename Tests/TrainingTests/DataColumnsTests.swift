// DataColumnsTests: data whose columns are named otherwise fails once, naming every missing or mistyped column and
// every flag to pass (issue 22: a CSV with other column names used to fail first on the text, then on the label).
// A single problem keeps its own message (DataCSVTests, DataJSONLTests).
import Foundation
import XCTest
@testable import Training

final class DataColumnsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("disttrain-columns-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func error(_ name: String, _ text: String, columns: ColumnOptions = ColumnOptions(), wantLabel: Bool = true) throws -> DataError {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        do {
            if wantLabel { _ = try DataLoader.loadLabeled(url, columns: columns, labels: nil) }
            else { _ = try DataLoader.loadTexts(url, columns: columns) }
        } catch let e as DataError {
            return e
        }
        XCTFail("\(name) loaded without an error")
        throw XCTSkip("no error")
    }

    func testCSVWithOtherColumnNamesNamesTextAndLabelAtOnce() throws {
        let e = try error("reviews.csv", "review,sentiment\ngreat film,pos\n")
        XCTAssertEqual(e.line, 1)
        XCTAssertEqual(e.problem, "missing columns \"text\" and \"label\" (columns found: \"review\", \"sentiment\")")
        XCTAssertEqual(e.fix, "name them in the header row, or pass --text-column and --label-column with columns found")
        XCTAssertFalse(e.description.contains("\n"))
    }

    func testCSVWithAPairColumnMissingToo() throws {
        let e = try error("pairs.csv", "q,a,y\nx,y,1\n", columns: ColumnOptions(text: "question", textPair: "answer", label: "label"))
        XCTAssertEqual(e.problem, "missing columns \"question\", \"answer\" and \"label\" (columns found: \"q\", \"a\", \"y\")")
        XCTAssertTrue(e.fix.contains("--text-column, --text-pair-column and --label-column"), e.fix)
    }

    func testTSVReadAsCSVSaysSoForAllColumns() throws {
        let e = try error("data.csv", "review\tsentiment\ngreat\tpos\n")
        XCTAssertTrue(e.problem.hasPrefix("missing columns \"text\" and \"label\" (the header has no commas but has tabs"), e.problem)
    }

    func testOneMissingCSVColumnKeepsItsMessage() throws {
        let e = try error("one.csv", "text,sentiment\nhi,pos\n")
        XCTAssertEqual(e.problem, "missing column \"label\" (columns found: \"text\", \"sentiment\")")
        XCTAssertTrue(e.fix.contains("--label-column"), e.fix)
    }

    func testPredictNeedsNoLabelColumn() throws {
        let e = try error("texts.csv", "review,sentiment\ngreat,pos\n", wantLabel: false)
        XCTAssertEqual(e.problem, "missing column \"text\" (columns found: \"review\", \"sentiment\")", "only the text is missing for predict")
    }

    func testJSONLWithOtherKeysNamesTextAndLabelAtOnce() throws {
        let e = try error("reviews.jsonl", "{\"review\": \"great film\", \"sentiment\": \"pos\"}\n")
        XCTAssertEqual(e.line, 1)
        XCTAssertEqual(e.problem, "missing columns \"text\" and \"label\" (keys on this line: \"review\", \"sentiment\")")
        XCTAssertEqual(e.fix, "add them to every line, or pass --text-column and --label-column naming the keys that hold them")
    }

    func testJSONLMissingLabelAndMistypedTextTogether() throws {
        let e = try error("mixed.jsonl", "{\"text\": 5, \"stars\": 4}\n")
        XCTAssertEqual(e.problem, "missing column \"label\"; \"text\" is a number (5), not a string (keys on this line: \"stars\", \"text\")")
        XCTAssertTrue(e.fix.contains("--label-column") && e.fix.contains("JSON strings"), e.fix)
    }

    func testOneMissingJSONLKeyKeepsItsMessage() throws {
        let e = try error("one.jsonl", "{\"text\": \"hi\", \"stars\": 4}\n")
        XCTAssertEqual(e.problem, "missing label column \"label\" (keys on this line: \"stars\", \"text\")")
    }
}
