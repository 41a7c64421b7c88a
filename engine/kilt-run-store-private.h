/* Run store internals shared with its tests: opening at an older schema version. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-run-store.h"

G_BEGIN_DECLS

/* As kilt_run_store_open, but migrates no further than @max_version (1..current), so tests can
 * make a file as an older Kilt would have left it. */
KiltRunStore *kilt_run_store_open_version (const char *path, int max_version, GError **error);

G_END_DECLS
