/* Optimisers with PyTorch's update formulas (torch.optim.SGD, Adam, AdamW):
 *   sgd       g += wd*w;            w -= lr*g
 *   momentum  g += wd*w; b = mu*b + g (b = g at step 1);
 *             w -= lr*(nesterov ? g + mu*b : b)
 *   adam      g += wd*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *             w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *             (the division by sqrt(1-b2^t) is a multiplication by its reciprocal here:
 *             one IEEE division per element instead of two; equal up to rounding)
 *   adamw     w *= 1 - lr*wd; then adam without the wd term
 * plus the L2 cost's gradient l2/B * w on dense weights (--l2). Applied to a contiguous
 * parameter range, so threads can split the update by range. */
#include "nn/net.h"
#include "util/clones.h"

#include <math.h>


/* Whether g is finite. Each update below leaves an element with a non-finite gradient
 * (and its optimiser state) as it was, and returns 1 if it met one: the check costs
 * nothing beside the update, and the result does not depend on how the range is cut. */
static inline int is_finite(float g) { return fabsf(g) <= 3.4028235e38f; }

DPT_CLONES static int sgd(float *restrict w, const float *restrict g, float *restrict b,
                          size_t n, float lr, float wd, float l2s, float mu, int nesterov,
                          int first, int use_mom)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float wi = w[i];
        const int ok = is_finite(g[i]);
        bad |= !ok;
        float gi = g[i] + l2s * wi;
        if (wd != 0.0f)
            gi = gi + wd * wi;
        if (use_mom) {
            const float b0 = b[i];
            float bi = first ? gi : mu * b0 + gi;
            b[i] = ok ? bi : b0;
            gi = nesterov ? gi + mu * bi : bi;
        }
        const float wn = wi - lr * gi;
        w[i] = ok ? wn : wi;
    }
    return bad;
}

DPT_CLONES static int adam(float *restrict w, const float *restrict g, float *restrict m,
                            float *restrict v, size_t n, float lr,
                            float wd, float l2s, float b1, float b2, float eps, float bc1,
                            float rbc2sqrt, int decoupled)
{
    const float step = lr / bc1;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float w0 = w[i], m0 = m[i], v0 = v[i];
        const int ok = is_finite(g[i]);
        bad |= !ok;
        float wi = w0;
        float gi = g[i] + l2s * wi;
        if (decoupled)
            wi = wi * (1.0f - lr * wd);
        else if (wd != 0.0f)
            gi = gi + wd * wi;
        float mi = b1 * m0 + (1.0f - b1) * gi;
        float vi = b2 * v0 + (1.0f - b2) * gi * gi;
        float wn = wi - step * (mi / (sqrtf(vi) * rbc2sqrt + eps));
        m[i] = ok ? mi : m0;
        v[i] = ok ? vi : v0;
        w[i] = ok ? wn : w0;
    }
    return bad;
}

int dpt_optim_update(dpt_net *net, const float *g, size_t lo, size_t hi, int is_weight,
                     int batch, uint64_t t)
{
    const dpt_config *c = &net->cfg;
    size_t n = hi - lo;
    float *w = net->params + lo;
    float l2s = is_weight ? c->l2 / (float)batch : 0.0f;
    switch (c->optimizer) {
    case DPT_SGD:
    case DPT_MOMENTUM:
        return sgd(w, g, net->m1 + lo, n, c->lr, c->weight_decay, l2s, c->momentum,
                   c->nesterov, t == 1, c->optimizer == DPT_MOMENTUM);
    default: {
        /* the bias corrections of step t, computed once per step and thread (the engine
         * updates a step's parameters in many ranges) */
        static _Thread_local struct { uint64_t t; float b1, b2, bc1, rbc2sqrt; } bc;
        if (bc.t != t || bc.b1 != c->beta1 || bc.b2 != c->beta2) {
            bc.t = t, bc.b1 = c->beta1, bc.b2 = c->beta2;
            bc.bc1 = 1.0f - powf(c->beta1, (float)t);
            bc.rbc2sqrt = 1.0f / sqrtf(1.0f - powf(c->beta2, (float)t));
        }
        return adam(w, g, net->m1 + lo, net->m2 + lo, n, c->lr, c->weight_decay, l2s,
                    c->beta1, c->beta2, c->eps, bc.bc1, bc.rbc2sqrt,
                    c->optimizer == DPT_ADAMW);
    }
    }
}
