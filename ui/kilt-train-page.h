/* Train page: progress, live charts (loss, accuracy, memory, throughput, busy, learning rate),
 * the end-of-run summary, timings, log. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "kilt-chart.h"
#include "kilt-run-store.h"
#include "kilt-session.h"
#include "kilt-replica-view.h"

G_BEGIN_DECLS

#define KILT_TYPE_TRAIN_PAGE (kilt_train_page_get_type ())
G_DECLARE_FINAL_TYPE (KiltTrainPage, kilt_train_page, KILT, TRAIN_PAGE, AdwBin)

typedef enum
{
  KILT_TRAIN_CHART_LOSS,
  KILT_TRAIN_CHART_ACCURACY,
  KILT_TRAIN_CHART_MEMORY,
  KILT_TRAIN_CHART_THROUGHPUT,
  KILT_TRAIN_CHART_BUSY,
  KILT_TRAIN_CHART_LEARNING_RATE,
  KILT_TRAIN_N_CHARTS
} KiltTrainChart;

/* Clears the charts for a new run on a device with @capacity bytes (0: unknown). */
void kilt_train_page_reset (KiltTrainPage *self, const char *title, guint64 capacity);
/* Applies a coalesced update from the session. */
void kilt_train_page_apply (KiltTrainPage *self, const KiltSessionUpdate *update, double elapsed);
/* The run's device type ("CPU", "GPU", ...): the busy chart says what its figure means there. */
void kilt_train_page_set_device_type (KiltTrainPage *self, const char *type);
/* What the second loss and accuracy curves are measured on: "validation", or "test split"
 * when the run has no validation split and evaluates on the test split. */
void kilt_train_page_set_eval_name (KiltTrainPage *self, const char *name);
/* The status line and the line under it ("Epoch 3 of 10", "Step 12 of 40 · …"). */
const char *kilt_train_page_get_status (KiltTrainPage *self);
const char *kilt_train_page_get_detail (KiltTrainPage *self);
/* Whether Stop is shown as a live destructive button (only while a run goes on). */
gboolean kilt_train_page_get_stop_armed (KiltTrainPage *self);
/* Draws a stored run's curves (a resumed run's parent) before the run that goes on from it. */
void kilt_train_page_show_history (KiltTrainPage *self, const KiltRun *run);
void kilt_train_page_set_state (KiltTrainPage *self, gboolean running, gboolean paused);
/* Shows @message where the person is looking; NULL hides it. */
void kilt_train_page_show_error (KiltTrainPage *self, const char *message);
void kilt_train_page_log (KiltTrainPage *self, const char *line);
KiltChart *kilt_train_page_get_chart (KiltTrainPage *self, KiltTrainChart which);
void kilt_train_page_set_epochs (KiltTrainPage *self, guint epochs);
/* The run being shown is run @index of @count of a sequence (compare devices): the progress
 * says "Device 2 of 3". Reset clears it. */
void kilt_train_page_set_sequence (KiltTrainPage *self, guint index, guint count);
/* The chart the pointer was last over (for "Save Chart…"); the loss chart by default. */
GtkWidget *kilt_train_page_get_focus_chart (KiltTrainPage *self);
/* The devices of a run on several (hidden otherwise). */
KiltReplicaView *kilt_train_page_get_replica_view (KiltTrainPage *self);
/* The view of chart @which (they share x range, cursor and zoom). */
GtkWidget *kilt_train_page_get_chart_view (KiltTrainPage *self, KiltTrainChart which);
/* What every chart's x axis counts, as the X axis choice sets it. */
void kilt_train_page_set_x_mode (KiltTrainPage *self, KiltChartXMode mode);
/* Whether the charts are zoomed, so that Reset Zoom does something. */
gboolean kilt_train_page_get_can_reset_zoom (KiltTrainPage *self);
/* The end-of-run summary, one "Name: value" line each; NULL while none is shown. Free it. */
char *kilt_train_page_get_summary (KiltTrainPage *self);

G_END_DECLS
