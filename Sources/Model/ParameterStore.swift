// ParameterStore: one flat fp32 parameter buffer with named views, and a gradient buffer of the same layout, so
// that the gradient all-reduce is one call and the optimizer one loop. Names are Hugging Face keys as
// `save_pretrained` writes them (e.g. "bert.encoder.layer.0.attention.self.query.weight"), so loading and saving
// need no renaming table beyond the prefix and legacy-name aliases handled in WeightLoading.swift.
// Deliberately not here: how a layer uses its views (the layers), or optimizer state (AdamW).
import Foundation

/// One named tensor inside the flat buffers.
public struct ParameterEntry: Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// AdamW weight decay applies (Trainer.get_decay_parameter_names: not LayerNorm, not bias).
    public let decay: Bool
    public var range: Range<Int> { offset..<(offset + count) }
}

/// Builds a layout: add tensors in order, then `ParameterStore(layout:)`.
public struct ParameterLayout: Sendable {
    public private(set) var entries: [ParameterEntry] = []
    public private(set) var count = 0
    private var index: [String: Int] = [:]
    public init() {}

    /// Appends a tensor and returns its offset. Offsets are 16-float aligned so that every view starts on a
    /// 64-byte boundary (vector loads, and cache lines are never shared by two tensors).
    @discardableResult
    public mutating func add(_ name: String, _ shape: [Int], decay: Bool? = nil) -> Int {
        precondition(index[name] == nil, "duplicate parameter \(name)")
        let offset = (count + 15) / 16 * 16
        let e = ParameterEntry(name: name, shape: shape, offset: offset, decay: decay ?? ParameterLayout.defaultDecay(name))
        index[name] = entries.count
        entries.append(e)
        count = offset + e.count
        return offset
    }

    public func entry(_ name: String) -> ParameterEntry? { index[name].map { entries[$0] } }

    /// transformers' Trainer rule: no decay for LayerNorm parameters and for names containing "bias"/"norm" forms.
    public static func defaultDecay(_ name: String) -> Bool {
        let n = name.lowercased()
        if n.contains("bias") || n.contains("layernorm") || n.contains("rmsnorm") || n.contains("layer_norm") { return false }
        if n.hasSuffix("_norm.weight") || n.contains(".norm.") || n.hasPrefix("norm.") { return false }
        if n.contains(".ln_") || n.hasPrefix("ln_") || n.contains("ln_f.") { return false }
        return true
    }
}

/// Owns the parameter and gradient buffers (64-byte aligned, zero-initialised). The gradient buffer is allocated on
/// first use: a frozen base (LoRA) never touches it, so it costs no memory at all.
public final class ParameterStore: @unchecked Sendable {
    public let layout: ParameterLayout
    /// The parameters (layers read them through this property at every call, so `adoptValueBuffer` may move them).
    public private(set) var values: UnsafeMutableBufferPointer<Float>
    /// Keeps externally provided parameter memory alive (nil: the store allocated `values` and frees it).
    private var valuesOwner: AnyObject?
    private var gradBuffer: UnsafeMutableBufferPointer<Float>?
    /// Keeps externally provided gradient memory alive (nil: the store allocated the buffer and frees it).
    private var gradOwner: AnyObject?
    public var count: Int { layout.count }
    public var entries: [ParameterEntry] { layout.entries }

    /// The gradient buffer, same layout as `values` (allocated zeroed on first access).
    public var grads: UnsafeMutableBufferPointer<Float> {
        if let g = gradBuffer { return g }
        let g = ParameterStore.allocate(layout.count)
        gradBuffer = g
        return g
    }

    /// Moves the gradients into `buffer` (count == `count`), memory that `owner` keeps alive and the store does not
    /// free: e.g. node-shared memory that other ranks read during the all-reduce. Current gradients are copied over.
    public func adoptGradientBuffer(_ buffer: UnsafeMutableBufferPointer<Float>, owner: AnyObject) {
        precondition(buffer.count == layout.count, "adoptGradientBuffer: \(buffer.count) floats for a store of \(layout.count)")
        if let old = gradBuffer {
            _ = buffer.update(fromContentsOf: old)
            if gradOwner == nil { UnsafeMutableRawPointer(old.baseAddress!).deallocate() }
        } else {
            buffer.update(repeating: 0)
        }
        gradBuffer = buffer
        gradOwner = owner
    }

    /// Moves the parameters into `buffer` (count == `count`), memory that `owner` keeps alive and the store does not
    /// free: e.g. the one copy of the parameters that every rank of a node reads (ZeRO-1 in node-shared memory). With
    /// `copy` the current values are written there; without, the buffer must already hold them (another rank that
    /// maps the same memory copied them).
    public func adoptValueBuffer(_ buffer: UnsafeMutableBufferPointer<Float>, owner: AnyObject, copy: Bool) {
        precondition(buffer.count == layout.count, "adoptValueBuffer: \(buffer.count) floats for a store of \(layout.count)")
        if copy { _ = buffer.update(fromContentsOf: values) }
        if valuesOwner == nil { UnsafeMutableRawPointer(values.baseAddress!).deallocate() }
        values = buffer
        valuesOwner = owner
    }

    /// Whether the gradient buffer exists (false for a base that has only been frozen-trained or run forward).
    public var hasGradientBuffer: Bool { gradBuffer != nil }

    public init(layout: ParameterLayout) {
        self.layout = layout
        values = ParameterStore.allocate(layout.count)
    }

    private static func allocate(_ count: Int) -> UnsafeMutableBufferPointer<Float> {
        let n = max(count, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: n)
        return UnsafeMutableBufferPointer(start: raw.assumingMemoryBound(to: Float.self), count: count)
    }

    deinit {
        if valuesOwner == nil { UnsafeMutableRawPointer(values.baseAddress!).deallocate() }
        if let g = gradBuffer, gradOwner == nil { UnsafeMutableRawPointer(g.baseAddress!).deallocate() }
    }

    /// Parameter view by name; crashes on an unknown name (a programming error, not user input).
    public func value(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        guard let e = layout.entry(name) else { preconditionFailure("unknown parameter \(name)") }
        return UnsafeMutableBufferPointer(rebasing: values[e.range])
    }

    public func grad(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        guard let e = layout.entry(name) else { preconditionFailure("unknown parameter \(name)") }
        return UnsafeMutableBufferPointer(rebasing: grads[e.range])
    }

    public func zeroGrads() { grads.update(repeating: 0) }

    /// Zeroes the gradient buffer except the row-sparse tables in `rowSparse`, of which only `dirtyRows[k]` (the rows
    /// of table k the previous step may have written; every other row must already be zero) are cleared. nil, or a
    /// count that does not match, zeroes everything.
    public func zeroGrads(rowSparse: [(range: Range<Int>, rowLength: Int)], dirtyRows: [[Int]]?) {
        let g = grads
        guard let dirtyRows, dirtyRows.count == rowSparse.count else { return zeroGrads() }
        var next = 0
        for (t, rows) in zip(rowSparse, dirtyRows).sorted(by: { $0.0.range.lowerBound < $1.0.range.lowerBound }) {
            if t.range.lowerBound > next { UnsafeMutableBufferPointer(rebasing: g[next..<t.range.lowerBound]).update(repeating: 0) }
            for r in rows {
                let o = t.range.lowerBound + r * t.rowLength
                UnsafeMutableBufferPointer(rebasing: g[o..<(o + t.rowLength)]).update(repeating: 0)
            }
            next = max(next, t.range.upperBound)
        }
        if next < g.count { UnsafeMutableBufferPointer(rebasing: g[next...]).update(repeating: 0) }
    }

    /// Parameter count without alignment padding.
    public var parameterCount: Int { layout.entries.reduce(0) { $0 + $1.count } }
}
