// GPT2LoRAGoldenTests.swift: LoRA on GPT-2 Conv1D layers. Against the peft goldens of gpt2-tiny-lora (generate.py,
// peft 0.21.2: base gpt2-tiny-lm, CAUSAL_LM, r 4, alpha 8, c_attn, fan_in_fan_out, init_lora_weights=False), starting
// from adapter-init/: LM logits (stored columns, logsumexp, max, argmax, token NLL), loss, the trainable gradients, the
// frozen base, the 6-step AdamW trajectory over the trainable store only, the adapter after step 6 against
// adapter-step6/ (values, key names, shapes, config fields), trained logits, merged weights and merged logits.
// The targets the goldens do not cover (attn.c_proj, mlp.c_fc, mlp.c_proj, and GPT2ForSequenceClassification with
// its `score` head as modules_to_save) are checked against the plain merged model: the LoRA gradients must be the
// chain rule of the merged model's dW (dA = s·(G B)ᵀ, dB = s·Gᵀ Aᵀ for W [in, out] += s·Aᵀ Bᵀ), and the unmerged
// outputs must equal the merged ones.
// Tolerances (fixtures README, 10-30x the float32-vs-float64 differences): logits / logsumexp / NLL atol 1e-5, loss
// rtol 1e-6, gradients atol 2e-6 + rtol 1e-4, step losses rtol 2e-6, float64-accumulated grad norms rtol 2e-6,
// parameters after 6 steps atol 5e-6 (they moved by ≤ 3e-3), merged vs unmerged outputs atol 1e-5.
import Foundation
import XCTest
@testable import Model

final class GPT2LoRAGoldenTests: XCTestCase {
    struct Setup {
        let config: GPT2Config
        let base: ParameterStore
        let model: GPT2LMHead
        let adapter: LoRAAdapter
        let golden: SafeTensorsFile
        let json: [String: Any]
        let dir: URL
    }

    func setup(adapter name: String = "adapter-init") throws -> Setup {
        let (config, base, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        let dir = try Fixtures.dir("gpt2-tiny-lora")
        let golden = try SafeTensorsFile(url: dir.appendingPathComponent("golden.safetensors"))
        let json = try GPT2Fixture.json("gpt2-tiny-lora")
        // a small logits budget: more than one LM-head chunk, as in GPT2GoldenTests
        let model = GPT2LMHead(config: config, parameters: base, maxBatch: 4, maxSeq: 26, logitBudget: 40 * config.vocabSize)
        let adapter = try PEFTAdapter.load(dir.appendingPathComponent(name), into: model)
        return Setup(config: config, base: base, model: model, adapter: adapter, golden: golden, json: json, dir: dir)
    }

    /// Mean LM loss of golden batch k (forward with gradients, then backward).
    func step(_ model: GPT2LMHead, _ golden: SafeTensorsFile, batch k: Int) throws -> Double {
        let (b, l) = try GPT2Fixture.batch(golden, k)
        let n = (0..<b.batchSize).reduce(0) { acc, r in acc + (1..<b.seqLen).filter { l[r * b.seqLen + $0] != -100 }.count }
        let out = model.forward(b, labels: l, gradientScale: 1 / Float(n), dropout: DropoutContext(seed: 1, step: k))
        model.backward()
        return out.mean
    }

    /// The LM-layout logits entries under `prefix` ("", "trained/", "merged/") for the model's last forward on batch 0.
    func checkLogits(_ model: GPT2LMHead, _ golden: SafeTensorsFile, prefix: String) throws {
        let (batch, labels) = try GPT2Fixture.batch(golden, 0)
        model.forward(batch, labels: labels, gradientScale: nil, dropout: nil)
        let B = batch.batchSize, T = batch.seqLen, V = model.config.vocabSize
        let full = model.logits(rows: 0..<(B * T))
        let cols = try golden.int64s("\(prefix)logits/cols").map { Int($0) }
        var atCols: [Float] = []
        for r in 0..<(B * T) { for c in cols { atCols.append(full[r * V + c]) } }
        assertClose(atCols, try golden.floats("\(prefix)logits/at_cols"), atol: 1e-5, "\(prefix)logits/at_cols")
        try GPT2Fixture.checkStats(model, labels: labels, golden, prefix: prefix, tag: "lora")
        let stats = model.positionStats()
        var nll: [Float] = []
        for b in 0..<B { for t in 0..<(T - 1) { nll.append(stats.nll[b * T + t]) } }
        assertClose(nll, try golden.floats("\(prefix)logits/token_nll"), atol: 1e-5, "\(prefix)logits/token_nll")
        let argmax = (0..<(B * T)).map { r -> Int64 in
            var best = 0
            for j in 1..<V where full[r * V + j] > full[r * V + best] { best = j }
            return Int64(best)
        }
        XCTAssertEqual(argmax, try golden.int64s("\(prefix)logits/argmax"), "\(prefix)logits/argmax")
    }

    func testTrainableLayoutMatchesPeft() throws {
        let s = try setup()
        let ref = s.json["trainable_parameters"] as! [[String: Any]]
        XCTAssertEqual(s.adapter.store.entries.map(\.name), ref.map { $0["name"] as! String }, "trainable names and order")
        for (e, r) in zip(s.adapter.store.entries, ref) {
            XCTAssertEqual(e.shape, r["shape"] as? [Int], "shape of \(e.name)")
            XCTAssertEqual(e.decay, r["weight_decay"] as? Bool, "decay flag of \(e.name)")
            XCTAssertEqual(Array(s.adapter.store.value(e.name)), try s.golden.floats("initial/\(e.name)"), "initial \(e.name)")
        }
        XCTAssertEqual(s.adapter.plan.config.scaling, 2.0)
        XCTAssertTrue(s.adapter.plan.config.fanInFanOut)
        XCTAssertEqual(s.adapter.plan.targets.map(\.site), [0, 4], "c_attn of blocks 0 and 1")
    }

    func testForwardBackwardAndFrozenBase() throws {
        let s = try setup()
        s.adapter.store.zeroGrads()
        let loss = try step(s.model, s.golden, batch: 0)
        let refLoss = GPT2Fixture.num(s.json["loss"])
        XCTAssertLessThanOrEqual(abs(loss - refLoss), 1e-6 * refLoss, "lora loss \(loss) vs \(refLoss)")
        for e in s.adapter.store.entries {
            assertClose(Array(s.adapter.store.grad(e.name)), try s.golden.floats("grad/\(e.name)"), atol: 2e-6, rtol: 1e-4,
                        "grad/\(e.name)")
        }
        // Frozen base: nothing was computed for it (no dW, LayerNorm, embedding or tied-head product), so its
        // gradient buffer was never even allocated.
        XCTAssertFalse(s.base.hasGradientBuffer, "a frozen base touched its gradient buffer")
        try checkLogits(s.model, s.golden, prefix: "")
    }

    /// The same adapter on an unfrozen base: base gradients now flow (so the frozen check is not vacuous) and the
    /// adapter's are unchanged.
    func testUnfrozenBaseGetsGradients() throws {
        let s = try setup()
        s.model.attachLoRA(s.adapter, freezeBase: false)
        s.base.zeroGrads(); s.adapter.store.zeroGrads()
        _ = try step(s.model, s.golden, batch: 0)
        for n in ["transformer.wte.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_attn.weight", "transformer.ln_f.bias"] {
            XCTAssertTrue(s.base.grad(n).contains { $0 != 0 }, "\(n) got no gradient")
        }
        let name = "base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight"
        assertClose(Array(s.adapter.store.grad(name)), try s.golden.floats("grad/\(name)"), atol: 2e-6, rtol: 1e-4, name)
    }

    func testSixStepsSaveAndMerge() throws {
        let s = try setup()
        let log = s.json["train_log"] as! [[String: Any]]
        let store = s.adapter.store
        let opt = AdamW(store: store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01))
        let schedule = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 2, totalSteps: 6)
        let baseBefore = Array(s.base.values)
        for k in 0..<6 {
            let entry = log[k]
            store.zeroGrads()
            let loss = try step(s.model, s.golden, batch: (entry["batch"] as! NSNumber).intValue)
            let refLoss = GPT2Fixture.num(entry["loss"])
            XCTAssertLessThanOrEqual(abs(loss - refLoss), 2e-6 * refLoss, "step \(k + 1) loss \(loss) vs \(refLoss)")
            let norm = GradientClipping.clip(store.grads, maxNorm: 1.0)
            let refNorm = GPT2Fixture.num(entry["grad_norm_preclip_exact"])
            XCTAssertLessThanOrEqual(abs(norm - refNorm), 2e-6 * refNorm, "step \(k + 1) pre-clip grad norm \(norm) vs \(refNorm)")
            let lr = schedule.lr(forStep: k)
            XCTAssertEqual(lr, GPT2Fixture.num(entry["lr"]), accuracy: 1e-12, "step \(k + 1) lr")
            opt.step(lr: lr)
        }
        XCTAssertEqual(Array(s.base.values), baseBefore, "training the adapter changed the frozen base")
        for e in store.entries {
            assertClose(Array(store.value(e.name)), try s.golden.floats("final/\(e.name)"), atol: 5e-6, "final/\(e.name)")
        }
        try checkLogits(s.model, s.golden, prefix: "trained/")

        // Save: the same tensors, names, shapes and config fields as peft's adapter-step6/.
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("gpt2-lora-test-\(UUID().uuidString)")
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
            XCTAssertTrue((ourConfig[k] as? NSObject)?.isEqual(v) ?? false, "adapter_config.json \(k): \(ourConfig[k] ?? "missing") vs \(v)")
        }

        // Merge in memory: W[in, out] += 2·(B A)ᵀ on c_attn; a plain GPT-2 again, giving peft's merged logits.
        let (config2, merged, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        PEFTAdapter.merge(plan: s.adapter.plan, adapter: store, into: merged)
        let mergedNames = s.json["merged_tensor_names"] as! [String]
        for n in mergedNames { assertClose(Array(merged.value(n)), try s.golden.floats("merged/\(n)"), atol: 5e-6, "merged/\(n)") }
        for e in merged.entries where !mergedNames.contains(e.name) {
            XCTAssertEqual(Array(merged.value(e.name)), Array(s.base.value(e.name)), "merge changed \(e.name)")
        }
        let plain = GPT2LMHead(config: config2, parameters: merged, maxBatch: 4, maxSeq: 26)
        try checkLogits(plain, s.golden, prefix: "merged/")
    }

    /// peft's own adapter-step6/ loads onto the base and gives trained/logits.
    func testLoadPeftStep6() throws {
        let s = try setup(adapter: "adapter-step6")
        try checkLogits(s.model, s.golden, prefix: "trained/")
        for e in s.adapter.store.entries {
            XCTAssertEqual(Array(s.adapter.store.value(e.name)), try s.golden.floats("final/\(e.name)"), "loaded \(e.name)")
        }
    }

    /// Generation with peft's adapter-step6/ attached, unmerged: the cached and the recompute paths give the ids of
    /// the merged model, and the adapter changes them.
    func testGenerationWithAdapterEqualsMerged() throws {
        let (config, base, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        let dir = try Fixtures.dir("gpt2-tiny-lora")
        let gen = GPT2Generator(config: config, parameters: base)
        let adapter = try PEFTAdapter.load(dir.appendingPathComponent("adapter-step6"), into: gen)
        let (_, merged, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        PEFTAdapter.merge(plan: adapter.plan, adapter: adapter.store, into: merged)
        let plain = GPT2Generator(config: config, parameters: merged)
        let prompt: [Int32] = [464, 2068, 7586, 21831]   // "The quick brown fox"
        let ref = try plain.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 12))
        XCTAssertEqual(try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 12)), ref, "cached, unmerged")
        XCTAssertEqual(try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 12, useCache: false)), ref, "recompute, unmerged")
        let sampled = GenerationOptions(maxNewTokens: 12, temperature: 0.9, seed: 3)
        XCTAssertEqual(try gen.generate(prompt: prompt, options: sampled), try plain.generate(prompt: prompt, options: sampled), "sampled")
        gen.detachLoRA()
        XCTAssertNotEqual(try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 12)), ref, "the adapter changes the ids")
    }

    // MARK: targets beyond the goldens, checked against the merged model

    /// Random non-zero B (fresh adapters start at B = 0, which would make dA and the update vanish).
    func randomizeB(_ adapter: LoRAAdapter, seed: UInt64) {
        var rng = TestRNG(seed)
        for t in adapter.plan.targets {
            let b = adapter.store.value(t.bName)
            _ = b.update(fromContentsOf: rng.floats(b.count, scale: 0.2))
        }
    }

    /// dA, dB of every target against the chain rule of the merged model's dW, and unmerged vs merged loss, for
    /// c_attn, both c_proj (suffix match, as peft) and c_fc, with rsLoRA scaling.
    func testAllConv1DTargetsAgainstMergedModel() throws {
        let (config, base, golden, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        let model = GPT2LMHead(config: config, parameters: base, maxBatch: 4, maxSeq: 26)
        var lc = LoRAConfig(r: 3, alpha: 5, useRSLoRA: true, targetModules: ["c_attn", "c_proj", "c_fc"]).forCausalLM()
        lc.baseModelNameOrPath = "gpt2-tiny-lm"
        let trainable = try model.enableLoRA(lc, seed: 11)
        let adapter = model.adapter!
        XCTAssertEqual(adapter.plan.targets.count, 8)
        XCTAssertEqual(adapter.plan.targets.map(\.site), Array(0..<8))
        XCTAssertEqual(adapter.plan.targets.map(\.module).filter { $0.hasSuffix("c_proj") }.count, 4, "attn.c_proj and mlp.c_proj")
        XCTAssertNil(adapter.plan.config.modulesToSave)
        XCTAssertEqual(adapter.plan.config.taskType, "CAUSAL_LM")
        randomizeB(adapter, seed: 5)
        trainable.zeroGrads()
        let loss = try step(model, golden, batch: 1)
        XCTAssertFalse(base.hasGradientBuffer, "a frozen base touched its gradient buffer")

        let (_, merged, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        PEFTAdapter.merge(plan: adapter.plan, adapter: trainable, into: merged)
        let plain = GPT2LMHead(config: config, parameters: merged, maxBatch: 4, maxSeq: 26)
        merged.zeroGrads()
        let mergedLoss = try step(plain, golden, batch: 1)
        XCTAssertEqual(loss, mergedLoss, accuracy: 1e-6 * mergedLoss, "unmerged vs merged loss")
        let sc = Float(adapter.plan.config.scaling), r = adapter.plan.config.r
        XCTAssertEqual(Double(sc), 5 / 3.0.squareRoot(), accuracy: 1e-6)
        for t in adapter.plan.targets {
            let G = Array(merged.grad(t.module + ".weight"))   // [in, out]
            let A = Array(trainable.value(t.aName)), B = Array(trainable.value(t.bName))   // [r, in], [out, r]
            var dA = [Float](repeating: 0, count: r * t.inC), dB = [Float](repeating: 0, count: t.outC * r)
            for i in 0..<t.inC {
                for o in 0..<t.outC {
                    let g = G[i * t.outC + o]
                    for k in 0..<r {
                        dA[k * t.inC + i] += sc * g * B[o * r + k]
                        dB[o * r + k] += sc * g * A[k * t.inC + i]
                    }
                }
            }
            let scaleA = Double(dA.map { abs($0) }.max()!), scaleB = Double(dB.map { abs($0) }.max()!)
            XCTAssertGreaterThan(scaleA, 0); XCTAssertGreaterThan(scaleB, 0)
            assertClose(Array(trainable.grad(t.aName)), dA, atol: 1e-4 * scaleA + 1e-9, "\(t.module) dA vs merged dW")
            assertClose(Array(trainable.grad(t.bName)), dB, atol: 1e-4 * scaleB + 1e-9, "\(t.module) dB vs merged dW")
        }
    }

    /// GPT2ForSequenceClassification with LoRA: `score` is a modules_to_save copy (trainable, read from the adapter's
    /// store), the base stays frozen, and unmerged logits equal the merged model's.
    func testClassifierScoreAsModulesToSave() throws {
        let (config, base, golden, _) = try GPT2Fixture.load("gpt2-tiny-cls", hub: false, classifier: true)
        let model = try GPT2Classifier(config: config, parameters: base, maxBatch: 4, maxSeq: 40)
        let trainable = try model.enableLoRA(LoRAConfig(r: 2, alpha: 4, targetModules: ["c_attn", "c_fc"]), seed: 3)
        let adapter = model.adapter!
        XCTAssertEqual(trainable.entries.map(\.name).last, "base_model.model.score.modules_to_save.default.weight")
        XCTAssertEqual(adapter.plan.saved.map(\.baseName), ["score.weight"])
        randomizeB(adapter, seed: 9)
        // perturb the trainable score copy: the model must read it, not the base head
        let sw = trainable.value("base_model.model.score.modules_to_save.default.weight")
        for i in 0..<sw.count { sw[i] += 0.05 * Float(i % 7) - 0.15 }
        let (batch, labels) = try GPT2Fixture.batch(golden, 0)
        trainable.zeroGrads()
        let logits = Array(model.forward(batch, dropout: nil))
        var d = [Float](repeating: 0, count: logits.count)
        _ = d.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: UnsafeBufferPointer(start: logits, count: logits.count), labels: labels,
                              batch: batch.batchSize, classes: config.numLabels, scale: 0.25, dLogits: $0)
        }
        d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        XCTAssertFalse(base.hasGradientBuffer, "a frozen base touched its gradient buffer")
        XCTAssertTrue(trainable.grad("base_model.model.score.modules_to_save.default.weight").contains { $0 != 0 })
        XCTAssertTrue(trainable.grad("base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight").contains { $0 != 0 })

        let (_, merged, _, _) = try GPT2Fixture.load("gpt2-tiny-cls", hub: false, classifier: true)
        PEFTAdapter.merge(plan: adapter.plan, adapter: trainable, into: merged)
        XCTAssertEqual(Array(merged.value("score.weight")), Array(sw))
        let plain = try GPT2Classifier(config: config, parameters: merged, maxBatch: 4, maxSeq: 40)
        let ref = Array(plain.forward(batch, dropout: nil))
        assertClose(logits, ref, atol: 1e-5, "unmerged vs merged classifier logits")
        XCTAssertGreaterThan(zip(ref, Array(try golden.floats("logits"))).map { abs($0 - $1) }.max()!, 1e-3,
                             "the adapter changes the logits (the comparison above is not base vs base)")
    }

    /// The last block on each row's pooled token only (the default under the sequence classifier) against every row
    /// (as transformers), every dropout on (embeddings, attention, residual, lora): same logits and gradients, for
    /// full fine-tuning (every base gradient) and for LoRA at every Conv1D (input dropout keyed by the same row).
    func testLastBlockHeadRowsEqualAllRowsWithDropout() throws {
        for lora in [false, true] {
            var (config, base, golden, _) = try GPT2Fixture.load("gpt2-tiny-cls", hub: false, classifier: true)
            var j = config.raw
            j["resid_pdrop"] = 0.1; j["attn_pdrop"] = 0.1; j["embd_pdrop"] = 0.1
            config = try GPT2Config(json: j, path: "cfg.json")
            let model = try GPT2Classifier(config: config, parameters: base, maxBatch: 4, maxSeq: 40)
            var trainable = base
            if lora {
                trainable = try model.enableLoRA(LoRAConfig(r: 2, alpha: 4, dropout: 0.2, targetModules: ["c_attn", "c_proj", "c_fc"]), seed: 5)
                randomizeB(model.adapter!, seed: 3)
            }
            let (batch, labels) = try GPT2Fixture.batch(golden, 1)
            func run(allRows: Bool) -> ([Float], [Float]) {
                model.lastBlockAllRows = allRows
                trainable.zeroGrads()
                let logits = Array(model.forward(batch, dropout: DropoutContext(seed: 7, step: 2)))
                var d = [Float](repeating: 0, count: logits.count)
                _ = d.withUnsafeMutableBufferPointer {
                    Loss.crossEntropy(logits: UnsafeBufferPointer(start: logits, count: logits.count), labels: labels,
                                      batch: batch.batchSize, classes: config.numLabels, scale: 0.25, dLogits: $0)
                }
                d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
                return (logits, Array(trainable.grads))
            }
            let (lc, gc) = run(allRows: false)
            // the head-row path really ran: the fresh arena's other rows of ln_f's output stay zero
            let last = model.hiddenStates().last!, C = config.hidden, T = batch.seqLen
            XCTAssertEqual(model.poolIndex, [8, 19, 2, 16])
            for (b, t) in model.poolIndex.enumerated() {
                XCTAssertTrue(last[(b * T + t + 1) * C ..< (b * T + T) * C].allSatisfy { $0 == 0 } && last[b * T * C ..< (b * T + t) * C].allSatisfy { $0 == 0 },
                              "lora \(lora): the last block ran on rows other than the head's")
            }
            let (la, ga) = run(allRows: true)
            assertClose(lc, la, atol: 1e-6, "lora \(lora): logits, head rows vs all rows")
            XCTAssertGreaterThan(ga.map { abs($0) }.max()!, 0)
            assertClose(gc, ga, atol: 1e-7, rtol: 1e-5, "lora \(lora): gradients, head rows vs all rows")
            if lora { XCTAssertFalse(base.hasGradientBuffer, "a frozen base touched its gradient buffer") }
        }
    }

    func testBadTargetsOnGPT2() throws {
        let (config, base, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        let model = GPT2LMHead(config: config, parameters: base, maxBatch: 1, maxSeq: 8)
        for (targets, words) in [(["query"], ["'query'", "c_attn"]), (["wte"], ["'wte'"])] {
            do { _ = try model.enableLoRA(LoRAConfig(r: 4, alpha: 8, targetModules: targets).forCausalLM(), seed: 1); XCTFail("\(targets) accepted") }
            catch let e as LoRAError { for w in words { XCTAssertTrue(e.message.contains(w), e.message) } }
        }
        XCTAssertNil(model.adapter)
        // a BERT adapter on GPT-2: its tensors name modules this base lacks
        do { try PEFTAdapter.load(try Fixtures.dir("bert-tiny-lora").appendingPathComponent("adapter-init"), into: model); XCTFail("BERT adapter loaded on GPT-2") }
        catch let e as LoRAError { XCTAssertTrue(e.message.contains("matches no linear layer of this gpt2 model"), e.message) }
    }
}
