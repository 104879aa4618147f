// AddedTokens: finds added/special tokens (`[CLS]`, `<|endoftext|>`, ...) in raw text before anything else
// runs, so they are never normalized or split, and a literal `[CLS]` in the text IS the special token (as in
// `tokenizers`). Matching is leftmost-longest, like its Aho-Corasick pass.
// Deliberately unsupported: `lstrip`/`rstrip`/`single_word`, and matching `normalized: true` tokens on the
// normalized text; `loadTokenizer` rejects tokenizer.json files that rely on either.

struct AddedToken: Sendable {
    var content: String
    var id: Int32
    var special: Bool
}

struct AddedTokenMatcher: Sendable {
    let tokens: [AddedToken]
    /// Per first byte: indices into `patterns`, longest first.
    private let byFirstByte: [[Int]]
    private let patterns: [[UInt8]]
    private let patternIds: [Int32]

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        let nonEmpty = tokens.filter { !$0.content.isEmpty }
        let pats = nonEmpty.map { Array($0.content.utf8) }
        patterns = pats
        patternIds = nonEmpty.map(\.id)
        var first = [[Int]](repeating: [], count: 256)
        for (i, p) in pats.enumerated() { first[Int(p[0])].append(i) }
        for b in 0..<256 { first[b].sort { pats[$0].count > pats[$1].count } }
        byFirstByte = first
    }

    var specialTokens: [String: Int32] {
        var out: [String: Int32] = [:]
        for t in tokens where t.special { out[t.content] = t.id }
        return out
    }

    var specialIds: Set<Int32> { Set(tokens.filter(\.special).map(\.id)) }

    /// Calls `body(segment, nil)` for each stretch of ordinary text and `body(empty, id)` for each added token,
    /// in order. Empty stretches are skipped.
    @inline(__always)
    func split(_ p: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>, Int32?) -> Void) {
        if patterns.isEmpty { if p.count > 0 { body(p, nil) }; return }
        let n = p.count
        var segmentStart = 0
        var i = 0
        while i < n {
            let candidates = byFirstByte[Int(p[i])]
            var matched = -1
            for c in candidates {
                let pat = patterns[c]
                if i + pat.count <= n && pat.withUnsafeBufferPointer({ q in
                    var k = 1
                    while k < q.count && q[k] == p[i + k] { k += 1 }
                    return k == q.count
                }) { matched = c; break }
            }
            if matched < 0 { i += 1; continue }
            if i > segmentStart { body(UnsafeBufferPointer(rebasing: p[segmentStart..<i]), nil) }
            body(UnsafeBufferPointer(rebasing: p[i..<i]), patternIds[matched])
            i += patterns[matched].count
            segmentStart = i
        }
        if n > segmentStart { body(UnsafeBufferPointer(rebasing: p[segmentStart..<n]), nil) }
    }
}
