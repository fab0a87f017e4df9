/* Elementwise pieces shared by training and inference. */
#include "nn/layers.h"

#include <math.h>

void dpt_load_input(const dpt_dataset *ds, const uint32_t *idx, int r0, int r1, float *x)
{
    const size_t d = ds->dim;
    for (int r = r0; r < r1; r++) {
        const uint8_t *src = ds->images + (size_t)idx[r] * d;
        float *dst = x + (size_t)r * d;
        for (size_t i = 0; i < d; i++)
            dst[i] = (float)src[i] * (1.0f / 255.0f);
    }
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
        double s = 0;
        for (int j = 0; j < C; j++)
            s += exp((double)zr[j] - m);
        double lse = m + log(s);
        loss[r] = lse - zr[y];
        hit[r] = arg == y;
        for (int j = 0; j < C; j++)
            pr[j] = (float)exp((double)zr[j] - lse);
        if (dz) {
            float inv = 1.0f / (float)B;
            for (int j = 0; j < C; j++)
                dz[(size_t)r * C + j] = (pr[j] - (j == y ? 1.0f : 0.0f)) * inv;
        }
    }
}

