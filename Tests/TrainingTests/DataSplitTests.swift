// DataSplitTests: the seeded train/validation split and the data fingerprint.
//
// Deliberately not here: per-epoch shuffling and rank sharding (Dist and the trainer own those).

import Foundation
import XCTest
@testable import Training
import SplitMix

final class DataSplitTests: XCTestCase {
    private func dataset(_ n: Int, fingerprint: String = "f00d") -> TextDataset {
        TextDataset(url: URL(fileURLWithPath: "/x/train.jsonl"), format: .jsonl,
                    examples: (0..<n).map { Example(text: "t\($0)", label: $0 % 2, line: $0 + 1) },
                    fingerprint: fingerprint)
    }

    func testSplitMix64ReferenceVector() {
        // First outputs of the reference splitmix64.c for seed 1234567.
        var g = DataSplitRNG(seed: 1234567)
        XCTAssertEqual([g.next(), g.next(), g.next()], [6457827717110365317, 3203168211198807973, 9817491932198370423])
    }

    func testSplitIsPinnedAcrossPlatforms() throws {
        // Golden indices from an independent Python port of the same algorithm (SplitMix64, Fisher–Yates from the
        // top, rejection sampling, ceil(n·f)); any change to the algorithm changes users' validation sets.
        let (_, v1) = try DataLoader.split(dataset(10), validationFraction: 0.3, seed: 42)
        XCTAssertEqual(v1.examples.map(\.line), [0, 5, 9].map { $0 + 1 })
        let (_, v2) = try DataLoader.split(dataset(20), validationFraction: 0.25, seed: 7)
        XCTAssertEqual(v2.examples.map(\.line), [1, 2, 4, 15, 16].map { $0 + 1 })
    }

    func testSplitIsDeterministicDisjointCompleteAndOrdered() throws {
        let ds = dataset(1000)
        let a = try DataLoader.split(ds, validationFraction: 0.1, seed: 3)
        let b = try DataLoader.split(ds, validationFraction: 0.1, seed: 3)
        let c = try DataLoader.split(ds, validationFraction: 0.1, seed: 4)
        XCTAssertEqual(a.validation.examples, b.validation.examples)
        XCTAssertEqual(a.train.examples, b.train.examples)
        XCTAssertNotEqual(a.validation.examples.map(\.line), c.validation.examples.map(\.line))

        XCTAssertEqual(a.validation.count, 100)
        XCTAssertEqual(a.train.count, 900)
        let tl = Set(a.train.examples.map(\.line)), vl = Set(a.validation.examples.map(\.line))
        XCTAssertTrue(tl.isDisjoint(with: vl))
        XCTAssertEqual(tl.union(vl), Set(1...1000))
        // File order is kept within each part.
        XCTAssertEqual(a.train.examples.map(\.line), a.train.examples.map(\.line).sorted())
        XCTAssertEqual(a.validation.examples.map(\.line), a.validation.examples.map(\.line).sorted())
        // Not just the first or last rows.
        XCTAssertNotEqual(a.validation.examples.map(\.line), Array(1...100))
        XCTAssertNotEqual(a.validation.examples.map(\.line), Array(901...1000))
    }

    func testSplitSizesRoundUpLikeSklearn() throws {
        XCTAssertEqual(try DataLoader.split(dataset(10), validationFraction: 0.25, seed: 0).validation.count, 3)
        XCTAssertEqual(try DataLoader.split(dataset(10), validationFraction: 0.3, seed: 0).validation.count, 3)  // 0.3·10 = 3.0000000000000004
        XCTAssertEqual(try DataLoader.split(dataset(4654), validationFraction: 0.1, seed: 0).validation.count, 466)
        XCTAssertEqual(try DataLoader.split(dataset(3), validationFraction: 0.01, seed: 0).validation.count, 1)
    }

    func testSplitFingerprintsDifferFromParentAndEachOther() throws {
        let ds = dataset(10)
        let s = try DataLoader.split(ds, validationFraction: 0.2, seed: 1)
        let t = try DataLoader.split(ds, validationFraction: 0.2, seed: 2)
        let fps = [ds.fingerprint, s.train.fingerprint, s.validation.fingerprint, t.train.fingerprint]
        XCTAssertEqual(Set(fps).count, 4)
        XCTAssertEqual(s.train.fingerprint.count, 64)
        XCTAssertEqual(try DataLoader.split(ds, validationFraction: 0.2, seed: 1).train.fingerprint, s.train.fingerprint)
    }

    func testSplitRejectsBadFractionsAndTinyData() {
        for f in [0, 1, 1.5, -0.1, Double.nan] {
            assertDataError(try DataLoader.split(dataset(10), validationFraction: f, seed: 0), line: nil,
                            contains: ["not a fraction strictly between 0 and 1", "--validation-split"])
        }
        assertDataError(try DataLoader.split(dataset(1), validationFraction: 0.5, seed: 0), line: nil,
                        contains: ["leaves no training examples"])
        assertDataError(try DataLoader.split(dataset(2), validationFraction: 0.9, seed: 0), line: nil,
                        contains: ["leaves no training examples"])
    }

    // MARK: fingerprint

    func testFingerprintIsSHA256OfTheFileBytes() throws {
        let dir = try TempFolder()
        let url = try dir.write("a.jsonl", "{\"text\": \"hi\", \"label\": \"ham\"}\n")
        // python3 -c 'import hashlib; print(hashlib.sha256(b"{\"text\": \"hi\", \"label\": \"ham\"}\n").hexdigest())'
        XCTAssertEqual(try DataLoader.loadTexts(url, columns: ColumnOptions()).fingerprint,
                       "25209bd02c2ab630008a73619a093f8a5aa775b134dfcde4c57c0cae50d6e4d9")
    }

    func testFingerprintChangesWithOneByteAndNotWithTheName() throws {
        let dir = try TempFolder()
        let a = try dir.write("a.jsonl", "{\"text\": \"hi\", \"label\": \"ham\"}\n{\"text\": \"yo\", \"label\": \"spam\"}\n")
        let b = try dir.write("b.jsonl", "{\"text\": \"hi\", \"label\": \"ham\"}\n{\"text\": \"yo\", \"label\": \"spam\"}\n")
        let c = try dir.write("c.jsonl", "{\"text\": \"hi\", \"label\": \"ham\"}\n{\"text\": \"yp\", \"label\": \"spam\"}\n")
        let fa = try DataLoader.loadLabeled(a, columns: ColumnOptions(), labels: nil).0.fingerprint
        let fb = try DataLoader.loadLabeled(b, columns: ColumnOptions(), labels: nil).0.fingerprint
        let fc = try DataLoader.loadLabeled(c, columns: ColumnOptions(), labels: nil).0.fingerprint
        XCTAssertEqual(fa, fb)
        XCTAssertNotEqual(fa, fc)
        XCTAssertTrue(fa.allSatisfy { "0123456789abcdef".contains($0) })
    }
}
