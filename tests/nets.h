/* Tiny datasets and networks for the engine tests. */
#ifndef DPT_TEST_NETS_H
#define DPT_TEST_NETS_H

#include "helpers.h"

/* n samples of w*w random pixels, zero with a probability that falls from 90% in the
 * top and bottom rows to 10% in the middle ones (like digits and clothes: the first
 * layer's K-blocks differ in density, so the engine takes sparse and dense paths and
 * plans uneven blocks); labels from a fixed rule so that there is signal. */
static inline dpt_dataset synth(size_t n, int side, int classes, uint64_t seed)
{
    dpt_dataset ds = { 0 };
    ds.n = n;
    ds.rows = ds.cols = (uint32_t)side;
    ds.dim = (size_t)side * side;
    ds.classes = classes;
    ds.images = dpt_alloc(n * ds.dim, 1);
    ds.labels = dpt_alloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned sum = 0;
        for (size_t p = 0; p < ds.dim; p++) {
            const uint64_t rnd = dpt_rand64(seed, 9, i * ds.dim + p);
            const int row = (int)(p / (size_t)side), mid = side / 2;
            const int off = row < mid ? mid - row : row - mid + 1; /* 1 .. side/2 */
            const unsigned zero_pct = 10 + 80 * (unsigned)(off - 1) / (unsigned)(mid > 1 ? mid - 1 : 1);
            uint8_t v = (rnd >> 8) % 100 < zero_pct ? 0 : (uint8_t)(rnd & 0xFF);
            ds.images[i * ds.dim + p] = v;
            sum += v * (unsigned)(p + 1);
        }
        ds.labels[i] = (uint8_t)(sum % (unsigned)classes);
    }
    return ds;
}

static inline dpt_config tiny_config(const char *arch)
{
    dpt_config c;
    dpt_config_default(&c);
    dpt_error err;
    cr_assert_eq(dpt_parse_arch(arch, &c, &err), DPT_OK, "%s", err.msg);
    c.threads = 1;
    c.bind = 0;
    c.seed = 3;
    c.weight_decay = 0;
    c.dropout = 0;
    return c;
}

#endif
