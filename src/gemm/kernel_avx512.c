/* AVX-512 micro-kernel: MR = 8 rows x NR = 32 columns (16 zmm accumulators), FMA.
 * It takes any number of rows as consecutive MR-row strips (see gemm.h, sa).
 * Edge columns use masked loads and stores; edge rows are simply not stored, and rows
 * beyond m read row 0 of A so nothing out of bounds is touched. Every row runs the
 * same instruction sequence, which is what makes results row-invariant. */
#include "gemm/gemm.h"

#include <immintrin.h>

enum { MR = 8, NR = 32 };

static inline __m512 epilogue(__m512 acc, const float *c, const float *bias,
                              const float *mask, __mmask16 lanes, const dpt_tile *t)
{
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(t->alpha), acc);
    if (t->beta != 0.0f)
        r = _mm512_fmadd_ps(_mm512_set1_ps(t->beta), _mm512_maskz_loadu_ps(lanes, c), r);
    if (bias)
        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(lanes, bias));
    if (t->relu)
        r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_GT_OQ), r);
    if (mask) {
        __m512 mk = _mm512_maskz_loadu_ps(lanes, mask);
        r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mk, _mm512_setzero_ps(), _CMP_GT_OQ), r);
    }
    return r;
}

/* One MR-row strip: rows [0, m) of A at ast, of C at cst, of the mask at mkst. */
static inline __attribute__((always_inline)) void strip(const dpt_tile *t, const float *ast,
                                                        float *cst, const float *mkst, int m)
{
    const int n = t->n;
    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    const float *arow[MR];
    for (int i = 0; i < MR; i++)
        arow[i] = ast + (i < m ? i : 0) * t->rsa;

    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();

    const float *b = t->b;
    const ptrdiff_t csa = t->csa, rsb = t->rsb;
    if (m0 == 0xFFFF && m1 == 0xFFFF) {
        for (int k = 0; k < t->kc; k++, b += rsb) {
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                __m512 a = _mm512_set1_ps(arow[i][k * csa]);
                acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    } else {
        for (int k = 0; k < t->kc; k++, b += rsb) {
            __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                __m512 a = _mm512_set1_ps(arow[i][k * csa]);
                acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    }

    if (t->alpha == 1.0f && t->beta == 0.0f && !t->bias && !t->relu && !t->mask) {
        /* the common case (a product or a gradient): acc is the result, as below */
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            if (i >= m)
                break;
            float *c = cst + i * t->ldc;
            _mm512_mask_storeu_ps(c, m0, acc[i][0]);
            if (m1)
                _mm512_mask_storeu_ps(c + 16, m1, acc[i][1]);
        }
        return;
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= m)
            break;
        float *c = cst + i * t->ldc;
        const float *mk = mkst ? mkst + i * t->ldm : NULL;
        _mm512_mask_storeu_ps(c, m0, epilogue(acc[i][0], c, t->bias, mk, m0, t));
        if (m1)
            _mm512_mask_storeu_ps(c + 16, m1,
                                  epilogue(acc[i][1], c + 16, t->bias ? t->bias + 16 : NULL,
                                           mk ? mk + 16 : NULL, m1, t));
    }
}

/* The kernel loops over MR-row strips itself (t->m may exceed MR; strips of A are
 * t->sa floats apart), saving a call and its set-up per strip. */
void dpt_ukernel_avx512(const dpt_tile *t)
{
    for (int i0 = 0; i0 < t->m; i0 += MR)
        strip(t, t->a + (i0 / MR) * t->sa, t->c + i0 * t->ldc,
              t->mask ? t->mask + i0 * t->ldm : NULL, t->m - i0 < MR ? t->m - i0 : MR);
}
