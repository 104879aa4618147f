// NodeTopology: the wording the trainer's start-up line uses, and the single-node default every communicator
// without a topology of its own reports. The multi-node values themselves come from MPI and are checked end to end
// in Tests/CLITests/MultiNodeTests.swift (2 emulated nodes × 2 ranks).
import XCTest
import Dist

final class NodeTopologyTests: XCTestCase {
    func testDescriptionNamesNodesAndRanksPerNode() {
        func t(_ nodes: Int, _ local: Int, _ lo: Int, _ hi: Int) -> NodeTopology {
            NodeTopology(nodeCount: nodes, node: 0, localRank: 0, localSize: local, minLocalSize: lo, maxLocalSize: hi, hostname: "h")
        }
        XCTAssertEqual(t(1, 2, 2, 2).description, "1 node × 2 ranks")
        XCTAssertEqual(t(1, 1, 1, 1).description, "1 node × 1 rank")
        XCTAssertEqual(t(2, 2, 2, 2).description, "2 nodes × 2 ranks per node")
        XCTAssertEqual(t(4, 1, 1, 1).description, "4 nodes × 1 rank per node")
        XCTAssertEqual(t(3, 2, 1, 2).description, "3 nodes, 1 to 2 ranks per node")
        XCTAssertNil(t(3, 2, 1, 2).ranksPerNode)
        XCTAssertEqual(t(2, 2, 2, 2).ranksPerNode, 2)
        XCTAssertTrue(t(2, 2, 2, 2).spansNodes)
        XCTAssertFalse(t(1, 2, 2, 2).spansNodes)
    }

    func testCommunicatorsWithoutATopologyOfTheirOwnReportOneNode() throws {
        let local = LocalCommunicator().topology
        XCTAssertEqual(local.nodeCount, 1)
        XCTAssertEqual(local.localSize, 1)
        XCTAssertEqual(local.description, "1 node × 1 rank")
        XCTAssertEqual(DebugCommunicator(wrapping: LocalCommunicator()).topology, local)
        XCTAssertFalse(local.hostname.isEmpty)
    }
}
