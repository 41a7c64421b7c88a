/* A widget that shows a KiltChart, with a hover read-out and zoom; the drawing is the engine's.
 * Views linked into one group (the charts of a page) share their x range, their hover cursor
 * and their zoom, as Sysprof's rows do. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-chart-view.h"

#include <math.h>

/* Views that share an x axis. Each member holds a reference. */
typedef struct
{
  gatomicrefcount ref;
  GPtrArray *views; /* KiltChartView *, not referenced: a view leaves on dispose */
} Group;

struct _KiltChartView
{
  GtkWidget parent_instance;
  KiltChart *chart;
  guint64 drawn_serial;
  double hover_data;         /* the cursor's x in data units; NAN for none */
  double drag_from, drag_to; /* a range being selected, in pixels; NAN while none */
  Group *group;
};

enum
{
  ZOOM_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (KiltChartView, kilt_chart_view, GTK_TYPE_WIDGET)

#define DRAG_MIN_PX 6

static Group *
group_ref (Group *g)
{
  g_atomic_ref_count_inc (&g->ref);
  return g;
}

static void
group_unref (Group *g)
{
  if (g && g_atomic_ref_count_dec (&g->ref))
    {
      g_ptr_array_unref (g->views);
      g_free (g);
    }
}

/* The members of @self's group, @self alone when it has none. */
static void
for_each_member (KiltChartView *self, void (*func) (KiltChartView *view, gpointer data),
                 gpointer data)
{
  if (self->group == NULL)
    {
      func (self, data);
      return;
    }
  for (guint i = 0; i < self->group->views->len; i++)
    func (g_ptr_array_index (self->group->views, i), data);
}

/* The x range all the group's charts cover together, so that they line up. */
static void
share_span (KiltChartView *self)
{
  double lo = INFINITY, hi = -INFINITY;

  if (self->group == NULL || self->group->views->len < 2)
    return;
  for (guint i = 0; i < self->group->views->len; i++)
    {
      KiltChartView *v = g_ptr_array_index (self->group->views, i);
      double a, b;
      if (v->chart && kilt_chart_get_x_extent (v->chart, &a, &b))
        lo = MIN (lo, a), hi = MAX (hi, b);
    }
  kilt_chart_set_x_span (self->chart, lo, hi);
}

static void
kilt_chart_view_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  KiltChartView *self = KILT_CHART_VIEW (widget);
  int width = gtk_widget_get_width (widget);
  int height = gtk_widget_get_height (widget);
  GtkStyleContext *style;
  GdkRGBA color;
  double fg[3], bg[4] = { 0, 0, 0, 0 };
  double hover_px = -1;
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
  share_span (self);
  if (isfinite (self->hover_data))
    hover_px = kilt_chart_x_to_pixel (self->chart, width, height, self->hover_data);
  cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, width, height));
  kilt_chart_draw (self->chart, cr, width, height, isfinite (hover_px) ? hover_px : -1);
  if (isfinite (self->drag_from) && fabs (self->drag_to - self->drag_from) >= DRAG_MIN_PX)
    {
      /* The range being selected. */
      cairo_rectangle_t plot;
      double a = MIN (self->drag_from, self->drag_to), b = MAX (self->drag_from, self->drag_to);
      kilt_chart_get_plot_area (self->chart, width, height, &plot);
      a = MAX (a, plot.x), b = MIN (b, plot.x + plot.width);
      cairo_rectangle (cr, a, plot.y, b - a, plot.height);
      cairo_set_source_rgba (cr, 0.21, 0.52, 0.89, 0.18);
      cairo_fill_preserve (cr);
      cairo_set_source_rgba (cr, 0.21, 0.52, 0.89, 0.7);
      cairo_set_line_width (cr, 1);
      cairo_stroke (cr);
    }
  cairo_destroy (cr);
  self->drawn_serial = kilt_chart_get_serial (self->chart);
}

static void
update_description (KiltChartView *self)
{
  g_autofree char *text = NULL;
  int width = gtk_widget_get_width (GTK_WIDGET (self));
  int height = gtk_widget_get_height (GTK_WIDGET (self));

  if (isfinite (self->hover_data) && width > 0 && height > 0 && self->chart)
    text = kilt_chart_describe_at (
        self->chart, width, height,
        kilt_chart_x_to_pixel (self->chart, width, height, self->hover_data));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self), NULL);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self), GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                  text ? text : "", -1);
}

static void
set_hover (KiltChartView *view, gpointer data)
{
  double x = *(double *)data;

  if (x == view->hover_data || (isnan (x) && isnan (view->hover_data)))
    return;
  view->hover_data = x;
  update_description (view);
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

void
kilt_chart_view_hover (KiltChartView *self, double px)
{
  double x = NAN;

  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  if (px >= 0 && self->chart)
    {
      int width = gtk_widget_get_width (GTK_WIDGET (self));
      int height = gtk_widget_get_height (GTK_WIDGET (self));
      cairo_rectangle_t plot;

      kilt_chart_get_plot_area (self->chart, width, height, &plot);
      /* Outside the plot (over the legend's column, the axis labels) there is no cursor. */
      if (px >= plot.x && px <= plot.x + plot.width && kilt_chart_has_points (self->chart))
        x = kilt_chart_pixel_to_x (self->chart, width, height, px);
    }
  for_each_member (self, set_hover, &x);
}

double
kilt_chart_view_get_hover_x (KiltChartView *self)
{
  g_return_val_if_fail (KILT_IS_CHART_VIEW (self), NAN);
  return self->hover_data;
}

static void
on_motion (GtkEventControllerMotion *motion, double x, double y, KiltChartView *self)
{
  kilt_chart_view_hover (self, x);
}

static void
on_leave (GtkEventControllerMotion *motion, KiltChartView *self)
{
  kilt_chart_view_hover (self, -1);
}

static void
set_zoom (KiltChartView *view, gpointer data)
{
  const double *range = data;
  gboolean was;

  if (view->chart == NULL)
    return;
  was = kilt_chart_get_x_zoom (view->chart, NULL, NULL);

  kilt_chart_set_x_zoom (view->chart, range[0], range[1]);
  if (was || kilt_chart_get_x_zoom (view->chart, NULL, NULL))
    {
      update_description (view);
      gtk_widget_queue_draw (GTK_WIDGET (view));
      g_signal_emit (view, signals[ZOOM_CHANGED], 0);
    }
}

void
kilt_chart_view_zoom_to (KiltChartView *self, double lo, double hi)
{
  double range[2] = { MIN (lo, hi), MAX (lo, hi) };

  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  for_each_member (self, set_zoom, range);
}

gboolean
kilt_chart_view_zoom_pixels (KiltChartView *self, double px0, double px1)
{
  int width = gtk_widget_get_width (GTK_WIDGET (self));
  int height = gtk_widget_get_height (GTK_WIDGET (self));
  cairo_rectangle_t plot;
  double a, b;

  g_return_val_if_fail (KILT_IS_CHART_VIEW (self), FALSE);
  if (self->chart == NULL || !kilt_chart_can_zoom (self->chart)
      || !kilt_chart_has_points (self->chart) || fabs (px1 - px0) < DRAG_MIN_PX)
    return FALSE;
  kilt_chart_get_plot_area (self->chart, width, height, &plot);
  a = CLAMP (MIN (px0, px1), plot.x, plot.x + plot.width);
  b = CLAMP (MAX (px0, px1), plot.x, plot.x + plot.width);
  if (b - a < DRAG_MIN_PX)
    return FALSE;
  kilt_chart_view_zoom_to (self, kilt_chart_pixel_to_x (self->chart, width, height, a),
                           kilt_chart_pixel_to_x (self->chart, width, height, b));
  return TRUE;
}

void
kilt_chart_view_reset_zoom (KiltChartView *self)
{
  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  kilt_chart_view_zoom_to (self, NAN, NAN);
}

gboolean
kilt_chart_view_get_zoomed (KiltChartView *self)
{
  g_return_val_if_fail (KILT_IS_CHART_VIEW (self), FALSE);
  return self->chart && kilt_chart_get_x_zoom (self->chart, NULL, NULL);
}

static void
on_drag_begin (GtkGestureDrag *drag, double x, double y, KiltChartView *self)
{
  if (self->chart == NULL || !kilt_chart_can_zoom (self->chart)
      || !kilt_chart_has_points (self->chart))
    {
      gtk_gesture_set_state (GTK_GESTURE (drag), GTK_EVENT_SEQUENCE_DENIED);
      return;
    }
  self->drag_from = self->drag_to = x;
}

static void
on_drag_update (GtkGestureDrag *drag, double dx, double dy, KiltChartView *self)
{
  if (isnan (self->drag_from))
    return;
  self->drag_to = self->drag_from + dx;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
on_drag_end (GtkGestureDrag *drag, double dx, double dy, KiltChartView *self)
{
  double from = self->drag_from;

  if (isnan (from))
    return;
  self->drag_from = self->drag_to = NAN;
  kilt_chart_view_zoom_pixels (self, from, from + dx);
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
on_click (GtkGestureClick *click, int n_press, double x, double y, KiltChartView *self)
{
  if (n_press == 2)
    kilt_chart_view_reset_zoom (self);
}

void
kilt_chart_view_link (KiltChartView *self, KiltChartView *other)
{
  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  g_return_if_fail (KILT_IS_CHART_VIEW (other));
  g_return_if_fail (other->group == NULL);
  if (self->group == NULL)
    {
      self->group = g_new0 (Group, 1);
      g_atomic_ref_count_init (&self->group->ref);
      self->group->views = g_ptr_array_new ();
      g_ptr_array_add (self->group->views, self);
    }
  other->group = group_ref (self->group);
  g_ptr_array_add (self->group->views, other);
}

static void
kilt_chart_view_dispose (GObject *object)
{
  KiltChartView *self = KILT_CHART_VIEW (object);

  if (self->group)
    {
      g_ptr_array_remove (self->group->views, self);
      g_clear_pointer (&self->group, group_unref);
    }
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
  /* The x range shown changed (zoomed, or back to everything). */
  signals[ZOOM_CHANGED] = g_signal_new ("zoom-changed", G_TYPE_FROM_CLASS (klass),
                                        G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
kilt_chart_view_init (KiltChartView *self)
{
  GtkEventController *motion = gtk_event_controller_motion_new ();
  GtkGesture *drag = gtk_gesture_drag_new ();
  GtkGesture *click = gtk_gesture_click_new ();

  self->hover_data = NAN;
  self->drag_from = self->drag_to = NAN;
  g_signal_connect (motion, "motion", G_CALLBACK (on_motion), self);
  g_signal_connect (motion, "leave", G_CALLBACK (on_leave), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (drag), GDK_BUTTON_PRIMARY);
  g_signal_connect (drag, "drag-begin", G_CALLBACK (on_drag_begin), self);
  g_signal_connect (drag, "drag-update", G_CALLBACK (on_drag_update), self);
  g_signal_connect (drag, "drag-end", G_CALLBACK (on_drag_end), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drag));
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), GDK_BUTTON_PRIMARY);
  g_signal_connect (click, "pressed", G_CALLBACK (on_click), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (click));
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
kilt_chart_view_set_chart (KiltChartView *self, KiltChart *chart)
{
  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  g_return_if_fail (chart != NULL);
  if (chart == self->chart)
    return;
  kilt_chart_ref (chart);
  g_clear_pointer (&self->chart, kilt_chart_unref);
  self->chart = chart;
  self->drawn_serial = 0;
  update_description (self);
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
kilt_chart_view_update (KiltChartView *self)
{
  g_return_if_fail (KILT_IS_CHART_VIEW (self));
  if (self->chart == NULL)
    return;
  /* A linked chart follows the others' span: redraw the group when one of them changed. */
  if (kilt_chart_get_serial (self->chart) != self->drawn_serial || self->group)
    gtk_widget_queue_draw (GTK_WIDGET (self));
}

gboolean
kilt_chart_view_save (KiltChartView *self, const char *path, GError **error)
{
  int width, height;

  g_return_val_if_fail (KILT_IS_CHART_VIEW (self), FALSE);
  g_return_val_if_fail (self->chart != NULL, FALSE);
  width = MAX (gtk_widget_get_width (GTK_WIDGET (self)), 640);
  height = MAX (gtk_widget_get_height (GTK_WIDGET (self)), 360);
  return kilt_chart_save (self->chart, path, width, height, error);
}
