// MetricsWindow: the running sums between two log records (loss, tokens, optimizer time, the reducer's counters) and
// the step record they make; and the whole run's totals (train_loss over every step, across resumes).
// Deliberately not here: when to log (Trainer), printing (the executable), writing metrics.jsonl (CheckpointSaver).
import Dist
import Foundation

struct MetricsWindow {
    private var loss = 0.0, steps = 0, tokens: Int64 = 0
    /// Seconds in the AdamW step this window (optimizer_s in metrics.jsonl).
    private var optimizerSeconds = 0.0
    private var start = Date()
    private var reduce: GradientReducer.Stats
    private var loggedStartup = false
    /// The task's step metrics summed over the window (averaged in the record, as TRL averages its logged metrics).
    private var taskMetrics: [String: Double] = [:]

    init(reducerStats: GradientReducer.Stats) { reduce = reducerStats }

    mutating func add(_ r: StepResult) {
        loss += r.loss; steps += 1; tokens += Int64(r.tokens)
        optimizerSeconds += r.optimizerSeconds
        for (k, v) in r.taskMetrics { taskMetrics[k, default: 0] += v }
    }

    /// Runs `work` (an evaluation between two steps) with its time left out of the window's token rate, so the rate
    /// logged after an evaluation is the training rate, not one diluted by the evaluation.
    mutating func excluding<R>(_ work: () throws -> R) rethrows -> R {
        let t0 = Date()
        defer { start += Date().timeIntervalSince(t0) }
        return try work()
    }

    /// The loop's position after optimizer step `step` (1-based): the window's mean loss and token rate so far.
    func progress(step: Int, totalSteps: Int, epoch: Double, elapsed: Double) -> ProgressRecord {
        let dt = Date().timeIntervalSince(start)
        return ProgressRecord(phase: .training, step: step, totalSteps: totalSteps, epoch: epoch, elapsedSeconds: elapsed,
                              runningLoss: steps > 0 ? loss / Double(steps) : nil,
                              tokensPerSecond: steps > 0 && dt > 0 ? Double(tokens) / dt : nil)
    }

    /// The record of the window ending with `last` at `step` (1-based), and a fresh window.
    /// `launchToFirstStep` goes into this run's first record only; `checkpoint` is a background save that finished.
    mutating func record(step: Int, epoch: Double, totalSteps: Int, lr: Double, last: StepResult, elapsed: Double,
                         worldSize world: Int, reducerStats red: GradientReducer.Stats, launchToFirstStep: Double?,
                         checkpoint: (seconds: Double, bytes: Int)?) -> StepRecord {
        let dt = Date().timeIntervalSince(start)
        var rec = StepRecord(step: step, epoch: epoch, loss: loss / Double(steps), learningRate: lr, gradNorm: last.gradNorm,
                             tokensPerSecond: Double(tokens) / max(dt, 1e-9), elapsedSeconds: elapsed, totalSteps: totalSteps,
                             optimizerSeconds: optimizerSeconds / Double(max(steps, 1)))
        if world > 1, red.steps > reduce.steps {
            // The all-reduce's share of the window: seconds per step blocked in it, and its bus bandwidth.
            let secs = red.seconds - reduce.seconds, n = Double(red.steps - reduce.steps)
            let bytes = Double(red.bytes - reduce.bytes)
            rec.allReduce = (secs / n, bytes / n / 1e6, secs > 0 ? bytes * 2 * Double(world - 1) / Double(world) / secs / 1e9 : 0)
            if red.crossNodeBytes > reduce.crossNodeBytes {
                rec.crossNode = ((red.crossNodeSeconds - reduce.crossNodeSeconds) / n, Double(red.crossNodeBytes - reduce.crossNodeBytes) / n / 1e6)
            }
        }
        rec.taskMetrics = taskMetrics.mapValues { $0 / Double(max(steps, 1)) }
        taskMetrics = [:]
        reduce = red
        if !loggedStartup, let t = launchToFirstStep {
            rec.launchToFirstStep = t
            loggedStartup = true
        }
        if let cs = checkpoint {
            // A background checkpoint finished since the last log line: its cost, for the user and the note.
            rec.checkpointWrite = (cs.seconds, Double(cs.bytes) / 1e6 / max(cs.seconds, 1e-9))
        }
        loss = 0; steps = 0; tokens = 0; optimizerSeconds = 0; start = Date()
        return rec
    }
}
