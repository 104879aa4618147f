// The 6-step AdamW trajectory of the fixtures (transformers Trainer convention, see Fixtures/*/golden.json
// "hyperparameters"): per-step loss, pre-clip gradient norm, learning rate, and every parameter after step 6.
//   step k = 1..6, batch (k-1) % 3: zero_grad; loss.backward(); norm = clip_grad_norm_(params, 1.0);
//   lr = linear warmup 2 / total 6 at 1e-3; AdamW(betas 0.9/0.999, eps 1e-8, wd 0.01 except biases/LayerNorm).
// Tolerances (fixtures README): step losses rtol 2e-6, float64-accumulated grad norm rtol 2e-6, lr exact,
// final parameters atol 5e-6 (parameters moved by ≤3e-3; key-bias noise stays < 2e-7).
import Foundation
import XCTest
@testable import Model

final class GoldenTrajectoryTests: XCTestCase {
    func runTrajectory(_ name: String, bert: Bool) throws {
        let (config, store, golden) = try Fixtures.load(name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try Fixtures.dir(name).appendingPathComponent("golden.json"))) as! [String: Any]
        let log = json["train_log"] as! [[String: Any]]
        let params = json["parameters"] as! [[String: Any]]
        // Our decay rule must select exactly the parameters transformers' Trainer does.
        for p in params {
            let n = p["name"] as! String
            XCTAssertEqual(store.layout.entry(n)?.decay, p["weight_decay"] as? Bool, "\(name): decay flag of \(n)")
        }
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
        let opt = AdamW(store: store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01))
        let schedule = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 2, totalSteps: 6)
        let C = config.numLabels
        for k in 0..<6 {
            let entry = log[k]
            let (batch, labels) = try Fixtures.batch(golden, entry["batch"] as! Int, bert: bert)
            store.zeroGrads()
            let logits = model.forward(batch, dropout: nil)
            var d = [Float](repeating: 0, count: batch.batchSize * C)
            let lossSum = d.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: labels, batch: batch.batchSize, classes: C,
                                  scale: 1 / Float(batch.batchSize), dLogits: $0)
            }
            model.backward(dLogits: UnsafeBufferPointer(start: d, count: d.count))
            let loss = lossSum / Double(batch.batchSize)
            let refLoss = (entry["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(loss, refLoss, accuracy: 2e-6 * abs(refLoss), "\(name) step \(k + 1) loss")
            let norm = GradientClipping.clip(store.grads, maxNorm: 1.0)
            let refNorm = (entry["grad_norm_preclip_exact"] as! NSNumber).doubleValue
            XCTAssertEqual(norm, refNorm, accuracy: 2e-6 * refNorm, "\(name) step \(k + 1) pre-clip grad norm")
            let lr = schedule.lr(forStep: k)
            XCTAssertEqual(lr, (entry["lr"] as! NSNumber).doubleValue, accuracy: 1e-12, "\(name) step \(k + 1) lr")
            opt.step(lr: lr)
        }
        for e in store.entries {
            assertClose(Array(store.value(e.name)), try golden.floats("final/\(e.name)"), atol: 5e-6, "\(name) final \(e.name)")
        }
    }

    /// The trainer's economies on the same trajectory: the word-embedding gradient zeroed only in the rows the
    /// previous step touched, AdamW updating only live rows of the table, and the clipping factor passed to the step
    /// instead of scaling the buffer. Final parameters must still match PyTorch's.
    func runSparseTrajectory(_ name: String, bert: Bool, table: String) throws {
        let (config, store, golden) = try Fixtures.load(name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try Fixtures.dir(name).appendingPathComponent("golden.json"))) as! [String: Any]
        let log = json["train_log"] as! [[String: Any]]
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
        let e = store.layout.entry(table)!
        let sparse = [(range: e.range, rowLength: e.shape[1])]
        let opt = AdamW(store: store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01), rowSparse: sparse)
        let schedule = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 2, totalSteps: 6)
        let C = config.numLabels
        var dirty: [[Int]]?
        for k in 0..<6 {
            let (batch, labels) = try Fixtures.batch(golden, log[k]["batch"] as! Int, bert: bert)
            store.zeroGrads(rowSparse: sparse, dirtyRows: dirty)
            let rows = [Array(Set(batch.inputIds.map(Int.init))).sorted()]
            let logits = model.forward(batch, dropout: nil)
            var d = [Float](repeating: 0, count: batch.batchSize * C)
            _ = d.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: labels, batch: batch.batchSize, classes: C,
                                  scale: 1 / Float(batch.batchSize), dLogits: $0)
            }
            model.backward(dLogits: UnsafeBufferPointer(start: d, count: d.count))
            let norm = GradientClipping.globalNorm(UnsafeBufferPointer(store.grads))
            XCTAssertEqual(norm, (log[k]["grad_norm_preclip_exact"] as! NSNumber).doubleValue, accuracy: 2e-6 * norm, "\(name) step \(k + 1) norm")
            opt.step(lr: schedule.lr(forStep: k), gradScale: GradientClipping.coefficient(norm: norm, maxNorm: 1.0), touchedRows: rows)
            dirty = rows
        }
        XCTAssertLessThan(opt.liveRows[0], e.shape[0], "\(name): some table rows were never live")
        for e in store.entries {
            assertClose(Array(store.value(e.name)), try golden.floats("final/\(e.name)"), atol: 5e-6, "\(name) final \(e.name)")
        }
    }

    func testBertSixStepsRowSparse() throws {
        try runSparseTrajectory("bert-tiny-cls", bert: true, table: "bert.embeddings.word_embeddings.weight")
    }
    func testDistilBertSixStepsRowSparse() throws {
        try runSparseTrajectory("distilbert-tiny-cls", bert: false, table: "distilbert.embeddings.word_embeddings.weight")
    }

    func testBertSixSteps() throws { try runTrajectory("bert-tiny-cls", bert: true) }
    func testDistilBertSixSteps() throws { try runTrajectory("distilbert-tiny-cls", bert: false) }
}
