/* kilt-cli worker: one training run (or a sequence) for a window, driven over stdin/stdout. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-cli-worker"

#include "config.h"

#include "kilt-cli.h"
#include "kilt-breadcrumb.h"
#include "kilt-compare.h"
#include "kilt-context.h"
#include "kilt-error.h"
#include "kilt-evaluation.h"
#include "kilt-ids.h"
#include "kilt-json-limits.h"
#include "kilt-model-json.h"
#include "kilt-run-recorder.h"
#include "kilt-worker-protocol.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Commands arrive on a reader thread; the main thread loads and runs; the trainer's threads
 * write events. One lock covers the run's handles and stdout. */
typedef struct
{
  GMutex lock;
  GCond cond;
  KiltWorkerJob job;
  gboolean have_job, eof, stop, paused;
  KiltTrainer *trainer;
  KiltCompare *compare;
  GCancellable *cancel; /* data loading */
  KiltRunRecorder *recorder;
  gint64 last_progress_us;
  gboolean done; /* the run is over: the heartbeat ends */
} Worker;

/* Pause, resume and stop go to whichever run there is; a stop also ends data loading.
 * Called with the lock held. */
static void
apply_pause (Worker *w)
{
  if (w->trainer)
    (w->paused ? kilt_trainer_pause : kilt_trainer_resume) (w->trainer);
  if (w->compare)
    (w->paused ? kilt_compare_pause : kilt_compare_resume) (w->compare);
}

static void
apply_stop (Worker *w)
{
  w->stop = TRUE;
  if (w->trainer)
    kilt_trainer_stop (w->trainer);
  if (w->compare)
    kilt_compare_stop (w->compare);
  g_cancellable_cancel (w->cancel);
}

/* The run commands go to from now on (NULL, NULL: none); a pause or stop that came before it
 * existed applies at once. */
static void
attach_run (Worker *w, KiltTrainer *trainer, KiltCompare *compare)
{
  g_mutex_lock (&w->lock);
  w->trainer = trainer;
  w->compare = compare;
  if (w->paused)
    apply_pause (w);
  if (w->stop)
    apply_stop (w);
  g_mutex_unlock (&w->lock);
}

/* Writes one line; a window that went away makes the run stop. Called with the lock held. */
static void
emit_line (Worker *w, const char *line)
{
  if (fputs (line, stdout) < 0 || fputc ('\n', stdout) < 0 || fflush (stdout) != 0)
    {
      if (!w->stop)
        apply_stop (w);
    }
}

static void
emit_event (Worker *w, const KiltEvent *ev, const KiltCompareEvent *ce, gint64 run_id)
{
  JsonBuilder *b = kilt_worker_event_begin (ev);
  g_autofree char *line = NULL;

  if (run_id)
    {
      json_builder_set_member_name (b, "run_id");
      json_builder_add_int_value (b, run_id);
    }
  /* When it left, on the clock every process shares (CLOCK_MONOTONIC): the window can tell
   * how late events arrive. */
  json_builder_set_member_name (b, "t_us");
  json_builder_add_int_value (b, g_get_monotonic_time ());
  if (ce)
    {
      json_builder_set_member_name (b, "index");
      json_builder_add_int_value (b, ce->index);
      json_builder_set_member_name (b, "n");
      json_builder_add_int_value (b, ce->n_devices);
    }
  line = kilt_worker_event_end (b);
  g_mutex_lock (&w->lock);
  emit_line (w, line);
  g_mutex_unlock (&w->lock);
}

static void
emit_log (Worker *w, GLogLevelFlags level, const char *message)
{
  KiltEvent ev = { .type = KILT_EVENT_LOG, .level = level };

  ev.message = (char *)message;
  emit_event (w, &ev, NULL, 0);
}

/* A run that could not begin: the window gets its end as it would the trainer's. */
static void
emit_failed (Worker *w, const GError *error, KiltRunStatus status)
{
  KiltEvent ev = { .type = KILT_EVENT_FINISHED, .status = status };

  ev.error = (GError *)(status == KILT_RUN_FAILED ? error : NULL);
  ev.test_loss = ev.test_accuracy = NAN;
  emit_event (w, &ev, NULL, 0);
}

/* Drivers may install signal handlers of their own when they load or compile (LLVM's, in
 * PoCL, catch SIGABRT and SIGSEGV and return): ours go back on top once the device is open
 * and after the first steps, so a crash still says where it happened. */
static void
reinstall_handlers (const KiltEvent *ev)
{
  static guint steps_seen;

  if (ev->type == KILT_EVENT_STARTED || (ev->type == KILT_EVENT_STEP && steps_seen++ < 2))
    kilt_breadcrumb_install_handlers (STDERR_FILENO);
}

static void
on_event (const KiltEvent *ev, gpointer user_data)
{
  Worker *w = user_data;

  reinstall_handlers (ev);

  kilt_run_recorder_event (w->recorder, ev);
  /* The store missed part of the run (a full disk, say): said before the end shows. */
  if (ev->type == KILT_EVENT_FINISHED && kilt_run_recorder_get_failure (w->recorder))
    emit_log (w, G_LOG_LEVEL_WARNING, kilt_run_recorder_get_failure (w->recorder));
  emit_event (w, ev, NULL, kilt_run_recorder_id (w->recorder));
}

static void
on_compare_event (const KiltCompareEvent *ce, gpointer user_data)
{
  Worker *w = user_data;
  g_autoptr (JsonBuilder) b = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *line = NULL;

  if (ce->event)
    {
      reinstall_handlers (ce->event);
      emit_event (w, ce->event, ce, ce->run_id);
      return;
    }
  b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "event");
  json_builder_add_string_value (b, "sequence_end");
  json_builder_set_member_name (b, "status");
  json_builder_add_string_value (b, kilt_run_status_name (ce->status));
  json_builder_set_member_name (b, "run_ids");
  json_builder_begin_array (b);
  for (guint i = 0; ce->run_ids && i < ce->run_ids->len; i++)
    json_builder_add_int_value (b, g_array_index (ce->run_ids, gint64, i));
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  line = json_to_string (root, FALSE);
  g_mutex_lock (&w->lock);
  emit_line (w, line);
  g_mutex_unlock (&w->lock);
}

/* Loading can take minutes: the window's watchdog hears that it goes on. */
static void
on_data_progress (double fraction, const char *what, gpointer user_data)
{
  Worker *w = user_data;
  gint64 now = g_get_monotonic_time ();
  g_autoptr (JsonBuilder) b = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *line = NULL;

  g_mutex_lock (&w->lock);
  if (now - w->last_progress_us < 200000 && fraction < 1)
    {
      g_mutex_unlock (&w->lock);
      return;
    }
  w->last_progress_us = now;
  b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "event");
  json_builder_add_string_value (b, "progress");
  json_builder_set_member_name (b, "fraction");
  json_builder_add_double_value (b, CLAMP (fraction, 0, 1));
  json_builder_set_member_name (b, "what");
  json_builder_add_string_value (b, what && g_utf8_validate (what, -1, NULL) ? what : "");
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  line = json_to_string (root, FALSE);
  emit_line (w, line);
  g_mutex_unlock (&w->lock);
}

static void
command (Worker *w, const char *line)
{
  g_autoptr (JsonObject) o = NULL;
  g_autoptr (GError) error = NULL;
  const char *cmd;

  if (!kilt_worker_parse_line (line, "kilt-cli worker, command", &o, &error))
    {
      emit_log (w, G_LOG_LEVEL_WARNING, error->message);
      return;
    }
  cmd = json_object_get_string_member_with_default (o, "cmd", "");
  g_mutex_lock (&w->lock);
  if ((strcmp (cmd, "start") == 0 || strcmp (cmd, "evaluate") == 0 || strcmp (cmd, "classify") == 0)
      && !w->have_job)
    {
      if (kilt_worker_job_from_json (o, &w->job, &error))
        w->have_job = TRUE;
    }
  else if (strcmp (cmd, "pause") == 0 || strcmp (cmd, "resume") == 0)
    {
      w->paused = strcmp (cmd, "pause") == 0;
      apply_pause (w);
    }
  else if (strcmp (cmd, "fault") == 0)
    /* Test faults a window's test armed mid-run. */
    kilt_fault_apply (json_object_get_string_member_with_default (o, "faults", ""));
  else if (strcmp (cmd, "stop") == 0)
    apply_stop (w);
  else
    g_set_error (
        &error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
        "kilt-cli worker: command \"%s\" is not start, evaluate or classify (once), pause, "
        "resume, stop or fault",
        cmd);
  g_cond_broadcast (&w->cond);
  g_mutex_unlock (&w->lock);
  if (error)
    {
      emit_log (w, G_LOG_LEVEL_WARNING, error->message);
      /* A start that cannot be read ends the worker's only run before it began. */
      if (strcmp (cmd, "start") == 0 || strcmp (cmd, "evaluate") == 0
          || strcmp (cmd, "classify") == 0)
        {
          g_mutex_lock (&w->lock);
          w->eof = TRUE;
          g_cond_broadcast (&w->cond);
          g_mutex_unlock (&w->lock);
          emit_failed (w, error, KILT_RUN_FAILED);
        }
    }
}

static gpointer
read_commands (gpointer data)
{
  Worker *w = data;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;

  while ((n = getline (&line, &cap, stdin)) >= 0)
    {
      while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
      if (n > 0)
        command (w, line);
    }
  free (line);
  /* The window closed the pipe (or died): nobody is left to watch, so the run stops and is
   * recorded as stopped. */
  g_mutex_lock (&w->lock);
  w->eof = TRUE;
  apply_stop (w);
  g_cond_broadcast (&w->cond);
  g_mutex_unlock (&w->lock);
  return NULL;
}

/* Once a second, while the breadcrumb moves (every layer of every step, validation too), an
 * "alive" line saying where: the window's watchdog counts device progress, not events, so a
 * long validation pass is not taken for a hang, and a stuck driver is. */
static gpointer
heartbeat (gpointer data)
{
  Worker *w = data;
  guint seen = kilt_breadcrumb_count ();

  g_mutex_lock (&w->lock);
  while (!w->done)
    {
      gint64 until = g_get_monotonic_time () + G_USEC_PER_SEC;
      while (!w->done && g_cond_wait_until (&w->cond, &w->lock, until))
        ;
      if (!w->done && kilt_breadcrumb_count () != seen && !w->paused)
        {
          char where[160];
          g_autoptr (JsonBuilder) b = json_builder_new ();
          g_autoptr (JsonNode) root = NULL;
          g_autofree char *line = NULL;

          seen = kilt_breadcrumb_count ();
          kilt_breadcrumb_format (where, sizeof where);
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "event");
          json_builder_add_string_value (b, "alive");
          json_builder_set_member_name (b, "where");
          json_builder_add_string_value (b, g_utf8_validate (where, -1, NULL) ? where : "?");
          json_builder_end_object (b);
          root = json_builder_get_root (b);
          line = json_to_string (root, FALSE);
          emit_line (w, line);
        }
    }
  g_mutex_unlock (&w->lock);
  return NULL;
}

static void
hello (Worker *w)
{
  g_autofree char *line
      = g_strdup_printf ("{\"kilt_worker\":%d,\"kilt\":\"%s\",\"pid\":%d}",
                         KILT_WORKER_PROTOCOL_VERSION, KILT_VERSION, (int)getpid ());
  g_mutex_lock (&w->lock);
  emit_line (w, line);
  g_mutex_unlock (&w->lock);
}

/* As kilt-cli train does: a model that reads ids (an Embedding on its input) needs a CSV's
 * features as written, and the loader standardised them before the model was known, so the
 * data is loaded again without (the job's spec, recorded with the run, says so). *@ds is
 * replaced; FALSE with *@ds NULL when the second load fails. */
static gboolean
reload_for_ids (Worker *w, KiltWorkerJob *job, KiltModel *model, KiltDataset **ds, GError **error)
{
  if (kilt_ids_reader (model) == NULL || (*ds)->type != KILT_SAMPLE_F32 || !(*ds)->feature_mean)
    return TRUE;
  job->data.options.raw_features = TRUE;
  kilt_dataset_free (*ds);
  *ds = kilt_dataset_load (job->data.source, &job->data.options, on_data_progress, w, w->cancel,
                           error);
  if (*ds == NULL)
    g_prefix_error (error,
                    "Cannot load the data again with its ids as written (%s): ", job->data.source);
  return *ds != NULL;
}

/* One run: load, record and train, as kilt-cli train does. */
static void
run_one (Worker *w, KiltWorkerJob *job)
{
  g_autoptr (GError) error = NULL;
  KiltDataset *ds;
  KiltModel *model;
  g_autofree char *warning = NULL;
  KiltTrainer *trainer;

  kilt_breadcrumb_stage ("loading the data");
  ds = kilt_dataset_load (job->data.source, &job->data.options, on_data_progress, w, w->cancel,
                          &error);
  if (ds == NULL)
    {
      g_prefix_error (&error, "Cannot load the data (%s): ", job->data.source);
      emit_failed (w, error,
                   g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ? KILT_RUN_STOPPED
                                                                             : KILT_RUN_FAILED);
      return;
    }
  kilt_breadcrumb_stage ("building the model");
  model = kilt_model_load_json_data (job->model_json, -1, "the window's model", &error);
  if (model && !model->built && !kilt_model_build (model, &error))
    g_clear_pointer (&model, kilt_model_free);
  /* The weights the window's model started from (an imported Keras file's) */
  if (model && !kilt_worker_job_load_weights (job, model, &error))
    g_clear_pointer (&model, kilt_model_free);
  if (model == NULL)
    {
      g_prefix_error (&error, "Cannot build the model: ");
      kilt_dataset_free (ds);
      emit_failed (w, error, KILT_RUN_FAILED);
      return;
    }
  if (!reload_for_ids (w, job, model, &ds, &error))
    {
      kilt_model_free (model);
      emit_failed (w, error, KILT_RUN_FAILED);
      return;
    }
  if (job->keep_weights && job->config.checkpoint_path == NULL)
    {
      job->config.checkpoint_path
          = kilt_run_store_new_checkpoint_path (job->db_path, model->name, &error);
      job->config.resume = FALSE;
      if (job->config.checkpoint_path == NULL)
        {
          g_prefix_error (&error, "Cannot keep the run's weights: ");
          kilt_dataset_free (ds);
          kilt_model_free (model);
          emit_failed (w, error, KILT_RUN_FAILED);
          return;
        }
    }
  w->recorder = kilt_run_recorder_new (job->db_path, model, ds, &job->config, &warning);
  kilt_run_recorder_set_data_spec (w->recorder, &job->data);
  if (warning)
    emit_log (w, G_LOG_LEVEL_WARNING, warning);
  kilt_breadcrumb_stage ("opening the device");
  trainer = kilt_trainer_new (model, ds, &job->config, on_event, w);
  attach_run (w, trainer, NULL);
  kilt_trainer_start (trainer);
  kilt_trainer_join (trainer);
  attach_run (w, NULL, NULL);
  kilt_trainer_free (trainer);
  g_clear_pointer (&w->recorder, kilt_run_recorder_free);
}

/* The end of an evaluate or classify task: @b's object, one line. */
static void
emit_object (Worker *w, JsonBuilder *b)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *line = json_to_string (root, FALSE);

  g_mutex_lock (&w->lock);
  emit_line (w, line);
  g_mutex_unlock (&w->lock);
}

static void
emit_task_error (Worker *w, const GError *error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  kilt_json_add_string (b, "event", "error");
  kilt_json_add_string (b, "message", error->message);
  json_builder_set_member_name (b, "cancelled");
  json_builder_add_boolean_value (
      b, g_error_matches (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED)
             || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
  json_builder_end_object (b);
  emit_object (w, b);
}

/* Evaluate a checkpoint, or classify one file with it: load, run, one answer. */
static void
run_task (Worker *w, KiltWorkerJob *job)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  g_autoptr (KiltModel) model = NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();

  kilt_breadcrumb_stage ("loading the data");
  ds = kilt_dataset_load (job->data.source, &job->data.options, on_data_progress, w, w->cancel,
                          &error);
  if (ds == NULL)
    {
      g_prefix_error (&error, "Cannot load the data (%s): ", job->data.source);
      emit_task_error (w, error);
      return;
    }
  kilt_breadcrumb_stage ("building the model");
  model = kilt_model_load_json_data (job->model_json, -1, "the window's model", &error);
  if (model == NULL || (!model->built && !kilt_model_build (model, &error)))
    {
      g_prefix_error (&error, "Cannot build the model: ");
      emit_task_error (w, error);
      return;
    }
  if (!reload_for_ids (w, job, model, &ds, &error))
    {
      emit_task_error (w, error);
      return;
    }
  kilt_breadcrumb_stage (job->task == KILT_WORKER_TASK_EVALUATE ? "evaluating" : "classifying");
  json_builder_begin_object (b);
  if (job->task == KILT_WORKER_TASK_EVALUATE)
    {
      g_autoptr (KiltEvaluation) ev
          = kilt_evaluation_run (model, ds, &job->config, on_data_progress, w, w->cancel, &error);
      if (ev == NULL)
        {
          emit_task_error (w, error);
          return;
        }
      kilt_json_add_string (b, "event", "evaluation");
      json_builder_set_member_name (b, "evaluation");
      json_builder_add_value (b, kilt_evaluation_to_json (ev, job->max_misclassified));
    }
  else
    {
      g_autofree float *scores = NULL;
      guint n = 0;
      if (!kilt_evaluation_classify_file (model, ds, &job->config, job->file, &scores, &n, &error))
        {
          emit_task_error (w, error);
          return;
        }
      kilt_json_add_string (b, "event", "classified");
      kilt_json_add_string (b, "file", job->file);
      json_builder_set_member_name (b, "scores");
      json_builder_begin_array (b);
      for (guint i = 0; i < n; i++)
        json_builder_add_double_value (b, isfinite (scores[i]) ? scores[i] : 0.0);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "class_names");
      json_builder_begin_array (b);
      for (guint i = 0; i < n; i++)
        kilt_json_add_text (b, i < ds->n_classes ? ds->class_names[i] : "?");
      json_builder_end_array (b);
    }
  json_builder_end_object (b);
  emit_object (w, b);
}

static void
run_sequence (Worker *w, KiltWorkerJob *job)
{
  KiltCompare *compare;

  compare = kilt_compare_new ((const char *const *)job->device_ids, job->model_json, &job->data,
                              &job->config, job->db_path, job->tag, on_compare_event, w);
  kilt_compare_set_keep_weights (compare, job->keep_weights);
  kilt_compare_set_resume_from (compare, job->resume_from);
  attach_run (w, NULL, compare);
  kilt_compare_start (compare);
  kilt_compare_join (compare);
  attach_run (w, NULL, NULL);
  kilt_compare_free (compare);
}

int
kilt_cli_worker (int argc, char **argv)
{
  /* Static: the reader thread may still be in getline () as the process exits. */
  static Worker w;
  g_autoptr (GOptionContext) oc = g_option_context_new (
      "- train for a window: JSON-line commands on stdin, events on stdout");
  g_autoptr (GError) error = NULL;
  GThread *reader, *beat;

  g_option_context_set_description (
      oc, "The first line out says {\"kilt_worker\": VERSION}. Commands, one JSON object a line:\n"
          "{\"cmd\":\"start\", \"model_json\", \"data\", \"config\", \"db\", \"keep_weights\","
          " \"devices\", \"tag\", \"resume_from\"}, {\"cmd\":\"pause\"}, {\"cmd\":\"resume\"},"
          " {\"cmd\":\"stop\"}; or {\"cmd\":\"evaluate\", ..., \"max_misclassified\"} or"
          " {\"cmd\":\"classify\", ..., \"file\"}\n(config names the checkpoint), answered by"
          " progress lines and one \"evaluation\", \"classified\" or \"error\" event.\n"
          "Events are kilt-cli train --json's, with run_id (and index, n in"
          " a sequence),\nthen the worker exits. A crash writes \"kilt-worker: crashed: SIGNAL"
          " during WHERE\" to stderr.");
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      fprintf (stderr, "kilt-cli worker: %s\n", error->message);
      return 2;
    }
  /* A window that died must not kill the run's record with SIGPIPE: writes fail instead and
   * the run stops. */
  signal (SIGPIPE, SIG_IGN);
  kilt_breadcrumb_install_handlers (STDERR_FILENO);
  g_mutex_init (&w.lock);
  g_cond_init (&w.cond);
  w.cancel = g_cancellable_new ();
  hello (&w);
  reader = g_thread_new ("kilt-worker-stdin", read_commands, &w);
  beat = g_thread_new ("kilt-worker-heartbeat", heartbeat, &w);

  g_mutex_lock (&w.lock);
  while (!w.have_job && !w.eof)
    g_cond_wait (&w.cond, &w.lock);
  g_mutex_unlock (&w.lock);
  if (w.have_job && w.job.task != KILT_WORKER_TASK_TRAIN)
    run_task (&w, &w.job);
  else if (w.have_job && w.stop)
    emit_failed (&w, NULL, KILT_RUN_STOPPED);
  else if (w.have_job && w.job.device_ids)
    run_sequence (&w, &w.job);
  else if (w.have_job)
    run_one (&w, &w.job);
  kilt_breadcrumb_stage ("exiting");
  g_mutex_lock (&w.lock);
  w.done = TRUE;
  g_cond_broadcast (&w.cond);
  g_mutex_unlock (&w.lock);
  g_thread_join (beat);
  /* The reader thread may sit in getline () for ever: the process ends without it. */
  g_thread_unref (reader);
  fflush (stdout);
  return 0;
}
