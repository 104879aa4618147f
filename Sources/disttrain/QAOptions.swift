// The question-answering flags `predict` and `eval` share (train has its own copies beside its other task flags),
// mapped onto Training's QAPostprocessSettings, and `predict`'s output lines for a question-answering model.
import ArgumentParser
import Foundation
import Training

struct QAOptions: ParsableArguments {
    @Option(help: "Question answering: context tokens shared by consecutive windows of a long context.") var docStride: Int = 128
    @Option(help: "Question answering: start and end candidates per window, and answers kept, in post-processing.") var nBestSize: Int = 20
    @Option(help: "Question answering: the longest answer in tokens.") var maxAnswerLength: Int = 30
    @Flag(help: "Question answering: some questions have no answer (SQuAD v2); answer \"\" when the null score wins.")
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

    /// `predict` of a question-answering model: {"question", "context"} lines in (SQuAD JSON too), one
    /// {"id", "question", "answer", "start", "end", "score"} line out per question in input order (JSONL: a blank
    /// input line keeps its place as {"line": N, "error": "empty input"}).
    func predictLines(folder: ModelFolder, adapterDir: URL?, input: URL, maxLength: Int?, batchSize: Int) throws -> [String] {
        let task = try QuestionAnsweringTask(folder: folder, adapterDir: adapterDir, evalFile: nil, settings: settings, docStride: docStride,
                                             maxLength: maxLength, batchSize: batchSize)
        let (examples, _, squadJSON) = try QAData.load(input, unlabelled: true)
        let preds = try task.answer(examples, batchSize: batchSize)
        var lines: [String] = []
        var nextLine = 1
        let jsonl = !squadJSON
        for (e, p) in zip(examples, preds) {
            if jsonl {
                while nextLine < e.line { lines.append("{\"error\":\"empty input\",\"line\":\(nextLine)}"); nextLine += 1 }
                nextLine = e.line + 1
            }
            let obj: [String: Any] = ["id": e.id, "question": e.question, "answer": p.text, "start": p.start, "end": p.end, "score": p.score]
            let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            lines.append(String(decoding: d, as: UTF8.self))
        }
        return lines
    }
}
