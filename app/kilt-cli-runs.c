/* `kilt-cli runs` and `kilt-cli report`: the run store and timing reports from the shell. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli-runs.h"
#include "kilt-cli.h"
#include "kilt-device.h"
#include "kilt-report.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <json-glib/json-glib.h>

gint64
kilt_cli_parse_run_id (const char *text)
{
  char *end = NULL;
  gint64 v;

  if (text == NULL)
    return 0;
  if (*text == '#')
    text++;
  v = g_ascii_strtoll (text, &end, 10);
  return end == text || *end != '\0' || v <= 0 ? 0 : v;
}

static const char runs_usage[]
    = "usage: kilt-cli runs [list | show ID | rename ID NAME | tag ID TAG | untag ID TAG |"
      " delete ID | resume ID [--device DEV]] [--json] [--db FILE]";
static const char report_usage[]
    = "usage: kilt-cli report ID... [--baseline ID] --format csv|json|md|html|pdf|png|svg"
      " -o FILE [--chart loss|accuracy|epoch-time|speedup|layers|accuracy-time|learning-rate]"
      " [--width PX --height PX] [--x-time | --x-steps] [--db FILE]";

static gboolean
parse_id (const char *text, gint64 *out)
{
  gint64 v = kilt_cli_parse_run_id (text);

  if (v == 0)
    return FALSE;
  *out = v;
  return TRUE;
}

static int
fail (GError *error)
{
  fprintf (stderr, "kilt-cli: %s\n", error->message);
  g_error_free (error);
  return 1;
}

static int
usage (const char *text, const char *problem)
{
  if (problem)
    fprintf (stderr, "kilt-cli: %s\n", problem);
  fprintf (stderr, "%s\n", text);
  return 2;
}

static char *
cell_seconds (double s)
{
  if (isnan (s))
    return g_strdup ("-");
  if (s >= 3600)
    return g_strdup_printf ("%d:%02d:%02d", (int)(s / 3600), (int)fmod (s / 60, 60),
                            (int)fmod (s, 60));
  if (s >= 60)
    return g_strdup_printf ("%d:%02d", (int)(s / 60), (int)fmod (s, 60));
  return g_strdup_printf ("%.1fs", s);
}

static char *
date_label (gint64 us)
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local (us / G_USEC_PER_SEC);
  return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M") : g_strdup ("-");
}

static void
print_list (GPtrArray *runs)
{
  if (runs->len == 0)
    {
      printf ("No runs yet: `kilt-cli train` records one.\n");
      return;
    }
  printf ("%-5s %-16s %-24s %-11s %-14s %-24s %6s %8s %9s %9s  %s\n", "ID", "Date", "Name",
          "Status", "Model", "Device", "Epochs", "Best val", "Per epoch", "Total", "Tags");
  for (guint i = 0; i < runs->len; i++)
    {
      KiltRun *run = g_ptr_array_index (runs, i);
      g_autofree char *date = date_label (run->started_at);
      g_autofree char *per = cell_seconds (kilt_run_mean_epoch_seconds (run));
      g_autofree char *total = cell_seconds (kilt_run_train_seconds (run));
      g_autofree char *tags = NULL;
      double best = kilt_run_best_val_accuracy (run);
      char acc[32];

      g_ptr_array_add (run->tags, NULL);
      tags = g_strjoinv (",", (char **)run->tags->pdata);
      g_ptr_array_set_size (run->tags, run->tags->len - 1);
      if (isnan (best))
        g_strlcpy (acc, "-", sizeof acc);
      else
        g_snprintf (acc, sizeof acc, "%.2f%%", best * 100);
      printf ("%-5" G_GINT64_FORMAT " %-16s %-24.24s %-11s %-14.14s %-24.24s %6u %8s %9s %9s  %s\n",
              run->id, date, run->record.name, kilt_run_store_status_name (run->status),
              run->record.model_name ? run->record.model_name : "-",
              run->record.device_name ? run->record.device_name : "-", run->epochs->len, acc, per,
              total, tags);
    }
}

/* The run store reads text as valid UTF-8 already; this keeps the JSON valid whatever a
 * KiltRun holds. */
static void
json_text (JsonBuilder *b, const char *name, const char *v)
{
  g_autofree char *valid = NULL;

  if (!g_utf8_validate (v, -1, NULL))
    v = valid = g_utf8_make_valid (v, -1);
  if (name)
    json_builder_set_member_name (b, name);
  json_builder_add_string_value (b, v);
}

static void
json_num (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  if (isnan (v))
    json_builder_add_null_value (b);
  else
    json_builder_add_double_value (b, v);
}

static char *
list_json (GPtrArray *runs)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_array (b);
  for (guint i = 0; i < runs->len; i++)
    {
      KiltRun *run = g_ptr_array_index (runs, i);
      g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc (run->started_at / G_USEC_PER_SEC);
      g_autofree char *iso = g_date_time_format_iso8601 (dt);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "id");
      json_builder_add_int_value (b, run->id);
      json_text (b, "name", run->record.name);
      json_builder_set_member_name (b, "status");
      json_builder_add_string_value (b, kilt_run_store_status_name (run->status));
      json_builder_set_member_name (b, "started_at");
      json_builder_add_string_value (b, iso);
      json_text (b, "model", run->record.model_name ? run->record.model_name : "");
      json_text (b, "data", run->record.data_description ? run->record.data_description : "");
      json_text (b, "device", run->record.device_name ? run->record.device_name : "");
      json_builder_set_member_name (b, "epochs");
      json_builder_add_int_value (b, run->epochs->len);
      json_num (b, "best_val_accuracy", kilt_run_best_val_accuracy (run));
      json_num (b, "mean_epoch_seconds", kilt_run_mean_epoch_seconds (run));
      json_num (b, "train_seconds", kilt_run_train_seconds (run));
      json_builder_set_member_name (b, "tags");
      json_builder_begin_array (b);
      for (guint k = 0; k < run->tags->len; k++)
        json_text (b, NULL, run->tags->pdata[k]);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

/* runs resume: the stored run goes on from its checkpoint as a new run (as the window's
 * Resume), on @device_text or the device it ran on. */
static int
resume (KiltRunStore *store, gint64 id, const char *device_text)
{
  GError *error = NULL;
  g_autoptr (KiltRun) run = kilt_run_store_get (store, id, &error);
  g_autoptr (KiltDeviceList) list = NULL;
  const KiltDeviceInfo *dev = NULL;
  KiltCliSequence view = { 0 };
  g_autoptr (GArray) run_ids = NULL;
  KiltTrainConfig cfg;
  KiltDataSpec spec;
  KiltCompare *compare;
  const char *ids[2] = { NULL, NULL };
  g_autofree char *note = NULL;
  guint done = 0;
  int rc;

  /* From the epochs the checkpoint holds, which must be the run's own. */
  if (run == NULL || !kilt_run_resume_point (run, &done, &note, &error))
    return fail (error);
  if (note)
    fprintf (stderr, "kilt-cli: warning: %s\n", note);
  if (run->record.model_json == NULL || run->record.data_spec == NULL)
    return usage (runs_usage, "the run was recorded without its model or data source (by an "
                              "older Kilt), so it cannot go on");
  list = kilt_device_list_new ();
  dev = device_text ? kilt_device_list_find (list, device_text)
                    : kilt_device_list_find (list, run->record.device_id);
  if (dev == NULL && device_text == NULL)
    dev = kilt_device_list_choose_default (list, NULL);
  if (dev == NULL)
    {
      g_autofree char *msg = g_strdup_printf ("no OpenCL device \"%s\" here (kilt-cli devices "
                                              "lists them)",
                                              device_text ? device_text : run->record.device_id);
      return usage (runs_usage, msg);
    }
  if (!kilt_data_spec_from_json (run->record.data_spec, &spec, &error))
    return fail (error);
  if (!kilt_run_config_from_json (run->config_json, &cfg, &error))
    {
      kilt_data_spec_clear (&spec);
      return fail (error);
    }
  if (cfg.run_name == NULL)
    cfg.run_name = g_strdup (run->record.name);
  printf ("Resuming run #%" G_GINT64_FORMAT " (%s) on %s after epoch %u of %u\n", id,
          run->record.name, dev->name, done, cfg.epochs);
  ids[0] = dev->id;
  compare
      = kilt_compare_new (ids, run->record.model_json, &spec, &cfg, kilt_run_store_get_path (store),
                          NULL, kilt_cli_sequence_event, &view);
  kilt_compare_set_resume_from (compare, run->record.config.checkpoint_path);
  rc = kilt_cli_run_sequence (compare, &view, 1, cfg.epochs, &run_ids);
  if (run_ids->len)
    printf ("Recorded as run #%" G_GINT64_FORMAT "\n", g_array_index (run_ids, gint64, 0));
  kilt_data_spec_clear (&spec);
  kilt_train_config_clear (&cfg);
  return rc;
}

int
kilt_cli_runs (int argc, char **argv)
{
  gboolean json = FALSE;
  g_autofree char *db = NULL;
  g_autofree char *device = NULL;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device,
      "resume: the device (default: the one it ran on, when it is here)", "DEV" },
    { "db", 0, 0, G_OPTION_ARG_FILENAME, &db,
      "The run store (default $KILT_RUNS_DB or the data"
      " folder)",
      "FILE" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx
      = g_option_context_new ("[list|show|rename|tag|untag|delete|resume]");
  g_autoptr (KiltRunStore) store = NULL;
  GError *error = NULL;
  const char *verb;
  gint64 id = 0;

  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_help_enabled (ctx, TRUE);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      int rc = usage (runs_usage, error->message);
      g_error_free (error);
      return rc;
    }
  verb = argc >= 2 ? argv[1] : "list";
  if (strcmp (verb, "list") != 0 && (argc < 3 || !parse_id (argv[2], &id)))
    return usage (runs_usage, argc < 3 ? "which run? give its ID" : "an ID is a number");

  {
    g_autofree char *path = db ? g_strdup (db) : kilt_run_store_default_path ();
    const char *env = g_getenv ("KILT_RUNS_DB");

    /* Reading makes nothing: a --db (or $KILT_RUNS_DB) that names no file is a mistake to
     * point out, not an empty store; only the default store may simply not exist yet. */
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      {
        if (db == NULL && (env == NULL || *env == '\0') && strcmp (verb, "list") == 0)
          {
            if (json)
              printf ("[]\n");
            else
              printf ("No runs yet: `kilt-cli train` records one.\n");
            return 0;
          }
        fprintf (stderr, "kilt-cli: there is no run store at %s%s\n", path,
                 db            ? " (--db must name an existing store)"
                 : env && *env ? " ($KILT_RUNS_DB must name an existing store)"
                               : "");
        return 1;
      }
  }
  store = kilt_run_store_open (db, &error);
  if (store == NULL)
    return fail (error);
  if (kilt_run_store_is_read_only (store) && strcmp (verb, "list") != 0
      && strcmp (verb, "show") != 0)
    {
      g_autofree char *msg = g_strdup_printf (
          "run store %s is read-only here (no write access to it or its folder): it can be "
          "listed and shown, not changed%s",
          kilt_run_store_get_path (store),
          strcmp (verb, "resume") == 0 ? ", nor can a resumed run be recorded in it" : "");
      fprintf (stderr, "kilt-cli: %s\n", msg);
      return 1;
    }

  if (strcmp (verb, "list") == 0)
    {
      g_autoptr (GPtrArray) runs = kilt_run_store_list (store, &error);
      if (runs == NULL)
        return fail (error);
      if (json)
        {
          g_autofree char *text = list_json (runs);
          printf ("%s\n", text);
        }
      else
        print_list (runs);
      return 0;
    }
  if (strcmp (verb, "show") == 0)
    {
      g_autoptr (KiltRun) run = kilt_run_store_get (store, id, &error);
      g_autoptr (GPtrArray) one = g_ptr_array_new ();
      g_autofree char *text = NULL;
      KiltReportOptions o = { .runs = one };

      if (run == NULL)
        return fail (error);
      if (json && !kilt_run_store_load_steps (store, run, &error))
        return fail (error);
      g_ptr_array_add (one, run);
      text = json ? kilt_report_to_json (&o) : kilt_report_to_markdown (&o);
      fputs (text, stdout);
      if (!json && run->error_message)
        printf ("\n%s: %s\n", kilt_run_store_status_name (run->status), run->error_message);
      if (!json && run->notes)
        printf ("\nwhile it trained: %s\n", run->notes);
      if (!json && run->record.config.checkpoint_path)
        printf ("\nweights: %s%s\n", run->record.config.checkpoint_path,
                g_file_test (run->record.config.checkpoint_path, G_FILE_TEST_IS_REGULAR)
                    ? ""
                    : " (gone)");
      return 0;
    }
  if (strcmp (verb, "rename") == 0 || strcmp (verb, "tag") == 0 || strcmp (verb, "untag") == 0)
    {
      gboolean ok;
      if (argc < 4)
        return usage (runs_usage, strcmp (verb, "rename") == 0 ? "rename to what?" : "which tag?");
      if (strcmp (verb, "rename") == 0)
        ok = kilt_run_store_rename (store, id, argv[3], &error);
      else if (strcmp (verb, "tag") == 0)
        ok = kilt_run_store_add_tag (store, id, argv[3], &error);
      else
        ok = kilt_run_store_remove_tag (store, id, argv[3], &error);
      return ok ? 0 : fail (error);
    }
  if (strcmp (verb, "delete") == 0)
    return kilt_run_store_delete (store, id, &error) ? 0 : fail (error);
  if (strcmp (verb, "resume") == 0)
    return resume (store, id, device);
  {
    g_autofree char *msg = g_strdup_printf ("unknown runs command '%s'", verb);
    return usage (runs_usage, msg);
  }
}

static const char *
extension_format (const char *path)
{
  const char *dot = path ? strrchr (path, '.') : NULL;
  return dot ? dot + 1 : "";
}

int
kilt_cli_report (int argc, char **argv)
{
  g_autofree char *db = NULL;
  g_autofree char *out = NULL;
  g_autofree char *format_name = NULL;
  g_autofree char *chart_name = NULL;
  g_autofree char *baseline_text = NULL;
  int width = 0, height = 0;
  gboolean x_time = FALSE, x_steps = FALSE;
  GOptionEntry entries[] = {
    { "format", 'f', 0, G_OPTION_ARG_STRING, &format_name,
      "csv, json, md, html, pdf, png or svg (default: from the file name)", "FORMAT" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "The report file", "FILE" },
    { "baseline", 'b', 0, G_OPTION_ARG_STRING, &baseline_text,
      "Speed-ups against this run (default: the first)", "ID" },
    { "chart", 0, 0, G_OPTION_ARG_STRING, &chart_name, "The chart of a PNG or SVG", "NAME" },
    { "width", 0, 0, G_OPTION_ARG_INT, &width, "PNG/SVG width", "PX" },
    { "height", 0, 0, G_OPTION_ARG_INT, &height, "PNG/SVG height", "PX" },
    { "x-time", 0, 0, G_OPTION_ARG_NONE, &x_time, "Curves against training time", NULL },
    { "x-steps", 0, 0, G_OPTION_ARG_NONE, &x_steps, "Curves against optimizer steps", NULL },
    { "db", 0, 0, G_OPTION_ARG_FILENAME, &db, "The run store", "FILE" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("ID...");
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GPtrArray) runs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_run_free);
  KiltReportOptions o = { 0 };
  KiltReportFormat format;
  GError *error = NULL;
  gint64 baseline_id = 0;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      int rc = usage (report_usage, error->message);
      g_error_free (error);
      return rc;
    }
  if (out == NULL)
    return usage (report_usage, "where to? give -o FILE");
  if (!kilt_report_format_from_name (format_name ? format_name : extension_format (out), &format))
    return usage (report_usage,
                  format_name ? "unknown --format" : "give --format (the file name does not say)");
  if (argc < 2)
    return usage (report_usage, "which runs? give one or more IDs");
  if (baseline_text && !parse_id (baseline_text, &baseline_id))
    return usage (report_usage, "--baseline takes a run ID");
  if (chart_name && !kilt_report_chart_from_name (chart_name, &o.chart))
    return usage (report_usage, "unknown --chart");
  if (chart_name == NULL)
    o.chart = argc > 2 ? KILT_REPORT_CHART_EPOCH_TIME : KILT_REPORT_CHART_LOSS;

  /* A report reads: nothing is made, and a missing store is named. */
  store = kilt_run_store_open_read_only (db, &error);
  if (store == NULL)
    return fail (error);
  for (int i = 1; i < argc; i++)
    {
      gint64 id;
      KiltRun *run;
      if (!parse_id (argv[i], &id))
        {
          g_autofree char *msg = g_strdup_printf ("'%s' is not a run ID", argv[i]);
          return usage (report_usage, msg);
        }
      run = kilt_run_store_get (store, id, &error);
      if (run == NULL)
        return fail (error);
      if (format == KILT_REPORT_JSON && !kilt_run_store_load_steps (store, run, &error))
        {
          kilt_run_free (run);
          return fail (error);
        }
      g_ptr_array_add (runs, run);
      if (id == baseline_id)
        o.baseline = run;
    }
  if (baseline_id && o.baseline == NULL)
    {
      g_autofree char *msg = g_strdup_printf ("the baseline run %" G_GINT64_FORMAT
                                              " must be one of the runs in the report",
                                              baseline_id);
      return usage (report_usage, msg);
    }
  o.runs = runs;
  o.width = width;
  o.height = height;
  o.x_wall_time = x_time;
  o.x_steps = x_steps;
  if (!kilt_report_write (&o, format, out, &error))
    return fail (error);
  return 0;
}
