// LMDataDemoTests.swift: an opt-in end-to-end causal-LM fine-tune (skipped unless both variables are set, because it
// reads data outside the repository):
//   DISTTRAIN_LM_DEMO_MODEL=<gpt2 folder with tokenizer> DISTTRAIN_LM_DEMO_DATA=<text JSONL> \
//     swift test --filter LMDataDemoTests
// Packs the text into 32-token blocks, trains 40 AdamW steps (batch 8, peak lr 1e-2 linear, clip 1.0), checks that the loss
// falls, saves in the save_pretrained layout, reloads, checks the reloaded loss is identical, and generates.
import Foundation
import XCTest
import Model
import Tokenizers
@testable import Training

final class LMDataDemoTests: XCTestCase {
    func testFineTuneSaveReloadGenerate() throws {
        let env = ProcessInfo.processInfo.environment
        guard let modelDir = env["DISTTRAIN_LM_DEMO_MODEL"], let dataFile = env["DISTTRAIN_LM_DEMO_DATA"] else {
            throw XCTSkip("set DISTTRAIN_LM_DEMO_MODEL and DISTTRAIN_LM_DEMO_DATA to run the LM fine-tuning demo")
        }
        let dir = URL(fileURLWithPath: modelDir)
        let config = try GPT2Config.load(url: dir.appendingPathComponent("config.json"))
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        _ = try GPT2Layout.load(into: store, from: SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors")), config: config)
        let tok = try loadTokenizer(directory: dir)
        let eos = Int32(config.eosTokenId ?? 50256)
        let ds = try LMData.loadText(URL(fileURLWithPath: dataFile), tokenizer: tok, eosId: eos, mode: .packed(blockSize: 32),
                                     maxLength: config.maxPositions)
        print("LMDEMO data: " + ds.summary(maxLength: config.maxPositions))
        let B = 8, steps = 40
        XCTAssertGreaterThanOrEqual(ds.examples.count, B * steps / 4)
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: B, maxSeq: 32)
        let adam = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01))
        let sched = LRSchedule(kind: .linear, peak: 1e-2, warmupSteps: 4, totalSteps: steps)
        var losses: [Double] = []
        for s in 0..<steps {
            let idx = (0..<B).map { (s * B + $0) % ds.examples.count }
            let (batch, labels) = LMData.batch(idx.map { ds.examples[$0] }, padId: eos, sampleIndices: idx)
            let count = idx.reduce(0) { $0 + ds.examples[$1].targetCount }
            store.zeroGrads()
            let l = model.forward(batch, labels: labels, gradientScale: 1 / Float(count),
                                  dropout: DropoutContext(seed: 1, step: s))
            model.backward()
            GradientClipping.clip(store.grads, maxNorm: 1)
            adam.step(lr: sched.lr(forStep: s))
            losses.append(l.mean)
        }
        print("LMDEMO losses: " + losses.map { String(format: "%.3f", $0) }.joined(separator: " "))
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, first - 0.5, "loss did not fall: \(first) -> \(last)")
        // save, reload, same eval loss, generate
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("lmdemo-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try GPT2Layout.save(store, config: config, classifier: false, to: out)
        let c2 = try GPT2Config.load(url: out.appendingPathComponent("config.json"))
        let s2 = ParameterStore(layout: GPT2Layout.make(config: c2, classifier: false))
        _ = try GPT2Layout.load(into: s2, from: SafeTensorsFile(url: out.appendingPathComponent("model.safetensors")), config: c2)
        let (batch, labels) = LMData.batch(Array(ds.examples.prefix(B)), padId: eos, sampleIndices: Array(0..<B))
        let before = model.forward(batch, labels: labels, gradientScale: nil, dropout: nil)
        let after = GPT2LMHead(config: c2, parameters: s2, maxBatch: B, maxSeq: 32).forward(batch, labels: labels, gradientScale: nil, dropout: nil)
        XCTAssertEqual(before, after, "reloaded checkpoint gives a different loss")
        let gen = GPT2Generator(config: c2, parameters: s2)
        let prompt = try tok.encode("HAMLET\n", pair: nil, addSpecialTokens: true, maxLength: nil).ids
        let ids = try gen.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 16))
        XCTAssertEqual(ids.count, 16)
        print("LMDEMO eval loss \(after.mean); generated: \(tok.decode(ids, skipSpecialTokens: false).debugDescription)")
    }

    /// Prompt→response pairs derived from the same text (a speaker's name line → the line after it): the masked
    /// loss (response + EOS only) falls under the same recipe.
    func testPromptResponseFineTune() throws {
        let env = ProcessInfo.processInfo.environment
        guard let modelDir = env["DISTTRAIN_LM_DEMO_MODEL"], let dataFile = env["DISTTRAIN_LM_DEMO_DATA"] else {
            throw XCTSkip("set DISTTRAIN_LM_DEMO_MODEL and DISTTRAIN_LM_DEMO_DATA to run the LM fine-tuning demo")
        }
        let dir = URL(fileURLWithPath: modelDir)
        let config = try GPT2Config.load(url: dir.appendingPathComponent("config.json"))
        let store = ParameterStore(layout: GPT2Layout.make(config: config, classifier: false))
        _ = try GPT2Layout.load(into: store, from: SafeTensorsFile(url: dir.appendingPathComponent("model.safetensors")), config: config)
        let tok = try loadTokenizer(directory: dir)
        let eos = Int32(config.eosTokenId ?? 50256)
        // derive {"prompt": "<SPEAKER>\n", "response": "<next line>"} rows
        var rows: [String] = []
        for (_, obj) in try LMData.readObjects(URL(fileURLWithPath: dataFile)) {
            let lines = ((obj["text"] as? String) ?? "").split(separator: "\n").map(String.init)
            for i in 0..<max(0, lines.count - 1) where lines[i] == lines[i].uppercased() && lines[i].count > 2
                && lines[i + 1] != lines[i + 1].uppercased() {
                let d = try JSONSerialization.data(withJSONObject: ["prompt": lines[i] + "\n", "response": lines[i + 1]])
                rows.append(String(decoding: d, as: UTF8.self))
            }
        }
        let tmp = try TempFolder()
        let f = try tmp.write("pr.jsonl", rows.joined(separator: "\n") + "\n")
        let ds = try LMData.loadPromptResponse(f, tokenizer: tok, eosId: eos, maxLength: config.maxPositions)
        print("LMDEMO prompt→response: \(rows.count) rows; " + ds.summary(maxLength: config.maxPositions))
        let B = 8, steps = 40
        let maxT = ds.examples.map(\.inputIds.count).max()!
        let model = GPT2LMHead(config: config, parameters: store, maxBatch: B, maxSeq: maxT)
        let adam = AdamW(store: store, config: AdamWConfig(weightDecay: 0.01))
        let sched = LRSchedule(kind: .linear, peak: 1e-2, warmupSteps: 4, totalSteps: steps)
        var losses: [Double] = []
        for s in 0..<steps {
            let idx = (0..<B).map { (s * B + $0) % ds.examples.count }
            let (batch, labels) = LMData.batch(idx.map { ds.examples[$0] }, padId: eos, sampleIndices: idx)
            let count = idx.reduce(0) { $0 + ds.examples[$1].targetCount }
            store.zeroGrads()
            let l = model.forward(batch, labels: labels, gradientScale: 1 / Float(count), dropout: DropoutContext(seed: 1, step: s))
            XCTAssertEqual(l.count, count, "only response tokens and EOS count")
            model.backward()
            GradientClipping.clip(store.grads, maxNorm: 1)
            adam.step(lr: sched.lr(forStep: s))
            losses.append(l.mean)
        }
        print("LMDEMO prompt→response losses: " + losses.map { String(format: "%.3f", $0) }.joined(separator: " "))
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, first - 0.5, "loss did not fall: \(first) -> \(last)")
    }
}
