/* --threads auto's choice of thread count (train/ladder.h), driven with made-up speeds:
 * it finds the fastest count, moves when the speeds change, and spends few steps on
 * the slower counts. */
#include "train/ladder.h"

#include <criterion/criterion.h>

/* Runs `chunks` chunks (64 steps of 64 samples unless the ladder asks for fewer) with
 * samples/s speed[count]; returns the steps run on each rung in steps[]. */
static void drive(dpt_ladder *lad, const double *speed, int chunks, double *steps)
{
    for (int i = 0; i < chunks; i++) {
        size_t most;
        const int r = dpt_ladder_next(lad, &most);
        cr_assert(r >= 0 && r < lad->n);
        const size_t n = most ? most : 64;
        steps[r] += (double)n;
        dpt_ladder_took(lad, r, n, n * 64, (double)(n * 64) / speed[lad->count[r]]);
    }
}

Test(ladder, rungs_halve_down_to_one_thread)
{
    static const int Ts[] = { 1, 2, 3, 8, 12, 1024 };
    static const int want[][12] = { { 1 }, { 2, 1 }, { 3, 2, 1 }, { 8, 4, 2, 1 },
                                    { 12, 6, 3, 2, 1 }, { 1024, 512, 256, 128, 64, 32, 16, 8,
                                                          4, 2, 1 } };
    static const int n[] = { 1, 2, 3, 4, 5, 11 };
    for (int i = 0; i < 6; i++) {
        dpt_ladder lad;
        dpt_ladder_init(&lad, Ts[i], 1);
        cr_assert_eq(lad.n, n[i], "T=%d", Ts[i]);
        for (int r = 0; r < lad.n; r++)
            cr_assert_eq(lad.count[r], want[i][r], "T=%d rung %d", Ts[i], r);
        cr_assert_eq(lad.cur, 0);
    }
}

Test(ladder, a_fixed_count_is_one_rung_that_never_probes)
{
    dpt_ladder fixed;
    dpt_ladder_init(&fixed, 4, 0);
    cr_assert_eq(fixed.n, 1);
    cr_assert_eq(fixed.count[0], 4, "the team's own count, not 1");
    double sp[5] = { 0, 9e6, 9e6, 9e6, 1e6 }, st[1] = { 0 };
    drive(&fixed, sp, 200, st);
    cr_assert_eq(st[0], 200 * 64.0);
}

Test(ladder, one_thread_never_probes)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 1, 1);
    double speed[2] = { 0, 1e6 }, steps[1] = { 0 };
    drive(&lad, speed, 200, steps);
    cr_assert_eq(steps[0], 200 * 64.0);
}

Test(ladder, two_threads_that_pay_keep_training)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 2, 1);
    double speed[3] = { 0, 1.0e6, 1.7e6 }, steps[2] = { 0, 0 };
    drive(&lad, speed, 400, steps);
    cr_assert_eq(lad.cur, 0);
    /* the probes: a warm-up and a timed run after the first chunk, then 16 steps
     * every 32 chunks */
    cr_assert(steps[1] < 0.01 * (steps[0] + steps[1]), "%.0f of %.0f steps on one thread",
              steps[1], steps[0] + steps[1]);
    cr_assert(steps[1] > 0, "never tried one thread");
}

Test(ladder, one_thread_when_it_is_faster_even_in_a_short_run)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 2, 1);
    double speed[3] = { 0, 1.55e6, 1.45e6 }, steps[2] = { 0, 0 };
    drive(&lad, speed, 4, steps); /* a warm-up, a timed chunk, then the probe */
    cr_assert_eq(lad.cur, 1, "one thread is 7%% faster: training should move there");
    drive(&lad, speed, 400, steps);
    cr_assert_eq(lad.cur, 1);
    cr_assert(steps[0] < 0.05 * (steps[0] + steps[1]));
}

Test(ladder, a_small_difference_does_not_move_it)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 2, 1);
    double speed[3] = { 0, 1.01e6, 1.0e6 }, steps[2] = { 0, 0 };
    drive(&lad, speed, 200, steps);
    cr_assert_eq(lad.cur, 0, "1%% is within the 3%% margin");
}

Test(ladder, it_follows_the_speeds_when_they_change)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 8, 1);
    /* two threads fastest: reached from eight by probing down twice */
    double speed[9] = { 0, 2.0e6, 3.0e6, 0, 2.0e6, 0, 0, 0, 1.0e6 }, steps[4] = { 0 };
    drive(&lad, speed, 400, steps);
    cr_assert_eq(lad.count[lad.cur], 2);
    /* the host moves: now eight threads are fastest */
    speed[8] = 6.0e6, speed[4] = 4.0e6;
    drive(&lad, speed, 400, steps);
    cr_assert_eq(lad.count[lad.cur], 8, "at %d threads", lad.count[lad.cur]);
    /* and down to one (the speeds rise step by step: the ladder only tries its
     * neighbours) */
    speed[1] = 9.0e6, speed[2] = 8.0e6, speed[4] = 7.0e6;
    drive(&lad, speed, 800, steps);
    cr_assert_eq(lad.count[lad.cur], 1, "at %d threads", lad.count[lad.cur]);
}

Test(ladder, short_chunks_are_not_timed)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 2, 1);
    size_t most;
    cr_assert_eq(dpt_ladder_next(&lad, &most), 0);
    dpt_ladder_took(&lad, 0, 64, 64 * 64, 1e-3); /* warm-up */
    dpt_ladder_took(&lad, 0, DPT_LADDER_WARM - 1, 64 * 7, 1.0);
    cr_assert_eq(lad.rate[0], 0, "a %d-step chunk was timed", DPT_LADDER_WARM - 1);
    cr_assert_eq(dpt_ladder_next(&lad, &most), 0, "probed before a timed chunk");
    dpt_ladder_took(&lad, 0, 64, 64 * 64, 1e-3);
    cr_assert_gt(lad.rate[0], 0);
    cr_assert_eq(dpt_ladder_next(&lad, &most), 1);
    cr_assert_eq(most, DPT_LADDER_WARM, "a new rung's first run is its warm-up");
}

Test(ladder, a_probe_that_cannot_run_is_dropped)
{
    dpt_ladder lad;
    dpt_ladder_init(&lad, 2, 1);
    double speed[3] = { 0, 9e6, 1e6 }, steps[2] = { 0, 0 };
    drive(&lad, speed, 2, steps);
    size_t most;
    cr_assert_eq(dpt_ladder_next(&lad, &most), 1);
    cr_assert_eq(dpt_ladder_drop(&lad, &most), 0);
    cr_assert_eq(most, 0);
    cr_assert_eq(dpt_ladder_next(&lad, &most), 0, "the dropped probe came back at once");
}
