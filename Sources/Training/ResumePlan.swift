// ResumePlan: which checkpoint a run continues from and what it restores. `--resume auto` takes the newest checkpoint
// whose manifest verifies (warning about each newer one that does not), a folder must verify; the checkpoint's state
// is read and checked against this run (global batch, data, labels), and each changed hyperparameter is named in a
// warning. The plan restores the AdamW moments and the run's history.
// Deliberately not here: loading the weights (a checkpoint folder is itself a model folder: TaskFactory), writing
// checkpoints (CheckpointSaver), the data order (GlobalBatchPlan, which depends on nothing a resume changes).
import Foundation
import Model

struct ResumePlan {
    let ref: CheckpointRef
    let state: TrainerState

    /// The checkpoint `config.resume` selects, if any, and what to tell the user about the decision.
    static func decide(config: TrainConfig, worldSize: Int) throws -> (plan: ResumePlan?, notices: [String]) {
        var notes: [String] = []
        var resumeRef: CheckpointRef?
        switch config.resume {
        case .never: break
        case .path(let url):
            if let problem = Checkpoint.verify(url) {
                throw TrainingError("--resume \(url.path): \(problem); pick another checkpoint or use --resume auto")
            }
            let name = url.lastPathComponent
            resumeRef = CheckpointRef(url: url, step: Int(name.dropFirst("checkpoint-".count)) ?? 0)
        case .auto:
            resumeRef = Checkpoint.newestValid(in: config.outputDir) { notes.append("warning: \($0)") }
        }
        guard let ref = resumeRef else { return (nil, notes) }
        let state = try Checkpoint.readState(ref.url)
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
