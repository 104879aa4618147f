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


// Row-deterministic NN product: rows in blocks of 4, columns in blocks of 16 (two 8-lane vectors), k innermost, each
// accumulator one fma chain over k from 0; remainders use the same per-element chain, so blocking changes nothing.
INL void det_nn_impl(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias,
                     size_t n, size_t K, size_t m, int accumulate) {
    size_t r = 0;
    for (; r < n; r += 4) {
        size_t nr = n - r < 4 ? n - r : 4;
        size_t j = 0;
        for (; j + 8 <= m; j += 8) {
            grv8 acc[4];
            for (size_t q = 0; q < 4; q++) for (int l = 0; l < 8; l++) acc[q][l] = 0.0f;
            for (size_t kk = 0; kk < K; kk++) {
                grv8 wv; memcpy(&wv, w + kk * ldw + j, sizeof wv);
                for (size_t q = 0; q < nr; q++) {
                    float xs = x[(r + q) * ldx + kk];
                    grv8 xb = {xs, xs, xs, xs, xs, xs, xs, xs};
#if defined(__clang__)
                    acc[q] = __builtin_elementwise_fma(xb, wv, acc[q]);
#else
                    for (int l = 0; l < 8; l++) acc[q][l] = fmaf(xb[l], wv[l], acc[q][l]);
#endif
                }
            }
            for (size_t q = 0; q < nr; q++) {
                float *yo = y + (r + q) * ldy + j;
                for (int l = 0; l < 8; l++) {
                    float base = accumulate ? yo[l] : (bias ? bias[j + l] : 0.0f);
                    yo[l] = base + acc[q][l];
                }
            }
        }
        for (; j < m; j++) {
            for (size_t q = 0; q < nr; q++) {
                float a = 0.0f;
                for (size_t kk = 0; kk < K; kk++) a = fmaf(x[(r + q) * ldx + kk], w[kk * ldw + j], a);
                float *yo = y + (r + q) * ldy + j;
                float base = accumulate ? *yo : (bias ? bias[j] : 0.0f);
                *yo = base + a;
            }
        }
    }
}

/// Fixed-tree dot product: 8 lane chains over k in steps of 8, reduced ((0+4)+(1+5))+((2+6)+(3+7)), then the tail.
INL float det_dot(const float *a, const float *b, size_t K) {
    grv8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t kk = 0;
    for (; kk + 8 <= K; kk += 8) {
        grv8 va, vb; memcpy(&va, a + kk, sizeof va); memcpy(&vb, b + kk, sizeof vb);
#if defined(__clang__)
        acc = __builtin_elementwise_fma(va, vb, acc);
#else
        for (int l = 0; l < 8; l++) acc[l] = fmaf(va[l], vb[l], acc[l]);
#endif
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; kk < K; kk++) s = fmaf(a[kk], b[kk], s);
    return s;
}

INL void det_nt_impl(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                     size_t n, size_t K, size_t m, float alpha, int accumulate) {
    for (size_t j = 0; j < m; j++) {          // one row of w at a time, reused by every row of x while cache-hot
        const float *wj = w + j * ldw;
        for (size_t r = 0; r < n; r++) {
            float d = alpha * det_dot(x + r * ldx, wj, K);
            float *yo = y + r * ldy + j;
            *yo = accumulate ? *yo + d : d;
        }
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
GR_TARGET static void det_nn_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                                   const float *b, size_t n, size_t k, size_t m, int acc) {
    det_nn_impl(y, ldy, x, ldx, w, ldw, b, n, k, m, acc);
}
GR_TARGET static void det_nt_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                                   size_t n, size_t k, size_t m, float alpha, int acc) {
    det_nt_impl(y, ldy, x, ldx, w, ldw, n, k, m, alpha, acc);
}
static int gr_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
GR_TARGET static void det_nn_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                                   const float *b, size_t n, size_t k, size_t m, int acc) {
    det_nn_impl(y, ldy, x, ldx, w, ldw, b, n, k, m, acc);
}
GR_TARGET static void det_nt_avx2(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                                   size_t n, size_t k, size_t m, float alpha, int acc) {
    det_nt_impl(y, ldy, x, ldx, w, ldw, n, k, m, alpha, acc);
}
static int gr_avx2(void) { return 0; }
#define logp_entropy_avx2(...) logp_entropy_impl(__VA_ARGS__)
#define xent_grad_scaled_avx2(...) xent_grad_scaled_impl(__VA_ARGS__)
#define det_nn_avx2(...) det_nn_impl(__VA_ARGS__)
#define det_nt_avx2(...) det_nt_impl(__VA_ARGS__)
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

void gr_det_gemm_nn(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias,
                    size_t n, size_t k, size_t m, int accumulate) {
    if (gr_avx2()) det_nn_avx2(y, ldy, x, ldx, w, ldw, bias, n, k, m, accumulate);
    else det_nn_impl(y, ldy, x, ldx, w, ldw, bias, n, k, m, accumulate);
}

void gr_det_gemm_nt(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                    size_t n, size_t k, size_t m, float alpha, int accumulate) {
    if (gr_avx2()) det_nt_avx2(y, ldy, x, ldx, w, ldw, n, k, m, alpha, accumulate);
    else det_nt_impl(y, ldy, x, ldx, w, ldw, n, k, m, alpha, accumulate);
}
