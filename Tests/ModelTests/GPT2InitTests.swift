// GPT2InitTests: `train --init-from-config`'s initialisation (Sources/Model/WeightInit.swift) against the statistics of
// transformers' own `_init_weights` (Fixtures/init-stats/init_stats.json, written by scripts/goldens/init_stats.py:
// GPT2LMHeadModel 4 layers × 256 wide with the real 50257-token vocabulary, GPT2ForSequenceClassification, and
// BertForSequenceClassification, each built by transformers 5.23 from its config over seeds 0, 1, 2), and its
// determinism. Our generator is not torch's, so the bytes differ by design; the distributions must not.
// Tolerances: the sample std of n i.i.d. normals has relative standard error 1/sqrt(2n) (0.28 % for a 256×256 c_proj,
// 2.6 % for the 3×64 classifier head); a tensor passes when its std is within max(2 %, 6/sqrt(2n)) of transformers'
// (mean over its seeds) and its mean within 6·std/sqrt(n) of 0 — a wrong scale (e.g. an unscaled c_proj, 0.02 vs
// 0.00707) is off by tens of per cent. Constants (biases, LayerNorms) must be exactly transformers' value.
import Foundation
import SplitMix
import XCTest
@testable import Model

final class GPT2InitTests: XCTestCase {
    struct Golden {
        let config: [String: Any]
        /// Per tensor: count, std and mean averaged over the seeds, and the constant when every seed had one.
        let tensors: [String: (count: Int, std: Double, mean: Double, constant: Double?)]
        let runs: [[String: Any]]
    }

    static func golden(_ model: String) throws -> Golden {
        let url = try Fixtures.dir("init-stats").appendingPathComponent("init_stats.json")
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let m = try XCTUnwrap((root["models"] as? [String: Any])?[model] as? [String: Any], "no model \(model) in the golden")
        let runs = try XCTUnwrap(m["runs"] as? [[String: Any]])
        var acc: [String: (count: Int, std: Double, mean: Double, constant: Double?)] = [:]
        for run in runs {
            for (name, any) in try XCTUnwrap(run["tensors"] as? [String: [String: Any]]) {
                let count = (any["count"] as! NSNumber).intValue
                let std = (any["std"] as! NSNumber).doubleValue / Double(runs.count)
                let mean = (any["mean"] as! NSNumber).doubleValue / Double(runs.count)
                let constant = (any["constant"] as? NSNumber)?.doubleValue
                if let a = acc[name] {
                    acc[name] = (count, a.std + std, a.mean + mean, a.constant == constant ? constant : nil)
                } else {
                    acc[name] = (count, std, mean, constant)
                }
            }
        }
        return Golden(config: try XCTUnwrap(m["config"] as? [String: Any]), tensors: acc, runs: runs)
    }

    /// Every way `store` differs from the golden's distributions (empty: it matches).
    static func mismatches(_ store: ParameterStore, _ g: Golden) -> [String] {
        var out: [String] = []
        let ours = Set(store.entries.map(\.name)), theirs = Set(g.tensors.keys)
        if ours != theirs {
            out.append("tensor names differ: only ours \(ours.subtracting(theirs).sorted()), only transformers' \(theirs.subtracting(ours).sorted())")
        }
        for e in store.entries {
            guard let t = g.tensors[e.name] else { continue }
            let v = store.value(e.name)
            guard v.count == t.count else { out.append("\(e.name): \(v.count) values, transformers \(t.count)"); continue }
            if let c = t.constant {
                if let bad = v.firstIndex(where: { Double($0) != c }) {
                    out.append("\(e.name): value \(v[bad]) at \(bad), transformers has every value exactly \(c)")
                }
                continue
            }
            var sum = 0.0, sq = 0.0
            for x in v { sum += Double(x) }
            let mean = sum / Double(v.count)
            for x in v { sq += (Double(x) - mean) * (Double(x) - mean) }
            let std = (sq / Double(v.count)).squareRoot()
            let n = Double(v.count)
            let tol = max(0.02, 6 / (2 * n).squareRoot())
            if abs(std - t.std) > tol * t.std {
                out.append("\(e.name): std \(std), transformers \(t.std) (tolerance \(String(format: "%.1f", 100 * tol)) %)")
            }
            if abs(mean) > 6 * t.std / n.squareRoot() {
                out.append("\(e.name): mean \(mean), expected ~0 (transformers \(t.mean); tolerance \(6 * t.std / n.squareRoot()))")
            }
        }
        return out
    }

    func testGPT2LMMatchesTransformersInit() throws {
        let g = try Self.golden("gpt2-lm")
        let config = try GPT2Config(json: g.config, path: "init_stats.json:gpt2-lm")
        XCTAssertEqual(config.layers, 4); XCTAssertEqual(config.hidden, 256); XCTAssertEqual(config.vocabSize, 50257)
        for run in g.runs { XCTAssertEqual(run["lm_head_tied"] as? Bool, true, "transformers ties lm_head to wte") }
        for seed: UInt64 in [0, 1] {
            let store = GPT2Layout.initializedStore(config: config, classifier: false, seed: seed)
            let bad = Self.mismatches(store, g)
            XCTAssert(bad.isEmpty, "seed \(seed):\n" + bad.joined(separator: "\n"))
        }
    }

    func testGPT2ClassifierMatchesTransformersInit() throws {
        let g = try Self.golden("gpt2-cls")
        let config = try GPT2Config(json: g.config, path: "init_stats.json:gpt2-cls")
        XCTAssertEqual(config.numLabels, 3)
        let store = GPT2Layout.initializedStore(config: config, classifier: true, seed: 7)
        let bad = Self.mismatches(store, g)
        XCTAssert(bad.isEmpty, bad.joined(separator: "\n"))
    }

    func testBERTClassifierMatchesTransformersInit() throws {
        let g = try Self.golden("bert-cls")
        let config = try ModelConfig(json: g.config, path: "init_stats.json:bert-cls")
        for run in g.runs { XCTAssertEqual((run["pad_row_max_abs"] as? NSNumber)?.doubleValue, 0, "transformers zeroes the pad row") }
        let store = EncoderClassifier.initializedStore(config: config, seed: 3)
        let bad = Self.mismatches(store, g)
        XCTAssert(bad.isEmpty, bad.joined(separator: "\n"))
        let words = store.value("bert.embeddings.word_embeddings.weight"), C = config.hidden
        XCTAssertEqual(config.padTokenId, 0)
        XCTAssert(words[0..<C].allSatisfy { $0 == 0 }, "the pad_token_id row must be zero, as nn.Embedding(padding_idx) leaves it")
        XCTAssert(words[C..<(2 * C)].contains { $0 != 0 }, "other rows are random")
    }

    /// The comparison can fail: the residual projections drawn at the unscaled range (the mistake the GPT-2 paper's
    /// 1/sqrt(2·n_layer) fixes) and a LayerNorm weight off by one value are both reported.
    func testComparisonCatchesAWrongInit() throws {
        let g = try Self.golden("gpt2-cls")
        let config = try GPT2Config(json: g.config, path: "init_stats.json:gpt2-cls")
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: true))
        WeightInit.fill(store, seed: 1) { e in
            e.name.hasSuffix("c_proj.weight") ? .normal(std: config.initializerRange) : GPT2Layout.initRule(e, config: config)
        }
        store.value("transformer.ln_f.weight")[5] = 0.5
        let bad = Self.mismatches(store, g)
        XCTAssert(bad.contains { $0.hasPrefix("transformer.h.0.attn.c_proj.weight: std") }, bad.joined(separator: "\n"))
        XCTAssert(bad.contains { $0.hasPrefix("transformer.h.1.mlp.c_proj.weight: std") }, bad.joined(separator: "\n"))
        XCTAssert(bad.contains { $0.hasPrefix("transformer.ln_f.weight: value 0.5 at 5") }, bad.joined(separator: "\n"))
        XCTAssertFalse(bad.contains { $0.hasPrefix("transformer.h.0.attn.c_attn.weight") }, "c_attn is right")
    }

    /// Same seed → the same bytes; another seed → other values; the bytes depend on (seed, tensor name) only, so a
    /// classifier's body equals the LM's for the same seed.
    func testDeterministicBySeed() throws {
        let g = try Self.golden("gpt2-cls")
        let config = try GPT2Config(json: g.config, path: "init_stats.json:gpt2-cls")
        let a = GPT2Layout.initializedStore(config: config, classifier: true, seed: 42)
        let b = GPT2Layout.initializedStore(config: config, classifier: true, seed: 42)
        let c = GPT2Layout.initializedStore(config: config, classifier: true, seed: 43)
        let lm = GPT2Layout.initializedStore(config: config, classifier: false, seed: 42)
        XCTAssertEqual(Array(a.values), Array(b.values), "same seed, same bytes")
        let wte = "transformer.wte.weight"
        XCTAssertNotEqual(Array(a.value(wte)), Array(c.value(wte)), "another seed, other values")
        for e in lm.entries { XCTAssertEqual(Array(lm.value(e.name)), Array(a.value(e.name)), "\(e.name): LM and classifier body differ") }
        // Pinned: the first values of wte for seed 42 (guards the stream definition: a change would silently change
        // every from-scratch run's start).
        let stream = SplitMix64(keys: 42, WeightInit.fnv1a(wte), 0)
        var rng = stream
        var first = [Float](repeating: 0, count: 4)
        first.withUnsafeMutableBufferPointer { WeightInit.fillNormal($0, std: config.initializerRange, rng: &rng) }
        XCTAssertEqual(Array(a.value(wte)[0..<4]), first)
    }
}
