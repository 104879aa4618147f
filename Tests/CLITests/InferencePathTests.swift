// One inference path for classifiers (issue 15, point 2), through the real binary: after `train` (BERT-family and
// GPT-2 classifiers), `eval` on the same eval file prints exactly the numbers of the trainer's eval_results.json —
// the same batches through the same code, so equal to the last bit (within float32 rounding under `mpirun -n 2`) — and
// `predict`'s arg-max labels reproduce its confusion matrix. (Before, `eval` re-implemented the evaluation and its
// eval_loss differed from the trainer's in the ninth digit.)
import Foundation
import XCTest

final class InferencePathTests: XCTestCase {
    let fixtures = CLI.repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures")
    var dir: URL!

    var savedThreads: String?

    override func setUpWithError() throws {
        dir = try CLI.tempDir("infer")
        // `eval` has no --threads: one BLAS thread, as `train --threads 1` computes, so that the sums are the same.
        savedThreads = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"]
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
    }
    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
        if let savedThreads { setenv("OPENBLAS_NUM_THREADS", savedThreads, 1) } else { unsetenv("OPENBLAS_NUM_THREADS") }
    }

    /// Lines `range` of the SMS spam test file (labels ham/spam).
    func subset(_ range: Range<Int>, _ name: String) throws -> URL {
        let lines = try String(contentsOf: CLI.repoRoot.appendingPathComponent("data/sms-spam/test.jsonl"), encoding: .utf8).split(separator: "\n")
        let url = dir.appendingPathComponent(name)
        try (lines[range].joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func object(_ s: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any], s)
    }

    func testEvalAndPredictAgreeExactlyWithTheTrainersEvaluation() throws {
        let train = try subset(0..<40, "train.jsonl"), eval = try subset(40..<77, "eval.jsonl")
        for name in ["bert-tiny-cls", "gpt2-tiny-cls"] {
            let out = dir.appendingPathComponent(name)
            let t = try CLI.run(["train", "--model", fixtures.appendingPathComponent(name).path, "--train-file", train.path,
                                 "--eval-file", eval.path, "--output-dir", out.path, "--batch-size", "8", "--max-steps", "3",
                                 "--learning-rate", "3e-3", "--max-length", "24", "--seed", "3", "--threads", "1"], timeout: 240)
            XCTAssertEqual(t.status, 0, t.stderr)
            let trained = try object(String(contentsOf: out.appendingPathComponent("eval_results.json"), encoding: .utf8))
            // --batch-size 8: the trainer evaluates in batches of its micro-batch (8 here).
            let args = ["eval", "--model", out.path, "--eval-file", eval.path, "--max-length", "24", "--batch-size", "8"]
            for ranks in [nil, 2] as [Int?] {
                let r = try CLI.run(args, ranks: ranks, timeout: 180)
                XCTAssertEqual(r.status, 0, r.stderr)
                let e = try object(r.stdout)
                for key in ["eval_loss", "eval_accuracy", "eval_macro_f1"] {
                    let a = (e[key] as? NSNumber)?.doubleValue ?? .nan, b = (trained[key] as? NSNumber)?.doubleValue ?? .nan
                    if ranks == nil {
                        // Bit-equal: the same examples in the same batches through the same code.
                        XCTAssertEqual(a, b, "\(name) \(key)")
                    } else {
                        // Two shards batch other examples together (other padding, so float32 logits differ in
                        // their last bits) and sum in another order.
                        XCTAssertEqual(a, b, accuracy: 1e-6 * max(abs(b), 1), "\(name) \(key), 2 ranks")
                    }
                }
                XCTAssertEqual(e["eval_confusion_matrix"] as? [[Int]], trained["eval_confusion_matrix"] as? [[Int]], name)
            }
            // predict's labels give the same confusion matrix.
            let p = try CLI.run(["predict", "--model", out.path, "--input", eval.path, "--max-length", "24"])
            XCTAssertEqual(p.status, 0, p.stderr)
            let predicted = try p.stdout.split(separator: "\n").map { try object(String($0))["label"] as? String ?? "" }
            let truth = try String(contentsOf: eval, encoding: .utf8).split(separator: "\n").map { try object(String($0))["label"] as? String ?? "" }
            let names = ["ham", "spam"]
            var matrix = [[0, 0], [0, 0]]
            for (t, q) in zip(truth, predicted) { matrix[names.firstIndex(of: t)!][names.firstIndex(of: q)!] += 1 }
            XCTAssertEqual(matrix, trained["eval_confusion_matrix"] as? [[Int]], "\(name): predict's labels")
        }
    }
}
