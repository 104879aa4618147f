// `disttrain generate`: text generation with a GPT-2 model folder (config.json, model.safetensors in either the
// save_pretrained or the hub layout, and the GPT-2 tokenizer files). Greedy by default; sampling when
// --temperature > 0. Prints the prompt followed by the generated text, or with --json one line
// {"prompt", "new_ids", "new_text"}. `--adapter DIR` runs a PEFT LoRA adapter (e.g. from `train --lora-r`) unmerged on
// top of the base model (the same ids as the folder `disttrain merge` writes). `--bench` runs the GPT-2 6x384 training-step and generation benchmarks instead.
// Deliberately not here: the generation algorithm (Model/GPT2Generate.swift), batching several prompts.
import ArgumentParser
import Foundation
import Dist       // availableCores(): the --threads default
import Model      // GenerationOptions, ComputeThreads, GPT2Config and GPT2Benchmark (--bench)
import Training

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a GPT-2 model.",
        discussion: """
          disttrain generate --model runs/hamlet --prompt "To be, or not" \\
              --max-new-tokens 40
          disttrain generate --model runs/hamlet --prompt "To be" \\
              --temperature 0.8 --top-p 0.9 --seed 1 --json
        A LoRA adapter, run unmerged on its base:
          disttrain generate --model gpt2 --adapter runs/hamlet-lora --prompt "To be"
        The GPT-2 6x384 benchmarks (batch 16, seq 128: step MFU, generation tokens/s):
          disttrain generate --bench
        """)
    @OptionGroup var config: ConfigFileOption
    @Option(help: "A GPT-2 model folder: config.json, model.safetensors, vocab.json + merges.txt (or tokenizer.json).")
    var model: String?
    @Option(help: "A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to run unmerged on --model.")
    var adapter: String?
    @Option(help: "The prompt text (encoded without added special tokens, as GPT-2 adds none).") var prompt: String?
    @Option(help: "Tokens to generate at most.") var maxNewTokens: Int = 20
    @Option(help: "0 = greedy argmax; > 0 samples from softmax(logits / temperature).") var temperature: Float = 0
    @Option(help: "When sampling: keep only the k most likely tokens (0 = off).") var topK: Int = 0
    @Option(help: "When sampling: nucleus probability mass to keep (1 = off).") var topP: Float = 1
    @Option(help: "Seed of the sampling generator.") var seed: UInt64 = 0
    @Flag(help: "Recompute the whole sequence at every step instead of using the key/value cache.") var noCache = false
    @Flag(help: "Stop after the model emits eos_token_id.") var stopAtEos = false
    @Flag(help: "Print one JSON line {\"prompt\", \"new_ids\", \"new_text\"}.") var json = false
    @Option(help: "Compute threads (default: the cores available; with --bench: 1, for comparable figures).") var threads: Int?
    @Flag(help: "Run the GPT-2 6x384 benchmarks (training step MFU; generation tokens/s with and without the cache).")
    var bench = false
    @Option(help: "With --bench: timed training steps (the median is reported).") var benchSteps: Int = 5
    @Option(help: "With --bench: a GPT-2 config.json giving the shape (default: 6 layers, 384 wide; e.g. bench/configs/gpt2-12x768.json).")
    var benchConfig: String?
    @Option(help: "With --bench: batch size of the training step.") var benchBatch: Int = 16
    @Option(help: "With --bench: sequence length of the training step.") var benchSeq: Int = 128
    @Flag(help: "With --bench: the Conv1D products in bf16 (AVX512-BF16); no generation benchmark.") var bf16 = false
    @Flag(help: "With --bench: the training step only (no generation benchmark).") var noGenerationBench = false

    func validate() throws {
        if bench {
            // The benchmark has a fixed shape and random weights: flags of a generation run would be silently ignored.
            let other = [(model != nil, "--model"), (adapter != nil, "--adapter"), (prompt != nil, "--prompt"), (json, "--json"),
                         (noCache, "--no-cache"), (stopAtEos, "--stop-at-eos")].filter(\.0).map(\.1)
            if let f = other.first {
                throw ValidationError("--bench runs the fixed GPT-2 6x384 benchmark on random weights; \(f) does not apply to it: drop \(f), or drop --bench to generate")
            }
            try Check.positive(threads, "--threads")
            try Check.positive(benchSteps, "--bench-steps")
            if let c = benchConfig, !FileManager.default.fileExists(atPath: c) {
                throw ValidationError("--bench-config \(c): no such file (a GPT-2 config.json, e.g. bench/configs/gpt2-12x768.json)")
            }
            guard benchBatch > 0, benchSeq > 1 else { throw ValidationError("--bench-batch must be positive and --bench-seq at least 2") }
            if bf16 && !MatmulPrecision.bf16Supported {
                throw ValidationError("--bf16 needs a CPU with AVX512-BF16 (`grep avx512_bf16 /proc/cpuinfo` finds nothing here); drop --bf16")
            }
            return
        }
        let benchOnly = [(benchConfig != nil, "--bench-config"), (bf16, "--bf16"), (noGenerationBench, "--no-generation-bench")]
            .filter(\.0).map(\.1)
        if let f = benchOnly.first { throw ValidationError("\(f) applies to --bench only: add --bench, or drop \(f)") }
        guard model != nil else { throw ValidationError("--model is required (a GPT-2 model folder)") }
        guard prompt != nil else { throw ValidationError("--prompt is required") }
        try Check.positive(maxNewTokens, "--max-new-tokens")
        guard temperature >= 0 else { throw ValidationError("--temperature must be >= 0 (got \(temperature))") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0 (got \(topK))") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1] (got \(topP))") }
        try Check.positive(threads, "--threads")
        if temperature == 0 && (topK > 0 || topP < 1) {
            throw ValidationError("--top-k/--top-p apply only when sampling; pass --temperature > 0 (e.g. 0.8), or drop them for greedy decoding")
        }
    }

    func run() throws {
        if OutputRank.isSecondary() { return }   // under mpirun/srun: rank 0 generates and prints, once
        if bench { return try runBench() }
        let dir = URL(fileURLWithPath: model!)
        ComputeThreads.set(threads ?? availableCores())
        let gen = try TextGenerator(modelDir: dir, adapterDir: adapter.map { URL(fileURLWithPath: $0) })
        if gen.folder.kind == .gpt2Classifier {
            // What transformers does when GPT2LMHeadModel loads this folder; said, so that nobody mistakes it for
            // the classifier's output.
            FileHandle.standardError.write(Data("note: \(dir.path) is a GPT2ForSequenceClassification checkpoint: generating with its tied word embeddings as the language-model head (its score head is not used); to classify, use `disttrain predict --model \(dir.path)`\n".utf8))
        }
        let options = GenerationOptions(maxNewTokens: maxNewTokens, temperature: temperature, topK: topK, topP: topP, seed: seed,
                                        stopToken: stopAtEos ? gen.eosTokenId.map { Int32($0) } : nil, useCache: !noCache)
        let (_, newIds, newText) = try gen.generate(prompt: prompt!, options: options)
        if json {
            let obj: [String: Any] = ["prompt": prompt!, "new_ids": newIds.map { Int($0) }, "new_text": newText]
            let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: d, as: UTF8.self))
        } else {
            print(prompt! + newText)
        }
    }

    func runBench() throws {
        let config = try benchConfig.map { try GPT2Config.load(url: URL(fileURLWithPath: $0)) } ?? GPT2Benchmark.smallConfig()
        guard benchSeq <= config.maxPositions else {
            throw ValidationError("--bench-seq \(benchSeq) exceeds n_positions \(config.maxPositions) of the config")
        }
        let threads = self.threads ?? 1
        let r = GPT2Benchmark.runTraining(config: config, batch: benchBatch, seq: benchSeq, steps: benchSteps, warmup: 1,
                                          threads: threads, precision: bf16 ? .bf16 : .fp32)
        print(r.json)
        if bf16 || noGenerationBench { return }
        let g = try GPT2Benchmark.runGeneration(config: config, promptTokens: 16, newTokens: 64, repeats: 3, threads: threads)
        print(g.json)
    }
}

extension Generate: ConfigFileTypeProbe {
    /// validate() wants --model and --prompt unless --bench.
    static var typeProbeArguments: [String] { ["--model", "probe", "--prompt", "probe"] }
}
