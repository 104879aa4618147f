// DataLoader: turns a JSONL, CSV or TSV file (or stdin) into a `TextDataset` of plain-text examples with class ids,
// rejecting every malformed row with a one-line `DataError` that names file:line and the fix; plus a seeded
// train/validation split.
//
// Deliberately not here: tokenization, truncation, padding, length bucketing, sharding across ranks and per-epoch
// shuffling (the trainer and `Dist` own those), and any silent repair of bad rows — a bad row stops the run, because
// training on quietly dropped or mangled data is worse than failing early.

import Crypto
import Foundation
import SplitMix
import Tokenizers

public enum DataLoader {
    /// Labeled data for train/eval. Every row needs the text column (and the pair column when configured) and a label.
    ///
    /// - Parameters:
    ///   - labels: the known classes (from `--labels FILE`, the training data, or a model's config). When nil, the
    ///     label set is inferred from this file by `LabelSet.inferred(from:)` and must have at least two classes.
    ///     When given, a row whose label is not in it is an error naming file:line, the label and the known labels.
    ///     If none of the given names looks like an integer, integer labels 0..<count are accepted as class ids
    ///     (the Hugging Face `ClassLabel` convention, e.g. SST-2 stores 0/1 and names them elsewhere); a file must
    ///     then use ids throughout or names throughout.
    ///   - format: overrides the format inferred from the extension.
    /// - Returns: the dataset, and the label set its `Example.label` ids index into (`labels` itself when given).
    public static func loadLabeled(_ url: URL, columns: ColumnOptions, labels: LabelSet?,
                                   format: DataFormat? = nil) throws -> (TextDataset, LabelSet) {
        let source = try Source.read(url, format: format)
        let rows = try readRows(source, columns: columns, wantLabel: true)
        let labelSet: LabelSet
        if let labels {
            labelSet = labels
        } else {
            labelSet = try LabelSet.inferred(from: rows.map { $0.label! })
            if labelSet.count < 2 {
                throw DataError(file: source.file, line: nil,
                                problem: "every row has the same label \(LabelSet.quote(labelSet.names[0])), but a classifier needs at least two classes",
                                fix: "check --label-column, or pass --labels FILE listing every class")
            }
        }
        // Hugging Face ClassLabel convention: data may store class ids (0, 1, ...) while the names come from
        // --labels or a model's id2label. Only allowed when no class name looks like an integer, so a label can
        // never mean both a name and an id.
        let idsAllowed = !labelSet.names.contains { LabelSet.integerValue($0) != nil }
        var firstKind: (byId: Bool, line: Int)? = nil
        var examples: [Example] = []
        examples.reserveCapacity(rows.count)
        for row in rows {
            let name = row.label!
            let id: Int
            let byId: Bool
            if let named = labelSet.id(of: name) {
                (id, byId) = (named, false)
            } else if idsAllowed, let k = LabelSet.integerValue(name), (0..<labelSet.count).contains(k) {
                (id, byId) = (k, true)
            } else {
                let idNote = idsAllowed && LabelSet.integerValue(name) != nil ? " nor a class id 0...\(labelSet.count - 1)" : ""
                throw DataError(file: source.file, line: row.line,
                                problem: "unknown label \(LabelSet.quote(name))\(idNote) (known labels: \(labelSet.listForMessage()))",
                                fix: "correct the label, or list every class in --labels FILE")
            }
            if let first = firstKind, first.byId != byId {
                throw DataError(file: source.file, line: row.line,
                                problem: "label \(LabelSet.quote(name)) is a class \(byId ? "id" : "name") but line \(first.line) uses class \(first.byId ? "ids" : "names")",
                                fix: "use class names (\(labelSet.listForMessage(limit: 3))) or class ids 0...\(labelSet.count - 1) throughout the file, not both")
            }
            if firstKind == nil { firstKind = (byId, row.line) }
            examples.append(Example(text: row.text, textPair: row.pair, label: id, line: row.line))
        }
        return (TextDataset(url: url, format: source.format, examples: examples, fingerprint: source.fingerprint), labelSet)
    }

    /// Unlabeled data for predict: every row needs the text column (and the pair column when configured); a label
    /// column, if present, is ignored. `url` `-` reads standard input (JSONL unless `format` says otherwise).
    public static func loadTexts(_ url: URL, columns: ColumnOptions, format: DataFormat? = nil) throws -> TextDataset {
        let source = try Source.read(url, format: format)
        let rows = try readRows(source, columns: columns, wantLabel: false)
        let examples = rows.map { Example(text: $0.text, textPair: $0.pair, label: nil, line: $0.line) }
        return TextDataset(url: url, format: source.format, examples: examples, fingerprint: source.fingerprint)
    }

    /// Seeded split into train and validation parts, for `--validation-split` when no eval file is given.
    ///
    /// The validation part gets `ceil(count × validationFraction)` examples (scikit-learn's `train_test_split`
    /// rounding), chosen by a Fisher–Yates shuffle driven by SplitMix64 from `seed` — integer arithmetic only, so
    /// every rank and platform picks the same rows. Both parts keep file order (the trainer shuffles per epoch).
    /// It is not stratified. Each part's fingerprint is SHA-256 of the parent fingerprint and the split parameters.
    /// Throws when the fraction is not in (0, 1) or a part would be empty.
    public static func split(_ ds: TextDataset, validationFraction: Double,
                             seed: UInt64) throws -> (train: TextDataset, validation: TextDataset) {
        let file = displayName(ds.url)
        guard validationFraction.isFinite, validationFraction > 0, validationFraction < 1 else {
            throw DataError(file: file, line: nil,
                            problem: "validation split \(validationFraction) is not a fraction strictly between 0 and 1",
                            fix: "pass e.g. --validation-split 0.1 to hold out 10% of the training data")
        }
        let n = ds.examples.count
        let exact = Double(n) * validationFraction
        // Shave a relative 1e-12 so products like 0.3 × 10 = 3.0000000000000004 do not round up to 4.
        let nVal = max(1, Int((exact - exact * 1e-12).rounded(.up)))
        guard nVal < n else {
            throw DataError(file: file, line: nil,
                            problem: "validation split \(validationFraction) of \(n) example\(n == 1 ? "" : "s") leaves no training examples",
                            fix: "use a smaller --validation-split, more data, or a separate --eval-file")
        }
        var order = Array(0..<n)
        var rng = DataSplitRNG(seed: seed)
        for i in stride(from: n - 1, to: 0, by: -1) {
            order.swapAt(i, Int(rng.next(below: UInt64(i + 1))))
        }
        let validationIdx = order[..<nVal].sorted()
        let trainIdx = order[nVal...].sorted()
        func part(_ idx: [Int], _ name: String) -> TextDataset {
            let tag = "\(ds.fingerprint)|split|\(validationFraction)|\(seed)|\(name)"
            return TextDataset(url: ds.url, format: ds.format, examples: idx.map { ds.examples[$0] },
                               fingerprint: hex(SHA256.hash(data: Data(tag.utf8))))
        }
        return (part(trainIdx, "train"), part(validationIdx, "validation"))
    }

    // MARK: - Reading

    /// One row before label ids are assigned.
    struct RawRow {
        var text: String
        var pair: String?
        var label: String?
        var line: Int
    }

    /// A file's bytes after the checks every format shares (exists, non-empty, UTF-8), BOM removed.
    struct Source {
        var file: String
        var format: DataFormat
        var body: [UInt8]
        var fingerprint: String

        static func read(_ url: URL, format explicit: DataFormat?) throws -> Source {
            let file = displayName(url)
            let isStdin = url.relativePath == "-"
            let data: Data
            if isStdin {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                do {
                    data = try Data(contentsOf: url)
                } catch {
                    throw DataError(file: file, line: nil, problem: "cannot read the file (\(reason(error, url: url)))",
                                    fix: "check the path (relative paths start at \(FileManager.default.currentDirectoryPath))")
                }
            }
            // Checked after reading, so a mistyped path is reported as missing rather than as an odd extension.
            guard let format = explicit ?? DataFormat.infer(from: url) ?? (isStdin ? .jsonl : nil) else {
                throw DataError(file: file, line: nil,
                                problem: "cannot tell the data format from the extension \"\(url.pathExtension)\"",
                                fix: "name the file .jsonl, .csv or .tsv, or pass --data-format jsonl|csv|tsv")
            }
            let fingerprint = hex(SHA256.hash(data: data))
            var body = [UInt8](data)
            // A UTF-8 byte-order mark (Excel writes one) is not part of the first column's name.
            if body.starts(with: [0xEF, 0xBB, 0xBF]) { body.removeFirst(3) }
            if body.allSatisfy(isSpace) {
                throw DataError(file: file, line: nil, problem: "file is empty",
                                fix: format == .jsonl ? "write one JSON object per line, like {\"text\": ..., \"label\": ...}"
                                                      : "write a header row naming the columns, then one row per example")
            }
            if let bad = UTF8Check.firstInvalidOffset(body) {
                throw DataError(file: file, line: UTF8Check.line(at: bad, in: body),
                                problem: String(format: "not valid UTF-8 (byte 0x%02X)", body[bad]),
                                fix: "convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8")
            }
            return Source(file: file, format: format, body: body, fingerprint: fingerprint)
        }
    }

    static func readRows(_ source: Source, columns: ColumnOptions, wantLabel: Bool) throws -> [RawRow] {
        let rows: [RawRow]
        switch source.format {
        case .jsonl: rows = try jsonlRows(source, columns: columns, wantLabel: wantLabel)
        case .csv: rows = try delimitedRows(source, delimiter: UInt8(ascii: ","), columns: columns, wantLabel: wantLabel)
        case .tsv: rows = try delimitedRows(source, delimiter: UInt8(ascii: "\t"), columns: columns, wantLabel: wantLabel)
        }
        return rows
    }

    // MARK: JSONL

    static func jsonlRows(_ source: Source, columns: ColumnOptions, wantLabel: Bool) throws -> [RawRow] {
        let file = source.file
        let shape = "each line must be one JSON object like {\"\(columns.text)\": ..., \"\(columns.label)\": ...}"
        var rows: [RawRow] = []
        try forEachJSONObject(source, shape: shape) { object, lineNo in
            // Only built for an error message.
            var keys: String { object.keys.sorted().map(LabelSet.quote).joined(separator: ", ") }
            func text(_ key: String, flag: String) throws -> String {
                guard let v = object[key] else {
                    throw DataError(file: file, line: lineNo, problem: "missing column \"\(key)\" (keys on this line: \(keys))",
                                    fix: "add \"\(key)\" to every line, or pass \(flag) naming the key that holds the text")
                }
                guard let s = v as? String else {
                    throw DataError(file: file, line: lineNo, problem: "\"\(key)\" is \(describeJSONType(v)), not a string",
                                    fix: "give every row a JSON string there, e.g. \"\(key)\": \"some text\"")
                }
                return s
            }
            try allColumnProblems(object, columns: columns, wantLabel: wantLabel, file: file, line: lineNo)
            let t = try text(columns.text, flag: "--text-column")
            let p = try columns.textPair.map { try text($0, flag: "--text-pair-column") }
            var label: String? = nil
            if wantLabel {
                guard let v = object[columns.label] else {
                    throw DataError(file: file, line: lineNo, problem: "missing label column \"\(columns.label)\" (keys on this line: \(keys))",
                                    fix: "add \"\(columns.label)\" to every line, or pass --label-column naming the key that holds the label")
                }
                label = try jsonLabel(v, key: columns.label, file: file, line: lineNo)
            }
            rows.append(RawRow(text: t, pair: p, label: label, line: lineNo))
        }
        return rows
    }

    /// Two or more missing or mistyped columns on one line are reported together, in one error (data with other
    /// column names fails once, naming every flag to pass, not once per column); a single problem is left to the
    /// per-column checks and their messages.
    static func allColumnProblems(_ object: [String: Any], columns: ColumnOptions, wantLabel: Bool, file: String, line: Int) throws {
        var missing: [(key: String, flag: String)] = [], mistyped: [String] = []
        var wanted = [(columns.text, "--text-column", true)]
        if let p = columns.textPair { wanted.append((p, "--text-pair-column", true)) }
        if wantLabel { wanted.append((columns.label, "--label-column", false)) }
        for (key, flag, isText) in wanted {
            guard let v = object[key] else { missing.append((key, flag)); continue }
            if isText, !(v is String) { mistyped.append("\"\(key)\" is \(describeJSONType(v)), not a string") }
        }
        guard missing.count + mistyped.count > 1 else { return }
        let keys = object.keys.sorted().map(LabelSet.quote).joined(separator: ", ")
        var parts: [String] = []
        if !missing.isEmpty {
            parts.append("missing column\(missing.count == 1 ? "" : "s") " + listed(missing.map { "\"\($0.key)\"" }))
        }
        parts += mistyped
        let fix = missing.isEmpty
            ? "give every row JSON strings there"
            : "add \(missing.count == 1 ? "it" : "them") to every line, or pass \(listed(missing.map(\.flag))) naming the keys that hold \(missing.count == 1 ? "it" : "them")"
                + (mistyped.isEmpty ? "" : ", and give every row JSON strings for the text")
        throw DataError(file: file, line: line, problem: parts.joined(separator: "; ") + " (keys on this line: \(keys))", fix: fix)
    }

    /// `a`, `a and b`, `a, b and c`.
    static func listed(_ items: [String]) -> String {
        items.count <= 1 ? items.joined() : items.dropLast().joined(separator: ", ") + " and " + items.last!
    }

    /// Calls `body(object, line)` for each non-blank line of a JSONL source, in order. A line that is not a JSON
    /// object, and a file with no object at all, are `DataError`s naming file:line (`shape` says what a line must be).
    static func forEachJSONObject(_ source: Source, shape: String,
                                  _ body: (_ object: [String: Any], _ line: Int) throws -> Void) throws {
        let file = source.file
        var seen = 0
        try source.body.withUnsafeBufferPointer { b in
            try JSONLines.forEachLine(b) { slice, lineNo in   // blank lines are allowed anywhere
                let value: Any
                do {
                    // JSONSerialization needs Data; one small copy per line is cheap next to parsing it.
                    value = try JSONSerialization.jsonObject(with: Data(slice), options: [.fragmentsAllowed])
                } catch {
                    let head = slice.drop(while: isSpace)
                    if seen == 0, head.first == UInt8(ascii: "[") {
                        throw arrayFileError(file: file, line: lineNo)
                    }
                    // `str(dict)` / `print(row)` from Python is the usual way to produce this.
                    if head.starts(with: Array("{'".utf8)) {
                        throw DataError(file: file, line: lineNo,
                                        problem: "not valid JSON (strings in single quotes: this looks like a Python dict)",
                                        fix: "write each line with json.dumps(row), which uses double quotes")
                    }
                    throw DataError(file: file, line: lineNo, problem: "not valid JSON (\(jsonReason(error)))", fix: shape)
                }
                guard let object = value as? [String: Any] else {
                    if seen == 0, let array = value as? [Any], array.first is [String: Any] {
                        throw arrayFileError(file: file, line: lineNo)
                    }
                    throw DataError(file: file, line: lineNo, problem: "line is \(describeJSONType(value)), not a JSON object", fix: shape)
                }
                seen += 1
                try body(object, lineNo)
            }
        }
        if seen == 0 {
            throw DataError(file: file, line: nil, problem: "file has only blank lines", fix: shape)
        }
    }

    /// A whole-file JSON array (`[{...}, {...}]`) is a common near miss for JSON lines; say so instead of
    /// reporting a syntax error on line 1.
    static func arrayFileError(file: String, line: Int) -> DataError {
        DataError(file: file, line: line, problem: "the file looks like one JSON array, not JSON lines",
                  fix: "write one JSON object per line, e.g. jq -c '.[]' \(file) > data.jsonl")
    }

    /// A JSON label as its class name: strings as they are, integers in decimal (`1` → "1", `1.0` → "1").
    static func jsonLabel(_ v: Any, key: String, file: String, line: Int) throws -> String {
        let fix = "use a class name string like \"positive\" or an integer class id"
        if let s = v as? String {
            guard !s.isEmpty else {
                throw DataError(file: file, line: line, problem: "label \"\(key)\" is an empty string", fix: fix)
            }
            return s
        }
        if isJSONBool(v) {
            throw DataError(file: file, line: line, problem: "label \"\(key)\" is a boolean (\((v as? NSNumber)?.boolValue == true ? "true" : "false")), which is neither a class name nor an id", fix: fix)
        }
        if let n = v as? NSNumber {
            guard let i = v as? Int else {
                throw DataError(file: file, line: line, problem: "label \"\(key)\" is the number \(n), not an integer class id", fix: fix)
            }
            return String(i)
        }
        throw DataError(file: file, line: line, problem: "label \"\(key)\" is \(describeJSONType(v))",
                        fix: fix + " (one label per row; multi-label data is not supported)")
    }

    /// Foundation on Linux boxes JSON `true`/`false` as an NSNumber whose Objective-C type is `c` (char);
    /// JSON numbers never produce that type, so it identifies booleans reliably.
    static func isJSONBool(_ v: Any) -> Bool {
        if v is Bool, type(of: v) == Bool.self { return true }
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    static func describeJSONType(_ v: Any) -> String {
        if v is NSNull { return "null" }
        if v is String { return "a string" }
        if isJSONBool(v) { return "a boolean" }
        if let n = v as? NSNumber { return "a number (\(n))" }
        if v is [Any] { return "an array" }
        if v is [String: Any] { return "an object" }
        return "\(type(of: v))"
    }

    /// Foundation's parse error, reworded for one line of one file ("around character 5" is 0-based in the line).
    static func jsonReason(_ error: any Error) -> String {
        var s = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "malformed"
        if s.hasSuffix(".") { s.removeLast() }
        s = s.replacingOccurrences(of: "end of file during JSON parse", with: "end of line")
            .replacingOccurrences(of: "end of file", with: "end of line")
        if let r = s.range(of: #"around character \d+"#, options: .regularExpression),
           let k = Int(s[r].split(separator: " ").last!) {
            s.replaceSubrange(r, with: "at column \(k + 1)")
        }
        guard let first = s.first else { return "malformed" }
        return first.lowercased() + s.dropFirst()
    }

    // MARK: CSV / TSV

    static func delimitedRows(_ source: Source, delimiter: UInt8, columns: ColumnOptions, wantLabel: Bool) throws -> [RawRow] {
        let file = source.file
        let records = try source.body.withUnsafeBufferPointer {
            try CSVParser.parse($0, delimiter: delimiter, file: file)
        }
        let delim = CSVParser.delimiterName(delimiter)
        guard let header = records.first else {
            throw DataError(file: file, line: nil, problem: "file is empty", fix: "write a header row naming the columns, then one row per example")
        }
        let found = header.fields.map(LabelSet.quote).joined(separator: ", ")
        func column(_ name: String, flag: String) throws -> Int {
            let hits = header.fields.indices.filter { header.fields[$0] == name }
            if hits.count > 1 {
                throw DataError(file: file, line: header.line, problem: "column \"\(name)\" appears \(hits.count) times in the header",
                                fix: "give each column a unique name")
            }
            guard let i = hits.first else {
                // A near miss (case or surrounding spaces) is the usual cause; say so.
                let near = header.fields.first {
                    $0.trimmingCharacters(in: .whitespaces).lowercased() == name.lowercased()
                }
                let hint = near.map { "; did you mean \(LabelSet.quote($0))?" } ?? ""
                let problem = header.fields.count == 1 && delimiter == UInt8(ascii: ",") && header.fields[0].contains("\t")
                    ? "missing column \"\(name)\" (the header has no commas but has tabs: is this a TSV file?)"
                    : "missing column \"\(name)\" (columns found: \(found))\(hint)"
                throw DataError(file: file, line: header.line, problem: problem,
                                fix: "add a \"\(name)\" column to the header row, or pass \(flag) with one of the columns found")
            }
            return i
        }
        // Two or more missing columns are reported together (one error naming every flag), not one per run.
        var wanted = [(columns.text, "--text-column")]
        if let p = columns.textPair { wanted.append((p, "--text-pair-column")) }
        if wantLabel { wanted.append((columns.label, "--label-column")) }
        let absent = wanted.filter { w in !header.fields.contains(w.0) }
        if absent.count > 1 {
            let tabs = header.fields.count == 1 && delimiter == UInt8(ascii: ",") && header.fields[0].contains("\t")
            // Near misses (case or surrounding spaces), as for one column.
            let near = absent.compactMap { w in
                header.fields.first { $0.trimmingCharacters(in: .whitespaces).lowercased() == w.0.lowercased() }
                    .map { "\(LabelSet.quote($0)) for \"\(w.0)\"" }
            }
            throw DataError(file: file, line: header.line,
                            problem: "missing columns \(listed(absent.map { "\"\($0.0)\"" })) "
                                + (tabs ? "(the header has no commas but has tabs: is this a TSV file?)" : "(columns found: \(found))")
                                + (near.isEmpty ? "" : "; did you mean \(listed(near))?"),
                            fix: "name them in the header row, or pass \(listed(absent.map(\.1))) with columns found")
        }
        let textIdx = try column(columns.text, flag: "--text-column")
        let pairIdx = try columns.textPair.map { try column($0, flag: "--text-pair-column") }
        let labelIdx = wantLabel ? try column(columns.label, flag: "--label-column") : nil
        guard records.count > 1 else {
            throw DataError(file: file, line: nil, problem: "file has a header row but no data rows",
                            fix: "add one row per example below the header")
        }
        var rows: [RawRow] = []
        rows.reserveCapacity(records.count - 1)
        for r in records.dropFirst() {
            guard r.fields.count == header.fields.count else {
                throw DataError(file: file, line: r.line,
                                problem: "row has \(r.fields.count) field\(r.fields.count == 1 ? "" : "s") but the header has \(header.fields.count)",
                                fix: "quote fields that contain a \(delim) or a line break, and double any quote inside them (\"\")")
            }
            var label: String? = nil
            if let labelIdx {
                let l = r.fields[labelIdx]
                guard !l.isEmpty else {
                    throw DataError(file: file, line: r.line, problem: "missing label (the \"\(columns.label)\" field is empty)",
                                    fix: "give every row a label")
                }
                label = l
            }
            rows.append(RawRow(text: r.fields[textIdx], pair: pairIdx.map { r.fields[$0] }, label: label, line: r.line))
        }
        return rows
    }

    // MARK: - Helpers

    /// The path as the user wrote it, so messages match their command line.
    static func displayName(_ url: URL) -> String {
        url.relativePath == "-" ? "<stdin>" : url.isFileURL ? url.relativePath : url.absoluteString
    }

    /// Why a file could not be read, in words (Foundation's own messages are long and platform-dependent).
    static func reason(_ error: any Error, url: URL) -> String {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) { return "no such file" }
        if isDir.boolValue { return "it is a directory" }
        if !FileManager.default.isReadableFile(atPath: url.path) { return "permission denied" }
        return (error as NSError).localizedDescription
    }

    static func isSpace(_ c: UInt8) -> Bool {
        c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The validation split's generator: SplitMix64 from `seed`, bounded integers by `next(belowByModulo:)` (the stream
/// the split's recorded goldens were made with).
struct DataSplitRNG: RandomNumberGenerator {
    private var g: SplitMix64
    init(seed: UInt64) { g = SplitMix64(seed: seed) }
    mutating func next() -> UInt64 { g.next() }
    mutating func next(below bound: UInt64) -> UInt64 { g.next(belowByModulo: bound) }
}

/// The hold-out of `--validation-split` for token classification and question answering: a seeded shuffle (SplitMix64
/// from `seed`) of the items, the first `fraction` of it held out (at least one, and at least one left to train); both
/// parts keep the input order.
func seededHoldOut<T>(_ items: [T], fraction: Double, seed: UInt64) -> (train: [T], held: [T]) {
    var order = Array(items.indices)
    var rng = SplitMix64(seed: seed)
    for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    let k = min(max(1, Int((Double(order.count) * fraction).rounded())), order.count - 1)
    let held = Set(order.prefix(k))
    return (items.indices.filter { !held.contains($0) }.map { items[$0] }, items.indices.filter { held.contains($0) }.map { items[$0] })
}
