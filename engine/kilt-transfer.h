/* Transfer learning on a built model: freezing a first part, and a new head for other classes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* Freezes every node up to and including the one named @name (later nodes keep their flag).
 * An unknown name is an error that lists the nearest names the model has. */
gboolean kilt_transfer_freeze_until (KiltModel *model, const char *name, GError **error);
/* Makes every node trainable (undoes Keras' trainable = false). */
void kilt_transfer_unfreeze_all (KiltModel *model);

/* Whether kilt_transfer_replace_head () can give @model a head (its last node with parameters
 * is a Dense or a 1x1-output Conv2D followed only by Activation, Flatten, Reshape or Dropout);
 * FALSE with a reason otherwise. */
gboolean kilt_transfer_can_replace_head (KiltModel *model, GError **error);

/* Replaces the built @model's head (its last Dense, or 1x1 Conv2D, and the Activation, Flatten,
 * Reshape and Dropout nodes after it) by a new, trainable Dense "head" of @n_classes units with
 * a softmax, Glorot-uniform from @seed with zero biases; a Flatten before it when its input is
 * not flat. The model is built again; its starting weights (an imported file's) keep every
 * other layer's values. The loss must be softmax cross-entropy. */
gboolean kilt_transfer_replace_head (KiltModel *model, guint n_classes, guint32 seed,
                                     GError **error);

G_END_DECLS
