/* airbench's lookahead: a slow average of the weights that the weights are put back on. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"

G_BEGIN_DECLS

/* Steps between two updates (airbench94's 5). */
#define KILT_LOOKAHEAD_PERIOD 5

typedef struct _KiltLookahead KiltLookahead;

/* The average's decay after global step @step (1-based) of a run of @total steps:
 * 0.95^5 (step / total)^3, so early updates copy the weights and late ones average them
 * strongly (airbench94's alpha_schedule). */
double kilt_lookahead_decay (guint64 step, guint64 total);

/* Whether the run updates after 1-based global step @step of @total, and with what decay
 * (*@decay): every KILT_LOOKAHEAD_PERIOD steps at kilt_lookahead_decay, and after the last step
 * with 1 (the weights put back on the average, the last steps since an update dropped) --
 * airbench94's loop. */
gboolean kilt_lookahead_due (guint64 step, guint64 total, double *decay);

/* Keeps the average of @params (@n_params floats) and @state (@n_state, running statistics;
 * may be 0), starting from their values now (KILT_MEM_OPTIMIZER). */
KiltLookahead *kilt_lookahead_new (KiltContext *ctx, cl_mem params, gsize n_params, cl_mem state,
                                   gsize n_state, GError **error);
void kilt_lookahead_free (KiltLookahead *la);
/* Enqueues average = @decay average + (1 - @decay) weights, then weights = average, for the
 * parameters and the running statistics; no wait for the device. */
gboolean kilt_lookahead_update (KiltLookahead *la, double decay, GError **error);

/* Plain-C double reference of one update over @n values. */
void kilt_lookahead_reference_update (double *average, double *weights, gsize n, double decay);

G_END_DECLS
