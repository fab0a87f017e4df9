/* The data-parallel step (see "The data-parallel step" in DESIGN.md and the README).
 *
 * One OpenMP parallel region runs many steps. In each step, thread t of T:
 *   1. takes a run of the batch's slices [s0, s1) (the slices depend on B only; the
 *      run is the thread's part, see rebalance) and converts its rows of input;
 *   2. runs forward and backward on its rows, reading the shared parameters in place
 *      and writing only its own rows of the per-batch buffers. Batchnorm layers write
 *      per-slice partial sums, wait at a barrier, and every thread merges all slices in
 *      slice order (in double), so the whole-batch statistics are the same for any T;
 *   3. after one barrier, computes the gradient of its share of parameter rows over the
 *      whole batch (dW[rows] = X^T[rows] dZ: the weight gradient is split by rows, so
 *      no reduction is needed) and applies the optimiser to those rows at once;
 *   4. meets the others at the end-of-step barrier (and every BALANCE_STEPS steps the
 *      work is planned anew from the threads' measured speeds).
 * The gemm gives each row the same bits whatever M or the row's position, the sums over
 * the batch run in sample order inside one gemm call, and dropout masks are keyed by
 * (seed, step, row, unit): the weights after training do not depend on T. */
#include "gemm/sparse.h"
#include "nn/layers.h"
#include "nn/net.h"
#include "parallel/syncbn.h"
#include "parallel/team.h"
#include "util/rng.h"

#include <math.h>
#include <stdint.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <x86intrin.h>
#endif
#include <stdlib.h>
#include <string.h>

/* The phase timers' clock: the time-stamp counter where there is one (~10 ns a read
 * here against ~24 ns for clock_gettime, and a step reads it ~20-50 times), converted
 * to seconds by the ticks and seconds of the same training calls (dpt_engine_times). */
static inline double tick(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return (double)__rdtsc();
#else
    return dpt_now();
#endif
}

/* Steps between plans from the threads' measured speeds (rebalance). */
enum { BALANCE_STEPS = 8 };

/* Weight-gradient block: ~16 KiB, so a block is computed and applied within L1. Wider
 * layers use one row per block (the scratch holds at least one row). */
enum { GBLOCK = 4096 };
/* The products may skip zeros (gemm/sparse.h) when the first layer's K-blocks are at
 * most DPT_SPARSE_MAXW wide, for any batch. The K-split batches' per-row scratch below
 * is sized for SPARSE_MAXB rows: at most DPT_KBLOCKS blocks of at most DPT_SPARSE_MAXW
 * inputs allow K-split batches of up to 3 x 128 rows (dpt_ksplit). That is below the KC
 * of the kernel the zero-skipping products run beside (avx512: 392), so a K-split
 * batch's gradient sums are one KC chunk (see grad_cols); SPARSE_COLS words hold the
 * nonzero bits of a K-block's input columns over such a batch. */
enum { SPARSE_MAXB = 3 * DPT_SPARSE_MAXW,
       SPARSE_COLS = DPT_SPARSE_MAXW * DPT_SPARSE_WORDS(SPARSE_MAXB) };
/* Batches of more rows than dpt_ksplit allows run the first layer by rows: a thread's
 * rows in runs of RCHUNK (first_rows). */
enum { RCHUNK = 64 };
/* The narrow products' group bits (gemm/sparse.h): a K-block's rows in fours (forward)
 * or its input columns in fours (gradient). */
enum { UNION_WORDS = SPARSE_COLS / DPT_SPARSE_R > SPARSE_MAXB / DPT_SPARSE_R * DPT_UNION_WORDS
                         ? SPARSE_COLS / DPT_SPARSE_R
                         : SPARSE_MAXB / DPT_SPARSE_R * DPT_UNION_WORDS };

typedef struct worker {
    double *mean, *invstd, *var;  /* [L][maxw] merged batchnorm forward statistics */
    double *gsum, *gxsum;         /* [L][maxw] merged batchnorm backward sums */
    double *acc;                  /* [maxw] bias-gradient column sums */
    float *gblock;                /* [GBLOCK] a block of weight gradient */
    float *gpart;                 /* [GBLOCK] and one KC chunk's part of it (sparse_grad) */
    uint32_t *cols;               /* nonzero bitsets of a gradient block's input columns
                                     (grad_cols; [m][words(B)] up to KC rows) */
    float *rpart;                 /* [2][RCHUNK x out_0] a run of own rows' first-layer
                                     sums (first_rows) */
    uint32_t ubits[UNION_WORDS];  /* the narrow products' groups (see dpt_union) */
    uint32_t cfold[DPT_KBLOCKS][SPARSE_MAXB]; /* own K-blocks' dpt_union cfold */
    uint64_t rowbits[2 * SPARSE_MAXB]; /* and the block's dpt_union bits */
    uint16_t rows[SPARSE_MAXB];   /* and rows */
    uint32_t *dzcols;             /* [out_0][words(maxB)] nonzero bitsets of dZ_0's columns */
    float *gt;                    /* [out_0][widest K-block] a K-block's gradient,
                                     transposed (the dZ-sparse path) */
    size_t kbnz[DPT_KBLOCKS];     /* nonzero pixels of the own K-blocks of this step's input */
    size_t kbucols[DPT_KBLOCKS];  /* and (row, group of 4 adjacent pixels) pairs with one */
    size_t dznz;                  /* nonzero elements of this step's dZ_0 (K-split steps) */
    double dz_seen[2];            /* nonzero and all elements of dZ_0 since the last check */
    double t_compute, t_sync, t_update; /* in tick()s */
    double t_plan;                /* ticks of the planned work: own K-blocks' forward
                                     (K-split steps) and the update share (rebalance) */
    int bad_grad[2];              /* a non-finite gradient seen in a step of parity i */
} worker;

/* A thread's share of the update: units [u0, u1) of the global unit list. Unit u of
 * layer l is row u of W_l (u < in_l) or the layer's "bias unit" (b, gamma, beta and the
 * running statistics), unit in_l. The first layer's W rows are the exception: they go
 * with the thread's K-blocks (see DPT_KBLOCKS), whatever [u0, u1) says. */
typedef struct share {
    size_t u0, u1;
    unsigned kb; /* bit b: the thread owns K-block b */
    double frac; /* the part of the planned work it is given (rebalance; 1/T at first) */
    double cum;  /* the parts of the threads before it (own_slices) */
    double est;  /* the plan's cycles per step for it */
    double mark; /* its worker's t_plan at the last rebalance */
    double speed; /* rebalance's scratch: its planned cycles per tick */
} share;

static int owns(const share *sh, int b) { return (int)(sh->kb >> b & 1u); }

struct dpt_engine {
    dpt_net *net;
    int T, maxB, maxw;
    int sparse;                    /* products may skip zeros (sparse_avx512.c) */
    int narrow;                    /* and the first layer's go rows in fours (<= 32 outputs) */
    int force;                     /* dpt_sparse_mode(): a path forced for every block */
    double fnz_cost[DPT_MAX_LAYERS]; /* sparse_per_nz of each layer's X W */
    double gnz_cost[DPT_MAX_LAYERS]; /* and of its X^T dZ */
    const uint8_t *planned;        /* the images (and their count) the plan's block costs */
    size_t planned_n;              /* were measured on */
    double kdensity[DPT_KBLOCKS];  /* their nonzero fraction per K-block, */
    double kurows[DPT_KBLOCKS];    /* of (group of 4 images, pixel) pairs with a nonzero, */
    double kucols[DPT_KBLOCKS];    /* and of (image, group of 4 adjacent pixels) pairs */
    double dz_rho;                 /* the fraction of dZ_0 nonzero the plan assumed */
    int balance;                   /* dpt_balance_mode(): plans follow the threads' speed */
    uint64_t shuffle;              /* DPT_BALANCE_SHUFFLE's random state */
    const char *binding;
    float *x;                      /* [maxB][sizes[0]] input, pixels / 255: rows in
                                      order, or (K-split batches) block-major, see xblock */
    float *part;                   /* [nkb][maxB][out_0] first-layer K-block partials */
    int nkb;                       /* K-blocks of the first layer */
    float *z[DPT_MAX_LAYERS];      /* [maxB][out] dense output (after ReLU when fused) */
    float *xh[DPT_MAX_LAYERS];     /* [maxB][out] batchnorm x-hat (bn layers) */
    float *h[DPT_MAX_LAYERS];      /* [maxB][out] layer output (probabilities for last) */
    float *dmask[DPT_MAX_LAYERS];  /* [maxB][out] dropout scale 0 or 1/(1-p) */
    float *dz[DPT_MAX_LAYERS];     /* [maxB][out] d cost / d dense output */
    double *bnf[DPT_MAX_LAYERS];   /* [nslices][out][2] per-slice mean and M2 */
    double *bnb[DPT_MAX_LAYERS];   /* [nslices][out][2] per-slice sum dy, sum dy*xhat */
    double *loss;                  /* [maxB] per-row cross-entropy */
    unsigned char *hit;            /* [maxB] per-row correct */
    size_t unit0[DPT_MAX_LAYERS + 1]; /* first global unit of each layer */
    dpt_barrier bar;               /* the step's barrier (team.h) */
    share *shares;                 /* [T] */
    unsigned *kb_was;              /* [T] rebalance's scratch */
    worker *w;                     /* [T] */
    double wall;                   /* seconds in dpt_engine_train, and its ticks */
    double wall_ticks;
    void *block;                   /* the one allocation behind the buffers above */
};

/* Whether a B-row batch computes the first layer by K-blocks: when the block partials
 * (nkb x B x out) are at most three times the weights they keep in place (in x out),
 * i.e. nkb * B <= 3 in (B <= 294 for 784 inputs). Each thread then reads the others'
 * partials of its rows, (T-1)/T of nkb x B/T x out, instead of the (T-1)/T of the
 * weights the others just updated plus their input rows. Measured (bench/RESULTS.md):
 * 2 threads +7.5% at B = 128, about equal at 256, slower at 384; one thread -4% at 128.
 * Depends on B only, never on T. */
static int dpt_ksplit(const dpt_engine *e, int B)
{
    return (long)e->nkb * B <= 3L * e->net->layer[0].in;
}

/* K-split batches keep the input block-major: block b (columns [k0, k1)) is B rows of
 * k1 - k0 floats at x + (maxB + 16) * k0, so each owner's blocks are one contiguous run
 * and no cache line is shared; the 16 rows' worth after each block are a gap (see GAP:
 * the prefetcher streaming past a block's end stops there). The place depends on maxB,
 * not on this batch's B: a step may begin before the others finished the last one's
 * update, which still reads their blocks of a longer batch. */
static float *xblock(const dpt_engine *e, int k0) { return e->x + (size_t)(e->maxB + 16) * k0; }

/* A gap (floats, 4 KiB) after every buffer or block of one that threads write apart:
 * the input's K-blocks (16 rows of a block), the K-block partials, each worker's
 * scratch, each layer's row buffers. A core's L2 stream prefetcher runs on past the end
 * of what its thread reads, into the next buffer; when another core writes that one
 * next, each of those lines must first be taken back from the reader, ~0.5 us a line
 * when the two cores are on different dies. With the gaps the small network on two
 * threads in that placement went from 1.30M to 1.48M samples/s, and from 1.53M to
 * 1.74M (medians of 11 and 9 interleaved `dptrain bench` runs); the default network
 * and one thread within the noise. */
enum { GAP = 1024 };
/* First-layer K-block b's partial product [B][out_0], each block on its own lines. */
static size_t part_stride(int B, int out) { return ((size_t)B * out + 15) & ~(size_t)15; }
static size_t kpart_stride(const dpt_engine *e)
{
    return part_stride(e->maxB, e->net->layer[0].out) + GAP;
}
static float *kpart(const dpt_engine *e, int b) { return e->part + (size_t)b * kpart_stride(e); }
/* RCHUNK rows of the first layer's output in the worker's rpart (batches by rows). */
static size_t rpart_stride(const dpt_engine *e)
{
    return part_stride(RCHUNK, e->net->layer[0].out);
}

/* The sparse products' cycles per nonzero pixel for `out` outputs (see fwd_path). */
static double sparse_per_nz(int out, int grad)
{
    double per_nz = 0;
    for (int j = 0; j < out; j += 128) {
        int nv = ((out - j < 128 ? out - j : 128) + 15) / 16;
        per_nz += nv <= 4 ? 5 : nv + (grad ? 2 : 3.5);
    }
    return per_nz;
}

/* The dense kernels' cycles per (row, input) pair for `out` outputs: one per zmm of
 * outputs, a last piece of up to 8 in a ymm at half the cost (the 20-output layer runs
 * as zmm + ymm). */
static double dense_units(int out) { return ((out + 7) / 8) / 2.0; }

/* Whether skipping the zeros of a factor with nz nonzeros costs less than the dense
 * kernel over `pairs` (row, input) pairs of `out` outputs, at per_nz cycles a nonzero;
 * always when DPTRAIN_SPARSE=input forces it. */
static int skip_pays(const dpt_engine *e, double nz, double per_nz, double pairs, int out)
{
    return e->force == DPT_SPARSE_INPUT || nz * per_nz < pairs * dense_units(out);
}

/* How K-block b of this step's B-row input is multiplied in the forward product X W:
 * dense, skipping zero pixels row by row (FWD_X, the weight rows read from L1 in chunks,
 * sparse_avx512.c), or, for at most 32 outputs, rows in fours over the union of their
 * nonzero pixels (FWD_XN; urows: the union's set bits). The cheapest by their cycles
 * per (row, input) pair, for each 16 outputs (a zmm), measured on Zen 4: dense 1 (the
 * FMA, the other factor's load shared by 8 rows); FWD_X, per nonzero and group of up to
 * 8 zmm, the group's loads and FMAs + 3.5 (X W) or + 2 (X^T dZ) for the bit scan,
 * broadcast and loop, and at least 5 (4-cycle FMA chains) for narrow groups; FWD_XN the
 * dense kernel's cost per row and index of the union (four chains in flight). That
 * puts FWD_X's break-even density near 0.7 for 128 outputs and 0.3 for 20; FWD_XN's
 * union of four rows (sorted by their nonzero count) is 0.4-0.8 of a Fashion-MNIST
 * block's pixels and 0.01-0.6 of an MNIST one's (bench/RESULTS.md). Depends on the data
 * only, never on T (and all ways give the same bits). */
enum { FWD_DENSE, FWD_X, FWD_XN };
static int fwd_path(const dpt_engine *e, const worker *wk, int b, int B, size_t urows)
{
    const dpt_layer *l0 = &e->net->layer[0];
    if (!e->sparse)
        return FWD_DENSE;
    if (e->force == DPT_SPARSE_INPUT)
        return e->narrow ? FWD_XN : FWD_X;
    const int w = dpt_kblock_width(l0->in, b);
    const double du = dense_units(l0->out), dense = (double)B * w * du;
    const double xs = (double)wk->kbnz[b] * e->fnz_cost[0];
    const double xn =
        e->narrow ? ((double)urows * DPT_SPARSE_R + (double)(B % DPT_SPARSE_R) * w) * du
                  : INFINITY;
    if (xn < xs && xn < dense)
        return FWD_XN;
    return xs < dense ? FWD_X : FWD_DENSE;
}

/* How K-block b's weight gradient X^T dZ is computed: dense, skipping zero pixels
 * (GRAD_X, vectors along the outputs), or skipping the zeros of dZ (GRAD_DZ: ReLU and
 * dropout leave ~30% of the default network's dZ nonzero, ~55% of the small one's on
 * Fashion-MNIST) as (dZ^T X)^T, vectors along the block's inputs, transposed back; or,
 * for at most 32 outputs, four adjacent inputs' rows over the union of the samples
 * where any of them is nonzero (GRAD_XN). The cheapest by the costs above; GRAD_DZ per
 * nonzero of dZ: the block's input vectors + 4, plus 0.3 per element for the transpose
 * (stand-alone, 32 x 112 block, 128 outputs, dZ 29% nonzero: 4.3 + 1.3 us, against
 * 7.3 us skipping the pixels of a block 65% nonzero and 9.1 us dense); GRAD_XN the dense
 * kernel's per (input, sample) of the union (64 x 112 Fashion-MNIST blocks, 20 outputs,
 * dZ 56% nonzero: 2.85 us against 2.42 with GRAD_DZ on average, but less on the outer
 * blocks and on MNIST). All give the same bits (sparse_avx512.c), so the choice (from
 * this step's data, never from T) only changes the time. */
enum { GRAD_DENSE, GRAD_X, GRAD_XN, GRAD_DZ };
/* GRAD_DZ's cycles for a K-block w inputs wide with nz nonzeros in dZ */
static double dz_cost(int w, int out, double nz)
{
    return nz * ((w + 15) / 16 + 4) + 0.3 * w * out;
}
static int grad_path(const dpt_engine *e, const worker *wk, int b, int B)
{
    if (!e->sparse)
        return GRAD_DENSE;
    if (e->force == DPT_SPARSE_INPUT || e->force == DPT_SPARSE_DZ)
        return e->force == DPT_SPARSE_DZ ? GRAD_DZ : e->narrow ? GRAD_XN : GRAD_X;
    const dpt_layer *l0 = &e->net->layer[0];
    const int w = dpt_kblock_width(l0->in, b);
    const double du = dense_units(l0->out), dense = (double)B * w * du;
    const double xs = (double)wk->kbnz[b] * e->gnz_cost[0];
    const double dzs = dz_cost(w, l0->out, (double)wk->dznz);
    /* GRAD_XN: four adjacent inputs' rows over the union of their nonzero samples */
    const double xn = e->narrow ? (double)wk->kbucols[b] * DPT_SPARSE_R * du : INFINITY;
    if (dzs < xs && dzs < dense && dzs < xn)
        return GRAD_DZ;
    if (xn < xs && xn < dense)
        return GRAD_XN;
    return xs < dense ? GRAD_X : GRAD_DENSE;
}

/* Whether layer l's X W (grad = 0) or X^T dZ (grad = 1) could pay to skip its input's
 * zeros at all: below a break-even density of 15% (a layer with few outputs, such as the
 * small network's 7 and 5, where the dense kernel costs a fraction of a sparse nonzero)
 * the engine does not even count them. Forced (DPTRAIN_SPARSE=input), always. */
static int may_skip(const dpt_engine *e, int l, int grad)
{
    const double per_nz = grad ? e->gnz_cost[l] : e->fnz_cost[l];
    return e->force == DPT_SPARSE_INPUT || dense_units(e->net->layer[l].out) >= 0.15 * per_nz;
}

/* Hidden layer l's output as the next layer reads it: its own buffer h when batchnorm
 * or dropout transform it, else the dense output z itself (ReLU fused; no copy). */
static const float *act(const dpt_engine *e, int l)
{
    return e->net->layer[l].bn || e->net->cfg.dropout > 0 ? e->h[l] : e->z[l];
}

int dpt_engine_threads(const dpt_engine *e) { return e->T; }

int dpt_balance_mode(void)
{
    const char *env = getenv("DPTRAIN_BALANCE");
    if (!env || !*env || !strcmp(env, "on") || !strcmp(env, "1"))
        return DPT_BALANCE_ON;
    return !strcmp(env, "off") || !strcmp(env, "0") ? DPT_BALANCE_OFF
           : !strcmp(env, "shuffle")                 ? DPT_BALANCE_SHUFFLE
                                                     : -1;
}
const char *dpt_engine_binding(const dpt_engine *e) { return e->binding; }

static double blocks_cost(const dpt_engine *e, const share *sh, const double *bcost)
{
    double c = 0;
    for (int b = 0; b < e->nkb; b++)
        if (owns(sh, b))
            c += bcost[b];
    return c;
}

/* The same against the thread's part of the work: the time it would take, in units of
 * the whole work's (every thread the same when the plan is even) */
static double blocks_load(const dpt_engine *e, const share *sh, const double *bcost)
{
    return blocks_cost(e, sh, bcost) / sh->frac;
}

/* Estimated cycles per step (at the engine's largest batch) of one parameter row of
 * `out` outputs in the update phase: its gradient (B x out/16 FMA vectors, dense) and
 * its optimiser step (Adam: ~17 cycles of the divider per 16 parameters; SGD ~2). */
static double row_cycles(const dpt_engine *e, int out)
{
    const int opt = e->net->cfg.optimizer;
    const double per16 = opt == DPT_ADAM || opt == DPT_ADAMW ? 17.0 : 2.0;
    return (e->maxB + per16) * (out / 16.0);
}

/* Gives each thread a contiguous run of K-blocks instead of the dealt ones, the runs
 * chosen to make the slowest run (its cost over its thread's part, blocks_load) as fast
 * as possible, if no run then takes longer than `most` (the larger of a thread's fair
 * share and the slowest thread of the dealt plan, so the other layers' units even the
 * threads out at least as well as before).
 * If that is not possible it changes nothing. Contiguous runs matter
 * for the input: a thread converts its blocks' columns of every image, and with
 * interleaved blocks it touches ~10 of an image's 13 cache lines for half of its pixels
 * (measured on two threads, small network: the conversion 30% cheaper contiguous). */
static void contiguous_blocks(dpt_engine *e, const double *bcost, double most)
{
    const int T = e->T, nb = e->nkb;
    const int R = T < nb ? T : nb; /* runs; threads beyond nb own no blocks */
    double pre[DPT_KBLOCKS + 1] = { 0 };
    for (int b = 0; b < nb; b++)
        pre[b + 1] = pre[b] + bcost[b];
    /* best[t][j]: the least possible costliest run when t runs take blocks [0, j);
     * cut[t][j]: where the last of those runs starts */
    double best[DPT_KBLOCKS + 1][DPT_KBLOCKS + 1] = { { 0 } };
    int cut[DPT_KBLOCKS + 1][DPT_KBLOCKS + 1] = { { 0 } };
    for (int j = 0; j <= nb; j++)
        best[1][j] = pre[j] / e->shares[0].frac;
    for (int t = 2; t <= R; t++)
        for (int j = 0; j <= nb; j++) {
            best[t][j] = best[t - 1][j], cut[t][j] = j; /* the last run empty */
            for (int i = 0; i < j; i++) {
                double m = fmax(best[t - 1][i], (pre[j] - pre[i]) / e->shares[t - 1].frac);
                if (m < best[t][j])
                    best[t][j] = m, cut[t][j] = i;
            }
        }
    if (best[R][nb] > most * (1 + 1e-9))
        return;
    for (int t = 0; t < T; t++)
        e->shares[t].kb = 0;
    for (int t = R, j = nb; t >= 1; t--) {
        int i = cut[t][j];
        for (int b = i; b < j; b++)
            e->shares[t - 1].kb |= 1u << b;
        j = i;
    }
}

/* Splits the work between the barriers: thread t owns a set of the first layer's
 * K-blocks (their W rows: gradient and update, and with K-blocks also their share of
 * the forward product, which runs between the same two barriers), and a contiguous run
 * of the other units, chosen so that every thread's estimated cycles (row_cycles) are
 * about its part (share.frac: 1/T, or as rebalance measured the threads' speeds) of
 * the whole. Returns the largest of a thread's estimate over its part of the whole (1
 * when every thread gets exactly its part). keep: the K-blocks stay with their owners
 * and only the other units move. Without densities the blocks go in
 * contiguous runs (the costliest as cheap as possible); with
 * the data's nonzero fraction per block (density[b]), the first layer's products cost
 * what the sparse products would (fwd_path's and grad_path's models), and the blocks are
 * dealt largest first to the least loaded thread: on Fashion-MNIST the middle blocks are
 * 60-70% nonzero and the outer ones 30%, so equal counts are not equal work. Then, if
 * contiguous runs can be as even, they replace the dealt sets (contiguous_blocks). */
static double plan_shares(dpt_engine *e, const double *density, int keep)
{
    dpt_net *net = e->net;
    double sum = 0;
    for (int t = 0; t < e->T; t++) {
        e->shares[t].cum = sum;
        sum += e->shares[t].frac;
    }
    const int T = e->T, in0 = net->layer[0].in, out0 = net->layer[0].out;
    const int ks = dpt_ksplit(e, e->maxB);
    double bcost[DPT_KBLOCKS], total = 0;
    for (int b = 0; b < e->nkb; b++) {
        const double d = density ? density[b] : 1.0, dense = dense_units(out0);
        const int w = dpt_kblock_width(in0, b);
        double fwd = ks ? dense : 0, grad = dense; /* per (row, input) pair */
        if (density && e->sparse) {
            grad = fmin(dense, d * e->gnz_cost[0]); /* skipping zero pixels */
            if (ks) { /* and the K-split batches' other ways */
                fwd = fmin(dense, d * e->fnz_cost[0]);
                grad = fmin(grad, dz_cost(w, out0, e->dz_rho * e->maxB * out0) /
                                      ((double)e->maxB * w));
                if (e->narrow) {
                    fwd = fmin(fwd, e->kurows[b] * dense);
                    grad = fmin(grad, e->kucols[b] * dense);
                }
            }
        }
        /* row_cycles counts a dense gradient (out0 / 16 per pair): replaced by grad */
        const double per_row = row_cycles(e, out0) + e->maxB * (fwd + grad - out0 / 16.0);
        bcost[b] = per_row * w;
        total += bcost[b];
    }
    size_t u = 0;
    for (int l = 0; l < net->L; l++) {
        e->unit0[l] = u;
        u += (size_t)net->layer[l].in + 1;
        if (l > 0)
            total += (net->layer[l].in + 1) * row_cycles(e, net->layer[l].out);
    }
    total += row_cycles(e, out0); /* the first layer's bias unit */
    e->unit0[net->L] = u;
    for (int t = 0; t < T && !keep; t++)
        e->shares[t].kb = 0;
    if (keep) {
        /* the K-blocks stay where they are */
    } else if (!density) {
        contiguous_blocks(e, bcost, INFINITY);
    } else {
        unsigned done = 0;
        for (int k = 0; k < e->nkb; k++) { /* the costliest block not yet dealt ... */
            int bb = -1;
            for (int b = 0; b < e->nkb; b++)
                if (!(done >> b & 1u) && (bb < 0 || bcost[b] > bcost[bb]))
                    bb = b;
            int tt = 0; /* ... to the thread that would be least loaded with it, against
                           its part of the work (the first of equals) */
            double least = INFINITY;
            for (int t = 0; t < T; t++) {
                double c = (blocks_cost(e, &e->shares[t], bcost) + bcost[bb]) /
                           e->shares[t].frac;
                if (c < least)
                    tt = t, least = c;
            }
            done |= 1u << bb;
            e->shares[tt].kb |= 1u << bb;
        }
        double most = total;
        for (int t = 0; t < T; t++)
            most = fmax(most, blocks_load(e, &e->shares[t], bcost));
        contiguous_blocks(e, bcost, most);
    }
    int t = 0;
    double have = blocks_cost(e, &e->shares[0], bcost);
    e->shares[0].u0 = 0;
    for (int l = 0; l < net->L; l++)
        for (int r = 0; r <= net->layer[l].in; r++) {
            if (l == 0 && r < in0)
                continue; /* first-layer rows go with the K-blocks */
            size_t gu = e->unit0[l] + (size_t)r;
            while (t < T - 1 && have >= total * e->shares[t].frac) {
                e->shares[t].u1 = gu;
                e->shares[t].est = have;
                e->shares[++t].u0 = gu;
                have = blocks_cost(e, &e->shares[t], bcost);
            }
            have += row_cycles(e, net->layer[l].out);
        }
    e->shares[t].u1 = u;
    e->shares[t].est = have;
    while (++t < T) {
        e->shares[t].u0 = e->shares[t].u1 = u;
        e->shares[t].est = blocks_cost(e, &e->shares[t], bcost);
    }
    double load = 0;
    for (t = 0; t < T; t++)
        load = fmax(load, e->shares[t].est / e->shares[t].frac);
    return load / total;
}

/* The slices [s0, s1) of a B-row batch thread t takes between the barriers (rows
 * through every layer after the first): runs in thread order, each about the thread's
 * part of the work (share.frac). Rows cost alike, and every row gets the same bits on
 * any thread (see the file's comment). */
static void own_slices(const dpt_engine *e, int B, int t, int *s0, int *s1)
{
    const int ns = dpt_nslices(B);
    *s0 = t ? (int)(ns * e->shares[t].cum + 0.5) : 0;
    *s1 = t + 1 < e->T ? (int)(ns * e->shares[t + 1].cum + 0.5) : ns;
}

void dpt_engine_free(dpt_engine *e)
{
    if (!e)
        return;
    dpt_free(e->block);
    free(e->shares);
    free(e->kb_was);
    free(e->w);
    dpt_free(e);
}

dpt_engine *dpt_engine_create(dpt_net *net, int max_batch, int threads, int bind,
                              const char **warning, dpt_error *err)
{
    if (warning)
        *warning = NULL;
    if (max_batch < 1 || max_batch > DPT_MAX_BATCH) {
        dpt_seterr(err, DPT_EINPUT, "--batch: %d is not in [1, %d]", max_batch, DPT_MAX_BATCH);
        return NULL;
    }
    dpt_engine *e = dpt_alloc(1, sizeof *e); /* zeroed, 64-byte aligned (the barrier) */
    if (!e)
        goto oom;
    e->net = net;
    e->maxB = max_batch;
#ifdef _OPENMP
    e->T = threads > 0 ? threads : net->cfg.threads > 0 ? net->cfg.threads
                                                        : dpt_team_default_threads();
#else
    (void)threads;
    e->T = 1;
#endif
    e->shares = calloc((size_t)e->T, sizeof *e->shares);
    e->kb_was = calloc((size_t)e->T, sizeof *e->kb_was);
    e->w = calloc((size_t)e->T, sizeof *e->w);
    if (!e->shares || !e->kb_was || !e->w)
        goto oom;
    const int L = net->L, B = max_batch, ns = dpt_nslices(max_batch);
    int maxw = 0;
    for (int l = 0; l < L; l++)
        if (net->layer[l].out > maxw)
            maxw = net->layer[l].out;
    e->maxw = maxw;

    /* One block: floats first (each buffer rounded to 16 floats), then doubles. */
    size_t nf = 0, nd = 0;
#define RND(n) (((size_t)(n) + 15) & ~(size_t)15)
    size_t gblock = maxw > GBLOCK ? (size_t)maxw : GBLOCK;
    e->nkb = dpt_kblocks(net->layer[0].in);
    int kbw = 0; /* widest K-block */
    for (int b = 0; b < e->nkb; b++) {
        int w = dpt_kblock_width(net->layer[0].in, b);
        kbw = w > kbw ? w : kbw;
    }
    e->sparse = dpt_gemm_sparse() && kbw <= DPT_SPARSE_MAXW;
    e->narrow = e->sparse && net->layer[0].out <= 32;
    e->dz_rho = 0.5; /* until measured (dpt_engine_train) */
    e->force = dpt_sparse_mode();
    for (int l = 0; l < L; l++) {
        e->fnz_cost[l] = sparse_per_nz(net->layer[l].out, 0);
        e->gnz_cost[l] = sparse_per_nz(net->layer[l].out, 1);
    }
    size_t npart = (size_t)e->nkb * (part_stride(B, net->layer[0].out) + GAP);
    /* the dZ-sparse gradient's scratch (floats and bit words are both 4 bytes) */
    const size_t ngt = e->sparse ? (size_t)kbw * net->layer[0].out : 0;
    const size_t ndzc = e->sparse ? (size_t)net->layer[0].out * DPT_SPARSE_WORDS(B) : 0;
    const size_t ncols = /* grad_cols: a word more per KC chunk */
        e->sparse ? (size_t)DPT_SPARSE_MAXW * (DPT_SPARSE_WORDS(B) + B / dpt_gemm_kc() + 1) : 0;
    const size_t nrpart = dpt_ksplit(e, B) ? 0 : 2 * rpart_stride(e);
    nf += RND((size_t)(B + 16) * net->layer[0].in) + (size_t)e->T * RND(gblock) + RND(npart);
    const size_t ngpart = e->sparse && B > dpt_gemm_kc() ? gblock : 0;
    nf += (size_t)e->T * (RND(ngt) + RND(ndzc) + RND(ncols) + RND(nrpart) + RND(ngpart) + GAP);
    for (int l = 0; l < L; l++) {
        size_t rows = RND((size_t)B * net->layer[l].out) + GAP;
        nf += 4 * rows + (net->layer[l].bn ? rows : 0);
        if (net->layer[l].bn)
            nd += 4 * (size_t)ns * net->layer[l].out;
    }
    nd += (size_t)B + (size_t)e->T * ((5 * (size_t)L + 1) * maxw + GAP / 2);
    size_t bytes = nf * sizeof(float) + RND(nd) * sizeof(double) + RND(B);
    e->block = dpt_alloc(bytes, 1);
    if (!e->block)
        goto oom;
    float *fp = e->block;
    e->x = fp;
    fp += RND((size_t)(B + 16) * net->layer[0].in);
    for (int t = 0; t < e->T; t++) {
        e->w[t].gblock = fp, fp += RND(gblock);
        e->w[t].gpart = fp, fp += RND(ngpart);
        e->w[t].gt = fp, fp += RND(ngt);
        e->w[t].dzcols = (uint32_t *)fp, fp += RND(ndzc);
        e->w[t].cols = (uint32_t *)fp, fp += RND(ncols);
        e->w[t].rpart = fp, fp += RND(nrpart);
        fp += GAP;
    }
    e->part = fp, fp += RND(npart);
    for (int l = 0; l < L; l++) {
        size_t rows = RND((size_t)B * net->layer[l].out) + GAP;
        e->z[l] = fp, fp += rows;
        e->h[l] = fp, fp += rows;
        e->dmask[l] = fp, fp += rows;
        e->dz[l] = fp, fp += rows;
        if (net->layer[l].bn)
            e->xh[l] = fp, fp += rows;
    }
    double *dp = (double *)fp;
    for (int l = 0; l < L; l++)
        if (net->layer[l].bn) {
            e->bnf[l] = dp, dp += 2 * (size_t)ns * net->layer[l].out;
            e->bnb[l] = dp, dp += 2 * (size_t)ns * net->layer[l].out;
        }
    e->loss = dp, dp += B;
    for (int t = 0; t < e->T; t++) {
        size_t k = (size_t)L * maxw;
        e->w[t].mean = dp, dp += k;
        e->w[t].invstd = dp, dp += k;
        e->w[t].var = dp, dp += k;
        e->w[t].gsum = dp, dp += k;
        e->w[t].gxsum = dp, dp += k;
        e->w[t].acc = dp, dp += maxw;
        dp += GAP / 2;
    }
    e->hit = (unsigned char *)(e->block) + nf * sizeof(float) + RND(nd) * sizeof(double);
#undef RND
    for (int t = 0; t < e->T; t++)
        e->shares[t].frac = 1.0 / e->T;
    dpt_barrier_init(&e->bar, e->T);
    const int balance = dpt_balance_mode();
    e->balance = balance < 0 ? DPT_BALANCE_ON : balance;
    e->shuffle = 0x9e3779b97f4a7c15ull;
    plan_shares(e, NULL, 0);

    /* Pin the team (one thread per core) and let each thread touch its own rows first,
     * so their pages land near it. GOMP keeps the same threads for later regions. */
    int failed = 0, oomed = 0, got = e->T;
#ifdef _OPENMP
#pragma omp parallel num_threads(e->T) reduction(+ : failed, oomed)
#endif
    {
        int t = dpt_tid();
        if (t == 0)
            got = dpt_team_size();
        if (bind && dpt_team_bind(t) != 0)
            failed++;
        if (dpt_gemm_reserve() != DPT_OK)
            oomed++;
        int s0, s1;
        own_slices(e, B, t, &s0, &s1);
        int r0 = s0 * DPT_SLICE, r1 = s1 * DPT_SLICE < B ? s1 * DPT_SLICE : B;
        const share *sh = &e->shares[t];
        memset(e->w[t].gblock, 0, sizeof(float) * gblock); /* own scratch */
        memset(e->w[t].gt, 0, sizeof(float) * ngt);
        memset(e->w[t].dzcols, 0, sizeof(uint32_t) * ndzc);
        memset(e->w[t].cols, 0, sizeof(uint32_t) * ncols);
        memset(e->w[t].rpart, 0, sizeof(float) * nrpart);
        memset(e->w[t].gpart, 0, sizeof(float) * ngpart);
        for (int b = 0; b < e->nkb; b++) { /* own K-block partials and x columns */
            if (!owns(sh, b))
                continue;
            int k0 = dpt_kblock_row(net->layer[0].in, b),
                k1 = dpt_kblock_row(net->layer[0].in, b + 1);
            memset(kpart(e, b), 0, sizeof(float) * (size_t)B * net->layer[0].out);
            memset(xblock(e, k0), 0, sizeof(float) * (size_t)B * (k1 - k0));
        }
        if (r1 > r0) {
            for (int l = 0; l < L; l++) {
                size_t o = (size_t)r0 * net->layer[l].out,
                       n = (size_t)(r1 - r0) * net->layer[l].out;
                memset(e->z[l] + o, 0, n * sizeof(float));
                memset(e->h[l] + o, 0, n * sizeof(float));
                memset(e->dz[l] + o, 0, n * sizeof(float));
            }
        }
    }
    if (oomed)
        goto oom;
    if (got != e->T) {
        /* the plans assume exactly T threads; OpenMP may be capped (OMP_THREAD_LIMIT) */
        dpt_seterr(err, DPT_EINPUT, "--threads: OpenMP runs %d threads here, not %d (is "
                   "OMP_THREAD_LIMIT set?)", got, e->T);
        dpt_engine_free(e);
        return NULL;
    }
    e->binding = !bind ? "none" : failed ? "unpinned (binding failed)" : "core";
    if (bind && failed && warning)
        *warning = "could not bind threads to cores with hwloc; running unpinned";
    return e;
oom:
    dpt_engine_free(e);
    dpt_seterr(err, DPT_EFAIL, "out of memory for the training workspace (batch %d)",
               max_batch);
    return NULL;
}

/* ---------------------------------------------------------------- the step ----- */

enum { MODE_TRAIN = 0, MODE_GRAD = 1 };

typedef struct stepctx {
    dpt_engine *e;
    const dpt_dataset *ds;
    const uint32_t *idx;
    int B;
    uint64_t step;   /* 0-based index of this step (dropout key, Adam's t - 1) */
    const uint32_t *next; /* the chunk's next step's samples (NULL: none) */
    int nextB;
    const uint32_t *pf;   /* the samples to prefetch: the order's next batch, also past */
    int pfB;              /* the chunk (NULL: none) */
    int mode;
    double cost;     /* out: mean cross-entropy of the batch (each thread the same) */
    size_t correct;
    int bad_cost;
    int prev_bad;    /* out: the previous step of the chunk had a non-finite gradient */
} stepctx;

#define SYNC(e, wk)                                                                    \
    do {                                                                               \
        double t_ = tick();                                                            \
        dpt_barrier_wait(&(e)->bar);                                                   \
        (wk)->t_sync += tick() - t_;                                                   \
    } while (0)

/* Batchnorm forward for rows [r0, r1) of layer l: slice partials, barrier, merge
 * (every thread, the same result), normalise own rows into xh and h. */
static void bn_forward(dpt_engine *e, worker *wk, int l, int B, int s0, int s1, int r0,
                       int r1, double *tc)
{
    const dpt_net *net = e->net;
    const dpt_layer *ly = &net->layer[l];
    const size_t o = (size_t)l * e->maxw;
    dpt_bn_fwd_partials(e->z[l], B, ly->out, s0, s1, e->bnf[l]);
    *tc += tick();
    SYNC(e, wk);
    *tc -= tick();
    dpt_bn_fwd_merge(e->bnf[l], B, ly->out, net->cfg.bn_eps, wk->mean + o, wk->var + o,
                     wk->invstd + o);
    dpt_bn_fwd_rows(e->z[l], r0, r1, ly->out, wk->mean + o, wk->invstd + o,
                    net->params + ly->gamma, net->params + ly->beta, net->cfg.bn_before,
                    e->xh[l], e->h[l]);
}

/* Batchnorm backward for rows [r0, r1): g holds d cost / d (layer output before
 * dropout) and becomes d cost / d z in place. */
static void bn_backward(dpt_engine *e, worker *wk, int l, int B, int s0, int s1, int r0,
                        int r1, float *g, double *tc)
{
    const dpt_net *net = e->net;
    const dpt_layer *ly = &net->layer[l];
    const int out = ly->out;
    const size_t o = (size_t)l * e->maxw;
    if (net->cfg.bn_before) /* ReLU after BN: its mask is h > 0 (dropped units: g = 0) */
        dpt_ew_relu_grad(g + (size_t)r0 * out, e->h[l] + (size_t)r0 * out, NULL,
                         (size_t)(r1 - r0) * out);
    dpt_bn_bwd_partials(g, e->xh[l], B, out, s0, s1, e->bnb[l]);
    *tc += tick();
    SYNC(e, wk);
    *tc -= tick();
    dpt_bn_bwd_merge(e->bnb[l], B, out, wk->gsum + o, wk->gxsum + o);
    /* ReLU before BN: z holds the ReLU output, active where z > 0 */
    dpt_bn_bwd_rows(g, e->xh[l], net->cfg.bn_before ? NULL : e->z[l], r0, r1, out, B,
                    net->params + ly->gamma, wk->invstd + o, wk->gsum + o, wk->gxsum + o);
}

/* a[i] = a[i] + b[i], i < n: a later KC chunk's sums added to the chunks' before, one
 * rounding each, as the gemm adds them (beta = 1). */
static void add_chunk(float *restrict a, const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = a[i] + b[i];
}

/* The zero-skipping gradient g = x^T d (m columns of x, B rows; d and g n wide) must
 * give the bits of the dense product dpt_sgemm(1, 0, ...), whose sums over the batch run
 * in chunks of KC rows (dpt_gemm_kc), each from 0 and then added to the chunks' before:
 * past KC rows it goes by the same chunks. grad_cols makes x's nonzero bitsets in
 * wk->cols chunk by chunk (each chunk's words start at its first row; one chunk, the
 * usual layout, up to KC rows) and returns their set bits; sparse_grad multiplies. */
static size_t grad_cols(worker *wk, const float *x, int lda, int m, int B)
{
    const int kc = dpt_gemm_kc();
    uint32_t *cols = wk->cols;
    size_t nz = 0;
    for (int p0 = 0; p0 < B; p0 += kc) {
        const int rows = B - p0 < kc ? B - p0 : kc;
        dpt_sparse_colmasks(x + (size_t)p0 * lda, lda, rows, 0, m, cols);
        nz += dpt_sparse_bits(cols, (size_t)m * DPT_SPARSE_WORDS(rows));
        cols += (size_t)m * DPT_SPARSE_WORDS(rows);
    }
    return nz;
}
static void sparse_grad(worker *wk, const float *x, int lda, int m, int B, const float *d,
                        int n, float *g)
{
    const int kc = dpt_gemm_kc();
    const uint32_t *cols = wk->cols;
    for (int p0 = 0; p0 < B; p0 += kc) {
        const int rows = B - p0 < kc ? B - p0 : kc;
        float *out = p0 ? wk->gpart : g;
        dpt_sparse_xtd(x + (size_t)p0 * lda, lda, 0, m, rows, cols, d + (size_t)p0 * n, n, n,
                       out, n);
        cols += (size_t)m * DPT_SPARSE_WORDS(rows);
        if (p0)
            add_chunk(g, out, (size_t)m * n);
    }
}

/* Gradient (and, in training, the update) of thread t's units; ksplit: this batch ran
 * the first layer by K-blocks (its input is block-major). */
static void update_share(stepctx *c, int t, worker *wk, int ksplit)
{
    dpt_engine *e = c->e;
    dpt_net *net = e->net;
    const int B = c->B;
    const share *sh = &e->shares[t];
    int bad = 0;
    for (int l = 0; l < net->L; l++) {
        const dpt_layer *ly = &net->layer[l];
        size_t u0 = e->unit0[l], u1 = e->unit0[l + 1];
        size_t a = sh->u0 > u0 ? sh->u0 : u0, b = sh->u1 < u1 ? sh->u1 : u1;
        int ra = (int)(a - u0), rb = a < b ? (int)(b - u0) : ra;
        /* W rows in ranges [lo[q], hi[q]): a run of rows, or the first layer's own
         * K-blocks (block kbl[q]); and the bias unit if has_bias */
        int lo[DPT_KBLOCKS], hi[DPT_KBLOCKS], kbl[DPT_KBLOCKS], nq = 0;
        int has_bias = a < b && rb > ly->in;
        if (l == 0) {
            for (int q = 0; q < e->nkb; q++)
                if (owns(sh, q)) {
                    lo[nq] = dpt_kblock_row(ly->in, q);
                    hi[nq] = dpt_kblock_row(ly->in, q + 1);
                    kbl[nq++] = q;
                }
            has_bias = a < b && b - u0 > (size_t)ly->in;
        } else if (ra < (rb > ly->in ? ly->in : rb)) {
            lo[0] = ra, hi[0] = rb > ly->in ? ly->in : rb, kbl[0] = -1, nq = 1;
        }
        if (!nq && !has_bias)
            continue;
        const float *in = l ? act(e, l - 1) : e->x;
        const int train = c->mode == MODE_TRAIN && !c->bad_cost;
        const uint64_t tstep = c->step + 1;
        /* W rows in blocks of ~16 KiB of gradient: compute a block, update it while it
         * is still in L1. */
        const int rb_rows = ly->out >= GBLOCK ? 1 : GBLOCK / ly->out;
        const int kblocked = l == 0 && ksplit;
        if (kblocked && e->sparse && nq) { /* dZ's nonzeros, for GRAD_DZ */
            double t0 = tick();
            dpt_sparse_colmasks(e->dz[0], ly->out, B, 0, ly->out, wk->dzcols);
            const size_t nz =
                dpt_sparse_bits(wk->dzcols, (size_t)ly->out * DPT_SPARSE_WORDS(B));
            wk->dznz = nz;
            wk->dz_seen[0] += (double)nz;
            wk->dz_seen[1] += (double)B * ly->out;
            wk->t_compute += tick() - t0;
        }
        for (int q = 0; q < nq; q++) {
            const int path = kblocked ? grad_path(e, wk, kbl[q], B) : GRAD_DENSE;
            if (path == GRAD_DZ) { /* the whole K-block's gradient, transposed, in gt */
                double t0 = tick();
                const int w = hi[q] - lo[q];
                dpt_sparse_xtd(e->dz[0], ly->out, 0, ly->out, B, wk->dzcols,
                               xblock(e, lo[q]), w, w, wk->gt, w);
                wk->t_compute += tick() - t0;
            }
            for (int r = lo[q]; r < hi[q];) {
                const int m = hi[q] - r < rb_rows ? hi[q] - r : rb_rows, i0 = r - lo[q];
                const float *xa = in + r;
                int lda = ly->in;
                if (kblocked) { /* block-major input */
                    xa = xblock(e, lo[q]) + i0;
                    lda = hi[q] - lo[q];
                }
                size_t off = ly->w + (size_t)r * ly->out;
                r += m;
                /* training keeps the block in a per-thread scratch (the full gradient
                 * buffer is only written for dpt_engine_gradient) */
                float *gblock = train ? wk->gblock : net->grads + off;
                double t0 = tick();
                int rpath = path, have_cols = 0;
                if (!kblocked && e->sparse && m <= DPT_SPARSE_MAXW && may_skip(e, l, 1)) {
                    /* the other layers' inputs (ReLU and dropout outputs) are mostly zero
                     * too: their rows take the cheaper of dense and zero-skipping */
                    const size_t nz = grad_cols(wk, xa, lda, m, B);
                    have_cols = 1;
                    if (skip_pays(e, (double)nz, e->gnz_cost[l], (double)B * m, ly->out))
                        rpath = GRAD_X;
                }
                if (rpath == GRAD_DZ) {
                    dpt_sparse_transpose(wk->gt + i0, hi[q] - lo[q], ly->out, m, gblock,
                                         ly->out);
                } else if (rpath == GRAD_XN && i0 == 0 && m == hi[q] - lo[q]) {
                    /* the groups of the whole K-block, from the input's conversion */
                    const int full = m / DPT_SPARSE_R * DPT_SPARSE_R;
                    if (full < m)
                        dpt_sparse_colmasks(xa, lda, B, full, m - full, wk->cols);
                    dpt_sparse_groupcols(wk->cfold[kbl[q]], B, m / DPT_SPARSE_R, wk->ubits);
                    dpt_sparse_xtd_narrow(xa, lda, 0, m, B, wk->ubits,
                                          full < m ? wk->cols : NULL, e->dz[l], ly->out,
                                          ly->out, gblock, ly->out);
                } else if (rpath == GRAD_X || rpath == GRAD_XN) {
                    if (!have_cols)
                        grad_cols(wk, xa, lda, m, B);
                    sparse_grad(wk, xa, lda, m, B, e->dz[l], ly->out, gblock);
                } else {
                    dpt_sgemm(1, 0, m, ly->out, B, 1.0f, xa, lda, e->dz[l], ly->out, 0.0f,
                              gblock, ly->out);
                }
                double t1 = tick();
                wk->t_compute += t1 - t0;
                if (train) {
                    bad |= dpt_optim_update(net, gblock, off, off + (size_t)m * ly->out, 1,
                                            B, tstep);
                    wk->t_update += tick() - t1;
                }
            }
        }
        if (has_bias) {
            double t0 = tick();
            /* bias gradient: column sums of dZ over the batch, rows in order */
            double *acc = wk->acc;
            dpt_col_sums(e->dz[l], B, ly->out, acc);
            float *gb = net->grads + ly->b;
            for (int j = 0; j < ly->out; j++)
                gb[j] = (float)acc[j];
            if (ly->bn) {
                const double *gs = wk->gsum + (size_t)l * e->maxw;
                const double *gx = wk->gxsum + (size_t)l * e->maxw;
                for (int j = 0; j < ly->out; j++) {
                    net->grads[ly->gamma + j] = (float)gx[j];
                    net->grads[ly->beta + j] = (float)gs[j];
                }
            }
            wk->t_compute += tick() - t0;
        }
        if (!train)
            continue;
        double t1 = tick();
        if (has_bias) {
            bad |= dpt_optim_update(net, net->grads + ly->b, ly->b, ly->b + ly->out, 0, B,
                                    tstep);
            if (ly->bn) {
                bad |= dpt_optim_update(net, net->grads + ly->gamma, ly->gamma,
                                        ly->gamma + ly->out, 0, B, tstep);
                bad |= dpt_optim_update(net, net->grads + ly->beta, ly->beta,
                                        ly->beta + ly->out, 0, B, tstep);
                /* running statistics, as PyTorch: unbiased variance, momentum 0.1 */
                const double *mean = wk->mean + (size_t)l * e->maxw;
                const double *var = wk->var + (size_t)l * e->maxw;
                float mo = net->cfg.bn_momentum;
                double unb = B > 1 ? (double)B / (B - 1) : 1.0;
                for (int j = 0; j < ly->out; j++) {
                    float *rm = net->stats + ly->rmean + j, *rv = net->stats + ly->rvar + j;
                    *rm = (1.0f - mo) * *rm + mo * (float)mean[j];
                    *rv = (1.0f - mo) * *rv + mo * (float)(var[j] * unb);
                }
            }
        }
        wk->t_update += tick() - t1;
    }
    wk->bad_grad[c->step & 1] |= bad;
}

/* Whether any thread's update of a step of parity `par` met a non-finite gradient. */
static int bad_grads(const dpt_engine *e, int par)
{
    int bad = 0;
    for (int t = 0; t < e->T; t++)
        bad |= e->w[t].bad_grad[par];
    return bad;
}

/* Asks for the cache lines of columns [k0, k1) of rows [a, b) of the next step's
 * images, into L2 (too many lines for L1). */
static void prefetch_next(const stepctx *c, int a, int b, int k0, int k1)
{
    for (int r = a; r < b && k1 > k0; r++) {
        const uint8_t *img = c->ds->images + (size_t)c->pf[r] * c->ds->dim;
        uintptr_t p = (uintptr_t)(img + k0) & ~(uintptr_t)63, end = (uintptr_t)(img + k1);
        for (; p < end; p += 64)
            __builtin_prefetch((const void *)p, 0, 1);
    }
}

/* Plans the work anew from the threads' speeds over the last BALANCE_STEPS steps: a
 * thread's planned cycles (share.est) over the ticks it took for them (worker.t_plan).
 * The machine's cores change speed independently of each other, by up to 2x for
 * milliseconds at a time (a shared host), and a plan even in cycles then leaves the
 * faster core waiting at every barrier; a new plan gives each thread the part of the
 * work its speed asks for. Which thread computes what never changes a bit of the result
 * (see the file's comment), so the weights do not depend on the timings. The parts
 * move 70% of the way to the measured speeds' (all the way, the cost model's errors
 * make a plan and the next swap the small layers' units back and forth), and only when
 * one moves by 1% or more. DPT_BALANCE_SHUFFLE plans with random parts instead (tests:
 * the weights must not change). Thread 0, between two barriers. */
static void rebalance(dpt_engine *e)
{
    const int T = e->T;
    double sum = 0;
    int known = 0;
    for (int t = 0; t < T; t++) {
        share *sh = &e->shares[t];
        const double d = e->w[t].t_plan - sh->mark;
        sh->mark = e->w[t].t_plan;
        sh->speed = d > 0 && sh->est > 0 ? sh->est / d : 0;
        if (sh->speed > 0)
            sum += sh->speed, known++;
    }
    if (e->balance == DPT_BALANCE_SHUFFLE) {
        for (int t = 0; t < T; t++) {
            e->shuffle = e->shuffle * 6364136223846793005ull + 1442695040888963407ull;
            e->shares[t].speed = 0.25 + (double)(e->shuffle >> 11) * 0x1p-53;
        }
    } else {
        if (!known)
            return;
        /* a thread without planned work (more threads than work), and any outlier (a
         * thread descheduled for a while), counts within 4x of the mean */
        const double mean = sum / known;
        for (int t = 0; t < T; t++) {
            double v = e->shares[t].speed;
            e->shares[t].speed = v <= 0 ? mean : fmin(fmax(v, mean / 4), mean * 4);
        }
    }
    sum = 0;
    for (int t = 0; t < T; t++)
        sum += e->shares[t].speed;
    const double damp = e->balance == DPT_BALANCE_SHUFFLE ? 1.0 : 0.7;
    double moved = 0;
    for (int t = 0; t < T; t++) {
        share *sh = &e->shares[t];
        sh->speed = sh->frac + damp * (sh->speed / sum - sh->frac);
        moved = fmax(moved, fabs(sh->speed - sh->frac));
    }
    if (moved < 0.01 && e->balance != DPT_BALANCE_SHUFFLE)
        return;
    for (int t = 0; t < T; t++)
        e->shares[t].frac = e->shares[t].speed;
    /* A new set of K-blocks only if it is even by 4% more than the present one with
     * the other units and rows moved: a moved block's weights and optimiser state (the
     * default network's: 150 kB) then travel to the other core, and on the default
     * network that costs about 4% of the steps until the next plan. */
    const double *dens = e->planned ? e->kdensity : NULL;
    int same = 1;
    for (int t = 0; t < T; t++)
        e->kb_was[t] = e->shares[t].kb;
    const double fresh = plan_shares(e, dens, 0);
    for (int t = 0; t < T; t++)
        same &= e->shares[t].kb == e->kb_was[t];
    if (!same && e->balance != DPT_BALANCE_SHUFFLE) {
        for (int t = 0; t < T; t++) {
            const unsigned kb = e->shares[t].kb;
            e->shares[t].kb = e->kb_was[t];
            e->kb_was[t] = kb;
        }
        if (plan_shares(e, dens, 1) > fresh * 1.04) {
            for (int t = 0; t < T; t++)
                e->shares[t].kb = e->kb_was[t];
            plan_shares(e, dens, 1);
        }
    }
}

/* Skipping a run's zero pixels costs this many times the K-blocks' sparse cost model
 * against the whole row's dense gemm: on Fashion-MNIST (half the pixels nonzero) the
 * dense runs were faster (one thread, batch 320: 357k samples/s against 347k with every
 * run skipping zeros, 314k before; two threads 499k against 459k, 496k before), on
 * MNIST (~19% nonzero) the sparse ones by far (two threads, batch 512: 754k against
 * 544k before). 1.6 puts the break-even at ~43% nonzero for 128 outputs. */
#define ROWS_NZ_COST 1.6

/* First layer, batches by rows (too big for K-blocks): rows [r0, r1) of z_0, each run
 * of RCHUNK rows converted into x just before its product (the conversion counts its
 * nonzero pixels), with the dense gemm's bits (dpt_sgemm_ex: the sums over
 * the inputs in KC chunks, each from 0 and added to the chunks' before, then the bias
 * and ReLU). A run whose zero pixels make skipping them pay goes through dpt_sparse_xw_more, in pieces of up to
 * DPT_SPARSE_MAXW inputs chained within each KC chunk (a chunk after the first into a
 * second scratch, then added); the others through the gemm itself. Before, such
 * batches' forward product always ran densely, and past 320 rows every product did
 * (bench/RESULTS.md, eleventh session). */
static void first_rows(const stepctx *c, const worker *wk, int r0, int r1,
                       const dpt_epilogue *ep)
{
    const dpt_engine *e = c->e;
    const dpt_layer *l0 = &e->net->layer[0];
    const int in = l0->in, out = l0->out, kc = dpt_gemm_kc();
    const float *W = e->net->params + l0->w;
    float *sum = wk->rpart, *tmp = wk->rpart + rpart_stride(e);
    for (int c0 = r0; c0 < r1; c0 += RCHUNK) {
        const int m = r1 - c0 < RCHUNK ? r1 - c0 : RCHUNK;
        const float *xc = e->x + (size_t)c0 * in;
        float *zc = e->z[0] + (size_t)c0 * out;
        const size_t nz = dpt_load_input(c->ds, c->idx, c0, c0 + m, e->x);
        if (!e->sparse ||
            !skip_pays(e, (double)nz, ROWS_NZ_COST * e->fnz_cost[0], (double)m * in, out)) {
            dpt_sgemm_ex(0, 0, m, out, in, 1.0f, xc, in, W, out, 0.0f, zc, out, ep);
            continue;
        }
        for (int p0 = 0; p0 < in; p0 += kc) {
            const int p1 = in - p0 < kc ? in : p0 + kc;
            float *s = p0 ? tmp : sum;
            for (int k = p0; k < p1; k += DPT_SPARSE_MAXW) {
                const int w = p1 - k < DPT_SPARSE_MAXW ? p1 - k : DPT_SPARSE_MAXW;
                dpt_sparse_xw_more(xc + k, in, m, w, W + (size_t)k * out, out, out, s, out,
                                   k > p0);
            }
            if (p0)
                add_chunk(sum, tmp, (size_t)m * out);
        }
        dpt_sum_partials(zc, sum, 0, 1, 0, m, out, ep->bias, ep->relu);
    }
}

/* One step, run by every thread of the team. */
static void step(stepctx *c)
{
    dpt_engine *e = c->e;
    dpt_net *net = e->net;
    const dpt_config *cfg = &net->cfg;
    const int t = dpt_tid(), B = c->B, L = net->L;
    worker *wk = &e->w[t];
    int s0, s1;
    own_slices(e, B, t, &s0, &s1);
    /* (an empty run at the end of a batch not a whole number of slices: r0 = r1 = B) */
    const int r1 = s1 * DPT_SLICE < B ? s1 * DPT_SLICE : B,
              r0 = s0 * DPT_SLICE < r1 ? s0 * DPT_SLICE : r1, n = r1 - r0;
    const float p = cfg->dropout; /* also in MODE_GRAD: the mask is fixed by the step */
    double tc = -tick();
    const dpt_layer *l0 = &net->layer[0];
    const share *sh = &e->shares[t];
    /* The next step's images are scattered over the dataset: ask for this thread's
     * part of them while this step computes. Between K-block steps, a block's columns
     * are asked for as it is multiplied (the misses overlap the product instead of
     * stalling a burst of requests at the start); else the own rows, now. */
    const int ksplit = dpt_ksplit(e, B);
    const int pf_blocks = c->pf && ksplit && dpt_ksplit(e, c->pfB);
    if (c->pf && !pf_blocks) {
        if (dpt_ksplit(e, c->pfB)) { /* own columns of every row */
            for (int b = 0; b < e->nkb; b++)
                if (owns(sh, b))
                    prefetch_next(c, 0, c->pfB, dpt_kblock_row(l0->in, b),
                                  dpt_kblock_row(l0->in, b + 1));
        } else { /* own rows */
            int q0, q1;
            own_slices(e, c->pfB, t, &q0, &q1);
            prefetch_next(c, q0 * DPT_SLICE,
                          q1 * DPT_SLICE < c->pfB ? q1 * DPT_SLICE : c->pfB, 0, l0->in);
        }
    }

    /* First layer, small batches: this thread's K-blocks over the whole batch, then
     * (after a barrier) the block partials of its own rows summed in block order. */
    if (ksplit) {
        for (int b = 0; b < e->nkb; b++) {
            if (!owns(sh, b))
                continue;
            int k0 = dpt_kblock_row(l0->in, b), k1 = dpt_kblock_row(l0->in, b + 1);
            dpt_union un = { .rows = wk->rows, .u = wk->ubits, .bits = wk->rowbits,
                             .cfold = wk->cfold[b] };
            wk->kbnz[b] = dpt_load_input_cols(c->ds, c->idx, B, k0, k1, xblock(e, k0),
                                              e->narrow ? &un : NULL);
            wk->kbucols[b] = un.ucols;
            if (pf_blocks)
                prefetch_next(c, 0, c->pfB, k0, k1);
            const int path = fwd_path(e, wk, b, B, un.urows);
            const float *Wb = net->params + l0->w + (size_t)k0 * l0->out;
            if (path == FWD_XN)
                dpt_sparse_xw_narrow(xblock(e, k0), k1 - k0, B, k1 - k0, wk->rows, wk->ubits,
                                     Wb, l0->out, l0->out, kpart(e, b), l0->out);
            else if (path == FWD_X)
                dpt_sparse_xw(xblock(e, k0), k1 - k0, B, k1 - k0, Wb, l0->out, l0->out,
                              kpart(e, b), l0->out);
            else
                dpt_sgemm(0, 0, B, l0->out, k1 - k0, 1.0f, xblock(e, k0), k1 - k0,
                          net->params + l0->w + (size_t)k0 * l0->out, l0->out, 0.0f,
                          kpart(e, b), l0->out);
        }
        tc += tick();
        wk->t_plan += tc; /* the own K-blocks' conversion and product */
        SYNC(e, wk);
        tc -= tick();
    } /* else first_rows converts the rows */
    for (int l = 0; l < L; l++) {
        const dpt_layer *ly = &net->layer[l];
        const float *in = l ? act(e, l - 1) : e->x;
        const float *W = net->params + ly->w, *bias = net->params + ly->b;
        const size_t o = (size_t)r0 * ly->out;
        dpt_epilogue ep = { .bias = bias, .relu = l < L - 1 && !(ly->bn && cfg->bn_before) };
        if (l == 0 && ksplit)
            dpt_sum_partials(e->z[0], e->part, kpart_stride(e), e->nkb, r0, r1,
                             ly->out, bias, ep.relu);
        else if (l == 0)
            first_rows(c, wk, r0, r1, &ep);
        else if (n > 0 && l > 0 && e->sparse && ly->in <= DPT_SPARSE_MAXW && may_skip(e, l, 0) &&
                 skip_pays(e,
                           (double)dpt_sparse_count(in + (size_t)r0 * ly->in, ly->in, n, ly->in),
                           e->fnz_cost[l], (double)n * ly->in, ly->out)) {
            /* a hidden layer's input (ReLU and dropout output) is mostly zero too: the
             * product skips its zeros into h's rows (free until this layer's output is
             * made), then the bias and ReLU as the dense kernel's epilogue adds them */
            dpt_sparse_xw(in + (size_t)r0 * ly->in, ly->in, n, ly->in, W, ly->out, ly->out,
                          e->h[l] + o, ly->out);
            dpt_sum_partials(e->z[l], e->h[l], 0, 1, r0, r1, ly->out, bias, ep.relu);
        } else if (n > 0)
            dpt_sgemm_ex(0, 0, n, ly->out, ly->in, 1.0f, in + (size_t)r0 * ly->in, ly->in, W,
                         ly->out, 0.0f, e->z[l] + o, ly->out, &ep);
        if (l == L - 1) {
            dpt_softmax_xent(e->z[l], e->h[l], e->dz[l], r0, r1, ly->out, c->ds->labels, c->idx,
                         B, e->loss, e->hit);
            break;
        }
        const float *cur = e->z[l];
        if (ly->bn) {
            bn_forward(e, wk, l, B, s0, s1, r0, r1, &tc);
            cur = e->h[l];
        }
        if (p > 0) {
            dpt_dropout_mask(e->dmask[l], r0, r1, ly->out, p, cfg->seed, l, c->step);
            dpt_ew_mul(e->h[l] + o, cur + o, e->dmask[l] + o, (size_t)n * ly->out);
        }
    }
    for (int l = L - 1; l >= 1; l--) {
        const dpt_layer *ly = &net->layer[l], *lh = &net->layer[l - 1];
        float *g = e->dz[l - 1];
        const size_t o = (size_t)r0 * lh->out;
        const int fuse = !lh->bn && p == 0;
        dpt_epilogue ep = { .mask = fuse ? e->z[l - 1] + o : NULL, .ldm = lh->out };
        if (n > 0)
            dpt_sgemm_ex(0, 1, n, lh->out, ly->out, 1.0f, e->dz[l] + (size_t)r0 * ly->out,
                         ly->out, net->params + ly->w, ly->out, 0.0f, g + o, lh->out, &ep);
        if (fuse)
            continue;
        const size_t cnt = (size_t)n * lh->out;
        if (lh->bn) {
            if (p > 0)
                dpt_ew_mul(g + o, g + o, e->dmask[l - 1] + o, cnt);
            bn_backward(e, wk, l - 1, B, s0, s1, r0, r1, g, &tc);
        } else { /* dropout without batchnorm: h > 0 exactly where the unit was kept
                    and active */
            dpt_ew_relu_grad(g + o, e->h[l - 1] + o, e->dmask[l - 1] + o, cnt);
        }
    }
    tc += tick();
    wk->t_compute += tc;
    SYNC(e, wk);
    /* Every update of the previous step is done now (each thread finished it before
     * this barrier; none can have started this step's, which sets the other parity):
     * a non-finite gradient there stops the chunk before this step changes anything. */
    if (c->mode == MODE_TRAIN && bad_grads(e, (int)((c->step + 1) & 1))) {
        c->prev_bad = 1;
        return;
    }

    /* Every thread sums the batch cost in row order: the same value everywhere, so a
     * non-finite cost stops all threads before any update. */
    double cost = 0;
    size_t correct = 0;
    for (int r = 0; r < B; r++) {
        cost += e->loss[r];
        correct += e->hit[r];
    }
    cost /= B;
    c->bad_cost = !isfinite(cost);
    if (t == 0) {
        c->cost = cost;
        c->correct = correct;
    }
    const double tu = tick();
    update_share(c, t, wk, ksplit);
    wk->t_plan += tick() - tu;
    /* The next step may start without waiting when both steps are K-split: before its
     * first barrier a thread reads only its own K-blocks' weights (which it updated
     * itself) and writes only its own blocks of input and partials (which only it
     * reads in this update). A row-layout step's update reads every row of x. Every
     * BALANCE_STEPS steps the threads wait for each other, thread 0 plans anew from
     * their speeds (nobody reads the plan meanwhile), and they wait for the plan. */
    if (c->mode == MODE_TRAIN && e->balance && e->T > 1 &&
        (c->step + 1) % BALANCE_STEPS == 0) {
        SYNC(e, wk);
        if (t == 0)
            rebalance(e);
        SYNC(e, wk);
    } else if (!c->next || !ksplit || !dpt_ksplit(e, c->nextB)) {
        SYNC(e, wk);
    }
}

/* The fraction of nonzero pixels in each K-block of ds's images (up to 1024 images,
 * evenly spread: a block's fraction within ~0.5% of all images'), and for the narrow
 * products (e->narrow) the fractions of (group of 4 of those images, pixel) and (image,
 * group of 4 adjacent pixels) pairs with a nonzero (the first an upper estimate: a step
 * groups its rows by their nonzero count, which shrinks the unions by ~1/6 on
 * Fashion-MNIST, about alike for every block). One pass, image by image, with the
 * images ahead prefetched (the hardware prefetcher stops at pages). It runs in the first
 * training call's time: by blocks over 4096 images it took ~6 ms there on
 * Fashion-MNIST (a sixth of a small-network epoch on two threads), now ~0.2 ms. */
enum { PLAN_IMAGES = 1024 };
static void block_densities(dpt_engine *e, const dpt_dataset *ds)
{
    const size_t step = ds->n > PLAN_IMAGES ? ds->n / PLAN_IMAGES : 1;
    const int in = e->net->layer[0].in;
    size_t nz[DPT_KBLOCKS] = { 0 }, ur[DPT_KBLOCKS] = { 0 }, uc[DPT_KBLOCKS] = { 0 };
    size_t images = 0;
    uint32_t acc[DPT_KBLOCKS][DPT_SPARSE_WORDS(DPT_SPARSE_MAXW)] = { { 0 } };
    int row[DPT_KBLOCKS + 1];
    for (int b = 0; b <= e->nkb; b++)
        row[b] = dpt_kblock_row(in, b);
    for (size_t i = 0; i < ds->n; i += step, images++) {
        const uint8_t *img = ds->images + i * ds->dim;
        if (i + 8 * step < ds->n) /* the image eight ahead */
            for (size_t k = 0; k < ds->dim; k += 64)
                __builtin_prefetch(img + 8 * step * ds->dim + k);
        for (int b = 0; b < e->nkb; b++) {
            enum { NW = DPT_SPARSE_WORDS(DPT_SPARSE_MAXW) };
            uint32_t bits[NW], fold[NW];
            const int w = row[b + 1] - row[b], n = DPT_SPARSE_WORDS(w);
            nz[b] += dpt_sparse_bytebits(img + row[b], w, bits);
            if (!e->narrow)
                continue;
            for (int c = 0; c < n; c++) {
                fold[c] = (bits[c] | bits[c] >> 1 | bits[c] >> 2 | bits[c] >> 3) & 0x11111111u;
                acc[b][c] |= bits[c];
            }
            uc[b] += dpt_sparse_bits(fold, (size_t)n);
            if (images % DPT_SPARSE_R == DPT_SPARSE_R - 1) {
                ur[b] += dpt_sparse_bits(acc[b], (size_t)n);
                memset(acc[b], 0, sizeof acc[b]);
            }
        }
    }
    for (int b = 0; b < e->nkb; b++) {
        const int w = row[b + 1] - row[b];
        const double all = (double)images * w, groups = (double)(images / DPT_SPARSE_R);
        e->kdensity[b] = all > 0 ? (double)nz[b] / all : 1.0;
        e->kurows[b] = groups > 0 ? (double)ur[b] / (groups * w) : 1.0;
        e->kucols[b] = all > 0 ? (double)uc[b] * DPT_SPARSE_R / all : 1.0;
    }
}

int dpt_engine_train(dpt_engine *e, const dpt_dataset *ds, const uint32_t *order,
                     size_t n, int batch, size_t first_batch, size_t nsteps,
                     double *cost_sum, size_t *correct, dpt_error *err)
{
    if (batch < 1 || batch > e->maxB)
        return dpt_seterr(err, DPT_EINPUT, "--batch: %d exceeds the engine's %d", batch,
                          e->maxB);
    if (ds->dim != (size_t)e->net->layer[0].in)
        return dpt_seterr(err, DPT_EINPUT, "--arch: input size %d does not match the "
                          "data's %zu pixels", e->net->layer[0].in, ds->dim);
    if (e->sparse) {
        /* The block costs depend on the data's zero pixels, and (K-split batches) the
         * gradient's on how much of dZ is zero (GRAD_DZ): measured over the steps since
         * the last call (all threads count the same dZ), re-planned when it moved by
         * 0.05. */
        double seen[2] = { 0, 0 };
        for (int t = 0; t < e->T; t++) {
            seen[0] += e->w[t].dz_seen[0], seen[1] += e->w[t].dz_seen[1];
            e->w[t].dz_seen[0] = e->w[t].dz_seen[1] = 0;
        }
        const int rho_moved = seen[1] > 0 && fabs(seen[0] / seen[1] - e->dz_rho) > 0.05;
        if (rho_moved)
            e->dz_rho = seen[0] / seen[1];
        if (ds->images != e->planned || ds->n != e->planned_n) {
            block_densities(e, ds);
            e->planned = ds->images;
            e->planned_n = ds->n;
            plan_shares(e, e->kdensity, 0);
        } else if (rho_moved) {
            plan_shares(e, e->kdensity, 0);
        }
    }
    const uint64_t step0 = e->net->step;
    size_t done = 0;
    int failed = 0;
    double csum = 0, pcost = 0;
    size_t hits = 0, phits = 0;
    int pending = 0; /* a step whose cost is in pcost, its update not yet known good */
    double w0 = dpt_now(), k0 = tick();
    for (int t = 0; t < e->T; t++)
        e->w[t].bad_grad[0] = e->w[t].bad_grad[1] = 0;
    stepctx c = { .e = e, .ds = ds, .mode = MODE_TRAIN };
#ifdef _OPENMP
#pragma omp parallel num_threads(e->T) firstprivate(c)
#endif
    {
        /* the plans assume exactly T threads (checked at creation; a team that comes
         * out smaller now does no step rather than a wrong one) */
        size_t steps = dpt_team_size() == e->T ? nsteps : 0;
        if (steps != nsteps && dpt_tid() == 0)
            failed = 2;
        for (size_t s = 0; s < steps; s++) {
            size_t bi = first_batch + s, start = bi * (size_t)batch;
            if (start >= n)
                break;
            c.idx = order + start;
            c.B = (int)(n - start < (size_t)batch ? n - start : (size_t)batch);
            size_t nstart = start + (size_t)c.B;
            /* prefetch the next batch of the order even past this chunk: the next call
             * (after an evaluation, say) starts there */
            c.pf = nstart < n ? order + nstart : NULL;
            c.pfB = c.pf ? (int)(n - nstart < (size_t)batch ? n - nstart : (size_t)batch) : 0;
            c.next = s + 1 < nsteps ? c.pf : NULL;
            c.nextB = c.next ? c.pfB : 0;
            c.step = step0 + s;
            step(&c);
            /* Every thread takes the same decisions: the cost is summed by each, and
             * the previous step's gradient flags are read after a barrier. A step's
             * gradients are known good only at the next step (or the region's end). */
            if (c.prev_bad || c.bad_cost) {
                if (dpt_tid() == 0) {
                    failed = 1;
                    pending = pending && !c.prev_bad;
                }
                break;
            }
            if (dpt_tid() == 0) {
                if (pending) {
                    csum += pcost;
                    hits += phits;
                    done++;
                }
                pcost = c.cost;
                phits = c.correct;
                pending = 1;
            }
        }
    }
    /* the last step's update: after the region's barrier every flag is visible (an
     * earlier step's bad gradient would have stopped the loop) */
    if (pending) {
        if (bad_grads(e, 0) || bad_grads(e, 1)) {
            failed = 1;
        } else {
            csum += pcost;
            hits += phits;
            done++;
        }
    }
    e->net->step = step0 + done;
    e->wall += dpt_now() - w0;
    e->wall_ticks += tick() - k0;
    if (cost_sum)
        *cost_sum += csum;
    if (correct)
        *correct += hits;
    if (failed == 2)
        return dpt_seterr(err, DPT_EFAIL, "OpenMP gave fewer than the %d threads the "
                          "engine was made for", e->T);
    if (failed)
        return dpt_seterr(err, DPT_EFAIL, "training diverged at step %llu: the cost or a "
                          "gradient is not finite (try a smaller --lr)",
                          (unsigned long long)(step0 + done + 1));
    return DPT_OK;
}

int dpt_engine_gradient(dpt_engine *e, const dpt_dataset *ds, const uint32_t *idx, int B,
                        double *cost, dpt_error *err)
{
    if (B < 1 || B > e->maxB)
        return dpt_seterr(err, DPT_EINPUT, "batch %d exceeds the engine's %d", B, e->maxB);
    stepctx c = { .e = e, .ds = ds, .idx = idx, .B = B, .step = e->net->step,
                  .mode = MODE_GRAD };
    double result = 0;
    int short_team = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(e->T) firstprivate(c)
#endif
    {
        if (dpt_team_size() == e->T)
            step(&c);
        else if (dpt_tid() == 0)
            short_team = 1;
        if (dpt_tid() == 0)
            result = c.cost;
    }
    if (short_team)
        return dpt_seterr(err, DPT_EFAIL, "OpenMP gave fewer than the %d threads the "
                          "engine was made for", e->T);
    *cost = result;
    return DPT_OK;
}

void dpt_engine_times(const dpt_engine *e, dpt_phase_times *t)
{
    memset(t, 0, sizeof *t);
    const double sec = e->wall_ticks > 0 ? e->wall / e->wall_ticks : 0; /* per tick */
    for (int i = 0; i < e->T; i++) {
        t->compute += e->w[i].t_compute * sec / e->T;
        t->sync += e->w[i].t_sync * sec / e->T;
        t->update += e->w[i].t_update * sec / e->T;
    }
    t->wall = e->wall;
}

void dpt_engine_reset_times(dpt_engine *e)
{
    for (int i = 0; i < e->T; i++)
        e->w[i].t_compute = e->w[i].t_sync = e->w[i].t_update = 0;
    e->wall = e->wall_ticks = 0;
}
