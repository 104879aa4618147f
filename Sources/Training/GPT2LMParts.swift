// GPT2LMParts.swift: what every task that trains a GPT-2 LM head does alike — causal LM, DPO, GRPO: the folder it saves
// (a Hugging Face GPT-2 LM folder, or the PEFT adapter under LoRA), the gradient all-reduce layout (the blocks as
// stages; no row-sparse table, since the tied head writes every row of wte), the per-layer backward hook and the
// probe. Each task builds one from its own fields and forwards to it, so the three never drift apart.
// Deliberately not here: anything a task computes (losses, data, evaluation).
import Foundation
import Model

struct GPT2LMParts {
    let model: GPT2LMHead
    let config: GPT2Config
    let baseStore: ParameterStore
    let lora: (plan: LoRAPlan, store: ParameterStore)?
    let modelDir: URL

    var store: ParameterStore { lora?.store ?? baseStore }

    /// Full fine-tuning writes a Hugging Face GPT-2 LM folder (`generate` loads it); LoRA writes the PEFT adapter only.
    func save(to dir: URL, weights: ParameterStore?) throws {
        if let lora {
            try PEFTAdapter.save(plan: lora.plan, store: weights ?? lora.store, to: dir)
            return
        }
        try GPT2Layout.save(weights ?? baseStore, config: config, classifier: false, to: dir)
        try FileIO.copyFiles(FileIO.companionFiles, from: modelDir, to: dir)
    }

    /// Full fine-tuning: the blocks as stages. No row-sparse table: the LM head is tied to `wte`, so every row of its
    /// gradient is written (the head's softmax touches the whole vocabulary). LoRA: one small buffer.
    var gradientSync: GradientSyncLayout {
        guard lora == nil else { return GradientSyncLayout() }
        return GradientSyncLayout(stages: GradientSyncLayout.layerStages(store: store, architecture: model.config))
    }

    func setBackwardHook(_ hook: ((Int) -> Void)?) {
        guard lora == nil else { return }
        model.onLayerBackward = GradientSyncLayout.stageHook(hook, layers: model.config.layers)
    }

    func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { model.probe = probe }
}
