/* AVX-512 "narrow" micro-kernel: MR = 16 rows x NR = 16 columns (one zmm per row, 16
 * accumulators), for outputs of at most 16 columns (a 10-class output layer), where the
 * 8 x 32 kernel would leave three quarters of its lanes idle. A and B are read in place
 * (no packing); edge columns use masked loads and stores; rows beyond m read row 0 of A.
 * Each element gets the same FMA sequence and epilogue as in the other kernels (see
 * gemm.h), so results are bitwise theirs. */
#include "gemm/gemm.h"

#include <immintrin.h>

enum { MR = 16 };

/* rows: 16, or 8 when the tile has at most 8 (then no FMA is spent on absent rows) */
static inline __attribute__((always_inline)) void tile(const dpt_tile *t, const int rows)
{
    const __mmask16 cols = t->n >= 16 ? 0xFFFF : (__mmask16)((1u << t->n) - 1);
    const float *arow[MR];
    for (int i = 0; i < rows; i++)
        arow[i] = t->a + (i < t->m ? i : 0) * t->rsa;
    __m512 acc[MR];
#pragma GCC unroll 16
    for (int i = 0; i < rows; i++)
        acc[i] = _mm512_setzero_ps();
    const float *b = t->b;
    const ptrdiff_t csa = t->csa, rsb = t->rsb;
    for (int k = 0; k < t->kc; k++, b += rsb) {
        __m512 bv = _mm512_maskz_loadu_ps(cols, b);
#pragma GCC unroll 16
        for (int i = 0; i < rows; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(arow[i][k * csa]), bv, acc[i]);
    }
    const int plain = t->alpha == 1.0f && t->beta == 0.0f && !t->bias && !t->relu && !t->mask;
    const __m512 alpha = _mm512_set1_ps(t->alpha), beta = _mm512_set1_ps(t->beta);
    const __m512 bias = t->bias ? _mm512_maskz_loadu_ps(cols, t->bias) : _mm512_setzero_ps();
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < rows; i++) {
        if (i >= t->m)
            break;
        float *c = t->c + i * t->ldc;
        __m512 r = _mm512_mul_ps(alpha, acc[i]); /* alpha * acc, exactly acc when 1 */
        if (!plain) {
            if (t->beta != 0.0f)
                r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(cols, c), r);
            if (t->bias)
                r = _mm512_add_ps(r, bias);
            if (t->relu)
                r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, zero, _CMP_GT_OQ), r);
            if (t->mask) {
                __m512 mk = _mm512_maskz_loadu_ps(cols, t->mask + i * t->ldm);
                r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mk, zero, _CMP_GT_OQ), r);
            }
        }
        _mm512_mask_storeu_ps(c, cols, r);
    }
}

void dpt_ukernel_avx512_n16(const dpt_tile *t)
{
    if (t->m <= 8)
        tile(t, 8);
    else
        tile(t, MR);
}
