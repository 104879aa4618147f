// Dropout.swift: the counter-based dropout keys. A mask element is a pure function of
// (seed, step, global sample index, site, row, column), so a sample gets the same mask whatever rank, micro-batch,
// batch position or padded length it lands in. Inverted dropout (kept values scaled by 1/(1-p)), like PyTorch.
// Rows are token positions (hidden-state sites) or (head, query) pairs (attention probabilities); columns are the
// channel / key index, so the key never depends on T or C of the batch layout.
// Deliberately not here: applying masks to tensors (the CKernels row kernels do that), RNG for initialisation.
import CKernels
import SplitMix

/// The training-mode switch of `forward`: nil means eval mode (no dropout).
public struct DropoutContext: Sendable {
    public var seed: UInt64
    /// The optimizer step (every micro-batch of one step uses the same value; masks differ per sample anyway).
    public var step: Int
    public init(seed: UInt64, step: Int) { self.seed = seed; self.step = step }
}

/// Where in the network a mask is drawn; part of the key.
public enum DropoutSite {
    public static let embeddings = 1
    public static let classifier = 2
    public static func attentionProbs(layer: Int) -> Int { 16 + 4 * layer }
    public static func attentionOutput(layer: Int) -> Int { 17 + 4 * layer }
    public static func ffnOutput(layer: Int) -> Int { 18 + 4 * layer }
}

public enum DropoutKey {
    /// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
    @inline(__always)
    public static func mix(_ z0: UInt64) -> UInt64 { SplitMix64.mix(z0 &+ 0x9E37_79B9_7F4A_7C15) }
    /// Key of one (seed, step, sample, site): chained mixing so that every field changes every bit.
    public static func sample(_ ctx: DropoutContext, sample: Int, site: Int) -> UInt64 {
        var k = mix(ctx.seed)
        k = mix(k ^ UInt64(bitPattern: Int64(ctx.step)))
        k = mix(k ^ UInt64(bitPattern: Int64(sample)))
        return mix(k ^ UInt64(site))
    }
    /// Key of one row inside a sample's tensor at a site.
    @inline(__always)
    public static func row(_ sampleKey: UInt64, _ row: Int) -> UInt64 { mix(sampleKey ^ UInt64(row)) }

    /// Key of row `row` of head `head`'s [T, T] attention probabilities (encoder and GPT-2 alike).
    @inline(__always)
    static func attentionRow(_ sampleKey: UInt64, head: Int, row: Int) -> UInt64 { self.row(sampleKey, (head << 20) | row) }

    /// Dropout of head `head`'s [T, T] attention rows (probabilities in forward, their gradient in backward):
    /// row i of `out` = row i of `x` masked by `attentionRow` and scaled; `out` may be `x`.
    @inline(__always)
    static func dropAttentionRows(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, T: Int, rows: Int? = nil,
                                  sampleKey: UInt64, head: Int, threshold: UInt32, scale: Float) {
        for i in 0..<(rows ?? T) {
            ck_dropout_row(x + i * T, out + i * T, T, attentionRow(sampleKey, head: head, row: i), threshold, scale)
        }
    }

    /// The 32-bit threshold below which an element is dropped: P(drop) = threshold / 2^32 ≈ p.
    public static func threshold(p: Float) -> UInt32 {
        if p <= 0 { return 0 }
        let t = (Double(p) * 4_294_967_296.0).rounded()
        return t >= 4_294_967_295 ? UInt32.max : UInt32(t)
    }
    /// Scale of kept elements (0 when p >= 1: everything dropped, as torch does).
    public static func scale(p: Float) -> Float { p >= 1 ? 0 : 1 / (1 - p) }

    /// Whether element `column` of `row` is kept (for tests and for code outside the kernels).
    public static func keep(_ ctx: DropoutContext, sample: Int, site: Int, row: Int, column: Int, p: Float) -> Bool {
        ck_dropout_keep(Self.row(Self.sample(ctx, sample: sample, site: site), row), UInt32(column), threshold(p: p)) != 0
    }
}

/// Applies dropout over a [B*T, C] tensor row by row (row t of sample b keyed by (sampleIndices[b], site, t)).
/// In place when x == y. Used identically in forward (on activations) and backward (on gradients). Rows are split
/// over the compute pool (each row's mask is a function of its key only, so the same bits on any thread count).
/// `rowOf` (with T = 1): compact rows, one per sample: row b of x is row rowOf[b] of sample b's tensor and gets that
/// row's mask (a last layer computed on the rows a head reads only); nil: row b·T + t is row t.
@inline(__always)
func dropoutRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, B: Int, T: Int, C: Int,
                 ctx: DropoutContext, samples: [Int], site: Int, p: Float, rowOf: [Int]? = nil) {
    let thr = DropoutKey.threshold(p: p), sc = DropoutKey.scale(p: p)
    precondition(rowOf == nil || (T == 1 && rowOf!.count >= B), "compact dropout rows need T = 1 and a row per sample")
    ComputeThreads.parallelFor(B * T, grain: max(1, 8192 / max(C, 1))) { rows, _ in
        var b = -1, sk: UInt64 = 0
        for i in rows {
            if i / T != b { b = i / T; sk = DropoutKey.sample(ctx, sample: samples[b], site: site) }
            let o = i * C
            ck_dropout_row(x + o, y + o, C, DropoutKey.row(sk, rowOf?[b] ?? (i - b * T)), thr, sc)
        }
    }
}
