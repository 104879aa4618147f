// ByteTables: the two hash maps the hot loops use instead of Dictionary<String, _>.
// `ByteStringMap` maps raw UTF-8 byte strings to Int32 so a word can be looked up straight from the input
// buffer without building a String; `PairMap` maps an (id, id) pair to a packed (rank, merged id) for BPE.
// They are deliberately minimal: insert and lookup only, no deletion, open addressing with linear probing.

/// Byte string -> Int32, keys stored back to back in one array.
struct ByteStringMap: Sendable {
    private var keyBytes: [UInt8] = []
    private var keyStart: [Int32] = []
    private var keyLength: [Int32] = []
    private var keyHash: [UInt64] = []
    private var values: [Int32] = []
    private var slots: [Int32]
    private var mask: Int

    var count: Int { values.count }

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: -1, count: n)
        mask = n - 1
    }

    /// A fast multiply-xorshift hash over 8-byte words; keys are short words, so this beats SipHash by far.
    @inline(__always)
    static func hash(_ p: UnsafeRawBufferPointer) -> UInt64 {
        let n = p.count
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: n)
        var i = 0
        while i + 8 <= n {
            let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            h = (h ^ w) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            i += 8
        }
        if i < n {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < n { w |= UInt64(p[i]) << shift; shift += 8; i += 1 }
            h = (h ^ w) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 29
        }
        h = (h ^ (h >> 32)) &* 0xD6E8_FEB8_6659_FD93
        return h ^ (h >> 32)
    }

    @inline(__always)
    func lookup(_ p: UnsafeRawBufferPointer) -> Int32? {
        let h = ByteStringMap.hash(p)
        return slots.withUnsafeBufferPointer { slots -> Int32? in
            var s = Int(truncatingIfNeeded: h) & mask
            while true {
                let e = Int(slots[s])
                if e < 0 { return nil }
                if keyHash[e] == h && Int(keyLength[e]) == p.count {
                    let start = Int(keyStart[e])
                    let equal = keyBytes.withUnsafeBytes { kb -> Bool in
                        p.count == 0 || memcmpEqual(kb.baseAddress! + start, p.baseAddress!, p.count)
                    }
                    if equal { return values[e] }
                }
                s = (s + 1) & mask
            }
        }
    }

    func lookup(_ bytes: [UInt8]) -> Int32? { bytes.withUnsafeBytes { lookup($0) } }

    /// Inserts or overwrites.
    mutating func insert(_ p: UnsafeRawBufferPointer, value: Int32) {
        let h = ByteStringMap.hash(p)
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] >= 0 {
            let e = Int(slots[s])
            if keyHash[e] == h && Int(keyLength[e]) == p.count {
                let start = Int(keyStart[e])
                if keyBytes[start..<start + p.count].elementsEqual(p) { values[e] = value; return }
            }
            s = (s + 1) & mask
        }
        slots[s] = Int32(values.count)
        keyStart.append(Int32(keyBytes.count))
        keyLength.append(Int32(p.count))
        keyHash.append(h)
        keyBytes.append(contentsOf: p)
        values.append(value)
        if values.count * 2 > slots.count { grow() }
    }

    mutating func insert(_ bytes: [UInt8], value: Int32) { bytes.withUnsafeBytes { insert($0, value: value) } }

    mutating func removeAll() {
        keyBytes.removeAll(keepingCapacity: true); keyStart.removeAll(keepingCapacity: true)
        keyLength.removeAll(keepingCapacity: true); keyHash.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        for i in slots.indices { slots[i] = -1 }
    }

    private mutating func grow() {
        let n = slots.count * 2
        slots = [Int32](repeating: -1, count: n)
        mask = n - 1
        for e in 0..<values.count {
            var s = Int(truncatingIfNeeded: keyHash[e]) & mask
            while slots[s] >= 0 { s = (s + 1) & mask }
            slots[s] = Int32(e)
        }
    }
}

@inline(__always)
private func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i += 8
    }
    while i < n {
        if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
        i += 1
    }
    return true
}

/// (left id, right id) -> (merge rank, merged id), packed into UInt64 keys and values.
struct PairMap: Sendable {
    private var keys: [UInt64]
    private var vals: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        keys = [UInt64](repeating: PairMap.empty, count: n)
        vals = [UInt64](repeating: 0, count: n)
        mask = n - 1
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
    }

    /// Keeps the first (lowest-rank) entry when a pair is listed twice, as `tokenizers` does.
    mutating func insertIfAbsent(_ a: Int32, _ b: Int32, rank: UInt32, merged: Int32) {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        var s = PairMap.slot(key, mask)
        while keys[s] != PairMap.empty {
            if keys[s] == key { return }
            s = (s + 1) & mask
        }
        keys[s] = key
        vals[s] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// Returns rank << 32 | merged id, or UInt64.max when the pair does not merge.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> UInt64 {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        return keys.withUnsafeBufferPointer { keys in
            var s = PairMap.slot(key, mask)
            while true {
                let k = keys[s]
                if k == key { return vals[s] }
                if k == PairMap.empty { return UInt64.max }
                s = (s + 1) & mask
            }
        }
    }
}
