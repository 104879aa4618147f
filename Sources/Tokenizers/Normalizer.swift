// Normalizer: `BertNormalizer` (clean text, isolate CJK, strip accents, lowercase), scalar by scalar.
// It deliberately produces a stream of scalars rather than a new String, so the pre-tokenizer can consume it
// without allocating; and it does not track offsets (the trainer has no use for them).
// Only BertNormalizer (or none) is supported; `loadTokenizer` rejects any other normalizer type loudly.
import Foundation

/// `tokenizers`' BertNormalizer. The order matters and is the library's: clean -> CJK -> strip accents -> lowercase.
struct BertNormalizer: Sendable {
    /// Drop NUL, U+FFFD and control/format/unassigned characters; map whitespace to a space.
    var cleanText = true
    /// Put spaces around CJK ideographs so each becomes its own word.
    var handleChineseChars = true
    /// NFD then drop non-spacing marks. `nil` in the configuration means "same as lowercase".
    var stripAccents = true
    /// Full Unicode lowercase mapping, one scalar at a time (as Rust `char::to_lowercase`).
    var lowercase = true

    init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool?, lowercase: Bool = true) {
        self.cleanText = cleanText
        self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents ?? lowercase
        self.lowercase = lowercase
    }

    /// Feeds the normalized scalars of `p` to `emit`. ASCII takes a table-free fast path; each maximal run of
    /// non-ASCII bytes is NFD-decomposed on its own, which is exact because ASCII characters are canonical
    /// starters that never decompose or reorder.
    @inline(__always)
    func normalize(_ p: UnsafeBufferPointer<UInt8>, _ emit: (UInt32) -> Void) {
        let n = p.count
        var i = 0
        while i < n {
            let b = p[i]
            if b < 0x80 {
                i += 1
                if cleanText {
                    if b == 0x09 || b == 0x0A || b == 0x0D { emit(0x20); continue }
                    if b < 0x20 || b == 0x7F { continue }   // Cc (NUL included): dropped
                }
                emit(lowercase && b >= 0x41 && b <= 0x5A ? UInt32(b | 0x20) : UInt32(b))
                continue
            }
            var j = i + 1
            while j < n && p[j] >= 0x80 { j += 1 }
            if stripAccents {
                let run = String(decoding: UnsafeBufferPointer(rebasing: p[i..<j]), as: UTF8.self)
                for u in run.decomposedStringWithCanonicalMapping.unicodeScalars { normalizeScalar(u.value, emit) }
            } else {
                var k = i
                while k < j {
                    let (v, len) = decodeScalar(p, k)
                    normalizeScalar(v, emit)
                    k += len
                }
            }
            i = j
        }
    }

    @inline(__always)
    private func normalizeScalar(_ v: UInt32, _ emit: (UInt32) -> Void) {
        if v < 0x80 {   // NFD can yield ASCII (e.g. U+212A KELVIN SIGN -> K)
            if cleanText {
                if v == 0x09 || v == 0x0A || v == 0x0D { emit(0x20); return }
                if v < 0x20 || v == 0x7F { return }
            }
            emit(lowercase && v >= 0x41 && v <= 0x5A ? v | 0x20 : v)
            return
        }
        if cleanText {
            if v == 0xFFFD || CharClass.isOther(v) { return }
            if CharClass.isWhitespace(v) { emit(0x20); return }
        }
        if handleChineseChars && CharClass.isChinese(v) {
            emit(0x20); emit(v); emit(0x20)
            return
        }
        let s = scalar(v)
        if stripAccents && CharClass.bertCategory(s) == .nonspacingMark { return }
        if lowercase && s.properties.changesWhenLowercased {
            for l in s.properties.lowercaseMapping.unicodeScalars { emit(l.value) }
            return
        }
        emit(v)
    }
}
