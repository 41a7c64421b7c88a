/* Compare devices: one configuration trained on each chosen device in turn, every run recorded. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-run-store.h"

G_BEGIN_DECLS

typedef struct _KiltCompare KiltCompare;

typedef struct
{
  guint index;           /* which device of the list, 0-based */
  guint n_devices;       /* how many runs the sequence has */
  const char *device_id; /* the device of this run */
  gint64 run_id;         /* the run in the store; 0 before it began or when not recorded */
  /* The trainer's event, valid during the call. NULL once: the sequence is over. */
  const KiltEvent *event;
  /* With event NULL: the recorded runs' ids (gint64), in device order, and the outcome. */
  const GArray *run_ids;
  KiltRunStatus status; /* STOPPED when stopped, FAILED when every run failed, else FINISHED */
} KiltCompareEvent;

/* Called on the sequence's threads (one call at a time, in order); must return quickly and call
 * back only into kilt_compare_stop/pause/resume. */
typedef void (*KiltCompareFunc) (const KiltCompareEvent *event, gpointer user_data);

/* @device_ids: the devices in the order to run them (the same id twice is allowed). Each run
 * gets a fresh model parsed from @model_json (kilt_model_to_json) and a fresh data set loaded
 * from @data; @config is the run's configuration (its device_id, checkpoint and resume are
 * ignored, see kilt_compare_set_keep_weights; a NULL run_name names each run "<model> on
 * <device>"). Runs go to the store at @db_path (NULL: the default store) and, when @tag is
 * non-NULL, carry that tag. Copies everything it keeps.
 */
KiltCompare *kilt_compare_new (const char *const *device_ids, const char *model_json,
                               const KiltDataSpec *data, const KiltTrainConfig *config,
                               const char *db_path, const char *tag, KiltCompareFunc func,
                               gpointer user_data);
/* Lets the first run use @ds (already loaded from the same spec) instead of loading it again.
 * Takes ownership. Call before kilt_compare_start. */
void kilt_compare_set_first_dataset (KiltCompare *compare, KiltDataset *ds);
/* Each run writes its weights after every epoch to a new file in the store's checkpoint folder
 * (kilt_run_store_new_checkpoint_path), which its recorded configuration names. */
void kilt_compare_set_keep_weights (KiltCompare *compare, gboolean keep);
/* The first run goes on from checkpoint @checkpoint (a copy of it: the run it came from keeps
 * its own) instead of starting afresh; implies keeping weights. Call before start. */
void kilt_compare_set_resume_from (KiltCompare *compare, const char *checkpoint);
void kilt_compare_start (KiltCompare *compare);
/* Stops the run going on; no further run starts. */
void kilt_compare_stop (KiltCompare *compare);
void kilt_compare_pause (KiltCompare *compare);
void kilt_compare_resume (KiltCompare *compare);
/* Waits for the whole sequence; returns its status (as in the closing event). */
KiltRunStatus kilt_compare_join (KiltCompare *compare);
/* The recorded runs' ids so far (gint64), in device order. Caller unrefs. */
GArray *kilt_compare_dup_run_ids (KiltCompare *compare);
const char *kilt_compare_get_tag (KiltCompare *compare);
void kilt_compare_free (KiltCompare *compare);

/* "compare-20261127-142501": a tag naming a comparison started now. Caller frees. */
char *kilt_compare_make_tag (void);

G_END_DECLS
