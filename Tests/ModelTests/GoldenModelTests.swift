// GoldenModelTests.swift: BERT and DistilBERT tiny classifiers against the transformers goldens (batch 0):
// logits, loss, every hidden state, every parameter gradient by name. Tolerances from the fixtures' README
// (10-30x the float32-vs-float64 differences): logits atol 1e-5, loss rtol 1e-6, hidden atol 1e-5,
// grads atol 2e-6 + rtol 1e-4; attention key biases: atol only (their true gradient is exactly 0).
import Foundation
import XCTest
@testable import Model

final class GoldenModelTests: XCTestCase {
    /// `allRows`: the last layer on every row (as transformers); else on each row's first token only (the default,
    /// what the head reads): the logits, the loss and every gradient must be the same either way.
    func runGolden(_ name: String, allRows: Bool) throws {
        let (config, store, golden) = try Fixtures.load(name)
        let bert = config.family == .bert
        let (batch, labels) = try Fixtures.batch(golden, 0, bert: bert)
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: batch.batchSize, maxSeq: batch.seqLen)
        model.lastLayerAllRows = allRows
        // Dropout is 0 in the fixtures; pass a context anyway so the training path is the one tested.
        let logits = model.forward(batch, dropout: DropoutContext(seed: 1, step: 0))
        assertClose(Array(logits), try golden.floats("logits"), atol: 1e-5, "\(name) logits")
        let hs = model.hiddenStates()
        XCTAssertEqual(hs.count, config.layers + 1)
        let T = batch.seqLen, C = config.hidden
        for (i, h) in hs.enumerated() {
            let ref = try golden.floats("hidden_states/\(i)")
            if allRows || i < config.layers {
                assertClose(h, ref, atol: 1e-5, "\(name) hidden_states/\(i)")
            } else {   // the first token of each row only
                for b in 0..<batch.batchSize {
                    assertClose(Array(h[b * T * C ..< b * T * C + C]), Array(ref[b * T * C ..< b * T * C + C]), atol: 1e-5,
                                "\(name) hidden_states/\(i) row \(b) first token")
                }
            }
        }
        let B = batch.batchSize, NL = config.numLabels
        var dLogits = [Float](repeating: 0, count: B * NL)
        let loss = dLogits.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: logits, labels: labels, batch: B, classes: NL, scale: 1 / Float(B), dLogits: $0)
        } / Double(B)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.dir(name).appendingPathComponent("golden.json"))) as! [String: Any]
        let refLoss = (json["loss"] as! NSNumber).doubleValue
        XCTAssertLessThanOrEqual(abs(loss - refLoss), 1e-6 * abs(refLoss), "\(name) loss \(loss) vs \(refLoss)")
        store.zeroGrads()
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        for e in store.entries {
            let key = "grad/\(e.name)"
            guard golden.contains(key) else { XCTFail("golden lacks \(key)"); continue }
            let isKeyBias = e.name.hasSuffix("attention.self.key.bias") || e.name.hasSuffix("attention.k_lin.bias")
            assertClose(Array(store.grad(e.name)), try golden.floats(key), atol: 2e-6, rtol: isKeyBias ? 0 : 1e-4, "\(name) \(key)")
        }
    }

    func testBertGolden() throws { try runGolden("bert-tiny-cls", allRows: false) }
    func testDistilBertGolden() throws { try runGolden("distilbert-tiny-cls", allRows: false) }
    func testBertGoldenAllRows() throws { try runGolden("bert-tiny-cls", allRows: true) }
    func testDistilBertGoldenAllRows() throws { try runGolden("distilbert-tiny-cls", allRows: true) }

    /// The arena: a smaller (B, T) after a larger one gives what a fresh model gives.
    func testArenaReuseAtSmallerShape() throws {
        let (config, store, golden) = try Fixtures.load("bert-tiny-cls")
        let (big, _) = try Fixtures.batch(golden, 0, bert: true)
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
        _ = model.forward(big, dropout: nil)
        // rows 2..3 of batch 0 cut to their first 10 tokens
        let T = 10, B = 2, T0 = big.seqLen
        var ids: [Int32] = [], mask: [Int32] = []
        for b in 2..<4 { for t in 0..<T { ids.append(big.inputIds[b * T0 + t]); mask.append(big.attentionMask[b * T0 + t]) } }
        let small = TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask, sampleIndices: [2, 3])
        let reused = Array(model.forward(small, dropout: nil))
        let freshModel = EncoderClassifier(config: config, parameters: store, maxBatch: B, maxSeq: T)
        let fresh = Array(freshModel.forward(small, dropout: nil))   // the logits view lives as long as its model
        XCTAssertEqual(reused, fresh, "arena reuse changed the logits")
    }
}
