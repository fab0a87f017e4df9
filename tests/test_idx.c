/* IDX reader: round trips (plain and gzip) and every malformed case, each rejected
 * with DPT_EINPUT and a message naming the file and the field. */
#include "helpers.h"

#include <zlib.h>

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + 7);
    return p;
}

static void roundtrip(int gz)
{
    uint32_t dims[3] = { 5, 28, 27 };
    size_t n = 5 * 28 * 27;
    uint8_t *img = pattern(n);
    const char *path = tmppath(gz ? "img.gz" : "img");
    dpt_error err = { 0 };
    cr_assert_eq(dpt_idx_write(path, 3, dims, img, gz, &err), DPT_OK, "%s", err.msg);
    dpt_idx idx;
    cr_assert_eq(dpt_idx_read(path, 3, &idx, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(idx.ndim, 3);
    cr_assert_eq(idx.dims[0], 5);
    cr_assert_eq(idx.dims[1], 28);
    cr_assert_eq(idx.dims[2], 27);
    cr_assert_eq(idx.nbytes, n);
    cr_assert_eq((uintptr_t)idx.data % 64, 0, "image block must be 64-byte aligned");
    cr_assert_arr_eq(idx.data, img, n);
    dpt_idx_free(&idx);
    free(img);
}

Test(idx, plain_file_round_trips) { roundtrip(0); }
Test(idx, gzip_file_round_trips_detected_by_content) { roundtrip(1); }

Test(idx, gzip_detection_ignores_the_name)
{
    uint32_t dims[1] = { 4 };
    uint8_t lab[4] = { 1, 2, 3, 4 };
    dpt_error err = { 0 };
    const char *p = tmppath("labels.gz"); /* plain content under a .gz name */
    cr_assert_eq(dpt_idx_write(p, 1, dims, lab, 0, &err), DPT_OK);
    dpt_idx idx;
    cr_assert_eq(dpt_idx_read(p, 1, &idx, &err), DPT_OK, "%s", err.msg);
    cr_assert_arr_eq(idx.data, lab, 4);
    dpt_idx_free(&idx);
}

/* Writes raw bytes to a file and expects the reader to reject it with a message
 * containing `needle` and the file name. */
static void expect_bad(const void *bytes, size_t n, int ndim, int gz, const char *needle)
{
    const char *path = tmppath("bad");
    if (gz) {
        gzFile g = gzopen(path, "wb");
        cr_assert_not_null(g);
        if (n)
            cr_assert_eq(gzwrite(g, bytes, (unsigned)n), (int)n);
        gzclose(g);
    } else {
        write_bytes(path, bytes, n);
    }
    dpt_idx idx;
    dpt_error err = { 0 };
    int rc = dpt_idx_read(path, ndim, &idx, &err);
    cr_assert_eq(rc, DPT_EINPUT, "expected rejection for '%s', got %d (%s)", needle, rc,
                 err.msg);
    cr_assert_null(idx.data);
    cr_assert(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_assert(strstr(err.msg, path), "message '%s' does not name the file", err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "message must be one line");
}

static const uint8_t good_hdr[16] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2 };

Test(idx, empty_file_is_rejected) { expect_bad("", 0, 3, 0, "empty"); }
Test(idx, truncated_magic_is_rejected) { expect_bad(good_hdr, 3, 3, 0, "truncated header"); }
Test(idx, truncated_dimensions_are_rejected)
{
    expect_bad(good_hdr, 10, 3, 0, "truncated header");
}
Test(idx, truncated_body_is_rejected)
{
    uint8_t b[16 + 5];
    memcpy(b, good_hdr, 16);
    memset(b + 16, 1, 5);
    expect_bad(b, sizeof b, 3, 0, "truncated");
}
Test(idx, trailing_bytes_are_rejected)
{
    uint8_t b[16 + 9];
    memcpy(b, good_hdr, 16);
    memset(b + 16, 1, 9);
    expect_bad(b, sizeof b, 3, 0, "unexpected bytes");
}
Test(idx, wrong_magic_is_rejected)
{
    uint8_t b[16];
    memcpy(b, good_hdr, 16);
    b[0] = 0x50;
    expect_bad(b, 16, 3, 0, "bad magic");
}
Test(idx, non_byte_type_is_rejected)
{
    uint8_t b[16];
    memcpy(b, good_hdr, 16);
    b[2] = 0x0D; /* float */
    expect_bad(b, 16, 3, 0, "element type 0x0d");
}
Test(idx, wrong_dimension_count_is_rejected)
{
    expect_bad(good_hdr, 16, 1, 0, "has 3 dimensions, a label file has 1");
}
Test(idx, zero_dimension_is_rejected)
{
    uint8_t b[16];
    memcpy(b, good_hdr, 16);
    b[11] = 0;
    expect_bad(b, 16, 3, 0, "dimension 1 (rows) is 0");
}
Test(idx, huge_count_is_rejected_before_allocating)
{
    uint8_t b[16];
    memcpy(b, good_hdr, 16);
    b[4] = 0xFF; /* 4 billion items */
    expect_bad(b, 16, 3, 0, "above the maximum");
}
Test(idx, dimensions_whose_product_overflows_are_rejected)
{
    /* every dimension within its own limit, the product far beyond any memory */
    uint8_t b[16] = { 0, 0, 8, 3, 0x10, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0 };
    expect_bad(b, 16, 3, 0, "promises");
}
Test(idx, header_larger_than_plain_file_is_rejected_before_allocating)
{
    uint8_t b[16] = { 0, 0, 8, 3, 0, 1, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28 }; /* 51 MB */
    expect_bad(b, 16, 3, 0, "truncated");
}
Test(idx, gzip_with_non_idx_content_is_rejected)
{
    expect_bad("hello, world, this is text", 26, 3, 1, "gzip content is not an IDX");
}
Test(idx, gzip_truncated_body_is_rejected)
{
    uint8_t b[16 + 3];
    memcpy(b, good_hdr, 16);
    memset(b + 16, 9, 3);
    expect_bad(b, sizeof b, 3, 1, "decompressed content ends at byte 19");
}
Test(idx, gzip_huge_header_with_little_data_is_rejected)
{
    /* a legal-looking header promising 1 GiB with 4 bytes behind it: must fail on the
     * missing data, not try to allocate the promise up front */
    uint8_t b[16 + 4] = { 0, 0, 8, 3, 0, 0x10, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0x20 };
    expect_bad(b, sizeof b, 3, 1, "truncated");
}
Test(idx, corrupt_gzip_stream_is_rejected)
{
    uint32_t dims[1] = { 4000 };
    uint8_t *lab = pattern(4000);
    const char *p = tmppath("bad");
    dpt_error err = { 0 };
    cr_assert_eq(dpt_idx_write(p, 1, dims, lab, 1, &err), DPT_OK);
    free(lab);
    FILE *f = fopen(p, "r+b");
    fseek(f, 40, SEEK_SET);
    fputs("garbagegarbagegarbage", f);
    fclose(f);
    dpt_idx idx;
    cr_assert_eq(dpt_idx_read(p, 1, &idx, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, p), "%s", err.msg);
}
Test(idx, directory_instead_of_file_is_rejected)
{
    dpt_idx idx;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_idx_read(tmpdir(), 3, &idx, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "is a directory"), "%s", err.msg);
}
Test(idx, missing_file_is_rejected)
{
    dpt_idx idx;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_idx_read(tmppath("nope"), 3, &idx, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "cannot open"), "%s", err.msg);
}
