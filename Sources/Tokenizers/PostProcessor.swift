// PostProcessor: `TemplateProcessing` — where special tokens go around one sequence or a pair, and which
// token_type_id each part gets (BERT: `[CLS] A [SEP]` / `[CLS] A [SEP] B:1 [SEP]:1`). `BertProcessing` and
// GPT-2's `ByteLevel` processor are expressed as templates too (the latter adds nothing; B gets type id 1).
// Deliberately not here: truncation (Tokenizer.swift, before this stage) and padding (the trainer's job).

struct TemplateProcessing: Sendable {
    enum Piece: Sendable {
        case special(ids: [Int32], typeId: Int32)
        case sequenceA(typeId: Int32)
        case sequenceB(typeId: Int32)
    }
    var single: [Piece]
    var pair: [Piece]

    /// No special tokens; the sequences keep the type ids the library's model stage gives them (A 0, B 1), which
    /// is what `tokenizers` does with no post-processor or the ByteLevel one (checked against the wheel).
    static let plain = TemplateProcessing(single: [.sequenceA(typeId: 0)],
                                          pair: [.sequenceA(typeId: 0), .sequenceB(typeId: 1)])

    /// BERT's `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` with B's part typed 1.
    static func bert(cls: Int32, sep: Int32) -> TemplateProcessing {
        TemplateProcessing(
            single: [.special(ids: [cls], typeId: 0), .sequenceA(typeId: 0), .special(ids: [sep], typeId: 0)],
            pair: [.special(ids: [cls], typeId: 0), .sequenceA(typeId: 0), .special(ids: [sep], typeId: 0),
                   .sequenceB(typeId: 1), .special(ids: [sep], typeId: 1)])
    }

    /// How many ids the template adds; truncation reserves room for them.
    func addedCount(pair isPair: Bool) -> Int {
        (isPair ? pair : single).reduce(0) { n, p in
            if case .special(let ids, _) = p { return n + ids.count }
            return n
        }
    }

    /// Without special tokens the sequences still get their template type ids, as in `tokenizers`.
    func apply(_ a: [Int32], _ b: [Int32]?, addSpecialTokens: Bool) -> (ids: [Int32], typeIds: [Int32]) {
        var ids: [Int32] = []
        var types: [Int32] = []
        let capacity = a.count + (b?.count ?? 0) + 4
        ids.reserveCapacity(capacity); types.reserveCapacity(capacity)
        for piece in (b == nil ? single : pair) {
            switch piece {
            case .special(let s, let t):
                if addSpecialTokens {
                    ids.append(contentsOf: s)
                    types.append(contentsOf: repeatElement(t, count: s.count))
                }
            case .sequenceA(let t):
                ids.append(contentsOf: a)
                types.append(contentsOf: repeatElement(t, count: a.count))
            case .sequenceB(let t):
                if let b {
                    ids.append(contentsOf: b)
                    types.append(contentsOf: repeatElement(t, count: b.count))
                }
            }
        }
        return (ids, types)
    }
}
