// LMData.swift: data preparation for GPT-2 causal-LM fine-tuning, from JSONL:
//   - text {"text"}: documents tokenized, EOS appended after each, then either packed into blocks of `blockSize`
//     tokens (every token counted; the last partial block is kept, right-padded) or one example per row (padded in
//     the batch);
//   - prompt→response {"prompt", "response"}: ids = prompt + response + EOS, labels -100 on the prompt tokens
//     (the loss is on the response and its EOS only).
// Labels are the unshifted ids (the model shifts: position t predicts labels[t+1]), -100 where not counted, so that
// masks and labels, never token ids, decide what counts (a real <|endoftext|> inside a document is a normal token).
// A sequence longer than `maxLength` (normally n_positions) is TRUNCATED at the end and counted in `truncated`
// (for prompt→response rows the response is cut first; a row left with no response token is dropped and counted).
// Bad rows (not JSON, not an object, a missing or non-string field) throw a DataError naming file:line.
// Deliberately not here: shuffling/sharding (DataLoader, Dist.Sharding), the loss, tokenizer internals.
import Foundation
import Model
import Tokenizers

/// One causal-LM example: ids and labels of equal length (labels -100 where not counted).
public struct LMExample: Sendable, Equatable {
    public var inputIds: [Int32]
    public var labels: [Int32]
    /// 1-based source line (the first document's line for a packed block).
    public var line: Int
    public init(inputIds: [Int32], labels: [Int32], line: Int) {
        precondition(inputIds.count == labels.count)
        self.inputIds = inputIds; self.labels = labels; self.line = line
    }
    /// Number of counted next-token targets (labels[t] != -100 for t >= 1).
    public var targetCount: Int { labels.dropFirst().filter { $0 != -100 }.count }
}

/// A prepared LM dataset with what preparation did to it.
public struct LMDataset: Sendable {
    public var examples: [LMExample]
    /// Rows longer than maxLength that were cut (tokens past maxLength dropped).
    public var truncated: Int
    /// Prompt→response rows dropped because no response token survived truncation.
    public var droppedNoTarget: Int
    /// A one-line summary for the log, e.g. "412 examples; 3 rows truncated to 1024 tokens".
    public func summary(maxLength: Int) -> String {
        var s = "\(examples.count) examples"
        if truncated > 0 { s += "; \(truncated) rows truncated to \(maxLength) tokens" }
        if droppedNoTarget > 0 { s += "; \(droppedNoTarget) prompt→response rows dropped (prompt fills the context, no response left)" }
        return s
    }
}

public enum LMTextMode: Sendable, Equatable {
    /// Concatenate every document (each followed by EOS) and cut into blocks of this many tokens.
    case packed(blockSize: Int)
    /// One example per row (text + EOS), truncated to maxLength, padded when batched.
    case perRow
}

public enum LMData {
    /// Causal-LM text JSONL. `maxLength` is the model's n_positions; a packed blockSize must not exceed it.
    public static func loadText(_ url: URL, tokenizer: any Tokenizer, eosId: Int32, mode: LMTextMode, maxLength: Int,
                                textKey: String = "text") throws -> LMDataset {
        try loadText(readObjects(url), file: url.relativePath, tokenizer: tokenizer, eosId: eosId, mode: mode,
                     maxLength: maxLength, textKey: textKey)
    }

    /// `loadText` on rows already read by `readObjects`.
    static func loadText(_ rows: [(Int, [String: Any])], file: String, tokenizer: any Tokenizer, eosId: Int32,
                         mode: LMTextMode, maxLength: Int, textKey: String = "text") throws -> LMDataset {
        var docs: [(ids: [Int32], line: Int)] = []
        for (line, obj) in rows {
            let text = try field(obj, textKey, file: file, line: line, shape: "{\"\(textKey)\": \"...\"}")
            docs.append((try encode(tokenizer, text, file: file, line: line) + [eosId], line))
        }
        switch mode {
        case .perRow:
            var truncated = 0
            let ex = docs.map { d -> LMExample in
                var ids = d.ids
                if ids.count > maxLength { ids = Array(ids.prefix(maxLength)); truncated += 1 }
                return LMExample(inputIds: ids, labels: ids, line: d.line)
            }
            return LMDataset(examples: ex, truncated: truncated, droppedNoTarget: 0)
        case .packed(let blockSize):
            guard blockSize >= 2 && blockSize <= maxLength else {
                throw DataError(file: file, line: nil, problem: "block size \(blockSize) is outside 2...\(maxLength) (the model's n_positions)",
                                fix: "pass a --block-size between 2 and \(maxLength)")
            }
            var stream: [Int32] = [], lines: [Int] = []   // lines[i]: source line of stream[i]
            for d in docs { stream += d.ids; lines += [Int](repeating: d.line, count: d.ids.count) }
            var ex: [LMExample] = []
            var i = 0
            while i < stream.count {
                let block = Array(stream[i..<min(i + blockSize, stream.count)])
                if block.count >= 2 { ex.append(LMExample(inputIds: block, labels: block, line: lines[i])) }
                i += blockSize
            }
            return LMDataset(examples: ex, truncated: 0, droppedNoTarget: 0)
        }
    }

    /// Prompt→response JSONL: ids = prompt + response + EOS; labels -100 on the prompt.
    public static func loadPromptResponse(_ url: URL, tokenizer: any Tokenizer, eosId: Int32, maxLength: Int,
                                          promptKey: String = "prompt", responseKey: String = "response") throws -> LMDataset {
        try loadPromptResponse(readObjects(url), file: url.relativePath, tokenizer: tokenizer, eosId: eosId,
                               maxLength: maxLength, promptKey: promptKey, responseKey: responseKey)
    }

    /// `loadPromptResponse` on rows already read by `readObjects`.
    static func loadPromptResponse(_ rows: [(Int, [String: Any])], file: String, tokenizer: any Tokenizer, eosId: Int32,
                                   maxLength: Int, promptKey: String = "prompt",
                                   responseKey: String = "response") throws -> LMDataset {
        let shape = "{\"\(promptKey)\": \"...\", \"\(responseKey)\": \"...\"}"
        var ex: [LMExample] = []
        var truncated = 0, dropped = 0
        for (line, obj) in rows {
            let p = try encode(tokenizer, try field(obj, promptKey, file: file, line: line, shape: shape), file: file, line: line)
            let r = try encode(tokenizer, try field(obj, responseKey, file: file, line: line, shape: shape), file: file, line: line) + [eosId]
            var ids = p + r
            var labels = [Int32](repeating: -100, count: p.count) + r
            if ids.count > maxLength {
                ids = Array(ids.prefix(maxLength)); labels = Array(labels.prefix(maxLength)); truncated += 1
            }
            let e = LMExample(inputIds: ids, labels: labels, line: line)
            if e.targetCount == 0 { dropped += 1; continue }
            ex.append(e)
        }
        return LMDataset(examples: ex, truncated: truncated, droppedNoTarget: dropped)
    }

    /// Right-pads examples into one batch: ids padded with `padId` (attention 0), labels -100 there. T = the longest.
    /// sampleIndices: the examples' global indices (they key the dropout masks).
    public static func batch(_ examples: [LMExample], padId: Int32, sampleIndices: [Int]) -> (batch: TokenBatch, labels: [Int32]) {
        let T = examples.map(\.inputIds.count).max() ?? 0
        var ids: [Int32] = [], mask: [Int32] = [], labels: [Int32] = []
        for e in examples {
            let pad = T - e.inputIds.count
            ids += e.inputIds + [Int32](repeating: padId, count: pad)
            mask += [Int32](repeating: 1, count: e.inputIds.count) + [Int32](repeating: 0, count: pad)
            labels += e.labels + [Int32](repeating: -100, count: pad)
        }
        return (TokenBatch(batchSize: examples.count, seqLen: T, inputIds: ids, attentionMask: mask, sampleIndices: sampleIndices), labels)
    }

    // MARK: - JSONL

    /// Non-blank lines parsed as JSON objects, with their 1-based line numbers (DataLoader's JSON-lines reader:
    /// `-` is standard input; errors name file:line).
    static func readObjects(_ url: URL) throws -> [(Int, [String: Any])] {
        var out: [(Int, [String: Any])] = []
        try DataLoader.forEachJSONObject(DataLoader.Source.read(url, format: .jsonl), shape: "write one JSON object per line") {
            out.append(($1, $0))
        }
        return out
    }

    /// A file whose first object has a "prompt" or a "response" key holds prompt→response pairs (so a first row
    /// missing one of the two is reported as such, not as a missing "text").
    static func isPromptResponse(_ rows: [(Int, [String: Any])]) -> Bool {
        guard let first = rows.first?.1 else { return false }
        return first["prompt"] != nil || first["response"] != nil
    }

    static func field(_ obj: [String: Any], _ key: String, file: String, line: Int, shape: String) throws -> String {
        guard let v = obj[key] else {
            let keys = obj.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
            throw DataError(file: file, line: line, problem: "missing field \"\(key)\" (keys on this line: \(keys))",
                            fix: "every line needs \(shape)")
        }
        guard let s = v as? String else {
            throw DataError(file: file, line: line, problem: "\"\(key)\" is not a string", fix: "every line needs \(shape)")
        }
        return s
    }

    static func encode(_ tok: any Tokenizer, _ text: String, file: String, line: Int) throws -> [Int32] {
        do { return try tok.encode(text, pair: nil, addSpecialTokens: true, maxLength: nil).ids } catch {
            throw DataError(file: file, line: line, problem: "cannot tokenize (\(error))", fix: "check the text and the tokenizer files")
        }
    }
}
