/* AVX-512 micro-kernel for outputs of 17..24 columns (a 20-unit layer): MR = 8 rows x
 * NR = 24 columns, one zmm and one ymm accumulator per row. On Zen 4 a ymm FMA costs
 * half a zmm one, so a 20-wide tile runs at 5/6 of the lanes instead of the 8 x 32
 * kernel's 5/8. Takes rows in MR-row strips (gemm.h, sa). Each element gets the same
 * FMA sequence and epilogue as in the other kernels, so results are bitwise theirs. */
#include "gemm/gemm.h"

#include <immintrin.h>

enum { MR = 8 };

static inline __attribute__((always_inline)) void strip(const dpt_tile *t, const float *ast,
                                                        float *cst, const float *mkst, int m)
{
    const int n = t->n;
    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask8 m1 = n >= 24 ? 0xFF : n <= 16 ? 0 : (__mmask8)((1u << (n - 16)) - 1);
    const float *arow[MR];
    for (int i = 0; i < MR; i++)
        arow[i] = ast + (i < m ? i : 0) * t->rsa;
    __m512 lo[MR];
    __m256 hi[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        lo[i] = _mm512_setzero_ps();
        hi[i] = _mm256_setzero_ps();
    }
    const float *b = t->b;
    const ptrdiff_t csa = t->csa, rsb = t->rsb;
    for (int k = 0; k < t->kc; k++, b += rsb) {
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
        __m256 b1 = _mm256_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            float av = arow[i][k * csa];
            lo[i] = _mm512_fmadd_ps(_mm512_set1_ps(av), b0, lo[i]);
            hi[i] = _mm256_fmadd_ps(_mm256_set1_ps(av), b1, hi[i]);
        }
    }
    const int plain = t->alpha == 1.0f && t->beta == 0.0f && !t->bias && !t->relu && !mkst;
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= m)
            break;
        float *c = cst + i * t->ldc;
        __m512 r0 = lo[i];
        __m256 r1 = hi[i];
        if (!plain) {
            r0 = _mm512_mul_ps(_mm512_set1_ps(t->alpha), r0);
            r1 = _mm256_mul_ps(_mm256_set1_ps(t->alpha), r1);
            if (t->beta != 0.0f) {
                r0 = _mm512_fmadd_ps(_mm512_set1_ps(t->beta), _mm512_maskz_loadu_ps(m0, c), r0);
                r1 = _mm256_fmadd_ps(_mm256_set1_ps(t->beta), _mm256_maskz_loadu_ps(m1, c + 16), r1);
            }
            if (t->bias) {
                r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, t->bias));
                r1 = _mm256_add_ps(r1, _mm256_maskz_loadu_ps(m1, t->bias + 16));
            }
            if (t->relu) {
                r0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r0, _mm512_setzero_ps(), _CMP_GT_OQ), r0);
                r1 = _mm256_maskz_mov_ps(_mm256_cmp_ps_mask(r1, _mm256_setzero_ps(), _CMP_GT_OQ), r1);
            }
            if (mkst) {
                const float *mk = mkst + i * t->ldm;
                __m512 k0 = _mm512_maskz_loadu_ps(m0, mk);
                __m256 k1 = _mm256_maskz_loadu_ps(m1, mk + 16);
                r0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(k0, _mm512_setzero_ps(), _CMP_GT_OQ), r0);
                r1 = _mm256_maskz_mov_ps(_mm256_cmp_ps_mask(k1, _mm256_setzero_ps(), _CMP_GT_OQ), r1);
            }
        }
        _mm512_mask_storeu_ps(c, m0, r0);
        if (m1)
            _mm256_mask_storeu_ps(c + 16, m1, r1);
    }
}

void dpt_ukernel_avx512_n24(const dpt_tile *t)
{
    for (int i0 = 0; i0 < t->m; i0 += MR)
        strip(t, t->a + (i0 / MR) * t->sa, t->c + i0 * t->ldc,
              t->mask ? t->mask + i0 * t->ldm : NULL, t->m - i0 < MR ? t->m - i0 : MR);
}
