// GradientReducer: sums one flat Float gradient buffer over all ranks in fixed-size buckets, then scales it
// (sum-then-scale: the trainer passes 1/globalCount, so the average is exact whatever the rank count).
//
// Why buckets: on this machine a 2-rank all-reduce moves 8–9 GB/s for 1–4 MiB messages but only ~1.9 GB/s at
// ≥32 MiB. The L3 cache is 32 MiB: small messages that stay cache-resident are fast, large ones run at DRAM speed
// (and OpenMPI's temporary buffers for them come from fresh mmap'ed pages). A 90 MB gradient is in DRAM anyway once
// backward has finished, so bucketing alone cannot make it cache-fast; what can is reducing each range right after
// backward wrote it: `reduceNow(range:)` (blocking, cache-hot) or `reduceAsync(range:)` (non-blocking; on 2 busy
// cores MPI makes no progress in the background, so it mostly completes in `finish()`).
//
// Single-node jobs: given a NodeSharedMemory whose segment holds the gradient buffer (the trainer allocates the
// store's gradients there), the reducer reads the other ranks' gradients in place: after a node barrier each rank
// sums its 1/W share of the range over all ranks (in rank order, so every element has one value everywhere) into
// its own buffer, and after a second barrier copies the other shares from their owners. No message passes through
// MPI's transport; for 2 ranks here that halves the time of a 44 MB gradient (3.5 vs 7 ms). The clipping norm is
// summed from each rank's share and combined through a slot array in the segment, identically on every rank.
// With `scatterOnly` (ZeRO stage 1 on one node) the second half is skipped: each rank keeps only its own shares of
// the dense ranges reduced (`ownedShares`) and of the rows of row-sparse tables that `rowOwner` assigns to it, and
// updates just those parameters (in the trainer they live in one node-wide buffer, so nothing is sent back).
//
// Multi-node jobs (hierarchical): given `shared` over the ranks of this node and `crossNode`, the communicator of
// the ranks with the same local rank on the other nodes, each local rank sums its share of a range over the node's
// buffers in place as above, then all-reduces that share with its peers (one MPI all-reduce per share and bucket,
// every local rank's shares in parallel, 1/L of the bytes each), then, after the second barrier, copies the other
// shares as above. With `scatterOnly` (ZeRO-1 over the whole world) the cross-node part is a reduce-scatter instead:
// each bucket of a local rank's share is cut into N node blocks, exchanged (all-to-all) and summed in node order, so
// rank (node n, local rank l) holds the reduced block n of each bucket of share l — 1/(L·N) of every dense range —
// and updates just that; `gatherUpdatedValues` then all-gathers the updated parameters across the nodes (the node
// shares them in memory). With `overlapCrossNode` (the default) each bucket's exchange is started non-blocking
// (MPI_Ialltoallv) once its stage is summed on the node, tested at every later stage boundary (MPI moves it only
// inside MPI calls; docs/cluster.md "Overlap across nodes" measures this against a progress thread) and completed,
// then summed, in `finish()`: the same sums in the same order as the blocking exchange. Row-sparse tables stay all-reduced across the nodes: their rows' owner is a local rank,
// and the peers on the other nodes update the same rows identically (sending the updated rows would cost as much as
// the gradient, and AdamW touches only live rows).
// `commDtype` bf16 (opt-in): cross-node gradient blocks travel as bfloat16 (round to nearest even) and are summed in
// float32 in node order; a summed block all-gathered to the other nodes travels as bfloat16 too (every node, the
// owner included, then uses the rounded value). Parameters always travel in float32. The result then depends on how
// the ranks are spread over nodes (rounding happens at node boundaries), but is bitwise repeatable on one topology.
//
// Contract: every rank must call the same sequence of `reduceAsync` ranges (MPI matches collectives by order).
// With world size 1 nothing is communicated; the buffer is only scaled.
// The reducer also sums the squares of the reduced, scaled gradient while each bucket is still in cache, so the
// trainer's clipping norm costs no extra pass over the buffer (`sumOfSquares` after `finish()`).
// Deliberately not here: which parameters are trainable (the trainer passes ranges), the clipping itself.
import CKernels

public final class GradientReducer {
    public let communicator: Communicator
    /// Bucket size in Float elements.
    public let bucketElements: Int

    /// How `reduce(_:scale:)` issues its buckets.
    public enum Strategy: String, Sendable, CaseIterable {
        /// One blocking MPI_Allreduce per bucket: fastest when each bucket is cache-resident and the cores are not
        /// oversubscribed (each bucket is a rendezvous of all ranks).
        case blocking
        /// Start every bucket with MPI_Iallreduce, then wait for all: one rendezvous per call. Measured faster than
        /// `blocking` for a cold 90 MB buffer on this machine while other processes competed for the 2 cores.
        case nonBlocking
    }
    public let strategy: Strategy
    /// Node-shared memory for the in-place path (nil: message passing only).
    public let shared: NodeSharedMemory?
    /// Multi-node: the ranks of this rank's local rank on the other nodes; a share reduced in place on the node is
    /// then all-reduced over it (nil: `shared` spans the whole job, or messages only).
    public let crossNode: Communicator?
    /// The element type of cross-node gradient traffic (float32 unless `--grad-comm-dtype bf16`).
    public enum CommDtype: String, Sendable, CaseIterable { case fp32, bf16 }
    public let commDtype: CommDtype
    /// Multi-node ZeRO-1: each world rank's (node, local rank), indexed by world rank (`shares(of:)` takes a world
    /// rank). nil: `shares(of:)` takes a rank of `shared`.
    public let placement: [(node: Int, local: Int)]?
    /// Whether the open step reduces in place through `shared` (its buffer is the shared segment).
    public private(set) var sharedStep = false
    /// Every rank's copy of the open step's buffer (own included), by rank; sources for ck_sum_ranks.
    private var peers: [UnsafePointer<Float>?] = []
    /// Steps reduced through `shared`, for alternating the norm slots.
    private var sharedSteps = 0
    /// The open (or last) step reduces each dense range to its owner only (see the file header).
    public private(set) var scatterOnly = false
    /// Dense ranges reduced through `shared` in the open (or last) step, in order (the same on every rank).
    private var sharedRanges: [Range<Int>] = []
    /// This rank's shares of those ranges: after a `scatterOnly` step, the only dense gradients reduced here.
    public var ownedShares: [Range<Int>] {
        guard let shared else { return [] }
        return shares(of: crossNode != nil && placement != nil ? communicator.rank : shared.rank)
    }

    /// Rank `q`'s shares of the dense ranges of the last step reduced in place (q: a rank of `shared`; across nodes
    /// with a `placement`, a world rank, and its shares are its node's blocks of its local rank's buckets).
    public func shares(of q: Int) -> [Range<Int>] {
        guard let shared else { return [] }
        if let crossNode, let placement {
            let (n, l) = placement[q]
            return sharedRanges.flatMap { r in
                buckets(of: share(r, l, of: shared.worldSize)).map { share($0, n, of: crossNode.worldSize) }
            }.filter { !$0.isEmpty }
        }
        return sharedRanges.map { share($0, q, of: shared.worldSize) }.filter { !$0.isEmpty }
    }

    /// `r` cut into buckets of `bucketElements` (the unit of every cross-node collective).
    private func buckets(of r: Range<Int>) -> [Range<Int>] {
        stride(from: r.lowerBound, to: r.upperBound, by: bucketElements).map { $0..<min($0 + bucketElements, r.upperBound) }
    }

    /// Cumulative traffic and blocking time, so a training run can report its all-reduce bandwidth.
    public struct Stats: Sendable, Equatable {
        /// Bytes all-reduced (per rank), over all calls.
        public var bytes = 0
        /// Seconds spent inside `reduce` and `finish` (for the async path only the wait is counted: time hidden
        /// behind backward is free).
        public var seconds = 0.0
        /// Completed `reduce`/`finish` calls.
        public var steps = 0
        /// Of `seconds`, the part spent in cross-node collectives (multi-node jobs), plus the ZeRO-1 all-gather of
        /// updated parameters (`gatherUpdatedValues`), which is counted in `seconds` too.
        public var crossNodeSeconds = 0.0
        /// Bytes sent to other nodes by this rank (multi-node jobs), gradients and gathered parameters.
        public var crossNodeBytes = 0
        /// Bus bandwidth in GB/s (NCCL's convention: bytes × 2(w−1)/w per second), 0 before any traffic.
        public func busGBps(worldSize w: Int) -> Double {
            guard seconds > 0, w > 1 else { return 0 }
            return Double(bytes) * 2 * Double(w - 1) / Double(w) / seconds / 1e9
        }
    }
    public private(set) var stats = Stats()

    private var buffer: UnsafeMutableBufferPointer<Float>?
    private var scale: Float = 1
    /// Ranges already launched this step, in launch order, with their in-flight reductions; `scaled` marks buckets
    /// reduced and scaled on the spot by `reduceNow`.
    private var launched: [(range: Range<Int>, pending: PendingReduction, scaled: Bool)] = []
    /// Seconds spent blocked in `reduceNow`/`reduceRows` during the open step (added to `stats` by `finish`).
    private var stepSeconds = 0.0
    /// Gather buffer of `reduceRows` (grown once, reused every step).
    private var packed: [Float] = []
    /// Elements `reduceRows` skipped (known zero) in the open step.
    private var sparseSkipped = 0
    /// Σ g² over the ranges reduced so far in the open step.
    private var stepSumSq = 0.0
    /// Of a scatter-only step across nodes: Σ g² of table rows, which every node's peer holds alike (counted once).
    private var stepSumSqReplicated = 0.0
    /// Scratch of the cross-node exchanges (grown once, reused).
    private var sendHalves: [UInt16] = [], recvHalves: [UInt16] = [], recvFloats: [Float] = []
    /// ZeRO-1 across nodes: start each bucket's reduce-scatter without waiting (MPI_Ialltoallv), test the ones in
    /// flight at every later stage boundary, and complete them in `finish()` (false: each blocks at once).
    public let overlapCrossNode: Bool
    /// Reduce-scatters in flight: the bucket, its node blocks, the handle, the receive buffer (scratch slot).
    private var inFlight: [(bucket: Range<Int>, counts: [Int], handle: PendingReduction, recv: UnsafeMutableRawPointer)] = []
    /// Raw scratch buffers by slot (two per in-flight bucket: receive, and bf16's send), grown, freed in deinit.
    private var slots: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []

    deinit { for s in slots { s.pointer.deallocate() } }

    /// Scratch slot `i` with room for `bytes` (only called while no exchange uses a larger old buffer of that slot).
    private func slot(_ i: Int, bytes: Int) -> UnsafeMutableRawPointer {
        while slots.count <= i { slots.append((UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), 64)) }
        if slots[i].bytes < bytes {
            slots[i].pointer.deallocate()
            slots[i] = (UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), bytes)
        }
        return slots[i].pointer
    }
    /// Σ g² of the whole buffer after the last `finish()` (or `reduce`): every range reduced and scaled, rows that
    /// `reduceRows` skipped counted as the zeros they are. The same on every rank (each sums identical data in the
    /// same order), so a clipping coefficient computed from it keeps the replicas identical.
    public private(set) var sumOfSquares = 0.0

    /// - Parameters:
    ///   - bucketBytes: bytes per all-reduce (default 4 MiB), rounded down to whole Floats, at least one.
    ///   - strategy: how `reduce(_:scale:)` issues buckets (the async API is unaffected).
    ///   - shared: node-shared memory whose segments begin with the gradient buffer and are at least
    ///     `sharedBytes(elements:worldSize:)` long; a step whose buffer is this rank's segment reduces in place.
    ///   - crossNode: with `shared` over this node's ranks only (HierarchicalGroups), the peers of this local rank
    ///     on the other nodes: each in-place share is all-reduced across them too.
    ///   - commDtype: the element type of cross-node gradient traffic (see the file header).
    ///   - placement: every world rank's (node, local rank), for ZeRO-1 across nodes (`scatterOnly` steps with
    ///     `crossNode`); without it such steps are not scatter-only.
    public init(communicator: Communicator, bucketBytes: Int = 4 << 20, strategy: Strategy = .blocking,
                shared: NodeSharedMemory? = nil, crossNode: Communicator? = nil, commDtype: CommDtype = .fp32,
                placement: [(node: Int, local: Int)]? = nil, overlapCrossNode: Bool = true) {
        self.overlapCrossNode = overlapCrossNode
        self.communicator = communicator
        self.strategy = strategy
        self.bucketElements = max(1, bucketBytes / MemoryLayout<Float>.stride)
        self.shared = shared
        self.crossNode = shared == nil ? nil : crossNode
        self.commDtype = commDtype
        self.placement = placement
    }

    /// Bytes of node-shared memory per rank for a gradient of `elements` floats: the buffer, then two alternating
    /// rows of one Float64 norm slot per rank.
    public static func sharedBytes(elements: Int, worldSize: Int) -> Int {
        slotOffset(elements: elements) + 2 * worldSize * MemoryLayout<Double>.stride
    }

    private static func slotOffset(elements: Int) -> Int { (elements * MemoryLayout<Float>.stride + 63) / 64 * 64 }

    /// Synchronous path: all-reduces `buffer` bucket by bucket, then multiplies by `scale`; returns when done.
    public func reduce(_ buffer: UnsafeMutableBufferPointer<Float>, scale: Float) throws {
        guard self.buffer == nil else {
            throw CommunicatorError("GradientReducer.reduce called while an async step is open; call finish() first")
        }
        guard communicator.worldSize > 1 else {
            sumOfSquares = Self.scaleAndSumSquares(buffer, by: scale)
            return
        }
        if strategy == .nonBlocking || isShared(buffer) {
            try begin(buffer, scale: scale)
            try reduceAsync(range: 0..<buffer.count)
            return try finish()  // finish() records the stats
        }
        let t0 = ContinuousClock.now
        defer { record(bytes: buffer.count * MemoryLayout<Float>.stride, since: t0) }
        var start = 0, sumSq = 0.0
        while start < buffer.count {
            let end = min(start + bucketElements, buffer.count)
            let bucket = UnsafeMutableBufferPointer(rebasing: buffer[start..<end])
            try communicator.allReduce(bucket, op: .sum)
            // Scale while the bucket is still in cache from the reduction, rather than in a second pass over memory.
            sumSq += Self.scaleAndSumSquares(bucket, by: scale)
            start = end
        }
        sumOfSquares = sumSq
    }

    /// Opens an asynchronous step on `buffer`: subsequent `reduceAsync(range:)` calls launch its buckets.
    /// - Parameter scatterOnly: on the in-place path, leave each dense range reduced only in its owner's share
    ///   (`ownedShares`), and each table row given an owner in `reduceRows` only in its owner's buffer; the caller
    ///   updates just those parameters. Ignored otherwise.
    public func begin(_ buffer: UnsafeMutableBufferPointer<Float>, scale: Float, scatterOnly: Bool = false) throws {
        guard self.buffer == nil else {
            throw CommunicatorError("GradientReducer.begin called twice without finish()")
        }
        self.buffer = buffer
        self.scale = scale
        sharedStep = isShared(buffer)
        self.scatterOnly = sharedStep && scatterOnly && (crossNode == nil || placement != nil)
        sharedRanges.removeAll(keepingCapacity: true)
        if sharedStep, let shared {
            peers = (0..<shared.worldSize).map { UnsafePointer(shared.segment(of: $0).assumingMemoryBound(to: Float.self)) }
        }
        stepSeconds = 0
        sparseSkipped = 0
        stepSumSq = 0
        stepSumSqReplicated = 0
        launched.removeAll(keepingCapacity: true)
    }

    /// Launches non-blocking all-reduces for `range` of the buffer (split into buckets) as soon as backward has
    /// finished writing it. The range must not overlap one already launched in this step, and must not be written
    /// again until `finish()` returns.
    public func reduceAsync(range: Range<Int>) throws {
        try launch(range: range, blocking: false, caller: "reduceAsync")
    }

    /// Blocking variant of `reduceAsync`: all-reduces and scales `range` right now, bucket by bucket. Called right
    /// after backward wrote the range, the data is still in cache, which matters more than overlap on a machine
    /// where every core computes (no progress thread) and a full gradient does not fit in the L3 cache.
    public func reduceNow(range: Range<Int>) throws {
        let t0 = ContinuousClock.now
        defer { stepSeconds += Self.seconds(since: t0) }
        try launch(range: range, blocking: true, caller: "reduceNow")
    }

    private func launch(range: Range<Int>, blocking: Bool, caller: String) throws {
        guard let buffer else { throw CommunicatorError("GradientReducer.\(caller) called before begin(_:scale:)") }
        guard range.lowerBound >= 0, range.upperBound <= buffer.count else {
            throw CommunicatorError("GradientReducer.\(caller): range \(range) outside the buffer 0..<\(buffer.count)")
        }
        if let clash = launched.first(where: { $0.range.overlaps(range) }) {
            throw CommunicatorError("GradientReducer.\(caller): range \(range) overlaps \(clash.range), already "
                                    + "launched this step; each gradient must be reduced exactly once")
        }
        if sharedStep {
            // In place, blocking whatever the caller asked: there is nothing to overlap without a message.
            let t0 = ContinuousClock.now
            try sharedReduce([range])
            if !blocking { stepSeconds += Self.seconds(since: t0) }
            launched.append((range, CompletedReduction(), true))
            return
        }
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(start + bucketElements, range.upperBound)
            let bucket = UnsafeMutableBufferPointer(rebasing: buffer[start..<end])
            if blocking {
                if communicator.worldSize > 1 { try communicator.allReduce(bucket, op: .sum) }
                stepSumSq += Self.scaleAndSumSquares(bucket, by: scale)
                launched.append((start..<end, CompletedReduction(), true))
            } else {
                let pending: PendingReduction = communicator.worldSize > 1
                    ? try communicator.startAllReduce(bucket, op: .sum) : CompletedReduction()
                launched.append((start..<end, pending, false))
            }
            start = end
        }
    }

    /// Row-sparse path for an embedding table whose gradient is non-zero only in the rows of tokens present in the
    /// global batch (every rank holds every sample's tokens, so all ranks name the same `rows` without talking).
    /// Gathers those rows into one contiguous buffer, all-reduces it in buckets, scales it and scatters it back;
    /// every other row of `range` is left as it is, which is exact when it is zero on every rank (the caller's
    /// contract; `--debug` checks it). For a 30522-row table and a batch of 32 short texts this moves ~1-2 MB
    /// instead of 47 MB. Blocking; `rows` must be sorted, unique and inside the table. Counts as covering `range`.
    /// `rowOwner` (a scatter-only step; a rank in 0..<worldSize for each row, the same rule on every rank): each row is
    /// reduced only into its owner's buffer; without it, or outside a scatter-only step, every rank gets every row.
    public func reduceRows(range: Range<Int>, rowLength: Int, rows: [Int], rowOwner: ((Int) -> Int)? = nil) throws {
        guard let buffer else { throw CommunicatorError("GradientReducer.reduceRows called before begin(_:scale:)") }
        guard rowLength > 0, range.lowerBound >= 0, range.upperBound <= buffer.count, range.count % rowLength == 0 else {
            throw CommunicatorError("GradientReducer.reduceRows: range \(range) is not whole rows of \(rowLength) inside 0..<\(buffer.count)")
        }
        if let clash = launched.first(where: { $0.range.overlaps(range) }) {
            throw CommunicatorError("GradientReducer.reduceRows: range \(range) overlaps \(clash.range), already launched this step")
        }
        let tableRows = range.count / rowLength
        var previous = -1
        for r in rows {
            guard r > previous, r < tableRows else {
                throw CommunicatorError("GradientReducer.reduceRows: rows must be sorted, unique and below \(tableRows) (got \(r) after \(previous))")
            }
            previous = r
        }
        let t0 = ContinuousClock.now
        defer { stepSeconds += Self.seconds(since: t0) }
        let base = buffer.baseAddress! + range.lowerBound
        let n = rows.count * rowLength
        if sharedStep, let shared {
            // Each row's owner sums it over all ranks; then (unless scatter-only, where the owner alone updates it)
            // every rank copies the other owners' rows. Owners: `rowOwner`, else the q-th contiguous group of rows.
            let W = shared.worldSize
            let byOwner = scatterOnly ? rowOwner : nil
            let groups: [ArraySlice<Int>]
            if let byOwner {
                var g = [[Int]](repeating: [], count: W)
                for r in rows { g[byOwner(r)].append(r) }
                groups = g.map { $0[...] }
            } else {
                groups = (0..<W).map { q in rows[(rows.count * q / W)..<(rows.count * (q + 1) / W)] }
            }
            try shared.sync()
            if let crossNode {
                // Sum this rank's rows on the node, then across the nodes (packed, in buckets).
                let mine = groups[shared.rank]
                for r in mine { _ = sumRanks(at: range.lowerBound + r * rowLength, count: rowLength) }
                let m = mine.count * rowLength
                if packed.count < m { packed = [Float](repeating: 0, count: m) }
                if m > 0 {   // no rows here: the peers (same local rank, same rows) skip the all-reduce too
                    try packed.withUnsafeMutableBufferPointer { p in
                        let dst = p.baseAddress!
                        for (i, r) in mine.enumerated() { (dst + i * rowLength).update(from: base + r * rowLength, count: rowLength) }
                        let sq = try allReduceAcrossNodes(UnsafeMutableBufferPointer(rebasing: p[0..<m]), crossNode)
                        if scatterOnly { stepSumSqReplicated += sq } else { stepSumSq += sq }
                        for (i, r) in mine.enumerated() { (base + r * rowLength).update(from: dst + i * rowLength, count: rowLength) }
                    }
                }
            } else {
                for r in groups[shared.rank] { stepSumSq += sumRanks(at: range.lowerBound + r * rowLength, count: rowLength) }
            }
            if byOwner == nil {
                try shared.sync()
                for q in 0..<W where q != shared.rank {
                    for r in groups[q] {
                        let o = range.lowerBound + r * rowLength
                        (buffer.baseAddress! + o).update(from: peers[q]! + o, count: rowLength)
                    }
                }
            }
            sparseSkipped += range.count - n
            launched.append((range, CompletedReduction(), true))
            return
        }
        if packed.count < n { packed = [Float](repeating: 0, count: n) }
        try packed.withUnsafeMutableBufferPointer { p in
            let dst = p.baseAddress!
            for (i, r) in rows.enumerated() { (dst + i * rowLength).update(from: base + r * rowLength, count: rowLength) }
            var start = 0
            while start < n {
                let end = min(start + bucketElements, n)
                let bucket = UnsafeMutableBufferPointer(rebasing: p[start..<end])
                if communicator.worldSize > 1 { try communicator.allReduce(bucket, op: .sum) }
                stepSumSq += Self.scaleAndSumSquares(bucket, by: scale)
                start = end
            }
            for (i, r) in rows.enumerated() { (base + r * rowLength).update(from: dst + i * rowLength, count: rowLength) }
        }
        sparseSkipped += range.count - n
        launched.append((range, CompletedReduction(), true))
    }

    /// Drives in-flight reductions forward without blocking (MPI progresses non-blocking collectives mostly inside
    /// MPI calls, so a trainer may call this between layers of backward). Returns how many buckets are complete.
    @discardableResult
    public func progress() throws -> Int {
        var done = 0
        for item in launched where try item.pending.test() { done += 1 }
        return done
    }

    /// Launches whatever part of the buffer was not yet launched, waits for every bucket, scales the buffer and
    /// closes the step.
    public func finish() throws {
        guard let buffer else { throw CommunicatorError("GradientReducer.finish called before begin(_:scale:)") }
        let t0 = ContinuousClock.now
        defer {
            if communicator.worldSize > 1 {
                // Bytes actually moved: the dense part plus the gathered rows of row-sparse tables.
                record(bytes: (buffer.count - sparseSkipped) * MemoryLayout<Float>.stride, since: t0)
                stats.seconds += stepSeconds
            }
            self.buffer = nil
            sharedStep = false
            launched.removeAll(keepingCapacity: true)
        }
        // Gaps in the coverage, in ascending order so that every rank launches them identically.
        let covered = launched.map(\.range).sorted { $0.lowerBound < $1.lowerBound }
        var gaps: [Range<Int>] = []
        var next = 0
        for r in covered {
            if r.lowerBound > next { gaps.append(next..<r.lowerBound) }
            next = max(next, r.upperBound)
        }
        if next < buffer.count { gaps.append(next..<buffer.count) }
        if sharedStep, let shared {
            if !gaps.isEmpty { try sharedReduce(gaps) }  // the same gaps on every rank: one rendezvous for all
            if scatterOnly, crossNode != nil {
                try completeScatters()
                // ZeRO-1 across nodes: every rank's own blocks, plus node 0's table rows (the same on every node),
                // summed over the world in rank order (each slot has one non-zero contribution: exact).
                let W = communicator.worldSize
                var slots = [Double](repeating: 0, count: 2 * W)
                slots[communicator.rank] = stepSumSq
                if placement?[communicator.rank].node == 0 { slots[W + communicator.rank] = stepSumSqReplicated }
                try communicator.allReduce(&slots, op: .sum)
                sumOfSquares = slots.reduce(0, +)
                try shared.sync()
                return
            }
            // Each rank summed the squares of its own shares: combine them through the slots, in rank order.
            let row = (sharedSteps % 2) * shared.worldSize
            sharedSteps += 1
            normSlots(shared.rank, elements: buffer.count)[row + shared.rank] = stepSumSq
            try shared.sync()  // also: no rank rewrites its buffer while another still copies from it
            sumOfSquares = (0..<shared.worldSize).reduce(0.0) { $0 + normSlots($1, elements: buffer.count)[row + $1] }
            return
        }
        for g in gaps { try reduceAsync(range: g) }
        for item in launched where !item.scaled {
            try item.pending.wait()
            stepSumSq += Self.scaleAndSumSquares(UnsafeMutableBufferPointer(rebasing: buffer[item.range]), by: scale)
        }
        sumOfSquares = stepSumSq
    }

    private func isShared(_ b: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard let shared, let p = b.baseAddress else { return false }
        return UnsafeMutableRawPointer(p) == shared.base
            && Self.sharedBytes(elements: b.count, worldSize: shared.worldSize) <= shared.bytes
    }

    /// Rank q's share of `range`: the q-th of W contiguous parts, boundaries on 64-byte multiples of the range start.
    private func share(_ range: Range<Int>, _ q: Int, of W: Int) -> Range<Int> {
        let chunk = ((range.count + W - 1) / W + 15) / 16 * 16
        let lo = min(range.lowerBound + q * chunk, range.upperBound)
        return lo..<min(lo + chunk, range.upperBound)
    }

    /// In-place reduction of `ranges` through node-shared memory (see the file header): one rendezvous when every
    /// rank has written the ranges, each rank reduces its shares, a second rendezvous, each copies the others'.
    private func sharedReduce(_ ranges: [Range<Int>]) throws {
        guard let shared, let buffer else { return }
        let W = shared.worldSize
        // A stage boundary: let the reduce-scatters in flight move (MPI progresses them only inside MPI calls).
        for f in inFlight { _ = try f.handle.test() }
        sharedRanges += ranges
        try shared.sync()
        for r in ranges {
            let mine = share(r, shared.rank, of: W)
            guard !mine.isEmpty else { continue }
            if let crossNode, scatterOnly {
                // ZeRO-1 across nodes: the node's sum of this share, then each bucket reduce-scattered over the nodes.
                _ = sumRanks(at: mine.lowerBound, count: mine.count)
                for b in buckets(of: mine) {
                    let blocks = (0..<crossNode.worldSize).map { share(b, $0, of: crossNode.worldSize) }
                    if overlapCrossNode {
                        try startScatter(b, counts: blocks.map(\.count), crossNode)
                    } else {
                        try reduceScatterAcrossNodes(UnsafeMutableBufferPointer(rebasing: buffer[b]), counts: blocks.map(\.count), crossNode)
                        stepSumSq += Self.sumSquares(UnsafeMutableBufferPointer(rebasing: buffer[blocks[crossNode.rank]]))
                    }
                }
            } else if let crossNode {
                // The node's sum of this share, then the sum over the nodes: the same share on every node.
                _ = sumRanks(at: mine.lowerBound, count: mine.count)
                stepSumSq += try allReduceAcrossNodes(UnsafeMutableBufferPointer(rebasing: buffer[mine]), crossNode)
            } else {
                stepSumSq += sumRanks(at: mine.lowerBound, count: mine.count)
            }
        }
        if scatterOnly { return }  // the owners keep their shares and update only those
        try shared.sync()
        copyOtherShares(of: ranges, into: buffer.baseAddress!)
    }

    /// dst[i] = rank q's segment[i] for every other rank q's share of `ranges` (same offsets in every segment).
    private func copyOtherShares(of ranges: [Range<Int>], into dst: UnsafeMutablePointer<Float>) {
        guard let shared else { return }
        for r in ranges {
            for q in 0..<shared.worldSize where q != shared.rank {
                let theirs = share(r, q, of: shared.worldSize)
                if !theirs.isEmpty { (dst + theirs.lowerBound).update(from: peers[q]! + theirs.lowerBound, count: theirs.count) }
            }
        }
    }

    /// All-reduces `b` (already scaled) over the cross-node peers in buckets; returns Σ of the squares of the result.
    /// float32: MPI_Allreduce; bf16: a reduce-scatter and an all-gather of bfloat16 blocks (see the file header).
    private func allReduceAcrossNodes(_ b: UnsafeMutableBufferPointer<Float>, _ across: Communicator) throws -> Double {
        var start = 0, sumSq = 0.0
        while start < b.count {
            let end = min(start + bucketElements, b.count)
            let bucket = UnsafeMutableBufferPointer(rebasing: b[start..<end])
            if commDtype == .bf16 {
                let counts = (0..<across.worldSize).map { share(start..<end, $0, of: across.worldSize).count }
                try reduceScatterAcrossNodes(bucket, counts: counts, across)
                try allGatherAcrossNodes(bucket, counts: counts, across, halves: true)
            } else {
                let t0 = ContinuousClock.now
                try across.allReduce(bucket, op: .sum)
                // A ring all-reduce sends 2(N-1)/N of the bucket.
                noteCrossNode(bytes: 2 * (across.worldSize - 1) * bucket.count * 4 / max(across.worldSize, 1), since: t0)
            }
            sumSq += Self.sumSquares(bucket)
            start = end
        }
        return sumSq
    }

    /// Cross-node reduce-scatter of `b`, blocks of `counts` floats in node order: afterwards this node's block holds
    /// Σ over the nodes of their blocks, accumulated in float32 in node order (the other blocks are left as they
    /// were). Each contribution travels as float32 or, with bf16, rounded to bfloat16.
    private func reduceScatterAcrossNodes(_ b: UnsafeMutableBufferPointer<Float>, counts: [Int], _ across: Communicator) throws {
        let N = across.worldSize, me = across.rank
        let offsets = Self.offsets(counts), mine = counts[me]
        let t0 = ContinuousClock.now
        defer { noteCrossNode(bytes: (counts.reduce(0, +) - mine) * (commDtype == .bf16 ? 2 : 4), since: t0) }
        let dst = b.baseAddress! + offsets[me]
        if commDtype == .bf16 {
            if sendHalves.count < b.count { sendHalves = [UInt16](repeating: 0, count: b.count) }
            if recvHalves.count < N * mine { recvHalves = [UInt16](repeating: 0, count: N * mine) }
            try sendHalves.withUnsafeMutableBufferPointer { s in
                try recvHalves.withUnsafeMutableBufferPointer { r in
                    for i in 0..<b.count { s[i] = Self.bf16(b[i]) }
                    try across.allToAll(send: UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(s)[0..<(2 * b.count)]),
                                        sendCounts: counts.map { 2 * $0 },
                                        recv: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(r)[0..<(2 * N * mine)]),
                                        recvCounts: Array(repeating: 2 * mine, count: N))
                    for i in 0..<mine {
                        var acc = Self.float(r[i])
                        for n in 1..<max(N, 1) { acc += Self.float(r[n * mine + i]) }
                        dst[i] = acc
                    }
                }
            }
            return
        }
        if recvFloats.count < N * mine { recvFloats = [Float](repeating: 0, count: N * mine) }
        try recvFloats.withUnsafeMutableBufferPointer { r in
            try across.allToAll(send: UnsafeRawBufferPointer(b), sendCounts: counts.map { 4 * $0 },
                                recv: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(r)[0..<(4 * N * mine)]),
                                recvCounts: Array(repeating: 4 * mine, count: N))
            for i in 0..<mine {
                var acc = r[i]
                for n in 1..<max(N, 1) { acc += r[n * mine + i] }
                dst[i] = acc
            }
        }
    }

    /// Starts the reduce-scatter of bucket `b` of the buffer across the nodes (as `reduceScatterAcrossNodes`, but
    /// non-blocking); `completeScatters` finishes it. The bucket must not be written until then.
    private func startScatter(_ b: Range<Int>, counts: [Int], _ across: Communicator) throws {
        let N = across.worldSize, mine = counts[across.rank], e = commDtype == .bf16 ? 2 : 4
        let k = inFlight.count
        let recv = slot(2 * k, bytes: max(N * mine * e, 1))
        let send: UnsafeRawBufferPointer
        if commDtype == .bf16 {
            let h = slot(2 * k + 1, bytes: max(2 * b.count, 1)).assumingMemoryBound(to: UInt16.self)
            let src = buffer!.baseAddress! + b.lowerBound
            for i in 0..<b.count { h[i] = Self.bf16(src[i]) }
            send = UnsafeRawBufferPointer(start: h, count: 2 * b.count)
        } else {
            send = UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer![b]))
        }
        let t0 = ContinuousClock.now
        let handle = try across.startAllToAll(send: send, sendCounts: counts.map { e * $0 },
                                              recv: UnsafeMutableRawBufferPointer(start: recv, count: N * mine * e),
                                              recvCounts: Array(repeating: e * mine, count: N))
        noteCrossNode(bytes: (counts.reduce(0, +) - mine) * e, since: t0)
        inFlight.append((b, counts, handle, recv))
    }

    /// Waits for every reduce-scatter in flight (in start order) and sums each bucket's node blocks into this rank's
    /// block, in node order, as `reduceScatterAcrossNodes` does; adds their squares to the step's norm.
    private func completeScatters() throws {
        guard let crossNode, let buffer else { return }
        let N = crossNode.worldSize, me = crossNode.rank
        for f in inFlight {
            let t0 = ContinuousClock.now
            try f.handle.wait()
            noteCrossNode(bytes: 0, since: t0)
            let mine = f.counts[me], dst = buffer.baseAddress! + f.bucket.lowerBound + Self.offsets(f.counts)[me]
            if commDtype == .bf16 {
                let r = f.recv.assumingMemoryBound(to: UInt16.self)
                for i in 0..<mine {
                    var acc = Self.float(r[i])
                    for n in 1..<max(N, 1) { acc += Self.float(r[n * mine + i]) }
                    dst[i] = acc
                }
            } else {
                let r = f.recv.assumingMemoryBound(to: Float.self)
                for i in 0..<mine {
                    var acc = r[i]
                    for n in 1..<max(N, 1) { acc += r[n * mine + i] }
                    dst[i] = acc
                }
            }
            stepSumSq += Self.sumSquares(UnsafeMutableBufferPointer(start: dst, count: mine))
        }
        inFlight.removeAll(keepingCapacity: true)
    }

    /// Cross-node all-gather of `b`'s node blocks (`counts` floats, node order), as float32, or with `halves` as
    /// bfloat16 (then this node's block is rounded too, so that every node holds the same values).
    private func allGatherAcrossNodes(_ b: UnsafeMutableBufferPointer<Float>, counts: [Int], _ across: Communicator, halves: Bool) throws {
        let me = across.rank, offsets = Self.offsets(counts)
        let t0 = ContinuousClock.now
        defer { noteCrossNode(bytes: (across.worldSize - 1) * counts[me] * (halves ? 2 : 4), since: t0) }
        guard halves else {
            try across.allGather(UnsafeMutableRawBufferPointer(b), counts: counts.map { 4 * $0 })
            return
        }
        if sendHalves.count < b.count { sendHalves = [UInt16](repeating: 0, count: b.count) }
        try sendHalves.withUnsafeMutableBufferPointer { h in
            for i in offsets[me]..<(offsets[me] + counts[me]) { h[i] = Self.bf16(b[i]) }
            try across.allGather(UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(h)[0..<(2 * b.count)]),
                                 counts: counts.map { 2 * $0 })
            for i in 0..<b.count { b[i] = Self.float(h[i]) }
        }
    }

    /// ZeRO-1 across nodes, after every rank updated its blocks in the node's one copy of the parameters `values`
    /// (collective over the nodes; call before the node barrier that publishes them): each local rank all-gathers
    /// the updated blocks of its shares from its peers, in float32. No-op unless the last step was scatter-only
    /// across nodes.
    public func gatherUpdatedValues(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard scatterOnly, let crossNode, let shared else { return }
        let t0 = ContinuousClock.now
        defer { stats.seconds += Self.seconds(since: t0) }
        for r in sharedRanges {
            for b in buckets(of: share(r, shared.rank, of: shared.worldSize)) {
                let counts = (0..<crossNode.worldSize).map { share(b, $0, of: crossNode.worldSize).count }
                try allGatherAcrossNodes(UnsafeMutableBufferPointer(rebasing: values[b]), counts: counts, crossNode, halves: false)
            }
        }
    }

    private func noteCrossNode(bytes: Int, since t0: ContinuousClock.Instant) {
        stats.crossNodeSeconds += Self.seconds(since: t0)
        stats.crossNodeBytes += bytes
    }

    /// Start offsets of blocks of `counts` laid end to end.
    private static func offsets(_ counts: [Int]) -> [Int] {
        var o = 0
        return counts.map { c in defer { o += c }; return o }
    }

    /// float32 → bfloat16, rounding to nearest even (NaN stays NaN).
    @inline(__always) public static func bf16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    /// bfloat16 → float32 (exact).
    @inline(__always) public static func float(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// Σ b² in Float64.
    static func sumSquares(_ b: UnsafeMutableBufferPointer<Float>) -> Double {
        guard let base = b.baseAddress, !b.isEmpty else { return 0 }
        return ck_sumsq_f64(base, b.count)
    }

    /// Rank q's two rows of norm slots, after the gradient in its segment.
    private func normSlots(_ q: Int, elements: Int) -> UnsafeMutablePointer<Double> {
        (shared!.segment(of: q) + Self.slotOffset(elements: elements)).assumingMemoryBound(to: Double.self)
    }

    /// Own buffer[o..<o+n] = scale · Σ_q rank q's buffer[o..<o+n], in rank order; returns Σ of the squares.
    private func sumRanks(at o: Int, count n: Int) -> Double {
        let dst = buffer!.baseAddress! + o
        return peers.withUnsafeBufferPointer { ck_sum_ranks(dst, $0.baseAddress, $0.count, o, n, scale) }
    }

    /// Number of buckets launched so far in the open step (for tests and logging).
    public var launchedBuckets: Int { launched.count }

    private func record(bytes: Int, since t0: ContinuousClock.Instant) {
        stats.bytes += bytes
        stats.seconds += Self.seconds(since: t0)
        stats.steps += 1
    }

    private static func seconds(since t0: ContinuousClock.Instant) -> Double { (ContinuousClock.now - t0).seconds }

    /// b *= s, then Σ b² in Float64, in one pass (C kernel).
    static func scaleAndSumSquares(_ b: UnsafeMutableBufferPointer<Float>, by s: Float) -> Double {
        guard let base = b.baseAddress, !b.isEmpty else { return 0 }
        return ck_scale_sumsq_f64(base, b.count, s)
    }
}
