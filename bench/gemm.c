/* bench/gemm: single-threaded GFLOP/s of dptrain's sgemm against OpenBLAS cblas_sgemm,
 * in the same run, on the layer shapes of the default and classic networks and on
 * squares. Every result is checked against OpenBLAS's before it is timed.
 *
 * Layer shapes, for a slice of M rows through a layer with K inputs and N outputs
 * (weights stored [K][N] in memory, as dptrain keeps them):
 *   fwd  Y[M x N]  = X[M x K] W            (A normal,     B normal)
 *   bwdx dX[M x K] = dY[M x N] W^T         (A normal,     B transposed)
 *   bwdw dW[K x N] = X^T dY                (A transposed, B normal; inner size M)
 * Prints one row per case, the packing crossover, and last the median ratio. */
#include "dptrain.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct gcase {
    int ta, tb, M, N, K;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
} gcase;

static void run_ours(const gcase *g)
{
    dpt_sgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, g->lda, g->B, g->ldb, 0.0f, g->C,
              g->ldc);
}

static void run_blas(const gcase *g)
{
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
                g->tb ? CblasTrans : CblasNoTrans, g->M, g->N, g->K, 1.0f, g->A, g->lda,
                g->B, g->ldb, 0.0f, g->C, g->ldc);
}

/* GFLOP/s of fn, repeated for about `budget` seconds per trial. */
static double trial(void (*fn)(const gcase *), const gcase *g, long reps)
{
    double t0 = now();
    for (long i = 0; i < reps; i++)
        fn(g);
    return 2.0 * g->M * g->N * g->K * reps / (now() - t0) * 1e-9;
}

static long calibrate(void (*fn)(const gcase *), const gcase *g, double budget)
{
    fn(g); /* warm */
    double t0 = now();
    fn(g);
    double one = now() - t0;
    long reps = one > 0 ? (long)(budget / one) : 1000;
    return reps < 1 ? 1 : reps;
}

/* Medians over 7 trials of ours and OpenBLAS, interleaved (ours, theirs, ours, ...) so
 * that a noisy neighbour slows both alike. */
static void race(const gcase *g, double budget, double *ours, double *theirs)
{
    enum { TRIALS = 7 };
    double a[TRIALS], b[TRIALS];
    long ra = calibrate(run_ours, g, budget), rb = calibrate(run_blas, g, budget);
    for (int r = 0; r < TRIALS; r++) {
        a[r] = trial(run_ours, g, ra);
        b[r] = trial(run_blas, g, rb);
    }
    qsort(a, TRIALS, sizeof a[0], cmp_d);
    qsort(b, TRIALS, sizeof b[0], cmp_d);
    *ours = a[TRIALS / 2];
    *theirs = b[TRIALS / 2];
}

static float *rmat(size_t n, unsigned seed)
{
    float *m = dpt_alloc(n, sizeof(float));
    srand(seed);
    for (size_t i = 0; i < n; i++)
        m[i] = (float)rand() / RAND_MAX - 0.5f;
    return m;
}

/* Checks ours against OpenBLAS on this case; returns 0 when they agree. */
static int check(gcase g)
{
    size_t n = (size_t)g.M * g.ldc;
    float *c1 = dpt_alloc(n, sizeof(float)), *c2 = dpt_alloc(n, sizeof(float));
    g.C = c1;
    run_ours(&g);
    g.C = c2;
    run_blas(&g);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)c1[i] - c2[i]) / (1.0 + fabs(c2[i]));
        if (d > worst)
            worst = d;
    }
    dpt_free(c1);
    dpt_free(c2);
    if (worst > 1e-4 * sqrt(g.K + 1.0)) {
        fprintf(stderr, "bench/gemm: MISMATCH vs OpenBLAS (ta=%d tb=%d M=%d N=%d K=%d): "
                "relative error %g\n", g.ta, g.tb, g.M, g.N, g.K, worst);
        return 1;
    }
    return 0;
}

static double measure(const char *label, int ta, int tb, int M, int N, int K, double budget,
                      int *bad)
{
    int lda = ta ? M : K, ldb = tb ? K : N;
    float *A = rmat((size_t)M * K, 1), *B = rmat((size_t)K * N, 2);
    float *C = dpt_alloc((size_t)M * N, sizeof(float));
    gcase g = { ta, tb, M, N, K, A, B, C, lda, ldb, N };
    *bad |= check(g);
    double ours, blas;
    race(&g, budget, &ours, &blas);
    printf("%-5s %c%c %5d %5d %5d  %8.2f  %8.2f  %6.2f\n", label, ta ? 'T' : 'N',
           tb ? 'T' : 'N', M, N, K, ours, blas, ours / blas);
    fflush(stdout);
    dpt_free(A);
    dpt_free(B);
    dpt_free(C);
    return ours / blas;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    double budget = quick ? 0.005 : 0.02;
    openblas_set_num_threads(1);
    dpt_error err;
    if (dpt_gemm_select(getenv("DPTRAIN_ISA"), &err) != DPT_OK) {
        fprintf(stderr, "bench/gemm: %s\n", err.msg);
        return 2;
    }
    printf("# sgemm, 1 thread, kernel %s vs OpenBLAS %s; GFLOP/s: medians of 7 interleaved "
           "trials\n",
           dpt_gemm_kernel(), OPENBLAS_VERSION);
    printf("%-5s %-2s %5s %5s %5s  %8s  %8s  %6s\n", "case", "tr", "M", "N", "K", "dptrain",
           "openblas", "ratio");
    static const int ms[] = { 8, 16, 32, 64, 128, 256 };
    static const int layers[][2] = { { 784, 128 }, { 128, 64 }, { 64, 10 }, { 784, 20 } };
    double ratios[6 * 4 * 3];
    int nr = 0, bad = 0;
    for (int l = 0; l < 4; l++)
        for (int mi = 0; mi < 6; mi++) {
            int M = ms[mi], K = layers[l][0], N = layers[l][1];
            ratios[nr++] = measure("fwd", 0, 0, M, N, K, budget, &bad);
            ratios[nr++] = measure("bwdx", 0, 1, M, K, N, budget, &bad);
            ratios[nr++] = measure("bwdw", 1, 0, K, N, M, budget, &bad);
        }
    double sq[3];
    static const int sizes[] = { 512, 1024, 2048 };
    for (int s = 0; s < 3; s++)
        sq[s] = measure("sq", 0, 0, sizes[s], sizes[s], sizes[s], quick ? 0.05 : 0.3, &bad);

    /* The packing crossover: the same forward shapes with B always packed vs never. */
    printf("# packing crossover (fwd, K x N = 784 x 128): GFLOP/s unpacked vs packed B\n");
    int saved = dpt_gemm_small_m(-1);
    for (int mi = 0; mi < 6; mi++) {
        int M = ms[mi];
        float *A = rmat((size_t)M * 784, 3), *B = rmat(784 * 128, 4);
        float *C = dpt_alloc((size_t)M * 128, sizeof(float));
        gcase g = { 0, 0, M, 128, 784, A, B, C, 784, 128, 128 };
        dpt_gemm_small_m(1 << 30);
        double un = trial(run_ours, &g, calibrate(run_ours, &g, budget));
        dpt_gemm_small_m(0);
        double pk = trial(run_ours, &g, calibrate(run_ours, &g, budget));
        printf("crossover M=%4d  unpacked %8.2f  packed %8.2f  (small_m now %d)\n", M, un, pk,
               saved);
        dpt_free(A); dpt_free(B); dpt_free(C);
    }
    dpt_gemm_small_m(saved);

    qsort(ratios, nr, sizeof ratios[0], cmp_d);
    double med = (ratios[nr / 2 - 1] + ratios[nr / 2]) / 2;
    printf("square 1024 ratio vs OpenBLAS: %.2f\n", sq[1]);
    printf("square 2048 ratio vs OpenBLAS: %.2f\n", sq[2]);
    printf("median ratio vs OpenBLAS (layer shapes): %.2f\n", med);
    return bad ? 1 : 0;
}
