/* Feeds a training run's events into the run store as they happen. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-run-store.h"

G_BEGIN_DECLS

typedef struct _KiltRunRecorder KiltRunRecorder;

/* Opens @db_path (NULL: the default store). Never fails: a store that cannot be opened is
 * reported once through *warning (caller frees) and the run goes on unrecorded. */
KiltRunRecorder *kilt_run_recorder_new (const char *db_path, KiltModel *model,
                                        const KiltDataset *ds, const KiltTrainConfig *cfg,
                                        char **warning);
/* Where the data came from and how it was loaded (the recorder assumes @ds->source with the
 * default options otherwise). Call before the run begins. */
void kilt_run_recorder_set_data_spec (KiltRunRecorder *rec, const KiltDataSpec *spec);
/* Call from the event function (any thread, one at a time). */
void kilt_run_recorder_event (KiltRunRecorder *rec, const KiltEvent *event);
/* The run's id in the store, or 0 before it was begun or when not recording. */
gint64 kilt_run_recorder_id (KiltRunRecorder *rec);
/* After the FINISHED event: NULL when the store recorded the whole run, else what it missed
 * (a write failed, say on a full disk) and whether the run's end was recorded, for the person
 * to see. Owned by @rec. A run whose writes failed still gets its end recorded when the store
 * takes it, with that note as its message. */
const char *kilt_run_recorder_get_failure (KiltRunRecorder *rec);
void kilt_run_recorder_free (KiltRunRecorder *rec);

G_END_DECLS
