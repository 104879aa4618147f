// ProgressEventsTests: the loop's `.progress` events (what the progress line draws): one after every optimizer step,
// in order, carrying the running loss of the logging window; and one as each evaluation and save begins, before its
// result. In-process, one rank, the tiny BERT fixture.
import Dist
import Foundation
import TestSupport
import XCTest
@testable import Training

final class ProgressEventsTests: XCTestCase {
    func testAProgressEventAfterEveryStepAndAtEachEvaluationAndSave() throws {
        let folder = try TempFolder()
        var c = TrainConfig(modelDir: TestPaths.fixture("bert-tiny-cls"),
                            trainFile: try TrainerLoopTests.classificationData(in: folder, count: 48, seed: 1),
                            evalFile: try TrainerLoopTests.classificationData(in: folder, count: 12, seed: 2),
                            outputDir: folder.url.appendingPathComponent("out"))
        c.maxSteps = 6; c.saveSteps = 3; c.evalSteps = 3; c.batchSize = 8; c.loggingSteps = 2
        c.learningRate = 3e-3; c.maxLength = 16; c.threads = 1
        var events: [String] = []
        var trainingSteps: [Int] = [], windowLoss: [Int: Double] = [:], recordLoss: [Int: Double] = [:]
        let trainer = try Trainer(config: c, comm: LocalCommunicator())
        _ = try trainer.run { event in
            switch event {
            case .progress(let p):
                events.append("\(p.phase.rawValue) \(p.step)")
                XCTAssertEqual(p.totalSteps, 6)
                if p.phase == .training {
                    trainingSteps.append(p.step)
                    windowLoss[p.step] = p.runningLoss
                    XCTAssertNotNil(p.tokensPerSecond)
                    XCTAssertEqual(p.epoch, Double(p.step) / 6, accuracy: 1e-12)
                } else {
                    XCTAssertNil(p.runningLoss, "an evaluation or save carries no loss of its own")
                }
            case .step(let r): events.append("record \(r.step)"); recordLoss[r.step] = r.loss
            case .evaluated(let e): events.append("evaluated \(e.step)")
            case .saved(let url) where url.lastPathComponent.hasPrefix("checkpoint-"): events.append("saved \(url.lastPathComponent)")
            default: break
            }
            return .continue
        }
        XCTAssertEqual(trainingSteps, [1, 2, 3, 4, 5, 6], "one progress event per optimizer step")
        XCTAssertEqual(events, [
            "training 1", "training 2", "record 2", "training 3", "evaluating 3", "evaluated 3", "saving 3", "saved checkpoint-3",
            "training 4", "record 4", "training 5", "training 6", "record 6", "evaluating 6", "evaluated 6", "saving 6",
            "saved checkpoint-6",
        ])
        // At a logging step the running loss is the record's window mean, exactly.
        for s in [2, 4, 6] { XCTAssertEqual(windowLoss[s], recordLoss[s], "step \(s)") }
    }
}
