/* Timing reports for one or several stored runs: CSV, JSON, Markdown, HTML, PDF, PNG, SVG. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-chart.h"
#include "kilt-run-store.h"

G_BEGIN_DECLS

/* Appends @text (NULL: empty) to @s as one CSV field: quoted when it holds a comma, quote or
 * line break, and made valid UTF-8. */
void kilt_csv_append_field (GString *s, const char *text);

typedef enum
{
  KILT_REPORT_CSV,
  KILT_REPORT_JSON,
  KILT_REPORT_MARKDOWN,
  KILT_REPORT_HTML,
  KILT_REPORT_PDF,
  KILT_REPORT_PNG, /* one chart */
  KILT_REPORT_SVG, /* one chart */
} KiltReportFormat;

/* The charts a report draws (and the one PNG/SVG holds). */
typedef enum
{
  KILT_REPORT_CHART_LOSS,          /* training and validation loss per epoch, runs overlaid */
  KILT_REPORT_CHART_ACCURACY,      /* training and validation accuracy per epoch */
  KILT_REPORT_CHART_EPOCH_TIME,    /* mean time per epoch, a bar per run */
  KILT_REPORT_CHART_SPEEDUP,       /* speed-up against the baseline, a bar per run */
  KILT_REPORT_CHART_LAYERS,        /* per-layer time per step, a group per layer, bar per run */
  KILT_REPORT_CHART_ACCURACY_TIME, /* validation accuracy against elapsed time */
  KILT_REPORT_CHART_LEARNING_RATE, /* the learning rate at each epoch's end, runs overlaid */
  KILT_REPORT_N_CHARTS
} KiltReportChart;

/*
 * CSV columns, one row per run and epoch (a run with no epochs yet gives no row). Numbers use
 * '.' as decimal point; an absent figure is an empty field.
 *   run_id, run_name, status, model, data, device, device_vendor, driver, opencl_version,
 *   batch, seed, optimizer, learning_rate,
 *   epoch, train_loss, train_accuracy, val_loss, val_accuracy,
 *   epoch_seconds (wall time of this epoch), elapsed_seconds (since the run began),
 *   samples_per_second, gflops (3 x forward FLOPs x samples/s / 1e9), compile_seconds,
 *   busy_percent, peak_bytes (all categories), peak_weights_bytes, peak_gradients_bytes,
 *   peak_optimizer_bytes, peak_activations_bytes, peak_workspace_bytes, peak_dataset_bytes,
 *   speedup (the baseline's mean epoch time / this run's mean epoch time)
 */
extern const char *const kilt_report_csv_columns[];
guint kilt_report_csv_n_columns (void);

typedef struct
{
  GPtrArray *runs;         /* KiltRun, not owned; in the order to show them */
  const KiltRun *baseline; /* speed-ups are against it; NULL: the first run */
  KiltReportChart chart;   /* for PNG and SVG */
  int width, height;       /* for PNG and SVG; 0: 800 x 500 */
  gboolean x_wall_time;    /* curves against elapsed time instead of epochs */
  gboolean x_steps;        /* curves against optimizer steps (wins over neither: wall time does) */
} KiltReportOptions;

/* A table of the report: a header row and rows of cells, all strings. */
typedef struct
{
  char *title;
  char *note;
  GPtrArray *header; /* char* */
  GPtrArray *rows;   /* GPtrArray of char* */
} KiltReportTable;

/* The tables every format shows: summary, device and software, hyper-parameters, epochs per
 * run, per-layer times. KiltReportTable, owned. */
GPtrArray *kilt_report_build_tables (const KiltReportOptions *options);
void kilt_report_table_free (KiltReportTable *table);
/* Appends @table as a Markdown table (its note above it, no title). */
void kilt_report_table_to_markdown (const KiltReportTable *table, GString *out);

/* Speed-up of @run against @baseline: the baseline's mean epoch time over the run's (the
 * article's 16969 s / 4314 s = 3.93x, per epoch so runs of different lengths compare). */
double kilt_report_speedup (const KiltRun *run, const KiltRun *baseline);

/* The text formats, as strings. */
char *kilt_report_to_csv (const KiltReportOptions *options);
char *kilt_report_to_json (const KiltReportOptions *options);
char *kilt_report_to_markdown (const KiltReportOptions *options);
char *kilt_report_to_html (const KiltReportOptions *options);

/* Writes @format to @path atomically: the file is whole or absent (temp file + rename). */
gboolean kilt_report_write (const KiltReportOptions *options, KiltReportFormat format,
                            const char *path, GError **error);

/* Builds @chart for the runs (the window shows the same charts). Whether a chart has anything
 * to show: speed-ups need two runs, layers need timings. */
KiltChart *kilt_report_chart_new (const KiltReportOptions *options, KiltReportChart chart);
gboolean kilt_report_chart_applies (const KiltReportOptions *options, KiltReportChart chart);

gboolean kilt_report_format_from_name (const char *name, KiltReportFormat *out);
gboolean kilt_report_chart_from_name (const char *name, KiltReportChart *out);
const char *kilt_report_chart_name (KiltReportChart chart);
const char *kilt_report_chart_title (KiltReportChart chart);

G_END_DECLS
