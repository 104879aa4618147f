// SquadMetric: exact match and F1 as the official SQuAD evaluation scripts compute them (v1.1 evaluate-v1.1.py and
// v2.0 evaluate-v2.0.py, which Hugging Face's `squad` / `squad_v2` metrics wrap): answers normalised by lower-casing,
// removing ASCII punctuation (Python's string.punctuation), removing the articles a/an/the as whole words and
// collapsing whitespace; F1 over the bag of whitespace tokens; the maximum over the gold answers.
// v2 differences: a gold list with no non-empty normalised answer counts as [""], and an empty prediction or gold
// scores F1 = 1 if both are empty, else 0 (v1: 0).
// Deliberately not here: post-processing (QAPostprocess.swift).
import Foundation

public enum SquadMetric {
    static let punctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".unicodeScalars)

    /// The official normalize_answer.
    public static func normalize(_ s: String) -> String {
        let lower = s.lowercased()
        var noPunct = String.UnicodeScalarView()
        for u in lower.unicodeScalars where !punctuation.contains(u) { noPunct.append(u) }
        // \b(a|an|the)\b → " " (Python 3 str regex: word characters are Unicode alphanumerics and "_").
        let scalars = Array(noPunct)
        func isWord(_ u: Unicode.Scalar) -> Bool {
            u == "_" || u.properties.isAlphabetic || u.properties.numericType != nil || u.properties.generalCategory == .decimalNumber
                || u.properties.generalCategory == .nonspacingMark || u.properties.generalCategory == .spacingMark
        }
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            var matched = 0
            if i == 0 || !isWord(scalars[i - 1]) {
                for art in ["the", "an", "a"] {
                    let a = Array(art.unicodeScalars)
                    if i + a.count <= scalars.count, Array(scalars[i..<(i + a.count)]) == a,
                       i + a.count == scalars.count || !isWord(scalars[i + a.count]) { matched = a.count; break }
                }
            }
            if matched > 0 { out.append(" "); i += matched } else { out.append(scalars[i]); i += 1 }
        }
        return tokens(String(out)).joined(separator: " ")
    }

    /// Python's str.split(): runs of Unicode whitespace separate tokens.
    static func tokens(_ s: String) -> [String] {
        s.unicodeScalars.split(whereSeparator: { isPythonSpace($0) }).map { String(String.UnicodeScalarView($0)) }
    }

    static func isPythonSpace(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09...0x0D, 0x1C...0x1F, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    public static func exactMatch(_ prediction: String, _ gold: String) -> Double {
        normalize(prediction) == normalize(gold) ? 1 : 0
    }

    public static func f1(_ prediction: String, _ gold: String, version2: Bool) -> Double {
        let p = tokens(normalize(prediction)), g = tokens(normalize(gold))
        if version2 && (p.isEmpty || g.isEmpty) { return p == g ? 1 : 0 }
        var counts: [String: Int] = [:]
        for t in g { counts[t, default: 0] += 1 }
        var same = 0
        for t in p where (counts[t] ?? 0) > 0 { counts[t]! -= 1; same += 1 }
        guard same > 0 else { return 0 }
        let precision = Double(same) / Double(p.count), recall = Double(same) / Double(g.count)
        return 2 * precision * recall / (precision + recall)
    }

    /// (exact match, F1) of one prediction against the gold answer texts, each in [0, 1].
    public static func score(_ prediction: String, golds: [String], version2: Bool) -> (exact: Double, f1: Double) {
        var g = golds
        if version2 {
            g = golds.filter { !normalize($0).isEmpty }
            if g.isEmpty { g = [""] }
        }
        guard !g.isEmpty else { return (0, 0) }
        return (g.map { exactMatch(prediction, $0) }.max()!, g.map { f1(prediction, $0, version2: version2) }.max()!)
    }
}
