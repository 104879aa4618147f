// TextGeneration: inference of a causal language model: a GPT-2 folder (opened by ModelFolder and loaded by the same
// LoadedLM as `train` and `eval` use), optionally with a PEFT LoRA adapter run unmerged, generating from a prompt.
// Deliberately not here: the decoding algorithm and KV cache (Model/GPT2Generate.swift), the CLI's output format.
import Foundation
import Model
import Tokenizers

public final class TextGenerator {
    public let folder: ModelFolder
    let lm: LoadedLM
    let generator: GPT2Generator
    /// The folder's eos_token_id (the optional stop token).
    public var eosTokenId: Int? { lm.config.eosTokenId }

    /// Opens the GPT-2 folder `modelDir` (an LM, or a GPT-2 classifier whose tied wte serves as the LM head, as
    /// transformers' GPT2LMHeadModel would load it) and attaches the adapter in `adapterDir`, if any.
    public init(modelDir: URL, adapterDir: URL?) throws {
        folder = try ModelFolder.open(modelDir)
        guard case .gpt2 = folder.config else {
            // The mirror of `predict` on a language model: say what the folder is and which command fits it.
            let dir = folder.directory.path
            throw TrainingError("\(folder.configURL.path): this is a BERT-family classifier (\(folder.architecture ?? "no architectures field")), not a GPT-2 language model, so it cannot generate text; use `disttrain predict --model \(dir) --input FILE` to classify, or `disttrain eval --model \(dir) --eval-file FILE` to score it", exitCode: 2)
        }
        if let adapterDir { try AdapterBase.check(folder: folder, adapterDir: adapterDir) }
        lm = try LoadedLM(folder: folder, seed: 0)
        generator = GPT2Generator(config: lm.config, parameters: lm.store)
        if let adapterDir {
            do { try PEFTAdapter.load(adapterDir, into: generator, freezeBase: true) } catch let e as LoRAError {
                throw TrainingError("--adapter \(adapterDir.path): \(e.message)", exitCode: 2)
            }
        }
    }

    /// The prompt's ids (no special tokens are added: GPT-2 adds none) and the generated ids and text.
    public func generate(prompt: String, options: GenerationOptions) throws -> (promptIds: [Int32], newIds: [Int32], newText: String) {
        let promptIds = try lm.tokenizer.encode(prompt, pair: nil, addSpecialTokens: true, maxLength: nil).ids
        let newIds: [Int32]
        do { newIds = try generator.generate(prompt: promptIds, options: options) } catch let e as GenerationError {
            throw TrainingError(e.message, exitCode: 2)
        }
        return (promptIds, newIds, lm.tokenizer.decode(newIds, skipSpecialTokens: false))
    }
}
