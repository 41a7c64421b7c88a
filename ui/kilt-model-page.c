/* Model page: presets, Keras import, our JSON, the layer table, memory plan, hyper-parameters. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-model-page"

#include "config.h"

#include "kilt-model-page.h"
#include "kilt-error.h"

#include "kilt-keras-file.h"
#include "kilt-keras.h"
#include "kilt-model-json.h"
#include "kilt-planner.h"
#include "kilt-summary.h"
#include "kilt-transfer.h"

#include <json-glib/json-glib.h>
#include <math.h>

struct _KiltModelPage
{
  AdwBin parent_instance;

  AdwComboRow *preset_row;
  GtkRevealer *error_revealer;
  GtkLabel *error_label;
  GtkGrid *layer_grid;
  AdwActionRow *head_row;  /* "Replace Head (N Classes)" when the outputs and classes differ */
  AdwComboRow *freeze_row; /* "Freeze up to": "Per layer", then the layers with weights */
  GtkStringList *freeze_names;
  gboolean freeze_updating; /* the list is being rebuilt or reset: not a person's choice */
  GtkButton *head_button;
  AdwActionRow *plan_row;
  GtkImage *plan_icon;
  AdwComboRow *memory_row;     /* KiltMemoryMode, in its order */
  GtkWidget *use_batch_button; /* "Use Batch N" when the plan does not fit; made in init */
  guint use_batch;
  AdwComboRow *optimizer_row;
  GtkSpinButton *lr_spin;
  GtkWidget *momentum_row, *nesterov_row, *rho_row, *beta1_row, *beta2_row, *epsilon_row;
  GtkWidget *decay_row, *weight_decay_row;
  GtkSpinButton *momentum_spin, *rho_spin, *beta1_spin, *beta2_spin, *epsilon_spin, *decay_spin;
  GtkSpinButton *weight_decay_spin, *val_spin;
  AdwComboRow *lr_schedule_row; /* KiltLrScheduleType, in its order */
  GtkWidget *warmup_row, *lr_start_row, *lr_peak_row, *lr_final_row;
  GtkSpinButton *warmup_spin, *lr_start_spin, *lr_peak_spin, *lr_final_spin;
  GtkSpinButton *label_smoothing_spin;
  GtkSwitch *nesterov_switch;
  GtkSpinButton *batch_spin;
  GtkSpinButton *epochs_spin;
  GtkSpinButton *seed_spin;

  GSettings *settings;
  GtkStringList *presets;
  GtkFileChooserNative *chooser;
  char *source;     /* preset name, or "keras:<path>" / "json:<path>" */
  KiltModel *model; /* built for the current input, shown in the table */
  KiltShape input;
  guint n_classes;
  guint64 dataset_bytes;
  const KiltDeviceInfo *device;
  /* What the person changed on the loaded model, kept while the source stays: the Trainable
   * ticks (layer name -> 1 trainable, 2 frozen) and whether its head is replaced. */
  GHashTable *trainable;
  gboolean replace_head;
  guint refresh_idle;
  /* The plan is worked out in a thread (a second on a big model that must recompute), a short
   * while after the last change; plan_serial tells a finished plan whether it is still the
   * page's latest question. */
  guint plan_timeout;
  guint plan_serial;
  guint plan_shown; /* the serial of the plan on the row */
  GCancellable *plan_cancel;
};

G_DEFINE_FINAL_TYPE (KiltModelPage, kilt_model_page, ADW_TYPE_BIN)

enum
{
  PROP_0,
  PROP_MODEL_NAME,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

static const char *optimizer_keys[] = { "sgd", "rmsprop", "adam", "adadelta", "adagrad" };

static void
set_error (KiltModelPage *self, const char *message)
{
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
}

/* The model a source names, built for the page's input. */
static KiltModel *
load_source (KiltModelPage *self, const char *source, GError **error)
{
  const KiltShape *shape = self->input.c ? &self->input : NULL;
  /* A Keras .h5 or .keras file brings its weights; a JSON file only the architecture. */
  if (g_str_has_prefix (source, "keras:") && kilt_keras_file_sniff (source + 6))
    return kilt_keras_file_load (source + 6, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, error);
  if (g_str_has_prefix (source, "keras:"))
    return kilt_keras_load_file (source + 6, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, error);
  if (g_str_has_prefix (source, "json:"))
    return kilt_model_load_json_file (source + 5, error);
  return kilt_model_load_preset (source, shape, self->n_classes, error);
}

/* The person's changes on a freshly loaded @model: a new head first (when asked and the
 * classes differ), then the Trainable ticks by layer name. */
static gboolean
apply_edits (KiltModelPage *self, KiltModel *model, GError **error)
{
  GHashTableIter it;
  gpointer key, value;

  if (self->replace_head && self->n_classes > 0 && kilt_model_n_outputs (model) != self->n_classes
      && !kilt_transfer_replace_head (model, self->n_classes, kilt_model_page_get_seed (self),
                                      error))
    return FALSE;
  g_hash_table_iter_init (&it, self->trainable);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      KiltNode *node = kilt_model_find (model, key);
      if (node)
        kilt_model_set_trainable (model, node->index, GPOINTER_TO_INT (value) == 1);
    }
  return TRUE;
}

/* Offers a new head when the data's classes and the model's outputs differ. */
static void
show_head_offer (KiltModelPage *self)
{
  gboolean offer = self->model && self->n_classes > 0
                   && kilt_model_n_outputs (self->model) != self->n_classes
                   && kilt_transfer_can_replace_head (self->model, NULL);

  gtk_widget_set_visible (GTK_WIDGET (self->head_row), offer);
  if (offer)
    {
      g_autofree char *title
          = g_strdup_printf ("%s has %u outputs; the data set has %u classes", self->model->name,
                             kilt_model_n_outputs (self->model), self->n_classes);
      g_autofree char *label = g_strdup_printf ("Replace Head (%u Classes)", self->n_classes);
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->head_row), title);
      gtk_button_set_label (self->head_button, label);
    }
}

static void show_table (KiltModelPage *self);
static void show_plan (KiltModelPage *self);

static gboolean
refresh_in_idle (gpointer data)
{
  KiltModelPage *self = data;

  self->refresh_idle = 0;
  show_table (self);
  show_plan (self);
  return G_SOURCE_REMOVE;
}

/* "Per layer" back on the Freeze row, without acting on it. */
static void
reset_freeze_row (KiltModelPage *self)
{
  self->freeze_updating = TRUE;
  adw_combo_row_set_selected (self->freeze_row, 0);
  self->freeze_updating = FALSE;
}

static void
on_trainable_toggled (GtkCheckButton *check, KiltModelPage *self)
{
  const char *name = g_object_get_data (G_OBJECT (check), "kilt-layer");
  gboolean on = gtk_check_button_get_active (check);

  kilt_model_page_set_trainable (self, name, on);
  reset_freeze_row (self);
}

/* The Freeze row's choices: the layers with weights or statistics of the loaded model. */
static void
fill_freeze_row (KiltModelPage *self)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->freeze_names));

  self->freeze_updating = TRUE;
  gtk_string_list_splice (self->freeze_names, 0, n, (const char *const[]){ "Per layer", NULL });
  for (guint i = 0; self->model && i < kilt_model_n_nodes (self->model); i++)
    {
      KiltNode *node = kilt_model_node (self->model, i);
      if (node->n_params > 0 || node->n_state > 0)
        gtk_string_list_append (self->freeze_names, node->name);
    }
  adw_combo_row_set_selected (self->freeze_row, 0);
  self->freeze_updating = FALSE;
}

static void
on_freeze_selected (AdwComboRow *row, GParamSpec *pspec, KiltModelPage *self)
{
  guint i = adw_combo_row_get_selected (row);

  if (self->freeze_updating || i == 0 || i == GTK_INVALID_LIST_POSITION)
    return;
  kilt_model_page_freeze_until (self, gtk_string_list_get_string (self->freeze_names, i));
}

static void
grid_cell (KiltModelPage *self, int col, int row, const char *text, gboolean numeric,
           gboolean header)
{
  GtkWidget *label = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (label), numeric ? 1 : 0);
  /* Only names give way when space runs out; shapes and figures are shown whole. */
  if (col == 0)
    {
      gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
      gtk_label_set_width_chars (GTK_LABEL (label), MIN ((int)g_utf8_strlen (text, -1), 24));
    }
  gtk_widget_set_hexpand (label, col == 0);
  if (header)
    gtk_widget_add_css_class (label, "heading");
  else if (col == 1)
    gtk_widget_add_css_class (label, "dim-label");
  gtk_grid_attach (self->layer_grid, label, col, row, 1, 1);
}

/* One format down a column: "512", "9.2 k", "1.25 M" (it mixed "9248" with "18.5 k"). */
static char *
count_text (guint64 n)
{
  if (n >= 1000000000)
    return g_strdup_printf ("%.2f G", n / 1e9);
  if (n >= 1000000)
    return g_strdup_printf ("%.2f M", n / 1e6);
  if (n >= 1000)
    return g_strdup_printf ("%.1f k", n / 1e3);
  return g_strdup_printf ("%" G_GUINT64_FORMAT, n);
}

static void
show_table (KiltModelPage *self)
{
  GtkWidget *child;
  /* Memory is per batch: say so, and which batch. */
  g_autofree char *mem_head
      = g_strdup_printf ("Memory (batch %u)", kilt_model_page_get_batch (self));
  const char *heads[]
      = { "Layer", "Type", "Output shape", "Parameters", "FLOPs", mem_head, "Train" };
  int row = 1;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->layer_grid))))
    gtk_grid_remove (self->layer_grid, child);
  for (int c = 0; c < 7; c++)
    grid_cell (self, c, 0, heads[c], c >= 3 && c < 6, TRUE);
  show_head_offer (self);
  if (self->model == NULL)
    return;
  {
    g_autoptr (KiltSummary) sum = kilt_summary_new (self->model, kilt_model_page_get_batch (self));
    for (guint i = 0; i < sum->rows->len; i++, row++)
      {
        KiltSummaryRow *r = &g_array_index (sum->rows, KiltSummaryRow, i);
        g_autofree char *shape = kilt_summary_format_shape (&r->out_shape);
        g_autofree char *params = count_text (r->params);
        g_autofree char *flops = count_text (r->flops);
        g_autofree char *mem = g_format_size_full (r->act_bytes, G_FORMAT_SIZE_IEC_UNITS);
        KiltNode *node = kilt_model_node (self->model, i);
        /* Which activation: an Activation row, or a layer with one fused ("Dense · relu"). */
        g_autofree char *type = node && node->cfg.activation != KILT_ACT_LINEAR
                                    ? g_strdup_printf ("%s · %s", r->type,
                                                       kilt_activation_name (node->cfg.activation))
                                    : g_strdup (r->type);
        grid_cell (self, 0, row, r->name, FALSE, FALSE);
        grid_cell (self, 1, row, type, FALSE, FALSE);
        grid_cell (self, 2, row, shape, FALSE, FALSE);
        grid_cell (self, 3, row, params, TRUE, FALSE);
        grid_cell (self, 4, row, flops, TRUE, FALSE);
        grid_cell (self, 5, row, mem, TRUE, FALSE);
        /* Layers with weights (or running statistics) can be frozen. */
        if (node && (node->n_params > 0 || node->n_state > 0))
          {
            GtkWidget *check = gtk_check_button_new ();
            g_autofree char *tip = g_strdup_printf ("Train %s (untick to freeze it)", r->name);
            gtk_check_button_set_active (GTK_CHECK_BUTTON (check), !node->frozen);
            gtk_widget_set_halign (check, GTK_ALIGN_CENTER);
            gtk_widget_set_tooltip_text (check, tip);
            g_object_set_data_full (G_OBJECT (check), "kilt-layer", g_strdup (r->name), g_free);
            g_signal_connect (check, "toggled", G_CALLBACK (on_trainable_toggled), self);
            gtk_grid_attach (self->layer_grid, check, 6, row, 1, 1);
          }
      }
    {
      g_autofree char *params = count_text (sum->total_params);
      g_autofree char *flops = count_text (sum->total_flops);
      g_autofree char *mem = g_format_size_full (sum->total_act_bytes, G_FORMAT_SIZE_IEC_UNITS);
      /* The parameters' total counts the trainable ones: say so once some are frozen. */
      grid_cell (self, 0, row, kilt_model_n_frozen (self->model) ? "Total trainable" : "Total",
                 FALSE, TRUE);
      grid_cell (self, 3, row, params, TRUE, TRUE);
      grid_cell (self, 4, row, flops, TRUE, TRUE);
      grid_cell (self, 5, row, mem, TRUE, TRUE);
    }
  }
}

/* The plan for the page's model, batch and optimizer on its device, or NULL without both. */
static KiltPlan *
current_plan (KiltModelPage *self)
{
  KiltOptimizerConfig opt;

  if (self->model == NULL || self->device == NULL)
    return NULL;
  opt = kilt_model_page_get_optimizer (self);
  return kilt_plan_compute_memory (
      self->model, kilt_model_page_get_batch (self), &opt, self->dataset_bytes, self->device,
      kilt_context_budget_for (self->device), kilt_model_page_get_memory (self));
}

KiltMemoryMode
kilt_model_page_get_memory (KiltModelPage *self)
{
  guint i = adw_combo_row_get_selected (self->memory_row);
  return i <= KILT_MEMORY_RECOMPUTE ? (KiltMemoryMode)i : KILT_MEMORY_AUTO;
}

void
kilt_model_page_set_memory (KiltModelPage *self, KiltMemoryMode mode)
{
  g_return_if_fail (KILT_IS_MODEL_PAGE (self));
  adw_combo_row_set_selected (self->memory_row, mode);
}

static gboolean
memory_get_mapping (GValue *value, GVariant *variant, gpointer data)
{
  KiltMemoryMode mode = KILT_MEMORY_AUTO;

  kilt_memory_mode_from_name (g_variant_get_string (variant, NULL), &mode);
  g_value_set_uint (value, mode);
  return TRUE;
}

static GVariant *
memory_set_mapping (const GValue *value, const GVariantType *type, gpointer data)
{
  return g_variant_new_string (kilt_memory_mode_name ((KiltMemoryMode)g_value_get_uint (value)));
}

gboolean
kilt_model_page_check_fits (KiltModelPage *self, GError **error)
{
  g_autoptr (KiltPlan) plan = NULL;

  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  plan = current_plan (self);
  if (plan == NULL || plan->fits)
    return TRUE;
  if (plan->recompute_fits)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
                 "%s does not fit on %s at batch %u keeping every activation: %s; %s. Set "
                 "Activations to Auto or Recompute, or the batch to %u or less, on the Model page",
                 self->model->name, self->device->name, plan->batch, plan->message, plan->hint,
                 plan->max_batch);
  else if (plan->max_batch > 0)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
                 "%s does not fit on %s at batch %u: %s. Set the batch to %u or less on the "
                 "Model page",
                 self->model->name, self->device->name, plan->batch, plan->message,
                 plan->max_batch);
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
                 "%s does not fit on %s: %s. Choose a smaller model or another device",
                 self->model->name, self->device->name, plan->message);
  return FALSE;
}

/* The plan row for @plan (NULL: no model or device). */
static void
display_plan (KiltModelPage *self, const KiltPlan *plan)
{
  const char *icon = "dialog-information-symbolic";
  const char *css = NULL;

  self->plan_shown = self->plan_serial;
  gtk_widget_remove_css_class (GTK_WIDGET (self->plan_icon), "success");
  gtk_widget_remove_css_class (GTK_WIDGET (self->plan_icon), "error");
  if (plan == NULL)
    {
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->plan_row),
                                     self->device ? "Choose a model" : "Choose a device");
      adw_action_row_set_subtitle (self->plan_row, "");
      self->use_batch = 0;
    }
  else
    {
      g_autofree char *title = NULL;

      if (plan->fits)
        title = g_strdup_printf ("Fits on %s", plan->device_name);
      else
        title = g_strdup_printf ("Does not fit on %s", plan->device_name);
      GString *sub = g_string_new (plan->message);

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->plan_row), title);
      /* What the total is made of, by category, as the Train page's memory chart shows it. */
      g_string_append_c (sub, '\n');
      for (int c = 0, shown = 0; c < KILT_MEM_N_CATEGORIES; c++)
        if (plan->bytes[c])
          {
            g_autofree char *b = g_format_size_full (plan->bytes[c], G_FORMAT_SIZE_IEC_UNITS);
            g_string_append_printf (sub, "%s%s %s", shown++ ? " · " : "",
                                    kilt_mem_category_name ((KiltMemCategory)c), b);
          }
      {
        g_autofree char *markup = g_markup_escape_text (sub->str, -1);
        adw_action_row_set_subtitle (self->plan_row, markup);
      }
      g_string_free (sub, TRUE);
      self->use_batch = !plan->fits && plan->max_batch > 0 ? plan->max_batch : 0;
      if (self->use_batch)
        {
          g_autofree char *label = g_strdup_printf ("Use Batch %u", self->use_batch);
          gtk_button_set_label (GTK_BUTTON (self->use_batch_button), label);
        }
      icon = plan->fits ? "emblem-ok-symbolic" : "dialog-error-symbolic";
      css = plan->fits ? "success" : "error";
    }
  if (self->use_batch_button)
    gtk_widget_set_visible (self->use_batch_button, plan && self->use_batch);
  gtk_image_set_from_icon_name (self->plan_icon, icon);
  if (css)
    gtk_widget_add_css_class (GTK_WIDGET (self->plan_icon), css);
}

/* One question for the planning thread: a copy of all it reads, since the page's model and
 * settings may change while it works. */
typedef struct
{
  char *json;
  guint batch;
  KiltOptimizerConfig opt;
  guint64 dataset_bytes;
  KiltDeviceInfo *device;
  guint64 budget;
  KiltMemoryMode mode;
  guint serial;
} PlanJob;

static void
plan_job_free (PlanJob *job)
{
  g_free (job->json);
  kilt_device_info_free (job->device);
  g_free (job);
}

static void
plan_in_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  PlanJob *job = data;
  GError *error = NULL;
  g_autoptr (KiltModel) model = kilt_model_load_json_data (job->json, -1, "model page", &error);

  if (model == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_pointer (task,
                         kilt_plan_compute_memory (model, job->batch, &job->opt, job->dataset_bytes,
                                                   job->device, job->budget, job->mode),
                         (GDestroyNotify)kilt_plan_free);
}

static void
plan_done (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltModelPage *self = KILT_MODEL_PAGE (source);
  PlanJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltPlan) plan = g_task_propagate_pointer (G_TASK (result), &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || job->serial != self->plan_serial)
    return;
  if (plan == NULL)
    {
      /* The page's own model always reads back; say so if it ever does not. */
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->plan_row), "No memory plan");
      adw_action_row_set_subtitle (self->plan_row, error->message);
      self->plan_shown = self->plan_serial;
      return;
    }
  display_plan (self, plan);
}

static gboolean
plan_start (gpointer data)
{
  KiltModelPage *self = data;
  PlanJob *job = g_new0 (PlanJob, 1);
  g_autoptr (GTask) task = NULL;

  self->plan_timeout = 0;
  job->json = kilt_model_to_json (self->model);
  job->batch = kilt_model_page_get_batch (self);
  job->opt = kilt_model_page_get_optimizer (self);
  job->dataset_bytes = self->dataset_bytes;
  job->device = kilt_device_info_copy (self->device);
  job->budget = kilt_context_budget_for (self->device);
  job->mode = kilt_model_page_get_memory (self);
  job->serial = self->plan_serial;
  task = g_task_new (self, self->plan_cancel, plan_done, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify)plan_job_free);
  g_task_run_in_thread (task, plan_in_thread);
  return G_SOURCE_REMOVE;
}

/* Asks for the plan of what the page shows now. Without a model or device it says so at once;
 * otherwise the plan comes from a thread 100 ms after the last change, and the row keeps the
 * last plan until then. */
static void
show_plan (KiltModelPage *self)
{
  self->plan_serial++;
  if (self->model == NULL || self->device == NULL)
    {
      g_clear_handle_id (&self->plan_timeout, g_source_remove);
      display_plan (self, NULL);
      return;
    }
  if (self->plan_timeout == 0)
    self->plan_timeout = g_timeout_add (100, plan_start, self);
}

/* The plan of what the page shows now, waited for: a person acts on the row they see, a caller
 * of the page's API on the settings it just made. */
static void
flush_plan (KiltModelPage *self)
{
  g_autoptr (KiltPlan) plan = NULL;

  /* A thread may be at work on an earlier question; its answer no longer counts. */
  g_clear_handle_id (&self->plan_timeout, g_source_remove);
  self->plan_serial++;
  plan = current_plan (self);
  display_plan (self, plan);
}

static gboolean
use_source (KiltModelPage *self, const char *source)
{
  g_autoptr (GError) error = NULL;
  KiltModel *model = load_source (self, source, &error);

  if (model == NULL)
    {
      set_error (self, error->message);
      return FALSE;
    }
  /* Another model: the changes made to the last one do not carry over. */
  if (g_strcmp0 (self->source, source) != 0)
    {
      g_hash_table_remove_all (self->trainable);
      self->replace_head = FALSE;
    }
  if (!apply_edits (self, model, &error))
    {
      kilt_model_free (model);
      set_error (self, error->message);
      return FALSE;
    }
  set_error (self, NULL);
  g_clear_pointer (&self->model, kilt_model_free);
  self->model = model;
  if (g_strcmp0 (self->source, source) != 0)
    {
      g_free (self->source);
      self->source = g_strdup (source);
      g_settings_set_string (self->settings, "last-model", source);
    }
  fill_freeze_row (self);
  show_table (self);
  show_plan (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_MODEL_NAME]);
  return TRUE;
}

/* The "description" of preset @name's JSON file, or NULL. */
static char *
preset_description (const char *name)
{
  g_autofree char *dir = kilt_model_preset_dir ();
  g_autofree char *file = g_strconcat (name, ".json", NULL);
  g_autofree char *path = dir ? g_build_filename (dir, file, NULL) : NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root;

  if (path == NULL || !json_parser_load_from_file (parser, path, NULL))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  return g_strdup (json_object_get_string_member_with_default (json_node_get_object (root),
                                                               "description", NULL));
}

static void
on_preset_selected (AdwComboRow *row, GParamSpec *pspec, KiltModelPage *self)
{
  GtkStringObject *item = adw_combo_row_get_selected_item (row);

  if (item)
    {
      /* Say what the preset is, not only its id. */
      g_autofree char *about = preset_description (gtk_string_object_get_string (item));
      g_autofree char *subtitle
          = about
                ? g_strdup_printf ("%s Adapted to the loaded data set’s input and classes.", about)
                : g_strdup ("Adapted to the loaded data set’s input and classes");
      /* Plain text: a combo row shows its subtitle as it is given (an escaped ' showed as
       * "&apos;"). */
      adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
      use_source (self, gtk_string_object_get_string (item));
    }
}

const char *
kilt_model_page_get_preset_subtitle (KiltModelPage *self)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), NULL);
  return adw_action_row_get_subtitle (ADW_ACTION_ROW (self->preset_row));
}

gboolean
kilt_model_page_choose_preset (KiltModelPage *self, const char *name)
{
  guint n;

  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  n = g_list_model_get_n_items (G_LIST_MODEL (self->presets));
  for (guint i = 0; i < n; i++)
    if (g_strcmp0 (gtk_string_list_get_string (self->presets, i), name) == 0)
      {
        if (adw_combo_row_get_selected (self->preset_row) == i)
          return use_source (self, name);
        adw_combo_row_set_selected (self->preset_row, i);
        return g_strcmp0 (self->source, name) == 0;
      }
  return FALSE;
}

static void
on_chooser_response (GtkNativeDialog *dialog, int response, KiltModelPage *self)
{
  const char *kind = g_object_get_data (G_OBJECT (dialog), "kilt-kind");

  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      if (path && g_strcmp0 (kind, "save") == 0)
        {
          g_autoptr (GError) error = NULL;
          if (self->model && !kilt_model_save_json_file (self->model, path, &error))
            set_error (self, error->message);
        }
      else if (path)
        {
          g_autofree char *source = g_strconcat (kind, ":", path, NULL);
          use_source (self, source);
        }
    }
  g_clear_object (&self->chooser);
}

static void
open_chooser (KiltModelPage *self, const char *kind, const char *title, gboolean save)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  g_autoptr (GtkFileFilter) filter = gtk_file_filter_new ();

  if (self->chooser)
    return;
  self->chooser = gtk_file_chooser_native_new (
      title, GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
      save ? GTK_FILE_CHOOSER_ACTION_SAVE : GTK_FILE_CHOOSER_ACTION_OPEN, save ? "_Save" : "_Open",
      "_Cancel");
  gtk_file_filter_add_pattern (filter, "*.json");
  if (g_str_equal (kind, "keras"))
    {
      gtk_file_filter_set_name (filter, "Keras models (.json, .h5, .keras)");
      gtk_file_filter_add_pattern (filter, "*.h5");
      gtk_file_filter_add_pattern (filter, "*.keras");
    }
  else
    gtk_file_filter_set_name (filter, "JSON files");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), filter);
  if (save)
    gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (self->chooser), "model.json");
  g_object_set_data (G_OBJECT (self->chooser), "kilt-kind", (gpointer)kind);
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_chooser_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
action_import_keras (GtkWidget *widget, const char *name, GVariant *param)
{
  open_chooser (KILT_MODEL_PAGE (widget), "keras", "Import Keras Model", FALSE);
}

static void
action_open (GtkWidget *widget, const char *name, GVariant *param)
{
  open_chooser (KILT_MODEL_PAGE (widget), "json", "Open Model", FALSE);
}

static void
action_save (GtkWidget *widget, const char *name, GVariant *param)
{
  open_chooser (KILT_MODEL_PAGE (widget), "save", "Save Model", TRUE);
}

static void
action_replace_head (GtkWidget *widget, const char *name, GVariant *param)
{
  kilt_model_page_replace_head (KILT_MODEL_PAGE (widget));
}

void
kilt_model_page_set_input (KiltModelPage *self, const KiltShape *shape, guint n_classes,
                           guint64 dataset_bytes)
{
  g_return_if_fail (KILT_IS_MODEL_PAGE (self));
  if (shape && self->input.c == shape->c && self->input.h == shape->h && self->input.w == shape->w
      && self->n_classes == n_classes && self->dataset_bytes == dataset_bytes)
    return;
  self->input = shape ? *shape : (KiltShape){ 0, 0, 0 };
  self->n_classes = n_classes;
  self->dataset_bytes = dataset_bytes;
  if (self->source && !g_str_has_prefix (self->source, "keras:")
      && !g_str_has_prefix (self->source, "json:"))
    {
      g_autofree char *source = g_strdup (self->source);
      use_source (self, source);
    }
  else
    show_head_offer (self);
}

void
kilt_model_page_set_device (KiltModelPage *self, const KiltDeviceInfo *device)
{
  g_return_if_fail (KILT_IS_MODEL_PAGE (self));
  self->device = device;
  show_plan (self);
}

KiltModel *
kilt_model_page_create_model (KiltModelPage *self, GError **error)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), NULL);
  if (self->source == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "Choose a model first");
      return NULL;
    }
  {
    KiltModel *model = load_source (self, self->source, error);
    if (model && !apply_edits (self, model, error))
      g_clear_pointer (&model, kilt_model_free);
    return model;
  }
}

gboolean
kilt_model_page_open (KiltModelPage *self, const char *source)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  return use_source (self, source);
}

gboolean
kilt_model_page_replace_head (KiltModelPage *self)
{
  g_autofree char *source = NULL;

  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  if (!gtk_widget_get_visible (GTK_WIDGET (self->head_row)) || self->source == NULL)
    return FALSE;
  self->replace_head = TRUE;
  source = g_strdup (self->source);
  return use_source (self, source);
}

gboolean
kilt_model_page_set_trainable (KiltModelPage *self, const char *layer, gboolean trainable)
{
  KiltNode *node;

  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  node = self->model ? kilt_model_find (self->model, layer) : NULL;
  if (node == NULL)
    return FALSE;
  g_hash_table_insert (self->trainable, g_strdup (layer), GINT_TO_POINTER (trainable ? 1 : 2));
  if (node->frozen != !trainable)
    {
      kilt_model_set_trainable (self->model, node->index, trainable);
      /* The table is rebuilt after the toggle's own signal is over. */
      if (self->refresh_idle == 0)
        self->refresh_idle = g_idle_add (refresh_in_idle, self);
    }
  return TRUE;
}

gboolean
kilt_model_page_freeze_until (KiltModelPage *self, const char *layer)
{
  KiltNode *last;

  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  last = self->model ? kilt_model_find (self->model, layer) : NULL;
  if (last == NULL)
    return FALSE;
  for (guint i = 1; i < kilt_model_n_nodes (self->model); i++)
    {
      KiltNode *node = kilt_model_node (self->model, i);
      if (node->n_params > 0 || node->n_state > 0)
        kilt_model_page_set_trainable (self, node->name, i > last->index);
    }
  return TRUE;
}

const char *
kilt_model_page_get_head_offer (KiltModelPage *self)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), NULL);
  return gtk_widget_get_visible (GTK_WIDGET (self->head_row))
             ? gtk_button_get_label (self->head_button)
             : NULL;
}

const char *
kilt_model_page_get_model_name (KiltModelPage *self)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), NULL);
  return self->model ? self->model->name : NULL;
}

static KiltLrScheduleType
chosen_schedule (KiltModelPage *self)
{
  guint i = adw_combo_row_get_selected (self->lr_schedule_row);
  return i < KILT_LR_N_SCHEDULES ? (KiltLrScheduleType)i : KILT_LR_CONSTANT;
}

/* The rows the chosen schedule uses: warm-up for all but one-cycle (which rises by itself),
 * the start fraction with a warm-up or one-cycle, the peak for one-cycle, the final fraction
 * for the decays. */
static void
show_schedule_rows (KiltModelPage *self)
{
  KiltLrScheduleType type = chosen_schedule (self);
  gboolean warmup = type != KILT_LR_ONE_CYCLE;

  gtk_widget_set_visible (self->warmup_row, warmup);
  gtk_widget_set_visible (self->lr_start_row,
                          type == KILT_LR_ONE_CYCLE
                              || (warmup && gtk_spin_button_get_value (self->warmup_spin) > 0));
  gtk_widget_set_visible (self->lr_peak_row, type == KILT_LR_ONE_CYCLE);
  gtk_widget_set_visible (self->lr_final_row, type != KILT_LR_CONSTANT);
}

static gboolean
schedule_get_mapping (GValue *value, GVariant *variant, gpointer data)
{
  KiltLrScheduleType type = KILT_LR_CONSTANT;

  kilt_lr_schedule_from_name (g_variant_get_string (variant, NULL), &type);
  g_value_set_uint (value, type);
  return TRUE;
}

static GVariant *
schedule_set_mapping (const GValue *value, const GVariantType *type, gpointer data)
{
  guint i = g_value_get_uint (value);
  return g_variant_new_string (kilt_lr_schedule_name (MIN (i, KILT_LR_N_SCHEDULES - 1)));
}

KiltOptimizerConfig
kilt_model_page_get_optimizer (KiltModelPage *self)
{
  guint i = adw_combo_row_get_selected (self->optimizer_row);
  KiltOptimizerType type = i < KILT_OPT_N_TYPES ? (KiltOptimizerType)i : KILT_OPT_RMSPROP;
  KiltOptimizerConfig opt;

  opt = kilt_optimizer_config_default (type);
  opt.lr = (float)gtk_spin_button_get_value (self->lr_spin);
  /* Only what the optimizer uses is shown; the rest keep its defaults. */
  if (gtk_widget_get_visible (self->momentum_row))
    opt.momentum = (float)gtk_spin_button_get_value (self->momentum_spin);
  if (gtk_widget_get_visible (self->nesterov_row))
    opt.nesterov = gtk_switch_get_active (self->nesterov_switch);
  if (gtk_widget_get_visible (self->rho_row))
    opt.rho = (float)gtk_spin_button_get_value (self->rho_spin);
  if (gtk_widget_get_visible (self->beta1_row))
    opt.beta1 = (float)gtk_spin_button_get_value (self->beta1_spin);
  if (gtk_widget_get_visible (self->beta2_row))
    opt.beta2 = (float)gtk_spin_button_get_value (self->beta2_spin);
  if (gtk_widget_get_visible (self->epsilon_row))
    opt.epsilon = (float)gtk_spin_button_get_value (self->epsilon_spin);
  opt.decay = (float)gtk_spin_button_get_value (self->decay_spin);
  opt.weight_decay = (float)gtk_spin_button_get_value (self->weight_decay_spin);
  /* As with the optimizer's rows, a hidden setting keeps the schedule's default. */
  opt.schedule.type = chosen_schedule (self);
  if (gtk_widget_get_visible (self->warmup_row))
    opt.schedule.warmup_epochs = (float)gtk_spin_button_get_value (self->warmup_spin);
  if (gtk_widget_get_visible (self->lr_start_row))
    opt.schedule.start = (float)gtk_spin_button_get_value (self->lr_start_spin);
  if (gtk_widget_get_visible (self->lr_peak_row))
    opt.schedule.peak = (float)gtk_spin_button_get_value (self->lr_peak_spin);
  if (gtk_widget_get_visible (self->lr_final_row))
    opt.schedule.final = (float)gtk_spin_button_get_value (self->lr_final_spin);
  return opt;
}

float
kilt_model_page_get_label_smoothing (KiltModelPage *self)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), 0.0f);
  return (float)gtk_spin_button_get_value (self->label_smoothing_spin);
}

void
kilt_model_page_set_label_smoothing (KiltModelPage *self, float smoothing)
{
  g_return_if_fail (KILT_IS_MODEL_PAGE (self));
  gtk_spin_button_set_value (self->label_smoothing_spin, smoothing);
}

void
kilt_model_page_set_optimizer (KiltModelPage *self, const KiltOptimizerConfig *opt)
{
  g_return_if_fail (KILT_IS_MODEL_PAGE (self));
  /* Choosing the type resets its rows to the defaults; then the given figures go in. */
  adw_combo_row_set_selected (self->optimizer_row, opt->type);
  gtk_spin_button_set_value (self->lr_spin, opt->lr);
  gtk_spin_button_set_value (self->momentum_spin, opt->momentum);
  gtk_switch_set_active (self->nesterov_switch, opt->nesterov);
  gtk_spin_button_set_value (self->rho_spin, opt->rho);
  gtk_spin_button_set_value (self->beta1_spin, opt->beta1);
  gtk_spin_button_set_value (self->beta2_spin, opt->beta2);
  gtk_spin_button_set_value (self->epsilon_spin, opt->epsilon);
  gtk_spin_button_set_value (self->decay_spin, opt->decay);
  gtk_spin_button_set_value (self->weight_decay_spin, opt->weight_decay);
  /* The page sets warm-up in epochs; a run's warm-up in steps (from the command line) shows as
   * none here. */
  adw_combo_row_set_selected (self->lr_schedule_row,
                              MIN ((guint)opt->schedule.type, KILT_LR_N_SCHEDULES - 1));
  gtk_spin_button_set_value (self->warmup_spin, opt->schedule.warmup_epochs);
  gtk_spin_button_set_value (self->lr_start_spin, opt->schedule.start);
  gtk_spin_button_set_value (self->lr_peak_spin, opt->schedule.peak);
  gtk_spin_button_set_value (self->lr_final_spin, opt->schedule.final);
  show_schedule_rows (self);
}

guint
kilt_model_page_get_batch (KiltModelPage *self)
{
  return (guint)gtk_spin_button_get_value_as_int (self->batch_spin);
}

guint
kilt_model_page_get_epochs (KiltModelPage *self)
{
  return (guint)gtk_spin_button_get_value_as_int (self->epochs_spin);
}

void
kilt_model_page_set_epochs (KiltModelPage *self, guint epochs)
{
  gtk_spin_button_set_value (self->epochs_spin, epochs);
}

guint32
kilt_model_page_get_seed (KiltModelPage *self)
{
  return (guint32)gtk_spin_button_get_value (self->seed_spin);
}

static gboolean
optimizer_get_mapping (GValue *value, GVariant *variant, gpointer data)
{
  const char *key = g_variant_get_string (variant, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (optimizer_keys); i++)
    if (g_strcmp0 (key, optimizer_keys[i]) == 0)
      {
        g_value_set_uint (value, i);
        return TRUE;
      }
  g_value_set_uint (value, 1);
  return TRUE;
}

static GVariant *
optimizer_set_mapping (const GValue *value, const GVariantType *type, gpointer data)
{
  guint i = g_value_get_uint (value);
  return g_variant_new_string (optimizer_keys[MIN (i, G_N_ELEMENTS (optimizer_keys) - 1)]);
}

static KiltOptimizerType
chosen_optimizer (KiltModelPage *self)
{
  guint i = adw_combo_row_get_selected (self->optimizer_row);
  return i < KILT_OPT_N_TYPES ? (KiltOptimizerType)i : KILT_OPT_RMSPROP;
}

/* Shows the rows the chosen optimizer uses, set to its Keras defaults. */
static void
show_optimizer_rows (KiltModelPage *self, gboolean reset)
{
  KiltOptimizerType type = chosen_optimizer (self);
  KiltOptimizerConfig d = kilt_optimizer_config_default (type);

  gtk_widget_set_visible (self->momentum_row, type == KILT_OPT_SGD);
  gtk_widget_set_visible (self->nesterov_row, type == KILT_OPT_SGD);
  gtk_widget_set_visible (self->rho_row, type == KILT_OPT_RMSPROP || type == KILT_OPT_ADADELTA);
  gtk_widget_set_visible (self->beta1_row, type == KILT_OPT_ADAM);
  gtk_widget_set_visible (self->beta2_row, type == KILT_OPT_ADAM);
  gtk_widget_set_visible (self->epsilon_row, type != KILT_OPT_SGD);
  if (!reset)
    return;
  gtk_spin_button_set_value (self->momentum_spin, d.momentum);
  gtk_switch_set_active (self->nesterov_switch, d.nesterov);
  gtk_spin_button_set_value (self->rho_spin, d.rho);
  gtk_spin_button_set_value (self->beta1_spin, d.beta1);
  gtk_spin_button_set_value (self->beta2_spin, d.beta2);
  gtk_spin_button_set_value (self->epsilon_spin, d.epsilon);
  gtk_spin_button_set_value (self->decay_spin, d.decay);
  gtk_spin_button_set_value (self->weight_decay_spin, d.weight_decay);
}

static void
on_optimizer_changed (KiltModelPage *self)
{
  show_optimizer_rows (self, TRUE);
}

/* Small figures (1e-07) read better in exponent form than as 0.0000001000. */
static gboolean
on_small_output (GtkSpinButton *spin, gpointer data)
{
  double v = gtk_adjustment_get_value (gtk_spin_button_get_adjustment (spin));
  char text[G_ASCII_DTOSTR_BUF_SIZE];

  g_ascii_formatd (text, sizeof text, "%g", v);
  if (g_strcmp0 (text, gtk_editable_get_text (GTK_EDITABLE (spin))) != 0)
    gtk_editable_set_text (GTK_EDITABLE (spin), text);
  return TRUE;
}

static int
on_small_input (GtkSpinButton *spin, double *value, gpointer data)
{
  const char *text = gtk_editable_get_text (GTK_EDITABLE (spin));
  char *end = NULL;
  double v = g_ascii_strtod (text, &end);

  if (end == text || (end && *end && !g_ascii_isspace (*end)) || !isfinite (v))
    return GTK_INPUT_ERROR;
  *value = v;
  return TRUE;
}

static void
on_use_batch (KiltModelPage *self)
{
  if (self->use_batch)
    gtk_spin_button_set_value (self->batch_spin, self->use_batch);
}

void
kilt_model_page_set_batch (KiltModelPage *self, guint batch)
{
  g_return_if_fail (KILT_IS_MODEL_PAGE (self));
  gtk_spin_button_set_value (self->batch_spin, batch);
}

gboolean
kilt_model_page_plan_is_current (KiltModelPage *self)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  return self->plan_shown == self->plan_serial;
}

gboolean
kilt_model_page_use_fitting_batch (KiltModelPage *self)
{
  g_return_val_if_fail (KILT_IS_MODEL_PAGE (self), FALSE);
  flush_plan (self);
  if (!gtk_widget_get_visible (self->use_batch_button))
    return FALSE;
  g_signal_emit_by_name (self->use_batch_button, "clicked");
  return TRUE;
}

static void
on_setting_changed (KiltModelPage *self)
{
  show_table (self);
  show_plan (self);
}

static void
kilt_model_page_dispose (GObject *object)
{
  KiltModelPage *self = KILT_MODEL_PAGE (object);

  if (self->chooser)
    gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
  g_clear_object (&self->chooser);
  g_clear_handle_id (&self->refresh_idle, g_source_remove);
  g_clear_handle_id (&self->plan_timeout, g_source_remove);
  if (self->plan_cancel)
    g_cancellable_cancel (self->plan_cancel);
  g_clear_object (&self->plan_cancel);
  gtk_widget_dispose_template (GTK_WIDGET (self), KILT_TYPE_MODEL_PAGE);
  G_OBJECT_CLASS (kilt_model_page_parent_class)->dispose (object);
}

static void
kilt_model_page_finalize (GObject *object)
{
  KiltModelPage *self = KILT_MODEL_PAGE (object);

  g_clear_pointer (&self->model, kilt_model_free);
  g_clear_pointer (&self->trainable, g_hash_table_unref);
  g_clear_object (&self->freeze_names);
  g_clear_object (&self->settings);
  g_clear_object (&self->presets);
  g_free (self->source);
  G_OBJECT_CLASS (kilt_model_page_parent_class)->finalize (object);
}

static void
kilt_model_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KiltModelPage *self = KILT_MODEL_PAGE (object);

  switch (prop_id)
    {
      case PROP_MODEL_NAME:
        g_value_set_string (value, self->model ? self->model->name : NULL);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
kilt_model_page_class_init (KiltModelPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = kilt_model_page_dispose;
  object_class->finalize = kilt_model_page_finalize;
  object_class->get_property = kilt_model_page_get_property;

  props[PROP_MODEL_NAME]
      = g_param_spec_string ("model-name", NULL, NULL, NULL,
                             G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/kilt/Kilt/ui/kilt-model-page.ui");
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, preset_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, error_revealer);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, error_label);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, layer_grid);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, head_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, head_button);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, freeze_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, plan_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, plan_icon);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, memory_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, optimizer_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, momentum_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, nesterov_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, rho_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, beta1_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, beta2_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, epsilon_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, decay_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, weight_decay_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, momentum_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, nesterov_switch);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, rho_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, beta1_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, beta2_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, epsilon_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, decay_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, weight_decay_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_schedule_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, warmup_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, warmup_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_start_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_start_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_peak_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_peak_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_final_row);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, lr_final_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, label_smoothing_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, val_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, batch_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, epochs_spin);
  gtk_widget_class_bind_template_child (widget_class, KiltModelPage, seed_spin);

  gtk_widget_class_install_action (widget_class, "model.import-keras", NULL, action_import_keras);
  gtk_widget_class_install_action (widget_class, "model.open", NULL, action_open);
  gtk_widget_class_install_action (widget_class, "model.save", NULL, action_save);
  gtk_widget_class_install_action (widget_class, "model.replace-head", NULL, action_replace_head);
}

static void
kilt_model_page_init (KiltModelPage *self)
{
  g_autofree char *last = NULL;

  gtk_widget_init_template (GTK_WIDGET (self));
  self->plan_cancel = g_cancellable_new ();
  self->trainable = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->freeze_names = gtk_string_list_new ((const char *const[]){ "Per layer", NULL });
  adw_combo_row_set_model (self->freeze_row, G_LIST_MODEL (self->freeze_names));
  g_signal_connect (self->freeze_row, "notify::selected", G_CALLBACK (on_freeze_selected), self);
  self->settings = g_settings_new ("org.kilt.Kilt");
  g_settings_bind_with_mapping (self->settings, "optimizer", self->optimizer_row, "selected",
                                G_SETTINGS_BIND_DEFAULT, optimizer_get_mapping,
                                optimizer_set_mapping, NULL, NULL);
  g_settings_bind (self->settings, "learning-rate", self->lr_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "batch", self->batch_spin, "value", G_SETTINGS_BIND_DEFAULT);
  self->use_batch_button = gtk_button_new_with_label ("Use Batch");
  gtk_widget_set_valign (self->use_batch_button, GTK_ALIGN_CENTER);
  gtk_widget_set_visible (self->use_batch_button, FALSE);
  gtk_widget_set_tooltip_text (self->use_batch_button,
                               "Set the batch size to the largest that fits on this device");
  g_signal_connect_swapped (self->use_batch_button, "clicked", G_CALLBACK (on_use_batch), self);
  adw_action_row_add_suffix (self->plan_row, self->use_batch_button);
  g_settings_bind_with_mapping (self->settings, "memory", self->memory_row, "selected",
                                G_SETTINGS_BIND_DEFAULT, memory_get_mapping, memory_set_mapping,
                                NULL, NULL);
  g_signal_connect_swapped (self->memory_row, "notify::selected", G_CALLBACK (on_setting_changed),
                            self);
  g_settings_bind (self->settings, "epochs", self->epochs_spin, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "seed", self->seed_spin, "value", G_SETTINGS_BIND_DEFAULT);
  g_signal_connect_swapped (self->batch_spin, "value-changed", G_CALLBACK (on_setting_changed),
                            self);
  g_signal_connect_swapped (self->optimizer_row, "notify::selected",
                            G_CALLBACK (on_setting_changed), self);
  g_settings_bind (self->settings, "validation-split", self->val_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  {
    GtkSpinButton *small[] = { self->epsilon_spin, self->decay_spin, self->weight_decay_spin };
    for (guint i = 0; i < G_N_ELEMENTS (small); i++)
      {
        g_signal_connect (small[i], "output", G_CALLBACK (on_small_output), NULL);
        g_signal_connect (small[i], "input", G_CALLBACK (on_small_input), NULL);
      }
  }
  show_optimizer_rows (self, TRUE);
  g_signal_connect_swapped (self->optimizer_row, "notify::selected",
                            G_CALLBACK (on_optimizer_changed), self);
  g_settings_bind_with_mapping (self->settings, "lr-schedule", self->lr_schedule_row, "selected",
                                G_SETTINGS_BIND_DEFAULT, schedule_get_mapping, schedule_set_mapping,
                                NULL, NULL);
  g_settings_bind (self->settings, "warmup-epochs", self->warmup_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "lr-start", self->lr_start_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "lr-peak", self->lr_peak_spin, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "lr-final", self->lr_final_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "label-smoothing", self->label_smoothing_spin, "value",
                   G_SETTINGS_BIND_DEFAULT);
  show_schedule_rows (self);
  g_signal_connect_swapped (self->lr_schedule_row, "notify::selected",
                            G_CALLBACK (show_schedule_rows), self);
  g_signal_connect_swapped (self->warmup_spin, "value-changed", G_CALLBACK (show_schedule_rows),
                            self);

  {
    g_auto (GStrv) names = kilt_model_preset_list ();
    self->presets = gtk_string_list_new ((const char *const *)names);
  }
  adw_combo_row_set_model (self->preset_row, G_LIST_MODEL (self->presets));
  g_signal_connect (self->preset_row, "notify::selected", G_CALLBACK (on_preset_selected), self);

  last = g_settings_get_string (self->settings, "last-model");
  if (!kilt_model_page_choose_preset (self, last) && !g_str_has_prefix (last, "keras:")
      && !g_str_has_prefix (last, "json:"))
    on_preset_selected (self->preset_row, NULL, self);
  else if (g_str_has_prefix (last, "keras:") || g_str_has_prefix (last, "json:"))
    use_source (self, last);
}
