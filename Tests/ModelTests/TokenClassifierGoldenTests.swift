// The token-classification head (EncoderClassifier with `head: .token`, TokenClassifierHead.swift) against PyTorch:
// BertForTokenClassification / DistilBertForTokenClassification built by scripts/goldens/ner_goldens.py from the tiny
// cls fixtures' encoders plus a seeded head (Fixtures/ner-golden/<kind>-tok.*). Checked: the parameter layout is
// exactly the model's named_parameters (no pooler / pre_classifier), logits of every token, the HF loss with ignored
// (-100) positions, every gradient, and the 6-step AdamW trajectory of the HF Trainer.
// Tolerances as the sequence-classifier goldens (GoldenModelTests / GoldenTrajectoryTests): logits atol 1e-5, grads
// atol 2e-6 + rtol 1e-4, losses and norms rtol 2e-6, final parameters atol 5e-6 (fp32 vs fp32, different summation order).
import Foundation
import XCTest
@testable import Model

final class TokenClassifierGoldenTests: XCTestCase {
    struct Golden {
        let config: ModelConfig
        let store: ParameterStore
        let file: SafeTensorsFile
        let json: [String: Any]
        let rows: [Int]
        let wordName: String
    }

    /// The token model: the cls fixture's encoder tensors by name, the golden's head.
    func load(_ kind: String) throws -> Golden {
        let base = try Fixtures.dir("\(kind)-tiny-cls"), dir = try Fixtures.dir("ner-golden")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("\(kind)-tok.json"))) as! [String: Any]
        var config = try ModelConfig.load(url: base.appendingPathComponent("config.json"))
        config.head = .token
        config.id2label = json["labels"] as! [String]
        let file = try SafeTensorsFile(url: dir.appendingPathComponent("\(kind)-tok.safetensors"))
        let weights = try SafeTensorsFile(url: base.appendingPathComponent("model.safetensors"))
        let store = ParameterStore(layout: EncoderClassifier.makeLayout(config: config))
        for e in store.entries {
            if e.name.hasPrefix("classifier.") { try file.copyFloats("head/" + e.name, into: store.value(e.name)) }
            else { try weights.copyFloats(e.name, into: store.value(e.name)) }
        }
        let wordName = kind == "bert" ? "bert.embeddings.word_embeddings.weight" : "distilbert.embeddings.word_embeddings.weight"
        return Golden(config: config, store: store, file: file, json: json, rows: try file.int64s("rows").map { Int($0) }, wordName: wordName)
    }

    func batch(_ g: Golden, _ k: Int) throws -> (TokenBatch, [Int32]) {
        let ids = try g.file.int64s("batch\(k)/input_ids").map { Int32($0) }
        let mask = try g.file.int64s("batch\(k)/attention_mask").map { Int32($0) }
        let labels = try g.file.int64s("batch\(k)/labels").map { Int32($0) }
        let shape = g.file.info("batch\(k)/input_ids")!.shape
        return (TokenBatch(batchSize: shape[0], seqLen: shape[1], inputIds: ids, attentionMask: mask, tokenTypeIds: nil,
                           sampleIndices: Array(0..<shape[0])), labels)
    }

    /// Loss (mean over labelled tokens) with dLogits, as the task computes it.
    func loss(_ logits: UnsafeBufferPointer<Float>, _ labels: [Int32], classes: Int) -> (Double, [Float]) {
        let count = labels.filter { $0 != -100 }.count
        var d = [Float](repeating: 0, count: labels.count * classes)
        let sum = d.withUnsafeMutableBufferPointer {
            Loss.crossEntropy(logits: logits, labels: labels, batch: labels.count, classes: classes, scale: 1 / Float(count), dLogits: $0)
        }
        return (sum / Double(count), d)
    }

    /// Our gradient of `name`, restricted to the golden's word-embedding rows for the table.
    func rowsOf(_ g: Golden, _ name: String, _ values: [Float]) -> [Float] {
        guard name == g.wordName else { return values }
        let C = g.config.hidden
        return g.rows.flatMap { values[($0 * C)..<($0 * C + C)] }
    }

    func runForwardBackward(_ kind: String) throws {
        let g = try load(kind)
        // The layout is exactly the PyTorch model's parameters (what save_pretrained writes and from_pretrained reads).
        let torchNames = Set(g.file.names.filter { $0.hasPrefix("grad/") }.map { String($0.dropFirst(5)) })
        XCTAssertEqual(Set(g.store.entries.map(\.name)), torchNames, "\(kind): token-classifier layout vs named_parameters")
        let (b, labels) = try batch(g, 0)
        let model = EncoderClassifier(config: g.config, parameters: g.store, maxBatch: 4, maxSeq: 40)
        let logits = model.forward(b, dropout: nil)
        XCTAssertEqual(logits.count, b.batchSize * b.seqLen * g.config.numLabels)
        assertClose(Array(logits), try g.file.floats("batch0/logits"), atol: 1e-5, "\(kind) token logits")
        let (l, d) = loss(logits, labels, classes: g.config.numLabels)
        let ref = (g.json["loss0"] as! NSNumber).doubleValue
        XCTAssertEqual(l, ref, accuracy: 2e-6 * ref, "\(kind) loss with ignored positions")
        g.store.zeroGrads()
        d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
        for e in g.store.entries {
            assertClose(rowsOf(g, e.name, Array(g.store.grad(e.name))), try g.file.floats("grad/" + e.name), atol: 2e-6, rtol: 1e-4, "\(kind) grad \(e.name)")
        }
        // Rows of the word-embedding table no token used get no gradient.
        let C = g.config.hidden, used = Set(g.rows)
        let wg = g.store.grad(g.wordName)
        let stray = (0..<(wg.count / C)).first { r in !used.contains(r) && (0..<C).contains { wg[r * C + $0] != 0 } }
        XCTAssertNil(stray, "\(kind): gradient in unused word-embedding row")
    }

    func runTrajectory(_ kind: String) throws {
        let g = try load(kind)
        let log = g.json["train_log"] as! [[String: Any]]
        let decay = Set(g.json["decay"] as! [String])
        for e in g.store.entries { XCTAssertEqual(e.decay, decay.contains(e.name), "\(kind): decay flag of \(e.name)") }
        let initialWords = Array(g.store.value(g.wordName))
        let model = EncoderClassifier(config: g.config, parameters: g.store, maxBatch: 4, maxSeq: 40)
        let opt = AdamW(store: g.store, config: AdamWConfig(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01))
        let schedule = LRSchedule(kind: .linear, peak: 1e-3, warmupSteps: 2, totalSteps: 6)
        var decayFactor = 1.0
        for k in 0..<6 {
            let (b, labels) = try batch(g, log[k]["batch"] as! Int)
            g.store.zeroGrads()
            let (l, d) = loss(model.forward(b, dropout: nil), labels, classes: g.config.numLabels)
            d.withUnsafeBufferPointer { model.backward(dLogits: $0) }
            let refLoss = (log[k]["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(l, refLoss, accuracy: 2e-6 * refLoss, "\(kind) step \(k + 1) loss")
            let norm = GradientClipping.clip(g.store.grads, maxNorm: 1.0)
            let refNorm = (log[k]["grad_norm_preclip_exact"] as! NSNumber).doubleValue
            XCTAssertEqual(norm, refNorm, accuracy: 2e-6 * refNorm, "\(kind) step \(k + 1) pre-clip norm")
            let lr = schedule.lr(forStep: k)
            XCTAssertEqual(lr, (log[k]["lr"] as! NSNumber).doubleValue, accuracy: 1e-12)
            opt.step(lr: lr)
            decayFactor *= 1 - lr * 0.01
        }
        for e in g.store.entries {
            assertClose(rowsOf(g, e.name, Array(g.store.value(e.name))), try g.file.floats("final/" + e.name), atol: 5e-6, "\(kind) final \(e.name)")
        }
        // Rows no batch used see zero gradients: AdamW only decays them (PyTorch: p ← p·(1 − lr·wd) each step).
        let C = g.config.hidden, used = Set(g.rows), w = g.store.value(g.wordName)
        for r in stride(from: 0, to: w.count / C, by: 97) where !used.contains(r) {
            for c in 0..<C { XCTAssertEqual(Double(w[r * C + c]), Double(initialWords[r * C + c]) * decayFactor, accuracy: 1e-7) }
        }
    }

    func testBertTokenClassifierMatchesPyTorch() throws { try runForwardBackward("bert") }
    func testDistilBertTokenClassifierMatchesPyTorch() throws { try runForwardBackward("distilbert") }
    func testBertTokenClassifierTrajectory() throws { try runTrajectory("bert") }
    func testDistilBertTokenClassifierTrajectory() throws { try runTrajectory("distilbert") }
}
