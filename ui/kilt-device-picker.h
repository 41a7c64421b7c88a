/* A dialog to choose devices: several (compare devices) or one (run again on another device). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

/* An AdwMessageDialog listing @devices (KiltDeviceInfo, borrowed for the call) with a check box
 * each (@multiple) or radio buttons; @chosen: the ids ticked at first (may be NULL). Its
 * responses are "cancel" and "ok" (labelled @ok_label, enabled while something is chosen). */
GtkWidget *kilt_device_picker_new (GtkWindow *parent, const char *heading, const char *body,
                                   GPtrArray *devices, gboolean multiple, const char *const *chosen,
                                   const char *ok_label);
/* The chosen ids, in the list's order. Free with g_strfreev. */
char **kilt_device_picker_dup_chosen (GtkWidget *dialog);
/* Ticks exactly @ids (for tests and keyboard users' defaults). */
void kilt_device_picker_set_chosen (GtkWidget *dialog, const char *const *ids);

G_END_DECLS
