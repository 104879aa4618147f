// Multi-node training on an emulated cluster: real mpirun through cluster/emulate/run.sh, which gives each emulated
// node a network namespace and hostname of its own, so MPI sees 2 nodes (TCP between them, shared memory within).
// Needs root (network namespaces), iproute2 and util-linux; skipped without root. When the emulated cluster cannot
// be set up the tests are skipped too, unless DISTTRAIN_REQUIRE_EMULATION=1 (set by .ci/run), which makes that a
// failure.
// What is checked: 2 nodes × 2 ranks train the same model as 1 process (per-step losses and final weights within
// 1e-5) on the hierarchical path with ZeRO-1 across the nodes (the default), with AdamW on every rank
// (--no-shard-optimizer) and on the message path, two runs of the same topology end bit for bit identical, the
// start-up line names the topology and the reduction path; --grad-comm-dtype bf16 stays close to float32 and repeats
// bit for bit; and
// nothing of the emulated cluster is left behind; killing every rank of one node ends the job
// naming that node, and the same command on 1 node resumes from the last checkpoint and ends with the same weights.
import Foundation
import XCTest

final class MultiNodeTests: XCTestCase {
    static let runScript = CLI.repoRoot.appendingPathComponent("cluster/emulate/run.sh")

    /// Runs `disttrain args` on `nodes` emulated nodes × `ranksPerNode` ranks ("2", or one count per node: "2,1");
    /// `whileRunning` is called on a background thread once the job started, with a flag that turns true when it ended.
    func runEmulated(_ args: [String], nodes: Int, ranksPerNode: String, timeout: TimeInterval = 120,
                     whileRunning: (@Sendable (DataBox) -> Void)? = nil) throws -> RunResult {
        let bin = try CLI.binary()
        let p = Process()
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        p.executableURL = Self.runScript
        p.arguments = ["--nodes", String(nodes), "--ranks-per-node", ranksPerNode, "--", bin.path] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let outBox = DataBox(), errBox = DataBox(), ended = DataBox()
        let group = DispatchGroup()
        group.enter(); DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter(); DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        if let whileRunning { group.enter(); DispatchQueue.global().async { whileRunning(ended); group.leave() } }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()   // run.sh forwards TERM to mpirun and tears the emulated cluster down
            let grace = Date().addingTimeInterval(15)
            while p.isRunning && Date() < grace { usleep(20_000) }
            XCTFail("run.sh \(p.arguments!.joined(separator: " ")) did not finish within \(timeout) s")
        }
        p.waitUntilExit()
        ended.data = Data([1])
        group.wait()
        let r = RunResult(status: p.terminationStatus, stdout: String(decoding: outBox.data, as: UTF8.self),
                          stderr: String(decoding: errBox.data, as: UTF8.self))
        assertTornDown(r)
        return r
    }

    /// The invocation's namespaces are gone once run.sh has returned (other invocations may be running).
    func assertTornDown(_ r: RunResult, file: StaticString = #filePath, line: UInt = #line) {
        guard let m = Self.matches(r.stderr, #"invocation ([0-9a-f]+):"#) else { return }
        let id = r.stderr[m].dropFirst("invocation ".count).dropLast()
        let list = Self.shell("ip netns list")
        XCTAssertFalse(list.contains("dtemu-\(id)-"), "namespaces of invocation \(id) left behind: \(list)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/disttrain-emulate/\(id)"), "state of invocation \(id) left behind",
                       file: file, line: line)
    }

    static func shell(_ command: String) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        guard (try? p.run()) != nil else { return "" }
        let d = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: d, as: UTF8.self)
    }

    /// Skips (or, under DISTTRAIN_REQUIRE_EMULATION=1, fails) when this machine cannot emulate nodes.
    func requireEmulation() throws {
        let required = ProcessInfo.processInfo.environment["DISTTRAIN_REQUIRE_EMULATION"] == "1"
        func unavailable(_ why: String) throws {
            if required { XCTFail("emulated cluster required (DISTTRAIN_REQUIRE_EMULATION=1) but \(why)") }
            throw XCTSkip("emulated cluster unavailable: \(why)")
        }
        if getuid() != 0 { try unavailable("not root (network namespaces need root)") }
        let probe = Self.shell("'\(Self.runScript.path)' --nodes 2 --ranks-per-node 1 -- true 2>&1; echo \"rc=$?\"")
        if !probe.hasSuffix("rc=0\n") { try unavailable("cluster/emulate/run.sh could not run a trivial job: \(probe)") }
    }

    func makeWorkspace() throws -> (model: URL, train: URL, eval: URL, dir: URL) { try DropoutWorkspace.make(tag: "multinode") }
    func trainArgs(_ w: (model: URL, train: URL, eval: URL, dir: URL), out: String) -> [String] { DropoutWorkspace.trainArgs(w, out: out) }

    static func matches(_ text: String, _ pattern: String) -> Range<String.Index>? {
        text.range(of: pattern, options: String.CompareOptions.regularExpression)
    }

    static func losses(_ dir: URL) throws -> [Double] {
        try CLI.jsonLines(dir.appendingPathComponent("metrics.jsonl")).filter { $0["loss"] != nil }
            .map { ($0["loss"] as! NSNumber).doubleValue }
    }

    /// The largest absolute difference over every tensor (and the tensor where it is), failing on a missing one.
    static func maxDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> (Double, String) {
        var worst = 0.0, name = ""
        for (key, x) in a {
            guard let y = b[key], y.count == x.count else { return (.infinity, "\(key) missing or resized") }
            for i in 0..<x.count where Double(abs(x[i] - y[i])) > worst || x[i].isNaN != y[i].isNaN {
                worst = x[i].isNaN != y[i].isNaN ? .infinity : Double(abs(x[i] - y[i])); name = key
            }
        }
        return (worst, name)
    }

    func testTwoNodesTrainTheSameModelAsOneProcessAndRepeatBitForBit() throws {
        try requireEmulation()
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let single = try CLI.run(trainArgs(w, out: "single"), timeout: 120)
        XCTAssertEqual(single.status, 0, single.stderr)
        var runs: [URL] = []
        // Two runs of the default (hierarchical, ZeRO-1 across nodes) path, one with AdamW on every rank, one of the
        // plain message path (--no-shared-memory).
        let zero = "gradients reduced hierarchically: in place in node-shared memory within each node, each rank's "
            + "share reduce-scattered with MPI messages across the 2 nodes; AdamW sharded over all 4 ranks (ZeRO-1 across 2 nodes), "
            + "updated parameters all-gathered across the nodes (2 nodes × 2 ranks per node;"
        let replicated = "gradients reduced hierarchically: in place in node-shared memory within each node, each rank's "
            + "share all-reduced with MPI messages across the 2 nodes; AdamW on every rank (2 nodes × 2 ranks per node;"
        let messages = "gradients all-reduced with MPI messages, AdamW on every rank (2 nodes × 2 ranks per node)"
        let expected = ["nodes2-a": zero, "nodes2-b": zero, "nodes2-replicated": replicated, "nodes2-messages": messages]
        for (name, extra) in [("nodes2-a", []), ("nodes2-b", []), ("nodes2-replicated", ["--no-shard-optimizer"]), ("nodes2-messages", ["--no-shared-memory"])] {
            let r = try runEmulated(trainArgs(w, out: name) + extra, nodes: 2, ranksPerNode: "2")
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            guard r.status == 0 else { return }
            let log = r.stdout + r.stderr
            XCTAssertTrue(log.contains("2 node(s) × 2 rank(s) per node"), "\(name): run.sh names the topology: \(log)")
            XCTAssertTrue(log.contains("world size 4,"), "\(name): \(log)")
            // MPI itself must see 2 nodes: the trainer's start-up line says so and names the path it took.
            XCTAssertTrue(log.contains(expected[name]!), "\(name): start-up line with topology and reduction path: \(log)")
            XCTAssertFalse(log.contains("all 4 ranks on one node"), "\(name): the single-node path must not run across nodes")
            runs.append(w.dir.appendingPathComponent(name))
        }
        let ref = w.dir.appendingPathComponent("single")
        let refLoss = try Self.losses(ref)
        XCTAssertEqual(refLoss.count, 20)
        // The loss must move, or agreement would prove nothing.
        XCTAssertGreaterThan(abs(refLoss.first! - refLoss.last!), 1e-3, "training did not change the loss")
        let refParams = try CLI.tensors(ref.appendingPathComponent("model.safetensors"))
        for run in runs {
            let losses = try Self.losses(run)
            XCTAssertEqual(losses.count, refLoss.count, "\(run.lastPathComponent): one loss per step")
            for (k, (a, b)) in zip(refLoss, losses).enumerated() {
                XCTAssertEqual(a, b, accuracy: 1e-5 * abs(a), "\(run.lastPathComponent) step \(k + 1) loss vs 1 process")
            }
            let (worst, at) = Self.maxDifference(refParams, try CLI.tensors(run.appendingPathComponent("model.safetensors")))
            XCTAssertLessThan(worst, 1e-5, "\(run.lastPathComponent): final weights differ from 1 process by \(worst) in \(at)")
        }
        // ZeRO-1 across nodes saved the complete optimizer state (every owner's moments gathered before the split
        // save): the same moments as AdamW on every rank, the 4 MB of both compared element by element.
        let zeroState = try CLI.tensors(runs[0].appendingPathComponent("checkpoint-20/optimizer.safetensors"))
        let replicatedState = try CLI.tensors(runs[2].appendingPathComponent("checkpoint-20/optimizer.safetensors"))
        XCTAssertFalse(zeroState.isEmpty)
        let (worstState, atState) = Self.maxDifference(replicatedState, zeroState)
        XCTAssertLessThan(worstState, 1e-5, "ZeRO-1 across nodes: saved moments differ from the replicated AdamW's by \(worstState) in \(atState)")
        // Same topology twice: the same bits (the reduction order is fixed by the topology, not by timing).
        let a = try CLI.tensors(runs[0].appendingPathComponent("model.safetensors"))
        let b = try CLI.tensors(runs[1].appendingPathComponent("model.safetensors"))
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
        for (key, x) in a {
            XCTAssertEqual(x.map(\.bitPattern), b[key]?.map(\.bitPattern), "two 2×2 runs differ in \(key)")
        }
    }

    /// --grad-comm-dtype bf16 across 2 nodes × 2 ranks (ZeRO-1 and AdamW on every rank): the per-step losses and
    /// final weights stay close to float32's (bf16 rounds each node's gradient sum to 8 bits of mantissa), the
    /// start-up line says so, and two runs give the same bits. A single-node job ignores it (nothing crosses nodes).
    func testBF16GradientTrafficIsCloseToFloat32AndRepeatsBitForBit() throws {
        try requireEmulation()
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        var dirs: [String: URL] = [:]
        for (name, extra) in [("fp32", []), ("bf16-a", ["--grad-comm-dtype", "bf16"]), ("bf16-b", ["--grad-comm-dtype", "bf16"]),
                              ("bf16-replicated", ["--grad-comm-dtype", "bf16", "--no-shard-optimizer"])] {
            let r = try runEmulated(trainArgs(w, out: name) + extra, nodes: 2, ranksPerNode: "2")
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            guard r.status == 0 else { return }
            let log = r.stdout + r.stderr
            XCTAssertEqual(log.contains("cross-node gradients in bfloat16, summed in float32"), name != "fp32", "\(name): \(log)")
            dirs[name] = w.dir.appendingPathComponent(name)
        }
        let ref = try CLI.tensors(dirs["fp32"]!.appendingPathComponent("model.safetensors"))
        let refLoss = try Self.losses(dirs["fp32"]!)
        for name in ["bf16-a", "bf16-replicated"] {
            let (worst, at) = Self.maxDifference(ref, try CLI.tensors(dirs[name]!.appendingPathComponent("model.safetensors")))
            // Close, but not equal (the rounding must show, or the flag did nothing).
            XCTAssertLessThan(worst, 2e-3, "\(name): final weights vs fp32 traffic differ by \(worst) in \(at)")
            XCTAssertGreaterThan(worst, 0, "\(name): bf16 traffic changed nothing")
            for (k, (a, b)) in zip(refLoss, try Self.losses(dirs[name]!)).enumerated() {
                XCTAssertEqual(a, b, accuracy: 1e-2 * abs(a), "\(name) step \(k + 1) loss vs fp32 traffic")
            }
        }
        let a = try CLI.tensors(dirs["bf16-a"]!.appendingPathComponent("model.safetensors"))
        let b = try CLI.tensors(dirs["bf16-b"]!.appendingPathComponent("model.safetensors"))
        for (key, x) in a { XCTAssertEqual(x.map(\.bitPattern), b[key]?.map(\.bitPattern), "two bf16 runs differ in \(key)") }
        // Invalid value: a usage error naming the flag.
        let bad = try CLI.run(trainArgs(w, out: "bad") + ["--grad-comm-dtype", "fp16"], timeout: 60)
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--grad-comm-dtype 'fp16' is unknown; use fp32 or bf16"), bad.stderr)
    }

    /// A 1-process run stopped after checkpoint-10 resumes on 2 nodes × 2 ranks (ZeRO-1 across nodes: every rank's
    /// moments come from the complete checkpoint, and each keeps updating its 1/4) and ends with the weights of the
    /// uninterrupted 1-process run.
    func testOneProcessCheckpointResumesOnTwoNodes() throws {
        try requireEmulation()
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let ref = try CLI.run(trainArgs(w, out: "reference"), timeout: 120)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let args = trainArgs(w, out: "moved") + ["--save-steps", "5"]
        let stopped = try CLI.run(args + ["--fault-inject", "before-latest:15"], timeout: 120)
        XCTAssertNotEqual(stopped.status, 0, "the fault must stop the run: \(stopped.stderr)")
        let moved = w.dir.appendingPathComponent("moved")
        XCTAssertFalse(FileManager.default.fileExists(atPath: moved.appendingPathComponent("model.safetensors").path))
        let r = try runEmulated(args, nodes: 2, ranksPerNode: "2")
        XCTAssertEqual(r.status, 0, r.stderr)
        let log = r.stdout + r.stderr
        XCTAssertNotNil(Self.matches(log, #"resuming from checkpoint-1[05] \(step 1[05], saved with 1 rank\(s\), now 4\)"#), log)
        XCTAssertTrue(log.contains("ZeRO-1 across 2 nodes"), log)
        let (worst, at) = Self.maxDifference(try CLI.tensors(w.dir.appendingPathComponent("reference/model.safetensors")),
                                             try CLI.tensors(moved.appendingPathComponent("model.safetensors")))
        XCTAssertLessThan(worst, 1e-5, "resumed on 2 nodes: final weights differ from 1 process by \(worst) in \(at)")
    }

    /// 2 ranks on node0 and 1 on node1: no hierarchical reduction (its shares need equal nodes); the message path
    /// runs, the start-up line says why, and the model is still that of 1 process.
    func testUnevenNodesTakeTheMessagePathAndSaySo() throws {
        try requireEmulation()
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        func args(_ out: String) -> [String] {
            var a = trainArgs(w, out: out)
            a[a.firstIndex(of: "--batch-size")! + 1] = "12"   // 4 per rank at 3 ranks
            a[a.firstIndex(of: "--max-steps")! + 1] = "8"
            return a
        }
        let single = try CLI.run(args("single"), timeout: 120)
        XCTAssertEqual(single.status, 0, single.stderr)
        let r = try runEmulated(args("uneven"), nodes: 2, ranksPerNode: "2,1")
        XCTAssertEqual(r.status, 0, r.stderr)
        let log = r.stdout + r.stderr
        XCTAssertTrue(log.contains("gradients all-reduced with MPI messages, AdamW on every rank (2 nodes, 1 to 2 ranks per node; "
                                   + "the hierarchical reduction needs the same number of ranks on every node)"), log)
        let (worst, at) = Self.maxDifference(try CLI.tensors(w.dir.appendingPathComponent("single/model.safetensors")),
                                             try CLI.tensors(w.dir.appendingPathComponent("uneven/model.safetensors")))
        XCTAssertLessThan(worst, 1e-5, "uneven nodes: final weights differ from 1 process by \(worst) in \(at)")
    }

    func testKillingOneNodeEndsTheJobNamingItAndOneNodeResumes() throws {
        try requireEmulation()
        let w = try makeWorkspace()
        defer { try? FileManager.default.removeItem(at: w.dir) }
        let out = w.dir.appendingPathComponent("faulty")
        // A checkpoint every 2 steps; 0.3 s per step leaves several steps after checkpoint-6 to kill in.
        let args = trainArgs(w, out: "faulty") + ["--save-steps", "2", "--step-delay-ms", "300", "--watchdog-timeout", "30"]
        let killed = DataBox()
        let started = Date()
        let r = try runEmulated(args, nodes: 2, ranksPerNode: "2", timeout: 120) { ended in
            let marker = out.appendingPathComponent("checkpoint-6/manifest.json").path
            while ended.data.isEmpty && !FileManager.default.fileExists(atPath: marker) { usleep(20_000) }
            guard ended.data.isEmpty else { return }
            // Every rank of node1 (world ranks 2 and 3: 2 per node, mapped in order) of this job: SIGKILL.
            var victims: [String] = []
            for pid in Self.ranks(outputDir: out.path) where [2, 3].contains(pid.rank) {
                kill(pid.pid, SIGKILL)
                victims.append("rank \(pid.rank) pid \(pid.pid)")
            }
            killed.data = Data(victims.joined(separator: ", ").utf8)
        }
        let elapsed = Date().timeIntervalSince(started)
        let victims = String(decoding: killed.data, as: UTF8.self)
        XCTAssertTrue(victims.contains("rank 2") && victims.contains("rank 3"), "both ranks of node1 killed: \(victims)")
        XCTAssertNotEqual(r.status, 0, "the job must fail: \(r.stderr)")
        XCTAssertNotNil(Self.matches(r.stderr, #"process rank [23] with PID [0-9]+ on node node1 exited on signal 9"#),
                        "the failure names node1: \(r.stderr)")
        XCTAssertLessThan(elapsed, 60, "the job must end well within the watchdog")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path),
                       "the killed run must not have finished")

        // The same command on 1 node × 2 ranks resumes from the newest checkpoint and finishes the run.
        let resumed = try runEmulated(args, nodes: 1, ranksPerNode: "2", timeout: 120)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let log = resumed.stdout + resumed.stderr
        let from = Self.matches(log, #"resuming from checkpoint-[0-9]+ \(step [0-9]+, saved with 4 rank\(s\), now 2\)"#)
        XCTAssertNotNil(from, "resumed at the new world size: \(log)")
        if let from, let step = Int(log[from].split(separator: "-")[1].prefix { $0.isNumber }) {
            XCTAssertGreaterThanOrEqual(step, 6, "resumed from the checkpoint written before the kill (or a later one)")
            XCTAssertLessThan(step, 20)
        }
        // Its weights and per-step losses are those of an uninterrupted single-process run.
        let ref = try CLI.run(trainArgs(w, out: "reference"), timeout: 120)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let refDir = w.dir.appendingPathComponent("reference")
        let (worst, at) = Self.maxDifference(try CLI.tensors(refDir.appendingPathComponent("model.safetensors")),
                                             try CLI.tensors(out.appendingPathComponent("model.safetensors")))
        XCTAssertLessThan(worst, 1e-5, "resumed run's final weights differ from an uninterrupted run by \(worst) in \(at)")
        let refLoss = try Self.losses(refDir)
        // metrics.jsonl of the resumed run holds every step once (the history is restored from the checkpoint).
        let losses = try Self.losses(out)
        XCTAssertEqual(losses.count, refLoss.count, "one loss per step after the resume")
        for (k, (a, b)) in zip(refLoss, losses).enumerated() {
            XCTAssertEqual(a, b, accuracy: 1e-5 * abs(a), "resumed run step \(k + 1) loss vs uninterrupted")
        }
    }

    /// The ranks of the disttrain job writing to `outputDir`: (world rank, pid), from /proc.
    static func ranks(outputDir: String) -> [(rank: Int, pid: Int32)] {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var found: [(Int, Int32)] = []
        for name in procs {
            guard let pid = Int32(name),
                  let cmd = FileManager.default.contents(atPath: "/proc/\(name)/cmdline"),
                  let env = FileManager.default.contents(atPath: "/proc/\(name)/environ") else { continue }
            let argv = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard argv.first?.hasSuffix("/disttrain") == true,
                  let i = argv.firstIndex(of: "--output-dir"), i + 1 < argv.count, argv[i + 1] == outputDir else { continue }
            for v in env.split(separator: 0).map({ String(decoding: $0, as: UTF8.self) })
            where v.hasPrefix("OMPI_COMM_WORLD_RANK=") {
                if let r = Int(v.dropFirst("OMPI_COMM_WORLD_RANK=".count)) { found.append((r, pid)) }
            }
        }
        return found.map { (rank: $0.0, pid: $0.1) }
    }
}
