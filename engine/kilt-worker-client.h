/* A training worker process (kilt-cli worker) driven from a main loop: the window's side. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-evaluation.h"
#include "kilt-worker-protocol.h"

G_BEGIN_DECLS

typedef struct _KiltWorkerClient KiltWorkerClient;

/* What the worker said, delivered on the main context the client was made on. */
typedef struct
{
  /* A trainer event, or NULL with sequence_end. A worker that died or hung gets a FINISHED
   * event of its own (status FAILED, error KILT_ENGINE_ERROR_WORKER) with @crashed set. */
  const KiltEvent *event;
  guint index, n_devices; /* the run of a sequence; a single run is 0 of 1 */
  gint64 run_id;          /* the run in the store, 0 when not (yet) recorded */
  gboolean crashed;
  gboolean sequence_end; /* the sequence is over: @status and @run_ids */
  KiltRunStatus status;
  const GArray *run_ids; /* gint64 */
  gint64 latency_us;     /* from the worker's write to this call; -1 when unknown */
  /* An evaluate or classify job: progress (@fraction of @what) while it works, then one
   * message with @task_end and either @evaluation, or @scores (@n_scores, with their
   * @class_names), or @task_error (KILT_ENGINE_ERROR_CANCELLED after a stop). A worker that
   * dies instead ends the job with a crashed FINISHED @event as a run's. */
  gboolean progress;
  double fraction;
  const char *what;
  gboolean task_end;
  const KiltEvaluation *evaluation;
  const float *scores;
  guint n_scores;
  const char *const *class_names;
  const GError *task_error;
} KiltWorkerMessage;

typedef void (*KiltWorkerFunc) (const KiltWorkerMessage *message, gpointer user_data);

/* The kilt-cli to run: $KILT_CLI, else a kilt-cli next to the running program, else the one on
 * PATH. NULL with an error saying where it looked. Caller frees. */
char *kilt_worker_find_cli (GError **error);

/* The hang watchdog's floor in seconds: $KILT_WORKER_WATCHDOG when set (a number above 0),
 * else 60. The watchdog ends a worker whose breadcrumb has not moved for
 * MAX (floor, 20 x the longest step seen); before its first step (kernels may be compiling)
 * it allows MAX (floor, 600). */
double kilt_worker_watchdog_floor (void);

KiltWorkerClient *kilt_worker_client_new (KiltWorkerFunc func, gpointer user_data);
/* Starts a worker for @job (a run, a sequence, an evaluation or a classification). Test faults
 * armed in this process (kilt_fault_set) go to the worker, disarmed here. FALSE when no worker
 * could be started. */
gboolean kilt_worker_client_start (KiltWorkerClient *client, const KiltWorkerJob *job,
                                   GError **error);
void kilt_worker_client_pause (KiltWorkerClient *client);
void kilt_worker_client_resume (KiltWorkerClient *client);
void kilt_worker_client_stop (KiltWorkerClient *client);
/* Between start and the message that ends the work (the single run's FINISHED, or
 * sequence_end). */
gboolean kilt_worker_client_is_running (KiltWorkerClient *client);
/* The worker's process id, 0 when none runs. */
int kilt_worker_client_get_pid (KiltWorkerClient *client);
/* Drops the callback; a worker still running is asked to stop and left to finish its record
 * (it ends by itself once its stdin closes). */
void kilt_worker_client_free (KiltWorkerClient *client);

G_END_DECLS
