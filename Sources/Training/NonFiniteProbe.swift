// NonFiniteProbe: `--debug`'s NaN/Inf hunt. The model calls `record` with each layer's output in forward and the
// gradient leaving each layer in backward, in execution order; the first non-finite value wins, so the message
// names the layer where it first appeared (not the loss, where it ends up). After the micro-batch, `check` also
// scans the parameter gradients in backward order (last entry first) and throws with step, micro-batch and rank.
// Deliberately not here: anything on the normal path (the trainer creates a probe only with --debug).
import Model

final class NonFiniteProbe {
    let rank: Int
    private var step = 0, microBatch = 0
    private(set) var first: String?

    init(rank: Int) { self.rank = rank }

    func locate(step: Int, microBatch: Int) {
        self.step = step
        self.microBatch = microBatch
    }

    /// The model's probe callback: remembers the first stage holding a NaN or Inf.
    func record(_ stage: String, _ values: UnsafeBufferPointer<Float>) {
        guard first == nil else { return }
        for (i, v) in values.enumerated() where !v.isFinite {
            first = "\(v) in the \(stage), element \(i) of \(values.count)"
            return
        }
    }

    /// Throws if forward/backward produced a non-finite value, or if a parameter gradient is not finite.
    func check(_ store: ParameterStore) throws {
        let whereAt = "step \(step), micro-batch \(microBatch + 1), rank \(rank)"
        if let first {
            throw TrainingError("--debug: first non-finite value at \(whereAt): \(first); every earlier layer was finite. Check that layer's weights in the model folder, or lower --learning-rate")
        }
        for e in store.entries.reversed() {
            let g = UnsafeBufferPointer(rebasing: store.grads[e.range])
            if let i = g.firstIndex(where: { !$0.isFinite }) {
                throw TrainingError("--debug: the gradient of \(e.name) holds \(g[i]) at \(whereAt) (element \(i - g.startIndex) of \(e.count)) while every activation was finite; lower --learning-rate or check the data")
            }
        }
    }

    /// The row-sparse all-reduce's contract: rows outside `rows` must be exactly zero on this rank.
    static func checkUntouchedRowsAreZero(_ store: ParameterStore, table: (range: Range<Int>, rowLength: Int),
                                         rows: [Int], step: Int) throws {
        let touched = Set(rows)
        let g = store.grads
        for r in 0..<(table.range.count / table.rowLength) where !touched.contains(r) {
            let lo = table.range.lowerBound + r * table.rowLength
            if let i = (lo..<(lo + table.rowLength)).first(where: { g[$0] != 0 }) {
                let name = store.entries.first { $0.range.contains(lo) }?.name ?? "a row-sparse table"
                throw TrainingError("--debug: internal error at step \(step): row \(r) of \(name) has gradient \(g[i]) but no sample of the step holds token \(r); the row-sparse all-reduce would drop it")
            }
        }
    }
}
