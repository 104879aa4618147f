// JSONLines: the core of `disttrain tokenize`: JSON lines {"text": ..., "text_pair"?: ...} in, one
// {"ids": [...], "tokens": [...], "token_type_ids": [...]} line out per input line. It lives in this target (not
// the CLI) so the tests can drive it, including its error paths, without spawning a process.
// It deliberately does no padding and no batching; empty lines are skipped.
import Foundation

public enum JSONLines {
    /// Reads the texts of a JSON-lines file, validating UTF-8 and JSON line by line. Errors name `path:line`.
    public static func readRecords(_ data: Data, path: String) throws -> [(text: String, pair: String?)] {
        var out: [(text: String, pair: String?)] = []
        let decoder = JSONDecoder()
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            try forEachLine(raw.bindMemory(to: UInt8.self)) { line, lineNo in
                if let bad = UTF8Check.firstInvalidOffset(line) {
                    throw TokenizerError(file: "\(path):\(lineNo)", message: "invalid UTF-8 at byte \(bad + 1) of the line",
                                         hint: "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
                }
                // JSONDecoder, not JSONSerialization: the latter drops a U+FEFF at the start of a string value.
                let record: Record
                do { record = try decoder.decode(Record.self, from: Data(line)) } catch DecodingError.dataCorrupted {
                    throw TokenizerError(file: "\(path):\(lineNo)", message: "bad JSON",
                                         hint: "each line must be one JSON object like {\"text\": \"...\"}")
                } catch {
                    throw TokenizerError(file: "\(path):\(lineNo)", message: "no string field \"text\" (or a non-string \"text_pair\")",
                                         hint: "each line must be one JSON object like {\"text\": \"...\", \"text_pair\": \"...\"}")
                }
                out.append((record.text, record.text_pair))
            }
        }
        return out
    }

    private struct Record: Decodable {
        var text: String
        var text_pair: String?
    }

    /// The JSON-lines line loop every reader shares (this one, Training's data readers): calls `body(line, number)`
    /// for each line of `bytes` (split at LF, the LF not included, numbered from 1) that holds anything besides
    /// spaces, tabs and CRs. A CR before the LF stays in the line (JSON parsers take it as white space).
    public static func forEachLine(_ bytes: UnsafeBufferPointer<UInt8>,
                                   _ body: (_ line: UnsafeBufferPointer<UInt8>, _ number: Int) throws -> Void) rethrows {
        var start = 0
        var number = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            number += 1
            let line = UnsafeBufferPointer(rebasing: bytes[start..<end])
            start = end + 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            try body(line, number)
        }
    }

    /// The lines of `data` that parse as JSON objects, in order; every other line is skipped. For reading back
    /// files this program wrote (metrics.jsonl, bench output), where a torn line must not fail the reader.
    public static func lenientObjects(_ data: Data) -> [[String: Any]] {
        var out: [[String: Any]] = []
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            forEachLine(raw.bindMemory(to: UInt8.self)) { line, _ in
                if let o = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] { out.append(o) }
            }
        }
        return out
    }

    /// One output line (no trailing newline).
    public static func render(_ e: Encoding) -> String {
        var s = "{\"ids\": ["
        s.reserveCapacity(e.ids.count * 16 + 64)
        for (i, id) in e.ids.enumerated() { if i > 0 { s += ", " }; s += String(id) }
        s += "], \"tokens\": ["
        for (i, t) in e.tokens.enumerated() { if i > 0 { s += ", " }; appendJSONString(t, to: &s) }
        s += "], \"token_type_ids\": ["
        for (i, t) in e.typeIds.enumerated() { if i > 0 { s += ", " }; s += String(t) }
        s += "]}"
        return s
    }

    /// The one JSON-line encoder for number records (metrics.jsonl, eval_results.json, the log): sorted keys, `": "`
    /// and `", "` separators, integral values without a fraction, non-finite values as null; then the `raw` fields,
    /// each value already JSON (e.g. a confusion matrix), in the order given. No trailing newline.
    public static func objectLine(_ m: [String: Double], appending raw: [(key: String, json: String)] = []) -> String {
        var s = "{"
        for (i, (k, json)) in (m.keys.sorted().map { ($0, number(m[$0]!)) } + raw.map { ($0.key, $0.json) }).enumerated() {
            if i > 0 { s += ", " }
            appendJSONString(k, to: &s)
            s += ": " + json
        }
        return s + "}"
    }

    /// A number as `objectLine` writes it: integral values below 1e15 without a fraction, non-finite values as null.
    public static func number(_ v: Double) -> String {
        if !v.isFinite { return "null" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// Appends `t` as a JSON string literal (quotes, backslash and control characters escaped; the rest verbatim).
    public static func appendJSONString(_ t: String, to s: inout String) {
        s += "\""
        for u in t.unicodeScalars {
            switch u {
            case "\"": s += "\\\""
            case "\\": s += "\\\\"
            case "\n": s += "\\n"
            case "\r": s += "\\r"
            case "\t": s += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let hex = String(u.value, radix: 16)
                    s += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    s.unicodeScalars.append(u)
                }
            }
        }
        s += "\""
    }
}
