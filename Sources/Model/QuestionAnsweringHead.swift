// QuestionAnsweringHead: BertForQuestionAnswering / DistilBertForQuestionAnswering on the shared encoder
// (EncoderClassifier with `config.head == .span`): `qa_outputs` (Linear C → 2) over every token's last hidden state,
// column 0 the start logit and column 1 the end logit. The forward/backward is the token head's
// (TokenClassifierHead.swift, with NL = 2 and the module named qa_outputs); BERT has no dropout before qa_outputs,
// DistilBERT applies `qa_dropout`. Here: the span loss as transformers computes it.
// Shapes: logits [B·T, 2] (row b·T + t: start, end); positions [B].
// Deliberately not here: windowing, targets and post-processing (Training/QAData.swift, QAPostprocess.swift).
import Foundation

extension EncoderClassifier {
    /// The dropout in front of the per-token head: token classification's classifier dropout, or for question
    /// answering none (BERT) / `qa_dropout` (DistilBERT).
    var perTokenHeadDropout: Float {
        switch config.head {
        case .span: config.family == .bert ? 0 : config.qaDropout
        default: config.family == .bert ? config.classifierDropout : config.hiddenDropout
        }
    }
}

public enum SpanLoss {
    /// transformers' …ForQuestionAnswering loss: positions clamped to [0, T], position T ignored, and
    /// (CE(start) + CE(end)) / 2 with each CE the mean over its non-ignored rows. Every position of a row (padding
    /// included, as transformers does) takes part in the softmax.
    /// Writes `scale`·d(Σ over rows of (ce_start + ce_end)/2)/dLogits into `dLogits` ([B·T, 2]) and returns the SUM over
    /// rows of (ce_start + ce_end) / 2, ignored positions contributing 0 — the task divides by the global count of
    /// examples (`normalise`: false); `normalise` true returns transformers' loss and its gradient (each CE divided by
    /// its own count), for goldens.
    @discardableResult
    public static func loss(logits: UnsafeBufferPointer<Float>, starts: [Int], ends: [Int], B: Int, T: Int, scale: Float,
                            normalise: Bool = false, dLogits: UnsafeMutableBufferPointer<Float>) -> Double {
        precondition(logits.count >= B * T * 2 && dLogits.count >= B * T * 2 && starts.count == B && ends.count == B)
        for i in 0..<(B * T * 2) { dLogits[i] = 0 }
        var total = 0.0
        for (col, positions) in [(0, starts), (1, ends)] {
            let clamped = positions.map { min(max($0, 0), T) }
            let count = clamped.filter { $0 < T }.count
            let w = normalise ? (count > 0 ? 1 / Double(count) : 0) : 1
            var sum = 0.0
            for b in 0..<B where clamped[b] < T {
                var m = -Double.infinity
                for t in 0..<T { m = max(m, Double(logits[(b * T + t) * 2 + col])) }
                var z = 0.0
                for t in 0..<T { z += Foundation.exp(Double(logits[(b * T + t) * 2 + col]) - m) }
                let lse = m + Foundation.log(z)
                sum += lse - Double(logits[(b * T + clamped[b]) * 2 + col])
                for t in 0..<T {
                    let p = Foundation.exp(Double(logits[(b * T + t) * 2 + col]) - lse)
                    let g = p - (t == clamped[b] ? 1 : 0)
                    dLogits[(b * T + t) * 2 + col] = Float(g * 0.5 * w * Double(scale))
                }
            }
            total += sum * w / 2
        }
        return total
    }
}
