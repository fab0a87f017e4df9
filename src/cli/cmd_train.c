/* dptrain train: the main job. Validates everything before any work, trains with
 * progress, checkpoints at each epoch end (atomically), and ends with the summary lines
 * scripts read. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: dptrain train [options]\n"
    "\n"
    "  --data DIR            IDX data directory (default data/mnist)\n"
    "  --arch A              layer sizes, e.g. 784-128-64-10 (default)\n"
    "  --optimizer O         sgd | momentum | adam | adamw (default adam)\n"
    "  --lr F                learning rate (default 0.001)\n"
    "  --momentum F          SGD momentum (default 0.9), --nesterov for Nesterov\n"    "  --beta1 F --beta2 F --eps F   Adam(W) moments and epsilon (0.9, 0.999, 1e-8)\n"
    "  --batch N             mini-batch size (default 32)\n"
    "  --epochs N            epochs (default 10)\n"
    "  --dropout P           dropout probability on hidden layers (default 0.2)\n"
    "  --l2 LAMBDA           add LAMBDA/(2m) * sum(w^2) to the cost (default 0)\n"
    "  --weight-decay WD     PyTorch weight decay; decoupled for adamw (default 1e-4)\n"
    "  --batchnorm           batch normalisation after each hidden ReLU\n"
    "  --bn-before           ... placed before the ReLU instead\n"    "  --bn-momentum F       running-statistics momentum (default 0.1, as PyTorch)\n"
    "  --val-split F         validation fraction of the training file (default 0.2)\n"
    "  --eval-every N        also evaluate every N steps (default: each epoch)\n"
    "  --patience N          early stopping after N evaluations without improvement\n"
    "  --min-delta F         improvement that counts (default 1e-5)\n"
    "  --threads N|auto      threads (default auto: up to one per physical core, fewer\n"
    "                        while fewer train faster; the weights are the same)\n"
    "  --bind core|none      pin threads to cores with hwloc (default core)\n"
    "  --seed N              seed of initialisation, split, shuffles, dropout (default 1)\n"
    "  --save FILE           safetensors checkpoint, written at each epoch end and at the end\n"
    "  --resume FILE         continue a checkpointed run (same weights as uninterrupted;\n"
    "                        give the same --data; --epochs, --threads, --patience,\n"
    "                        --eval-every may change, the recipe may not)\n"
    "  --log FILE.csv        learning curve: step,epoch,train_cost,val_cost,val_accuracy,lr,seconds\n"
    "  --json FILE           summary: config, per-epoch metrics, final metrics, timings\n"
    "  --config FILE         'key = value' lines with these option names; flags override\n"
    "  --quiet               only the summary lines\n"
    "\n"
    "Ends with key: value lines: train_seconds, samples_per_s, val_accuracy,\n"
    "test_accuracy, test_cost, fingerprint. Ctrl-C stops after the current steps and\n"
    "saves a resumable checkpoint when --save is given.\n";

static const char allowed[] =
    "data arch optimizer lr momentum nesterov beta1 beta2 eps batch epochs dropout l2 "
    "weight-decay batchnorm no-batchnorm bn-before bn-momentum val-split eval-every patience "
    "min-delta threads bind seed save resume log json config quiet stop-after";

/* Options a resumed run may change; the rest are fixed by the checkpoint. */
static const char resumable[] =
    "data epochs threads bind save resume log json config quiet stop-after patience "
    "eval-every min-delta";

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct run {
    cli *c;
    progress_ui ui;
    /* per-epoch metrics for --json */
    struct epoch_rec {
        int epoch;
        uint64_t step;
        double train_cost, train_acc, val_cost, val_acc, seconds;
        int has_val;
    } *ep;
    int nep, cap;
} run;

static void on_progress(void *ud, const dpt_progress *p)
{
    run *r = ud;
    progress_cb(&r->ui, p);
    if (p->event != DPT_EV_EPOCH)
        return;
    if (r->nep == r->cap) {
        int nc = r->cap ? 2 * r->cap : 16;
        struct epoch_rec *ne = realloc(r->ep, sizeof *ne * (size_t)nc);
        if (!ne)
            return;
        r->ep = ne;
        r->cap = nc;
    }
    r->ep[r->nep++] = (struct epoch_rec){ p->epoch, p->step, p->train_cost, p->train_accuracy,
                                          p->val.cost, p->val.accuracy, p->seconds,
                                          p->has_val };
}

static int on_stop(void *ud)
{
    (void)ud;
    return interrupted;
}

static int on_epoch_end(void *ud, dpt_net *net, const dpt_train_state *st, dpt_error *err)
{
    run *r = ud;
    return r->c->save ? dpt_checkpoint_save(r->c->save, net, st, err) : DPT_OK;
}

static int opt_given(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, n) &&
            (argv[i][2 + n] == 0 || argv[i][2 + n] == '='))
            return 1;
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* JSON numbers: NaN/Inf become null. */
static void json_num(FILE *f, double v)
{
    if (v != v || v > 1e308 || v < -1e308)
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

static int write_json(const char *path, const run *r, const dpt_net *net,
                      const dpt_train_result *res, uint64_t fp, dpt_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return dpt_seterr(err, DPT_EFAIL, "%s: cannot write: %s", path, strerror(errno));
    const dpt_config *c = dpt_net_config(net);
    char arch[256];
    dpt_format_arch(c, arch, sizeof arch);
    fprintf(f, "{\n  \"config\": {\"arch\": ");
    json_str(f, arch);
    fprintf(f, ", \"optimizer\": ");
    json_str(f, dpt_optimizer_name(c->optimizer));
    fprintf(f, ", \"lr\": %g, \"batch\": %d, \"epochs\": %d, \"dropout\": %g, \"l2\": %g, "
               "\"weight_decay\": %g, \"batchnorm\": %s, \"bn_before\": %s, \"val_split\": %g, "
               "\"eval_every\": %d, \"patience\": %d, \"seed\": %llu, \"threads\": %d, "
               "\"data\": ",
            c->lr, c->batch, c->epochs, c->dropout, c->l2, c->weight_decay,
            c->batchnorm ? "true" : "false", c->bn_before ? "true" : "false", c->val_split,
            c->eval_every, c->patience, (unsigned long long)c->seed, res->threads);
    json_str(f, r->c->data ? r->c->data : "data/mnist");
    fprintf(f, "},\n  \"epochs\": [");
    for (int i = 0; i < r->nep; i++) {
        const struct epoch_rec *e = &r->ep[i];
        fprintf(f, "%s\n    {\"epoch\": %d, \"step\": %llu, \"train_cost\": ", i ? "," : "",
                e->epoch, (unsigned long long)e->step);
        json_num(f, e->train_cost);
        fprintf(f, ", \"train_accuracy\": ");
        json_num(f, e->train_acc);
        fprintf(f, ", \"val_cost\": ");
        json_num(f, e->has_val ? e->val_cost : 0.0 / 0.0);
        fprintf(f, ", \"val_accuracy\": ");
        json_num(f, e->has_val ? e->val_acc : 0.0 / 0.0);
        fprintf(f, ", \"seconds\": ");
        json_num(f, e->seconds);
        fputc('}', f);
    }
    fprintf(f, "\n  ],\n  \"final\": {\"epochs_run\": %d, \"stopped_early\": %s, "
               "\"best_epoch\": %d, \"val_accuracy\": ",
            res->epochs_run, res->stopped_early ? "true" : "false", res->best_epoch);
    json_num(f, res->has_val ? res->val.accuracy : 0.0 / 0.0);
    fprintf(f, ", \"val_cost\": ");
    json_num(f, res->has_val ? res->val.cost : 0.0 / 0.0);
    fprintf(f, ", \"test_accuracy\": ");
    json_num(f, res->has_test ? res->test.accuracy : 0.0 / 0.0);
    fprintf(f, ", \"test_cost\": ");
    json_num(f, res->has_test ? res->test.cost : 0.0 / 0.0);
    fprintf(f, ", \"fingerprint\": \"%016llx\"},\n  \"timings\": {\"train_seconds\": ",
            (unsigned long long)fp);
    json_num(f, res->train_seconds);
    fprintf(f, ", \"samples_per_s\": ");
    json_num(f, res->samples_per_s);
    fprintf(f, ", \"sync_share\": ");
    json_num(f, res->sync_share);
    fprintf(f, ", \"threads\": %d, \"threads_mean\": ", res->threads);
    json_num(f, res->threads_mean);
    fprintf(f, ", \"binding\": ");
    json_str(f, res->binding);
    fprintf(f, ", \"kernel\": ");
    json_str(f, dpt_gemm_kernel());
    fprintf(f, "}\n}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return dpt_seterr(err, DPT_EFAIL, "%s: cannot write: %s", path, strerror(errno));
    }
    return DPT_OK;
}

int cmd_train(int argc, char **argv)
{
    cli c;
    int done, rc = cli_begin(&c, argc, argv, help, allowed, &done);
    if (rc || done)
        return rc;
    dpt_error err = { 0 };

    dpt_net *net = NULL;
    int *conf = NULL; /* confusion matrix to print, C x C */
    dpt_train_state st;
    dpt_train_state_init(&st);
    if (c.resume) {
        if (c.config)
            return cli_failf(2, "--config: cannot be combined with --resume (the checkpoint "
                             "holds the configuration)");
        for (int i = 1; i < argc; i++) {
            if (strncmp(argv[i], "--", 2))
                continue;
            char name[64];
            size_t len = strcspn(argv[i] + 2, "=");
            snprintf(name, sizeof name, "%.*s", (int)len, argv[i] + 2);
            if (!cli_word_in(resumable, name))
                return cli_failf(2, "--%s: cannot be changed when resuming (the checkpoint "
                                 "fixes it)", name);
        }
        if (dpt_checkpoint_load(c.resume, &net, &st, &err))
            return cli_fail(&err);
        dpt_config rcfg = *dpt_net_config(net);
        if (opt_given(argc, argv, "epochs"))
            rcfg.epochs = c.cfg.epochs;
        if (opt_given(argc, argv, "threads"))
            rcfg.threads = c.cfg.threads;
        rcfg.bind = c.cfg.bind;
        if (opt_given(argc, argv, "patience"))
            rcfg.patience = c.cfg.patience;
        if (opt_given(argc, argv, "eval-every"))
            rcfg.eval_every = c.cfg.eval_every;
        if (opt_given(argc, argv, "min-delta"))
            rcfg.min_delta = c.cfg.min_delta;
        if (dpt_net_reconfigure(net, &rcfg, &err)) {
            dpt_net_free(net);
            return cli_fail(&err);
        }
        c.cfg = rcfg;
        if (st.epoch > rcfg.epochs) {
            dpt_net_free(net);
            return cli_failf(2, "--epochs: %d is fewer than the %d epochs already done in %s",
                             rcfg.epochs, st.epoch, c.resume);
        }
    } else if (dpt_config_check(&c.cfg, &err)) {
        return cli_fail(&err);
    }

    dpt_dataset train, test;
    if (cli_load(&c, 0, c.cfg.sizes[c.cfg.nlayers], &train, &err)) {
        dpt_net_free(net);
        return cli_fail(&err);
    }
    if (cli_load(&c, 1, c.cfg.sizes[c.cfg.nlayers], &test, &err)) {
        dpt_dataset_free(&train);
        dpt_net_free(net);
        return cli_fail(&err);
    }
    if (cli_check_arch(&c.cfg, &train, &err) || cli_check_arch(&c.cfg, &test, &err)) {
        rc = cli_fail(&err);
        goto done;
    }
    if (!net && !(net = dpt_net_create(&c.cfg, &err))) {
        rc = cli_fail(&err);
        goto done;
    }

    FILE *log = NULL;
    char logtmp[4096] = "";
    if (c.log) {
        snprintf(logtmp, sizeof logtmp, "%s.tmp", c.log);
        if (!(log = fopen(logtmp, "w"))) {
            rc = cli_failf(1, "%s: cannot write: %s", c.log, strerror(errno));
            goto done;
        }
        if (dpt_net_steps(net) > 0) /* resumed: header anyway, so the file stands alone */
            fprintf(log, "step,epoch,train_cost,val_cost,val_accuracy,lr,seconds\n");
    }
    run r = { .c = &c };
    r.ui.tty = isatty(2);
    r.ui.quiet = c.quiet;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    dpt_train_opts o = { .threads = c.cfg.threads, .bind = c.cfg.bind, .adapt = !c.cfg.threads,
                         .progress = on_progress,
                         .ud = &r, .should_stop = on_stop, .stop_after = c.stop_after,
                         .log = log, .epoch_end = on_epoch_end };
    if (!c.quiet) {
        char arch[256];
        dpt_format_arch(&c.cfg, arch, sizeof arch);
        fprintf(stderr, "dptrain: %s %s lr %g batch %d dropout %g%s on %s (%zu train+val, "
                "%zu test)%s\n", arch, dpt_optimizer_name(c.cfg.optimizer), c.cfg.lr,
                c.cfg.batch, c.cfg.dropout, c.cfg.batchnorm ? " batchnorm" : "",
                c.data ? c.data : "data/mnist", train.n, test.n,
                c.resume ? " (resumed)" : "");
    }
    /* the final test evaluation fills the confusion matrix shown for up to 20 classes */
    const int classes = c.cfg.sizes[c.cfg.nlayers];
    conf = !c.quiet && classes <= 20 ? calloc((size_t)classes * classes, sizeof *conf) : NULL;
    o.confusion = conf;
    dpt_train_result res;
    int trc = dpt_train(net, &train, &test, &st, &o, &res, &err);
    progress_done(&r.ui);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (res.bind_warning && !c.quiet)
        fprintf(stderr, "dptrain: warning: %s\n", res.bind_warning);
    if (log) {
        int bad = fclose(log) != 0;
        if (bad || rename(logtmp, c.log) != 0) {
            unlink(logtmp);
            if (!trc)
                trc = dpt_seterr(&err, DPT_EFAIL, "%s: cannot write the log", c.log);
        }
    }
    if (trc) {
        rc = cli_fail(&err);
        free(r.ep);
        goto done;
    }
    if (c.save && dpt_checkpoint_save(c.save, net, &st, &err)) {
        rc = cli_fail(&err);
        free(r.ep);
        goto done;
    }
    uint64_t fp = dpt_net_fingerprint(net);
    if (c.json && write_json(c.json, &r, net, &res, fp, &err)) {
        rc = cli_fail(&err);
        free(r.ep);
        goto done;
    }
    free(r.ep);
    if (res.interrupted && interrupted) {
        fprintf(stderr, "dptrain: interrupted at step %llu%s%s\n",
                (unsigned long long)dpt_net_steps(net), c.save ? "; resume with --resume " : "",
                c.save ? c.save : "");
        rc = 130;
        goto done;
    }
    if (conf && res.has_test) {
        /* per-class confusion matrix of the test set (rows: true class) */
        fprintf(stderr, "confusion matrix (rows: true class, columns: predicted)\n     ");
        for (int j = 0; j < classes; j++)
            fprintf(stderr, "%6d", j);
        fputc('\n', stderr);
        for (int i = 0; i < classes; i++) {
            fprintf(stderr, "%4d ", i);
            for (int j = 0; j < classes; j++)
                fprintf(stderr, "%6d", conf[i * classes + j]);
            fputc('\n', stderr);
        }
    }
    printf("threads: %d\n", res.threads);
    if (!c.cfg.threads) /* auto */
        printf("threads_mean: %.2f\n", res.threads_mean);
    printf("kernel: %s\n", dpt_gemm_kernel());
    printf("epochs_run: %d\n", st.epoch);
    printf("stopped_early: %s\n", res.stopped_early ? "yes" : "no");
    printf("train_seconds: %.3f\n", res.train_seconds);
    printf("samples_per_s: %.0f\n", res.samples_per_s);
    if (res.has_val)
        printf("val_accuracy: %.4f\n", res.val.accuracy);
    else
        printf("val_accuracy: nan\n");
    printf("test_accuracy: %.4f\n", res.test.accuracy);
    printf("test_cost: %.4f\n", res.test.cost);
    printf("fingerprint: %016llx\n", (unsigned long long)fp);
done:
    free(conf);
    dpt_train_state_free(&st);
    dpt_net_free(net);
    dpt_dataset_free(&train);
    dpt_dataset_free(&test);
    return rc;
}
