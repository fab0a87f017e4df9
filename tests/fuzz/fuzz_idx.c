/* libFuzzer target: the IDX reader on arbitrary bytes, as a plain file and gzipped.
 * It must return an error or a consistent dataset, never crash or over-allocate.
 * Build and run: make fuzz (clang). */
#include "dptrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/dpt_fuzz_idx_%d", (int)getpid());
    for (int gz = 0; gz < 2; gz++) {
        if (gz) {
            gzFile g = gzopen(path, "wb");
            if (!g)
                return 0;
            if (size)
                gzwrite(g, data, (unsigned)size);
            gzclose(g);
        } else {
            FILE *f = fopen(path, "wb");
            if (!f)
                return 0;
            fwrite(data, 1, size, f);
            fclose(f);
        }
        for (int ndim = 1; ndim <= 3; ndim += 2) {
            dpt_idx idx;
            dpt_error err;
            if (dpt_idx_read(path, ndim, &idx, &err) == DPT_OK) {
                size_t n = 1;
                for (int d = 0; d < ndim; d++)
                    n *= idx.dims[d];
                if (n != idx.nbytes)
                    abort();
                volatile uint8_t sink = idx.data[idx.nbytes - 1]; /* readable to the end */
                (void)sink;
                dpt_idx_free(&idx);
            } else if (strchr(err.msg, '\n') || !strstr(err.msg, path)) {
                abort(); /* one line naming the file */
            }
        }
    }
    unlink(path);
    return 0;
}
