/* A widget that shows a KiltChart, with a hover read-out; the drawing is the engine's. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "kilt-chart.h"

G_BEGIN_DECLS

#define KILT_TYPE_CHART_VIEW (kilt_chart_view_get_type ())
G_DECLARE_FINAL_TYPE (KiltChartView, kilt_chart_view, KILT, CHART_VIEW, GtkWidget)

GtkWidget *kilt_chart_view_new (KiltChart *chart);
KiltChart *kilt_chart_view_get_chart (KiltChartView *self);
/* Redraws when the chart changed since the last frame (cheap to call often). */
void kilt_chart_view_update (KiltChartView *self);
/* Saves what the view shows to @path (.png, .svg, .pdf) at the view's size. */
gboolean kilt_chart_view_save (KiltChartView *self, const char *path, GError **error);

G_END_DECLS
