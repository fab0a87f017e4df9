/* The step's barrier (parallel/team.h): every write before it is seen after it, for
 * any team size, also with more threads than processors (where it yields). */
#include "dptrain.h"
#include "parallel/team.h"

#include <criterion/criterion.h>
#include <stdlib.h>

static void phases(int T, int rounds)
{
#ifdef _OPENMP
    dpt_barrier b;
    dpt_barrier_init(&b, T);
    /* one line per thread: what it wrote last */
    struct { _Alignas(64) int v; } *slot = calloc((size_t)T, sizeof *slot);
    int bad = 0, team = 0;
#pragma omp parallel num_threads(T) reduction(+ : bad)
    {
        const int t = dpt_tid();
        if (t == 0)
            team = dpt_team_size();
        for (int r = 1; r <= rounds && dpt_team_size() == T; r++) {
            slot[t].v = r * T + t; /* a plain write */
            dpt_barrier_wait(&b);
            for (int u = 0; u < T; u++) /* everyone's write of this round, no later one */
                bad += slot[u].v != r * T + u;
            dpt_barrier_wait(&b);
        }
    }
    free(slot);
    cr_assert_eq(team, T);
    cr_assert_eq(bad, 0, "T=%d: %d reads missed a write made before the barrier", T, bad);
#else
    (void)T;
    (void)rounds;
    cr_skip_test("built without OpenMP");
#endif
}

Test(team, barrier_orders_plain_writes_for_two_threads, .timeout = 60) { phases(2, 200000); }

Test(team, barrier_orders_plain_writes_for_three_and_five_threads, .timeout = 60)
{
    phases(3, 20000);
    phases(5, 2000);
}

Test(team, a_one_thread_barrier_returns_at_once, .timeout = 10)
{
    dpt_barrier b;
    dpt_barrier_init(&b, 1);
    for (int i = 0; i < 1000; i++)
        dpt_barrier_wait(&b);
    cr_assert_eq(b.phase, 0u);
}

/* A barrier made after a thread of ours was pinned (a second engine: --threads auto,
 * bench's runs) still sees the processors the process may use, not the one core the
 * pinned thread's own mask holds: with two or more it spins as long as the first
 * barrier, instead of taking its team for oversubscribed and yielding at once. */
Test(team, pinning_a_thread_does_not_make_later_barriers_yield_early, .timeout = 10)
{
    dpt_barrier first, later;
    dpt_barrier_init(&first, 2);
    dpt_topology topo;
    dpt_topology_get(&topo);
    if (topo.cores < 2)
        cr_skip_test("needs two cores");
    cr_assert_gt(first.spin, 64u, "two threads on %d cores counted as oversubscribed",
                 topo.cores);
    if (dpt_team_bind(0) != 0)
        cr_skip_test("cannot pin a thread here");
    dpt_barrier_init(&later, 2);
    cr_assert_eq(later.spin, first.spin, "a barrier made after pinning spins %u pauses, not %u",
                 later.spin, first.spin);
}
