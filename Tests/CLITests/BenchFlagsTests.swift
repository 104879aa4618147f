// `bench` and `generate --bench` refuse flags that do not apply to the chosen mode (issue 22 point 8): each case was
// silently ignored before. Each refusal is one line, exit 2, and names the flag; nothing is benchmarked.
import XCTest

final class BenchFlagsTests: XCTestCase {
    private func assertRefused(_ args: [String], naming flag: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLI.run(args, timeout: 30)
        XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(flag), "\(args) should name \(flag): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stdout, "", "\(args) must not print figures", file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error"), file: file, line: line)
    }

    func testFlagsOutsideTheirModeAreRefused() throws {
        try assertRefused(["bench", "--runs", "2"], naming: "--runs")
        try assertRefused(["bench", "--train-file", "x.jsonl"], naming: "--train-file")
        try assertRefused(["bench", "--table", "--bf16"], naming: "--bf16")
        try assertRefused(["bench", "--table", "--lora-r", "4"], naming: "--lora-r")
        try assertRefused(["bench", "--gemm", "--lora-r", "4"], naming: "--lora-r")
        try assertRefused(["bench", "--gemm", "--bf16"], naming: "--bf16")
        try assertRefused(["bench", "--lora-r", "4", "--bf16"], naming: "--bf16")
        try assertRefused(["bench", "--no-shared-memory"], naming: "--no-shared-memory")
        try assertRefused(["bench", "--model", "m", "--config", "c.json"], naming: "--config")
        try assertRefused(["generate", "--bench", "--model", "m"], naming: "--model")
        try assertRefused(["generate", "--bench", "--prompt", "hi"], naming: "--prompt")
    }

    /// `bench --model DIR` without --table benchmarks DIR's shape (it used to bench MiniLM whatever DIR was): the
    /// tiny BERT fixture's shape gives a different FLOP count from the default MiniLM shape.
    func testModelWithoutTableBenchesThatModelsShape() throws {
        let tiny = TestPaths.fixture("bert-tiny-cls").path
        let common = ["bench", "--steps", "1", "--batch-size", "2", "--seq-len", "8"]
        let a = try CLI.run(common + ["--model", tiny], timeout: 60)
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try CLI.run(common + ["--config", tiny + "/config.json"], timeout: 60)
        XCTAssertEqual(b.status, 0, b.stderr)
        func flops(_ s: String) throws -> Double {
            let line = try XCTUnwrap(s.split(separator: "\n").first { $0.hasPrefix("{") })
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try XCTUnwrap((o["flops_per_step"] as? NSNumber)?.doubleValue)
        }
        XCTAssertEqual(try flops(a.stdout), try flops(b.stdout))
        let miniLM = try CLI.run(common, timeout: 120)
        XCTAssertEqual(miniLM.status, 0, miniLM.stderr)
        XCTAssertNotEqual(try flops(a.stdout), try flops(miniLM.stdout))
        XCTAssertTrue(a.stderr.contains("2 warm-up + 1 timed steps"), "bench says what it runs: \(a.stderr)")
    }

    /// `bench --config <GPT-2 config>` times the sequence classifier's step (the reward model's), the last block on
    /// the pooled rows against every row; the tiny GPT-2 fixture's shape runs, the data-parallel and bf16 flags are
    /// refused (that step is one process, fp32).
    func testGPT2ConfigBenchesTheClassifierStep() throws {
        let cfg = TestPaths.fixture("gpt2-tiny-cls").path + "/config.json"
        let r = try CLI.run(["bench", "--config", cfg, "--steps", "1", "--batch-size", "2", "--seq-len", "8"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("{") })
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in ["head_rows_tokens_per_s", "all_rows_tokens_per_s", "head_rows_speedup"] {
            XCTAssertGreaterThan(try XCTUnwrap((o[key] as? NSNumber)?.doubleValue, key), 0, key)
        }
        XCTAssertEqual((o["layers"] as? NSNumber)?.intValue, 2)
        try assertRefused(["bench", "--config", cfg, "--data-parallel"], naming: "--data-parallel")
        try assertRefused(["bench", "--config", cfg, "--bf16"], naming: "--bf16")
    }

    /// OpenBLAS 0.3.21 falls back to its generic SSE3 kernels ("Prescott") on CPUs it does not know; the binary then
    /// re-executes itself with kernels the CPU runs (ComputeThreads.betterBLASCoretype: 31 → 148 GFLOP/s sgemm on
    /// an Intel Xeon VM). On a CPU with AVX2+FMA or AVX-512 the kernels reported must not be a generic family; a
    /// user's own OPENBLAS_CORETYPE is kept.
    func testBLASKernelsAreNotTheGenericFallback() throws {
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ").map(String.init)) } ?? []
        try XCTSkipUnless(flags.contains("avx512f") || (flags.contains("avx2") && flags.contains("fma")), "no AVX2/AVX-512 here")
        func core(_ env: [String: String]) throws -> String {
            let r = try CLI.run(["bench", "--steps", "1", "--batch-size", "1", "--seq-len", "8"], timeout: 60, environment: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("{") })
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return try XCTUnwrap(o["blas_core"] as? String)
        }
        let chosen = try core([:])
        XCTAssertFalse(["prescott", "core2", "penryn", "nehalem", "unknown"].contains(chosen.lowercased()),
                       "OpenBLAS runs its generic \(chosen) kernels on a CPU with AVX2/AVX-512")
        XCTAssertEqual(try core(["OPENBLAS_CORETYPE": "PRESCOTT"]), "Prescott", "a user's OPENBLAS_CORETYPE is kept")
    }
}
