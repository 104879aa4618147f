// `disttrain bench`: trains N steps on random tokens at a model shape and prints one JSON line of figures; with
// --lora-r, the medians of alternating full and LoRA training steps (same process, same load).
import ArgumentParser
import Foundation
import Model      // the benchmark harnesses (Benchmark, GPT2Benchmark), ModelConfig, AdamW: what `bench` times
import Dist       // makeCommunicator: the launch environment's communicator
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training throughput, MFU and peak memory at a model shape.",
        discussion: "Default shape: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, FFN 1536), batch 32, sequence 128, fp32.")
    @Option(help: "Compute threads.") var threads: Int = 1
    @Option(help: "Batch size.") var batchSize: Int = 32
    @Option(help: "Sequence length.") var seqLen: Int = 128
    @Option(help: "Timed steps (after 2 warm-up steps).") var steps: Int = 10
    @Option(help: ArgumentHelp("A config.json to take the shape from (default: the MiniLM shape; or --model's config.json); a GPT-2 config times the sequence classifier's (reward model's) step, pooled rows vs every row. A .yaml/.yml file is read as flag values instead, as --config of the other commands (keys are flag names; flags given here override it).", valueName: "config.json|file.yaml"))
    var config: String?
    @Option(help: "Compare full fine-tuning with LoRA of this rank (query,value; alpha 2r): alternating training steps with AdamW in one process.")
    var loraR: Int = 0
    @Flag(help: "Data-parallel step (all-reduce, clipping, AdamW) with --batch-size per rank; implied under mpirun.")
    var dataParallel = false
    @Flag(help: "Data-parallel step: all-reduce through MPI messages instead of node-shared memory (as train --no-shared-memory).")
    var noSharedMemory = false
    @Flag(help: "Also run the step with the Linear products in bf16 (AVX512-BF16) and print the bf16/fp32 tokens/s ratio.")
    var bf16 = false
    @Flag(help: "Instead of training steps, time the bf16 kernel against cblas_sgemm at the step's GEMM shapes.")
    var gemm = false
    @Flag(help: "With --gemm: the GPT-2 Conv1D products (weights [in, out]) and the tied LM head, at the GPT-2 6×384 shape (--batch-size 16 for generate --bench's step); a GPT-2 --config/--model selects this layout by itself.")
    var gpt2 = false
    @Flag(help: "Run every configuration (fp32/bf16, 1/2 threads, 1 process vs 2 MPI ranks, GPT-2, start-up) in fresh processes and print a table of medians.")
    var table = false
    @Option(help: "With --table: rounds of runs (medians are reported; default 3).") var runs: Int?
    @Option(help: "A model folder: without --table, bench its config.json's shape (as --config); with --table, with --train-file, also time launch → first step.") var model: String?
    @Option(help: "With --table: the training file for the launch → first step row.") var trainFile: String?
    @Flag(help: "GRPO: rollout tokens/s (batched KV-cache sampling of --batch-size completions of --seq-len − 4 tokens after 4-token prompts) vs the training step's tokens/s at batch × seq-len; GPT-2 shape from --config/--model (default 6×384); medians of --steps repeats.")
    var rollout = false

    func validate() throws {
        try Check.positive(threads, "--threads")
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(steps, "--steps")
        try Check.maxLength(seqLen, flag: "--seq-len")
        // A flag that does not apply to the chosen mode is refused, never silently ignored.
        if table {
            let other = [(config != nil, "--config"), (loraR != 0, "--lora-r"), (dataParallel, "--data-parallel"),
                         (noSharedMemory, "--no-shared-memory"), (bf16, "--bf16"), (gemm, "--gemm"), (gpt2, "--gpt2")].filter(\.0).map(\.1)
            if let f = other.first {
                throw ValidationError("--table runs its own fixed set of configurations (fp32/bf16, 1/2 threads, 1 process vs 2 ranks, GPT-2); \(f) does not apply to it: drop \(f), or drop --table to bench that one configuration")
            }
            if let r = runs, r <= 0 { throw ValidationError("--runs must be positive (got \(r))") }
            if trainFile != nil, model == nil { throw ValidationError("--train-file needs --model (the launch → first step row trains that model on that file)") }
            return
        }
        if rollout {
            let other = [(table, "--table"), (loraR != 0, "--lora-r"), (dataParallel, "--data-parallel"), (noSharedMemory, "--no-shared-memory"),
                         (bf16, "--bf16"), (gemm, "--gemm"), (gpt2, "--gpt2"), (runs != nil, "--runs"), (trainFile != nil, "--train-file")].filter(\.0).map(\.1)
            if let f = other.first { throw ValidationError("--rollout times sampling against the training step in one process; \(f) does not apply to it: drop \(f)") }
            if model != nil, config != nil { throw ValidationError("give either --model (its config.json) or --config, not both") }
            guard seqLen > 4 else { throw ValidationError("--rollout: --seq-len \(seqLen) must exceed the 4 prompt tokens") }
            return
        }
        if gpt2, !gemm { throw ValidationError("--gpt2 applies to --gemm only (the GPT-2 training step is `generate --bench`); add --gemm, or drop --gpt2") }
        if runs != nil { throw ValidationError("--runs applies to --table only (a single configuration already reports the median of --steps steps)") }
        if trainFile != nil { throw ValidationError("--train-file applies to --table only (the launch → first step row); drop it, or add --table") }
        if model != nil, config != nil { throw ValidationError("give either --model (its config.json) or --config, not both") }
        if gemm {
            let other = [(loraR != 0, "--lora-r"), (dataParallel, "--data-parallel"), (noSharedMemory, "--no-shared-memory"),
                         (bf16, "--bf16")].filter(\.0).map(\.1)
            if let f = other.first {
                throw ValidationError("--gemm times the bf16 GEMM kernel against cblas_sgemm at the step's shapes (no training step); \(f) does not apply to it: drop \(f)")
            }
        }
        if loraR != 0, bf16 { throw ValidationError("--lora-r compares full and LoRA steps in fp32; drop --bf16 (or --lora-r)") }
        if loraR != 0, dataParallel || noSharedMemory { throw ValidationError("--lora-r compares steps in one process; drop --data-parallel/--no-shared-memory") }
    }

    func run() throws {
        if gemm { return try runGemm() }
        if table { return try BenchTable(runs: runs ?? 3, steps: steps, model: model, trainFile: trainFile).run() }
        if rollout { return try runRollout() }
        let cfg: ModelConfig
        if let config = config ?? model.map({ URL(fileURLWithPath: $0).appendingPathComponent("config.json").path }) {
            let folder = try ModelFolder.read(configFile: URL(fileURLWithPath: config))
            if case .gpt2(let g) = folder.config { return try runGPT2Classifier(g) }
            var c = try folder.encoderConfig(for: "bench --config (use `generate --bench` for GPT-2)")
            // A base model's config names no labels: transformers' sequence classifier defaults to 2.
            if c.id2label.isEmpty { c.id2label = ["LABEL_0", "LABEL_1"] }
            cfg = c
        } else {
            cfg = ModelBenchmark.miniLMConfig()
        }
        guard seqLen <= cfg.maxPositions else {
            throw ValidationError("--seq-len \(seqLen) exceeds max_position_embeddings \(cfg.maxPositions)")
        }
        if bf16 && !MatmulPrecision.bf16Supported {
            throw ValidationError("--bf16 needs a CPU with AVX512-BF16 (this one lacks it: no avx512_bf16 in /proc/cpuinfo); run without it for fp32")
        }
        let env = ProcessInfo.processInfo.environment
        let underLauncher = LaunchMode.detect(environment: env) != .single
        if noSharedMemory, !(dataParallel || underLauncher) {
            throw ValidationError("--no-shared-memory applies to the data-parallel step: add --data-parallel, or run under mpirun")
        }
        if loraR != 0, underLauncher {
            throw ValidationError("--lora-r compares full and LoRA steps in one process: run it without mpirun")
        }
        if dataParallel || underLauncher {
            // With --bf16 the data-parallel step runs in bf16 only (compare with a --bf16 run of one process).
            let comm = try makeCommunicator(environment: env)
            let r = try ScalingBenchmark.run(config: cfg, batch: batchSize, seq: seqLen, steps: steps, warmup: 2,
                                             threads: threads, comm: comm, precision: bf16 ? .bf16 : .fp32,
                                             sharedMemory: !noSharedMemory)
            if comm.isRoot { print(r.json) }
            try finalizeMPI(comm)
            return
        }
        if loraR != 0 {
            do {
                let r = try ModelBenchmark.runLoRAComparison(config: cfg, lora: LoRAConfig(r: loraR, alpha: Double(2 * loraR)),
                                                              batch: batchSize, seq: seqLen, steps: steps, warmup: 2, threads: threads)
                print(r.json)
            } catch let e as LoRAError { throw ValidationError(e.message) }
            return
        }
        // A step at the default shape takes seconds: say what is running rather than sit silent.
        FileHandle.standardError.write(Data("bench: \(config ?? model ?? "MiniLM shape"), batch \(batchSize) × seq \(seqLen), \(threads) thread\(threads == 1 ? "" : "s"): 2 warm-up + \(steps) timed steps\(bf16 ? ", fp32 then bf16" : "")\n".utf8))
        let r = ModelBenchmark.run(config: cfg, batch: batchSize, seq: seqLen, steps: steps, warmup: 2, threads: threads)
        print(r.json)
        if bf16 {
            let b = ModelBenchmark.run(config: cfg, batch: batchSize, seq: seqLen, steps: steps, warmup: 2, threads: threads,
                                       precision: .bf16)
            print(b.json)
            print(String(format: "{\"bf16_over_fp32_tokens_per_s\":%.3f}", b.tokens_per_s / r.tokens_per_s))
        }
    }
}

extension Bench {
    /// `bench --config <GPT-2 config>`: the sequence classifier's (reward model's) training step, the last block on
    /// the pooled rows (the default) against every row, alternating in one process (GPT2Benchmark.runClassifierComparison).
    func runGPT2Classifier(_ g: GPT2Config) throws {
        let env = ProcessInfo.processInfo.environment
        let other = [(loraR != 0, "--lora-r"), (dataParallel, "--data-parallel"), (noSharedMemory, "--no-shared-memory"), (bf16, "--bf16"),
                     (LaunchMode.detect(environment: env) != .single, "mpirun")].filter(\.0).map(\.1)
        if let f = other.first {
            throw ValidationError("with a GPT-2 config, bench times the sequence classifier's step (last block on the pooled rows vs every row) in one process; \(f) does not apply to it: drop \(f) (the GPT-2 LM step is `generate --bench`)")
        }
        guard seqLen <= g.maxPositions else { throw ValidationError("--seq-len \(seqLen) exceeds n_positions \(g.maxPositions)") }
        FileHandle.standardError.write(Data("bench: \(config ?? model ?? ""), GPT-2 sequence classifier, batch \(batchSize) × seq \(seqLen), \(threads) thread\(threads == 1 ? "" : "s"): 2 warm-up + \(steps) timed steps, each the pooled-rows step then the all-rows step\n".utf8))
        do {
            print(try GPT2Benchmark.runClassifierComparison(config: g, batch: batchSize, seq: seqLen, steps: steps, warmup: 2,
                                                            threads: threads).json)
        } catch let e as ConfigError { throw ValidationError("\(e)") }
    }

    /// `bench --gemm`: the step's products timed in bf16 and fp32 through the model's own path, one JSON line per
    /// shape and one with the per-step totals; the encoder's Linear layout, or GPT-2's Conv1D layout (--gpt2, or a
    /// GPT-2 config).
    func runGemm() throws {
        guard MatmulPrecision.bf16Supported else {
            throw ValidationError("--gemm needs a CPU with AVX512-BF16 (this one lacks it: no avx512_bf16 in /proc/cpuinfo)")
        }
        let folder = try (config ?? model.map { URL(fileURLWithPath: $0).appendingPathComponent("config.json").path })
            .map { try ModelFolder.read(configFile: URL(fileURLWithPath: $0)) }
        var gpt2Config: GPT2Config? = gpt2 && folder == nil ? GPT2Benchmark.smallConfig() : nil
        if case .gpt2(let c)? = folder?.config { gpt2Config = c }
        if gpt2, gpt2Config == nil {
            throw ValidationError("--gpt2: \(config ?? model ?? "") is not a GPT-2 config (model_type gpt2); drop --gpt2 to time its Linear products")
        }
        let tokens = batchSize * seqLen
        let rows: [ModelBenchmark.GemmShapeResult]
        if let g = gpt2Config {
            guard seqLen <= g.maxPositions else { throw ValidationError("--seq-len \(seqLen) exceeds n_positions \(g.maxPositions)") }
            rows = ModelBenchmark.conv1dGemmShapes(tokens: tokens, hidden: g.hidden, ffn: g.intermediate, layers: g.layers,
                                                   vocab: g.vocabSize, headRows: GPT2LMHead.chunkRows(tokens: tokens, vocab: g.vocabSize),
                                                   threads: threads) ?? []
        } else {
            let cfg = try folder?.encoderConfig(for: "bench --gemm") ?? ModelBenchmark.miniLMConfig()
            guard seqLen <= cfg.maxPositions else { throw ValidationError("--seq-len \(seqLen) exceeds max_position_embeddings \(cfg.maxPositions)") }
            rows = ModelBenchmark.gemmShapes(tokens: tokens, hidden: cfg.hidden, ffn: cfg.intermediate, seq: seqLen,
                                             headSize: cfg.hidden / cfg.heads, layers: cfg.layers, threads: threads) ?? []
        }
        print(BF16PathResult().json)
        for r in rows { print(r.json) }
        print(ModelBenchmark.GemmStepTotal(rows.filter { $0.per_step > 0 },
                                           use: gpt2Config == nil ? "linear products per step" : "conv1d products per step").json)
    }
}

/// `bench --rollout`: GRPO's two phases at one shape, in one process, alternating (same load): sampling `rows`
/// completions with GPT2BatchGenerator (temperature 1, no stop token, so every row samples all its tokens), and the
/// training step (forward with the LM loss + backward, GPT2Benchmark.runTraining) on rows × seqLen tokens.
struct RolloutBenchmarkResult: Sendable, Codable, JSONLineResult {
    var rows: Int
    var prompt_tokens: Int
    var completion_tokens: Int
    var threads: Int
    var repeats: Int
    /// Sampled tokens per second (rows × completion tokens / wall time of one generate call), median.
    var rollout_tokens_per_s: Double
    /// Training tokens per second (rows × seq-len / step time), median of the same repeats.
    var train_tokens_per_s: Double
    var train_over_rollout: Double
}

extension Bench {
    func runRollout() throws {
        let cfg: GPT2Config
        if let config = config ?? model.map({ URL(fileURLWithPath: $0).appendingPathComponent("config.json").path }) {
            cfg = try ModelFolder.read(configFile: URL(fileURLWithPath: config)).gpt2Config(for: "bench --rollout")
        } else {
            cfg = GPT2Benchmark.smallConfig()
        }
        guard seqLen <= cfg.maxPositions else { throw ValidationError("--seq-len \(seqLen) exceeds n_positions \(cfg.maxPositions)") }
        ComputeThreads.set(threads)
        let P = 4, L = seqLen - P
        FileHandle.standardError.write(Data("bench --rollout: \(config ?? model ?? "GPT-2 6×384"), \(batchSize) completions of \(L) tokens after \(P)-token prompts vs training steps at \(batchSize) × \(seqLen), \(threads) thread\(threads == 1 ? "" : "s"), \(steps) repeats\n".utf8))
        let store = ParameterStore(layout: GPT2Layout.make(config: cfg, classifier: false))
        GPT2Benchmark.initialise(store, config: cfg, seed: 1234)
        let gen = GPT2BatchGenerator(config: cfg, parameters: store, maxBatch: batchSize)
        // Fixed, spread-out prompt ids (the content does not change the cost).
        let prompts = (0..<batchSize).map { i in (0..<P).map { j in Int32((i * 7919 + j * 104_729 + 13) % cfg.vocabSize) } }
        var sample: [Double] = [], train: [Double] = []
        for r in 0..<(steps + 1) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let out = try gen.generate(prompts: prompts, options: GenerationOptions(maxNewTokens: L, temperature: 1),
                                       seeds: (0..<batchSize).map { UInt64(r * batchSize + $0) })
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            let t = GPT2Benchmark.runTraining(config: cfg, batch: batchSize, seq: seqLen, steps: 1, warmup: 0, threads: threads)
            if r > 0 {   // the first round warms up
                sample.append(Double(out.reduce(0) { $0 + $1.count }) / dt)
                train.append(t.tokens_per_s)
            }
        }
        let ms = sample.sorted()[sample.count / 2], mt = train.sorted()[train.count / 2]
        print(RolloutBenchmarkResult(rows: batchSize, prompt_tokens: P, completion_tokens: L, threads: threads, repeats: steps,
                                     rollout_tokens_per_s: ms, train_tokens_per_s: mt, train_over_rollout: mt / max(ms, 1e-9)).json)
    }
}
