// GPT2Generate.swift: autoregressive generation for GPT2LMHead, batch of one prompt, no padding: greedy argmax by
// default, or temperature / top-k / top-p sampling from a seeded SplitMix64 (the same seed gives the same ids on
// every machine). Two paths that must agree: a key/value cache (each step feeds only the new token and attends to
// the cached keys/values of earlier positions), and a full recompute through the training forward (the reference,
// as the fixtures' goldens were made). Stops after maxNewTokens, or at EOS when asked.
// A LoRA adapter attached to the generator (PEFTAdapter.load(dir, into: generator)) runs unmerged on both paths.
// Deliberately not here: batched or beam search, repetition penalties, tokenisation (the CLI does that).
import CBLAS
import CKernels
import Foundation
import SplitMix

/// How to pick each next token.
public struct GenerationOptions: Sendable {
    /// Tokens to generate at most.
    public var maxNewTokens: Int
    /// 0 (default): greedy argmax. > 0: sample from softmax(logits / temperature).
    public var temperature: Float
    /// When sampling: keep only the k most likely tokens (0 = off).
    public var topK: Int
    /// When sampling: keep the smallest set of most likely tokens whose probability reaches topP (1 = off).
    public var topP: Float
    /// Seed of the sampling generator.
    public var seed: UInt64
    /// Stop after generating this id (nil: never; the CLI passes eos_token_id when asked).
    public var stopToken: Int32?
    /// Use the key/value cache (true) or recompute the whole sequence every step (false).
    public var useCache: Bool
    public init(maxNewTokens: Int = 20, temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0,
                stopToken: Int32? = nil, useCache: Bool = true) {
        self.maxNewTokens = maxNewTokens; self.temperature = temperature; self.topK = topK; self.topP = topP
        self.seed = seed; self.stopToken = stopToken; self.useCache = useCache
    }
}

public struct GenerationError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Generation over one model's parameters. Owns the KV cache ([n_positions, C] keys and values per layer) and the
/// step buffers, all allocated at init.
public final class GPT2Generator {
    public let config: GPT2Config
    let model: GPT2LMHead          // the no-cache reference path (maxBatch 1, maxSeq n_positions)
    let Tmax: Int, C: Int, NH: Int, FF: Int, V: Int
    private let arena = ActivationArena()
    let x, y, qkv, ctx, tmp, mean, rstd, f, g, scores, logitsBuf: UnsafeMutablePointer<Float>
    let kCache, vCache: [UnsafeMutablePointer<Float>]

    public init(config: GPT2Config, parameters: ParameterStore) {
        self.config = config
        Tmax = config.maxPositions; C = config.hidden; NH = config.heads; FF = config.intermediate; V = config.vocabSize
        model = GPT2LMHead(config: config, parameters: parameters, maxBatch: 1, maxSeq: config.maxPositions)
        let arena = self.arena
        func buf(_ n: Int) -> UnsafeMutablePointer<Float> { arena.floats(n) }
        let T = config.maxPositions, C = config.hidden, FF = config.intermediate
        x = buf(T * C); y = buf(T * C); qkv = buf(T * 3 * C); ctx = buf(T * C); tmp = buf(T * C)
        mean = buf(T); rstd = buf(T); f = buf(T * FF); g = buf(T * FF); scores = buf(T * T)
        logitsBuf = buf(config.vocabSize)
        kCache = (0..<config.layers).map { _ in buf(T * C) }
        vCache = (0..<config.layers).map { _ in buf(T * C) }
    }

    /// The new ids for `prompt` (not including it).
    public func generate(prompt: [Int32], options: GenerationOptions) throws -> [Int32] {
        guard !prompt.isEmpty else { throw GenerationError(message: "empty prompt: GPT-2 has no BOS to start from; give at least one token") }
        guard prompt.count + options.maxNewTokens <= Tmax else {
            throw GenerationError(message: "prompt (\(prompt.count) tokens) + max-new-tokens (\(options.maxNewTokens)) exceeds n_positions \(Tmax); shorten the prompt or lower --max-new-tokens")
        }
        for id in prompt where id < 0 || Int(id) >= V { throw GenerationError(message: "token id \(id) outside the vocabulary of \(V)") }
        var rng = SplitMix64(seed: options.seed)
        var seq = prompt
        var out: [Int32] = []
        for step in 0..<options.maxNewTokens {
            let logits: UnsafePointer<Float>
            if options.useCache {
                logits = step == 0 ? cachedStep(Array(seq), pos0: 0) : cachedStep([seq.last!], pos0: seq.count - 1)
            } else {
                let batch = TokenBatch(batchSize: 1, seqLen: seq.count, inputIds: seq,
                                       attentionMask: [Int32](repeating: 1, count: seq.count), sampleIndices: [0])
                model.forward(batch, labels: nil, gradientScale: nil, dropout: nil)
                let row = model.logits(rows: (seq.count - 1)..<seq.count)
                logitsBuf.update(from: row, count: V)
                logits = UnsafePointer(logitsBuf)
            }
            let next = Sampler.pick(UnsafeBufferPointer(start: logits, count: V), options: options, rng: &rng)
            out.append(next)
            seq.append(next)
            if let stop = options.stopToken, next == stop { break }
        }
        return out
    }

    /// Feeds `ids` at positions pos0..<pos0+n, appending their keys/values to the cache; returns the last position's
    /// logits [V] (a view into the generator).
    func cachedStep(_ ids: [Int32], pos0: Int) -> UnsafePointer<Float> {
        let n = ids.count, HS = C / NH, ld = 3 * C
        let scale = 1 / Float(HS).squareRoot()
        let body = model.body
        let wte = body.P(body.wte), wpe = body.P(body.wpe)
        // a Conv1D of block l (site 4l + k) plus, with an attached LoRA adapter, its unmerged update
        func conv(_ site: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: Int, b: Int, inC: Int, outC: Int) {
            Conv1D.forward(y: y, x: x, w: body.P(w), b: body.P(b), n: n, inC: inC, outC: outC)
            body.adapter?.forward(site: site, y: y, x: x, B: 1, T: n, dropout: nil, samples: [0])
        }
        for i in 0..<n {
            let o = x + i * C, w = wte + Int(ids[i]) * C, q = wpe + (pos0 + i) * C
            for c in 0..<C { o[c] = w[c] + q[c] }
        }
        let Tk = pos0 + n
        for (l, w) in body.blocks.enumerated() {
            LayerNorm.forward(y: y, mean: mean, rstd: rstd, x: x, w: body.P(w.ln1w), b: body.P(w.ln1b), n: n, C: C, eps: config.layerNormEps)
            conv(4 * l, y: qkv, x: y, w: w.attnW, b: w.attnB, inC: C, outC: 3 * C)
            for i in 0..<n {   // append k, v of the new positions
                (kCache[l] + (pos0 + i) * C).update(from: qkv + i * ld + C, count: C)
                (vCache[l] + (pos0 + i) * C).update(from: qkv + i * ld + 2 * C, count: C)
            }
            for h in 0..<NH {
                // S[n, Tk] = scale · Q_new K_cacheᵀ ; causal with the new rows at absolute positions pos0..
                sgemm(transA: false, transB: true, m: n, n: Tk, k: HS, alpha: scale, qkv + h * HS, lda: ld,
                      kCache[l] + h * HS, ldb: C, beta: 0, scores, ldc: Tk)
                g2_softmax_causal_fwd(scores, nil, n, Tk, pos0)
                sgemm(transA: false, transB: false, m: n, n: HS, k: Tk, alpha: 1, scores, lda: Tk, vCache[l] + h * HS,
                      ldb: C, beta: 0, ctx + h * HS, ldc: C)
            }
            conv(4 * l + 1, y: tmp, x: ctx, w: w.projW, b: w.projB, inC: C, outC: C)
            ck_add(x, tmp, n * C)
            LayerNorm.forward(y: y, mean: mean, rstd: rstd, x: x, w: body.P(w.ln2w), b: body.P(w.ln2b), n: n, C: C, eps: config.layerNormEps)
            conv(4 * l + 2, y: f, x: y, w: w.fcW, b: w.fcB, inC: C, outC: FF)
            ck_act_fwd(config.actCode, f, g, n * FF)
            conv(4 * l + 3, y: tmp, x: g, w: w.mlpW, b: w.mlpB, inC: FF, outC: C)
            ck_add(x, tmp, n * C)
        }
        let last = x + (n - 1) * C
        LayerNorm.forward(y: y, mean: mean, rstd: rstd, x: last, w: body.P(body.lnfW), b: body.P(body.lnfB), n: 1, C: C, eps: config.layerNormEps)
        // logits[V] = wte[V, C] · y (a GEMV: sgemm with one row would pack all of wte every token)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(V), Int32(C), 1, wte, Int32(C), y, 1, 0, logitsBuf, 1)
        return UnsafePointer(logitsBuf)
    }
}

/// Next-token choice from one row of logits.
public enum Sampler {
    /// Greedy (first maximum, as torch.argmax) when temperature <= 0; otherwise temperature, then top-k, then top-p
    /// (transformers' order), then one draw from `rng`.
    public static func pick(_ logits: UnsafeBufferPointer<Float>, options: GenerationOptions,
                            rng: inout SplitMix64) -> Int32 {
        if options.temperature <= 0 {
            var best = 0
            for j in 1..<logits.count where logits[j] > logits[best] { best = j }
            return Int32(best)
        }
        let inv = 1 / Double(options.temperature)
        let z = (0..<logits.count).map { Double(logits[$0]) * inv }
        // Only the candidates that can survive top-k are sorted (sorting all V tuples per token is the slow part).
        var keepFrom = -Double.infinity
        if options.topK > 0 && options.topK < z.count { keepFrom = kthLargest(z, options.topK) }
        var cand: [(id: Int, z: Double)] = []
        for (i, v) in z.enumerated() where v >= keepFrom { cand.append((i, v)) }   // ties with the k-th are kept, as transformers does
        cand.sort { $0.z > $1.z || ($0.z == $1.z && $0.id < $1.id) }
        let m = cand[0].z
        var probs = cand.map { Foundation.exp($0.z - m) }
        var total = probs.reduce(0, +)
        if options.topP < 1 {
            var cum = 0.0, keep = 0
            for p in probs {
                cum += p / total
                keep += 1
                if cum >= Double(options.topP) { break }
            }
            probs = Array(probs.prefix(max(1, keep)))
            total = probs.reduce(0, +)
        }
        var u = rng.nextUniform() * total
        for (i, p) in probs.enumerated() {
            u -= p
            if u < 0 { return Int32(cand[i].id) }
        }
        return Int32(cand[probs.count - 1].id)
    }

    /// The k-th largest value of `z` (k >= 1): one pass keeping the k largest in an ascending buffer; a value enters
    /// only when it beats the current k-th, which for logits happens O(k log(V/k)) times.
    static func kthLargest(_ z: [Double], _ k: Int) -> Double {
        var top = Array(z.prefix(k)).sorted()
        for v in z.dropFirst(k) where v > top[0] {
            var i = 0
            while i + 1 < k && top[i + 1] < v { top[i] = top[i + 1]; i += 1 }
            top[i] = v
        }
        return top[0]
    }
}

/// A LoRA adapter attached to the generator runs unmerged on both paths (the cached one calls the same hooks).
extension GPT2Generator: LoRAModel {
    public var loraBase: LoRABase { model.loraBase }
    public var parameters: ParameterStore { model.parameters }
    public var loraMaxRows: Int { model.loraMaxRows }
    public var adapter: LoRAAdapter? { model.adapter }
    public func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool = true) { model.attachLoRA(adapter, freezeBase: freezeBase) }
    public func detachLoRA() { model.detachLoRA() }
}
