/* kilt-cli export: a model's weights (imported or from a checkpoint) as a Keras 3 .weights.h5,
 * a Keras 3 .keras, or an ONNX model. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-checkpoint.h"
#include "kilt-cli.h"
#include "kilt-error.h"
#include "kilt-model-export.h"
#include "kilt-model-json.h"
#include "kilt-run-store.h"

#include <stdio.h>
#include <string.h>

gboolean
kilt_cli_checkpoint_weights (KiltCliCommon *c, KiltModel *model, GError **error)
{
  return c->checkpoint == NULL || kilt_model_load_checkpoint (model, c->checkpoint, error);
}

/* The model a run trained, with the weights of its checkpoint. */
static KiltModel *
run_model (const char *db, gint64 id, GError **error)
{
  g_autoptr (KiltRunStore) store = kilt_run_store_open_read_only (db, error);
  g_autoptr (KiltRun) run = NULL;
  g_autofree char *source = g_strdup_printf ("run #%" G_GINT64_FORMAT "'s model", id);

  if (store == NULL || !(run = kilt_run_store_get (store, id, error)))
    return NULL;
  if (run->record.model_json == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " does not record its model", id);
      return NULL;
    }
  return kilt_model_load_trained (run->record.model_json, source,
                                  run->record.config.checkpoint_path, error);
}

int
kilt_cli_export (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new (
      "[RUN-ID | CHECKPOINT] --output FILE.weights.h5|FILE.keras|FILE.onnx - export a model");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL, *format = NULL, *db = NULL, *summary = NULL;
  GOptionEntry extra[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &out,
      "The Keras 3 .weights.h5, .keras (architecture and weights) or .onnx to write", "FILE" },
    { "format", 0, 0, G_OPTION_ARG_STRING, &format,
      "onnx, keras or weights.h5 (default: from the file's extension)", "FORMAT" },
    { "db", 0, 0, G_OPTION_ARG_FILENAME, &db, "The run store a RUN-ID is in", "FILE" },
    { NULL },
  };
  KiltExportFormat fmt = KILT_EXPORT_WEIGHTS_H5;
  KiltModel *model = NULL;
  KiltDataset *ds = NULL;
  const float *params, *state;
  const char *default_model;
  gint64 run_id = 0;
  int rc = 1;

  kilt_cli_common_init (&c);
  default_model = c.model;
  entries = kilt_cli_common_entries (&c);
  /* -o is --output here, as in `kilt-cli report`; export trains nothing, so --optimizer (whose
   * short name it is in the common options) keeps only its long name. */
  for (GOptionEntry *e = entries; e->long_name; e++)
    if (e->short_name == 'o')
      e->short_name = 0;
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (
      oc, "Writes a model's weights as a Keras 3 .weights.h5 that keras' Model.load_weights "
          "reads onto the same architecture, or, for a model imported from Keras 3, as a .keras "
          "file that keras.saving.load_model reads, or as an ONNX model (opset 17, NCHW, a "
          "symbolic batch, the probabilities out) that onnxruntime runs. The model is a run's "
          "(RUN-ID, from `kilt-cli runs list`, with the weights it kept), or --model with "
          "weights from a CHECKPOINT (or --checkpoint), --weights or the Keras file itself.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error) || out == NULL
      || (format ? !kilt_export_format_from_name (format, &fmt, &error)
                 : !kilt_export_format_for_path (out, &fmt, &error)))
    {
      fprintf (stderr, "kilt-cli export: %s\n",
               error ? error->message
                     : "give the file to write with --output FILE.weights.h5, FILE.keras or "
                       "FILE.onnx");
      kilt_cli_common_clear (&c);
      return 2;
    }
  if (argc > 2 || (argc == 2 && c.checkpoint)
      || (argc == 2 && !g_file_test (argv[1], G_FILE_TEST_EXISTS)
          && (run_id = kilt_cli_parse_run_id (argv[1])) && c.model != default_model))
    {
      fprintf (stderr, "kilt-cli export: give one model: a run ID, or --model with a checkpoint "
                       "(as --checkpoint or the one argument)\n");
      kilt_cli_common_clear (&c);
      return 2;
    }
  if (argc == 2 && run_id == 0)
    c.checkpoint = g_strdup (argv[1]);

  if (run_id)
    model = run_model (db, run_id, &error);
  /* --replace-head sizes the head to --data's classes, as in the training run. */
  else if (c.replace_head && c.data && !(ds = kilt_cli_load_data (&c, &error)))
    ;
  else if ((model = kilt_cli_load_model (&c, ds, &error))
           && !kilt_cli_checkpoint_weights (&c, model, &error))
    g_clear_pointer (&model, kilt_model_free);

  if (model == NULL)
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else if (!kilt_model_get_weights (model, &params, &state))
    fprintf (stderr,
             "kilt-cli export: model %s has no weights: give a run ID, a checkpoint, --weights "
             "or a Keras .h5 / .keras model\n",
             model->name);
  else if (!kilt_model_export (model, params, state, fmt, out, &summary, &error))
    fprintf (stderr, "kilt-cli export: %s\n", error->message);
  else
    {
      printf ("Wrote %s: %s; %zu parameters and %zu statistics (%s)\n", out, summary,
              model->n_params, model->n_state, model->weights_note);
      rc = 0;
    }
  kilt_model_free (model);
  kilt_dataset_free (ds);
  kilt_cli_common_clear (&c);
  return rc;
}
