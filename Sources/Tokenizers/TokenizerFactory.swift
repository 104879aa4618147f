// TokenizerFactory: `loadTokenizer(directory:)` reads a Hugging Face tokenizer folder and builds the matching
// pipeline. Preference: tokenizer.json, else vocab.txt (+tokenizer_config.json), else vocab.json + merges.txt.
// It deliberately fails loudly on anything it does not implement exactly (other model types, normalizers,
// pre-tokenizers, lstrip/rstrip added tokens...) rather than silently falling back to something close.
// The padding/truncation sections of tokenizer.json are ignored: the trainer pads, and truncation is a
// per-call argument of `encode`.
import Foundation

public func loadTokenizer(directory: URL) throws -> any Tokenizer {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
        throw TokenizerError(file: directory.path, message: "tokenizer folder not found",
                             hint: "pass the folder holding tokenizer.json, vocab.txt or vocab.json+merges.txt")
    }
    let file = { (name: String) in directory.appendingPathComponent(name) }
    let exists = { (name: String) in fm.fileExists(atPath: file(name).path) }
    if exists("tokenizer.json") { return try loadTokenizerJSON(file("tokenizer.json")) }
    let config = try readOptionalJSON(file("tokenizer_config.json"))
    let specialMap = try readOptionalJSON(file("special_tokens_map.json"))
    if exists("vocab.txt") { return try loadBertVocab(file("vocab.txt"), config: config, specialMap: specialMap) }
    if exists("vocab.json") || exists("merges.txt") {
        return try loadGPT2(vocabURL: file("vocab.json"), mergesURL: file("merges.txt"), config: config,
                            specialMap: specialMap)
    }
    throw TokenizerError(file: directory.path, message: "no tokenizer.json, vocab.txt or vocab.json+merges.txt",
                         hint: "save the tokenizer with `tokenizer.save_pretrained(dir)` and point --tokenizer at dir")
}

// MARK: - tokenizer.json

func loadTokenizerJSON(_ url: URL) throws -> any Tokenizer {
    let path = url.path
    guard let root = try readJSON(url) as? [String: Any] else {
        throw TokenizerError(file: path, message: "top level is not a JSON object", hint: "re-save it with `tokenizers`")
    }
    guard let model = root["model"] as? [String: Any] else {
        throw TokenizerError(file: path, message: "no \"model\" section", hint: "re-save it with `tokenizers`")
    }
    let type = (model["type"] as? String) ?? (model["merges"] != nil ? "BPE" : "WordPiece")
    guard type == "WordPiece" || type == "BPE" else {
        throw unsupported(path, "model type \"\(type)\"", "only WordPiece and BPE models are implemented (not Unigram/WordLevel)")
    }
    // Token strings come from JSONDecoder, not JSONSerialization: the latter silently drops a U+FEFF at the
    // start of a string value, which would corrupt such tokens.
    let strings: TokenizerJSONStrings
    do { strings = try JSONDecoder().decode(TokenizerJSONStrings.self, from: try readData(url)) } catch let e as TokenizerError {
        throw e
    } catch {
        throw TokenizerError(file: path, message: "model.vocab/merges or added_tokens malformed (\(error))", hint: "re-save it with `tokenizers`")
    }
    let added = try parseAddedTokens(strings.added_tokens ?? [], path: path)
    // `normalized: true` tokens are matched on normalized text by `tokenizers`; we match on raw text only, which
    // is the same thing exactly when there is no normalizer.
    if root["normalizer"] != nil && !(root["normalizer"] is NSNull),
       let t = strings.added_tokens?.first(where: { $0.normalized ?? !($0.special ?? false) }) {
        throw unsupported(path, "added token \"\(t.content)\" with normalized=true under a normalizer",
                          "set \"normalized\": false for it (as BERT's special tokens are)")
    }
    let post = try parsePostProcessor(root["post_processor"], path: path)
    func kind(_ section: String) -> String? {
        (root[section] as? [String: Any])?["type"] as? String
    }
    switch type {
    case "WordPiece":
        guard let vocab = strings.model.vocab else {
            throw TokenizerError(file: path, message: "WordPiece model has no vocab", hint: "re-save it with `tokenizers`")
        }
        let wp = try WordPieceModel(vocab: try intMap(vocab, path: path),
                                    unkToken: model["unk_token"] as? String ?? "[UNK]",
                                    prefix: model["continuing_subword_prefix"] as? String ?? "##",
                                    maxInputCharsPerWord: model["max_input_chars_per_word"] as? Int ?? 100, file: path)
        var normalizer: BertNormalizer? = nil
        switch kind("normalizer") {
        case nil: break
        case "BertNormalizer":
            let n = root["normalizer"] as! [String: Any]
            normalizer = BertNormalizer(cleanText: n["clean_text"] as? Bool ?? true,
                                        handleChineseChars: n["handle_chinese_chars"] as? Bool ?? true,
                                        stripAccents: n["strip_accents"] as? Bool,
                                        lowercase: n["lowercase"] as? Bool ?? true)
        case let other?:
            throw unsupported(path, "normalizer \"\(other)\"", "only BertNormalizer (or none) is implemented for WordPiece")
        }
        guard kind("pre_tokenizer") == "BertPreTokenizer" else {
            throw unsupported(path, "pre_tokenizer \"\(kind("pre_tokenizer") ?? "null")\"",
                              "WordPiece tokenizers must use BertPreTokenizer")
        }
        let decoderJSON = root["decoder"] as? [String: Any]
        let decoder = WordPieceDecoder(prefix: decoderJSON?["prefix"] as? String ?? "##",
                                       cleanup: decoderJSON?["cleanup"] as? Bool ?? true)
        return WordPieceTokenizer(normalizer: normalizer, model: wp, addedTokens: added,
                                  postProcessor: post ?? .plain, decoder: decoder,
                                  padToken: padToken(root) ?? (wp.vocab["[PAD]"] != nil ? "[PAD]" : nil))
    case "BPE":
        guard let vocab = strings.model.vocab, let mergesJSON = strings.model.merges else {
            throw TokenizerError(file: path, message: "BPE model lacks vocab or merges", hint: "re-save it with `tokenizers`")
        }
        if let d = model["dropout"], !(d is NSNull) { throw unsupported(path, "BPE dropout", "set \"dropout\": null") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key] as? String, !s.isEmpty { throw unsupported(path, "BPE \(key) \"\(s)\"", "only GPT-2 style byte-level BPE is implemented") }
        }
        if model["byte_fallback"] as? Bool == true || model["ignore_merges"] as? Bool == true {
            throw unsupported(path, "BPE byte_fallback/ignore_merges", "only GPT-2 style byte-level BPE is implemented")
        }
        if kind("normalizer") != nil {
            throw unsupported(path, "normalizer \"\(kind("normalizer")!)\" on a BPE model", "byte-level BPE here takes no normalizer")
        }
        guard kind("pre_tokenizer") == "ByteLevel", let pre = root["pre_tokenizer"] as? [String: Any] else {
            throw unsupported(path, "pre_tokenizer \"\(kind("pre_tokenizer") ?? "null")\"", "BPE tokenizers must use the ByteLevel pre-tokenizer")
        }
        if pre["add_prefix_space"] as? Bool == true || pre["use_regex"] as? Bool == false {
            throw unsupported(path, "ByteLevel add_prefix_space=true or use_regex=false", "use GPT-2's settings (false, true)")
        }
        var merges: [(String, String, line: Int)] = []
        merges.reserveCapacity(mergesJSON.count)
        for (i, m) in mergesJSON.enumerated() {
            if case .joined(let s) = m {
                let parts = mergeParts(s)
                guard parts.count == 2 else {
                    throw TokenizerError(file: path, message: "merge \(i + 1) \"\(s)\" is not two tokens", hint: "each merge is \"left right\"")
                }
                merges.append((parts[0], parts[1], line: i + 1))
            } else if case .split(let a) = m, a.count == 2 {
                merges.append((a[0], a[1], line: i + 1))
            } else {
                throw TokenizerError(file: path, message: "merge \(i + 1) is neither \"a b\" nor [a, b]", hint: "re-save it with `tokenizers`")
            }
        }
        let bpe = try BPEModel(vocab: try intMap(vocab, path: path), merges: merges, vocabFile: path, mergesFile: path + " (model.merges)")
        return ByteLevelBPETokenizer(model: bpe, addedTokens: added, postProcessor: post ?? .plain, padToken: padToken(root))
    default:
        fatalError("unreachable: model type checked above")
    }
}

private func padToken(_ root: [String: Any]) -> String? {
    (root["padding"] as? [String: Any])?["pad_token"] as? String
}

/// The parts of tokenizer.json that hold token strings.
private struct TokenizerJSONStrings: Decodable {
    struct Model: Decodable {
        var vocab: [String: Int]?
        var merges: [Merge]?
    }
    /// Older files list merges as "a b", newer ones as ["a", "b"].
    enum Merge: Decodable {
        case joined(String), split([String])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .joined(s) } else { self = .split(try c.decode([String].self)) }
        }
    }
    struct Added: Decodable {
        var id: Int
        var content: String
        var special: Bool?
        var lstrip: Bool?
        var rstrip: Bool?
        var single_word: Bool?
        var normalized: Bool?
    }
    var model: Model
    var added_tokens: [Added]?
}

private func parseAddedTokens(_ list: [TokenizerJSONStrings.Added], path: String) throws -> [AddedToken] {
    try list.map { t in
        for (flag, on) in [("lstrip", t.lstrip), ("rstrip", t.rstrip), ("single_word", t.single_word)] where on == true {
            throw unsupported(path, "added token \"\(t.content)\" with \(flag)=true", "only plain added tokens are implemented")
        }
        return AddedToken(content: t.content, id: Int32(t.id), special: t.special ?? false)
    }
}

private func parsePostProcessor(_ json: Any?, path: String) throws -> TemplateProcessing? {
    guard let p = json as? [String: Any], let type = p["type"] as? String else { return nil }
    switch type {
    case "ByteLevel": return .plain
    case "BertProcessing":
        guard let cls = p["cls"] as? [Any], let sep = p["sep"] as? [Any], let c = cls.last as? Int, let s = sep.last as? Int else {
            throw TokenizerError(file: path, message: "BertProcessing lacks cls/sep", hint: "re-save it with `tokenizers`")
        }
        return .bert(cls: Int32(c), sep: Int32(s))
    case "TemplateProcessing":
        let specials = p["special_tokens"] as? [String: [String: Any]] ?? [:]
        func pieces(_ key: String) throws -> [TemplateProcessing.Piece] {
            guard let list = p[key] as? [[String: Any]] else {
                throw TokenizerError(file: path, message: "TemplateProcessing lacks \"\(key)\"", hint: "re-save it with `tokenizers`")
            }
            return try list.map { piece in
                if let s = piece["SpecialToken"] as? [String: Any], let name = s["id"] as? String {
                    guard let ids = specials[name]?["ids"] as? [Int] else {
                        throw TokenizerError(file: path, message: "template special token \"\(name)\" is not in special_tokens",
                                             hint: "list it under post_processor.special_tokens")
                    }
                    return .special(ids: ids.map { Int32($0) }, typeId: Int32(s["type_id"] as? Int ?? 0))
                }
                if let s = piece["Sequence"] as? [String: Any] {
                    let t = Int32(s["type_id"] as? Int ?? 0)
                    return (s["id"] as? String) == "B" ? .sequenceB(typeId: t) : .sequenceA(typeId: t)
                }
                throw TokenizerError(file: path, message: "unknown template piece \(piece.keys.sorted())", hint: "use SpecialToken/Sequence pieces")
            }
        }
        return TemplateProcessing(single: try pieces("single"), pair: try pieces("pair"))
    default:
        throw unsupported(path, "post_processor \"\(type)\"", "only TemplateProcessing, BertProcessing and ByteLevel are implemented")
    }
}

// MARK: - vocab.txt (BERT)

func loadBertVocab(_ url: URL, config: [String: Any], specialMap: [String: Any]) throws -> any Tokenizer {
    let text = try readText(url)
    var vocab: [String: Int32] = [:]
    var index: Int32 = 0
    // One token per line, id = line number; trailing whitespace trimmed (as `tokenizers`' load_vocab, which
    // uses Rust `lines()`: split on \n only, unlike NSString line enumeration which also splits on U+2028...).
    for line in rustLines(text) {
        var t = line
        while let last = t.unicodeScalars.last, last.properties.isWhitespace { t = t.dropLast() }
        vocab[String(t)] = index
        index += 1
    }
    guard !vocab.isEmpty else {
        throw TokenizerError(file: url.path, message: "vocabulary is empty", hint: "vocab.txt needs one token per line")
    }
    func tokenSetting(_ key: String, _ fallback: String) -> String {
        configToken(config[key]) ?? configToken(specialMap[key]) ?? fallback
    }
    let unk = tokenSetting("unk_token", "[UNK]"), cls = tokenSetting("cls_token", "[CLS]")
    let sep = tokenSetting("sep_token", "[SEP]"), pad = tokenSetting("pad_token", "[PAD]")
    let mask = tokenSetting("mask_token", "[MASK]")
    let model = try WordPieceModel(vocab: vocab, unkToken: unk, file: url.path)
    guard let clsId = vocab[cls], let sepId = vocab[sep] else {
        throw TokenizerError(file: url.path, message: "\(cls) or \(sep) is missing from the vocabulary",
                             hint: "set cls_token/sep_token in tokenizer_config.json to tokens of vocab.txt")
    }
    let lowercase = config["do_lower_case"] as? Bool ?? true
    let normalizer = BertNormalizer(cleanText: true,
                                    handleChineseChars: config["tokenize_chinese_chars"] as? Bool ?? true,
                                    stripAccents: config["strip_accents"] as? Bool, lowercase: lowercase)
    var added: [AddedToken] = []
    var seen = Set<String>()
    // transformers registers the special tokens (in vocabulary order) as non-normalized added tokens.
    for t in [pad, unk, cls, sep, mask] where !seen.contains(t) {
        if let id = vocab[t] { added.append(AddedToken(content: t, id: id, special: true)); seen.insert(t) }
    }
    added += try configAddedTokens(config, path: url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path)
        .filter { !seen.contains($0.content) }
    return WordPieceTokenizer(normalizer: normalizer, model: model, addedTokens: added,
                              postProcessor: .bert(cls: clsId, sep: sepId), decoder: WordPieceDecoder(),
                              padToken: vocab[pad] != nil ? pad : nil)
}

// MARK: - vocab.json + merges.txt (GPT-2)

func loadGPT2(vocabURL: URL, mergesURL: URL, config: [String: Any], specialMap: [String: Any]) throws -> any Tokenizer {
    for url in [vocabURL, mergesURL] where !FileManager.default.fileExists(atPath: url.path) {
        throw TokenizerError(file: url.path, message: "file not found",
                             hint: "a byte-level BPE tokenizer needs both vocab.json and merges.txt in the folder")
    }
    if config["add_prefix_space"] as? Bool == true {
        throw unsupported(vocabURL.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path,
                          "add_prefix_space=true", "only GPT-2's add_prefix_space=false is implemented")
    }
    // JSONDecoder, not JSONSerialization, which drops a leading U+FEFF from string values.
    let vocabJSON: [String: Int]
    do { vocabJSON = try JSONDecoder().decode([String: Int].self, from: try readData(vocabURL)) } catch let e as TokenizerError {
        throw e
    } catch {
        throw TokenizerError(file: vocabURL.path, message: "not a JSON object of token -> integer id", hint: "use the vocab.json saved with merges.txt")
    }
    let vocab = try intMap(vocabJSON, path: vocabURL.path)
    let text = try readText(mergesURL)
    var merges: [(String, String, line: Int)] = []
    merges.reserveCapacity(50_000)
    var lineNo = 0
    for line in rustLines(text) {
        lineNo += 1
        if lineNo == 1 && line.hasPrefix("#version") { continue }
        if line.isEmpty { continue }
        let parts = mergeParts(line)
        guard parts.count == 2 else {
            throw TokenizerError(file: "\(mergesURL.path):\(lineNo)", message: "\"\(line)\" is not two space-separated tokens",
                                 hint: "each merges.txt line after the #version header is \"left right\"")
        }
        merges.append((parts[0], parts[1], line: lineNo))
    }
    let model = try BPEModel(vocab: vocab, merges: merges, vocabFile: vocabURL.path, mergesFile: mergesURL.path)
    // GPT2Tokenizer's bos/eos/unk default to <|endoftext|>; every configured special becomes an added token.
    var added: [AddedToken] = []
    var seen = Set<String>()
    var nextId = Int32(model.idToToken.count)
    var pad: String? = nil
    for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
        let fallback: String? = key == "pad_token" ? nil : "<|endoftext|>"
        guard let t = configToken(config[key]) ?? configToken(specialMap[key]) ?? fallback else { continue }
        if key == "pad_token" { pad = t }
        if seen.contains(t) { continue }
        if let id = vocab[t] {
            added.append(AddedToken(content: t, id: id, special: true))
        } else if key != "unk_token" || config[key] != nil || specialMap[key] != nil {
            added.append(AddedToken(content: t, id: nextId, special: true)); nextId += 1
        } else { continue }
        seen.insert(t)
    }
    added += try configAddedTokens(config, path: vocabURL.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path)
        .filter { !seen.contains($0.content) }
    return ByteLevelBPETokenizer(model: model, addedTokens: added, postProcessor: .plain, padToken: pad)
}

// MARK: - helpers

/// Rust `str::lines()`: split on \n, drop one trailing \r per line, no empty last line after a final \n.
/// Splits on scalars, not Characters: "\r\n" is one Character and would never match "\n".
private func rustLines(_ text: String) -> [Substring] {
    var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last?.isEmpty == true { lines.removeLast() }
    return lines.map { Substring($0.last == "\r" ? $0.dropLast() : $0) }
}

/// "left right" -> ["left", "right"], split on the U+0020 scalar (a space followed by a combining mark is one
/// Character, so a Character split would miss it).
private func mergeParts<S: StringProtocol>(_ line: S) -> [String] {
    line.unicodeScalars.split(separator: " ", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
}

/// `added_tokens_decoder` of tokenizer_config.json: {"id": {"content": ..., "special": ...}}.
private func configAddedTokens(_ config: [String: Any], path: String) throws -> [AddedToken] {
    guard let dict = config["added_tokens_decoder"] as? [String: [String: Any]] else { return [] }
    return try dict.compactMap { key, t in
        guard let id = Int32(key), let content = t["content"] as? String else { return nil }
        for flag in ["lstrip", "rstrip", "single_word"] where t[flag] as? Bool == true {
            throw unsupported(path, "added token \"\(content)\" with \(flag)=true", "only plain added tokens are implemented")
        }
        return AddedToken(content: content, id: id, special: t["special"] as? Bool ?? false)
    }.sorted { $0.id < $1.id }
}

/// A special token in a config is either a string or a serialized AddedToken {"content": ...}.
private func configToken(_ v: Any?) -> String? {
    if let s = v as? String { return s }
    if let d = v as? [String: Any] { return d["content"] as? String }
    return nil
}

private func unsupported(_ path: String, _ what: String, _ hint: String) -> TokenizerError {
    TokenizerError(file: path, message: "\(what) is not supported", hint: hint)
}

private func intMap(_ json: [String: Int], path: String) throws -> [String: Int32] {
    var out: [String: Int32] = [:]
    out.reserveCapacity(json.count)
    for (k, n) in json {
        guard n >= 0, n <= Int(Int32.max) else {
            throw TokenizerError(file: path, message: "token \"\(k)\" has a non-integer or negative id", hint: "ids must be integers 0..<vocab size")
        }
        out[k] = Int32(n)
    }
    return out
}

private func readData(_ url: URL) throws -> Data {
    do { return try Data(contentsOf: url) } catch {
        throw TokenizerError(file: url.path, message: "cannot read file (\(FileManager.default.fileExists(atPath: url.path) ? "unreadable" : "not found"))",
                             hint: "check the path and permissions")
    }
}

private func readText(_ url: URL) throws -> String {
    let data = try readData(url)
    guard let s = String(data: data, encoding: .utf8) else {
        throw TokenizerError(file: url.path, message: "not valid UTF-8", hint: "re-save the file as UTF-8")
    }
    return s
}

private func readJSON(_ url: URL) throws -> Any {
    let data = try readData(url)
    do { return try JSONSerialization.jsonObject(with: data) } catch {
        throw TokenizerError(file: url.path, message: "invalid JSON (\(error.localizedDescription))", hint: "re-save it with transformers/tokenizers")
    }
}

private func readOptionalJSON(_ url: URL) throws -> [String: Any] {
    guard FileManager.default.fileExists(atPath: url.path) else { return [:] }
    guard let d = try readJSON(url) as? [String: Any] else {
        throw TokenizerError(file: url.path, message: "not a JSON object", hint: "re-save it with transformers")
    }
    return d
}
