// ScalingModelTests: the arithmetic of `disttrain plan` against cases computed by hand (in the comments), and the
// gradient sizes against the real parameter layouts of the BERT and DistilBERT fixtures and the MiniLM shape.
import Foundation
import Model
import TestSupport
import XCTest
@testable import Training

final class ScalingModelTests: XCTestCase {
    // Absolute tolerance for times in seconds: the hand values are exact decimals, the model adds a few doubles.
    let eps = 1e-12

    func testRecursiveDoublingBelowTenThousandBytes() {
        let link = ScalingLink(bytesPerSecond: 1e9, latency: 1e-5)
        // 8,000 B among 4 peers: ⌈log2 4⌉ = 2 rounds of (1e-5 + 8000/1e9) = 2 × 1.8e-5.
        let r = ScalingModel.allReduce(bytes: 8000, peers: 4, link: link)
        XCTAssertEqual(r.algorithm, "recursive doubling")
        XCTAssertEqual(r.seconds, 3.6e-5, accuracy: eps)
        // 5 peers: ⌈log2 5⌉ = 3 rounds.
        XCTAssertEqual(ScalingModel.allReduce(bytes: 8000, peers: 5, link: link).seconds, 5.4e-5, accuracy: eps)
        // One peer: nothing to do.
        XCTAssertEqual(ScalingModel.allReduce(bytes: 8000, peers: 1, link: link).seconds, 0)
    }

    func testRingAboveTenThousandBytes() {
        let link = ScalingLink(bytesPerSecond: 1e9, latency: 1e-5)
        // 1 MB among 4 peers: 2·3·1e-5 + 2·3/4 · 1e6/1e9 = 6e-5 + 1.5e-3.
        let r = ScalingModel.allReduce(bytes: 1_000_000, peers: 4, link: link)
        XCTAssertEqual(r.algorithm, "ring")
        XCTAssertEqual(r.seconds, 1.56e-3, accuracy: eps)
        // Two concurrent all-reduces share the link: the bandwidth term doubles, the latency term does not.
        XCTAssertEqual(ScalingModel.allReduce(bytes: 1_000_000, peers: 4, link: link, streams: 2).seconds, 3.06e-3, accuracy: eps)
        // Above p MiB OpenMPI segments the ring (1 MiB segments); the cost is the same here.
        let big = ScalingModel.allReduce(bytes: 5 << 20, peers: 4, link: link)
        XCTAssertEqual(big.algorithm, "segmented ring")
        XCTAssertEqual(big.seconds, 6e-5 + 1.5 * Double(5 << 20) / 1e9, accuracy: eps)
    }

    /// The shape's sizes against the layouts the trainer really allocates (independent code: EncoderClassifier).
    func testShapeMatchesTheParameterLayouts() throws {
        for fixture in ["bert-tiny-cls", "distilbert-tiny-cls"] {
            let config = try ModelConfig.load(url: TestPaths.fixture(fixture).appendingPathComponent("config.json"))
            let layout = EncoderClassifier.makeLayout(config: config)
            let shape = ScalingShape(config: config)
            let total = layout.entries.reduce(0) { $0 + $1.count }
            XCTAssertEqual(shape.totalParams, total, fixture)
            let prefix = config.family == .bert ? "bert.encoder.layer." : "distilbert.transformer.layer."
            for l in 0..<config.layers {
                let n = layout.entries.filter { $0.name.hasPrefix("\(prefix)\(l).") }.reduce(0) { $0 + $1.count }
                XCTAssertEqual(shape.layerParams, n, "\(fixture) layer \(l)")
            }
            let table = layout.entries.first { $0.name.hasSuffix("word_embeddings.weight") }!
            XCTAssertEqual(shape.tableRows * shape.rowLength, table.count, fixture)
        }
        // MiniLM: 4(384²+384) + 768 + (384·1536+1536) + (1536·384+384) + 768 = 1,774,464 per layer; 22,713,986 in all
        // (all-MiniLM-L6-v2's 22.7M parameters with a 2-label head and the pooler).
        let mini = ScalingShape(config: ModelBenchmark.miniLMConfig())
        XCTAssertEqual(mini.layerParams, 1_774_464)
        XCTAssertEqual(mini.totalParams, 22_713_986)
    }

    /// GPT-2 shapes against the layouts the GPT-2 models really allocate (GPT2Layout): the LM reduces its tied word
    /// table whole with the tail (no sparse rows) and counts the head's product in FLOPs; the classifier's table is
    /// row-sparse as the encoders'.
    func testGPT2ShapeMatchesTheParameterLayouts() throws {
        for (fixture, lm) in [("gpt2-tiny-lm", true), ("gpt2-tiny-cls", false)] {
            let config = try GPT2Config.load(url: TestPaths.fixture(fixture).appendingPathComponent("config.json"))
            let layout = GPT2Layout.make(config: config, classifier: !lm)
            let shape = ScalingShape(gpt2: config, languageModel: lm)
            XCTAssertEqual(shape.totalParams, layout.entries.reduce(0) { $0 + $1.count }, fixture)
            XCTAssertEqual(shape.layers, config.layers)
            for l in 0..<config.layers {
                let n = layout.entries.filter { $0.name.contains(".h.\(l).") }.reduce(0) { $0 + $1.count }
                XCTAssertEqual(shape.layerParams, n, "\(fixture) block \(l)")
            }
            let table = layout.entries.first { $0.name.hasSuffix("wte.weight") }!
            // The classifier's row-sparse table is the whole word table; the LM reduces it with the tail instead.
            XCTAssertEqual(shape.tableRows * shape.rowLength, lm ? 0 : table.count, fixture)
            XCTAssertEqual(shape.headParams, lm ? table.count : 0)
            // FLOPs per token: the LM's head adds 6·V·H to the blocks' 6·(block params) + 12·T·H per block.
            let blocks = 6 * Double(config.layers * shape.layerParams) + Double(config.layers * 12 * 16 * config.hidden)
            XCTAssertEqual(shape.flopsPerToken(seq: 16), blocks + (lm ? 6 * Double(table.count) : 0), accuracy: 1)
        }
    }

    /// A small case worked by hand: 2 layers of 1,000 floats, 5 touched rows of 10 (50 floats), a tail of 100;
    /// 2 nodes × 2 ranks, global batch 4 of 10 tokens, 1,000 tokens/s per rank, backward half the compute, node memory
    /// 1 GB/s, link 1 MB/s with α 100 µs.
    /// `zero` false: AdamW on every rank and all-reduce across nodes (--no-shard-optimizer); `gradBytes` 2: bf16.
    func smallCase(_ overlap: ScalingOverlap, nodes: Int = 2, zero: Bool = false, gradBytes: Int = 4) -> ScalingPrediction {
        let shape = ScalingShape(layers: 2, layerParams: 1000, tableRows: 10, rowLength: 10, tailParams: 100)
        var s = ScalingSettings(tokensPerSecondPerRank: 1000, seqLen: 10, memoryBytesPerSecond: 1e9)
        s.backwardFraction = 0.5
        s.touchedRows = 5
        s.overlap = overlap
        s.zero = zero
        s.gradBytes = gradBytes
        return ScalingModel.predict(shape: shape, globalBatch: 4, nodes: nodes, ranksPerNode: 2,
                                    link: ScalingLink(bytesPerSecond: 1e6, latency: 1e-4), settings: s)
    }

    func testBlockingStepByHand() {
        let p = smallCase(.none)
        XCTAssertEqual(p.ranks, 4)
        // 1 sample × 10 tokens per rank at 1,000 tokens/s.
        XCTAssertEqual(p.computeS, 0.01, accuracy: eps)
        // Intra: 4n(3·2−1)/1e9 = 20n ns for n = 1000, 1000, 50, 100 → 2e-5 + 2e-5 + 1e-6 + 2e-6.
        XCTAssertEqual(p.intraS, 4.3e-5, accuracy: eps)
        // Inter: shares of 2n bytes (2000, 2000, 100, 200) < 10,000 → recursive doubling, 1 round of α + 2n·2/1e6:
        // 4.1e-3 + 4.1e-3 + 3e-4 + 5e-4.
        XCTAssertEqual(p.interS, 9.0e-3, accuracy: eps)
        XCTAssertEqual(p.interAlgorithm, "recursive doubling")
        // AdamW: 28 B × (2000 + 100 + 50) parameters at 1e9/2 B/s per rank.
        XCTAssertEqual(p.optimizerS, 1.204e-4, accuracy: eps)
        // Nothing overlaps: all communication is exposed.
        XCTAssertEqual(p.exposedS, 9.043e-3, accuracy: eps)
        XCTAssertEqual(p.stepS, 0.01 + 9.043e-3 + 1.204e-4, accuracy: eps)
        XCTAssertEqual(p.tokensPerS, 40 / p.stepS, accuracy: 1e-9)
    }

    func testOverlappedStepByHand() {
        let p = smallCase(.layers)
        // Forward 5 ms, then each layer's backward 2.5 ms. Layer stage 0: cores at 7.5 ms + 0.02 ms intra = 7.52 ms,
        // link busy until 7.52 + 4.1 = 11.62 ms. Stage 1: cores 7.52 + 2.5 + 0.02 = 10.04 ms, link starts at 11.62,
        // ends 15.72. Rows: cores 10.041, link 15.72 → 16.02. Tail: cores 10.043, link 16.02 → 16.52 ms.
        // Exposed: 16.52 − 10 = 6.52 ms; hidden 0.043 + 9.0 − 6.52 = 2.523 ms.
        XCTAssertEqual(p.exposedS, 6.52e-3, accuracy: eps)
        XCTAssertEqual(p.hiddenS, 2.523e-3, accuracy: eps)
        XCTAssertEqual(p.stepS, 16.52e-3 + 1.204e-4, accuracy: eps)
        XCTAssertLessThan(p.stepS, smallCase(.none).stepS)
    }

    /// ZeRO-1 across nodes, every transfer blocking: the dense stages are reduce-scattered (all-to-all) during
    /// backward and their updated parameters all-gathered after AdamW; the rows are all-reduced.
    func testZeROAcrossNodesByHand() {
        let p = smallCase(.none, zero: true)
        // Dense stages, shares of 2n bytes: (N−1)(α + m/N · L/B) = 1e-4 + 2n/1e6 for n = 1000, 1000, 100 (tail):
        // 2.1e-3 + 2.1e-3 + 3e-4, once to scatter the gradients and once to gather the parameters; the rows (100 B)
        // recursive doubling as before, 3e-4. In all 2 · 4.5e-3 + 3e-4.
        XCTAssertEqual(p.interS, 9.3e-3, accuracy: eps)
        // AdamW: 28 B × (2100 dense / 4 ranks + 50 row floats / 2 local ranks) at 1e9/2 B/s.
        XCTAssertEqual(p.optimizerS, 3.08e-5, accuracy: eps)
        XCTAssertEqual(p.exposedS, 4.3e-5 + 9.3e-3, accuracy: eps)
        XCTAssertEqual(p.stepS, 0.01 + 4.3e-5 + 9.3e-3 + 3.08e-5, accuracy: eps)
        // Overlap hides only the scatter: the gather after AdamW stays exposed.
        XCTAssertGreaterThanOrEqual(smallCase(.layers, zero: true).exposedS, 4.5e-3)
        // bf16 gradients: the scatter moves n bytes per stage (1.1e-3, 1.1e-3, 2e-4), the rows go as a bf16
        // all-to-all and all-gather of 50 B (2 · (1e-4 + 50/1e6) = 3e-4); the parameters' gather stays float32.
        XCTAssertEqual(smallCase(.none, zero: true, gradBytes: 2).interS, 2.4e-3 + 3e-4 + 4.5e-3, accuracy: eps)
    }

    /// The trainer's progress model (`.polled`) on 2 layers worked by hand: 2 nodes × 1 rank, ZeRO-1, no rows and no
    /// tail, layers of 250,000 floats (1 MB: one bucket, 500 KB to the other node), link 1 MB/s with α 0, compute 1 s
    /// (10 tokens at 10 tokens/s) of which backward half, node memory so fast that the in-place part is ~0.
    func twoLayers(_ overlap: ScalingOverlap, window: Double = 100_000) -> ScalingPrediction {
        let shape = ScalingShape(layers: 2, layerParams: 250_000, tableRows: 0, rowLength: 1, tailParams: 0)
        var s = ScalingSettings(tokensPerSecondPerRank: 10, seqLen: 10, memoryBytesPerSecond: 1e30)
        s.backwardFraction = 0.5
        s.overlap = overlap
        s.pollWindowBytes = window
        return ScalingModel.predict(shape: shape, globalBatch: 2, nodes: 2, ranksPerNode: 1,
                                    link: ScalingLink(bytesPerSecond: 1e6, latency: 0), settings: s)
    }

    func testPolledStepByHand() {
        let p = twoLayers(.polled)
        // Forward ends at 0.5 s; the last layer's backward at 0.75 s starts its reduce-scatter: 500 KB, 0.5 s of link.
        // The first layer's backward ends at 1.0 s (the next poll): in those 0.25 s the link could move 250 KB, but the
        // window lets 100 KB (0.1 s) through; 400 KB remain, plus the first layer's 500 KB: 0.9 s in finish(). Then
        // the parameter all-gather after AdamW, 2 × 0.5 s, never hidden.
        XCTAssertEqual(p.computeS, 1, accuracy: eps)
        XCTAssertEqual(p.interS, 2.0, accuracy: 1e-9)
        XCTAssertEqual(p.exposedS, 0.9 + 1.0, accuracy: 1e-9)
        XCTAssertEqual(p.stepS, 1.0 + 0.9 + 1.0, accuracy: 1e-9)
        // An ideal progress engine moves the first 0.5 s from 0.75 to 1.25 s and the second by 1.75 s; none blocks
        // both, 1.0 s. Polled lies between.
        XCTAssertEqual(twoLayers(.layers).exposedS, 0.75 + 1.0, accuracy: 1e-9)
        XCTAssertEqual(twoLayers(.none).exposedS, 1.0 + 1.0, accuracy: 1e-9)
        // A window above what 0.25 s of link carries (250 KB) is bounded by the interval instead: as `.layers`.
        XCTAssertEqual(twoLayers(.polled, window: 1e6).exposedS, 0.75 + 1.0, accuracy: 1e-9)
    }

    /// Window → ∞ is the ideal progress engine and window 0 blocking, on the hand case and on the MiniLM shape.
    func testPolledLimits() throws {
        XCTAssertEqual(twoLayers(.polled, window: .infinity).stepS, twoLayers(.layers).stepS, accuracy: 1e-12)
        XCTAssertEqual(twoLayers(.polled, window: 0).stepS, twoLayers(.none).stepS, accuracy: 1e-12)
        let mini = ScalingShape(config: ModelBenchmark.miniLMConfig())
        for (nodes, local) in [(2, 1), (4, 2), (16, 8)] {
            func step(_ o: ScalingOverlap, _ w: Double = ScalingModel.defaultPollWindowBytes, zero: Bool = true) -> ScalingPrediction {
                var s = ScalingSettings(tokensPerSecondPerRank: 2133, seqLen: 40, memoryBytesPerSecond: 60e9)
                s.overlap = o; s.pollWindowBytes = w; s.zero = zero
                return ScalingModel.predict(shape: mini, globalBatch: 32 * nodes * local, nodes: nodes, ranksPerNode: local,
                                            link: ScalingLink(bytesPerSecond: 1.25e8, latency: 3e-5), settings: s)
            }
            let polled = step(.polled), layers = step(.layers), none = step(.none)
            XCTAssertEqual(step(.polled, 0).stepS, none.stepS, accuracy: 1e-9, "\(nodes)×\(local)")
            XCTAssertEqual(step(.polled, 0).exposedS, none.exposedS, accuracy: 1e-9, "\(nodes)×\(local)")
            // The word rows' all-reduce blocks in the trainer, so with no window limit the cores wait for the
            // transfers ahead of it: at most the tail's in-place part (which an ideal engine overlaps) above `.layers`.
            let tailIntra = 4 * Double(mini.tailParams) * Double(3 * local - 1) / 60e9
            let unlimited = step(.polled, .infinity)
            XCTAssertGreaterThanOrEqual(unlimited.stepS, layers.stepS - 1e-12, "\(nodes)×\(local)")
            XCTAssertLessThanOrEqual(unlimited.stepS, layers.stepS + tailIntra + 1e-12, "\(nodes)×\(local)")
            XCTAssertGreaterThan(polled.stepS, layers.stepS, "\(nodes)×\(local)")
            XCTAssertLessThanOrEqual(polled.stepS, none.stepS, "\(nodes)×\(local)")
            XCTAssertEqual(polled.interS, none.interS, accuracy: 1e-12, "the same bytes, only their timing differs")
            // --no-shard-optimizer: the trainer's all-reduces across nodes block, so polled is none whatever the window.
            XCTAssertEqual(step(.polled, .infinity, zero: false).stepS, step(.none, zero: false).stepS, accuracy: 1e-9)
        }
        XCTAssertEqual(ScalingSettings(tokensPerSecondPerRank: 1, seqLen: 2, memoryBytesPerSecond: 1).overlap, .polled)
        XCTAssertEqual(ScalingModel.defaultPollWindowBytes, 131_072)
    }

    func testOneNodeHasOnlyTheInPlaceReduction() {
        let p = smallCase(.layers, nodes: 1)
        XCTAssertEqual(p.ranks, 2)
        XCTAssertEqual(p.computeS, 0.02, accuracy: eps)   // 2 samples per rank
        XCTAssertEqual(p.interS, 0)
        XCTAssertEqual(p.interAlgorithm, "-")
        XCTAssertEqual(p.exposedS, 4.3e-5, accuracy: eps)  // the in-place reduction runs on the cores
    }

    func testEfficiencyAndStrongScalingRows() {
        let shape = ScalingShape(layers: 2, layerParams: 1000, tableRows: 10, rowLength: 10, tailParams: 100)
        var s = ScalingSettings(tokensPerSecondPerRank: 1000, seqLen: 10, memoryBytesPerSecond: 1e9)
        s.backwardFraction = 0.5
        s.touchedRows = 5
        s.zero = false
        let link = ScalingLink(bytesPerSecond: 1e6, latency: 1e-4)
        // Weak scaling, 2 samples per rank. 1 rank: compute 0.02, AdamW 28·2150/1e9 = 6.02e-5, no communication.
        // 2 ranks on one node: compute 0.02, intra 4.3e-5, AdamW 1.204e-4 (the node's bandwidth shared by 2).
        // Efficiency = (40/step2) / (2 · 20/step1) = step1/step2.
        let weak = ScalingModel.table(shape: shape, ranks: [1, 2], ranksPerNode: 2, globalBatch: nil, batchPerRank: 2,
                                      link: link, settings: s)
        XCTAssertEqual(weak.map(\.ranks), [1, 2])
        XCTAssertEqual(weak[0].efficiency, 1, accuracy: 1e-12)
        XCTAssertEqual(weak[1].efficiency, (0.02 + 6.02e-5) / (0.02 + 4.3e-5 + 1.204e-4), accuracy: 1e-9)
        // Strong scaling with a global batch of 6: 4 ranks do not divide it and 3 ranks do not fill 2-rank nodes.
        let strong = ScalingModel.table(shape: shape, ranks: [1, 2, 3, 4, 6], ranksPerNode: 2, globalBatch: 6,
                                        batchPerRank: nil, link: link, settings: s)
        XCTAssertEqual(strong.map(\.ranks), [1, 2, 6])
        XCTAssertEqual(strong.map(\.globalBatch), [6, 6, 6])
        XCTAssertEqual(strong[2].nodes, 3)
        XCTAssertNil(ScalingModel.topology(ranks: 3, ranksPerNode: 2))
        XCTAssertEqual(ScalingModel.topology(ranks: 1, ranksPerNode: 4)?.local, 1)
    }

    func testDefaultTouchedRowsIsAQuarterOfTheTokensAtMostTheTable() {
        XCTAssertEqual(ScalingModel.defaultTouchedRows(batch: 32, seqLen: 128, tableRows: 30522), 1024)
        XCTAssertEqual(ScalingModel.defaultTouchedRows(batch: 4096, seqLen: 128, tableRows: 30522), 30522)
    }
}
