/* Train page: progress, live charts (loss, accuracy, memory, throughput, busy, learning rate),
 * the end-of-run summary, timings, log. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-train-page"

#include "kilt-train-page.h"
#include "kilt-chart-view.h"
#include "kilt-format.h"

#include <math.h>
#include <string.h>

/* What the end-of-run summary is made of, gathered from the epochs as they end. */
typedef struct
{
  guint epochs;             /* epochs finished in this run */
  double best_val_accuracy; /* NaN while no epoch was validated */
  guint best_val_accuracy_epoch;
  double best_val_loss;
  guint best_val_loss_epoch;
  double train_seconds; /* training time, paused time left out */
  double rate_sum;      /* samples/s of each epoch, summed */
  guint rate_n;
} Summary;

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
  GtkDropDown *x_choice;
  GtkWidget *reset_zoom_button;
  GtkRevealer *summary_revealer;
  GtkLabel *summary_title;
  GtkGrid *summary_grid;
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
  char *eval_name;                        /* what the second curves are measured on */
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
  /* Where the last step report stood on every x axis (memory samples are taken with it), and
   * what a resumed run's own clock starts from: its parent's training time. */
  KiltChartStamp last_stamp;
  double time_offset;
  Summary summary;
};

G_DEFINE_FINAL_TYPE (KiltTrainPage, kilt_train_page, ADW_TYPE_BIN)

static const char *const x_mode_keys[KILT_CHART_N_X_MODES] = { "step", "epoch", "time" };

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

/* A run's length: seconds with a decimal while short (a test run of 0.4 s is not "0:00"). */
static char *
format_duration (double seconds)
{
  if (isfinite (seconds) && seconds >= 0 && seconds < 60)
    return g_strdup_printf ("%.1f s", seconds);
  return format_eta (seconds);
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

/* ---- the end-of-run summary ---- */

static void
summary_clear (Summary *m)
{
  memset (m, 0, sizeof *m);
  m->best_val_accuracy = m->best_val_loss = NAN;
}

static void
summary_add_epoch (Summary *m, const KiltEvent *e)
{
  m->epochs = MAX (m->epochs, e->epoch);
  if (!isnan (e->val_accuracy) && !(e->val_accuracy <= m->best_val_accuracy))
    m->best_val_accuracy = e->val_accuracy, m->best_val_accuracy_epoch = e->epoch;
  if (!isnan (e->val_loss) && !(e->val_loss >= m->best_val_loss))
    m->best_val_loss = e->val_loss, m->best_val_loss_epoch = e->epoch;
  if (isfinite (e->elapsed_seconds))
    m->train_seconds = MAX (m->train_seconds, e->elapsed_seconds);
  if (e->samples_per_second > 0)
    m->rate_sum += e->samples_per_second, m->rate_n++;
}

static void
summary_row (KiltTrainPage *self, guint row, guint col, const char *name, const char *value)
{
  GtkWidget *n = gtk_label_new (name);
  GtkWidget *v = gtk_label_new (value);

  gtk_label_set_xalign (GTK_LABEL (n), 0);
  gtk_label_set_xalign (GTK_LABEL (v), 0);
  gtk_label_set_wrap (GTK_LABEL (v), TRUE);
  gtk_label_set_selectable (GTK_LABEL (v), TRUE);
  gtk_widget_set_hexpand (v, TRUE);
  gtk_widget_add_css_class (n, "dim-label");
  gtk_widget_add_css_class (v, "stat-value");
  gtk_grid_attach (self->summary_grid, n, col * 2, row, 1, 1);
  gtk_grid_attach (self->summary_grid, v, col * 2 + 1, row, 1, 1);
}

static char *
format_pair (const char *fmt_train, double train, const char *fmt_val, double val,
             const char *val_name)
{
  GString *t = g_string_new (NULL);

  if (isfinite (train))
    g_string_append_printf (t, fmt_train, train);
  if (isfinite (val))
    {
      g_string_append (t, t->len ? " · " : "");
      g_string_append_printf (t, fmt_val, val);
      g_string_append_printf (t, " %s", val_name);
    }
  return g_string_free (t, FALSE);
}

/* How the run ended up: final and best figures, training time, throughput. */
static void
show_summary (KiltTrainPage *self, KiltRunStatus status)
{
  const Summary *m = &self->summary;
  const KiltEvent *e = &self->last_epoch;
  const char *val_name = self->eval_name ? self->eval_name : "validation";
  g_autofree char *title = NULL;
  g_autofree char *loss = NULL, *acc = NULL, *time = NULL, *rate = NULL;
  GtkWidget *child;
  guint row = 0;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->summary_grid))))
    gtk_grid_remove (self->summary_grid, child);
  if (e->epoch == 0)
    {
      gtk_revealer_set_reveal_child (self->summary_revealer, FALSE);
      return;
    }
  title = g_strdup_printf ("Run Summary · %s after %u epoch%s",
                           status == KILT_RUN_FINISHED ? "finished" : "stopped", m->epochs,
                           m->epochs == 1 ? "" : "s");
  gtk_label_set_text (self->summary_title, title);
  loss = format_pair ("%.4f training", e->loss, "%.4f", e->val_loss, val_name);
  acc = format_pair ("%.1f%% training", 100 * e->accuracy, "%.1f%%", 100 * e->val_accuracy,
                     val_name);
  summary_row (self, row, 0, "Final loss", loss);
  summary_row (self, row++, 1, "Final accuracy", acc);
  if (!isnan (m->best_val_accuracy))
    {
      g_autofree char *ba = g_strdup_printf ("%.1f%% at epoch %u", 100 * m->best_val_accuracy,
                                             m->best_val_accuracy_epoch);
      g_autofree char *bl
          = g_strdup_printf ("%.4f at epoch %u", m->best_val_loss, m->best_val_loss_epoch);
      g_autofree char *na = g_strdup_printf ("Best %s accuracy", val_name);
      g_autofree char *nl = g_strdup_printf ("Best %s loss", val_name);
      summary_row (self, row, 0, nl, bl);
      summary_row (self, row++, 1, na, ba);
    }
  {
    g_autofree char *d = format_duration (m->train_seconds);
    time = g_strdup_printf ("%s (paused time left out)", d);
  }
  if (m->rate_n)
    {
      g_autofree char *n = kilt_format_thousands ((guint64)llround (m->rate_sum / m->rate_n));
      rate = g_strdup_printf ("%s samples/s (mean of the epochs)", n);
    }
  else
    rate = g_strdup ("–");
  summary_row (self, row, 0, "Training time", time);
  summary_row (self, row++, 1, "Throughput", rate);
  gtk_revealer_set_reveal_child (self->summary_revealer, TRUE);
}

char *
kilt_train_page_get_summary (KiltTrainPage *self)
{
  GString *t;
  guint i = 0;

  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  if (!gtk_revealer_get_reveal_child (self->summary_revealer))
    return NULL;
  t = g_string_new (gtk_label_get_text (self->summary_title));
  for (GtkWidget *c = gtk_widget_get_first_child (GTK_WIDGET (self->summary_grid)); c;
       c = gtk_widget_get_next_sibling (c), i++)
    g_string_append_printf (t, i % 2 ? ": %s" : "\n%s", gtk_label_get_text (GTK_LABEL (c)));
  return g_string_free (t, FALSE);
}

void
kilt_train_page_reset (KiltTrainPage *self, const char *title, guint64 capacity)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  self->prev_epoch = self->prev_step = 0;
  memset (&self->last_step, 0, sizeof self->last_step);
  memset (&self->last_epoch, 0, sizeof self->last_epoch);
  memset (&self->last_stamp, 0, sizeof self->last_stamp);
  self->time_offset = 0;
  /* The charts' clear drops any zoom. */
  gtk_widget_set_sensitive (self->reset_zoom_button, FALSE);
  summary_clear (&self->summary);
  show_summary (self, KILT_RUN_FINISHED);
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

/* Where a report of @epoch and @step (within it; @global_step 0: not known) stands on every
 * x axis, @seconds into this run. */
static KiltChartStamp
stamp_at (KiltTrainPage *self, guint epoch, guint step, guint64 global_step, double seconds)
{
  guint spe = self->steps_per_epoch ? self->steps_per_epoch : 1;
  KiltChartStamp at;

  at.epoch = (epoch ? epoch - 1 : 0) + (double)step / spe;
  at.step = global_step ? (double)global_step : (epoch ? epoch - 1 : 0) * (double)spe + step;
  at.seconds = isfinite (seconds) ? seconds + self->time_offset : NAN;
  return at;
}

/* A step report on the loss, accuracy, throughput, busy and learning-rate charts. */
static void
append_step (KiltTrainPage *self, const KiltChartStamp *at, guint epoch, guint step, double loss,
             double accuracy, double samples_per_second, double busy_percent, double lr)
{
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
  self->last_stamp = *at;
  kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_LOSS), 0, at, loss);
  kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_ACCURACY), 0, at,
                        100 * CLAMP (accuracy, 0, 1));
  if (samples_per_second > 0)
    kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_THROUGHPUT), 0, at, samples_per_second);
  if (isfinite (busy_percent) && busy_percent > 0)
    kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_BUSY), 0, at, busy_percent);
  if (isfinite (lr) && lr > 0)
    kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_LEARNING_RATE), 0, at, lr);
}

/* An epoch's validation figures, where they were measured. */
static void
append_validation (KiltTrainPage *self, const KiltChartStamp *at, double val_loss,
                   double val_accuracy)
{
  if (!isnan (val_loss))
    kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_LOSS), 1, at, val_loss);
  if (!isnan (val_accuracy))
    kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_ACCURACY), 1, at, 100 * val_accuracy);
}

void
kilt_train_page_show_history (KiltTrainPage *self, const KiltRun *run)
{
  g_autofree char *line = NULL;

  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  g_return_if_fail (run != NULL);
  if (run->record.steps_per_epoch)
    self->steps_per_epoch = run->record.steps_per_epoch;
  self->time_offset = 0;
  for (guint i = 0; run->steps && i < run->steps->len; i++)
    {
      const KiltStepRecord *st = &g_array_index (run->steps, KiltStepRecord, i);
      KiltChartStamp at
          = stamp_at (self, st->epoch, st->step, st->global_step, st->elapsed_seconds);
      append_step (self, &at, st->epoch, st->step, st->loss, st->accuracy, st->samples_per_second,
                   NAN, st->learning_rate);
    }
  for (guint i = 0; i < run->epochs->len; i++)
    {
      const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, i);
      guint spe = self->steps_per_epoch ? self->steps_per_epoch : 1;
      KiltChartStamp at = stamp_at (self, e->epoch, spe, 0, e->elapsed_seconds);
      /* Without sampled steps, the epoch's own figures make the training curve. */
      if (run->steps == NULL || run->steps->len == 0)
        append_step (self, &at, e->epoch, spe, e->train_loss, e->train_accuracy,
                     e->samples_per_second, e->busy_percent, e->learning_rate);
      append_validation (self, &at, e->val_loss, e->val_accuracy);
    }
  /* The resumed run's clock goes on from where its parent's stopped. */
  self->time_offset = isfinite (self->last_stamp.seconds) ? self->last_stamp.seconds : 0;
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
      KiltChartStamp at = stamp_at (self, e->epoch, e->step, e->global_step, e->elapsed_seconds);
      append_step (self, &at, e->epoch, e->step, e->loss, e->accuracy, e->samples_per_second,
                   e->busy_percent, e->learning_rate);
      self->summary.train_seconds = MAX (self->summary.train_seconds, e->elapsed_seconds);
    }
  for (guint i = 0; i < u->epochs->len; i++)
    {
      const KiltEvent *e = &g_array_index (u->epochs, KiltEvent, i);
      g_autofree char *line = g_strdup_printf (
          "info: epoch %u: loss %.4f, accuracy %.2f%%, validation loss %.4f, accuracy %.2f%% "
          "(%.1f s)",
          e->epoch, e->loss, 100 * e->accuracy, e->val_loss, 100 * e->val_accuracy,
          e->epoch_seconds);
      KiltChartStamp at = stamp_at (self, e->epoch, e->step, e->global_step, e->elapsed_seconds);
      /* The epoch's end is a report of its last step too: a short epoch's last steps (or all of
       * them) came in no step report, and the training curve would stop short of its end. Not
       * when a later report was drawn already (one update holds the steps of both epochs). */
      if (e->epoch > self->prev_epoch
          || (e->epoch == self->prev_epoch && e->step > self->prev_step))
        append_step (self, &at, e->epoch, e->step, e->loss, e->accuracy, e->samples_per_second, NAN,
                     e->learning_rate);
      /* The profiler's busy share is known at least at each epoch's end. */
      if (isfinite (e->busy_percent))
        kilt_chart_append_at (chart (self, KILT_TRAIN_CHART_BUSY), 0, &at, e->busy_percent);
      append_validation (self, &at, e->val_loss, e->val_accuracy);
      summary_add_epoch (&self->summary, e);
      kilt_train_page_log (self, line);
    }
  for (guint i = 0; i < u->memory->len; i++)
    {
      const KiltEvent *e = &g_array_index (u->memory, KiltEvent, i);
      KiltChart *mem = chart (self, KILT_TRAIN_CHART_MEMORY);
      /* Lower layers first: each area stacks on the one before. */
      /* Taken just after a step report, so it stands where that report does. */
      KiltChartStamp stamp = stamp_at (self, e->epoch, e->step, e->global_step, e->elapsed_seconds);
      const KiltChartStamp *at = &stamp;
      for (guint c = 0; c < KILT_MEM_N_CATEGORIES; c++)
        kilt_chart_append_at (mem, c, at, (double)e->mem.live[c]);
      if (e->vendor_used_bytes >= 0 && self->vendor_series == G_MAXUINT)
        self->vendor_series = kilt_chart_add_series (mem, "driver's figure", KILT_CHART_LINE,
                                                     (const double[]){ 0.2, 0.2, 0.2 });
      if (e->vendor_used_bytes >= 0)
        kilt_chart_append_at (mem, self->vendor_series, at, (double)e->vendor_used_bytes);
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
      /* Training time with pauses left out when the run reported it (the kernel builds before
       * the first step are not training either); else the wall time since Start. */
      g_autofree char *took = format_duration (
          self->summary.train_seconds > 0 ? self->summary.train_seconds : elapsed);
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
            {
              g_autofree char *n = kilt_format_thousands ((guint64)llround (e->samples_per_second));
              g_string_append_printf (d, " · %s samples/s", n);
            }
          detail = g_string_free (d, FALSE);
        }
      else
        detail = g_strdup_printf ("Took %s", took);
      /* A run of a sequence says which device's run ended: a short one may end within the
       * update that brought its first step, and would otherwise never name its device. */
      if (self->seq_count > 1)
        {
          g_autofree char *which = g_strdup_printf ("Device %u of %u · %s", self->seq_index + 1,
                                                    self->seq_count, status);
          gtk_label_set_text (self->status_label, which);
        }
      else
        gtk_label_set_text (self->status_label, status);
      gtk_label_set_text (self->detail_label, detail);
      if (u->status == KILT_RUN_FINISHED || u->status == KILT_RUN_STOPPED)
        show_summary (self, u->status);
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
  g_free (self->eval_name);
  self->eval_name = g_strdup (name);
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

GtkWidget *
kilt_train_page_get_chart_view (KiltTrainPage *self, KiltTrainChart which)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), NULL);
  g_return_val_if_fail (which < KILT_TRAIN_N_CHARTS, NULL);
  return GTK_WIDGET (self->views[which]);
}

void
kilt_train_page_set_x_mode (KiltTrainPage *self, KiltChartXMode mode)
{
  g_return_if_fail (KILT_IS_TRAIN_PAGE (self));
  g_return_if_fail ((guint)mode < KILT_CHART_N_X_MODES);
  /* Through the choice, so that the setting and the charts follow it. */
  gtk_drop_down_set_selected (self->x_choice, mode);
}

static void
apply_x_mode (KiltTrainPage *self)
{
  guint mode = gtk_drop_down_get_selected (self->x_choice);

  if (mode >= KILT_CHART_N_X_MODES)
    return;
  for (guint i = 0; i < KILT_TRAIN_N_CHARTS; i++)
    {
      kilt_chart_set_x_mode (chart (self, i), mode);
      kilt_chart_view_update (self->views[i]);
    }
  g_settings_set_string (self->settings, "chart-x-axis", x_mode_keys[mode]);
  gtk_widget_set_sensitive (self->reset_zoom_button, FALSE);
}

static void
on_zoom_changed (KiltChartView *view, KiltTrainPage *self)
{
  gtk_widget_set_sensitive (self->reset_zoom_button, kilt_chart_view_get_zoomed (view));
}

gboolean
kilt_train_page_get_can_reset_zoom (KiltTrainPage *self)
{
  g_return_val_if_fail (KILT_IS_TRAIN_PAGE (self), FALSE);
  return gtk_widget_get_sensitive (self->reset_zoom_button);
}

static void
action_reset_zoom (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltTrainPage *self = KILT_TRAIN_PAGE (widget);
  kilt_chart_view_reset_zoom (self->views[0]);
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
  g_free (self->eval_name);
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
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, x_choice);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, reset_zoom_button);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, summary_revealer);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, summary_title);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, summary_grid);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, chart_grid);
  gtk_widget_class_bind_template_child (widget_class, KiltTrainPage, timing_grid);
  gtk_widget_class_install_action (widget_class, "train.dismiss-error", NULL, action_dismiss_error);
  gtk_widget_class_install_action (widget_class, "train.reset-zoom", NULL, action_reset_zoom);
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

  c = kilt_chart_new ("Learning rate");
  kilt_chart_set_y_axis (c, NULL, KILT_AXIS_NUMBER);
  kilt_chart_add_series (c, "rate the optimizer used", KILT_CHART_LINE,
                         (const double[]){ 0.57, 0.25, 0.67 });
  self->empty_texts[KILT_TRAIN_CHART_LEARNING_RATE]
      = g_strdup ("The learning rate of each step appears here during a run");
  gtk_grid_attach (self->chart_grid, chart_card (self, KILT_TRAIN_CHART_LEARNING_RATE, c), 1, 2, 1,
                   1);
  kilt_chart_unref (c);

  /* One x axis, cursor and zoom for the page, as Sysprof's rows share theirs. */
  for (guint i = 1; i < KILT_TRAIN_N_CHARTS; i++)
    kilt_chart_view_link (self->views[0], self->views[i]);
  g_signal_connect (self->views[0], "zoom-changed", G_CALLBACK (on_zoom_changed), self);
  gtk_widget_set_sensitive (self->reset_zoom_button, FALSE);

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
  gtk_widget_set_size_request (log_frame, -1, 160);
  gtk_grid_attach (self->chart_grid, log_frame, 0, 3, 2, 1);
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
  {
    g_autofree char *key = g_settings_get_string (self->settings, "chart-x-axis");
    guint mode = KILT_CHART_X_EPOCH;
    for (guint i = 0; i < KILT_CHART_N_X_MODES; i++)
      if (g_strcmp0 (key, x_mode_keys[i]) == 0)
        mode = i;
    gtk_drop_down_set_selected (self->x_choice, mode);
    apply_x_mode (self);
    g_signal_connect_swapped (self->x_choice, "notify::selected", G_CALLBACK (apply_x_mode), self);
  }
}
