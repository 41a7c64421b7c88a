/* Train page: progress, live charts (loss, accuracy, memory, throughput, busy), timings, log. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-train-page"

#include "kilt-train-page.h"
#include "kilt-chart-view.h"
#include "kilt-format.h"

#include <math.h>
#include <string.h>

struct _KiltTrainPage
{
  AdwBin parent_instance;

  GtkRevealer *error_revealer;
  GtkLabel *error_label;
  GtkLabel *status_label;
  GtkLabel *detail_label;
  GtkProgressBar *progress;
  GtkWidget *pause_button;
  GtkWidget *stop_button;
  GtkScale *smoothing_scale;
  GtkCheckButton *log_check;
  GtkCheckButton *oom_check;
  GtkGrid *chart_grid;
  GtkGrid *timing_grid;

  GSettings *settings;
  KiltChartView *views[KILT_TRAIN_N_CHARTS];
  GtkWidget *focus_chart;
  GtkTextBuffer *log;
  guint steps_per_epoch;
  guint epochs;
  guint vendor_series;
  char *device_name;
  char *empty_texts[KILT_TRAIN_N_CHARTS]; /* what an empty chart says before a run */
  /* The last step report: its epoch, step and running means over the epoch so far, from
   * which the next report's figures over the steps between them are taken. */
  guint prev_epoch, prev_step;
  double prev_loss, prev_accuracy;
  gboolean paused;               /* as the window last set it */
  KiltEvent last_step;           /* the last step report of the run going on (epoch 0: none yet) */
  KiltEvent last_epoch;          /* the last finished epoch's figures (epoch 0: none yet) */
  guint seq_index, seq_count;    /* a run of a sequence (compare devices) */
  KiltReplicaView *replica_view; /* a run on several devices: each one's part */
};

G_DEFINE_FINAL_TYPE (KiltTrainPage, kilt_train_page, ADW_TYPE_BIN)

static KiltChart *
chart (KiltTrainPage *self, KiltTrainChart which)
{
  return kilt_chart_view_get_chart (self->views[which]);
}

static void
on_chart_enter (GtkEventControllerMotion *motion, double x, double y, KiltTrainPage *self)
{
  self->focus_chart = gtk_event_controller_get_widget (GTK_EVENT_CONTROLLER (motion));
}

static GtkWidget *
chart_card (KiltTrainPage *self, KiltTrainChart which, KiltChart *c)
{
  GtkWidget *frame = gtk_frame_new (NULL);
  GtkWidget *view = kilt_chart_view_new (c);
  GtkEventController *motion = gtk_event_controller_motion_new ();

  g_signal_connect (motion, "enter", G_CALLBACK (on_chart_enter), self);
  gtk_widget_add_controller (view, motion);
  gtk_widget_set_size_request (view, -1, 230);
  gtk_widget_add_css_class (frame, "chart-card");
  gtk_frame_set_child (GTK_FRAME (frame), view);
  self->views[which] = KILT_CHART_VIEW (view);
  return frame;
}

static char *
format_eta (double seconds)
{
  gint64 s = (gint64)llround (seconds);

  if (!isfinite (seconds) || seconds < 0)
    return g_strdup ("—");
  if (s >= 3600)
    return g_strdup_printf ("%d:%02d:%02d", (int)(s / 3600), (int)(s / 60 % 60), (int)(s % 60));
  return g_strdup_printf ("%d:%02d", (int)(s / 60), (int)(s % 60));
}

static void
show_timings (KiltTrainPage *self, GArray *timings)
{
  const char *heads[] = { "Layer", "Type", "Forward", "Backward", "Update", "Share" };
  double total = 0;
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->timing_grid))))
    gtk_grid_remove (self->timing_grid, child);
  for (int c = 0; c < 6; c++)
    {
      GtkWidget *l = gtk_label_new (heads[c]);
      gtk_label_set_xalign (GTK_LABEL (l), c >= 2 ? 1 : 0);
      gtk_widget_set_hexpand (l, c == 0);
      gtk_widget_add_css_class (l, "heading");
      gtk_grid_attach (self->timing_grid, l, c, 0, 1, 1);
    }
  if (timings == NULL || timings->len == 0)
    {
      GtkWidget *l = gtk_label_new ("Per-layer device times appear here while a run is profiled.");
      gtk_widget_add_css_class (l, "dim-label");
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_grid_attach (self->timing_grid, l, 0, 1, 6, 1);
      return;
    }
  for (guint i = 0; i < timings->len; i++)
    {
      KiltLayerTiming *t = &g_array_index (timings, KiltLayerTiming, i);
      total += t->forward_ms + t->backward_ms + t->update_ms;
    }
  for (guint i = 0; i < timings->len; i++)
    {
      KiltLayerTiming *t = &g_array_index (timings, KiltLayerTiming, i);
      double sum = t->forward_ms + t->backward_ms + t->update_ms;
      g_autofree char *f = g_strdup_printf ("%.3f ms", t->forward_ms);
      g_autofree char *b = g_strdup_printf ("%.3f ms", t->backward_ms);
      g_autofree char *u = g_strdup_printf ("%.3f ms", t->update_ms);
      g_autofree char *s = g_strdup_printf ("%.1f%%", total > 0 ? 100 * sum / total : 0);
      g_autofree char *type
          = t->algo ? g_strdup_printf ("%s · %s", t->type, t->algo) : g_strdup (t->type);
      const char *cells[] = { t->layer, type, f, b, u, s };
      for (int c = 0; c < 6; c++)
        {
          GtkWidget *l = gtk_label_new (cells[c]);
          gtk_label_set_xalign (GTK_LABEL (l), c >= 2 ? 1 : 0);
          if (c == 1)
            gtk_widget_add_css_class (l, "dim-label");
          gtk_grid_attach (self->timing_grid, l, c, i + 1, 1, 1);
        }
    }
}

void
kilt_train_page_reset (KiltTrainPage *self, const char *title, guint64 capacity)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  self->prev_epoch = self->prev_step = 0;
  memset (&self->last_step, 0, sizeof self->last_step);
  memset (&self->last_epoch, 0, sizeof self->last_epoch);
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    {
      kilt_chart_clear (chart (self, i));
      kilt_chart_set_empty_text (chart (self, i), self->empty_texts[i]);
      kilt_chart_view_update (self->views[i]);
    }
  self->seq_index = 0;
  self->seq_count = 0;
  if (capacity)
    {
      g_autofree char *cap = g_format_size_full (capacity, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *label = g_strdup_printf ("device capacity %s", cap);
      kilt_chart_set_marker (chart (self, KILT_TRAIN_CHART_MEMORY), (double)capacity, label);
    }
  else
    kilt_chart_clear_marker (chart (self, KILT_TRAIN_CHART_MEMORY));
  self->steps_per_epoch = 0;
  gtk_label_set_text (self->status_label, title ? title : "Starting");
  gtk_label_set_text (self->detail_label, "Compiling kernels and planning memory…");
  gtk_progress_bar_set_fraction (self->progress, 0);
  gtk_text_buffer_set_text (self->log, "", -1);
  show_timings (self, NULL);
  kilt_replica_view_reset (self->replica_view);
  kilt_train_page_show_error (self, NULL);
}

void
kilt_train_page_log (KiltTrainPage *self, const char *line)
{
  GtkTextIter end;

  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  gtk_text_buffer_get_end_iter (self->log, &end);
  gtk_text_buffer_insert (self->log, &end, line, -1);
  gtk_text_buffer_insert (self->log, &end, "\n", 1);
}

/* A step report on the loss, accuracy, throughput and busy charts. */
static void
append_step (KiltTrainPage *self, guint epoch, guint step, double loss, double accuracy,
             double samples_per_second, double busy_percent)
{
  guint spe = self->steps_per_epoch ? self->steps_per_epoch : 1;
  double x = (epoch ? epoch - 1 : 0) + (double)step / spe;
  double run_loss = loss, run_accuracy = accuracy;

  /* A step report holds the running means over its epoch so far, which restart at each
   * epoch: drawn as they are, the curve jumps at every epoch boundary. Drawn instead: the
   * means over the steps since the previous report of the same epoch. */
  if (epoch == self->prev_epoch && step > self->prev_step && self->prev_step > 0
      && isfinite (self->prev_loss))
    {
      double n = step, m = self->prev_step;
      loss = (run_loss * n - self->prev_loss * m) / (n - m);
      accuracy = (run_accuracy * n - self->prev_accuracy * m) / (n - m);
    }
  self->prev_epoch = epoch;
  self->prev_step = step;
  self->prev_loss = run_loss;
  self->prev_accuracy = run_accuracy;
  kilt_chart_append (chart (self, KILT_TRAIN_CHART_LOSS), 0, x, loss);
  kilt_chart_append (chart (self, KILT_TRAIN_CHART_ACCURACY), 0, x, 100 * CLAMP (accuracy, 0, 1));
  if (samples_per_second > 0)
    kilt_chart_append (chart (self, KILT_TRAIN_CHART_THROUGHPUT), 0, x, samples_per_second);
  if (isfinite (busy_percent) && busy_percent > 0)
    kilt_chart_append (chart (self, KILT_TRAIN_CHART_BUSY), 0, x, busy_percent);
}

void
kilt_train_page_show_history (KiltTrainPage *self, const KiltRun *run)
{
  g_autofree char *line = NULL;

  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  g_return_if_fail (run != NULL);
  if (run->record.steps_per_epoch)
    self->steps_per_epoch = run->record.steps_per_epoch;
  for (guint i = 0; run->steps && i < run->steps->len; i++)
    {
      const KiltStepRecord *st = &g_array_index (run->steps, KiltStepRecord, i);
      append_step (self, st->epoch, st->step, st->loss, st->accuracy, st->samples_per_second, NAN);
    }
  for (guint i = 0; i < run->epochs->len; i++)
    {
      const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, i);
      /* Without sampled steps, the epoch's own figures make the training curve. */
      if (run->steps == NULL || run->steps->len == 0)
        append_step (self, e->epoch, self->steps_per_epoch ? self->steps_per_epoch : 1,
                     e->train_loss, e->train_accuracy, e->samples_per_second, e->busy_percent);
      if (!isnan (e->val_loss))
        kilt_chart_append (chart (self, KILT_TRAIN_CHART_LOSS), 1, e->epoch, e->val_loss);
      if (!isnan (e->val_accuracy))
        kilt_chart_append (chart (self, KILT_TRAIN_CHART_ACCURACY), 1, e->epoch,
                           100 * e->val_accuracy);
    }
  line = g_strdup_printf (
      "info: goes on from run #%" G_GINT64_FORMAT " (%s) after its epoch %u; "
      "the curves up to there are that run's",
      run->id, run->record.name,
      run->epochs->len ? g_array_index (run->epochs, KiltEpochRecord, run->epochs->len - 1).epoch
                       : 0);
  kilt_train_page_log (self, line);
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    kilt_chart_view_update (self->views[i]);
}

void
kilt_train_page_apply (KiltTrainPage *self, const KiltSessionUpdate *u, double elapsed)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));

  if (u->started)
    {
      g_autofree char *plan = g_format_size_full (u->first.planned_bytes, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *params = kilt_format_thousands (u->first.n_params);
      g_autofree char *line
          = g_strdup_printf ("info: kernels %s in %.2f s; %s parameters; plan %s",
                             u->first.compile_cached ? "loaded from cache" : "compiled",
                             u->first.compile_seconds, params, plan);
      self->steps_per_epoch = u->first.steps_per_epoch;
      kilt_train_page_log (self, line);
    }
  if (u->replicas)
    kilt_replica_view_update (self->replica_view, (const KiltReplicaShare *)u->replicas->data,
                              u->replicas->len, u->dist_step_ms, u->alone_step_ms);
  for (guint i = 0; i < u->steps->len; i++)
    {
      const KiltEvent *e = &g_array_index (u->steps, KiltEvent, i);
      append_step (self, e->epoch, e->step, e->loss, e->accuracy, e->samples_per_second,
                   e->busy_percent);
    }
  for (guint i = 0; i < u->epochs->len; i++)
    {
      const KiltEvent *e = &g_array_index (u->epochs, KiltEvent, i);
      g_autofree char *line = g_strdup_printf (
          "info: epoch %u: loss %.4f, accuracy %.2f%%, validation loss %.4f, accuracy %.2f%% "
          "(%.1f s)",
          e->epoch, e->loss, 100 * e->accuracy, e->val_loss, 100 * e->val_accuracy,
          e->epoch_seconds);
      /* The profiler's busy share is known at least at each epoch's end. */
      if (isfinite (e->busy_percent))
        kilt_chart_append (chart (self, KILT_TRAIN_CHART_BUSY), 0, e->epoch, e->busy_percent);
      if (!isnan (e->val_loss))
        kilt_chart_append (chart (self, KILT_TRAIN_CHART_LOSS), 1, e->epoch, e->val_loss);
      if (!isnan (e->val_accuracy))
        kilt_chart_append (chart (self, KILT_TRAIN_CHART_ACCURACY), 1, e->epoch,
                           100 * e->val_accuracy);
      kilt_train_page_log (self, line);
    }
  for (guint i = 0; i < u->memory->len; i++)
    {
      const KiltEvent *e = &g_array_index (u->memory, KiltEvent, i);
      KiltChart *mem = chart (self, KILT_TRAIN_CHART_MEMORY);
      /* Lower layers first: each area stacks on the one before. */
      for (guint c = 0; c < KILT_MEM_N_CATEGORIES; c++)
        kilt_chart_append (mem, c, e->epoch_seconds, (double)e->mem.live[c]);
      if (e->vendor_used_bytes >= 0 && self->vendor_series == G_MAXUINT)
        self->vendor_series = kilt_chart_add_series (mem, "driver's figure", KILT_CHART_LINE,
                                                     (const double[]){ 0.2, 0.2, 0.2 });
      if (e->vendor_used_bytes >= 0)
        kilt_chart_append (mem, self->vendor_series, e->epoch_seconds,
                           (double)e->vendor_used_bytes);
    }
  for (guint i = 0; i < u->logs->len; i++)
    kilt_train_page_log (self, g_ptr_array_index (u->logs, i));
  if (u->timings)
    show_timings (self, u->timings);

  if (u->steps->len)
    self->last_step = g_array_index (u->steps, KiltEvent, u->steps->len - 1);
  if (u->epochs->len)
    self->last_epoch = g_array_index (u->epochs, KiltEvent, u->epochs->len - 1);
  if (u->has_last && !u->run_finished)
    {
      const KiltEvent *e = &u->last;
      guint spe = self->steps_per_epoch ? self->steps_per_epoch : 1;
      double total = self->epochs ? self->epochs : e->epoch;
      double done = (e->epoch - 1) + (double)e->step / spe;
      g_autofree char *status
          = self->seq_count > 1
                ? g_strdup_printf ("Device %u of %u · Epoch %u of %u", self->seq_index + 1,
                                   self->seq_count, e->epoch, self->epochs)
                : g_strdup_printf ("Epoch %u of %u", e->epoch, self->epochs);
      g_autofree char *eta = format_eta (e->eta_seconds);
      g_autofree char *detail = g_strdup_printf (
          "Step %u of %u · %.0f samples/s · %s left · loss %.4f · accuracy %.1f%%", e->step, spe,
          e->samples_per_second, eta, e->loss, 100 * e->accuracy);
      gtk_label_set_text (self->status_label, status);
      gtk_label_set_text (self->detail_label, detail);
      gtk_progress_bar_set_fraction (self->progress, CLAMP (done / MAX (total, 1), 0, 1));
      /* Reports still in flight when Pause was pressed must not bring back an ETA. */
      if (self->paused)
        kilt_train_page_set_state (self, TRUE, TRUE);
    }
  if (u->run_finished)
    {
      g_autofree char *took = format_eta (elapsed);
      g_autofree char *detail = NULL;
      const char *status = u->status == KILT_RUN_FINISHED  ? "Finished"
                           : u->status == KILT_RUN_STOPPED ? "Stopped"
                                                           : "Failed";
      const char *empty = u->status == KILT_RUN_FAILED
                              ? "No figures: the run failed before this was measured"
                              : "No figures: the run was stopped before this was measured";

      /* A chart left empty says why, rather than promising figures that will not come. */
      if (u->status != KILT_RUN_FINISHED)
        for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
          if (kilt_chart_get_n_points (chart (self, i), 0) == 0)
            kilt_chart_set_empty_text (chart (self, i), empty);

      if (self->last_epoch.epoch)
        {
          /* The end of a run says how it ended up: the last epoch's figures. */
          const KiltEvent *e = &self->last_epoch;
          GString *d = g_string_new (NULL);
          g_string_append_printf (d, "Took %s · %u epoch%s · loss %.4f · accuracy %.1f%%", took,
                                  e->epoch, e->epoch == 1 ? "" : "s", e->loss, 100 * e->accuracy);
          if (!isnan (e->val_accuracy))
            g_string_append_printf (d, " · validation accuracy %.1f%%", 100 * e->val_accuracy);
          if (e->samples_per_second > 0)
            g_string_append_printf (d, " · %.0f samples/s", e->samples_per_second);
          detail = g_string_free (d, FALSE);
        }
      else
        detail = g_strdup_printf ("Took %s", took);
      gtk_label_set_text (self->status_label, status);
      gtk_label_set_text (self->detail_label, detail);
      if (u->status == KILT_RUN_FINISHED)
        gtk_progress_bar_set_fraction (self->progress, 1);
      if (u->error)
        {
          g_autofree char *line = g_strdup_printf ("error: %s", u->error->message);
          kilt_train_page_show_error (self, u->error->message);
          kilt_train_page_log (self, line);
        }
    }
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    kilt_chart_view_update (self->views[i]);
}

void
kilt_train_page_set_state (KiltTrainPage *self, gboolean running, gboolean paused)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  gtk_button_set_label (GTK_BUTTON (self->pause_button), paused ? "_Resume" : "_Pause");
  /* Red only while there is a run to stop: an insensitive red button still looked armed. */
  if (running)
    gtk_widget_add_css_class (self->stop_button, "destructive-action");
  else
    gtk_widget_remove_css_class (self->stop_button, "destructive-action");
  self->paused = running && paused;
  if (running && paused)
    {
      /* Where it stands, and no time left: a paused run is not going to end. */
      const KiltEvent *e = &self->last_step;
      guint spe = self->steps_per_epoch ? self->steps_per_epoch : 1;
      g_autofree char *status
          = e->epoch ? g_strdup_printf ("Paused · Epoch %u of %u", e->epoch, self->epochs)
                     : g_strdup ("Paused");
      g_autofree char *detail
          = e->epoch ? g_strdup_printf ("Step %u of %u · loss %.4f · accuracy %.1f%% · Resume "
                                        "(Ctrl+P) goes on from here",
                                        e->step, spe, e->loss, 100 * e->accuracy)
                     : g_strdup ("Resume (Ctrl+P) goes on from here");
      gtk_label_set_text (self->status_label, status);
      gtk_label_set_text (self->detail_label, detail);
    }
}

void
kilt_train_page_show_error (KiltTrainPage *self, const char *message)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  gtk_label_set_text (self->error_label, message ? message : "");
  gtk_revealer_set_reveal_child (self->error_revealer, message != NULL);
}

void
kilt_train_page_set_device_type (KiltTrainPage *self, const char *type)
{
  gboolean cpu = g_strcmp0 (type, "CPU") == 0;

  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  /* A CPU device runs each kernel as it is queued, so its queue is busy nearly all the time:
   * the flat line says so rather than looking like a GPU kept full. */
  kilt_chart_set_title (chart (self, KILT_TRAIN_CHART_BUSY),
                        cpu ? "Device busy (a CPU is busy while work is queued)" : "Device busy");
  kilt_chart_view_update (self->views[KILT_TRAIN_CHART_BUSY]);
}

void
kilt_train_page_set_eval_name (KiltTrainPage *self, const char *name)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  kilt_chart_set_series_name (chart (self, KILT_TRAIN_CHART_LOSS), 1, name);
  kilt_chart_set_series_name (chart (self, KILT_TRAIN_CHART_ACCURACY), 1, name);
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    kilt_chart_view_update (self->views[i]);
}

const char *
kilt_train_page_get_status (KiltTrainPage *self)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  return gtk_label_get_text (self->status_label);
}

const char *
kilt_train_page_get_detail (KiltTrainPage *self)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  return gtk_label_get_text (self->detail_label);
}

gboolean
kilt_train_page_get_stop_armed (KiltTrainPage *self)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), FALSE);
  return gtk_widget_has_css_class (self->stop_button, "destructive-action");
}

KiltChart *
kilt_train_page_get_chart (KiltTrainPage *self, KiltTrainChart which)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  g_return_val_if_fail (which < KILT_TRAIN_N_CHARTS, NULL);
  return chart (self, which);
}

KiltReplicaView *
kilt_train_page_get_replica_view (KiltTrainPage *self)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  return self->replica_view;
}

GtkWidget *
kilt_train_page_get_focus_chart (KiltTrainPage *self)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  return self->focus_chart ? self->focus_chart : GTK_WIDGET (self->views[0]);
}

void
kilt_train_page_set_epochs (KiltTrainPage *self, guint epochs)
{
  self->epochs = epochs;
}

void
kilt_train_page_set_sequence (KiltTrainPage *self, guint index, guint count)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  self->seq_index = index;
  self->seq_count = count;
}

static void
action_dismiss_error (GtkWidget *widget, const char *name, GVariant *param)
{
  kilt_train_page_show_error (KILT_TRAIN_PAGE (widget), NULL);
}

static void
apply_chart_options (KiltTrainPage *self)
{
  double smoothing = gtk_range_get_value (GTK_RANGE (self->smoothing_scale));

  kilt_chart_set_smoothing (chart (self, KILT_TRAIN_CHART_LOSS), smoothing);
  kilt_chart_set_smoothing (chart (self, KILT_TRAIN_CHART_ACCURACY), smoothing);
  kilt_chart_set_smoothing (chart (self, KILT_TRAIN_CHART_THROUGHPUT), smoothing);
  kilt_chart_set_log_scale (chart (self, KILT_TRAIN_CHART_LOSS),
                            gtk_check_button_get_active (self->log_check));
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    kilt_chart_view_update (self->views[i]);
}

static void
kilt_train_page_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), KILT_TYPE_TRAIN_PAGE);
  G_OBJECT_CLASS (kilt_train_page_parent_class)->dispose (object);
}

static void
kilt_train_page_finalize (GObject *object)
{
  KiltTrainPage *self = KILT_TRAIN_PAGE (object);

  g_clear_object (&self->settings);
  g_free (self->device_name);
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    g_free (self->empty_texts[i]);
  G_OBJECT_CLASS (kilt_train_page_parent_class)->finalize (object);
}

static void
kilt_train_page_class_init (KiltTrainPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = kilt_train_page_dispose;
  object_class->finalize = kilt_train_page_finalize;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/kilt/Kilt/ui/kilt-train-page.ui");
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, error_revealer);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, error_label);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, status_label);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, detail_label);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, progress);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, pause_button);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, stop_button);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, smoothing_scale);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, log_check);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, oom_check);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, chart_grid);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, timing_grid);
  gtk_widget_class_install_action (widget_class, "train.dismiss-error", NULL, action_dismiss_error);
}

static void
kilt_train_page_init (KiltTrainPage *self)
{
  const char *mem_names[KILT_MEM_N_CATEGORIES]
      = { "weights", "gradients", "optimizer", "activations", "workspace", "data set" };
  GtkWidget *log_frame, *log_scroll, *log_view;
  KiltChart *c;

  gtk_widget_init_template (GTK_WIDGET (self));
  self->settings = g_settings_new ("org.kilt.Kilt");
  /* Above the charts, shown only while a run on several devices reports them. */
  self->replica_view = KILT_REPLICA_VIEW (kilt_replica_view_new ());
  gtk_widget_insert_before (GTK_WIDGET (self->replica_view),
                            gtk_widget_get_parent (GTK_WIDGET (self->chart_grid)),
                            GTK_WIDGET (self->chart_grid));

  c = kilt_chart_new ("Loss");
  kilt_chart_set_x_axis (c, "Epoch", KILT_AXIS_NUMBER);
  kilt_chart_add_series (c, "training", KILT_CHART_LINE, NULL);
  kilt_chart_add_series (c, "validation", KILT_CHART_LINE, NULL);
  /* Validation is measured once an epoch: its points are marked and never smoothed. */
  kilt_chart_set_series_points (c, 1, TRUE);
  self->empty_texts[KILT_TRAIN_CHART_LOSS] = g_strdup ("Loss appears here once training starts");
  gtk_grid_attach (self->chart_grid, chart_card (self, KILT_TRAIN_CHART_LOSS, c), 0, 0, 1, 1);
  kilt_chart_unref (c);

  c = kilt_chart_new ("Accuracy");
  kilt_chart_set_x_axis (c, "Epoch", KILT_AXIS_NUMBER);
  kilt_chart_set_y_axis (c, NULL, KILT_AXIS_PERCENT);
  kilt_chart_add_series (c, "training", KILT_CHART_LINE, NULL);
  kilt_chart_add_series (c, "validation", KILT_CHART_LINE, NULL);
  kilt_chart_set_series_points (c, 1, TRUE);
  self->empty_texts[KILT_TRAIN_CHART_ACCURACY]
      = g_strdup ("Accuracy appears here once training starts");
  gtk_grid_attach (self->chart_grid, chart_card (self, KILT_TRAIN_CHART_ACCURACY, c), 1, 0, 1, 1);
  kilt_chart_unref (c);

  c = kilt_chart_new ("Device memory");
  kilt_chart_set_x_axis (c, "Time", KILT_AXIS_SECONDS);
  kilt_chart_set_y_axis (c, NULL, KILT_AXIS_BYTES);
  for (guint i = 0; i < KILT_MEM_N_CATEGORIES; i++)
    kilt_chart_add_series (c, mem_names[i], KILT_CHART_AREA, NULL);
  /* The driver's own used-memory figure joins only where the platform gives one. */
  self->vendor_series = G_MAXUINT;
  self->empty_texts[KILT_TRAIN_CHART_MEMORY]
      = g_strdup ("Memory by category appears here during a run");
  gtk_grid_attach (self->chart_grid, chart_card (self, KILT_TRAIN_CHART_MEMORY, c), 0, 1, 1, 1);
  kilt_chart_unref (c);

  c = kilt_chart_new ("Throughput");
  kilt_chart_set_x_axis (c, "Epoch", KILT_AXIS_NUMBER);
  kilt_chart_set_y_axis (c, "samples/s", KILT_AXIS_NUMBER);
  kilt_chart_add_series (c, "samples per second", KILT_CHART_LINE, NULL);
  self->empty_texts[KILT_TRAIN_CHART_THROUGHPUT]
      = g_strdup ("Samples per second appear here during a run");
  gtk_grid_attach (self->chart_grid, chart_card (self, KILT_TRAIN_CHART_THROUGHPUT, c), 1, 1, 1, 1);
  kilt_chart_unref (c);

  c = kilt_chart_new ("Device busy");
  kilt_chart_set_x_axis (c, "Epoch", KILT_AXIS_NUMBER);
  kilt_chart_set_y_axis (c, NULL, KILT_AXIS_PERCENT);
  kilt_chart_set_y_range (c, 0, 100);
  kilt_chart_add_series (c, "busy", KILT_CHART_AREA, (const double[]){ 0.18, 0.76, 0.49 });
  self->empty_texts[KILT_TRAIN_CHART_BUSY]
      = g_strdup ("Share of time the device is busy, when profiling");
  gtk_grid_attach (self->chart_grid, chart_card (self, KILT_TRAIN_CHART_BUSY, c), 0, 2, 1, 1);
  kilt_chart_unref (c);

  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    kilt_chart_set_empty_text (chart (self, i), self->empty_texts[i]);

  log_frame = gtk_frame_new (NULL);
  log_scroll = gtk_scrolled_window_new ();
  log_view = gtk_text_view_new ();
  self->log = gtk_text_view_get_buffer (GTK_TEXT_VIEW (log_view));
  gtk_text_view_set_editable (GTK_TEXT_VIEW (log_view), FALSE);
  gtk_text_view_set_wrap_mode (GTK_TEXT_VIEW (log_view), GTK_WRAP_WORD_CHAR);
  gtk_text_view_set_monospace (GTK_TEXT_VIEW (log_view), TRUE);
  gtk_text_view_set_left_margin (GTK_TEXT_VIEW (log_view), 8);
  gtk_text_view_set_top_margin (GTK_TEXT_VIEW (log_view), 8);
  gtk_widget_add_css_class (log_view, "log-view");
  gtk_accessible_update_property (GTK_ACCESSIBLE (log_view), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  "Run log", -1);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (log_scroll), log_view);
  gtk_frame_set_child (GTK_FRAME (log_frame), log_scroll);
  {
    /* Named, and not a blank card before the first run. */
    GtkWidget *title = gtk_label_new ("Log");
    gtk_widget_add_css_class (title, "heading");
    gtk_frame_set_label_widget (GTK_FRAME (log_frame), title);
    gtk_text_buffer_set_text (self->log,
                              "Messages from the run (kernel builds, epochs, errors) "
                              "appear here.",
                              -1);
  }
  gtk_grid_attach (self->chart_grid, log_frame, 1, 2, 1, 1);
  show_timings (self, NULL);

  g_settings_bind (self->settings, "chart-smoothing",
                   gtk_range_get_adjustment (GTK_RANGE (self->smoothing_scale)), "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "chart-log-scale", self->log_check, "active",
                   G_SETTINGS_BIND_DEFAULT);
  /* Read by the window when a run starts (its configuration's on_oom). */
  g_settings_bind (self->settings, "resume-smaller-on-oom", self->oom_check, "active",
                   G_SETTINGS_BIND_DEFAULT);
  g_signal_connect_swapped (self->smoothing_scale, "value-changed",
                            G_CALLBACK (apply_chart_options), self);
  g_signal_connect_swapped (self->log_check, "toggled", G_CALLBACK (apply_chart_options), self);
  apply_chart_options (self);
}
