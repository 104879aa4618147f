// TokenClassifierHead: the head of BertForTokenClassification / DistilBertForTokenClassification on the shared
// encoder (EncoderClassifier with `config.head == .token`): dropout, then `classifier` (Linear C → NL) over every
// token's last hidden state. There is no pooler / pre_classifier; the layout (EncoderClassifier.makeLayout) leaves
// them out, so a saved folder holds exactly the tensors AutoModelForTokenClassification expects.
// Dropout as transformers: BERT `classifier_dropout` ?? `hidden_dropout_prob`; DistilBERT `dropout` (not
// `seq_classif_dropout`, which only its sequence classifier uses). Masks keyed by (sample, token) at the classifier site.
// Shapes: x, tokDrop [B·T, C]; W [NL, C]; logits, dLogits [B·T, NL] (padding rows computed, their gradient must be 0).
// The same forward/backward serves question answering's qa_outputs (`.span`, QuestionAnsweringHead.swift, NL = 2).
// Deliberately not here: the loss (the task masks ignored tokens with -100), the encoder layers.
import Foundation

extension EncoderClassifier {
    /// Token logits [B·T, NL] for the last hidden state `x` [B·T, C] (a view into the arena).
    func tokenHeadForward(_ x: UnsafePointer<Float>, B: Int, T: Int, dropout: DropoutContext?, samples: [Int]) -> UnsafeBufferPointer<Float> {
        let BT = B * T
        var input = x
        if let d = dropout, perTokenHeadDropout > 0 {
            dropoutRows(x, tokDrop, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.classifier, p: perTokenHeadDropout)
            input = UnsafePointer(tokDrop)
        }
        Linear.forward(y: tokLogits, x: input, w: P(wc), b: P(bc), n: BT, inC: C, outC: NL)
        probe?("logits of classifier (every token)", UnsafeBufferPointer(start: tokLogits, count: BT * NL))
        return UnsafeBufferPointer(start: tokLogits, count: BT * NL)
    }

    /// Given dLoss/dLogits [B·T, NL]: accumulates the classifier's gradients and writes dLoss/d(last hidden) into dA.
    func tokenHeadBackward(_ dl: UnsafePointer<Float>, B: Int, T: Int, dropout: DropoutContext?, samples: [Int]) {
        let BT = B * T
        let dropped = dropout != nil && perTokenHeadDropout > 0
        let x: UnsafePointer<Float> = dropped ? UnsafePointer(tokDrop) : UnsafePointer(acts[layers.count - 1].y2)
        linearBackward(nil, dx: dA, w: wc, b: bc, dy: dl, x: x, n: BT, inC: C, outC: NL)
        if dropped, let d = dropout {
            dropoutRows(dA, dA, B: B, T: T, C: C, ctx: d, samples: samples, site: DropoutSite.classifier, p: perTokenHeadDropout)
        }
        probe?("gradient out of the classifier head (backward)", UnsafeBufferPointer(start: dA, count: BT * C))
    }
}
