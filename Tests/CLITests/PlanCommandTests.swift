// `disttrain plan` through the built binary: bad flags are one line naming the flag, exit 2, no trace; a good run
// prints one JSON row per rank count and link whose figures are consistent with each other and with the library
// model (ScalingModelTests checks the arithmetic by hand).
import Foundation
import XCTest

final class PlanCommandTests: XCTestCase {
    func assertUsageError(_ args: [String], mentions needle: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(["plan"] + args, timeout: 60)
        XCTAssertEqual(r.status, 2, "plan \(args): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertTrue(lines.first?.contains(needle) ?? false, "plan \(args): first line lacks '\(needle)': \(r.stderr)", file: file, line: line)
        // One error line (ArgumentParser may add its "Help:" pointer), never a Swift trace.
        XCTAssertLessThanOrEqual(lines.count, 2, r.stderr, file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stdout.isEmpty, "plan \(args) printed a table: \(r.stdout)", file: file, line: line)
    }

    func testBadFlagsAreOneLineAndExit2() throws {
        try assertUsageError(["--bandwidth", "10gigs"], mentions: "--bandwidth 10gigs")
        try assertUsageError(["--bandwidth", "10gbit,"], mentions: "--bandwidth")
        try assertUsageError(["--latency", "fast"], mentions: "--latency fast")
        try assertUsageError(["--nodes", "1,0,4"], mentions: "--nodes 1,0,4")
        try assertUsageError(["--nodes", "9223372036854775807"], mentions: "--nodes")   // would overflow ranks
        try assertUsageError(["--batch-per-rank", "9223372036854775807"], mentions: "--batch-size/--batch-per-rank")
        try assertUsageError(["--overlap", "maybe"], mentions: "--overlap maybe: expected polled, layers or none")
        try assertUsageError(["--poll-window", "lots"], mentions: "--poll-window lots: expected a size in bytes")
        try assertUsageError(["--poll-window=-1k"], mentions: "--poll-window -1k")
        try assertUsageError(["--poll-window", "0.5"], mentions: "--poll-window 0.5")
        try assertUsageError(["--overlap", "layers", "--poll-window", "1m"], mentions: "--poll-window applies to --overlap polled")
        try assertUsageError(["--ranks-per-node", "0"], mentions: "--ranks-per-node")
        try assertUsageError(["--tokens-per-s-per-rank", "0"], mentions: "--tokens-per-s-per-rank")
        try assertUsageError(["--batch-size", "64", "--batch-per-rank", "8"], mentions: "--batch-size")
        try assertUsageError(["--config", "/nonexistent/config.json"], mentions: "/nonexistent/config.json")
        try assertUsageError(["--seq-len", "4096"], mentions: "--seq-len 4096")
        try assertUsageError(["--measure", "--tokens-per-s-per-rank", "100"], mentions: "--tokens-per-s-per-rank")
        try assertUsageError(["--grad-comm-dtype", "fp16"], mentions: "--grad-comm-dtype fp16")
    }

    /// bf16 gradient traffic moves fewer inter-node seconds than float32 on the same topology; on one node nothing
    /// crosses; --no-shard-optimizer models the replicated AdamW (more optimizer time per rank at 8 ranks per node).
    func testGradCommDtypeAndShardingChangeTheModel() throws {
        func rows(_ extra: [String]) throws -> [[String: Any]] {
            let r = try CLI.run(["plan", "--json", "--nodes", "1,4", "--ranks-per-node", "8", "--bandwidth", "10gbit",
                                 "--tokens-per-s-per-rank", "1000"] + extra, timeout: 60)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try r.stdout.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        }
        func d(_ row: [String: Any], _ k: String) -> Double { (row[k] as? NSNumber)?.doubleValue ?? .nan }
        let fp32 = try rows([]), bf16 = try rows(["--grad-comm-dtype", "bf16"]), replicated = try rows(["--no-shard-optimizer"])
        XCTAssertEqual(fp32.count, 2); XCTAssertEqual(bf16.count, 2); XCTAssertEqual(replicated.count, 2)
        XCTAssertEqual(d(fp32[0], "inter_s"), 0); XCTAssertEqual(d(bf16[0], "inter_s"), 0)
        XCTAssertLessThan(d(bf16[1], "inter_s"), d(fp32[1], "inter_s"))
        XCTAssertGreaterThan(d(bf16[1], "inter_s"), 0.5 * d(fp32[1], "inter_s"), "the parameter all-gather stays float32")
        XCTAssertGreaterThan(d(replicated[1], "optimizer_s"), 8 * d(fp32[1], "optimizer_s"))
    }

    func testJSONRowsForEachLinkAndRankCount() throws {
        let r = try CLI.run(["plan", "--json", "--nodes", "1,2,4", "--ranks-per-node", "2", "--bandwidth", "1gbit,10gbit",
                             "--tokens-per-s-per-rank", "1000", "--latency", "50us"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try r.stdout.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(rows.count, 6)
        XCTAssertEqual(rows.map { $0["ranks"] as? Int }, [2, 4, 8, 2, 4, 8])
        XCTAssertEqual(rows.map { $0["link"] as? String }, ["1gbit", "1gbit", "1gbit", "10gbit", "10gbit", "10gbit"])
        for row in rows {
            let d = { (k: String) in row[k] as? Double ?? .nan }
            // 32 samples × 128 tokens per rank at 1000 tokens/s.
            XCTAssertEqual(d("compute_s"), 4.096, accuracy: 1e-9)
            XCTAssertEqual(d("step_s"), d("compute_s") + d("exposed_s") + d("optimizer_s"), accuracy: 1e-9)
            XCTAssertEqual(d("hidden_s"), d("intra_s") + d("inter_s") - d("exposed_s"), accuracy: 1e-9)
            XCTAssertGreaterThan(d("efficiency"), 0)
            XCTAssertLessThanOrEqual(d("efficiency"), 1.000001)
            if row["nodes"] as? Int == 1 { XCTAssertEqual(d("inter_s"), 0) } else { XCTAssertGreaterThan(d("inter_s"), 0) }
        }
        // The same topology is slower on the slower link.
        XCTAssertGreaterThan(rows[2]["inter_s"] as? Double ?? 0, rows[5]["inter_s"] as? Double ?? .infinity)
    }

    /// The default models the trainer (polled at stage boundaries, a 128 KiB window); a larger window hides more, up
    /// to the ideal progress engine (`layers`), and no window is `none`. The 2-node MiniLM case of docs/performance.md.
    func testPollWindowMovesPolledBetweenNoneAndLayers() throws {
        var rows: [[String: Any]] = []
        func step(_ extra: [String]) throws -> Double {
            let r = try CLI.run(["plan", "--json", "--nodes", "2", "--ranks-per-node", "1", "--batch-size", "32",
                                 "--seq-len", "40", "--touched-rows", "650", "--tokens-per-s-per-rank", "2133",
                                 "--bandwidth", "1gbit"] + extra, timeout: 60)
            XCTAssertEqual(r.status, 0, r.stderr)
            let row = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            rows.append(row)
            return (row["step_s"] as? NSNumber)?.doubleValue ?? .nan
        }
        let polled = try step([]), explicit = try step(["--overlap", "polled", "--poll-window", "128k"])
        let wide = try step(["--poll-window", "1m"]), closed = try step(["--poll-window", "0"])
        let layers = try step(["--overlap", "layers"]), none = try step(["--overlap", "none"])
        XCTAssertEqual(polled, explicit, accuracy: 1e-12)
        XCTAssertEqual(closed, none, accuracy: 1e-9)
        XCTAssertLessThan(layers, wide); XCTAssertLessThan(wide, polled); XCTAssertLessThan(polled, none)
        XCTAssertEqual(rows.map { $0["overlap"] as? String }, ["polled", "polled", "polled", "polled", "layers", "none"])
        XCTAssertEqual(rows.map { ($0["poll_window_bytes"] as? NSNumber)?.doubleValue },
                       [131_072, 131_072, 1_048_576, 0, nil, nil])
        let header = try CLI.run(["plan", "--nodes", "2", "--bandwidth", "1gbit"], timeout: 60)
        XCTAssertTrue(header.stdout.contains("overlap polled (window 128 KiB per connection each way)"), header.stdout)
    }

    func testTableNamesTheAssumptions() throws {
        let r = try CLI.run(["plan", "--bandwidth", "10gbit"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("1681 tokens/s per rank"), r.stdout)
        XCTAssertTrue(r.stdout.contains("link 10gbit each way"), r.stdout)
        // 1, 2, ..., 512 ranks.
        XCTAssertTrue(r.stdout.contains("\n  512  "), r.stdout)
    }

    /// --measure runs a short bench at the given shape (the tiny BERT fixture: fast) and uses its tokens/s.
    func testMeasureUsesABenchRunAtTheShape() throws {
        let config = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls/config.json").path
        let r = try CLI.run(["plan", "--measure", "--config", config, "--seq-len", "16", "--nodes", "1,2",
                             "--bandwidth", "1gbit", "--json"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try r.stdout.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(rows.count, 2)
        XCTAssertGreaterThan(rows[0]["compute_s"] as? Double ?? 0, 0)
    }

    /// A GPT-2 LM's shape (the preference pipeline's 4×256 config): the header names its blocks and parameters, and
    /// per token it costs more than MiniLM at the default rate's scaling (its tied head is a 50,257-wide product);
    /// --measure times the GPT-2 training step on the tiny fixture.
    func testGPT2Shapes() throws {
        let lm = CLI.repoRoot.appendingPathComponent("configs/gpt2/gpt2-4x256.json").path
        let r = try CLI.run(["plan", "--config", lm, "--seq-len", "64", "--nodes", "1,2", "--bandwidth", "10gbit"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("(4 layers, 16.0M parameters)"), r.stdout)
        let tiny = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm/config.json").path
        let m = try CLI.run(["plan", "--measure", "--config", tiny, "--seq-len", "16", "--nodes", "2", "--bandwidth", "1gbit",
                             "--json"], timeout: 120)
        XCTAssertEqual(m.status, 0, m.stderr)
        let row = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(m.stdout.split(separator: "\n")[0].utf8)) as? [String: Any])
        XCTAssertGreaterThan(row["compute_s"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(row["inter_s"] as? Double ?? 0, 0)
        // A GPT-2 classifier cannot be --measure'd (the bench times the LM head): one line naming the alternative.
        let cls = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-cls/config.json").path
        try assertUsageError(["--measure", "--config", cls, "--seq-len", "16"], mentions: "--tokens-per-s-per-rank")
    }
}
