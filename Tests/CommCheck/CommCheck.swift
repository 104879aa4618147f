// CommCheck: `disttrain-comm-check`, a test-only executable (not in the shipped `disttrain` binary, not a product) that
// exercises the Dist API under a real `mpirun` and prints one JSON object on rank 0. XCTest cannot start MPI ranks
// itself, so Tests/DistTests launches this with Foundation.Process and asserts on the JSON (and on exit codes for the
// failure modes).
// Deliberately not a user tool: no training, no files written; modes that abort the job are meant for tests.
import ArgumentParser
import Dist
import Foundation

struct CommCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disttrain-comm-check",
        abstract: "Exercise collectives, sharding, consistency check, bandwidth and failure handling (for tests).")

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        /// All-reduce (f32/f64/i64 sum/max/min), broadcast, GradientReducer sync/async, core count.
        case collectives
        /// The GlobalBatchPlan of every step, gathered from all ranks.
        case plan
        /// ConsistencyCheck over --seed and --data (start ranks with different values via mpirun's `:` syntax).
        case consistency
        /// GB/s of GradientReducer vs one bare MPI_Allreduce of the same bytes.
        case bandwidth
        /// --target-rank sleeps --sleep seconds before a barrier; the others' watchdog must abort the job.
        case watchdog
        /// --target-rank kills itself with SIGKILL before a barrier; mpirun must end the job (watchdog off).
        case kill
        /// Under DebugCommunicator, --target-rank issues an all-reduce of a different size; must be refused.
        case debugMismatch = "debug-mismatch"
        /// Broadcast of --bytes from rank 0, checked on every rank (use > 2^31 to exercise INT_MAX chunking).
        case bigBroadcast = "big-broadcast"
    }

    @Option(help: "What to exercise: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var mode: Mode = .collectives
    @Option(help: "Elements of the large all-reduce test buffer (collectives mode).")
    var elements: Int = 1_100_003
    @Option(help: "GradientReducer bucket size in bytes.")
    var bucketBytes: Int = 4 << 20
    @Option(help: "Training set size (plan mode).")
    var samples: Int = 103
    @Option(help: "Global batch (plan mode).")
    var globalBatch: Int = 16
    @Option(help: "Micro batch (plan mode).")
    var microBatch: Int = 2
    @Option(help: "Epochs (plan mode).")
    var epochs: Int = 2
    @Option(help: "Eval set size (plan mode).")
    var evalSamples: Int = 37
    @Option(help: "Seed (plan and consistency modes).")
    var seed: UInt64 = 1234
    @Option(help: "Data file name used as the data fingerprint (consistency mode).")
    var data: String = "train.jsonl"
    @Option(help: "Bytes per all-reduce (bandwidth mode) or broadcast (big-broadcast mode).")
    var bytes: Int = 90_000_000
    @Option(help: "Timed repetitions; the median is reported (bandwidth mode).")
    var repeats: Int = 5
    @Option(help: "The rank that misbehaves (watchdog, kill, debug-mismatch).")
    var targetRank: Int = 1
    @Option(help: "Seconds the target rank sleeps (watchdog mode).")
    var sleep: Double = 30
    @Option(help: "Collective the other ranks wait in (watchdog mode): barrier or iallreduce.")
    var stuckIn: String = "barrier"
    @Option(help: "Watchdog timeout in seconds (0 = off).")
    var watchdogTimeout: Double = 300
    @Flag(help: "Wrap the communicator in DebugCommunicator.")
    var debug = false

    func run() throws {
        do {
            try check()
        } catch {
            // One write(2) per rank: ranks' messages must not interleave mid-line (ArgumentParser's own printing
            // is not a single write, and tests search the combined stderr of all ranks for exact phrases).
            let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0"
            let line = Array("Error (rank \(rank)): \(error)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            throw ExitCode.failure
        }
    }

    private func check() throws {
        let env = ProcessInfo.processInfo.environment
        let timeout = mode == .kill ? 0 : watchdogTimeout
        let comm = try makeCommunicator(environment: env, watchdogTimeout: timeout,
                                        debug: debug || mode == .debugMismatch)
        var out: [String: Any] = ["mode": mode.rawValue, "worldSize": comm.worldSize]
        switch mode {
        case .collectives: try collectives(comm, &out)
        case .plan: try plan(comm, &out)
        case .consistency:
            let h = try ConsistencyCheck.verify([("seed", "\(seed)"), ("data", data)], communicator: comm)
            out["hash"] = String(h, radix: 16)
        case .bandwidth: try bandwidth(comm, &out)
        case .watchdog:
            if comm.rank == targetRank { Thread.sleep(forTimeInterval: sleep) }
            if stuckIn == "iallreduce" {
                // The others start a non-blocking all-reduce and block in its wait: also covered by the watchdog.
                var v = [Float](repeating: 1, count: 16)
                try v.withUnsafeMutableBufferPointer { try comm.startAllReduce($0, op: .sum).wait() }
            } else {
                try comm.barrier()
            }
            out["survived"] = true
        case .kill:
            if comm.rank == targetRank { kill(getpid(), SIGKILL) }
            try comm.barrier()
            out["survived"] = true
        case .bigBroadcast:
            var buf = [UInt8](repeating: comm.isRoot ? 0 : 0xFF, count: bytes)
            if comm.isRoot { for i in stride(from: 0, to: bytes, by: 4093) { buf[i] = UInt8(truncatingIfNeeded: i % 251) } }
            try buf.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
            // Every 4093rd byte carries a pattern, the rest must be 0 (sampled densely around the INT_MAX boundary).
            var bad = 0
            let window = min(bytes, Int(Int32.max) - 5000)..<min(bytes, Int(Int32.max) + 5000)
            let probes = Array(stride(from: 0, to: bytes, by: 1021)) + Array(window)
            for i in probes where buf[i] != (i % 4093 == 0 ? UInt8(truncatingIfNeeded: i % 251) : 0) { bad += 1 }
            out["bytes"] = bytes
            out["badBytes"] = try comm.sum(Int64(bad))
        case .debugMismatch:
            var v = [Int64](repeating: 1, count: comm.rank == targetRank ? 3 : 2)
            try comm.allReduce(&v, op: .sum)
            out["survived"] = true
        }
        if comm.isRoot {
            let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            FileHandle.standardOutput.write(json + Data("\n".utf8))
        }
        try finalize(comm)
    }

    /// MPI_Finalize when MPI was used (mpirun reports a rank that exits without it as failed).
    private func finalize(_ comm: Communicator) throws {
        let base = (comm as? DebugCommunicator)?.inner ?? comm
        if let mpi = base as? MPICommunicator { try mpi.finalize() }
    }

    /// Stands in for backward writing gradients (a streaming store, like the last `+=` of a layer's backward).
    static func fill(_ b: UnsafeMutableBufferPointer<Float>, _ range: Range<Int>) {
        for i in range { b[i] = 1 }
    }

    /// The value rank r contributes at index i: (r + 1) × (i mod 7 + 1); exact in Float for these sizes.
    static func contribution(rank: Int, index: Int) -> Double { Double((rank + 1) * (index % 7 + 1)) }

    private func collectives(_ comm: Communicator, _ out: inout [String: Any]) throws {
        let r = comm.rank, w = comm.worldSize
        // Small buffers, reported in full so the test computes the expectation itself.
        var f = (0..<10).map { Float(Self.contribution(rank: r, index: $0)) }
        try comm.allReduce(&f, op: .sum)
        var d = (0..<10).map { Self.contribution(rank: r, index: $0) + 0.5 }
        try comm.allReduceSum(&d)
        var i = (0..<10).map { Int64(Self.contribution(rank: r, index: $0)) + (Int64(1) << 40) }
        try comm.allReduceSum(&i)
        var fmax = (0..<10).map { Float(Self.contribution(rank: r, index: $0)) * ($0 % 2 == 0 ? 1 : -1) }
        try fmax.withUnsafeMutableBufferPointer { try comm.allReduce($0, op: .max) }
        var dmin = (0..<10).map { Self.contribution(rank: r, index: $0) }
        try comm.allReduce(&dmin, op: .min)
        var imax = [Int64(r * 10), -Int64(r)]
        try comm.allReduce(&imax, op: .max)
        var bc = (0..<5).map { Int64(r * 100 + $0) }
        try comm.broadcast(&bc, root: w - 1)
        // Non-blocking all-reduce completed by polling test() (as a trainer overlapping compute would).
        var polled = (0..<10).map { Float(Self.contribution(rank: r, index: $0)) }
        try polled.withUnsafeMutableBufferPointer { b in
            let pending = try comm.startAllReduce(b, op: .sum)
            while try !pending.test() {}
            try pending.wait()  // a no-op after completion; must not fail
        }
        out["f32SumPolled"] = polled.map(Double.init)
        out["f32Sum"] = f.map(Double.init)
        out["f64Sum"] = d
        out["i64Sum"] = i.map { NSNumber(value: $0) }
        out["f32Max"] = fmax.map(Double.init)
        out["f64Min"] = dmin
        out["i64Max"] = imax.map { NSNumber(value: $0) }
        out["broadcastFromLast"] = bc.map { NSNumber(value: $0) }
        out["sumScalar"] = try comm.sum(Double(r + 1))

        // GradientReducer on a small buffer with tiny buckets (1000 floats, 256-float buckets: 3 full + 1 partial),
        // reported in full; then a buffer larger than the default bucket and not a multiple of it.
        let scale = Float(1) / Float(w * (w + 1) / 2)
        var small = (0..<1000).map { Float(Self.contribution(rank: r, index: $0)) }
        let tiny = GradientReducer(communicator: comm, bucketBytes: 1024)
        try small.withUnsafeMutableBufferPointer { try tiny.reduce($0, scale: 1) }
        out["reducerSmallSync"] = small.map(Double.init)
        var smallAsync = (0..<1000).map { Float(Self.contribution(rank: r, index: $0)) }
        try smallAsync.withUnsafeMutableBufferPointer { buf in
            try tiny.begin(buf, scale: 1)
            // Backward produces the last layers first: launch the tail, then a middle range; finish() covers gaps.
            try tiny.reduceAsync(range: 700..<1000)
            try tiny.reduceAsync(range: 100..<300)
            try tiny.reduceNow(range: 400..<500)  // blocking, cache-hot variant, mixed into the same step
            out["reducerSmallAsyncBuckets"] = tiny.launchedBuckets
            _ = try tiny.progress()  // poll once, as a trainer would between layers
            try tiny.finish()
        }
        out["reducerSmallAsync"] = smallAsync.map(Double.init)

        let reducer = GradientReducer(communicator: comm, bucketBytes: bucketBytes)
        var big = (0..<elements).map { Float(Self.contribution(rank: r, index: $0)) }
        try big.withUnsafeMutableBufferPointer { try reducer.reduce($0, scale: scale) }
        var bigAsync = (0..<elements).map { Float(Self.contribution(rank: r, index: $0)) }
        try bigAsync.withUnsafeMutableBufferPointer { buf in
            try reducer.begin(buf, scale: scale)
            try reducer.reduceAsync(range: (elements / 2)..<elements)
            try reducer.finish()
        }
        // After sum-then-scale every element must be (i mod 7 + 1); count the ones that are not (exact compare is
        // right here: small integers times 1/S and back are exact to within one rounding, checked with 1e-6).
        func mismatches(_ a: [Float]) -> Int {
            a.indices.reduce(0) { $0 + (abs(Double(a[$1]) - Double($1 % 7 + 1)) > 1e-6 * 7 ? 1 : 0) }
        }
        out["bigElements"] = elements
        out["bigBucketElements"] = reducer.bucketElements
        out["bigSyncMismatches"] = mismatches(big)
        out["bigAsyncMismatches"] = mismatches(bigAsync)
        out["bigSyncTotal"] = big.reduce(0.0) { $0 + Double($1) }
        out["availableCores"] = try comm.allGather(Int64(availableCores())).map { NSNumber(value: $0) }
    }

    private func plan(_ comm: Communicator, _ out: inout [String: Any]) throws {
        let p = try GlobalBatchPlan(sampleCount: samples, globalBatch: globalBatch, microBatch: microBatch,
                                    worldSize: comm.worldSize, rank: comm.rank, seed: seed)
        var steps: [[String: Any]] = []
        for e in 0..<epochs {
            for s in p.steps(epoch: e) {
                // Every rank writes (index + 1) at the positions of its slice; the sum shows who covered what
                // (a position written twice or never would not equal globalIndices + 1).
                var cover = [Int64](repeating: 0, count: s.globalCount)
                var pos = s.rankSlice.lowerBound
                for mb in s.microBatches { for idx in mb { cover[pos] = Int64(idx + 1); pos += 1 } }
                try comm.allReduceSum(&cover)
                let micro = try comm.allGather(Int64(s.microBatches.count))
                let sliceStarts = try comm.allGather(Int64(s.rankSlice.lowerBound))
                steps.append([
                    "epoch": s.epoch, "step": s.globalStep, "cursor": s.cursor, "indices": s.globalIndices,
                    "gatheredFromRanks": cover.map { Int($0) - 1 },
                    "microBatchesPerRank": micro.map { Int($0) }, "sliceStarts": sliceStarts.map { Int($0) },
                ])
            }
        }
        // Eval sharding: every rank counts the indices it evaluates; the integer sum must be exactly one per index.
        var coverage = [Int64](repeating: 0, count: evalSamples)
        for i in EvalSharding.range(count: evalSamples, rank: comm.rank, worldSize: comm.worldSize) { coverage[i] += 1 }
        try comm.allReduceSum(&coverage)
        out["evalCoverage"] = coverage.map { Int($0) }
        out["accumulationSteps"] = p.accumulationSteps
        out["steps"] = steps
    }

    private func bandwidth(_ comm: Communicator, _ out: inout [String: Any]) throws {
        let n = bytes / MemoryLayout<Float>.stride
        var buf = [Float](repeating: 1, count: n)
        let w = comm.worldSize
        let reducer = GradientReducer(communicator: comm, bucketBytes: bucketBytes)
        let nonBlocking = GradientReducer(communicator: comm, bucketBytes: bucketBytes, strategy: .nonBlocking)
        let scale = 1 / Float(w)
        // The variants take turns within each repetition, so a burst of load from other processes on this shared
        // machine hits all of them alike rather than whichever happened to run then.
        let variants: [(String, (UnsafeMutableBufferPointer<Float>) throws -> Void)] = [
            ("bareAllreduce", { try comm.allReduce($0, op: .sum) }),
            ("reducerSync", { try reducer.reduce($0, scale: scale) }),
            ("reducerSyncUnscaled", { try reducer.reduce($0, scale: 1) }),
            ("reducerAsync", { try nonBlocking.reduce($0, scale: scale) }),
            // Trainer-shaped patterns: "backward" writes the gradient (a fill), then it is reduced either all at the
            // end (cold: 90 MB is far beyond the 32 MiB L3) or bucket by bucket right after each is written (hot).
            // writeOnly is the fill alone, to subtract.
            ("writeOnly", { b in Self.fill(b, 0..<b.count) }),
            ("writeThenReduce", { b in
                Self.fill(b, 0..<b.count)
                try reducer.reduce(b, scale: scale)
            }),
            ("writeAndReduceNowPerBucket", { b in
                try reducer.begin(b, scale: scale)
                var start = b.count
                while start > 0 {  // backward produces the last layers first
                    let lo = max(0, start - reducer.bucketElements)
                    Self.fill(b, lo..<start)
                    try reducer.reduceNow(range: lo..<start)
                    start = lo
                }
                try reducer.finish()
            }),
        ]
        var samples = [String: [Double]]()
        for rep in 0..<(repeats + 1) {  // repetition 0 warms up buffers and MPI's connections; not counted
            for (name, body) in variants {
                try comm.barrier()
                let t0 = ContinuousClock.now
                try buf.withUnsafeMutableBufferPointer { try body($0) }
                let dt = ContinuousClock.now - t0
                // A collective is as slow as its slowest member: take the maximum over ranks.
                var s = [dt.seconds]
                try comm.allReduce(&s, op: .max)
                if rep > 0 { samples[name, default: []].append(s[0]) }
            }
        }
        var median = samples.mapValues { $0.sorted()[$0.count / 2] }
        // Reduction time of the trainer-shaped patterns: total minus the fill alone.
        let write = median.removeValue(forKey: "writeOnly") ?? 0
        out["writeOnlySeconds"] = write
        for k in ["writeThenReduce", "writeAndReduceNowPerBucket"] { median[k] = max(1e-9, median[k]! - write) }
        // Bus bandwidth (NCCL's convention): algorithm bandwidth × 2(w−1)/w, the bytes each link really carries.
        let factor = w > 1 ? 2 * Double(w - 1) / Double(w) : 1
        out["bytes"] = n * 4
        out["bucketBytes"] = reducer.bucketElements * 4
        out["repeats"] = repeats
        out["medianSeconds"] = median
        out["busGBps"] = median.mapValues { Double(n * 4) / $0 / 1e9 * factor }
        out["vsBare"] = median.mapValues { median["bareAllreduce"]! / $0 }
    }
}
