// SafeTensors: reader (memory-mapped) and writer for Hugging Face's safetensors format.
// File layout: u64 little-endian header length N, N bytes of JSON header {name: {dtype, shape, data_offsets}},
// optional "__metadata__" {string: string}, then the data area. Offsets are relative to the data area.
// The reader validates everything before any tensor is touched (header inside the file and <= 100 MB, every range
// inside the data area, no overlaps, no holes, shape x dtype size == byte length, known dtypes), so a hostile or
// truncated file is an error naming the file and the tensor, never a crash. It converts F32/F16/BF16 to Float and
// reads I64/I32 as integers. The writer produces what transformers writes: sorted names, header padded with spaces
// to a multiple of 8, `__metadata__ {"format":"pt"}`, written to a temporary file, fsynced and renamed into place.
// Deliberately not here: lazy per-tensor loading policies or quantised dtypes.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Errors from reading or writing safetensors files; `description` is one line naming the file and the fix.
public struct SafeTensorsError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// Element types that can appear in a safetensors file.
public enum DType: String, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

/// Name, type, shape and location of one tensor in a file.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range relative to the start of the data area.
    public let range: Range<Int>
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A read-only, memory-mapped safetensors file.
public final class SafeTensorsFile: @unchecked Sendable {
    public let url: URL
    public let metadata: [String: String]
    /// Tensors in file order (by offset).
    public let tensors: [TensorInfo]
    private let byName: [String: TensorInfo]
    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let dataStart: Int

    /// Largest header accepted, as in the reference implementation.
    public static let maxHeaderBytes = 100_000_000

    public init(url: URL) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SafeTensorsError(path: path, "cannot open (\(String(cString: strerror(errno)))); check the path")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError(path: path, "cannot stat the file") }
        let size = Int(st.st_size)
        guard size >= 8 else {
            throw SafeTensorsError(path: path, "file is \(size) bytes, too short for a safetensors header; the file is truncated or not safetensors")
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw SafeTensorsError(path: path, "mmap failed: \(String(cString: strerror(errno)))")
        }
        let raw = UnsafeRawPointer(map)
        var ok = false
        defer { if !ok { munmap(map, size) } }

        let headerLen64 = raw.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLen64 <= UInt64(Self.maxHeaderBytes) else {
            throw SafeTensorsError(path: path, "header length \(headerLen64) exceeds the 100 MB limit; the file is corrupt or not safetensors")
        }
        let headerLen = Int(headerLen64)
        guard 8 + headerLen <= size else {
            throw SafeTensorsError(path: path, "header length \(headerLen) runs past the end of the \(size)-byte file; the file is truncated")
        }
        let headerData = Data(bytes: raw + 8, count: headerLen)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerData) } catch {
            throw SafeTensorsError(path: path, "header is not valid JSON; the file is corrupt")
        }
        guard let dict = json as? [String: Any] else {
            throw SafeTensorsError(path: path, "header is not a JSON object; the file is corrupt")
        }
        let dataStart = 8 + headerLen
        let dataLength = size - dataStart
        var meta: [String: String] = [:]
        var infos: [TensorInfo] = []
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw SafeTensorsError(path: path, "__metadata__ is not an object of strings")
                }
                for (k, v) in m { meta[k] = v as? String ?? "\(v)" }
                continue
            }
            guard let t = value as? [String: Any] else {
                throw SafeTensorsError(path: path, "tensor '\(name)': entry is not an object")
            }
            guard let dtName = t["dtype"] as? String else {
                throw SafeTensorsError(path: path, "tensor '\(name)': missing dtype")
            }
            guard let dtype = DType(rawValue: dtName) else {
                throw SafeTensorsError(path: path, "tensor '\(name)': unsupported dtype '\(dtName)' (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)")
            }
            guard let shapeAny = t["shape"] as? [Any] else {
                throw SafeTensorsError(path: path, "tensor '\(name)': missing or invalid shape")
            }
            var shape: [Int] = []
            var count = 1
            for d in shapeAny {
                guard let n = (d as? NSNumber)?.int64Value, n >= 0, n <= Int64(Int32.max) else {
                    throw SafeTensorsError(path: path, "tensor '\(name)': invalid dimension \(d) in shape")
                }
                shape.append(Int(n))
                let (c, overflow) = count.multipliedReportingOverflow(by: Int(n))
                guard !overflow, c <= dataLength else {
                    throw SafeTensorsError(path: path, "tensor '\(name)': shape \(shapeAny) is larger than the file's data area (\(dataLength) bytes)")
                }
                count = c
            }
            guard let offs = t["data_offsets"] as? [Any], offs.count == 2,
                  let b = (offs[0] as? NSNumber)?.int64Value, let e = (offs[1] as? NSNumber)?.int64Value else {
                throw SafeTensorsError(path: path, "tensor '\(name)': missing or invalid data_offsets")
            }
            guard b >= 0, e >= b, e <= Int64(dataLength) else {
                throw SafeTensorsError(path: path, "tensor '\(name)': data_offsets [\(b), \(e)] lie outside the data area of \(dataLength) bytes; the file is truncated or corrupt")
            }
            guard Int(e - b) == count * dtype.byteSize else {
                throw SafeTensorsError(path: path, "tensor '\(name)': shape \(shape) of \(dtName) needs \(count * dtype.byteSize) bytes but data_offsets cover \(e - b)")
            }
            infos.append(TensorInfo(name: name, dtype: dtype, shape: shape, range: Int(b)..<Int(e)))
        }
        infos.sort { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }
        var cursor = 0
        for info in infos {
            if info.range.lowerBound < cursor {
                throw SafeTensorsError(path: path, "tensor '\(info.name)': its bytes overlap the previous tensor's; the file is corrupt")
            }
            if info.range.lowerBound > cursor {
                throw SafeTensorsError(path: path, "tensor '\(info.name)': a hole of \(info.range.lowerBound - cursor) bytes precedes it; the file is corrupt")
            }
            cursor = info.range.upperBound
        }
        if cursor != dataLength {
            throw SafeTensorsError(path: path, "the data area has \(dataLength - cursor) trailing bytes no tensor covers; the file is corrupt")
        }
        self.metadata = meta
        self.tensors = infos
        self.byName = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
        self.base = raw
        self.mappedLength = size
        self.dataStart = dataStart
        ok = true
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }

    public var names: [String] { tensors.map(\.name) }
    public func info(_ name: String) -> TensorInfo? { byName[name] }
    public func contains(_ name: String) -> Bool { byName[name] != nil }

    private func require(_ name: String) throws -> TensorInfo {
        guard let i = byName[name] else {
            throw SafeTensorsError(path: url.path, "no tensor named '\(name)'")
        }
        return i
    }

    /// Converts a floating-point tensor to Float and writes it into `out` (whose count must equal the element count).
    public func copyFloats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        let i = try require(name)
        guard out.count == i.elementCount else {
            throw SafeTensorsError(path: url.path, "tensor '\(name)': has \(i.elementCount) elements, destination expects \(out.count)")
        }
        let p = base + dataStart + i.range.lowerBound
        let n = i.elementCount
        switch i.dtype {
        case .f32:
            memcpy(out.baseAddress!, p, n * 4)
            #if _endian(big)
            for k in 0..<n { out[k] = Float(bitPattern: UInt32(littleEndian: out[k].bitPattern)) }
            #endif
        case .f16:
            for k in 0..<n { out[k] = Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self)))) }
        case .bf16:
            for k in 0..<n {
                let h = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
                out[k] = Float(bitPattern: UInt32(h) << 16)
            }
        case .f64:
            for k in 0..<n { out[k] = Float(p.loadUnaligned(fromByteOffset: 8 * k, as: Double.self)) }
        default:
            throw SafeTensorsError(path: url.path, "tensor '\(name)': dtype \(i.dtype.rawValue) is not floating point")
        }
    }

    /// A floating-point tensor converted to `[Float]`.
    public func floats(_ name: String) throws -> [Float] {
        let i = try require(name)
        var out = [Float](repeating: 0, count: i.elementCount)
        try out.withUnsafeMutableBufferPointer { try copyFloats(name, into: $0) }
        return out
    }

    /// An integer tensor (I64, I32, I16, I8, U8, BOOL) as `[Int64]`.
    public func int64s(_ name: String) throws -> [Int64] {
        let i = try require(name)
        let p = base + dataStart + i.range.lowerBound
        let n = i.elementCount
        switch i.dtype {
        case .i64: return (0..<n).map { Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        case .i32: return (0..<n).map { Int64(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        case .i16: return (0..<n).map { Int64(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
        case .i8: return (0..<n).map { Int64(p.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8, .bool: return (0..<n).map { Int64(p.load(fromByteOffset: $0, as: UInt8.self)) }
        default:
            throw SafeTensorsError(path: url.path, "tensor '\(name)': dtype \(i.dtype.rawValue) is not an integer type")
        }
    }
}

/// A tensor to be written: F32 data from a buffer, or I64 data.
public struct TensorToWrite {
    public enum Payload { case f32(UnsafeBufferPointer<Float>), f32Array([Float]), i64([Int64]) }
    public let name: String
    public let shape: [Int]
    public let payload: Payload
    public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        self.name = name; self.shape = shape; self.payload = .f32(floats)
    }
    public init(name: String, shape: [Int], floats: [Float]) {
        self.name = name; self.shape = shape; self.payload = .f32Array(floats)
    }
    public init(name: String, shape: [Int], int64s: [Int64]) {
        self.name = name; self.shape = shape; self.payload = .i64(int64s)
    }
    var byteCount: Int {
        switch payload {
        case .f32(let b): return b.count * 4
        case .f32Array(let a): return a.count * 4
        case .i64(let a): return a.count * 8
        }
    }
    var dtype: DType {
        switch payload { case .f32, .f32Array: return .f32; case .i64: return .i64 }
    }
}

public enum SafeTensorsWriter {
    /// Writes `tensors` to `url` atomically: a temporary file in the same folder, fsync, rename.
    /// Names are sorted, the header is padded with spaces to a multiple of 8 and carries `{"format":"pt"}`.
    public static func write(_ tensors: [TensorToWrite], metadata: [String: String] = ["format": "pt"], to url: URL) throws {
        let path = url.path
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw SafeTensorsError(path: path, "duplicate tensor name '\(t.name)'") }
            guard t.shape.reduce(1, *) * t.dtype.byteSize == t.byteCount else {
                throw SafeTensorsError(path: path, "tensor '\(t.name)': shape \(t.shape) does not match its \(t.byteCount) bytes")
            }
        }
        let sorted = tensors.sorted { $0.name < $1.name }
        // The header is built by hand so that key order is sorted and stable, like the Rust writer's.
        var header = "{"
        var first = true
        func jsonString(_ s: String) -> String {
            let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
            let arr = String(decoding: data, as: UTF8.self)
            return String(arr.dropFirst().dropLast())
        }
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        for t in sorted {
            if !first { header += "," }
            first = false
            let shape = t.shape.map(String.init).joined(separator: ",")
            header += "\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.byteCount)]}"
            offset += t.byteCount
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }

        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw SafeTensorsError(path: tmp.path, "cannot create (\(String(cString: strerror(errno)))); check that the folder exists and is writable")
        }
        var closed = false
        var done = false
        defer {
            if !closed { close(fd) }
            if !done { unlink(tmp.path) }
        }
        func writeAll(_ p: UnsafeRawPointer, _ n: Int) throws {
            var off = 0
            while off < n {
                let w = Glibc.write(fd, p + off, n - off)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError(path: path, "write failed: \(String(cString: strerror(errno)))")
                }
                off += w
            }
        }
        var len = UInt64(headerBytes.count).littleEndian
        try withUnsafeBytes(of: &len) { try writeAll($0.baseAddress!, 8) }
        try headerBytes.withUnsafeBytes { try writeAll($0.baseAddress!, $0.count) }
        for t in sorted {
            switch t.payload {
            case .f32(let b): if b.count > 0 { try writeAll(b.baseAddress!, b.count * 4) }
            case .f32Array(let a): try a.withUnsafeBytes { if $0.count > 0 { try writeAll($0.baseAddress!, $0.count) } }
            case .i64(let a): try a.withUnsafeBytes { if $0.count > 0 { try writeAll($0.baseAddress!, $0.count) } }
            }
        }
        guard fsync(fd) == 0 else { throw SafeTensorsError(path: path, "fsync failed: \(String(cString: strerror(errno)))") }
        close(fd)
        closed = true
        guard rename(tmp.path, path) == 0 else {
            throw SafeTensorsError(path: path, "rename into place failed: \(String(cString: strerror(errno)))")
        }
        done = true
        FileIO.fsyncDirectory(url.deletingLastPathComponent())
    }
}

/// Small durable-file helpers shared by the writers.
public enum FileIO {
    /// fsyncs a directory so that a rename inside it survives a crash (best effort).
    public static func fsyncDirectory(_ dir: URL) {
        let fd = open(dir.path, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }

    /// The tokenizer and generation files a Hugging Face model folder may carry next to its weights.
    public static let companionFiles = ["vocab.txt", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"]

    /// Copies each of `names` that exists in `source` into `destination` atomically (skipping a folder onto itself).
    public static func copyFiles(_ names: [String], from source: URL, to destination: URL) throws {
        for name in names {
            let src = source.appendingPathComponent(name), dst = destination.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: src.path), src.standardizedFileURL != dst.standardizedFileURL else { continue }
            try writeAtomically(try Data(contentsOf: src), to: dst)
        }
    }

    /// Writes `data` to `url` atomically (temporary file, fsync, rename, directory fsync).
    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try data.write(to: tmp)
            let fd = open(tmp.path, O_WRONLY)
            if fd >= 0 { _ = fsync(fd); close(fd) }
            guard rename(tmp.path, url.path) == 0 else {
                throw SafeTensorsError(path: url.path, "rename into place failed: \(String(cString: strerror(errno)))")
            }
            fsyncDirectory(url.deletingLastPathComponent())
        } catch {
            unlink(tmp.path)
            if let e = error as? SafeTensorsError { throw e }
            throw SafeTensorsError(path: url.path, "cannot write: \(error.localizedDescription); check that the folder exists and is writable")
        }
    }
}
