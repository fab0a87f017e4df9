/* Checkpoints as safetensors: 8-byte little-endian header length, a JSON header, then
 * raw little-endian float32 tensors. The loader trusts nothing: the header length is
 * checked against the file, the JSON is parsed strictly, and every tensor's dtype,
 * shape and offsets are checked against the architecture and the data size before any
 * byte is used. */
#include "nn/net.h"
#include "util/atomic_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_HEADER (16u << 20)
#define MAX_TENSORS 256

/* ------------------------------------------------------------- tensor list ----- */

typedef struct tdesc {
    char name[64];
    int ndim;
    size_t shape[2];
    size_t numel;
    const float *src;   /* save: data in memory (NULL: transposed weight) */
    const float *wsrc;  /* save: [in][out] weight to write as [out][in] */
    float *dst;         /* load: where it goes */
    float *wdst;        /* load: [in][out] weight read as [out][in] */
    int required;
    int seen;
} tdesc;

/* The tensors of net (+ state): the same list for saving and loading. */
static int describe(dpt_net *net, int with_state, int with_best, tdesc *t)
{
    int n = 0;
    for (int l = 0; l < net->L; l++) {
        dpt_layer *ly = &net->layer[l];
        tdesc *d = &t[n++];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "layers.%d.weight", l);
        d->ndim = 2;
        d->shape[0] = ly->out;
        d->shape[1] = ly->in;
        d->wsrc = d->wdst = net->params + ly->w;
#define VEC(nm, ptr, len)                                                               \
    do {                                                                                \
        tdesc *v = &t[n++];                                                             \
        memset(v, 0, sizeof *v);                                                        \
        snprintf(v->name, sizeof v->name, nm, l);                                       \
        v->ndim = 1;                                                                    \
        v->shape[0] = (len);                                                            \
        v->src = v->dst = (ptr);                                                        \
    } while (0)
        VEC("layers.%d.bias", net->params + ly->b, ly->out);
        if (ly->bn) {
            VEC("layers.%d.bn.weight", net->params + ly->gamma, ly->out);
            VEC("layers.%d.bn.bias", net->params + ly->beta, ly->out);
            VEC("layers.%d.bn.running_mean", net->stats + ly->rmean, ly->out);
            VEC("layers.%d.bn.running_var", net->stats + ly->rvar, ly->out);
        }
#undef VEC
    }
    if (with_state) {
        const char *names[2] = { "optim.m1", "optim.m2" };
        float *bufs[2] = { net->m1, net->m2 };
        for (int k = 0; k < 2; k++) {
            tdesc *v = &t[n++];
            memset(v, 0, sizeof *v);
            snprintf(v->name, sizeof v->name, "%s", names[k]);
            v->ndim = 1;
            v->shape[0] = net->nparams;
            v->src = v->dst = bufs[k];
        }
    }
    if (with_best) {
        tdesc *v = &t[n++];
        memset(v, 0, sizeof *v);
        snprintf(v->name, sizeof v->name, "train.best");
        v->ndim = 1;
        v->shape[0] = net->nparams + net->nstats;
    }
    for (int i = 0; i < n; i++) {
        t[i].numel = t[i].ndim == 2 ? t[i].shape[0] * t[i].shape[1] : t[i].shape[0];
        t[i].required = 1;
    }
    return n;
}

/* -------------------------------------------------------------------- save ----- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

int dpt_checkpoint_save(const char *path, const dpt_net *cnet, const dpt_train_state *st,
                        dpt_error *err)
{
    dpt_net *net = (dpt_net *)cnet; /* describe() hands out non-const views; we only read */
    const dpt_config *c = &net->cfg;
    tdesc t[MAX_TENSORS];
    int with_best = st && st->best;
    int n = describe(net, st != NULL, with_best, t);
    char arch[256];
    dpt_format_arch(c, arch, sizeof arch);

    sbuf h = { 0 };
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"dptrain\",\"version\":\"1\","
              "\"arch\":\"%s\",\"optimizer\":\"%s\",\"lr\":\"%.9g\",\"momentum\":\"%.9g\","
              "\"nesterov\":\"%d\",\"beta1\":\"%.9g\",\"beta2\":\"%.9g\",\"eps\":\"%.9g\","
              "\"weight_decay\":\"%.9g\",\"l2\":\"%.9g\",\"dropout\":\"%.9g\","
              "\"batchnorm\":\"%d\",\"bn_before\":\"%d\",\"bn_momentum\":\"%.9g\","
              "\"bn_eps\":\"%.9g\",\"batch\":\"%d\",\"epochs\":\"%d\",\"val_split\":\"%.17g\","
              "\"eval_every\":\"%d\",\"patience\":\"%d\",\"min_delta\":\"%.9g\","
              "\"seed\":\"%llu\",\"step\":\"%llu\"",
              arch, dpt_optimizer_name(c->optimizer), c->lr, c->momentum, c->nesterov,
              c->beta1, c->beta2, c->eps, c->weight_decay, c->l2, c->dropout, c->batchnorm,
              c->bn_before, c->bn_momentum, c->bn_eps, c->batch, c->epochs, c->val_split,
              c->eval_every, c->patience, c->min_delta, (unsigned long long)c->seed,
              (unsigned long long)net->step);
    if (st)
        sb_printf(&h, ",\"state\":\"1\",\"epoch\":\"%d\",\"batch_in_epoch\":\"%zu\","
                  "\"best_cost\":\"%.17g\",\"best_epoch\":\"%d\",\"bad_evals\":\"%d\","
                  "\"stopped\":\"%d\",\"data_hash\":\"%llu\"", st->epoch, st->batch,
                  st->best_cost, st->best_epoch, st->bad_evals, st->stopped,
                  (unsigned long long)st->data_hash);
    sb_printf(&h, "}");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = t[i].numel * sizeof(float);
        if (t[i].ndim == 2)
            sb_printf(&h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu,%zu],\"data_offsets\":"
                      "[%zu,%zu]}", t[i].name, t[i].shape[0], t[i].shape[1], off, off + bytes);
        else
            sb_printf(&h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":"
                      "[%zu,%zu]}", t[i].name, t[i].shape[0], off, off + bytes);
        off += bytes;
    }
    sb_printf(&h, "}");
    while (!h.oom && h.n % 8) /* pad so the data starts 8-byte aligned */
        sb_printf(&h, " ");
    if (h.oom) {
        free(h.p);
        return dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
    }
    dpt_afile f;
    int rc = dpt_afile_open(&f, path, err);
    if (rc) {
        free(h.p);
        return rc;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    rc = dpt_afile_write(&f, len, 8, err);
    if (!rc)
        rc = dpt_afile_write(&f, h.p, h.n, err);
    free(h.p);
    /* float32 is little-endian on every target we build for (x86-64, aarch64) */
    for (int i = 0; i < n && !rc; i++) {
        if (t[i].wsrc) {
            const dpt_layer *ly = NULL;
            for (int l = 0; l < net->L; l++)
                if (net->params + net->layer[l].w == t[i].wsrc)
                    ly = &net->layer[l];
            float *row = malloc(sizeof(float) * ly->in);
            if (!row) {
                dpt_afile_abort(&f);
                return dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
            }
            for (int o = 0; o < ly->out && !rc; o++) {
                for (int k = 0; k < ly->in; k++)
                    row[k] = t[i].wsrc[(size_t)k * ly->out + o];
                rc = dpt_afile_write(&f, row, sizeof(float) * ly->in, err);
            }
            free(row);
        } else if (!strcmp(t[i].name, "train.best")) {
            rc = dpt_afile_write(&f, st->best, t[i].numel * sizeof(float), err);
        } else {
            rc = dpt_afile_write(&f, t[i].src, t[i].numel * sizeof(float), err);
        }
    }
    return rc ? rc : dpt_afile_commit(&f, err);
}

/* --------------------------------------------------------------- JSON parse ----- */

/* A strict parser for the subset safetensors headers use: one object whose values are
 * objects of strings, string->string maps, and arrays of non-negative integers. */
typedef struct jp {
    const char *s, *end, *start;
    const char *path;
    dpt_error *err;
    int failed;
} jp;

static int jfail(jp *j, const char *what)
{
    if (!j->failed)
        dpt_seterr(j->err, DPT_EINPUT, "%s: bad safetensors header: %s at header byte %ld",
                   j->path, what, (long)(j->s - j->start));
    j->failed = 1;
    return -1;
}

static void ws(jp *j)
{
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\n' || *j->s == '\r' || *j->s == '\t'))
        j->s++;
}

static int expect(jp *j, char ch)
{
    ws(j);
    if (j->s >= j->end || *j->s != ch) {
        char m[48];
        snprintf(m, sizeof m, "expected '%c'", ch);
        return jfail(j, m);
    }
    j->s++;
    return 0;
}

static int peek(jp *j, char ch)
{
    ws(j);
    return j->s < j->end && *j->s == ch;
}

/* Takes a ',' between members if one comes next: whether the list goes on. */
static int more(jp *j)
{
    if (!peek(j, ','))
        return 0;
    j->s++;
    return 1;
}

/* Reads a string (no escapes other than \" \\ \/ needed; others are rejected). */
static int jstring(jp *j, char *out, size_t cap)
{
    if (expect(j, '"'))
        return -1;
    size_t k = 0;
    while (j->s < j->end && *j->s != '"') {
        char ch = *j->s++;
        if ((unsigned char)ch < 0x20)
            return jfail(j, "control character in a string");
        if (ch == '\\') {
            if (j->s >= j->end)
                return jfail(j, "unterminated string");
            ch = *j->s++;
            if (ch != '"' && ch != '\\' && ch != '/')
                return jfail(j, "unsupported escape in a string");
        }
        if (k + 1 >= cap)
            return jfail(j, "string too long");
        out[k++] = ch;
    }
    if (j->s >= j->end)
        return jfail(j, "unterminated string");
    j->s++;
    out[k] = 0;
    return 0;
}

static int juint(jp *j, uint64_t *v)
{
    ws(j);
    if (j->s >= j->end || *j->s < '0' || *j->s > '9')
        return jfail(j, "expected a non-negative integer");
    uint64_t x = 0;
    while (j->s < j->end && *j->s >= '0' && *j->s <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return jfail(j, "integer too large");
        x = x * 10 + (uint64_t)(*j->s++ - '0');
    }
    *v = x;
    return 0;
}

static int juint_array(jp *j, uint64_t *v, int max, int *n)
{
    if (expect(j, '['))
        return -1;
    *n = 0;
    if (peek(j, ']')) {
        j->s++;
        return 0;
    }
    for (;;) {
        if (*n >= max)
            return jfail(j, "array too long");
        if (juint(j, &v[(*n)++]))
            return -1;
        if (!more(j))
            return expect(j, ']');
    }
}

typedef struct meta {
    char key[48][32];
    char val[48][64];
    int n;
} meta;

static const char *mget(const meta *m, const char *k)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->key[i], k))
            return m->val[i];
    return NULL;
}

typedef struct tinfo {
    char name[64];
    char dtype[16];
    uint64_t shape[4];
    int ndim;
    uint64_t off[2];
} tinfo;

static int parse_header(jp *j, meta *m, tinfo *ti, int *nt)
{
    *nt = 0;
    m->n = 0;
    int have_meta = 0;
    if (expect(j, '{'))
        return -1;
    if (peek(j, '}'))
        return jfail(j, "no tensors");
    for (;;) {
        char key[128];
        if (jstring(j, key, sizeof key) || expect(j, ':') || expect(j, '{'))
            return -1;
        if (!strcmp(key, "__metadata__")) {
            if (have_meta++)
                return jfail(j, "two __metadata__ entries");
            if (!peek(j, '}'))
                for (;;) {
                    if (m->n >= 48)
                        return jfail(j, "too many __metadata__ entries");
                    if (jstring(j, m->key[m->n], sizeof m->key[0]) || expect(j, ':') ||
                        jstring(j, m->val[m->n], sizeof m->val[0]))
                        return -1;
                    m->n++;
                    if (!more(j))
                        break;
                }
            if (expect(j, '}'))
                return -1;
        } else {
            if (*nt >= MAX_TENSORS)
                return jfail(j, "too many tensors");
            tinfo *t = &ti[(*nt)++];
            memset(t, 0, sizeof *t);
            if (strlen(key) >= sizeof t->name)
                return jfail(j, "tensor name too long");
            memcpy(t->name, key, strlen(key) + 1);
            int got = 0;
            for (;;) {
                char f[32];
                if (jstring(j, f, sizeof f) || expect(j, ':'))
                    return -1;
                int n2;
                if (!strcmp(f, "dtype")) {
                    if (jstring(j, t->dtype, sizeof t->dtype))
                        return -1;
                    got |= 1;
                } else if (!strcmp(f, "shape")) {
                    if (juint_array(j, t->shape, 4, &t->ndim))
                        return -1;
                    got |= 2;
                } else if (!strcmp(f, "data_offsets")) {
                    if (juint_array(j, t->off, 2, &n2))
                        return -1;
                    if (n2 != 2)
                        return jfail(j, "data_offsets needs two numbers");
                    got |= 4;
                } else {
                    return jfail(j, "unknown tensor field");
                }
                if (!more(j))
                    break;
            }
            if (expect(j, '}'))
                return -1;
            if (got != 7)
                return jfail(j, "tensor entry lacks dtype, shape or data_offsets");
        }
        if (!more(j))
            break;
    }
    if (expect(j, '}'))
        return -1;
    ws(j);
    if (j->s != j->end)
        return jfail(j, "trailing characters after the header object");
    return 0;
}

/* --------------------------------------------------------------------- load ----- */

static int meta_double(const meta *m, const char *k, double *v, const char *path,
                       dpt_error *err)
{
    const char *s = mget(m, k);
    if (!s)
        return dpt_seterr(err, DPT_EINPUT, "%s: checkpoint metadata lacks '%s'", path, k);
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno == ERANGE)
        return dpt_seterr(err, DPT_EINPUT, "%s: checkpoint metadata '%s' = '%s' is not a "
                          "number", path, k, s);
    *v = x;
    return DPT_OK;
}

static int cmp_off(const void *a, const void *b)
{
    const tinfo *x = *(tinfo *const *)a, *y = *(tinfo *const *)b;
    return (x->off[0] > y->off[0]) - (x->off[0] < y->off[0]);
}

int dpt_checkpoint_load(const char *path, dpt_net **out, dpt_train_state *st,
                        dpt_error *err)
{
    *out = NULL;
    if (st)
        dpt_train_state_init(st);
    int rc = DPT_EINPUT;
    char *hdr = NULL;
    tinfo *ti = NULL;
    dpt_net *net = NULL;
    float *best = NULL; /* train.best, until handed to st */
    FILE *f = fopen(path, "rb");
    if (!f)
        return dpt_seterr(err, DPT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return dpt_seterr(err, DPT_EINPUT, "%s: not a regular file", path);
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char len8[8];
    if (fsize < 8 || fread(len8, 1, 8, f) != 8) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: truncated: %llu bytes, a safetensors file "
                        "starts with an 8-byte header length", path, (unsigned long long)fsize);
        goto out;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)len8[i] << (8 * i);
    if (hlen < 2 || hlen > MAX_HEADER || hlen > fsize - 8) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: bad header length %llu (file has %llu bytes "
                        "after the length, limit %u)", path, (unsigned long long)hlen,
                        (unsigned long long)(fsize - 8), MAX_HEADER);
        goto out;
    }
    hdr = malloc(hlen);
    ti = malloc(sizeof *ti * MAX_TENSORS);
    if (!hdr || !ti) {
        rc = dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
        goto out;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: truncated inside the header", path);
        goto out;
    }
    meta m;
    int nt;
    jp j = { hdr, hdr + hlen, hdr, path, err, 0 };
    if (parse_header(&j, &m, ti, &nt)) {
        rc = DPT_EINPUT;
        goto out;
    }
    const char *fmt = mget(&m, "format"), *arch = mget(&m, "arch");
    if (!fmt || strcmp(fmt, "dptrain") || !arch) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: not a dptrain checkpoint (its __metadata__ "
                        "lacks format \"dptrain\" and an arch)", path);
        goto out;
    }
    dpt_config cfg;
    dpt_config_default(&cfg);
    {
        dpt_error e2;
        if (dpt_parse_arch(arch, &cfg, &e2)) {
            rc = dpt_seterr(err, DPT_EINPUT, "%.200s: checkpoint metadata: %.280s", path,
                            e2.msg);
            goto out;
        }
    }
    const char *opt = mget(&m, "optimizer");
    if (!opt || dpt_optimizer_parse(opt, &cfg.optimizer)) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: checkpoint metadata: unknown optimizer '%s'",
                        path, opt ? opt : "");
        goto out;
    }
    struct { const char *k; double v; } num[] = {
        { "lr", 0 }, { "momentum", 0 }, { "nesterov", 0 }, { "beta1", 0 }, { "beta2", 0 },
        { "eps", 0 }, { "weight_decay", 0 }, { "l2", 0 }, { "dropout", 0 },
        { "batchnorm", 0 }, { "bn_before", 0 }, { "bn_momentum", 0 }, { "bn_eps", 0 },
        { "batch", 0 }, { "epochs", 0 }, { "val_split", 0 }, { "eval_every", 0 },
        { "patience", 0 }, { "min_delta", 0 }, { "seed", 0 }, { "step", 0 } };
    enum { NNUM = sizeof num / sizeof num[0] };
    for (int i = 0; i < NNUM; i++)
        if ((rc = meta_double(&m, num[i].k, &num[i].v, path, err)))
            goto out;
    cfg.lr = (float)num[0].v, cfg.momentum = (float)num[1].v, cfg.nesterov = num[2].v != 0;
    cfg.beta1 = (float)num[3].v, cfg.beta2 = (float)num[4].v, cfg.eps = (float)num[5].v;
    cfg.weight_decay = (float)num[6].v, cfg.l2 = (float)num[7].v, cfg.dropout = (float)num[8].v;
    cfg.batchnorm = num[9].v != 0, cfg.bn_before = num[10].v != 0;
    cfg.bn_momentum = (float)num[11].v, cfg.bn_eps = (float)num[12].v;
    cfg.batch = num[13].v >= 1 && num[13].v <= DPT_MAX_BATCH ? (int)num[13].v : 0;
    cfg.epochs = num[14].v >= 0 && num[14].v < 1e9 ? (int)num[14].v : -1;
    cfg.val_split = num[15].v;
    cfg.eval_every = num[16].v >= 0 && num[16].v < 1e9 ? (int)num[16].v : -1;
    cfg.patience = num[17].v >= 0 && num[17].v < 1e9 ? (int)num[17].v : -1;
    cfg.min_delta = (float)num[18].v;
    const char *seed_s = mget(&m, "seed"), *step_s = mget(&m, "step");
    cfg.seed = strtoull(seed_s, NULL, 10);
    {
        dpt_error e2;
        if (dpt_config_check(&cfg, &e2)) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: checkpoint metadata: %s", path, e2.msg);
            goto out;
        }
    }
    net = dpt_net_create(&cfg, NULL);
    if (!net) {
        rc = dpt_seterr(err, DPT_EFAIL, "%s: out of memory for the network", path);
        goto out;
    }
    net->step = strtoull(step_s, NULL, 10);
    int with_state = mget(&m, "state") != NULL;
    tdesc want[MAX_TENSORS];
    int with_best = 0;
    for (int i = 0; i < nt; i++)
        if (!strcmp(ti[i].name, "train.best"))
            with_best = 1;
    int nw = describe(net, with_state, with_best, want);

    /* Offsets: within the data, matching dtype and shape, and tiling it exactly. */
    uint64_t dsize = fsize - 8 - hlen;
    tinfo *sorted[MAX_TENSORS];
    for (int i = 0; i < nt; i++) {
        tinfo *t = &ti[i];
        sorted[i] = t;
        tdesc *d = NULL;
        for (int k = 0; k < nw; k++)
            if (!strcmp(want[k].name, t->name))
                d = &want[k];
        if (!d) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: unexpected tensor '%s' for a %s network",
                            path, t->name, arch);
            goto out;
        }
        if (d->seen++) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: tensor '%s' appears twice", path, t->name);
            goto out;
        }
        if (strcmp(t->dtype, "F32")) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: tensor '%s' has dtype %s, expected F32",
                            path, t->name, t->dtype);
            goto out;
        }
        int shape_ok = t->ndim == d->ndim && t->shape[0] == d->shape[0] &&
                       (d->ndim == 1 || t->shape[1] == d->shape[1]);
        if (!shape_ok) {
            char got[64] = "", exp[64];
            size_t k = 0;
            for (int q = 0; q < t->ndim && k < sizeof got; q++)
                k += snprintf(got + k, sizeof got - k, q ? ", %llu" : "%llu",
                              (unsigned long long)t->shape[q]);
            if (d->ndim == 2)
                snprintf(exp, sizeof exp, "%zu, %zu", d->shape[0], d->shape[1]);
            else
                snprintf(exp, sizeof exp, "%zu", d->shape[0]);
            rc = dpt_seterr(err, DPT_EINPUT, "%s: tensor '%s' has shape [%s], expected [%s] "
                            "for arch %s", path, t->name, got, exp, arch);
            goto out;
        }
        if (t->off[0] > t->off[1] || t->off[1] > dsize ||
            t->off[1] - t->off[0] != d->numel * sizeof(float)) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: tensor '%s' has data_offsets [%llu, %llu] "
                            "that do not fit its %zu floats within the %llu data bytes",
                            path, t->name, (unsigned long long)t->off[0],
                            (unsigned long long)t->off[1], d->numel,
                            (unsigned long long)dsize);
            goto out;
        }
    }
    for (int k = 0; k < nw; k++)
        if (!want[k].seen) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: tensor '%s' is missing", path, want[k].name);
            goto out;
        }
    qsort(sorted, (size_t)nt, sizeof sorted[0], cmp_off);
    uint64_t pos = 0;
    for (int i = 0; i < nt; i++) {
        if (sorted[i]->off[0] != pos) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: tensor '%s' %s (data_offsets must tile the "
                            "data without gaps or overlaps)", path, sorted[i]->name,
                            sorted[i]->off[0] < pos ? "overlaps another" : "leaves a gap");
            goto out;
        }
        pos = sorted[i]->off[1];
    }
    if (pos != dsize) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: %llu bytes after the last tensor", path,
                        (unsigned long long)(dsize - pos));
        goto out;
    }
    /* Everything checked: read the data. */
    if (with_best && st) {
        best = malloc((net->nparams + net->nstats) * sizeof(float));
        if (!best) {
            rc = dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
            goto out;
        }
    }
    for (int i = 0; i < nt; i++) {
        tinfo *t = &ti[i];
        tdesc *d = NULL;
        for (int k = 0; k < nw; k++)
            if (!strcmp(want[k].name, t->name))
                d = &want[k];
        if (fseeko(f, (off_t)(8 + hlen + t->off[0]), SEEK_SET) != 0) {
            rc = dpt_seterr(err, DPT_EFAIL, "%s: seek failed", path);
            goto out;
        }
        if (d->wdst) {
            size_t out_n = d->shape[0], in_n = d->shape[1];
            float *row = malloc(sizeof(float) * in_n);
            if (!row) {
                rc = dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
                goto out;
            }
            for (size_t o = 0; o < out_n; o++) {
                if (fread(row, sizeof(float), in_n, f) != in_n) {
                    free(row);
                    rc = dpt_seterr(err, DPT_EINPUT, "%s: truncated in '%s'", path, t->name);
                    goto out;
                }
                for (size_t k = 0; k < in_n; k++)
                    d->wdst[k * out_n + o] = row[k];
            }
            free(row);
        } else {
            float *dst = !strcmp(t->name, "train.best") ? best : d->dst;
            if (!dst) /* train.best without st: skip */
                continue;
            if (fread(dst, sizeof(float), d->numel, f) != d->numel) {
                rc = dpt_seterr(err, DPT_EINPUT, "%s: truncated in '%s'", path, t->name);
                goto out;
            }
        }
    }
    if (st && with_state) {
        double v[6];
        const char *ks[6] = { "epoch", "batch_in_epoch", "best_cost", "best_epoch",
                              "bad_evals", "stopped" };
        for (int i = 0; i < 6; i++)
            if ((rc = meta_double(&m, ks[i], &v[i], path, err)))
                goto out;
        if (!(v[0] >= 0 && v[0] <= cfg.epochs && v[1] >= 0 && v[1] < 1e12)) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: checkpoint metadata: epoch/batch out of "
                            "range", path);
            goto out;
        }
        st->epoch = (int)v[0];
        st->batch = (size_t)v[1];
        st->best_cost = v[2];
        st->best_epoch = (int)v[3];
        st->bad_evals = (int)v[4];
        st->stopped = v[5] != 0;
        const char *dh = mget(&m, "data_hash"); /* absent in a hand-made file: unchecked */
        st->data_hash = dh ? strtoull(dh, NULL, 10) : 0;
        st->best = best;
        best = NULL;
    }
    *out = net;
    net = NULL;
    rc = DPT_OK;
out:
    fclose(f);
    free(hdr);
    free(ti);
    free(best);
    dpt_net_free(net);
    return rc;
}
