// ActivationArena: the one allocator for every model's activation and scratch buffers (encoder, GPT-2 body, the
// generator's KV cache, LoRA's per-target buffers). Buffers are anonymous mappings: zeroed, page-aligned (so 64-byte
// aligned for vector loads), and resident only once written, so a buffer a run never touches (a frozen base's saved
// inputs) costs address space, not memory. Everything is unmapped when the arena goes away.
// Deliberately not here: the parameter buffers (ParameterStore), sizing decisions (each model lists its buffers).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class ActivationArena: @unchecked Sendable {
    /// Bytes requested so far (the figure the benchmarks report).
    public private(set) var bytes = 0
    private var blocks: [(UnsafeMutableRawPointer, Int)] = []

    public init() {}

    /// A zeroed buffer of `n` floats (at least one), owned by the arena.
    public func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
        let size = max(n, 1) * 4
        guard let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            // Sizes are checked against the machine before a model is built (Training's ModelFolder.checkArena).
            preconditionFailure("cannot map \(size) bytes for the activation arena (out of memory?)")
        }
        blocks.append((raw, size))
        bytes += n * 4
        return raw.bindMemory(to: Float.self, capacity: max(n, 1))
    }

    deinit { for (p, n) in blocks { munmap(p, n) } }
}
