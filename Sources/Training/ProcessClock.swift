// ProcessClock: seconds since this process was created by the kernel (not since `main`), so that "launch → first
// optimizer step" includes loading the binary and the Swift runtime, as a user's stopwatch would.
// Linux: /proc/self/stat field 22 (start time in clock ticks after boot) against CLOCK_BOOTTIME; 10 ms resolution.
// Deliberately not here: anything else about the process.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum ProcessClock {
    /// Seconds since the process started, or nil where /proc is unavailable.
    public static func secondsSinceLaunch() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3, so starttime (field 22) is the 20th after the parenthesis.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
        var ts = timespec()
        guard clock_gettime(CLOCK_BOOTTIME, &ts) == 0 else { return nil }
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        return now - ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
