/* What a cache line costs when it changes core: two threads pinned to the first two
 * processors of the process's affinity mask take turns on one buffer, and the first
 * thread times each access pattern (medians of REPS turns):
 *   round trip       a flag goes to the other core and back (the cost of a barrier);
 *   local read       re-reading a buffer this core wrote;
 *   remote read      reading a buffer the other core just wrote;
 *   write, shared    writing a buffer the other core just read (its copies must go);
 *   write, owned     writing a buffer the other core just wrote;
 *   write, nt        as "write, shared" with non-temporal stores (and then the other
 *                    core's read, which comes from memory);
 *   write, flushed   as "write, shared" after the reader flushed the lines it read
 *                    (clflushopt; and the reader's time for its read and flush).
 * The training step does all of these every step (partial sums, activations, dZ and
 * updated weights change core), so the figures bound how two threads scale.
 *   build/bench_xcore [KIB]      (buffer size, default 64)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { REPS = 1001, PINGS = 20000 };
enum { IDLE, READ, WRITE, READ_FLUSH, QUIT };

static _Alignas(64) _Atomic int turn;     /* whose turn: 0 the timer, 1 the other */
static _Alignas(64) _Atomic int job;      /* what the other thread does in its turn */
static _Alignas(64) _Atomic unsigned ping;
static float *buf;
static size_t nfl;
static int cpu[2];
static volatile float sink;
static double other_ns; /* the other thread's time for its last job */

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void pin(int c)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(c, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static float sum_buf(void)
{
    float a[16] = { 0 };
    for (size_t i = 0; i < nfl; i += 16)
        for (int j = 0; j < 16; j++)
            a[j] += buf[i + j];
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += a[j];
    return s;
}

static void fill_buf(float v)
{
    for (size_t i = 0; i < nfl; i++)
        buf[i] = v;
}

static void fill_nt(float v)
{
#if defined(__x86_64__)
    const __m128 x = _mm_set1_ps(v);
    for (size_t i = 0; i < nfl; i += 4)
        _mm_stream_ps(buf + i, x);
    _mm_sfence();
#else
    fill_buf(v);
#endif
}

#if defined(__x86_64__)
__attribute__((target("clflushopt"))) static void flush_buf(void)
{
    for (size_t i = 0; i < nfl; i += 16)
        _mm_clflushopt(buf + i);
    _mm_sfence();
}
#else
static void flush_buf(void) {}
#endif

static void *other(void *arg)
{
    (void)arg;
    pin(cpu[1]);
    for (unsigned i = 0; i < PINGS; i++) { /* the round trip's partner */
        while (atomic_load_explicit(&ping, memory_order_acquire) != 2 * i + 1)
            ;
        atomic_store_explicit(&ping, 2 * i + 2, memory_order_release);
    }
    for (;;) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 1)
            ;
        const int j = atomic_load_explicit(&job, memory_order_relaxed);
        if (j == QUIT)
            return NULL;
        const double t0 = now_ns();
        if (j == READ)
            sink = sum_buf();
        else if (j == WRITE)
            fill_buf(2.0f);
        else if (j == READ_FLUSH) {
            sink = sum_buf();
            flush_buf();
        }
        other_ns = now_ns() - t0;
        atomic_store_explicit(&turn, 0, memory_order_release);
    }
}

/* Hands the buffer to the other thread for job j and waits for it to finish. */
static void other_does(int j)
{
    atomic_store_explicit(&job, j, memory_order_relaxed);
    atomic_store_explicit(&turn, 1, memory_order_release);
    while (atomic_load_explicit(&turn, memory_order_acquire) != 0)
        ;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, REPS, sizeof *v, cmp);
    return v[REPS / 2];
}

int main(int argc, char **argv)
{
    const long kib = argc > 1 ? strtol(argv[1], NULL, 10) : 64;
    if (kib < 1 || kib > (1 << 20)) {
        fprintf(stderr, "usage: bench_xcore [KIB]  (buffer size, 1 to 1048576)\n");
        return 2;
    }
    cpu_set_t mask;
    int n = 0;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0)
        for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
            if (CPU_ISSET(c, &mask))
                cpu[n++] = c;
    if (n < 2) {
        fprintf(stderr, "bench_xcore: needs two processors (has %d)\n", n);
        return 2;
    }
    nfl = (size_t)kib * 256;
    buf = aligned_alloc(64, nfl * sizeof *buf);
    if (!buf)
        return 1;
    memset(buf, 0, nfl * sizeof *buf);
    pthread_t th;
    pthread_create(&th, NULL, other, NULL);
    pin(cpu[0]);

    const double t0 = now_ns();
    for (unsigned i = 0; i < PINGS; i++) {
        atomic_store_explicit(&ping, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&ping, memory_order_acquire) != 2 * i + 2)
            ;
    }
    const double rt = (now_ns() - t0) / PINGS;

    static double lr[REPS], rr[REPS], ws[REPS], wo[REPS], wn[REPS], rn[REPS], wf[REPS],
        rf[REPS];
    for (int r = 0; r < REPS; r++) {
        double a;
        fill_buf(1.0f); /* local read */
        a = now_ns();
        sink = sum_buf();
        lr[r] = now_ns() - a;
        other_does(WRITE); /* remote read */
        a = now_ns();
        sink = sum_buf();
        rr[r] = now_ns() - a;
        other_does(READ); /* write, shared */
        a = now_ns();
        fill_buf(3.0f);
        ws[r] = now_ns() - a;
        other_does(WRITE); /* write, owned */
        a = now_ns();
        fill_buf(4.0f);
        wo[r] = now_ns() - a;
        other_does(READ); /* write, nt; then the other's read */
        a = now_ns();
        fill_nt(5.0f);
        wn[r] = now_ns() - a;
        other_does(READ);
        rn[r] = other_ns;
        other_does(READ_FLUSH); /* write, flushed */
        rf[r] = other_ns;
        a = now_ns();
        fill_buf(6.0f);
        wf[r] = now_ns() - a;
    }
    atomic_store_explicit(&job, QUIT, memory_order_relaxed);
    atomic_store_explicit(&turn, 1, memory_order_release);
    pthread_join(th, NULL);

    printf("# bench_xcore: CPUs %d and %d, %ld KiB buffer, medians of %d\n", cpu[0], cpu[1],
           kib, REPS);
    printf("round trip          %9.1f ns\n", rt);
    printf("local read          %9.2f us\n", median(lr) / 1e3);
    printf("remote read         %9.2f us\n", median(rr) / 1e3);
    printf("write, shared       %9.2f us   (the other core had read it)\n", median(ws) / 1e3);
    printf("write, owned        %9.2f us   (the other core had written it)\n", median(wo) / 1e3);
    printf("write, nt           %9.2f us   (non-temporal, after the other read it)\n",
           median(wn) / 1e3);
    printf("read after nt       %9.2f us   (on the other core)\n", median(rn) / 1e3);
    printf("write, flushed      %9.2f us   (the other core read it, then flushed it)\n",
           median(wf) / 1e3);
    printf("read and flush      %9.2f us   (on the other core)\n", median(rf) / 1e3);
    return 0;
}
