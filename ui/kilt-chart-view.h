/* A widget that shows a KiltChart, with a hover read-out and zoom; the drawing is the engine's. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "kilt-chart.h"

G_BEGIN_DECLS

#define KILT_TYPE_CHART_VIEW (kilt_chart_view_get_type ())
G_DECLARE_FINAL_TYPE (KiltChartView, kilt_chart_view, KILT, CHART_VIEW, GtkWidget)

GtkWidget *kilt_chart_view_new (KiltChart *chart);
KiltChart *kilt_chart_view_get_chart (KiltChartView *self);
/* Shows @chart instead (takes a reference). */
void kilt_chart_view_set_chart (KiltChartView *self, KiltChart *chart);
/* Puts @other (in no group yet) in @self's group: they share their x range, hover cursor and
 * zoom (the charts of one page). */
void kilt_chart_view_link (KiltChartView *self, KiltChartView *other);
/* The cursor at device x @px of this view (negative: none), on every view of its group; what
 * pointer motion does. */
void kilt_chart_view_hover (KiltChartView *self, double px);
/* The cursor's x in data units; NAN for none. */
double kilt_chart_view_get_hover_x (KiltChartView *self);
/* Zooms the group to the x range between device x @px0 and @px1 of this view, as a drag
 * does; FALSE when the range is too narrow or the chart does not zoom. */
gboolean kilt_chart_view_zoom_pixels (KiltChartView *self, double px0, double px1);
/* Zooms the group to [@lo, @hi] in data units (NAN, NAN: everything). */
void kilt_chart_view_zoom_to (KiltChartView *self, double lo, double hi);
/* Shows everything again, as a double click does. */
void kilt_chart_view_reset_zoom (KiltChartView *self);
gboolean kilt_chart_view_get_zoomed (KiltChartView *self);
/* Redraws when the chart changed since the last frame (cheap to call often). */
void kilt_chart_view_update (KiltChartView *self);
/* Saves what the view shows to @path (.png, .svg, .pdf) at the view's size. */
gboolean kilt_chart_view_save (KiltChartView *self, const char *path, GError **error);

G_END_DECLS
