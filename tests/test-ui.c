/* The window, driven through its own actions under Xvfb: pages, device, data, model, runs. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"

#include "kilt-application.h"
#include "kilt-checkpoint.h"
#include "kilt-chart-view.h"
#include "kilt-context.h"
#include "kilt-device.h"
#include "kilt-device-picker.h"
#include "kilt-error.h"
#include "kilt-format.h"
#include "kilt-keras-file.h"
#include "kilt-model-json.h"
#include "kilt-onnx-export.h"
#include "kilt-planner.h"
#include "kilt-runs-page.h"
#include "kilt-window.h"

#include <glib/gstdio.h>
#include <math.h>

static KiltApplication *app;
static KiltWindow *window;
static char *artifacts;
static char *store_dir;     /* the run store of this test, removed at the end */
static gint64 first_run_id; /* a run in the store before the window opened */

typedef gboolean (*Cond) (gpointer data);

/* Runs the main loop until @cond holds or @seconds pass; returns whether it held. */
static gboolean
wait_until (Cond cond, gpointer data, double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64)(seconds * G_USEC_PER_SEC);

  while (!cond (data))
    {
      if (g_get_monotonic_time () > end)
        return FALSE;
      g_main_context_iteration (NULL, FALSE);
      g_usleep (2000);
    }
  return TRUE;
}

static gboolean
always_false (gpointer data)
{
  return FALSE;
}

static void
settle (double seconds)
{
  wait_until (always_false, NULL, seconds);
}

/* The Model page's plan row answers its current settings (the plan comes from a thread). */
static gboolean
plan_current (gpointer data)
{
  return kilt_model_page_plan_is_current (data);
}

/* Renders @widget as the screen shows it, saves a PNG under the artifacts folder, and checks
 * that it is not blank: several colours, and a good share of pixels away from the background. */
static void
screenshot (GtkWidget *widget, const char *name)
{
  g_autoptr (GdkPaintable) paintable = gtk_widget_paintable_new (widget);
  g_autoptr (GskRenderNode) node = NULL;
  g_autoptr (GdkTexture) texture = NULL;
  g_autofree char *path = g_strdup_printf ("%s/%s.png", artifacts, name);
  GskRenderer *renderer = gtk_native_get_renderer (gtk_widget_get_native (widget));
  int w, h;
  g_autoptr (GHashTable) colors = g_hash_table_new (NULL, NULL);
  guint32 background, *pixels;
  gsize differ = 0;

  /* A dialog just presented has no size until its first layout, which a slow run (the
   * sanitizer pass, a loaded machine) may not have reached yet. */
  for (guint tries = 0; tries < 100; tries++)
    {
      if (gtk_widget_get_width (widget) > 0 && gtk_widget_get_height (widget) > 0)
        break;
      settle (0.1);
    }
  w = gtk_widget_get_width (widget);
  h = gtk_widget_get_height (widget);
  g_assert_cmpint (w, >, 0);
  g_assert_cmpint (h, >, 0);
  /* A widget has nothing to show until its first frame is drawn: wait for one. */
  for (guint tries = 0; node == NULL && tries < 50; tries++)
    {
      GtkSnapshot *snapshot = gtk_snapshot_new ();
      gdk_paintable_snapshot (paintable, GDK_SNAPSHOT (snapshot), w, h);
      node = gtk_snapshot_free_to_node (snapshot);
      if (node == NULL)
        {
          gtk_widget_queue_draw (widget);
          settle (0.1);
        }
    }
  g_assert_nonnull (node);
  texture = gsk_renderer_render_texture (renderer, node, &GRAPHENE_RECT_INIT (0, 0, w, h));
  g_assert_true (gdk_texture_save_to_png (texture, path));
  g_test_message ("screenshot: %s", path);

  w = gdk_texture_get_width (texture);
  h = gdk_texture_get_height (texture);
  pixels = g_new (guint32, (gsize)w * h);
  gdk_texture_download (texture, (guchar *)pixels, (gsize)w * 4);
  background = pixels[0];
  for (gsize i = 0; i < (gsize)w * h; i++)
    {
      g_hash_table_add (colors, GUINT_TO_POINTER (pixels[i]));
      differ += pixels[i] != background;
    }
  g_free (pixels);
  g_assert_cmpuint (g_hash_table_size (colors), >, 16);
  g_assert_cmpuint (differ, >, (gsize)w * h / 50);
}

/* The window's content without the toast layer on top (toasts wait for a focused window
 * before timing out, and under Xvfb it never is). */
static GtkWidget *
window_content (void)
{
  GtkWidget *w = GTK_WIDGET (window);

  while (w && !ADW_IS_TOAST_OVERLAY (w))
    w = gtk_widget_get_first_child (w);
  g_assert_nonnull (w);
  return adw_toast_overlay_get_child (ADW_TOAST_OVERLAY (w));
}

static gboolean
devices_loaded (gpointer data)
{
  return kilt_devices_page_get_loaded (kilt_window_get_devices_page (window));
}

static gboolean
data_idle (gpointer data)
{
  return !kilt_data_page_get_loading (kilt_window_get_data_page (window));
}

static gboolean
run_over (gpointer data)
{
  return !kilt_session_is_running (kilt_window_get_session (window));
}

G_GNUC_UNUSED static gboolean
has_loss_points (gpointer data)
{
  KiltChart *loss
      = kilt_train_page_get_chart (kilt_window_get_train_page (window), KILT_TRAIN_CHART_LOSS);
  return kilt_chart_get_n_points (loss, 0) >= 2;
}

/* ---- the session: events from another thread arrive coalesced, in order, and late events
 * of a replaced run are dropped ---- */

typedef struct
{
  guint updates;
  guint steps;
  guint epochs;
  guint64 last_step;
  gboolean in_order;
  gboolean finished;
  KiltRunStatus status;
} Seen;

static void
on_update (KiltSession *session, KiltSessionUpdate *u, Seen *seen)
{
  seen->updates++;
  for (guint i = 0; i < u->steps->len; i++)
    {
      const KiltEvent *e = &g_array_index (u->steps, KiltEvent, i);
      if (e->global_step != seen->last_step + 1)
        seen->in_order = FALSE;
      seen->last_step = e->global_step;
      seen->steps++;
    }
  seen->epochs += u->epochs->len;
  if (u->finished)
    {
      seen->finished = TRUE;
      seen->status = u->status;
    }
}

typedef struct
{
  gpointer token;
  guint n_steps;
  guint steps_per_epoch;
  guint usleep;
  gboolean finish;
  gint done;
  gboolean running_means; /* step reports hold the epoch's running means, as the trainer's */
} Feed;

static KiltEvent
fake_step (guint64 global, guint spe)
{
  KiltEvent e = { 0 };

  e.type = KILT_EVENT_STEP;
  e.global_step = global;
  e.epoch = (guint)((global - 1) / spe) + 1;
  e.step = (guint)((global - 1) % spe) + 1;
  /* A plausible falling loss with noise, rising accuracy, steady throughput. */
  e.loss = 2.3 * exp (-(double)global / 300.0) + 0.1 + 0.05 * sin (global * 1.7);
  e.accuracy = 0.95 - 0.85 * exp (-(double)global / 250.0);
  e.samples_per_second = 4200 + 300 * sin (global / 40.0);
  e.busy_percent = 70 + 10 * sin (global / 60.0);
  e.eta_seconds = 100;
  e.val_loss = e.val_accuracy = NAN;
  /* Ten milliseconds of training a step; Keras' time decay of the rate. */
  e.elapsed_seconds = global * 0.01;
  e.learning_rate = 1e-3 / (1 + 1e-3 * (double)(global - 1));
  return e;
}

static gpointer
feed_thread (gpointer data)
{
  Feed *f = data;
  KiltEvent started = { 0 };

  started.type = KILT_EVENT_STARTED;
  started.steps_per_epoch = f->steps_per_epoch;
  started.n_params = 101770;
  started.planned_bytes = 48u << 20;
  kilt_session_post (f->token, &started);
  double sum_loss = 0, sum_acc = 0;
  for (guint i = 1; i <= f->n_steps; i++)
    {
      KiltEvent e = fake_step (i, f->steps_per_epoch);
      if (e.step == 1)
        sum_loss = sum_acc = 0;
      sum_loss += e.loss, sum_acc += e.accuracy;
      if (f->running_means)
        e.loss = sum_loss / e.step, e.accuracy = sum_acc / e.step;
      kilt_session_post (f->token, &e);
      if (i % 25 == 0)
        {
          KiltEvent m = { 0 };
          m.type = KILT_EVENT_MEMORY;
          m.vendor_used_bytes = -1;
          m.mem.live[KILT_MEM_WEIGHTS] = 400 << 10;
          m.mem.live[KILT_MEM_GRADIENTS] = 400 << 10;
          m.mem.live[KILT_MEM_OPTIMIZER] = 400 << 10;
          m.mem.live[KILT_MEM_ACTIVATIONS] = (guint64)(6 + (i % 100) / 50) << 20;
          m.mem.live[KILT_MEM_DATASET] = 46u << 20;
          kilt_session_post (f->token, &m);
        }
      if (i % f->steps_per_epoch == 0)
        {
          KiltEvent e2 = fake_step (i, f->steps_per_epoch);
          e2.type = KILT_EVENT_EPOCH;
          e2.val_loss = e2.loss * 1.1;
          e2.val_accuracy = e2.accuracy * 0.98;
          e2.epoch_seconds = 2.5;
          kilt_session_post (f->token, &e2);
        }
      if (f->usleep)
        g_usleep (f->usleep);
    }
  if (f->finish)
    {
      KiltEvent fin = { 0 };
      fin.type = KILT_EVENT_FINISHED;
      fin.status = KILT_RUN_FINISHED;
      kilt_session_post (f->token, &fin);
    }
  g_atomic_int_set (&f->done, 1);
  return NULL;
}

static gboolean
feed_done (gpointer data)
{
  return g_atomic_int_get (&((Feed *)data)->done);
}

static gboolean
seen_finished (gpointer data)
{
  return ((Seen *)data)->finished;
}

static void
test_session (void)
{
  g_autoptr (KiltSession) session = kilt_session_new ();
  Seen seen = { 0, 0, 0, 0, TRUE, FALSE, 0 };
  Feed feed = { NULL, 3000, 500, 400, TRUE, 0, FALSE };
  GThread *thread;
  gint64 t0;
  double seconds;

  g_signal_connect (session, "update", G_CALLBACK (on_update), &seen);
  feed.token = kilt_session_begin_external (session);
  g_assert_true (kilt_session_is_running (session));
  t0 = g_get_monotonic_time ();
  thread = g_thread_new ("feed", feed_thread, &feed);
  g_assert_true (wait_until (seen_finished, &seen, 60));
  seconds = (g_get_monotonic_time () - t0) / 1e6;
  g_thread_join (thread);

  g_assert_cmpuint (seen.steps, ==, feed.n_steps);
  g_assert_cmpuint (seen.epochs, ==, feed.n_steps / feed.steps_per_epoch);
  g_assert_true (seen.in_order);
  g_assert_cmpint (seen.status, ==, KILT_RUN_FINISHED);
  g_assert_false (kilt_session_is_running (session));
  /* Coalesced: about ten updates a second however fast events come, but more than one. */
  g_test_message ("%u steps in %u updates over %.2f s", seen.steps, seen.updates, seconds);
  g_assert_cmpuint (seen.updates, >=, 2);
  g_assert_cmpfloat (seen.updates, <=, seconds * 10 + 3);

  /* A replaced run: what its thread still posts is dropped. */
  {
    gpointer old = feed.token;
    KiltEvent late = fake_step (1, 10);

    seen = (Seen){ 0, 0, 0, 0, TRUE, FALSE, 0 };
    feed.token = kilt_session_begin_external (session);
    kilt_session_post (old, &late);
    kilt_session_post (old, &late);
    feed.n_steps = 40;
    feed.usleep = 0;
    feed_thread (&feed);
    g_assert_true (wait_until (seen_finished, &seen, 10));
    g_assert_cmpuint (seen.steps, ==, 40);
    g_assert_true (seen.in_order);
  }
}

/* Issue 15: every chart of the Train page on steps, epochs and time, memory samples too; the
 * learning rate is charted as the steps reported it. */
static void
check_x_axes (KiltTrainPage *train, const Feed *feed)
{
  const KiltTrainChart charts[]
      = { KILT_TRAIN_CHART_LOSS, KILT_TRAIN_CHART_MEMORY, KILT_TRAIN_CHART_LEARNING_RATE };
  /* First and last x of the steps' charts on each axis (memory: every 25th step). */
  const double step_hi = feed->n_steps, epoch_hi = (double)feed->n_steps / feed->steps_per_epoch;
  const double time_hi = feed->n_steps * 0.01;
  const double want[3][2]
      = { { 1, step_hi }, { 1.0 / feed->steps_per_epoch, epoch_hi }, { 0.01, time_hi } };
  const double mem_lo[3] = { 25, 25.0 / feed->steps_per_epoch, 0.25 };
  const KiltChartXMode modes[3] = { KILT_CHART_X_STEP, KILT_CHART_X_EPOCH, KILT_CHART_X_TIME };
  KiltChart *lr = kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LEARNING_RATE);

  for (guint m = 0; m < 3; m++)
    {
      kilt_train_page_set_x_mode (train, modes[m]);
      for (guint c = 0; c < G_N_ELEMENTS (charts); c++)
        {
          KiltChart *chart = kilt_train_page_get_chart (train, charts[c]);
          double lo, hi;
          g_assert_cmpint (kilt_chart_get_x_mode (chart), ==, modes[m]);
          g_assert_true (kilt_chart_get_x_extent (chart, &lo, &hi));
          g_test_message ("%s on %s: %g to %g", kilt_chart_get_title (chart),
                          kilt_chart_x_mode_name (modes[m]), lo, hi);
          g_assert_cmpfloat_with_epsilon (
              lo, charts[c] == KILT_TRAIN_CHART_MEMORY ? mem_lo[m] : want[m][0], 1e-9);
          g_assert_cmpfloat_with_epsilon (hi, want[m][1], 1e-9);
        }
      /* Validation stands at the epochs' ends, on every axis. */
      {
        gsize n;
        const double *p = kilt_chart_get_reduced (
            kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 1, &n);
        g_assert_cmpuint (n, ==, feed->n_steps / feed->steps_per_epoch);
        g_assert_cmpfloat_with_epsilon (p[0], want[m][1] / n, 1e-9);
      }
      screenshot (window_content (), modes[m] == KILT_CHART_X_STEP   ? "train-x-step"
                                     : modes[m] == KILT_CHART_X_TIME ? "train-x-time"
                                                                     : "train-x-epoch");
    }
  /* The rate of every step, as reported (no smoothing). */
  g_assert_cmpuint (kilt_chart_get_n_points (lr, 0), ==, feed->n_steps);
  {
    gsize n;
    const double *p = kilt_chart_get_reduced (lr, 0, &n);
    double ymin = INFINITY, ymax = -INFINITY;
    for (gsize k = 0; k < n; k++)
      ymin = MIN (ymin, p[2 * k + 1]), ymax = MAX (ymax, p[2 * k + 1]);
    g_assert_cmpfloat_with_epsilon (ymax, 1e-3, 1e-12);
    g_assert_cmpfloat_with_epsilon (ymin, 1e-3 / (1 + 1e-3 * (feed->n_steps - 1)), 1e-12);
  }
}

/* One cursor for the page's charts, its read-out naming step, epoch, time and the raw value
 * beside the smoothed one; a drag's range zooms them all, and Reset Zoom shows all again. */
static void
check_cursor_and_zoom (KiltTrainPage *train)
{
  KiltChartView *loss
      = KILT_CHART_VIEW (kilt_train_page_get_chart_view (train, KILT_TRAIN_CHART_LOSS));
  KiltChartView *rate
      = KILT_CHART_VIEW (kilt_train_page_get_chart_view (train, KILT_TRAIN_CHART_THROUGHPUT));
  KiltChart *lc = kilt_chart_view_get_chart (loss);
  int w = gtk_widget_get_width (GTK_WIDGET (loss)), h = gtk_widget_get_height (GTK_WIDGET (loss));
  cairo_rectangle_t area;
  double zlo, zhi;

  g_assert_cmpint (w, >, 0);
  kilt_train_page_set_x_mode (train, KILT_CHART_X_EPOCH);
  kilt_chart_get_plot_area (lc, w, h, &area);
  /* At epoch 2.5 of the 5 (the span is shared, so the throughput chart's cursor is there too). */
  kilt_chart_view_hover (loss, kilt_chart_x_to_pixel (lc, w, h, 2.5));
  g_assert_cmpfloat_with_epsilon (kilt_chart_view_get_hover_x (loss), 2.5, 1e-6);
  g_assert_cmpfloat_with_epsilon (kilt_chart_view_get_hover_x (rate), 2.5, 1e-6);
  {
    g_autofree char *text
        = kilt_chart_describe_at (lc, w, h, kilt_chart_x_to_pixel (lc, w, h, 2.5));
    g_test_message ("hover: %s", text);
    g_assert_true (g_str_has_prefix (text, "Step 750 · Epoch 2.50 · Time 7.5 s"));
    g_assert_nonnull (strstr (text, "(raw "));
    /* Validation was not measured at 2.5: not named. */
    g_assert_null (strstr (text, "validation"));
  }
  settle (0.2);
  screenshot (window_content (), "train-hover");
  kilt_chart_view_hover (loss, -1);
  g_assert_true (isnan (kilt_chart_view_get_hover_x (rate)));

  /* A drag from epoch 1 to 2 on the loss chart zooms every chart of the page to it. */
  g_assert_true (kilt_chart_view_zoom_pixels (loss, kilt_chart_x_to_pixel (lc, w, h, 1),
                                              kilt_chart_x_to_pixel (lc, w, h, 2)));
  for (guint c = 0; c < KILT_TRAIN_N_CHARTS; c++)
    {
      g_assert_true (kilt_chart_get_x_zoom (kilt_train_page_get_chart (train, c), &zlo, &zhi));
      g_assert_cmpfloat_with_epsilon (zlo, 1, 0.02);
      g_assert_cmpfloat_with_epsilon (zhi, 2, 0.02);
    }
  {
    /* At full detail: every step report between the ends is drawn. */
    gsize n;
    kilt_chart_get_reduced (lc, 0, &n);
    g_assert_cmpuint (n, >=, 290);
  }
  g_assert_true (kilt_train_page_get_can_reset_zoom (train));
  settle (0.2);
  screenshot (window_content (), "train-zoomed");
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (train), "train.reset-zoom", NULL));
  for (guint c = 0; c < KILT_TRAIN_N_CHARTS; c++)
    g_assert_false (kilt_chart_get_x_zoom (kilt_train_page_get_chart (train, c), NULL, NULL));
  g_assert_false (kilt_train_page_get_can_reset_zoom (train));
  /* Too narrow a drag (a click) zooms nothing. */
  g_assert_false (kilt_chart_view_zoom_pixels (loss, area.x + 40, area.x + 42));
  kilt_train_page_set_x_mode (train, KILT_CHART_X_EPOCH);
}

/* A run that ended says how it did: final and best figures with their epoch, its training
 * time with the pause left out, and its throughput. */
static void
check_summary (KiltTrainPage *train, const Feed *feed)
{
  g_autofree char *text = kilt_train_page_get_summary (train);
  guint n_epochs = feed->n_steps / feed->steps_per_epoch, best = 0;
  double best_acc = -1, rate = 0;
  g_autofree char *want_best = NULL, *want_final = NULL;

  g_assert_nonnull (text);
  g_test_message ("summary:\n%s", text);
  for (guint e = 1; e <= n_epochs; e++)
    {
      KiltEvent ev = fake_step (e * feed->steps_per_epoch, feed->steps_per_epoch);
      double acc = ev.accuracy * 0.98;
      if (acc > best_acc)
        best_acc = acc, best = e;
      rate += ev.samples_per_second / n_epochs;
      if (e == n_epochs)
        want_final = g_strdup_printf ("%.4f training · %.4f validation", ev.loss, ev.loss * 1.1);
    }
  want_best
      = g_strdup_printf ("Best validation accuracy: %.1f%% at epoch %u", 100 * best_acc, best);
  g_assert_true (g_str_has_prefix (text, "Run Summary · stopped after 5 epochs"));
  g_assert_nonnull (strstr (text, want_best));
  g_assert_nonnull (strstr (text, want_final));
  g_assert_nonnull (strstr (text, "Training time: 15.0 s (paused time left out)"));
  {
    g_autofree char *n = kilt_format_thousands ((guint64)llround (rate));
    g_autofree char *want = g_strdup_printf ("Throughput: %s samples/s", n);
    g_assert_nonnull (strstr (text, want));
  }
  screenshot (window_content (), "train-summary");
}

/* The Train page fed through the window's own session, as a run would feed it. */
static void
test_live_charts (void)
{
  KiltSession *session = kilt_window_get_session (window);
  KiltTrainPage *train = kilt_window_get_train_page (window);
  Feed feed = { NULL, 1500, 300, 300, FALSE, 0, TRUE };
  GThread *thread;

  if (kilt_session_is_running (session))
    {
      g_test_skip ("a run is going on");
      return;
    }
  kilt_train_page_reset (train, "Training mlp on pthread", 2ull << 30);
  kilt_train_page_set_epochs (train, 5);
  kilt_window_show_page (window, "train");
  /* Save Chart on an empty chart says so, naming the chart, and opens no dialog. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.save-chart", NULL));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==,
                   "The Loss chart has nothing to save yet");
  /* The curves name what they were measured on. */
  kilt_train_page_set_eval_name (train, "test split");
  {
    cairo_rectangle_t area;
    KiltChart *loss = kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS);
    kilt_chart_append (loss, 1, 1, 0.5);
    kilt_chart_get_plot_area (loss, 480, 240, &area);
    g_autofree char *t = kilt_chart_describe_at (loss, 480, 240, area.x + area.width / 2);
    g_assert_nonnull (strstr (t, "test split"));
    kilt_chart_clear (loss);
  }
  kilt_train_page_set_eval_name (train, "validation");
  feed.token = kilt_session_begin_external (session);
  thread = g_thread_new ("feed", feed_thread, &feed);
  /* The main loop keeps turning (and the window drawing) while events pour in. */
  g_assert_true (wait_until (feed_done, &feed, 60));
  g_thread_join (thread);
  settle (0.5);
  g_assert_cmpuint (
      kilt_chart_get_n_points (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 0), ==,
      feed.n_steps);
  g_assert_cmpuint (
      kilt_chart_get_n_points (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 1), ==, 5);
  g_assert_cmpuint (
      kilt_chart_get_n_points (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_MEMORY),
                               KILT_MEM_ACTIVATIONS),
      ==, feed.n_steps / 25);
  /* Issue 15, 8: the reports hold running means over each epoch, which restart at every
   * epoch; the curve drawn has no jump there (it would drop by about 0.6 at the first). */
  {
    gsize n;
    const double *p
        = kilt_chart_get_reduced (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 0, &n);
    double worst = 0;
    for (gsize k = 1; k < n; k++)
      worst = MAX (worst, fabs (p[2 * k + 1] - p[2 * k - 1]));
    g_test_message ("largest step between drawn loss points: %.3f", worst);
    g_assert_cmpuint (n, >, 10);
    g_assert_cmpfloat (worst, <, 0.3);
  }
  /* Validation is read out only at the epochs where it was measured. */
  {
    KiltChart *loss = kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS);
    cairo_rectangle_t area;
    g_autofree char *between = NULL, *at = NULL;
    kilt_chart_get_plot_area (loss, 480, 240, &area);
    /* x spans the data, 0 to 5 epochs: 1.5 is between measurements, 2 is one. */
    between = kilt_chart_describe_at (loss, 480, 240, area.x + area.width * (1.5 / 5.0));
    at = kilt_chart_describe_at (loss, 480, 240, area.x + area.width * (2.0 / 5.0));
    g_test_message ("at 1.5: %s; at 2: %s", between, at);
    g_assert_null (strstr (between, "validation"));
    g_assert_nonnull (strstr (at, "validation"));
  }
  screenshot (window_content (), "train-live");
  check_x_axes (train, &feed);
  check_cursor_and_zoom (train);
  {
    KiltEvent fin = { 0 };
    fin.type = KILT_EVENT_FINISHED;
    fin.status = KILT_RUN_STOPPED;
    kilt_session_post (feed.token, &fin);
  }
  g_assert_true (wait_until (run_over, NULL, 10));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training stopped");
  check_summary (train, &feed);
}

static void
test_starts (void)
{
  int min_w, min_h;

  g_assert_nonnull (window);
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (window)));
  /* Usable at 800x600 (and so at 1024x700): the window's minimum fits. */
  gtk_widget_measure (GTK_WIDGET (window), GTK_ORIENTATION_HORIZONTAL, -1, &min_w, NULL, NULL,
                      NULL);
  gtk_widget_measure (GTK_WIDGET (window), GTK_ORIENTATION_VERTICAL, 800, &min_h, NULL, NULL, NULL);
  g_assert_cmpint (min_w, <=, 800);
  g_assert_cmpint (min_h, <=, 600);
}

/* Counts read the same on every page: "1,250,858", not "1250858". */
static void
test_formats (void)
{
  const struct
  {
    guint64 n;
    const char *text;
  } cases[] = { { 0, "0" },
                { 999, "999" },
                { 1000, "1,000" },
                { 669706, "669,706" },
                { 1250858, "1,250,858" },
                { 50000, "50,000" } };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *t = kilt_format_thousands (cases[i].n);
      g_assert_cmpstr (t, ==, cases[i].text);
    }
}

static void
test_pages (void)
{
  const char *pages[] = { "devices", "data", "model", "train", "runs" };

  for (guint i = 0; i < G_N_ELEMENTS (pages); i++)
    {
      /* Through the window's own action (Alt+1..5). */
      g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.page", "s", pages[i]));
      settle (0.2);
      g_assert_cmpstr (kilt_window_get_visible_page (window), ==, pages[i]);
    }
}

static GtkWidget *find_row (GtkWidget *w, const char *title);
static GtkWidget *find_named (GtkWidget *w, const char *name);

/* The first widget of @type under @w (depth first), or NULL. */
static GtkWidget *
find_type (GtkWidget *w, GType type)
{
  if (g_type_is_a (G_OBJECT_TYPE (w), type))
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_type (c, type);
      if (found)
        return found;
    }
  return NULL;
}

/* The first button under @w whose label starts with @prefix, or NULL. */
static GtkWidget *
find_button (GtkWidget *w, const char *prefix)
{
  if (GTK_IS_BUTTON (w) && gtk_button_get_label (GTK_BUTTON (w))
      && g_str_has_prefix (gtk_button_get_label (GTK_BUTTON (w)), prefix))
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_button (c, prefix);
      if (found)
        return found;
    }
  return NULL;
}

/* The first button under @w bound to @action, or NULL. */
static GtkWidget *
find_button_with_action (GtkWidget *w, const char *action)
{
  if (GTK_IS_BUTTON (w)
      && g_strcmp0 (gtk_actionable_get_action_name (GTK_ACTIONABLE (w)), action) == 0)
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_button_with_action (c, action);
      if (found)
        return found;
    }
  return NULL;
}

static const KiltDeviceInfo *
pocl_device (void)
{
  g_autoptr (KiltDeviceList) list = NULL;
  KiltDevicesPage *page = kilt_window_get_devices_page (window);
  static char *id;

  if (id == NULL)
    {
      list = kilt_device_list_new ();
      for (guint i = 0; i < list->devices->len; i++)
        {
          KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
          if (strstr (d->platform_name, "Portable Computing Language") || strstr (d->id, "pocl"))
            {
              id = g_strdup (d->id);
              break;
            }
        }
    }
  if (id == NULL)
    return NULL;
  kilt_devices_page_choose (page, id);
  return kilt_devices_page_get_device_info (page);
}

static void
test_device (void)
{
  KiltDevicesPage *page = kilt_window_get_devices_page (window);
  const KiltDeviceInfo *d;
  g_autoptr (GSettings) settings = g_settings_new ("org.kilt.Kilt");
  g_autofree char *saved_setting = NULL;
  g_autofree char *saved_file = NULL;
  g_autofree char *report = NULL;

  g_assert_true (wait_until (devices_loaded, NULL, 30));
  d = pocl_device ();
  if (d == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_cmpstr (kilt_devices_page_get_device_id (page), ==, d->id);
  saved_setting = g_settings_get_string (settings, "device");
  saved_file = kilt_device_get_saved_default ();
  g_assert_cmpstr (saved_setting, ==, d->id);
  g_assert_cmpstr (saved_file, ==, d->id);
  report = kilt_devices_page_dup_report (page);
  g_assert_nonnull (strstr (report, d->name));
  /* The default is a radio button, even for a lone device: activating the chosen one again
   * (a click) leaves it chosen, where a check box was unticked and left no default. */
  {
    GtkWidget *row = find_row (GTK_WIDGET (page), d->name);
    GtkWidget *check = row ? find_type (row, GTK_TYPE_CHECK_BUTTON) : NULL;
    g_assert_nonnull (check);
    g_assert_true (gtk_check_button_get_active (GTK_CHECK_BUTTON (check)));
    g_assert_cmpstr (gtk_widget_get_css_name (gtk_widget_get_first_child (check)), ==, "radio");
    gtk_widget_activate (check);
    settle (0.1);
    g_assert_true (gtk_check_button_get_active (GTK_CHECK_BUTTON (check)));
    g_assert_cmpstr (kilt_devices_page_get_device_id (page), ==, d->id);
  }
  /* Copy device report goes through the window's action. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.copy-report", NULL));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Device report copied");
}

static gboolean
doctor_idle (gpointer data)
{
  return !kilt_devices_page_get_testing (kilt_window_get_devices_page (window));
}

/* The device doctor runs on a worker thread: the window keeps turning, and Cancel ends it. */
static void
test_doctor_cancel (void)
{
  KiltDevicesPage *page = kilt_window_get_devices_page (window);
  gint64 t0;

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  /* With its kernels cached the whole doctor takes well under a second on a fast CPU, so Cancel
   * comes at once, before the main loop turns: a cancel after a pause raced the doctor's end. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.test-device", NULL));
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "devices");
  g_assert_true (kilt_devices_page_get_testing (page));
  t0 = g_get_monotonic_time ();
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "devices.cancel-test", NULL));
  g_assert_true (wait_until (doctor_idle, NULL, 60));
  g_test_message ("doctor stopped %.2f s after cancel: %s", (g_get_monotonic_time () - t0) / 1e6,
                  kilt_devices_page_get_test_title (page));
  g_assert_cmpstr (kilt_devices_page_get_test_title (page), ==, "Self-test cancelled");

  /* A second run for the picture of a test in progress; it may end before or after the
   * screenshot, so only the start is asserted, then it is stopped. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.test-device", NULL));
  g_assert_true (kilt_devices_page_get_testing (page));
  g_assert_true (g_str_has_prefix (kilt_devices_page_get_test_title (page), "Testing "));
  settle (0.3);
  screenshot (window_content (), "devices-testing");
  gtk_widget_activate_action (GTK_WIDGET (page), "devices.cancel-test", NULL);
  g_assert_true (wait_until (doctor_idle, NULL, 60));
}

/* The whole doctor (about 20 s on PoCL): only with KILT_TEST_SLOW=1. */
static void
test_doctor_full (void)
{
  KiltDevicesPage *page = kilt_window_get_devices_page (window);

  if (!g_getenv ("KILT_TEST_SLOW") || pocl_device () == NULL)
    {
      g_test_skip ("set KILT_TEST_SLOW=1 to run the whole self-test");
      return;
    }
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.test-device", NULL));
  g_assert_true (wait_until (doctor_idle, NULL, 120));
  g_assert_nonnull (strstr (kilt_devices_page_get_test_title (page), ": "));
  settle (0.3);
  screenshot (window_content (), "devices-tested");
}

static void
test_sample_data (void)
{
  KiltDataPage *page = kilt_window_get_data_page (window);

  kilt_data_page_load (page, "sample");
  g_assert_true (wait_until (data_idle, NULL, 60));
  g_assert_null (kilt_data_page_get_error (page));
  g_assert_nonnull (kilt_data_page_get_dataset (page));
  g_assert_cmpuint (kilt_data_page_get_dataset (page)->train.n, >, 0);
  /* The class histogram at the bottom of the page, with class names under its bars. */
  kilt_window_show_page (window, "data");
  settle (0.3);
  {
    GtkWidget *sw = GTK_WIDGET (page);
    while (sw && !GTK_IS_SCROLLED_WINDOW (sw))
      sw = gtk_widget_get_first_child (sw);
    g_assert_nonnull (sw);
    gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)), 1e6);
    settle (0.3);
    screenshot (window_content (), "data-histogram");
    gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)), 0);
  }
}

static void
test_broken_data (void)
{
  KiltDataPage *page = kilt_window_get_data_page (window);
  g_autofree char *dir = g_dir_make_tmp ("kilt-ui-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "broken.csv", NULL);
  const KiltDataset *before = kilt_data_page_get_dataset (page);

  g_assert_true (g_file_set_contents (path, "a,b,label\n1,2,0\n3,oops,1\n4,5\n", -1, NULL));
  kilt_data_page_load (page, path);
  g_assert_true (wait_until (data_idle, NULL, 30));
  g_assert_nonnull (kilt_data_page_get_error (page));
  g_test_message ("error shown: %s", kilt_data_page_get_error (page));
  g_assert_nonnull (strstr (kilt_data_page_get_error (page), "broken.csv"));
  /* The previous data set stays, and the window still works. */
  g_assert_true (kilt_data_page_get_dataset (page) == before);
  kilt_window_show_page (window, "data");
  settle (0.3);
  screenshot (GTK_WIDGET (window), "data-error");
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.page", "s", "model"));
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "model");
  g_unlink (path);
  g_rmdir (dir);

  /* Issue 15, 2: a run takes the data set and the page loads it again after the run: what it
   * loads is the good data set still shown, not the path that failed. */
  {
    KiltDataset *taken = kilt_data_page_take_dataset (page);
    g_autofree char *name = g_strdup (taken->name);
    kilt_dataset_free (taken);
    kilt_data_page_reload (page);
    g_assert_true (wait_until (data_idle, NULL, 60));
    g_assert_null (kilt_data_page_get_error (page));
    g_assert_nonnull (kilt_data_page_get_dataset (page));
    g_assert_cmpstr (kilt_data_page_get_dataset (page)->name, ==, name);
  }
  /* And through a real run, when there is a device: Start works again after it. */
  if (pocl_device () != NULL)
    {
      g_autofree char *dir2 = g_dir_make_tmp ("kilt-ui-XXXXXX", NULL);
      g_autofree char *text = g_build_filename (dir2, "notes.txt", NULL);
      g_assert_true (g_file_set_contents (text, "not a data set\n", -1, NULL));
      kilt_data_page_load (page, text);
      g_assert_true (wait_until (data_idle, NULL, 30));
      g_assert_nonnull (kilt_data_page_get_error (page));
      kilt_model_page_choose_preset (kilt_window_get_model_page (window), "mlp");
      kilt_model_page_set_epochs (kilt_window_get_model_page (window), 1);
      kilt_window_set_sample_limit (window, 256);
      g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
      g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
      g_assert_true (wait_until (run_over, NULL, 120));
      g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");
      g_assert_true (wait_until (data_idle, NULL, 60));
      g_assert_nonnull (kilt_data_page_get_dataset (page));
      g_assert_null (kilt_data_page_get_error (page));
      g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
      g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
      gtk_widget_activate_action (GTK_WIDGET (window), "win.stop", NULL);
      g_assert_true (wait_until (run_over, NULL, 60));
      g_assert_true (wait_until (data_idle, NULL, 60));
      g_assert_nonnull (kilt_data_page_get_dataset (page));
      g_unlink (text);
      g_rmdir (dir2);
    }
  /* The error banner can be dismissed. */
  {
    g_autofree char *dir3 = g_dir_make_tmp ("kilt-ui-XXXXXX", NULL);
    g_autofree char *bad = g_build_filename (dir3, "broken.csv", NULL);
    GtkWidget *sw = find_type (GTK_WIDGET (page), GTK_TYPE_SCROLLED_WINDOW);
    GtkAdjustment *adj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw));
    g_assert_true (g_file_set_contents (bad, "a,b,label\n1,2\n", -1, NULL));
    kilt_window_show_page (window, "data");
    settle (0.2);
    /* Scrolled down to the samples when the load fails: the banner at the top comes into view. */
    gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj));
    settle (0.1);
    g_assert_cmpfloat (gtk_adjustment_get_value (adj), >, 0);
    kilt_data_page_load (page, bad);
    g_assert_true (wait_until (data_idle, NULL, 30));
    g_assert_nonnull (kilt_data_page_get_error (page));
    g_assert_cmpfloat (gtk_adjustment_get_value (adj), ==, 0);
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "data.dismiss-error", NULL));
    g_assert_null (kilt_data_page_get_error (page));
    g_unlink (bad);
    g_rmdir (dir3);
  }
  /* A folder with a file that is not an image: the note is a row of its own, said once, not
   * a dump in the summary's subtitle. */
  {
    g_autofree char *root = g_dir_make_tmp ("kilt-ui-folder-XXXXXX", NULL);
    const char *classes[] = { "cats", "dogs" };
    g_autoptr (GPtrArray) made = g_ptr_array_new_with_free_func (g_free);
    GtkWidget *notes;

    for (guint c = 0; c < 2; c++)
      {
        g_autofree char *sub = g_build_filename (root, classes[c], NULL);
        g_mkdir (sub, 0755);
        g_ptr_array_add (made, g_strdup (sub));
        for (guint k = 0; k < 60; k++) /* 1 bad file in 121 is within the 1% allowed */
          {
            guint8 px[8 * 8 * 4];
            g_autoptr (GBytes) bytes = NULL;
            g_autoptr (GdkTexture) tex = NULL;
            g_autofree char *name = g_strdup_printf ("%u.png", k);
            char *png = g_build_filename (sub, name, NULL);
            for (guint i = 0; i < sizeof px; i++)
              px[i] = (guint8)(i * 7 + c * 100 + k);
            bytes = g_bytes_new (px, sizeof px);
            tex = gdk_memory_texture_new (8, 8, GDK_MEMORY_R8G8B8A8, bytes, 8 * 4);
            g_assert_true (gdk_texture_save_to_png (tex, png));
            g_ptr_array_add (made, png);
          }
      }
    {
      char *junk = g_build_filename (root, "dogs", "broken.png", NULL);
      g_assert_true (g_file_set_contents (junk, "not an image", -1, NULL));
      g_ptr_array_add (made, junk);
    }
    kilt_data_page_load (page, root);
    g_assert_true (wait_until (data_idle, NULL, 30));
    g_test_message ("folder: error %s; notes %s", kilt_data_page_get_error (page),
                    kilt_data_page_get_dataset (page) ? kilt_data_page_get_dataset (page)->notes
                                                      : "(no data set)");
    g_assert_null (kilt_data_page_get_error (page));
    /* The broken image is noted (and its path said once). */
    g_assert_nonnull (kilt_data_page_get_dataset (page)->notes);
    {
      notes = find_named (GTK_WIDGET (page), "data-notes");
      g_assert_nonnull (notes);
      g_assert_cmpstr (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (notes)), ==,
                       "Notes from loading");
      adw_expander_row_set_expanded (ADW_EXPANDER_ROW (notes), TRUE);
      kilt_window_show_page (window, "data");
      settle (0.3);
      screenshot (window_content (), "data-notes");
    }
    for (guint i = made->len; i-- > 0;)
      {
        if (g_file_test (made->pdata[i], G_FILE_TEST_IS_DIR))
          g_rmdir (made->pdata[i]);
        else
          g_unlink (made->pdata[i]);
      }
    g_rmdir (root);
  }
  /* Back to good data for what follows. */
  kilt_data_page_load (page, "sample");
  g_assert_true (wait_until (data_idle, NULL, 60));
}

static void
test_preset (void)
{
  KiltModelPage *page = kilt_window_get_model_page (window);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) model = NULL;

  g_assert_true (kilt_model_page_choose_preset (page, "lenet5"));
  g_assert_true (kilt_model_page_choose_preset (page, "mlp"));
  g_assert_cmpstr (kilt_model_page_get_model_name (page), !=, NULL);
  /* The preset says what it is (its JSON's description), not only its id. */
  g_test_message ("preset: %s", kilt_model_page_get_preset_subtitle (page));
  g_assert_nonnull (strstr (kilt_model_page_get_preset_subtitle (page), "Dense 512"));
  g_assert_nonnull (strstr (kilt_model_page_get_preset_subtitle (page), "Keras' mnist_mlp"));
  model = kilt_model_page_create_model (page, &error);
  g_assert_no_error (error);
  g_assert_true (model->built);
  g_assert_cmpuint (model->n_params, >, 0);
}

/* Transfer learning on the Model page: an imported Keras model of 5 classes on data of 3 is
 * offered a new head in one click, and Trainable ticks reach the run's model. A page of its
 * own, so that the window keeps its data's input. */
static void
test_transfer (void)
{
  KiltModelPage *page = g_object_ref_sink (g_object_new (KILT_TYPE_MODEL_PAGE, NULL));
  g_autofree char *path = g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras",
                                            "weights-keras3-cnn.keras", NULL);
  g_autofree char *source = g_strconcat ("keras:", path, NULL);
  KiltShape shape = { 3, 10, 10 };
  g_autoptr (GError) error = NULL;
  KiltModel *model;
  const float *wp, *ws;

  kilt_model_page_set_input (page, &shape, 3, 0);
  g_assert_true (kilt_model_page_open (page, source));
  g_assert_cmpstr (kilt_model_page_get_head_offer (page), ==, "Replace Head (3 Classes)");
  g_assert_true (kilt_model_page_set_trainable (page, "conv2d", FALSE));
  g_assert_false (kilt_model_page_set_trainable (page, "no_such_layer", FALSE));
  g_assert_true (kilt_model_page_replace_head (page));
  g_assert_null (kilt_model_page_get_head_offer (page));
  g_assert_false (kilt_model_page_replace_head (page));
  model = kilt_model_page_create_model (page, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kilt_model_n_outputs (model), ==, 3);
  g_assert_true (kilt_model_find (model, "conv2d")->frozen);
  g_assert_false (kilt_model_find (model, "dense")->frozen);
  /* The imported weights stay, for the layers before the new head. */
  g_assert_true (kilt_model_get_weights (model, &wp, &ws));
  kilt_model_free (model);
  /* Ticked again, it trains. */
  g_assert_true (kilt_model_page_set_trainable (page, "conv2d", TRUE));
  model = kilt_model_page_create_model (page, &error);
  g_assert_false (kilt_model_find (model, "conv2d")->frozen);
  kilt_model_free (model);
  /* Freeze up to batch_normalization_1: the layers before and it, not the dense ones. */
  g_assert_true (kilt_model_page_freeze_until (page, "batch_normalization_1"));
  model = kilt_model_page_create_model (page, &error);
  g_assert_true (kilt_model_find (model, "conv2d")->frozen);
  g_assert_true (kilt_model_find (model, "batch_normalization_1")->frozen);
  g_assert_false (kilt_model_find (model, "dense")->frozen);
  g_assert_false (kilt_model_find (model, "head")->frozen);
  kilt_model_free (model);
  /* Leave the remembered model as the other tests expect it. */
  g_assert_true (kilt_model_page_open (page, "mlp"));
  g_object_unref (page);
}

static void
test_train (void)
{
  KiltChart *loss
      = kilt_train_page_get_chart (kilt_window_get_train_page (window), KILT_TRAIN_CHART_LOSS);

  (void)loss;
  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), 2);
  kilt_window_set_sample_limit (window, 512);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  if (kilt_data_page_get_dataset (kilt_window_get_data_page (window)) == NULL
      && !kilt_session_is_running (kilt_window_get_session (window)))
    {
      g_test_skip ("no data set to train on");
      return;
    }
  g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
  /* The main loop keeps turning while the trainer runs (the wait below iterates it). */
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");
  g_assert_cmpuint (kilt_chart_get_n_points (loss, 0), >, 0);
  /* Finished says how it ended up, and Stop is no longer red. */
  {
    KiltTrainPage *train = kilt_window_get_train_page (window);
    g_test_message ("finished: %s", kilt_train_page_get_detail (train));
    g_assert_cmpstr (kilt_train_page_get_status (train), ==, "Finished");
    g_assert_nonnull (strstr (kilt_train_page_get_detail (train), "2 epochs · loss "));
    /* A real run's summary: its two epochs, time and throughput, validated each epoch. */
    {
      g_autofree char *summary = kilt_train_page_get_summary (train);
      g_test_message ("summary: %s", summary);
      g_assert_nonnull (summary);
      g_assert_true (g_str_has_prefix (summary, "Run Summary · finished after 2 epochs"));
      g_assert_nonnull (strstr (summary, "Best validation accuracy: "));
      g_assert_nonnull (strstr (summary, "(paused time left out)"));
      g_assert_nonnull (strstr (summary, " samples/s (mean of the epochs)"));
    }
    /* The rate of the optimizer at each step report, as the trainer sent it. */
    g_assert_cmpuint (
        kilt_chart_get_n_points (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LEARNING_RATE),
                                 0),
        ==, kilt_chart_get_n_points (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 0));
    g_assert_nonnull (strstr (kilt_train_page_get_detail (train), "accuracy"));
    g_assert_false (kilt_train_page_get_stop_armed (train));
    /* PoCL is a CPU device: the busy chart says what its near-100% means. */
    g_assert_nonnull (strstr (
        kilt_chart_get_title (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_BUSY)), "CPU"));
  }
  settle (0.3);
  screenshot (GTK_WIDGET (window), "train-finished");
  /* The lower half: busy %, the log and the per-layer times. */
  {
    GtkWidget *w = GTK_WIDGET (kilt_window_get_train_page (window));
    GtkAdjustment *adj;

    while (w && !GTK_IS_SCROLLED_WINDOW (w))
      w = gtk_widget_get_first_child (w);
    g_assert_nonnull (w);
    adj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (w));
    gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj));
    settle (0.3);
    screenshot (window_content (), "train-finished-lower");
    gtk_adjustment_set_value (adj, 0);
  }
}

/* A run that fails on the device: the error shows on the Train page, the window stays
 * usable, and the next run works. */
static void
test_failed_run (void)
{
  KiltSession *session = kilt_window_get_session (window);

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (wait_until (data_idle, NULL, 60));
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), 2);
  kilt_window_set_sample_limit (window, 512);
  /* The 40th kernel launch from now fails, as a lost device would. */
  kilt_fault_set (KILT_FAULT_ENQUEUE, 40);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (wait_until (run_over, NULL, 120));
  kilt_fault_set (KILT_FAULT_ENQUEUE, 0);
  g_test_message ("shown: %s", kilt_window_get_last_message (window));
  g_assert_true (g_str_has_prefix (kilt_window_get_last_message (window), "Training failed: "));
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "train");
  /* Charts left empty say the run failed, not that figures are coming. */
  {
    KiltChart *acc = kilt_train_page_get_chart (kilt_window_get_train_page (window),
                                                KILT_TRAIN_CHART_ACCURACY);
    if (kilt_chart_get_n_points (acc, 0) == 0)
      g_assert_nonnull (strstr (kilt_chart_get_empty_text (acc), "failed"));
  }
  settle (0.3);
  screenshot (window_content (), "train-failed");

  g_assert_true (wait_until (data_idle, NULL, 60));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (kilt_session_is_running (session));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");
  /* A new run puts back the charts' usual words. */
  g_assert_null (strstr (kilt_chart_get_empty_text (kilt_train_page_get_chart (
                             kilt_window_get_train_page (window), KILT_TRAIN_CHART_ACCURACY)),
                         "failed"));
}

static KiltRun *newest_run (void);

/* Issue 15, 5: a plan that does not fit keeps Start from starting a run that can only fail,
 * says what fits, and the page's plan is the run's (the same budget as the trainer). */
static void
test_plan_does_not_fit (void)
{
  KiltModelPage *model = kilt_window_get_model_page (window);
  KiltSession *session = kilt_window_get_session (window);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRun) before = NULL, after = NULL;

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (wait_until (data_idle, NULL, 60));
  g_assert_true (kilt_model_page_choose_preset (model, "mlp"));
  g_assert_true (kilt_model_page_check_fits (model, &error));
  g_assert_no_error (error);
  before = newest_run ();
  /* A 1 MiB budget, as KILT_MEMORY_BUDGET_MB gives the trainer: the mlp needs more. */
  g_setenv ("KILT_MEMORY_BUDGET_MB", "1", TRUE);
  g_assert_true (kilt_model_page_choose_preset (model, "mlp"));
  g_assert_false (kilt_model_page_check_fits (model, &error));
  g_test_message ("%s", error->message);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (error->message, "does not fit"));
  kilt_window_show_page (window, "model");
  settle (0.3);
  screenshot (window_content (), "model-does-not-fit");

  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_false (kilt_session_is_running (session));
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "train");
  g_test_message ("shown: %s", kilt_window_get_last_message (window));
  g_assert_nonnull (strstr (kilt_window_get_last_message (window), "does not fit"));
  g_assert_null (strstr (kilt_window_get_last_message (window), "Resume"));
  /* No run was stored for it. */
  after = newest_run ();
  g_assert_cmpint (after ? after->id : 0, ==, before ? before->id : 0);
  settle (0.3);
  screenshot (window_content (), "train-does-not-fit");

  /* No batch fits in 1 MiB: nothing to offer. In 200 MiB batch 65536 does not fit, a smaller
   * one does, and "Use Batch N" sets it. */
  g_assert_false (kilt_model_page_use_fitting_batch (model));
  g_setenv ("KILT_MEMORY_BUDGET_MB", "200", TRUE);
  kilt_model_page_set_batch (model, 65536);
  /* The row's plan is worked out off the UI thread: not yet answered as set_batch returns,
   * while Start's check and "Use Batch" plan what the page holds now. */
  g_assert_false (kilt_model_page_plan_is_current (model));
  g_assert_false (kilt_model_page_check_fits (model, NULL));
  g_assert_true (kilt_model_page_use_fitting_batch (model));
  /* The batch it set is planned again, and the row then offers no other batch. */
  g_assert_true (wait_until (plan_current, model, 30));
  g_assert_false (gtk_widget_get_visible (find_button (GTK_WIDGET (model), "Use Batch ")));
  g_test_message ("Use Batch set %u", kilt_model_page_get_batch (model));
  g_assert_cmpuint (kilt_model_page_get_batch (model), <, 65536);
  g_assert_cmpuint (kilt_model_page_get_batch (model), >, 32);
  g_assert_true (kilt_model_page_check_fits (model, NULL));
  kilt_model_page_set_batch (model, 65536);
  kilt_window_show_page (window, "model");
  /* Its plan comes off the UI thread: under ASan it took longer than the settle alone. */
  g_assert_true (wait_until (plan_current, model, 30));
  settle (0.3);
  {
    /* The plan with its breakdown and the button, at the bottom of the page. */
    GtkWidget *sw = find_type (GTK_WIDGET (model), GTK_TYPE_SCROLLED_WINDOW);
    g_assert_nonnull (sw);
    GtkWidget *button = find_button (GTK_WIDGET (model), "Use Batch ");
    graphene_rect_t box;
    g_assert_nonnull (button);
    g_assert_true (gtk_widget_get_visible (button));
    g_assert_true (gtk_widget_compute_bounds (
        button, gtk_scrolled_window_get_child (GTK_SCROLLED_WINDOW (sw)), &box));
    gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)),
                              box.origin.y - 300);
    settle (0.3);
    screenshot (window_content (), "model-use-batch");
    gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)), 0);
  }
  kilt_model_page_set_batch (model, 32);

  g_unsetenv ("KILT_MEMORY_BUDGET_MB");
  g_assert_true (kilt_model_page_choose_preset (model, "mlp"));
  g_assert_true (kilt_model_page_check_fits (model, NULL));
}

/* The first action row under @w whose subtitle holds @text, or NULL. */
static GtkWidget *
find_row_saying (GtkWidget *w, const char *text)
{
  if (ADW_IS_ACTION_ROW (w) && adw_action_row_get_subtitle (ADW_ACTION_ROW (w))
      && strstr (adw_action_row_get_subtitle (ADW_ACTION_ROW (w)), text))
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_row_saying (c, text);
      if (found)
        return found;
    }
  return NULL;
}

/* Issue 11: the Activations choice beside the plan. With a budget between what recomputing and
 * keeping need, Keep All does not fit and says that recomputing would; Auto and Recompute fit
 * and the plan says what they keep; the choice is the setting runs take. */
static void
test_plan_recompute (void)
{
  KiltModelPage *model = kilt_window_get_model_page (window);
  g_autoptr (GSettings) settings = g_settings_new ("org.kilt.Kilt");
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autoptr (KiltPlan) keep = NULL, rc = NULL;
  g_autofree char *mb = NULL;
  const guint batch = 256;

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (wait_until (data_idle, NULL, 60));
  g_assert_true (kilt_model_page_choose_preset (model, "small_vgg"));
  kilt_model_page_set_batch (model, batch);
  m = kilt_model_page_create_model (model, &error);
  g_assert_no_error (error);
  g_assert_true (m->built || kilt_model_build (m, NULL));
  {
    /* The device's own figures (workspace sizes depend on it), with room for anything. */
    KiltOptimizerConfig opt = kilt_model_page_get_optimizer (model);
    guint64 room = (guint64)1 << 40;
    keep = kilt_plan_compute_memory (m, batch, &opt, 0, pocl_device (), room, KILT_MEMORY_KEEP);
    rc = kilt_plan_compute_memory (m, batch, &opt, 0, pocl_device (), room, KILT_MEMORY_RECOMPUTE);
  }
  g_test_message ("keep: %s; recompute: %s", keep->message, rc->message);
  /* Just above what recomputing the most needs (the page's data set is under a MiB here),
   * far below keeping everything: only recomputing fits. */
  g_assert_cmpuint (keep->total - rc->total, >, 64u << 20);
  mb = g_strdup_printf ("%" G_GUINT64_FORMAT, (rc->total >> 20) + 8);
  g_setenv ("KILT_MEMORY_BUDGET_MB", mb, TRUE);

  kilt_model_page_set_memory (model, KILT_MEMORY_KEEP);
  {
    g_autofree char *mode = g_settings_get_string (settings, "memory");
    g_assert_cmpstr (mode, ==, "keep");
  }
  g_assert_false (kilt_model_page_check_fits (model, &error));
  g_test_message ("Keep All in %s MiB: %s", mb, error->message);
  g_assert_nonnull (strstr (error->message, "recomputing activations, batch 256 fits in"));
  g_assert_nonnull (strstr (error->message, "Set Activations to Auto or Recompute"));
  g_clear_error (&error);

  kilt_model_page_set_memory (model, KILT_MEMORY_AUTO);
  g_assert_cmpint (kilt_model_page_get_memory (model), ==, KILT_MEMORY_AUTO);
  g_assert_true (kilt_model_page_check_fits (model, &error));
  g_assert_no_error (error);
  kilt_window_show_page (window, "model");
  g_assert_true (wait_until (plan_current, model, 30));
  settle (0.3);
  g_assert_nonnull (find_row_saying (GTK_WIDGET (model), "recomputes the rest"));
  g_assert_nonnull (find_row_saying (GTK_WIDGET (model), "fits in"));

  kilt_model_page_set_memory (model, KILT_MEMORY_RECOMPUTE);
  {
    g_autofree char *mode = g_settings_get_string (settings, "memory");
    g_assert_cmpstr (mode, ==, "recompute");
  }
  g_assert_true (kilt_model_page_check_fits (model, NULL));
  g_assert_true (wait_until (plan_current, model, 30));
  {
    GtkWidget *row = find_row_saying (GTK_WIDGET (model), "recomputes the rest");
    g_assert_nonnull (row);
    g_test_message ("plan: %s", adw_action_row_get_subtitle (ADW_ACTION_ROW (row)));
  }

  g_unsetenv ("KILT_MEMORY_BUDGET_MB");
  kilt_model_page_set_memory (model, KILT_MEMORY_AUTO);
  kilt_model_page_set_batch (model, 32);
  g_assert_true (kilt_model_page_choose_preset (model, "mlp"));
  g_assert_true (wait_until (plan_current, model, 30));
  g_assert_null (find_row_saying (GTK_WIDGET (model), "recomputes the rest"));
}

static void
test_stop (void)
{
  KiltSession *session = kilt_window_get_session (window);

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (wait_until (data_idle, NULL, 60));
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), 200);
  kilt_window_set_sample_limit (window, 0);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (kilt_session_is_running (session));
  g_assert_true (wait_until (has_loss_points, NULL, 60));
  /* Pause and resume through the same action (Ctrl+P). */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.pause", NULL));
  g_assert_true (kilt_session_is_paused (session));
  settle (0.3);
  /* Paused keeps the epoch and drops the time left (issue 15, Train page). */
  {
    KiltTrainPage *train = kilt_window_get_train_page (window);
    g_test_message ("paused: %s / %s", kilt_train_page_get_status (train),
                    kilt_train_page_get_detail (train));
    g_assert_true (g_str_has_prefix (kilt_train_page_get_status (train), "Paused · Epoch "));
    g_assert_null (strstr (kilt_train_page_get_detail (train), "left"));
    g_assert_true (kilt_train_page_get_stop_armed (train));
  }
  g_assert_true (kilt_session_is_running (session));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.pause", NULL));
  g_assert_false (kilt_session_is_paused (session));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.stop", NULL));
  g_assert_true (wait_until (run_over, NULL, 30));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training stopped");
  /* Start is available again. */
  g_assert_true (gtk_widget_is_sensitive (GTK_WIDGET (window)));
  g_assert_true (wait_until (data_idle, NULL, 60));
}

/* The row titled @title somewhere under @w, or NULL. */
static GtkWidget *
find_row (GtkWidget *w, const char *title)
{
  if (ADW_IS_PREFERENCES_ROW (w)
      && g_strcmp0 (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (w)), title) == 0)
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_row (c, title);
      if (found)
        return found;
    }
  return NULL;
}

static gboolean
has_label (GtkWidget *w, const char *text)
{
  if (GTK_IS_LABEL (w) && g_str_equal (gtk_label_get_text (GTK_LABEL (w)), text))
    return TRUE;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    if (has_label (c, text))
      return TRUE;
  return FALSE;
}

/* The widget named @name (gtk_widget_set_name) under @w, or NULL. */
static GtkWidget *
find_named (GtkWidget *w, const char *name)
{
  if (g_strcmp0 (gtk_widget_get_name (w), name) == 0)
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_named (c, name);
      if (found)
        return found;
    }
  return NULL;
}

/* A device's facts, opened: among them which GEMM parameters it runs with. */
static void
test_device_facts (void)
{
  KiltDevicesPage *page = kilt_window_get_devices_page (window);
  const KiltDeviceInfo *d = pocl_device ();
  GtkWidget *row, *gemm;

  if (d == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  kilt_window_show_page (window, "devices");
  row = find_row (GTK_WIDGET (page), d->name);
  g_assert_nonnull (row);
  adw_expander_row_set_expanded (ADW_EXPANDER_ROW (row), TRUE);
  settle (0.3);
  gemm = find_row (row, "GEMM parameters");
  g_assert_nonnull (gemm);
  /* PoCL is a CPU device: Kilt's own GEMM kernels, not CLBlast's. */
  g_assert_true (has_label (gemm, "Kilt's own kernels"));
  screenshot (window_content (), "devices-facts");
  adw_expander_row_set_expanded (ADW_EXPANDER_ROW (row), FALSE);
}

/* Each optimizer shows its own settings, and what is shown is what a run gets. */
static void
test_optimizer_settings (void)
{
  KiltModelPage *page = kilt_window_get_model_page (window);
  GtkWidget *w = GTK_WIDGET (page);
  KiltOptimizerConfig sgd = kilt_optimizer_config_default (KILT_OPT_SGD), got;
  KiltOptimizerConfig adam = kilt_optimizer_config_default (KILT_OPT_ADAM);
  KiltOptimizerConfig rms = kilt_optimizer_config_default (KILT_OPT_RMSPROP);

  sgd.lr = 0.0125f;
  sgd.momentum = 0.875f;
  sgd.nesterov = TRUE;
  sgd.decay = 0.00025f;
  sgd.weight_decay = 0.0005f;
  kilt_model_page_set_optimizer (page, &sgd);
  got = kilt_model_page_get_optimizer (page);
  g_assert_cmpint (got.type, ==, KILT_OPT_SGD);
  g_assert_cmpfloat_with_epsilon (got.lr, sgd.lr, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.momentum, sgd.momentum, 1e-6);
  g_assert_true (got.nesterov);
  g_assert_cmpfloat_with_epsilon (got.decay, sgd.decay, 1e-9);
  g_assert_cmpfloat_with_epsilon (got.weight_decay, sgd.weight_decay, 1e-9);
  g_assert_true (gtk_widget_get_visible (find_row (w, "Momentum")));
  g_assert_true (gtk_widget_get_visible (find_row (w, "Nesterov momentum")));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Rho")));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Beta 1")));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Epsilon")));
  g_assert_true (gtk_widget_get_visible (find_row (w, "Validation split")));
  kilt_window_show_page (window, "model");
  settle (0.3);
  {
    /* The lower part of the page, where the settings are. */
    GtkWidget *sw = w;
    while (sw && !GTK_IS_SCROLLED_WINDOW (sw))
      sw = gtk_widget_get_first_child (sw);
    g_assert_nonnull (sw);
    gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)), 1e6);
    settle (0.3);
    screenshot (window_content (), "model-sgd-settings");
    gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)), 0);
  }

  adam.beta1 = 0.85f;
  adam.beta2 = 0.995f;
  adam.epsilon = 1e-6f;
  kilt_model_page_set_optimizer (page, &adam);
  got = kilt_model_page_get_optimizer (page);
  g_assert_cmpint (got.type, ==, KILT_OPT_ADAM);
  g_assert_cmpfloat_with_epsilon (got.beta1, adam.beta1, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.beta2, adam.beta2, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.epsilon, adam.epsilon, 1e-9);
  /* Momentum is not Adam's: hidden, and not passed on. */
  g_assert_false (gtk_widget_get_visible (find_row (w, "Momentum")));
  g_assert_cmpfloat (got.momentum, ==, kilt_optimizer_config_default (KILT_OPT_ADAM).momentum);
  g_assert_true (gtk_widget_get_visible (find_row (w, "Beta 2")));

  /* Choosing RMSprop brings its own defaults (Keras': rho 0.9, eps 1e-7). */
  kilt_model_page_set_optimizer (page, &rms);
  got = kilt_model_page_get_optimizer (page);
  g_assert_cmpfloat_with_epsilon (got.rho, rms.rho, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.epsilon, rms.epsilon, 1e-12);
  g_assert_true (gtk_widget_get_visible (find_row (w, "Rho")));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Beta 1")));
  /* The rest of the tests train with Adam's defaults. */
  adam = kilt_optimizer_config_default (KILT_OPT_ADAM);
  kilt_model_page_set_optimizer (page, &adam);
}

/* The learning-rate schedule and label smoothing: each schedule shows the settings it uses,
 * what is shown is what a run gets, and the choice is kept in GSettings as the others are. */
static void
test_schedule_settings (void)
{
  KiltModelPage *page = kilt_window_get_model_page (window);
  GtkWidget *w = GTK_WIDGET (page);
  KiltOptimizerConfig sgd = kilt_optimizer_config_default (KILT_OPT_SGD), got;
  g_autoptr (GSettings) settings = g_settings_new ("org.kilt.Kilt");
  g_autofree char *stored = NULL;

  sgd.lr = 0.05f;
  sgd.schedule.type = KILT_LR_COSINE;
  sgd.schedule.warmup_epochs = 1.5f;
  sgd.schedule.start = 0.125f;
  sgd.schedule.final = 0.0625f;
  kilt_model_page_set_optimizer (page, &sgd);
  got = kilt_model_page_get_optimizer (page);
  g_assert_cmpint (got.schedule.type, ==, KILT_LR_COSINE);
  g_assert_cmpfloat_with_epsilon (got.schedule.warmup_epochs, 1.5, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.schedule.start, 0.125, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.schedule.final, 0.0625, 1e-6);
  g_assert_true (kilt_lr_schedule_check (&got.schedule, NULL));
  g_assert_true (gtk_widget_get_visible (find_row (w, "Warm-up epochs")));
  g_assert_true (gtk_widget_get_visible (find_row (w, "Start fraction")));
  g_assert_true (gtk_widget_get_visible (find_row (w, "Final fraction")));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Peak at")));
  stored = g_settings_get_string (settings, "lr-schedule");
  g_assert_cmpstr (stored, ==, "cosine");
  g_assert_cmpfloat_with_epsilon (g_settings_get_double (settings, "warmup-epochs"), 1.5, 1e-9);

  /* One-cycle rises by itself: no warm-up row, and none passed on (the engine would refuse
   * one); its peak shows. */
  sgd.schedule.type = KILT_LR_ONE_CYCLE;
  sgd.schedule.start = 0.2f;
  sgd.schedule.peak = 0.23f;
  sgd.schedule.final = 0;
  kilt_model_page_set_optimizer (page, &sgd);
  got = kilt_model_page_get_optimizer (page);
  g_assert_cmpint (got.schedule.type, ==, KILT_LR_ONE_CYCLE);
  g_assert_false (gtk_widget_get_visible (find_row (w, "Warm-up epochs")));
  g_assert_true (gtk_widget_get_visible (find_row (w, "Peak at")));
  g_assert_cmpfloat (got.schedule.warmup_epochs, ==, 0);
  g_assert_cmpfloat_with_epsilon (got.schedule.peak, 0.23, 1e-6);
  g_assert_cmpfloat_with_epsilon (got.schedule.start, 0.2, 1e-6);
  g_assert_true (kilt_lr_schedule_check (&got.schedule, NULL));
  g_clear_pointer (&stored, g_free);
  stored = g_settings_get_string (settings, "lr-schedule");
  g_assert_cmpstr (stored, ==, "one-cycle");

  /* Constant without warm-up: nothing of the schedule shows but the warm-up. */
  sgd.schedule = kilt_lr_schedule_default ();
  kilt_model_page_set_optimizer (page, &sgd);
  got = kilt_model_page_get_optimizer (page);
  g_assert_true (kilt_lr_schedule_is_flat (&got.schedule));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Start fraction")));
  g_assert_false (gtk_widget_get_visible (find_row (w, "Final fraction")));

  kilt_model_page_set_label_smoothing (page, 0.2f);
  g_assert_cmpfloat_with_epsilon (kilt_model_page_get_label_smoothing (page), 0.2, 1e-6);
  g_assert_cmpfloat_with_epsilon (g_settings_get_double (settings, "label-smoothing"), 0.2, 1e-6);
  g_assert_true (gtk_widget_get_visible (find_row (w, "Label smoothing")));
  kilt_model_page_set_label_smoothing (page, 0);

  /* The flip-and-translate augmentation on the Data page: kept in GSettings, and it and
   * Keras' augmentation exclude each other there as a run does. */
  {
    KiltDataPage *data = kilt_window_get_data_page (window);
    GtkWidget *dw = GTK_WIDGET (data), *row = find_row (dw, "Flip and translate");
    gboolean augment = g_settings_get_boolean (settings, "augment");
    g_assert_nonnull (row);
    g_settings_set_boolean (settings, "augment", FALSE);
    g_settings_set_uint (settings, "translate", 2);
    g_assert_cmpuint (kilt_data_page_get_translate (data), ==, 2);
    g_assert_false (kilt_data_page_get_augment (data));
    g_assert_true (gtk_widget_get_sensitive (row));
    g_assert_false (gtk_widget_get_sensitive (find_row (dw, "Augment images")));
    {
      /* How the rows look with the shift on: scrolled into view for the screenshot. */
      GtkWidget *sw = find_type (dw, GTK_TYPE_SCROLLED_WINDOW);
      graphene_rect_t box;
      g_assert_nonnull (sw);
      kilt_window_show_page (window, "data");
      settle (0.3);
      g_assert_true (gtk_widget_compute_bounds (
          row, gtk_scrolled_window_get_child (GTK_SCROLLED_WINDOW (sw)), &box));
      gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)),
                                box.origin.y - 200);
      settle (0.3);
      screenshot (window_content (), "data-translate");
      gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)), 0);
    }
    g_settings_set_uint (settings, "translate", 0);
    g_settings_set_boolean (settings, "augment", TRUE);
    g_assert_cmpuint (kilt_data_page_get_translate (data), ==, 0);
    g_assert_false (gtk_widget_get_sensitive (row));
    g_assert_true (gtk_widget_get_sensitive (find_row (dw, "Augment images")));
    g_settings_set_boolean (settings, "augment", augment);
    g_assert_nonnull (find_row (dw, "Flip test-time augmentation"));
    g_settings_set_boolean (settings, "tta-flip", TRUE);
    g_assert_true (kilt_data_page_get_tta_flip (data));
    g_settings_set_boolean (settings, "tta-flip", FALSE);
    g_assert_false (kilt_data_page_get_tta_flip (data));
  }

  /* The rest of the tests train with Adam's defaults. */
  sgd = kilt_optimizer_config_default (KILT_OPT_ADAM);
  kilt_model_page_set_optimizer (page, &sgd);
}

static GtkWidget *
visible_dialog (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();
  GtkWidget *dialog = NULL;

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) w = g_list_model_get_item (toplevels, i);
      if (ADW_IS_MESSAGE_DIALOG (w) && gtk_widget_get_visible (GTK_WIDGET (w)))
        dialog = GTK_WIDGET (w);
    }
  return dialog;
}

static KiltRunsPage *
runs_page (void)
{
  GtkWidget *w = GTK_WIDGET (window);
  AdwViewStack *stack = NULL;

  while (w && !ADW_IS_TOAST_OVERLAY (w))
    w = gtk_widget_get_first_child (w);
  /* The stack is under the toast overlay's box. */
  for (GtkWidget *c
       = gtk_widget_get_first_child (adw_toast_overlay_get_child (ADW_TOAST_OVERLAY (w)));
       c; c = gtk_widget_get_next_sibling (c))
    if (ADW_IS_VIEW_STACK (c))
      stack = ADW_VIEW_STACK (c);
  g_assert_nonnull (stack);
  return KILT_RUNS_PAGE (adw_view_stack_get_child_by_name (stack, "runs"));
}

static KiltRun *
stored_run (gint64 id)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store
      = kilt_run_store_open (kilt_runs_page_get_db_path (runs_page ()), &error);
  KiltRun *run;

  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  return run;
}

/* The Train page's status label: its first title-4 label. */
static GtkWidget *
train_status_label (KiltTrainPage *train)
{
  GtkWidget *stack[64];
  int top = 0;

  stack[top++] = GTK_WIDGET (train);
  while (top > 0)
    {
      GtkWidget *x = stack[--top];
      if (GTK_IS_LABEL (x) && gtk_widget_has_css_class (x, "title-4"))
        return x;
      for (GtkWidget *c = gtk_widget_get_first_child (x); c && top < 63;
           c = gtk_widget_get_next_sibling (c))
        stack[top++] = c;
    }
  g_assert_not_reached ();
}

static void
saw_device_2 (GtkLabel *label, GParamSpec *pspec, gboolean *saw)
{
  if (g_str_has_prefix (gtk_label_get_label (label), "Device 2 of 2"))
    *saw = TRUE;
}

/* Compare Devices: the dialog lists the devices with check boxes; the runs go one after
 * another with progress on the Train page, and end on the Runs page, selected and compared. */
static void
test_compare_devices (void)
{
  const KiltDeviceInfo *d = pocl_device ();
  g_autofree char *id = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) selected = NULL;
  GtkWidget *dialog;
  KiltRun *runs[2];
  gboolean saw_second = FALSE;
  GtkWidget *status = train_status_label (kilt_window_get_train_page (window));

  if (d == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  id = g_strdup (d->id);
  g_assert_true (wait_until (data_idle, NULL, 60));
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), 2);
  /* The whole sample: with a 256-sample limit each run took well under a second and the
   * second device's progress line could come and go between two looks at the page. */
  kilt_window_set_sample_limit (window, 0);

  /* Through the action: the dialog, with the chosen device ticked. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.compare-devices", NULL));
  settle (0.3);
  dialog = visible_dialog ();
  g_assert_nonnull (dialog);
  {
    g_auto (GStrv) chosen = kilt_device_picker_dup_chosen (dialog);
    g_assert_cmpuint (g_strv_length (chosen), ==, 1);
    g_assert_cmpstr (chosen[0], ==, id);
  }
  screenshot (dialog, "compare-devices-dialog");
  /* One device ticked compares nothing: Compare is not offered, and on a machine with one
   * device the dialog says so. */
  g_assert_false (adw_message_dialog_get_response_enabled (ADW_MESSAGE_DIALOG (dialog), "ok"));
  if (kilt_devices_page_get_devices (kilt_window_get_devices_page (window))->len == 1)
    g_assert_nonnull (
        strstr (adw_message_dialog_get_body (ADW_MESSAGE_DIALOG (dialog)), "needs two"));
  /* Nothing ticked: Compare is not offered. */
  kilt_device_picker_set_chosen (dialog, NULL);
  g_assert_false (adw_message_dialog_get_response_enabled (ADW_MESSAGE_DIALOG (dialog), "ok"));
  adw_message_dialog_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  settle (0.2);
  g_assert_false (kilt_session_is_running (kilt_window_get_session (window)));

  /* This machine has one OpenCL device: compare it with itself (two runs, same seed). */
  {
    const char *ids[] = { id, id, NULL };
    g_assert_true (kilt_window_compare_devices (window, ids, &error));
  }
  g_assert_no_error (error);
  g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "train");
  /* Progress on the Train page names the device of the sequence: every text the status label
   * shows is seen, however briefly. */
  {
    gint64 end = g_get_monotonic_time () + 120 * G_USEC_PER_SEC;
    gboolean shot = FALSE;

    g_signal_connect (status, "notify::label", G_CALLBACK (saw_device_2), &saw_second);
    while (kilt_session_is_running (kilt_window_get_session (window))
           && g_get_monotonic_time () < end)
      {
        g_main_context_iteration (NULL, FALSE);
        if (saw_second && !shot)
          screenshot (window_content (), "compare-devices-progress");
        shot = saw_second;
        g_usleep (2000);
      }
    g_signal_handlers_disconnect_by_func (status, saw_device_2, &saw_second);
  }
  g_assert_false (kilt_session_is_running (kilt_window_get_session (window)));
  g_test_message ("shown: %s", kilt_window_get_last_message (window));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Comparison finished");
  g_assert_true (saw_second);

  /* The Runs page, with the two runs selected and the first as the baseline. */
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "runs");
  selected = kilt_runs_page_get_selected (runs_page ());
  g_assert_cmpuint (selected->len, ==, 2);
  g_assert_cmpint (kilt_runs_page_get_baseline (runs_page ()), ==,
                   MIN (g_array_index (selected, gint64, 0), g_array_index (selected, gint64, 1)));
  for (guint i = 0; i < 2; i++)
    runs[i] = stored_run (g_array_index (selected, gint64, i));
  /* A shared comparison tag, the same seed and the same curves. */
  g_assert_cmpuint (runs[0]->tags->len, ==, 1);
  g_assert_true (g_str_has_prefix (runs[0]->tags->pdata[0], "compare-"));
  g_assert_cmpuint (runs[1]->tags->len, ==, 1);
  g_assert_cmpstr (runs[0]->tags->pdata[0], ==, runs[1]->tags->pdata[0]);
  g_assert_cmpuint (runs[0]->record.config.seed, ==, runs[1]->record.config.seed);
  g_assert_cmpuint (runs[0]->epochs->len, ==, 2);
  g_assert_cmpuint (runs[1]->epochs->len, ==, 2);
  for (guint e = 0; e < 2; e++)
    g_assert_cmpfloat (g_array_index (runs[0]->epochs, KiltEpochRecord, e).train_loss, ==,
                       g_array_index (runs[1]->epochs, KiltEpochRecord, e).train_loss);
  kilt_run_free (runs[0]);
  kilt_run_free (runs[1]);
  settle (0.5);
  screenshot (window_content (), "compare-devices-runs");
  g_assert_true (wait_until (data_idle, NULL, 60));
}

/* Run Again On…: the chosen run's model, data and settings, on the chosen device; both runs
 * compared at the end. */
static void
test_run_again (void)
{
  KiltRunsPage *page = runs_page ();
  const KiltDeviceInfo *d = pocl_device ();
  g_autoptr (GArray) selected = NULL;
  g_autoptr (KiltRun) orig = NULL;
  g_autoptr (KiltRun) again = NULL;
  GtkWidget *dialog;
  gint64 id;

  if (d == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (kilt_runs_page_reload (page, NULL));
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), >, 0);
  /* The newest run with its data source recorded (every run of this build has it). */
  kilt_runs_page_sort_by (page, "Date", TRUE);
  id = kilt_runs_page_get_shown_id (page, 0);
  kilt_runs_page_select (page, &id, 1);
  g_assert_true (kilt_runs_page_can_run_again (page, NULL));
  orig = stored_run (id);

  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "runs.run-again", NULL));
  settle (0.3);
  dialog = visible_dialog ();
  g_assert_nonnull (dialog);
  screenshot (dialog, "run-again-dialog");
  {
    const char *ids[] = { d->id, NULL };
    kilt_device_picker_set_chosen (dialog, ids);
  }
  adw_message_dialog_response (ADW_MESSAGE_DIALOG (dialog), "ok");
  g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");

  /* Both on the Runs page: the original as the baseline, and the new run. */
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "runs");
  selected = kilt_runs_page_get_selected (page);
  g_assert_cmpuint (selected->len, ==, 2);
  g_assert_cmpint (kilt_runs_page_get_baseline (page), ==, id);
  for (guint i = 0; i < 2; i++)
    if (g_array_index (selected, gint64, i) != id)
      again = stored_run (g_array_index (selected, gint64, i));
  g_assert_nonnull (again);
  g_assert_cmpint (again->id, >, id);
  /* The same configuration, model and data. */
  g_assert_cmpstr (again->record.model_json, ==, orig->record.model_json);
  g_assert_cmpstr (again->record.data_spec, ==, orig->record.data_spec);
  g_assert_cmpstr (again->record.data_hash, ==, orig->record.data_hash);
  g_assert_cmpuint (again->record.config.seed, ==, orig->record.config.seed);
  g_assert_cmpuint (again->record.config.epochs, ==, orig->record.config.epochs);
  g_assert_cmpuint (again->record.config.batch, ==, orig->record.config.batch);
  g_assert_cmpuint (again->record.config.max_train_samples, ==,
                    orig->record.config.max_train_samples);
  g_assert_cmpint (again->record.config.opt.type, ==, orig->record.config.opt.type);
  g_assert_cmpfloat (again->record.config.opt.lr, ==, orig->record.config.opt.lr);
  g_assert_cmpstr (again->record.device_id, ==, d->id);
  g_assert_cmpint (again->status, ==, KILT_RUN_FINISHED);
  g_assert_cmpuint (again->epochs->len, ==, orig->epochs->len);
  for (guint e = 0; e < again->epochs->len; e++)
    g_assert_cmpfloat (g_array_index (again->epochs, KiltEpochRecord, e).train_loss, ==,
                       g_array_index (orig->epochs, KiltEpochRecord, e).train_loss);
  settle (0.5);
  screenshot (window_content (), "run-again-runs");
}

/* The newest run in the store (the one just started), or NULL. */
static KiltRun *
newest_run (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store
      = kilt_run_store_open (kilt_runs_page_get_db_path (runs_page ()), &error);
  g_autoptr (GPtrArray) runs = NULL;

  g_assert_no_error (error);
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  return runs->len ? g_ptr_array_steal_index (runs, 0) : NULL;
}

static gboolean
newest_has_epoch (gpointer data)
{
  g_autoptr (KiltRun) run = newest_run ();

  g_usleep (20000); /* each look opens the store */
  return run && run->id > *(gint64 *)data && run->epochs->len >= 1;
}

typedef struct
{
  gboolean done, ok;
  GError *error;
} Saved;

static void
weights_saved (GObject *source, GAsyncResult *result, gpointer data)
{
  Saved *s = data;

  s->ok = kilt_runs_page_save_weights_finish (KILT_RUNS_PAGE (source), result, &s->error);
  s->done = TRUE;
}

static gboolean
saved_done (gpointer data)
{
  return ((Saved *)data)->done;
}

/* The Runs page's Save Weights to @path, waited for with the main loop turning. */
static gboolean
save_weights (KiltRunsPage *page, const char *path, GError **error)
{
  Saved s = { FALSE, FALSE, NULL };

  kilt_runs_page_save_weights (page, path, weights_saved, &s);
  g_assert_true (wait_until (saved_done, &s, 60));
  if (s.error)
    g_propagate_error (error, s.error);
  return s.ok;
}

typedef struct
{
  gboolean done;
  char *summary;
  GError *error;
} Exported;

static void
model_exported (GObject *source, GAsyncResult *result, gpointer data)
{
  Exported *e = data;

  e->summary = kilt_runs_page_export_model_finish (KILT_RUNS_PAGE (source), result, &e->error);
  e->done = TRUE;
}

static gboolean
exported_done (gpointer data)
{
  return ((Exported *)data)->done;
}

/* The Runs page's Export Model to @path, waited for: what was written, or NULL and @error. */
static char *
export_model (KiltRunsPage *page, const char *path, GError **error)
{
  Exported e = { FALSE, NULL, NULL };

  kilt_runs_page_export_model (page, path, model_exported, &e);
  g_assert_true (wait_until (exported_done, &e, 60));
  if (e.error)
    g_propagate_error (error, e.error);
  return e.summary;
}

/* A run whose device fails after its first epoch goes on with Resume, as a new run from its
 * last finished epoch, on a copy of its checkpoint; and its weights can be saved. */
static void
test_resume (void)
{
  KiltRunsPage *page = runs_page ();
  g_autoptr (KiltRun) before = NULL, stopped = NULL, resumed = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("kilt-ui-XXXXXX", NULL);
  g_autofree char *saved = g_build_filename (dir, "weights.ckpt", NULL);
  gint64 last_id;
  guint done;

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (wait_until (data_idle, NULL, 60));
  before = newest_run ();
  last_id = before ? before->id : 0;
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), 20);
  kilt_window_set_sample_limit (window, 512);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (wait_until (newest_has_epoch, &last_id, 60));
  /* The device fails 50 launches later, as a lost GPU would. */
  kilt_fault_set (KILT_FAULT_ENQUEUE, 50);
  g_assert_true (wait_until (run_over, NULL, 30));
  kilt_fault_set (KILT_FAULT_ENQUEUE, 0);
  g_test_message ("shown: %s", kilt_window_get_last_message (window));
  g_assert_true (g_str_has_prefix (kilt_window_get_last_message (window), "Training failed: "));
  g_assert_nonnull (strstr (kilt_window_get_last_message (window), "Resume on the Runs page"));

  stopped = newest_run ();
  g_assert_cmpint (stopped->status, ==, KILT_RUN_FAILED);
  done = g_array_index (stopped->epochs, KiltEpochRecord, stopped->epochs->len - 1).epoch;
  g_assert_cmpuint (done, >=, 1);
  g_assert_cmpuint (done, <, 20);
  g_assert_nonnull (stopped->record.config.checkpoint_path);
  g_assert_true (g_file_test (stopped->record.config.checkpoint_path, G_FILE_TEST_IS_REGULAR));
  g_assert_true (kilt_runs_page_reload (page, &error));
  kilt_runs_page_select (page, &stopped->id, 1);
  g_assert_true (kilt_runs_page_can_resume (page, &error));
  g_assert_no_error (error);

  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "runs.resume", NULL));
  g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");
  resumed = newest_run ();
  g_assert_cmpint (resumed->id, >, stopped->id);
  g_assert_cmpint (resumed->status, ==, KILT_RUN_FINISHED);
  g_assert_true (resumed->record.config.resume);
  /* Issue 15, 9: the name links it to the run it goes on from ... */
  {
    g_autofree char *want = g_strdup_printf ("%s (resumed from #%" G_GINT64_FORMAT ")",
                                             stopped->record.name, stopped->id);
    g_assert_cmpstr (resumed->record.name, ==, want);
  }
  /* ... and the Train page drew that run's curves first: training from its first epoch, and
   * a validation point for every epoch of both runs. */
  {
    KiltTrainPage *train = kilt_window_get_train_page (window);
    gsize n;
    const double *p
        = kilt_chart_get_reduced (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 0, &n);
    g_assert_cmpuint (n, >, 0);
    g_test_message ("the loss curve starts at epoch %.2f; the resumed run at %u", p[0], done);
    g_assert_cmpfloat (p[0], <, 1.0);
    g_assert_cmpuint (
        kilt_chart_get_n_points (kilt_train_page_get_chart (train, KILT_TRAIN_CHART_LOSS), 1), ==,
        20);
    kilt_window_show_page (window, "train");
    settle (0.3);
    screenshot (window_content (), "train-resumed");
  }
  g_assert_cmpstr (resumed->record.device_id, ==, stopped->record.device_id);
  /* Epochs done+1 to 20 ran; the stopped run's checkpoint is its own still. */
  g_assert_cmpuint (resumed->epochs->len, ==, 20 - done);
  g_assert_cmpuint (g_array_index (resumed->epochs, KiltEpochRecord, 0).epoch, ==, done + 1);
  g_assert_cmpstr (resumed->record.config.checkpoint_path, !=,
                   stopped->record.config.checkpoint_path);
  g_assert_true (g_file_test (stopped->record.config.checkpoint_path, G_FILE_TEST_IS_REGULAR));

  /* A finished run cannot be resumed, and says why; its weights can be saved. */
  g_assert_true (kilt_runs_page_reload (page, &error));
  kilt_runs_page_select (page, &resumed->id, 1);
  g_assert_false (kilt_runs_page_can_resume (page, &error));
  g_assert_nonnull (strstr (error->message, "trained all its epochs"));
  g_clear_error (&error);
  g_assert_true (save_weights (page, saved, &error));
  g_assert_no_error (error);
  {
    g_autoptr (KiltCheckpoint) ck = kilt_checkpoint_load (saved, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ck->epochs_done, ==, 20);
  }
  /* A place it cannot go: the error says so, and names nothing saved. */
  {
    g_autofree char *nowhere = g_build_filename (dir, "no-such-folder", "w.ckpt", NULL);
    g_assert_false (save_weights (page, nowhere, &error));
    g_test_message ("%s", error->message);
    g_assert_true (g_str_has_prefix (error->message, "Saving the weights: "));
    g_clear_error (&error);
  }
  /* Export Model: the trained weights as Keras 3 weights that read back as they were, and as
   * ONNX; a .keras is refused for a model that did not come from Keras, saying what to write. */
  {
    g_autofree char *h5 = g_build_filename (dir, "m.weights.h5", NULL);
    g_autofree char *onnx = g_build_filename (dir, "m.onnx", NULL);
    g_autofree char *keras = g_build_filename (dir, "m.keras", NULL);
    g_autofree char *summary = NULL, *summary2 = NULL, *none = NULL;
    g_autoptr (KiltModel) model
        = kilt_model_load_json_data (resumed->record.model_json, -1, "run", &error);
    g_autoptr (KiltCheckpoint) ck = kilt_checkpoint_load (saved, &error);
    const float *params, *state;

    g_assert_no_error (error);
    g_assert_true (
        gtk_widget_is_sensitive (find_button_with_action (GTK_WIDGET (page), "runs.export-model")));
    summary = export_model (page, h5, &error);
    g_assert_no_error (error);
    g_test_message ("exported: %s", summary);
    g_assert_nonnull (strstr (summary, "tensors of Keras 3 weights"));
    g_assert_true (kilt_keras_file_load_weights (model, NULL, h5, &error));
    g_assert_no_error (error);
    g_assert_true (kilt_model_get_weights (model, &params, &state));
    g_assert_cmpmem (params, model->n_params * sizeof (float), ck->params,
                     ck->n_params * sizeof (float));
    if (kilt_onnx_export_available ())
      {
        summary2 = export_model (page, onnx, &error);
        g_assert_no_error (error);
        g_assert_nonnull (strstr (summary2, "ONNX opset"));
        g_unlink (onnx);
      }
    none = export_model (page, keras, &error);
    g_assert_null (none);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "not imported from Keras"));
    g_assert_false (g_file_test (keras, G_FILE_TEST_EXISTS));
    g_clear_error (&error);
    g_unlink (h5);
  }
  g_unlink (saved);
  g_rmdir (dir);
  /* The picture: both runs' loss, one going on from the other. */
  {
    gint64 both[] = { stopped->id, resumed->id };
    kilt_runs_page_select (page, both, 2);
    kilt_runs_page_set_baseline (page, stopped->id);
    kilt_runs_page_set_chart (page, KILT_REPORT_CHART_LOSS);
  }
  kilt_window_show_page (window, "runs");
  settle (0.3);
  screenshot (window_content (), "runs-resumed");
}

/* A finished run written straight into the test's store, as kilt-cli or an earlier session of
 * the window would have left it. Returns its id. */
static gint64
store_add_run_with (const char *name, guint epochs, double epoch_seconds, KiltOptimizerType opt)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (g_getenv ("KILT_RUNS_DB"), &error);
  KiltRunRecord rec = { 0 };
  gint64 id = 0;
  double elapsed = 0;

  g_assert_no_error (error);
  rec.name = g_strdup (name);
  rec.device_name = g_strdup ("Earlier device");
  rec.model_name = g_strdup ("mlp");
  rec.data_description = g_strdup ("sample");
  rec.config.epochs = epochs;
  rec.config.batch = 32;
  rec.config.opt = kilt_optimizer_config_default (opt);
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  for (guint e = 1; e <= epochs; e++)
    {
      KiltEpochRecord ep = { .epoch = e };
      ep.wall_seconds = epoch_seconds;
      elapsed += epoch_seconds;
      ep.elapsed_seconds = elapsed;
      ep.train_loss = 2.0 / e;
      ep.train_accuracy = 0.3 + 0.1 * e;
      ep.val_loss = ep.train_loss * 1.1;
      ep.val_accuracy = ep.train_accuracy - 0.02;
      ep.samples_per_second = 512 / epoch_seconds;
      g_assert_true (kilt_run_store_add_epoch (store, id, &ep, &error));
    }
  g_assert_true (kilt_run_store_finish_run (store, id, KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
  kilt_run_record_clear (&rec);
  return id;
}

static gint64
store_add_run (const char *name, guint epochs, double epoch_seconds)
{
  return store_add_run_with (name, epochs, epoch_seconds, KILT_OPT_RMSPROP);
}

/* Issue 15, 1: runs already in the store are on the Runs page at start, F5 reads the store
 * again from anywhere in the window, and the empty text says whether there are runs. */
static void
test_runs_at_start (void)
{
  KiltRunsPage *page = runs_page ();
  gint64 later;

  kilt_window_show_page (window, "runs");
  settle (0.3);
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 1);
  g_assert_cmpint (kilt_runs_page_get_shown_id (page, 0), ==, first_run_id);
  g_test_message ("empty text: %s", kilt_runs_page_get_empty_title (page));
  g_assert_nonnull (strstr (kilt_runs_page_get_empty_title (page), "1 run"));
  screenshot (window_content (), "runs-at-start");

  /* A run from the shell while the page is shown: F5 (the window's binding) brings it. It has
   * the same name as the first and another optimizer. */
  later = store_add_run_with ("before the window", 2, 1.5, KILT_OPT_ADAM);
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 1);
  gtk_widget_grab_focus (GTK_WIDGET (window));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.reload", NULL));
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 2);
  g_assert_nonnull (strstr (kilt_runs_page_get_empty_title (page), "2 runs"));
  /* Issue 15, 6 and 7: both selected, the comparison says what differs and names runs by id. */
  {
    gint64 both[] = { first_run_id, later };
    GtkWidget *diff;
    kilt_runs_page_select (page, both, 2);
    kilt_runs_page_set_chart (page, KILT_REPORT_CHART_SPEEDUP);
    settle (0.3);
    diff = find_named (GTK_WIDGET (page), "differences");
    g_assert_nonnull (diff);
    g_assert_true (has_label (diff, "Optimizer"));
    g_assert_true (has_label (diff, "adam"));
    g_assert_true (has_label (diff, "rmsprop"));
    g_assert_false (has_label (diff, "Model")); /* the same in both */
    g_assert_true (has_label (GTK_WIDGET (page), "Run"));
    screenshot (window_content (), "runs-differences");
    kilt_runs_page_select (page, NULL, 0);
  }
  /* A filter that matches nothing says so, rather than that there are no runs. */
  kilt_runs_page_set_filter (page, "no-such-run");
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 0);
  g_assert_nonnull (strstr (kilt_runs_page_get_empty_title (page), "No run matches"));
  kilt_runs_page_set_filter (page, NULL);
  /* Shown again after another page: read again (the run deleted meanwhile is gone). */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltRunStore) store = kilt_run_store_open (g_getenv ("KILT_RUNS_DB"), &error);
    g_assert_true (kilt_run_store_delete (store, later, &error));
  }
  kilt_window_show_page (window, "data");
  settle (0.2);
  kilt_window_show_page (window, "runs");
  settle (0.2);
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 1);
}

static void
test_screenshots (void)
{
  const char *pages[] = { "devices", "data", "model", "train", "runs" };

  for (guint i = 0; i < G_N_ELEMENTS (pages); i++)
    {
      g_autofree char *name = g_strdup_printf ("page-%s", pages[i]);
      kilt_window_show_page (window, pages[i]);
      settle (0.4);
      screenshot (window_content (), name);
    }
}

/* Names the widgets under @w whose minimum width is over @limit. */
static void
debug_widths (GtkWidget *w, int depth, int limit)
{
  int min;
  gtk_widget_measure (w, GTK_ORIENTATION_HORIZONTAL, -1, &min, NULL, NULL, NULL);
  if (min <= limit)
    return;
  g_test_message ("%*s%s %s: %d", depth, "", G_OBJECT_TYPE_NAME (w), gtk_widget_get_name (w), min);
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    debug_widths (c, depth + 1, limit);
}

static gboolean
window_is_size (gpointer data)
{
  const int *size = data;
  /* The size asked for includes the client-side frame (a few pixels) around the widget. */
  int w = gtk_widget_get_width (GTK_WIDGET (window)),
      h = gtk_widget_get_height (GTK_WIDGET (window));
  return w <= size[0] && w >= size[0] - 16 && h <= size[1] && h >= size[1] - 16;
}

/* Issue 15, 4: every page works at 1024x700 and 800x600: the window's minimum fits on each
 * page (the Train page held it at 1024 wide), the window really takes that size, and the
 * pages are drawn there. */
static void
test_small_sizes (void)
{
  /* The Train page first at each size: drawn right after the Model page at 800x600 it once
   * had no allocation for its first frames (a GTK warning), and the picture came out empty. */
  const char *pages[] = { "train", "devices", "data", "model", "runs" };
  const int sizes[][2] = { { 1024, 700 }, { 800, 600 } };

  for (guint z = 0; z < G_N_ELEMENTS (sizes); z++)
    {
      for (guint i = 0; i < G_N_ELEMENTS (pages); i++)
        {
          g_autofree char *name
              = g_strdup_printf ("size-%dx%d-%s", sizes[z][0], sizes[z][1], pages[i]);
          int min_w, min_h;

          kilt_window_show_page (window, pages[i]);
          gtk_window_set_default_size (GTK_WINDOW (window), sizes[z][0], sizes[z][1]);
          settle (0.3);
          gtk_widget_measure (GTK_WIDGET (window), GTK_ORIENTATION_HORIZONTAL, -1, &min_w, NULL,
                              NULL, NULL);
          gtk_widget_measure (GTK_WIDGET (window), GTK_ORIENTATION_VERTICAL, sizes[z][0], &min_h,
                              NULL, NULL, NULL);
          g_test_message ("%s: minimum %d x %d", name, min_w, min_h);
          /* On failure, say which widgets hold the window wide. */
          if (min_w > sizes[z][0])
            debug_widths (GTK_WIDGET (window), 0, sizes[z][0]);
          g_assert_cmpint (min_w, <=, sizes[z][0]);
          g_assert_cmpint (min_h, <=, sizes[z][1]);
          if (!wait_until (window_is_size, (gpointer)sizes[z], 5))
            g_error ("%s: the window is %d x %d", name, gtk_widget_get_width (GTK_WIDGET (window)),
                     gtk_widget_get_height (GTK_WIDGET (window)));
          screenshot (window_content (), name);
        }
    }
  gtk_window_set_default_size (GTK_WINDOW (window), 1024, 700);
  settle (0.3);
}

static void
test_dialogs (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();
  guint before = g_list_model_get_n_items (toplevels);
  GtkWidget *about = NULL;

  g_action_group_activate_action (G_ACTION_GROUP (app), "about", NULL);
  settle (0.3);
  g_assert_cmpuint (g_list_model_get_n_items (toplevels), >, before);
  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) w = g_list_model_get_item (toplevels, i);
      if (ADW_IS_ABOUT_WINDOW (w))
        about = GTK_WIDGET (w);
    }
  g_assert_nonnull (about);
  screenshot (about, "about");
  gtk_window_destroy (GTK_WINDOW (about));

  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.show-help-overlay", NULL));
  settle (0.3);
  {
    GtkShortcutsWindow *help
        = gtk_application_window_get_help_overlay (GTK_APPLICATION_WINDOW (window));
    g_assert_nonnull (help);
    g_assert_true (gtk_widget_get_visible (GTK_WIDGET (help)));
    screenshot (GTK_WIDGET (help), "shortcuts");
    gtk_widget_set_visible (GTK_WIDGET (help), FALSE);
  }
}

static gboolean
window_gone (gpointer data)
{
  return window == NULL;
}

/* Closing during a run asks first; "Stop and Close" stops the run and closes when it ended. */
static void
test_close_during_run (void)
{
  KiltSession *session = kilt_window_get_session (window);
  GListModel *toplevels = gtk_window_get_toplevels ();
  AdwMessageDialog *dialog = NULL;
  KiltEvent started = { 0 }, fin = { 0 };
  gpointer token;

  g_object_add_weak_pointer (G_OBJECT (window), (gpointer *)&window);
  token = kilt_session_begin_external (session);
  started.type = KILT_EVENT_STARTED;
  started.steps_per_epoch = 10;
  kilt_session_post (token, &started);
  settle (0.2);

  gtk_window_close (GTK_WINDOW (window));
  settle (0.3);
  g_assert_nonnull (window);
  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) w = g_list_model_get_item (toplevels, i);
      if (ADW_IS_MESSAGE_DIALOG (w) && gtk_widget_get_visible (GTK_WIDGET (w)))
        dialog = ADW_MESSAGE_DIALOG (w);
    }
  g_assert_nonnull (dialog);
  screenshot (GTK_WIDGET (dialog), "close-during-run");

  /* "Keep Training" leaves everything as it was. */
  adw_message_dialog_response (dialog, "cancel");
  settle (0.3);
  g_assert_nonnull (window);
  g_assert_true (kilt_session_is_running (session));

  gtk_window_close (GTK_WINDOW (window));
  settle (0.3);
  dialog = NULL;
  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) w = g_list_model_get_item (toplevels, i);
      if (ADW_IS_MESSAGE_DIALOG (w) && gtk_widget_get_visible (GTK_WIDGET (w)))
        dialog = ADW_MESSAGE_DIALOG (w);
    }
  g_assert_nonnull (dialog);
  adw_message_dialog_response (dialog, "stop");
  settle (0.2);
  /* Still open until the run has really ended. */
  g_assert_nonnull (window);
  fin.type = KILT_EVENT_FINISHED;
  fin.status = KILT_RUN_STOPPED;
  kilt_session_post (token, &fin);
  g_assert_true (wait_until (window_gone, NULL, 10));
}
/* ---- the evaluation view ---- */

static gboolean
eval_view_idle (gpointer data)
{
  return !kilt_eval_view_get_busy (data);
}

/* `kilt-cli eval --confusion --json` on @run's model, data and checkpoint. Caller unrefs. */
static JsonObject *
cli_evaluation (const KiltRun *run, const char *dir)
{
  g_autofree char *model = g_build_filename (dir, "model.json", NULL);
  g_autofree char *batch = g_strdup_printf ("%u", run->record.config.batch);
  g_autofree char *max = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GSubprocess) p = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *out = NULL;
  KiltDataSpec spec;

  g_assert_true (g_file_set_contents (model, run->record.model_json, -1, &error));
  g_assert_true (kilt_data_spec_from_json (run->record.data_spec, &spec, &error));
  g_ptr_array_add (argv, g_strdup (g_getenv ("KILT_CLI")));
  g_ptr_array_add (argv, g_strdup ("eval"));
  g_ptr_array_add (argv, g_strdup ("--json"));
  g_ptr_array_add (argv, g_strdup ("--confusion"));
  g_ptr_array_add (argv, g_strdup ("--model"));
  g_ptr_array_add (argv, g_strdup (model));
  g_ptr_array_add (argv, g_strdup ("--data"));
  g_ptr_array_add (argv, g_strdup (spec.source));
  g_ptr_array_add (argv, g_strdup ("--checkpoint"));
  g_ptr_array_add (argv, g_strdup (run->record.config.checkpoint_path));
  g_ptr_array_add (argv, g_strdup ("--batch"));
  g_ptr_array_add (argv, g_strdup (batch));
  if (spec.options.max_samples)
    {
      max = g_strdup_printf ("%u", spec.options.max_samples);
      g_ptr_array_add (argv, g_strdup ("--max-samples"));
      g_ptr_array_add (argv, g_strdup (max));
    }
  if (run->record.config.device_id)
    {
      g_ptr_array_add (argv, g_strdup ("--device"));
      g_ptr_array_add (argv, g_strdup (run->record.config.device_id));
    }
  g_ptr_array_add (argv, NULL);
  kilt_data_spec_clear (&spec);
  p = g_subprocess_newv ((const char *const *)argv->pdata,
                         G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                         &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, &out, NULL, &error));
  g_assert_cmpint (g_subprocess_get_exit_status (p), ==, 0);
  g_assert_true (json_parser_load_from_data (parser, out, -1, &error));
  g_assert_no_error (error);
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

/* A finished run's "Evaluate…": the view's matrix and per-class figures are the CLI's, the
 * gallery shows the misclassified images, a file of one's own is classified, a damaged
 * checkpoint is an error in the view (the window lives on), and screenshots at two sizes. */
static void
test_evaluate_view (void)
{
  KiltRunsPage *page = runs_page ();
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) cli = NULL;
  g_autofree char *dir = g_dir_make_tmp ("kilt-ui-eval-XXXXXX", NULL);
  KiltEvalView *view;
  const KiltEvaluation *ev;
  JsonArray *rows, *per_class;
  GtkWidget *eval_window;

  if (pocl_device () == NULL)
    {
      g_test_skip ("no PoCL device here");
      return;
    }
  g_assert_true (wait_until (devices_loaded, NULL, 30));
  if (kilt_data_page_get_dataset (kilt_window_get_data_page (window)) == NULL)
    kilt_data_page_load (kilt_window_get_data_page (window), "sample");
  g_assert_true (wait_until (data_idle, NULL, 60));
  g_assert_true (wait_until (run_over, NULL, 60));
  run = newest_run ();
  if (run == NULL || run->status != KILT_RUN_FINISHED || !run->record.config.checkpoint_path)
    {
      gint64 last = run ? run->id : 0;
      g_clear_pointer (&run, kilt_run_free);
      kilt_model_page_set_epochs (kilt_window_get_model_page (window), 1);
      kilt_window_set_sample_limit (window, 512);
      g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
      g_assert_true (wait_until (run_over, NULL, 120));
      run = newest_run ();
      g_assert_cmpint (run->id, >, last);
    }
  g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
  kilt_window_show_page (window, "runs");
  g_assert_true (kilt_runs_page_reload (page, &error));
  kilt_runs_page_select (page, &run->id, 1);
  g_assert_true (kilt_runs_page_can_evaluate (page, &error));
  g_assert_no_error (error);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "runs.evaluate", NULL));
  view = kilt_runs_page_get_eval_view (page);
  g_assert_nonnull (view);
  g_assert_true (wait_until (eval_view_idle, view, 120));
  g_assert_null (kilt_eval_view_get_error (view));
  ev = kilt_eval_view_get_evaluation (view);
  g_assert_nonnull (ev);

  /* The same figures as the CLI's. */
  cli = cli_evaluation (run, dir);
  g_test_message ("view: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                  " right; CLI: %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT,
                  ev->correct, ev->n_samples, json_object_get_int_member (cli, "correct"),
                  json_object_get_int_member (cli, "samples"));
  g_assert_cmpint ((gint64)ev->n_samples, ==, json_object_get_int_member (cli, "samples"));
  g_assert_cmpint ((gint64)ev->correct, ==, json_object_get_int_member (cli, "correct"));
  rows = json_object_get_array_member (cli, "confusion");
  per_class = json_object_get_array_member (cli, "per_class");
  g_assert_cmpuint (json_array_get_length (rows), ==, ev->n_classes);
  for (guint t = 0; t < ev->n_classes; t++)
    {
      JsonObject *pc = json_array_get_object_element (per_class, t);
      for (guint p = 0; p < ev->n_classes; p++)
        g_assert_cmpint ((gint64)ev->confusion[t * ev->n_classes + p], ==,
                         json_array_get_int_element (json_array_get_array_element (rows, t), p));
      g_assert_cmpstr (ev->class_names[t], ==, json_object_get_string_member (pc, "name"));
      g_assert_cmpint ((gint64)ev->support[t], ==, json_object_get_int_member (pc, "support"));
      if (!isnan (ev->recall[t]))
        g_assert_cmpfloat_with_epsilon (ev->recall[t], json_object_get_double_member (pc, "recall"),
                                        1e-9);
      if (!isnan (ev->precision[t]))
        g_assert_cmpfloat_with_epsilon (ev->precision[t],
                                        json_object_get_double_member (pc, "precision"), 1e-9);
    }
  g_assert_cmpuint (kilt_eval_view_get_gallery_size (view), ==,
                    MIN (KILT_EVAL_VIEW_GALLERY_MAX, ev->n_samples - ev->correct));
  g_assert_cmpuint (kilt_eval_view_get_gallery_size (view), >, 0);
  /* The sample data has no files: each image says its place in the split. */
  {
    g_autofree char *want = g_strdup_printf (
        "sample %" G_GUINT64_FORMAT, g_array_index (ev->misclassified, KiltMisclassified, 0).index);
    g_assert_cmpstr (kilt_eval_view_get_gallery_source (view, 0), ==, want);
  }

  /* Classify a file: the first test image, written as a PNG. */
  {
    g_autoptr (KiltDataset) ds = kilt_dataset_load ("sample", NULL, NULL, NULL, NULL, &error);
    g_autofree char *png = g_build_filename (dir, "mine.png", NULL);
    g_autoptr (GdkPixbuf) pb = NULL;
    const char *text;
    g_assert_no_error (error);
    pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, ds->shape.w, ds->shape.h);
    for (guint y = 0; y < ds->shape.h; y++)
      for (guint x = 0; x < ds->shape.w; x++)
        {
          guint8 *px = gdk_pixbuf_get_pixels (pb) + y * gdk_pixbuf_get_rowstride (pb) + x * 3;
          px[0] = px[1] = px[2] = ds->test.u8[y * ds->shape.w + x];
        }
    g_assert_true (gdk_pixbuf_save (pb, png, "png", &error, NULL));
    g_assert_true (kilt_eval_view_classify (view, png, &error));
    g_assert_no_error (error);
    g_assert_true (wait_until (eval_view_idle, view, 60));
    g_assert_null (kilt_eval_view_get_error (view));
    text = kilt_eval_view_get_classification (view);
    g_test_message ("classified: %s", text);
    g_assert_nonnull (text);
    /* Three classes with percentages; the first is the class the evaluation gave that
     * sample when its list holds every mistake (else the sample's own label). */
    {
      g_auto (GStrv) parts = g_strsplit (text, ", ", -1);
      guint predicted = (guint)ds->test.labels[0];
      g_autofree char *want = NULL;
      g_assert_cmpuint (g_strv_length (parts), ==, 3);
      for (guint i = 0; i < 3; i++)
        g_assert_true (g_str_has_suffix (parts[i], "%"));
      if (ev->misclassified->len == ev->n_samples - ev->correct)
        {
          for (guint i = 0; i < ev->misclassified->len; i++)
            if (g_array_index (ev->misclassified, KiltMisclassified, i).index == 0)
              predicted = g_array_index (ev->misclassified, KiltMisclassified, i).predicted;
          want = g_strdup_printf ("%s ", ev->class_names[predicted]);
          g_assert_true (g_str_has_prefix (text, want));
        }
    }
  }

  eval_window = GTK_WIDGET (gtk_widget_get_root (GTK_WIDGET (view)));
  {
    const int sizes[][2] = { { 1024, 700 }, { 800, 600 } };
    for (guint z = 0; z < G_N_ELEMENTS (sizes); z++)
      {
        g_autofree char *name = g_strdup_printf ("eval-view-%dx%d", sizes[z][0], sizes[z][1]);
        int min_w;
        gtk_window_set_default_size (GTK_WINDOW (eval_window), sizes[z][0], sizes[z][1]);
        settle (0.5);
        gtk_widget_measure (eval_window, GTK_ORIENTATION_HORIZONTAL, -1, &min_w, NULL, NULL, NULL);
        g_test_message ("%s: minimum width %d", name, min_w);
        g_assert_cmpint (min_w, <=, sizes[z][0]);
        screenshot (eval_window, name);
      }
    /* And the gallery of misclassified images, scrolled to. */
    kilt_eval_view_scroll_to_gallery (view);
    settle (0.3);
    screenshot (eval_window, "eval-view-800x600-gallery");
    gtk_window_set_default_size (GTK_WINDOW (eval_window), 1024, 700);
    settle (0.3);
    kilt_eval_view_scroll_to_gallery (view);
    settle (0.3);
    screenshot (eval_window, "eval-view-1024x700-gallery");
  }

  /* A damaged checkpoint: the view says so, names it, and the windows stay. */
  {
    g_autofree char *bad = g_build_filename (dir, "damaged.ckpt", NULL);
    KiltRun copy = *run;
    const char *err;
    g_assert_true (g_file_set_contents (bad, "not a checkpoint at all", -1, &error));
    copy.record.config.checkpoint_path = bad;
    g_assert_true (kilt_eval_view_evaluate (view, &copy, &error));
    g_assert_true (wait_until (eval_view_idle, view, 60));
    err = kilt_eval_view_get_error (view);
    g_test_message ("damaged checkpoint: %s", err);
    g_assert_nonnull (err);
    g_assert_nonnull (strstr (err, "damaged.ckpt"));
    g_assert_null (kilt_eval_view_get_evaluation (view));
    g_assert_true (gtk_widget_get_visible (eval_window));
    g_assert_true (gtk_widget_get_visible (GTK_WIDGET (window)));
    screenshot (eval_window, "eval-view-error");
  }

  /* Cancelled at once: not busy soon after, and says cancelled unless it had already ended. */
  g_assert_true (kilt_eval_view_evaluate (view, run, &error));
  kilt_eval_view_cancel (view);
  g_assert_true (wait_until (eval_view_idle, view, 30));
  if (kilt_eval_view_get_error (view))
    g_assert_cmpstr (kilt_eval_view_get_error (view), ==, "Evaluation cancelled");
  gtk_window_destroy (GTK_WINDOW (eval_window));
  settle (0.3);
  g_assert_null (kilt_runs_page_get_eval_view (page));
  kilt_test_remove_tree (dir);
}

int
main (int argc, char **argv)
{
  int status;

  g_setenv ("GTK_A11Y", "none", FALSE);
  g_setenv ("GSK_RENDERER", "cairo", FALSE);
  /* libadwaita brings its own stylesheet; GTK_THEME would replace it with GTK's old Adwaita
   * and the screenshots would not show what people see. */
  g_unsetenv ("GTK_THEME");
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  /* A run store of its own, emptied at the end with the weights its runs kept. */
  store_dir = g_dir_make_tmp ("kilt-ui-runs-XXXXXX", NULL);
  g_assert_nonnull (store_dir);
  {
    g_autofree char *db = g_build_filename (store_dir, "runs.db", NULL);
    g_setenv ("KILT_RUNS_DB", db, TRUE);
  }
  g_test_init (&argc, &argv, NULL);
  first_run_id = store_add_run ("before the window", 3, 2.0);
  if (!gtk_init_check ())
    {
      g_print ("1..0 # SKIP no display (run under xvfb-run)\n");
      return 77;
    }
  artifacts
      = g_strdup (g_getenv ("KILT_ARTIFACTS_DIR") ? g_getenv ("KILT_ARTIFACTS_DIR") : "artifacts");
  g_mkdir_with_parents (artifacts, 0755);

  app = kilt_application_new (G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
  g_application_activate (G_APPLICATION (app));
  window = KILT_WINDOW (gtk_application_get_active_window (GTK_APPLICATION (app)));
  gtk_window_set_default_size (GTK_WINDOW (window), 1024, 700);
  gtk_window_unmaximize (GTK_WINDOW (window));
  settle (0.5);

  g_test_add_func ("/ui/1-starts", test_starts);
  g_test_add_func ("/ui/2-formats", test_formats);
  g_test_add_func ("/ui/2-pages", test_pages);
  g_test_add_func ("/ui/2-runs-at-start", test_runs_at_start);
  g_test_add_func ("/ui/3-device", test_device);
  g_test_add_func ("/ui/3-device-facts", test_device_facts);
  g_test_add_func ("/ui/3-doctor-cancel", test_doctor_cancel);
  g_test_add_func ("/ui/3-doctor-full", test_doctor_full);
  g_test_add_func ("/ui/4-sample-data", test_sample_data);
  g_test_add_func ("/ui/5-broken-data", test_broken_data);
  g_test_add_func ("/ui/6-preset", test_preset);
  g_test_add_func ("/ui/6-transfer", test_transfer);
  g_test_add_func ("/ui/6-optimizer-settings", test_optimizer_settings);
  g_test_add_func ("/ui/6-schedule-settings", test_schedule_settings);
  g_test_add_func ("/ui/6-session", test_session);
  g_test_add_func ("/ui/6-live-charts", test_live_charts);
  g_test_add_func ("/ui/7-train", test_train);
  g_test_add_func ("/ui/7-train-failed", test_failed_run);
  g_test_add_func ("/ui/8-plan-does-not-fit", test_plan_does_not_fit);
  g_test_add_func ("/ui/8-plan-recompute", test_plan_recompute);
  g_test_add_func ("/ui/8-stop", test_stop);
  g_test_add_func ("/ui/8-z-compare-devices", test_compare_devices);
  g_test_add_func ("/ui/8-z-run-again", test_run_again);
  g_test_add_func ("/ui/8-z-resume", test_resume);
  g_test_add_func ("/ui/8-z-evaluate", test_evaluate_view);
  g_test_add_func ("/ui/9-screenshots", test_screenshots);
  g_test_add_func ("/ui/9-small-sizes", test_small_sizes);
  g_test_add_func ("/ui/9-dialogs", test_dialogs);
  g_test_add_func ("/ui/z-close-during-run", test_close_during_run);
  status = g_test_run ();

  if (window)
    gtk_window_destroy (GTK_WINDOW (window));
  settle (0.2);
  g_object_unref (app);
  g_free (artifacts);
  kilt_test_remove_tree (store_dir);
  g_free (store_dir);
  return status;
}
