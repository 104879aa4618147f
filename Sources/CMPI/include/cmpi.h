// cmpi.h: a plain-C interface over MPI for Swift. It deliberately does NOT include mpi.h: OpenMPI's
// MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM and MPI_IN_PLACE are cast macros that Swift cannot import, and MPI_Request
// is an implementation-defined handle type. Everything here is over MPI_COMM_WORLD and in-place, except the
// cmpi_comm_* calls (over a split of it) and the per-node windows of cmpi_shm_create_node.
// Every function that can fail returns an MPI error code (0 = MPI_SUCCESS); cmpi_error_string turns one into text.
// It is deliberately NOT a general MPI binding: only what data-parallel training needs.
#ifndef CMPI_H
#define CMPI_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Thread levels, mirroring MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE.
enum { CMPI_THREAD_SINGLE = 0, CMPI_THREAD_FUNNELED = 1, CMPI_THREAD_SERIALIZED = 2, CMPI_THREAD_MULTIPLE = 3 };
/// Element types and reduction operations understood by the collectives.
enum { CMPI_FLOAT = 0, CMPI_DOUBLE = 1, CMPI_INT64 = 2, CMPI_BYTE = 3 };
enum { CMPI_OP_SUM = 0, CMPI_OP_MAX = 1, CMPI_OP_MIN = 2 };
/// Returned by the shim itself (not by MPI) for invalid arguments, e.g. an unknown dtype/op or a NULL request.
enum { CMPI_ERR_ARG = -1, CMPI_ERR_NOMEM = -2 };

int cmpi_initialized(int *flag);
int cmpi_finalized(int *flag);
/// MPI_Init_thread with CMPI_THREAD_* `required_level`; `*provided_level` receives the CMPI_THREAD_* granted.
/// Installs MPI_ERRORS_RETURN on MPI_COMM_WORLD so failures come back as codes instead of killing the process.
int cmpi_init(int required_level, int *provided_level);
int cmpi_finalize(void);
int cmpi_rank(int *rank);
int cmpi_size(int *size);
int cmpi_barrier(void);
int cmpi_abort(int code);
/// In-place all-reduce over MPI_COMM_WORLD; counts above INT_MAX are sent in chunks.
int cmpi_allreduce(void *buffer, size_t count, int dtype, int op);
/// Broadcast of `count` elements from `root`; chunked like cmpi_allreduce.
int cmpi_bcast(void *buffer, size_t count, int dtype, int root);

/// An in-flight non-blocking all-reduce (one MPI_Request per INT_MAX chunk). Opaque to Swift (OpaquePointer).
typedef struct cmpi_request cmpi_request;
/// Starts an in-place MPI_Iallreduce. On success `*request` owns the pending operation and must be passed to
/// cmpi_wait (which frees it) or, after cmpi_test reported completion, to cmpi_request_free. The buffer must not be
/// touched until then. On failure `*request` is NULL.
int cmpi_iallreduce(void *buffer, size_t count, int dtype, int op, cmpi_request **request);
/// Sets *done to 1 when every chunk has completed (the request stays allocated; free it or wait on it).
int cmpi_test(cmpi_request *request, int *done);
/// Blocks until the operation completes, then frees `request` (also on error).
int cmpi_wait(cmpi_request *request);
/// Frees a request that cmpi_test reported complete. Freeing an incomplete request is a bug (returns CMPI_ERR_ARG
/// and leaks the request rather than corrupting MPI state).
int cmpi_request_free(cmpi_request *request);

/// Memory shared by the ranks of one node (an MPI-3 shared-memory window), for reductions that read the other
/// ranks' buffers directly instead of sending them. Opaque to Swift.
typedef struct cmpi_shm cmpi_shm;
/// Collective over MPI_COMM_WORLD. When every rank of the job runs on this node, allocates `bytes` (may differ per
/// rank) of node-shared memory for each rank and sets *shm and *base (this rank's segment, 64-byte aligned);
/// when the job spans several nodes, sets *shm = NULL and returns 0 (callers fall back to message passing).
int cmpi_shm_create(size_t bytes, cmpi_shm **shm, void **base);
/// Base address of `rank`'s segment as mapped in this process (NULL for a rank outside the window).
void *cmpi_shm_segment(cmpi_shm *shm, int rank);
/// Bytes of `rank`'s segment (as MPI_Win_shared_query reports it: what it asked for, at least 64; 0 for a rank
/// outside the window).
size_t cmpi_shm_segment_bytes(cmpi_shm *shm, int rank);
/// Memory barrier across the node: MPI_Win_sync, MPI_Barrier of the node's ranks, MPI_Win_sync. Every write to
/// the window made by any rank before the call is visible to every rank after it.
int cmpi_shm_sync(cmpi_shm *shm);
/// Collective: frees the window and the handle.
int cmpi_shm_free(cmpi_shm *shm);

/// A communicator over a subset of MPI_COMM_WORLD's ranks (MPI_Comm_split), e.g. the ranks of the same local rank
/// on every node. Opaque to Swift. Errors come back as codes (MPI_ERRORS_RETURN).
typedef struct cmpi_comm cmpi_comm;
/// Collective over MPI_COMM_WORLD: ranks passing the same `color` (>= 0) form one communicator, ordered by `key`.
int cmpi_comm_split(int color, int key, cmpi_comm **comm);
int cmpi_comm_rank(cmpi_comm *comm, int *rank);
int cmpi_comm_size(cmpi_comm *comm, int *size);
/// In-place all-reduce / broadcast / barrier over `comm`, chunked like their MPI_COMM_WORLD versions.
int cmpi_comm_allreduce(cmpi_comm *comm, void *buffer, size_t count, int dtype, int op);
int cmpi_comm_bcast(cmpi_comm *comm, void *buffer, size_t count, int dtype, int root);
int cmpi_comm_barrier(cmpi_comm *comm);
/// MPI_Alltoallv of bytes over `comm`: this rank sends send[sdispls[q] ..< +scounts[q]] to rank q and receives rank
/// q's block into recv[rdispls[q] ..< +rcounts[q]] (byte counts and offsets, one per rank of `comm`).
int cmpi_comm_alltoallv(cmpi_comm *comm, const void *send, const int *scounts, const int *sdispls,
                        void *recv, const int *rcounts, const int *rdispls);
/// In-place MPI_Allgatherv of bytes over `comm`: rank q's block is buffer[displs[q] ..< +counts[q]]; afterwards every
/// rank holds every block.
int cmpi_comm_allgatherv(cmpi_comm *comm, void *buffer, const int *counts, const int *displs);
/// Non-blocking cmpi_comm_alltoallv (MPI_Ialltoallv of bytes; the count and offset arrays are copied): `*request`
/// as for cmpi_iallreduce; neither buffer may be touched until it completed.
int cmpi_comm_ialltoallv(cmpi_comm *comm, const void *send, const int *scounts, const int *sdispls,
                         void *recv, const int *rcounts, const int *rdispls, cmpi_request **request);
/// Collective over `comm`: frees it and the handle.
int cmpi_comm_free(cmpi_comm *comm);

/// Like cmpi_shm_create, but over the ranks of this rank's node only, whether or not the job spans nodes
/// (collective over MPI_COMM_WORLD; each node gets its own window; segments are indexed by rank within the node).
int cmpi_shm_create_node(size_t bytes, cmpi_shm **shm, void **base);

/// Where this rank sits among the job's nodes as MPI sees them (MPI_COMM_TYPE_SHARED: the ranks that can share
/// memory). Collective over MPI_COMM_WORLD. Nodes are numbered in the order of their lowest world rank.
typedef struct cmpi_topology_info {
    int node;            // this rank's node, 0..<node_count
    int node_count;
    int local_rank;      // rank within the node (ordered by world rank)
    int local_size;      // ranks on this node
    int min_local_size;  // fewest ranks on any node
    int max_local_size;  // most ranks on any node
} cmpi_topology_info;
int cmpi_topology(cmpi_topology_info *info);

/// Writes a human-readable message for an MPI (or CMPI_ERR_*) code into buf (always NUL-terminated).
void cmpi_error_string(int code, char *buf, int buflen);

#ifdef __cplusplus
}
#endif
#endif
