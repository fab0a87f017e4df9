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
int dpt_gemm_supported(const char *isa);
/* The M at or below which B is read unpacked; set (>= 0) for benchmarks and tests,
 * query with -1. Returns the previous value. */
int dpt_gemm_small_m(int m);

#ifdef __cplusplus
}
#endif
#endif
