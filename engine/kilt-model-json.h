/* Kilt's own JSON model format (load, save) and the model presets shipped with Kilt. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

#define KILT_MODEL_FORMAT_NAME    "kilt-model"
#define KILT_MODEL_FORMAT_VERSION 1

/* The Keras spelling of a layer type ("Conv2D"), known even when the layer class is not
 * linked in; NULL for an out-of-range type. */
const char *kilt_layer_type_name (KiltLayerType type);
gboolean kilt_layer_type_from_name (const char *name, KiltLayerType *out);

/* Parses a model from @data (@length -1: NUL-terminated). @source names it in errors (a file
 * name). The model comes back built; errors name the source, the layer and the field. */
KiltModel *kilt_model_load_json_data (const char *data, gssize length, const char *source,
                                      GError **error);
KiltModel *kilt_model_load_json_file (const char *path, GError **error);

/* The model as a format-1 document (one layer a line). Caller frees. */
char *kilt_model_to_json (KiltModel *model);
gboolean kilt_model_save_json_file (KiltModel *model, const char *path, GError **error);

/* The folder holding the preset files: $KILT_DATA_DIR/presets, the installed
 * <datadir>/kilt/presets, or the source tree's resources/presets; NULL when none exists. */
char *kilt_model_preset_dir (void);
/* Sorted preset names ("cifar10_cnn", ...), NULL-terminated. Free with g_strfreev. */
char **kilt_model_preset_list (void);
/* Loads and builds a preset. @input NULL keeps the preset's own input shape; otherwise the
 * input takes @input (CNN presets adapt their spatial sizes, the MLP its input size).
 * @n_classes 0 keeps the preset's output size; otherwise the last Dense layer takes it. An
 * input the preset cannot take is an error naming the layer that refuses it. */
KiltModel *kilt_model_load_preset (const char *name, const KiltShape *input, guint n_classes,
                                   GError **error);

G_END_DECLS
