/* The main window: the pages, the run, and the actions that tie them together. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "kilt-data-page.h"
#include "kilt-devices-page.h"
#include "kilt-model-page.h"
#include "kilt-session.h"
#include "kilt-train-page.h"

G_BEGIN_DECLS

#define KILT_TYPE_WINDOW (kilt_window_get_type ())
G_DECLARE_FINAL_TYPE (KiltWindow, kilt_window, KILT, WINDOW, AdwApplicationWindow)

KiltWindow *kilt_window_new (AdwApplication *app);
KiltDevicesPage *kilt_window_get_devices_page (KiltWindow *self);
KiltDataPage *kilt_window_get_data_page (KiltWindow *self);
KiltModelPage *kilt_window_get_model_page (KiltWindow *self);
KiltTrainPage *kilt_window_get_train_page (KiltWindow *self);
KiltSession *kilt_window_get_session (KiltWindow *self);
/* Shows the page named "devices", "data", "model", "train" or "runs". */
void kilt_window_show_page (KiltWindow *self, const char *name);
const char *kilt_window_get_visible_page (KiltWindow *self);
/* Replaces the Runs placeholder with the real page. */
void kilt_window_set_runs_page (KiltWindow *self, GtkWidget *page);
/* Limits runs started from the window to @n training samples (0: all), for quick runs. */
void kilt_window_set_sample_limit (KiltWindow *self, guint n);
/* Compare devices: the current model, data and settings trained on each of @ids in turn,
 * ending on the Runs page with the runs selected and compared. FALSE with @error when it
 * cannot start. The "win.compare-devices" action asks for the devices first. */
gboolean kilt_window_compare_devices (KiltWindow *self, const char *const *ids, GError **error);
/* Run again: the stored run @run_id's model, data and settings on @device_id; at the end both
 * runs are compared on the Runs page. */
gboolean kilt_window_run_again (KiltWindow *self, gint64 run_id, const char *device_id,
                                GError **error);
/* Resume: stored run @run_id, stopped or failed after at least one epoch, goes on from its
 * checkpoint as a new run, on the device it ran on when that is here (see
 * kilt_run_can_resume ()). */
gboolean kilt_window_resume_run (KiltWindow *self, gint64 run_id, GError **error);
/* The last status message shown as a toast or inline error (for tests). */
const char *kilt_window_get_last_message (KiltWindow *self);

G_END_DECLS
