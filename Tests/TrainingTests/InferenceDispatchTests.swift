// TaskFactory.inference: the one place that decides what `eval` and `predict` run on a model folder (issue 15 point 2,
// issue 18 point 4), and each task's inference refusing the options that do not apply to it with the messages and exit
// code the CLI printed before the move. In-process, on copies of the tiny fixtures whose config.json names the head;
// no weights are loaded before the option checks, so every case is fast.
// The behaviour through the binary (outputs, exit codes, real data) stays with the CLI tests (EvalCommandTests,
// PredictTests, NERCLITests, QACLITests, RewardCLITests, InferencePathTests).
import Dist
import Foundation
import TestSupport
import XCTest
@testable import Training

final class InferenceDispatchTests: XCTestCase {
    var made: [URL] = []
    override func tearDown() { for d in made { try? FileManager.default.removeItem(at: d) } }

    /// A copy of fixture `name` with config.json edited by `edit`.
    func folder(_ name: String, _ edit: (inout [String: Any]) -> Void = { _ in }) throws -> ModelFolder {
        let dir = try TestPaths.copyFixture(name)
        made.append(dir)
        let url = dir.appendingPathComponent("config.json")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return try ModelFolder.open(dir)
    }

    func kinds(_ f: ModelFolder) throws -> (eval: String, predict: String) {
        let o = InferenceOptions(model: f.directory.path)
        let e = try TaskFactory.inference(folder: f, adapterDir: nil, options: o, for: .evaluation)
        let p = try TaskFactory.inference(folder: f, adapterDir: nil, options: o, for: .prediction)
        return ("\(type(of: e))", "\(type(of: p))")
    }

    func testEachFolderKindResolvesToItsTasksInference() throws {
        let cls = try kinds(folder("bert-tiny-cls"))
        XCTAssertEqual(cls.eval, "SequenceClassifierInference"); XCTAssertEqual(cls.predict, "SequenceClassifierInference")
        let gpt2 = try kinds(folder("gpt2-tiny-cls"))
        XCTAssertEqual(gpt2.eval, "SequenceClassifierInference"); XCTAssertEqual(gpt2.predict, "SequenceClassifierInference")
        // predict on a language model: the classifier's Predictor refuses it with its pointer to `generate`.
        let lm = try kinds(folder("gpt2-tiny-lm"))
        XCTAssertEqual(lm.eval, "CausalLMInference"); XCTAssertEqual(lm.predict, "SequenceClassifierInference")
        let token = try kinds(folder("bert-tiny-cls") { $0["architectures"] = ["BertForTokenClassification"] })
        XCTAssertEqual(token.eval, "TokenClassificationInference"); XCTAssertEqual(token.predict, "TokenClassificationInference")
        let qa = try kinds(folder("distilbert-tiny-cls") {
            $0["architectures"] = ["DistilBertForQuestionAnswering"]
            $0["id2label"] = ["0": "LABEL_0", "1": "LABEL_1"]; $0["label2id"] = ["LABEL_0": 0, "LABEL_1": 1]
        })
        XCTAssertEqual(qa.eval, "QuestionAnsweringInference"); XCTAssertEqual(qa.predict, "QuestionAnsweringInference")
        // One output and no problem_type (or regression): a reward model; predict scores it through Predictor.
        let reward = try kinds(folder("bert-tiny-cls") {
            $0["id2label"] = ["0": "LABEL_0"]; $0["label2id"] = ["LABEL_0": 0]; $0["problem_type"] = nil
        })
        XCTAssertEqual(reward.eval, "RewardInference"); XCTAssertEqual(reward.predict, "SequenceClassifierInference")
    }

    /// The usage error (exit 2) `evaluate` throws, before any data file is read.
    func refusal(_ f: ModelFolder, _ edit: (inout InferenceOptions) -> Void) throws -> TrainingError {
        var o = InferenceOptions(model: "runs/m")
        edit(&o)
        let task = try TaskFactory.inference(folder: f, adapterDir: nil, options: o, for: .evaluation)
        do {
            _ = try task.evaluate(evalFile: "/nonexistent/eval.jsonl", comm: LocalCommunicator()) { _ in }
        } catch let e as TrainingError {
            XCTAssertEqual(e.exitCode, 2, e.message)
            return e
        }
        XCTFail("no error"); return TrainingError("")
    }

    func testEachTaskRefusesTheOptionsThatDoNotApplyToIt() throws {
        let cls = try folder("bert-tiny-cls")
        XCTAssertEqual(try refusal(cls) { $0.blockSize = 8 }.message,
                       "--block-size and --lm-per-row apply to GPT-2 language models only; runs/m is a classifier")
        XCTAssertEqual(try refusal(cls) { $0.dataFormat = .conll }.message,
                       "--data-format conll applies to token-classification data; runs/m is a sequence classifier: give jsonl, csv or tsv")
        let lm = try folder("gpt2-tiny-lm")
        XCTAssertEqual(try refusal(lm) { $0.dataFormat = .csv }.message,
                       "--data-format csv: a GPT-2 language model's data is JSON lines only; drop --data-format (or give jsonl)")
        let token = try folder("bert-tiny-cls") { $0["architectures"] = ["BertForTokenClassification"] }
        XCTAssertEqual(try refusal(token) { $0.dataFormat = .tsv }.message,
                       "--data-format tsv: token-classification data is jsonl or conll; drop --data-format or give one of those")
        let reward = try folder("bert-tiny-cls") { $0["id2label"] = ["0": "LABEL_0"]; $0["label2id"] = ["LABEL_0": 0]; $0["problem_type"] = nil }
        XCTAssertEqual(try refusal(reward) { $0.columns.textPair = "b" }.message,
                       "--block-size, --lm-per-row and --text-pair-column do not apply to a reward model; runs/m takes a preference file ({\"prompt\", \"chosen\", \"rejected\"} lines)")
        XCTAssertEqual(try refusal(reward) { $0.dataFormat = .csv }.message,
                       "--data-format csv: a reward model's preference data is JSON lines only; drop --data-format (or give jsonl)")
    }

    /// predict's lines keep a blank JSONL input line's place, and leave CSV rows and SQuAD files unnumbered.
    func testPredictOutputKeepsBlankLinesInPlace() throws {
        var out = PredictOutput()
        try out.append(["text": "a"], line: 2)
        try out.append(["text": "b/c"], line: 3)
        try out.append(["text": "d"], line: nil)
        XCTAssertEqual(out.lines, ["{\"error\":\"empty input\",\"line\":1}", "{\"text\":\"a\"}", "{\"text\":\"b/c\"}", "{\"text\":\"d\"}"])
    }
}
