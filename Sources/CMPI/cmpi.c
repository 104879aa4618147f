// cmpi.c: the only translation unit that includes mpi.h. Thin wrappers; errors are returned, never handled here
// (MPI_ERRORS_RETURN is installed on MPI_COMM_WORLD at init so that failures reach Swift as codes).
#include "cmpi.h"
#include <limits.h>
#include <string.h>
#include <mpi.h>

static MPI_Datatype cmpi_type(int dtype) {
    switch (dtype) {
    case CMPI_FLOAT: return MPI_FLOAT;
    case CMPI_DOUBLE: return MPI_DOUBLE;
    case CMPI_INT64: return MPI_INT64_T;
    default: return MPI_BYTE;
    }
}

static size_t cmpi_type_size(int dtype) {
    switch (dtype) {
    case CMPI_FLOAT: return 4;
    case CMPI_DOUBLE: return 8;
    case CMPI_INT64: return 8;
    default: return 1;
    }
}

static MPI_Op cmpi_op(int op) {
    switch (op) {
    case CMPI_OP_MAX: return MPI_MAX;
    case CMPI_OP_MIN: return MPI_MIN;
    default: return MPI_SUM;
    }
}

int cmpi_initialized(int *flag) { return MPI_Initialized(flag); }

int cmpi_init(int required_level, int *provided_level) {
    int levels[4] = {MPI_THREAD_SINGLE, MPI_THREAD_FUNNELED, MPI_THREAD_SERIALIZED, MPI_THREAD_MULTIPLE};
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, levels[required_level & 3], &provided);
    if (rc != MPI_SUCCESS) return rc;
    for (int i = 0; i < 4; i++) if (levels[i] == provided) *provided_level = i;
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int cmpi_finalize(void) { return MPI_Finalize(); }
int cmpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int cmpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }
double cmpi_wtime(void) { return MPI_Wtime(); }
int cmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
int cmpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

int cmpi_allreduce(void *buffer, size_t count, int dtype, int op) {
    char *p = (char *)buffer;
    const size_t chunk = (size_t)INT_MAX;
    while (count > 0) {
        int n = (int)(count < chunk ? count : chunk);
        int rc = MPI_Allreduce(MPI_IN_PLACE, p, n, cmpi_type(dtype), cmpi_op(op), MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        p += (size_t)n * cmpi_type_size(dtype);
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

int cmpi_bcast(void *buffer, size_t count, int dtype, int root) {
    char *p = (char *)buffer;
    const size_t chunk = (size_t)INT_MAX;
    while (count > 0) {
        int n = (int)(count < chunk ? count : chunk);
        int rc = MPI_Bcast(p, n, cmpi_type(dtype), root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
        p += (size_t)n * cmpi_type_size(dtype);
        count -= (size_t)n;
    }
    return MPI_SUCCESS;
}

void cmpi_error_string(int code, char *buf, int buflen) {
    if (buflen <= 0) return;
    char tmp[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, tmp, &len) != MPI_SUCCESS) { strncpy(tmp, "unknown MPI error", sizeof tmp); }
    tmp[MPI_MAX_ERROR_STRING - 1] = 0;
    strncpy(buf, tmp, (size_t)buflen - 1);
    buf[buflen - 1] = 0;
}
