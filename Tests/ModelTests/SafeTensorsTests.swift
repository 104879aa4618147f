// Tests of the safetensors reader/writer and of weight loading against hostile and mismatched files.
import XCTest
@testable import Model

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Builds a file from a raw header string and a data area.
    func rawFile(_ header: String, data: [UInt8], declaredLength: UInt64? = nil) throws -> URL {
        let h = Array(header.utf8)
        var bytes = [UInt8]()
        var len = (declaredLength ?? UInt64(h.count)).littleEndian
        withUnsafeBytes(of: &len) { bytes += $0 }
        bytes += h + data
        let url = dir.appendingPathComponent("t-\(UUID().uuidString).safetensors")
        try Data(bytes).write(to: url)
        return url
    }

    func assertFails(_ url: URL, contains needle: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(url: url), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(needle), "message '\(text)' lacks '\(needle)'", file: file, line: line)
            XCTAssertTrue(text.contains(url.path), "message '\(text)' does not name the file", file: file, line: line)
        }
    }

    func testRoundTripSortedPaddedWithMetadata() throws {
        let url = dir.appendingPathComponent("m.safetensors")
        let a: [Float] = [1, -2, 3.5, 4, 5, 6]
        try SafeTensorsWriter.write([
            TensorToWrite(name: "z.weight", shape: [2, 3], floats: a),
            TensorToWrite(name: "a.ids", shape: [3], int64s: [7, -8, 9]),
        ], to: url)
        let bytes = try Data(contentsOf: url)
        let n = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + Int(n)) % 8, 0, "header must be padded to 8 bytes")
        let header = String(decoding: bytes[8..<(8 + Int(n))], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{\"__metadata__\":{\"format\":\"pt\"}"), header)
        XCTAssertLessThan(header.range(of: "a.ids")!.lowerBound, header.range(of: "z.weight")!.lowerBound, "names sorted")
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(f.metadata["format"], "pt")
        XCTAssertEqual(try f.floats("z.weight"), a)
        XCTAssertEqual(f.info("z.weight")?.shape, [2, 3])
        XCTAssertEqual(try f.int64s("a.ids"), [7, -8, 9])
    }

    func testHalfAndBFloat16Conversion() throws {
        // F16 1.5 = 0x3E00, -2 = 0xC000; BF16 1.5 = 0x3FC0, -2 = 0xC000.
        let url = try rawFile(#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}"#,
                              data: [0x00, 0x3E, 0x00, 0xC0, 0xC0, 0x3F, 0x00, 0xC0])
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(try f.floats("h"), [1.5, -2])
        XCTAssertEqual(try f.floats("b"), [1.5, -2])
    }

    func testTruncatedFile() throws {
        let url = dir.appendingPathComponent("short.safetensors")
        try Data([1, 2, 3]).write(to: url)
        assertFails(url, contains: "too short")
    }

    func testHeaderLengthPastEnd() throws {
        let url = try rawFile("{}", data: [], declaredLength: 4096)
        assertFails(url, contains: "runs past the end")
    }

    func testAbsurdHeaderLength() throws {
        let url = try rawFile("{}", data: [], declaredLength: 1 << 40)
        assertFails(url, contains: "100 MB")
    }

    func testOffsetsOutOfRange() throws {
        let url = try rawFile(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0])
        assertFails(url, contains: "outside the data area")
    }

    func testOverlappingOffsets() throws {
        let url = try rawFile(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                              data: [UInt8](repeating: 0, count: 8))
        assertFails(url, contains: "overlap")
    }

    func testHoleBetweenTensors() throws {
        let url = try rawFile(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                              data: [UInt8](repeating: 0, count: 12))
        assertFails(url, contains: "hole")
    }

    func testShapeDoesNotMatchBytes() throws {
        let url = try rawFile(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertFails(url, contains: "needs 12 bytes")
    }

    func testAbsurdShape() throws {
        let url = try rawFile(#"{"a":{"dtype":"F32","shape":[2000000000,2000000000],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertFails(url, contains: "larger than the file")
    }

    func testUnknownDTypeNamesTensor() throws {
        let url = try rawFile(#"{"weird":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, data: [0])
        assertFails(url, contains: "'weird': unsupported dtype 'F8_E4M3'")
    }

    func testHeaderNotJSON() throws {
        let url = try rawFile("{nope", data: [])
        assertFails(url, contains: "not valid JSON")
    }

    func testMissingFile() {
        assertFails(dir.appendingPathComponent("absent.safetensors"), contains: "cannot open")
    }

    func testWriterLeavesNoPartialFileOnError() throws {
        let url = dir.appendingPathComponent("bad.safetensors")
        XCTAssertThrowsError(try SafeTensorsWriter.write([TensorToWrite(name: "a", shape: [5], floats: [1, 2])], to: url))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "nothing half-written")
    }
}

final class WeightLoadingTests: XCTestCase {
    func layout() -> ParameterLayout {
        var l = ParameterLayout()
        l.add("bert.embeddings.LayerNorm.weight", [4])
        l.add("bert.encoder.layer.0.attention.self.query.weight", [4, 4])
        l.add("bert.pooler.dense.weight", [4, 4])
        l.add("bert.pooler.dense.bias", [4])
        return l
    }

    func write(_ tensors: [TensorToWrite]) throws -> SafeTensorsFile {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("wl-\(UUID().uuidString).safetensors")
        try SafeTensorsWriter.write(tensors, to: url)
        return try SafeTensorsFile(url: url)
    }

    func testPrefixlessLegacyNamesAndOptionalHeadInit() throws {
        let q = (0..<16).map { Float($0) }
        let file = try write([
            TensorToWrite(name: "embeddings.LayerNorm.gamma", shape: [4], floats: [1, 2, 3, 4]),
            TensorToWrite(name: "encoder.layer.0.attention.self.query.weight", shape: [4, 4], floats: q),
            TensorToWrite(name: "embeddings.position_ids", shape: [4], int64s: [0, 1, 2, 3]),
        ])
        let store = ParameterStore(layout: layout())
        let report = try WeightLoader.load(into: store, from: file, prefix: "bert.",
                                           isOptional: { $0.hasPrefix("bert.pooler.") }, seed: 7, initializerRange: 0.02)
        XCTAssertEqual(Array(store.value("bert.embeddings.LayerNorm.weight")), [1, 2, 3, 4])
        XCTAssertEqual(Array(store.value("bert.encoder.layer.0.attention.self.query.weight")), q)
        XCTAssertEqual(report.initialized, ["bert.pooler.dense.weight", "bert.pooler.dense.bias"])
        XCTAssertEqual(report.unused, ["embeddings.position_ids"])
        XCTAssertEqual(Array(store.value("bert.pooler.dense.bias")), [0, 0, 0, 0])
        let w = Array(store.value("bert.pooler.dense.weight"))
        XCTAssertTrue(w.contains { $0 != 0 } && w.allSatisfy { abs($0) < 0.2 }, "N(0, 0.02) init: \(w)")
    }

    func testMissingTensorNamesItAndShape() throws {
        let file = try write([TensorToWrite(name: "bert.embeddings.LayerNorm.weight", shape: [4], floats: [1, 2, 3, 4])])
        let store = ParameterStore(layout: layout())
        XCTAssertThrowsError(try WeightLoader.load(into: store, from: file, prefix: "bert.", isOptional: { _ in false },
                                                   seed: 1, initializerRange: 0.02)) { e in
            XCTAssertTrue("\(e)".contains("missing tensor 'bert.encoder.layer.0.attention.self.query.weight' (expected shape [4, 4])"), "\(e)")
        }
    }

    func testShapeMismatchNamesBothShapes() throws {
        let file = try write([
            TensorToWrite(name: "bert.embeddings.LayerNorm.weight", shape: [4], floats: [1, 2, 3, 4]),
            TensorToWrite(name: "bert.encoder.layer.0.attention.self.query.weight", shape: [2, 8], floats: [Float](repeating: 0, count: 16)),
        ])
        let store = ParameterStore(layout: layout())
        XCTAssertThrowsError(try WeightLoader.load(into: store, from: file, prefix: "bert.", isOptional: { $0.contains("pooler") },
                                                   seed: 1, initializerRange: 0.02)) { e in
            XCTAssertTrue("\(e)".contains("has shape [2, 8] but config.json implies [4, 4]"), "\(e)")
        }
    }
}
