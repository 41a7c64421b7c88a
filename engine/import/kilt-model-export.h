/* A trained model out of Kilt: its weights as a Keras 3 .weights.h5, the whole model as a
 * Keras 3 .keras, or an ONNX model; what `kilt-cli export` and the Runs page's "Export
 * Model…" write. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

typedef enum
{
  KILT_EXPORT_WEIGHTS_H5, /* Keras 3 .weights.h5 */
  KILT_EXPORT_KERAS,      /* Keras 3 .keras: architecture and weights */
  KILT_EXPORT_ONNX,
} KiltExportFormat;

/* From a file name: .onnx, .keras, or .h5 (.weights.h5); another ending is an error that
 * names the three. */
gboolean kilt_export_format_for_path (const char *path, KiltExportFormat *out, GError **error);
/* "onnx", "keras", "weights.h5" (or "weights"); an error listing them otherwise. */
gboolean kilt_export_format_from_name (const char *name, KiltExportFormat *out, GError **error);

/* Loads the checkpoint at @path onto @model as its weights, after checking that it belongs to
 * this model (its structure hash and sizes): an error naming both otherwise. */
gboolean kilt_model_load_checkpoint (KiltModel *model, const char *path, GError **error);

/* The model a run trained: built from its Kilt JSON (@model_json, named @source in errors)
 * with the weights of its checkpoint @checkpoint. NULL with an error saying why when the run
 * kept no weights (@checkpoint NULL), the file is gone, or it belongs to another model. */
KiltModel *kilt_model_load_trained (const char *model_json, const char *source,
                                    const char *checkpoint, GError **error);

/* Writes @model (built) with @params and @state to @path in @format. Keras' layer names and
 * groups come from the Keras architecture the model was imported from (model->keras_json)
 * while the model still matches it, else from Kilt's layer types. A .keras file needs that
 * architecture (from Keras 3) and a model that still matches it: a model with a new head, a
 * Kilt preset or a Keras 2 architecture get an error saying which format to write instead.
 * *@summary (may be NULL): what was written, e.g. "ONNX opset 17, 31 operators, 10
 * initializers". Nothing is left at @path on failure. */
gboolean kilt_model_export (KiltModel *model, const float *params, const float *state,
                            KiltExportFormat format, const char *path, char **summary,
                            GError **error);

G_END_DECLS
