/* Datasets: an image file and its label file validated together; the seeded
 * train/validation split and the per-epoch shuffle. */
#include "dptrain.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int dpt_dataset_load(const char *images_path, const char *labels_path, int max_classes,
                     dpt_dataset *ds, dpt_error *err)
{
    memset(ds, 0, sizeof *ds);
    dpt_idx im, lb;
    int rc = dpt_idx_read(images_path, 3, &im, err);
    if (rc)
        return rc;
    rc = dpt_idx_read(labels_path, 1, &lb, err);
    if (rc) {
        dpt_idx_free(&im);
        return rc;
    }
    if (im.dims[0] != lb.dims[0]) {
        rc = dpt_seterr(err, DPT_EINPUT, "%s: holds %u labels but %s holds %u images",
                        labels_path, lb.dims[0], images_path, im.dims[0]);
        goto fail;
    }
    int limit = max_classes > 0 ? max_classes : 256;
    int top = 0;
    for (size_t i = 0; i < lb.nbytes; i++) {
        if (lb.data[i] >= limit) {
            rc = dpt_seterr(err, DPT_EINPUT, "%s: label %u of item %zu is outside the %d "
                            "classes [0, %d) of the network", labels_path, lb.data[i], i,
                            limit, limit);
            goto fail;
        }
        if (lb.data[i] > top)
            top = lb.data[i];
    }
    ds->n = im.dims[0];
    ds->rows = im.dims[1];
    ds->cols = im.dims[2];
    ds->dim = (size_t)im.dims[1] * im.dims[2];
    ds->classes = top + 1;
    ds->images = im.data;
    ds->labels = lb.data;
    return DPT_OK;
fail:
    dpt_idx_free(&im);
    dpt_idx_free(&lb);
    return rc;
}

/* DIR/name if it exists, else DIR/name.gz; the plain name when neither does, so the
 * error that follows names the file the user would look for. */
static void find_file(char *out, size_t n, const char *dir, const char *name)
{
    struct stat st;
    snprintf(out, n, "%s/%s", dir, name);
    if (stat(out, &st) == 0)
        return;
    snprintf(out, n, "%s/%s.gz", dir, name);
    if (stat(out, &st) == 0)
        return;
    snprintf(out, n, "%s/%s", dir, name);
}

int dpt_dataset_load_dir(const char *dir, int which, int max_classes, dpt_dataset *ds,
                         dpt_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return dpt_seterr(err, DPT_EINPUT, "%s: not a data directory (run scripts/fetch-data "
                          "or pass --data DIR)", dir);
    char im[PATH_MAX], lb[PATH_MAX];
    const char *pre = which == 0 ? "train" : "t10k";
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", pre);
    find_file(im, sizeof im, dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", pre);
    find_file(lb, sizeof lb, dir, name);
    return dpt_dataset_load(im, lb, max_classes, ds, err);
}

void dpt_dataset_free(dpt_dataset *ds)
{
    if (!ds)
        return;
    dpt_free(ds->images);
    dpt_free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* Uniform integer in [0, bound) from 64 random bits (Lemire's multiply-shift). */
static inline size_t below(uint64_t r, size_t bound)
{
    return (size_t)(((unsigned __int128)r * bound) >> 64);
}

static void permute(uint32_t *a, size_t n, uint64_t seed, uint64_t stream, uint64_t key)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = below(dpt_rand64(seed, stream, (key << 32) ^ i), i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int dpt_split(size_t n, double val_fraction, uint64_t seed, uint32_t **train_idx,
              size_t *ntrain, uint32_t **val_idx, size_t *nval, dpt_error *err)
{
    *train_idx = *val_idx = NULL;
    *ntrain = *nval = 0;
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return dpt_seterr(err, DPT_EINPUT, "--val-split: %g is not in [0, 1)", val_fraction);
    if (n > UINT32_MAX)
        return dpt_seterr(err, DPT_EINPUT, "dataset: %zu samples is too many", n);
    size_t nv = (size_t)(val_fraction * (double)n + 0.5);
    if (nv >= n)
        return dpt_seterr(err, DPT_EINPUT, "--val-split: %g leaves no training samples of %zu",
                          val_fraction, n);
    uint32_t *all = dpt_alloc(n, sizeof *all);
    uint32_t *tr = dpt_alloc(n - nv, sizeof *tr);
    uint32_t *va = dpt_alloc(nv ? nv : 1, sizeof *va);
    if (!all || !tr || !va) {
        dpt_free(all);
        dpt_free(tr);
        dpt_free(va);
        return dpt_seterr(err, DPT_EFAIL, "split: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        all[i] = (uint32_t)i;
    permute(all, n, seed, DPT_STREAM_SPLIT, 0);
    memcpy(va, all, nv * sizeof *va);
    memcpy(tr, all + nv, (n - nv) * sizeof *tr);
    dpt_free(all);
    qsort(va, nv, sizeof *va, cmp_u32);
    qsort(tr, n - nv, sizeof *tr, cmp_u32);
    *train_idx = tr;
    *ntrain = n - nv;
    *val_idx = va;
    *nval = nv;
    return DPT_OK;
}

void dpt_shuffle(const uint32_t *base, uint32_t *out, size_t n, uint64_t seed,
                 uint64_t epoch)
{
    memmove(out, base, n * sizeof *out);
    permute(out, n, seed, DPT_STREAM_SHUFFLE, epoch + 1);
}
