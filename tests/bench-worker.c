/* Not a test: one configuration trained in this process's trainer thread and in a worker
 * process, for the worker's overhead per step and the latency of its events.
 * bench-worker [model] [samples] [epochs] [batch] (KILT_CLI names the kilt-cli to run). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-model-json.h"
#include "kilt-worker-client.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct
{
  double seconds; /* epochs after the first, summed */
  guint steps;
  guint epochs;
  double latency_sum_ms, latency_max_ms;
  guint latency_n;
  gboolean over;
  KiltRunStatus status;
} Tally;

static void
count (Tally *t, const KiltEvent *ev, guint steps_per_epoch)
{
  if (ev->type == KILT_EVENT_EPOCH && ++t->epochs > 1)
    {
      t->seconds += ev->epoch_seconds;
      t->steps += steps_per_epoch;
    }
  if (ev->type == KILT_EVENT_FINISHED)
    t->status = ev->status;
}

static guint steps_per_epoch;

static void
on_thread_event (const KiltEvent *ev, gpointer data)
{
  if (ev->type == KILT_EVENT_STARTED)
    steps_per_epoch = ev->steps_per_epoch;
  count (data, ev, steps_per_epoch);
}

static void
on_worker (const KiltWorkerMessage *m, gpointer data)
{
  Tally *t = data;

  if (m->sequence_end || m->event == NULL)
    return;
  if (m->event->type == KILT_EVENT_STARTED)
    steps_per_epoch = m->event->steps_per_epoch;
  if (m->latency_us >= 0)
    {
      t->latency_sum_ms += m->latency_us / 1e3;
      t->latency_max_ms = MAX (t->latency_max_ms, m->latency_us / 1e3);
      t->latency_n++;
    }
  count (t, m->event, steps_per_epoch);
}

int
main (int argc, char **argv)
{
  const char *model_name = argc > 1 ? argv[1] : "lenet5";
  guint samples = argc > 2 ? (guint)atoi (argv[2]) : 2048;
  guint epochs = argc > 3 ? (guint)atoi (argv[3]) : 4;
  guint batch = argc > 4 ? (guint)atoi (argv[4]) : 32;
  g_autoptr (GError) error = NULL;
  KiltContext *ctx = kilt_test_context ();
  KiltLoadOptions o;
  KiltWorkerJob job = { 0 };
  Tally thread = { 0 }, worker = { 0 };
  g_autofree char *dir = NULL, *db = NULL;

  if (ctx == NULL)
    return 77;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  kilt_load_options_init (&o);
  o.max_samples = samples;
  kilt_data_spec_init (&job.data, "sample", &o);
  job.config = kilt_train_config_default ();
  job.config.device_id = g_strdup (ctx->info->id);
  job.config.epochs = epochs;
  job.config.batch = batch;
  job.config.profile = TRUE;
  job.db_path = g_strdup (db);

  for (int rep = 0; rep < 2; rep++)
    {
      /* The thread, as the window ran it before. */
      KiltDataset *ds = kilt_dataset_load ("sample", &o, NULL, NULL, NULL, &error);
      KiltModel *model
          = ds ? kilt_model_load_preset (model_name, &ds->shape, ds->n_classes, &error) : NULL;
      KiltTrainer *trainer;

      if (model == NULL)
        {
          fprintf (stderr, "bench-worker: %s\n", error->message);
          return 1;
        }
      if (job.model_json == NULL)
        job.model_json = kilt_model_to_json (model);
      thread.epochs = worker.epochs = 0;
      trainer = kilt_trainer_new (model, ds, &job.config, on_thread_event, &thread);
      kilt_trainer_start (trainer);
      kilt_trainer_join (trainer);
      kilt_trainer_free (trainer);

      /* The worker process. */
      {
        KiltWorkerClient *c = kilt_worker_client_new (on_worker, &worker);
        if (!kilt_worker_client_start (c, &job, &error))
          {
            fprintf (stderr, "bench-worker: %s\n", error->message);
            return 1;
          }
        while (kilt_worker_client_is_running (c))
          g_main_context_iteration (NULL, TRUE);
        kilt_worker_client_free (c);
      }
    }
  printf ("%s, %u samples, batch %u, epochs 2-%u of 2 runs each:\n", model_name, samples, batch,
          epochs);
  printf ("  thread: %.3f ms per step (%u steps)\n", thread.seconds * 1e3 / MAX (thread.steps, 1),
          thread.steps);
  printf ("  worker: %.3f ms per step (%u steps); %+.1f%%\n",
          worker.seconds * 1e3 / MAX (worker.steps, 1), worker.steps,
          100
              * (worker.seconds / MAX (worker.steps, 1) / (thread.seconds / MAX (thread.steps, 1))
                 - 1));
  printf ("  worker events: %u, latency mean %.2f ms, max %.2f ms\n", worker.latency_n,
          worker.latency_sum_ms / MAX (worker.latency_n, 1), worker.latency_max_ms);
  kilt_worker_job_clear (&job);
  return thread.status == KILT_RUN_FINISHED && worker.status == KILT_RUN_FINISHED ? 0 : 1;
}
