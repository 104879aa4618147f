// MPICommunicator: `Communicator` over MPI_COMM_WORLD through the CMPI shim. Every return code is checked and
// turned into a `CommunicatorError` naming the call, the rank and the element count.
import CMPI

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let worldSize: Int

    /// Initialises MPI (once per process; a second call reuses the running instance) and queries rank and size.
    public init(threadLevel: Int32 = Int32(CMPI_THREAD_FUNNELED)) throws {
        var flag: Int32 = 0
        try MPICommunicator.check(cmpi_initialized(&flag), "MPI_Initialized")
        if flag == 0 {
            var provided: Int32 = 0
            try MPICommunicator.check(cmpi_init(threadLevel, &provided), "MPI_Init_thread")
        }
        var r: Int32 = 0, s: Int32 = 0
        try MPICommunicator.check(cmpi_rank(&r), "MPI_Comm_rank")
        try MPICommunicator.check(cmpi_size(&s), "MPI_Comm_size")
        rank = Int(r)
        worldSize = Int(s)
    }

    static func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        guard code != 0 else { return }
        var buf = [CChar](repeating: 0, count: 512)
        cmpi_error_string(code, &buf, Int32(buf.count))
        throw CommunicatorError("\(call()) failed with MPI error \(code): \(String(cString: buf))")
    }

    private func op(_ op: ReduceOp) -> Int32 {
        switch op {
        case .sum: return Int32(CMPI_OP_SUM)
        case .max: return Int32(CMPI_OP_MAX)
        case .min: return Int32(CMPI_OP_MIN)
        }
    }

    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        guard buffer.count > 0 else { return }
        try Self.check(cmpi_allreduce(buffer.baseAddress, buffer.count, Int32(CMPI_FLOAT), self.op(op)),
                       "MPI_Allreduce(float, \(buffer.count)) on rank \(rank)")
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        guard buffer.count > 0 else { return }
        try Self.check(cmpi_allreduce(buffer.baseAddress, buffer.count, Int32(CMPI_DOUBLE), self.op(op)),
                       "MPI_Allreduce(double, \(buffer.count)) on rank \(rank)")
    }
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Int64>, op: ReduceOp) throws {
        guard buffer.count > 0 else { return }
        try Self.check(cmpi_allreduce(buffer.baseAddress, buffer.count, Int32(CMPI_INT64), self.op(op)),
                       "MPI_Allreduce(int64, \(buffer.count)) on rank \(rank)")
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard buffer.count > 0 else { return }
        try Self.check(cmpi_bcast(buffer.baseAddress, buffer.count, Int32(CMPI_BYTE), Int32(root)),
                       "MPI_Bcast(\(buffer.count) bytes from \(root)) on rank \(rank)")
    }
    public func barrier() throws {
        try Self.check(cmpi_barrier(), "MPI_Barrier on rank \(rank)")
    }
    public func abort(code: Int32) -> Never {
        _ = cmpi_abort(code)
        fatalError("MPI_Abort returned")
    }
    /// Seconds since an arbitrary point, from MPI_Wtime.
    public func wallTime() -> Double { cmpi_wtime() }
}
