// fma_peak.c: the machine's fp32 FMA peak, to set an sgemm rate or an MFU against (not run by CI or swift test),
// and in the same run OpenBLAS's cblas_sgemm (on as many threads) at BERT-base's 8x128 training-step shapes, best
// of 7 each. Each thread runs 12 independent chains of 512-bit FMAs (enough to cover the FMA latency on 2 FMA
// ports), so the rate is ports x 16 lanes x 2 FLOP x clock. Build and run (clang ships with Swift; on a CPU
// OpenBLAS 0.3.21 does not know, set OPENBLAS_CORETYPE as disttrain does, e.g. COOPERLAKE):
//   clang -O2 -mavx512f -mfma -pthread -o /tmp/fma_peak bench/fma_peak.c -lopenblas && /tmp/fma_peak 2
#include <cblas.h>
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

/* Best of 7 cblas_sgemm GFLOP/s at C[m,n] = op(A) op(B), row-major. */
static double sgemm_rate(int ta, int tb, int m, int n, int k) {
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    for (long i = 0; i < (long)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < (long)k * n; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1, a,
                    ta ? m : k, b, tb ? k : n, 0, c, n);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    free(a); free(b); free(c);
    return 2.0 * m * n * k / best / 1e9;
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
    double peak = flop / dt / 1e9;
    openblas_set_num_threads(threads);
    // BERT-base 8x128 (1024 rows, hidden 768, FFN 3072): forward x.W^T, input gradient dy.W, weight gradient dy^T.x
    const int shapes[][5] = {{0, 1, 1024, 768, 768}, {0, 1, 1024, 3072, 768}, {0, 1, 1024, 768, 3072},
                             {0, 0, 1024, 768, 3072}, {0, 0, 1024, 3072, 768}, {1, 0, 768, 3072, 1024},
                             {1, 0, 3072, 768, 1024}};
    double lo = 1e30, hi = 0;
    for (int i = 0; i < 7; i++) {
        double g = sgemm_rate(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4]);
        if (g < lo) lo = g;
        if (g > hi) hi = g;
    }
    printf("{\"threads\":%d,\"fma_peak_gflops\":%.1f,\"per_thread_gflops\":%.1f,\"sgemm_bert_base_gflops_min\":%.1f,"
           "\"sgemm_bert_base_gflops_max\":%.1f,\"sgemm_max_over_peak\":%.3f}\n", threads, peak, peak / threads, lo, hi, hi / peak);
    free(t); free(sink);
    return 0;
}
