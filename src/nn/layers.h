/* Elementwise pieces shared by training (engine.c) and inference (evaluate.c). */
#ifndef DPT_LAYERS_H
#define DPT_LAYERS_H

#include "dptrain.h"

/* x[r] = images[idx[r]] / 255 for rows [r0, r1) (x has ds->dim floats per row);
 * returns how many of those pixels are not zero. */
size_t dpt_load_input(const dpt_dataset *ds, const uint32_t *idx, int r0, int r1, float *x);

/* The nonzero pattern of a block of input, for the narrow sparse products
 * (gemm/sparse.h, where DPT_UNION_R is DPT_SPARSE_R). */
enum { DPT_UNION_R = 4, DPT_UNION_WORDS = 4 /* blocks up to 128 pixels wide */ };
typedef struct dpt_union {
    uint16_t *rows;  /* in: room for B; out: the rows ordered by their count of nonzero
                        pixels in steps of 8, ties in batch order (rows with alike zeros
                        go together in the groups below) */
    uint32_t *u;     /* in: room for B / 4 * ceil(w / 32) words; out: those rows in fours,
                        u[g * ceil(w / 32) + c] bit t: any of rows rows[4g .. 4g + 3] has
                        a nonzero pixel 32c + t (dpt_sparse_xw_narrow's rows and u) */
    uint64_t *bits;  /* in: room for 2 B words; out: row r's nonzero pixels, bit k of
                        bits[2r + k / 64] for pixel k */
    uint32_t *cfold; /* in: room for B words; out: cfold[r] bit q: row r has a nonzero in
                        pixels 4q .. 4q + 3 (dpt_sparse_groupcols' cfold) */
    size_t urows;    /* out: the set bits of u */
    size_t ucols;    /* out: the set bits of cfold */
} dpt_union;

/* Columns [k0, k1) of images[idx[r]] / 255 for rows [0, B), into a block of B rows of
 * k1 - k0 floats: x[r * (k1 - k0) + k - k0]. Returns how many are not zero; with un
 * (k1 - k0 <= 128), also the block's nonzero pattern. */
size_t dpt_load_input_cols(const dpt_dataset *ds, const uint32_t *idx, int B, int k0,
                           int k1, float *x, dpt_union *un);

/* z[r] = (((P_0[r] + P_1[r]) + ...) + P_{nb-1}[r]) + bias, then ReLU if relu, for rows
 * [r0, r1) of width n; P_b is part + b * pstride. */
void dpt_sum_partials(float *z, const float *part, size_t pstride, int nb, int r0, int r1,
                      int n, const float *bias, int relu);

/* Dropout scales for rows [r0, r1) of a layer with `out` units: 0 with probability p,
 * else 1/(1-p); keyed by (seed, layer, step, row, unit), never by thread. */
void dpt_dropout_mask(float *mask, int r0, int r1, int out, float p, uint64_t seed,
                      int layer, uint64_t step);
/* acc[j] = sum over r of a[r][j] in double, rows in order (a bias gradient). */
void dpt_col_sums(const float *a, int rows, int n, double *acc);
/* y = x * s elementwise (y may be x). */
void dpt_ew_mul(float *y, const float *x, const float *restrict s, size_t n);
/* ReLU backward: g = a > 0 ? g * s : 0 (s may be NULL for 1), a being the layer's
 * output after ReLU (and dropout: a dropped unit has a = 0 and s = 0 alike). */
void dpt_ew_relu_grad(float *restrict g, const float *restrict a, const float *restrict s,
                      size_t n);

/* Softmax + cross-entropy for rows [r0, r1) of logits z [.][C]: probabilities into p,
 * (p - onehot) / B into dz unless NULL, per-row loss (log-sum-exp in double) into
 * loss[r] and whether the first argmax equals the label into hit[r]. The label of row
 * r is labels[idx[r]]. */
void dpt_softmax_xent(const float *z, float *p, float *dz, int r0, int r1, int C,
                      const uint8_t *labels, const uint32_t *idx, int B, double *loss,
                      unsigned char *hit);

#endif
