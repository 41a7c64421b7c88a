/* A trained model out of Kilt as Keras 3 weights, a Keras 3 .keras file or ONNX. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-model-export.h"

#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-keras-file.h"
#include "kilt-keras-weights.h"
#include "kilt-keras.h"
#include "kilt-model-json.h"
#include "kilt-onnx-export.h"

#include <glib/gstdio.h>
#include <string.h>

gboolean
kilt_export_format_for_path (const char *path, KiltExportFormat *out, GError **error)
{
  g_autofree char *lower = g_ascii_strdown (path, -1);

  if (g_str_has_suffix (lower, ".onnx"))
    *out = KILT_EXPORT_ONNX;
  else if (g_str_has_suffix (lower, ".keras"))
    *out = KILT_EXPORT_KERAS;
  else if (g_str_has_suffix (lower, ".h5"))
    *out = KILT_EXPORT_WEIGHTS_H5;
  else
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: end the name in .keras (a Keras 3 model), .weights.h5 (Keras 3 weights) "
                   "or .onnx to choose the format",
                   path);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_export_format_from_name (const char *name, KiltExportFormat *out, GError **error)
{
  if (g_str_equal (name, "onnx"))
    *out = KILT_EXPORT_ONNX;
  else if (g_str_equal (name, "keras"))
    *out = KILT_EXPORT_KERAS;
  else if (g_str_equal (name, "weights.h5") || g_str_equal (name, "weights"))
    *out = KILT_EXPORT_WEIGHTS_H5;
  else
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown export format \"%s\": give onnx, keras or weights.h5", name);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_model_load_checkpoint (KiltModel *model, const char *path, GError **error)
{
  g_autoptr (KiltCheckpoint) ck = NULL;
  g_autofree char *note = NULL, *base = NULL;

  if (!(ck = kilt_checkpoint_load (path, error)))
    return FALSE;
  if (ck->model_hash != kilt_model_hash (model) || ck->n_params != model->n_params
      || ck->n_state != model->n_state)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "checkpoint %s belongs to a different model than %s (it holds %" G_GUINT64_FORMAT
                   " parameters, %s has %zu)",
                   path, model->name, ck->n_params, model->name, model->n_params);
      return FALSE;
    }
  base = g_path_get_basename (path);
  note = g_strdup_printf ("weights from checkpoint %s (after epoch %u)", base, ck->epochs_done);
  kilt_model_set_weights (model, g_steal_pointer (&ck->params), g_steal_pointer (&ck->state), note);
  return TRUE;
}

KiltModel *
kilt_model_load_trained (const char *model_json, const char *source, const char *checkpoint,
                         GError **error)
{
  KiltModel *model;

  if (checkpoint == NULL || !g_file_test (checkpoint, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   checkpoint ? "%s has no weights: its checkpoint %s is gone (the run ended "
                                "before its first epoch did, or the file was deleted)"
                              : "%s has no weights: its run kept none (train with --checkpoint "
                                "FILE, or in the window)",
                   source, checkpoint);
      return NULL;
    }
  model = kilt_model_load_json_data (model_json, -1, source, error);
  if (model && !kilt_model_load_checkpoint (model, checkpoint, error))
    g_clear_pointer (&model, kilt_model_free);
  return model;
}

/* model->keras_json while the model is still the network it describes (same layers, shapes
 * and parameter counts), else NULL with *@why saying how it differs. */
static const char *
matching_keras (KiltModel *model, const char **why)
{
  g_autoptr (KiltModel) orig = NULL;

  *why = "it was not imported from Keras";
  if (model->keras_json == NULL)
    return NULL;
  orig = kilt_keras_load_data (model->keras_json, -1, "the model's Keras architecture", model->loss,
                               NULL, NULL);
  *why = "it has changed since it came from Keras (a new head or another input size)";
  if (orig == NULL || kilt_model_hash (orig) != kilt_model_hash (model))
    return NULL;
  *why = NULL;
  return model->keras_json;
}

static gboolean
is_keras3 (const char *json)
{
  /* Keras 3's to_json names each layer's module; Keras 2's does not. */
  return strstr (json, "\"module\"") != NULL;
}

gboolean
kilt_model_export (KiltModel *model, const float *params, const float *state,
                   KiltExportFormat format, const char *path, char **summary, GError **error)
{
  const char *why = NULL;
  const char *keras = matching_keras (model, &why);
  KiltOnnxExportInfo onnx = { 0 };
  guint n = 0;

  g_return_val_if_fail (model->built && params != NULL, FALSE);
  if (summary)
    *summary = NULL;
  switch (format)
    {
      case KILT_EXPORT_ONNX:
        if (!kilt_onnx_export (model, params, state, path, &onnx, error))
          return FALSE;
        if (summary)
          *summary = g_strdup_printf ("ONNX opset %d, %u operators, %u initializers",
                                      KILT_ONNX_OPSET, onnx.n_nodes, onnx.n_initializers);
        return TRUE;
      case KILT_EXPORT_KERAS:
        if (keras == NULL || !is_keras3 (keras))
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                         "%s: a .keras file holds the model's Keras 3 architecture, and model "
                         "%s has none: %s; write .onnx or .weights.h5 instead",
                         path, model->name,
                         keras ? "it came from a Keras 2 architecture, which Keras 3 cannot load"
                               : why);
            return FALSE;
          }
        if (!kilt_keras_file_write_archive (model, keras, params, state, path, error))
          return FALSE;
        if (summary)
          *summary = g_strdup ("the Keras 3 architecture and its weights");
        return TRUE;
      case KILT_EXPORT_WEIGHTS_H5:
        if (!kilt_keras_weights_write (model, keras, params, state, path, &n, error))
          return FALSE;
        if (summary)
          *summary = g_strdup_printf ("%u tensors of Keras 3 weights", n);
        return TRUE;
    }
  g_return_val_if_reached (FALSE);
}
