// SplitMix64 (Steele, Lea & Flood 2014): the one seeded generator of the project. Tiny, and defined by integer
// arithmetic alone, so a seed gives the same stream on every platform (unlike `SystemRandomNumberGenerator` or
// Foundation's generators). Shared by Model (weight init, sampling, benchmarks), Dist (sample order, dropout
// streams), Training (data splits) and the tests; nothing else lives in this target.
import Foundation

public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }
    public init(seed: UInt64) { state = seed }

    /// A generator keyed by several values (e.g. seed, epoch), each mixed in so that nearby keys give unrelated streams.
    public init(keys: UInt64...) {
        var s: UInt64 = 0x6A09_E667_F3BC_C908  // arbitrary non-zero start (first 64 bits of sqrt(2)'s fraction)
        for k in keys { s = SplitMix64.mix(s ^ SplitMix64.mix(k &+ 0x9E37_79B9_7F4A_7C15)) }
        state = s
    }

    /// The SplitMix64 output function, also usable as a 64-bit hash finaliser (a bijective mixer).
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// Uniform integer in 0..<bound without modulo bias (Lemire's multiply-shift with rejection); bound > 0.
    /// Specified here rather than via Swift's `random(in:using:)`, whose algorithm is not part of the language's contract.
    public mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0, "bound must be positive")
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return m.high
    }

    /// Uniform integer in 0..<bound by rejecting the short final bucket, then `%` (a different stream from
    /// `next(below:)`: the validation split's recorded goldens use this one); bound > 0.
    public mutating func next(belowByModulo bound: UInt64) -> UInt64 {
        precondition(bound > 0, "bound must be positive")
        let threshold = (0 &- bound) % bound  // = 2^64 mod bound
        while true {
            let r = next()
            if r >= threshold { return r % bound }
        }
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal by Box-Muller.
    public mutating func nextNormal() -> Double {
        let u1 = max(nextUniform(), 0x1.0p-60), u2 = nextUniform()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}
