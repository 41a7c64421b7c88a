/* Timing reports for one or several stored runs: the text formats and atomic writing. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-report"

#include "kilt-report-private.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"

#include <math.h>
#include <string.h>
#include <json-glib/json-glib.h>

const char *const kilt_report_csv_columns[] = {
  "run_id",
  "run_name",
  "status",
  "model",
  "data",
  "device",
  "device_vendor",
  "driver",
  "opencl_version",
  "batch",
  "seed",
  "optimizer",
  "learning_rate",
  "epoch",
  "train_loss",
  "train_accuracy",
  "val_loss",
  "val_accuracy",
  "epoch_seconds",
  "elapsed_seconds",
  "samples_per_second",
  "gflops",
  "compile_seconds",
  "busy_percent",
  "peak_bytes",
  "peak_weights_bytes",
  "peak_gradients_bytes",
  "peak_optimizer_bytes",
  "peak_activations_bytes",
  "peak_workspace_bytes",
  "peak_dataset_bytes",
  "speedup",
  NULL,
};

guint
kilt_report_csv_n_columns (void)
{
  return G_N_ELEMENTS (kilt_report_csv_columns) - 1;
}

static const char *const optimizer_names[KILT_OPT_N_TYPES] = {
  "SGD", "RMSprop", "Adam", "Adadelta", "Adagrad",
};

const char *
kilt_report_optimizer_label (KiltOptimizerType type)
{
  return (guint)type < KILT_OPT_N_TYPES ? optimizer_names[type] : "?";
}

const KiltRun *
kilt_report_baseline (const KiltReportOptions *o)
{
  if (o->baseline)
    return o->baseline;
  return o->runs->len > 0 ? g_ptr_array_index (o->runs, 0) : NULL;
}

double
kilt_report_speedup (const KiltRun *run, const KiltRun *baseline)
{
  double a, b;

  if (run == NULL || baseline == NULL)
    return NAN;
  a = kilt_run_mean_epoch_seconds (baseline);
  b = kilt_run_mean_epoch_seconds (run);
  if (isnan (a) || isnan (b) || b <= 0)
    return NAN;
  return a / b;
}

/* Locale-independent, "" for NaN. */
void
kilt_report_append_num (GString *s, double v, int digits)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  char fmt[16];

  if (isnan (v) || isinf (v))
    return;
  g_snprintf (fmt, sizeof fmt, "%%.%dg", digits);
  g_string_append (s, g_ascii_formatd (buf, sizeof buf, fmt, v));
}

/* Fixed decimals, for tables people read; "–" for NaN. */
char *
kilt_report_fixed (double v, int decimals)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  char fmt[16];

  if (isnan (v) || isinf (v))
    return g_strdup ("–");
  g_snprintf (fmt, sizeof fmt, "%%.%df", decimals);
  return g_strdup (g_ascii_formatd (buf, sizeof buf, fmt, v));
}

char *
kilt_report_percent (double fraction)
{
  if (isnan (fraction))
    return g_strdup ("–");
  return g_strdup_printf ("%.2f%%", fraction * 100);
}

char *
kilt_report_time_label (gint64 unix_us)
{
  g_autoptr (GDateTime) dt = NULL;

  if (unix_us <= 0)
    return g_strdup ("–");
  dt = g_date_time_new_from_unix_local (unix_us / G_USEC_PER_SEC);
  return g_date_time_format (dt, "%Y-%m-%d %H:%M");
}

/* ---- CSV ---- */

void
kilt_csv_append_field (GString *s, const char *text)
{
  g_autofree char *valid = NULL;

  if (text == NULL)
    text = "";
  /* Every format is UTF-8 text, whatever bytes a store held. */
  if (!g_utf8_validate (text, -1, NULL))
    text = valid = g_utf8_make_valid (text, -1);
  if (strpbrk (text, ",\"\r\n") == NULL)
    {
      g_string_append (s, text);
      return;
    }
  g_string_append_c (s, '"');
  for (const char *p = text; *p; p++)
    {
      if (*p == '"')
        g_string_append_c (s, '"');
      g_string_append_c (s, *p);
    }
  g_string_append_c (s, '"');
}

static void
csv_num (GString *s, double v)
{
  g_string_append_c (s, ',');
  kilt_report_append_num (s, v, 10);
}

static void
csv_int (GString *s, gint64 v)
{
  g_string_append_printf (s, ",%" G_GINT64_FORMAT, v);
}

char *
kilt_report_to_csv (const KiltReportOptions *o)
{
  GString *s = g_string_new (NULL);
  const KiltRun *base = kilt_report_baseline (o);

  for (guint c = 0; kilt_report_csv_columns[c]; c++)
    {
      if (c)
        g_string_append_c (s, ',');
      g_string_append (s, kilt_report_csv_columns[c]);
    }
  g_string_append (s, "\r\n");

  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      const KiltRunRecord *r = &run->record;
      double speedup = kilt_report_speedup (run, base);

      for (guint k = 0; k < run->epochs->len; k++)
        {
          const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
          double gflops = r->flops_per_sample
                              ? 3.0 * (double)r->flops_per_sample * e->samples_per_second / 1e9
                              : NAN;

          g_string_append_printf (s, "%" G_GINT64_FORMAT ",", run->id);
          kilt_csv_append_field (s, r->name);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, kilt_run_store_status_name (run->status));
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, r->model_name);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, r->data_description);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, r->device_name);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, r->device_vendor);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, r->device_driver);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, r->device_opencl_version);
          csv_int (s, r->config.batch);
          csv_int (s, r->config.seed);
          g_string_append_c (s, ',');
          kilt_csv_append_field (s, kilt_report_optimizer_label (r->config.opt.type));
          csv_num (s, r->config.opt.lr);
          csv_int (s, e->epoch);
          csv_num (s, e->train_loss);
          csv_num (s, e->train_accuracy);
          csv_num (s, e->val_loss);
          csv_num (s, e->val_accuracy);
          csv_num (s, e->wall_seconds);
          csv_num (s, e->elapsed_seconds);
          csv_num (s, e->samples_per_second);
          csv_num (s, gflops);
          csv_num (s, e->compile_seconds);
          csv_num (s, e->busy_percent);
          csv_int (s, e->peak_total);
          for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
            csv_int (s, e->peak_bytes[c]);
          csv_num (s, speedup);
          g_string_append (s, "\r\n");
        }
    }
  return g_string_free (s, FALSE);
}

/* ---- JSON ---- */

static void
j_time (JsonBuilder *b, const char *name, gint64 unix_us)
{
  json_builder_set_member_name (b, name);
  if (unix_us <= 0)
    json_builder_add_null_value (b);
  else
    {
      g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc (unix_us / G_USEC_PER_SEC);
      g_autofree char *iso = g_date_time_format_iso8601 (dt);
      json_builder_add_string_value (b, iso);
    }
}

/* Embeds @text as JSON when it parses, else as a string. */
static void
j_embedded (JsonBuilder *b, const char *name, const char *text)
{
  g_autoptr (JsonParser) p = json_parser_new ();

  json_builder_set_member_name (b, name);
  if (text && json_parser_load_from_data (p, text, -1, NULL) && json_parser_get_root (p))
    json_builder_add_value (b, json_node_copy (json_parser_get_root (p)));
  else if (text)
    kilt_json_add_text (b, text);
  else
    json_builder_add_null_value (b);
}

static void
json_run (JsonBuilder *b, const KiltRun *run, const KiltRun *base)
{
  const KiltRunRecord *r = &run->record;

  json_builder_begin_object (b);
  kilt_json_add_int (b, "id", run->id);
  kilt_json_add_string (b, "name", r->name);
  kilt_json_add_string (b, "status", kilt_run_store_status_name (run->status));
  kilt_json_add_string (b, "error", run->error_message);
  kilt_json_add_string (b, "notes", run->notes);
  j_time (b, "started_at", run->started_at);
  j_time (b, "ended_at", run->ended_at);
  kilt_json_add_string (b, "hostname", run->hostname);
  json_builder_set_member_name (b, "tags");
  json_builder_begin_array (b);
  for (guint i = 0; i < run->tags->len; i++)
    kilt_json_add_text (b, run->tags->pdata[i]);
  json_builder_end_array (b);

  json_builder_set_member_name (b, "model");
  json_builder_begin_object (b);
  kilt_json_add_string (b, "name", r->model_name);
  kilt_json_add_int (b, "parameters", (gint64)r->n_params);
  kilt_json_add_int (b, "flops_per_sample", (gint64)r->flops_per_sample);
  j_embedded (b, "description", r->model_json);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "data");
  json_builder_begin_object (b);
  kilt_json_add_string (b, "description", r->data_description);
  kilt_json_add_string (b, "hash", r->data_hash);
  kilt_json_add_int (b, "train_samples", (gint64)r->train_samples);
  kilt_json_add_int (b, "steps_per_epoch", r->steps_per_epoch);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "device");
  json_builder_begin_object (b);
  kilt_json_add_string (b, "id", r->device_id);
  kilt_json_add_string (b, "name", r->device_name);
  kilt_json_add_string (b, "vendor", r->device_vendor);
  kilt_json_add_string (b, "type", r->device_type);
  kilt_json_add_string (b, "driver", r->device_driver);
  kilt_json_add_string (b, "opencl_version", r->device_opencl_version);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "software");
  json_builder_begin_object (b);
  kilt_json_add_string (b, "kilt", r->kilt_version);
  kilt_json_add_string (b, "clblast", r->clblast_version);
  kilt_json_add_string (b, "opencl_platform", r->platform_name);
  kilt_json_add_string (b, "opencl_platform_version", r->platform_version);
  json_builder_end_object (b);

  j_embedded (b, "config", run->config_json);
  if (run->scaling)
    {
      g_autofree char *scaling = kilt_run_scaling_to_json (run->scaling);
      g_autofree char *said = kilt_run_scaling_describe (run->scaling);
      j_embedded (b, "devices", scaling);
      kilt_json_add_number (b, "speedup_over_fastest_alone",
                            kilt_run_scaling_speedup (run->scaling));
      kilt_json_add_number (b, "scaling_efficiency", kilt_run_scaling_efficiency (run->scaling));
      kilt_json_add_string (b, "devices_summary", said);
    }

  json_builder_set_member_name (b, "summary");
  json_builder_begin_object (b);
  kilt_json_add_int (b, "epochs", run->epochs->len);
  kilt_json_add_number (b, "compile_seconds", r->compile_seconds);
  json_builder_set_member_name (b, "compile_cached");
  json_builder_add_boolean_value (b, r->compile_cached);
  kilt_json_add_number (b, "train_seconds", kilt_run_train_seconds (run));
  kilt_json_add_number (b, "mean_epoch_seconds", kilt_run_mean_epoch_seconds (run));
  kilt_json_add_number (b, "samples_per_second", kilt_run_mean_samples_per_second (run));
  kilt_json_add_number (b, "gflops", kilt_run_gflops (run));
  kilt_json_add_number (b, "best_val_accuracy", kilt_run_best_val_accuracy (run));
  kilt_json_add_number (b, "final_val_accuracy", kilt_run_final_val_accuracy (run));
  kilt_json_add_number (b, "test_loss", run->test_loss);
  kilt_json_add_number (b, "test_accuracy", run->test_accuracy);
  kilt_json_add_number (b, "speedup", kilt_report_speedup (run, base));
  json_builder_end_object (b);

  json_builder_set_member_name (b, "epochs");
  json_builder_begin_array (b);
  for (guint k = 0; k < run->epochs->len; k++)
    {
      const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
      json_builder_begin_object (b);
      kilt_json_add_int (b, "epoch", e->epoch);
      kilt_json_add_number (b, "train_loss", e->train_loss);
      kilt_json_add_number (b, "train_accuracy", e->train_accuracy);
      kilt_json_add_number (b, "val_loss", e->val_loss);
      kilt_json_add_number (b, "val_accuracy", e->val_accuracy);
      kilt_json_add_number (b, "seconds", e->wall_seconds);
      kilt_json_add_number (b, "elapsed_seconds", e->elapsed_seconds);
      kilt_json_add_number (b, "samples_per_second", e->samples_per_second);
      kilt_json_add_number (b, "compile_seconds", e->compile_seconds);
      kilt_json_add_number (b, "busy_percent", e->busy_percent);
      /* The rate at the epoch's end (null where the store did not keep it). */
      kilt_json_add_number (b, "learning_rate", e->learning_rate > 0 ? e->learning_rate : NAN);
      json_builder_set_member_name (b, "peak_bytes");
      json_builder_begin_object (b);
      for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
        kilt_json_add_int (b, kilt_mem_category_name (c), e->peak_bytes[c]);
      kilt_json_add_int (b, "total", e->peak_total);
      json_builder_end_object (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);

  json_builder_set_member_name (b, "layer_timings_ms");
  json_builder_begin_array (b);
  for (guint k = 0; k < run->layer_timings->len; k++)
    {
      const KiltLayerTiming *t = &g_array_index (run->layer_timings, KiltLayerTiming, k);
      json_builder_begin_object (b);
      kilt_json_add_string (b, "layer", t->layer);
      kilt_json_add_string (b, "type", t->type);
      kilt_json_add_number (b, "forward", t->forward_ms);
      kilt_json_add_number (b, "backward", t->backward_ms);
      kilt_json_add_number (b, "update", t->update_ms);
      if (t->algo)
        kilt_json_add_string (b, "algo", t->algo);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);

  if (run->steps)
    {
      json_builder_set_member_name (b, "steps");
      json_builder_begin_array (b);
      for (guint k = 0; k < run->steps->len; k++)
        {
          const KiltStepRecord *st = &g_array_index (run->steps, KiltStepRecord, k);
          json_builder_begin_object (b);
          kilt_json_add_int (b, "epoch", st->epoch);
          kilt_json_add_int (b, "step", st->step);
          kilt_json_add_int (b, "global_step", (gint64)st->global_step);
          kilt_json_add_number (b, "elapsed_seconds", st->elapsed_seconds);
          kilt_json_add_number (b, "loss", st->loss);
          kilt_json_add_number (b, "accuracy", st->accuracy);
          kilt_json_add_number (b, "samples_per_second", st->samples_per_second);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
    }
  json_builder_end_object (b);
}

char *
kilt_report_to_json (const KiltReportOptions *o)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  const KiltRun *base = kilt_report_baseline (o);

  json_builder_begin_object (b);
  kilt_json_add_string (b, "format", "kilt-report");
  kilt_json_add_int (b, "version", 1);
  j_time (b, "generated_at", g_get_real_time ());
  json_builder_set_member_name (b, "baseline_id");
  if (base)
    json_builder_add_int_value (b, base->id);
  else
    json_builder_add_null_value (b);
  kilt_json_add_string (b, "speedup_definition",
                        "baseline mean epoch seconds / run mean epoch seconds");
  kilt_json_add_string (b, "gflops_definition",
                        "3 x forward FLOPs per sample x samples per second / 1e9");
  json_builder_set_member_name (b, "runs");
  json_builder_begin_array (b);
  for (guint i = 0; i < o->runs->len; i++)
    json_run (b, g_ptr_array_index (o->runs, i), base);
  json_builder_end_array (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

/* ---- tables shared by Markdown and HTML ---- */

static KiltReportTable *
table_new (const char *title, const char *note)
{
  KiltReportTable *t = g_new0 (KiltReportTable, 1);
  t->title = g_strdup (title);
  t->note = g_strdup (note);
  t->header = g_ptr_array_new_with_free_func (g_free);
  t->rows = g_ptr_array_new_with_free_func ((GDestroyNotify)g_ptr_array_unref);
  return t;
}

void
kilt_report_table_free (KiltReportTable *t)
{
  g_free (t->title);
  g_free (t->note);
  g_ptr_array_unref (t->header);
  g_ptr_array_unref (t->rows);
  g_free (t);
}

static void
table_head (KiltReportTable *t, ...)
{
  va_list ap;
  const char *s;

  va_start (ap, t);
  while ((s = va_arg (ap, const char *)))
    g_ptr_array_add (t->header, g_strdup (s));
  va_end (ap);
}

static GPtrArray *
table_row (KiltReportTable *t)
{
  GPtrArray *row = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (t->rows, row);
  return row;
}

/* Adds a cell, taking @cell. */
static void
cell (GPtrArray *row, char *text)
{
  g_ptr_array_add (row, text ? text : g_strdup ("–"));
}

static char *
dup_or_dash (const char *s)
{
  return g_strdup (s && *s ? s : "–");
}

static char *
run_label (const KiltRun *run)
{
  return g_strdup_printf ("#%" G_GINT64_FORMAT " %s", run->id, run->record.name);
}

GPtrArray *
kilt_report_build_tables (const KiltReportOptions *o)
{
  GPtrArray *tables = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_report_table_free);
  const KiltRun *base = kilt_report_baseline (o);
  KiltReportTable *t;
  g_autofree char *note = NULL;

  /* Summary and speed-up. */
  note = base ? g_strdup_printf ("Speed-up: mean epoch time of the baseline (#%" G_GINT64_FORMAT
                                 " %s) over each run's. GFLOP/s: 3 × forward FLOPs per sample"
                                 " × samples/s.",
                                 base->id, base->record.name)
              : NULL;
  t = table_new ("Summary", note);
  table_head (t, "Run", "Status", "Device", "Epochs", "Time/epoch (s)", "Total (s)", "Compile (s)",
              "Samples/s", "GFLOP/s", "Best val acc", "Test acc", "Speed-up", NULL);
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      GPtrArray *row = table_row (t);
      double sp = kilt_report_speedup (run, base);
      cell (row, run_label (run));
      cell (row, g_strdup (kilt_run_store_status_name (run->status)));
      cell (row, dup_or_dash (run->record.device_name));
      cell (row, g_strdup_printf ("%u", run->epochs->len));
      cell (row, kilt_report_fixed (kilt_run_mean_epoch_seconds (run), 1));
      cell (row, kilt_report_fixed (kilt_run_train_seconds (run), 0));
      cell (row, kilt_report_fixed (run->record.compile_seconds, 2));
      cell (row, kilt_report_fixed (kilt_run_mean_samples_per_second (run), 1));
      cell (row, kilt_report_fixed (kilt_run_gflops (run), 2));
      cell (row, kilt_report_percent (kilt_run_best_val_accuracy (run)));
      cell (row, kilt_report_percent (run->test_accuracy));
      cell (row, isnan (sp) ? NULL : g_strdup_printf ("%.2fx", sp));
    }
  g_ptr_array_add (tables, t);

  /* Device and software. */
  t = table_new ("Device and software", NULL);
  table_head (t, "Run", "Device", "Vendor", "Type", "Driver", "OpenCL", "Platform", "Kilt",
              "CLBlast", NULL);
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      const KiltRunRecord *r = &run->record;
      GPtrArray *row = table_row (t);
      cell (row, run_label (run));
      cell (row, dup_or_dash (r->device_name));
      cell (row, dup_or_dash (r->device_vendor));
      cell (row, dup_or_dash (r->device_type));
      cell (row, dup_or_dash (r->device_driver));
      cell (row, dup_or_dash (r->device_opencl_version));
      cell (row, g_strdup_printf ("%s %s", r->platform_name ? r->platform_name : "",
                                  r->platform_version ? r->platform_version : ""));
      cell (row, dup_or_dash (r->kilt_version));
      cell (row, dup_or_dash (r->clblast_version));
    }
  g_ptr_array_add (tables, t);

  /* Runs on several devices (or MPI ranks): what each device did. */
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      g_autofree char *title = NULL, *said = NULL;
      if (run->scaling == NULL)
        continue;
      title
          = g_strdup_printf ("Devices of run #%" G_GINT64_FORMAT " %s", run->id, run->record.name);
      said = kilt_run_scaling_describe (run->scaling);
      t = table_new (title, said);
      table_head (t, "Device", "Rows per batch", "Alone at its rows (samples/s)", "Busy",
                  "Peak memory", NULL);
      for (guint k = 0; k < run->scaling->devices->len; k++)
        {
          const KiltRunDevice *d = &g_array_index (run->scaling->devices, KiltRunDevice, k);
          GPtrArray *row = table_row (t);
          cell (row, g_strdup_printf ("[%u] %s", k, d->name));
          cell (row, g_strdup_printf ("%u", d->share));
          cell (row,
                d->samples_per_second > 0 ? kilt_report_fixed (d->samples_per_second, 0) : NULL);
          cell (row,
                isfinite (d->busy_percent) ? g_strdup_printf ("%.0f%%", d->busy_percent) : NULL);
          cell (row, d->peak_bytes >= 0 ? kilt_format_bytes ((guint64)d->peak_bytes) : NULL);
        }
      g_ptr_array_add (tables, t);
    }

  /* Model, data and hyper-parameters. */
  t = table_new ("Model, data and hyper-parameters", NULL);
  table_head (t, "Run", "Model", "Parameters", "Data", "Optimizer", "LR", "LR schedule",
              "Label smoothing", "Batch", "Epochs", "Seed", "Augment", "Precision", "Started",
              NULL);
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      const KiltRunRecord *r = &run->record;
      const KiltOptimizerConfig *opt = &r->config.opt;
      GPtrArray *row = table_row (t);
      cell (row, run_label (run));
      cell (row, dup_or_dash (r->model_name));
      cell (row, g_strdup_printf ("%" G_GUINT64_FORMAT, r->n_params));
      cell (row, dup_or_dash (r->data_description));
      switch (opt->type)
        {
          case KILT_OPT_SGD:
            cell (row, g_strdup_printf ("SGD (momentum %g%s, decay %g%s)", opt->momentum,
                                        opt->nesterov ? ", Nesterov" : "", opt->decay,
                                        opt->lookahead ? ", lookahead" : ""));
            break;
          case KILT_OPT_RMSPROP:
          case KILT_OPT_ADADELTA:
            cell (row, g_strdup_printf ("%s (rho %g, eps %g, decay %g)",
                                        kilt_report_optimizer_label (opt->type), opt->rho,
                                        opt->epsilon, opt->decay));
            break;
          case KILT_OPT_ADAM:
            cell (row, g_strdup_printf ("Adam (beta1 %g, beta2 %g, eps %g, decay %g)", opt->beta1,
                                        opt->beta2, opt->epsilon, opt->decay));
            break;
          default:
            cell (row,
                  g_strdup_printf ("%s (eps %g, decay %g)", kilt_report_optimizer_label (opt->type),
                                   opt->epsilon, opt->decay));
            break;
        }
      cell (row, g_strdup_printf ("%g", opt->lr));
      cell (row, kilt_lr_schedule_describe (&opt->schedule));
      cell (row, g_strdup_printf ("%g", r->config.label_smoothing));
      cell (row, g_strdup_printf ("%u", r->config.batch));
      cell (row, g_strdup_printf ("%u", r->config.epochs));
      cell (row, g_strdup_printf ("%u", r->config.seed));
      {
        g_autofree char *aug
            = r->config.translate
                  ? g_strdup_printf ("%sflip, translate %u px (reflect)",
                                     r->config.alternate_flip ? "alternating " : "",
                                     r->config.translate)
                  : g_strdup (r->config.augment
                                  ? (r->config.alternate_flip ? "yes, alternating flip" : "yes")
                                  : "no");
        cell (row, g_strdup_printf ("%s%s", aug, r->config.tta_flip ? "; flip TTA" : ""));
      }
      cell (row, g_strdup (kilt_precision_name (r->config.precision)));
      cell (row, kilt_report_time_label (run->started_at));
    }
  g_ptr_array_add (tables, t);

  /* Per epoch, one table per run. */
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      g_autofree char *title
          = g_strdup_printf ("Epochs of run #%" G_GINT64_FORMAT " %s", run->id, run->record.name);
      t = table_new (title, NULL);
      table_head (t, "Epoch", "Train loss", "Train acc", "Val loss", "Val acc", "Time (s)",
                  "Samples/s", "GFLOP/s", "Compile (s)", "Peak memory", NULL);
      for (guint k = 0; k < run->epochs->len; k++)
        {
          const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
          GPtrArray *row = table_row (t);
          double gf = run->record.flops_per_sample
                          ? 3.0 * (double)run->record.flops_per_sample * e->samples_per_second / 1e9
                          : NAN;
          cell (row, g_strdup_printf ("%u", e->epoch));
          cell (row, kilt_report_fixed (e->train_loss, 4));
          cell (row, kilt_report_percent (e->train_accuracy));
          cell (row, kilt_report_fixed (e->val_loss, 4));
          cell (row, kilt_report_percent (e->val_accuracy));
          cell (row, kilt_report_fixed (e->wall_seconds, 2));
          cell (row, kilt_report_fixed (e->samples_per_second, 1));
          cell (row, kilt_report_fixed (gf, 2));
          cell (row, kilt_report_fixed (e->compile_seconds, 2));
          cell (row, kilt_format_bytes ((guint64)MAX (e->peak_total, 0)));
        }
      g_ptr_array_add (tables, t);
    }

  /* Per layer, runs side by side (by layer name, in the first run's order). */
  {
    g_autoptr (GPtrArray) names = g_ptr_array_new ();
    g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

    for (guint i = 0; i < o->runs->len; i++)
      {
        const KiltRun *run = g_ptr_array_index (o->runs, i);
        for (guint k = 0; k < run->layer_timings->len; k++)
          {
            const KiltLayerTiming *lt = &g_array_index (run->layer_timings, KiltLayerTiming, k);
            if (g_hash_table_add (seen, lt->layer))
              g_ptr_array_add (names, lt->layer);
          }
      }
    if (names->len > 0)
      {
        t = table_new ("Per-layer device time per step (ms: forward / backward / update)", NULL);
        g_ptr_array_add (t->header, g_strdup ("Layer"));
        for (guint i = 0; i < o->runs->len; i++)
          g_ptr_array_add (t->header, run_label (g_ptr_array_index (o->runs, i)));
        for (guint n = 0; n < names->len; n++)
          {
            GPtrArray *row = table_row (t);
            cell (row, g_strdup (names->pdata[n]));
            for (guint i = 0; i < o->runs->len; i++)
              {
                const KiltLayerTiming *lt
                    = kilt_report_find_timing (g_ptr_array_index (o->runs, i), names->pdata[n]);
                cell (row,
                      lt ? g_strdup_printf ("%.3f / %.3f / %.3f%s%s%s", lt->forward_ms,
                                            lt->backward_ms, lt->update_ms, lt->algo ? " (" : "",
                                            lt->algo ? lt->algo : "", lt->algo ? ")" : "")
                         : NULL);
              }
          }
        g_ptr_array_add (tables, t);
      }
  }
  return tables;
}

const KiltLayerTiming *
kilt_report_find_timing (const KiltRun *run, const char *layer)
{
  for (guint k = 0; k < run->layer_timings->len; k++)
    {
      const KiltLayerTiming *lt = &g_array_index (run->layer_timings, KiltLayerTiming, k);
      if (g_strcmp0 (lt->layer, layer) == 0)
        return lt;
    }
  return NULL;
}

/* ---- Markdown ---- */

static void
md_cell (GString *s, const char *text)
{
  g_autofree char *valid = NULL;

  if (!g_utf8_validate (text, -1, NULL))
    text = valid = g_utf8_make_valid (text, -1);
  g_string_append (s, " ");
  for (const char *p = text; *p; p++)
    {
      if (*p == '|' || *p == '<' || *p == '>' || *p == '*' || *p == '`')
        g_string_append_c (s, '\\'), g_string_append_c (s, *p);
      else if (*p == '\n')
        g_string_append_c (s, ' ');
      else
        g_string_append_c (s, *p);
    }
  g_string_append (s, " |");
}

void
kilt_report_table_to_markdown (const KiltReportTable *t, GString *s)
{
  if (t->note)
    g_string_append_printf (s, "%s\n\n", t->note);
  g_string_append (s, "|");
  for (guint c = 0; c < t->header->len; c++)
    md_cell (s, t->header->pdata[c]);
  g_string_append (s, "\n|");
  for (guint c = 0; c < t->header->len; c++)
    g_string_append (s, c == 0 ? " --- |" : " ---: |");
  g_string_append (s, "\n");
  for (guint r = 0; r < t->rows->len; r++)
    {
      GPtrArray *row = t->rows->pdata[r];
      g_string_append (s, "|");
      for (guint c = 0; c < row->len; c++)
        md_cell (s, row->pdata[c]);
      g_string_append (s, "\n");
    }
}

static char *
report_title (const KiltReportOptions *o)
{
  if (o->runs->len == 1)
    return g_strdup_printf ("Kilt timing report: %s",
                            ((KiltRun *)g_ptr_array_index (o->runs, 0))->record.name);
  return g_strdup_printf ("Kilt timing report: %u runs", o->runs->len);
}

char *
kilt_report_to_markdown (const KiltReportOptions *o)
{
  g_autoptr (GPtrArray) tables = kilt_report_build_tables (o);
  g_autofree char *title = report_title (o);
  g_autofree char *when = kilt_report_time_label (g_get_real_time ());
  GString *s = g_string_new (NULL);

  g_string_append_printf (s, "# %s\n\nGenerated %s.\n", title, when);
  for (guint i = 0; i < tables->len; i++)
    {
      KiltReportTable *t = tables->pdata[i];
      g_string_append_printf (s, "\n## %s\n\n", t->title);
      kilt_report_table_to_markdown (t, s);
    }
  /* Titles hold run names as they are; Markdown is escaped byte by byte, so mending the whole
   * text afterwards cannot move any markup. */
  if (!g_utf8_validate (s->str, s->len, NULL))
    {
      char *valid = g_utf8_make_valid (s->str, s->len);
      g_string_free (s, TRUE);
      return valid;
    }
  return g_string_free (s, FALSE);
}

/* ---- HTML ---- */

/* g_markup_escape_text wants valid UTF-8 (a bad lead byte could swallow the '<' after it). */
static char *
html_escape (const char *text)
{
  g_autofree char *valid = NULL;

  if (!g_utf8_validate (text, -1, NULL))
    text = valid = g_utf8_make_valid (text, -1);
  return g_markup_escape_text (text, -1);
}

char *
kilt_report_to_html (const KiltReportOptions *o)
{
  g_autoptr (GPtrArray) tables = kilt_report_build_tables (o);
  g_autofree char *title = report_title (o);
  g_autofree char *title_esc = html_escape (title);
  g_autofree char *when = kilt_report_time_label (g_get_real_time ());
  GString *s = g_string_new (NULL);

  g_string_append_printf (s,
                          "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                          "<title>%s</title>\n<style>\n"
                          "body{font-family:sans-serif;margin:2em auto;max-width:72em;color:#222}\n"
                          "table{border-collapse:collapse;margin:.5em 0 1.5em}\n"
                          "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\n"
                          "th:first-child,td:first-child{text-align:left}\nth{background:#f0f0f0}\n"
                          "figure{margin:1em 0}\nfigcaption{font-weight:bold}\n"
                          "</style>\n</head>\n<body>\n<h1>%s</h1>\n<p>Generated %s.</p>\n",
                          title_esc, title_esc, when);

  for (guint i = 0; i < tables->len; i++)
    {
      KiltReportTable *t = tables->pdata[i];
      g_autofree char *tt = html_escape (t->title);
      g_string_append_printf (s, "<h2>%s</h2>\n", tt);
      if (t->note)
        {
          g_autofree char *n = html_escape (t->note);
          g_string_append_printf (s, "<p>%s</p>\n", n);
        }
      g_string_append (s, "<table>\n<tr>");
      for (guint c = 0; c < t->header->len; c++)
        {
          g_autofree char *h = html_escape (t->header->pdata[c]);
          g_string_append_printf (s, "<th>%s</th>", h);
        }
      g_string_append (s, "</tr>\n");
      for (guint r = 0; r < t->rows->len; r++)
        {
          GPtrArray *row = t->rows->pdata[r];
          g_string_append (s, "<tr>");
          for (guint c = 0; c < row->len; c++)
            {
              g_autofree char *v = html_escape (row->pdata[c]);
              g_string_append_printf (s, "<td>%s</td>", v);
            }
          g_string_append (s, "</tr>\n");
        }
      g_string_append (s, "</table>\n");
      /* The charts follow the summary, before the long per-epoch tables. */
      if (i == 0)
        {
          g_string_append (s, "<h2>Charts</h2>\n");
          for (int c = 0; c < KILT_REPORT_N_CHARTS; c++)
            {
              g_autofree char *svg = NULL;
              if (!kilt_report_chart_applies (o, (KiltReportChart)c))
                continue;
              svg = kilt_report_chart_svg (o, (KiltReportChart)c, 760, 420, NULL);
              if (svg == NULL)
                continue;
              g_string_append_printf (s, "<figure>\n<figcaption>%s</figcaption>\n",
                                      kilt_report_chart_title ((KiltReportChart)c));
              /* Inline: drop the XML declaration cairo puts first. */
              g_string_append (s, g_str_has_prefix (svg, "<?xml") && strchr (svg, '\n')
                                      ? strchr (svg, '\n') + 1
                                      : svg);
              g_string_append (s, "</figure>\n");
            }
        }
    }
  g_string_append (s, "</body>\n</html>\n");
  return g_string_free (s, FALSE);
}

/* ---- names and writing ---- */

static const char *const format_names[] = { "csv", "json", "md", "html", "pdf", "png", "svg" };

gboolean
kilt_report_format_from_name (const char *name, KiltReportFormat *out)
{
  if (g_ascii_strcasecmp (name, "markdown") == 0)
    name = "md";
  for (guint i = 0; i < G_N_ELEMENTS (format_names); i++)
    if (g_ascii_strcasecmp (name, format_names[i]) == 0)
      {
        *out = (KiltReportFormat)i;
        return TRUE;
      }
  return FALSE;
}

gboolean
kilt_report_write (const KiltReportOptions *o, KiltReportFormat format, const char *path,
                   GError **error)
{
  g_autoptr (GBytes) bytes = NULL;
  char *text = NULL;
  gsize len;
  const char *data;

  g_return_val_if_fail (o != NULL && o->runs != NULL && path != NULL, FALSE);

  if (o->runs->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a report needs at least one run");
      return FALSE;
    }
  switch (format)
    {
      case KILT_REPORT_CSV:
        text = kilt_report_to_csv (o);
        break;
      case KILT_REPORT_JSON:
        text = kilt_report_to_json (o);
        break;
      case KILT_REPORT_MARKDOWN:
        text = kilt_report_to_markdown (o);
        break;
      case KILT_REPORT_HTML:
        text = kilt_report_to_html (o);
        break;
      case KILT_REPORT_PDF:
        bytes = kilt_report_render_pdf (o, error);
        break;
      case KILT_REPORT_PNG:
      case KILT_REPORT_SVG:
        bytes = kilt_report_render_chart (o, o->chart, format == KILT_REPORT_PNG,
                                          o->width > 0 ? o->width : 800,
                                          o->height > 0 ? o->height : 500, error);
        break;
      default:
        g_return_val_if_reached (FALSE);
    }
  if (text)
    bytes = g_bytes_new_take (text, strlen (text));
  if (bytes == NULL)
    {
      g_prefix_error (error, "writing the report %s: ", path);
      return FALSE;
    }
  data = g_bytes_get_data (bytes, &len);
  /* g_file_set_contents writes a temporary file beside @path and renames it over: the report
   * is whole or absent, never half-written. */
  if (!g_file_set_contents_full (path, data, (gssize)len, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                 error))
    {
      g_prefix_error (error, "writing the report: ");
      if (error && *error)
        (*error)->domain = KILT_ENGINE_ERROR, (*error)->code = KILT_ENGINE_ERROR_IO;
      return FALSE;
    }
  return TRUE;
}
