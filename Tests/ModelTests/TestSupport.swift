// TestSupport.swift: fixture loading shared by the ModelTests (assertClose and TestRNG come from the TestSupport
// target, shared by every test target).
// Fixtures come from the test bundle (copied from the shared golden set); nothing here reads outside the bundle.
import Foundation
import XCTest
@_exported import TestSupport
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
