/* What the trainer's thread holds, shared with the data-parallel steps of engine/dist. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-trainer.h"
#include "kilt-lookahead.h"
#include "kilt-profiler.h"
#include "dist/kilt-reduce.h"
#include "dist/kilt-replica.h"

G_BEGIN_DECLS

/* Metrics are read back (asynchronously) at most this often. */
#define REPORT_INTERVAL_US (100 * 1000)
#define METRICS_FLOATS     4

struct _KiltTrainer
{
  KiltModel *model;
  KiltDataset *data;
  KiltTrainConfig config;
  KiltEventFunc func;
  gpointer user_data;
  GThread *thread;
  GMutex lock;
  GCond cond;
  gboolean paused;
  gint stop;
  /* An MPI job's rank asked to stop (Ctrl-C reaches ranks at different steps): every rank
   * stops at the same step, once the next agreement (kilt_session_agree_stop) has seen it. */
  gint stop_wanted;
  KiltRunStatus status;
  /* Out-of-memory restarts (KILT_ON_OOM_RESUME_SMALLER): the run's checkpoint token, kept
   * across them; how many there were; the checkpoint it would go on from; what the next
   * STARTED event tells; the memory the next session may plan with (0: the device's). */
  guint64 run_token;
  guint oom_restarts;
  gboolean have_checkpoint; /* written or loaded: checkpoint_path holds checkpoint_epochs */
  guint checkpoint_epochs;
  char *change;
  guint64 oom_budget;
};

/* Everything the thread owns while it runs; freed in order by session_free. */
/* Everything the thread owns while it runs; freed in order by session_free. */
typedef struct
{
  KiltTrainer *trainer;
  KiltDeviceList *devices;
  KiltReplica *rep; /* n_rep of them; rep[0] evaluates, checkpoints and reports memory */
  guint n_rep;
  KiltGradReducer *reducer; /* several replicas, or ranks */
  KiltComm *comm;           /* borrowed from the config: an MPI job's ranks, or NULL */
  /* This rank's rows of every global batch (all of them without MPI). */
  guint rank_first, rank_count;
  /* Calibration of several replicas (engine/dist/kilt-trainer-dist.c): the step times of all
   * devices and of the fastest alone, and whether the shares are settled. */
  gboolean settled;
  double calib_mix_ms, calib_alone_ms;
  guint calib_mix_n, calib_alone_n;
  gint fastest;
  /* Once settled, every BUSY_EVERY-th step of several replicas is timed on each device
   * (KiltReplica.busy_ms) against the wall time until the next step began (busy_wall_ms);
   * busy_t0 is the timed step's start, 0 when none is waiting for the next. */
  double busy_wall_ms;
  gint64 busy_t0;
  const KiltSplit *eval_split;
  KiltProfiler *profiler;
  /* With opt.lookahead: the average (on rep[0]) and the run's last global step. */
  KiltLookahead *lookahead;
  guint64 lookahead_total;
  guint64 global_step;
  guint64 first_global_step; /* where this run (or resumption) started */
  guint first_epoch;
  guint64 run_token; /* written into every checkpoint of this run */
  /* rep[0]'s plan: what it needs, of which the data set on the device (for a smaller batch's
   * plan after running out of memory) */
  guint64 planned_bytes, data_bytes;
  /* The host ran out of memory (a checkpoint's copies): a smaller batch would not mend it. */
  gboolean host_memory;
  /* The last evaluation of eval_split and the step it was taken at (G_MAXUINT64: none). */
  double eval_loss, eval_accuracy;
  guint64 eval_step;
  /* Microseconds spent paused so far: kept out of epoch times, throughput and ETAs, so a
   * pause does not make a run look slower than it trained. */
  gint64 paused_us;
  /* When training began (after the kernel builds and the upload): STEP and EPOCH events say
   * how long the run has trained since, paused time left out. */
  gint64 train_t0_us;
} Session;

void kilt_session_emit (Session *s, KiltEvent *ev);
void kilt_session_log (Session *s, GLogLevelFlags level, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
void kilt_session_emit_memory (Session *s);
gboolean kilt_session_should_stop (KiltTrainer *t);
/* Blocks while paused; returns FALSE when a stop arrived. */
gboolean kilt_session_wait_if_paused (Session *s);
gboolean kilt_session_zero_metrics (Session *s, KiltBuffer *metrics, GError **error);
/* Mean loss and accuracy over everything accumulated in @metrics (blocking read). */
gboolean kilt_session_read_metrics (Session *s, KiltBuffer *metrics, double *loss, double *acc,
                                    GError **error);
gboolean kilt_session_check_finite_loss (Session *s, const char *which, double loss, guint64 step,
                                         GError **error);
/* Says where a training step failed: the layer and phase the executor had reached, or, around
 * the layers, @stage. */
void kilt_session_prefix_step_error (Session *s, GError **error, const char *stage, guint epoch,
                                     guint step);

/* engine/dist/kilt-trainer-dist.c: several replicas, or ranks. */
gboolean kilt_session_dist_prepare (Session *s, GError **error);
gboolean kilt_session_dist_epoch (Session *s, guint epoch, GError **error);
/* An MPI job: whether any rank was asked to stop; if one was, every rank stops from here on.
 * A collective: every rank calls it at the same step. */
gboolean kilt_session_agree_stop (Session *s, GError **error);
gboolean kilt_session_dist_evaluate (Session *s, gboolean test, double *loss, double *acc,
                                     GError **error);
void kilt_session_dist_free (Session *s);

G_END_DECLS
