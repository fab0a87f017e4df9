/* hwloc: topology (read once) and pinning one thread per physical core. */
#include "parallel/team.h"
#include "dptrain.h"

#include <hwloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static hwloc_topology_t topo;
static int topo_ok;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    if (hwloc_topology_init(&topo) == 0 && hwloc_topology_load(topo) == 0)
        topo_ok = 1;
}

void dpt_topology_get(dpt_topology *t)
{
    pthread_once(&once, load);
    memset(t, 0, sizeof *t);
    if (!topo_ok) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        t->cores = t->pus = n > 0 ? (int)n : 1;
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
