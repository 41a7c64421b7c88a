/* Report charts (built on KiltChart, as the window draws them) and the PDF report. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-report"

#include "kilt-report-private.h"
#include "kilt-error.h"

#include <math.h>
#include <string.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>

static const char *const chart_names[KILT_REPORT_N_CHARTS] = {
  "loss", "accuracy", "epoch-time", "speedup", "layers", "accuracy-time", "learning-rate",
};

static const char *const chart_titles[KILT_REPORT_N_CHARTS] = {
  "Loss per epoch",
  "Accuracy per epoch",
  "Time per epoch",
  "Speed-up against the baseline",
  "Per-layer device time per step",
  "Validation accuracy against training time",
  "Learning rate",
};

/* One colour per run, the same in every chart; validation lines are a lighter tint. */
static const double palette[][3] = {
  { 0.21, 0.42, 0.80 }, { 0.88, 0.38, 0.12 }, { 0.18, 0.62, 0.30 }, { 0.75, 0.18, 0.35 },
  { 0.50, 0.34, 0.75 }, { 0.55, 0.42, 0.20 }, { 0.10, 0.60, 0.65 }, { 0.45, 0.45, 0.45 },
};

const char *
kilt_report_chart_name (KiltReportChart chart)
{
  return (guint)chart < KILT_REPORT_N_CHARTS ? chart_names[chart] : "?";
}

const char *
kilt_report_chart_title (KiltReportChart chart)
{
  return (guint)chart < KILT_REPORT_N_CHARTS ? chart_titles[chart] : "?";
}

gboolean
kilt_report_chart_from_name (const char *name, KiltReportChart *out)
{
  for (guint i = 0; i < KILT_REPORT_N_CHARTS; i++)
    if (g_ascii_strcasecmp (name, chart_names[i]) == 0)
      {
        *out = (KiltReportChart)i;
        return TRUE;
      }
  return FALSE;
}

static void
run_color (guint i, gboolean light, double out[3])
{
  const double *c = palette[i % G_N_ELEMENTS (palette)];
  for (int k = 0; k < 3; k++)
    out[k] = light ? c[k] + (1 - c[k]) * 0.5 : c[k];
}

/* Legend entries. Curves (two per run) are named by run id and "train" or "val", to keep the
 * legend short; bars by id and the run's name (a long one ends in "…", and the chart shortens
 * what does not fit its width). */
static char *
series_name (const KiltRun *run, const char *what)
{
  g_autofree char *name = NULL;
  glong n = g_utf8_strlen (run->record.name, -1);

  if (what)
    return g_strdup_printf ("#%" G_GINT64_FORMAT " %s", run->id, what);
  if (n > 40)
    {
      g_autofree char *head = g_utf8_substring (run->record.name, 0, 39);
      name = g_strconcat (head, "…", NULL);
    }
  else
    name = g_strdup (run->record.name);
  return g_strdup_printf ("#%" G_GINT64_FORMAT " %s", run->id, name);
}

/* Whether a run recorded the learning rate (schema 6 stores do). */
static gboolean
any_learning_rate (const KiltReportOptions *o)
{
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      for (guint k = 0; k < run->epochs->len; k++)
        if (g_array_index (run->epochs, KiltEpochRecord, k).learning_rate > 0)
          return TRUE;
    }
  return FALSE;
}

/* The curves' x axis: epochs, optimizer steps or training time, as the options ask. */
static void
set_curve_axis (KiltChart *c, const KiltReportOptions *o)
{
  if (o->x_wall_time)
    {
      kilt_chart_set_x_mode (c, KILT_CHART_X_TIME);
      kilt_chart_set_x_axis (c, "training time", KILT_AXIS_SECONDS);
    }
  else if (o->x_steps)
    {
      kilt_chart_set_x_mode (c, KILT_CHART_X_STEP);
      kilt_chart_set_x_axis (c, "step", KILT_AXIS_NUMBER);
    }
  else
    {
      kilt_chart_set_x_mode (c, KILT_CHART_X_EPOCH);
      kilt_chart_set_x_axis (c, "epoch", KILT_AXIS_NUMBER);
    }
}

/* Where the end of epoch @e of @run stands on each x axis. */
static KiltChartStamp
epoch_stamp (const KiltRun *run, const KiltEpochRecord *e)
{
  KiltChartStamp at;

  at.epoch = e->epoch;
  at.step = run->record.steps_per_epoch ? (double)e->epoch * run->record.steps_per_epoch : NAN;
  at.seconds = e->elapsed_seconds;
  return at;
}

static gboolean
any_timings (const KiltReportOptions *o)
{
  for (guint i = 0; i < o->runs->len; i++)
    if (((KiltRun *)g_ptr_array_index (o->runs, i))->layer_timings->len > 0)
      return TRUE;
  return FALSE;
}

gboolean
kilt_report_chart_applies (const KiltReportOptions *o, KiltReportChart chart)
{
  switch (chart)
    {
      case KILT_REPORT_CHART_SPEEDUP:
        return o->runs->len >= 2;
      case KILT_REPORT_CHART_LAYERS:
        return any_timings (o);
      case KILT_REPORT_CHART_LEARNING_RATE:
        return any_learning_rate (o);
      default:
        return o->runs->len >= 1;
    }
}

/* Training and validation lines of @what (loss or accuracy), per run. */
static void
add_curves (KiltChart *c, const KiltReportOptions *o, gboolean accuracy)
{
  /* The axis first: points are laid out on it as they come. */
  set_curve_axis (c, o);
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      g_autofree char *tn = series_name (run, "train");
      g_autofree char *vn = series_name (run, "val");
      double rgb[3], light[3];
      guint ts, vs;
      gboolean any_val = FALSE;

      for (guint k = 0; k < run->epochs->len; k++)
        any_val |= !isnan (g_array_index (run->epochs, KiltEpochRecord, k).val_loss);
      run_color (i, FALSE, rgb);
      run_color (i, TRUE, light);
      ts = kilt_chart_add_series (c, tn, KILT_CHART_LINE, rgb);
      vs = any_val ? kilt_chart_add_series (c, vn, KILT_CHART_LINE, light) : 0;
      /* One figure per epoch: marked where measured, never smoothed. */
      kilt_chart_set_series_points (c, ts, TRUE);
      if (any_val)
        kilt_chart_set_series_points (c, vs, TRUE);
      for (guint k = 0; k < run->epochs->len; k++)
        {
          const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
          KiltChartStamp at = epoch_stamp (run, e);
          double t = accuracy ? e->train_accuracy * 100 : e->train_loss;
          double v = accuracy ? e->val_accuracy * 100 : e->val_loss;
          if (!isnan (t))
            kilt_chart_append_at (c, ts, &at, t);
          if (any_val && !isnan (v))
            kilt_chart_append_at (c, vs, &at, v);
        }
    }
}

/* The rate each run's optimizer used at its epochs' ends (Adam against RMSprop, a decay). */
static void
add_learning_rates (KiltChart *c, const KiltReportOptions *o)
{
  set_curve_axis (c, o);
  for (guint i = 0; i < o->runs->len; i++)
    {
      const KiltRun *run = g_ptr_array_index (o->runs, i);
      g_autofree char *name = series_name (run, NULL);
      double rgb[3];
      guint s;

      run_color (i, FALSE, rgb);
      s = kilt_chart_add_series (c, name, KILT_CHART_LINE, rgb);
      kilt_chart_set_series_points (c, s, TRUE);
      for (guint k = 0; k < run->epochs->len; k++)
        {
          const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
          KiltChartStamp at = epoch_stamp (run, e);
          if (e->learning_rate > 0)
            kilt_chart_append_at (c, s, &at, e->learning_rate);
        }
    }
  kilt_chart_set_y_axis (c, "learning rate", KILT_AXIS_NUMBER);
}

KiltChart *
kilt_report_chart_new (const KiltReportOptions *o, KiltReportChart chart)
{
  KiltChart *c = kilt_chart_new (kilt_report_chart_title (chart));
  const KiltRun *base = kilt_report_baseline (o);

  kilt_chart_set_empty_text (c, "No figures recorded yet");
  switch (chart)
    {
      case KILT_REPORT_CHART_LOSS:
        add_curves (c, o, FALSE);
        kilt_chart_set_y_axis (c, "loss", KILT_AXIS_NUMBER);
        break;

      case KILT_REPORT_CHART_ACCURACY:
        add_curves (c, o, TRUE);
        kilt_chart_set_y_axis (c, "accuracy", KILT_AXIS_PERCENT);
        break;

      case KILT_REPORT_CHART_EPOCH_TIME:
        /* A group of bars per epoch, one bar per run: the article's three-backend figure.
         * Epochs are categories (x = epoch - 1), named by their number. */
        {
          guint last = 0;
          g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
          for (guint i = 0; i < o->runs->len; i++)
            {
              const KiltRun *run = g_ptr_array_index (o->runs, i);
              for (guint k = 0; k < run->epochs->len; k++)
                last = MAX (last, g_array_index (run->epochs, KiltEpochRecord, k).epoch);
            }
          for (guint e = 1; e <= last; e++)
            g_ptr_array_add (names, g_strdup_printf ("%u", e));
          g_ptr_array_add (names, NULL);
          if (last > 0)
            kilt_chart_set_x_categories (c, (const char *const *)names->pdata);
        }
        for (guint i = 0; i < o->runs->len; i++)
          {
            const KiltRun *run = g_ptr_array_index (o->runs, i);
            g_autofree char *name = series_name (run, NULL);
            double rgb[3];
            guint s;
            run_color (i, FALSE, rgb);
            s = kilt_chart_add_series (c, name, KILT_CHART_BAR, rgb);
            for (guint k = 0; k < run->epochs->len; k++)
              {
                const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
                if (!isnan (e->wall_seconds) && e->epoch >= 1)
                  kilt_chart_append (c, s, e->epoch - 1, e->wall_seconds);
              }
          }
        kilt_chart_set_x_axis (c, "epoch", KILT_AXIS_NUMBER);
        kilt_chart_set_y_axis (c, "time per epoch", KILT_AXIS_SECONDS);
        break;

      case KILT_REPORT_CHART_SPEEDUP:
        /* A bar per run, each in its own category named by the run's id. */
        {
          g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
          for (guint i = 0; i < o->runs->len; i++)
            g_ptr_array_add (
                names, g_strdup_printf ("#%" G_GINT64_FORMAT,
                                        ((const KiltRun *)g_ptr_array_index (o->runs, i))->id));
          g_ptr_array_add (names, NULL);
          kilt_chart_set_x_categories (c, (const char *const *)names->pdata);
        }
        for (guint i = 0; i < o->runs->len; i++)
          {
            const KiltRun *run = g_ptr_array_index (o->runs, i);
            g_autofree char *name = series_name (run, NULL);
            double sp = kilt_report_speedup (run, base);
            double rgb[3];
            guint s;
            run_color (i, FALSE, rgb);
            s = kilt_chart_add_series (c, name, KILT_CHART_BAR, rgb);
            if (!isnan (sp))
              kilt_chart_append (c, s, i, sp);
          }
        if (base)
          {
            g_autofree char *label = g_strdup_printf ("baseline #%" G_GINT64_FORMAT, base->id);
            kilt_chart_set_marker (c, 1.0, label);
          }
        kilt_chart_set_x_axis (c, "run", KILT_AXIS_NUMBER);
        kilt_chart_set_y_axis (c, "speed-up (×)", KILT_AXIS_NUMBER);
        break;

      case KILT_REPORT_CHART_LAYERS:
        {
          /* x = the layer's position in the first run that has it, named on the axis. */
          g_autoptr (GPtrArray) names = g_ptr_array_new ();
          g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
          for (guint i = 0; i < o->runs->len; i++)
            {
              const KiltRun *run = g_ptr_array_index (o->runs, i);
              for (guint k = 0; k < run->layer_timings->len; k++)
                {
                  KiltLayerTiming *lt = &g_array_index (run->layer_timings, KiltLayerTiming, k);
                  if (g_hash_table_add (seen, lt->layer))
                    g_ptr_array_add (names, lt->layer);
                }
            }
          for (guint i = 0; i < o->runs->len; i++)
            {
              const KiltRun *run = g_ptr_array_index (o->runs, i);
              g_autofree char *name = series_name (run, NULL);
              double rgb[3];
              guint s;
              run_color (i, FALSE, rgb);
              s = kilt_chart_add_series (c, name, KILT_CHART_BAR, rgb);
              for (guint n = 0; n < names->len; n++)
                {
                  const KiltLayerTiming *lt = kilt_report_find_timing (run, names->pdata[n]);
                  if (lt)
                    kilt_chart_append (c, s, n, lt->forward_ms + lt->backward_ms + lt->update_ms);
                }
            }
          g_ptr_array_add (names, NULL);
          kilt_chart_set_x_categories (c, (const char *const *)names->pdata);
          kilt_chart_set_x_axis (c, "layer (in model order)", KILT_AXIS_NUMBER);
          kilt_chart_set_y_axis (c, "ms per step", KILT_AXIS_NUMBER);
        }
        break;

      case KILT_REPORT_CHART_LEARNING_RATE:
        add_learning_rates (c, o);
        break;

      case KILT_REPORT_CHART_ACCURACY_TIME:
        for (guint i = 0; i < o->runs->len; i++)
          {
            const KiltRun *run = g_ptr_array_index (o->runs, i);
            g_autofree char *name = series_name (run, "val");
            double rgb[3];
            guint s;
            run_color (i, FALSE, rgb);
            s = kilt_chart_add_series (c, name, KILT_CHART_LINE, rgb);
            for (guint k = 0; k < run->epochs->len; k++)
              {
                const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
                if (!isnan (e->val_accuracy) && !isnan (e->elapsed_seconds))
                  kilt_chart_append (c, s, e->elapsed_seconds, e->val_accuracy * 100);
              }
          }
        kilt_chart_set_x_axis (c, "training time", KILT_AXIS_SECONDS);
        kilt_chart_set_y_axis (c, "validation accuracy", KILT_AXIS_PERCENT);
        break;

      default:
        break;
    }
  return c;
}

/* ---- rendering into memory ---- */

static cairo_status_t
append_bytes (void *closure, const unsigned char *data, unsigned int length)
{
  g_byte_array_append (closure, data, length);
  return CAIRO_STATUS_SUCCESS;
}

static gboolean
check_surface (cairo_surface_t *surface, const char *what, GError **error)
{
  cairo_status_t st = cairo_surface_status (surface);

  if (st == CAIRO_STATUS_SUCCESS)
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "drawing the %s failed: %s", what,
               cairo_status_to_string (st));
  return FALSE;
}

GBytes *
kilt_report_render_chart (const KiltReportOptions *o, KiltReportChart chart, gboolean png,
                          int width, int height, GError **error)
{
  g_autoptr (KiltChart) c = NULL;
  GByteArray *buf;
  cairo_surface_t *surface;
  cairo_t *cr;
  gboolean ok;

  if ((guint)chart >= KILT_REPORT_N_CHARTS)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "no such chart %d", chart);
      return NULL;
    }
  if (width < 16 || height < 16 || width > 16384 || height > 16384)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a chart of %d x %d pixels: the size must be between 16 and 16384", width,
                   height);
      return NULL;
    }
  c = kilt_report_chart_new (o, chart);
  buf = g_byte_array_new ();
  if (png)
    surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  else
    surface = cairo_svg_surface_create_for_stream (append_bytes, buf, width, height);
  cr = cairo_create (surface);
  kilt_chart_draw (c, cr, width, height, -1);
  cairo_destroy (cr);
  if (png)
    cairo_surface_write_to_png_stream (surface, append_bytes, buf);
  cairo_surface_finish (surface);
  ok = check_surface (surface, kilt_report_chart_title (chart), error);
  cairo_surface_destroy (surface);
  if (!ok)
    {
      g_byte_array_unref (buf);
      return NULL;
    }
  return g_byte_array_free_to_bytes (buf);
}

char *
kilt_report_chart_svg (const KiltReportOptions *o, KiltReportChart chart, int width, int height,
                       GError **error)
{
  g_autoptr (GBytes) bytes = kilt_report_render_chart (o, chart, FALSE, width, height, error);
  gsize len;
  const char *data;

  if (bytes == NULL)
    return NULL;
  data = g_bytes_get_data (bytes, &len);
  return g_strndup (data, len);
}

/* ---- PDF: tables as text, then a chart per page ---- */

/* A4 landscape in points. */
#define PAGE_W 842.0
#define PAGE_H 595.0
#define MARGIN 40.0

typedef struct
{
  cairo_t *cr;
  double y;
  int pages;
} Pdf;

static void
pdf_new_page (Pdf *p)
{
  if (p->pages > 0)
    cairo_show_page (p->cr);
  p->pages++;
  p->y = MARGIN;
  cairo_set_source_rgb (p->cr, 0.2, 0.2, 0.2);
}

static void
pdf_text (Pdf *p, const char *text, double size, gboolean bold)
{
  cairo_select_font_face (p->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                          bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (p->cr, size);
  if (p->y + size * 1.4 > PAGE_H - MARGIN)
    pdf_new_page (p);
  p->y += size * 1.4;
  cairo_move_to (p->cr, MARGIN, p->y);
  cairo_show_text (p->cr, text);
}

/* The PDF's table text: 8 pt, never shrunk (a wide table was once scaled to about 3 pt). */
#define TABLE_SIZE  8.0
#define TABLE_GAP   10.0
#define TABLE_WIDTH (PAGE_W - 2 * MARGIN)

/* @text shortened with "…" until it is at most @max_width wide in the current font. */
static char *
pdf_fit (cairo_t *cr, const char *text, double max_width)
{
  cairo_text_extents_t e;
  glong n = g_utf8_strlen (text, -1);

  cairo_text_extents (cr, text, &e);
  if (e.x_advance <= max_width)
    return g_strdup (text);
  while (n-- > 1)
    {
      g_autofree char *head = g_utf8_substring (text, 0, n);
      char *s = g_strconcat (head, "…", NULL);
      cairo_text_extents (cr, s, &e);
      if (e.x_advance <= max_width)
        return s;
      g_free (s);
    }
  return g_strdup ("…");
}

static void
pdf_row (Pdf *p, GPtrArray *row, const guint *cols, guint n_cols, const double *w, gboolean bold)
{
  double x = MARGIN;

  p->y += TABLE_SIZE * 1.5;
  cairo_select_font_face (p->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                          bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (p->cr, TABLE_SIZE);
  for (guint k = 0; k < n_cols; k++)
    {
      guint c = cols[k];
      if (c < row->len && row->pdata[c])
        {
          g_autofree char *text = pdf_fit (p->cr, row->pdata[c], w[c]);
          cairo_move_to (p->cr, x, p->y);
          cairo_show_text (p->cr, text);
        }
      x += w[c] + TABLE_GAP;
    }
}

/* A table at a readable size: columns as wide as their widest cell (a cell wider than the
 * page is shortened with "…"); when they do not all fit across the page, the first column
 * (the run or the layer) is repeated with as many of the others as fit, group after group.
 * A table that goes on over a page break repeats its title and header row there. */
static void
pdf_table (Pdf *p, KiltReportTable *t)
{
  guint n = t->header->len;
  g_autofree double *w = g_new0 (double, n);
  g_autofree guint *cols = g_new0 (guint, n);
  cairo_text_extents_t ext;
  guint next = 1;

  if (n == 0)
    return;
  cairo_set_font_size (p->cr, TABLE_SIZE);
  cairo_select_font_face (p->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  for (guint c = 0; c < n; c++)
    {
      cairo_text_extents (p->cr, t->header->pdata[c], &ext);
      w[c] = ext.x_advance;
    }
  cairo_select_font_face (p->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  for (guint r = 0; r < t->rows->len; r++)
    {
      GPtrArray *row = t->rows->pdata[r];
      for (guint c = 0; c < n && c < row->len; c++)
        if (row->pdata[c])
          {
            cairo_text_extents (p->cr, row->pdata[c], &ext);
            w[c] = MAX (w[c], ext.x_advance);
          }
    }
  /* The first column takes at most a third of the page, the others what is left beside it. */
  w[0] = MIN (w[0], TABLE_WIDTH / 3);
  for (guint c = 1; c < n; c++)
    w[c] = MIN (w[c], TABLE_WIDTH - w[0] - 2 * TABLE_GAP);

  do
    {
      guint n_cols = 1;
      double used = w[0] + TABLE_GAP;
      gboolean continued = next > 1;

      cols[0] = 0;
      while (next < n && (n_cols == 1 || used + w[next] <= TABLE_WIDTH))
        {
          used += w[next] + TABLE_GAP;
          cols[n_cols++] = next++;
        }
      /* The title, the note and a header row and one row stay together on a page. */
      if (p->y + 12 * 1.4 + 2 * TABLE_SIZE * 1.5 + (t->note ? 7 * 1.4 : 0) > PAGE_H - MARGIN)
        pdf_new_page (p);
      if (continued)
        {
          g_autofree char *title = g_strdup_printf ("%s (more columns)", t->title);
          pdf_text (p, title, 12, TRUE);
        }
      else
        {
          pdf_text (p, t->title, 12, TRUE);
          if (t->note)
            pdf_text (p, t->note, 7, FALSE);
        }
      pdf_row (p, t->header, cols, n_cols, w, TRUE);
      for (guint r = 0; r < t->rows->len; r++)
        {
          if (p->y + TABLE_SIZE * 1.5 > PAGE_H - MARGIN)
            {
              g_autofree char *title = g_strdup_printf ("%s (continued)", t->title);
              pdf_new_page (p);
              pdf_text (p, title, 12, TRUE);
              pdf_row (p, t->header, cols, n_cols, w, TRUE);
            }
          pdf_row (p, t->rows->pdata[r], cols, n_cols, w, FALSE);
        }
      p->y += 10;
    }
  while (next < n);
}

GBytes *
kilt_report_render_pdf (const KiltReportOptions *o, GError **error)
{
  g_autoptr (GPtrArray) tables = kilt_report_build_tables (o);
  GByteArray *buf = g_byte_array_new ();
  cairo_surface_t *surface;
  g_autofree char *when = kilt_report_time_label (g_get_real_time ());
  g_autofree char *subtitle = NULL;
  Pdf p = { 0 };
  gboolean ok;

  surface = cairo_pdf_surface_create_for_stream (append_bytes, buf, PAGE_W, PAGE_H);
  cairo_pdf_surface_set_metadata (surface, CAIRO_PDF_METADATA_TITLE, "Kilt timing report");
  cairo_pdf_surface_set_metadata (surface, CAIRO_PDF_METADATA_CREATOR, "Kilt");
  p.cr = cairo_create (surface);
  pdf_new_page (&p);
  pdf_text (&p, "Kilt timing report", 20, TRUE);
  subtitle = g_strdup_printf ("%u run%s, generated %s", o->runs->len, o->runs->len == 1 ? "" : "s",
                              when);
  pdf_text (&p, subtitle, 10, FALSE);
  p.y += 10;
  for (guint i = 0; i < tables->len; i++)
    pdf_table (&p, tables->pdata[i]);

  /* One chart per page, drawn by the same code as the window's. */
  for (int c = 0; c < KILT_REPORT_N_CHARTS; c++)
    {
      g_autoptr (KiltChart) chart = NULL;
      if (!kilt_report_chart_applies (o, (KiltReportChart)c))
        continue;
      chart = kilt_report_chart_new (o, (KiltReportChart)c);
      pdf_new_page (&p);
      cairo_save (p.cr);
      cairo_translate (p.cr, MARGIN, MARGIN);
      kilt_chart_draw (chart, p.cr, PAGE_W - 2 * MARGIN, PAGE_H - 2 * MARGIN, -1);
      cairo_restore (p.cr);
    }
  cairo_destroy (p.cr);
  cairo_surface_finish (surface);
  ok = check_surface (surface, "PDF report", error);
  cairo_surface_destroy (surface);
  if (!ok)
    {
      g_byte_array_unref (buf);
      return NULL;
    }
  return g_byte_array_free_to_bytes (buf);
}
