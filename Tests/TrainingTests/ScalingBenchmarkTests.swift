// ScalingBenchmarkTests: `bench --data-parallel` times the trainer's own step (TrainStep with NodeSharedSetup) on a
// throwaway classifier folder of the given shape; here the tiny BERT fixture's shape on thread-ranks.
import Dist
import Foundation
import Model
import TestSupport
import XCTest
@testable import Training

final class ScalingBenchmarkTests: XCTestCase {
    func testTimesTheTrainerStepAtOneAndTwoRanks() throws {
        let config = try ModelConfig.load(url: TestPaths.fixture("bert-tiny-cls").appendingPathComponent("config.json"))
        let one = try InProcessGroup.run(worldSize: 1) { comm in
            try ScalingBenchmark.run(config: config, batch: 4, seq: 16, steps: 2, warmup: 1, threads: 1, comm: comm)
        }[0]
        XCTAssertEqual(one.allreduce_path, "none")
        XCTAssertEqual(one.allreduce_bytes, 0)
        XCTAssertGreaterThan(one.tokens_per_s, 0)
        let two = try InProcessGroup.run(worldSize: 2) { comm in
            try ScalingBenchmark.run(config: config, batch: 4, seq: 16, steps: 2, warmup: 1, threads: 1, comm: comm)
        }
        XCTAssertEqual(two[0].allreduce_path, "shared-memory", "the trainer's path on one node")
        XCTAssertEqual(two[0].world_size, 2)
        XCTAssertEqual(two[0].gradient_bytes, one.gradient_bytes)
        // The word-embedding table (30522 × 16 of the fixture's ~500k parameters) is reduced over the step's rows
        // only, so a step moves far less than the whole gradient, but more than nothing.
        XCTAssertGreaterThan(two[0].allreduce_bytes, 0)
        XCTAssertLessThan(two[0].allreduce_bytes, two[0].gradient_bytes / 2)
        XCTAssertGreaterThan(two[0].tokens_per_s, 0)
        let noShm = try InProcessGroup.run(worldSize: 2) { comm in
            try ScalingBenchmark.run(config: config, batch: 4, seq: 16, steps: 2, warmup: 1, threads: 1, comm: comm, sharedMemory: false)
        }
        XCTAssertEqual(noShm[0].allreduce_path, "mpi")
    }
}
