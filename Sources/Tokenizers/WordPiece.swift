// WordPiece: the model stage of BERT tokenizers. Greedy longest-match-first over one pre-tokenized word, with
// `##` continuation pieces; a word longer than `maxInputCharsPerWord` scalars, or one that cannot be covered
// by the vocabulary, becomes a single `[UNK]` (exactly as `tokenizers`' WordPiece).
// It deliberately works on the word's UTF-8 bytes and two byte-keyed tables (plain pieces, and `##` pieces
// stored without the prefix) so no String is built per lookup. A class, so the per-word closures capture one
// reference instead of copying a dozen arrays. It does not normalize or split; see the
// Normalizer and PreTokenizer files.

final class WordPieceModel: Sendable {
    /// Token string -> id for every vocabulary entry.
    let vocab: [String: Int32]
    /// Id -> token string.
    let idToToken: [String]
    private let starts: ByteStringMap
    private let continuations: ByteStringMap
    let unkId: Int32
    let prefix: String
    let maxInputCharsPerWord: Int

    /// `vocab` maps tokens to ids; `unkToken` must be in it.
    init(vocab: [String: Int32], unkToken: String, prefix: String = "##", maxInputCharsPerWord: Int = 100,
         file: String) throws {
        guard let unk = vocab[unkToken] else {
            throw TokenizerError(file: file, message: "the unknown token \"\(unkToken)\" is not in the vocabulary",
                                 hint: "add it to the vocabulary or set unk_token to a token that exists")
        }
        self.vocab = vocab
        self.unkId = unk
        self.prefix = prefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        var table = [String](repeating: "", count: (vocab.values.max().map { Int($0) } ?? -1) + 1)
        var starts = ByteStringMap(capacity: vocab.count)
        var continuations = ByteStringMap(capacity: vocab.count / 4)
        let prefixBytes = Array(prefix.utf8)
        for (token, id) in vocab {
            table[Int(id)] = token
            let bytes = Array(token.utf8)
            starts.insert(bytes, value: id)
            if !prefixBytes.isEmpty && bytes.starts(with: prefixBytes) {
                continuations.insert(Array(bytes[prefixBytes.count...]), value: id)
            }
        }
        self.idToToken = table
        self.starts = starts
        self.continuations = continuations
    }

    /// Appends the pieces of one word (UTF-8 bytes, `chars` scalars long).
    @inline(__always)
    func tokenize(_ w: UnsafeBufferPointer<UInt8>, chars: Int, into ids: inout [Int32]) {
        if chars > maxInputCharsPerWord { ids.append(unkId); return }
        let raw = UnsafeRawBufferPointer(w)
        // Whole word first: by far the most common case, and it needs one lookup.
        if let id = starts.lookup(raw) { ids.append(id); return }
        let n = w.count
        let mark = ids.count
        var start = 0
        while start < n {
            var end = n
            var found: Int32? = nil
            while end > start {
                // Only cut at scalar boundaries (not before a UTF-8 continuation byte).
                if end == n || w[end] & 0xC0 != 0x80 {
                    let piece = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                    found = start == 0 ? starts.lookup(piece) : continuations.lookup(piece)
                    if found != nil { break }
                }
                end -= 1
            }
            guard let id = found else {
                ids.removeLast(ids.count - mark)
                ids.append(unkId)
                return
            }
            ids.append(id)
            start = end
        }
    }
}
