// LoRA.swift: low-rank adapters (PEFT's LoRA) on the linear layers of BERT/DistilBERT encoders (nn.Linear) and GPT-2
// (Conv1D, fan_in_fan_out), with a frozen base. A target linear computes y = x Wᵀ + b + s·(dropout(x) Aᵀ) Bᵀ (Conv1D:
// y = x W + b + the same update) with A [r, in], B [out, r], s = alpha/r (alpha/√r with rsLoRA). The trainable tensors (every lora_A/lora_B, plus the modules_to_save copies such as the classifier) live in
// their own flat ParameterStore, the "trainable store", under PEFT's in-memory names
// ("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight",
//  "base_model.model.classifier.modules_to_save.default.weight"), so that the all-reduce and AdamW touch only them.
// Target matching follows peft: a list entry t matches module key k when k == t or k ends with "." + t; a string is a
// regex that must match the whole key. modules_to_save entries match by plain suffix (peft's `key.endswith(name)`).
// Shapes: n = B·T rows, in/out the linear's widths, r the rank. Per target the arena keeps h = dropout(x) Aᵀ [n, r].
// Deliberately not here: PEFT file I/O and merging (LoRAFiles.swift), the model wiring (EncoderClassifier and
// GPT2Transformer call the hooks at each target), the optimizer (AdamW over `store`).
import CKernels
import Foundation
import SplitMix

/// A user-facing LoRA error: one line naming the module, tensor or field, and the fix.
public struct LoRAError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// PEFT's LoraConfig fields that disttrain supports (bias "none", no DoRA, no per-layer rank/alpha patterns).
public struct LoRAConfig: Sendable, Equatable {
    /// Rank r of the update B·A; must be positive.
    public var r: Int
    /// lora_alpha: the update is scaled by alpha / r (alpha / √r when `useRSLoRA`).
    public var alpha: Double
    /// lora_dropout: dropout probability on the adapter's input, keyed by (seed, step, sample, site) like the model's.
    public var dropout: Double
    /// use_rslora: rank-stabilised scaling alpha / √r.
    public var useRSLoRA: Bool
    /// target_modules as a list; nil = peft's default for the architecture (BERT query+value, DistilBERT q_lin+v_lin,
    /// GPT-2 c_attn).
    public var targetModules: [String]?
    /// target_modules as a regex string (peft: re.fullmatch on the module key); overrides `targetModules`.
    public var targetRegex: String?
    /// modules_to_save exactly as peft writes it (for SEQ_CLS peft appends "classifier" and "score" to the user's list).
    public var modulesToSave: [String]?
    /// task_type; "SEQ_CLS" for the classifiers, "CAUSAL_LM" for GPT-2 language models (see `forCausalLM`).
    public var taskType: String
    /// base_model_name_or_path written into adapter_config.json.
    public var baseModelNameOrPath: String?
    /// init_lora_weights as written (true: A kaiming-uniform, B zero).
    public var initLoRAWeights: Bool
    /// fan_in_fan_out: the adapted weights are stored [in, out] (GPT-2 Conv1D); a GPT-2 plan sets it, as peft does.
    public var fanInFanOut: Bool = false

    /// A config as `LoraConfig(task_type=SEQ_CLS, ...)` + `get_peft_model` would record it: "classifier" and "score"
    /// are appended to `modulesToSave` (so the head is trainable by default, as peft does).
    public init(r: Int, alpha: Double, dropout: Double = 0, useRSLoRA: Bool = false, targetModules: [String]? = nil,
                modulesToSave: [String]? = nil, baseModelNameOrPath: String? = nil) {
        self.r = r; self.alpha = alpha; self.dropout = dropout; self.useRSLoRA = useRSLoRA
        self.targetModules = targetModules; self.targetRegex = nil
        self.modulesToSave = (modulesToSave ?? []) + ["classifier", "score"]
        self.taskType = "SEQ_CLS"; self.baseModelNameOrPath = baseModelNameOrPath; self.initLoRAWeights = true
    }

    /// The config as `LoraConfig(task_type=CAUSAL_LM, ...)` records it: no head is appended to modules_to_save.
    public func forCausalLM() -> LoRAConfig {
        var c = self
        c.taskType = "CAUSAL_LM"
        let rest = (modulesToSave ?? []).filter { $0 != "classifier" && $0 != "score" }
        c.modulesToSave = rest.isEmpty ? nil : rest
        return c
    }

    /// The config as `LoraConfig(task_type=QUESTION_ANS, ...)` records it: "qa_outputs" appended to modules_to_save
    /// (PeftModelForQuestionAnswering), instead of the classifiers' "classifier" and "score".
    public func forQuestionAnswering() -> LoRAConfig {
        var c = self
        c.taskType = "QUESTION_ANS"
        c.modulesToSave = (modulesToSave ?? []).filter { $0 != "classifier" && $0 != "score" } + ["qa_outputs"]
        return c
    }

    /// The factor s of the update s·B·A.
    public var scaling: Double { useRSLoRA ? alpha / Double(r).squareRoot() : alpha / Double(r) }

    /// peft's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING for the supported families.
    public static func defaultTargets(_ family: ModelFamily) -> [String] {
        family == .bert ? ["query", "value"] : ["q_lin", "v_lin"]
    }
}

/// What LoRA needs to know of a base architecture: its parameter layout, the linears of every layer it can adapt (in
/// site order), the head modules that can be trained as modules_to_save copies, and peft's defaults for it.
public struct LoRABase: Sendable {
    /// "bert", "distilbert", "gpt2" (named in errors).
    public let architecture: String
    /// The base model's parameter layout (Hugging Face names, named_parameters() order).
    public let layout: ParameterLayout
    public let layers: Int
    /// Module key prefix of layer l: `layerPrefix + "\(l)."`.
    public let layerPrefix: String
    /// The adaptable linears of one layer relative to its prefix; site = layer · count + index.
    public let layerModules: [String]
    /// (in, out) widths of each layer module.
    public let widths: [[Int]]
    /// Module keys trainable as full copies (modules_to_save).
    public let heads: Set<String>
    /// peft's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING entry.
    public let defaultTargets: [String]
    /// The weights are stored [in, out] (GPT-2 Conv1D): the adapter is fan_in_fan_out.
    public let conv1D: Bool
    public var sitesPerLayer: Int { layerModules.count }

    /// BERT / DistilBERT (MiniLM) encoder classifiers: nn.Linear [out, in].
    public static func encoder(_ model: ModelConfig) -> LoRABase {
        let bert = model.family == .bert
        let C = model.hidden, FF = model.intermediate
        return LoRABase(
            architecture: model.family.rawValue, layout: EncoderClassifier.makeLayout(config: model), layers: model.layers,
            layerPrefix: bert ? "bert.encoder.layer." : "distilbert.transformer.layer.",
            layerModules: bert ? ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                                  "intermediate.dense", "output.dense"]
                               : ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2"],
            widths: [[C, C], [C, C], [C, C], [C, C], [C, FF], [FF, C]],
            heads: ["classifier", "pre_classifier", "bert.pooler", "bert.pooler.dense", "qa_outputs"],
            defaultTargets: LoRAConfig.defaultTargets(model.family), conv1D: false)
    }

    /// GPT-2 (GPT2LMHeadModel, or GPT2ForSequenceClassification with `classifier`): Conv1D [in, out] on c_attn,
    /// attn.c_proj, mlp.c_fc, mlp.c_proj; the `score` head as a modules_to_save copy.
    public static func gpt2(_ config: GPT2Config, classifier: Bool) -> LoRABase {
        let C = config.hidden, FF = config.intermediate
        return LoRABase(
            architecture: "gpt2", layout: GPT2Layout.make(config: config, classifier: classifier), layers: config.layers,
            layerPrefix: "transformer.h.", layerModules: ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
            widths: [[C, 3 * C], [C, C], [C, FF], [FF, C]], heads: classifier ? ["score"] : [],
            defaultTargets: ["c_attn"], conv1D: true)
    }
}

/// Which tensors a LoRAConfig makes trainable on a given base model, and the trainable store's layout.
/// Pure: built from the configs alone (merging needs no activation arena).
public struct LoRAPlan: Sendable {
    /// One adapted linear.
    public struct Target: Sendable {
        /// Hugging Face module key, e.g. "bert.encoder.layer.0.attention.self.query".
        public let module: String
        /// layer · sitesPerLayer + index of the module in the layer (BERT: q, k, v, attention out, ffn in, ffn out;
        /// GPT-2: c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj).
        public let site: Int
        public let inC: Int, outC: Int
        /// Names of lora_A [r, in] and lora_B [out, r] in the trainable store (PEFT in-memory names).
        public let aName: String, bName: String
    }
    /// One base tensor trained as a modules_to_save copy.
    public struct Saved: Sendable {
        public let baseName: String    // "classifier.weight"
        public let storeName: String   // "base_model.model.classifier.modules_to_save.default.weight"
    }
    /// The config as peft records it (fan_in_fan_out set for Conv1D bases, as peft does with a warning).
    public let config: LoRAConfig
    public let targets: [Target]
    public let saved: [Saved]
    public let layout: ParameterLayout
    public let base: LoRABase
    public var sitesPerLayer: Int { base.sitesPerLayer }

    /// PEFT's on-disk key of a trainable-store name: the adapter name ("default") and the modules_to_save wrapper drop.
    public static func onDiskName(_ storeName: String) -> String {
        storeName.replacingOccurrences(of: ".modules_to_save.default.", with: ".")
            .replacingOccurrences(of: ".lora_A.default.", with: ".lora_A.")
            .replacingOccurrences(of: ".lora_B.default.", with: ".lora_B.")
    }

    /// A BERT-family encoder classifier.
    public init(config: LoRAConfig, model: ModelConfig) throws {
        try self.init(config: config, base: .encoder(model))
    }

    public init(config: LoRAConfig, base: LoRABase) throws {
        guard config.r > 0 else {
            throw LoRAError("LoRA rank r = \(config.r) is invalid; r must be a positive integer (e.g. --lora-r 8)")
        }
        guard config.dropout >= 0 && config.dropout < 1 else {
            throw LoRAError("lora_dropout = \(config.dropout) is invalid; it must be in [0, 1)")
        }
        guard config.alpha.isFinite else { throw LoRAError("lora_alpha = \(config.alpha) is invalid; give a finite number") }
        var config = config
        if base.conv1D {
            config.fanInFanOut = true   // peft: "fan_in_fan_out is set to False but the target module is Conv1D. Setting it to True."
        } else if config.fanInFanOut {
            throw LoRAError("fan_in_fan_out is true, but \(base.architecture) layers are nn.Linear [out, in]; the adapter was made for a Conv1D model such as GPT-2")
        }
        self.config = config
        self.base = base
        let mods = base.layerModules
        let family = base.architecture
        let shortNames = mods.map { String($0.split(separator: ".").last!) }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        // Every adaptable linear, and every linear module of the HF model (the heads too, which LoRA cannot adapt here).
        var supported: [String: (site: Int, inC: Int, outC: Int)] = [:]
        for l in 0..<base.layers {
            for (k, m) in mods.enumerated() {
                supported[base.layerPrefix + "\(l)." + m] = (l * mods.count + k, base.widths[k][0], base.widths[k][1])
            }
        }
        let linearModules = base.layout.entries.filter { e in
            guard e.shape.count == 2 && e.name.hasSuffix(".weight") else { return false }
            let m = String(e.name.dropLast(".weight".count))
            return supported[m] != nil || base.heads.contains(m)
        }.map { String($0.name.dropLast(".weight".count)) }
        var chosen = Set<String>()
        if let regexSource = config.targetRegex {
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: "^(?:" + regexSource + ")$") } catch {
                throw LoRAError("target_modules regex '\(regexSource)' does not compile; give a valid regular expression or a list of module names")
            }
            for key in linearModules where regex.firstMatch(in: key, range: NSRange(key.startIndex..., in: key)) != nil {
                chosen.insert(key)
            }
            if chosen.isEmpty {
                throw LoRAError("target_modules regex '\(regexSource)' matches no linear layer of this \(family) model; valid layer names: \(mods.joined(separator: ", "))")
            }
        } else {
            let names = config.targetModules ?? base.defaultTargets
            guard !names.isEmpty else {
                throw LoRAError("target_modules is empty; name the layers to adapt, e.g. \(base.defaultTargets.joined(separator: ","))")
            }
            for t in names {
                if t == "all-linear" {
                    throw LoRAError("target_modules 'all-linear' is not supported; list the layers instead, e.g. \(shortNames.joined(separator: ","))")
                }
                let hits = linearModules.filter { $0 == t || $0.hasSuffix("." + t) }
                guard !hits.isEmpty else {
                    throw LoRAError("target module '\(t)' matches no linear layer of this \(family) model; valid names: \(shortNames.joined(separator: ", ")) (or a suffix such as \(mods[1]))")
                }
                chosen.formUnion(hits)
            }
        }
        for key in chosen where supported[key] == nil {
            throw LoRAError("target module '\(key)' is not a layer linear; disttrain adapts only \(mods.joined(separator: ", ")) (train the head with modules_to_save instead)")
        }
        // modules_to_save: module keys are every prefix of a parameter name; peft matches them by plain suffix and
        // wraps the outermost match. Only head modules can be trained as full copies here.
        var moduleKeys: [String] = []
        var seenKeys = Set<String>()
        for e in base.layout.entries {
            let parts = e.name.split(separator: ".")
            for i in 1..<parts.count {
                let k = parts[0..<i].joined(separator: ".")
                if seenKeys.insert(k).inserted { moduleKeys.append(k) }
            }
        }
        var savedModules: [String] = []
        for name in config.modulesToSave ?? [] {
            for key in moduleKeys where key.hasSuffix(name) {
                guard base.heads.contains(key) else {
                    throw LoRAError("modules_to_save '\(name)' matches '\(key)', which disttrain cannot train as a full copy; only the head modules (\(base.heads.sorted().joined(separator: ", "))) are supported")
                }
                if !savedModules.contains(where: { key.hasPrefix($0 + ".") || key == $0 }) {
                    savedModules.removeAll { $0.hasPrefix(key + ".") }
                    savedModules.append(key)
                }
            }
        }
        // The trainable layout in PEFT's named_parameters() order (the base order: A, B where the module's weight is).
        var layout = ParameterLayout()
        var targets: [Target] = []
        var saved: [Saved] = []
        for e in base.layout.entries {
            let module = e.name.hasSuffix(".weight") ? String(e.name.dropLast(".weight".count)) : nil
            if let module, chosen.contains(module), let s = supported[module] {
                let a = "base_model.model.\(module).lora_A.default.weight", b = "base_model.model.\(module).lora_B.default.weight"
                layout.add(a, [config.r, s.inC]); layout.add(b, [s.outC, config.r])
                targets.append(Target(module: module, site: s.site, inC: s.inC, outC: s.outC, aName: a, bName: b))
            }
            if let owner = savedModules.first(where: { e.name.hasPrefix($0 + ".") }) {
                let rest = e.name.dropFirst(owner.count + 1)
                let n = "base_model.model.\(owner).modules_to_save.default.\(rest)"
                layout.add(n, e.shape)
                saved.append(Saved(baseName: e.name, storeName: n))
            }
        }
        self.targets = targets
        self.saved = saved
        self.layout = layout
    }
}

/// A model LoRA can attach to: its base description, its parameters, the rows of its arena (maxBatch · maxSeq).
public protocol LoRAModel: AnyObject {
    var loraBase: LoRABase { get }
    var parameters: ParameterStore { get }
    var loraMaxRows: Int { get }
    /// The attached adapter (nil: the plain model).
    var adapter: LoRAAdapter? { get }
    /// Attaches `adapter` (built for this model); with `freezeBase` the base gets no gradients at all.
    func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool)
    /// Removes the adapter: the plain base model again.
    func detachLoRA()
}

extension LoRAModel {
    /// Sets the model up for LoRA fine-tuning and returns the trainable store (what the trainer all-reduces and hands
    /// to AdamW): builds the plan (throws LoRAError on a bad config), a fresh adapter from `seed`, attaches it and
    /// freezes the base. Call before the first forward. A trainer then needs only:
    ///     let trainable = try model.enableLoRA(LoRAConfig(r: 8, alpha: 16, targetModules: ["query", "value"],
    ///                                                     baseModelNameOrPath: modelDir), seed: seed)
    ///     // (or `PEFTAdapter.load(dir, into: model)` to continue from a saved adapter)
    ///     let opt = AdamW(store: trainable, config: ...)   // forward/backward as usual; all-reduce trainable.grads
    ///     try PEFTAdapter.save(model.adapter!, to: outputDir)   // or merge into the base for a plain model
    public func enableLoRA(_ config: LoRAConfig, seed: UInt64) throws -> ParameterStore {
        let adapter = LoRAAdapter(plan: try LoRAPlan(config: config, base: loraBase), model: self, seed: seed)
        attachLoRA(adapter, freezeBase: true)
        return adapter.store
    }
}

/// A LoRA adapter attached to one model (EncoderClassifier, GPT2LMHead, GPT2Classifier): the trainable store, and the
/// forward/backward hooks the model calls at each target linear (Conv1D too: A and B are [r, in] and [out, r] there as
/// well, only the base weight is stored transposed, so the hooks are the same). The arena (h per target, scratch) is sized for the model's maxBatch × maxSeq.
public final class LoRAAdapter: @unchecked Sendable {
    public let plan: LoRAPlan
    /// The trainable parameters and their gradients (all-reduce and AdamW run over this store only).
    public let store: ParameterStore
    public var config: LoRAConfig { plan.config }
    let scaling: Float
    let dropoutP: Float
    /// Base-store offset → trainable-store offset of every modules_to_save tensor (the model reads those from here).
    let savedOffset: [Int: Int]
    struct Slot { let a: Int, b: Int, inC: Int, outC: Int; let h: UnsafeMutablePointer<Float> }
    let slots: [Slot?]
    let u: UnsafeMutablePointer<Float>        // [BT, r] scaling · dy B of the target being back-propagated
    let scratch: UnsafeMutablePointer<Float>  // [BT, max(in)] dropout(x), or the input gradient before dropout
    private let arena = ActivationArena()

    /// Dropout site keys of the adapters' inputs: disjoint from DropoutSite's (which stay below 16 + 4·layers).
    public static func dropoutSite(_ site: Int) -> Int { 1_000_000 + site }

    /// Builds the trainable store for `plan` on `model`'s base: modules_to_save copies start from the base values;
    /// lora_A is kaiming-uniform (bound 1/√in, as nn.Linear and peft), lora_B zero (so the model is unchanged), from `seed`.
    public init(plan: LoRAPlan, model: any LoRAModel, seed: UInt64) {
        let base = model.loraBase
        precondition(plan.base.architecture == base.architecture && plan.base.layout.count == model.parameters.layout.count
                        && plan.targets.allSatisfy { $0.site < base.layers * base.sitesPerLayer },
                     "LoRAAdapter: the plan was built for another model config; build it with LoRAPlan(config:base: model.loraBase)")
        self.plan = plan
        store = ParameterStore(layout: plan.layout)
        scaling = Float(plan.config.scaling)
        dropoutP = Float(plan.config.dropout)
        var off: [Int: Int] = [:]
        for s in plan.saved {
            let b = model.parameters.layout.entry(s.baseName)!, t = plan.layout.entry(s.storeName)!
            off[b.offset] = t.offset
            _ = store.value(s.storeName).update(fromContentsOf: model.parameters.value(s.baseName))
        }
        savedOffset = off
        var rng = SplitMix64(seed: seed)
        for t in plan.targets {
            let a = store.value(t.aName), bound = 1 / Double(t.inC).squareRoot()
            for i in 0..<a.count { a[i] = Float((rng.nextUniform() * 2 - 1) * bound) }
        }
        let BT = model.loraMaxRows, r = plan.config.r
        let arena = self.arena
        func buf(_ n: Int) -> UnsafeMutablePointer<Float> { arena.floats(n) }
        var slots = [Slot?](repeating: nil, count: base.layers * base.sitesPerLayer)
        for t in plan.targets {
            slots[t.site] = Slot(a: plan.layout.entry(t.aName)!.offset, b: plan.layout.entry(t.bName)!.offset,
                                 inC: t.inC, outC: t.outC, h: buf(BT * r))
        }
        self.slots = slots
        u = buf(BT * r)
        scratch = buf(BT * max(1, base.widths.map { $0[0] }.max() ?? 1))
    }

    @inline(__always) func hasSite(_ site: Int) -> Bool { slots[site] != nil }

    /// Forward hook after the base y = x Wᵀ + b: h = dropout(x) Aᵀ (kept), y += s · h Bᵀ. x, y: [B·T, in/out].
    func forward(site: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, B: Int, T: Int,
                 dropout: DropoutContext?, samples: [Int], rowOf: [Int]? = nil) {
        guard let s = slots[site] else { return }
        let n = B * T, r = plan.config.r
        let A = UnsafePointer(store.values.baseAddress! + s.a), Bm = UnsafePointer(store.values.baseAddress! + s.b)
        var xin = x
        if let d = dropout, dropoutP > 0 {
            dropoutRows(x, scratch, B: B, T: T, C: s.inC, ctx: d, samples: samples, site: Self.dropoutSite(site), p: dropoutP, rowOf: rowOf)
            xin = UnsafePointer(scratch)
        }
        sgemm(transA: false, transB: true, m: n, n: r, k: s.inC, alpha: 1, xin, lda: s.inC, A, ldb: s.inC, beta: 0, s.h, ldc: r)
        sgemm(transA: false, transB: true, m: n, n: s.outC, k: r, alpha: scaling, s.h, lda: r, Bm, ldb: r, beta: 1, y, ldc: s.outC)
    }

    /// Backward hook, before the base layer's backward (which may overwrite x): dB += s·dyᵀ h; u = s·dy B;
    /// dA += uᵀ dropout(x) (the dropped-out input is regenerated from its key).
    func backwardWeights(site: Int, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, B: Int, T: Int,
                         dropout: DropoutContext?, samples: [Int], rowOf: [Int]? = nil) {
        guard let s = slots[site] else { return }
        let n = B * T, r = plan.config.r
        let V = store.values.baseAddress!, G = store.grads.baseAddress!
        sgemm(transA: true, transB: false, m: s.outC, n: r, k: n, alpha: scaling, dy, lda: s.outC, s.h, ldb: r,
              beta: 1, G + s.b, ldc: r)
        sgemm(transA: false, transB: false, m: n, n: r, k: s.outC, alpha: scaling, dy, lda: s.outC, V + s.b, ldb: r,
              beta: 0, u, ldc: r)
        var xin = x
        if let d = dropout, dropoutP > 0 {
            dropoutRows(x, scratch, B: B, T: T, C: s.inC, ctx: d, samples: samples, site: Self.dropoutSite(site), p: dropoutP, rowOf: rowOf)
            xin = UnsafePointer(scratch)
        }
        sgemm(transA: true, transB: false, m: r, n: s.inC, k: n, alpha: 1, u, lda: r, xin, ldb: s.inC, beta: 1, G + s.a, ldc: s.inC)
    }

    /// Backward hook, after the base layer wrote dx: dx += dropout'(u A).
    func backwardInput(site: Int, dx: UnsafeMutablePointer<Float>, B: Int, T: Int, dropout: DropoutContext?, samples: [Int], rowOf: [Int]? = nil) {
        guard let s = slots[site] else { return }
        let n = B * T, r = plan.config.r
        let A = UnsafePointer(store.values.baseAddress! + s.a)
        if let d = dropout, dropoutP > 0 {
            sgemm(transA: false, transB: false, m: n, n: s.inC, k: r, alpha: 1, u, lda: r, A, ldb: s.inC, beta: 0, scratch, ldc: s.inC)
            dropoutRows(scratch, scratch, B: B, T: T, C: s.inC, ctx: d, samples: samples, site: Self.dropoutSite(site), p: dropoutP, rowOf: rowOf)
            ck_add(dx, scratch, n * s.inC)
        } else {
            sgemm(transA: false, transB: false, m: n, n: s.inC, k: r, alpha: 1, u, lda: r, A, ldb: s.inC, beta: 1, dx, ldc: s.inC)
        }
    }
}

extension Linear {
    /// dx[N, IC] = dy · W (or += with accumulateDx) without the weight gradient: a frozen layer's backward.
    static func backwardInput(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, w: UnsafePointer<Float>,
                              n: Int, inC: Int, outC: Int, accumulateDx: Bool = false, precision: MatmulPrecision = .fp32) {
        gemm(precision, transA: false, transB: false, m: n, n: inC, k: outC, alpha: 1, dy, lda: outC, w, ldb: inC,
             beta: accumulateDx ? 1 : 0, dx, ldc: inC)
    }
}

extension EncoderClassifier: LoRAModel {
    public var loraBase: LoRABase { .encoder(config) }
    public var loraMaxRows: Int { maxBatch * maxSeq }

    public func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool = true) {
        self.adapter = adapter
        self.frozenBase = freezeBase
    }

    public func detachLoRA() {
        adapter = nil
        frozenBase = false
    }
}

/// The batch a model's last forward ran on, as the LoRA hooks need it (rows B·T, dropout masks keyed by sample).
struct LoRAStep {
    let B: Int, T: Int
    let dropout: DropoutContext?
    let samples: [Int]
    /// Compact rows (T = 1): row b is row rowOf[b] of sample b, for its dropout mask (see dropoutRows).
    var rowOf: [Int]? = nil
}

/// Where a model's weight reads and gradient writes go when a LoRA adapter may be attached (modules_to_save copies
/// live in the adapter's store; a frozen base's LayerNorm gradients go to a sink), and the adapter's hooks around each
/// adapted product. One copy, shared by the BERT-family encoder (nn.Linear) and GPT-2 (Conv1D).
struct LoRARoute {
    let parameters: ParameterStore
    let adapter: LoRAAdapter?
    let frozenBase: Bool
    /// [2C]: a frozen base's LayerNorm dw (at 0) and db (at C), discarded.
    let lnSink: UnsafeMutablePointer<Float>
    let C: Int

    @inline(__always) func value(_ off: Int) -> UnsafeMutablePointer<Float> {
        if let a = adapter, let t = a.savedOffset[off] { return a.store.values.baseAddress! + t }
        return parameters.values.baseAddress! + off
    }
    @inline(__always) func grad(_ off: Int) -> UnsafeMutablePointer<Float> {
        if let a = adapter, let t = a.savedOffset[off] { return a.store.grads.baseAddress! + t }
        return parameters.grads.baseAddress! + off
    }
    /// LayerNorm parameter gradient: the sink when the base is frozen.
    @inline(__always) func layerNormGrad(_ off: Int, _ half: Int) -> UnsafeMutablePointer<Float> {
        frozenBase ? lnSink + half * C : grad(off)
    }
    /// A trainable base tensor: the base is not frozen, or the tensor is a modules_to_save copy.
    @inline(__always) func trains(_ off: Int) -> Bool { !frozenBase || adapter?.savedOffset[off] != nil }

    /// After the base product y = x W (+ b): the adapter's update at `site`, if any.
    func forward(site: Int?, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, step: LoRAStep) {
        if let site, let a = adapter {
            a.forward(site: site, y: y, x: x, B: step.B, T: step.T, dropout: step.dropout, samples: step.samples, rowOf: step.rowOf)
        }
    }

    /// A product's backward: the adapter's dA/dB first (dx may alias x), then `full()` (dW/db and dx) for a trainable
    /// weight `w` or `inputOnly(dx)` for a frozen one, then the adapter's share of dx. dx nil: no input gradient wanted.
    func backward(site: Int?, w: Int, dx: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                  step: LoRAStep, full: () -> Void, inputOnly: (UnsafeMutablePointer<Float>) -> Void) {
        let a = site.flatMap { s in adapter.flatMap { $0.hasSite(s) ? $0 : nil } }
        if let a, let site {
            a.backwardWeights(site: site, dy: dy, x: x, B: step.B, T: step.T, dropout: step.dropout, samples: step.samples, rowOf: step.rowOf)
        }
        if trains(w) { full() } else if let dx { inputOnly(dx) }
        if let a, let site, let dx {
            a.backwardInput(site: site, dx: dx, B: step.B, T: step.T, dropout: step.dropout, samples: step.samples, rowOf: step.rowOf)
        }
    }
}
