// GPT2Benchmark.swift: the GPT-2 training-step and generation benchmarks (the 6-layer / 384 / 6-head /
// vocab-50257 shape). A step is zero grads + forward with the fused LM loss + backward (no optimizer), on random
// tokens with every position counted, with GPT-2's dropout (0.1) active. MFU is measured against the sgemm rate of the
// LM head's GEMM shape in the same process and thread setting (median of samples taken between the steps).
// flops_per_step = 6·(N_non-embedding + V·C)·tokens + 12·layers·C·T·tokens: the tied head's V·C counts as a matmul
// (it is 237 of the 375 GFLOP at B=16, T=128); wte/wpe lookups do not.
// Generation: greedy tokens/s for one prompt, with the KV cache and with full recompute.
// Deliberately not here: printing or CLI flags (the executable and the gated test do that).
import Foundation
import SplitMix

public struct GPT2GenerationBenchmark: Sendable, Codable, JSONLineResult {
    public var prompt_tokens: Int
    public var new_tokens: Int
    public var threads: Int
    public var cached_tokens_per_s: Double
    public var recompute_tokens_per_s: Double
}

/// `bench --config <GPT-2 config>`: medians of alternating sequence-classifier steps (see runClassifierComparison).
public struct GPT2ClassifierBenchmarkResult: Sendable, Codable, JSONLineResult {
    public var batch: Int
    public var seq: Int
    public var threads: Int
    public var steps: Int
    public var layers: Int
    public var hidden: Int
    /// The default: the last block after c_attn, and ln_f, on each row's pooled token only.
    public var head_rows_step_s_median: Double
    /// Every row of the last block computed (GPT2Classifier.lastBlockAllRows, as transformers).
    public var all_rows_step_s_median: Double
    public var head_rows_tokens_per_s: Double
    public var all_rows_tokens_per_s: Double
    /// all_rows_step_s_median / head_rows_step_s_median.
    public var head_rows_speedup: Double
}

public enum GPT2Benchmark {
    /// GPT-2 architecture at 6 layers, n_embd 384, 6 heads (head size 64), FF 1536, vocab 50257, 1024 positions,
    /// dropout 0.1 as in GPT-2's config.
    public static func smallConfig() -> GPT2Config {
        let json: [String: Any] = [
            "model_type": "gpt2", "vocab_size": 50257, "n_embd": 384, "n_layer": 6, "n_head": 6, "n_inner": NSNull(),
            "n_positions": 1024, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1,
            "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02, "bos_token_id": 50256, "eos_token_id": 50256,
        ]
        return try! GPT2Config(json: json, path: "<gpt2 6x384 shape>")
    }

    /// Seeded GPT-2-style init: N(0, range) weights, zero biases, unit LayerNorm weights.
    public static func initialise(_ store: ParameterStore, config: GPT2Config, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for e in store.entries {
            let v = store.value(e.name)
            if e.name.hasSuffix(".bias") { v.update(repeating: 0) }
            else if e.name.contains(".ln_") { v.update(repeating: 1) }
            else { for i in 0..<v.count { v[i] = Float(rng.nextNormal()) * config.initializerRange } }
        }
    }

    /// `precision` .bf16: the Conv1D products in bf16 (MFU still against the fp32 sgemm rate).
    public static func runTraining(config: GPT2Config, batch: Int, seq: Int, steps: Int, warmup: Int, threads: Int,
                                   precision: MatmulPrecision = .fp32) -> BenchmarkResult {
        ComputeThreads.set(threads)
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        initialise(store, config: config, seed: 1234)
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: batch, maxSeq: seq)
        model.matmulPrecision = precision
        var rng = SplitMix64(seed: 99)
        let V = config.vocabSize, C = config.hidden
        // The sgemm rate of the LM-head GEMM shape is sampled between the steps (two calls after each), as
        // ModelBenchmark does, so that MFU compares like with like on a machine whose load changes during the run.
        let probe = SgemmProbe(m: model.chunkRows, n: V, k: C)
        _ = probe.measure()
        var rates: [Double] = [probe.measure(), probe.measure()]
        var times: [Double] = [], cpu: [Double] = []
        for step in 0..<(warmup + steps) {
            let ids = (0..<(batch * seq)).map { _ in Int32(rng.next() % UInt64(V)) }
            let tb = TokenBatch(batchSize: batch, seqLen: seq, inputIds: ids,
                                attentionMask: [Int32](repeating: 1, count: batch * seq),
                                sampleIndices: (0..<batch).map { step * batch + $0 })
            let t0 = DispatchTime.now().uptimeNanoseconds, c0 = processCPUSeconds()
            store.zeroGrads()
            model.forward(tb, labels: ids, gradientScale: 1 / Float(batch * (seq - 1)), dropout: DropoutContext(seed: 42, step: step))
            model.backward()
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9, dc = processCPUSeconds() - c0
            if step >= warmup { times.append(dt); cpu.append(dc); rates.append(probe.measure()); rates.append(probe.measure()) }
        }
        rates.sort()
        times.sort()
        let median = times.isEmpty ? 0 : times[times.count / 2]
        let tokens = Double(batch * seq)
        let tables = store.entries.filter { $0.name == "transformer.wte.weight" || $0.name == "transformer.wpe.weight" }
            .reduce(0) { $0 + $1.count }
        let matmulParams = Double(store.parameterCount - tables + V * C)
        let flops = 6 * matmulParams * tokens + 12 * Double(config.layers * C * seq) * tokens
        let achieved = median > 0 ? flops / median / 1e9 : 0
        let peak = rates[rates.count / 2]
        return BenchmarkResult(batch: batch, seq: seq, threads: threads, steps: steps,
                               tokens_per_s: median > 0 ? tokens / median : 0, step_s_median: median,
                               step_s_min: times.first ?? 0, step_s_max: times.last ?? 0, flops_per_step: flops,
                               achieved_gflops: achieved, sgemm_gflops: peak, mfu: peak > 0 ? achieved / peak : 0,
                               peak_rss_mb: ModelBenchmark.peakRSSMegabytes(), activation_bytes: model.activationBytes,
                               precision: precision.rawValue).withBF16Path(precision).withCPU(cpu)
    }

    /// `bench --config <GPT-2 config>`: GPT2ForSequenceClassification's training step (a reward model's or a GPT-2
    /// classifier's), alternating in one process (same load) the default, the last block after c_attn on each row's
    /// pooled token only, with every row computed (as transformers). A step is zero grads + forward + cross-entropy
    /// over 2 labels + backward + AdamW, on random full-length rows (pooled at the last token) with dropout on.
    public static func runClassifierComparison(config: GPT2Config, batch: Int, seq: Int, steps: Int, warmup: Int,
                                               threads: Int) throws -> GPT2ClassifierBenchmarkResult {
        ComputeThreads.set(threads)
        var j = config.raw
        if config.padTokenId == nil { j["pad_token_id"] = config.eosTokenId ?? 0 }
        if config.numLabels == 0 { j["num_labels"] = 2 }
        let cfg = try GPT2Config(json: j, path: config.path)
        let store = ParameterStore(layout: GPT2Layout.make(config: cfg, classifier: true))
        initialise(store, config: cfg, seed: 1234)
        let model = try GPT2Classifier(config: cfg, parameters: store, maxBatch: batch, maxSeq: seq)
        let adam = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01))
        let NL = cfg.numLabels, pad = Int32(cfg.padTokenId ?? 0)
        var rng = SplitMix64(seed: 99)
        var dLogits = [Float](repeating: 0, count: batch * NL)
        var head: [Double] = [], all: [Double] = []
        for step in 0..<(warmup + steps) {
            var ids = (0..<(batch * seq)).map { _ in Int32(rng.next() % UInt64(cfg.vocabSize)) }
            for i in ids.indices where ids[i] == pad { ids[i] = (pad + 1) % Int32(cfg.vocabSize) }   // pooled at the last token
            let labels = (0..<batch).map { _ in Int32(rng.next() % UInt64(NL)) }
            let tb = TokenBatch(batchSize: batch, seqLen: seq, inputIds: ids, attentionMask: [Int32](repeating: 1, count: batch * seq),
                                sampleIndices: (0..<batch).map { step * batch + $0 })
            for allRows in [false, true] {
                model.lastBlockAllRows = allRows
                let dt = ModelBenchmark.timedClassifierStep(trained: store, optimizer: adam, labels: labels, classes: NL,
                                                            dLogits: &dLogits,
                                                            forward: { model.forward(tb, dropout: DropoutContext(seed: 42, step: step)) },
                                                            backward: { model.backward(dLogits: $0) })
                if step >= warmup { if allRows { all.append(dt) } else { head.append(dt) } }
            }
        }
        head.sort(); all.sort()
        let hm = head[head.count / 2], am = all[all.count / 2], tokens = Double(batch * seq)
        return GPT2ClassifierBenchmarkResult(batch: batch, seq: seq, threads: threads, steps: steps, layers: cfg.layers,
                                             hidden: cfg.hidden, head_rows_step_s_median: hm, all_rows_step_s_median: am,
                                             head_rows_tokens_per_s: tokens / hm, all_rows_tokens_per_s: tokens / am,
                                             head_rows_speedup: am / hm)
    }

    /// Median over `repeats` of greedy generation speed (new tokens per second) from a random prompt.
    public static func runGeneration(config: GPT2Config, promptTokens: Int, newTokens: Int, repeats: Int, threads: Int) throws -> GPT2GenerationBenchmark {
        ComputeThreads.set(threads)
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        initialise(store, config: config, seed: 1234)
        let gen = GPT2Generator(config: config, parameters: store)
        var rng = SplitMix64(seed: 5)
        let prompt = (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        func rate(_ cache: Bool) throws -> Double {
            var r: [Double] = []
            for _ in 0..<repeats {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let out = try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: newTokens, useCache: cache))
                r.append(Double(out.count) / (Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9))
            }
            return r.sorted()[r.count / 2]
        }
        return GPT2GenerationBenchmark(prompt_tokens: promptTokens, new_tokens: newTokens, threads: threads,
                                       cached_tokens_per_s: try rate(true), recompute_tokens_per_s: try rate(false))
    }
}
