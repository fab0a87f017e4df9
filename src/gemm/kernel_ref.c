/* Portable reference micro-kernel: MR = 4, NR = 8, plain C (no FMA contraction at
 * -std=c11). The twin every SIMD kernel is tested against. */
#include "gemm/gemm.h"

enum { MR = 4, NR = 8 };

void dpt_ukernel_ref(const dpt_tile *t)
{
    float acc[MR][NR] = { { 0 } };
    for (int k = 0; k < t->kc; k++) {
        const float *b = t->b + k * t->rsb;
        for (int i = 0; i < t->m; i++) {
            float a = t->a[i * t->rsa + k * t->csa];
            for (int j = 0; j < t->n; j++)
                acc[i][j] += a * b[j];
        }
    }
    for (int i = 0; i < t->m; i++) {
        float *c = t->c + i * t->ldc;
        for (int j = 0; j < t->n; j++) {
            float r = t->alpha * acc[i][j];
            if (t->beta != 0.0f)
                r = t->beta * c[j] + r;
            if (t->bias)
                r += t->bias[j];
            if (t->relu && !(r > 0.0f))
                r = 0.0f;
            if (t->mask && !(t->mask[i * t->ldm + j] > 0.0f))
                r = 0.0f;
            c[j] = r;
        }
    }
}
