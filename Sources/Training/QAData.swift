// QAData: extractive question-answering examples, read from
//   - SQuAD JSON (the nested official format: {"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
//     "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}, v1.1 and v2.0), or
//   - JSONL: one {"question", "context", "answers": {"text": [...], "answer_start": [...]}} per line (Hugging Face
//     datasets' squad columns; "id" optional; a list of {"text", "answer_start"} objects is accepted too);
// and turned into model inputs as transformers' run_qa does (prepare_train_features / prepare_validation_features):
// the question left-stripped, [CLS] question [SEP] context [SEP] with only the context truncated ("only_second") into
// windows of --max-length with --doc-stride tokens of overlap (the tokenizers library's overflow: window k starts at
// k·(n − stride) context tokens, n the context tokens that fit, until a window reaches the end), offsets kept as
// character (Unicode scalar, Python str index) ranges into the context. Training target: the tokens holding the
// first answer in a window that contains it whole, [CLS] (0) otherwise — run_qa's loops exactly, including its edge
// case where an answer starting in the window's last context token runs the start past [SEP] into the padding.
// Character offsets of sub-tokens: each BERT pre-tokenizer word (WordSpans) is tokenized alone (WordPiece never
// crosses a word) and its pieces are mapped back through the per-character normalised lengths (lowercase, NFD,
// accents dropped), as the fast tokenizer's alignment does; a word whose pieces do not add up keeps its whole span.
// Every bad input is a one-line error naming file:line (SQuAD JSON: the line of the question's "id").
// Deliberately not here: the model, the loss, post-processing (QAPostprocess.swift) and the metric (SquadMetric.swift).
import Foundation
import Tokenizers

/// One question over a context, with its gold answers (empty: no answer, SQuAD v2; or unlabelled `predict` input).
public struct QAExample: Sendable, Equatable {
    public var id: String
    public var question: String
    public var context: String
    /// Answer texts and their start offsets (Unicode scalars into `context`).
    public var answers: [QAAnswer]
    /// 1-based line the example came from.
    public var line: Int
}

public struct QAAnswer: Sendable, Equatable {
    public var text: String
    public var start: Int
}

/// One model input window of an example.
public struct QAWindow: Sendable {
    public var ids: [Int32]
    public var typeIds: [Int32]
    /// Position of the first context token.
    public var contextStart: Int
    /// Character range [start, end) of each context token of the window, in order (position contextStart + k).
    public var offsets: [(Int, Int)]
    /// The example it belongs to.
    public var example: Int
    /// Training targets (run_qa's start_positions / end_positions; 0 = [CLS]).
    public var startPosition: Int
    public var endPosition: Int

    /// The character range of the token at `position`, nil outside the context (run_qa sets those offsets to None).
    public func offset(at position: Int) -> (Int, Int)? {
        let k = position - contextStart
        return k >= 0 && k < offsets.count ? offsets[k] : nil
    }
}

public enum QAData {
    static func fail(_ file: String, _ line: Int?, _ problem: String, _ fix: String) -> TrainingError {
        TrainingError(DataError(file: file, line: line, problem: problem, fix: fix).description, exitCode: 2)
    }

    /// Reads QA examples (format from the content: a JSON object with "data" is SQuAD JSON, anything else JSONL).
    /// `requireAnswers`: every example needs at least one answer (SQuAD v1 evaluation); `unlabelled`: answers are not
    /// read (predict input: {"question", "context"}).
    public static func load(_ url: URL, requireAnswers: Bool = false, unlabelled: Bool = false) throws -> (examples: [QAExample], fingerprint: String, squadJSON: Bool) {
        let source: DataLoader.Source
        do { source = try DataLoader.Source.read(url, format: .jsonl) } catch let e as DataError {
            throw TrainingError(e.description, exitCode: 2)
        }
        let file = source.file
        var out: [QAExample] = []
        let firstByte = source.body.first { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
        var isSquad = false
        if firstByte == UInt8(ascii: "{"), let obj = try? JSONSerialization.jsonObject(with: Data(source.body)) as? [String: Any], obj["data"] != nil {
            isSquad = true
            out = try squad(obj, body: Array(source.body), file: file, unlabelled: unlabelled)
        }
        if !isSquad {
            do {
                try DataLoader.forEachJSONObject(source, shape: "{\"question\": \"...\", \"context\": \"...\", \"answers\": {\"text\": [...], \"answer_start\": [...]}}") { obj, line in
                    out.append(try example(obj, line: line, file: file, index: out.count, unlabelled: unlabelled))
                }
            } catch let e as DataError { throw TrainingError(e.description, exitCode: 2) }
        }
        guard !out.isEmpty else {
            throw fail(file, nil, "no questions", "write one {\"question\", \"context\", \"answers\"} per line, or SQuAD JSON {\"data\": [...]}")
        }
        if requireAnswers, let e = out.first(where: { $0.answers.isEmpty }) {
            throw fail(file, e.line, "question \"\(e.id)\" has no answer", "give its answers, or pass --version-2-with-negative for data with unanswerable questions (SQuAD v2)")
        }
        return (out, source.fingerprint, isSquad)
    }

    /// One JSONL line.
    static func example(_ obj: [String: Any], line: Int, file: String, index: Int, unlabelled: Bool) throws -> QAExample {
        guard let q = obj["question"] as? String else {
            throw fail(file, line, obj["question"] == nil ? "missing \"question\" (keys on this line: \(obj.keys.sorted().joined(separator: ", ")))" : "\"question\" must be a string",
                       "give every line {\"question\": \"...\", \"context\": \"...\", \"answers\": {\"text\": [...], \"answer_start\": [...]}}")
        }
        guard let c = obj["context"] as? String else {
            throw fail(file, line, obj["context"] == nil ? "missing \"context\"" : "\"context\" must be a string", "give the passage the answer is taken from as \"context\": \"...\"")
        }
        let id = (obj["id"] as? String) ?? (obj["id"] as? Int).map { "\($0)" } ?? "\(index)"
        var answers: [QAAnswer] = []
        if !unlabelled {
            guard let a = obj["answers"] else {
                throw fail(file, line, "missing \"answers\"", "give \"answers\": {\"text\": [\"...\"], \"answer_start\": [N]} (empty lists for no answer)")
            }
            answers = try parseAnswers(a, file: file, line: line)
        }
        return try checked(QAExample(id: id, question: q, context: c, answers: answers, line: line), file: file)
    }

    /// {"text": [...], "answer_start": [...]} or [{"text", "answer_start"}, ...].
    static func parseAnswers(_ a: Any, file: String, line: Int) throws -> [QAAnswer] {
        let fix = "give \"answers\": {\"text\": [\"...\"], \"answer_start\": [N]} (character offsets into the context; empty lists for no answer)"
        if let d = a as? [String: Any] {
            guard let texts = d["text"] as? [String], let startsAny = d["answer_start"] as? [Any] else {
                throw fail(file, line, "\"answers\" needs a \"text\" list of strings and an \"answer_start\" list of integers", fix)
            }
            let starts = startsAny.compactMap { $0 as? Int }
            guard starts.count == startsAny.count else { throw fail(file, line, "\"answer_start\" must hold integers", fix) }
            guard texts.count == starts.count else {
                throw fail(file, line, "\(texts.count) answer texts but \(starts.count) answer_start values", "give one answer_start per answer text")
            }
            return zip(texts, starts).map { QAAnswer(text: $0, start: $1) }
        }
        if let l = a as? [Any] {
            return try l.map { x in
                guard let o = x as? [String: Any], let t = o["text"] as? String, let s = o["answer_start"] as? Int else {
                    throw fail(file, line, "each answer must be {\"text\": \"...\", \"answer_start\": N}", fix)
                }
                return QAAnswer(text: t, start: s)
            }
        }
        throw fail(file, line, "\"answers\" must be an object or a list", fix)
    }

    /// Checks the example: a non-empty question and context, every answer inside the context where it says it is.
    static func checked(_ e: QAExample, file: String) throws -> QAExample {
        guard !e.context.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) else {
            throw fail(file, e.line, "question \"\(e.id)\": the context is empty", "give the passage the answer is taken from")
        }
        guard !e.question.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) else {
            throw fail(file, e.line, "question \"\(e.id)\": the question is empty", "give the question text")
        }
        let sc = Array(e.context.unicodeScalars)
        for a in e.answers {
            let n = a.text.unicodeScalars.count
            guard n > 0 else {
                throw fail(file, e.line, "question \"\(e.id)\": an answer text is empty", "give the answer span's text, or an empty answers list for no answer")
            }
            guard a.start >= 0, a.start + n <= sc.count else {
                throw fail(file, e.line, "question \"\(e.id)\": answer_start \(a.start) of \"\(a.text.prefix(40))\" is outside the context (\(sc.count) characters)",
                           "give the answer's character offset in the context (0-based, Python string index)")
            }
            var there = ""; there.unicodeScalars.append(contentsOf: sc[a.start..<(a.start + n)])
            guard there == a.text else {
                throw fail(file, e.line, "question \"\(e.id)\": answer_start \(a.start) does not match the answer text \"\(a.text.prefix(40))\" (the context has \"\(there.prefix(40))\" there)",
                           "fix answer_start (a 0-based character offset into the context) or the answer text")
            }
        }
        return e
    }

    /// SQuAD JSON. Line numbers: the line of each question's "id" value in the file (the first occurrence).
    static func squad(_ obj: [String: Any], body: [UInt8], file: String, unlabelled: Bool) throws -> [QAExample] {
        guard let data = obj["data"] as? [Any] else {
            throw fail(file, 1, "\"data\" must be a list of articles", "give SQuAD JSON: {\"data\": [{\"paragraphs\": [{\"context\", \"qas\": [...]}]}]}")
        }
        // Questions appear in file order: one forward scan, resumed after each question's "id" (a question whose id
        // is not found after the previous one gets the previous one's line).
        var cursor = 0, cursorLine = 1
        func line(of id: String) -> Int {
            let needle = Array(("\"" + id + "\"").utf8)
            var i = cursor, l = cursorLine
            while i + needle.count <= body.count {
                if body[i] == needle[0] && body[i..<(i + needle.count)].elementsEqual(needle) {
                    cursor = i + needle.count; cursorLine = l
                    return l
                }
                if body[i] == 0x0A { l += 1 }
                i += 1
            }
            return cursorLine
        }
        var out: [QAExample] = []
        for article in data {
            guard let paragraphs = (article as? [String: Any])?["paragraphs"] as? [Any] else {
                throw fail(file, 1, "an article has no \"paragraphs\" list", "give each article {\"title\", \"paragraphs\": [{\"context\", \"qas\": [...]}]}")
            }
            for p in paragraphs {
                guard let para = p as? [String: Any], let context = para["context"] as? String, let qas = para["qas"] as? [Any] else {
                    throw fail(file, 1, "a paragraph lacks \"context\" (a string) or \"qas\" (a list)", "give each paragraph {\"context\": \"...\", \"qas\": [...]}")
                }
                for q in qas {
                    guard let qa = q as? [String: Any] else { throw fail(file, 1, "an entry of \"qas\" is not an object", "give {\"id\", \"question\", \"answers\"}") }
                    let id = (qa["id"] as? String) ?? "\(out.count)"
                    let l = line(of: id)
                    guard let question = qa["question"] as? String else {
                        throw fail(file, l, "question \"\(id)\" has no \"question\" string", "give the question text")
                    }
                    var answers: [QAAnswer] = []
                    if !unlabelled {
                        answers = try parseAnswers(qa["answers"] ?? [Any](), file: file, line: l)
                    }
                    out.append(try checked(QAExample(id: id, question: question, context: context, answers: answers, line: l), file: file))
                }
            }
        }
        return out
    }
}

/// run_qa's windowing (see the file header).
public enum QAWindows {
    /// The [CLS] and [SEP] ids, checked to be the BERT pair template [CLS] A [SEP] B [SEP].
    static func specials(_ tokenizer: any Tokenizer, path: String) throws -> (cls: Int32, sep: Int32) {
        let e = try tokenizer.encode("", pair: "", addSpecialTokens: true, maxLength: nil)
        guard e.ids.count == 3, e.ids[1] == e.ids[2] else {
            throw TrainingError("\(path): question answering needs a tokenizer that pairs texts as [CLS] A [SEP] B [SEP] (BERT family); this one adds \(e.ids.count) special tokens")
        }
        return (e.ids[0], e.ids[1])
    }

    /// The context's tokens with their character ranges.
    public static func contextTokens(_ context: String, tokenizer: any Tokenizer) throws -> (ids: [Int32], offsets: [(Int, Int)]) {
        let sc = Array(context.unicodeScalars)
        var ids: [Int32] = [], offsets: [(Int, Int)] = []
        for r in WordSpans.bert(context) {
            var word = ""; word.unicodeScalars.append(contentsOf: sc[r])
            let p = try tokenizer.encode(word, pair: nil, addSpecialTokens: false, maxLength: nil).ids
            ids += p
            offsets += pieceOffsets(Array(sc[r]), start: r.lowerBound, pieces: p.map { tokenizer.token(forId: $0) ?? "" }, tokenizer: tokenizer)
        }
        return (ids, offsets)
    }

    /// Character ranges of a word's pieces (see the file header).
    static func pieceOffsets(_ word: [Unicode.Scalar], start: Int, pieces: [String], tokenizer: any Tokenizer) -> [(Int, Int)] {
        let whole = [(Int, Int)](repeating: (start, start + word.count), count: pieces.count)
        guard pieces.count > 1 else { return whole }
        let lens = pieces.enumerated().map { k, p in (k > 0 && p.hasPrefix("##") ? p.dropFirst(2) : Substring(p)).unicodeScalars.count }
        let total = lens.reduce(0, +)
        // Normalised length of each original character: as is (cased), or lowercased, NFD, marks dropped (uncased).
        let identity = [Int](repeating: 1, count: word.count)
        let uncased = word.map { s -> Int in
            String(s).lowercased().decomposedStringWithCanonicalMapping.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }.count
        }
        let per: [Int]
        if identity.reduce(0, +) == total { per = identity } else if uncased.reduce(0, +) == total { per = uncased } else { return whole }
        var cum = [0]
        for x in per { cum.append(cum.last! + x) }
        var out: [(Int, Int)] = []
        var pos = 0   // normalised position of the piece's start
        for n in lens {
            let a = pos, b = pos + n
            var s = 0
            while s < word.count - 1 && cum[s + 1] <= a { s += 1 }   // the character holding normalised position a
            var e = s
            while e < word.count && cum[e] < b { e += 1 }            // the first character ending at or after b
            out.append((start + s, start + max(e, s + 1)))
            pos = b
        }
        return out
    }

    /// The windows of `example` (index `index`): see the file header. `maxLength` the window size, `stride` the overlap.
    public static func encode(_ example: QAExample, index: Int, tokenizer: any Tokenizer, cls: Int32, sep: Int32,
                              maxLength: Int, stride: Int) throws -> [QAWindow] {
        let question = String(String.UnicodeScalarView(example.question.unicodeScalars.drop { $0.properties.isWhitespace }))
        let q = try tokenizer.encode(question, pair: nil, addSpecialTokens: false, maxLength: nil).ids
        let (c, offs) = try contextTokens(example.context, tokenizer: tokenizer)
        let n = maxLength - q.count - 3
        guard n > 0 else {
            throw TrainingError("question \"\(example.id)\" (line \(example.line)) has \(q.count) tokens, leaving no room for the context in --max-length \(maxLength); raise --max-length or shorten the question", exitCode: 2)
        }
        var parts: [Range<Int>] = []
        if c.count <= n {
            parts = [0..<c.count]
        } else {
            guard stride < n else {
                throw TrainingError("--doc-stride \(stride) must be less than the context tokens per window (\(n) for question \"\(example.id)\", line \(example.line)); lower --doc-stride or raise --max-length", exitCode: 2)
            }
            var s = 0
            while true {
                let e = min(s + n, c.count)
                parts.append(s..<e)
                if e == c.count { break }
                s += n - stride
            }
        }
        let answer = example.answers.first
        let startChar = answer?.start ?? 0
        let endChar = startChar + (answer?.text.unicodeScalars.count ?? 0)
        return parts.map { r in
            let ids = [cls] + q + [sep] + Array(c[r]) + [sep]
            let types = [Int32](repeating: 0, count: q.count + 2) + [Int32](repeating: 1, count: r.count + 1)
            let cs = q.count + 2
            let wo = Array(offs[r])
            var sp = 0, ep = 0
            if answer != nil, let first = wo.first, let last = wo.last, first.0 <= startChar && last.1 >= endChar {
                // run_qa: walk in from both ends of the context over the window padded to max_length; [SEP] and padding
                // have offsets (0, 0).
                func off(_ p: Int) -> (Int, Int) { (p >= cs && p < cs + wo.count) ? wo[p - cs] : (0, 0) }
                var ts = cs
                while ts < maxLength && off(ts).0 <= startChar { ts += 1 }
                sp = ts - 1
                var te = cs + wo.count - 1
                while off(te).1 >= endChar { te -= 1 }
                ep = te + 1
            }
            return QAWindow(ids: ids, typeIds: types, contextStart: cs, offsets: wo, example: index, startPosition: sp, endPosition: ep)
        }
    }
}
