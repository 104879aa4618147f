// ReducerAndCheckTests: GradientReducer bucketing and scaling, ConsistencyCheck hashing, LaunchMode, core count,
// Watchdog timing. Multi-rank behaviour is exercised for real in MPIRunTests; here a recording fake with worldSize
// > 1 stands in for "identical ranks" (its sum multiplies by worldSize), which shows each element is reduced once.
import XCTest
@testable import Dist

/// Pretends to be one of `worldSize` ranks that all hold the same data: a SUM multiplies by worldSize. Records the
/// element count of every reduction so bucket boundaries can be checked.
final class IdenticalRanksCommunicator: Communicator {
    let worldSize: Int
    var rank: Int { 0 }
    var counts: [Int] = []
    var started = 0
    init(worldSize: Int) { self.worldSize = worldSize }
    func allReduce(_ b: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        counts.append(b.count)
        if op == .sum { for i in b.indices { b[i] *= Float(worldSize) } }
    }
    func allReduce(_ b: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {}
    func allReduce(_ b: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {}
    func startAllReduce(_ b: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws -> PendingReduction {
        started += 1
        try allReduce(b, op: op)
        return CompletedReduction()
    }
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    func barrier() throws {}
    func abort(code: Int32) -> Never { fatalError("abort \(code)") }
}

final class ReducerAndCheckTests: XCTestCase {
    func testLocalReducerOnlyScales() throws {
        var g: [Float] = [2, 4, 6]
        try g.withUnsafeMutableBufferPointer { try GradientReducer(communicator: LocalCommunicator()).reduce($0, scale: 0.5) }
        XCTAssertEqual(g, [1, 2, 3])
    }

    func testSyncReducerBucketsANonMultipleAndSumsThenScales() throws {
        let comm = IdenticalRanksCommunicator(worldSize: 3)
        let reducer = GradientReducer(communicator: comm, bucketBytes: 40)  // 10 floats per bucket
        var g = (0..<25).map(Float.init)
        try g.withUnsafeMutableBufferPointer { try reducer.reduce($0, scale: 1.0 / 3.0) }
        XCTAssertEqual(comm.counts, [10, 10, 5])
        XCTAssertEqual(reducer.stats.bytes, 100)
        XCTAssertEqual(reducer.stats.steps, 1)
        XCTAssertGreaterThan(reducer.stats.busGBps(worldSize: 3), 0)
        // x × 3 × Float(1/3): within one rounding of x, since Float(1/3) is not exact.
        for (i, v) in g.enumerated() { XCTAssertEqual(v, Float(i), accuracy: Float(i) * 2e-7) }
    }

    func testRowSparseReductionMovesOnlyTheNamedRowsAndCoversTheTable() throws {
        let comm = IdenticalRanksCommunicator(worldSize: 2)
        let reducer = GradientReducer(communicator: comm, bucketBytes: 5 * 4)  // 5 floats per bucket
        // Layout: 2 dense floats, then a table of 6 rows × 3, then 4 dense floats. Rows 1 and 4 are touched.
        var g = [Float](repeating: 0, count: 2 + 18 + 4)
        for i in 0..<2 { g[i] = 1 }
        for i in 20..<24 { g[i] = 1 }
        for c in 0..<3 { g[2 + 1 * 3 + c] = Float(10 + c); g[2 + 4 * 3 + c] = Float(20 + c) }
        try g.withUnsafeMutableBufferPointer { buf in
            try reducer.begin(buf, scale: 0.5)
            try reducer.reduceRows(range: 2..<20, rowLength: 3, rows: [1, 4])
            XCTAssertEqual(comm.counts, [5, 1], "6 gathered floats in buckets of 5: the untouched 12 never move")
            XCTAssertThrowsError(try reducer.reduceNow(range: 0..<3)) { XCTAssertTrue("\($0)".contains("overlaps")) }
            try reducer.finish()  // the dense gaps 0..<2 and 20..<24
        }
        XCTAssertEqual(comm.counts, [5, 1, 2, 4])
        // Sum over 2 identical ranks then × 0.5: every value comes back unchanged, rows in place, zeros stay zero.
        var expected = [Float](repeating: 0, count: 24)
        for i in 0..<2 { expected[i] = 1 }
        for i in 20..<24 { expected[i] = 1 }
        for c in 0..<3 { expected[5 + c] = Float(10 + c); expected[14 + c] = Float(20 + c) }
        XCTAssertEqual(g, expected)
        XCTAssertEqual(reducer.stats.bytes, (24 - 12) * 4, "bytes moved: 6 dense + 6 gathered floats")
        // The norm summed on the way equals a fresh pass over the reduced buffer (skipped rows are zeros).
        XCTAssertEqual(reducer.sumOfSquares, g.reduce(0.0) { $0 + Double($1) * Double($1) })
    }

    func testRowSparseReductionRejectsUnsortedOrOutOfRangeRows() throws {
        let reducer = GradientReducer(communicator: IdenticalRanksCommunicator(worldSize: 2))
        var g = [Float](repeating: 0, count: 12)
        try g.withUnsafeMutableBufferPointer { buf in
            try reducer.begin(buf, scale: 1)
            XCTAssertThrowsError(try reducer.reduceRows(range: 0..<12, rowLength: 3, rows: [2, 1]))
            XCTAssertThrowsError(try reducer.reduceRows(range: 0..<12, rowLength: 3, rows: [4]))
            XCTAssertThrowsError(try reducer.reduceRows(range: 0..<12, rowLength: 5, rows: [0]))
            try reducer.finish()
        }
    }

    func testAsyncReducerCoversGapsExactlyOnceAndRejectsOverlap() throws {
        let comm = IdenticalRanksCommunicator(worldSize: 2)
        let reducer = GradientReducer(communicator: comm, bucketBytes: 16)  // 4 floats per bucket
        var g = [Float](repeating: 1, count: 22)
        try g.withUnsafeMutableBufferPointer { buf in
            try reducer.begin(buf, scale: 0.25)
            try reducer.reduceAsync(range: 15..<22)  // backward produces the tail first: buckets of 4 + 3
            try reducer.reduceAsync(range: 3..<9)    // 4 + 2
            XCTAssertEqual(reducer.launchedBuckets, 4)
            XCTAssertThrowsError(try reducer.reduceAsync(range: 8..<10)) { XCTAssertTrue("\($0)".contains("overlaps")) }
            XCTAssertThrowsError(try reducer.reduce(buf, scale: 1))
            try reducer.finish()  // gaps 0..<3 and 9..<15 are launched here
        }
        XCTAssertEqual(comm.counts, [4, 3, 4, 2, 3, 4, 2])
        XCTAssertEqual(comm.started, 7)
        XCTAssertEqual(g, [Float](repeating: 0.5, count: 22))  // 1 × 2 ranks × 0.25, each element exactly once
        XCTAssertThrowsError(try reducer.finish())  // step closed
    }

    func testReduceNowScalesOnTheSpotAndFinishDoesNotScaleTwice() throws {
        let comm = IdenticalRanksCommunicator(worldSize: 4)
        let reducer = GradientReducer(communicator: comm, bucketBytes: 12)  // 3 floats per bucket
        var g = [Float](repeating: 1, count: 10)
        try g.withUnsafeMutableBufferPointer { buf in
            try reducer.begin(buf, scale: 0.5)
            try reducer.reduceNow(range: 6..<10)  // 3 + 1, done immediately: 1 × 4 ranks × 0.5
            XCTAssertEqual(Array(buf[6..<10]), [2, 2, 2, 2])
            XCTAssertEqual(Array(buf[0..<6]), [Float](repeating: 1, count: 6))  // untouched so far
            XCTAssertThrowsError(try reducer.reduceAsync(range: 5..<7))
            try reducer.finish()
        }
        XCTAssertEqual(comm.counts, [3, 1, 3, 3])
        XCTAssertEqual(g, [Float](repeating: 2, count: 10))  // 1 × 4 ranks × 0.5, exactly once everywhere
        XCTAssertEqual(reducer.sumOfSquares, 40, "Σ g² of the scaled result, each element once")
    }

    /// The squares summed bucket by bucket during reduction are those of the final, scaled gradient, whichever
    /// path reduced each part (blocking now, asynchronous, gap at finish, synchronous `reduce`, world size 1).
    func testSumOfSquaresIsThatOfTheReducedScaledBuffer() throws {
        func pattern(_ n: Int) -> [Float] { (0..<n).map { Float(($0 * 7) % 11) - 5 } }
        func sq(_ g: [Float]) -> Double { g.reduce(0.0) { $0 + Double($1) * Double($1) } }
        let reducer = GradientReducer(communicator: IdenticalRanksCommunicator(worldSize: 2), bucketBytes: 20)
        var g = pattern(37)
        try g.withUnsafeMutableBufferPointer { buf in
            try reducer.begin(buf, scale: 0.25)
            try reducer.reduceNow(range: 30..<37)
            try reducer.reduceAsync(range: 3..<17)
            try reducer.finish()
        }
        XCTAssertEqual(g, pattern(37).map { $0 * 2 * 0.25 })
        XCTAssertEqual(reducer.sumOfSquares, sq(g), accuracy: sq(g) * 1e-15)
        var h = pattern(23)
        try h.withUnsafeMutableBufferPointer { try reducer.reduce($0, scale: 1) }
        XCTAssertEqual(reducer.sumOfSquares, sq(h), accuracy: sq(h) * 1e-15)
        let local = GradientReducer(communicator: LocalCommunicator())
        var k = pattern(19)
        try k.withUnsafeMutableBufferPointer { try local.reduce($0, scale: 3) }
        XCTAssertEqual(k, pattern(19).map { $0 * 3 })
        XCTAssertEqual(local.sumOfSquares, sq(k), accuracy: sq(k) * 1e-15)
    }

    // FNV-1a 64 test vectors from the reference (isthe.com/chongo/tech/comp/fnv): "", "a", "foobar".
    func testFNV1aMatchesPublishedVectors() {
        XCTAssertEqual(FNV1a64.hash(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a64.hash("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(FNV1a64.hash("foobar"), 0x8594_4171_f739_67e8)
    }

    func testConsistencyHashDependsOnEveryFieldAndOrder() throws {
        let base = [("seed", "1"), ("data", "train.jsonl")]
        XCTAssertEqual(ConsistencyCheck.describe(base), "seed=1\ndata=train.jsonl")
        XCTAssertNotEqual(ConsistencyCheck.hash(base), ConsistencyCheck.hash([("seed", "2"), ("data", "train.jsonl")]))
        XCTAssertNotEqual(ConsistencyCheck.hash(base), ConsistencyCheck.hash(base.reversed()))
        XCTAssertEqual(try ConsistencyCheck.verify(base, communicator: LocalCommunicator()), ConsistencyCheck.hash(base))
    }

    func testFileFingerprintHashesContentAndSize() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fp-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data("foobar".utf8).write(to: url)
        XCTAssertEqual(try ConsistencyCheck.fingerprint(fileAt: url.path), "6 bytes, fnv1a64 85944171f73967e8")
        XCTAssertThrowsError(try ConsistencyCheck.fingerprint(fileAt: url.path + ".missing"))
    }

    func testLaunchModeFromEnvironment() throws {
        XCTAssertEqual(LaunchMode.detect(environment: [:]), .single)
        XCTAssertEqual(LaunchMode.detect(environment: ["OMPI_COMM_WORLD_SIZE": "4"]), .mpi(worldSize: 4))
        XCTAssertEqual(LaunchMode.detect(environment: ["PMI_SIZE": "2"]), .mpi(worldSize: 2))
        XCTAssertEqual(LaunchMode.detect(environment: ["SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "0"]),
                       .single)
        XCTAssertTrue(try makeCommunicator(environment: [:]) is LocalCommunicator)
        XCTAssertTrue(try makeCommunicator(environment: [:], debug: true) is DebugCommunicator)
    }

    func testAvailableCoresIsWithinTheMachine() {
        let n = availableCores()
        XCTAssertGreaterThanOrEqual(n, 1)
        XCTAssertLessThanOrEqual(n, ProcessInfo.processInfo.processorCount)
    }

    func testWatchdogFiresOnlyForALongCollective() throws {
        let fired = expectation(description: "watchdog fired")
        let box = MessageBox()
        let dog = Watchdog(timeout: 0.4, rankLabel: "rank 3 of 4") { message in
            box.set(message)
            fired.fulfill()
        }
        dog.enter("MPI_Barrier", sequence: 7)  // a quick collective: no report
        dog.leave()
        dog.withTimeout(30) {  // a collective allowed to take longer (e.g. while rank 0 checkpoints): no report
            dog.enter("MPI_Barrier", sequence: 8)
            Thread.sleep(forTimeInterval: 0.6)
            dog.leave()
        }
        Thread.sleep(forTimeInterval: 0.6)
        XCTAssertNil(box.get())
        dog.enter("MPI_Allreduce(float × 10, sum)", sequence: 9)
        wait(for: [fired], timeout: 5)
        let m = box.get() ?? ""
        XCTAssertTrue(m.contains("rank 3 of 4") && m.contains("collective #9 MPI_Allreduce(float × 10, sum)"), m)
    }
}

final class MessageBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ v: String) { lock.lock(); value = v; lock.unlock() }
    func get() -> String? { lock.lock(); defer { lock.unlock() }; return value }
}
