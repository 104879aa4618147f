// Launch mode: decided from the environment the launcher sets, so that a plain `disttrain train` runs as world
// size 1 without touching MPI, and `mpirun`/`srun` runs use MPI. Also how many cores this rank may use, so the
// trainer can default its thread count to what the launcher bound it to.
// Deliberately not here: reading hyperparameters from the environment (they are CLI flags).
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

extension LaunchMode {
    /// This process's rank as the launcher numbered it (OMPI_COMM_WORLD_RANK, PMI_RANK, PMIX_RANK, or SLURM_PROCID in
    /// a multi-task step), read without initialising MPI; nil when no launcher started it.
    public static func launcherRank(environment env: [String: String]) -> Int? {
        guard detect(environment: env) != .single else { return nil }
        for key in ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"] {
            if let s = env[key], let r = Int(s) { return r }
        }
        return nil
    }
}

/// Creates the communicator for this process: MPI under a launcher, `LocalCommunicator` otherwise.
/// - Parameters:
///   - watchdogTimeout: seconds a collective may block before the job is aborted (MPI only; 0 = off).
///   - debug: wrap the communicator in `DebugCommunicator` (cross-checks every collective across ranks).
public func makeCommunicator(environment env: [String: String], watchdogTimeout: Double = 300,
                             debug: Bool = false) throws -> Communicator {
    let base: Communicator
    switch LaunchMode.detect(environment: env) {
    case .single: base = LocalCommunicator()
    case .mpi: base = try MPICommunicator(watchdogTimeout: watchdogTimeout)
    }
    return debug ? DebugCommunicator(wrapping: base) : base
}

/// The number of CPU cores this process may run on (its sched_getaffinity mask; mpirun binds each of ≤2 ranks to one
/// core here, `--bind-to none` widens it). Falls back to the online core count if the mask cannot be read.
public func availableCores() -> Int {
    #if os(Linux)
    // Glibc declares sched_getaffinity only under _GNU_SOURCE, which Swift's Glibc module does not define, so the
    // symbol is looked up at run time; the mask is a 1024-bit cpu_set_t (glibc's fixed size).
    typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
    if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getaffinity") {
        let getAffinity = unsafeBitCast(sym, to: GetAffinity.self)
        var mask = [UInt64](repeating: 0, count: 16)
        let rc = mask.withUnsafeMutableBytes { getAffinity(0, $0.count, $0.baseAddress!) }
        let n = mask.reduce(0) { $0 + $1.nonzeroBitCount }
        if rc == 0, n > 0 { return n }
    }
    #endif
    return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}
