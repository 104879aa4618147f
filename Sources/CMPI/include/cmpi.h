// cmpi.h: a plain-C interface over MPI for Swift. It deliberately does NOT include mpi.h: OpenMPI's
// MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM and MPI_IN_PLACE are cast macros that Swift cannot import.
// Every function returns an MPI error code (0 = MPI_SUCCESS); cmpi_error_string turns one into text.
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

int cmpi_initialized(int *flag);
int cmpi_init(int required_level, int *provided_level);
int cmpi_finalize(void);
int cmpi_rank(int *rank);
int cmpi_size(int *size);
double cmpi_wtime(void);
int cmpi_barrier(void);
int cmpi_abort(int code);
/// In-place all-reduce over MPI_COMM_WORLD; counts above INT_MAX are sent in chunks.
int cmpi_allreduce(void *buffer, size_t count, int dtype, int op);
/// Broadcast of `count` elements from `root`; chunked like cmpi_allreduce.
int cmpi_bcast(void *buffer, size_t count, int dtype, int root);
/// Writes a human-readable message for an MPI error code into buf (always NUL-terminated).
void cmpi_error_string(int code, char *buf, int buflen);

#ifdef __cplusplus
}
#endif
#endif
