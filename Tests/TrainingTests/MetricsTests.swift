// MetricsTests: classification metrics against values worked out by hand, including sklearn's zero_division=0 cases.
//
// Deliberately not here: loss and perplexity (the trainer's), and all-reducing the counts (Dist's).

import Foundation
import XCTest
@testable import Training

final class MetricsTests: XCTestCase {
    // Tolerance: every expected value below is an exact fraction evaluated in Double; the code does a handful of
    // divisions and additions, so agreement to 1e-12 is ample and still catches any wrong formula.
    let eps = 1e-12

    func testThreeClassByHand() {
        //              pred a  b  c   support
        //   true a       5  1  0     6
        //   true b       2  3  1     6
        //   true c       0  0  4     4
        //   predicted    7  4  5     total 16, trace 12 → accuracy 12/16 = 0.75
        // a: P = 5/7, R = 5/6, F1 = 2·5/(2·5 + 2 + 1) = 10/13
        // b: P = 3/4, R = 3/6, F1 = 2·3/(2·3 + 1 + 3) = 6/10
        // c: P = 4/5, R = 4/4, F1 = 2·4/(2·4 + 1 + 0) = 8/9
        // macro F1 = (10/13 + 6/10 + 8/9) / 3; weighted = (6·10/13 + 6·6/10 + 4·8/9) / 16
        let m = ClassificationMetrics(confusion: [[5, 1, 0], [2, 3, 1], [0, 0, 4]], labels: ["a", "b", "c"])
        XCTAssertEqual(m.accuracy, 0.75, accuracy: eps)
        XCTAssertEqual(m.total, 16)
        XCTAssertEqual(m.perClass.map(\.name), ["a", "b", "c"])
        XCTAssertEqual(m.perClass.map(\.support), [6, 6, 4])
        let expected: [(p: Double, r: Double, f: Double)] = [(5.0 / 7, 5.0 / 6, 10.0 / 13), (3.0 / 4, 3.0 / 6, 6.0 / 10), (4.0 / 5, 1, 8.0 / 9)]
        for (c, e) in zip(m.perClass, expected) {
            XCTAssertEqual(c.precision, e.p, accuracy: eps, c.name)
            XCTAssertEqual(c.recall, e.r, accuracy: eps, c.name)
            XCTAssertEqual(c.f1, e.f, accuracy: eps, c.name)
        }
        XCTAssertEqual(m.macroF1, (10.0 / 13 + 6.0 / 10 + 8.0 / 9) / 3, accuracy: eps)
        XCTAssertEqual(m.macroF1, 0.752706552706553, accuracy: 1e-12)
        XCTAssertEqual(m.weightedF1, (6 * 10.0 / 13 + 6 * 6.0 / 10 + 4 * 8.0 / 9) / 16, accuracy: eps)
    }

    func testClassNeverSeenNorPredictedCountsAsZeroInMacro() {
        // c has no support and no predictions: P = R = F1 = 0 (zero_division=0), and it still divides the macro mean.
        // a: P = 2/2, R = 2/3, F1 = 4/5;  b: P = 3/4, R = 3/3, F1 = 6/7;  macro = (4/5 + 6/7 + 0) / 3
        let m = ClassificationMetrics(confusion: [[2, 1, 0], [0, 3, 0], [0, 0, 0]], labels: ["a", "b", "c"])
        XCTAssertEqual(m.perClass[2].precision, 0)
        XCTAssertEqual(m.perClass[2].recall, 0)
        XCTAssertEqual(m.perClass[2].f1, 0)
        XCTAssertEqual(m.macroF1, (4.0 / 5 + 6.0 / 7) / 3, accuracy: eps)
        XCTAssertEqual(m.accuracy, 5.0 / 6, accuracy: eps)
    }

    func testClassNeverPredicted() {
        // Everything predicted "b": a has P = 0/0 → 0, R = 0; b: P = 3/5, R = 1, F1 = 2·0.6/1.6 = 0.75.
        let m = ClassificationMetrics(confusion: [[0, 2], [0, 3]], labels: ["a", "b"])
        XCTAssertEqual(m.perClass[0].precision, 0)
        XCTAssertEqual(m.perClass[0].f1, 0)
        XCTAssertEqual(m.perClass[1].f1, 0.75, accuracy: eps)
        XCTAssertEqual(m.macroF1, 0.375, accuracy: eps)
        XCTAssertEqual(m.accuracy, 0.6, accuracy: eps)
    }

    func testEmptyMatrixIsAllZeroNotNaN() {
        let m = ClassificationMetrics(confusion: [[0, 0], [0, 0]], labels: ["a", "b"])
        XCTAssertEqual(m.accuracy, 0)
        XCTAssertEqual(m.macroF1, 0)
        XCTAssertEqual(m.weightedF1, 0)
    }

    func testConfusionMatrixFromPairs() {
        let truth = [0, 0, 1, 2, 2, 1]
        let pred = [0, 1, 1, 2, 0, 1]
        XCTAssertEqual(ClassificationMetrics.confusionMatrix(truth: truth, predicted: pred, classCount: 3),
                       [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    }

    func testDictionaryKeysAndJSONSafety() throws {
        let m = ClassificationMetrics(confusion: [[5, 1], [2, 3]], labels: ["ham", "spam"])
        let d = m.asDictionary(prefix: "eval")
        XCTAssertEqual(d["eval_accuracy"] as? Double ?? -1, 8.0 / 11, accuracy: eps)
        XCTAssertEqual(d["eval_macro_f1"] as? Double ?? -1, m.macroF1, accuracy: eps)
        // spam: P = 3/4, R = 3/5 → F1 = 6/9
        XCTAssertEqual(d["eval_f1_spam"] as? Double ?? -1, 6.0 / 9, accuracy: eps)
        XCTAssertEqual(d["eval_support_ham"] as? Int, 6)
        XCTAssertEqual(d["eval_samples"] as? Int, 11)
        XCTAssertEqual(d["eval_confusion_matrix"] as? [[Int]], [[5, 1], [2, 3]])
        XCTAssertTrue(JSONSerialization.isValidJSONObject(d))
        XCTAssertNoThrow(try JSONSerialization.data(withJSONObject: d, options: [.sortedKeys]))
        XCTAssertEqual(Set(m.asDictionary(prefix: "eval_").keys), Set(d.keys))
        XCTAssertNotNil(m.asDictionary(prefix: "")["accuracy"])
        XCTAssertNil(m.asDictionary(prefix: "")["_accuracy"])
    }

    func testCodableRoundTrip() throws {
        let m = ClassificationMetrics(confusion: [[5, 1, 0], [2, 3, 1], [0, 0, 4]], labels: ["a", "b", "c"])
        let back = try JSONDecoder().decode(ClassificationMetrics.self, from: JSONEncoder().encode(m))
        XCTAssertEqual(back, m)
    }
}
