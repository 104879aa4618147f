// GRPOTaskTests.swift: the wiring of `--task grpo` in process, on the tiny GPT-2 LM and the tiny one-output BERT
// reward model (Fixtures/grpo-reward-bert): a step's rollouts are exactly what the single-row generator samples with
// the documented seeds; the rewards are the reward model's scores of prompt + decoded completion; the advantages,
// loss and gradient of a micro-batch equal GRPOObjective and GPT2LMHead's per-token backward applied by hand to those
// rollouts (independent forward passes here). The objective's own values are TRL's goldens (GRPOObjectiveTests).
// Also: the prompt file's errors name file:line, and settings that cannot work are usage errors (exit 2).
import Dist
import Foundation
import Model
import TestSupport
import Tokenizers
import XCTest
@testable import Training

final class GRPOTaskTests: XCTestCase {
    var out: TempFolder!
    var prompts: URL { out.url.appendingPathComponent("prompts.jsonl") }

    override func setUpWithError() throws {
        out = try TempFolder()
        try "{\"prompt\": \"The food was\"}\n{\"prompt\": \"My day\", \"id\": 7}\n\n{\"prompt\": \"The weather is\"}\n{\"prompt\": \"Our trip\"}\n"
            .write(to: prompts, atomically: true, encoding: .utf8)
    }

    func config(beta: Double = 0.1, loss: GRPOLossType = .dapo) -> TrainConfig {
        var tc = TrainConfig(modelDir: TestPaths.fixture("gpt2-tiny-lm"), trainFile: prompts, evalFile: nil,
                             outputDir: out.url.appendingPathComponent("run"))
        tc.task = .grpo
        tc.maxLength = 20
        tc.seed = 11
        tc.grpo.rewardModel = TestPaths.fixture("grpo-reward-bert")
        tc.grpo.numGenerations = 3
        tc.grpo.maxCompletionLength = 6
        tc.grpo.topK = 20
        tc.grpo.temperature = 0.9
        tc.grpo.beta = beta
        tc.grpo.lossType = loss
        tc.grpo.logCompletions = false
        return tc
    }

    func testPromptFileRowsAndErrors() throws {
        let d = try PromptData.load(prompts)
        XCTAssertEqual(d.rows.map(\.prompt), ["The food was", "My day", "The weather is", "Our trip"])
        XCTAssertEqual(d.rows.map(\.line), [1, 2, 4, 5], "blank lines are skipped, line numbers kept")
        for (row, message) in [("{\"text\": \"a\"}", "missing \"prompt\""), ("{\"prompt\": 3}", "not a string"),
                               ("{\"prompt\": \"\"}", "empty"), ("{\"prompt\": [{\"role\": \"user\"}]}", "a list"),
                               ("{\"chosen\": \"a\", \"rejected\": \"b\"}", "preference file")] {
            try "{\"prompt\": \"ok\"}\n\(row)\n".write(to: prompts, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try PromptData.load(prompts), row) { e in
                XCTAssertEqual((e as? DataError)?.line, 2, "\(e)")
                XCTAssertTrue("\(e)".contains(message), "\(e)")
            }
        }
    }

    func testReportShowsTheRewardCurveAndTheLastStepsSamples() throws {
        let run = out.url.appendingPathComponent("report-run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try (1...3).map { "{\"step\": \($0), \"loss\": 0.1, \"reward\": \(0.1 * Double($0)), \"kl\": 0.01}" }.joined(separator: "\n")
            .write(to: run.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
        try ["{\"step\": 2, \"prompt\": \"old\", \"completion\": \"x\", \"reward\": 9}",
             "{\"step\": 3, \"prompt\": \"I <3\", \"completion\": \" love it\", \"reward\": 0.5}"].joined(separator: "\n")
            .write(to: run.appendingPathComponent(GRPOTask.samplesFileName), atomically: true, encoding: .utf8)
        let input = ReportInput.load(outputDir: run)
        XCTAssertEqual(input.samples.count, 1, "the last logged step's samples only")
        let html = TrainingReport.html(input)
        XCTAssertTrue(html.contains("Reward of fresh samples"), "the reward curve")
        XCTAssertTrue(html.contains("KL to the reference"))
        XCTAssertTrue(html.contains("Samples (step 3)"))
        XCTAssertTrue(html.contains("I &lt;3"), "escaped prompt")
        XCTAssertFalse(html.contains(">old<"), "earlier steps' samples are not shown")
        // Other tasks' reports have neither.
        XCTAssertFalse(TrainingReport.html(ReportInput(logs: [["step": 1, "loss": 1]], evals: [], final: [:], labels: [], confusion: nil, title: "t"))
            .contains("Reward of fresh samples"))
    }

    func testSampleSeedsAreKeyedByEveryField() {
        let base = GRPOTask.sampleSeed(seed: 1, step: 2, prompt: 3, completion: 4)
        XCTAssertEqual(base, GRPOTask.sampleSeed(seed: 1, step: 2, prompt: 3, completion: 4))
        let others = [GRPOTask.sampleSeed(seed: 2, step: 2, prompt: 3, completion: 4), GRPOTask.sampleSeed(seed: 1, step: 3, prompt: 3, completion: 4),
                      GRPOTask.sampleSeed(seed: 1, step: 2, prompt: 4, completion: 4), GRPOTask.sampleSeed(seed: 1, step: 2, prompt: 3, completion: 5),
                      GRPOTask.sampleSeed(seed: 1, step: 2, prompt: 4, completion: 3)]
        XCTAssertEqual(Set(others + [base]).count, 6, "every key changes the seed")
    }

    func testSettingsThatCannotWorkAreUsageErrors() throws {
        func refused(_ change: (inout TrainConfig) -> Void, world: Int = 1, _ message: String, line: UInt = #line) {
            var tc = config()
            change(&tc)
            XCTAssertThrowsError(try tc.validate(worldSize: world), line: line) { e in
                XCTAssertEqual((e as? TrainingError)?.exitCode, 2, "\(e)", line: line)
                XCTAssertTrue("\(e)".contains(message), "\(e)", line: line)
            }
        }
        XCTAssertNoThrow(try config().validate(worldSize: 1))
        refused({ $0.grpo.rewardModel = nil }, "needs --reward-model")
        refused({ $0.grpo.numGenerations = 1 }, "--num-generations 1")
        refused({ $0.batchSize = 3 }, world: 2, "whole prompt groups over 2 ranks")
        refused({ $0.grpo.maxCompletionLength = 20 }, "leaves no room for a prompt")
        refused({ $0.grpo.temperature = 0 }, "--temperature")
        refused({ $0.grpo.advantage = .rloo; $0.grpo.scaleRewards = .group }, "rloo")
        refused({ $0.evalFile = self.prompts }, "does not evaluate")
    }

    /// One step by hand: rollouts = single-row generator with the task's seeds; rewards = the reward model's scores;
    /// loss and gradient = GRPOObjective + backward(tokenScales:) on an independent model over the same rows.
    func testOneStepIsTheObjectiveOfItsRollouts() throws {
        for (beta, loss) in [(0.1, GRPOLossType.dapo), (0.0, .grpo)] {
            let tc = config(beta: beta, loss: loss)
            let folder = try ModelFolder.open(tc.modelDir)
            let task = try GRPOTask(folder: folder, adapterDir: nil, trainConfig: tc, microBatch: 4)
            let plan = try GlobalBatchPlan(sampleCount: 4, globalBatch: 4, microBatch: 4, worldSize: 1, rank: 0, seed: 11, lengths: nil)
                .steps(epoch: 0)[0]
            task.store.zeroGrads()
            try task.beginStep(plan, step: 0, comm: LocalCommunicator())
            let r = task.rollout!
            let G = 3, idx = plan.microBatches[0]
            // Rollouts: the single-row generator, seeded as documented, samples the same ids.
            let m = try LoadedLM(folder: folder, seed: 0)
            let single = GPT2Generator(config: m.config, parameters: m.store)
            var opts = GenerationOptions(maxNewTokens: 6, temperature: 0.9, topK: 20, stopToken: 50256)
            var rows: [Int] = [], texts: [String] = []
            for p in idx {
                for k in 0..<G {
                    opts.seed = GRPOTask.sampleSeed(seed: 11, step: 0, prompt: p, completion: k)
                    let want = try single.generate(prompt: task.promptIds[p], options: opts)
                    let row = r.firstRow[p]! + k
                    XCTAssertEqual(r.completions[row], want, "prompt \(p) completion \(k)")
                    rows.append(row)
                    texts.append(task.prompts[p].prompt + m.tokenizer.decode(want, skipSpecialTokens: true))
                }
            }
            // Rewards: the reward model's scores of prompt + decoded completion.
            let scores = try RewardScorer(dir: tc.grpo.rewardModel!, maxLength: 40).score(texts)
            for (i, row) in rows.enumerated() { XCTAssertEqual(r.rewards[row], scores[i], accuracy: 1e-6) }
            let adv = GRPOObjective.advantages(rewards: rows.map { r.rewards[$0] }, groupSize: G, estimator: .grpo, scaling: .group)
            for (i, row) in rows.enumerated() { XCTAssertEqual(r.advantages[row], adv[i], accuracy: 1e-6) }
            XCTAssertEqual(r.globalRows, 12)
            XCTAssertEqual(r.globalTokens, rows.reduce(0) { $0 + r.completions[$1].count })

            let (lossSum, _) = task.trainMicroBatch(idx, dropout: nil, scale: 1)
            // By hand: an independent policy and reference over the same rows.
            let (batch, labels, starts) = task.makeBatch(rows)
            let policy = GPT2LMHead(config: m.config, parameters: m.store, maxBatch: rows.count, maxSeq: batch.seqLen)
            let refStore = try LoadedLM(folder: folder, seed: 0)
            let reference = GPT2LMHead(config: m.config, parameters: refStore.store, maxBatch: rows.count, maxSeq: batch.seqLen)
            reference.forward(batch, labels: labels, gradientScale: nil, dropout: nil)
            let refLp = reference.tokenLogProbs(temperature: 0.9)
            m.store.zeroGrads()
            policy.forward(batch, labels: labels, gradientScale: nil, dropout: nil)
            let lp = policy.tokenLogProbs(temperature: 0.9)
            let T = batch.seqLen, cols = rows.map { r.completions[$0].count }.max()!
            var flatLp = [Float](repeating: 0, count: rows.count * cols), flatRef = flatLp, mask = flatLp
            for (i, row) in rows.enumerated() {
                for t in 0..<r.completions[row].count {
                    flatLp[i * cols + t] = lp[i * T + starts[i] - 1 + t]
                    flatRef[i * cols + t] = refLp[i * T + starts[i] - 1 + t]
                    mask[i * cols + t] = 1
                }
            }
            let res = tc.grpo.objectiveConfig.evaluate(logps: flatLp, oldLogps: nil, refLogps: beta > 0 ? flatRef : nil, advantages: adv,
                                                       mask: mask, rows: rows.count, cols: cols, globalRows: 12, globalTokens: r.globalTokens)
            XCTAssertEqual(lossSum, res.loss, accuracy: 1e-6 + 1e-5 * abs(res.loss), "\(loss) β \(beta): loss")
            var scales = [Float](repeating: 0, count: rows.count * T)
            for (i, row) in rows.enumerated() {
                for t in 0..<r.completions[row].count { scales[i * T + starts[i] - 1 + t] = -res.dLogps[i * cols + t] }
            }
            policy.backward(tokenScales: scales, temperature: 0.9)
            let got = task.store.grads, want = m.store.grads
            var maxDiff: Float = 0, maxAbs: Float = 0
            for i in 0..<got.count { maxDiff = max(maxDiff, abs(got[i] - want[i])); maxAbs = max(maxAbs, abs(want[i])) }
            XCTAssertGreaterThan(maxAbs, 0, "a gradient at all")
            XCTAssertLessThanOrEqual(maxDiff, 1e-6 + 1e-5 * maxAbs, "\(loss) β \(beta): gradient (max |Δ| \(maxDiff), max |g| \(maxAbs))")
        }
    }
}
