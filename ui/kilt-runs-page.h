/* The window's Runs page: the run history as a table, and a comparison of the selected runs. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "kilt-eval-view.h"
#include "kilt-report.h"

G_BEGIN_DECLS

#define KILT_TYPE_RUNS_PAGE (kilt_runs_page_get_type ())
G_DECLARE_FINAL_TYPE (KiltRunsPage, kilt_runs_page, KILT, RUNS_PAGE, AdwBin)

GtkWidget *kilt_runs_page_new (void);

/* The run store to show (NULL: the default, $KILT_RUNS_DB or the data folder). Reloads. */
void kilt_runs_page_set_db_path (KiltRunsPage *page, const char *path);
const char *kilt_runs_page_get_db_path (KiltRunsPage *page);
/* Reads the store again (after a run ends, or when another process wrote to it). */
gboolean kilt_runs_page_reload (KiltRunsPage *page, GError **error);

/* The table as shown: filtered and sorted. */
void kilt_runs_page_set_filter (KiltRunsPage *page, const char *text);
guint kilt_runs_page_get_n_shown (KiltRunsPage *page);
/* The words shown in place of the comparison while no run is selected. */
const char *kilt_runs_page_get_empty_title (KiltRunsPage *page);
gint64 kilt_runs_page_get_shown_id (KiltRunsPage *page, guint position);
/* Sorts by the column titled @title ("Total time", "Best val acc", ...). */
gboolean kilt_runs_page_sort_by (KiltRunsPage *page, const char *title, gboolean descending);

/* Selection and comparison. */
void kilt_runs_page_select (KiltRunsPage *page, const gint64 *ids, guint n_ids);
/* The selected run ids in table order. */
GArray *kilt_runs_page_get_selected (KiltRunsPage *page);
void kilt_runs_page_set_baseline (KiltRunsPage *page, gint64 id);
gint64 kilt_runs_page_get_baseline (KiltRunsPage *page);
void kilt_runs_page_set_chart (KiltRunsPage *page, KiltReportChart chart);
/* What the comparison's curves are drawn against, as the X axis choice sets it. */
void kilt_runs_page_set_x_mode (KiltRunsPage *page, KiltChartXMode mode);
/* The comparison chart shown (owned by the page, rebuilt when the selection or options
 * change). */
KiltChart *kilt_runs_page_get_chart (KiltRunsPage *page);

/* What the page's buttons do, without their dialogs. */
gboolean kilt_runs_page_rename_run (KiltRunsPage *page, gint64 id, const char *name,
                                    GError **error);
gboolean kilt_runs_page_tag_selected (KiltRunsPage *page, const char *tag, GError **error);
gboolean kilt_runs_page_delete_selected (KiltRunsPage *page, GError **error);
/* Whether the one selected run can be repeated (its model, data source and settings are
 * recorded). The "run-again" signal (gint64 id) asks the window to choose a device and start. */
gboolean kilt_runs_page_can_run_again (KiltRunsPage *page, GError **error);
/* Whether the one selected run can go on from its checkpoint (kilt_run_can_resume ()). The
 * "resume" signal (gint64 id) asks the window to start it. */
gboolean kilt_runs_page_can_resume (KiltRunsPage *page, GError **error);
/* Copies the one selected run's checkpoint (its trained weights, for kilt-cli eval or a later
 * --resume) to @path, without blocking (a large model's weights are gigabytes); @callback gets
 * the outcome from kilt_runs_page_save_weights_finish (). */
void kilt_runs_page_save_weights (KiltRunsPage *page, const char *path,
                                  GAsyncReadyCallback callback, gpointer user_data);
gboolean kilt_runs_page_save_weights_finish (KiltRunsPage *page, GAsyncResult *result,
                                             GError **error);
/* Whether the one selected run's trained model can be exported: it kept its weights and
 * records its model. */
gboolean kilt_runs_page_can_export_model (KiltRunsPage *page, GError **error);
/* Writes the one selected run's model with its checkpoint's weights to @path, in a thread:
 * a Keras 3 .keras, a .weights.h5 or an .onnx by @path's extension (kilt_model_export ()).
 * kilt_runs_page_export_model_finish () gives what was written, or NULL and the error. */
void kilt_runs_page_export_model (KiltRunsPage *page, const char *path,
                                  GAsyncReadyCallback callback, gpointer user_data);
char *kilt_runs_page_export_model_finish (KiltRunsPage *page, GAsyncResult *result, GError **error);
/* Whether the one selected run can be evaluated: it finished, kept its weights and records its
 * model and data source. */
gboolean kilt_runs_page_can_evaluate (KiltRunsPage *page, GError **error);
/* "Evaluate…": opens (or reuses) the evaluation window for the one selected run and starts
 * the evaluation in a worker. NULL with @error when it cannot start (the window then shows
 * the error too). The view is owned by its window. */
KiltEvalView *kilt_runs_page_evaluate_selected (KiltRunsPage *page, GError **error);
/* The evaluation view while its window is open, else NULL. */
KiltEvalView *kilt_runs_page_get_eval_view (KiltRunsPage *page);
/* A report of the selected runs against the chosen baseline (PNG/SVG: the chart shown). */
gboolean kilt_runs_page_export (KiltRunsPage *page, KiltReportFormat format, const char *path,
                                GError **error);

G_END_DECLS
