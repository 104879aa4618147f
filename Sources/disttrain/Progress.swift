// Progress: what rank 0 shows while training. On a terminal (isatty(stderr)) one progress line redrawn in place
// (step/total, epoch, loss, lr, tokens/s, ETA) with other messages printed above it; otherwise (CI, SLURM logs) plain
// timestamped lines. Messages go through swift-log with `--log-level` (the bar itself is at level info).
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
        guard enabled else { return .continue }
        switch event {
        case .started(let s):
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
        case .step(let r):
            let m = r.metrics
            logger.debug("\(jsonObjectLine(m))")
            let text = ProgressReporter.progressText(m, eta: eta(m), bar: usesBar)
            if usesBar { terminal.bar(text) } else { logger.info("\(text)") }
        case .evaluated(let e):
            if let acc = e["eval_rewards/accuracies"] {   // DPO, with TRL's metric names
                logger.info("\(String(format: "eval step %d: loss %.4f rewards/accuracies %.4f rewards/margins %.4f logps/chosen %.2f logps/rejected %.2f", e.step, e["eval_loss"] ?? 0, acc, e["eval_rewards/margins"] ?? 0, e["eval_logps/chosen"] ?? 0, e["eval_logps/rejected"] ?? 0))")
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

    /// Seconds left, from the rate since the first log record of this run (a resumed run starts mid-way); `m` is a
    /// step record's metrics.jsonl object.
    func eta(_ m: [String: Double]) -> Double? {
        guard let step = m["step"], let total = m["total_steps"], let elapsed = m["elapsed_s"] else { return nil }
        guard let first = firstLog else { firstLog = (step, elapsed); return nil }
        let done = step - first.step
        guard done > 0 else { return nil }
        return (total - step) * (elapsed - first.elapsed) / done
    }

    /// `step 12/100 [████░░░░] epoch 0.12 loss 0.6931 lr 5e-05 grad_norm 0.5 tokens/s 1234 ETA 1m02s` (the bar
    /// glyphs only on a terminal; log files get plain text).
    static func progressText(_ m: [String: Double], eta: Double?, bar showBar: Bool) -> String {
        let step = Int(m["step"] ?? 0), total = Int(m["total_steps"] ?? 0)
        let width = 20
        let filled = total > 0 ? min(width, step * width / total) : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        var s = "step \(step)/\(total) " + (showBar ? "[\(bar)] " : "") + String(format: "epoch %.2f loss %.4f lr %.3g grad_norm %.3f tokens/s %.0f",
                       m["epoch"] ?? 0, m["loss"] ?? 0, m["learning_rate"] ?? 0, m["grad_norm"] ?? 0, m["tokens_per_s"] ?? 0)
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
