/* Internal contract between the gemm driver (gemm.c) and its micro-kernels.
 *
 * A micro-kernel computes one MR x NR tile of C:
 *
 *     acc[i][j] = sum over k in [0, kc) of  A(i, k) * B(k, j)    (FMA, k ascending,
 *                                                                 acc starting at 0)
 *     C[i][j]   = alpha * acc[i][j] + beta * C[i][j]             (beta == 0: C is not
 *                                                                 read, so NaN is
 *                                                                 overwritten)
 *     then, if this is the last k block: + bias[j], max(., 0) for relu,
 *     and 0 where mask[i][j] <= 0
 *
 * for i < m and j < n <= NR only (m <= MR, unless the table marks the kernel as taking
 * strips: then rows come in MR-row strips whose A panels are `sa` floats apart); nothing outside the m x n corner is read from
 * C, bias or mask, or written. A(i, k) = a[i*rsa + k*csa]: the caller's matrix (rows
 * i >= m are never read) or a packed panel (rsa = 1, csa = MR). B(k, j) = b[k*rsb + j]
 * with j contiguous: the caller's matrix (columns j >= n are never read) or a packed
 * panel (rsb = NR, zero-padded).
 *
 * Row invariance: each row of acc is accumulated on its own in k order with the same
 * instructions whatever the tile's m, n, position or packing, so the value of a row of
 * C does not depend on M or on where the row falls: the training engine's bitwise
 * thread-count invariance rests on this.
 */
#ifndef DPT_GEMM_H
#define DPT_GEMM_H

#include <stddef.h>

typedef struct dpt_tile {
    int kc, m, n;
    const float *a;
    ptrdiff_t rsa, csa;
    ptrdiff_t sa;       /* floats between MR-row strips of A (kernels taking strips) */
    const float *b;
    ptrdiff_t rsb;
    ptrdiff_t csb;      /* column stride of B, used by the tall kernel only */
    float *c;
    ptrdiff_t ldc;
    float alpha, beta;
    const float *bias;  /* at column j of the tile, or NULL */
    int relu;
    const float *mask;  /* at (i, j) of the tile, or NULL */
    ptrdiff_t ldm;
} dpt_tile;

typedef void (*dpt_ukernel)(const dpt_tile *t);

/* One row of the block-size table: a micro-kernel and the blocking around it. */
typedef struct dpt_kernel_info {
    const char *name;   /* "ref", "avx2", "avx512" (DPTRAIN_ISA values) */
    int mr, nr;         /* micro-tile */
    int kc, mc, nc;     /* cache blocks: kc also fixes the rounding order, never vary it */
    int small_m;        /* M at or below which B (not transposed) is used unpacked */
    dpt_ukernel kernel;
    int strips;         /* kernel takes m > MR as consecutive strips */
    dpt_ukernel tall;   /* optional kernel vectorised along M (MR_TALL rows), or NULL */
    int tall_n;         /* N at or below which the tall kernel is used */
    dpt_ukernel narrow; /* optional MR_N16 x 16 kernel for N <= 16, B in place, or NULL */
    /* optional packing of a transposed B into nr-wide panels, or NULL (generic C) */
    void (*pack_bt)(const float *b, ptrdiff_t ldb, int kc, int nc, float *bp);
    /* optional table row used instead for 16 < N <= 24 (same kc: same rounding) */
    const struct dpt_kernel_info *n24;
} dpt_kernel_info;

void dpt_ukernel_ref(const dpt_tile *t);
void dpt_ukernel_avx2(const dpt_tile *t);
void dpt_ukernel_avx512(const dpt_tile *t);
void dpt_ukernel_avx512_tall(const dpt_tile *t);
void dpt_ukernel_avx512_n16(const dpt_tile *t);
void dpt_ukernel_avx512_n24(const dpt_tile *t);
void dpt_pack_bt_avx512(const float *b, ptrdiff_t ldb, int kc, int nc, float *bp);

enum { MR_TALL = 16, NR_TALL = 16, MR_N16 = 16 };

#endif
