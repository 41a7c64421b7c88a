/* Import of Keras model.to_json () files (Keras 2 / tf.keras, Keras 3, old bare-list files). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* Builds a Kilt model from a Keras architecture (Sequential or functional). Keras keeps the
 * loss out of to_json (), so the caller gives it. Shapes are converted from Keras'
 * channels-last to Kilt's channels-first; weights are not imported (to_json has none).
 *
 * An unsupported layer or option is an error naming the source, the layer and the option.
 * Differences that do not change what the model computes at inference (regularizers,
 * constraints, other initialisers, frozen layers, other dtypes) are accepted and described,
 * one line each, in *@notes (NULL when there are none; caller frees). @source names the data
 * in messages. The model comes back built. */
KiltModel *kilt_keras_load_data (const char *data, gssize length, const char *source,
                                 KiltLossType loss, char **notes, GError **error);
KiltModel *kilt_keras_load_file (const char *path, KiltLossType loss, char **notes, GError **error);

G_END_DECLS
