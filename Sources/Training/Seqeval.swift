// Seqeval: entity-level precision / recall / F1 for tag sequences with the semantics of seqeval 1.2.2 (what
// transformers' run_ner reports), in both of its modes:
//   - default (conlleval-like, `get_entities`): any prefix letter, chunks start/end by the B/I/E/S/O transition
//     rules and type changes; the sentences are evaluated as seqeval's flattened list with an "O" between them.
//   - strict (`mode="strict", scheme=…`): IOB1, IOB2, IOE1, IOE2, IOBES, BILOU token classes, each with its own
//     start/inside/end patterns; an entity counts only if it is well-formed under the scheme.
// Counts are additive (per type: true, predicted, correct entities; tokens and correct tokens), so each rank counts
// its shard of sentences and the all-reduced sums give the one-process metrics exactly.
// Deliberately not here: reading data or tags from files (TokenClassificationData.swift).
import Foundation

/// `--tag-scheme`: seqeval's default mode, or strict mode with one scheme.
public enum TagScheme: String, Sendable, CaseIterable {
    case `default`, iob1, iob2, ioe1, ioe2, iobes, bilou

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The prefix letters a strict scheme accepts (nil: default mode accepts any).
    var allowedPrefixes: Set<Character>? {
        switch self {
        case .default: nil
        case .iob1, .iob2: ["I", "O", "B"]
        case .ioe1, .ioe2: ["I", "O", "E"]
        case .iobes: ["I", "O", "B", "E", "S"]
        case .bilou: ["B", "I", "L", "O", "U"]
        }
    }

    /// A usage error when `label` cannot occur under this scheme (strict mode raises on such a tag).
    public func check(_ label: String) -> String? {
        guard let allowed = allowedPrefixes else { return nil }
        guard let p = label.first, allowed.contains(p) else {
            return "label \"\(label)\" is not a \(rawValue.uppercased()) tag (allowed prefixes: \(allowed.sorted().map(String.init).joined(separator: ", ")))"
        }
        return nil
    }
}

/// One entity: sentence, type, first and last word (inclusive).
public struct SeqevalEntity: Hashable, Sendable {
    public let sentence: Int, type: String, start: Int, end: Int
}

public enum Seqeval {
    /// The entities of one sentence's tags. `sentence` is its index in the evaluated list: in default mode the first
    /// sentence starts from seqeval's initial state (previous type ""), later ones after the "O" that seqeval's
    /// flattening puts between sentences (previous type "_").
    public static func entities(_ tags: [String], scheme: TagScheme, sentence: Int) -> [SeqevalEntity] {
        scheme == .default ? defaultEntities(tags, sentence: sentence) : strictEntities(tags, scheme: scheme, sentence: sentence)
    }

    // MARK: default mode (seqeval.metrics.sequence_labeling.get_entities, suffix=False)

    static func defaultEntities(_ tags: [String], sentence: Int) -> [SeqevalEntity] {
        var prevTag: Character = "O", prevType = sentence == 0 ? "" : "_"
        var begin = 0
        var out: [SeqevalEntity] = []
        for (i, chunk) in (tags + ["O"]).enumerated() {
            let tag: Character = chunk.first ?? "O"
            // chunk[1:].split('-', maxsplit=1)[-1] or '_'
            let rest = chunk.dropFirst()
            var type = rest.firstIndex(of: "-").map { String(rest[rest.index(after: $0)...]) } ?? String(rest)
            if type.isEmpty { type = "_" }
            if endOfChunk(prevTag, tag, prevType, type) {
                out.append(SeqevalEntity(sentence: sentence, type: prevType, start: begin, end: i - 1))
            }
            if startOfChunk(prevTag, tag, prevType, type) { begin = i }
            prevTag = tag; prevType = type
        }
        return out
    }

    static func endOfChunk(_ p: Character, _ t: Character, _ pt: String, _ tt: String) -> Bool {
        if p == "E" || p == "S" { return true }
        if p == "B" && (t == "B" || t == "S" || t == "O") { return true }
        if p == "I" && (t == "B" || t == "S" || t == "O") { return true }
        if p != "O" && p != "." && pt != tt { return true }
        return false
    }

    static func startOfChunk(_ p: Character, _ t: Character, _ pt: String, _ tt: String) -> Bool {
        if t == "B" || t == "S" { return true }
        if (p == "E" || p == "S" || p == "O") && (t == "E" || t == "I") { return true }
        if t != "O" && t != "." && pt != tt { return true }
        return false
    }

    // MARK: strict mode (seqeval.scheme: Token classes and Tokens.entities)

    /// A prefix set (seqeval's Prefix flags); "*" = ANY.
    private struct Pattern { let prev: Set<Character>?, cur: Set<Character>?, tag: TagCond }
    private enum TagCond { case same, diff, any }

    private struct Rules { let start: [Pattern], inside: [Pattern], end: [Pattern] }

    private static func p(_ a: String?, _ b: String?, _ t: TagCond) -> Pattern {
        Pattern(prev: a.map { Set($0) }, cur: b.map { Set($0) }, tag: t)
    }

    private static func rules(_ s: TagScheme) -> Rules {
        switch s {
        case .default: return Rules(start: [], inside: [], end: [])
        case .iob1:
            return Rules(start: [p("O", "I", .any), p("I", "I", .diff), p("B", "I", .any), p("I", "B", .same), p("B", "B", .same)],
                         inside: [p("B", "I", .same), p("I", "I", .same)],
                         end: [p("I", "I", .diff), p("I", "O", .any), p("I", "B", .any), p("B", "O", .any), p("B", "I", .diff), p("B", "B", .same)])
        case .ioe1:
            return Rules(start: [p("O", "I", .any), p("I", "I", .diff), p("E", "I", .any), p("E", "E", .same)],
                         inside: [p("I", "I", .same), p("I", "E", .same)],
                         end: [p("I", "I", .diff), p("I", "O", .any), p("I", "E", .diff), p("E", "I", .same), p("E", "E", .same)])
        case .iob2:
            return Rules(start: [p(nil, "B", .any)],
                         inside: [p("B", "I", .same), p("I", "I", .same)],
                         end: [p("I", "O", .any), p("I", "I", .diff), p("I", "B", .any), p("B", "O", .any), p("B", "I", .diff), p("B", "B", .any)])
        case .ioe2:
            return Rules(start: [p("O", "I", .any), p("O", "E", .any), p("E", "I", .any), p("E", "E", .any), p("I", "I", .diff), p("I", "E", .diff)],
                         inside: [p("I", "E", .same), p("I", "I", .same)],
                         end: [p("E", nil, .any)])
        case .iobes:
            return Rules(start: [p(nil, "B", .any), p(nil, "S", .any)],
                         inside: [p("B", "I", .same), p("B", "E", .same), p("I", "I", .same), p("I", "E", .same)],
                         end: [p("S", nil, .any), p("E", nil, .any)])
        case .bilou:
            return Rules(start: [p(nil, "B", .any), p(nil, "U", .any)],
                         inside: [p("B", "I", .same), p("B", "L", .same), p("I", "I", .same), p("I", "L", .same)],
                         end: [p("U", nil, .any), p("L", nil, .any)])
        }
    }

    private struct Tok { let prefix: Character, tag: String }

    /// seqeval's Token: prefix = first letter; tag = the rest with "-" stripped from both ends, or "_".
    private static func token(_ s: String) -> Tok {
        let rest = s.dropFirst()
        var tag = String(rest.drop(while: { $0 == "-" }))
        while tag.last == "-" { tag.removeLast() }
        return Tok(prefix: s.first ?? "O", tag: tag.isEmpty ? "_" : tag)
    }

    private static func matches(_ pats: [Pattern], prev: Tok, cur: Tok) -> Bool {
        pats.contains { pt in
            (pt.prev?.contains(prev.prefix) ?? true) && (pt.cur?.contains(cur.prefix) ?? true)
                && (pt.tag == .any || (pt.tag == .same) == (prev.tag == cur.tag))
        }
    }

    static func strictEntities(_ tags: [String], scheme: TagScheme, sentence: Int) -> [SeqevalEntity] {
        let r = rules(scheme)
        let outside = token("O")
        let ext = tags.map(token) + [outside]
        var out: [SeqevalEntity] = []
        var i = 0
        var prev = outside
        while i < ext.count {
            let tok = ext[i]
            if matches(r.start, prev: prev, cur: tok) {
                // _forward: the first index after i that is not inside the entity (len(tokens) - 1 if none).
                var end = tags.count - 1
                var pv = tok
                for k in (i + 1)..<max(i + 1, ext.count) {
                    if matches(r.inside, prev: pv, cur: ext[k]) { pv = ext[k] } else { end = k; break }
                }
                // _is_end (Python's ext[end - 1] wraps to the last element when end is 0)
                let before = end - 1 >= 0 ? ext[end - 1] : ext[ext.count - 1]
                if matches(r.end, prev: before, cur: ext[end]) {
                    out.append(SeqevalEntity(sentence: sentence, type: tok.tag, start: i, end: end))
                }
                i = end
            } else {
                i += 1
            }
            prev = ext[(i - 1 + ext.count) % ext.count]
        }
        return out
    }
}

/// Additive seqeval statistics over sentences: per entity type (true, predicted, correct), and token accuracy.
public struct SeqevalCounts: Sendable, Equatable {
    public var types: [String: (true: Int64, pred: Int64, correct: Int64)] = [:]
    public var tokens: Int64 = 0
    public var correctTokens: Int64 = 0

    public init() {}

    public static func == (a: SeqevalCounts, b: SeqevalCounts) -> Bool {
        a.tokens == b.tokens && a.correctTokens == b.correctTokens && a.types.keys == b.types.keys
            && a.types.allSatisfy { k, v in let w = b.types[k]!; return v == w }
    }

    /// Adds one sentence (true and predicted tags of its words, equal lengths).
    public mutating func add(true gold: [String], pred: [String], scheme: TagScheme, sentence: Int) {
        precondition(gold.count == pred.count)
        tokens += Int64(gold.count)
        for (a, b) in zip(gold, pred) where a == b { correctTokens += 1 }
        let t = Set(Seqeval.entities(gold, scheme: scheme, sentence: sentence))
        let p = Set(Seqeval.entities(pred, scheme: scheme, sentence: sentence))
        for e in t { types[e.type, default: (0, 0, 0)].true += 1 }
        for e in p { types[e.type, default: (0, 0, 0)].pred += 1 }
        for e in t.intersection(p) { types[e.type, default: (0, 0, 0)].correct += 1 }
    }

    /// seqeval's precision, recall and F1 (micro average over types), and per type; 0 where undefined (as seqeval's
    /// zero_division default, with its warning dropped).
    public func metrics(prefix: String = "eval_") -> [String: Double] {
        func prf(_ c: (true: Int64, pred: Int64, correct: Int64)) -> (Double, Double, Double) {
            let p = c.pred > 0 ? Double(c.correct) / Double(c.pred) : 0
            let r = c.true > 0 ? Double(c.correct) / Double(c.true) : 0
            let f = p + r > 0 ? 2 * p * r / (p + r) : 0
            return (p, r, f)
        }
        var total: (true: Int64, pred: Int64, correct: Int64) = (0, 0, 0)
        var out: [String: Double] = [:]
        for (type, c) in types {
            total.true += c.true; total.pred += c.pred; total.correct += c.correct
            let (p, r, f) = prf(c)
            out["\(prefix)\(type)_precision"] = p; out["\(prefix)\(type)_recall"] = r; out["\(prefix)\(type)_f1"] = f
            out["\(prefix)\(type)_number"] = Double(c.true)
        }
        let (p, r, f) = prf(total)
        out["\(prefix)precision"] = p; out["\(prefix)recall"] = r; out["\(prefix)f1"] = f
        out["\(prefix)accuracy"] = tokens > 0 ? Double(correctTokens) / Double(tokens) : 0
        return out
    }

    /// Flattened for the all-reduce: [tokens, correct, then (true, pred, correct) per type of `typeNames`].
    public func flattened(typeNames: [String]) -> [Int64] {
        var v = [tokens, correctTokens]
        for t in typeNames { let c = types[t] ?? (0, 0, 0); v += [c.true, c.pred, c.correct] }
        return v
    }

    public init(flattened v: [Int64], typeNames: [String]) {
        tokens = v[0]; correctTokens = v[1]
        for (k, t) in typeNames.enumerated() {
            let c = (v[2 + 3 * k], v[3 + 3 * k], v[4 + 3 * k])
            if c != (0, 0, 0) { types[t] = c }
        }
    }
}
