/* IDX reader and writer (unsigned-byte images and labels), plain or gzip.
 *
 * Every size in a header is checked against a maximum, and against the bytes that are
 * really there, before it sizes an allocation: a plain file's length is known from
 * fstat; a gzip stream's is not, so its buffer grows only as decompressed bytes arrive
 * (never more than twice what was actually read, capped at the header's size). */
#include "dptrain.h"
#include "util/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* A byte source over a plain descriptor or a gzip stream. */
typedef struct src {
    int fd;
    gzFile gz;      /* NULL for a plain file */
    size_t pos;     /* bytes consumed so far (decompressed for gzip) */
    const char *path;
} src;

/* Reads up to n bytes; returns the count read (short only at end of data) or -1 with
 * err set. */
static long long src_read(src *s, void *buf, size_t n, dpt_error *err)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        long long r;
        if (s->gz) {
            r = gzread(s->gz, (char *)buf + got, (unsigned)want);
            if (r < 0) {
                int zerr;
                const char *m = gzerror(s->gz, &zerr);
                dpt_seterr(err, DPT_EINPUT, "%s: corrupt gzip data after %zu decompressed "
                           "bytes: %s", s->path, s->pos + got, m ? m : "unknown zlib error");
                return -1;
            }
        } else {
            r = read(s->fd, (char *)buf + got, want);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                dpt_seterr(err, DPT_EFAIL, "%s: read failed: %s", s->path, strerror(errno));
                return -1;
            }
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    s->pos += got;
    return (long long)got;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int dpt_idx_read(const char *path, int ndim, dpt_idx *out, dpt_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = DPT_EINPUT;
    src s = { .fd = -1, .gz = NULL, .pos = 0, .path = path };
    uint8_t *data = NULL;
    const char *what = ndim == 1 ? "label file" : "image file";

    s.fd = open(path, O_RDONLY);
    if (s.fd < 0)
        return dpt_seterr(err, DPT_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(s.fd, &st) != 0) {
        dpt_seterr(err, DPT_EFAIL, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        dpt_seterr(err, DPT_EINPUT, "%s: is a directory, not an IDX %s", path, what);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        dpt_seterr(err, DPT_EINPUT, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size == 0) {
        dpt_seterr(err, DPT_EINPUT, "%s: file is empty (expected an IDX %s)", path, what);
        goto fail;
    }

    /* Detect gzip by its magic bytes, not by the name. */
    uint8_t magic2[2] = { 0, 0 };
    ssize_t m = pread(s.fd, magic2, 2, 0);
    int is_gz = m == 2 && magic2[0] == 0x1f && magic2[1] == 0x8b;
    const char *content = is_gz ? "decompressed content" : "file";
    if (is_gz) {
        int fd2 = dup(s.fd);
        s.gz = fd2 >= 0 ? gzdopen(fd2, "rb") : NULL;
        if (!s.gz) {
            if (fd2 >= 0)
                close(fd2);
            dpt_seterr(err, DPT_EFAIL, "%s: cannot open gzip stream", path);
            goto fail;
        }
    }

    uint8_t hdr[4 + 4 * 3];
    long long r = src_read(&s, hdr, 4, err);
    if (r < 0)
        goto fail;
    if (r < 4) {
        dpt_seterr(err, DPT_EINPUT, "%s: truncated header: %s ends at byte %lld, an IDX "
                   "header needs 4 bytes before the dimensions", path, content, r);
        goto fail;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        dpt_seterr(err, DPT_EINPUT, "%s: bad magic 0x%02x%02x%02x%02x: %s is not an IDX "
                   "file (expected 0x0000 then type and dimensions)", path, hdr[0], hdr[1],
                   hdr[2], hdr[3], is_gz ? "gzip content" : "file");
        goto fail;
    }
    if (hdr[2] != 0x08) {
        dpt_seterr(err, DPT_EINPUT, "%s: element type 0x%02x is not unsigned byte (0x08)",
                   path, hdr[2]);
        goto fail;
    }
    if (hdr[3] != ndim) {
        dpt_seterr(err, DPT_EINPUT, "%s: has %d dimensions, a %s has %d", path, hdr[3],
                   what, ndim);
        goto fail;
    }
    r = src_read(&s, hdr + 4, 4 * (size_t)ndim, err);
    if (r < 0)
        goto fail;
    if (r < 4 * ndim) {
        dpt_seterr(err, DPT_EINPUT, "%s: truncated header: %s ends at byte %lld inside the "
                   "dimensions (header is %d bytes)", path, content, 4 + r, 4 + 4 * ndim);
        goto fail;
    }
    out->ndim = ndim;
    uint64_t total = 1;
    for (int d = 0; d < ndim; d++) {
        uint32_t v = be32(hdr + 4 + 4 * d);
        uint32_t max = d == 0 ? DPT_IDX_MAX_COUNT : DPT_IDX_MAX_SIDE;
        if (v == 0) {
            dpt_seterr(err, DPT_EINPUT, "%s: dimension %d (%s) is 0", path, d,
                       d == 0 ? "item count" : d == 1 ? "rows" : "columns");
            goto fail;
        }
        if (v > max) {
            dpt_seterr(err, DPT_EINPUT, "%s: dimension %d (%s) is %u, above the maximum %u",
                       path, d, d == 0 ? "item count" : d == 1 ? "rows" : "columns", v, max);
            goto fail;
        }
        out->dims[d] = v;
        total *= v; /* cannot overflow: 2^28 * 2^12 * 2^12 < 2^64 */
    }
    if (total > DPT_IDX_MAX_BYTES) {
        dpt_seterr(err, DPT_EINPUT, "%s: header promises %llu bytes of data, above the "
                   "maximum %zu", path, (unsigned long long)total, DPT_IDX_MAX_BYTES);
        goto fail;
    }
    size_t hlen = 4 + 4 * (size_t)ndim;
    if (!is_gz && (uint64_t)st.st_size != hlen + total) {
        if ((uint64_t)st.st_size < hlen + total)
            dpt_seterr(err, DPT_EINPUT, "%s: truncated: the header promises %llu bytes of "
                       "data but the file ends at byte %lld (expected %llu)", path,
                       (unsigned long long)total, (long long)st.st_size,
                       (unsigned long long)(hlen + total));
        else
            dpt_seterr(err, DPT_EINPUT, "%s: %llu unexpected bytes after the data (file is "
                       "%lld bytes, header says %llu)", path,
                       (unsigned long long)(st.st_size - (hlen + total)),
                       (long long)st.st_size, (unsigned long long)(hlen + total));
        goto fail;
    }

    /* Plain files: one allocation, its size proven by fstat. Gzip: grow as data comes. */
    size_t cap = is_gz ? (total < (1u << 20) ? total : (1u << 20)) : total;
    size_t have = 0;
    data = dpt_alloc(cap, 1);
    if (!data) {
        dpt_seterr(err, DPT_EFAIL, "%s: out of memory for %zu bytes", path, cap);
        goto fail;
    }
    while (have < total) {
        if (have == cap) {
            size_t ncap = cap * 2 < total ? cap * 2 : total;
            uint8_t *nd = dpt_alloc(ncap, 1);
            if (!nd) {
                dpt_seterr(err, DPT_EFAIL, "%s: out of memory for %zu bytes", path, ncap);
                goto fail;
            }
            memcpy(nd, data, have);
            dpt_free(data);
            data = nd;
            cap = ncap;
        }
        r = src_read(&s, data + have, cap - have, err);
        if (r < 0)
            goto fail;
        if (r == 0) {
            dpt_seterr(err, DPT_EINPUT, "%s: truncated: %s ends at byte %zu but the header "
                       "promises %llu bytes (%llu of data)", path, content, hlen + have,
                       (unsigned long long)(hlen + total), (unsigned long long)total);
            goto fail;
        }
        have += (size_t)r;
    }
    if (is_gz) {
        uint8_t extra;
        r = src_read(&s, &extra, 1, err);
        if (r < 0)
            goto fail;
        if (r > 0) {
            dpt_seterr(err, DPT_EINPUT, "%s: unexpected bytes after the %llu bytes of data "
                       "in the decompressed content", path, (unsigned long long)total);
            goto fail;
        }
        gzclose(s.gz);
    }
    close(s.fd);
    out->nbytes = total;
    out->data = data;
    return DPT_OK;

fail:
    rc = err ? err->code : DPT_EINPUT;
    dpt_free(data);
    if (s.gz)
        gzclose(s.gz);
    if (s.fd >= 0)
        close(s.fd);
    memset(out, 0, sizeof *out);
    return rc;
}

void dpt_idx_free(dpt_idx *idx)
{
    if (!idx)
        return;
    dpt_free(idx->data);
    memset(idx, 0, sizeof *idx);
}

int dpt_idx_write(const char *path, int ndim, const uint32_t *dims, const uint8_t *data,
                  int gz, dpt_error *err)
{
    if (ndim < 1 || ndim > 3)
        return dpt_seterr(err, DPT_EINPUT, "%s: cannot write %d dimensions", path, ndim);
    uint8_t hdr[16] = { 0, 0, 0x08, (uint8_t)ndim };
    size_t total = 1;
    for (int d = 0; d < ndim; d++) {
        hdr[4 + 4 * d] = (uint8_t)(dims[d] >> 24);
        hdr[5 + 4 * d] = (uint8_t)(dims[d] >> 16);
        hdr[6 + 4 * d] = (uint8_t)(dims[d] >> 8);
        hdr[7 + 4 * d] = (uint8_t)dims[d];
        total *= dims[d];
    }
    size_t hlen = 4 + 4 * (size_t)ndim;
    dpt_afile f;
    int rc = dpt_afile_open(&f, path, err);
    if (rc)
        return rc;
    if (!gz) {
        if ((rc = dpt_afile_write(&f, hdr, hlen, err)) ||
            (rc = dpt_afile_write(&f, data, total, err)))
            return rc;
        return dpt_afile_commit(&f, err);
    }
    /* gzip into memory, then write through the atomic file. */
    uLong bound = compressBound((uLong)(hlen + total)) + 64;
    uint8_t *buf = malloc(bound);
    if (!buf) {
        dpt_afile_abort(&f);
        return dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(buf);
        dpt_afile_abort(&f);
        return dpt_seterr(err, DPT_EFAIL, "%s: zlib init failed", path);
    }
    zs.next_out = buf;
    zs.avail_out = (uInt)bound;
    zs.next_in = hdr;
    zs.avail_in = (uInt)hlen;
    deflate(&zs, Z_NO_FLUSH);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)total;
    int zr = deflate(&zs, Z_FINISH);
    size_t outlen = zs.total_out;
    deflateEnd(&zs);
    if (zr != Z_STREAM_END) {
        free(buf);
        dpt_afile_abort(&f);
        return dpt_seterr(err, DPT_EFAIL, "%s: gzip compression failed", path);
    }
    rc = dpt_afile_write(&f, buf, outlen, err);
    free(buf);
    return rc ? rc : dpt_afile_commit(&f, err);
}
