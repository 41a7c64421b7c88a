/* kilt-cli export: a model's weights (imported or from a checkpoint) as a Keras 3 .weights.h5,
 * a Keras 3 .keras, or an ONNX model. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-checkpoint.h"
#include "kilt-cli.h"
#include "kilt-error.h"
#include "kilt-keras-file.h"
#include "kilt-keras-weights.h"
#include "kilt-model-json.h"
#include "kilt-onnx-export.h"

#include <stdio.h>
#include <string.h>

gboolean
kilt_cli_checkpoint_weights (KiltCliCommon *c, KiltModel *model, GError **error)
{
  g_autoptr (KiltCheckpoint) ck = NULL;
  g_autofree char *note = NULL, *base = NULL;

  if (c->checkpoint == NULL)
    return TRUE;
  if (!(ck = kilt_checkpoint_load (c->checkpoint, error)))
    return FALSE;
  if (ck->model_hash != kilt_model_hash (model) || ck->n_params != model->n_params
      || ck->n_state != model->n_state)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "checkpoint %s belongs to a different model than %s (it holds %" G_GUINT64_FORMAT
                   " parameters, %s has %zu)",
                   c->checkpoint, model->name, ck->n_params, model->name, model->n_params);
      return FALSE;
    }
  base = g_path_get_basename (c->checkpoint);
  note = g_strdup_printf ("weights from checkpoint %s (after epoch %u)", base, ck->epochs_done);
  kilt_model_set_weights (model, g_steal_pointer (&ck->params), g_steal_pointer (&ck->state), note);
  return TRUE;
}

/* The Keras text of --model when it is a Keras file (its layer classes and options name the
 * groups of the file written, and a .keras archive takes it as its config.json); NULL for
 * presets and Kilt's format, whose layer types give the same group names. */
static char *
keras_text (const char *model)
{
  char *text = NULL;

  if (g_file_test (model, G_FILE_TEST_IS_REGULAR) && kilt_keras_file_sniff (model))
    return kilt_keras_file_config (model, NULL);
  if (!g_file_test (model, G_FILE_TEST_IS_REGULAR)
      || !g_file_get_contents (model, &text, NULL, NULL))
    return NULL;
  if (strstr (text, KILT_MODEL_FORMAT_NAME))
    g_clear_pointer (&text, g_free);
  return text;
}

typedef enum
{
  EXPORT_WEIGHTS, /* Keras 3 .weights.h5 */
  EXPORT_KERAS,   /* Keras 3 .keras */
  EXPORT_ONNX,
} ExportFormat;

/* --format, or else the file's extension: .onnx, .keras, anything else .weights.h5. */
static gboolean
export_format (const char *format, const char *out, ExportFormat *fmt, GError **error)
{
  if (format == NULL)
    {
      *fmt = g_str_has_suffix (out, ".onnx")    ? EXPORT_ONNX
             : g_str_has_suffix (out, ".keras") ? EXPORT_KERAS
                                                : EXPORT_WEIGHTS;
      return TRUE;
    }
  if (g_str_equal (format, "onnx"))
    *fmt = EXPORT_ONNX;
  else if (g_str_equal (format, "keras"))
    *fmt = EXPORT_KERAS;
  else if (g_str_equal (format, "weights.h5") || g_str_equal (format, "weights"))
    *fmt = EXPORT_WEIGHTS;
  else
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown --format \"%s\": give onnx, keras or weights.h5", format);
      return FALSE;
    }
  return TRUE;
}

int
kilt_cli_export (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc
      = g_option_context_new ("--output FILE.weights.h5|FILE.keras|FILE.onnx - export a model");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL, *json = NULL, *format = NULL;
  GOptionEntry extra[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &out,
      "The Keras 3 .weights.h5, .keras (architecture and weights) or .onnx to write", "FILE" },
    { "format", 0, 0, G_OPTION_ARG_STRING, &format,
      "onnx, keras or weights.h5 (default: from the file's extension)", "FORMAT" },
    { NULL },
  };
  KiltOnnxExportInfo onnx = { 0 };
  ExportFormat fmt = EXPORT_WEIGHTS;
  KiltModel *model = NULL;
  KiltDataset *ds = NULL;
  const float *params, *state;
  guint n = 0;
  int rc = 1;

  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  /* -o is --output here, as in `kilt-cli report`; export trains nothing, so --optimizer (whose
   * short name it is in the common options) keeps only its long name. */
  for (GOptionEntry *e = entries; e->long_name; e++)
    if (e->short_name == 'o')
      e->short_name = 0;
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (oc, "Writes --model's weights (from --checkpoint, --weights or "
                                    "the Keras file itself) as a Keras 3 .weights.h5 that "
                                    "keras' Model.load_weights reads onto the same architecture, "
                                    "or, for a Keras 3 model, as a .keras file that "
                                    "keras.saving.load_model reads, or as an ONNX model "
                                    "(opset 17, NCHW, a symbolic batch, the probabilities "
                                    "out) that onnxruntime runs.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error) || out == NULL
      || !export_format (format, out, &fmt, &error))
    {
      fprintf (stderr, "kilt-cli export: %s\n",
               error ? error->message
                     : "give the file to write with --output FILE.weights.h5, FILE.keras or "
                       "FILE.onnx");
      kilt_cli_common_clear (&c);
      return 2;
    }
  json = keras_text (c.model);
  /* --replace-head sizes the head to --data's classes, as in the training run. */
  if (c.replace_head && c.data && !(ds = kilt_cli_load_data (&c, &error)))
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else if (!(model = kilt_cli_load_model (&c, ds, &error))
           || !kilt_cli_checkpoint_weights (&c, model, &error))
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else if (fmt == EXPORT_KERAS && c.replace_head)
    /* The .keras archive takes the Keras file's architecture, which has the old head. */
    fprintf (stderr,
             "kilt-cli export: with --replace-head, model %s has a head its Keras file does not "
             "describe: write .onnx, which takes the model as Kilt has it\n",
             model->name);
  else if (!kilt_model_get_weights (model, &params, &state))
    fprintf (stderr,
             "kilt-cli export: model %s has no weights: give --checkpoint, --weights or a Keras "
             ".h5 / .keras model\n",
             model->name);
  else if (fmt == EXPORT_ONNX && !kilt_onnx_export (model, params, state, out, &onnx, &error))
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else if (fmt == EXPORT_KERAS
           && !kilt_keras_file_write_archive (model, json, params, state, out, &error))
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else if (fmt == EXPORT_WEIGHTS
           && !kilt_keras_weights_write (model, json, params, state, out, &n, &error))
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else if (fmt == EXPORT_ONNX)
    {
      printf ("Wrote %s: ONNX opset %d, %u operators, %u initializers, %zu parameters and %zu "
              "statistics (%s)\n",
              out, KILT_ONNX_OPSET, onnx.n_nodes, onnx.n_initializers, model->n_params,
              model->n_state, model->weights_note);
      rc = 0;
    }
  else if (fmt == EXPORT_KERAS)
    {
      printf ("Wrote %s: the Keras architecture and %zu parameters and %zu statistics (%s)\n", out,
              model->n_params, model->n_state, model->weights_note);
      rc = 0;
    }
  else
    {
      printf ("Wrote %s: %u tensors, %zu parameters and %zu statistics (%s)\n", out, n,
              model->n_params, model->n_state, model->weights_note);
      rc = 0;
    }
  kilt_model_free (model);
  kilt_dataset_free (ds);
  kilt_cli_common_clear (&c);
  return rc;
}
