// TestSupport: what every test target shares. Locating the repository and the built `disttrain` binary, fixture
// folders (kept in the repository: Tests/ModelTests/Fixtures; nothing here reads outside it), throwaway folders, a
// seeded random generator, and a tolerance comparison that names the worst element.
// Deliberately not here: anything one target alone needs (its own fixture decoding, its own assertions).
import Foundation
import XCTest
import SplitMix

public enum TestPaths {
    /// The repository root, from this file's path (Tests/TestSupport/TestSupport.swift).
    public static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A model fixture folder (config.json, model.safetensors, tokenizer files, goldens) by name, e.g. "bert-tiny-cls".
    public static func fixture(_ name: String) -> URL {
        repoRoot.appendingPathComponent("Tests/ModelTests/Fixtures").appendingPathComponent(name)
    }

    /// A copy of fixture `name` holding only `files` (all of its regular files when nil), in a fresh temp folder, so a
    /// test may change it.
    public static func copyFixture(_ name: String, files: [String]? = nil) throws -> URL {
        let src = fixture(name)
        let dst = try tempDir("fixture-\(name)")
        let fm = FileManager.default
        for f in try files ?? fm.contentsOfDirectory(atPath: src.path) {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: src.appendingPathComponent(f).path, isDirectory: &isDir), !isDir.boolValue else { continue }
            try fm.copyItem(at: src.appendingPathComponent(f), to: dst.appendingPathComponent(f))
        }
        return dst
    }

    /// A fresh folder under the system temp directory (the caller removes it, or the OS does).
    public static func tempDir(_ tag: String) throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("disttrain-\(tag)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// The built executable `name`, next to the test bundle in .build/<config>/ (skips the test when absent).
    public static func binary(_ name: String = "disttrain") throws -> URL {
        var candidates: [URL] = []
        for b in [Bundle.main.bundleURL] + Bundle.allBundles.map(\.bundleURL) {
            candidates.append(b.deletingLastPathComponent().appendingPathComponent(name))
            candidates.append(b.appendingPathComponent(name))
        }
        candidates.append(repoRoot.appendingPathComponent(".build/debug/\(name)"))
        for c in candidates where FileManager.default.isExecutableFile(atPath: c.path) { return c }
        throw XCTSkip("\(name) binary not found next to the test bundle (looked in \(candidates.map(\.path))); run `swift build` first")
    }
}

/// A fresh folder under the system temp directory, removed when the value goes away.
public final class TempFolder {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("disttrain-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    @discardableResult
    public func write(_ name: String, _ text: String) throws -> URL {
        try write(name, bytes: Array(text.utf8))
    }

    @discardableResult
    public func write(_ name: String, bytes: [UInt8]) throws -> URL {
        let file = url.appendingPathComponent(name)
        try Data(bytes).write(to: file)
        return file
    }
}

/// |a - b| <= atol + rtol·|ref| element-wise; fails naming the tensor, the worst index and its error.
public func assertClose(_ a: [Float], _ ref: [Float], atol: Double, rtol: Double = 0, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == ref.count else {
        XCTFail("\(what): \(a.count) values, reference has \(ref.count)", file: file, line: line); return
    }
    var worst = -1, worstExcess = 0.0, maxErr = 0.0
    for i in 0..<a.count {
        let e = abs(Double(a[i]) - Double(ref[i]))
        maxErr = max(maxErr, e)
        let excess = e - (atol + rtol * abs(Double(ref[i])))
        if excess > worstExcess || (!e.isFinite) { worstExcess = excess.isFinite ? excess : .infinity; worst = i }
    }
    if worst >= 0 {
        XCTFail("\(what): max abs error \(maxErr); worst at [\(worst)] got \(a[worst]) want \(ref[worst]) (atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}

/// Seeded generator for test inputs (SplitMix64; normals by Box-Muller).
public struct TestRNG {
    public var g: SplitMix64
    public init(_ seed: UInt64) { g = SplitMix64(seed: seed) }
    public mutating func next() -> UInt64 { g.next() }
    public mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
    public mutating func floats(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float(normal() * scale) } }
    /// Uniform in 0..<n.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
