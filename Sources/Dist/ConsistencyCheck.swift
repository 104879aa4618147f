// ConsistencyCheck: refuses to start when ranks disagree about the run. Each rank hashes a description of its config,
// hyperparameters and data fingerprint (FNV-1a 64, implemented here so the value is the same on every platform and
// Swift version, unlike `Hasher`, which is randomly seeded per process). The hashes are compared with one MIN/MAX
// all-reduce; only on a mismatch are per-rank hashes gathered to name the odd rank(s), and per-field hashes to name
// the field(s) that differ.
// Deliberately not here: what goes into the description (the trainer decides), or any attempt to reconcile.
import Foundation

/// FNV-1a, 64-bit (Fowler–Noll–Vo). Not cryptographic; detects accidental differences.
public struct FNV1a64: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func combine<S: Sequence>(bytes: S) where S.Element == UInt8 {
        for b in bytes {
            value ^= UInt64(b)
            value &*= 0x0000_0100_0000_01b3
        }
    }
    public mutating func combine(_ string: String) { combine(bytes: string.utf8) }
    public static func hash(_ string: String) -> UInt64 {
        var h = FNV1a64()
        h.combine(string)
        return h.value
    }
}

public enum ConsistencyCheck {
    /// The canonical text of a list of fields: `key=value` lines in the given order.
    public static func describe(_ fields: [(String, String)]) -> String {
        fields.map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
    }

    /// A fingerprint of a data file: its byte size and FNV-1a 64 of its contents, read in 1 MiB chunks. Two ranks
    /// given different copies or versions of a file get different fingerprints.
    public static func fingerprint(fileAt path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CommunicatorError("cannot open data file \(path) to fingerprint it")
        }
        defer { try? handle.close() }
        var h = FNV1a64()
        var size = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            h.combine(bytes: chunk)
            size += chunk.count
        }
        return "\(size) bytes, fnv1a64 \(String(h.value, radix: 16))"
    }

    /// `verify` for a ready-made description: one field per line, `key=value` (a line without `=` is keyed by its
    /// line number), so a mismatch still names the differing keys.
    @discardableResult
    public static func verify(description: String, communicator comm: Communicator) throws -> UInt64 {
        let fields = description.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map {
            (i, line) -> (String, String) in
            if let eq = line.firstIndex(of: "=") { return (String(line[..<eq]), String(line[line.index(after: eq)...])) }
            return ("line \(i + 1)", String(line))
        }
        return try verify(fields, communicator: comm)
    }

    /// Hash of the canonical description.
    public static func hash(_ fields: [(String, String)]) -> UInt64 { FNV1a64.hash(describe(fields)) }

    /// Compares `fields` across all ranks; throws `CommunicatorError` naming the ranks that differ from rank 0 (and
    /// the differing field names, when every rank has the same number of fields). All ranks must call this.
    /// Returns the common hash.
    @discardableResult
    public static func verify(_ fields: [(String, String)], communicator comm: Communicator) throws -> UInt64 {
        let h = hash(fields)
        guard comm.worldSize > 1 else { return h }
        // Split the hash into two non-negative 32-bit halves so MAX of (x, -x) gives both MAX and MIN in one call
        // without Int64 overflow on negation. The field count rides along for the per-field pass below.
        let hi = Int64(h >> 32), lo = Int64(h & 0xFFFF_FFFF), n = Int64(fields.count)
        var v: [Int64] = [hi, lo, n, -hi, -lo, -n]
        try comm.allReduce(&v, op: .max)
        if v[0] == -v[3], v[1] == -v[4] { return h }

        // Mismatch: gather every rank's hash to find who differs from rank 0.
        let all = try comm.allGather(Int64(bitPattern: h))
        let odd = (0..<comm.worldSize).filter { all[$0] != all[0] }
        var message = "consistency check failed: rank(s) \(odd.map(String.init).joined(separator: ", ")) were "
            + "started with a different configuration, hyperparameters or data than rank 0"
        if v[2] == -v[5] {
            // Same field count everywhere: gather per-field hashes (worldSize × fields) to name the fields.
            var table = [Int64](repeating: 0, count: comm.worldSize * fields.count)
            for (i, f) in fields.enumerated() {
                table[comm.rank * fields.count + i] = Int64(bitPattern: FNV1a64.hash("\(f.0)=\(f.1)"))
            }
            try comm.allReduce(&table, op: .sum)
            let differing = fields.indices.filter { i in
                (0..<comm.worldSize).contains { table[$0 * fields.count + i] != table[i] }
            }
            if !differing.isEmpty {
                message += " (differing: \(differing.map { fields[$0].0 }.joined(separator: ", ")))"
            }
            if odd.contains(comm.rank) {
                message += "; this rank (\(comm.rank)) has "
                    + differing.map { "\(fields[$0].0)=\(fields[$0].1)" }.joined(separator: ", ")
            }
        } else {
            message += " (ranks list different numbers of fields: \(-v[5])…\(v[2]))"
        }
        message += ". HINT: start every rank with the same arguments and data files."
        throw CommunicatorError(message)
    }
}
