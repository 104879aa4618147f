// MPICommunicator: `Communicator` over MPI_COMM_WORLD through the CMPI shim. Every return code is checked and
// turned into a `CommunicatorError` naming the call, the element count, the rank and the world size. Every blocking
// collective (and every wait on a non-blocking one) is numbered and reported to a `Watchdog`, so a rank stuck in a
// collective aborts the job with a message instead of hanging.
// Deliberately not here: argument cross-checking between ranks (DebugCommunicator), bucketing (GradientReducer).
// MPI_Finalize is not called from deinit: MPI can be initialised only once per process, and tests create several
// communicators; call `finalize()` explicitly at the very end of a program.
import CMPI
#if canImport(Glibc)
import Glibc
#endif

public final class MPICommunicator: Communicator, MPITypedReduce {
    public let rank: Int
    public let worldSize: Int
    /// The MPI thread level granted (CMPI_THREAD_*); FUNNELED is what is requested by default: all MPI calls come
    /// from the thread that initialised MPI, except the watchdog's final MPI_Abort.
    public let providedThreadLevel: Int32
    /// Number of collectives issued so far on this rank (the watchdog and error messages quote it).
    public private(set) var sequence = 0
    public let watchdog: Watchdog
    /// How the job's ranks are spread over nodes (MPI_COMM_TYPE_SHARED), found once at start-up.
    public let topology: NodeTopology

    /// Initialises MPI (once per process; a second call reuses the running instance) and queries rank and size.
    /// - Parameters:
    ///   - threadLevel: CMPI_THREAD_* level to request.
    ///   - watchdogTimeout: seconds any single collective may block before the job is aborted; 0 = off.
    public init(threadLevel: Int32 = Int32(CMPI_THREAD_FUNNELED), watchdogTimeout: Double = 300) throws {
        var flag: Int32 = 0
        try MPICommunicator.check(cmpi_initialized(&flag), "MPI_Initialized", rank: -1, size: -1)
        var provided: Int32 = threadLevel
        if flag != 0 {
            var finalized: Int32 = 0
            try MPICommunicator.check(cmpi_finalized(&finalized), "MPI_Finalized", rank: -1, size: -1)
            if finalized != 0 {
                throw CommunicatorError("MPI was already finalized in this process and cannot be initialised again; "
                                        + "create the MPICommunicator once and finalize only at exit")
            }
        } else {
            try MPICommunicator.check(cmpi_init(threadLevel, &provided), "MPI_Init_thread", rank: -1, size: -1)
        }
        var r: Int32 = 0, s: Int32 = 0
        try MPICommunicator.check(cmpi_rank(&r), "MPI_Comm_rank", rank: -1, size: -1)
        try MPICommunicator.check(cmpi_size(&s), "MPI_Comm_size", rank: Int(r), size: -1)
        rank = Int(r)
        worldSize = Int(s)
        providedThreadLevel = provided
        var t = cmpi_topology_info()
        try MPICommunicator.check(cmpi_topology(&t), "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", rank: Int(r), size: Int(s))
        let host = NodeTopology.currentHostname()
        topology = NodeTopology(nodeCount: Int(t.node_count), node: Int(t.node), localRank: Int(t.local_rank),
                                localSize: Int(t.local_size), minLocalSize: Int(t.min_local_size),
                                maxLocalSize: Int(t.max_local_size), hostname: host)
        // The watchdog's message names the node too: on a multi-node job that is where one looks next.
        let label = t.node_count > 1 ? "rank \(r) of \(s) (on \(host), node \(t.node) of \(t.node_count))" : "rank \(r) of \(s)"
        watchdog = Watchdog(timeout: watchdogTimeout, rankLabel: label) { _ in
            // MPI_Abort from a non-main thread is outside FUNNELED's promise, but OpenMPI implements it by asking the
            // launcher to kill the job, which is exactly what is needed; _exit is the fallback if it ever returns.
            _ = cmpi_abort(Watchdog.abortCode)
            _exit(Watchdog.abortCode)
        }
    }

    static func check(_ code: Int32, _ call: @autoclosure () -> String, rank: Int, size: Int) throws {
        guard code != 0 else { return }
        var buf = [CChar](repeating: 0, count: 512)
        cmpi_error_string(code, &buf, Int32(buf.count))
        let who = rank < 0 ? "" : " on rank \(rank)" + (size < 0 ? "" : " of \(size)")
        throw CommunicatorError("\(call()) failed\(who) with MPI error \(code): \(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
    }

    private func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        try Self.check(code, call(), rank: rank, size: worldSize)
    }

    /// Runs one blocking collective under the watchdog.
    fileprivate func collective(_ name: @autoclosure () -> String, _ body: () -> Int32) throws {
        sequence += 1
        let label = watchdog.timeout > 0 ? name() : ""
        watchdog.enter(label, sequence: sequence)
        let code = body()
        watchdog.leave()
        if code != 0 { try check(code, "collective #\(sequence) \(name())") }
    }

    static func cOp(_ op: ReduceOp) -> Int32 {
        switch op {
        case .sum: return Int32(CMPI_OP_SUM)
        case .max: return Int32(CMPI_OP_MAX)
        case .min: return Int32(CMPI_OP_MIN)
        }
    }

    func reduce(_ base: UnsafeMutableRawPointer?, _ count: Int, _ dtype: Int32, _ typeName: String,
                _ op: ReduceOp) throws {
        guard count > 0 else { return }
        try collective("MPI_Allreduce(\(typeName) × \(count), \(op))") {
            cmpi_allreduce(base, count, dtype, Self.cOp(op))
        }
    }


    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws -> PendingReduction {
        guard buffer.count > 0 else { return CompletedReduction() }
        sequence += 1
        let name = "MPI_Iallreduce(float × \(buffer.count), \(op))"
        var request: OpaquePointer?
        try check(cmpi_iallreduce(buffer.baseAddress, buffer.count, Int32(CMPI_FLOAT), Self.cOp(op), &request),
                  "collective #\(sequence) \(name)")
        guard let request else { throw CommunicatorError("\(name) returned no request on rank \(rank)") }
        return MPIPendingReduction(request: request, name: name, sequence: sequence, communicator: self)
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard buffer.count > 0 else { return }
        guard (0..<worldSize).contains(root) else {
            throw CommunicatorError("MPI_Bcast: root \(root) is not a rank (world size \(worldSize))")
        }
        try collective("MPI_Bcast(\(buffer.count) bytes from rank \(root))") {
            cmpi_bcast(buffer.baseAddress, buffer.count, Int32(CMPI_BYTE), Int32(root))
        }
    }

    public func barrier() throws {
        try collective("MPI_Barrier") { cmpi_barrier() }
    }

    /// An MPI-3 shared-memory window over the node's ranks when the whole job runs on one node (nil for a job that
    /// spans nodes, or for a world of one). Its `sync` is a watchdog-guarded collective like any other.
    public func makeNodeSharedMemory(segmentBytes bytes: Int) throws -> NodeSharedMemory? {
        guard worldSize > 1 else { return nil }
        var handle: OpaquePointer?
        var base: UnsafeMutableRawPointer?
        try collective("MPI_Win_allocate_shared(\(bytes) bytes per rank)") { cmpi_shm_create(bytes, &handle, &base) }
        guard let handle else { return nil }
        var segments: [UnsafeMutableRawPointer] = []
        for r in 0..<worldSize {
            guard let p = cmpi_shm_segment(handle, Int32(r)) else {
                throw CommunicatorError("MPI_Win_shared_query gave no segment for rank \(r) on rank \(rank) of \(worldSize)")
            }
            segments.append(p)
        }
        // The window lives until the process ends (freeing it is collective; MPI_Finalize releases it).
        let sizes = (0..<worldSize).map { Int(cmpi_shm_segment_bytes(handle, Int32($0))) }
        return NodeSharedMemory(rank: rank, segments: segments, segmentBytes: sizes) { [self] in
            try collective("node shared-memory barrier") { cmpi_shm_sync(handle) }
        }
    }

    /// Multi-node jobs with the same number of ranks on every node: one shared-memory window per node and the
    /// communicator of this rank's cross-node peers (same local rank, ordered by node). Collective; nil for a
    /// single-node job (use `makeNodeSharedMemory`) or uneven ranks per node.
    public func makeHierarchicalGroups(segmentBytes bytes: Int) throws -> HierarchicalGroups? {
        let t = topology
        guard t.spansNodes, t.ranksPerNode != nil else { return nil }
        var handle: OpaquePointer?
        var base: UnsafeMutableRawPointer?
        try collective("MPI_Win_allocate_shared per node (\(bytes) bytes per rank)") { cmpi_shm_create_node(bytes, &handle, &base) }
        guard let handle else { throw CommunicatorError("MPI_Win_allocate_shared gave no window on rank \(rank) of \(worldSize)") }
        var segments: [UnsafeMutableRawPointer] = []
        for r in 0..<t.localSize {
            guard let p = cmpi_shm_segment(handle, Int32(r)) else {
                throw CommunicatorError("MPI_Win_shared_query gave no segment for local rank \(r) on rank \(rank) of \(worldSize)")
            }
            segments.append(p)
        }
        let sizes = (0..<t.localSize).map { Int(cmpi_shm_segment_bytes(handle, Int32($0))) }
        let node = NodeSharedMemory(rank: t.localRank, segments: segments, segmentBytes: sizes) { [self] in
            try collective("node shared-memory barrier") { cmpi_shm_sync(handle) }
        }
        var peers: OpaquePointer?
        try collective("MPI_Comm_split(local rank \(t.localRank))") { cmpi_comm_split(Int32(t.localRank), Int32(t.node), &peers) }
        guard let peers else { throw CommunicatorError("MPI_Comm_split gave no communicator on rank \(rank) of \(worldSize)") }
        return HierarchicalGroups(node: node, peers: try MPISubCommunicator(handle: peers, parent: self,
                                                                            label: "ranks of local rank \(t.localRank)"))
    }

    public func abort(code: Int32) -> Never {
        _ = cmpi_abort(code)
        _exit(code)  // MPI_Abort does not return on success; this only covers a broken MPI.
    }

    /// MPI_Finalize. Call once, at the end of the program, after the last collective. Never in tests.
    public func finalize() throws {
        watchdog.stop()
        var done: Int32 = 0
        try check(cmpi_finalized(&done), "MPI_Finalized")
        if done == 0 { try check(cmpi_finalize(), "MPI_Finalize") }
    }

    fileprivate func wait(_ request: OpaquePointer, name: String, sequence: Int) throws {
        watchdog.enter("MPI_Wait on \(name)", sequence: sequence)
        let code = cmpi_wait(request)
        watchdog.leave()
        try check(code, "MPI_Wait on collective #\(sequence) \(name)")
    }

    fileprivate func test(_ request: OpaquePointer, name: String, sequence: Int) throws -> Bool {
        var done: Int32 = 0
        try check(cmpi_test(request, &done), "MPI_Test on collective #\(sequence) \(name)")
        return done != 0
    }
}

/// An MPI_Iallreduce in flight; owns the shim's request until completion.
final class MPIPendingReduction: PendingReduction {
    private var request: OpaquePointer?
    private let name: String
    private let sequence: Int
    private let communicator: MPICommunicator

    init(request: OpaquePointer, name: String, sequence: Int, communicator: MPICommunicator) {
        self.request = request
        self.name = name
        self.sequence = sequence
        self.communicator = communicator
    }

    func test() throws -> Bool {
        guard let r = request else { return true }
        if try communicator.test(r, name: name, sequence: sequence) {
            _ = cmpi_request_free(r)
            request = nil
            return true
        }
        return false
    }

    func wait() throws {
        guard let r = request else { return }
        request = nil  // cmpi_wait frees it even on error
        try communicator.wait(r, name: name, sequence: sequence)
    }

    deinit {
        // Dropping an unfinished request would let MPI write into a buffer the caller may already have freed;
        // complete it instead (errors cannot be thrown from deinit, and the caller has given up on the result).
        if let r = request { _ = cmpi_wait(r) }
    }
}

/// A communicator over a split of MPI_COMM_WORLD (e.g. one rank per node). Its collectives are numbered and guarded
/// by the parent's watchdog, and their errors name the group; abort ends the whole job.
public final class MPISubCommunicator: Communicator, MPITypedReduce {
    public let rank: Int
    public let worldSize: Int
    private let handle: OpaquePointer
    private let parent: MPICommunicator
    private let label: String

    init(handle: OpaquePointer, parent: MPICommunicator, label: String) throws {
        self.handle = handle
        self.parent = parent
        self.label = label
        var r: Int32 = 0, s: Int32 = 0
        try MPICommunicator.check(cmpi_comm_rank(handle, &r), "MPI_Comm_rank(\(label))", rank: parent.rank, size: parent.worldSize)
        try MPICommunicator.check(cmpi_comm_size(handle, &s), "MPI_Comm_size(\(label))", rank: parent.rank, size: parent.worldSize)
        rank = Int(r)
        worldSize = Int(s)
    }

    func reduce(_ base: UnsafeMutableRawPointer?, _ count: Int, _ dtype: Int32, _ typeName: String, _ op: ReduceOp) throws {
        guard count > 0 else { return }
        try parent.collective("MPI_Allreduce(\(typeName) × \(count), \(op)) over the \(label)") {
            cmpi_comm_allreduce(handle, base, count, dtype, MPICommunicator.cOp(op))
        }
    }


    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard buffer.count > 0 else { return }
        guard (0..<worldSize).contains(root) else {
            throw CommunicatorError("MPI_Bcast over the \(label): root \(root) is not a rank (size \(worldSize))")
        }
        try parent.collective("MPI_Bcast(\(buffer.count) bytes from rank \(root)) over the \(label)") {
            cmpi_comm_bcast(handle, buffer.baseAddress, buffer.count, Int32(CMPI_BYTE), Int32(root))
        }
    }

    public func barrier() throws {
        try parent.collective("MPI_Barrier over the \(label)") { cmpi_comm_barrier(handle) }
    }

    public func allToAll(send: UnsafeRawBufferPointer, sendCounts: [Int], recv: UnsafeMutableRawBufferPointer, recvCounts: [Int]) throws {
        try Self.checkBlocks(sendCounts, send.count, worldSize, "MPI_Alltoallv over the \(label) (send)")
        try Self.checkBlocks(recvCounts, recv.count, worldSize, "MPI_Alltoallv over the \(label) (recv)")
        let sc = try Self.int32(sendCounts), rc = try Self.int32(recvCounts)
        let sd = try Self.int32(Self.offsets(sendCounts)), rd = try Self.int32(Self.offsets(recvCounts))
        try parent.collective("MPI_Alltoallv(\(send.count) bytes out, \(recv.count) in) over the \(label)") {
            cmpi_comm_alltoallv(handle, send.baseAddress, sc, sd, recv.baseAddress, rc, rd)
        }
    }

    public func startAllToAll(send: UnsafeRawBufferPointer, sendCounts: [Int], recv: UnsafeMutableRawBufferPointer, recvCounts: [Int]) throws -> PendingReduction {
        try Self.checkBlocks(sendCounts, send.count, worldSize, "MPI_Ialltoallv over the \(label) (send)")
        try Self.checkBlocks(recvCounts, recv.count, worldSize, "MPI_Ialltoallv over the \(label) (recv)")
        let sc = try Self.int32(sendCounts), rc = try Self.int32(recvCounts)
        let sd = try Self.int32(Self.offsets(sendCounts)), rd = try Self.int32(Self.offsets(recvCounts))
        var request: OpaquePointer?
        let name = "MPI_Ialltoallv(\(send.count) bytes out, \(recv.count) in) over the \(label)"
        try parent.collective(name) { cmpi_comm_ialltoallv(handle, send.baseAddress, sc, sd, recv.baseAddress, rc, rd, &request) }
        guard let request else { throw CommunicatorError("\(name) gave no request on rank \(parent.rank)") }
        return MPIPendingReduction(request: request, name: name, sequence: parent.sequence, communicator: parent)
    }

    public func allGather(_ buffer: UnsafeMutableRawBufferPointer, counts: [Int]) throws {
        try Self.checkBlocks(counts, buffer.count, worldSize, "MPI_Allgatherv over the \(label)")
        let c = try Self.int32(counts), d = try Self.int32(Self.offsets(counts))
        try parent.collective("MPI_Allgatherv(\(buffer.count) bytes) over the \(label)") {
            cmpi_comm_allgatherv(handle, buffer.baseAddress, c, d)
        }
    }

    /// Start offsets of blocks of `counts` laid end to end.
    static func offsets(_ counts: [Int]) -> [Int] {
        var o = 0
        return counts.map { c in defer { o += c }; return o }
    }

    static func int32(_ v: [Int]) throws -> [Int32] {
        guard v.allSatisfy({ $0 <= Int(Int32.max) }) else { throw CommunicatorError("a block of more than 2 GiB in one collective: \(v.max() ?? 0) bytes") }
        return v.map { Int32($0) }
    }

    public func abort(code: Int32) -> Never { parent.abort(code: code) }
}

/// The world and its sub-communicators reduce the same three element types through one untyped `reduce` each
/// (MPI_Allreduce on their own handle, under the watchdog); the typed entry points are written once, here.
protocol MPITypedReduce {
    func reduce(_ base: UnsafeMutableRawPointer?, _ count: Int, _ dtype: Int32, _ typeName: String, _ op: ReduceOp) throws
}

extension MPITypedReduce {
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try reduce(buffer.baseAddress, buffer.count, Int32(CMPI_FLOAT), "float", op)
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try reduce(buffer.baseAddress, buffer.count, Int32(CMPI_DOUBLE), "double", op)
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {
        try reduce(buffer.baseAddress, buffer.count, Int32(CMPI_INT64), "int64", op)
    }
}
