/* Elementwise pieces shared by training (engine.c) and inference (evaluate.c). */
#ifndef DPT_LAYERS_H
#define DPT_LAYERS_H

#include "dptrain.h"

/* x[r] = images[idx[r]] / 255 for rows [r0, r1) (x has ds->dim floats per row). */
void dpt_load_input(const dpt_dataset *ds, const uint32_t *idx, int r0, int r1, float *x);

/* Softmax + cross-entropy for rows [r0, r1) of logits z [.][C]: probabilities into p,
 * (p - onehot) / B into dz unless NULL, per-row loss (log-sum-exp in double) into
 * loss[r] and whether the first argmax equals the label into hit[r]. The label of row
 * r is labels[idx[r]]. */
void dpt_softmax_xent(const float *z, float *p, float *dz, int r0, int r1, int C,
                      const uint8_t *labels, const uint32_t *idx, int B, double *loss,
                      unsigned char *hit);

#endif
