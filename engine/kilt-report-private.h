/* Report internals shared by the text formats and the charts. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-report.h"

G_BEGIN_DECLS

const KiltRun *kilt_report_baseline (const KiltReportOptions *options);
const char *kilt_report_optimizer_label (KiltOptimizerType type);
const KiltLayerTiming *kilt_report_find_timing (const KiltRun *run, const char *layer);
void kilt_report_append_num (GString *s, double v, int digits);
char *kilt_report_fixed (double v, int decimals);
char *kilt_report_percent (double fraction);
char *kilt_report_time_label (gint64 unix_us);

/* An <svg> document of @chart (NULL with @error set on failure). */
char *kilt_report_chart_svg (const KiltReportOptions *options, KiltReportChart chart, int width,
                             int height, GError **error);
/* One chart as PNG (@png) or SVG bytes. */
GBytes *kilt_report_render_chart (const KiltReportOptions *options, KiltReportChart chart,
                                  gboolean png, int width, int height, GError **error);
/* The whole report as a PDF of several pages. */
GBytes *kilt_report_render_pdf (const KiltReportOptions *options, GError **error);

G_END_DECLS
