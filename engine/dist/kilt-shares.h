/* How a global batch is split among devices (and ranks): by measured speed, within caps. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* @total samples in @n parts proportional to @weight (all equal when every weight is 0),
 * part i at most @cap[i] (NULL: no cap), by largest remainders; parts sum to @total unless the
 * caps are smaller. */
void kilt_shares_split (guint total, guint n, const double *weight, const guint *cap, guint *part);

/* The samples each replica's executor is allocated for, when @n replicas share a global batch
 * of @batch: room for twice an equal share (re-balancing by speed can move samples to a fast
 * device), and never more than the whole batch. */
guint kilt_shares_cap (guint batch, guint n);

/* The first sample of part @i of the global batch (the parts before it, in order). */
guint kilt_shares_first (const guint *part, guint i);

G_END_DECLS
