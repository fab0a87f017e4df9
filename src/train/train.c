/* The training loop: epochs of seeded shuffles, evaluation every --eval-every steps and
 * at each epoch end, early stopping on the validation cost (best weights kept and
 * restored), the CSV learning curve, and the final metrics. */
#include "nn/net.h"
#include "train/ladder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dpt_train_state_init(dpt_train_state *s)
{
    memset(s, 0, sizeof *s);
    s->best_cost = INFINITY;
}

void dpt_train_state_free(dpt_train_state *s)
{
    if (s) {
        free(s->best);
        s->best = NULL;
    }
}

/* FNV-1a over the sample count, image size, every label and every 61st pixel byte: a
 * cheap identity of a training set (not a cryptographic one). */
static uint64_t data_hash(const dpt_dataset *ds)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint64_t head[2] = { ds->n, ds->dim };
    const unsigned char *p = (const unsigned char *)head;
    for (size_t i = 0; i < sizeof head; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    for (size_t i = 0; i < ds->n; i++)
        h = (h ^ ds->labels[i]) * 0x100000001b3ull;
    for (size_t i = 0; i < ds->n * ds->dim; i += 61)
        h = (h ^ ds->images[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

static void save_best(dpt_net *net, dpt_train_state *st)
{
    memcpy(st->best, net->params, net->nparams * sizeof(float));
    memcpy(st->best + net->nparams, net->stats, net->nstats * sizeof(float));
}

int dpt_train(dpt_net *net, const dpt_dataset *train, const dpt_dataset *test,
              dpt_train_state *st, const dpt_train_opts *o, dpt_train_result *res,
              dpt_error *err)
{
    const dpt_config *cfg = &net->cfg;
    memset(res, 0, sizeof *res);
    int rc = DPT_OK;
    const int C = net->layer[net->L - 1].out;
    if (train->dim != (size_t)net->layer[0].in)
        return dpt_seterr(err, DPT_EINPUT, "--arch: input size %d does not match the data's "
                          "%zu pixels (%ux%u)", net->layer[0].in, train->dim, train->rows,
                          train->cols);
    if (train->classes > C || (test && test->classes > C))
        return dpt_seterr(err, DPT_EINPUT, "--arch: %d outputs, but the data has %d classes",
                          C, test && test->classes > train->classes ? test->classes
                                                                    : train->classes);
    if (test && test->dim != train->dim)
        return dpt_seterr(err, DPT_EINPUT, "test images are %ux%u but training images are "
                          "%ux%u", test->rows, test->cols, train->rows, train->cols);

    /* A resumed run must see the data it started on, or "exact" means nothing. */
    uint64_t dh = data_hash(train);
    if (st->data_hash && st->data_hash != dh)
        return dpt_seterr(err, DPT_EINPUT, "--data: not the training set this run started "
                          "on (a resumed run needs the same data)");
    st->data_hash = dh;

    uint32_t *tr = NULL, *va = NULL, *order = NULL;
    size_t ntr, nva;
    dpt_engine *eng = NULL;
    dpt_ladder lad = { .n = 0 };
    if ((rc = dpt_split(train->n, cfg->val_split, cfg->seed, &tr, &ntr, &va, &nva, err)))
        return rc;
    order = dpt_alloc(ntr, sizeof *order);
    const char *warn = NULL;
    int B = cfg->batch < (int)ntr ? cfg->batch : (int)ntr;
    eng = order ? dpt_engine_create(net, B, o->threads, o->bind, &warn, err) : NULL;
    if (!order || !eng) {
        rc = order ? (err ? err->code : DPT_EFAIL) : dpt_seterr(err, DPT_EFAIL, "out of memory");
        goto out;
    }
    res->threads = dpt_engine_threads(eng);
    /* Each count tried keeps an engine, whose buffers grow with the batch (~6 MB for
     * the default network at 1024); above that a step is long enough (milliseconds)
     * that the barriers and exchanged lines, which can make one thread faster than
     * two, do not matter, so large batches keep the one full team. */
    dpt_ladder_init(&lad, res->threads, o->adapt && B <= DPT_ADAPT_MAX_BATCH);
    lad.eng[0] = eng;
    double thread_steps = 0;
    res->binding = dpt_engine_binding(eng);
    res->bind_warning = warn;
    res->has_val = nva > 0;
    const int early = cfg->patience > 0 && nva > 0;
    if (early && !st->best) {
        st->best = malloc((net->nparams + net->nstats) * sizeof(float));
        if (!st->best) {
            rc = dpt_seterr(err, DPT_EFAIL, "out of memory");
            goto out;
        }
        save_best(net, st);
    }
    const size_t batches = (ntr + B - 1) / B;
    if (o->log && net->step == 0)
        fprintf(o->log, "step,epoch,train_cost,val_cost,val_accuracy,lr,seconds\n");

    double secs = 0, cost_sum = 0;
    size_t correct = 0, seen = 0, steps_since = 0, done_here = 0;
    res->samples = 0;
    while (st->epoch < cfg->epochs && !st->stopped) {
        dpt_shuffle(tr, order, ntr, cfg->seed, (uint64_t)st->epoch);
        while (st->batch < batches) {
            /* run until the next evaluation point, epoch end, or a chunk of 64 steps */
            size_t chunk = batches - st->batch;
            if (cfg->eval_every > 0) {
                size_t to_eval = cfg->eval_every - net->step % cfg->eval_every;
                chunk = chunk < to_eval ? chunk : to_eval;
            }
            chunk = chunk < 64 ? chunk : 64;
            size_t most;
            int rung = dpt_ladder_next(&lad, &most);
            if (!lad.eng[rung] &&
                !(lad.eng[rung] = dpt_engine_create(net, B, lad.count[rung], o->bind, NULL, NULL)))
                rung = dpt_ladder_drop(&lad, &most); /* no memory for it: stay */
            if (most && chunk > most)
                chunk = most;
            if (o->stop_after && done_here + chunk > o->stop_after)
                chunk = o->stop_after - done_here;
            if (chunk == 0 || (o->should_stop && o->should_stop(o->ud))) {
                res->interrupted = 1;
                goto finish;
            }
            double t0 = dpt_now();
            rc = dpt_engine_train(lad.eng[rung], train, order, ntr, B, st->batch, chunk,
                                  &cost_sum, &correct, err);
            const double took = dpt_now() - t0;
            secs += took;
            const size_t first = st->batch * B, last = (st->batch + chunk) * B,
                         samples = (last < ntr ? last : ntr) - first;
            seen += samples;
            dpt_ladder_took(&lad, rung, chunk, samples, took);
            thread_steps += (double)chunk * lad.count[rung];
            st->batch += chunk;
            steps_since += chunk;
            done_here += chunk;
            if (rc)
                goto out;
            int at_epoch_end = st->batch == batches;
            int at_eval = cfg->eval_every > 0 && net->step % cfg->eval_every == 0;
            dpt_progress p = { .event = DPT_EV_PROGRESS, .epoch = st->epoch + 1,
                               .epochs = cfg->epochs, .batch = st->batch,
                               .batches = batches, .step = net->step,
                               .train_cost = cost_sum / steps_since + dpt_l2_term(net),
                               .train_accuracy = seen ? (double)correct / seen : 0,
                               .seconds = secs, .samples_per_s = (res->samples + seen) / secs };
            double left = (double)(cfg->epochs - st->epoch) * batches - st->batch;
            p.eta = left > 0 ? left * secs / (double)(done_here ? done_here : 1) : 0;
            if (at_eval || at_epoch_end) {
                p.event = at_epoch_end ? DPT_EV_EPOCH : DPT_EV_EVAL;
                if (nva) {
                    p.has_val = 1;
                    if ((rc = dpt_net_evaluate(net, train, va, nva, o->threads, &p.val, NULL,
                                               NULL, NULL, err)))
                        goto out;
                    if (p.val.cost < st->best_cost - cfg->min_delta) {
                        st->best_cost = p.val.cost;
                        st->best_epoch = st->epoch + 1;
                        st->bad_evals = 0;
                        p.improved = 1;
                        if (early)
                            save_best(net, st);
                    } else if (early && ++st->bad_evals >= cfg->patience) {
                        st->stopped = 1;
                    }
                }
                if (o->log)
                    fprintf(o->log, "%llu,%d,%.6f,%.6f,%.6f,%g,%.3f\n",
                            (unsigned long long)net->step, st->epoch + 1, p.train_cost,
                            p.has_val ? p.val.cost : NAN, p.has_val ? p.val.accuracy : NAN,
                            cfg->lr, secs);
                cost_sum = 0;
                steps_since = 0;
                res->samples += seen;
                correct = seen = 0;
            }
            if (o->progress)
                o->progress(o->ud, &p);
            if (st->stopped)
                break;
        }
        if (st->batch == batches) {
            st->epoch++;
            st->batch = 0;
            res->epochs_run++;
        }
        if (o->epoch_end && (rc = o->epoch_end(o->ud, net, st, err)))
            goto out;
    }
finish:
    res->samples += seen;
    res->stopped_early = st->stopped;
    res->best_epoch = st->best_epoch;
    if (early && st->best && (st->stopped || st->epoch >= cfg->epochs)) {
        /* early stopping keeps the best weights */
        memcpy(net->params, st->best, net->nparams * sizeof(float));
        memcpy(net->stats, st->best + net->nparams, net->nstats * sizeof(float));
    }
    res->train_seconds = secs;
    res->threads_mean = done_here ? thread_steps / (double)done_here : res->threads;
    res->samples_per_s = secs > 0 ? res->samples / secs : 0;
    dpt_phase_times pt = { 0 };
    for (int r = 0; r < lad.n; r++) /* every thread count's engine that ran */
        if (lad.eng[r]) {
            dpt_phase_times q;
            dpt_engine_times(lad.eng[r], &q);
            pt.compute += q.compute, pt.sync += q.sync, pt.update += q.update;
        }
    double tot = pt.compute + pt.sync + pt.update;
    res->sync_share = tot > 0 ? pt.sync / tot : 0;
    /* final metrics in inference mode: training split, validation split, test set */
    if ((rc = dpt_net_evaluate(net, train, tr, ntr, o->threads, &res->train, NULL, NULL, NULL,
                               err)))
        goto out;
    if (nva && (rc = dpt_net_evaluate(net, train, va, nva, o->threads, &res->val, NULL, NULL,
                                      NULL, err)))
        goto out;
    if (test) {
        res->has_test = 1;
        if ((rc = dpt_net_evaluate(net, test, NULL, 0, o->threads, &res->test, o->confusion,
                                   NULL, NULL, err)))
            goto out;
    }
out:
    for (int r = 1; r < lad.n; r++)
        dpt_engine_free(lad.eng[r]);
    dpt_engine_free(eng);
    dpt_free(tr);
    dpt_free(va);
    dpt_free(order);
    return rc;
}
