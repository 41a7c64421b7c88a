/* Data page: built-in data sets and files, format options, loading with progress, preview. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-data-page"

#include "config.h"

#include "kilt-data-page.h"
#include "kilt-chart-view.h"
#include "kilt-error.h"
#include "kilt-format.h"

#include <string.h>
#include "kilt-run-store.h"

#define PREVIEW_SAMPLES 32
#define THUMB           56

struct _KiltDataPage
{
  AdwBin parent_instance;

  GtkListBox *builtin_list;
  AdwPreferencesGroup *csv_group;
  AdwComboRow *delimiter_row;
  AdwComboRow *header_row;
  AdwComboRow *label_row;
  GtkRevealer *progress_revealer;
  GtkProgressBar *progress;
  GtkRevealer *error_revealer;
  GtkLabel *error_label;
  GtkWidget *summary_group;
  AdwActionRow *summary_row;
  GtkWidget *notes_row; /* what the loader noted, one row per note; NULL when none */
  GtkWidget *preview_group;
  GtkFlowBox *preview;
  GtkWidget *histogram_group;
  GtkFrame *histogram_frame;
  GtkSpinButton *val_spin;
  AdwComboRow *preprocess_row;
  GtkSwitch *augment_switch;
  GtkWidget *augment_row, *translate_row;
  GtkSpinButton *translate_spin;
  GtkSwitch *tta_switch;

  GSettings *settings;
  GtkFileChooserNative *chooser;
  KiltChartView *histogram;
  char *spec;          /* what is (being) loaded */
  KiltDataSpec loaded; /* where the loaded data set came from, with its options */
  KiltDataset *dataset;
  char *error;
  GCancellable *cancellable;
  guint generation;

  GMutex progress_lock;
  double progress_fraction;
  char *progress_what;
  guint progress_timer;
};

G_DEFINE_FINAL_TYPE (KiltDataPage, kilt_data_page, ADW_TYPE_BIN)

enum
{
  PROP_0,
  PROP_LOADING,
  PROP_DATASET_NAME,
  PROP_ERROR,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

static const struct
{
  const char *spec, *title, *subtitle;
} builtins[] = {
  { "sample", "Sample", "A small image set bundled with Kilt, for a first run" },
  { "fashion-mnist", "Fashion-MNIST", "70,000 grey 28×28 clothing images in 10 classes" },
};

typedef struct
{
  KiltDataPage *self; /* referenced by the task */
  char *spec;
  char delimiter;
  int header;
  char *label_column;
  guint generation;
} LoadJob;

static void
load_job_free (LoadJob *job)
{
  g_free (job->spec);
  g_free (job->label_column);
  g_free (job);
}

static void
load_job_options (const LoadJob *job, KiltLoadOptions *opts)
{
  opts->delimiter = job->delimiter;
  opts->header = job->header == 1   ? KILT_HEADER_YES
                 : job->header == 2 ? KILT_HEADER_NO
                                    : KILT_HEADER_AUTO;
  opts->label_column = job->label_column;
}

static void
set_error (KiltDataPage *self, const char *message)
{
  if (g_strcmp0 (message, self->error) == 0)
    return;
  g_free (self->error);
  self->error = g_strdup (message);
  gtk_label_set_text (self->error_label, message ? message : "");
  gtk_revealer_set_reveal_child (self->error_revealer, message != NULL);
  /* The banner is at the top of the page: bring it into view when the page is scrolled down. */
  if (message)
    {
      GtkWidget *sw
          = gtk_widget_get_ancestor (GTK_WIDGET (self->error_revealer), GTK_TYPE_SCROLLED_WINDOW);
      if (sw)
        gtk_adjustment_set_value (gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (sw)),
                                  0);
    }
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ERROR]);
}

static void
load_progress (double fraction, const char *what, gpointer data)
{
  KiltDataPage *self = data;

  g_mutex_lock (&self->progress_lock);
  self->progress_fraction = fraction;
  g_free (self->progress_what);
  self->progress_what = g_strdup (what);
  g_mutex_unlock (&self->progress_lock);
}

static void
load_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  LoadJob *job = data;
  KiltLoadOptions opts;
  GError *error = NULL;
  KiltDataset *ds;

  kilt_load_options_init (&opts);
  load_job_options (job, &opts);
  ds = kilt_dataset_load (job->spec, &opts, load_progress, source, cancellable, &error);
  if (ds)
    g_task_return_pointer (task, ds, (GDestroyNotify)kilt_dataset_free);
  else
    g_task_return_error (task, error);
}

static gboolean
progress_tick (gpointer data)
{
  KiltDataPage *self = data;

  g_mutex_lock (&self->progress_lock);
  gtk_progress_bar_set_fraction (self->progress, self->progress_fraction);
  gtk_progress_bar_set_text (self->progress, self->progress_what);
  g_mutex_unlock (&self->progress_lock);
  return G_SOURCE_CONTINUE;
}

static void
show_preview (KiltDataPage *self)
{
  KiltDataset *ds = self->dataset;
  GtkWidget *child;
  KiltChart *chart = kilt_chart_view_get_chart (self->histogram);

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->preview))))
    gtk_flow_box_remove (self->preview, child);
  kilt_chart_clear (chart);
  gtk_widget_set_visible (self->summary_group, ds != NULL);
  gtk_widget_set_visible (self->preview_group, ds != NULL);
  gtk_widget_set_visible (self->histogram_group, ds != NULL && ds->n_classes > 0);
  if (ds == NULL)
    return;
  {
    g_autofree char *train = kilt_format_thousands (ds->train.n);
    g_autofree char *val = kilt_format_thousands (ds->val.n);
    g_autofree char *test = kilt_format_thousands (ds->test.n);
    g_autofree char *subtitle
        = ds->val.n ? g_strdup_printf ("%s format · %s training, %s validation and %s test samples "
                                       "of %u×%u×%u · %u classes",
                                       ds->format, train, val, test, ds->shape.c, ds->shape.h,
                                       ds->shape.w, ds->n_classes)
                    : g_strdup_printf ("%s format · %s training and %s test samples of %u×%u×%u · "
                                       "%u classes",
                                       ds->format, train, test, ds->shape.c, ds->shape.h,
                                       ds->shape.w, ds->n_classes);
    g_autofree char *markup = g_markup_escape_text (subtitle, -1);
    const char *title = ds->name;
    adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->summary_row), title);
    adw_action_row_set_subtitle (self->summary_row, markup);
  }
  /* The loader's notes (skipped files, dropped rows) in rows of their own under the summary,
   * each once, rather than all of them in its subtitle. */
  if (self->notes_row)
    {
      adw_preferences_group_remove (ADW_PREFERENCES_GROUP (self->summary_group), self->notes_row);
      self->notes_row = NULL;
    }
  if (ds->notes && *ds->notes)
    {
      g_auto (GStrv) lines = g_strsplit (ds->notes, "\n", -1);
      g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
      GtkWidget *row = adw_expander_row_new ();

      for (guint i = 0; lines[i]; i++)
        if (*g_strstrip (lines[i]) && g_hash_table_add (seen, lines[i]))
          {
            GtkWidget *line = gtk_label_new (lines[i]);
            gtk_label_set_wrap (GTK_LABEL (line), TRUE);
            gtk_label_set_wrap_mode (GTK_LABEL (line), PANGO_WRAP_WORD_CHAR);
            gtk_label_set_xalign (GTK_LABEL (line), 0);
            gtk_label_set_selectable (GTK_LABEL (line), TRUE);
            gtk_widget_set_margin_start (line, 12);
            gtk_widget_set_margin_end (line, 12);
            gtk_widget_set_margin_top (line, 6);
            gtk_widget_set_margin_bottom (line, 6);
            adw_expander_row_add_row (ADW_EXPANDER_ROW (row), line);
          }
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), "Notes from loading");
      adw_expander_row_set_subtitle (ADW_EXPANDER_ROW (row),
                                     "Skipped files, dropped rows and the like");
      gtk_widget_set_name (row, "data-notes");
      adw_preferences_group_add (ADW_PREFERENCES_GROUP (self->summary_group), row);
      self->notes_row = row;
    }
  for (gsize i = 0; i < MIN (ds->train.n, PREVIEW_SAMPLES); i++)
    {
      /* Spread the preview over the split, so it shows more than one class. */
      gsize index = i * (ds->train.n / MIN (ds->train.n, PREVIEW_SAMPLES));
      g_autoptr (GBytes) bytes = NULL;
      g_autoptr (GdkTexture) texture = NULL;
      guint8 *rgba = g_malloc (THUMB * THUMB * 4);
      GtkWidget *box, *picture, *label;
      gint32 cls;

      if (!kilt_dataset_thumbnail_rgba (ds, KILT_SPLIT_TRAIN, index, rgba, THUMB, THUMB))
        {
          g_free (rgba);
          continue;
        }
      bytes = g_bytes_new_take (rgba, THUMB * THUMB * 4);
      texture = gdk_memory_texture_new (THUMB, THUMB, GDK_MEMORY_R8G8B8A8, bytes, THUMB * 4);
      box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      gtk_widget_add_css_class (box, "sample-tile");
      picture = gtk_picture_new_for_paintable (GDK_PAINTABLE (texture));
      gtk_widget_set_size_request (picture, THUMB, THUMB);
      cls = ds->train.labels ? ds->train.labels[index] : -1;
      label = gtk_label_new (
          cls >= 0 && (guint)cls < ds->n_classes && ds->class_names ? ds->class_names[cls] : "");
      gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
      gtk_label_set_max_width_chars (GTK_LABEL (label), 8);
      gtk_widget_add_css_class (label, "caption");
      gtk_box_append (GTK_BOX (box), picture);
      gtk_box_append (GTK_BOX (box), label);
      gtk_accessible_update_property (GTK_ACCESSIBLE (picture), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                      gtk_label_get_text (GTK_LABEL (label)), -1);
      gtk_flow_box_append (self->preview, box);
    }
  if (ds->n_classes > 0)
    {
      g_autofree guint *counts = kilt_dataset_class_counts (ds, KILT_SPLIT_TRAIN);
      kilt_chart_set_x_categories (chart, (const char *const *)ds->class_names);
      for (guint c = 0; counts && c < ds->n_classes; c++)
        kilt_chart_append (chart, 0, c, counts[c]);
      kilt_chart_view_update (self->histogram);
    }
}

static void
load_done (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltDataPage *self = KILT_DATA_PAGE (source);
  LoadJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  KiltDataset *ds = g_task_propagate_pointer (G_TASK (result), &error);

  if (job->generation != self->generation)
    {
      /* Replaced by a newer load: drop it. */
      g_clear_pointer (&ds, kilt_dataset_free);
      return;
    }
  g_clear_handle_id (&self->progress_timer, g_source_remove);
  gtk_revealer_set_reveal_child (self->progress_revealer, FALSE);
  g_clear_object (&self->cancellable);
  if (ds == NULL)
    {
      if (g_error_matches (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED)
          || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        set_error (self, NULL);
      else
        set_error (self, error->message);
      /* What stays loaded is the data set before this attempt. */
      if (self->loaded.source && g_strcmp0 (self->spec, self->loaded.source) != 0)
        {
          g_free (self->spec);
          self->spec = g_strdup (self->loaded.source);
        }
    }
  else
    {
      KiltLoadOptions opts;
      g_clear_pointer (&self->dataset, kilt_dataset_free);
      self->dataset = ds;
      set_error (self, NULL);
      kilt_load_options_init (&opts);
      load_job_options (job, &opts);
      kilt_data_spec_clear (&self->loaded);
      kilt_data_spec_init (&self->loaded, job->spec, &opts);
      g_settings_set_string (self->settings, "last-dataset", job->spec);
    }
  show_preview (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_LOADING]);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DATASET_NAME]);
}

/* Starts loading @spec with @job's options filled in by the caller. */
static void start_load (KiltDataPage *self, const char *spec, LoadJob *job);

void
kilt_data_page_load (KiltDataPage *self, const char *spec)
{
  LoadJob *job;
  guint delim;

  g_return_if_fail (KILT_IS_DATA_PAGE (self));
  g_return_if_fail (spec != NULL);
  job = g_new0 (LoadJob, 1);
  delim = adw_combo_row_get_selected (self->delimiter_row);
  job->delimiter = delim == 1 ? ',' : delim == 2 ? ';' : delim == 3 ? '\t' : 0;
  job->header = (int)adw_combo_row_get_selected (self->header_row);
  if (gtk_widget_get_visible (GTK_WIDGET (self->csv_group))
      && adw_combo_row_get_selected (self->label_row) != GTK_INVALID_LIST_POSITION)
    {
      GtkStringObject *item = adw_combo_row_get_selected_item (self->label_row);
      if (item && adw_combo_row_get_selected (self->label_row) > 0)
        job->label_column = g_strdup (gtk_string_object_get_string (item));
    }
  start_load (self, spec, job);
}

static void
start_load (KiltDataPage *self, const char *spec, LoadJob *job)
{
  g_autoptr (GTask) task = NULL;

  if (self->cancellable)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();
  if (spec != self->spec)
    {
      g_free (self->spec);
      self->spec = g_strdup (spec);
    }
  job->spec = g_strdup (spec);
  job->generation = ++self->generation;

  g_mutex_lock (&self->progress_lock);
  self->progress_fraction = 0;
  g_free (self->progress_what);
  self->progress_what = g_strdup_printf ("Loading %s", spec);
  g_mutex_unlock (&self->progress_lock);
  progress_tick (self);
  gtk_revealer_set_reveal_child (self->progress_revealer, TRUE);
  if (self->progress_timer == 0)
    self->progress_timer = g_timeout_add (100, progress_tick, self);

  task = g_task_new (self, self->cancellable, load_done, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify)load_job_free);
  g_task_run_in_thread (task, load_thread);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_LOADING]);
}

/* ---- CSV column names, read off the main thread ---- */

static void
header_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  const char *path = data;
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GFileInputStream) in = g_file_read (file, cancellable, NULL);
  g_autoptr (GDataInputStream) lines = NULL;
  g_autofree char *line = NULL;
  char delimiter = ',';

  if (in == NULL)
    {
      g_task_return_pointer (task, NULL, NULL);
      return;
    }
  lines = g_data_input_stream_new (G_INPUT_STREAM (in));
  line = g_data_input_stream_read_line_utf8 (lines, NULL, cancellable, NULL);
  if (line == NULL)
    {
      g_task_return_pointer (task, NULL, NULL);
      return;
    }
  g_strchomp (line);
  if (strchr (line, ';') && !strchr (line, ','))
    delimiter = ';';
  else if (strchr (line, '\t') && !strchr (line, ','))
    delimiter = '\t';
  {
    char sep[2] = { delimiter, 0 };
    char **names = g_strsplit (line, sep, -1);
    for (char **n = names; *n; n++)
      g_strstrip (*n);
    g_task_return_pointer (task, names, (GDestroyNotify)g_strfreev);
  }
}

static void
header_done (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltDataPage *self = KILT_DATA_PAGE (source);
  g_auto (GStrv) names = g_task_propagate_pointer (G_TASK (result), NULL);
  g_autoptr (GtkStringList) list = gtk_string_list_new (NULL);

  gtk_string_list_append (list, "Last column");
  for (guint i = 0; names && names[i]; i++)
    if (*names[i])
      gtk_string_list_append (list, names[i]);
  adw_combo_row_set_model (self->label_row, G_LIST_MODEL (list));
  adw_combo_row_set_selected (self->label_row, 0);
}

static void
open_path (KiltDataPage *self, const char *path)
{
  gboolean csv = g_str_has_suffix (path, ".csv") || g_str_has_suffix (path, ".CSV");

  gtk_widget_set_visible (GTK_WIDGET (self->csv_group), csv);
  if (csv)
    {
      g_autoptr (GTask) task = g_task_new (self, NULL, header_done, NULL);
      g_task_set_task_data (task, g_strdup (path), g_free);
      g_task_run_in_thread (task, header_thread);
    }
  kilt_data_page_load (self, path);
}

static void
on_chooser_response (GtkNativeDialog *dialog, int response, KiltDataPage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      if (path)
        open_path (self, path);
    }
  g_clear_object (&self->chooser);
}

static void
open_chooser (KiltDataPage *self, GtkFileChooserAction action, const char *title)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  if (self->chooser)
    return;
  self->chooser = gtk_file_chooser_native_new (
      title, GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL, action, "_Open", "_Cancel");
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_chooser_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
action_open_file (GtkWidget *widget, const char *name, GVariant *param)
{
  open_chooser (KILT_DATA_PAGE (widget), GTK_FILE_CHOOSER_ACTION_OPEN, "Open Data File");
}

static void
action_open_folder (GtkWidget *widget, const char *name, GVariant *param)
{
  open_chooser (KILT_DATA_PAGE (widget), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, "Open Data Folder");
}

static void
action_load (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltDataPage *self = KILT_DATA_PAGE (widget);
  const char *spec = g_variant_get_string (param, NULL);

  gtk_widget_set_visible (GTK_WIDGET (self->csv_group), FALSE);
  kilt_data_page_load (self, spec);
}

static void
action_dismiss_error (GtkWidget *widget, const char *name, GVariant *param)
{
  set_error (KILT_DATA_PAGE (widget), NULL);
}

static void
action_reload (GtkWidget *widget, const char *name, GVariant *param)
{
  kilt_data_page_reload (KILT_DATA_PAGE (widget));
}

static void
action_cancel (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltDataPage *self = KILT_DATA_PAGE (widget);
  if (self->cancellable)
    g_cancellable_cancel (self->cancellable);
}

/* Loads again what was last loaded, with the options it was loaded with: a load that failed
 * since (its error shown, the good data set kept) is not what a reload brings back. */
void
kilt_data_page_reload (KiltDataPage *self)
{
  LoadJob *job;

  g_return_if_fail (KILT_IS_DATA_PAGE (self));
  if (self->loaded.source == NULL)
    {
      if (self->spec)
        kilt_data_page_load (self, self->spec);
      return;
    }
  job = g_new0 (LoadJob, 1);
  job->delimiter = self->loaded.options.delimiter;
  job->header = self->loaded.options.header == KILT_HEADER_YES  ? 1
                : self->loaded.options.header == KILT_HEADER_NO ? 2
                                                                : 0;
  job->label_column = g_strdup (self->loaded.label_column);
  start_load (self, self->loaded.source, job);
}

gboolean
kilt_data_page_get_loading (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), FALSE);
  return self->cancellable != NULL;
}

const KiltDataset *
kilt_data_page_get_dataset (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), NULL);
  return self->dataset;
}

KiltDataset *
kilt_data_page_take_dataset (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), NULL);
  return g_steal_pointer (&self->dataset);
}

gboolean
kilt_data_page_get_spec (KiltDataPage *self, KiltDataSpec *out)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), FALSE);
  memset (out, 0, sizeof *out);
  if (self->loaded.source == NULL)
    return FALSE;
  kilt_data_spec_copy (out, &self->loaded);
  return TRUE;
}

const char *
kilt_data_page_get_error (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), NULL);
  return self->error;
}

double
kilt_data_page_get_val_split (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), 0);
  return gtk_spin_button_get_value (self->val_spin);
}

gboolean
kilt_data_page_get_augment (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), FALSE);
  return gtk_switch_get_active (self->augment_switch);
}

guint
kilt_data_page_get_translate (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), 0);
  return (guint)gtk_spin_button_get_value_as_int (self->translate_spin);
}

gboolean
kilt_data_page_get_tta_flip (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), FALSE);
  return gtk_switch_get_active (self->tta_switch);
}

/* The two augmentations exclude each other (a run refuses both): while one is on, the other
 * cannot be set. */
static void
sync_augment_rows (KiltDataPage *self)
{
  gtk_widget_set_sensitive (self->translate_row, !gtk_switch_get_active (self->augment_switch));
  gtk_widget_set_sensitive (self->augment_row,
                            gtk_spin_button_get_value_as_int (self->translate_spin) == 0);
}

KiltPreprocess
kilt_data_page_get_preprocess (KiltDataPage *self)
{
  g_return_val_if_fail (KILT_IS_DATA_PAGE (self), KILT_PREPROCESS_SCALE);
  return adw_combo_row_get_selected (self->preprocess_row) == 1 ? KILT_PREPROCESS_STANDARD
                                                                : KILT_PREPROCESS_SCALE;
}

static void
kilt_data_page_dispose (GObject *object)
{
  KiltDataPage *self = KILT_DATA_PAGE (object);

  if (self->cancellable)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_handle_id (&self->progress_timer, g_source_remove);
  if (self->chooser)
    gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
  g_clear_object (&self->chooser);
  gtk_widget_dispose_template (GTK_WIDGET (self), KILT_TYPE_DATA_PAGE);
  G_OBJECT_CLASS (kilt_data_page_parent_class)->dispose (object);
}

static void
kilt_data_page_finalize (GObject *object)
{
  KiltDataPage *self = KILT_DATA_PAGE (object);

  g_clear_pointer (&self->dataset, kilt_dataset_free);
  g_clear_object (&self->settings);
  g_free (self->spec);
  kilt_data_spec_clear (&self->loaded);
  g_free (self->error);
  g_free (self->progress_what);
  g_mutex_clear (&self->progress_lock);
  G_OBJECT_CLASS (kilt_data_page_parent_class)->finalize (object);
}

static void
kilt_data_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KiltDataPage *self = KILT_DATA_PAGE (object);

  switch (prop_id)
    {
      case PROP_LOADING:
        g_value_set_boolean (value, self->cancellable != NULL);
        break;
      case PROP_DATASET_NAME:
        g_value_set_string (value, self->dataset ? self->dataset->name : NULL);
        break;
      case PROP_ERROR:
        g_value_set_string (value, self->error);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
kilt_data_page_class_init (KiltDataPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = kilt_data_page_dispose;
  object_class->finalize = kilt_data_page_finalize;
  object_class->get_property = kilt_data_page_get_property;

  props[PROP_LOADING]
      = g_param_spec_boolean ("loading", NULL, NULL, FALSE,
                              G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_DATASET_NAME]
      = g_param_spec_string ("dataset-name", NULL, NULL, NULL,
                             G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_ERROR]
      = g_param_spec_string ("error", NULL, NULL, NULL,
                             G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/kilt/Kilt/ui/kilt-data-page.ui");
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, builtin_list);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, csv_group);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, delimiter_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, header_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, label_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, progress_revealer);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, progress);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, error_revealer);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, error_label);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, summary_group);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, summary_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, preview_group);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, preview);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, histogram_group);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, histogram_frame);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, val_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, preprocess_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, augment_switch);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, augment_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, translate_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, translate_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltDataPage, tta_switch);

  gtk_widget_class_install_action (widget_class, "data.open-file", NULL, action_open_file);
  gtk_widget_class_install_action (widget_class, "data.open-folder", NULL, action_open_folder);
  gtk_widget_class_install_action (widget_class, "data.load", "s", action_load);
  gtk_widget_class_install_action (widget_class, "data.reload", NULL, action_reload);
  gtk_widget_class_install_action (widget_class, "data.cancel", NULL, action_cancel);
  gtk_widget_class_install_action (widget_class, "data.dismiss-error", NULL, action_dismiss_error);
}

static void
kilt_data_page_init (KiltDataPage *self)
{
  g_autoptr (KiltChart) chart = kilt_chart_new ("Training samples per class");
  g_autofree char *last = NULL;

  gtk_widget_init_template (GTK_WIDGET (self));
  g_mutex_init (&self->progress_lock);
  self->settings = g_settings_new ("org.kilt.Kilt");
  g_settings_bind (self->settings, "validation-split", self->val_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "augment", self->augment_switch, "active",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "translate", self->translate_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "tta-flip", self->tta_switch, "active", G_SETTINGS_BIND_DEFAULT);
  g_signal_connect_swapped (self->augment_switch, "notify::active", G_CALLBACK (sync_augment_rows),
                            self);
  g_signal_connect_swapped (self->translate_spin, "value-changed", G_CALLBACK (sync_augment_rows),
                            self);
  sync_augment_rows (self);

  kilt_chart_set_x_axis (chart, "Class", KILT_AXIS_NUMBER);
  kilt_chart_set_y_axis (chart, "Samples", KILT_AXIS_NUMBER);
  kilt_chart_add_series (chart, "samples", KILT_CHART_BAR, NULL);
  self->histogram = KILT_CHART_VIEW (kilt_chart_view_new (chart));
  gtk_widget_set_size_request (GTK_WIDGET (self->histogram), -1, 200);
  gtk_frame_set_child (self->histogram_frame, GTK_WIDGET (self->histogram));

  for (guint i = 0; i < G_N_ELEMENTS (builtins); i++)
    {
      GtkWidget *row = adw_action_row_new ();
      GtkWidget *button = gtk_button_new_with_label ("Load");
      g_autofree char *label = g_strdup_printf ("Load %s", builtins[i].title);

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), builtins[i].title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), builtins[i].subtitle);
      gtk_widget_set_valign (button, GTK_ALIGN_CENTER);
      gtk_actionable_set_action_name (GTK_ACTIONABLE (button), "data.load");
      gtk_actionable_set_action_target (GTK_ACTIONABLE (button), "s", builtins[i].spec);
      gtk_accessible_update_property (GTK_ACCESSIBLE (button), GTK_ACCESSIBLE_PROPERTY_LABEL, label,
                                      -1);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), button);
      adw_action_row_set_activatable_widget (ADW_ACTION_ROW (row), button);
      gtk_list_box_append (self->builtin_list, row);
    }

  /* The main job works out of the box: the last data set (the sample at first) loads now. */
  last = g_settings_get_string (self->settings, "last-dataset");
  if (*last)
    kilt_data_page_load (self, last);
}
