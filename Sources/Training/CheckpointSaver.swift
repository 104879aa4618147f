// CheckpointSaver: when the Trainer decides to save, how the ranks produce one checkpoint (Checkpoint.swift's commit
// protocol). Under ZeRO-1 the optimizer state is first gathered from its owners (collective). Rank 0 snapshots the
// parameters and moments and commits checkpoint-STEP in the background (periodic saves) or at once (the last step,
// preemption, early stop); then it rotates old checkpoints and rewrites metrics.jsonl. A foreground save of a
// single-node job is split: the last rank writes optimizer.safetensors into the partial folder while rank 0 writes
// the model, and reports the file's size and sha256 (or its error) in one fixed-size broadcast
// (`OptimizerFileReport`); rank 0 still commits. At the end, the final model folder links the files of a checkpoint
// taken at the same step instead of writing them again.
// Deliberately not here: when to save (Trainer), the on-disk format and commit protocol (Checkpoint).
import Dist
import Foundation
import Model
import Tokenizers
#if canImport(Glibc)
import Glibc
#endif

final class CheckpointSaver {
    let comm: Communicator
    let task: TrainingTask
    let stepper: TrainStep
    let outputDir: URL
    let saveTotalLimit: Int
    let faultInjection: (phase: String, step: Int)?
    let writer = CheckpointWriter()
    /// The last checkpoint rank 0 committed in the foreground (step, folder); the final model links its files.
    private var lastSynchronousCheckpoint: (step: Int, url: URL)?

    /// `resumedFrom`: the checkpoint whose weights were just loaded (its files are the model as of its step).
    init(comm: Communicator, task: TrainingTask, stepper: TrainStep, config: TrainConfig, resumedFrom: (step: Int, url: URL)?) {
        self.comm = comm
        self.task = task
        self.stepper = stepper
        outputDir = config.outputDir
        saveTotalLimit = config.saveTotalLimit
        faultInjection = config.faultInjection
        lastSynchronousCheckpoint = resumedFrom
    }

    /// Collective: writes checkpoint-`step` (rank 0 commits, in the background unless `background` is false; the
    /// other ranks only meet it at the barrier of a foreground save, so the slow part never blocks them). `state` is
    /// evaluated on rank 0 only. Returns the checkpoint's folder.
    @discardableResult
    func save(step: Int, background: Bool, state: () -> TrainerState, history: [[String: Double]], bestStep: Int?) throws -> URL {
        let url = outputDir.appendingPathComponent("checkpoint-\(step)")
        try gatherOptimizerState()
        // A foreground save on one node (shared memory in use) splits the writing: the last rank, which holds the
        // complete optimizer state too, writes optimizer.safetensors into the partial folder while rank 0 writes the
        // model; rank 0 still commits (manifest, rename, `latest`). Rank 1 would otherwise wait idle for 2/3 of it.
        let helper = comm.worldSize - 1
        let split = !background && stepper.reducer.shared != nil && helper > 0
        var receiver: OptimizerFileReport?
        if split {
            if comm.isRoot {
                try writer.wait()
                try Checkpoint.preparePartialFolder(outputDir: outputDir, step: step)
            }
            try comm.barrier()
            if comm.rank == helper {
                try OptimizerFileReport.send(writeOptimizerFile(step: step), comm: comm, root: helper)
            } else if !comm.isRoot {
                // A bystander joins the broadcast; a failed write is reported (and fails the job) on rank 0.
                do { _ = try OptimizerFileReport(comm: comm, root: helper).receive() } catch is TrainingError {}
            } else {
                receiver = OptimizerFileReport(comm: comm, root: helper)
            }
        }
        if comm.isRoot {
            let work = commitWork(step: step, state: state(), history: history, bestStep: bestStep)
            if background {
                try writer.submit { try work(nil) }
                lastSynchronousCheckpoint = nil
            } else {
                try writer.wait()
                lastSynchronousCheckpoint = (step, try work(receiver))
            }
        }
        if !background { try comm.barrier() }
        return url
    }

    /// The split save's helper: optimizer.safetensors from this rank's (complete) moments into the partial folder.
    private func writeOptimizerFile(step: Int) -> Result<(size: Int, sha256: String), Error> {
        do {
            let partial = Checkpoint.partialFolder(outputDir: outputDir, step: step)
            let entries = task.store.entries
            return .success(try stepper.optimizer.withMoments(0..<task.store.count) { mp, vp in
                try Checkpoint.writeOptimizerFile(Checkpoint.optimizerTensors(entries, m: UnsafeBufferPointer(mp), v: UnsafeBufferPointer(vp)), into: partial)
            })
        } catch { return .failure(error) }
    }

    /// Rank 0: snapshots the parameters and moments now, and returns the commit, which may run on the writer thread
    /// while the optimizer keeps training (given the split save's report when another rank writes the optimizer file).
    private func commitWork(step: Int, state: TrainerState, history: [[String: Double]], bestStep: Int?)
        -> @Sendable (OptimizerFileReport?) throws -> URL {
        let snapshot = ParameterStore(layout: task.store.layout)
        _ = snapshot.values.update(fromContentsOf: task.store.values)
        let m = stepper.optimizer.m, v = stepper.optimizer.v
        let entries = task.store.entries
        let task = self.task, outputDir = self.outputDir, limit = saveTotalLimit, fault = faultInjection
        return { elsewhere in
            // Views into the snapshot arrays (no per-tensor copies: 2 × 91 MB less at every MiniLM save).
            let u = try m.withUnsafeBufferPointer { mp in
                try v.withUnsafeBufferPointer { vp in
                    let source: Checkpoint.OptimizerFile = elsewhere.map { r in .writtenElsewhere { try r.receive() } }
                        ?? .tensors(Checkpoint.optimizerTensors(entries, m: mp, v: vp))
                    return try Checkpoint.commit(outputDir: outputDir, state: state, optimizer: source,
                                                 partialPrepared: elsewhere != nil, hook: { phase in
                        if let f = fault, f.step == step, f.phase == phase { _exit(137) }
                    }) { dir in
                        try task.save(to: dir, weights: snapshot)
                    }
                }
            }
            Checkpoint.rotate(outputDir, keep: limit, protect: bestStep)
            try Self.writeHistory(history, to: outputDir)
            return u
        }
    }

    /// ZeRO stage 1 before a checkpoint (collective): every rank's moments of the ranges and table rows it owns go to
    /// all ranks, so rank 0 writes, and any rank could resume from, the complete optimizer state.
    func gatherOptimizerState() throws {
        guard stepper.shardsOptimizer else { return }
        let optimizer = stepper.optimizer
        for q in 0..<comm.worldSize {
            for r in stepper.reducer.shares(of: q) {
                try optimizer.withMoments(r) { m, v in
                    try comm.broadcast(m, root: q)
                    try comm.broadcast(v, root: q)
                }
            }
        }
        // Table rows: only live ones have moments (the others are zero on every rank, and every rank knows which
        // are live); each owner's live rows travel packed in one message per rank and moment.
        for (k, table) in stepper.sync.sparseTables.enumerated() {
            let live = optimizer.liveRows(ofTable: k), n = table.rowLength
            for q in 0..<comm.worldSize {
                let owner = stepper.rowOwnerWorldRank ?? { [world = comm.worldSize] in GradientSyncLayout.tableRowOwner($0, worldSize: world) }
                let rows = live.filter { owner($0) == q }
                guard !rows.isEmpty else { continue }
                var packed = [Float](repeating: 0, count: rows.count * n)
                try optimizer.withMoments(table.range) { m, v in
                    for moments in [m, v] {
                        try packed.withUnsafeMutableBufferPointer { p in
                            guard let buf = p.baseAddress, let mom = moments.baseAddress else { return }
                            if comm.rank == q { for (i, r) in rows.enumerated() { (buf + i * n).update(from: mom + r * n, count: n) } }
                            try comm.broadcast(UnsafeMutableRawBufferPointer(p), root: q)
                            if comm.rank != q { for (i, r) in rows.enumerated() { (mom + r * n).update(from: buf + i * n, count: n) } }
                        }
                    }
                }
            }
        }
    }

    /// Rank 0, after the loop: waits for a background save, then writes the final model into the output folder (as
    /// links to the checkpoint of `step`, if one was committed in the foreground then; `--load-best-model-at-end`:
    /// links to the checkpoint of the `best` step) and metrics.jsonl.
    func publishFinal(step: Int, best: Int? = nil, history: [[String: Double]]) throws {
        try writer.wait()
        if let b = best {
            let url = outputDir.appendingPathComponent("checkpoint-\(b)")
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw TrainingError("--load-best-model-at-end: the best checkpoint \(url.path) is missing (deleted during the run?); its model cannot be published")
            }
            try Checkpoint.publishModel(from: url, to: outputDir)
        } else if let c = lastSynchronousCheckpoint, c.step == step {
            // The weights have not moved since that checkpoint: link its model files instead of rewriting them.
            try Checkpoint.publishModel(from: c.url, to: outputDir)
        } else {
            try task.save(to: outputDir, weights: nil)
        }
        try Self.writeHistory(history, to: outputDir)
    }

    /// The duration and size of the last finished background save, once.
    func takeStats() -> (seconds: Double, bytes: Int)? { writer.takeStats() }

    /// Writes metrics.jsonl (one record per line) into `outputDir`, atomically.
    static func writeHistory(_ history: [[String: Double]], to outputDir: URL) throws {
        let lines = history.map { JSONLines.objectLine($0) }.joined(separator: "\n") + "\n"
        try FileManager.default.createDirectory(at: outputDir, withIntermediateDirectories: true)
        try FileIO.writeAtomically(Data(lines.utf8), to: outputDir.appendingPathComponent("metrics.jsonl"))
    }
}

/// The size and sha256 of optimizer.safetensors, or the error, sent by the rank that wrote it to every rank in one
/// fixed-size broadcast (rank 0 records it in the manifest without re-reading the file). Wire format, 520 bytes:
/// Int64 little-endian size (-1: failed), 64 bytes of hex sha256, 448 bytes of UTF-8 error text (zero-padded).
final class OptimizerFileReport: @unchecked Sendable {
    static let bytes = 8 + 64 + 448
    let comm: Communicator
    let root: Int
    init(comm: Communicator, root: Int) { self.comm = comm; self.root = root }

    static func send(_ r: Result<(size: Int, sha256: String), Error>, comm: Communicator, root: Int) throws {
        var b = [UInt8](repeating: 0, count: bytes)
        switch r {
        case .success(let ok):
            withUnsafeBytes(of: Int64(ok.size).littleEndian) { for i in 0..<8 { b[i] = $0[i] } }
            for (i, c) in ok.sha256.utf8.prefix(64).enumerated() { b[8 + i] = c }
        case .failure(let e):
            withUnsafeBytes(of: Int64(-1).littleEndian) { for i in 0..<8 { b[i] = $0[i] } }
            for (i, c) in "\(e)".utf8.prefix(448).enumerated() { b[72 + i] = c }
        }
        try comm.broadcast(&b, root: root)
    }

    func receive() throws -> (size: Int, sha256: String) {
        var b = [UInt8](repeating: 0, count: Self.bytes)
        try comm.broadcast(&b, root: root)
        let size = Int(Int64(littleEndian: b[0..<8].withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
        guard size >= 0 else {
            throw TrainingError("rank \(root) could not write the checkpoint's optimizer state: \(String(decoding: b[72...].prefix { $0 != 0 }, as: UTF8.self))")
        }
        return (size, String(decoding: b[8..<72], as: UTF8.self))
    }
}
