// DPOTask: Direct Preference Optimization (`train --task dpo`) of a GPT-2 language model on preference pairs, as TRL
// 1.16.0's DPOTrainer defines it. The policy is the trainable GPT-2 LM; the reference is the frozen starting weights:
// a second, frozen copy loaded from --model (full fine-tuning), the same model with its LoRA adapter switched off
// (--lora-r; no second copy), or neither when the reference log-probabilities are precomputed.
//
// Data, exactly as TRL 1.16's `_prepare_dataset` and `DataCollatorForPreference` (see docs/dpo.md):
//   - implicit-prompt rows {"chosen", "rejected"}: the prompt is their longest common prefix of characters (Unicode
//     scalars), backed off by one when the character before the split is a space (TRL's `extract_prompt`, quirks kept);
//   - EOS text (<|endoftext|>) appended to chosen and rejected unless they already end with it;
//   - prompt, prompt+chosen and prompt+rejected tokenized whole (special tokens as the tokenizer adds them: none for
//     GPT-2); the completion starts where the tokenized prompt stops being a prefix of both (TRL's
//     common_prefix_length), so a word split across the boundary moves to the completion;
//   - a pair whose prompt alone has ≥ max_length tokens is skipped and counted (no completion token would be left);
//   - each sequence is truncated to max_length keeping its start (TRL 1.16's only truncation mode, keep_start).
//   Ours beyond TRL 1.16 (which has no max_prompt_length): `--max-prompt-length N` first keeps the LAST N prompt tokens
//   (the prompt truncated from the left, as older TRL did), so a long prompt leaves room for the response.
// Loss (per pair, averaged over the global number of pairs; chosen and rejected of a pair are always in the same
// micro-batch, so a pair is never split across ranks): with Δ = (logπ(c) − logπref(c)) − (logπ(r) − logπref(r)),
//   sigmoid: −log σ(βΔ);   robust: (−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε);
//   ipo: (Δc/|c| − Δr/|r| − 1/(2β))² with |·| the completion's token count (TRL's length normalisation).
// log π(y) is the sum of log-softmax over the completion tokens (prompt masked). Dropout is off (TRL's
// disable_dropout default). Metrics as TRL names them: rewards/chosen (β·Δc), rewards/rejected, rewards/accuracies,
// rewards/margins, logps/chosen, logps/rejected (eval_ prefixed in evaluation).
// Deliberately not here: the loop, sharding and the optimizer (Trainer), the per-row backward (Model's
// GPT2SequenceLogProbs.swift), reading the JSONL (PreferenceData).
import Crypto
import Dist
import Foundation
import Model
import Tokenizers
#if canImport(Glibc)
import Glibc
#endif

/// `--loss-type`: the DPO losses of TRL 1.16 that disttrain implements.
public enum DPOLossType: String, Sendable, CaseIterable {
    case sigmoid, ipo, robust
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// The DPO settings of a run (TRL's DPOConfig names).
public struct DPOSettings: Sendable, Equatable {
    /// β: how far the policy may move from the reference (IPO's τ).
    public var beta: Double = 0.1
    public var lossType: DPOLossType = .sigmoid
    /// ε of the robust loss (TRL 1.16 uses label_smoothing only there; its sigmoid and ipo ignore it, so we refuse it).
    public var labelSmoothing: Double = 0
    /// Keep only the last N prompt tokens (nil: no prompt truncation, as TRL 1.16).
    public var maxPromptLength: Int?
    /// Reference log-probabilities computed once before training and cached in the output folder (true), or on
    /// the fly each step (false, TRL's default).
    public var precomputeRefLogProbs: Bool = false
    public init() {}

    public var summary: String {
        "beta=\(beta) loss=\(lossType.rawValue) label_smoothing=\(labelSmoothing) max_prompt_length=\(maxPromptLength.map(String.init) ?? "none") precompute_ref=\(precomputeRefLogProbs)"
    }

    /// Usage errors (exit code 2).
    public func validate(maxLength: Int, validationSplit: Double) throws {
        func usage(_ m: String) -> TrainingError { TrainingError(m, exitCode: 2) }
        guard beta > 0, beta.isFinite else { throw usage("--beta must be a positive number (got \(beta))") }
        if let p = maxPromptLength {
            guard p >= 1 else { throw usage("--max-prompt-length must be at least 1 (got \(p))") }
            guard p < maxLength else {
                throw usage("--max-prompt-length \(p) must be less than --max-length \(maxLength), or no response token is left; lower --max-prompt-length or raise --max-length")
            }
        }
        switch lossType {
        case .robust:
            guard (0..<0.5).contains(labelSmoothing) else { throw usage("--label-smoothing must be in [0, 0.5) for --loss-type robust (got \(labelSmoothing))") }
        case .sigmoid, .ipo:
            guard labelSmoothing == 0 else {
                throw usage("--label-smoothing applies to --loss-type robust only (TRL 1.16's \(lossType.rawValue) loss ignores it); use --loss-type robust --label-smoothing \(labelSmoothing), or drop --label-smoothing")
            }
        }
        guard validationSplit == 0 else { throw usage("--validation-split is not supported with --task dpo; give the held-out pairs as --eval-file") }
    }
}

/// One tokenized pair: chosen and rejected as prompt+completion sequences (labels −100 on the prompt).
struct DPOPair: Sendable, Equatable {
    var chosen: LMExample
    var rejected: LMExample
    /// Completion tokens of each sequence after truncation (TRL's completion_mask sum; IPO's length).
    var chosenCount: Int { chosen.labels.filter { $0 != -100 }.count }
    var rejectedCount: Int { rejected.labels.filter { $0 != -100 }.count }
    var line: Int { chosen.line }
}

/// Tokenization of preference pairs as TRL 1.16's DPOTrainer does it (see the file header).
enum DPOData {
    struct Prepared: Sendable {
        var pairs: [DPOPair]
        /// Pairs whose prompt fills max_length (skipped), and pairs with a sequence cut at max_length.
        var skipped: Int
        var truncated: Int
    }

    /// TRL's `extract_prompt` on two texts, on Unicode scalars (Python's string indexing), quirks included: when no
    /// character differs, the split is at the last index of the shorter text; a space before the split moves it back
    /// one (at index 0 that reads the last character, as Python's [-1]). Empty texts give an empty prompt.
    static func extractPrompt(chosen: String, rejected: String) -> (prompt: String, chosen: String, rejected: String) {
        let c = Array(chosen.unicodeScalars), r = Array(rejected.unicodeScalars)
        let n = min(c.count, r.count)
        guard n > 0 else { return ("", chosen, rejected) }
        var idx = n - 1
        for i in 0..<n where c[i] != r[i] {
            idx = i
            if c[i == 0 ? c.count - 1 : i - 1] == " " { idx -= 1 }
            break
        }
        func slice(_ s: [Unicode.Scalar], from: Int?, to: Int?) -> String {
            func norm(_ k: Int) -> Int { k < 0 ? max(s.count + k, 0) : min(k, s.count) }
            let lo = from.map(norm) ?? 0, hi = to.map(norm) ?? s.count
            var out = String.UnicodeScalarView()
            if lo < hi { out.append(contentsOf: s[lo..<hi]) }
            return String(out)
        }
        return (slice(c, from: nil, to: idx), slice(c, from: idx, to: nil), slice(r, from: idx, to: nil))
    }

    static func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
        var k = 0
        while k < a.count && k < b.count && a[k] == b[k] { k += 1 }
        return k
    }

    /// Tokenizes `data` for a model of `vocabSize` tokens. `maxLength`: TRL's max_length (capped at n_positions by the
    /// caller); `maxPromptLength`: ours (see the header), nil for TRL 1.16's behaviour.
    static func prepare(_ data: PreferenceDataset, tokenizer: any Tokenizer, eosId: Int32, maxLength: Int,
                        maxPromptLength: Int?, vocabSize: Int, configPath: String) throws -> Prepared {
        let eosText = tokenizer.token(forId: eosId) ?? "<|endoftext|>"
        var out: [DPOPair] = []
        var skipped = 0, truncated = 0
        for p in data.pairs {
            var (prompt, chosen, rejected) = p.prompt.map { ($0, p.chosen, p.rejected) }
                ?? extractPrompt(chosen: p.chosen, rejected: p.rejected)
            if !chosen.hasSuffix(eosText) { chosen += eosText }
            if !rejected.hasSuffix(eosText) { rejected += eosText }
            let enc = { (s: String) in try LMData.encode(tokenizer, s, file: data.file, line: p.line) }
            let promptIds = try enc(prompt), pc = try enc(prompt + chosen), pr = try enc(prompt + rejected)
            for ids in [promptIds, pc, pr] {
                if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocabSize }) {
                    throw TrainingError("\(data.file):\(p.line): the tokenizer produced token id \(bad), outside the model's vocab_size \(vocabSize) (\(configPath)); the tokenizer files do not belong to this model")
                }
            }
            let plen = min(commonPrefix(promptIds, pc), commonPrefix(promptIds, pr))
            var promptPart = Array(promptIds[..<plen])
            if let m = maxPromptLength, promptPart.count > m { promptPart = Array(promptPart.suffix(m)) }
            if promptPart.count >= maxLength { skipped += 1; continue }
            func sequence(_ full: [Int32]) -> (LMExample, Bool) {
                let completion = Array(full[plen...])
                var ids = promptPart + completion
                var labels = [Int32](repeating: -100, count: promptPart.count) + completion
                let cut = ids.count > maxLength
                if cut { ids = Array(ids.prefix(maxLength)); labels = Array(labels.prefix(maxLength)) }
                return (LMExample(inputIds: ids, labels: labels, line: p.line), cut)
            }
            let (c, cutC) = sequence(pc), (r, cutR) = sequence(pr)
            if cutC || cutR { truncated += 1 }
            out.append(DPOPair(chosen: c, rejected: r))
        }
        return Prepared(pairs: out, skipped: skipped, truncated: truncated)
    }
}

/// The DPO loss of one pair and its derivatives with respect to the policy's log-probabilities.
struct DPOLoss {
    let settings: DPOSettings

    static func logSigmoid(_ z: Double) -> Double { -(max(-z, 0) + Foundation.log1p(Foundation.exp(-abs(z)))) }
    static func sigmoid(_ z: Double) -> Double { z >= 0 ? 1 / (1 + Foundation.exp(-z)) : Foundation.exp(z) / (1 + Foundation.exp(z)) }

    /// Loss and dLoss/dlogπ(chosen), dLoss/dlogπ(rejected).
    func callAsFunction(chosen c: Double, rejected r: Double, refChosen rc: Double, refRejected rr: Double,
                        chosenCount nc: Int, rejectedCount nr: Int) -> (loss: Double, dChosen: Double, dRejected: Double) {
        let beta = settings.beta
        let lc = c - rc, lr = r - rr, delta = lc - lr, z = beta * delta
        switch settings.lossType {
        case .sigmoid:
            let g = -beta * Self.sigmoid(-z)
            return (-Self.logSigmoid(z), g, -g)
        case .robust:
            let e = settings.labelSmoothing
            let loss = (-(1 - e) * Self.logSigmoid(z) + e * Self.logSigmoid(-z)) / (1 - 2 * e)
            let g = -beta * ((1 - e) * Self.sigmoid(-z) + e * Self.sigmoid(z)) / (1 - 2 * e)
            return (loss, g, -g)
        case .ipo:
            let ncd = Double(max(nc, 1)), nrd = Double(max(nr, 1))
            let h = lc / ncd - lr / nrd - 1 / (2 * beta)
            return (h * h, 2 * h / ncd, -2 * h / nrd)
        }
    }
}

/// Direct Preference Optimization of a GPT-2 LM (see the file header).
public final class DPOTask: FolderTrainingTask, @unchecked Sendable {
    let modelDir: URL
    let config: GPT2Config
    let baseStore: ParameterStore
    let model: GPT2LMHead
    /// Full fine-tuning with on-the-fly reference log-probs: the frozen reference model (its own store).
    let reference: GPT2LMHead?
    let lora: (plan: LoRAPlan, store: ParameterStore)?
    let settings: DPOSettings
    let lossFn: DPOLoss
    let eos: Int32
    let train: [DPOPair]
    let eval: [DPOPair]
    /// Precomputed reference log-probs (chosen, rejected) per pair, or nil (on the fly, or until `prepare`).
    private(set) var refTrain: [(Double, Double)]?
    private(set) var refEval: [(Double, Double)]?
    /// Precomputing and not read from the cache: `prepare(comm:)` computes them (the log-probs of one pair, the cache
    /// key and file).
    private var pendingReference: (logProbs: (DPOPair) -> (Double, Double), key: String, cache: URL)?
    public let dataFingerprint: String
    public let initialized: [String]
    public let truncated: Int
    /// Pairs skipped because their prompt filled --max-length (train, eval).
    public let skipped: (train: Int, eval: Int)
    /// What preparation did, for the start-of-run notices (skipped pairs, the reference log-probs cache).
    public private(set) var notices: [String]
    /// This step's sums so far (takeStepSums): rewards chosen, rewards rejected, accurate pairs, margins, logps
    /// chosen, logps rejected.
    private var stepSums = [Double](repeating: 0, count: 6)

    public var store: ParameterStore { lora?.store ?? baseStore }
    public var trainCount: Int { train.count }
    public var evalCount: Int { eval.count }
    public var trainLengths: [Int] { train.map { $0.chosen.inputIds.count + $0.rejected.inputIds.count } }
    public var labels: [String] { [] }
    public var configPath: String { config.path }

    /// The hidden file of the output folder that caches precomputed reference log-probs.
    public static let cacheFileName = ".dpo-ref-logps"

    public convenience init(folder: ModelFolder, adapterDir: URL?, trainConfig tc: TrainConfig, microBatch: Int) throws {
        if tc.matmulPrecision == .bf16 {
            throw TrainingError("--bf16: bf16 matrix products are implemented for BERT-family encoders only; drop --bf16 for GPT-2", exitCode: 2)
        }
        let m = try LoadedLM(folder: folder, seed: tc.seed)
        let limit = min(tc.maxLength, m.config.maxPositions)
        let s = tc.dpo
        if let p = s.maxPromptLength, p >= limit {
            throw TrainingError("--max-prompt-length \(p) must be less than \(limit) (the model's n_positions \(m.config.maxPositions) caps --max-length \(tc.maxLength)); lower --max-prompt-length", exitCode: 2)
        }
        let trainData = try PreferenceData.load(tc.trainFile)
        let prep = { (d: PreferenceDataset) in
            try DPOData.prepare(d, tokenizer: m.tokenizer, eosId: m.eos, maxLength: limit, maxPromptLength: s.maxPromptLength,
                                vocabSize: m.config.vocabSize, configPath: m.config.path)
        }
        let trainSet = try prep(trainData)
        guard !trainSet.pairs.isEmpty else {
            throw TrainingError("\(trainData.file): no preference pairs left to train on (\(trainData.pairs.count) read, \(trainSet.skipped) skipped because the prompt fills --max-length \(limit)); raise --max-length or give --max-prompt-length")
        }
        let evalSet = try tc.evalFile.map { try prep(PreferenceData.load($0)) }
        var lc = tc.lora
        if lc != nil { lc!.baseModelNameOrPath = lc!.baseModelNameOrPath ?? tc.modelDir.path }
        try self.init(m, train: trainSet, eval: evalSet, fingerprint: trainData.fingerprint, microBatch: microBatch,
                      lora: lc, adapterDir: adapterDir, trainConfig: tc)
    }

    /// Builds the task from a loaded policy and prepared pairs (tests call this through the convenience init).
    init(_ m: LoadedLM, train trainSet: DPOData.Prepared, eval evalSet: DPOData.Prepared?, fingerprint: String, microBatch: Int,
         lora lc: LoRAConfig?, adapterDir: URL?, trainConfig tc: TrainConfig) throws {
        modelDir = m.modelDir
        config = m.config
        baseStore = m.store
        initialized = m.initialized
        eos = m.eos
        settings = tc.dpo
        lossFn = DPOLoss(settings: tc.dpo)
        train = trainSet.pairs
        eval = evalSet?.pairs ?? []
        truncated = trainSet.truncated + (evalSet?.truncated ?? 0)
        skipped = (trainSet.skipped, evalSet?.skipped ?? 0)
        dataFingerprint = fingerprint
        let all = trainSet.pairs + (evalSet?.pairs ?? [])
        let maxSeq = max(all.map { max($0.chosen.inputIds.count, $0.rejected.inputIds.count) }.max() ?? 1, 1)
        try ModelFolder.checkArena(batch: 2 * microBatch, seq: maxSeq, architecture: m.config)
        let policy = GPT2LMHead(config: m.config, parameters: m.store, maxBatch: 2 * microBatch, maxSeq: maxSeq)
        model = policy
        if lc != nil || adapterDir != nil {
            lora = try attachLoRA(lc ?? LoRAConfig(r: 1, alpha: 1), to: policy, adapterDir: adapterDir, seed: tc.seed)
        } else {
            lora = nil
        }
        var notes: [String] = []
        // The reference is always the starting weights of --model (on resume the policy comes from the checkpoint).
        let startsAtModel = OutputFolder.canonical(m.modelDir) == OutputFolder.canonical(tc.modelDir)
        func referenceModel(batch: Int) throws -> GPT2LMHead {
            let r = try LoadedLM(folder: ModelFolder.open(tc.modelDir), seed: tc.seed)
            return GPT2LMHead(config: r.config, parameters: r.store, maxBatch: batch, maxSeq: maxSeq)
        }
        let trainPairs = trainSet.pairs, evalPairs = evalSet?.pairs ?? []
        if tc.dpo.precomputeRefLogProbs {
            reference = nil
            let key = try Self.cacheKey(modelDir: tc.modelDir, train: trainPairs, eval: evalPairs)
            let cache = tc.outputDir.appendingPathComponent(Self.cacheFileName)
            if let cached = Self.readCache(cache, key: key, train: trainPairs.count, eval: evalPairs.count) {
                (refTrain, refEval) = cached
                notes.append("reference log-probabilities: read from \(cache.path) (\(trainPairs.count + evalPairs.count) pairs)")
            } else {
                // Computed by prepare(comm:), each rank a share, pair by pair (a batch of two rows), so the values
                // depend neither on the micro-batch nor on the ranks.
                let one: (DPOPair) -> (Double, Double)
                if adapterDir != nil || lc != nil {
                    one = { pair in policy.withAdapterDisabled { Self.logProbs(policy, [pair])[0] } }
                } else {
                    let ref = startsAtModel ? policy : try referenceModel(batch: 2)
                    one = { pair in Self.logProbs(ref, [pair])[0] }
                }
                (refTrain, refEval) = (nil, nil)
                pendingReference = (one, key, cache)
            }
        } else {
            refTrain = nil; refEval = nil
            reference = (lc != nil || adapterDir != nil) ? nil : try referenceModel(batch: 2 * microBatch)
        }
        let sk = (trainSet.skipped, evalSet?.skipped ?? 0)
        if sk.0 + sk.1 > 0 {
            notes.append("warning: \(sk.0) pair\(sk.0 == 1 ? "" : "s") of \(tc.trainFile.lastPathComponent)"
                         + (sk.1 > 0 ? " and \(sk.1) of \(tc.evalFile?.lastPathComponent ?? "the eval file")" : "")
                         + " left no response token within \(min(tc.maxLength, m.config.maxPositions)) tokens (the prompt fills it) and \(sk.0 + sk.1 == 1 ? "was" : "were") skipped, as TRL does; raise --max-length or give --max-prompt-length to keep them")
        }
        notices = notes
    }

    /// Computes the precomputed reference log-probabilities not read from the cache: rank r takes pairs r, r + W, …
    /// (train, then eval), and one all-reduce of a sum, to which every other rank adds 0, gives every rank all of
    /// them, exactly (TRL likewise shards its precompute over the ranks). Rank 0 writes the cache.
    public func prepare(comm: Communicator) throws {
        guard let p = pendingReference else { return }
        pendingReference = nil
        let all = train + eval
        var flat = [Double](repeating: 0, count: 2 * all.count)
        for i in stride(from: comm.rank, to: all.count, by: comm.worldSize) {
            (flat[2 * i], flat[2 * i + 1]) = p.logProbs(all[i])
        }
        try comm.allReduceSum(&flat)
        let values = (0..<all.count).map { (flat[2 * $0], flat[2 * $0 + 1]) }
        let rt = Array(values[..<train.count]), re = Array(values[train.count...])
        (refTrain, refEval) = (rt, re)
        let shared = comm.worldSize > 1 ? ", shared by \(comm.worldSize) ranks" : ""
        guard comm.isRoot else { return }
        do {
            try Self.writeCache(p.cache, key: p.key, train: rt, eval: re)
            notices.append("reference log-probabilities: computed for \(all.count) pairs\(shared) and cached in \(p.cache.path)")
        } catch {
            notices.append("warning: could not cache the reference log-probabilities in \(p.cache.path) (\(error)); a resumed run recomputes them")
        }
    }

    // MARK: - Batches and log-probabilities

    /// The rows of `pairs` as TRL's collator orders them: every chosen, then every rejected; right-padded with EOS.
    static func batch(_ pairs: [DPOPair], eos: Int32, indices: [Int]) -> (TokenBatch, [Int32]) {
        LMData.batch(pairs.map(\.chosen) + pairs.map(\.rejected), padId: eos, sampleIndices: indices + indices)
    }

    /// (log π(chosen), log π(rejected)) of each pair under `model` (a forward without gradients).
    static func logProbs(_ model: GPT2LMHead, _ pairs: [DPOPair]) -> [(Double, Double)] {
        let (b, labels) = batch(pairs, eos: model.config.eosTokenId.map(Int32.init) ?? 50256, indices: Array(0..<pairs.count))
        model.forward(b, labels: labels, gradientScale: nil, dropout: nil)
        let lp = model.rowLogProbs()
        return (0..<pairs.count).map { (lp[$0], lp[pairs.count + $0]) }
    }

    /// Reference log-probs of `indices` of `pairs` (train or eval): precomputed, or from the reference model, or from
    /// the policy with its adapter off.
    func referenceLogProbs(_ indices: [Int], _ pairs: [DPOPair], precomputed: [(Double, Double)]?) -> [(Double, Double)] {
        if let precomputed { return indices.map { precomputed[$0] } }
        let sel = indices.map { pairs[$0] }
        if let reference { return Self.logProbs(reference, sel) }
        return model.withAdapterDisabled { Self.logProbs(model, sel) }
    }

    /// Per-pair results of one micro-batch: the policy's log-probs, the reference's, and each pair's loss.
    struct PairStats {
        var chosen: Double, rejected: Double, refChosen: Double, refRejected: Double
        var loss: Double, dChosen: Double, dRejected: Double
    }

    /// The policy forward and the loss of each pair of `indices`. `training` with a frozen head (LoRA): the forward
    /// also leaves each row's unit input gradient for `backward(scalingRows:)`; otherwise no gradient is formed yet.
    func forwardPairs(_ indices: [Int], _ pairs: [DPOPair], precomputed: [(Double, Double)]?, training: Bool = false) -> [PairStats] {
        let ref = referenceLogProbs(indices, pairs, precomputed: precomputed)
        let sel = indices.map { pairs[$0] }
        let pol: [(Double, Double)]
        if training && model.headIsFrozen {
            let (b, labels) = Self.batch(sel, eos: eos, indices: indices)
            model.forward(b, labels: labels, gradientScale: 1, dropout: nil)
            let lp = model.rowLogProbs()
            pol = (0..<sel.count).map { (lp[$0], lp[sel.count + $0]) }
        } else {
            pol = Self.logProbs(model, sel)
        }
        return sel.indices.map { k in
            let (c, r) = pol[k], (rc, rr) = ref[k]
            let l = lossFn(chosen: c, rejected: r, refChosen: rc, refRejected: rr,
                           chosenCount: sel[k].chosenCount, rejectedCount: sel[k].rejectedCount)
            return PairStats(chosen: c, rejected: r, refChosen: rc, refRejected: rr, loss: l.loss, dChosen: l.dChosen, dRejected: l.dRejected)
        }
    }

    // MARK: - TrainingTask

    public func lossCount(_ indices: [Int]) -> Int { indices.count }

    /// Dropout stays off (TRL's disable_dropout default), whatever `dropout` says.
    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        guard !indices.isEmpty else { return (0, 0) }
        let stats = forwardPairs(indices, train, precomputed: refTrain, training: true)
        // Row b's NLL gets weight −scale·dLoss/dlogπ (NLL = −log π), chosen rows first as in the batch.
        let n = indices.count
        var scales = [Float](repeating: 0, count: 2 * n)
        for (k, s) in stats.enumerated() {
            scales[k] = Float(-Double(scale) * s.dChosen)
            scales[n + k] = Float(-Double(scale) * s.dRejected)
        }
        if model.headIsFrozen { model.backward(scalingRows: scales) } else { model.backward(rowScales: scales) }
        for s in stats {
            let rc = settings.beta * (s.chosen - s.refChosen), rr = settings.beta * (s.rejected - s.refRejected)
            stepSums[0] += rc; stepSums[1] += rr; stepSums[2] += rc > rr ? 1 : 0; stepSums[3] += rc - rr
            stepSums[4] += s.chosen; stepSums[5] += s.rejected
        }
        let tokens = indices.reduce(0) { $0 + train[$1].chosen.inputIds.count + train[$1].rejected.inputIds.count }
        return (stats.reduce(0) { $0 + $1.loss }, tokens)
    }

    /// counts: [pairs whose chosen reward beats the rejected one]; sums: rewards chosen, rewards rejected, margins,
    /// logps chosen, logps rejected.
    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats {
        var stats = EvalStats(counts: [0], sums: [Double](repeating: 0, count: 5))
        var i = range.lowerBound
        while i < range.upperBound {
            let idx = Array(i..<min(i + max(batchSize, 1), range.upperBound))
            i += idx.count
            for s in forwardPairs(idx, eval, precomputed: refEval) {
                let rc = settings.beta * (s.chosen - s.refChosen), rr = settings.beta * (s.rejected - s.refRejected)
                stats.lossSum += s.loss
                stats.lossCount += 1
                if rc > rr { stats.counts[0] += 1 }
                stats.sums[0] += rc; stats.sums[1] += rr; stats.sums[2] += rc - rr
                stats.sums[3] += s.chosen; stats.sums[4] += s.rejected
            }
        }
        return stats
    }

    public func takeStepSums() -> [Double] {
        defer { stepSums = [Double](repeating: 0, count: 6) }
        return stepSums
    }

    /// TRL's training-log names (no eval_ prefix), means over the step's pairs on all ranks.
    public func stepMetrics(_ sums: [Double], count: Int) -> [String: Double] {
        guard sums.count == 6, count > 0 else { return [:] }
        let n = Double(count)
        return ["rewards/chosen": sums[0] / n, "rewards/rejected": sums[1] / n, "rewards/accuracies": sums[2] / n,
                "rewards/margins": sums[3] / n, "logps/chosen": sums[4] / n, "logps/rejected": sums[5] / n]
    }

    public func metrics(_ stats: EvalStats) -> [String: Double] {
        let n = max(stats.lossCount, 1)
        let sums = stats.sums.count == 5 ? stats.sums : [Double](repeating: 0, count: 5)
        return ["eval_loss": stats.lossSum / n,
                "eval_rewards/chosen": sums[0] / n, "eval_rewards/rejected": sums[1] / n,
                "eval_rewards/accuracies": Double(stats.counts.first ?? 0) / n, "eval_rewards/margins": sums[2] / n,
                "eval_logps/chosen": sums[3] / n, "eval_logps/rejected": sums[4] / n,
                "eval_samples": stats.lossCount]
    }

    /// Full fine-tuning writes a Hugging Face GPT-2 LM folder (`generate` loads it); LoRA writes the PEFT adapter.
    public func save(to dir: URL, weights: ParameterStore?) throws { try lmParts.save(to: dir, weights: weights) }

    // MARK: - The reference log-probs cache

    /// SHA-256 over the reference weights' file and every tokenized sequence (ids and labels): what the values depend on.
    static func cacheKey(modelDir: URL, train: [DPOPair], eval: [DPOPair]) throws -> String {
        var h = SHA256()
        h.update(data: Data("disttrain-dpo-ref-v1\n".utf8))
        h.update(data: Data(try Checkpoint.sha256(of: modelDir.appendingPathComponent("model.safetensors")).utf8))
        for (tag, pairs) in [("train", train), ("eval", eval)] {
            h.update(data: Data("\n\(tag) \(pairs.count)\n".utf8))
            for p in pairs {
                for e in [p.chosen, p.rejected] {
                    e.inputIds.withUnsafeBytes { h.update(bufferPointer: $0) }
                    e.labels.withUnsafeBytes { h.update(bufferPointer: $0) }
                    h.update(data: Data([0xff]))
                }
            }
        }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Text lines: a header, the key, then "train N" / "eval M" each followed by one "chosen rejected" line per pair
    /// (Double's shortest round-trip form, so the values read back are bit-identical).
    static func writeCache(_ url: URL, key: String, train: [(Double, Double)], eval: [(Double, Double)]) throws {
        var s = "disttrain DPO reference log-probs v1\nkey \(key)\n"
        for (tag, v) in [("train", train), ("eval", eval)] {
            s += "\(tag) \(v.count)\n"
            for (c, r) in v { s += "\(c) \(r)\n" }
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Every rank computes the same values; each writes its own temporary file and renames it into place.
        let tmp = url.deletingLastPathComponent().appendingPathComponent("\(cacheFileName).\(ProcessInfo.processInfo.processIdentifier).publish-tmp")
        try Data(s.utf8).write(to: tmp)
        if rename(tmp.path, url.path) != 0 {
            try? FileManager.default.removeItem(at: tmp)
            throw TrainingError("cannot rename \(tmp.path) to \(url.path)")
        }
    }

    /// The cached values if the file exists, parses, and matches `key` and the pair counts; nil otherwise (recompute).
    static func readCache(_ url: URL, key: String, train: Int, eval: Int) -> ([(Double, Double)], [(Double, Double)])? {
        guard let data = try? Data(contentsOf: url), let text = String(data: data, encoding: .utf8) else { return nil }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).makeIterator()
        guard lines.next() == "disttrain DPO reference log-probs v1", lines.next() == Substring("key \(key)") else { return nil }
        func section(_ tag: String, _ n: Int) -> [(Double, Double)]? {
            guard lines.next() == Substring("\(tag) \(n)") else { return nil }
            var out: [(Double, Double)] = []
            for _ in 0..<n {
                guard let l = lines.next() else { return nil }
                let f = l.split(separator: " ")
                guard f.count == 2, let c = Double(f[0]), let r = Double(f[1]) else { return nil }
                out.append((c, r))
            }
            return out
        }
        guard let t = section("train", train), let e = section("eval", eval) else { return nil }
        return (t, e)
    }
}

extension DPOTask {
    var lmParts: GPT2LMParts { GPT2LMParts(model: model, config: config, baseStore: baseStore, lora: lora, modelDir: modelDir) }
    public var gradientSync: GradientSyncLayout { lmParts.gradientSync }
    public func setBackwardHook(_ hook: ((Int) -> Void)?) { lmParts.setBackwardHook(hook) }
    public func setProbe(_ probe: ((String, UnsafeBufferPointer<Float>) -> Void)?) { lmParts.setProbe(probe) }
}
