// LMDataTests.swift: causal-LM data preparation: packing with EOS between documents, one-example-per-row with
// truncation counted, prompt masking (-100 on prompt tokens, EOS appended and counted), padding into a batch, and
// file:line errors for bad rows. A word-level stub tokenizer keeps the expected ids readable (the BPE itself is
// tested in TokenizersTests); ids: "w<k>" -> k, EOS = 99.
import Foundation
import XCTest
import Model
import Tokenizers
@testable import Training

/// "w3 w5" -> [3, 5]. Enough of the Tokenizer protocol for data preparation.
struct WordStubTokenizer: Tokenizer {
    var vocabSize: Int { 100 }
    var padTokenId: Int32? { nil }
    var specialTokens: [String: Int32] { ["<eos>": 99] }
    func tokenId(_ token: String) -> Int32? { Int32(token.dropFirst()) }
    func token(forId id: Int32) -> String? { "w\(id)" }
    func encode(_ text: String, pair: String?, addSpecialTokens: Bool, maxLength: Int?) throws -> Encoding {
        let words = text.split(separator: " ").map(String.init)
        let ids = words.map { Int32($0.dropFirst())! }
        return Encoding(ids: ids, tokens: words, typeIds: ids.map { _ in 0 })
    }
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String { ids.map { "w\($0)" }.joined(separator: " ") }
}

final class LMDataTests: XCTestCase {
    let tok = WordStubTokenizer()

    func testPackingPutsEOSBetweenDocumentsAndKeepsTheLastBlock() throws {
        let dir = try TempFolder()
        let f = try dir.write("lm.jsonl", "{\"text\": \"w1 w2 w3\"}\n\n{\"text\": \"w4 w5\"}\n{\"text\": \"w6\"}\n")
        let ds = try LMData.loadText(f, tokenizer: tok, eosId: 99, mode: .packed(blockSize: 4), maxLength: 8)
        // stream: 1 2 3 99 4 5 99 6 99 -> blocks [1 2 3 99] [4 5 99 6] [99] (a 1-token block has no target: dropped)
        XCTAssertEqual(ds.examples.map(\.inputIds), [[1, 2, 3, 99], [4, 5, 99, 6]])
        XCTAssertEqual(ds.examples.map(\.labels), [[1, 2, 3, 99], [4, 5, 99, 6]])
        XCTAssertEqual(ds.examples.map(\.line), [1, 3])
        let ds2 = try LMData.loadText(f, tokenizer: tok, eosId: 99, mode: .packed(blockSize: 5), maxLength: 8)
        XCTAssertEqual(ds2.examples.map(\.inputIds), [[1, 2, 3, 99, 4], [5, 99, 6, 99]], "the last partial block is kept")
        XCTAssertThrowsError(try LMData.loadText(f, tokenizer: tok, eosId: 99, mode: .packed(blockSize: 9), maxLength: 8)) {
            XCTAssertTrue("\($0)".contains("block size 9"), "\($0)")
        }
    }

    func testPerRowTruncatesAndCounts() throws {
        let dir = try TempFolder()
        let f = try dir.write("lm.jsonl", "{\"text\": \"w1 w2 w3 w4 w5\"}\n{\"text\": \"w6\"}\n")
        let ds = try LMData.loadText(f, tokenizer: tok, eosId: 99, mode: .perRow, maxLength: 4)
        XCTAssertEqual(ds.examples.map(\.inputIds), [[1, 2, 3, 4], [6, 99]])
        XCTAssertEqual(ds.truncated, 1)
        XCTAssertTrue(ds.summary(maxLength: 4).contains("1 rows truncated to 4 tokens"))
    }

    func testPromptTokensAreMaskedAndEOSIsCounted() throws {
        let dir = try TempFolder()
        let f = try dir.write("pr.jsonl", """
            {"prompt": "w1 w2 w3", "response": "w7 w8"}
            {"prompt": "w1 w2 w3 w4 w5 w6", "response": "w7"}
            {"prompt": "w1 w2", "response": "w7 w8 w9 w10 w11"}
            """)
        let ds = try LMData.loadPromptResponse(f, tokenizer: tok, eosId: 99, maxLength: 6)
        XCTAssertEqual(ds.examples.count, 2)
        XCTAssertEqual(ds.examples[0].inputIds, [1, 2, 3, 7, 8, 99])
        XCTAssertEqual(ds.examples[0].labels, [-100, -100, -100, 7, 8, 99])
        XCTAssertEqual(ds.examples[0].targetCount, 3)
        XCTAssertEqual(ds.examples[1].inputIds, [1, 2, 7, 8, 9, 10], "response cut at maxLength")
        XCTAssertEqual(ds.examples[1].labels, [-100, -100, 7, 8, 9, 10])
        XCTAssertEqual(ds.truncated, 2)
        XCTAssertEqual(ds.droppedNoTarget, 1, "row 2's prompt fills the context")
        // batching: right padding with attention 0 and label -100, so a real EOS (99) still counts
        let (b, labels) = LMData.batch(ds.examples.reversed() + [LMExample(inputIds: [5, 99], labels: [5, 99], line: 9)], padId: 99,
                                      sampleIndices: [0, 1, 2])
        XCTAssertEqual(b.seqLen, 6)
        XCTAssertEqual(Array(b.inputIds[12..<18]), [5, 99, 99, 99, 99, 99])
        XCTAssertEqual(Array(b.attentionMask[12..<18]), [1, 1, 0, 0, 0, 0])
        XCTAssertEqual(Array(labels[12..<18]), [5, 99, -100, -100, -100, -100])
    }

    func testMissingOrBadFieldsNameFileAndLine() throws {
        let dir = try TempFolder()
        let f = try dir.write("pr.jsonl", "{\"prompt\": \"w1\", \"response\": \"w2\"}\n{\"prompt\": \"w1\"}\n")
        assertDataError(try LMData.loadPromptResponse(f, tokenizer: tok, eosId: 99, maxLength: 8), line: 2,
                        contains: ["pr.jsonl:2", "missing field \"response\"", "\"prompt\""])
        let g = try dir.write("lm.jsonl", "{\"text\": \"w1\"}\n{\"text\": 5}\n")
        assertDataError(try LMData.loadText(g, tokenizer: tok, eosId: 99, mode: .perRow, maxLength: 8), line: 2,
                        contains: ["lm.jsonl:2", "\"text\" is not a string"])
        let h = try dir.write("bad.jsonl", "{\"text\": \"w1\"}\n\n{text: w2}\n")
        assertDataError(try LMData.loadText(h, tokenizer: tok, eosId: 99, mode: .perRow, maxLength: 8), line: 3,
                        contains: ["bad.jsonl:3", "not valid JSON"])
    }

    /// LMData reads through DataLoader's JSON-lines reader: CRLF line ends (one grapheme in a Swift String, which
    /// once merged two rows into one bad line), blank lines and a UTF-8 byte-order mark are fine; line numbers count
    /// every physical line.
    func testCRLFBlankLinesAndByteOrderMark() throws {
        let dir = try TempFolder()
        let f = try dir.write("crlf.jsonl", "\u{FEFF}{\"prompt\": \"w1\", \"response\": \"w2\"}\r\n\r\n{\"prompt\": \"w3\", \"response\": \"w4 w5\"}\r\n")
        let ds = try LMData.loadPromptResponse(f, tokenizer: tok, eosId: 99, maxLength: 8)
        XCTAssertEqual(ds.examples.map(\.line), [1, 3])
        XCTAssertEqual(ds.examples.map(\.targetCount), [2, 3])
        let g = try dir.write("bad-crlf.jsonl", "{\"text\": \"w1\"}\r\n{\"text\": 5}\r\n")
        assertDataError(try LMData.loadText(g, tokenizer: tok, eosId: 99, mode: .perRow, maxLength: 8), line: 2,
                        contains: ["bad-crlf.jsonl:2", "\"text\" is not a string"])
    }

    /// End to end on a tiny random GPT-2 (vocab 100): prompt→response batches, loss normalised by the counted tokens,
    /// AdamW; the loss on the training rows must fall well below its start (memorisation of 3 rows).
    func testTinyGPT2LossFallsOnPromptResponseData() throws {
        let dir = try TempFolder()
        let f = try dir.write("pr.jsonl", """
            {"prompt": "w1 w2 w3", "response": "w10 w11 w12"}
            {"prompt": "w4 w5", "response": "w20 w21 w22 w23"}
            {"prompt": "w6", "response": "w30 w31"}
            """)
        let config = try GPT2Config(json: ["model_type": "gpt2", "vocab_size": 100, "n_embd": 16, "n_layer": 1, "n_head": 2,
                                           "n_positions": 16, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0], path: "tiny")
        let ds = try LMData.loadPromptResponse(f, tokenizer: tok, eosId: 99, maxLength: 16)
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        GPT2Benchmark.initialise(store, config: config, seed: 1)
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: 3, maxSeq: 16)
        let adam = AdamW(store: store, config: AdamWConfig(weightDecay: 0.0))
        let (batch, labels) = LMData.batch(ds.examples, padId: 99, sampleIndices: [0, 1, 2])
        let count = ds.examples.reduce(0) { $0 + $1.targetCount }
        XCTAssertEqual(count, 4 + 5 + 3)
        var losses: [Double] = []
        for _ in 0..<60 {
            store.zeroGrads()
            let l = model.forward(batch, labels: labels, gradientScale: 1 / Float(count), dropout: nil)
            XCTAssertEqual(l.count, count)
            model.backward()
            adam.step(lr: 1e-2)
            losses.append(l.mean)
        }
        XCTAssertEqual(losses[0], log(100.0), accuracy: 0.1, "a fresh model predicts ~uniformly")
        XCTAssertLessThan(losses.last!, 0.5 * losses[0], "loss \(losses[0]) -> \(losses.last!) did not fall")
    }
}
