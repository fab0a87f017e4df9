/* dptrain.h — public API of libdptrain, a data-parallel MLP trainer.
 *
 * Conventions
 *  - Every public name has the prefix dpt_ / DPT_.
 *  - Functions that can fail return an int status (DPT_OK, DPT_EFAIL, DPT_EINPUT) and
 *    fill a caller-owned dpt_error with a one-line message naming the file or field.
 *    The library never prints and never exits; only the dptrain command does.
 *  - Whoever receives memory from a dpt_*_load / dpt_*_new / dpt_*_create frees it with
 *    the matching dpt_*_free; all other pointers are borrowed.
 *  - Matrices are row-major float32.
 */
#ifndef DPTRAIN_H
#define DPTRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DPT_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors -------- */

enum {
    DPT_OK = 0,     /* success */
    DPT_EFAIL = 1,  /* the run failed: I/O error, out of memory, diverged */
    DPT_EINPUT = 2  /* bad input: malformed file, bad option value */
};

typedef struct dpt_error {
    int code;       /* one of the DPT_* codes above, DPT_OK when nothing failed */
    char msg[512];  /* "<what>: <why>", without the "dptrain: error: " prefix */
} dpt_error;

/* Sets err (if not NULL) and returns code. printf-style. */
int dpt_seterr(dpt_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Seconds on a monotonic clock (for timing). */
double dpt_now(void);

/* 64-byte aligned allocation (zeroed) and its release; NULL on failure or overflow. */
void *dpt_alloc(size_t count, size_t size);
void dpt_free(void *p);

/* ------------------------------------------------------- counter-based RNG ------ */

/* A stateless random function: the same (seed, stream, counter) always gives the same
 * 64 bits, whichever thread asks. Streams separate uses (init, split, shuffle, dropout). */
uint64_t dpt_rand64(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform float in [0, 1) and a standard normal, from the same keys. */
float dpt_randu(uint64_t seed, uint64_t stream, uint64_t counter);
double dpt_randn(uint64_t seed, uint64_t stream, uint64_t counter);

enum { DPT_STREAM_INIT = 1, DPT_STREAM_SPLIT = 2, DPT_STREAM_SHUFFLE = 3,
       DPT_STREAM_DROPOUT = 4 };

/* ------------------------------------------------------------- IDX files -------- */

/* Sane maxima for IDX headers: a dimension above these is rejected before any
 * allocation. 2^28 samples, 4096 pixels per side, 2 GiB of payload. */
#define DPT_IDX_MAX_COUNT  (1u << 28)
#define DPT_IDX_MAX_SIDE   4096u
#define DPT_IDX_MAX_BYTES  ((size_t)1 << 31)

typedef struct dpt_idx {
    int ndim;            /* 1 (labels) or 3 (images) */
    uint32_t dims[3];    /* dims[0] = number of items */
    size_t nbytes;       /* product of dims: the payload size */
    uint8_t *data;       /* nbytes of unsigned bytes, 64-byte aligned; dpt_idx_free */
} dpt_idx;

/* Reads an unsigned-byte IDX file with ndim dimensions (1 or 3), plain or gzip
 * (detected by content). Validates magic, type, dimension count, each dimension,
 * and the header against the payload length before allocating. */
int dpt_idx_read(const char *path, int ndim, dpt_idx *out, dpt_error *err);
void dpt_idx_free(dpt_idx *idx);
/* Writes an unsigned-byte IDX file (gzip-compressed when gz != 0), atomically. */
int dpt_idx_write(const char *path, int ndim, const uint32_t *dims, const uint8_t *data,
                  int gz, dpt_error *err);

/* --------------------------------------------------------------- datasets ------- */

typedef struct dpt_dataset {
    size_t n;            /* number of samples */
    size_t dim;          /* pixels per sample (rows * cols) */
    uint32_t rows, cols;
    int classes;         /* labels lie in [0, classes) */
    uint8_t *images;     /* n * dim bytes, 64-byte aligned */
    uint8_t *labels;     /* n bytes */
} dpt_dataset;

/* Loads an image file and its label file; checks that counts agree and every label is
 * below max_classes (0 means 256). ds->classes becomes 1 + the largest label. */
int dpt_dataset_load(const char *images_path, const char *labels_path, int max_classes,
                     dpt_dataset *ds, dpt_error *err);
/* Loads DIR/train-* (which = 0) or DIR/t10k-* (which = 1), each file plain or ".gz". */
int dpt_dataset_load_dir(const char *dir, int which, int max_classes, dpt_dataset *ds,
                         dpt_error *err);
void dpt_dataset_free(dpt_dataset *ds);

/* Deterministic seeded split of 0..n-1: the first round(n*val_fraction) indices of a
 * seeded permutation become the validation set, the rest the training set; both lists
 * are returned sorted ascending (caller frees with dpt_free). */
int dpt_split(size_t n, double val_fraction, uint64_t seed, uint32_t **train_idx,
              size_t *ntrain, uint32_t **val_idx, size_t *nval, dpt_error *err);
/* The order of one epoch: out = a permutation of base that is a pure function of
 * (seed, epoch), so a resumed run sees the same order. */
void dpt_shuffle(const uint32_t *base, uint32_t *out, size_t n, uint64_t seed,
                 uint64_t epoch);


/* ------------------------------------------------------------------ gemm -------- */

/* Fused epilogue applied after alpha*op(A)op(B) + beta*C: add bias[j] (length N), clamp
 * at zero (relu), zero where mask[i*ldm + j] <= 0 (the ReLU mask of backward). */
typedef struct dpt_epilogue {
    const float *bias;
    int relu;
    const float *mask;
    int ldm;
} dpt_epilogue;

/* C[M x N] = alpha * op(A) * op(B) + beta * C, row-major, single-threaded.
 * op(A) is M x K: A (lda >= K) or, when ta != 0, A^T of a K x M matrix (lda >= M).
 * op(B) is K x N: B (ldb >= N) or, when tb != 0, B^T of an N x K matrix (ldb >= K).
 * beta == 0 overwrites C without reading it (NaN in C does not propagate).
 * The value of each row of C is bitwise independent of M and of the row's position.
 * Returns DPT_OK, or DPT_EFAIL if this thread's packing buffers (a few MiB, allocated on
 * first use and kept) could not be allocated; dpt_gemm_reserve() allocates them ahead. */
int dpt_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* The same with a fused epilogue (ep may be NULL). */
int dpt_sgemm_ex(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc,
                  const dpt_epilogue *ep);
/* Allocates the calling thread's packing buffers for the active kernel now. */
int dpt_gemm_reserve(void);
/* Chooses the micro-kernel: "ref", "avx2", "avx512", or NULL / "auto" for the best this
 * CPU runs (the default, decided once at start-up; DPTRAIN_ISA overrides it). Fails with
 * DPT_EINPUT for an unknown name or a kernel this CPU cannot run. Not thread-safe:
 * call before training starts. */
int dpt_gemm_select(const char *isa, dpt_error *err);
/* Name of the kernel in use, and whether this CPU can run a given one. */
const char *dpt_gemm_kernel(void);
/* The kernel's KC: a product's sums over K run in chunks of this many terms, each from
 * 0, added to the sum of the chunks before (zero-skipping products that must give the
 * same bits follow it). */
int dpt_gemm_kc(void);
/* Whether training's products may skip zeros (of a layer's input: pixels, or a hidden
 * layer's ReLU/dropout output; or of dZ in the first layer's gradient): the avx512
 * kernel is in use, the CPU has AVX-512 BW/VL, and DPTRAIN_SPARSE is not "0". (The
 * weights are the same either way.) */
int dpt_gemm_sparse(void);
/* DPTRAIN_SPARSE, for tests and measurements: unset, "", "auto" or "1": each product of
 * each step takes the cheapest way by the cost model (DPT_SPARSE_AUTO); "0": all dense
 * (DPT_SPARSE_OFF); "input": every product that can skip its input's zeros does
 * (DPT_SPARSE_INPUT); "dz": every first-layer weight gradient skips dZ's zeros, the rest
 * by cost (DPT_SPARSE_DZ); anything else: -1 (the CLI refuses it). */
enum { DPT_SPARSE_AUTO, DPT_SPARSE_OFF, DPT_SPARSE_INPUT, DPT_SPARSE_DZ };
int dpt_sparse_mode(void);
int dpt_gemm_supported(const char *isa);
/* The M at or below which B is read unpacked; set (>= 0) for benchmarks and tests,
 * query with -1. Returns the previous value. */
int dpt_gemm_small_m(int m);

/* --------------------------------------------------------- configuration -------- */

#define DPT_MAX_LAYERS 16     /* dense layers, hidden + output */
#define DPT_MAX_WIDTH  65536  /* units in one layer */
#define DPT_MAX_BATCH  65536

enum dpt_optimizer { DPT_SGD = 0, DPT_MOMENTUM = 1, DPT_ADAM = 2, DPT_ADAMW = 3 };

/* Everything that defines a training run. dpt_config_default() gives the classic
 * small-MLP recipe: 784-128-64-10, ReLU, dropout 0.2, Adam lr 1e-3, weight decay 1e-4,
 * batch 32, 10 epochs, 20% validation, all physical cores. */
typedef struct dpt_config {
    int nlayers;                     /* dense layers; sizes has nlayers + 1 entries */
    int sizes[DPT_MAX_LAYERS + 1];   /* sizes[0] = input pixels, last = classes */
    int optimizer;                   /* enum dpt_optimizer */
    float lr;
    float momentum;                  /* SGD momentum (DPT_MOMENTUM), default 0.9 */
    int nesterov;
    float beta1, beta2, eps;         /* Adam(W): 0.9, 0.999, 1e-8 */
    float weight_decay;              /* PyTorch meaning: coupled (sgd, momentum, adam),
                                        decoupled (adamw); on every parameter */
    float l2;                        /* cost += l2/(2m) * sum of dense weights squared */
    float dropout;                   /* probability of dropping a hidden unit */
    int batchnorm;                   /* batch normalisation on hidden layers */
    int bn_before;                   /* BN before the ReLU (default: after it) */
    float bn_momentum, bn_eps;       /* running statistics: 0.1, 1e-5 (PyTorch) */
    int batch;
    int epochs;
    double val_split;                /* fraction of the training file for validation */
    int eval_every;                  /* also evaluate every N steps (0: epoch ends only) */
    int patience;                    /* early stopping after N evaluations (0: off) */
    float min_delta;                 /* improvement that resets patience, default 1e-5 */
    int threads;                     /* 0: one per physical core */
    int bind;                        /* pin threads to cores (default 1) */
    uint64_t seed;
} dpt_config;

void dpt_config_default(dpt_config *cfg);
/* Parses "784-128-64-10" into cfg->nlayers / cfg->sizes. */
int dpt_parse_arch(const char *arch, dpt_config *cfg, dpt_error *err);
/* Writes "784-128-64-10" into buf. */
void dpt_format_arch(const dpt_config *cfg, char *buf, size_t n);
/* Checks every value for range and consistency; names the offending option. */
int dpt_config_check(const dpt_config *cfg, dpt_error *err);
const char *dpt_optimizer_name(int opt);
int dpt_optimizer_parse(const char *name, int *opt);

/* ------------------------------------------------------------------ model -------- */

/* A network: configuration, parameters, batchnorm running statistics and optimiser
 * state. Parameters are one flat 64-byte aligned buffer; a dense weight is stored
 * [in][out] in memory (checkpoints store PyTorch's [out][in]). */
typedef struct dpt_net dpt_net;

/* Creates a network with He-initialised weights from cfg->seed. */
dpt_net *dpt_net_create(const dpt_config *cfg, dpt_error *err);
void dpt_net_free(dpt_net *net);
const dpt_config *dpt_net_config(const dpt_net *net);
size_t dpt_net_nparams(const dpt_net *net);
/* Changes what may differ between a checkpointed run and its continuation: epochs,
 * threads, bind, patience, eval_every, min_delta. Any other difference from the
 * network's configuration is refused with DPT_EINPUT naming the option. */
int dpt_net_reconfigure(dpt_net *net, const dpt_config *cfg, dpt_error *err);
/* Optimiser steps taken so far. */
uint64_t dpt_net_steps(const dpt_net *net);
/* FNV-1a 64 over the bytes of all parameters and running statistics: equal iff the
 * weights are bitwise equal (barring a collision). */
uint64_t dpt_net_fingerprint(const dpt_net *net);

typedef struct dpt_metrics {
    double cost;       /* mean cross-entropy (+ the L2 term when l2 > 0) */
    double accuracy;   /* fraction correct */
    size_t n;
} dpt_metrics;

/* Inference over samples idx[0..n) of ds (idx NULL: all of ds) with `threads` threads
 * (0: default). Optionally fills confusion[classes*classes] (row = true label),
 * pred[n] and conf[n] (probability of the predicted class). */
int dpt_net_evaluate(dpt_net *net, const dpt_dataset *ds, const uint32_t *idx, size_t n,
                     int threads, dpt_metrics *out, int *confusion, int *pred, float *conf,
                     dpt_error *err);

/* -------------------------------------------------------- the thread team -------- */

/* hwloc's view of the machine. */
typedef struct dpt_topology {
    int cores;        /* physical cores */
    int pus;          /* hardware threads */
    int packages, numa_nodes;
    char cpu_model[128];
    char summary[512];
} dpt_topology;

void dpt_topology_get(dpt_topology *t);
/* The time, in nanoseconds, for a cache line to go from the first thread's core to the
 * second's and back (the median of five sets of 4000 round trips; the threads pinned
 * as an engine pins them when bind): what every barrier and every line of data that
 * changes core costs. -1 with fewer than two cores or without OpenMP. On a virtual
 * machine it follows where the host places the virtual CPUs (this machine: ~90 ns on
 * one die, ~450 ns across dies, changing within minutes). */
double dpt_team_roundtrip_ns(int bind);

/* ---------------------------------------------------------------- training ------- */

/* The data-parallel engine: a thread team and per-batch workspace for one network. */
typedef struct dpt_engine dpt_engine;

/* Time spent per phase, summed over steps, averaged over threads (seconds). */
typedef struct dpt_phase_times {
    double compute;   /* forward + backward on own slices, gradient gemm */
    double sync;      /* waiting at barriers */
    double update;    /* optimiser update */
    double wall;
} dpt_phase_times;

/* threads 0 = cfg->threads or the physical core count. bind: pin to cores; a failed
 * binding leaves *warning set (a static string) and goes on unpinned. */
dpt_engine *dpt_engine_create(dpt_net *net, int max_batch, int threads, int bind,
                              const char **warning, dpt_error *err);
void dpt_engine_free(dpt_engine *e);
/* DPTRAIN_BALANCE, read by dpt_engine_create: unset, "", "on" or "1": every 8 steps
 * the work is planned anew from the threads' measured speeds (DPT_BALANCE_ON); "off" or
 * "0": the plan stays as the cost model made it (DPT_BALANCE_OFF); "shuffle": random
 * parts every 8 steps, for tests (DPT_BALANCE_SHUFFLE); anything else: -1 (the CLI
 * refuses it). The weights are the same in every mode. */
enum { DPT_BALANCE_OFF, DPT_BALANCE_ON, DPT_BALANCE_SHUFFLE };
int dpt_balance_mode(void);
int dpt_engine_threads(const dpt_engine *e);
const char *dpt_engine_binding(const dpt_engine *e);

/* Runs nsteps training steps on consecutive batches of `order` (batch i is
 * order[i*batch .. min((i+1)*batch, n))), in one parallel region. Adds the mean
 * training cost and correct count of each step to *cost_sum / *correct (may be NULL).
 * Fails with DPT_EFAIL (and leaves the weights as they were before the failing step's
 * update) when the cost or a gradient is not finite. */
int dpt_engine_train(dpt_engine *e, const dpt_dataset *ds, const uint32_t *order,
                     size_t n, int batch, size_t first_batch, size_t nsteps,
                     double *cost_sum, size_t *correct, dpt_error *err);
void dpt_engine_times(const dpt_engine *e, dpt_phase_times *t);
void dpt_engine_reset_times(dpt_engine *e);

/* Computes the gradient of the mean batch cost at the current parameters, without an
 * update, for samples idx[0..B): for tests (finite differences). Returns the cost. */
int dpt_engine_gradient(dpt_engine *e, const dpt_dataset *ds, const uint32_t *idx, int B,
                        double *cost, dpt_error *err);
/* Views of the flat parameter and gradient buffers (for tests and tools). */
float *dpt_net_params(dpt_net *net);
float *dpt_net_grads(dpt_net *net);
/* Batchnorm running statistics (2 * units per batchnorm layer) and their count. */
float *dpt_net_stats(dpt_net *net, size_t *n);

/* ------------------------------------------------------------ training loop ------ */

/* Where a run stands: saved in checkpoints so --resume continues exactly. */
typedef struct dpt_train_state {
    int epoch;             /* current epoch (0-based); == epochs when finished */
    size_t batch;          /* next batch within the epoch */
    double best_cost;      /* best validation cost so far (INFINITY: none) */
    int best_epoch;        /* 1-based epoch of the best cost */
    int bad_evals;         /* evaluations since the best */
    int stopped;           /* early stopping triggered */
    float *best;           /* nparams + nstats floats: the best weights, or NULL */
    uint64_t data_hash;    /* identifies the training set (0: not yet known); a resumed
                              run on other data is refused */
} dpt_train_state;

void dpt_train_state_init(dpt_train_state *s);
void dpt_train_state_free(dpt_train_state *s);

enum { DPT_EV_PROGRESS = 0, DPT_EV_EVAL = 1, DPT_EV_EPOCH = 2 };

typedef struct dpt_progress {
    int event;             /* DPT_EV_* */
    int epoch, epochs;     /* 1-based current epoch */
    size_t batch, batches; /* batches done in this epoch / per epoch */
    uint64_t step;         /* optimiser steps so far */
    double train_cost;     /* mean cost over the steps since the last evaluation */
    double train_accuracy;
    double seconds;        /* training seconds so far (steps only) */
    double samples_per_s;
    double eta;            /* estimated seconds left */
    int has_val;
    dpt_metrics val;       /* at DPT_EV_EVAL / DPT_EV_EPOCH when has_val */
    int improved;
} dpt_progress;

typedef struct dpt_train_opts {
    int threads;           /* 0: cfg.threads or physical cores */
    int bind;
    /* Non-zero: `threads` is a most. Training runs on that many threads or on fewer
     * (halving down to 1) while fewer are measured to train faster: every few thousand
     * steps a short run of a neighbouring count is timed against the present one. The
     * weights do not depend on the count, so this moves only time. */
    int adapt;
    /* Called from the calling thread between chunks of steps (may be NULL). */
    void (*progress)(void *ud, const dpt_progress *p);
    void *ud;
    /* Polled between chunks; non-zero stops the run cleanly (state stays resumable). */
    int (*should_stop)(void *ud);
    size_t stop_after;     /* stop after this many steps in this call (0: no limit) */
    int *confusion;        /* if not NULL: classes x classes, filled by the final test
                              evaluation (row = true label) */
    FILE *log;             /* CSV learning curve (header written when at step 0) */
    /* Called at every epoch end with the state (checkpointing); non-zero aborts. */
    int (*epoch_end)(void *ud, dpt_net *net, const dpt_train_state *st, dpt_error *err);
} dpt_train_opts;

typedef struct dpt_train_result {
    double train_seconds, samples_per_s;
    size_t samples;
    dpt_metrics train, val, test; /* at the end, in inference mode (train: the training
                                     split without the validation samples) */
    int has_val, has_test;
    int epochs_run;
    int stopped_early, interrupted;
    int best_epoch;
    double sync_share;     /* fraction of step time spent at barriers */
    int threads;
    double threads_mean;   /* the thread count averaged over the steps (adapt) */
    const char *binding;
    const char *bind_warning;
} dpt_train_result;

/* Trains net on `train` (split into train/validation by cfg.val_split and cfg.seed),
 * evaluating on `test` (may be NULL) at the end, from state *st (fresh or resumed). */
int dpt_train(dpt_net *net, const dpt_dataset *train, const dpt_dataset *test,
              dpt_train_state *st, const dpt_train_opts *opts, dpt_train_result *res,
              dpt_error *err);

/* -------------------------------------------------------------- checkpoints ------ */

/* Saves net as a safetensors file, atomically (temporary file, fsync, rename). Tensors
 * layers.<i>.weight [out, in], layers.<i>.bias [out], layers.<i>.bn.{weight, bias,
 * running_mean, running_var} [out], as PyTorch's nn.Linear / nn.BatchNorm1d state_dict;
 * __metadata__ holds the architecture and hyperparameters. With st != NULL, also the
 * optimiser moments (optim.m1, optim.m2, in dptrain's flat order), the step, epoch and
 * early-stopping state (train.best), so that dpt_checkpoint_load + dpt_train resume
 * exactly. */
int dpt_checkpoint_save(const char *path, const dpt_net *net, const dpt_train_state *st,
                        dpt_error *err);
/* Loads a checkpoint, validating the header length, the JSON, every dtype, shape and
 * offset against the file before use. st (may be NULL) receives the training state;
 * a weights-only file gives a fresh state. */
int dpt_checkpoint_load(const char *path, dpt_net **net, dpt_train_state *st,
                        dpt_error *err);

#ifdef __cplusplus
}
#endif
#endif
