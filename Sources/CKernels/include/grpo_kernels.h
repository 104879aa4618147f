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
#endif
