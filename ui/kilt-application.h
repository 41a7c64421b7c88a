/* The Kilt application: one main window, the about dialog, app-wide shortcuts. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define KILT_TYPE_APPLICATION (kilt_application_get_type ())
G_DECLARE_FINAL_TYPE (KiltApplication, kilt_application, KILT, APPLICATION, AdwApplication)

KiltApplication *kilt_application_new (GApplicationFlags flags);

G_END_DECLS
