// ScalingModel: predicts one optimizer step of the hierarchical data-parallel algorithm (GradientReducer's
// multi-node path) from a model shape, a global batch, a topology (nodes × ranks per node), a link (bandwidth β⁻¹,
// latency α) and a compute rate (tokens/s per rank). `disttrain plan` prints it; the assumptions are in
// docs/cluster.md ("Predicting scale").
//
// The step, as TrainStep runs it, per stage in backward order (each encoder layer, last first; then the touched rows
// of the word-embedding table; then the tail: position/type embeddings, LayerNorms, pooler, classifier):
//   1. intra-node: each of the L local ranks sums its 1/L share of the stage over the node's L buffers in
//      node-shared memory and, after the cross-node phase, copies the other L−1 shares back. Node memory traffic
//      4n(3L−1) bytes for n floats (reads L·n + writes n, then reads and writes (L−1)·n), at `memoryBytesPerS`.
//      It runs on the compute cores, so it is never hidden.
//   2. inter-node (N > 1): each local rank all-reduces its share (4n/L bytes) with its N−1 peers, in buckets of
//      `bucketBytes`; the L shares go in parallel over one link, so each sees B/L. Per bucket of m bytes, OpenMPI's
//      fixed decision for a commutative sum (coll/tuned): m < 10,000 bytes → recursive doubling,
//      ⌈log2 N⌉·(α + m·L/B); otherwise ring (segmented ring above N MiB, same cost here),
//      2(N−1)·α + 2(N−1)/N · m·L/B.
//   3. overlap. `.polled` (the default: what the trainer does): a ZeRO-1 stage's reduce-scatter is started without
//      waiting once its intra-node part is done, and MPI moves it only when the rank calls into MPI: GradientReducer
//      tests the transfers in flight at each stage boundary. OpenMPI's TCP transport then hands each connection's
//      socket what its buffers take and the link idles until the next call, so between two boundaries the link
//      moves at most min(interval, window) of link time, the window being `pollWindowBytes` per connection and
//      direction ((N−1) connections per rank, each at B/L: (N−1)·W·L/B seconds). Whatever is left, and every
//      transfer that blocks (the rows' all-reduce, `--no-shard-optimizer`'s all-reduces), runs at the link's rate
//      while the rank waits in MPI, exposed. `.layers` (an ideal progress engine, e.g. a progress thread on a spare
//      core): every stage's transfer proceeds while backward continues, one stage at a time on the link; only
//      what is still on the link when backward ends is exposed. `.none`: every transfer blocks, all of it exposed.
//      `.polled` lies between: window → ∞ is `.layers` (with the rows' all-reduce blocking), window 0 is `.none`.
// Compute: the rank's tokens / `tokensPerSecondPerRank`; backward is `backwardFraction` of it (2/3: twice the
// forward's FLOPs), split evenly over the identical encoder layers. AdamW: 28 bytes per parameter (read p, g, m, v;
// write p, m, v) at `memoryBytesPerS / L` per rank (the node's bandwidth is shared); with `zero` (ZeRO-1, the
// trainer's default) each rank updates 1/P of the dense parameters and 1/L of the touched rows, else all of them.
// ZeRO-1 across nodes (N > 1, `zero`): a dense stage's cross-node phase is a reduce-scatter (an all-to-all of the
// share's buckets, (N−1)(α + m/N·L/B) per bucket of m bytes) during backward, and after AdamW an all-gather of the
// updated parameters (the same cost, float32), which nothing hides; the touched rows are all-reduced as in 2.
// `gradBytes` 2 (`--grad-comm-dtype bf16`) halves the gradient bytes on the link (the rows then go as a bf16
// reduce-scatter and all-gather), never the parameters'.
// Deliberately not here: measuring anything (the command measures the compute figure with `bench`), flags.
import Model

/// The gradient sizes of a model, as the reducer sees them (Float elements).
public struct ScalingShape: Sendable, Equatable {
    /// Encoder layers (stages reduced during backward).
    public var layers: Int
    /// Floats per encoder layer: 4(H²+H) attention + 2H LayerNorm + (HF+F) + (FH+H) FFN + 2H LayerNorm.
    public var layerParams: Int
    /// Word-embedding rows (row-sparse: only the rows a step touches are reduced) and their length (H).
    public var tableRows: Int
    public var rowLength: Int
    /// Everything else, reduced in `finish()`: position and type embeddings, embedding LayerNorm, pooler, classifier
    /// (a GPT-2 LM: also the whole tied word table, which its head writes densely).
    public var tailParams: Int
    /// Parameters of a per-token product outside the layers (a GPT-2 LM's tied head: vocabulary × hidden); only
    /// FLOPs per token use it (`plan` scales the default compute rate by them).
    public var headParams: Int = 0

    public init(layers: Int, layerParams: Int, tableRows: Int, rowLength: Int, tailParams: Int, headParams: Int = 0) {
        self.layers = layers; self.layerParams = layerParams; self.tableRows = tableRows
        self.rowLength = rowLength; self.tailParams = tailParams; self.headParams = headParams
    }

    /// A GPT-2 of `config`'s shape, as GPT2LMParts / WordTableSync lay out its gradient. Per block: two LayerNorms,
    /// the fused query-key-value product (H×3H), the attention output (H×H) and the MLP (H×F, F×H), with biases.
    /// `languageModel`: the head is tied to the word table, so every row has a gradient and the table is reduced
    /// whole with the tail; a classifier (`languageModel` false) reduces the touched rows sparsely, as the encoders.
    public init(gpt2 c: GPT2Config, languageModel: Bool) {
        let h = c.hidden, f = c.intermediate
        layers = c.layers
        layerParams = 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * f + f) + (f * h + h)
        rowLength = h
        if languageModel {
            tableRows = 0
            tailParams = c.vocabSize * h + c.maxPositions * h + 2 * h
            headParams = c.vocabSize * h
        } else {
            tableRows = c.vocabSize
            tailParams = c.maxPositions * h + 2 * h + h * max(c.numLabels, 1)
        }
    }

    /// A BERT-family classifier of `config`'s shape (DistilBERT has no type embeddings and no pooler).
    public init(config c: ModelConfig) {
        let h = c.hidden, f = c.intermediate
        layers = c.layers
        layerParams = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
        tableRows = c.vocabSize
        rowLength = h
        let pooler = c.family == .bert ? h * h + h : 0
        let preClassifier = c.family == .distilbert ? h * h + h : 0
        tailParams = c.maxPositions * h + c.typeVocabSize * h + 2 * h + pooler + preClassifier + h * c.numLabels + c.numLabels
    }

    /// Every trainable parameter.
    public var totalParams: Int { layers * layerParams + tableRows * rowLength + tailParams }

    /// Training FLOPs per token: 6 × the parameters of every per-token product (layers and a tied LM head), plus
    /// attention's 12·T·H per layer.
    public func flopsPerToken(seq: Int) -> Double {
        6 * Double(layers * layerParams + headParams) + Double(layers) * 12 * Double(seq * rowLength)
    }
}

/// A network link: bytes per second each way, and the per-message latency α in seconds.
public struct ScalingLink: Sendable, Equatable {
    public var bytesPerSecond: Double
    public var latency: Double
    public init(bytesPerSecond: Double, latency: Double) { self.bytesPerSecond = bytesPerSecond; self.latency = latency }
}

public enum ScalingOverlap: String, Sendable, CaseIterable {
    /// What the trainer does: the reduce-scatters move only when polled at stage boundaries, at most a window of
    /// socket buffer per connection between two polls; the rest waits in `finish()`. Blocking transfers block.
    case polled
    /// An ideal progress engine (a progress thread on a spare core): each stage's transfer proceeds while backward
    /// continues.
    case layers
    /// Every transfer blocks the rank.
    case none
}

/// Everything but the topology.
public struct ScalingSettings: Sendable {
    /// Forward + backward tokens per second of one rank (from `bench`, or a given figure).
    public var tokensPerSecondPerRank: Double
    public var seqLen: Int
    /// Node memory bandwidth for the in-place reduction and AdamW (bytes/s, shared by the node's ranks).
    public var memoryBytesPerSecond: Double
    /// GradientReducer's bucket (4 MiB).
    public var bucketBytes: Int = 4 << 20
    /// Backward's share of the compute time.
    public var backwardFraction: Double = 2.0 / 3.0
    public var overlap: ScalingOverlap = .polled
    /// `.polled`: bytes one connection carries in one direction between two polls (`ScalingModel.defaultPollWindowBytes`).
    public var pollWindowBytes: Double = ScalingModel.defaultPollWindowBytes
    /// Word-embedding rows a step touches (nil: `defaultTouchedRows` for the step's global batch).
    public var touchedRows: Int?
    /// ZeRO-1 (the trainer's default): AdamW sharded, and across nodes the reduce-scatter + all-gather scheme.
    public var zero: Bool = true
    /// Bytes per gradient element on the inter-node link: 4 (float32) or 2 (`--grad-comm-dtype bf16`).
    public var gradBytes: Int = 4

    public init(tokensPerSecondPerRank: Double, seqLen: Int, memoryBytesPerSecond: Double) {
        self.tokensPerSecondPerRank = tokensPerSecondPerRank; self.seqLen = seqLen
        self.memoryBytesPerSecond = memoryBytesPerSecond
    }
}

/// One predicted step.
public struct ScalingPrediction: Sendable, Equatable {
    public var nodes: Int
    public var ranksPerNode: Int
    public var ranks: Int { nodes * ranksPerNode }
    public var globalBatch: Int
    /// Forward + backward of this rank's samples.
    public var computeS: Double
    /// AdamW on every rank.
    public var optimizerS: Double
    /// In-place reduction within the node, all stages.
    public var intraS: Double
    /// Cross-node all-reduce of this rank's shares, all stages (0 on one node).
    public var interS: Double
    /// OpenMPI's algorithm for the largest inter-node bucket ("-" on one node).
    public var interAlgorithm: String
    /// Communication (intra + inter) not hidden behind backward.
    public var exposedS: Double
    public var hiddenS: Double { intraS + interS - exposedS }
    public var stepS: Double
    /// Tokens per second of the whole job.
    public var tokensPerS: Double
    /// throughput / (ranks × the 1-rank throughput), filled in by `table`.
    public var efficiency: Double
}

public enum ScalingModel {
    /// The default poll window: 128 KiB, Linux's default TCP receive buffer (net.ipv4.tcp_rmem's middle value,
    /// 131072), which the receiving rank empties only when it calls into MPI. OpenMPI 4.1 sets no socket buffer
    /// (btl_tcp_sndbuf and btl_tcp_rcvbuf are 0), and the sender's buffer (tcp_wmem's 16 KiB, raised by the kernel to
    /// 2 × the initial congestion window at connect: 69,120 bytes here, and growing with it) does not bind.
    /// docs/cluster.md ("Overlap across nodes") says how overlap.c's figures check it.
    public static let defaultPollWindowBytes: Double = 131_072

    /// Default touched rows: a quarter of the batch's tokens are distinct (SMS spam, batch 32: ~1,000 rows, the
    /// 1–2 MB the reducer's header reports), at most the table.
    public static func defaultTouchedRows(batch: Int, seqLen: Int, tableRows: Int) -> Int {
        min(tableRows, max(1, batch * seqLen / 4))
    }

    /// α–β time of one MPI all-reduce of `bytes` among `peers` ranks whose link is shared by `streams` concurrent
    /// all-reduces, and the algorithm OpenMPI's tuned component picks for it.
    public static func allReduce(bytes: Int, peers p: Int, link: ScalingLink, streams: Int = 1) -> (seconds: Double, algorithm: String) {
        guard p > 1, bytes > 0 else { return (0, "-") }
        let perByte = Double(streams) / link.bytesPerSecond
        if bytes < 10_000 {
            let rounds = Double(Int.bitWidth - (p - 1).leadingZeroBitCount)  // ⌈log2 p⌉
            return (rounds * (link.latency + Double(bytes) * perByte), "recursive doubling")
        }
        let t = 2 * Double(p - 1) * link.latency + 2 * Double(p - 1) / Double(p) * Double(bytes) * perByte
        return (t, bytes > p << 20 ? "segmented ring" : "ring")
    }

    /// Pairwise all-to-all (the reduce-scatter) or ring all-gather of `bytes` among `peers`: (p−1)(α + m/p·L/B).
    public static func exchange(bytes: Int, peers p: Int, link: ScalingLink, streams: Int = 1) -> Double {
        guard p > 1, bytes > 0 else { return 0 }
        return Double(p - 1) * (link.latency + Double(bytes) / Double(p) * Double(streams) / link.bytesPerSecond)
    }

    /// Cross-node time of one stage of `n` floats: each local rank's share, in buckets of float32 (the reducer's
    /// bucket is counted in floats). `scatter`: the reduce-scatter only (ZeRO-1 across nodes), else all-reduce;
    /// `elementBytes` 2: bf16 (reduce-scatter and all-gather of halves).
    static func interStage(floats n: Int, nodes: Int, local L: Int, link: ScalingLink, bucketBytes: Int,
                           scatter: Bool = false, elementBytes: Int = 4) -> (seconds: Double, algorithm: String, largest: Int) {
        var share = (4 * n + L - 1) / L
        var t = 0.0, alg = "-", largest = 0
        while share > 0 {
            let m = min(share, bucketBytes), onLink = m / 4 * elementBytes
            if scatter {
                t += exchange(bytes: onLink, peers: nodes, link: link, streams: L)
                if m > largest { largest = m; alg = "all-to-all" }
            } else if elementBytes != 4 {
                t += 2 * exchange(bytes: onLink, peers: nodes, link: link, streams: L)
                if m > largest { largest = m; alg = "all-to-all+allgather" }
            } else {
                let r = allReduce(bytes: m, peers: nodes, link: link, streams: L)
                t += r.seconds
                if m > largest { largest = m; alg = r.algorithm }
            }
            share -= m
        }
        return (t, alg, largest)
    }

    /// Intra-node time of one stage of `n` floats (see the file header); 0 for a single rank.
    static func intraStage(floats n: Int, local L: Int, ranks: Int, memoryBytesPerSecond: Double) -> Double {
        guard ranks > 1, n > 0 else { return 0 }
        return 4 * Double(n) * Double(3 * L - 1) / memoryBytesPerSecond
    }

    /// One step at `nodes` × `ranksPerNode` with `globalBatch` sequences (efficiency left 0).
    public static func predict(shape: ScalingShape, globalBatch: Int, nodes: Int, ranksPerNode L: Int,
                               link: ScalingLink, settings s: ScalingSettings) -> ScalingPrediction {
        let P = nodes * L
        let tokensPerRank = Double(globalBatch) / Double(P) * Double(s.seqLen)
        let compute = tokensPerRank / s.tokensPerSecondPerRank
        let rows = s.touchedRows.map { min($0, shape.tableRows) }
            ?? defaultTouchedRows(batch: globalBatch, seqLen: s.seqLen, tableRows: shape.tableRows)
        let dense = Double(shape.layers * shape.layerParams + shape.tailParams)
        let zeroAcross = s.zero && nodes > 1
        let optimizer = 28 * (s.zero ? dense / Double(P) + Double(rows * shape.rowLength) / Double(L)
                                     : dense + Double(rows * shape.rowLength))
            / (s.memoryBytesPerSecond / Double(L))
        // Stages in the order the reducer sees them: layers (during backward), then rows and tail (after it).
        var stages = [Int](repeating: shape.layerParams, count: shape.layers)
        stages.append(rows * shape.rowLength)
        stages.append(shape.tailParams)
        let backward = compute * s.backwardFraction
        let perLayer = shape.layers > 0 ? backward / Double(shape.layers) : 0
        var intraTotal = 0.0, interTotal = 0.0, gatherTotal = 0.0, algorithm = "-", largest = 0
        var cpu = compute - backward   // forward done; backward starts
        var link0 = 0.0                // .layers, .none: when the link is free
        var pending = 0.0              // .polled: link seconds of the started transfers not yet moved
        var lastPoll = cpu             // .polled: the previous stage boundary
        // .polled: link seconds one poll interval can carry: a window on each of the rank's N−1 connections, at B/L.
        let window = Double(max(nodes - 1, 0)) * s.pollWindowBytes * Double(L) / link.bytesPerSecond
        for (k, n) in stages.enumerated() {
            if k < shape.layers { cpu += perLayer } else if k == shape.layers { cpu += backward - perLayer * Double(shape.layers) }
            let intra = intraStage(floats: n, local: L, ranks: P, memoryBytesPerSecond: s.memoryBytesPerSecond)
            let isRows = k == shape.layers
            let inter = nodes > 1 ? interStage(floats: n, nodes: nodes, local: L, link: link, bucketBytes: s.bucketBytes,
                                               scatter: zeroAcross && !isRows, elementBytes: s.gradBytes)
                                  : (seconds: 0.0, algorithm: "-", largest: 0)
            if zeroAcross && !isRows {
                // The all-gather of the updated parameters (float32) after AdamW: never hidden.
                let gather = interStage(floats: n, nodes: nodes, local: L, link: link, bucketBytes: s.bucketBytes, scatter: true)
                gatherTotal += gather.seconds
                interTotal += gather.seconds
            }
            if inter.largest > largest { largest = inter.largest; algorithm = inter.algorithm }
            intraTotal += intra
            interTotal += inter.seconds
            cpu += intra
            switch s.overlap {
            case .layers:
                let start = max(cpu, link0)
                link0 = start + inter.seconds
            case .none:
                cpu += inter.seconds
                link0 = cpu
            case .polled:
                // Since the previous boundary the link moved at most one window of what was in flight.
                pending -= min(pending, cpu - lastPoll, window)
                if zeroAcross && !isRows {
                    pending += inter.seconds   // started, tested at the next boundaries, completed in finish()
                } else if inter.seconds > 0 {
                    cpu += pending + inter.seconds   // blocking: MPI moves everything while the rank waits
                    pending = 0
                }
                lastPoll = cpu
            }
        }
        let end = s.overlap == .polled ? cpu + pending : max(cpu, link0)
        let exposed = end - compute + gatherTotal
        let step = end + optimizer + gatherTotal
        return ScalingPrediction(nodes: nodes, ranksPerNode: L, globalBatch: globalBatch, computeS: compute,
                                 optimizerS: optimizer, intraS: intraTotal, interS: interTotal,
                                 interAlgorithm: algorithm, exposedS: exposed, stepS: step,
                                 tokensPerS: Double(globalBatch * s.seqLen) / step, efficiency: 0)
    }

    /// The topology for `ranks` ranks with at most `ranksPerNode` per node: one partial node below that.
    public static func topology(ranks: Int, ranksPerNode: Int) -> (nodes: Int, local: Int)? {
        guard ranks > 0, ranksPerNode > 0 else { return nil }
        if ranks <= ranksPerNode { return (1, ranks) }
        guard ranks % ranksPerNode == 0 else { return nil }
        return (ranks / ranksPerNode, ranksPerNode)
    }

    /// Predictions for each rank count, with efficiency against 1 rank: with `batchPerRank` the global batch grows
    /// with the ranks (weak scaling), else `globalBatch` is fixed (strong scaling; counts that do not divide it are
    /// left out).
    public static func table(shape: ScalingShape, ranks: [Int], ranksPerNode: Int, globalBatch: Int?, batchPerRank: Int?,
                             link: ScalingLink, settings: ScalingSettings) -> [ScalingPrediction] {
        func batch(_ p: Int) -> Int? {
            if let b = batchPerRank { return b * p }
            guard let g = globalBatch, g % p == 0 else { return nil }
            return g
        }
        guard let b1 = batch(1) else { return [] }
        let base = predict(shape: shape, globalBatch: b1, nodes: 1, ranksPerNode: 1, link: link, settings: settings)
        return ranks.compactMap { p in
            guard let g = batch(p), let t = topology(ranks: p, ranksPerNode: ranksPerNode) else { return nil }
            var r = predict(shape: shape, globalBatch: g, nodes: t.nodes, ranksPerNode: t.local, link: link, settings: settings)
            r.efficiency = r.tokensPerS / (Double(p) * base.tokensPerS)
            return r
        }
    }
}
