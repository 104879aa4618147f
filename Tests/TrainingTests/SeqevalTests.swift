// Seqeval.swift against seqeval 1.2.2 itself: Fixtures/ner-golden/seqeval.json holds, per scheme (IOB1, IOB2,
// IOE1, IOE2, IOBES, BILOU), 30 groups of 4 random (true, pred) sentences with seqeval's entities in default mode
// (get_entities over the flattened list) and strict mode (Entities), its classification_report in both modes and
// accuracy_score (scripts/goldens/ner_goldens.py). Entities must match exactly; metrics to 1e-12.
import Foundation
import XCTest
@testable import Training

final class SeqevalTests: XCTestCase {
    let schemes: [String: TagScheme] = ["iob1": .iob1, "iob2": .iob2, "ioe1": .ioe1, "ioe2": .ioe2, "iobes": .iobes, "bilou": .bilou]

    func golden() throws -> [String: [[String: Any]]] {
        let url = TestPaths.fixture("ner-golden").appendingPathComponent("seqeval.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return json["schemes"] as! [String: [[String: Any]]]
    }

    struct Flat: Hashable { let type: String, start: Int, end: Int }
    struct Strict: Hashable { let sentence: Int, type: String, start: Int, end: Int }

    func testEntitiesMatchSeqevalInDefaultAndStrictModes() throws {
        let all = try golden()
        XCTAssertEqual(Set(all.keys), Set(schemes.keys))
        var checked = 0
        for (name, groups) in all {
            let scheme = schemes[name]!
            for (gi, g) in groups.enumerated() {
                for side in ["true", "pred"] {
                    let sents = g[side] as! [[String]]
                    // Default mode: seqeval flattens with an "O" after each sentence; our per-sentence entities shifted.
                    var ours = [Flat](), offset = 0
                    var strict = [Strict]()
                    for (k, s) in sents.enumerated() {
                        ours += Seqeval.entities(s, scheme: .default, sentence: k).map { Flat(type: $0.type, start: $0.start + offset, end: $0.end + offset) }
                        strict += Seqeval.entities(s, scheme: scheme, sentence: k).map { Strict(sentence: k, type: $0.type, start: $0.start, end: $0.end) }
                        offset += s.count + 1
                    }
                    let ref = (g["default_entities_\(side)"] as! [[Any]]).map { Flat(type: $0[0] as! String, start: $0[1] as! Int, end: $0[2] as! Int) }
                    XCTAssertEqual(ours, ref, "\(name) group \(gi) \(side): default-mode entities of \(sents)")
                    let refStrict = (g["strict_entities_\(side)"] as! [[Any]]).map {
                        Strict(sentence: $0[0] as! Int, type: $0[1] as! String, start: $0[2] as! Int, end: $0[3] as! Int)
                    }
                    XCTAssertEqual(strict, refStrict, "\(name) group \(gi) \(side): strict \(name) entities of \(sents)")
                    checked += sents.count
                }
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 6 * 200)
    }

    func testMetricsMatchSeqevalReports() throws {
        for (name, groups) in try golden() {
            for (gi, g) in groups.enumerated() {
                let yt = g["true"] as! [[String]], yp = g["pred"] as! [[String]]
                for (mode, scheme) in [("default_report", TagScheme.default), ("strict_report", schemes[name]!)] {
                    var counts = SeqevalCounts()
                    for k in yt.indices { counts.add(true: yt[k], pred: yp[k], scheme: scheme, sentence: k) }
                    // The all-reduce form round-trips.
                    let types = counts.types.keys.sorted()
                    XCTAssertEqual(SeqevalCounts(flattened: counts.flattened(typeNames: types), typeNames: types), counts)
                    let m = counts.metrics(prefix: "")
                    // (JSON null marks seqeval's NaN averages, which are not compared)
                    let report = (g[mode] as! [String: [String: Any]]).mapValues { $0.compactMapValues { ($0 as? NSNumber)?.doubleValue } }
                    for (key, row) in report where !key.hasSuffix(" avg") {
                        let what = "\(name) group \(gi) \(mode) \(key)"
                        XCTAssertEqual(m["\(key)_precision"] ?? -1, row["precision"]!, accuracy: 1e-12, what)
                        XCTAssertEqual(m["\(key)_recall"] ?? -1, row["recall"]!, accuracy: 1e-12, what)
                        XCTAssertEqual(m["\(key)_f1"] ?? -1, row["f1-score"]!, accuracy: 1e-12, what)
                        XCTAssertEqual(m["\(key)_number"] ?? -1, row["support"]!, what)
                    }
                    if let micro = report["micro avg"] {
                        XCTAssertEqual(m["precision"]!, micro["precision"]!, accuracy: 1e-12, "\(name) \(gi) \(mode) micro precision")
                        XCTAssertEqual(m["recall"]!, micro["recall"]!, accuracy: 1e-12, "\(name) \(gi) \(mode) micro recall")
                        XCTAssertEqual(m["f1"]!, micro["f1-score"]!, accuracy: 1e-12, "\(name) \(gi) \(mode) micro f1")
                    }
                    XCTAssertEqual(m["accuracy"]!, (g["accuracy"] as! NSNumber).doubleValue, accuracy: 1e-12, "\(name) \(gi) accuracy")
                }
            }
        }
    }

    func testSchemeCheckRefusesForeignPrefixes() {
        XCTAssertNil(TagScheme.iob2.check("B-PER"))
        XCTAssertNotNil(TagScheme.iob2.check("E-PER"))
        XCTAssertNotNil(TagScheme.bilou.check("S-PER"))
        XCTAssertNil(TagScheme.default.check("X-anything"))
    }
}
