// DebugCommunicator: the `--debug` wrapper. Before every collective it all-reduces (sequence number, element count,
// call kind) with MIN and MAX across ranks, so two ranks issuing different collectives (the usual cause of a hang or
// of silently mixed-up buffers) fail at once with an error naming the call and the ranks, instead of deadlocking.
// Costs one extra small all-reduce per collective: for debugging only.
// Deliberately not here: NaN/Inf checks of activations (the model's job), timeouts (Watchdog).

public final class DebugCommunicator: Communicator {
    public let inner: Communicator
    /// Collectives issued through this wrapper so far.
    public private(set) var sequence = 0

    public init(wrapping inner: Communicator) { self.inner = inner }

    public var rank: Int { inner.rank }
    public var worldSize: Int { inner.worldSize }
    public var topology: NodeTopology { inner.topology }

    /// Call kinds, numbered for the cross-check (the number is what travels; the name is for messages).
    enum Kind: Int64, CaseIterable {
        case allReduceFloatSum = 1, allReduceFloatMax, allReduceFloatMin
        case allReduceDoubleSum, allReduceDoubleMax, allReduceDoubleMin
        case allReduceInt64Sum, allReduceInt64Max, allReduceInt64Min
        case startAllReduceFloatSum, startAllReduceFloatMax, startAllReduceFloatMin
        case broadcast, barrier

        static func reduce(_ base: Int64, _ op: ReduceOp) -> Kind {
            Kind(rawValue: base + (op == .sum ? 0 : op == .max ? 1 : 2))!
        }
        static func describe(_ raw: Int64) -> String {
            guard let k = Kind(rawValue: raw) else { return "unknown call \(raw)" }
            return "\(k)"
        }
    }

    /// Cross-checks (sequence, count, kind, root) on all ranks before the real collective.
    private func check(_ kind: Kind, count: Int, root: Int = -1) throws {
        sequence += 1
        guard worldSize > 1 else { return }
        let mine: [Int64] = [Int64(sequence), Int64(count), kind.rawValue, Int64(root)]
        // One MAX all-reduce of (x, -x) yields both MAX and MIN (values are small, negation cannot overflow).
        var v = mine + mine.map { -$0 }
        try inner.allReduce(&v, op: .max)
        let agree = (0..<mine.count).allSatisfy { v[$0] == -v[$0 + mine.count] }
        if agree { return }
        // Disagreement: gather everyone's tuple (worldSize × 4, exact integer sum of one non-zero slot each).
        var table = [Int64](repeating: 0, count: worldSize * mine.count)
        for i in mine.indices { table[rank * mine.count + i] = mine[i] }
        try inner.allReduce(&table, op: .sum)
        func row(_ r: Int) -> ArraySlice<Int64> { table[(r * mine.count)..<((r + 1) * mine.count)] }
        let ref = row(0)
        let odd = (0..<worldSize).filter { row($0) != ref }
        let show = { (r: Int) -> String in
            let t = row(r), b = t.startIndex
            return "rank \(r): collective #\(t[b]) \(Kind.describe(t[b + 2])) of \(t[b + 1]) elements"
                + (t[b + 3] >= 0 ? " (root \(t[b + 3]))" : "")
        }
        throw CommunicatorError("--debug: ranks disagree on the next collective; rank(s) "
            + "\(odd.map(String.init).joined(separator: ", ")) differ from rank 0. "
            + ([0] + odd).map(show).joined(separator: "; ")
            + ". HINT: a rank took a different code path (e.g. a rank-dependent condition around a collective).")
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try check(.reduce(Kind.allReduceFloatSum.rawValue, op), count: buffer.count)
        try inner.allReduce(buffer, op: op)
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try check(.reduce(Kind.allReduceDoubleSum.rawValue, op), count: buffer.count)
        try inner.allReduce(buffer, op: op)
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {
        try check(.reduce(Kind.allReduceInt64Sum.rawValue, op), count: buffer.count)
        try inner.allReduce(buffer, op: op)
    }
    public func startAllReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws -> PendingReduction {
        try check(.reduce(Kind.startAllReduceFloatSum.rawValue, op), count: buffer.count)
        return try inner.startAllReduce(buffer, op: op)
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try check(.broadcast, count: buffer.count, root: root)
        try inner.broadcast(buffer, root: root)
    }
    public func barrier() throws {
        try check(.barrier, count: 0)
        try inner.barrier()
    }
    public func abort(code: Int32) -> Never { inner.abort(code: code) }
}
