/* Device time per layer and phase from OpenCL profiling events, and device busy time. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* Steps profiled per epoch: events cost a little, so only a window of steps is timed. */
#define KILT_PROFILED_STEPS 20

typedef struct _KiltProfiler KiltProfiler;

KiltProfiler *kilt_profiler_new (KiltModel *model);
void kilt_profiler_free (KiltProfiler *prof);
void kilt_profiler_begin_epoch (KiltProfiler *prof);
/* Reads and releases the events the context recorded (they must have completed). */
gboolean kilt_profiler_collect (KiltProfiler *prof, KiltContext *ctx, GError **error);
/* One more step was profiled: the timings are per step. (Not counted from the optimizer's
 * launches: it makes one per parameter range, and lookahead more.) */
void kilt_profiler_add_step (KiltProfiler *prof);
/* Per node: average device milliseconds per profiled step for each phase (KiltLayerTiming,
 * from kilt-trainer.h). Caller unrefs. */
GArray *kilt_profiler_timings (KiltProfiler *prof);
/* Device busy time over the wall span of the profiled steps, in percent; NaN before data. */
double kilt_profiler_busy_percent (KiltProfiler *prof);

G_END_DECLS
