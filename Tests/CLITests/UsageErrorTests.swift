// Bad input through the real binary, one test per case (these add to BadInputTests): data files, --config files,
// flags and models, for `train`, `eval`, `predict` and `inspect`. Each case asserts the exit code (2 usage, 1 runtime),
// that the first line of stderr names the file:line or flag and says what to do, no crash trace, and that nothing
// was written to the output folder.
import Foundation
import XCTest

final class UsageErrorTests: XCTestCase {
    var dir: URL!
    var model: URL!
    var train: URL!
    var out: URL { dir.appendingPathComponent("out") }

    override func setUpWithError() throws {
        dir = try CLI.tempDir("usage")
        let fixture = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(f), to: model.appendingPathComponent(f))
        }
        train = dir.appendingPathComponent("train.jsonl")
        try write(train, """
        {"text": "great movie", "label": "pos"}
        {"text": "awful film", "label": "neg"}
        {"text": "it was fine", "label": "neu"}
        {"text": "loved it", "label": "pos"}

        """)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ url: URL, _ s: String) throws { try s.write(to: url, atomically: true, encoding: .utf8) }

    func file(_ name: String, _ s: String) throws -> URL {
        let u = dir.appendingPathComponent(name)
        try write(u, s)
        return u
    }

    func trainArgs(_ extra: [String] = [], trainFile: URL? = nil) -> [String] {
        ["train", "--model", model.path, "--train-file", (trainFile ?? train).path, "--output-dir", out.path,
         "--batch-size", "2", "--max-steps", "1", "--max-length", "16"] + extra
    }

    /// The contract of every case: exit `status`, the first stderr line mentions every needle, at most 3 lines (an
    /// ArgumentParser usage error adds its usage line and a pointer to --help), no crash trace, nothing written.
    func assertFails(_ args: [String], status: Int32, mentions needles: [String], stdin: String? = nil, ranks: Int? = nil,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(args, ranks: ranks, stdin: stdin)
        XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", file: file, line: line)
        var lines = r.stderr.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        if ranks != nil {
            // mpirun adds its own banner about a non-zero exit; ours is the error line, printed once (rank 0), not per rank.
            lines = lines.filter { $0.hasPrefix("error:") }
            XCTAssertEqual(lines.count, 1, "one error line for the whole job: \(r.stderr)", file: file, line: line)
        }
        let first = lines.first.map(String.init) ?? ""
        for n in needles { XCTAssertTrue(first.contains(n), "first stderr line lacks '\(n)': \(r.stderr)", file: file, line: line) }
        XCTAssertLessThanOrEqual(lines.count, 3, "one clear line expected, got: \(r.stderr)", file: file, line: line)
        for bad in ["Fatal error", "Stack dump", "Current stack trace", "Illegal instruction", "MPI_ABORT"] {
            XCTAssertFalse(r.stderr.contains(bad), "crash trace in: \(r.stderr)", file: file, line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path),
                       "nothing may be written on failure", file: file, line: line)
        XCTAssertTrue(r.stdout.isEmpty, "nothing on stdout on failure: \(r.stdout)", file: file, line: line)
    }

    // MARK: data files

    func testCSVMissingTextColumn() throws {
        let csv = try file("train.csv", "body,label\nhello,pos\nbye,neg\n")
        try assertFails(trainArgs(trainFile: csv), status: 1, mentions: ["train.csv", "text", "--text-column"])
    }

    func testCSVWithOnlyAHeader() throws {
        let csv = try file("train.csv", "text,label\n")
        try assertFails(trainArgs(trainFile: csv), status: 1, mentions: ["train.csv"])
    }

    func testLatin1EncodingNamesTheLine() throws {
        var bytes = Data("{\"text\": \"ok\", \"label\": \"pos\"}\n{\"text\": \"caf".utf8)
        bytes.append(0xE9)  // é in Latin-1, invalid as UTF-8
        bytes.append(contentsOf: Data("\", \"label\": \"neg\"}\n".utf8))
        try bytes.write(to: train)
        try assertFails(trainArgs(), status: 1, mentions: ["train.jsonl:2", "UTF-8", "iconv"])
    }

    func testRaggedCSVNamesTheLine() throws {
        let csv = try file("train.csv", "text,label\nhello,pos\nbye,neg,extra\n")
        try assertFails(trainArgs(trainFile: csv), status: 1, mentions: ["train.csv:3"])
    }

    func testUnknownLabelInEvalCSV() throws {
        let eval = try file("eval.csv", "text,label\nnice,pos\nmeh,bogus\n")
        try assertFails(trainArgs(["--eval-file", eval.path]), status: 1, mentions: ["eval.csv:3", "bogus"])
    }

    func testJSONLRowWithoutLabel() throws {
        try write(train, "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\"}\n")
        try assertFails(trainArgs(), status: 1, mentions: ["train.jsonl:2", "label"])
    }

    func testUnknownDataExtension() throws {
        let txt = try file("train.txt", "hello\n")
        try assertFails(trainArgs(trainFile: txt), status: 1, mentions: ["train.txt", ".jsonl, .csv or .tsv"])
    }

    func testMissingTrainingFile() throws {
        // Exit 2, as for a missing --model (issue 22: one code for a wrong path, whichever flag; docs/run-folders.md).
        try assertFails(trainArgs(trainFile: dir.appendingPathComponent("nope.jsonl")), status: 2, mentions: ["nope.jsonl", "check the path"])
    }

    func testDuplicateNameInLabelsFile() throws {
        let labels = try file("labels.txt", "neg\npos\nneg\n")
        try assertFails(trainArgs(["--labels", labels.path]), status: 1, mentions: ["labels.txt:3", "duplicate"])
    }

    // MARK: --config files

    func testConfigUnknownKeySuggestsTheFlag() throws {
        let cfg = try file("run.yaml", "learning_rat: 1e-4\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "unknown key 'learning_rat'", "'learning-rate'"])
    }

    func testConfigWrongTypeNamesTheKeyAndType() throws {
        let cfg = try file("run.yaml", "batch_size: eight\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "'batch_size'", "an integer", "eight"])
    }

    func testConfigFlagKeyMustBeBoolean() throws {
        let cfg = try file("run.yaml", "no-dropout: sometimes\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "'no-dropout'", "a boolean"])
    }

    func testConfigListWhereANumberIsExpected() throws {
        let cfg = try file("run.yaml", "learning-rate: [1e-4, 2e-4]\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "'learning-rate'", "a number", "not a list"])
    }

    func testConfigTopLevelMustBeAMapping() throws {
        let cfg = try file("run.yaml", "- learning-rate\n- 1e-4\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "mapping"])
    }

    func testConfigInvalidYAML() throws {
        let cfg = try file("run.yaml", "learning-rate: [1e-4\nseed: 3\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "not valid YAML"])
    }

    func testConfigSameFlagTwice() throws {
        let cfg = try file("run.yaml", "learning_rate: 1e-4\nlearning-rate: 2e-4\n")
        try assertFails(trainArgs(["--config", cfg.path]), status: 2, mentions: ["run.yaml", "'learning-rate'", "'learning_rate'", "keep one"])
    }

    func testConfigFileMissing() throws {
        try assertFails(trainArgs(["--config", dir.appendingPathComponent("none.yaml").path]), status: 2, mentions: ["--config", "none.yaml", "check the path"])
    }

    // MARK: flags

    func testGlobalBatchNotAMultipleOfTheMicroBatch() throws {
        try assertFails(trainArgs(["--batch-size", "4", "--micro-batch-size", "3"]), status: 2, mentions: ["--batch-size 4", "--micro-batch-size 3"])
    }

    /// Under mpirun every rank sees the same flags, so the job ends cleanly with exit 2 and rank 0's one line.
    func testGlobalBatchNotDivisibleByTheRankCount() throws {
        try assertFails(trainArgs(["--batch-size", "3"]), status: 2, mentions: ["--batch-size 3", "world size 2", "e.g. 4"], ranks: 2)
    }

    func testUnknownSchedulerListsTheChoices() throws {
        try assertFails(trainArgs(["--lr-scheduler-type", "cosine_restarts"]), status: 2, mentions: ["--lr-scheduler-type", "cosine_restarts", "linear"])
    }

    func testMaxLengthBeyondTheModel() throws {
        // The fixture has max_position_embeddings 40.
        try assertFails(trainArgs(["--max-length", "64"]), status: 2, mentions: ["--max-length 64", "40"])
    }

    func testValidationSplitOutOfRange() throws {
        try assertFails(trainArgs(["--validation-split", "1.5"]), status: 2, mentions: ["--validation-split", "1.5"])
    }

    func testWarmupRatioOutOfRange() throws {
        try assertFails(trainArgs(["--warmup-ratio", "2"]), status: 2, mentions: ["--warmup-ratio"])
    }

    func testNegativeWeightDecay() throws {
        try assertFails(trainArgs(["--weight-decay", "-0.1"]), status: 2, mentions: ["--weight-decay"])
    }

    func testMisspelledFlag() throws {
        try assertFails(trainArgs(["--lerning-rate", "1e-4"]), status: 2, mentions: ["--lerning-rate"])
    }

    func testNonNumericFlagValue() throws {
        try assertFails(trainArgs(["--learning-rate", "fast"]), status: 2, mentions: ["fast", "--learning-rate"])
    }

    // MARK: eval, predict, inspect

    func testEvalMissingModelFolder() throws {
        try assertFails(["eval", "--model", dir.appendingPathComponent("nomodel").path, "--eval-file", train.path],
                        status: 2, mentions: ["nomodel", "does not exist", "--model"])
    }

    func testEvalUnknownLabel() throws {
        let eval = try file("eval.jsonl", "{\"text\": \"x\", \"label\": \"pos\"}\n{\"text\": \"y\", \"label\": \"spam\"}\n")
        try assertFails(["eval", "--model", model.path, "--eval-file", eval.path, "--max-length", "16"],
                        status: 1, mentions: ["eval.jsonl:2", "spam", "neg"])
    }

    func testPredictMaxLengthBeyondTheModel() throws {
        try assertFails(["predict", "--model", model.path, "--input", train.path, "--max-length", "512"],
                        status: 2, mentions: ["--max-length 512", "40"])
    }

    func testPredictMalformedStdinNamesTheLine() throws {
        try assertFails(["predict", "--model", model.path, "--input", "-", "--max-length", "16"], status: 1,
                        mentions: ["<stdin>:2"], stdin: "{\"text\": \"fine\"}\n{\"text\": \n")
    }

    func testPredictUnknownInputFormat() throws {
        try assertFails(["predict", "--model", model.path, "--input", "-", "--input-format", "xml"], status: 2,
                        mentions: ["xml", "--input-format"])
    }

    func testPredictWithAnUntrainedBaseModel() throws {
        let url = model.appendingPathComponent("config.json")
        var c = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        c.removeValue(forKey: "id2label"); c.removeValue(forKey: "label2id")
        try JSONSerialization.data(withJSONObject: c).write(to: url)
        try assertFails(["predict", "--model", model.path, "--input", train.path, "--max-length", "16"], status: 1,
                        mentions: ["config.json", "no id2label", "disttrain train"])
    }

    func testInspectMissingPath() throws {
        try assertFails(["inspect", dir.appendingPathComponent("gone").path], status: 2, mentions: ["gone", "no such folder"])
    }

    func testInspectFolderWithoutConfig() throws {
        try assertFails(["inspect", dir.path], status: 1, mentions: ["config.json", "not found", "model folder or a checkpoint folder"])
    }
}
