// grpo_kernels.c: the kernels declared in grpo_kernels.h (temperature log-probs and entropies, per-token scaled
// softmax-CE gradient). Written like gpt2_kernels.c: an always-inline implementation with 8-lane vector loops,
// instantiated with target("avx2,fma") and portably, dispatched on the CPU at run time; exp is ck_exp.h's polynomial.
// Deliberately not here: anything gpt2_kernels.c already does (the unscaled fused cross-entropy), allocation.
#include "grpo_kernels.h"
#include "ck_exp.h"
#include <math.h>
#include <string.h>
#pragma clang diagnostic ignored "-Wpsabi"

#define INL static inline __attribute__((always_inline))
typedef float grv8 __attribute__((vector_size(32)));

/// Scales the row by k in place and returns its maximum.
INL float gr_scale_max(float *x, size_t n, float k) {
    grv8 m;
    for (int l = 0; l < 8; l++) m[l] = -INFINITY;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        grv8 v; memcpy(&v, x + j, sizeof v);
        v *= k;
        memcpy(x + j, &v, sizeof v);
#if defined(__clang__)
        m = __builtin_elementwise_max(v, m);
#else
        m = v > m ? v : m;
#endif
    }
    float r = -INFINITY;
    for (int l = 0; l < 8; l++) r = m[l] > r ? m[l] : r;
    for (; j < n; j++) { x[j] *= k; r = x[j] > r ? x[j] : r; }
    return r;
}

/// s = Σ exp(z_j − m), and (when want_dot) d = Σ exp(z_j − m)·(z_j − m); when store, z_j <- exp(z_j − m).
INL float gr_expsum(float *x, size_t n, float m, int store, int want_dot, float *dot) {
    grv8 acc = {0, 0, 0, 0, 0, 0, 0, 0}, accd = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        grv8 e, d;
        for (int l = 0; l < 8; l++) { d[l] = x[j + l] - m; e[l] = ck_exp_poly(d[l]); }
        if (store) memcpy(x + j, &e, sizeof e);
        acc += e;
        if (want_dot) accd += e * d;
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    float sd = ((accd[0] + accd[4]) + (accd[1] + accd[5])) + ((accd[2] + accd[6]) + (accd[3] + accd[7]));
    for (; j < n; j++) {
        float d = x[j] - m, e = ck_exp_poly(d);
        if (store) x[j] = e;
        s += e;
        sd += e * d;
    }
    if (dot) *dot = sd;
    return s;
}

INL void logp_entropy_impl(float *x, size_t rows, size_t V, const int32_t *target, float inv_temp,
                           float *logp, float *entropy) {
    for (size_t r = 0; r < rows; r++) {
        int32_t t = target[r];
        if (t < 0) { logp[r] = 0; if (entropy) entropy[r] = 0; continue; }
        float *row = x + r * V;
        float m = gr_scale_max(row, V, inv_temp);
        float dot = 0;
        float s = gr_expsum(row, V, m, 0, entropy != NULL, &dot);
        float ls = logf(s);                      // logsumexp − m
        logp[r] = (row[t] - m) - ls;
        // H = lse − Σ p z = (m + ls) − (m + dot/s) = ls − dot/s
        if (entropy) entropy[r] = ls - dot / s;
    }
}

INL void xent_grad_scaled_impl(float *x, size_t rows, size_t V, const int32_t *target, float inv_temp,
                               const float *scale) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * V;
        int32_t t = target[r];
        float sc = scale[r];
        if (t < 0 || sc == 0.0f) { memset(row, 0, V * sizeof(float)); continue; }
        float m = gr_scale_max(row, V, inv_temp);
        float s = gr_expsum(row, V, m, 1, 0, NULL);
        float g = sc * inv_temp;
        float k = g / s;
        size_t j = 0;
        for (; j + 8 <= V; j += 8) {
            grv8 v; memcpy(&v, row + j, sizeof v);
            v *= k;
            memcpy(row + j, &v, sizeof v);
        }
        for (; j < V; j++) row[j] *= k;
        row[t] -= g;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GR_TARGET __attribute__((target("avx2,fma")))
GR_TARGET static void logp_entropy_avx2(float *x, size_t rows, size_t V, const int32_t *t, float it, float *lp, float *en) {
    logp_entropy_impl(x, rows, V, t, it, lp, en);
}
GR_TARGET static void xent_grad_scaled_avx2(float *x, size_t rows, size_t V, const int32_t *t, float it, const float *sc) {
    xent_grad_scaled_impl(x, rows, V, t, it, sc);
}
static int gr_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int gr_avx2(void) { return 0; }
#define logp_entropy_avx2(...) logp_entropy_impl(__VA_ARGS__)
#define xent_grad_scaled_avx2(...) xent_grad_scaled_impl(__VA_ARGS__)
#endif

static void logp_entropy_portable(float *x, size_t rows, size_t V, const int32_t *t, float it, float *lp, float *en) {
    logp_entropy_impl(x, rows, V, t, it, lp, en);
}
static void xent_grad_scaled_portable(float *x, size_t rows, size_t V, const int32_t *t, float it, const float *sc) {
    xent_grad_scaled_impl(x, rows, V, t, it, sc);
}

void gr_logp_entropy(float *x, size_t rows, size_t V, const int32_t *target, float inv_temp, float *logp, float *entropy) {
    if (gr_avx2()) logp_entropy_avx2(x, rows, V, target, inv_temp, logp, entropy);
    else logp_entropy_portable(x, rows, V, target, inv_temp, logp, entropy);
}

void gr_xent_grad_scaled(float *x, size_t rows, size_t V, const int32_t *target, float inv_temp, const float *scale) {
    if (gr_avx2()) xent_grad_scaled_avx2(x, rows, V, target, inv_temp, scale);
    else xent_grad_scaled_portable(x, rows, V, target, inv_temp, scale);
}
