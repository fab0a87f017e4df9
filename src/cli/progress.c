/* Training progress on stderr: a live bar on a terminal, one plain line per epoch
 * otherwise (readable in CI logs); nothing with --quiet. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void fmt_rate(char *b, size_t n, double r)
{
    if (r >= 1e6)
        snprintf(b, n, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(b, n, "%.1fk", r / 1e3);
    else
        snprintf(b, n, "%.0f", r);
}

void progress_cb(void *ud, const dpt_progress *p)
{
    progress_ui *ui = ud;
    if (ui->quiet)
        return;
    char rate[32];
    fmt_rate(rate, sizeof rate, p->samples_per_s);
    if (p->event == DPT_EV_PROGRESS) {
        if (!ui->tty || dpt_now() - ui->last < 0.1)
            return;
        ui->last = dpt_now();
        int width = 24, fill = (int)(width * (double)p->batch / p->batches);
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[Kepoch %d/%d [%s] step %llu  cost %.4f  %s samples/s  ETA %.0fs",
                p->epoch, p->epochs, bar, (unsigned long long)p->step, p->train_cost, rate,
                p->eta);
        fflush(stderr);
        return;
    }
    if (ui->tty)
        fputs("\r\033[K", stderr);
    if (p->event == DPT_EV_EVAL)
        fprintf(stderr, "  step %llu: train_cost %.4f", (unsigned long long)p->step,
                p->train_cost);
    else
        fprintf(stderr, "epoch %d/%d  step %llu  train_cost %.4f  train_acc %.4f",
                p->epoch, p->epochs, (unsigned long long)p->step, p->train_cost,
                p->train_accuracy);
    if (p->has_val)
        fprintf(stderr, "  val_cost %.4f  val_acc %.4f%s", p->val.cost, p->val.accuracy,
                p->improved ? " *" : "");
    fprintf(stderr, "  %s samples/s  %.1fs\n", rate, p->seconds);
    ui->last = 0;
}

void progress_done(progress_ui *ui)
{
    if (ui->tty && !ui->quiet)
        fputs("\r\033[K", stderr);
}
