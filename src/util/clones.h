/* Function multiversioning for hot elementwise loops: the same C compiled for x86-64-v4
 * (AVX-512), v3 (AVX2+FMA) and the baseline, chosen by the loader (ifunc) for the CPU.
 * Without -ffast-math and with ISO C's default -ffp-contract=off, every version
 * computes bitwise the same results; only the speed differs. */
#ifndef DPT_CLONES_H
#define DPT_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define DPT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DPT_CLONES
#endif

#endif
