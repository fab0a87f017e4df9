/* Errors, aligned allocation and the counter-based random function. */
#include "dptrain.h"
#include "util/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int dpt_seterr(dpt_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void *dpt_alloc(size_t count, size_t size)
{
    if (size && count > (SIZE_MAX - 63) / size)
        return NULL;
    size_t bytes = (count * size + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void dpt_free(void *p) { free(p); }

double dpt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


/* Chaining the mix over the key words gives a stateless generator (like a counter-based
 * one): the value depends only on the key, never on who asked before. */
uint64_t dpt_rand64(uint64_t seed, uint64_t stream, uint64_t counter)
{
    return dpt_mix64(dpt_mix64(dpt_mix64(seed) ^ stream) ^ counter);
}

float dpt_randu(uint64_t seed, uint64_t stream, uint64_t counter)
{
    return (float)(dpt_rand64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}

double dpt_randn(uint64_t seed, uint64_t stream, uint64_t counter)
{
    /* Box-Muller on two 53-bit uniforms drawn from one key. */
    uint64_t r = dpt_rand64(seed, stream, counter);
    uint64_t s = dpt_mix64(r ^ 0xD1B54A32D192ED03ull);
    double u1 = ((double)(r >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double u2 = (double)(s >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
