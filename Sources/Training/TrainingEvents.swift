// TrainingEvents: what the training loop reports, as typed records, and the consumers that act on them. The loop
// emits `TrainingEvent`s; every consumer answers `.continue` or `.stop`, and the ranks agree (one all-reduce) before
// the loop stops early, so a consumer may decide on one rank only. Best-model tracking and early stopping are such a
// consumer (`BestModelTracker`); the executable's progress display is another (disttrain/Progress.swift).
// Records serialise to exactly the keys and values metrics.jsonl has always had (report.html and tests read them).
// Deliberately not here: when to log, evaluate or save (Trainer), how to print (the executable).
import Foundation
import Tokenizers

/// What the loop reports. `step`, `evaluated` and `stopped` are the records written to metrics.jsonl.
public enum TrainingEvent {
    case started(TrainingSummary)
    case step(StepRecord)
    case evaluated(EvalRecord)
    /// A consumer (early stopping) ended the loop before the last step.
    case stopped(StopRecord)
    case saved(URL)
    case finished(TrainingResult)
    /// Where the loop is: after every optimizer step, and as an evaluation or a save begins (for a progress display;
    /// not a metrics.jsonl record).
    case progress(ProgressRecord)
}

/// The loop's position for a progress display: sent after every optimizer step (`.training`) and when an evaluation
/// or a checkpoint save begins.
public struct ProgressRecord: Sendable, Equatable {
    public enum Phase: String, Sendable, Equatable {
        case training, evaluating, saving
    }

    public var phase: Phase
    /// Optimizer steps done, of `totalSteps`.
    public var step: Int
    public var totalSteps: Int
    public var epoch: Double
    /// Seconds since this run's loop started (a resumed run counts from its resume).
    public var elapsedSeconds: Double
    /// Mean step loss over the steps since the last log record (nil when none yet: at an evaluation or save).
    public var runningLoss: Double?
    /// Real tokens per second (all ranks) over the same steps.
    public var tokensPerSecond: Double?

    public init(phase: Phase, step: Int, totalSteps: Int, epoch: Double, elapsedSeconds: Double,
                runningLoss: Double? = nil, tokensPerSecond: Double? = nil) {
        self.phase = phase; self.step = step; self.totalSteps = totalSteps; self.epoch = epoch
        self.elapsedSeconds = elapsedSeconds; self.runningLoss = runningLoss; self.tokensPerSecond = tokensPerSecond
    }
}

/// A consumer's answer to an event.
public enum LoopControl: Sendable, Equatable {
    case `continue`, stop
}

/// The shape of a run, reported once at the start.
public struct TrainingSummary: Sendable {
    public var trainExamples: Int
    public var evalExamples: Int
    public var labels: [String]
    public var totalSteps: Int
    public var stepsPerEpoch: Int
    public var worldSize: Int
    public var microBatch: Int
    public var accumulationSteps: Int
    /// Trainable parameters (the all-reduced, optimised buffer: everything, or only a LoRA adapter and head).
    public var parameters: Int
    /// Bytes the gradient all-reduce moves per optimizer step (the trainable buffer, padding included).
    public var allReduceBytes: Int
    public var initialized: [String]
    public var truncated: Int
    /// The truncation limit was the model's positions (n_positions), not --max-length: raising it does not help.
    public var truncatedAtPositions: Bool = false
    /// What the resume logic decided (and warnings about skipped checkpoints).
    public var notices: [String]
}

/// One logging window of training steps (a metrics.jsonl line with `loss`).
public struct StepRecord: Sendable, Equatable {
    public var step: Int
    public var epoch: Double
    /// Mean step loss over the window.
    public var loss: Double
    /// Learning rate and gradient norm (before clipping) of the window's last step.
    public var learningRate: Double
    public var gradNorm: Double
    public var tokensPerSecond: Double
    /// Seconds since this run's loop started.
    public var elapsedSeconds: Double
    public var totalSteps: Int
    /// Per step in the window: seconds blocked in the gradient all-reduce, MB moved, and its bus bandwidth (several
    /// ranks only, when the reducer ran in the window).
    public var allReduce: (seconds: Double, megabytes: Double, busGBps: Double)?
    /// Multi-node jobs, per step in the window: seconds in cross-node collectives (part of the all-reduce's) and MB
    /// this rank sent to other nodes.
    public var crossNode: (seconds: Double, megabytes: Double)?
    /// Seconds per step in the AdamW update (and, under ZeRO-1, the barrier that publishes it).
    public var optimizerSeconds: Double
    /// Process start → first optimizer step done (slowest rank); in this run's first record only.
    public var launchToFirstStep: Double?
    /// A background checkpoint that finished since the previous record: seconds and MB/s.
    public var checkpointWrite: (seconds: Double, megabytesPerSecond: Double)?
    /// The task's own training metrics (DPO: rewards/chosen, ... as TRL logs them), averaged over the window.
    public var taskMetrics: [String: Double] = [:]

    public static func == (a: StepRecord, b: StepRecord) -> Bool { a.metrics == b.metrics }

    /// The metrics.jsonl object.
    public var metrics: [String: Double] {
        var m: [String: Double] = ["step": Double(step), "epoch": epoch, "loss": loss, "learning_rate": learningRate,
                                   "grad_norm": gradNorm, "tokens_per_s": tokensPerSecond, "elapsed_s": elapsedSeconds,
                                   "total_steps": Double(totalSteps), "optimizer_s": optimizerSeconds]
        if let a = allReduce {
            m["allreduce_s"] = a.seconds; m["allreduce_mb"] = a.megabytes; m["allreduce_bus_gbps"] = a.busGBps
            // Exposed communication: time the step waited for gradients or parameters to move (every reduction
            // blocks today, so none of it is hidden behind backward; see docs/data-parallel.md).
            m["comm_exposed_s"] = a.seconds
        }
        if let c = crossNode {
            m["cross_node_s"] = c.seconds; m["cross_node_mb"] = c.megabytes
        }
        if let t = launchToFirstStep { m["launch_to_first_step_s"] = t }
        if let c = checkpointWrite { m["checkpoint_write_s"] = c.seconds; m["checkpoint_mb_per_s"] = c.megabytesPerSecond }
        m.merge(taskMetrics) { a, _ in a }
        return m
    }
}

/// One evaluation: the task's metrics (keys `eval_*`: loss, accuracy, F1s, perplexity, ...) at a step.
public struct EvalRecord: Sendable, Equatable {
    public var step: Int
    public var epoch: Double
    /// As the task reports them (which keys depends on the task).
    public var values: [String: Double]
    /// The confusion matrix [true][predicted], for classification.
    public var confusion: [[Int64]]?

    public subscript(_ key: String) -> Double? { values[key] }

    /// The metrics.jsonl object.
    public var metrics: [String: Double] {
        var m = values
        m["step"] = Double(step); m["epoch"] = epoch
        return m
    }
}

/// The loop ended before its last step (early stopping).
public struct StopRecord: Sendable, Equatable {
    public var step: Int
    public var bestStep: Int?
    public var bestMetric: Double?

    /// The metrics.jsonl object.
    public var metrics: [String: Double] {
        ["step": Double(step), "early_stopped": 1, "best_step": Double(bestStep ?? step), "best_metric": bestMetric ?? 0]
    }
}

/// The outcome of `Trainer.run`, identical on every rank.
public struct TrainingResult: Sendable {
    /// The last evaluation's `eval_*` metrics (empty without an eval set).
    public var eval: [String: Double]
    public var confusion: [[Int64]]?
    /// Mean step loss over every step of the run (across resumes).
    public var trainLoss: Double
    public var runtimeSeconds: Double
    public var launchToFirstStep: Double?
    public var tokensPerSecond: Double
    public var trainSamples: Int
    public var globalStep: Int
    public var best: (step: Int, metric: Double)?
    public var epoch: Double
    /// `--load-best-model-at-end`: the step whose checkpoint's model the final folder holds (nil: the last step's).
    public var finalModelStep: Int? = nil

    /// The eval_results.json object (without the confusion matrix).
    public var metrics: [String: Double] {
        var r = eval.filter { $0.key.hasPrefix("eval_") }
        r["train_loss"] = trainLoss
        r["train_runtime_s"] = runtimeSeconds
        if let t = launchToFirstStep { r["launch_to_first_step_s"] = t }
        r["train_tokens_per_s"] = tokensPerSecond
        r["train_samples"] = Double(trainSamples)
        r["global_step"] = Double(globalStep)
        if let b = best { r["best_step"] = Double(b.step); r["best_metric"] = b.metric }
        r["epoch"] = epoch
        if let f = finalModelStep { r["final_model_step"] = Double(f) }
        return r
    }
}

/// Tracks the best evaluation by `metric` (lower is better for `*loss*` and `*perplexity*`; a metric the task does not
/// report falls back to eval_loss) and stops the loop after `patience` evaluations without improvement (0: never).
/// Every rank sees the same all-reduced metrics, so every rank's tracker decides alike.
public struct BestModelTracker: Sendable {
    public let metric: String
    public let patience: Int
    public let totalSteps: Int
    public private(set) var best: (metric: Double, step: Int)?
    /// Evaluations since `best` last improved.
    public private(set) var evalsWithoutImprovement = 0

    public init(metric: String, patience: Int, totalSteps: Int, best: (metric: Double, step: Int)? = nil) {
        self.metric = metric; self.patience = patience; self.totalSteps = totalSteps; self.best = best
    }

    /// Hugging Face's `metric_for_best_model`: a metric the task reports, `eval_` prefixed if it is not (`accuracy`
    /// → `eval_accuracy`); any other name is refused, listing the task's names. nil: the task's default.
    static func metricName(_ name: String?, task: TrainingTask) throws -> String {
        if task is RewardTask {
            guard let name else { return "eval_accuracy" }
            let key = name.hasPrefix("eval_") ? name : "eval_" + name
            guard RewardTask.metricNames.contains(String(key.dropFirst("eval_".count))) else {
                throw TrainingError("--metric-for-best-model \(name) is not a metric of reward modelling; use one of \(RewardTask.metricNames.joined(separator: ", ")) (the eval_ prefix is optional)", exitCode: 2)
            }
            return key
        }
        if let t = task as? QuestionAnsweringTask {   // F1 by default
            guard let name else { return "eval_f1" }
            let key = name.hasPrefix("eval_") ? name : "eval_" + name
            guard t.metricNames.contains(String(key.dropFirst("eval_".count))) else {
                throw TrainingError("--metric-for-best-model \(name) is not a metric of question answering; use one of \(t.metricNames.joined(separator: ", ")) (the eval_ prefix is optional)", exitCode: 2)
            }
            return key
        }
        if let t = task as? TokenClassificationTask {   // entity F1 by default, as run_ner
            guard let name else { return "eval_f1" }
            let key = name.hasPrefix("eval_") ? name : "eval_" + name
            let valid = ["f1", "precision", "recall", "accuracy", "loss"] + t.typeNames.flatMap { ["\($0)_f1", "\($0)_precision", "\($0)_recall"] }
            guard valid.contains(String(key.dropFirst("eval_".count))) else {
                throw TrainingError("--metric-for-best-model \(name) is not a metric of token classification; use one of \(valid.joined(separator: ", ")) (the eval_ prefix is optional)", exitCode: 2)
            }
            return key
        }
        let classification = task is ClassificationTask
        guard let name else { return classification ? "eval_accuracy" : "eval_loss" }
        let key = name.hasPrefix("eval_") ? name : "eval_" + name
        let valid = classification
            ? ["accuracy", "loss", "macro_f1", "weighted_f1"] + task.labels.flatMap { ["f1_\($0)", "precision_\($0)", "recall_\($0)"] }
            : task is DPOTask ? ["loss", "rewards/accuracies", "rewards/margins"] : ["loss", "perplexity"]
        guard valid.contains(String(key.dropFirst("eval_".count))) else {
            throw TrainingError("--metric-for-best-model \(name) is not a metric of \(classification ? "sequence classification" : task is DPOTask ? "DPO" : "causal language modelling"); use one of \(valid.joined(separator: ", ")) (the eval_ prefix is optional)", exitCode: 2)
        }
        return key
    }

    public mutating func observe(_ event: TrainingEvent) -> LoopControl {
        guard case .evaluated(let e) = event else { return .continue }
        let key = e[metric] != nil ? metric : "eval_loss"
        if let v = e[key] {
            let lowerIsBetter = key.contains("loss") || key.contains("perplexity")
            if let b = best, !(lowerIsBetter ? v < b.metric : v > b.metric) {
                evalsWithoutImprovement += 1
            } else {
                best = (v, e.step)
                evalsWithoutImprovement = 0
            }
        }
        return patience > 0 && evalsWithoutImprovement >= patience && e.step < totalSteps ? .stop : .continue
    }
}

/// One JSON object per line with sorted keys; integral values print without a fraction (`JSONLines.objectLine`,
/// named here so that the CLI needs only Training).
public func jsonObjectLine(_ m: [String: Double], appending raw: [(key: String, json: String)] = []) -> String {
    JSONLines.objectLine(m, appending: raw)
}
