// fma_peak.c: the machine's fp32 FMA peak, to set an sgemm rate or an MFU against (not run by CI or swift test).
// Each thread runs 12 independent chains of 512-bit FMAs (enough to cover the FMA latency on 2 FMA ports), so the
// rate is ports x 16 lanes x 2 FLOP x clock. Build and run (clang ships with Swift):
//   clang -O2 -mavx512f -mfma -pthread -o /tmp/fma_peak bench/fma_peak.c && /tmp/fma_peak 1 && /tmp/fma_peak 2
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12
#define ITERS 200000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *chains(void *out) {
    __m512 a[CHAINS];
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < ITERS; k++) {
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(a[i]);
    *(float *)out = s;   // keeps the chains live
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) { fprintf(stderr, "usage: fma_peak [threads 1-256]\n"); return 2; }
    pthread_t *t = malloc(sizeof(pthread_t) * threads);
    float *sink = malloc(sizeof(float) * threads);
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, chains, &sink[i]);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0, flop = (double)ITERS * CHAINS * 16 * 2 * threads;
    printf("{\"threads\":%d,\"fma_peak_gflops\":%.1f,\"per_thread_gflops\":%.1f}\n", threads, flop / dt / 1e9,
           flop / dt / 1e9 / threads);
    free(t); free(sink);
    return 0;
}
