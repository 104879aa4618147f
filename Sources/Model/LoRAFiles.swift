// LoRAFiles.swift: LoRA adapters in PEFT's on-disk format, and merging an adapter into its base weights.
// An adapter folder holds adapter_config.json (LoraConfig.to_dict with every field peft 0.21 writes) and
// adapter_model.safetensors with PEFT's saved keys: the adapter name drops out
// ("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight" [r, in], "...lora_B.weight" [out, r]) and
// modules_to_save copies take their base name ("base_model.model.classifier.weight"). Loading checks every tensor's
// name and shape against the base model and fails with one line naming the tensor.
// Merge: W += s·(B A) for every target (nn.Linear; Conv1D with fan_in_fan_out, GPT-2: W += s·(B A)ᵀ), and each
// modules_to_save tensor replaces its base tensor; in memory (`merge`) or over tensor files (`mergeTensors`).
// Deliberately not here: the forward/backward hooks (LoRA.swift), writing the merged model folder with its tokenizer
// (the merge command does that), peft's model-card README.md.
import Foundation

public enum PEFTAdapter {
    public static let configFileName = "adapter_config.json"
    public static let weightsFileName = "adapter_model.safetensors"
    /// The peft release whose adapter format (config fields and key names) we write; recorded as peft_version.
    public static let formatVersion = "0.21.2"

    /// The LoRA pairs an adapter file saves, in file order: each adapted module's name as the base model spells it
    /// ("bert.encoder.layer.0.attention.self.query"), its base weight's name (module + ".weight") and the lora_A
    /// [r, in] and lora_B [out, r] tensors (nil when missing; the loader names that). Callers outside Model (the
    /// adapter/base check) need no PEFT key grammar.
    public static func loraPairs(_ file: SafeTensorsFile) -> [(module: String, weight: String, a: TensorInfo?, b: TensorInfo?)] {
        let prefix = "base_model.model.", suffixA = ".lora_A.weight"
        return file.names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(suffixA) }.map { key in
            let module = String(key.dropFirst(prefix.count).dropLast(suffixA.count))
            return (module, module + ".weight", file.info(key), file.info(prefix + module + ".lora_B.weight"))
        }
    }

    /// The class count of the trained classifier head an adapter file saves (modules_to_save: an encoder's
    /// `classifier`, GPT-2's `score`), nil when it saves none.
    public static func headRows(_ file: SafeTensorsFile) -> Int? {
        guard let head = file.info("base_model.model.classifier.weight") ?? file.info("base_model.model.score.weight")
                ?? file.info("base_model.model.qa_outputs.weight"),
              head.shape.count == 2 else { return nil }
        return head.shape[0]
    }

    // MARK: config

    /// adapter_config.json as peft writes it: every LoraConfig field, most at peft's default (null, {}, false).
    public static func configJSON(_ c: LoRAConfig) -> [String: Any] {
        let null = NSNull()
        let alpha: Any = c.alpha == c.alpha.rounded() && abs(c.alpha) < 1e15 ? Int(c.alpha) as Any : c.alpha as Any
        let targets: Any = c.targetRegex.map { $0 as Any } ?? (c.targetModules ?? []) as Any
        return [
            "alora_invocation_tokens": null, "alpha_pattern": [String: Any](), "arrow_config": null,
            "auto_mapping": null, "base_model_name_or_path": c.baseModelNameOrPath.map { $0 as Any } ?? null,
            "bias": "none", "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
            "exclude_modules": null, "fan_in_fan_out": c.fanInFanOut, "inference_mode": true,
            "init_lora_weights": c.initLoRAWeights, "kasa_config": null, "layer_replication": null,
            "layers_pattern": null, "layers_to_transform": null, "loftq_config": [String: Any](),
            "lora_alpha": alpha, "lora_bias": false, "lora_dropout": c.dropout, "lora_ga_config": null,
            "megatron_config": null, "megatron_core": "megatron.core",
            "modules_to_save": c.modulesToSave.map { $0 as Any } ?? null, "monteclora_config": null,
            "peft_type": "LORA", "peft_version": formatVersion, "qalora_group_size": 16, "r": c.r,
            "rank_pattern": [String: Any](), "revision": null, "target_modules": targets, "target_parameters": null,
            "task_type": c.taskType, "trainable_token_indices": null, "use_bdlora": null, "use_dora": false,
            "use_qalora": false, "use_rslora": c.useRSLoRA, "velora_config": null,
        ]
    }

    /// Reads `dir/adapter_config.json`; rejects LoRA variants disttrain does not implement, naming the field.
    public static func readConfig(_ dir: URL) throws -> LoRAConfig {
        let url = dir.appendingPathComponent(configFileName)
        let path = url.path
        guard let data = try? Data(contentsOf: url) else {
            throw LoRAError("\(path): not found; pass --adapter a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
        }
        guard let j = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw LoRAError("\(path): not a JSON object; the adapter config is corrupt")
        }
        func isSet(_ k: String) -> Bool {
            guard let v = j[k], !(v is NSNull) else { return false }
            if let d = v as? [String: Any] { return !d.isEmpty }
            if let a = v as? [Any] { return !a.isEmpty }
            if let b = v as? Bool { return b }
            return true
        }
        guard (j["peft_type"] as? String) == "LORA" else {
            throw LoRAError("\(path): peft_type is \(j["peft_type"] ?? "missing"), not LORA; only LoRA adapters are supported")
        }
        guard let r = (j["r"] as? NSNumber)?.intValue else { throw LoRAError("\(path): field 'r' is missing or not an integer") }
        guard let alpha = (j["lora_alpha"] as? NSNumber)?.doubleValue else {
            throw LoRAError("\(path): field 'lora_alpha' is missing or not a number")
        }
        let bias = (j["bias"] as? String) ?? "none"
        guard bias == "none" else {
            throw LoRAError("\(path): bias '\(bias)' is not supported (only \"none\"); retrain the adapter with bias=\"none\"")
        }
        for k in ["use_dora", "rank_pattern", "alpha_pattern", "layers_to_transform", "layer_replication",
                  "lora_bias", "exclude_modules", "trainable_token_indices", "target_parameters"] where isSet(k) {
            throw LoRAError("\(path): field '\(k)' is set (\(j[k]!)); disttrain supports plain LoRA on BERT/DistilBERT linears and GPT-2 Conv1D layers only")
        }
        var c = LoRAConfig(r: r, alpha: alpha, dropout: (j["lora_dropout"] as? NSNumber)?.doubleValue ?? 0,
                           useRSLoRA: (j["use_rslora"] as? Bool) ?? false)
        if let s = j["target_modules"] as? String { c.targetRegex = s; c.targetModules = nil }
        else if let a = j["target_modules"] as? [String] { c.targetModules = a }
        else { c.targetModules = nil }
        c.modulesToSave = j["modules_to_save"] as? [String]
        c.taskType = (j["task_type"] as? String) ?? "SEQ_CLS"
        c.baseModelNameOrPath = j["base_model_name_or_path"] as? String
        c.initLoRAWeights = (j["init_lora_weights"] as? Bool) ?? true
        c.fanInFanOut = (j["fan_in_fan_out"] as? Bool) ?? false
        return c
    }

    // MARK: weights

    /// Writes adapter_config.json and adapter_model.safetensors (PEFT's saved key names) into `dir` (created).
    public static func save(plan: LoRAPlan, store: ParameterStore, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tensors = store.entries.map {
            TensorToWrite(name: LoRAPlan.onDiskName($0.name), shape: $0.shape, floats: UnsafeBufferPointer(store.value($0.name)))
        }
        try SafeTensorsWriter.write(tensors, to: dir.appendingPathComponent(weightsFileName))
        var config = plan.config   // peft records the resolved default targets, not an empty list
        if config.targetModules == nil && config.targetRegex == nil { config.targetModules = plan.base.defaultTargets }
        let data = try JSONSerialization.data(withJSONObject: configJSON(config),
                                              options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try FileIO.writeAtomically(data, to: dir.appendingPathComponent(configFileName))
    }

    public static func save(_ adapter: LoRAAdapter, to dir: URL) throws {
        try save(plan: adapter.plan, store: adapter.store, to: dir)
    }

    /// Fills `store` (laid out by `plan`) from `dir/adapter_model.safetensors`: every tensor must be present with its
    /// shape, and the file may hold nothing else (a tensor for a layer the base lacks means another base model).
    public static func loadWeights(_ dir: URL, plan: LoRAPlan, into store: ParameterStore) throws {
        let url = dir.appendingPathComponent(weightsFileName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw LoRAError("\(url.path): not found; a PEFT adapter folder holds adapter_model.safetensors (adapter_model.bin is not supported)")
        }
        let file = try SafeTensorsFile(url: url)
        var used = Set<String>()
        let hint = "the adapter was trained on another base model; pass the --model it was made for (base_model_name_or_path: \(plan.config.baseModelNameOrPath ?? "unknown"))"
        for e in store.entries {
            let name = LoRAPlan.onDiskName(e.name)
            guard let info = file.info(name) else {
                throw LoRAError("\(url.path): tensor '\(name)' (shape \(e.shape)) is missing; \(hint)")
            }
            guard info.shape == e.shape else {
                throw LoRAError("\(url.path): tensor '\(name)' has shape \(info.shape) but this base model needs \(e.shape); \(hint)")
            }
            try file.copyFloats(name, into: store.value(e.name))
            used.insert(name)
        }
        if let extra = file.names.first(where: { !used.contains($0) }) {
            throw LoRAError("\(url.path): tensor '\(extra)' matches no module of this base model under adapter_config.json's targets; \(hint)")
        }
    }

    /// Loads the PEFT adapter in `dir` onto `model` and attaches it (frozen base by default): the model then runs
    /// base + adapter unmerged, and training continues from the adapter's values. Returns the adapter.
    @discardableResult
    public static func load(_ dir: URL, into model: any LoRAModel, freezeBase: Bool = true) throws -> LoRAAdapter {
        let plan = try LoRAPlan(config: try readConfig(dir), base: model.loraBase)
        let adapter = LoRAAdapter(plan: plan, model: model, seed: 0)
        try loadWeights(dir, plan: plan, into: adapter.store)
        model.attachLoRA(adapter, freezeBase: freezeBase)
        return adapter
    }

    // MARK: merge

    /// Folds the adapter into `base` (laid out as `plan.base.layout`): W += s·(B A) per target (Conv1D, stored
    /// [in, out]: W += s·(B A)ᵀ = s·Aᵀ Bᵀ) and every modules_to_save tensor copied over its base tensor. `base` then is
    /// a plain model equal to base + adapter.
    public static func merge(plan: LoRAPlan, adapter store: ParameterStore, into base: ParameterStore) {
        let s = Float(plan.config.scaling), r = plan.config.r
        for t in plan.targets {
            let w = base.value(t.module + ".weight")
            precondition(w.count == t.outC * t.inC, "merge: \(t.module).weight does not have the planned shape")
            let A = UnsafePointer(store.value(t.aName).baseAddress!), B = UnsafePointer(store.value(t.bName).baseAddress!)
            if plan.base.conv1D {   // W[in, out] += s · Aᵀ[in, r] Bᵀ[r, out]
                sgemm(transA: true, transB: true, m: t.inC, n: t.outC, k: r, alpha: s, A, lda: t.inC, B, ldb: r,
                      beta: 1, w.baseAddress!, ldc: t.outC)
            } else {                // W[out, in] += s · B[out, r] A[r, in]
                sgemm(transA: false, transB: false, m: t.outC, n: t.inC, k: r, alpha: s, B, lda: r, A, ldb: t.inC,
                      beta: 1, w.baseAddress!, ldc: t.inC)
            }
        }
        for sv in plan.saved { _ = base.value(sv.baseName).update(fromContentsOf: store.value(sv.storeName)) }
    }

    /// Architecture-independent merge over tensor files, for any base whose adapted modules are nn.Linear
    /// (W [out, in] += s·B A) or, with fan_in_fan_out, Conv1D (GPT-2: W [in, out] += s·(B A)ᵀ). Adapter keys
    /// "base_model.model.<module>.lora_A.weight" find their base tensor as "<module>.weight", or without the module's
    /// first component (hub layouts without "transformer." / "bert."); any other adapter tensor (modules_to_save)
    /// replaces the base tensor of the same name and shape. Returns every base tensor in file order (F32, I64 kept).
    public static func mergeTensors(base: SafeTensorsFile, adapterDir: URL) throws -> [TensorToWrite] {
        let config = try readConfig(adapterDir)
        guard config.r > 0 else { throw LoRAError("\(adapterDir.path): r = \(config.r) is invalid; r must be positive") }
        let url = adapterDir.appendingPathComponent(weightsFileName)
        guard FileManager.default.fileExists(atPath: url.path) else { throw LoRAError("\(url.path): not found") }
        let file = try SafeTensorsFile(url: url)
        let prefix = "base_model.model."
        let hint = "the adapter was trained on another base model (base_model_name_or_path: \(config.baseModelNameOrPath ?? "unknown"))"
        func baseName(_ name: String) throws -> String {
            let parts = name.split(separator: ".")
            let candidates = [name] + (parts.count > 2 ? [parts.dropFirst().joined(separator: ".")] : [])
            guard let n = candidates.first(where: base.contains) else {
                throw LoRAError("\(url.path): the base model has no tensor '\(name)'; \(hint)")
            }
            return n
        }
        var merged: [String: [Float]] = [:]
        let s = Float(config.scaling), r = config.r
        for key in file.names {
            guard key.hasPrefix(prefix) else { throw LoRAError("\(url.path): tensor '\(key)' lacks the PEFT prefix '\(prefix)'; not a PEFT adapter") }
            if key.hasSuffix(".lora_B.weight") { continue }
            if key.hasSuffix(".lora_A.weight") {
                let module = String(key.dropFirst(prefix.count).dropLast(".lora_A.weight".count))
                let bKey = prefix + module + ".lora_B.weight"
                guard let aInfo = file.info(key), let bInfo = file.info(bKey) else { throw LoRAError("\(url.path): '\(bKey)' is missing") }
                let wName = try baseName(module + ".weight")
                let wShape = base.info(wName)!.shape
                guard aInfo.shape.count == 2, bInfo.shape.count == 2, aInfo.shape[0] == r, bInfo.shape[1] == r else {
                    throw LoRAError("\(url.path): '\(key)' \(aInfo.shape) / lora_B \(bInfo.shape) do not have rank r = \(r) from adapter_config.json")
                }
                let inC = aInfo.shape[1], outC = bInfo.shape[0]
                let want = config.fanInFanOut ? [inC, outC] : [outC, inC]
                guard wShape == want else {
                    throw LoRAError("\(url.path): '\(key)' needs base '\(wName)' of shape \(want)\(config.fanInFanOut ? " (fan_in_fan_out)" : "") but it is \(wShape); \(hint)")
                }
                var w = try base.floats(wName)
                let A = try file.floats(key), B = try file.floats(bKey)
                if config.fanInFanOut {   // W[in, out] += s · Aᵀ[in, r] Bᵀ[r, out]
                    sgemm(transA: true, transB: true, m: inC, n: outC, k: r, alpha: s, A, lda: inC, B, ldb: r, beta: 1, &w, ldc: outC)
                } else {                  // W[out, in] += s · B[out, r] A[r, in]
                    sgemm(transA: false, transB: false, m: outC, n: inC, k: r, alpha: s, B, lda: r, A, ldb: inC, beta: 1, &w, ldc: inC)
                }
                merged[wName] = w
            } else {
                let name = try baseName(String(key.dropFirst(prefix.count)))
                guard base.info(name)!.shape == file.info(key)!.shape else {
                    throw LoRAError("\(url.path): '\(key)' has shape \(file.info(key)!.shape) but base '\(name)' is \(base.info(name)!.shape); \(hint)")
                }
                merged[name] = try file.floats(key)
            }
        }
        return try base.tensors.map { t in
            if let m = merged[t.name] { return TensorToWrite(name: t.name, shape: t.shape, floats: m) }
            switch t.dtype {
            case .f32: return TensorToWrite(name: t.name, shape: t.shape, floats: try base.floats(t.name))
            case .i64: return TensorToWrite(name: t.name, shape: t.shape, int64s: try base.int64s(t.name))
            default:
                throw LoRAError("\(base.url.path): tensor '\(t.name)' is \(t.dtype.rawValue); merge writes float32 models only, convert the base to float32 first")
            }
        }
    }
}
