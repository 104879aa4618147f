// ckernels.h: vectorised element-wise kernels for the model (GELU, LayerNorm, softmax...), in C so that they can
// be compiled per CPU feature and dispatched at run time. Filled in by the Model layers as they need them.
#ifndef CKERNELS_H
#define CKERNELS_H
#include <stddef.h>
#include <stdint.h>
/// Returns 1 when the CPU supports AVX512-BF16 (vdpbf16ps), else 0.
int ck_has_avx512bf16(void);
#endif
