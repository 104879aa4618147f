// Benchmark.swift: the training-step benchmark behind `disttrain bench`: forward + cross-entropy + backward
// (gradients zeroed each step; no optimizer) on random tokens at a model shape, with MFU measured against the
// sgemm rate of the model's largest matmul in the same process and thread setting.
// flops_per_step = 6·N_non-embedding·tokens + 12·layers·hidden·seq·tokens (the definition; N excludes the
// word/position/token-type tables), whatever the model skips: the sequence head's last layer runs its query, attention,
// output projection and FFN on the first token of each row only, so `computed_flops_per_step` (and `hfu`, the
// share of the sgemm rate the computed FLOPs reach) is lower. With MatmulPrecision.bf16 the Linear products run in bf16; the MFU is still
// against the fp32 sgemm rate (so it can exceed 1). Also: the bf16-vs-sgemm GEMM rates at the model's shapes.
// Deliberately not here: printing or CLI flags (the executable does that).
import CBLAS
import CKernels
import Foundation
import SplitMix

/// A result that `bench` prints as one JSON line: JSONEncoder's compact form with sorted keys.
public protocol JSONLineResult: Encodable {}

extension JSONLineResult {
    /// One JSON line with sorted keys (no trailing newline).
    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }
}

public struct BenchmarkResult: Sendable, Codable, JSONLineResult {
    public var batch: Int
    public var seq: Int
    public var threads: Int
    public var steps: Int
    public var tokens_per_s: Double
    public var step_s_median: Double
    public var step_s_min: Double
    public var step_s_max: Double
    /// Process CPU time (user + system, all threads) per step, median: at 1 thread the step's cost without the
    /// time other processes held the core (a loaded machine inflates step_s, not this).
    public var step_cpu_s_median: Double? = nil
    public var flops_per_step: Double
    public var achieved_gflops: Double
    public var sgemm_gflops: Double
    /// achieved_gflops over the GEMM rate of the step's own precision: cblas_sgemm for fp32, the bf16 kernel
    /// (`gemm_gflops`) for bf16 — so a bf16 step is not reported above 1 against the fp32 rate.
    public var mfu: Double
    /// The FLOPs the step computes (flops_per_step less what the sequence head's last layer skips on every row but
    /// the first of each sample), and their rate over the same basis as `mfu` (hardware FLOPs utilisation).
    public var computed_flops_per_step: Double? = nil
    public var hfu: Double? = nil
    /// bf16 only: the bf16 GEMM kernel's rate at the probe shape (the basis of `mfu`), and achieved_gflops over the
    /// fp32 sgemm rate (how much faster than an fp32 GEMM-bound step it runs).
    public var gemm_gflops: Double? = nil
    public var over_fp32_sgemm: Double? = nil
    public var peak_rss_mb: Double
    public var activation_bytes: Int
    /// "fp32" or "bf16" (the Linear products).
    public var precision: String = "fp32"
    /// bf16 only: how this CPU runs the bf16 products (BF16Path.chosen) and the issue rates that chose it.
    public var bf16_path: String? = nil
    public var bf16_dot_gflops: Double? = nil
    public var fp32_fma_gflops: Double? = nil
    /// The kernel family OpenBLAS runs (ComputeThreads.blasCore).
    public var blas_core: String = ComputeThreads.blasCore
}

/// User + system CPU seconds of this process so far (all threads).
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

extension BenchmarkResult {
    /// The median of the per-step process CPU times.
    func withCPU(_ cpu: [Double]) -> BenchmarkResult {
        var r = self
        let s = cpu.sorted()
        r.step_cpu_s_median = s.isEmpty ? nil : s[s.count / 2]
        return r
    }

    /// With .bf16: the path and issue rates of BF16Path filled in.
    func withBF16Path(_ precision: MatmulPrecision) -> BenchmarkResult {
        guard precision == .bf16 else { return self }
        var r = self
        r.bf16_path = BF16Path.chosen.rawValue
        r.bf16_dot_gflops = BF16Path.rates.bf16GFLOPS
        r.fp32_fma_gflops = BF16Path.rates.fp32GFLOPS
        return r
    }
}

/// `bench --gemm`'s first line: this core's bf16 dot-product and fp32 FMA issue rates and the bf16 path they chose.
public struct BF16PathResult: Sendable, Codable, JSONLineResult {
    public var use = "bf16 path"
    public var bf16_dot_gflops: Double
    public var fp32_fma_gflops: Double
    public var bf16_path: String
    public init() {
        bf16_dot_gflops = BF16Path.rates.bf16GFLOPS
        fp32_fma_gflops = BF16Path.rates.fp32GFLOPS
        bf16_path = BF16Path.chosen.rawValue
    }
}

/// `bench --lora-r`: medians of alternating full and LoRA training steps (see runLoRAComparison).
public struct LoRABenchmarkResult: Sendable, Codable, JSONLineResult {
    public var batch: Int
    public var seq: Int
    public var threads: Int
    public var steps: Int
    public var r: Int
    public var targets: [String]
    public var trainable_parameters: Int
    public var full_step_s_median: Double
    public var lora_step_s_median: Double
    public var lora_over_full: Double
}

public enum ModelBenchmark {
    /// The all-MiniLM-L6-v2 shape (BERT, vocab 30522, hidden 384, 6 layers, 12 heads, FFN 1536, 512 positions),
    /// with its config's dropout (0.1) and 2 labels.
    public static func miniLMConfig() -> ModelConfig {
        let json: [String: Any] = [
            "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
            "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": 0,
            "id2label": ["0": "LABEL_0", "1": "LABEL_1"],
        ]
        return try! ModelConfig(json: json, path: "<all-MiniLM-L6-v2 shape>")
    }

    public static func run(config: ModelConfig, batch: Int, seq: Int, steps: Int, warmup: Int, threads: Int,
                           precision: MatmulPrecision = .fp32) -> BenchmarkResult {
        ComputeThreads.set(threads)
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        var rng = SplitMix64(seed: 1234)
        for e in store.entries {
            let v = store.value(e.name)
            let isNorm = e.name.contains("LayerNorm") || e.name.contains("layer_norm")
            if e.name.hasSuffix(".bias") { v.update(repeating: 0) }
            else if isNorm { v.update(repeating: 1) }
            else { for i in 0..<v.count { v[i] = Float(rng.nextNormal()) * config.initializerRange } }
        }
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: batch, maxSeq: seq)
        model.matmulPrecision = precision
        let NL = config.numLabels
        var dLogits = [Float](repeating: 0, count: batch * NL)
        var times: [Double] = [], cpu: [Double] = []
        // The sgemm rate is sampled between the steps (two calls after each), not only before or after, so that
        // MFU compares like with like on a machine whose load changes during the run.
        let probe = SgemmProbe(m: batch * seq, n: max(config.intermediate, config.hidden), k: config.hidden)
        let bf16Probe = precision == .bf16 ? SgemmProbe(m: batch * seq, n: max(config.intermediate, config.hidden), k: config.hidden, bf16: true) : nil
        _ = probe.measure(); _ = bf16Probe?.measure()
        var rates: [Double] = [probe.measure(), probe.measure()]
        var bf16Rates: [Double] = bf16Probe.map { [$0.measure(), $0.measure()] } ?? []
        for step in 0..<(warmup + steps) {
            let ids = (0..<(batch * seq)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
            let labels = (0..<batch).map { _ in Int32(rng.next() % UInt64(NL)) }
            let tb = TokenBatch(batchSize: batch, seqLen: seq, inputIds: ids,
                                attentionMask: [Int32](repeating: 1, count: batch * seq),
                                sampleIndices: (0..<batch).map { step * batch + $0 })
            let t0 = DispatchTime.now().uptimeNanoseconds, c0 = processCPUSeconds()
            store.zeroGrads()
            let logits = model.forward(tb, dropout: DropoutContext(seed: 42, step: step))
            _ = dLogits.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: labels, batch: batch, classes: NL, scale: 1 / Float(batch), dLogits: $0)
            }
            dLogits.withUnsafeBufferPointer { model.backward(dLogits: $0) }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9, dc = processCPUSeconds() - c0
            if step >= warmup {
                times.append(dt); cpu.append(dc); rates.append(probe.measure()); rates.append(probe.measure())
                if let bf16Probe { bf16Rates.append(bf16Probe.measure()); bf16Rates.append(bf16Probe.measure()) }
            }
        }
        rates.sort(); bf16Rates.sort()
        times.sort()
        let median = times.isEmpty ? 0 : times[times.count / 2]
        let tokens = Double(batch * seq)
        let embedding = store.entries.filter { $0.name.contains("embeddings.") && !$0.name.contains("LayerNorm") }
            .reduce(0) { $0 + $1.count }
        let nonEmb = Double(store.parameterCount - embedding)
        let flops = 6 * nonEmb * tokens + 12 * Double(config.layers * config.hidden * seq) * tokens
        let achieved = median > 0 ? flops / median / 1e9 : 0
        // Skipped in the last layer for the (tokens − batch) rows that do not query: the query, output and FFN
        // products (6 FLOPs per weight per row, forward and backward) and their attention rows (12·hidden·seq each).
        let h = Double(config.hidden), f = Double(config.intermediate), skippedRows = tokens - Double(batch)
        let skipped = model.lastLayerAllRows || config.head != .sequence ? 0
            : 6 * (2 * h * h + 2 * h * f) * skippedRows + 12 * h * Double(seq) * skippedRows
        let computed = flops - skipped
        let peak = rates[rates.count / 2]
        let bf16Peak = bf16Rates.isEmpty ? nil : bf16Rates[bf16Rates.count / 2]
        let basis = bf16Peak ?? peak
        return BenchmarkResult(batch: batch, seq: seq, threads: threads, steps: steps,
                               tokens_per_s: median > 0 ? tokens / median : 0, step_s_median: median,
                               step_s_min: times.first ?? 0, step_s_max: times.last ?? 0, flops_per_step: flops,
                               achieved_gflops: achieved, sgemm_gflops: peak, mfu: basis > 0 ? achieved / basis : 0,
                               computed_flops_per_step: computed,
                               hfu: basis > 0 && median > 0 ? computed / median / 1e9 / basis : 0,
                               gemm_gflops: bf16Peak, over_fp32_sgemm: bf16Peak == nil ? nil : (peak > 0 ? achieved / peak : 0),
                               peak_rss_mb: peakRSSMegabytes(), activation_bytes: model.activationBytes,
                               precision: precision.rawValue).withBF16Path(precision).withCPU(cpu)
    }

    /// One GEMM shape timed in bf16 and fp32 through the model's own product (`gemm`: the bf16 kernel on the compute
    /// pool, or splitSgemm's cblas_sgemm blocks), alternating, median of `reps` each. `per_step`: how many times one
    /// training step runs it (0: not a product the model runs in bf16, shown for comparison).
    public struct GemmShapeResult: Sendable, Codable, JSONLineResult {
        public var use: String
        public var transA: Bool, transB: Bool
        public var m: Int, n: Int, k: Int
        public var threads: Int = 1
        public var per_step: Int = 0
        public var bf16_gflops: Double
        public var sgemm_gflops: Double
        public var speedup: Double
        /// Milliseconds per call (medians): the model's bf16 product (BF16Path.chosen), its fp32 product, and the
        /// vdpbf16ps kernel itself (ck_bf16_gemm on the pool) whichever path is chosen.
        public var bf16_ms: Double = 0
        public var sgemm_ms: Double = 0
        public var dot_kernel_ms: Double = 0
    }

    /// The sum over the rows with per_step > 0: the step's products in ms, bf16 vs fp32.
    public struct GemmStepTotal: Sendable, Codable, JSONLineResult {
        public var use: String
        public var threads: Int
        public var bf16_ms_per_step: Double
        public var sgemm_ms_per_step: Double
        public var speedup: Double
        public init(_ rows: [GemmShapeResult], use: String) {
            self.use = use
            threads = rows.first?.threads ?? 1
            bf16_ms_per_step = rows.reduce(0) { $0 + Double($1.per_step) * $1.bf16_ms }
            sgemm_ms_per_step = rows.reduce(0) { $0 + Double($1.per_step) * $1.sgemm_ms }
            speedup = bf16_ms_per_step > 0 ? sgemm_ms_per_step / bf16_ms_per_step : 0
        }
    }

    /// The products of one encoder training step at (tokens = batch·seq, hidden, ffn, seq, head size): the Linear
    /// forward (NT), weight gradient (TN) and input gradient (NN) at every (in, out) of the layer (weights [out, in]),
    /// and one attention head's three forms (fp32 in the model). Nil when the CPU lacks AVX512-BF16.
    public static func gemmShapes(tokens: Int, hidden: Int, ffn: Int, seq: Int, headSize: Int, layers: Int = 1,
                                  threads: Int, reps: Int = 5) -> [GemmShapeResult]? {
        var shapes: [(String, Bool, Bool, Int, Int, Int, Int)] = []
        for (inC, outC, count) in [(hidden, hidden, 4), (hidden, ffn, 1), (ffn, hidden, 1)] {
            shapes.append(("linear forward \(inC)->\(outC)", false, true, tokens, outC, inC, count * layers))
            shapes.append(("linear dW \(inC)->\(outC)", true, false, outC, inC, tokens, count * layers))
            shapes.append(("linear dx \(inC)->\(outC)", false, false, tokens, inC, outC, count * layers))
        }
        shapes.append(("attention QK^T (one head)", false, true, seq, seq, headSize, 0))
        shapes.append(("attention PV / dQ (one head)", false, false, seq, headSize, seq, 0))
        shapes.append(("attention dV / dK (one head)", true, false, seq, headSize, seq, 0))
        return timeShapes(shapes, threads: threads, reps: reps)
    }

    /// The GPT-2 Conv1D products of one training step (weights [in, out], y = x W): forward (NN: B packed
    /// untransposed), dW = xᵀ dy (TN) and dx = dy Wᵀ (NT) of c_attn (C→3C), attn.c_proj (C→C), mlp.c_fc (C→FF) and
    /// mlp.c_proj (FF→C), `layers` times per step; and the tied LM head's three products for one logits chunk of
    /// `headRows` rows (fp32 in the model, per_step 0). Nil when the CPU lacks AVX512-BF16.
    public static func conv1dGemmShapes(tokens: Int, hidden C: Int, ffn: Int, layers: Int, vocab: Int, headRows: Int,
                                        threads: Int, reps: Int = 5) -> [GemmShapeResult]? {
        var shapes: [(String, Bool, Bool, Int, Int, Int, Int)] = []
        for (name, inC, outC) in [("c_attn", C, 3 * C), ("attn.c_proj", C, C), ("mlp.c_fc", C, ffn), ("mlp.c_proj", ffn, C)] {
            shapes.append(("conv1d forward \(name) \(inC)->\(outC)", false, false, tokens, outC, inC, layers))
            shapes.append(("conv1d dW \(name) \(inC)->\(outC)", true, false, inC, outC, tokens, layers))
            shapes.append(("conv1d dx \(name) \(inC)->\(outC)", false, true, tokens, inC, outC, layers))
        }
        if headRows > 0 {
            shapes.append(("lm head logits (fp32 in the model)", false, true, headRows, vocab, C, 0))
            shapes.append(("lm head dX (fp32 in the model)", false, false, headRows, C, vocab, 0))
            shapes.append(("lm head dW (fp32 in the model)", true, false, vocab, C, headRows, 0))
        }
        return timeShapes(shapes, threads: threads, reps: reps)
    }

    /// (use, transA, transB, m, n, k, per step) timed through `gemm` in both precisions, on `threads` threads.
    static func timeShapes(_ shapes: [(String, Bool, Bool, Int, Int, Int, Int)], threads: Int, reps: Int) -> [GemmShapeResult]? {
        guard MatmulPrecision.bf16Supported else { return nil }
        ComputeThreads.set(threads)
        var rng = SplitMix64(seed: 11)
        return shapes.map { (use, ta, tb, m, n, k, perStep) in
            let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
            let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            for i in 0..<(m * k) { a[i] = Float(rng.nextUniform() - 0.5) }
            for i in 0..<(k * n) { b[i] = Float(rng.nextUniform() - 0.5) }
            c.initialize(repeating: 0, count: m * n)
            let lda = ta ? m : k, ldb = tb ? k : n
            // tiny shapes are repeated so that one timing is at least ~1 ms
            let inner = max(1, 2_000_000 / (m * n * k))
            func time(_ p: MatmulPrecision) -> Double {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<inner {
                    gemm(p, transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a, lda: lda, b, ldb: ldb, beta: 0, c, ldc: n)
                }
                return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(inner)
            }
            func timeKernel() -> Double {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<inner {
                    _ = ck_bf16_gemm_pool(ta ? 1 : 0, tb ? 1 : 0, m, n, k, 1, a, lda, b, ldb, 0, c, n, ComputeThreads.pool)
                }
                return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(inner)
            }
            var tb16: [Double] = [], tf32: [Double] = [], tk: [Double] = []
            for r in 0...reps {
                let x = time(.bf16), y = time(.fp32), z = timeKernel()
                if r > 0 { tb16.append(x); tf32.append(y); tk.append(z) }   // the first round is a warm-up
            }
            tb16.sort(); tf32.sort(); tk.sort()
            let sb = tb16[tb16.count / 2], sf = tf32[tf32.count / 2], flop = 2 * Double(m) * Double(n) * Double(k)
            return GemmShapeResult(use: use, transA: ta, transB: tb, m: m, n: n, k: k, threads: threads, per_step: perStep,
                                   bf16_gflops: flop / sb / 1e9, sgemm_gflops: flop / sf / 1e9, speedup: sf / sb,
                                   bf16_ms: sb * 1e3, sgemm_ms: sf * 1e3, dot_kernel_ms: tk[tk.count / 2] * 1e3)
        }
    }

    /// Full fine-tuning vs LoRA training steps at one shape, alternating in one process (full, LoRA, full, ...), so
    /// that both see the same machine load: each step is zero grads + forward + cross-entropy + backward + AdamW over
    /// the trainable store (every parameter, or the adapter and its modules_to_save head with the base frozen).
    public static func runLoRAComparison(config: ModelConfig, lora: LoRAConfig, batch: Int, seq: Int, steps: Int,
                                         warmup: Int, threads: Int) throws -> LoRABenchmarkResult {
        ComputeThreads.set(threads)
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        var rng = SplitMix64(seed: 1234)
        for e in store.entries {
            let v = store.value(e.name)
            if e.name.hasSuffix(".bias") { v.update(repeating: 0) }
            else if e.name.contains("LayerNorm") { v.update(repeating: 1) }
            else { for i in 0..<v.count { v[i] = Float(rng.nextNormal()) * config.initializerRange } }
        }
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: batch, maxSeq: seq)
        let trainable = try model.enableLoRA(lora, seed: 5)
        let adapter = model.adapter!
        let adamFull = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01))
        let adamLoRA = AdamW(store: trainable, config: AdamWConfig(weightDecay: 0.01))
        let NL = config.numLabels
        var dLogits = [Float](repeating: 0, count: batch * NL)
        var full: [Double] = [], low: [Double] = []
        for step in 0..<(warmup + steps) {
            let ids = (0..<(batch * seq)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
            let labels = (0..<batch).map { _ in Int32(rng.next() % UInt64(NL)) }
            let tb = TokenBatch(batchSize: batch, seqLen: seq, inputIds: ids, attentionMask: [Int32](repeating: 1, count: batch * seq),
                                sampleIndices: (0..<batch).map { step * batch + $0 })
            for useLoRA in [false, true] {
                if useLoRA { model.attachLoRA(adapter, freezeBase: true) } else { model.detachLoRA() }
                let trained = useLoRA ? trainable : store, opt = useLoRA ? adamLoRA : adamFull
                let dt = timedClassifierStep(trained: trained, optimizer: opt, labels: labels, classes: NL, dLogits: &dLogits,
                                             forward: { model.forward(tb, dropout: DropoutContext(seed: 42, step: step)) },
                                             backward: { model.backward(dLogits: $0) })
                if step >= warmup { if useLoRA { low.append(dt) } else { full.append(dt) } }
            }
        }
        full.sort(); low.sort()
        let fm = full[full.count / 2], lm = low[low.count / 2]
        return LoRABenchmarkResult(batch: batch, seq: seq, threads: threads, steps: steps, r: lora.r,
                                   targets: lora.targetModules ?? LoRAConfig.defaultTargets(config.family),
                                   trainable_parameters: trainable.parameterCount, full_step_s_median: fm,
                                   lora_step_s_median: lm, lora_over_full: lm / fm)
    }

    /// Seconds of one sequence-classifier training step as the comparisons time it: zero `trained`'s gradients,
    /// forward, cross-entropy (mean over the batch) into dLogits, backward, an AdamW step at lr 1e-5.
    static func timedClassifierStep(trained: ParameterStore, optimizer: AdamW, labels: [Int32], classes: Int,
                                    dLogits: inout [Float], forward: () -> UnsafeBufferPointer<Float>,
                                    backward: (UnsafeBufferPointer<Float>) -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        trained.zeroGrads()
        let logits = forward()
        _ = dLogits.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: logits, labels: labels, batch: labels.count, classes: classes,
                              scale: 1 / Float(labels.count), dLogits: $0)
        }
        dLogits.withUnsafeBufferPointer { backward($0) }
        optimizer.step(lr: 1e-5)
        return Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    }

    /// Peak resident set size (VmHWM) in MB, 0 when /proc is unavailable.
    public static func peakRSSMegabytes() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
            return kb / 1024
        }
        return 0
    }
}

/// Buffers for timing the model's largest matmul shape, allocated once; `bf16`: the bf16 kernel instead of sgemm.
final class SgemmProbe {
    let m: Int, n: Int, k: Int
    let bf16: Bool
    let a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, c: UnsafeMutablePointer<Float>
    init(m: Int, n: Int, k: Int, bf16: Bool = false) {
        self.m = m; self.n = n; self.k = k; self.bf16 = bf16
        a = .allocate(capacity: m * k); b = .allocate(capacity: n * k); c = .allocate(capacity: m * n)
        var rng = SplitMix64(seed: 7)
        for i in 0..<(m * k) { a[i] = Float(rng.nextUniform() - 0.5) }
        for i in 0..<(n * k) { b[i] = Float(rng.nextUniform() - 0.5) }
        c.initialize(repeating: 0, count: m * n)
    }
    deinit { a.deallocate(); b.deallocate(); c.deallocate() }
    /// GFLOP/s of one call.
    func measure() -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        if bf16 {
            _ = bf16Gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a, lda: k, b, ldb: k, beta: 0, c, ldc: n)
        } else {
            sgemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a, lda: k, b, ldb: k, beta: 0, c, ldc: n)
        }
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        return 2 * Double(m) * Double(n) * Double(k) / dt / 1e9
    }
}
