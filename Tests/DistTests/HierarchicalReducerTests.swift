// The hierarchical (multi-node) reduction on thread-ranks grouped into emulated nodes
// (InProcessGroup.run(worldSize:ranksPerNode:)): in place within each node, each share all-reduced across the nodes.
// Inputs are multiples of 1/8 small enough that every partial sum is exact in Float, so the result must equal the
// plain message path's bit for bit whatever the summation order, and the expected value is computed here by hand.
// The real-MPI version runs end to end in Tests/CLITests/MultiNodeTests.swift (2 emulated nodes × 2 ranks).
import XCTest
import Dist

final class HierarchicalReducerTests: XCTestCase {
    static let n = 211, table = 40..<100, rowLength = 6   // 10 rows of 6; rows 1, 4, 5, 9 touched by default

    static func value(_ i: Int, rank: Int) -> Float { Float((i * 31 + rank * 17) % 23) * 0.125 - 1.25 }

    static func fill(_ g: UnsafeMutableBufferPointer<Float>, rank: Int, rows: [Int]) {
        for i in g.indices { g[i] = value(i, rank: rank) }
        for r in 0..<10 where !rows.contains(r) {   // untouched rows are zero on every rank (reduceRows' contract)
            for c in 0..<rowLength { g[table.lowerBound + r * rowLength + c] = 0 }
        }
    }

    /// Dense stages (blocking and async), a row-sparse table and the gaps finish() covers; asks for scatter-only,
    /// which the hierarchical path must ignore (every rank gets the whole gradient).
    static func step(_ reducer: GradientReducer, _ g: UnsafeMutableBufferPointer<Float>, rows: [Int], scatterOnly: Bool) throws {
        try reducer.begin(g, scale: 0.25, scatterOnly: scatterOnly)
        try reducer.reduceNow(range: 150..<203)
        try reducer.reduceNow(range: 100..<150)
        try reducer.reduceRows(range: table, rowLength: rowLength, rows: rows)
        try reducer.reduceAsync(range: 3..<20)
        try reducer.finish()   // gaps 0..<3, 20..<40, 203..<211
    }

    func check(worldSize: Int, ranksPerNode: Int, rows: [Int] = [1, 4, 5, 9]) throws {
        let n = Self.n
        let out = try InProcessGroup.run(worldSize: worldSize, ranksPerNode: ranksPerNode) { comm -> [Double] in
            let t = comm.topology
            XCTAssertEqual(t.nodeCount, worldSize / ranksPerNode)
            XCTAssertEqual(t.node, comm.rank / ranksPerNode)
            XCTAssertEqual(t.localRank, comm.rank % ranksPerNode)
            let h = try XCTUnwrap(try comm.makeHierarchicalGroups(segmentBytes: GradientReducer.sharedBytes(elements: n, worldSize: ranksPerNode)))
            XCTAssertEqual(h.node.worldSize, ranksPerNode)
            XCTAssertEqual(h.node.rank, t.localRank)
            XCTAssertEqual(h.peers.worldSize, t.nodeCount)
            XCTAssertEqual(h.peers.rank, t.node)
            let g = UnsafeMutableBufferPointer(start: h.node.base.assumingMemoryBound(to: Float.self), count: n)
            let hierarchical = GradientReducer(communicator: comm, bucketBytes: 64, shared: h.node, crossNode: h.peers)
            var plain = [Float](repeating: 0, count: n)
            var result: [Double] = []
            for round in 0..<3 {   // several steps: the norm slots alternate
                Self.fill(g, rank: comm.rank + round, rows: rows)
                try Self.step(hierarchical, g, rows: rows, scatterOnly: round == 1)
                XCTAssertTrue(hierarchical.ownedShares.isEmpty || !hierarchical.scatterOnly, "no scatter-only step across nodes")
                try plain.withUnsafeMutableBufferPointer { p in
                    Self.fill(p, rank: comm.rank + round, rows: rows)
                    let messages = GradientReducer(communicator: comm, bucketBytes: 64)
                    try Self.step(messages, p, rows: rows, scatterOnly: false)
                    XCTAssertEqual(Array(g).map(\.bitPattern), Array(p).map(\.bitPattern), "rank \(comm.rank) round \(round): hierarchical vs messages")
                    XCTAssertEqual(hierarchical.sumOfSquares, messages.sumOfSquares, accuracy: messages.sumOfSquares * 1e-12, "norm")
                }
                result.append(hierarchical.sumOfSquares)
                result += g.map(Double.init)
            }
            return result
        }
        for r in 1..<worldSize { XCTAssertEqual(out[r], out[0], "rank \(r) holds the same bits and norm as rank 0") }
        // Round 0 by hand: element i is 0.25 × Σ_r value(i, r); untouched table rows stay zero.
        let flat = Array(out[0][1..<(1 + n)])
        for i in [0, 7, 25, 120, 160, 205] {
            let want = 0.25 * (0..<worldSize).reduce(0.0) { $0 + Double(Self.value(i, rank: $1)) }
            XCTAssertEqual(flat[i], want, "element \(i)")
        }
        XCTAssertEqual(flat[Self.table.lowerBound + 2 * Self.rowLength], 0, "an untouched row stays zero")
        let touched = Self.table.lowerBound + rows[0] * Self.rowLength + 3
        XCTAssertEqual(flat[touched], 0.25 * (0..<worldSize).reduce(0.0) { $0 + Double(Self.value(touched, rank: $1)) },
                       "a touched row is reduced across every node")
        XCTAssertEqual(out[0][0], flat.reduce(0) { $0 + $1 * $1 }, accuracy: out[0][0] * 1e-12, "the norm covers every element once")
    }

    func testTwoNodesOfTwoRanks() throws { try check(worldSize: 4, ranksPerNode: 2) }
    func testThreeNodesOfOneRank() throws { try check(worldSize: 3, ranksPerNode: 1) }
    func testTwoNodesOfThreeRanks() throws { try check(worldSize: 6, ranksPerNode: 3) }
    /// One touched row: two of the three local ranks have no rows to reduce (and skip the cross-node call together).
    func testTwoNodesOfThreeRanksWithOneTouchedRow() throws { try check(worldSize: 6, ranksPerNode: 3, rows: [4]) }

    func testOneNodeHasNoHierarchy() throws {
        let groups = try InProcessGroup.run(worldSize: 2) { comm in
            try comm.makeHierarchicalGroups(segmentBytes: 64) == nil && comm.topology.nodeCount == 1
        }
        XCTAssertEqual(groups, [true, true])
    }
}
