// Launch mode: decided from the environment the launcher sets, so that a plain `disttrain train` runs as world
// size 1 without touching MPI, and `mpirun`/`srun` runs use MPI.
#if canImport(Glibc)
import Glibc
#endif

public enum LaunchMode: Equatable, Sendable {
    case single
    case mpi(worldSize: Int?)

    /// Reads the variables set by OpenMPI (OMPI_COMM_WORLD_SIZE), MPICH/Hydra (PMI_SIZE), PMIx (PMIX_RANK) and
    /// SLURM's srun (SLURM_PROCID with SLURM_NTASKS > 1 inside a step).
    public static func detect(environment env: [String: String]) -> LaunchMode {
        if let s = env["OMPI_COMM_WORLD_SIZE"], let n = Int(s) { return .mpi(worldSize: n) }
        if let s = env["PMI_SIZE"], let n = Int(s) { return .mpi(worldSize: n) }
        if env["PMIX_RANK"] != nil { return .mpi(worldSize: nil) }
        if env["SLURM_STEP_ID"] != nil, env["SLURM_PROCID"] != nil,
           let s = env["SLURM_STEP_NUM_TASKS"] ?? env["SLURM_NTASKS"], let n = Int(s), n > 1 {
            return .mpi(worldSize: n)
        }
        return .single
    }
}

/// Creates the communicator for this process: MPI under a launcher, `LocalCommunicator` otherwise.
public func makeCommunicator(environment env: [String: String]) throws -> Communicator {
    switch LaunchMode.detect(environment: env) {
    case .single: return LocalCommunicator()
    case .mpi: return try MPICommunicator()
    }
}
