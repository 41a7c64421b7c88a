/* Charts drawn with plain cairo: one drawing for the window and for PNG, SVG and PDF files. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <cairo.h>

G_BEGIN_DECLS

typedef enum
{
  KILT_CHART_LINE,
  KILT_CHART_BAR,
  KILT_CHART_AREA, /* stacked on the area series added before it */
} KiltChartKind;

typedef enum
{
  KILT_AXIS_NUMBER,  /* 1-2-5 steps, large values as 12k, 3.4M */
  KILT_AXIS_SECONDS, /* 0:30, 1:00, 1:30:00 */
  KILT_AXIS_BYTES,   /* KiB / MiB / GiB, steps of 1-2-5 in the chosen unit */
  KILT_AXIS_PERCENT, /* values in percent: "40%" */
} KiltAxisUnit;

/* The x axes a chart of training curves can switch between (TensorBoard's step, relative
 * time; and epochs). */
typedef enum
{
  KILT_CHART_X_STEP,  /* optimizer steps since the run began */
  KILT_CHART_X_EPOCH, /* epochs, fractional between their ends */
  KILT_CHART_X_TIME,  /* training time in seconds, paused time left out */
} KiltChartXMode;

#define KILT_CHART_N_X_MODES 3

/* Where a point was measured, on each axis; NAN where not known (the point is then left out
 * while that axis is shown). */
typedef struct
{
  double step, epoch, seconds;
} KiltChartStamp;

typedef struct _KiltChart KiltChart;

/* Readable tick positions over [lo, hi] with at most @max_ticks ticks: 1-2-5 steps (times use
 * 1/2/5/10/15/30 s, minutes and hours; bytes use 1-2-5 steps of KiB, MiB or GiB).
 * @out_lo/@out_hi are @lo/@hi widened to whole steps. Returns the step. */
double kilt_chart_nice_step (double lo, double hi, guint max_ticks, KiltAxisUnit unit,
                             double *out_lo, double *out_hi);
/* A tick label for @value, with as many decimals as @step needs. Free with g_free. */
char *kilt_chart_format_value (double value, double step, KiltAxisUnit unit);

KiltChart *kilt_chart_new (const char *title);
KiltChart *kilt_chart_ref (KiltChart *chart);
void kilt_chart_unref (KiltChart *chart);

void kilt_chart_set_title (KiltChart *chart, const char *title);
const char *kilt_chart_get_title (KiltChart *chart);
void kilt_chart_set_x_axis (KiltChart *chart, const char *label, KiltAxisUnit unit);
void kilt_chart_set_y_axis (KiltChart *chart, const char *label, KiltAxisUnit unit);
/* Fixed y limits; NAN for automatic. */
void kilt_chart_set_y_range (KiltChart *chart, double min, double max);
void kilt_chart_set_log_scale (KiltChart *chart, gboolean log_y);
gboolean kilt_chart_get_log_scale (KiltChart *chart);
/* Exponential moving average weight in [0, 1): 0 draws raw points only; otherwise the smoothed
 * line is drawn over a faint raw one (the first points are de-biased). */
void kilt_chart_set_smoothing (KiltChart *chart, double weight);
double kilt_chart_get_smoothing (KiltChart *chart);
/* A dashed horizontal line, included in the automatic range (e.g. a device's capacity). */
void kilt_chart_set_marker (KiltChart *chart, double y, const char *label);
void kilt_chart_clear_marker (KiltChart *chart);
/* Names x = 0, 1, 2 ... (a bar per class) on the axis and in the read-out instead of numbers;
 * NULL goes back to numbers. Copies @names. */
void kilt_chart_set_x_categories (KiltChart *chart, const char *const *names);
/* Shown in the middle while there are no points. */
void kilt_chart_set_empty_text (KiltChart *chart, const char *text);
const char *kilt_chart_get_empty_text (KiltChart *chart);
/* Text colour (grid and axes are derived from it) and background; the background alpha may be 0
 * for the screen. Files default to dark text on white. */
void kilt_chart_set_colors (KiltChart *chart, const double fg[3], const double bg[4]);
/* How many pixel columns the plot area has, so appends keep at most ~2 points per column. */
void kilt_chart_set_columns (KiltChart *chart, guint columns);

/* Returns the series index. @rgb NULL picks from the palette. */
guint kilt_chart_add_series (KiltChart *chart, const char *name, KiltChartKind kind,
                             const double *rgb);
guint kilt_chart_get_n_series (KiltChart *chart);
void kilt_chart_set_series_visible (KiltChart *chart, guint series, gboolean visible);
/* Marks @series as sparse measurements (validation once per epoch): a dot on each point, never
 * smoothed, and named in the read-out only where it has a point. */
void kilt_chart_set_series_points (KiltChart *chart, guint series, gboolean points);
/* Renames @series (copies @name): "validation" becomes "test split" when that is what it is. */
void kilt_chart_set_series_name (KiltChart *chart, guint series, const char *name);
/* Whether any series has a point: an empty chart is not worth saving. */
gboolean kilt_chart_has_points (KiltChart *chart);
/* x should not decrease within a series; a point with a smaller x joins the last column. */
void kilt_chart_append (KiltChart *chart, guint series, double x, double y);
/* Appends a point measured at @at: its x is @at's coordinate on the chart's x mode, and the
 * read-out names all three. */
void kilt_chart_append_at (KiltChart *chart, guint series, const KiltChartStamp *at, double y);
/* Which of @at's coordinates is x; the axis's label and unit follow ("Step", "Epoch",
 * "Time"). Points appended with kilt_chart_append_at are laid out again. */
void kilt_chart_set_x_mode (KiltChart *chart, KiltChartXMode mode);
KiltChartXMode kilt_chart_get_x_mode (KiltChart *chart);
const char *kilt_chart_x_mode_name (KiltChartXMode mode);
/* Zoom: only x in [@lo, @hi] is drawn, at full detail, and y fits what is there; NAN, NAN shows
 * everything again. Charts of bars or categories do not zoom. */
void kilt_chart_set_x_zoom (KiltChart *chart, double lo, double hi);
/* TRUE while zoomed, with the range. */
gboolean kilt_chart_get_x_zoom (KiltChart *chart, double *lo, double *hi);
gboolean kilt_chart_can_zoom (KiltChart *chart);
/* The x range of the visible points; FALSE when there are none. */
gboolean kilt_chart_get_x_extent (KiltChart *chart, double *lo, double *hi);
/* The unzoomed x range covers at least [@lo, @hi], so that charts of one page line up;
 * NAN, NAN: only the chart's own points. */
void kilt_chart_set_x_span (KiltChart *chart, double lo, double hi);
/* Between a device x in a drawing of @width x @height and the data's x. */
double kilt_chart_pixel_to_x (KiltChart *chart, double width, double height, double px);
double kilt_chart_x_to_pixel (KiltChart *chart, double width, double height, double x);
/* Removes every point, keeps the series. */
void kilt_chart_clear (KiltChart *chart);
gsize kilt_chart_get_n_points (KiltChart *chart, guint series);
/* The reduced points drawn for @series: (x, y) pairs, at most ~2 per column. */
const double *kilt_chart_get_reduced (KiltChart *chart, guint series, gsize *n_points);
/* Bumped on every change, so a widget knows when to redraw. */
guint64 kilt_chart_get_serial (KiltChart *chart);

/* The plot area (inside axes) for a drawing of @width x @height. */
void kilt_chart_get_plot_area (KiltChart *chart, double width, double height,
                               cairo_rectangle_t *area);
/* Draws the whole chart into (0, 0, width, height). @hover_x is a device x in the drawing (or
 * a negative number for none): a vertical rule and the values of every series there. */
void kilt_chart_draw (KiltChart *chart, cairo_t *cr, double width, double height, double hover_x);
/* "Epoch 3: loss 0.412, val loss 0.455" for the points nearest @hover_x; NULL when none. */
char *kilt_chart_describe_at (KiltChart *chart, double width, double height, double hover_x);
/* Renders to a .png, .svg or .pdf file (chosen by extension), written to a temporary file in
 * the same folder and renamed into place. */
gboolean kilt_chart_save (KiltChart *chart, const char *path, int width, int height,
                          GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltChart, kilt_chart_unref)

G_END_DECLS
