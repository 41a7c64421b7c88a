/* A training session on its own thread: commands in, events out. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-device.h"
#include "kilt-memory.h"
#include "kilt-model.h"
#include "kilt-optimizer-config.h"
#include "kilt-precision.h"
#include "kilt-recompute.h"
#include "data/kilt-dataset.h"
#include "dist/kilt-comm.h"

G_BEGIN_DECLS

/* The most devices one process trains on together. */
#define KILT_MAX_DEVICES 64

/* What a run does when the device runs out of memory after it started (a late allocation
 * failure, CL_OUT_OF_RESOURCES): fail, or go on from its last checkpoint (the start when it
 * has none) at the largest batch the plan fits in less memory, up to KILT_OOM_MAX_RESTARTS
 * times. One device only: a run on several devices or ranks fails as before. */
typedef enum
{
  KILT_ON_OOM_FAIL,
  KILT_ON_OOM_RESUME_SMALLER,
} KiltOnOom;

#define KILT_OOM_MAX_RESTARTS 4

/* "fail", "resume-smaller"; FALSE for anything else. */
const char *kilt_on_oom_name (KiltOnOom on_oom);
gboolean kilt_on_oom_from_name (const char *name, KiltOnOom *out);

typedef struct
{
  char *device_id; /* NULL: the default device */
  guint epochs;
  guint batch;
  guint32 seed;
  float val_fraction; /* carve from train when the data has no test split; 0 = none */
  KiltOptimizerConfig opt;
  gboolean augment; /* random horizontal flip + shift, as Keras' cifar10_cnn */
  /* Random horizontal flip + a whole-pixel shift of up to this many pixels each way, the image
   * reflected at its edges (airbench's), instead of augment; 0 = none. */
  guint translate;
  /* With augment or translate: each image's flip drawn once and inverted every other epoch
   * (airbench's alternating flip), instead of drawn anew each epoch. */
  gboolean alternate_flip;
  /* Flip test-time augmentation: validation and test figures (kilt_trainer_evaluate too) from
   * the mean of the predicted probabilities for each image and its mirror. One device. */
  gboolean tta_flip;
  KiltPreprocess preprocess;
  guint max_train_samples; /* 0 = all; else train on the first this many samples */
  char *checkpoint_path;   /* written after each epoch (not on stop or failure); NULL = none */
  gboolean resume;         /* start from checkpoint_path */
  char *run_name;
  gboolean profile;        /* collect per-layer device times */
  KiltPrecision precision; /* fp32 unless asked; refused on a device that lacks it */
  KiltMemoryMode memory;   /* keep activations, recompute them, or whichever fits (auto) */
  /* Several devices (ids, indices or names), data-parallel: each trains on a share of every
   * batch, by measured speed. NULL or one entry: device_id (or that entry) alone. */
  char **devices;
  /* An MPI job's ranks (borrowed; NULL: this process alone). Each rank trains on its rows of
   * every batch; rank 0 alone writes the checkpoint. */
  KiltComm *comm;
  KiltOnOom on_oom;
  /* Categorical cross-entropy against y (1 - s) + s / classes instead of one-hot y, as Keras'
   * label_smoothing; in [0, 1), 0 = none. Other losses refuse anything but 0. */
  float label_smoothing;
} KiltTrainConfig;

/* One device's part of a run on several devices. */
typedef struct
{
  const char *device_name;
  guint share;               /* rows of every global batch */
  double step_ms;            /* device time per step at that share, as calibration measured */
  double samples_per_second; /* share / step time, alone (0: not measured) */
  /* EPOCH: the share of the epoch's sampled steps from their start until the device had
   * done its forward and backward pass (NaN: not sampled), and its device memory now and at
   * its peak. */
  double busy_percent;
  gint64 live_bytes, peak_bytes;
} KiltReplicaShare;

typedef enum
{
  KILT_EVENT_STARTED, /* device, compile time, plan known */
  KILT_EVENT_STEP,    /* sampled a few times a second */
  KILT_EVENT_EPOCH,
  KILT_EVENT_MEMORY,
  KILT_EVENT_TIMINGS, /* per-layer device times */
  KILT_EVENT_LOG,
  KILT_EVENT_FINISHED, /* the last event of a run, whatever its end */
} KiltEventType;

typedef enum
{
  KILT_RUN_RUNNING,
  KILT_RUN_FINISHED,
  KILT_RUN_STOPPED,
  KILT_RUN_FAILED,
  KILT_RUN_INTERRUPTED,
} KiltRunStatus;

typedef struct
{
  char *layer;       /* node name */
  char *type;        /* layer type */
  double forward_ms; /* device time per step */
  double backward_ms;
  double update_ms;
  char *algo;           /* the algorithm the layer chose (Conv2D), or NULL */
  double algo_ms[2][2]; /* the choice's measurements, as KiltNode.algo_ms */
} KiltLayerTiming;

/* A deep copy (the strings too); kilt_layer_timing_clear () frees what it owns. */
void kilt_layer_timing_copy (KiltLayerTiming *dst, const KiltLayerTiming *src);
void kilt_layer_timing_clear (gpointer timing);

typedef struct
{
  KiltEventType type;
  /* STARTED (and FINISHED when the device was opened) */
  const KiltDeviceInfo *device; /* valid during the callback */
  char *device_name;
  double compile_seconds;
  gboolean compile_cached;
  guint64 planned_bytes;
  guint64 device_bytes;
  gsize n_params;
  guint64 flops_per_sample; /* forward */
  guint steps_per_epoch;
  guint64 run_token; /* STARTED: the token this run writes into its checkpoints (never 0) */
  /* STARTED: the batch the run trains at; again after an out-of-memory restart
   * (KILT_ON_OOM_RESUME_SMALLER), with @change saying what changed ("out of device memory at
   * step 1,204; resumed from epoch 2 at batch 24 (was 32)"); NULL on the first. */
  guint batch;
  char *change;
  /* STARTED: how the plan holds activations (the first device's), and its memory line in
   * message ("keeps 6 of 19 blocks, recomputes the rest: +28% compute, fits in ...") */
  gboolean recompute;
  guint blocks_kept, blocks_total;
  double recompute_percent;
  guint max_batch; /* the largest batch the plan fits (recomputing unless --memory keep) */
  /* STARTED and EPOCH of a run on several devices (n_replicas > 1) or ranks: each device's
   * share; the ranks of an MPI job; the gradient sum's host time per step (EPOCH). */
  guint n_replicas;
  const KiltReplicaShare *replicas;
  guint n_ranks;
  double reduce_ms;
  /* EPOCH of a run started on several devices: a step with every device and with the
   * fastest alone, as calibration timed them (0: not timed). When the fastest alone won,
   * n_replicas is 1 from then on. */
  double dist_step_ms, alone_step_ms;
  /* STEP and EPOCH; STARTED: the epochs and steps done before it (a resumption's) */
  guint epoch; /* 1-based */
  guint step;  /* within the epoch, 1-based */
  guint64 global_step;
  double loss, accuracy;         /* running training figures over the epoch so far */
  double val_loss, val_accuracy; /* EPOCH; NaN when there is no validation data */
  double samples_per_second;
  double eta_seconds;
  double epoch_seconds;  /* EPOCH: wall time */
  double warmup_seconds; /* EPOCH: the run's first step when it fell in this epoch, else 0
                          * (drivers compile kernels on first use); samples_per_second
                          * leaves that step out */
  double busy_percent;   /* device busy time / wall time, when profiling */
  /* STEP and EPOCH: training time since this run (or its resumption) began, paused time and
   * the kernel builds left out; and the learning rate the last step used, as scheduled. */
  double elapsed_seconds;
  double learning_rate;
  /* MEMORY */
  KiltMemStats mem;
  gint64 vendor_used_bytes; /* -1 when the platform has no figure */
  /* TIMINGS */
  GArray *timings; /* KiltLayerTiming */
  /* LOG (and STARTED: the plan's memory line) */
  char *message;
  GLogLevelFlags level;
  /* FINISHED */
  KiltRunStatus status;
  GError *error; /* FAILED */
  double test_loss, test_accuracy;
  /* Device bytes still accounted once the session has freed everything it allocated, just
   * before the context goes: 0 unless something leaked (mem above is taken before freeing). */
  gint64 leaked_bytes;
} KiltEvent;

typedef struct _KiltTrainer KiltTrainer;

/* Called on the trainer's thread; must return quickly and not call back into the trainer
 * except kilt_trainer_stop/pause/resume. The event is freed after the call. */
typedef void (*KiltEventFunc) (const KiltEvent *event, gpointer user_data);

/* Takes ownership of @model and @data. */
KiltTrainer *kilt_trainer_new (KiltModel *model, KiltDataset *data, const KiltTrainConfig *config,
                               KiltEventFunc func, gpointer user_data);
void kilt_trainer_start (KiltTrainer *trainer);
void kilt_trainer_pause (KiltTrainer *trainer);
void kilt_trainer_resume (KiltTrainer *trainer);
void kilt_trainer_stop (KiltTrainer *trainer);
/* Waits for the thread; returns the final status. */
KiltRunStatus kilt_trainer_join (KiltTrainer *trainer);
void kilt_trainer_free (KiltTrainer *trainer);

/* Evaluates the weights in @config->checkpoint_path on @data's test split (else its
 * validation split), on @config->device_id, synchronously. Borrows @model and @data. */
gboolean kilt_trainer_evaluate (KiltModel *model, KiltDataset *data, const KiltTrainConfig *config,
                                double *loss, double *accuracy, GError **error);

KiltTrainConfig kilt_train_config_default (void);
/* A deep copy (the strings too; the comm stays borrowed); kilt_train_config_clear () frees it. */
void kilt_train_config_copy (KiltTrainConfig *dst, const KiltTrainConfig *src);
void kilt_train_config_clear (KiltTrainConfig *config);
const char *kilt_run_status_name (KiltRunStatus status);

G_END_DECLS
