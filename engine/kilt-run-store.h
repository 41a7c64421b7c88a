/* The run store: every training run, written to SQLite as it happens, listed and read back. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-trainer.h"
#include "kilt-run-scaling.h"

G_BEGIN_DECLS

/* The schema version this build writes (PRAGMA user_version). */
#define KILT_RUN_STORE_SCHEMA_VERSION 8

/* Where a run's data came from and how it was loaded, so that the run can be repeated. */
typedef struct
{
  char *source;            /* what kilt_dataset_load takes: "sample", "fashion-mnist", a path */
  KiltLoadOptions options; /* options.label_column points into label_column */
  char *label_column;
} KiltDataSpec;

/* @options NULL: the defaults. Copies what it keeps. */
void kilt_data_spec_init (KiltDataSpec *spec, const char *source, const KiltLoadOptions *options);
void kilt_data_spec_copy (KiltDataSpec *dest, const KiltDataSpec *src);
void kilt_data_spec_clear (KiltDataSpec *spec);
char *kilt_data_spec_to_json (const KiltDataSpec *spec);
gboolean kilt_data_spec_from_json (const char *json, KiltDataSpec *out, GError **error);

/* What is known when a run starts (fed from the trainer's STARTED event and its config). */
typedef struct
{
  char *name;             /* shown in tables; "" gets "run <id>" */
  char *model_name;       /* short, e.g. "cifar10_cnn" */
  char *model_json;       /* the whole model description */
  char *data_description; /* e.g. "cifar10 (cifar-binary), 50000 train / 10000 test" */
  char *data_hash;        /* content hash of the data set */
  char *data_spec;        /* KiltDataSpec as JSON (schema 3); NULL when not known */
  char *device_id;
  char *device_name;
  char *device_vendor;
  char *device_type;
  char *device_driver;
  char *device_opencl_version;
  char *kilt_version;
  char *clblast_version;
  char *platform_name; /* OpenCL platform, with its version */
  char *platform_version;
  KiltTrainConfig config;   /* all hyper-parameters, the seed and the optimizer; as JSON */
  guint64 flops_per_sample; /* forward FLOPs per sample (0 when unknown) */
  guint64 n_params;
  guint64 train_samples; /* samples per training epoch */
  guint steps_per_epoch;
  double compile_seconds; /* kernel build time at start */
  gboolean compile_cached;
  guint64 checkpoint_token; /* KiltEvent.run_token, in each checkpoint the run writes (schema
                             * 5); 0 when not known */
} KiltRunRecord;

/* One finished epoch (fed from KILT_EVENT_EPOCH plus the MEMORY snapshot). */
typedef struct
{
  guint epoch; /* 1-based */
  double train_loss, train_accuracy;
  double val_loss, val_accuracy; /* NaN when there was no validation data */
  double wall_seconds;           /* this epoch's wall time */
  double elapsed_seconds;        /* since the run began, at the epoch's end */
  double samples_per_second;
  double compile_seconds; /* kernel compile time spent inside this epoch */
  double busy_percent;    /* NaN when not profiled */
  gint64 peak_bytes[KILT_MEM_N_CATEGORIES];
  gint64 peak_total;
  double learning_rate; /* at the epoch's end (schema 7); NaN when not known */
} KiltEpochRecord;

/* A sampled step (at most ten a second are kept). */
typedef struct
{
  guint epoch;
  guint step;
  guint64 global_step;
  double elapsed_seconds; /* since the run began */
  double loss, accuracy;
  double samples_per_second;
  double learning_rate; /* the rate the step used (schema 7); NaN when not known */
} KiltStepRecord;

/* A run read back. Free with kilt_run_free. */
typedef struct
{
  gint64 id;
  KiltRunRecord record;
  char *config_json; /* record.config as stored */
  KiltRunStatus status;
  char *error_message; /* FAILED (or INTERRUPTED: why) */
  char *notes;         /* what changed while it trained, one line each (schema 8); NULL: nothing */
  gint64 started_at;   /* unix time, microseconds */
  gint64 ended_at;     /* 0 while running */
  double test_loss, test_accuracy; /* NaN when absent */
  gint64 pid;
  char *hostname;
  GPtrArray *tags;         /* char* */
  GArray *epochs;          /* KiltEpochRecord, by epoch */
  GArray *layer_timings;   /* KiltLayerTiming */
  GArray *steps;           /* KiltStepRecord; NULL until kilt_run_store_load_steps */
  KiltRunScaling *scaling; /* a run on several devices or ranks (schema 6); NULL: one device */
} KiltRun;

typedef struct _KiltRunStore KiltRunStore;

/* $KILT_RUNS_DB, else $XDG_DATA_HOME/kilt/runs.db. Caller frees. */
char *kilt_run_store_default_path (void);

/* The window keeps each run's weights (a checkpoint written after every epoch) in a folder
 * "checkpoints" beside the store at @db_path (NULL: the default store). Caller frees. */
char *kilt_run_store_checkpoint_dir (const char *db_path);
/* A new file name in that folder for a run of @model_name, which no other run uses (the folder
 * is created). Caller frees. */
char *kilt_run_store_new_checkpoint_path (const char *db_path, const char *model_name,
                                          GError **error);

/* Opens (creating folders and migrating the schema as needed) one connection. A store is used by
 * one thread; other threads and processes open their own. Runs left 'running' by a process that
 * is gone are marked interrupted. @path NULL means the default path. */
KiltRunStore *kilt_run_store_open (const char *path, GError **error);
/* Opens an existing store for reading only: nothing is created, migrated or marked (runs left
 * 'running' by a process that is gone read as interrupted). kilt_run_store_open falls back to
 * this when the file or its folder may not be written (a read-only mount, another user's
 * store); every write then fails saying the store is read-only. A missing file is an error
 * naming it. */
KiltRunStore *kilt_run_store_open_read_only (const char *path, GError **error);
gboolean kilt_run_store_is_read_only (KiltRunStore *store);
void kilt_run_store_close (KiltRunStore *store);
const char *kilt_run_store_get_path (KiltRunStore *store);
int kilt_run_store_get_schema_version (KiltRunStore *store);

/* Writing, each call one committed transaction. */
gboolean kilt_run_store_begin_run (KiltRunStore *store, const KiltRunRecord *record, gint64 *out_id,
                                   GError **error);
gboolean kilt_run_store_add_epoch (KiltRunStore *store, gint64 id, const KiltEpochRecord *epoch,
                                   GError **error);
/* Keeps a step only when at least 0.1 s (of elapsed_seconds) passed since the last one kept
 * for this run; *out_kept (may be NULL) says which. */
gboolean kilt_run_store_add_step (KiltRunStore *store, gint64 id, const KiltStepRecord *step,
                                  gboolean *out_kept, GError **error);
/* Replaces the run's per-layer timings with @timings (KiltLayerTiming). */
/* Replaces what run @id's record says about its devices (a run on several, or on ranks). */
gboolean kilt_run_store_set_scaling (KiltRunStore *store, gint64 id, const KiltRunScaling *scaling,
                                     GError **error);
gboolean kilt_run_store_set_layer_timings (KiltRunStore *store, gint64 id, GArray *timings,
                                           GError **error);
/* @error_message: why it failed (FAILED), or NULL. @test_loss/@test_accuracy NaN if none. */
gboolean kilt_run_store_finish_run (KiltRunStore *store, gint64 id, KiltRunStatus status,
                                    const char *error_message, double test_loss,
                                    double test_accuracy, GError **error);

/* What changed while run @id trained (it went on from its checkpoint at a smaller batch after
 * the device ran out of memory): @note is added to its notes, @config (the batch it trains at
 * now) and @steps_per_epoch replace what was recorded, and the sampled steps past
 * @global_step and epochs past @epochs_done, which it trains again, are dropped. */
gboolean kilt_run_store_add_change (KiltRunStore *store, gint64 id, const char *note,
                                    const KiltTrainConfig *config, guint steps_per_epoch,
                                    guint epochs_done, guint64 global_step, GError **error);

/* Reading. list: every run, newest first, without steps (epochs and timings included). */
GPtrArray *kilt_run_store_list (KiltRunStore *store, GError **error);
KiltRun *kilt_run_store_get (KiltRunStore *store, gint64 id, GError **error);
/* KiltStepRecord, in order. */
GArray *kilt_run_store_get_steps (KiltRunStore *store, gint64 id, GError **error);

/* Fills @run->steps. */
gboolean kilt_run_store_load_steps (KiltRunStore *store, KiltRun *run, GError **error);

/* Editing. Each fails with KILT_ENGINE_ERROR_INVALID when no run has @id. */
gboolean kilt_run_store_rename (KiltRunStore *store, gint64 id, const char *name, GError **error);
gboolean kilt_run_store_add_tag (KiltRunStore *store, gint64 id, const char *tag, GError **error);
gboolean kilt_run_store_remove_tag (KiltRunStore *store, gint64 id, const char *tag,
                                    GError **error);
/* Deletes the run and, when its checkpoint lies in this store's checkpoint folder (the
 * window's), that file too; a checkpoint written elsewhere (kilt-cli train --checkpoint) stays.
 * A run still running (its process alive, or on another machine, where we cannot tell) is
 * refused: its process would go on writing to a run that is gone. */
gboolean kilt_run_store_delete (KiltRunStore *store, gint64 id, GError **error);

void kilt_run_record_clear (KiltRunRecord *record);
void kilt_run_free (KiltRun *run);

/* Names used in the store, the CLI and reports: "running", "finished", ... */
const char *kilt_run_store_status_name (KiltRunStatus status);
gboolean kilt_run_store_status_from_name (const char *name, KiltRunStatus *out);

/* Figures derived from a run's epochs. */
double kilt_run_mean_epoch_seconds (const KiltRun *run); /* NaN with no epochs */
double kilt_run_train_seconds (const KiltRun *run);      /* sum of epoch wall times */
double kilt_run_best_val_accuracy (const KiltRun *run);  /* NaN when none */
double kilt_run_final_val_accuracy (const KiltRun *run); /* NaN when none */
double kilt_run_mean_samples_per_second (const KiltRun *run);
/* Achieved training GFLOP/s: 3 x forward FLOPs (forward + backward at twice the forward)
 * x samples/s / 1e9; NaN when flops_per_sample is unknown. */
double kilt_run_gflops (const KiltRun *run);

/* Whether @run can go on from its checkpoint: it ended without finishing (stopped, failed or
 * interrupted) after at least one epoch and before its last, and its checkpoint is on disk and
 * still its own (the run's checkpoint token, or for runs recorded before tokens its epoch
 * count: a file shared with a later run holds that run's weights). FALSE with @error saying
 * why not. */
gboolean kilt_run_can_resume (const KiltRun *run, GError **error);
/* The same, and the epochs the checkpoint holds, from which a resumed run goes on. When they
 * are not the store's count (the store missed some, or the run stopped between an epoch and
 * its checkpoint), *@out_note (may be NULL; caller frees) says so. */
gboolean kilt_run_resume_point (const KiltRun *run, guint *out_epochs, char **out_note,
                                GError **error);

/* The KiltTrainConfig as JSON, and back (strings in @out are newly allocated). */
char *kilt_run_config_to_json (const KiltTrainConfig *config);
gboolean kilt_run_config_from_json (const char *json, KiltTrainConfig *out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltRunStore, kilt_run_store_close)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltRun, kilt_run_free)

G_END_DECLS
