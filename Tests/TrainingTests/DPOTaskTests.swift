// DPOTaskTests.swift: `--task dpo` against goldens recorded from TRL 1.16.0's DPOTrainer itself
// (scripts/goldens/dpo_goldens.py → Tests/ModelTests/Fixtures/dpo-golden): the token ids and completion masks TRL's
// preparation and collator produce (explicit and implicit prompts, EOS handling, the common-prefix rule, keep_start
// truncation, the pair whose prompt fills max_length skipped), then for sigmoid, ipo and robust (label smoothing 0.1),
// full fine-tuning and LoRA (reference = the base with the adapter off): policy and reference log-probs of chosen
// and rejected, the loss, TRL's metrics and every parameter gradient; then three AdamW steps (the Trainer's optimizer
// and linear schedule, clipping at 1.0): the loss and metrics of each step and the parameters after.
// Tolerances: log-probs are sums of ~20 float32 log-softmax terms of magnitude ~10 (TRL sums them in float32):
// atol 2e-4 + rtol 1e-5; losses rtol 2e-5; gradients atol 1e-6 + rtol 1e-4 (the GPT-2 goldens' per-tensor bound,
// the DPO gradient being ~β/2 of an LM gradient); parameters after 3 steps at lr 1e-2 atol 5e-6.
// wte's gradient is dense (tied head): the golden keeps the rows the batch uses plus 64 random rows, the column
// sums and the sum of squares of the whole tensor.
import Dist
import Foundation
import XCTest
import Model
import Tokenizers
import TestSupport
@testable import Training

final class DPOTaskTests: XCTestCase {
    static let dir = TestPaths.fixture("dpo-golden")
    var golden: [String: Any]!
    var tensors: SafeTensorsFile!
    var out: TempFolder!

    override func setUpWithError() throws {
        golden = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dir.appendingPathComponent("golden.json"))) as? [String: Any]
        tensors = try SafeTensorsFile(url: Self.dir.appendingPathComponent("golden.safetensors"))
        out = try TempFolder()
    }

    func config(_ file: String, loss: DPOLossType = .sigmoid, smoothing: Double = 0) -> TrainConfig {
        var tc = TrainConfig(modelDir: TestPaths.fixture("gpt2-tiny-lm"), trainFile: Self.dir.appendingPathComponent(file),
                             evalFile: nil, outputDir: out.url.appendingPathComponent("run"))
        tc.task = .dpo
        tc.maxLength = golden["max_length"] as! Int
        tc.dpo.beta = golden["beta"] as! Double
        tc.dpo.lossType = loss
        tc.dpo.labelSmoothing = smoothing
        return tc
    }

    func task(_ file: String = "train.jsonl", loss: DPOLossType = .sigmoid, smoothing: Double = 0, lora: Bool = false) throws -> DPOTask {
        let tc = config(file, loss: loss, smoothing: smoothing)
        return try DPOTask(folder: ModelFolder.open(tc.modelDir),
                           adapterDir: lora ? TestPaths.fixture("gpt2-tiny-lora").appendingPathComponent("adapter-init") : nil,
                           trainConfig: tc, microBatch: 8)
    }

    static func num(_ a: Any?) -> Double { (a as! NSNumber).doubleValue }
    static func nums(_ a: Any?) -> [Double] { (a as! [NSNumber]).map(\.doubleValue) }

    func assertNear(_ a: Double, _ b: Double, atol: Double, rtol: Double, _ what: String, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(a - b), atol + rtol * abs(b), "\(what): got \(a), TRL \(b)", line: line)
    }

    // MARK: - Tokenization

    func testTokenizationMatchesTRL() throws {
        for (key, file) in [("explicit", "train.jsonl"), ("implicit", "implicit.jsonl")] {
            let t = try task(file)
            let g = (golden["tokenized"] as! [String: Any])[key] as! [String: Any]
            let kept = g["kept"] as! Int, given = g["given"] as! Int
            XCTAssertEqual(t.trainCount, kept, "\(key): pairs kept")
            XCTAssertEqual(t.skipped.train, given - kept, "\(key): pairs skipped (prompt fills max_length)")
            let ids = g["input_ids"] as! [[Int]], mask = g["attention_mask"] as! [[Int]], comp = g["completion_mask"] as! [[Int]]
            // TRL's batch: every chosen row, then every rejected row.
            let rows = t.train.map(\.chosen) + t.train.map(\.rejected)
            XCTAssertEqual(rows.count, ids.count)
            for (r, e) in rows.enumerated() {
                let n = mask[r].reduce(0, +)
                XCTAssertEqual(e.inputIds.map(Int.init), Array(ids[r].prefix(n)), "\(key) row \(r) ids")
                let labels = (0..<n).map { comp[r][$0] == 1 ? ids[r][$0] : -100 }
                XCTAssertEqual(e.labels.map(Int.init), labels, "\(key) row \(r) labels (completion mask)")
            }
        }
        XCTAssertEqual(try task().truncated, 1, "the dragon story is cut at max_length")
    }

    /// Ours beyond TRL 1.16: --max-prompt-length keeps the last N prompt tokens, so the pair TRL drops is kept.
    func testMaxPromptLengthKeepsTheEndOfThePrompt() throws {
        var tc = config("train.jsonl")
        tc.dpo.maxPromptLength = 4
        let t = try DPOTask(folder: ModelFolder.open(tc.modelDir), adapterDir: nil, trainConfig: tc, microBatch: 8)
        XCTAssertEqual(t.trainCount, 7)
        XCTAssertEqual(t.skipped.train, 0)
        let rows = ((golden["tokenized"] as! [String: Any])["explicit"] as! [String: Any])["rows"] as! [[String: [Int]]]
        for (k, r) in rows.enumerated() {
            let prompt = Array(r["prompt_ids"]!.suffix(4))
            let want = Array((prompt + r["chosen_ids"]!).prefix(24))
            XCTAssertEqual(t.train[k].chosen.inputIds.map(Int.init), want, "pair \(k) chosen")
            XCTAssertEqual(t.train[k].chosen.labels.prefix(prompt.count).allSatisfy { $0 == -100 }, true, "pair \(k) prompt masked")
            XCTAssertEqual(t.train[k].rejected.inputIds.map(Int.init), Array((prompt + r["rejected_ids"]!).prefix(24)), "pair \(k) rejected")
        }
        XCTAssertEqual(t.train[6].chosen.inputIds.count, 4 + 2, "the last pair: 4 prompt tokens, \" yes\" and EOS")
    }

    func testImplicitPromptExtractionKeepsTRLQuirks() {
        XCTAssertTrue(DPOData.extractPrompt(chosen: "I liked it a lot", rejected: "I liked nothing") == ("I liked", " it a lot", " nothing"))
        // No differing character: the split is at the shorter text's last index (Python's leftover loop variable).
        XCTAssertTrue(DPOData.extractPrompt(chosen: "abc", rejected: "abcd") == ("ab", "c", "cd"))
        // The first characters differ and chosen ends with a space: Python's chosen[-1] moves the split to -1.
        XCTAssertTrue(DPOData.extractPrompt(chosen: "x ", rejected: "yz") == ("x", " ", "z"))
        XCTAssertTrue(DPOData.extractPrompt(chosen: "", rejected: "a") == ("", "", "a"))
    }

    // MARK: - Loss, metrics, gradients

    func checkCase(_ name: String, file: String = "train.jsonl", loss: DPOLossType, smoothing: Double = 0, lora: Bool) throws {
        let t = try task(file, loss: loss, smoothing: smoothing, lora: lora)
        let c = (golden["cases"] as! [String: Any])[name] as! [String: Any]
        let n = t.trainCount
        let all = Array(0..<n)
        let stats = t.forwardPairs(all, t.train, precomputed: nil)
        for (key, got) in [("policy_chosen_logps", stats.map(\.chosen)), ("policy_rejected_logps", stats.map(\.rejected)),
                           ("ref_chosen_logps", stats.map(\.refChosen)), ("ref_rejected_logps", stats.map(\.refRejected))] {
            let want = Self.nums(c[key])
            XCTAssertEqual(got.count, want.count, "\(name) \(key) count")
            for (a, b) in zip(got, want) { assertNear(a, b, atol: 2e-4, rtol: 1e-5, "\(name) \(key)") }
        }
        let meanLoss = stats.reduce(0) { $0 + $1.loss } / Double(n)
        assertNear(meanLoss, Self.num(c["loss"]), atol: 1e-7, rtol: 2e-5, "\(name) loss")

        // TRL's metrics, as the eval path computes them (eval_ prefixed there).
        let beta = golden["beta"] as! Double
        let m = c["metrics"] as! [String: Any]
        let rc = stats.map { beta * ($0.chosen - $0.refChosen) }, rr = stats.map { beta * ($0.rejected - $0.refRejected) }
        let mean = { (xs: [Double]) in xs.reduce(0, +) / Double(xs.count) }
        assertNear(mean(rc), Self.num(m["rewards/chosen"]), atol: 2e-6, rtol: 1e-4, "\(name) rewards/chosen")
        assertNear(mean(rr), Self.num(m["rewards/rejected"]), atol: 2e-6, rtol: 1e-4, "\(name) rewards/rejected")
        assertNear(mean(zip(rc, rr).map { $0 - $1 }), Self.num(m["rewards/margins"]), atol: 2e-6, rtol: 1e-4, "\(name) rewards/margins")
        // TRL reports the fraction in float32.
        assertNear(mean(zip(rc, rr).map { $0 > $1 ? 1 : 0 }), Self.num(m["rewards/accuracies"]), atol: 1e-7, rtol: 0, "\(name) rewards/accuracies")
        assertNear(mean(stats.map(\.chosen)), Self.num(m["logps/chosen"]), atol: 2e-4, rtol: 1e-5, "\(name) logps/chosen")
        assertNear(mean(stats.map(\.rejected)), Self.num(m["logps/rejected"]), atol: 2e-4, rtol: 1e-5, "\(name) logps/rejected")
        // The evaluation path gives the same numbers.
        let evalTask = try DPOTaskTests.evalView(t)
        let em = t.metrics(evalTask)
        assertNear(em["eval_loss"]!, Self.num(c["loss"]), atol: 1e-7, rtol: 2e-5, "\(name) eval_loss")
        assertNear(em["eval_rewards/margins"]!, Self.num(m["rewards/margins"]), atol: 2e-6, rtol: 1e-4, "\(name) eval_rewards/margins")

        // Every gradient of the mean loss over the pairs.
        t.store.zeroGrads()
        _ = t.trainMicroBatch(all, dropout: nil, scale: Float(1.0 / Double(n)))
        try compareStore(t.store, prefix: "\(name)/grad", grads: true)
    }

    /// Evaluation over the training pairs (the task's eval set is empty): the same stats as `evaluate` on a view.
    static func evalView(_ t: DPOTask) throws -> EvalStats {
        var stats = EvalStats(counts: [0], sums: [Double](repeating: 0, count: 5))
        for s in t.forwardPairs(Array(0..<t.trainCount), t.train, precomputed: nil) {
            let rc = t.settings.beta * (s.chosen - s.refChosen), rr = t.settings.beta * (s.rejected - s.refRejected)
            stats.lossSum += s.loss; stats.lossCount += 1
            if rc > rr { stats.counts[0] += 1 }
            stats.sums[0] += rc; stats.sums[1] += rr; stats.sums[2] += rc - rr; stats.sums[3] += s.chosen; stats.sums[4] += s.rejected
        }
        return stats
    }

    /// Every entry of `store` (gradients or values) against `prefix/<name>` (wte: the stored rows, plus the column
    /// sums and sum of squares for gradients).
    func compareStore(_ store: ParameterStore, prefix: String, grads: Bool, atol: Double = 1e-6, rtol: Double = 1e-4) throws {
        let rows = try tensors.int64s("wte_rows").map(Int.init)
        for e in store.entries {
            let name = e.name.hasPrefix("base_model.model.") ? String(e.name.dropFirst("base_model.model.".count)) : e.name
            let v = Array(grads ? store.grad(e.name) : store.value(e.name))
            if name == "transformer.wte.weight" {
                let C = e.shape[1]
                assertClose(rows.flatMap { v[($0 * C)..<($0 * C + C)] }, try tensors.floats("\(prefix)/wte_rows"), atol: atol, rtol: rtol, "\(prefix) wte rows")
                if grads {
                    var colsum = [Double](repeating: 0, count: C), sumsq = 0.0
                    for (i, x) in v.enumerated() { colsum[i % C] += Double(x); sumsq += Double(x) * Double(x) }
                    assertClose(colsum.map(Float.init), try tensors.floats("\(prefix)/wte_colsum"), atol: 1e-5, rtol: 1e-4, "\(prefix) wte column sums")
                    assertNear(sumsq, Double(try tensors.floats("\(prefix)/wte_sumsq")[0]), atol: 1e-12, rtol: 2e-4, "\(prefix) wte sum of squares")
                }
            } else {
                XCTAssertNotNil(tensors.info("\(prefix)/\(name)"), "the golden has no \(prefix)/\(name)")
                assertClose(v, try tensors.floats("\(prefix)/\(name)"), atol: atol, rtol: rtol, "\(prefix)/\(name)")
            }
        }
    }

    func testSigmoidFull() throws { try checkCase("sigmoid", loss: .sigmoid, lora: false) }
    func testIPOFull() throws { try checkCase("ipo", loss: .ipo, lora: false) }
    func testRobustFull() throws { try checkCase("robust", loss: .robust, smoothing: 0.1, lora: false) }
    func testSigmoidLoRA() throws { try checkCase("lora_sigmoid", loss: .sigmoid, lora: true) }
    func testIPOLoRA() throws { try checkCase("lora_ipo", loss: .ipo, lora: true) }
    func testRobustLoRA() throws { try checkCase("lora_robust", loss: .robust, smoothing: 0.1, lora: true) }
    func testSigmoidImplicitPrompt() throws { try checkCase("implicit_sigmoid", file: "implicit.jsonl", loss: .sigmoid, lora: false) }

    // MARK: - Optimizer steps

    func checkSteps(_ key: String, prefix: String, lora: Bool) throws {
        let t = try task(lora: lora)
        let log = (golden["steps"] as! [String: Any])[key] as! [[String: Any]]
        let lr = golden["learning_rate"] as! Double, beta = golden["beta"] as! Double
        let schedule = LRSchedule(kind: .linear, peak: lr, warmupSteps: 0, totalSteps: log.count)
        let opt = AdamW(store: t.store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0))
        let all = Array(0..<t.trainCount)
        for (k, entry) in log.enumerated() {
            let stats = t.forwardPairs(all, t.train, precomputed: nil)
            let m = entry["metrics"] as! [String: Any]
            assertNear(stats.reduce(0) { $0 + beta * ($1.chosen - $1.refChosen - $1.rejected + $1.refRejected) } / Double(all.count),
                       Self.num(m["rewards/margins"]), atol: 2e-6, rtol: 2e-4, "\(key) step \(k + 1) rewards/margins")
            t.store.zeroGrads()
            let r = t.trainMicroBatch(all, dropout: nil, scale: Float(1.0 / Double(all.count)))
            assertNear(r.lossSum / Double(all.count), Self.num(entry["loss"]), atol: 1e-7, rtol: 2e-5, "\(key) step \(k + 1) loss")
            // The training-log metrics, under TRL's names.
            let sm = t.stepMetrics(t.takeStepSums(), count: all.count)
            for name in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
                assertNear(sm[name] ?? .nan, Self.num(m[name]), atol: 2e-6, rtol: 2e-4, "\(key) step \(k + 1) \(name)")
            }
            assertNear(sm["rewards/accuracies"] ?? .nan, Self.num(m["rewards/accuracies"]), atol: 1e-7, rtol: 0, "\(key) step \(k + 1) rewards/accuracies")
            for name in ["logps/chosen", "logps/rejected"] {
                assertNear(sm[name] ?? .nan, Self.num(m[name]), atol: 2e-4, rtol: 1e-5, "\(key) step \(k + 1) \(name)")
            }
            let norm = t.store.grads.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            assertNear(norm, Self.num(entry["grad_norm"]), atol: 1e-7, rtol: 1e-4, "\(key) step \(k + 1) grad norm")
            XCTAssertEqual(schedule.lr(forStep: k), Self.num(entry["lr"]), accuracy: 1e-12)
            opt.step(lr: schedule.lr(forStep: k), gradScale: GradientClipping.coefficient(norm: norm, maxNorm: 1.0))
        }
        try compareStore(t.store, prefix: prefix, grads: false, atol: 5e-6, rtol: 0)
    }

    func testThreeAdamWStepsFull() throws { try checkSteps("full_sigmoid", prefix: "steps_full/final", lora: false) }
    func testThreeAdamWStepsLoRA() throws { try checkSteps("lora_sigmoid", prefix: "steps_lora/final", lora: true) }

    // MARK: - Reference log-probs: precomputed and cached

    func testPrecomputedReferenceEqualsOnTheFlyAndIsCached() throws {
        var tc = config("train.jsonl")
        tc.dpo.precomputeRefLogProbs = true
        let a = try DPOTask(folder: ModelFolder.open(tc.modelDir), adapterDir: nil, trainConfig: tc, microBatch: 8)
        XCTAssertNil(a.reference, "precomputed: no reference copy is kept")
        XCTAssertNil(a.refTrain, "computed by prepare(comm:), after start-up")
        try a.prepare(comm: LocalCommunicator())
        let cache = tc.outputDir.appendingPathComponent(DPOTask.cacheFileName)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache.path))
        XCTAssertTrue(a.notices.contains { $0.contains("computed for 6 pairs") }, "\(a.notices)")
        let onTheFly = try task()
        let want = onTheFly.forwardPairs(Array(0..<6), onTheFly.train, precomputed: nil)
        for (k, p) in a.refTrain!.enumerated() {
            assertNear(p.0, want[k].refChosen, atol: 1e-9, rtol: 1e-9, "cached chosen \(k)")
            assertNear(p.1, want[k].refRejected, atol: 1e-9, rtol: 1e-9, "cached rejected \(k)")
        }
        // A second task reads the cache bit for bit; a changed key (other max_length) recomputes.
        let b = try DPOTask(folder: ModelFolder.open(tc.modelDir), adapterDir: nil, trainConfig: tc, microBatch: 2)
        XCTAssertTrue(b.notices.contains { $0.contains("read from") }, "\(b.notices)")
        XCTAssertEqual(b.refTrain!.map { [$0.0, $0.1] }, a.refTrain!.map { [$0.0, $0.1] })
        var tc2 = tc
        tc2.maxLength = 20
        let c = try DPOTask(folder: ModelFolder.open(tc.modelDir), adapterDir: nil, trainConfig: tc2, microBatch: 2)
        try c.prepare(comm: LocalCommunicator())
        XCTAssertTrue(c.notices.contains { $0.contains("computed for") }, "\(c.notices)")
    }

    /// Why `--label-smoothing` with sigmoid is refused: TRL 1.16 computes the same loss with and without it (the
    /// generator records both); its smoothing-aware loss is robust.
    func testTRLSigmoidIgnoresLabelSmoothingButRobustUsesIt() {
        let cases = golden["cases"] as! [String: Any]
        func loss(_ k: String) -> Double { Self.num((cases[k] as! [String: Any])["loss"]) }
        XCTAssertEqual(loss("lora_sigmoid_label_smoothing"), loss("lora_sigmoid"))
        XCTAssertNotEqual(loss("lora_robust"), loss("lora_sigmoid"))
    }

    func testSettingsValidation() {
        var s = DPOSettings()
        s.maxPromptLength = 24
        XCTAssertThrowsError(try s.validate(maxLength: 24, validationSplit: 0)) { e in
            XCTAssertEqual((e as? TrainingError)?.exitCode, 2)
            XCTAssertTrue("\(e)".contains("--max-prompt-length 24 must be less than --max-length 24"), "\(e)")
        }
        s.maxPromptLength = nil
        s.labelSmoothing = 0.1
        XCTAssertThrowsError(try s.validate(maxLength: 24, validationSplit: 0)) { XCTAssertTrue("\($0)".contains("--loss-type robust")) }
        s.lossType = .robust
        XCTAssertNoThrow(try s.validate(maxLength: 24, validationSplit: 0))
        s.beta = 0
        XCTAssertThrowsError(try s.validate(maxLength: 24, validationSplit: 0))
    }
}
