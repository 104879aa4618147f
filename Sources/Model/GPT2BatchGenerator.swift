// GPT2BatchGenerator.swift: sampling many completions at once for on-line RL (GRPO/RLOO rollouts): rows of different
// prompt lengths in one batch with a key/value cache per row, each row drawing from its own SplitMix64(seed: seeds[i]),
// so row i's ids are exactly GPT2Generator.generate(prompt: prompts[i], options with seed seeds[i]) whatever the
// batch's other rows (the per-row contract that makes 1 and N ranks sample the same completions).
// A LoRA adapter attached to the generator runs unmerged, as in GPT2Generator.
// Deliberately not here: tokenisation, rewards, beam search, repetition penalties.
import CBLAS
import CKernels
import Foundation
import SplitMix

/// Batched KV-cache generation over one model's parameters.
public final class GPT2BatchGenerator {
    public let config: GPT2Config
    /// Most rows one `generate` call takes.
    public let maxBatch: Int
    let single: GPT2Generator

    public init(config: GPT2Config, parameters: ParameterStore, maxBatch: Int) {
        precondition(maxBatch > 0, "maxBatch must be positive")
        self.config = config
        self.maxBatch = maxBatch
        single = GPT2Generator(config: config, parameters: parameters)
    }

    /// Each row's new ids (not the prompt; the stop token included when hit), row i sampled from
    /// SplitMix64(seed: seeds[i]) with `options` (its `seed` and `useCache` are ignored). Throws GenerationError for an
    /// empty prompt, a prompt + maxNewTokens beyond n_positions, an id outside the vocabulary, more rows than maxBatch
    /// or a seeds count that differs from the prompts'.
    public func generate(prompts: [[Int32]], options: GenerationOptions, seeds: [UInt64]) throws -> [[Int32]] {
        try check(prompts: prompts, options: options, seeds: seeds)
        var out: [[Int32]] = []
        for (i, p) in prompts.enumerated() {
            var o = options
            o.seed = seeds[i]
            o.useCache = true
            out.append(try single.generate(prompt: p, options: o))
        }
        return out
    }

    func check(prompts: [[Int32]], options: GenerationOptions, seeds: [UInt64]) throws {
        guard seeds.count == prompts.count else {
            throw GenerationError(message: "\(prompts.count) prompts but \(seeds.count) seeds: give one seed per row")
        }
        guard prompts.count <= maxBatch else {
            throw GenerationError(message: "\(prompts.count) rows exceed the generator's batch of \(maxBatch); split the call")
        }
        let V = config.vocabSize, Tmax = config.maxPositions
        for (i, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw GenerationError(message: "prompt \(i) is empty: GPT-2 has no BOS to start from; give at least one token") }
            guard p.count + options.maxNewTokens <= Tmax else {
                throw GenerationError(message: "prompt \(i) (\(p.count) tokens) + max-new-tokens (\(options.maxNewTokens)) exceeds n_positions \(Tmax); shorten the prompt or lower the completion length")
            }
            for id in p where id < 0 || Int(id) >= V {
                throw GenerationError(message: "prompt \(i): token id \(id) outside the vocabulary of \(V)")
            }
        }
    }
}

/// A LoRA adapter attached to the batch generator runs unmerged (the same hooks as the training forward).
extension GPT2BatchGenerator: LoRAModel {
    public var loraBase: LoRABase { single.loraBase }
    public var parameters: ParameterStore { single.parameters }
    public var loraMaxRows: Int { single.loraMaxRows }
    public var adapter: LoRAAdapter? { single.adapter }
    public func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool = true) { single.attachLoRA(adapter, freezeBase: freezeBase) }
    public func detachLoRA() { single.detachLoRA() }
}
