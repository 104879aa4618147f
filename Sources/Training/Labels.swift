// Labels: the ordered set of class names that maps a label string to a class id and back.
//
// Deliberately not here: reading labels out of data rows (DataLoader.swift does that and calls `inferred(from:)`),
// and config.json's id2label/label2id (the model layer writes those from `names`).

import Foundation
import Tokenizers

/// Ordered, duplicate-free class names; the index of a name is its class id.
///
/// Where the order comes from, in priority:
/// 1. `--labels FILE` (`fromFile`): the file's order, one name per line.
/// 2. The training data (`inferred(from:)`): if every label is an integer (a JSON integer, or a string such as
///    `"0"`, `"-1"`, `"+2"`), classes are in numeric order and the names are the strings as seen (`"0"`, `"1"`, ...);
///    otherwise the unique names sorted by Unicode code point (Python's `sorted()`, which Hugging Face's
///    `run_glue.py` uses, so ids match a model trained there). Missing integers are not filled in: labels {0, 2, 5}
///    give three classes named "0", "2", "5" with ids 0, 1, 2 — exactly what `run_glue.py` does.
///
/// Data rows are matched against `names`; `DataLoader.loadLabeled` also accepts integer class ids when no name
/// looks like an integer (see there).
public struct LabelSet: Sendable, Equatable, Codable {
    /// Class names; `names[id]` is the name of class `id`.
    public let names: [String]
    // Lookup table built once; not part of equality or the encoded form.
    private let index: [String: Int]

    /// A label set with this exact order. Throws when `names` is empty, holds an empty name, or repeats a name.
    public init(names: [String]) throws {
        try self.init(names: names, file: "labels", lines: nil)
    }

    private init(names: [String], file: String, lines: [Int]?) throws {
        guard !names.isEmpty else {
            throw DataError(file: file, line: nil, problem: "no label names",
                            fix: "list at least two class names, one per line")
        }
        var index: [String: Int] = [:]
        index.reserveCapacity(names.count)
        for (i, name) in names.enumerated() {
            if name.isEmpty {
                throw DataError(file: file, line: lines?[i], problem: "empty label name at position \(i)",
                                fix: "every class needs a non-empty name")
            }
            if let first = index[name] {
                let where_ = lines.map { "line \($0[first])" } ?? "position \(first)"
                throw DataError(file: file, line: lines?[i], problem: "duplicate label \(LabelSet.quote(name)) (already at \(where_))",
                                fix: "list each class name once")
            }
            index[name] = i
        }
        self.names = names
        self.index = index
    }

    /// The class id of `name`, or nil if it is not one of the classes.
    public func id(of name: String) -> Int? { index[name] }

    public var count: Int { names.count }

    /// Reads `--labels FILE`: one class name per line, in class-id order. Surrounding whitespace (and a CR of CRLF
    /// files) is trimmed, blank lines are skipped; an empty file or a repeated name is an error naming the line.
    public static func fromFile(_ url: URL) throws -> LabelSet {
        let file = url.relativePath
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw DataError(file: file, line: nil, problem: "cannot read the labels file (\(DataLoader.reason(error, url: url)))",
                            fix: "check the path given to --labels")
        }
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if let bad = UTF8Check.firstInvalidOffset(bytes) {
            throw DataError(file: file, line: UTF8Check.line(at: bad, in: bytes), problem: "not valid UTF-8",
                            fix: "save the labels file as UTF-8")
        }
        var names: [String] = []
        var lines: [Int] = []
        var lineNo = 0
        for raw in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            let name = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if name.isEmpty { continue }
            names.append(name)
            lines.append(lineNo)
        }
        if names.isEmpty {
            throw DataError(file: file, line: nil, problem: "labels file is empty",
                            fix: "write one class name per line, in class-id order")
        }
        return try LabelSet(names: names, file: file, lines: lines)
    }

    /// The label set implied by the labels seen in training data (in any order, repeats allowed); see the type's
    /// documentation for the rule. Throws when `labels` is empty or holds an empty name (the loader reports those
    /// earlier, with a line number).
    public static func inferred(from labels: some Sequence<String>) throws -> LabelSet {
        let unique = Array(Set(labels))
        let ints = unique.map(integerValue)
        let sorted: [String]
        if !unique.isEmpty, ints.allSatisfy({ $0 != nil }) {
            // Numeric order; distinct spellings of one number ("1", "01") stay distinct, ordered by code point.
            sorted = zip(unique, ints).sorted { a, b in
                a.1! != b.1! ? a.1! < b.1! : codePointLess(a.0, b.0)
            }.map(\.0)
        } else {
            sorted = unique.sorted(by: codePointLess)
        }
        return try LabelSet(names: sorted)
    }

    /// `s` as an integer if it is one (optional sign, ASCII digits, fits in Int), else nil.
    static func integerValue(_ s: String) -> Int? {
        let u = s.utf8
        guard let first = u.first else { return nil }
        let digits = (first == UInt8(ascii: "-") || first == UInt8(ascii: "+")) ? u.dropFirst() : u[...]
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(s)
    }

    /// Python's string order: by Unicode code point, which for UTF-8 is plain byte order.
    /// (Swift's `<` on String compares canonical equivalents and is not what Python does.)
    static func codePointLess(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    static func quote(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// The names for an error message, quoted; long lists are cut so the message stays readable.
    func listForMessage(limit: Int = 20) -> String {
        let shown = names.prefix(limit).map(LabelSet.quote).joined(separator: ", ")
        return names.count > limit ? shown + ", ... (\(names.count) in all)" : shown
    }

    // Codable through `names` only; the index is rebuilt.
    private enum CodingKeys: String, CodingKey { case names }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(names: c.decode([String].self, forKey: .names))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(names, forKey: .names)
    }

    public static func == (a: LabelSet, b: LabelSet) -> Bool { a.names == b.names }
}
