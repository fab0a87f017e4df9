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

/* The nonzero bytes of p[0, n) (the data's pixels, for the plan's block densities). */
size_t dpt_sparse_count_bytes(const uint8_t *p, size_t n);

/* b[i][j] = a[j][i] for i < cols, j < rows: with dpt_sparse_xtd on dZ (x = dZ, d = the
 * input block), the gradient of a block of W rows comes out as (X^T dZ)^T, and this
 * puts it back in W's layout. */
void dpt_sparse_transpose(const float *a, int lda, int rows, int cols, float *b, int ldb);

/* z[b][j] = sum over k < w ascending of x[b][k] * W[k][j], for b < B, j < n, w <=
 * DPT_SPARSE_MAXW: the forward product X W of a K-block or of a hidden layer's rows. */
void dpt_sparse_xw(const float *x, int lda, int B, int w, const float *W, int ldw, int n,
                   float *z, int ldz);

#endif
