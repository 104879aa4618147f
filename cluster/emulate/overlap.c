/* overlap.c - can a layer's cross-node transfer progress while the next layers compute? (docs/cluster.md,
 * "Overlap across nodes"; figures in docs/performance.md). Not part of disttrain; a measurement only. Compile with mpicc -O2 -pthread.
 *
 *   overlap [MB per layer, default 4] [layers, default 6] [compute ms per layer, default 60] [repetitions, default 3]
 *
 * A mock backward: `layers` rounds of fixed compute work (a float loop calibrated on rank 0 to the given ms, then
 * broadcast, so every rank does the same work), after each round one MPI_Ialltoall of MB megabytes over
 * MPI_COMM_WORLD (the trainer's ZeRO-1 reduce-scatter across nodes is an all-to-all). Four ways, interleaved:
 *   none      compute only (the reference)
 *   blocking  MPI_Alltoall right after each layer (what the trainer does: GradientReducer.reduceNow)
 *   test      MPI_Ialltoall after each layer, MPI_Testall on every outstanding request at each layer boundary and
 *             every 1/8 of a layer ("test at layer boundaries", with a finer variant), MPI_Waitall at the end
 *   thread    MPI_Ialltoall after each layer; a progress thread calls MPI_Testall in a loop (MPI_THREAD_MULTIPLE),
 *             MPI_Waitall at the end
 * Rank 0 prints, per way, the median wall time and the exposed communication (wall − none), and the provided
 * thread level. Run it across emulated nodes: cluster/emulate/run.sh --nodes 2 --ranks-per-node 1 --rate 1gbit -- ./overlap
 */
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile float sink;

/* Fixed work: `iters` dependent multiply-adds over a small array (stays in L1; one core). */
static void work(long iters, int slices, int (*between)(void)) {
    float a[64];
    for (int i = 0; i < 64; i++) a[i] = 1.0f + i * 1e-3f;
    long per = iters / slices;
    for (int s = 0; s < slices; s++) {
        for (long k = 0; k < per; k++) a[k & 63] = a[k & 63] * 0.999999f + 1e-7f;
        if (between) between();
    }
    sink = a[0];
}

#define MAXREQ 64
static MPI_Request reqs[MAXREQ];
static int nreq;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_thread;

static int test_all(void) {
    int done = 0;
    if (nreq > 0) MPI_Testall(nreq, reqs, &done, MPI_STATUSES_IGNORE);
    return done;
}

static void *progress(void *arg) {
    (void)arg;
    while (!stop_thread) {
        pthread_mutex_lock(&lock);
        test_all();
        pthread_mutex_unlock(&lock);
        sched_yield();
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double mb = argc > 1 ? atof(argv[1]) : 4;
    int layers = argc > 2 ? atoi(argv[2]) : 6;
    double ms = argc > 3 ? atof(argv[3]) : 60;
    int reps = argc > 4 ? atoi(argv[4]) : 3;
    if (layers > MAXREQ) layers = MAXREQ;
    size_t bytes = (size_t)(mb * 1e6) / size * size;
    char *send = malloc(bytes * layers), *recv = malloc(bytes * layers);
    memset(send, rank + 1, bytes * layers);

    /* Calibrate on rank 0: iterations for `ms` milliseconds of work, shared by every rank. */
    long iters = 1000000;
    if (rank == 0) {
        double t;
        do { iters *= 2; t = MPI_Wtime(); work(iters, 1, NULL); t = MPI_Wtime() - t; } while (t < 0.05);
        iters = (long)(iters * (ms / 1e3) / t);
    }
    MPI_Bcast(&iters, 1, MPI_LONG, 0, MPI_COMM_WORLD);

    const char *names[4] = {"none", "blocking", "test", "thread"};
    double times[4][64];
    for (int rep = 0; rep < reps && rep < 64; rep++) {
        for (int way = 0; way < 4; way++) {
            if (way == 3 && provided < MPI_THREAD_MULTIPLE) { times[way][rep] = 0; continue; }
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            pthread_t th;
            nreq = 0;
            if (way == 3) { stop_thread = 0; pthread_create(&th, NULL, progress, NULL); }
            for (int l = 0; l < layers; l++) {
                work(iters, way == 2 ? 8 : 1, way == 2 ? test_all : NULL);
                char *s = send + (size_t)l * bytes, *r = recv + (size_t)l * bytes;
                int per = (int)(bytes / size);
                if (way == 1) {
                    MPI_Alltoall(s, per, MPI_BYTE, r, per, MPI_BYTE, MPI_COMM_WORLD);
                } else if (way >= 2) {
                    if (way == 3) pthread_mutex_lock(&lock);
                    MPI_Ialltoall(s, per, MPI_BYTE, r, per, MPI_BYTE, MPI_COMM_WORLD, &reqs[nreq]);
                    nreq++;
                    if (way == 3) pthread_mutex_unlock(&lock);
                }
            }
            if (way == 3) { stop_thread = 1; pthread_join(th, NULL); }
            if (way >= 2) MPI_Waitall(nreq, reqs, MPI_STATUSES_IGNORE);
            double t = MPI_Wtime() - t0, slowest;
            MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            times[way][rep] = slowest;
        }
    }
    if (rank == 0) {
        double med[4];
        for (int way = 0; way < 4; way++) { qsort(times[way], reps, sizeof(double), cmp); med[way] = times[way][reps / 2]; }
        printf("overlap: %d ranks, %d layers of %.0f ms compute, %.2f MB all-to-all per layer, %d repetitions (median), "
               "thread level %s\n", size, layers, ms, bytes / 1e6, reps,
               provided >= MPI_THREAD_MULTIPLE ? "MULTIPLE" : "below MULTIPLE (no thread way)");
        for (int way = 0; way < 4; way++) {
            if (way == 3 && provided < MPI_THREAD_MULTIPLE) continue;
            printf("overlap: %-8s %.3f s  exposed %.3f s\n", names[way], med[way], med[way] - med[0]);
        }
    }
    free(send); free(recv);
    MPI_Finalize();
    return 0;
}
