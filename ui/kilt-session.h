/* The window's side of a training run: starts the trainer thread and turns its events into
 * coalesced updates on the main thread (at most ~10 a second). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib-object.h>

#include "kilt-compare.h"
#include "kilt-trainer.h"

G_BEGIN_DECLS

/* What arrived since the last update, in order. Owned by the session; valid in the handler. */
typedef struct
{
  GArray *steps;    /* KiltEvent copies of type STEP (scalars only) */
  GArray *epochs;   /* ... EPOCH */
  GArray *memory;   /* ... MEMORY, with .epoch_seconds holding seconds since start and
                     * .epoch, .step, .global_step, .elapsed_seconds the last STEP's */
  GPtrArray *logs;  /* char *: "warning: ..." lines */
  GArray *timings;  /* KiltLayerTiming: the latest per-layer times, or NULL */
  gboolean started; /* the STARTED event is in @first */
  KiltEvent first;  /* scalars of STARTED */
  KiltEvent last;   /* the latest STEP or EPOCH scalars (progress) */
  gboolean has_last;
  /* Which run of a sequence (compare devices) this update is about; an update never mixes two
   * runs. A single run is run 0 of 1. */
  guint device_index;
  guint n_devices;
  gboolean run_finished; /* this run ended (status, error) */
  gboolean finished;     /* the session's work ended: the last run, or the whole sequence */
  KiltRunStatus status;
  GError *error;   /* FAILED */
  GArray *run_ids; /* with finished, for a sequence: the recorded runs (gint64), else NULL */
  /* A run on several devices: each device's part (KiltReplicaShare, the names owned) from the
   * latest STARTED or EPOCH that carried them, and that epoch's calibration step times with
   * every device and the fastest alone (0: not timed); NULL when nothing new came. */
  GArray *replicas;
  double dist_step_ms, alone_step_ms;
} KiltSessionUpdate;

#define KILT_TYPE_SESSION (kilt_session_get_type ())
G_DECLARE_FINAL_TYPE (KiltSession, kilt_session, KILT, SESSION, GObject)

KiltSession *kilt_session_new (void);
/* Takes @model and @data. Fails when a run is going on or the build has no trainer. */
gboolean kilt_session_start (KiltSession *self, KiltModel *model, KiltDataset *data,
                             const KiltTrainConfig *config, GError **error);
/* Trains one configuration on each of @device_ids in turn (a KiltCompare): a fresh model
 * from @model_json and data loaded from @data per run, @first_data (taken; may be NULL) used
 * by the first. Runs are recorded in the store at @db_path (NULL: the default) with @tag (may
 * be NULL). Updates carry the run's index; the last one has finished and the run ids. */
gboolean kilt_session_start_compare (KiltSession *self, const char *const *device_ids,
                                     const char *model_json, const KiltDataSpec *data,
                                     KiltDataset *first_data, const KiltTrainConfig *config,
                                     const char *db_path, const char *tag, GError **error);
/* Where the next kilt_session_start () run's data came from, for its record. */
void kilt_session_set_data_spec (KiltSession *self, const KiltDataSpec *spec);
/* Every run started from now on writes its weights after each epoch to a checkpoint of its own
 * in the run store's folder (kilt_run_store_new_checkpoint_path), which its record names. */
void kilt_session_set_keep_weights (KiltSession *self, gboolean keep);
/* The next kilt_session_start_compare ()'s first run goes on from a copy of @checkpoint. */
void kilt_session_set_resume_from (KiltSession *self, const char *checkpoint);
/* A run fed from outside (tests, replays): events go in through kilt_session_post () from any
 * thread, exactly as the trainer's would, ending with a FINISHED event. Returns the run's
 * token, valid as long as the session; events posted for a replaced run are dropped. */
gpointer kilt_session_begin_external (KiltSession *self);
void kilt_session_post (gpointer token, const KiltEvent *event);
void kilt_session_pause (KiltSession *self);
void kilt_session_resume (KiltSession *self);
/* Asks the run to stop; "finished" follows once it has. */
void kilt_session_stop (KiltSession *self);
gboolean kilt_session_is_running (KiltSession *self);
gboolean kilt_session_is_paused (KiltSession *self);
/* Seconds since the running (or last) run started. */
double kilt_session_elapsed (KiltSession *self);

G_END_DECLS
