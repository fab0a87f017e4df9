/* hwloc: topology (read once) and pinning one thread per physical core. */
#include "parallel/team.h"
#include "dptrain.h"

#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static hwloc_topology_t topo;
static int topo_ok;
static int allowed; /* processors the process may run on, counted in load() */
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Processors in the calling thread's affinity mask, or online ones. */
static int count_allowed(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The topology within the process's CPU binding at the first call (taskset, a cpuset
 * cgroup, a batch scheduler's binding): two runs started on different cores get
 * different cores, and a run given one core counts one. Loaded before any thread of
 * ours is pinned (the first engine or `info` asks first). */
static void load(void)
{
    allowed = count_allowed();
    if (hwloc_topology_init(&topo) != 0)
        return;
#if HWLOC_API_VERSION >= 0x00020100
    hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM |
                                       HWLOC_TOPOLOGY_FLAG_RESTRICT_TO_CPUBINDING);
#endif
    if (hwloc_topology_load(topo) == 0)
        topo_ok = 1;
}

/* Processors this process may run on, as at the first call: once a thread of ours is
 * pinned, its own mask holds one core, and a barrier made after that (a second engine:
 * --threads auto, bench's runs) took its team for oversubscribed and gave up spinning
 * after 64 pauses (~1.2 us here) for sched_yield, ~14% of a far-placement step. */
static int allowed_cpus(void)
{
    pthread_once(&once, load);
    return allowed;
}

void dpt_topology_get(dpt_topology *t)
{
    pthread_once(&once, load);
    memset(t, 0, sizeof *t);
    if (!topo_ok) {
        t->cores = t->pus = allowed_cpus();
        t->packages = t->numa_nodes = 1;
        snprintf(t->summary, sizeof t->summary, "%d processors (hwloc unavailable)", t->pus);
        return;
    }
    t->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    t->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    t->packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
    t->numa_nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    if (t->cores <= 0)
        t->cores = t->pus > 0 ? t->pus : 1;
    hwloc_obj_t pkg = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, 0);
    const char *model = pkg ? hwloc_obj_get_info_by_name(pkg, "CPUModel") : NULL;
    snprintf(t->cpu_model, sizeof t->cpu_model, "%s", model ? model : "unknown CPU");
    /* cache sizes of the first core, innermost first */
    char caches[256] = "";
    size_t k = 0;
    hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, 0);
    for (hwloc_obj_t o = pu; o && k < sizeof caches; o = o->parent)
        if (hwloc_obj_type_is_dcache(o->type) || o->type == HWLOC_OBJ_L3CACHE)
            k += snprintf(caches + k, sizeof caches - k, "%sL%u %lluK", k ? ", " : "",
                          o->attr->cache.depth,
                          (unsigned long long)o->attr->cache.size / 1024);
    snprintf(t->summary, sizeof t->summary,
             "%d package(s), %d NUMA node(s), %d core(s), %d hardware thread(s); %s", t->packages,
             t->numa_nodes > 0 ? t->numa_nodes : 1, t->cores, t->pus, caches);
}

int dpt_team_default_threads(void)
{
    dpt_topology t;
    dpt_topology_get(&t);
    return t.cores > 0 ? t.cores : 1;
}

int dpt_team_bind(int t)
{
    pthread_once(&once, load);
    if (!topo_ok)
        return -1;
    int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    hwloc_obj_t obj = cores > 0 ? hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, t % cores)
                                : hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, t);
    if (!obj || !obj->cpuset)
        return -1;
    hwloc_cpuset_t set = hwloc_bitmap_dup(obj->cpuset);
    hwloc_bitmap_singlify(set); /* one hardware thread of the core */
    int rc = hwloc_set_cpubind(topo, set, HWLOC_CPUBIND_THREAD);
    hwloc_bitmap_free(set);
    return rc == 0 ? 0 : -1;
}

void dpt_barrier_init(dpt_barrier *b, int threads)
{
    atomic_init(&b->arrived, 0u);
    atomic_init(&b->phase, 0u);
    b->n = threads;
    b->spin = threads > allowed_cpus() ? 64u : 1u << 15;
}

void dpt_barrier_wait(dpt_barrier *b)
{
    if (b->n <= 1)
        return;
    /* the phase cannot move before this thread has arrived */
    const unsigned ph = atomic_load_explicit(&b->phase, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&b->arrived, 1u, memory_order_acq_rel) == (unsigned)b->n - 1) {
        atomic_store_explicit(&b->arrived, 0u, memory_order_relaxed);
        atomic_store_explicit(&b->phase, ph + 1u, memory_order_release);
        return;
    }
    for (unsigned i = 0; atomic_load_explicit(&b->phase, memory_order_acquire) == ph; i++) {
        if (i < b->spin) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

#ifdef _OPENMP
/* Spins until *f holds v (no pause: the probe times the line's trip, not the spin),
 * yielding the core after a while in case the other thread is not running. */
static void await_value(_Atomic unsigned *f, unsigned v)
{
    for (unsigned k = 0; atomic_load_explicit(f, memory_order_acquire) != v; k++)
        if (k > 1u << 14)
            sched_yield();
}
#endif

double dpt_team_roundtrip_ns(int bind)
{
#ifdef _OPENMP
    dpt_topology t;
    dpt_topology_get(&t);
    if (t.cores < 2)
        return -1;
    enum { ROUNDS = 4000, SETS = 5 };
    static _Alignas(64) _Atomic unsigned flag;
    double per[SETS];
    int ran = 0;
    atomic_store(&flag, 0u);
#pragma omp parallel num_threads(2)
    {
        const int me = omp_get_thread_num();
        if (omp_get_num_threads() == 2) {
            if (bind)
                dpt_team_bind(me);
            for (unsigned s = 0; s < SETS; s++) {
#pragma omp barrier
                const unsigned base = 2u * ROUNDS * s;
                const double t0 = dpt_now();
                for (unsigned i = 0; i < ROUNDS; i++) { /* 0 serves, 1 returns */
                    const unsigned serve = base + 2 * i + 1;
                    if (me == 0)
                        atomic_store_explicit(&flag, serve, memory_order_release);
                    await_value(&flag, me == 0 ? serve + 1 : serve);
                    if (me == 1)
                        atomic_store_explicit(&flag, serve + 1, memory_order_release);
                }
                if (me == 0)
                    per[s] = (dpt_now() - t0) / ROUNDS * 1e9;
            }
            if (me == 0)
                ran = 1;
        }
    }
    if (!ran)
        return -1;
    for (int i = 1; i < SETS; i++) /* median */
        for (int j = i; j > 0 && per[j] < per[j - 1]; j--) {
            double x = per[j];
            per[j] = per[j - 1];
            per[j - 1] = x;
        }
    return per[SETS / 2];
#else
    (void)bind;
    return -1;
#endif
}
