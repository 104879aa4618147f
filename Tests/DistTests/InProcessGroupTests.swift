// InProcessGroupTests: multi-rank behaviour without mpirun, on thread-ranks (InProcessCommunicator): the reducer's
// sum-then-scale, the consistency check and the debug cross-check naming the odd rank, and the end-to-end claim
// that N ranks × B equals 1 rank × N accumulation steps (plan + reducer) up to float rounding.
import XCTest
@testable import Dist

final class InProcessGroupTests: XCTestCase {
    func testCollectivesAcrossFourThreadRanks() throws {
        let out = try InProcessGroup.run(worldSize: 4) { comm -> [Double] in
            var f: [Float] = [Float(comm.rank + 1), -Float(comm.rank)]
            try comm.allReduce(&f, op: .sum)
            var d: [Double] = [Double(comm.rank)]
            try comm.allReduce(&d, op: .max)
            var i: [Int64] = [Int64(10 - comm.rank)]
            try comm.allReduce(&i, op: .min)
            var b: [Int64] = [Int64(comm.rank * 7)]
            try comm.broadcast(&b, root: 2)
            return [Double(f[0]), Double(f[1]), d[0], Double(i[0]), Double(b[0])]
        }
        XCTAssertEqual(out, [[Double]](repeating: [10, -6, 3, 7, 14], count: 4))
    }

    func testReducerSumsThenScalesOnThreeRanks() throws {
        let out = try InProcessGroup.run(worldSize: 3) { comm -> [Float] in
            let reducer = GradientReducer(communicator: comm, bucketBytes: 12)  // 3 floats per bucket
            var g = (0..<10).map { Float((comm.rank + 1) * ($0 + 1)) }
            try g.withUnsafeMutableBufferPointer { try reducer.reduce($0, scale: 1 / 6) }
            var n = (0..<10).map { Float((comm.rank + 1) * ($0 + 1)) }
            let nonBlocking = GradientReducer(communicator: comm, bucketBytes: 12, strategy: .nonBlocking)
            try n.withUnsafeMutableBufferPointer { try nonBlocking.reduce($0, scale: 1 / 6) }
            var h = (0..<10).map { Float((comm.rank + 1) * ($0 + 1)) }
            try h.withUnsafeMutableBufferPointer { b in
                try reducer.begin(b, scale: 1 / 6)
                try reducer.reduceAsync(range: 5..<10)
                try reducer.finish()
            }
            return g + h + n
        }
        // Σ_r (r+1)(i+1) = 6(i+1); × Float(1/6) is within one rounding of i+1.
        for rankOut in out {
            for (k, v) in rankOut.enumerated() { XCTAssertEqual(v, Float(k % 10 + 1), accuracy: 1e-6 * 10) }
        }
    }

    /// The in-place path (gradients in node-shared memory) gives every rank the same bits as the message path, for
    /// dense stages, a row-sparse table and the gaps finish() covers, and the same norm on every rank; buffers
    /// outside the shared segment still take the message path.
    func testSharedMemoryReductionEqualsTheMessagePathOnThreeRanks() throws {
        let n = 203, table = 40..<100, rowLength = 6  // 10 rows of 6; rows 1, 4, 5, 9 touched
        let rows = [1, 4, 5, 9]
        @Sendable func fill(_ g: UnsafeMutableBufferPointer<Float>, rank: Int) {
            for i in g.indices { g[i] = Float((i * 31 + rank * 17) % 23) * 0.125 - 1.25 }
            for r in 0..<10 where !rows.contains(r) {  // untouched rows are zero on every rank (the contract)
                for c in 0..<rowLength { g[table.lowerBound + r * rowLength + c] = 0 }
            }
        }
        /// Returns whether the step took the in-place path.
        @Sendable func step(_ reducer: GradientReducer, _ g: UnsafeMutableBufferPointer<Float>) throws -> Bool {
            try reducer.begin(g, scale: 0.25)
            let inPlace = reducer.sharedStep
            try reducer.reduceNow(range: 150..<203)
            try reducer.reduceNow(range: 100..<150)
            try reducer.reduceRows(range: table, rowLength: rowLength, rows: rows)
            try reducer.reduceAsync(range: 3..<20)
            try reducer.finish()  // gaps 0..<3, 20..<40
            return inPlace
        }
        let out = try InProcessGroup.run(worldSize: 3) { comm -> [Double] in
            let shm = try comm.makeNodeSharedMemory(segmentBytes: GradientReducer.sharedBytes(elements: n, worldSize: 3))!
            let shared = UnsafeMutableBufferPointer(start: shm.base.assumingMemoryBound(to: Float.self), count: n)
            let viaShared = GradientReducer(communicator: comm, bucketBytes: 64, shared: shm)
            var plain = [Float](repeating: 0, count: n)
            var result: [Double] = []
            for round in 0..<3 {  // several steps: the norm slots alternate
                fill(shared, rank: comm.rank + round)
                XCTAssertTrue(try step(viaShared, shared), "the shared segment's buffer reduces in place")
                try plain.withUnsafeMutableBufferPointer { p in
                    fill(p, rank: comm.rank + round)
                    let messages = GradientReducer(communicator: comm, bucketBytes: 64, shared: shm)  // not in the segment
                    XCTAssertFalse(try step(messages, p), "a buffer outside the segment passes messages")
                    result.append(messages.sumOfSquares)
                }
                XCTAssertEqual(Array(shared).map(\.bitPattern), plain.map(\.bitPattern), "rank \(comm.rank) round \(round)")
                result.append(viaShared.sumOfSquares)
                result += shared.map(Double.init)
            }
            return result
        }
        XCTAssertEqual(out[0], out[1]); XCTAssertEqual(out[1], out[2], "every rank holds the same reduced bits and norm")
        // Round 0: element i is 0.25 × Σ_r fill(i, r), and the norm is Σ of its squares (up to float64 rounding).
        let flat = Array(out[0][2..<(2 + n)])
        XCTAssertEqual(out[0][0], out[0][1], accuracy: out[0][0] * 1e-12, "norm: shared path vs message path")
        XCTAssertEqual(out[0][1], flat.reduce(0) { $0 + $1 * $1 }, accuracy: out[0][1] * 1e-12)
        let inputs: [Float] = (0..<3).map { r in Float((7 * 31 + r * 17) % 23) * 0.125 - 1.25 }
        XCTAssertEqual(flat[7], 0.25 * Double(inputs.reduce(0, +)), accuracy: 1e-6)
        XCTAssertEqual(flat[table.lowerBound + 2 * rowLength], 0, "an untouched row stays zero")
    }

    /// ZeRO-1 on thread ranks: a scatter-only step leaves each dense range reduced in its owner's share only and each
    /// table row in its owner's buffer only; the shares of all ranks tile every dense range exactly once; after each
    /// owner "updates" its parameters in one node-wide buffer (rank 0's segment of a second window, the other ranks'
    /// segments empty) and a barrier, every rank reads the same full parameter vector, equal to updating every
    /// element from the fully reduced gradient of the ordinary path; the norm is the same.
    func testScatterOnlyStepIntoOneNodeWideParameterBufferOnThreeRanks() throws {
        let n = 157, table = 30..<60, rowLength = 5, rows = [0, 3, 5]
        let owner: @Sendable (Int) -> Int = { ($0 * 7 + 1) % 3 }   // rows 0, 3, 5 -> ranks 1, 1, 0
        let out = try InProcessGroup.run(worldSize: 3) { comm -> [[Float]] in
            let shm = try comm.makeNodeSharedMemory(segmentBytes: GradientReducer.sharedBytes(elements: n, worldSize: 3))!
            let g = UnsafeMutableBufferPointer(start: shm.base.assumingMemoryBound(to: Float.self), count: n)
            let fill: (UnsafeMutableBufferPointer<Float>) -> Void = { b in
                for i in b.indices { b[i] = Float((i * 13 + comm.rank * 7) % 17) - 8 }
                for r in 0..<6 where !rows.contains(r) { for c in 0..<rowLength { b[table.lowerBound + r * rowLength + c] = 0 } }
            }
            let reducer = GradientReducer(communicator: comm, bucketBytes: 48, shared: shm)
            // The ordinary in-place step: the fully reduced gradient on every rank.
            fill(g)
            try reducer.begin(g, scale: 0.5)
            try reducer.reduceNow(range: 100..<157)
            try reducer.reduceRows(range: table, rowLength: rowLength, rows: rows, rowOwner: owner)
            try reducer.finish()
            let full = Array(g)
            let fullNorm = reducer.sumOfSquares
            // The scatter-only step on the same data.
            fill(g)
            let unreduced = Array(g)
            try reducer.begin(g, scale: 0.5, scatterOnly: true)
            try reducer.reduceNow(range: 100..<157)
            try reducer.reduceRows(range: table, rowLength: rowLength, rows: rows, rowOwner: owner)
            try reducer.finish()
            XCTAssertTrue(reducer.scatterOnly)
            XCTAssertEqual(reducer.sumOfSquares, fullNorm, accuracy: fullNorm * 1e-12, "the same norm")
            let mine = reducer.ownedShares
            XCTAssertEqual(mine, reducer.shares(of: comm.rank))
            for r in mine { XCTAssertEqual(Array(g[r]), Array(full[r]), "rank \(comm.rank): own share \(r) reduced") }
            for r in rows {
                let span = (table.lowerBound + r * rowLength)..<(table.lowerBound + (r + 1) * rowLength)
                XCTAssertEqual(Array(g[span]), Array((owner(r) == comm.rank ? full : unreduced)[span]),
                               "rank \(comm.rank): table row \(r) reduced only by its owner")
            }
            // Every dense element belongs to exactly one rank.
            var owners = [Int](repeating: 0, count: n)
            for q in 0..<3 { for r in reducer.shares(of: q) { for i in r { owners[i] += 1 } } }
            XCTAssertEqual(owners.enumerated().filter { !table.contains($0.offset) }.map(\.element), [Int](repeating: 1, count: n - table.count))
            // "Optimizer": each owner writes 10 + its reduced gradient into the one node-wide buffer.
            let node = try comm.makeNodeSharedMemory(segmentBytes: comm.rank == 0 ? n * 4 : 0)!
            XCTAssertEqual(node.segmentBytes, [n * 4, 64, 64], "rank 0's buffer; the others' segments empty (64 bytes, as the MPI shim allocates)")
            let values = UnsafeMutableBufferPointer(start: node.segment(of: 0).assumingMemoryBound(to: Float.self), count: n)
            for r in mine { for i in r { values[i] = 10 + g[i] } }
            for r in rows where owner(r) == comm.rank {
                for c in 0..<rowLength { let i = table.lowerBound + r * rowLength + c; values[i] = 10 + g[i] }
            }
            try node.sync()
            let seen = Array(values)
            try node.sync()   // nobody leaves (and frees its view) while another still reads
            let touched = Set(rows.flatMap { r in (0..<rowLength).map { table.lowerBound + r * rowLength + $0 } })
            return [seen.enumerated().map { table.contains($0.offset) && !touched.contains($0.offset) ? 0 : $0.element },
                    full.enumerated().map { table.contains($0.offset) && !touched.contains($0.offset) ? 0 : 10 + $0.element }]
        }
        for (rank, r) in out.enumerated() { XCTAssertEqual(r[0], r[1], "rank \(rank): every parameter from its owner") }
    }

    func testConsistencyCheckNamesTheOddRankAndField() throws {
        XCTAssertThrowsError(try InProcessGroup.run(worldSize: 4) { comm in
            let seed = comm.rank == 2 ? "2" : "1"
            try ConsistencyCheck.verify([("seed", seed), ("data", "a.jsonl")], communicator: comm)
        }) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("rank(s) 2 were started"), m)
            XCTAssertTrue(m.contains("differing: seed"), m)
        }
        XCTAssertThrowsError(try InProcessGroup.run(worldSize: 3) { comm in
            try ConsistencyCheck.verify(description: "lr=0.001\nepochs=\(comm.rank == 0 ? 3 : 2)",
                                        communicator: comm)
        }) { error in
            XCTAssertTrue("\(error)".contains("rank(s) 1, 2 were started"), "\(error)")
            XCTAssertTrue("\(error)".contains("differing: epochs"), "\(error)")
        }
        // Equal everywhere: accepted, same hash on all ranks.
        let hashes = try InProcessGroup.run(worldSize: 3) { comm in
            try ConsistencyCheck.verify([("seed", "1")], communicator: comm)
        }
        XCTAssertEqual(Set(hashes).count, 1)
    }

    func testDebugCommunicatorNamesRankAndCallThatDiffer() throws {
        XCTAssertThrowsError(try InProcessGroup.run(worldSize: 3) { comm in
            let debug = DebugCommunicator(wrapping: comm)
            try debug.barrier()
            var v = [Float](repeating: 0, count: comm.rank == 1 ? 5 : 4)
            try debug.allReduce(&v, op: .sum)
        }) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("rank(s) 1 differ from rank 0"), m)
            XCTAssertTrue(m.contains("rank 1: collective #2 allReduceFloatSum of 5 elements"), m)
        }
    }

    /// The product's promise in miniature: per-sample "gradients" g(i) = [i, i², 1], summed over each rank's
    /// micro-batches, all-reduced and scaled by 1/globalCount, give the same averaged gradient for every step on
    /// 1, 2, 4 and 8 ranks (8 ranks also exercises a rank with an empty slice in the short final step).
    func testDataParallelAverageIsIndependentOfWorldSize() throws {
        func run(_ w: Int, micro: Int) throws -> [[Float]] {
            let perRank = try InProcessGroup.run(worldSize: w) { comm -> [[Float]] in
                let plan = try GlobalBatchPlan(sampleCount: 53, globalBatch: 16, microBatch: micro,
                                               worldSize: comm.worldSize, rank: comm.rank, seed: 5)
                let reducer = GradientReducer(communicator: comm, bucketBytes: 8)
                var history: [[Float]] = []
                for step in plan.steps(epoch: 0) + plan.steps(epoch: 1) {
                    var grad: [Float] = [0, 0, 0]
                    for mb in step.microBatches {
                        for i in mb { grad[0] += Float(i); grad[1] += Float(i * i); grad[2] += 1 }
                    }
                    try grad.withUnsafeMutableBufferPointer { try reducer.reduce($0, scale: 1 / Float(step.globalCount)) }
                    history.append(grad)
                }
                return history
            }
            for r in 1..<w { XCTAssertEqual(perRank[r], perRank[0], "ranks disagree at w=\(w)") }
            return perRank[0]
        }
        let reference = try run(1, micro: 16)
        XCTAssertEqual(reference.count, 8)  // ceil(53/16) = 4 steps × 2 epochs
        XCTAssertTrue(reference.allSatisfy { $0[2] == 1 })  // the count, averaged: exactly 1
        for (w, micro) in [(1, 2), (2, 2), (4, 4), (8, 1), (8, 2)] {
            let got = try run(w, micro: micro)
            for (s, (a, b)) in zip(got, reference).enumerated() {
                for k in 0..<3 {
                    // Integer sums up to ~16·52² < 2^24 are exact in Float; only the final scaling rounds, so the
                    // grouping of the sum cannot matter: demand agreement to 1 ulp-ish relative error.
                    XCTAssertEqual(a[k], b[k], accuracy: abs(b[k]) * 1e-6, "w=\(w) micro=\(micro) step \(s) k=\(k)")
                }
            }
        }
    }
}
