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
    public let values: UnsafeMutableBufferPointer<Float>
    private var gradBuffer: UnsafeMutableBufferPointer<Float>?
    public var count: Int { layout.count }
    public var entries: [ParameterEntry] { layout.entries }

    /// The gradient buffer, same layout as `values` (allocated zeroed on first access).
    public var grads: UnsafeMutableBufferPointer<Float> {
        if let g = gradBuffer { return g }
        let g = ParameterStore.allocate(layout.count)
        gradBuffer = g
        return g
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
        UnsafeMutableRawPointer(values.baseAddress!).deallocate()
        if let g = gradBuffer { UnsafeMutableRawPointer(g.baseAddress!).deallocate() }
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

    /// Parameter count without alignment padding.
    public var parameterCount: Int { layout.entries.reduce(0) { $0 + $1.count } }
}
