// TokenizeCommand: `disttrain tokenize --tokenizer DIR --input FILE.jsonl [--max-length N] [--no-special-tokens]`.
// Reads {"text": ..., "text_pair"?: ...} lines and writes what a Hugging Face tokenizer call returns, one JSON line
// each, to stdout: {"input_ids", "token_type_ids" (tokenizers whose model_input_names have it: BERT's, not GPT-2's),
// "attention_mask", "tokens"}.
// It is deliberately only flag plumbing: parsing, validation and encoding live in the Tokenizers target
// (`JSONLines`, `loadTokenizer`), where the tests reach them. The hidden `--bench` flag times encoding for
// bench/tokenizer_throughput.sh instead of printing encodings.
import ArgumentParser
import Foundation
import Tokenizers // the tokenizers `tokenize` runs, and JSONLines
import Training

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenize a JSON-lines file with a Hugging Face tokenizer folder; one JSON line out per line in.",
        discussion: """
        Each line holds what `tokenizer(text, text_pair)` returns in transformers: input_ids, attention_mask, and \
        token_type_ids for tokenizers that return them (BERT's; not GPT-2's); plus the token strings as "tokens".

          disttrain tokenize --tokenizer models/all-MiniLM-L6-v2 --input texts.jsonl
        """)

    @OptionGroup var config: ConfigFileOption

    @Option(help: "Folder holding tokenizer.json, or vocab.txt, or vocab.json + merges.txt.")
    var tokenizer: String

    @Option(help: "JSON-lines file; each line {\"text\": ..., \"text_pair\"?: ...}.")
    var input: String

    @Option(help: "Truncate longest_first to this many tokens, special tokens included.")
    var maxLength: Int?

    @Flag(help: "Do not add [CLS]/[SEP] (or the tokenizer's other template tokens).")
    var noSpecialTokens = false

    @Flag(help: .hidden)
    var bench = false

    @Option(help: .hidden)
    var benchRuns = 5

    func validate() throws {
        try Check.maxLength(maxLength, minimum: 1)
        try Check.positive(benchRuns, "--bench-runs")
    }

    func run() throws {
        if OutputRank.isSecondary() { return }   // under mpirun/srun: rank 0 tokenizes and prints, once
        if bench { try runBenchmark() } else { try runTokenize() }   // a TokenizerError exits 1 (ExitPolicy)
    }

    private func readInput() throws -> Data {
        do { return try Data(contentsOf: URL(fileURLWithPath: input)) } catch {
            throw TokenizerError(file: input, message: "cannot read the input file",
                                 hint: "check that --input names an existing, readable .jsonl file")
        }
    }

    private func runTokenize() throws {
        let tok = try loadTokenizer(directory: URL(fileURLWithPath: tokenizer))
        let records = try JSONLines.readRecords(try readInput(), path: input)
        let withTypeIds = Self.returnsTokenTypeIds(directory: URL(fileURLWithPath: tokenizer))
        if let maxLength, !noSpecialTokens {
            // The tokenizer's own error names its API (maxLength, addSpecialTokens): say it in flags instead.
            let pairs = records.contains { $0.pair != nil }
            let needed = try tok.encode("", pair: pairs ? "" : nil, addSpecialTokens: true, maxLength: nil).ids.count
            if maxLength < needed {
                throw TrainingError("--max-length \(maxLength) cannot hold the \(needed) special tokens the tokenizer adds to each \(pairs ? "text pair" : "text"); use --max-length \(needed) or more, or --no-special-tokens", exitCode: 2)
            }
        }
        var out = ""
        out.reserveCapacity(1 << 20)
        for (i, r) in records.enumerated() {
            let e: Encoding
            do {
                e = try tok.encode(r.text, pair: r.pair, addSpecialTokens: !noSpecialTokens, maxLength: maxLength)
            } catch let error as TokenizerError {
                throw TokenizerError(file: "\(input) (record \(i + 1))", message: error.message, hint: error.hint)
            }
            out += Self.render(e, typeIds: withTypeIds)
            out += "\n"
            if out.utf8.count >= 1 << 20 { FileHandle.standardOutput.write(Data(out.utf8)); out.removeAll(keepingCapacity: true) }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    /// One output line: the keys of a transformers tokenizer call, then the token strings.
    static func render(_ e: Encoding, typeIds: Bool) -> String {
        func ints(_ a: [Int32]) -> String { "[" + a.map(String.init).joined(separator: ", ") + "]" }
        var s = "{\"input_ids\": \(ints(e.ids))"
        if typeIds { s += ", \"token_type_ids\": \(ints(e.typeIds))" }
        s += ", \"attention_mask\": \(ints(e.attentionMask)), \"tokens\": "
        let d = (try? JSONSerialization.data(withJSONObject: e.tokens, options: [.withoutEscapingSlashes])) ?? Data("[]".utf8)
        s += String(decoding: d, as: UTF8.self) + "}"
        return s
    }

    /// Whether transformers' tokenizer for this folder returns token_type_ids: tokenizer_config.json's
    /// model_input_names when it lists them; else by tokenizer_class (BertTokenizer does; GPT-2's, RoBERTa's and
    /// DistilBertTokenizer do not); else a WordPiece vocab.txt (BERT family) does.
    static func returnsTokenTypeIds(directory: URL) -> Bool {
        let config = (try? Data(contentsOf: directory.appendingPathComponent("tokenizer_config.json")))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        if let names = config?["model_input_names"] as? [String] { return names.contains("token_type_ids") }
        if let cls = config?["tokenizer_class"] as? String {
            for prefix in ["GPT2", "Roberta", "DistilBert", "Bart", "Llama", "Qwen"] where cls.hasPrefix(prefix) { return false }
            if cls.hasPrefix("Bert") { return true }
        }
        return FileManager.default.fileExists(atPath: directory.appendingPathComponent("vocab.txt").path)
    }

    /// Single-threaded timing over the texts of `--input` (`.jsonl`: the "text" fields; otherwise its
    /// non-empty lines). Prints one JSON object with the median of `--bench-runs` runs.
    private func runBenchmark() throws {
        let tok = try loadTokenizer(directory: URL(fileURLWithPath: tokenizer))
        let data = try readInput()
        let texts: [String]
        if input.hasSuffix(".jsonl") {
            texts = try JSONLines.readRecords(data, path: input).map(\.text)
        } else {
            guard let s = String(data: data, encoding: .utf8) else {
                throw TokenizerError(file: input, message: "not valid UTF-8", hint: "re-encode the file as UTF-8")
            }
            texts = s.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        }
        let bytes = texts.reduce(0) { $0 + $1.utf8.count }
        var times: [Double] = []
        var tokens = 0
        for _ in 0..<benchRuns {
            let clock = ContinuousClock()
            var count = 0
            let elapsed = try clock.measure {
                for t in texts {
                    count += try tok.encode(t, pair: nil, addSpecialTokens: !noSpecialTokens, maxLength: maxLength).ids.count
                }
            }
            tokens = count
            times.append(elapsed.seconds)
        }
        let median = times.sorted()[times.count / 2]
        let runs = times.map { String(format: "%.4f", $0) }.joined(separator: ", ")
        print("{\"impl\": \"swift\", \"input\": \"\(input)\", \"texts\": \(texts.count), \"bytes\": \(bytes), "
              + "\"tokens\": \(tokens), \"runs_s\": [\(runs)], \"median_s\": \(String(format: "%.4f", median)), "
              + "\"mb_per_s\": \(String(format: "%.3f", Double(bytes) / 1e6 / median)), "
              + "\"tokens_per_s\": \(String(format: "%.0f", Double(tokens) / median))}")
    }
}
