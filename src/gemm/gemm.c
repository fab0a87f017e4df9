/* The sgemm driver: BLIS's five blocking loops around a micro-kernel, packing, the
 * small-problem path, and the kernel chosen once at start-up from cpuid.
 *
 *   for jc in N step NC            (B block: kc x nc, packed into L3/L2)
 *     for pc in K step KC          (fixed KC per kernel: it fixes the rounding order)
 *       pack B[pc:+kc, jc:+nc]     (unless unpacked: small M and B not transposed)
 *       for ic in M step MC
 *         pack A[ic:+mc, pc:+kc]   (unless A can be read in place)
 *         for jr in nc step NR
 *           for ir in mc step MR   micro-kernel on one MR x NR tile
 *
 * Packing never changes a value, and each tile's row is accumulated the same way
 * whatever the path, so paths can be chosen by M without breaking row invariance. */
#include "dptrain.h"
#include "gemm/gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Block sizes per micro-architecture (BLIS-style table). KC is part of the numerical
 * contract (sums run in KC chunks), so it is the same for every kernel of a family:
 * 392 cuts the 784-input layer into two equal chunks instead of 256+256+256+16 and
 * measured ~1% better over the layer shapes; a kc x NR panel of B (49 KiB) lives in L1/L2.
 * MC x KC of A fits L2; KC x NC of B is sized for a slice of L3. small_m is the measured
 * packing crossover (bench/gemm). */

/* 8 x 24 AVX-512 tiles for N in (16, 24]; packs B^T with the generic code. */
static const dpt_kernel_info avx512_n24 = { "avx512", 8, 24, 392, 128, 2048, 256,
                                            dpt_ukernel_avx512_n24, 1, NULL, 0, NULL, NULL,
                                            NULL };

static const dpt_kernel_info kernels[] = {
    /* name     mr  nr   kc   mc    nc small_m  kernel, strips  tall kernel, tall_n
     *                                           narrow kernel, packing of B^T */
    { "avx512", 8, 32, 392, 128, 2048, 256, dpt_ukernel_avx512, 1, dpt_ukernel_avx512_tall, 24,
      dpt_ukernel_avx512_n16, dpt_pack_bt_avx512, &avx512_n24 },
    { "avx2",   6, 16, 392, 120, 2048, 48, dpt_ukernel_avx2, 0, NULL, 0, NULL, NULL, NULL },
    { "ref",    4,  8, 256,  64, 1024, 32, dpt_ukernel_ref,  0, NULL, 0, NULL, NULL, NULL },
};
enum { NKERNELS = sizeof kernels / sizeof kernels[0] };

static const dpt_kernel_info *active;
static int small_m_override = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

int dpt_gemm_supported(const char *isa)
{
    if (!strcmp(isa, "ref"))
        return 1;
    __builtin_cpu_init();
    if (!strcmp(isa, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(isa, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 0;
}

static const dpt_kernel_info *best(void)
{
    for (int i = 0; i < NKERNELS; i++)
        if (dpt_gemm_supported(kernels[i].name))
            return &kernels[i];
    return &kernels[NKERNELS - 1];
}

/* The table row named isa if this CPU runs it, else NULL. */
static const dpt_kernel_info *find(const char *isa)
{
    for (int i = 0; i < NKERNELS; i++)
        if (!strcmp(kernels[i].name, isa))
            return dpt_gemm_supported(isa) ? &kernels[i] : NULL;
    return NULL;
}

static void init_once(void)
{
    /* DPTRAIN_ISA forces a kernel; an unusable value falls back to the best one here,
     * and the CLI reports it (dpt_gemm_select). */
    const char *env = getenv("DPTRAIN_ISA");
    const dpt_kernel_info *k = env && *env && strcmp(env, "auto") ? find(env) : NULL;
    active = k ? k : best();
}

static const dpt_kernel_info *kern(void)
{
    pthread_once(&once, init_once);
    return active;
}

int dpt_gemm_select(const char *isa, dpt_error *err)
{
    pthread_once(&once, init_once);
    if (!isa || !*isa || !strcmp(isa, "auto")) {
        active = best();
        return DPT_OK;
    }
    const dpt_kernel_info *k = find(isa);
    if (k) {
        active = k;
        return DPT_OK;
    }
    for (int i = 0; i < NKERNELS; i++)
        if (!strcmp(kernels[i].name, isa))
            return dpt_seterr(err, DPT_EINPUT, "DPTRAIN_ISA: this CPU cannot run the %s "
                              "kernel", isa);
    return dpt_seterr(err, DPT_EINPUT, "DPTRAIN_ISA: unknown kernel '%s' (expected ref, "
                      "avx2, avx512 or auto)", isa);
}

const char *dpt_gemm_kernel(void) { return kern()->name; }
int dpt_gemm_kc(void) { return kern()->kc; }

int dpt_gemm_small_m(int m)
{
    int old = small_m_override >= 0 ? small_m_override : kern()->small_m;
    if (m >= 0)
        small_m_override = m;
    return old;
}

/* Per-thread packing buffers, grown on demand and kept for the thread's life; a
 * pthread key frees them when the thread exits (OpenMP teams come and go). */
typedef struct packbufs {
    float *a, *b;
    size_t an, bn;
} packbufs;

static pthread_key_t bufkey;
static pthread_once_t bufkey_once = PTHREAD_ONCE_INIT;

static void free_bufs(void *p)
{
    packbufs *pb = p;
    dpt_free(pb->a);
    dpt_free(pb->b);
    free(pb);
}

static void make_key(void) { pthread_key_create(&bufkey, free_bufs); }

static packbufs *bufs(void)
{
    pthread_once(&bufkey_once, make_key);
    packbufs *pb = pthread_getspecific(bufkey);
    if (!pb && (pb = calloc(1, sizeof *pb)) && pthread_setspecific(bufkey, pb) != 0) {
        free(pb);
        pb = NULL;
    }
    return pb;
}

static float *grow(float **buf, size_t *have, size_t need)
{
    if (*have < need) {
        dpt_free(*buf);
        *buf = dpt_alloc(need, sizeof(float));
        *have = *buf ? need : 0;
    }
    return *buf;
}

/* Packs op(A)[0:mc, 0:kc] into MR-row panels: panel p holds, for each k, the MR values
 * A(p*MR + i, k); rows beyond mc are zero. */
static void pack_a(const float *a, ptrdiff_t rsa, ptrdiff_t csa, int mc, int kc, int mr,
                   float *ap)
{
    for (int p = 0; p < mc; p += mr) {
        int m = mc - p < mr ? mc - p : mr;
        const float *src = a + p * rsa;
        for (int k = 0; k < kc; k++) {
            const float *s = src + k * csa;
            for (int i = 0; i < mr; i++)
                ap[k * mr + i] = i < m ? s[i * rsa] : 0.0f;
        }
        ap += (size_t)mr * kc;
    }
}

/* Packs op(B)[0:kc, 0:nc] into NR-column panels: panel p holds, for each k, the NR
 * values B(k, p*NR + j); columns beyond nc are zero. */
static void pack_b(const float *b, ptrdiff_t rsb, ptrdiff_t csb, int kc, int nc, int nr,
                   float *bp)
{
    for (int p = 0; p < nc; p += nr) {
        int n = nc - p < nr ? nc - p : nr;
        const float *src = b + p * csb;
        if (csb == 1) {
            for (int k = 0; k < kc; k++) {
                memcpy(bp + k * nr, src + k * rsb, (size_t)n * sizeof(float));
                for (int j = n; j < nr; j++)
                    bp[k * nr + j] = 0.0f;
            }
        } else {
            for (int j = 0; j < nr; j++) {
                const float *s = src + j * csb;
                for (int k = 0; k < kc; k++)
                    bp[k * nr + j] = j < n ? s[k * rsb] : 0.0f;
            }
        }
        bp += (size_t)nr * kc;
    }
}

/* The tall path: the M-vectorised kernel over MR_TALL-row panels of A (packed unless
 * A^T is given, whose rows are already contiguous) and B read in place by broadcasts.
 * Same KC chunking as the wide path. */
static int sgemm_tall(const dpt_kernel_info *g, int ta, int tb, int M, int N, int K,
                      float alpha, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc, const dpt_epilogue *ep)
{
    const ptrdiff_t rsa = ta ? 1 : lda, csa = ta ? lda : 1;
    const ptrdiff_t rsb = tb ? 1 : ldb, csb = tb ? ldb : 1;
    const int packa = !ta, KC = g->kc, MC = g->mc;
    const int ntiles = (N + NR_TALL - 1) / NR_TALL, width = (N + ntiles - 1) / ntiles;
    float *ap = NULL;
    packbufs *pb = packa ? bufs() : NULL;
    if (packa && (!pb || !(ap = grow(&pb->a, &pb->an, (size_t)(MC + MR_TALL) * KC))))
        return DPT_EFAIL;
    dpt_tile t = { 0 };
    t.alpha = alpha;
    t.ldc = ldc;
    t.rsa = 1;
    t.rsb = rsb;
    t.csb = csb;
    t.ldm = ep ? ep->ldm : 0;
    int pc = 0;
    do {
        int kc = K - pc < KC ? K - pc : KC;
        int last = pc + kc >= K;
        t.kc = kc;
        t.beta = pc == 0 ? beta : 1.0f;
        t.relu = ep && last ? ep->relu : 0;
        for (int ic = 0; ic < M; ic += MC) {
            int mc = M - ic < MC ? M - ic : MC;
            if (packa)
                pack_a(A + ic * rsa + pc * csa, rsa, csa, mc, kc, MR_TALL, ap);
            for (int ir = 0; ir < mc; ir += MR_TALL) {
                t.m = mc - ir < MR_TALL ? mc - ir : MR_TALL;
                t.a = packa ? ap + (size_t)(ir / MR_TALL) * MR_TALL * kc
                            : A + (ic + ir) + (size_t)pc * lda;
                t.csa = packa ? MR_TALL : lda;
                for (int jr = 0; jr < N; jr += width) {
                    t.n = N - jr < width ? N - jr : width;
                    t.b = B + pc * rsb + jr * csb;
                    t.c = C + (size_t)(ic + ir) * ldc + jr;
                    t.bias = ep && ep->bias && last ? ep->bias + jr : NULL;
                    t.mask = ep && ep->mask && last
                                 ? ep->mask + (size_t)(ic + ir) * ep->ldm + jr
                                 : NULL;
                    g->tall(&t);
                }
            }
        }
        pc += kc;
    } while (pc < K);
    return DPT_OK;
}

enum { NARROW_BT = 1024 }; /* the largest B^T (floats) the narrow path transposes */

/* The narrow path: N <= 16 with B not transposed, everything read in place, the
 * 16 x 16 kernel over MR_N16-row strips. Same KC chunking as the other paths. */
static void sgemm_narrow(const dpt_kernel_info *g, int ta, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta,
                         float *C, int ldc, const dpt_epilogue *ep)
{
    dpt_tile t = { 0 };
    t.alpha = alpha;
    t.ldc = ldc;
    t.n = N;
    t.rsa = ta ? 1 : lda;
    t.csa = ta ? lda : 1;
    t.rsb = ldb;
    t.ldm = ep ? ep->ldm : 0;
    int pc = 0;
    do {
        int kc = K - pc < g->kc ? K - pc : g->kc;
        int last = pc + kc >= K;
        t.kc = kc;
        t.beta = pc == 0 ? beta : 1.0f;
        t.relu = ep && last ? ep->relu : 0;
        t.bias = ep && ep->bias && last ? ep->bias : NULL;
        t.b = B + (size_t)pc * ldb;
        for (int i = 0; i < M; i += MR_N16) {
            t.m = M - i < MR_N16 ? M - i : MR_N16;
            t.a = A + i * t.rsa + pc * t.csa;
            t.c = C + (size_t)i * ldc;
            t.mask = ep && ep->mask && last ? ep->mask + (size_t)i * ep->ldm : NULL;
            g->narrow(&t);
        }
        pc += kc;
    } while (pc < K);
}

int dpt_sgemm_ex(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc,
                  const dpt_epilogue *ep)
{
    if (M <= 0 || N <= 0)
        return DPT_OK;
    const dpt_kernel_info *g = kern();
    int MR = g->mr, NR = g->nr;
    const ptrdiff_t rsa = ta ? 1 : lda, csa = ta ? lda : 1;
    const ptrdiff_t rsb = tb ? 1 : ldb, csb = tb ? ldb : 1;
    const int small = small_m_override >= 0 ? small_m_override : g->small_m;
    /* The tall kernel wins where the wide one would idle lanes or pack a large B for a
     * few rows, once K is long enough to amortise its scalar epilogue (bench/gemm).
     * Both give bitwise the same values, so this choice cannot break row invariance. */
    if (g->tall && ((K >= 64 && ta && N <= g->tall_n) || (K >= 16 && tb && M <= 32)))
        return sgemm_tall(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
    if (g->narrow && !tb && N <= 16)
        return sgemm_narrow(g, ta, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep), DPT_OK;
    if (g->narrow && tb && N <= 16 && N * K <= NARROW_BT) {
        /* A small B^T (the small network's backward dZ W^T: N = 5 or 7, K = 5-10): the
         * wide kernel would pack it into 32-wide tiles for N real columns. Transposed
         * onto the stack it takes the narrow path (the same FMA sequence per element). */
        float bt[NARROW_BT];
        for (int k = 0; k < K; k++)
            for (int j = 0; j < N; j++)
                bt[k * N + j] = B[(size_t)j * ldb + k];
        return sgemm_narrow(g, ta, M, N, K, alpha, A, lda, bt, N, beta, C, ldc, ep), DPT_OK;
    }
    if (g->n24 && N > 16 && N <= 24) {
        g = g->n24;
        MR = g->mr;
        NR = g->nr;
    }
    const int packb = tb || M > small;
    /* A is read in place when its panel is small enough to stay in L1 anyway. */
    const int packa = !ta && M > small;
    const int KC = g->kc, MC = g->mc, NC = g->nc;

    float *ap = NULL, *bp = NULL;
    packbufs *pb = packa || packb ? bufs() : NULL;
    if ((packa || packb) && !pb)
        goto oom;
    if (packa && !(ap = grow(&pb->a, &pb->an, (size_t)(MC + MR) * KC)))
        goto oom;
    if (packb && !(bp = grow(&pb->b, &pb->bn, (size_t)(NC + NR) * KC)))
        goto oom;

    dpt_tile t = { 0 };
    t.alpha = alpha;
    t.ldc = ldc;
    t.relu = ep ? ep->relu : 0;
    t.ldm = ep ? ep->ldm : 0;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        int pc = 0;
        do { /* at least once, so K == 0 still scales C and applies the epilogue */
            int kc = K - pc < KC ? K - pc : KC;
            int last = pc + kc >= K;
            t.kc = kc;
            t.beta = pc == 0 ? beta : 1.0f;
            if (packb && tb && g->pack_bt)
                g->pack_bt(B + pc * rsb + jc * csb, ldb, kc, nc, bp);
            else if (packb)
                pack_b(B + pc * rsb + jc * csb, rsb, csb, kc, nc, NR, bp);
            for (int ic = 0; ic < M; ic += MC) {
                int mc = M - ic < MC ? M - ic : MC;
                if (packa)
                    pack_a(A + ic * rsa + pc * csa, rsa, csa, mc, kc, MR, ap);
                for (int jr = 0; jr < nc; jr += NR) {
                    t.n = nc - jr < NR ? nc - jr : NR;
                    if (packb) {
                        t.b = bp + (size_t)(jr / NR) * NR * kc;
                        t.rsb = NR;
                    } else {
                        t.b = B + pc * rsb + jc + jr;
                        t.rsb = rsb;
                    }
                    t.bias = ep && ep->bias && last ? ep->bias + jc + jr : NULL;
                    const int step = g->strips ? mc : MR; /* rows per call */
                    t.sa = packa ? (ptrdiff_t)MR * kc : (ptrdiff_t)MR * rsa;
                    for (int ir = 0; ir < mc; ir += step) {
                        t.m = mc - ir < step ? mc - ir : step;
                        if (packa) {
                            t.a = ap + (size_t)(ir / MR) * MR * kc;
                            t.rsa = 1;
                            t.csa = MR;
                        } else {
                            t.a = A + (ic + ir) * rsa + pc * csa;
                            t.rsa = rsa;
                            t.csa = csa;
                        }
                        t.c = C + (size_t)(ic + ir) * ldc + jc + jr;
                        t.relu = ep && last ? ep->relu : 0;
                        t.mask = ep && ep->mask && last
                                     ? ep->mask + (size_t)(ic + ir) * ep->ldm + jc + jr
                                     : NULL;
                        g->kernel(&t);
                    }
                }
            }
            pc += kc;
        } while (pc < K);
    }
    return DPT_OK;
oom:
    return DPT_EFAIL;
}

int dpt_gemm_reserve(void)
{
    const dpt_kernel_info *g = kern();
    int mr = g->mr > MR_TALL ? g->mr : MR_TALL;
    packbufs *pb = bufs();
    return pb && grow(&pb->a, &pb->an, (size_t)(g->mc + mr) * g->kc) &&
                   grow(&pb->b, &pb->bn, (size_t)(g->nc + g->nr) * g->kc)
               ? DPT_OK
               : DPT_EFAIL;
}

int dpt_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    return dpt_sgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

int dpt_sparse_mode(void)
{
    const char *env = getenv("DPTRAIN_SPARSE");
    if (!env || !*env || !strcmp(env, "auto") || !strcmp(env, "1"))
        return DPT_SPARSE_AUTO;
    return !strcmp(env, "0") ? DPT_SPARSE_OFF : !strcmp(env, "input") ? DPT_SPARSE_INPUT
           : !strcmp(env, "dz")                                     ? DPT_SPARSE_DZ
                                                                    : -1;
}

int dpt_gemm_sparse(void)
{
    return !strcmp(kern()->name, "avx512") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && dpt_sparse_mode() != DPT_SPARSE_OFF;
}
