// ModelFolder / ModelKind: which loader opens a model folder (every command dispatches on it), from config.json alone:
// the `architectures` entry decides, model_type when there is none; anything else is refused by name.
import Foundation
import XCTest
@testable import Training

final class ModelKindTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ModelTests/Fixtures")

    func testFixtureFolders() throws {
        XCTAssertEqual(try ModelKind.of(fixtures.appendingPathComponent("bert-tiny-cls")), .encoderClassifier)
        XCTAssertEqual(try ModelKind.of(fixtures.appendingPathComponent("distilbert-tiny-cls")), .encoderClassifier)
        XCTAssertEqual(try ModelKind.of(fixtures.appendingPathComponent("gpt2-tiny-cls")), .gpt2Classifier)
        XCTAssertEqual(try ModelKind.of(fixtures.appendingPathComponent("gpt2-tiny-lm")), .gpt2LanguageModel)
        let lm = try ModelFolder.open(fixtures.appendingPathComponent("gpt2-tiny-lm"))
        XCTAssertEqual(lm.maxPositions, 40)
        XCTAssertEqual(try lm.maxLength(nil), 40)   // min(128, n_positions)
        XCTAssertThrowsError(try lm.maxLength(41))
        XCTAssertEqual(try lm.maxLength(12), 12)
    }

    func kind(_ json: [String: Any]) throws -> ModelKind { try ModelFolder.kind(of: json, path: "config.json").0 }

    func testArchitecturesDecideAndUnsupportedOnesAreNamed() throws {
        // A hub GPT-2 config may name no architecture: it is a language model; a BERT config with none, an encoder.
        XCTAssertEqual(try kind(["model_type": "gpt2"]), .gpt2LanguageModel)
        XCTAssertEqual(try kind(["model_type": "bert"]), .encoderClassifier)
        XCTAssertEqual(try kind(["model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]]), .gpt2Classifier)
        XCTAssertEqual(try kind(["model_type": "bert", "architectures": ["BertModel"]]), .encoderClassifier)
        XCTAssertEqual(try kind(["model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"]]), .encoderClassifier)
        XCTAssertEqual(try kind(["model_type": "bert", "architectures": ["BertForTokenClassification"]]), .encoderTokenClassifier)
        XCTAssertEqual(try kind(["model_type": "distilbert", "architectures": ["DistilBertForTokenClassification"]]), .encoderTokenClassifier)
        XCTAssertEqual(try kind(["model_type": "bert", "architectures": ["BertForQuestionAnswering"]]), .encoderQuestionAnswering)
        XCTAssertEqual(try kind(["model_type": "distilbert", "architectures": ["DistilBertForQuestionAnswering"]]), .encoderQuestionAnswering)
        for (type, arch) in [("distilbert", "BertForTokenClassification"), ("bert", "BertForMultipleChoice"), ("distilbert", "BertForQuestionAnswering"),
                             ("gpt2", "GPT2ForTokenClassification"), ("distilbert", "BertModel"), ("bert", "GPT2LMHeadModel")] {
            XCTAssertThrowsError(try kind(["model_type": type, "architectures": [arch]]), arch) { e in
                XCTAssertTrue("\(e)".contains(arch) && "\(e)".contains("not supported"), "\(e)")
            }
        }
        XCTAssertThrowsError(try kind(["model_type": "llama"])) { XCTAssertTrue("\($0)".contains("'llama'"), "\($0)") }
        XCTAssertThrowsError(try kind(["architectures": ["BertModel"]])) { XCTAssertTrue("\($0)".contains("model_type"), "\($0)") }
        XCTAssertThrowsError(try kind(["model_type": "bert", "architectures": [3]]))
    }

    func testUnreadableFoldersThrowNamingTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelkind-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try ModelKind.of(dir)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
        try Data("{not json".utf8).write(to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try ModelKind.of(dir)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
        XCTAssertThrowsError(try ModelKind.of(dir.appendingPathComponent("missing"))) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
    }
}
