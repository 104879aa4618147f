// Trainer: the data-parallel fine-tuning loop for sequence classifiers. Every rank holds a full replica, runs its
// slice of each global batch (split into micro-batches), and all-reduces the flat gradient buffer; the loss is
// normalised by the global number of examples in the step, so the result does not depend on the rank count or on
// the accumulation split. The loop emits typed events; the caller decides what to print (rank 0 only).
// Deliberately not here: CLI parsing (the executable), layer math (Model), MPI (Dist, behind Communicator).
import Foundation
import Dist
import Model
import Tokenizers

/// What the loop reports. `log` and `evaluated` carry the metrics written to metrics.jsonl.
public enum TrainingEvent {
    case started(TrainingSummary)
    case log([String: Double])
    case evaluated([String: Double])
    case saved(URL)
    case finished([String: Double])
}

/// The shape of a run, reported once at the start.
public struct TrainingSummary: Sendable {
    public var trainExamples: Int
    public var evalExamples: Int
    public var labels: [String]
    public var totalSteps: Int
    public var stepsPerEpoch: Int
    public var worldSize: Int
    public var microBatch: Int
    public var accumulationSteps: Int
    public var parameters: Int
    public var initialized: [String]
    public var truncated: Int
}

/// One tokenized example.
struct EncodedExample {
    var ids: [Int32]
    var typeIds: [Int32]
    var label: Int
}

public final class Trainer {
    public let config: TrainConfig
    public let comm: Communicator
    let bundle: ClassifierBundle
    let model: EncoderClassifier
    let optimizer: AdamW
    let train: [EncodedExample]
    let eval: [EncodedExample]
    let labels: [String]
    let truncatedCount: Int
    let trainFingerprint: String

    public init(config: TrainConfig, comm: Communicator) throws {
        self.config = config
        self.comm = comm
        try config.validate(worldSize: comm.worldSize)

        // Labels: from --labels, else from the training file.
        let fixedLabels = try config.labelsFile.map { try LabelSet.fromFile($0) }
        var (trainSet, labelSet) = try DataLoader.loadLabeled(config.trainFile, columns: config.columns, labels: fixedLabels)
        guard !trainSet.examples.isEmpty else {
            throw TrainingError("\(config.trainFile.path): no training examples; the file must hold one {\"text\", \"label\"} object per line")
        }
        var evalSet: TextDataset?
        if let evalFile = config.evalFile {
            evalSet = try DataLoader.loadLabeled(evalFile, columns: config.columns, labels: labelSet).0
        } else if config.validationSplit > 0 {
            let parts = try DataLoader.split(trainSet, validationFraction: config.validationSplit, seed: config.seed)
            trainSet = parts.train
            evalSet = parts.validation
        }
        labels = labelSet.names
        trainFingerprint = trainSet.fingerprint

        bundle = try ClassifierBundle(directory: config.modelDir, labels: labels, seed: config.seed)
        guard bundle.config.problemType == .singleLabel else {
            throw TrainingError("\(bundle.config.path): problem_type \(bundle.config.problemType!.rawValue) is not supported by `train` yet; use single_label_classification")
        }
        guard config.maxLength <= bundle.config.maxPositions else {
            throw TrainingError("--max-length \(config.maxLength) exceeds the model's max_position_embeddings \(bundle.config.maxPositions); use --max-length \(bundle.config.maxPositions) or less", exitCode: 2)
        }
        var truncated = 0
        func encode(_ ds: TextDataset) throws -> [EncodedExample] {
            try ds.examples.map { ex in
                let full = try bundle.tokenizer.encode(ex.text, pair: ex.textPair, addSpecialTokens: true, maxLength: nil)
                var enc = full
                if full.ids.count > config.maxLength {
                    truncated += 1
                    enc = try bundle.tokenizer.encode(ex.text, pair: ex.textPair, addSpecialTokens: true, maxLength: config.maxLength)
                }
                return EncodedExample(ids: enc.ids, typeIds: enc.typeIds, label: ex.label ?? 0)
            }
        }
        train = try encode(trainSet)
        eval = try evalSet.map(encode) ?? []
        truncatedCount = truncated

        let (micro, _) = config.accumulation(worldSize: comm.worldSize)
        model = EncoderClassifier(config: bundle.config, parameters: bundle.store, maxBatch: micro, maxSeq: config.maxLength)
        optimizer = AdamW(store: bundle.store, config: AdamWConfig(
            beta1: Float(config.adamBeta1), beta2: Float(config.adamBeta2),
            eps: Float(config.adamEpsilon), weightDecay: Float(config.weightDecay)))

        // Replicas start bit-identical: rank 0's parameters (including any freshly initialised head) win.
        try comm.broadcast(UnsafeMutableRawBufferPointer(bundle.store.values), root: 0)
    }

    var stepsPerEpoch: Int { (train.count + config.batchSize - 1) / config.batchSize }

    var totalSteps: Int {
        config.maxSteps > 0 ? config.maxSteps : Int((Double(stepsPerEpoch) * config.numTrainEpochs).rounded(.up))
    }

    /// Sample indices of global step `step`: the next `batchSize` entries of the epoch's seeded permutation.
    func globalBatch(step: Int) -> [Int] {
        let epoch = step / stepsPerEpoch
        let within = step % stepsPerEpoch
        let perm = SamplePermutation.permutation(count: train.count, seed: config.seed, epoch: epoch)
        let start = within * config.batchSize
        return Array(perm[start..<min(start + config.batchSize, train.count)])
    }

    /// Pads `indices` of `examples` into a TokenBatch (dynamic padding to the longest example).
    func makeBatch(_ indices: [Int], from examples: [EncodedExample]) -> TokenBatch {
        let T = indices.map { examples[$0].ids.count }.max() ?? 1
        let B = indices.count
        let pad = Int32(bundle.config.padTokenId)
        var ids = [Int32](repeating: pad, count: B * T)
        var mask = [Int32](repeating: 0, count: B * T)
        var types = [Int32](repeating: 0, count: B * T)
        for (b, i) in indices.enumerated() {
            let e = examples[i]
            for t in 0..<e.ids.count {
                ids[b * T + t] = e.ids[t]
                mask[b * T + t] = 1
                types[b * T + t] = t < e.typeIds.count ? e.typeIds[t] : 0
            }
        }
        return TokenBatch(batchSize: B, seqLen: T, inputIds: ids, attentionMask: mask, tokenTypeIds: types, sampleIndices: indices)
    }

    /// Runs the whole training and returns the final metrics (identical on every rank).
    public func run(onEvent: (TrainingEvent) -> Void) throws -> [String: Double] {
        let world = comm.worldSize, rank = comm.rank
        let (micro, accum) = config.accumulation(worldSize: world)
        let total = totalSteps
        let warmup = config.warmupSteps > 0 ? config.warmupSteps : Int((config.warmupRatio * Double(total)).rounded(.up))
        let schedule = LRSchedule(kind: config.lrSchedule, peak: config.learningRate, warmupSteps: warmup, totalSteps: total)
        onEvent(.started(TrainingSummary(
            trainExamples: train.count, evalExamples: eval.count, labels: labels, totalSteps: total,
            stepsPerEpoch: stepsPerEpoch, worldSize: world, microBatch: micro, accumulationSteps: accum,
            parameters: bundle.store.parameterCount, initialized: bundle.report.initialized, truncated: truncatedCount)))

        let C = labels.count
        var dLogits = [Float](repeating: 0, count: micro * C)
        let start = Date()
        var lossSumAll = 0.0
        var tokensAll: Int64 = 0
        var windowLoss = 0.0, windowSteps = 0, windowTokens: Int64 = 0
        var windowStart = Date()
        var lastEval: [String: Double] = [:]
        for step in 0..<total {
            let batch = globalBatch(step: step)
            let g = batch.count
            // Contiguous slice for this rank (even split; a short last batch leaves some ranks fewer samples).
            let lo = rank * g / world, hi = (rank + 1) * g / world
            let mine = Array(batch[lo..<hi])
            bundle.store.zeroGrads()
            var stats = [0.0, 0.0]  // loss sum, real tokens
            let dropout = config.dropout ? DropoutContext(seed: config.seed, step: step) : nil
            var k = 0
            while k < mine.count {
                let chunk = Array(mine[k..<min(k + micro, mine.count)])
                k += chunk.count
                let tb = makeBatch(chunk, from: train)
                let logits = model.forward(tb, dropout: dropout)
                let lab = chunk.map { Int32(train[$0].label) }
                let lossSum = dLogits.withUnsafeMutableBufferPointer { d in
                    Loss.crossEntropy(logits: logits, labels: lab, batch: chunk.count, classes: C,
                                      scale: Float(1.0 / Double(g)), dLogits: d)
                }
                model.backward(dLogits: UnsafeBufferPointer(start: dLogits, count: chunk.count * C))
                stats[0] += lossSum
                stats[1] += Double(tb.attentionMask.reduce(0) { $0 + Int($1) })
            }
            try comm.allReduce(bundle.store.grads, op: .sum)
            try comm.allReduceSum(&stats)
            let stepLoss = stats[0] / Double(g)
            let norm = GradientClipping.clip(bundle.store.grads, maxNorm: config.maxGradNorm)
            let lr = schedule.lr(forStep: step)
            optimizer.step(lr: lr)
            guard stepLoss.isFinite else {
                throw TrainingError("the loss became \(stepLoss) at step \(step + 1); lower --learning-rate or check the data")
            }
            lossSumAll += stepLoss
            tokensAll += Int64(stats[1])
            windowLoss += stepLoss; windowSteps += 1; windowTokens += Int64(stats[1])
            let done = step + 1
            let epoch = Double(done) / Double(stepsPerEpoch)
            if done % max(config.loggingSteps, 1) == 0 || done == total {
                let dt = Date().timeIntervalSince(windowStart)
                onEvent(.log(["step": Double(done), "epoch": epoch, "loss": windowLoss / Double(windowSteps),
                              "learning_rate": lr, "grad_norm": norm, "tokens_per_s": Double(windowTokens) / max(dt, 1e-9),
                              "elapsed_s": Date().timeIntervalSince(start), "total_steps": Double(total)]))
                windowLoss = 0; windowSteps = 0; windowTokens = 0; windowStart = Date()
            }
            let epochEnd = done % stepsPerEpoch == 0
            if !eval.isEmpty && ((config.evalSteps > 0 && done % config.evalSteps == 0) || (epochEnd && done != total)) {
                var m = try evaluate()
                m["step"] = Double(done); m["epoch"] = epoch
                lastEval = m
                onEvent(.evaluated(m))
            }
        }
        let runtime = Date().timeIntervalSince(start)
        if !eval.isEmpty {
            var m = try evaluate()
            m["step"] = Double(total); m["epoch"] = Double(total) / Double(stepsPerEpoch)
            lastEval = m
            onEvent(.evaluated(m))
        }
        var result = lastEval.filter { $0.key.hasPrefix("eval_") }
        result["train_loss"] = lossSumAll / Double(max(total, 1))
        result["train_runtime_s"] = runtime
        result["train_tokens_per_s"] = Double(tokensAll) / max(runtime, 1e-9)
        result["train_samples"] = Double(train.count)
        result["global_step"] = Double(total)
        result["epoch"] = Double(total) / Double(stepsPerEpoch)
        if comm.isRoot {
            try bundle.save(to: config.outputDir)
            onEvent(.saved(config.outputDir))
        }
        try comm.barrier()
        onEvent(.finished(result))
        return result
    }

    /// Exact metrics over the eval set: each rank evaluates a contiguous shard (no duplicates), integer counts and
    /// loss sums are all-reduced.
    public func evaluate() throws -> [String: Double] {
        let world = comm.worldSize, rank = comm.rank
        let n = eval.count
        let lo = rank * n / world, hi = (rank + 1) * n / world
        let C = labels.count
        var confusion = [Int64](repeating: 0, count: C * C)
        var lossSum = [0.0]
        let (micro, _) = config.accumulation(worldSize: world)
        var scratch = [Float](repeating: 0, count: micro * C)
        var i = lo
        while i < hi {
            let idx = Array(i..<min(i + micro, hi))
            i += idx.count
            let tb = makeBatch(idx, from: eval)
            let logits = model.forward(tb, dropout: nil)
            let lab = idx.map { Int32(eval[$0].label) }
            lossSum[0] += scratch.withUnsafeMutableBufferPointer {
                Loss.crossEntropy(logits: logits, labels: lab, batch: idx.count, classes: C, scale: 0, dLogits: $0)
            }
            for (b, j) in idx.enumerated() {
                var best = 0
                for c in 1..<max(C, 1) where logits[b * C + c] > logits[b * C + best] { best = c }
                confusion[eval[j].label * C + best] += 1
            }
        }
        try comm.allReduceSum(&confusion)
        try comm.allReduceSum(&lossSum)
        let matrix = (0..<C).map { Array(confusion[($0 * C)..<($0 * C + C)]) }
        let metrics = ClassificationMetrics(confusion: matrix, labels: labels)
        var out: [String: Double] = [:]
        for (k, v) in metrics.asDictionary(prefix: "eval_") { if let d = v as? Double { out[k] = d } }
        out["eval_loss"] = lossSum[0] / Double(max(n, 1))
        out["eval_samples"] = Double(n)
        return out
    }
}

/// The seeded per-epoch permutation of sample indices (Fisher-Yates with SplitMix64): the same on every rank and
/// every platform, so the global order does not depend on the world size.
public enum SamplePermutation {
    public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed &+ 0x5DEE_CE66 &* UInt64(epoch + 1))
        var p = Array(0..<count)
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                p.swapAt(i, j)
            }
        }
        return p
    }
}
