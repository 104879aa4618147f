// AdapterBase: the one check that a PEFT LoRA adapter belongs to the base model it is about to run on or be merged
// into. `predict`, `eval`, `generate` and `merge` all call it before loading weights, so an adapter trained on another
// base is refused with the same line and the same exit code (2, a usage error: the fix is another --model) everywhere.
// What it compares: every lora_A/lora_B pair must find its base module's weight in --model's model.safetensors, with
// the shape the pair implies ([out, in]; [in, out] for GPT-2's Conv1D), and every layer of the base must have the
// adapter's weights for that target (a deeper base of the same widths is another model). PEFT records the base only
// by name (base_model_name_or_path), so an adapter for another model of the very same shapes cannot be told apart.
// Deliberately not here: loading or merging the adapter (Model/LoRAFiles.swift, AdapterMerge.swift).
import Foundation
import Model

public enum AdapterBase {
    /// Throws `TrainingError` (exit 2) when the adapter in `adapterDir` cannot belong to the model in `folder`, or when
    /// `adapterDir` is not a readable PEFT adapter folder.
    public static func check(folder: ModelFolder, adapterDir: URL) throws {
        let config: LoRAConfig
        do { config = try PEFTAdapter.readConfig(adapterDir) } catch let e as LoRAError {
            throw TrainingError("--adapter \(adapterDir.path): \(e.message)", exitCode: 2)
        }
        let adapterURL = adapterDir.appendingPathComponent("adapter_model.safetensors")
        let baseURL = folder.directory.appendingPathComponent("model.safetensors")
        // Missing files are reported by the loaders, with their own advice.
        guard FileManager.default.fileExists(atPath: adapterURL.path), FileManager.default.fileExists(atPath: baseURL.path)
        else { return }
        let adapter: SafeTensorsFile, base: SafeTensorsFile
        do { (adapter, base) = (try SafeTensorsFile(url: adapterURL), try SafeTensorsFile(url: baseURL)) } catch {
            return   // unreadable files: the loaders say why
        }
        let conv1D: Bool = if case .gpt2 = folder.config { true } else { false }
        var adapted = Set<String>()   // the base weights the adapter's pairs belong to
        func refuse(_ detail: String) -> TrainingError {
            let recorded = config.baseModelNameOrPath.map { " (the adapter records base_model_name_or_path \($0))" } ?? ""
            return TrainingError("--adapter \(adapterDir.path) was trained on another base model than --model \(folder.directory.path): \(detail)\(recorded); pass the --model the adapter was trained on", exitCode: 2)
        }
        for pair in PEFTAdapter.loraPairs(adapter) {
            let module = pair.module
            guard let a = pair.a, let b = pair.b, a.shape.count == 2, b.shape.count == 2 else { continue }   // malformed: the loader names it
            guard let weight = baseTensor(pair.weight, in: base) else {
                throw refuse("the base has no module '\(module)'")
            }
            let (inC, outC) = (a.shape[1], b.shape[0])
            let want = conv1D ? [inC, outC] : [outC, inC]
            let have = base.info(weight)!.shape
            guard have == want else {
                throw refuse("its '\(module)' is \(inC)→\(outC) but the base's '\(weight)' has shape \(have)")
            }
            adapted.insert(weight)
        }
        // A deeper base of the same widths: the adapter covers a target in some layers and the base has more of them
        // (PEFT adapts every layer unless layers_to_transform says otherwise; we write and read no such subsets).
        let patterns = Set(adapted.map(layerPattern))
        if let extra = base.names.filter({ !adapted.contains($0) && patterns.contains(layerPattern($0)) }).min() {
            throw refuse("the base has '\(extra)', a layer the adapter holds no weights for (the base is deeper)")
        }
    }

    /// A tensor name with its layer numbers replaced ("h.3.attn.c_attn.weight" → "h.#.attn.c_attn.weight").
    static func layerPattern(_ name: String) -> String {
        name.split(separator: ".", omittingEmptySubsequences: false).map { $0.allSatisfy(\.isNumber) && !$0.isEmpty ? "#" : String($0) }
            .joined(separator: ".")
    }

    /// The base tensor an adapter module's weight names: exactly, without the model prefix (hub layouts without
    /// "transformer." or "bert."), or with one the adapter lacks.
    static func baseTensor(_ name: String, in base: SafeTensorsFile) -> String? {
        if base.contains(name) { return name }
        let parts = name.split(separator: ".")
        if parts.count > 2, case let short = parts.dropFirst().joined(separator: "."), base.contains(short) { return short }
        let matches = base.names.filter { $0.hasSuffix("." + name) }
        return matches.count == 1 ? matches[0] : nil
    }
}
