// BPEMergeTests: the two merge strategies (flat rescan for short words, heap for long ones) must agree on
// every word, and a huge single "word" must stay fast (the quadratic scan alone would take minutes on it).
import Foundation
import XCTest
@testable import Tokenizers
import SplitMix

final class BPEMergeTests: XCTestCase {
    func testScanAndHeapAgree() throws {
        let tok = try XCTUnwrap(try Fixtures.gpt2FromVocab() as? ByteLevelBPETokenizer)
        var rng = SplitMix64(state: 5)
        var words: [[UInt8]] = ["hello", " unbelievable", "========", " the", "aaaaaaaaaaaaaaaaaaaaaaaaa"].map { Array($0.utf8) }
        for _ in 0..<2_000 {
            let s = RandomText.string(&rng)
            words.append(Array(s.utf8.prefix(Int.random(in: 1...200, using: &rng))))
        }
        var symbols: [Int32] = [], ranks: [UInt64] = []
        var disagreements = 0
        for w in words {
            var byScan: [Int32] = [], byHeap: [Int32] = []
            w.withUnsafeBufferPointer { p in
                tok.model.merge(p, into: &byScan, symbols: &symbols, ranks: &ranks, heapThreshold: Int.max)
                tok.model.merge(p, into: &byHeap, symbols: &symbols, ranks: &ranks, heapThreshold: 0)
            }
            if byScan != byHeap { disagreements += 1 }
            XCTAssertEqual(byScan.flatMap { tok.idToBytes[Int($0)] }, w, "merged ids must spell the word's bytes")
        }
        XCTAssertEqual(disagreements, 0, "scan and heap merges disagree on \(disagreements) of \(words.count) words")
    }

    func testHugeRunsStayFastAndRoundTrip() throws {
        let gpt2 = try Fixtures.gpt2FromVocab()
        let bert = try Fixtures.bertFromJSON()
        let started = Date()
        for text in [String(repeating: "=", count: 200_000), String(repeating: "ab", count: 100_000),
                     String(repeating: "é", count: 50_000), String(repeating: " ", count: 100_000) + "x"] {
            let e = gpt2.encode(text)
            XCTAssertEqual(gpt2.decode(e.ids), text)
            _ = bert.encode(text)
        }
        // The heap makes these O(n log n): well under a second in release, a few seconds in debug.
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }
}
