/* Synchronised batchnorm: whole-batch statistics from per-slice partial sums, merged
 * in slice order in double, so they do not depend on which thread computed which slice.
 * Each phase comes in two halves with a barrier between them (the caller's): a thread
 * writes the partials of its slices, then every thread merges all slices. Matrices are
 * [B][out] row-major; a partial buffer is [nslices][out][2] doubles. */
#ifndef DPT_SYNCBN_H
#define DPT_SYNCBN_H

/* Forward, first half: mean and M2 (sum of squared deviations) of each slice in
 * [s0, s1) of v. */
void dpt_bn_fwd_partials(const float *v, int B, int out, int s0, int s1, double *part);
/* Forward, second half: whole-batch mean, (biased) variance and 1/sqrt(var + eps) by
 * Chan et al.'s pairwise merge over the slices in order. */
void dpt_bn_fwd_merge(const double *part, int B, int out, double eps, double *mean,
                      double *var, double *invstd);
/* Normalises rows [r0, r1): xh = (v - mean) * invstd, h = gamma * xh + beta, then ReLU
 * on h when relu. */
void dpt_bn_fwd_rows(const float *v, int r0, int r1, int out, const double *mean,
                     const double *invstd, const float *gamma, const float *beta, int relu,
                     float *xh, float *h);

/* Backward, first half: sum of g and of g * xh over each slice in [s0, s1). */
void dpt_bn_bwd_partials(const float *g, const float *xh, int B, int out, int s0, int s1,
                         double *part);
/* Backward, second half: the whole-batch sums, slices in order. */
void dpt_bn_bwd_merge(const double *part, int B, int out, double *gsum, double *gxsum);
/* dx for rows [r0, r1) in place of g: gamma * invstd * (g - gsum/B - xh * gxsum/B),
 * then zero where active[i] <= 0 when active is not NULL (a ReLU before the BN). */
void dpt_bn_bwd_rows(float *g, const float *xh, const float *active, int r0, int r1,
                     int out, int B, const float *gamma, const double *invstd,
                     const double *gsum, const double *gxsum);

#endif
