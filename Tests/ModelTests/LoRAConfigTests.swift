// LoRAConfigTests.swift: LoRA beyond the golden run: fresh adapters (B = 0 leaves the model unchanged; peft's default
// targets and modules_to_save), every BERT/DistilBERT target with lora_dropout checked against a finite-difference
// directional derivative, and the bad-input errors (unknown target, r ≤ 0, adapter of another base, stray tensors).
// Not here: the peft goldens (LoRAGoldenTests.swift).
import Foundation
import XCTest
@testable import Model

final class LoRAConfigTests: XCTestCase {
    func assertLoRAError(_ body: () throws -> Void, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected a LoRAError containing \(parts)", file: file, line: line)
        } catch let e as LoRAError {
            for p in parts { XCTAssertTrue(e.message.contains(p), "'\(e.message)' lacks '\(p)'", file: file, line: line) }
            XCTAssertFalse(e.message.contains("\n"), "error should be one line", file: file, line: line)
        } catch {
            XCTFail("expected LoRAError, got \(error)", file: file, line: line)
        }
    }

    func testFreshAdapterDefaultsAndIdentity() throws {
        for name in ["bert-tiny-cls", "distilbert-tiny-cls"] {
            let (config, store, golden) = try Fixtures.load(name)
            let bert = config.family == .bert
            let (batch, _) = try Fixtures.batch(golden, 0, bert: bert)
            let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
            let before = Array(model.forward(batch, dropout: nil))
            let trainable = try model.enableLoRA(LoRAConfig(r: 8, alpha: 16), seed: 7)
            let names = trainable.entries.map(\.name)
            let targets = bert ? ["attention.self.query", "attention.self.value"] : ["attention.q_lin", "attention.v_lin"]
            let layerPrefix = bert ? "base_model.model.bert.encoder.layer." : "base_model.model.distilbert.transformer.layer."
            var expected: [String] = []
            for l in 0..<config.layers {
                for t in targets { expected += ["\(layerPrefix)\(l).\(t).lora_A.default.weight", "\(layerPrefix)\(l).\(t).lora_B.default.weight"] }
            }
            // peft's suffix match of "classifier" also takes DistilBERT's pre_classifier.
            if !bert { expected += ["base_model.model.pre_classifier.modules_to_save.default.weight", "base_model.model.pre_classifier.modules_to_save.default.bias"] }
            expected += ["base_model.model.classifier.modules_to_save.default.weight", "base_model.model.classifier.modules_to_save.default.bias"]
            XCTAssertEqual(names, expected, "\(name) trainable layout")
            XCTAssertTrue(trainable.value(expected[0]).contains { $0 != 0 }, "lora_A is initialised")
            XCTAssertFalse(trainable.value(expected[1]).contains { $0 != 0 }, "lora_B starts at zero")
            // B = 0: the model is unchanged, bit for bit.
            XCTAssertEqual(Array(model.forward(batch, dropout: nil)), before, "\(name): a fresh adapter changed the logits")
            XCTAssertEqual(model.adapter?.config.modulesToSave ?? [], ["classifier", "score"])
            // Saved and reloaded onto a fresh copy of the base: the default targets are written out, values round-trip.
            for e in trainable.entries { for i in e.range { trainable.values[i] += 0.01 * Float(i % 7) } }   // B non-zero
            let trained = Array(model.forward(batch, dropout: nil))
            XCTAssertNotEqual(trained, before)
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("lora-fresh-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: out) }
            try PEFTAdapter.save(model.adapter!, to: out)
            let written = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(PEFTAdapter.configFileName))) as! [String: Any]
            XCTAssertEqual(written["target_modules"] as? [String], LoRAConfig.defaultTargets(config.family))
            XCTAssertEqual(written["r"] as? Int, 8)
            let (_, store2, _) = try Fixtures.load(name)
            let model2 = EncoderClassifier(config: config, parameters: store2, maxBatch: 4, maxSeq: 40)
            let reloaded = try PEFTAdapter.load(out, into: model2)
            for e in trainable.entries {
                XCTAssertEqual(Array(reloaded.store.value(e.name)), Array(trainable.value(e.name)), "\(name): round trip of \(e.name)")
            }
            XCTAssertEqual(Array(model2.forward(batch, dropout: nil)), trained, "\(name): reloaded logits")
        }
    }

    /// All six targets, lora_dropout 0.3 and a non-zero B: for every trainable tensor, the finite-difference derivative
    /// of the loss along its gradient (same dropout masks in every forward) equals |g|². Central differences with a
    /// parameter step of 1e-3 along g move the loss by ~1e-3·|g|, far above the float32 noise of the loss (~1e-9 here);
    /// rtol 2e-2 covers the curvature term. (A 1e-2 step crosses DistilBERT's ReLU kink after pre_classifier.)
    func runDirectional(_ name: String, modules: [String]) throws {
        let (config, store, golden) = try Fixtures.load(name)
        let bert = config.family == .bert
        let (batch, labels) = try Fixtures.batch(golden, 0, bert: bert)
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 4, maxSeq: 40)
        let t = try model.enableLoRA(LoRAConfig(r: 2, alpha: 4, dropout: 0.3, targetModules: modules), seed: 3)
        XCTAssertEqual(t.entries.count, config.layers * 6 * 2 + (bert ? 2 : 4), "all six linears of every layer adapted")
        var rng = TestRNG(11)
        for e in t.entries where e.name.contains("lora_B") {
            let v = t.value(e.name); let r = rng.floats(v.count, scale: 0.3)
            for i in 0..<v.count { v[i] = r[i] }
        }
        let ctx = DropoutContext(seed: 99, step: 4)
        let B = batch.batchSize, NL = config.numLabels
        func loss(backward: Bool) -> Double {
            let logits = model.forward(batch, dropout: ctx)
            var d = [Float](repeating: 0, count: B * NL)
            let l = d.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: labels, batch: B, classes: NL, scale: 1 / Float(B), dLogits: $0)
            } / Double(B)
            if backward { d.withUnsafeBufferPointer { model.backward(dLogits: $0) } }
            return l
        }
        t.zeroGrads()
        _ = loss(backward: true)
        let grads = Array(t.grads)
        for e in t.entries {
            let g = Array(grads[e.range]), v = t.value(e.name), orig = Array(v)
            let g2 = g.reduce(0.0) { $0 + Double($1) * Double($1) }
            guard g2 > 1e-14 else { XCTFail("\(name) \(e.name): zero gradient, nothing checked"); continue }
            let eps = 1e-3 / g2.squareRoot()
            for i in 0..<v.count { v[i] = orig[i] + Float(eps * Double(g[i])) }
            let lp = loss(backward: false)
            for i in 0..<v.count { v[i] = orig[i] - Float(eps * Double(g[i])) }
            let lm = loss(backward: false)
            for i in 0..<v.count { v[i] = orig[i] }
            let fd = (lp - lm) / (2 * eps)
            XCTAssertEqual(fd, g2, accuracy: 2e-2 * g2, "\(name) \(e.name): directional derivative \(fd) vs |g|² \(g2)")
        }
        // Eval mode ignores lora_dropout; training mode with p > 0 changes the output.
        let evalLogits = Array(model.forward(batch, dropout: nil))
        let trainLogits = Array(model.forward(batch, dropout: ctx))
        XCTAssertNotEqual(evalLogits, trainLogits, "lora_dropout had no effect in training mode")
        XCTAssertFalse(store.hasGradientBuffer, "\(name): a frozen base touched its gradient buffer")
    }

    func testBertAllTargetsWithDropout() throws {
        try runDirectional("bert-tiny-cls", modules: ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"])
    }
    func testDistilBertAllTargetsWithDropout() throws {
        try runDirectional("distilbert-tiny-cls", modules: ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"])
    }

    func testRSLoRAScaling() {
        XCTAssertEqual(LoRAConfig(r: 16, alpha: 8, useRSLoRA: true).scaling, 2.0)
        XCTAssertEqual(LoRAConfig(r: 16, alpha: 8).scaling, 0.5)
    }

    func testBadTargetsAndRank() throws {
        let (config, _, _) = try Fixtures.load("bert-tiny-cls")
        assertLoRAError({ _ = try LoRAPlan(config: LoRAConfig(r: 4, alpha: 8, targetModules: ["querry"]), model: config) },
                        contains: ["'querry'", "matches no linear layer", "query"])
        assertLoRAError({ _ = try LoRAPlan(config: LoRAConfig(r: 0, alpha: 8), model: config) }, contains: ["r = 0", "positive"])
        assertLoRAError({ _ = try LoRAPlan(config: LoRAConfig(r: -2, alpha: 8), model: config) }, contains: ["r = -2"])
        // "dense" also matches the pooler, which LoRA does not adapt here
        assertLoRAError({ _ = try LoRAPlan(config: LoRAConfig(r: 4, alpha: 8, targetModules: ["dense"]), model: config) },
                        contains: ["bert.pooler.dense"])
        assertLoRAError({ _ = try LoRAPlan(config: LoRAConfig(r: 4, alpha: 8, modulesToSave: ["LayerNorm"]), model: config) },
                        contains: ["modules_to_save 'LayerNorm'"])
        // a DistilBERT name on BERT matches nothing
        assertLoRAError({ _ = try LoRAPlan(config: LoRAConfig(r: 4, alpha: 8, targetModules: ["q_lin"]), model: config) },
                        contains: ["'q_lin'"])
        // "output.dense" is a suffix of both attention.output.dense and output.dense, as in peft
        let plan = try LoRAPlan(config: LoRAConfig(r: 4, alpha: 8, targetModules: ["output.dense"]), model: config)
        XCTAssertEqual(plan.targets.map(\.module), ["bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.output.dense",
                                                    "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.1.output.dense"])
    }

    /// adapter-init/ (hidden 16) on a BERT of hidden 32: the first mismatching tensor is named with both shapes.
    func testAdapterOfAnotherBase() throws {
        let dir = try Fixtures.dir("bert-tiny-cls")
        var raw = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        raw["hidden_size"] = 32
        let config = try ModelConfig(json: raw, path: "hidden-32")
        let model = EncoderClassifier(config: config, parameters: ParameterStore(layout: EncoderClassifier.makeLayout(config: config)),
                                      maxBatch: 1, maxSeq: 8)
        let adapter = try Fixtures.dir("bert-tiny-lora").appendingPathComponent("adapter-init")
        assertLoRAError({ try PEFTAdapter.load(adapter, into: model) },
                        contains: ["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight", "[4, 16]", "[4, 32]", "--model"])
        XCTAssertNil(model.adapter, "a failed load must not attach anything")
    }

    /// A config naming fewer targets than the file holds: the stray tensors are an error, not silently dropped.
    func testStrayTensorAndMissingFiles() throws {
        let (config, store, _) = try Fixtures.load("bert-tiny-cls")
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 1, maxSeq: 8)
        let src = try Fixtures.dir("bert-tiny-lora").appendingPathComponent("adapter-init")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("lora-stray-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: src.appendingPathComponent(PEFTAdapter.weightsFileName),
                                         to: tmp.appendingPathComponent(PEFTAdapter.weightsFileName))
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent(PEFTAdapter.configFileName))) as! [String: Any]
        j["target_modules"] = ["query"]
        try JSONSerialization.data(withJSONObject: j).write(to: tmp.appendingPathComponent(PEFTAdapter.configFileName))
        assertLoRAError({ try PEFTAdapter.load(tmp, into: model) }, contains: ["attention.self.value.lora_A.weight"])
        j["target_modules"] = ["query", "value"]; j["use_dora"] = true
        try JSONSerialization.data(withJSONObject: j).write(to: tmp.appendingPathComponent(PEFTAdapter.configFileName))
        assertLoRAError({ try PEFTAdapter.load(tmp, into: model) }, contains: ["use_dora"])
        assertLoRAError({ _ = try PEFTAdapter.readConfig(tmp.appendingPathComponent("nope")) }, contains: ["adapter_config.json", "--adapter"])
    }
}

/// The file-level merge: GPT-2 Conv1D (fan_in_fan_out) against peft's merge_and_unload of gpt2-tiny-lora, and BERT
/// agreeing with the model-level merge. Merged weights: atol 5e-6 (as the final parameters; they moved by ≤ 3e-3).
final class LoRAFileMergeTests: XCTestCase {
    func testGPT2Conv1DMerge() throws {
        let base = try SafeTensorsFile(url: try Fixtures.dir("gpt2-tiny-lm").appendingPathComponent("model.safetensors"))
        let dir = try Fixtures.dir("gpt2-tiny-lora")
        let golden = try SafeTensorsFile(url: dir.appendingPathComponent("golden.safetensors"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("golden.json"))) as! [String: Any]
        let merged = try PEFTAdapter.mergeTensors(base: base, adapterDir: dir.appendingPathComponent("adapter-step6"))
        XCTAssertEqual(merged.map(\.name), base.tensors.map(\.name), "every base tensor is written, in order")
        let names = json["merged_tensor_names"] as! [String]
        var checked = 0
        for t in merged {
            guard case .f32Array(let v) = t.payload else { XCTFail("\(t.name) not float32"); continue }
            if names.contains(t.name) {
                assertClose(v, try golden.floats("merged/\(t.name)"), atol: 5e-6, "merged/\(t.name)"); checked += 1
            } else {
                XCTAssertEqual(v, try base.floats(t.name), "merge changed \(t.name)")
            }
        }
        XCTAssertEqual(checked, names.count)
        // the adapter really moves c_attn.weight (so the comparison above is not base vs base)
        let w = "transformer.h.0.attn.c_attn.weight"
        let moved = zip(try golden.floats("merged/\(w)"), try base.floats(w)).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(moved, 1e-3)
        // a Conv1D adapter on BERT is refused with the reason
        let (config, store, _) = try Fixtures.load("bert-tiny-cls")
        let model = EncoderClassifier(config: config, parameters: store, maxBatch: 1, maxSeq: 8)
        do { try PEFTAdapter.load(dir.appendingPathComponent("adapter-init"), into: model); XCTFail("GPT-2 adapter loaded on BERT") }
        catch let e as LoRAError { XCTAssertTrue(e.message.contains("fan_in_fan_out"), e.message) }
    }

    func testBertFileMergeEqualsModelMerge() throws {
        let d = try Fixtures.dir("bert-tiny-cls")
        let base = try SafeTensorsFile(url: d.appendingPathComponent("model.safetensors"))
        let lora = try Fixtures.dir("bert-tiny-lora")
        let golden = try SafeTensorsFile(url: lora.appendingPathComponent("golden.safetensors"))
        let merged = try PEFTAdapter.mergeTensors(base: base, adapterDir: lora.appendingPathComponent("adapter-step6"))
        for t in merged where golden.contains("merged/\(t.name)") {
            guard case .f32Array(let v) = t.payload else { XCTFail("\(t.name) not float32"); continue }
            assertClose(v, try golden.floats("merged/\(t.name)"), atol: 5e-6, "file merge \(t.name)")
        }
        XCTAssertEqual(merged.filter { golden.contains("merged/\($0.name)") }.count, 10)
    }
}
