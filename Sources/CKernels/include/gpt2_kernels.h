// gpt2_kernels.h: the GPT-2-specific kernels: the causal (+ key padding) attention softmax and the fused
// softmax-cross-entropy of the LM head, which turns a chunk of logits into their gradient in place.
// Same conventions as ckernels.h (row-major, single-threaded, no allocation, AVX2+FMA variant chosen at run time).
// Deliberately not here: the shared layer kernels (ckernels.h, owned by the model core), matrix products.
#ifndef GPT2_KERNELS_H
#define GPT2_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Causal softmax over one score block s[rows, ld] in place. Query row i sits at absolute position q0 + i and may
/// attend to keys j <= q0 + i whose keymask[j] != 0 (keymask may be NULL: all keys real). Every other entry of the
/// row (masked or in the future, up to ld) becomes exactly 0, as HF's finfo.min addition gives after exp.
/// A row with no allowed key becomes uniform over keys 0..q0+i (HF's all-min row).
void g2_softmax_causal_fwd(float *s, const float *keymask, size_t rows, size_t ld, size_t q0);

/// Fused softmax-cross-entropy over logits x[rows, V] (the LM head output, rows = tokens).
/// For every row r: lse[r] = logsumexp(x[r, :]); nll[r] = lse[r] - x[r, target[r]] when target[r] >= 0, else 0.
/// When grad != 0 the row is OVERWRITTEN by its gradient: x[r, j] = scale * (softmax_j - [j == target]) for counted
/// rows and 0 for ignored rows (target < 0). exp is evaluated once per element (written in place, then scaled).
/// maxv[r] receives the row maximum (may be NULL). Targets must be < V (checked by the caller).
void g2_xent_fwd_bwd(float *x, size_t rows, size_t V, const int32_t *target, float scale, int grad,
                     float *lse, float *nll, float *maxv);
#endif
