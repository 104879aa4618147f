// ScalingBenchmark: the data-parallel training step behind `disttrain bench --data-parallel` (and any `bench` under
// mpirun). It times the trainer's own step (TrainStep, with the trainer's all-reduce set-up, NodeSharedSetup): every
// rank trains its slice of each global batch of random tokens on a classifier of the given shape, with the gradient
// all-reduced as the task's `gradientSync` layout says (each stage as soon as backward finished it, row-sparse tables
// over the step's tokens, the rest at the end), clipped, and an AdamW step (ZeRO-1 on one node, as in training).
// Run once as a single process and once under `mpirun -n 2`, the two aggregate tokens/s give the scaling efficiency
// (bench/scaling.sh does both and prints medians).
//
// In the same run it times a bare MPI_Allreduce of the bytes the reducer moved per step (one call on one buffer),
// so the reducer's bus bandwidth is compared with MPI's own on this machine, not with a figure from elsewhere.
// The model is a throwaway folder (config.json of the shape, random weights, a vocabulary of made-up words) loaded as
// `train` loads one, so the step is the trainer's; texts of random words make exactly `seq` tokens each.
// Deliberately not here: printing (the executable does that), real data.
import Dist
import Foundation
import Model
import SplitMix

public struct ScalingBenchmarkResult: Sendable, Codable, JSONLineResult {
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
}

public enum ScalingBenchmark {
    public static func run(config: ModelConfig, batch: Int, seq: Int, steps: Int, warmup: Int, threads: Int,
                           comm: Communicator, precision: MatmulPrecision = .fp32, bucketBytes: Int = 4 << 20,
                           sharedMemory: Bool = true) throws -> ScalingBenchmarkResult {
        let world = comm.worldSize
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("disttrain-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        var tc = try makeFolder(folder, config: config, samples: (warmup + steps) * world * batch, seq: seq)
        tc.batchSize = batch * world; tc.microBatchSize = batch; tc.maxLength = seq; tc.threads = threads
        tc.learningRate = 1e-5; tc.weightDecay = 0.01; tc.maxGradNorm = 1; tc.seed = 42; tc.groupByLength = false
        tc.matmulPrecision = precision; tc.sharedMemoryReduction = sharedMemory
        ComputeThreads.set(threads)
        let task = try TaskFactory.make(config: tc, checkpoint: nil, microBatch: batch)
        let plan = try GlobalBatchPlan(sampleCount: task.trainCount, globalBatch: tc.batchSize, microBatch: batch,
                                       worldSize: world, rank: comm.rank, seed: tc.seed).steps(epoch: 0)
        // As the trainer does: on one node the gradients live in node-shared memory and are summed in place, and
        // AdamW is sharded over the ranks in the node's one copy of the parameters.
        let setup = try NodeSharedSetup.make(comm: comm, store: task.store, sharedMemory: sharedMemory,
                                             shardOptimizer: tc.shardOptimizer, bucketBytes: bucketBytes)
        let stepper = TrainStep(task: task, comm: comm, setup: setup, optimizer: TrainStep.makeOptimizer(task, config: tc))
        let reducer = setup.reducer, store = task.store
        let path = world == 1 ? "none" : (reducer.shared != nil ? "shared-memory" : "mpi")
        var stepTimes: [Double] = [], reduceTimes: [Double] = [], reduceBytes: [Int] = []
        for step in 0..<(warmup + steps) {
            try comm.barrier()
            let before = reducer.stats
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try stepper.run(plan[step], step: step, lr: tc.learningRate, maxGradNorm: tc.maxGradNorm,
                                dropout: DropoutContext(seed: tc.seed, step: step))
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
        if world > 1 && bytes > 0, let g = store.grads.baseAddress {
            func touch(_ r: Range<Int>, _ v: Float) { for i in stride(from: r.lowerBound, to: r.upperBound, by: 16) { g[i] = v } }
            let sync = stepper.sync
            let rows = task.touchedRows(plan[warmup + steps - 1].globalIndices)
            for rep in 0..<(steps + 1) {
                store.zeroGrads()
                try comm.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try reducer.begin(store.grads, scale: 1)
                for r in sync.stages { touch(r, Float(rep)); try reducer.reduceNow(range: r) }
                for (t, tableRows) in zip(sync.sparseTables, rows) {
                    for row in tableRows { touch((t.range.lowerBound + row * t.rowLength)..<(t.range.lowerBound + (row + 1) * t.rowLength), 1) }
                    try reducer.reduceRows(range: t.range, rowLength: t.rowLength, rows: tableRows)
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

    /// Writes a classifier folder of `config`'s shape into `folder` (config.json, seeded random weights, a vocabulary
    /// of made-up words `w5`, `w6`, ...) and a training file of `samples` texts of seq − 2 random words (seq tokens with
    /// [CLS] and [SEP]); returns the training settings pointing at them.
    static func makeFolder(_ folder: URL, config: ModelConfig, samples: Int, seq: Int) throws -> TrainConfig {
        let fm = FileManager.default
        try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        try ModelConfig.write(config.classifierJSON(), to: folder.appendingPathComponent("config.json"))
        let special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        let vocab = (0..<config.vocabSize).map { $0 < special.count ? special[$0] : "w\($0)" }
        try Data((vocab.joined(separator: "\n") + "\n").utf8).write(to: folder.appendingPathComponent("vocab.txt"))
        // The same weights in every rank's folder (one seed), as after the trainer's start-up broadcast.
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        var rng = SplitMix64(keys: 1234)
        for i in 0..<store.count {
            store.values[i] = (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * config.initializerRange * 1.7
        }
        try SafeTensorsWriter.write(store.entries.map { e in
            TensorToWrite(name: e.name, shape: e.shape, floats: UnsafeBufferPointer(rebasing: store.values[e.range]))
        }, to: folder.appendingPathComponent("model.safetensors"))
        var lines: [String] = []
        let labels = config.id2label.isEmpty ? ["0", "1"] : config.id2label
        for s in 0..<samples {
            var g = SplitMix64(keys: 99, UInt64(s))
            let words = (0..<max(seq - 2, 1)).map { _ in "w\(special.count + Int(g.next(below: UInt64(max(config.vocabSize - special.count, 1)))))" }
            let label = labels[Int(g.next(below: UInt64(labels.count)))]
            let line = try JSONSerialization.data(withJSONObject: ["text": words.joined(separator: " "), "label": label], options: [.sortedKeys])
            lines.append(String(decoding: line, as: UTF8.self))
        }
        let train = folder.appendingPathComponent("train.jsonl")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: train)
        return TrainConfig(modelDir: folder, trainFile: train, evalFile: nil, outputDir: folder.appendingPathComponent("out"))
    }
}
