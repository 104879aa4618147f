// RewardTask against TRL 1.16.0's RewardTrainer (Fixtures/reward-golden, from scripts/goldens/reward_goldens.py):
// for the tiny BERT and GPT-2 classifiers with a one-output head, on an explicit-prompt set with margins and an
// implicit-prompt set with one over-long pair, and the first again with TRL's center_rewards_coefficient 0.1: the token ids TRL's dataset holds (EOS appended for GPT-2, prompt +
// response joined, the long pair filtered), the rewards, the loss, TRL's metrics (accuracy, margin, mean reward, eval
// loss), every parameter gradient (the word table in the rows the batch uses, the rest of it zero), and 3 AdamW steps
// (loss, pre-clip gradient norm, learning rate, final parameters; Adam eps 1e-6, see the generator: several parameters
// have an exactly zero true gradient, and eps 1e-8 would turn their rounding noise into ±lr steps).
// Tolerances (as GoldenModelTests, 10-30x the fixtures' float32-vs-float64 differences): rewards atol 1e-5, losses
// rtol 2e-6, gradients atol 2e-6 × max(1, the tensor's largest |value|) + rtol 1e-4 (the GPT-2 gradients reach ~10,
// and float32 rounding grows with them), grad norms rtol 1e-5, final parameters atol 2e-5 (under 1% of the ≤ 3e-3 three
// steps move them: Adam's normalisation magnifies differences in small gradients).
import Foundation
import XCTest
@testable import Model
@testable import Training
import TestSupport

final class RewardTaskTests: XCTestCase {
    static let goldenDir = TestPaths.fixture("reward-golden")

    func goldenJSON() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: Self.goldenDir.appendingPathComponent("golden.json"))) as! [String: Any]
    }

    /// The reward model the generator trained from: the fixture's word table plus the generator's other parameters
    /// (`<model>/init/*`, the one-output head included), config.json with one label.
    func rewardFolder(_ model: String, golden: SafeTensorsFile) throws -> URL {
        let source = model == "bert" ? "bert-tiny-cls" : "gpt2-tiny-cls"
        let dir = try TestPaths.copyFixture(source)
        for f in ["golden.json", "golden.safetensors"] { try? FileManager.default.removeItem(at: dir.appendingPathComponent(f)) }
        let file = try SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors"))
        var tensors: [TensorToWrite] = []
        var replaced = Set<String>()
        for name in file.names {
            let key = "\(model)/init/\(name)"
            if let info = golden.info(key) {
                tensors.append(TensorToWrite(name: name, shape: info.shape, floats: try golden.floats(key)))
                replaced.insert(key)
            } else {
                tensors.append(TensorToWrite(name: name, shape: file.info(name)!.shape, floats: try file.floats(name)))
            }
        }
        XCTAssertEqual(replaced, Set(golden.names.filter { $0.hasPrefix("\(model)/init/") }), "every generator parameter is in the fixture")
        try SafeTensorsWriter.write(tensors, to: dir.appendingPathComponent("model.safetensors"))
        let configURL = dir.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["id2label"] = ["0": "LABEL_0"]
        config["label2id"] = ["LABEL_0": 0]
        config["problem_type"] = "regression"
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        return dir
    }

    func task(_ folder: URL, file: String, center: Double?, microBatch: Int) throws -> RewardTask {
        let data = try PreferenceData.load(Self.goldenDir.appendingPathComponent(file))
        var config = TrainConfig(modelDir: folder, trainFile: Self.goldenDir.appendingPathComponent(file),
                                 evalFile: nil, outputDir: try TestPaths.tempDir("reward-out"))
        config.maxLength = 24
        config.dropout = false
        config.centerRewardsCoefficient = center
        return try RewardTask(folder: ModelFolder.open(folder), trainSet: data, evalSet: data, config: config, microBatch: microBatch)
    }

    func double(_ v: Any?) -> Double { (v as! NSNumber).doubleValue }

    func checkGolden(_ model: String) throws {
        let json = try goldenJSON()
        let golden = try SafeTensorsFile(url: Self.goldenDir.appendingPathComponent("golden.safetensors"))
        let entry = json[model] as! [String: Any]
        let tables = Set(entry["tables"] as! [String])
        let folder = try rewardFolder(model, golden: golden)
        XCTAssertTrue(try ModelFolder.open(folder).isRewardModel)
        for set in ["explicit", "implicit", "center"] {
            let g = (entry["datasets"] as! [String: Any])[set] as! [String: Any]
            let what = "\(model)/\(set)"
            let n = g["kept"] as! Int
            let t = try task(folder, file: g["file"] as! String, center: (g["center_rewards_coefficient"] as? NSNumber)?.doubleValue, microBatch: n)
            // Token ids exactly as TRL's dataset holds them, and the over-long pair dropped and counted.
            XCTAssertEqual(t.trainCount, n, what)
            XCTAssertEqual(t.trainSkipped, (g["rows"] as! Int) - n, "\(what) skipped pairs")
            let chosen = g["chosen_ids"] as! [[Int]], rejected = g["rejected_ids"] as! [[Int]]
            for i in 0..<n {
                XCTAssertEqual(t.train[2 * i].ids.map(Int.init), chosen[i], "\(what) chosen ids of pair \(i)")
                XCTAssertEqual(t.train[2 * i + 1].ids.map(Int.init), rejected[i], "\(what) rejected ids of pair \(i)")
            }
            // Rewards through the inference path, and TRL's metrics.
            let r = t.rewards(Array(0..<n), batchSize: n)
            assertClose(stride(from: 0, to: 2 * n, by: 2).map { r[$0] }, (g["rewards_chosen"] as! [NSNumber]).map(\.floatValue), atol: 1e-5, "\(what) chosen rewards")
            assertClose(stride(from: 1, to: 2 * n, by: 2).map { r[$0] }, (g["rewards_rejected"] as! [NSNumber]).map(\.floatValue), atol: 1e-5, "\(what) rejected rewards")
            let m = t.metrics(t.evaluate(0..<n, batchSize: n))
            let ev = g["eval"] as! [String: Any]
            XCTAssertEqual(m["eval_loss"]!, double(ev["eval_loss"]), accuracy: 2e-6 * double(ev["eval_loss"]), "\(what) eval_loss")
            XCTAssertEqual(m["eval_accuracy"]!, double(ev["eval_accuracy"]), accuracy: 1e-6, "\(what) eval_accuracy")
            XCTAssertEqual(m["eval_margin"]!, double(ev["eval_margin"]), accuracy: 1e-5, "\(what) eval_margin")
            XCTAssertEqual(m["eval_mean_reward"]!, double(ev["eval_mean_reward"]), accuracy: 1e-5, "\(what) eval_mean_reward")
            XCTAssertEqual(m["eval_samples"]!, Double(n), what)
            // Loss and every gradient of one micro-batch holding every pair.
            let store = t.store
            store.zeroGrads()
            let (lossSum, _) = t.trainMicroBatch(Array(0..<n), dropout: nil, scale: 1 / Float(n))
            XCTAssertEqual(lossSum / Double(n), double(g["loss"]), accuracy: 2e-6 * double(g["loss"]), "\(what) loss")
            let rows = g["table_rows"] as! [Int]
            func check(_ values: [Float], _ e: ParameterEntry, _ key: String, atol: Double, rtol: Double) throws {
                var got = values
                if tables.contains(e.name) {
                    let width = e.shape[1]
                    var rest = values
                    got = rows.flatMap { Array(values[($0 * width)..<($0 * width + width)]) }
                    for row in rows { for j in 0..<width { rest[row * width + j] = 0 } }
                    if key.contains("/grad/") {
                        XCTAssertEqual(rest.map(abs).max() ?? 0, 0, "\(what) \(e.name): gradient outside the rows the batch uses")
                    }
                }
                let ref = try golden.floats(key)
                let scale = max(1, Double(ref.map(abs).max() ?? 0))
                assertClose(got, ref, atol: atol * scale, rtol: rtol, "\(what) \(key)")
            }
            for e in store.layout.entries {
                try check(Array(store.grad(e.name)), e, "\(model)/\(set)/grad/\(e.name)", atol: 2e-6, rtol: 1e-4)
            }
            XCTAssertEqual(Set(store.layout.entries.map(\.name)),
                           Set(golden.names.filter { $0.hasPrefix("\(model)/\(set)/grad/") }.map { String($0.dropFirst("\(model)/\(set)/grad/".count)) }),
                           "\(what): the same parameters as transformers")
            // Three AdamW steps as transformers' Trainer takes them.
            let steps = g["steps"] as! [[String: Any]]
            let opt = AdamW(store: store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0))
            let schedule = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 0, totalSteps: steps.count)
            for (k, s) in steps.enumerated() {
                store.zeroGrads()
                let (sum, _) = t.trainMicroBatch(Array(0..<n), dropout: nil, scale: 1 / Float(n))
                XCTAssertEqual(sum / Double(n), double(s["loss"]), accuracy: 2e-6 * double(s["loss"]), "\(what) step \(k + 1) loss")
                let norm = GradientClipping.clip(store.grads, maxNorm: 1.0)
                XCTAssertEqual(norm, double(s["grad_norm"]), accuracy: 1e-5 * double(s["grad_norm"]), "\(what) step \(k + 1) grad norm")
                XCTAssertEqual(schedule.lr(forStep: k), double(s["learning_rate"]), accuracy: 1e-12, "\(what) step \(k + 1) lr")
                opt.step(lr: schedule.lr(forStep: k))
            }
            for e in store.layout.entries {
                // Parameters whose true gradient is exactly zero (attention key biases; the head bias, which cancels in
                // r_chosen − r_rejected) move only by Adam-normalised rounding noise, in either implementation: they
                // must stay put within that noise, not match.
                let refGrad = try golden.floats("\(model)/\(set)/grad/\(e.name)")
                if (refGrad.map(abs).max() ?? 0) < 1e-6 {
                    let moved = zip(Array(store.value(e.name)), try golden.floats("\(model)/init/\(e.name)")).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThan(moved, 1e-4, "\(what) \(e.name): a zero-gradient parameter moved")
                    continue
                }
                try check(Array(store.value(e.name)), e, "\(model)/\(set)/final/\(e.name)", atol: 2e-5, rtol: 0)
            }
        }
    }

    func testBERTRewardMatchesTRL() throws { try checkGolden("bert") }
    func testGPT2RewardMatchesTRL() throws { try checkGolden("gpt2") }

    /// TRL's text rule: EOS appended unless present, prompt in front; none for tokenizers without EOS.
    func testTextRule() {
        XCTAssertEqual(RewardTask.text(prompt: "Q:", response: " a", eos: "<|endoftext|>"), "Q: a<|endoftext|>")
        XCTAssertEqual(RewardTask.text(prompt: nil, response: "a<|endoftext|>", eos: "<|endoftext|>"), "a<|endoftext|>")
        XCTAssertEqual(RewardTask.text(prompt: "Q:", response: " a", eos: nil), "Q: a")
    }

    /// −log σ(d) and its derivative, stable at large |d|.
    func testPairLoss() {
        for d in [-50.0, -3, -0.5, 0, 0.5, 3, 50] {
            let (l, g) = RewardTask.pairLoss(d)
            XCTAssertEqual(l, -Foundation.log(1 / (1 + Foundation.exp(-d))), accuracy: 1e-12 * max(1, abs(d)), "loss at \(d)")
            XCTAssertEqual(g, -1 / (1 + Foundation.exp(d)), accuracy: 1e-15, "grad at \(d)")
        }
    }

    /// The seeded hold-out keeps every pair exactly once and does not depend on anything but the seed.
    func testValidationSplit() throws {
        let pairs = (0..<10).map { PreferencePair(prompt: nil, chosen: "c\($0)", rejected: "r\($0)", line: $0 + 1) }
        let ds = PreferenceDataset(file: "x.jsonl", pairs: pairs, fingerprint: "f")
        let (a, b) = try RewardTask.split(ds, fraction: 0.3, seed: 7)
        XCTAssertEqual(b.pairs.count, 3)
        XCTAssertEqual(Set((a.pairs + b.pairs).map(\.line)), Set(1...10))
        XCTAssertEqual(try RewardTask.split(ds, fraction: 0.3, seed: 7).1.pairs, b.pairs)
        XCTAssertNotEqual(a.fingerprint, b.fingerprint)
    }
}
