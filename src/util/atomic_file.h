/* Atomic file writing: write to a temporary file beside the target, fsync, rename.
 * A crash or an error never leaves a partial file under the final name. */
#ifndef DPT_ATOMIC_FILE_H
#define DPT_ATOMIC_FILE_H

#include "dptrain.h"

typedef struct dpt_afile {
    int fd;              /* open descriptor of the temporary file */
    char tmp[4096];      /* its name */
    char path[4096];     /* the final name */
} dpt_afile;

/* Creates the temporary file; returns DPT_OK or an error naming path. */
int dpt_afile_open(dpt_afile *f, const char *path, dpt_error *err);
/* Writes all n bytes or fails with an error naming the final path. */
int dpt_afile_write(dpt_afile *f, const void *buf, size_t n, dpt_error *err);
/* fsync, close and rename onto the final name. */
int dpt_afile_commit(dpt_afile *f, dpt_error *err);
/* Closes and removes the temporary file (after an error). */
void dpt_afile_abort(dpt_afile *f);

#endif
