// ConfigFile: `--config FILE.yaml` for every subcommand that takes flags (train, eval, predict, generate, bench,
// tokenize, merge). The YAML's keys are the command's long flag names (`learning-rate` or `learning_rate`); the file is
// turned into `--flag value` arguments placed BEFORE the command-line ones, so every flag is available in YAML without
// being declared twice, and a flag given on the command line wins (ArgumentParser keeps the last value of a repeated
// option). `bench --config` also takes a model's config.json (its older meaning): only a .yaml/.yml file is expanded
// there, and that `--config` is then dropped from the command line (a `config:` key may name the config.json).
// Known flags and their value types come from the command itself (its dump-help JSON for the names, a Mirror of a
// parsed instance for the Swift types), so a new flag needs no change here.
// Deliberately not here: any setting that is not a flag (the file is not a second configuration language), nested
// sections, environment variable expansion, and resolving relative paths against the file (they stay relative to the
// working directory, exactly as on the command line).
import ArgumentParser
import Foundation
import Training
import Yams

/// A command whose default instance cannot be parsed from its required options alone (its validate() wants more)
/// names the extra arguments that let ConfigFile parse one to learn its flags' value types.
protocol ConfigFileTypeProbe {
    static var typeProbeArguments: [String] { get }
}

enum ConfigFile {
    /// The subcommands whose `--config` is expanded, by name.
    static let commands: [String: any ParsableCommand.Type] = [
        "train": Train.self, "eval": Eval.self, "predict": Predict.self, "generate": Generate.self, "bench": Bench.self,
        "tokenize": Tokenize.self, "merge": Merge.self,
    ]

    /// `args` (without the program name) with the `--config FILE` of its subcommand expanded in front of the command
    /// line's own flags; unchanged for other subcommands and without --config.
    static func expand(_ args: [String]) throws -> [String] {
        guard let sub = args.first, let command = commands[sub] else { return args }
        var rest = Array(args.dropFirst())
        guard let path = configPath(in: rest) else { return args }
        if command == Bench.self {
            guard isYAML(path) else { return args }   // bench --config config.json: the model shape
            rest = removingConfig(rest)
        }
        return [sub] + (try yamlArguments(path: path, for: command)) + rest
    }

    static func isYAML(_ path: String) -> Bool {
        ["yaml", "yml"].contains(URL(fileURLWithPath: path).pathExtension.lowercased())
    }

    /// `args` without `--config X` / `--config=X` (before a `--`).
    static func removingConfig(_ args: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--" { out += args[i...]; break }
            if a == "--config", i + 1 < args.count { i += 2; continue }
            if !a.hasPrefix("--config=") { out.append(a) }
            i += 1
        }
        return out
    }

    /// What one flag accepts, for type checks and messages.
    enum ValueKind: Equatable {
        case flag, integer, unsignedInteger, number, string

        var expected: String {
            switch self {
            case .flag: return "a boolean (true or false)"
            case .integer: return "an integer"
            case .unsignedInteger: return "a non-negative integer"
            case .number: return "a number"
            case .string: return "a string"
            }
        }
    }

    /// The same, for one command (the older spelling; `expand(_:)` knows every command by its name).
    static func expand<C: ParsableCommand>(_ args: [String], for command: C.Type, subcommand: String) throws -> [String] {
        try expand(args)
    }

    /// The value of `--config X` or `--config=X`, if present (the last one wins, like any option).
    static func configPath(in args: [String]) -> String? {
        var found: String?
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--" { break }
            if a == "--config", i + 1 < args.count { found = args[i + 1]; i += 2; continue }
            if a.hasPrefix("--config=") { found = String(a.dropFirst("--config=".count)) }
            i += 1
        }
        return found
    }

    /// Reads the YAML at `path` and returns the equivalent flags for `command`. Every problem is a usage error
    /// (exit code 2) naming the file and the key.
    static func yamlArguments<C: ParsableCommand>(path: String, for command: C.Type) throws -> [String] {
        func usage(_ m: String) -> TrainingError { TrainingError(m, exitCode: 2) }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw usage("--config \(path): cannot read the file (\((error as NSError).localizedDescription)); check the path")
        }
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw usage("\(path): not valid YAML (\(oneLine("\(error)"))); write one `flag-name: value` per line")
        }
        guard let root else { return [] }  // an empty file sets nothing
        guard let map = root as? [String: Any] else {
            throw usage("\(path): the top level must be a mapping of flag names to values, like `learning-rate: 5e-5`")
        }
        let known = try knownFlags(of: command)
        // `config` is the YAML itself, except for bench, whose --config may also name a config.json.
        let reserved: Set<String> = command == Bench.self ? ["help"] : ["config", "help"]
        var out: [String] = []
        var seen: [String: String] = [:]
        for key in map.keys.sorted() {
            let name = key.replacingOccurrences(of: "_", with: "-")
            if let other = seen[name] {
                throw usage("\(path): keys '\(other)' and '\(key)' set the same flag --\(name); keep one of them")
            }
            seen[name] = key
            guard let kind = known[name], !reserved.contains(name) else {
                let close = closeMatches(name, in: Array(known.keys.filter { !reserved.contains($0) }))
                throw usage("\(path): unknown key '\(key)'"
                            + (close.isEmpty ? "" : "; did you mean \(close.map { "'\($0)'" }.joined(separator: " or "))?")
                            + " (keys are the long flag names of `disttrain \(command._commandName)`, see --help)")
            }
            let value = map[key]
            if value == nil || value is NSNull { continue }  // `key:` with no value leaves the default
            guard let scalar = scalarText(value!) else {
                throw usage("\(path): key '\(key)' must be \(kind.expected), not a list or mapping")
            }
            switch kind {
            case .flag:
                guard let b = boolValue(value!, scalar) else {
                    throw usage("\(path): key '\(key)' must be \(kind.expected) (got '\(scalar)')")
                }
                if b { out.append("--\(name)") }
            case .integer:
                guard Int(scalar) != nil else { throw usage("\(path): key '\(key)' must be \(kind.expected) (got '\(scalar)')") }
                out += ["--\(name)", scalar]
            case .unsignedInteger:
                guard UInt64(scalar) != nil else { throw usage("\(path): key '\(key)' must be \(kind.expected) (got '\(scalar)')") }
                out += ["--\(name)", scalar]
            case .number:
                guard let d = Double(scalar), d.isFinite else {
                    throw usage("\(path): key '\(key)' must be \(kind.expected) (got '\(scalar)')")
                }
                out += ["--\(name)", scalar]
            case .string:
                out += ["--\(name)=\(scalar)"]  // `=` so a value starting with '-' is not read as a flag
            }
        }
        return out
    }

    /// Long flag name → value kind, for every option and flag of `command` (hidden ones included).
    static func knownFlags<C: ParsableCommand>(of command: C.Type) throws -> [String: ValueKind] {
        // Names and option/flag kinds from ArgumentParser's own description of the command.
        let dump = Data(command._dumpHelp().utf8)
        guard let obj = try? JSONSerialization.jsonObject(with: dump) as? [String: Any],
              let cmd = obj["command"] as? [String: Any], let args = cmd["arguments"] as? [[String: Any]] else {
            throw TrainingError("internal: cannot read the flag list of `\(command._commandName)`")
        }
        // Swift value types from a Mirror of the default instance (labels are `_camelCase` property names).
        var types: [String: String] = [:]
        let probe = (command as? ConfigFileTypeProbe.Type)?.typeProbeArguments ?? []
        if let instance = try? command.parse(requiredDummies(args) + probe) {
            collectTypes(of: instance, into: &types)
        }
        var out: [String: ValueKind] = [:]
        for a in args {
            guard let kindName = a["kind"] as? String, kindName != "positional" else { continue }
            let longs = ((a["names"] as? [[String: Any]]) ?? []).filter { ($0["kind"] as? String) == "long" }
                .compactMap { $0["name"] as? String }
            guard let primary = (a["preferredName"] as? [String: Any])?["name"] as? String ?? longs.first else { continue }
            let kind: ValueKind
            if kindName == "flag" {
                kind = .flag
            } else {
                let t = types[primary] ?? longs.lazy.compactMap { types[$0] }.first ?? ""
                if t.contains("<Double>") || t.contains("<Optional<Double>>") || t.contains("Float") { kind = .number }
                else if t.contains("UInt") { kind = .unsignedInteger }
                else if t.contains("<Int>") || t.contains("<Optional<Int>>") { kind = .integer }
                else { kind = .string }
            }
            for n in longs { out[n] = kind }
        }
        return out
    }

    /// `_camelCase` property label → Swift type name, for the flags of `instance` and of its option groups.
    static func collectTypes(of instance: Any, into types: inout [String: String]) {
        for child in Mirror(reflecting: instance).children {
            guard let label = child.label, label.hasPrefix("_") else { continue }
            let t = String(describing: type(of: child.value))
            if t.hasPrefix("OptionGroup<") {
                for group in parsedGroups(in: child.value, depth: 0) { collectTypes(of: group, into: &types) }
            } else {
                types[kebab(String(label.dropFirst()))] = t
            }
        }
    }

    /// The parsed ParsableArguments value inside an OptionGroup wrapper (a few levels down its stored properties).
    static func parsedGroups(in value: Any, depth: Int) -> [Any] {
        if depth > 0, value is ParsableArguments { return [value] }
        guard depth < 4 else { return [] }
        return Mirror(reflecting: value).children.flatMap { parsedGroups(in: $0.value, depth: depth + 1) }
    }

    /// Placeholder values for the required options (distinct, so no "must differ" check trips), so a default instance
    /// can be parsed for its property types.
    static func requiredDummies(_ args: [[String: Any]]) -> [String] {
        var out: [String] = []
        for a in args where (a["kind"] as? String) == "option" && (a["isOptional"] as? Bool) == false {
            if let n = ((a["names"] as? [[String: Any]]) ?? []).first(where: { ($0["kind"] as? String) == "long" })?["name"] as? String {
                out += ["--\(n)", "probe-\(n)"]
            }
        }
        return out
    }

    /// camelCase → kebab-case, as ArgumentParser derives long names.
    static func kebab(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch.isUppercase { out += "-" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    static func scalarText(_ v: Any) -> String? {
        switch v {
        case let s as String: return s
        case let b as Bool: return b ? "true" : "false"
        case let i as Int: return String(i)
        case let d as Double: return "\(d)"
        case is [Any], is [String: Any]: return nil
        default: return "\(v)"
        }
    }

    static func boolValue(_ v: Any, _ text: String) -> Bool? {
        if let b = v as? Bool { return b }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    /// Up to three known names within a small edit distance of `name` (or containing it), closest first.
    static func closeMatches(_ name: String, in known: [String]) -> [String] {
        var scored: [(name: String, distance: Int)] = []
        for k in known {
            let d = editDistance(name, k)
            let close = d <= max(2, name.count / 3)
            let contained = k.contains(name) || (name.count >= 4 && name.contains(k))
            if close || contained { scored.append((k, d)) }
        }
        scored.sort { $0.distance != $1.distance ? $0.distance < $1.distance : $0.name < $1.name }
        return scored.prefix(3).map { $0.name }
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }

    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}
