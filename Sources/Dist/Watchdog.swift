// Watchdog: a background thread that notices when this rank has been inside one collective for too long, prints
// which one (name and sequence number) and ends the job, so that a rank that died or never arrived cannot leave the
// others blocked forever. The communicator marks entry/exit (`enter`/`leave`, a locked pair of stores: cheap next to
// any collective); the thread polls about once a second.
// Deliberately not here: deciding what "too long" is for a given model (the trainer passes the timeout), or any
// retry: a collective that timed out leaves MPI in an undefined state, so the only safe action is to abort.
import Foundation
import Synchronization

public final class Watchdog: Sendable {
    /// What this rank is currently blocked in.
    public struct Activity: Sendable, Equatable {
        public let name: String
        public let sequence: Int
        public let started: ContinuousClock.Instant
        /// The limit in force when the collective started.
        public let limit: Double
    }

    private struct State {
        var current: Activity?
        var stopped = false
        var limit: Double
    }

    /// Exit code of a job ended by the watchdog (distinct from `timeout`'s 124 and signal codes ≥ 128).
    public static let abortCode: Int32 = 86

    /// Seconds a single collective may take before the job is aborted; 0 disables the watchdog.
    public let timeout: Double
    private let rankLabel: String
    private let state: Mutex<State>
    /// Called once, from the watchdog thread, with the message; must not return normally in production (it aborts).
    private let onTimeout: @Sendable (String) -> Void

    /// - Parameters:
    ///   - timeout: seconds; 0 turns the watchdog off (no thread is started).
    ///   - rankLabel: e.g. "rank 1 of 4", used in the message.
    ///   - onTimeout: what to do after the message is printed (MPICommunicator passes MPI_Abort).
    public init(timeout: Double, rankLabel: String, onTimeout: @escaping @Sendable (String) -> Void) {
        self.timeout = max(0, timeout)
        self.state = Mutex(State(limit: max(0, timeout)))
        self.rankLabel = rankLabel
        self.onTimeout = onTimeout
        guard self.timeout > 0 else { return }
        // Poll often enough that a short test timeout is honoured within ~25%, but at most once a second.
        let interval = min(1.0, self.timeout / 4)
        let thread = Thread { [weak self] in
            while let me = self {
                if me.poll() { return }
                Thread.sleep(forTimeInterval: interval)
            }
        }
        thread.name = "disttrain-watchdog"
        thread.start()
    }

    deinit { state.withLock { $0.stopped = true } }

    /// Marks the start of a blocking collective.
    public func enter(_ name: String, sequence: Int) {
        guard timeout > 0 else { return }
        state.withLock { $0.current = Activity(name: name, sequence: sequence, started: .now, limit: $0.limit) }
    }

    /// Runs `body` with a different limit (e.g. a barrier while rank 0 writes a large checkpoint or evaluates).
    /// No effect when the watchdog is off.
    public func withTimeout<T>(_ seconds: Double, _ body: () throws -> T) rethrows -> T {
        guard timeout > 0 else { return try body() }
        let previous = state.withLock { s in
            let p = s.limit
            s.limit = max(seconds, 0.001)
            return p
        }
        defer { state.withLock { $0.limit = previous } }
        return try body()
    }

    /// Marks its end.
    public func leave() {
        guard timeout > 0 else { return }
        state.withLock { $0.current = nil }
    }

    /// The collective this rank is inside right now, if any.
    public var current: Activity? { state.withLock { $0.current } }

    /// Stops the thread (it exits at its next poll).
    public func stop() { state.withLock { $0.stopped = true } }

    /// Returns true when the thread should exit.
    private func poll() -> Bool {
        let (stopped, activity) = state.withLock { ($0.stopped, $0.current) }
        if stopped { return true }
        guard let a = activity else { return false }
        let waited = ContinuousClock.now - a.started
        let seconds = waited.seconds
        guard seconds > a.limit else { return false }
        let message = "disttrain watchdog: \(rankLabel) has waited \(String(format: "%.1f", seconds)) s "
            + "(timeout \(a.limit) s) in collective #\(a.sequence) \(a.name); another rank probably died or is "
            + "executing a different collective. Aborting the job. HINT: rerun with --debug to cross-check "
            + "collectives, or raise --watchdog-timeout (seconds; 0 turns it off) if a step legitimately takes this long."
        FileHandle.standardError.write(Data((message + "\n").utf8))
        state.withLock { $0.stopped = true }
        onTimeout(message)
        return true
    }
}
