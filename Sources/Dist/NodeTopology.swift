// NodeTopology: how a job's ranks are spread over nodes, as MPI sees it (the ranks that can share memory form a
// node: MPI_COMM_TYPE_SHARED), plus this rank's place in it and its host name. The trainer names it in its start-up
// line ("2 nodes × 2 ranks per node"); a multi-node reduction would split its communicators by it.
// Deliberately not here: choosing a reduction path (the trainer and GradientReducer decide), or any MPI call
// (MPICommunicator fills it in at start-up with one collective).
#if canImport(Glibc)
import Glibc
#endif

public struct NodeTopology: Sendable, Equatable, CustomStringConvertible {
    /// Number of nodes in the job.
    public let nodeCount: Int
    /// This rank's node, 0..<nodeCount (nodes numbered in the order of their lowest world rank).
    public let node: Int
    /// This rank's index among the ranks of its node (ordered by world rank).
    public let localRank: Int
    /// Ranks on this rank's node.
    public let localSize: Int
    /// Fewest and most ranks on any node (equal when every node runs the same number of ranks).
    public let minLocalSize: Int
    public let maxLocalSize: Int
    /// This process's host name (what `hostname` prints on its node).
    public let hostname: String

    public init(nodeCount: Int, node: Int, localRank: Int, localSize: Int, minLocalSize: Int, maxLocalSize: Int,
                hostname: String) {
        self.nodeCount = nodeCount
        self.node = node
        self.localRank = localRank
        self.localSize = localSize
        self.minLocalSize = minLocalSize
        self.maxLocalSize = maxLocalSize
        self.hostname = hostname
    }

    /// Every rank of a world of `worldSize` on one node (world size 1, the in-process communicator).
    public static func singleNode(rank: Int, worldSize: Int) -> NodeTopology {
        NodeTopology(nodeCount: 1, node: 0, localRank: rank, localSize: worldSize, minLocalSize: worldSize,
                     maxLocalSize: worldSize, hostname: NodeTopology.currentHostname())
    }

    /// Ranks per node when every node runs the same number; nil otherwise.
    public var ranksPerNode: Int? { minLocalSize == maxLocalSize ? minLocalSize : nil }

    /// True when the job spans more than one node.
    public var spansNodes: Bool { nodeCount > 1 }

    /// "1 node × 2 ranks", "2 nodes × 2 ranks per node", "3 nodes, 1 to 2 ranks per node".
    public var description: String {
        func ranks(_ n: Int) -> String { n == 1 ? "1 rank" : "\(n) ranks" }
        if nodeCount == 1 { return "1 node × \(ranks(localSize))" }
        if let r = ranksPerNode { return "\(nodeCount) nodes × \(ranks(r)) per node" }
        return "\(nodeCount) nodes, \(minLocalSize) to \(maxLocalSize) ranks per node"
    }

    /// The host name of this process (gethostname), or "?" if it cannot be read.
    public static func currentHostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "?" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
