/* The Train page's card for a run on several devices: each device's rows, speed, busy share
 * and memory, and how the devices together compare with the fastest alone. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "kilt-trainer.h"

G_BEGIN_DECLS

#define KILT_TYPE_REPLICA_VIEW (kilt_replica_view_get_type ())
G_DECLARE_FINAL_TYPE (KiltReplicaView, kilt_replica_view, KILT, REPLICA_VIEW, GtkBox)

GtkWidget *kilt_replica_view_new (void);
/* Hidden until a run on several devices reports them. */
void kilt_replica_view_reset (KiltReplicaView *self);
/* @n devices' parts (at least two shown; one, after the fastest alone won, says so) and the
 * calibration's step times with every device and the fastest alone (0: not timed). */
void kilt_replica_view_update (KiltReplicaView *self, const KiltReplicaShare *replicas, guint n,
                               double dist_step_ms, double alone_step_ms);
/* The summary line under the table (tests read it). */
const char *kilt_replica_view_get_summary (KiltReplicaView *self);
/* The text of row @row (0: the first device), column @col, or NULL. */
const char *kilt_replica_view_get_cell (KiltReplicaView *self, guint row, guint col);

G_END_DECLS
