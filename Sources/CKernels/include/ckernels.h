// ckernels.h: vectorised element-wise kernels for the model (GELU, LayerNorm, softmax, dropout, ...), in C so that
// they can be compiled per CPU feature (AVX2+FMA variant selected at run time, portable fallback) and stay free of
// Swift array/bounds-check overhead. Every kernel is single-threaded; ck_pool.h splits them over a thread pool.
// Deliberately not here: fp32 matrix products (cblas_sgemm), anything that allocates (except the bf16 GEMM's
// per-call pack buffer), any global state.
// Shapes use the model's notation: rows = B*T (tokens), C = channels; all buffers are row-major, contiguous rows.
#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Returns 1 when the CPU supports AVX512-BF16 (vdpbf16ps), else 0.
int ck_has_avx512bf16(void);
/// Returns 1 when the CPU supports `feature` ("avx512f", "avx512bf16", "avx2", "fma"), else 0 (unknown names: 0).
int ck_cpu_supports(const char *feature);

// ---- scalar-per-element maths (vectorised internally; n = element count) ----
/// y[i] = erf(x[i]); max abs error ~1.1e-7 (float32 rounding is 3e-8). Reference for tests.
void ck_erf(const float *x, float *y, size_t n);
/// y[i] = exp(x[i]) for x in [-87, 88] (clamped outside); ~2 ulp.
void ck_exp(const float *x, float *y, size_t n);
/// y[i] = tanh(x[i]); abs error ~1e-7.
void ck_tanh(const float *x, float *y, size_t n);

// ---- activations. act: 0 = gelu (erf), 1 = gelu_new (tanh form), 2 = relu ----
/// y = act(x)
void ck_act_fwd(int act, const float *x, float *y, size_t n);
/// dg[i] *= act'(f[i]) in place (dg becomes df).
void ck_act_bwd_inplace(int act, const float *f, float *dg, size_t n);
/// Backward recompute, fused: g[i] = act(f[i]) and f[i] <- act'(f[i]) in place (the pre-activation is not needed
/// after this, so one erf/exp evaluation serves both the weight gradient of the next linear and the chain rule).
void ck_act_fwd_grad(int act, float *f, float *g, size_t n);
/// y[i] *= x[i]
void ck_mul(float *y, const float *x, size_t n);
/// dy[i] *= 1 - t[i]^2 where t = tanh output (pooler backward).
void ck_tanh_bwd_inplace(const float *t, float *dy, size_t n);

// ---- linear-layer helpers ----
/// db[c] += sum_r dy[r,c]; dy: [rows, cols].
void ck_bias_grad(const float *dy, float *db, size_t rows, size_t cols);
/// y[i] += x[i]
void ck_add(float *y, const float *x, size_t n);
/// AdamW update of n contiguous parameters from the gradient g·gscale (torch semantics: clip_grad_norm_ scales g
/// in place first; bit-identical to the scalar formula, no FMA contraction).
void ck_adamw(float *p, const float *g, float *m, float *v, size_t n, float gscale, float decay, float b1, float b2,
              float step, float bc2sqrt, float eps);
/// Σ x[i]² accumulated in double.
double ck_sumsq_f64(const float *x, size_t n);
/// x *= s.
void ck_scale(float *x, size_t n, float s);
/// dst[i] = s · (srcs[0][off+i] + srcs[1][off+i] + ... + srcs[nsrc-1][off+i]), summed in that order (bit-identical
/// wherever it is computed); returns Σ dst[i]² in double. dst may alias one of the sources.
double ck_sum_ranks(float *dst, const float *const *srcs, size_t nsrc, size_t off, size_t n, float s);
/// x *= s (skipped when s == 1), then returns Σ x[i]² accumulated in double (ck_sumsq_f64 of the result).
double ck_scale_sumsq_f64(float *x, size_t n, float s);

// ---- LayerNorm over the last axis (C); saves mean and rstd per row ----
void ck_layernorm_fwd(const float *x, float *y, float *mean, float *rstd, const float *w, const float *b,
                      size_t rows, size_t C, float eps);
/// dx = dL/dx (OVERWRITTEN), dw += ..., db += ...
void ck_layernorm_bwd(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                      const float *w, float *dw, float *db, size_t rows, size_t C);

/// ck_layernorm_bwd in two parts (for splitting over threads; together bit-identical to it): dx of `rows` rows, and
/// dw/db of columns [c0, c1) summed over all rows in order.
void ck_layernorm_bwd_dx(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                         const float *w, size_t rows, size_t C);
void ck_layernorm_bwd_params(const float *dy, const float *x, const float *mean, const float *rstd, float *dw,
                             float *db, size_t rows, size_t C, size_t c0, size_t c1);

// ---- attention softmax over one [T, T] score block (rows = queries), key mask per column ----
/// p[i,j] = softmax_j(s[i,j]) over keys with keymask[j] != 0, exactly 0 for masked keys, in place.
/// nvalid = number of unmasked keys; when 0 the row is uniform (what HF's finfo.min addition gives).
void ck_softmax_masked_fwd(float *s, const float *keymask, size_t rows, size_t T, size_t nvalid);
/// dp[i,j] <- p[i,j] * (dp[i,j] - sum_k p[i,k] dp[i,k]) in place.
void ck_softmax_bwd_inplace(const float *p, float *dp, size_t rows, size_t T);

// ---- counter-based dropout (inverted, PyTorch semantics) ----
/// The per-element keep decision: hash of (rowkey, j) >= threshold, threshold = round(p * 2^32).
/// y[j] = keep ? x[j] * scale : 0, j < n. y may equal x.
void ck_dropout_row(const float *x, float *y, size_t n, uint64_t rowkey, uint32_t threshold, float scale);
/// y[j] += keep ? x[j] * scale : 0  (residual add after a dropped-out sub-layer output)
void ck_dropout_add_row(const float *x, float *y, size_t n, uint64_t rowkey, uint32_t threshold, float scale);
/// Attention backward, one hash per element for both uses: pd[j] = keep ? p[j]*scale : 0 (the regenerated
/// dropped-out probabilities) and dpd[j] = keep ? dpd[j]*scale : 0 (dL/dP from dL/dP').
void ck_dropout_pair_row(const float *p, float *pd, float *dpd, size_t n, uint64_t rowkey, uint32_t threshold,
                         float scale);
/// 1 when element j of the row is kept (tests).
int ck_dropout_keep(uint64_t rowkey, uint32_t j, uint32_t threshold);


// ---- bf16 GEMM (bf16_gemm.c): AVX512-BF16 vdpbf16ps, fp32 accumulation ----
#define CK_BF16_UNSUPPORTED (-1)
#define CK_BF16_NOMEM (-2)
/// Row-major C[m,n] = alpha·op(A)·op(B) + beta·C (cblas_sgemm semantics; beta == 0: C is not read), with A and B
/// rounded to bfloat16 (nearest even) and the products summed in fp32. op(A) is [m,k]: transA ? a[k*lda + i] :
/// a[i*lda + k]; op(B) is [k,n]: transB ? b[j*ldb + k] : b[k*ldb + j].
/// Returns 0, or CK_BF16_UNSUPPORTED when the CPU lacks AVX512-BF16, or CK_BF16_NOMEM (C untouched in both cases:
/// the caller falls back to cblas_sgemm). `threads` > 1 splits the work over that many threads (created per call;
/// small products stay on the caller's). Allocates one pack buffer per call (≈ m·min(k,1536)·2 bytes + 0.4 MB).
int ck_bf16_gemm(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc, int threads);
/// This core's issue rate, in GFLOP/s, of the bf16 dot product (vdpbf16ps zmm) and of the fp32 FMA (vfmadd231ps zmm),
/// register-only chains, best of 5 short tries (~3 ms in all); both 0 without AVX512-BF16. Whether ck_bf16_gemm can
/// beat an fp32 GEMM on this CPU at all: it cannot when bf16 < fp32 (Model then runs bf16 products as sgemm on
/// bf16-rounded copies).
void ck_bf16_peak_rates(double *bf16_gflops, double *fp32_gflops);
/// x rounded to the nearest bfloat16 (ties to even), returned as a float: what ck_bf16_gemm multiplies. Portable.
float ck_bf16_round_one(float x);
/// y[i] = ck_bf16_round_one(x[i]) (tests: a reference on rounded inputs isolates the fp32 summation error).
void ck_bf16_round(const float *x, float *y, size_t n);

#endif
