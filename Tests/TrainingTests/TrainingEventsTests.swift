// TrainingEventsTests: the typed records serialise to the metrics.jsonl keys report.html and the CLI tests read, and
// best-model tracking / early stopping decide as transformers' EarlyStoppingCallback does (patience counts
// evaluations without improvement; lower is better for losses and perplexity).
import Foundation
import XCTest
@testable import Training

final class TrainingEventsTests: XCTestCase {
    func testRecordsKeepTheMetricsFileKeys() {
        var r = StepRecord(step: 10, epoch: 0.5, loss: 0.69, learningRate: 5e-5, gradNorm: 1.5, tokensPerSecond: 1000,
                           elapsedSeconds: 3, totalSteps: 20, optimizerSeconds: 0.01)
        XCTAssertEqual(Set(r.metrics.keys), ["step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_s",
                                             "elapsed_s", "total_steps", "optimizer_s"])
        r.allReduce = (0.2, 50, 5)
        r.launchToFirstStep = 0.7
        r.checkpointWrite = (2, 90)
        XCTAssertEqual(r.metrics["allreduce_mb"], 50)
        XCTAssertEqual(r.metrics["allreduce_bus_gbps"], 5)
        XCTAssertEqual(r.metrics["checkpoint_mb_per_s"], 90)
        // Every reduction blocks or is waited for: the exposed communication is the reducer's time.
        XCTAssertEqual(r.metrics["comm_exposed_s"], 0.2)
        XCTAssertEqual(r.metrics.count, 9 + 7)
        // Multi-node jobs: the cross-node part of it and the MB this rank sent to other nodes.
        r.crossNode = (0.15, 44.4)
        XCTAssertEqual(r.metrics["cross_node_s"], 0.15)
        XCTAssertEqual(r.metrics["cross_node_mb"], 44.4)
        XCTAssertEqual(r.metrics.count, 9 + 9)
        let e = EvalRecord(step: 20, epoch: 1, values: ["eval_loss": 0.1, "eval_accuracy": 0.9], confusion: [[1, 0], [0, 1]])
        XCTAssertEqual(e.metrics, ["step": 20, "epoch": 1, "eval_loss": 0.1, "eval_accuracy": 0.9])
        XCTAssertEqual(StopRecord(step: 7, bestStep: 5, bestMetric: 0.3).metrics,
                       ["step": 7, "early_stopped": 1, "best_step": 5, "best_metric": 0.3])
        XCTAssertEqual(jsonObjectLine(StopRecord(step: 7, bestStep: nil, bestMetric: nil).metrics),
                       "{\"best_metric\": 0, \"best_step\": 7, \"early_stopped\": 1, \"step\": 7}")
    }

    /// The one JSON-line encoder: sorted keys, integral values below 1e15 without a fraction, non-finite as null, raw fields
    /// (the confusion matrix of eval_results.json) after the numbers, keys escaped.
    func testJSONObjectLineFormatting() {
        XCTAssertEqual(jsonObjectLine(["b": 0.25, "a": 3, "c": .nan, "d": 1e15]),
                       "{\"a\": 3, \"b\": 0.25, \"c\": null, \"d\": 1000000000000000.0}")
        XCTAssertEqual(jsonObjectLine(["eval_loss": 0.5], appending: [("eval_confusion_matrix", "\([[1, 2], [3, 4]] as [[Int64]])")]),
                       "{\"eval_loss\": 0.5, \"eval_confusion_matrix\": [[1, 2], [3, 4]]}")
        XCTAssertEqual(jsonObjectLine(["q\"k": -2]), "{\"q\\\"k\": -2}")
        XCTAssertEqual(jsonObjectLine([:]), "{}")
    }

    func testEarlyStoppingAfterPatienceEvaluationsWithoutImprovement() {
        func eval(_ step: Int, _ loss: Double) -> TrainingEvent { .evaluated(EvalRecord(step: step, epoch: 0, values: ["eval_loss": loss])) }
        // --metric-for-best-model eval_accuracy is not reported by this task: eval_loss decides (lower is better).
        var t = BestModelTracker(metric: "eval_accuracy", patience: 2, totalSteps: 10)
        XCTAssertEqual(t.observe(eval(1, 0.5)), .continue)
        XCTAssertEqual(t.observe(eval(2, 0.4)), .continue)
        XCTAssertEqual(t.observe(eval(3, 0.4)), .continue, "equal is no improvement: 1 of 2")
        XCTAssertEqual(t.observe(.step(StepRecord(step: 3, epoch: 0, loss: 1, learningRate: 0, gradNorm: 0, tokensPerSecond: 0,
                                                  elapsedSeconds: 0, totalSteps: 10, optimizerSeconds: 0))), .continue)
        XCTAssertEqual(t.observe(eval(4, 0.45)), .stop, "2 evaluations without improvement")
        XCTAssertEqual(t.best?.step, 2)
        XCTAssertEqual(t.best?.metric, 0.4)
        // At the last step there is nothing left to stop.
        var last = BestModelTracker(metric: "eval_loss", patience: 1, totalSteps: 4)
        _ = last.observe(eval(2, 0.1))
        XCTAssertEqual(last.observe(eval(4, 0.2)), .continue)
        // Higher is better for accuracy; patience 0 never stops; a resumed best counts.
        var acc = BestModelTracker(metric: "eval_accuracy", patience: 0, totalSteps: 10, best: (0.8, 3))
        for s in 4...8 {
            XCTAssertEqual(acc.observe(.evaluated(EvalRecord(step: s, epoch: 0, values: ["eval_accuracy": 0.7, "eval_loss": 0]))), .continue)
        }
        XCTAssertEqual(acc.best?.step, 3)
        XCTAssertEqual(acc.evalsWithoutImprovement, 5)
        XCTAssertEqual(acc.observe(.evaluated(EvalRecord(step: 9, epoch: 0, values: ["eval_accuracy": 0.85]))), .continue)
        XCTAssertEqual(acc.best?.step, 9)
    }
}
