// StartupFailure: an error in a rank's start-up (checkpoint, model or data files) made known to every rank through
// one collective, so that a job whose ranks all read the same bad file prints one message and every rank ends MPI
// cleanly with the same exit code, instead of one copy of the message per rank followed by an MPI abort banner.
// Every rank calls exactly one of `agreed` (it failed) or `agreeNoneFailed` (it did not), at the same point.
// Deliberately not here: errors after start-up (a rank failing mid-run aborts the job, naming itself; TrainCommand).
import Dist

public struct StartupFailure: Error, CustomStringConvertible {
    /// What to print, on the one rank that prints it (the lowest failing rank); nil on every other rank.
    public let message: String?
    /// The exit code every rank ends with (the highest among the failing ranks' codes).
    public let exitCode: Int32
    public var description: String { message ?? "start-up failed on another rank" }

    /// Collective, on a rank whose start-up threw `error`: returns the error this rank should throw. With one rank
    /// that is `error` itself; otherwise a StartupFailure, whose message names the rank unless every rank failed.
    static func agreed(_ error: Error, comm: Communicator) throws -> Error {
        guard comm.worldSize > 1 else { return error }
        let code = (error as? TrainingError)?.exitCode ?? 1
        let v = try vote(failed: true, code: code, comm: comm)
        guard v.firstFailing == comm.rank else { return StartupFailure(message: nil, exitCode: v.code) }
        return StartupFailure(message: v.allFailed ? "\(error)" : "[rank \(comm.rank)] \(error)", exitCode: v.code)
    }

    /// Collective, on a rank whose start-up succeeded: returns when no rank failed, else throws a silent
    /// StartupFailure (the failing rank prints the reason).
    static func agreeNoneFailed(comm: Communicator) throws {
        guard comm.worldSize > 1 else { return }
        let v = try vote(failed: false, code: 0, comm: comm)
        if let _ = v.firstFailing { throw StartupFailure(message: nil, exitCode: v.code) }
    }

    /// One max-all-reduce of (W − rank if failed, 1 if succeeded, exit code if failed).
    private static func vote(failed: Bool, code: Int32, comm: Communicator) throws -> (firstFailing: Int?, allFailed: Bool, code: Int32) {
        let W = Int64(comm.worldSize)
        var v: [Int64] = [failed ? W - Int64(comm.rank) : 0, failed ? 0 : 1, failed ? Int64(code) : 0]
        try comm.allReduce(&v, op: .max)
        return (v[0] > 0 ? Int(W - v[0]) : nil, v[1] == 0, Int32(v[2]))
    }
}
