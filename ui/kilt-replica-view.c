/* The Train page's card for a run on several devices. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-replica-view"

#include "kilt-replica-view.h"
#include "kilt-format.h"

#include <math.h>

#define N_COLUMNS 5

struct _KiltReplicaView
{
  GtkBox parent_instance;

  GtkGrid *grid;
  GtkLabel *summary;
  guint n_rows;
  guint asked; /* the most devices a report of this run named */
};

G_DEFINE_FINAL_TYPE (KiltReplicaView, kilt_replica_view, GTK_TYPE_BOX)

static const char *const heads[N_COLUMNS]
    = { "Device", "Rows per batch", "Alone at its rows", "Busy", "Memory (peak)" };

static void
add_cell (KiltReplicaView *self, guint row, guint col, const char *text, gboolean heading)
{
  GtkWidget *l = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (l), col == 0 ? 0 : 1);
  if (col == 0)
    {
      gtk_widget_set_hexpand (l, TRUE);
      gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_MIDDLE);
      gtk_widget_set_tooltip_text (l, text);
    }
  if (heading)
    gtk_widget_add_css_class (l, "heading");
  gtk_grid_attach (self->grid, l, (int)col, (int)row, 1, 1);
}

void
kilt_replica_view_reset (KiltReplicaView *self)
{
  GtkWidget *child;

  g_return_if_fail (KILT_IS_REPLICA_VIEW (self));
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->grid))))
    gtk_grid_remove (self->grid, child);
  self->n_rows = 0;
  self->asked = 0;
  gtk_label_set_text (self->summary, "");
  gtk_widget_set_visible (GTK_WIDGET (self), FALSE);
}

void
kilt_replica_view_update (KiltReplicaView *self, const KiltReplicaShare *replicas, guint n,
                          double dist_step_ms, double alone_step_ms)
{
  GtkWidget *child;
  g_autofree char *summary = NULL;
  guint rows = 0;

  g_return_if_fail (KILT_IS_REPLICA_VIEW (self));
  self->asked = MAX (self->asked, n);
  /* One device of one asked: nothing to show. */
  if (n == 0 || self->asked < 2)
    return;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->grid))))
    gtk_grid_remove (self->grid, child);
  for (guint c = 0; c < N_COLUMNS; c++)
    add_cell (self, 0, c, heads[c], TRUE);
  for (guint i = 0; i < n; i++)
    {
      const KiltReplicaShare *r = &replicas[i];
      g_autofree char *name = g_strdup_printf ("[%u] %s", i, r->device_name);
      g_autofree char *rows_text = kilt_format_thousands (r->share);
      g_autofree char *sps = kilt_format_thousands ((guint64)MAX (r->samples_per_second, 0));
      g_autofree char *speed = g_strdup_printf ("%s samples/s", sps);
      g_autofree char *busy = isfinite (r->busy_percent)
                                  ? g_strdup_printf ("%.0f%%", r->busy_percent)
                                  : g_strdup ("–");
      g_autofree char *live = r->live_bytes >= 0 ? g_format_size_full ((guint64)r->live_bytes,
                                                                       G_FORMAT_SIZE_IEC_UNITS)
                                                 : NULL;
      g_autofree char *peak = r->peak_bytes >= 0 ? g_format_size_full ((guint64)r->peak_bytes,
                                                                       G_FORMAT_SIZE_IEC_UNITS)
                                                 : NULL;
      g_autofree char *mem
          = live && peak ? g_strdup_printf ("%s (%s)", live, peak) : g_strdup ("–");
      add_cell (self, i + 1, 0, name, FALSE);
      add_cell (self, i + 1, 1, rows_text, FALSE);
      add_cell (self, i + 1, 2, r->samples_per_second > 0 ? speed : "–", FALSE);
      add_cell (self, i + 1, 3, busy, FALSE);
      add_cell (self, i + 1, 4, mem, FALSE);
      rows++;
    }
  self->n_rows = rows;
  if (n == 1 && dist_step_ms > 0 && alone_step_ms > 0)
    summary = g_strdup_printf ("Training on %s alone: a step takes %.2f ms there, %.2f ms with "
                               "all %u devices",
                               replicas[0].device_name, alone_step_ms, dist_step_ms, self->asked);
  else if (n > 1 && dist_step_ms > 0 && alone_step_ms > 0)
    summary = g_strdup_printf ("A step takes %.2f ms on all %u devices, %.2f ms on the fastest "
                               "alone: %.2fx",
                               dist_step_ms, n, alone_step_ms, alone_step_ms / dist_step_ms);
  else if (n > 1)
    summary = g_strdup_printf ("Rows of every batch follow each device's measured speed; busy is "
                               "measured on sampled steps");
  if (summary)
    gtk_label_set_text (self->summary, summary);
  gtk_widget_set_visible (GTK_WIDGET (self), TRUE);
}

const char *
kilt_replica_view_get_summary (KiltReplicaView *self)
{
  g_return_val_if_fail (KILT_IS_REPLICA_VIEW (self), NULL);
  return gtk_label_get_text (self->summary);
}

const char *
kilt_replica_view_get_cell (KiltReplicaView *self, guint row, guint col)
{
  GtkWidget *w;

  g_return_val_if_fail (KILT_IS_REPLICA_VIEW (self), NULL);
  if (row >= self->n_rows || col >= N_COLUMNS)
    return NULL;
  w = gtk_grid_get_child_at (self->grid, (int)col, (int)row + 1);
  return w ? gtk_label_get_text (GTK_LABEL (w)) : NULL;
}

static void
kilt_replica_view_class_init (KiltReplicaViewClass *klass)
{
  gtk_widget_class_set_accessible_role (GTK_WIDGET_CLASS (klass), GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
kilt_replica_view_init (KiltReplicaView *self)
{
  GtkWidget *title = gtk_label_new ("Devices");
  GtkWidget *frame = gtk_frame_new (NULL);
  GtkWidget *inner = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);

  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (GTK_BOX (self), 6);
  gtk_label_set_xalign (GTK_LABEL (title), 0);
  gtk_widget_add_css_class (title, "heading");
  gtk_box_append (GTK_BOX (self), title);

  self->grid = GTK_GRID (gtk_grid_new ());
  gtk_grid_set_column_spacing (self->grid, 18);
  gtk_grid_set_row_spacing (self->grid, 4);
  gtk_widget_add_css_class (GTK_WIDGET (self->grid), "layer-table");
  self->summary = GTK_LABEL (gtk_label_new (""));
  gtk_label_set_xalign (self->summary, 0);
  gtk_label_set_wrap (self->summary, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->summary), "dim-label");
  gtk_widget_set_margin_start (inner, 12);
  gtk_widget_set_margin_end (inner, 12);
  gtk_widget_set_margin_top (inner, 10);
  gtk_widget_set_margin_bottom (inner, 10);
  gtk_box_append (GTK_BOX (inner), GTK_WIDGET (self->grid));
  gtk_box_append (GTK_BOX (inner), GTK_WIDGET (self->summary));
  gtk_frame_set_child (GTK_FRAME (frame), inner);
  gtk_box_append (GTK_BOX (self), frame);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  "Devices of this run", -1);
  gtk_widget_set_visible (GTK_WIDGET (self), FALSE);
}

GtkWidget *
kilt_replica_view_new (void)
{
  return g_object_new (KILT_TYPE_REPLICA_VIEW, NULL);
}
