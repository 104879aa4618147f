// NodeSharedMemory: memory that every rank of a single-node job maps (an MPI-3 shared-memory window), so that a
// gradient reduction can read the other ranks' buffers in place instead of sending them through MPI's
// shared-memory transport (which copies every message through the kernel, and for 2 ranks on this machine moves a
// 44 MB gradient in ~7 ms where reading it in place takes ~3.5 ms).
//
// One segment per rank, each of the byte count its rank asked for (usually all equal; a single node-wide buffer is
// rank 0's segment with empty ones elsewhere); `segment(of:)` is any rank's segment as mapped in this process.
// Ordering is explicit: a write to any segment is visible to the other ranks only after every rank has called
// `sync()` (a node-wide memory barrier and rendezvous). A job whose ranks span several nodes gets no shared memory
// (the communicator returns nil) and uses message passing.
// Deliberately not here: what is stored in the segments and who reads what (GradientReducer's shared path).

#if canImport(Glibc)
import Glibc
#endif

public final class NodeSharedMemory {
    /// Where OpenMPI's shared-memory windows keep their backing files on Linux (osc_sm_backing_directory).
    public static let backingDirectory = "/dev/shm"

    /// Free bytes in the backing directory (nil if it cannot be queried). Containers often mount a 64 MB /dev/shm.
    public static func freeBackingBytes() -> Int? {
        var st = statvfs()
        guard statvfs(backingDirectory, &st) == 0 else { return nil }
        return Int(st.f_bavail) * Int(st.f_frsize)
    }

    public let rank: Int
    public let worldSize: Int
    /// Bytes of this rank's segment.
    public var bytes: Int { segmentBytes[rank] }
    /// Bytes of every rank's segment, by rank (at least 64: an empty segment still has an address).
    public let segmentBytes: [Int]
    private let segments: [UnsafeMutableRawPointer]
    private let syncBody: () throws -> Void

    /// - Parameters:
    ///   - segments: every rank's segment as mapped here, indexed by rank (64-byte aligned).
    ///   - segmentBytes: the size of each, by rank.
    ///   - sync: the node-wide barrier that orders the segments' loads and stores.
    public init(rank: Int, segments: [UnsafeMutableRawPointer], segmentBytes: [Int], sync: @escaping () throws -> Void) {
        precondition(segments.indices.contains(rank), "NodeSharedMemory: rank \(rank) has no segment")
        precondition(segmentBytes.count == segments.count, "NodeSharedMemory: \(segmentBytes.count) sizes for \(segments.count) segments")
        self.rank = rank
        self.worldSize = segments.count
        self.segmentBytes = segmentBytes
        self.segments = segments
        self.syncBody = sync
    }

    /// This rank's segment.
    public var base: UnsafeMutableRawPointer { segments[rank] }

    /// Rank `r`'s segment as mapped in this process.
    public func segment(of r: Int) -> UnsafeMutableRawPointer { segments[r] }

    /// Node-wide memory barrier and rendezvous: every rank's earlier writes are visible to all after it returns.
    public func sync() throws { try syncBody() }
}
