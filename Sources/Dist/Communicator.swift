// Communicator: the only door to other ranks. Model and Training code talk to this protocol and never to MPI.
// `LocalCommunicator` is world size 1: every collective returns its input unchanged, so a plain `disttrain train`
// needs no MPI at all. `MPICommunicator` (MPICommunicator.swift) goes through the C shim in Sources/CMPI;
// `DebugCommunicator` (DebugCommunicator.swift) wraps either and cross-checks every call.
// Deliberately not here: point-to-point messaging, sub-communicators, anything model-specific.
// `topology` (NodeTopology.swift) says how the ranks are spread over nodes.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from a collective or from start-up, carrying enough context to name the failing call.
public struct CommunicatorError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reduction operations supported by `allReduce`.
public enum ReduceOp: String, Sendable { case sum, max, min }

/// A non-blocking all-reduce in flight. The buffer it was started on must not be read or written until `wait()`
/// returned (or `test()` returned true).
public protocol PendingReduction: AnyObject {
    /// True once the reduction has completed; never blocks.
    func test() throws -> Bool
    /// Blocks until the reduction has completed. Calling it again after completion is a no-op.
    func wait() throws
}

/// A reduction that finished before it was returned (world size 1, or a communicator without non-blocking support).
public final class CompletedReduction: PendingReduction {
    public init() {}
    public func test() throws -> Bool { true }
    public func wait() throws {}
}

/// Collective operations over all ranks of a job. Buffers are reduced in place. Every rank must issue the same
/// collectives in the same order with the same element counts (`DebugCommunicator` checks this).
public protocol Communicator: AnyObject {
    /// This process's rank in 0..<worldSize.
    var rank: Int { get }
    /// The number of ranks in the job.
    var worldSize: Int { get }
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws
    /// Starts an in-place all-reduce that completes in the background (MPI_Iallreduce). The default
    /// implementation runs the blocking `allReduce` and returns a completed handle.
    func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws -> PendingReduction
    /// Copies `buffer` from `root` into every other rank's `buffer` (same byte count everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
    /// Ends every rank of the job at once with `code` (used when one rank finds an unrecoverable error).
    func abort(code: Int32) -> Never
    /// Collective: a segment of `segmentBytes` (this rank's size; ranks may differ, 0 allowed) per rank that every
    /// rank can address (NodeSharedMemory), when all ranks share one node and the implementation supports it; nil
    /// otherwise (the default), and the caller passes messages.
    func makeNodeSharedMemory(segmentBytes: Int) throws -> NodeSharedMemory?
    /// How the ranks are spread over nodes (one node holding every rank unless the implementation knows better).
    var topology: NodeTopology { get }
    /// Collective: for a job spanning several nodes with the same number of ranks on each, node-shared memory over
    /// this rank's node (a segment of `segmentBytes` per local rank, indexed by local rank) and a communicator over
    /// the ranks of the same local rank on every node (ordered by node); nil otherwise (the default).
    func makeHierarchicalGroups(segmentBytes: Int) throws -> HierarchicalGroups?
    /// Personalised exchange (MPI_Alltoallv of bytes): `send` is one block per rank, contiguous in rank order
    /// (`sendCounts` bytes each); this rank's block q goes to rank q, and rank q's block for this rank lands in block
    /// q of `recv` (`recvCounts` bytes each, which must equal what rank q sends here). The default goes through
    /// broadcasts (for tests and world size 1); MPI sub-communicators override it.
    func allToAll(send: UnsafeRawBufferPointer, sendCounts: [Int], recv: UnsafeMutableRawBufferPointer, recvCounts: [Int]) throws
    /// In-place all-gather (MPI_Allgatherv of bytes): `buffer` is one block per rank, contiguous in rank order
    /// (`counts` bytes each, the same counts on every rank); rank q's block is its contribution, and afterwards every
    /// rank holds every block. The default broadcasts each block from its rank.
    func allGather(_ buffer: UnsafeMutableRawBufferPointer, counts: [Int]) throws
    /// Non-blocking `allToAll` (MPI_Ialltoallv): neither buffer may be touched until the handle completed. The
    /// default runs the blocking exchange and returns a completed handle.
    func startAllToAll(send: UnsafeRawBufferPointer, sendCounts: [Int], recv: UnsafeMutableRawBufferPointer, recvCounts: [Int]) throws -> PendingReduction
}

/// What a hierarchical (two-level) reduction needs: the node's shared memory and the cross-node peers.
public struct HierarchicalGroups {
    /// Shared memory over the ranks of this node; `rank` is the local rank.
    public let node: NodeSharedMemory
    /// The ranks with this rank's local rank, one per node; `rank` is the node's index.
    public let peers: Communicator
    public init(node: NodeSharedMemory, peers: Communicator) {
        self.node = node
        self.peers = peers
    }
}

extension Communicator {
    public func makeNodeSharedMemory(segmentBytes: Int) throws -> NodeSharedMemory? { nil }

    public var topology: NodeTopology { NodeTopology.singleNode(rank: rank, worldSize: worldSize) }

    public func makeHierarchicalGroups(segmentBytes: Int) throws -> HierarchicalGroups? { nil }

    public func allToAll(send: UnsafeRawBufferPointer, sendCounts: [Int], recv: UnsafeMutableRawBufferPointer, recvCounts: [Int]) throws {
        try Self.checkBlocks(sendCounts, send.count, worldSize, "allToAll send")
        try Self.checkBlocks(recvCounts, recv.count, worldSize, "allToAll recv")
        // Every rank's send counts (an exact integer sum of one non-zero row each), then each rank's whole send
        // buffer broadcast in turn; each rank keeps its block.
        let W = worldSize
        var table = [Int64](repeating: 0, count: W * W)
        for q in 0..<W { table[rank * W + q] = Int64(sendCounts[q]) }
        if W > 1 { try allReduce(&table, op: .sum) }
        var recvOffset = 0
        for q in 0..<W {
            let row = (0..<W).map { Int(table[q * W + $0]) }
            guard row[rank] == recvCounts[q] else {
                throw CommunicatorError("allToAll: rank \(q) sends \(row[rank]) bytes to rank \(rank), which expects \(recvCounts[q])")
            }
            var block = [UInt8](repeating: 0, count: row.reduce(0, +))
            if q == rank { block.withUnsafeMutableBytes { $0.copyMemory(from: send) } }
            if W > 1 { try broadcast(&block, root: q) }
            let from = row[..<rank].reduce(0, +)
            block.withUnsafeBytes { b in
                if recvCounts[q] > 0 { (recv.baseAddress! + recvOffset).copyMemory(from: b.baseAddress! + from, byteCount: recvCounts[q]) }
            }
            recvOffset += recvCounts[q]
        }
    }

    public func startAllToAll(send: UnsafeRawBufferPointer, sendCounts: [Int], recv: UnsafeMutableRawBufferPointer, recvCounts: [Int]) throws -> PendingReduction {
        try allToAll(send: send, sendCounts: sendCounts, recv: recv, recvCounts: recvCounts)
        return CompletedReduction()
    }

    public func allGather(_ buffer: UnsafeMutableRawBufferPointer, counts: [Int]) throws {
        try Self.checkBlocks(counts, buffer.count, worldSize, "allGather")
        var offset = 0
        for q in 0..<worldSize {
            if counts[q] > 0, worldSize > 1 {
                try broadcast(UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + counts[q])]), root: q)
            }
            offset += counts[q]
        }
    }

    /// Throws unless `counts` has one non-negative entry per rank and they add up to at most `total` bytes.
    static func checkBlocks(_ counts: [Int], _ total: Int, _ worldSize: Int, _ what: String) throws {
        guard counts.count == worldSize, counts.allSatisfy({ $0 >= 0 }), counts.reduce(0, +) <= total else {
            throw CommunicatorError("\(what): \(counts.count) block sizes \(counts) for \(worldSize) ranks and a buffer of \(total) bytes")
        }
    }

    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws -> PendingReduction {
        try allReduce(buffer, op: op)
        return CompletedReduction()
    }

    public var isRoot: Bool { rank == 0 }

    /// Sums a single scalar across ranks.
    public func sum(_ value: Double) throws -> Double {
        var v = value
        try withUnsafeMutablePointer(to: &v) { try allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: .sum) }
        return v
    }

    /// Sums a single integer across ranks.
    public func sum(_ value: Int64) throws -> Int64 {
        var v = value
        try withUnsafeMutablePointer(to: &v) { try allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: .sum) }
        return v
    }

    /// In-place sum of a Swift array.
    public func allReduceSum(_ array: inout [Float]) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: .sum) }
    }
    public func allReduceSum(_ array: inout [Double]) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: .sum) }
    }
    public func allReduceSum(_ array: inout [Int64]) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: .sum) }
    }

    /// In-place reduction of a Swift array with any op (e.g. `.max` of per-rank timings).
    public func allReduce(_ array: inout [Int64], op: ReduceOp) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: op) }
    }
    public func allReduce(_ array: inout [Float], op: ReduceOp) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: op) }
    }
    public func allReduce(_ array: inout [Double], op: ReduceOp) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: op) }
    }

    /// Every rank's `value`, indexed by rank (an all-gather built from a sum over a zero-filled array, which is
    /// exact for integers and needs no extra shim call).
    public func allGather(_ value: Int64) throws -> [Int64] {
        var slots = [Int64](repeating: 0, count: worldSize)
        slots[rank] = value
        try allReduce(&slots, op: .sum)
        return slots
    }

    /// Broadcasts a typed buffer (e.g. the flat parameter buffer, so replicas start bit-identical).
    public func broadcast<T: BitwiseCopyable>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try broadcast(UnsafeMutableRawBufferPointer(buffer), root: root)
    }

    /// Broadcasts an array of trivially copyable values from `root` (same count on every rank).
    public func broadcast<T: BitwiseCopyable>(_ array: inout [T], root: Int) throws {
        try array.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }
}

/// World size 1: collectives are the identity.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var worldSize: Int { 1 }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

extension Duration {
    /// The duration in seconds, as a Double (for timings in logs and metrics).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
