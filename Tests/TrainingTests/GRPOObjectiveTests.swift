// GRPOObjectiveTests.swift: the GRPO/RLOO objective (Training/GRPOObjective.swift) and the model's per-token pieces
// (GPT2LMHead.tokenLogProbs / tokenEntropies / backward(tokenScales:), Model/GPT2SequenceLogProbs.swift) against
// goldens recorded from TRL 1.16.0's GRPOTrainer and RLOOTrainer themselves (scripts/goldens/grpo_goldens.py →
// Tests/ModelTests/Fixtures/grpo-golden): two left-padded prompts × three fixed completions with fixed rewards, TRL's
// own `_generate_and_score_completions` (advantages, old and reference log-probs) and `_compute_loss` (loss, metrics,
// every gradient), for loss types dapo, grpo, bnpo, dr_grpo, beta 0 and > 0, num_iterations 1 and 2 (old log-probs
// shifted so the ratio clips), scale_rewards group/batch/none, temperature 0.8 and 1, RLOO with its KL in the reward
// and normalize_advantages, full fine-tuning and LoRA (reference = the base with the adapter off).
// One process, no accumulation: there TRL's per-process normalisers equal our global ones (see GRPOObjective.swift).
// Tolerances: per-token log-probs are ~−10.9 in float32 (TRL's fused head): atol 2e-5; entropies (~10.82) atol 2e-5;
// advantages atol 2e-5 (float32 vs our Double); losses atol 1e-6 + rtol 2e-5 (RLOO's one-iteration loss is a sum of
// advantages that cancel to ~1e-8); gradients atol 1e-6 + rtol 1e-4 as DPO's plus 2e-5 of the tensor's largest entry
// (every tensor, wte through its stored rows, column sums and sum of squares): the ratios (up to 1.7) and advantages
// make these gradients ~20x an LM loss's, and TRL's own float32 run differs from the same run in float64 by up to
// 5.8e-6 on residual-stream biases whose largest entry is 1.1 (rloo_kl_iter2_norm, measured with the script's cases
// run under torch.float64).
import Foundation
import XCTest
import Model
import TestSupport
@testable import Training

final class GRPOObjectiveTests: XCTestCase {
    static let dir = TestPaths.fixture("grpo-golden")
    var golden: [String: Any]!
    var tensors: SafeTensorsFile!

    override func setUpWithError() throws {
        golden = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dir.appendingPathComponent("golden.json"))) as? [String: Any]
        tensors = try SafeTensorsFile(url: Self.dir.appendingPathComponent("golden.safetensors"))
    }

    static func maxAbs(_ x: [Float]) -> Double { Double(x.map { abs($0) }.max() ?? 0) }
    static func num(_ a: Any?) -> Double { (a as! NSNumber).doubleValue }
    static func floats(_ a: Any?) -> [Float] { (a as! [NSNumber]).map(\.floatValue) }
    static func grid(_ a: Any?) -> [[Float]] { (a as! [[NSNumber]]).map { $0.map(\.floatValue) } }
    static func ints(_ a: Any?) -> [[Int32]] { (a as! [[NSNumber]]).map { $0.map(\.int32Value) } }

    func assertNear(_ a: Double, _ b: Double, atol: Double, rtol: Double, _ what: String, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(a - b), atol + rtol * abs(b), "\(what): got \(a), TRL \(b)", line: line)
    }

    /// One golden case, laid out as TRL lays it out: [left-padded prompt | right-padded completion] per row.
    struct Case {
        let c: [String: Any]
        let rows: Int, P: Int, cols: Int
        var T: Int { P + cols }
        let batch: TokenBatch
        let labels: [Int32]
        let mask: [Float]            // [rows*cols] completion mask
        init(_ c: [String: Any]) {
            self.c = c
            let pid = GRPOObjectiveTests.ints(c["prompt_ids"]), pm = GRPOObjectiveTests.ints(c["prompt_mask"])
            let cid = GRPOObjectiveTests.ints(c["completion_ids"]), cm = GRPOObjectiveTests.ints(c["completion_mask"])
            rows = pid.count; P = pid[0].count; cols = cid[0].count
            var ids: [Int32] = [], att: [Int32] = [], lab: [Int32] = []
            for b in 0..<rows {
                ids += pid[b] + cid[b]; att += pm[b] + cm[b]
                lab += [Int32](repeating: -100, count: P) + (0..<cid[b].count).map { cm[b][$0] == 1 ? cid[b][$0] : -100 }
            }
            batch = TokenBatch(batchSize: rows, seqLen: P + cid[0].count, inputIds: ids, attentionMask: att, sampleIndices: Array(0..<rows))
            labels = lab
            mask = cm.flatMap { $0.map(Float.init) }
        }
        /// Completion token j of row b is predicted at flat position b·T + P − 1 + j.
        func completionGrid(_ perPosition: [Float]) -> [Float] {
            (0..<rows).flatMap { b in (0..<cols).map { perPosition[b * T + P - 1 + $0] } }
        }
        func perPosition(_ grid: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: rows * T)
            for b in 0..<rows { for j in 0..<cols { out[b * T + P - 1 + j] = grid[b * cols + j] } }
            return out
        }
        var config: GRPOObjectiveConfig {
            GRPOObjectiveConfig(estimator: c["trainer"] as! String == "rloo" ? .rloo : .grpo, beta: num(c["beta"]),
                                epsilonLow: num(c["epsilon"]), epsilonHigh: num(c["epsilon_high"]),
                                lossType: (c["loss_type"] as? String).flatMap(GRPOLossType.init(rawValue:)) ?? .dapo,
                                maxCompletionLength: c["max_completion_length"] as! Int, temperature: Float(num(c["temperature"])))
        }
        var scaling: RewardScaling { RewardScaling(rawValue: c["scaling"] as! String)! }
        func optGrid(_ key: String) -> [Float]? { (c[key] as? [[NSNumber]]).map { $0.flatMap { $0.map(\.floatValue) } } }
    }

    func loadModel(lora: Bool, logitRows: Int = 4) throws -> (GPT2LMHead, ParameterStore) {
        let dir = TestPaths.fixture("gpt2-tiny-lm")
        let config = try GPT2Config.load(url: dir.appendingPathComponent("config.json"))
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        _ = try GPT2Layout.load(into: store, from: SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors")), config: config)
        // a small logits budget so the recompute runs over several chunks
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: 6, maxSeq: 16, logitBudget: logitRows * config.vocabSize)
        if lora {
            let adapter = try PEFTAdapter.load(TestPaths.fixture("gpt2-tiny-lora").appendingPathComponent("adapter-init"), into: model)
            return (model, adapter.store)
        }
        return (model, store)
    }

    struct Outcome {
        var logps: [Float], entropies: [Float], ref: [Float]?, advantages: [Float], result: GRPOLossResult
    }

    /// Runs the case through our code; `perturb` edits the objective's inputs (to show the test can fail).
    func run(_ name: String, perturbAdvantages: Float = 0, perturbOld: Float = 0, skipBackward: Bool = false,
             check: Bool = true) throws -> (Outcome, ParameterStore) {
        let c = (golden["cases"] as! [String: Any])[name] as! [String: Any]
        let k = Case(c)
        let cfg = k.config
        let lora = c["lora"] as! Bool
        let (model, trainable) = try loadModel(lora: lora)
        let rewards = Self.floats(c["rewards"])
        let G = golden["num_generations"] as! Int

        // The reference: under LoRA ours (adapter off) against TRL's; for full fine-tuning TRL's perturbed copy's.
        var ref = k.optGrid("ref_per_token_logps")
        if lora && cfg.beta != 0 {
            let ours = model.withAdapterDisabled { () -> [Float] in
                model.forward(k.batch, labels: k.labels, gradientScale: nil, dropout: nil)
                return k.completionGrid(model.tokenLogProbs(temperature: cfg.temperature))
            }
            if check { assertClose(ours, ref!, atol: 2e-5, "\(name) reference log-probs (adapter disabled)") }
            ref = ours
        }
        model.forward(k.batch, labels: k.labels, gradientScale: nil, dropout: nil)
        let logps = k.completionGrid(model.tokenLogProbs(temperature: cfg.temperature))
        let ent = k.completionGrid(model.tokenEntropies(temperature: cfg.temperature))
        if check {
            assertClose(logps, Self.grid(c["per_token_logps"]).flatMap { $0 }, atol: 2e-5, "\(name) per-token log-probs")
            assertClose(ent, Self.grid(c["entropies"]).flatMap { $0 }, atol: 2e-5, "\(name) per-token entropies")
        }

        // Advantages (RLOO: from the KL-penalised rewards, with the sampling policy's log-probs).
        var adv: [Float]
        if cfg.estimator == .rloo {
            var r = rewards
            if cfg.beta != 0 {
                let pen = GRPOObjective.rlooRewards(rewards: rewards, oldLogps: k.optGrid("old_per_token_logps_at_sampling")!,
                                                    refLogps: ref!, mask: k.mask, rows: k.rows, cols: k.cols, beta: cfg.beta)
                r = pen.rewards
                let kl = pen.sequenceKL.reduce(0, +) / Double(k.mask.reduce(0, +))
                if check { assertNear(kl, Self.num((c["generation_metrics"] as! [String: Any])["kl"]), atol: 1e-6, rtol: 1e-4, "\(name) RLOO kl") }
            }
            adv = GRPOObjective.advantages(rewards: r, groupSize: G, estimator: .rloo, scaling: k.scaling)
        } else {
            adv = GRPOObjective.advantages(rewards: rewards, groupSize: G, estimator: .grpo, scaling: k.scaling)
        }
        if check { assertClose(adv, Self.floats(c["advantages"]), atol: 2e-5, "\(name) advantages") }
        adv = adv.map { $0 + perturbAdvantages }

        var old = k.optGrid("old_per_token_logps")
        if perturbOld != 0 { old = (old ?? logps).map { $0 + perturbOld } }
        let res = cfg.evaluate(logps: logps, oldLogps: old, refLogps: cfg.estimator == .grpo ? ref : nil, advantages: adv,
                               mask: k.mask, rows: k.rows, cols: k.cols, globalRows: k.rows, globalTokens: Int(k.mask.reduce(0, +)))
        trainable.zeroGrads()
        if !skipBackward {
            model.backward(tokenScales: k.perPosition(res.dLogps.map { -$0 }), temperature: cfg.temperature)
        }
        return (Outcome(logps: logps, entropies: ent, ref: ref, advantages: adv, result: res), trainable)
    }

    func checkCase(_ name: String) throws {
        let c = (golden["cases"] as! [String: Any])[name] as! [String: Any]
        let (o, store) = try run(name)
        let m = c["metrics"] as! [String: Any]
        assertNear(o.result.loss, Self.num(c["loss"]), atol: 1e-6, rtol: 2e-5, "\(name) loss")
        let k = Case(c)
        let entMean = zip(o.entropies, k.mask).reduce(0.0) { $0 + Double($1.0 * $1.1) } / Double(k.mask.reduce(0, +))
        assertNear(entMean, Self.num(m["entropy"]), atol: 2e-5, rtol: 0, "\(name) entropy")
        if let kl = m["kl"] { assertNear(o.result.klMean, Self.num(kl), atol: 1e-6, rtol: 1e-4, "\(name) kl") }
        for (key, got) in [("clip_ratio/low_mean", o.result.lowClipMean), ("clip_ratio/high_mean", o.result.highClipMean),
                           ("clip_ratio/region_mean", o.result.regionClipMean), ("clip_ratio/low_min", o.result.lowClipMin),
                           ("clip_ratio/high_max", o.result.highClipMax)] {
            assertNear(got, Self.num(m[key]), atol: 1e-6, rtol: 0, "\(name) \(key)")
        }
        try compareGrads(store, prefix: "\(name)/grad")
    }

    /// Every gradient of `store` against `prefix/<name>` (wte: the stored rows, the column sums, the sum of squares).
    /// Per tensor the bound is atol + rtol·|ref| + 2e-5·max|ref| (see the header: TRL's own float32 gradients differ from
    /// its float64 ones by up to 5e-6 of the tensor's largest entry on the residual-stream biases).
    func compareGrads(_ store: ParameterStore, prefix: String, atol: Double = 1e-6, rtol: Double = 1e-4) throws {
        let rows = try tensors.int64s("wte_rows").map(Int.init)
        for e in store.entries {
            let name = e.name.hasPrefix("base_model.model.") ? String(e.name.dropFirst("base_model.model.".count)) : e.name
            let v = Array(store.grad(e.name))
            if name == "transformer.wte.weight" {
                let C = e.shape[1]
                let want = try tensors.floats("\(prefix)/wte_rows")
                assertClose(rows.flatMap { v[($0 * C)..<($0 * C + C)] }, want, atol: atol + 2e-5 * Self.maxAbs(want), rtol: rtol, "\(prefix) wte rows")
                var colsum = [Double](repeating: 0, count: C), sumsq = 0.0
                for (i, x) in v.enumerated() { colsum[i % C] += Double(x); sumsq += Double(x) * Double(x) }
                let cs = try tensors.floats("\(prefix)/wte_colsum")
                assertClose(colsum.map(Float.init), cs, atol: 1e-5 + 2e-5 * Self.maxAbs(cs), rtol: 1e-4, "\(prefix) wte column sums")
                assertNear(sumsq, Double(try tensors.floats("\(prefix)/wte_sumsq")[0]), atol: 1e-12, rtol: 2e-4, "\(prefix) wte sum of squares")
            } else {
                XCTAssertNotNil(tensors.info("\(prefix)/\(name)"), "the golden has no \(prefix)/\(name)")
                let want = try tensors.floats("\(prefix)/\(name)")
                assertClose(v, want, atol: atol + 2e-5 * Self.maxAbs(want), rtol: rtol, "\(prefix)/\(name)")
            }
        }
    }

    func testGRPODapo() throws { try checkCase("grpo_dapo") }
    func testGRPOGrpoIter2() throws { try checkCase("grpo_grpo_iter2") }
    func testGRPOBnpoKL() throws { try checkCase("grpo_bnpo_kl") }
    func testGRPODrGrpoKLIter2() throws { try checkCase("grpo_drgrpo_kl_iter2") }
    func testGRPODapoKLIter2BatchScaling() throws { try checkCase("grpo_dapo_kl_iter2_batch") }
    func testGRPOGrpoKLNoScalingTemperature1() throws { try checkCase("grpo_grpo_kl_none_t1") }
    func testGRPODapoKLIter2LoRA() throws { try checkCase("lora_grpo_dapo_kl_iter2") }
    func testGRPOGrpoKLLoRA() throws { try checkCase("lora_grpo_grpo_kl") }
    func testRLOO() throws { try checkCase("rloo") }
    func testRLOOKL() throws { try checkCase("rloo_kl") }
    func testRLOOKLIter2Normalized() throws { try checkCase("rloo_kl_iter2_norm") }
    func testRLOOKLIter2LoRA() throws { try checkCase("lora_rloo_kl_iter2") }

    /// The comparisons can fail: a shifted advantage changes the loss and the gradients beyond the tolerances, and a
    /// shifted old log-prob changes which tokens clip.
    func testPerturbationsAreDetected() throws {
        let name = "grpo_drgrpo_kl_iter2"
        let c = (golden["cases"] as! [String: Any])[name] as! [String: Any]
        let (o, store) = try run(name, perturbAdvantages: 0.01, check: false)
        XCTAssertGreaterThan(abs(o.result.loss - Self.num(c["loss"])), 1e-6 + 2e-5 * abs(Self.num(c["loss"])))
        let g = Array(store.grad("transformer.h.1.mlp.c_fc.weight"))
        let want = try tensors.floats("\(name)/grad/transformer.h.1.mlp.c_fc.weight")
        let bound = 1e-6 + 2e-5 * Self.maxAbs(want)
        XCTAssertTrue(zip(g, want).contains { abs(Double($0) - Double($1)) > bound + 1e-4 * abs(Double($1)) }, "a 0.01 advantage shift must move some gradient beyond tolerance")
        let (o2, _) = try run(name, perturbOld: 0.1, skipBackward: true, check: false)
        XCTAssertNotEqual(o2.result.regionClipMean, Self.num((c["metrics"] as! [String: Any])["clip_ratio/region_mean"]))
    }

    /// 1 process and N ranks agree: the sum over rank shares (each rank holding whole groups, the global counts passed)
    /// equals the whole batch's loss and per-token gradient, for every loss type.
    func testRankSharesSumToTheWholeBatch() throws {
        var rng = TestRNG(5)
        let rows = 6, cols = 5
        let logps = rng.floats(rows * cols, scale: 1).map { $0 - 3 }
        let old = logps.map { $0 + Float(rng.uniform() * 0.6 - 0.3) }
        let ref = logps.map { $0 + Float(rng.uniform() * 0.4 - 0.2) }
        var mask = [Float](repeating: 1, count: rows * cols)
        for b in 0..<rows { for t in (1 + b % cols)..<cols { mask[b * cols + t] = 0 } }
        let adv = GRPOObjective.advantages(rewards: rng.floats(rows), groupSize: 3, estimator: .grpo, scaling: .group)
        let tokens = Int(mask.reduce(0, +))
        for est in AdvantageEstimator.allCases {
            for lt in GRPOLossType.allCases {
                let cfg = GRPOObjectiveConfig(estimator: est, beta: 0.1, lossType: lt, maxCompletionLength: cols)
                let whole = cfg.evaluate(logps: logps, oldLogps: old, refLogps: ref, advantages: adv, mask: mask, rows: rows,
                                         cols: cols, globalRows: rows, globalTokens: tokens)
                var loss = 0.0, grad: [Float] = []
                for r in 0..<2 {   // two ranks of one group... three rows each
                    let s = (r * 3 * cols)..<((r + 1) * 3 * cols)
                    let part = cfg.evaluate(logps: Array(logps[s]), oldLogps: Array(old[s]), refLogps: Array(ref[s]),
                                            advantages: Array(adv[(r * 3)..<(r * 3 + 3)]), mask: Array(mask[s]), rows: 3,
                                            cols: cols, globalRows: rows, globalTokens: tokens)
                    loss += part.loss
                    grad += part.dLogps
                }
                XCTAssertEqual(loss, whole.loss, accuracy: 1e-12, "\(est) \(lt) loss")
                assertClose(grad, whole.dLogps, atol: 1e-7, "\(est) \(lt) dLogps")
            }
        }
    }

    /// dLogps is the derivative of the loss: central differences on a few tokens (Double loss, float inputs).
    func testGradientMatchesFiniteDifferences() throws {
        var rng = TestRNG(11)
        let rows = 4, cols = 4
        let logps = rng.floats(rows * cols).map { $0 - 2 }
        let old = logps.map { $0 + Float(rng.uniform() * 0.1 - 0.05) }   // away from the clip edges
        let ref = logps.map { $0 + Float(rng.uniform() * 0.4 - 0.2) }
        let mask = [Float](repeating: 1, count: rows * cols)
        let adv: [Float] = [0.7, -1.2, 0.4, 0.1]
        for est in AdvantageEstimator.allCases {
            for lt in GRPOLossType.allCases {
                let cfg = GRPOObjectiveConfig(estimator: est, beta: 0.2, lossType: lt, maxCompletionLength: 8)
                let f = { (lp: [Float]) in cfg.evaluate(logps: lp, oldLogps: old, refLogps: ref, advantages: adv, mask: mask,
                                                       rows: rows, cols: cols, globalRows: rows, globalTokens: rows * cols) }
                let base = f(logps)
                for i in [0, 5, 10, 15] {
                    let h: Float = 1e-2
                    var p = logps, m = logps
                    p[i] += h; m[i] -= h
                    let fd = (f(p).loss - f(m).loss) / Double(p[i] - m[i])
                    XCTAssertEqual(Double(base.dLogps[i]), fd, accuracy: 1e-3 * max(1, abs(fd)), "\(est) \(lt) token \(i)")
                }
            }
        }
    }

    /// forwardTokenStats (body + the labelled rows only) gives the golden log-probs and entropies, and backward after it
    /// the golden gradients, as forward + logProbsAndEntropies does (a LoRA case with KL and clipping).
    func testForwardTokenStatsMatchesGolden() throws {
        let name = "lora_grpo_dapo_kl_iter2"
        let c = (golden["cases"] as! [String: Any])[name] as! [String: Any]
        let k = Case(c)
        let cfg = k.config
        let (model, store) = try loadModel(lora: true)
        let ref = k.optGrid("ref_per_token_logps")!
        let stats = model.forwardTokenStats(k.batch, labels: k.labels, temperature: cfg.temperature)
        let logps = k.completionGrid(stats.logps)
        assertClose(logps, Self.grid(c["per_token_logps"]).flatMap { $0 }, atol: 2e-5, "forwardTokenStats log-probs")
        assertClose(k.completionGrid(stats.entropies), Self.grid(c["entropies"]).flatMap { $0 }, atol: 2e-5, "forwardTokenStats entropies")
        let adv = GRPOObjective.advantages(rewards: Self.floats(c["rewards"]), groupSize: golden["num_generations"] as! Int,
                                           estimator: .grpo, scaling: k.scaling)
        let res = cfg.evaluate(logps: logps, oldLogps: k.optGrid("old_per_token_logps"), refLogps: ref, advantages: adv, mask: k.mask,
                               rows: k.rows, cols: k.cols, globalRows: k.rows, globalTokens: Int(k.mask.reduce(0, +)))
        assertNear(res.loss, Self.num(c["loss"]), atol: 1e-6, rtol: 2e-5, "loss")
        store.zeroGrads()
        model.backward(tokenScales: k.perPosition(res.dLogps.map { -$0 }), temperature: cfg.temperature)
        try compareGrads(store, prefix: "\(name)/grad")
        // temperature 1: tokenLogProbs(temperature: 1) reads the same values afterwards
        let s1 = model.forwardTokenStats(k.batch, labels: k.labels, temperature: 1, entropies: false)
        XCTAssertEqual(model.tokenLogProbs(), s1.logps)
        XCTAssertTrue(s1.entropies.isEmpty)
    }

    func testValidation() {
        XCTAssertNotNil(GRPOObjectiveConfig().validationError(groupSize: 1, scaling: .group))
        XCTAssertNotNil(GRPOObjectiveConfig(estimator: .rloo).validationError(groupSize: 4, scaling: .group))
        XCTAssertNil(GRPOObjectiveConfig(estimator: .rloo).validationError(groupSize: 4, scaling: .batch))
        XCTAssertNil(GRPOObjectiveConfig().validationError(groupSize: 2, scaling: .group))
        XCTAssertEqual(GRPOLossType(rawValue: "dr_grpo"), .drGrpo)
    }
}
