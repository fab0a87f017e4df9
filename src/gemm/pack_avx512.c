/* AVX-512 packing of a transposed B (the backward pass's W^T): op(B)(k, j) =
 * b[j*ldb + k] into NR = 32 column panels (for each k, the 32 values of columns j0..j0+31,
 * zero beyond nc), with one gather per 16 values instead of 16 scalar moves. Packing
 * copies values, so it cannot change a result. */
#include "gemm/gemm.h"

#include <immintrin.h>

enum { NR = 32 };

void dpt_pack_bt_avx512(const float *b, ptrdiff_t ldb, int kc, int nc, float *bp)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)ldb));
    for (int p = 0; p < nc; p += NR) {
        int n = nc - p < NR ? nc - p : NR;
        __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
        __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
        const float *s0 = b + (ptrdiff_t)p * ldb, *s1 = s0 + 16 * ldb;
        for (int k = 0; k < kc; k++) {
            __m512 v0 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, idx, s0 + k, 4);
            __m512 v1 = m1 ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, idx, s1 + k, 4)
                           : _mm512_setzero_ps();
            _mm512_storeu_ps(bp + (size_t)k * NR, v0);
            _mm512_storeu_ps(bp + (size_t)k * NR + 16, v1);
        }
        bp += (size_t)NR * kc;
    }
}
