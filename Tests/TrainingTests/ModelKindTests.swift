// ModelKind.of: which loader opens a model folder (train, eval and predict dispatch on it), from config.json alone.
import Foundation
import XCTest
@testable import Training

final class ModelKindTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ModelTests/Fixtures")

    func testFixtureFolders() {
        XCTAssertEqual(ModelKind.of(fixtures.appendingPathComponent("bert-tiny-cls")), .encoderClassifier)
        XCTAssertEqual(ModelKind.of(fixtures.appendingPathComponent("distilbert-tiny-cls")), .encoderClassifier)
        XCTAssertEqual(ModelKind.of(fixtures.appendingPathComponent("gpt2-tiny-cls")), .gpt2Classifier)
        XCTAssertEqual(ModelKind.of(fixtures.appendingPathComponent("gpt2-tiny-lm")), .gpt2LanguageModel)
    }

    func testConfigsWithoutArchitecturesAndUnreadableFolders() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelkind-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("config.json")
        // A hub GPT-2 config may name no architecture: it is a language model.
        try Data(#"{"model_type": "gpt2", "n_embd": 16}"#.utf8).write(to: config)
        XCTAssertEqual(ModelKind.of(dir), .gpt2LanguageModel)
        try Data(#"{"model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]}"#.utf8).write(to: config)
        XCTAssertEqual(ModelKind.of(dir), .gpt2Classifier)
        // Broken or missing configs go to the encoder loader, whose error names the file.
        try Data("{not json".utf8).write(to: config)
        XCTAssertEqual(ModelKind.of(dir), .encoderClassifier)
        XCTAssertEqual(ModelKind.of(dir.appendingPathComponent("missing")), .encoderClassifier)
    }
}
