/* Inference over a dataset: the same gemm kernels, batchnorm with running statistics,
 * no dropout. Rows are independent, so threads take chunks in any order; per-row
 * results are summed in row order afterwards, so metrics do not depend on T. */
#include "nn/layers.h"
#include "nn/net.h"
#include "parallel/team.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK = 128 };

/* Forward for rows [0, m) of x (CHUNK rows max) into probabilities; a and b are
 * [CHUNK][maxw] scratch. Returns the buffer holding the logits. */
static float *forward(const dpt_net *net, const float *x, int m, float *a, float *b)
{
    const float *in = x;
    float *out = a;
    for (int l = 0; l < net->L; l++) {
        const dpt_layer *ly = &net->layer[l];
        int hidden = l < net->L - 1;
        dpt_epilogue ep = { .bias = net->params + ly->b,
                            .relu = hidden && !(ly->bn && net->cfg.bn_before) };
        dpt_sgemm_ex(0, 0, m, ly->out, ly->in, 1.0f, in, ly->in, net->params + ly->w,
                     ly->out, 0.0f, out, ly->out, &ep);
        if (ly->bn) {
            const float *g = net->params + ly->gamma, *be = net->params + ly->beta;
            const float *rm = net->stats + ly->rmean, *rv = net->stats + ly->rvar;
            for (int j = 0; j < ly->out; j++) {
                float inv = (float)(1.0 / sqrt((double)rv[j] + net->cfg.bn_eps));
                for (int r = 0; r < m; r++) {
                    float *v = out + (size_t)r * ly->out + j;
                    float y = g[j] * ((*v - rm[j]) * inv) + be[j];
                    *v = net->cfg.bn_before && !(y > 0.0f) ? 0.0f : y;
                }
            }
        }
        in = out;
        out = out == a ? b : a;
    }
    return (float *)in;
}

int dpt_net_evaluate(dpt_net *net, const dpt_dataset *ds, const uint32_t *idx, size_t n,
                     int threads, dpt_metrics *res, int *confusion, int *pred, float *conf,
                     dpt_error *err)
{
    memset(res, 0, sizeof *res);
    const int C = net->layer[net->L - 1].out;
    if (ds->dim != (size_t)net->layer[0].in)
        return dpt_seterr(err, DPT_EINPUT, "--arch: the network's input size %d does not "
                          "match the data's %zu pixels", net->layer[0].in, ds->dim);
    if (ds->classes > C)
        return dpt_seterr(err, DPT_EINPUT, "--arch: the network has %d outputs but the data "
                          "has labels up to %d", C, ds->classes - 1);
    if (!idx)
        n = ds->n;
    if (n == 0)
        return DPT_OK;
    int maxw = 0;
    for (int l = 0; l < net->L; l++)
        maxw = net->layer[l].out > maxw ? net->layer[l].out : maxw;
    double *loss = malloc(n * sizeof *loss);
    unsigned char *hit = malloc(n);
    int *arg = malloc(n * sizeof *arg);
    float *cf = malloc(n * sizeof *cf);
    if (!loss || !hit || !arg || !cf) {
        free(loss), free(hit), free(arg), free(cf);
        return dpt_seterr(err, DPT_EFAIL, "out of memory for evaluation");
    }
    int oom = 0;
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
#ifdef _OPENMP
    int T = threads > 0 ? threads : net->cfg.threads > 0 ? net->cfg.threads
                                                         : dpt_team_default_threads();
#pragma omp parallel num_threads(T) reduction(+ : oom)
#else
    (void)threads;
#endif
    {
        float *x = dpt_alloc((size_t)CHUNK * net->layer[0].in, sizeof(float));
        float *a = dpt_alloc((size_t)CHUNK * maxw, sizeof(float));
        float *b = dpt_alloc((size_t)CHUNK * maxw, sizeof(float));
        float *p = dpt_alloc((size_t)CHUNK * C, sizeof(float));
        uint32_t ids[CHUNK];
        if (!x || !a || !b || !p) {
            oom++;
        } else {
            /* chunks dealt round-robin over the team OpenMP actually gave */
            for (size_t k = (size_t)dpt_tid(); k < nchunks; k += (size_t)dpt_team_size()) {
                size_t r0 = k * CHUNK;
                int m = (int)(n - r0 < CHUNK ? n - r0 : CHUNK);
                for (int r = 0; r < m; r++)
                    ids[r] = idx ? idx[r0 + r] : (uint32_t)(r0 + r);
                dpt_load_input(ds, ids, 0, m, x);
                float *z = forward(net, x, m, a, b);
                dpt_softmax_xent(z, p, NULL, 0, m, C, ds->labels, ids, m, loss + r0,
                                 hit + r0);
                for (int r = 0; r < m; r++) {
                    int best = 0;
                    for (int j = 1; j < C; j++)
                        if (p[(size_t)r * C + j] > p[(size_t)r * C + best])
                            best = j;
                    arg[r0 + r] = best;
                    cf[r0 + r] = p[(size_t)r * C + best];
                }
            }
        }
        dpt_free(x), dpt_free(a), dpt_free(b), dpt_free(p);
    }
    if (oom) {
        free(loss), free(hit), free(arg), free(cf);
        return dpt_seterr(err, DPT_EFAIL, "out of memory for evaluation");
    }
    double cost = 0;
    size_t correct = 0;
    if (confusion)
        memset(confusion, 0, sizeof(int) * (size_t)C * C);
    for (size_t i = 0; i < n; i++) {
        cost += loss[i];
        correct += hit[i];
        if (confusion)
            confusion[(size_t)ds->labels[idx ? idx[i] : i] * C + arg[i]]++;
        if (pred)
            pred[i] = arg[i];
        if (conf)
            conf[i] = cf[i];
    }
    cost = cost / (double)n + dpt_l2_term(net);
    res->cost = cost;
    res->accuracy = (double)correct / (double)n;
    res->n = n;
    free(loss), free(hit), free(arg), free(cf);
    return DPT_OK;
}
