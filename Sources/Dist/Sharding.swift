// Sharding: which samples each rank processes, decided so that the numbers do not depend on the rank count.
//
// Training (`GlobalBatchPlan`): the whole training set is permuted once per epoch by a seeded, platform-independent
// generator (`SplitMix64`, keyed by (seed, epoch)). A global sample cursor walks that permutation; every optimizer
// step consumes the next `globalBatch` samples. Rank r takes the r-th contiguous slice of the step's samples and
// splits it into micro-batches of `microBatch`, so accumulationSteps = globalBatch / (worldSize × microBatch).
// One rank × k micro-batches and k ranks × 1 micro-batch therefore see exactly the same samples in every step.
//
// The last partial batch of an epoch (n mod globalBatch samples, if not zero) is a smaller final step, unless
// `dropLast` is set. Its samples are split over ranks as evenly as possible (the first `count mod worldSize`
// ranks get one more), contiguous, with no sample duplicated or padded; each rank cuts its slice into micro-batches
// of at most `microBatch`. A rank whose slice is empty gets no micro-batches but must still join the step's
// collectives (its gradient contribution is zero). The trainer normalises by `StepPlan.globalCount`.
//
// Length grouping (optional, `lengths` given): padding is the main waste of dynamic batching, so each epoch's
// permutation is cut into mega-batches of `groupFactor` × globalBatch samples, each sorted by length (longest first,
// ties by index), cut into global batches, and those batches shuffled (as transformers' LengthGroupedSampler
// does). It only reorders the seeded permutation, so it too is independent of the rank count.
//
// Evaluation (`EvalSharding`): the eval set, in file order, split into contiguous per-rank ranges of near-equal
// size with no padding duplicates, so integer counts all-reduced across ranks are exact.
//
// Deliberately not here: reading data (indices only), and any use of Swift's SystemRandomNumberGenerator (its
// sequence is not specified, so it could differ between platforms or Swift versions).
import SplitMix

extension SplitMix64 {
    /// A per-sample stream, e.g. for dropout masks keyed by (seed, step, global sample index): the mask of a sample
    /// does not depend on which rank or micro-batch processed it.
    public static func forSample(seed: UInt64, step: Int, sample: Int) -> SplitMix64 {
        SplitMix64(keys: seed, UInt64(bitPattern: Int64(step)), UInt64(bitPattern: Int64(sample)))
    }
}

/// Errors raised when a batch configuration cannot be honoured. The message says what would work.
public struct ShardingError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Splits `count` items into `parts` contiguous ranges whose sizes differ by at most one (larger ones first).
public func balancedRange(count: Int, parts: Int, index: Int) -> Range<Int> {
    precondition(parts > 0 && (0..<parts).contains(index) && count >= 0)
    let base = count / parts, extra = count % parts
    let start = index * base + min(index, extra)
    return start..<(start + base + (index < extra ? 1 : 0))
}

/// The samples of one optimizer step: all ranks' (global order) and this rank's micro-batches.
public struct StepPlan: Sendable, Equatable {
    public let epoch: Int
    /// Index of this step within its epoch.
    public let stepInEpoch: Int
    /// Index of this step counted from the start of training (epoch 0, step 0).
    public let globalStep: Int
    /// Samples consumed before this step, over all epochs: epoch × sampleCount + offset. Resume from this value
    /// at any world size with `GlobalBatchPlan.step(atCursor:)`.
    public let cursor: Int
    /// Dataset indices of the whole step, in order (identical on every rank and for every world size).
    public let globalIndices: [Int]
    /// Positions in `globalIndices` that this rank processes.
    public let rankSlice: Range<Int>
    /// This rank's samples (dataset indices) split into micro-batches of at most `microBatch`; empty when the rank
    /// has no samples in a short final step (it must still join the collectives).
    public let microBatches: [[Int]]
    /// Number of samples in the step over all ranks: the divisor of the summed loss/gradient.
    public var globalCount: Int { globalIndices.count }
    /// Cursor after this step.
    public var nextCursor: Int { cursor + globalIndices.count }
    /// This rank's samples, flattened.
    public var rankIndices: ArraySlice<Int> { globalIndices[rankSlice] }
}

/// The data order of a training run; see the file header.
public struct GlobalBatchPlan: Sendable {
    public let sampleCount: Int
    public let globalBatch: Int
    public let microBatch: Int
    public let worldSize: Int
    public let rank: Int
    public let seed: UInt64
    /// Drop the final partial batch of each epoch instead of running a smaller step.
    public let dropLast: Bool
    /// Per-sample lengths for length grouping (nil = plain permutation).
    public let lengths: [Int]?
    /// Mega-batch size in global batches for length grouping.
    public let groupFactor: Int

    /// Micro-batches per rank per full step: globalBatch / (worldSize × microBatch).
    public var accumulationSteps: Int { globalBatch / (worldSize * microBatch) }
    /// Optimizer steps per epoch (ceil, or floor with dropLast).
    public var stepsPerEpoch: Int {
        dropLast ? sampleCount / globalBatch : (sampleCount + globalBatch - 1) / globalBatch
    }
    /// Samples consumed per epoch (all of them, unless dropLast drops a tail).
    public var samplesPerEpoch: Int { dropLast ? stepsPerEpoch * globalBatch : sampleCount }

    public init(sampleCount: Int, globalBatch: Int, microBatch: Int, worldSize: Int, rank: Int, seed: UInt64,
                dropLast: Bool = false, lengths: [Int]? = nil, groupFactor: Int = 50) throws {
        if let lengths, lengths.count != sampleCount {
            throw ShardingError("lengths has \(lengths.count) entries for \(sampleCount) samples")
        }
        self.lengths = lengths
        self.groupFactor = max(1, groupFactor)
        guard sampleCount > 0 else { throw ShardingError("the training set is empty (0 samples)") }
        guard globalBatch > 0, microBatch > 0 else {
            throw ShardingError("global batch (\(globalBatch)) and micro batch (\(microBatch)) must be positive")
        }
        guard worldSize > 0, (0..<worldSize).contains(rank) else {
            throw ShardingError("rank \(rank) is not in 0..<\(worldSize)")
        }
        guard !dropLast || sampleCount >= globalBatch else {
            throw ShardingError("dropLast with \(sampleCount) samples < global batch \(globalBatch) leaves no step; "
                                + "use a global batch ≤ \(sampleCount) or turn dropLast off")
        }
        let perStep = worldSize * microBatch
        guard globalBatch % perStep == 0 else {
            throw ShardingError(Self.divisibilityHint(globalBatch: globalBatch, microBatch: microBatch,
                                                      worldSize: worldSize))
        }
        self.sampleCount = sampleCount
        self.globalBatch = globalBatch
        self.microBatch = microBatch
        self.worldSize = worldSize
        self.rank = rank
        self.seed = seed
        self.dropLast = dropLast
    }

    /// The explanation for a global batch that does not divide into ranks × micro-batches, with what would work.
    static func divisibilityHint(globalBatch: Int, microBatch: Int, worldSize: Int) -> String {
        let perStep = worldSize * microBatch
        var msg = "global batch \(globalBatch) is not divisible by world size \(worldSize) × micro batch "
            + "\(microBatch) = \(perStep), so ranks would need different numbers of micro-batches. "
        let lower = (globalBatch / perStep) * perStep, upper = lower + perStep
        msg += "Use a global batch that is a multiple of \(perStep) (e.g. "
            + (lower > 0 ? "\(lower) or \(upper)" : "\(upper)") + ")"
        if globalBatch % worldSize == 0 {
            let perRank = globalBatch / worldSize
            let micros = (1...perRank).filter { perRank % $0 == 0 }
            msg += ", or a micro batch dividing \(perRank) (\(micros.map(String.init).joined(separator: ", ")))"
        }
        let sizes = (1...min(globalBatch, 4096)).filter { globalBatch % ($0 * microBatch) == 0 }
        if !sizes.isEmpty {
            msg += ", or a world size in {\(sizes.map(String.init).joined(separator: ", "))} for micro batch \(microBatch)"
        }
        return msg + "."
    }

    /// The permutation of 0..<sampleCount used in `epoch` (Fisher–Yates driven by SplitMix64 keyed by (seed, epoch)).
    public func permutation(epoch: Int) -> [Int] {
        let p = Self.permutation(count: sampleCount, seed: seed, epoch: epoch)
        guard let lengths else { return p }
        return Self.groupByLength(p, lengths: lengths, globalBatch: globalBatch, groupFactor: groupFactor,
                                  seed: seed, epoch: epoch)
    }

    /// Sorts each mega-batch of `p` by length (descending, ties by index), then shuffles the order of its full
    /// global batches (a short tail batch stays last so that only the epoch's final step is partial).
    public static func groupByLength(_ p: [Int], lengths: [Int], globalBatch: Int, groupFactor: Int,
                                     seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(keys: seed, UInt64(bitPattern: Int64(epoch)), 0x4C45_4E47)  // "LENG"
        let mega = globalBatch * groupFactor
        var out: [Int] = []
        out.reserveCapacity(p.count)
        var start = 0
        while start < p.count {
            let end = min(start + mega, p.count)
            let sorted = p[start..<end].sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
            var batches = stride(from: 0, to: sorted.count, by: globalBatch).map {
                Array(sorted[$0..<min($0 + globalBatch, sorted.count)])
            }
            let full = batches.last!.count == globalBatch ? batches.count : batches.count - 1
            var i = full - 1
            while i > 0 {
                let j = Int(rng.next(below: UInt64(i + 1)))
                batches.swapAt(i, j)
                i -= 1
            }
            for b in batches { out += b }
            start = end
        }
        return out
    }

    public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(keys: seed, UInt64(bitPattern: Int64(epoch)))
        var p = Array(0..<count)
        var i = count - 1
        while i > 0 {
            let j = Int(rng.next(below: UInt64(i + 1)))
            p.swapAt(i, j)
            i -= 1
        }
        return p
    }

    /// All steps of one epoch (computes the permutation once).
    public func steps(epoch: Int) -> [StepPlan] {
        let perm = permutation(epoch: epoch)
        return (0..<stepsPerEpoch).map { makeStep(epoch: epoch, stepInEpoch: $0, permutation: perm) }
    }

    /// The step that starts at a global sample cursor (as recorded by a checkpoint). The cursor must lie on a step
    /// boundary of this plan's global batch, or at an epoch start.
    public func step(atCursor cursor: Int) throws -> StepPlan {
        guard cursor >= 0 else { throw ShardingError("negative sample cursor \(cursor)") }
        let epoch = cursor / sampleCount, offset = cursor % sampleCount
        guard offset % globalBatch == 0 else {
            throw ShardingError("sample cursor \(cursor) is \(offset) samples into epoch \(epoch), which is not a "
                                + "multiple of the global batch \(globalBatch); resume with the global batch the run "
                                + "was saved with")
        }
        let s = offset / globalBatch
        guard s < stepsPerEpoch else {
            // Only reachable with dropLast: the dropped tail; the next step starts the next epoch.
            return makeStep(epoch: epoch + 1, stepInEpoch: 0, permutation: permutation(epoch: epoch + 1))
        }
        return makeStep(epoch: epoch, stepInEpoch: s, permutation: permutation(epoch: epoch))
    }

    /// The step with a given global step number (epoch × stepsPerEpoch + step in epoch).
    public func step(global: Int) -> StepPlan {
        precondition(global >= 0)
        let e = global / stepsPerEpoch
        return makeStep(epoch: e, stepInEpoch: global % stepsPerEpoch, permutation: permutation(epoch: e))
    }

    func makeStep(epoch: Int, stepInEpoch: Int, permutation perm: [Int]) -> StepPlan {
        let start = stepInEpoch * globalBatch
        let end = min(start + globalBatch, sampleCount)
        let indices = Array(perm[start..<end])
        let slice = balancedRange(count: indices.count, parts: worldSize, index: rank)
        var micro: [[Int]] = []
        var i = slice.lowerBound
        while i < slice.upperBound {
            let j = min(i + microBatch, slice.upperBound)
            micro.append(Array(indices[i..<j]))
            i = j
        }
        return StepPlan(epoch: epoch, stepInEpoch: stepInEpoch, globalStep: epoch * stepsPerEpoch + stepInEpoch,
                        cursor: epoch * sampleCount + start, globalIndices: indices, rankSlice: slice,
                        microBatches: micro)
    }
}

/// Evaluation sharding: rank r evaluates a contiguous range of the eval set; ranges cover every index exactly once.
public enum EvalSharding {
    /// The indices of `count` eval samples this rank evaluates (may be empty when count < worldSize).
    public static func range(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
        balancedRange(count: count, parts: worldSize, index: rank)
    }
}
