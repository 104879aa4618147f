// ThreadPool.swift: the rank's compute threads beyond OpenBLAS's: one persistent pool (CKernels' ck_pool, made by
// ComputeThreads.set, sleeping between jobs) that splits the element-wise kernels, the attention loops and AdamW.
// The model's matrix products are cut into row blocks that the pool runs with OpenBLAS on one thread
// (Linear.swift's splitSgemm), so OpenBLAS's own threads stay asleep and nothing competes for the cores. Every split is by rows, by column ranges or by
// independent (sample, head) pairs, never through a reduction, so results are bit-identical for every thread count.
// Deliberately not here: the kernels themselves (CKernels), choosing the thread count (the caller's --threads).
import CBLAS
import CKernels
import Foundation

extension ComputeThreads {
    /// The pool of the current thread setting (nil at 1 thread). Process-wide like OpenBLAS's own thread count,
    /// which it mirrors; replaced only by `set`.
    nonisolated(unsafe) public private(set) static var pool: OpaquePointer?
    nonisolated(unsafe) private static var poolThreads = 1

    private static let poolLock = NSLock()

    /// Makes (or drops) the pool for `n` threads in all; called by `set` (a no-op when the count is unchanged, so
    /// in-process ranks that each set the same count share one pool).
    static func setPool(_ n: Int) {
        let n = max(1, n)
        poolLock.lock(); defer { poolLock.unlock() }
        guard n != poolThreads else { return }
        if let p = pool { ck_pool_destroy(p) }
        pool = n > 1 ? ck_pool_create(Int32(n)) : nil
        poolThreads = pool == nil ? 1 : Int(ck_pool_threads(pool))
    }

    /// Threads the pool splits work over (1 without a pool).
    public static var poolSize: Int { poolThreads }

    /// Seconds the pool's workers have spent on jobs since it was made (benchmarks: how much the second core did).
    public static var poolWorkerSeconds: Double { Double(ck_pool_worker_ns(pool)) * 1e-9 }

    /// Runs `body(range, thread)` over [0, n) split into ranges of at least `grain` items on the pool (the caller
    /// included), or as one call `body(0..<n, 0)` when there is no pool, it is in use, or n < 2·grain. `thread`
    /// (0..<poolSize) is unique among the ranges running at one time: an index for per-thread scratch.
    /// `body` must touch disjoint data for disjoint ranges.
    public static func parallelFor(_ n: Int, grain: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        guard n > 0 else { return }
        guard let p = pool, n >= 2 * grain, ck_pool_available(p) != 0 else { body(0..<n, 0); return }
        withoutActuallyEscaping(body) { esc in
            var f = esc
            withUnsafeMutablePointer(to: &f) { ptr in
                ck_pool_for(p, n, grain, 1, { ctx, lo, hi, thread in
                    ctx!.assumingMemoryBound(to: ((Range<Int>, Int) -> Void).self).pointee(lo..<hi, Int(thread))
                }, UnsafeMutableRawPointer(ptr))
            }
        }
    }

    /// Runs `body` with OpenBLAS on one thread when the pool is free (the pool's threads each run their own small
    /// products inside it, as the attention loops do), restoring the setting after; `body` gets whether the pool
    /// will split (false: the loop runs on the caller).
    public static func withPoolOwningCores<R>(_ body: (Bool) -> R) -> R {
        guard let p = pool, ck_pool_available(p) != 0 else { return withBLASOnOneThread { body(false) } }
        return withBLASOnOneThread { body(true) }
    }
}
