/* The mixing function behind dpt_rand64, inline for hot loops (dropout masks). */
#ifndef DPT_RNG_H
#define DPT_RNG_H

#include <stdint.h>

/* SplitMix64's finaliser: a bijection on 64 bits with good avalanche. */
static inline uint64_t dpt_mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
