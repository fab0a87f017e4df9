/* Internal layout of a network (see dptrain.h for the public view). */
#ifndef DPT_NET_H
#define DPT_NET_H

#include "dptrain.h"

/* One dense layer's views into the flat buffers. Offsets are in floats. */
typedef struct dpt_layer {
    int in, out;
    int bn;            /* hidden layer with batchnorm */
    size_t w, b;       /* offsets of W [in][out] and b [out] in params/grads/moments */
    size_t gamma, beta;/* batchnorm scale and shift [out] (when bn) */
    size_t end;        /* one past this layer's last parameter */
    size_t rmean, rvar;/* offsets of running mean / variance in stats (when bn) */
} dpt_layer;

struct dpt_net {
    dpt_config cfg;
    int L;                      /* dense layers */
    dpt_layer layer[DPT_MAX_LAYERS];
    size_t nparams, nstats;
    float *params;              /* [nparams] all trainable parameters */
    float *grads;               /* [nparams] gradient of the mean batch cost */
    float *m1, *m2;             /* [nparams] momentum / Adam first and second moments */
    float *stats;               /* [nstats] batchnorm running mean and variance */
    uint64_t step;              /* optimiser steps taken (Adam's t) */
};

/* Applies optimiser step number t (1-based) to params[lo, hi) using the gradient g[0,
 * hi - lo) (grads + lo, or a thread's scratch block). The L2 term's gradient (l2/B * w,
 * dense weights only) is added when `is_weight`. Returns 0, or 1 if a gradient in the
 * range was not finite: each such element (with its optimiser state) is left
 * unchanged, the others are updated. */
int dpt_optim_update(dpt_net *net, const float *g, size_t lo, size_t hi, int is_weight,
                     int batch, uint64_t t);

/* The L2 term of the cost, l2 / (2 * batch) * sum of dense weights squared (0 when
 * l2 == 0), summed in parameter order. */
double dpt_l2_term(const dpt_net *net);

#endif
