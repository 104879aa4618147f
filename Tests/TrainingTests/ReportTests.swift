// Unit tests of the report generator (Training/Report.swift): records in, HTML out; no files, no model.
import Foundation
import XCTest
@testable import Training

final class ReportTests: XCTestCase {
    func sampleInput(confusion: [[Int]]? = nil, labels: [String] = ["ham", "spam"]) -> ReportInput {
        var logs: [[String: Double]] = []
        for s in 1...5 {
            let x = Double(s)
            var r: [String: Double] = ["step": 10 * x, "loss": 1 / x]
            r["learning_rate"] = 5e-5 * (6 - x) / 5
            r["tokens_per_s"] = 1000 + x
            r["epoch"] = x / 5
            logs.append(r)
        }
        // 20 examples: ham 12 (10 right), spam 8 (6 right) → accuracy 16/20.
        var evalRec: [String: Double] = ["step": 50, "epoch": 1, "eval_loss": 0.3, "eval_accuracy": 0.8,
                                         "eval_macro_f1": 0.79, "eval_samples": 20]
        evalRec["eval_recall_ham"] = 10.0 / 12; evalRec["eval_recall_spam"] = 6.0 / 8
        evalRec["eval_precision_ham"] = 10.0 / 12; evalRec["eval_precision_spam"] = 6.0 / 8
        evalRec["eval_f1_ham"] = 10.0 / 12; evalRec["eval_f1_spam"] = 0.75
        return ReportInput(logs: logs, evals: [evalRec], final: ["train_loss": 0.45, "global_step": 50],
                           labels: labels, confusion: confusion, title: "run<1>")
    }

    func testHasFourChartsWithTheirSeries() {
        let html = TrainingReport.html(sampleInput())
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4)
        for name in ["train loss", "eval loss", "learning rate", "tokens/s", "accuracy", "macro-F1"] {
            XCTAssertTrue(html.contains("<title>\(name)</title>"), "missing series \(name)")
        }
        // Five training points → the train-loss polyline has five coordinate pairs.
        let line = html.components(separatedBy: "<polyline").dropFirst().first { $0.contains("<title>train loss</title>") }!
        let points = line.components(separatedBy: "points=\"")[1].components(separatedBy: "\"")[0]
        XCTAssertEqual(points.split(separator: " ").count, 5)
    }

    func testIsSelfContainedAndEscapesText() {
        let html = TrainingReport.html(sampleInput())
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("http://") && html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http://"))
        XCTAssertFalse(html.contains("src="))
        XCTAssertTrue(html.contains("run&lt;1&gt;"))
        XCTAssertFalse(html.contains("run<1>"))
    }

    func testFinalTableAndPerClassRows() {
        let html = TrainingReport.html(sampleInput())
        XCTAssertTrue(html.contains("<td class=\"name\">eval_accuracy</td><td>0.8000</td>"), html)
        XCTAssertTrue(html.contains("<td class=\"name\">train_loss</td><td>0.4500</td>"))
        XCTAssertTrue(html.contains("<td class=\"name\">spam</td><td>0.7500</td><td>0.7500</td><td>0.7500</td>"), html)
    }

    func testGivenConfusionMatrixIsRendered() {
        let html = TrainingReport.html(sampleInput(confusion: [[9, 3], [1, 7]]))
        XCTAssertTrue(html.contains(">9</td>") && html.contains(">3</td>") && html.contains(">1</td>") && html.contains(">7</td>"))
        XCTAssertFalse(html.contains("Derived from"))
    }

    /// Two classes: the matrix follows from recall, accuracy and the sample count (by hand: ham 12 with 10 right,
    /// spam 8 with 6 right → [[10, 2], [2, 6]]).
    func testBinaryConfusionIsDerivedExactly() {
        let m = TrainingReport.binaryConfusion(sampleInput().evals[0], labels: ["ham", "spam"])
        XCTAssertEqual(m, [[10, 2], [2, 6]])
        let html = TrainingReport.html(sampleInput())
        XCTAssertTrue(html.contains("Derived from"))
        // The per-class supports are the derived matrix's row sums.
        XCTAssertTrue(html.contains("<td class=\"name\">ham</td><td>0.8333</td><td>0.8333</td><td>0.8333</td><td>12</td>"), html)
        XCTAssertTrue(html.contains("<td class=\"name\">spam</td><td>0.7500</td><td>0.7500</td><td>0.7500</td><td>8</td>"), html)
    }

    func testMoreThanTwoClassesWithoutAMatrixShowAPlaceholder() {
        let html = TrainingReport.html(sampleInput(labels: ["a", "b", "c"]))
        XCTAssertTrue(html.contains("Not recorded"))
    }

    func testEmptyInputStillRenders() {
        let html = TrainingReport.html(ReportInput(logs: [], evals: [], final: [:], labels: [], confusion: nil, title: "empty"))
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertEqual(html.components(separatedBy: "no data").count - 1, 4)
        XCTAssertTrue(html.contains("no final metrics recorded"))
    }

    func testRecordsAreSplitIntoLogsAndEvalsAndTheMatrixIsPicked() {
        let records: [[String: Any]] = [
            ["step": 1, "loss": 0.9, "learning_rate": 1e-5],
            ["step": 1, "eval_accuracy": 0.5, "eval_loss": 0.7, "eval_confusion_matrix": [[1, 1], [0, 2]]],
        ]
        let input = ReportInput(records: records, finalObject: ["eval_accuracy": 0.75], labels: ["a", "b"], title: "t")
        XCTAssertEqual(input.logs.count, 1)
        XCTAssertEqual(input.evals.count, 1)
        XCTAssertEqual(input.confusion, [[1, 1], [0, 2]])
        XCTAssertEqual(input.final["eval_accuracy"], 0.75)
    }

    func testScoreChartSpansZeroToOne() {
        let html = TrainingReport.lineChart(title: "Eval metrics", yLabel: "score", yRange: 0...1,
                                            series: [.init(name: "accuracy", color: "#000", points: [(1, 0.4), (2, 0.5)])])
        XCTAssertTrue(html.contains(">0.25</text>") && html.contains(">0.75</text>"), "ticks at 0, 0.25, ..., 1: \(html)")
    }

    // MARK: the run summary, axes and the language-model report

    func testRunSummaryComesFirstWithModelDataRanksSettingsAndResults() throws {
        var config = TrainConfig(modelDir: URL(fileURLWithPath: "models/all-MiniLM-L6-v2"),
                                 trainFile: URL(fileURLWithPath: "data/sms-spam/train.jsonl"),
                                 evalFile: URL(fileURLWithPath: "data/sms-spam/test.jsonl"), outputDir: URL(fileURLWithPath: "runs/spam"))
        config.batchSize = 32; config.learningRate = 1e-4; config.warmupRatio = 0.1; config.threads = 1
        let summary = TrainingSummary(trainExamples: 4459, evalExamples: 1115, labels: ["ham", "spam"], totalSteps: 140,
                                      stepsPerEpoch: 140, worldSize: 2, microBatch: 16, accumulationSteps: 1, parameters: 22_713_986,
                                      allReduceBytes: 0, initialized: [], truncated: 0, notices: [])
        var input = sampleInput()
        input.final["train_runtime_s"] = 201.4
        input.final["eval_accuracy"] = 0.9923
        input.run = RunSummary(config: config, task: "classification", summary: summary, worldSize: 2)
        let html = TrainingReport.html(input)
        // The summary precedes the charts.
        let summaryAt = try XCTUnwrap(html.range(of: "<h3>Run</h3>")).lowerBound
        XCTAssertLessThan(summaryAt, try XCTUnwrap(html.range(of: "<h2>Curves</h2>")).lowerBound)
        for text in ["models/all-MiniLM-L6-v2", "data/sms-spam/train.jsonl (4,459 examples)", "data/sms-spam/test.jsonl (1,115 examples)",
                     "<td class=\"name\">ranks × threads</td><td class=\"name\">2 × 1</td>", "3 min 21 s",
                     "32 (16 per rank × 1 accumulation × 2 ranks)", "0.0001, linear schedule, warm-up ratio 0.1",
                     "22,713,986", "<div class=\"v\">0.9923</div><div class=\"k\">eval accuracy</div>"] {
            XCTAssertTrue(html.contains(text), "summary lacks \(text)")
        }
        // Axes name their quantity and unit.
        XCTAssertTrue(html.contains(">optimizer step</text>"))
        XCTAssertTrue(html.contains(">cross-entropy loss (nats)</text>"))
        XCTAssertTrue(html.contains(">tokens per second (all ranks)</text>"))
        XCTAssertTrue(html.contains(">score (fraction, 0 to 1)</text>"))
    }

    func testLanguageModelReportHasAPerplexityCurveAndNoClassSections() throws {
        let logs: [[String: Double]] = (1...4).map { ["step": Double($0), "loss": 4 - 0.5 * Double($0), "learning_rate": 1e-3, "tokens_per_s": 500] }
        let evals: [[String: Double]] = [["step": 2, "eval_loss": 3.2, "eval_perplexity": exp(3.2)], ["step": 4, "eval_loss": 2.5, "eval_perplexity": exp(2.5)]]
        let input = ReportInput(logs: logs, evals: evals, final: ["eval_loss": 2.5, "eval_perplexity": exp(2.5), "train_loss": 2.75],
                                labels: [], confusion: nil, title: "lm")
        let html = TrainingReport.html(input)
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4)
        XCTAssertTrue(html.contains("Perplexity (exp of the loss)"))
        XCTAssertTrue(html.contains(">loss (nats per token)</text>"))
        // The train perplexity series has one point per training record (exp of its loss).
        let line = try XCTUnwrap(html.components(separatedBy: "<polyline").dropFirst().first { $0.contains("<title>train perplexity</title>") })
        XCTAssertEqual(line.components(separatedBy: "points=\"")[1].components(separatedBy: "\"")[0].split(separator: " ").count, 4)
        XCTAssertTrue(html.contains("<title>eval perplexity</title>"))
        XCTAssertTrue(html.contains(String(format: "<div class=\"v\">%.2f</div><div class=\"k\">eval perplexity</div>", exp(2.5))))
        // Perplexity here spans exp(2)…exp(3.5), a factor under 20: a linear axis; a wider span gets a log axis.
        XCTAssertTrue(html.contains(">perplexity</text>"))
        let wide = TrainingReport.lineChart(title: "p", yLabel: "perplexity", logY: true,
                                            series: [.init(name: "eval perplexity", color: "#000", points: [(1, 50_000), (2, 500), (3, 100)])])
        XCTAssertTrue(wide.contains(">perplexity (log scale)</text>"), wide)
        for label in [">100</text>", ">1000</text>", ">1e+04</text>"] {
            XCTAssertTrue(wide.contains(label), "ticks at powers of ten, labelled in perplexity: \(label) in \(wide)")
        }
        XCTAssertFalse(html.contains("Per class"), "a language model has no classes")
        XCTAssertFalse(html.contains("Confusion matrix"))
        XCTAssertFalse(html.contains("no data"))
    }
}
