/* Keras model files with their weights: Keras 2 model.save () .h5 and Keras 3 .keras archives. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* A .keras archive's config.json and model.weights.h5 may be at most this large (unpacked). */
#define KILT_KERAS_MAX_ARCHIVE_ENTRIES 64

typedef enum
{
  KILT_KERAS_FILE_NONE,    /* neither: JSON or something else */
  KILT_KERAS_FILE_HDF5,    /* an HDF5 file (.h5, .weights.h5) */
  KILT_KERAS_FILE_ARCHIVE, /* a zip archive (.keras) */
} KiltKerasFileKind;

/* What @path holds, from its first bytes (not its name). */
KiltKerasFileKind kilt_keras_file_sniff (const char *path);

/* Loads architecture and weights from a Keras 2 model.save () .h5 (its model_config
 * attribute and model_weights) or a Keras 3 .keras archive (config.json and
 * model.weights.h5). The model comes back built, its weights kept as its starting weights
 * (kilt_model_get_weights) with a note of where they came from appended to *@notes. A
 * weights-only file, a damaged file or archive, and weights that do not fit the architecture
 * are errors naming @path. */
KiltModel *kilt_keras_file_load (const char *path, KiltLossType loss, char **notes, GError **error);

/* Reads the weights in @path (any Keras weights file: .h5 either way, .weights.h5, or the
 * weights inside a .keras archive) onto @model, a model built from a JSON architecture
 * (@keras_json: its Keras text, or NULL for Kilt's own format). */
gboolean kilt_keras_file_load_weights (KiltModel *model, const char *keras_json, const char *path,
                                       GError **error);

/* The Keras architecture a .keras archive (config.json) or a Keras 2 model.save () .h5
 * (model_config) holds, as text; NULL with an error naming @path otherwise. Caller frees. */
char *kilt_keras_file_config (const char *path, GError **error);

/* Writes a Keras 3 .keras archive at @path: @keras_json (a Keras 3 architecture, as
 * model.to_json () or a .keras file's config.json give it) as config.json, @params and
 * @state as model.weights.h5 (kilt_keras_weights_write) and a metadata.json. Written beside
 * @path and renamed over it. */
gboolean kilt_keras_file_write_archive (KiltModel *model, const char *keras_json,
                                        const float *params, const float *state, const char *path,
                                        GError **error);

G_END_DECLS
