/* The training engine: gradients against central finite differences (every layer,
 * batchnorm in both placements, dropout with its fixed mask), thread-count invariance
 * of single steps and of whole runs, and learning on real data. */
#include "nets.h"
#include "nn/layers.h"
#include "parallel/team.h"

#include <math.h>

/* Central differences of the batch cost against the engine's gradient for every
 * parameter of a tiny net. The cost is accumulated in double; the forward pass is
 * float32, so eps and the tolerance are sized for that. */
static void gradcheck_on(dpt_config c, int side, int B)
{
    dpt_dataset ds = synth(9, side, 3, 11);
    uint32_t idx[9];
    for (int i = 0; i < 9; i++)
        idx[i] = (uint32_t)i;
    dpt_error err = { 0 };
    dpt_net *net = dpt_net_create(&c, &err);
    cr_assert_not_null(net, "%s", err.msg);
    float *p = dpt_net_params(net);
    /* non-trivial batchnorm scale/shift and biases */
    for (size_t i = 0; i < dpt_net_nparams(net); i++)
        p[i] += 0.1f * (float)dpt_randn(5, 5, i);
    dpt_engine *e = dpt_engine_create(net, B, 1, 0, NULL, &err);
    cr_assert_not_null(e, "%s", err.msg);
    double cost;
    cr_assert_eq(dpt_engine_gradient(e, &ds, idx, B, &cost, &err), DPT_OK);
    size_t n = dpt_net_nparams(net);
    float *g = malloc(n * sizeof *g);
    memcpy(g, dpt_net_grads(net), n * sizeof *g);
    const float h = 1e-3f;
    int checked = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        float save = p[i];
        if (save == 0.0f && g[i] == 0.0f)
            continue; /* padding between tensors */
        double cp, cm;
        p[i] = save + h;
        dpt_engine_gradient(e, &ds, idx, B, &cp, &err);
        p[i] = save - h;
        dpt_engine_gradient(e, &ds, idx, B, &cm, &err);
        p[i] = save;
        double fd = (cp - cm) / (2.0 * h);
        double tol = 1e-3 + 2e-2 * fabs(fd);
        checked++;
        if (fabs(fd - g[i]) > tol) {
            bad++;
            cr_log_info("param %zu: finite difference %.6f, engine %.6f", i, fd, g[i]);
        }
    }
    /* ReLU kinks can upset a difference or two; more than that is a bug */
    cr_assert(checked > 20, "checked %d parameters", checked);
    cr_assert(bad <= checked / 50, "%d of %d gradients disagree with finite differences",
              bad, checked);
    free(g);
    dpt_engine_free(e);
    dpt_net_free(net);
    dpt_dataset_free(&ds);
}

static void gradcheck(dpt_config c) { gradcheck_on(c, 2, 9); }

/* The first layer's K-blocks cover [0, in) in order, none empty, and (from 16 inputs
 * per block) start on multiples of 16 floats, so two owners never share a cache line
 * of the block-major input. */
Test(engine, k_blocks_cover_the_inputs_on_cache_line_edges)
{
    for (int in = 1; in <= 3100; in++) {
        const int nb = dpt_kblocks(in);
        cr_assert(nb >= 1 && nb <= DPT_KBLOCKS);
        cr_assert_eq(dpt_kblock_row(in, 0), 0, "in=%d", in);
        cr_assert_eq(dpt_kblock_row(in, nb), in, "in=%d", in);
        for (int b = 0; b < nb; b++) {
            int k0 = dpt_kblock_row(in, b), k1 = dpt_kblock_row(in, b + 1);
            cr_assert_lt(k0, k1, "in=%d: block %d is [%d, %d)", in, b, k0, k1);
            if (in >= 16 * nb)
                cr_assert_eq(k0 % 16, 0, "in=%d: block %d starts at %d", in, b, k0);
        }
    }
    /* 784 inputs: 49 groups of 16 in blocks of 6 or 7 groups */
    for (int b = 0; b < 8; b++) {
        int w = dpt_kblock_row(784, b + 1) - dpt_kblock_row(784, b);
        cr_assert(w == 96 || w == 112, "block %d of 784 is %d wide", b, w);
    }
}

/* The K-block partials' sum (vectorised) equals the sum written out in block order,
 * bitwise, with bias and ReLU (negative, zero and NaN sums become 0), for widths with
 * and without a partial 16-column piece, and leaves the columns beside each row alone. */
Test(engine, k_block_partials_sum_in_block_order)
{
    enum { R = 3, W = 130, NB = 8 };
    const size_t ps = (size_t)R * W + 5; /* a stride that is no multiple of 16 */
    float *part = malloc(sizeof(float) * ps * NB), bias[W], z[R * W + 1];
    uint64_t st = 12345;
    for (size_t i = 0; i < ps * NB; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        part[i] = (float)((int)(st >> 40) - (1 << 23)) * 0x1p-20f; /* mixed magnitudes */
    }
    part[W + 2] = NAN; /* row 1 for n near W */
    for (int j = 0; j < W; j++)
        bias[j] = 0.01f * (float)(j % 7) - 0.03f;
    for (int nb = 1; nb <= NB; nb += NB - 1)
        for (int n = 1; n <= W; n += n < 40 ? 1 : 89)
            for (int relu = 0; relu <= 1; relu++) {
                for (int i = 0; i < R * W + 1; i++)
                    z[i] = -7.0f;
                dpt_sum_partials(z, part, ps, nb, 1, R, n, bias, relu);
                for (int j = 0; j < n; j++)
                    cr_assert_eq(z[j], -7.0f, "row 0 written");
                for (int r = 1; r < R; r++)
                    for (int j = 0; j < n; j++) {
                        float v = part[(size_t)r * n + j];
                        for (int b = 1; b < nb; b++)
                            v = v + part[(size_t)b * ps + (size_t)r * n + j];
                        v = v + bias[j];
                        if (relu && !(v > 0.0f))
                            v = 0.0f;
                        float got = z[(size_t)r * n + j];
                        cr_assert(memcmp(&got, &v, sizeof v) == 0 || (isnan(v) && isnan(got)),
                                  "nb %d n %d relu %d: z[%d][%d] = %a, not %a", nb, n, relu,
                                  r, j, got, v);
                    }
                cr_assert_eq(z[(size_t)R * n], -7.0f, "n %d: wrote past the rows", n);
            }
    free(part);
}

/* Softmax + cross-entropy (its own vectorised exp) against double precision, over
 * logits from equal to 100 apart, including rows whose small terms underflow. */
Test(engine, softmax_cross_entropy_matches_double_precision)
{
    enum { R = 64, C = 10 };
    float z[R * C], p[R * C], dz[R * C];
    double loss[R];
    unsigned char hit[R];
    uint8_t labels[R];
    uint32_t idx[R];
    uint64_t s = 5;
    for (int r = 0; r < R; r++) {
        float spread = r < 8 ? 0.0f : (float)r * 1.6f; /* 0 .. 100 */
        for (int j = 0; j < C; j++)
            z[r * C + j] = ((float)(dpt_rand64(s, 1, (uint64_t)(r * C + j)) >> 40) /
                                (float)(1 << 24) - 0.5f) * spread + (float)r;
        labels[r] = (uint8_t)(r % C);
        idx[r] = (uint32_t)r;
    }
    dpt_softmax_xent(z, p, dz, 0, R, C, labels, idx, R, loss, hit);
    for (int r = 0; r < R; r++) {
        double m = z[r * C], sum = 0;
        int arg = 0;
        for (int j = 1; j < C; j++)
            if (z[r * C + j] > m)
                m = z[r * C + j], arg = j;
        for (int j = 0; j < C; j++)
            sum += exp((double)z[r * C + j] - m);
        double want = m + log(sum) - z[r * C + labels[r]];
        cr_assert(fabs(loss[r] - want) <= 1e-6 * (1 + fabs(want)), "row %d: loss %.9g, want %.9g",
                  r, loss[r], want);
        cr_assert_eq(hit[r], arg == labels[r]);
        for (int j = 0; j < C; j++) {
            /* z_j - max is rounded to float (half an ulp of its size) before exp */
            double d = fabs((double)z[r * C + j] - m), pj = exp(-d) / sum;
            cr_assert(fabs(p[r * C + j] - pj) <= (4e-7 + 6e-8 * d) * pj + 1e-37,
                      "row %d p[%d] = %.9g, want %.9g", r, j, p[r * C + j], pj);
            double g = (pj - (j == labels[r])) / R;
            cr_assert(fabs(dz[r * C + j] - g) <= 1e-8, "row %d dz[%d]", r, j);
        }
    }
}

Test(engine, dense_relu_softmax_gradients_match_finite_differences, .timeout = 60)
{
    gradcheck(tiny_config("4-5-4-3"));
}

/* 16 inputs and 2 rows: the first layer runs by K-blocks (8 x B <= inputs) */
Test(engine, k_blocked_first_layer_gradients_match_finite_differences, .timeout = 60)
{
    dpt_config c = tiny_config("16-6-5-3");
    c.batchnorm = 1;
    gradcheck_on(c, 4, 2);
}

Test(engine, batchnorm_after_relu_gradients_match_finite_differences, .timeout = 60)
{
    dpt_config c = tiny_config("4-6-5-3");
    c.batchnorm = 1;
    gradcheck(c);
}

Test(engine, batchnorm_before_relu_gradients_match_finite_differences, .timeout = 60)
{
    dpt_config c = tiny_config("4-6-5-3");
    c.batchnorm = 1;
    c.bn_before = 1;
    gradcheck(c);
}

Test(engine, dropout_with_its_fixed_mask_gradients_match_finite_differences, .timeout = 60)
{
    dpt_config c = tiny_config("4-8-6-3");
    c.dropout = 0.3f;
    gradcheck(c);
}

Test(engine, batchnorm_and_dropout_gradients_match_finite_differences, .timeout = 60)
{
    dpt_config c = tiny_config("4-8-6-3");
    c.dropout = 0.25f;
    c.batchnorm = 1;
    gradcheck(c);
}

/* One gradient step on T threads equals the one-thread step bitwise: gradients of all
 * parameters (so the synchronised batchnorm statistics and sums too). */
static void grads_for(dpt_config c, int T, int B, float *out, size_t n)
{
    dpt_dataset ds = synth(200, 16, 5, 21);
    uint32_t idx[200];
    for (int i = 0; i < 200; i++)
        idx[i] = (uint32_t)(i * 7 % 200);
    dpt_error err;
    dpt_net *net = dpt_net_create(&c, &err);
    dpt_engine *e = dpt_engine_create(net, B, T, 0, NULL, &err);
    cr_assert_not_null(e, "%s", err.msg);
    double cost;
    cr_assert_eq(dpt_engine_gradient(e, &ds, idx, B, &cost, &err), DPT_OK);
    cr_assert_eq(dpt_net_nparams(net), n);
    memcpy(out, dpt_net_grads(net), n * sizeof *out);
    dpt_engine_free(e);
    dpt_net_free(net);
    dpt_dataset_free(&ds);
}

Test(engine, sync_batchnorm_step_on_t_threads_equals_one_thread, .timeout = 60)
{
    /* 256 inputs: batches of 7 and 32 take the K-blocked first layer, 33 and 100 the
     * row-parallel one */
    dpt_config c = tiny_config("256-40-30-5");
    c.batchnorm = 1;
    c.dropout = 0.2f;
    dpt_error err;
    dpt_net *probe = dpt_net_create(&c, &err);
    size_t n = dpt_net_nparams(probe);
    dpt_net_free(probe);
    float *g1 = malloc(n * sizeof *g1), *gt = malloc(n * sizeof *gt);
    int Bs[] = { 7, 32, 33, 100 };
    for (int b = 0; b < 4; b++) {
        grads_for(c, 1, Bs[b], g1, n);
        for (int T = 2; T <= 5; T++) {
            grads_for(c, T, Bs[b], gt, n);
            cr_assert_arr_eq(g1, gt, n * sizeof *g1, "B=%d T=%d: gradients differ from T=1",
                             Bs[b], T);
        }
    }
    free(g1);
    free(gt);
}

/* Trains on ds with options o and returns the fingerprint; the result in *res if res. */
static uint64_t train_on(const dpt_dataset *ds, dpt_config c, dpt_train_opts o,
                         dpt_train_result *res)
{
    dpt_error err = { 0 };
    dpt_net *net = dpt_net_create(&c, &err);
    cr_assert_not_null(net, "%s", err.msg);
    dpt_train_state st;
    dpt_train_state_init(&st);
    dpt_train_result r;
    cr_assert_eq(dpt_train(net, ds, NULL, &st, &o, &r, &err), DPT_OK, "%s", err.msg);
    if (res)
        *res = r;
    uint64_t fp = dpt_net_fingerprint(net);
    dpt_train_state_free(&st);
    dpt_net_free(net);
    return fp;
}

/* The same over a few epochs of 16 x 16 synthetic images. */
static uint64_t run_opts(dpt_config c, dpt_train_opts o, dpt_train_result *res)
{
    dpt_dataset ds = synth(1000, 16, 5, 8);
    uint64_t fp = train_on(&ds, c, o, res);
    dpt_dataset_free(&ds);
    return fp;
}

/* T threads, stopping after stop_after steps (0: all of c.epochs). */
static uint64_t run(dpt_config c, int T, size_t stop_after)
{
    return run_opts(c, (dpt_train_opts){ .threads = T, .bind = 0, .stop_after = stop_after },
                    NULL);
}

Test(engine, weights_are_bitwise_identical_for_any_thread_count, .timeout = 240)
{
    dpt_config c = tiny_config("256-40-30-5");
    c.batchnorm = 1;
    c.dropout = 0.2f;
    c.weight_decay = 1e-4f;
    c.epochs = 3;
    c.val_split = 0.2;
    /* 256 inputs: B = 6, 32 and 33 run the first layer by K-blocks (6 and 33 end each
     * epoch with a shorter batch, which may start before the longer one's update is
     * done), B = 100 and 450 by rows (450: the gradients' sums over more rows than the
     * gemm's KC, and a last batch of 350) */
    int Bs[] = { 6, 32, 33, 100, 450 };
    int Ts[] = { 2, 3, 4, 8 };
    for (int b = 0; b < 5; b++) {
        c.batch = Bs[b];
        uint64_t one = run(c, 1, 0);
        for (int t = 0; t < 4; t++)
            cr_assert_eq(run(c, Ts[t], 0), one, "B=%d T=%d: fingerprint differs from T=1",
                         Bs[b], Ts[t]);
    }
}

/* The runs of the tests that move work or the thread count between steps: two epochs
 * with dropout, weight decay and (bn) batchnorm, batch B. */
static dpt_config moving_config(const char *arch, int bn, int B)
{
    dpt_config c = tiny_config(arch);
    c.batchnorm = bn;
    c.dropout = 0.2f;
    c.weight_decay = 1e-4f;
    c.epochs = 2;
    c.val_split = 0.2;
    c.batch = B;
    return c;
}

/* Every 8 steps the engine plans the threads' parts anew from their measured speeds
 * (rebalance): DPTRAIN_BALANCE=shuffle gives them random parts instead, so K-blocks,
 * units and rows change hands every 8 steps, and the weights must stay those of one
 * thread (and of a fixed plan). */
Test(engine, moving_work_between_threads_keeps_the_weights,
     .timeout = 240)
{
    static const char *archs[] = { "256-40-30-5", "256-20-7-5" };
    int Bs[] = { 6, 33, 100 };
    int Ts[] = { 2, 3, 4, 8 };
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) {
            const dpt_config c = moving_config(archs[a], a == 0, Bs[b]);
            setenv("DPTRAIN_BALANCE", "off", 1);
            cr_assert_eq(dpt_balance_mode(), DPT_BALANCE_OFF);
            const uint64_t one = run(c, 1, 0), fixed = run(c, 3, 0);
            setenv("DPTRAIN_BALANCE", "shuffle", 1);
            cr_assert_eq(dpt_balance_mode(), DPT_BALANCE_SHUFFLE);
            for (int t = 0; t < 4; t++)
                cr_assert_eq(run(c, Ts[t], 0), one, "%s B=%d T=%d: moving work between "
                             "threads changes the weights", archs[a], Bs[b], Ts[t]);
            unsetenv("DPTRAIN_BALANCE");
            cr_assert_eq(fixed, one, "%s B=%d T=3, fixed plan", archs[a], Bs[b]);
        }
    setenv("DPTRAIN_BALANCE", "sometimes", 1);
    cr_assert_eq(dpt_balance_mode(), -1);
    setenv("DPTRAIN_BALANCE", "", 1);
    cr_assert_eq(dpt_balance_mode(), DPT_BALANCE_ON);
    unsetenv("DPTRAIN_BALANCE");
}

/* The first layer's zero-skipping products (chosen per block: the synthetic images'
 * outer rows are mostly zero, the middle ones not; the gradient skipping zero pixels or
 * the zeros of dZ; with 20 outputs, rows in fours over their union) train the same
 * weights as dense products, each path forced for every block too, and the blocks
 * dealt by measured cost keep T-invariance. B = 6 and 33 run the first layer by
 * K-blocks, 100 and 450 by rows (450: the gradients' sums run in the gemm's KC chunks
 * of rows, which the zero-skipping products must follow: without, this test fails). */
Test(engine, sparse_first_layer_trains_the_dense_weights, .timeout = 120)
{
    if (!dpt_gemm_sparse())
        cr_skip_test("the sparse products need the AVX-512 kernel");
    static const char *archs[] = { "256-40-30-5", "256-20-7-5" };
    int Bs[] = { 6, 33, 100, 450 };
    for (int i = 0; i < 8; i++) {
        dpt_config c = tiny_config(archs[i / 4]);
        c.dropout = 0.2f;
        c.weight_decay = 1e-4f;
        c.epochs = 2;
        c.val_split = 0.2;
        const int b = i % 4;
        c.batch = Bs[b];
        uint64_t sparse1 = run(c, 1, 0), sparse3 = run(c, 3, 0);
        setenv("DPTRAIN_SPARSE", "input", 1);
        cr_assert_eq(dpt_sparse_mode(), DPT_SPARSE_INPUT);
        uint64_t input1 = run(c, 1, 0);
        setenv("DPTRAIN_SPARSE", "dz", 1);
        cr_assert_eq(dpt_sparse_mode(), DPT_SPARSE_DZ);
        uint64_t dz1 = run(c, 1, 0), dz3 = run(c, 3, 0);
        /* dZ's zeros skipped with random parts on more threads than slices of some
         * batches (threads with no rows at all) */
        setenv("DPTRAIN_BALANCE", "shuffle", 1);
        uint64_t dz5 = run(c, 5, 0), dz8 = run(c, 8, 0);
        unsetenv("DPTRAIN_BALANCE");
        setenv("DPTRAIN_SPARSE", "0", 1);
        cr_assert(!dpt_gemm_sparse());
        uint64_t dense1 = run(c, 1, 0), dense2 = run(c, 2, 0);
        unsetenv("DPTRAIN_SPARSE");
        cr_assert_eq(input1, dense1, "%s B=%d: skipping every input zero changes the weights",
                     archs[i / 4], Bs[b]);
        cr_assert_eq(dz1, dense1, "%s B=%d: skipping dZ's zeros changes the weights",
                     archs[i / 4], Bs[b]);
        cr_assert_eq(dz3, dense1, "%s B=%d T=3 (dZ's zeros skipped)", archs[i / 4], Bs[b]);
        cr_assert_eq(dz5, dense1, "%s B=%d T=5, random parts (dZ's zeros skipped)",
                     archs[i / 4], Bs[b]);
        cr_assert_eq(dz8, dense1, "%s B=%d T=8, random parts (dZ's zeros skipped)",
                     archs[i / 4], Bs[b]);
        cr_assert_eq(sparse1, dense1, "%s B=%d: sparse and dense products train different "
                     "weights", archs[i / 4], Bs[b]);
        cr_assert_eq(sparse3, dense1, "%s B=%d T=3 (sparse)", archs[i / 4], Bs[b]);
        cr_assert_eq(dense2, dense1, "%s B=%d T=2 (dense)", archs[i / 4], Bs[b]);
    }
}

/* Batches too big for K-blocks run the first layer by rows: with 784 inputs (more than
 * the gemm's KC of 392) a run of rows that skips its zero pixels chains pieces of up to
 * 128 inputs within each KC chunk and adds the chunks as the dense gemm does; the
 * gradients past 392 rows go by KC chunks of rows too. Forced either way, and on 1 or 3
 * threads, the weights are the same. B = 300: by rows, one KC chunk of rows; 450: two,
 * and a last batch of 350. */
Test(engine, batches_by_rows_skip_zeros_with_the_dense_bits, .timeout = 120)
{
    if (!dpt_gemm_sparse())
        cr_skip_test("the sparse products need the AVX-512 kernel");
    dpt_dataset ds = synth(1000, 28, 5, 8);
    int Bs[] = { 300, 450 };
    for (int b = 0; b < 2; b++) {
        dpt_config c = tiny_config("784-40-10");
        c.dropout = 0.2f;
        c.epochs = 2;
        c.val_split = 0.2;
        c.batch = Bs[b];
        uint64_t fp[4];
        const char *mode[] = { "auto", "input", "0", "input" };
        const int Ts[] = { 1, 1, 1, 3 };
        for (int i = 0; i < 4; i++) {
            setenv("DPTRAIN_SPARSE", mode[i], 1);
            fp[i] = train_on(&ds, c, (dpt_train_opts){ .threads = Ts[i], .bind = 0 }, NULL);
        }
        unsetenv("DPTRAIN_SPARSE");
        cr_assert_eq(fp[1], fp[2], "B=%d: skipping zero pixels changes the weights", Bs[b]);
        cr_assert_eq(fp[0], fp[2], "B=%d: the chosen ways change the weights", Bs[b]);
        cr_assert_eq(fp[3], fp[2], "B=%d T=3 (zeros skipped)", Bs[b]);
    }
    dpt_dataset_free(&ds);
}

Test(engine, every_optimizer_is_thread_count_invariant, .timeout = 120)
{
    dpt_config c = tiny_config("256-24-5");
    c.epochs = 2;
    c.batch = 50;
    c.l2 = 0.01f;
    c.dropout = 0.1f;
    for (int opt = DPT_SGD; opt <= DPT_ADAMW; opt++) {
        c.optimizer = opt;
        c.lr = opt >= DPT_ADAM ? 1e-3f : 0.05f;
        c.nesterov = opt == DPT_MOMENTUM;
        cr_assert_eq(run(c, 3, 0), run(c, 1, 0), "%s", dpt_optimizer_name(opt));
    }
}

Test(engine, a_run_stopped_midway_and_resumed_from_its_checkpoint_ends_identical,
     .timeout = 120)
{
    dpt_config c = tiny_config("256-40-30-5");
    c.batchnorm = 1;
    c.dropout = 0.2f;
    c.epochs = 3;
    c.batch = 33;
    c.patience = 5;
    uint64_t whole = run(c, 2, 0);

    dpt_dataset ds = synth(1000, 16, 5, 8);
    dpt_error err = { 0 };
    dpt_net *net = dpt_net_create(&c, &err);
    dpt_train_state st;
    dpt_train_state_init(&st);
    dpt_train_opts o = { .threads = 3, .bind = 0, .stop_after = 37 }; /* mid-epoch */
    dpt_train_result res;
    cr_assert_eq(dpt_train(net, &ds, NULL, &st, &o, &res, &err), DPT_OK, "%s", err.msg);
    cr_assert(res.interrupted);
    const char *path = tmppath("mid.safetensors");
    cr_assert_eq(dpt_checkpoint_save(path, net, &st, &err), DPT_OK, "%s", err.msg);
    dpt_train_state_free(&st);
    dpt_net_free(net);

    dpt_net *back;
    cr_assert_eq(dpt_checkpoint_load(path, &back, &st, &err), DPT_OK, "%s", err.msg);
    o.threads = 1;
    o.stop_after = 0;
    cr_assert_eq(dpt_train(back, &ds, NULL, &st, &o, &res, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(dpt_net_fingerprint(back), whole, "resumed run differs");
    dpt_train_state_free(&st);
    dpt_net_free(back);
    dpt_dataset_free(&ds);
}

/* Weights made so that the first step's cost is finite (in double) but its first-layer
 * gradient overflows float: hidden units all 1e-10, W2 = +-3.3e38 (logits +-1.3e30),
 * so d cost / d h = (W2[.][0] - W2[.][y]) / B reaches 6.6e38 / B and its sums overflow. */
static void overflowing_grad(dpt_net *net)
{
    /* 36-40-5, parameters in layer order, each layer W [in][out] then b [out], every
     * tensor starting on a 16-float boundary */
    float *p = dpt_net_params(net);
    cr_assert_eq(dpt_net_nparams(net), 36 * 40 + 48 + 40 * 5 + 8 + 16);
    float *w1 = p, *b1 = w1 + 36 * 40, *w2 = b1 + 48;
    for (int i = 0; i < 36 * 40; i++)
        w1[i] = 0;
    for (int j = 0; j < 40; j++) {
        b1[j] = 1e-10f;
        for (int k = 0; k < 5; k++)
            w2[j * 5 + k] = k == 0 ? 3.3e38f : -3.3e38f;
    }
}

/* Trains c on ds with T threads (weights first set by prepare, if given), expects the
 * run to fail with finite weights, and returns the net for further checks. */
static dpt_net *train_to_failure(dpt_config c, const dpt_dataset *ds, int T,
                                 size_t stop_after, void (*prepare)(dpt_net *),
                                 dpt_error *err)
{
    dpt_net *net = dpt_net_create(&c, err);
    cr_assert_not_null(net, "%s", err->msg);
    if (prepare)
        prepare(net);
    dpt_train_state st;
    dpt_train_state_init(&st);
    dpt_train_opts o = { .threads = T, .stop_after = stop_after };
    dpt_train_result res;
    cr_assert_eq(dpt_train(net, ds, NULL, &st, &o, &res, err), DPT_EFAIL, "B=%d T=%d",
                 c.batch, T);
    float *p = dpt_net_params(net);
    for (size_t i = 0; i < dpt_net_nparams(net); i++)
        cr_assert(isfinite(p[i]), "B=%d T=%d: parameter %zu is %f", c.batch, T, i, p[i]);
    dpt_train_state_free(&st);
    return net;
}

Test(engine, a_diverging_run_stops_with_an_error_instead_of_nan_weights, .timeout = 60)
{
    dpt_config c = tiny_config("36-40-5");
    c.optimizer = DPT_SGD;
    c.lr = 1e38f; /* weights overflow within a few steps */
    c.epochs = 5;
    dpt_dataset ds = synth(500, 6, 5, 8);
    /* batch 4 runs the first layer by K-blocks (a step's gradients are checked at the
     * next step's barrier), batch 32 by rows; any thread count stops at the same step
     * with the same weights */
    int Bs[] = { 4, 32 };
    for (int b = 0; b < 2; b++) {
        uint64_t fp1 = 0, steps1 = 0;
        for (int T = 1; T <= 3; T += 2) {
            c.batch = Bs[b];
            dpt_error err = { 0 };
            dpt_net *net = train_to_failure(c, &ds, T, 0, NULL, &err);
            cr_assert(strstr(err.msg, "not finite"), "%s", err.msg);
            if (T == 1) {
                fp1 = dpt_net_fingerprint(net);
                steps1 = dpt_net_steps(net);
            } else {
                cr_assert_eq(dpt_net_steps(net), steps1, "B=%d: stopped after %llu steps, "
                             "not %llu", Bs[b], (unsigned long long)dpt_net_steps(net),
                             (unsigned long long)steps1);
                cr_assert_eq(dpt_net_fingerprint(net), fp1, "B=%d: weights differ", Bs[b]);
            }
            dpt_net_free(net);
        }
    }
    dpt_dataset_free(&ds);
}

Test(engine, a_non_finite_gradient_with_a_finite_cost_stops_the_run, .timeout = 60)
{
    dpt_config c = tiny_config("36-40-5");
    c.optimizer = DPT_SGD;
    c.lr = 1e-3f;
    c.epochs = 1;
    dpt_dataset ds = synth(200, 6, 5, 8);
    /* K-split and row batches; the bad step inside a chunk of steps (checked at the next
     * step's barrier) and as the chunk's last step (checked after it) */
    int Bs[] = { 4, 32 };
    for (int b = 0; b < 4; b++)
        for (int T = 1; T <= 3; T += 2) {
            c.batch = Bs[b % 2];
            dpt_error err = { 0 };
            dpt_net *net = train_to_failure(c, &ds, T, b < 2 ? 0 : 1, overflowing_grad, &err);
            cr_assert(strstr(err.msg, "diverged at step 1:"), "B=%d T=%d: %s", c.batch, T,
                      err.msg);
            cr_assert_eq(dpt_net_steps(net), 0, "B=%d T=%d", c.batch, T);
            dpt_net_free(net);
        }
    dpt_dataset_free(&ds);
}

Test(engine, the_default_network_learns_real_mnist_above_90_percent, .timeout = 300)
{
    dpt_dataset tr, te;
    dpt_error err = { 0 };
    if (dpt_dataset_load_dir(data_dir("mnist"), 0, 10, &tr, &err))
        cr_skip_test("data/mnist missing: %s", err.msg);
    cr_assert_eq(dpt_dataset_load_dir(data_dir("mnist"), 1, 10, &te, &err), DPT_OK);
    dpt_config c;
    dpt_config_default(&c);
    c.bind = 0;
    dpt_net *net = dpt_net_create(&c, &err);
    dpt_train_state st;
    dpt_train_state_init(&st);
    dpt_train_opts o = { .threads = 2 };
    dpt_train_result res;
    cr_assert_eq(dpt_train(net, &tr, &te, &st, &o, &res, &err), DPT_OK, "%s", err.msg);
    cr_assert_gt(res.test.accuracy, 0.90, "test accuracy %.4f", res.test.accuracy);
    cr_assert_gt(res.val.accuracy, 0.90, "validation accuracy %.4f", res.val.accuracy);
    dpt_train_state_free(&st);
    dpt_net_free(net);
    dpt_dataset_free(&tr);
    dpt_dataset_free(&te);
}

Test(engine, early_stopping_restores_the_best_weights, .timeout = 60)
{
    dpt_config c = tiny_config("36-40-5");
    c.epochs = 40;
    c.patience = 2;
    c.lr = 0.01f;
    dpt_dataset ds = synth(600, 6, 5, 8);
    dpt_error err = { 0 };
    dpt_net *net = dpt_net_create(&c, &err);
    dpt_train_state st;
    dpt_train_state_init(&st);
    dpt_train_opts o = { .threads = 2 };
    dpt_train_result res;
    cr_assert_eq(dpt_train(net, &ds, NULL, &st, &o, &res, &err), DPT_OK, "%s", err.msg);
    cr_assert(res.stopped_early, "random labels overfit: should stop before 40 epochs");
    cr_assert_lt(res.epochs_run, 40);
    /* the restored weights give the best validation cost recorded */
    cr_assert_float_eq(res.val.cost, st.best_cost, 1e-9);
    dpt_train_state_free(&st);
    dpt_net_free(net);
    dpt_dataset_free(&ds);
}

/* --threads auto trains chunks on different thread counts, each with an engine of its
 * own (train/ladder.h); DPTRAIN_ADAPT=shuffle sends every chunk of 1 to 16 steps to a
 * random count of 8, 4, 2 or 1, so the engines take turns mid-epoch, and the weights
 * must stay those of one thread. */
static uint64_t run_adapt(dpt_config c, int T, double *mean)
{
    dpt_train_result res;
    const uint64_t fp = run_opts(c, (dpt_train_opts){ .threads = T, .bind = 0, .adapt = 1 },
                                 &res);
    *mean = res.threads_mean;
    return fp;
}

Test(engine, changing_the_thread_count_between_chunks_keeps_the_weights, .timeout = 240)
{
    static const char *archs[] = { "256-40-30-5", "256-20-7-5" };
    int Bs[] = { 6, 33, 100 };
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++) {
            const dpt_config c = moving_config(archs[a], a == 0, Bs[b]);
            const uint64_t one = run(c, 1, 0);
            setenv("DPTRAIN_ADAPT", "shuffle", 1);
            double mean;
            const uint64_t mixed = run_adapt(c, 8, &mean);
            unsetenv("DPTRAIN_ADAPT");
#ifdef _OPENMP
            /* every count had chunks: the mean lies strictly inside (1, 8) */
            cr_assert(mean > 1.5 && mean < 6.5, "%s B=%d: mean thread count %.2f",
                      archs[a], Bs[b], mean);
#endif
            cr_assert_eq(mixed, one, "%s B=%d: changing the thread count between chunks "
                         "changes the weights", archs[a], Bs[b]);
            cr_assert_eq(run_adapt(c, 3, &mean), one, "%s B=%d: --threads auto (3)",
                         archs[a], Bs[b]);
        }
}
