/* Elementwise pieces shared by training and inference. */
#include "nn/layers.h"
#include "util/clones.h"
#include "util/rng.h"

#include <math.h>

DPT_CLONES static void bytes_to_unit(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i] * (1.0f / 255.0f);
}

void dpt_load_input(const dpt_dataset *ds, const uint32_t *idx, int r0, int r1, float *x)
{
    const size_t d = ds->dim;
    for (int r = r0; r < r1; r++)
        bytes_to_unit(x + (size_t)r * d, ds->images + (size_t)idx[r] * d, d);
}

void dpt_load_input_cols(const dpt_dataset *ds, const uint32_t *idx, int B, int k0, int k1,
                         float *x)
{
    const size_t d = ds->dim, w = (size_t)(k1 - k0);
    for (int r = 0; r < B; r++)
        bytes_to_unit(x + (size_t)r * w, ds->images + (size_t)idx[r] * d + k0, w);
}

DPT_CLONES static void sum_row(float *restrict z, const float *restrict part,
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

void dpt_sum_partials(float *z, const float *part, size_t pstride, int nb, int r0, int r1,
                      int n, const float *bias, int relu)
{
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

/* Softmax + cross-entropy for rows [r0, r1): probabilities into p, d cost / d logits
 * = (p - onehot) / B into dz (if not NULL), per-row loss (log-sum-exp in double) and
 * whether the argmax is the label. */
void dpt_softmax_xent(const float *z, float *p, float *dz, int r0, int r1, int C,
                         const uint8_t *labels, const uint32_t *idx, int B, double *loss,
                         unsigned char *hit)
{
    for (int r = r0; r < r1; r++) {
        const float *zr = z + (size_t)r * C;
        float *pr = p + (size_t)r * C;
        int y = labels[idx[r]], arg = 0;
        float m = zr[0];
        for (int j = 1; j < C; j++)
            if (zr[j] > m)
                m = zr[j], arg = j;
        /* e_j = exp(z_j - max) once; the sum in double, so the loss is exact enough */
        double s = 0;
        for (int j = 0; j < C; j++) {
            double ej = exp((double)zr[j] - m);
            pr[j] = (float)ej;
            s += ej;
        }
        loss[r] = m + log(s) - zr[y];
        hit[r] = arg == y;
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

