/* A widget that shows a KiltChart, with a hover read-out; the drawing is the engine's. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-chart-view.h"

struct _KiltChartView
{
  GtkWidget parent_instance;
  KiltChart *chart;
  guint64 drawn_serial;
  double hover_x;
};

G_DEFINE_FINAL_TYPE (KiltChartView, kilt_chart_view, GTK_TYPE_WIDGET)

static void
kilt_chart_view_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  KiltChartView *self = KILT_CHART_VIEW (widget);
  int width = gtk_widget_get_width (widget);
  int height = gtk_widget_get_height (widget);
  GtkStyleContext *style;
  GdkRGBA color;
  double fg[3], bg[4] = { 0, 0, 0, 0 };
  cairo_t *cr;

  if (width <= 0 || height <= 0 || self->chart == NULL)
    return;
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  style = gtk_widget_get_style_context (widget);
  gtk_style_context_get_color (style, &color);
  G_GNUC_END_IGNORE_DEPRECATIONS
  fg[0] = color.red, fg[1] = color.green, fg[2] = color.blue;
  kilt_chart_set_colors (self->chart, fg, bg);
  kilt_chart_set_columns (self->chart, (guint)width);
  cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, width, height));
  kilt_chart_draw (self->chart, cr, width, height, self->hover_x);
  cairo_destroy (cr);
  self->drawn_serial = kilt_chart_get_serial (self->chart);
}

static void
update_description (KiltChartView *self)
{
  g_autofree char *text = NULL;

  if (self->hover_x >= 0)
    text = kilt_chart_describe_at (self->chart, gtk_widget_get_width (GTK_WIDGET (self)),
                                   gtk_widget_get_height (GTK_WIDGET (self)), self->hover_x);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self), NULL);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self), GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                  text ? text : "", -1);
}

static void
on_motion (GtkEventControllerMotion *motion, double x, double y, KiltChartView *self)
{
  self->hover_x = x;
  update_description (self);
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
on_leave (GtkEventControllerMotion *motion, KiltChartView *self)
{
  self->hover_x = -1;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
kilt_chart_view_dispose (GObject *object)
{
  KiltChartView *self = KILT_CHART_VIEW (object);

  g_clear_pointer (&self->chart, kilt_chart_unref);
  G_OBJECT_CLASS (kilt_chart_view_parent_class)->dispose (object);
}

static void
kilt_chart_view_measure (GtkWidget *widget, GtkOrientation orientation, int for_size, int *minimum,
                         int *natural, int *minimum_baseline, int *natural_baseline)
{
  *minimum = orientation == GTK_ORIENTATION_HORIZONTAL ? 240 : 180;
  *natural = orientation == GTK_ORIENTATION_HORIZONTAL ? 480 : 240;
}

static void
kilt_chart_view_class_init (KiltChartViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = kilt_chart_view_dispose;
  widget_class->snapshot = kilt_chart_view_snapshot;
  widget_class->measure = kilt_chart_view_measure;
  gtk_widget_class_set_css_name (widget_class, "chartview");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
kilt_chart_view_init (KiltChartView *self)
{
  GtkEventController *motion = gtk_event_controller_motion_new ();

  self->hover_x = -1;
  g_signal_connect (motion, "motion", G_CALLBACK (on_motion), self);
  g_signal_connect (motion, "leave", G_CALLBACK (on_leave), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);
  gtk_widget_set_hexpand (GTK_WIDGET (self), TRUE);
}

GtkWidget *
kilt_chart_view_new (KiltChart *chart)
{
  KiltChartView *self = g_object_new (KILT_TYPE_CHART_VIEW, NULL);

  self->chart = kilt_chart_ref (chart);
  gtk_accessible_update_property (
      GTK_ACCESSIBLE (self), GTK_ACCESSIBLE_PROPERTY_LABEL,
      kilt_chart_get_title (chart) ? kilt_chart_get_title (chart) : "Chart", -1);
  return GTK_WIDGET (self);
}

KiltChart *
kilt_chart_view_get_chart (KiltChartView *self)
{
  g_return_val_if_fail (KILT_IS_CHART_VIEW (self), NULL);
  return self->chart;
}

void
kilt_chart_view_update (KiltChartView *self)
{
  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  if (kilt_chart_get_serial (self->chart) != self->drawn_serial)
    gtk_widget_queue_draw (GTK_WIDGET (self));
}

gboolean
kilt_chart_view_save (KiltChartView *self, const char *path, GError **error)
{
  int width, height;

  g_return_val_if_fail (KILT_IS_CHART_VIEW (self), FALSE);
  width = MAX (gtk_widget_get_width (GTK_WIDGET (self)), 640);
  height = MAX (gtk_widget_get_height (GTK_WIDGET (self)), 360);
  return kilt_chart_save (self->chart, path, width, height, error);
}
