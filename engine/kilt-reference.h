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
  /* Per node, NULL or one value per element of its input: where not NaN, the input at which
   * an Activation's backward takes its derivative instead of its own (kilt_reference_check_step
   * sets it where the device took the other side of a kink). */
  double **follow;
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
 * returns the relative differences of the loss and of the parameter gradients. Where a ReLU's
 * input fell on the other side of a kink on the device, within the rounding that layer shows
 * elsewhere, the reference takes the device's side (*@followed, may be NULL, counts those
 * elements); inputs with a flip it cannot follow are drawn again, a few times at most;
 * *@draws (may be NULL) says how many draws it took. */
/* The fewest values a check lets a training BatchNormalization take its statistics over. */
#define KILT_REFERENCE_BN_VALUES 16
/* At most this many samples for it. */
#define KILT_REFERENCE_BN_MAX_BATCH 16

/* The batch a check of @model should run at, at least @batch: enough samples that every
 * BatchNormalization normalises each channel over KILT_REFERENCE_BN_VALUES values (batch x
 * its height x width), within KILT_REFERENCE_BN_MAX_BATCH. *@min_values (may be NULL) gets the
 * fewest values any of them then has (0: the model has none). */
guint kilt_reference_check_batch (KiltModel *model, guint batch, guint *min_values);

gboolean kilt_reference_check_step (KiltContext *ctx, KiltModel *model, guint batch, guint32 seed,
                                    double *loss_error, double *grad_error, guint *draws,
                                    guint *followed, GError **error);

G_END_DECLS
