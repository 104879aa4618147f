// Report: a self-contained `report.html` for a finished run, built from the records of metrics.jsonl and the final
// metrics. At the top a run summary (model, task, data, ranks × threads, wall time; the settings; the headline
// results); then inline SVG line charts with labelled axes and units (loss, learning rate, tokens/s, and eval scores
// for classifiers or perplexity for language models, against the optimizer step); the final metrics table; and for
// classifiers per-class precision/recall/F1/support and the confusion matrix.
// A pure function of its input (records in, HTML string out), so it is unit-testable and renders the same anywhere.
// Deliberately not here: reading or writing files beyond the small `ReportInput.load` helper, running any model
// (the confusion matrix comes from `eval_confusion_matrix` when the records carry it, is derived exactly for two
// classes from per-class recall and support, and is a placeholder otherwise), JavaScript, and external assets.
import Foundation
import Tokenizers

/// Everything the report shows.
public struct ReportInput: Sendable {
    /// Training log records (metrics.jsonl lines with a `loss` key): step, loss, learning_rate, tokens_per_s, ...
    public var logs: [[String: Double]]
    /// Evaluation records (metrics.jsonl lines with `eval_*` keys), in step order.
    public var evals: [[String: Double]]
    /// The final metrics (eval_results.json), if any.
    public var final: [String: Double]
    /// Class names in class-id order (from the saved config.json); derived from per-class keys when empty.
    public var labels: [String]
    /// `confusion[true][predicted]`, when known.
    public var confusion: [[Int]]?
    public var title: String
    /// What the run was (the command that trained it knows; a report rebuilt from a folder alone has none).
    public var run: RunSummary?
    /// On-line RL (GRPO): completions of the last logged step in samples.jsonl (prompt, completion, reward), shown as
    /// a table; empty for other tasks.
    public var samples: [(step: Int, prompt: String, completion: String, reward: Double)] = []

    public init(logs: [[String: Double]], evals: [[String: Double]], final: [String: Double], labels: [String],
                confusion: [[Int]]?, title: String) {
        self.logs = logs; self.evals = evals; self.final = final; self.labels = labels
        self.confusion = confusion; self.title = title
    }

    /// Splits parsed metrics.jsonl objects into log and eval records; numeric fields only, except
    /// `eval_confusion_matrix` (rows of integers), taken from the last eval record or `finalObject` that has it.
    public init(records: [[String: Any]], finalObject: [String: Any], labels: [String], title: String) {
        func numbers(_ o: [String: Any]) -> [String: Double] {
            var d: [String: Double] = [:]
            for (k, v) in o {
                if let n = v as? NSNumber, !(v is Bool) { d[k] = n.doubleValue } else if let x = v as? Double { d[k] = x }
            }
            return d
        }
        func matrix(_ o: [String: Any]) -> [[Int]]? {
            guard let rows = o["eval_confusion_matrix"] as? [[Any]] else { return nil }
            let m = rows.map { $0.compactMap { ($0 as? NSNumber)?.intValue } }
            return m.allSatisfy({ $0.count == m.count }) && !m.isEmpty ? m : nil
        }
        var logs: [[String: Double]] = [], evals: [[String: Double]] = []
        var confusion: [[Int]]?
        for r in records {
            let n = numbers(r)
            if n.keys.contains(where: { $0.hasPrefix("eval_") }) {
                evals.append(n)
                if let m = matrix(r) { confusion = m }
            } else if n["loss"] != nil {
                logs.append(n)
            }
        }
        if let m = matrix(finalObject) { confusion = m }
        self.init(logs: logs, evals: evals, final: numbers(finalObject), labels: labels, confusion: confusion, title: title)
    }

    /// Reads `metrics.jsonl`, `eval_results.json` and config.json's id2label from a finished output folder.
    /// Unreadable lines are skipped: the report must never fail a run that has already succeeded.
    public static func load(outputDir: URL) -> ReportInput {
        let records = (try? Data(contentsOf: outputDir.appendingPathComponent("metrics.jsonl"))).map(JSONLines.lenientObjects) ?? []
        var final: [String: Any] = [:]
        if let d = try? Data(contentsOf: outputDir.appendingPathComponent("eval_results.json")),
           let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] { final = o }
        var labels: [String] = []
        if let d = try? Data(contentsOf: outputDir.appendingPathComponent("config.json")),
           let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
           let id2label = o["id2label"] as? [String: String] {
            labels = id2label.compactMap { k, v in Int(k).map { ($0, v) } }.sorted { $0.0 < $1.0 }.map(\.1)
        }
        var input = ReportInput(records: records, finalObject: final, labels: labels, title: outputDir.lastPathComponent)
        input.samples = loadSamples(outputDir.appendingPathComponent("samples.jsonl"))
        return input
    }

    /// GRPO's samples.jsonl: the rows of its last step (at most 32), or none.
    static func loadSamples(_ url: URL) -> [(step: Int, prompt: String, completion: String, reward: Double)] {
        guard let d = try? Data(contentsOf: url) else { return [] }
        let rows = JSONLines.lenientObjects(d).compactMap { o -> (step: Int, prompt: String, completion: String, reward: Double)? in
            guard let step = (o["step"] as? NSNumber)?.intValue, let p = o["prompt"] as? String, let c = o["completion"] as? String,
                  let r = (o["reward"] as? NSNumber)?.doubleValue else { return nil }
            return (step, p, c, r)
        }
        guard let last = rows.map(\.step).max() else { return [] }
        return Array(rows.filter { $0.step == last }.prefix(32))
    }
}

/// What a run was, for the top of its report: model, task, data, ranks and the settings that shape the result.
public struct RunSummary: Sendable {
    public var model: String
    public var task: String
    public var trainData: String
    public var evalData: String?
    public var ranks: Int
    public var threadsPerRank: Int
    /// Name and value, in display order.
    public var settings: [Setting]

    public struct Setting: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    public init(model: String, task: String, trainData: String, evalData: String?, ranks: Int, threadsPerRank: Int,
                settings: [Setting]) {
        self.model = model; self.task = task; self.trainData = trainData; self.evalData = evalData
        self.ranks = ranks; self.threadsPerRank = threadsPerRank; self.settings = settings
    }

    /// The `--task` name of what trained (the one `auto` chose, when it chose).
    public static func taskName(_ task: TrainingTask, configured: TaskKind) -> String {
        if configured != .auto { return configured.rawValue }
        switch task {
        case is ClassificationTask: return TaskKind.classification.rawValue
        case is CausalLMTask: return TaskKind.causalLM.rawValue
        case is RewardTask: return TaskKind.reward.rawValue
        case is DPOTask: return TaskKind.dpo.rawValue
        case is TokenClassificationTask: return TaskKind.tokenClassification.rawValue
        default: return String(describing: type(of: task))
        }
    }

    /// From the run's configuration and what the loop reported at its start (`summary`: example counts, batch split).
    public init(config c: TrainConfig, task: String, summary: TrainingSummary?, worldSize: Int) {
        func examples(_ n: Int?) -> String { n.map { " (\(TrainingReport.grouped($0)) example\($0 == 1 ? "" : "s"))" } ?? "" }
        let eval = c.evalFile.map { $0.relativePath + examples(summary?.evalExamples) }
            ?? (c.validationSplit > 0 ? "\(c.validationSplit) of the training data held out" + examples(summary?.evalExamples) : nil)
        var settings: [Setting] = [
            Setting("global batch", summary.map { "\(c.batchSize) (\($0.microBatch) per rank × \($0.accumulationSteps) accumulation × \(worldSize) rank\(worldSize == 1 ? "" : "s"))" } ?? "\(c.batchSize)"),
            Setting("optimizer steps", summary.map { "\($0.totalSteps) (\($0.stepsPerEpoch) per epoch)" } ?? (c.maxSteps > 0 ? "\(c.maxSteps)" : "\(c.numTrainEpochs) epochs")),
            Setting("learning rate", String(format: "%g, %@ schedule", c.learningRate, c.lrSchedule.rawValue)
                    + (c.warmupSteps > 0 ? ", \(c.warmupSteps) warm-up steps" : c.warmupRatio > 0 ? ", warm-up ratio \(c.warmupRatio)" : "")),
            Setting("weight decay, max grad norm", String(format: "%g, %g", c.weightDecay, c.maxGradNorm)),
            Setting("max length", "\(c.maxLength) tokens"),
            Setting("seed", "\(c.seed)"),
            Setting("precision", c.matmulPrecision == .bf16 ? "bf16 matrix products, fp32 weights" : "fp32"),
            Setting("dropout", c.dropout ? "on" : "off"),
        ]
        if let l = c.lora {
            settings.append(Setting("LoRA", String(format: "r %d, alpha %g, dropout %g", l.r, l.alpha, l.dropout)
                                    + (l.targetModules.map { ", targets " + $0.joined(separator: ",") } ?? "")))
        }
        if let s = summary { settings.append(Setting("trainable parameters", TrainingReport.grouped(s.parameters))) }
        self.init(model: c.initFromConfig.map { "initialised from \($0.relativePath)" } ?? c.modelDir.relativePath, task: task,
                  trainData: c.trainFile.relativePath + examples(summary?.trainExamples), evalData: eval,
                  ranks: worldSize, threadsPerRank: c.threads, settings: settings)
    }
}

public enum TrainingReport {
    /// The whole report as one HTML document (no scripts, no external resources).
    public static func html(_ input: ReportInput) -> String {
        let last = input.evals.last ?? [:]
        // The final metrics: eval_results.json wins, else the last evaluation.
        var final = last
        for (k, v) in input.final { final[k] = v }
        let labels = input.labels.isEmpty ? derivedLabels(final) : input.labels
        // A language model (perplexity, no classes): a perplexity curve instead of scores, no per-class sections.
        let isLM = final["eval_perplexity"] != nil || input.run?.task == "causal-lm"
        // On-line RL (GRPO) logs the reward of fresh samples; it has no eval scores, classes or confusion matrix.
        let isRL = input.logs.contains(where: { $0["reward"] != nil })
        var body = "<h1>disttrain report: \(escape(input.title))</h1>\n"
        body += "<p class=\"sub\">\(input.logs.count) training log records, \(input.evals.count) evaluations"
        if let step = final["global_step"] ?? last["step"] { body += ", \(Int(step)) optimizer steps" }
        body += ".</p>\n"
        body += runSummary(input.run, final: final, isLM: isLM)

        body += "<h2>Curves</h2>\n<div class=\"charts\">\n"
        body += lineChart(title: "Loss per optimizer step", yLabel: isLM ? "loss (nats per token)" : "cross-entropy loss (nats)", series: [
            Series(name: "train loss", color: "#1f77b4", points: points(input.logs, "loss")),
            Series(name: "eval loss", color: "#d62728", points: points(input.evals, "eval_loss")),
        ])
        body += lineChart(title: "Learning rate schedule", yLabel: "learning rate", series: [
            Series(name: "learning rate", color: "#2ca02c", points: points(input.logs, "learning_rate")),
        ])
        body += lineChart(title: "Throughput", yLabel: "tokens per second (all ranks)", series: [
            Series(name: "tokens/s", color: "#9467bd", points: points(input.logs, "tokens_per_s")),
        ])
        if isLM {
            body += lineChart(title: "Perplexity (exp of the loss)", yLabel: "perplexity", logY: true, series: [
                Series(name: "train perplexity", color: "#1f77b4", points: points(input.logs, "loss").map { ($0.0, exp($0.1)) }),
                Series(name: "eval perplexity", color: "#d62728", points: points(input.evals, "eval_perplexity")),
            ])
        } else if !isRL {
            body += lineChart(title: "Evaluation scores", yLabel: "score (fraction, 0 to 1)", yRange: 0...1, series: [
                Series(name: "accuracy", color: "#ff7f0e", points: points(input.evals, "eval_accuracy")),
                Series(name: "macro-F1", color: "#17becf", points: points(input.evals, "eval_macro_f1")),
                Series(name: "entity F1", color: "#d62728", points: points(input.evals, "eval_f1")),
                Series(name: "reward accuracy", color: "#8c564b", points: points(input.evals, "eval_rewards/accuracies")),
            ])
        }
        if isRL {
            // On-line RL (GRPO): the mean reward of each step's fresh samples, and the KL to the reference.
            body += lineChart(title: "Reward of fresh samples", yLabel: "reward", series: [
                Series(name: "mean reward", color: "#ff7f0e", points: points(input.logs, "reward")),
                Series(name: "mean group std", color: "#8c564b", points: points(input.logs, "reward_group_std")),
            ])
            body += lineChart(title: "KL to the reference", yLabel: "nats/token", series: [
                Series(name: "kl", color: "#d62728", points: points(input.logs, "kl")),
            ])
        }
        body += "</div>\n"
        if !input.samples.isEmpty {
            body += "<h2>Samples (step \(input.samples[0].step))</h2>\n<table>\n<tr><th class=\"name\">prompt</th><th class=\"name\">completion</th><th>reward</th></tr>\n"
            body += input.samples.map { "<tr><td class=\"name\">\(escape($0.prompt))</td><td class=\"name\">\(escape($0.completion))</td><td>\(String(format: "%.4f", $0.reward))</td></tr>" }.joined(separator: "\n")
            body += "\n</table>\n"
        }

        body += "<h2>Final metrics</h2>\n" + summaryTable(final)
        if isLM || isRL {
            return document(title: input.title, body: body)
        }
        let matrix = confusionMatrix(input.confusion, final: final, labels: labels)
        if let m = matrix?.rows {
            // Supports are the row sums of the confusion matrix when the records do not carry them.
            for (i, l) in labels.enumerated() where final["eval_support_\(l)"] == nil && i < m.count {
                final["eval_support_\(l)"] = Double(m[i].reduce(0, +))
            }
        }
        body += "<h2>Per class</h2>\n" + perClassTable(final, labels: labels)
        body += "<h2>Confusion matrix</h2>\n" + confusionSection(matrix, labels: labels)
        return document(title: input.title, body: body)
    }

    /// The page around `body`: inline styles only (no scripts, no external resources).
    static func document(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>disttrain report: \(escape(title))</title>
        <style>
        body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
        h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } .sub { color: #666; }
        .charts { display: flex; flex-wrap: wrap; gap: 16px; }
        .chart { border: 1px solid #ddd; border-radius: 4px; background: #fff; }
        table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
        th { background: #f4f4f4; } td.name, th.name { text-align: left; }
        .placeholder { color: #888; font-style: italic; }
        .summary { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
        .card { border: 1px solid #ddd; border-radius: 4px; padding: 8px 14px; background: #fafafa; font-size: 13px; }
        .card h3 { font-size: 15px; margin: 4px 0 6px; }
        .card table td { border: none; padding: 2px 8px; }
        .headline { display: flex; flex-wrap: wrap; gap: 18px; }
        .headline div { min-width: 110px; } .headline .v { font-size: 26px; font-weight: bold; } .headline .k { color: #555; font-size: 12px; }
        </style></head>
        <body>
        \(body)</body></html>

        """
    }

    /// The top of the report: what ran (model, task, data, ranks, wall time), its settings, and the headline results.
    static func runSummary(_ run: RunSummary?, final: [String: Double], isLM: Bool) -> String {
        var s = "<div class=\"summary\">\n"
        // The numbers a reader looks for first, by task.
        let headline: [(key: String, name: String, format: String)] = isLM
            ? [("eval_perplexity", "eval perplexity", "%.2f"), ("eval_loss", "eval loss (nats/token)", "%.4f"), ("train_loss", "train loss", "%.4f")]
            : [("eval_accuracy", "eval accuracy", "%.4f"), ("eval_macro_f1", "eval macro-F1", "%.4f"), ("eval_f1", "entity F1", "%.4f"),
               ("eval_rewards/accuracies", "reward accuracy", "%.4f"), ("eval_loss", "eval loss", "%.4f"), ("train_loss", "train loss", "%.4f"),
               ("train_tokens_per_s", "tokens/s", "%.0f")]
        let shown = headline.compactMap { h in final[h.key].map { (h.name, String(format: h.format, $0)) } }
        if !shown.isEmpty {
            s += "<div class=\"card\"><h3>Result</h3><div class=\"headline\">\n"
            s += shown.map { "<div><div class=\"v\">\($0.1)</div><div class=\"k\">\(escape($0.0))</div></div>" }.joined(separator: "\n")
            s += "\n</div></div>\n"
        }
        var rows: [(String, String)] = []
        if let run {
            rows += [("model", run.model), ("task", run.task), ("training data", run.trainData)]
            rows.append(("evaluation data", run.evalData ?? "none"))
            rows.append(("ranks × threads", "\(run.ranks) × \(run.threadsPerRank)"))
        }
        if let t = final["train_runtime_s"] { rows.append(("wall time (training loop)", duration(t))) }
        if let t = final["launch_to_first_step_s"] { rows.append(("launch → first step", duration(t))) }
        if let steps = final["global_step"] { rows.append(("optimizer steps done", "\(Int(steps))" + (final["epoch"].map { String(format: " (%.2f epochs)", $0) } ?? ""))) }
        if !rows.isEmpty {
            s += "<div class=\"card\"><h3>Run</h3><table>\n"
            s += rows.map { "<tr><td class=\"name\">\(escape($0.0))</td><td class=\"name\">\(escape($0.1))</td></tr>" }.joined(separator: "\n")
            s += "\n</table></div>\n"
        }
        if let run, !run.settings.isEmpty {
            s += "<div class=\"card\"><h3>Settings</h3><table>\n"
            s += run.settings.map { "<tr><td class=\"name\">\(escape($0.name))</td><td class=\"name\">\(escape($0.value))</td></tr>" }.joined(separator: "\n")
            s += "\n</table></div>\n"
        }
        return s + "</div>\n"
    }

    /// `42 s`, `3 min 05 s`, `1 h 02 min`.
    static func duration(_ t: Double) -> String {
        guard t.isFinite, t >= 0 else { return "?" }
        if t < 60 { return String(format: "%.1f s", t) }
        let n = Int(t.rounded())
        if n < 3600 { return String(format: "%d min %02d s", n / 60, n % 60) }
        return String(format: "%d h %02d min", n / 3600, (n % 3600) / 60)
    }

    /// 1234567 → "1,234,567".
    public static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + out
    }

    struct Series {
        var name: String
        var color: String
        var points: [(Double, Double)]
    }

    /// (step, value) pairs of `key`, finite values only, in step order.
    static func points(_ records: [[String: Double]], _ key: String) -> [(Double, Double)] {
        records.compactMap { r in
            guard let s = r["step"], let v = r[key], s.isFinite, v.isFinite else { return nil }
            return (s, v)
        }.sorted { $0.0 < $1.0 }
    }

    /// An inline SVG line chart with axes, 5 ticks per axis and a legend. Empty series show "no data".
    /// `yRange` fixes the vertical axis (scores live in 0...1); otherwise it spans the data with 5% margins.
    /// `logY`: values spanning more than a factor of 20 (all positive) are drawn on a log10 axis, ticks labelled in
    /// the values themselves, and the axis label says "log scale".
    static func lineChart(title: String, yLabel: String, yRange: ClosedRange<Double>? = nil, logY: Bool = false, series: [Series]) -> String {
        let W = 540.0, H = 300.0, left = 70.0, right = 16.0, top = 30.0, bottom = 44.0
        let pw = W - left - right, ph = H - top - bottom
        let values = series.flatMap(\.points).map(\.1)
        let useLog = logY && yRange == nil && !values.isEmpty && values.allSatisfy { $0 > 0 } && values.max()! / values.min()! > 20
        let series = useLog ? series.map { s in Series(name: s.name, color: s.color, points: s.points.map { ($0.0, log10($0.1)) }) } : series
        let yLabel = useLog ? yLabel + " (log scale)" : yLabel
        func tickY(_ v: Double) -> String { tick(useLog ? pow(10, v) : v) }
        let all = series.flatMap(\.points)
        var svg = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" viewBox=\"0 0 \(Int(W)) \(Int(H))\">\n"
        svg += "<text x=\"\(Int(W / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">\(escape(title))</text>\n"
        guard !all.isEmpty else {
            svg += "<text x=\"\(Int(W / 2))\" y=\"\(Int(H / 2))\" text-anchor=\"middle\" font-size=\"13\" fill=\"#888\">no data</text>\n</svg>\n"
            return svg
        }
        var x0 = all.map(\.0).min()!, x1 = all.map(\.0).max()!
        var y0 = all.map(\.1).min()!, y1 = all.map(\.1).max()!
        if x1 == x0 { x0 -= 1; x1 += 1 }
        if y1 == y0 { let d = y0 == 0 ? 1 : abs(y0) * 0.1; y0 -= d; y1 += d }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        if !useLog && all.allSatisfy({ $0.1 >= 0 }) && y0 < 0 { y0 = 0 }
        if let yRange { y0 = min(yRange.lowerBound, y0 + pad); y1 = max(yRange.upperBound, y1 - pad) }
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + ph - (y - y0) / (y1 - y0) * ph }
        // Axes and ticks.
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top + ph))\" x2=\"\(f(left + pw))\" y2=\"\(f(top + ph))\" stroke=\"#444\"/>\n"
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + ph))\" stroke=\"#444\"/>\n"
        // Five even ticks; on a log axis the round values 1, 2 and 5 × 10^k inside it instead.
        var yTicks = (0...4).map { y0 + (y1 - y0) * Double($0) / 4 }
        if useLog {
            let round = (Int(y0.rounded(.down))...Int(y1.rounded(.up))).flatMap { k in [1.0, 2, 5].map { log10($0) + Double(k) } }
                .filter { $0 >= y0 && $0 <= y1 }
            let decades = round.filter { $0 == $0.rounded() }
            yTicks = decades.count >= 3 ? decades : round
        }
        for yv in yTicks {
            let yy = py(yv)
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(yy))\" x2=\"\(f(left + pw))\" y2=\"\(f(yy))\" stroke=\"#eee\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(yy + 4))\" text-anchor=\"end\" font-size=\"11\">\(tickY(yv))</text>\n"
        }
        for i in 0...4 {
            // Steps are whole numbers: label the tick at the rounded step, placed where that step is.
            let xv = (x0 + (x1 - x0) * Double(i) / 4).rounded(), xx = px(xv)
            svg += "<text x=\"\(f(xx))\" y=\"\(f(top + ph + 16))\" text-anchor=\"middle\" font-size=\"11\">\(tick(xv))</text>\n"
        }
        svg += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(H - 8))\" text-anchor=\"middle\" font-size=\"12\">optimizer step</text>\n"
        svg += "<text x=\"14\" y=\"\(f(top + ph / 2))\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 14 \(f(top + ph / 2)))\">\(escape(yLabel))</text>\n"
        // Lines (a single point is drawn as a dot) and legend.
        var legendX = left + 8
        for s in series where !s.points.isEmpty {
            let pts = s.points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\" points=\"\(pts)\"><title>\(escape(s.name))</title></polyline>\n"
            for p in s.points where s.points.count <= 40 {
                svg += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"2.5\" fill=\"\(s.color)\"/>\n"
            }
            svg += "<rect x=\"\(f(legendX))\" y=\"\(f(top + 4))\" width=\"12\" height=\"3\" fill=\"\(s.color)\"/>"
            svg += "<text x=\"\(f(legendX + 16))\" y=\"\(f(top + 9))\" font-size=\"11\">\(escape(s.name))</text>\n"
            legendX += 24 + Double(s.name.count) * 6.5
        }
        svg += "</svg>\n"
        return svg
    }

    static func summaryTable(_ m: [String: Double]) -> String {
        let keys = ["eval_accuracy", "eval_macro_f1", "eval_weighted_f1", "eval_f1", "eval_precision", "eval_recall", "eval_loss",
                    "eval_perplexity", "eval_tokens", "eval_samples", "train_loss", "train_runtime_s", "launch_to_first_step_s",
                    "train_tokens_per_s", "train_samples", "global_step", "epoch"]
        let rows = keys.compactMap { k in m[k].map { "<tr><td class=\"name\">\(k)</td><td>\(value($0))</td></tr>" } }
        guard !rows.isEmpty else { return "<p class=\"placeholder\">no final metrics recorded</p>\n" }
        return "<table>\n<tr><th class=\"name\">metric</th><th>value</th></tr>\n" + rows.joined(separator: "\n") + "\n</table>\n"
    }

    static func perClassTable(_ m: [String: Double], labels: [String]) -> String {
        guard !labels.isEmpty, labels.contains(where: { m["eval_f1_\($0)"] != nil }) else {
            return "<p class=\"placeholder\">no per-class metrics recorded</p>\n"
        }
        var s = "<table>\n<tr><th class=\"name\">label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>\n"
        for l in labels {
            let cells = ["precision", "recall", "f1"].map { m["eval_\($0)_\(l)"].map { String(format: "%.4f", $0) } ?? "–" }
            let support = m["eval_support_\(l)"].map { String(Int($0)) } ?? "–"
            s += "<tr><td class=\"name\">\(escape(l))</td><td>\(cells[0])</td><td>\(cells[1])</td><td>\(cells[2])</td><td>\(support)</td></tr>\n"
        }
        return s + "</table>\n"
    }

    /// The recorded matrix, or for two classes the one determined by the scores (`derived` true), or nil.
    static func confusionMatrix(_ given: [[Int]]?, final: [String: Double], labels: [String]) -> (rows: [[Int]], derived: Bool)? {
        if let given, given.count == labels.count { return (given, false) }
        return binaryConfusion(final, labels: labels).map { ($0, true) }
    }

    /// The matrix as a shaded table, or a placeholder saying how to get it.
    static func confusionSection(_ found: (rows: [[Int]], derived: Bool)?, labels: [String]) -> String {
        guard let found else {
            return "<p class=\"placeholder\">Not recorded: this run's metrics carry no eval_confusion_matrix (for more than two classes it cannot be derived from per-class scores). Run <code>disttrain eval --model DIR --eval-file F</code> to get it.</p>\n"
        }
        let matrix = found.rows
        let note = found.derived ? "<p class=\"sub\">Derived from the per-class recall, accuracy and sample count (exact for two classes).</p>\n" : ""
        let maxCount = max(matrix.flatMap { $0 }.max() ?? 1, 1)
        var s = "<table>\n<tr><th class=\"name\">true \\ predicted</th>" + labels.map { "<th>\(escape($0))</th>" }.joined() + "</tr>\n"
        for (i, row) in matrix.enumerated() {
            s += "<tr><th class=\"name\">\(escape(labels[i]))</th>"
            for c in row {
                let alpha = Double(c) / Double(maxCount) * 0.6
                s += "<td style=\"background: rgba(31,119,180,\(String(format: "%.2f", alpha)))\">\(c)</td>"
            }
            s += "</tr>\n"
        }
        return s + "</table>\n" + note
    }

    /// For two classes the matrix is determined by the scores: TP_c = recall_c × support_c and the rest of each row is
    /// the other class. Supports come from `eval_support_<label>` when recorded; otherwise from `eval_samples` N and
    /// accuracy: acc·N = r0·s0 + r1·(N − s0), so s0 = N(acc − r1)/(r0 − r1), or when r0 = r1 from precision p0:
    /// p0·(r0·s0 + (1 − r1)(N − s0)) = r0·s0. A solution that is not a whole count in 0...N is rejected.
    static func binaryConfusion(_ m: [String: Double], labels: [String]) -> [[Int]]? {
        guard labels.count == 2, let r0 = m["eval_recall_\(labels[0])"], let r1 = m["eval_recall_\(labels[1])"] else { return nil }
        var s0: Double, s1: Double
        if let a = m["eval_support_\(labels[0])"], let b = m["eval_support_\(labels[1])"] {
            (s0, s1) = (a, b)
        } else {
            guard let n = m["eval_samples"], n > 0 else { return nil }
            if abs(r0 - r1) > 1e-9, let acc = m["eval_accuracy"] {
                s0 = n * (acc - r1) / (r0 - r1)
            } else if let p0 = m["eval_precision_\(labels[0])"] {
                let den = r0 + p0 * (1 - r1) - p0 * r0
                guard abs(den) > 1e-12 else { return nil }
                s0 = p0 * (1 - r1) * n / den
            } else {
                return nil
            }
            guard s0.isFinite, abs(s0 - s0.rounded()) < 1e-3, s0.rounded() >= 0, s0.rounded() <= n else { return nil }
            s0 = s0.rounded(); s1 = n - s0
        }
        let tp0 = Int((r0 * s0).rounded()), tp1 = Int((r1 * s1).rounded())
        return [[tp0, Int(s0) - tp0], [Int(s1) - tp1, tp1]]
    }

    /// Labels named by `eval_f1_<label>` keys, sorted (used only when config.json gave none).
    static func derivedLabels(_ m: [String: Double]) -> [String] {
        m.keys.filter { $0.hasPrefix("eval_f1_") }.map { String($0.dropFirst("eval_f1_".count)) }.sorted()
    }

    static func f(_ x: Double) -> String { String(format: "%.1f", x) }

    static func tick(_ v: Double) -> String {
        let a = abs(v)
        if a == 0 { return "0" }
        if a >= 10000 || a < 0.001 { return String(format: "%.2g", v) }
        if a >= 100 { return String(format: "%.0f", v) }
        return String(format: "%.3g", v)
    }

    static func value(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.4f", v)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }
}
