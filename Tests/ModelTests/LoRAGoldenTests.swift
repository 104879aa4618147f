// LoRAGoldenTests.swift: LoRA on bert-tiny-cls against the peft goldens (Fixtures/bert-tiny-lora, written by
// generate.py with peft 0.21.2: r 4, alpha 8, query+value, modules_to_save classifier, init_lora_weights=False).
// Starting from adapter-init/: logits, loss, the trainable gradients, the frozen base, the 6-step AdamW trajectory over
// the trainable store only, the adapter after step 6 against adapter-step6/ (values, key names, shapes, config
// fields), trained logits, and the merged weights and logits.
// Tolerances (fixtures README, 10-30x the float32-vs-float64 differences): logits atol 1e-5 (their scale is ~6e-3, so
// atol, not rtol), loss rtol 1e-6, gradients atol 2e-6 + rtol 1e-4, step losses rtol 2e-6, float64-accumulated grad
// norms rtol 2e-6, parameters after 6 steps atol 5e-6 (they moved by ≤ 3e-3).
// Not tested here: the bad-input errors and fresh adapters (LoRAConfigTests.swift).
import Foundation
import XCTest
@testable import Model

final class LoRAGoldenTests: XCTestCase {
    struct Setup {
        let config: ModelConfig
        let base: ParameterStore
        let model: EncoderClassifier
        let adapter: LoRAAdapter
        let golden: SafeTensorsFile
        let json: [String: Any]
        let dir: URL
    }

    /// bert-tiny-cls with adapter-init/ attached (frozen base), and the LoRA goldens.
    func loraSetup(adapter name: String = "adapter-init") throws -> Setup {
        let (config, base, _) = try Fixtures.load("bert-tiny-cls")
        let dir = try Fixtures.dir("bert-tiny-lora")
        let golden = try SafeTensorsFile(url: dir.appendingPathComponent("golden.safetensors"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("golden.json"))) as! [String: Any]
        let model = EncoderClassifier(config: config, parameters: base, maxBatch: 4, maxSeq: 40)
        let adapter = try PEFTAdapter.load(dir.appendingPathComponent(name), into: model)
        return Setup(config: config, base: base, model: model, adapter: adapter, golden: golden, json: json, dir: dir)
    }

    /// Forward + cross-entropy (mean over the batch) + backward on golden batch k; returns logits and loss.
    func step(_ s: Setup, batch k: Int) throws -> ([Float], Double) {
        let (batch, labels) = try Fixtures.batch(s.golden, k, bert: true)
        let B = batch.batchSize, NL = s.config.numLabels
        let logits = s.model.forward(batch, dropout: DropoutContext(seed: 1, step: k))
        var d = [Float](repeating: 0, count: B * NL)
        let sum = d.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: logits, labels: labels, batch: B, classes: NL, scale: 1 / Float(B), dLogits: $0)
        }
        let out = Array(logits)
        d.withUnsafeBufferPointer { s.model.backward(dLogits: $0) }
        return (out, sum / Double(B))
    }

    func testTrainableLayoutMatchesPeft() throws {
        let s = try loraSetup()
        let ref = s.json["trainable_parameters"] as! [[String: Any]]
        XCTAssertEqual(s.adapter.store.entries.map(\.name), ref.map { $0["name"] as! String }, "trainable names and order")
        for (e, r) in zip(s.adapter.store.entries, ref) {
            XCTAssertEqual(e.shape, r["shape"] as? [Int], "shape of \(e.name)")
            XCTAssertEqual(e.decay, r["weight_decay"] as? Bool, "decay flag of \(e.name)")
            // adapter-init/ holds exactly peft's initial values
            XCTAssertEqual(Array(s.adapter.store.value(e.name)), try s.golden.floats("initial/\(e.name)"), "initial \(e.name)")
        }
        XCTAssertEqual(s.adapter.plan.config.scaling, 2.0)
    }

    func testForwardBackwardAndFrozenBase() throws {
        let s = try loraSetup()
        s.adapter.store.zeroGrads()
        let (logits, loss) = try step(s, batch: 0)
        assertClose(logits, try s.golden.floats("logits"), atol: 1e-5, "lora logits")
        let refLoss = (s.json["loss"] as! NSNumber).doubleValue
        XCTAssertLessThanOrEqual(abs(loss - refLoss), 1e-6 * refLoss, "lora loss \(loss) vs \(refLoss)")
        for e in s.adapter.store.entries {
            assertClose(Array(s.adapter.store.grad(e.name)), try s.golden.floats("grad/\(e.name)"), atol: 2e-6, rtol: 1e-4,
                        "grad/\(e.name)")
        }
        // Frozen base: nothing was computed for it, so its gradient buffer was never even allocated.
        XCTAssertFalse(s.base.hasGradientBuffer, "a frozen base touched its gradient buffer")
        // The base head is untouched: the model reads the classifier from the trainable store (modules_to_save).
        XCTAssertTrue(s.adapter.savedOffset.keys.contains(s.base.layout.entry("classifier.weight")!.offset))
    }

    /// An unfrozen base with the adapter: base gradients now flow (and the adapter's are unchanged), so the frozen
    /// check above is not vacuous.
    func testUnfrozenBaseGetsGradients() throws {
        let s = try loraSetup()
        s.model.attachLoRA(s.adapter, freezeBase: false)
        s.base.zeroGrads(); s.adapter.store.zeroGrads()
        _ = try step(s, batch: 0)
        XCTAssertTrue(s.base.grad("bert.encoder.layer.0.attention.self.query.weight").contains { $0 != 0 })
        XCTAssertTrue(s.base.grad("bert.embeddings.word_embeddings.weight").contains { $0 != 0 })
        // the classifier's gradient goes to its modules_to_save copy, not the base
        XCTAssertFalse(s.base.grad("classifier.weight").contains { $0 != 0 })
        let name = "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.default.weight"
        assertClose(Array(s.adapter.store.grad(name)), try s.golden.floats("grad/\(name)"), atol: 2e-6, rtol: 1e-4, name)
    }

    /// One forward (dropout seed 7, step 2) and backward of the cross-entropy (scale 1/4) on `batch`: the logits.
    static func dropoutStep(_ model: EncoderClassifier, _ batch: TokenBatch, _ labels: [Int32], classes: Int) -> [Float] {
        let logits = Array(model.forward(batch, dropout: DropoutContext(seed: 7, step: 2)))
        var d = [Float](repeating: 0, count: logits.count)
        _ = d.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: UnsafeBufferPointer(start: logits, count: logits.count), labels: labels,
                              batch: batch.batchSize, classes: classes, scale: 0.25, dLogits: $0)
        }
        d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        return logits
    }

    /// With every dropout on (hidden, attention, classifier, lora) a frozen base, which shares ctx/y1/probs buffers
    /// across layers and recomputes the probabilities in backward, gives the same adapter gradients as the same model
    /// with the base unfrozen (which keeps every layer's buffers), for the golden targets and for targets that keep
    /// ctx (attention.output.dense) and y1 (intermediate.dense).
    func testFrozenBufferSharingEqualsUnfrozenWithDropout() throws {
        for targets in [["query", "value"], ["attention.output.dense", "intermediate.dense"]] {
            var (config, base, golden) = try Fixtures.load("bert-tiny-cls")
            config.hiddenDropout = 0.1; config.attentionDropout = 0.1; config.classifierDropout = 0.1
            let model = EncoderClassifier(config: config, parameters: base, maxBatch: 4, maxSeq: 40)
            let trainable = try model.enableLoRA(LoRAConfig(r: 2, alpha: 4, dropout: 0.2, targetModules: targets), seed: 5)
            var rng = TestRNG(3)
            for t in model.adapter!.plan.targets { _ = trainable.value(t.bName).update(fromContentsOf: rng.floats(t.outC * 2, scale: 0.3)) }
            let (batch, labels) = try Fixtures.batch(golden, 1, bert: true)
            func grads(frozen: Bool) -> ([Float], [Float]) {
                model.attachLoRA(model.adapter!, freezeBase: frozen)
                trainable.zeroGrads()
                return (Self.dropoutStep(model, batch, labels, classes: config.numLabels), Array(trainable.grads))
            }
            let (lf, gf) = grads(frozen: true)
            XCTAssertFalse(base.hasGradientBuffer, "\(targets): frozen base touched its gradients")
            let (lu, gu) = grads(frozen: false)
            XCTAssertEqual(lf, lu, "\(targets): logits")
            XCTAssertGreaterThan(gu.map { abs($0) }.max()!, 0)
            assertClose(gf, gu, atol: 1e-7, rtol: 1e-5, "\(targets): adapter gradients, frozen vs unfrozen base")
        }
    }

    /// The last layer on each row's first token only (the default under a sequence head) against every row (as
    /// transformers computes it), every dropout on: same logits, same gradients, for full fine-tuning (every base
    /// gradient) and for LoRA at the query and the linears after the attention (input dropout keyed by the same row).
    func testLastLayerFirstTokensEqualAllRowsWithDropout() throws {
        for lora in [false, true] {
            var (config, base, golden) = try Fixtures.load("bert-tiny-cls")
            config.hiddenDropout = 0.1; config.attentionDropout = 0.1; config.classifierDropout = 0.1
            let model = EncoderClassifier(config: config, parameters: base, maxBatch: 4, maxSeq: 40)
            var trainable = base
            if lora {
                trainable = try model.enableLoRA(LoRAConfig(r: 2, alpha: 4, dropout: 0.2,
                    targetModules: ["query", "attention.output.dense", "intermediate.dense", "output.dense"]), seed: 5)
                var rng = TestRNG(3)
                for t in model.adapter!.plan.targets { _ = trainable.value(t.bName).update(fromContentsOf: rng.floats(t.outC * 2, scale: 0.3)) }
            }
            let (batch, labels) = try Fixtures.batch(golden, 1, bert: true)
            func run(allRows: Bool) -> ([Float], [Float]) {
                model.lastLayerAllRows = allRows
                trainable.zeroGrads()
                return (Self.dropoutStep(model, batch, labels, classes: config.numLabels), Array(trainable.grads))
            }
            let (lc, gc) = run(allRows: false)
            // the first-token path really ran: the fresh arena's other rows of the last layer's output stay zero
            let last = model.hiddenStates().last!, C = config.hidden
            XCTAssertTrue(last[C ..< batch.seqLen * C].allSatisfy { $0 == 0 }, "lora \(lora): the last layer ran on every row")
            let (la, ga) = run(allRows: true)
            assertClose(lc, la, atol: 1e-6, "lora \(lora): logits, first tokens vs all rows")
            XCTAssertGreaterThan(ga.map { abs($0) }.max()!, 0)
            assertClose(gc, ga, atol: 1e-7, rtol: 1e-5, "lora \(lora): gradients, first tokens vs all rows")
        }
    }

    func testSixStepsSaveAndMerge() throws {
        let s = try loraSetup()
        let log = s.json["train_log"] as! [[String: Any]]
        let store = s.adapter.store
        let opt = AdamW(store: store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01))
        let schedule = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 2, totalSteps: 6)
        let baseBefore = Array(s.base.values)
        for k in 0..<6 {
            let entry = log[k]
            store.zeroGrads()
            let (_, loss) = try step(s, batch: entry["batch"] as! Int)
            let refLoss = (entry["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(loss, refLoss, accuracy: 2e-6 * refLoss, "step \(k + 1) loss")
            let norm = GradientClipping.clip(store.grads, maxNorm: 1.0)
            let refNorm = (entry["grad_norm_preclip_exact"] as! NSNumber).doubleValue
            XCTAssertEqual(norm, refNorm, accuracy: 2e-6 * refNorm, "step \(k + 1) pre-clip grad norm")
            let lr = schedule.lr(forStep: k)
            XCTAssertEqual(lr, (entry["lr"] as! NSNumber).doubleValue, accuracy: 1e-12, "step \(k + 1) lr")
            opt.step(lr: lr)
        }
        XCTAssertEqual(Array(s.base.values), baseBefore, "training the adapter changed the frozen base")
        for e in store.entries {
            assertClose(Array(store.value(e.name)), try s.golden.floats("final/\(e.name)"), atol: 5e-6, "final/\(e.name)")
        }
        let (batch0, _) = try Fixtures.batch(s.golden, 0, bert: true)
        assertClose(Array(s.model.forward(batch0, dropout: nil)), try s.golden.floats("trained/logits"), atol: 1e-5, "trained logits")

        // Save: the same tensors, names, shapes and config fields as peft's adapter-step6/.
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("lora-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try PEFTAdapter.save(s.adapter, to: out)
        let ours = try SafeTensorsFile(url: out.appendingPathComponent(PEFTAdapter.weightsFileName))
        let peft = try SafeTensorsFile(url: s.dir.appendingPathComponent("adapter-step6/adapter_model.safetensors"))
        XCTAssertEqual(Set(ours.names), Set(peft.names), "adapter tensor names")
        for n in peft.names {
            XCTAssertEqual(ours.info(n)?.shape, peft.info(n)?.shape, "shape of \(n)")
            XCTAssertEqual(ours.info(n)?.dtype, peft.info(n)?.dtype, "dtype of \(n)")
            if ours.contains(n) { assertClose(try ours.floats(n), try peft.floats(n), atol: 5e-6, "saved \(n) vs adapter-step6") }
        }
        let ourConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(PEFTAdapter.configFileName))) as! [String: Any]
        let peftConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: s.dir.appendingPathComponent("adapter-step6/adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(Set(ourConfig.keys), Set(peftConfig.keys), "adapter_config.json fields")
        for (k, v) in peftConfig {
            if k == "target_modules" {   // peft writes a set: order is arbitrary
                XCTAssertEqual(Set(ourConfig[k] as? [String] ?? []), Set(v as! [String]), k)
            } else {
                XCTAssertTrue((ourConfig[k] as? NSObject)?.isEqual(v) ?? false, "adapter_config.json \(k): \(ourConfig[k] ?? "missing") vs \(v)")
            }
        }
        // Reloading our adapter reproduces the trained model.
        let (config2, base2, _) = try Fixtures.load("bert-tiny-cls")
        let model2 = EncoderClassifier(config: config2, parameters: base2, maxBatch: 4, maxSeq: 40)
        try PEFTAdapter.load(out, into: model2)
        assertClose(Array(model2.forward(batch0, dropout: nil)), try s.golden.floats("trained/logits"), atol: 1e-5, "reloaded logits")

        // Merge: W += 2·B A on query/value, the trained classifier over the base one; a plain model again.
        let (config3, merged, _) = try Fixtures.load("bert-tiny-cls")
        PEFTAdapter.merge(plan: s.adapter.plan, adapter: store, into: merged)
        let mergedNames = s.json["merged_tensor_names"] as! [String]
        for n in mergedNames { assertClose(Array(merged.value(n)), try s.golden.floats("merged/\(n)"), atol: 5e-6, "merged/\(n)") }
        for e in merged.entries where !mergedNames.contains(e.name) {
            XCTAssertEqual(Array(merged.value(e.name)), Array(base2.value(e.name)), "merge changed \(e.name)")
        }
        let plain = EncoderClassifier(config: config3, parameters: merged, maxBatch: 4, maxSeq: 40)
        assertClose(Array(plain.forward(batch0, dropout: nil)), try s.golden.floats("merged/logits"), atol: 1e-5, "merged logits")
    }

    /// peft's own adapter-step6/ loads onto the base and gives trained/logits.
    func testLoadPeftStep6() throws {
        let s = try loraSetup(adapter: "adapter-step6")
        let (batch0, _) = try Fixtures.batch(s.golden, 0, bert: true)
        assertClose(Array(s.model.forward(batch0, dropout: nil)), try s.golden.floats("trained/logits"), atol: 1e-5, "adapter-step6 logits")
        for e in s.adapter.store.entries {
            XCTAssertEqual(Array(s.adapter.store.value(e.name)), try s.golden.floats("final/\(e.name)"), "loaded \(e.name)")
        }
    }
}
