// TestSupport.swift: fixture loading and tolerance comparison shared by the ModelTests.
// Fixtures come from the test bundle (copied from the shared golden set); nothing here reads outside the bundle.
import Foundation
import XCTest
@testable import Model

enum Fixtures {
    static func dir(_ name: String) throws -> URL {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures folder missing from the test bundle")
        }
        return root.appendingPathComponent(name)
    }

    /// Config, a parameter store from makeLayout filled by exact-name copy from model.safetensors, and the goldens.
    static func load(_ name: String) throws -> (ModelConfig, ParameterStore, SafeTensorsFile) {
        let d = try dir(name)
        let config = try ModelConfig.load(url: d.appendingPathComponent("config.json"))
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        let weights = try SafeTensorsFile(url: d.appendingPathComponent("model.safetensors"))
        for e in store.entries {
            guard let info = weights.info(e.name) else { XCTFail("model.safetensors lacks \(e.name)"); continue }
            XCTAssertEqual(info.shape, e.shape, "shape of \(e.name)")
            try weights.copyFloats(e.name, into: store.value(e.name))
        }
        let golden = try SafeTensorsFile(url: d.appendingPathComponent("golden.safetensors"))
        return (config, store, golden)
    }

    static func batch(_ golden: SafeTensorsFile, _ k: Int, bert: Bool) throws -> (TokenBatch, [Int32]) {
        let ids = try golden.int64s("batch\(k)/input_ids").map { Int32($0) }
        let mask = try golden.int64s("batch\(k)/attention_mask").map { Int32($0) }
        let types = bert ? try golden.int64s("batch\(k)/token_type_ids").map { Int32($0) } : nil
        let labels = try golden.int64s("batch\(k)/labels").map { Int32($0) }
        let shape = golden.info("batch\(k)/input_ids")!.shape
        return (TokenBatch(batchSize: shape[0], seqLen: shape[1], inputIds: ids, attentionMask: mask,
                           tokenTypeIds: types, sampleIndices: Array(0..<shape[0])), labels)
    }
}

/// |a - b| <= atol + rtol·|ref| element-wise; fails naming the tensor, the worst index and its error.
func assertClose(_ a: [Float], _ ref: [Float], atol: Double, rtol: Double = 0, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == ref.count else {
        XCTFail("\(what): \(a.count) values, reference has \(ref.count)", file: file, line: line); return
    }
    var worst = -1, worstExcess = 0.0, maxErr = 0.0
    for i in 0..<a.count {
        let e = abs(Double(a[i]) - Double(ref[i]))
        maxErr = max(maxErr, e)
        let excess = e - (atol + rtol * abs(Double(ref[i])))
        if excess > worstExcess || (!e.isFinite) { worstExcess = excess.isFinite ? excess : .infinity; worst = i }
    }
    if worst >= 0 {
        XCTFail("\(what): max abs error \(maxErr); worst at [\(worst)] got \(a[worst]) want \(ref[worst]) (atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}

/// Seeded normal generator (SplitMix64 + Box-Muller) for test inputs.
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
    mutating func floats(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float(normal() * scale) } }
}
