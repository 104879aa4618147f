// MPIRunTests: real `mpirun` jobs. XCTest cannot be an MPI rank itself (and MPI may be initialised only once per
// process), so these tests launch the built test-only `disttrain-comm-check` under `mpirun --allow-run-as-root --oversubscribe
// -n K` with Foundation.Process and assert on its JSON and exit status. Expected values are computed here, from the
// formula the command uses for each rank's data, never taken from the command's own verdict.
// Deliberately not here: training (Training/CLI tests), bandwidth assertions (timing depends on the machine's load).
import XCTest
import Dist

final class MPIRunTests: XCTestCase {
    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
        let seconds: Double
        var json: [String: Any] {
            get throws {
                let line = stdout.split(separator: "\n").last(where: { $0.hasPrefix("{") }) ?? ""
                guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw CommunicatorError("no JSON object in stdout:\n\(stdout)\nstderr:\n\(stderr)")
                }
                return obj
            }
        }
    }

    /// The test-only `disttrain-comm-check` executable built next to this test bundle (.build/<triple>/debug/), or
    /// via the `.build/debug` symlink relative to this source file.
    static func disttrainPath() throws -> String {
        let name = "disttrain-comm-check"
        var candidates = [Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path,
                          Bundle(for: MPIRunTests.self).bundleURL.deletingLastPathComponent()
                              .appendingPathComponent(name).path]
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug/\(name)").path)
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        throw CommunicatorError("\(name) executable not found (looked at \(candidates.joined(separator: ", "))). "
                                + "HINT: run `swift build` (or `swift build --build-tests`) first.")
    }

    static func mpirunPath() throws -> String {
        for p in ["/usr/bin/mpirun", "/usr/local/bin/mpirun"] where FileManager.default.isExecutableFile(atPath: p) {
            return p
        }
        throw CommunicatorError("mpirun not found. HINT: apt-get install openmpi-bin")
    }

    /// Runs `mpirun <mpiArgs>` (or the binary directly when `mpiArgs` is nil) and kills it after `timeout` seconds.
    func run(_ args: [String], ranks: Int?, timeout: Double = 20, extraMPI: [String] = []) throws -> Run {
        let bin = try Self.disttrainPath()
        let p = Process()
        if let k = ranks {
            p.executableURL = URL(fileURLWithPath: try Self.mpirunPath())
            p.arguments = ["--allow-run-as-root", "--oversubscribe", "-n", "\(k)"] + extraMPI + [bin] + args
        } else {
            p.executableURL = URL(fileURLWithPath: bin)
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        // A test runner started under mpirun would leak these into the child and confuse its launch detection.
        for k in env.keys where k.hasPrefix("OMPI_COMM_WORLD") || k.hasPrefix("PMIX_") { env[k] = nil }
        p.environment = env
        // Files, not pipes: a full pipe buffer would block the child while we wait for it.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mpirun-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: outURL)
        p.standardError = try FileHandle(forWritingTo: errURL)
        let start = Date()
        try p.run()
        while p.isRunning, Date().timeIntervalSince(start) < timeout { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning {
            p.terminate()
            Thread.sleep(forTimeInterval: 1)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
            throw CommunicatorError("mpirun \(args) with \(ranks ?? 0) ranks did not finish within \(timeout) s "
                                    + "(killed). stderr:\n\(err)")
        }
        p.waitUntilExit()
        return Run(status: p.terminationStatus,
                   stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
                   seconds: Date().timeIntervalSince(start))
    }

    // MARK: collectives

    func testCollectivesGiveExactSumsMaxMinAndBroadcastFor1_2_4RanksAnd3WithDebug() throws {
        // nil = no mpirun at all (LocalCommunicator path); the others are real MPI jobs.
        let bigElements = 150_001  // with 128 KiB buckets (32 768 floats): 4 full buckets and a partial one
        // (ranks, --debug): the debug wrapper must be transparent when every rank agrees.
        for (k, debug): (Int?, Bool) in [(nil, false), (1, false), (2, false), (4, false), (3, true)] {
            let r = try run(["--mode", "collectives", "--elements", "\(bigElements)", "--bucket-bytes", "131072"]
                            + (debug ? ["--debug"] : []), ranks: k)
            XCTAssertEqual(r.status, 0, "k=\(String(describing: k)) stderr:\n\(r.stderr)")
            let j = try r.json
            let w = k ?? 1, s = w * (w + 1) / 2  // Σ_r (r + 1)
            let pattern = (0..<10).map { Double($0 % 7 + 1) }
            XCTAssertEqual(j["worldSize"] as? Int, w)
            XCTAssertEqual(j["f32Sum"] as? [Double], pattern.map { $0 * Double(s) }, "k=\(w)")
            XCTAssertEqual(j["f32SumPolled"] as? [Double], pattern.map { $0 * Double(s) }, "k=\(w)")
            XCTAssertEqual(j["f64Sum"] as? [Double], pattern.map { $0 * Double(s) + 0.5 * Double(w) })
            XCTAssertEqual(j["i64Sum"] as? [Int64],
                           pattern.map { Int64($0) * Int64(s) + Int64(w) << 40 })  // beyond 2^32: true 64-bit
            // Even positions are positive (max = last rank's), odd ones negative (max = rank 0's).
            XCTAssertEqual(j["f32Max"] as? [Double],
                           (0..<10).map { $0 % 2 == 0 ? pattern[$0] * Double(w) : -pattern[$0] })
            XCTAssertEqual(j["f64Min"] as? [Double], pattern)
            XCTAssertEqual(j["i64Max"] as? [Int64], [Int64((w - 1) * 10), 0])
            XCTAssertEqual(j["broadcastFromLast"] as? [Int64], (0..<5).map { Int64((w - 1) * 100 + $0) })
            XCTAssertEqual(j["sumScalar"] as? Double, Double(s))
            let small = (0..<1000).map { Double(($0 % 7 + 1) * s) }
            XCTAssertEqual(j["reducerSmallSync"] as? [Double], small)
            XCTAssertEqual(j["reducerSmallAsync"] as? [Double], small)
            // 700..<1000 → 256 + 44, 100..<300 → 200 (async), 400..<500 → 100 (reduceNow); finish() adds the gaps.
            XCTAssertEqual(j["reducerSmallAsyncBuckets"] as? Int, 4)
            XCTAssertEqual(j["bigElements"] as? Int, bigElements)
            XCTAssertEqual(j["bigSyncMismatches"] as? Int, 0)
            XCTAssertEqual(j["bigAsyncMismatches"] as? Int, 0)
            let total = (0..<bigElements).reduce(0.0) { $0 + Double($1 % 7 + 1) }
            XCTAssertEqual(j["bigSyncTotal"] as? Double ?? 0, total, accuracy: total * 1e-6)
            let cores = j["availableCores"] as? [Int] ?? []
            XCTAssertEqual(cores.count, w)
            XCTAssertTrue(cores.allSatisfy { $0 >= 1 }, "\(cores)")
        }
    }

    // MARK: data order

    func testSampleOrderIsIdenticalFor1_2_4_8RanksAndEachRankCoversItsSlice() throws {
        // 103 samples, global batch 24 (divisible by 1, 2, 4 and 8 ranks × micro batch 3), 2 epochs: 5 steps each,
        // the last with 7 samples.
        let args = ["--mode", "plan", "--samples", "103", "--global-batch", "24", "--micro-batch", "3",
                    "--epochs", "2", "--seed", "77"]
        let local0 = try GlobalBatchPlan(sampleCount: 103, globalBatch: 24, microBatch: 3, worldSize: 1, rank: 0,
                                         seed: 77)
        let expected = (local0.steps(epoch: 0) + local0.steps(epoch: 1)).map(\.globalIndices)
        for k in [1, 2, 4, 8] {
            let r = try run(args, ranks: k)
            XCTAssertEqual(r.status, 0, "k=\(k) stderr:\n\(r.stderr)")
            let steps = try r.json["steps"] as? [[String: Any]] ?? []
            XCTAssertEqual(steps.map { $0["indices"] as? [Int] ?? [] }, expected, "k=\(k)")
            for (n, s) in steps.enumerated() {
                // Positions written by exactly one rank each: the gathered sum reproduces the global batch.
                XCTAssertEqual(s["gatheredFromRanks"] as? [Int], expected[n], "k=\(k) step \(n)")
                let count = expected[n].count
                XCTAssertEqual(s["sliceStarts"] as? [Int],
                               (0..<k).map { balancedRange(count: count, parts: k, index: $0).lowerBound })
                let micro = s["microBatchesPerRank"] as? [Int] ?? []
                if count == 24 { XCTAssertEqual(micro, [Int](repeating: 24 / (k * 3), count: k), "k=\(k)") }
            }
            // 37 eval samples (a multiple of no K > 1): every index evaluated by exactly one rank.
            XCTAssertEqual(try r.json["evalCoverage"] as? [Int], [Int](repeating: 1, count: 37), "k=\(k)")
            // Last step of each epoch: 7 samples split 7 | 4+3 | 2+2+2+1 | 1×7+0, cut into micro-batches of ≤ 3;
            // on 8 ranks the 8th rank has none.
            XCTAssertEqual(steps[4]["microBatchesPerRank"] as? [Int],
                           [1: [3], 2: [2, 1], 4: [1, 1, 1, 1], 8: [1, 1, 1, 1, 1, 1, 1, 0]][k], "k=\(k)")
        }
    }

    // MARK: start-up consistency and debug mode

    func testMismatchedSeedOnOneRankIsRefusedNamingIt() throws {
        let bin = try Self.disttrainPath()
        // Baseline: the same seed everywhere is accepted.
        let same = try run(["--mode", "consistency", "--seed", "1"], ranks: 3)
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssertNotNil(try same.json["hash"] as? String)
        // MPMD (mpirun's `:` syntax): ranks 0 and 1 with seed 1, rank 2 with seed 2.
        let mismatch = try run(["--mode", "consistency", "--seed", "1", ":", "-n", "1", bin,
                                "--mode", "consistency", "--seed", "2"], ranks: 2)
        XCTAssertNotEqual(mismatch.status, 0)
        XCTAssertTrue(mismatch.stderr.contains("rank(s) 2 were started with a different configuration"),
                      mismatch.stderr)
        XCTAssertTrue(mismatch.stderr.contains("differing: seed"), mismatch.stderr)
        // Not asserted: rank 2's own "this rank (2) has seed=2" line. mpirun kills the remaining ranks as soon as
        // the first one exits non-zero, so which ranks get to print is a race; every rank's line names rank 2.
    }

    func testDebugModeRefusesACollectiveOfDifferentSize() throws {
        let r = try run(["--mode", "debug-mismatch", "--target-rank", "2"], ranks: 3)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rank(s) 2 differ from rank 0"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 2: collective #1 allReduceInt64Sum of 3 elements"), r.stderr)
    }

    // MARK: failures must not hang

    func testKilledRankEndsTheJobNonZeroWithinAMinute() throws {
        // Watchdog off in this mode: mpirun itself must notice the dead rank and tear the job down.
        let r = try run(["--mode", "kill", "--target-rank", "2"], ranks: 4, timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(r.seconds, 60)
        XCTAssertTrue(r.stderr.contains("rank 2"), r.stderr)
        XCTAssertFalse(r.stdout.contains("survived"), r.stdout)
    }

    func testWatchdogAbortsARankStuckInABarrierOrAWait() throws {
        // Rank 1 sleeps 60 s before the barrier; rank 0's watchdog (2 s) must abort the whole job long before.
        let r = try run(["--mode", "watchdog", "--target-rank", "1", "--sleep", "60", "--watchdog-timeout", "2"],
                        ranks: 2, timeout: 20)
        XCTAssertEqual(r.status, Watchdog.abortCode, r.stderr)
        XCTAssertLessThan(r.seconds, 15)
        XCTAssertTrue(r.stderr.contains("rank 0 of 2 has waited"), r.stderr)
        XCTAssertTrue(r.stderr.contains("collective #1 MPI_Barrier"), r.stderr)
        XCTAssertTrue(r.stderr.contains("raise --watchdog-timeout"), "the message names the flag that changes it: \(r.stderr)")
        // The wait on a non-blocking all-reduce is covered too.
        let w = try run(["--mode", "watchdog", "--target-rank", "1", "--sleep", "60", "--watchdog-timeout", "2",
                         "--stuck-in", "iallreduce"], ranks: 2, timeout: 20)
        XCTAssertEqual(w.status, Watchdog.abortCode, w.stderr)
        XCTAssertTrue(w.stderr.contains("collective #1 MPI_Wait on MPI_Iallreduce(float × 16, sum)"), w.stderr)
    }
}
