/* Devices page: platforms and devices with their facts, the default device, the self-test. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-devices-page"

#include "kilt-devices-page.h"
#include "kilt-device.h"
#include "kilt-doctor.h"
#include "kilt-tuning.h"

struct _KiltDevicesPage
{
  AdwBin parent_instance;

  GtkListBox *device_list;
  GtkSpinner *list_spinner;
  GtkLabel *placeholder_label;
  AdwPreferencesGroup *problems_group;
  GtkWidget *problem_rows;
  AdwPreferencesGroup *multi_group;
  GtkWidget *multi_rows; /* a switch per usable device: train on it too */
  AdwActionRow *test_row;
  GtkWidget *cancel_test_button;
  GtkProgressBar *test_progress;
  GtkListBox *result_list;

  GSettings *settings;
  KiltDeviceList *list;
  GCancellable *list_cancellable;
  GtkCheckButton *radio_group;
  /* Never shown: every device's button joins its group, so even a lone device gets a radio
   * button (one that a click cannot untick, leaving no default while training used it). */
  GtkWidget *radio_anchor;
  char *device_id;
  char *device_name;
  guint64 device_memory;

  /* The self-test: the worker writes progress under the lock; a 100 ms timer shows it. */
  GCancellable *test_cancellable;
  GMutex progress_lock;
  double progress_fraction;
  char *progress_what;
  guint progress_timer;
};

G_DEFINE_FINAL_TYPE (KiltDevicesPage, kilt_devices_page, ADW_TYPE_BIN)

enum
{
  PROP_0,
  PROP_DEVICE_ID,
  PROP_LOADED,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

static char *
format_bytes (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS);
}

static GtkWidget *
fact_row (const char *title, const char *value)
{
  GtkWidget *row = adw_action_row_new ();
  GtkWidget *label = gtk_label_new (value);

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  /* Values are short: keep them on one line (a wrapping label gets squeezed to a word). */
  gtk_label_set_selectable (GTK_LABEL (label), TRUE);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_label_set_width_chars (GTK_LABEL (label), MIN ((int)g_utf8_strlen (value, -1), 48));
  gtk_widget_set_tooltip_text (label, value);
  gtk_label_set_xalign (GTK_LABEL (label), 1);
  gtk_widget_add_css_class (label, "dim-label");
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), label);
  return row;
}

static void
set_device (KiltDevicesPage *self, const KiltDeviceInfo *info)
{
  if (info && g_strcmp0 (info->id, self->device_id) == 0)
    return;
  g_free (self->device_id);
  g_free (self->device_name);
  self->device_id = info ? g_strdup (info->id) : NULL;
  self->device_name = info ? g_strdup (info->name) : NULL;
  self->device_memory = info ? info->global_mem : 0;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DEVICE_ID]);
}

static void show_multi (KiltDevicesPage *self);

gboolean
kilt_devices_page_choose (KiltDevicesPage *self, const char *id)
{
  const KiltDeviceInfo *info;
  g_autoptr (GError) error = NULL;

  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), FALSE);
  if (self->list == NULL || id == NULL || (info = kilt_device_list_find (self->list, id)) == NULL)
    return FALSE;
  set_device (self, info);
  g_settings_set_string (self->settings, "device", info->id);
  show_multi (self);
  if (!kilt_device_save_default (info->id, &error))
    g_warning ("Could not remember the default device for kilt-cli: %s", error->message);
  /* Reflect the choice in the radio buttons without re-entering. */
  for (GtkWidget *row = gtk_widget_get_first_child (GTK_WIDGET (self->device_list)); row;
       row = gtk_widget_get_next_sibling (row))
    {
      GtkCheckButton *check = g_object_get_data (G_OBJECT (row), "kilt-check");
      const char *row_id = g_object_get_data (G_OBJECT (row), "kilt-device-id");
      if (check && g_strcmp0 (row_id, info->id) == 0 && !gtk_check_button_get_active (check))
        gtk_check_button_set_active (check, TRUE);
    }
  return TRUE;
}

static gboolean
usable (const KiltDeviceInfo *d)
{
  return d->unusable_reason == NULL;
}

static void
on_multi_switch (GtkSwitch *sw, GParamSpec *pspec, KiltDevicesPage *self)
{
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  g_auto (GStrv) ids = NULL;

  for (GtkWidget *row = gtk_widget_get_first_child (self->multi_rows); row;
       row = gtk_widget_get_next_sibling (row))
    {
      GtkSwitch *s = g_object_get_data (G_OBJECT (row), "kilt-switch");
      const char *id = g_object_get_data (G_OBJECT (row), "kilt-device-id");
      if (s && gtk_switch_get_active (s) && g_strcmp0 (id, self->device_id) != 0)
        g_strv_builder_add (b, id);
    }
  ids = g_strv_builder_end (b);
  g_settings_set_strv (self->settings, "train-devices", (const char *const *)ids);
}

/* A switch per usable device, the default's on and fixed; shown with two or more. */
static void
show_multi (KiltDevicesPage *self)
{
  g_auto (GStrv) saved = g_settings_get_strv (self->settings, "train-devices");
  guint n_usable = 0;

  if (self->multi_rows)
    adw_preferences_group_remove (self->multi_group, self->multi_rows);
  self->multi_rows = NULL;
  for (guint i = 0; self->list && i < self->list->devices->len; i++)
    n_usable += usable (g_ptr_array_index (self->list->devices, i));
  gtk_widget_set_visible (GTK_WIDGET (self->multi_group), n_usable >= 2);
  if (n_usable < 2)
    return;
  self->multi_rows = gtk_list_box_new ();
  gtk_widget_add_css_class (self->multi_rows, "boxed-list");
  gtk_list_box_set_selection_mode (GTK_LIST_BOX (self->multi_rows), GTK_SELECTION_NONE);
  for (guint i = 0; i < self->list->devices->len; i++)
    {
      const KiltDeviceInfo *d = g_ptr_array_index (self->list->devices, i);
      gboolean is_default = g_strcmp0 (d->id, self->device_id) == 0;
      GtkWidget *row, *sw;
      g_autofree char *mem = NULL, *subtitle = NULL, *label = NULL;
      if (!usable (d))
        continue;
      row = adw_action_row_new ();
      sw = gtk_switch_new ();
      mem = format_bytes (d->global_mem);
      subtitle = is_default ? g_strdup_printf ("%s · %s memory · the default device, always used",
                                               d->type, mem)
                            : g_strdup_printf ("%s · %s memory", d->type, mem);
      label = g_strdup_printf ("Train on %s too", d->name);
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), d->name);
      adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
      gtk_widget_set_valign (sw, GTK_ALIGN_CENTER);
      gtk_accessible_update_property (GTK_ACCESSIBLE (sw), GTK_ACCESSIBLE_PROPERTY_LABEL, label,
                                      -1);
      gtk_switch_set_active (GTK_SWITCH (sw),
                             is_default || g_strv_contains ((const char *const *)saved, d->id));
      gtk_widget_set_sensitive (sw, !is_default);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), sw);
      adw_action_row_set_activatable_widget (ADW_ACTION_ROW (row), sw);
      g_object_set_data (G_OBJECT (row), "kilt-switch", sw);
      g_object_set_data_full (G_OBJECT (row), "kilt-device-id", g_strdup (d->id), g_free);
      g_signal_connect (sw, "notify::active", G_CALLBACK (on_multi_switch), self);
      gtk_list_box_append (GTK_LIST_BOX (self->multi_rows), row);
    }
  adw_preferences_group_add (self->multi_group, self->multi_rows);
}

gboolean
kilt_devices_page_set_train_device (KiltDevicesPage *self, const char *id, gboolean on)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), FALSE);
  for (GtkWidget *row = self->multi_rows ? gtk_widget_get_first_child (self->multi_rows) : NULL;
       row; row = gtk_widget_get_next_sibling (row))
    if (g_strcmp0 (g_object_get_data (G_OBJECT (row), "kilt-device-id"), id) == 0)
      {
        GtkSwitch *sw = g_object_get_data (G_OBJECT (row), "kilt-switch");
        if (!gtk_widget_get_sensitive (GTK_WIDGET (sw)))
          return TRUE; /* the default: always on */
        gtk_switch_set_active (sw, on);
        return TRUE;
      }
  return FALSE;
}

char **
kilt_devices_page_dup_train_devices (KiltDevicesPage *self)
{
  g_auto (GStrv) saved = NULL;
  g_autoptr (GStrvBuilder) b = NULL;
  guint n = 1;

  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  if (self->list == NULL || self->device_id == NULL)
    return NULL;
  saved = g_settings_get_strv (self->settings, "train-devices");
  b = g_strv_builder_new ();
  g_strv_builder_add (b, self->device_id);
  /* In the list's order; a remembered device that is gone or unusable now is skipped. */
  for (guint i = 0; i < self->list->devices->len; i++)
    {
      const KiltDeviceInfo *d = g_ptr_array_index (self->list->devices, i);
      if (usable (d) && g_strcmp0 (d->id, self->device_id) != 0
          && g_strv_contains ((const char *const *)saved, d->id))
        {
          g_strv_builder_add (b, d->id);
          n++;
        }
    }
  return n >= 2 ? g_strv_builder_end (b) : NULL;
}

static void
on_radio_toggled (GtkCheckButton *check, KiltDevicesPage *self)
{
  if (gtk_check_button_get_active (check))
    kilt_devices_page_choose (self, g_object_get_data (G_OBJECT (check), "kilt-device-id"));
}

static void
on_test_clicked (GtkButton *button, KiltDevicesPage *self)
{
  kilt_devices_page_choose (self, g_object_get_data (G_OBJECT (button), "kilt-device-id"));
  kilt_devices_page_test (self);
}

/* What CLBlast runs with on @d: parameters `kilt-cli tune` kept, and what they gained. */
static char *
tuning_text (const KiltDeviceInfo *d)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltTuning) t = kilt_tuning_load (d, &error);

  if (error)
    return g_strdup (error->message);
  if (t == NULL)
    return g_strdup (d->type && g_str_equal (d->type, "CPU")
                         ? "Kilt's own kernels"
                         : "CLBlast's built-in (kilt-cli tune tunes them)");
  return g_strdup_printf ("tuned by kilt-cli tune%s%s", t->note ? ": " : "",
                          t->note ? t->note : "");
}

static GtkWidget *
device_row (KiltDevicesPage *self, const KiltDeviceInfo *d)
{
  GtkWidget *row = adw_expander_row_new ();
  GtkWidget *check = gtk_check_button_new ();
  GtkWidget *test = gtk_button_new_with_mnemonic ("_Test");
  g_autofree char *mem = format_bytes (d->global_mem);
  g_autofree char *alloc = format_bytes (d->max_alloc);
  g_autofree char *local = format_bytes (d->local_mem);
  g_autofree char *subtitle = NULL;
  g_autofree char *units = g_strdup_printf ("%u at %u MHz", d->compute_units, d->clock_mhz);
  g_autofree char *check_label = g_strdup_printf ("Use %s as default", d->name);
  g_autofree char *test_label = g_strdup_printf ("Test %s", d->name);
  g_autofree char *tuning = tuning_text (d);

  subtitle = g_strdup_printf ("%s · %s · %s memory%s%s", d->type, d->platform_name, mem,
                              d->unusable_reason ? " · not usable: " : "",
                              d->unusable_reason ? d->unusable_reason : "");
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), d->name);
  adw_expander_row_set_subtitle (ADW_EXPANDER_ROW (row), subtitle);

  gtk_widget_set_valign (check, GTK_ALIGN_CENTER);
  gtk_widget_set_tooltip_text (check, "Use as Default");
  gtk_accessible_update_property (GTK_ACCESSIBLE (check), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  check_label, -1);
  gtk_widget_set_sensitive (check, d->unusable_reason == NULL);
  if (self->radio_group)
    gtk_check_button_set_group (GTK_CHECK_BUTTON (check), self->radio_group);
  else
    self->radio_group = GTK_CHECK_BUTTON (check);
  g_object_set_data_full (G_OBJECT (check), "kilt-device-id", g_strdup (d->id), g_free);
  adw_expander_row_add_prefix (ADW_EXPANDER_ROW (row), check);

  gtk_widget_set_valign (test, GTK_ALIGN_CENTER);
  gtk_widget_set_sensitive (test, d->unusable_reason == NULL);
  gtk_accessible_update_property (GTK_ACCESSIBLE (test), GTK_ACCESSIBLE_PROPERTY_LABEL, test_label,
                                  -1);
  g_object_set_data_full (G_OBJECT (test), "kilt-device-id", g_strdup (d->id), g_free);
  g_signal_connect (test, "clicked", G_CALLBACK (on_test_clicked), self);
  adw_expander_row_add_action (ADW_EXPANDER_ROW (row), test);

  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Vendor", d->vendor));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("OpenCL", d->opencl_version));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Driver", d->driver_version));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("GEMM parameters", tuning));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Compute units", units));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Global memory", mem));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Largest allocation", alloc));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Local memory", local));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row),
                            fact_row ("Half / double precision", d->fp16 && d->fp64 ? "both"
                                                                 : d->fp64          ? "double only"
                                                                 : d->fp16          ? "half only"
                                                                                    : "neither"));
  adw_expander_row_add_row (ADW_EXPANDER_ROW (row), fact_row ("Stable id", d->id));

  g_object_set_data (G_OBJECT (row), "kilt-check", check);
  g_object_set_data_full (G_OBJECT (row), "kilt-device-id", g_strdup (d->id), g_free);
  g_signal_connect (check, "toggled", G_CALLBACK (on_radio_toggled), self);
  return row;
}

static void
list_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  g_task_return_pointer (task, kilt_device_list_new (), (GDestroyNotify)kilt_device_list_free);
}

static void
show_list (KiltDevicesPage *self)
{
  g_autofree char *saved = g_settings_get_string (self->settings, "device");
  const KiltDeviceInfo *chosen = NULL;
  g_autoptr (GError) error = NULL;
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->device_list))))
    gtk_list_box_remove (self->device_list, child);
  self->radio_group = GTK_CHECK_BUTTON (self->radio_anchor);
  for (guint i = 0; i < self->list->devices->len; i++)
    gtk_list_box_append (self->device_list,
                         device_row (self, g_ptr_array_index (self->list->devices, i)));

  if (self->problem_rows)
    adw_preferences_group_remove (self->problems_group, self->problem_rows);
  self->problem_rows = NULL;
  gtk_widget_set_visible (GTK_WIDGET (self->problems_group), self->list->problems->len > 0);
  if (self->list->problems->len > 0)
    {
      GtkWidget *box = gtk_list_box_new ();
      gtk_widget_add_css_class (box, "boxed-list");
      gtk_list_box_set_selection_mode (GTK_LIST_BOX (box), GTK_SELECTION_NONE);
      for (guint i = 0; i < self->list->problems->len; i++)
        {
          GtkWidget *row = adw_action_row_new ();
          GtkWidget *icon = gtk_image_new_from_icon_name ("dialog-warning-symbolic");
          adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row),
                                         g_ptr_array_index (self->list->problems, i));
          adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
          gtk_widget_add_css_class (icon, "warning");
          adw_action_row_add_prefix (ADW_ACTION_ROW (row), icon);
          gtk_list_box_append (GTK_LIST_BOX (box), row);
        }
      self->problem_rows = box;
      adw_preferences_group_add (self->problems_group, box);
    }

  if (self->list->devices->len == 0)
    {
      gtk_spinner_stop (self->list_spinner);
      gtk_widget_set_visible (GTK_WIDGET (self->list_spinner), FALSE);
      gtk_label_set_text (self->placeholder_label,
                          self->list->problems->len
                              ? "No usable OpenCL device. See the platforms that failed below."
                              : "No OpenCL driver is installed. Install one for your graphics card "
                                "(or “pocl-opencl-icd” for the processor) and look again.");
    }
  if (*saved)
    chosen = kilt_device_list_find (self->list, saved);
  if (chosen == NULL)
    chosen = kilt_device_list_choose_default (self->list, &error);
  if (chosen)
    {
      /* Show the choice without writing it: only a person's click saves a default. */
      set_device (self, chosen);
      for (GtkWidget *row = gtk_widget_get_first_child (GTK_WIDGET (self->device_list)); row;
           row = gtk_widget_get_next_sibling (row))
        if (g_strcmp0 (g_object_get_data (G_OBJECT (row), "kilt-device-id"), chosen->id) == 0)
          {
            GtkCheckButton *check = g_object_get_data (G_OBJECT (row), "kilt-check");
            g_signal_handlers_block_by_func (check, on_radio_toggled, self);
            gtk_check_button_set_active (check, TRUE);
            g_signal_handlers_unblock_by_func (check, on_radio_toggled, self);
          }
    }
  show_multi (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_LOADED]);
}

static void
list_done (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltDevicesPage *self = data;
  KiltDeviceList *list = g_task_propagate_pointer (G_TASK (result), NULL);

  if (list == NULL)
    {
      g_object_unref (self);
      return;
    }
  g_clear_pointer (&self->list, kilt_device_list_free);
  self->list = list;
  show_list (self);
  g_object_unref (self);
}

static void
refresh (KiltDevicesPage *self)
{
  g_autoptr (GTask) task = NULL;

  g_cancellable_cancel (self->list_cancellable);
  g_clear_object (&self->list_cancellable);
  self->list_cancellable = g_cancellable_new ();
  gtk_spinner_start (self->list_spinner);
  task = g_task_new (self, self->list_cancellable, list_done, g_object_ref (self));
  g_task_set_return_on_cancel (task, TRUE);
  g_task_run_in_thread (task, list_thread);
}

static void
action_refresh (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltDevicesPage *self = KILT_DEVICES_PAGE (widget);

  /* A running self-test reads the current list. */
  if (self->test_cancellable == NULL)
    refresh (self);
}

/* ---- self-test ---- */

static void
doctor_progress (double fraction, const char *what, gpointer data)
{
  KiltDevicesPage *self = data;

  g_mutex_lock (&self->progress_lock);
  self->progress_fraction = fraction;
  g_free (self->progress_what);
  self->progress_what = g_strdup (what);
  g_mutex_unlock (&self->progress_lock);
}

static void
doctor_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  const KiltDeviceInfo *info = data;

  g_task_return_pointer (task, kilt_doctor_run (info, doctor_progress, source, cancellable),
                         (GDestroyNotify)kilt_doctor_report_free);
}

static gboolean
progress_tick (gpointer data)
{
  KiltDevicesPage *self = data;

  g_mutex_lock (&self->progress_lock);
  /* Nothing measured yet (the kernels are compiling, which takes a while on a first start):
   * the bar moves to and fro, so the test does not look stuck at 0. */
  if (self->progress_fraction <= 0)
    gtk_progress_bar_pulse (self->test_progress);
  else
    gtk_progress_bar_set_fraction (self->test_progress, self->progress_fraction);
  if (self->progress_what)
    adw_action_row_set_subtitle (self->test_row, self->progress_what);
  g_mutex_unlock (&self->progress_lock);
  return G_SOURCE_CONTINUE;
}

static GtkWidget *
result_row (const char *title, const char *value, const char *icon, const char *css)
{
  GtkWidget *row = fact_row (title, value);

  if (icon)
    {
      GtkWidget *image = gtk_image_new_from_icon_name (icon);
      gtk_widget_add_css_class (image, css);
      adw_action_row_add_prefix (ADW_ACTION_ROW (row), image);
    }
  return row;
}

static void
doctor_done (GObject *source, GAsyncResult *result, gpointer data)
{
  KiltDevicesPage *self = KILT_DEVICES_PAGE (source);
  g_autoptr (KiltDoctorReport) report = g_task_propagate_pointer (G_TASK (result), NULL);
  GtkWidget *child;

  g_clear_handle_id (&self->progress_timer, g_source_remove);
  gtk_widget_set_visible (self->cancel_test_button, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self->test_progress), FALSE);
  g_clear_object (&self->test_cancellable);
  if (report == NULL)
    {
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->test_row), "Self-test cancelled");
      adw_action_row_set_subtitle (self->test_row, "");
      return;
    }
  {
    g_autofree char *title = g_strdup_printf ("%s: %s", report->device_name,
                                              report->usable ? "good to use" : "not usable");
    adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->test_row), title);
    adw_action_row_set_subtitle (self->test_row, report->verdict);
  }
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->result_list))))
    gtk_list_box_remove (self->result_list, child);
  {
    g_autofree char *compile = g_strdup_printf ("%.2f s%s", report->compile_seconds,
                                                report->compile_cached ? " (cached)" : "");
    g_autofree char *gemm = g_strdup_printf ("%.1f GFLOP/s", report->gemm_gflops);
    g_autofree char *copy = g_strdup_printf ("%.1f GB/s on the device, %.1f GB/s upload",
                                             report->copy_gbps, report->upload_gbps);
    g_autofree char *launch = g_strdup_printf ("%.0f µs", report->launch_us);
    gtk_list_box_append (self->result_list, result_row ("Kernel compile", compile, NULL, NULL));
    gtk_list_box_append (self->result_list, result_row ("Matrix multiply", gemm, NULL, NULL));
    gtk_list_box_append (self->result_list, result_row ("Copy bandwidth", copy, NULL, NULL));
    gtk_list_box_append (self->result_list, result_row ("Launch latency", launch, NULL, NULL));
  }
  for (guint i = 0; report->checks && i < report->checks->len; i++)
    {
      KiltDoctorCheck *c = &g_array_index (report->checks, KiltDoctorCheck, i);
      g_autofree char *value
          = c->error ? g_strdup (c->error)
                     : g_strdup_printf ("%s, max error %.1e", c->passed ? "passed" : "FAILED",
                                        c->max_error);
      gtk_list_box_append (self->result_list,
                           result_row (c->op, value,
                                       c->passed ? "emblem-ok-symbolic" : "dialog-error-symbolic",
                                       c->passed ? "success" : "error"));
    }
  gtk_widget_set_visible (GTK_WIDGET (self->result_list), TRUE);
}

void
kilt_devices_page_test (KiltDevicesPage *self)
{
  g_autoptr (GTask) task = NULL;
  const KiltDeviceInfo *info;
  g_autofree char *title = NULL;

  g_return_if_fail (KILT_IS_DEVICES_PAGE (self));
  if (self->test_cancellable || self->list == NULL || self->device_id == NULL)
    return;
  info = kilt_device_list_find (self->list, self->device_id);
  if (info == NULL)
    return;
  self->test_cancellable = g_cancellable_new ();
  title = g_strdup_printf ("Testing %s…", info->name);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->test_row), title);
  adw_action_row_set_subtitle (self->test_row, "Starting");
  gtk_progress_bar_set_fraction (self->test_progress, 0);
  gtk_widget_set_visible (GTK_WIDGET (self->test_progress), TRUE);
  gtk_widget_set_visible (self->cancel_test_button, TRUE);
  gtk_widget_set_visible (GTK_WIDGET (self->result_list), FALSE);
  self->progress_timer = g_timeout_add (100, progress_tick, self);
  /* The device list outlives the task: refresh () keeps the old list while a test runs. */
  task = g_task_new (self, self->test_cancellable, doctor_done, NULL);
  g_task_set_task_data (task, (gpointer)info, NULL);
  g_task_run_in_thread (task, doctor_thread);
}

static void
action_cancel_test (GtkWidget *widget, const char *name, GVariant *param)
{
  KiltDevicesPage *self = KILT_DEVICES_PAGE (widget);
  if (self->test_cancellable)
    g_cancellable_cancel (self->test_cancellable);
}

static void
action_test (GtkWidget *widget, const char *name, GVariant *param)
{
  kilt_devices_page_test (KILT_DEVICES_PAGE (widget));
}

gboolean
kilt_devices_page_get_testing (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), FALSE);
  return self->test_cancellable != NULL;
}

const char *
kilt_devices_page_get_test_title (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  return adw_preferences_row_get_title (ADW_PREFERENCES_ROW (self->test_row));
}

const char *
kilt_devices_page_get_device_id (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  return self->device_id;
}

const char *
kilt_devices_page_get_device_name (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  return self->device_name;
}

const KiltDeviceInfo *
kilt_devices_page_get_device_info (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  if (self->list == NULL || self->device_id == NULL)
    return NULL;
  return kilt_device_list_find (self->list, self->device_id);
}

guint64
kilt_devices_page_get_device_memory (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), 0);
  return self->device_memory;
}

gboolean
kilt_devices_page_get_loaded (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), FALSE);
  return self->list != NULL;
}

char *
kilt_devices_page_dup_report (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  return self->list ? kilt_device_list_report (self->list) : NULL;
}

static void
kilt_devices_page_dispose (GObject *object)
{
  KiltDevicesPage *self = KILT_DEVICES_PAGE (object);

  g_cancellable_cancel (self->list_cancellable);
  g_clear_object (&self->list_cancellable);
  g_clear_handle_id (&self->progress_timer, g_source_remove);
  gtk_widget_dispose_template (GTK_WIDGET (self), KILT_TYPE_DEVICES_PAGE);
  g_clear_object (&self->radio_anchor);
  G_OBJECT_CLASS (kilt_devices_page_parent_class)->dispose (object);
}

static void
kilt_devices_page_finalize (GObject *object)
{
  KiltDevicesPage *self = KILT_DEVICES_PAGE (object);

  g_clear_pointer (&self->list, kilt_device_list_free);
  g_clear_object (&self->settings);
  g_free (self->device_id);
  g_free (self->device_name);
  g_free (self->progress_what);
  g_mutex_clear (&self->progress_lock);
  G_OBJECT_CLASS (kilt_devices_page_parent_class)->finalize (object);
}

static void
kilt_devices_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KiltDevicesPage *self = KILT_DEVICES_PAGE (object);

  switch (prop_id)
    {
      case PROP_DEVICE_ID:
        g_value_set_string (value, self->device_id);
        break;
      case PROP_LOADED:
        g_value_set_boolean (value, self->list != NULL);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
kilt_devices_page_class_init (KiltDevicesPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = kilt_devices_page_dispose;
  object_class->finalize = kilt_devices_page_finalize;
  object_class->get_property = kilt_devices_page_get_property;

  props[PROP_DEVICE_ID]
      = g_param_spec_string ("device-id", NULL, NULL, NULL,
                             G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_LOADED]
      = g_param_spec_boolean ("loaded", NULL, NULL, FALSE,
                              G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/kilt/Kilt/ui/kilt-devices-page.ui");
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, device_list);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, list_spinner);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, placeholder_label);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, problems_group);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, multi_group);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, test_row);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, cancel_test_button);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, test_progress);
  gtk_widget_class_bind_template_child (widget_class, KiltDevicesPage, result_list);

  gtk_widget_class_install_action (widget_class, "devices.refresh", NULL, action_refresh);
  gtk_widget_class_install_action (widget_class, "devices.test", NULL, action_test);
  gtk_widget_class_install_action (widget_class, "devices.cancel-test", NULL, action_cancel_test);
}

static void
kilt_devices_page_init (KiltDevicesPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  g_mutex_init (&self->progress_lock);
  self->settings = g_settings_new ("org.kilt.Kilt");
  self->radio_anchor = g_object_ref_sink (gtk_check_button_new ());
  refresh (self);
}

GPtrArray *
kilt_devices_page_get_devices (KiltDevicesPage *self)
{
  g_return_val_if_fail (KILT_IS_DEVICES_PAGE (self), NULL);
  return self->list ? self->list->devices : NULL;
}
