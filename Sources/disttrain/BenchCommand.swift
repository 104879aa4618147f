// `disttrain bench`: trains N steps on random tokens at a model shape and prints one JSON line of figures.
import ArgumentParser
import Foundation
import Model

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training throughput, MFU and peak memory at a model shape.",
        discussion: "Default shape: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, FFN 1536), batch 32, sequence 128, fp32.")
    @Option(help: "Compute threads.") var threads: Int = 1
    @Option(help: "Batch size.") var batchSize: Int = 32
    @Option(help: "Sequence length.") var seqLen: Int = 128
    @Option(help: "Timed steps (after 2 warm-up steps).") var steps: Int = 10
    @Option(help: "A config.json to take the shape from (default: the MiniLM shape).") var config: String?

    func validate() throws {
        guard threads > 0, batchSize > 0, seqLen > 1, steps > 0 else {
            throw ValidationError("--threads, --batch-size and --steps must be positive and --seq-len at least 2")
        }
    }

    func run() throws {
        let cfg: ModelConfig
        if let config { cfg = try ModelConfig.load(url: URL(fileURLWithPath: config)) } else { cfg = try Self.miniLMConfig() }
        guard seqLen <= cfg.maxPositions else {
            throw ValidationError("--seq-len \(seqLen) exceeds max_position_embeddings \(cfg.maxPositions)")
        }
        let r = ModelBenchmark.run(config: cfg, batch: batchSize, seq: seqLen, steps: steps, warmup: 2, threads: threads)
        print(r.jsonLine)
    }

    static func miniLMConfig() throws -> ModelConfig {
        try ModelConfig(json: [
            "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
            "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "id2label": ["0": "neg", "1": "pos"],
        ], path: "<built-in MiniLM shape>")
    }
}
