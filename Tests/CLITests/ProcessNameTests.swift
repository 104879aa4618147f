// A running disttrain is named disttrain (the kernel's comm: ps, top, pgrep -x, killall, ps -C), every rank under
// mpirun included. On a CPU OpenBLAS does not know, main.swift re-executes the binary with OPENBLAS_CORETYPE set; the
// kernel names the new image after the basename of the path given to execv, so re-executing "/proc/self/exe" named
// every rank "exe". cluster/slurm/selftest.sh's crash part finds rank 1 by that name (kill -9 of the rank) and an
// operator finds the ranks with `pgrep -x disttrain` to signal them. On a CPU OpenBLAS knows there is no re-exec and
// these tests check the same names.
import Foundation
import XCTest

final class ProcessNameTests: XCTestCase {
    var dir: URL!
    var train: URL!

    override func setUpWithError() throws {
        dir = try CLI.tempDir("procname")
        train = dir.appendingPathComponent("train.jsonl")
        try CLI.writeSpamHamRows(32, to: train)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func args(_ out: String) -> [String] {
        ["train", "--model", CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls").path,
         "--train-file", train.path, "--output-dir", dir.appendingPathComponent(out).path, "--batch-size", "8",
         "--max-steps", "200", "--max-length", "24", "--threads", "1", "--no-report",
         "--step-delay-ms", "50", "--save-steps", "2"]
    }

    func ready(_ out: String) -> @Sendable () -> Bool {
        let latest = dir.appendingPathComponent("\(out)/latest").path
        return { FileManager.default.fileExists(atPath: latest) }
    }

    static func comm(_ pid: Int32) -> String {
        ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// One process: named disttrain while it trains; the SIGUSR1 sent to the process found by that name saves and
    /// ends it with 75.
    func testOneProcessIsNamedDisttrainAndSavesOnUSR1() throws {
        let pid = PidBox(), done = DataBox(), seen = DataBox()
        let isReady = ready("one")
        DispatchQueue.global().async {
            while !isReady() && done.data.isEmpty { usleep(20_000) }
            guard let p = pid.pid, done.data.isEmpty else { return }
            let name = Self.comm(p)
            seen.data = Data(name.utf8)
            if name == "disttrain" { kill(p, SIGUSR1) } else { kill(p, SIGKILL) }
        }
        let r = try CLI.run(args("one"), timeout: 120, onStart: { pid.pid = $0 })
        done.data = Data([1])
        XCTAssertEqual(String(decoding: seen.data, as: UTF8.self), "disttrain",
                       "/proc/PID/comm of a training disttrain (pgrep -x disttrain, killall, ps -C find it by this)")
        XCTAssertEqual(r.status, 75, r.stderr)
        XCTAssertTrue(r.stderr.contains("received SIGUSR1; saved "), r.stderr)
    }

    /// Two ranks under mpirun: each of mpirun's children is named disttrain, as selftest.sh's crash part expects when
    /// it kill -9's rank 1; the kill ends the job with a failure (no save), as there.
    func testRanksUnderMpirunAreNamedDisttrain() throws {
        let names = DataBox()
        let r = try CLI.runWithAction(args("mpi"), ranks: 2, after: 0.2, ready: ready("mpi")) { mpirun in
            let kids = CLI.childPids(of: mpirun)
            names.data = Data(kids.map { Self.comm($0) }.joined(separator: ",").utf8)
            if let last = kids.last { kill(last, SIGKILL) }   // end the run early, whatever the names
        }
        XCTAssertEqual(String(decoding: names.data, as: UTF8.self), "disttrain,disttrain",
                       "mpirun's children (the ranks) by /proc/PID/comm; stderr: \(r.stderr)")
        XCTAssertNotEqual(r.status, 0, r.stderr)
    }
}
