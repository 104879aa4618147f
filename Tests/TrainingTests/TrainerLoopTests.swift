// TrainerLoopTests: the whole training loop (`Trainer`) on thread-ranks (InProcessCommunicator), on the tiny BERT
// classifier and the tiny GPT-2 LM fixtures (Tests/ModelTests/Fixtures, made by transformers). What must hold:
//   - 1, 2 and 4 ranks train the same steps: per-step losses and final parameters agree up to float summation order
//     (the loss is normalised by the global count, the data order does not depend on the rank count);
//   - save → resume is bitwise the uninterrupted run (parameters, AdamW moments, losses), here with the loop stopped
//     by one rank's event consumer, which also shows that the ranks agree on a stop;
//   - ZeRO-1 in node-shared memory and the split save give the same bits as the replicated path (MPI messages, AdamW
//     on every rank, rank 0 writing the whole checkpoint).
// Real `mpirun` runs, exit codes and messages stay in CLITests.
import Dist
import Foundation
import Model
import TestSupport
import XCTest
@testable import Training

final class TrainerLoopTests: XCTestCase {
    /// What one rank saw and ended with.
    struct Outcome: Sendable {
        var losses: [Double]
        var params: [Float]
        var result: [String: Double]
    }

    /// Trains `config` on `ranks` thread-ranks; with `stopAt`, rank `stopRank`'s event consumer alone asks to stop once
    /// step `stopAt` is logged.
    func train(_ config: TrainConfig, ranks: Int, stopAt: Int? = nil, stopRank: Int = 0) throws -> [Outcome] {
        try InProcessGroup.run(worldSize: ranks) { comm in
            let trainer = try Trainer(config: config, comm: comm)
            var losses: [Double] = []
            let result = try trainer.run { event in
                guard case .step(let r) = event else { return .continue }
                losses.append(r.loss)
                return comm.rank == stopRank && stopAt.map { r.step >= $0 } == true ? .stop : .continue
            }
            return Outcome(losses: losses, params: Array(trainer.task.store.values), result: result.metrics)
        }
    }

    // MARK: data

    /// Labelled sentences of 2–11 words from a small vocabulary (every word is in the BERT fixture's vocab.txt).
    static func classificationData(in folder: TempFolder, count: Int, seed: UInt64) throws -> URL {
        let words = ["good", "bad", "fine", "movie", "the", "was", "very", "not", "great", "awful", "plot", "acting", "and", "a"]
        let labels = ["neg", "neu", "pos"]
        var rng = TestRNG(seed)
        var lines: [String] = []
        for _ in 0..<count {
            let text = (0..<(2 + rng.below(10))).map { _ in words[rng.below(words.count)] }.joined(separator: " ")
            lines.append("{\"text\": \"\(text)\", \"label\": \"\(labels[rng.below(3)])\"}")
        }
        return try folder.write("cls-\(seed).jsonl", lines.joined(separator: "\n") + "\n")
    }

    static func lmData(in folder: TempFolder) throws -> URL {
        let lines = [
            "Who is there? Nay, answer me. Stand and unfold yourself.",
            "Long live the king! Bernardo? He. You come most carefully upon your hour.",
            "Tis now struck twelve. Get thee to bed, Francisco.",
            "For this relief much thanks. Tis bitter cold, and I am sick at heart.",
            "Have you had quiet guard? Not a mouse stirring.",
            "Well, good night. If you do meet Horatio and Marcellus, the rivals of my watch, bid them make haste.",
            "I think I hear them. Stand, ho! Who is there?",
            "Friends to this ground. And liegemen to the Dane.",
        ]
        return try folder.write("lm.jsonl", lines.map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n") + "\n")
    }

    func classifierConfig(_ folder: TempFolder, _ name: String) throws -> TrainConfig {
        var c = TrainConfig(modelDir: TestPaths.fixture("bert-tiny-cls"),
                            trainFile: try Self.classificationData(in: folder, count: 48, seed: 1),
                            evalFile: try Self.classificationData(in: folder, count: 12, seed: 2),
                            outputDir: folder.url.appendingPathComponent(name))
        c.maxSteps = 6; c.saveSteps = 3; c.batchSize = 8; c.learningRate = 3e-3; c.warmupSteps = 1
        c.maxLength = 16; c.seed = 7; c.threads = 1; c.loggingSteps = 1; c.weightDecay = 0.01
        return c
    }

    func lmConfig(_ folder: TempFolder, _ name: String) throws -> TrainConfig {
        var c = TrainConfig(modelDir: TestPaths.fixture("gpt2-tiny-lm"), trainFile: try Self.lmData(in: folder),
                            evalFile: nil, outputDir: folder.url.appendingPathComponent(name))
        c.maxSteps = 5; c.saveSteps = 2; c.batchSize = 4; c.learningRate = 3e-3
        c.maxLength = 12; c.seed = 3; c.threads = 1; c.loggingSteps = 1
        return c
    }

    // MARK: checks

    /// Every rank of a run ends with the same parameters and losses (bitwise: rank 0's were broadcast at the start and
    /// every rank applies the same update).
    func assertRanksAgree(_ runs: [Outcome], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        for (r, o) in runs.enumerated().dropFirst() {
            XCTAssertEqual(o.params, runs[0].params, "\(what): rank \(r)'s parameters differ from rank 0's", file: file, line: line)
            XCTAssertEqual(o.losses, runs[0].losses, "\(what): rank \(r)'s losses differ from rank 0's", file: file, line: line)
        }
    }

    /// Another rank count sums the same per-sample gradients in another order: float rounding only. The updates are
    /// lr · m/(√v + ε) ≈ lr per element and step, so a lost or doubled rank would show as ~1e-3, far above the bound.
    func assertSameTraining(_ a: Outcome, _ b: Outcome, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.losses.count, b.losses.count, "\(what): steps", file: file, line: line)
        assertClose(a.losses.map(Float.init), b.losses.map(Float.init), atol: 1e-6, rtol: 1e-5, "\(what): per-step losses", file: file, line: line)
        assertClose(a.params, b.params, atol: 2e-5, rtol: 1e-4, "\(what): final parameters", file: file, line: line)
    }

    func bytes(_ url: URL) throws -> Data { try Data(contentsOf: url) }

    /// Trains the config `make(outputName)` gives at 1, 2 and 4 ranks, checks that every run's ranks agree and that the
    /// runs train the same, and returns the 1-rank outcome.
    func trainAtOneTwoAndFourRanks(_ make: (String) throws -> TrainConfig,
                                   file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
        let one = try train(try make("r1"), ranks: 1)[0]
        for n in [2, 4] {
            let runs = try train(try make("r\(n)"), ranks: n)
            assertRanksAgree(runs, "\(n) ranks", file: file, line: line)
            assertSameTraining(one, runs[0], "1 vs \(n) ranks", file: file, line: line)
        }
        return one
    }

    // MARK: tests

    func testClassifierTrainsTheSameAtOneTwoAndFourRanks() throws {
        let folder = try TempFolder()
        let one = try trainAtOneTwoAndFourRanks { try classifierConfig(folder, $0) }
        XCTAssertEqual(one.losses.count, 6)
        XCTAssertGreaterThan(one.losses.first ?? 0, 0.5, "a 3-class head starts near ln 3")
        // The training moved the weights (a test that compares two untouched copies would pass trivially).
        XCTAssertEqual(Checkpoint.list(folder.url.appendingPathComponent("r1")).count, 2, "checkpoint-3 and checkpoint-6")
        let fixture = try SafeTensorsFile(url: TestPaths.fixture("bert-tiny-cls").appendingPathComponent("model.safetensors"))
        let name = "bert.encoder.layer.0.attention.self.query.weight"
        let trained = try SafeTensorsFile(url: folder.url.appendingPathComponent("r1/model.safetensors"))
        XCTAssertNotEqual(try fixture.floats(name), try trained.floats(name), "training changed no weight")
        // metrics.jsonl: one record per step and one evaluation at the end, at every rank count alike.
        for run in ["r1", "r2", "r4"] {
            let records = try MetricsFile.records(folder.url.appendingPathComponent(run))
            XCTAssertEqual(records.filter { $0["loss"] != nil }.count, 6, run)
            XCTAssertEqual(records.filter { $0["eval_accuracy"] != nil }.map { $0["step"] }, [6], run)
        }
    }

    func testClassifierResumeIsBitwiseTheUninterruptedRun() throws {
        let folder = try TempFolder()
        let whole = try train(try classifierConfig(folder, "whole"), ranks: 2)
        // Rank 1's consumer alone stops the loop after step 4: every rank stops there, with a checkpoint.
        let config = try classifierConfig(folder, "parts")
        let first = try train(config, ranks: 2, stopAt: 4, stopRank: 1)
        XCTAssertEqual(first[0].losses.count, 4)
        XCTAssertEqual(first[0].result["global_step"], 4)
        XCTAssertNil(Checkpoint.verify(config.outputDir.appendingPathComponent("checkpoint-4")))
        let second = try train(config, ranks: 2)
        XCTAssertEqual(first[0].losses + second[0].losses, whole[0].losses, "per-step losses")
        XCTAssertEqual(second[0].params, whole[0].params, "final parameters")
        assertRanksAgree(second, "resumed")
        for f in ["model.safetensors", "optimizer.safetensors"] {
            XCTAssertEqual(try bytes(config.outputDir.appendingPathComponent("checkpoint-6/\(f)")),
                           try bytes(folder.url.appendingPathComponent("whole/checkpoint-6/\(f)")), f)
        }
        XCTAssertEqual(second[0].result["train_loss"], whole[0].result["train_loss"])
    }

    func testZeROAndSplitSaveGiveTheReplicatedBits() throws {
        let folder = try TempFolder()
        let zero = try train(try classifierConfig(folder, "zero"), ranks: 2)
        var replicated = try classifierConfig(folder, "replicated")
        replicated.sharedMemoryReduction = false
        let plain = try train(replicated, ranks: 2)
        var unsharded = try classifierConfig(folder, "unsharded")
        unsharded.shardOptimizer = false
        let shm = try train(unsharded, ranks: 2)
        XCTAssertEqual(zero[0].params, plain[0].params, "ZeRO-1 vs replicated AdamW")
        XCTAssertEqual(shm[0].params, plain[0].params, "node-shared gradients vs MPI messages")
        XCTAssertEqual(zero[0].losses, plain[0].losses)
        // checkpoint-3 is a background save by rank 0 (after the ZeRO gather), checkpoint-6 the split foreground save.
        for step in [3, 6] {
            for f in ["model.safetensors", "optimizer.safetensors"] {
                XCTAssertEqual(try bytes(folder.url.appendingPathComponent("zero/checkpoint-\(step)/\(f)")),
                               try bytes(folder.url.appendingPathComponent("replicated/checkpoint-\(step)/\(f)")), "checkpoint-\(step)/\(f)")
            }
            XCTAssertNil(Checkpoint.verify(folder.url.appendingPathComponent("zero/checkpoint-\(step)")))
        }
    }

    func testLanguageModelTrainsTheSameAtOneTwoAndFourRanksAndResumesBitwise() throws {
        let folder = try TempFolder()
        let one = try trainAtOneTwoAndFourRanks { try lmConfig(folder, $0) }
        XCTAssertEqual(one.losses.count, 5)
        XCTAssertGreaterThan(one.losses.first ?? 0, 5, "an untrained 50257-token LM starts near ln 50257 ≈ 10.8")
        let config = try lmConfig(folder, "parts")
        _ = try train(config, ranks: 1, stopAt: 3)
        let resumed = try train(config, ranks: 1)
        XCTAssertEqual(resumed[0].params, one.params, "resumed at step 3: final parameters")
        XCTAssertEqual(try bytes(config.outputDir.appendingPathComponent("checkpoint-5/optimizer.safetensors")),
                       try bytes(folder.url.appendingPathComponent("r1/checkpoint-5/optimizer.safetensors")))
    }
}

enum MetricsFile {
    /// metrics.jsonl of an output folder, one dictionary per line.
    static func records(_ dir: URL) throws -> [[String: Double]] {
        try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:]).compactMapValues { ($0 as? NSNumber)?.doubleValue }
        }
    }
}
