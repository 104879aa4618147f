// ConfigReader and the configs built on it: a config.json with absurd sizes or wrong types is refused with one
// ConfigError naming the field (before, 1e308 trapped converting to Int and 2^62 overflowed the layout arithmetic).
import Foundation
import XCTest
@testable import Model

final class ConfigReaderTests: XCTestCase {
    let bert: [String: Any] = ["model_type": "bert", "vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 16,
                               "type_vocab_size": 2]
    let gpt2: [String: Any] = ["model_type": "gpt2", "vocab_size": 100, "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 16]

    func assertRefused(_ json: [String: Any], gpt: Bool, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try gpt ? GPT2Config(json: json, path: "c.json").path : ModelConfig(json: json, path: "c.json").path,
                             file: file, line: line) { e in
            XCTAssertTrue(e is ConfigError, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(mentions) && "\(e)".hasPrefix("c.json: "), "\(e)", file: file, line: line)
        }
    }

    func testValidConfigsStillDecode() throws {
        XCTAssertEqual(try ModelConfig(json: bert, path: "c.json").vocabSize, 100)
        XCTAssertEqual(try GPT2Config(json: gpt2, path: "c.json").intermediate, 32)
        var labelled = bert
        labelled["num_labels"] = 3
        XCTAssertEqual(try ModelConfig(json: labelled, path: "c.json").id2label, ["LABEL_0", "LABEL_1", "LABEL_2"])
        labelled["id2label"] = ["1": "b", "0": "a"]
        XCTAssertEqual(try ModelConfig(json: labelled, path: "c.json").id2label, ["a", "b"])
    }

    func testAbsurdSizesAndWrongTypesAreRefusedNamingTheField() {
        for (key, value) in [("vocab_size", 1e308 as Any), ("vocab_size", Int64(1) << 62), ("hidden_size", -8), ("hidden_size", "8"),
                             ("num_hidden_layers", 1.5), ("max_position_embeddings", 1e12), ("intermediate_size", [16])] {
            var j = bert
            j[key] = value
            assertRefused(j, gpt: false, mentions: "'\(key)'")
        }
        for (key, value) in [("n_embd", 1e308 as Any), ("n_positions", Int64.max), ("n_inner", -1)] {
            var j = gpt2
            j[key] = value
            assertRefused(j, gpt: true, mentions: "'\(key)'")
        }
        var j = bert
        j["num_labels"] = 1 << 40
        assertRefused(j, gpt: false, mentions: "'num_labels'")
        j = bert
        j["layer_norm_eps"] = "tiny"
        assertRefused(j, gpt: false, mentions: "'layer_norm_eps'")
    }

    func testTokenIdsOutsideTheVocabularyAreRefused() {
        var j = bert
        j["pad_token_id"] = 100
        assertRefused(j, gpt: false, mentions: "pad_token_id 100")
        var g = gpt2
        g["eos_token_id"] = 50256
        assertRefused(g, gpt: true, mentions: "eos_token_id 50256")
    }
}
