// ResumePlan: what an output folder holds and which checkpoint a run continues from. The output folder follows
// Hugging Face semantics (docs/run-folders.md): a folder holding anything but leftovers of an interrupted save is
// refused unless this run continues it (`--resume auto` finds a checkpoint of it, or `--resume CHECKPOINT`) or
// `--overwrite-output-dir` clears it first (only files disttrain writes; anything else is named and nothing is
// removed). `--resume auto` follows `latest` to the run that wrote it, then takes that run's newest checkpoint whose
// manifest verifies (warning about each newer one that does not). The checkpoint's state is read and checked against
// this run (model identity, global batch, data, labels), and each changed hyperparameter is named in a warning. The
// plan restores the AdamW moments and the run's history.
// Deliberately not here: loading the weights (a checkpoint folder is itself a model folder: TaskFactory), writing
// checkpoints (CheckpointSaver), the data order (GlobalBatchPlan, which depends on nothing a resume changes), whether
// the run is already finished or past its end (Trainer: that needs the data's step count).
import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

struct ResumePlan {
    let ref: CheckpointRef
    let state: TrainerState

    /// The checkpoint `config.resume` selects, if any, and what to tell the user about the decision. Refuses an
    /// output folder this run may not write into. Clears it for `--overwrite-output-dir` on the root rank only (the
    /// other ranks only read, and with that flag they read nothing of it).
    static func decide(config: TrainConfig, worldSize: Int, isRoot: Bool = true) throws -> (plan: ResumePlan?, notices: [String]) {
        var notes: [String] = []
        try checkInputs(config)
        let folder = try OutputFolder.check(config)
        if case .path(let url) = config.resume, !FileManager.default.fileExists(atPath: url.path) {
            throw TrainingError("--resume \(url.path): no such checkpoint folder; give a checkpoint-N folder, or --resume auto", exitCode: 2)
        }
        var resumeRef: CheckpointRef?
        if config.overwriteOutputDir {
            if case .path(let url) = config.resume, OutputFolder.isInside(url, config.outputDir) {
                throw TrainingError("--overwrite-output-dir would delete the checkpoint --resume \(url.path) names; copy it elsewhere first, or drop one of the two flags", exitCode: 2)
            }
            if isRoot, try folder.clear() {
                notes.append("--overwrite-output-dir: deleted what an earlier run wrote in \(config.outputDir.path) (\(folder.entries.count) entr\(folder.entries.count == 1 ? "y" : "ies"))")
            }
        }
        switch config.resume {
        case .never:
            if !config.overwriteOutputDir, let what = folder.summary {
                throw TrainingError("--output-dir \(config.outputDir.path) already holds \(what) and --resume never was given; pass --overwrite-output-dir to delete it and start over, or use another --output-dir", exitCode: 2)
            }
        case .path(let url):
            if let problem = Checkpoint.verify(url) {
                throw TrainingError("--resume \(url.path): \(problem); pick another checkpoint or use --resume auto")
            }
            if !config.overwriteOutputDir, !OutputFolder.isInside(url, config.outputDir), let what = folder.summary {
                throw TrainingError("--output-dir \(config.outputDir.path) already holds \(what), not of the run of --resume \(url.path); use an empty --output-dir, or --overwrite-output-dir to delete it first", exitCode: 2)
            }
            let name = url.lastPathComponent
            resumeRef = CheckpointRef(url: url, step: Int(name.dropFirst("checkpoint-".count)) ?? 0)
        case .auto:
            if config.overwriteOutputDir { break }
            resumeRef = Checkpoint.newestValidOfLatestRun(in: config.outputDir) { notes.append("warning: \($0)") }
            if resumeRef == nil, let what = folder.summary {
                throw TrainingError("--output-dir \(config.outputDir.path) already holds \(what) but no checkpoint to resume from; pass --overwrite-output-dir to delete it and start over, or use another --output-dir", exitCode: 2)
            }
        }
        guard let ref = resumeRef else { return (nil, notes) }
        let state = try Checkpoint.readState(ref.url)
        try checkModel(state, ref: ref, config: config)
        if state.globalBatch != config.batchSize && !config.ignoreResumeMismatch {
            throw TrainingError("\(ref.url.path): the checkpoint used --batch-size \(state.globalBatch), this run \(config.batchSize); the global batch must stay the same to continue the same sample order (or pass --resume-ignore-mismatch)")
        }
        notes.append("resuming from \(ref.url.lastPathComponent) (step \(state.globalStep), saved with \(state.worldSize) rank(s), now \(worldSize))")
        // Changing a hyperparameter on resume is allowed (e.g. a lower learning rate), but never silent.
        let now = config.hyperparameterSummary
        let changed = state.hyperparameters.keys.sorted().filter { k in now[k] != nil && now[k] != state.hyperparameters[k] }
        if !changed.isEmpty {
            notes.append("warning: resuming with other settings than \(ref.url.lastPathComponent) was trained with: "
                         + changed.map { "\($0) \(state.hyperparameters[$0] ?? "") -> \(now[$0] ?? "")" }.joined(separator: ", "))
        }
        return (ResumePlan(ref: ref, state: state), notes)
    }

    /// The data and labels of this run must be those the checkpoint was trained on.
    func check(_ task: TrainingTask, ignoreMismatch: Bool) throws {
        if state.dataFingerprint != task.dataFingerprint && !ignoreMismatch {
            throw TrainingError("\(ref.url.path): the checkpoint was trained on different data (fingerprint \(state.dataFingerprint.prefix(12)) vs \(task.dataFingerprint.prefix(12))); use the same --train-file, a new --output-dir, or --resume-ignore-mismatch")
        }
        if state.labels != task.labels {
            throw TrainingError("\(ref.url.path): the checkpoint's labels \(state.labels) differ from the data's \(task.labels); use a new --output-dir")
        }
    }

    /// Loads the checkpoint's AdamW moments (every entry of `store`, by name) and step count into `optimizer`.
    func restore(_ optimizer: AdamW, store: ParameterStore) throws {
        let opt = try SafeTensorsFile(url: ref.url.appendingPathComponent(Checkpoint.optimizerName))
        var m = [Float](repeating: 0, count: store.count), v = m
        for e in store.entries {
            try m.withUnsafeMutableBufferPointer { try opt.copyFloats("exp_avg/" + e.name, into: UnsafeMutableBufferPointer(rebasing: $0[e.range])) }
            try v.withUnsafeMutableBufferPointer { try opt.copyFloats("exp_avg_sq/" + e.name, into: UnsafeMutableBufferPointer(rebasing: $0[e.range])) }
        }
        optimizer.restore(m: m, v: v, stepCount: state.adamStep)
    }

    /// The best evaluation the checkpoint recorded.
    var best: (metric: Double, step: Int)? {
        guard let m = state.bestMetric, let s = state.bestStep else { return nil }
        return (m, s)
    }
}

extension ResumePlan {
    /// Input paths a user can get wrong, found before anything is loaded. A missing --train-file or --eval-file
    /// exits 2, as a missing --model does (a usage error: the path given is wrong; docs/run-folders.md).
    static func checkInputs(_ config: TrainConfig) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: config.modelDir.path, isDirectory: &isDir), !isDir.boolValue {
            throw TrainingError("--model \(config.modelDir.path) is a file; pass the model folder that holds it (\(config.modelDir.deletingLastPathComponent().path))", exitCode: 2)
        }
        for (flag, url) in [("--train-file", config.trainFile), ("--eval-file", config.evalFile)] {
            guard let url, url.relativePath != "-", !fm.fileExists(atPath: url.path) else { continue }
            throw TrainingError("\(flag) \(url.relativePath) does not exist; check the path", exitCode: 2)
        }
    }

    /// A checkpoint continues the model it was trained from: a different `--model` (its config.json or
    /// model.safetensors differs from the sha256 the checkpoint recorded) is refused, naming both. A checkpoint
    /// without the record (older disttrain) or a model folder without the files (reported later) is not checked.
    static func checkModel(_ state: TrainerState, ref: CheckpointRef, config: TrainConfig) throws {
        let dir = config.modelDir
        var differs: String?
        if let want = state.modelConfigFingerprint,
           let now = try? Checkpoint.sha256(of: config.modelConfigFile), now != want {
            differs = "config.json"
        } else if !state.modelFingerprint.isEmpty,
                  let now = try? Checkpoint.sha256(of: dir.appendingPathComponent("model.safetensors")), now != state.modelFingerprint {
            differs = "model.safetensors"
        }
        guard let what = differs else { return }
        let was = state.modelPath ?? "another model (weights sha256 \(state.modelFingerprint.prefix(12)))"
        throw TrainingError("\(ref.url.path) was trained from --model \(was), but --model \(dir.path) is another model (its \(what) differs); pass --model \(was) to continue that run, or give a new --output-dir (or --overwrite-output-dir) to train \(dir.path)", exitCode: 2)
    }
}

/// The output folder of a run, as found at start-up: what it holds besides leftovers of an interrupted save
/// (`checkpoint-N.partial` folders and hidden temporary files, which a run may always write over).
struct OutputFolder {
    let url: URL
    let entries: [String]

    /// Refuses an output folder that is a file, or that is (or contains) the `--model` folder.
    static func check(_ config: TrainConfig) throws -> OutputFolder {
        let fm = FileManager.default, out = config.outputDir
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: out.path, isDirectory: &isDir), !isDir.boolValue {
            throw TrainingError("--output-dir \(out.path) is a file, not a folder; give a folder path (it is created if missing)", exitCode: 2)
        }
        if isInside(config.modelDir, out) {
            let what = canonical(config.modelDir) == canonical(out) ? "is the --model folder" : "contains the --model folder \(config.modelDir.path)"
            throw TrainingError("--output-dir \(out.path) \(what): training would overwrite the pre-trained model; give another --output-dir", exitCode: 2)
        }
        let names = (try? fm.contentsOfDirectory(atPath: out.path)) ?? []
        return OutputFolder(url: out, entries: names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".partial") }.sorted())
    }

    /// What the folder holds, for a message (nil: nothing that matters).
    var summary: String? {
        guard !entries.isEmpty else { return nil }
        let checkpoints = entries.filter { Self.isCheckpoint($0) }.count
        let shown = entries.prefix(4).joined(separator: ", ") + (entries.count > 4 ? ", … (\(entries.count) entries)" : "")
        return checkpoints > 0 ? "\(checkpoints) checkpoint\(checkpoints == 1 ? "" : "s") of an earlier run (\(shown))" : "files (\(shown))"
    }

    /// Names disttrain writes into an output folder (besides `checkpoint-N` folders and hidden temporary files).
    static let written: Set<String> = Set(["latest", "metrics.jsonl", "eval_results.json", "report.html", "config.json",
                                           "model.safetensors", PEFTAdapter.configFileName, PEFTAdapter.weightsFileName,
                                           DPOTask.cacheFileName, GRPOTask.samplesFileName]
                                          + FileIO.companionFiles)

    static func isCheckpoint(_ name: String) -> Bool {
        let rest = name.hasSuffix(".partial") ? name.dropLast(".partial".count) : Substring(name)
        return rest.hasPrefix("checkpoint-") && Int(rest.dropFirst("checkpoint-".count)) != nil
    }

    /// `--overwrite-output-dir`: empties the folder, all or nothing. Anything disttrain does not write is named and
    /// nothing is deleted; otherwise the folder is renamed away in one step (so it is never seen half-cleared), an
    /// empty one takes its place, and the renamed one is deleted.
    /// Returns whether there was anything to delete.
    func clear() throws -> Bool {
        let fm = FileManager.default
        let all = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
        guard !all.isEmpty else { return false }
        let foreign = all.filter { !(Self.written.contains($0) || Self.isCheckpoint($0) || ($0.hasPrefix(".") && $0.hasSuffix(".publish-tmp"))) }.sorted()
        if !foreign.isEmpty {
            throw TrainingError("--overwrite-output-dir: \(url.path) also holds files disttrain did not write (\(foreign.prefix(4).joined(separator: ", "))\(foreign.count > 4 ? ", …" : "")); nothing was deleted: move them away or give another --output-dir", exitCode: 2)
        }
        let trash = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).overwritten-\(getpid())")
        guard rename(url.path, trash.path) == 0 else {
            throw TrainingError("--overwrite-output-dir: cannot move \(url.path) aside (\(String(cString: strerror(errno)))); nothing was deleted", exitCode: 1)
        }
        try fm.createDirectory(at: url, withIntermediateDirectories: true)
        try? fm.removeItem(at: trash)
        return true
    }

    static func canonical(_ u: URL) -> [String] { u.standardizedFileURL.resolvingSymlinksInPath().pathComponents }

    /// Whether `inner` is `outer` or lies inside it (symbolic links resolved).
    static func isInside(_ inner: URL, _ outer: URL) -> Bool {
        let i = canonical(inner), o = canonical(outer)
        return i.count >= o.count && Array(i.prefix(o.count)) == o
    }
}
