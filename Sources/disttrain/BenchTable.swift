// `disttrain bench --table`: every benchmark configuration in its own fresh process (this binary, spawned), repeated
// --runs times in interleaved rounds so that a change in the machine's load hits every row alike, then one table of
// medians: the MiniLM step in fp32 and bf16 at 1 and 2 threads, 1 process vs 2 MPI ranks (aggregate throughput and
// the all-reduce against a bare MPI_Allreduce), the GPT-2 6x384 shape (step and generation), and, given --model and
// --train-file, launch → first optimizer step of a real `train`.
// Deliberately not here: the measurements themselves (Model's ModelBenchmark/GPT2Benchmark, Training's
// ScalingBenchmark, the trainer's launch_to_first_step_s); this file only runs and summarises them.
import Foundation
import Model      // the benchmark result types the table prints
import Tokenizers // JSONLines: the one JSON-line encoder

struct BenchTable {
    let runs: Int
    let steps: Int
    let model: String?
    let trainFile: String?

    struct Row {
        let name: String
        /// Child command lines (one per process the row needs in a round); the row's figures come from `summarise`.
        let commands: [[String]]
        let summarise: ([[String: Any]]) -> String
    }

    func run() throws {
        let bin = Bundle.main.executablePath ?? CommandLine.arguments[0]
        let mpirun = ["/usr/bin/env", "mpirun", "--allow-run-as-root", "-n", "2", "--bind-to", "core", bin]
        let s = ["--steps", "\(steps)"]
        let bf16 = MatmulPrecision.bf16Supported
        func num(_ o: [String: Any], _ k: String) -> Double { (o[k] as? NSNumber)?.doubleValue ?? .nan }
        func step(_ rs: [[String: Any]]) -> String {
            let t = median(rs.map { num($0, "tokens_per_s") }), m = median(rs.map { num($0, "mfu") })
            return String(format: "%8.0f tokens/s  MFU %.2f  peak RSS %4.0f MB", t, m, median(rs.map { num($0, "peak_rss_mb") }))
        }
        var rows: [Row] = []
        for threads in [1, 2] {
            rows.append(Row(name: "MiniLM 32x128 fp32, \(threads) thread\(threads > 1 ? "s" : "")",
                            commands: [[bin, "bench", "--threads", "\(threads)"] + s], summarise: step))
            if bf16 {
                rows.append(Row(name: "MiniLM 32x128 bf16, \(threads) thread\(threads > 1 ? "s" : "")",
                                commands: [[bin, "bench", "--bf16", "--threads", "\(threads)"] + s], summarise: { rs in
                    // Each child prints its fp32 step line, its bf16 step line, then the ratio of the two.
                    let steps = rs.filter { $0["tokens_per_s"] != nil }
                    let bfTok = stride(from: 1, to: steps.count, by: 2).map { num(steps[$0], "tokens_per_s") }
                    let ratios = rs.compactMap { ($0["bf16_over_fp32_tokens_per_s"] as? NSNumber)?.doubleValue }
                    return String(format: "%8.0f tokens/s  %.2fx the fp32 step of the same process", median(bfTok), median(ratios))
                }))
            }
        }
        for b in [16, 32] {
            let dp = ["bench", "--threads", "1", "--batch-size", "\(b)"] + s
            rows.append(Row(name: "MiniLM \(b)x128/rank: 1 process vs 2 ranks",
                            commands: [[bin] + dp + ["--data-parallel"], mpirun + dp], summarise: { rs in
                let one = rs.filter { num($0, "world_size") == 1 }, two = rs.filter { num($0, "world_size") == 2 }
                let t1 = median(one.map { num($0, "tokens_per_s") }), t2 = median(two.map { num($0, "tokens_per_s") })
                return String(format: "%8.0f vs %.0f tokens/s = %.2fx; all-reduce %.1f MB/step, %.3f s/step in the step, alone %.2f GB/s bus = %.2f of bare MPI_Allreduce",
                              t1, t2, t2 / t1, median(two.map { num($0, "allreduce_bytes") }) / 1e6, median(two.map { num($0, "allreduce_s_median") }),
                              median(two.map { num($0, "allreduce_bus_gbps") }), median(two.map { num($0, "allreduce_vs_bare") }))
            }))
        }
        rows.append(Row(name: "GPT-2 6x384 16x128 fp32, 1 thread",
                        commands: [[bin, "generate", "--bench", "--threads", "1", "--bench-steps", "\(steps)"]], summarise: { rs in
            let st = rs.filter { $0["mfu"] != nil }, g = rs.filter { $0["cached_tokens_per_s"] != nil }
            return step(st) + String(format: "; generation %.0f tokens/s cached, %.0f recomputing",
                                     median(g.map { num($0, "cached_tokens_per_s") }), median(g.map { num($0, "recompute_tokens_per_s") }))
        }))
        if let model, let trainFile {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("disttrain-bench-\(getpid())").path
            let train = ["train", "--model", model, "--train-file", trainFile, "--output-dir", out, "--max-steps", "1",
                         "--batch-size", "32", "--threads", "1", "--resume", "never", "--no-report", "--log-level", "warning"]
            rows.append(Row(name: "launch → first optimizer step (train)", commands: [[bin] + train, mpirun + train], summarise: { rs in
                let t = rs.compactMap { ($0["launch_to_first_step_s"] as? NSNumber)?.doubleValue }
                let one = stride(from: 0, to: t.count, by: 2).map { t[$0] }, two = stride(from: 1, to: t.count, by: 2).map { t[$0] }
                return String(format: "%.2f s one process, %.2f s under mpirun -n 2", median(one), median(two))
            }))
        }
        var results = [[[String: Any]]](repeating: [], count: rows.count)
        let loadBefore = loadAverage()
        FileHandle.standardError.write(Data("bench --table: \(rows.count) rows × \(runs) runs, load \(loadBefore)\n".utf8))
        for round in 0..<runs {
            for (i, row) in rows.enumerated() {
                for cmd in row.commands {
                    FileHandle.standardError.write(Data("  [\(round + 1)/\(runs)] \(row.name)\n".utf8))
                    results[i] += try runChild(cmd)
                }
            }
        }
        print("| what | median of \(runs) runs (load before: \(loadBefore)) |")
        print("|---|---|")
        for (i, row) in rows.enumerated() { print("| \(row.name) | \(row.summarise(results[i])) |") }
        print("load after: \(loadAverage())")
    }

    /// Runs one child and returns every JSON object line it printed on stdout (eval_results lines included).
    func runChild(_ cmd: [String]) throws -> [[String: Any]] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cmd[0])
        p.arguments = Array(cmd.dropFirst())
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw BenchTableError("`\(cmd.joined(separator: " "))` exited with \(p.terminationStatus)")
        }
        return JSONLines.lenientObjects(data)
    }

    func median(_ x: [Double]) -> Double {
        let v = x.filter { $0.isFinite }.sorted()
        return v.isEmpty ? .nan : v[v.count / 2]
    }

    func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }
}

struct BenchTableError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
