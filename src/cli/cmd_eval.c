/* dptrain eval and predict: a saved model on the test set. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* Parses the options (or prints help, setting *done), loads --model and the test set
 * of --data, and checks they fit together. */
static int load(cli *c, int argc, char **argv, const char *help, const char *allowed,
                dpt_net **net, dpt_dataset *test, int *done)
{
    dpt_error err = { 0 };
    int rc = cli_begin(c, argc, argv, help, allowed, done);
    if (rc || *done)
        return rc;
    if (!c->model)
        return cli_failf(2, "--model: missing (the checkpoint to load)");
    if (dpt_checkpoint_load(c->model, net, NULL, &err))
        return cli_fail(&err);
    const dpt_config *nc = dpt_net_config(*net);
    if (cli_load(c, 1, nc->sizes[nc->nlayers], test, &err) || cli_check_arch(nc, test, &err)) {
        dpt_net_free(*net);
        dpt_dataset_free(test);
        return cli_fail(&err);
    }
    return 0;
}

static const char eval_help[] =
    "usage: dptrain eval --model FILE [--data DIR] [--threads N]\n\n"
    "Evaluates a checkpoint on DIR's test set (default data/mnist); prints\n"
    "test_accuracy: and test_cost:.\n";

int cmd_eval(int argc, char **argv)
{
    cli c;
    dpt_net *net;
    dpt_dataset test;
    int done, rc = load(&c, argc, argv, eval_help, "model data threads quiet", &net, &test,
                        &done);
    if (rc || done)
        return rc;
    dpt_metrics m;
    dpt_error err = { 0 };
    if (dpt_net_evaluate(net, &test, NULL, 0, c.cfg.threads, &m, NULL, NULL, NULL, &err))
        rc = cli_fail(&err);
    else
        printf("test_samples: %zu\ntest_accuracy: %.4f\ntest_cost: %.4f\n", m.n, m.accuracy,
               m.cost);
    dpt_net_free(net);
    dpt_dataset_free(&test);
    return rc;
}

/* Draws a grid of test images, each with a strip under it: its true label and the
 * prediction as 3x5 digit glyphs, green when right and red (with a red frame) when
 * wrong. */
static const unsigned short glyph[10] = { /* 3x5, rows top to bottom, 3 bits each */
    075557, 026227, 071747, 071717, 055711, 074717, 074757, 071111, 075757, 075717 };

static void put_digit(unsigned char *px, int W, int x0, int y0, int d, const unsigned char *rgb)
{
    for (int r = 0; r < 5; r++)
        for (int q = 0; q < 3; q++)
            if (glyph[d] >> ((4 - r) * 3 + (2 - q)) & 1)
                for (int sy = 0; sy < 2; sy++)
                    for (int sx = 0; sx < 2; sx++) {
                        unsigned char *p = px + ((size_t)(y0 + 2 * r + sy) * W + x0 + 2 * q + sx) * 3;
                        memcpy(p, rgb, 3);
                    }
}

static int draw_grid(const char *path, const dpt_dataset *ds, const int *pred, int count,
                     dpt_error *err)
{
    const int cw = (int)ds->cols + 4, ch = (int)ds->rows + 16;
    int cols = count < 10 ? count : 10, rows = (count + cols - 1) / cols;
    int W = cols * cw, H = rows * ch;
    unsigned char *px = malloc((size_t)W * H * 3);
    if (!px)
        return dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
    memset(px, 255, (size_t)W * H * 3);
    static const unsigned char black[3] = { 0, 0, 0 }, green[3] = { 0, 140, 0 },
                               red[3] = { 220, 0, 0 };
    for (int i = 0; i < count; i++) {
        int gx = (i % cols) * cw, gy = (i / cols) * ch, y = ds->labels[i], p = pred[i];
        if (p != y) /* frame misclassified images */
            for (int yy = gy; yy < gy + (int)ds->rows + 4; yy++)
                for (int xx = gx; xx < gx + cw; xx++)
                    memcpy(px + ((size_t)yy * W + xx) * 3, red, 3);
        for (unsigned r = 0; r < ds->rows; r++)
            for (unsigned q = 0; q < ds->cols; q++) {
                unsigned char v = 255 - ds->images[(size_t)i * ds->dim + r * ds->cols + q];
                unsigned char *o = px + ((size_t)(gy + 2 + r) * W + gx + 2 + q) * 3;
                o[0] = o[1] = o[2] = v;
            }
        if (y < 10)
            put_digit(px, W, gx + 3, gy + (int)ds->rows + 5, y, black);
        if (p < 10)
            put_digit(px, W, gx + 13, gy + (int)ds->rows + 5, p, p == y ? green : red);
    }
    int rc = png_write(path, W, H, 3, px, err);
    free(px);
    return rc;
}

static const char predict_help[] =
    "usage: dptrain predict --model FILE [--data DIR] [--count N] [--grid FILE.png]\n\n"
    "Predicts the first N test images (default 20). Without --grid prints one line\n"
    "per image: index, label, prediction, confidence, and 'wrong' when it is.\n"
    "With --grid draws them as a PNG: true label (black) and prediction (green if\n"
    "right, red if wrong, misclassified images framed in red).\n";

int cmd_predict(int argc, char **argv)
{
    cli c;
    dpt_net *net;
    dpt_dataset test;
    int done, rc = load(&c, argc, argv, predict_help, "model data count grid threads quiet",
                        &net, &test, &done);
    if (rc || done)
        return rc;
    size_t n = c.count > 0 ? (size_t)c.count : 20;
    if (n > test.n)
        n = test.n;
    uint32_t *idx = malloc(n * sizeof *idx);
    int *pred = malloc(n * sizeof *pred);
    float *conf = malloc(n * sizeof *conf);
    dpt_error err = { 0 };
    dpt_metrics m;
    if (!idx || !pred || !conf) {
        rc = cli_failf(1, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    if (dpt_net_evaluate(net, &test, idx, n, c.cfg.threads, &m, NULL, pred, conf, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    if (c.grid) {
        if (draw_grid(c.grid, &test, pred, (int)n, &err)) {
            rc = cli_fail(&err);
            goto out;
        }
        if (!c.quiet)
            fprintf(stderr, "dptrain: wrote %s (%zu images, %zu wrong)\n", c.grid, n,
                    n - (size_t)(m.accuracy * n + 0.5));
    } else {
        printf("index label prediction confidence\n");
        for (size_t i = 0; i < n; i++)
            printf("%5zu %5d %10d %10.4f%s\n", i, test.labels[i], pred[i], conf[i],
                   pred[i] != test.labels[i] ? "  wrong" : "");
    }
    printf("accuracy: %.4f\n", m.accuracy);
out:
    free(idx);
    free(pred);
    free(conf);
    dpt_net_free(net);
    dpt_dataset_free(&test);
    return rc;
}
