// cluster/slurm/train.sbatch on a real 2-node SLURM cluster made of two emulated nodes (network namespaces) of this
// machine: cluster/slurm/selftest-multinode.sh brings up munged, slurmctld and one slurmd per node, submits
// `sbatch --nodes=2 --ntasks=4 --ntasks-per-node=2 cluster/slurm/train.sbatch` on the tiny BERT fixture and checks the
// job against a 1-process run (weights and losses within 1e-5); then preempts the same job with USR1, which must save
// on both nodes, requeue, resume and end byte for byte equal; then tears everything down.
// Opt-in: it runs only with DISTTRAIN_SLURM_MULTINODE=1 (as root), because it may install the slurm packages with apt.
import Foundation
import XCTest

final class SlurmMultiNodeTests: XCTestCase {
    static let script = CLI.repoRoot.appendingPathComponent("cluster/slurm/selftest-multinode.sh")

    func testTrainSbatchOnTwoSlurmNodesEndsWithTheWeightsOfOneProcess() throws {
        guard ProcessInfo.processInfo.environment["DISTTRAIN_SLURM_MULTINODE"] == "1" else {
            throw XCTSkip("set DISTTRAIN_SLURM_MULTINODE=1 (as root) to run cluster/slurm/selftest-multinode.sh: it installs slurm packages")
        }
        guard getuid() == 0 else { throw XCTSkip("cluster/slurm/selftest-multinode.sh needs root") }
        // On timeout: SIGTERM, then a minute before SIGKILL (the script's trap stops the daemons and removes the namespaces).
        let r = try CLI.runProgram(Self.script, [], timeout: 600, grace: 60, environment: ["DISTTRAIN_BIN": try CLI.binary().path])
        let log = r.stdout + r.stderr
        if r.status == 77 { throw XCTSkip("selftest-multinode.sh skipped: \(r.stdout.split(separator: "\n").last ?? "")") }
        XCTAssertEqual(r.status, 0, log)
        for expected in ["PASS: job COMPLETED with exit 0:0 on 2 nodes node[0-1]",
                         "PASS: disttrain ran 4 ranks and its start-up line names 2 nodes × 2 ranks",
                         "PASS: final weights and per-step losses of the 2-node SLURM job equal the 1-process run's within 1e-5",
                         "PASS: the preempted and resumed job's model.safetensors equals the uninterrupted 2-node job's byte for byte",
                         "SELFTEST PASSED"] {
            XCTAssertTrue(log.contains(expected), "missing '\(expected)' in:\n\(log)")
        }
        XCTAssertFalse(log.contains("FAIL:"), log)
    }
}
