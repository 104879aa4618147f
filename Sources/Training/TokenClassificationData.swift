// TokenClassificationData: word-level tagged sentences for token classification (NER, POS, chunking), read from
//   - JSONL: one {"tokens": [...], "tags": [...]} per line ("ner_tags" is accepted for "tags", as Hugging Face's
//     CoNLL datasets name it); tags are strings, or integers indexing the names of --labels;
//   - CoNLL column files (.conll, .txt, .iob, .bio, or `--data-format conll`): "word … tag" per line (first column
//     the word, last column the tag, whitespace-separated), a blank line between sentences, -DOCSTART- lines skipped;
// and turned into model inputs as transformers' run_ner does: every word tokenized on its own (= is_split_into_words),
// [CLS] words [SEP], the first sub-token of a word carries its tag, the others -100 (or, with --label-all-tokens,
// the tag with B- turned into I-). Sentences longer than --max-length are split into overlapping windows of whole
// words (see `TokenWindows.plan`): no word is lost and each word is labelled/predicted in exactly one window.
// Every bad input is a one-line error naming file:line.
// Deliberately not here: the model, the loss and the metrics (TokenClassificationTask.swift, Seqeval.swift).
import Foundation
import Tokenizers

/// One sentence: its words and their tag ids (empty for unlabelled data), with the line each word came from.
public struct TaggedSentence: Sendable, Equatable {
    public var words: [String]
    public var tags: [Int]
    /// 1-based line of each word (JSONL: the sentence's line for all).
    public var lines: [Int]
    public var line: Int { lines.first ?? 0 }
}

/// The input formats of token classification data.
public enum TokenDataFormat: String, Sendable, CaseIterable {
    case jsonl, conll

    /// .conll, .txt, .iob, .bio → CoNLL columns; anything else JSONL.
    public static func infer(_ url: URL) -> TokenDataFormat {
        ["conll", "txt", "iob", "bio", "iob2", "tsv"].contains(url.pathExtension.lowercased()) ? .conll : .jsonl
    }
}

public enum TokenClassificationData {
    /// A data error as the user sees it: one line, exit code 2.
    static func fail(_ file: String, _ line: Int?, _ problem: String, _ fix: String) -> TrainingError {
        TrainingError(DataError(file: file, line: line, problem: problem, fix: fix).description, exitCode: 2)
    }

    /// Reads tagged sentences. `labels`: the label names in force (tags must be among them: the --labels file, or the
    /// training set's labels for eval data); nil collects them from the file (sorted, as run_ner's get_label_list).
    /// Integer tags need `labels`. Returns the sentences, the label names and the file's fingerprint.
    public static func load(_ url: URL, format: TokenDataFormat?, labels: [String]?) throws -> (sentences: [TaggedSentence], labels: [String], fingerprint: String) {
        let source: DataLoader.Source
        do { source = try DataLoader.Source.read(url, format: .jsonl) } catch let e as DataError {
            throw TrainingError(e.description, exitCode: 2)
        }
        let format = format ?? TokenDataFormat.infer(url)
        // Raw sentences with tag strings (or integer tags as their decimal text, resolved below).
        var raw: [(words: [String], tags: [String], lines: [Int], intTags: Bool)] = []
        let file = source.file
        switch format {
        case .jsonl:
            do {
                try DataLoader.forEachJSONObject(source, shape: "{\"tokens\": [...], \"tags\": [...]}") { obj, line in
                    guard let tv = obj["tokens"] else {
                        throw fail(file, line, "missing \"tokens\" (keys on this line: \(obj.keys.sorted().joined(separator: ", ")))",
                                   "give every line {\"tokens\": [word, ...], \"tags\": [tag, ...]}")
                    }
                    guard let words = tv as? [String] else {
                        throw fail(file, line, "\"tokens\" must be a list of strings", "write the words as JSON strings, e.g. \"tokens\": [\"EU\", \"rejects\"]")
                    }
                    guard !words.isEmpty else {
                        throw fail(file, line, "\"tokens\" is empty", "drop the line or give the sentence's words")
                    }
                    guard let gv = obj["tags"] ?? obj["ner_tags"] else {
                        throw fail(file, line, "missing \"tags\" (or \"ner_tags\")", "give one tag per token, e.g. \"tags\": [\"B-ORG\", \"O\"]")
                    }
                    var tags: [String] = []
                    var ints = false
                    if let s = gv as? [String] {
                        tags = s
                    } else if let a = gv as? [Any], case let n = a.compactMap({ $0 as? Int }), n.count == a.count {
                        tags = n.map { "\($0)" }; ints = true
                    } else {
                        throw fail(file, line, "\"tags\" must be a list of strings or of integers", "give one tag per token, e.g. \"tags\": [\"B-ORG\", \"O\"] or [3, 0]")
                    }
                    guard tags.count == words.count else {
                        throw fail(file, line, "\(words.count) tokens but \(tags.count) tags", "give exactly one tag per token")
                    }
                    raw.append((words, tags, [Int](repeating: line, count: words.count), ints))
                }
            } catch let e as DataError { throw TrainingError(e.description, exitCode: 2) }
        case .conll:
            var words: [String] = [], tags: [String] = [], lines: [Int] = []
            func flush() {
                if !words.isEmpty { raw.append((words, tags, lines, false)) }
                words = []; tags = []; lines = []
            }
            var lineNo = 0
            for rawLine in source.body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                lineNo += 1
                let text = String(decoding: rawLine, as: UTF8.self)
                let cols = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
                if cols.isEmpty { flush(); continue }
                if cols[0] == "-DOCSTART-" { flush(); continue }
                guard cols.count >= 2 else {
                    throw fail(file, lineNo, "the line \"\(text.prefix(40))\" has a word but no tag",
                               "write \"word tag\" (columns separated by spaces or tabs; the tag is the last column)")
                }
                words.append(cols[0]); tags.append(cols[cols.count - 1]); lines.append(lineNo)
            }
            flush()
        }
        guard !raw.isEmpty else {
            throw fail(file, nil, "no sentences", format == .jsonl ? "write one {\"tokens\": [...], \"tags\": [...]} per line" : "write \"word tag\" lines, a blank line between sentences")
        }
        // Label names and ids.
        var names = labels ?? []
        if labels == nil {
            if let r = raw.first(where: \.intTags) {
                throw fail(file, r.lines[0], "integer tags need their names", "pass --labels FILE naming tag 0, 1, … one per line")
            }
            names = Array(Set(raw.flatMap(\.tags))).sorted()
        }
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [TaggedSentence] = []
        out.reserveCapacity(raw.count)
        for r in raw {
            var ids: [Int] = []
            ids.reserveCapacity(r.tags.count)
            for (k, t) in r.tags.enumerated() {
                if r.intTags {
                    guard let i = Int(t), i >= 0, i < names.count else {
                        throw fail(file, r.lines[k], "tag id \(t) is outside the \(names.count) labels", "use ids 0…\(names.count - 1) of the --labels file")
                    }
                    ids.append(i)
                } else {
                    guard let i = index[t] else {
                        let shown = names.prefix(12).joined(separator: ", ") + (names.count > 12 ? ", …" : "")
                        throw fail(file, r.lines[k], "unknown tag \"\(t)\" (the model's labels: \(shown))",
                                   "fix the tag, or train with a --labels file that lists it")
                    }
                    ids.append(i)
                }
            }
            out.append(TaggedSentence(words: r.words, tags: ids, lines: r.lines))
        }
        return (out, names, source.fingerprint)
    }
}

/// One model input of a sentence: [CLS] sub-tokens of words `span` [SEP], with a label per position.
public struct TokenWindow: Sendable {
    public var ids: [Int32]
    /// Per position: a label id, or -100 (special tokens, later sub-tokens, words another window owns).
    public var labels: [Int32]
    /// (position, word) of each word this window predicts: the word's first sub-token.
    public var owned: [(position: Int, word: Int)]
    /// The sentence it belongs to.
    public var sentence: Int
    /// Positions whose label counts in the loss.
    public var labelled: Int { labels.reduce(0) { $0 + ($1 == -100 ? 0 : 1) } }
}

public enum TokenWindows {
    /// Splits words with `counts` sub-tokens each into windows of whole words of at most `capacity` sub-tokens (a word
    /// longer than `capacity` alone is cut to its first `capacity`). Consecutive windows overlap by up to
    /// `capacity / 2` sub-tokens (each next window starts at the earliest word whose sub-tokens up to the previous
    /// window's end fit in half a window, so the stride is about half a window). Each word is owned by the window
    /// where it has the most context: the larger min(sub-tokens before it, after it) within the window, a sentence
    /// edge counting as unlimited; ties go to the earlier window. One window when everything fits.
    public static func plan(counts: [Int], capacity: Int) -> [(span: Range<Int>, owned: [Int])] {
        let n = counts.count
        let c = counts.map { min($0, capacity) }
        guard c.reduce(0, +) > capacity else { return [(0..<n, Array(0..<n))] }
        var spans: [Range<Int>] = []
        var s = 0
        while true {
            var e = s, used = 0
            while e < n && used + c[e] <= capacity { used += c[e]; e += 1 }
            spans.append(s..<e)
            if e >= n { break }
            var next = e, tail = 0
            while next - 1 > s && tail + c[next - 1] <= capacity / 2 { tail += c[next - 1]; next -= 1 }
            s = next
        }
        var prefix = [0]
        for x in c { prefix.append(prefix.last! + x) }
        var owned = [[Int]](repeating: [], count: spans.count)
        for w in 0..<n {
            var best = -1, bestScore = -1
            for (k, sp) in spans.enumerated() where sp.contains(w) {
                let left = sp.lowerBound == 0 ? Int.max : prefix[w] - prefix[sp.lowerBound]
                let right = sp.upperBound == n ? Int.max : prefix[sp.upperBound] - prefix[w + 1]
                let score = min(left, right)
                if score > bestScore { best = k; bestScore = score }
            }
            owned[best].append(w)
        }
        return zip(spans, owned).map { ($0, $1) }
    }

    /// The windows of one sentence: `pieces` are each word's sub-token ids (the word tokenized alone, no special
    /// tokens), `tags` the words' label ids ([] for unlabelled data: all positions -100 but the owned ones' tag 0),
    /// `bToI` maps a label id to the id of its I- form (for --label-all-tokens; nil: later sub-tokens are -100).
    public static func encode(pieces: [[Int32]], tags: [Int], cls: Int32, sep: Int32, maxLength: Int,
                              bToI: [Int]?, sentence: Int) -> [TokenWindow] {
        let cap = maxLength - 2
        return plan(counts: pieces.map(\.count), capacity: cap).map { span, owned in
            var ids: [Int32] = [cls], labels: [Int32] = [-100]
            var own: [(Int, Int)] = []
            let mine = Set(owned)
            for w in span {
                let p = pieces[w].prefix(cap)
                for (k, id) in p.enumerated() {
                    var label: Int32 = -100
                    if mine.contains(w), !tags.isEmpty {
                        if k == 0 { label = Int32(tags[w]) } else if let bToI { label = Int32(bToI[tags[w]]) }
                    }
                    if k == 0 && mine.contains(w) { own.append((ids.count, w)) }
                    ids.append(id); labels.append(label)
                }
            }
            ids.append(sep); labels.append(-100)
            return TokenWindow(ids: ids, labels: labels, owned: own, sentence: sentence)
        }
    }

    /// run_ner's b_to_i_label: for each label id, the id of "I-X" when the label is "B-X" and "I-X" exists, else itself.
    public static func bToI(_ labels: [String]) -> [Int] {
        let index = Dictionary(labels.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        return labels.enumerated().map { i, l in
            l.hasPrefix("B-") ? (index["I-" + l.dropFirst(2)] ?? i) : i
        }
    }

    /// Each word's sub-token ids (the word alone, no special tokens), as is_split_into_words tokenizes them.
    public static func pieces(_ words: [String], tokenizer: any Tokenizer) throws -> [[Int32]] {
        try words.map { try tokenizer.encode($0, pair: nil, addSpecialTokens: false, maxLength: nil).ids }
    }

    /// The [CLS] and [SEP] ids the tokenizer wraps a single text in.
    public static func specials(_ tokenizer: any Tokenizer, path: String) throws -> (cls: Int32, sep: Int32) {
        let e = try tokenizer.encode("", pair: nil, addSpecialTokens: true, maxLength: nil).ids
        guard e.count == 2 else {
            throw TrainingError("\(path): token classification needs a tokenizer that wraps a text as [CLS] … [SEP] (BERT family); this one adds \(e.count) special tokens")
        }
        return (e[0], e[1])
    }
}

extension TokenClassificationData {
    /// One `predict` input: a raw text, or pre-split words (joined with single spaces, as the pipeline's
    /// is_split_into_words does, so offsets are into that joined text).
    public enum PredictInput: Sendable {
        case text(String)
        case tokens([String])
        public var text: String { switch self { case .text(let t): t; case .tokens(let w): w.joined(separator: " ") } }
    }

    /// Reads `predict` input: one {"text": "..."} or {"tokens": [...]} per line (other keys ignored).
    public static func loadPredictInputs(_ url: URL) throws -> [PredictInput] {
        try loadPredictInputLines(url).map(\.input)
    }

    /// `loadPredictInputs` with the 1-based line of each input (blank lines are skipped; `predict` keeps their place).
    public static func loadPredictInputLines(_ url: URL) throws -> [(input: PredictInput, line: Int)] {
        let source: DataLoader.Source
        var out: [(input: PredictInput, line: Int)] = []
        do {
            source = try DataLoader.Source.read(url, format: .jsonl)
            let file = source.file
            try DataLoader.forEachJSONObject(source, shape: "{\"text\": \"...\"} or {\"tokens\": [...]}") { obj, line in
                if let t = obj["text"] {
                    guard let s = t as? String else { throw fail(file, line, "\"text\" must be a string", "give {\"text\": \"some text\"}") }
                    out.append((.text(s), line))
                } else if let t = obj["tokens"] {
                    guard let w = t as? [String] else { throw fail(file, line, "\"tokens\" must be a list of strings", "give {\"tokens\": [\"EU\", \"rejects\"]}") }
                    guard !w.isEmpty else { throw fail(file, line, "\"tokens\" is empty", "give the words, or {\"text\": \"...\"}") }
                    out.append((.tokens(w), line))
                } else {
                    throw fail(file, line, "neither \"text\" nor \"tokens\" (keys: \(obj.keys.sorted().joined(separator: ", ")))",
                               "give {\"text\": \"...\"} or {\"tokens\": [...]} per line")
                }
            }
        } catch let e as DataError { throw TrainingError(e.description, exitCode: 2) }
        return out
    }
}
