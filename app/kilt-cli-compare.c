/* kilt-cli compare: one model, data, seed and epochs trained on each device in turn. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-compare.h"
#include "kilt-error.h"
#include "kilt-model-json.h"
#include "kilt-report.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct
{
  KiltCliCommon *opts;
  gboolean tty;
  guint epochs;
  guint steps_per_epoch;
  GMutex lock;
  KiltRunStatus *status; /* per device */
  char **errors;         /* per device */
} CompareView;

static KiltCompare *running;

static void
on_sigint (int sig)
{
  static int count;

  if (running && count++ == 0)
    {
      kilt_compare_stop (running);
      return;
    }
  signal (SIGINT, SIG_DFL);
  raise (SIGINT);
}

/* On the trainers' threads, one call at a time. */
static void
on_event (const KiltCompareEvent *ce, gpointer user_data)
{
  CompareView *v = user_data;
  const KiltEvent *ev = ce->event;

  if (ev == NULL)
    return;
  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        printf ("[%u/%u] %s (%s): kernels %s in %.2f s\n", ce->index + 1, ce->n_devices,
                ev->device_name, ce->device_id, ev->compile_cached ? "loaded" : "compiled",
                ev->compile_seconds);
        v->steps_per_epoch = ev->steps_per_epoch;
        break;
      case KILT_EVENT_STEP:
        if (v->tty)
          fprintf (stderr, "\r\033[K[%u/%u] epoch %u/%u step %u/%u  %.0f samples/s  loss %.4f",
                   ce->index + 1, ce->n_devices, ev->epoch, v->epochs, ev->step, v->steps_per_epoch,
                   ev->samples_per_second, ev->loss);
        break;
      case KILT_EVENT_EPOCH:
        if (v->tty)
          fprintf (stderr, "\r\033[K");
        printf ("[%u/%u] epoch %u/%u: %.2f s, loss %.4f, accuracy %.4f", ce->index + 1,
                ce->n_devices, ev->epoch, v->epochs, ev->epoch_seconds, ev->loss, ev->accuracy);
        if (isfinite (ev->val_accuracy))
          printf (", val_accuracy %.4f", ev->val_accuracy);
        printf ("\n");
        break;
      case KILT_EVENT_LOG:
        if (ev->level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
          fprintf (stderr, "%skilt-cli compare: warning: %s\n", v->tty ? "\r\033[K" : "",
                   ev->message);
        break;
      case KILT_EVENT_FINISHED:
        if (v->tty)
          fprintf (stderr, "\r\033[K");
        g_mutex_lock (&v->lock);
        v->status[ce->index] = ev->status;
        if (ev->error)
          v->errors[ce->index] = g_strdup (ev->error->message);
        g_mutex_unlock (&v->lock);
        if (ev->error)
          fprintf (stderr, "[%u/%u] %s failed: %s\n", ce->index + 1, ce->n_devices, ce->device_id,
                   ev->error->message);
        break;
      default:
        break;
    }
  fflush (stdout);
}

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
  CompareView view = { 0 };
  KiltCompare *compare;
  KiltRunStatus status;
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
      || !kilt_cli_data_spec (&c, &spec, &error) || !(ds = kilt_cli_load_data_spec (&spec, &error))
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

  view.opts = &c;
  view.tty = isatty (fileno (stderr));
  view.epochs = cfg.epochs;
  view.status = g_new0 (KiltRunStatus, n);
  view.errors = g_new0 (char *, n + 1);
  g_mutex_init (&view.lock);
  for (guint i = 0; i < n; i++)
    view.status[i] = KILT_RUN_STOPPED; /* until it says otherwise: never started */

  compare = kilt_compare_new ((const char *const *)ids, model_json, &spec, &cfg, NULL, tag,
                              on_event, &view);
  kilt_compare_set_first_dataset (compare, ds);
  running = compare;
  signal (SIGINT, on_sigint);
  kilt_compare_start (compare);
  status = kilt_compare_join (compare);
  running = NULL;
  signal (SIGINT, SIG_DFL);
  run_ids = kilt_compare_dup_run_ids (compare);
  kilt_compare_free (compare);

  print_table (run_ids);
  printf ("\n%u of %u runs recorded, tagged %s; a full report: kilt-cli report", run_ids->len, n,
          tag);
  for (guint i = 0; i < run_ids->len; i++)
    printf (" %" G_GINT64_FORMAT, g_array_index (run_ids, gint64, i));
  printf (" -o report.html\n");
  rc = status == KILT_RUN_STOPPED ? 130 : 0;
  for (guint i = 0; i < n; i++)
    if (view.status[i] == KILT_RUN_FAILED)
      rc = rc ? rc : 1;
  g_free (view.status);
  g_strfreev (view.errors);
  g_mutex_clear (&view.lock);
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
