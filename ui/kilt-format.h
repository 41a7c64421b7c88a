/* Number formats the pages share, so a figure reads the same on every page. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* @n with thousands separators: "669,706". Free with g_free. */
char *kilt_format_thousands (guint64 n);

G_END_DECLS
