/* dptrain info: the machine as dptrain sees it. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cmd_info(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: dptrain info\n\nPrints the CPU topology (hwloc), the default thread "
             "count, the gemm kernels\nthis CPU runs and the one in use (DPTRAIN_ISA=ref|avx2|"
             "avx512 forces one), and\nwhether the products skip zeros "
             "(DPTRAIN_SPARSE=0 turns it off; =input or =dz\nforces one way for every "
             "product, to measure it).");
        return 0;
    }
    if (argc > 1)
        return cli_failf(2, "%s: info takes no arguments", argv[1]);
    dpt_topology t;
    dpt_topology_get(&t);
    printf("dptrain %s\n", DPT_VERSION);
    printf("cpu: %s\n", t.cpu_model);
    printf("topology: %s\n", t.summary);
    printf("default_threads: %d (one per physical core, pinned with hwloc)\n", t.cores);
#ifdef _OPENMP
    printf("openmp: yes\n");
    const double rt = dpt_team_roundtrip_ns(1);
    if (rt > 0)
        printf("cross_core_round_trip_ns: %.0f (a cache line from core 0 to core 1 and back)\n",
               rt);
#else
    printf("openmp: no (built with OMP=0: single-threaded)\n");
#endif
    printf("kernels_supported:");
    const char *isas[] = { "avx512", "avx2", "ref" };
    for (int i = 0; i < 3; i++)
        if (dpt_gemm_supported(isas[i]))
            printf(" %s", isas[i]);
    printf("\nkernel: %s\n", dpt_gemm_kernel());
    const int sm = dpt_sparse_mode();
    printf("sparse_products: %s\n",
           !dpt_gemm_sparse()            ? sm == DPT_SPARSE_OFF
                                               ? "no (DPTRAIN_SPARSE=0)"
                                               : "no (needs the avx512 kernel and AVX-512 BW/VL)"
           : sm == DPT_SPARSE_INPUT ? "yes, forced: every product skips its input's zeros "
                                      "(DPTRAIN_SPARSE=input)"
           : sm == DPT_SPARSE_DZ ? "yes, forced: every first-layer gradient skips dZ's zeros "
                                   "(DPTRAIN_SPARSE=dz)"
                                 : "yes (zeros of an input or of dZ skipped where that pays; "
                                   "DPTRAIN_SPARSE=0 turns it off)");
    return 0;
}
