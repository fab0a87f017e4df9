/* Optimisers against values computed by hand (PyTorch's formulas) for two steps. */
#include "helpers.h"
#include "nn/net.h"

#include <math.h>

/* A "1-2" net has 2 weights + 2 biases; we set the first weight and its gradient. */
static dpt_net *one(int opt, int nesterov, float wd)
{
    dpt_config c;
    dpt_config_default(&c);
    dpt_error err;
    dpt_parse_arch("1-2", &c, &err);
    c.optimizer = opt;
    c.nesterov = nesterov;
    c.lr = 0.1f;
    c.weight_decay = wd;
    c.momentum = 0.9f;
    dpt_net *net = dpt_net_create(&c, &err);
    cr_assert_not_null(net);
    net->params[0] = 1.0f;
    return net;
}

static float two_steps(dpt_net *net, float *after1)
{
    net->grads[0] = 0.5f;
    cr_assert_eq(dpt_optim_update(net, net->grads, 0, 1, 0, 1, 1), 0);
    *after1 = net->params[0];
    net->grads[0] = 0.5f;
    cr_assert_eq(dpt_optim_update(net, net->grads, 0, 1, 0, 1, 2), 0);
    float w = net->params[0];
    dpt_net_free(net);
    return w;
}

#define NEAR(a, b) cr_assert(fabs((double)(a) - (b)) < 2e-6, "%.8f != %.8f", (double)(a), (double)(b))

Test(optim, sgd_with_weight_decay)
{
    float w1, w2 = two_steps(one(DPT_SGD, 0, 0.01f), &w1);
    NEAR(w1, 0.949);      /* 1 - 0.1 * (0.5 + 0.01 * 1) */
    NEAR(w2, 0.898051);   /* 0.949 - 0.1 * (0.5 + 0.01 * 0.949) */
}

Test(optim, momentum_starts_its_buffer_at_the_first_gradient)
{
    float w1, w2 = two_steps(one(DPT_MOMENTUM, 0, 0.01f), &w1);
    NEAR(w1, 0.949);      /* b = 0.51 */
    NEAR(w2, 0.852151);   /* b = 0.9 * 0.51 + 0.50949 = 0.96849 */
}

Test(optim, nesterov_momentum)
{
    float w1, w2 = two_steps(one(DPT_MOMENTUM, 1, 0.01f), &w1);
    NEAR(w1, 0.9031);     /* 1 - 0.1 * (0.51 + 0.9 * 0.51) */
    NEAR(w2, 0.76507411); /* b = 0.968031; 0.9031 - 0.1 * (0.509031 + 0.9 * b) */
}

Test(optim, adam_with_coupled_weight_decay)
{
    float w1, w2 = two_steps(one(DPT_ADAM, 0, 0.01f), &w1);
    NEAR(w1, 0.9);        /* m^ = g, v^ = g^2: a step of exactly lr */
    /* g = 0.509, m = 0.0968, v = 0.0005189209, m^ = m / 0.19, v^ = v / 0.001999 */
    double mh = 0.0968 / 0.19, vh = 0.0005189209 / 0.001999;
    NEAR(w2, 0.9 - 0.1 * mh / (sqrt(vh) + 1e-8));
}

Test(optim, adamw_decays_weights_outside_the_moments)
{
    float w1, w2 = two_steps(one(DPT_ADAMW, 0, 0.01f), &w1);
    NEAR(w1, 0.899);      /* 1 * (1 - 0.001) - 0.1 */
    NEAR(w2, 0.798101);   /* 0.899 * 0.999 - 0.1 */
}

Test(optim, l2_adds_lambda_over_batch_times_w_to_dense_weights)
{
    dpt_net *net = one(DPT_SGD, 0, 0.0f);
    net->cfg.l2 = 0.5f;
    net->grads[0] = 0.5f;
    cr_assert_eq(dpt_optim_update(net, net->grads, 0, 1, 1, 4, 1), 0); /* batch 4 */
    NEAR(net->params[0], 1.0 - 0.1 * (0.5 + 0.5 / 4 * 1.0));
    dpt_net_free(net);
}

/* A "1-2" net's parameters: W[0][0], W[0][1], b[0], b[1]. */
static void non_finite_in_the_middle(int opt)
{
    dpt_net *net = one(opt, 0, 0.01f);
    float g[4] = { 0.5f, NAN, -INFINITY, 0.25f }, w0[4], m1[4], m2[4];
    for (int i = 0; i < 4; i++) {
        net->params[i] = 1.0f + (float)i;
        net->m1[i] = 0.125f;
        net->m2[i] = 0.0625f;
        w0[i] = net->params[i], m1[i] = net->m1[i], m2[i] = net->m2[i];
    }
    cr_assert_eq(dpt_optim_update(net, g, 0, 4, 1, 1, 2), 1);
    for (int i = 1; i <= 2; i++) { /* the non-finite ones: untouched, with their state */
        cr_assert_eq(net->params[i], w0[i], "opt %d: param %d changed", opt, i);
        cr_assert_eq(net->m1[i], m1[i], "opt %d: state of %d changed", opt, i);
        cr_assert_eq(net->m2[i], m2[i], "opt %d: state of %d changed", opt, i);
    }
    /* the finite ones: updated exactly as alone (compared with a fresh net) */
    dpt_net *ref = one(opt, 0, 0.01f);
    for (int i = 0; i < 4; i += 3) {
        ref->params[0] = w0[i], ref->m1[0] = m1[i], ref->m2[0] = m2[i];
        cr_assert_eq(dpt_optim_update(ref, &g[i], 0, 1, 1, 1, 2), 0);
        cr_assert_neq(net->params[i], w0[i], "opt %d: param %d not updated", opt, i);
        cr_assert_eq(net->params[i], ref->params[0], "opt %d: param %d", opt, i);
        cr_assert_eq(net->m1[i], ref->m1[0], "opt %d: state of %d", opt, i);
    }
    dpt_net_free(ref);
    dpt_net_free(net);
}

Test(optim, a_non_finite_gradient_leaves_its_parameter_and_state_unchanged)
{
    non_finite_in_the_middle(DPT_SGD);
    non_finite_in_the_middle(DPT_MOMENTUM);
    non_finite_in_the_middle(DPT_ADAM);
    non_finite_in_the_middle(DPT_ADAMW);
}
