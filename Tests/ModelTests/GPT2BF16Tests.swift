// GPT2BF16Tests: GPT-2 with its Conv1D products in bf16 (MatmulPrecision.bf16; the tied head stays fp32) against the same
// model in fp32: the loss and every gradient within bf16 tolerance (inputs rounded to 8 significant bits, u = 2⁻⁹,
// fp32 sums), and not identical (the precision reaches the products). Skipped on a CPU without AVX512-BF16.
import Foundation
import SplitMix
import XCTest
@testable import Model

final class GPT2BF16Tests: XCTestCase {
    override func tearDown() { ComputeThreads.set(1) }

    private func run(_ precision: MatmulPrecision, classifier: Bool = false) -> (loss: Double, grads: [Float]) {
        let json: [String: Any] = [
            "model_type": "gpt2", "vocab_size": 500, "n_embd": 128, "n_layer": 2, "n_head": 4, "n_inner": NSNull(),
            "n_positions": 64, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1,
            "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02, "pad_token_id": 0,
            "id2label": ["0": "A", "1": "B", "2": "C"],
        ]
        let config = try! GPT2Config(json: json, path: "<test gpt2>")
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: classifier))
        GPT2Benchmark.initialise(store, config: config, seed: 21)
        let B = 4, T = 48
        var rng = SplitMix64(seed: 4)
        let ids = (0..<(B * T)).map { _ in Int32(1 + rng.next() % 499) }
        let tb = TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: [Int32](repeating: 1, count: B * T),
                            sampleIndices: Array(0..<B))
        store.zeroGrads()
        var loss = 0.0
        if classifier {
            let model = try! GPT2Classifier(config: config, parameters: store, maxBatch: B, maxSeq: T)
            model.matmulPrecision = precision
            let logits = model.forward(tb, dropout: DropoutContext(seed: 1, step: 0))
            var d = [Float](repeating: 0, count: B * 3)
            loss = d.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: [0, 1, 2, 1], batch: B, classes: 3, scale: 1 / Float(B), dLogits: $0)
            }
            d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        } else {
            let model = GPT2LMHead(config: config, parameters: store, maxBatch: B, maxSeq: T)
            model.matmulPrecision = precision
            let l = model.forward(tb, labels: ids, gradientScale: 1 / Float(B * (T - 1)), dropout: DropoutContext(seed: 1, step: 0))
            model.backward()
            loss = l.mean
        }
        return (loss, Array(store.grads))
    }

    private func check(classifier: Bool) throws {
        guard MatmulPrecision.bf16Supported else { throw XCTSkip("this CPU has no AVX512-BF16") }
        let a = run(.fp32, classifier: classifier), b = run(.bf16, classifier: classifier)
        XCTAssertEqual(b.loss, a.loss, accuracy: 1e-2 * abs(a.loss), "loss fp32 \(a.loss) vs bf16 \(b.loss)")
        XCTAssertNotEqual(a.grads, b.grads, "bf16 gave the fp32 gradients exactly: the precision did not reach the products")
        // Per tensor: relative L2 error of the gradient (bf16 inputs: ~u·sqrt(depth) ≈ 1e-2 at most here).
        let store = ParameterStore(layout: GPT2Layout.make(config: try GPT2Config(json: [
            "model_type": "gpt2", "vocab_size": 500, "n_embd": 128, "n_layer": 2, "n_head": 4, "n_inner": NSNull(),
            "n_positions": 64, "activation_function": "gelu_new", "id2label": ["0": "A", "1": "B", "2": "C"], "pad_token_id": 0,
        ], path: "<layout>"), classifier: classifier))
        for e in store.entries {
            var num = 0.0, den = 0.0
            for i in e.range {
                let d = Double(a.grads[i]) - Double(b.grads[i])
                num += d * d; den += Double(a.grads[i]) * Double(a.grads[i])
            }
            if den == 0 { XCTAssertEqual(num, 0, e.name); continue }
            XCTAssertLessThan((num / den).squareRoot(), 3e-2, "\(e.name): relative L2 error of the bf16 gradient")
        }
    }

    func testLMHeadBF16GradientsTrackFP32() throws { try check(classifier: false) }
    func testClassifierBF16GradientsTrackFP32() throws { try check(classifier: true) }

    func testLMHeadBF16IsBitIdenticalAcrossThreadCounts() throws {
        guard MatmulPrecision.bf16Supported else { throw XCTSkip("this CPU has no AVX512-BF16") }
        ComputeThreads.set(1)
        let one = run(.bf16)
        ComputeThreads.set(2)
        let two = run(.bf16)
        XCTAssertEqual(one.loss, two.loss)
        XCTAssertTrue(zip(one.grads, two.grads).allSatisfy { $0.bitPattern == $1.bitPattern }, "bf16 gradients differ between 1 and 2 threads")
    }
}
