/* The Runs page in a window: table, filter, sort, comparing two stored runs against a
 * baseline, rename/tag/delete, and exporting a report through the page. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-runs-page.h"

#include <math.h>
#include <string.h>

typedef struct
{
  const char *name;
  const char *device;
  double epoch_seconds;
} RunSpec;

/* The article's three backends, with times near its figures and some noise. */
static const RunSpec specs[] = {
  { "tensorflow cpu", "Intel Core i5-5200U", 1696.9 },
  { "plaidml intel", "Intel HD Graphics 5500", 431.4 },
  { "plaidml amd", "AMD Radeon R5 M320", 184.1 },
};

static char *db_path;
static gint64 ids[G_N_ELEMENTS (specs)];
static double totals[G_N_ELEMENTS (specs)];

static void
make_store (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());

  db_path = g_build_filename (dir, "runs.db", NULL);
  store = kilt_run_store_open (db_path, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++)
    {
      KiltRunRecord rec = { 0 };
      g_autoptr (GArray) timings = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
      const char *layers[] = { "conv2d_1", "conv2d_2", "dense_1" };
      double elapsed = 0;

      rec.name = g_strdup (specs[i].name);
      rec.device_name = g_strdup (specs[i].device);
      rec.model_name = g_strdup ("cifar10_cnn");
      rec.data_description = g_strdup ("cifar10");
      rec.flops_per_sample = 41400000;
      rec.config.epochs = 4;
      rec.steps_per_epoch = 1563;
      g_assert_true (kilt_run_store_begin_run (store, &rec, &ids[i], &error));
      for (guint e = 1; e <= 4; e++)
        {
          KiltEpochRecord ep = { .epoch = e };
          ep.wall_seconds = specs[i].epoch_seconds * g_rand_double_range (r, 0.95, 1.05);
          elapsed += ep.wall_seconds;
          totals[i] += ep.wall_seconds;
          ep.elapsed_seconds = elapsed;
          ep.train_loss = 2.0 / e + g_rand_double (r) * 0.1;
          ep.train_accuracy = 0.3 + 0.1 * e + g_rand_double (r) * 0.01;
          ep.val_loss = ep.train_loss * 1.1;
          ep.val_accuracy = ep.train_accuracy - 0.02;
          ep.samples_per_second = 50000 / ep.wall_seconds;
          ep.learning_rate = 1e-4 / (1 + 1e-6 * 1563 * e) * (i + 1);
          g_assert_true (kilt_run_store_add_epoch (store, ids[i], &ep, &error));
        }
      for (guint k = 0; k < G_N_ELEMENTS (layers); k++)
        {
          KiltLayerTiming t = { .layer = (char *)layers[k],
                                .type = (char *)"conv2d",
                                .forward_ms = g_rand_double (r) * 10,
                                .backward_ms = g_rand_double (r) * 10,
                                .update_ms = g_rand_double (r) };
          g_array_append_val (timings, t);
        }
      g_assert_true (kilt_run_store_set_layer_timings (store, ids[i], timings, &error));
      g_assert_true (
          kilt_run_store_finish_run (store, ids[i], KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
      g_assert_no_error (error);
      kilt_run_record_clear (&rec);
    }
}

static double
total_of (gint64 id)
{
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    if (ids[i] == id)
      return totals[i];
  g_assert_not_reached ();
}

static void
settle (void)
{
  gint64 end = g_get_monotonic_time () + 150 * 1000;

  while (g_get_monotonic_time () < end)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (2000);
}

static void
collect_labels (GtkWidget *w, GString *out)
{
  if (GTK_IS_LABEL (w) && gtk_widget_get_mapped (w))
    g_string_append_printf (out, "%s\n", gtk_label_get_text (GTK_LABEL (w)));
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    collect_labels (c, out);
}

static gboolean
shows (GtkWidget *page, const char *text)
{
  g_autoptr (GString) s = g_string_new ("\n");
  g_autofree char *line = g_strdup_printf ("\n%s\n", text);

  collect_labels (page, s);
  return strstr (s->str, line) != NULL;
}

/* With $KILT_RUNS_PAGE_SCREENSHOT set, saves what the window shows there (for a person). */
static void
maybe_screenshot (GtkWidget *window)
{
  const char *path = g_getenv ("KILT_RUNS_PAGE_SCREENSHOT");
  GdkPaintable *paintable;
  GtkSnapshot *snapshot;
  g_autoptr (GskRenderNode) node = NULL;
  g_autoptr (GdkTexture) texture = NULL;
  int w, h;

  if (path == NULL)
    return;
  paintable = gtk_widget_paintable_new (window);
  w = gtk_widget_get_width (window), h = gtk_widget_get_height (window);
  snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, w, h);
  node = gtk_snapshot_free_to_node (snapshot);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  gdk_texture_save_to_png (texture, path);
  g_object_unref (paintable);
}

static void
test_compare_and_export (void)
{
  GtkWidget *window = gtk_window_new ();
  KiltRunsPage *page = KILT_RUNS_PAGE (kilt_runs_page_new ());
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *html = g_build_filename (dir, "compare.html", NULL);
  g_autofree char *png = g_build_filename (dir, "times.png", NULL);
  g_autofree char *text = NULL;
  g_autofree char *speedup = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) selected = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (KiltRun) run = NULL;
  gint64 two[2];
  cairo_surface_t *img;

  make_store ();
  two[0] = ids[0], two[1] = ids[1];
  gtk_window_set_default_size (GTK_WINDOW (window), 1200, 800);
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (page));
  gtk_window_present (GTK_WINDOW (window));
  kilt_runs_page_set_db_path (page, db_path);
  settle ();

  /* Newest first, all three. */
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 3);
  g_assert_cmpint (kilt_runs_page_get_shown_id (page, 0), ==, ids[2]);
  g_assert_true (shows (GTK_WIDGET (page), "plaidml amd"));
  /* With runs there, the empty text says how many and asks for a selection. */
  g_assert_true (shows (GTK_WIDGET (page), "3 runs — select some to compare"));

  /* Sorting by total time: fastest first (the AMD run), slowest last. */
  g_assert_true (kilt_runs_page_sort_by (page, "Total time", FALSE));
  for (guint i = 0; i + 1 < 3; i++)
    {
      gint64 a = kilt_runs_page_get_shown_id (page, i),
             b = kilt_runs_page_get_shown_id (page, i + 1);
      g_assert_cmpfloat (total_of (a), <=, total_of (b));
    }
  g_assert_true (kilt_runs_page_sort_by (page, "Total time", TRUE));
  g_assert_cmpint (kilt_runs_page_get_shown_id (page, 0), ==, ids[0]);

  /* Filtering by device. */
  kilt_runs_page_set_filter (page, "RADEON");
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 1);
  g_assert_cmpint (kilt_runs_page_get_shown_id (page, 0), ==, ids[2]);
  kilt_runs_page_set_filter (page, "");
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 3);

  /* Compare CPU and Intel GPU against the CPU. */
  kilt_runs_page_select (page, two, 2);
  kilt_runs_page_set_baseline (page, ids[0]);
  settle ();
  selected = kilt_runs_page_get_selected (page);
  g_assert_cmpuint (selected->len, ==, 2);
  g_assert_cmpint (kilt_runs_page_get_baseline (page), ==, ids[0]);
  speedup = g_strdup_printf ("%.2fx", totals[0] / totals[1]);
  g_test_message ("speed-up of the Intel run against the CPU run: %s", speedup);
  g_assert_true (shows (GTK_WIDGET (page), speedup));
  g_assert_true (shows (GTK_WIDGET (page), "1.00x"));
  g_assert_true (shows (GTK_WIDGET (page), "conv2d_2"));
  maybe_screenshot (window);
  g_assert_false (shows (GTK_WIDGET (page), "Select runs to compare"));
  /* With the GPU as baseline the CPU reads as a slow-down. */
  kilt_runs_page_set_baseline (page, ids[1]);
  settle ();
  g_free (speedup);
  speedup = g_strdup_printf ("%.2fx", totals[1] / totals[0]);
  g_assert_true (shows (GTK_WIDGET (page), speedup));

  /* Issue 15: the curves on epochs, steps or time; the learning rate of each run. */
  {
    const KiltChartXMode modes[] = { KILT_CHART_X_STEP, KILT_CHART_X_TIME, KILT_CHART_X_EPOCH };
    const double last[] = { 4 * 1563.0, total_of (ids[0]), 4 };
    kilt_runs_page_set_chart (page, KILT_REPORT_CHART_LOSS);
    for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
      {
        gsize n;
        const double *p;
        kilt_runs_page_set_x_mode (page, modes[m]);
        settle ();
        p = kilt_chart_get_reduced (kilt_runs_page_get_chart (page), 0, &n);
        g_assert_cmpuint (n, ==, 4);
        g_assert_cmpfloat_with_epsilon (p[2 * 3], last[m], 1e-9 * last[m]);
      }
    kilt_runs_page_set_chart (page, KILT_REPORT_CHART_LEARNING_RATE);
    settle ();
    {
      gsize n;
      const double *p = kilt_chart_get_reduced (kilt_runs_page_get_chart (page), 1, &n);
      g_assert_cmpuint (n, ==, 4);
      g_assert_cmpfloat_with_epsilon (p[1], 2e-4 / (1 + 1e-6 * 1563), 1e-15);
    }
    kilt_runs_page_set_chart (page, KILT_REPORT_CHART_SPEEDUP);
    settle ();
  }

  /* Export through the page: the selected runs, against the chosen baseline. */
  g_assert_true (kilt_runs_page_export (page, KILT_REPORT_HTML, html, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (html, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "tensorflow cpu"));
  g_assert_nonnull (strstr (text, "plaidml intel"));
  g_assert_null (strstr (text, "plaidml amd"));
  g_assert_nonnull (strstr (text, "<svg"));
  g_assert_nonnull (strstr (text, speedup));
  kilt_runs_page_set_chart (page, KILT_REPORT_CHART_EPOCH_TIME);
  g_assert_true (kilt_runs_page_export (page, KILT_REPORT_PNG, png, &error));
  g_assert_no_error (error);
  img = cairo_image_surface_create_from_png (png);
  g_assert_cmpint (cairo_surface_status (img), ==, CAIRO_STATUS_SUCCESS);
  cairo_surface_destroy (img);

  /* Rename keeps the selection and the baseline; the table shows the new name. */
  g_assert_true (kilt_runs_page_rename_run (page, ids[1], "intel hd 5500", &error));
  g_assert_no_error (error);
  settle ();
  g_assert_true (shows (GTK_WIDGET (page), "intel hd 5500"));
  g_assert_cmpint (kilt_runs_page_get_baseline (page), ==, ids[1]);
  g_clear_pointer (&selected, g_array_unref);
  selected = kilt_runs_page_get_selected (page);
  g_assert_cmpuint (selected->len, ==, 2);

  g_assert_true (kilt_runs_page_tag_selected (page, "article", &error));
  g_assert_no_error (error);
  kilt_runs_page_set_filter (page, "article");
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 2);
  kilt_runs_page_set_filter (page, NULL);

  g_assert_true (kilt_runs_page_delete_selected (page, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (kilt_runs_page_get_n_shown (page), ==, 1);
  store = kilt_run_store_open (db_path, &error);
  g_assert_null (kilt_run_store_get (store, ids[0], &error));
  g_clear_error (&error);
  run = kilt_run_store_get (store, ids[2], &error);
  g_assert_no_error (error);
  settle ();
  /* The one run left, and nothing selected: the empty text counts it. */
  g_assert_true (shows (GTK_WIDGET (page), "1 run — select it to see it"));

  gtk_window_destroy (GTK_WINDOW (window));
  settle ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gtk_init_check ())
    {
      g_printerr ("no display: skipping the Runs page test (run it under xvfb-run)\n");
      return 77;
    }
  adw_init ();
  g_test_add_func ("/runs-page/compare-and-export", test_compare_and_export);
  return g_test_run ();
}
