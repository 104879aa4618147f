// OutputRank: commands that only read and print (predict, generate, tokenize) do their work once under a launcher.
// Rank 0 runs and prints; every other rank returns at once, so `mpirun -n 2 disttrain predict ...` prints each line
// once instead of once per rank (`eval` shards its work over the ranks instead, and prints once).
// Deliberately not here: MPI (the launcher's environment is enough to know the rank; no collective is needed).
import Dist
import Foundation

public enum OutputRank {
    /// Whether this process is a rank other than 0 of a launcher (mpirun, srun): it should print nothing.
    public static func isSecondary(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        (LaunchMode.launcherRank(environment: environment) ?? 0) != 0
    }
}
