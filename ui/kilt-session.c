/* The window's side of a training run: starts a worker process (kilt-cli worker) for it, or
 * the trainer thread where no worker can run, and turns its events into coalesced updates on
 * the main thread (at most ~10 a second). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-session"

#include "config.h"

#include "kilt-session.h"
#include "kilt-error.h"
#include "kilt-run-recorder.h"
#include "kilt-model-json.h"
#include "kilt-worker-client.h"

#include <glib/gstdio.h>
#include <string.h>

#define FLUSH_MS 100

/* Shared between the trainer thread and the main thread; outlives either side's use. */
typedef struct
{
  gatomicrefcount ref;
  GMutex lock;
  guint generation; /* bumped per run: events of an older run are dropped */
  guint source_id;  /* the one pending flush, 0 when none */
  GMainContext *main_context;
  GWeakRef session;
  KiltSessionUpdate pending;
  GQueue ready; /* KiltSessionUpdate *: whole updates of earlier runs of a sequence, in order */
  gint64 start_us;
  KiltEvent last_step; /* scalars of the last STEP posted: where memory samples stand */
} Shared;

typedef struct
{
  Shared *shared;
  guint generation;
  KiltRunRecorder *recorder; /* the run store's record of this run; trainer thread only */
  gboolean sequence;         /* a compare's runs: its end comes after the last run's */
} RunTag;

static void post_event (RunTag *tag, guint index, guint n, const KiltEvent *event,
                        const KiltCompareEvent *end);

struct _KiltSession
{
  GObject parent_instance;
  Shared *shared;
  KiltTrainer *trainer;
  KiltCompare *compare;     /* a sequence of runs, instead of the trainer */
  KiltWorkerClient *worker; /* the run's worker process, instead of either */
  gpointer tag;             /* RunTag of the trainer, freed after its thread is joined */
  KiltDataSpec next_spec;   /* where the next run's data came from; source NULL: unknown */
  GPtrArray *external_tags; /* RunTag of runs fed by kilt_session_post (), kept to the end */
  gboolean keep_weights;    /* each run writes a checkpoint in the store's folder */
  char *resume_from;        /* the next sequence's first run goes on from this checkpoint */
  gboolean running, paused;
  gint64 start_us, end_us;
};

G_DEFINE_FINAL_TYPE (KiltSession, kilt_session, G_TYPE_OBJECT)

enum
{
  SIGNAL_UPDATE,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

enum
{
  PROP_0,
  PROP_RUNNING,
  PROP_PAUSED,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

static void
update_init (KiltSessionUpdate *u)
{
  memset (u, 0, sizeof *u);
  u->steps = g_array_new (FALSE, FALSE, sizeof (KiltEvent));
  u->epochs = g_array_new (FALSE, FALSE, sizeof (KiltEvent));
  u->memory = g_array_new (FALSE, FALSE, sizeof (KiltEvent));
  u->logs = g_ptr_array_new_with_free_func (g_free);
  u->n_devices = 1;
}

static gboolean
update_is_empty (const KiltSessionUpdate *u)
{
  return u->steps->len == 0 && u->epochs->len == 0 && u->memory->len == 0 && u->logs->len == 0
         && u->timings == NULL && !u->started && !u->has_last && !u->run_finished && !u->finished;
}

static void
update_clear (KiltSessionUpdate *u)
{
  g_array_unref (u->steps);
  g_array_unref (u->epochs);
  g_array_unref (u->memory);
  g_ptr_array_unref (u->logs);
  g_clear_pointer (&u->timings, g_array_unref);
  g_clear_pointer (&u->run_ids, g_array_unref);
  g_clear_pointer (&u->replicas, g_array_unref);
  g_clear_error (&u->error);
}

static void
replica_share_clear (gpointer data)
{
  g_free ((char *)((KiltReplicaShare *)data)->device_name);
}

/* Keeps @event's devices (STARTED and EPOCH of a run on several) in @u, copied. */
static void
keep_replicas (KiltSessionUpdate *u, const KiltEvent *event)
{
  if (event->n_replicas == 0 || event->replicas == NULL)
    return;
  g_clear_pointer (&u->replicas, g_array_unref);
  u->replicas = g_array_sized_new (FALSE, TRUE, sizeof (KiltReplicaShare), event->n_replicas);
  g_array_set_clear_func (u->replicas, replica_share_clear);
  for (guint i = 0; i < event->n_replicas; i++)
    {
      KiltReplicaShare r = event->replicas[i];
      r.device_name = g_strdup (r.device_name ? r.device_name : "?");
      g_array_append_val (u->replicas, r);
    }
  if (event->type == KILT_EVENT_EPOCH)
    {
      u->dist_step_ms = event->dist_step_ms;
      u->alone_step_ms = event->alone_step_ms;
    }
}

static void
update_free (gpointer data)
{
  update_clear (data);
  g_free (data);
}

static Shared *
shared_ref (Shared *s)
{
  g_atomic_ref_count_inc (&s->ref);
  return s;
}

static void
shared_unref (Shared *s)
{
  if (!g_atomic_ref_count_dec (&s->ref))
    return;
  update_clear (&s->pending);
  g_queue_clear_full (&s->ready, update_free);
  g_weak_ref_clear (&s->session);
  g_main_context_unref (s->main_context);
  g_mutex_clear (&s->lock);
  g_free (s);
}

/* A copy of the event's numbers, without the pointers it owns. */
static KiltEvent
scalars (const KiltEvent *e)
{
  KiltEvent c = *e;

  c.device = NULL;
  c.device_name = NULL;
  c.timings = NULL;
  c.message = NULL;
  c.change = NULL;
  c.error = NULL;
  c.replicas = NULL;
  return c;
}

static void run_tag_free (gpointer data);

typedef struct
{
  KiltTrainer *trainer;
  KiltCompare *compare;
  gpointer tag;
} Joiner;

static gpointer
join_thread (gpointer data)
{
  Joiner *j = data;

  if (j->trainer)
    {
      kilt_trainer_join (j->trainer);
      kilt_trainer_free (j->trainer);
    }
  if (j->compare)
    {
      kilt_compare_join (j->compare);
      kilt_compare_free (j->compare);
    }
  run_tag_free (j->tag);
  g_free (j);
  return NULL;
}

static gboolean
flush (gpointer data)
{
  Shared *s = data;
  g_autoptr (KiltSession) self = g_weak_ref_get (&s->session);
  KiltSessionUpdate u;
  GQueue ready = G_QUEUE_INIT;

  g_mutex_lock (&s->lock);
  u = s->pending;
  update_init (&s->pending);
  ready = s->ready;
  g_queue_init (&s->ready);
  /* A FINISHED event may have replaced this source with a newer one while it was about to
   * run: only the current source clears the slot. */
  if (s->source_id == g_source_get_id (g_main_current_source ()))
    s->source_id = 0;
  g_mutex_unlock (&s->lock);

  /* Earlier runs of a sequence first, each whole. */
  for (KiltSessionUpdate *r; (r = g_queue_pop_head (&ready));)
    {
      if (self)
        g_signal_emit (self, signals[SIGNAL_UPDATE], 0, r);
      update_free (r);
    }
  if (self)
    {
      if (u.finished)
        {
          KiltTrainer *trainer = g_steal_pointer (&self->trainer);
          KiltCompare *compare = g_steal_pointer (&self->compare);

          /* Its work is over; the process ends by itself. */
          g_clear_pointer (&self->worker, kilt_worker_client_free);
          if (self->tag && !trainer && !compare)
            g_clear_pointer (&self->tag, run_tag_free);

          self->running = FALSE;
          self->paused = FALSE;
          self->end_us = g_get_monotonic_time ();
          /* The thread is on its way out; joining it must not hold up the window. */
          if (trainer || compare)
            {
              Joiner *j = g_new0 (Joiner, 1);
              j->trainer = trainer;
              j->compare = compare;
              j->tag = g_steal_pointer (&self->tag);
              g_thread_unref (g_thread_new ("kilt-join", join_thread, j));
            }
        }
      g_signal_emit (self, signals[SIGNAL_UPDATE], 0, &u);
      if (u.finished)
        {
          g_object_notify_by_pspec (G_OBJECT (self), props[PROP_RUNNING]);
          g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PAUSED]);
        }
    }
  update_clear (&u);
  return G_SOURCE_REMOVE;
}

/* Called on the trainer's thread. */
static void
on_event (const KiltEvent *event, gpointer user_data)
{
  RunTag *tag = user_data;

  /* The record is kept whatever the window does with the run. */
  if (tag->recorder)
    kilt_run_recorder_event (tag->recorder, event);
  /* The store missed part of the run (a full disk, say): say so before the end shows. */
  if (tag->recorder && event->type == KILT_EVENT_FINISHED
      && kilt_run_recorder_get_failure (tag->recorder))
    {
      g_mutex_lock (&tag->shared->lock);
      g_ptr_array_add (
          tag->shared->pending.logs,
          g_strdup_printf ("warning: %s", kilt_run_recorder_get_failure (tag->recorder)));
      g_mutex_unlock (&tag->shared->lock);
    }
  post_event (tag, 0, 1, event, NULL);
}

/* Called on the sequence's threads: the compare records its runs itself. */
static void
on_compare_event (const KiltCompareEvent *ce, gpointer user_data)
{
  post_event (user_data, ce->index, ce->n_devices, ce->event, ce->event ? NULL : ce);
}

/* On the main thread: what the worker process said. */
static void
on_worker_message (const KiltWorkerMessage *m, gpointer user_data)
{
  RunTag *tag = user_data;

  if (m->sequence_end)
    {
      KiltCompareEvent end = { 0 };
      end.index = m->index;
      end.n_devices = m->n_devices;
      end.run_ids = m->run_ids;
      end.status = m->status;
      post_event (tag, m->index, m->n_devices, NULL, &end);
      return;
    }
  post_event (tag, m->index, m->n_devices, m->event, NULL);
}

/* Adds @event of run @index (of @n) to the pending update; @end (with @event NULL): the
 * sequence is over. */
static void
post_event (RunTag *tag, guint index, guint n, const KiltEvent *event, const KiltCompareEvent *end)
{
  Shared *s = tag->shared;
  KiltSessionUpdate *u = &s->pending;
  KiltEvent c = event ? scalars (event) : (KiltEvent){ 0 };
  gboolean now = FALSE;

  g_mutex_lock (&s->lock);
  if (tag->generation != s->generation)
    {
      g_mutex_unlock (&s->lock);
      return;
    }
  if (end == NULL && u->device_index != index && !update_is_empty (u))
    {
      /* The next run of a sequence began: what is pending belongs to the one before. */
      KiltSessionUpdate *done = g_new (KiltSessionUpdate, 1);
      *done = *u;
      g_queue_push_tail (&s->ready, done);
      update_init (u);
    }
  if (end == NULL)
    {
      u->device_index = index;
      u->n_devices = n;
    }
  if (end)
    {
      u->finished = TRUE;
      u->status = end->status;
      g_clear_pointer (&u->run_ids, g_array_unref);
      u->run_ids = g_array_copy ((GArray *)end->run_ids);
      now = TRUE;
    }
  else
    switch (event->type)
      {
        case KILT_EVENT_STARTED:
          u->started = TRUE;
          u->first = c;
          keep_replicas (u, event);
          /* A run of a sequence starts from its own first step, not the last run's last. */
          memset (&s->last_step, 0, sizeof s->last_step);
          now = TRUE;
          break;
        case KILT_EVENT_STEP:
          g_array_append_val (u->steps, c);
          u->last = c, u->has_last = TRUE;
          s->last_step = c;
          break;
        case KILT_EVENT_EPOCH:
          g_array_append_val (u->epochs, c);
          u->last = c, u->has_last = TRUE;
          keep_replicas (u, event);
          break;
        case KILT_EVENT_MEMORY:
          c.epoch_seconds = (g_get_monotonic_time () - s->start_us) / 1e6;
          /* A sample is taken just after a step report: it stands where that report does on
           * the charts' step, epoch and time axes (the page gets the two apart). */
          c.epoch = s->last_step.epoch;
          c.step = s->last_step.step;
          c.global_step = s->last_step.global_step;
          c.elapsed_seconds = s->last_step.elapsed_seconds;
          g_array_append_val (u->memory, c);
          break;
        case KILT_EVENT_TIMINGS:
          g_clear_pointer (&u->timings, g_array_unref);
          if (event->timings)
            {
              u->timings = g_array_new (FALSE, FALSE, sizeof (KiltLayerTiming));
              for (guint i = 0; i < event->timings->len; i++)
                {
                  KiltLayerTiming t;
                  /* The strings belong to the event: keep copies in a side list. */
                  kilt_layer_timing_copy (&t, &g_array_index (event->timings, KiltLayerTiming, i));
                  g_array_append_val (u->timings, t);
                }
              g_array_set_clear_func (u->timings, kilt_layer_timing_clear);
            }
          break;
        case KILT_EVENT_LOG:
          g_ptr_array_add (u->logs,
                           g_strdup_printf ("%s: %s",
                                            event->level & G_LOG_LEVEL_ERROR     ? "error"
                                            : event->level & G_LOG_LEVEL_WARNING ? "warning"
                                                                                 : "info",
                                            event->message ? event->message : ""));
          break;
        case KILT_EVENT_FINISHED:
          u->run_finished = TRUE;
          /* A run of a sequence ends; the sequence's own end comes after. */
          u->finished = !tag->sequence;
          u->status = event->status;
          g_clear_error (&u->error);
          u->error = event->error ? g_error_copy (event->error) : NULL;
          now = TRUE;
          break;
        default:
          break;
      }
  if (now && s->source_id != 0)
    {
      GSource *old = g_main_context_find_source_by_id (s->main_context, s->source_id);
      if (old)
        g_source_destroy (old);
      s->source_id = 0;
    }
  if (s->source_id == 0)
    {
      GSource *source = now ? g_idle_source_new () : g_timeout_source_new (FLUSH_MS);

      g_source_set_callback (source, flush, shared_ref (s), (GDestroyNotify)shared_unref);
      g_source_set_name (source, "kilt-session-flush");
      s->source_id = g_source_attach (source, s->main_context);
      g_source_unref (source);
    }
  g_mutex_unlock (&s->lock);
}

static void
run_tag_free (gpointer data)
{
  RunTag *tag = data;

  g_clear_pointer (&tag->recorder, kilt_run_recorder_free);
  shared_unref (tag->shared);
  g_free (tag);
}

/* A new run: later events of older runs are dropped from here on. */
static RunTag *
begin_run (KiltSession *self)
{
  RunTag *tag = g_new0 (RunTag, 1);

  tag->shared = shared_ref (self->shared);
  g_mutex_lock (&self->shared->lock);
  tag->generation = ++self->shared->generation;
  update_clear (&self->shared->pending);
  update_init (&self->shared->pending);
  g_queue_clear_full (&self->shared->ready, update_free);
  self->shared->start_us = g_get_monotonic_time ();
  memset (&self->shared->last_step, 0, sizeof self->shared->last_step);
  g_mutex_unlock (&self->shared->lock);
  self->start_us = self->shared->start_us;
  self->end_us = 0;
  return tag;
}

gpointer
kilt_session_begin_external (KiltSession *self)
{
  RunTag *tag;

  g_return_val_if_fail (KILT_IS_SESSION (self), NULL);
  g_return_val_if_fail (!self->running, NULL);
  tag = begin_run (self);
  g_ptr_array_add (self->external_tags, tag);
  self->running = TRUE;
  self->paused = FALSE;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_RUNNING]);
  return tag;
}

void
kilt_session_post (gpointer token, const KiltEvent *event)
{
  g_return_if_fail (token != NULL && event != NULL);
  on_event (event, token);
}

/* Whether runs go to a worker process, and if not, why (for the log). $KILT_WORKER=0 keeps
 * them in this process (for comparisons). */
static gboolean
use_worker (char **why)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *cli = NULL;

  if (g_strcmp0 (g_getenv ("KILT_WORKER"), "0") == 0)
    {
      *why = g_strdup ("KILT_WORKER=0 keeps training in the window's process");
      return FALSE;
    }
  cli = kilt_worker_find_cli (&error);
  if (cli == NULL)
    {
      *why = g_strdup_printf ("training in the window's process, where a driver crash ends the "
                              "window too: %s",
                              error->message);
      return FALSE;
    }
  return TRUE;
}

static void
log_pending (KiltSession *self, const char *fmt, const char *text)
{
  g_mutex_lock (&self->shared->lock);
  g_ptr_array_add (self->shared->pending.logs, g_strdup_printf (fmt, text));
  g_mutex_unlock (&self->shared->lock);
}

/* Hands @job to a new worker process; the run's events come back through post_event (). */
static gboolean
start_worker (KiltSession *self, RunTag *tag, const KiltWorkerJob *job, GError **error)
{
  self->worker = kilt_worker_client_new (on_worker_message, tag);
  if (!kilt_worker_client_start (self->worker, job, error))
    {
      g_clear_pointer (&self->worker, kilt_worker_client_free);
      return FALSE;
    }
  self->tag = tag;
  self->running = TRUE;
  self->paused = FALSE;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_RUNNING]);
  return TRUE;
}

gboolean
kilt_session_start (KiltSession *self, KiltModel *model, KiltDataset *data,
                    const KiltTrainConfig *config, GError **error)
{
  g_autofree char *why = NULL;
  RunTag *tag;
  g_autofree char *checkpoint = NULL;
  KiltTrainConfig with_checkpoint;

  g_return_val_if_fail (KILT_IS_SESSION (self), FALSE);
  if (self->running)
    {
      kilt_model_free (model);
      kilt_dataset_free (data);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "A run is already going on; stop it first");
      return FALSE;
    }
  /* The worker loads the data again from where it came from: a data set made in memory
   * (tests, replays) has nowhere to come from and trains here. */
  if ((self->next_spec.source || data->source) && use_worker (&why))
    {
      KiltWorkerJob job = { 0 };
      g_autoptr (GError) local = NULL;
      gboolean ok;

      /* The JSON holds the architecture and the frozen flags; imported starting weights go in
       * a file beside it, which the worker reads and removes. */
      if (!kilt_worker_job_attach_weights (&job, model, &local))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "%s", local->message);
          kilt_model_free (model);
          kilt_dataset_free (data);
          kilt_data_spec_clear (&self->next_spec);
          return FALSE;
        }
      job.model_json = kilt_model_to_json (model);
      if (self->next_spec.source)
        kilt_data_spec_copy (&job.data, &self->next_spec);
      else
        kilt_data_spec_init (&job.data, data->source, NULL);
      kilt_data_spec_clear (&self->next_spec);
      kilt_train_config_copy (&job.config, config);
      job.keep_weights = self->keep_weights;
      kilt_model_free (model);
      kilt_dataset_free (data);
      tag = begin_run (self);
      ok = start_worker (self, tag, &job, error);
      if (!ok)
        run_tag_free (tag);
      if (!ok && job.weights_file)
        g_unlink (job.weights_file);
      kilt_worker_job_clear (&job);
      return ok;
    }
  if (self->keep_weights)
    {
      checkpoint = kilt_run_store_new_checkpoint_path (NULL, model->name, error);
      if (checkpoint == NULL)
        {
          kilt_model_free (model);
          kilt_dataset_free (data);
          g_prefix_error (error, "Cannot keep the run's weights: ");
          return FALSE;
        }
      with_checkpoint = *config;
      with_checkpoint.checkpoint_path = checkpoint;
      with_checkpoint.resume = FALSE;
      config = &with_checkpoint;
    }
  tag = begin_run (self);
  {
    g_autofree char *warning = NULL;
    tag->recorder = kilt_run_recorder_new (NULL, model, data, config, &warning);
    if (self->next_spec.source)
      kilt_run_recorder_set_data_spec (tag->recorder, &self->next_spec);
    kilt_data_spec_clear (&self->next_spec);
    if (warning)
      {
        g_mutex_lock (&self->shared->lock);
        g_ptr_array_add (self->shared->pending.logs, g_strdup_printf ("warning: %s", warning));
        g_mutex_unlock (&self->shared->lock);
      }
  }
  if (why)
    log_pending (self, "warning: %s", why);
  self->tag = tag;
  self->trainer = kilt_trainer_new (model, data, config, on_event, tag);
  self->running = TRUE;
  self->paused = FALSE;
  kilt_trainer_start (self->trainer);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_RUNNING]);
  return TRUE;
}

gboolean
kilt_session_start_compare (KiltSession *self, const char *const *device_ids,
                            const char *model_json, const KiltDataSpec *data,
                            KiltDataset *first_data, const KiltTrainConfig *config,
                            const char *db_path, const char *tag_name, GError **error)
{
  RunTag *tag;
  /* Meant for this sequence only, whether or not it starts. */
  g_autofree char *resume_from = g_steal_pointer (&self->resume_from);

  g_return_val_if_fail (KILT_IS_SESSION (self), FALSE);
  if (self->running)
    {
      kilt_dataset_free (first_data);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "A run is already going on; stop it first");
      return FALSE;
    }
  if (device_ids == NULL || device_ids[0] == NULL)
    {
      kilt_dataset_free (first_data);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "Choose at least one device");
      return FALSE;
    }
  tag = begin_run (self);
  tag->sequence = TRUE;
  {
    g_autofree char *why = NULL;
    if (use_worker (&why))
      {
        KiltWorkerJob job = { 0 };
        gboolean ok;

        job.model_json = g_strdup (model_json);
        kilt_data_spec_copy (&job.data, data);
        kilt_train_config_copy (&job.config, config);
        /* Each run of a comparison is on one of @device_ids. */
        g_clear_pointer (&job.config.devices, g_strfreev);
        job.db_path = g_strdup (db_path);
        job.keep_weights = self->keep_weights;
        job.device_ids = g_strdupv ((char **)device_ids);
        job.tag = g_strdup (tag_name);
        job.resume_from = g_strdup (resume_from);
        /* The worker loads its own copy. */
        kilt_dataset_free (first_data);
        ok = start_worker (self, tag, &job, error);
        if (!ok)
          run_tag_free (tag);
        kilt_worker_job_clear (&job);
        return ok;
      }
    log_pending (self, "warning: %s", why);
  }
  self->tag = tag;
  self->compare = kilt_compare_new (device_ids, model_json, data, config, db_path, tag_name,
                                    on_compare_event, tag);
  if (first_data)
    kilt_compare_set_first_dataset (self->compare, first_data);
  kilt_compare_set_keep_weights (self->compare, self->keep_weights);
  kilt_compare_set_resume_from (self->compare, resume_from);
  self->running = TRUE;
  self->paused = FALSE;
  kilt_compare_start (self->compare);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_RUNNING]);
  return TRUE;
}

void
kilt_session_set_data_spec (KiltSession *self, const KiltDataSpec *spec)
{
  g_return_if_fail (KILT_IS_SESSION (self));
  kilt_data_spec_clear (&self->next_spec);
  if (spec && spec->source)
    kilt_data_spec_copy (&self->next_spec, spec);
}

void
kilt_session_set_keep_weights (KiltSession *self, gboolean keep)
{
  g_return_if_fail (KILT_IS_SESSION (self));
  self->keep_weights = keep;
}

void
kilt_session_set_resume_from (KiltSession *self, const char *checkpoint)
{
  g_return_if_fail (KILT_IS_SESSION (self));
  g_free (self->resume_from);
  self->resume_from = g_strdup (checkpoint);
}

void
kilt_session_pause (KiltSession *self)
{
  g_return_if_fail (KILT_IS_SESSION (self));
  if (!self->running || self->paused)
    return;
  if (self->trainer)
    kilt_trainer_pause (self->trainer);
  if (self->compare)
    kilt_compare_pause (self->compare);
  if (self->worker)
    kilt_worker_client_pause (self->worker);
  self->paused = TRUE;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PAUSED]);
}

void
kilt_session_resume (KiltSession *self)
{
  g_return_if_fail (KILT_IS_SESSION (self));
  if (!self->running || !self->paused)
    return;
  if (self->trainer)
    kilt_trainer_resume (self->trainer);
  if (self->compare)
    kilt_compare_resume (self->compare);
  if (self->worker)
    kilt_worker_client_resume (self->worker);
  self->paused = FALSE;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PAUSED]);
}

void
kilt_session_stop (KiltSession *self)
{
  g_return_if_fail (KILT_IS_SESSION (self));
  if (self->running && self->trainer)
    kilt_trainer_stop (self->trainer);
  if (self->running && self->compare)
    kilt_compare_stop (self->compare);
  if (self->running && self->worker)
    kilt_worker_client_stop (self->worker);
}

gboolean
kilt_session_is_running (KiltSession *self)
{
  g_return_val_if_fail (KILT_IS_SESSION (self), FALSE);
  return self->running;
}

gboolean
kilt_session_is_paused (KiltSession *self)
{
  g_return_val_if_fail (KILT_IS_SESSION (self), FALSE);
  return self->paused;
}

double
kilt_session_elapsed (KiltSession *self)
{
  g_return_val_if_fail (KILT_IS_SESSION (self), 0);
  if (self->start_us == 0)
    return 0;
  return ((self->end_us ? self->end_us : g_get_monotonic_time ()) - self->start_us) / 1e6;
}

static void
kilt_session_dispose (GObject *object)
{
  KiltSession *self = KILT_SESSION (object);

  if (self->trainer)
    {
      /* Last resort (the window asks before closing): stop and wait, dropping late events. */
      g_mutex_lock (&self->shared->lock);
      self->shared->generation++;
      g_mutex_unlock (&self->shared->lock);
      kilt_trainer_stop (self->trainer);
      kilt_trainer_join (self->trainer);
      kilt_trainer_free (self->trainer);
      self->trainer = NULL;
      g_clear_pointer (&self->tag, run_tag_free);
    }
  if (self->compare)
    {
      g_mutex_lock (&self->shared->lock);
      self->shared->generation++;
      g_mutex_unlock (&self->shared->lock);
      kilt_compare_stop (self->compare);
      kilt_compare_join (self->compare);
      g_clear_pointer (&self->compare, kilt_compare_free);
      g_clear_pointer (&self->tag, run_tag_free);
    }
  if (self->worker)
    {
      /* The worker is asked to stop and left to record its run's end; nothing waits here. */
      g_mutex_lock (&self->shared->lock);
      self->shared->generation++;
      g_mutex_unlock (&self->shared->lock);
      g_clear_pointer (&self->worker, kilt_worker_client_free);
      g_clear_pointer (&self->tag, run_tag_free);
    }
  G_OBJECT_CLASS (kilt_session_parent_class)->dispose (object);
}

static void
kilt_session_finalize (GObject *object)
{
  KiltSession *self = KILT_SESSION (object);

  g_ptr_array_unref (self->external_tags);
  kilt_data_spec_clear (&self->next_spec);
  g_free (self->resume_from);
  shared_unref (self->shared);
  G_OBJECT_CLASS (kilt_session_parent_class)->finalize (object);
}

static void
kilt_session_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KiltSession *self = KILT_SESSION (object);

  switch (prop_id)
    {
      case PROP_RUNNING:
        g_value_set_boolean (value, self->running);
        break;
      case PROP_PAUSED:
        g_value_set_boolean (value, self->paused);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
kilt_session_class_init (KiltSessionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = kilt_session_dispose;
  object_class->finalize = kilt_session_finalize;
  object_class->get_property = kilt_session_get_property;

  props[PROP_RUNNING]
      = g_param_spec_boolean ("running", NULL, NULL, FALSE,
                              G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_PAUSED]
      = g_param_spec_boolean ("paused", NULL, NULL, FALSE,
                              G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  /* update (KiltSessionUpdate *): on the main thread, at most ~10 times a second. */
  signals[SIGNAL_UPDATE] = g_signal_new ("update", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);
}

static void
kilt_session_init (KiltSession *self)
{
  self->external_tags = g_ptr_array_new_with_free_func (run_tag_free);
  self->shared = g_new0 (Shared, 1);
  g_atomic_ref_count_init (&self->shared->ref);
  g_mutex_init (&self->shared->lock);
  self->shared->main_context = g_main_context_ref_thread_default ();
  g_weak_ref_init (&self->shared->session, self);
  update_init (&self->shared->pending);
}

KiltSession *
kilt_session_new (void)
{
  return g_object_new (KILT_TYPE_SESSION, NULL);
}
