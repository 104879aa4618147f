// BenchmarkHarnessTests.swift: runs the MiniLM-shape training-step benchmark only when DISTTRAIN_BENCH is set
// (it takes minutes and needs a release build):
//   DISTTRAIN_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter BenchmarkHarnessTests
// Optional: DISTTRAIN_BENCH_THREADS, _STEPS, _BATCH, _SEQ. Prints one JSON line and checks sanity of the numbers.
import Foundation
import XCTest
import Model

final class BenchmarkHarnessTests: XCTestCase {
    func testMiniLMStep() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["DISTTRAIN_BENCH"] != nil else { throw XCTSkip("set DISTTRAIN_BENCH=1 to run the benchmark") }
        func int(_ k: String, _ d: Int) -> Int { env[k].flatMap { Int($0) } ?? d }
        let r = ModelBenchmark.run(config: ModelBenchmark.miniLMConfig(), batch: int("DISTTRAIN_BENCH_BATCH", 32),
                                   seq: int("DISTTRAIN_BENCH_SEQ", 128), steps: int("DISTTRAIN_BENCH_STEPS", 5),
                                   warmup: 1, threads: int("DISTTRAIN_BENCH_THREADS", 1))
        print("BENCH " + r.json)
        XCTAssertGreaterThan(r.mfu, 0)
        XCTAssertLessThan(r.mfu, 1.5, "an MFU above 1 means the flop count or the sgemm timing is wrong")
    }
}
