/* A whole model in plain C double precision, and a device step checked against it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

typedef struct
{
  KiltModel *model; /* borrowed, built */
  guint batch;
  double **out;   /* per node: batch x out_shape */
  double **dout;  /* per node: gradient w.r.t. out */
  double *params; /* model->n_params */
  double *state;  /* model->n_state */
  double *grads;  /* model->n_params */
} KiltReference;

KiltReference *kilt_reference_new (KiltModel *model, guint batch);
void kilt_reference_free (KiltReference *ref);
/* Forward from @input (batch x input shape); returns the mean loss over the batch against
 * @targets (as kilt_loss_enqueue takes them) and fills every node's out. */
double kilt_reference_forward (KiltReference *ref, const double *input, const double *targets,
                               gboolean training, guint32 seed, guint64 step);
/* Backward after a forward: fills ref->grads (gradient of the mean loss). */
void kilt_reference_backward (KiltReference *ref, const double *input, const double *targets,
                              guint32 seed, guint64 step);

/* Runs one training forward + loss + backward of @model on @ctx with the parameters
 * initialised from @seed and random inputs and labels, does the same in the reference, and
 * returns the relative differences of the loss and of the parameter gradients. Inputs where a
 * ReLU's input fell on the other side of 0 on the device (within rounding of it) are drawn
 * again, a few times at most; *@draws (may be NULL) says how many draws it took. */
gboolean kilt_reference_check_step (KiltContext *ctx, KiltModel *model, guint batch, guint32 seed,
                                    double *loss_error, double *grad_error, guint *draws,
                                    GError **error);

G_END_DECLS
