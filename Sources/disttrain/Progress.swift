// Progress: what rank 0 shows while training. On a terminal (isatty(stderr)) one progress line redrawn in place after
// every optimizer step (steps done/total, epoch, running loss, tokens/s, elapsed, ETA, and "evaluating…"/"saving…"
// while those run), at most 10 times a second, with other messages printed above it; otherwise (CI, SLURM logs) plain
// timestamped lines: one per logging step, and one as each evaluation begins. Messages go through swift-log with
// `--log-level` (the bar itself is at level info; `--quiet` is level notice: no bar, no step or eval lines).
// Deliberately not here: metrics.jsonl (the Trainer writes it), the HTML report (Training/Report.swift), and any
// global logging bootstrap: each Logger is built with its own handler, so nothing is process-wide.
import ArgumentParser
import Foundation
import Logging
import Training
#if canImport(Glibc)
import Glibc
#endif

/// `--log-level`, with the swift-log level names.
enum LogLevelOption: String, ExpressibleByArgument, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}

/// stderr, shared by the log handler and the progress bar so a message never lands in the middle of the bar.
final class Terminal: @unchecked Sendable {
    let isTTY: Bool
    private let lock = NSLock()
    private var barShown = false

    init(isTTY: Bool) { self.isTTY = isTTY }

    /// Prints one full line (clearing the bar first on a terminal; the next `bar` call redraws it).
    func line(_ s: String) {
        lock.lock(); defer { lock.unlock() }
        let prefix = isTTY && barShown ? "\r\u{1B}[K" : ""
        barShown = false
        FileHandle.standardError.write(Data((prefix + s + "\n").utf8))
    }

    /// Redraws the progress line in place (terminals only).
    func bar(_ s: String) {
        guard isTTY else { return }
        lock.lock(); defer { lock.unlock() }
        barShown = true
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + s).utf8))
    }

    /// Ends the bar's line so the shell prompt or the final JSON starts on a fresh line.
    func finish() {
        lock.lock(); defer { lock.unlock() }
        if isTTY && barShown { FileHandle.standardError.write(Data("\n".utf8)) }
        barShown = false
    }
}

/// A swift-log handler writing `[timestamp] message` lines (plus `level:` for warnings and worse) to a `Terminal`.
struct TerminalLogHandler: LogHandler {
    let terminal: Terminal
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        let tag = event.level >= .warning ? "\(event.level.rawValue): " : ""
        terminal.line("[\(stamp)] \(tag)\(event.message)")
    }
}

/// Turns training events into log lines and the progress bar (rank 0 only; other ranks stay silent).
final class ProgressReporter {
    let enabled: Bool
    let terminal: Terminal
    let logger: Logger
    private var firstLog: (step: Double, elapsed: Double)?
    /// The last training position drawn (its loss and rate stay on the bar during an evaluation or save).
    private var lastTraining: ProgressRecord?
    private var lastDraw = -Double.infinity
    private var evalExamples = 0
    /// The run's shape, as the loop reported it at the start (for the report's summary).
    private(set) var summary: TrainingSummary?
    /// Redraws closer together than this are skipped (the last step and phase changes always draw).
    static let redrawInterval = 0.1

    init(enabled: Bool, level: Logger.Level, terminal: Terminal) {
        self.enabled = enabled
        self.terminal = terminal
        var logger = Logger(label: "disttrain") { _ in TerminalLogHandler(terminal: terminal, logLevel: level) }
        logger.logLevel = level
        self.logger = logger
    }

    /// Whether the in-place bar is used (a terminal, and a level that shows info messages).
    var usesBar: Bool { terminal.isTTY && logger.logLevel <= .info }

    /// Shows one training event (rank 0); the display never stops the loop.
    func handle(_ event: TrainingEvent) -> LoopControl {
        if case .started(let s) = event { summary = s }
        guard enabled else { return .continue }
        switch event {
        case .started(let s):
            evalExamples = s.evalExamples
            // A language model has no labels: say nothing about them rather than `labels:` with nothing after it.
            logger.info("train: \(plural(s.trainExamples, "example")), eval: \(s.evalExamples)\(s.labels.isEmpty ? "" : ", labels: " + s.labels.joined(separator: ", "))")
            logger.info("world size \(s.worldSize), micro-batch \(s.microBatch) × \(s.accumulationSteps) accumulation, \(plural(s.totalSteps, "step")) (\(s.stepsPerEpoch)/epoch), \(s.parameters) trainable parameters, \(s.allReduceBytes) gradient bytes to all-reduce per step at most (allreduce_mb in metrics.jsonl: what moved)")
            if !s.initialized.isEmpty { logger.notice("initialised (not in the checkpoint): \(s.initialized.joined(separator: ", "))") }
            if s.truncated > 0 {
                logger.notice(s.truncatedAtPositions
                    ? "\(plural(s.truncated, "example")) longer than the model's positions (n_positions) truncated at the end and kept; a longer --max-length cannot help"
                    : "\(plural(s.truncated, "example")) longer than --max-length (or the model's positions) truncated at the end and kept; raise --max-length to keep more of them")
            }
            for n in s.notices {
                if n.hasPrefix("warning: ") { logger.warning("\(n.dropFirst("warning: ".count))") } else { logger.notice("\(n)") }
            }
        case .progress(let p):
            showProgress(p)
        case .step(let r):
            let m = r.metrics
            logger.debug("\(jsonObjectLine(m))")
            // On a terminal the bar, redrawn every step, shows it; in a log, one line per logging step.
            if !usesBar { logger.info("\(ProgressReporter.progressText(m, eta: eta(m), bar: false))") }
        case .evaluated(let e):
            if let acc = e["eval_rewards/accuracies"] {   // DPO, with TRL's metric names
                logger.info("\(String(format: "eval step %d: loss %.4f rewards/accuracies %.4f rewards/margins %.4f logps/chosen %.2f logps/rejected %.2f", e.step, e["eval_loss"] ?? 0, acc, e["eval_rewards/margins"] ?? 0, e["eval_logps/chosen"] ?? 0, e["eval_logps/rejected"] ?? 0))")
            } else if let em = e["eval_exact_match"] {   // question answering: SQuAD exact match and F1
                logger.info("\(String(format: "eval step %d: exact_match %.2f f1 %.2f loss %.4f", e.step, em, e["eval_f1"] ?? 0, e["eval_loss"] ?? 0))")
            } else if let f1 = e["eval_f1"] {   // token classification: seqeval entity scores
                logger.info("\(String(format: "eval step %d: entity f1 %.4f precision %.4f recall %.4f accuracy %.4f loss %.4f", e.step, f1, e["eval_precision"] ?? 0, e["eval_recall"] ?? 0, e["eval_accuracy"] ?? 0, e["eval_loss"] ?? 0))")
            } else if let ppl = e["eval_perplexity"] {
                logger.info("\(String(format: "eval step %d: loss %.4f perplexity %.2f", e.step, e["eval_loss"] ?? 0, ppl))")
            } else if let margin = e["eval_margin"] {   // a reward model: pairwise accuracy
                logger.info("\(String(format: "eval step %d: accuracy %.4f loss %.4f margin %.4f", e.step, e["eval_accuracy"] ?? 0, e["eval_loss"] ?? 0, margin))")
            } else {
                logger.info("\(String(format: "eval step %d: accuracy %.4f loss %.4f macro_f1 %.4f", e.step, e["eval_accuracy"] ?? 0, e["eval_loss"] ?? 0, e["eval_macro_f1"] ?? 0))")
            }
            logger.debug("\(jsonObjectLine(e.metrics))")
        case .stopped(let r):
            logger.debug("\(jsonObjectLine(r.metrics))")
            let best = r.bestStep.map { " (best evaluation at step \($0): \(r.bestMetric ?? 0))" } ?? ""
            logger.notice("stopped early after step \(r.step)\(best)")
        case .saved(let url):
            logger.info("saved \(url.path)")
        case .finished(let r):
            terminal.finish()
            if let f = r.finalModelStep {
                logger.notice("final model: checkpoint-\(f)'s, the best evaluation (--load-best-model-at-end\(r.best.map { String(format: "; best_metric %.4g", $0.metric) } ?? ""))")
            }
        }
        return .continue
    }

    /// The bar after a step (throttled), or as an evaluation or save begins; in a log, the start of an evaluation.
    func showProgress(_ p: ProgressRecord) {
        guard usesBar else {
            if p.phase == .evaluating {
                logger.info("step \(p.step)/\(p.totalSteps): evaluating \(plural(evalExamples, "example"))")
            }
            return
        }
        var shown = p
        if p.phase == .training {
            let remaining = eta(["step": Double(p.step), "total_steps": Double(p.totalSteps), "elapsed_s": p.elapsedSeconds])
            lastTraining = p
            lastETA = remaining
            guard p.elapsedSeconds - lastDraw >= Self.redrawInterval || p.step >= p.totalSteps else { return }
        } else {
            shown.runningLoss = lastTraining?.runningLoss
            shown.tokensPerSecond = lastTraining?.tokensPerSecond
        }
        lastDraw = p.elapsedSeconds
        terminal.bar(ProgressReporter.barText(shown, eta: p.phase == .training && p.step < p.totalSteps ? lastETA : nil))
    }
    private var lastETA: Double?

    /// `step 12/100 [████░░░░░░░░░░░░░░░░] epoch 0.12 loss 0.6931 tokens/s 1234 elapsed 12s ETA 1m02s`, then
    /// ` · evaluating…` or ` · saving…` while those run.
    static func barText(_ p: ProgressRecord, eta: Double?) -> String {
        let width = 20
        let filled = p.totalSteps > 0 ? min(width, p.step * width / p.totalSteps) : 0
        var s = "step \(p.step)/\(p.totalSteps) [" + String(repeating: "█", count: filled)
            + String(repeating: "░", count: width - filled) + "] " + String(format: "epoch %.2f", p.epoch)
        if let l = p.runningLoss { s += String(format: " loss %.4f", l) }
        if let t = p.tokensPerSecond { s += String(format: " tokens/s %.0f", t) }
        s += " elapsed " + formatDuration(p.elapsedSeconds)
        if let eta { s += " ETA " + formatDuration(eta) }
        switch p.phase {
        case .training: break
        case .evaluating: s += " · evaluating…"
        case .saving: s += " · saving…"
        }
        return s
    }

    /// Seconds left, from the rate since the first log record of this run (a resumed run starts mid-way); `m` is a
    /// step record's metrics.jsonl object.
    func eta(_ m: [String: Double]) -> Double? {
        guard let step = m["step"], let total = m["total_steps"], let elapsed = m["elapsed_s"] else { return nil }
        guard let first = firstLog else { firstLog = (step, elapsed); return nil }
        let done = step - first.step
        guard done > 0 else { return nil }
        return (total - step) * (elapsed - first.elapsed) / done
    }

    /// `step 12/100 [████░░░░] epoch 0.12 loss 0.6931 lr 5e-05 grad_norm 0.5 tokens/s 1234 elapsed 30s ETA 1m02s`
    /// from a logging record (the bar glyphs only when asked; log files get plain text).
    static func progressText(_ m: [String: Double], eta: Double?, bar showBar: Bool) -> String {
        let step = Int(m["step"] ?? 0), total = Int(m["total_steps"] ?? 0)
        let width = 20
        let filled = total > 0 ? min(width, step * width / total) : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        var s = "step \(step)/\(total) " + (showBar ? "[\(bar)] " : "") + String(format: "epoch %.2f loss %.4f lr %.3g grad_norm %.3f tokens/s %.0f",
                       m["epoch"] ?? 0, m["loss"] ?? 0, m["learning_rate"] ?? 0, m["grad_norm"] ?? 0, m["tokens_per_s"] ?? 0)
        if let e = m["elapsed_s"] { s += " elapsed " + formatDuration(e) }
        if let reward = m["reward"] {   // GRPO: the fresh samples' mean reward (and KL with a reference)
            s += String(format: " reward %.4f", reward) + (m["kl"].map { String(format: " kl %.4f", $0) } ?? "")
        }
        if let eta { s += " ETA " + formatDuration(eta) }
        return s
    }

    static func formatDuration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "?" }
        let t = Int(s.rounded())
        if t >= 3600 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
        if t >= 60 { return String(format: "%dm%02ds", t / 60, t % 60) }
        return "\(t)s"
    }
}

/// "1 step", "2 steps".
func plural(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
