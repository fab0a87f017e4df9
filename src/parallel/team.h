/* The thread team: OpenMP wrappers (so the code builds without OpenMP), hwloc binding,
 * and the two work plans of a step. */
#ifndef DPT_TEAM_H
#define DPT_TEAM_H

#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#define DPT_BARRIER() _Pragma("omp barrier")
static inline int dpt_tid(void) { return omp_get_thread_num(); }
static inline int dpt_team_size(void) { return omp_get_num_threads(); }
#else
#define DPT_BARRIER() ((void)0)
static inline int dpt_tid(void) { return 0; }
static inline int dpt_team_size(void) { return 1; }
#endif

/* The training step's barrier: a counter and a phase word on their own cache lines.
 * The last thread to arrive resets the counter and advances the phase (release);
 * the others spin on the phase (acquire), so every write before the barrier is
 * visible after it, as with "omp barrier". It costs ~35 ns on two pinned Zen 4 cores
 * against ~275 ns for GOMP's, and it never sleeps in the kernel: GOMP's threads go to
 * a futex after ~0.2 ms of spinning (OMP_WAIT_POLICY unset), and on a noisy machine a
 * thread that far behind is common and the wake-up costs microseconds more. A waiting
 * thread yields its core (sched_yield) after `spin` pauses: ~1 ms when every thread
 * has a processor (32768 pauses: 0.6 ms on the Zen 5 machine, 18.6 ns a pause), almost
 * at once when there are more threads than processors of the process (the thread it
 * waits for may need that core; counted once, before any thread is pinned). */
typedef struct dpt_barrier {
    _Alignas(64) _Atomic unsigned arrived;
    _Alignas(64) _Atomic unsigned phase;
    int n;        /* threads */
    unsigned spin; /* pauses before yielding */
} dpt_barrier;

void dpt_barrier_init(dpt_barrier *b, int threads);
void dpt_barrier_wait(dpt_barrier *b);

/* Rows per slice. The slice plan of a batch of B rows depends on B only: slice s holds
 * rows [s*DPT_SLICE, min((s+1)*DPT_SLICE, B)). Batchnorm partial sums are per slice and
 * merged in slice order, so they do not depend on the thread count either. */
enum { DPT_SLICE = 4 };

static inline int dpt_nslices(int B) { return (B + DPT_SLICE - 1) / DPT_SLICE; }


/* The first layer's inputs are cut into DPT_KBLOCKS fixed blocks of rows of W (block
 * b holds rows [b*in/NB, (b+1)*in/NB)). Each block's owner computes that block's
 * partial product for the whole batch and later its gradient and update, so the big
 * first-layer weights and their optimiser state never leave the owner's cache. The
 * partials are summed in block order, so results do not depend on the thread count.
 * Up to DPT_KBLOCKS threads share the first layer's forward product. */
enum { DPT_KBLOCKS = 8 };

static inline int dpt_kblocks(int in) { return in < DPT_KBLOCKS ? in : DPT_KBLOCKS; }
static inline int dpt_kblock_row(int in, int b)
{
    const int nb = dpt_kblocks(in);
    if (b >= nb)
        return in;
    /* boundaries on multiples of 16 floats (64-byte lines) when the blocks are that
     * wide: two owners never write the same cache line of the input */
    if (in >= 16 * nb)
        return 16 * (int)((long)(in / 16) * b / nb);
    return (int)((long)in * b / nb);
}
static inline int dpt_kblock_width(int in, int b)
{
    return dpt_kblock_row(in, b + 1) - dpt_kblock_row(in, b);
}

/* Number of usable cores for the default thread count. */
int dpt_team_default_threads(void);
/* Binds the calling thread to core t (of the machine's physical cores, round robin).
 * Returns 0 on success, -1 if binding failed or hwloc is unavailable. */
int dpt_team_bind(int t);

#endif
