/* Elementwise pieces shared by training and inference. */
#include "nn/layers.h"
#include "util/clones.h"
#include "util/rng.h"

#include <math.h>
#ifdef __x86_64__
#include <immintrin.h>
#endif
#include <string.h>

/* dst = src / 255; returns how many of src are not zero. */
DPT_CLONES static size_t bytes_to_unit_c(float *restrict dst, const uint8_t *restrict src,
                                         size_t n)
{
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) {
        dst[i] = (float)src[i] * (1.0f / 255.0f);
        nz += src[i] != 0;
    }
    return nz;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* AVX-512 in 16-pixel pieces with a masked last piece: K-block rows are 96 or 112
 * pixels wide, and the compiler's loop (64 wide) spent most of its time in its 32- and
 * 48-pixel tails. The same value as the C loop: an exact conversion, one rounding. */
static inline __attribute__((target("avx512f,avx512bw,avx512vl,popcnt"), always_inline)) size_t
convert_avx512(float *restrict dst, const uint8_t *restrict src, size_t n, const int count)
{
    const __m512 s = _mm512_set1_ps(1.0f / 255.0f);
    size_t i = 0, nz = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i));
        if (count)
            nz += (size_t)__builtin_popcount(_mm_test_epi8_mask(b, b));
        __m512i v = _mm512_cvtepu8_epi32(b);
        _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_cvtepi32_ps(v), s));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m128i b = _mm_maskz_loadu_epi8(m, src + i);
        if (count)
            nz += (size_t)__builtin_popcount(_mm_test_epi8_mask(b, b));
        __m512i v = _mm512_cvtepu8_epi32(b);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(v), s));
    }
    return nz;
}
__attribute__((target("avx512f,avx512bw,avx512vl,popcnt"))) static size_t
bytes_to_unit_avx512(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    return convert_avx512(dst, src, n, 1);
}
/* The conversion alone (the caller counts). */
__attribute__((target("avx512f,avx512bw,avx512vl,popcnt"))) static void
to_unit_avx512(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    convert_avx512(dst, src, n, 0);
}

/* The AVX-512 routine if the CPU has it (checked once per call of the loaders below,
 * not per row; libgcc fills the CPU model before main, so there is no shared state). */
#define PICK(avx512, portable)                                                         \
    (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&          \
             __builtin_cpu_supports("avx512vl")                                         \
         ? avx512                                                                      \
         : portable)
#else
#define PICK(avx512, portable) (portable)
#endif

typedef size_t (*convert_fn)(float *restrict, const uint8_t *restrict, size_t);

size_t dpt_load_input(const dpt_dataset *ds, const uint32_t *idx, int r0, int r1, float *x)
{
    const size_t d = ds->dim;
    const convert_fn conv = PICK(bytes_to_unit_avx512, bytes_to_unit_c);
    size_t nz = 0;
    for (int r = r0; r < r1; r++)
        nz += conv(x + (size_t)r * d, ds->images + (size_t)idx[r] * d, d);
    return nz;
}

/* The rows of a block by their count of nonzero pixels in steps of 8 (a counting sort:
 * stable, so the order depends on the data only), then in fours: u and urows (see
 * dpt_union), from each row's pixel bits (two 64-bit words a row in un->bits). Rows
 * with about as many nonzero pixels tend to have them in the same places: on
 * Fashion-MNIST a four's union is ~0.65 of a block's pixels against ~0.79 in batch
 * order. */
enum { KEYS = 128 / 8 + 1 };
static inline __attribute__((always_inline)) int row_key(const uint64_t *bits, int r)
{
    return (__builtin_popcountll(bits[2 * r]) + __builtin_popcountll(bits[2 * r + 1])) >> 3;
}
static inline __attribute__((always_inline)) void group_rows(dpt_union *un, int B, int nw)
{
    int at[KEYS + 1] = { 0 };
    const uint64_t *bits = un->bits;
    for (int r = 0; r < B; r++)
        at[row_key(bits, r) + 1]++;
    for (int c = 1; c < KEYS; c++)
        at[c] += at[c - 1];
    for (int r = 0; r < B; r++)
        un->rows[at[row_key(bits, r)]++] = (uint16_t)r;
    for (int g = 0; g < B / DPT_UNION_R; g++) {
        uint64_t lo = 0, hi = 0;
        for (int i = 0; i < DPT_UNION_R; i++) {
            const int r = un->rows[DPT_UNION_R * g + i];
            lo |= bits[2 * r], hi |= bits[2 * r + 1];
        }
        const uint32_t words[4] = { (uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)hi,
                                    (uint32_t)(hi >> 32) };
        uint32_t *u = un->u + (size_t)g * nw;
        for (int c = 0; c < nw; c++)
            u[c] = words[c];
        un->urows += (size_t)(__builtin_popcountll(lo) + __builtin_popcountll(hi));
    }
}

static size_t load_cols_c(const dpt_dataset *ds, const uint32_t *idx, int B, int k0, int k1,
                          float *x, dpt_union *un)
{
    const size_t d = ds->dim, w = (size_t)(k1 - k0);
    size_t nz = 0;
    for (int r = 0; r < B; r++) {
        const uint8_t *src = ds->images + (size_t)idx[r] * d + k0;
        nz += bytes_to_unit_c(x + (size_t)r * w, src, w);
        if (!un)
            continue;
        uint64_t bits[2] = { 0, 0 };
        uint32_t fold = 0;
        for (size_t k = 0; k < w; k++)
            if (src[k]) {
                bits[k / 64] |= (uint64_t)1 << (k % 64);
                fold |= 1u << (k / DPT_UNION_R);
            }
        un->bits[2 * r] = bits[0], un->bits[2 * r + 1] = bits[1];
        un->cfold[r] = fold;
        un->ucols += (size_t)__builtin_popcount(fold);
    }
    if (un)
        group_rows(un, B, (int)(w + 31) / 32);
    return nz;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same, the pattern from two 64-pixel pieces a row: a byte test gives the row's
 * bits, a 32-bit lane test its groups of 4 pixels. */
__attribute__((target("avx512f,avx512bw,avx512vl,popcnt"))) static size_t
load_cols_avx512(const dpt_dataset *ds, const uint32_t *idx, int B, int k0, int k1, float *x,
                 dpt_union *un)
{
    const size_t d = ds->dim, w = (size_t)(k1 - k0);
    size_t nz = 0;
    if (!un) {
        for (int r = 0; r < B; r++)
            nz += bytes_to_unit_avx512(x + (size_t)r * w,
                                       ds->images + (size_t)idx[r] * d + k0, w);
        return nz;
    }
    const __mmask64 klo = w >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << w) - 1;
    const __mmask64 khi = w <= 64    ? 0
                          : w >= 128 ? ~(__mmask64)0
                                     : ((__mmask64)1 << (w - 64)) - 1;
    for (int r = 0; r < B; r++) {
        const uint8_t *src = ds->images + (size_t)idx[r] * d + k0;
        const __m512i lo = _mm512_maskz_loadu_epi8(klo, src);
        const __m512i hi = _mm512_maskz_loadu_epi8(khi, src + 64);
        const uint64_t blo = _mm512_test_epi8_mask(lo, lo), bhi = _mm512_test_epi8_mask(hi, hi);
        nz += (size_t)(__builtin_popcountll(blo) + __builtin_popcountll(bhi));
        const uint32_t fold = (uint32_t)_mm512_test_epi32_mask(lo, lo) |
                              (uint32_t)_mm512_test_epi32_mask(hi, hi) << 16;
        un->bits[2 * r] = blo, un->bits[2 * r + 1] = bhi;
        un->cfold[r] = fold;
        un->ucols += (size_t)__builtin_popcount(fold);
        to_unit_avx512(x + (size_t)r * w, src, w);
    }
    group_rows(un, B, (int)(w + 31) / 32);
    return nz;
}
#endif

size_t dpt_load_input_cols(const dpt_dataset *ds, const uint32_t *idx, int B, int k0,
                           int k1, float *x, dpt_union *un)
{
    if (un)
        un->urows = un->ucols = 0;
    return PICK(load_cols_avx512, load_cols_c)(ds, idx, B, k0, k1, x, un);
}

DPT_CLONES static void sum_row_c(float *restrict z, const float *restrict part,
                                 size_t pstride, int nb, int n, const float *restrict bias,
                                 int relu)
{
    for (int j = 0; j < n; j++)
        z[j] = part[j];
    for (int b = 1; b < nb; b++)
        for (int j = 0; j < n; j++)
            z[j] = z[j] + part[b * pstride + j];
    for (int j = 0; j < n; j++) {
        float v = z[j] + bias[j];
        z[j] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same sums, 16 columns at a time kept in a register over all partials (one store
 * per column instead of nb), the last piece masked (the small network's 20 units). */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
sum_row_avx512(float *restrict z, const float *restrict part, size_t pstride, int nb, int n,
               const float *restrict bias, int relu)
{
    for (int j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512 acc = _mm512_maskz_loadu_ps(m, part + j);
        for (int b = 1; b < nb; b++)
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, part + b * pstride + j));
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, bias + j));
        if (relu) /* !(v > 0) -> 0, NaN included, as the C loop */
            acc = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(acc, _mm512_setzero_ps(), _CMP_GT_OQ),
                                      acc);
        _mm512_mask_storeu_ps(z + j, m, acc);
    }
}
#endif

typedef void (*sum_row_fn)(float *restrict, const float *restrict, size_t, int, int,
                           const float *restrict, int);

void dpt_sum_partials(float *z, const float *part, size_t pstride, int nb, int r0, int r1,
                      int n, const float *bias, int relu)
{
    const sum_row_fn sum_row = PICK(sum_row_avx512, sum_row_c);
    for (int r = r0; r < r1; r++)
        sum_row(z + (size_t)r * n, part + (size_t)r * n, pstride, nb, n, bias, relu);
}

DPT_CLONES static void mask_row(float *restrict m, int out, uint64_t key, uint32_t cut,
                                float keep)
{
    int j = 0;
    for (; j + 1 < out; j += 2) {
        uint64_t bits = dpt_mix64(key + (uint64_t)j * 0xD1B54A32D192ED03ull);
        m[j] = (uint32_t)bits >= cut ? keep : 0.0f;
        m[j + 1] = (uint32_t)(bits >> 32) >= cut ? keep : 0.0f;
    }
    if (j < out)
        m[j] = (uint32_t)dpt_mix64(key + (uint64_t)j * 0xD1B54A32D192ED03ull) >= cut ? keep
                                                                                     : 0.0f;
}

void dpt_dropout_mask(float *mask, int r0, int r1, int out, float p, uint64_t seed,
                      int layer, uint64_t step)
{
    const uint32_t cut = (uint32_t)((double)p * 4294967296.0);
    const float keep = 1.0f / (1.0f - p);
    for (int r = r0; r < r1; r++) {
        uint64_t key = dpt_rand64(seed + (uint64_t)layer * 0x632BE59BD9B4E019ull,
                                  DPT_STREAM_DROPOUT, step * DPT_MAX_BATCH + (uint64_t)r);
        mask_row(mask + (size_t)r * out, out, key, cut, keep);
    }
}

DPT_CLONES void dpt_col_sums(const float *restrict a, int rows, int n, double *restrict acc)
{
    for (int j = 0; j < n; j++)
        acc[j] = 0;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++)
            acc[j] += a[(size_t)r * n + j];
}

DPT_CLONES void dpt_ew_mul(float *y, const float *x, const float *restrict s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * s[i];
}

DPT_CLONES void dpt_ew_relu_grad(float *restrict g, const float *restrict a,
                                 const float *restrict s, size_t n)
{
    if (s)
        for (size_t i = 0; i < n; i++)
            g[i] = a[i] > 0.0f ? g[i] * s[i] : 0.0f;
    else
        for (size_t i = 0; i < n; i++)
            g[i] = a[i] > 0.0f ? g[i] : 0.0f;
}

/* x = exp(x) for x <= 0 (x - max of a row), n of them: Cody-Waite reduction
 * x = k ln2 + r, |r| <= ln2/2, a degree-7 Taylor polynomial for e^r (relative error
 * below 2e-7) and 2^k from the exponent bits; exp(x) underflows to 0 below -87. Plain
 * float operations in a fixed order (no contraction), so every clone gives the same
 * bits; vectorised, unlike a libm call per element. */
DPT_CLONES static void exp_nonpos(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float xi = x[i] < -87.0f ? -87.0f : x[i];
        float t = xi * 1.44269504f + 12582912.0f; /* round(x / ln2) by the 1.5*2^23 trick */
        float k = t - 12582912.0f;
        float r = xi - k * 0.693359375f;          /* ln2 = 0.693359375 - 2.12194440e-4 */
        r = r + k * 2.12194440e-4f;
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        x[i] = x[i] < -87.0f ? 0.0f : p * scale;
    }
}

/* Softmax + cross-entropy for rows [r0, r1): probabilities into p, d cost / d logits
 * = (p - onehot) / B into dz (if not NULL), per-row loss (log-sum-exp in double) and
 * whether the argmax is the label. */
void dpt_softmax_xent(const float *z, float *p, float *dz, int r0, int r1, int C,
                      const uint8_t *labels, const uint32_t *idx, int B, double *loss,
                      unsigned char *hit)
{
    if (r1 <= r0)
        return;
    /* shifted logits z - max of each row into p, then one vectorised exp over them */
    for (int r = r0; r < r1; r++) {
        const float *zr = z + (size_t)r * C;
        float *pr = p + (size_t)r * C;
        int y = labels[idx[r]], arg = 0;
        float m = zr[0];
        for (int j = 1; j < C; j++)
            if (zr[j] > m)
                m = zr[j], arg = j;
        for (int j = 0; j < C; j++)
            pr[j] = zr[j] - m;
        hit[r] = arg == y;
        loss[r] = m; /* completed below */
    }
    float *pp = p + (size_t)r0 * C;
    exp_nonpos(pp, (size_t)(r1 - r0) * C);
    for (int r = r0; r < r1; r++) {
        const float *zr = z + (size_t)r * C;
        float *pr = p + (size_t)r * C;
        int y = labels[idx[r]];
        double s = 0; /* the sum and the log in double */
        for (int j = 0; j < C; j++)
            s += pr[j];
        loss[r] = loss[r] + log(s) - zr[y]; /* max + log sum exp(z_j - max) - z_y */
        double rs = 1.0 / s;
        for (int j = 0; j < C; j++)
            pr[j] = (float)(pr[j] * rs);
        if (dz) {
            float inv = 1.0f / (float)B;
            for (int j = 0; j < C; j++)
                dz[(size_t)r * C + j] = (pr[j] - (j == y ? 1.0f : 0.0f)) * inv;
        }
    }
}

