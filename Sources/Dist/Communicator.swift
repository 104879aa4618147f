// Communicator: the only door to other ranks. Model and Training code talk to this protocol and never to MPI.
// `LocalCommunicator` is world size 1: every collective returns its input unchanged, so a plain `disttrain train`
// needs no MPI at all. `MPICommunicator` (MPICommunicator.swift) goes through the C shim in Sources/CMPI.

/// An error from a collective or from start-up, carrying enough context to name the failing call.
public struct CommunicatorError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reduction operations supported by `allReduce`.
public enum ReduceOp: Sendable { case sum, max, min }

/// Collective operations over all ranks of a job. Buffers are reduced in place.
public protocol Communicator: AnyObject {
    /// This process's rank in 0..<worldSize.
    var rank: Int { get }
    /// The number of ranks in the job.
    var worldSize: Int { get }
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws
    func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws
    /// Copies `buffer` from `root` into every other rank's `buffer` (same byte count everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
    /// Ends every rank of the job at once with `code` (used when one rank finds an unrecoverable error).
    func abort(code: Int32) -> Never
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Sums a single scalar across ranks.
    public func sum(_ value: Double) throws -> Double {
        var v = value
        try withUnsafeMutablePointer(to: &v) { try allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: .sum) }
        return v
    }

    /// Sums a single integer across ranks.
    public func sum(_ value: Int64) throws -> Int64 {
        var v = value
        try withUnsafeMutablePointer(to: &v) { try allReduce(UnsafeMutableBufferPointer(start: $0, count: 1), op: .sum) }
        return v
    }

    /// In-place sum of a Swift array.
    public func allReduceSum(_ array: inout [Float]) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: .sum) }
    }
    public func allReduceSum(_ array: inout [Double]) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: .sum) }
    }
    public func allReduceSum(_ array: inout [Int64]) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op: .sum) }
    }
}

/// World size 1: collectives are the identity.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var worldSize: Int { 1 }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {}
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
