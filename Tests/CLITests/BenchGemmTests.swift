// `bench --gemm` through the real binary: the encoder's Linear layout by default, GPT-2's Conv1D layout (weights
// [in, out]) with --gpt2 or a GPT-2 config; one JSON line per product (timed through the model's own path in bf16
// and fp32) and a per-step total. --gpt2 outside --gemm, or with a BERT config, is a usage error naming it.
// Skipped (the timing part) on a CPU without AVX512-BF16, where --gemm is a usage error.
import Foundation
import XCTest

final class BenchGemmTests: XCTestCase {
    private func lines(_ s: String) throws -> [[String: Any]] {
        try s.split(separator: "\n").filter { $0.hasPrefix("{") }.map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func testGPT2FlagOutsideGemmOrWithABertConfigIsRefused() throws {
        let bert = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/bert-tiny-cls/config.json").path
        for args in [["bench", "--gpt2"], ["bench", "--table", "--gpt2"], ["bench", "--rollout", "--gpt2"],
                     ["bench", "--gemm", "--gpt2", "--config", bert]] {
            let r = try CLI.run(args, timeout: 30)
            if r.stderr.contains("AVX512-BF16") { continue }   // --gemm itself is refused on this CPU
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--gpt2"), "\(args) should name --gpt2: \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args) must not print figures")
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
        }
    }

    /// The tiny GPT-2 fixture (2 layers, n_embd 16, n_inner 48, vocab 50257): the twelve Conv1D products with their
    /// shapes (forward NN, dW TN, dx NT), each run `layers` times per step, the LM head's three (not in bf16 in the
    /// step: per_step 0), and the total over the per-step rows.
    func testConv1DLayoutOfAGPT2Config() throws {
        let cfg = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures/gpt2-tiny-lm/config.json").path
        let r = try CLI.run(["bench", "--gemm", "--config", cfg, "--batch-size", "2", "--seq-len", "8"], timeout: 120)
        if r.status == 2 && r.stderr.contains("AVX512-BF16") { throw XCTSkip("this CPU has no AVX512-BF16") }
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try lines(r.stdout)
        XCTAssertEqual(rows.count, 1 + 12 + 3 + 1, r.stdout)
        XCTAssertEqual(rows.first?["use"] as? String, "bf16 path")
        XCTAssertTrue(["vdpbf16ps", "sgemm on bf16-rounded inputs"].contains(rows.first?["bf16_path"] as? String ?? ""), r.stdout)
        func row(_ use: String) throws -> [String: Any] { try XCTUnwrap(rows.first { ($0["use"] as? String) == use }, use) }
        // (use, transA, transB, m, n, k) for 16 tokens, C 16, FF 48
        let want: [(String, Bool, Bool, Int, Int, Int)] = [
            ("conv1d forward c_attn 16->48", false, false, 16, 48, 16), ("conv1d dW c_attn 16->48", true, false, 16, 48, 16),
            ("conv1d dx c_attn 16->48", false, true, 16, 16, 48), ("conv1d forward mlp.c_proj 48->16", false, false, 16, 16, 48),
            ("conv1d dW mlp.c_proj 48->16", true, false, 48, 16, 16), ("conv1d dx mlp.c_proj 48->16", false, true, 16, 48, 16),
        ]
        for (use, ta, tb, m, n, k) in want {
            let o = try row(use)
            XCTAssertEqual(o["transA"] as? Bool, ta, use); XCTAssertEqual(o["transB"] as? Bool, tb, use)
            XCTAssertEqual([o["m"], o["n"], o["k"]].map { $0 as? Int }, [m, n, k], use)
            XCTAssertEqual(o["per_step"] as? Int, 2, use)
            XCTAssertGreaterThan((o["bf16_ms"] as? NSNumber)?.doubleValue ?? 0, 0, use)
            XCTAssertGreaterThan((o["dot_kernel_ms"] as? NSNumber)?.doubleValue ?? 0, 0, use)
        }
        XCTAssertEqual(try row("lm head logits (fp32 in the model)")["per_step"] as? Int, 0)
        let total = try XCTUnwrap(rows.last)
        XCTAssertEqual(total["use"] as? String, "conv1d products per step")
        let sum = rows.dropLast().reduce(0.0) {
            $0 + Double(($1["per_step"] as? Int) ?? 0) * (($1["bf16_ms"] as? NSNumber)?.doubleValue ?? 0)
        }
        XCTAssertEqual((total["bf16_ms_per_step"] as? NSNumber)?.doubleValue ?? -1, sum, accuracy: 1e-9 + 1e-9 * sum)
    }

    /// Without a config the default is MiniLM's Linear layout; --gpt2 switches to GPT-2 6×384's Conv1D layout.
    func testDefaultLayoutsWithAndWithoutGPT2() throws {
        let small = ["--batch-size", "1", "--seq-len", "4"]
        let enc = try CLI.run(["bench", "--gemm"] + small, timeout: 120)
        if enc.status == 2 && enc.stderr.contains("AVX512-BF16") { throw XCTSkip("this CPU has no AVX512-BF16") }
        XCTAssertEqual(enc.status, 0, enc.stderr)
        let e = try lines(enc.stdout)
        XCTAssertTrue(e.contains { ($0["use"] as? String) == "linear forward 384->1536" && ($0["per_step"] as? Int) == 6 }, enc.stdout)
        XCTAssertEqual(e.last?["use"] as? String, "linear products per step")
        let g = try CLI.run(["bench", "--gemm", "--gpt2"] + small, timeout: 300)
        XCTAssertEqual(g.status, 0, g.stderr)
        let rows = try lines(g.stdout)
        XCTAssertTrue(rows.contains { ($0["use"] as? String) == "conv1d forward mlp.c_fc 384->1536" && ($0["per_step"] as? Int) == 6 }, g.stdout)
        XCTAssertTrue(rows.contains { ($0["use"] as? String) == "lm head dW (fp32 in the model)" && ($0["m"] as? Int) == 50257 }, g.stdout)
    }
}
