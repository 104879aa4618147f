// Checkpoint: crash-consistent training state on disk, and the choice of what to resume from.
// A checkpoint folder is also a usable Hugging Face model folder (config.json, model.safetensors, tokenizer files),
// plus optimizer.safetensors (AdamW moments, same names as the parameters under "exp_avg/" and "exp_avg_sq/"),
// trainer_state.json (step, epoch, global sample cursor, schedule, seed, world size and global batch at save time,
// data fingerprint, hyperparameters, trainer version) and manifest.json (every file's size and sha256), written last.
// Commit protocol: write into checkpoint-STEP.partial/, fsync every file and the folder, write the manifest, fsync,
// rename to checkpoint-STEP/, fsync the parent, then atomically replace the `latest` pointer file. A folder without a
// verifying manifest is never resumed from.
// Deliberately not here: when to save (the Trainer decides), how the ranks produce one checkpoint (the ZeRO gather,
// the split save, the snapshot: CheckpointSaver.swift), the background thread (CheckpointWriter below only
// serialises one snapshot at a time).
import Crypto
import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

public let trainerVersion = "disttrain 0.1.0"

/// Everything besides tensors that a resume needs; JSON-encoded as trainer_state.json.
public struct TrainerState: Codable, Sendable, Equatable {
    public var formatVersion = 1
    public var trainerVersion: String = disttrainVersion
    /// Optimizer steps completed.
    public var globalStep: Int
    public var epoch: Double
    /// Samples consumed since the start: globalStep × globalBatch, minus what short epoch-final batches did not take.
    public var sampleCursor: Int
    public var adamStep: Int
    public var seed: UInt64
    public var worldSize: Int
    public var globalBatch: Int
    public var totalSteps: Int
    public var schedule: LRSchedule
    public var dataFingerprint: String
    public var modelFingerprint: String
    /// Hyperparameters in a stable text form; compared on resume.
    public var hyperparameters: [String: String]
    public var labels: [String]
    public var bestMetric: Double?
    public var bestStep: Int?
    public var logHistory: [[String: Double]]
    /// Sum of every step's loss so far (for the whole run's train_loss after a resume).
    public var trainLossSum: Double? = nil
    /// Identifies the run (a fresh start makes one; a resume keeps it), so `--resume auto` never continues another
    /// run's checkpoint left in the same folder. Absent in checkpoints of older versions.
    public var runId: String? = nil
    /// sha256 of the base model's config.json and the `--model` it was given (with `modelFingerprint`, the weights'
    /// sha256: the model's identity, checked on resume).
    public var modelConfigFingerprint: String? = nil
    public var modelPath: String? = nil
    /// The metric `bestMetric` is a value of (`--metric-for-best-model`, e.g. "eval_loss"); absent in older checkpoints.
    public var bestMetricName: String? = nil
}

let disttrainVersion = trainerVersion

/// A checkpoint found on disk.
public struct CheckpointRef: Sendable, Equatable {
    public let url: URL
    public let step: Int
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}

public enum Checkpoint {
    static let manifestName = "manifest.json"
    static let stateName = "trainer_state.json"
    static let optimizerName = "optimizer.safetensors"

    /// sha256 of a file, streamed in 4 MiB reads.
    public static func sha256(of url: URL) throws -> String {
        guard let h = FileHandle(forReadingAtPath: url.path) else { throw CheckpointError("\(url.path): cannot open for hashing") }
        defer { try? h.close() }
        var hasher = SHA256()
        while true {
            let chunk = h.readData(ofLength: 4 << 20)
            if chunk.isEmpty { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func fsyncFile(_ url: URL) {
        let fd = open(url.path, O_RDONLY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }

    /// Writes a complete checkpoint for `state` into `outputDir/checkpoint-STEP` with the commit protocol.
    /// `writeModel` writes the model files (config, weights, tokenizer) into the folder it is given.
    /// `hook` is called with the name of each phase boundary ("model-written", "optimizer-written",
    /// "before-manifest", "before-rename", "before-latest") so tests can kill the process exactly there.
    /// Where the optimizer state comes from: tensors this process writes, or a file another rank of the same node
    /// writes into the partial folder at the same time (`writeOptimizerFile`); the closure waits for it and returns
    /// its size and sha256, which the manifest records without re-reading it.
    public enum OptimizerFile {
        case tensors([TensorToWrite])
        case writtenElsewhere(() throws -> (size: Int, sha256: String))
    }

    /// The folder a checkpoint of `step` is written into before the commit renames it.
    public static func partialFolder(outputDir: URL, step: Int) -> URL {
        outputDir.appendingPathComponent("checkpoint-\(step).partial")
    }

    /// A fresh, empty partial folder (anything left by an interrupted save is removed).
    public static func preparePartialFolder(outputDir: URL, step: Int) throws {
        let partial = partialFolder(outputDir: outputDir, step: step)
        try? FileManager.default.removeItem(at: partial)
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
    }

    /// Writes optimizer.safetensors into `partial`, fsyncs it and returns its size and sha256 (for the rank that
    /// writes the optimizer state while rank 0 writes the model: `OptimizerFile.writtenElsewhere`).
    public static func writeOptimizerFile(_ tensors: [TensorToWrite], into partial: URL) throws -> (size: Int, sha256: String) {
        let u = partial.appendingPathComponent(optimizerName)
        try SafeTensorsWriter.write(tensors, to: u)  // fsynced by the writer
        let size = (try FileManager.default.attributesOfItem(atPath: u.path)[.size] as? NSNumber)?.intValue ?? -1
        return (size, try sha256(of: u))
    }

    /// The optimizer file's tensors (`exp_avg/NAME`, `exp_avg_sq/NAME` per entry) as views into the moments.
    public static func optimizerTensors(_ entries: [ParameterEntry], m: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>) -> [TensorToWrite] {
        entries.flatMap { e in
            [TensorToWrite(name: "exp_avg/" + e.name, shape: e.shape, floats: UnsafeBufferPointer(rebasing: m[e.range])),
             TensorToWrite(name: "exp_avg_sq/" + e.name, shape: e.shape, floats: UnsafeBufferPointer(rebasing: v[e.range]))]
        }
    }

    /// - Parameter partialPrepared: `preparePartialFolder` was already called (another rank may be writing into it).
    public static func commit(outputDir: URL, state: TrainerState, optimizer: OptimizerFile, partialPrepared: Bool = false,
                              hook: (String) -> Void = { _ in },
                              writeModel: (URL) throws -> Void) throws -> URL {
        let fm = FileManager.default
        let name = "checkpoint-\(state.globalStep)"
        let final = outputDir.appendingPathComponent(name)
        let partial = partialFolder(outputDir: outputDir, step: state.globalStep)
        if !partialPrepared { try preparePartialFolder(outputDir: outputDir, step: state.globalStep) }
        try writeModel(partial)
        hook("model-written")
        var known: [String: (size: Int, sha256: String)] = [:]
        switch optimizer {
        case .tensors(let t):
            try SafeTensorsWriter.write(t, to: partial.appendingPathComponent(optimizerName))
        case .writtenElsewhere(let wait):
            let got = try wait()
            let u = partial.appendingPathComponent(optimizerName)
            let size = (try? fm.attributesOfItem(atPath: u.path)[.size] as? NSNumber)?.intValue ?? -1
            guard got.size >= 0, size == got.size else {
                throw CheckpointError("\(u.path): the optimizer state written by another rank is missing or incomplete (\(size) of \(got.size) bytes)")
            }
            known[optimizerName] = got
        }
        hook("optimizer-written")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileIO.writeAtomically(try enc.encode(state), to: partial.appendingPathComponent(stateName))
        // Manifest last: sizes and hashes of everything else.
        var files: [String: [String: Any]] = [:]
        for f in try fm.contentsOfDirectory(atPath: partial.path).sorted() where f != manifestName && !f.hasPrefix(".") {
            if let k = known[f] { files[f] = ["size": k.size, "sha256": k.sha256]; continue }  // fsynced by its writer
            let u = partial.appendingPathComponent(f)
            fsyncFile(u)
            let size = (try fm.attributesOfItem(atPath: u.path)[.size] as? NSNumber)?.intValue ?? -1
            files[f] = ["size": size, "sha256": try sha256(of: u)]
        }
        hook("before-manifest")
        let manifest: [String: Any] = ["format": "disttrain-checkpoint", "version": 1, "step": state.globalStep, "files": files]
        let data = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
        try FileIO.writeAtomically(data, to: partial.appendingPathComponent(manifestName))
        FileIO.fsyncDirectory(partial)
        hook("before-rename")
        if fm.fileExists(atPath: final.path) { try fm.removeItem(at: final) }
        guard rename(partial.path, final.path) == 0 else {
            throw CheckpointError("\(final.path): rename failed: \(String(cString: strerror(errno)))")
        }
        FileIO.fsyncDirectory(outputDir)
        hook("before-latest")
        try FileIO.writeAtomically(Data((name + "\n").utf8), to: outputDir.appendingPathComponent("latest"))
        return final
    }

    /// Publishes the model files of a committed checkpoint (everything but the optimizer state, trainer state and
    /// manifest) in `dir` as hard links, so a final model identical to the last checkpoint is not written twice;
    /// a copy where links are impossible. Each file appears atomically (link or copy to a temporary name, rename).
    /// Safe because committed files are never modified in place, only replaced or deleted (a link keeps its data).
    public static func publishModel(from checkpoint: URL, to dir: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        for f in try fm.contentsOfDirectory(atPath: checkpoint.path).sorted()
        where ![manifestName, stateName, optimizerName].contains(f) && !f.hasPrefix(".") {
            let src = checkpoint.appendingPathComponent(f), dst = dir.appendingPathComponent(f)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: src.path, isDirectory: &isDir), !isDir.boolValue else { continue }
            let tmp = dir.appendingPathComponent(".\(f).publish-tmp")
            try? fm.removeItem(at: tmp)
            if link(src.path, tmp.path) != 0 { try fm.copyItem(at: src, to: tmp); fsyncFile(tmp) }
            guard rename(tmp.path, dst.path) == 0 else {
                throw CheckpointError("\(dst.path): rename failed: \(String(cString: strerror(errno)))")
            }
            // rename(2) does nothing when both names are links to the same file (a rerun publishing again): the
            // temporary name would stay behind.
            if fm.fileExists(atPath: tmp.path) { unlink(tmp.path) }
        }
        FileIO.fsyncDirectory(dir)
    }

    /// Checks every file named in the manifest (size and sha256). Returns nil when valid, else the reason.
    public static func verify(_ dir: URL) -> String? {
        let m = dir.appendingPathComponent(manifestName)
        guard let data = try? Data(contentsOf: m),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let files = obj["files"] as? [String: [String: Any]] else {
            return "no readable manifest.json (the save did not complete)"
        }
        if files[stateName] == nil { return "manifest does not list \(stateName)" }
        if files["model.safetensors"] == nil && files[PEFTAdapter.weightsFileName] == nil {
            return "manifest lists neither model.safetensors nor \(PEFTAdapter.weightsFileName)"
        }
        for (name, info) in files.sorted(by: { $0.key < $1.key }) {
            let u = dir.appendingPathComponent(name)
            guard let size = (try? FileManager.default.attributesOfItem(atPath: u.path)[.size] as? NSNumber)?.intValue else {
                return "\(name) is missing"
            }
            if size != (info["size"] as? Int) { return "\(name) has \(size) bytes, the manifest says \(info["size"] ?? "?")" }
            guard let hash = try? sha256(of: u), hash == info["sha256"] as? String else {
                return "\(name) does not match its sha256 in the manifest (corrupt)"
            }
        }
        return nil
    }

    /// Complete checkpoint folders in `outputDir`, newest first (".partial" folders are ignored).
    public static func list(_ outputDir: URL) -> [CheckpointRef] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir.path)) ?? []
        return names.compactMap { n -> CheckpointRef? in
            guard n.hasPrefix("checkpoint-"), !n.hasSuffix(".partial"), let s = Int(n.dropFirst("checkpoint-".count)) else { return nil }
            return CheckpointRef(url: outputDir.appendingPathComponent(n), step: s)
        }.sorted { $0.step > $1.step }
    }

    public static func readState(_ dir: URL) throws -> TrainerState {
        let u = dir.appendingPathComponent(stateName)
        do { return try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: u)) } catch {
            throw CheckpointError("\(u.path): cannot read trainer state (\(error)); the checkpoint is corrupt")
        }
    }

    /// `--save-total-limit` (Hugging Face semantics): keeps at most `keep` checkpoints, the best (`protect`) among
    /// them: it takes the place of the newest but one, so the newest (the one a resume needs) always stays. With
    /// `keep` 1 and a best that is not the newest, both stay (as in transformers).
    public static func rotate(_ outputDir: URL, keep: Int, protect: Int?) {
        guard keep > 0 else { return }
        var order = list(outputDir)
        guard let newest = order.first else { return }
        if let p = protect, let i = order.firstIndex(where: { $0.step == p }), i > 0 {
            let best = order.remove(at: i)
            order.insert(best, at: 1)
        }
        let limit = keep == 1 && protect != nil && protect != newest.step ? 2 : keep
        for ref in order.dropFirst(limit) {
            try? FileManager.default.removeItem(at: ref.url)
        }
    }

    /// `--resume auto`: the run that `latest` names (else the run of the newest checkpoint whose state reads), and
    /// that run's newest checkpoint whose manifest verifies. A checkpoint newer than `latest` (a crash between the
    /// rename and the pointer update) is taken; `warn` hears about every newer one that does not verify and about
    /// checkpoints another run left in the folder.
    public static func newestValidOfLatestRun(in outputDir: URL, warn: (String) -> Void) -> CheckpointRef? {
        let all = list(outputDir)
        // "" for a checkpoint of an older version (no run id); nil when the state does not read.
        func runId(_ r: CheckpointRef) -> String? { (try? readState(r.url)).map { $0.runId ?? "" } }
        var run: String?
        if let name = try? String(contentsOf: outputDir.appendingPathComponent("latest"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), let r = all.first(where: { $0.url.lastPathComponent == name }) {
            run = runId(r)
        }
        if run == nil { run = all.lazy.compactMap(runId).first }
        for ref in all {
            if let run, let id = runId(ref), id != run {
                warn("skipping \(ref.url.lastPathComponent): written by another run than \(outputDir.appendingPathComponent("latest").path) names")
                continue
            }
            if let problem = verify(ref.url) {
                warn("skipping \(ref.url.lastPathComponent): \(problem)")
                continue
            }
            return ref
        }
        return nil
    }
}

/// Writes checkpoints on a background thread, at most one in flight. `submit` waits for the previous save first.
public final class CheckpointWriter: @unchecked Sendable {
    private let lock = NSCondition()
    private var busy = false
    private var lastError: Error?
    public private(set) var lastSaved: URL?
    /// Seconds and bytes of finished background saves not yet collected by `takeStats()`.
    private var pendingStats: (seconds: Double, bytes: Int)?

    public init() {}

    /// Runs `work` on a background thread once the previous save has finished. Errors surface at the next
    /// `submit` or `wait`.
    public func submit(_ work: @escaping @Sendable () throws -> URL) throws {
        try wait()
        lock.lock(); busy = true; lock.unlock()
        let t = Thread { [self] in
            var err: Error?
            var url: URL?
            let start = Date()
            do { url = try work() } catch { err = error }
            let seconds = Date().timeIntervalSince(start)
            let bytes = url.map(CheckpointWriter.folderBytes) ?? 0
            lock.lock()
            busy = false
            if let err { lastError = err }
            if let url { lastSaved = url; pendingStats = (seconds, bytes) }
            lock.broadcast()
            lock.unlock()
        }
        t.stackSize = 1 << 20
        t.start()
    }

    /// The duration and size of the last finished background save, once (nil if none finished since).
    public func takeStats() -> (seconds: Double, bytes: Int)? {
        lock.lock(); defer { lock.unlock() }
        let s = pendingStats
        pendingStats = nil
        return s
    }

    static func folderBytes(_ url: URL) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return names.reduce(0) { acc, n in
            acc + ((try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(n).path)[.size] as? NSNumber)?.intValue ?? 0)
        }
    }

    /// Blocks until no save is in flight; rethrows a save's error once.
    public func wait() throws {
        lock.lock()
        while busy { lock.wait() }
        let e = lastError
        lastError = nil
        lock.unlock()
        if let e { throw e }
    }
}
