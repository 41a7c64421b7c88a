/* Charts drawn with plain cairo: one drawing for the window and for PNG, SVG and PDF files. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-chart"

#include "kilt-chart.h"
#include "kilt-error.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#if defined(G_OS_WIN32) && !defined(O_CLOEXEC)
#define O_CLOEXEC _O_NOINHERIT /* Windows' name for "not inherited by child processes" */
#endif

#define FONT_FACE       "Sans"
#define TITLE_SIZE      13.0
#define LABEL_SIZE      11.0
#define PAD             10.0
#define DEFAULT_COLUMNS 600

/* A column of the reduced series: the extremes of the raw values (and of the smoothed ones)
 * that fell into one x interval, with where they were. */
typedef struct
{
  gint64 index;
  double x_first;
  double ymin, ymax, x_ymin, x_ymax;
  double smin, smax, x_smin, x_smax;
} Bucket;

typedef struct
{
  char *name;
  KiltChartKind kind;
  double rgb[3];
  gboolean visible;
  GArray *x;       /* double, raw */
  GArray *y;       /* double, raw */
  GArray *v;       /* double: what is drawn (stacked for areas) */
  GArray *s;       /* double: smoothed v (lines), else a copy of v */
  double ema;      /* running average before de-biasing */
  double ema_pow;  /* weight^n, for the de-biasing */
  GArray *buckets; /* Bucket */
  double width;    /* bucket width in x units; 0 while every point has its own bucket */
  double origin;
  GArray *reduced;   /* (x, v) pairs */
  GArray *reduced_s; /* (x, s) pairs */
  gboolean reduced_valid;
  gboolean points; /* sparse measurements: never smoothed, each point marked */
  GArray *at;      /* KiltChartStamp per point of x (NAN stamps for plain appends) */
  GArray *src;     /* StampedPoint: every stamped append, to lay out again on another axis */
} Series;

typedef struct
{
  KiltChartStamp at;
  double y;
} StampedPoint;

struct _KiltChart
{
  gatomicrefcount ref;
  char *title;
  char *x_label, *y_label;
  KiltAxisUnit x_unit, y_unit;
  double y_min, y_max;
  gboolean log_y;
  double smoothing;
  gboolean has_marker;
  double marker;
  char *marker_label;
  char *empty_text;
  char **x_categories; /* names for x = 0, 1, 2 ... instead of numbers; NULL for none */
  double fg[3];
  double bg[4];
  guint columns;
  GPtrArray *series;
  guint64 serial;
  KiltChartXMode x_mode;
  double zoom_lo, zoom_hi; /* NAN: not zoomed */
  double span_lo, span_hi; /* NAN: no shared span */
};

typedef struct
{
  double x_lo, x_hi, x_step;
  double y_lo, y_hi, y_step; /* log scale: in log10 units */
  cairo_rectangle_t plot;
  double legend_y;
  gboolean empty;
  gboolean marker_above; /* the marker is above the data's range and left off the scale */
  guint x_rows;          /* lines of x tick labels: 2 when category names alternate */
  double bar_gap;        /* the narrowest spacing of the x values of every bar series */
  gboolean bars_share_x; /* some x has bars of two series (grouped bars, not one per x) */
} Layout;

static const double palette[][3] = {
  { 0x35 / 255.0, 0x84 / 255.0, 0xe4 / 255.0 }, /* blue */
  { 0xe6 / 255.0, 0x61 / 255.0, 0x00 / 255.0 }, /* orange */
  { 0x2e / 255.0, 0xc2 / 255.0, 0x7e / 255.0 }, /* green */
  { 0x91 / 255.0, 0x41 / 255.0, 0xac / 255.0 }, /* purple */
  { 0xe0 / 255.0, 0x1b / 255.0, 0x24 / 255.0 }, /* red */
  { 0xc8 / 255.0, 0x88 / 255.0, 0x00 / 255.0 }, /* yellow */
  { 0x98 / 255.0, 0x6a / 255.0, 0x44 / 255.0 }, /* brown */
  { 0x1c / 255.0, 0x71 / 255.0, 0x71 / 255.0 }, /* teal */
};

/* ---- ticks and labels ---------------------------------------------------------------- */

static double
nice_125 (double raw)
{
  double e, f;

  if (!(raw > 0) || !isfinite (raw))
    return 1;
  e = pow (10, floor (log10 (raw)));
  f = raw / e;
  if (f <= 1 + 1e-9)
    return e;
  if (f <= 2 + 1e-9)
    return 2 * e;
  if (f <= 5 + 1e-9)
    return 5 * e;
  return 10 * e;
}

static double
nice_seconds (double raw)
{
  static const double steps[] = { 1,   2,   5,    10,   15,   30,    60,    120,   300,
                                  600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400 };

  if (raw < 1)
    return nice_125 (raw);
  for (guint i = 0; i < G_N_ELEMENTS (steps); i++)
    if (steps[i] >= raw - 1e-9)
      return steps[i];
  return 86400 * nice_125 (raw / 86400);
}

static double
nice_bytes (double raw)
{
  double unit = 1;
  double step;

  if (raw < 1)
    return 1;
  while (unit * 1024 <= raw && unit < 1099511627776.0)
    unit *= 1024;
  step = nice_125 (raw / unit);
  if (step >= 1000 && unit < 1099511627776.0)
    return unit * 1024;
  return step * unit;
}

double
kilt_chart_nice_step (double lo, double hi, guint max_ticks, KiltAxisUnit unit, double *out_lo,
                      double *out_hi)
{
  double range, raw, step;

  if (max_ticks < 1)
    max_ticks = 1;
  if (!isfinite (lo) || !isfinite (hi))
    lo = 0, hi = 1;
  if (hi < lo)
    {
      double t = lo;
      lo = hi;
      hi = t;
    }
  range = hi - lo;
  /* A flat series seen through rounding (3.0000000001 vs 3) is flat. */
  if (range <= 1e-9 * MAX (fabs (lo), fabs (hi)))
    {
      double pad = fabs (lo) > 0 ? fabs (lo) * 0.1 : 1;
      lo -= pad;
      hi += pad;
      range = hi - lo;
    }
  raw = range / max_ticks;
  switch (unit)
    {
      case KILT_AXIS_SECONDS:
        step = nice_seconds (raw);
        break;
      case KILT_AXIS_BYTES:
        step = nice_bytes (raw);
        break;
      case KILT_AXIS_NUMBER:
      case KILT_AXIS_PERCENT:
      default:
        step = nice_125 (raw);
        break;
    }
  if (out_lo)
    *out_lo = floor (lo / step + 1e-9) * step;
  if (out_hi)
    *out_hi = ceil (hi / step - 1e-9) * step;
  return step;
}

static int
decimals_for (double step)
{
  int d;

  if (!(step > 0))
    return 0;
  d = (int)-floor (log10 (step) + 1e-9);
  /* 2.5 and 0.25 steps need one more digit than their power of ten. */
  if (fabs (step * pow (10, d) - round (step * pow (10, d))) > 1e-6)
    d++;
  return CLAMP (d, 0, 9);
}

static char *
format_number (double value, double step)
{
  static const char *suffix[] = { "", "k", "M", "G", "T" };
  guint k = 0;
  double scale = 1;

  if (fabs (value) < step * 1e-6)
    value = 0;
  while (k + 1 < G_N_ELEMENTS (suffix) && step >= scale * 1000 && fabs (value) >= scale * 1000)
    {
      scale *= 1000;
      k++;
    }
  return g_strdup_printf ("%.*f%s", decimals_for (step / scale), value / scale, suffix[k]);
}

char *
kilt_chart_format_value (double value, double step, KiltAxisUnit unit)
{
  if (!isfinite (value))
    return g_strdup ("–");
  /* A tick reached by adding steps lands a hair off zero: "-0.0 s" reads as a bug. */
  if (step > 0 && fabs (value) < step * 1e-6)
    value = 0;
  switch (unit)
    {
      case KILT_AXIS_PERCENT:
        {
          g_autofree char *n = format_number (value, step);
          return g_strconcat (n, "%", NULL);
        }
      case KILT_AXIS_SECONDS:
        {
          gint64 t;
          const char *sign = value < 0 ? "−" : "";

          if (step < 1)
            return g_strdup_printf ("%.*f s", decimals_for (step), value);
          t = (gint64)llround (fabs (value));
          if (t < 3600)
            return g_strdup_printf ("%s%d:%02d", sign, (int)(t / 60), (int)(t % 60));
          return g_strdup_printf ("%s%d:%02d:%02d", sign, (int)(t / 3600), (int)(t / 60 % 60),
                                  (int)(t % 60));
        }
      case KILT_AXIS_BYTES:
        {
          static const char *names[] = { "B", "KiB", "MiB", "GiB", "TiB" };
          double unit_bytes = 1;
          guint k = 0;
          if (fabs (value) < 0.5)
            return g_strdup ("0");
          /* The unit follows the step, moving up early where the step is a clean fraction of the
           * next unit (512 MiB steps read 0.5, 1, 1.5 GiB). */
          while (k + 1 < G_N_ELEMENTS (names)
                 && (step >= unit_bytes * 1024
                     || (step * 4 >= unit_bytes * 1024 && fmod (step, unit_bytes * 256) == 0)))
            {
              unit_bytes *= 1024;
              k++;
            }
          return g_strdup_printf ("%.*f %s", k == 0 ? 0 : decimals_for (step / unit_bytes),
                                  value / unit_bytes, names[k]);
        }
      case KILT_AXIS_NUMBER:
      default:
        return format_number (value, step);
    }
}

/* ---- chart and series ---------------------------------------------------------------- */

static void
series_free (gpointer data)
{
  Series *s = data;

  g_free (s->name);
  g_array_unref (s->x);
  g_array_unref (s->y);
  g_array_unref (s->v);
  g_array_unref (s->s);
  g_array_unref (s->buckets);
  g_array_unref (s->reduced);
  g_array_unref (s->reduced_s);
  g_array_unref (s->at);
  g_array_unref (s->src);
  g_free (s);
}

KiltChart *
kilt_chart_new (const char *title)
{
  KiltChart *chart = g_new0 (KiltChart, 1);

  g_atomic_ref_count_init (&chart->ref);
  chart->title = g_strdup (title);
  chart->y_min = chart->y_max = NAN;
  chart->fg[0] = chart->fg[1] = chart->fg[2] = 0.2;
  chart->bg[0] = chart->bg[1] = chart->bg[2] = chart->bg[3] = 1;
  chart->columns = DEFAULT_COLUMNS;
  chart->series = g_ptr_array_new_with_free_func (series_free);
  chart->x_mode = KILT_CHART_X_EPOCH;
  chart->zoom_lo = chart->zoom_hi = NAN;
  chart->span_lo = chart->span_hi = NAN;
  return chart;
}

KiltChart *
kilt_chart_ref (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, NULL);
  g_atomic_ref_count_inc (&chart->ref);
  return chart;
}

void
kilt_chart_unref (KiltChart *chart)
{
  if (chart == NULL || !g_atomic_ref_count_dec (&chart->ref))
    return;
  g_free (chart->title);
  g_free (chart->x_label);
  g_free (chart->y_label);
  g_free (chart->marker_label);
  g_free (chart->empty_text);
  g_strfreev (chart->x_categories);
  g_ptr_array_unref (chart->series);
  g_free (chart);
}

static void
changed (KiltChart *chart)
{
  chart->serial++;
}

void
kilt_chart_set_title (KiltChart *chart, const char *title)
{
  g_return_if_fail (chart != NULL);
  g_free (chart->title);
  chart->title = g_strdup (title);
  changed (chart);
}

const char *
kilt_chart_get_title (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, NULL);
  return chart->title;
}

void
kilt_chart_set_x_axis (KiltChart *chart, const char *label, KiltAxisUnit unit)
{
  g_return_if_fail (chart != NULL);
  g_free (chart->x_label);
  chart->x_label = g_strdup (label);
  chart->x_unit = unit;
  changed (chart);
}

void
kilt_chart_set_y_axis (KiltChart *chart, const char *label, KiltAxisUnit unit)
{
  g_return_if_fail (chart != NULL);
  g_free (chart->y_label);
  chart->y_label = g_strdup (label);
  chart->y_unit = unit;
  changed (chart);
}

void
kilt_chart_set_y_range (KiltChart *chart, double min, double max)
{
  g_return_if_fail (chart != NULL);
  chart->y_min = min;
  chart->y_max = max;
  changed (chart);
}

void
kilt_chart_set_log_scale (KiltChart *chart, gboolean log_y)
{
  g_return_if_fail (chart != NULL);
  chart->log_y = !!log_y;
  changed (chart);
}

gboolean
kilt_chart_get_log_scale (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, FALSE);
  return chart->log_y;
}

void
kilt_chart_set_marker (KiltChart *chart, double y, const char *label)
{
  g_return_if_fail (chart != NULL);
  chart->has_marker = isfinite (y);
  chart->marker = y;
  g_free (chart->marker_label);
  chart->marker_label = g_strdup (label);
  changed (chart);
}

void
kilt_chart_clear_marker (KiltChart *chart)
{
  g_return_if_fail (chart != NULL);
  chart->has_marker = FALSE;
  changed (chart);
}

void
kilt_chart_set_x_categories (KiltChart *chart, const char *const *names)
{
  g_strfreev (chart->x_categories);
  chart->x_categories = names ? g_strdupv ((char **)names) : NULL;
  chart->serial++;
}

const char *
kilt_chart_get_empty_text (KiltChart *chart)
{
  return chart->empty_text;
}

/* The category named at x = @t, or NULL when @t is not a whole index of one. */
static const char *
category_at (KiltChart *chart, double t)
{
  double r = round (t);

  if (chart->x_categories == NULL || fabs (t - r) > 1e-6 || r < 0
      || r >= g_strv_length (chart->x_categories))
    return NULL;
  return chart->x_categories[(guint)r];
}

void
kilt_chart_set_empty_text (KiltChart *chart, const char *text)
{
  g_return_if_fail (chart != NULL);
  g_free (chart->empty_text);
  chart->empty_text = g_strdup (text);
  changed (chart);
}

void
kilt_chart_set_colors (KiltChart *chart, const double fg[3], const double bg[4])
{
  g_return_if_fail (chart != NULL);
  if (fg)
    memcpy (chart->fg, fg, sizeof chart->fg);
  if (bg)
    memcpy (chart->bg, bg, sizeof chart->bg);
  changed (chart);
}

static Series *
get_series (KiltChart *chart, guint series)
{
  g_return_val_if_fail (chart != NULL, NULL);
  g_return_val_if_fail (series < chart->series->len, NULL);
  return g_ptr_array_index (chart->series, series);
}

guint
kilt_chart_add_series (KiltChart *chart, const char *name, KiltChartKind kind, const double *rgb)
{
  Series *s;

  g_return_val_if_fail (chart != NULL, 0);
  s = g_new0 (Series, 1);
  s->name = g_strdup (name ? name : "");
  s->kind = kind;
  memcpy (s->rgb, rgb ? rgb : palette[chart->series->len % G_N_ELEMENTS (palette)], sizeof s->rgb);
  s->visible = TRUE;
  s->x = g_array_new (FALSE, FALSE, sizeof (double));
  s->y = g_array_new (FALSE, FALSE, sizeof (double));
  s->v = g_array_new (FALSE, FALSE, sizeof (double));
  s->s = g_array_new (FALSE, FALSE, sizeof (double));
  s->buckets = g_array_new (FALSE, FALSE, sizeof (Bucket));
  s->reduced = g_array_new (FALSE, FALSE, sizeof (double));
  s->reduced_s = g_array_new (FALSE, FALSE, sizeof (double));
  s->at = g_array_new (FALSE, FALSE, sizeof (KiltChartStamp));
  s->src = g_array_new (FALSE, FALSE, sizeof (StampedPoint));
  s->ema_pow = 1;
  g_ptr_array_add (chart->series, s);
  changed (chart);
  return chart->series->len - 1;
}

guint
kilt_chart_get_n_series (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, 0);
  return chart->series->len;
}

void
kilt_chart_set_series_visible (KiltChart *chart, guint series, gboolean visible)
{
  Series *s = get_series (chart, series);

  if (s == NULL)
    return;
  s->visible = !!visible;
  changed (chart);
}

#define AT(a, i) g_array_index ((a), double, (i))

void
kilt_chart_set_series_name (KiltChart *chart, guint series, const char *name)
{
  Series *s = get_series (chart, series);

  if (s == NULL || g_strcmp0 (s->name, name) == 0)
    return;
  g_free (s->name);
  s->name = g_strdup (name ? name : "");
  changed (chart);
}

gboolean
kilt_chart_has_points (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, FALSE);
  for (guint i = 0; i < chart->series->len; i++)
    if (((Series *)g_ptr_array_index (chart->series, i))->x->len > 0)
      return TRUE;
  return FALSE;
}

void
kilt_chart_set_series_points (KiltChart *chart, guint series, gboolean points)
{
  Series *s = get_series (chart, series);

  if (s == NULL || s->points == !!points)
    return;
  s->points = !!points;
  /* What was smoothed so far goes back to the measured values. */
  for (guint j = 0; j < s->v->len && points; j++)
    AT (s->s, j) = AT (s->v, j);
  s->reduced_valid = FALSE;
  changed (chart);
}

/* ---- reduction ----------------------------------------------------------------------- */

static void
bucket_add (Bucket *b, double x, double v, double s)
{
  if (v < b->ymin)
    b->ymin = v, b->x_ymin = x;
  if (v > b->ymax)
    b->ymax = v, b->x_ymax = x;
  if (s < b->smin)
    b->smin = s, b->x_smin = x;
  if (s > b->smax)
    b->smax = s, b->x_smax = x;
}

static void
bucket_init (Bucket *b, gint64 index, double x, double v, double s)
{
  b->index = index;
  b->x_first = x;
  b->ymin = b->ymax = v;
  b->x_ymin = b->x_ymax = x;
  b->smin = b->smax = s;
  b->x_smin = b->x_smax = x;
}

static void
bucket_merge (Bucket *into, const Bucket *from)
{
  if (from->ymin < into->ymin)
    into->ymin = from->ymin, into->x_ymin = from->x_ymin;
  if (from->ymax > into->ymax)
    into->ymax = from->ymax, into->x_ymax = from->x_ymax;
  if (from->smin < into->smin)
    into->smin = from->smin, into->x_smin = from->x_smin;
  if (from->smax > into->smax)
    into->smax = from->smax, into->x_smax = from->x_smax;
}

/* Halves the number of columns by doubling their width: amortised O(1) per appended point. */
static void
series_coarsen (Series *s)
{
  guint out = 0;

  s->width *= 2;
  for (guint i = 0; i < s->buckets->len; i++)
    {
      Bucket b = g_array_index (s->buckets, Bucket, i);

      b.index /= 2;
      if (out > 0 && g_array_index (s->buckets, Bucket, out - 1).index == b.index)
        bucket_merge (&g_array_index (s->buckets, Bucket, out - 1), &b);
      else
        g_array_index (s->buckets, Bucket, out++) = b;
    }
  g_array_set_size (s->buckets, out);
}

static void
series_bucket_point (Series *s, guint columns, double x, double v, double sm)
{
  Bucket *last = s->buckets->len ? &g_array_index (s->buckets, Bucket, s->buckets->len - 1) : NULL;
  gint64 index;

  if (s->width <= 0)
    {
      Bucket b;

      bucket_init (&b, s->buckets->len, x, v, sm);
      g_array_append_val (s->buckets, b);
      if (s->buckets->len > columns && x > s->origin)
        {
          /* Switch from one bucket per point to fixed-width columns: rebuild once. */
          GArray *old = s->buckets;
          s->width = (x - s->origin) / MAX (columns / 2, 1) * (1 + 1e-9);
          s->buckets = g_array_new (FALSE, FALSE, sizeof (Bucket));
          for (guint i = 0; i < old->len; i++)
            {
              const Bucket *o = &g_array_index (old, Bucket, i);
              series_bucket_point (s, columns, o->x_first, o->ymin, o->smin);
            }
          g_array_unref (old);
        }
      return;
    }
  index = (gint64)floor ((x - s->origin) / s->width);
  if (last && index <= last->index)
    {
      bucket_add (last, x, v, sm);
      return;
    }
  {
    Bucket b;
    bucket_init (&b, index, x, v, sm);
    g_array_append_val (s->buckets, b);
  }
  while (s->buckets->len > columns)
    series_coarsen (s);
}

static void
series_rebucket (Series *s, guint columns)
{
  g_array_set_size (s->buckets, 0);
  s->width = 0;
  s->origin = s->x->len ? AT (s->x, 0) : 0;
  for (guint i = 0; i < s->x->len; i++)
    series_bucket_point (s, columns, AT (s->x, i), AT (s->v, i), AT (s->s, i));
  s->reduced_valid = FALSE;
}

static double
series_smooth (Series *s, double weight, double v)
{
  if (weight <= 0)
    return v;
  s->ema = weight * s->ema + (1 - weight) * v;
  s->ema_pow *= weight;
  return s->ema / (1 - s->ema_pow);
}

void
kilt_chart_set_columns (KiltChart *chart, guint columns)
{
  g_return_if_fail (chart != NULL);
  columns = MAX (columns, 8);
  /* Rebuild only on a real change: a resize by a few pixels keeps the columns. */
  if (columns <= chart->columns && columns * 2 > chart->columns)
    return;
  chart->columns = columns;
  for (guint i = 0; i < chart->series->len; i++)
    series_rebucket (g_ptr_array_index (chart->series, i), columns);
  changed (chart);
}

void
kilt_chart_set_smoothing (KiltChart *chart, double weight)
{
  g_return_if_fail (chart != NULL);
  weight = CLAMP (weight, 0, 0.999);
  if (weight == chart->smoothing)
    return;
  chart->smoothing = weight;
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);

      s->ema = 0;
      s->ema_pow = 1;
      for (guint j = 0; j < s->v->len; j++)
        AT (s->s, j) = s->kind == KILT_CHART_LINE && !s->points
                           ? series_smooth (s, weight, AT (s->v, j))
                           : AT (s->v, j);
      series_rebucket (s, chart->columns);
    }
  changed (chart);
}

double
kilt_chart_get_smoothing (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, 0);
  return chart->smoothing;
}

/* The stacked value of @s at @x: its last point at or before @x. */
static double
series_value_before (Series *s, double x)
{
  guint lo = 0, hi = s->x->len;

  if (hi == 0 || AT (s->x, 0) > x)
    return 0;
  while (hi - lo > 1)
    {
      guint mid = (lo + hi) / 2;
      if (AT (s->x, mid) <= x)
        lo = mid;
      else
        hi = mid;
    }
  return AT (s->v, lo);
}

static const KiltChartStamp no_stamp = { NAN, NAN, NAN };

static void
series_push (KiltChart *chart, guint series, double x, double y, const KiltChartStamp *at)
{
  Series *s = g_ptr_array_index (chart->series, series);
  double v = y, sm;

  if (!isfinite (x) || isnan (y))
    return;
  if (s->x->len && x < AT (s->x, s->x->len - 1))
    x = AT (s->x, s->x->len - 1);
  if (s->kind == KILT_CHART_AREA)
    for (guint i = series; i-- > 0;)
      {
        Series *below = g_ptr_array_index (chart->series, i);
        if (below->kind == KILT_CHART_AREA)
          {
            v = y + series_value_before (below, x);
            break;
          }
      }
  sm = s->kind == KILT_CHART_LINE && !s->points ? series_smooth (s, chart->smoothing, v) : v;
  if (s->x->len == 0)
    s->origin = x;
  g_array_append_val (s->x, x);
  g_array_append_val (s->y, y);
  g_array_append_val (s->v, v);
  g_array_append_val (s->s, sm);
  g_array_append_val (s->at, *at);
  series_bucket_point (s, chart->columns, x, v, sm);
  s->reduced_valid = FALSE;
  changed (chart);
}

void
kilt_chart_append (KiltChart *chart, guint series, double x, double y)
{
  if (get_series (chart, series) == NULL)
    return;
  series_push (chart, series, x, y, &no_stamp);
}

static double
stamp_x (const KiltChartStamp *at, KiltChartXMode mode)
{
  return mode == KILT_CHART_X_STEP ? at->step : mode == KILT_CHART_X_TIME ? at->seconds : at->epoch;
}

void
kilt_chart_append_at (KiltChart *chart, guint series, const KiltChartStamp *at, double y)
{
  Series *s = get_series (chart, series);
  StampedPoint p;

  if (s == NULL || at == NULL || isnan (y))
    return;
  p.at = *at;
  p.y = y;
  g_array_append_val (s->src, p);
  series_push (chart, series, stamp_x (at, chart->x_mode), y, at);
}

static void
series_reset (Series *s)
{
  g_array_set_size (s->x, 0);
  g_array_set_size (s->y, 0);
  g_array_set_size (s->v, 0);
  g_array_set_size (s->s, 0);
  g_array_set_size (s->at, 0);
  g_array_set_size (s->buckets, 0);
  s->width = 0;
  s->ema = 0;
  s->ema_pow = 1;
  s->reduced_valid = FALSE;
}

const char *
kilt_chart_x_mode_name (KiltChartXMode mode)
{
  return mode == KILT_CHART_X_STEP ? "Step" : mode == KILT_CHART_X_TIME ? "Time" : "Epoch";
}

void
kilt_chart_set_x_mode (KiltChart *chart, KiltChartXMode mode)
{
  g_return_if_fail (chart != NULL);
  g_return_if_fail ((guint)mode < KILT_CHART_N_X_MODES);
  chart->x_mode = mode;
  g_free (chart->x_label);
  chart->x_label = g_strdup (kilt_chart_x_mode_name (mode));
  chart->x_unit = mode == KILT_CHART_X_TIME ? KILT_AXIS_SECONDS : KILT_AXIS_NUMBER;
  /* A zoom on one axis means nothing on another. */
  chart->zoom_lo = chart->zoom_hi = NAN;
  /* In series order, so that a stacked area finds the one below already laid out. */
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);

      if (s->src->len == 0)
        continue;
      series_reset (s);
      s->origin = 0;
      for (guint j = 0; j < s->src->len; j++)
        {
          const StampedPoint *p = &g_array_index (s->src, StampedPoint, j);
          series_push (chart, i, stamp_x (&p->at, mode), p->y, &p->at);
        }
    }
  changed (chart);
}

KiltChartXMode
kilt_chart_get_x_mode (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, KILT_CHART_X_EPOCH);
  return chart->x_mode;
}

gboolean
kilt_chart_can_zoom (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, FALSE);
  if (chart->x_categories)
    return FALSE;
  for (guint i = 0; i < chart->series->len; i++)
    if (((Series *)g_ptr_array_index (chart->series, i))->kind == KILT_CHART_BAR)
      return FALSE;
  return TRUE;
}

void
kilt_chart_set_x_zoom (KiltChart *chart, double lo, double hi)
{
  g_return_if_fail (chart != NULL);
  if (!isfinite (lo) || !isfinite (hi) || hi <= lo || !kilt_chart_can_zoom (chart))
    lo = hi = NAN;
  if ((isnan (lo) && isnan (chart->zoom_lo)) || (lo == chart->zoom_lo && hi == chart->zoom_hi))
    return;
  chart->zoom_lo = lo;
  chart->zoom_hi = hi;
  for (guint i = 0; i < chart->series->len; i++)
    ((Series *)g_ptr_array_index (chart->series, i))->reduced_valid = FALSE;
  changed (chart);
}

gboolean
kilt_chart_get_x_zoom (KiltChart *chart, double *lo, double *hi)
{
  g_return_val_if_fail (chart != NULL, FALSE);
  if (lo)
    *lo = chart->zoom_lo;
  if (hi)
    *hi = chart->zoom_hi;
  return isfinite (chart->zoom_lo);
}

gboolean
kilt_chart_get_x_extent (KiltChart *chart, double *lo, double *hi)
{
  double a = INFINITY, b = -INFINITY;

  g_return_val_if_fail (chart != NULL, FALSE);
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      /* x never decreases within a series: its ends are its range. */
      if (!s->visible || s->x->len == 0)
        continue;
      a = MIN (a, AT (s->x, 0));
      b = MAX (b, AT (s->x, s->x->len - 1));
    }
  if (lo)
    *lo = a;
  if (hi)
    *hi = b;
  return isfinite (a);
}

void
kilt_chart_set_x_span (KiltChart *chart, double lo, double hi)
{
  g_return_if_fail (chart != NULL);
  if (!isfinite (lo) || !isfinite (hi))
    lo = hi = NAN;
  if ((isnan (lo) && isnan (chart->span_lo)) || (lo == chart->span_lo && hi == chart->span_hi))
    return;
  chart->span_lo = lo;
  chart->span_hi = hi;
  changed (chart);
}

void
kilt_chart_clear (KiltChart *chart)
{
  g_return_if_fail (chart != NULL);
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);

      series_reset (s);
      g_array_set_size (s->src, 0);
    }
  chart->zoom_lo = chart->zoom_hi = NAN;
  changed (chart);
}

gsize
kilt_chart_get_n_points (KiltChart *chart, guint series)
{
  Series *s = get_series (chart, series);
  return s ? s->x->len : 0;
}

static void
push_pair (GArray *a, double x, double y)
{
  g_array_append_val (a, x);
  g_array_append_val (a, y);
}

static void
reduce_buckets (Series *s, GArray *buckets)
{
  g_array_set_size (s->reduced, 0);
  g_array_set_size (s->reduced_s, 0);
  for (guint i = 0; i < buckets->len; i++)
    {
      const Bucket *b = &g_array_index (buckets, Bucket, i);

      if (b->x_ymin == b->x_ymax)
        push_pair (s->reduced, b->x_ymin, b->ymin);
      else if (b->x_ymin < b->x_ymax)
        push_pair (s->reduced, b->x_ymin, b->ymin), push_pair (s->reduced, b->x_ymax, b->ymax);
      else
        push_pair (s->reduced, b->x_ymax, b->ymax), push_pair (s->reduced, b->x_ymin, b->ymin);
      if (b->x_smin == b->x_smax)
        push_pair (s->reduced_s, b->x_smin, b->smin);
      else if (b->x_smin < b->x_smax)
        push_pair (s->reduced_s, b->x_smin, b->smin), push_pair (s->reduced_s, b->x_smax, b->smax);
      else
        push_pair (s->reduced_s, b->x_smax, b->smax), push_pair (s->reduced_s, b->x_smin, b->smin);
    }
}

/* The first index of @s whose x is above @x (@inclusive: at or above). */
static guint
series_bound (Series *s, double x, gboolean inclusive)
{
  guint lo = 0, hi = s->x->len;

  while (lo < hi)
    {
      guint mid = (lo + hi) / 2;
      if (inclusive ? AT (s->x, mid) < x : AT (s->x, mid) <= x)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}

/* Zoomed: the points inside the range (and one on each side, so lines run to the edges) in
 * columns of the range's own width, at full detail however long the run. */
static void
series_reduce_zoomed (KiltChart *chart, Series *s)
{
  double lo = chart->zoom_lo, hi = chart->zoom_hi;
  double width = (hi - lo) / MAX (chart->columns, 1);
  guint first = series_bound (s, lo, TRUE), end = series_bound (s, hi, FALSE);
  g_autoptr (GArray) buckets = g_array_new (FALSE, FALSE, sizeof (Bucket));

  if (first > 0)
    first--;
  if (end < s->x->len)
    end++;
  for (guint i = first; i < end; i++)
    {
      double x = AT (s->x, i);
      gint64 index = (gint64)floor ((x - lo) / width);
      Bucket *last = buckets->len ? &g_array_index (buckets, Bucket, buckets->len - 1) : NULL;

      /* The neighbours outside keep columns of their own. */
      index = x < lo ? -1 : x > hi ? G_MAXINT64 : index;
      if (last && last->index == index)
        bucket_add (last, x, AT (s->v, i), AT (s->s, i));
      else
        {
          Bucket b;
          bucket_init (&b, index, x, AT (s->v, i), AT (s->s, i));
          g_array_append_val (buckets, b);
        }
    }
  reduce_buckets (s, buckets);
}

static void
series_reduce (KiltChart *chart, Series *s)
{
  if (s->reduced_valid)
    return;
  if (isfinite (chart->zoom_lo) && s->kind != KILT_CHART_BAR)
    series_reduce_zoomed (chart, s);
  else
    reduce_buckets (s, s->buckets);
  s->reduced_valid = TRUE;
}

const double *
kilt_chart_get_reduced (KiltChart *chart, guint series, gsize *n_points)
{
  Series *s = get_series (chart, series);

  if (s == NULL)
    {
      if (n_points)
        *n_points = 0;
      return NULL;
    }
  series_reduce (chart, s);
  if (n_points)
    *n_points = s->reduced->len / 2;
  return (const double *)(void *)s->reduced->data;
}

guint64
kilt_chart_get_serial (KiltChart *chart)
{
  g_return_val_if_fail (chart != NULL, 0);
  return chart->serial;
}

/* ---- layout -------------------------------------------------------------------------- */

static void
set_font (cairo_t *cr, double size, gboolean bold)
{
  cairo_select_font_face (cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL,
                          bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, size);
}

static double
text_width (cairo_t *cr, const char *text)
{
  cairo_text_extents_t e;

  cairo_text_extents (cr, text, &e);
  return e.x_advance;
}

/* @text, shortened at a character boundary with "…" until it is at most @max_width wide. */
static char *
fit_text (cairo_t *cr, const char *text, double max_width)
{
  glong n = g_utf8_strlen (text, -1);

  if (text_width (cr, text) <= max_width)
    return g_strdup (text);
  while (n-- > 1)
    {
      g_autofree char *head = g_utf8_substring (text, 0, n);
      char *s = g_strconcat (head, "…", NULL);
      if (text_width (cr, s) <= max_width)
        return s;
      g_free (s);
    }
  return g_strdup ("…");
}

static gint
compare_doubles (gconstpointer a, gconstpointer b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static gboolean
series_has_points (Series *s)
{
  return s->visible && s->x->len > 0;
}

static double
y_map_value (KiltChart *chart, double v)
{
  if (!chart->log_y)
    return v;
  return v > 0 ? log10 (v) : NAN;
}

static void
compute_ranges (KiltChart *chart, Layout *l)
{
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  gboolean zero = FALSE, bars = FALSE, marked = FALSE;
  gboolean zoomed = isfinite (chart->zoom_lo);
  double bar_gap = INFINITY;
  g_autoptr (GArray) bar_x = g_array_new (FALSE, FALSE, sizeof (double));

  l->bars_share_x = FALSE;
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);

      if (!series_has_points (s))
        continue;
      series_reduce (chart, s);
      if (s->kind != KILT_CHART_LINE)
        zero = TRUE;
      marked |= s->points;
      if (s->kind == KILT_CHART_BAR)
        {
          bars = TRUE;
          for (guint j = 0; j < s->buckets->len; j++)
            g_array_append_val (bar_x, g_array_index (s->buckets, Bucket, j).x_first);
        }
      /* The columns hold where their extremes were: the first and last x are the range. */
      xlo = MIN (xlo, AT (s->x, 0)), xhi = MAX (xhi, AT (s->x, s->x->len - 1));
      for (guint j = 0; j < s->reduced->len / 2; j++)
        {
          double x = AT (s->reduced, 2 * j);
          double v = y_map_value (chart, AT (s->reduced, 2 * j + 1));
          double sv
              = y_map_value (chart, AT (s->reduced_s, MIN (2 * j + 1, s->reduced_s->len - 1)));

          xlo = MIN (xlo, x), xhi = MAX (xhi, x);
          /* Zoomed, y fits what is inside the range. */
          if (zoomed && (x < chart->zoom_lo || x > chart->zoom_hi))
            continue;
          if (isfinite (v))
            ylo = MIN (ylo, v), yhi = MAX (yhi, v);
          if (isfinite (sv))
            ylo = MIN (ylo, sv), yhi = MAX (yhi, sv);
        }
    }
  /* One spacing for every bar series, from all their x values together: a series with a
   * single bar (a run of one epoch) must not size its bar by the whole plot and push it off
   * the chart. Categories are one apart whatever is drawn. */
  g_array_sort (bar_x, compare_doubles);
  for (guint j = 1; j < bar_x->len; j++)
    {
      double d = g_array_index (bar_x, double, j) - g_array_index (bar_x, double, j - 1);
      if (d > 1e-9)
        bar_gap = MIN (bar_gap, d);
      else
        l->bars_share_x = TRUE;
    }
  if (chart->x_categories)
    bar_gap = 1;
  l->bar_gap = isfinite (bar_gap) ? bar_gap : 1;
  l->empty = !isfinite (xlo);
  /* A marker far above the data (a 5 GiB device running a 10 MiB model) would flatten the
   * series into the axis: it then stays off the scale and is only named at the top. */
  l->marker_above = FALSE;
  if (chart->has_marker && isfinite (y_map_value (chart, chart->marker)))
    {
      double m = y_map_value (chart, chart->marker);
      if (chart->log_y || !isfinite (yhi) || yhi >= m / 4)
        ylo = MIN (ylo, m), yhi = MAX (yhi, m);
      else
        l->marker_above = TRUE;
    }
  if (!isfinite (xlo))
    xlo = 0, xhi = 1;
  if (zoomed && !l->empty)
    xlo = chart->zoom_lo, xhi = chart->zoom_hi;
  else if (isfinite (chart->span_lo) && !l->empty)
    {
      /* Charts of one page line up: the shared span, no padding of their own. */
      xlo = MIN (xlo, chart->span_lo), xhi = MAX (xhi, chart->span_hi);
    }
  else if (bars)
    {
      double half = l->bar_gap / 2;
      xlo -= half, xhi += half;
    }
  else if (marked && isfinite (xlo) && xhi > xlo && !chart->x_categories)
    {
      /* Marked points at the ends would be cut in half by the plot's edge. */
      double pad = (xhi - xlo) * 0.02;
      xlo -= pad, xhi += pad;
    }
  else if (chart->x_categories && isfinite (xlo))
    xlo -= 0.5, xhi += 0.5;
  /* A lone x (the first validation point) stands in the middle, not on the clipped edge. */
  if (xhi <= xlo)
    xlo -= 0.5, xhi = xlo + 1;
  if (!isfinite (ylo))
    ylo = 0, yhi = chart->log_y ? 1 : 1;
  if (zero && !chart->log_y)
    ylo = MIN (ylo, 0), yhi = MAX (yhi, 0);
  if (isfinite (chart->y_min))
    ylo = y_map_value (chart, chart->y_min);
  if (isfinite (chart->y_max))
    yhi = y_map_value (chart, chart->y_max);
  if (!isfinite (ylo) || !isfinite (yhi))
    ylo = 0, yhi = 1;
  l->x_lo = xlo;
  l->x_hi = xhi;
  l->y_lo = ylo;
  l->y_hi = yhi;
}

#define LEGEND_ROW (LABEL_SIZE + 7)

static guint legend_walk (KiltChart *chart, cairo_t *cr, double width, double top, gboolean draw);

static void
compute_layout (KiltChart *chart, cairo_t *cr, double width, double height, Layout *l)
{
  double top = PAD, left = PAD, bottom = PAD, right = PAD + 6;
  double max_label = 0;
  guint y_ticks;

  l->x_rows = 1;
  compute_ranges (chart, l);
  if (chart->title && *chart->title)
    top += TITLE_SIZE + 6;
  l->legend_y = top;
  if (chart->series->len > 0)
    top += legend_walk (chart, cr, width, top, FALSE) * LEGEND_ROW + 3;
  top += 4;
  bottom += LABEL_SIZE + 8;
  if (chart->x_label && *chart->x_label)
    bottom += LABEL_SIZE + 6;

  y_ticks = (guint)CLAMP ((height - top - bottom) / 40, 2, 10);
  if (chart->log_y)
    {
      double lo = floor (l->y_lo), hi = ceil (l->y_hi);
      if (hi <= lo)
        hi = lo + 1;
      l->y_lo = lo, l->y_hi = hi;
      l->y_step = MAX (1, ceil ((hi - lo) / y_ticks));
    }
  else
    {
      double lo, hi;
      l->y_step = kilt_chart_nice_step (l->y_lo, l->y_hi, y_ticks, chart->y_unit, &lo, &hi);
      if (!isfinite (chart->y_min))
        l->y_lo = lo;
      if (!isfinite (chart->y_max))
        l->y_hi = hi;
    }

  set_font (cr, LABEL_SIZE, FALSE);
  for (double t = ceil (l->y_lo / l->y_step - 1e-9) * l->y_step; t <= l->y_hi + l->y_step * 1e-6;
       t += l->y_step)
    {
      g_autofree char *s = chart->log_y
                               ? kilt_chart_format_value (pow (10, t), pow (10, t), chart->y_unit)
                               : kilt_chart_format_value (t, l->y_step, chart->y_unit);
      max_label = MAX (max_label, text_width (cr, s));
    }
  left += max_label + 8;
  if (chart->y_label && *chart->y_label)
    left += LABEL_SIZE + 6;

  l->plot.x = left;
  l->plot.y = top;
  l->plot.width = MAX (width - left - right, 10);
  l->plot.height = MAX (height - top - bottom, 10);
  l->x_step = kilt_chart_nice_step (l->x_lo, l->x_hi, (guint)CLAMP (l->plot.width / 90, 2, 12),
                                    chart->x_unit, NULL, NULL);
  if (chart->x_categories)
    {
      /* Every name when they fit side by side, else every second, third ... */
      double widest = 0, per_unit = l->plot.width / (l->x_hi - l->x_lo);
      for (guint i = 0; chart->x_categories[i]; i++)
        widest = MAX (widest, text_width (cr, chart->x_categories[i]));
      l->x_step = MAX (1, ceil ((widest + 8) / MAX (per_unit, 1)));
      /* Two lines, every other name a line lower, show them all where one line shows half. */
      if (l->x_step == 2)
        {
          l->x_step = 1;
          l->x_rows = 2;
          l->plot.height = MAX (l->plot.height - (LABEL_SIZE + 4), 10);
        }
    }
}

static double
map_x (const Layout *l, double x)
{
  return l->plot.x + (x - l->x_lo) / (l->x_hi - l->x_lo) * l->plot.width;
}

static double
map_y (KiltChart *chart, const Layout *l, double y)
{
  double v = y_map_value (chart, y);
  return l->plot.y + l->plot.height - (v - l->y_lo) / (l->y_hi - l->y_lo) * l->plot.height;
}

static cairo_t *
measuring_context (void)
{
  cairo_surface_t *surface = cairo_image_surface_create (CAIRO_FORMAT_A8, 1, 1);
  cairo_t *cr = cairo_create (surface);

  cairo_surface_destroy (surface);
  return cr;
}

void
kilt_chart_get_plot_area (KiltChart *chart, double width, double height, cairo_rectangle_t *area)
{
  cairo_t *cr = measuring_context ();
  Layout l;

  compute_layout (chart, cr, width, height, &l);
  *area = l.plot;
  cairo_destroy (cr);
}

double
kilt_chart_pixel_to_x (KiltChart *chart, double width, double height, double px)
{
  cairo_t *cr = measuring_context ();
  Layout l;

  g_return_val_if_fail (chart != NULL, NAN);
  compute_layout (chart, cr, width, height, &l);
  cairo_destroy (cr);
  return l.x_lo + (px - l.plot.x) / l.plot.width * (l.x_hi - l.x_lo);
}

double
kilt_chart_x_to_pixel (KiltChart *chart, double width, double height, double x)
{
  cairo_t *cr = measuring_context ();
  Layout l;

  g_return_val_if_fail (chart != NULL, NAN);
  compute_layout (chart, cr, width, height, &l);
  cairo_destroy (cr);
  return map_x (&l, x);
}

/* ---- drawing ------------------------------------------------------------------------- */

static void
set_fg (cairo_t *cr, KiltChart *chart, double alpha)
{
  cairo_set_source_rgba (cr, chart->fg[0], chart->fg[1], chart->fg[2], alpha);
}

static void
draw_axes (KiltChart *chart, cairo_t *cr, const Layout *l)
{
  const cairo_rectangle_t *p = &l->plot;
  cairo_text_extents_t e;

  set_font (cr, LABEL_SIZE, FALSE);
  cairo_set_line_width (cr, 1);

  /* Horizontal grid lines with y labels. */
  for (double t = ceil (l->y_lo / l->y_step - 1e-9) * l->y_step; t <= l->y_hi + l->y_step * 1e-6;
       t += l->y_step)
    {
      double y = round (p->y + p->height - (t - l->y_lo) / (l->y_hi - l->y_lo) * p->height) + 0.5;
      g_autofree char *s = chart->log_y
                               ? kilt_chart_format_value (pow (10, t), pow (10, t), chart->y_unit)
                               : kilt_chart_format_value (t, l->y_step, chart->y_unit);

      set_fg (cr, chart, 0.12);
      cairo_move_to (cr, p->x, y);
      cairo_line_to (cr, p->x + p->width, y);
      cairo_stroke (cr);
      set_fg (cr, chart, 0.75);
      cairo_text_extents (cr, s, &e);
      cairo_move_to (cr, p->x - 6 - e.x_advance, y + LABEL_SIZE * 0.35);
      cairo_show_text (cr, s);
    }

  /* x ticks below the plot. */
  for (double t = ceil (l->x_lo / l->x_step - 1e-9) * l->x_step; t <= l->x_hi + l->x_step * 1e-6;
       t += l->x_step)
    {
      double x = round (map_x (l, t)) + 0.5;
      const char *name = category_at (chart, t);
      g_autofree char *s = chart->x_categories
                               ? g_strdup (name ? name : "")
                               : kilt_chart_format_value (t, l->x_step, chart->x_unit);

      set_fg (cr, chart, 0.06);
      cairo_move_to (cr, x, p->y);
      cairo_line_to (cr, x, p->y + p->height);
      cairo_stroke (cr);
      set_fg (cr, chart, 0.4);
      cairo_move_to (cr, x, p->y + p->height);
      cairo_line_to (cr, x, p->y + p->height + 4);
      cairo_stroke (cr);
      set_fg (cr, chart, 0.75);
      cairo_text_extents (cr, s, &e);
      cairo_move_to (cr, CLAMP (x - e.x_advance / 2, 0, p->x + p->width + PAD - e.x_advance),
                     p->y + p->height + 6 + LABEL_SIZE
                         + (l->x_rows > 1 && ((gint64)round (t)) % 2 ? LABEL_SIZE + 4 : 0));
      cairo_show_text (cr, s);
    }

  /* The axis lines. */
  set_fg (cr, chart, 0.4);
  cairo_move_to (cr, round (p->x) + 0.5, p->y);
  cairo_line_to (cr, round (p->x) + 0.5, p->y + p->height);
  cairo_line_to (cr, p->x + p->width, round (p->y + p->height) + 0.5);
  cairo_stroke (cr);

  set_fg (cr, chart, 0.75);
  if (chart->x_label && *chart->x_label)
    {
      cairo_text_extents (cr, chart->x_label, &e);
      cairo_move_to (cr, p->x + (p->width - e.x_advance) / 2,
                     p->y + p->height + 12 + 2 * LABEL_SIZE + (l->x_rows - 1) * (LABEL_SIZE + 4));
      cairo_show_text (cr, chart->x_label);
    }
  if (chart->y_label && *chart->y_label)
    {
      cairo_text_extents (cr, chart->y_label, &e);
      cairo_save (cr);
      cairo_move_to (cr, PAD + LABEL_SIZE, p->y + (p->height + e.x_advance) / 2);
      cairo_rotate (cr, -G_PI / 2);
      cairo_show_text (cr, chart->y_label);
      cairo_restore (cr);
    }
}

/* With no points there is no scale to show: only the plot's outline, no made-up ticks. */
static void
draw_frame (KiltChart *chart, cairo_t *cr, const Layout *l)
{
  const cairo_rectangle_t *p = &l->plot;

  set_fg (cr, chart, 0.4);
  cairo_set_line_width (cr, 1);
  cairo_move_to (cr, round (p->x) + 0.5, p->y);
  cairo_line_to (cr, round (p->x) + 0.5, p->y + p->height);
  cairo_line_to (cr, p->x + p->width, round (p->y + p->height) + 0.5);
  cairo_stroke (cr);
}

/* Lays the legend out in rows that fit @width, drawing it when @cr_draw; returns the rows. */
static guint
legend_walk (KiltChart *chart, cairo_t *cr, double width, double top, gboolean draw)
{
  double x = PAD + 2;
  guint rows = chart->series->len ? 1 : 0;

  set_font (cr, LABEL_SIZE, FALSE);
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      /* A name wider than the chart is shortened with an ellipsis, never cut at the edge. */
      g_autofree char *name = fit_text (cr, s->name, width - 2 * PAD - 4 - 19);
      double w = 14 + 5 + text_width (cr, name);
      double cy;

      if (x + w > width - PAD && x > PAD + 2)
        {
          x = PAD + 2;
          rows++;
        }
      cy = top + (rows - 1) * LEGEND_ROW + LABEL_SIZE / 2 + 2;
      if (draw)
        {
          cairo_set_source_rgba (cr, s->rgb[0], s->rgb[1], s->rgb[2], s->visible ? 1 : 0.3);
          if (s->kind == KILT_CHART_LINE)
            {
              cairo_set_line_width (cr, 2.5);
              cairo_move_to (cr, x, cy);
              cairo_line_to (cr, x + 14, cy);
              cairo_stroke (cr);
            }
          else
            {
              cairo_rectangle (cr, x + 1, cy - 5, 12, 10);
              cairo_fill (cr);
            }
          set_fg (cr, chart, s->visible ? 0.85 : 0.35);
          cairo_move_to (cr, x + 19, cy + LABEL_SIZE * 0.35);
          cairo_show_text (cr, name);
        }
      x += w + 16;
    }
  return rows;
}

static void
draw_title_and_legend (KiltChart *chart, cairo_t *cr, const Layout *l, double width)
{
  if (chart->title && *chart->title)
    {
      set_font (cr, TITLE_SIZE, TRUE);
      set_fg (cr, chart, 1);
      cairo_move_to (cr, PAD + 2, PAD + TITLE_SIZE);
      cairo_show_text (cr, chart->title);
    }
  legend_walk (chart, cr, width, l->legend_y, TRUE);
}

static void
path_line (KiltChart *chart, cairo_t *cr, const Layout *l, GArray *pts)
{
  gboolean pen = FALSE;

  for (guint j = 0; j < pts->len / 2; j++)
    {
      double y = map_y (chart, l, AT (pts, 2 * j + 1));
      double x = map_x (l, AT (pts, 2 * j));

      if (!isfinite (y))
        {
          pen = FALSE;
          continue;
        }
      if (pen)
        cairo_line_to (cr, x, y);
      else
        cairo_move_to (cr, x, y);
      pen = TRUE;
    }
  if (pts->len == 2 && pen)
    {
      /* A single point: a dot, so the first step of a run is visible. */
      double x = map_x (l, AT (pts, 0)), y = map_y (chart, l, AT (pts, 1));
      cairo_new_path (cr);
      cairo_arc (cr, x, y, 4, 0, 2 * G_PI);
      cairo_fill (cr);
    }
}

static void
draw_series (KiltChart *chart, cairo_t *cr, const Layout *l)
{
  guint n_bars = 0, bar_i = 0;
  double base = map_y (chart, l, chart->log_y ? pow (10, l->y_lo) : MAX (l->y_lo, 0));

  if (!chart->log_y && l->y_lo > 0)
    base = l->plot.y + l->plot.height;
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      n_bars += series_has_points (s) && s->kind == KILT_CHART_BAR;
    }

  cairo_save (cr);
  cairo_rectangle (cr, l->plot.x, l->plot.y - 1, l->plot.width + 1, l->plot.height + 2);
  cairo_clip (cr);

  /* Areas from the top of the stack down, each filled to the baseline. */
  for (guint i = chart->series->len; i-- > 0;)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      GArray *r;

      if (!series_has_points (s) || s->kind != KILT_CHART_AREA)
        continue;
      series_reduce (chart, s);
      r = s->reduced;
      cairo_move_to (cr, map_x (l, AT (r, 0)), base);
      for (guint j = 0; j < r->len / 2; j++)
        {
          double y = map_y (chart, l, AT (r, 2 * j + 1));
          cairo_line_to (cr, map_x (l, AT (r, 2 * j)), isfinite (y) ? y : base);
        }
      cairo_line_to (cr, map_x (l, AT (r, r->len - 2)), base);
      cairo_close_path (cr);
      cairo_set_source_rgba (cr, s->rgb[0], s->rgb[1], s->rgb[2], 0.85);
      cairo_fill (cr);
    }

  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      double slot, bw;

      if (!series_has_points (s) || s->kind != KILT_CHART_BAR)
        continue;
      series_reduce (chart, s);
      slot = l->bar_gap / (l->x_hi - l->x_lo) * l->plot.width;
      /* Bars of different series at different x (a bar per run) stand alone and centred;
       * bars sharing an x stand side by side in a group. */
      bw = l->bars_share_x ? slot * 0.75 / n_bars : slot * 0.6;
      cairo_set_source_rgb (cr, s->rgb[0], s->rgb[1], s->rgb[2]);
      for (guint j = 0; j < s->buckets->len; j++)
        {
          const Bucket *b = &g_array_index (s->buckets, Bucket, j);
          double x = l->bars_share_x ? map_x (l, b->x_first) - slot * 0.375 + bar_i * bw
                                     : map_x (l, b->x_first) - bw / 2;
          double y = map_y (chart, l, b->ymax);

          if (isfinite (y))
            cairo_rectangle (cr, x, MIN (y, base), MAX (bw - 1, 1), fabs (base - y));
        }
      cairo_fill (cr);
      bar_i++;
    }

  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);

      if (!series_has_points (s) || s->kind != KILT_CHART_LINE)
        continue;
      series_reduce (chart, s);
      if (s->points)
        {
          /* Measured points: the line between them, and a dot on each (while they are few
           * enough to tell apart). */
          cairo_set_source_rgb (cr, s->rgb[0], s->rgb[1], s->rgb[2]);
          cairo_set_line_width (cr, 2);
          path_line (chart, cr, l, s->reduced);
          cairo_stroke (cr);
          guint first = 0, end = s->x->len;
          if (isfinite (chart->zoom_lo))
            first = series_bound (s, chart->zoom_lo, TRUE),
            end = series_bound (s, chart->zoom_hi, FALSE);
          if (end - first <= l->plot.width / 8)
            for (guint j = first; j < end; j++)
              {
                double x = map_x (l, AT (s->x, j)), y = map_y (chart, l, AT (s->v, j));
                if (!isfinite (y))
                  continue;
                cairo_new_sub_path (cr);
                cairo_arc (cr, x, y, 3.5, 0, 2 * G_PI);
              }
          cairo_fill (cr);
        }
      else if (chart->smoothing > 0)
        {
          cairo_set_source_rgba (cr, s->rgb[0], s->rgb[1], s->rgb[2], 0.25);
          cairo_set_line_width (cr, 1.2);
          path_line (chart, cr, l, s->reduced);
          cairo_stroke (cr);
          cairo_set_source_rgb (cr, s->rgb[0], s->rgb[1], s->rgb[2]);
          cairo_set_line_width (cr, 2);
          path_line (chart, cr, l, s->reduced_s);
          cairo_stroke (cr);
        }
      else
        {
          cairo_set_source_rgb (cr, s->rgb[0], s->rgb[1], s->rgb[2]);
          cairo_set_line_width (cr, 2);
          path_line (chart, cr, l, s->reduced);
          cairo_stroke (cr);
        }
    }
  cairo_restore (cr);

  if (chart->has_marker && l->marker_above && chart->marker_label)
    {
      g_autofree char *text = g_strconcat (chart->marker_label, " ↑", NULL);
      cairo_text_extents_t e;

      set_font (cr, LABEL_SIZE, FALSE);
      cairo_text_extents (cr, text, &e);
      set_fg (cr, chart, 0.7);
      /* Beside the title, out of the series' way. */
      cairo_move_to (cr, l->plot.x + l->plot.width - e.x_advance, PAD + TITLE_SIZE);
      cairo_show_text (cr, text);
    }
  else if (chart->has_marker)
    {
      double y = map_y (chart, l, chart->marker);

      if (isfinite (y))
        {
          double dash[] = { 6, 4 };
          cairo_save (cr);
          cairo_set_dash (cr, dash, 2, 0);
          cairo_set_line_width (cr, 1.5);
          set_fg (cr, chart, 0.7);
          cairo_move_to (cr, l->plot.x, round (y) + 0.5);
          cairo_line_to (cr, l->plot.x + l->plot.width, round (y) + 0.5);
          cairo_stroke (cr);
          cairo_restore (cr);
          if (chart->marker_label)
            {
              cairo_text_extents_t e;
              set_font (cr, LABEL_SIZE, FALSE);
              cairo_text_extents (cr, chart->marker_label, &e);
              set_fg (cr, chart, 0.8);
              cairo_move_to (cr, l->plot.x + l->plot.width - e.x_advance - 4,
                             y < l->plot.y + LABEL_SIZE + 4 ? y + LABEL_SIZE + 3 : y - 4);
              cairo_show_text (cr, chart->marker_label);
            }
        }
    }
}

/* Index of the raw point of @s nearest to @x. */
static guint
nearest_index (Series *s, double x)
{
  guint lo = 0, hi = s->x->len;

  while (hi - lo > 1)
    {
      guint mid = (lo + hi) / 2;
      if (AT (s->x, mid) <= x)
        lo = mid;
      else
        hi = mid;
    }
  if (lo + 1 < s->x->len && fabs (AT (s->x, lo + 1) - x) < fabs (AT (s->x, lo) - x))
    lo++;
  return lo;
}

static double
hover_data_x (const Layout *l, double hover_x)
{
  return l->x_lo + (hover_x - l->plot.x) / l->plot.width * (l->x_hi - l->x_lo);
}

static double
series_shown_at (KiltChart *chart, Series *s, guint k)
{
  return s->kind == KILT_CHART_LINE && chart->smoothing > 0 ? AT (s->s, k) : AT (s->y, k);
}

/* "Step 1,234 · Epoch 2.47 · Time 0:53": where a stamped point was measured. */
static char *
describe_stamp (const KiltChartStamp *at)
{
  GString *t = g_string_new (NULL);

  if (isfinite (at->step))
    {
      g_autofree char *digits = g_strdup_printf ("%.0f", at->step);
      glong n = (glong)strlen (digits);
      g_string_append (t, "Step ");
      for (glong i = 0; i < n; i++)
        {
          if (i > 0 && digits[i - 1] != '-' && (n - i) % 3 == 0)
            g_string_append_c (t, ',');
          g_string_append_c (t, digits[i]);
        }
    }
  if (isfinite (at->epoch))
    g_string_append_printf (t, "%sEpoch %.2f", t->len ? " · " : "", at->epoch);
  if (isfinite (at->seconds))
    {
      /* Tenths while short ("7.5 s"), then 1:02 and 1:02:03. */
      g_autofree char *time
          = kilt_chart_format_value (at->seconds, at->seconds < 60 ? 0.1 : 1, KILT_AXIS_SECONDS);
      g_string_append_printf (t, "%sTime %s", t->len ? " · " : "", time);
    }
  return g_string_free (t, t->len == 0);
}

static char *
hover_lines (KiltChart *chart, const Layout *l, double hover_x, GPtrArray *lines, double *xs)
{
  double dx = hover_data_x (l, hover_x);
  double best = INFINITY;
  const KiltChartStamp *best_at = NULL;
  /* Four pixels, in x units: dense series have a point that close to any x. */
  double near = 4 * (l->x_hi - l->x_lo) / MAX (l->plot.width, 1);
  g_autofree char *xt = NULL;
  GString *all = g_string_new (NULL);

  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      guint k;

      if (!series_has_points (s))
        continue;
      k = nearest_index (s, dx);
      if (fabs (AT (s->x, k) - dx) < fabs (best - dx))
        {
          best = AT (s->x, k);
          best_at = &g_array_index (s->at, KiltChartStamp, k);
        }
    }
  if (!isfinite (best))
    return g_string_free (all, TRUE), NULL;
  *xs = best;
  xt = category_at (chart, best) ? g_strdup (category_at (chart, best))
                                 : kilt_chart_format_value (best, l->x_step / 10, chart->x_unit);
  {
    g_autofree char *stamp = best_at ? describe_stamp (best_at) : NULL;
    if (stamp)
      g_string_append (all, stamp);
    else
      g_string_append_printf (all, "%s %s", chart->x_label ? chart->x_label : "x", xt);
  }
  g_ptr_array_add (lines, g_strdup (all->str));
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      g_autofree char *vt = NULL;
      double v, step;
      guint k;

      if (!series_has_points (s))
        continue;
      k = nearest_index (s, best);
      /* A series with no point at this x (validation between epochs) says nothing here,
       * rather than a value it did not measure. */
      if (fabs (AT (s->x, k) - best) > near)
        continue;
      v = series_shown_at (chart, s, k);
      step = chart->log_y ? fabs (v) / 100 : l->y_step / 100;
      /* Bytes in the unit of the value itself: 400 KiB under a 100 MiB scale, not "0 MiB". */
      if (chart->y_unit == KILT_AXIS_BYTES)
        step = fabs (AT (s->y, k)) > 0 ? fabs (AT (s->y, k)) / 10 : l->y_step / 10;
      vt = kilt_chart_format_value (v, step, chart->y_unit);
      if (s->kind == KILT_CHART_LINE && !s->points && chart->smoothing > 0)
        {
          /* Smoothed, and what was measured there. */
          g_autofree char *raw = kilt_chart_format_value (AT (s->y, k), step, chart->y_unit);
          char *both = g_strdup_printf ("%s (raw %s)", vt, raw);
          g_free (vt);
          vt = both;
        }
      g_ptr_array_add (lines, g_strdup_printf ("%s: %s", s->name, vt));
      g_string_append_printf (all, ", %s %s", s->name, vt);
    }
  return g_string_free (all, FALSE);
}

static void
draw_hover (KiltChart *chart, cairo_t *cr, const Layout *l, double hover_x, double width)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *all = NULL;
  double xs = 0, px, box_w = 0, box_h, bx, by;
  guint line = 1;

  if (hover_x < l->plot.x || hover_x > l->plot.x + l->plot.width || l->empty)
    return;
  all = hover_lines (chart, l, hover_x, lines, &xs);
  if (all == NULL)
    return;
  px = round (map_x (l, xs)) + 0.5;
  set_fg (cr, chart, 0.5);
  cairo_set_line_width (cr, 1);
  cairo_move_to (cr, px, l->plot.y);
  cairo_line_to (cr, px, l->plot.y + l->plot.height);
  cairo_stroke (cr);

  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      double y;
      guint k;

      if (!series_has_points (s))
        continue;
      k = nearest_index (s, xs);
      if (fabs (AT (s->x, k) - xs) > 4 * (l->x_hi - l->x_lo) / MAX (l->plot.width, 1))
        continue;
      y = map_y (chart, l,
                 s->kind == KILT_CHART_LINE && chart->smoothing > 0 ? AT (s->s, k) : AT (s->v, k));
      if (!isfinite (y))
        continue;
      cairo_arc (cr, px, y, 4, 0, 2 * G_PI);
      cairo_set_source_rgb (cr, chart->bg[3] > 0.5 ? chart->bg[0] : 1 - chart->fg[0],
                            chart->bg[3] > 0.5 ? chart->bg[1] : 1 - chart->fg[1],
                            chart->bg[3] > 0.5 ? chart->bg[2] : 1 - chart->fg[2]);
      cairo_fill_preserve (cr);
      cairo_set_source_rgb (cr, s->rgb[0], s->rgb[1], s->rgb[2]);
      cairo_set_line_width (cr, 2);
      cairo_stroke (cr);
    }

  /* The first line is drawn bold: measured so. */
  set_font (cr, LABEL_SIZE, TRUE);
  box_w = text_width (cr, g_ptr_array_index (lines, 0));
  set_font (cr, LABEL_SIZE, FALSE);
  for (guint i = 1; i < lines->len; i++)
    box_w = MAX (box_w, text_width (cr, g_ptr_array_index (lines, i)) + 16);
  box_w += 16;
  box_h = lines->len * (LABEL_SIZE + 5) + 10;
  bx = px + 12;
  if (bx + box_w > width - 2)
    bx = px - 12 - box_w;
  by = l->plot.y + 6;

  cairo_rectangle (cr, bx, by, box_w, box_h);
  cairo_set_source_rgba (cr, 1 - chart->fg[0], 1 - chart->fg[1], 1 - chart->fg[2], 0.94);
  cairo_fill_preserve (cr);
  set_fg (cr, chart, 0.3);
  cairo_set_line_width (cr, 1);
  cairo_stroke (cr);

  set_font (cr, LABEL_SIZE, TRUE);
  set_fg (cr, chart, 1);
  cairo_move_to (cr, bx + 8, by + 5 + LABEL_SIZE);
  cairo_show_text (cr, g_ptr_array_index (lines, 0));
  set_font (cr, LABEL_SIZE, FALSE);
  for (guint i = 0; i < chart->series->len; i++)
    {
      Series *s = g_ptr_array_index (chart->series, i);
      double ty = by + 5 + (line + 1) * (LABEL_SIZE + 5) - 5;

      if (!series_has_points (s)
          || fabs (AT (s->x, nearest_index (s, xs)) - xs)
                 > 4 * (l->x_hi - l->x_lo) / MAX (l->plot.width, 1)
          || line >= lines->len)
        continue;
      cairo_set_source_rgb (cr, s->rgb[0], s->rgb[1], s->rgb[2]);
      cairo_arc (cr, bx + 12, ty - LABEL_SIZE * 0.35, 4, 0, 2 * G_PI);
      cairo_fill (cr);
      set_fg (cr, chart, 0.9);
      cairo_move_to (cr, bx + 22, ty);
      cairo_show_text (cr, g_ptr_array_index (lines, line));
      line++;
    }
}

void
kilt_chart_draw (KiltChart *chart, cairo_t *cr, double width, double height, double hover_x)
{
  Layout l;

  g_return_if_fail (chart != NULL && cr != NULL);
  cairo_save (cr);
  if (chart->bg[3] > 0)
    {
      cairo_set_source_rgba (cr, chart->bg[0], chart->bg[1], chart->bg[2], chart->bg[3]);
      cairo_rectangle (cr, 0, 0, width, height);
      cairo_fill (cr);
    }
  compute_layout (chart, cr, width, height, &l);
  draw_title_and_legend (chart, cr, &l, width);
  if (l.empty)
    draw_frame (chart, cr, &l);
  else
    draw_axes (chart, cr, &l);
  if (l.empty)
    {
      if (chart->empty_text)
        {
          cairo_text_extents_t e;
          set_font (cr, LABEL_SIZE + 1, FALSE);
          cairo_text_extents (cr, chart->empty_text, &e);
          set_fg (cr, chart, 0.55);
          cairo_move_to (cr, l.plot.x + (l.plot.width - e.x_advance) / 2,
                         l.plot.y + l.plot.height / 2);
          cairo_show_text (cr, chart->empty_text);
        }
    }
  else
    draw_series (chart, cr, &l);
  if (hover_x >= 0)
    draw_hover (chart, cr, &l, hover_x, width);
  cairo_restore (cr);
}

char *
kilt_chart_describe_at (KiltChart *chart, double width, double height, double hover_x)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  cairo_t *cr = measuring_context ();
  double xs;
  char *text;
  Layout l;

  compute_layout (chart, cr, width, height, &l);
  cairo_destroy (cr);
  if (l.empty)
    return NULL;
  text = hover_lines (chart, &l, CLAMP (hover_x, l.plot.x, l.plot.x + l.plot.width), lines, &xs);
  return text;
}

/* ---- files --------------------------------------------------------------------------- */

typedef struct
{
  int fd;
  int err;
} WriteTarget;

static cairo_status_t
write_all (void *closure, const unsigned char *data, unsigned int length)
{
  WriteTarget *t = closure;

  while (length > 0)
    {
      ssize_t n = write (t->fd, data, length);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          t->err = errno;
          return CAIRO_STATUS_WRITE_ERROR;
        }
      data += n;
      length -= (unsigned int)n;
    }
  return CAIRO_STATUS_SUCCESS;
}

gboolean
kilt_chart_save (KiltChart *chart, const char *path, int width, int height, GError **error)
{
  g_autofree char *lower = NULL;
  g_autofree char *tmp = NULL;
  cairo_surface_t *surface = NULL;
  cairo_status_t status;
  double saved_fg[3], saved_bg[4];
  WriteTarget t = { -1, 0 };
  enum
  {
    PNG,
    SVG,
    PDF
  } kind;
  cairo_t *cr;

  g_return_val_if_fail (chart != NULL && path != NULL, FALSE);
  lower = g_ascii_strdown (path, -1);
  if (g_str_has_suffix (lower, ".png"))
    kind = PNG;
  else if (g_str_has_suffix (lower, ".svg"))
    kind = SVG;
  else if (g_str_has_suffix (lower, ".pdf"))
    kind = PDF;
  else
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "Cannot save chart as %s: the name must end in .png, .svg or .pdf", path);
      return FALSE;
    }
  if (width < 16 || height < 16 || width > 16384 || height > 16384)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "Cannot save chart as %s: %d x %d is not a size between 16 and 16384", path,
                   width, height);
      return FALSE;
    }

  tmp = g_strconcat (path, ".XXXXXX", NULL);
  t.fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0644);
  if (t.fd < 0)
    {
      int e = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "Cannot write %s: %s", path,
                   g_strerror (e));
      return FALSE;
    }

  /* Files are for reports and documents: dark text on white whatever the screen's style. */
  memcpy (saved_fg, chart->fg, sizeof saved_fg);
  memcpy (saved_bg, chart->bg, sizeof saved_bg);
  chart->fg[0] = chart->fg[1] = chart->fg[2] = 0.2;
  chart->bg[0] = chart->bg[1] = chart->bg[2] = chart->bg[3] = 1;

  if (kind == PNG)
    surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  else if (kind == SVG)
    surface = cairo_svg_surface_create_for_stream (write_all, &t, width, height);
  else
    surface = cairo_pdf_surface_create_for_stream (write_all, &t, width, height);
  cr = cairo_create (surface);
  kilt_chart_draw (chart, cr, width, height, -1);
  status = cairo_status (cr);
  cairo_destroy (cr);
  memcpy (chart->fg, saved_fg, sizeof saved_fg);
  memcpy (chart->bg, saved_bg, sizeof saved_bg);
  if (status == CAIRO_STATUS_SUCCESS)
    {
      if (kind == PNG)
        status = cairo_surface_write_to_png_stream (surface, write_all, &t);
      else
        {
          cairo_surface_finish (surface);
          status = cairo_surface_status (surface);
        }
    }
  cairo_surface_destroy (surface);

  if (status == CAIRO_STATUS_SUCCESS && g_fsync (t.fd) != 0)
    t.err = errno, status = CAIRO_STATUS_WRITE_ERROR;
  if (close (t.fd) != 0 && status == CAIRO_STATUS_SUCCESS)
    t.err = errno, status = CAIRO_STATUS_WRITE_ERROR;
  if (status == CAIRO_STATUS_SUCCESS && g_rename (tmp, path) != 0)
    t.err = errno, status = CAIRO_STATUS_WRITE_ERROR;
  if (status != CAIRO_STATUS_SUCCESS)
    {
      g_unlink (tmp);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "Cannot write %s: %s", path,
                   t.err ? g_strerror (t.err) : cairo_status_to_string (status));
      return FALSE;
    }
  return TRUE;
}
