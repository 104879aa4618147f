// Support: fixture loading shared by the tokenizer tests. Everything is read from the test bundle (copied
// from the shared golden set once); nothing here touches the network or anything outside the repository at run time.
import Foundation
import XCTest
import TestSupport
import Tokenizers

enum Fixtures {
    static var root: URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("Fixtures resource missing from the test bundle")
        }
        return url
    }

    /// Decoded with JSONDecoder: JSONSerialization drops a U+FEFF at the start of a string value (case 100).
    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: root.appendingPathComponent(name)))
    }

    /// A temp folder holding only `files` copied from `folder`, so loadTokenizer takes the route we want.
    static func folder(copying files: [String], from folder: String) throws -> URL {
        let dir = try TestPaths.tempDir("tok")
        for f in files {
            try FileManager.default.copyItem(at: root.appendingPathComponent(folder).appendingPathComponent(f),
                                             to: dir.appendingPathComponent(f))
        }
        return dir
    }

    /// BERT from vocab.txt + tokenizer_config.json + special_tokens_map.json (no tokenizer.json).
    static func bertFromVocab() throws -> any Tokenizer {
        let dir = try folder(copying: ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"], from: "bert-base-uncased")
        defer { try? FileManager.default.removeItem(at: dir) }   // the loader reads everything eagerly
        return try loadTokenizer(directory: dir)
    }
    /// BERT from tokenizer.json (the folder has everything; tokenizer.json wins).
    static func bertFromJSON() throws -> any Tokenizer {
        try loadTokenizer(directory: root.appendingPathComponent("bert-base-uncased"))
    }
    /// GPT-2 from vocab.json + merges.txt (+ configs).
    static func gpt2FromVocab() throws -> any Tokenizer {
        try loadTokenizer(directory: root.appendingPathComponent("gpt2"))
    }
    /// GPT-2 from the tokenizer.json that bench/tokenizers/make_gpt2_tokenizer_json.py derived with `tokenizers`.
    static func gpt2FromJSON() throws -> any Tokenizer {
        try loadTokenizer(directory: root.appendingPathComponent("gpt2-tokenizer-json"))
    }

    /// The exact input bytes of a golden case (its `utf8_hex`), checked against its `text`.
    static func text(hex: String, text: String, index: Int) throws -> String {
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            bytes.append(try XCTUnwrap(UInt8(hex[i..<j], radix: 16)))
            i = j
        }
        let s = try XCTUnwrap(String(validating: bytes, as: UTF8.self))
        XCTAssertEqual(Array(s.unicodeScalars), Array(text.unicodeScalars), "utf8_hex and text disagree in case \(index)")
        return s
    }
}

struct BertGolden: Decodable {
    struct Case: Decodable {
        var index: Int; var text: String; var utf8_hex: String
        var ids: [Int32]; var tokens: [String]; var ids_no_special: [Int32]; var tokens_no_special: [String]
        var token_type_ids: [Int32]
    }
    struct Pair: Decodable {
        struct Truncated: Decodable {
            var max_length: Int; var truncation: String; var ids: [Int32]; var tokens: [String]; var token_type_ids: [Int32]
        }
        var index: Int; var text_a: String; var text_b: String
        var ids: [Int32]; var tokens: [String]; var token_type_ids: [Int32]; var truncated: Truncated
    }
    var cases: [Case]
    var pairs: [Pair]
}

struct GPT2Golden: Decodable {
    struct Case: Decodable {
        var index: Int; var text: String; var utf8_hex: String
        var ids: [Int32]; var tokens: [String]; var ids_no_special: [Int32]; var decoded: String; var roundtrip_equal: Bool
    }
    var cases: [Case]
}

/// Collects mismatches so one assertion can report how many cases failed and show the first few.
struct Mismatches {
    var items: [String] = []
    var checked = 0
    mutating func check<T: Equatable>(_ got: T, _ want: T, _ what: @autoclosure () -> String) {
        checked += 1
        if got != want { items.append("\(what()): got \(got), want \(want)") }
    }
    func assertNone(_ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertGreaterThan(checked, 0, "\(label): nothing was checked", file: file, line: line)
        XCTAssert(items.isEmpty, "\(label): \(items.count) of \(checked) checks failed; first:\n"
                  + items.prefix(6).joined(separator: "\n"), file: file, line: line)
    }
}
