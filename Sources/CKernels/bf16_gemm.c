// bf16_gemm.c: row-major C[m,n] = alpha·op(A)·op(B) + beta·C with fp32 inputs rounded to bfloat16 (round to
// nearest even, vcvtne2ps2bf16) while they are packed, products summed in fp32 by vdpbf16ps, fp32 output.
// Declared in ckernels.h. Same argument conventions as cblas_sgemm(CblasRowMajor, ...).
//
// Layout (GotoBLAS/BLIS style, written from the public descriptions of the AOCL Zen 4 bf16 kernels):
//   vdpbf16ps works on K in pairs: every 32-bit lane holds (x[k], x[k+1]) as two bf16, and
//   acc[j] += a.lo·b.lo + a.hi·b.hi per lane. So
//   - a B panel of NR = 64 columns is packed as [kpair][64 columns][2] (one zmm load = 16 columns × one k pair),
//   - an A micro-panel of MR = 6 rows holds one 32-bit (k, k+1) pair per (row, kpair), broadcast to all lanes,
//   - the micro-kernel keeps 6 × 4 zmm accumulators (24 of 32 registers) across its whole K block.
//   Blocking: K in blocks of at most KC_MAX (the A micro-panel, 6·KC·2 bytes, stays in L1 and the C tile is read
//   and written once per K block), N in blocks of NC columns so that the packed B block (KC·NC·2 bytes) stays in
//   L2; A and B are each converted and packed exactly once per call.
//   Odd K is padded with a zero partner; rows/columns past the edge are zero in the panels and masked on store.
// Threads: `threads` > 1 splits the larger of M and N over that many pthreads made per call; ck_bf16_gemm_pool
// splits it over the persistent pool of ck_pool.h instead (what the model uses). Deliberately not here: any global
// state (the pack
// buffer is allocated per call, about half the size of A), a slow portable path: without AVX512-BF16 the function returns CK_BF16_UNSUPPORTED and
// the caller (Linear.swift) uses cblas_sgemm.
// Also here: ck_bf16_peak_rates (this core's vdpbf16ps and FMA issue rates, from which Model's BF16Path decides
// whether this kernel can beat sgemm at all) and ck_bf16_round_rows_pool (the bf16-rounded copies of the other path).
#include "ckernels.h"
#include "ck_pool.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#pragma clang diagnostic ignored "-Wpsabi"

float ck_bf16_round_one(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        u = (u | 0x00400000u) & 0xffff0000u;   // NaN stays a (quiet) NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);        // round to nearest, ties to even (overflow gives ±inf, as vcvtne)
        u &= 0xffff0000u;
    }
    float y;
    memcpy(&y, &u, 4);
    return y;
}

void ck_bf16_round(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = ck_bf16_round_one(x[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#ifndef MR
#define MR 6                   // rows of the micro-tile (broadcast)
#endif
#ifndef NV
#define NV 4                   // 16-column vectors of the micro-tile (loaded): MR·NV accumulators
#endif
#define NR (16 * NV)
#ifndef KC_MAX
#define KC_MAX 1536            // k elements per block (even)
#endif
#ifndef B_BLOCK_BYTES
#define B_BLOCK_BYTES (384 * 1024)
#endif
#define TGT __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
#define INL static inline __attribute__((always_inline))

// Words 0..15 of v come from row k, 16..31 from row k+1; this interleaves them to (k, k+1) pairs per lane.
TGT INL __m512i interleave_index(void) {
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                            23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

TGT INL __mmask16 lanes(size_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

// One row segment x[0..<len] (contiguous along k) to bf16 pairs out[0..<ceil(len/2)] (32-bit each); a zero
// partner pads an odd length. Writes whole 64-byte chunks: out must have room for round_up(len, 32) / 2 words.
TGT static void convert_row(const float *x, size_t len, uint32_t *out) {
    size_t k = 0;
    for (; k + 32 <= len; k += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
        _mm512_storeu_si512((void *)(out + k / 2), (__m512i)v);
    }
    if (k < len) {
        size_t r = len - k;
        __m512 lo = _mm512_maskz_loadu_ps(lanes(r), x + k);
        __m512 hi = _mm512_maskz_loadu_ps(r > 16 ? lanes(r - 16) : 0, x + k + 16);
        _mm512_storeu_si512((void *)(out + k / 2), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

// Pairs from two rows that are contiguous along the lane axis: out[l] = (r0[l], r1[l]) for l < w (w ≤ 16),
// r1 == NULL means a zero partner (odd K). Stores exactly w 32-bit words.
TGT INL void interleave_rows(const float *r0, const float *r1, size_t w, uint32_t *out, __m512i idx) {
    __mmask16 m = lanes(w);
    __m512 a = _mm512_maskz_loadu_ps(m, r0);
    __m512 b = r1 ? _mm512_maskz_loadu_ps(m, r1) : _mm512_setzero_ps();
    __m512i v = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    _mm512_mask_storeu_epi32(out, m, v);
}

// 16×16 transpose of 32-bit words in registers (r[i] word j → r[j] word i): 32-bit, 64-bit and two 128-bit-lane
// interleaving stages, 64 shuffles for 256 words.
TGT INL void transpose16(__m512i r[16]) {
    __m512i t[16];
#pragma clang loop unroll(full)
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < 16; i += 4) {   // r[i + c], lane l: rows i..i+3 of column 4l + c
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma clang loop unroll(full)
    for (int h = 0; h < 16; h += 8) {
#pragma clang loop unroll(full)
        for (int j = 0; j < 4; j++) {
            t[h + j] = _mm512_shuffle_i32x4(r[h + j], r[h + j + 4], 0x88);
            t[h + j + 4] = _mm512_shuffle_i32x4(r[h + j], r[h + j + 4], 0xdd);
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
    }
}

// Packs op(B)[k0..<k0+kc, j0..<j0+nc] into ceil(nc/64) panels of [kcp][64] pairs (kcp = ceil(kc/2)); columns
// past nc are zero. op(B)(k, j) = transB ? b[j*ldb + k] : b[k*ldb + j].
TGT __attribute__((noinline)) static void pack_b(int transB, const float *b, size_t ldb, size_t k0, size_t kc, size_t j0, size_t nc,
                       uint32_t *dst) {
    size_t kcp = (kc + 1) / 2;
    __m512i idx = interleave_index();
    for (size_t jp = 0; jp < nc; jp += NR) {
        uint32_t *panel = dst + (jp / NR) * kcp * NR;
        size_t w = nc - jp < NR ? nc - jp : NR;
        if (transB) {
            // Column j of op(B) is a contiguous row of b: 16 columns × 32 k convert to 16 registers of 16 pairs
            // (column-major), and a 16×16 transpose makes them 16 pair rows of the panel (was a scalar scatter
            // with stride 64 words: one store per pair).
            for (size_t v = 0; v < NR; v += 16) {
                size_t wv = w > v ? (w - v < 16 ? w - v : 16) : 0;
                for (size_t p0 = 0; p0 < kcp; p0 += 16) {
                    size_t r = kc - 2 * p0;   // k values left in this column
                    __mmask16 mlo = lanes(r), mhi = r > 16 ? lanes(r - 16) : 0;
                    __m512i x[16];
#pragma clang loop unroll(full)
                    for (int i = 0; i < 16; i++) {
                        if ((size_t)i < wv) {
                            const float *src = b + (j0 + jp + v + (size_t)i) * ldb + k0 + 2 * p0;
                            x[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(mhi, src + 16),
                                                               _mm512_maskz_loadu_ps(mlo, src));
                        } else {
                            x[i] = _mm512_setzero_si512();
                        }
                    }
                    transpose16(x);
                    size_t np = kcp - p0 < 16 ? kcp - p0 : 16;
                    for (size_t q = 0; q < np; q++) _mm512_storeu_si512((void *)(panel + (p0 + q) * NR + v), x[q]);
                }
            }
        } else {
            for (size_t p = 0; p < kcp; p++) {
                const float *r0 = b + (k0 + 2 * p) * ldb + j0 + jp;
                const float *r1 = 2 * p + 1 < kc ? r0 + ldb : NULL;
                for (size_t v = 0; v < NR; v += 16) {
                    size_t wv = w > v ? (w - v < 16 ? w - v : 16) : 0;
                    if (wv < 16) _mm512_storeu_si512((void *)(panel + p * NR + v), _mm512_setzero_si512());
                    if (wv) interleave_rows(r0 + v, r1 ? r1 + v : NULL, wv, panel + p * NR + v, idx);
                }
            }
        }
    }
}

// The A micro-panel of rows i0..<i0+mr, k0..<k0+kc. Returns the pair strides (row, kpair) in 32-bit words.
// transA = 0: rows are contiguous along k, so each row converts straight into [row][kpair] (stride kcp_pad).
// transA = 1: op(A)(i, k) = a[k*lda + i], rows of a run along i: interleave two of them into [kpair][MR].
TGT __attribute__((noinline)) static void pack_a(int transA, const float *a, size_t lda, size_t i0, size_t mr, size_t k0, size_t kc,
                       uint32_t *dst, size_t kcp_pad, size_t *rs, size_t *cs) {
    size_t kcp = (kc + 1) / 2;
    if (!transA) {
        for (size_t i = 0; i < mr; i++) convert_row(a + (i0 + i) * lda + k0, kc, dst + i * kcp_pad);
        *rs = kcp_pad; *cs = 1;
    } else {
        __m512i idx = interleave_index();
        for (size_t p = 0; p < kcp; p++) {
            const float *r0 = a + (k0 + 2 * p) * lda + i0;
            interleave_rows(r0, 2 * p + 1 < kc ? r0 + lda : NULL, mr, dst + p * MR, idx);
        }
        *rs = 1; *cs = MR;
    }
}

// C[mr, nr] (mr ≤ 6, nr ≤ 64) = alpha · Apanel·Bpanel + beta·C, beta == 0 meaning C is not read.
// Inlined once per mr so that the accumulators live in registers.
TGT INL void micro(const int mr, size_t kcp, const uint32_t *ap, size_t rs, size_t cs, const uint32_t *bp,
                   float *c, size_t ldc, size_t nr, float alpha, float beta) {
    __m512 acc[MR][NV];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++)
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (size_t p = 0; p < kcp; p++) {
        const uint32_t *bq = bp + p * NR;
        __m512bh bv[NV];
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_loadu_si512((const void *)(bq + 16 * v));
        const uint32_t *aq = ap + p * cs;
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                __m512bh x = (__m512bh)_mm512_set1_epi32((int)aq[i * rs]);
#pragma clang loop unroll(full)
                for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], x, bv[v]);
            }
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i >= mr) continue;
        float *ci = c + (size_t)i * ldc;
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) {
            size_t off = (size_t)v * 16;
            if (off >= nr) break;
            __mmask16 m = lanes(nr - off);
            __m512 r = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, ci + off), r);
            _mm512_mask_storeu_ps(ci + off, m, r);
        }
    }
}

TGT static void micro_any(size_t mr, size_t kcp, const uint32_t *ap, size_t rs, size_t cs, const uint32_t *bp,
                          float *c, size_t ldc, size_t nr, float alpha, float beta) {
    switch (mr) {
#define CASE(r) case r: if (r <= MR) { micro(r <= MR ? r : MR, kcp, ap, rs, cs, bp, c, ldc, nr, alpha, beta); } break;
    CASE(16) CASE(15) CASE(14) CASE(13) CASE(12) CASE(11) CASE(10) CASE(9) CASE(8) CASE(7) CASE(6) CASE(5) CASE(4)
    CASE(3) CASE(2)
#undef CASE
    default: micro(1, kcp, ap, rs, cs, bp, c, ldc, nr, alpha, beta); break;
    }
}

// One K block: the whole A block (every micro-panel of rows) is converted once, then each N block of B is packed
// once and swept by all A micro-panels (B block in L2, A micro-panel in L1, C tile in registers).
TGT static void gemm_bf16(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a,
                          size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc,
                          uint32_t *bbuf, uint32_t *abuf, size_t kc_even, size_t nc_max) {
    for (size_t k0 = 0; k0 < k; k0 += kc_even) {
        size_t kc = k - k0 < kc_even ? k - k0 : kc_even;
        size_t kcp = (kc + 1) / 2;
        size_t kcp_pad = (kcp + 15) & ~(size_t)15;
        size_t panel_words = MR * kcp_pad;
        float bet = k0 == 0 ? beta : 1.0f;
        size_t rs = 0, cs = 0;
        for (size_t i0 = 0; i0 < m; i0 += MR) {
            size_t mr = m - i0 < MR ? m - i0 : MR;
            pack_a(transA, a, lda, i0, mr, k0, kc, abuf + (i0 / MR) * panel_words, kcp_pad, &rs, &cs);
        }
        for (size_t j0 = 0; j0 < n; j0 += nc_max) {
            size_t nc = n - j0 < nc_max ? n - j0 : nc_max;
            pack_b(transB, b, ldb, k0, kc, j0, nc, bbuf);
            for (size_t i0 = 0; i0 < m; i0 += MR) {
                size_t mr = m - i0 < MR ? m - i0 : MR;
                const uint32_t *ap = abuf + (i0 / MR) * panel_words;
                for (size_t jp = 0; jp < nc; jp += NR) {
                    size_t nr = nc - jp < NR ? nc - jp : NR;
                    micro_any(mr, kcp, ap, rs, cs, bbuf + (jp / NR) * kcp * NR, c + i0 * ldc + j0 + jp, ldc,
                              nr, alpha, bet);
                }
            }
        }
    }
}

// One thread's share: sizes of its pack buffer, and the call.
typedef struct {
    int transA, transB;
    size_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    size_t lda, ldb, ldc;
    float *c;
    size_t kc, nc, bwords, awords;
    uint32_t *buf;
} part_t;

static void part_plan(part_t *p) {
    size_t kblocks = (p->k + KC_MAX - 1) / KC_MAX;
    p->kc = ((p->k + kblocks - 1) / kblocks + 1) & ~(size_t)1;   // balanced K blocks, even
    size_t kcp_pad = (p->kc / 2 + 15) & ~(size_t)15;
    p->nc = (B_BLOCK_BYTES / (p->kc * 2)) / NR * NR;
    if (p->nc < NR) p->nc = NR;
    size_t npanels_max = ((p->n < p->nc ? p->n : p->nc) + NR - 1) / NR;
    p->bwords = npanels_max * (p->kc / 2) * NR;
    p->awords = (p->m + MR - 1) / MR * MR * kcp_pad;   // the A block: ≥ kcp·MR per panel for either layout
}

TGT static void *part_run(void *arg) {
    part_t *p = arg;
    gemm_bf16(p->transA, p->transB, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, p->c, p->ldc,
              p->buf, p->buf + p->bwords, p->kc, p->nc);
    return NULL;
}

#define MAX_THREADS 64

static void pool_parts(void *ctx, size_t b, size_t e, int thread) {
    (void)thread;
    for (size_t t = b; t < e; t++) part_run((part_t *)ctx + t);
}

static int bf16_gemm_run(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                         const float *b, size_t ldb, float beta, float *c, size_t ldc, int threads, ck_pool *pool) {
    if (!ck_has_avx512bf16()) return CK_BF16_UNSUPPORTED;
    if (m == 0 || n == 0) return 0;
    if (k == 0) {   // C = beta·C, C not read when beta == 0 (BLAS semantics)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return 0;
    }
    // Threads split the larger of M (whole 6-row panels) and N (whole 64-column panels); each packs its own
    // share of that operand and all of the other (the smaller side, so the duplicated packing is the cheap one).
    int splitM = m >= n;
    size_t tiles = splitM ? (m + MR - 1) / MR : (n + NR - 1) / NR;
    size_t nt = threads < 1 ? 1 : (size_t)threads;
    if (nt > MAX_THREADS) nt = MAX_THREADS;
    if (nt > tiles / 2) nt = tiles / 2 > 0 ? tiles / 2 : 1;   // at least two tiles each
    // < ~0.1 ms of work: creating a thread costs more than it saves (waking a pool worker costs ~10 µs)
    if (2 * m * n * k < (pool ? (size_t)4000000 : (size_t)32000000)) nt = 1;
    part_t parts[MAX_THREADS];
    size_t total = 0, t0 = 0;
    for (size_t t = 0; t < nt; t++) {
        size_t t1 = tiles * (t + 1) / nt;
        part_t *p = &parts[t];
        *p = (part_t){transA, transB, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c, 0, 0, 0, 0, NULL};
        if (splitM) {
            size_t i0 = t0 * MR, i1 = t1 * MR < m ? t1 * MR : m;
            p->m = i1 - i0;
            p->a = transA ? a + i0 : a + i0 * lda;
            p->c = c + i0 * ldc;
        } else {
            size_t j0 = t0 * NR, j1 = t1 * NR < n ? t1 * NR : n;
            p->n = j1 - j0;
            p->b = transB ? b + j0 * ldb : b + j0;
            p->c = c + j0;
        }
        part_plan(p);
        total += (p->bwords + p->awords + 15) & ~(size_t)15;   // keep every part 64-byte aligned
        t0 = t1;
    }
    // One buffer per call, allocated here for all parts (A block ≈ m·min(k,1536)·2 bytes, e.g. 12 MB at m = 4096,
    // k = 1536); glibc serves repeated same-size requests from the heap after the first free (no page faults).
    uint32_t *buf = aligned_alloc(64, total * 4);
    if (!buf) return CK_BF16_NOMEM;
    size_t off = 0;
    for (size_t t = 0; t < nt; t++) { parts[t].buf = buf + off; off += (parts[t].bwords + parts[t].awords + 15) & ~(size_t)15; }
    if (pool && nt > 1) {   // the persistent pool: no thread made per call
        ck_pool_for(pool, nt, 1, 1, pool_parts, parts);
        free(buf);
        return 0;
    }
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (size_t t = 1; t < nt; t++) started[t] = pthread_create(&tid[t], NULL, part_run, &parts[t]) == 0;
    part_run(&parts[0]);
    for (size_t t = 1; t < nt; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else part_run(&parts[t]);   // could not start a thread: do its share here
    }
    free(buf);
    return 0;
}

int ck_bf16_gemm(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc, int threads) {
    return bf16_gemm_run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads, NULL);
}

int ck_bf16_gemm_pool(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                      const float *b, size_t ldb, float beta, float *c, size_t ldc, ck_pool *pool) {
    int threads = ck_pool_available(pool) ? ck_pool_threads(pool) : 1;
    return bf16_gemm_run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads, threads > 1 ? pool : NULL);
}

// ---- what a bf16 product costs on this core, and the rounding copy for the sgemm path ----

// Issue rate of 12 independent accumulator chains (no memory operands): vdpbf16ps zmm (64 FLOP each: 16 lanes × 2
// products × multiply-add) against vfmadd231ps zmm (32 FLOP each), best of 5 alternating tries of ~0.3 ms each so
// that a preempted try does not decide. Measured on the Intel Xeon VM (model 207, AMX not exposed): 84 vs 170
// GFLOP/s (vdpbf16ps issues every other cycle, half the FMA rate); Zen 4 issues both at the same 256-bit rate, so
// its bf16 dot product does twice the FLOP of its fp32 FMA.
#define PEAK_ITERS 32768
#define X12(op) op " %%zmm12, %%zmm12, %%zmm0\n\t" op " %%zmm12, %%zmm12, %%zmm1\n\t" op " %%zmm12, %%zmm12, %%zmm2\n\t" \
    op " %%zmm12, %%zmm12, %%zmm3\n\t" op " %%zmm12, %%zmm12, %%zmm4\n\t" op " %%zmm12, %%zmm12, %%zmm5\n\t" \
    op " %%zmm12, %%zmm12, %%zmm6\n\t" op " %%zmm12, %%zmm12, %%zmm7\n\t" op " %%zmm12, %%zmm12, %%zmm8\n\t" \
    op " %%zmm12, %%zmm12, %%zmm9\n\t" op " %%zmm12, %%zmm12, %%zmm10\n\t" op " %%zmm12, %%zmm12, %%zmm11\n\t"
#define ZERO12 "vpxord %%zmm0, %%zmm0, %%zmm0\n\t" "vmovaps %%zmm0, %%zmm1\n\t" "vmovaps %%zmm0, %%zmm2\n\t" \
    "vmovaps %%zmm0, %%zmm3\n\t" "vmovaps %%zmm0, %%zmm4\n\t" "vmovaps %%zmm0, %%zmm5\n\t" "vmovaps %%zmm0, %%zmm6\n\t" \
    "vmovaps %%zmm0, %%zmm7\n\t" "vmovaps %%zmm0, %%zmm8\n\t" "vmovaps %%zmm0, %%zmm9\n\t" "vmovaps %%zmm0, %%zmm10\n\t" \
    "vmovaps %%zmm0, %%zmm11\n\t"
#define CLOBBER12 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "cc"
// The chains are written in assembly so that the measurement does not depend on the compiler's optimisation level
// (a debug build keeps intrinsics' accumulators in memory: the FMA loop then ran at 4 GFLOP/s).
TGT static double peak_try(int bf16) {
    const uint32_t x = bf16 ? 0x3a833a83u : 0x3a83126fu;   // 1e-3 as a bf16 pair / as fp32: no overflow, no subnormals
    long n = PEAK_ITERS;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (bf16) {
        __asm__ volatile("vpbroadcastd %1, %%zmm12\n\t" ZERO12 "1:\n\t" X12("vdpbf16ps") "dec %0\n\tjnz 1b"
                         : "+r"(n) : "m"(x) : CLOBBER12);
    } else {
        __asm__ volatile("vpbroadcastd %1, %%zmm12\n\t" ZERO12 "1:\n\t" X12("vfmadd231ps") "dec %0\n\tjnz 1b"
                         : "+r"(n) : "m"(x) : CLOBBER12);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    return ns > 0 ? 12.0 * PEAK_ITERS * (bf16 ? 64.0 : 32.0) / ns : 0;   // GFLOP/s
}
#undef X12
#undef ZERO12
#undef CLOBBER12

void ck_bf16_peak_rates(double *bf16_gflops, double *fp32_gflops) {
    *bf16_gflops = 0; *fp32_gflops = 0;
    if (!ck_has_avx512bf16()) return;
    for (int t = 0; t < 5; t++) {
        double b = peak_try(1), f = peak_try(0);
        if (b > *bf16_gflops) *bf16_gflops = b;
        if (f > *fp32_gflops) *fp32_gflops = f;
    }
}

typedef struct { const float *x; size_t ldx; float *y; size_t ldy, cols; } round_job;

// Rows b..<e of x rounded to bfloat16 (vcvtneps2bf16: the rounding the kernel's packing applies) and widened back
// to fp32 (the low 16 bits zero) into y.
TGT static void round_rows(void *ctx, size_t b, size_t e, int thread) {
    (void)thread;
    round_job *j = ctx;
    for (size_t r = b; r < e; r++) {
        const float *x = j->x + r * j->ldx;
        float *y = j->y + r * j->ldy;
        for (size_t c = 0; c < j->cols; c += 16) {
            __mmask16 m = lanes(j->cols - c);
            __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + c));
            _mm512_mask_storeu_ps(y + c, m, (__m512)_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
    }
}

int ck_bf16_round_rows_pool(const float *x, size_t ldx, float *y, size_t ldy, size_t rows, size_t cols, ck_pool *pool) {
    if (!ck_has_avx512bf16()) return CK_BF16_UNSUPPORTED;
    round_job j = {x, ldx, y, ldy, cols};
    size_t grain = cols ? (16384 + cols - 1) / cols : 1;
    ck_pool_for(pool, rows, grain, 1, round_rows, &j);
    return 0;
}

#else

int ck_bf16_gemm(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc, int threads) {
    (void)threads; (void)transA; (void)transB; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
    return CK_BF16_UNSUPPORTED;
}
int ck_bf16_gemm_pool(int transA, int transB, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                      const float *b, size_t ldb, float beta, float *c, size_t ldc, ck_pool *pool) {
    (void)pool;
    return ck_bf16_gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 1);
}


void ck_bf16_peak_rates(double *bf16_gflops, double *fp32_gflops) { *bf16_gflops = 0; *fp32_gflops = 0; }
int ck_bf16_round_rows_pool(const float *x, size_t ldx, float *y, size_t ldy, size_t rows, size_t cols, ck_pool *pool) {
    (void)x; (void)ldx; (void)y; (void)ldy; (void)rows; (void)cols; (void)pool;
    return CK_BF16_UNSUPPORTED;
}

#endif
