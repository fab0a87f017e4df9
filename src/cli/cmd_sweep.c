/* dptrain sweep: one training per value (or per pair of values, for two --vary) and a
 * Markdown table of the results. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: dptrain sweep --vary NAME=v1,v2,... [--vary NAME2=...] [train options]\n"
    "                     [--table FILE.md]\n"
    "\n"
    "Trains once per value (two --vary make a grid) and prints a Markdown table: the\n"
    "value(s), epochs run (early stopping), train/validation/test accuracy and seconds.\n"
    "NAME is one of batch, dropout, l2, lr, weight-decay, arch, batchnorm, optimizer,\n"
    "epochs, patience, seed, threads.\n";

static const char allowed[] =
    "data arch optimizer lr momentum nesterov beta1 beta2 eps batch epochs dropout l2 "
    "weight-decay batchnorm no-batchnorm bn-before bn-momentum val-split eval-every patience "
    "min-delta threads bind seed config quiet vary table";

static const char *names[] = { "batch", "dropout", "l2", "lr", "weight-decay", "arch",
                               "batchnorm", "optimizer", "epochs", "patience", "seed",
                               "threads", NULL };

typedef struct axis {
    char name[32];
    char *list;       /* the values, split in place */
    char *vals[64];
    int n;
} axis;

static int parse_axis(const char *spec, axis *a)
{
    const char *eq = strchr(spec, '=');
    size_t len = (size_t)(eq - spec);
    if (len >= sizeof a->name)
        len = sizeof a->name - 1;
    memcpy(a->name, spec, len);
    a->name[len] = 0;
    int known = 0;
    for (int i = 0; names[i]; i++)
        known |= !strcmp(names[i], a->name);
    if (!known)
        return cli_failf(2, "--vary: unknown hyperparameter '%s' (batch, dropout, l2, lr, "
                         "weight-decay, arch, batchnorm, optimizer, epochs, patience, seed, "
                         "threads)", a->name);
    char *save = NULL;
    a->list = strdup(eq + 1);
    a->n = 0;
    for (char *t = strtok_r(a->list, ",", &save); t && a->n < 64; t = strtok_r(NULL, ",", &save))
        a->vals[a->n++] = t;
    if (a->n == 0)
        return cli_failf(2, "--vary: no values for %s", a->name);
    return 0;
}

int cmd_sweep(int argc, char **argv)
{
    cli base;
    int done, rc = cli_begin(&base, argc, argv, help, allowed, &done);
    if (rc || done)
        return rc;
    dpt_error err = { 0 };
    if (base.nvary == 0)
        return cli_failf(2, "--vary: missing (e.g. --vary batch=32,64,128)");
    axis ax[2] = { 0 };
    for (int k = 0; k < base.nvary; k++)
        if (parse_axis(base.vary[k], &ax[k])) {
            free(ax[0].list);
            return 2;
        }
    int ny = base.nvary == 2 ? ax[1].n : 1;

    /* Check every combination before any training starts. */
    cli *runs = calloc((size_t)ax[0].n * ny, sizeof *runs);
    for (int i = 0; i < ax[0].n; i++)
        for (int j = 0; j < ny; j++) {
            cli *c = &runs[i * ny + j];
            *c = base;
            for (int k = 0; k < base.nvary; k++) {
                const char *v = ax[k].vals[k == 0 ? i : j];
                char where[64];
                snprintf(where, sizeof where, "--vary %.40s", ax[k].name);
                if (!strcmp(ax[k].name, "batchnorm"))
                    c->cfg.batchnorm = !strcmp(v, "on") || !strcmp(v, "1") || !strcmp(v, "true");
                else if (cli_set(c, ax[k].name, v, where, &err)) {
                    free(runs), free(ax[0].list), free(ax[1].list);
                    return cli_fail(&err);
                }
            }
            if (dpt_config_check(&c->cfg, &err)) {
                free(runs), free(ax[0].list), free(ax[1].list);
                return cli_fail(&err);
            }
        }
    dpt_dataset train, test;
    if (cli_load(&base, 0, 256, &train, &err)) {
        free(runs), free(ax[0].list), free(ax[1].list);
        return cli_fail(&err);
    }
    if (cli_load(&base, 1, 256, &test, &err)) {
        free(runs), free(ax[0].list), free(ax[1].list);
        dpt_dataset_free(&train);
        return cli_fail(&err);
    }
    for (int r = 0; r < ax[0].n * ny; r++)
        if (cli_check_arch(&runs[r].cfg, &train, &err)) {
            rc = cli_fail(&err);
            goto out;
        }

    char *table = NULL;
    size_t tlen = 0;
    FILE *t = open_memstream(&table, &tlen);
    fprintf(t, "| %s |%s%s%s epochs | train acc | val acc | test acc | test cost | seconds |\n",
            ax[0].name, base.nvary == 2 ? " " : "", base.nvary == 2 ? ax[1].name : "",
            base.nvary == 2 ? " |" : "");
    fprintf(t, "|---|%s---|---|---|---|---|---|\n", base.nvary == 2 ? "---|" : "");
    for (int i = 0; i < ax[0].n; i++)
        for (int j = 0; j < ny; j++) {
            cli *c = &runs[i * ny + j];
            dpt_net *net = dpt_net_create(&c->cfg, &err);
            if (!net) {
                rc = cli_fail(&err);
                fclose(t);
                free(table);
                goto out;
            }
            dpt_train_state st;
            dpt_train_state_init(&st);
            dpt_train_opts o = { .threads = c->cfg.threads, .bind = c->cfg.bind,
                                 .adapt = !c->cfg.threads };
            dpt_train_result res;
            if (!base.quiet)
                fprintf(stderr, "sweep: %s=%s%s%s%s ...\n", ax[0].name, ax[0].vals[i],
                        base.nvary == 2 ? " " : "", base.nvary == 2 ? ax[1].name : "",
                        base.nvary == 2 ? "=" : "");
            int trc = dpt_train(net, &train, &test, &st, &o, &res, &err);
            if (trc) {
                /* a diverging value is a result, not the end of the sweep */
                fprintf(t, "| %s |%s%s%s failed: %s | | | | | |\n", ax[0].vals[i],
                        base.nvary == 2 ? " " : "", base.nvary == 2 ? ax[1].vals[j] : "",
                        base.nvary == 2 ? " |" : "", err.msg);
            } else {
                fprintf(t, "| %s |%s%s%s %d%s | %.4f | %.4f | %.4f | %.4f | %.2f |\n",
                        ax[0].vals[i], base.nvary == 2 ? " " : "",
                        base.nvary == 2 ? ax[1].vals[j] : "", base.nvary == 2 ? " |" : "",
                        st.epoch, res.stopped_early ? " (early stop)" : "",
                        res.train.accuracy, res.has_val ? res.val.accuracy : 0.0 / 0.0,
                        res.test.accuracy, res.test.cost, res.train_seconds);
            }
            dpt_train_state_free(&st);
            dpt_net_free(net);
        }
    fclose(t);
    fputs(table, stdout);
    if (base.table) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", base.table);
        FILE *f = fopen(tmp, "w");
        if (!f || fputs(table, f) < 0 || fclose(f) != 0 || rename(tmp, base.table) != 0) {
            unlink(tmp);
            rc = cli_failf(1, "%s: cannot write", base.table);
        }
    }
    free(table);
out:
    free(runs);
    free(ax[0].list);
    free(ax[1].list);
    dpt_dataset_free(&train);
    dpt_dataset_free(&test);
    return rc;
}
