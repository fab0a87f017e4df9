/* Datasets: image/label validation, split and shuffle determinism. */
#include "helpers.h"
#include "nn/layers.h"

static void write_set(const char *dir, const char *pre, uint32_t n, uint32_t nlab,
                      uint8_t bad_label, int gz)
{
    uint32_t di[3] = { n, 4, 4 }, dl[1] = { nlab };
    uint8_t *img = calloc(n * 16, 1), *lab = calloc(nlab, 1);
    for (uint32_t i = 0; i < n * 16; i++)
        img[i] = (uint8_t)i;
    for (uint32_t i = 0; i < nlab; i++)
        lab[i] = (uint8_t)(i % 3);
    if (bad_label)
        lab[nlab - 1] = bad_label;
    char p[512];
    dpt_error err = { 0 };
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, pre, gz ? ".gz" : "");
    cr_assert_eq(dpt_idx_write(p, 3, di, img, gz, &err), DPT_OK, "%s", err.msg);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, pre, gz ? ".gz" : "");
    cr_assert_eq(dpt_idx_write(p, 1, dl, lab, gz, &err), DPT_OK, "%s", err.msg);
    free(img);
    free(lab);
}

Test(dataset, a_directory_of_plain_and_gzipped_files_loads)
{
    write_set(tmpdir(), "train", 10, 10, 0, 1);
    write_set(tmpdir(), "t10k", 6, 6, 0, 0);
    dpt_dataset tr, te;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_dataset_load_dir(tmpdir(), 0, 10, &tr, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(dpt_dataset_load_dir(tmpdir(), 1, 10, &te, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(tr.n, 10);
    cr_assert_eq(te.n, 6);
    cr_assert_eq(tr.dim, 16);
    cr_assert_eq(tr.classes, 3);
    cr_assert_eq(tr.images[17], 17);
    dpt_dataset_free(&tr);
    dpt_dataset_free(&te);
}

Test(dataset, count_mismatch_names_the_label_file)
{
    write_set(tmpdir(), "train", 10, 9, 0, 0);
    dpt_dataset ds;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_dataset_load_dir(tmpdir(), 0, 10, &ds, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "train-labels-idx1-ubyte: holds 9 labels but"), "%s", err.msg);
}

Test(dataset, label_out_of_range_is_rejected)
{
    write_set(tmpdir(), "train", 10, 10, 12, 0);
    dpt_dataset ds;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_dataset_load_dir(tmpdir(), 0, 10, &ds, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "label 12 of item 9 is outside the 10 classes"), "%s", err.msg);
}

Test(dataset, missing_directory_is_a_clear_error)
{
    dpt_dataset ds;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_dataset_load_dir("/nonexistent/dir", 0, 10, &ds, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "/nonexistent/dir: not a data directory"), "%s", err.msg);
}

Test(dataset, missing_file_names_the_file)
{
    dpt_dataset ds;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_dataset_load_dir(tmpdir(), 1, 10, &ds, &err), DPT_EINPUT);
    cr_assert(strstr(err.msg, "t10k-images-idx3-ubyte: cannot open"), "%s", err.msg);
}

Test(dataset, split_is_a_seeded_partition)
{
    uint32_t *tr, *va, *tr2, *va2, *tr3, *va3;
    size_t nt, nv, nt2, nv2, nt3, nv3;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_split(1000, 0.2, 7, &tr, &nt, &va, &nv, &err), DPT_OK);
    cr_assert_eq(nt, 800);
    cr_assert_eq(nv, 200);
    char seen[1000] = { 0 };
    for (size_t i = 0; i < nt; i++)
        seen[tr[i]]++;
    for (size_t i = 0; i < nv; i++)
        seen[va[i]]++;
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(seen[i], 1, "index %d appears %d times", i, seen[i]);
    cr_assert_eq(dpt_split(1000, 0.2, 7, &tr2, &nt2, &va2, &nv2, &err), DPT_OK);
    cr_assert_arr_eq(va, va2, nv * sizeof *va, "same seed, same split");
    cr_assert_eq(dpt_split(1000, 0.2, 8, &tr3, &nt3, &va3, &nv3, &err), DPT_OK);
    cr_assert(memcmp(va, va3, nv * sizeof *va) != 0, "another seed, another split");
    dpt_free(tr); dpt_free(va); dpt_free(tr2); dpt_free(va2); dpt_free(tr3); dpt_free(va3);
}

Test(dataset, split_rejects_fractions_outside_zero_one)
{
    uint32_t *tr, *va;
    size_t nt, nv;
    dpt_error err = { 0 };
    cr_assert_eq(dpt_split(10, 1.0, 1, &tr, &nt, &va, &nv, &err), DPT_EINPUT);
    cr_assert_eq(dpt_split(10, -0.1, 1, &tr, &nt, &va, &nv, &err), DPT_EINPUT);
    cr_assert_eq(dpt_split(10, 0.0, 1, &tr, &nt, &va, &nv, &err), DPT_OK);
    cr_assert_eq(nv, 0);
    dpt_free(tr); dpt_free(va);
}

Test(dataset, shuffle_depends_only_on_seed_and_epoch)
{
    enum { N = 500 };
    uint32_t base[N], a[N], b[N], c[N], d[N];
    for (int i = 0; i < N; i++)
        base[i] = (uint32_t)(3 * i);
    dpt_shuffle(base, a, N, 1, 0);
    dpt_shuffle(base, b, N, 1, 0);
    dpt_shuffle(base, c, N, 1, 1);
    dpt_shuffle(base, d, N, 2, 0);
    cr_assert_arr_eq(a, b, sizeof a);
    cr_assert(memcmp(a, c, sizeof a) != 0, "epochs differ");
    cr_assert(memcmp(a, d, sizeof a) != 0, "seeds differ");
    cr_assert(memcmp(a, base, sizeof a) != 0, "it shuffles");
    long sum = 0;
    for (int i = 0; i < N; i++)
        sum += a[i];
    cr_assert_eq(sum, 3L * N * (N - 1) / 2, "a permutation of the base");
}

Test(dataset, the_fetched_mnist_has_the_documented_shape)
{
    dpt_dataset tr, te;
    dpt_error err = { 0 };
    const char *dir = data_dir("mnist");
    if (dpt_dataset_load_dir(dir, 0, 10, &tr, &err) != DPT_OK)
        cr_skip_test("%s", err.msg);
    cr_assert_eq(dpt_dataset_load_dir(dir, 1, 10, &te, &err), DPT_OK, "%s", err.msg);
    cr_assert_eq(tr.n, 8000);
    cr_assert_eq(te.n, 2000);
    cr_assert_eq(tr.dim, 784);
    cr_assert_eq(tr.classes, 10);
    int per[10] = { 0 };
    for (size_t i = 0; i < te.n; i++)
        per[te.labels[i]]++;
    cr_assert_eq(per[1], 225, "stratified: digit 1 has 225 test images");
    cr_assert_eq(tr.labels[0], 0);
    cr_assert_eq(tr.labels[1], 1, "round-robin order over digits");
    dpt_dataset_free(&tr);
    dpt_dataset_free(&te);
}

/* The input loaders: every byte value converts to byte * (1/255) exactly, for every
 * column range (whole 16-pixel pieces and every tail length), and nothing beside the
 * block is written. */
Test(dataset, inputs_load_as_byte_over_255_for_every_column_range)
{
    enum { D = 300, N = 3 };
    uint8_t *img = malloc((size_t)N * D);
    for (int i = 0; i < N * D; i++)
        img[i] = (uint8_t)(i * 7 + i / 256); /* every value, in no simple order */
    dpt_dataset ds = { .n = N, .dim = D, .rows = 1, .cols = D, .classes = 1, .images = img };
    const uint32_t idx[2] = { 2, 0 };
    float *x = malloc(sizeof(float) * (2 * D + 2));
    for (int k0 = 0; k0 < 40; k0 += 13)
        for (int k1 = k0 + 1; k1 <= D; k1 += (k1 < k0 + 70 ? 1 : 37)) {
            const int w = k1 - k0;
            for (int i = 0; i < 2 * w + 2; i++)
                x[i] = -1.0f;
            dpt_load_input_cols(&ds, idx, 2, k0, k1, x + 1, NULL);
            cr_assert_eq(x[0], -1.0f);
            cr_assert_eq(x[2 * w + 1], -1.0f, "columns [%d, %d): wrote past the block", k0, k1);
            for (int r = 0; r < 2; r++)
                for (int k = k0; k < k1; k++) {
                    float want = (float)img[idx[r] * D + k] * (1.0f / 255.0f);
                    cr_assert_eq(x[1 + r * w + (k - k0)], want, "columns [%d, %d), row %d, "
                                 "column %d", k0, k1, r, k);
                }
        }
    for (int i = 0; i < 2 * D + 2; i++)
        x[i] = -1.0f;
    dpt_load_input(&ds, idx, 0, 2, x + 1);
    cr_assert_eq(x[2 * D + 1], -1.0f);
    for (int i = 0; i < 2 * D; i++)
        cr_assert_eq(x[1 + i], (float)img[idx[i / D] * D + i % D] * (1.0f / 255.0f));
    free(x);
    free(img);
}

/* The block loader's nonzero pattern (dpt_union) against its definition: each row's
 * bits, the rows in order of their nonzero count in steps of 8 (ties in batch order),
 * those rows in fours (the last rows, not a whole four, in no group), each row's groups
 * of 4 adjacent pixels, and both counts, for block widths across 32-pixel words and
 * groups of 4. */
Test(dataset, block_loader_reports_the_nonzero_pattern)
{
    enum { D = 300, N = 5, B = 11 };
    uint8_t *img = malloc((size_t)N * D);
    uint64_t v = 99;
    for (int i = 0; i < N * D; i++) {
        v = v * 6364136223846793005ull + 1442695040888963407ull;
        img[i] = (v >> 33) % 4 ? 0 : (uint8_t)(1 + (v >> 40) % 255);
    }
    dpt_dataset ds = { .n = N, .dim = D, .rows = 1, .cols = D, .classes = 1, .images = img };
    const uint32_t idx[B] = { 2, 0, 4, 1, 3, 3, 0, 2, 1, 4, 0 };
    float *x = malloc(sizeof(float) * B * 128);
    uint32_t u[B / DPT_UNION_R * DPT_UNION_WORDS], cfold[B];
    uint64_t bits[2 * B];
    uint16_t rows[B];
    for (int k0 = 0; k0 < 40; k0 += 13)
        for (int k1 = k0 + 1; k1 <= k0 + 128; k1 += (k1 < k0 + 40 ? 1 : 11)) {
            const int w = k1 - k0, nw = (w + 31) / 32;
            dpt_union un = { .rows = rows, .u = u, .bits = bits, .cfold = cfold };
            size_t nz = dpt_load_input_cols(&ds, idx, B, k0, k1, x, &un);
            size_t want_nz = 0, urows = 0, ucols = 0;
            int count[B];
            for (int r = 0; r < B; r++) {
                uint32_t fold = 0;
                uint64_t rb[2] = { 0, 0 };
                count[r] = 0;
                for (int k = 0; k < w; k++)
                    if (img[idx[r] * D + k0 + k]) {
                        want_nz++;
                        count[r]++;
                        fold |= 1u << (k / 4);
                        rb[k / 64] |= (uint64_t)1 << (k % 64);
                    }
                cr_assert_eq(cfold[r], fold, "[%d, %d) row %d: groups", k0, k1, r);
                cr_assert(bits[2 * r] == rb[0] && bits[2 * r + 1] == rb[1],
                          "[%d, %d) row %d: bits", k0, k1, r);
                ucols += (size_t)__builtin_popcount(fold);
            }
            for (int i = 0, seen = 0; i < B; i++) { /* a permutation, by count, stable */
                cr_assert_lt(rows[i], B);
                cr_assert_eq(seen >> rows[i] & 1, 0, "[%d, %d): row %d twice", k0, k1, rows[i]);
                seen |= 1 << rows[i];
                const int a = i > 0 ? count[rows[i - 1]] / 8 : 0, c = count[rows[i]] / 8;
                if (i > 0)
                    cr_assert(a < c || (a == c && rows[i - 1] < rows[i]),
                              "[%d, %d): rows %d, %d out of order", k0, k1, rows[i - 1], rows[i]);
            }
            for (int g = 0; g < B / DPT_UNION_R; g++)
                for (int c = 0; c < nw; c++) {
                    uint32_t word = 0;
                    for (int t = 0; t < 32 && 32 * c + t < w; t++)
                        for (int r = 0; r < DPT_UNION_R; r++)
                            if (img[idx[rows[DPT_UNION_R * g + r]] * D + k0 + 32 * c + t])
                                word |= 1u << t;
                    cr_assert_eq(u[g * nw + c], word, "[%d, %d) group %d word %d", k0, k1, g, c);
                    urows += (size_t)__builtin_popcount(word);
                }
            cr_assert_eq(nz, want_nz);
            cr_assert_eq(un.urows, urows, "[%d, %d): union count", k0, k1);
            cr_assert_eq(un.ucols, ucols, "[%d, %d): group count", k0, k1);
        }
    free(x);
    free(img);
}
