/* The worker protocol: a trainer's commands and events as JSON lines over a pipe. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <json-glib/json-glib.h>

#include "kilt-compare.h"
#include "kilt-run-store.h"
#include "kilt-trainer.h"

G_BEGIN_DECLS

/* Bumped whenever a member changes meaning or a command or event is added. The worker's first
 * line is {"kilt_worker": VERSION, "kilt": "<version>", "pid": N}. */
#define KILT_WORKER_PROTOCOL_VERSION 2

/* One line of JSON (no newline) for @ev, the members kilt-cli train --json prints. Caller
 * frees. With a builder from kilt_worker_event_begin (), more members can be added before
 * kilt_worker_event_end (). */
char *kilt_event_to_json (const KiltEvent *ev);
JsonBuilder *kilt_worker_event_begin (const KiltEvent *ev);
char *kilt_worker_event_end (JsonBuilder *b);

/* Fills @ev from an event line's object (what kilt_event_to_json wrote); @ev owns what it
 * points to afterwards: kilt_worker_event_clear () frees it. FALSE with an error naming the
 * member when @o is no event. */
gboolean kilt_worker_event_from_json (JsonObject *o, KiltEvent *ev, GError **error);
void kilt_worker_event_clear (KiltEvent *ev);

/* What a worker does: train (the "start" command), or evaluate a checkpoint on the data's
 * test split ("evaluate": progress events, then one "evaluation" event), or classify one
 * image file ("classify": one "classified" event). Either of the last two ends with "error"
 * instead when it fails. */
typedef enum
{
  KILT_WORKER_TASK_TRAIN,
  KILT_WORKER_TASK_EVALUATE,
  KILT_WORKER_TASK_CLASSIFY,
} KiltWorkerTask;

/* What the window asks a worker to run: one training run, or a sequence of them (compare
 * devices, run again, resume) when @device_ids is set; or an evaluation of
 * config.checkpoint_path, or one file classified with it. */
typedef struct
{
  KiltWorkerTask task;
  char *model_json;  /* kilt_model_to_json () */
  KiltDataSpec data; /* where the worker loads the data from */
  KiltTrainConfig config;
  char *db_path;           /* the run store; NULL: the default */
  gboolean keep_weights;   /* a checkpoint per run in the store's folder */
  char **device_ids;       /* a sequence on these devices; NULL: one run on config.device_id */
  char *tag;               /* sequence: the tag its runs carry, or NULL */
  char *resume_from;       /* sequence: its first run goes on from this checkpoint, or NULL */
  guint max_misclassified; /* evaluate: the misclassified samples the answer lists, at most */
  char *file;              /* classify: the image file */
  /* The model's starting weights (an imported Keras file's), which its JSON does not hold: a
   * checkpoint file (no optimizer state) that the worker reads and then removes, and their
   * note; NULL: none. */
  char *weights_file;
  char *weights_note;
} KiltWorkerJob;

void kilt_worker_job_clear (KiltWorkerJob *job);
/* {"cmd":"start", ...} ("evaluate", "classify" by @job's task), one line without newline.
 * Caller frees. */
char *kilt_worker_job_to_json (const KiltWorkerJob *job);
/* From a start, evaluate or classify command's object (its "cmd" gives the task). Errors
 * name the member. */
gboolean kilt_worker_job_from_json (JsonObject *o, KiltWorkerJob *job, GError **error);

/* Writes @model's starting weights (kilt_model_get_weights) into a new temporary file named
 * in @job->weights_file, for the worker; TRUE without a file when the model has none. */
gboolean kilt_worker_job_attach_weights (KiltWorkerJob *job, KiltModel *model, GError **error);
/* The worker's side: gives @model (built from the job's JSON) the weights in
 * @job->weights_file, after checking they belong to it, and removes the file. TRUE when the
 * job has none. */
gboolean kilt_worker_job_load_weights (const KiltWorkerJob *job, KiltModel *model, GError **error);

/* Parses one line into an object; FALSE (naming @what and the line's start) when the line is
 * not a JSON object. Caller unrefs *out. */
gboolean kilt_worker_parse_line (const char *line, const char *what, JsonObject **out,
                                 GError **error);

/* "finished" -> KILT_RUN_FINISHED ...; FALSE for anything else. */
gboolean kilt_run_status_from_name (const char *name, KiltRunStatus *out);

G_END_DECLS
