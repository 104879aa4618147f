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
            // No placement: scatter-only is not available, so asking for it must be ignored.
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

    // MARK: ZeRO-1 across nodes

    /// Scatter-only steps across nodes: each world rank's owned blocks (1/W of every dense range, bucket by bucket)
    /// hold the plain reduction's bits; the blocks of all ranks tile the dense ranges exactly once; table rows are
    /// reduced on every node by their owning local rank; the norm is the plain one; and `gatherUpdatedValues` gives
    /// every rank every block written by its owner.
    func checkZeRO(worldSize: Int, ranksPerNode: Int, rows: [Int] = [1, 4, 5, 9]) throws {
        let n = Self.n
        let out = try InProcessGroup.run(worldSize: worldSize, ranksPerNode: ranksPerNode) { comm -> [[Int]] in
            let t = comm.topology
            let h = try XCTUnwrap(try comm.makeHierarchicalGroups(segmentBytes: GradientReducer.sharedBytes(elements: n, worldSize: ranksPerNode)))
            let v = try XCTUnwrap(try comm.makeHierarchicalGroups(segmentBytes: t.localRank == 0 ? n * 4 : 0))
            let placement = (0..<worldSize).map { (node: $0 / ranksPerNode, local: $0 % ranksPerNode) }
            let g = UnsafeMutableBufferPointer(start: h.node.base.assumingMemoryBound(to: Float.self), count: n)
            let values = UnsafeMutableBufferPointer(start: v.node.segment(of: 0).assumingMemoryBound(to: Float.self), count: n)
            let zero = GradientReducer(communicator: comm, bucketBytes: 256, shared: h.node, crossNode: h.peers, placement: placement)
            var plain = [Float](repeating: 0, count: n)
            var owned: [[Int]] = []
            for round in 0..<2 {
                Self.fill(g, rank: comm.rank + round, rows: rows)
                try zero.begin(g, scale: 0.25, scatterOnly: true)
                XCTAssertTrue(zero.scatterOnly)
                try zero.reduceNow(range: 150..<203)
                try zero.reduceNow(range: 100..<150)
                try zero.reduceRows(range: Self.table, rowLength: Self.rowLength, rows: rows, rowOwner: { $0 % ranksPerNode })
                try zero.reduceAsync(range: 3..<20)
                try zero.finish()
                let messages = GradientReducer(communicator: comm, bucketBytes: 64)
                try plain.withUnsafeMutableBufferPointer { p in
                    Self.fill(p, rank: comm.rank + round, rows: rows)
                    try Self.step(messages, p, rows: rows, scatterOnly: false)
                }
                XCTAssertEqual(zero.sumOfSquares, messages.sumOfSquares, accuracy: messages.sumOfSquares * 1e-12, "norm over the world")
                let mine = zero.ownedShares
                XCTAssertEqual(mine, zero.shares(of: comm.rank))
                for r in mine { for i in r { XCTAssertEqual(g[i].bitPattern, plain[i].bitPattern, "rank \(comm.rank): owned element \(i)") } }
                for r in rows where r % ranksPerNode == t.localRank {
                    for c in 0..<Self.rowLength {
                        let i = Self.table.lowerBound + r * Self.rowLength + c
                        XCTAssertEqual(g[i].bitPattern, plain[i].bitPattern, "rank \(comm.rank): owned row \(r)")
                    }
                }
                // Each owner writes its blocks of the node's one copy of the parameters; the gather spreads them.
                for r in mine { for i in r { values[i] = Float(i) + Float(round) * 0.5 } }
                try zero.gatherUpdatedValues(values)
                try v.node.sync()
                let dense = [0..<40, 100..<n]
                for r in dense { for i in r { XCTAssertEqual(values[i], Float(i) + Float(round) * 0.5, "rank \(comm.rank): gathered element \(i)") } }
                try v.node.sync()   // nobody rewrites the values before everyone has read them
                owned = (0..<worldSize).map { q in zero.shares(of: q).flatMap { Array($0) } }
            }
            return owned
        }
        // Every rank names the same owners, and the owned blocks tile the dense part (all but the table) once.
        for r in 1..<worldSize { XCTAssertEqual(out[r], out[0]) }
        let all = out[0].flatMap { $0 }.sorted()
        XCTAssertEqual(all, Array(0..<40) + Array(100..<n))
        // (Blocks are 16-float aligned, so with these tiny ranges some ranks may own nothing; at least the nodes split.)
        XCTAssertGreaterThanOrEqual(out[0].filter { !$0.isEmpty }.count, 2, "ownership is spread: \(out[0].map(\.count))")
    }

    func testZeROTwoNodesOfTwoRanks() throws { try checkZeRO(worldSize: 4, ranksPerNode: 2) }
    func testZeROThreeNodesOfOneRank() throws { try checkZeRO(worldSize: 3, ranksPerNode: 1) }
    func testZeROTwoNodesOfThreeRanks() throws { try checkZeRO(worldSize: 6, ranksPerNode: 3, rows: [4]) }

    // MARK: bfloat16 across nodes

    /// bf16 rounding: nearest even, exact round trip of bf16 values.
    func testBF16Rounding() {
        XCTAssertEqual(GradientReducer.float(GradientReducer.bf16(1.0)), 1.0)
        XCTAssertEqual(GradientReducer.float(GradientReducer.bf16(-0.125)), -0.125)
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); just above rounds up.
        XCTAssertEqual(GradientReducer.float(GradientReducer.bf16(1 + 0x1p-8)), 1.0)
        XCTAssertEqual(GradientReducer.float(GradientReducer.bf16(1 + 0x1p-8 + 0x1p-20)), 1 + 0x1p-7)
        XCTAssertEqual(GradientReducer.float(GradientReducer.bf16(1 + 3 * 0x1p-8)), 1 + 0x1p-6)   // tie, up to even
        XCTAssertTrue(GradientReducer.float(GradientReducer.bf16(.nan)).isNaN)
        XCTAssertEqual(GradientReducer.float(GradientReducer.bf16(.infinity)), .infinity)
    }

    /// Values that bf16 holds exactly (multiples of 1/8 below 4) reduce to the float32 bits on every path; values it
    /// does not hold reduce to within bf16's rounding of the float32 result, bitwise the same on two runs.
    func testBF16AcrossNodes() throws {
        for (worldSize, rpn) in [(4, 2), (3, 1)] {
            for zero in [false, true] {
                func run(exact: Bool) throws -> [[Float]] {
                    try InProcessGroup.run(worldSize: worldSize, ranksPerNode: rpn) { comm -> [Float] in
                        let n = Self.n, t = comm.topology
                        let h = try XCTUnwrap(try comm.makeHierarchicalGroups(segmentBytes: GradientReducer.sharedBytes(elements: n, worldSize: rpn)))
                        let placement = (0..<worldSize).map { (node: $0 / rpn, local: $0 % rpn) }
                        let g = UnsafeMutableBufferPointer(start: h.node.base.assumingMemoryBound(to: Float.self), count: n)
                        let red = GradientReducer(communicator: comm, bucketBytes: 64, shared: h.node, crossNode: h.peers,
                                                  commDtype: .bf16, placement: zero ? placement : nil)
                        func fill(_ b: UnsafeMutableBufferPointer<Float>) {
                            Self.fill(b, rank: comm.rank, rows: [1, 4, 5, 9])
                            if !exact { for i in b.indices where b[i] != 0 { b[i] = b[i] * 1.0123457 + 0.0001 * Float(i % 7) } }
                        }
                        fill(g)
                        try red.begin(g, scale: 1, scatterOnly: zero)
                        try red.reduceNow(range: 100..<203)
                        try red.reduceRows(range: Self.table, rowLength: Self.rowLength, rows: [1, 4, 5, 9], rowOwner: { $0 % rpn })
                        try red.finish()
                        var plain = [Float](repeating: 0, count: n)
                        try plain.withUnsafeMutableBufferPointer { p in
                            fill(p)
                            let m = GradientReducer(communicator: comm, bucketBytes: 64)
                            try m.begin(p, scale: 1)
                            try m.reduceNow(range: 100..<203)
                            try m.reduceRows(range: Self.table, rowLength: Self.rowLength, rows: [1, 4, 5, 9])
                            try m.finish()
                        }
                        // Compare only what this rank holds reduced: everything, or its blocks and rows under ZeRO.
                        var mine = zero ? red.ownedShares.flatMap { Array($0) } : Array(0..<n)
                        if zero { for r in [1, 4, 5, 9] where r % rpn == t.localRank { mine += (0..<Self.rowLength).map { Self.table.lowerBound + r * Self.rowLength + $0 } } }
                        var res: [Float] = []
                        for i in mine.sorted() {
                            // Each node's sum (at most L·1.65 in magnitude) is rounded once to bf16 (2^-9 relative),
                            // and the summed result once more when it is all-gathered.
                            let tol: Float = exact ? 0 : Float(worldSize) * 1.65 * 0x1p-9 + abs(plain[i]) * 0x1p-8
                            XCTAssertEqual(g[i], plain[i], accuracy: tol, "\(worldSize)/\(rpn) zero \(zero) exact \(exact): element \(i) rank \(comm.rank)")
                            res.append(g[i])
                        }
                        if !exact {
                            let differs = mine.contains { g[$0] != plain[$0] }
                            XCTAssertTrue(differs, "bf16 must actually round something (else the test proves nothing)")
                        }
                        return res
                    }
                }
                _ = try run(exact: true)
                let a = try run(exact: false), b = try run(exact: false)
                XCTAssertEqual(a.map { $0.map(\.bitPattern) }, b.map { $0.map(\.bitPattern) }, "bf16: two runs, same bits")
            }
        }
    }

    func testOneNodeHasNoHierarchy() throws {
        let groups = try InProcessGroup.run(worldSize: 2) { comm in
            try comm.makeHierarchicalGroups(segmentBytes: 64) == nil && comm.topology.nodeCount == 1
        }
        XCTAssertEqual(groups, [true, true])
    }
}
