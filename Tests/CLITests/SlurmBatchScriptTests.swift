// cluster/slurm/train.sbatch without SLURM: the batch script runs under plain bash with the SLURM_* variables a job
// gets, `scontrol` a stub on PATH that records its arguments, and 2 ranks under mpirun. Real signals go to the batch
// script's process, as `scancel --signal=USR1 --batch` (or --signal=B:USR1@LEAD) and `scontrol requeue` deliver them.
// This is the part of cluster/slurm/selftest.sh (a real slurmctld + slurmd, not in CI) that needs no daemons: the
// script's trap, its exit code, when it requeues, and the resume of the next run.
import Foundation
import XCTest

final class SlurmBatchScriptTests: XCTestCase {
    static let script = CLI.repoRoot.appendingPathComponent("cluster/slurm/train.sbatch")
    var dir: URL!
    var train: URL!

    override func setUpWithError() throws {
        dir = try CLI.tempDir("sbatch")
        train = dir.appendingPathComponent("train.jsonl")
        try CLI.writeSpamHamRows(32, to: train)
        // scontrol stub: appends its arguments to scontrol.log
        let bin = dir.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let stub = bin.appendingPathComponent("scontrol")
        try "#!/bin/sh\necho \"$*\" >> \"\(dir.appendingPathComponent("scontrol.log").path)\"\n".write(to: stub, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: stub.path)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var scontrolCalls: [String] {
        ((try? String(contentsOf: dir.appendingPathComponent("scontrol.log"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    /// Runs train.sbatch as run `restart` of job 4242 (output folder dir/job) and, once `latest` exists there and
    /// `after` seconds have passed, sends `signal` to the batch script (bash) itself. Returns its status and output.
    func runBatch(steps: Int, restart: Int, signal: Int32? = nil, after: TimeInterval = 0.3,
                  timeout: TimeInterval = 180) throws -> (status: Int32, output: String) {
        let env = ["PATH": dir.appendingPathComponent("bin").path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
                   "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,vader,tcp",
                   "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "job", "SLURM_SUBMIT_DIR": dir.path,
                   "SLURM_RESTART_COUNT": String(restart), "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1",
                   "DISTTRAIN_BIN": try CLI.binary().path,
                   "MODEL": CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls").path,
                   "TRAIN_FILE": train.path, "EVAL_FILE": "", "OUTPUT_DIR": "job",
                   "TRAIN_ARGS": "--max-steps \(steps) --batch-size 8 --max-length 24 --seed 3 --save-steps 2 --no-report",
                   "EXTRA_ARGS": "--step-delay-ms 100",
                   // outside an allocation mpirun needs the rank count
                   "MPIRUN_ARGS": "--bind-to none --oversubscribe -n 2"]
        let launch = { (onStart: (Int32) -> Void) in
            try CLI.runProgram(URL(fileURLWithPath: "/bin/bash"), [Self.script.path], timeout: timeout, grace: 10, in: self.dir,
                               environment: env, onStart: onStart)
        }
        let r: RunResult
        if let signal {
            let latest = dir.appendingPathComponent("job/latest").path
            r = try CLI.withAction(after: after, ready: { FileManager.default.fileExists(atPath: latest) },
                                   action: { kill($0, signal) }, launch)
        } else {
            r = try launch { _ in }
        }
        return (r.status, r.stdout + r.stderr)
    }

    /// USR1 to the batch script: forwarded to mpirun, every rank saves and exits 75, mpirun exits 75, the script runs
    /// `scontrol requeue $SLURM_JOB_ID` and exits 75; the next run (SLURM_RESTART_COUNT=1) resumes from that save.
    func testUSR1ToTheBatchScriptSavesRequeuesAndTheNextRunResumes() throws {
        let first = try runBatch(steps: 40, restart: 0, signal: SIGUSR1)
        XCTAssertEqual(first.status, 75, first.output)
        for expected in ["SLURM_RESTART_COUNT=0", "received SIGUSR1, forwarding to mpirun", "received SIGUSR1; saved ",
                         "mpirun exited with 75 (signals: USR1)", "checkpoint saved; requeueing job 4242"] {
            XCTAssertTrue(first.output.contains(expected), "missing '\(expected)' in:\n\(first.output)")
        }
        XCTAssertEqual(scontrolCalls, ["requeue 4242"], first.output)
        let saved = try XCTUnwrap(first.output.range(of: #"received SIGUSR1; saved \S*/checkpoint-[0-9]+"#, options: .regularExpression)
            .map { String(first.output[$0].split(separator: "/").last!) }, first.output)

        let second = try runBatch(steps: 40, restart: 1)
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(second.output.contains("SLURM_RESTART_COUNT=1"), second.output)
        XCTAssertTrue(second.output.contains("resuming from \(saved) "), "the second run resumes from the USR1 save \(saved):\n\(second.output)")
        XCTAssertTrue(second.output.contains("mpirun exited with 0"), second.output)
        XCTAssertEqual(scontrolCalls, ["requeue 4242"], "no requeue after a finished run: \(second.output)")
    }

    /// TERM to the batch script alone (SLURM sends it to every process of the job at once on `scontrol requeue`,
    /// preemption and scancel): forwarded to mpirun, which ends the ranks and exits 1 or 143 (docs/cluster.md,
    /// "Signals"; whether the ranks reached a save first depends on timing); the script reports that code and never
    /// requeues by itself after TERM.
    func testTERMToTheBatchScriptIsForwardedAndNeverRequeues() throws {
        let r = try runBatch(steps: 200, restart: 0, signal: SIGTERM)
        XCTAssertTrue(r.output.contains("received SIGTERM, forwarding to mpirun"), r.output)
        XCTAssertTrue(r.output.range(of: #"mpirun exited with [0-9]+ \(signals: TERM\)"#, options: .regularExpression) != nil, r.output)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertFalse(r.output.contains("requeueing job"), r.output)
        XCTAssertEqual(scontrolCalls, [], r.output)
    }
}
