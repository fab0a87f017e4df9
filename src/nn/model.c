/* Network configuration, parameter layout, initialisation and fingerprint. */
#include "nn/net.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dpt_config_default(dpt_config *c)
{
    memset(c, 0, sizeof *c);
    c->nlayers = 3;
    c->sizes[0] = 784;
    c->sizes[1] = 128;
    c->sizes[2] = 64;
    c->sizes[3] = 10;
    c->optimizer = DPT_ADAM;
    c->lr = 1e-3f;
    c->momentum = 0.9f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = 1e-4f;
    c->dropout = 0.2f;
    c->bn_momentum = 0.1f;
    c->bn_eps = 1e-5f;
    c->batch = 32;
    c->epochs = 10;
    c->val_split = 0.2;
    c->min_delta = 1e-5f;
    c->bind = 1;
    c->seed = 1;
}

int dpt_parse_arch(const char *arch, dpt_config *cfg, dpt_error *err)
{
    int sizes[DPT_MAX_LAYERS + 1], n = 0;
    const char *p = arch;
    if (!p || !*p)
        return dpt_seterr(err, DPT_EINPUT, "--arch: empty (expected e.g. 784-128-64-10)");
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return dpt_seterr(err, DPT_EINPUT, "--arch: '%s' is not a list of layer sizes "
                              "such as 784-128-64-10", arch);
        long v = strtol(p, &end, 10);
        if (v < 1 || v > DPT_MAX_WIDTH)
            return dpt_seterr(err, DPT_EINPUT, "--arch: layer size %ld in '%s' is not in "
                              "[1, %d]", v, arch, DPT_MAX_WIDTH);
        if (n > DPT_MAX_LAYERS)
            return dpt_seterr(err, DPT_EINPUT, "--arch: '%s' has more than %d layers", arch,
                              DPT_MAX_LAYERS);
        sizes[n++] = (int)v;
        if (*end == '\0')
            break;
        if (*end != '-')
            return dpt_seterr(err, DPT_EINPUT, "--arch: unexpected '%c' in '%s'", *end,
                              arch);
        p = end + 1;
    }
    if (n < 2)
        return dpt_seterr(err, DPT_EINPUT, "--arch: '%s' needs at least an input and an "
                          "output size", arch);
    if (sizes[n - 1] < 2)
        return dpt_seterr(err, DPT_EINPUT, "--arch: the output layer of '%s' needs at "
                          "least 2 classes", arch);
    cfg->nlayers = n - 1;
    memcpy(cfg->sizes, sizes, sizeof(int) * n);
    return DPT_OK;
}

void dpt_format_arch(const dpt_config *cfg, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i <= cfg->nlayers && k < n; i++)
        k += snprintf(buf + k, n - k, i ? "-%d" : "%d", cfg->sizes[i]);
}

static const char *opt_names[] = { "sgd", "momentum", "adam", "adamw" };

const char *dpt_optimizer_name(int opt)
{
    return opt >= 0 && opt < 4 ? opt_names[opt] : "?";
}

int dpt_optimizer_parse(const char *name, int *opt)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, opt_names[i])) {
            *opt = i;
            return DPT_OK;
        }
    return DPT_EINPUT;
}

int dpt_config_check(const dpt_config *c, dpt_error *err)
{
    if (c->nlayers < 1 || c->nlayers > DPT_MAX_LAYERS)
        return dpt_seterr(err, DPT_EINPUT, "--arch: needs 1 to %d layers", DPT_MAX_LAYERS);
    if (!(c->lr > 0) || !isfinite(c->lr))
        return dpt_seterr(err, DPT_EINPUT, "--lr: %g is not a positive learning rate", c->lr);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return dpt_seterr(err, DPT_EINPUT, "--momentum: %g is not in [0, 1)", c->momentum);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return dpt_seterr(err, DPT_EINPUT, "--beta1/--beta2: must be in [0, 1)");
    if (!(c->eps > 0))
        return dpt_seterr(err, DPT_EINPUT, "--eps: %g is not positive", c->eps);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return dpt_seterr(err, DPT_EINPUT, "--weight-decay: %g is negative", c->weight_decay);
    if (!(c->l2 >= 0) || !isfinite(c->l2))
        return dpt_seterr(err, DPT_EINPUT, "--l2: %g is negative", c->l2);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return dpt_seterr(err, DPT_EINPUT, "--dropout: %g is not in [0, 1)", c->dropout);
    if (!(c->bn_momentum >= 0 && c->bn_momentum <= 1))
        return dpt_seterr(err, DPT_EINPUT, "--bn-momentum: %g is not in [0, 1]",
                          c->bn_momentum);
    if (!(c->bn_eps > 0))
        return dpt_seterr(err, DPT_EINPUT, "--bn-eps: %g is not positive", c->bn_eps);
    if (c->batch < 1 || c->batch > DPT_MAX_BATCH)
        return dpt_seterr(err, DPT_EINPUT, "--batch: %d is not in [1, %d]", c->batch,
                          DPT_MAX_BATCH);
    if (c->epochs < 0)
        return dpt_seterr(err, DPT_EINPUT, "--epochs: %d is negative", c->epochs);
    if (!(c->val_split >= 0 && c->val_split < 1))
        return dpt_seterr(err, DPT_EINPUT, "--val-split: %g is not in [0, 1)", c->val_split);
    if (c->eval_every < 0)
        return dpt_seterr(err, DPT_EINPUT, "--eval-every: %d is negative", c->eval_every);
    if (c->patience < 0)
        return dpt_seterr(err, DPT_EINPUT, "--patience: %d is negative", c->patience);
    if (!(c->min_delta >= 0))
        return dpt_seterr(err, DPT_EINPUT, "--min-delta: %g is negative", c->min_delta);
    if (c->threads < 0 || c->threads > 1024)
        return dpt_seterr(err, DPT_EINPUT, "--threads: %d is not in [1, 1024]", c->threads);
    if (c->optimizer < 0 || c->optimizer > DPT_ADAMW)
        return dpt_seterr(err, DPT_EINPUT, "--optimizer: unknown optimizer");
    return DPT_OK;
}

dpt_net *dpt_net_create(const dpt_config *cfg, dpt_error *err)
{
    if (dpt_config_check(cfg, err))
        return NULL;
    dpt_net *net = calloc(1, sizeof *net);
    if (!net) {
        dpt_seterr(err, DPT_EFAIL, "out of memory");
        return NULL;
    }
    net->cfg = *cfg;
    net->L = cfg->nlayers;
    size_t off = 0, soff = 0;
    for (int l = 0; l < net->L; l++) {
        dpt_layer *ly = &net->layer[l];
        ly->in = cfg->sizes[l];
        ly->out = cfg->sizes[l + 1];
        ly->bn = cfg->batchnorm && l < net->L - 1;
        /* each tensor starts on a 64-byte boundary (16 floats) */
        ly->w = off;
        off += ((size_t)ly->in * ly->out + 15) & ~(size_t)15;
        ly->b = off;
        off += ((size_t)ly->out + 15) & ~(size_t)15;
        if (ly->bn) {
            ly->gamma = off;
            off += ((size_t)ly->out + 15) & ~(size_t)15;
            ly->beta = off;
            off += ((size_t)ly->out + 15) & ~(size_t)15;
            ly->rmean = soff;
            soff += ly->out;
            ly->rvar = soff;
            soff += ly->out;
        }
        ly->end = off;
    }
    net->nparams = off;
    net->nstats = soff;
    net->params = dpt_alloc(off, sizeof(float));
    net->grads = dpt_alloc(off, sizeof(float));
    net->m1 = dpt_alloc(off, sizeof(float));
    net->m2 = dpt_alloc(off, sizeof(float));
    net->stats = dpt_alloc(soff ? soff : 1, sizeof(float));
    if (!net->params || !net->grads || !net->m1 || !net->m2 || !net->stats) {
        dpt_net_free(net);
        dpt_seterr(err, DPT_EFAIL, "out of memory for %zu parameters", off);
        return NULL;
    }
    /* He initialisation N(0, 2/in) for weights, as for ReLU networks; biases zero;
     * batchnorm scale 1, shift 0, running mean 0, variance 1. Each value is keyed by
     * (seed, its index), so it does not depend on anything else. */
    for (int l = 0; l < net->L; l++) {
        dpt_layer *ly = &net->layer[l];
        double sd = sqrt(2.0 / ly->in);
        size_t nw = (size_t)ly->in * ly->out;
        for (size_t i = 0; i < nw; i++)
            net->params[ly->w + i] =
                (float)(sd * dpt_randn(cfg->seed, DPT_STREAM_INIT, ly->w + i));
        if (ly->bn)
            for (int j = 0; j < ly->out; j++) {
                net->params[ly->gamma + j] = 1.0f;
                net->stats[ly->rvar + j] = 1.0f;
            }
    }
    return net;
}

void dpt_net_free(dpt_net *net)
{
    if (!net)
        return;
    dpt_free(net->params);
    dpt_free(net->grads);
    dpt_free(net->m1);
    dpt_free(net->m2);
    dpt_free(net->stats);
    free(net);
}

const dpt_config *dpt_net_config(const dpt_net *net) { return &net->cfg; }

int dpt_net_reconfigure(dpt_net *net, const dpt_config *cfg, dpt_error *err)
{
    const dpt_config *h = &net->cfg, *w = cfg;
    /* everything but epochs, threads, bind, patience, eval_every and min_delta */
    const char *what = NULL;
    if (h->nlayers != w->nlayers || memcmp(h->sizes, w->sizes, sizeof(int) * (h->nlayers + 1)))
        what = "--arch";
    else if (h->optimizer != w->optimizer)
        what = "--optimizer";
    else if (h->lr != w->lr)
        what = "--lr";
    else if (h->momentum != w->momentum || h->nesterov != w->nesterov)
        what = "--momentum";
    else if (h->beta1 != w->beta1 || h->beta2 != w->beta2 || h->eps != w->eps)
        what = "--beta1/--beta2/--eps";
    else if (h->weight_decay != w->weight_decay)
        what = "--weight-decay";
    else if (h->l2 != w->l2)
        what = "--l2";
    else if (h->dropout != w->dropout)
        what = "--dropout";
    else if (h->batchnorm != w->batchnorm || h->bn_before != w->bn_before ||
             h->bn_momentum != w->bn_momentum || h->bn_eps != w->bn_eps)
        what = "--batchnorm";
    else if (h->batch != w->batch)
        what = "--batch";
    else if (h->val_split != w->val_split)
        what = "--val-split";
    else if (h->seed != w->seed)
        what = "--seed";
    if (what)
        return dpt_seterr(err, DPT_EINPUT, "%s: differs from the checkpoint's, which fixes "
                          "it for a resumed run", what);
    if (dpt_config_check(w, err))
        return DPT_EINPUT;
    net->cfg = *w;
    return DPT_OK;
}

size_t dpt_net_nparams(const dpt_net *net) { return net->nparams; }
uint64_t dpt_net_steps(const dpt_net *net) { return net->step; }
float *dpt_net_params(dpt_net *net) { return net->params; }
float *dpt_net_grads(dpt_net *net) { return net->grads; }

float *dpt_net_stats(dpt_net *net, size_t *n)
{
    if (n)
        *n = net->nstats;
    return net->stats;
}

double dpt_l2_term(const dpt_net *net)
{
    if (!(net->cfg.l2 > 0))
        return 0;
    double sw = 0;
    for (int l = 0; l < net->L; l++) {
        const float *w = net->params + net->layer[l].w;
        for (size_t i = 0; i < (size_t)net->layer[l].in * net->layer[l].out; i++)
            sw += (double)w[i] * w[i];
    }
    return net->cfg.l2 / (2.0 * net->cfg.batch) * sw;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t dpt_net_fingerprint(const dpt_net *net)
{
    /* tensor by tensor, so the alignment padding between them never counts */
    uint64_t h = 0xcbf29ce484222325ull;
    for (int l = 0; l < net->L; l++) {
        const dpt_layer *ly = &net->layer[l];
        h = fnv1a(h, net->params + ly->w, sizeof(float) * (size_t)ly->in * ly->out);
        h = fnv1a(h, net->params + ly->b, sizeof(float) * (size_t)ly->out);
        if (ly->bn) {
            h = fnv1a(h, net->params + ly->gamma, sizeof(float) * (size_t)ly->out);
            h = fnv1a(h, net->params + ly->beta, sizeof(float) * (size_t)ly->out);
        }
    }
    return fnv1a(h, net->stats, net->nstats * sizeof(float));
}
