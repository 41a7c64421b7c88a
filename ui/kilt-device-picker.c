/* A dialog to choose devices: several (compare devices) or one (run again on another device). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-device-picker"

#include "kilt-device-picker.h"
#include "kilt-device.h"

/* The check buttons, each with its device id as "kilt-id" data, hang off the dialog. */
#define CHECKS_KEY "kilt-device-checks"

static GPtrArray *
checks (GtkWidget *dialog)
{
  return g_object_get_data (G_OBJECT (dialog), CHECKS_KEY);
}

/* OK needs one device ticked, or two to compare (one alone compares nothing). */
static void
update_ok (GtkWidget *dialog)
{
  g_auto (GStrv) chosen = kilt_device_picker_dup_chosen (dialog);
  guint need = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (dialog), "kilt-need"));
  adw_message_dialog_set_response_enabled (ADW_MESSAGE_DIALOG (dialog), "ok",
                                           chosen && g_strv_length (chosen) >= MAX (need, 1));
}

GtkWidget *
kilt_device_picker_new (GtkWindow *parent, const char *heading, const char *body,
                        GPtrArray *devices, gboolean multiple, const char *const *chosen,
                        const char *ok_label)
{
  /* Comparing needs two devices; a machine with one is told so rather than offered a
   * comparison of one run. */
  g_autofree char *text
      = multiple && (devices == NULL || devices->len < 2)
            ? g_strdup_printf ("%s\n\nKilt sees one OpenCL device here, and a comparison needs "
                               "two: Start trains on this one.",
                               body)
            : g_strdup (body);
  GtkWidget *dialog = adw_message_dialog_new (parent, heading, text);
  GtkWidget *list = gtk_list_box_new ();
  GPtrArray *buttons = g_ptr_array_new ();
  GtkCheckButton *group = NULL;

  gtk_list_box_set_selection_mode (GTK_LIST_BOX (list), GTK_SELECTION_NONE);
  gtk_widget_add_css_class (list, "boxed-list");
  for (guint i = 0; devices && i < devices->len; i++)
    {
      const KiltDeviceInfo *d = g_ptr_array_index (devices, i);
      GtkWidget *row = adw_action_row_new ();
      GtkWidget *check = gtk_check_button_new ();
      g_autofree char *mem = g_format_size_full (d->global_mem, G_FORMAT_SIZE_IEC_UNITS);
      g_autofree char *subtitle = g_strdup_printf ("%s · %s · %s%s%s", d->type, d->platform_name,
                                                   mem, d->unusable_reason ? " · " : "",
                                                   d->unusable_reason ? d->unusable_reason : "");
      g_autofree char *title = g_markup_escape_text (d->name, -1);
      g_autofree char *sub = g_markup_escape_text (subtitle, -1);

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), sub);
      adw_action_row_set_subtitle_lines (ADW_ACTION_ROW (row), 2);
      if (!multiple)
        {
          if (group)
            gtk_check_button_set_group (GTK_CHECK_BUTTON (check), group);
          else
            group = GTK_CHECK_BUTTON (check);
        }
      gtk_widget_set_valign (check, GTK_ALIGN_CENTER);
      gtk_accessible_update_property (GTK_ACCESSIBLE (check), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                      d->name, -1);
      g_object_set_data_full (G_OBJECT (check), "kilt-id", g_strdup (d->id), g_free);
      adw_action_row_add_prefix (ADW_ACTION_ROW (row), check);
      adw_action_row_set_activatable_widget (ADW_ACTION_ROW (row), check);
      gtk_list_box_append (GTK_LIST_BOX (list), row);
      g_ptr_array_add (buttons, check);
      g_signal_connect_swapped (check, "toggled", G_CALLBACK (update_ok), dialog);
    }
  g_object_set_data (G_OBJECT (dialog), "kilt-need", GUINT_TO_POINTER (multiple ? 2 : 1));
  g_object_set_data_full (G_OBJECT (dialog), CHECKS_KEY, buttons,
                          (GDestroyNotify)g_ptr_array_unref);
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (dialog), list);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", "_Cancel", "ok",
                                    ok_label, NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "ok",
                                              ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "ok");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  kilt_device_picker_set_chosen (dialog, chosen);
  return dialog;
}

char **
kilt_device_picker_dup_chosen (GtkWidget *dialog)
{
  GPtrArray *buttons = checks (dialog);
  GPtrArray *ids = g_ptr_array_new ();

  for (guint i = 0; buttons && i < buttons->len; i++)
    if (gtk_check_button_get_active (buttons->pdata[i]))
      g_ptr_array_add (ids, g_strdup (g_object_get_data (buttons->pdata[i], "kilt-id")));
  g_ptr_array_add (ids, NULL);
  return (char **)g_ptr_array_free (ids, FALSE);
}

void
kilt_device_picker_set_chosen (GtkWidget *dialog, const char *const *ids)
{
  GPtrArray *buttons = checks (dialog);

  for (guint i = 0; buttons && i < buttons->len; i++)
    {
      const char *id = g_object_get_data (buttons->pdata[i], "kilt-id");
      gtk_check_button_set_active (buttons->pdata[i], ids && g_strv_contains (ids, id));
    }
  update_ok (dialog);
}
