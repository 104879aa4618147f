// ck_pool.h: one persistent pool of compute threads (created once, sleeping between jobs, no per-call spawn) and
// the element-wise kernels of ckernels.h / gpt2_kernels.h split over it.
// Results are bit-identical to the single-threaded kernels whatever the thread count: work is split by whole rows
// where a row is computed on its own (LayerNorm, softmax-cross-entropy), by column ranges where rows are summed into
// one vector (bias gradient, LayerNorm dw/db: every column keeps its row order), and by 64-element-aligned ranges
// for element-wise maps (each element meets the same vector lane code as in one call).
// A pool of 1 thread, a NULL pool, a small job, a call from inside a job or a call while another thread uses the
// pool all run the plain kernel on the caller: the pool never nests and never blocks a second user.
// Deliberately not here: fp32 matrix products (Model's splitSgemm cuts them into blocks and runs those on the pool
// with OpenBLAS on one thread), any decision about how many threads a process should use (Model's ComputeThreads).
#ifndef CK_POOL_H
#define CK_POOL_H
#include <stddef.h>
#include <stdint.h>

typedef struct ck_pool ck_pool;
/// fn(ctx, begin, end, thread) processes items [begin, end); thread is 0 on the caller, 1... on the workers (no two
/// ranges run at once with the same thread index: an index for per-thread scratch).
typedef void (*ck_range_fn)(void *ctx, size_t begin, size_t end, int thread);

/// A pool for `threads` threads in all: the caller plus threads - 1 workers (NULL when threads < 2 or on failure).
ck_pool *ck_pool_create(int threads);
void ck_pool_destroy(ck_pool *pool);
/// Threads of the pool including the caller (1 for NULL).
int ck_pool_threads(const ck_pool *pool);
/// Runs fn over [0, n) in chunks of at least `grain` items (chunk starts are multiples of `align`, 0 = 1), the
/// caller taking chunks too; returns when all are done. Serial (one fn(ctx, 0, n) call) when the pool is NULL or
/// busy, n < 2·grain, or called from inside a job.
void ck_pool_for(ck_pool *pool, size_t n, size_t grain, size_t align, ck_range_fn fn, void *ctx);
/// 1 when the caller may use the pool now (not busy, not inside a job): then ck_pool_for will split.
int ck_pool_available(ck_pool *pool);
/// Nanoseconds the workers spent running chunks since the pool was made (all workers; for benchmarks).
uint64_t ck_pool_worker_ns(const ck_pool *pool);

// ---- the kernels over a pool (same arguments and results as the plain ck_/g2_ kernels) ----
void ck_p_act_fwd(ck_pool *pool, int act, const float *x, float *y, size_t n);
void ck_p_act_bwd_inplace(ck_pool *pool, int act, const float *f, float *dg, size_t n);
void ck_p_act_fwd_grad(ck_pool *pool, int act, float *f, float *g, size_t n);
void ck_p_mul(ck_pool *pool, float *y, const float *x, size_t n);
void ck_p_add(ck_pool *pool, float *y, const float *x, size_t n);
void ck_p_bias_grad(ck_pool *pool, const float *dy, float *db, size_t rows, size_t cols);
/// y[r, :] = b for every row (the bias pre-fill of a Linear layer).
void ck_p_fill_rows(ck_pool *pool, float *y, const float *b, size_t rows, size_t cols);
void ck_p_layernorm_fwd(ck_pool *pool, const float *x, float *y, float *mean, float *rstd, const float *w,
                        const float *b, size_t rows, size_t C, float eps);
void ck_p_layernorm_bwd(ck_pool *pool, float *dx, const float *dy, const float *x, const float *mean,
                        const float *rstd, const float *w, float *dw, float *db, size_t rows, size_t C);
void ck_p_adamw(ck_pool *pool, float *p, const float *g, float *m, float *v, size_t n, float gscale, float decay,
                float b1, float b2, float step, float bc2sqrt, float eps);
void ck_p_scale(ck_pool *pool, float *x, size_t n, float s);
void g2_p_xent_fwd_bwd(ck_pool *pool, float *x, size_t rows, size_t V, const int32_t *target, float scale, int grad,
                       float *lse, float *nll, float *maxv);
/// ck_bf16_gemm (ckernels.h) with its parts on the pool's threads (all of them when the pool is free, else on the
/// caller alone) instead of threads made per call. Same results and return codes.
int ck_bf16_gemm_pool(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                      const float *b, size_t ldb, float beta, float *c, size_t ldc, ck_pool *pool);
/// y[r, c] = x[r, c] rounded to bfloat16 (as ck_bf16_gemm rounds its inputs) and stored as fp32, for r < rows,
/// c < cols (leading dimensions ldx, ldy), split by rows over the pool. CK_BF16_UNSUPPORTED (y untouched) without
/// AVX512-BF16, else 0.
int ck_bf16_round_rows_pool(const float *x, size_t ldx, float *y, size_t ldy, size_t rows, size_t cols, ck_pool *pool);
/// Embedding scatter-add: for i in 0..<rows (in order) table[idx[i] (or i % period when idx is NULL), :] += src[i, :],
/// split over column ranges (every table row keeps its order of additions).
void ck_p_scatter_add_rows(ck_pool *pool, float *table, const float *src, const int32_t *idx, size_t period,
                           size_t rows, size_t C);
/// out[i, :] = a[ia[i], :] + p[i % period, :] (+ t[it[i], :] when t is not NULL): the embedding gather, by rows.
void ck_p_embed_rows(ck_pool *pool, float *out, const float *a, const int32_t *ia, const float *p, size_t period,
                     const float *t, const int32_t *it, size_t rows, size_t C);
#endif
