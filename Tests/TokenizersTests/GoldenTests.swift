// GoldenTests: every case of the golden files (ids produced by Hugging Face `tokenizers` 0.23.3, see
// Fixtures/*.json "versions") must match exactly, for both loading routes of each tokenizer.
import XCTest
import Tokenizers

final class GoldenTests: XCTestCase {
    func testBertGoldensFromVocabTxt() throws { try checkBert(try Fixtures.bertFromVocab(), route: "vocab.txt") }
    func testBertGoldensFromTokenizerJSON() throws { try checkBert(try Fixtures.bertFromJSON(), route: "tokenizer.json") }
    func testGPT2GoldensFromVocabAndMerges() throws { try checkGPT2(try Fixtures.gpt2FromVocab(), route: "vocab.json+merges.txt") }
    func testGPT2GoldensFromTokenizerJSON() throws { try checkGPT2(try Fixtures.gpt2FromJSON(), route: "tokenizer.json") }

    func checkBert(_ tok: any Tokenizer, route: String) throws {
        let golden = try Fixtures.decode(BertGolden.self, "bert-uncased.json")
        XCTAssertEqual(golden.cases.count, 161)
        var m = Mismatches()
        for c in golden.cases {
            let text = try Fixtures.text(hex: c.utf8_hex, text: c.text, index: c.index)
            let e = try tok.encode(text, pair: nil, addSpecialTokens: true, maxLength: nil)
            m.check(e.ids, c.ids, "case \(c.index) ids")
            m.check(e.tokens, c.tokens, "case \(c.index) tokens")
            m.check(e.typeIds, c.token_type_ids, "case \(c.index) type ids")
            let n = try tok.encode(text, pair: nil, addSpecialTokens: false, maxLength: nil)
            m.check(n.ids, c.ids_no_special, "case \(c.index) ids_no_special")
            m.check(n.tokens, c.tokens_no_special, "case \(c.index) tokens_no_special")
        }
        XCTAssertEqual(golden.pairs.count, 10)
        for p in golden.pairs {
            let e = try tok.encode(p.text_a, pair: p.text_b, addSpecialTokens: true, maxLength: nil)
            m.check(e.ids, p.ids, "pair \(p.index) ids")
            m.check(e.tokens, p.tokens, "pair \(p.index) tokens")
            m.check(e.typeIds, p.token_type_ids, "pair \(p.index) type ids")
            XCTAssertEqual(p.truncated.truncation, "longest_first")
            let t = try tok.encode(p.text_a, pair: p.text_b, addSpecialTokens: true, maxLength: p.truncated.max_length)
            m.check(t.ids, p.truncated.ids, "pair \(p.index) truncated ids")
            m.check(t.tokens, p.truncated.tokens, "pair \(p.index) truncated tokens")
            m.check(t.typeIds, p.truncated.token_type_ids, "pair \(p.index) truncated type ids")
        }
        m.assertNone("BERT goldens via \(route)")
        XCTAssertEqual(tok.padTokenId, 0)
        XCTAssertEqual(tok.vocabSize, 30522)
        XCTAssertEqual(tok.specialTokens["[CLS]"], 101)
    }

    func checkGPT2(_ tok: any Tokenizer, route: String) throws {
        let golden = try Fixtures.decode(GPT2Golden.self, "gpt2.json")
        XCTAssertEqual(golden.cases.count, 161)
        var m = Mismatches()
        for c in golden.cases {
            let text = try Fixtures.text(hex: c.utf8_hex, text: c.text, index: c.index)
            let e = try tok.encode(text, pair: nil, addSpecialTokens: true, maxLength: nil)
            m.check(e.ids, c.ids, "case \(c.index) ids")
            m.check(e.tokens, c.tokens, "case \(c.index) tokens")
            let n = try tok.encode(text, pair: nil, addSpecialTokens: false, maxLength: nil)
            m.check(n.ids, c.ids_no_special, "case \(c.index) ids_no_special")
            let decoded = tok.decode(e.ids, skipSpecialTokens: false)
            // Compare scalars: String == is canonical equivalence and would accept NFC vs NFD differences.
            m.check(Array(decoded.unicodeScalars), Array(c.decoded.unicodeScalars), "case \(c.index) decoded")
            m.check(Array(decoded.unicodeScalars) == Array(text.unicodeScalars), c.roundtrip_equal, "case \(c.index) round trip")
        }
        m.assertNone("GPT-2 goldens via \(route)")
        XCTAssertNil(tok.padTokenId, "GPT-2 has no pad token unless configured")
        XCTAssertEqual(tok.vocabSize, 50257)
        XCTAssertEqual(tok.specialTokens, ["<|endoftext|>": 50256])
    }
}
