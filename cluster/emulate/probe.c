/* probe.c - what the ranks of an emulated cluster see (cluster/emulate/selftest.sh compiles it with mpicc).
 * Each rank prints one line: world rank and size, hostname, its rank and size in MPI_COMM_TYPE_SHARED (the node
 * as MPI sees it), the node count, and the bus bandwidth of an all-reduce of MB megabytes of floats (argv[1],
 * default 32) timed over 3 repetitions after a warm-up. Its exit status is non-zero if the sum is wrong.
 * Not part of disttrain; a diagnostic only. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size, lrank, lsize, leader, nodes;
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &lrank);
    MPI_Comm_size(node, &lsize);
    leader = lrank == 0;
    MPI_Allreduce(&leader, &nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 32;
    size_t n = mb * 1024 * 1024 / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    int bad = 0;
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        for (size_t i = 0; i < n; i++) buf[i] = (float)(rank + 1);
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t = MPI_Wtime() - t;
        if (rep > 0 && t < best) best = t;
        float want = (float)size * (float)(size + 1) / 2;
        for (size_t i = 0; i < n; i += 4096) if (buf[i] != want) bad = 1;
    }
    /* bus bandwidth as nccl-tests define it: bytes × 2(W-1)/W per second */
    double bus = size > 1 ? (double)(n * sizeof(float)) * 2.0 * (size - 1) / size / best / 1e9 : 0;
    printf("probe rank %d/%d host %s node-rank %d/%d nodes %d allreduce %zu MB %.4f s bus %.3f GB/s%s\n",
           rank, size, host, lrank, lsize, nodes, mb, best, bus, bad ? " WRONG SUM" : "");
    free(buf);
    MPI_Comm_free(&node);
    MPI_Finalize();
    return bad;
}
