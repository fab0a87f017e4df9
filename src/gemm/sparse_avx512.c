/* Products with a mostly zero factor: the first layer's input (zero pixels: MNIST ~81%,
 * Fashion-MNIST ~50%) or its dZ (units that ReLU or dropout silenced: ~45-70%). Each
 * output element accumulates, in the dense kernels' order (ascending along the inner
 * dimension, FMA, from 0), only the terms whose sparse factor is not zero. Skipping
 * x = +-0 adds nothing the dense sum would not (fma(+-0, d, acc) == acc for finite d and
 * acc != -0, and a sum from +0 never reaches -0 unless a product underflows to -0), so
 * the result equals the dense product bitwise whenever the other factor is finite
 * (tested against the dense kernels). A NaN in x counts as nonzero.
 *
 * The dense micro-kernels share each load of one factor across 8 rows; here every
 * nonzero input costs its own row of loads (folded into the FMAs), so the work is
 * about density x dense + a little, which pays below a density that depends on the
 * width and the product (measured: engine.c, sparse_block). */
#include "gemm/sparse.h"

#include <immintrin.h>
#include <stdint.h>

enum { GROUP = 128 }; /* output columns per pass: 8 zmm accumulators */

static inline __mmask16 lanes(int left)
{
    return left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

void dpt_sparse_colmasks(const float *x, int lda, int B, int k0, int m, uint32_t *cols)
{
    const int nw = DPT_SPARSE_WORDS(B);
    for (int p = 0; p < m; p += 16) {
        const __mmask16 km = lanes(m - p);
        for (int c = 0; c < nw; c++) {
            uint16_t rowbits[32];
            for (int i = 0; i < 32; i++) {
                const int b = 32 * c + i;
                const float *xb = x + (size_t)b * lda + k0 + p;
                rowbits[i] = b < B ? (uint16_t)_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(km, xb),
                                                                  _mm512_setzero_ps(),
                                                                  _CMP_NEQ_UQ)
                                   : 0;
            }
            const __m512i v = _mm512_loadu_si512(rowbits);
            for (int t = 0; t < 16 && p + t < m; t++)
                cols[(size_t)(p + t) * nw + c] =
                    (uint32_t)_mm512_test_epi16_mask(v, _mm512_set1_epi16((short)(1u << t)));
        }
    }
}

/* One output row segment of NV vectors (the last masked by `last`): the sum over the
 * set bits of `bits` (nw words, bit t of word c is index 32c + t, ascending) of
 * x[index * xs] * f[index * lf + ...], added to what out holds if `more` (the sum of
 * the earlier indices: stored and reloaded exactly, so the FMA chain is the same as in
 * one pass) or else from 0. NV is a constant in every expansion, so acc stays in
 * registers. */
static inline __attribute__((always_inline)) void
segment(const int NV, const uint32_t *bits, int nw, const float *x, size_t xs, const float *f,
        size_t lf, __mmask16 last, int more, float *out)
{
    __m512 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++)
        acc[v] = more && v < NV ? _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, out + 16 * v)
                                : _mm512_setzero_ps();
    for (int c = 0; c < nw; c++)
        for (uint32_t m = bits[c]; m; m &= m - 1) {
            const size_t i = 32 * (size_t)c + (size_t)__builtin_ctz(m);
            const __m512 xv = _mm512_set1_ps(x[i * xs]);
            const float *fi = f + i * lf;
            /* one base register and constant offsets for the loads (else the compiler
             * keeps a base per vector, runs out of registers and spills) */
            __asm__("" : "+r"(fi));
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++)
                if (v < NV)
                    acc[v] = _mm512_fmadd_ps(
                        xv, _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, fi + 16 * v),
                        acc[v]);
        }
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++)
        if (v < NV)
            _mm512_mask_storeu_ps(out + 16 * v, v == NV - 1 ? last : 0xFFFF, acc[v]);
}

/* out[j] for j < n, in groups of up to GROUP columns. */
static inline __attribute__((always_inline)) void
row(const uint32_t *bits, int nw, const float *x, size_t xs, const float *f, size_t lf, int n,
    int more, float *out)
{
    for (int j0 = 0; j0 < n; j0 += GROUP) {
        const int w = n - j0 < GROUP ? n - j0 : GROUP, nv = (w + 15) / 16;
        const __mmask16 last = lanes(w - 16 * (nv - 1));
        switch (nv) {
        case 8: segment(8, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        case 7: segment(7, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        case 6: segment(6, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        case 5: segment(5, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        case 4: segment(4, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        case 3: segment(3, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        case 2: segment(2, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        default: segment(1, bits, nw, x, xs, f + j0, lf, last, more, out + j0); break;
        }
    }
}

/* The other factor's rows (n floats each) that a pass keeps in L1: every nonzero
 * reads a whole row of it, so a block whose rows would come from L2 (the forward
 * product's 96-112 weight rows of 128 outputs are 48-56 KiB) goes in chunks of rows,
 * each chunk over all the inputs, the sums carried over in the output. Measured on one
 * 32 x 112 block, 128 outputs: halves take 5.7 / 7.1 / 8.7 us at densities 0.5 / 0.65
 * / 0.8 against 6.3 / 9.2 / 12.8 us in one pass. */
enum { L1_ROWS_BYTES = 32 << 10 };
static int chunk_rows(int n, int align)
{
    int r = L1_ROWS_BYTES / (int)sizeof(float) / (n > 0 ? n : 1) / align * align;
    return r < align ? align : r;
}

void dpt_sparse_xtd(const float *x, int lda, int k0, int m, int B, const uint32_t *cols,
                    const float *d, int ldd, int n, float *g, int ldg)
{
    const int nw = DPT_SPARSE_WORDS(B), per = chunk_rows(n, 32);
    const int nch = (B + per - 1) / per, words = per / 32;
    for (int c = 0; c < nch; c++) { /* batch rows [c * per, ...): whole bit words */
        const int w0 = c * words, nwc = (w0 + words < nw ? w0 + words : nw) - w0;
        const size_t b0 = (size_t)32 * w0;
        for (int i = 0; i < m; i++)
            row(cols + (size_t)i * nw + w0, nwc, x + b0 * lda + k0 + i, (size_t)lda,
                d + b0 * ldd, (size_t)ldd, n, c > 0, g + (size_t)i * ldg);
    }
}

void dpt_sparse_xw(const float *x, int lda, int B, int w, const float *W, int ldw, int n,
                   float *z, int ldz)
{
    dpt_sparse_xw_more(x, lda, B, w, W, ldw, n, z, ldz, 0);
}

void dpt_sparse_xw_more(const float *x, int lda, int B, int w, const float *W, int ldw, int n,
                        float *z, int ldz, int more)
{
    enum { NW = (DPT_SPARSE_MAXW + 31) / 32 };
    /* chunks of about equal size, on 16-column boundaries */
    const int nch = (w + chunk_rows(n, 16) - 1) / chunk_rows(n, 16);
    for (int c = 0; c < nch; c++) {
        const int k0 = 16 * (int)((long)((w + 15) / 16) * c / nch),
                  k1 = c == nch - 1 ? w : 16 * (int)((long)((w + 15) / 16) * (c + 1) / nch);
        const int wc = k1 - k0, nw = (wc + 31) / 32;
        for (int b = 0; b < B; b++) {
            const float *xb = x + (size_t)b * lda + k0;
            uint32_t bits[NW] = { 0 };
            for (int p = 0; p < wc; p += 16) {
                __mmask16 nz = _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(lanes(wc - p), xb + p),
                                                  _mm512_setzero_ps(), _CMP_NEQ_UQ);
                bits[p / 32] |= (uint32_t)nz << (p % 32);
            }
            row(bits, nw, xb, 1, W + (size_t)k0 * ldw, (size_t)ldw, n, c > 0 || more,
                z + (size_t)b * ldz);
        }
    }
}

__attribute__((target("popcnt"))) size_t dpt_sparse_bits(const uint32_t *w, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (size_t)__builtin_popcount(w[i]);
    return c;
}

__attribute__((target("popcnt"))) size_t dpt_sparse_count(const float *x, int lda,
                                                           int rows, int cols)
{
    size_t nz = 0;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < cols; p += 16)
            nz += (size_t)__builtin_popcount(_mm512_cmp_ps_mask(
                _mm512_maskz_loadu_ps(lanes(cols - p), x + (size_t)r * lda + p),
                _mm512_setzero_ps(), _CMP_NEQ_UQ));
    return nz;
}

__attribute__((target("popcnt"))) size_t dpt_sparse_bytebits(const uint8_t *p, int n,
                                                             uint32_t *bits)
{
    size_t nz = 0;
    for (int i = 0; i < n; i += 32) {
        const __mmask32 k = n - i >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << (n - i)) - 1;
        const __m256i v = _mm256_maskz_loadu_epi8(k, p + i);
        bits[i / 32] = (uint32_t)_mm256_test_epi8_mask(v, v);
        nz += (size_t)__builtin_popcount(bits[i / 32]);
    }
    return nz;
}

/* One 128-bit shuffle stage of the 16 x 16 transpose (run twice). */
static inline __attribute__((always_inline)) void quarters(const __m512 *in, __m512 *out)
{
#pragma GCC unroll 16
    for (int k = 0; k < 4; k++) {
        out[k] = _mm512_shuffle_f32x4(in[k], in[k + 4], 0x88);
        out[k + 4] = _mm512_shuffle_f32x4(in[k + 8], in[k + 12], 0x88);
        out[k + 8] = _mm512_shuffle_f32x4(in[k], in[k + 4], 0xDD);
        out[k + 12] = _mm512_shuffle_f32x4(in[k + 8], in[k + 12], 0xDD);
    }
}

/* 16 x 16 tiles in registers (unpack 32-bit, unpack 64-bit, two 128-bit shuffles), the
 * edges masked: ~0.35 cycles per element where a scalar loop takes several. */
void dpt_sparse_transpose(const float *a, int lda, int rows, int cols, float *b, int ldb)
{
    for (int j0 = 0; j0 < rows; j0 += 16) {
        const int nr = rows - j0 < 16 ? rows - j0 : 16;
        const __mmask16 rm = lanes(nr);
        for (int i0 = 0; i0 < cols; i0 += 16) {
            const int nc = cols - i0 < 16 ? cols - i0 : 16;
            const __mmask16 cm = lanes(nc);
            __m512 r[16], t[16];
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) /* r[k]: row j0 + k, columns i0 .. */
                r[k] = k < nr ? _mm512_maskz_loadu_ps(cm, a + (size_t)(j0 + k) * lda + i0)
                              : _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int k = 0; k < 16; k += 2) {
                t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
                t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
            }
#pragma GCC unroll 16
            for (int k = 0; k < 16; k += 4) {
                const __m512d t0 = _mm512_castps_pd(t[k]), t1 = _mm512_castps_pd(t[k + 1]),
                              t2 = _mm512_castps_pd(t[k + 2]), t3 = _mm512_castps_pd(t[k + 3]);
                r[k] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
                r[k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
                r[k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
                r[k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
            }
            quarters(r, t);
            quarters(t, r);
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) /* r[k]: column i0 + k, rows j0 .. */
                if (k < nc)
                    _mm512_mask_storeu_ps(b + (size_t)(i0 + k) * ldb + j0, rm, r[k]);
        }
    }
}

/* ------------------------------------------------ narrow outputs: rows in fours -----
 * With at most 32 outputs a row's sum is one FMA chain per vector, and one nonzero at
 * a time leaves the FMA unit waiting on its 4-cycle latency (~5 cycles a nonzero, the
 * dense kernel's cost at 30% density). Here DPT_SPARSE_R rows go together over the
 * union of their nonzero indices: each row keeps its own chain, in ascending order as
 * before, and an index where a row's own factor is zero adds an exact zero term, as
 * the dense kernel does for it. Four rows keep the FMA unit busy; a last piece of at
 * most 4 or 8 outputs is an xmm or ymm (the 20-output layer: zmm + xmm, 1.5 FMA cycles
 * per row and index, as the dense kernel). */

/* One group of rows: o[r][j] = sum over set bits i of bits (nw words) of
 * x[r][i * xs] * f[i * lf + j], for r < 4, j < 16 * FULL + the last piece's lanes
 * (mask `last`). VT and friends are that piece's vector type. */
#define NARROW_GROUP(NAME, VT, MT, CAST, LOADZ, FMA, STOREM)                              \
    static inline __attribute__((always_inline)) void NAME(                              \
        const int FULL, const uint32_t *bits, int nw, const float *const *x, size_t xs,   \
        const float *f, size_t lf, MT last, float *const *o)                              \
    {                                                                                     \
        const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                       \
        VT t0 = CAST(a0), t1 = t0, t2 = t0, t3 = t0;                                      \
        for (int c = 0; c < nw; c++)                                                      \
            for (uint32_t m = bits[c]; m; m &= m - 1) {                                   \
                const size_t i = 32 * (size_t)c + (size_t)__builtin_ctz(m);               \
                const float *fi = f + i * lf;                                             \
                const __m512 s0 = _mm512_set1_ps(x0[i * xs]), s1 = _mm512_set1_ps(x1[i * xs]), \
                             s2 = _mm512_set1_ps(x2[i * xs]),                             \
                             s3 = _mm512_set1_ps(x3[i * xs]);                             \
                const VT wl = LOADZ(last, fi + 16 * FULL);                                \
                if (FULL) {                                                               \
                    const __m512 wf = _mm512_loadu_ps(fi);                                \
                    a0 = _mm512_fmadd_ps(s0, wf, a0);                                     \
                    a1 = _mm512_fmadd_ps(s1, wf, a1);                                     \
                    a2 = _mm512_fmadd_ps(s2, wf, a2);                                     \
                    a3 = _mm512_fmadd_ps(s3, wf, a3);                                     \
                }                                                                         \
                t0 = FMA(CAST(s0), wl, t0);                                               \
                t1 = FMA(CAST(s1), wl, t1);                                               \
                t2 = FMA(CAST(s2), wl, t2);                                               \
                t3 = FMA(CAST(s3), wl, t3);                                               \
            }                                                                             \
        if (FULL) {                                                                       \
            _mm512_storeu_ps(o[0], a0);                                                   \
            _mm512_storeu_ps(o[1], a1);                                                   \
            _mm512_storeu_ps(o[2], a2);                                                   \
            _mm512_storeu_ps(o[3], a3);                                                   \
        }                                                                                 \
        STOREM(o[0] + 16 * FULL, last, t0);                                               \
        STOREM(o[1] + 16 * FULL, last, t1);                                               \
        STOREM(o[2] + 16 * FULL, last, t2);                                               \
        STOREM(o[3] + 16 * FULL, last, t3);                                               \
    }
#define ID(v) (v)
NARROW_GROUP(group_x, __m128, __mmask8, _mm512_castps512_ps128, _mm_maskz_loadu_ps,
             _mm_fmadd_ps, _mm_mask_storeu_ps)
NARROW_GROUP(group_y, __m256, __mmask8, _mm512_castps512_ps256, _mm256_maskz_loadu_ps,
             _mm256_fmadd_ps, _mm256_mask_storeu_ps)
NARROW_GROUP(group_z, __m512, __mmask16, ID, _mm512_maskz_loadu_ps, _mm512_fmadd_ps,
             _mm512_mask_storeu_ps)
#undef ID
#undef NARROW_GROUP

/* Two groups together (8 rows over the union of their indices), 17 to 20 outputs (the
 * 20-output layer). One row's chain gains an FMA every 4 cycles at best (the FMA's
 * latency), so four rows leave the FMA unit half idle; eight rows with their last
 * pieces (at most 4 lanes each) packed four to a zmm (row r in lanes 4(r % 4) ..) take
 * 10 FMAs an index, 5 cycles at best (~6.7 measured with the blends) against 8 for two
 * groups of 4. The packed
 * multiplier is blended from the rows' broadcasts and the piece of f is its 128 bits
 * repeated. Every lane's chain is the same FMAs in the same order as group_x's; an
 * index in only one group's union adds exact zeros to the other group's rows. */
static inline __attribute__((always_inline)) __m512 quad(__m512 s0, __m512 s1, __m512 s2,
                                                         __m512 s3)
{
    return _mm512_mask_blend_ps(
        0xF000, _mm512_mask_blend_ps(0x0F00, _mm512_mask_blend_ps(0x00F0, s0, s1), s2), s3);
}

static void group8_p(const uint32_t *bits0, const uint32_t *bits1, int nw,
                     const float *const *x, size_t xs, const float *f, size_t lf,
                     __mmask8 last, float *const *o)
{
    __m512 a[8], t0 = _mm512_setzero_ps(), t1 = t0;
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        a[r] = t0;
    for (int c = 0; c < nw; c++)
        for (uint32_t m = bits0[c] | bits1[c]; m; m &= m - 1) {
            const size_t i = 32 * (size_t)c + (size_t)__builtin_ctz(m);
            const float *fi = f + i * lf;
            const __m512 wf = _mm512_loadu_ps(fi);
            const __m512 wl = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(last, fi + 16));
            __m512 s[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                s[r] = _mm512_set1_ps(x[r][i * xs]);
                a[r] = _mm512_fmadd_ps(s[r], wf, a[r]);
            }
            t0 = _mm512_fmadd_ps(quad(s[0], s[1], s[2], s[3]), wl, t0);
            t1 = _mm512_fmadd_ps(quad(s[4], s[5], s[6], s[7]), wl, t1);
        }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        _mm512_storeu_ps(o[r], a[r]);
        _mm512_mask_storeu_ps(o[r] + 16 - 4 * (r % 4), (__mmask16)((unsigned)last << (4 * (r % 4))),
                              r < 4 ? t0 : t1);
    }
}

/* A group of 4 rows, n <= 32 outputs: the right expansion for n. */
static void narrow_group(const uint32_t *bits, int nw, const float *const *x, size_t xs,
                         const float *f, size_t lf, int n, float *const *o)
{
    const int full = n > 16, tail = n - 16 * full;
    if (tail <= 4) {
        const __mmask8 k = (__mmask8)((1u << tail) - 1);
        if (full)
            group_x(1, bits, nw, x, xs, f, lf, k, o);
        else
            group_x(0, bits, nw, x, xs, f, lf, k, o);
    } else if (tail <= 8) {
        const __mmask8 k = (__mmask8)((1u << tail) - 1);
        if (full)
            group_y(1, bits, nw, x, xs, f, lf, k, o);
        else
            group_y(0, bits, nw, x, xs, f, lf, k, o);
    } else {
        if (full)
            group_z(1, bits, nw, x, xs, f, lf, lanes(tail), o);
        else
            group_z(0, bits, nw, x, xs, f, lf, lanes(tail), o);
    }
}

void dpt_sparse_groupcols(const uint32_t *cfold, int B, int groups, uint32_t *u)
{
    const int nw = DPT_SPARSE_WORDS(B);
    for (int c = 0; c < nw; c++) {
        const int left = B - 32 * c;
        const __m512i lo = _mm512_maskz_loadu_epi32(lanes(left), cfold + 32 * c);
        const __m512i hi = _mm512_maskz_loadu_epi32(lanes(left - 16), cfold + 32 * c + 16);
        for (int q = 0; q < groups; q++) {
            const __m512i bit = _mm512_set1_epi32((int)(1u << q));
            u[(size_t)q * nw + c] = (uint32_t)_mm512_test_epi32_mask(lo, bit) |
                                    (uint32_t)_mm512_test_epi32_mask(hi, bit) << 16;
        }
    }
}

/* Whether group g of `groups` goes together with group g + 1 (group8_p): 17 to 20
 * outputs and a next group. */
static int paired(int n, int g, int groups) { return n > 16 && n <= 20 && g + 1 < groups; }

/* Group g's rows (bits u + g * nw), with group g + 1's when two (x and o then hold 8). */
static void run_groups(const uint32_t *u, int g, int two, int nw, const float *const *x,
                       size_t xs, const float *f, size_t lf, int n, float *const *o)
{
    if (two)
        group8_p(u + (size_t)g * nw, u + (size_t)(g + 1) * nw, nw, x, xs, f, lf,
                 (__mmask8)((1u << (n - 16)) - 1), o);
    else
        narrow_group(u + (size_t)g * nw, nw, x, xs, f, lf, n, o);
}

void dpt_sparse_xw_narrow(const float *x, int lda, int B, int w, const uint16_t *rows,
                          const uint32_t *u, const float *W, int ldw, int n, float *z, int ldz)
{
    const int nw = DPT_SPARSE_WORDS(w), groups = B / DPT_SPARSE_R;
    for (int g = 0; g < groups;) {
        const int two = paired(n, g, groups);
        const float *xr[2 * DPT_SPARSE_R];
        float *o[2 * DPT_SPARSE_R];
        for (int r = 0; r < (1 + two) * DPT_SPARSE_R; r++) {
            const int b = rows[DPT_SPARSE_R * g + r];
            xr[r] = x + (size_t)b * lda;
            o[r] = z + (size_t)b * ldz;
        }
        run_groups(u, g, two, nw, xr, 1, W, (size_t)ldw, n, o);
        g += 1 + two;
    }
    for (int i = groups * DPT_SPARSE_R; i < B; i++) /* the last rows, one at a time */
        dpt_sparse_xw(x + (size_t)rows[i] * lda, lda, 1, w, W, ldw, n, z + (size_t)rows[i] * ldz,
                      ldz);
}

void dpt_sparse_xtd_narrow(const float *x, int lda, int k0, int m, int B, const uint32_t *u,
                           const uint32_t *tail, const float *d, int ldd, int n, float *g,
                           int ldg)
{
    const int nw = DPT_SPARSE_WORDS(B), groups = m / DPT_SPARSE_R,
              full = groups * DPT_SPARSE_R;
    for (int q = 0; q < groups;) {
        const int two = paired(n, q, groups);
        const float *xr[2 * DPT_SPARSE_R];
        float *o[2 * DPT_SPARSE_R];
        for (int r = 0; r < (1 + two) * DPT_SPARSE_R; r++) {
            xr[r] = x + k0 + DPT_SPARSE_R * q + r;
            o[r] = g + (size_t)(DPT_SPARSE_R * q + r) * ldg;
        }
        run_groups(u, q, two, nw, xr, (size_t)lda, d, (size_t)ldd, n, o);
        q += 1 + two;
    }
    if (full < m)
        dpt_sparse_xtd(x, lda, k0 + full, m - full, B, tail, d, ldd, n, g + (size_t)full * ldg,
                       ldg);
}
