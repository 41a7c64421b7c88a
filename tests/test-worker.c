/* The training worker (kilt-cli worker) driven as the window drives it: the protocol's
 * encoding, a run, pause/resume/stop, a sequence, crashes by signal with their breadcrumb, a
 * hang ended by the watchdog, and a worker that speaks another protocol. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-model-json.h"
#include "kilt-worker-client.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <string.h>

/* ---- the encoding, no device needed ---- */

static KiltEvent
decode (const char *line)
{
  g_autoptr (JsonObject) o = NULL;
  g_autoptr (GError) error = NULL;
  KiltEvent ev;

  g_assert_true (kilt_worker_parse_line (line, "test", &o, &error));
  g_assert_no_error (error);
  g_assert_true (kilt_worker_event_from_json (o, &ev, &error));
  g_assert_no_error (error);
  return ev;
}

static void
test_encoding (void)
{
  KiltEvent e = { .type = KILT_EVENT_STARTED }, d;
  g_autofree char *line = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) o = NULL;

  e.device_name = "Some GPU";
  e.compile_seconds = 1.5;
  e.planned_bytes = 123456789;
  e.n_params = 11881;
  e.steps_per_epoch = 8;
  e.run_token = G_GUINT64_CONSTANT (0xfedcba9876543210); /* more than a double holds */
  line = kilt_event_to_json (&e);
  d = decode (line);
  g_assert_cmpint (d.type, ==, KILT_EVENT_STARTED);
  g_assert_cmpstr (d.device_name, ==, "Some GPU");
  g_assert_cmpfloat (d.compile_seconds, ==, 1.5);
  g_assert_cmpuint (d.planned_bytes, ==, 123456789);
  g_assert_cmpuint (d.n_params, ==, 11881);
  g_assert_cmpuint (d.steps_per_epoch, ==, 8);
  g_assert_cmpuint (d.run_token, ==, G_GUINT64_CONSTANT (0xfedcba9876543210));
  kilt_worker_event_clear (&d);
  g_clear_pointer (&line, g_free);

  e = (KiltEvent){ .type = KILT_EVENT_EPOCH, .epoch = 3, .step = 8, .global_step = 24 };
  e.loss = 0.25;
  e.accuracy = 0.75;
  e.val_loss = NAN; /* no validation data: null on the wire, NaN again here */
  e.val_accuracy = NAN;
  e.epoch_seconds = 2.5;
  e.busy_percent = 40;
  e.mem.peak[KILT_MEM_ACTIVATIONS] = 4096;
  e.mem.peak_total = 8192;
  line = kilt_event_to_json (&e);
  g_assert_nonnull (strstr (line, "\"val_loss\":null"));
  d = decode (line);
  g_assert_cmpuint (d.epoch, ==, 3);
  g_assert_cmpuint (d.global_step, ==, 24);
  g_assert_cmpfloat (d.loss, ==, 0.25);
  g_assert_true (isnan (d.val_loss));
  g_assert_cmpfloat (d.epoch_seconds, ==, 2.5);
  g_assert_cmpint (d.mem.peak[KILT_MEM_ACTIVATIONS], ==, 4096);
  g_assert_cmpint (d.mem.peak_total, ==, 8192);
  kilt_worker_event_clear (&d);
  g_clear_pointer (&line, g_free);

  {
    KiltLayerTiming t = { "conv2d_1", "Conv2D", 1.25, 2.5, 0.125, "igemm", { { 1, 2 }, { 3, 4 } } };
    e = (KiltEvent){ .type = KILT_EVENT_TIMINGS };
    e.timings = g_array_new (FALSE, FALSE, sizeof t);
    g_array_append_val (e.timings, t);
    line = kilt_event_to_json (&e);
    g_array_unref (e.timings);
    d = decode (line);
    g_assert_cmpuint (d.timings->len, ==, 1);
    g_assert_cmpstr (g_array_index (d.timings, KiltLayerTiming, 0).layer, ==, "conv2d_1");
    g_assert_cmpstr (g_array_index (d.timings, KiltLayerTiming, 0).algo, ==, "igemm");
    g_assert_cmpfloat (g_array_index (d.timings, KiltLayerTiming, 0).backward_ms, ==, 2.5);
    g_assert_cmpfloat (g_array_index (d.timings, KiltLayerTiming, 0).algo_ms[1][0], ==, 3);
    kilt_worker_event_clear (&d);
    g_clear_pointer (&line, g_free);
  }

  e = (KiltEvent){ .type = KILT_EVENT_FINISHED, .status = KILT_RUN_FAILED };
  e.error = g_error_new_literal (KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY, "no room");
  e.test_loss = e.test_accuracy = NAN;
  line = kilt_event_to_json (&e);
  g_clear_error (&e.error);
  d = decode (line);
  g_assert_cmpint (d.status, ==, KILT_RUN_FAILED);
  g_assert_error (d.error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_assert_cmpstr (d.error->message, ==, "no room");
  kilt_worker_event_clear (&d);

  /* What is not an event says which member is wrong. */
  g_assert_false (kilt_worker_parse_line ("[1,2]", "test", &o, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_true (kilt_worker_parse_line ("{\"event\":\"bogus\"}", "test", &o, &error));
  g_assert_false (kilt_worker_event_from_json (o, &d, &error));
  g_assert_nonnull (strstr (error->message, "\"bogus\""));
  g_clear_error (&error);
  g_clear_pointer (&o, json_object_unref);
  g_assert_true (
      kilt_worker_parse_line ("{\"event\":\"finished\",\"status\":\"x\"}", "t", &o, &error));
  g_assert_false (kilt_worker_event_from_json (o, &d, &error));
  g_assert_nonnull (strstr (error->message, "status"));
  g_clear_error (&error);
}

/* A run on several devices: each device's share, speed, busy figure and memory, and the
 * calibration's step times, reach the window. */
static void
test_replicas_encoding (void)
{
  KiltReplicaShare shares[2] = {
    { "GPU", 120, 5.0, 24000, 91.5, 1 << 20, 2 << 20 },
    { "CPU \"quoted\"", 8, 5.2, 1538.5, NAN, -1, -1 },
  };
  KiltEvent e = { .type = KILT_EVENT_EPOCH, .epoch = 1, .n_replicas = 2, .replicas = shares };
  g_autofree char *line = NULL;
  KiltEvent d;

  e.n_ranks = 1;
  e.reduce_ms = 0.5;
  e.dist_step_ms = 5.5;
  e.alone_step_ms = 6.25;
  e.val_loss = e.val_accuracy = e.busy_percent = NAN;
  line = kilt_event_to_json (&e);
  d = decode (line);
  g_assert_cmpuint (d.n_replicas, ==, 2);
  g_assert_cmpstr (d.replicas[0].device_name, ==, "GPU");
  g_assert_cmpstr (d.replicas[1].device_name, ==, "CPU \"quoted\"");
  g_assert_cmpuint (d.replicas[0].share, ==, 120);
  g_assert_cmpuint (d.replicas[1].share, ==, 8);
  g_assert_cmpfloat (d.replicas[0].samples_per_second, ==, 24000);
  g_assert_cmpfloat (d.replicas[0].busy_percent, ==, 91.5);
  g_assert_true (isnan (d.replicas[1].busy_percent));
  g_assert_cmpint (d.replicas[0].peak_bytes, ==, 2 << 20);
  g_assert_cmpint (d.replicas[1].live_bytes, ==, -1);
  g_assert_cmpfloat (d.dist_step_ms, ==, 5.5);
  g_assert_cmpfloat (d.alone_step_ms, ==, 6.25);
  g_assert_cmpfloat (d.reduce_ms, ==, 0.5);
  kilt_worker_event_clear (&d);
  g_assert_null (d.replicas);
  g_clear_pointer (&line, g_free);

  /* Replicas that are not objects are skipped, not trusted. */
  {
    g_autoptr (JsonObject) o = NULL;
    g_autoptr (GError) error = NULL;
    g_assert_true (kilt_worker_parse_line (
        "{\"event\":\"epoch\",\"replicas\":[1,\"x\",{\"share\":-5}]}", "t", &o, &error));
    g_assert_true (kilt_worker_event_from_json (o, &d, &error));
    g_assert_cmpuint (d.n_replicas, ==, 1);
    g_assert_cmpuint (d.replicas[0].share, ==, 0);
    g_assert_cmpstr (d.replicas[0].device_name, ==, "?");
    kilt_worker_event_clear (&d);
  }
}

static void
test_job_encoding (void)
{
  KiltWorkerJob job = { 0 }, back;
  KiltLoadOptions opts;
  g_autofree char *line = NULL;
  g_autoptr (JsonObject) o = NULL;
  g_autoptr (GError) error = NULL;
  const char *devices[] = { "a", "b", NULL };

  kilt_load_options_init (&opts);
  opts.max_samples = 77;
  kilt_data_spec_init (&job.data, "sample", &opts);
  job.model_json = g_strdup ("{\"format\":\"x\"}");
  job.config = kilt_train_config_default ();
  job.config.epochs = 7;
  job.config.run_name = g_strdup ("name \"quoted\"");
  /* The window's runs go through here: the schedule and smoothing must reach the worker. */
  job.config.opt.schedule.type = KILT_LR_ONE_CYCLE;
  job.config.opt.schedule.start = 0.2f;
  job.config.opt.schedule.peak = 0.23f;
  job.config.opt.schedule.final = 0.05f;
  job.config.label_smoothing = 0.2f;
  job.db_path = g_strdup ("/tmp/x.db");
  job.keep_weights = TRUE;
  job.device_ids = g_strdupv ((char **)devices);
  line = kilt_worker_job_to_json (&job);
  g_assert_null (strchr (line, '\n'));
  g_assert_true (kilt_worker_parse_line (line, "test", &o, &error));
  g_assert_true (kilt_worker_job_from_json (o, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (back.model_json, ==, job.model_json);
  g_assert_cmpstr (back.data.source, ==, "sample");
  g_assert_cmpuint (back.data.options.max_samples, ==, 77);
  g_assert_cmpuint (back.config.epochs, ==, 7);
  g_assert_cmpstr (back.config.run_name, ==, "name \"quoted\"");
  g_assert_cmpint (back.config.opt.schedule.type, ==, KILT_LR_ONE_CYCLE);
  g_assert_cmpfloat (back.config.opt.schedule.start, ==, 0.2f);
  g_assert_cmpfloat (back.config.opt.schedule.peak, ==, 0.23f);
  g_assert_cmpfloat (back.config.opt.schedule.final, ==, 0.05f);
  g_assert_cmpfloat (back.config.label_smoothing, ==, 0.2f);
  g_assert_cmpstr (back.db_path, ==, "/tmp/x.db");
  g_assert_true (back.keep_weights);
  g_assert_cmpuint (g_strv_length (back.device_ids), ==, 2);
  kilt_worker_job_clear (&back);
  kilt_worker_job_clear (&job);
  g_clear_pointer (&o, json_object_unref);
  g_assert_true (kilt_worker_parse_line ("{\"cmd\":\"start\",\"data\":\"{}\",\"config\":\"{}\"}",
                                         "test", &o, &error));
  g_assert_false (kilt_worker_job_from_json (o, &back, &error));
  g_assert_nonnull (strstr (error->message, "model_json"));
  g_clear_error (&error);

  /* An evaluate command keeps its task and bound; one without a checkpoint is refused. */
  g_clear_pointer (&o, json_object_unref);
  g_clear_pointer (&line, g_free);
  job.model_json = g_strdup ("{}");
  kilt_data_spec_init (&job.data, "sample", &opts);
  job.config = kilt_train_config_default ();
  job.task = KILT_WORKER_TASK_EVALUATE;
  job.max_misclassified = 12;
  job.config.checkpoint_path = g_strdup ("/tmp/x.ckpt");
  line = kilt_worker_job_to_json (&job);
  g_assert_nonnull (strstr (line, "\"cmd\":\"evaluate\""));
  g_assert_true (kilt_worker_parse_line (line, "test", &o, &error));
  g_assert_true (kilt_worker_job_from_json (o, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpint (back.task, ==, KILT_WORKER_TASK_EVALUATE);
  g_assert_cmpuint (back.max_misclassified, ==, 12);
  g_assert_cmpstr (back.config.checkpoint_path, ==, "/tmp/x.ckpt");
  kilt_worker_job_clear (&back);
  g_clear_pointer (&job.config.checkpoint_path, g_free);
  g_clear_pointer (&o, json_object_unref);
  g_clear_pointer (&line, g_free);
  job.task = KILT_WORKER_TASK_CLASSIFY;
  job.file = g_strdup ("/tmp/cat.png");
  line = kilt_worker_job_to_json (&job);
  g_assert_true (kilt_worker_parse_line (line, "test", &o, &error));
  g_assert_false (kilt_worker_job_from_json (o, &back, &error));
  g_assert_nonnull (strstr (error->message, "checkpoint_path"));
  kilt_worker_job_clear (&job);
}

/* ---- a worker ---- */

typedef struct
{
  KiltWorkerClient *client;
  guint started, steps, epochs, memory, timings, logs, finished, ends;
  guint steps_after_pause_log; /* STEP events after the worker said it paused */
  gboolean pause_logged;
  KiltRunStatus status, end_status;
  char *error;
  gboolean crashed;
  gint64 run_id;
  GArray *end_ids;
  guint pause_at_step; /* pause at this STEP event (0: never) */
  guint stop_at_step;  /* ... stop */
  double latency_sum_ms, latency_max_ms;
  guint latency_n;
  gint64 finished_us;
} Seen;

static void
on_message (const KiltWorkerMessage *m, gpointer user_data)
{
  Seen *s = user_data;

  if (m->sequence_end)
    {
      s->ends++;
      s->end_status = m->status;
      s->end_ids = g_array_copy ((GArray *)m->run_ids);
      return;
    }
  if (m->latency_us >= 0)
    {
      s->latency_sum_ms += m->latency_us / 1e3;
      s->latency_max_ms = MAX (s->latency_max_ms, m->latency_us / 1e3);
      s->latency_n++;
    }
  if (m->run_id)
    s->run_id = m->run_id;
  switch (m->event->type)
    {
      case KILT_EVENT_STARTED:
        s->started++;
        break;
      case KILT_EVENT_STEP:
        s->steps++;
        if (s->pause_logged)
          s->steps_after_pause_log++;
        if (s->steps == s->pause_at_step)
          kilt_worker_client_pause (s->client);
        if (s->steps == s->stop_at_step)
          kilt_worker_client_stop (s->client);
        break;
      case KILT_EVENT_EPOCH:
        s->epochs++;
        break;
      case KILT_EVENT_MEMORY:
        s->memory++;
        break;
      case KILT_EVENT_TIMINGS:
        g_assert_cmpuint (m->event->timings->len, >, 0);
        s->timings++;
        break;
      case KILT_EVENT_LOG:
        s->logs++;
        if (g_str_has_prefix (m->event->message, "Paused at step"))
          s->pause_logged = TRUE;
        break;
      case KILT_EVENT_FINISHED:
        s->finished++;
        s->status = m->event->status;
        s->crashed = m->crashed;
        g_free (s->error);
        s->error = m->event->error ? g_strdup (m->event->error->message) : NULL;
        s->finished_us = g_get_monotonic_time ();
        break;
    }
}

static gboolean
iterate_until (gboolean (*done) (Seen *), Seen *s, double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64)(seconds * G_USEC_PER_SEC);

  while (!done (s) && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  return done (s);
}

static gboolean
is_over (Seen *s)
{
  return !kilt_worker_client_is_running (s->client);
}

static gboolean
has_paused (Seen *s)
{
  return s->pause_logged;
}

typedef struct
{
  char *dir;
  char *db;
  KiltWorkerJob job;
} Fixture;

/* mlp on 256 samples of the bundled set: 8 steps an epoch. */
static gboolean
fixture_init (Fixture *f, guint epochs)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  g_autoptr (KiltModel) model = NULL;
  KiltLoadOptions o;
  KiltContext *ctx = kilt_test_context ();

  if (ctx == NULL)
    return FALSE;
  memset (f, 0, sizeof *f);
  f->dir = kilt_test_tmpdir ();
  f->db = g_build_filename (f->dir, "runs.db", NULL);
  kilt_load_options_init (&o);
  o.max_samples = 256;
  kilt_data_spec_init (&f->job.data, "sample", &o);
  ds = kilt_dataset_load ("sample", &o, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  model = kilt_model_load_preset ("mlp", &ds->shape, ds->n_classes, &error);
  g_assert_no_error (error);
  f->job.model_json = kilt_model_to_json (model);
  f->job.config = kilt_train_config_default ();
  f->job.config.device_id = g_strdup (ctx->info->id);
  f->job.config.epochs = epochs;
  f->job.config.batch = 32;
  f->job.config.profile = TRUE;
  f->job.config.run_name = g_strdup ("worker test");
  f->job.config.opt = kilt_optimizer_config_default (KILT_OPT_ADAM);
  f->job.db_path = g_strdup (f->db);
  f->job.keep_weights = TRUE;
  return TRUE;
}

static void
fixture_clear (Fixture *f)
{
  kilt_worker_job_clear (&f->job);
  g_free (f->db);
  g_free (f->dir);
}

static gboolean
has_exited (Seen *s)
{
  return kilt_worker_client_get_pid (s->client) == 0;
}

static void
seen_clear (Seen *s)
{
  /* The worker's end and its pipes' closing are read before the client goes, so that nothing
   * is left in flight (LeakSanitizer counts it). */
  g_assert_true (iterate_until (has_exited, s, 30));
  for (int i = 0; i < 50; i++)
    g_main_context_iteration (NULL, FALSE);
  kilt_worker_client_free (s->client);
  g_free (s->error);
  if (s->end_ids)
    g_array_unref (s->end_ids);
}

static KiltRun *
stored_run (Fixture *f, gint64 id)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (f->db, &error);
  KiltRun *run;

  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  return run;
}

static void
start (Seen *s, Fixture *f)
{
  g_autoptr (GError) error = NULL;

  s->client = kilt_worker_client_new (on_message, s);
  g_assert_true (kilt_worker_client_start (s->client, &f->job, &error));
  g_assert_no_error (error);
  g_assert_cmpint (kilt_worker_client_get_pid (s->client), >, 0);
}

static void
test_run (void)
{
  Fixture f;
  Seen s = { 0 };
  g_autoptr (KiltRun) run = NULL;

  if (!fixture_init (&f, 2))
    return;
  start (&s, &f);
  g_assert_true (iterate_until (is_over, &s, 120));
  g_test_message ("%u events; latency mean %.2f ms, max %.2f ms", s.latency_n,
                  s.latency_sum_ms / MAX (s.latency_n, 1), s.latency_max_ms);
  g_assert_null (s.error);
  g_assert_cmpint (s.status, ==, KILT_RUN_FINISHED);
  g_assert_false (s.crashed);
  g_assert_cmpuint (s.started, ==, 1);
  g_assert_cmpuint (s.epochs, ==, 2);
  g_assert_cmpuint (s.steps, >, 0);
  g_assert_cmpuint (s.memory, >, 0);
  g_assert_cmpuint (s.timings, >, 0);
  g_assert_cmpuint (s.finished, ==, 1);
  /* The worker recorded the run, as kilt-cli train does. */
  g_assert_cmpint (s.run_id, >, 0);
  run = stored_run (&f, s.run_id);
  g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
  g_assert_cmpuint (run->epochs->len, ==, 2);
  g_assert_cmpstr (run->record.name, ==, "worker test");
  g_assert_nonnull (run->record.config.checkpoint_path);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (run->record.config.checkpoint_path), ==, 2);
  seen_clear (&s);
  fixture_clear (&f);
}

/* A model with imported starting weights (not what the seed gives) and a frozen first layer:
 * both reach the worker, whose checkpoint keeps that layer's weights to the bit while the
 * others trained from theirs. */
static void
test_weights_and_frozen (void)
{
  Fixture f;
  Seen s = { 0 };
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (KiltModel) model = NULL;
  g_autoptr (KiltCheckpoint) ck = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree float *p0 = NULL, *s0 = NULL;
  g_autofree char *weights_file = NULL;
  KiltNode *first = NULL, *last;
  KiltRng rng;

  if (!fixture_init (&f, 1))
    return;
  model = kilt_model_load_json_data (f.job.model_json, -1, "mlp", &error);
  g_assert_no_error (error);
  p0 = g_new (float, model->n_params);
  s0 = g_new (float, model->n_state + 1);
  kilt_rng_init (&rng, 4321);
  for (gsize i = 0; i < model->n_params; i++)
    p0[i] = (float)(kilt_rng_uniform (&rng) - 0.5) * 0.1f;
  for (gsize i = 0; i < model->n_state; i++)
    s0[i] = 1.0f;
  kilt_model_set_weights (model, g_memdup2 (p0, 4 * model->n_params),
                          g_memdup2 (s0, 4 * (model->n_state + 1)), "test weights");
  for (guint i = 0; i < kilt_model_n_nodes (model) && first == NULL; i++)
    if (kilt_model_node (model, i)->n_params)
      first = kilt_model_node (model, i);
  g_assert_nonnull (first);
  kilt_model_set_trainable (model, first->index, FALSE);
  last = kilt_model_output (model);
  g_free (f.job.model_json);
  f.job.model_json = kilt_model_to_json (model);
  g_assert_true (kilt_worker_job_attach_weights (&f.job, model, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (f.job.weights_file, G_FILE_TEST_EXISTS));
  weights_file = g_strdup (f.job.weights_file);
  start (&s, &f);
  g_assert_true (iterate_until (is_over, &s, 120));
  g_assert_null (s.error);
  g_assert_cmpint (s.status, ==, KILT_RUN_FINISHED);
  /* The worker took the file over. */
  g_assert_false (g_file_test (weights_file, G_FILE_TEST_EXISTS));
  run = stored_run (&f, s.run_id);
  ck = kilt_checkpoint_load (run->record.config.checkpoint_path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ck->n_params, ==, model->n_params);
  g_assert_cmpint (
      memcmp (ck->params + first->param_offset, p0 + first->param_offset, 4 * first->n_params), ==,
      0);
  g_assert_cmpint (
      memcmp (ck->params + last->param_offset, p0 + last->param_offset, 4 * last->n_params), !=, 0);
  /* Adam's state for the trainable parameters alone. */
  g_assert_cmpuint (ck->n_opt_state, ==, 2 * model->n_grads);
  seen_clear (&s);
  fixture_clear (&f);
}

/* The window's way to an Embedding model: the worker loads the CSV as the Data page asked
 * (standardised), sees the model read ids, loads it again as written, trains it above chance
 * (28% for the largest class of the test windows) and records the spec that reloads the same
 * way. */
static void
test_embedding_ids (void)
{
  g_autofree char *data
      = g_build_filename (g_getenv ("KILT_SOURCE_DIR"), "tests", "data", "license-words", NULL);
  g_autofree char *model_path = g_build_filename (data, "model.json", NULL);
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GError) error = NULL;
  KiltLoadOptions o;
  Fixture f;
  Seen s = { 0 };

  if (!fixture_init (&f, 10))
    return;
  kilt_data_spec_clear (&f.job.data);
  kilt_load_options_init (&o);
  kilt_data_spec_init (&f.job.data, data, &o);
  g_free (f.job.model_json);
  g_assert_true (g_file_get_contents (model_path, &f.job.model_json, NULL, &error));
  f.job.config.opt.lr = 0.01f;
  f.job.config.seed = 3;
  start (&s, &f);
  g_assert_true (iterate_until (is_over, &s, 120));
  g_assert_null (s.error);
  g_assert_cmpint (s.status, ==, KILT_RUN_FINISHED);
  run = stored_run (&f, s.run_id);
  g_test_message ("test accuracy %.3f", run->test_accuracy);
  g_assert_cmpfloat (run->test_accuracy, >, 0.5);
  g_assert_nonnull (strstr (run->record.data_spec, "\"raw_features\":true"));
  seen_clear (&s);
  fixture_clear (&f);
}

static void
test_pause_resume_stop (void)
{
  Fixture f;
  Seen s = { 0 };
  g_autoptr (KiltRun) run = NULL;
  guint before;

  if (!fixture_init (&f, 400))
    return;
  s.pause_at_step = 2;
  start (&s, &f);
  g_assert_true (iterate_until (has_paused, &s, 60));
  /* Paused: no steps for a while, the worker still there. */
  before = s.steps;
  {
    gint64 end = g_get_monotonic_time () + G_USEC_PER_SEC;
    while (g_get_monotonic_time () < end)
      g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  }
  g_assert_cmpuint (s.steps_after_pause_log, ==, 0);
  g_assert_true (kilt_worker_client_is_running (s.client));
  s.stop_at_step = before + 3;
  kilt_worker_client_resume (s.client);
  g_assert_true (iterate_until (is_over, &s, 120));
  g_assert_cmpuint (s.steps, >=, before + 3);
  g_assert_cmpint (s.status, ==, KILT_RUN_STOPPED);
  g_assert_false (s.crashed);
  run = stored_run (&f, s.run_id);
  g_assert_cmpint (run->status, ==, KILT_RUN_STOPPED);
  seen_clear (&s);
  fixture_clear (&f);
}

/* A driver that faults in step 12 (epoch 2 of 8-step epochs): the worker dies of the signal,
 * its handler said where, the run is recorded as failed with that, and it can be resumed. */
static void
crash (KiltFaultKind kind, const char *signal_text)
{
  Fixture f;
  Seen s = { 0 };
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GError) error = NULL;

  if (!fixture_init (&f, 3))
    return;
  kilt_fault_set (kind, 12);
  start (&s, &f);
  /* The fault went to the worker, not this process. */
  g_assert_null (kilt_fault_take ());
  g_assert_true (iterate_until (is_over, &s, 120));
  g_test_message ("shown: %s", s.error);
  g_assert_true (s.crashed);
  g_assert_cmpint (s.status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (s.error, signal_text));
  /* The breadcrumb: a layer's backward pass, step 12 of epoch 2. */
  g_assert_nonnull (strstr (s.error, " backward, step 12 (epoch 2)"));
  g_assert_cmpint (s.run_id, >, 0);
  run = stored_run (&f, s.run_id);
  g_assert_cmpint (run->status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (run->error_message, signal_text));
  g_assert_nonnull (strstr (run->error_message, "backward, step 12"));
  /* Epoch 1's checkpoint is kept, and the run can go on from it. */
  g_assert_cmpuint (kilt_test_checkpoint_epochs (run->record.config.checkpoint_path), ==, 1);
  g_assert_true (kilt_run_can_resume (run, &error));
  g_assert_no_error (error);
  seen_clear (&s);
  fixture_clear (&f);
}

static void
test_crash_segv (void)
{
  crash (KILT_FAULT_SEGV, "crashed: SIGSEGV during ");
}

static void
test_crash_abort (void)
{
  crash (KILT_FAULT_ABORT, "crashed: SIGABRT during ");
}

static void
test_hang (void)
{
  Fixture f;
  Seen s = { 0 };
  g_autoptr (KiltRun) run = NULL;
  gint64 t0;

  if (!fixture_init (&f, 3))
    return;
  g_setenv ("KILT_WORKER_WATCHDOG", "2", TRUE);
  kilt_fault_set (KILT_FAULT_HANG, 12);
  start (&s, &f);
  t0 = g_get_monotonic_time ();
  g_assert_true (iterate_until (is_over, &s, 60));
  g_unsetenv ("KILT_WORKER_WATCHDOG");
  g_test_message ("shown after %.1f s: %s", (g_get_monotonic_time () - t0) / 1e6, s.error);
  g_assert_true (s.crashed);
  g_assert_nonnull (strstr (s.error, "hung: no progress for "));
  g_assert_nonnull (strstr (s.error, "backward, step 12 (epoch 2)"));
  g_assert_nonnull (strstr (s.error, "the worker was ended"));
  run = stored_run (&f, s.run_id);
  g_assert_cmpint (run->status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (run->error_message, "hung: "));
  seen_clear (&s);
  fixture_clear (&f);
}

static gboolean
has_epoch (Seen *s)
{
  return s->epochs >= 1 && s->steps > 0;
}

/* The out-of-memory killer's way: SIGKILL, which no handler sees. The window still says what
 * ended the worker and after which step, from the events it had. */
static void
test_killed (void)
{
  Fixture f;
  Seen s = { 0 };
  g_autoptr (KiltRun) run = NULL;

  if (!fixture_init (&f, 400))
    return;
  start (&s, &f);
  g_assert_true (iterate_until (has_epoch, &s, 60));
  g_assert_cmpint (kill (kilt_worker_client_get_pid (s.client), SIGKILL), ==, 0);
  g_assert_true (iterate_until (is_over, &s, 30));
  g_test_message ("shown: %s", s.error);
  g_assert_true (s.crashed);
  g_assert_true (g_str_has_prefix (s.error, "The training worker was killed: SIGKILL "));
  g_assert_nonnull (strstr (s.error, "out-of-memory killer"));
  run = stored_run (&f, s.run_id);
  g_assert_cmpint (run->status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (run->error_message, "SIGKILL"));
  seen_clear (&s);
  fixture_clear (&f);
}

/* The window goes while its worker trains (closed, or died): the worker's stdin closes, and
 * it stops the run and records that by itself. */
static void
test_window_gone (void)
{
  Fixture f;
  Seen s = { 0 };
  gint64 id, end;
  KiltRunStatus status = KILT_RUN_RUNNING;

  if (!fixture_init (&f, 400))
    return;
  start (&s, &f);
  g_assert_true (iterate_until (has_epoch, &s, 60));
  id = s.run_id;
  g_assert_cmpint (id, >, 0);
  kilt_worker_client_free (g_steal_pointer (&s.client));
  end = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (status == KILT_RUN_RUNNING && g_get_monotonic_time () < end)
    {
      g_autoptr (KiltRun) run = stored_run (&f, id);
      status = run->status;
      for (int i = 0; i < 20; i++)
        g_main_context_iteration (NULL, FALSE);
      g_usleep (20000);
    }
  g_assert_cmpint (status, ==, KILT_RUN_STOPPED);
  g_free (s.error);
  fixture_clear (&f);
}

/* Compare devices through the worker: the test device twice, then a resume of the first. */
static void
test_sequence (void)
{
  Fixture f;
  Seen s = { 0 };
  const char *ids[3];

  if (!fixture_init (&f, 1))
    return;
  ids[0] = ids[1] = f.job.config.device_id;
  ids[2] = NULL;
  f.job.device_ids = g_strdupv ((char **)ids);
  f.job.tag = g_strdup ("compare-test");
  start (&s, &f);
  g_assert_true (iterate_until (is_over, &s, 120));
  g_assert_cmpuint (s.ends, ==, 1);
  g_assert_cmpuint (s.started, ==, 2);
  g_assert_cmpuint (s.finished, ==, 2);
  g_assert_cmpint (s.end_status, ==, KILT_RUN_FINISHED);
  g_assert_cmpuint (s.end_ids->len, ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      g_autoptr (KiltRun) run = stored_run (&f, g_array_index (s.end_ids, gint64, i));
      g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
    }
  seen_clear (&s);
  fixture_clear (&f);
}

/* A start the worker cannot read ends with a failed run naming what was wrong. */
static void
test_bad_model (void)
{
  Fixture f;
  Seen s = { 0 };

  if (!fixture_init (&f, 1))
    return;
  g_free (f.job.model_json);
  f.job.model_json = g_strdup ("{\"format\": 12}");
  start (&s, &f);
  g_assert_true (iterate_until (is_over, &s, 60));
  g_assert_cmpint (s.status, ==, KILT_RUN_FAILED);
  g_assert_false (s.crashed);
  g_assert_true (g_str_has_prefix (s.error, "Cannot build the model: "));
  seen_clear (&s);
  fixture_clear (&f);
}

/* A kilt-cli of another Kilt: refused by its first line, not misread. */
static void
test_other_version (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *script = g_build_filename (dir, "kilt-cli", NULL);
  g_autofree char *old = g_strdup (g_getenv ("KILT_CLI"));
  KiltWorkerJob job = { 0 };
  Seen s = { 0 };
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (
      script, "#!/bin/sh\necho '{\"kilt_worker\":999}'\nexec sleep 30\n", -1, NULL));
  g_chmod (script, 0755);
  g_setenv ("KILT_CLI", script, TRUE);
  kilt_data_spec_init (&job.data, "sample", NULL);
  job.model_json = g_strdup ("{}");
  job.config = kilt_train_config_default ();
  s.client = kilt_worker_client_new (on_message, &s);
  g_assert_true (kilt_worker_client_start (s.client, &job, &error));
  g_assert_true (iterate_until (is_over, &s, 20));
  g_setenv ("KILT_CLI", old, TRUE);
  g_assert_cmpint (s.status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (s.error, "speaks worker protocol 999"));
  seen_clear (&s);
  kilt_worker_job_clear (&job);
  /* No program at all: said before anything starts. */
  g_setenv ("KILT_CLI", "/nonexistent/kilt-cli", TRUE);
  g_assert_null (kilt_worker_find_cli (&error));
  g_assert_nonnull (strstr (error->message, "/nonexistent/kilt-cli"));
  g_setenv ("KILT_CLI", old, TRUE);
}

/* ---- evaluate and classify ---- */

typedef struct
{
  KiltWorkerClient *client;
  guint progress, ends;
  KiltEvaluation *evaluation;
  float *scores;
  guint n_scores;
  char *first_class;
  char *error;
  gboolean cancelled, crashed;
} TaskSeen;

static void
on_task_message (const KiltWorkerMessage *m, gpointer user_data)
{
  TaskSeen *t = user_data;
  g_autoptr (GError) error = NULL;

  if (m->progress)
    {
      g_assert_cmpfloat (m->fraction, >=, 0);
      g_assert_cmpfloat (m->fraction, <=, 1);
      t->progress++;
      return;
    }
  if (m->event && m->event->type == KILT_EVENT_FINISHED)
    {
      t->ends++;
      t->crashed = m->crashed;
      t->error = g_strdup (m->event->error ? m->event->error->message : "?");
      return;
    }
  if (!m->task_end)
    return;
  t->ends++;
  if (m->task_error)
    {
      t->error = g_strdup (m->task_error->message);
      t->cancelled
          = g_error_matches (m->task_error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED);
    }
  if (m->evaluation)
    {
      g_autoptr (JsonNode) node = kilt_evaluation_to_json (m->evaluation, G_MAXUINT);
      t->evaluation = kilt_evaluation_from_json (node, &error);
      g_assert_no_error (error);
    }
  if (m->scores)
    {
      t->scores = g_memdup2 (m->scores, sizeof (float) * m->n_scores);
      t->n_scores = m->n_scores;
      t->first_class = g_strdup (m->class_names[0]);
    }
}

static gboolean
task_over (TaskSeen *t)
{
  return !kilt_worker_client_is_running (t->client);
}

static void
run_task (TaskSeen *t, Fixture *f)
{
  g_autoptr (GError) error = NULL;
  gint64 end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  memset (t, 0, sizeof *t);
  t->client = kilt_worker_client_new (on_task_message, t);
  g_assert_true (kilt_worker_client_start (t->client, &f->job, &error));
  g_assert_no_error (error);
  while (!task_over (t) && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_true (task_over (t));
  while (kilt_worker_client_get_pid (t->client) != 0 && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  for (int i = 0; i < 50; i++)
    g_main_context_iteration (NULL, FALSE);
  g_clear_pointer (&t->client, kilt_worker_client_free);
}

static void
task_clear (TaskSeen *t)
{
  kilt_evaluation_free (t->evaluation);
  g_free (t->scores);
  g_free (t->first_class);
  g_free (t->error);
}

/* A trained checkpoint evaluated by the worker gives what the engine gives in this process;
 * one image file is classified; a missing checkpoint is an error naming it, not a crash. */
static void
test_evaluate (void)
{
  Fixture f;
  Seen s = { 0 };
  TaskSeen t;
  g_autofree char *ck = NULL, *png = NULL;
  g_autoptr (KiltEvaluation) here = NULL;
  g_autoptr (GError) error = NULL;

  if (!fixture_init (&f, 1))
    return;
  ck = g_build_filename (f.dir, "eval.ckpt", NULL);
  f.job.config.checkpoint_path = g_strdup (ck);
  f.job.keep_weights = FALSE;
  start (&s, &f);
  g_assert_true (iterate_until (is_over, &s, 120));
  g_assert_cmpint (s.status, ==, KILT_RUN_FINISHED);
  seen_clear (&s);

  f.job.task = KILT_WORKER_TASK_EVALUATE;
  f.job.max_misclassified = 5;
  run_task (&t, &f);
  g_assert_null (t.error);
  g_assert_cmpuint (t.ends, ==, 1);
  g_assert_nonnull (t.evaluation);
  {
    g_autoptr (KiltDataset) ds
        = kilt_dataset_load ("sample", &f.job.data.options, NULL, NULL, NULL, &error);
    g_autoptr (KiltModel) model = kilt_model_load_json_data (f.job.model_json, -1, "test", &error);
    g_assert_no_error (error);
    here = kilt_evaluation_run (model, ds, &f.job.config, NULL, NULL, NULL, &error);
    g_assert_no_error (error);

    /* The test image 0 as a file, for classify. */
    {
      g_autoptr (GdkPixbuf) pb
          = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, ds->shape.w, ds->shape.h);
      for (guint y = 0; y < ds->shape.h; y++)
        for (guint x = 0; x < ds->shape.w; x++)
          {
            guint8 *p = gdk_pixbuf_get_pixels (pb) + y * gdk_pixbuf_get_rowstride (pb) + x * 3;
            p[0] = p[1] = p[2] = ds->test.u8[y * ds->shape.w + x];
          }
      png = g_build_filename (f.dir, "first.png", NULL);
      g_assert_true (gdk_pixbuf_save (pb, png, "png", &error, NULL));
    }
  }
  g_test_message ("worker: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " right, %u progress lines",
                  t.evaluation->correct, t.evaluation->n_samples, t.progress);
  g_assert_cmpuint (t.progress, >, 0);
  g_assert_cmpuint (t.evaluation->n_samples, ==, here->n_samples);
  g_assert_cmpuint (t.evaluation->correct, ==, here->correct);
  g_assert_cmpmem (t.evaluation->confusion, sizeof (guint64) * 100, here->confusion,
                   sizeof (guint64) * 100);
  g_assert_cmpuint (t.evaluation->misclassified->len, ==, MIN (5, here->misclassified->len));
  g_assert_cmpuint (g_array_index (t.evaluation->misclassified, KiltMisclassified, 0).index, ==,
                    g_array_index (here->misclassified, KiltMisclassified, 0).index);
  g_assert_cmpstr (t.evaluation->class_names[9], ==, "Ankle boot");
  task_clear (&t);

  f.job.task = KILT_WORKER_TASK_CLASSIFY;
  f.job.file = g_strdup (png);
  run_task (&t, &f);
  g_assert_null (t.error);
  g_assert_cmpuint (t.n_scores, ==, 10);
  g_assert_cmpstr (t.first_class, ==, "T-shirt/top");
  {
    guint best = 0;
    for (guint i = 1; i < 10; i++)
      if (t.scores[i] > t.scores[best])
        best = i;
    g_assert_cmpuint (best, ==, here->predicted[0]);
    g_assert_cmpfloat_with_epsilon (t.scores[best], here->probability[0], 1e-5);
  }
  task_clear (&t);

  g_free (f.job.config.checkpoint_path);
  f.job.config.checkpoint_path = g_build_filename (f.dir, "missing.ckpt", NULL);
  f.job.task = KILT_WORKER_TASK_EVALUATE;
  run_task (&t, &f);
  g_assert_nonnull (t.error);
  g_assert_false (t.crashed);
  g_assert_nonnull (strstr (t.error, "missing.ckpt"));
  task_clear (&t);
  fixture_clear (&f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/worker/encoding", test_encoding);
  g_test_add_func ("/worker/replicas-encoding", test_replicas_encoding);
  g_test_add_func ("/worker/job-encoding", test_job_encoding);
  g_test_add_func ("/worker/run", test_run);
  g_test_add_func ("/worker/weights-and-frozen", test_weights_and_frozen);
  g_test_add_func ("/worker/embedding-ids", test_embedding_ids);
  g_test_add_func ("/worker/evaluate", test_evaluate);
  g_test_add_func ("/worker/pause-resume-stop", test_pause_resume_stop);
  g_test_add_func ("/worker/crash-segv", test_crash_segv);
  g_test_add_func ("/worker/crash-abort", test_crash_abort);
  g_test_add_func ("/worker/hang", test_hang);
  g_test_add_func ("/worker/killed", test_killed);
  g_test_add_func ("/worker/window-gone", test_window_gone);
  g_test_add_func ("/worker/sequence", test_sequence);
  g_test_add_func ("/worker/bad-model", test_bad_model);
  g_test_add_func ("/worker/other-version", test_other_version);
  return g_test_run ();
}
