// Decoder: ids back to text. `WordPieceDecoder` joins pieces with spaces, glues `##` continuations and applies
// `tokenizers`' cleanup (" ." -> "." etc.); `ByteLevelDecoder` maps byte-level characters back to bytes and
// decodes UTF-8 with U+FFFD for invalid sequences (Swift's repair, like Rust's `from_utf8_lossy`, replaces
// each maximal invalid subpart with one U+FFFD).
// Deliberately not here: transformers' Python-side `clean_up_tokenization_spaces` for GPT-2 (off in the goldens).

struct WordPieceDecoder: Sendable {
    var prefix = "##"
    var cleanup = true

    func decode(_ tokens: [String]) -> String {
        var out = ""
        for (i, token) in tokens.enumerated() {
            var t = token
            if i != 0 {
                if t.hasPrefix(prefix) { t.removeFirst(prefix.count) } else { t = " " + t }
            }
            if cleanup { t = WordPieceDecoder.cleanup(t) }
            out += t
        }
        return out
    }

    /// `tokenizers`' `decoders::wordpiece::cleanup`, applied to each token as the library does.
    static func cleanup(_ s: String) -> String {
        guard s.contains(" ") else { return s }
        return s.replacingAll(" .", ".").replacingAll(" ?", "?").replacingAll(" !", "!").replacingAll(" ,", ",")
            .replacingAll(" ' ", "'").replacingAll(" n't", "n't").replacingAll(" 'm", "'m")
            .replacingAll(" do not", " don't").replacingAll(" 's", "'s").replacingAll(" 've", "'ve")
            .replacingAll(" 're", "'re")
    }
}

enum ByteLevelDecoder {
    static func decode(_ ids: [Int32], bytesOf: [[UInt8]], skip: (Int32) -> Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && Int(id) < bytesOf.count && !skip(id) {
            bytes.append(contentsOf: bytesOf[Int(id)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    /// Non-overlapping left-to-right replacement (Rust `str::replace`), without Foundation.
    func replacingAll(_ target: String, _ replacement: String) -> String {
        let t = Array(target.utf8)
        let s = Array(self.utf8)
        guard !t.isEmpty, s.count >= t.count else { return self }
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = 0
        var changed = false
        while i < s.count {
            if i + t.count <= s.count && s[i] == t[0] && s[i..<(i + t.count)].elementsEqual(t) {
                out.append(contentsOf: replacement.utf8); i += t.count; changed = true
            } else {
                out.append(s[i]); i += 1
            }
        }
        return changed ? String(decoding: out, as: UTF8.self) : self
    }
}
