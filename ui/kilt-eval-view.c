/* How a trained run does per class: confusion matrix, per-class table, misclassified gallery. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-eval-view"

#include "kilt-eval-view.h"

#include "kilt-error.h"
#include "kilt-worker-client.h"

#include <math.h>
#include <string.h>

#define THUMB_SIDE   72
#define NAME_CHARS   14 /* class names longer than this are cut in the matrix */
#define CELL_MAX     40
#define CELL_MIN     16
#define MATRIX_SPAN  340 /* pixels the cells aim to fill */
#define CLASSIFY_TOP 3

struct _KiltEvalView
{
  GtkBox parent_instance;

  /* What is evaluated. */
  KiltWorkerJob job; /* the evaluate job; classify copies it */
  gint64 run_id;

  KiltWorkerClient *client;   /* the evaluation's worker, while it runs */
  KiltWorkerClient *classify; /* the classification's worker, while it runs */
  GCancellable *data_cancel;  /* the thumbnails' data load */
  KiltDataset *data;          /* for thumbnails, once loaded */
  KiltEvaluation *evaluation;
  char *error;
  char *classification;
  char *classify_path;
  guint gallery_size;

  GtkLabel *title;
  GtkLabel *summary;
  GtkLabel *error_label;
  GtkProgressBar *progress;
  GtkButton *cancel_button;
  GtkButton *classify_button;
  GtkWidget *figures; /* the matrix and table cards */
  GtkScrolledWindow *scroll;
  GtkDrawingArea *matrix;
  GtkGrid *table;
  GtkBox *classify_box;
  GtkPicture *classify_picture;
  GtkLabel *classify_label;
  GtkLabel *gallery_title;
  GtkFlowBox *gallery;
};

G_DEFINE_FINAL_TYPE (KiltEvalView, kilt_eval_view, GTK_TYPE_BOX)

static void
show_error (KiltEvalView *self, const char *message)
{
  if (message && self->evaluation == NULL)
    gtk_label_set_text (self->summary, "No evaluation: see why below");
  g_free (self->error);
  self->error = message ? g_strdup (message) : NULL;
  gtk_label_set_text (self->error_label, message ? message : "");
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), message != NULL);
}

static void
update_busy (KiltEvalView *self)
{
  gboolean busy = kilt_eval_view_get_busy (self);

  gtk_widget_set_visible (GTK_WIDGET (self->progress), busy);
  gtk_widget_set_visible (GTK_WIDGET (self->cancel_button), busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->classify_button),
                            self->classify == NULL && self->job.model_json != NULL);
}

/* ---- the confusion matrix, drawn with cairo ---- */

static char *
short_name (const char *name)
{
  if (g_utf8_strlen (name, -1) <= NAME_CHARS)
    return g_strdup (name);
  return g_strdup_printf ("%.*s…", (int)(g_utf8_offset_to_pointer (name, NAME_CHARS - 1) - name),
                          name);
}

static double
cell_size (guint n)
{
  return CLAMP (floor ((double)MATRIX_SPAN / MAX (n, 1)), CELL_MIN, CELL_MAX);
}

/* Margins for the names: left for the true classes, top for the predicted ones (turned). */
static void
matrix_margins (KiltEvalView *self, PangoLayout *layout, double *left, double *top)
{
  int widest = 0;

  for (guint c = 0; self->evaluation && c < self->evaluation->n_classes; c++)
    {
      g_autofree char *name = short_name (self->evaluation->class_names[c]);
      int w, h;
      pango_layout_set_text (layout, name, -1);
      pango_layout_get_pixel_size (layout, &w, &h);
      widest = MAX (widest, w);
    }
  *left = widest + 24;
  *top = widest + 24;
}

static void
draw_matrix (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  KiltEvalView *self = data;
  const KiltEvaluation *ev = self->evaluation;
  PangoLayout *layout;
  GdkRGBA fg;
  double left, top, cell;
  guint n;

  if (ev == NULL)
    return;
  n = ev->n_classes;
  cell = cell_size (n);
  /* GTK 4.8 has no gtk_widget_get_color (4.10): the style context gives the text colour. */
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  gtk_style_context_get_color (gtk_widget_get_style_context (GTK_WIDGET (area)), &fg);
  G_GNUC_END_IGNORE_DEPRECATIONS
  layout = gtk_widget_create_pango_layout (GTK_WIDGET (area), NULL);
  matrix_margins (self, layout, &left, &top);

  /* Axis titles, centred on the cells: columns are predicted classes, rows true ones. */
  {
    int w, h;
    gdk_cairo_set_source_rgba (cr, &fg);
    pango_layout_set_markup (layout, "<small>predicted class</small>", -1);
    pango_layout_get_pixel_size (layout, &w, &h);
    cairo_move_to (cr, left + (n * cell - w) / 2, 0);
    pango_cairo_show_layout (cr, layout);
    pango_layout_set_markup (layout, "<small>true class</small>", -1);
    pango_layout_get_pixel_size (layout, &w, &h);
    cairo_save (cr);
    cairo_move_to (cr, 0, top + (n * cell + w) / 2);
    cairo_rotate (cr, -G_PI / 2);
    pango_cairo_show_layout (cr, layout);
    cairo_restore (cr);
    pango_layout_set_attributes (layout, NULL);
  }

  for (guint t = 0; t < n; t++)
    {
      guint64 row = ev->support[t];
      for (guint p = 0; p < n; p++)
        {
          guint64 v = ev->confusion[(gsize)t * n + p];
          /* Shaded by the share of the true class's samples: a row reads as its recall. */
          double f = row ? (double)v / (double)row : 0;
          double x = left + p * cell, y = top + t * cell;
          if (t == p)
            cairo_set_source_rgba (cr, 0.15, 0.55, 0.25, 0.08 + 0.92 * f);
          else if (v)
            cairo_set_source_rgba (cr, 0.80, 0.20, 0.15, 0.12 + 0.88 * f);
          else /* an empty cell, faint, so that the grid reads */
            cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, 0.04);
          cairo_rectangle (cr, x, y, cell - 1, cell - 1);
          cairo_fill (cr);
          if (v && cell >= 20)
            {
              g_autofree char *text = g_strdup_printf ("%" G_GUINT64_FORMAT, v);
              int w, h;
              pango_layout_set_text (layout, text, -1);
              pango_layout_get_pixel_size (layout, &w, &h);
              if (w < cell - 2)
                {
                  if (f > 0.5)
                    cairo_set_source_rgb (cr, 1, 1, 1);
                  else
                    gdk_cairo_set_source_rgba (cr, &fg);
                  cairo_move_to (cr, x + (cell - 1 - w) / 2, y + (cell - 1 - h) / 2);
                  pango_cairo_show_layout (cr, layout);
                }
            }
        }
    }
  /* Grid lines around the cells. */
  gdk_cairo_set_source_rgba (cr, &(GdkRGBA){ fg.red, fg.green, fg.blue, 0.25 });
  cairo_set_line_width (cr, 1);
  cairo_rectangle (cr, left - 0.5, top - 0.5, n * cell, n * cell);
  cairo_stroke (cr);

  gdk_cairo_set_source_rgba (cr, &fg);
  for (guint c = 0; c < n; c++)
    {
      g_autofree char *name = short_name (ev->class_names[c]);
      int w, h;
      pango_layout_set_text (layout, name, -1);
      pango_layout_get_pixel_size (layout, &w, &h);
      /* True class at the left of its row, right-aligned. */
      cairo_move_to (cr, left - 6 - w, top + c * cell + (cell - h) / 2);
      pango_cairo_show_layout (cr, layout);
      /* Predicted class above its column, turned to read upwards. */
      cairo_save (cr);
      cairo_move_to (cr, left + c * cell + (cell - h) / 2, top - 6);
      cairo_rotate (cr, -G_PI / 2);
      pango_cairo_show_layout (cr, layout);
      cairo_restore (cr);
    }
  g_object_unref (layout);
  (void)width;
  (void)height;
}

static void
size_matrix (KiltEvalView *self)
{
  PangoLayout *layout = gtk_widget_create_pango_layout (GTK_WIDGET (self->matrix), NULL);
  double left, top, cell;
  guint n = self->evaluation ? self->evaluation->n_classes : 0;

  matrix_margins (self, layout, &left, &top);
  g_object_unref (layout);
  cell = cell_size (n);
  gtk_drawing_area_set_content_width (self->matrix, n ? (int)(left + n * cell + 8) : 0);
  gtk_drawing_area_set_content_height (self->matrix, n ? (int)(top + n * cell + 8) : 0);
  gtk_widget_queue_draw (GTK_WIDGET (self->matrix));
}

/* ---- the per-class table ---- */

static char *
percent (double v)
{
  return isnan (v) ? g_strdup ("–") : g_strdup_printf ("%.1f%%", 100 * v);
}

static void
table_cell (KiltEvalView *self, int col, int row, const char *text, gboolean numeric,
            gboolean heading)
{
  GtkWidget *l = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (l), numeric ? 1.0f : 0.0f);
  if (!numeric)
    {
      gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
      gtk_label_set_max_width_chars (GTK_LABEL (l), 18);
      gtk_widget_set_tooltip_text (l, text);
    }
  else
    gtk_widget_add_css_class (l, "numeric");
  if (heading)
    gtk_widget_add_css_class (l, "heading");
  gtk_grid_attach (self->table, l, col, row, 1, 1);
}

static void
fill_table (KiltEvalView *self)
{
  const KiltEvaluation *ev = self->evaluation;
  GtkWidget *child;
  /* A class's recall is its accuracy: the share of its samples classified right. */
  static const char *heads[] = { "Class", "Precision", "Recall", "F1", "Samples" };

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->table))))
    gtk_grid_remove (self->table, child);
  if (ev == NULL)
    return;
  for (guint i = 0; i < G_N_ELEMENTS (heads); i++)
    table_cell (self, (int)i, 0, heads[i], i > 0, TRUE);
  for (guint c = 0; c < ev->n_classes; c++)
    {
      g_autofree char *p = percent (ev->precision[c]), *r = percent (ev->recall[c]),
                      *f = percent (ev->f1[c]);
      g_autofree char *s = g_strdup_printf ("%" G_GUINT64_FORMAT, ev->support[c]);
      table_cell (self, 0, (int)c + 1, ev->class_names[c], FALSE, FALSE);
      table_cell (self, 1, (int)c + 1, p, TRUE, FALSE);
      table_cell (self, 2, (int)c + 1, r, TRUE, FALSE);
      table_cell (self, 3, (int)c + 1, f, TRUE, FALSE);
      table_cell (self, 4, (int)c + 1, s, TRUE, FALSE);
    }
  {
    g_autofree char *a = percent (ev->accuracy);
    g_autofree char *s = g_strdup_printf ("%" G_GUINT64_FORMAT, ev->n_samples);
    table_cell (self, 0, (int)ev->n_classes + 1, "All classes", FALSE, TRUE);
    table_cell (self, 2, (int)ev->n_classes + 1, a, TRUE, TRUE);
    table_cell (self, 4, (int)ev->n_classes + 1, s, TRUE, TRUE);
  }
}

/* ---- the gallery ---- */

static GdkTexture *
thumbnail (const KiltDataset *ds, KiltSplitKind kind, gsize index)
{
  g_autofree guint8 *rgba = g_malloc ((gsize)THUMB_SIDE * THUMB_SIDE * 4);
  g_autoptr (GBytes) bytes = NULL;

  if (!kilt_dataset_thumbnail_rgba (ds, kind, index, rgba, THUMB_SIDE, THUMB_SIDE))
    return NULL;
  bytes = g_bytes_new_take (g_steal_pointer (&rgba), (gsize)THUMB_SIDE * THUMB_SIDE * 4);
  return gdk_memory_texture_new (THUMB_SIDE, THUMB_SIDE, GDK_MEMORY_R8G8B8A8, bytes,
                                 THUMB_SIDE * 4);
}

static void
fill_gallery (KiltEvalView *self)
{
  const KiltEvaluation *ev = self->evaluation;
  guint shown;
  g_autofree char *title = NULL;

  {
    GtkWidget *child;
    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->gallery))))
      gtk_flow_box_remove (self->gallery, child);
  }
  self->gallery_size = 0;
  if (ev == NULL)
    return;
  shown = MIN (ev->misclassified->len, KILT_EVAL_VIEW_GALLERY_MAX);
  if (ev->n_samples == ev->correct)
    title = g_strdup ("No misclassified images: every test sample is right");
  else
    title = g_strdup_printf (
        "Misclassified %s images: %u of %" G_GUINT64_FORMAT ", most confident first%s",
        ev->split == KILT_SPLIT_VAL ? "validation" : "test", shown, ev->n_samples - ev->correct,
        self->data || self->data_cancel ? ""
                                        : " (no thumbnails: the data "
                                          "could not be loaded here)");
  gtk_label_set_text (self->gallery_title, title);
  for (guint i = 0; i < shown; i++)
    {
      const KiltMisclassified *m = &g_array_index (ev->misclassified, KiltMisclassified, i);
      GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      g_autoptr (GdkTexture) tex = self->data ? thumbnail (self->data, ev->split, m->index) : NULL;
      g_autofree char *tp = g_strdup_printf ("true: %s", ev->class_names[m->truth]);
      g_autofree char *pp = g_strdup_printf ("predicted: %s %.0f%%", ev->class_names[m->predicted],
                                             100.0 * m->probability);
      /* Which image it is: its file where the data set has one, else its place in the split. */
      g_autofree char *where = m->path ? g_filename_display_name (m->path)
                                       : g_strdup_printf ("sample %" G_GUINT64_FORMAT, m->index);
      g_autofree char *base = m->path ? g_filename_display_basename (m->path) : NULL;
      g_autofree char *tip
          = g_strdup_printf ("%s (sample %" G_GUINT64_FORMAT " of the %s split)\n%s\n%s", where,
                             m->index, kilt_split_kind_name (ev->split), tp, pp);
      GtkWidget *pic = tex ? gtk_picture_new_for_paintable (GDK_PAINTABLE (tex)) : NULL;
      GtkWidget *l1 = gtk_label_new (tp), *l2 = gtk_label_new (pp);
      GtkWidget *l3 = gtk_label_new (base ? base : where);

      if (pic)
        {
          gtk_widget_set_size_request (pic, THUMB_SIDE, THUMB_SIDE);
          gtk_picture_set_can_shrink (GTK_PICTURE (pic), FALSE);
          gtk_widget_set_halign (pic, GTK_ALIGN_CENTER);
          gtk_box_append (GTK_BOX (box), pic);
        }
      for (GtkWidget *l = l1; l; l = l == l1 ? l2 : NULL)
        {
          /* Two lines at most, so that a long class name does not hide the probability. */
          gtk_label_set_wrap (GTK_LABEL (l), TRUE);
          gtk_label_set_wrap_mode (GTK_LABEL (l), PANGO_WRAP_WORD_CHAR);
          gtk_label_set_lines (GTK_LABEL (l), 2);
          gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
          gtk_label_set_justify (GTK_LABEL (l), GTK_JUSTIFY_CENTER);
          gtk_label_set_max_width_chars (GTK_LABEL (l), 16);
          gtk_label_set_width_chars (GTK_LABEL (l), 12);
          gtk_widget_add_css_class (l, "caption");
          gtk_box_append (GTK_BOX (box), l);
        }
      gtk_widget_add_css_class (l2, "error");
      /* The file name, one line, shortened in the middle where the two ends tell them apart. */
      gtk_label_set_ellipsize (GTK_LABEL (l3), PANGO_ELLIPSIZE_MIDDLE);
      gtk_label_set_max_width_chars (GTK_LABEL (l3), 16);
      gtk_label_set_width_chars (GTK_LABEL (l3), 12);
      gtk_widget_add_css_class (l3, "caption");
      gtk_widget_add_css_class (l3, "dim-label");
      gtk_widget_set_name (l3, "sample-source");
      gtk_box_append (GTK_BOX (box), l3);
      gtk_widget_set_tooltip_text (box, tip);
      gtk_widget_set_size_request (box, 120, -1);
      gtk_flow_box_append (self->gallery, box);
      self->gallery_size++;
    }
}

static void
show_evaluation (KiltEvalView *self)
{
  const KiltEvaluation *ev = self->evaluation;
  g_autofree char *text = NULL;

  gtk_widget_set_visible (GTK_WIDGET (self->figures), ev != NULL);
  gtk_widget_set_visible (GTK_WIDGET (self->gallery_title), ev != NULL);
  if (ev == NULL)
    {
      size_matrix (self);
      fill_table (self);
      fill_gallery (self);
      return;
    }
  text = g_strdup_printf ("Accuracy %.1f%% on %" G_GUINT64_FORMAT " %s samples (%" G_GUINT64_FORMAT
                          " right), loss %.4f",
                          100 * ev->accuracy, ev->n_samples,
                          ev->split == KILT_SPLIT_VAL ? "validation" : "test", ev->correct,
                          ev->loss);
  gtk_label_set_text (self->summary, text);
  size_matrix (self);
  fill_table (self);
  fill_gallery (self);
}

/* ---- the worker ---- */

static void
on_eval_message (const KiltWorkerMessage *m, gpointer user_data)
{
  KiltEvalView *self = user_data;

  if (m->progress)
    {
      g_autofree char *text = g_strdup_printf (
          "%s %.0f%%", m->what && *m->what ? m->what : "working", 100 * m->fraction);
      gtk_progress_bar_set_fraction (self->progress, m->fraction);
      gtk_progress_bar_set_text (self->progress, text);
      return;
    }
  if (m->event && m->event->type == KILT_EVENT_FINISHED)
    show_error (self, m->event->error ? m->event->error->message : "The worker ended early");
  else if (m->task_end && m->task_error)
    show_error (self,
                g_error_matches (m->task_error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED)
                    ? "Evaluation cancelled"
                    : m->task_error->message);
  else if (m->task_end && m->evaluation)
    {
      g_autoptr (JsonNode) node = kilt_evaluation_to_json (m->evaluation, G_MAXUINT);
      g_autoptr (GError) error = NULL;
      kilt_evaluation_free (self->evaluation);
      self->evaluation = kilt_evaluation_from_json (node, &error);
      if (self->evaluation)
        show_evaluation (self);
      else
        show_error (self, error->message);
    }
  /* The client itself is freed by reap_clients (), outside its own callback. */
}

static void
on_classify_message (const KiltWorkerMessage *m, gpointer user_data)
{
  KiltEvalView *self = user_data;
  g_autofree char *text = NULL;

  if (m->progress)
    return;
  if (m->event && m->event->type == KILT_EVENT_FINISHED)
    show_error (self, m->event->error ? m->event->error->message : "The worker ended early");
  else if (m->task_end && m->task_error)
    show_error (self,
                g_error_matches (m->task_error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED)
                    ? "Classification cancelled"
                    : m->task_error->message);
  else if (m->task_end && m->scores)
    {
      GString *s = g_string_new (NULL);
      g_autofree guint *order = g_new (guint, m->n_scores);
      g_autofree char *base = g_path_get_basename (self->classify_path);
      guint k = MIN (CLASSIFY_TOP, m->n_scores);
      for (guint i = 0; i < m->n_scores; i++)
        order[i] = i;
      for (guint i = 0; i < k; i++)
        for (guint j = i + 1; j < m->n_scores; j++)
          if (m->scores[order[j]] > m->scores[order[i]])
            {
              guint t = order[i];
              order[i] = order[j];
              order[j] = t;
            }
      for (guint i = 0; i < k; i++)
        g_string_append_printf (s, "%s%s %.1f%%", i ? ", " : "", m->class_names[order[i]],
                                100.0 * m->scores[order[i]]);
      g_free (self->classification);
      self->classification = g_string_free (s, FALSE);
      {
        g_autofree char *escaped_base = g_markup_escape_text (base, -1);
        g_autofree char *escaped = g_markup_escape_text (self->classification, -1);
        text = g_strdup_printf ("<b>%s</b>\nTop classes: %s", escaped_base, escaped);
      }
      gtk_label_set_markup (self->classify_label, text);
      gtk_picture_set_filename (self->classify_picture, self->classify_path);
      gtk_widget_set_visible (GTK_WIDGET (self->classify_box), TRUE);
      show_error (self, NULL);
    }
}

/* Clients end once their job's last message came; they are freed outside their callback. */
static gboolean
reap_clients (gpointer data)
{
  KiltEvalView *self = data;

  if (self->client && !kilt_worker_client_is_running (self->client))
    g_clear_pointer (&self->client, kilt_worker_client_free);
  if (self->classify && !kilt_worker_client_is_running (self->classify))
    g_clear_pointer (&self->classify, kilt_worker_client_free);
  update_busy (self);
  return self->client || self->classify ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
watch_clients (KiltEvalView *self)
{
  g_timeout_add_full (G_PRIORITY_DEFAULT, 100, reap_clients, g_object_ref (self), g_object_unref);
}

/* ---- the data, here, for thumbnails ---- */

static void
load_data_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  KiltWorkerJob *job = task_data;
  GError *error = NULL;
  KiltDataset *ds
      = kilt_dataset_load (job->data.source, &job->data.options, NULL, NULL, cancel, &error);

  /* The split the evaluation saw: the trainer's validation split when there is no test one. */
  if (ds && ds->test.n == 0 && ds->val.n == 0 && job->config.val_fraction > 0
      && !kilt_dataset_split_validation (ds, job->config.val_fraction, job->config.seed, &error))
    g_clear_pointer (&ds, kilt_dataset_free);
  if (ds)
    g_task_return_pointer (task, ds, (GDestroyNotify)kilt_dataset_free);
  else
    g_task_return_error (task, error);
}

static void
data_loaded (GObject *source, GAsyncResult *res, gpointer user_data)
{
  KiltEvalView *self = KILT_EVAL_VIEW (source);
  g_autoptr (GError) error = NULL;
  KiltDataset *ds = g_task_propagate_pointer (G_TASK (res), &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)
      || g_error_matches (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED))
    return;
  g_clear_object (&self->data_cancel);
  kilt_dataset_free (self->data);
  self->data = ds;
  if (ds == NULL)
    g_message ("no thumbnails: %s", error->message);
  fill_gallery (self);
  update_busy (self);
}

static void
free_job (gpointer data)
{
  kilt_worker_job_clear (data);
  g_free (data);
}

static void
copy_job (KiltWorkerJob *dst, const KiltWorkerJob *src)
{
  g_autofree char *config = kilt_run_config_to_json (&src->config);

  memset (dst, 0, sizeof *dst);
  dst->task = src->task;
  dst->model_json = g_strdup (src->model_json);
  kilt_data_spec_copy (&dst->data, &src->data);
  if (!kilt_run_config_from_json (config, &dst->config, NULL))
    dst->config = kilt_train_config_default ();
  dst->db_path = g_strdup (src->db_path);
  dst->max_misclassified = src->max_misclassified;
  dst->file = g_strdup (src->file);
}

/* ---- API ---- */

gboolean
kilt_eval_view_evaluate (KiltEvalView *self, const KiltRun *run, GError **error)
{
  const char *ck = run->record.config.checkpoint_path;
  g_autofree char *config = NULL;
  g_autofree char *title = NULL;
  GTask *task;

  g_return_val_if_fail (KILT_IS_EVAL_VIEW (self), FALSE);
  {
    /* The data's name, not its whole description (which says every split's size). */
    g_autofree char *data
        = g_strdup (run->record.data_description ? run->record.data_description : "its data");
    char *comma = strstr (data, ", ");
    if (comma)
      *comma = '\0';
    title = g_strdup_printf ("Run #%" G_GINT64_FORMAT ": %s on %s", run->id,
                             run->record.model_name ? run->record.model_name : "model", data);
  }
  gtk_label_set_text (self->title, title);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->title), run->record.data_description);
  kilt_eval_view_cancel (self);
  g_clear_pointer (&self->client, kilt_worker_client_free);
  kilt_worker_job_clear (&self->job);
  g_clear_pointer (&self->evaluation, kilt_evaluation_free);
  show_evaluation (self);
  self->run_id = run->id;
  show_error (self, NULL);
  if (ck == NULL || !g_file_test (ck, G_FILE_TEST_IS_REGULAR))
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                 "Run #%" G_GINT64_FORMAT " kept no trained weights to evaluate%s%s", run->id,
                 ck ? ": its checkpoint is gone, " : "", ck ? ck : "");
  else if (run->record.model_json == NULL || run->record.data_spec == NULL)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                 "Run #%" G_GINT64_FORMAT " does not record its %s, so it cannot be evaluated",
                 run->id, run->record.model_json ? "data source" : "model");
  else if (kilt_data_spec_from_json (run->record.data_spec, &self->job.data, error))
    {
      config = kilt_run_config_to_json (&run->record.config);
      if (kilt_run_config_from_json (config, &self->job.config, error))
        {
          self->job.task = KILT_WORKER_TASK_EVALUATE;
          self->job.model_json = g_strdup (run->record.model_json);
          self->job.config.resume = FALSE;
          self->job.max_misclassified = KILT_EVAL_VIEW_MISCLASSIFIED_KEPT;
          self->client = kilt_worker_client_new (on_eval_message, self);
          if (!kilt_worker_client_start (self->client, &self->job, error))
            g_clear_pointer (&self->client, kilt_worker_client_free);
        }
    }
  if (self->client == NULL)
    {
      show_error (self, (*error)->message);
      update_busy (self);
      return FALSE;
    }
  gtk_progress_bar_set_fraction (self->progress, 0);
  gtk_progress_bar_set_text (self->progress, "starting the worker");
  gtk_label_set_text (self->summary, "Evaluating the checkpoint on the test split…");
  watch_clients (self);

  g_clear_pointer (&self->data, kilt_dataset_free);
  self->data_cancel = g_cancellable_new ();
  task = g_task_new (self, self->data_cancel, data_loaded, NULL);
  {
    KiltWorkerJob *copy = g_new0 (KiltWorkerJob, 1);
    copy_job (copy, &self->job);
    g_task_set_task_data (task, copy, free_job);
  }
  g_task_run_in_thread (task, load_data_thread);
  g_object_unref (task);
  update_busy (self);
  return TRUE;
}

void
kilt_eval_view_cancel (KiltEvalView *self)
{
  if (self->client && kilt_worker_client_is_running (self->client))
    kilt_worker_client_stop (self->client);
  if (self->classify && kilt_worker_client_is_running (self->classify))
    kilt_worker_client_stop (self->classify);
  if (self->data_cancel)
    {
      g_cancellable_cancel (self->data_cancel);
      g_clear_object (&self->data_cancel);
    }
  update_busy (self);
}

gboolean
kilt_eval_view_classify (KiltEvalView *self, const char *path, GError **error)
{
  KiltWorkerJob job;

  if (self->job.model_json == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "Choose a run to evaluate first");
      return FALSE;
    }
  if (self->classify)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "A file is being classified; wait for it or cancel");
      return FALSE;
    }
  copy_job (&job, &self->job);
  job.task = KILT_WORKER_TASK_CLASSIFY;
  g_free (job.file);
  job.file = g_strdup (path);
  g_free (self->classify_path);
  self->classify_path = g_strdup (path);
  self->classify = kilt_worker_client_new (on_classify_message, self);
  if (!kilt_worker_client_start (self->classify, &job, error))
    {
      g_clear_pointer (&self->classify, kilt_worker_client_free);
      show_error (self, (*error)->message);
      kilt_worker_job_clear (&job);
      return FALSE;
    }
  kilt_worker_job_clear (&job);
  gtk_progress_bar_set_text (self->progress, "classifying");
  gtk_progress_bar_pulse (self->progress);
  watch_clients (self);
  update_busy (self);
  return TRUE;
}

gboolean
kilt_eval_view_get_busy (KiltEvalView *self)
{
  return (self->client && kilt_worker_client_is_running (self->client))
         || (self->classify && kilt_worker_client_is_running (self->classify))
         || self->data_cancel != NULL;
}

const KiltEvaluation *
kilt_eval_view_get_evaluation (KiltEvalView *self)
{
  return self->evaluation;
}

const char *
kilt_eval_view_get_error (KiltEvalView *self)
{
  return self->error;
}

const char *
kilt_eval_view_get_classification (KiltEvalView *self)
{
  return self->classification;
}

guint
kilt_eval_view_get_gallery_size (KiltEvalView *self)
{
  return self->gallery_size;
}

const char *
kilt_eval_view_get_gallery_source (KiltEvalView *view, guint i)
{
  GtkFlowBoxChild *child;

  g_return_val_if_fail (KILT_IS_EVAL_VIEW (view), NULL);
  child = gtk_flow_box_get_child_at_index (view->gallery, (int)i);
  if (child == NULL)
    return NULL;
  for (GtkWidget *w = gtk_widget_get_first_child (gtk_flow_box_child_get_child (child)); w;
       w = gtk_widget_get_next_sibling (w))
    if (g_strcmp0 (gtk_widget_get_name (w), "sample-source") == 0)
      return gtk_label_get_text (GTK_LABEL (w));
  return NULL;
}

void
kilt_eval_view_scroll_to_gallery (KiltEvalView *self)
{
  GtkAdjustment *adj = gtk_scrolled_window_get_vadjustment (self->scroll);
  graphene_point_t at = { 0, 0 };

  if (gtk_widget_compute_point (GTK_WIDGET (self->gallery_title),
                                gtk_scrolled_window_get_child (self->scroll),
                                &GRAPHENE_POINT_INIT (0, 0), &at))
    /* The viewport's coordinates move with the scrolling: @at is from where it shows now. */
    gtk_adjustment_set_value (adj, gtk_adjustment_get_value (adj) + at.y - 12);
}

/* ---- the widget ---- */

static void
classify_response (GtkNativeDialog *native, int response, KiltEvalView *self)
{
  g_autoptr (GFile) file = NULL;
  g_autofree char *path = NULL;
  g_autoptr (GError) error = NULL;

  if (response == GTK_RESPONSE_ACCEPT)
    {
      file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (native));
      path = file ? g_file_get_path (file) : NULL;
      if (path == NULL)
        show_error (self, "Only local files can be classified");
      else if (!kilt_eval_view_classify (self, path, &error))
        show_error (self, error->message);
    }
  g_object_unref (native);
  g_object_unref (self);
}

static void
on_classify_clicked (KiltEvalView *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkFileChooserNative *native = gtk_file_chooser_native_new (
      "Classify an Image", GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
      GTK_FILE_CHOOSER_ACTION_OPEN, "_Classify", "_Cancel");
  g_autoptr (GtkFileFilter) filter = gtk_file_filter_new ();

  gtk_file_filter_set_name (filter, "Images");
  gtk_file_filter_add_pixbuf_formats (filter);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (native), filter);
  g_signal_connect (native, "response", G_CALLBACK (classify_response), g_object_ref (self));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (native), TRUE);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (native));
}

static void
kilt_eval_view_dispose (GObject *object)
{
  KiltEvalView *self = KILT_EVAL_VIEW (object);

  if (self->data_cancel)
    g_cancellable_cancel (self->data_cancel);
  g_clear_object (&self->data_cancel);
  /* A worker still running is asked to stop and left to end by itself. */
  g_clear_pointer (&self->client, kilt_worker_client_free);
  g_clear_pointer (&self->classify, kilt_worker_client_free);
  G_OBJECT_CLASS (kilt_eval_view_parent_class)->dispose (object);
}

static void
kilt_eval_view_finalize (GObject *object)
{
  KiltEvalView *self = KILT_EVAL_VIEW (object);

  kilt_worker_job_clear (&self->job);
  kilt_dataset_free (self->data);
  kilt_evaluation_free (self->evaluation);
  g_free (self->error);
  g_free (self->classification);
  g_free (self->classify_path);
  G_OBJECT_CLASS (kilt_eval_view_parent_class)->finalize (object);
}

static void
kilt_eval_view_class_init (KiltEvalViewClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = kilt_eval_view_dispose;
  G_OBJECT_CLASS (klass)->finalize = kilt_eval_view_finalize;
}

static GtkWidget *
card (const char *heading, GtkWidget *content)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 8);
  GtkWidget *h = gtk_label_new (heading);

  gtk_label_set_xalign (GTK_LABEL (h), 0);
  gtk_widget_add_css_class (h, "heading");
  gtk_box_append (GTK_BOX (box), h);
  gtk_box_append (GTK_BOX (box), content);
  gtk_widget_add_css_class (box, "card");
  gtk_widget_set_margin_start (content, 12);
  gtk_widget_set_margin_end (content, 12);
  gtk_widget_set_margin_bottom (content, 12);
  gtk_widget_set_margin_start (h, 12);
  gtk_widget_set_margin_top (h, 12);
  gtk_widget_set_valign (box, GTK_ALIGN_START);
  return box;
}

static void
kilt_eval_view_init (KiltEvalView *self)
{
  GtkWidget *header = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  GtkWidget *titles = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
  GtkWidget *scroll = gtk_scrolled_window_new ();
  GtkWidget *body = gtk_box_new (GTK_ORIENTATION_VERTICAL, 12);
  GtkWidget *top = gtk_flow_box_new ();

  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (GTK_BOX (self), 6);

  self->title = GTK_LABEL (gtk_label_new ("Evaluation"));
  gtk_widget_add_css_class (GTK_WIDGET (self->title), "title-3");
  gtk_label_set_wrap (self->title, TRUE);
  gtk_label_set_xalign (self->title, 0);
  self->summary = GTK_LABEL (gtk_label_new (""));
  gtk_label_set_xalign (self->summary, 0);
  gtk_label_set_wrap (self->summary, TRUE);
  gtk_box_append (GTK_BOX (titles), GTK_WIDGET (self->title));
  gtk_box_append (GTK_BOX (titles), GTK_WIDGET (self->summary));
  gtk_widget_set_hexpand (titles, TRUE);
  gtk_box_append (GTK_BOX (header), titles);

  self->progress = GTK_PROGRESS_BAR (gtk_progress_bar_new ());
  gtk_progress_bar_set_show_text (self->progress, TRUE);
  gtk_widget_set_valign (GTK_WIDGET (self->progress), GTK_ALIGN_CENTER);
  gtk_widget_set_size_request (GTK_WIDGET (self->progress), 160, -1);
  gtk_box_append (GTK_BOX (header), GTK_WIDGET (self->progress));
  self->cancel_button = GTK_BUTTON (gtk_button_new_with_mnemonic ("_Cancel"));
  gtk_widget_set_valign (GTK_WIDGET (self->cancel_button), GTK_ALIGN_CENTER);
  g_signal_connect_swapped (self->cancel_button, "clicked", G_CALLBACK (kilt_eval_view_cancel),
                            self);
  gtk_box_append (GTK_BOX (header), GTK_WIDGET (self->cancel_button));
  self->classify_button = GTK_BUTTON (gtk_button_new_with_mnemonic ("C_lassify a File…"));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->classify_button),
                               "Run an image of your own through this run's model: its top "
                               "three classes");
  gtk_widget_set_valign (GTK_WIDGET (self->classify_button), GTK_ALIGN_CENTER);
  g_signal_connect_swapped (self->classify_button, "clicked", G_CALLBACK (on_classify_clicked),
                            self);
  gtk_box_append (GTK_BOX (header), GTK_WIDGET (self->classify_button));
  gtk_widget_set_margin_start (header, 18);
  gtk_widget_set_margin_end (header, 18);
  gtk_widget_set_margin_top (header, 12);
  gtk_box_append (GTK_BOX (self), header);

  self->error_label = GTK_LABEL (gtk_label_new (""));
  gtk_label_set_wrap (self->error_label, TRUE);
  gtk_label_set_xalign (self->error_label, 0);
  gtk_label_set_selectable (self->error_label, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->error_label), "error");
  gtk_widget_set_margin_start (GTK_WIDGET (self->error_label), 18);
  gtk_widget_set_margin_end (GTK_WIDGET (self->error_label), 18);
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), FALSE);
  gtk_box_append (GTK_BOX (self), GTK_WIDGET (self->error_label));

  /* The matrix and the table side by side where they fit, else one above the other. */
  gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (top), GTK_SELECTION_NONE);
  gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (top), 2);
  gtk_flow_box_set_column_spacing (GTK_FLOW_BOX (top), 12);
  gtk_flow_box_set_row_spacing (GTK_FLOW_BOX (top), 12);
  self->matrix = GTK_DRAWING_AREA (gtk_drawing_area_new ());
  gtk_drawing_area_set_draw_func (self->matrix, draw_matrix, self, NULL);
  gtk_widget_set_halign (GTK_WIDGET (self->matrix), GTK_ALIGN_START);
  gtk_flow_box_append (
      GTK_FLOW_BOX (top),
      card ("Confusion matrix (shaded by share of the true class)", GTK_WIDGET (self->matrix)));
  self->table = GTK_GRID (gtk_grid_new ());
  gtk_grid_set_column_spacing (self->table, 16);
  gtk_grid_set_row_spacing (self->table, 4);
  gtk_flow_box_append (GTK_FLOW_BOX (top), card ("Per class", GTK_WIDGET (self->table)));
  gtk_box_append (GTK_BOX (body), top);
  self->figures = top;

  self->classify_box = GTK_BOX (gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12));
  self->classify_picture = GTK_PICTURE (gtk_picture_new ());
  gtk_widget_set_size_request (GTK_WIDGET (self->classify_picture), THUMB_SIDE, THUMB_SIDE);
  self->classify_label = GTK_LABEL (gtk_label_new (""));
  gtk_label_set_wrap (self->classify_label, TRUE);
  gtk_widget_set_hexpand (GTK_WIDGET (self->classify_label), TRUE);
  gtk_label_set_xalign (self->classify_label, 0);
  gtk_box_append (self->classify_box, GTK_WIDGET (self->classify_picture));
  gtk_box_append (self->classify_box, GTK_WIDGET (self->classify_label));
  gtk_widget_set_visible (GTK_WIDGET (self->classify_box), FALSE);
  gtk_box_append (GTK_BOX (body), card ("Classified file", GTK_WIDGET (self->classify_box)));
  gtk_widget_set_visible (gtk_widget_get_parent (GTK_WIDGET (self->classify_box)), FALSE);
  g_object_bind_property (self->classify_box, "visible",
                          gtk_widget_get_parent (GTK_WIDGET (self->classify_box)), "visible",
                          G_BINDING_DEFAULT);

  self->gallery_title = GTK_LABEL (gtk_label_new (""));
  gtk_label_set_xalign (self->gallery_title, 0);
  gtk_label_set_wrap (self->gallery_title, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->gallery_title), "heading");
  gtk_box_append (GTK_BOX (body), GTK_WIDGET (self->gallery_title));
  self->gallery = GTK_FLOW_BOX (gtk_flow_box_new ());
  gtk_flow_box_set_selection_mode (self->gallery, GTK_SELECTION_NONE);
  gtk_flow_box_set_max_children_per_line (self->gallery, 12);
  gtk_flow_box_set_homogeneous (self->gallery, TRUE);
  gtk_box_append (GTK_BOX (body), GTK_WIDGET (self->gallery));

  gtk_widget_set_margin_start (body, 18);
  gtk_widget_set_margin_end (body, 18);
  gtk_widget_set_margin_bottom (body, 18);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroll), body);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroll), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_widget_set_vexpand (scroll, TRUE);
  gtk_box_append (GTK_BOX (self), scroll);
  self->scroll = GTK_SCROLLED_WINDOW (scroll);
  show_evaluation (self);
  update_busy (self);
}

GtkWidget *
kilt_eval_view_new (void)
{
  return g_object_new (KILT_TYPE_EVAL_VIEW, NULL);
}
