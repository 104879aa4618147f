// cmpi.c: the only translation unit that includes mpi.h. Thin wrappers; errors are returned, never handled here
// (MPI_ERRORS_RETURN is installed on MPI_COMM_WORLD at init so that failures reach Swift as codes).
// Not here: any policy (retries, watchdogs, scaling); that lives in Sources/Dist.
#include "cmpi.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>

// Returns 0 for an unknown dtype so callers can reject it instead of silently reducing bytes.
static MPI_Datatype cmpi_type(int dtype, size_t *size) {
    switch (dtype) {
    case CMPI_FLOAT: *size = 4; return MPI_FLOAT;
    case CMPI_DOUBLE: *size = 8; return MPI_DOUBLE;
    case CMPI_INT64: *size = 8; return MPI_INT64_T;
    case CMPI_BYTE: *size = 1; return MPI_BYTE;
    default: *size = 0; return MPI_DATATYPE_NULL;
    }
}

static MPI_Op cmpi_op(int op) {
    switch (op) {
    case CMPI_OP_SUM: return MPI_SUM;
    case CMPI_OP_MAX: return MPI_MAX;
    case CMPI_OP_MIN: return MPI_MIN;
    default: return MPI_OP_NULL;
    }
}

int cmpi_initialized(int *flag) { return MPI_Initialized(flag); }
int cmpi_finalized(int *flag) { return MPI_Finalized(flag); }

int cmpi_init(int required_level, int *provided_level) {
    int levels[4] = {MPI_THREAD_SINGLE, MPI_THREAD_FUNNELED, MPI_THREAD_SERIALIZED, MPI_THREAD_MULTIPLE};
    if (required_level < 0 || required_level > 3) return CMPI_ERR_ARG;
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, levels[required_level], &provided);
    if (rc != MPI_SUCCESS) return rc;
    *provided_level = 0;
    for (int i = 0; i < 4; i++) if (levels[i] == provided) *provided_level = i;
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int cmpi_finalize(void) { return MPI_Finalize(); }
int cmpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int cmpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }
int cmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
int cmpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

// MPI counts are `int`; larger buffers go in INT_MAX-element chunks (in the same order on every rank).
static const size_t cmpi_chunk = (size_t)INT_MAX;

static int allreduce_on(MPI_Comm comm, void *buffer, size_t count, int dtype, int op) {
    size_t esize = 0;
    MPI_Datatype t = cmpi_type(dtype, &esize);
    MPI_Op o = cmpi_op(op);
    if (t == MPI_DATATYPE_NULL || o == MPI_OP_NULL || (buffer == NULL && count > 0)) return CMPI_ERR_ARG;
    char *p = (char *)buffer;
    while (count > 0) {
        int n = (int)(count < cmpi_chunk ? count : cmpi_chunk);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p, n, t, o, comm);
        if (rc != MPI_SUCCESS) return rc;
        p += (size_t)n * esize;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

static int bcast_on(MPI_Comm comm, void *buffer, size_t count, int dtype, int root) {
    size_t esize = 0;
    MPI_Datatype t = cmpi_type(dtype, &esize);
    if (t == MPI_DATATYPE_NULL || (buffer == NULL && count > 0)) return CMPI_ERR_ARG;
    char *p = (char *)buffer;
    while (count > 0) {
        int n = (int)(count < cmpi_chunk ? count : cmpi_chunk);
        int rc = MPI_Bcast(p, n, t, root, comm);
        if (rc != MPI_SUCCESS) return rc;
        p += (size_t)n * esize;
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

int cmpi_allreduce(void *buffer, size_t count, int dtype, int op) {
    return allreduce_on(MPI_COMM_WORLD, buffer, count, dtype, op);
}

int cmpi_bcast(void *buffer, size_t count, int dtype, int root) {
    return bcast_on(MPI_COMM_WORLD, buffer, count, dtype, root);
}

// ---------------------------------------------------------------- sub-communicators
struct cmpi_comm { MPI_Comm comm; };

int cmpi_comm_split(int color, int key, cmpi_comm **comm) {
    if (comm == NULL || color < 0) return CMPI_ERR_ARG;
    *comm = NULL;
    cmpi_comm *c = calloc(1, sizeof *c);
    if (c == NULL) return CMPI_ERR_NOMEM;
    int rc = MPI_Comm_split(MPI_COMM_WORLD, color, key, &c->comm);
    if (rc != MPI_SUCCESS) { free(c); return rc; }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    *comm = c;
    return MPI_SUCCESS;
}

int cmpi_comm_rank(cmpi_comm *comm, int *rank) { return comm ? MPI_Comm_rank(comm->comm, rank) : CMPI_ERR_ARG; }
int cmpi_comm_size(cmpi_comm *comm, int *size) { return comm ? MPI_Comm_size(comm->comm, size) : CMPI_ERR_ARG; }
int cmpi_comm_allreduce(cmpi_comm *comm, void *buffer, size_t count, int dtype, int op) {
    return comm ? allreduce_on(comm->comm, buffer, count, dtype, op) : CMPI_ERR_ARG;
}
int cmpi_comm_bcast(cmpi_comm *comm, void *buffer, size_t count, int dtype, int root) {
    return comm ? bcast_on(comm->comm, buffer, count, dtype, root) : CMPI_ERR_ARG;
}
int cmpi_comm_barrier(cmpi_comm *comm) { return comm ? MPI_Barrier(comm->comm) : CMPI_ERR_ARG; }
int cmpi_comm_alltoallv(cmpi_comm *comm, const void *send, const int *scounts, const int *sdispls,
                        void *recv, const int *rcounts, const int *rdispls) {
    if (comm == NULL || scounts == NULL || sdispls == NULL || rcounts == NULL || rdispls == NULL) return CMPI_ERR_ARG;
    return MPI_Alltoallv(send, scounts, sdispls, MPI_BYTE, recv, rcounts, rdispls, MPI_BYTE, comm->comm);
}
int cmpi_comm_allgatherv(cmpi_comm *comm, void *buffer, const int *counts, const int *displs) {
    if (comm == NULL || counts == NULL || displs == NULL) return CMPI_ERR_ARG;
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, counts, displs, MPI_BYTE, comm->comm);
}
int cmpi_comm_free(cmpi_comm *comm) {
    if (comm == NULL) return CMPI_ERR_ARG;
    int rc = MPI_Comm_free(&comm->comm);
    free(comm);
    return rc;
}

struct cmpi_request {
    int count;              // number of chunks (>= 1; a zero-length reduction still gets one request)
    int done;               // set once MPI_Testall/Waitall reported completion
    MPI_Request reqs[];     // one per chunk
};

int cmpi_iallreduce(void *buffer, size_t count, int dtype, int op, cmpi_request **request) {
    if (request == NULL) return CMPI_ERR_ARG;
    *request = NULL;
    size_t esize = 0;
    MPI_Datatype t = cmpi_type(dtype, &esize);
    MPI_Op o = cmpi_op(op);
    if (t == MPI_DATATYPE_NULL || o == MPI_OP_NULL || (buffer == NULL && count > 0)) return CMPI_ERR_ARG;
    size_t chunks = count == 0 ? 1 : (count + cmpi_chunk - 1) / cmpi_chunk;
    cmpi_request *r = malloc(sizeof(cmpi_request) + chunks * sizeof(MPI_Request));
    if (r == NULL) return CMPI_ERR_NOMEM;
    r->count = 0;
    r->done = 0;
    char *p = (char *)buffer;
    size_t left = count;
    for (size_t i = 0; i < chunks; i++) {
        int n = (int)(left < cmpi_chunk ? left : cmpi_chunk);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, p, n, t, o, MPI_COMM_WORLD, &r->reqs[i]);
        if (rc != MPI_SUCCESS) {
            // Chunks already started cannot be cancelled (collectives are not cancellable); wait for them so the
            // buffer is not written behind the caller's back, then report the original error.
            if (r->count > 0) MPI_Waitall(r->count, r->reqs, MPI_STATUSES_IGNORE);
            free(r);
            return rc;
        }
        r->count++;
        p += (size_t)n * esize;
        left -= (size_t)n;
    }
    *request = r;
    return MPI_SUCCESS;
}

int cmpi_comm_ialltoallv(cmpi_comm *comm, const void *send, const int *scounts, const int *sdispls,
                         void *recv, const int *rcounts, const int *rdispls, cmpi_request **request) {
    if (request == NULL) return CMPI_ERR_ARG;
    *request = NULL;
    if (comm == NULL || scounts == NULL || sdispls == NULL || rcounts == NULL || rdispls == NULL) return CMPI_ERR_ARG;
    int n = 0;
    int rc = MPI_Comm_size(comm->comm, &n);
    if (rc != MPI_SUCCESS) return rc;
    // One request, followed by copies of the four count/offset arrays: MPI reads them until completion, and the
    // request's lifetime is exactly that (freed by cmpi_wait or cmpi_request_free).
    cmpi_request *r = malloc(sizeof(cmpi_request) + sizeof(MPI_Request) + 4 * (size_t)n * sizeof(int));
    if (r == NULL) return CMPI_ERR_NOMEM;
    int *a = (int *)(void *)&r->reqs[1];
    memcpy(a, scounts, n * sizeof(int)); memcpy(a + n, sdispls, n * sizeof(int));
    memcpy(a + 2 * n, rcounts, n * sizeof(int)); memcpy(a + 3 * n, rdispls, n * sizeof(int));
    r->count = 1;
    r->done = 0;
    rc = MPI_Ialltoallv(send, a, a + n, MPI_BYTE, recv, a + 2 * n, a + 3 * n, MPI_BYTE, comm->comm, &r->reqs[0]);
    if (rc != MPI_SUCCESS) { free(r); return rc; }
    *request = r;
    return MPI_SUCCESS;
}

int cmpi_test(cmpi_request *request, int *done) {
    if (request == NULL || done == NULL) return CMPI_ERR_ARG;
    if (!request->done) {
        int flag = 0;
        int rc = MPI_Testall(request->count, request->reqs, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        request->done = flag;
    }
    *done = request->done;
    return MPI_SUCCESS;
}

int cmpi_wait(cmpi_request *request) {
    if (request == NULL) return CMPI_ERR_ARG;
    int rc = MPI_SUCCESS;
    if (!request->done) rc = MPI_Waitall(request->count, request->reqs, MPI_STATUSES_IGNORE);
    free(request);
    return rc;
}

int cmpi_request_free(cmpi_request *request) {
    if (request == NULL) return CMPI_ERR_ARG;
    if (!request->done) return CMPI_ERR_ARG;
    free(request);
    return MPI_SUCCESS;
}

void cmpi_error_string(int code, char *buf, int buflen) {
    if (buflen <= 0) return;
    char tmp[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (code == CMPI_ERR_ARG) {
        strncpy(tmp, "invalid argument to the CMPI shim (unknown type/op, NULL buffer or request)", sizeof tmp);
    } else if (code == CMPI_ERR_NOMEM) {
        strncpy(tmp, "out of memory in the CMPI shim", sizeof tmp);
    } else if (MPI_Error_string(code, tmp, &len) != MPI_SUCCESS) {
        strncpy(tmp, "unknown MPI error", sizeof tmp);
    }
    tmp[MPI_MAX_ERROR_STRING - 1] = 0;
    strncpy(buf, tmp, (size_t)buflen - 1);
    buf[buflen - 1] = 0;
}

// ---------------------------------------------------------------- topology
int cmpi_topology(cmpi_topology_info *info) {
    if (info == NULL) return CMPI_ERR_ARG;
    memset(info, 0, sizeof *info);
    MPI_Comm node;
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return rc;
    int world = 0, lead = 0, before = 0, sizes[2];
    MPI_Comm_rank(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(node, &info->local_rank);
    MPI_Comm_size(node, &info->local_size);
    lead = info->local_rank == 0;
    // A node's index = the number of node leaders (local rank 0, its lowest world rank) before its own leader.
    rc = MPI_Exscan(&lead, &before, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS) { if (world == 0) before = 0; rc = MPI_Bcast(&before, 1, MPI_INT, 0, node); }
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(&lead, &info->node_count, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    sizes[0] = info->local_size; sizes[1] = -info->local_size;
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) return rc;
    info->node = before;
    info->max_local_size = sizes[0];
    info->min_local_size = -sizes[1];
    return MPI_SUCCESS;
}

// ---------------------------------------------------------------- node-shared memory
struct cmpi_shm {
    MPI_Comm node;
    MPI_Win win;
    int size;
    void **segments;  // per node rank, as mapped here
    size_t *bytes;    // per node rank, as asked for
};

// single_node_only: return *shm = NULL when the job spans nodes (every rank agrees); otherwise one window per node.
static int shm_create(size_t bytes, cmpi_shm **shm, void **base, int single_node_only) {
    if (shm == NULL || base == NULL) return CMPI_ERR_ARG;
    *shm = NULL; *base = NULL;
    MPI_Comm node;
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return rc;
    int nodeSize = 0, worldSize = 0, spans = 0, local = 0;
    MPI_Comm_size(node, &nodeSize);
    MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
    if (single_node_only) {
        // Every rank must agree: one rank on a node of its own would otherwise wait in a window the others skip.
        local = nodeSize != worldSize;
        rc = MPI_Allreduce(&local, &spans, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS || spans) { MPI_Comm_free(&node); return rc; }
    }
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");  // each segment on its owner's NUMA node
    cmpi_shm *s = calloc(1, sizeof *s);
    if (s == NULL) { MPI_Info_free(&info); MPI_Comm_free(&node); return CMPI_ERR_NOMEM; }
    s->node = node;
    s->size = nodeSize;
    void *mine = NULL;
    s->bytes = calloc((size_t)nodeSize, sizeof(size_t));
    if (s->bytes == NULL) { MPI_Info_free(&info); MPI_Comm_free(&node); free(s); return CMPI_ERR_NOMEM; }
    rc = MPI_Win_allocate_shared((MPI_Aint)(bytes == 0 ? 64 : bytes), 64, info, node, &mine, &s->win);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) { MPI_Comm_free(&node); free(s->bytes); free(s); return rc; }
    MPI_Win_set_errhandler(s->win, MPI_ERRORS_RETURN);
    s->segments = calloc((size_t)nodeSize, sizeof(void *));
    if (s->segments == NULL) { MPI_Win_free(&s->win); MPI_Comm_free(&node); free(s->bytes); free(s); return CMPI_ERR_NOMEM; }
    for (int r = 0; r < nodeSize; r++) {
        MPI_Aint sz; int du; void *p = NULL;
        rc = MPI_Win_shared_query(s->win, r, &sz, &du, &p);
        if (rc != MPI_SUCCESS) { free(s->segments); MPI_Win_free(&s->win); MPI_Comm_free(&node); free(s->bytes); free(s); return rc; }
        s->segments[r] = p;
        s->bytes[r] = (size_t)sz;
    }
    // Passive-target epoch for the window's lifetime: loads and stores are ordered by cmpi_shm_sync.
    rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win);
    if (rc != MPI_SUCCESS) { free(s->segments); MPI_Win_free(&s->win); MPI_Comm_free(&node); free(s->bytes); free(s); return rc; }
    *shm = s;
    *base = mine;
    return MPI_SUCCESS;
}

int cmpi_shm_create(size_t bytes, cmpi_shm **shm, void **base) { return shm_create(bytes, shm, base, 1); }
int cmpi_shm_create_node(size_t bytes, cmpi_shm **shm, void **base) { return shm_create(bytes, shm, base, 0); }

void *cmpi_shm_segment(cmpi_shm *shm, int rank) {
    if (shm == NULL || rank < 0 || rank >= shm->size) return NULL;
    return shm->segments[rank];
}

size_t cmpi_shm_segment_bytes(cmpi_shm *shm, int rank) {
    if (shm == NULL || rank < 0 || rank >= shm->size) return 0;
    return shm->bytes[rank];
}

int cmpi_shm_sync(cmpi_shm *shm) {
    if (shm == NULL) return CMPI_ERR_ARG;
    int rc = MPI_Win_sync(shm->win);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Barrier(shm->node);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Win_sync(shm->win);
}

int cmpi_shm_free(cmpi_shm *shm) {
    if (shm == NULL) return CMPI_ERR_ARG;
    MPI_Win_unlock_all(shm->win);
    int rc = MPI_Win_free(&shm->win);
    MPI_Comm_free(&shm->node);
    free(shm->segments);
    free(shm->bytes);
    free(shm);
    return rc;
}
