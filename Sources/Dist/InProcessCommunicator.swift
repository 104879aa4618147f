// InProcessCommunicator: an N-rank `Communicator` whose ranks are threads of one process, for tests of code that
// must give the same numbers at any world size (trainer, reducer, consistency and debug checks) without mpirun.
// `InProcessGroup.run(worldSize:)` starts one thread per rank and joins them.
// Reductions are computed by every rank from all ranks' buffers in rank order 0..<N, so the result is deterministic
// (it may differ from MPI's summation order in the last bit for floats).
// Deliberately not: fast (two barriers per collective, a temporary copy), or a replacement for the real mpirun tests.
// If one rank throws, the group is marked failed and every other rank's next (or current) collective throws too,
// so a test fails instead of deadlocking.
import Foundation

/// State shared by the ranks of one in-process group.
final class InProcessGroupState: @unchecked Sendable {
    let size: Int
    /// Ranks per emulated node (consecutive ranks share a node); `size` = one node.
    let ranksPerNode: Int
    /// Sub-groups (a node's ranks, a local rank's peers) by key, created by the first rank that asks.
    private var subgroups: [String: InProcessGroupState] = [:]

    func subgroup(_ key: String, size: Int) -> InProcessGroupState {
        cond.lock()
        defer { cond.unlock() }
        if let g = subgroups[key] { return g }
        let g = InProcessGroupState(size: size)
        subgroups[key] = g
        return g
    }
    private let cond = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var failure: String?
    // Rank r's buffer for the collective in progress; written by rank r before a barrier, read by all after it.
    private var slots: [UnsafeMutableRawPointer?]
    private var counts: [Int]
    /// Shared-memory segments handed out by `makeNodeSharedMemory`, freed with the group.
    private var segments: [UnsafeMutableRawPointer] = []

    func keep(_ p: UnsafeMutableRawPointer) {
        cond.lock()
        segments.append(p)
        cond.unlock()
    }

    deinit { for p in segments { p.deallocate() } }

    init(size: Int, ranksPerNode: Int? = nil) {
        self.size = size
        self.ranksPerNode = ranksPerNode ?? size
        slots = Array(repeating: nil, count: size)
        counts = Array(repeating: 0, count: size)
    }

    func fail(_ message: String) {
        cond.lock()
        if failure == nil { failure = message }
        cond.broadcast()
        cond.unlock()
    }

    func publish(rank: Int, _ p: UnsafeMutableRawPointer?, count: Int) {
        cond.lock()
        slots[rank] = p
        counts[rank] = count
        cond.unlock()
    }

    func slot(_ rank: Int) -> (UnsafeMutableRawPointer?, Int) {
        cond.lock()
        defer { cond.unlock() }
        return (slots[rank], counts[rank])
    }

    /// Waits until all ranks arrive; throws if the group failed meanwhile. The lock gives the ordering that makes
    /// buffers published before the barrier visible after it.
    func barrier(rank: Int) throws {
        cond.lock()
        defer { cond.unlock() }
        if let f = failure { throw CommunicatorError("in-process rank \(rank): group failed: \(f)") }
        let gen = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            cond.broadcast()
            return
        }
        while gen == generation && failure == nil { cond.wait() }
        if gen == generation, let f = failure {
            throw CommunicatorError("in-process rank \(rank): group failed: \(f)")
        }
    }
}

public final class InProcessCommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public var worldSize: Int { state.size }
    let state: InProcessGroupState

    init(rank: Int, state: InProcessGroupState) {
        self.rank = rank
        self.state = state
    }

    private func reduce<T>(_ buffer: UnsafeMutableBufferPointer<T>, _ name: String,
                           _ combine: (T, T) -> T) throws {
        state.publish(rank: rank, buffer.baseAddress.map { UnsafeMutableRawPointer($0) }, count: buffer.count)
        try state.barrier(rank: rank)
        var result = Array(buffer)
        for r in 0..<state.size {
            let (p, n) = state.slot(r)
            guard n == buffer.count else {
                let msg = "\(name): rank \(r) passed \(n) elements, rank \(rank) passed \(buffer.count)"
                state.fail(msg)
                throw CommunicatorError(msg)
            }
            guard n > 0, let p else { continue }
            let other = p.assumingMemoryBound(to: T.self)
            if r == 0 { for i in 0..<n { result[i] = other[i] } } else { for i in 0..<n { result[i] = combine(result[i], other[i]) } }
        }
        try state.barrier(rank: rank)  // everyone has read every buffer; now each may overwrite its own
        for i in result.indices { buffer[i] = result[i] }
    }

    private static func combiner<T: Comparable & AdditiveArithmetic>(_ op: ReduceOp) -> (T, T) -> T {
        switch op {
        case .sum: return { $0 + $1 }
        case .max: return { Swift.max($0, $1) }
        case .min: return { Swift.min($0, $1) }
        }
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try reduce(buffer, "allReduce(float, \(op))", Self.combiner(op))
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try reduce(buffer, "allReduce(double, \(op))", Self.combiner(op))
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {
        try reduce(buffer, "allReduce(int64, \(op))", Self.combiner(op))
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        state.publish(rank: rank, buffer.baseAddress, count: buffer.count)
        try state.barrier(rank: rank)
        let (p, n) = state.slot(root)
        guard n == buffer.count else {
            let msg = "broadcast: root \(root) has \(n) bytes, rank \(rank) has \(buffer.count)"
            state.fail(msg)
            throw CommunicatorError(msg)
        }
        if rank != root, n > 0, let p, let dst = buffer.baseAddress { dst.copyMemory(from: p, byteCount: n) }
        try state.barrier(rank: rank)
    }

    public func barrier() throws { try state.barrier(rank: rank) }

    /// Threads share an address space, so every group can have node-shared memory: each rank allocates its
    /// segment and all exchange the addresses (the same protocol as MPI_Win_allocate_shared, for tests).
    public func makeNodeSharedMemory(segmentBytes bytes: Int) throws -> NodeSharedMemory? {
        guard worldSize > 1 else { return nil }
        let size = max(bytes, 64)  // as the MPI shim allocates (an empty segment still has an address)
        let mine = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        mine.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        state.keep(mine)
        state.publish(rank: rank, mine, count: size)
        try state.barrier(rank: rank)
        var segments: [UnsafeMutableRawPointer] = [], sizes: [Int] = []
        for r in 0..<worldSize {
            let (p, n) = state.slot(r)
            guard let p else {
                let msg = "makeNodeSharedMemory: rank \(r) published no segment"
                state.fail(msg)
                throw CommunicatorError(msg)
            }
            segments.append(p)
            sizes.append(n)
        }
        try state.barrier(rank: rank)
        return NodeSharedMemory(rank: rank, segments: segments, segmentBytes: sizes) { [state, rank] in try state.barrier(rank: rank) }
    }

    /// Emulated nodes of `ranksPerNode` consecutive ranks (InProcessGroup.run(worldSize:ranksPerNode:)).
    public var topology: NodeTopology {
        let rpn = state.ranksPerNode
        return NodeTopology(nodeCount: state.size / rpn, node: rank / rpn, localRank: rank % rpn, localSize: rpn,
                            minLocalSize: rpn, maxLocalSize: rpn, hostname: "thread-node\(rank / rpn)")
    }

    private var hierarchicalGroups = 0

    /// The emulated node's ranks share memory as `makeNodeSharedMemory` does; the peers are a group of their own.
    public func makeHierarchicalGroups(segmentBytes bytes: Int) throws -> HierarchicalGroups? {
        let t = topology
        guard t.spansNodes else { return nil }
        hierarchicalGroups += 1
        let key = "hierarchical-\(hierarchicalGroups)"
        let node: NodeSharedMemory
        if t.localSize == 1 {
            let size = max(bytes, 64)
            let mine = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
            mine.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            state.keep(mine)
            node = NodeSharedMemory(rank: 0, segments: [mine], segmentBytes: [size]) {}
        } else {
            let group = InProcessCommunicator(rank: t.localRank, state: state.subgroup("\(key)-node\(t.node)", size: t.localSize))
            node = try group.makeNodeSharedMemory(segmentBytes: bytes)!
        }
        let peers = InProcessCommunicator(rank: t.node, state: state.subgroup("\(key)-peers\(t.localRank)", size: t.nodeCount))
        return HierarchicalGroups(node: node, peers: peers)
    }

    public func abort(code: Int32) -> Never {
        state.fail("rank \(rank) called abort(\(code))")
        fatalError("InProcessCommunicator.abort(code: \(code)) on rank \(rank)")
    }
}

public enum InProcessGroup {
    /// Runs `body` once per rank, each on its own thread with its own communicator, and waits for all of them.
    /// Returns the per-rank results in rank order; rethrows the first error (by rank) if any rank threw.
    /// - Parameter ranksPerNode: emulate nodes of this many consecutive ranks (`topology`,
    ///   `makeHierarchicalGroups`); must divide `worldSize`. Default: one node.
    public static func run<R: Sendable>(worldSize: Int, ranksPerNode: Int? = nil,
                                        _ body: @escaping @Sendable (InProcessCommunicator) throws -> R) throws -> [R] {
        precondition(worldSize > 0)
        precondition(ranksPerNode.map { $0 > 0 && worldSize % $0 == 0 } ?? true, "ranksPerNode must divide worldSize")
        let state = InProcessGroupState(size: worldSize, ranksPerNode: ranksPerNode)
        let results = ResultTable<R>(count: worldSize)
        let done = DispatchGroup()
        for r in 0..<worldSize {
            done.enter()
            let thread = Thread {
                let comm = InProcessCommunicator(rank: r, state: state)
                do { results.set(r, .success(try body(comm))) } catch {
                    state.fail("rank \(r) threw: \(error)")
                    results.set(r, .failure(error))
                }
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        let all = results.all()
        // Report the root cause: the first rank whose error was not just "group failed" because of another rank.
        let errors = all.compactMap { if case .failure(let e)? = $0 { return e } else { return nil } }
        if let first = errors.first(where: { !"\($0)".contains("group failed") }) ?? errors.first { throw first }
        return all.map { if case .success(let v)? = $0 { return v } else { fatalError("rank without result") } }
    }
}

final class ResultTable<R>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Result<R, Error>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: Result<R, Error>) { lock.lock(); values[i] = v; lock.unlock() }
    func all() -> [Result<R, Error>?] { lock.lock(); defer { lock.unlock() }; return values }
}
