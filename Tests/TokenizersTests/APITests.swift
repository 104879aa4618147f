// APITests: the Encoding contract the trainer codes against: pairs and type ids, truncation, decoding, batch
// encoding, lookups, and that one tokenizer can be shared across threads. Expected ids come from the golden
// files' vocabularies (bert-base-uncased: [CLS]=101 [SEP]=102 hello=7592 world=2088) or from the
// `tokenizers` wheel where noted.
import Foundation
import XCTest
import Tokenizers
import SplitMix

final class APITests: XCTestCase {
    func testPairWithoutSpecialTokensKeepsTemplateTypeIds() throws {
        let bert = try Fixtures.bertFromJSON()
        let e = try bert.encode("hello", pair: "world", addSpecialTokens: false, maxLength: nil)
        XCTAssertEqual(e.ids, [7592, 2088])
        XCTAssertEqual(e.typeIds, [0, 1])
        XCTAssertEqual(e.attentionMask, [1, 1])
        // GPT-2 pairs: A gets 0, B gets 1, no tokens added (the wheel: encode('a', 'b').type_ids == [0, 1]).
        let gpt2 = try Fixtures.gpt2FromVocab()
        let g = try gpt2.encode("a", pair: "b", addSpecialTokens: true, maxLength: nil)
        XCTAssertEqual(g.typeIds, [0, 1])
        XCTAssertEqual(g.ids.count, 2)
    }

    func testSingleAndPairTruncationLongestFirst() throws {
        let bert = try Fixtures.bertFromJSON()
        let words = "one two three four five six seven eight"
        let s = try bert.encode(words, pair: nil, addSpecialTokens: true, maxLength: 5)
        XCTAssertEqual(s.tokens, ["[CLS]", "one", "two", "three", "[SEP]"])
        // Longer second sequence: it alone is cut until the lengths meet.
        let p = try bert.encode("one two", pair: words, addSpecialTokens: true, maxLength: 9)
        XCTAssertEqual(p.tokens, ["[CLS]", "one", "two", "[SEP]", "one", "two", "three", "four", "[SEP]"])
        XCTAssertEqual(p.typeIds, [0, 0, 0, 0, 1, 1, 1, 1, 1])
        // Both longer than half: split evenly, the first sequence losing the odd token.
        let q = try bert.encode(words, pair: words, addSpecialTokens: true, maxLength: 8)
        XCTAssertEqual(q.tokens, ["[CLS]", "one", "two", "[SEP]", "one", "two", "three", "[SEP]"])
        // No truncation when it fits.
        XCTAssertEqual(try bert.encode("hello", pair: nil, addSpecialTokens: true, maxLength: 3).ids, [101, 7592, 102])
    }

    func testDecode() throws {
        let bert = try Fixtures.bertFromVocab()
        let e = bert.encode("Hello, world! It's unaffable.")
        // Expected strings from the wheel's decode (its cleanup leaves "it ' s": the ' token has no trailing space).
        XCTAssertEqual(bert.decode(e.ids, skipSpecialTokens: true), "hello, world! it ' s unaffable.")
        XCTAssertEqual(bert.decode(e.ids, skipSpecialTokens: false), "[CLS] hello, world! it ' s unaffable. [SEP]")
        let gpt2 = try Fixtures.gpt2FromJSON()
        let g = gpt2.encode("Hi<|endoftext|>there")
        XCTAssertEqual(g.ids, [17250, 50256, 8117])
        XCTAssertEqual(gpt2.decode(g.ids, skipSpecialTokens: true), "Hithere")
        XCTAssertEqual(gpt2.decode(g.ids), "Hi<|endoftext|>there")
        // Invalid UTF-8 decodes with one U+FFFD per maximal invalid subpart, exactly as the wheel does:
        // bytes F0 9F 98 41 -> "\u{FFFD}A"; ED A0 80 -> three U+FFFD (ids from the wheel's byte-level vocab).
        XCTAssertEqual(gpt2.decode([172, 253, 246, 32]), "\u{FFFD}A")
        XCTAssertEqual(gpt2.decode([169, 254, 222]), "\u{FFFD}\u{FFFD}\u{FFFD}")
        XCTAssertEqual(gpt2.decode([-1, 999_999, 32]), "A", "unknown ids are skipped")
    }

    func testLookupsAndBatch() throws {
        let bert = try Fixtures.bertFromJSON()
        XCTAssertEqual(bert.tokenId("[MASK]"), 103)
        XCTAssertEqual(bert.token(forId: 7592), "hello")
        XCTAssertNil(bert.token(forId: 30522))
        XCTAssertNil(bert.tokenId("definitely-not-a-token"))
        let texts = ["hello world", "", "[CLS] literal", "naïve café"]
        let batch = try bert.encodeBatch(texts, pairs: ["x", "y", "z", "w"], addSpecialTokens: true, maxLength: 6)
        XCTAssertEqual(batch.count, 4)
        for (i, t) in texts.enumerated() {
            XCTAssertEqual(batch[i], try bert.encode(t, pair: ["x", "y", "z", "w"][i], addSpecialTokens: true, maxLength: 6))
            XCTAssertLessThanOrEqual(batch[i].ids.count, 6)
        }
        XCTAssertEqual(batch[1].ids, [101, 102, 1061, 102], "empty text still gets its template")
        XCTAssertEqual(bert.encode("[CLS] literal").ids.prefix(2), [101, 101], "literal [CLS] is the special token")
        XCTAssertThrowsError(try bert.encodeBatch(["a", "b"], pairs: ["c"]))
    }

    func testConcurrentEncodingMatchesSerial() throws {
        // The BPE word cache is shared and locked; results must not depend on interleaving.
        let gpt2 = try Fixtures.gpt2FromVocab()
        var rng = SplitMix64(state: 99)
        let texts = (0..<400).map { _ in RandomText.string(&rng) }
        let serial = texts.map { gpt2.encode($0).ids }
        let fresh = try Fixtures.gpt2FromVocab()
        let results = ResultBox(count: texts.count)
        DispatchQueue.concurrentPerform(iterations: texts.count) { i in results.set(i, fresh.encode(texts[i]).ids) }
        XCTAssertEqual(results.values, serial)
    }
}

/// Collects per-index results from concurrent workers.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [[Int32]]
    init(count: Int) { storage = Array(repeating: [], count: count) }
    func set(_ i: Int, _ v: [Int32]) { lock.lock(); storage[i] = v; lock.unlock() }
    var values: [[Int32]] { lock.lock(); defer { lock.unlock() }; return storage }
}
