// ThreadPoolTests: the compute pool (CKernels ck_pool, Model ThreadPool.swift) gives the single-threaded bits:
// every pooled kernel against its plain kernel, and whole training steps (forward, backward, AdamW) of a BERT
// classifier and a GPT-2 LM at 1 vs 2 and 3 threads, compared bit for bit.
import CKernels
import Foundation
import SplitMix
import XCTest
@testable import Model

final class ThreadPoolTests: XCTestCase {
    override func tearDown() { ComputeThreads.set(1) }

    private func random(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in Float(rng.nextNormal()) * scale }
    }

    private func assertBits(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let bad = zip(a, b).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
        XCTAssertNil(bad, "\(what): first difference at \(bad?.offset ?? -1): \(bad?.element.0 ?? 0) vs \(bad?.element.1 ?? 0)",
                     file: file, line: line)
    }

    func testPoolRunsEveryItemOnceAndFallsBackWhenNested() {
        guard let pool = ck_pool_create(3) else { return XCTFail("no pool") }
        defer { ck_pool_destroy(pool) }
        XCTAssertEqual(ck_pool_threads(pool), 3)
        final class Box { var hits = [Int32](repeating: 0, count: 100_003); var threads = Set<Int32>() }
        let box = Box()
        for _ in 0..<50 {   // many jobs in a row: the publication protocol under reuse
            box.hits.withUnsafeMutableBufferPointer { hb in
                var ctx = hb.baseAddress!
                ck_pool_for(pool, hb.count, 100, 1, { c, lo, hi, _ in
                    let h = c!.assumingMemoryBound(to: UnsafeMutablePointer<Int32>.self).pointee
                    for i in lo..<hi { h[i] += 1 }
                }, &ctx)
            }
        }
        XCTAssertTrue(box.hits.allSatisfy { $0 == 50 }, "every item exactly once per job")
        // A small job runs serially on the caller (thread 0).
        var seen: Int32 = -1
        ck_pool_for(pool, 10, 100, 1, { c, _, _, th in c!.assumingMemoryBound(to: Int32.self).pointee = th }, &seen)
        XCTAssertEqual(seen, 0)
    }

    func testParallelForThreadIndicesAreDistinctAndInRange() {
        ComputeThreads.set(2)
        XCTAssertEqual(ComputeThreads.poolSize, 2)
        let lock = NSLock()
        var covered = [Bool](repeating: false, count: 10_000)
        var badIndex = false
        covered.withUnsafeMutableBufferPointer { cb in
            ComputeThreads.parallelFor(cb.count, grain: 10) { r, th in
                if th < 0 || th >= 2 { lock.lock(); badIndex = true; lock.unlock() }
                for i in r { cb[i] = true }
            }
        }
        XCTAssertFalse(badIndex)
        XCTAssertTrue(covered.allSatisfy { $0 })
        ComputeThreads.set(1)
        XCTAssertNil(ComputeThreads.pool)
    }

    /// Each pooled kernel against the plain one, on sizes that split (and odd sizes that leave tails).
    func testPooledKernelsMatchPlainKernelsBitForBit() {
        guard let pool = ck_pool_create(3) else { return XCTFail("no pool") }
        defer { ck_pool_destroy(pool) }
        for (rows, C) in [(257, 384), (64, 1000), (300, 129)] {
            let n = rows * C
            let x = random(n, seed: 1), dy = random(n, seed: 2), w = random(C, seed: 3), b = random(C, seed: 4)
            for act: Int32 in [0, 1, 2] {
                var y1 = [Float](repeating: 0, count: n), y2 = y1
                ck_act_fwd(act, x, &y1, n); ck_p_act_fwd(pool, act, x, &y2, n)
                assertBits(y1, y2, "act_fwd \(act)")
                var d1 = dy, d2 = dy
                ck_act_bwd_inplace(act, x, &d1, n); ck_p_act_bwd_inplace(pool, act, x, &d2, n)
                assertBits(d1, d2, "act_bwd \(act)")
                var f1 = x, f2 = x, g1 = y1, g2 = y1
                ck_act_fwd_grad(act, &f1, &g1, n); ck_p_act_fwd_grad(pool, act, &f2, &g2, n)
                assertBits(f1, f2, "act_fwd_grad f \(act)"); assertBits(g1, g2, "act_fwd_grad g \(act)")
            }
            var a1 = x, a2 = x
            ck_add(&a1, dy, n); ck_p_add(pool, &a2, dy, n); assertBits(a1, a2, "add")
            ck_mul(&a1, dy, n); ck_p_mul(pool, &a2, dy, n); assertBits(a1, a2, "mul")
            ck_scale(&a1, n, 0.37); ck_p_scale(pool, &a2, n, 0.37); assertBits(a1, a2, "scale")
            var db1 = b, db2 = b
            ck_bias_grad(dy, &db1, rows, C); ck_p_bias_grad(pool, dy, &db2, rows, C); assertBits(db1, db2, "bias_grad")
            var r1 = [Float](repeating: 0, count: n), r2 = r1
            for r in 0..<rows { for c in 0..<C { r1[r * C + c] = b[c] } }
            ck_p_fill_rows(pool, &r2, b, rows, C); assertBits(r1, r2, "fill_rows")
            // LayerNorm forward and backward (dx by rows, dw/db by columns)
            var y1 = [Float](repeating: 0, count: n), y2 = y1
            var m1 = [Float](repeating: 0, count: rows), m2 = m1, s1 = m1, s2 = m1
            ck_layernorm_fwd(x, &y1, &m1, &s1, w, b, rows, C, 1e-5)
            ck_p_layernorm_fwd(pool, x, &y2, &m2, &s2, w, b, rows, C, 1e-5)
            assertBits(y1, y2, "layernorm_fwd y"); assertBits(m1, m2, "mean"); assertBits(s1, s2, "rstd")
            var dx1 = [Float](repeating: 0, count: n), dx2 = dx1, dw1 = w, dw2 = w, dbb1 = b, dbb2 = b
            ck_layernorm_bwd(&dx1, dy, x, m1, s1, w, &dw1, &dbb1, rows, C)
            ck_p_layernorm_bwd(pool, &dx2, dy, x, m1, s1, w, &dw2, &dbb2, rows, C)
            assertBits(dx1, dx2, "layernorm_bwd dx"); assertBits(dw1, dw2, "layernorm_bwd dw"); assertBits(dbb1, dbb2, "layernorm_bwd db")
            // AdamW
            var p1 = x, p2 = x, mo1 = random(n, seed: 5, scale: 0.01), mo2 = mo1
            var v1 = random(n, seed: 6).map { $0 * $0 * 1e-4 }, v2 = v1
            ck_adamw(&p1, dy, &mo1, &v1, n, 0.5, 0.999, 0.9, 0.999, 1e-3, 0.03, 1e-8)
            ck_p_adamw(pool, &p2, dy, &mo2, &v2, n, 0.5, 0.999, 0.9, 0.999, 1e-3, 0.03, 1e-8)
            assertBits(p1, p2, "adamw p"); assertBits(mo1, mo2, "adamw m"); assertBits(v1, v2, "adamw v")
            // Softmax-cross-entropy rows
            let targets = (0..<rows).map { Int32($0 % 7 == 3 ? -1 : ($0 * 31) % C) }
            var l1 = x, l2 = x
            var lse1 = [Float](repeating: 0, count: rows), lse2 = lse1, nll1 = lse1, nll2 = lse1, mx1 = lse1, mx2 = lse1
            g2_xent_fwd_bwd(&l1, rows, C, targets, 0.01, 1, &lse1, &nll1, &mx1)
            g2_p_xent_fwd_bwd(pool, &l2, rows, C, targets, 0.01, 1, &lse2, &nll2, &mx2)
            assertBits(l1, l2, "xent grad"); assertBits(lse1, lse2, "lse"); assertBits(nll1, nll2, "nll"); assertBits(mx1, mx2, "max")
            // Embedding gather and scatter (repeated ids: additions in token order)
            let vocab = 50, period = 16
            let ids = (0..<rows).map { Int32(($0 * 7) % vocab) }, types = (0..<rows).map { Int32($0 % 2) }
            let table = random(vocab * C, seed: 7), pos = random(period * C, seed: 8), tt = random(2 * C, seed: 9)
            var e1 = [Float](repeating: 0, count: n), e2 = e1
            for i in 0..<rows {
                for c in 0..<C { e1[i * C + c] = table[Int(ids[i]) * C + c] + pos[(i % period) * C + c] }
                for c in 0..<C { e1[i * C + c] += tt[Int(types[i]) * C + c] }
            }
            ck_p_embed_rows(pool, &e2, table, ids, pos, period, tt, types, rows, C)
            assertBits(e1, e2, "embed_rows")
            var t1 = table, t2 = table
            for i in 0..<rows { for c in 0..<C { t1[Int(ids[i]) * C + c] += dy[i * C + c] } }
            ck_p_scatter_add_rows(pool, &t2, dy, ids, 0, rows, C)
            assertBits(t1, t2, "scatter_add_rows")
        }
    }

    // ---- whole steps: 1 thread vs more threads, bit for bit

    private func bertConfig() -> ModelConfig {
        let json: [String: Any] = [
            "model_type": "bert", "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 512, "max_position_embeddings": 128,
            "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": 0,
            "id2label": ["0": "A", "1": "B"],
        ]
        return try! ModelConfig(json: json, path: "<test bert>")
    }

    /// Three training steps (forward, loss, backward, AdamW) of a BERT classifier with dropout and padding;
    /// returns the parameters.
    private func bertSteps(threads: Int, recompute: Bool) -> [Float] {
        ComputeThreads.set(threads)
        let config = bertConfig()
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        var rng = SplitMix64(seed: 11)
        for e in store.entries {
            let v = store.value(e.name)
            if e.name.hasSuffix(".bias") { v.update(repeating: 0) }
            else if e.name.contains("LayerNorm") { v.update(repeating: 1) }
            else { for i in 0..<v.count { v[i] = Float(rng.nextNormal()) * 0.02 } }
        }
        let B = 6, T = 96
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: B, maxSeq: T, recomputeAttention: recompute)
        let opt = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01))
        var dLogits = [Float](repeating: 0, count: B * 2)
        for step in 0..<3 {
            let ids = (0..<(B * T)).map { _ in Int32(rng.next() % 1000) }
            let mask = (0..<(B * T)).map { i in Int32(i % T < T - 7 * (i / T) ? 1 : 0) }
            let tb = TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask,
                                tokenTypeIds: (0..<(B * T)).map { Int32(($0 / 40) % 2) }, sampleIndices: (0..<B).map { step * B + $0 })
            store.zeroGrads()
            let logits = model.forward(tb, dropout: DropoutContext(seed: 5, step: step))
            _ = dLogits.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: (0..<B).map { Int32($0 % 2) }, batch: B, classes: 2, scale: 1 / Float(B), dLogits: $0)
            }
            dLogits.withUnsafeBufferPointer { model.backward(dLogits: $0) }
            opt.step(lr: 1e-3, gradScale: 0.9)
        }
        return Array(store.values)
    }

    func testBertTrainingStepsAreBitIdenticalAcrossThreadCounts() {
        for recompute in [true, false] {
            let one = bertSteps(threads: 1, recompute: recompute)
            let two = bertSteps(threads: 2, recompute: recompute)
            assertBits(one, two, "BERT weights after 3 steps, 1 vs 2 threads (recompute \(recompute))")
            let three = bertSteps(threads: 3, recompute: recompute)
            assertBits(one, three, "BERT weights after 3 steps, 1 vs 3 threads (recompute \(recompute))")
        }
    }

    private func gpt2Steps(threads: Int, recompute: Bool = true) -> [Float] {
        ComputeThreads.set(threads)
        let json: [String: Any] = [
            "model_type": "gpt2", "vocab_size": 700, "n_embd": 128, "n_layer": 2, "n_head": 4, "n_inner": NSNull(),
            "n_positions": 128, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1,
            "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02,
        ]
        let config = try! GPT2Config(json: json, path: "<test gpt2>")
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        GPT2Benchmark.initialise(store, config: config, seed: 3)
        let B = 5, T = 80
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: B, maxSeq: T, logitBudget: 200 * 700,
                               recomputeAttention: recompute)
        let opt = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01))
        var rng = SplitMix64(seed: 17)
        for step in 0..<3 {
            let ids = (0..<(B * T)).map { _ in Int32(rng.next() % 700) }
            let mask = (0..<(B * T)).map { i in Int32(i % T < T - 9 * (i / T) ? 1 : 0) }
            let labels = zip(ids, mask).map { $1 != 0 ? $0 : -100 }
            let tb = TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask, sampleIndices: (0..<B).map { step * B + $0 })
            store.zeroGrads()
            model.forward(tb, labels: labels, gradientScale: 1 / Float(B * T), dropout: DropoutContext(seed: 8, step: step))
            model.backward()
            opt.step(lr: 1e-3)
        }
        return Array(store.values)
    }

    func testGPT2TrainingStepsAreBitIdenticalAcrossThreadCounts() {
        let one = gpt2Steps(threads: 1)
        assertBits(one, gpt2Steps(threads: 2), "GPT-2 weights after 3 steps, 1 vs 2 threads")
        assertBits(one, gpt2Steps(threads: 3), "GPT-2 weights after 3 steps, 1 vs 3 threads")
        // Recomputing the probabilities in backward gives the bits of keeping them.
        assertBits(one, gpt2Steps(threads: 1, recompute: false), "GPT-2 weights, recomputed vs kept attention probabilities")
        assertBits(one, gpt2Steps(threads: 2, recompute: false), "GPT-2 weights, kept probabilities at 2 threads")
    }
}
