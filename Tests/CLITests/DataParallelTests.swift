// Data parallelism end to end with real mpirun: the same command at 1, 2, 4 and 8 ranks (and without mpirun)
// must give the same per-step losses, the same final parameters and the same eval metrics, with dropout ON
// (masks are keyed by seed, step and global sample index, never by rank).
import Foundation
import XCTest

final class DataParallelTests: XCTestCase {
    func makeWorkspace() throws -> (model: URL, train: URL, eval: URL, dir: URL) { try DropoutWorkspace.make(tag: "dp") }
    func trainArgs(_ w: (model: URL, train: URL, eval: URL, dir: URL), out: String) -> [String] { DropoutWorkspace.trainArgs(w, out: out) }

    func testSameModelAtAnyRankCount() throws {
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        var runs: [(String, [Double], [String: [Float]], [String: Any])] = []
        // Single-node jobs reduce in node-shared memory with AdamW sharded (ZeRO-1) by default; "mpi4-messages" takes
        // MPI's message path, "mpi2-replicated" the in-place reduction with the whole AdamW on every rank.
        let variants: [(Int?, [String])] = [(nil, []), (1, []), (2, []), (4, []), (8, []), (4, ["--no-shared-memory"]),
                                            (2, ["--no-shard-optimizer"])]
        for (ranks, extra) in variants {
            let name = (ranks.map { "mpi\($0)" } ?? "single")
                + (extra == ["--no-shared-memory"] ? "-messages" : extra.isEmpty ? "" : "-replicated")
            let r = try CLI.run(trainArgs(w, out: name) + extra, ranks: ranks, timeout: 240)
            XCTAssertEqual(r.status, 0, "\(name) failed: \(r.stderr)")
            guard r.status == 0 else { return }
            let log = r.stdout + r.stderr
            XCTAssertEqual(log.contains("in place in node-shared memory"), (ranks ?? 1) > 1 && extra != ["--no-shared-memory"],
                           "\(name): which all-reduce path ran")
            XCTAssertEqual(log.contains("ZeRO-1"), (ranks ?? 1) > 1 && extra.isEmpty, "\(name): whether AdamW was sharded")
            let out = w.dir.appendingPathComponent(name)
            let logs = try CLI.jsonLines(out.appendingPathComponent("metrics.jsonl")).filter { $0["loss"] != nil }
            let losses = logs.map { ($0["loss"] as! NSNumber).doubleValue }
            XCTAssertEqual(losses.count, 20, "\(name): one loss per step")
            let params = try CLI.tensors(out.appendingPathComponent("model.safetensors"))
            let result = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("eval_results.json"))) as! [String: Any]
            runs.append((name, losses, params, result))
        }
        let (refName, refLoss, refParams, refResult) = runs[0]
        // The loss must actually move, or equality across runs would prove nothing.
        XCTAssertGreaterThan(abs(refLoss.first! - refLoss.last!), 1e-3, "training did not change the loss")
        for (name, losses, params, result) in runs.dropFirst() {
            for (k, (a, b)) in zip(refLoss, losses).enumerated() {
                XCTAssertEqual(a, b, accuracy: 1e-5 * abs(a), "\(name) step \(k + 1) loss vs \(refName)")
            }
            var worst = 0.0, worstName = ""
            for (key, ref) in refParams {
                guard let got = params[key], got.count == ref.count else { XCTFail("\(name): tensor \(key) missing"); continue }
                for i in 0..<ref.count where Double(abs(ref[i] - got[i])) > worst { worst = Double(abs(ref[i] - got[i])); worstName = key }
            }
            XCTAssertLessThan(worst, 1e-5, "\(name): final parameters differ by \(worst) in \(worstName)")
            XCTAssertEqual(result["eval_samples"] as? Int, 13, "\(name): every eval sample counted once")
            XCTAssertEqual((result["eval_accuracy"] as! NSNumber).doubleValue, (refResult["eval_accuracy"] as! NSNumber).doubleValue,
                           "\(name): eval accuracy")
            XCTAssertEqual((result["eval_loss"] as! NSNumber).doubleValue, (refResult["eval_loss"] as! NSNumber).doubleValue,
                           accuracy: 1e-5, "\(name): eval loss")
        }
    }

    func testDebugNamesTheFirstLayerAndStepWhereANaNAppears() throws {
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        // One NaN weight in layer 1's FFN output: layer 0 and the embeddings stay finite, layer 1's output is not.
        try CLI.poison(w.model.appendingPathComponent("model.safetensors"), tensor: "bert.encoder.layer.1.output.dense.weight", index: 5)
        let plain = try CLI.run(trainArgs(w, out: "plain"), timeout: 120)
        XCTAssertNotEqual(plain.status, 0)
        XCTAssertTrue(plain.stderr.contains("the loss became nan at step 1"), plain.stderr)
        XCTAssertFalse(plain.stderr.contains("layer.1"), "without --debug only the loss is checked: \(plain.stderr)")
        for ranks in [nil, 2] as [Int?] {
            let r = try CLI.run(trainArgs(w, out: "debug\(ranks ?? 0)") + ["--debug"], ranks: ranks, timeout: 120)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("--debug: first non-finite value at step 1, micro-batch 1, rank "), r.stderr)
            // the last layer of a sequence classifier runs on each row's first token only, and says so
            XCTAssertTrue(r.stderr.contains("nan in the output of bert.encoder.layer.1 (first token of each row), element"), r.stderr)
            XCTAssertFalse(r.stderr.contains("Fatal error"), "no crash trace: \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: w.dir.appendingPathComponent("debug\(ranks ?? 0)/model.safetensors").path))
        }
    }

    func testRankStartedWithAnotherTrainFileOrSeedIsRefusedAtStartUp() throws {
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        // Same line count, one text changed: only the content fingerprint can tell the files apart.
        var lines = try String(contentsOf: w.train, encoding: .utf8).split(separator: "\n").map(String.init)
        lines[3] = #"{"text": "a different message", "label": "ham"}"#
        let other = w.dir.appendingPathComponent("other.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: other, atomically: true, encoding: .utf8)
        let bin = try CLI.binary().path
        func mpmd(_ second: [String]) -> [String] { trainArgs(w, out: "mpmd") + [":", "-n", "1", bin] + second }
        var alt = trainArgs(w, out: "mpmd")
        alt[alt.firstIndex(of: "--train-file")! + 1] = other.path
        let data = try CLI.run(mpmd(alt), ranks: 1, timeout: 120)
        XCTAssertNotEqual(data.status, 0)
        XCTAssertTrue(data.stderr.contains("rank(s) 1 were started with a different configuration"), data.stderr)
        XCTAssertTrue(data.stderr.contains("differing: train_data"), data.stderr)
        var seed = trainArgs(w, out: "mpmd")
        seed[seed.firstIndex(of: "--seed")! + 1] = "6"
        let r = try CLI.run(mpmd(seed), ranks: 1, timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rank(s) 1 were started with a different configuration"), r.stderr)
        XCTAssertTrue(r.stderr.contains("seed"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.dir.appendingPathComponent("mpmd/model.safetensors").path))
    }

    func testKillingOneRankMidRunEndsTheJobNonZeroWithinAMinuteNamingIt() throws {
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        var args = trainArgs(w, out: "killed")
        args[args.firstIndex(of: "--max-steps")! + 1] = "2000"
        let log = w.dir.appendingPathComponent("killed/metrics.jsonl")
        let t0 = Date()
        // Kill rank 1 (mpirun's second child) once training is under way: the first log line exists.
        let r = try CLI.runAndKill(args + ["--step-delay-ms", "20", "--save-steps", "5"], ranks: 2, killAfter: 0.5, pickRank: 1,
                                   ready: { FileManager.default.fileExists(atPath: log.path) })
        let seconds = Date().timeIntervalSince(t0)
        XCTAssertNotEqual(r.status, 0, "the job must fail when a rank dies")
        XCTAssertLessThan(seconds, 60)
        XCTAssertTrue(r.stderr.contains("rank 1"), "mpirun names the dead rank: \(r.stderr)")
    }

    /// A bad data file under mpirun is reported once, not once per rank, and the job ends with the data error's code
    /// without an MPI abort: when every rank reads it, the message is the plain one-process message; when only one
    /// rank got it (MPMD), the message names that rank.
    func testBadDataFileUnderMpirunIsReportedOnceWithItsExitCode() throws {
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        var lines = try String(contentsOf: w.train, encoding: .utf8).split(separator: "\n").map(String.init)
        lines[6] = #"{"text": "unterminated"#
        let bad = w.dir.appendingPathComponent("bad.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: bad, atomically: true, encoding: .utf8)
        var args = trainArgs(w, out: "baddata")
        args[args.firstIndex(of: "--train-file")! + 1] = bad.path
        let one = try CLI.run(args)
        XCTAssertNotEqual(one.status, 0)
        let errorLine = one.stderr.split(separator: "\n").first { $0.hasPrefix("error:") }.map(String.init)
        XCTAssertNotNil(errorLine, one.stderr)
        XCTAssertTrue(errorLine?.contains("bad.jsonl:7") ?? false, one.stderr)
        func errorLines(_ s: String) -> [Substring] { s.split(separator: "\n").filter { $0.contains("error:") } }
        let all = try CLI.run(args, ranks: 2, timeout: 120)
        XCTAssertEqual(all.status, one.status, "the same exit code as one process: \(all.stderr)")
        XCTAssertEqual(errorLines(all.stderr).map(String.init), [errorLine!], "one message, no rank prefix: \(all.stderr)")
        XCTAssertFalse(all.stderr.contains("MPI_ABORT"), all.stderr)
        let bin = try CLI.binary().path
        let mpmd = try CLI.run(trainArgs(w, out: "baddata") + [":", "-n", "1", bin] + args, ranks: 1, timeout: 120)
        XCTAssertEqual(mpmd.status, one.status, mpmd.stderr)
        XCTAssertEqual(errorLines(mpmd.stderr).count, 1, mpmd.stderr)
        XCTAssertTrue(errorLines(mpmd.stderr).first?.contains("error: [rank 1] ") ?? false, mpmd.stderr)
        XCTAssertFalse(mpmd.stderr.contains("MPI_ABORT"), mpmd.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.dir.appendingPathComponent("baddata/model.safetensors").path))
    }

    func testGlobalBatchThatDoesNotDivideIsAUsageError() throws {
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let r = try CLI.run(trainArgs(w, out: "bad"), ranks: 3)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--batch-size 8 (the global batch) must be a multiple of world size 3"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Fatal error"), "no crash trace: \(r.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.dir.appendingPathComponent("bad/model.safetensors").path))
    }
}
