// Helpers for end-to-end tests: locate the built `disttrain` binary, run it (optionally under real mpirun),
// and read what it wrote. Tests here read nothing outside this repository: fixtures live in it. The repository
// root, the binary locator and temp folders come from the TestSupport target.
import Foundation
@_exported import TestSupport
import XCTest

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
    /// Ended by a signal (a crash, or killed) rather than by exit().
    var signaled = false
}

enum CLI {
    static var repoRoot: URL { TestPaths.repoRoot }

    static func binary() throws -> URL { try TestPaths.binary("disttrain") }

    static func tempDir(_ tag: String) throws -> URL { try TestPaths.tempDir(tag) }

    /// Runs `disttrain args` directly, or under `mpirun -n ranks` when ranks is given. Times out after `timeout` s.
    static func run(_ args: [String], ranks: Int? = nil, stdin: String? = nil, timeout: TimeInterval = 120,
                    in directory: URL? = nil, environment extra: [String: String] = [:],
                    onStart: (Int32) -> Void = { _ in }) throws -> RunResult {
        let bin = try binary()
        var env = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                   "OMPI_MCA_rmaps_base_oversubscribe": "1",
                   // Keep OpenMPI quiet about missing high-speed transports on a laptop or CI box.
                   "OMPI_MCA_btl": "self,vader,tcp"]
        env.merge(extra) { _, new in new }
        if let ranks {
            return try runProgram(URL(fileURLWithPath: "/usr/bin/env"),
                                  ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", String(ranks), bin.path] + args,
                                  stdin: stdin, timeout: timeout, in: directory, environment: env, onStart: onStart)
        }
        return try runProgram(bin, args, stdin: stdin, timeout: timeout, in: directory, environment: env, onStart: onStart)
    }

    /// Runs any program (a script, mpirun, the binary) with this process's environment plus `extra`, draining its
    /// output; after `timeout` s it gets SIGTERM, `grace` s later SIGKILL (a script's trap may need the time to tear
    /// down what it started), and the test fails.
    static func runProgram(_ executable: URL, _ args: [String], stdin: String? = nil, timeout: TimeInterval = 120,
                           grace: TimeInterval = 0.5, in directory: URL? = nil, environment extra: [String: String] = [:],
                           onStart: (Int32) -> Void = { _ in }) throws -> RunResult {
        let p = Process()
        if let directory { p.currentDirectoryURL = directory }
        p.environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        p.executableURL = executable
        p.arguments = args
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        onStart(p.processIdentifier)
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? inp.fileHandleForWriting.close()
        // Drain the pipes on background threads so a chatty process cannot block on a full pipe.
        let outBox = DataBox(), errBox = DataBox()
        let group = DispatchGroup()
        group.enter(); DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter(); DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            let killAt = Date().addingTimeInterval(grace)
            while p.isRunning && Date() < killAt { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            XCTFail("\(executable.lastPathComponent) \(args.joined(separator: " ")) did not finish within \(timeout) s")
        }
        p.waitUntilExit()
        group.wait()
        return RunResult(status: p.terminationStatus,
                         stdout: String(decoding: outBox.data, as: UTF8.self),
                         stderr: String(decoding: errBox.data, as: UTF8.self),
                         signaled: p.terminationReason == .uncaughtSignal)
    }

    /// Starts `disttrain args` under mpirun, SIGKILLs one rank (chosen by `pickRank` among mpirun's children)
    /// after `killAfter` seconds, and waits for the job to end.
    /// `ready` is polled every 20 ms; the clock starts once it returns true (e.g. "a new checkpoint exists").
    static func runAndKill(_ args: [String], ranks: Int, killAfter: TimeInterval, pickRank: Int,
                           ready: @escaping @Sendable () -> Bool = { true }) throws -> RunResult {
        try runWithAction(args, ranks: ranks, after: killAfter, ready: ready) { mpirunPid in
            let kids = childPids(of: mpirunPid)
            guard !kids.isEmpty else { return }
            kill(kids[pickRank % kids.count], SIGKILL)
        }
    }

    /// Starts `disttrain args` under mpirun and sends `signal` to mpirun (which forwards USR1/USR2 to every rank).
    static func runAndSignal(_ args: [String], ranks: Int, signalAfter: TimeInterval, signal: Int32,
                             ready: @escaping @Sendable () -> Bool = { true }) throws -> RunResult {
        try runWithAction(args, ranks: ranks, after: signalAfter, ready: ready) { kill($0, signal) }
    }

    static func childPids(of pid: Int32) -> [Int32] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0) }.sorted()
    }

    static func runWithAction(_ args: [String], ranks: Int, after: TimeInterval, timeout: TimeInterval = 120,
                              ready: @escaping @Sendable () -> Bool = { true },
                              action: @escaping @Sendable (Int32) -> Void) throws -> RunResult {
        try withAction(after: after, ready: ready, action: action) { try run(args, ranks: ranks, timeout: timeout, onStart: $0) }
    }

    /// Runs `launch` (which must pass its process id to the closure it gets) and, once `ready` returns true and
    /// `after` more seconds have passed, calls `action` with that process id, unless the process has ended.
    static func withAction(after: TimeInterval, ready: @escaping @Sendable () -> Bool = { true },
                           action: @escaping @Sendable (Int32) -> Void,
                           _ launch: (_ onStart: (Int32) -> Void) throws -> RunResult) throws -> RunResult {
        let pidBox = PidBox()
        let done = DataBox()
        DispatchQueue.global().async {
            while !ready() && done.data.isEmpty { usleep(20_000) }
            usleep(UInt32(after * 1_000_000))
            if let pid = pidBox.pid, done.data.isEmpty { action(pid) }
        }
        let r = try launch { pidBox.pid = $0 }
        done.data = Data([1])
        return r
    }

    /// Writes `rows` JSONL training rows to `url`, spam and ham alternating ("free prize number i call now" /
    /// "see you at lunch on day i"): a tiny separable set for the tests that train the tiny BERT fixture.
    static func writeSpamHamRows(_ rows: Int, to url: URL) throws {
        let lines = (0..<rows).map { i in
            i % 2 == 0 ? "{\"text\": \"free prize number \(i) call now\", \"label\": \"spam\"}"
                       : "{\"text\": \"see you at lunch on day \(i)\", \"label\": \"ham\"}"
        }
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
    }

    /// Overwrites element `index` of tensor `name` in a safetensors file with a quiet NaN (header parsed here).
    static func poison(_ file: URL, tensor name: String, index: Int) throws {
        var bytes = try Data(contentsOf: file)
        let n = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as! [String: Any]
        let offsets = ((header[name] as! [String: Any])["data_offsets"] as! [NSNumber]).map(\.intValue)
        let at = 8 + n + offsets[0] + 4 * index
        XCTAssertLessThan(at + 4, 8 + n + offsets[1])
        bytes.replaceSubrange(at..<(at + 4), with: [0x00, 0x00, 0xC0, 0x7F])  // 0x7FC00000 little-endian
        try bytes.write(to: file)
    }

    static func jsonLines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    /// Reads every F32 tensor of a safetensors file (small files only) by parsing the header directly, so that
    /// this test target depends on nothing but the binary's output.
    static func tensors(_ url: URL) throws -> [String: [Float]] {
        let d = try Data(contentsOf: url)
        let n = Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: d[8..<(8 + n)]) as! [String: Any]
        var out: [String: [Float]] = [:]
        for (k, v) in header where k != "__metadata__" {
            let t = v as! [String: Any]
            let offs = t["data_offsets"] as! [Int]
            let bytes = d[(8 + n + offs[0])..<(8 + n + offs[1])]
            out[k] = bytes.withUnsafeBytes { raw in (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        }
        return out
    }
}

final class DataBox: @unchecked Sendable { var data = Data() }
final class PidBox: @unchecked Sendable { var pid: Int32? }

/// The rank-count tests' workspace (single node and emulated multi-node alike): a copy of the tiny BERT fixture with
/// dropout switched on (masks are keyed by sample, never by rank), 44 training rows and 13 eval rows of the bundled
/// SMS-spam data.
enum DropoutWorkspace {
    /// A copy of the tiny BERT fixture with dropout switched on, plus small train/eval sets from the bundled data.
    static func make(tag: String) throws -> (model: URL, train: URL, eval: URL, dir: URL) {
        let dir = try CLI.tempDir(tag)
        let fixture = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls")
        let model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(f), to: model.appendingPathComponent(f))
        }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture.appendingPathComponent("config.json"))) as! [String: Any]
        config["hidden_dropout_prob"] = 0.1
        config["attention_probs_dropout_prob"] = 0.1
        try JSONSerialization.data(withJSONObject: config).write(to: model.appendingPathComponent("config.json"))
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/train.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let train = dir.appendingPathComponent("train.jsonl"), eval = dir.appendingPathComponent("eval.jsonl")
        try (lines[0..<44].joined(separator: "\n") + "\n").write(to: train, atomically: true, encoding: .utf8)
        // 13 eval rows: not a multiple of 2, 4 or 8, so shards are uneven.
        try (lines[100..<113].joined(separator: "\n") + "\n").write(to: eval, atomically: true, encoding: .utf8)
        return (model, train, eval, dir)
    }

    /// Global batch 8 (2 per rank at 4 ranks), 20 steps, a learning rate that moves the tiny model.
    static func trainArgs(_ w: (model: URL, train: URL, eval: URL, dir: URL), out: String) -> [String] {
        ["train", "--model", w.model.path, "--train-file", w.train.path, "--eval-file", w.eval.path,
         "--output-dir", w.dir.appendingPathComponent(out).path, "--batch-size", "8", "--max-steps", "20",
         "--logging-steps", "1", "--learning-rate", "1e-3", "--weight-decay", "0.01", "--warmup-steps", "2",
         "--max-length", "24", "--seed", "5", "--threads", "1"]
    }
}
