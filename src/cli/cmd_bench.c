/* dptrain bench: thread scaling of the training step on real data. For each thread
 * count, trains a fixed number of steps (after a warm-up) six times, interleaved with
 * the other counts, and reports the median samples/s, the speedup and efficiency
 * against one thread, and the share of step time in compute, synchronisation (barriers)
 * and the optimiser update. One thread runs on each core of the largest team in turn:
 * on a shared host one core can be slower than another for minutes, and a baseline
 * taken on core 0 alone then flatters or belittles the teams that use both. */
#include "cli.h"
#include "parallel/team.h"

#include <stdlib.h>
#include <string.h>

/* The median of v[first], v[first + step], ... below n (of an even count, the mean of
 * the middle two); ord gets their indices in ascending order of v. */
static double median(const double *v, int first, int step, int n, int *ord)
{
    int m = 0;
    for (int i = first; i < n; i += step) { /* insertion, ascending */
        int j = m++;
        for (; j > 0 && v[ord[j - 1]] > v[i]; j--)
            ord[j] = ord[j - 1];
        ord[j] = i;
    }
    if (m == 0)
        return 0;
    return m % 2 ? v[ord[m / 2]] : (v[ord[m / 2 - 1]] + v[ord[m / 2]]) / 2;
}

static const char help[] =
    "usage: dptrain bench [--threads 1,2,4] [--arch A] [--batch N] [--optimizer O]\n"
    "                     [--data DIR] [--steps N] [--warmup N] [--json FILE] [--bind core|none]\n"
    "\n"
    "Trains --steps steps (default 300, after --warmup 50) per thread count (default\n"
    "1..physical cores), six times each (interleaved), and prints the median samples/s,\n"
    "speedup,\n"
    "parallel efficiency and the time split; --json writes the same for machines.\n"
    "It also measures how long a cache line takes from the first thread's core to the\n"
    "second's and back, before and after the runs (-1 in the JSON with one core).\n"
    "Training options (--dropout, --batchnorm, --lr, ...) apply as in train.\n";

static const char allowed[] =
    "data arch optimizer lr momentum nesterov batch dropout l2 weight-decay batchnorm "
    "no-batchnorm bn-before threads bind seed json steps warmup config quiet";

typedef struct row {
    int threads;
    double sps, compute, sync, update;
} row;

/* How the products treat zeros, for the JSON report (DPTRAIN_SPARSE, dpt_sparse_mode). */
static const char *sparse_name(void)
{
    if (!dpt_gemm_sparse())
        return "off";
    const int m = dpt_sparse_mode();
    return m == DPT_SPARSE_INPUT ? "input" : m == DPT_SPARSE_DZ ? "dz" : "auto";
}

int cmd_bench(int argc, char **argv)
{
    cli c;
    int done, rc = cli_begin(&c, argc, argv, help, allowed, &done);
    if (rc || done)
        return rc;
    dpt_error err = { 0 };
    if (dpt_config_check(&c.cfg, &err))
        return cli_fail(&err);
    int steps = c.steps ? c.steps : 300, warmup = c.warmup ? c.warmup : 50;
    dpt_topology topo;
    dpt_topology_get(&topo);
    int counts[64], nc = 0;
    if (!strcmp(c.threads_list, "auto"))
        return cli_failf(2, "--threads: bench measures the counts it is given (such as "
                         "1,2); 'auto' is for train and sweep");
    if (c.threads_list[0]) {
        for (char *p = c.threads_list; *p && nc < 64;) {
            long v = strtol(p, &p, 10);
            if (v < 1 || v > 1024)
                return cli_failf(2, "--threads: %ld is not in [1, 1024]", v);
            counts[nc++] = (int)v;
            if (*p == ',')
                p++;
        }
    } else {
        for (int t = 1; t <= topo.cores && nc < 64; t++)
            counts[nc++] = t;
    }
    dpt_dataset ds;
    if (cli_load(&c, 0, c.cfg.sizes[c.cfg.nlayers], &ds, &err))
        return cli_fail(&err);
    if (cli_check_arch(&c.cfg, &ds, &err)) {
        dpt_dataset_free(&ds);
        return cli_fail(&err);
    }
    /* a fixed order over the training file, long enough for warm-up + steps */
    size_t need = (size_t)(warmup + steps) * c.cfg.batch;
    uint32_t *order = malloc(need * sizeof *order);
    if (!order) {
        dpt_dataset_free(&ds);
        return cli_failf(1, "out of memory");
    }
    uint32_t *base = malloc(ds.n * sizeof *base);
    for (size_t i = 0; i < ds.n; i++)
        base[i] = (uint32_t)i;
    for (size_t k = 0; k < need; k += ds.n) {
        uint32_t *tmp = malloc(ds.n * sizeof *tmp);
        dpt_shuffle(base, tmp, ds.n, c.cfg.seed, k / ds.n);
        memcpy(order + k, tmp, (need - k < ds.n ? need - k : ds.n) * sizeof *order);
        free(tmp);
    }
    free(base);

    char arch[256];
    dpt_format_arch(&c.cfg, arch, sizeof arch);
    printf("# dptrain bench: %s, %s, batch %d, dropout %g%s, %d steps x 6 per count "
           "(interleaved; medians)\n", arch,
           dpt_optimizer_name(c.cfg.optimizer), c.cfg.batch, c.cfg.dropout,
           c.cfg.batchnorm ? ", batchnorm" : "", steps);
    printf("# machine: %s; %s\n", topo.cpu_model, topo.summary);
    /* The cross-core round trip before and after the runs: on a shared host it moves
     * with the virtual CPUs' placement, and the scaling with it. */
    const double rt0 = dpt_team_roundtrip_ns(c.cfg.bind);
    /* Repetitions are interleaved over the thread counts (1, 2, 1, 2, ...) so that a
     * noisy neighbour hurts every count alike; each count reports its median. */
    enum { REPS = 6 };
    static double sps[64][REPS];
    static dpt_phase_times pts[64][REPS];
    row rows[64] = { { 0 } };
    const char *binding = "none";
    /* one thread's runs go to cores 0, 1, ... of the largest team in turn */
    int most = 1;
    for (int k = 0; k < nc; k++)
        most = counts[k] > most ? counts[k] : most;
    const int spread = c.cfg.bind && most > 1 ? (topo.cores < most ? topo.cores : most) : 1;
    for (int rep = 0; rep < REPS; rep++)
        for (int k = 0; k < nc; k++) {
            dpt_net *net = dpt_net_create(&c.cfg, &err);
            const char *warn = NULL;
            dpt_engine *e = net ? dpt_engine_create(net, c.cfg.batch, counts[k], c.cfg.bind,
                                                    &warn, &err)
                                : NULL;
            if (!e) {
                dpt_net_free(net);
                rc = cli_fail(&err);
                goto out;
            }
            if (warn && k == 0 && rep == 0)
                fprintf(stderr, "dptrain: warning: %s\n", warn);
            binding = dpt_engine_binding(e);
            counts[k] = dpt_engine_threads(e); /* 1 in a build without OpenMP */
            const int core = counts[k] == 1 && spread > 1 ? rep % spread : 0;
            if (core)
                dpt_team_bind(core); /* the engine pinned this thread to core 0 */
            int trc = dpt_engine_train(e, &ds, order, need, c.cfg.batch, 0, (size_t)warmup,
                                       NULL, NULL, &err);
            double t0 = dpt_now();
            if (!trc) {
                dpt_engine_reset_times(e);
                t0 = dpt_now();
                trc = dpt_engine_train(e, &ds, order, need, c.cfg.batch, (size_t)warmup,
                                       (size_t)steps, NULL, NULL, &err);
            }
            sps[k][rep] = (double)steps * c.cfg.batch / (dpt_now() - t0);
            dpt_engine_times(e, &pts[k][rep]);
            if (core)
                dpt_team_bind(0);
            dpt_engine_free(e);
            dpt_net_free(net);
            if (trc) {
                rc = cli_fail(&err);
                goto out;
            }
        }
    for (int k = 0; k < nc; k++) {
        /* the median run, and its time split */
        int ord[REPS];
        const double mid = median(sps[k], 0, 1, REPS, ord);
        const int med = ord[REPS / 2];
        dpt_phase_times pt = pts[k][med];
        double tot = pt.compute + pt.sync + pt.update;
        rows[k] = (row){ counts[k], mid, tot > 0 ? pt.compute / tot : 0,
                         tot > 0 ? pt.sync / tot : 0, tot > 0 ? pt.update / tot : 0 };
    }
    const double rt1 = dpt_team_roundtrip_ns(c.cfg.bind);
    printf("# kernel %s%s, binding %s\n", dpt_gemm_kernel(),
           dpt_gemm_sparse() ? " (sparse first layer)" : "", binding);
    if (rt0 > 0 && rt1 > 0) {
        printf("# cross-core round trip: %.0f ns before the runs, %.0f ns after\n", rt0, rt1);
        if (rt1 > 2 * rt0 || rt0 > 2 * rt1)
            printf("# note: it changed during the runs (the host moved the cores?), so the "
                   "figures may mix two placements\n");
    }
    for (int k = 0; k < nc; k++)
        if (counts[k] == 1 && spread > 1) {
            const int ran = spread < REPS ? spread : REPS;
            printf("# one thread ran on cores 0..%d in turn; each core's median:", ran - 1);
            for (int cr = 0; cr < ran; cr++) {
                int ord[REPS];
                printf(" %.0f", median(sps[k], cr, spread, REPS, ord));
            }
            printf("\n");
            break; /* the first one-thread row (without OpenMP every row is one) */
        }
    printf("%7s %12s %8s %10s %8s %8s %8s\n", "threads", "samples/s", "speedup", "efficiency",
           "compute", "sync", "update");
    /* speedup against the 1-thread row if there is one, else against the first row
     * taken as perfectly parallel */
    double one = rows[0].sps / counts[0];
    for (int k = 0; k < nc; k++)
        if (counts[k] == 1)
            one = rows[k].sps;
    for (int k = 0; k < nc; k++) {
        double sp = rows[k].sps / one;
        printf("%7d %12.0f %7.2fx %9.0f%% %7.1f%% %7.1f%% %7.1f%%\n", rows[k].threads,
               rows[k].sps, sp, 100.0 * sp / rows[k].threads, 100 * rows[k].compute,
               100 * rows[k].sync, 100 * rows[k].update);
    }
    if (c.json) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", c.json);
        FILE *f = fopen(tmp, "w");
        if (!f) {
            rc = cli_failf(1, "%s: cannot write", c.json);
            goto out;
        }
        fprintf(f, "{\"arch\": \"%s\", \"optimizer\": \"%s\", \"batch\": %d, \"steps\": %d, "
                   "\"kernel\": \"%s\", \"sparse\": \"%s\", \"binding\": \"%s\", "
                   "\"cores\": %d, \"roundtrip_ns\": [%.1f, %.1f], \"results\": [",
                arch, dpt_optimizer_name(c.cfg.optimizer), c.cfg.batch, steps,
                dpt_gemm_kernel(), sparse_name(), binding, topo.cores, rt0, rt1);
        for (int k = 0; k < nc; k++)
            fprintf(f, "%s\n  {\"threads\": %d, \"samples_per_s\": %.1f, \"speedup\": %.4f, "
                       "\"compute\": %.4f, \"sync\": %.4f, \"update\": %.4f}",
                    k ? "," : "", rows[k].threads, rows[k].sps,
                    rows[k].sps / one, rows[k].compute, rows[k].sync,
                    rows[k].update);
        fprintf(f, "\n]}\n");
        if (fclose(f) != 0 || rename(tmp, c.json) != 0)
            rc = cli_failf(1, "%s: cannot write", c.json);
    }
out:
    free(order);
    dpt_dataset_free(&ds);
    return rc;
}
