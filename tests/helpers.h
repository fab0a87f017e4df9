/* Small helpers shared by the test files (header-only, static). */
#ifndef DPT_TEST_HELPERS_H
#define DPT_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dptrain.h"

/* A fresh temporary directory per test (Criterion runs each test in its own process). */
static inline const char *tmpdir(void)
{
    static char dir[64];
    if (!dir[0]) {
        strcpy(dir, "/tmp/dpt_testXXXXXX");
        cr_assert_not_null(mkdtemp(dir));
    }
    return dir;
}

static inline const char *tmppath(const char *name)
{
    static char buf[8][256];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 256, "%s/%s", tmpdir(), name);
    return p;
}

static inline void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Where scripts/fetch-data put the data sets; tests that need them skip otherwise. */
static inline const char *data_dir(const char *set)
{
    static char buf[512];
    const char *root = getenv("DPTRAIN_DATA");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "data", set);
    return buf;
}

#endif
