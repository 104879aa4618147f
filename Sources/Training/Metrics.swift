// Metrics: single-label classification scores (accuracy, per-class precision/recall/F1, macro and weighted F1)
// computed from a confusion matrix of integer counts.
//
// Deliberately built from counts, not from predictions: each rank counts its own shard, the trainer all-reduces the
// counts (exact in integers, unlike averaging per-rank accuracies), and rank 0 builds this from the sum.
// Deliberately not here: loss and perplexity (the trainer averages those), thresholds, multi-label metrics, and
// report rendering.
//
// Definitions follow scikit-learn's `precision_recall_fscore_support(..., zero_division=0)` over all classes:
// a ratio whose denominator is zero is 0, and a class that never occurs and is never predicted still counts in the
// macro mean with F1 = 0.

import Foundation

/// Scores of one class.
public struct ClassScores: Sendable, Codable, Equatable {
    public var name: String
    /// TP / (TP + FP), 0 when the class was never predicted.
    public var precision: Double
    /// TP / (TP + FN), 0 when the class never occurs.
    public var recall: Double
    /// 2PR / (P + R), 0 when P + R = 0.
    public var f1: Double
    /// Number of examples whose true class is this one.
    public var support: Int64
}

public struct ClassificationMetrics: Sendable, Codable, Equatable {
    /// Correct predictions / all predictions (the trace over the total); 0 for an empty matrix.
    public var accuracy: Double
    /// Unweighted mean of the per-class F1 scores.
    public var macroF1: Double
    /// Mean of the per-class F1 scores weighted by support (sklearn's `average="weighted"`).
    public var weightedF1: Double
    /// One entry per class, in class-id order.
    public var perClass: [ClassScores]
    /// `confusion[trueClass][predictedClass]` = number of examples.
    public var confusion: [[Int64]]
    /// Total number of examples counted.
    public var total: Int64

    /// - Parameters:
    ///   - confusion: square, one row and column per label, `confusion[true][pred]`, non-negative counts.
    ///   - labels: class names in class-id order.
    /// A mis-shaped matrix is a programming error in the caller (the trainer builds it), so it traps with a message
    /// rather than throwing.
    public init(confusion: [[Int64]], labels: [String]) {
        let k = labels.count
        precondition(confusion.count == k && confusion.allSatisfy { $0.count == k },
                     "ClassificationMetrics: confusion matrix must be \(k)×\(k) for \(k) labels")
        precondition(confusion.allSatisfy { $0.allSatisfy { $0 >= 0 } }, "ClassificationMetrics: negative count")
        var total: Int64 = 0
        var correct: Int64 = 0
        var predicted = [Int64](repeating: 0, count: k)  // column sums
        for t in 0..<k {
            for p in 0..<k {
                total += confusion[t][p]
                predicted[p] += confusion[t][p]
            }
            correct += confusion[t][t]
        }
        func ratio(_ a: Int64, _ b: Int64) -> Double { b == 0 ? 0 : Double(a) / Double(b) }
        var perClass: [ClassScores] = []
        perClass.reserveCapacity(k)
        for c in 0..<k {
            let tp = confusion[c][c]
            let support = confusion[c].reduce(0, +)
            let precision = ratio(tp, predicted[c])
            let recall = ratio(tp, support)
            let f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
            perClass.append(ClassScores(name: labels[c], precision: precision, recall: recall, f1: f1, support: support))
        }
        self.accuracy = ratio(correct, total)
        self.macroF1 = k == 0 ? 0 : perClass.reduce(0) { $0 + $1.f1 } / Double(k)
        self.weightedF1 = total == 0 ? 0 : perClass.reduce(0) { $0 + $1.f1 * Double($1.support) } / Double(total)
        self.perClass = perClass
        self.confusion = confusion
        self.total = total
    }

    /// Counts (true, predicted) class-id pairs into a `classCount`×`classCount` matrix. Ids must be in range.
    public static func confusionMatrix(truth: [Int], predicted: [Int], classCount: Int) -> [[Int64]] {
        precondition(truth.count == predicted.count, "confusionMatrix: \(truth.count) true labels but \(predicted.count) predictions")
        var m = [[Int64]](repeating: [Int64](repeating: 0, count: classCount), count: classCount)
        for (t, p) in zip(truth, predicted) {
            precondition((0..<classCount).contains(t) && (0..<classCount).contains(p), "confusionMatrix: class id out of range")
            m[t][p] += 1
        }
        return m
    }

    /// Flat metrics in the Hugging Face Trainer style, for `metrics.jsonl`, `eval_results.json` and the report:
    /// `<prefix>_accuracy`, `<prefix>_macro_f1`, `<prefix>_weighted_f1`, `<prefix>_samples`, per class
    /// `<prefix>_precision_<name>`, `<prefix>_recall_<name>`, `<prefix>_f1_<name>`, `<prefix>_support_<name>`,
    /// and `<prefix>_confusion_matrix` (an array of rows of Int). `prefix` may be given with or without its
    /// trailing underscore (`"eval"` and `"eval_"` both give `eval_accuracy`); an empty prefix gives the bare names.
    /// Values are Double, Int or [[Int]], all valid for `JSONSerialization`.
    public func asDictionary(prefix: String) -> [String: Any] {
        let p = prefix.isEmpty || prefix.hasSuffix("_") ? prefix : prefix + "_"
        var d: [String: Any] = [
            p + "accuracy": accuracy,
            p + "macro_f1": macroF1,
            p + "weighted_f1": weightedF1,
            p + "samples": Int(total),
            p + "confusion_matrix": confusion.map { $0.map { Int($0) } },
        ]
        for c in perClass {
            d[p + "precision_" + c.name] = c.precision
            d[p + "recall_" + c.name] = c.recall
            d[p + "f1_" + c.name] = c.f1
            d[p + "support_" + c.name] = Int(c.support)
        }
        return d
    }
}
