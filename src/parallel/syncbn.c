/* Synchronised batchnorm arithmetic (see syncbn.h); the engine supplies the barrier. */
#include "parallel/syncbn.h"
#include "parallel/team.h"

#include <math.h>
#include <stddef.h>

/* Rows [a, b) of slice s of a B-row batch. */
static void slice_rows(int s, int B, int *a, int *b)
{
    *a = s * DPT_SLICE;
    *b = *a + DPT_SLICE < B ? *a + DPT_SLICE : B;
}

void dpt_bn_fwd_partials(const float *v, int B, int out, int s0, int s1, double *part)
{
    for (int s = s0; s < s1; s++) {
        int a, b;
        slice_rows(s, B, &a, &b);
        double *ps = part + (size_t)s * out * 2;
        for (int j = 0; j < out; j++) {
            double m = 0, m2 = 0;
            for (int r = a; r < b; r++)
                m += v[(size_t)r * out + j];
            m /= (b - a);
            for (int r = a; r < b; r++) {
                double d = v[(size_t)r * out + j] - m;
                m2 += d * d;
            }
            ps[2 * j] = m;
            ps[2 * j + 1] = m2;
        }
    }
}

void dpt_bn_fwd_merge(const double *part, int B, int out, double eps, double *mean,
                      double *var, double *invstd)
{
    const int ns = dpt_nslices(B);
    for (int j = 0; j < out; j++) {
        double n = 0, m = 0, m2 = 0;
        for (int s = 0; s < ns; s++) {
            int a, b;
            slice_rows(s, B, &a, &b);
            double nb = b - a, mb = part[((size_t)s * out + j) * 2];
            double m2b = part[((size_t)s * out + j) * 2 + 1];
            double nn = n + nb, d = mb - m;
            m += d * nb / nn;
            m2 += m2b + d * d * n * nb / nn;
            n = nn;
        }
        mean[j] = m;
        var[j] = m2 / n;
        invstd[j] = 1.0 / sqrt(var[j] + eps);
    }
}

void dpt_bn_fwd_rows(const float *v, int r0, int r1, int out, const double *mean,
                     const double *invstd, const float *gamma, const float *beta, int relu,
                     float *xh, float *h)
{
    for (int r = r0; r < r1; r++) {
        const float *vr = v + (size_t)r * out;
        float *xr = xh + (size_t)r * out, *hr = h + (size_t)r * out;
        for (int j = 0; j < out; j++) {
            float x = (float)((vr[j] - mean[j]) * invstd[j]);
            float y = gamma[j] * x + beta[j];
            xr[j] = x;
            hr[j] = relu && !(y > 0.0f) ? 0.0f : y;
        }
    }
}

void dpt_bn_bwd_partials(const float *g, const float *xh, int B, int out, int s0, int s1,
                         double *part)
{
    for (int s = s0; s < s1; s++) {
        int a, b;
        slice_rows(s, B, &a, &b);
        double *ps = part + (size_t)s * out * 2;
        for (int j = 0; j < out; j++) {
            double sg = 0, sgx = 0;
            for (int r = a; r < b; r++) {
                double gv = g[(size_t)r * out + j];
                sg += gv;
                sgx += gv * xh[(size_t)r * out + j];
            }
            ps[2 * j] = sg;
            ps[2 * j + 1] = sgx;
        }
    }
}

void dpt_bn_bwd_merge(const double *part, int B, int out, double *gsum, double *gxsum)
{
    const int ns = dpt_nslices(B);
    for (int j = 0; j < out; j++) {
        double a = 0, b = 0;
        for (int s = 0; s < ns; s++) {
            a += part[((size_t)s * out + j) * 2];
            b += part[((size_t)s * out + j) * 2 + 1];
        }
        gsum[j] = a;
        gxsum[j] = b;
    }
}

void dpt_bn_bwd_rows(float *g, const float *xh, const float *active, int r0, int r1,
                     int out, int B, const float *gamma, const double *invstd,
                     const double *gsum, const double *gxsum)
{
    for (int r = r0; r < r1; r++)
        for (int j = 0; j < out; j++) {
            size_t i = (size_t)r * out + j;
            double dx = gamma[j] * invstd[j] * (g[i] - gsum[j] / B - xh[i] * gxsum[j] / B);
            g[i] = active && !(active[i] > 0.0f) ? 0.0f : (float)dx;
        }
}
