/* The main window: the pages, the run, and the actions that tie them together. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-window"

#include "config.h"

#include "kilt-window.h"
#include "kilt-chart-view.h"
#include "kilt-compare.h"
#include "kilt-device-picker.h"
#include "kilt-error.h"
#include "kilt-model-json.h"
#include "kilt-runs-page.h"

struct _KiltWindow
{
  AdwApplicationWindow parent_instance;

  AdwToastOverlay *toasts;
  AdwViewStack *stack;
  KiltDevicesPage *devices_page;
  KiltDataPage *data_page;
  KiltModelPage *model_page;
  KiltTrainPage *train_page;
  GtkWidget *runs_placeholder;

  GSettings *settings;
  KiltSession *session;
  GtkFileChooserNative *chooser;
  guint sample_limit;
  gboolean close_after_run;
  gboolean dataset_in_run;
  gboolean was_running; /* the session's running state when last notified */
  guint epochs_done;    /* of the run going on (or just ended): its checkpoint has them */
  char *last_message;
  /* A sequence (compare devices, run again) going on: its devices' names and capacities, the
   * model's name, and a run to show beside its runs at the end (run again's original). */
  GPtrArray *seq_names;
  GArray *seq_capacity;
  char *seq_model;
  gint64 seq_original;
  gboolean in_sequence;
};

G_DEFINE_FINAL_TYPE (KiltWindow, kilt_window, ADW_TYPE_APPLICATION_WINDOW)

static void
say (KiltWindow *self, const char *message)
{
  AdwToast *toast = adw_toast_new (message);

  g_free (self->last_message);
  self->last_message = g_strdup (message);
  adw_toast_set_timeout (toast, 4);
  adw_toast_overlay_add_toast (self->toasts, toast);
}

static void
update_actions (KiltWindow *self)
{
  gboolean running = kilt_session_is_running (self->session);

  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.start", !running);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.pause", running);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.stop", running);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.compare-devices", !running);
  kilt_train_page_set_state (self->train_page, running, kilt_session_is_paused (self->session));
}

static char *
sequence_title (KiltWindow *self, guint index)
{
  const char *device = self->seq_names && index < self->seq_names->len
                           ? g_ptr_array_index (self->seq_names, index)
                           : "?";
  if (self->seq_original)
    return g_strdup_printf ("Running #%" G_GINT64_FORMAT " again on %s", self->seq_original,
                            device);
  return g_strdup_printf ("Training %s on %s", self->seq_model ? self->seq_model : "the model",
                          device);
}

/* The end of a sequence: its runs (and run again's original) compared on the Runs page. */
static void
show_sequence_runs (KiltWindow *self, const KiltSessionUpdate *u)
{
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint64));
  g_autoptr (GError) error = NULL;
  KiltRunsPage *runs;

  if (!KILT_IS_RUNS_PAGE (self->runs_placeholder) || u->run_ids == NULL)
    return;
  runs = KILT_RUNS_PAGE (self->runs_placeholder);
  if (self->seq_original)
    g_array_append_val (ids, self->seq_original);
  g_array_append_vals (ids, u->run_ids->data, u->run_ids->len);
  if (!kilt_runs_page_reload (runs, &error))
    {
      say (self, error->message);
      return;
    }
  if (ids->len == 0 || u->status != KILT_RUN_FINISHED)
    return;
  kilt_runs_page_select (runs, (const gint64 *)ids->data, ids->len);
  /* The first device (or the original run) is the baseline, as the article's CPU was. */
  kilt_runs_page_set_baseline (runs, g_array_index (ids, gint64, 0));
  kilt_runs_page_set_chart (runs,
                            ids->len > 1 ? KILT_REPORT_CHART_EPOCH_TIME : KILT_REPORT_CHART_LOSS);
  kilt_window_show_page (self, "runs");
}

static void
on_session_update (KiltSession *session, KiltSessionUpdate *u, KiltWindow *self)
{
  /* The next device of a sequence: its own charts. */
  if (self->in_sequence && u->started && u->device_index > 0)
    {
      g_autofree char *title = sequence_title (self, u->device_index);
      guint64 capacity = self->seq_capacity && u->device_index < self->seq_capacity->len
                             ? g_array_index (self->seq_capacity, guint64, u->device_index)
                             : 0;
      kilt_train_page_reset (self->train_page, title, capacity);
      kilt_train_page_set_sequence (self->train_page, u->device_index, u->n_devices);
    }
  kilt_train_page_apply (self->train_page, u, kilt_session_elapsed (session));
  if (u->started)
    self->epochs_done = 0;
  self->epochs_done += u->epochs ? u->epochs->len : 0;
  if (!u->finished)
    return;
  if (u->status == KILT_RUN_FAILED)
    {
      g_autofree char *msg = g_strdup_printf (
          "Training failed: %s%s", u->error ? u->error->message : "unknown error",
          self->epochs_done ? ". The weights of its last finished epoch are kept: Resume on the "
                              "Runs page goes on from there"
                            : "");
      g_free (self->last_message);
      self->last_message = g_strdup (msg);
      kilt_train_page_show_error (self->train_page, msg);
      say (self, "Training failed — see the Train page");
      g_free (self->last_message);
      self->last_message = g_steal_pointer (&msg);
    }
  else if (self->in_sequence && self->seq_original == 0)
    say (self, u->status == KILT_RUN_FINISHED ? "Comparison finished" : "Comparison stopped");
  else
    say (self, u->status == KILT_RUN_FINISHED ? "Training finished" : "Training stopped");
  if (self->close_after_run)
    {
      gtk_window_destroy (GTK_WINDOW (self));
      return;
    }
  /* The run is in the store now. */
  if (self->in_sequence)
    show_sequence_runs (self, u);
  else if (KILT_IS_RUNS_PAGE (self->runs_placeholder))
    kilt_runs_page_reload (KILT_RUNS_PAGE (self->runs_placeholder), NULL);
  self->in_sequence = FALSE;
  /* The run owned the data set; bring it back for the next one. */
  if (self->dataset_in_run)
    {
      self->dataset_in_run = FALSE;
      kilt_data_page_reload (self->data_page);
    }
  update_actions (self);
}

static void
on_session_state (KiltSession *session, GParamSpec *pspec, KiltWindow *self)
{
  /* A run that fails before its STARTED event (a plan that does not fit) must not inherit
   * the last run's epochs, or its message offers a Resume that has nothing to go on from. */
  if (g_strcmp0 (pspec->name, "running") == 0 && kilt_session_is_running (session)
      && !self->was_running)
    self->epochs_done = 0;
  self->was_running = kilt_session_is_running (session);
  update_actions (self);
}

static void
start_failed (KiltWindow *self, const char *message)
{
  /* Shown on the Train page, where Start leads; no toast on top of it. */
  g_free (self->last_message);
  self->last_message = g_strdup (message);
  kilt_train_page_show_error (self->train_page, message);
  kilt_window_show_page (self, "train");
}

/* The run's configuration from the pages' settings. */
static KiltTrainConfig
window_config (KiltWindow *self, const char *device, const KiltModel *model, const KiltDataset *ds)
{
  KiltTrainConfig config = kilt_train_config_default ();

  config.device_id = g_strdup (device);
  /* The default device and those switched on under "Train on Several Devices". */
  config.devices = kilt_devices_page_dup_train_devices (self->devices_page);
  config.epochs = kilt_model_page_get_epochs (self->model_page);
  config.batch = kilt_model_page_get_batch (self->model_page);
  config.seed = kilt_model_page_get_seed (self->model_page);
  config.val_fraction = (float)kilt_data_page_get_val_split (self->data_page);
  config.opt = kilt_model_page_get_optimizer (self->model_page);
  config.label_smoothing = kilt_model_page_get_label_smoothing (self->model_page);
  config.memory = kilt_model_page_get_memory (self->model_page);
  config.augment = kilt_data_page_get_augment (self->data_page);
  config.translate = kilt_data_page_get_translate (self->data_page);
  config.tta_flip = kilt_data_page_get_tta_flip (self->data_page);
  config.preprocess = kilt_data_page_get_preprocess (self->data_page);
  config.max_train_samples = self->sample_limit;
  config.profile = TRUE;
  config.on_oom = g_settings_get_boolean (self->settings, "resume-smaller-on-oom")
                      ? KILT_ON_OOM_RESUME_SMALLER
                      : KILT_ON_OOM_FAIL;
  config.run_name = g_strdup_printf ("%s on %s", model->name, ds->name);
  return config;
}

static void
action_start (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);
  const KiltDataset *ds = kilt_data_page_get_dataset (self->data_page);
  const char *device = kilt_devices_page_get_device_id (self->devices_page);
  g_autoptr (GError) error = NULL;
  KiltTrainConfig config;
  KiltModel *model;
  g_autofree char *title = NULL;

  if (kilt_session_is_running (self->session))
    return;
  if (device == NULL)
    {
      start_failed (self, kilt_devices_page_get_loaded (self->devices_page)
                              ? "No OpenCL device to train on: see the Devices page"
                              : "Still looking for devices; try again in a moment");
      return;
    }
  if (ds == NULL)
    {
      start_failed (self, kilt_data_page_get_loading (self->data_page)
                              ? "The data set is still loading; try again when it is done"
                              : "Load a data set first, on the Data page");
      return;
    }
  /* The page's plan said "Does not fit": a run would only fail a second later, with no
   * epoch to resume from. */
  if (!kilt_model_page_check_fits (self->model_page, &error))
    {
      start_failed (self, error->message);
      return;
    }
  model = kilt_model_page_create_model (self->model_page, &error);
  if (model == NULL)
    {
      g_autofree char *msg = g_strdup_printf ("Cannot build the model: %s", error->message);
      start_failed (self, msg);
      return;
    }

  config = window_config (self, device, model, ds);

  if (config.devices)
    title = g_strdup_printf ("Training %s on %s and %u more device%s", model->name,
                             kilt_devices_page_get_device_name (self->devices_page),
                             g_strv_length (config.devices) - 1,
                             g_strv_length (config.devices) == 2 ? "" : "s");
  else
    title = g_strdup_printf ("Training %s on %s", model->name,
                             kilt_devices_page_get_device_name (self->devices_page));
  kilt_train_page_reset (self->train_page, title,
                         kilt_devices_page_get_device_memory (self->devices_page));
  kilt_train_page_set_epochs (self->train_page, config.epochs);
  /* The trainer evaluates on a validation split when there is one (or it carves one), else on
   * the test split: the curves say which. */
  kilt_train_page_set_eval_name (
      self->train_page, config.val_fraction > 0 || ds->val.n > 0 ? "validation" : "test split");
  {
    const KiltDeviceInfo *info = kilt_devices_page_get_device_info (self->devices_page);
    kilt_train_page_set_device_type (self->train_page, info ? info->type : NULL);
  }
  {
    KiltDataset *data = kilt_data_page_take_dataset (self->data_page);
    KiltDataSpec spec;
    self->dataset_in_run = TRUE;
    self->in_sequence = FALSE;
    if (kilt_data_page_get_spec (self->data_page, &spec))
      kilt_session_set_data_spec (self->session, &spec);
    kilt_data_spec_clear (&spec);
    if (!kilt_session_start (self->session, model, data, &config, &error))
      {
        start_failed (self, error->message);
        self->dataset_in_run = FALSE;
        kilt_data_page_reload (self->data_page);
      }
  }
  kilt_train_config_clear (&config);
  kilt_window_show_page (self, "train");
  update_actions (self);
}

/* ---- sequences: compare devices, run again ---- */

static const KiltDeviceInfo *
find_device (KiltWindow *self, const char *id)
{
  GPtrArray *devices = kilt_devices_page_get_devices (self->devices_page);

  for (guint i = 0; devices && i < devices->len; i++)
    if (g_strcmp0 (((KiltDeviceInfo *)devices->pdata[i])->id, id) == 0)
      return devices->pdata[i];
  return NULL;
}

static const char *
runs_db_path (KiltWindow *self)
{
  return KILT_IS_RUNS_PAGE (self->runs_placeholder)
             ? kilt_runs_page_get_db_path (KILT_RUNS_PAGE (self->runs_placeholder))
             : NULL;
}

/* Remembers the sequence's devices and shows its first run on the Train page. */
static gboolean
begin_sequence (KiltWindow *self, const char *const *ids, const char *model_name, gint64 original,
                guint epochs, GError **error)
{
  g_autofree char *title = NULL;
  guint n = ids ? g_strv_length ((char **)ids) : 0;

  if (n == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "Choose at least one device");
      return FALSE;
    }
  g_clear_pointer (&self->seq_names, g_ptr_array_unref);
  g_clear_pointer (&self->seq_capacity, g_array_unref);
  self->seq_names = g_ptr_array_new_with_free_func (g_free);
  self->seq_capacity = g_array_new (FALSE, TRUE, sizeof (guint64));
  for (guint i = 0; i < n; i++)
    {
      const KiltDeviceInfo *d = find_device (self, ids[i]);
      guint64 capacity = d ? d->global_mem : 0;
      if (d == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "No device \"%s\" here: see the Devices page", ids[i]);
          return FALSE;
        }
      g_ptr_array_add (self->seq_names, g_strdup (d->name));
      g_array_append_val (self->seq_capacity, capacity);
    }
  g_free (self->seq_model);
  self->seq_model = g_strdup (model_name);
  self->seq_original = original;
  self->in_sequence = TRUE;
  title = sequence_title (self, 0);
  kilt_train_page_reset (self->train_page, title, g_array_index (self->seq_capacity, guint64, 0));
  kilt_train_page_set_sequence (self->train_page, 0, n);
  kilt_train_page_set_epochs (self->train_page, epochs);
  return TRUE;
}

gboolean
kilt_window_compare_devices (KiltWindow *self, const char *const *ids, GError **error)
{
  const KiltDataset *ds = kilt_data_page_get_dataset (self->data_page);
  g_autoptr (KiltModel) model = NULL;
  g_autofree char *model_json = NULL;
  g_autofree char *tag = NULL;
  KiltTrainConfig config;
  KiltDataSpec spec;
  gboolean ok;

  g_return_val_if_fail (KILT_IS_WINDOW (self), FALSE);
  if (kilt_session_is_running (self->session))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "A run is going on; stop it first");
      return FALSE;
    }
  if (ds == NULL || !kilt_data_page_get_spec (self->data_page, &spec))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   kilt_data_page_get_loading (self->data_page)
                       ? "The data set is still loading; try again when it is done"
                       : "Load a data set first, on the Data page");
      return FALSE;
    }
  model = kilt_model_page_create_model (self->model_page, error);
  if (model == NULL)
    {
      kilt_data_spec_clear (&spec);
      g_prefix_error (error, "Cannot build the model: ");
      return FALSE;
    }
  if (!begin_sequence (self, ids, model->name, 0, kilt_model_page_get_epochs (self->model_page),
                       error))
    {
      kilt_data_spec_clear (&spec);
      return FALSE;
    }
  model_json = kilt_model_to_json (model);
  config = window_config (self, NULL, model, ds);
  /* Runs of a comparison are named after their devices. */
  g_clear_pointer (&config.run_name, g_free);
  tag = kilt_compare_make_tag ();
  /* The first run takes the loaded data; the others load their own from the same source. */
  self->dataset_in_run = TRUE;
  ok = kilt_session_start_compare (self->session, ids, model_json, &spec,
                                   kilt_data_page_take_dataset (self->data_page), &config,
                                   runs_db_path (self), tag, error);
  if (!ok)
    {
      self->in_sequence = FALSE;
      self->dataset_in_run = FALSE;
      kilt_data_page_reload (self->data_page);
    }
  kilt_data_spec_clear (&spec);
  kilt_train_config_clear (&config);
  kilt_window_show_page (self, "train");
  update_actions (self);
  return ok;
}

/* Starts stored run @run_id's model, data and settings again on @device_id (NULL: the device
 * it ran on when that is here, else the chosen one); with @resume, from its checkpoint. */
static gboolean
start_from_run (KiltWindow *self, gint64 run_id, const char *device_id, gboolean resume,
                GError **error)
{
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (KiltRun) run = NULL;
  KiltTrainConfig config;
  KiltDataSpec spec;
  const char *ids[] = { device_id, NULL };
  gboolean ok;

  g_return_val_if_fail (KILT_IS_WINDOW (self), FALSE);
  if (kilt_session_is_running (self->session))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "A run is going on; stop it first");
      return FALSE;
    }
  if (!(store = kilt_run_store_open (runs_db_path (self), error))
      || !(run = kilt_run_store_get (store, run_id, error)))
    return FALSE;
  if (run->record.model_json == NULL || run->config_json == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " has no recorded model or settings", run_id);
      return FALSE;
    }
  if (resume && !kilt_run_can_resume (run, error))
    return FALSE;
  if (ids[0] == NULL)
    ids[0] = find_device (self, run->record.device_id)
                 ? run->record.device_id
                 : kilt_devices_page_get_device_id (self->devices_page);
  if (ids[0] == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "No OpenCL device to train on: see the Devices page");
      return FALSE;
    }
  if (!kilt_data_spec_from_json (run->record.data_spec, &spec, error))
    return FALSE;
  if (!kilt_run_config_from_json (run->config_json, &config, error))
    {
      kilt_data_spec_clear (&spec);
      return FALSE;
    }
  /* Run again: named after its model and new device, not the original's. Resumed: the same
   * name, going on. */
  if (!resume)
    g_clear_pointer (&config.run_name, g_free);
  else
    {
      /* Resumed: the name says which run it goes on from (the table and the charts show the
       * link); a run resumed again names its own parent, not the whole chain. */
      g_autofree char *base = g_strdup (config.run_name ? config.run_name : run->record.name);
      char *suffix = strstr (base, " (resumed from #");
      if (suffix && g_str_has_suffix (suffix, ")"))
        *suffix = '\0';
      g_free (config.run_name);
      config.run_name = g_strdup_printf ("%s (resumed from #%" G_GINT64_FORMAT ")", base, run_id);
    }
  kilt_session_set_resume_from (self->session, resume ? run->record.config.checkpoint_path : NULL);
  ok = begin_sequence (self, ids, run->record.model_name, run_id, config.epochs, error)
       && kilt_session_start_compare (self->session, ids, run->record.model_json, &spec, NULL,
                                      &config, runs_db_path (self), NULL, error);
  if (!ok)
    self->in_sequence = FALSE;
  /* The run it goes on from, drawn first: its curves did not start at the resumed epoch. */
  if (ok && resume)
    {
      g_autoptr (GError) steps_error = NULL;
      if (!kilt_run_store_load_steps (store, run, &steps_error))
        g_message ("run #%" G_GINT64_FORMAT "'s steps: %s", run_id, steps_error->message);
      kilt_train_page_show_history (self->train_page, run);
    }
  kilt_data_spec_clear (&spec);
  kilt_train_config_clear (&config);
  if (ok)
    kilt_window_show_page (self, "train");
  update_actions (self);
  return ok;
}

gboolean
kilt_window_run_again (KiltWindow *self, gint64 run_id, const char *device_id, GError **error)
{
  g_return_val_if_fail (device_id != NULL, FALSE);
  return start_from_run (self, run_id, device_id, FALSE, error);
}

gboolean
kilt_window_resume_run (KiltWindow *self, gint64 run_id, GError **error)
{
  return start_from_run (self, run_id, NULL, TRUE, error);
}

static void
on_compare_response (AdwMessageDialog *dialog, const char *response, KiltWindow *self)
{
  g_auto (GStrv) ids = NULL;
  g_autoptr (GError) error = NULL;

  if (g_strcmp0 (response, "ok") != 0)
    return;
  ids = kilt_device_picker_dup_chosen (GTK_WIDGET (dialog));
  if (!kilt_window_compare_devices (self, (const char *const *)ids, &error))
    start_failed (self, error->message);
}

static void
action_compare_devices (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);
  GPtrArray *devices = kilt_devices_page_get_devices (self->devices_page);
  const char *current = kilt_devices_page_get_device_id (self->devices_page);
  const char *chosen[] = { current, NULL };
  GtkWidget *dialog;

  if (kilt_session_is_running (self->session))
    return;
  if (devices == NULL || devices->len == 0)
    {
      start_failed (self, kilt_devices_page_get_loaded (self->devices_page)
                              ? "No OpenCL device to train on: see the Devices page"
                              : "Still looking for devices; try again in a moment");
      return;
    }
  dialog = kilt_device_picker_new (
      GTK_WINDOW (self), "Compare Devices",
      "The current model, data and settings, with the same seed, are trained on each device in "
      "turn. The first is the baseline for the speed-ups.",
      devices, TRUE, chosen, "_Compare");
  g_signal_connect (dialog, "response", G_CALLBACK (on_compare_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
on_run_again_response (AdwMessageDialog *dialog, const char *response, KiltWindow *self)
{
  g_auto (GStrv) ids = NULL;
  g_autoptr (GError) error = NULL;
  gint64 id = *(gint64 *)g_object_get_data (G_OBJECT (dialog), "kilt-run-id");

  if (g_strcmp0 (response, "ok") != 0)
    return;
  ids = kilt_device_picker_dup_chosen (GTK_WIDGET (dialog));
  if (ids[0] && !kilt_window_run_again (self, id, ids[0], &error))
    say (self, error->message);
}

static void
on_resume (KiltRunsPage *page, gint64 id, KiltWindow *self)
{
  g_autoptr (GError) error = NULL;

  if (!kilt_window_resume_run (self, id, &error))
    say (self, error->message);
}

static void
on_run_again (KiltRunsPage *page, gint64 id, KiltWindow *self)
{
  GPtrArray *devices = kilt_devices_page_get_devices (self->devices_page);
  const char *chosen[] = { kilt_devices_page_get_device_id (self->devices_page), NULL };
  g_autofree char *heading = g_strdup_printf ("Run #%" G_GINT64_FORMAT " Again On…", id);
  GtkWidget *dialog;

  if (kilt_session_is_running (self->session))
    {
      say (self, "A run is going on; stop it first");
      return;
    }
  if (devices == NULL || devices->len == 0)
    {
      say (self, "No OpenCL device to train on: see the Devices page");
      return;
    }
  dialog = kilt_device_picker_new (
      GTK_WINDOW (self), heading,
      "The same model, data, seed and settings, trained on the device you choose.", devices, FALSE,
      chosen, "_Run");
  g_object_set_data_full (G_OBJECT (dialog), "kilt-run-id", g_memdup2 (&id, sizeof id), g_free);
  g_signal_connect (dialog, "response", G_CALLBACK (on_run_again_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
action_pause (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);

  if (kilt_session_is_paused (self->session))
    kilt_session_resume (self->session);
  else
    kilt_session_pause (self->session);
  update_actions (self);
}

static void
action_stop (GtkWidget *widget, const char *name, GVariant *param)
{
  kilt_session_stop (KILT_WINDOW (widget)->session);
}

static void
action_page (GtkWidget *widget, const char *name, GVariant *param)
{
  kilt_window_show_page (KILT_WINDOW (widget), g_variant_get_string (param, NULL));
}

static void
action_test_device (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);

  kilt_window_show_page (self, "devices");
  kilt_devices_page_test (self->devices_page);
}

static void
action_copy_report (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);
  g_autofree char *report = kilt_devices_page_dup_report (self->devices_page);

  if (report == NULL)
    return;
  gdk_clipboard_set_text (gtk_widget_get_clipboard (widget), report);
  say (self, "Device report copied");
}

static void
on_save_response (GtkNativeDialog *dialog, int response, KiltWindow *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      GtkWidget *view = g_object_get_data (G_OBJECT (dialog), "kilt-view");
      g_autoptr (GError) error = NULL;

      if (path && view && !kilt_chart_view_save (KILT_CHART_VIEW (view), path, &error))
        say (self, error->message);
      else if (path)
        say (self, "Chart saved");
    }
  g_clear_object (&self->chooser);
}

static void
action_save_chart (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);
  GtkWidget *view = kilt_train_page_get_focus_chart (self->train_page);
  KiltChart *chart = kilt_chart_view_get_chart (KILT_CHART_VIEW (view));
  g_autofree char *base = g_ascii_strdown (kilt_chart_get_title (chart), -1);
  g_autofree char *suggest = NULL;
  const char *patterns[] = { "*.png", "*.svg", "*.pdf" };
  const char *names[] = { "PNG image", "SVG drawing", "PDF document" };

  g_autofree char *heading = NULL;

  if (self->chooser)
    return;
  /* An empty chart saves an empty picture: say so, and which chart it was. */
  if (!kilt_chart_has_points (chart))
    {
      g_autofree char *msg
          = g_strdup_printf ("The %s chart has nothing to save yet", kilt_chart_get_title (chart));
      say (self, msg);
      return;
    }
  g_strdelimit (base, " ", '-');
  suggest = g_strconcat (base, ".png", NULL);
  heading = g_strdup_printf ("Save the %s Chart", kilt_chart_get_title (chart));
  self->chooser = gtk_file_chooser_native_new (heading, GTK_WINDOW (self),
                                               GTK_FILE_CHOOSER_ACTION_SAVE, "_Save", "_Cancel");
  for (guint i = 0; i < G_N_ELEMENTS (patterns); i++)
    {
      g_autoptr (GtkFileFilter) filter = gtk_file_filter_new ();
      gtk_file_filter_set_name (filter, names[i]);
      gtk_file_filter_add_pattern (filter, patterns[i]);
      gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), filter);
    }
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (self->chooser), suggest);
  g_object_set_data_full (G_OBJECT (self->chooser), "kilt-view", g_object_ref (view),
                          g_object_unref);
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_save_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

/* Page actions reachable from anywhere in the window (a page's own shortcuts work only while
 * the focus is inside it). */
static void
action_forward (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltWindow *self = KILT_WINDOW (widget);

  if (g_strcmp0 (name, "win.open-data") == 0)
    {
      kilt_window_show_page (self, "data");
      gtk_widget_activate_action (GTK_WIDGET (self->data_page), "data.open-file", NULL);
    }
  else if (g_strcmp0 (name, "win.open-data-folder") == 0)
    {
      kilt_window_show_page (self, "data");
      gtk_widget_activate_action (GTK_WIDGET (self->data_page), "data.open-folder", NULL);
    }
  else if (g_strcmp0 (name, "win.import-model") == 0)
    {
      kilt_window_show_page (self, "model");
      gtk_widget_activate_action (GTK_WIDGET (self->model_page), "model.import-keras", NULL);
    }
  else if (g_strcmp0 (name, "win.reload") == 0)
    {
      /* F5 reloads what the visible page shows, wherever the focus is. */
      const char *page = kilt_window_get_visible_page (self);
      if (g_strcmp0 (page, "runs") == 0)
        gtk_widget_activate_action (self->runs_placeholder, "runs.reload", NULL);
      else if (g_strcmp0 (page, "data") == 0)
        gtk_widget_activate_action (GTK_WIDGET (self->data_page), "data.reload", NULL);
    }
}

static void
on_device_changed (KiltWindow *self)
{
  kilt_model_page_set_device (self->model_page,
                              kilt_devices_page_get_device_info (self->devices_page));
}

static void
on_dataset_changed (KiltWindow *self)
{
  const KiltDataset *ds = kilt_data_page_get_dataset (self->data_page);
  guint64 bytes;

  if (ds == NULL)
    return;
  bytes = (guint64)(ds->train.n + ds->test.n + ds->val.n) * kilt_dataset_sample_size (ds)
          * (ds->type == KILT_SAMPLE_U8 ? 1 : 4);
  kilt_model_page_set_input (self->model_page, &ds->shape, ds->n_classes, bytes);
}

static void
on_close_response (AdwMessageDialog *dialog, const char *response, KiltWindow *self)
{
  if (g_strcmp0 (response, "stop") != 0)
    return;
  self->close_after_run = TRUE;
  kilt_session_stop (self->session);
}

static gboolean
kilt_window_close_request (GtkWindow *window)
{
  KiltWindow *self = KILT_WINDOW (window);
  int width, height;

  gtk_window_get_default_size (window, &width, &height);
  g_settings_set_int (self->settings, "window-width", width);
  g_settings_set_int (self->settings, "window-height", height);
  g_settings_set_boolean (self->settings, "window-maximized", gtk_window_is_maximized (window));

  if (kilt_session_is_running (self->session) && !self->close_after_run)
    {
      GtkWidget *dialog = adw_message_dialog_new (window, "Stop Training?",
                                                  "A run is going on. Closing Kilt stops it; "
                                                  "what it has done so far is kept.");
      adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", "_Keep Training",
                                        "stop", "_Stop and Close", NULL);
      adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "stop",
                                                  ADW_RESPONSE_DESTRUCTIVE);
      adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
      adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
      g_signal_connect (dialog, "response", G_CALLBACK (on_close_response), self);
      gtk_window_present (GTK_WINDOW (dialog));
      return TRUE;
    }
  if (kilt_session_is_running (self->session))
    return TRUE; /* stopping: closes when the run has ended */
  return GTK_WINDOW_CLASS (kilt_window_parent_class)->close_request (window);
}

static void
kilt_window_dispose (GObject *object)
{
  KiltWindow *self = KILT_WINDOW (object);

  if (self->chooser)
    gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
  g_clear_object (&self->chooser);
  if (self->session)
    g_signal_handlers_disconnect_by_data (self->session, self);
  g_clear_object (&self->session);
  gtk_widget_dispose_template (GTK_WIDGET (self), KILT_TYPE_WINDOW);
  G_OBJECT_CLASS (kilt_window_parent_class)->dispose (object);
}

static void
kilt_window_finalize (GObject *object)
{
  KiltWindow *self = KILT_WINDOW (object);

  g_clear_object (&self->settings);
  g_free (self->last_message);
  g_clear_pointer (&self->seq_names, g_ptr_array_unref);
  g_clear_pointer (&self->seq_capacity, g_array_unref);
  g_free (self->seq_model);
  G_OBJECT_CLASS (kilt_window_parent_class)->finalize (object);
}

static void
kilt_window_class_init (KiltWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);
  const char *pages[] = { "devices", "data", "model", "train", "runs" };

  object_class->dispose = kilt_window_dispose;
  object_class->finalize = kilt_window_finalize;
  window_class->close_request = kilt_window_close_request;

  g_type_ensure (KILT_TYPE_DEVICES_PAGE);
  g_type_ensure (KILT_TYPE_DATA_PAGE);
  g_type_ensure (KILT_TYPE_MODEL_PAGE);
  g_type_ensure (KILT_TYPE_TRAIN_PAGE);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/kilt/Kilt/ui/kilt-window.ui");
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, toasts);
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, stack);
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, devices_page);
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, data_page);
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, model_page);
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, train_page);
  gtk_widget_class_bind_template_child (widget_class, KiltWindow, runs_placeholder);

  gtk_widget_class_install_action (widget_class, "win.start", NULL, action_start);
  gtk_widget_class_install_action (widget_class, "win.pause", NULL, action_pause);
  gtk_widget_class_install_action (widget_class, "win.stop", NULL, action_stop);
  gtk_widget_class_install_action (widget_class, "win.compare-devices", NULL,
                                   action_compare_devices);
  gtk_widget_class_install_action (widget_class, "win.page", "s", action_page);
  gtk_widget_class_install_action (widget_class, "win.test-device", NULL, action_test_device);
  gtk_widget_class_install_action (widget_class, "win.copy-report", NULL, action_copy_report);
  gtk_widget_class_install_action (widget_class, "win.save-chart", NULL, action_save_chart);

  gtk_widget_class_install_action (widget_class, "win.open-data", NULL, action_forward);
  gtk_widget_class_install_action (widget_class, "win.open-data-folder", NULL, action_forward);
  gtk_widget_class_install_action (widget_class, "win.import-model", NULL, action_forward);
  gtk_widget_class_install_action (widget_class, "win.reload", NULL, action_forward);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_F5, 0, "win.reload", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_o, GDK_CONTROL_MASK, "win.open-data",
                                       NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_o, GDK_CONTROL_MASK | GDK_SHIFT_MASK,
                                       "win.open-data-folder", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_i, GDK_CONTROL_MASK,
                                       "win.import-model", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Return, GDK_CONTROL_MASK, "win.start",
                                       NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_p, GDK_CONTROL_MASK, "win.pause",
                                       NULL);
  gtk_widget_class_add_binding_action (
      widget_class, GDK_KEY_Return, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "win.compare-devices", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_period, GDK_CONTROL_MASK, "win.stop",
                                       NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_s, GDK_CONTROL_MASK, "win.save-chart",
                                       NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_t, GDK_CONTROL_MASK, "win.test-device",
                                       NULL);
  for (guint i = 0; i < G_N_ELEMENTS (pages); i++)
    gtk_widget_class_add_binding_action (widget_class, GDK_KEY_1 + i, GDK_ALT_MASK, "win.page", "s",
                                         pages[i]);
}

static void
kilt_window_init (KiltWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->settings = g_settings_new ("org.kilt.Kilt");
  self->session = kilt_session_new ();
  /* Every run's trained weights are kept, so a run can be resumed or its weights saved. */
  kilt_session_set_keep_weights (self->session, TRUE);
  g_signal_connect (self->session, "update", G_CALLBACK (on_session_update), self);
  g_signal_connect (self->session, "notify::running", G_CALLBACK (on_session_state), self);
  g_signal_connect (self->session, "notify::paused", G_CALLBACK (on_session_state), self);
  g_signal_connect_swapped (self->devices_page, "notify::device-id", G_CALLBACK (on_device_changed),
                            self);
  g_signal_connect_swapped (self->data_page, "notify::dataset-name",
                            G_CALLBACK (on_dataset_changed), self);

  gtk_window_set_default_size (GTK_WINDOW (self),
                               g_settings_get_int (self->settings, "window-width"),
                               g_settings_get_int (self->settings, "window-height"));
  if (g_settings_get_boolean (self->settings, "window-maximized"))
    gtk_window_maximize (GTK_WINDOW (self));
  kilt_window_set_runs_page (self, kilt_runs_page_new ());
  update_actions (self);
}

KiltWindow *
kilt_window_new (AdwApplication *app)
{
  return g_object_new (KILT_TYPE_WINDOW, "application", app, NULL);
}

KiltDevicesPage *
kilt_window_get_devices_page (KiltWindow *self)
{
  return self->devices_page;
}

KiltDataPage *
kilt_window_get_data_page (KiltWindow *self)
{
  return self->data_page;
}

KiltModelPage *
kilt_window_get_model_page (KiltWindow *self)
{
  return self->model_page;
}

KiltTrainPage *
kilt_window_get_train_page (KiltWindow *self)
{
  return self->train_page;
}

KiltSession *
kilt_window_get_session (KiltWindow *self)
{
  return self->session;
}

void
kilt_window_show_page (KiltWindow *self, const char *name)
{
  g_return_if_fail (KILT_IS_WINDOW (self));
  if (adw_view_stack_get_child_by_name (self->stack, name))
    adw_view_stack_set_visible_child_name (self->stack, name);
}

const char *
kilt_window_get_visible_page (KiltWindow *self)
{
  g_return_val_if_fail (KILT_IS_WINDOW (self), NULL);
  return adw_view_stack_get_visible_child_name (self->stack);
}

void
kilt_window_set_runs_page (KiltWindow *self, GtkWidget *page)
{
  AdwViewStackPage *old;

  g_return_if_fail (KILT_IS_WINDOW (self));
  old = adw_view_stack_get_page (self->stack, self->runs_placeholder);
  if (old)
    adw_view_stack_remove (self->stack, self->runs_placeholder);
  adw_view_stack_add_titled_with_icon (self->stack, page, "runs", "_Runs",
                                       "document-open-recent-symbolic");
  adw_view_stack_page_set_use_underline (adw_view_stack_get_page (self->stack, page), TRUE);
  self->runs_placeholder = page;
  if (KILT_IS_RUNS_PAGE (page))
    {
      g_signal_connect_object (page, "run-again", G_CALLBACK (on_run_again), self, 0);
      g_signal_connect_object (page, "resume", G_CALLBACK (on_resume), self, 0);
    }
}

void
kilt_window_set_sample_limit (KiltWindow *self, guint n)
{
  g_return_if_fail (KILT_IS_WINDOW (self));
  self->sample_limit = n;
}

const char *
kilt_window_get_last_message (KiltWindow *self)
{
  g_return_val_if_fail (KILT_IS_WINDOW (self), NULL);
  return self->last_message;
}
