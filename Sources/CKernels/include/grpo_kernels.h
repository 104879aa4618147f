// grpo_kernels.h: the LM-head kernels on-line RL needs beyond the fused cross-entropy of gpt2_kernels.h: per-token
// log-probabilities and entropies at a sampling temperature, and the softmax-CE gradient with one scale per row
// (token), both over a chunk of logits x[rows, V].
// Same conventions as ckernels.h (row-major, single-threaded, no allocation, AVX2+FMA variant chosen at run time).
// Deliberately not here: matrix products, the loss of the objective (Training/GRPOObjective.swift).
#ifndef GRPO_KERNELS_H
#define GRPO_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// For each row r of logits x[rows, V] with target[r] >= 0, with z = x[r, :] * inv_temp:
/// logp[r] = z[target] - logsumexp(z) and, when entropy != NULL, entropy[r] = logsumexp(z) - Σ_j softmax(z)_j z_j.
/// Rows with target < 0 get logp = entropy = 0 and are not read. x is OVERWRITTEN (scratch).
void gr_logp_entropy(float *x, size_t rows, size_t V, const int32_t *target, float inv_temp,
                     float *logp, float *entropy);

/// Overwrites each row of x[rows, V] with the gradient of scale[r] * NLL_r with respect to the raw logits, where
/// NLL_r = −log softmax(x[r, :] * inv_temp)[target[r]]:  x[r, j] = scale[r] * inv_temp * (softmax_j − [j == target]).
/// Rows with target < 0 or scale 0 become 0.
void gr_xent_grad_scaled(float *x, size_t rows, size_t V, const int32_t *target, float inv_temp, const float *scale);

/// Row-deterministic products for batched generation: every output element is one fixed chain of single-rounding
/// multiply-adds over k in order (NN), or 8 lane chains over k combined in a fixed tree plus a tail (NT), so a row's
/// result does not depend on how many rows, or which, share the call (BLAS may round a row differently with M).
/// NN: y[r, j] = base + Σ_k x[r, k] · w[k, j], base = y[r, j] when accumulate, else bias[j] (or 0 when bias is NULL).
void gr_det_gemm_nn(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw, const float *bias,
                    size_t n, size_t k, size_t m, int accumulate);
/// NT: y[r, j] = (accumulate ? y[r, j] : 0) + alpha · Σ_k x[r, k] · w[j, k].
void gr_det_gemm_nt(float *y, size_t ldy, const float *x, size_t ldx, const float *w, size_t ldw,
                    size_t n, size_t k, size_t m, float alpha, int accumulate);
#endif
