// WordSpans: the words BertNormalizer + BertPreTokenizer cut a text into, as ranges of Unicode scalar offsets
// (Python string indices) in the ORIGINAL text: what token-classification `predict` needs to report entities with
// character offsets, as transformers' pipeline does from the fast tokenizer's offset mapping.
// Rules (mirroring Normalizer.swift and PreTokenizer.swift): whitespace ends a word; a punctuation character and a
// CJK ideograph are words of their own; characters clean_text drops (control/format, NUL, U+FFFD) neither end nor
// start a word. Deliberately not here: sub-word offsets (each word is then tokenized alone: WordPiece never crosses
// a pre-tokenizer word), byte-level BPE (GPT-2 has no token-classification head here).
public enum WordSpans {
    /// The BERT pre-tokenizer words of `text`, in scalar offsets [start, end).
    public static func bert(_ text: String) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start: Int? = nil, end = 0
        func flush() { if let s = start { out.append(s..<end) }; start = nil }
        for (i, u) in text.unicodeScalars.enumerated() {
            let v = u.value
            if v == 0 || v == 0xFFFD || (v < 0x80 ? (v < 0x20 && v != 0x09 && v != 0x0A && v != 0x0D) || v == 0x7F : CharClass.isOther(v)) {
                continue
            }
            if CharClass.isWhitespace(v) { flush(); continue }
            if CharClass.isBertPunctuation(v) || CharClass.isChinese(v) {
                flush(); out.append(i..<(i + 1)); continue
            }
            if start == nil { start = i }
            end = i + 1
        }
        flush()
        return out
    }
}
