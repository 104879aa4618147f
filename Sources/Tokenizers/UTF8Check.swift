// UTF8Check: strict UTF-8 validation that reports *where* the first bad byte is, so an error can name the line
// (the tokenizer's JSON-lines reader, Training's data and label files).
//
// Deliberately not a decoder: once a buffer passes, callers build Strings with `String(decoding:as:)`, which is
// then lossless. Swift's own validating initialisers only say yes or no, which is why this exists.

public enum UTF8Check {
    /// Offset of the first byte that is not part of a well-formed UTF-8 sequence (Unicode §3.9, table 3-7:
    /// no overlong forms, no surrogates, nothing above U+10FFFF), or nil if the whole buffer is valid.
    public static func firstInvalidOffset(_ bytes: some Collection<UInt8>) -> Int? {
        // Work on contiguous storage when available; the loops below are the hot path for large files.
        if let r = bytes.withContiguousStorageIfAvailable({ scan($0) }) { return r }
        return Array(bytes).withUnsafeBufferPointer { scan($0) }
    }

    private static func scan(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        let n = b.count
        var i = 0
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            // (length, allowed range of the second byte) per table 3-7; later bytes are always 80...BF.
            let len: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: len = 2
            case 0xE0: len = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: len = 3
            case 0xED: len = 3; hi = 0x9F          // excludes UTF-16 surrogates
            case 0xF0: len = 4; lo = 0x90
            case 0xF1...0xF3: len = 4
            case 0xF4: len = 4; hi = 0x8F          // caps at U+10FFFF
            default: return i                      // stray continuation byte, C0/C1 overlong lead, F5...FF
            }
            guard i + len <= n else { return i }
            guard b[i + 1] >= lo && b[i + 1] <= hi else { return i }
            for k in 2..<len where b[i + k] < 0x80 || b[i + k] > 0xBF { return i }
            i += len
        }
        return nil
    }

    /// 1-based line number of byte `offset` (count of LF bytes before it, plus one).
    public static func line(at offset: Int, in bytes: some Collection<UInt8>) -> Int {
        var line = 1
        for (k, c) in bytes.enumerated() {
            if k >= offset { break }
            if c == UInt8(ascii: "\n") { line += 1 }
        }
        return line
    }
}
