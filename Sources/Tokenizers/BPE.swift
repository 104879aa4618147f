// BPE: the byte-level BPE model of GPT-2 style tokenizers, plus the byte <-> unicode map it relies on.
// A pre-tokenized word's bytes start as one symbol per byte; the pair with the lowest merge rank is merged
// (leftmost on ties) until no listed pair remains, which is what `tokenizers` computes. Pair ranks live in a
// hash map keyed by (id, id); finished words are cached.
// Deliberately not supported: dropout, `continuing_subword_prefix`/`end_of_word_suffix`, `byte_fallback`,
// `ignore_merges` and non-byte-level BPE (`loadTokenizer` rejects such configurations instead of guessing).
import Synchronization

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100...
enum ByteUnicode {
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable { table[b] = UInt32(b) } else { table[b] = next; next += 1 }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s] = UInt8(b) }
        return map
    }()

    /// The byte-level string of raw bytes (e.g. " the" -> "Ġthe").
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }

    /// The raw bytes of a byte-level string, or nil if some character is outside the map.
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for u in token.unicodeScalars {
            guard let b = scalarToByte[u.value] else { return nil }
            out.append(b)
        }
        return out
    }
}

/// Words of at most this many bytes are cached; longer ones are rare and would only churn the cache.
private let maxCachedWordBytes = 64
/// The cache is emptied when it holds this many words (a few MB), which bounds memory on endless streams.
private let maxCachedWords = 200_000

/// The finished-word cache. Locked so one tokenizer can be shared between threads; uncontended, a lock costs
/// nanoseconds next to the microseconds a merge loop takes.
final class BPEWordCache: Sendable {
    private struct State {
        var index = ByteStringMap(capacity: 1 << 14)
        var ids: [Int32] = []   // per word: count, then the ids
    }
    private let state = Mutex(State())

    /// Appends the cached ids of `word` and returns true, or returns false on a miss.
    @inline(__always)
    func lookup(_ word: UnsafeRawBufferPointer, into out: inout [Int32]) -> Bool {
        state.withLock { st in
            guard let at = st.index.lookup(word) else { return false }
            let start = Int(at)
            let count = Int(st.ids[start])
            out.append(contentsOf: st.ids[(start + 1)...(start + count)])
            return true
        }
    }

    func insert(_ word: UnsafeRawBufferPointer, ids: ArraySlice<Int32>) {
        state.withLock { st in
            if st.index.count >= maxCachedWords { st.index.removeAll(); st.ids.removeAll(keepingCapacity: true) }
            st.index.insert(word, value: Int32(st.ids.count))
            st.ids.append(Int32(ids.count))
            st.ids.append(contentsOf: ids)
        }
    }
}

final class BPEModel: Sendable {
    /// Byte-level token string -> id.
    let vocab: [String: Int32]
    /// Id -> byte-level token string.
    let idToToken: [String]
    /// Id -> raw bytes, for decoding (empty for ids with no vocabulary entry).
    let idToBytes: [[UInt8]]
    /// The id of each single byte's token, -1 where the vocabulary lacks it (such bytes are dropped, as
    /// `tokenizers` does when the model has no unk token).
    private let byteIds: [Int32]
    private let merges: PairMap
    private let cache = BPEWordCache()

    /// `merges` are (left, right) token strings in rank order; `mergesFile` names them in errors.
    init(vocab: [String: Int32], merges: [(String, String, line: Int)], vocabFile: String, mergesFile: String) throws {
        self.vocab = vocab
        let size = (vocab.values.max().map { Int($0) } ?? -1) + 1
        var table = [String](repeating: "", count: size)
        var bytes = [[UInt8]](repeating: [], count: size)
        for (token, id) in vocab {
            guard id >= 0 else {
                throw TokenizerError(file: vocabFile, message: "token \"\(token)\" has negative id \(id)",
                                     hint: "ids must be 0..<vocab size")
            }
            table[Int(id)] = token
            bytes[Int(id)] = ByteUnicode.decode(token) ?? Array(token.utf8)
        }
        self.idToToken = table
        self.idToBytes = bytes
        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            byteIds[b] = vocab[ByteUnicode.encode([UInt8(b)])] ?? -1
        }
        self.byteIds = byteIds
        var pairs = PairMap(capacity: merges.count)
        for (rank, merge) in merges.enumerated() {
            func id(_ t: String) throws -> Int32 {
                guard let id = vocab[t] else {
                    throw TokenizerError(file: "\(mergesFile):\(merge.line)",
                                         message: "merge \"\(merge.0) \(merge.1)\" uses token \"\(t)\" which is not in \(vocabFile)",
                                         hint: "use the vocab.json and merges.txt that were saved together")
                }
                return id
            }
            let a = try id(merge.0), b = try id(merge.1), m = try id(merge.0 + merge.1)
            pairs.insertIfAbsent(a, b, rank: UInt32(rank), merged: m)
        }
        self.merges = pairs
    }

    /// Appends the ids of one pre-tokenized word (raw bytes).
    @inline(__always)
    func tokenize(_ word: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], scratch: inout [Int32],
                  ranks: inout [UInt64]) {
        let raw = UnsafeRawBufferPointer(word)
        let cacheable = word.count <= maxCachedWordBytes
        if cacheable && cache.lookup(raw, into: &ids) { return }
        let mark = ids.count
        merge(word, into: &ids, symbols: &scratch, ranks: &ranks)
        if cacheable { cache.insert(raw, ids: ids[mark...]) }
    }

    /// Above this many symbols the quadratic scan gives way to a heap (a 100 kB run of "=" must not hang).
    static let heapThreshold = 48

    /// Merges one word. Short words rescan a flat rank array (fast for the usual 2-10 symbols); long ones
    /// use a priority queue. Both apply the lowest-rank pair first, leftmost on ties, as `tokenizers` does.
    func merge(_ word: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], symbols: inout [Int32],
               ranks: inout [UInt64], heapThreshold: Int = BPEModel.heapThreshold) {
        symbols.removeAll(keepingCapacity: true)
        for b in word {
            let id = byteIds[Int(b)]
            if id >= 0 { symbols.append(id) }
        }
        if symbols.count < 2 { ids.append(contentsOf: symbols); return }
        if symbols.count > heapThreshold {
            mergeWithHeap(&symbols, into: &ids)
        } else {
            mergeByScan(&symbols, into: &ids, ranks: &ranks)
        }
    }

    /// `ranks[i]` holds the packed (rank, merged id) of the pair (symbols[i], symbols[i+1]); after a merge only
    /// the two neighbouring pairs are looked up again.
    private func mergeByScan(_ symbols: inout [Int32], into ids: inout [Int32], ranks: inout [UInt64]) {
        var n = symbols.count
        ranks.removeAll(keepingCapacity: true)
        for i in 0..<(n - 1) { ranks.append(merges.lookup(symbols[i], symbols[i + 1])) }
        symbols.withUnsafeMutableBufferPointer { sym in
            ranks.withUnsafeMutableBufferPointer { rk in
                while n > 1 {
                    var best = UInt64.max
                    var at = -1
                    for i in 0..<(n - 1) where rk[i] < best { best = rk[i]; at = i }   // strict <: leftmost wins
                    if at < 0 { break }
                    sym[at] = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: best))
                    // Remove symbol at+1 and pair slot at (its pair became the merged symbol).
                    var j = at + 1
                    while j < n - 1 { sym[j] = sym[j + 1]; j += 1 }
                    j = at
                    while j < n - 2 { rk[j] = rk[j + 1]; j += 1 }
                    n -= 1
                    if at > 0 { rk[at - 1] = merges.lookup(sym[at - 1], sym[at]) }
                    if at < n - 1 { rk[at] = merges.lookup(sym[at], sym[at + 1]) }
                }
            }
        }
        ids.append(contentsOf: symbols[0..<n])
    }

    /// Linked symbols plus a min-heap of (rank << 32 | position). Stale entries (a side already merged away)
    /// are detected on pop by looking the pair up again, the way `tokenizers`' `Word::merge_all` does.
    private func mergeWithHeap(_ symbols: inout [Int32], into ids: inout [Int32]) {
        let n = symbols.count
        var next = [Int32](unsafeUninitializedCapacity: n) { b, c in for i in 0..<n { b[i] = Int32(i + 1) }; c = n }
        next[n - 1] = -1
        var prev = [Int32](unsafeUninitializedCapacity: n) { b, c in for i in 0..<n { b[i] = Int32(i - 1) }; c = n }
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            let r = merges.lookup(symbols[i], symbols[i + 1])
            if r != UInt64.max { heap.push((r >> 32) << 32 | UInt64(i)) }
        }
        while let top = heap.pop() {
            let pos = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            let r = merges.lookup(symbols[pos], symbols[right])
            guard r != UInt64.max, r >> 32 == rank else { continue }   // stale: the pair changed
            symbols[pos] = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: r))
            alive[right] = false
            next[pos] = next[right]
            if next[pos] >= 0 { prev[Int(next[pos])] = Int32(pos) }
            if prev[pos] >= 0 {
                let l = Int(prev[pos])
                let lr = merges.lookup(symbols[l], symbols[pos])
                if lr != UInt64.max { heap.push((lr >> 32) << 32 | UInt64(l)) }
            }
            if next[pos] >= 0 {
                let rr = merges.lookup(symbols[pos], symbols[Int(next[pos])])
                if rr != UInt64.max { heap.push((rr >> 32) << 32 | UInt64(pos)) }
            }
        }
        var i = 0
        while i >= 0 { ids.append(symbols[i]); i = Int(next[i]) }
    }
}

/// A binary min-heap of UInt64 keys (rank in the high half, position in the low half: leftmost wins ties).
struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ x: UInt64) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[p] <= x { break }
            items[i] = items[p]
            i = p
        }
        items[i] = x
    }

    mutating func pop() -> UInt64? {
        guard let last = items.popLast() else { return nil }
        guard !items.isEmpty else { return last }
        let top = items[0]
        let n = items.count
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            let c = (l + 1 < n && items[l + 1] < items[l]) ? l + 1 : l
            if items[c] >= last { break }
            items[i] = items[c]
            i = c
        }
        items[i] = last
        return top
    }
}
