// NodeSharedSetup: how a job's gradients are all-reduced and where its parameters live, decided once at start-up.
// A single-node job keeps its gradients in node-shared memory, where the reducer sums them in place, if every rank
// sees room for all ranks' segments (a container's /dev/shm is often 64 MB): decided together. Under ZeRO-1 the node
// also keeps one copy of the parameters, which every rank reads and each owner updates in place (rank 0's segment of
// a second window). Several nodes with the same number of ranks each reduce hierarchically (in place within each
// node, each share across the nodes) and, under ZeRO-1, each rank updates 1/(ranks) of the dense parameters in its
// node's one copy (a window per node) and all-gathers its blocks across the nodes; the word-embedding rows are owned
// by a local rank and updated alike on every node (GradientReducer). Otherwise (no room, uneven nodes, or one
// process) the reducer sends MPI messages, or nothing.
// Used by the Trainer and by `bench` (ScalingBenchmark), so the benchmark measures the trainer's path.
// Deliberately not here: the reduction itself (Dist's GradientReducer), the optimizer step (TrainStep).
import Dist
import Model

struct NodeSharedSetup {
    /// The reducer of the step: in place in node-shared memory, or through messages.
    let reducer: GradientReducer
    /// ZeRO-1: the window whose rank-0 segment holds the node's one copy of the parameters (the store's values);
    /// each rank's AdamW writes its own shares there, and `sync()` on it publishes them. nil: AdamW on every rank.
    let sharedValues: NodeSharedMemory?
    /// What was set up, for the user (nil for a single process or when shared memory was not asked for).
    let notice: String?

    /// ZeRO-1: the rank of the reducer's node group that reduces and updates row `row` of a row-sparse table, and
    /// (for the checkpoint gather) a world rank holding that row's moments.
    let rowOwner: ((Int) -> Int)?
    let rowOwnerWorldRank: ((Int) -> Int)?
    /// This rank's index in the reducer's node group (its local rank; its rank on one node).
    let groupRank: Int

    init(reducer: GradientReducer, sharedValues: NodeSharedMemory?, notice: String?, rowOwner: ((Int) -> Int)? = nil,
         rowOwnerWorldRank: ((Int) -> Int)? = nil, groupRank: Int = 0) {
        self.reducer = reducer; self.sharedValues = sharedValues; self.notice = notice
        self.rowOwner = rowOwner; self.rowOwnerWorldRank = rowOwnerWorldRank; self.groupRank = groupRank
    }

    /// Whether AdamW is sharded over the ranks (ZeRO stage 1): on the in-place, node-shared-memory path, where each
    /// rank is left with only its shares of the reduced dense gradient (and its rows of the word-embedding table)
    /// anyway, and updates them in the node's one copy of the parameters. The result is the same bits: every
    /// element's update is the same arithmetic, only computed once per node instead of once per rank.
    var shardsOptimizer: Bool { sharedValues != nil }

    /// Collective. Moves `store`'s gradients (and, with `shardOptimizer`, its values) into node-shared memory when
    /// `sharedMemory` is asked for, there are several ranks and every rank has room; the store's values must already
    /// be identical on every rank (after the start-up broadcast).
    /// `gradCommDtype`: cross-node gradient traffic in float32 or bfloat16 (multi-node jobs only).
    static func make(comm: Communicator, store: ParameterStore, sharedMemory: Bool, shardOptimizer: Bool,
                     bucketBytes: Int = 4 << 20, gradCommDtype: GradientReducer.CommDtype = .fp32) throws -> NodeSharedSetup {
        // Several ranks reducing with MPI messages: say so, with the topology (and why not hierarchically).
        let messages = comm.worldSize > 1 ? "gradients all-reduced with MPI messages, AdamW on every rank (\(comm.topology)\(comm.topology.ranksPerNode == nil ? "; the hierarchical reduction needs the same number of ranks on every node" : ""))" : nil
        let plain = NodeSharedSetup(reducer: GradientReducer(communicator: comm, bucketBytes: bucketBytes), sharedValues: nil, notice: messages)
        guard sharedMemory, comm.worldSize > 1 else { return plain }
        let shmBytes = GradientReducer.sharedBytes(elements: store.count, worldSize: comm.worldSize)
        let valueBytes = shardOptimizer ? store.count * MemoryLayout<Float>.stride : 0
        // (across nodes: the node's ranks' gradients and, under ZeRO-1, the node's copy of the parameters)
        let needed = comm.topology.spansNodes
            ? GradientReducer.sharedBytes(elements: store.count, worldSize: comm.topology.localSize) * comm.topology.localSize + valueBytes
            : shmBytes * comm.worldSize + valueBytes
        var room: [Int64] = [(NodeSharedMemory.freeBackingBytes() ?? 0) >= needed + (64 << 20) ? 1 : 0]
        try comm.allReduce(&room, op: .min)
        if room[0] == 0 {
            return NodeSharedSetup(reducer: plain.reducer, sharedValues: nil, notice: "\(NodeSharedMemory.backingDirectory) has less than \(needed >> 20) MB free for node-shared gradients\(valueBytes > 0 ? " and parameters" : ""): all-reducing with MPI messages (enlarge it, e.g. docker --shm-size, for the in-place path)")
        }
        guard let shm = try comm.makeNodeSharedMemory(segmentBytes: shmBytes) else {
            // Several nodes: in place within each node, then each share across the nodes (GradientReducer).
            let t = comm.topology
            guard let h = try comm.makeHierarchicalGroups(segmentBytes: GradientReducer.sharedBytes(elements: store.count, worldSize: t.localSize)) else { return plain }
            store.adoptGradientBuffer(UnsafeMutableBufferPointer(start: h.node.base.assumingMemoryBound(to: Float.self), count: store.count), owner: h.node)
            let dtypeNote = gradCommDtype == .bf16 ? "; cross-node gradients in bfloat16, summed in float32" : ""
            guard valueBytes > 0 else {
                return NodeSharedSetup(reducer: GradientReducer(communicator: comm, bucketBytes: bucketBytes, shared: h.node, crossNode: h.peers, commDtype: gradCommDtype), sharedValues: nil,
                                       notice: "gradients reduced hierarchically: in place in node-shared memory within each node, each rank's share all-reduced with MPI messages across the \(t.nodeCount) nodes; AdamW on every rank (\(t)\(dtypeNote); --no-shared-memory for MPI messages only)")
            }
            // ZeRO-1 across nodes: one copy of the parameters per node (local rank 0's segment of a second per-node
            // window; its cross-node communicator is not needed), and every rank's place, so that any rank can name
            // the owner of a block (checkpoint gather).
            guard let v = try comm.makeHierarchicalGroups(segmentBytes: t.localRank == 0 ? valueBytes : 0) else { return plain }
            let values = v.node
            let buffer = UnsafeMutableBufferPointer(start: values.segment(of: 0).assumingMemoryBound(to: Float.self), count: store.count)
            if t.localRank == 0 { store.adoptValueBuffer(buffer, owner: values, copy: true) }
            try values.sync()
            if t.localRank != 0 { store.adoptValueBuffer(buffer, owner: values, copy: false) }
            var places = [Int64](repeating: 0, count: 2 * comm.worldSize)
            places[2 * comm.rank] = Int64(t.node); places[2 * comm.rank + 1] = Int64(t.localRank)
            try comm.allReduce(&places, op: .sum)
            let placement = (0..<comm.worldSize).map { (node: Int(places[2 * $0]), local: Int(places[2 * $0 + 1])) }
            // A table row's owner is a local rank (the same rows on every node); its moments are on every node:
            // node 0's rank of that local rank is the one the checkpoint gather reads.
            var node0 = [Int](repeating: 0, count: t.localSize)
            for (q, p) in placement.enumerated() where p.node == 0 { node0[p.local] = q }
            let L = t.localSize
            let reducer = GradientReducer(communicator: comm, bucketBytes: bucketBytes, shared: h.node, crossNode: h.peers,
                                          commDtype: gradCommDtype, placement: placement)
            return NodeSharedSetup(reducer: reducer, sharedValues: values,
                                   notice: "gradients reduced hierarchically: in place in node-shared memory within each node, each rank's share reduce-scattered with MPI messages across the \(t.nodeCount) nodes; AdamW sharded over all \(comm.worldSize) ranks (ZeRO-1 across \(t.nodeCount) nodes), updated parameters all-gathered across the nodes (\(t)\(dtypeNote); --no-shared-memory for MPI messages only)",
                                   rowOwner: { GradientSyncLayout.tableRowOwner($0, worldSize: L) },
                                   rowOwnerWorldRank: { node0[GradientSyncLayout.tableRowOwner($0, worldSize: L)] },
                                   groupRank: t.localRank)
        }
        store.adoptGradientBuffer(UnsafeMutableBufferPointer(start: shm.base.assumingMemoryBound(to: Float.self), count: store.count), owner: shm)
        let reducer = GradientReducer(communicator: comm, bucketBytes: bucketBytes, shared: shm)
        var sharedValues: NodeSharedMemory?
        if valueBytes > 0, let values = try comm.makeNodeSharedMemory(segmentBytes: comm.isRoot ? valueBytes : 0) {
            // Every replica holds rank 0's parameters (broadcast before): rank 0 copies its own into the node's
            // buffer, and after the barrier every rank reads that one.
            let buffer = UnsafeMutableBufferPointer(start: values.segment(of: 0).assumingMemoryBound(to: Float.self), count: store.count)
            if comm.isRoot { store.adoptValueBuffer(buffer, owner: values, copy: true) }
            try values.sync()
            if !comm.isRoot { store.adoptValueBuffer(buffer, owner: values, copy: false) }
            sharedValues = values
        }
        let world = comm.worldSize
        return NodeSharedSetup(reducer: reducer, sharedValues: sharedValues,
                               notice: "gradients all-reduced in place in node-shared memory, \(sharedValues != nil ? "AdamW sharded over the ranks (ZeRO-1)" : "AdamW on every rank") (all \(comm.worldSize) ranks on one node; --no-shared-memory for MPI messages)",
                               rowOwner: sharedValues == nil ? nil : { GradientSyncLayout.tableRowOwner($0, worldSize: world) },
                               rowOwnerWorldRank: sharedValues == nil ? nil : { GradientSyncLayout.tableRowOwner($0, worldSize: world) },
                               groupRank: comm.rank)
    }
}
