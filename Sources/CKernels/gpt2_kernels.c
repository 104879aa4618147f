// gpt2_kernels.c: the kernels declared in gpt2_kernels.h (causal softmax, fused LM softmax-cross-entropy).
// Written like ckernels.c: an always-inline implementation with simple loops and explicit 8-lane reductions,
// instantiated with target("avx2,fma") and portably, dispatched on the CPU at run time.
// exp uses the same degree-7 polynomial form as ckernels.c (rel. error ~5e-9 before float rounding), because
// libm expf per element would dominate the [B*T, 50257] cross-entropy.
// Deliberately not here: anything the encoder also uses (ckernels.c), allocation, global state.
#include "gpt2_kernels.h"
#include "ck_exp.h"
#include <math.h>
#include <string.h>
#pragma clang diagnostic ignored "-Wpsabi"

#define INL static inline __attribute__((always_inline))
typedef float g2v8 __attribute__((vector_size(32)));

INL float g2_exp(float x) { return ck_exp_poly(x); }

INL float g2_rowmax(const float *x, size_t n) {
    g2v8 m;
    for (int l = 0; l < 8; l++) m[l] = -INFINITY;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        g2v8 v; memcpy(&v, x + j, sizeof v);
#if defined(__clang__)
        m = __builtin_elementwise_max(v, m);
#else
        m = v > m ? v : m;
#endif
    }
    float r = -INFINITY;
    for (int l = 0; l < 8; l++) r = m[l] > r ? m[l] : r;
    for (; j < n; j++) r = x[j] > r ? x[j] : r;
    return r;
}

/// sum_j exp(x[j] - m); when store, x[j] <- exp(x[j] - m).
INL float g2_expsum(float *x, size_t n, float m, int store) {
    g2v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        g2v8 e;
        for (int l = 0; l < 8; l++) e[l] = g2_exp(x[j + l] - m);
        if (store) memcpy(x + j, &e, sizeof e);
        acc += e;
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < n; j++) {
        float e = g2_exp(x[j] - m);
        if (store) x[j] = e;
        s += e;
    }
    return s;
}

INL void xent_impl(float *x, size_t rows, size_t V, const int32_t *target, float scale, int grad,
                   float *lse, float *nll, float *maxv) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * V;
        int32_t t = target[r];
        float m = g2_rowmax(row, V);
        float xt = t >= 0 ? row[t] : 0.0f;
        int store = grad && t >= 0;
        float s = g2_expsum(row, V, m, store);
        float l = m + logf(s);
        lse[r] = l;
        if (maxv) maxv[r] = m;
        nll[r] = t >= 0 ? l - xt : 0.0f;
        if (!grad) continue;
        if (t < 0) { memset(row, 0, V * sizeof(float)); continue; }
        float k = scale / s;                  // softmax_j = e_j / s
        for (size_t j = 0; j < V; j++) row[j] *= k;
        row[t] -= scale;
    }
}

INL void softmax_causal_impl(float *s, const float *keymask, size_t rows, size_t ld, size_t q0) {
    for (size_t i = 0; i < rows; i++) {
        float *row = s + i * ld;
        size_t n = q0 + i + 1;                // keys 0..q0+i
        if (n > ld) n = ld;
        float m = -INFINITY;
        for (size_t j = 0; j < n; j++) {
            float ok = keymask ? keymask[j] : 1.0f;
            float v = ok != 0.0f ? row[j] : -INFINITY;
            m = v > m ? v : m;
        }
        if (m == -INFINITY) {                 // no allowed key: HF's all-finfo.min row is uniform
            for (size_t j = 0; j < n; j++) row[j] = 1.0f / (float)n;
        } else {
            float sum = 0.0f;
            for (size_t j = 0; j < n; j++) {
                float ok = keymask ? keymask[j] : 1.0f;
                float e = ok != 0.0f ? g2_exp(row[j] - m) : 0.0f;
                row[j] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
            for (size_t j = 0; j < n; j++) row[j] *= inv;
        }
        for (size_t j = n; j < ld; j++) row[j] = 0.0f;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define G2_TARGET __attribute__((target("avx2,fma")))
G2_TARGET static void xent_avx2(float *x, size_t rows, size_t V, const int32_t *t, float sc, int g, float *l, float *n, float *m) {
    xent_impl(x, rows, V, t, sc, g, l, n, m);
}
G2_TARGET static void softmax_causal_avx2(float *s, const float *k, size_t rows, size_t ld, size_t q0) {
    softmax_causal_impl(s, k, rows, ld, q0);
}
static int g2_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int g2_avx2(void) { return 0; }
#define xent_avx2(...) xent_impl(__VA_ARGS__)
#define softmax_causal_avx2(...) softmax_causal_impl(__VA_ARGS__)
#endif

static void xent_portable(float *x, size_t rows, size_t V, const int32_t *t, float sc, int g, float *l, float *n, float *m) {
    xent_impl(x, rows, V, t, sc, g, l, n, m);
}
static void softmax_causal_portable(float *s, const float *k, size_t rows, size_t ld, size_t q0) {
    softmax_causal_impl(s, k, rows, ld, q0);
}

void g2_xent_fwd_bwd(float *x, size_t rows, size_t V, const int32_t *target, float scale, int grad,
                     float *lse, float *nll, float *maxv) {
    if (g2_avx2()) xent_avx2(x, rows, V, target, scale, grad, lse, nll, maxv);
    else xent_portable(x, rows, V, target, scale, grad, lse, nll, maxv);
}

void g2_softmax_causal_fwd(float *s, const float *keymask, size_t rows, size_t ld, size_t q0) {
    if (g2_avx2()) softmax_causal_avx2(s, keymask, rows, ld, q0);
    else softmax_causal_portable(s, keymask, rows, ld, q0);
}
