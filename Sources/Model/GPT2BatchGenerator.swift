// GPT2BatchGenerator.swift: sampling many completions at once for on-line RL (GRPO/RLOO rollouts). Rows of different
// prompt lengths run in one batch, each with its own key/value cache; every step packs the new tokens of the rows still
// running into one [N, C] matrix, so the Conv1D products (and their LoRA updates) are single GEMMs over all rows, while
// attention runs per row over that row's cache. Prompts are prefilled in the same packed steps (a long prompt is split
// into pieces when the rows' prompt tokens exceed the step's token budget). Each row draws from its own
// SplitMix64(seed: seeds[i]) and picks exactly as GPT2Generator's Sampler.pick (ExactSampler below: the same draws
// and arithmetic, a radix sort instead of a comparator sort of the whole vocabulary per token).
// Exactness: row i's ids are a function of (prompt i, seed i, options, weights) alone, bit for bit, whatever the other
// rows, their order, the token budget or how prompts were cut into prefill pieces: every product that mixes rows is a
// row-deterministic kernel (gr_det_gemm_nn / gr_det_gemm_nt in grpo_kernels.c: one fixed multiply-add chain per output
// element), never BLAS, whose rounding of a row can change with the number of rows (it does with OpenBLAS here: the
// same row prefilled beside 4 or 26 other tokens gave different last bits and, on the near-uniform tiny model, a
// different 6th sampled token). This is what makes 1 and N ranks sample the same completions.
// Against GPT2Generator (BLAS, one row) the logits agree to float rounding, so greedy ids are equal and sampled ids are
// equal unless a draw falls within rounding of a cumulative-probability boundary (likely only for near-uniform
// distributions over the whole vocabulary).
// A LoRA adapter attached to the generator runs unmerged with the generator's own scratch (the adapter's kept
// activations, needed by a pending training backward, are not touched).
// Shapes: N = packed tokens of one step (≤ tokenBudget), S = rows producing logits in a step (≤ maxBatch),
// maxSeq = cache length per row, C / NH / HS / FF / V as GPT2Config.
// Deliberately not here: tokenisation, rewards, beam search, repetition penalties, per-row option differences.
import CBLAS
import CKernels
import Foundation
import SplitMix

/// Batched KV-cache generation over one model's parameters. Owns one cache per row ([maxSeq, C] keys and values per
/// layer) and the packed step buffers, all allocated at init.
public final class GPT2BatchGenerator {
    public let config: GPT2Config
    /// Most rows one `generate` call takes.
    public let maxBatch: Int
    /// Positions per row's cache: prompt + maxNewTokens must fit.
    public let maxSeq: Int
    /// Most tokens packed into one step (prefill pieces are cut to fit; decode steps take one token per row).
    public let tokenBudget: Int
    let body: GPT2Transformer       // parameter offsets and the weight route (its own arena is 1×1)
    let C: Int, NH: Int, FF: Int, V: Int
    private let arena = ActivationArena()
    let x, y, qkv, ctx, tmp, mean, rstd, f, g, scores: UnsafeMutablePointer<Float>
    let lastX, lastY, lastMean, lastRstd, logitsBuf: UnsafeMutablePointer<Float>   // [maxBatch, C] ... [maxBatch, V]
    let loraH: UnsafeMutablePointer<Float>                                           // [tokenBudget, maxRank]
    let kCache, vCache: [UnsafeMutablePointer<Float>]                                // per layer [maxBatch, maxSeq, C]
    private(set) public var adapter: LoRAAdapter?
    /// Test probe: called with (row, that row's logits) every time a row's next-token logits are formed.
    var logitsProbe: ((Int, UnsafeBufferPointer<Float>) -> Void)?
    static let maxLoRARank = 256
    let sampler: ExactSampler

    /// - maxBatch: rows per call. - maxSeq: cache positions per row (default n_positions; the cache holds
    ///   layers·2·maxBatch·maxSeq·C floats, so give prompt + completion length for big batches).
    /// - tokenBudget: packed tokens per step (default max(maxBatch, 256)).
    public init(config: GPT2Config, parameters: ParameterStore, maxBatch: Int, maxSeq: Int? = nil, tokenBudget: Int? = nil) {
        precondition(maxBatch > 0, "maxBatch must be positive")
        self.config = config
        self.maxBatch = maxBatch
        self.maxSeq = min(maxSeq ?? config.maxPositions, config.maxPositions)
        self.tokenBudget = max(1, tokenBudget ?? max(maxBatch, 256))
        C = config.hidden; NH = config.heads; FF = config.intermediate; V = config.vocabSize
        body = GPT2Transformer(config: config, parameters: parameters, maxBatch: 1, maxSeq: 1)
        sampler = ExactSampler(vocabulary: config.vocabSize)
        let arena = self.arena
        func buf(_ n: Int) -> UnsafeMutablePointer<Float> { arena.floats(n) }
        let N = self.tokenBudget, T = self.maxSeq, C = config.hidden, FF = config.intermediate
        x = buf(N * C); y = buf(N * C); qkv = buf(N * 3 * C); ctx = buf(N * C); tmp = buf(N * C)
        mean = buf(N); rstd = buf(N); f = buf(N * FF); g = buf(N * FF)
        scores = buf(min(N, T) * T)
        lastX = buf(maxBatch * C); lastY = buf(maxBatch * C); lastMean = buf(maxBatch); lastRstd = buf(maxBatch)
        logitsBuf = buf(maxBatch * config.vocabSize)
        loraH = buf(N * Self.maxLoRARank)
        kCache = (0..<config.layers).map { _ in buf(maxBatch * T * C) }
        vCache = (0..<config.layers).map { _ in buf(maxBatch * T * C) }
    }

    /// Each row's new ids (not the prompt; the stop token included when hit), row i sampled from
    /// SplitMix64(seed: seeds[i]) with `options` (its `seed` and `useCache` are ignored). Throws GenerationError for an
    /// empty prompt, a prompt + maxNewTokens beyond the cache, an id outside the vocabulary, more rows than maxBatch,
    /// a seeds count that differs from the prompts', or a LoRA rank above 256.
    public func generate(prompts: [[Int32]], options: GenerationOptions, seeds: [UInt64]) throws -> [[Int32]] {
        try check(prompts: prompts, options: options, seeds: seeds)
        let B = prompts.count
        var out = [[Int32]](repeating: [], count: B)
        if B == 0 || options.maxNewTokens == 0 { return out }
        var rngs = seeds.map { SplitMix64(seed: $0) }
        var length = [Int](repeating: 0, count: B)     // tokens in row b's cache
        var last = [Int32](repeating: 0, count: B)      // row b's newest token (fed at the next decode step)

        // Prefill: every prompt token, packed; the piece that ends a prompt yields that row's first logits.
        var pending: [(row: Int, from: Int)] = (0..<B).map { ($0, 0) }
        while !pending.isEmpty {
            var segs: [Segment] = [], n = 0
            var next: [(row: Int, from: Int)] = []
            for (row, from) in pending {
                let room = tokenBudget - n
                if room <= 0 || segs.count == maxBatch { next.append((row, from)); continue }
                let take = min(room, prompts[row].count - from)
                segs.append(Segment(row: row, ids: Array(prompts[row][from..<(from + take)]), pos0: from,
                                    wantsLogits: from + take == prompts[row].count))
                n += take
                if from + take < prompts[row].count { next.append((row, from + take)) }
            }
            step(segs)
            for (k, s) in segs.enumerated() where s.wantsLogits {
                length[s.row] = prompts[s.row].count
                let id = pick(k, row: s.row, options: options, rng: &rngs[s.row])
                out[s.row].append(id)
                last[s.row] = id
            }
            pending = next
        }
        // Decode: one token per running row per step.
        func running(_ b: Int) -> Bool {
            out[b].count < options.maxNewTokens && !(options.stopToken != nil && out[b].last == options.stopToken)
        }
        var active = (0..<B).filter(running)
        while !active.isEmpty {
            for chunk in stride(from: 0, to: active.count, by: min(tokenBudget, maxBatch)) {
                let rows = active[chunk..<min(active.count, chunk + min(tokenBudget, maxBatch))]
                let segs = rows.map { Segment(row: $0, ids: [last[$0]], pos0: length[$0], wantsLogits: true) }
                step(segs)
                for (k, s) in segs.enumerated() {
                    length[s.row] += 1
                    let id = pick(k, row: s.row, options: options, rng: &rngs[s.row])
                    out[s.row].append(id)
                    last[s.row] = id
                }
            }
            active = active.filter(running)
        }
        return out
    }

    /// A piece of one row fed in a step: ids at positions pos0..<pos0+ids.count of that row's cache.
    struct Segment { let row: Int; let ids: [Int32]; let pos0: Int; let wantsLogits: Bool }

    private func pick(_ k: Int, row: Int, options: GenerationOptions, rng: inout SplitMix64) -> Int32 {
        let logits = UnsafeBufferPointer(start: UnsafePointer(logitsBuf + k * V), count: V)
        logitsProbe?(row, logits)
        return sampler.pick(logits, options: options, rng: &rng)
    }

    /// Conv1D of site `site` over n packed rows plus, with an adapter, its unmerged update y += s·(x Aᵀ) Bᵀ.
    private func conv(_ site: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: Int, b: Int, n: Int,
                      inC: Int, outC: Int) {
        // y[n, out] = b + x[n, in] · W[in, out]
        gr_det_gemm_nn(y, outC, x, inC, body.P(w), outC, body.P(b), n, inC, outC, 0)
        guard let a = adapter, let s = a.slots[site] else { return }
        let r = a.plan.config.r
        let A = UnsafePointer(a.store.values.baseAddress! + s.a), Bm = UnsafePointer(a.store.values.baseAddress! + s.b)
        // h[n, r] = x Aᵀ ; y += s · h Bᵀ
        gr_det_gemm_nt(loraH, r, x, s.inC, A, s.inC, n, s.inC, r, 1, 0)
        gr_det_gemm_nt(y, s.outC, loraH, r, Bm, r, n, r, s.outC, a.scaling, 1)
    }

    /// Runs the segments' tokens through the model, appending their keys/values to their rows' caches, and writes the
    /// logits of the last token of every segment with wantsLogits into logitsBuf rows 0, 1, … (segment order).
    func step(_ segs: [Segment]) {
        let n = segs.reduce(0) { $0 + $1.ids.count }, HS = C / NH, ld = 3 * C, T = maxSeq
        let scale = 1 / Float(HS).squareRoot()
        let eps = config.layerNormEps
        let wte = body.P(body.wte), wpe = body.P(body.wpe)
        var starts: [Int] = [], o = 0
        for s in segs {
            starts.append(o)
            for (i, id) in s.ids.enumerated() {
                let dst = x + (o + i) * C, w = wte + Int(id) * C, q = wpe + (s.pos0 + i) * C
                for c in 0..<C { dst[c] = w[c] + q[c] }
            }
            o += s.ids.count
        }
        for (l, w) in body.blocks.enumerated() {
            LayerNorm.forward(y: y, mean: mean, rstd: rstd, x: x, w: body.P(w.ln1w), b: body.P(w.ln1b), n: n, C: C, eps: eps)
            conv(4 * l, y: qkv, x: y, w: w.attnW, b: w.attnB, n: n, inC: C, outC: 3 * C)
            for (k, s) in segs.enumerated() {
                let m = s.ids.count, q0 = starts[k]
                let kc = kCache[l] + s.row * T * C, vc = vCache[l] + s.row * T * C
                for i in 0..<m {   // append k, v of the new positions
                    (kc + (s.pos0 + i) * C).update(from: qkv + (q0 + i) * ld + C, count: C)
                    (vc + (s.pos0 + i) * C).update(from: qkv + (q0 + i) * ld + 2 * C, count: C)
                }
                let Tk = s.pos0 + m
                for h in 0..<NH {
                    // S[m, Tk] = scale · Q_new K_cacheᵀ ; causal with the new rows at absolute positions pos0..
                    gr_det_gemm_nt(scores, Tk, qkv + q0 * ld + h * HS, ld, kc + h * HS, C, m, HS, Tk, scale, 0)
                    g2_softmax_causal_fwd(scores, nil, m, Tk, s.pos0)
                    // ctx[m, HS] = P[m, Tk] · V[Tk, HS] (the zeros past each query's position add nothing to its chain)
                    gr_det_gemm_nn(ctx + q0 * C + h * HS, C, scores, Tk, vc + h * HS, C, nil, m, Tk, HS, 0)
                }
            }
            conv(4 * l + 1, y: tmp, x: ctx, w: w.projW, b: w.projB, n: n, inC: C, outC: C)
            ck_add(x, tmp, n * C)
            LayerNorm.forward(y: y, mean: mean, rstd: rstd, x: x, w: body.P(w.ln2w), b: body.P(w.ln2b), n: n, C: C, eps: eps)
            conv(4 * l + 2, y: f, x: y, w: w.fcW, b: w.fcB, n: n, inC: C, outC: FF)
            ck_act_fwd(config.actCode, f, g, n * FF)
            conv(4 * l + 3, y: tmp, x: g, w: w.mlpW, b: w.mlpB, n: n, inC: FF, outC: C)
            ck_add(x, tmp, n * C)
        }
        var S = 0
        for (k, s) in segs.enumerated() where s.wantsLogits {
            (lastX + S * C).update(from: x + (starts[k] + s.ids.count - 1) * C, count: C)
            S += 1
        }
        if S == 0 { return }
        LayerNorm.forward(y: lastY, mean: lastMean, rstd: lastRstd, x: lastX, w: body.P(body.lnfW), b: body.P(body.lnfB),
                          n: S, C: C, eps: eps)
        // logits[S, V] = lastY[S, C] · wteᵀ (each wte row read once for all S rows)
        gr_det_gemm_nt(logitsBuf, V, lastY, C, wte, C, S, C, V, 1, 0)
    }

    func check(prompts: [[Int32]], options: GenerationOptions, seeds: [UInt64]) throws {
        guard seeds.count == prompts.count else {
            throw GenerationError(message: "\(prompts.count) prompts but \(seeds.count) seeds: give one seed per row")
        }
        guard prompts.count <= maxBatch else {
            throw GenerationError(message: "\(prompts.count) rows exceed the generator's batch of \(maxBatch); split the call")
        }
        guard options.maxNewTokens >= 0 else { throw GenerationError(message: "max-new-tokens must be >= 0") }
        if let a = adapter, a.plan.config.r > Self.maxLoRARank {
            throw GenerationError(message: "LoRA rank \(a.plan.config.r) exceeds the batch generator's \(Self.maxLoRARank)")
        }
        for (i, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw GenerationError(message: "prompt \(i) is empty: GPT-2 has no BOS to start from; give at least one token") }
            guard p.count + options.maxNewTokens <= maxSeq else {
                throw GenerationError(message: "prompt \(i) (\(p.count) tokens) + max-new-tokens (\(options.maxNewTokens)) exceeds the \(maxSeq) positions of the cache (n_positions \(config.maxPositions)); shorten the prompt or lower the completion length")
            }
            for id in p where id < 0 || Int(id) >= V {
                throw GenerationError(message: "prompt \(i): token id \(id) outside the vocabulary of \(V)")
            }
        }
    }
}

/// A LoRA adapter attached to the batch generator runs unmerged (see the file header).
extension GPT2BatchGenerator: LoRAModel {
    public var loraBase: LoRABase { .gpt2(config, classifier: false) }
    public var parameters: ParameterStore { body.parameters }
    /// An adapter built for the generator (PEFTAdapter.load(dir, into: generator)) sizes its training arena by this;
    /// generation itself uses its own scratch.
    public var loraMaxRows: Int { tokenBudget }
    public func attachLoRA(_ adapter: LoRAAdapter, freezeBase: Bool = true) {
        self.adapter = adapter
        body.adapter = adapter          // modules_to_save reads (none for an LM head) go through the route
        body.frozenBase = freezeBase
    }
    public func detachLoRA() { adapter = nil; body.adapter = nil; body.frozenBase = false }
}

/// Sampler.pick, bit for bit (same candidates, same order, the same Double exps summed in the same order, one draw),
/// without its cost: the candidates are ordered by a stable radix sort on an order-preserving key of z (ids ascending
/// within equal z, as Sampler's comparator), into buffers allocated once. Sampler.pick sorts all V tuples with a
/// comparator for every sampled token, which costs more than the model's step for a small GPT-2.
final class ExactSampler {
    let V: Int
    // raw buffers (class-held Swift arrays cost an exclusivity and uniqueness check per element access)
    let z, probs: UnsafeMutablePointer<Double>
    var keys, keys2: UnsafeMutablePointer<UInt64>
    var ids, ids2: UnsafeMutablePointer<Int32>
    var keys32, keys32b: UnsafeMutablePointer<UInt32>
    let counts: UnsafeMutablePointer<Int>
    /// Tests: always take the 64-bit key path (otherwise only when the float order is not z's).
    var forceWideKeys = false

    init(vocabulary V: Int) {
        self.V = V
        z = .allocate(capacity: V); probs = .allocate(capacity: V)
        keys = .allocate(capacity: V); keys2 = .allocate(capacity: V)
        ids = .allocate(capacity: V); ids2 = .allocate(capacity: V)
        keys32 = .allocate(capacity: V); keys32b = .allocate(capacity: V)
        counts = .allocate(capacity: 2048)
    }

    deinit {
        z.deallocate(); probs.deallocate(); keys.deallocate(); keys2.deallocate(); ids.deallocate(); ids2.deallocate()
        keys32.deallocate(); keys32b.deallocate(); counts.deallocate()
    }

    /// Ascending in -f: f descending; -0 as +0.
    @inline(__always) static func descendingKey32(_ v: Float) -> UInt32 {
        let b = (v == 0 ? Float(0) : v).bitPattern
        let asc = b & (1 << 31) != 0 ? ~b : b | (1 << 31)
        return ~asc
    }

    /// Stable LSD radix sort of keys32[0..<n] (with ids) ascending, 11-bit digits (3 passes, constant digits skipped).
    private func radixSort32(_ n: Int) {
        if n < 2 { return }
        var kA = keys32, kB = keys32b, iA = ids, iB = ids2
        let counts = self.counts
        for shift: UInt32 in [0, 11, 22] {
            for b in 0..<2048 { counts[b] = 0 }
            for i in 0..<n { counts[Int((kA[i] >> shift) & 0x7ff)] += 1 }
            if counts[Int((kA[0] >> shift) & 0x7ff)] == n { continue }
            var sum = 0
            for b in 0..<2048 { let c = counts[b]; counts[b] = sum; sum += c }
            for i in 0..<n {
                let b = Int((kA[i] >> shift) & 0x7ff)
                kB[counts[b]] = kA[i]; iB[counts[b]] = iA[i]; counts[b] += 1
            }
            swap(&kA, &kB); swap(&iA, &iB)
        }
        keys32 = kA; keys32b = kB; ids = iA; ids2 = iB
    }

    /// Ascending in -z: z descending; -0 counts as +0 (they compare equal in Sampler's comparator).
    @inline(__always) static func descendingKey(_ v: Double) -> UInt64 {
        let b = (v == 0 ? 0.0 : v).bitPattern
        let asc = b & (1 << 63) != 0 ? ~b : b | (1 << 63)   // increasing with v
        return ~asc
    }

    func pick(_ logits: UnsafeBufferPointer<Float>, options: GenerationOptions, rng: inout SplitMix64) -> Int32 {
        precondition(logits.count == V)
        if options.temperature <= 0 { return Sampler.pick(logits, options: options, rng: &rng) }
        let inv = 1 / Double(options.temperature)
        let V = self.V, z = self.z, probs = self.probs, ids = self.ids   // locals: no access checks
        for i in 0..<V { z[i] = Double(logits[i]) * inv }
        var keepFrom = -Double.infinity
        if options.topK > 0 && options.topK < V {
            keepFrom = Sampler.kthLargest(Array(UnsafeBufferPointer(start: z, count: V)), options.topK)
        }
        // Order by the float logit (3 radix passes): z = Double(logit)·inv is strictly increasing in the logit for finite
        // values (a float step is 2^29 double steps), so this is z's order; checked, else the 64-bit key of z itself.
        var n = 0
        let k32 = keys32
        for i in 0..<V where z[i] >= keepFrom {
            k32[n] = Self.descendingKey32(logits[i]); ids[n] = Int32(i); n += 1
        }
        radixSort32(n)
        var ordered = true
        var sortedIds = self.ids
        for i in 1..<max(n, 1) {
            let a = z[Int(sortedIds[i - 1])], b = z[Int(sortedIds[i])]
            if !(a > b || (a == b && sortedIds[i - 1] < sortedIds[i])) { ordered = false; break }
        }
        if !ordered || forceWideKeys {
            n = 0
            let keys = self.keys, ids = self.ids   // the 32-bit sort may have swapped the id buffers
            for i in 0..<V where z[i] >= keepFrom {
                keys[n] = Self.descendingKey(z[i]); ids[n] = Int32(i); n += 1
            }
            radixSort(n)
            sortedIds = self.ids
        }
        // From here Sampler.pick's arithmetic, in its order.
        let m = z[Int(sortedIds[0])]
        var total = 0.0
        for i in 0..<n { probs[i] = Foundation.exp(z[Int(sortedIds[i])] - m); total += probs[i] }
        var count = n
        if options.topP < 1 {
            var cum = 0.0, keep = 0
            for i in 0..<n {
                cum += probs[i] / total
                keep += 1
                if cum >= Double(options.topP) { break }
            }
            count = max(1, keep)
            total = 0
            for i in 0..<count { total += probs[i] }
        }
        var u = rng.nextUniform() * total
        for i in 0..<count {
            u -= probs[i]
            if u < 0 { return sortedIds[i] }
        }
        return sortedIds[count - 1]
    }

    /// Stable LSD radix sort of keys[0..<n] (with ids) ascending, 8 bits a pass; passes where every key shares the byte
    /// are skipped. The result is left in keys/ids.
    private func radixSort(_ n: Int) {
        if n < 2 { return }
        var kA = keys, kB = keys2, iA = ids, iB = ids2
        let counts = self.counts
        for pass in 0..<8 {
            let shift = UInt64(pass * 8)
            for b in 0..<256 { counts[b] = 0 }
            for i in 0..<n { counts[Int((kA[i] >> shift) & 0xff)] += 1 }
            if counts[Int((kA[0] >> shift) & 0xff)] == n { continue }   // every key has this byte
            var sum = 0
            for b in 0..<256 { let c = counts[b]; counts[b] = sum; sum += c }
            for i in 0..<n {
                let b = Int((kA[i] >> shift) & 0xff)
                kB[counts[b]] = kA[i]; iB[counts[b]] = iA[i]; counts[b] += 1
            }
            swap(&kA, &kB); swap(&iA, &iB)
        }
        keys = kA; keys2 = kB; ids = iA; ids2 = iB
    }
}
