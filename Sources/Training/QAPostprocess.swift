// QAPostprocess: from start/end logits of an example's windows to its answer, as transformers' run_qa
// postprocess_qa_predictions (utils_qa.py) does it: per window the n-best starts and n-best ends (argsort of the
// logits, largest first), every pair inside the context (both offsets known) with end ≥ start and at most
// max_answer_length tokens as a candidate scored start + end logit; candidates of all windows sorted by score
// (stable) and the n-best kept; a softmax over their scores gives each a probability. SQuAD v2: the null candidate
// (the [CLS] score of the window where it is smallest) joins the ranking, and the answer is "" when null score −
// the best non-null candidate's score exceeds the threshold. No candidate: the answer "empty" (run_qa's placeholder).
// Deliberately not here: windowing (QAData.swift), the metric (SquadMetric.swift).
import Foundation

/// The answer to one question.
public struct QAPrediction: Sendable, Equatable {
    /// The answer text ("" for no answer under SQuAD v2).
    public var text: String
    /// Character offsets [start, end) into the context (0, 0 for no answer or run_qa's "empty" placeholder).
    public var start: Int, end: Int
    /// The answer's probability among the n-best candidates (softmax of start + end logits).
    public var score: Double
    /// SQuAD v2: null score − best non-null score (nil under v1).
    public var nullScoreDiff: Double?
}

public struct QAPostprocessSettings: Sendable, Equatable {
    public var nBestSize: Int = 20
    public var maxAnswerLength: Int = 30
    public var version2WithNegative: Bool = false
    public var nullScoreDiffThreshold: Double = 0
    public init(nBestSize: Int = 20, maxAnswerLength: Int = 30, version2WithNegative: Bool = false, nullScoreDiffThreshold: Double = 0) {
        self.nBestSize = nBestSize; self.maxAnswerLength = maxAnswerLength
        self.version2WithNegative = version2WithNegative; self.nullScoreDiffThreshold = nullScoreDiffThreshold
    }
}

public enum QAPostprocess {
    /// One window's logits: start and end per position (length T), and each position's character range (nil outside
    /// the context).
    public struct WindowLogits {
        public var start: [Float]
        public var end: [Float]
        public var offsets: [(Int, Int)?]
        public init(start: [Float], end: [Float], offsets: [(Int, Int)?]) { self.start = start; self.end = end; self.offsets = offsets }
    }

    /// Indices of the `n` largest values, largest first (numpy's argsort()[-1:-n-1:-1]; ties: the later index first,
    /// as a stable ascending argsort read backwards).
    static func topIndices(_ v: [Float], _ n: Int) -> [Int] {
        let asc = v.indices.sorted { v[$0] != v[$1] ? v[$0] < v[$1] : $0 < $1 }
        return Array(asc.reversed().prefix(n))
    }

    public static func predict(context: String, windows: [WindowLogits], settings s: QAPostprocessSettings) -> QAPrediction {
        struct Cand { var start: Int, end: Int, score: Double, startLogit: Double, endLogit: Double }
        var prelim: [Cand] = []
        var minNull: Cand? = nil
        for w in windows {
            let nullScore = Double(w.start[0]) + Double(w.end[0])
            if minNull == nil || minNull!.score > nullScore {
                minNull = Cand(start: 0, end: 0, score: nullScore, startLogit: Double(w.start[0]), endLogit: Double(w.end[0]))
            }
            let starts = topIndices(w.start, s.nBestSize), ends = topIndices(w.end, s.nBestSize)
            for si in starts {
                for ei in ends {
                    guard si < w.offsets.count, ei < w.offsets.count, let so = w.offsets[si], let eo = w.offsets[ei] else { continue }
                    if ei < si || ei - si + 1 > s.maxAnswerLength { continue }
                    prelim.append(Cand(start: so.0, end: eo.1, score: Double(w.start[si]) + Double(w.end[ei]),
                                       startLogit: Double(w.start[si]), endLogit: Double(w.end[ei])))
                }
            }
        }
        var nullScore = 0.0
        if s.version2WithNegative, let m = minNull {
            prelim.append(m)
            nullScore = m.score
        }
        // Python's sorted(reverse=True) is stable: equal scores keep their order.
        var preds = prelim.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }
            .map(\.element).prefix(s.nBestSize).map { $0 }
        if s.version2WithNegative, let m = minNull, !preds.contains(where: { $0.start == 0 && $0.end == 0 }) { preds.append(m) }
        let sc = Array(context.unicodeScalars)
        func text(_ c: Cand) -> String {
            var t = ""
            let a = min(max(c.start, 0), sc.count), b = min(max(c.end, a), sc.count)
            t.unicodeScalars.append(contentsOf: sc[a..<b]); return t
        }
        var texts = preds.map(text)
        if preds.isEmpty || (preds.count == 1 && texts[0] == "") {
            preds.insert(Cand(start: 0, end: 0, score: 0, startLogit: 0, endLogit: 0), at: 0)
            texts.insert("empty", at: 0)
        }
        let m = preds.map(\.score).max()!
        let e = preds.map { Foundation.exp($0.score - m) }
        let z = e.reduce(0, +)
        let probs = e.map { $0 / z }
        guard s.version2WithNegative else {
            return QAPrediction(text: texts[0], start: texts[0] == "empty" && preds[0].end == 0 ? 0 : preds[0].start, end: preds[0].end, score: probs[0], nullScoreDiff: nil)
        }
        var i = 0
        while i < texts.count - 1 && texts[i] == "" { i += 1 }
        let best = preds[i]
        let diff = nullScore - best.startLogit - best.endLogit
        if diff > s.nullScoreDiffThreshold {
            let k = texts.firstIndex(of: "") ?? i
            return QAPrediction(text: "", start: 0, end: 0, score: probs[k], nullScoreDiff: diff)
        }
        return QAPrediction(text: texts[i], start: best.start, end: best.end, score: probs[i], nullScoreDiff: diff)
    }
}
