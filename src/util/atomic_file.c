#include "util/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dpt_afile_open(dpt_afile *f, const char *path, dpt_error *err)
{
    f->fd = -1;
    if (strlen(path) + 16 >= sizeof f->tmp)
        return dpt_seterr(err, DPT_EINPUT, "%s: path too long", path);
    strcpy(f->path, path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmpXXXXXX", path);
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0)
        return dpt_seterr(err, DPT_EFAIL, "%s: cannot create: %s", path, strerror(errno));
    fchmod(f->fd, 0644); /* mkstemp makes 0600; a result file is for others to read */
    return DPT_OK;
}

int dpt_afile_write(dpt_afile *f, const void *buf, size_t n, dpt_error *err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            dpt_afile_abort(f);
            return dpt_seterr(err, DPT_EFAIL, "%s: write failed: %s", f->path, strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    return DPT_OK;
}

int dpt_afile_commit(dpt_afile *f, dpt_error *err)
{
    if (fsync(f->fd) != 0 || close(f->fd) != 0) {
        int e = errno;
        f->fd = -1;
        dpt_afile_abort(f);
        return dpt_seterr(err, DPT_EFAIL, "%s: cannot write: %s", f->path, strerror(e));
    }
    f->fd = -1;
    if (rename(f->tmp, f->path) != 0) {
        int e = errno;
        dpt_afile_abort(f);
        return dpt_seterr(err, DPT_EFAIL, "%s: cannot rename into place: %s", f->path,
                          strerror(e));
    }
    return DPT_OK;
}

void dpt_afile_abort(dpt_afile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
}
