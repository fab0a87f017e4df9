/* sgemm: every kernel this machine runs, against a double-accumulating reference, over
 * shapes that are not multiples of MR, NR or KC, all transpose cases, alpha/beta,
 * strided leading dimensions, the fused epilogue, and row invariance. */
#include "helpers.h"

#include "gemm/sparse.h"

#include <criterion/parameterized.h>
#include <math.h>

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xFFFF) / 32768.0f - 1.0f;
}

static float *rmat(size_t n, uint64_t seed)
{
    float *m = dpt_alloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        m[i] = frand(&seed);
    return m;
}

/* Reference C = alpha op(A) op(B) + beta C (+ epilogue) in double; also returns the
 * magnitude sum |a||b| per element for the error bound. */
static void ref_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc,
                     const dpt_epilogue *ep, double *mag)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, a = 0;
            for (int k = 0; k < K; k++) {
                double x = ta ? A[k * lda + i] : A[i * lda + k];
                double y = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += x * y;
                a += fabs(x * y);
            }
            double r = alpha * s + (beta != 0 ? beta * C[i * ldc + j] : 0.0);
            if (ep && ep->bias)
                r += ep->bias[j];
            if (ep && ep->relu && !(r > 0))
                r = 0;
            if (ep && ep->mask && !(ep->mask[i * ep->ldm + j] > 0))
                r = 0;
            C[i * ldc + j] = (float)r;
            mag[i * ldc + j] = fabs(alpha) * a + fabs(beta * C[i * ldc + j]) + 1.0;
        }
}

static void check_case(int ta, int tb, int M, int N, int K, float alpha, float beta,
                       int pad, const dpt_epilogue *ep_in)
{
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
    size_t nc = (size_t)M * ldc;
    float *A = rmat(na, 1 + M), *B = rmat(nb, 2 + N), *C = rmat(nc, 3 + K);
    float *R = dpt_alloc(nc, sizeof(float));
    double *mag = dpt_alloc(nc, sizeof(double));
    memcpy(R, C, nc * sizeof(float));
    float *bias = NULL, *mask = NULL;
    dpt_epilogue ep = { 0 };
    if (ep_in) {
        ep = *ep_in;
        if (ep.bias)
            ep.bias = bias = rmat((size_t)N, 9);
        if (ep.mask) {
            ep.mask = mask = rmat(nc, 10);
            ep.ldm = ldc;
        }
    }
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++)
            C[i] = NAN; /* beta = 0 must overwrite, even NaN */
    cr_assert_eq(dpt_sgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                              ep_in ? &ep : NULL), DPT_OK);
    ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc, ep_in ? &ep : NULL, mag);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float got = C[i * ldc + j], want = R[i * ldc + j];
            double tol = 4e-7 * (K + 2) * mag[i * ldc + j];
            cr_assert(fabs((double)got - want) <= tol,
                      "%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: C[%d][%d] = "
                      "%.8g, want %.8g", dpt_gemm_kernel(), ta, tb, M, N, K, alpha, beta,
                      pad, i, j, got, want);
        }
    dpt_free(A); dpt_free(B); dpt_free(C); dpt_free(R); dpt_free(mag);
    dpt_free(bias); dpt_free(mask);
}

static void use_kernel(const char *isa)
{
    if (!dpt_gemm_supported(isa))
        cr_skip_test("this CPU cannot run the %s kernel", isa);
    dpt_error err = { 0 };
    cr_assert_eq(dpt_gemm_select(isa, &err), DPT_OK, "%s", err.msg);
    cr_assert_str_eq(dpt_gemm_kernel(), isa);
}

static const char *const isa_names[] = { "ref", "avx2", "avx512" };
static int isas[] = { 0, 1, 2 };
ParameterizedTestParameters(gemm, matches_reference_over_shapes)
{
    return cr_make_param_array(int, isas, 3);
}

ParameterizedTest(int *isa, gemm, matches_reference_over_shapes, .timeout = 120)
{
    use_kernel(isa_names[*isa]);
    static const int dims[] = { 1, 7, 17, 33, 100 };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++)
                    for (int c = 0; c < 5; c++)
                        check_case(ta, tb, dims[a], dims[b], dims[c], 1.0f, 0.0f, 0, NULL);
}

ParameterizedTestParameters(gemm, matches_reference_on_layer_shapes)
{
    return cr_make_param_array(int, isas, 3);
}

ParameterizedTest(int *isa, gemm, matches_reference_on_layer_shapes, .timeout = 120)
{
    use_kernel(isa_names[*isa]);
    /* the classic layers, K beyond KC, and both sides of the packing crossover */
    static const int shapes[][3] = { { 32, 128, 784 }, { 100, 20, 784 }, { 784, 128, 33 },
                                     { 257, 64, 128 }, { 9, 10, 64 }, { 130, 300, 520 } };
    for (int s = 0; s < 6; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                check_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, 3,
                           NULL);
}

ParameterizedTestParameters(gemm, alpha_beta_strides_and_epilogues)
{
    return cr_make_param_array(int, isas, 3);
}

ParameterizedTest(int *isa, gemm, alpha_beta_strides_and_epilogues, .timeout = 120)
{
    use_kernel(isa_names[*isa]);
    dpt_epilogue eps[] = { { .bias = (float *)1 }, { .relu = 1 }, { .mask = (float *)1 },
                           { .bias = (float *)1, .relu = 1 } };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_case(ta, tb, 37, 45, 300, 0.5f, 1.0f, 5, NULL);
            check_case(ta, tb, 70, 19, 513, -2.0f, 0.25f, 1, NULL);
            check_case(ta, tb, 5, 33, 17, 1.0f, -1.0f, 0, NULL);
            for (int e = 0; e < 4; e++) {
                check_case(ta, tb, 23, 41, 270, 1.0f, 0.0f, 2, &eps[e]);
                check_case(ta, tb, 90, 50, 20, 1.0f, 1.0f, 0, &eps[e]);
            }
        }
}

Test(gemm, k_zero_scales_c_by_beta)
{
    float C[6] = { 1, 2, 3, 4, 5, 6 };
    float A[1] = { 0 }, B[1] = { 0 };
    dpt_sgemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 2.0f, C, 3);
    cr_assert_eq(C[5], 12.0f);
    for (int i = 0; i < 6; i++)
        C[i] = NAN;
    dpt_sgemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);
    cr_assert_eq(C[4], 0.0f, "beta = 0 with K = 0 writes zeros");
}

ParameterizedTestParameters(gemm, a_row_is_bitwise_the_same_whatever_m_and_position)
{
    return cr_make_param_array(int, isas, 3);
}

/* The row that training puts at any place in any slice must come out bitwise equal:
 * the row sits at position p of an M-row problem, for M across the packing crossover
 * and every transpose case. */
static void row_invariance(const char *isa, int N);

ParameterizedTest(int *isa, gemm, a_row_is_bitwise_the_same_whatever_m_and_position,
                  .timeout = 120)
{
    use_kernel(isa_names[*isa]);
    static const int ns[] = { 70, 10, 20 };
    for (int i = 0; i < 3; i++)
        row_invariance(isa_names[*isa], ns[i]);
}

/* N = 70 takes the wide (or, for B^T and few rows, the tall) kernel, N = 10 the 16 x 16
 * one and N = 20 the 8 x 24 one where the CPU has them. */
static void row_invariance(const char *isa, int N)
{
    enum { K = 600, MAXM = 257 };
    static const int ms[] = { 1, 5, 64, 257 };
    float *row = rmat(K, 77), *B = rmat((size_t)K * N, 78), *bias = rmat(N, 79);
    float *A = dpt_alloc((size_t)MAXM * K, sizeof(float));
    float *At = dpt_alloc((size_t)MAXM * K, sizeof(float));
    float *C = dpt_alloc((size_t)MAXM * N, sizeof(float)), want[70];
    for (int tb = 0; tb < 2; tb++) {
        float *Bt = dpt_alloc((size_t)K * N, sizeof(float));
        for (int k = 0; k < K; k++)
            for (int j = 0; j < N; j++)
                Bt[j * K + k] = B[k * N + j];
        const float *Bop = tb ? Bt : B;
        int ldb = tb ? K : N;
        for (int ta = 0; ta < 2; ta++) {
            int first = 1;
            for (int mi = 0; mi < 4; mi++) {
                int M = ms[mi];
                for (int pos = 0; pos < M; pos += (M > 9 ? M / 7 + 1 : 1)) {
                    uint64_t s = 5;
                    for (int i = 0; i < M; i++)
                        for (int k = 0; k < K; k++) {
                            float v = i == pos ? row[k] : frand(&s);
                            A[i * K + k] = v;
                            At[k * M + i] = v;
                        }
                    dpt_epilogue ep = { .bias = bias, .relu = 1 };
                    dpt_sgemm_ex(ta, tb, M, N, K, 1.0f, ta ? At : A, ta ? M : K, Bop, ldb,
                                 0.0f, C, N, &ep);
                    if (first) {
                        memcpy(want, C + pos * N, N * sizeof(float));
                        first = 0;
                    }
                    cr_assert_arr_eq(C + pos * N, want, N * sizeof(float),
                                     "%s N=%d ta=%d tb=%d: row at %d of M=%d differs", isa, N,
                                     ta, tb, pos, M);
                }
            }
        }
        dpt_free(Bt);
    }
    dpt_free(row); dpt_free(B); dpt_free(bias); dpt_free(A); dpt_free(At); dpt_free(C);
}

Test(gemm, unknown_or_unsupported_kernels_are_refused)
{
    dpt_error err = { 0 };
    cr_assert_eq(dpt_gemm_select("sse9", &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "unknown kernel 'sse9'"), "%s", err.msg);
    cr_assert_eq(dpt_gemm_select("auto", &err), DPT_OK);
}

/* AVX2 and AVX-512 give bitwise the same C on every path (wide, tall, narrow, packed,
 * transposed for the narrow kernel): each element is the same FMA sequence and
 * epilogue, so a checkpoint's weights do not depend on which of the two the machine
 * has. */
Test(gemm, avx2_and_avx512_agree_bitwise, .timeout = 60)
{
    if (!dpt_gemm_supported("avx2") || !dpt_gemm_supported("avx512"))
        cr_skip_test("needs both AVX2 and AVX-512");
    static const int shapes[][5] = { /* ta, tb, M, N, K */
        { 0, 0, 5, 10, 300 }, { 0, 0, 64, 70, 600 }, { 0, 1, 8, 784, 128 },
        { 1, 0, 784, 20, 64 }, { 1, 0, 300, 128, 32 }, { 0, 1, 300, 64, 10 },
        { 0, 0, 400, 300, 520 }, { 1, 1, 33, 17, 100 }, { 0, 0, 37, 20, 300 },
        { 0, 1, 300, 20, 40 },
        /* a small B^T, transposed onto the stack for AVX-512's narrow kernel (AVX2 packs
         * it for its wide one) */
        { 0, 1, 64, 5, 10 }, { 0, 1, 37, 7, 5 }, { 1, 1, 33, 16, 64 }, { 0, 1, 300, 1, 3 } };
    for (int s = 0; s < 14; s++) {
        int ta = shapes[s][0], tb = shapes[s][1], M = shapes[s][2], N = shapes[s][3],
            K = shapes[s][4];
        float *A = rmat((size_t)M * K, 1), *B = rmat((size_t)K * N, 2), *bias = rmat(N, 3);
        float *C1 = dpt_alloc((size_t)M * N, sizeof(float));
        float *C2 = dpt_alloc((size_t)M * N, sizeof(float));
        dpt_epilogue ep = { .bias = bias, .relu = s % 2 };
        use_kernel("avx2");
        dpt_sgemm_ex(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C1, N, &ep);
        use_kernel("avx512");
        dpt_sgemm_ex(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C2, N, &ep);
        cr_assert_arr_eq(C1, C2, (size_t)M * N * sizeof(float),
                         "ta=%d tb=%d M=%d N=%d K=%d: AVX2 and AVX-512 differ", ta, tb, M, N, K);
        dpt_free(A); dpt_free(B); dpt_free(bias); dpt_free(C1); dpt_free(C2);
    }
}

/* The sparse products (gemm/sparse.h) against the dense AVX-512 kernels, bitwise:
 * inputs like pixels / 255 and signed ones with -0s (a hidden layer's input, dZ) at
 * densities 0 to 1, batches across 32-row words, block widths across 16-column pieces,
 * outputs across 16-wide vectors and 128-wide groups, the dZ-skipping gradient with its
 * transpose; the bit and nonzero counts; guards around every output stay untouched. */
static float *pixels(int rows, int ld, double density, uint64_t seed)
{
    float *x = dpt_alloc((size_t)rows * ld, sizeof(float));
    for (size_t i = 0; i < (size_t)rows * ld; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        unsigned u = (unsigned)(seed >> 33);
        x[i] = (u % 1000) < density * 1000 ? (float)(1 + (u >> 12) % 255) * (1.0f / 255.0f)
                                            : 0.0f;
    }
    return x;
}

/* A dZ-like factor: signed values at `density`, the rest +0 or -0 alike. */
static float *signed_sparse(int rows, int ld, double density, uint64_t seed)
{
    float *x = dpt_alloc((size_t)rows * ld, sizeof(float));
    for (size_t i = 0; i < (size_t)rows * ld; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        unsigned u = (unsigned)(seed >> 33);
        float v = ((float)(u >> 8 & 0xFFFF) - 32768.0f) * (1.0f / 65536.0f);
        x[i] = (u % 1000) < density * 1000 ? v : (u & 1 ? -0.0f : 0.0f);
    }
    return x;
}

/* The narrow products (n <= 32, rows in fours over the union of their nonzeros) against
 * the dense kernels, bitwise: every output width's vector shape (xmm, ymm, zmm pieces,
 * with and without a full zmm before), batches and blocks that do not divide by 4 (the
 * rows or columns left over go one at a time), rows grouped in a shuffled order, signed
 * inputs with -0s, unions built exactly and unions with every bit set (a superset only
 * costs time); guards untouched.
 * And dpt_sparse_groupcols against its definition. */
Test(gemm, narrow_sparse_products_equal_the_dense_kernels_bitwise, .timeout = 120)
{
    if (!dpt_gemm_supported("avx512") || !dpt_gemm_sparse())
        cr_skip_test("needs the AVX-512 sparse products");
    use_kernel("avx512");
    static const int Bs[] = { 1, 4, 6, 32, 33, 64, 101 }, ws[] = { 1, 4, 7, 16, 33, 112, 128 },
                     ns[] = { 1, 3, 4, 5, 8, 9, 16, 17, 20, 24, 25, 32 };
    static const double dens[] = { 0.0, 0.1, 0.5, 1.0 };
    enum { NB = sizeof Bs / sizeof *Bs, NWS = sizeof ws / sizeof *ws, NN = sizeof ns / sizeof *ns };
    uint32_t *u = malloc(sizeof(uint32_t) * 128 * DPT_SPARSE_WORDS(101));
    uint32_t *tail = malloc(sizeof(uint32_t) * 4 * DPT_SPARSE_WORDS(101));
    uint32_t cfold[101];
    uint16_t rows[101];
    for (int bi = 0; bi < NB; bi++)
        for (int wi = 0; wi < NWS; wi++)
            for (int ni = 0; ni < NN; ni++)
                for (int full = 0; full < 2; full++) {
                    const int B = Bs[bi], w = ws[wi], n = ns[ni], lda = w + 3, ldz = n + 2;
                    const double d = dens[(bi + wi + ni + full) % 4];
                    const uint64_t seed = 1 + (uint64_t)(bi * 256 + wi * 32 + ni * 2 + full);
                    float *x = (bi + ni) % 2 ? signed_sparse(B, lda, d, seed)
                                             : pixels(B, lda, d, seed);
                    float *W = rmat((size_t)w * n, 7), *dz = rmat((size_t)B * n, 8);
                    float *zs = dpt_alloc((size_t)B * ldz + 1, sizeof(float));
                    float *zd = dpt_alloc((size_t)B * ldz + 1, sizeof(float));
                    for (size_t i = 0; i < (size_t)B * ldz + 1; i++)
                        zs[i] = zd[i] = -3.0f;
                    /* forward: the rows in a shuffled order, their union exact or all ones */
                    for (int r = 0; r < B; r++)
                        rows[r] = (uint16_t)r;
                    for (int r = B - 1; r > 0; r--) {
                        const int j =
                            (int)((seed * 2654435761u + (uint64_t)r * 40503u) % (uint64_t)(r + 1));
                        const uint16_t t = rows[r];
                        rows[r] = rows[j], rows[j] = t;
                    }
                    const int nwk = DPT_SPARSE_WORDS(w);
                    for (int g = 0; g < B / 4; g++)
                        for (int c = 0; c < nwk; c++) {
                            uint32_t word = 0;
                            for (int t = 0; t < 32 && 32 * c + t < w; t++)
                                for (int r = 0; r < 4; r++)
                                    if (full ||
                                        x[(size_t)rows[4 * g + r] * lda + 32 * c + t] != 0.0f)
                                        word |= 1u << t;
                            u[g * nwk + c] = word;
                        }
                    dpt_sparse_xw_narrow(x, lda, B, w, rows, u, W, n, n, zs, ldz);
                    dpt_sgemm(0, 0, B, n, w, 1.0f, x, lda, W, n, 0.0f, zd, ldz);
                    cr_assert_arr_eq(zs, zd, ((size_t)B * ldz + 1) * sizeof(float),
                                     "xw narrow B=%d w=%d n=%d density %.2f union %s", B, w, n,
                                     d, full ? "all ones" : "exact");
                    /* gradient: columns k0 + 4q .. + 3 over their rows' union */
                    const int k0 = w > 5 ? 2 : 0, m = w - k0, ldg = n + 1, nw = DPT_SPARSE_WORDS(B);
                    for (int b = 0; b < B; b++) {
                        cfold[b] = 0;
                        for (int k = 0; k < m / 4 * 4; k++)
                            if (full || x[(size_t)b * lda + k0 + k] != 0.0f)
                                cfold[b] |= 1u << (k / 4);
                    }
                    dpt_sparse_groupcols(cfold, B, m / 4, u);
                    for (int q = 0; q < m / 4; q++)
                        for (int b = 0; b < B; b++)
                            cr_assert_eq(u[q * nw + b / 32] >> (b % 32) & 1u, cfold[b] >> q & 1u,
                                         "groupcols B=%d q=%d b=%d", B, q, b);
                    if (m % 4)
                        dpt_sparse_colmasks(x, lda, B, k0 + m / 4 * 4, m % 4, tail);
                    float *gs = dpt_alloc((size_t)m * ldg + 1, sizeof(float));
                    float *gd = dpt_alloc((size_t)m * ldg + 1, sizeof(float));
                    for (size_t i = 0; i < (size_t)m * ldg + 1; i++)
                        gs[i] = gd[i] = -3.0f;
                    dpt_sparse_xtd_narrow(x, lda, k0, m, B, u, m % 4 ? tail : NULL, dz, n, n, gs,
                                          ldg);
                    dpt_sgemm(1, 0, m, n, B, 1.0f, x + k0, lda, dz, n, 0.0f, gd, ldg);
                    cr_assert_arr_eq(gs, gd, ((size_t)m * ldg + 1) * sizeof(float),
                                     "xtd narrow B=%d w=%d n=%d density %.2f union %s", B, w, n,
                                     d, full ? "all ones" : "exact");
                    dpt_free(x); dpt_free(W); dpt_free(dz); dpt_free(zs); dpt_free(zd);
                    dpt_free(gs); dpt_free(gd);
                }
    free(u);
    free(tail);
}

Test(gemm, sparse_byte_bits_cover_only_the_range)
{
    if (!dpt_gemm_supported("avx512") || !dpt_gemm_sparse())
        cr_skip_test("needs the AVX-512 sparse products");
    uint8_t buf[400];
    uint64_t u = 12345;
    for (int i = 0; i < 400; i++) {
        u = u * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (u >> 33) % 3 == 0 ? 0 : (uint8_t)(1 + (u >> 40) % 255);
    }
    for (int off = 0; off < 4; off++)
        for (int n = 0; n <= 260; n++) {
            uint32_t bits[9];
            for (int c = 0; c < 9; c++)
                bits[c] = 0xA5A5A5A5u;
            size_t want = 0;
            for (int i = 0; i < n; i++)
                want += buf[off + i] != 0;
            /* the bytes after the range are mostly nonzero: a count past n shows */
            cr_assert_eq(dpt_sparse_bytebits(buf + off, n, bits), want, "off %d n %d", off, n);
            for (int i = 0; i < 32 * ((n + 31) / 32); i++)
                cr_assert_eq(bits[i / 32] >> (i % 32) & 1u, (unsigned)(i < n && buf[off + i]),
                             "off %d n %d bit %d", off, n, i);
            for (int c = (n + 31) / 32; c < 9; c++)
                cr_assert_eq(bits[c], 0xA5A5A5A5u, "off %d n %d: wrote word %d", off, n, c);
        }
}

/* dpt_sparse_xw_more continues the sums: pieces of up to 128 inputs, chained, give one
 * product over all of them (up to a KC chunk: the dense kernels' chain) bitwise. */
Test(gemm, sparse_pieces_chain_into_one_product)
{
    if (!dpt_gemm_supported("avx512"))
        cr_skip_test("needs AVX-512");
    use_kernel("avx512");
    if (!dpt_gemm_sparse())
        cr_skip_test("sparse products not usable here");
    static const int Ks[] = { 129, 300, 392 }, ns[] = { 10, 64, 128, 130 };
    for (int ki = 0; ki < 3; ki++)
        for (int ni = 0; ni < 4; ni++) {
            const int B = 37, K = Ks[ki], n = ns[ni], lda = K + 5, ldz = n + 3;
            float *x = pixels(B, lda, 0.5, 40 + (uint64_t)(ki * 4 + ni));
            float *W = rmat((size_t)K * n, 41);
            float *zs = dpt_alloc((size_t)B * ldz, sizeof(float));
            float *zd = dpt_alloc((size_t)B * ldz, sizeof(float));
            for (size_t i = 0; i < (size_t)B * ldz; i++)
                zs[i] = zd[i] = -3.0f;
            /* uneven pieces: 100, then 128s, then the rest */
            for (int k = 0; k < K;) {
                const int w = k == 0 ? 100 : K - k < 128 ? K - k : 128;
                dpt_sparse_xw_more(x + k, lda, B, w, W + (size_t)k * n, n, n, zs, ldz, k > 0);
                k += w;
            }
            dpt_sgemm(0, 0, B, n, K, 1.0f, x, lda, W, n, 0.0f, zd, ldz);
            cr_assert_arr_eq(zs, zd, (size_t)B * ldz * sizeof(float), "K=%d n=%d", K, n);
            dpt_free(x);
            dpt_free(W);
            dpt_free(zs);
            dpt_free(zd);
        }
}

Test(gemm, sparse_products_equal_the_dense_kernels_bitwise, .timeout = 120)
{
    if (!dpt_gemm_supported("avx512"))
        cr_skip_test("needs AVX-512");
    use_kernel("avx512");
    if (!dpt_gemm_sparse())
        cr_skip_test("sparse products not usable here");
    static const int Bs[] = { 1, 5, 32, 33, 64, 100, 300 }, ws[] = { 1, 15, 16, 17, 96, 128 },
                     ns[] = { 1, 4, 8, 10, 16, 20, 24, 32, 33, 64, 100, 128, 129, 300 };
    static const double dens[] = { 0.0, 0.05, 0.5, 1.0 };
    uint32_t *cols = malloc(sizeof(uint32_t) * 128 * DPT_SPARSE_WORDS(300));
    uint32_t *dcols = malloc(sizeof(uint32_t) * 300 * DPT_SPARSE_WORDS(300));
    for (int bi = 0; bi < 7; bi++)
        for (int wi = 0; wi < 6; wi++)
            for (int ni = 0; ni < (int)(sizeof ns / sizeof *ns); ni++) {
                const int B = Bs[bi], w = ws[wi], n = ns[ni], lda = w + 3;
                const double d = dens[(bi + wi + ni) % 4];
                float *x = pixels(B, lda, d, 1 + (uint64_t)(bi * 64 + wi * 8 + ni));
                float *W = rmat((size_t)w * n, 7), *dz = rmat((size_t)B * n, 8);
                const int ldz = n + 2;
                float *zs = dpt_alloc((size_t)B * ldz + 1, sizeof(float));
                float *zd = dpt_alloc((size_t)B * ldz + 1, sizeof(float));
                for (size_t i = 0; i < (size_t)B * ldz + 1; i++)
                    zs[i] = zd[i] = -3.0f;
                /* forward: z = x W */
                dpt_sparse_xw(x, lda, B, w, W, n, n, zs, ldz);
                dpt_sgemm(0, 0, B, n, w, 1.0f, x, lda, W, n, 0.0f, zd, ldz);
                cr_assert_arr_eq(zs, zd, ((size_t)B * ldz + 1) * sizeof(float),
                                 "xw B=%d w=%d n=%d density %.2f", B, w, n, d);
                /* a signed factor with -0s (a hidden layer's input after batchnorm) */
                float *xsg = signed_sparse(B, lda, d, 5 + (uint64_t)(bi * 64 + wi * 8 + ni));
                dpt_sparse_xw(xsg, lda, B, w, W, n, n, zs, ldz);
                dpt_sgemm(0, 0, B, n, w, 1.0f, xsg, lda, W, n, 0.0f, zd, ldz);
                cr_assert_arr_eq(zs, zd, ((size_t)B * ldz + 1) * sizeof(float),
                                 "xw (signed x) B=%d w=%d n=%d density %.2f", B, w, n, d);
                size_t nzw = 0;
                for (int r = 0; r < B; r++)
                    for (int k = 0; k < w; k++)
                        nzw += xsg[(size_t)r * lda + k] != 0.0f;
                cr_assert_eq(dpt_sparse_count(xsg, lda, B, w), nzw, "count B=%d w=%d", B, w);
                dpt_free(xsg);
                /* gradient: g = x^T dz, for rows [k0, k0 + m) of W */
                const int k0 = w > 3 ? 2 : 0, m = w - k0, ldg = n + 1;
                float *gs = dpt_alloc((size_t)m * ldg + 1, sizeof(float));
                float *gd = dpt_alloc((size_t)m * ldg + 1, sizeof(float));
                for (size_t i = 0; i < (size_t)m * ldg + 1; i++)
                    gs[i] = gd[i] = -3.0f;
                dpt_sparse_colmasks(x, lda, B, k0, m, cols);
                size_t nzx = 0;
                for (int r = 0; r < B; r++)
                    for (int k = k0; k < k0 + m; k++)
                        nzx += x[(size_t)r * lda + k] != 0.0f;
                cr_assert_eq(dpt_sparse_bits(cols, (size_t)m * DPT_SPARSE_WORDS(B)), nzx,
                             "bits B=%d w=%d", B, w);
                dpt_sparse_xtd(x, lda, k0, m, B, cols, dz, n, n, gs, ldg);
                dpt_sgemm(1, 0, m, n, B, 1.0f, x + k0, lda, dz, n, 0.0f, gd, ldg);
                cr_assert_arr_eq(gs, gd, ((size_t)m * ldg + 1) * sizeof(float),
                                 "xtd B=%d w=%d n=%d density %.2f", B, w, n, d);
                /* the same gradient skipping the zeros of a signed, sparse dZ (with -0s):
                 * (dZ^T x)^T, transposed back */
                float *dzs = signed_sparse(B, n, 1.0 - d, 9 + (uint64_t)(bi * 64 + wi * 8 + ni));
                float *gt = dpt_alloc((size_t)n * (m + 1), sizeof(float));
                dpt_sgemm(1, 0, m, n, B, 1.0f, x + k0, lda, dzs, n, 0.0f, gd, ldg);
                dpt_sparse_colmasks(dzs, n, B, 0, n, dcols);
                dpt_sparse_xtd(dzs, n, 0, n, B, dcols, x + k0, lda, m, gt, m + 1);
                for (size_t i = 0; i < (size_t)m * ldg + 1; i++)
                    gs[i] = -3.0f;
                dpt_sparse_transpose(gt, m + 1, n, m, gs, ldg);
                for (int i = 0; i < m; i++) /* the transpose leaves the padding */
                    gd[(size_t)i * ldg + n] = -3.0f;
                gd[(size_t)m * ldg] = -3.0f;
                cr_assert_arr_eq(gs, gd, ((size_t)m * ldg + 1) * sizeof(float),
                                 "dz-sparse xtd B=%d w=%d n=%d dz density %.2f", B, w, n,
                                 1.0 - d);
                dpt_free(x); dpt_free(W); dpt_free(dz); dpt_free(zs); dpt_free(zd);
                dpt_free(gs); dpt_free(gd); dpt_free(dzs); dpt_free(gt);
            }
    free(cols);
    free(dcols);
    use_kernel("avx512");
}

/* dpt_sparse_transpose against the definition, every tile edge (1-33 rows, 1-40
 * columns, strides wider than the rows), nothing written outside b's rows. */
Test(gemm, the_tile_transpose_is_exact)
{
    if (!dpt_gemm_sparse())
        cr_skip_test("needs the AVX-512 sparse kernels");
    for (int rows = 1; rows <= 33; rows++)
        for (int cols = 1; cols <= 40; cols++) {
            const int lda = cols + 3, ldb = rows + 5;
            float *a = rmat((size_t)rows * lda, (uint64_t)(rows * 64 + cols));
            float *b = dpt_alloc((size_t)cols * ldb + 1, sizeof(float));
            for (size_t i = 0; i < (size_t)cols * ldb + 1; i++)
                b[i] = -3.0f;
            dpt_sparse_transpose(a, lda, rows, cols, b, ldb);
            for (int i = 0; i < cols; i++)
                for (int j = 0; j < ldb; j++) {
                    float want = j < rows ? a[(size_t)j * lda + i] : -3.0f;
                    cr_assert(memcmp(&b[(size_t)i * ldb + j], &want, sizeof want) == 0,
                              "rows %d cols %d: b[%d][%d]", rows, cols, i, j);
                }
            cr_assert_eq(b[(size_t)cols * ldb], -3.0f);
            dpt_free(a);
            dpt_free(b);
        }
}
