/* A minimal PNG writer (8-bit gray or RGB, no interlace) over zlib, written atomically. */
#include "cli.h"
#include "util/atomic_file.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static int chunk(dpt_afile *f, const char *type, const unsigned char *data, uint32_t n,
                 dpt_error *err)
{
    unsigned char hdr[8], crc[4];
    be32(hdr, n);
    memcpy(hdr + 4, type, 4);
    uLong c = crc32(0, hdr + 4, 4);
    if (n) /* crc32(c, NULL, 0) would return the initial value, not c */
        c = crc32(c, data, n);
    be32(crc, (uint32_t)c);
    int rc = dpt_afile_write(f, hdr, 8, err);
    if (!rc && n)
        rc = dpt_afile_write(f, data, n, err);
    return rc ? rc : dpt_afile_write(f, crc, 4, err);
}

int png_write(const char *path, int w, int h, int channels, const unsigned char *px,
              dpt_error *err)
{
    size_t stride = (size_t)w * channels, raw_n = (stride + 1) * h;
    unsigned char *raw = malloc(raw_n);
    uLongf zn = compressBound((uLong)raw_n);
    unsigned char *z = malloc(zn);
    if (!raw || !z) {
        free(raw), free(z);
        return dpt_seterr(err, DPT_EFAIL, "%s: out of memory", path);
    }
    for (int y = 0; y < h; y++) {
        raw[y * (stride + 1)] = 0; /* filter: none */
        memcpy(raw + y * (stride + 1) + 1, px + y * stride, stride);
    }
    int zr = compress2(z, &zn, raw, (uLong)raw_n, 9);
    free(raw);
    if (zr != Z_OK) {
        free(z);
        return dpt_seterr(err, DPT_EFAIL, "%s: compression failed", path);
    }
    dpt_afile f;
    int rc = dpt_afile_open(&f, path, err);
    if (rc) {
        free(z);
        return rc;
    }
    static const unsigned char sig[8] = { 137, 80, 78, 71, 13, 10, 26, 10 };
    unsigned char ihdr[13];
    be32(ihdr, (uint32_t)w);
    be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;
    ihdr[9] = channels == 3 ? 2 : 0;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    rc = dpt_afile_write(&f, sig, 8, err);
    if (!rc)
        rc = chunk(&f, "IHDR", ihdr, 13, err);
    if (!rc)
        rc = chunk(&f, "IDAT", z, (uint32_t)zn, err);
    if (!rc)
        rc = chunk(&f, "IEND", NULL, 0, err);
    free(z);
    return rc ? rc : dpt_afile_commit(&f, err);
}
