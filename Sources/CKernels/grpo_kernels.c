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


// Row-deterministic NN product: rows in blocks of 4, columns in blocks of 16 then 8 (8-lane vectors), k innermost; every
// accumulator is one fma chain over k from 0, and remainders use the same per-element chain, so blocking changes nothing.
#if defined(__clang__)
#define GR_FMA8(a, b, c) __builtin_elementwise_fma(a, b, c)
#else
INL grv8 gr_fma8(grv8 a, grv8 b, grv8 c) { for (int l = 0; l < 8; l++) c[l] = fmaf(a[l], b[l], c[l]); return c; }
#define GR_FMA8(a, b, c) gr_fma8(a, b, c)
#endif

INL void det_nn_store(float *y, size_t ldy, const grv8 *acc, size_t nr, size_t j, const float *bias, int accumulate,
                      size_t stride) {
    for (size_t q = 0; q < nr; q++) {
        float *yo = y + q * ldy + j;
        for (int l = 0; l < 8; l++) {
            float base = accumulate ? yo[l] : (bias ? bias[j + l] : 0.0f);
            yo[l] = base + acc[q * stride][l];
        }
    }
}

INL void det_nn_impl(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias,
                     size_t n, size_t K, size_t m, int accumulate) {
    // column blocks outer (a K×16 slab of w stays in L1 while every row block uses it), row blocks inner
    size_t m16 = m & ~(size_t)15;
    for (size_t j = 0; j < m16; j += 16) {
        for (size_t r = 0; r < n; r += 4) {
            size_t nr = n - r < 4 ? n - r : 4;
            const float *xr = x + r * ldx;
            float *yr = y + r * ldy;
            grv8 acc[8];
            for (int q = 0; q < 8; q++) for (int l = 0; l < 8; l++) acc[q][l] = 0.0f;
            if (nr == 4) {
                for (size_t kk = 0; kk < K; kk++) {
                    grv8 w0, w1; memcpy(&w0, w + kk * ldw + j, sizeof w0); memcpy(&w1, w + kk * ldw + j + 8, sizeof w1);
                    for (int q = 0; q < 4; q++) {
                        float xs = xr[q * ldx + kk];
                        grv8 xb = {xs, xs, xs, xs, xs, xs, xs, xs};
                        acc[2 * q] = GR_FMA8(xb, w0, acc[2 * q]);
                        acc[2 * q + 1] = GR_FMA8(xb, w1, acc[2 * q + 1]);
                    }
                }
            } else {
                for (size_t kk = 0; kk < K; kk++) {
                    grv8 w0, w1; memcpy(&w0, w + kk * ldw + j, sizeof w0); memcpy(&w1, w + kk * ldw + j + 8, sizeof w1);
                    for (size_t q = 0; q < nr; q++) {
                        float xs = xr[q * ldx + kk];
                        grv8 xb = {xs, xs, xs, xs, xs, xs, xs, xs};
                        acc[2 * q] = GR_FMA8(xb, w0, acc[2 * q]);
                        acc[2 * q + 1] = GR_FMA8(xb, w1, acc[2 * q + 1]);
                    }
                }
            }
            det_nn_store(yr, ldy, acc, nr, j, bias, accumulate, 2);
            det_nn_store(yr, ldy, acc + 1, nr, j + 8, bias, accumulate, 2);
        }
    }
    for (size_t r = 0; r < n; r += 4) {
        size_t nr = n - r < 4 ? n - r : 4;
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        size_t j = m16;
        for (; j + 8 <= m; j += 8) {
            grv8 acc[4];
            for (int q = 0; q < 4; q++) for (int l = 0; l < 8; l++) acc[q][l] = 0.0f;
            for (size_t kk = 0; kk < K; kk++) {
                grv8 w0; memcpy(&w0, w + kk * ldw + j, sizeof w0);
                for (size_t q = 0; q < nr; q++) {
                    float xs = xr[q * ldx + kk];
                    grv8 xb = {xs, xs, xs, xs, xs, xs, xs, xs};
                    acc[q] = GR_FMA8(xb, w0, acc[q]);
                }
            }
            det_nn_store(yr, ldy, acc, nr, j, bias, accumulate, 1);
        }
        for (; j < m; j++) {
            for (size_t q = 0; q < nr; q++) {
                float a = 0.0f;
                for (size_t kk = 0; kk < K; kk++) a = fmaf(xr[q * ldx + kk], w[kk * ldw + j], a);
                float *yo = yr + q * ldy + j;
                float base = accumulate ? *yo : (bias ? bias[j] : 0.0f);
                *yo = base + a;
            }
        }
    }
}

/// The fixed reduction of a dot product's 8 lane chains, then its scalar tail from kk.
INL float det_finish(grv8 acc, const float *a, const float *b, size_t kk, size_t K) {
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; kk < K; kk++) s = fmaf(a[kk], b[kk], s);
    return s;
}

/// Fixed-tree dot product: 8 lane chains over k in steps of 8, reduced ((0+4)+(1+5))+((2+6)+(3+7)), then the tail.
INL float det_dot(const float *a, const float *b, size_t K) {
    grv8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t kk = 0;
    for (; kk + 8 <= K; kk += 8) {
        grv8 va, vb; memcpy(&va, a + kk, sizeof va); memcpy(&vb, b + kk, sizeof vb);
        acc = GR_FMA8(va, vb, acc);
    }
    return det_finish(acc, a, b, kk, K);
}

/// NT: blocks of 4 rows × 2 columns (8 independent chains, each exactly det_dot's), remainders by det_dot.
INL void det_nt_impl(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                     size_t n, size_t K, size_t m, float alpha, int accumulate) {
    size_t K8 = K & ~(size_t)7;
    size_t n4 = n & ~(size_t)3, m2 = m & ~(size_t)1;
    // column blocks of 64 w rows outer (they stay cache-hot while every row block uses them), row blocks inner
    for (size_t jb = 0; jb < m2; jb += 64) {
      size_t je = jb + 64 < m2 ? jb + 64 : m2;
      for (size_t r = 0; r < n4; r += 4) {
        const float *x0 = x + r * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
        for (size_t j = jb; j < je; j += 2) {
            const float *w0 = w + j * ldw, *w1 = w0 + ldw;
            grv8 a[8];
            for (int q = 0; q < 8; q++) for (int l = 0; l < 8; l++) a[q][l] = 0.0f;
            for (size_t kk = 0; kk < K8; kk += 8) {
                grv8 v0, v1, u0, u1, u2, u3;
                memcpy(&v0, w0 + kk, 32); memcpy(&v1, w1 + kk, 32);
                memcpy(&u0, x0 + kk, 32); memcpy(&u1, x1 + kk, 32); memcpy(&u2, x2 + kk, 32); memcpy(&u3, x3 + kk, 32);
                a[0] = GR_FMA8(u0, v0, a[0]); a[1] = GR_FMA8(u0, v1, a[1]);
                a[2] = GR_FMA8(u1, v0, a[2]); a[3] = GR_FMA8(u1, v1, a[3]);
                a[4] = GR_FMA8(u2, v0, a[4]); a[5] = GR_FMA8(u2, v1, a[5]);
                a[6] = GR_FMA8(u3, v0, a[6]); a[7] = GR_FMA8(u3, v1, a[7]);
            }
            const float *xs[4] = {x0, x1, x2, x3};
            for (int q = 0; q < 4; q++) {
                for (int c = 0; c < 2; c++) {
                    float d = alpha * det_finish(a[2 * q + c], xs[q], c ? w1 : w0, K8, K);
                    float *yo = y + (r + q) * ldy + j + c;
                    *yo = accumulate ? *yo + d : d;
                }
            }
        }
      }
    }
    for (size_t r = 0; r < n4; r++) {         // the odd last column of the 4-row blocks
        for (size_t j = m2; j < m; j++) {
            float d = alpha * det_dot(x + r * ldx, w + j * ldw, K);
            float *yo = y + r * ldy + j;
            *yo = accumulate ? *yo + d : d;
        }
    }
    for (size_t r = n4; r < n; r++) {         // the rows after the last 4-row block
        for (size_t j = 0; j < m; j++) {
            float d = alpha * det_dot(x + r * ldx, w + j * ldw, K);
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
