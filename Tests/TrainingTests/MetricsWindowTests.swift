// MetricsWindowTests: the token rate of a log record leaves out the time of an evaluation run inside the window
// (before the fix, the record after every evaluation showed the rate diluted by the evaluation's seconds).
@testable import Dist
import Foundation
@testable import Training
import XCTest

final class MetricsWindowTests: XCTestCase {
    private func record(_ w: inout MetricsWindow) -> StepRecord {
        w.record(step: 1, epoch: 1, totalSteps: 1, lr: 0, last: StepResult(loss: 1, tokens: 1_000, gradNorm: 0, optimizerSeconds: 0),
                 elapsed: 0, worldSize: 1, reducerStats: GradientReducer.Stats(), launchToFirstStep: nil, checkpoint: nil)
    }

    func testEvaluationTimeIsNotInTheTokenRate() {
        var w = MetricsWindow(reducerStats: GradientReducer.Stats())
        w.add(StepResult(loss: 1, tokens: 1_000, gradNorm: 0, optimizerSeconds: 0))
        w.excluding { usleep(1_500_000) }   // an "evaluation" of 1.5 s
        let rate = record(&w).tokensPerSecond
        // Without the exclusion the rate would be ≤ 1,000 / 1.5 s ≈ 667 tokens/s; the step itself took microseconds.
        XCTAssertGreaterThan(rate, 2_000, "the evaluation's 1.5 s diluted the training token rate")
    }

    func testTimeOutsideAnEvaluationStillCounts() {
        var w = MetricsWindow(reducerStats: GradientReducer.Stats())
        w.add(StepResult(loss: 1, tokens: 1_000, gradNorm: 0, optimizerSeconds: 0))
        usleep(1_500_000)                   // training time (not excluded)
        XCTAssertLessThan(record(&w).tokensPerSecond, 1_000 / 1.4)
    }
}
