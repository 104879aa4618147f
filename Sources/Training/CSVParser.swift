// CSVParser: RFC 4180 records from a UTF-8 byte buffer (comma- or tab-separated), with the physical line each
// record starts on, so errors can name it.
//
// Deliberately not here: header/column mapping and label handling (DataLoader.swift), encoding checks and BOM
// stripping (done by the caller before parsing), type inference (every field is a String), and dialect sniffing.
//
// Rules, and where they are lenient on purpose:
// - A field that *starts* with `"` is quoted: it may contain the delimiter, CR/LF and `""` (one literal quote),
//   and must be followed by a delimiter, a line end or the end of the file.
// - A `"` in the middle of an unquoted field is kept literally (as Python's csv module and pandas do); tweets in TSV
//   files are full of them.
// - Records end at LF or CRLF; a lone CR stays in the field. Completely empty lines are skipped (pandas does the same).
// - A missing final line break is fine.

import Foundation

struct CSVRecord: Sendable, Equatable {
    var fields: [String]
    /// 1-based physical line the record starts on.
    var line: Int
}

enum CSVParser {
    private static let lf = UInt8(ascii: "\n")
    private static let cr = UInt8(ascii: "\r")
    private static let quote = UInt8(ascii: "\"")

    /// Parses every record of `bytes` (already valid UTF-8, BOM removed). `file` is only used in error messages.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, delimiter: UInt8, file: String) throws -> [CSVRecord] {
        let b = bytes
        let n = b.count
        var records: [CSVRecord] = []
        var scratch: [UInt8] = []  // reused buffer for quoted fields, which need un-escaping
        var i = 0
        var line = 1
        while i < n {
            // Skip empty lines between records.
            if b[i] == lf { line += 1; i += 1; continue }
            if b[i] == cr, i + 1 < n, b[i + 1] == lf { line += 1; i += 2; continue }

            let recordLine = line
            var fields: [String] = []
            fieldLoop: while true {
                if i < n, b[i] == quote {
                    let openLine = line
                    i += 1
                    scratch.removeAll(keepingCapacity: true)
                    var closed = false
                    while i < n {
                        let c = b[i]
                        if c == quote {
                            if i + 1 < n, b[i + 1] == quote { scratch.append(quote); i += 2; continue }
                            i += 1
                            closed = true
                            break
                        }
                        if c == lf { line += 1 }
                        scratch.append(c)
                        i += 1
                    }
                    guard closed else {
                        throw DataError(file: file, line: openLine,
                                        problem: "quoted field is never closed (the \" opened on this line has no matching \")",
                                        fix: "close the quote, and write a quote inside a quoted field as two quotes (\"\")")
                    }
                    fields.append(String(decoding: scratch, as: UTF8.self))
                    if i >= n { break fieldLoop }
                    let c = b[i]
                    if c == delimiter { i += 1; continue fieldLoop }
                    if c == lf { i += 1; line += 1; break fieldLoop }
                    if c == cr, i + 1 < n, b[i + 1] == lf { i += 2; line += 1; break fieldLoop }
                    throw DataError(file: file, line: line,
                                    problem: "unexpected text after the closing quote of a quoted field (field \(fields.count))",
                                    fix: "write a quote inside a quoted field as two quotes (\"\"), and put the \(delimiterName(delimiter)) right after the closing quote")
                } else {
                    let start = i
                    while i < n, b[i] != delimiter, b[i] != lf { i += 1 }
                    var end = i
                    // CRLF: the CR belongs to the line end, not the field.
                    if end > start, b[end - 1] == cr, i >= n || b[i] == lf { end -= 1 }
                    fields.append(String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self))
                    if i >= n { break fieldLoop }
                    if b[i] == delimiter { i += 1; continue fieldLoop }
                    i += 1  // LF
                    line += 1
                    break fieldLoop
                }
            }
            records.append(CSVRecord(fields: fields, line: recordLine))
        }
        return records
    }

    static func delimiterName(_ d: UInt8) -> String {
        d == UInt8(ascii: "\t") ? "tab" : d == UInt8(ascii: ",") ? "comma" : "delimiter"
    }
}
