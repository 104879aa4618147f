// TokenClassificationTask: token classification (named-entity recognition, POS tagging) with a BERT-family encoder
// and transformers' …ForTokenClassification head (TokenClassifierHead.swift in Model): word-tagged sentences
// (TokenClassificationData.swift) tokenized once into windows, cross-entropy over the labelled sub-tokens normalised
// by the GLOBAL number of labelled tokens of the step (so 1 and N ranks agree), evaluation with seqeval's entity
// metrics (Seqeval.swift; each rank evaluates whole sentences, counts all-reduced), and saving a folder that
// AutoModelForTokenClassification loads (or a PEFT adapter, task_type TOKEN_CLS, under LoRA).
// Deliberately not here: the loop (Trainer), file parsing (TokenClassificationData), the layers (Model).
import Dist
import Foundation
import Model
import Tokenizers

public final class TokenClassificationTask: FolderTrainingTask, EncoderHeadTask, @unchecked Sendable {
    let model: EncoderClassifier
    let bundle: ClassifierBundle
    let tokenizer: any Tokenizer
    let padId: Int32
    let train: [TokenWindow]
    /// Eval sentences (the unit of evaluation: a rank evaluates all windows of its sentences) and their windows.
    let evalSentences: [TaggedSentence]
    let evalWindows: [[TokenWindow]]
    public let labels: [String]
    let scheme: TagScheme
    /// Entity types the labels can produce (both seqeval parsings), the order of the all-reduced counts.
    let typeNames: [String]
    public let dataFingerprint: String
    public let truncated: Int
    let lora: (plan: LoRAPlan, store: ParameterStore)?
    private var dLogits: [Float]
    private let maxLength: Int
    var maxLengthInForce: Int { maxLength }

    public var store: ParameterStore { lora?.store ?? bundle.store }
    public var trainCount: Int { train.count }
    public var evalCount: Int { evalSentences.count }
    public var trainLengths: [Int] { train.map(\.ids.count) }
    public var configPath: String { bundle.config.path }
    public var initialized: [String] { bundle.report.initialized }

    /// Loads the encoder in `folder` with a token head for the labels and the data of `config` (see the file header).
    public init(folder: ModelFolder, adapterDir: URL?, trainConfig config: TrainConfig, microBatch: Int) throws {
        let fixed = try config.labelsFile.map { try LabelSet.fromFile($0).names }
        var (trainSet, names, fingerprint) = try TokenClassificationData.load(config.trainFile, format: config.tokenDataFormat, labels: fixed)
        var evalSet: [TaggedSentence] = []
        if let evalFile = config.evalFile {
            evalSet = try TokenClassificationData.load(evalFile, format: config.tokenDataFormat, labels: names).sentences
        } else if config.validationSplit > 0 {
            (trainSet, evalSet) = seededHoldOut(trainSet, fraction: config.validationSplit, seed: config.seed)
            fingerprint += "-split\(config.validationSplit)-seed\(config.seed)"
        }
        scheme = config.tagScheme
        if let bad = names.lazy.compactMap({ config.tagScheme.check($0) }).first {
            throw TrainingError("--tag-scheme \(config.tagScheme.rawValue): \(bad); pick the scheme of your tags (or leave --tag-scheme out for seqeval's default mode)", exitCode: 2)
        }
        labels = names
        typeNames = Self.typeNames(names)
        dataFingerprint = fingerprint
        maxLength = config.maxLength
        let maxLength = config.maxLength
        try ModelFolder.checkArena(batch: microBatch, seq: maxLength, architecture: try folder.encoderConfig(for: "token classification"))
        bundle = try ClassifierBundle(folder: folder, head: .token, labels: names, seed: config.seed)
        guard maxLength <= bundle.config.maxPositions else {
            throw TrainingError("--max-length \(maxLength) exceeds the model's max_position_embeddings \(bundle.config.maxPositions); use --max-length \(bundle.config.maxPositions) or less", exitCode: 2)
        }
        model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: microBatch, maxSeq: maxLength)
        if config.matmulPrecision == .bf16 { model.matmulPrecision = .bf16 }
        tokenizer = bundle.tokenizer
        padId = Int32(bundle.config.padTokenId)
        let bToI = config.labelAllTokens ? TokenWindows.bToI(names) : nil
        var cut = 0
        let tr = try Self.windows(trainSet, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, bToI: bToI, cut: &cut)
        train = tr.flatMap { $0 }
        evalSentences = evalSet
        evalWindows = try Self.windows(evalSet, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, bToI: bToI, cut: &cut)
        truncated = cut
        dLogits = [Float](repeating: 0, count: microBatch * maxLength * names.count)
        if var lc = config.lora {
            lc.baseModelNameOrPath = lc.baseModelNameOrPath ?? folder.directory.path
            lc.taskType = "TOKEN_CLS"
            lora = try attachLoRA(lc, to: model, adapterDir: adapterDir, seed: config.seed)
        } else {
            lora = nil
        }
    }

    /// Evaluation only (`disttrain eval`): the trained token classifier in `folder` (with a PEFT adapter run unmerged)
    /// on the tagged `evalFile`, whose tags must be among the model's labels.
    /// (`evalFile` nil: no data, for `predict`.)
    public init(folder: ModelFolder, adapterDir: URL?, evalFile: URL?, format: TokenDataFormat? = nil, scheme: TagScheme = .default,
                maxLength: Int?, batchSize: Int) throws {
        let maxLength = try folder.maxLength(maxLength)
        self.maxLength = maxLength
        bundle = try Self.inferenceBundle(folder: folder, adapterDir: adapterDir)
        labels = bundle.config.id2label
        if let bad = labels.lazy.compactMap({ scheme.check($0) }).first {
            throw TrainingError("--tag-scheme \(scheme.rawValue): \(bad); pick the scheme of the model's tags", exitCode: 2)
        }
        self.scheme = scheme
        typeNames = Self.typeNames(labels)
        let names = labels
        let sentences = try evalFile.map { try TokenClassificationData.load($0, format: format, labels: names).sentences } ?? []
        model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: batchSize, maxSeq: maxLength)
        tokenizer = bundle.tokenizer
        padId = Int32(bundle.config.padTokenId)
        var cut = 0
        evalSentences = sentences
        evalWindows = try Self.windows(sentences, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, bToI: nil, cut: &cut)
        truncated = cut
        train = []
        dataFingerprint = ""
        dLogits = []
        try loadInferenceAdapter(adapterDir, into: model)
        lora = nil
    }

    /// The token classifier of `folder` for inference: it must have a trained head (a …ForTokenClassification
    /// folder), or an adapter that brings one.
    static func inferenceBundle(folder: ModelFolder, adapterDir: URL?) throws -> ClassifierBundle {
        var labels: [String]? = nil
        if let adapterDir { labels = try ClassifierBundle.labelsForAdapter(modelDir: folder.directory, adapterDir: adapterDir) }
        guard folder.kind == .encoderTokenClassifier || adapterDir != nil else {
            throw TrainingError("\(folder.configURL.path): this is a \(folder.kind.rawValue) (\(folder.architecture ?? "no architectures field")), not a token classifier; train one with `disttrain train --task token-classification`", exitCode: 2)
        }
        return try ClassifierBundle(folder: folder, head: .token, labels: labels, seed: 0)
    }

    /// Entity types of `labels` under seqeval's default and strict parsings, sorted.
    static func typeNames(_ labels: [String]) -> [String] {
        var s = Set<String>()
        for l in labels {
            let rest = l.dropFirst()
            let d = rest.firstIndex(of: "-").map { String(rest[rest.index(after: $0)...]) } ?? String(rest)
            s.insert(d.isEmpty ? "_" : d)
            var t = String(rest.drop(while: { $0 == "-" }))
            while t.last == "-" { t.removeLast() }
            s.insert(t.isEmpty ? "_" : t)
        }
        return s.sorted()
    }

    /// Each sentence's windows; counts the words cut to the window size in `cut`.
    static func windows(_ sentences: [TaggedSentence], tokenizer: any Tokenizer, config: ModelConfig, maxLength: Int,
                        bToI: [Int]?, cut: inout Int) throws -> [[TokenWindow]] {
        let (cls, sep) = try TokenWindows.specials(tokenizer, path: config.path)
        var out: [[TokenWindow]] = []
        out.reserveCapacity(sentences.count)
        for (i, s) in sentences.enumerated() {
            let pieces: [[Int32]]
            do { pieces = try TokenWindows.pieces(s.words, tokenizer: tokenizer) } catch { throw TrainingError("\(error)") }
            if let bad = pieces.joined().first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
                throw TrainingError("\(config.path): the tokenizer produced token id \(bad), outside the model's vocab_size \(config.vocabSize); the tokenizer files do not belong to this model")
            }
            cut += pieces.filter { $0.count > maxLength - 2 }.count
            out.append(TokenWindows.encode(pieces: pieces, tags: s.tags, cls: cls, sep: sep, maxLength: maxLength, bToI: bToI, sentence: i))
        }
        return out
    }

    /// Pads windows into a TokenBatch and the per-position labels (-100 at padding), [B*T].
    func makeBatch(_ windows: [TokenWindow], sampleIndices: [Int]) -> (TokenBatch, [Int32]) {
        let T = windows.map(\.ids.count).max() ?? 1, B = windows.count
        var ids = [Int32](repeating: padId, count: B * T), mask = [Int32](repeating: 0, count: B * T)
        var lab = [Int32](repeating: -100, count: B * T)
        for (b, w) in windows.enumerated() {
            for t in 0..<w.ids.count { ids[b * T + t] = w.ids[t]; mask[b * T + t] = 1; lab[b * T + t] = w.labels[t] }
        }
        return (TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask, tokenTypeIds: nil, sampleIndices: sampleIndices), lab)
    }

    public func lossCount(_ indices: [Int]) -> Int { indices.reduce(0) { $0 + train[$1].labelled } }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        let C = labels.count
        let (tb, lab) = makeBatch(indices.map { train[$0] }, sampleIndices: indices)
        let n = tb.batchSize * tb.seqLen
        let logits = model.forward(tb, dropout: dropout)
        let lossSum = dLogits.withUnsafeMutableBufferPointer { d in
            Loss.crossEntropy(logits: logits, labels: lab, batch: n, classes: C, scale: scale, dLogits: d)
        }
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: UnsafeBufferPointer(rebasing: $0[0..<(n * C)])) }
        return (lossSum, indices.reduce(0) { $0 + train[$1].ids.count })
    }

    /// Runs `windows` in batches of similar length (longest first), calling `body(window index, logits [T, C] rows)`.
    func forEachWindow(_ windows: [TokenWindow], batchSize: Int, _ body: (Int, UnsafeBufferPointer<Float>, Int) -> Void) {
        let order = windows.indices.sorted { windows[$0].ids.count != windows[$1].ids.count ? windows[$0].ids.count > windows[$1].ids.count : $0 < $1 }
        let C = labels.count
        var i = 0
        while i < order.count {
            let idx = Array(order[i..<min(i + batchSize, order.count)])
            i += idx.count
            let (tb, _) = makeBatch(idx.map { windows[$0] }, sampleIndices: idx)
            let logits = model.forward(tb, dropout: nil)
            for (b, j) in idx.enumerated() {
                body(j, UnsafeBufferPointer(rebasing: logits[(b * tb.seqLen * C)..<((b + 1) * tb.seqLen * C)]), tb.seqLen)
            }
        }
    }

    /// Predicted label id of every word of each sentence in `sentences` (-1: a word with no sub-token, never
    /// predicted), plus the eval loss sum and count over the labelled positions.
    func predictWords(_ sentences: [Int], windows: [[TokenWindow]], wordCounts: [Int], batchSize: Int) -> (preds: [[Int]], lossSum: Double, lossCount: Int) {
        let C = labels.count
        var flat: [TokenWindow] = []
        for s in sentences { flat += windows[s] }
        var local = [Int: Int]()
        for (k, s) in sentences.enumerated() { local[s] = k }
        var preds = sentences.map { [Int](repeating: -1, count: wordCounts[$0]) }
        var lossSum = 0.0, lossCount = 0
        var scratch = [Float](repeating: 0, count: maxLength * max(C, 1))
        forEachWindow(flat, batchSize: batchSize) { j, logits, T in
            let w = flat[j]
            let lab = w.labels + [Int32](repeating: -100, count: T - w.labels.count)
            lossSum += scratch.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: lab, batch: T, classes: C, scale: 0, dLogits: $0)
            }
            lossCount += w.labelled
            let k = local[w.sentence]!
            for (pos, word) in w.owned {
                var best = 0
                for c in 1..<max(C, 1) where logits[pos * C + c] > logits[pos * C + best] { best = c }
                preds[k][word] = best
            }
        }
        return (preds, lossSum, lossCount)
    }

    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats {
        let idx = Array(range)
        let (preds, lossSum, lossCount) = predictWords(idx, windows: evalWindows, wordCounts: evalSentences.map(\.words.count), batchSize: batchSize)
        var counts = SeqevalCounts()
        for (k, s) in idx.enumerated() {
            // Words without a sub-token are dropped from both sequences, as run_ner drops their -100 positions.
            let keep = preds[k].indices.filter { preds[k][$0] >= 0 }
            counts.add(true: keep.map { labels[evalSentences[s].tags[$0]] }, pred: keep.map { labels[preds[k][$0]] },
                       scheme: scheme, sentence: s)
        }
        return EvalStats(lossSum: lossSum, lossCount: Double(lossCount), counts: counts.flattened(typeNames: typeNames))
    }

    public func metrics(_ stats: EvalStats) -> [String: Double] {
        var out = SeqevalCounts(flattened: stats.counts, typeNames: typeNames).metrics(prefix: "eval_")
        out["eval_loss"] = stats.lossSum / max(stats.lossCount, 1)
        out["eval_tokens"] = stats.lossCount
        return out
    }

    /// Full fine-tuning writes a …ForTokenClassification folder; LoRA the PEFT adapter (with labels.txt).
    public func save(to dir: URL, weights: ParameterStore?) throws {
        if let lora {
            try saveAdapterWithLabels(plan: lora.plan, store: weights ?? lora.store, labels: labels, to: dir)
        } else {
            try bundle.save(to: dir, weights: weights)
        }
    }

    // MARK: gradient all-reduce layout (EncoderHeadTask, GradientSync.swift: as sequence classification, layers as
    // stages, word embeddings row-sparse)

    public var encoderSync: EncoderHeadSync {
        EncoderHeadSync(model: model, words: WordTableSync(store: bundle.store, architecture: bundle.config, usesLoRA: lora != nil, padId: padId))
    }
    public func trainTokenIds(_ index: Int) -> [Int32] { train[index].ids }
}

/// One entity of `predict`: transformers' token-classification pipeline with aggregation_strategy="first".
public struct PredictedEntity: Sendable, Equatable {
    public var type: String
    /// Unicode scalar offsets (Python string indices) into the text ([start, end)).
    public var start: Int, end: Int
    public var text: String
    /// Mean over the entity's words of each word's probability of its label (at its first sub-token).
    public var score: Double
}

/// A token prediction: the words (pre-tokenizer words of the text), their tags and scores, and the grouped entities.
public struct TokenPrediction: Sendable {
    public var text: String
    public var words: [Range<Int>]
    /// Per word: its label, nil for a word with no sub-token (never predicted).
    public var tags: [String?]
    public var scores: [Double?]
    public var entities: [PredictedEntity]

    /// The tag of each of `tokens` (the words `text` was joined from): the tag of the first pre-tokenizer word
    /// inside it (nil when it has none).
    public func tags(forTokens tokens: [String]) -> [String?] {
        var out: [String?] = []
        var offset = 0, k = 0
        for t in tokens {
            let end = offset + t.unicodeScalars.count
            while k < words.count && words[k].lowerBound < offset { k += 1 }
            out.append(k < words.count && words[k].lowerBound < end ? tags[k] : nil)
            offset = end + 1
        }
        return out
    }
}

/// Inference of a trained token classifier over texts, in input order (`disttrain predict`).
public final class TokenPredictor {
    let task: TokenClassificationTask
    let batchSize: Int
    public var labels: [String] { task.labels }

    /// Whether `adapterDir` holds a PEFT adapter trained for token classification (task_type TOKEN_CLS).
    public static func isTokenAdapter(_ adapterDir: URL) -> Bool {
        (try? PEFTAdapter.readConfig(adapterDir))?.taskType == "TOKEN_CLS"
    }

    public init(folder: ModelFolder, adapterDir: URL?, maxLength: Int?, batchSize: Int) throws {
        task = try TokenClassificationTask(folder: folder, adapterDir: adapterDir, evalFile: nil, maxLength: maxLength, batchSize: batchSize)
        self.batchSize = batchSize
    }

    /// Predicts each text: words from the BERT pre-tokenizer (as the pipeline's word grouping of a WordPiece
    /// tokenizer: a sub-token starting with ## continues the word), each word tagged by its first sub-token's arg-max,
    /// then the pipeline's B-/I- grouping and the "O" groups dropped. Texts longer than --max-length run in windows
    /// (the pipeline would truncate).
    public func predict(_ texts: [String]) throws -> [TokenPrediction] {
        let tk = task.tokenizer
        let (cls, sep) = try TokenWindows.specials(tk, path: task.configPath)
        var spans: [[Range<Int>]] = [], windows: [[TokenWindow]] = [], scalars: [[Unicode.Scalar]] = []
        for (i, t) in texts.enumerated() {
            let sc = Array(t.unicodeScalars)
            let ws = WordSpans.bert(t)
            let words = ws.map { r in var s = ""; s.unicodeScalars.append(contentsOf: sc[r]); return s }
            let pieces: [[Int32]]
            do { pieces = try TokenWindows.pieces(words, tokenizer: tk) } catch { throw TrainingError("\(error)") }
            spans.append(ws); scalars.append(sc)
            windows.append(TokenWindows.encode(pieces: pieces, tags: [], cls: cls, sep: sep, maxLength: task.maxLengthInForce,
                                               bToI: nil, sentence: i))
        }
        let C = labels.count
        var tags = spans.map { [String?](repeating: nil, count: $0.count) }
        var scores = spans.map { [Double?](repeating: nil, count: $0.count) }
        let flat = windows.flatMap { $0 }
        task.forEachWindow(flat, batchSize: batchSize) { j, logits, _ in
            let w = flat[j]
            for (pos, word) in w.owned {
                let row = (0..<C).map { Double(logits[pos * C + $0]) }
                let m = row.max()!
                let e = row.map { Foundation.exp($0 - m) }
                let z = e.reduce(0, +)
                var best = 0
                for c in 1..<max(C, 1) where row[c] > row[best] { best = c }   // the first maximum, as numpy's argmax
                tags[w.sentence][word] = labels[best]
                scores[w.sentence][word] = e[best] / z
            }
        }
        return texts.indices.map { i in
            var ents: [PredictedEntity] = []
            var group: [(tag: String, start: Int, end: Int, score: Double)] = []
            func flush() {
                guard let first = group.first else { return }
                let type = first.tag.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).last.map(String.init) ?? first.tag
                if type != "O" {
                    let (s, e) = (first.start, group.last!.end)
                    var text = ""; text.unicodeScalars.append(contentsOf: scalars[i][s..<e])
                    ents.append(PredictedEntity(type: type, start: s, end: e, text: text,
                                                score: group.map(\.score).reduce(0, +) / Double(group.count)))
                }
                group = []
            }
            func biTag(_ l: String) -> (Character, String) {
                l.hasPrefix("B-") ? ("B", String(l.dropFirst(2))) : l.hasPrefix("I-") ? ("I", String(l.dropFirst(2))) : ("I", l)
            }
            for (k, r) in spans[i].enumerated() {
                guard let tag = tags[i][k], let score = scores[i][k] else { continue }
                if let last = group.last {
                    let (bi, t) = biTag(tag), (_, lt) = biTag(last.tag)
                    if !(t == lt && bi != "B") { flush() }
                }
                group.append((tag, r.lowerBound, r.upperBound, score))
            }
            flush()
            return TokenPrediction(text: texts[i], words: spans[i], tags: tags[i], scores: scores[i], entities: ents)
        }
    }
}

/// `eval` and `predict` of a token classifier (TaskFactory.inference): `eval` gives seqeval entity precision/recall/F1
/// (overall and per type), token accuracy and eval_loss through TokenClassificationTask's evaluation (the trainer's),
/// exact over ranks; `predict` takes {"text"} or {"tokens"} lines and writes {"text" | "tokens", "tags", "entities":
/// [{"type", "start", "end", "text", "score"}]}, grouped as transformers' token-classification pipeline (aggregation
/// "first").
public struct TokenClassificationInference: InferenceTask {
    let folder: ModelFolder
    let adapterDir: URL?
    let options: InferenceOptions

    public func evaluate(evalFile: String, comm: Communicator, warn: (String) -> Void) throws -> [String: Any] {
        if let d = options.dataFormat, d.token == nil {
            throw TrainingError("--data-format \(d.rawValue): token-classification data is jsonl or conll; drop --data-format or give one of those", exitCode: 2)
        }
        let task = try TokenClassificationTask(folder: folder, adapterDir: adapterDir, evalFile: URL(fileURLWithPath: evalFile),
                                               format: options.dataFormat?.token, scheme: options.tagScheme,
                                               maxLength: options.maxLength, batchSize: options.batchSize)
        return task.metrics(try task.evaluateAll(comm: comm, batchSize: options.batchSize))
    }

    public func predictLines(input: String, warn: (String) -> Void) throws -> [String] {
        let predictor = try TokenPredictor(folder: folder, adapterDir: adapterDir, maxLength: options.maxLength, batchSize: options.batchSize)
        let numbered = try TokenClassificationData.loadPredictInputLines(URL(fileURLWithPath: input))
        let preds = try predictor.predict(numbered.map(\.input.text))
        var out = PredictOutput()
        for ((inp, lineNo), p) in zip(numbered, preds) {
            var obj: [String: Any] = [:]
            switch inp {
            case .text(let t):
                obj["text"] = t
                obj["words"] = p.words.map { r in var s = ""; s.unicodeScalars.append(contentsOf: Array(t.unicodeScalars)[r]); return s }
                obj["tags"] = p.tags.map { $0 ?? NSNull() as Any }
            case .tokens(let w):
                obj["tokens"] = w
                obj["tags"] = p.tags(forTokens: w).map { $0 ?? NSNull() as Any }
            }
            obj["entities"] = p.entities.map { ["type": $0.type, "start": $0.start, "end": $0.end, "text": $0.text, "score": $0.score] as [String: Any] }
            try out.append(obj, line: lineNo)   // a blank input line keeps its place, as for classifiers
        }
        return out.lines
    }
}
