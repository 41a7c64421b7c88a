/* The Kilt application: one main window, the about dialog, app-wide shortcuts. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-application.h"
#include "kilt-window.h"

struct _KiltApplication
{
  AdwApplication parent_instance;
};

G_DEFINE_FINAL_TYPE (KiltApplication, kilt_application, ADW_TYPE_APPLICATION)

static void
kilt_application_activate (GApplication *app)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));

  if (window == NULL)
    window = GTK_WINDOW (kilt_window_new (ADW_APPLICATION (app)));
  gtk_window_present (window);
}

static void
action_about (GSimpleAction *action, GVariant *param, gpointer data)
{
  GtkApplication *app = data;
  const char *developers[] = { "The Kilt developers", NULL };
  GtkWidget *about = adw_about_window_new ();

  gtk_window_set_transient_for (GTK_WINDOW (about), gtk_application_get_active_window (app));
  gtk_window_set_modal (GTK_WINDOW (about), TRUE);
  adw_about_window_set_application_name (ADW_ABOUT_WINDOW (about), "Kilt");
  adw_about_window_set_application_icon (ADW_ABOUT_WINDOW (about), KILT_APP_ID);
  adw_about_window_set_version (ADW_ABOUT_WINDOW (about), KILT_VERSION);
  adw_about_window_set_developer_name (ADW_ABOUT_WINDOW (about), "The Kilt developers");
  adw_about_window_set_developers (ADW_ABOUT_WINDOW (about), developers);
  adw_about_window_set_comments (ADW_ABOUT_WINDOW (about),
                                 "Train neural networks on any OpenCL device: NVIDIA, AMD and "
                                 "Intel graphics cards, and any processor through PoCL.");
  adw_about_window_set_license_type (ADW_ABOUT_WINDOW (about), GTK_LICENSE_GPL_3_0);
  adw_about_window_set_website (ADW_ABOUT_WINDOW (about), "https://github.com/kilt-project/kilt");
  adw_about_window_set_issue_url (ADW_ABOUT_WINDOW (about),
                                  "https://github.com/kilt-project/kilt/issues");
  gtk_window_present (GTK_WINDOW (about));
}

static void
action_quit (GSimpleAction *action, GVariant *param, gpointer data)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (data));

  /* Through the window's close request, so a run is asked about and stopped cleanly. */
  if (window)
    gtk_window_close (window);
  else
    g_application_quit (G_APPLICATION (data));
}

static void
kilt_application_startup (GApplication *app)
{
  static const GActionEntry entries[] = {
    { "about", action_about, NULL, NULL, NULL, { 0 } },
    { "quit", action_quit, NULL, NULL, NULL, { 0 } },
  };
  const char *quit[] = { "<Control>q", NULL };

  G_APPLICATION_CLASS (kilt_application_parent_class)->startup (app);
  g_action_map_add_action_entries (G_ACTION_MAP (app), entries, G_N_ELEMENTS (entries), app);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.quit", quit);
  gtk_window_set_default_icon_name (KILT_APP_ID);
}

static void
kilt_application_class_init (KiltApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  app_class->activate = kilt_application_activate;
  app_class->startup = kilt_application_startup;
}

static void
kilt_application_init (KiltApplication *self)
{
}

KiltApplication *
kilt_application_new (GApplicationFlags flags)
{
  return g_object_new (KILT_TYPE_APPLICATION, "application-id", KILT_APP_ID, "flags", flags,
                       "resource-base-path", "/org/kilt/Kilt", NULL);
}
