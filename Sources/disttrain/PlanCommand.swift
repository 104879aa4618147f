// `disttrain plan`: prints ScalingModel's predicted step (compute, intra-node reduction, inter-node all-reduce,
// exposed communication, step time, scaling efficiency) for a range of rank counts and link speeds. Flags only;
// the arithmetic is in Training/ScalingModel.swift and the assumptions in docs/cluster.md ("Predicting scale").
import ArgumentParser
import Foundation
import Model      // ModelConfig, AdamW: the sizes the memory plan adds up
import Training

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict step time, exposed communication and scaling efficiency of multi-node training.",
        discussion: """
        An α–β model of the hierarchical reduction (in place within a node, each rank's share reduce-scattered \
        across nodes while backward goes on, as far as polling at stage boundaries moves it). Default: the all-MiniLM-L6-v2 shape, 32 samples of 128 \
        tokens per rank, 2 ranks per node, 1 to 512 ranks at 10, 25 and 100 Gb/s, α 30 µs, \
        \(Int(Plan.defaultTokensPerS)) tokens/s per rank (MiniLM fp32, 1 thread, this machine's bench) scaled by \
        FLOPs per token for other shapes. Assumptions: docs/cluster.md, "Predicting scale".
        """)
    /// `bench` at the MiniLM shape, 32×128, fp32, 1 thread (README's benchmark table).
    static let defaultTokensPerS = 1681.0

    @Option(help: "A model folder (its config.json gives the shape).") var model: String?
    @Option(help: "A config.json to take the shape from.") var config: String?
    @Option(help: "Global batch (fixed: strong scaling; rank counts that do not divide it are left out).") var batchSize: Int?
    @Option(help: "Samples per rank (the global batch grows with the ranks: weak scaling). Default 32 unless --batch-size.")
    var batchPerRank: Int?
    @Option(help: "Sequence length.") var seqLen: Int = 128
    @Option(help: "Ranks per node.") var ranksPerNode: Int = 2
    @Option(help: "Node counts, comma-separated (default: 1 to 512 ranks in powers of two).") var nodes: String?
    @Option(help: "Link bandwidths each way, comma-separated (tc units: 1gbit, 500mbit; gbps/mbps are bytes/s).")
    var bandwidth: String = "10gbit,25gbit,100gbit"
    @Option(help: "Per-message latency α (e.g. 30us, 0.1ms).") var latency: String = "30us"
    @Option(help: "Forward+backward tokens per second of one rank.") var tokensPerSPerRank: Double?
    @Flag(help: "Measure tokens/s per rank with a short bench run at the shape (--threads) instead.") var measure = false
    @Option(help: "Compute threads per rank for --measure.") var threads: Int = 1
    @Option(help: "Node memory bandwidth in GB/s for the in-place reduction and AdamW.") var memoryGbps: Double = 60
    @Option(help: """
        Overlap of inter-node transfers with backward: polled (the trainer: moved only when tested at stage \
        boundaries, a --poll-window per connection each time), layers (an ideal progress engine) or none (all block).
        """)
    var overlap: String = "polled"
    @Option(help: "Bytes a connection moves each way between two polls for --overlap polled (e.g. 131072, 128k, 1m; default 128k: Linux's default TCP receive buffer).")
    var pollWindow: String?
    @Option(help: "Word-embedding rows a step touches (default: a quarter of the global batch's tokens).") var touchedRows: Int?
    @Option(help: "Element type of inter-node gradient traffic: fp32 or bf16 (as train's --grad-comm-dtype).") var gradCommDtype: String = "fp32"
    @Flag(help: "AdamW on every rank, all-reduce across nodes (as train's --no-shard-optimizer); default: ZeRO-1.") var noShardOptimizer = false
    @Flag(help: "One JSON object per row instead of the table.") var json = false

    func validate() throws {
        if model != nil && config != nil { throw ValidationError("pass --model or --config, not both") }
        if batchSize != nil && batchPerRank != nil { throw ValidationError("pass --batch-size (global) or --batch-per-rank, not both") }
        if let b = batchSize, b <= 0 { throw ValidationError("--batch-size must be positive (got \(b))") }
        if let b = batchPerRank, b <= 0 { throw ValidationError("--batch-per-rank must be positive (got \(b))") }
        guard seqLen > 1, seqLen <= 1 << 20 else { throw ValidationError("--seq-len must be between 2 and \(1 << 20) (got \(seqLen))") }
        guard ranksPerNode > 0, ranksPerNode <= 4096 else {
            throw ValidationError("--ranks-per-node must be between 1 and 4096 (got \(ranksPerNode))")
        }
        // Bounds keep every product (ranks × batch × tokens) far from overflow.
        if let b = batchSize ?? batchPerRank, b > 1 << 20 { throw ValidationError("--batch-size/--batch-per-rank must be at most \(1 << 20) (got \(b))") }
        guard threads > 0 else { throw ValidationError("--threads must be positive (got \(threads))") }
        guard memoryGbps > 0, memoryGbps.isFinite else { throw ValidationError("--memory-gbps must be positive (got \(memoryGbps))") }
        if let t = tokensPerSPerRank, !(t > 0 && t.isFinite) {
            throw ValidationError("--tokens-per-s-per-rank must be positive (got \(t))")
        }
        if tokensPerSPerRank != nil && measure { throw ValidationError("pass --tokens-per-s-per-rank or --measure, not both") }
        if let r = touchedRows, r <= 0 { throw ValidationError("--touched-rows must be positive (got \(r))") }
        guard gradCommDtype == "fp32" || gradCommDtype == "bf16" else {
            throw ValidationError("--grad-comm-dtype \(gradCommDtype): expected fp32 or bf16")
        }
        guard let mode = ScalingOverlap(rawValue: overlap) else {
            throw ValidationError("--overlap \(overlap): expected polled, layers or none")
        }
        if let w = pollWindow {
            _ = try Self.bytes(w)
            guard mode == .polled else { throw ValidationError("--poll-window applies to --overlap polled (got --overlap \(overlap))") }
        }
        _ = try nodeCounts()
        _ = try Self.rates(bandwidth)
        _ = try Self.seconds(latency)
    }

    func nodeCounts() throws -> [Int]? {
        guard let nodes else { return nil }
        let parts = nodes.split(separator: ",", omittingEmptySubsequences: false)
        let counts = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, counts.count == parts.count, counts.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }) else {
            throw ValidationError("--nodes \(nodes): expected node counts from 1 to \(1 << 20) separated by commas, e.g. 1,2,4,8")
        }
        return counts
    }

    /// Bytes per second for "10gbit", "500mbit", "1.5gbps" (tc: bit units are bits, bps units are bytes).
    static func rate(_ s: String) throws -> Double {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("tbit", 1e12 / 8), ("gbit", 1e9 / 8), ("mbit", 1e6 / 8), ("kbit", 1e3 / 8),
                                         ("gbps", 1e9), ("mbps", 1e6), ("kbps", 1e3)]
        for (u, f) in units where t.hasSuffix(u) {
            if let v = Double(t.dropLast(u.count)), v > 0, v.isFinite { return v * f }
        }
        throw ValidationError("--bandwidth \(s): expected a rate like 10gbit, 25gbit or 500mbit")
    }

    static func rates(_ list: String) throws -> [Double] {
        let parts = list.split(separator: ",", omittingEmptySubsequences: false)
        guard !parts.isEmpty else { throw ValidationError("--bandwidth is empty: expected e.g. 10gbit,25gbit") }
        return try parts.map { try rate(String($0)) }
    }

    /// Bytes for "131072", "128k", "1m", "0" (k, m, g: binary multiples, as tc's sizes).
    static func bytes(_ s: String) throws -> Double {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        for (u, f) in [("k", 1024.0), ("m", 1024.0 * 1024), ("g", 1024.0 * 1024 * 1024), ("", 1.0)] where t.hasSuffix(u) {
            if let v = Double(t.dropLast(u.count)), v >= 0, v <= 1e15, v * f == (v * f).rounded() { return v * f }
        }
        throw ValidationError("--poll-window \(s): expected a size in bytes like 131072, 128k or 1m")
    }

    /// Seconds for "30us", "0.1ms", "1s", "500ns".
    static func seconds(_ s: String) throws -> Double {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        for (u, f) in [("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0)] where t.hasSuffix(u) {
            if let v = Double(t.dropLast(u.count)), v >= 0, v.isFinite { return v * f }
        }
        throw ValidationError("--latency \(s): expected a time like 30us or 0.1ms")
    }

    /// The shape of `--model` / `--config` (any kind ModelFolder opens: BERT family or GPT-2, classifier or LM), or
    /// the all-MiniLM-L6-v2 default; its name, and its encoder or GPT-2 config for `--measure`.
    func shape() throws -> (shape: ScalingShape, name: String, positions: Int, config: ModelFolderConfig) {
        let folder: ModelFolder
        do {
            if let model { folder = try ModelFolder.open(URL(fileURLWithPath: model)) }
            else if let config { folder = try ModelFolder.read(configFile: URL(fileURLWithPath: config)) }
            else {
                let c = ModelBenchmark.miniLMConfig()
                return (ScalingShape(config: c), c.path, c.maxPositions, .encoder(c))
            }
        } catch let e as ConfigError { throw ValidationError(e.description) }
        switch folder.config {
        case .encoder(let c):
            // Bounds that keep the parameter counts far from Int overflow (any real model is well inside them).
            let wide = [c.vocabSize, c.maxPositions, c.typeVocabSize, c.numLabels]
            guard c.hidden <= 1 << 20, c.intermediate <= 1 << 20, c.layers <= 1 << 12, wide.allSatisfy({ $0 <= 1 << 24 }) else {
                throw ValidationError("\(c.path): sizes beyond what plan models (hidden and intermediate ≤ \(1 << 20), layers ≤ \(1 << 12), vocabulary, positions and labels ≤ \(1 << 24))")
            }
            return (ScalingShape(config: c), c.path, c.maxPositions, folder.config)
        case .gpt2(let c):
            guard c.hidden <= 1 << 20, c.intermediate <= 1 << 20, c.layers <= 1 << 12,
                  [c.vocabSize, c.maxPositions, c.numLabels].allSatisfy({ $0 <= 1 << 24 }) else {
                throw ValidationError("\(c.path): sizes beyond what plan models (hidden and intermediate ≤ \(1 << 20), layers ≤ \(1 << 12), vocabulary, positions and labels ≤ \(1 << 24))")
            }
            return (ScalingShape(gpt2: c, languageModel: folder.kind == .gpt2LanguageModel), c.path, c.maxPositions, folder.config)
        }
    }

    func run() throws {
        let (shape, name, positions, folderConfig) = try shape()
        guard seqLen <= positions else {
            throw ValidationError("--seq-len \(seqLen) exceeds the \(positions) positions of \(name)")
        }
        let perRank = batchPerRank ?? (batchSize == nil ? 32 : nil)
        var tps: Double
        var source: String
        if let t = tokensPerSPerRank {
            tps = t; source = "given"
        } else if measure {
            let batch = min(perRank ?? batchSize ?? 32, 8)
            switch folderConfig {
            case .encoder(let c):
                let r = ModelBenchmark.run(config: c, batch: batch, seq: seqLen, steps: 3, warmup: 1, threads: threads)
                tps = r.tokens_per_s
            case .gpt2(let c):
                guard shape.headParams > 0 else {
                    throw ValidationError("--measure times BERT-family models and GPT-2 language models; for a GPT-2 classifier pass --tokens-per-s-per-rank (e.g. from `disttrain bench --config`)")
                }
                tps = GPT2Benchmark.runTraining(config: c, batch: batch, seq: seqLen, steps: 3, warmup: 1,
                                               threads: threads).tokens_per_s
            }
            source = "measured (bench, batch \(batch), \(threads) thread(s))"
        } else {
            let mini = ScalingShape(config: ModelBenchmark.miniLMConfig())
            tps = Self.defaultTokensPerS * mini.flopsPerToken(seq: 128) / shape.flopsPerToken(seq: seqLen)
            source = "default (MiniLM bench figure scaled by FLOPs per token)"
        }
        var settings = ScalingSettings(tokensPerSecondPerRank: tps, seqLen: seqLen, memoryBytesPerSecond: memoryGbps * 1e9)
        settings.overlap = ScalingOverlap(rawValue: overlap) ?? .polled
        if let w = pollWindow { settings.pollWindowBytes = try Self.bytes(w) }
        settings.touchedRows = touchedRows
        settings.zero = !noShardOptimizer
        settings.gradBytes = gradCommDtype == "bf16" ? 2 : 4
        let alpha = try Self.seconds(latency)
        let ranks = try nodeCounts().map { $0.map { $0 * ranksPerNode } } ?? (0...9).map { 1 << $0 }
        if !json {
            print(String(format: "shape: %@ (%d layers, %.1fM parameters), %@, seq %d; %.0f tokens/s per rank, %@; "
                         + "%d ranks per node; α %@; overlap %@; node memory %.0f GB/s; %@; gradients %@ across nodes",
                         name, shape.layers, Double(shape.totalParams) / 1e6,
                         perRank.map { "batch \($0) per rank" } ?? "global batch \(batchSize ?? 0)",
                         seqLen, tps, source, ranksPerNode, latency, overlapDescription(settings.pollWindowBytes), memoryGbps,
                         noShardOptimizer ? "AdamW on every rank" : "ZeRO-1", gradCommDtype))
        }
        for rateString in bandwidth.split(separator: ",") {
            let bps = try Self.rate(String(rateString))
            let link = ScalingLink(bytesPerSecond: bps, latency: alpha)
            let rows = ScalingModel.table(shape: shape, ranks: ranks, ranksPerNode: ranksPerNode, globalBatch: batchSize,
                                          batchPerRank: perRank, link: link, settings: settings)
            if json {
                for r in rows {
                    print(Self.jsonRow(r, link: rateString.trimmingCharacters(in: .whitespaces), bps: bps, overlap: overlap,
                                       pollWindow: settings.overlap == .polled ? settings.pollWindowBytes : nil))
                }
                continue
            }
            print("\nlink \(rateString.trimmingCharacters(in: .whitespaces)) each way")
            print("ranks  nodes×local  batch  compute_ms  intra_ms  inter_ms  allreduce           exposed_ms  step_ms  tokens/s  efficiency")
            for r in rows {
                let topo = "\(r.nodes)×\(r.ranksPerNode)"
                print(String(format: "%5d  ", r.ranks) + Self.pad(topo, 11) + String(format: "  %5d  %10.1f  %8.1f  %8.1f  ",
                             r.globalBatch, r.computeS * 1e3, r.intraS * 1e3, r.interS * 1e3)
                      + Self.pad(r.interAlgorithm, 18, left: true)
                      + String(format: "  %10.1f  %7.1f  %8.0f  %9.0f%%", r.exposedS * 1e3, r.stepS * 1e3, r.tokensPerS,
                               r.efficiency * 100))
            }
            if rows.isEmpty { print("(no rank count divides the global batch \(batchSize ?? 0))") }
        }
    }

    /// The header's overlap: "polled (window 128 KiB per connection each way)", "layers" or "none".
    func overlapDescription(_ window: Double) -> String {
        guard overlap == ScalingOverlap.polled.rawValue else { return overlap }
        let w = window >= 1024 && window.truncatingRemainder(dividingBy: 1024) == 0
            ? String(format: "%.0f KiB", window / 1024) : String(format: "%.0f bytes", window)
        return "polled (window \(w) per connection each way)"
    }

    /// `s` padded with spaces to `width` characters (right-aligned unless `left`).
    static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? s + fill : fill + s
    }

    static func jsonRow(_ r: ScalingPrediction, link: String, bps: Double, overlap: String, pollWindow: Double?) -> String {
        var obj: [String: Any] = [
            "link": link, "link_bytes_per_s": bps, "ranks": r.ranks, "nodes": r.nodes, "ranks_per_node": r.ranksPerNode,
            "global_batch": r.globalBatch, "compute_s": r.computeS, "optimizer_s": r.optimizerS, "intra_s": r.intraS,
            "inter_s": r.interS, "inter_algorithm": r.interAlgorithm, "exposed_s": r.exposedS, "hidden_s": r.hiddenS,
            "step_s": r.stepS, "tokens_per_s": r.tokensPerS, "efficiency": r.efficiency, "overlap": overlap,
        ]
        if let pollWindow { obj["poll_window_bytes"] = pollWindow }
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
