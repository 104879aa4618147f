// Tokenizer: the one protocol through which the model and the trainer tokenize text.
/// One encoded text (or text pair), without padding.
public struct Encoding: Equatable, Sendable {
    public var ids: [Int32]
    public var tokens: [String]
    public var typeIds: [Int32]
    public init(ids: [Int32], tokens: [String], typeIds: [Int32]) {
        self.ids = ids; self.tokens = tokens; self.typeIds = typeIds
    }
}
