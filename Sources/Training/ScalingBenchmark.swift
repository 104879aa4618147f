// ScalingBenchmark: the data-parallel training step behind `disttrain bench --data-parallel` (and any `bench` under
// mpirun): every rank runs forward, cross-entropy and backward on its own batch of random tokens at a model shape,
// all-reduces the gradient exactly as the Trainer does (each layer as soon as backward finished it, the word
// embeddings row-sparse over the step's tokens, the rest at the end), clips and takes an AdamW step. Run once as a
// single process and once under `mpirun -n 2`, the two aggregate tokens/s give the scaling efficiency
// (bench/scaling.sh does both and prints medians).
//
// In the same run it times a bare MPI_Allreduce of the bytes the reducer moved per step (one call on one buffer),
// so the reducer's bus bandwidth is compared with MPI's own on this machine, not with a figure from elsewhere.
// Deliberately not here: data loading and tokenization (random tokens), printing (the executable does that).
import Dist
import Foundation
import Model

public struct ScalingBenchmarkResult: Sendable, Codable {
    public var world_size: Int
    public var batch_per_rank: Int
    public var seq: Int
    public var threads: Int
    public var steps: Int
    /// Median step time (the slowest rank's, per step), and the aggregate throughput over all ranks.
    public var step_s_median: Double
    public var tokens_per_s: Double
    public var tokens_per_s_per_rank: Double
    /// Median seconds per step blocked in the gradient all-reduce (including waiting for the slowest rank).
    public var allreduce_s_median: Double
    /// Bytes the reducer moved per step (dense part plus the gathered word-embedding rows).
    public var allreduce_bytes: Int
    /// Bytes of the whole trainable gradient (what a dense all-reduce would move).
    public var gradient_bytes: Int
    /// NCCL-convention bus bandwidth: bytes × 2(w−1)/w per second, of the reducer's sequence of a step replayed
    /// after a barrier (no waiting for a slower rank), and of one bare MPI_Allreduce of the same byte count
    /// (medians of the timed repeats).
    public var allreduce_alone_s_median: Double
    public var allreduce_bus_gbps: Double
    public var bare_allreduce_bus_gbps: Double
    public var bare_allreduce_s_median: Double
    /// allreduce bus bandwidth / bare bus bandwidth.
    public var allreduce_vs_bare: Double
    public var peak_rss_mb: Double
    public var precision: String
    /// "shared-memory" (the trainer's in-place path on one node), "mpi" (messages), or "none" (one process).
    public var allreduce_path: String
    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }
}

public enum ScalingBenchmark {
    public static func run(config: ModelConfig, batch: Int, seq: Int, steps: Int, warmup: Int, threads: Int,
                           comm: Communicator, precision: MatmulPrecision = .fp32, bucketBytes: Int = 4 << 20,
                           sharedMemory: Bool = true) throws -> ScalingBenchmarkResult {
        ComputeThreads.set(threads)
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        var rng = SplitMix64(keys: 1234)   // the same weights on every rank, as after the start-up broadcast
        for e in store.entries {
            let v = store.value(e.name)
            if e.name.hasSuffix(".bias") { v.update(repeating: 0) }
            else if e.name.contains("LayerNorm") { v.update(repeating: 1) }
            else { for i in 0..<v.count { v[i] = (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * config.initializerRange * 1.7 } }
        }
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: batch, maxSeq: seq)
        model.matmulPrecision = precision
        var reducer = GradientReducer(communicator: comm, bucketBytes: bucketBytes)
        // As the trainer does: on one node the gradients live in node-shared memory and are summed in place.
        if sharedMemory, comm.worldSize > 1,
           let shm = try comm.makeNodeSharedMemory(segmentBytes: GradientReducer.sharedBytes(elements: store.count, worldSize: comm.worldSize)) {
            store.adoptGradientBuffer(UnsafeMutableBufferPointer(start: shm.base.assumingMemoryBound(to: Float.self), count: store.count), owner: shm)
            reducer = GradientReducer(communicator: comm, bucketBytes: bucketBytes, shared: shm)
        }
        let path = comm.worldSize == 1 ? "none" : (reducer.shared != nil ? "shared-memory" : "mpi")
        let world = comm.worldSize, L = config.layers, NL = config.numLabels
        let prefix = store.entries.contains { $0.name.hasPrefix("bert.") } ? "bert" : "distilbert"
        let layerPrefix = prefix == "bert" ? "bert.encoder.layer." : "distilbert.transformer.layer."
        let stages = GradientSyncLayout.layerStages(store: store, prefixes: (0..<L).reversed().map { "\(layerPrefix)\($0)." })
        let table = GradientSyncLayout.table(store, prefix + ".embeddings.word_embeddings.weight")
        let optimizer = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01), rowSparse: table)
        var dirtyRows: [[Int]]?
        var dLogits = [Float](repeating: 0, count: batch * NL)
        var stepTimes: [Double] = [], reduceTimes: [Double] = [], reduceBytes: [Int] = []
        var lastTokens: [[Int32]] = []
        for step in 0..<(warmup + steps) {
            // Every rank draws every rank's tokens (as every rank holds every sample), keeping its own slice.
            var all: [[Int32]] = []
            var labels: [Int32] = []
            for r in 0..<world {
                var g = SplitMix64(keys: 99, UInt64(step), UInt64(r))
                all.append((0..<(batch * seq)).map { _ in Int32(g.next(below: UInt64(config.vocabSize))) })
                if r == comm.rank { labels = (0..<batch).map { _ in Int32(g.next(below: UInt64(NL))) } }
            }
            lastTokens = all
            let tb = TokenBatch(batchSize: batch, seqLen: seq, inputIds: all[comm.rank],
                                attentionMask: [Int32](repeating: 1, count: batch * seq),
                                sampleIndices: (0..<batch).map { (step * world + comm.rank) * batch + $0 })
            try comm.barrier()
            let before = reducer.stats
            let t0 = DispatchTime.now().uptimeNanoseconds
            store.zeroGrads(rowSparse: table, dirtyRows: dirtyRows)  // the trainer's step, piece for piece
            try reducer.begin(store.grads, scale: 1)
            var hookError: Error?
            model.onLayerBackward = GradientSyncLayout.stageHook({ k in
                guard hookError == nil, !stages.isEmpty else { return }
                do { try reducer.reduceNow(range: stages[k]) } catch { hookError = error }
            }, layers: L)
            let logits = model.forward(tb, dropout: DropoutContext(seed: 42, step: step))
            _ = dLogits.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: labels, batch: batch, classes: NL,
                                  scale: 1 / Float(batch * world), dLogits: $0)
            }
            dLogits.withUnsafeBufferPointer { model.backward(dLogits: $0) }
            model.onLayerBackward = nil
            if let hookError { throw hookError }
            let rows = table.map { GradientSyncLayout.sortedRows(all, extra: 0, tableRows: $0.range.count / $0.rowLength) }
            for (t, r) in zip(table, rows) { try reducer.reduceRows(range: t.range, rowLength: t.rowLength, rows: r) }
            dirtyRows = rows
            try reducer.finish()
            let norm = reducer.sumOfSquares.squareRoot()
            optimizer.step(lr: 1e-5, gradScale: GradientClipping.coefficient(norm: norm, maxNorm: 1), touchedRows: table.isEmpty ? nil : rows)
            var dt = [Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9]
            try comm.allReduce(&dt, op: .max)
            if step >= warmup {
                stepTimes.append(dt[0])
                reduceTimes.append(reducer.stats.seconds - before.seconds)
                reduceBytes.append(reducer.stats.bytes - before.bytes)
            }
        }
        func median(_ x: [Double]) -> Double { x.isEmpty ? 0 : x.sorted()[x.count / 2] }
        let stepMedian = median(stepTimes)
        let bytes = reduceBytes.isEmpty ? 0 : reduceBytes.sorted()[reduceBytes.count / 2]
        let factor = world > 1 ? 2 * Double(world - 1) / Double(world) : 0
        let reduceMedian = median(reduceTimes)
        // One bare MPI_Allreduce of the same byte count, on a buffer that has just been written (as a gradient is).
        var bare: [Double] = []
        if world > 1 && bytes > 0 {
            var buf = [Float](repeating: 0, count: bytes / 4)
            for rep in 0..<(steps + 1) {
                for i in stride(from: 0, to: buf.count, by: 16) { buf[i] = Float(rep) }
                try comm.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try buf.withUnsafeMutableBufferPointer { try comm.allReduce($0, op: .sum) }
                var dt = [Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9]
                try comm.allReduce(&dt, op: .max)
                if rep > 0 { bare.append(dt[0]) }
            }
        }
        // The reducer alone, the same way: after a barrier, the gradient written range by range as backward writes
        // it (one store per cache line, as for the bare buffer) and reduced stage by stage, rows, then the rest.
        // The in-step figure above also holds the wait for the slower rank; this one is the transfer itself.
        var alone: [Double] = []
        if world > 1 && bytes > 0 {
            let g = store.grads.baseAddress!
            func touch(_ r: Range<Int>, _ v: Float) { for i in stride(from: r.lowerBound, to: r.upperBound, by: 16) { g[i] = v } }
            let rows = table.first.map { t in
                GradientSyncLayout.sortedRows(lastTokens, extra: 0, tableRows: t.range.count / t.rowLength)
            } ?? []
            for rep in 0..<(steps + 1) {
                store.zeroGrads()
                try comm.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try reducer.begin(store.grads, scale: 1)
                for r in stages { touch(r, Float(rep)); try reducer.reduceNow(range: r) }
                if let t = table.first {
                    for row in rows { touch((t.range.lowerBound + row * t.rowLength)..<(t.range.lowerBound + (row + 1) * t.rowLength), 1) }
                    try reducer.reduceRows(range: t.range, rowLength: t.rowLength, rows: rows)
                }
                try reducer.finish()
                var dt = [Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9]
                try comm.allReduce(&dt, op: .max)
                if rep > 0 { alone.append(dt[0]) }
            }
        }
        let bareMedian = median(bare)
        let aloneMedian = median(alone)
        let busReducer = aloneMedian > 0 ? Double(bytes) * factor / aloneMedian / 1e9 : 0
        let busBare = bareMedian > 0 ? Double(bytes) * factor / bareMedian / 1e9 : 0
        let tokens = Double(batch * seq)
        let aggregate: Double = stepMedian > 0 ? tokens * Double(world) / stepMedian : 0
        let perRank: Double = stepMedian > 0 ? tokens / stepMedian : 0
        let vsBare: Double = busBare > 0 ? busReducer / busBare : 0
        let rss = ModelBenchmark.peakRSSMegabytes()
        let name = precision == .bf16 ? "bf16" : "fp32"
        return ScalingBenchmarkResult(
            world_size: world, batch_per_rank: batch, seq: seq, threads: threads, steps: steps,
            step_s_median: stepMedian, tokens_per_s: aggregate, tokens_per_s_per_rank: perRank,
            allreduce_s_median: reduceMedian, allreduce_bytes: bytes, gradient_bytes: store.count * 4,
            allreduce_alone_s_median: aloneMedian, allreduce_bus_gbps: busReducer, bare_allreduce_bus_gbps: busBare,
            bare_allreduce_s_median: bareMedian, allreduce_vs_bare: vsBare, peak_rss_mb: rss, precision: name,
            allreduce_path: path)
    }
}
