// ck_exp.h (private to CKernels, not exported): the one polynomial exp that ckernels.c and gpt2_kernels.c inline
// into their vector loops (libm expf costs ~20 ns per call here).
#ifndef CK_EXP_H
#define CK_EXP_H
#include <stdint.h>
#include <string.h>

// exp: n = round(x/ln2), r = x - n ln2 (two-part ln2), e^r by degree-7 Taylor (|r| <= 0.347: rel error 5e-9),
// scaled by 2^n built in the exponent bits. Clamped to [-87, 88] so 2^n stays a normal number.
static inline __attribute__((always_inline)) float ck_exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f;
    float nf = (t + 12582912.0f) - 12582912.0f;     // round to nearest via the 1.5*2^23 trick
    float r = x - nf * 0.693145751953125f;
    r = r - nf * 1.4286068203094172e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)nf + 127) << 23;
    float s;
    memcpy(&s, &bits, 4);
    return p * s;
}

#endif
