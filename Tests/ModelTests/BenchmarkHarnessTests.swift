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

    /// The LoRA comparison at a tiny shape (no timing asserted, only that it runs the planned adapter): r 2 on
    /// query+value of 2 layers of hidden 16 = 2·2·(2·16 + 16·2) + classifier (2·16 + 2).
    func testLoRAComparisonHarness() throws {
        let dir = try Fixtures.dir("bert-tiny-cls")
        var cfg = try ModelConfig.load(url: dir.appendingPathComponent("config.json"))
        cfg.id2label = ["a", "b"]
        let r = try ModelBenchmark.runLoRAComparison(config: cfg, lora: LoRAConfig(r: 2, alpha: 4), batch: 2, seq: 8,
                                                     steps: 2, warmup: 1, threads: 1)
        XCTAssertEqual(r.trainable_parameters, 2 * 2 * (2 * 16 + 16 * 2) + 2 * 16 + 2)
        XCTAssertEqual(r.targets, ["query", "value"])
        XCTAssertGreaterThan(r.full_step_s_median, 0)
        XCTAssertGreaterThan(r.lora_step_s_median, 0)
    }
}
