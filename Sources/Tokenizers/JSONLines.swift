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
            let bytes = raw.bindMemory(to: UInt8.self)
            var lineNo = 0
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != 0x0A { end += 1 }
                lineNo += 1
                var lineEnd = end
                if lineEnd > start && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeBufferPointer(rebasing: bytes[start..<lineEnd])
                start = end + 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                if let bad = firstInvalidUTF8(line) {
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

    static func appendJSONString(_ t: String, to s: inout String) {
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

    /// Offset of the first byte that starts an invalid UTF-8 sequence, or nil.
    static func firstInvalidUTF8(_ p: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        let n = p.count
        while i < n {
            let b = p[i]
            if b < 0x80 { i += 1; continue }
            let len: Int, lo: UInt8, hi: UInt8   // allowed range of the second byte
            switch b {
            case 0xC2...0xDF: len = 2; lo = 0x80; hi = 0xBF
            case 0xE0: len = 3; lo = 0xA0; hi = 0xBF
            case 0xE1...0xEC, 0xEE...0xEF: len = 3; lo = 0x80; hi = 0xBF
            case 0xED: len = 3; lo = 0x80; hi = 0x9F          // no surrogates
            case 0xF0: len = 4; lo = 0x90; hi = 0xBF
            case 0xF1...0xF3: len = 4; lo = 0x80; hi = 0xBF
            case 0xF4: len = 4; lo = 0x80; hi = 0x8F
            default: return i
            }
            if i + len > n || p[i + 1] < lo || p[i + 1] > hi { return i }
            for k in 2..<len where p[i + k] & 0xC0 != 0x80 { return i }
            i += len
        }
        return nil
    }
}
