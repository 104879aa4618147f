// ShardingTests: the data order must not depend on the world size. Golden values for the generator and the
// permutation come from an independent Python re-implementation (described in the comment of each test), so a change
// of algorithm, or a platform difference, fails here rather than silently changing which samples a run sees.
import XCTest
@testable import Dist
import SplitMix

final class ShardingTests: XCTestCase {
    // Python: reference splitmix64 (Vigna), state 0:
    //   def nxt(s): s=(s+0x9E3779B97F4A7C15)&M; z=s; z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M;
    //               z=((z^(z>>27))*0x94D049BB133111EB)&M; return s, z^(z>>31)
    func testSplitMix64MatchesReferenceSequence() {
        var r = SplitMix64(state: 0)
        XCTAssertEqual([r.next(), r.next(), r.next()],
                       [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4, 0x06c4_5d18_8009_454f])
    }

    func testBoundedDrawsStayInRangeAndHitEveryValue() {
        var r = SplitMix64(keys: 7)
        var seen = Set<UInt64>()
        for _ in 0..<1000 {
            let v = r.next(below: 5)
            XCTAssertLessThan(v, 5)
            seen.insert(v)
        }
        XCTAssertEqual(seen, [0, 1, 2, 3, 4])
    }

    // Python (same helpers as above): keyed(*keys): s=0x6A09E667F3BCC908; for k: s=mix(s ^ mix((k+golden)&M));
    // below(b): Lemire multiply-shift with rejection threshold (2**64-b)%b; Fisher-Yates from i=n-1 down to 1.
    func testPermutationMatchesPythonReference() {
        XCTAssertEqual(GlobalBatchPlan.permutation(count: 10, seed: 42, epoch: 0), [7, 5, 1, 6, 0, 3, 4, 9, 8, 2])
        XCTAssertEqual(GlobalBatchPlan.permutation(count: 10, seed: 42, epoch: 1), [6, 3, 9, 2, 5, 1, 0, 8, 4, 7])
        XCTAssertEqual(GlobalBatchPlan.permutation(count: 23, seed: 1234, epoch: 0),
                       [11, 14, 9, 20, 16, 8, 22, 2, 13, 21, 1, 5, 10, 0, 18, 4, 3, 17, 6, 7, 12, 19, 15])
    }

    func plan(_ n: Int, _ gb: Int, _ mb: Int, _ w: Int, _ r: Int, seed: UInt64 = 99,
              dropLast: Bool = false) throws -> GlobalBatchPlan {
        try GlobalBatchPlan(sampleCount: n, globalBatch: gb, microBatch: mb, worldSize: w, rank: r, seed: seed,
                            dropLast: dropLast)
    }

    func testEverySampleExactlyOncePerEpochAcrossRanksAndMicroBatches() throws {
        let n = 103, w = 4
        for epoch in 0..<3 {
            var seen = [Int](repeating: 0, count: n)
            for r in 0..<w {
                for step in try plan(n, 24, 3, w, r).steps(epoch: epoch) {
                    for mb in step.microBatches { for i in mb { seen[i] += 1 } }
                }
            }
            XCTAssertEqual(seen, [Int](repeating: 1, count: n), "epoch \(epoch)")
        }
        XCTAssertNotEqual(try plan(n, 24, 3, w, 0).permutation(epoch: 0), try plan(n, 24, 3, w, 0).permutation(epoch: 1))
    }

    func testGlobalOrderIdenticalForWorldSizes1To8AndSlicesContiguous() throws {
        let n = 103, gb = 24
        let reference = try plan(n, gb, 1, 1, 0).steps(epoch: 1)
        XCTAssertEqual(reference.count, 5)  // ceil(103 / 24)
        for w in [1, 2, 3, 4, 8] {
            for r in 0..<w {
                let steps = try plan(n, gb, 1, w, r).steps(epoch: 1)
                XCTAssertEqual(steps.map(\.globalIndices), reference.map(\.globalIndices), "w=\(w) r=\(r)")
                for s in steps {
                    // The rank's micro-batches, concatenated, are exactly its contiguous slice of the global batch.
                    XCTAssertEqual(s.microBatches.flatMap { $0 }, Array(s.globalIndices[s.rankSlice]))
                    XCTAssertEqual(s.rankSlice, balancedRange(count: s.globalCount, parts: w, index: r))
                }
            }
        }
    }

    func testAccumulationStepsAndEquivalenceOfRanksAndMicroBatches() throws {
        // 1 rank × 4 micro-batches of 2 sees the same micro-batches, in order, as 4 ranks × 1 micro-batch of 2.
        let one = try plan(40, 8, 2, 1, 0)
        XCTAssertEqual(one.accumulationSteps, 4)
        let four = try (0..<4).map { try plan(40, 8, 2, 4, $0) }
        XCTAssertEqual(four[0].accumulationSteps, 1)
        for (k, s) in one.steps(epoch: 0).enumerated() {
            XCTAssertEqual(s.microBatches, four.map { $0.steps(epoch: 0)[k].microBatches[0] })
        }
    }

    func testDivisibilityErrorNamesTheNumbersAndWhatWouldWork() {
        XCTAssertThrowsError(try plan(100, 10, 2, 4, 0)) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("global batch 10"), m)
            XCTAssertTrue(m.contains("world size 4 × micro batch 2 = 8"), m)
            XCTAssertTrue(m.contains("multiple of 8 (e.g. 8 or 16)"), m)
            XCTAssertTrue(m.contains("world size in {1, 5}"), m)
        }
        XCTAssertThrowsError(try plan(100, 12, 4, 2, 0)) { error in
            XCTAssertTrue("\(error)".contains("micro batch dividing 6 (1, 2, 3, 6)"), "\(error)")
        }
        XCTAssertThrowsError(try plan(0, 8, 1, 1, 0))
        XCTAssertThrowsError(try plan(10, 8, 1, 2, 2))
        XCTAssertThrowsError(try plan(5, 8, 1, 1, 0, dropLast: true))
    }

    func testLastPartialBatchIsSplitEvenlyWithoutDuplicates() throws {
        // 103 = 4 × 24 + 7: the final step has 7 samples.
        let last4 = try (0..<4).map { try plan(103, 24, 3, 4, $0).steps(epoch: 0).last! }
        XCTAssertEqual(last4.map { $0.rankIndices.count }, [2, 2, 2, 1])
        XCTAssertEqual(last4[0].globalCount, 7)
        XCTAssertEqual(last4.flatMap { $0.microBatches.flatMap { $0 } }, last4[0].globalIndices)
        // 8 ranks, 7 samples: one rank has nothing (no micro-batches) but is still part of the step.
        let last8 = try (0..<8).map { try plan(103, 24, 3, 8, $0).steps(epoch: 0).last! }
        XCTAssertEqual(last8.map { $0.microBatches.count }, [1, 1, 1, 1, 1, 1, 1, 0])
        XCTAssertEqual(Set(last8.flatMap { $0.rankIndices }).count, 7)
        // Micro-batches of a short slice are at most microBatch long: 7 samples on 1 rank, micro 3 → 3, 3, 1.
        XCTAssertEqual(try plan(103, 24, 3, 1, 0).steps(epoch: 0).last!.microBatches.map(\.count), [3, 3, 1])
        // dropLast skips the tail instead.
        let dropped = try plan(103, 24, 3, 4, 0, dropLast: true)
        XCTAssertEqual(dropped.stepsPerEpoch, 4)
        XCTAssertEqual(dropped.samplesPerEpoch, 96)
    }

    func testCursorResumeGivesTheSameStepAtAnyWorldSize() throws {
        let all = try plan(103, 24, 1, 1, 0).steps(epoch: 0) + plan(103, 24, 1, 1, 0).steps(epoch: 1)
        XCTAssertEqual(all.map(\.cursor), [0, 24, 48, 72, 96, 103, 127, 151, 175, 199])
        XCTAssertEqual(all.map(\.globalStep), Array(0..<10))
        for w in [1, 3, 8] {
            let p = try plan(103, 24, 1, w, w - 1)
            for s in all {
                XCTAssertEqual(try p.step(atCursor: s.cursor).globalIndices, s.globalIndices)
                XCTAssertEqual(p.step(global: s.globalStep).cursor, s.cursor)
            }
        }
        XCTAssertThrowsError(try plan(103, 24, 1, 1, 0).step(atCursor: 30)) { error in
            XCTAssertTrue("\(error)".contains("not a multiple of the global batch 24"), "\(error)")
        }
    }

    func testEvalShardingCoversEachIndexOnceWithoutPadding() {
        XCTAssertEqual((0..<3).map { EvalSharding.range(count: 10, rank: $0, worldSize: 3) }, [0..<4, 4..<7, 7..<10])
        XCTAssertEqual((0..<4).map { EvalSharding.range(count: 2, rank: $0, worldSize: 4).count }, [1, 1, 0, 0])
        for count in [0, 1, 7, 10, 101] {
            for w in [1, 2, 3, 8] {
                let ranges = (0..<w).map { EvalSharding.range(count: count, rank: $0, worldSize: w) }
                XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<count), "count \(count), w \(w)")
                XCTAssertLessThanOrEqual(ranges.map(\.count).max()! - ranges.map(\.count).min()!, 1)
            }
        }
    }

    func testPerSampleStreamsDependOnlyOnSeedStepAndSample() {
        var a = SplitMix64.forSample(seed: 1, step: 3, sample: 17)
        var b = SplitMix64.forSample(seed: 1, step: 3, sample: 17)
        var c = SplitMix64.forSample(seed: 1, step: 3, sample: 18)
        let x = a.next()
        XCTAssertEqual(x, b.next())
        XCTAssertNotEqual(x, c.next())
    }
}

final class LengthGroupingTests: XCTestCase {
    func testGroupedPlanIsAPermutationIndependentOfWorldSizeAndCutsPadding() throws {
        var rng = SplitMix64(state: 9)
        let n = 203, gb = 8
        let lengths = (0..<n).map { _ in 5 + Int(rng.next(below: 120)) }
        func plan(_ w: Int, _ r: Int, grouped: Bool) throws -> GlobalBatchPlan {
            try GlobalBatchPlan(sampleCount: n, globalBatch: gb, microBatch: gb / w, worldSize: w, rank: r, seed: 3,
                                lengths: grouped ? lengths : nil, groupFactor: 4)
        }
        let p1 = try plan(1, 0, grouped: true)
        for epoch in 0..<2 {
            let perm = p1.permutation(epoch: epoch)
            XCTAssertEqual(perm.sorted(), Array(0..<n), "every sample exactly once")
            for w in [2, 4, 8] {
                XCTAssertEqual(try plan(w, w - 1, grouped: true).permutation(epoch: epoch), perm, "world size \(w)")
            }
        }
        // Padding: sum over batches of (max length × batch size) must drop clearly against random batches.
        func padded(_ p: GlobalBatchPlan) -> Int {
            p.steps(epoch: 0).reduce(0) { acc, s in acc + s.globalIndices.map { lengths[$0] }.max()! * s.globalCount }
        }
        let grouped = padded(p1), random = padded(try plan(1, 0, grouped: false))
        XCTAssertLessThan(Double(grouped), 0.75 * Double(random), "grouped \(grouped) vs random \(random) padded tokens")
        // Only the epoch's last step may be partial.
        let steps = p1.steps(epoch: 0)
        XCTAssertTrue(steps.dropLast().allSatisfy { $0.globalCount == gb })
    }
}
