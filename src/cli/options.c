/* Option parsing shared by the subcommands: flags, values checked for range, and
 * --config files whose lines the command line overrides. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const dpt_error *err)
{
    fprintf(stderr, "dptrain: error: %s\n", err->msg);
    return err->code == DPT_EINPUT ? 2 : 1;
}

int cli_failf(int code, const char *fmt, ...)
{
    dpt_error e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    e.code = code;
    return cli_fail(&e);
}

static const char *flags[] = { "batchnorm", "bn-before", "nesterov", "quiet", "no-batchnorm",
                               "help", NULL };

int cli_is_flag(const char *name)
{
    for (int i = 0; flags[i]; i++)
        if (!strcmp(flags[i], name))
            return 1;
    return 0;
}

static int num(const char *where, const char *v, double lo, double hi, double *out,
               dpt_error *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno == ERANGE || !isfinite(x))
        return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not a number", where, v);
    if (!(x >= lo && x <= hi))
        return dpt_seterr(err, DPT_EINPUT, "%s: %s is out of range [%g, %g]", where, v, lo, hi);
    *out = x;
    return DPT_OK;
}

static int integer(const char *where, const char *v, long lo, long hi, long *out,
                   dpt_error *err)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno == ERANGE)
        return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not a whole number", where, v);
    if (x < lo || x > hi)
        return dpt_seterr(err, DPT_EINPUT, "%s: %s is out of range [%ld, %ld]", where, v, lo,
                          hi);
    *out = x;
    return DPT_OK;
}

static int boolean(const char *where, const char *v, int *out, dpt_error *err)
{
    if (!v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
        *out = 0;
    else
        return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not true or false", where, v);
    return DPT_OK;
}

/* Option strings are copied (a config file's line buffer is reused) and live until the
 * process exits, when they are released. */
static char **owned;
static size_t nowned, capowned;

static void release(void)
{
    while (nowned > 0)
        free(owned[--nowned]);
    free(owned);
}

static const char *keep(const char *v)
{
    if (nowned == capowned) {
        size_t nc = capowned ? 2 * capowned : 16;
        char **no = realloc(owned, nc * sizeof *no);
        if (!no)
            abort(); /* a few bytes: nothing sensible is left to do */
        if (!owned)
            atexit(release);
        owned = no;
        capowned = nc;
    }
    char *s = strdup(v);
    if (!s)
        abort();
    owned[nowned++] = s;
    return s;
}

int cli_set(cli *c, const char *name, const char *v, const char *where, dpt_error *err)
{
    dpt_config *g = &c->cfg;
    double d;
    long n;
    int rc = DPT_OK;
#define NUM(lo, hi) if ((rc = num(where, v, lo, hi, &d, err))) return rc
#define INT(lo, hi) if ((rc = integer(where, v, lo, hi, &n, err))) return rc
    if (!strcmp(name, "data"))
        c->data = keep(v);
    else if (!strcmp(name, "arch")) {
        dpt_error e2;
        if (dpt_parse_arch(v, g, &e2))
            return dpt_seterr(err, DPT_EINPUT, "%s: %s", where,
                              strchr(e2.msg, ':') ? strchr(e2.msg, ':') + 2 : e2.msg);
    } else if (!strcmp(name, "optimizer")) {
        if (dpt_optimizer_parse(v, &g->optimizer))
            return dpt_seterr(err, DPT_EINPUT, "%s: unknown optimizer '%s' (sgd, momentum, "
                              "adam, adamw)", where, v);
    } else if (!strcmp(name, "lr")) {
        NUM(1e-12, 1e3);
        g->lr = (float)d;
    } else if (!strcmp(name, "momentum")) {
        NUM(0, 0.999999);
        g->momentum = (float)d;
    } else if (!strcmp(name, "nesterov"))
        rc = boolean(where, v, &g->nesterov, err);
    else if (!strcmp(name, "beta1")) {
        NUM(0, 0.999999);
        g->beta1 = (float)d;
    } else if (!strcmp(name, "beta2")) {
        NUM(0, 0.999999999);
        g->beta2 = (float)d;
    } else if (!strcmp(name, "eps")) {
        NUM(1e-30, 1);
        g->eps = (float)d;
    } else if (!strcmp(name, "batch")) {
        INT(1, DPT_MAX_BATCH);
        g->batch = (int)n;
    } else if (!strcmp(name, "epochs")) {
        INT(0, 100000);
        g->epochs = (int)n;
    } else if (!strcmp(name, "dropout")) {
        NUM(0, 1);
        if (d >= 1)
            return dpt_seterr(err, DPT_EINPUT, "%s: %s must be below 1 (the probability of "
                              "dropping a unit)", where, v);
        g->dropout = (float)d;
    } else if (!strcmp(name, "l2")) {
        NUM(0, 1e6);
        g->l2 = (float)d;
    } else if (!strcmp(name, "weight-decay")) {
        NUM(0, 1e3);
        g->weight_decay = (float)d;
    } else if (!strcmp(name, "batchnorm"))
        rc = boolean(where, v, &g->batchnorm, err);
    else if (!strcmp(name, "no-batchnorm"))
        g->batchnorm = 0;
    else if (!strcmp(name, "bn-before")) {
        rc = boolean(where, v, &g->bn_before, err);
        if (g->bn_before)
            g->batchnorm = 1;
    } else if (!strcmp(name, "bn-momentum")) {
        NUM(0, 1);
        g->bn_momentum = (float)d;
    } else if (!strcmp(name, "val-split")) {
        NUM(0, 0.99);
        g->val_split = d;
    } else if (!strcmp(name, "eval-every")) {
        INT(0, 1000000000);
        g->eval_every = (int)n;
    } else if (!strcmp(name, "patience")) {
        INT(0, 1000000);
        g->patience = (int)n;
    } else if (!strcmp(name, "min-delta")) {
        NUM(0, 1e9);
        g->min_delta = (float)d;
    } else if (!strcmp(name, "threads")) {
        if (strchr(v, ',')) { /* bench: a list */
            if (strlen(v) >= sizeof c->threads_list)
                return dpt_seterr(err, DPT_EINPUT, "%s: list too long", where);
            for (const char *p = v; *p; p++)
                if (!isdigit((unsigned char)*p) && *p != ',')
                    return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not a list of thread "
                                      "counts such as 1,2,4", where, v);
            strcpy(c->threads_list, v);
        } else if (!strcmp(v, "auto")) { /* train, sweep: the default, said */
            g->threads = 0;
            strcpy(c->threads_list, "auto");
        } else {
            INT(1, 1024);
            g->threads = (int)n;
            snprintf(c->threads_list, sizeof c->threads_list, "%ld", n);
        }
    } else if (!strcmp(name, "bind")) {
        if (!strcmp(v, "core"))
            g->bind = 1;
        else if (!strcmp(v, "none"))
            g->bind = 0;
        else
            return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not core or none", where, v);
    } else if (!strcmp(name, "seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (end == v || *end || errno == ERANGE || v[0] == '-')
            return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not a non-negative whole number",
                              where, v);
        g->seed = s;
    } else if (!strcmp(name, "save"))
        c->save = keep(v);
    else if (!strcmp(name, "resume"))
        c->resume = keep(v);
    else if (!strcmp(name, "log"))
        c->log = keep(v);
    else if (!strcmp(name, "json"))
        c->json = keep(v);
    else if (!strcmp(name, "model"))
        c->model = keep(v);
    else if (!strcmp(name, "grid"))
        c->grid = keep(v);
    else if (!strcmp(name, "table"))
        c->table = keep(v);
    else if (!strcmp(name, "quiet"))
        rc = boolean(where, v, &c->quiet, err);
    else if (!strcmp(name, "count")) {
        INT(1, 100000000);
        c->count = (int)n;
    } else if (!strcmp(name, "steps")) {
        INT(1, 100000000);
        c->steps = (int)n;
    } else if (!strcmp(name, "warmup")) {
        INT(0, 100000000);
        c->warmup = (int)n;
    } else if (!strcmp(name, "stop-after")) {
        INT(1, 1000000000);
        c->stop_after = (size_t)n;
    } else if (!strcmp(name, "vary")) {
        if (c->nvary >= 2)
            return dpt_seterr(err, DPT_EINPUT, "%s: at most two --vary", where);
        if (!strchr(v, '=') || strchr(v, '=') == v || !strchr(v, '=')[1])
            return dpt_seterr(err, DPT_EINPUT, "%s: '%s' is not NAME=v1,v2,...", where, v);
        c->vary[c->nvary++] = keep(v);
    } else
        return dpt_seterr(err, DPT_EINPUT, "%s: unknown option", where);
#undef NUM
#undef INT
    return rc;
}

int cli_word_in(const char *allowed, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = allowed; (p = strstr(p, name)); p += n)
        if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

static int read_config(cli *c, const char *path, const char *allowed, dpt_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dpt_seterr(err, DPT_EINPUT, "--config: %s: %s", path, strerror(errno));
    char line[1024];
    int ln = 0, rc = DPT_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        ln++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        char where[600];
        if (!eq) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s:%d: expected 'key = value'", path, ln);
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        snprintf(where, sizeof where, "%.400s:%d: %.100s", path, ln, key);
        if (!cli_word_in(allowed, key) || !strcmp(key, "config"))
            rc = dpt_seterr(err, DPT_EINPUT, "%s: unknown option", where);
        else
            rc = cli_set(c, key, val, where, err);
    }
    fclose(f);
    return rc;
}

int cli_parse(cli *c, int argc, char **argv, const char *allowed, dpt_error *err)
{
    /* pass 1: --config FILE (the file's values come first) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return dpt_seterr(err, DPT_EINPUT, "--config: missing value");
            int rc = read_config(c, argv[i + 1], allowed, err);
            if (rc)
                return rc;
            c->config = argv[i + 1];
            i++;
        } else if (!strncmp(argv[i], "--config=", 9)) {
            int rc = read_config(c, argv[i] + 9, allowed, err);
            if (rc)
                return rc;
            c->config = argv[i] + 9;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2])
            return dpt_seterr(err, DPT_EINPUT, "%s: unexpected argument (options start with "
                              "--; see --help)", a);
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name)
            return dpt_seterr(err, DPT_EINPUT, "%.80s: unknown option", a);
        memcpy(name, a + 2, len);
        name[len] = 0;
        char where[80];
        snprintf(where, sizeof where, "--%s", name);
        if (!cli_word_in(allowed, name))
            return dpt_seterr(err, DPT_EINPUT, "%s: unknown option for this command (see "
                              "--help)", where);
        if (eq)
            val = eq + 1;
        else if (!cli_is_flag(name)) {
            if (i + 1 >= argc)
                return dpt_seterr(err, DPT_EINPUT, "%s: missing value", where);
            val = argv[++i];
        }
        if (!strcmp(name, "config"))
            continue;
        int rc = cli_set(c, name, val, where, err);
        if (rc)
            return rc;
    }
    return DPT_OK;
}

int cli_begin(cli *c, int argc, char **argv, const char *help, const char *allowed,
              int *done)
{
    *done = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(help, stdout);
            *done = 1;
            return 0;
        }
    memset(c, 0, sizeof *c);
    dpt_config_default(&c->cfg);
    dpt_error err = { 0 };
    return cli_parse(c, argc, argv, allowed, &err) ? cli_fail(&err) : 0;
}

int cli_load(const cli *c, int which, int classes, dpt_dataset *ds, dpt_error *err)
{
    return dpt_dataset_load_dir(c->data ? c->data : "data/mnist", which, classes, ds, err);
}

int cli_check_arch(const dpt_config *cfg, const dpt_dataset *ds, dpt_error *err)
{
    if ((size_t)cfg->sizes[0] != ds->dim)
        return dpt_seterr(err, DPT_EINPUT, "--arch: the first size %d does not match the "
                          "data's %ux%u = %zu pixels", cfg->sizes[0], ds->rows, ds->cols,
                          ds->dim);
    if (cfg->sizes[cfg->nlayers] < ds->classes)
        return dpt_seterr(err, DPT_EINPUT, "--arch: the last size %d is fewer than the "
                          "data's %d classes", cfg->sizes[cfg->nlayers], ds->classes);
    return DPT_OK;
}
