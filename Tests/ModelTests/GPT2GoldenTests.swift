// GPT2GoldenTests.swift: gpt2-tiny-lm and gpt2-tiny-cls against the transformers goldens (see the fixtures README),
// loading both save_pretrained's model.safetensors and hub-layout/model.safetensors: LM logits (stored columns,
// logsumexp, max, argmax, per-token NLL, full row 0), loss, hidden states, every gradient by name, the 6-step AdamW
// trajectory, greedy generations with and without the KV cache, and the classifier's pooled logits.
// Tolerances (README table, 10-30x the float32-vs-float64 differences): logits / logsumexp / NLL / hidden atol 1e-5;
// loss rtol 1e-6; grads atol 2e-6 + rtol 1e-4 (c_attn.bias: atol only, its key third is exactly 0 in exact
// arithmetic); per-step losses rtol 2e-6; float64-accumulated pre-clip norm rtol 2e-6; final params atol 5e-6.
import Foundation
import XCTest
@testable import Model

enum GPT2Fixture {
    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.dir(name).appendingPathComponent("golden.json"))) as! [String: Any]
    }

    /// Config and a store loaded through GPT2Layout.load from the save_pretrained file or the hub-layout file.
    static func load(_ name: String, hub: Bool, classifier: Bool) throws -> (GPT2Config, ParameterStore, SafeTensorsFile, LoadReport) {
        let d = try Fixtures.dir(name)
        let wd = hub ? d.appendingPathComponent("hub-layout") : d
        let config = try GPT2Config.load(url: wd.appendingPathComponent("config.json"))
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: classifier))
        let report = try GPT2Layout.load(into: store, from: SafeTensorsFile(url: wd.appendingPathComponent("model.safetensors")), config: config)
        let golden = try SafeTensorsFile(url: d.appendingPathComponent("golden.safetensors"))
        return (config, store, golden, report)
    }

    /// Batch k of the golden file: the TokenBatch and the labels ([B*T] LM labels or [B] class labels).
    static func batch(_ golden: SafeTensorsFile, _ k: Int) throws -> (TokenBatch, [Int32]) {
        let ids = try golden.int64s("batch\(k)/input_ids").map { Int32($0) }
        let mask = try golden.int64s("batch\(k)/attention_mask").map { Int32($0) }
        let labels = try golden.int64s("batch\(k)/labels").map { Int32($0) }
        let shape = golden.info("batch\(k)/input_ids")!.shape
        return (TokenBatch(batchSize: shape[0], seqLen: shape[1], inputIds: ids, attentionMask: mask,
                           sampleIndices: Array(0..<shape[0])), labels)
    }

    static func num(_ any: Any?) -> Double { (any as! NSNumber).doubleValue }

    /// positionStats()'s logsumexp and max against `prefix`logits/…: at every position when the head computed every
    /// position (headAllPositions), else at the labelled ones (the label of t + 1 is not -100), 0 at the others (the
    /// head skipped them: checks that it did).
    static func checkStats(_ model: GPT2LMHead, labels: [Int32], _ golden: SafeTensorsFile, prefix: String, tag: String) throws {
        let B = model.body.lastB, T = model.body.lastT
        let stats = model.positionStats()
        for (name, got) in [("logsumexp", stats.logsumexp), ("max", stats.max)] {
            let ref = try golden.floats("\(prefix)logits/\(name)")
            if model.headAllPositions { assertClose(got, ref, atol: 1e-5, "\(tag) \(prefix)logits/\(name)"); continue }
            let labelled = (0..<(B * T)).map { i in i % T + 1 < T && labels[i + 1] != -100 }
            XCTAssertTrue(labelled.contains(false) && labelled.contains(true), "the batch has labelled and unlabelled positions")
            assertClose(zip(got, labelled).map { $1 ? $0 : 0 }, zip(ref, labelled).map { $1 ? $0 : 0 }, atol: 1e-5,
                        "\(tag) \(prefix)logits/\(name) (labelled positions)")
            XCTAssertTrue(zip(got, labelled).allSatisfy { $1 || $0 == 0 }, "\(tag): the head computed an unlabelled position")
        }
    }
}

final class GPT2GoldenTests: XCTestCase {
    func testConfigFields() throws {
        let (config, _, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        XCTAssertEqual([config.vocabSize, config.hidden, config.layers, config.heads, config.intermediate, config.maxPositions],
                       [50257, 16, 2, 2, 48, 40])
        XCTAssertEqual(config.activation, .geluNew)
        XCTAssertEqual(config.layerNormEps, 1e-5)
        XCTAssertNil(config.padTokenId)
        XCTAssertEqual(config.eosTokenId, 50256)
        var j = config.raw
        j["n_inner"] = NSNull()
        XCTAssertEqual(try GPT2Config(json: j, path: "x").intermediate, 64, "n_inner null means 4·n_embd")
        j.removeValue(forKey: "n_head")
        XCTAssertThrowsError(try GPT2Config(json: j, path: "cfg.json")) { e in
            XCTAssertTrue("\(e)".contains("'n_head'"), "\(e)")
        }
        j = config.raw
        j["n_embd"] = "16"
        XCTAssertThrowsError(try GPT2Config(json: j, path: "cfg.json")) { e in
            XCTAssertTrue("\(e)".contains("'n_embd' must be an integer"), "\(e)")
        }
    }

    func testLoadReportsHubBuffersAsUnused() throws {
        let (_, hubStore, _, report) = try GPT2Fixture.load("gpt2-tiny-lm", hub: true, classifier: false)
        XCTAssertEqual(Set(report.unused), ["h.0.attn.bias", "h.1.attn.bias"])
        XCTAssertTrue(report.initialized.isEmpty)
        let (_, store, _, rep2) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        XCTAssertTrue(rep2.unused.isEmpty)
        XCTAssertEqual(Array(hubStore.values), Array(store.values), "hub layout and save_pretrained layout differ")
    }

    func testLMGolden() throws { try runLM(hub: false) }
    func testLMGoldenHubLayout() throws { try runLM(hub: true) }
    func testLMGoldenHeadAllPositions() throws { try runLM(hub: false, allPositions: true) }

    /// `allPositions`: the LM head on every position (as transformers); else (the default) on the labelled ones only:
    /// the loss, every gradient and the training trajectory must be the same either way.
    func runLM(hub: Bool, allPositions: Bool = false) throws {
        let name = "gpt2-tiny-lm", tag = hub ? "hub" : "save_pretrained"
        let (config, store, golden, _) = try GPT2Fixture.load(name, hub: hub, classifier: false)
        let json = try GPT2Fixture.json(name)
        let (batch, labels) = try GPT2Fixture.batch(golden, 0)
        let B = batch.batchSize, T = batch.seqLen, V = config.vocabSize
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: B, maxSeq: T, logitBudget: 40 * V)
        model.headAllPositions = allPositions
        XCTAssertLessThan(model.chunkRows, B * T, "the test must exercise more than one LM-head chunk")
        store.zeroGrads()
        let count = (0..<B).reduce(0) { acc, b in acc + (1..<T).filter { labels[b * T + $0] != -100 }.count }
        let res = model.forward(batch, labels: labels, gradientScale: 1 / Float(count), dropout: DropoutContext(seed: 1, step: 0))
        XCTAssertEqual(res.count, count)
        let refLoss = GPT2Fixture.num(json["loss"])
        XCTAssertLessThanOrEqual(abs(res.mean - refLoss), 1e-6 * refLoss, "\(tag) loss \(res.mean) vs \(refLoss)")

        // logits: stored columns, per-position statistics, argmax, full row 0
        let full = model.logits(rows: 0..<(B * T))
        let cols = try golden.int64s("logits/cols").map { Int($0) }
        var atCols: [Float] = []
        for r in 0..<(B * T) { for c in cols { atCols.append(full[r * V + c]) } }
        assertClose(atCols, try golden.floats("logits/at_cols"), atol: 1e-5, "\(tag) logits/at_cols")
        try GPT2Fixture.checkStats(model, labels: labels, golden, prefix: "", tag: tag)
        let stats = model.positionStats()
        var nll: [Float] = []
        for b in 0..<B { for t in 0..<(T - 1) { nll.append(stats.nll[b * T + t]) } }
        assertClose(nll, try golden.floats("logits/token_nll"), atol: 1e-5, "\(tag) logits/token_nll")
        let argmax = (0..<(B * T)).map { r -> Int64 in
            var best = 0
            for j in 1..<V where full[r * V + j] > full[r * V + best] { best = j }
            return Int64(best)
        }
        XCTAssertEqual(argmax, try golden.int64s("logits/argmax"), "\(tag) logits/argmax")
        let n0 = golden.info("logits/row0_full")!.shape[0]
        assertClose(Array(full[0..<(n0 * V)]), try golden.floats("logits/row0_full"), atol: 1e-5, "\(tag) logits/row0_full")

        let hs = model.hiddenStates()
        XCTAssertEqual(hs.count, config.layers + 1)
        for (i, h) in hs.enumerated() { assertClose(h, try golden.floats("hidden_states/\(i)"), atol: 1e-5, "\(tag) hidden_states/\(i)") }

        model.backward()
        try checkGrads(store, golden, tag)
        try checkTraining(json: json, golden: golden, store: store, tag: tag) { batchIndex in
            let (b, l) = try GPT2Fixture.batch(golden, batchIndex)
            let n = (0..<b.batchSize).reduce(0) { acc, r in acc + (1..<b.seqLen).filter { l[r * b.seqLen + $0] != -100 }.count }
            let out = model.forward(b, labels: l, gradientScale: 1 / Float(n), dropout: nil)
            model.backward()
            return out.mean
        }
    }

    func testClassifierGolden() throws { try runClassifier(allRows: false) }
    func testClassifierGoldenLastBlockAllRows() throws { try runClassifier(allRows: true) }

    /// `allRows`: the last block on every row (as transformers); else (the default) after c_attn on each row's pooled
    /// token only: the logits, the loss, every gradient and the training trajectory must be the same either way.
    func runClassifier(allRows: Bool) throws {
        let name = "gpt2-tiny-cls"
        let (config, store, golden, report) = try GPT2Fixture.load(name, hub: false, classifier: true)
        XCTAssertTrue(report.initialized.isEmpty, "score.weight must come from the file")
        let json = try GPT2Fixture.json(name)
        let (batch, labels) = try GPT2Fixture.batch(golden, 0)
        let B = batch.batchSize, NL = config.numLabels, T = batch.seqLen, C = config.hidden
        let model = try GPT2Classifier(config: config, parameters: store, maxBatch: B, maxSeq: batch.seqLen)
        model.lastBlockAllRows = allRows
        store.zeroGrads()
        let logits = model.forward(batch, dropout: nil)
        XCTAssertEqual(model.body.headRows != nil, !allRows, "the last block ran on the head's rows only")
        XCTAssertEqual(model.poolIndex, [9, 17, 3, 25], "batch 0's pooled rows (last non-pad token; row 3 is full)")
        assertClose(Array(logits), try golden.floats("logits"), atol: 1e-5, "cls logits")
        let hs = model.hiddenStates()
        for (i, h) in hs.enumerated() {
            let ref = try golden.floats("hidden_states/\(i)")
            if allRows || i < hs.count - 1 {
                assertClose(h, ref, atol: 1e-5, "cls hidden_states/\(i)")
            } else {   // ln_f's output on the pooled rows only; the rest was never computed
                for (b, t) in model.poolIndex.enumerated() {
                    let o = (b * T + t) * C
                    assertClose(Array(h[o ..< o + C]), Array(ref[o ..< o + C]), atol: 1e-5, "cls hidden_states/\(i) row \(b) at \(t)")
                }
                XCTAssertTrue(h[0 ..< C].allSatisfy { $0 == 0 }, "row 0's first position of ln_f's output was computed")
            }
        }
        var dLogits = [Float](repeating: 0, count: B * NL)
        let loss = dLogits.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: logits, labels: labels, batch: B, classes: NL, scale: 1 / Float(B), dLogits: $0)
        } / Double(B)
        let refLoss = GPT2Fixture.num(json["loss"])
        XCTAssertLessThanOrEqual(abs(loss - refLoss), 1e-6 * refLoss, "cls loss \(loss) vs \(refLoss)")
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        try checkGrads(store, golden, "cls")
        try checkTraining(json: json, golden: golden, store: store, tag: "cls") { k in
            let (b, l) = try GPT2Fixture.batch(golden, k)
            let lg = model.forward(b, dropout: nil)
            var d = [Float](repeating: 0, count: b.batchSize * NL)
            let s = d.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: lg, labels: l, batch: b.batchSize, classes: NL, scale: 1 / Float(b.batchSize), dLogits: $0)
            }
            d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
            return s / Double(b.batchSize)
        }
    }

    func testClassifierWithoutPadTokenIsAnError() throws {
        let (config, _, _, _) = try GPT2Fixture.load("gpt2-tiny-cls", hub: false, classifier: true)
        var j = config.raw
        j["pad_token_id"] = NSNull()
        let c2 = try GPT2Config(json: j, path: "cfg.json")
        let store = ParameterStore(layout: GPT2Layout.make(config: c2, classifier: true))
        XCTAssertThrowsError(try GPT2Classifier(config: c2, parameters: store, maxBatch: 1, maxSeq: 4)) { e in
            XCTAssertTrue("\(e)".contains("pad_token_id"), "\(e)")
        }
    }

    /// A classifier started from the LM checkpoint (no score.weight) gets a fresh head, reported as initialised.
    func testClassifierFromLMCheckpointInitialisesScore() throws {
        let d = try Fixtures.dir("gpt2-tiny-lm")
        var j = try GPT2Config.load(url: d.appendingPathComponent("config.json")).raw
        j["pad_token_id"] = 50256; j["num_labels"] = 2
        let config = try GPT2Config(json: j, path: "cfg.json")
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: true))
        let rep = try GPT2Layout.load(into: store, from: SafeTensorsFile(url: d.appendingPathComponent("model.safetensors")), config: config, seed: 3)
        XCTAssertEqual(rep.initialized, ["score.weight"])
        XCTAssertGreaterThan(store.value("score.weight").map { abs($0) }.max()!, 0)
    }

    func testGreedyGenerationWithAndWithoutCache() throws {
        for hub in [false, true] {
            let (config, store, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: hub, classifier: false)
            let gen = GPT2Generator(config: config, parameters: store)
            let results = (try GPT2Fixture.json("gpt2-tiny-lm")["generation"] as! [String: Any])["results"] as! [[String: Any]]
            XCTAssertEqual(results.count, 2)
            for r in results {
                let prompt = (r["prompt_ids"] as! [NSNumber]).map { Int32($0.intValue) }
                let want = (r["new_ids"] as! [NSNumber]).map { Int32($0.intValue) }
                for cache in [true, false] {
                    let got = try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: want.count, useCache: cache))
                    XCTAssertEqual(got, want, "greedy ids for '\(r["prompt"]!)' (cache \(cache), hub \(hub))")
                }
            }
        }
    }

    /// Sampling: seeded (same seed, same ids), cache and no-cache agree, top-k 1 is greedy, and a too-long request errors.
    func testSamplingIsSeededAndPathsAgree() throws {
        let (config, store, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        let gen = GPT2Generator(config: config, parameters: store)
        let prompt: [Int32] = [464, 2068, 7586, 21831]
        var o = GenerationOptions(maxNewTokens: 4, temperature: 1.5, topK: 50, topP: 0.9, seed: 7)
        let a = try gen.generate(prompt: prompt, options: o)
        XCTAssertEqual(try gen.generate(prompt: prompt, options: o), a)
        o.useCache = false
        XCTAssertEqual(try gen.generate(prompt: prompt, options: o), a, "cache and recompute sample differently")
        o.seed = 8; o.useCache = true
        let b = try gen.generate(prompt: prompt, options: o)
        XCTAssertNotEqual(a, b, "a different seed should give different samples at temperature 1.5")
        let greedy = try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 8))
        XCTAssertEqual(try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 8, temperature: 1, topK: 1, seed: 3)), greedy)
        let stop = greedy[1]
        XCTAssertEqual(try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 8, stopToken: stop)), Array(greedy.prefix(2)))
        XCTAssertThrowsError(try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 40)))
    }

    // MARK: - shared checks

    func checkGrads(_ store: ParameterStore, _ golden: SafeTensorsFile, _ tag: String) throws {
        for e in store.entries {
            let key = "grad/\(e.name)"
            guard golden.contains(key) else { XCTFail("golden lacks \(key)"); continue }
            let keyBias = e.name.hasSuffix("attn.c_attn.bias")
            assertClose(Array(store.grad(e.name)), try golden.floats(key), atol: 2e-6, rtol: keyBias ? 0 : 1e-4, "\(tag) \(key)")
        }
    }

    /// The 6 steps of the README: zero, forward+backward (`step` returns the loss), clip to 1.0, AdamW at the
    /// scheduled lr; then every final parameter. Starts from the initial weights in `store`.
    func checkTraining(json: [String: Any], golden: SafeTensorsFile, store: ParameterStore, tag: String,
                       step: (Int) throws -> Double) throws {
        let hp = json["hyperparameters"] as! [String: Any]
        let betas = (hp["betas"] as! [NSNumber]).map { Float($0.doubleValue) }
        let adam = AdamW(store: store, config: AdamWConfig(beta1: betas[0], beta2: betas[1], eps: Float(GPT2Fixture.num(hp["eps"])),
                                                           weightDecay: Float(GPT2Fixture.num(hp["weight_decay"]))))
        let sched = LRSchedule(kind: .linear, peak: GPT2Fixture.num(hp["lr"]), warmupSteps: (hp["warmup_steps"] as! NSNumber).intValue,
                               totalSteps: (hp["total_steps"] as! NSNumber).intValue)
        // decay flags as the Trainer's groups
        for p in json["parameters"] as! [[String: Any]] {
            let n = p["name"] as! String
            XCTAssertEqual(store.layout.entry(n)?.decay, p["weight_decay"] as? Bool, "\(tag) decay flag of \(n)")
        }
        for (k, entry) in (json["train_log"] as! [[String: Any]]).enumerated() {
            store.zeroGrads()
            let loss = try step((entry["batch"] as! NSNumber).intValue)
            let refLoss = GPT2Fixture.num(entry["loss"])
            XCTAssertLessThanOrEqual(abs(loss - refLoss), 2e-6 * refLoss, "\(tag) step \(k + 1) loss \(loss) vs \(refLoss)")
            let norm = GradientClipping.clip(store.grads, maxNorm: GPT2Fixture.num(hp["max_grad_norm"]))
            let refNorm = GPT2Fixture.num(entry["grad_norm_preclip_exact"])
            XCTAssertLessThanOrEqual(abs(norm - refNorm), 2e-6 * refNorm, "\(tag) step \(k + 1) grad norm \(norm) vs \(refNorm)")
            let lr = sched.lr(forStep: k)
            XCTAssertEqual(lr, GPT2Fixture.num(entry["lr"]), accuracy: 1e-12, "\(tag) step \(k + 1) lr")
            adam.step(lr: lr)
        }
        for e in store.entries {
            assertClose(Array(store.value(e.name)), try golden.floats("final/\(e.name)"), atol: 5e-6, "\(tag) final/\(e.name)")
        }
    }
}
