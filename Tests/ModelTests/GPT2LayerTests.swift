// GPT2LayerTests.swift: the GPT-2 layers against references: causal attention forward vs a naive Double loop and its
// backward vs central finite differences of that Double reference; the fused softmax-cross-entropy (logsumexp, NLL,
// in-place gradient, ignored rows) vs Double softmax; the KV-cache step vs the training forward; saving the
// save_pretrained layout and reloading it.
import Foundation
import XCTest
import CKernels
@testable import Model
import SplitMix

final class GPT2LayerTests: XCTestCase {
    /// Double reference of causal attention with key mask: returns ctx [B*T*C].
    static func attentionRef(_ qkv: [Double], mask: [Float], B: Int, T: Int, C: Int, NH: Int) -> [Double] {
        let HS = C / NH, ld = 3 * C, scale = 1 / Double(HS).squareRoot()
        var out = [Double](repeating: 0, count: B * T * C)
        for b in 0..<B { for h in 0..<NH { for i in 0..<T {
            var s = [Double](repeating: -.infinity, count: T)
            for j in 0...i where mask[b * T + j] != 0 {
                var d = 0.0
                for c in 0..<HS { d += qkv[(b * T + i) * ld + h * HS + c] * qkv[(b * T + j) * ld + C + h * HS + c] }
                s[j] = d * scale
            }
            let m = s.max()!
            let e = s.map { $0 == -.infinity ? 0 : exp($0 - m) }
            let z = e.reduce(0, +)
            for c in 0..<HS {
                var acc = 0.0
                for j in 0..<T { acc += e[j] / z * qkv[(b * T + j) * ld + 2 * C + h * HS + c] }
                out[(b * T + i) * C + h * HS + c] = acc
            }
        } } }
        return out
    }

    func testCausalAttentionForwardAndBackward() {
        let B = 2, T = 6, C = 8, NH = 2
        var rng = TestRNG(11)
        let qkv = rng.floats(B * T * 3 * C)
        let mask: [Float] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]   // row 1 right-padded after 4 tokens
        let R = rng.floats(B * T * C)                              // loss = Σ ctx ⊙ R
        var ctx = [Float](repeating: 0, count: B * T * C), probs = [Float](repeating: 0, count: B * NH * T * T)
        var scratch = [Float](repeating: 0, count: T * T), scratch2 = [Float](repeating: 0, count: T * T)
        var dqkv = [Float](repeating: 0, count: B * T * 3 * C)
        qkv.withUnsafeBufferPointer { q in mask.withUnsafeBufferPointer { m in
            CausalAttention.forward(ctx: &ctx, probs: &probs, qkv: q.baseAddress!, keyMask: m.baseAddress!, B: B, T: T, C: C,
                                    NH: NH, dropout: nil, scratch: &scratch)
            R.withUnsafeBufferPointer { r in
                CausalAttention.backward(dqkv: &dqkv, dctx: r.baseAddress!, probs: probs, qkv: q.baseAddress!, B: B, T: T,
                                         C: C, NH: NH, dropout: nil, scratchP: &scratch, scratchDP: &scratch2)
            }
        } }
        let q64 = qkv.map(Double.init)
        let ref = Self.attentionRef(q64, mask: mask, B: B, T: T, C: C, NH: NH)
        assertClose(ctx, ref.map(Float.init), atol: 1e-6, "causal attention forward vs Double reference")
        assertClose(ctx, CausalAttention.forwardNaive(qkv: qkv, keyMask: mask, B: B, T: T, C: C, NH: NH), atol: 1e-6, "forwardNaive")
        // no weight on the future: probs above the diagonal and at padded keys are exactly 0
        for b in 0..<B { for h in 0..<NH { for i in 0..<T { for j in 0..<T where j > i || mask[b * T + j] == 0 {
            XCTAssertEqual(probs[((b * NH + h) * T + i) * T + j], 0, "probs[\(b),\(h),\(i),\(j)]")
        } } } }
        // central differences of the Double reference (h = 1e-5: truncation ~1e-10, rounding ~1e-11)
        func loss(_ x: [Double]) -> Double {
            zip(Self.attentionRef(x, mask: mask, B: B, T: T, C: C, NH: NH), R).reduce(0) { $0 + $1.0 * Double($1.1) }
        }
        var fd = [Float](repeating: 0, count: q64.count)
        for i in 0..<q64.count {
            var p = q64, m = q64
            p[i] += 1e-5; m[i] -= 1e-5
            fd[i] = Float((loss(p) - loss(m)) / 2e-5)
        }
        assertClose(dqkv, fd, atol: 2e-5, rtol: 1e-4, "causal attention backward vs finite differences")
    }

    func testFusedCrossEntropyMatchesDoubleSoftmax() {
        let rows = 5, V = 1003   // V not a multiple of 8: exercises the tail
        var rng = TestRNG(5)
        let x = rng.floats(rows * V, scale: 3)
        let targets: [Int32] = [0, 1002, -1, 17, 500]
        let scale: Float = 0.25
        var g = x
        var lse = [Float](repeating: 0, count: rows), nll = lse, mx = lse
        g2_xent_fwd_bwd(&g, rows, V, targets, scale, 1, &lse, &nll, &mx)
        var ev = x, lse2 = lse, nll2 = lse
        g2_xent_fwd_bwd(&ev, rows, V, targets, scale, 0, &lse2, &nll2, nil)
        XCTAssertEqual(ev, x, "without grad the logits must be left alone")
        XCTAssertEqual(lse, lse2); XCTAssertEqual(nll, nll2)
        var refG = [Float](repeating: 0, count: rows * V), refLse = [Float](), refNll = [Float](), refMax = [Float]()
        for r in 0..<rows {
            let row = x[(r * V)..<((r + 1) * V)].map(Double.init)
            let m = row.max()!
            let l = m + log(row.reduce(0) { $0 + exp($1 - m) })
            refLse.append(Float(l)); refMax.append(Float(m))
            let t = Int(targets[r])
            refNll.append(t >= 0 ? Float(l - row[t]) : 0)
            if t >= 0 { for j in 0..<V { refG[r * V + j] = Float(Double(scale) * (exp(row[j] - l) - (j == t ? 1 : 0))) } }
        }
        assertClose(lse, refLse, atol: 2e-6, rtol: 1e-6, "fused CE logsumexp")
        assertClose(mx, refMax, atol: 0, "fused CE max")
        assertClose(nll, refNll, atol: 2e-6, rtol: 1e-6, "fused CE nll")
        assertClose(g, refG, atol: 1e-8, rtol: 1e-5, "fused CE gradient (ignored row all zero)")
    }

    /// The KV-cache step (prompt in one call, then one token per call) gives the training forward's logits.
    func testKVCacheStepMatchesFullForward() throws {
        let (config, store, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: false, classifier: false)
        let ids: [Int32] = [464, 2068, 7586, 21831, 35390, 19850, 11, 13]
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: 1, maxSeq: ids.count)
        model.forward(TokenBatch(batchSize: 1, seqLen: ids.count, inputIds: ids, attentionMask: [Int32](repeating: 1, count: ids.count), sampleIndices: [0]),
                      labels: nil, gradientScale: nil, dropout: nil)
        let gen = GPT2Generator(config: config, parameters: store)
        let V = config.vocabSize
        _ = gen.cachedStep(Array(ids.prefix(4)), pos0: 0)
        for t in 4..<ids.count {
            let got = Array(UnsafeBufferPointer(start: gen.cachedStep([ids[t]], pos0: t), count: V))
            assertClose(got, model.logits(rows: t..<(t + 1)), atol: 2e-6, "KV-cache logits at position \(t)")
        }
    }

    /// Saving writes transformer.* keys without lm_head.weight, a config.json, and reloads to the same values.
    func testSaveWritesSavePretrainedLayoutAndReloads() throws {
        let (config, store, _, _) = try GPT2Fixture.load("gpt2-tiny-lm", hub: true, classifier: false)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gpt2-save-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try GPT2Layout.save(store, config: config, classifier: false, to: dir)
        let file = try SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors"))
        XCTAssertFalse(file.contains("lm_head.weight"))
        XCTAssertTrue(file.names.allSatisfy { $0.hasPrefix("transformer.") }, "\(file.names)")
        XCTAssertEqual(Set(file.names), Set(store.entries.map(\.name)))
        let c2 = try GPT2Config.load(url: dir.appendingPathComponent("config.json"))
        XCTAssertEqual(c2.raw["architectures"] as? [String], ["GPT2LMHeadModel"])
        let s2 = ParameterStore(layout: GPT2Layout.make(config: c2, classifier: false))
        _ = try GPT2Layout.load(into: s2, from: file, config: c2)
        XCTAssertEqual(Array(s2.values), Array(store.values))
    }

    /// Sampler semantics on logits [3, 2, 1, 0] (probabilities .644 .237 .087 .032 at temperature 1):
    /// top-p 0.7 keeps {0, 1} (transformers removes tokens whose ascending cumulative mass is <= 1 - p), top-k 2 keeps
    /// {0, 1}, top-k 1 is greedy, and unfiltered sampling follows the probabilities (0.644 ± 0.035 over 2000 draws: 5σ).
    func testSamplerFilters() {
        let logits: [Float] = [3, 2, 1, 0]
        func draws(_ o: GenerationOptions) -> [Int] {
            var rng = SplitMix64(seed: o.seed), counts = [0, 0, 0, 0]
            logits.withUnsafeBufferPointer { l in for _ in 0..<2000 { counts[Int(Sampler.pick(l, options: o, rng: &rng))] += 1 } }
            return counts
        }
        let p = draws(GenerationOptions(temperature: 1, topP: 0.7, seed: 1))
        XCTAssertEqual(p[2] + p[3], 0, "top-p 0.7 must drop ids 2 and 3: \(p)")
        XCTAssertGreaterThan(p[1], 0)
        let k = draws(GenerationOptions(temperature: 1, topK: 2, seed: 2))
        XCTAssertEqual(k[2] + k[3], 0, "top-k 2: \(k)")
        XCTAssertEqual(draws(GenerationOptions(temperature: 1, topK: 1, seed: 3)), [2000, 0, 0, 0])
        let all = draws(GenerationOptions(temperature: 1, seed: 4))
        XCTAssertTrue(all.allSatisfy { $0 > 0 }, "\(all)")
        XCTAssertEqual(Double(all[0]) / 2000, 0.6439, accuracy: 0.035)
        var rng = TestRNG(9)
        let z = (0..<5000).map { _ in rng.normal() }
        for k in [1, 7, 50, 4999] { XCTAssertEqual(Sampler.kthLargest(z, k), z.sorted(by: >)[k - 1], "kthLargest k=\(k)") }
    }

    /// The whole GPT-2 LM backward (embeddings, blocks, tied head, fused CE) with every dropout site active (p 0.2)
    /// against a central directional difference of the loss under the same masks. float32 loss (~40) rounds at ~4e-6,
    /// so with h = 1e-2 the difference quotient is good to ~1e-3; the directional derivative is O(1).
    func testLMBackwardWithDropoutMatchesDirectionalDifference() throws {
        let config = try GPT2Config(json: ["model_type": "gpt2", "vocab_size": 50, "n_embd": 8, "n_layer": 2, "n_head": 2,
                                           "n_positions": 8, "resid_pdrop": 0.2, "embd_pdrop": 0.2, "attn_pdrop": 0.2,
                                           "initializer_range": 0.3], path: "tiny")
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        GPT2Benchmark.initialise(store, config: config, seed: 3)
        var rng = TestRNG(21)
        for e in store.entries where e.name.contains(".ln_") {   // non-trivial LayerNorm affine parameters
            let v = store.value(e.name); for i in 0..<v.count { v[i] += Float(rng.normal() * 0.2) }
        }
        let B = 2, T = 6
        let ids = (0..<(B * T)).map { _ in Int32(rng.next() % 50) }
        var labels = ids
        labels[3] = -100; labels[T + 5] = -100
        let batch = TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
                               sampleIndices: [7, 8])
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: B, maxSeq: T)
        let ctx = DropoutContext(seed: 5, step: 2)
        for dropout in [nil, ctx] {
            store.zeroGrads()
            let base = model.forward(batch, labels: labels, gradientScale: 1, dropout: dropout)
            model.backward()
            if dropout != nil {
                XCTAssertNotEqual(base.sum, model.forward(batch, labels: labels, gradientScale: nil, dropout: nil).sum,
                                  "dropout must change the loss, or this test checks nothing about it")
            }
            let g = Array(store.grads)
            let d = (0..<store.count).map { _ in Float(rng.normal()) }
            let norm = d.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            let theta = Array(store.values)
            let h = 1e-2
            func lossAt(_ sign: Double) -> Double {
                for i in 0..<store.count { store.values[i] = theta[i] + Float(sign * h * Double(d[i]) / norm) }
                return model.forward(batch, labels: labels, gradientScale: nil, dropout: dropout).sum
            }
            let fd = (lossAt(1) - lossAt(-1)) / (2 * h)
            for i in 0..<store.count { store.values[i] = theta[i] }
            let an = zip(g, d).reduce(0) { $0 + Double($1.0) * Double($1.1) } / norm
            XCTAssertEqual(an, fd, accuracy: 2e-3 + 1e-2 * abs(fd), "directional derivative (dropout \(dropout != nil))")
        }
    }
}
