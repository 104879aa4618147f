// pool.c: the persistent compute pool of ck_pool.h and the kernels split over it.
// Workers spin briefly (~0.1-0.2 ms) after a job (jobs come in bursts within a step: kernels and the blocks of the
// model's products), then sleep on a futex, so that an idle process does not hold a core. A job is a range [0, n) cut into
// chunks taken from an atomic counter by the caller and the workers alike (a preempted worker on a loaded machine
// delays only the chunk it holds). Publication protocol (generation `gen`, even = idle/published, odd = being
// written): the caller makes gen odd, waits until no worker is inside the previous job, writes the job, makes gen
// even again and wakes sleepers; a worker announces itself (`active`) before re-reading gen, so one of the two
// always sees the other (sequentially consistent atomics).
#define _GNU_SOURCE
#include "ck_pool.h"
#include "ckernels.h"
#include "gpt2_kernels.h"
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 63
#define SPIN_ROUNDS 4000   /* pause instructions (~0.1-0.2 ms) before a worker sleeps */

typedef struct { struct ck_pool *pool; int index; } worker_arg;

struct ck_pool {
    int threads;
    pthread_t tid[MAX_WORKERS];
    worker_arg args[MAX_WORKERS];
    int started;
    _Atomic uint32_t gen;
    _Atomic int sleepers;
    _Atomic int active;
    _Atomic int stop;
    _Atomic int busy;          // a caller owns the pool (try-lock)
    // the job (written while gen is odd)
    ck_range_fn fn;
    void *ctx;
    size_t n, chunk, nchunks;
    _Atomic size_t next, done;
    _Atomic uint64_t worker_ns;
};

static _Thread_local int in_job = 0;

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
    (void)addr; (void)val; sched_yield();
#endif
}
static void futex_wake_all(_Atomic uint32_t *addr) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/// Takes chunks until none is left; returns the number done.
static size_t run_chunks(ck_pool *p, int thread) {
    size_t mine = 0;
    for (;;) {
        size_t c = atomic_fetch_add(&p->next, 1);
        if (c >= p->nchunks) break;
        size_t b = c * p->chunk, e = b + p->chunk < p->n ? b + p->chunk : p->n;
        p->fn(p->ctx, b, e, thread);
        mine++;
    }
    return mine;
}

static void *worker(void *arg) {
    ck_pool *p = ((worker_arg *)arg)->pool;
    int index = ((worker_arg *)arg)->index;
    in_job = 1;   // a worker never starts a job of its own
    uint32_t seen = atomic_load(&p->gen);
    for (;;) {
        uint32_t g = atomic_load(&p->gen);
        int spins = 0;
        while (g == seen || (g & 1u)) {
            if (atomic_load(&p->stop)) return NULL;
            if (++spins < SPIN_ROUNDS) { CPU_RELAX(); }
            else {
                atomic_fetch_add(&p->sleepers, 1);
                if (atomic_load(&p->gen) == g) futex_wait(&p->gen, g);
                atomic_fetch_sub(&p->sleepers, 1);
                spins = 0;
            }
            g = atomic_load(&p->gen);
        }
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->gen) != g) { atomic_fetch_sub(&p->active, 1); continue; }
        seen = g;
        if (atomic_load(&p->stop)) { atomic_fetch_sub(&p->active, 1); return NULL; }
        uint64_t t0 = now_ns();
        size_t k = run_chunks(p, index);
        if (k) {
            atomic_fetch_add(&p->worker_ns, now_ns() - t0);
            atomic_fetch_add(&p->done, k);
        }
        atomic_fetch_sub(&p->active, 1);
    }
}

ck_pool *ck_pool_create(int threads) {
    if (threads < 2) return NULL;
    if (threads > MAX_WORKERS + 1) threads = MAX_WORKERS + 1;
    ck_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = 1;
    for (int t = 0; t < threads - 1; t++) {
        p->args[t] = (worker_arg){p, t + 1};
        if (pthread_create(&p->tid[t], NULL, worker, &p->args[t]) != 0) break;
        p->started++;
        p->threads++;
    }
    if (p->threads < 2) { free(p); return NULL; }
    return p;
}

void ck_pool_destroy(ck_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 2);
    futex_wake_all(&p->gen);
    for (int t = 0; t < p->started; t++) pthread_join(p->tid[t], NULL);
    free(p);
}

int ck_pool_threads(const ck_pool *p) { return p ? p->threads : 1; }
uint64_t ck_pool_worker_ns(const ck_pool *p) { return p ? atomic_load(&p->worker_ns) : 0; }

int ck_pool_available(ck_pool *p) { return p && !in_job && atomic_load(&p->busy) == 0; }

void ck_pool_for(ck_pool *p, size_t n, size_t grain, size_t align, ck_range_fn fn, void *ctx) {
    if (n == 0) return;
    if (grain < 1) grain = 1;
    if (align < 1) align = 1;
    int expected = 0;
    if (!p || in_job || n < 2 * grain || !atomic_compare_exchange_strong(&p->busy, &expected, 1)) {
        fn(ctx, 0, n, 0);
        return;
    }
    // Chunks: up to 4 per thread (balance on a loaded machine), at least `grain`, starts aligned.
    size_t want = (size_t)p->threads * 4;
    size_t chunk = (n + want - 1) / want;
    if (chunk < grain) chunk = grain;
    chunk = (chunk + align - 1) / align * align;
    size_t nchunks = (n + chunk - 1) / chunk;
    if (nchunks < 2) { atomic_store(&p->busy, 0); fn(ctx, 0, n, 0); return; }

    uint32_t g = atomic_load(&p->gen);
    atomic_store(&p->gen, g + 1);                       // odd: being written
    while (atomic_load(&p->active) != 0) CPU_RELAX();   // nobody left inside the previous job
    p->fn = fn; p->ctx = ctx; p->n = n; p->chunk = chunk; p->nchunks = nchunks;
    atomic_store(&p->next, 0);
    atomic_store(&p->done, 0);
    atomic_store(&p->gen, g + 2);                       // published
    if (atomic_load(&p->sleepers) > 0) futex_wake_all(&p->gen);
    in_job = 1;
    size_t mine = run_chunks(p, 0);
    in_job = 0;
    size_t spins = 0;
    while (atomic_load(&p->done) + mine < nchunks) {
        if (++spins < 20000) CPU_RELAX(); else sched_yield();   // a worker holding a chunk was preempted
    }
    atomic_store(&p->busy, 0);
}

// ---------------------------------------------------------------- kernels over the pool

#define EW_GRAIN 16384   /* elements: ≥ 64 KB per chunk */
#define EW_ALIGN 64

typedef struct {
    int act;
    const float *x; float *y; float *z;
    const float *w, *b; float *mean, *rstd, *dw, *db;
    const int32_t *idx, *idx2; const float *t;
    size_t rows, C, period;
    float eps, f1, f2, f3, f4, f5, f6, f7;
    int flag;
    float *lse, *nll, *maxv;
} job_t;

static void j_act_fwd(void *c, size_t b, size_t e, int th) { job_t *j = c; ck_act_fwd(j->act, j->x + b, j->y + b, e - b); }
void ck_p_act_fwd(ck_pool *pool, int act, const float *x, float *y, size_t n) {
    job_t j = {.act = act, .x = x, .y = y};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_act_fwd, &j);
}
static void j_act_bwd(void *c, size_t b, size_t e, int th) { job_t *j = c; ck_act_bwd_inplace(j->act, j->x + b, j->y + b, e - b); }
void ck_p_act_bwd_inplace(ck_pool *pool, int act, const float *f, float *dg, size_t n) {
    job_t j = {.act = act, .x = f, .y = dg};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_act_bwd, &j);
}
static void j_act_fwd_grad(void *c, size_t b, size_t e, int th) { job_t *j = c; ck_act_fwd_grad(j->act, j->z + b, j->y + b, e - b); }
void ck_p_act_fwd_grad(ck_pool *pool, int act, float *f, float *g, size_t n) {
    job_t j = {.act = act, .z = f, .y = g};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_act_fwd_grad, &j);
}
static void j_mul(void *c, size_t b, size_t e, int th) { job_t *j = c; ck_mul(j->y + b, j->x + b, e - b); }
void ck_p_mul(ck_pool *pool, float *y, const float *x, size_t n) {
    job_t j = {.x = x, .y = y};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_mul, &j);
}
static void j_add(void *c, size_t b, size_t e, int th) { job_t *j = c; ck_add(j->y + b, j->x + b, e - b); }
void ck_p_add(ck_pool *pool, float *y, const float *x, size_t n) {
    job_t j = {.x = x, .y = y};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_add, &j);
}
static void j_scale(void *c, size_t b, size_t e, int th) { job_t *j = c; ck_scale(j->y + b, e - b, j->f1); }
void ck_p_scale(ck_pool *pool, float *x, size_t n, float s) {
    job_t j = {.y = x, .f1 = s};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_scale, &j);
}

// Bias gradient: columns [b, e) of every row, rows in order (ck_bias_grad on a column slice = a strided view, so
// it is done here with the same tile logic: a column's sum starts at 0, adds rows in order, then goes into db).
static void j_bias_grad(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    float acc[256];
    for (size_t c0 = b; c0 < e; c0 += 256) {
        size_t w = e - c0 < 256 ? e - c0 : 256;
        for (size_t k = 0; k < w; k++) acc[k] = 0.0f;
        for (size_t r = 0; r < j->rows; r++) {
            const float *row = j->x + r * j->C + c0;
            for (size_t k = 0; k < w; k++) acc[k] += row[k];
        }
        for (size_t k = 0; k < w; k++) j->db[c0 + k] += acc[k];
    }
}
void ck_p_bias_grad(ck_pool *pool, const float *dy, float *db, size_t rows, size_t cols) {
    // Per column the same sum as ck_bias_grad (0, + each row in order, then into db): identical results.
    if (!ck_pool_available(pool) || rows * cols < 2 * EW_GRAIN || cols < 32) { ck_bias_grad(dy, db, rows, cols); return; }
    job_t j = {.x = dy, .db = db, .rows = rows, .C = cols};
    ck_pool_for(pool, cols, 16, 16, j_bias_grad, &j);
}

static void j_fill_rows(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    for (size_t r = b; r < e; r++) memcpy(j->y + r * j->C, j->x, j->C * sizeof(float));
}
void ck_p_fill_rows(ck_pool *pool, float *y, const float *b, size_t rows, size_t cols) {
    job_t j = {.x = b, .y = y, .C = cols};
    size_t grain = cols ? (EW_GRAIN + cols - 1) / cols : 1;
    ck_pool_for(pool, rows, grain, 1, j_fill_rows, &j);
}

static void j_ln_fwd(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    ck_layernorm_fwd(j->x + b * j->C, j->y + b * j->C, j->mean + b, j->rstd + b, j->w, j->b, e - b, j->C, j->eps);
}
void ck_p_layernorm_fwd(ck_pool *pool, const float *x, float *y, float *mean, float *rstd, const float *w,
                        const float *b, size_t rows, size_t C, float eps) {
    job_t j = {.x = x, .y = y, .mean = mean, .rstd = rstd, .w = w, .b = b, .C = C, .eps = eps};
    size_t grain = C ? (EW_GRAIN / 2 + C - 1) / C : 1;
    ck_pool_for(pool, rows, grain, 1, j_ln_fwd, &j);
}

// LayerNorm backward split in two: dx by rows, then dw/db by columns (each column adds its rows in order, with the
// expressions of ck_layernorm_bwd, so the same bits). Kept fused on one thread (one pass over x and dy).
static void j_ln_bwd_dx(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    ck_layernorm_bwd_dx(j->y + b * j->C, j->t + b * j->C, j->x + b * j->C, j->mean + b, j->rstd + b, j->w, e - b, j->C);
}
static void j_ln_bwd_params(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    ck_layernorm_bwd_params(j->t, j->x, j->mean, j->rstd, j->dw, j->db, j->rows, j->C, b, e);
}
void ck_p_layernorm_bwd(ck_pool *pool, float *dx, const float *dy, const float *x, const float *mean,
                        const float *rstd, const float *w, float *dw, float *db, size_t rows, size_t C) {
    if (!ck_pool_available(pool) || rows * C < 2 * EW_GRAIN || C < 64) {
        ck_layernorm_bwd(dx, dy, x, mean, rstd, w, dw, db, rows, C);
        return;
    }
    job_t j = {.y = dx, .t = dy, .x = x, .mean = (float *)mean, .rstd = (float *)rstd, .w = w, .dw = dw, .db = db,
               .rows = rows, .C = C};
    ck_pool_for(pool, rows, (EW_GRAIN / 2 + C - 1) / C, 1, j_ln_bwd_dx, &j);
    ck_pool_for(pool, C, 32, 16, j_ln_bwd_params, &j);
}

static void j_adamw(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    ck_adamw(j->y + b, j->x + b, j->z + b, (float *)j->w + b, e - b, j->f1, j->f2, j->f3, j->f4, j->f5, j->f6, j->f7);
}
void ck_p_adamw(ck_pool *pool, float *p, const float *g, float *m, float *v, size_t n, float gscale, float decay,
                float b1, float b2, float step, float bc2sqrt, float eps) {
    job_t j = {.y = p, .x = g, .z = m, .w = v, .f1 = gscale, .f2 = decay, .f3 = b1, .f4 = b2, .f5 = step,
               .f6 = bc2sqrt, .f7 = eps};
    ck_pool_for(pool, n, EW_GRAIN, EW_ALIGN, j_adamw, &j);
}

static void j_xent(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    g2_xent_fwd_bwd(j->y + b * j->C, e - b, j->C, j->idx + b, j->f1, j->flag, j->lse + b, j->nll + b,
                    j->maxv ? j->maxv + b : NULL);
}
void g2_p_xent_fwd_bwd(ck_pool *pool, float *x, size_t rows, size_t V, const int32_t *target, float scale, int grad,
                       float *lse, float *nll, float *maxv) {
    job_t j = {.y = x, .C = V, .idx = target, .f1 = scale, .flag = grad, .lse = lse, .nll = nll, .maxv = maxv};
    ck_pool_for(pool, rows, 1, 1, j_xent, &j);
}

static void j_scatter(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    for (size_t i = 0; i < j->rows; i++) {
        size_t r = j->idx ? (size_t)j->idx[i] : i % j->period;
        ck_add(j->y + r * j->C + b, j->x + i * j->C + b, e - b);
    }
}
void ck_p_scatter_add_rows(ck_pool *pool, float *table, const float *src, const int32_t *idx, size_t period,
                           size_t rows, size_t C) {
    job_t j = {.y = table, .x = src, .idx = idx, .period = period ? period : 1, .rows = rows, .C = C};
    if (!ck_pool_available(pool) || rows * C < 2 * EW_GRAIN || C < 128) { j_scatter(&j, 0, C, 0); return; }
    ck_pool_for(pool, C, 64, 16, j_scatter, &j);
}

static void j_embed(void *c, size_t b, size_t e, int th) {
    job_t *j = c;
    size_t C = j->C;
    for (size_t i = b; i < e; i++) {
        float *o = j->y + i * C;
        const float *a = j->x + (size_t)j->idx[i] * C, *p = j->w + (i % j->period) * C;
        for (size_t k = 0; k < C; k++) o[k] = a[k] + p[k];
        if (j->t) ck_add(o, j->t + (size_t)j->idx2[i] * C, C);
    }
}
void ck_p_embed_rows(ck_pool *pool, float *out, const float *a, const int32_t *ia, const float *p, size_t period,
                     const float *t, const int32_t *it, size_t rows, size_t C) {
    job_t j = {.y = out, .x = a, .idx = ia, .w = p, .period = period ? period : 1, .t = t, .idx2 = it, .C = C};
    size_t grain = C ? (EW_GRAIN + C - 1) / C : 1;
    ck_pool_for(pool, rows, grain, 1, j_embed, &j);
}
