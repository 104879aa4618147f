// DataTestSupport: an assertion for one-line `DataError`s (the throwaway TempFolder comes from TestSupport).
//
// Deliberately not a fixture store: every test writes the few bytes it needs, so the test shows its input and
// nothing is read from outside the temp folder.

import Foundation
import XCTest
@_exported import TestSupport
@testable import Training

/// Asserts that `body` throws a `DataError` on `line` (nil: no line) whose one-line description contains every
/// fragment, and returns it for further checks.
@discardableResult
func assertDataError<T>(_ body: @autoclosure () throws -> T, line expectedLine: Int?, contains fragments: [String],
                        file: StaticString = #filePath, line testLine: UInt = #line) -> DataError? {
    do {
        _ = try body()
        XCTFail("expected a DataError, but nothing was thrown", file: file, line: testLine)
        return nil
    } catch let error as DataError {
        let text = error.description
        XCTAssertEqual(error.line, expectedLine, "wrong line in: \(text)", file: file, line: testLine)
        XCTAssertFalse(text.contains("\n") || text.contains("\r"), "not one line: \(text)", file: file, line: testLine)
        let location = expectedLine.map { "\(error.file):\($0): " } ?? "\(error.file): "
        XCTAssertTrue(text.hasPrefix(location), "expected to start with \(location): \(text)", file: file, line: testLine)
        XCTAssertTrue(text.contains("; "), "no fix after the problem: \(text)", file: file, line: testLine)
        for f in fragments {
            XCTAssertTrue(text.contains(f), "missing \(f.debugDescription) in: \(text)", file: file, line: testLine)
        }
        return error
    } catch {
        XCTFail("expected a DataError, got \(type(of: error)): \(error)", file: file, line: testLine)
        return nil
    }
}
