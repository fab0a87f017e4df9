/* --threads auto (dpt_train_opts.adapt): which thread count runs the next steps.
 *
 * The rungs are the counts T, ceil(T / 2), ..., 1, each trained by an engine of its own
 * (the caller's, made when first asked for). Steps run in chunks on the fastest rung
 * measured; every DPT_LADDER_PROBE timed chunks a short run goes to a neighbouring
 * rung, fewer and more threads in turn: DPT_LADDER_WARM steps not timed (a new engine
 * plans and first touches its buffers, and the threads' parts settle), then
 * DPT_LADDER_STEPS timed. Training moves there if that run was 3% faster than the
 * present rung's running mean. The first probe comes after the first timed chunk, so
 * that a one-epoch run gets to use it. Chunks shorter than DPT_LADDER_WARM steps (an
 * epoch's last steps, say) are not timed.
 * DPTRAIN_ADAPT=shuffle (tests) sends every chunk to a random rung for 1 to 16 steps
 * instead: the weights must not change.
 *
 * Why: the host may run the two cores of this machine on one die or on two, and
 * switches every few minutes (README); the small network then trains 1.7x faster on
 * two threads than on one, or 0.93x. The weights do not depend on the thread count,
 * so the choice moves only time. */
#ifndef DPT_TRAIN_LADDER_H
#define DPT_TRAIN_LADDER_H

#include "dptrain.h"

#include <stddef.h>

enum { DPT_LADDER_RUNGS = 11, DPT_LADDER_PROBE = 32, DPT_LADDER_STEPS = 16,
       DPT_LADDER_WARM = 8, DPT_ADAPT_MAX_BATCH = 1024 /* larger: the full team only */ };

typedef struct dpt_ladder {
    int n, cur;                        /* rungs; the one training */
    int count[DPT_LADDER_RUNGS];       /* its thread count */
    struct dpt_engine *eng[DPT_LADDER_RUNGS]; /* the caller's (NULL: not made yet) */
    double rate[DPT_LADDER_RUNGS];     /* samples/s (cur: a running mean), 0: unknown */
    int warm[DPT_LADDER_RUNGS];        /* has run its warm-up */
    int since;                         /* timed chunks on cur since the last probe */
    int down;                          /* the next probe's direction: fewer threads */
    int probe;                         /* the rung being probed, -1: none */
    unsigned long long shuffle;        /* DPTRAIN_ADAPT=shuffle: its generator, else 0 */
} dpt_ladder;

/* Rungs from T threads down to 1 if adapt, else T alone (one rung: never a probe). */
void dpt_ladder_init(dpt_ladder *lad, int T, int adapt);
/* The rung for the next chunk, and the most steps it should run (0: no limit). */
int dpt_ladder_next(dpt_ladder *lad, size_t *most);
/* The probe just asked for cannot run (its engine could not be made): abandons it;
 * returns the present rung (and its limit, 0). */
int dpt_ladder_drop(dpt_ladder *lad, size_t *most);
/* The chunk on rung r ran `steps` steps of `samples` samples in `secs` seconds. */
void dpt_ladder_took(dpt_ladder *lad, int r, size_t steps, size_t samples, double secs);

#endif
