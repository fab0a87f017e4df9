/* AVX-512 "tall" micro-kernel: MR = 16 rows in one zmm (vectorised along M) x NR = n
 * columns (1..16, one accumulator each), for narrow outputs (N = 10, 20: the wide
 * kernel would leave most of its 32 lanes idle) and for small-M problems with B
 * transposed (it broadcasts B in place, so B needs no packing).
 *
 * A(i, k) = a[i + k*csa] (rows contiguous: a packed panel or A^T in place, rsa = 1);
 * B(k, j) = b[k*rsb + j*csb] (any strides). Each C element still gets
 * acc = fma(A(i,k), B(k,j), acc) for k ascending, and the epilogue runs in scalar code
 * with the same operations as the vector kernels (alpha*acc, fma with beta*C, + bias,
 * relu, mask), so results are bitwise those of the wide AVX2/AVX-512 kernels. */
#include "gemm/gemm.h"

#include <immintrin.h>
#include <math.h>

enum { MR = 16, NRMAX = 16 };

static inline __attribute__((always_inline)) void body(const dpt_tile *t, const int nr,
                                                       float (*tile)[MR])
{
    __m512 acc[NRMAX];
    const __mmask16 rows = t->m >= MR ? 0xFFFF : (__mmask16)((1u << t->m) - 1);
    const float *a = t->a, *b = t->b;
    const ptrdiff_t csa = t->csa, rsb = t->rsb, csb = t->csb;
#pragma GCC unroll 16
    for (int j = 0; j < nr; j++)
        acc[j] = _mm512_setzero_ps();
    for (int k = 0; k < t->kc; k++, a += csa, b += rsb) {
        __m512 av = _mm512_maskz_loadu_ps(rows, a);
#pragma GCC unroll 16
        for (int j = 0; j < nr; j++)
            acc[j] = _mm512_fmadd_ps(av, _mm512_set1_ps(b[j * csb]), acc[j]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < nr; j++)
        _mm512_storeu_ps(tile[j], acc[j]);
}

/* At most 8 rows: the same in ymm registers (half the cost per FMA on Zen 4). */
static inline __attribute__((always_inline)) void body8(const dpt_tile *t, const int nr,
                                                        float (*tile)[MR])
{
    __m256 acc[NRMAX];
    const __mmask8 rows = t->m >= 8 ? 0xFF : (__mmask8)((1u << t->m) - 1);
    const float *a = t->a, *b = t->b;
    const ptrdiff_t csa = t->csa, rsb = t->rsb, csb = t->csb;
#pragma GCC unroll 16
    for (int j = 0; j < nr; j++)
        acc[j] = _mm256_setzero_ps();
    for (int k = 0; k < t->kc; k++, a += csa, b += rsb) {
        __m256 av = _mm256_maskz_loadu_ps(rows, a);
#pragma GCC unroll 16
        for (int j = 0; j < nr; j++)
            acc[j] = _mm256_fmadd_ps(av, _mm256_set1_ps(b[j * csb]), acc[j]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < nr; j++)
        _mm256_storeu_ps(tile[j], acc[j]);
}

void dpt_ukernel_avx512_tall(const dpt_tile *t)
{
    float tile[NRMAX][MR];
    /* one specialised loop per width and height, accumulators in registers */
#define WIDTHS(B)                   \
    switch (t->n) {                 \
    case 1: B(t, 1, tile); break;   \
    case 2: B(t, 2, tile); break;   \
    case 3: B(t, 3, tile); break;   \
    case 4: B(t, 4, tile); break;   \
    case 5: B(t, 5, tile); break;   \
    case 6: B(t, 6, tile); break;   \
    case 7: B(t, 7, tile); break;   \
    case 8: B(t, 8, tile); break;   \
    case 9: B(t, 9, tile); break;   \
    case 10: B(t, 10, tile); break; \
    case 11: B(t, 11, tile); break; \
    case 12: B(t, 12, tile); break; \
    case 13: B(t, 13, tile); break; \
    case 14: B(t, 14, tile); break; \
    case 15: B(t, 15, tile); break; \
    default: B(t, 16, tile); break; \
    }
    if (t->m <= 8)
        WIDTHS(body8)
    else
        WIDTHS(body)
#undef WIDTHS
    if (t->alpha == 1.0f && t->beta == 0.0f && !t->bias && !t->relu && !t->mask) {
        /* the common case (a gradient): a transposed store, same values as below */
        for (int i = 0; i < t->m; i++) {
            float *c = t->c + i * t->ldc;
            for (int j = 0; j < t->n; j++)
                c[j] = tile[j][i];
        }
        return;
    }
    for (int i = 0; i < t->m; i++) {
        float *c = t->c + i * t->ldc;
        const float *mk = t->mask ? t->mask + i * t->ldm : NULL;
        for (int j = 0; j < t->n; j++) {
            float r = t->alpha * tile[j][i];
            if (t->beta != 0.0f)
                r = fmaf(t->beta, c[j], r);
            if (t->bias)
                r = r + t->bias[j];
            if (t->relu && !(r > 0.0f))
                r = 0.0f;
            if (mk && !(mk[j] > 0.0f))
                r = 0.0f;
            c[j] = r;
        }
    }
}
