// GPT2BatchGeneratorTests.swift: the batched KV-cache generator (Model/GPT2BatchGenerator.swift) against the one-row
// GPT2Generator (itself checked against transformers' generate in GPT2GoldenTests): rows of different prompt lengths in
// one batch give, row by row, the ids GPT2Generator gives for that prompt and seed — greedy, sampled with temperature,
// top-k and top-p, stopping at a stop token while other rows continue, with a LoRA adapter attached; and, bit for bit,
// a row's ids do not depend on the other rows of its batch, their order, or a token budget small enough that prompts are
// prefilled in pieces and decode steps run in chunks; bad input throws GenerationError.
// The tiny model is close to uniform over 50257 tokens (entropy 10.82 of at most 10.83), so a sampled id flips with a
// last-bit change of the logits: the batch-independence tests use it as is (the strongest check that the row-
// deterministic kernels make rows exact), while the comparisons of sampled ids with GPT2Generator (BLAS, whose rounding
// differs in the last bit) use a "peaky" copy whose ln_f is scaled by 100, so draws are not on a knife edge.
// Sampler.pick sorts every candidate without top-k, slow in a debug build: most sampled cases use top-k.
import Foundation
import XCTest
import CKernels
import SplitMix
import TestSupport
@testable import Model

final class GPT2BatchGeneratorTests: XCTestCase {
    var config: GPT2Config!
    var store: ParameterStore!

    override func setUpWithError() throws {
        (config, store, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
    }

    /// The tiny model with logits ×100 (ln_f's weight and bias scaled; ln_f feeds only the tied head).
    func usePeakyModel() {
        for name in ["transformer.ln_f.weight", "transformer.ln_f.bias"] {
            let v = store.value(name)
            for i in 0..<v.count { v[i] *= 100 }
        }
    }

    // Prompts of lengths 1, 4, 9 and 13 (ids spread over the vocabulary).
    let prompts: [[Int32]] = [[464], [15496, 11, 616, 3290], [40, 1101, 257, 2443, 6342, 290, 314, 588, 50256],
                              [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 50000]]
    let seeds: [UInt64] = [11, 22, 33, 44]

    func single(_ options: GenerationOptions, lora: Bool = false) throws -> [[Int32]] {
        let gen = GPT2Generator(config: config, parameters: store)
        if lora { _ = try PEFTAdapter.load(Fixtures.dir("gpt2-tiny-lora").appendingPathComponent("adapter-init"), into: gen) }
        return try prompts.indices.map { i in
            var o = options
            o.seed = seeds[i]
            return try gen.generate(prompt: prompts[i], options: o)
        }
    }

    func batched(_ options: GenerationOptions, lora: Bool = false, tokenBudget: Int? = nil) throws -> [[Int32]] {
        let gen = GPT2BatchGenerator(config: config, parameters: store, maxBatch: 8, tokenBudget: tokenBudget)
        if lora { _ = try PEFTAdapter.load(Fixtures.dir("gpt2-tiny-lora").appendingPathComponent("adapter-init"), into: gen) }
        return try gen.generate(prompts: prompts, options: options, seeds: seeds)
    }

    func testGreedyMatchesOneRowGenerator() throws {
        let o = GenerationOptions(maxNewTokens: 12)
        let want = try single(o)
        XCTAssertEqual(try batched(o), want)
        XCTAssertTrue(want.allSatisfy { $0.count == 12 })
    }

    func testSampledMatchesOneRowGenerator() throws {
        usePeakyModel()
        for o in [GenerationOptions(maxNewTokens: 4, temperature: 0.9),
                  GenerationOptions(maxNewTokens: 20, temperature: 1.3, topK: 400, topP: 0.8),
                  GenerationOptions(maxNewTokens: 20, temperature: 0.7, topK: 50, topP: 0.95)] {
            let want = try single(o)
            XCTAssertEqual(try batched(o), want, "temperature \(o.temperature) top-k \(o.topK) top-p \(o.topP)")
            XCTAssertNotEqual(want[0], want[1], "rows draw from their own streams")
        }
    }

    /// The stop token ends one row (included in its ids) while the others run on.
    func testStopTokenEndsItsRowOnly() throws {
        usePeakyModel()
        var o = GenerationOptions(maxNewTokens: 15, temperature: 0.9, topK: 100)
        let free = try single(o)
        o.stopToken = free[1][3]   // row 1 stops at its 4th token (unless that id came earlier)
        let want = try single(o)
        let got = try batched(o)
        XCTAssertEqual(got, want)
        XCTAssertEqual(got[1].last, o.stopToken)
        XCTAssertLessThanOrEqual(got[1].count, 4)
        XCTAssertEqual(got[0].count, 15, "row 0 does not stop with row 1")
    }

    func testLoRAMatchesOneRowGenerator() throws {
        usePeakyModel()
        for o in [GenerationOptions(maxNewTokens: 10), GenerationOptions(maxNewTokens: 16, temperature: 1.0, topK: 200, topP: 0.9)] {
            let want = try single(o, lora: true)
            XCTAssertEqual(try batched(o, lora: true), want)
            XCTAssertNotEqual(want, try single(o), "the adapter changes the generations")
        }
    }

    /// Every row's logits at every step, bit for bit, and its ids, for `prompts` (indices into self.prompts).
    func trace(_ rows: [Int], seeds rowSeeds: [UInt64]? = nil, _ o: GenerationOptions, lora: Bool = false,
               tokenBudget: Int? = nil) throws -> (ids: [[Int32]], logits: [[Float]]) {
        let gen = GPT2BatchGenerator(config: config, parameters: store, maxBatch: 8, tokenBudget: tokenBudget)
        if lora { _ = try PEFTAdapter.load(Fixtures.dir("gpt2-tiny-lora").appendingPathComponent("adapter-init"), into: gen) }
        var logits = [[Float]](repeating: [], count: rows.count)
        gen.logitsProbe = { r, l in logits[r] += Array(l) }
        let ids = try gen.generate(prompts: rows.map { prompts[$0] }, options: o, seeds: rowSeeds ?? rows.map { seeds[$0] })
        return (ids, logits)
    }

    /// A row's logits and ids do not depend, in any bit, on which other rows share its batch, their order, or a token
    /// budget (5 or 3) that cuts the 9- and 13-token prompts into prefill pieces beside other rows' pieces and runs
    /// decode steps in chunks — with and without LoRA, greedy and sampled. (With BLAS products this fails: see the
    /// generator's header.)
    func testRowsAreBitIdenticalWhateverTheirBatch() throws {
        for lora in [false, true] {
            for o in [GenerationOptions(maxNewTokens: 10), GenerationOptions(maxNewTokens: 10, temperature: 1.0, topK: 10)] {
                let what = "lora \(lora) temperature \(o.temperature)"
                let all = try trace([0, 1, 2, 3], o, lora: lora)
                for budget in [5, 3] {
                    let cut = try trace([0, 1, 2, 3], o, lora: lora, tokenBudget: budget)
                    XCTAssertEqual(cut.ids, all.ids, "\(what) budget \(budget) ids")
                    XCTAssertTrue(cut.logits == all.logits, "\(what) budget \(budget): logits differ")
                }
                let alone = try trace([2], o, lora: lora)
                XCTAssertEqual(alone.ids[0], all.ids[2], what)
                XCTAssertTrue(alone.logits[0] == all.logits[2], "\(what) alone: logits differ")
                let mixed = try trace([3, 2, 2], seeds: [seeds[3], seeds[2], 999], o, lora: lora)
                XCTAssertEqual(mixed.ids[0], all.ids[3], what)
                XCTAssertEqual(mixed.ids[1], all.ids[2], what)
                XCTAssertTrue(mixed.logits[1] == all.logits[2], "\(what) reordered: logits differ")
                XCTAssertEqual(all.logits[2].count, 10 * config.vocabSize)
                if o.temperature > 0 { XCTAssertNotEqual(mixed.ids[2], all.ids[2], "another seed, another completion") }
            }
        }
    }

    /// The row-deterministic kernels: every row of a many-row call equals, bit for bit, the same row computed alone
    /// (every blocking path: 4-row blocks and leftover rows, 16-, 8- and 1-column blocks, odd columns, K not a multiple
    /// of 8, leading dimensions wider than the data), and the values match a Double reference to float rounding.
    func testDeterministicProductsAreRowExact() {
        var rng = TestRNG(3)
        for (n, K, m) in [(7, 37, 45), (9, 300, 70), (4, 8, 1), (1, 16, 130)] {
            let ldx = K + 3, ldw = m + 5, ldy = m + 2
            let x = rng.floats(n * ldx), w = rng.floats(K * ldw), wt = rng.floats(m * (K + 1)), b = rng.floats(m)
            for accumulate: Int32 in [0, 1] {
                let y0 = rng.floats(n * ldy)
                var all = y0
                gr_det_gemm_nn(&all, ldy, x, ldx, w, ldw, b, n, K, m, accumulate)
                var allT = y0
                gr_det_gemm_nt(&allT, ldy, x, ldx, wt, K + 1, n, K, m, 0.7, accumulate)
                for r in 0..<n {
                    var one = Array(y0[(r * ldy)..<((r + 1) * ldy)]), oneT = one
                    Array(x[(r * ldx)..<((r + 1) * ldx)]).withUnsafeBufferPointer { xr in
                        gr_det_gemm_nn(&one, ldy, xr.baseAddress, ldx, w, ldw, b, 1, K, m, accumulate)
                        gr_det_gemm_nt(&oneT, ldy, xr.baseAddress, ldx, wt, K + 1, 1, K, m, 0.7, accumulate)
                    }
                    XCTAssertEqual(one, Array(all[(r * ldy)..<((r + 1) * ldy)]), "nn \(n)x\(K)x\(m) row \(r)")
                    XCTAssertEqual(oneT, Array(allT[(r * ldy)..<((r + 1) * ldy)]), "nt \(n)x\(K)x\(m) row \(r)")
                    for j in 0..<m {
                        var s = 0.0, t = 0.0
                        for k in 0..<K {
                            s += Double(x[r * ldx + k]) * Double(w[k * ldw + j])
                            t += Double(x[r * ldx + k]) * Double(wt[j * (K + 1) + k])
                        }
                        let base = Double(y0[r * ldy + j])
                        let wantNN = (accumulate == 1 ? base : Double(b[j])) + s, wantNT = (accumulate == 1 ? base : 0) + 0.7 * t
                        XCTAssertEqual(Double(all[r * ldy + j]), wantNN, accuracy: 2e-5 * Double(K).squareRoot() + 1e-6)
                        XCTAssertEqual(Double(allT[r * ldy + j]), wantNT, accuracy: 2e-5 * Double(K).squareRoot() + 1e-6)
                    }
                    XCTAssertEqual(all[r * ldy + m], y0[r * ldy + m], "nn leaves columns past m alone")
                }
            }
        }
    }

    /// ExactSampler picks what Sampler.pick picks and leaves the RNG where it does: random and quantised logits (many
    /// exact ties, ±0), every temperature/top-k/top-p combination, several vocabulary sizes including the real one, and
    /// the 64-bit-key path it falls back to.
    func testExactSamplerEqualsSampler() {
        var rng = TestRNG(8)
        for (V, trials, wide) in [(7, 200, false), (300, 200, false), (3000, 40, false), (50257, 3, false), (300, 200, true)] {
            let exact = ExactSampler(vocabulary: V)
            exact.forceWideKeys = wide
            for t in 0..<trials {
                var logits = rng.floats(V, scale: t % 3 == 0 ? 0.05 : 3)
                if t % 2 == 1 { logits = logits.map { ($0 * 4).rounded() / 4 } }    // ties, and ±0
                if t % 5 == 0 { logits[t % V] = -0.0; logits[(t + 1) % V] = 0.0 }
                let options = GenerationOptions(temperature: [0, 0.3, 1, 1.7][t % 4], topK: [0, 1, 5, V / 2, V][t % 5],
                                                topP: [1, 0.9, 0.3, 0.999][(t / 5) % 4])
                let seed = rng.next()
                var a = SplitMix64(seed: seed), b = SplitMix64(seed: seed)
                let want = logits.withUnsafeBufferPointer { Sampler.pick($0, options: options, rng: &a) }
                let got = logits.withUnsafeBufferPointer { exact.pick($0, options: options, rng: &b) }
                XCTAssertEqual(got, want, "V \(V) trial \(t) \(options)")
                XCTAssertEqual(a.next(), b.next(), "V \(V) trial \(t): the RNG advanced differently")
            }
        }
    }

    func testBadInputThrows() throws {
        let gen = GPT2BatchGenerator(config: config, parameters: store, maxBatch: 2)
        let o = GenerationOptions(maxNewTokens: 5)
        func expectError(_ p: [[Int32]], _ s: [UInt64], _ o: GenerationOptions, _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try gen.generate(prompts: p, options: o, seeds: s), line: line) { e in
                XCTAssertTrue(e is GenerationError, line: line)
                XCTAssertTrue("\(e)".contains(fragment), "\(e)", line: line)
            }
        }
        expectError([[1], []], [1, 2], o, "prompt 1 is empty")
        expectError([[Int32](repeating: 5, count: 36)], [1], o, "exceeds the 40 positions")
        expectError([[1, 50257]], [1], o, "outside the vocabulary")
        expectError([[1, -1]], [1], o, "outside the vocabulary")
        expectError([[1], [2]], [1], o, "one seed per row")
        expectError([[1], [2], [3]], [1, 2, 3], o, "exceed the generator's batch of 2")
        XCTAssertEqual(try gen.generate(prompts: [], options: o, seeds: []), [])
        XCTAssertEqual(try gen.generate(prompts: [[1]], options: GenerationOptions(maxNewTokens: 0), seeds: [1]), [[]])
    }
}
