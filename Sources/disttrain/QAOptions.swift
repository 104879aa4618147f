// The question-answering flags `train`, `predict` and `eval` share, mapped onto Training's QAPostprocessSettings and
// doc stride (QuestionAnsweringTask reads them in training, QuestionAnsweringInference in eval and predict).
import ArgumentParser
import Foundation
import Training

struct QAOptions: ParsableArguments {
    @Option(help: "Question answering: context tokens shared by consecutive windows of a long context (run_qa's --doc_stride).") var docStride: Int = 128
    @Option(help: "Question answering: start and end candidates per window, and answers kept, in post-processing.") var nBestSize: Int = 20
    @Option(help: "Question answering: the longest answer in tokens.") var maxAnswerLength: Int = 30
    @Flag(help: "Question answering: some questions have no answer (SQuAD v2): train them on [CLS], answer \"\" when the null score wins.")
    var version2WithNegative = false
    @Option(help: "Question answering with --version-2-with-negative: no answer when null score − best span score exceeds this.")
    var nullScoreDiffThreshold: Double = 0

    func validate() throws {
        guard docStride >= 0 else { throw ValidationError("--doc-stride must not be negative (got \(docStride))") }
        guard nBestSize > 0 else { throw ValidationError("--n-best-size must be positive (got \(nBestSize))") }
        guard maxAnswerLength > 0 else { throw ValidationError("--max-answer-length must be positive (got \(maxAnswerLength))") }
        guard nullScoreDiffThreshold.isFinite else { throw ValidationError("--null-score-diff-threshold must be a number") }
    }

    var settings: QAPostprocessSettings {
        QAPostprocessSettings(nBestSize: nBestSize, maxAnswerLength: maxAnswerLength, version2WithNegative: version2WithNegative,
                              nullScoreDiffThreshold: nullScoreDiffThreshold)
    }
}
