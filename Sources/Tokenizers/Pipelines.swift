// Pipelines: the two concrete tokenizers, each wiring its stages together (added-token split -> normalizer ->
// pre-tokenizer -> model -> post-processor; decoder for the way back).
// They are deliberately concrete structs rather than a chain of existentials: the stages are fused into one
// pass over the UTF-8 bytes with no per-stage String, which is where the speed comes from.

/// BERT-style: BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing, WordPiece decoder.
public struct WordPieceTokenizer: PipelineTokenizer {
    let normalizer: BertNormalizer?
    let model: WordPieceModel
    let addedTokens: AddedTokenMatcher
    let postProcessor: TemplateProcessing
    let decoder: WordPieceDecoder
    let idToToken: [String]
    let tokenToId: [String: Int32]
    let specialIds: Set<Int32>
    public let padTokenId: Int32?

    init(normalizer: BertNormalizer?, model: WordPieceModel, addedTokens: [AddedToken],
         postProcessor: TemplateProcessing, decoder: WordPieceDecoder, padToken: String?) {
        self.normalizer = normalizer
        self.model = model
        self.addedTokens = AddedTokenMatcher(addedTokens)
        self.postProcessor = postProcessor
        self.decoder = decoder
        let (table, map) = mergeVocab(model.idToToken, model.vocab, addedTokens)
        (self.idToToken, self.tokenToId) = (table, map)
        self.specialIds = self.addedTokens.specialIds
        self.padTokenId = padToken.flatMap { map[$0] }
    }

    public func tokenId(_ token: String) -> Int32? { tokenToId[token] }

    func encodeSegment(_ p: UnsafeBufferPointer<UInt8>, into ids: inout [Int32]) {
        var splitter = BertWordSplitter()
        let model = self.model
        if let normalizer {
            normalizer.normalize(p) { v in
                splitter.push(v) { w, chars in model.tokenize(w, chars: chars, into: &ids) }
            }
        } else {
            var i = 0
            while i < p.count {
                let (v, len) = decodeScalar(p, i)
                splitter.push(v) { w, chars in model.tokenize(w, chars: chars, into: &ids) }
                i += len
            }
        }
        splitter.flush { w, chars in model.tokenize(w, chars: chars, into: &ids) }
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids where id >= 0 && Int(id) < idToToken.count {
            if skipSpecialTokens && specialIds.contains(id) { continue }
            tokens.append(idToToken[Int(id)])
        }
        return decoder.decode(tokens)
    }
}

/// GPT-2-style: ByteLevel pre-tokenizer (GPT-2 regex), byte-level BPE, no special tokens added, ByteLevel decoder.
public struct ByteLevelBPETokenizer: PipelineTokenizer {
    let model: BPEModel
    let addedTokens: AddedTokenMatcher
    let postProcessor: TemplateProcessing
    let idToToken: [String]
    let tokenToId: [String: Int32]
    let idToBytes: [[UInt8]]
    let specialIds: Set<Int32>
    public let padTokenId: Int32?

    init(model: BPEModel, addedTokens: [AddedToken], postProcessor: TemplateProcessing, padToken: String?) {
        self.model = model
        self.addedTokens = AddedTokenMatcher(addedTokens)
        self.postProcessor = postProcessor
        let (table, map) = mergeVocab(model.idToToken, model.vocab, addedTokens)
        (self.idToToken, self.tokenToId) = (table, map)
        var bytes = model.idToBytes
        if bytes.count < table.count { bytes += [[UInt8]](repeating: [], count: table.count - bytes.count) }
        for t in addedTokens where Int(t.id) < bytes.count {
            // The ByteLevel decoder maps a token's characters back to bytes, or keeps its UTF-8 when one
            // character is outside the byte map.
            bytes[Int(t.id)] = ByteUnicode.decode(t.content) ?? Array(t.content.utf8)
        }
        self.idToBytes = bytes
        self.specialIds = self.addedTokens.specialIds
        self.padTokenId = padToken.flatMap { map[$0] }
    }

    public func tokenId(_ token: String) -> Int32? { tokenToId[token] }

    func encodeSegment(_ p: UnsafeBufferPointer<UInt8>, into ids: inout [Int32]) {
        var symbols: [Int32] = []
        var ranks: [UInt64] = []
        let model = self.model
        ByteLevelPreTokenizer.split(p) { start, end in
            model.tokenize(UnsafeBufferPointer(rebasing: p[start..<end]), into: &ids, scratch: &symbols, ranks: &ranks)
        }
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        let specials = specialIds
        return ByteLevelDecoder.decode(ids, bytesOf: idToBytes) { skipSpecialTokens && specials.contains($0) }
    }
}

/// Model vocabulary plus added tokens (which may reuse a vocabulary id or extend the range).
private func mergeVocab(_ table: [String], _ vocab: [String: Int32], _ added: [AddedToken])
    -> ([String], [String: Int32]) {
    var table = table
    var map = vocab
    for t in added {
        let i = Int(t.id)
        if i >= table.count { table += [String](repeating: "", count: i + 1 - table.count) }
        table[i] = t.content
        map[t.content] = t.id
    }
    return (table, map)
}
