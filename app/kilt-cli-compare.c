/* kilt-cli compare: one model, data, seed and epochs trained on each device in turn. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-compare.h"
#include "kilt-error.h"
#include "kilt-model-json.h"
#include "kilt-report.h"

#include <stdio.h>
#include <string.h>

/* Device ids as given: an id, an index or a unique part of a name, resolved to stable ids. */
static char **
resolve_devices (const char *list_text, GError **error)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_auto (GStrv) parts = g_strsplit (list_text, ",", -1);
  g_autoptr (GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; parts[i]; i++)
    {
      const KiltDeviceInfo *d;
      g_strstrip (parts[i]);
      if (*parts[i] == '\0')
        continue;
      d = kilt_device_list_find (list, parts[i]);
      if (d == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "\"%s\" matches no device (or several); kilt-cli devices lists them",
                       parts[i]);
          return NULL;
        }
      g_ptr_array_add (ids, g_strdup (d->id));
    }
  if (ids->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--devices wants a comma-separated list of devices, e.g. --devices 0,1");
      return NULL;
    }
  g_ptr_array_add (ids, NULL);
  return (char **)g_ptr_array_free (g_steal_pointer (&ids), FALSE);
}

/* The summary table of the report (its first), with speed-ups against the first device. */
static void
print_table (GArray *ids)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (NULL, &error);
  g_autoptr (GPtrArray) runs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_run_free);
  KiltReportOptions o = { 0 };
  g_autoptr (GPtrArray) tables = NULL;
  g_autoptr (GString) s = g_string_new (NULL);

  if (store == NULL)
    {
      fprintf (stderr, "kilt-cli compare: no table: %s\n", error->message);
      return;
    }
  for (guint i = 0; i < ids->len; i++)
    {
      KiltRun *run = kilt_run_store_get (store, g_array_index (ids, gint64, i), &error);
      if (run == NULL)
        {
          fprintf (stderr, "kilt-cli compare: %s\n", error->message);
          g_clear_error (&error);
          continue;
        }
      g_ptr_array_add (runs, run);
    }
  if (runs->len == 0)
    return;
  o.runs = runs;
  o.baseline = runs->pdata[0];
  tables = kilt_report_build_tables (&o);
  kilt_report_table_to_markdown (tables->pdata[0], s);
  printf ("\n%s", s->str);
}

int
kilt_cli_compare (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc
      = g_option_context_new ("- train one model on several devices in turn and compare them");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *devices_text = NULL;
  g_autofree char *tag = NULL;
  g_auto (GStrv) ids = NULL;
  GOptionEntry extra[] = {
    { "devices", 0, 0, G_OPTION_ARG_STRING, &devices_text,
      "Devices to compare, comma-separated (ids, indices or unique parts of names); the first "
      "is the baseline",
      "DEV,DEV,..." },
    { "tag", 0, 0, G_OPTION_ARG_STRING, &tag,
      "Tag the runs with this (default: compare-<date>-<time>)", "TAG" },
    { NULL },
  };
  KiltTrainConfig cfg = { 0 };
  KiltDataSpec spec = { 0 };
  KiltDataset *ds = NULL;
  KiltModel *model = NULL;
  g_autofree char *model_json = NULL;
  KiltCliSequence view = { 0 };
  KiltCompare *compare;
  g_autoptr (GArray) run_ids = NULL;
  guint n;
  int rc;

  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_set_summary (
      oc, "Trains the same model on the same data with the same seed, epochs and settings on "
          "each device, one after another, records every run with a shared tag, and prints the "
          "time per epoch and speed-up of each against the first.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error))
    goto fail;
  if (devices_text == NULL)
    {
      g_set_error (&error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--devices ID,ID,... is required");
      goto fail;
    }
  if (c.checkpoint || c.resume)
    {
      g_set_error (&error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--checkpoint and --resume do not apply to a comparison");
      goto fail;
    }
  if (!(ids = resolve_devices (devices_text, &error)) || !kilt_cli_train_config (&c, &cfg, &error)
      || !kilt_cli_data_spec (&c, &spec, &error)
      || !(ds = kilt_cli_load_data_spec (&spec, TRUE, &error))
      || !(model = kilt_cli_load_model (&c, ds, &error)))
    goto fail;
  model_json = kilt_model_to_json (model);
  n = g_strv_length (ids);
  if (tag == NULL)
    tag = kilt_compare_make_tag ();
  printf ("Comparing %u devices: %s on %s (%zu training samples), %u epochs, batch %u, seed %u; "
          "tag %s\n",
          n, model->name, ds->name, ds->train.n, cfg.epochs, cfg.batch, cfg.seed, tag);
  kilt_model_free (model);

  compare = kilt_compare_new ((const char *const *)ids, model_json, &spec, &cfg, NULL, tag,
                              kilt_cli_sequence_event, &view);
  kilt_compare_set_first_dataset (compare, ds);
  rc = kilt_cli_run_sequence (compare, &view, n, cfg.epochs, &run_ids);

  print_table (run_ids);
  printf ("\n%u of %u runs recorded, tagged %s; a full report: kilt-cli report", run_ids->len, n,
          tag);
  for (guint i = 0; i < run_ids->len; i++)
    printf (" %" G_GINT64_FORMAT, g_array_index (run_ids, gint64, i));
  printf (" -o report.html\n");
  kilt_data_spec_clear (&spec);
  kilt_train_config_clear (&cfg);
  kilt_cli_common_clear (&c);
  return rc;

fail:
  fprintf (stderr, "kilt-cli compare: %s\n", error->message);
  rc = error->domain == G_OPTION_ERROR || error->code == KILT_ENGINE_ERROR_INVALID ? 2 : 1;
  kilt_dataset_free (ds);
  kilt_data_spec_clear (&spec);
  kilt_train_config_clear (&cfg);
  kilt_cli_common_clear (&c);
  return rc;
}
