/* The window's Runs page: the run history as a table, and a comparison of the selected runs. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-runs-page"

#include "kilt-runs-page.h"
#include "kilt-chart-view.h"
#include "kilt-eval-view.h"
#include "kilt-runs-resources.h"
#include "kilt-error.h"
#include "kilt-model-export.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ---- a run in the list model ---- */

#define KILT_TYPE_RUN_ITEM (kilt_run_item_get_type ())
G_DECLARE_FINAL_TYPE (KiltRunItem, kilt_run_item, KILT, RUN_ITEM, GObject)

struct _KiltRunItem
{
  GObject parent_instance;
  KiltRun *run;
  char *haystack; /* case-folded text the filter searches */
};

G_DEFINE_FINAL_TYPE (KiltRunItem, kilt_run_item, G_TYPE_OBJECT)

static void
kilt_run_item_finalize (GObject *object)
{
  KiltRunItem *self = KILT_RUN_ITEM (object);
  kilt_run_free (self->run);
  g_free (self->haystack);
  G_OBJECT_CLASS (kilt_run_item_parent_class)->finalize (object);
}

static void
kilt_run_item_class_init (KiltRunItemClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = kilt_run_item_finalize;
}

static void
kilt_run_item_init (KiltRunItem *self)
{
}

static KiltRunItem *
kilt_run_item_new (KiltRun *run)
{
  KiltRunItem *self = g_object_new (KILT_TYPE_RUN_ITEM, NULL);
  const KiltRunRecord *r = &run->record;
  GString *s = g_string_new (NULL);

  self->run = run;
  g_string_append_printf (
      s, "#%" G_GINT64_FORMAT " %s %s %s %s %s", run->id, r->name,
      r->model_name ? r->model_name : "", r->data_description ? r->data_description : "",
      r->device_name ? r->device_name : "", kilt_run_store_status_name (run->status));
  for (guint i = 0; i < run->tags->len; i++)
    g_string_append_printf (s, " %s", (char *)run->tags->pdata[i]);
  self->haystack = g_utf8_casefold (s->str, -1);
  g_string_free (s, TRUE);
  return self;
}

/* ---- the columns ---- */

typedef enum
{
  COL_ID,
  COL_DATE,
  COL_NAME,
  COL_STATUS,
  COL_MODEL,
  COL_DATA,
  COL_DEVICE,
  COL_EPOCHS,
  COL_BEST_VAL,
  COL_PER_EPOCH,
  COL_TOTAL,
  COL_TAGS,
  N_COLS
} Column;

/* @chars: the narrowest a column gets, in characters; text columns with more to say are
 * shortened with "…" beyond that and show the whole text as a tooltip. Where the columns do
 * not fit the window, the table scrolls sideways rather than cutting every name. */
static const struct
{
  const char *title;
  gboolean numeric;
  gboolean expand;
  int chars;
} columns[N_COLS] = {
  [COL_ID] = { "Run", TRUE, FALSE, 4 },
  [COL_DATE] = { "Date", FALSE, FALSE, 16 },
  [COL_NAME] = { "Name", FALSE, TRUE, 18 },
  [COL_STATUS] = { "Status", FALSE, FALSE, 8 },
  [COL_MODEL] = { "Model", FALSE, FALSE, 11 },
  [COL_DATA] = { "Data", FALSE, TRUE, 14 },
  [COL_DEVICE] = { "Device", FALSE, TRUE, 16 },
  [COL_EPOCHS] = { "Epochs", TRUE, FALSE, 6 },
  [COL_BEST_VAL] = { "Best val acc", TRUE, FALSE, 7 },
  [COL_PER_EPOCH] = { "Time/epoch", TRUE, FALSE, 7 },
  [COL_TOTAL] = { "Total time", TRUE, FALSE, 7 },
  [COL_TAGS] = { "Tags", FALSE, FALSE, 8 },
};

static double
column_number (const KiltRun *run, Column col)
{
  switch (col)
    {
      case COL_ID:
        return (double)run->id;
      case COL_DATE:
        return (double)run->started_at;
      case COL_EPOCHS:
        return run->epochs->len;
      case COL_BEST_VAL:
        return kilt_run_best_val_accuracy (run);
      case COL_PER_EPOCH:
        return kilt_run_mean_epoch_seconds (run);
      case COL_TOTAL:
        return kilt_run_train_seconds (run);
      default:
        return NAN;
    }
}

static char *
format_duration (double s)
{
  if (isnan (s))
    return g_strdup ("–");
  if (s >= 3600)
    return g_strdup_printf ("%d:%02d:%02d", (int)(s / 3600), (int)fmod (s / 60, 60),
                            (int)fmod (s, 60));
  if (s >= 60)
    return g_strdup_printf ("%d:%02d", (int)(s / 60), (int)fmod (s, 60));
  return g_strdup_printf ("%.1f s", s);
}

static char *
column_text (const KiltRun *run, Column col)
{
  const KiltRunRecord *r = &run->record;

  switch (col)
    {
      case COL_ID:
        return g_strdup_printf ("#%" G_GINT64_FORMAT, run->id);
      case COL_DATE:
        {
          g_autoptr (GDateTime) dt
              = g_date_time_new_from_unix_local (run->started_at / G_USEC_PER_SEC);
          return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M") : g_strdup ("–");
        }
      case COL_NAME:
        return g_strdup (r->name);
      case COL_STATUS:
        return g_strdup (kilt_run_store_status_name (run->status));
      case COL_MODEL:
        return g_strdup (r->model_name ? r->model_name : "–");
      case COL_DATA:
        return g_strdup (r->data_description ? r->data_description : "–");
      case COL_DEVICE:
        return g_strdup (r->device_name ? r->device_name : "–");
      case COL_EPOCHS:
        return g_strdup_printf ("%u", run->epochs->len);
      case COL_BEST_VAL:
        {
          double v = kilt_run_best_val_accuracy (run);
          return isnan (v) ? g_strdup ("–") : g_strdup_printf ("%.2f%%", v * 100);
        }
      case COL_PER_EPOCH:
        return format_duration (kilt_run_mean_epoch_seconds (run));
      case COL_TOTAL:
        return format_duration (kilt_run_train_seconds (run));
      case COL_TAGS:
        {
          GString *s = g_string_new (NULL);
          for (guint i = 0; i < run->tags->len; i++)
            g_string_append_printf (s, "%s%s", i ? ", " : "", (char *)run->tags->pdata[i]);
          return g_string_free (s, FALSE);
        }
      default:
        return g_strdup ("");
    }
}

/* ---- the page ---- */

struct _KiltRunsPage
{
  AdwBin parent_instance;

  AdwToastOverlay *toasts;
  GtkSearchEntry *search;
  GtkColumnView *table;
  GtkStack *compare_stack;
  AdwStatusPage *empty_status;
  GtkDropDown *chart_choice;
  GtkDropDown *x_choice;
  GtkWidget *x_label;
  GtkDropDown *baseline_choice;
  KiltChartView *chart_view;
  GtkBox *tables_box;

  char *db_path;
  KiltRunStore *store; /* this thread's connection */
  GListStore *items;
  GtkCustomFilter *filter;
  GtkFilterListModel *filtered;
  GtkSortListModel *sorted;
  GtkMultiSelection *selection;
  GtkColumnViewColumn *cols[N_COLS];
  char *filter_text;   /* case-folded */
  GPtrArray *selected; /* KiltRun, borrowed from the items, in table order */
  GtkStringList *baseline_list;
  gint64 baseline_id;
  gboolean updating_baseline;
  GtkWindow *eval_window; /* the evaluation view's window while open (weak) */
  KiltEvalView *eval_view;
};

G_DEFINE_FINAL_TYPE (KiltRunsPage, kilt_runs_page, ADW_TYPE_BIN)

enum
{
  SIGNAL_RUN_AGAIN,
  SIGNAL_RESUME,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void
toast (KiltRunsPage *self, const char *text)
{
  adw_toast_overlay_add_toast (self->toasts, adw_toast_new (text));
}

static gboolean
filter_func (gpointer item, gpointer user_data)
{
  KiltRunsPage *self = user_data;
  return self->filter_text == NULL || *self->filter_text == '\0'
         || strstr (KILT_RUN_ITEM (item)->haystack, self->filter_text) != NULL;
}

static int
compare_func (gconstpointer a, gconstpointer b, gpointer user_data)
{
  Column col = GPOINTER_TO_INT (user_data);
  const KiltRun *ra = KILT_RUN_ITEM ((gpointer)a)->run;
  const KiltRun *rb = KILT_RUN_ITEM ((gpointer)b)->run;
  double x = column_number (ra, col), y = column_number (rb, col);

  if (!isnan (x) || !isnan (y) || col == COL_DATE || col == COL_ID)
    {
      /* Runs without the figure sort after those with it. */
      if (isnan (x) != isnan (y))
        return isnan (x) ? 1 : -1;
      return x < y ? -1 : x > y ? 1 : 0;
    }
  {
    g_autofree char *s = column_text (ra, col);
    g_autofree char *t = column_text (rb, col);
    return g_utf8_collate (s, t);
  }
}

static void
setup_cell (GtkSignalListItemFactory *factory, GtkListItem *item, gpointer user_data)
{
  Column col = GPOINTER_TO_INT (user_data);
  GtkWidget *label = gtk_label_new (NULL);

  gtk_label_set_xalign (GTK_LABEL (label), columns[col].numeric ? 1 : 0);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
  gtk_label_set_width_chars (GTK_LABEL (label), columns[col].chars);
  if (columns[col].numeric)
    gtk_widget_add_css_class (label, "numeric");
  gtk_list_item_set_child (item, label);
}

static void
bind_cell (GtkSignalListItemFactory *factory, GtkListItem *item, gpointer user_data)
{
  Column col = GPOINTER_TO_INT (user_data);
  KiltRunItem *run_item = gtk_list_item_get_item (item);
  g_autofree char *text = column_text (run_item->run, col);
  GtkWidget *label = gtk_list_item_get_child (item);

  gtk_label_set_text (GTK_LABEL (label), text);
  if (col == COL_STATUS && (run_item->run->error_message || run_item->run->notes))
    {
      /* What went wrong, and what changed on the way (a smaller batch after running out of
       * device memory). */
      g_autofree char *tip = g_strjoin (
          "\n", run_item->run->error_message ? run_item->run->error_message : run_item->run->notes,
          run_item->run->error_message ? run_item->run->notes : NULL, NULL);
      gtk_widget_set_tooltip_text (label, tip);
    }
  else if (!columns[col].numeric && col != COL_DATE && col != COL_STATUS)
    gtk_widget_set_tooltip_text (label, text);
  else
    gtk_widget_set_tooltip_text (label, NULL);
}

static void
build_columns (KiltRunsPage *self)
{
  for (int c = 0; c < N_COLS; c++)
    {
      GtkListItemFactory *factory = gtk_signal_list_item_factory_new ();
      GtkSorter *sorter
          = GTK_SORTER (gtk_custom_sorter_new (compare_func, GINT_TO_POINTER (c), NULL));
      GtkColumnViewColumn *col;

      g_signal_connect (factory, "setup", G_CALLBACK (setup_cell), GINT_TO_POINTER (c));
      g_signal_connect (factory, "bind", G_CALLBACK (bind_cell), GINT_TO_POINTER (c));
      col = gtk_column_view_column_new (columns[c].title, factory);
      gtk_column_view_column_set_sorter (col, sorter);
      gtk_column_view_column_set_resizable (col, TRUE);
      gtk_column_view_column_set_expand (col, columns[c].expand);
      gtk_column_view_append_column (self->table, col);
      self->cols[c] = col;
      g_object_unref (sorter);
    }
}

/* ---- comparison ---- */

static KiltReportOptions
report_options (KiltRunsPage *self)
{
  KiltReportOptions o = { .runs = self->selected };

  for (guint i = 0; i < self->selected->len; i++)
    if (((KiltRun *)self->selected->pdata[i])->id == self->baseline_id)
      o.baseline = self->selected->pdata[i];
  o.chart = (KiltReportChart)gtk_drop_down_get_selected (self->chart_choice);
  /* The choice lists Epoch, Step, Time. */
  o.x_steps = gtk_drop_down_get_selected (self->x_choice) == 1;
  o.x_wall_time = gtk_drop_down_get_selected (self->x_choice) == 2;
  return o;
}

/* The chart of the selected runs, built again whenever they or the options change; the view
 * draws it with the hover read-out and zoom of the Train page's charts. */
static void
rebuild_chart (KiltRunsPage *self)
{
  KiltReportOptions o = report_options (self);
  g_autoptr (KiltChart) chart = NULL;

  if (self->selected->len == 0)
    chart = kilt_chart_new (NULL);
  else
    chart = kilt_report_chart_new (&o, o.chart);
  kilt_chart_view_set_chart (self->chart_view, chart);
}

/* @t as a grid; @only: the header names of the columns to show (NULL: all); @short_header:
 * columns headed by runs show only their ids. */
static GtkWidget *
table_widget (const KiltReportTable *t, const char *const *only, gboolean short_header)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  GtkWidget *title = gtk_label_new (t->title);
  GtkWidget *grid = gtk_grid_new ();

  gtk_widget_add_css_class (title, "heading");
  gtk_label_set_xalign (GTK_LABEL (title), 0);
  gtk_label_set_wrap (GTK_LABEL (title), TRUE);
  gtk_box_append (GTK_BOX (box), title);
  if (t->note)
    {
      GtkWidget *note = gtk_label_new (t->note);
      gtk_widget_add_css_class (note, "dim-label");
      gtk_label_set_wrap (GTK_LABEL (note), TRUE);
      gtk_label_set_max_width_chars (GTK_LABEL (note), 44);
      gtk_label_set_xalign (GTK_LABEL (note), 0);
      gtk_box_append (GTK_BOX (box), note);
    }
  gtk_grid_set_column_spacing (GTK_GRID (grid), 12);
  gtk_grid_set_row_spacing (GTK_GRID (grid), 2);
  /* The columns to show, in @only's order. */
  g_autoptr (GArray) cols = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint k = 0; only && only[k]; k++)
    for (guint c = 0; c < t->header->len; c++)
      if (g_strcmp0 (t->header->pdata[c], only[k]) == 0)
        g_array_append_val (cols, c);
  for (guint c = 0; only == NULL && c < t->header->len; c++)
    g_array_append_val (cols, c);
  for (guint r = 0; r <= t->rows->len; r++)
    {
      GPtrArray *row = r == 0 ? t->header : t->rows->pdata[r - 1];
      for (guint k = 0; k < cols->len; k++)
        {
          guint c = g_array_index (cols, guint, k);
          GtkWidget *cell;
          if (c >= row->len)
            continue;
          if (r == 0 && c > 0 && short_header && g_str_has_prefix (row->pdata[c], "#"))
            {
              /* "#10 mlp on …": the run's id heads its column, the name is its tooltip. */
              g_autofree char *id = g_strndup (row->pdata[c], strcspn (row->pdata[c], " "));
              cell = gtk_label_new (id);
              gtk_widget_set_tooltip_text (cell, row->pdata[c]);
            }
          else
            cell = gtk_label_new (row->pdata[c]);
          gtk_label_set_xalign (GTK_LABEL (cell), c == 0 ? 0 : 1);
          gtk_label_set_selectable (GTK_LABEL (cell), TRUE);
          if (c == 0 && only && r > 0 && g_str_has_prefix (row->pdata[c], "#"))
            {
              /* Run names are long and in the table, the legend and "What differs": the
               * summary names its rows by id, so its figures fit beside the chart. */
              g_autofree char *id = g_strndup (row->pdata[c], strcspn (row->pdata[c], " "));
              gtk_label_set_text (GTK_LABEL (cell), id);
              gtk_widget_set_tooltip_text (cell, row->pdata[c]);
            }
          gtk_widget_add_css_class (cell, r == 0 ? "caption-heading" : "numeric");
          gtk_grid_attach (GTK_GRID (grid), cell, (int)k, (int)r, 1, 1);
        }
    }
  gtk_box_append (GTK_BOX (box), grid);
  return box;
}

/* One setting of a run, as the differences table shows it. */
static char *
setting_text (const KiltRun *run, guint what)
{
  const KiltRunRecord *r = &run->record;
  const KiltTrainConfig *c = &r->config;

  switch (what)
    {
      case 0:
        return g_strdup (r->model_name ? r->model_name : "–");
      case 1:
        return g_strdup (r->data_description ? r->data_description : "–");
      case 2:
        return g_strdup (r->device_name ? r->device_name : "–");
      case 3:
        return g_strdup (kilt_optimizer_name (c->opt.type));
      case 4:
        return g_strdup_printf ("%g", c->opt.lr);
      case 5:
        return g_strdup_printf ("%u", c->batch);
      case 6:
        return g_strdup_printf ("%u", c->epochs);
      case 7:
        return g_strdup_printf ("%u", c->seed);
      case 8:
        return g_strdup (c->augment ? "yes" : "no");
      case 9:
        return c->max_train_samples ? g_strdup_printf ("%u", c->max_train_samples)
                                    : g_strdup ("all");
      case 10:
        return c->val_fraction > 0 ? g_strdup_printf ("%.0f%%", c->val_fraction * 100)
                                   : g_strdup ("none (test split)");
      case 11:
        return g_strdup (c->resume ? "resumed" : "new");
      default:
        return NULL;
    }
}

static const char *const setting_names[]
    = { "Model",  "Data", "Device",       "Optimizer",        "Learning rate", "Batch",
        "Epochs", "Seed", "Augmentation", "Training samples", "Validation",    "Start" };

/* With several runs selected: the settings in which they differ (runs often share a name). */
static GtkWidget *
differences_widget (KiltRunsPage *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  GtkWidget *title = gtk_label_new ("What differs");
  GtkWidget *grid = gtk_grid_new ();
  guint row = 1;

  gtk_widget_add_css_class (title, "heading");
  gtk_label_set_xalign (GTK_LABEL (title), 0);
  gtk_box_append (GTK_BOX (box), title);
  gtk_grid_set_column_spacing (GTK_GRID (grid), 12);
  gtk_grid_set_row_spacing (GTK_GRID (grid), 2);
  for (guint i = 0; i < self->selected->len; i++)
    {
      g_autofree char *id
          = g_strdup_printf ("#%" G_GINT64_FORMAT, ((KiltRun *)self->selected->pdata[i])->id);
      GtkWidget *cell = gtk_label_new (id);
      gtk_widget_add_css_class (cell, "caption-heading");
      gtk_label_set_xalign (GTK_LABEL (cell), 0);
      gtk_grid_attach (GTK_GRID (grid), cell, (int)i + 1, 0, 1, 1);
    }
  for (guint w = 0; w < G_N_ELEMENTS (setting_names); w++)
    {
      g_autofree char *first = setting_text (self->selected->pdata[0], w);
      gboolean differs = FALSE;

      for (guint i = 1; i < self->selected->len && !differs; i++)
        {
          g_autofree char *other = setting_text (self->selected->pdata[i], w);
          differs = g_strcmp0 (first, other) != 0;
        }
      if (!differs)
        continue;
      {
        GtkWidget *name = gtk_label_new (setting_names[w]);
        gtk_label_set_xalign (GTK_LABEL (name), 0);
        gtk_widget_add_css_class (name, "dim-label");
        gtk_grid_attach (GTK_GRID (grid), name, 0, (int)row, 1, 1);
      }
      for (guint i = 0; i < self->selected->len; i++)
        {
          g_autofree char *text = setting_text (self->selected->pdata[i], w);
          GtkWidget *cell = gtk_label_new (text);
          gtk_label_set_xalign (GTK_LABEL (cell), 0);
          gtk_label_set_ellipsize (GTK_LABEL (cell), PANGO_ELLIPSIZE_END);
          gtk_label_set_max_width_chars (GTK_LABEL (cell), 22);
          gtk_widget_set_tooltip_text (cell, text);
          gtk_grid_attach (GTK_GRID (grid), cell, (int)i + 1, (int)row, 1, 1);
        }
      row++;
    }
  if (row == 1)
    {
      GtkWidget *same = gtk_label_new ("The same model, data, device and settings.");
      gtk_widget_add_css_class (same, "dim-label");
      gtk_label_set_xalign (GTK_LABEL (same), 0);
      gtk_box_append (GTK_BOX (box), same);
    }
  else
    gtk_box_append (GTK_BOX (box), grid);
  gtk_widget_set_name (box, "differences");
  return box;
}

static void
update_tables (KiltRunsPage *self)
{
  GtkWidget *child;
  KiltReportOptions o = report_options (self);
  g_autoptr (GPtrArray) tables = NULL;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->tables_box))))
    gtk_box_remove (self->tables_box, child);
  if (self->selected->len == 0)
    return;
  tables = kilt_report_build_tables (&o);
  /* The summary (speed-ups against the baseline) and the per-layer times side by side; the
   * per-epoch tables belong in exported reports. */
  for (guint i = 0; i < tables->len; i++)
    {
      KiltReportTable *t = tables->pdata[i];
      /* The summary's figures that compare runs; the rest are in the exported report. */
      static const char *const summary[]
          = { "Run", "Time/epoch (s)", "Speed-up", "Best val acc", "Samples/s", NULL };
      if (i == 0)
        {
          gtk_box_append (self->tables_box, table_widget (t, summary, FALSE));
          if (self->selected->len >= 2)
            gtk_box_append (self->tables_box, differences_widget (self));
        }
      else if (g_str_has_prefix (t->title, "Per-layer"))
        gtk_box_append (self->tables_box, table_widget (t, NULL, TRUE));
      /* A run on several devices: what each did, and how they scaled. */
      else if (g_str_has_prefix (t->title, "Devices of run"))
        {
          GtkWidget *w = table_widget (t, NULL, FALSE);
          gtk_widget_set_name (w, "devices-table");
          gtk_box_append (self->tables_box, w);
        }
    }
}

static void
update_comparison (KiltRunsPage *self)
{
  KiltReportChart chart = (KiltReportChart)gtk_drop_down_get_selected (self->chart_choice);

  /* The x choice is for curves only; bars stand per epoch, run or layer, and the accuracy
   * against time is against time. */
  gboolean curves = chart == KILT_REPORT_CHART_LOSS || chart == KILT_REPORT_CHART_ACCURACY
                    || chart == KILT_REPORT_CHART_LEARNING_RATE;
  gtk_widget_set_visible (GTK_WIDGET (self->x_choice), curves);
  gtk_widget_set_visible (self->x_label, curves);
  update_tables (self);
  rebuild_chart (self);
}

/* The one selected run's checkpoint when it is on disk, else NULL with @error saying why. */
static const char *
selected_checkpoint (KiltRunsPage *self, GError **error)
{
  const KiltRun *run;
  const char *path;
  GStatBuf st;

  if (self->selected->len != 1)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "select one run");
      return NULL;
    }
  run = self->selected->pdata[0];
  path = run->record.config.checkpoint_path;
  if (path == NULL || g_stat (path, &st) != 0 || st.st_size == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   path ? "run #%" G_GINT64_FORMAT " has no weights: it ended before its first "
                          "epoch did, or its checkpoint %s is gone"
                        : "run #%" G_GINT64_FORMAT " kept no weights",
                   run->id, path);
      return NULL;
    }
  return path;
}

static void
update_actions (KiltRunsPage *self)
{
  guint n = self->selected->len;

  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.rename", n == 1);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.tag", n >= 1);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.delete", n >= 1);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.export", n >= 1);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.run-again",
                                 n == 1 && kilt_runs_page_can_run_again (self, NULL));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.resume",
                                 n == 1 && kilt_runs_page_can_resume (self, NULL));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.save-weights",
                                 n == 1 && selected_checkpoint (self, NULL));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.evaluate",
                                 n == 1 && kilt_runs_page_can_evaluate (self, NULL));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "runs.export-model",
                                 n == 1 && kilt_runs_page_can_export_model (self, NULL));
}

/* What the comparison area says with nothing selected: whether there are runs to pick. */
static void
update_empty_text (KiltRunsPage *self)
{
  guint n_all = g_list_model_get_n_items (G_LIST_MODEL (self->items));
  guint n_shown = g_list_model_get_n_items (G_LIST_MODEL (self->selection));
  g_autofree char *title = NULL;

  if (n_all == 0)
    {
      adw_status_page_set_title (self->empty_status, "No runs yet");
      adw_status_page_set_description (
          self->empty_status, "Every training run is kept here. Start one on the Train page.");
      return;
    }
  if (n_shown == 0)
    {
      title = g_strdup_printf ("No run matches “%s”",
                               gtk_editable_get_text (GTK_EDITABLE (self->search)));
      adw_status_page_set_title (self->empty_status, title);
      adw_status_page_set_description (self->empty_status, "Clear the filter to see all the runs.");
      return;
    }
  title = g_strdup_printf (
      n_shown == 1 ? "%u run — select it to see it" : "%u runs — select some to compare", n_shown);
  adw_status_page_set_title (self->empty_status, title);
  adw_status_page_set_description (
      self->empty_status, "Pick one or more runs in the table (Ctrl or Shift for several) to see "
                          "their curves, time per epoch, speed-ups and per-layer times.");
}

static void
selection_changed (KiltRunsPage *self)
{
  GListModel *model = G_LIST_MODEL (self->selection);
  guint n = g_list_model_get_n_items (model);
  gboolean baseline_kept = FALSE;
  guint baseline_pos = 0;

  g_ptr_array_set_size (self->selected, 0);
  for (guint i = 0; i < n; i++)
    if (gtk_selection_model_is_selected (GTK_SELECTION_MODEL (self->selection), i))
      {
        g_autoptr (KiltRunItem) item = g_list_model_get_item (model, i);
        g_ptr_array_add (self->selected, item->run);
      }

  /* The baseline list follows the selection; the chosen baseline stays while selected. */
  self->updating_baseline = TRUE;
  gtk_string_list_splice (self->baseline_list, 0,
                          g_list_model_get_n_items (G_LIST_MODEL (self->baseline_list)), NULL);
  for (guint i = 0; i < self->selected->len; i++)
    {
      KiltRun *run = self->selected->pdata[i];
      g_autofree char *label
          = g_strdup_printf ("#%" G_GINT64_FORMAT " %s", run->id, run->record.name);
      gtk_string_list_append (self->baseline_list, label);
      if (run->id == self->baseline_id)
        baseline_kept = TRUE, baseline_pos = i;
    }
  if (!baseline_kept)
    self->baseline_id = self->selected->len ? ((KiltRun *)self->selected->pdata[0])->id : 0;
  if (self->selected->len)
    gtk_drop_down_set_selected (self->baseline_choice, baseline_pos);
  self->updating_baseline = FALSE;

  gtk_stack_set_visible_child_name (self->compare_stack, self->selected->len ? "compare" : "empty");
  update_empty_text (self);
  update_actions (self);
  update_comparison (self);
}

static void
baseline_changed (KiltRunsPage *self)
{
  guint pos = gtk_drop_down_get_selected (self->baseline_choice);

  if (self->updating_baseline || pos >= self->selected->len)
    return;
  self->baseline_id = ((KiltRun *)self->selected->pdata[pos])->id;
  update_comparison (self);
}

static void
on_search_changed (KiltRunsPage *self, GtkSearchEntry *entry)
{
  kilt_runs_page_set_filter (self, gtk_editable_get_text (GTK_EDITABLE (entry)));
}

/* ---- public API ---- */

gboolean
kilt_runs_page_reload (KiltRunsPage *self, GError **error)
{
  g_autoptr (GPtrArray) runs = NULL;
  g_autoptr (GArray) keep = NULL;
  g_autoptr (GPtrArray) items = NULL;
  gint64 baseline = self->baseline_id;

  g_return_val_if_fail (KILT_IS_RUNS_PAGE (self), FALSE);

  if (self->store == NULL)
    {
      self->store = kilt_run_store_open (self->db_path, error);
      if (self->store == NULL)
        return FALSE;
    }
  runs = kilt_run_store_list (self->store, error);
  if (runs == NULL)
    return FALSE;
  keep = kilt_runs_page_get_selected (self);
  items = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; i < runs->len; i++)
    g_ptr_array_add (items, kilt_run_item_new (runs->pdata[i]));
  /* The items own the runs now. */
  g_ptr_array_set_free_func (runs, NULL);
  g_list_store_splice (self->items, 0, g_list_model_get_n_items (G_LIST_MODEL (self->items)),
                       items->pdata, items->len);
  kilt_runs_page_select (self, (gint64 *)keep->data, keep->len);
  kilt_runs_page_set_baseline (self, baseline);
  return TRUE;
}

void
kilt_runs_page_set_db_path (KiltRunsPage *self, const char *path)
{
  g_autoptr (GError) error = NULL;

  g_return_if_fail (KILT_IS_RUNS_PAGE (self));
  g_free (self->db_path);
  self->db_path = g_strdup (path);
  g_clear_pointer (&self->store, kilt_run_store_close);
  if (!kilt_runs_page_reload (self, &error))
    toast (self, error->message);
}

const char *
kilt_runs_page_get_db_path (KiltRunsPage *self)
{
  return self->db_path;
}

void
kilt_runs_page_set_filter (KiltRunsPage *self, const char *text)
{
  g_free (self->filter_text);
  self->filter_text = text ? g_utf8_casefold (text, -1) : NULL;
  if (g_strcmp0 (gtk_editable_get_text (GTK_EDITABLE (self->search)), text ? text : "") != 0)
    gtk_editable_set_text (GTK_EDITABLE (self->search), text ? text : "");
  gtk_filter_changed (GTK_FILTER (self->filter), GTK_FILTER_CHANGE_DIFFERENT);
}

guint
kilt_runs_page_get_n_shown (KiltRunsPage *self)
{
  return g_list_model_get_n_items (G_LIST_MODEL (self->selection));
}

const char *
kilt_runs_page_get_empty_title (KiltRunsPage *self)
{
  g_return_val_if_fail (KILT_IS_RUNS_PAGE (self), NULL);
  return adw_status_page_get_title (self->empty_status);
}

gint64
kilt_runs_page_get_shown_id (KiltRunsPage *self, guint position)
{
  g_autoptr (KiltRunItem) item = g_list_model_get_item (G_LIST_MODEL (self->selection), position);
  return item ? item->run->id : 0;
}

gboolean
kilt_runs_page_sort_by (KiltRunsPage *self, const char *title, gboolean descending)
{
  for (int c = 0; c < N_COLS; c++)
    if (g_strcmp0 (columns[c].title, title) == 0)
      {
        gtk_column_view_sort_by_column (self->table, self->cols[c],
                                        descending ? GTK_SORT_DESCENDING : GTK_SORT_ASCENDING);
        return TRUE;
      }
  return FALSE;
}

void
kilt_runs_page_select (KiltRunsPage *self, const gint64 *ids, guint n_ids)
{
  GListModel *model = G_LIST_MODEL (self->selection);
  guint n = g_list_model_get_n_items (model);
  g_autoptr (GtkBitset) set = gtk_bitset_new_empty ();
  g_autoptr (GtkBitset) mask = gtk_bitset_new_range (0, n);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr (KiltRunItem) item = g_list_model_get_item (model, i);
      for (guint k = 0; k < n_ids; k++)
        if (item->run->id == ids[k])
          gtk_bitset_add (set, i);
    }
  gtk_selection_model_set_selection (GTK_SELECTION_MODEL (self->selection), set, mask);
  /* A selection that did not change emits nothing; the runs behind it may have. */
  selection_changed (self);
}

GArray *
kilt_runs_page_get_selected (KiltRunsPage *self)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint64));

  for (guint i = 0; i < self->selected->len; i++)
    g_array_append_val (ids, ((KiltRun *)self->selected->pdata[i])->id);
  return ids;
}

void
kilt_runs_page_set_baseline (KiltRunsPage *self, gint64 id)
{
  for (guint i = 0; i < self->selected->len; i++)
    if (((KiltRun *)self->selected->pdata[i])->id == id)
      {
        gtk_drop_down_set_selected (self->baseline_choice, i);
        self->baseline_id = id;
        update_comparison (self);
        return;
      }
}

gint64
kilt_runs_page_get_baseline (KiltRunsPage *self)
{
  return self->baseline_id;
}

void
kilt_runs_page_set_chart (KiltRunsPage *self, KiltReportChart chart)
{
  gtk_drop_down_set_selected (self->chart_choice, chart);
}

void
kilt_runs_page_set_x_mode (KiltRunsPage *self, KiltChartXMode mode)
{
  /* The choice lists Epoch, Step, Time. */
  gtk_drop_down_set_selected (self->x_choice, mode == KILT_CHART_X_STEP   ? 1
                                              : mode == KILT_CHART_X_TIME ? 2
                                                                          : 0);
}

KiltChart *
kilt_runs_page_get_chart (KiltRunsPage *self)
{
  return kilt_chart_view_get_chart (self->chart_view);
}

gboolean
kilt_runs_page_rename_run (KiltRunsPage *self, gint64 id, const char *name, GError **error)
{
  if (self->store == NULL || !kilt_run_store_rename (self->store, id, name, error))
    return FALSE;
  return kilt_runs_page_reload (self, error);
}

gboolean
kilt_runs_page_tag_selected (KiltRunsPage *self, const char *tag, GError **error)
{
  g_autoptr (GArray) ids = kilt_runs_page_get_selected (self);

  for (guint i = 0; i < ids->len; i++)
    if (!kilt_run_store_add_tag (self->store, g_array_index (ids, gint64, i), tag, error))
      return FALSE;
  return kilt_runs_page_reload (self, error);
}

gboolean
kilt_runs_page_delete_selected (KiltRunsPage *self, GError **error)
{
  g_autoptr (GArray) ids = kilt_runs_page_get_selected (self);

  for (guint i = 0; i < ids->len; i++)
    if (!kilt_run_store_delete (self->store, g_array_index (ids, gint64, i), error))
      return FALSE;
  return kilt_runs_page_reload (self, error);
}

gboolean
kilt_runs_page_export (KiltRunsPage *self, KiltReportFormat format, const char *path,
                       GError **error)
{
  KiltReportOptions o = report_options (self);
  g_autoptr (GPtrArray) with_steps = NULL;

  if (self->selected->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "select the runs to put in the report");
      return FALSE;
    }
  /* JSON holds everything, the sampled steps too. */
  if (format == KILT_REPORT_JSON)
    for (guint i = 0; i < self->selected->len; i++)
      if (((KiltRun *)self->selected->pdata[i])->steps == NULL
          && !kilt_run_store_load_steps (self->store, self->selected->pdata[i], error))
        return FALSE;
  return kilt_report_write (&o, format, path, error);
}

gboolean
kilt_runs_page_can_run_again (KiltRunsPage *self, GError **error)
{
  const KiltRun *run;

  if (self->selected->len != 1)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "select one run to run again");
      return FALSE;
    }
  run = self->selected->pdata[0];
  if (run->record.model_json == NULL || run->record.data_spec == NULL || run->config_json == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " was recorded without where its data came from"
                   " (by an older Kilt), so it cannot be repeated",
                   run->id);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_runs_page_can_resume (KiltRunsPage *self, GError **error)
{
  if (!kilt_runs_page_can_run_again (self, error))
    return FALSE;
  return kilt_run_can_resume (self->selected->pdata[0], error);
}

static void
weights_copied (GObject *source, GAsyncResult *result, gpointer data)
{
  GTask *task = data;
  GError *error = NULL;

  if (g_file_copy_finish (G_FILE (source), result, &error))
    g_task_return_boolean (task, TRUE);
  else
    {
      g_prefix_error (&error, "Saving the weights: ");
      g_task_return_error (task, error);
    }
  g_object_unref (task);
}

void
kilt_runs_page_save_weights (KiltRunsPage *self, const char *path, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  GTask *task = g_task_new (self, NULL, callback, user_data);
  GError *error = NULL;
  const char *from = selected_checkpoint (self, &error);
  g_autoptr (GFile) src = NULL, dest = NULL;

  if (from == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  src = g_file_new_for_path (from);
  dest = g_file_new_for_path (path);
  g_file_copy_async (src, dest, G_FILE_COPY_OVERWRITE, G_PRIORITY_DEFAULT, NULL, NULL, NULL,
                     weights_copied, task);
}

gboolean
kilt_runs_page_save_weights_finish (KiltRunsPage *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

gboolean
kilt_runs_page_can_export_model (KiltRunsPage *self, GError **error)
{
  if (!selected_checkpoint (self, error))
    return FALSE;
  if (((const KiltRun *)self->selected->pdata[0])->record.model_json == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " does not record its model",
                   ((const KiltRun *)self->selected->pdata[0])->id);
      return FALSE;
    }
  return TRUE;
}

/* What an export needs of its run, copied: the store may be reloaded while it writes. */
typedef struct
{
  gint64 id;
  char *model_json, *checkpoint, *path;
} ModelExport;

static void
model_export_free (gpointer data)
{
  ModelExport *e = data;

  g_free (e->model_json);
  g_free (e->checkpoint);
  g_free (e->path);
  g_free (e);
}

static void
export_model_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
  ModelExport *e = data;
  g_autofree char *name = g_strdup_printf ("run #%" G_GINT64_FORMAT "'s model", e->id);
  g_autoptr (KiltModel) model = NULL;
  GError *error = NULL;
  const float *params, *state;
  KiltExportFormat format;
  char *summary = NULL;

  /* The checkpoint's weights are the model's once it loads: its sizes were checked. */
  if (!kilt_export_format_for_path (e->path, &format, &error)
      || !(model = kilt_model_load_trained (e->model_json, name, e->checkpoint, &error))
      || !kilt_model_get_weights (model, &params, &state)
      || !kilt_model_export (model, params, state, format, e->path, &summary, &error))
    g_task_return_error (task, error ? error
                                     : g_error_new (KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                                                    "%s has no weights", name));
  else
    g_task_return_pointer (task, summary, g_free);
}

void
kilt_runs_page_export_model (KiltRunsPage *self, const char *path, GAsyncReadyCallback callback,
                             gpointer user_data)
{
  GTask *task = g_task_new (self, NULL, callback, user_data);
  GError *error = NULL;
  ModelExport *e;

  if (!kilt_runs_page_can_export_model (self, &error))
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  e = g_new0 (ModelExport, 1);
  e->id = ((const KiltRun *)self->selected->pdata[0])->id;
  e->model_json = g_strdup (((const KiltRun *)self->selected->pdata[0])->record.model_json);
  e->checkpoint = g_strdup (selected_checkpoint (self, NULL));
  e->path = g_strdup (path);
  g_task_set_task_data (task, e, model_export_free);
  g_task_run_in_thread (task, export_model_thread);
  g_object_unref (task);
}

char *
kilt_runs_page_export_model_finish (KiltRunsPage *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- actions with dialogs ---- */

static GtkWindow *parent_window (KiltRunsPage *self);

static void
action_resume (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autoptr (GError) error = NULL;

  if (!kilt_runs_page_can_resume (self, &error))
    {
      toast (self, error->message);
      return;
    }
  g_signal_emit (self, signals[SIGNAL_RESUME], 0, ((KiltRun *)self->selected->pdata[0])->id);
}

/* Says how saving @path went: its name when @ok, else @error's message. */
static void
toast_saved (KiltRunsPage *self, gboolean ok, const char *path, const GError *error)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *msg = ok ? g_strdup_printf ("Saved %s", base) : NULL;

  toast (self, ok ? msg : error->message);
}

static void
weights_saved (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (source);
  g_autofree char *path = data;
  g_autoptr (GError) error = NULL;
  gboolean ok = kilt_runs_page_save_weights_finish (self, result, &error);

  toast_saved (self, ok, path, error);
}

/* The local file a save dialog chose (caller frees), or NULL: cancelled, or not a local file,
 * which @refusal then says. Frees the dialog. */
static char *
chosen_path (GtkNativeDialog *native, int response, KiltRunsPage *self, const char *refusal)
{
  g_autoptr (GFile) file = NULL;
  char *path = NULL;

  if (response == GTK_RESPONSE_ACCEPT)
    {
      file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (native));
      path = file ? g_file_get_path (file) : NULL;
      if (path == NULL)
        toast (self, refusal);
    }
  g_object_unref (native);
  return path;
}

static void
save_weights_response (GtkNativeDialog *native, int response, KiltRunsPage *self)
{
  char *path = chosen_path (native, response, self, "Weights can only be saved to local files");

  if (path)
    kilt_runs_page_save_weights (self, path, weights_saved, path);
}

static void
action_save_weights (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autoptr (GError) error = NULL;
  GtkFileChooserNative *native;
  const KiltRun *run;
  g_autofree char *suggested = NULL;

  if (!selected_checkpoint (self, &error))
    {
      toast (self, error->message);
      return;
    }
  run = self->selected->pdata[0];
  suggested = g_strdup_printf ("%s-run%" G_GINT64_FORMAT ".ckpt",
                               run->record.model_name ? run->record.model_name : "model", run->id);
  native = gtk_file_chooser_native_new ("Save Weights", parent_window (self),
                                        GTK_FILE_CHOOSER_ACTION_SAVE, "_Save", "_Cancel");
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (native), suggested);
  g_signal_connect (native, "response", G_CALLBACK (save_weights_response), self);
  /* Modal: the save takes the selection as it is when the name is chosen. */
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (native), TRUE);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (native));
}

gboolean
kilt_runs_page_can_evaluate (KiltRunsPage *self, GError **error)
{
  const KiltRun *run;

  if (!selected_checkpoint (self, error))
    return FALSE;
  run = self->selected->pdata[0];
  if (run->status != KILT_RUN_FINISHED)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " did not finish: Resume it, then evaluate", run->id);
      return FALSE;
    }
  if (run->record.data_spec == NULL || run->record.model_json == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " does not record its model and data source", run->id);
      return FALSE;
    }
  return TRUE;
}

static void
eval_window_gone (gpointer data, GObject *where_the_window_was)
{
  KiltRunsPage *self = data;

  self->eval_window = NULL;
  self->eval_view = NULL;
}

static gboolean
eval_window_close (GtkWindow *window, KiltEvalView *view)
{
  /* Nobody watches any more: the worker stops. */
  kilt_eval_view_cancel (view);
  return FALSE;
}

KiltEvalView *
kilt_runs_page_evaluate_selected (KiltRunsPage *self, GError **error)
{
  GtkWidget *toolbar, *header;
  g_autofree char *title = NULL;
  const KiltRun *run;

  if (!kilt_runs_page_can_evaluate (self, error))
    return NULL;
  run = self->selected->pdata[0];
  if (self->eval_window == NULL)
    {
      GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
      self->eval_window = GTK_WINDOW (adw_window_new ());
      self->eval_view = KILT_EVAL_VIEW (kilt_eval_view_new ());
      /* libadwaita 1.2: no AdwToolbarView yet. */
      toolbar = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
      header = adw_header_bar_new ();
      gtk_box_append (GTK_BOX (toolbar), header);
      gtk_widget_set_vexpand (GTK_WIDGET (self->eval_view), TRUE);
      gtk_box_append (GTK_BOX (toolbar), GTK_WIDGET (self->eval_view));
      adw_window_set_content (ADW_WINDOW (self->eval_window), toolbar);
      gtk_window_set_default_size (self->eval_window, 1024, 700);
      if (GTK_IS_WINDOW (root))
        gtk_window_set_transient_for (self->eval_window, GTK_WINDOW (root));
      g_object_weak_ref (G_OBJECT (self->eval_window), eval_window_gone, self);
      g_signal_connect (self->eval_window, "close-request", G_CALLBACK (eval_window_close),
                        self->eval_view);
    }
  title = g_strdup_printf ("Evaluation of run #%" G_GINT64_FORMAT, run->id);
  gtk_window_set_title (self->eval_window, title);
  gtk_window_present (self->eval_window);
  /* A failure is shown in the view; the window stays open to say it. */
  if (!kilt_eval_view_evaluate (self->eval_view, run, error))
    return NULL;
  return self->eval_view;
}

KiltEvalView *
kilt_runs_page_get_eval_view (KiltRunsPage *self)
{
  return self->eval_view;
}

static void
action_evaluate (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autoptr (GError) error = NULL;

  if (!kilt_runs_page_evaluate_selected (self, &error))
    toast (self, error->message);
}

static void
action_run_again (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autoptr (GError) error = NULL;

  if (!kilt_runs_page_can_run_again (self, &error))
    {
      toast (self, error->message);
      return;
    }
  /* The window knows the devices and owns the session: it asks which device and starts it. */
  g_signal_emit (self, signals[SIGNAL_RUN_AGAIN], 0, ((KiltRun *)self->selected->pdata[0])->id);
}

static GtkWindow *
parent_window (KiltRunsPage *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  return GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL;
}

static GtkWidget *
entry_dialog (KiltRunsPage *self, const char *heading, const char *text, const char *ok)
{
  GtkWidget *dialog = adw_message_dialog_new (parent_window (self), heading, NULL);
  GtkWidget *entry = gtk_entry_new ();

  gtk_editable_set_text (GTK_EDITABLE (entry), text ? text : "");
  gtk_entry_set_activates_default (GTK_ENTRY (entry), TRUE);
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (dialog), entry);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", "_Cancel", "ok", ok,
                                    NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "ok",
                                              ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "ok");
  g_object_set_data (G_OBJECT (dialog), "entry", entry);
  return dialog;
}

static void
rename_response (AdwMessageDialog *dialog, const char *response, KiltRunsPage *self)
{
  GtkWidget *entry = g_object_get_data (G_OBJECT (dialog), "entry");
  gint64 id = GPOINTER_TO_SIZE (g_object_get_data (G_OBJECT (dialog), "run-id"));
  g_autoptr (GError) error = NULL;

  if (g_strcmp0 (response, "ok") == 0
      && !kilt_runs_page_rename_run (self, id, gtk_editable_get_text (GTK_EDITABLE (entry)),
                                     &error))
    toast (self, error->message);
}

static void
action_rename (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  KiltRun *run;
  GtkWidget *dialog;

  if (self->selected->len != 1)
    return;
  run = self->selected->pdata[0];
  dialog = entry_dialog (self, "Rename Run", run->record.name, "_Rename");
  g_object_set_data (G_OBJECT (dialog), "run-id", GSIZE_TO_POINTER ((gsize)run->id));
  g_signal_connect (dialog, "response", G_CALLBACK (rename_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
tag_response (AdwMessageDialog *dialog, const char *response, KiltRunsPage *self)
{
  GtkWidget *entry = g_object_get_data (G_OBJECT (dialog), "entry");
  g_autoptr (GError) error = NULL;

  if (g_strcmp0 (response, "ok") == 0
      && !kilt_runs_page_tag_selected (self, gtk_editable_get_text (GTK_EDITABLE (entry)), &error))
    toast (self, error->message);
}

static void
action_tag (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  GtkWidget *dialog = entry_dialog (self, "Tag Runs", NULL, "_Tag");

  g_signal_connect (dialog, "response", G_CALLBACK (tag_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
delete_response (AdwMessageDialog *dialog, const char *response, KiltRunsPage *self)
{
  g_autoptr (GError) error = NULL;

  if (g_strcmp0 (response, "delete") == 0 && !kilt_runs_page_delete_selected (self, &error))
    toast (self, error->message);
}

static void
action_delete (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autofree char *heading = NULL;
  GtkWidget *dialog;

  if (self->selected->len == 0)
    return;
  heading
      = self->selected->len == 1
            ? g_strdup_printf ("Delete “%s”?", ((KiltRun *)self->selected->pdata[0])->record.name)
            : g_strdup_printf ("Delete %u runs?", self->selected->len);
  dialog = adw_message_dialog_new (parent_window (self), heading,
                                   self->selected->len == 1
                                       ? "Its epochs, timings and tags go with it. This cannot be "
                                         "undone."
                                       : "Their epochs, timings and tags go with them. This "
                                         "cannot be undone.");
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", "_Cancel", "delete",
                                    "_Delete", NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "delete",
                                              ADW_RESPONSE_DESTRUCTIVE);
  g_signal_connect (dialog, "response", G_CALLBACK (delete_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
export_response (GtkNativeDialog *native, int response, KiltRunsPage *self)
{
  g_autofree char *path
      = chosen_path (native, response, self, "Reports can only be saved to local files");
  g_autoptr (GError) error = NULL;
  const char *dot = path ? strrchr (path, '.') : NULL;
  KiltReportFormat format;

  if (path == NULL)
    return;
  if (dot == NULL || !kilt_report_format_from_name (dot + 1, &format))
    toast (self, "End the name in .html, .pdf, .md, .csv, .json, .png or .svg to choose"
                 " the format");
  else
    {
      gboolean ok = kilt_runs_page_export (self, format, path, &error);
      toast_saved (self, ok, path, error);
    }
}

static void
action_export (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  GtkFileChooserNative *native = gtk_file_chooser_native_new (
      "Export Report", parent_window (self), GTK_FILE_CHOOSER_ACTION_SAVE, "_Export", "_Cancel");

  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (native), "kilt-report.html");
  g_signal_connect (native, "response", G_CALLBACK (export_response), self);
  /* Modal, like Save Weights: the report is of the runs selected when it was asked for. */
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (native), TRUE);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (native));
}

static void
model_exported (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (source);
  g_autofree char *path = data, *base = g_path_get_basename (path);
  g_autoptr (GError) error = NULL;
  g_autofree char *summary = kilt_runs_page_export_model_finish (self, result, &error);
  g_autofree char *msg = summary ? g_strdup_printf ("Exported %s: %s", base, summary)
                                 : g_strdup_printf ("Exporting the model: %s", error->message);

  toast (self, msg);
}

static void
export_model_response (GtkNativeDialog *native, int response, KiltRunsPage *self)
{
  char *path = chosen_path (native, response, self, "Models can only be exported to local files");

  if (path)
    kilt_runs_page_export_model (self, path, model_exported, path);
}

static void
add_filter (GtkFileChooser *chooser, const char *name, const char *pattern)
{
  g_autoptr (GtkFileFilter) f = gtk_file_filter_new ();

  gtk_file_filter_set_name (f, name);
  gtk_file_filter_add_pattern (f, pattern);
  gtk_file_chooser_add_filter (chooser, f);
}

static void
action_export_model (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autoptr (GError) error = NULL;
  GtkFileChooserNative *native;
  const KiltRun *run;
  g_autofree char *suggested = NULL;

  if (!kilt_runs_page_can_export_model (self, &error))
    {
      toast (self, error->message);
      return;
    }
  run = self->selected->pdata[0];
  /* A model that came from Keras goes back as a whole .keras file; any other as ONNX. The
   * name's extension picks the format. */
  suggested = g_strdup_printf (
      "%s-run%" G_GINT64_FORMAT "%s", run->record.model_name ? run->record.model_name : "model",
      run->id, strstr (run->record.model_json, "\"keras_architecture\"") ? ".keras" : ".onnx");
  native = gtk_file_chooser_native_new ("Export Model", parent_window (self),
                                        GTK_FILE_CHOOSER_ACTION_SAVE, "_Export", "_Cancel");
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (native), suggested);
  add_filter (GTK_FILE_CHOOSER (native), "Keras 3 model (.keras)", "*.keras");
  add_filter (GTK_FILE_CHOOSER (native), "Keras 3 weights (.weights.h5)", "*.weights.h5");
  add_filter (GTK_FILE_CHOOSER (native), "ONNX model (.onnx)", "*.onnx");
  g_signal_connect (native, "response", G_CALLBACK (export_model_response), self);
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (native), TRUE);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (native));
}

static void
action_reload (GtkWidget *widget, const char *name, GVariant *param)
{
  g_autoptr (GError) error = NULL;

  if (!kilt_runs_page_reload (KILT_RUNS_PAGE (widget), &error))
    toast (KILT_RUNS_PAGE (widget), error->message);
}

/* ---- life cycle ---- */

static void
kilt_runs_page_dispose (GObject *object)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (object);

  /* AdwBin unparents its child (the template's root) itself; disposing the template here
   * as well would unparent it twice. */
  g_clear_object (&self->selection);
  g_clear_object (&self->baseline_list);
  if (self->eval_window)
    {
      g_object_weak_unref (G_OBJECT (self->eval_window), eval_window_gone, self);
      gtk_window_destroy (self->eval_window);
      self->eval_window = NULL;
      self->eval_view = NULL;
    }
  G_OBJECT_CLASS (kilt_runs_page_parent_class)->dispose (object);
}

static void
kilt_runs_page_finalize (GObject *object)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (object);

  g_ptr_array_unref (self->selected);
  g_clear_pointer (&self->store, kilt_run_store_close);
  g_free (self->db_path);
  g_free (self->filter_text);
  G_OBJECT_CLASS (kilt_runs_page_parent_class)->finalize (object);
}

static void
kilt_runs_page_class_init (KiltRunsPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = kilt_runs_page_dispose;
  object_class->finalize = kilt_runs_page_finalize;

  kilt_runs_register_resource ();
  g_type_ensure (KILT_TYPE_CHART_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/kilt/Kilt/ui/kilt-runs-page.ui");
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, toasts);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, search);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, table);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, compare_stack);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, empty_status);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, chart_choice);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, x_choice);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, x_label);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, baseline_choice);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, chart_view);
  gtk_widget_class_bind_template_child (widget_class, KiltRunsPage, tables_box);
  gtk_widget_class_bind_template_callback (widget_class, on_search_changed);

  gtk_widget_class_install_action (widget_class, "runs.rename", NULL, action_rename);
  gtk_widget_class_install_action (widget_class, "runs.tag", NULL, action_tag);
  gtk_widget_class_install_action (widget_class, "runs.delete", NULL, action_delete);
  gtk_widget_class_install_action (widget_class, "runs.export", NULL, action_export);
  gtk_widget_class_install_action (widget_class, "runs.reload", NULL, action_reload);
  gtk_widget_class_install_action (widget_class, "runs.run-again", NULL, action_run_again);
  gtk_widget_class_install_action (widget_class, "runs.resume", NULL, action_resume);
  gtk_widget_class_install_action (widget_class, "runs.save-weights", NULL, action_save_weights);
  gtk_widget_class_install_action (widget_class, "runs.export-model", NULL, action_export_model);
  gtk_widget_class_install_action (widget_class, "runs.evaluate", NULL, action_evaluate);

  /* run-again (gint64 run id): "Run Again On…" was chosen for that run. */
  signals[SIGNAL_RUN_AGAIN]
      = g_signal_new ("run-again", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_INT64);
  /* resume (gint64 run id): "Resume" was chosen for that run. */
  signals[SIGNAL_RESUME] = g_signal_new ("resume", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT64);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_F2, 0, "runs.rename", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Delete, 0, "runs.delete", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_F5, 0, "runs.reload", NULL);
}

static void
setup_choice (GtkSignalListItemFactory *factory, GtkListItem *item, gpointer max_chars)
{
  GtkWidget *label = gtk_label_new (NULL);

  gtk_label_set_xalign (GTK_LABEL (label), 0);
  if (GPOINTER_TO_INT (max_chars) > 0)
    {
      gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
      gtk_label_set_max_width_chars (GTK_LABEL (label), GPOINTER_TO_INT (max_chars));
    }
  gtk_list_item_set_child (item, label);
}

static void
bind_choice (GtkSignalListItemFactory *factory, GtkListItem *item, gpointer data)
{
  const char *text = gtk_string_object_get_string (gtk_list_item_get_item (item));

  gtk_label_set_text (GTK_LABEL (gtk_list_item_get_child (item)), text);
  gtk_widget_set_tooltip_text (gtk_list_item_get_child (item), text);
}

/* A drop-down that shows its choice in at most @max_chars (the rest as "…"; the list opened
 * shows whole names): long run names or chart titles would hold the page wider than a small
 * window. */
static void
drop_down_ellipsize (GtkDropDown *drop_down, int max_chars)
{
  GtkListItemFactory *button = gtk_signal_list_item_factory_new ();
  GtkListItemFactory *list = gtk_signal_list_item_factory_new ();

  g_signal_connect (button, "setup", G_CALLBACK (setup_choice), GINT_TO_POINTER (max_chars));
  g_signal_connect (button, "bind", G_CALLBACK (bind_choice), NULL);
  g_signal_connect (list, "setup", G_CALLBACK (setup_choice), GINT_TO_POINTER (0));
  g_signal_connect (list, "bind", G_CALLBACK (bind_choice), NULL);
  gtk_drop_down_set_factory (drop_down, button);
  gtk_drop_down_set_list_factory (drop_down, list);
  g_object_unref (button);
  g_object_unref (list);
}

/* Runs come from this window and from kilt-cli alike: the page reads the store each time it
 * is shown, so it is never empty at start nor stale after a run from the shell. */
static void
on_map (GtkWidget *widget)
{
  KiltRunsPage *self = KILT_RUNS_PAGE (widget);
  g_autoptr (GError) error = NULL;

  if (!kilt_runs_page_reload (self, &error))
    toast (self, error->message);
}

static void
kilt_runs_page_init (KiltRunsPage *self)
{
  g_autoptr (GtkStringList) charts = gtk_string_list_new (NULL);

  gtk_widget_init_template (GTK_WIDGET (self));
  self->selected = g_ptr_array_new ();

  build_columns (self);
  self->items = g_list_store_new (KILT_TYPE_RUN_ITEM);
  self->filter = gtk_custom_filter_new (filter_func, self, NULL);
  self->filtered
      = gtk_filter_list_model_new (G_LIST_MODEL (self->items), GTK_FILTER (self->filter));
  self->sorted = gtk_sort_list_model_new (G_LIST_MODEL (self->filtered),
                                          g_object_ref (gtk_column_view_get_sorter (self->table)));
  self->selection = gtk_multi_selection_new (G_LIST_MODEL (g_object_ref (self->sorted)));
  gtk_column_view_set_model (self->table, GTK_SELECTION_MODEL (self->selection));
  g_object_unref (self->sorted); /* the selection holds it, and it the rest */
  g_signal_connect_swapped (self->selection, "selection-changed", G_CALLBACK (selection_changed),
                            self);
  /* A re-sort or a filter moves rows: the selected runs' order follows. */
  g_signal_connect_swapped (self->selection, "items-changed", G_CALLBACK (selection_changed), self);

  for (int c = 0; c < KILT_REPORT_N_CHARTS; c++)
    gtk_string_list_append (charts, kilt_report_chart_title ((KiltReportChart)c));
  gtk_drop_down_set_model (self->chart_choice, G_LIST_MODEL (charts));
  self->baseline_list = gtk_string_list_new (NULL);
  gtk_drop_down_set_model (self->baseline_choice, G_LIST_MODEL (self->baseline_list));
  g_signal_connect_swapped (self->chart_choice, "notify::selected", G_CALLBACK (update_comparison),
                            self);
  g_signal_connect_swapped (self->x_choice, "notify::selected", G_CALLBACK (update_comparison),
                            self);
  g_signal_connect_swapped (self->baseline_choice, "notify::selected",
                            G_CALLBACK (baseline_changed), self);
  rebuild_chart (self);
  drop_down_ellipsize (self->chart_choice, 22);
  drop_down_ellipsize (self->baseline_choice, 22);
  g_signal_connect (self, "map", G_CALLBACK (on_map), NULL);
  update_empty_text (self);
  update_actions (self);
}

GtkWidget *
kilt_runs_page_new (void)
{
  return g_object_new (KILT_TYPE_RUNS_PAGE, NULL);
}
