/* Products with a sparse left factor x (B rows, row stride lda: the first layer's
 * input block of pixel values / 255, a hidden layer's input, or, for the first layer's
 * gradient, its dZ), skipping its zeros;
 * equal bitwise to the dense FMA kernels' products when the other factor is finite
 * (see sparse_avx512.c). AVX-512 (F, BW, VL) only: callers check dpt_gemm_sparse(). */
#ifndef DPT_SPARSE_H
#define DPT_SPARSE_H

#include <stddef.h>
#include <stdint.h>

enum { DPT_SPARSE_MAXW = 128 }; /* widest x block dpt_sparse_xw takes */
#define DPT_SPARSE_WORDS(B) (((B) + 31) / 32)

/* cols[i * DPT_SPARSE_WORDS(B) + c], bit t: x[(32c + t) * lda + k0 + i] != 0, for
 * i < m. */
void dpt_sparse_colmasks(const float *x, int lda, int B, int k0, int m, uint32_t *cols);

/* g[i][j] = sum over b < B ascending of x[b][k0 + i] * d[b][j], for i < m, j < n: the
 * gradient X^T dZ of m weight rows, with cols from dpt_sparse_colmasks. */
void dpt_sparse_xtd(const float *x, int lda, int k0, int m, int B, const uint32_t *cols,
                    const float *d, int ldd, int n, float *g, int ldg);

/* The set bits of n words (the nonzero count of dpt_sparse_colmasks' bitsets), with the
 * POPCNT instruction (every AVX-512 CPU has it; the callers' files are compiled without
 * it and would call libgcc's bit loop). */
size_t dpt_sparse_bits(const uint32_t *w, size_t n);

/* The nonzero (or NaN) elements of rows x cols of x. */
size_t dpt_sparse_count(const float *x, int lda, int rows, int cols);

/* bits[i / 32] bit i % 32: p[i] != 0, for i < n (ceil(n / 32) words; the data's pixels,
 * for the plan's block densities); returns the set bits. */
size_t dpt_sparse_bytebits(const uint8_t *p, int n, uint32_t *bits);

/* b[i][j] = a[j][i] for i < cols, j < rows: with dpt_sparse_xtd on dZ (x = dZ, d = the
 * input block), the gradient of a block of W rows comes out as (X^T dZ)^T, and this
 * puts it back in W's layout. */
void dpt_sparse_transpose(const float *a, int lda, int rows, int cols, float *b, int ldb);

/* z[b][j] = sum over k < w ascending of x[b][k] * W[k][j], for b < B, j < n, w <=
 * DPT_SPARSE_MAXW: the forward product X W of a K-block or of a hidden layer's rows. */
void dpt_sparse_xw(const float *x, int lda, int B, int w, const float *W, int ldw, int n,
                   float *z, int ldz);
/* The same, continuing the sums z holds if more (z[b][j] += the terms, FMA after FMA:
 * the chain one product over the earlier inputs and these would run), so pieces of up
 * to DPT_SPARSE_MAXW inputs make a longer product, e.g. the dense kernels' KC chunks. */
void dpt_sparse_xw_more(const float *x, int lda, int B, int w, const float *W, int ldw, int n,
                        float *z, int ldz, int more);

/* Narrow outputs (n <= 32): DPT_SPARSE_R rows of the product at once, over the union
 * of their nonzeros (the same bits as dpt_sparse_xw / dpt_sparse_xtd; ~1.5 cycles per
 * row and union index for 20 outputs against ~5 per nonzero one row at a time). With
 * 17 to 20 outputs two groups go together over the union of both (8 rows: the FMA
 * unit is no longer waiting on one row's chain). */
enum { DPT_SPARSE_R = 4 };
/* dpt_sparse_xw for n <= 32, w <= DPT_SPARSE_MAXW, the rows of x taken in the order
 * rows[0 .. B) (a permutation of 0 .. B - 1: rows with alike zeros go together; the
 * results do not depend on it) in groups of 4: u[g * DPT_SPARSE_WORDS(w) + c] bit t set
 * if any of rows rows[4g .. 4g + 3] has x[row][32c + t] != 0 (set bits where all are
 * zero only cost time), for the B / 4 whole groups; the last B % 4 rows one at a time. */
void dpt_sparse_xw_narrow(const float *x, int lda, int B, int w, const uint16_t *rows,
                          const uint32_t *u, const float *W, int ldw, int n, float *z, int ldz);
/* u[q * DPT_SPARSE_WORDS(B) + c] bit t = bit q of cfold[32c + t], for q < groups <= 32:
 * the batch rows in which each group of input columns has a nonzero, from each row's
 * groups (cfold[b] bit q: row b has a nonzero in columns [4q, 4q + 4)). */
void dpt_sparse_groupcols(const uint32_t *cfold, int B, int groups, uint32_t *u);
/* dpt_sparse_xtd for n <= 32: columns k0 + 4q .. + 3 of x go together over the rows set
 * in u (from dpt_sparse_groupcols; as above, extra bits only cost time), for the m / 4
 * whole groups; the last m % 4 columns one at a time, with tail: their
 * dpt_sparse_colmasks (NULL if m % 4 == 0). */
void dpt_sparse_xtd_narrow(const float *x, int lda, int k0, int m, int B, const uint32_t *u,
                           const uint32_t *tail, const float *d, int ldd, int n, float *g,
                           int ldg);

#endif
