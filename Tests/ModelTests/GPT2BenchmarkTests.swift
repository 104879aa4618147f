// GPT2BenchmarkTests.swift: runs the GPT-2 6x384 benchmarks only when DISTTRAIN_GPT2_BENCH is set (minutes; needs a
// release build):
//   DISTTRAIN_GPT2_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter GPT2BenchmarkTests
// (or, faster to build: `disttrain generate --bench`). Optional: DISTTRAIN_BENCH_THREADS, _STEPS, _BATCH, _SEQ.
// Prints JSON lines and checks the numbers are sane.
import Foundation
import XCTest
import Model

final class GPT2BenchmarkTests: XCTestCase {
    func testGPT2StepAndGeneration() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["DISTTRAIN_GPT2_BENCH"] != nil else { throw XCTSkip("set DISTTRAIN_GPT2_BENCH=1 to run the GPT-2 benchmark") }
        func int(_ k: String, _ d: Int) -> Int { env[k].flatMap { Int($0) } ?? d }
        let threads = int("DISTTRAIN_BENCH_THREADS", 1)
        let r = GPT2Benchmark.runTraining(config: GPT2Benchmark.smallConfig(), batch: int("DISTTRAIN_BENCH_BATCH", 16),
                                          seq: int("DISTTRAIN_BENCH_SEQ", 128), steps: int("DISTTRAIN_BENCH_STEPS", 5),
                                          warmup: 1, threads: threads)
        print("BENCH " + r.json)
        XCTAssertGreaterThan(r.mfu, 0)
        XCTAssertLessThan(r.mfu, 1.5, "an MFU above 1 means the flop count or the sgemm timing is wrong")
        let g = try GPT2Benchmark.runGeneration(config: GPT2Benchmark.smallConfig(), promptTokens: 16, newTokens: 64, repeats: 3, threads: threads)
        print("BENCH " + g.json)
        XCTAssertGreaterThan(g.cached_tokens_per_s, g.recompute_tokens_per_s, "the KV cache should be faster than recompute")
    }
}
