// PreTokenizer: splits normalized text into words before the model sees them.
// - `BertWordSplitter` (BertPreTokenizer): split on whitespace (dropped) and isolate every punctuation char.
// - `ByteLevelPreTokenizer`: the GPT-2 regex
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   written by hand over UTF-8 (no NSRegularExpression: slow, and its \s and lookahead differ subtly).
// Deliberately not here: `add_prefix_space` (GPT-2 uses false; `loadTokenizer` rejects true) and offsets.

/// BertPreTokenizer fed one normalized scalar at a time; words come out as UTF-8 bytes plus their scalar count
/// (WordPiece's `max_input_chars_per_word` counts scalars).
struct BertWordSplitter {
    private var word: [UInt8] = []
    private var chars = 0

    init() { word.reserveCapacity(256) }

    @inline(__always)
    mutating func push(_ v: UInt32, _ onWord: (UnsafeBufferPointer<UInt8>, Int) -> Void) {
        if CharClass.isWhitespace(v) { flush(onWord); return }
        if CharClass.isBertPunctuation(v) {
            flush(onWord)
            appendUTF8(v, to: &word); chars = 1
            flush(onWord)
            return
        }
        appendUTF8(v, to: &word)
        chars += 1
    }

    @inline(__always)
    mutating func flush(_ onWord: (UnsafeBufferPointer<UInt8>, Int) -> Void) {
        guard chars > 0 else { return }
        word.withUnsafeBufferPointer { onWord($0, chars) }
        word.removeAll(keepingCapacity: true)
        chars = 0
    }
}

/// The GPT-2 split. Calls `emit(start, end)` with byte ranges of `p`, which together cover `p` exactly.
enum ByteLevelPreTokenizer {
    @inline(__always)
    static func split(_ p: UnsafeBufferPointer<UInt8>, _ emit: (Int, Int) -> Void) {
        let n = p.count
        var i = 0
        while i < n {
            let b = p[i]
            // 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, as in GPT-2)
            if b == 0x27 && i + 1 < n {
                let c = p[i + 1]
                if c == 0x73 || c == 0x74 || c == 0x6D || c == 0x64 { emit(i, i + 2); i += 2; continue }
                if i + 2 < n {
                    let d = p[i + 2]
                    if (c == 0x72 && d == 0x65) || (c == 0x76 && d == 0x65) || (c == 0x6C && d == 0x6C) {
                        emit(i, i + 3); i += 3; continue
                    }
                }
            }
            // ` ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+`: an optional single U+0020 then a run of one class.
            let s = (b == 0x20 && i + 1 < n) ? i + 1 : i
            let (v, len) = decodeScalar(p, s)
            let cls = CharClass.regexClass(v)
            if cls != .space {
                var k = s + len
                while k < n {
                    let (w, l) = decodeScalar(p, k)
                    if CharClass.regexClass(w) != cls { break }
                    k += l
                }
                emit(i, k); i = k
                continue
            }
            // `\s+(?!\S)|\s+`: the whitespace run, minus its last scalar when a non-space follows it (so that
            // scalar can prefix the next word), unless the run is a single scalar.
            var k = i
            var lastStart = i
            while k < n {
                let (w, l) = decodeScalar(p, k)
                if CharClass.regexClass(w) != .space { break }
                lastStart = k
                k += l
            }
            if k < n && lastStart > i { k = lastStart }
            emit(i, k); i = k
        }
    }
}
