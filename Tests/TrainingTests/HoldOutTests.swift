// seededHoldOut: the --validation-split of token classification and question answering, written once (it was a copy
// in each task). The reference below is the loop both tasks ran before, kept here verbatim so that a change of the
// shared helper that would move a sentence or question between train and eval (and so change a run's numbers) fails.
import XCTest
import SplitMix
@testable import Training

final class HoldOutTests: XCTestCase {
    /// The tasks' former inline split.
    func reference(_ items: [Int], fraction: Double, seed: UInt64) -> (train: [Int], held: [Int]) {
        var order = Array(items.indices)
        var rng = SplitMix64(seed: seed)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let k = min(max(1, Int((Double(order.count) * fraction).rounded())), order.count - 1)
        let held = Set(order.prefix(k))
        return (items.indices.filter { !held.contains($0) }.map { items[$0] }, items.indices.filter { held.contains($0) }.map { items[$0] })
    }

    func testSameSplitAsBeforeAndAPartition() {
        for n in [2, 3, 7, 10, 101] {
            let items = (0..<n).map { $0 * 3 + 1 }
            for fraction in [0.01, 0.1, 0.25, 0.5, 0.99] {
                for seed: UInt64 in [0, 42, 20261207] {
                    let (train, held) = seededHoldOut(items, fraction: fraction, seed: seed)
                    let ref = reference(items, fraction: fraction, seed: seed)
                    XCTAssertEqual(train, ref.train, "n \(n) fraction \(fraction) seed \(seed)")
                    XCTAssertEqual(held, ref.held, "n \(n) fraction \(fraction) seed \(seed)")
                    XCTAssertFalse(held.isEmpty); XCTAssertFalse(train.isEmpty)
                    XCTAssertEqual((train + held).sorted(), items, "a partition")
                    XCTAssertEqual(train, train.sorted()); XCTAssertEqual(held, held.sorted())   // input order kept
                }
            }
        }
    }
}
