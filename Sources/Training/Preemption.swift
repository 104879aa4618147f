// Preemption: SIGUSR1, SIGUSR2, SIGTERM and SIGINT only set a flag; the trainer looks at it at each step boundary,
// the ranks agree with an all-reduce(MAX), save collectively and exit with `Preemption.exitCode` ("saved, requeue
// me"). A second SIGINT/SIGTERM while saving is ignored so the checkpoint completes.
// The flag is process-wide by nature (a signal handler cannot capture context), so it is the one global here.
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

private let pendingSignal = Atomic<Int32>(0)

public enum Preemption {
    /// The exit status of a run that stopped on a signal after writing a complete checkpoint (EX_TEMPFAIL).
    public static let exitCode: Int32 = 75

    /// Installs the handlers (idempotent).
    public static func install() {
        for sig in [SIGUSR1, SIGUSR2, SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { s in pendingSignal.store(s, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
        }
    }

    /// The signal received since start-up (0 = none).
    public static var pending: Int32 { pendingSignal.load(ordering: .relaxed) }

    /// For tests: forget a received signal.
    public static func reset() { pendingSignal.store(0, ordering: .relaxed) }

    public static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        default: return "signal \(sig)"
        }
    }
}

/// Thrown by the trainer after a preemption save; the CLI exits with `Preemption.exitCode`.
public struct PreemptedError: Error, CustomStringConvertible {
    public let signal: Int32
    public let checkpoint: URL
    public var description: String {
        "received \(Preemption.name(signal)); saved \(checkpoint.path) — resubmit the same command to resume (exit code \(Preemption.exitCode))"
    }
}
