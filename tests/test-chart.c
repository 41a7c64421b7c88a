/* Chart drawing without GTK: tick choice, scaling, reduction, and PNG/SVG/PDF files. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-chart.h"
#include "kilt-test-util.h"

#include <glib/gstdio.h>
#include <math.h>

static guint
count_ticks (double lo, double hi, double step)
{
  guint n = 0;
  for (double t = ceil (lo / step - 1e-9) * step; t <= hi + step * 1e-6; t += step)
    n++;
  return n;
}

/* A step is "nice" when it is 1, 2 or 5 times a power of ten (of @unit). */
static gboolean
is_125 (double step, double unit)
{
  double m = step / unit;
  double e = pow (10, floor (log10 (m) + 1e-9));
  double f = m / e;
  return fabs (f - 1) < 1e-9 || fabs (f - 2) < 1e-9 || fabs (f - 5) < 1e-9;
}

static void
test_ticks_numbers (void)
{
  GRand *rand = g_rand_new_with_seed (7);

  for (guint i = 0; i < 500; i++)
    {
      double scale = pow (10, g_rand_double_range (rand, -6, 9));
      double lo = g_rand_double_range (rand, -1, 1) * scale;
      double hi = lo + g_rand_double_range (rand, 0.01, 3) * scale;
      guint max_ticks = g_rand_int_range (rand, 2, 11);
      double out_lo, out_hi;
      double step = kilt_chart_nice_step (lo, hi, max_ticks, KILT_AXIS_NUMBER, &out_lo, &out_hi);
      guint inside = count_ticks (lo, hi, step);

      g_assert_true (is_125 (step, 1));
      g_assert_cmpfloat (step, >=, (hi - lo) / max_ticks * (1 - 1e-9));
      /* The smallest 1-2-5 step that fits: the next smaller one would give too many ticks. */
      g_assert_cmpfloat (step / 2.5, <, (hi - lo) / max_ticks);
      g_assert_cmpuint (inside, <=, max_ticks + 1);
      g_assert_cmpfloat (out_lo, <=, lo + step * 1e-9);
      g_assert_cmpfloat (out_hi, >=, hi - step * 1e-9);
      g_assert_cmpfloat (out_lo, >, lo - step);
      g_assert_cmpfloat (out_hi, <, hi + step);
      g_assert_cmpfloat (fabs (out_lo / step - round (out_lo / step)), <, 1e-6);
    }
  g_rand_free (rand);

  /* Worked examples a person would expect. */
  {
    double lo, hi;
    g_assert_cmpfloat (kilt_chart_nice_step (0, 2.3, 5, KILT_AXIS_NUMBER, &lo, &hi), ==, 0.5);
    g_assert_cmpfloat (lo, ==, 0);
    g_assert_cmpfloat (hi, ==, 2.5);
    g_assert_cmpfloat_with_epsilon (
        kilt_chart_nice_step (0.31, 0.47, 4, KILT_AXIS_NUMBER, &lo, &hi), 0.05, 1e-12);
    g_assert_cmpfloat_with_epsilon (lo, 0.3, 1e-12);
    g_assert_cmpfloat_with_epsilon (hi, 0.5, 1e-12);
  }
}

static void
test_ticks_units (void)
{
  double lo, hi, step;

  /* Time: whole minutes for a quarter of an hour, then hours. */
  step = kilt_chart_nice_step (0, 900, 6, KILT_AXIS_SECONDS, &lo, &hi);
  g_assert_cmpfloat (step, ==, 300);
  step = kilt_chart_nice_step (0, 40, 5, KILT_AXIS_SECONDS, NULL, NULL);
  g_assert_cmpfloat (step, ==, 10);
  step = kilt_chart_nice_step (0, 5 * 3600, 5, KILT_AXIS_SECONDS, NULL, NULL);
  g_assert_cmpfloat (step, ==, 3600);
  for (double range = 3; range < 1e6; range *= 1.7)
    {
      step = kilt_chart_nice_step (0, range, 6, KILT_AXIS_SECONDS, NULL, NULL);
      g_assert_cmpfloat (step, >=, range / 6);
      /* Steps divide a minute or are whole minutes / hours. */
      if (step < 60)
        g_assert_cmpfloat (fmod (60, step), ==, 0);
      else if (step < 3600)
        g_assert_cmpfloat (fmod (step, 60), ==, 0);
      else
        g_assert_cmpfloat (fmod (step, 3600), ==, 0);
    }

  /* Bytes: 1-2-5 steps of KiB, MiB or GiB. */
  for (double range = 3000; range < 1e13; range *= 3.1)
    {
      double unit = 1;
      step = kilt_chart_nice_step (0, range, 5, KILT_AXIS_BYTES, NULL, NULL);
      g_assert_cmpfloat (step, >=, range / 5);
      while (unit * 1024 <= step)
        unit *= 1024;
      g_assert_true (is_125 (step, unit));
    }
  step = kilt_chart_nice_step (0, 8.0 * 1024 * 1024 * 1024, 4, KILT_AXIS_BYTES, NULL, NULL);
  g_assert_cmpfloat (step, ==, 2.0 * 1024 * 1024 * 1024);
}

static void
test_labels (void)
{
  struct
  {
    double v, step;
    KiltAxisUnit unit;
    const char *want;
  } cases[] = {
    { 0.5, 0.1, KILT_AXIS_NUMBER, "0.5" },
    { 0.25, 0.05, KILT_AXIS_NUMBER, "0.25" },
    { 3, 1, KILT_AXIS_NUMBER, "3" },
    { 12000, 2000, KILT_AXIS_NUMBER, "12k" },
    { 3000000, 1000000, KILT_AXIS_NUMBER, "3M" },
    { 40, 10, KILT_AXIS_PERCENT, "40%" },
    { 90, 30, KILT_AXIS_SECONDS, "1:30" },
    { 5400, 1800, KILT_AXIS_SECONDS, "1:30:00" },
    { 512.0 * 1024 * 1024, 128.0 * 1024 * 1024, KILT_AXIS_BYTES, "512 MiB" },
    { 1500.0 * 1024 * 1024, 500.0 * 1024 * 1024, KILT_AXIS_BYTES, "1500 MiB" },
    { 1.5 * 1024 * 1024 * 1024, 512.0 * 1024 * 1024, KILT_AXIS_BYTES, "1.5 GiB" },
    { 2048, 1024, KILT_AXIS_BYTES, "2 KiB" },
    { 0, 1024, KILT_AXIS_BYTES, "0" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *s = kilt_chart_format_value (cases[i].v, cases[i].step, cases[i].unit);
      g_assert_cmpstr (s, ==, cases[i].want);
    }
}

static KiltChart *
loss_chart (guint n, guint32 seed)
{
  KiltChart *chart = kilt_chart_new ("Loss");
  GRand *rand = g_rand_new_with_seed (seed);

  kilt_chart_set_x_axis (chart, "Epoch", KILT_AXIS_NUMBER);
  kilt_chart_set_y_axis (chart, "Loss", KILT_AXIS_NUMBER);
  kilt_chart_add_series (chart, "training", KILT_CHART_LINE, NULL);
  kilt_chart_add_series (chart, "validation", KILT_CHART_LINE, NULL);
  for (guint i = 0; i < n; i++)
    {
      double x = (double)i / 100;
      kilt_chart_append (chart, 0, x, 2 * exp (-x / 3) + g_rand_double_range (rand, 0, 0.2));
      if (i % 100 == 99)
        kilt_chart_append (chart, 1, x, 2.1 * exp (-x / 3));
    }
  g_rand_free (rand);
  return chart;
}

static void
test_reduction (void)
{
  const guint columns = 200;
  const guint n = 100000;
  g_autoptr (KiltChart) chart = kilt_chart_new (NULL);
  GRand *rand = g_rand_new_with_seed (11);
  double *ys = g_new (double, n);
  double gmin = INFINITY, gmax = -INFINITY;
  const double *r;
  gsize nr;

  kilt_chart_set_columns (chart, columns);
  kilt_chart_add_series (chart, "noise", KILT_CHART_LINE, NULL);
  for (guint i = 0; i < n; i++)
    {
      ys[i] = g_rand_double_range (rand, -1, 1) + sin (i / 5000.0);
      /* A few spikes, which a naive every-k-th-point reduction would lose. */
      if (g_rand_int_range (rand, 0, 5000) == 0)
        ys[i] += g_rand_double_range (rand, -50, 50);
      kilt_chart_append (chart, 0, i * 0.5, ys[i]);
      gmin = MIN (gmin, ys[i]);
      gmax = MAX (gmax, ys[i]);

      /* Reduced as points arrive: the bound holds at every moment. */
      if (i % 9973 == 0)
        {
          kilt_chart_get_reduced (chart, 0, &nr);
          g_assert_cmpuint (nr, <=, 2 * columns);
        }
    }
  g_assert_cmpuint (kilt_chart_get_n_points (chart, 0), ==, n);
  r = kilt_chart_get_reduced (chart, 0, &nr);
  g_assert_cmpuint (nr, <=, 2 * columns);
  g_assert_cmpuint (nr, >=, columns / 2);

  /* The extremes survive, and every reduced point is a real point. */
  {
    double rmin = INFINITY, rmax = -INFINITY;
    for (gsize j = 0; j < nr; j++)
      {
        double x = r[2 * j], y = r[2 * j + 1];
        guint idx = (guint)llround (x / 0.5);

        g_assert_cmpuint (idx, <, n);
        g_assert_cmpfloat (ys[idx], ==, y);
        if (j > 0)
          g_assert_cmpfloat (x, >=, r[2 * j - 2]);
        rmin = MIN (rmin, y);
        rmax = MAX (rmax, y);
      }
    g_assert_cmpfloat (rmin, ==, gmin);
    g_assert_cmpfloat (rmax, ==, gmax);
  }

  /* Each stretch of x covered by one column keeps its own min and max: check windows. */
  {
    double width = (n * 0.5) / columns * 4;
    for (double x0 = 0; x0 + width < n * 0.5; x0 += width)
      {
        double wmin = INFINITY, wmax = -INFINITY, rmin = INFINITY, rmax = -INFINITY;
        for (guint i = (guint)(x0 / 0.5); i < (guint)((x0 + width) / 0.5); i++)
          wmin = MIN (wmin, ys[i]), wmax = MAX (wmax, ys[i]);
        for (gsize j = 0; j < nr; j++)
          if (r[2 * j] >= x0 && r[2 * j] < x0 + width)
            rmin = MIN (rmin, r[2 * j + 1]), rmax = MAX (rmax, r[2 * j + 1]);
        /* The window's extremes may sit in a column shared with the neighbour window. */
        g_assert_cmpfloat (rmin, >=, wmin);
        g_assert_cmpfloat (rmax, <=, wmax);
      }
  }

  /* Few points are kept as they are. */
  {
    g_autoptr (KiltChart) small = kilt_chart_new (NULL);
    kilt_chart_add_series (small, "s", KILT_CHART_LINE, NULL);
    for (guint i = 0; i < 50; i++)
      kilt_chart_append (small, 0, i, ys[i]);
    r = kilt_chart_get_reduced (small, 0, &nr);
    g_assert_cmpuint (nr, ==, 50);
    for (guint i = 0; i < 50; i++)
      g_assert_cmpfloat (r[2 * i + 1], ==, ys[i]);
  }
  g_free (ys);
  g_rand_free (rand);
}

static void
test_stacked_and_scaling (void)
{
  g_autoptr (KiltChart) chart = kilt_chart_new ("Memory");
  cairo_rectangle_t area;
  const double *r;
  gsize nr;

  kilt_chart_set_y_axis (chart, "Device memory", KILT_AXIS_BYTES);
  kilt_chart_add_series (chart, "weights", KILT_CHART_AREA, NULL);
  kilt_chart_add_series (chart, "activations", KILT_CHART_AREA, NULL);
  for (guint i = 0; i < 10; i++)
    {
      kilt_chart_append (chart, 0, i, 100e6);
      kilt_chart_append (chart, 1, i, 50e6 * (i + 1));
    }
  r = kilt_chart_get_reduced (chart, 1, &nr);
  g_assert_cmpuint (nr, ==, 10);
  for (guint i = 0; i < 10; i++)
    g_assert_cmpfloat (r[2 * i + 1], ==, 100e6 + 50e6 * (i + 1));

  kilt_chart_get_plot_area (chart, 600, 300, &area);
  g_assert_cmpfloat (area.x, >, 0);
  g_assert_cmpfloat (area.y, >, 0);
  g_assert_cmpfloat (area.x + area.width, <=, 600);
  g_assert_cmpfloat (area.y + area.height, <=, 300);
  g_assert_cmpfloat (area.width, >, 400);
  g_assert_cmpfloat (area.height, >, 150);

  /* The hover read-out names the series and their own (unstacked) values. */
  {
    g_autofree char *text = kilt_chart_describe_at (chart, 600, 300, area.x + area.width);
    g_assert_nonnull (text);
    g_assert_nonnull (strstr (text, "weights"));
    g_assert_nonnull (strstr (text, "activations"));
    g_assert_nonnull (strstr (text, "MiB"));
  }

  /* Smoothing is an exponential average with de-biasing: a constant stays constant. */
  {
    g_autoptr (KiltChart) c = kilt_chart_new (NULL);
    kilt_chart_add_series (c, "flat", KILT_CHART_LINE, NULL);
    kilt_chart_set_smoothing (c, 0.9);
    for (guint i = 0; i < 20; i++)
      kilt_chart_append (c, 0, i, 3.0);
    g_autofree char *t = kilt_chart_describe_at (c, 400, 200, 399);
    g_assert_nonnull (strstr (t, "flat 3.0"));
  }
}

/* Category names on the x axis: the read-out over a bar names its class, and a narrow chart
 * still draws (labels thinned out rather than overlapping). */
static void
test_categories (void)
{
  const char *names[] = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", NULL };
  g_autoptr (KiltChart) c = kilt_chart_new ("Per class");
  cairo_rectangle_t area;
  guint pick = g_test_rand_int_range (0, 5);

  kilt_chart_add_series (c, "samples", KILT_CHART_BAR, NULL);
  for (guint i = 0; i < 5; i++)
    kilt_chart_append (c, 0, i, 10 + g_test_rand_int_range (0, 90));
  kilt_chart_set_x_categories (c, names);
  kilt_chart_get_plot_area (c, 600, 300, &area);
  {
    /* Bars span [-0.5, 4.5]: the middle of bar @pick. */
    double x = area.x + (pick + 0.5) / 5.0 * area.width;
    g_autofree char *t = kilt_chart_describe_at (c, 600, 300, x);
    g_assert_nonnull (t);
    g_assert_nonnull (strstr (t, names[pick]));
  }
  for (int w = 120; w <= 600; w += 240)
    {
      cairo_surface_t *surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, w, 200);
      cairo_t *cr = cairo_create (surface);
      kilt_chart_draw (c, cr, w, 200, -1);
      g_assert_cmpint (cairo_status (cr), ==, CAIRO_STATUS_SUCCESS);
      cairo_destroy (cr);
      cairo_surface_destroy (surface);
    }
  /* A tick a rounding error below zero is "0", not "-0.0". */
  {
    g_autofree char *t = kilt_chart_format_value (-1e-17, 0.2, KILT_AXIS_SECONDS);
    g_autofree char *n = kilt_chart_format_value (-1e-17, 0.2, KILT_AXIS_NUMBER);
    g_assert_null (strchr (t, '-'));
    g_assert_null (strchr (n, '-'));
  }
  /* Back to numbers. */
  kilt_chart_set_x_categories (c, NULL);
  {
    double x = area.x + (pick + 0.5) / 5.0 * area.width;
    g_autofree char *t = kilt_chart_describe_at (c, 600, 300, x);
    g_assert_null (strstr (t, names[pick]));
  }
}

/* Is the pixel at (x, y) of an ARGB32 surface close to @rgb? */
static gboolean
pixel_near (cairo_surface_t *s, int x, int y, const guint8 rgb[3], int tol)
{
  const guint8 *data = cairo_image_surface_get_data (s);
  guint32 p
      = *(const guint32 *)(const void *)(data + y * cairo_image_surface_get_stride (s) + 4 * x);
  int r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
  return abs (r - rgb[0]) <= tol && abs (g - rgb[1]) <= tol && abs (b - rgb[2]) <= tol;
}

/* Issue 15, 6: a bar per run, each in its own category, stands centred on its name; a run
 * with one epoch keeps its bar beside runs with several (its bar was sized by the whole plot
 * and drawn off it); a legend name wider than the chart is shortened, not cut at the edge. */
static void
test_bars_per_category (void)
{
  const char *runs[] = { "#1", "#2", "#3", NULL };
  const double red[3] = { 1, 0, 0 }, green[3] = { 0, 1, 0 }, blue[3] = { 0, 0, 1 };
  const guint8 red8[3] = { 255, 0, 0 }, green8[3] = { 0, 255, 0 }, blue8[3] = { 0, 0, 255 };
  const guint8 *want[3] = { red8, green8, blue8 };
  const double bg[4] = { 1, 1, 1, 1 }, fg[3] = { 0, 0, 0 };
  cairo_rectangle_t area;

  {
    g_autoptr (KiltChart) c = kilt_chart_new ("Speed-up");
    cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, 600, 300);
    cairo_t *cr = cairo_create (img);

    kilt_chart_add_series (c, "#1 cpu", KILT_CHART_BAR, red);
    kilt_chart_add_series (c, "#2 gpu", KILT_CHART_BAR, green);
    kilt_chart_add_series (c, "#3 other gpu", KILT_CHART_BAR, blue);
    for (guint i = 0; i < 3; i++)
      kilt_chart_append (c, i, i, 1.0 + i);
    kilt_chart_set_x_categories (c, runs);
    kilt_chart_set_colors (c, fg, bg);
    kilt_chart_draw (c, cr, 600, 300, -1);
    kilt_chart_get_plot_area (c, 600, 300, &area);
    cairo_surface_flush (img);
    for (guint i = 0; i < 3; i++)
      {
        /* Categories span [-0.5, 2.5]: the middle of category i, just above the axis. */
        int x = (int)(area.x + (i + 0.5) / 3.0 * area.width);
        int y = (int)(area.y + area.height - 4);
        g_autofree char *t = kilt_chart_describe_at (c, 600, 300, x);
        g_assert_true (pixel_near (img, x, y, want[i], 8));
        g_assert_nonnull (strstr (t, runs[i]));
      }
    cairo_destroy (cr);
    cairo_surface_destroy (img);
  }
  {
    /* Run 1 has one epoch, run 2 three: both bars of epoch 1 are in the plot, side by side. */
    const char *epochs[] = { "1", "2", "3", NULL };
    g_autoptr (KiltChart) c = kilt_chart_new ("Time per epoch");
    cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, 600, 300);
    cairo_t *cr = cairo_create (img);
    gboolean seen_red = FALSE, seen_green = FALSE;
    int y;

    kilt_chart_add_series (c, "#1 one epoch", KILT_CHART_BAR, red);
    kilt_chart_add_series (c, "#2 three epochs", KILT_CHART_BAR, green);
    kilt_chart_append (c, 0, 0, 5);
    for (guint e = 0; e < 3; e++)
      kilt_chart_append (c, 1, e, 4);
    kilt_chart_set_x_categories (c, epochs);
    kilt_chart_set_colors (c, fg, bg);
    kilt_chart_draw (c, cr, 600, 300, -1);
    kilt_chart_get_plot_area (c, 600, 300, &area);
    cairo_surface_flush (img);
    y = (int)(area.y + area.height - 4);
    for (int x = (int)area.x; x < (int)(area.x + area.width / 3); x++)
      {
        seen_red |= pixel_near (img, x, y, red8, 8);
        seen_green |= pixel_near (img, x, y, green8, 8);
      }
    g_assert_true (seen_red);
    g_assert_true (seen_green);
    /* Nothing red beyond epoch 1's category. */
    for (int x = (int)(area.x + area.width / 3) + 1; x < (int)(area.x + area.width); x++)
      g_assert_false (pixel_near (img, x, y, red8, 8));
    cairo_destroy (cr);
    cairo_surface_destroy (img);
  }
  {
    /* A long legend entry in a narrow chart: the right margin stays empty. */
    g_autoptr (KiltChart) c = kilt_chart_new (NULL);
    g_autoptr (GString) name = g_string_new ("#12 ");
    cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, 240, 160);
    cairo_t *cr = cairo_create (img);
    const guint8 white[3] = { 255, 255, 255 };

    for (int i = 0; i < 20; i++)
      g_string_append (name, "cifar10_cnn ");
    kilt_chart_add_series (c, name->str, KILT_CHART_BAR, red);
    kilt_chart_append (c, 0, 0, 1);
    kilt_chart_set_colors (c, fg, bg);
    kilt_chart_draw (c, cr, 240, 160, -1);
    cairo_surface_flush (img);
    for (int x = 236; x < 240; x++)
      for (int yy = 0; yy < 40; yy++)
        g_assert_true (pixel_near (img, x, yy, white, 4));
    cairo_destroy (cr);
    cairo_surface_destroy (img);
  }
}

/* Issue 15, 8: validation measured once an epoch is never smoothed, is read out only where it
 * was measured, and a single point is a dot big enough to see. */
static void
test_sparse_points (void)
{
  g_autoptr (KiltChart) c = kilt_chart_new ("Loss");
  const double red[3] = { 1, 0, 0 }, blue[3] = { 0, 0, 1 };
  const double bg[4] = { 1, 1, 1, 1 }, fg[3] = { 0, 0, 0 };
  const guint8 blue8[3] = { 0, 0, 255 };
  cairo_rectangle_t area;
  guint val;

  kilt_chart_add_series (c, "training", KILT_CHART_LINE, red);
  val = kilt_chart_add_series (c, "validation", KILT_CHART_LINE, blue);
  kilt_chart_set_series_points (c, val, TRUE);
  kilt_chart_set_smoothing (c, 0.9);
  for (guint i = 0; i <= 400; i++)
    kilt_chart_append (c, 0, i / 100.0, 2.0 - i / 400.0);
  /* 1.0 then 0.2: smoothed with weight 0.9 the second would read about 0.62. */
  kilt_chart_append (c, val, 1, 1.0);
  kilt_chart_append (c, val, 2, 0.2);
  kilt_chart_append (c, val, 3, 0.4);
  kilt_chart_get_plot_area (c, 600, 300, &area);
  {
    /* x runs 0 to 4: 1.5 is between measurements, 2 is one. */
    g_autofree char *between
        = kilt_chart_describe_at (c, 600, 300, area.x + area.width * (1.5 / 4.0));
    g_autofree char *at = kilt_chart_describe_at (c, 600, 300, area.x + area.width * (2.0 / 4.0));
    g_test_message ("%s | %s", between, at);
    g_assert_nonnull (strstr (between, "training"));
    g_assert_null (strstr (between, "validation"));
    g_assert_nonnull (strstr (at, "validation 0.200"));
  }
  /* Smoothing on: the training line is smoothed, validation keeps its measured values. */
  {
    gsize n;
    const double *p = kilt_chart_get_reduced (c, val, &n);
    g_assert_cmpuint (n, ==, 3);
    g_assert_cmpfloat (p[3], ==, 0.2);
  }

  /* One point alone: a dot of a few pixels' radius, not a speck. */
  {
    g_autoptr (KiltChart) one = kilt_chart_new (NULL);
    cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, 300, 200);
    cairo_t *cr = cairo_create (img);
    double x, y;
    int hits = 0;

    kilt_chart_add_series (one, "validation", KILT_CHART_LINE, blue);
    kilt_chart_set_series_points (one, 0, TRUE);
    kilt_chart_append (one, 0, 1, 0.5);
    kilt_chart_set_y_range (one, 0, 1);
    kilt_chart_set_colors (one, fg, bg);
    kilt_chart_draw (one, cr, 300, 200, -1);
    cairo_surface_flush (img);
    kilt_chart_get_plot_area (one, 300, 200, &area);
    /* A lone x gets a unit range around it; the point is in the middle. */
    x = area.x + area.width / 2, y = area.y + area.height / 2;
    for (int dy = -3; dy <= 3; dy++)
      for (int dx = -3; dx <= 3; dx++)
        hits += pixel_near (img, (int)x + dx, (int)y + dy, blue8, 60);
    g_test_message ("%d blue pixels around the point", hits);
    g_assert_cmpint (hits, >=, 20);
    cairo_destroy (cr);
    cairo_surface_destroy (img);
  }
}

/* Issue 15: one set of points, laid out on steps, epochs or time; a point with no time is
 * left out only while time is the axis; stacked areas stack again on the new axis. */
static void
test_x_modes (void)
{
  g_autoptr (KiltChart) c = kilt_chart_new ("Loss");
  g_autoptr (GRand) rand = g_rand_new_with_seed (15);
  KiltChartStamp at[60];
  double y[60], lo, hi, t = 0;
  guint line, a0, a1, n_timed = 0;
  gsize n;
  const double *p;

  line = kilt_chart_add_series (c, "training", KILT_CHART_LINE, NULL);
  a0 = kilt_chart_add_series (c, "weights", KILT_CHART_AREA, NULL);
  a1 = kilt_chart_add_series (c, "activations", KILT_CHART_AREA, NULL);
  kilt_chart_set_x_mode (c, KILT_CHART_X_EPOCH);
  for (guint i = 0; i < 60; i++)
    {
      t += g_rand_double_range (rand, 0.05, 0.5);
      at[i].step = 7.0 * (i + 1);
      at[i].epoch = (i + 1) / 20.0;
      /* Every fifth point was taken with no clock (a stored run of an older schema). */
      at[i].seconds = i % 5 == 4 ? NAN : t;
      n_timed += i % 5 != 4;
      y[i] = g_rand_double_range (rand, 0.1, 3);
      kilt_chart_append_at (c, line, &at[i], y[i]);
      kilt_chart_append_at (c, a0, &at[i], y[i]);
      kilt_chart_append_at (c, a1, &at[i], 2 * y[i] + 1);
    }
  g_assert_cmpstr (kilt_chart_x_mode_name (kilt_chart_get_x_mode (c)), ==, "Epoch");
  p = kilt_chart_get_reduced (c, line, &n);
  g_assert_cmpuint (n, ==, 60);
  g_assert_cmpfloat_with_epsilon (p[0], at[0].epoch, 1e-12);
  g_assert_cmpfloat_with_epsilon (p[2 * 59], at[59].epoch, 1e-12);

  kilt_chart_set_x_mode (c, KILT_CHART_X_STEP);
  p = kilt_chart_get_reduced (c, line, &n);
  g_assert_cmpuint (n, ==, 60);
  for (guint i = 0; i < 60; i++)
    {
      g_assert_cmpfloat_with_epsilon (p[2 * i], at[i].step, 1e-12);
      g_assert_cmpfloat_with_epsilon (p[2 * i + 1], y[i], 1e-12);
    }
  /* The top area is drawn on the one below. */
  p = kilt_chart_get_reduced (c, a1, &n);
  g_assert_cmpuint (n, ==, 60);
  for (guint i = 0; i < 60; i++)
    g_assert_cmpfloat_with_epsilon (p[2 * i + 1], 3 * y[i] + 1, 1e-9);
  g_assert_true (kilt_chart_get_x_extent (c, &lo, &hi));
  g_assert_cmpfloat (lo, ==, 7);
  g_assert_cmpfloat (hi, ==, 420);

  kilt_chart_set_x_mode (c, KILT_CHART_X_TIME);
  g_assert_cmpuint (kilt_chart_get_n_points (c, line), ==, n_timed);
  p = kilt_chart_get_reduced (c, line, &n);
  for (guint i = 0, k = 0; i < 60; i++)
    if (isfinite (at[i].seconds))
      {
        g_assert_cmpfloat_with_epsilon (p[2 * k], at[i].seconds, 1e-12);
        g_assert_cmpfloat_with_epsilon (p[2 * k + 1], y[i], 1e-12);
        k++;
      }
  /* Back on epochs, nothing was lost. */
  kilt_chart_set_x_mode (c, KILT_CHART_X_EPOCH);
  g_assert_cmpuint (kilt_chart_get_n_points (c, line), ==, 60);
  kilt_chart_clear (c);
  kilt_chart_set_x_mode (c, KILT_CHART_X_STEP);
  g_assert_cmpuint (kilt_chart_get_n_points (c, line), ==, 0);
}

/* The read-out names where the point was measured on every axis, and the raw value beside the
 * smoothed one. */
static void
test_hover_stamp (void)
{
  g_autoptr (KiltChart) c = kilt_chart_new ("Loss");
  g_autoptr (GRand) rand = g_rand_new_with_seed (8);
  cairo_rectangle_t area;
  double ema = 0, pw = 1, raw = 0, smooth = 0;

  kilt_chart_add_series (c, "training", KILT_CHART_LINE, NULL);
  kilt_chart_set_x_mode (c, KILT_CHART_X_STEP);
  kilt_chart_set_smoothing (c, 0.6);
  for (guint i = 1; i <= 1234; i++)
    {
      KiltChartStamp at = { i, i / 400.0, i * 0.05 };
      raw = g_rand_double_range (rand, 1, 2);
      ema = 0.6 * ema + 0.4 * raw, pw *= 0.6;
      smooth = ema / (1 - pw);
      kilt_chart_append_at (c, 0, &at, raw);
    }
  kilt_chart_get_plot_area (c, 600, 300, &area);
  {
    g_autofree char *text = kilt_chart_describe_at (c, 600, 300, area.x + area.width);
    g_autofree char *want_raw = g_strdup_printf ("(raw %.3f)", raw);
    g_autofree char *want_smooth = g_strdup_printf ("training %.3f", smooth);
    g_test_message ("%s", text);
    g_assert_true (g_str_has_prefix (text, "Step 1,234 · Epoch 3.08 · Time 1:02"));
    g_assert_nonnull (strstr (text, want_raw));
    g_assert_nonnull (strstr (text, want_smooth));
  }
  /* No smoothing: nothing to tell apart. */
  kilt_chart_set_smoothing (c, 0);
  {
    g_autofree char *text = kilt_chart_describe_at (c, 600, 300, area.x + area.width);
    g_assert_null (strstr (text, "raw"));
  }
}

/* Zoomed into a range of a long series: every point of the range is drawn as measured (not
 * the long run's columns), y fits the range, and the pixels map onto it. */
static void
test_zoom (void)
{
  g_autoptr (KiltChart) c = kilt_chart_new ("Loss");
  g_autoptr (GRand) rand = g_rand_new_with_seed (4);
  g_autoptr (GArray) ys = g_array_new (FALSE, FALSE, sizeof (double));
  cairo_rectangle_t area;
  double y = 0, lo, hi;
  gsize n, n_full;
  const double *p;

  kilt_chart_add_series (c, "training", KILT_CHART_LINE, NULL);
  kilt_chart_set_columns (c, 100);
  for (guint i = 0; i <= 5000; i++)
    {
      y += g_rand_double_range (rand, -1, 1);
      g_array_append_val (ys, y);
      kilt_chart_append (c, 0, i, y);
    }
  kilt_chart_get_reduced (c, 0, &n_full);
  g_assert_cmpuint (n_full, <=, 2 * 100 + 2);
  g_assert_true (kilt_chart_can_zoom (c));
  kilt_chart_set_x_zoom (c, 1000, 1100);
  g_assert_true (kilt_chart_get_x_zoom (c, &lo, &hi));
  g_assert_cmpfloat (lo, ==, 1000);
  g_assert_cmpfloat (hi, ==, 1100);
  p = kilt_chart_get_reduced (c, 0, &n);
  /* 101 points inside, each in a column of its own, and one neighbour on each side. */
  g_assert_cmpuint (n, ==, 103);
  for (gsize k = 0; k < n; k++)
    {
      guint i = (guint)p[2 * k];
      g_assert_cmpfloat (p[2 * k], ==, 999 + k);
      g_assert_cmpfloat (p[2 * k + 1], ==, g_array_index (ys, double, i));
    }
  kilt_chart_get_plot_area (c, 600, 300, &area);
  g_assert_cmpfloat_with_epsilon (kilt_chart_pixel_to_x (c, 600, 300, area.x), 1000, 1e-9);
  g_assert_cmpfloat_with_epsilon (kilt_chart_pixel_to_x (c, 600, 300, area.x + area.width), 1100,
                                  1e-9);
  g_assert_cmpfloat_with_epsilon (kilt_chart_x_to_pixel (c, 600, 300, 1050),
                                  area.x + area.width / 2, 1e-6);
  {
    /* A drawing of the zoomed chart draws (cairo keeps no error). */
    cairo_surface_t *img = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, 600, 300);
    cairo_t *cr = cairo_create (img);
    kilt_chart_draw (c, cr, 600, 300, area.x + area.width / 2);
    g_assert_cmpint (cairo_status (cr), ==, CAIRO_STATUS_SUCCESS);
    cairo_destroy (cr);
    cairo_surface_destroy (img);
  }
  /* Back to everything: the long run's columns, from its first x to its last. */
  kilt_chart_set_x_zoom (c, NAN, NAN);
  g_assert_false (kilt_chart_get_x_zoom (c, NULL, NULL));
  kilt_chart_get_reduced (c, 0, &n);
  g_assert_cmpuint (n, ==, n_full);
  kilt_chart_get_plot_area (c, 600, 300, &area);
  g_assert_cmpfloat (kilt_chart_pixel_to_x (c, 600, 300, area.x), <=, 0);
  g_assert_cmpfloat (kilt_chart_pixel_to_x (c, 600, 300, area.x + area.width), >=, 5000);

  /* Bars do not zoom. */
  {
    g_autoptr (KiltChart) bars = kilt_chart_new ("Time per epoch");
    kilt_chart_add_series (bars, "run", KILT_CHART_BAR, NULL);
    kilt_chart_append (bars, 0, 1, 3);
    kilt_chart_append (bars, 0, 2, 4);
    g_assert_false (kilt_chart_can_zoom (bars));
    kilt_chart_set_x_zoom (bars, 1, 1.5);
    g_assert_false (kilt_chart_get_x_zoom (bars, NULL, NULL));
  }
}

/* Charts of one page line up: a shared span widens the x range without padding. */
static void
test_span (void)
{
  g_autoptr (KiltChart) c = kilt_chart_new ("Throughput");
  cairo_rectangle_t area;

  kilt_chart_add_series (c, "samples per second", KILT_CHART_LINE, NULL);
  for (guint i = 2; i <= 5; i++)
    kilt_chart_append (c, 0, i, 100 + i);
  kilt_chart_set_x_span (c, 0, 10);
  kilt_chart_get_plot_area (c, 600, 300, &area);
  g_assert_cmpfloat_with_epsilon (kilt_chart_pixel_to_x (c, 600, 300, area.x), 0, 1e-9);
  g_assert_cmpfloat_with_epsilon (kilt_chart_pixel_to_x (c, 600, 300, area.x + area.width), 10,
                                  1e-9);
  kilt_chart_set_x_span (c, NAN, NAN);
  g_assert_cmpfloat_with_epsilon (kilt_chart_pixel_to_x (c, 600, 300, area.x), 2, 1e-9);
}

static void
test_png (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "loss.png", NULL);
  g_autoptr (KiltChart) chart = loss_chart (1000, 3);
  g_autoptr (GError) error = NULL;
  const guint8 blue[3] = { 0x35, 0x84, 0xe4 };
  const guint8 white[3] = { 255, 255, 255 };
  cairo_rectangle_t area;
  cairo_surface_t *png;
  guint series_px = 0, bg_px = 0;
  int w, h;

  g_assert_true (kilt_chart_save (chart, path, 640, 360, &error));
  g_assert_no_error (error);
  png = cairo_image_surface_create_from_png (path);
  g_assert_cmpint (cairo_surface_status (png), ==, CAIRO_STATUS_SUCCESS);
  w = cairo_image_surface_get_width (png);
  h = cairo_image_surface_get_height (png);
  g_assert_cmpint (w, ==, 640);
  g_assert_cmpint (h, ==, 360);
  cairo_surface_flush (png);

  kilt_chart_get_plot_area (chart, 640, 360, &area);
  /* The first training point (x = 0, y about 2.1) is in the top-left of the plot area, drawn
   * in the first series' colour; the bottom-right of the plot is empty background. */
  for (int y = (int)area.y; y < (int)(area.y + area.height * 0.3); y++)
    for (int x = (int)area.x + 1; x < (int)(area.x + 20); x++)
      series_px += pixel_near (png, x, y, blue, 40);
  g_assert_cmpuint (series_px, >, 10);
  for (int y = (int)(area.y + area.height * 0.1); y < (int)(area.y + area.height * 0.3); y++)
    for (int x = (int)(area.x + area.width * 0.8); x < (int)(area.x + area.width - 2); x++)
      {
        bg_px += pixel_near (png, x, y, white, 30) || !pixel_near (png, x, y, blue, 60);
        g_assert_false (pixel_near (png, x, y, blue, 20));
      }
  g_assert_cmpuint (bg_px, >, 100);

  /* A chart with the series hidden has no series pixels there. */
  kilt_chart_set_series_visible (chart, 0, FALSE);
  kilt_chart_set_series_visible (chart, 1, FALSE);
  g_assert_true (kilt_chart_save (chart, path, 640, 360, &error));
  cairo_surface_destroy (png);
  png = cairo_image_surface_create_from_png (path);
  series_px = 0;
  for (int y = (int)area.y; y < (int)(area.y + area.height); y++)
    for (int x = (int)area.x + 1; x < (int)(area.x + area.width); x++)
      series_px += pixel_near (png, x, y, blue, 40);
  g_assert_cmpuint (series_px, ==, 0);
  cairo_surface_destroy (png);

  /* No temporary files are left beside it. */
  {
    g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
    const char *name;
    guint n = 0;
    while ((name = g_dir_read_name (d)))
      {
        n++;
        g_assert_cmpstr (name, ==, "loss.png");
      }
    g_assert_cmpuint (n, ==, 1);
  }
}

static void
test_vector_files (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autoptr (KiltChart) chart = loss_chart (3000, 5);
  const char *names[] = { "c.svg", "c.PDF" };

  kilt_chart_set_log_scale (chart, TRUE);
  kilt_chart_set_smoothing (chart, 0.6);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *path = g_build_filename (dir, names[i], NULL);
      g_autofree char *contents = NULL;
      g_autoptr (GError) error = NULL;
      gsize len;

      g_assert_true (kilt_chart_save (chart, path, 500, 300, &error));
      g_assert_no_error (error);
      g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
      g_assert_cmpuint (len, >, 1000);
      if (i == 0)
        g_assert_true (g_str_has_prefix (contents, "<?xml") && strstr (contents, "<svg"));
      else
        g_assert_true (g_str_has_prefix (contents, "%PDF"));
    }

  /* Unknown extension and a folder that does not exist: errors, no crash, no file. */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *bad = g_build_filename (dir, "c.bmp", NULL);
    g_assert_false (kilt_chart_save (chart, bad, 100, 100, &error));
    g_assert_nonnull (error);
    g_assert_nonnull (strstr (error->message, ".png"));
    g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
    g_clear_error (&error);
    g_assert_false (kilt_chart_save (chart, "/nonexistent-kilt/c.png", 100, 100, &error));
    g_assert_nonnull (error);
    g_assert_nonnull (strstr (error->message, "/nonexistent-kilt/c.png"));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/chart/ticks/numbers", test_ticks_numbers);
  g_test_add_func ("/chart/ticks/units", test_ticks_units);
  g_test_add_func ("/chart/labels", test_labels);
  g_test_add_func ("/chart/reduction", test_reduction);
  g_test_add_func ("/chart/stacked-and-scaling", test_stacked_and_scaling);
  g_test_add_func ("/chart/png", test_png);
  g_test_add_func ("/chart/categories", test_categories);
  g_test_add_func ("/chart/bars-per-category", test_bars_per_category);
  g_test_add_func ("/chart/sparse-points", test_sparse_points);
  g_test_add_func ("/chart/svg-pdf", test_vector_files);
  g_test_add_func ("/chart/x-modes", test_x_modes);
  g_test_add_func ("/chart/hover-stamp", test_hover_stamp);
  g_test_add_func ("/chart/zoom", test_zoom);
  g_test_add_func ("/chart/span", test_span);
  return g_test_run ();
}
