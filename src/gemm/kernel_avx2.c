/* AVX2+FMA micro-kernel: MR = 6 rows x NR = 16 columns (12 ymm accumulators). Edge
 * columns use maskload/maskstore; edge rows are not stored and read row 0 of A. Every
 * row runs the same instruction sequence (row invariance, see gemm.h). */
#include "gemm/gemm.h"

#include <immintrin.h>

enum { MR = 6, NR = 16 };

static inline __m256i lane_mask(int n) /* lanes j < n set, n in [0, 8] */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 epilogue(__m256 acc, const float *c, const float *bias,
                              const float *mask, __m256i lanes, const dpt_tile *t)
{
    __m256 r = _mm256_mul_ps(_mm256_set1_ps(t->alpha), acc);
    if (t->beta != 0.0f)
        r = _mm256_fmadd_ps(_mm256_set1_ps(t->beta), _mm256_maskload_ps(c, lanes), r);
    if (bias)
        r = _mm256_add_ps(r, _mm256_maskload_ps(bias, lanes));
    if (t->relu)
        r = _mm256_and_ps(r, _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_GT_OQ));
    if (mask)
        r = _mm256_and_ps(r, _mm256_cmp_ps(_mm256_maskload_ps(mask, lanes),
                                           _mm256_setzero_ps(), _CMP_GT_OQ));
    return r;
}

void dpt_ukernel_avx2(const dpt_tile *t)
{
    const int n = t->n;
    const __m256i m0 = lane_mask(n > 8 ? 8 : n), m1 = lane_mask(n > 16 ? 8 : n > 8 ? n - 8 : 0);
    const int full = n >= NR;
    const float *arow[MR];
    for (int i = 0; i < MR; i++)
        arow[i] = t->a + (i < t->m ? i : 0) * t->rsa;

    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();

    const float *b = t->b;
    const ptrdiff_t csa = t->csa, rsb = t->rsb;
    if (full) {
        for (int k = 0; k < t->kc; k++, b += rsb) {
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                __m256 a = _mm256_broadcast_ss(&arow[i][k * csa]);
                acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    } else {
        for (int k = 0; k < t->kc; k++, b += rsb) {
            __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                __m256 a = _mm256_broadcast_ss(&arow[i][k * csa]);
                acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    }

    for (int i = 0; i < MR && i < t->m; i++) {
        float *c = t->c + i * t->ldc;
        const float *mk = t->mask ? t->mask + i * t->ldm : NULL;
        _mm256_maskstore_ps(c, m0, epilogue(acc[i][0], c, t->bias, mk, m0, t));
        if (n > 8)
            _mm256_maskstore_ps(c + 8, m1,
                                epilogue(acc[i][1], c + 8, t->bias ? t->bias + 8 : NULL,
                                         mk ? mk + 8 : NULL, m1, t));
    }
}
