// Tokenizer: the one protocol through which the model and the trainer tokenize text, plus the pieces every
// pipeline shares (the Encoding value, the error type, truncation, batch helpers).
// It is deliberately not a padding or batching policy: encodings come back unpadded and the trainer pads
// dynamically. Nothing here knows about WordPiece or BPE; see the per-stage files.
import Foundation

/// One encoded text (or text pair), without padding.
public struct Encoding: Equatable, Sendable {
    public var ids: [Int32]
    public var tokens: [String]
    public var typeIds: [Int32]
    public init(ids: [Int32], tokens: [String], typeIds: [Int32]) {
        self.ids = ids; self.tokens = tokens; self.typeIds = typeIds
    }
    /// All ones: an unpadded encoding attends to every position. The trainer extends it with zeros when it pads.
    public var attentionMask: [Int32] { [Int32](repeating: 1, count: ids.count) }
}

/// A tokenizer loaded from a Hugging Face folder. Implementations are immutable values (their BPE word cache is
/// internally locked), so one instance can be shared across threads.
public protocol Tokenizer: Sendable {
    /// Number of ids (model vocabulary plus added tokens): the size of the embedding matrix it needs.
    var vocabSize: Int { get }
    /// `[PAD]` for BERT; nil for GPT-2 unless a pad token is configured.
    var padTokenId: Int32? { get }
    /// Content -> id of every special token (added tokens flagged `special`, e.g. `[CLS]`, `<|endoftext|>`).
    var specialTokens: [String: Int32] { get }
    /// The id of one token string exactly as it appears in the vocabulary (byte-level form for GPT-2).
    func tokenId(_ token: String) -> Int32?
    /// The token string of one id, or nil when the id is out of range.
    func token(forId id: Int32) -> String?
    /// Encodes a text or a pair. `maxLength` truncates `longest_first` as transformers does, counting the
    /// special tokens the post-processor adds; it throws when `maxLength` cannot even hold those.
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int?) throws -> Encoding
    /// Ids back to text; unknown ids are skipped, as Hugging Face does.
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
}

extension Tokenizer {
    /// Single text, special tokens added, no truncation (cannot fail).
    public func encode(_ text: String) -> Encoding {
        // Without maxLength no code path throws; `try!` documents that rather than hiding an error.
        try! encode(text, pair: nil, addSpecialTokens: true, maxLength: nil)
    }

    /// Encodes each text (and its pair, when `pairs` is given) independently; no padding.
    public func encodeBatch(_ texts: [String], pairs: [String]? = nil, addSpecialTokens: Bool = true,
                            maxLength: Int? = nil) throws -> [Encoding] {
        if let pairs, pairs.count != texts.count {
            throw TokenizerError(file: "<batch>", message: "\(texts.count) texts but \(pairs.count) pairs",
                                 hint: "pass one pair per text or none")
        }
        var out: [Encoding] = []
        out.reserveCapacity(texts.count)
        for (i, text) in texts.enumerated() {
            out.append(try encode(text, pair: pairs?[i], addSpecialTokens: addSpecialTokens, maxLength: maxLength))
        }
        return out
    }

    public func decode(_ ids: [Int32]) -> String { decode(ids, skipSpecialTokens: false) }
}

/// One line naming the file (or input) at fault, what is wrong and what to do about it.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    /// Path (optionally `path:line`) of the offending file, or a placeholder such as `<input>`.
    public var file: String
    public var message: String
    public var hint: String
    public init(file: String, message: String, hint: String) {
        self.file = file; self.message = message; self.hint = hint
    }
    public var description: String { "\(file): \(message). Fix: \(hint)" }
}

// MARK: - Shared encode machinery

/// What a concrete pipeline provides; `encode` is then written once for all of them.
protocol PipelineTokenizer: Tokenizer {
    var addedTokens: AddedTokenMatcher { get }
    var postProcessor: TemplateProcessing { get }
    var idToToken: [String] { get }
    /// Normalize, pre-tokenize and run the model over one stretch of text containing no added token.
    func encodeSegment(_ bytes: UnsafeBufferPointer<UInt8>, into ids: inout [Int32])
}

extension PipelineTokenizer {
    public var vocabSize: Int { idToToken.count }
    public var specialTokens: [String: Int32] { addedTokens.specialTokens }

    public func token(forId id: Int32) -> String? {
        id >= 0 && Int(id) < idToToken.count ? idToToken[Int(id)] : nil
    }

    /// Splits out added tokens (they are never normalized or split), then hands each remaining segment on.
    func encodeSequence(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        var s = text
        s.withUTF8 { buf in
            addedTokens.split(buf) { segment, addedId in
                if let addedId { ids.append(addedId) } else { encodeSegment(segment, into: &ids) }
            }
        }
        return ids
    }

    public func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int?) throws -> Encoding {
        var a = encodeSequence(text)
        var b = pair.map { encodeSequence($0) }
        if let maxLength {
            let added = addSpecialTokens ? postProcessor.addedCount(pair: b != nil) : 0
            guard maxLength >= added else {
                throw TokenizerError(file: "<encode>", message: "maxLength \(maxLength) is smaller than the \(added) special tokens",
                                     hint: "use maxLength >= \(added) or addSpecialTokens: false")
            }
            truncateLongestFirst(&a, &b, maxLength: maxLength - added)
        }
        let (ids, typeIds) = postProcessor.apply(a, b, addSpecialTokens: addSpecialTokens)
        let table = idToToken
        let tokens = ids.map { Int($0) < table.count ? table[Int($0)] : "" }
        return Encoding(ids: ids, tokens: tokens, typeIds: typeIds)
    }
}

/// `longest_first` truncation exactly as `tokenizers` (`truncate_encodings`) does it: `maxLength` here already
/// excludes the special tokens. With equal lengths the first sequence loses the odd token.
func truncateLongestFirst(_ a: inout [Int32], _ b: inout [Int32]?, maxLength: Int) {
    let total = a.count + (b?.count ?? 0)
    guard total > maxLength else { return }
    guard var second = b else {
        a.removeLast(a.count - maxLength)
        return
    }
    var n1 = a.count, n2 = second.count
    let swap = n1 > n2
    if swap { Swift.swap(&n1, &n2) }          // n1 is now the shorter
    if n1 > maxLength { n2 = n1 } else { n2 = max(n1, maxLength - n1) }
    if n1 + n2 > maxLength {
        n1 = maxLength / 2
        n2 = n1 + maxLength % 2
    }
    if swap { Swift.swap(&n1, &n2) }
    if a.count > n1 { a.removeLast(a.count - n1) }
    if second.count > n2 { second.removeLast(second.count - n2) }
    b = second
}
