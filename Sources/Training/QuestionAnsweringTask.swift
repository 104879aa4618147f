// QuestionAnsweringTask: extractive question answering with a BERT-family encoder and transformers'
// …ForQuestionAnswering head (`qa_outputs`, QuestionAnsweringHead.swift in Model): SQuAD-style examples (QAData.swift)
// cut into run_qa's windows once; the loss is transformers' (CE(start) + CE(end)) / 2 per window, summed and divided
// by the GLOBAL number of windows of the step (so 1 and N ranks agree). Every window is padded to --max-length, as
// run_qa pads (pad_to_max_length, its default): padding positions take part in the softmax exactly as in PyTorch, and
// a batch's loss does not depend on how the windows were batched. Evaluation: each rank post-processes whole examples
// (QAPostprocess.swift, run_qa's postprocess_qa_predictions) and sums exact match and F1 (SquadMetric.swift); the
// sums are all-reduced. Saving writes a folder AutoModelForQuestionAnswering loads (or a PEFT adapter, task_type
// QUESTION_ANS, qa_outputs in modules_to_save, under LoRA). `predict` answers {"question", "context"} lines.
// Deliberately not here: the loop (Trainer), file parsing and windowing (QAData), the layers (Model).
import Dist
import Foundation
import Model
import Tokenizers

public final class QuestionAnsweringTask: FolderTrainingTask, EncoderHeadTask, @unchecked Sendable {
    /// id2label of a question-answering head (transformers' default for num_labels = 2).
    static let headLabels = ["LABEL_0", "LABEL_1"]

    let model: EncoderClassifier
    let bundle: ClassifierBundle
    let tokenizer: any Tokenizer
    let padId: Int32
    let train: [QAWindow]
    let evalExamples: [QAExample]
    let evalWindows: [[QAWindow]]
    let settings: QAPostprocessSettings
    let maxLength: Int
    let docStride: Int
    public let dataFingerprint: String
    public var truncated: Int { 0 }
    let lora: (plan: LoRAPlan, store: ParameterStore)?
    private var dLogits: [Float]

    public var store: ParameterStore { lora?.store ?? bundle.store }
    public var trainCount: Int { train.count }
    public var evalCount: Int { evalExamples.count }
    public var trainLengths: [Int] { train.map { _ in maxLength } }
    public var labels: [String] { [] }
    public var configPath: String { bundle.config.path }
    public var initialized: [String] { bundle.report.initialized }
    /// Metric names (without eval_) `--metric-for-best-model` may name.
    public var metricNames: [String] {
        ["f1", "exact_match", "loss"] + (settings.version2WithNegative ? ["HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"] : [])
    }

    public init(folder: ModelFolder, adapterDir: URL?, trainConfig config: TrainConfig, microBatch: Int) throws {
        settings = config.qaPostprocess
        docStride = config.docStride
        var (trainSet, fingerprint, _) = try QAData.load(config.trainFile)
        var evalSet: [QAExample] = []
        if let evalFile = config.evalFile {
            evalSet = try QAData.load(evalFile, requireAnswers: !settings.version2WithNegative).examples
        } else if config.validationSplit > 0 {
            (trainSet, evalSet) = seededHoldOut(trainSet, fraction: config.validationSplit, seed: config.seed)
            fingerprint += "-split\(config.validationSplit)-seed\(config.seed)"
            if !settings.version2WithNegative, let e = evalSet.first(where: { $0.answers.isEmpty }) {
                throw TrainingError("\(config.trainFile.relativePath):\(e.line): question \"\(e.id)\" has no answer and was held out for evaluation; pass --version-2-with-negative for data with unanswerable questions", exitCode: 2)
            }
        }
        if !settings.version2WithNegative, let e = trainSet.first(where: { $0.answers.isEmpty }) {
            throw TrainingError("\(config.trainFile.relativePath):\(e.line): question \"\(e.id)\" has no answer; pass --version-2-with-negative to train on unanswerable questions (SQuAD v2: the target is [CLS])", exitCode: 2)
        }
        dataFingerprint = fingerprint + "-stride\(config.docStride)"
        maxLength = config.maxLength
        try ModelFolder.checkArena(batch: microBatch, seq: maxLength, architecture: try folder.encoderConfig(for: "question answering"))
        bundle = try ClassifierBundle(folder: folder, head: .span, labels: Self.headLabels, seed: config.seed)
        guard maxLength <= bundle.config.maxPositions else {
            throw TrainingError("--max-length \(maxLength) exceeds the model's max_position_embeddings \(bundle.config.maxPositions); use --max-length \(bundle.config.maxPositions) or less", exitCode: 2)
        }
        model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: microBatch, maxSeq: maxLength)
        if config.matmulPrecision == .bf16 { model.matmulPrecision = .bf16 }
        tokenizer = bundle.tokenizer
        padId = Int32(bundle.config.padTokenId)
        train = try Self.windows(trainSet, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, stride: docStride, file: config.trainFile).flatMap { $0 }
        evalExamples = evalSet
        evalWindows = try Self.windows(evalSet, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, stride: docStride, file: config.evalFile ?? config.trainFile)
        dLogits = [Float](repeating: 0, count: microBatch * maxLength * 2)
        if let lc = config.lora {
            var c = lc.forQuestionAnswering()
            c.baseModelNameOrPath = c.baseModelNameOrPath ?? folder.directory.path
            lora = try attachLoRA(c, to: model, adapterDir: adapterDir, seed: config.seed)
        } else {
            lora = nil
        }
    }

    /// Evaluation and prediction (`disttrain eval` / `predict`): the trained question-answering model in `folder`
    /// (with a PEFT adapter run unmerged) on `evalFile` (nil: no data, for `predict`).
    public init(folder: ModelFolder, adapterDir: URL?, evalFile: URL?, settings: QAPostprocessSettings, docStride: Int,
                maxLength: Int?, batchSize: Int) throws {
        guard folder.kind == .encoderQuestionAnswering || adapterDir.map(Self.isQAAdapter) == true else {
            throw TrainingError("\(folder.configURL.path): this is a \(folder.kind.rawValue) (\(folder.architecture ?? "no architectures field")), not a question-answering model; train one with `disttrain train --task question-answering`", exitCode: 2)
        }
        // run_qa's default max_seq_length 384, capped at the model's positions; an explicit length is checked.
        let maxLength = try maxLength.map { try folder.maxLength($0) } ?? min(384, folder.maxPositions)
        self.maxLength = maxLength
        self.settings = settings
        self.docStride = docStride
        bundle = try ClassifierBundle(folder: folder, head: .span, labels: Self.headLabels, seed: 0)
        model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: batchSize, maxSeq: maxLength)
        tokenizer = bundle.tokenizer
        padId = Int32(bundle.config.padTokenId)
        evalExamples = try evalFile.map { try QAData.load($0, requireAnswers: !settings.version2WithNegative).examples } ?? []
        evalWindows = try Self.windows(evalExamples, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, stride: docStride, file: evalFile)
        train = []
        dataFingerprint = ""
        dLogits = []
        try loadInferenceAdapter(adapterDir, into: model)
        lora = nil
    }

    /// Whether `adapterDir` holds a PEFT adapter trained for question answering (task_type QUESTION_ANS).
    public static func isQAAdapter(_ adapterDir: URL) -> Bool {
        (try? PEFTAdapter.readConfig(adapterDir))?.taskType == "QUESTION_ANS"
    }

    static func windows(_ examples: [QAExample], tokenizer: any Tokenizer, config: ModelConfig, maxLength: Int, stride: Int, file: URL?) throws -> [[QAWindow]] {
        guard !examples.isEmpty else { return [] }
        let (cls, sep) = try QAWindows.specials(tokenizer, path: config.path)
        return try examples.enumerated().map { i, e in
            let w: [QAWindow]
            do { w = try QAWindows.encode(e, index: i, tokenizer: tokenizer, cls: cls, sep: sep, maxLength: maxLength, stride: stride) }
            catch let err as TrainingError { throw TrainingError((file.map { "\($0.relativePath): " } ?? "") + err.message, exitCode: err.exitCode) }
            if let bad = w.lazy.flatMap(\.ids).first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
                throw TrainingError("\(config.path): the tokenizer produced token id \(bad), outside the model's vocab_size \(config.vocabSize); the tokenizer files do not belong to this model")
            }
            return w
        }
    }

    /// Windows padded to `T` (training: --max-length, as run_qa): ids, attention mask, token types.
    func makeBatch(_ windows: [QAWindow], T: Int, sampleIndices: [Int]) -> TokenBatch {
        let B = windows.count
        var ids = [Int32](repeating: padId, count: B * T), mask = [Int32](repeating: 0, count: B * T), types = [Int32](repeating: 0, count: B * T)
        for (b, w) in windows.enumerated() {
            for t in 0..<w.ids.count { ids[b * T + t] = w.ids[t]; mask[b * T + t] = 1; types[b * T + t] = w.typeIds[t] }
        }
        return TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask,
                          tokenTypeIds: bundle.config.family == .bert ? types : nil, sampleIndices: sampleIndices)
    }

    public func lossCount(_ indices: [Int]) -> Int { indices.count }

    public func trainMicroBatch(_ indices: [Int], dropout: DropoutContext?, scale: Float) -> (lossSum: Double, tokens: Int) {
        let ws = indices.map { train[$0] }
        let tb = makeBatch(ws, T: maxLength, sampleIndices: indices)
        let logits = model.forward(tb, dropout: dropout)
        let n = tb.batchSize * maxLength * 2
        let lossSum = dLogits.withUnsafeMutableBufferPointer { d in
            SpanLoss.loss(logits: logits, starts: ws.map(\.startPosition), ends: ws.map(\.endPosition), B: tb.batchSize, T: maxLength,
                          scale: scale, dLogits: UnsafeMutableBufferPointer(rebasing: d[0..<n]))
        }
        dLogits.withUnsafeBufferPointer { model.backward(dLogits: UnsafeBufferPointer(rebasing: $0[0..<n])) }
        return (lossSum, ws.reduce(0) { $0 + $1.ids.count })
    }

    /// Start and end logits of every window of `examples` (per example, its windows in order), and the loss sum of
    /// the windows under the training targets (padded to --max-length as in training).
    func windowLogits(_ examples: [Int], windows: [[QAWindow]], batchSize: Int) -> (logits: [[QAPostprocess.WindowLogits]], lossSum: Double, lossCount: Int) {
        var flat: [(e: Int, k: Int)] = []
        for (j, e) in examples.enumerated() { for k in windows[e].indices { flat.append((j, k)) } }
        var out = examples.map { windows[$0].map { _ in QAPostprocess.WindowLogits(start: [], end: [], offsets: []) } }
        var lossSum = 0.0
        var scratch = [Float](repeating: 0, count: batchSize * maxLength * 2)
        var i = 0
        while i < flat.count {
            let part = Array(flat[i..<min(i + batchSize, flat.count)])
            let ws = part.map { windows[examples[$0.e]][$0.k] }
            let T = maxLength
            let tb = makeBatch(ws, T: T, sampleIndices: Array(i..<(i + part.count)))
            let logits = model.forward(tb, dropout: nil)
            lossSum += scratch.withUnsafeMutableBufferPointer { d in
                SpanLoss.loss(logits: logits, starts: ws.map(\.startPosition), ends: ws.map(\.endPosition), B: ws.count, T: T, scale: 0,
                              dLogits: UnsafeMutableBufferPointer(rebasing: d[0..<(ws.count * T * 2)]))
            }
            for (b, p) in part.enumerated() {
                let w = ws[b], L = w.ids.count
                var s = [Float](repeating: 0, count: L), e = [Float](repeating: 0, count: L)
                for t in 0..<L { s[t] = logits[(b * T + t) * 2]; e[t] = logits[(b * T + t) * 2 + 1] }
                out[p.e][p.k] = QAPostprocess.WindowLogits(start: s, end: e, offsets: (0..<L).map { w.offset(at: $0) })
            }
            i += part.count
        }
        return (out, lossSum, flat.count)
    }

    /// Predictions of the eval examples `range`, in order.
    func predictions(_ indices: [Int], examples: [QAExample], windows: [[QAWindow]], batchSize: Int) -> (preds: [QAPrediction], lossSum: Double, lossCount: Int) {
        let (logits, lossSum, n) = windowLogits(indices, windows: windows, batchSize: batchSize)
        let preds = indices.enumerated().map { j, e in QAPostprocess.predict(context: examples[e].context, windows: logits[j], settings: settings) }
        return (preds, lossSum, n)
    }

    public func evaluate(_ range: Range<Int>, batchSize: Int) -> EvalStats {
        let idx = Array(range)
        let (preds, lossSum, n) = predictions(idx, examples: evalExamples, windows: evalWindows, batchSize: batchSize)
        // sums: exact, f1, then (v2) has-answer count, exact, f1, no-answer count, exact, f1
        var sums = [Double](repeating: 0, count: 8)
        for (j, e) in idx.enumerated() {
            let golds = evalExamples[e].answers.map(\.text)
            let (em, f1) = SquadMetric.score(preds[j].text, golds: golds, version2: settings.version2WithNegative)
            sums[0] += em; sums[1] += f1
            let base = golds.contains { !SquadMetric.normalize($0).isEmpty } ? 2 : 5
            sums[base] += 1; sums[base + 1] += em; sums[base + 2] += f1
        }
        return EvalStats(lossSum: lossSum, lossCount: Double(n), counts: [Int64(idx.count)], sums: sums)
    }

    public func metrics(_ stats: EvalStats) -> [String: Double] {
        let n = Double(max(stats.counts.first ?? 0, 1))
        let s = stats.sums.count == 8 ? stats.sums : [Double](repeating: 0, count: 8)
        var out: [String: Double] = ["eval_exact_match": 100 * s[0] / n, "eval_f1": 100 * s[1] / n,
                                     "eval_loss": stats.lossSum / max(stats.lossCount, 1), "eval_samples": Double(stats.counts.first ?? 0)]
        if settings.version2WithNegative {
            out["eval_HasAns_total"] = s[2]; out["eval_NoAns_total"] = s[5]
            if s[2] > 0 { out["eval_HasAns_exact"] = 100 * s[3] / s[2]; out["eval_HasAns_f1"] = 100 * s[4] / s[2] }
            if s[5] > 0 { out["eval_NoAns_exact"] = 100 * s[6] / s[5]; out["eval_NoAns_f1"] = 100 * s[7] / s[5] }
        }
        return out
    }

    public func save(to dir: URL, weights: ParameterStore?) throws {
        if let lora {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try PEFTAdapter.save(plan: lora.plan, store: weights ?? lora.store, to: dir)
        } else {
            try bundle.save(to: dir, weights: weights)
        }
    }

    // MARK: inference

    /// Answers each example (question and context; answers ignored), in input order.
    public func answer(_ examples: [QAExample], batchSize: Int) throws -> [QAPrediction] {
        let ws = try Self.windows(examples, tokenizer: tokenizer, config: bundle.config, maxLength: maxLength, stride: docStride, file: nil)
        return predictions(Array(examples.indices), examples: examples, windows: ws, batchSize: batchSize).preds
    }

    // MARK: gradient all-reduce layout (EncoderHeadTask, GradientSync.swift: as sequence classification, layers as
    // stages, word embeddings row-sparse)

    public var encoderSync: EncoderHeadSync {
        EncoderHeadSync(model: model, words: WordTableSync(store: bundle.store, architecture: bundle.config, usesLoRA: lora != nil, padId: padId))
    }
    public func trainTokenIds(_ index: Int) -> [Int32] { train[index].ids }
}

/// `eval` and `predict` of a question-answering model (TaskFactory.inference): `eval` gives exact match, F1 (and the
/// SQuAD v2 splits) and eval_loss through QuestionAnsweringTask's evaluation (the trainer's); `predict` takes
/// {"question", "context"} lines (or SQuAD JSON) and writes one {"id", "question", "answer", "start", "end", "score"}
/// line per question in input order.
public struct QuestionAnsweringInference: InferenceTask {
    let folder: ModelFolder
    let adapterDir: URL?
    let options: InferenceOptions

    func task(evalFile: URL?) throws -> QuestionAnsweringTask {
        try QuestionAnsweringTask(folder: folder, adapterDir: adapterDir, evalFile: evalFile, settings: options.qa,
                                  docStride: options.docStride, maxLength: options.maxLength, batchSize: options.batchSize)
    }

    public func evaluate(evalFile: String, comm: Communicator, warn: (String) -> Void) throws -> [String: Any] {
        let task = try task(evalFile: URL(fileURLWithPath: evalFile))
        return task.metrics(try task.evaluateAll(comm: comm, batchSize: options.batchSize))
    }

    public func predictLines(input: String, warn: (String) -> Void) throws -> [String] {
        let task = try task(evalFile: nil)
        let (examples, _, squadJSON) = try QAData.load(URL(fileURLWithPath: input), unlabelled: true)
        let preds = try task.answer(examples, batchSize: options.batchSize)
        var out = PredictOutput()
        for (e, p) in zip(examples, preds) {
            try out.append(["id": e.id, "question": e.question, "answer": p.text, "start": p.start, "end": p.end, "score": p.score],
                           line: squadJSON ? nil : e.line)
        }
        return out.lines
    }
}
