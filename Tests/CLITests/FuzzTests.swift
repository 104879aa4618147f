// Seeded fuzzing of what a user hands the binary (issue 15, acceptance): mutated config.json files (fields dropped,
// wrong types, absurd sizes), safetensors headers, tokenizer files, JSONL/CSV lines and YAML configs, fed to
// `inspect`, `predict` and `train --max-steps 1` as subprocesses. No run may end by a signal or print a Swift trace,
// and every failing run prints exactly one error line. A failing case prints its seed index, command and files.
// The models are generated here, tiny (vocabulary 64 / 257, hidden 8, one layer), so that 300+ runs take seconds;
// their weights are random: this checks input handling, not numerics.
import Foundation
import XCTest
import SplitMix

/// The fuzzer's choices: SplitMix64 from a seed, picked by modulo (the recorded seeds' inputs depend on it).
struct FuzzRNG {
    var g: SplitMix64
    init(state: UInt64) { g = SplitMix64(state: state) }
    mutating func next() -> UInt64 { g.next() }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
}

/// One subprocess outcome, with how it ended (CLI.run's result).
typealias FuzzOutcome = RunResult

final class FuzzTests: XCTestCase {
    var root: URL!
    var bert: URL!, gpt2: URL!

    override func setUpWithError() throws {
        root = try CLI.tempDir("fuzz")
        bert = root.appendingPathComponent("bert")
        gpt2 = root.appendingPathComponent("gpt2")
        try Self.writeTinyBert(bert)
        try Self.writeTinyGPT2(gpt2)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    // MARK: tiny models

    static func safetensors(_ tensors: [(String, [Int])], seed: UInt64) -> Data {
        var rng = FuzzRNG(state: seed)
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        var payload = Data()
        for (name, shape) in tensors {
            let n = shape.reduce(1, *)
            var floats = [Float](repeating: 0, count: n)
            for i in 0..<n { floats[i] = (Float(rng.int(2001)) - 1000) / 20000 }
            if name.contains("LayerNorm.weight") || name.contains("ln_") && name.hasSuffix(".weight") {
                floats = [Float](repeating: 1, count: n)
            }
            let start = payload.count
            floats.withUnsafeBufferPointer { payload.append(Data(buffer: $0)) }
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [start, payload.count]]
        }
        return encodeSafetensors(header: header, payload: payload)
    }

    static func encodeSafetensors(header: [String: Any], payload: Data) -> Data {
        var h = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data()
        while h.count % 8 != 0 { h.append(0x20) }
        var out = Data()
        var n = UInt64(h.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        return out + h + payload
    }

    static let bertVocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "abcdefghijklmnopqrstuvwxyz".map(String.init)
        + ["##s", "##ing", "##ed", "hello", "world", "spam", "free", "call", "now", "win", "the", "a", "to", "you", "is",
           ",", ".", "!", "?", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "##a", "##e", "##o"]

    static func writeTinyBert(_ dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let V = bertVocab.count, C = 8, FF = 16, P = 16
        let config: [String: Any] = [
            "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": V, "hidden_size": C,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": FF, "max_position_embeddings": P,
            "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "id2label": ["0": "neg", "1": "pos"], "label2id": ["neg": 0, "pos": 1],
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: dir.appendingPathComponent("config.json"))
        var t: [(String, [Int])] = [
            ("bert.embeddings.word_embeddings.weight", [V, C]), ("bert.embeddings.position_embeddings.weight", [P, C]),
            ("bert.embeddings.token_type_embeddings.weight", [2, C]),
            ("bert.embeddings.LayerNorm.weight", [C]), ("bert.embeddings.LayerNorm.bias", [C]),
        ]
        let p = "bert.encoder.layer.0."
        for n in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            t += [(p + n + ".weight", [C, C]), (p + n + ".bias", [C])]
        }
        t += [(p + "attention.output.LayerNorm.weight", [C]), (p + "attention.output.LayerNorm.bias", [C]),
              (p + "intermediate.dense.weight", [FF, C]), (p + "intermediate.dense.bias", [FF]),
              (p + "output.dense.weight", [C, FF]), (p + "output.dense.bias", [C]),
              (p + "output.LayerNorm.weight", [C]), (p + "output.LayerNorm.bias", [C]),
              ("bert.pooler.dense.weight", [C, C]), ("bert.pooler.dense.bias", [C]),
              ("classifier.weight", [2, C]), ("classifier.bias", [2])]
        try safetensors(t, seed: 1).write(to: dir.appendingPathComponent("model.safetensors"))
        try (bertVocab.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        try #"{"do_lower_case": true, "model_max_length": 16}"#.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
    }

    /// GPT-2's byte → printable character table (bytes_to_unicode).
    static func byteChars() -> [String] {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var out = [String](repeating: "", count: 256)
        for (b, c) in zip(bs, cs) { out[b] = String(Character(Unicode.Scalar(UInt32(c))!)) }
        return out
    }

    static func writeTinyGPT2(_ dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let chars = byteChars()
        var vocab: [String: Int] = [:]
        for (i, c) in chars.enumerated() { vocab[c] = i }
        vocab["he"] = 256; vocab["<|endoftext|>"] = 257
        let V = 258, C = 8, FF = 32, P = 24
        let config: [String: Any] = [
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_embd": C, "n_layer": 1,
            "n_head": 2, "n_positions": P, "n_inner": FF, "activation_function": "gelu_new", "bos_token_id": 257,
            "eos_token_id": 257, "layer_norm_epsilon": 1e-5,
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: dir.appendingPathComponent("config.json"))
        try JSONSerialization.data(withJSONObject: vocab, options: [.sortedKeys]).write(to: dir.appendingPathComponent("vocab.json"))
        try "#version: 0.2\nh e\n".write(to: dir.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        var t: [(String, [Int])] = [("transformer.wte.weight", [V, C]), ("transformer.wpe.weight", [P, C])]
        let p = "transformer.h.0."
        t += [(p + "ln_1.weight", [C]), (p + "ln_1.bias", [C]), (p + "attn.c_attn.weight", [C, 3 * C]), (p + "attn.c_attn.bias", [3 * C]),
              (p + "attn.c_proj.weight", [C, C]), (p + "attn.c_proj.bias", [C]), (p + "ln_2.weight", [C]), (p + "ln_2.bias", [C]),
              (p + "mlp.c_fc.weight", [C, FF]), (p + "mlp.c_fc.bias", [FF]), (p + "mlp.c_proj.weight", [FF, C]), (p + "mlp.c_proj.bias", [C]),
              ("transformer.ln_f.weight", [C]), ("transformer.ln_f.bias", [C])]
        try safetensors(t, seed: 2).write(to: dir.appendingPathComponent("model.safetensors"))
    }

    // MARK: mutations

    /// Values that are the wrong type or an absurd size for any field.
    static var badValues: [Any] { ["x", "", [Any](), [1, 2], NSNull(), -1, 0, 1e12, Int64(1) << 62, 1.5, true, [String: Any](),
                                   1e308, -1e308, Int64.max, Int64.min, 65536, ["0": 3], "12"] }

    func mutateJSON(_ data: Data, _ rng: inout FuzzRNG) -> Data {
        guard var obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], !obj.isEmpty else { return data }
        for _ in 0..<(1 + rng.int(2)) {
            let key = rng.pick(obj.keys.sorted())
            switch rng.int(4) {
            case 0: obj.removeValue(forKey: key)
            case 1:
                // Nested: mutate inside a dictionary value (id2label, model, …) when there is one.
                if var inner = obj[key] as? [String: Any], !inner.isEmpty {
                    let k = rng.pick(inner.keys.sorted())
                    inner[k] = rng.pick(Self.badValues)
                    obj[key] = inner
                } else { obj[key] = rng.pick(Self.badValues) }
            default: obj[key] = rng.pick(Self.badValues)
            }
        }
        return (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? data
    }

    func mutateBytes(_ data: Data, _ rng: inout FuzzRNG) -> Data {
        var d = data
        switch rng.int(6) {
        case 0: return d.prefix(rng.int(d.count + 1))
        case 1: return Data()
        case 2:
            for _ in 0..<(1 + rng.int(8)) where !d.isEmpty { d[rng.int(d.count)] = UInt8(rng.int(256)) }
            return d
        case 3: return Data((0..<(1 + rng.int(64))).map { _ in UInt8(rng.int(256)) })
        case 4: return Data([0xEF, 0xBB, 0xBF]) + d
        default: return d + Data([0xFF, 0xFE, 0x00, 0x0A])
        }
    }

    /// A safetensors file with its header changed: length prefix, JSON, dtype, shape or offsets of one tensor.
    func mutateSafetensors(_ data: Data, _ rng: inout FuzzRNG) -> Data {
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        guard var header = (try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n)))) as? [String: Any] else { return data }
        let payload = data.subdata(in: (8 + n)..<data.count)
        let names = header.keys.filter { $0 != "__metadata__" }.sorted()
        let name = rng.pick(names)
        var t = header[name] as! [String: Any]
        switch rng.int(9) {
        case 0:
            var d = data
            let v = [UInt64(0), UInt64(1), UInt64.max, UInt64(data.count), UInt64(n + 1), UInt64(1) << 40][rng.int(6)]
            withUnsafeBytes(of: v.littleEndian) { d.replaceSubrange(0..<8, with: $0) }
            return d
        case 1:
            var d = data
            for _ in 0..<(1 + rng.int(4)) { d[8 + rng.int(n)] = UInt8(rng.int(256)) }
            return d
        case 2: t["dtype"] = rng.pick(["F16", "BF16", "I64", "F64", "U8", "XX", 3, NSNull()] as [Any])
        case 3:
            let shape = t["shape"] as! [Int]
            t["shape"] = rng.pick([[], [-1], shape + [1], [Int(1) << 40, Int(1) << 40], [0], shape.reversed(), ["a"], [shape.first ?? 1, 1 << 62]] as [Any])
        case 4:
            let o = t["data_offsets"] as! [Int]
            t["data_offsets"] = rng.pick([[o[1], o[0]], [o[0], payload.count + 4], [-4, o[1]], [0], [Int.max - 1, Int.max], ["0", "4"], [o[0], o[0] + 1]] as [Any])
        case 5: header.removeValue(forKey: name); return Self.encodeSafetensors(header: header, payload: payload)
        case 6: header["__metadata__"] = rng.pick([3, ["format": 4], "x"] as [Any]); return Self.encodeSafetensors(header: header, payload: payload)
        case 7: return data.prefix(8 + n + rng.int(payload.count))
        default: t = ["dtype": "F32"]
        }
        header[name] = t
        return Self.encodeSafetensors(header: header, payload: payload)
    }

    static let goodLines = [#"{"text": "hello world", "label": "pos"}"#, #"{"text": "win free spam now!", "label": "neg"}"#,
                            #"{"text": "call you", "label": "pos"}"#, #"{"text": "the a is", "label": "neg"}"#]

    func mutateLines(_ rng: inout FuzzRNG) -> Data {
        var lines = Self.goodLines.map { Data($0.utf8) }
        let bad: [Data] = [
            Data("not json".utf8), Data(#"{"text": 5, "label": "pos"}"#.utf8), Data(#"{"text": null, "label": "pos"}"#.utf8),
            Data(#"{"label": "pos"}"#.utf8), Data(#"{"text": "hi"}"#.utf8), Data(#"{"text": "hi", "label": 7}"#.utf8),
            Data(#"{"text": "hi", "label": -1}"#.utf8), Data(#"{"text": "hi", "label": 1e300}"#.utf8),
            Data(#"{"text": "hi", "label": 2.5}"#.utf8), Data(#"{"text": "hi", "label": [1]}"#.utf8),
            Data(#"{"text": "hi", "label": {}}"#.utf8), Data(#"{"text": ["a"], "label": "neg"}"#.utf8), Data("[]".utf8),
            Data([0xFF, 0xFE, 0x7B]), Data(#"{"text": "\u0000\u0001", "label": "neg"}"#.utf8),
            Data(("{\"text\": \"" + String(repeating: "spam ", count: 4000) + "\", \"label\": \"neg\"}").utf8),
            Data((String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)).utf8),
            Data(#"{"text": "hi", "label": "pos", "text_pair": 3}"#.utf8), Data("   ".utf8), Data(),
            Data(#"{"text": "hi", "label": ""}"#.utf8), Data(#"{"text": "", "label": "neg"}"#.utf8),
            Data(#"{"prompt": "hi", "response": 3}"#.utf8), Data(#"{"prompt": "", "response": ""}"#.utf8),
        ]
        for _ in 0..<(1 + rng.int(2)) { lines.insert(rng.pick(bad), at: rng.int(lines.count + 1)) }
        if rng.int(4) == 0 { lines = [rng.pick(bad)] }
        return lines.reduce(Data()) { $0 + $1 + Data("\n".utf8) }
    }

    func mutateCSV(_ rng: inout FuzzRNG) -> Data {
        var rows = ["text,label", "hello world,pos", "\"win, free\",neg", "call you,pos"]
        let bad = ["\"unclosed,pos", "a,b,c,d", ",", "only", "text", "\u{FEFF}text,label", "x,\"y\"z", "\"\"\"\",neg",
                   "label,text", "text;label", String(repeating: "a", count: 20000) + ",neg", "hi,"]
        switch rng.int(3) {
        case 0: rows.insert(rng.pick(bad), at: 1 + rng.int(rows.count))
        case 1: rows[0] = rng.pick(bad)
        default: rows = [rng.pick(bad)]
        }
        return Data((rows.joined(separator: "\n") + "\n").utf8)
    }

    func mutateYAML(_ rng: inout FuzzRNG, model: URL, train: URL, out: URL) -> Data {
        var entries: [(String, String)] = [("model", model.path), ("train-file", train.path), ("output-dir", out.path),
                                           ("max-steps", "1"), ("batch-size", "2"), ("learning-rate", "1e-4"), ("max-length", "16")]
        let badValues = ["abc", "[1, 2]", "{a: 1}", "-1", "1e30", "null", "~", "true", "0x7fffffffffffffff", "99999999999999999999",
                         "\"\"", "*undefined", "!!binary AAAA", "[", "'", "-.inf", ".nan"]
        switch rng.int(6) {
        case 0: entries[rng.int(entries.count)].1 = rng.pick(badValues)
        case 1: entries.append((rng.pick(["no-such-flag", "lora-r", "seed", "warmup-ratio", "lr", "model", ""]), rng.pick(badValues)))
        case 2: entries.remove(at: rng.int(entries.count))
        case 3: return Data(rng.pick(["- a\n- b\n", "", "\t: x\n", "key: [unclosed\n", "a: b: c\n", "%YAML 9.9\n---\n",
                                      String(repeating: "[", count: 3000), "model: &a x\nseed: *b\n", "? [a]\n: 1\n"]).utf8)
        case 4: entries[rng.int(entries.count)].0 = rng.pick(["max_steps", "MAX-STEPS", "--seed", "max-steps "])
        default: entries.append(("max-steps", rng.pick(badValues)))
        }
        return Data((entries.map { "\($0.0): \($0.1)" }.joined(separator: "\n") + "\n").utf8)
    }

    // MARK: running

    /// A folder whose files link to `base`'s, except `name`, which holds `data`.
    func caseFolder(_ base: URL, _ tag: String, replacing name: String, with data: Data) throws -> URL {
        let dir = root.appendingPathComponent(tag)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for f in try FileManager.default.contentsOfDirectory(atPath: base.path) where f != name {
            try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent(f), withDestinationURL: base.appendingPathComponent(f))
        }
        try data.write(to: dir.appendingPathComponent(name))
        return dir
    }

    func runBinary(_ args: [String]) -> FuzzOutcome { Self.runBinary(args, in: root) }

    static func runBinary(_ args: [String], in root: URL) -> FuzzOutcome {
        do { return try CLI.run(args, timeout: 60, in: root) } catch {
            return FuzzOutcome(status: -1, stdout: "", stderr: "could not run: \(error)")
        }
    }

    /// Problems with one outcome (empty: fine).
    func problems(_ o: FuzzOutcome) -> [String] {
        var out: [String] = []
        if o.signaled || o.status >= 128 { out.append("ended by a signal (status \(o.status), signaled \(o.signaled))") }
        for bad in ["Fatal error", "Stack dump", "Illegal instruction", "Backtrace", "Current stack trace", "precondition",
                    "Segmentation fault", "#0 0x"] where o.stderr.contains(bad) {
            out.append("trace: '\(bad)'")
        }
        if o.status != 0 {
            let errors = o.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") || $0.hasPrefix("Error:") }
            if errors.count != 1 { out.append("\(errors.count) error lines") }
        }
        return out
    }

    func testSeededFuzzOfUserInputs() throws {
        _ = try CLI.binary()
        var rng = FuzzRNG(state: 20261207)
        let input = root.appendingPathComponent("in.jsonl")
        try Data((Self.goodLines.joined(separator: "\n") + "\n").utf8).write(to: input)
        let lmInput = root.appendingPathComponent("lm.jsonl")
        try Data("{\"text\": \"hello there, the end\"}\n{\"text\": \"he said hello\"}\n".utf8).write(to: lmInput)
        var cases: [(String, [String])] = []
        func out(_ i: Int) -> String { root.appendingPathComponent("out-\(i)").path }
        let bertFiles = ["config.json": try Data(contentsOf: bert.appendingPathComponent("config.json")),
                         "model.safetensors": try Data(contentsOf: bert.appendingPathComponent("model.safetensors")),
                         "vocab.txt": try Data(contentsOf: bert.appendingPathComponent("vocab.txt")),
                         "tokenizer_config.json": try Data(contentsOf: bert.appendingPathComponent("tokenizer_config.json"))]
        let gptFiles = ["config.json": try Data(contentsOf: gpt2.appendingPathComponent("config.json")),
                        "model.safetensors": try Data(contentsOf: gpt2.appendingPathComponent("model.safetensors")),
                        "vocab.json": try Data(contentsOf: gpt2.appendingPathComponent("vocab.json")),
                        "merges.txt": try Data(contentsOf: gpt2.appendingPathComponent("merges.txt"))]
        // The unmutated models must work, or every case below would fail for the wrong reason.
        for args in [["predict", "--model", bert.path, "--input", input.path], ["inspect", gpt2.path],
                     ["train", "--model", bert.path, "--train-file", input.path, "--output-dir", out(-1), "--max-steps", "1", "--batch-size", "2", "--max-length", "16"],
                     ["train", "--model", gpt2.path, "--train-file", lmInput.path, "--output-dir", out(-2), "--max-steps", "1", "--batch-size", "2"]] {
            let o = runBinary(args)
            XCTAssertEqual(o.status, 0, "\(args.joined(separator: " ")): \(o.stderr)")
        }
        var i = 0
        // config.json: fields dropped, wrong types, absurd sizes (BERT and GPT-2), and unparseable bytes.
        for _ in 0..<40 {
            i += 1
            let gpt = rng.int(3) == 0
            let base = gpt ? gpt2! : bert!
            let src = (gpt ? gptFiles : bertFiles)["config.json"]!
            let data = rng.int(5) == 0 ? mutateBytes(src, &rng) : mutateJSON(src, &rng)
            let dir = try caseFolder(base, "c\(i)", replacing: "config.json", with: data)
            cases.append(("config \(i)", ["inspect", dir.path]))
            cases.append(("config \(i)", gpt ? ["train", "--model", dir.path, "--train-file", lmInput.path, "--output-dir", out(i), "--max-steps", "1", "--batch-size", "2"]
                                           : ["predict", "--model", dir.path, "--input", input.path]))
        }
        // safetensors headers.
        for _ in 0..<40 {
            i += 1
            let gpt = rng.int(3) == 0
            let base = gpt ? gpt2! : bert!
            let data = mutateSafetensors((gpt ? gptFiles : bertFiles)["model.safetensors"]!, &rng)
            let dir = try caseFolder(base, "s\(i)", replacing: "model.safetensors", with: data)
            cases.append(("safetensors \(i)", ["inspect", dir.path]))
            cases.append(("safetensors \(i)", gpt ? ["train", "--model", dir.path, "--train-file", lmInput.path, "--output-dir", out(i), "--max-steps", "1"]
                                                : ["predict", "--model", dir.path, "--input", input.path]))
        }
        // Tokenizer files: vocab.txt, tokenizer_config.json, a tokenizer.json dropped in, vocab.json, merges.txt.
        for _ in 0..<40 {
            i += 1
            let which = rng.pick(["vocab.txt", "tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt"])
            let gpt = which == "vocab.json" || which == "merges.txt"
            let base = gpt ? gpt2! : bert!
            var data: Data
            if which == "tokenizer.json" {
                data = Data(rng.pick([#"{"model": 3}"#, #"{"model": {"type": "Unigram"}}"#, #"{"model": {"type": "WordPiece", "vocab": {"a": "x"}}}"#,
                                      #"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 99999}, "unk_token": "[UNK]"}}"#,
                                      #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1, 2]}}"#, "[]", "",
                                      #"{"model": {"type": "WordPiece", "vocab": {}}, "added_tokens": [{"id": -5, "content": 3}]}"#,
                                      #"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}, "post_processor": {"type": "TemplateProcessing", "single": 5}}"#,
                                      #"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}, "unk_token": "[UNK]"}, "pre_tokenizer": {"type": "Nope"}}"#]).utf8)
            } else if which == "vocab.txt" && rng.int(2) == 0 {
                var v = Self.bertVocab
                v.remove(at: rng.int(5))
                if rng.int(2) == 0 { v.append(String(repeating: "z", count: 5000)) }
                data = Data(v.joined(separator: "\n").utf8)
            } else {
                let src = (gpt ? gptFiles : bertFiles)[which]!
                data = which.hasSuffix(".json") && rng.int(2) == 0 ? mutateJSON(src, &rng) : mutateBytes(src, &rng)
                if which == "merges.txt" && rng.int(2) == 0 { data = Data(rng.pick(["#version: 0.2\nh\n", "h e x\n", "zz yy\n", "\u{0120} \u{0120}\n", "#version: 0.2\n\n\n"]).utf8) }
            }
            let dir = try caseFolder(base, "t\(i)", replacing: which, with: data)
            cases.append(("tokenizer \(which) \(i)", gpt ? ["train", "--model", dir.path, "--train-file", lmInput.path, "--output-dir", out(i), "--max-steps", "1"]
                                                      : ["predict", "--model", dir.path, "--input", input.path]))
        }
        // JSONL and CSV lines, to train (classifier and LM) and predict.
        for _ in 0..<70 {
            i += 1
            let csv = rng.int(4) == 0
            let file = root.appendingPathComponent("d\(i).\(csv ? "csv" : "jsonl")")
            try (csv ? mutateCSV(&rng) : mutateLines(&rng)).write(to: file)
            switch rng.int(3) {
            case 0: cases.append(("data \(i)", ["predict", "--model", bert.path, "--input", file.path]))
            case 1 where !csv:
                cases.append(("data \(i)", ["train", "--model", gpt2.path, "--train-file", file.path, "--output-dir", out(i), "--max-steps", "1", "--batch-size", "2"]))
            default:
                cases.append(("data \(i)", ["train", "--model", bert.path, "--train-file", file.path, "--output-dir", out(i), "--max-steps", "1", "--batch-size", "2", "--max-length", "16"]))
            }
        }
        // YAML configs.
        for _ in 0..<40 {
            i += 1
            let file = root.appendingPathComponent("y\(i).yaml")
            try mutateYAML(&rng, model: bert, train: input, out: URL(fileURLWithPath: out(i))).write(to: file)
            cases.append(("yaml \(i)", ["train", "--config", file.path]))
        }
        XCTAssertGreaterThanOrEqual(cases.count, 300)

        // Four subprocesses at a time (they mostly wait on start-up and I/O).
        let results = ResultBox(count: cases.count)
        let gate = DispatchSemaphore(value: 4)
        let group = DispatchGroup()
        let cwd = root!
        for (k, c) in cases.enumerated() {
            gate.wait()
            group.enter()
            let args = c.1
            DispatchQueue.global().async {
                let o = Self.runBinary(args, in: cwd)
                results.set(k, o)
                gate.signal()
                group.leave()
            }
        }
        group.wait()
        var failures = 0, failedRuns = 0
        for (k, c) in cases.enumerated() {
            let o = results.get(k)
            if o.status != 0 { failedRuns += 1 }
            let p = problems(o)
            guard !p.isEmpty else { continue }
            failures += 1
            if failures <= 25 {
                // The mutated input itself, when it is a data or YAML file (folders: see the case's config/weights).
                let shown = c.1.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".csv") || ($0.hasSuffix(".jsonl") && $0.contains("/d")) }
                    .compactMap { try? Data(contentsOf: URL(fileURLWithPath: $0)).prefix(400) }
                    .map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\n---\n")
                XCTFail("\(c.0): disttrain \(c.1.joined(separator: " ")): \(p.joined(separator: "; "))\ninput: \(shown)\n\(o.stderr.prefix(1500))")
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(cases.count) runs misbehaved")
        // The mutations must mostly be rejected, or the fuzzer is not exercising the error paths.
        XCTAssertGreaterThan(failedRuns, cases.count / 2, "only \(failedRuns) of \(cases.count) mutated inputs were rejected")
    }
}

final class ResultBox: @unchecked Sendable {
    private var items: [FuzzOutcome?]
    private let lock = NSLock()
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ o: FuzzOutcome) { lock.lock(); items[i] = o; lock.unlock() }
    func get(_ i: Int) -> FuzzOutcome { lock.lock(); defer { lock.unlock() }; return items[i]! }
}
