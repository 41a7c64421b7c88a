/* Run store: round trip, step sampling, a writer killed mid-run, migration, concurrent use. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-error.h"
#include "kilt-run-store-private.h"
#include "kilt-checkpoint.h"
#include "kilt-model-json.h"
#include "kilt-run-recorder.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *
fresh_db (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  return g_build_filename (dir, "sub", "runs.db", NULL);
}

static char *
rand_string (GRand *r, const char *prefix)
{
  return g_strdup_printf ("%s-%08x", prefix, g_rand_int (r));
}

/* A record with every field set to something random, so a field lost or swapped shows. */
static void
make_record (GRand *r, KiltRunRecord *rec)
{
  memset (rec, 0, sizeof *rec);
  rec->name = rand_string (r, "name");
  rec->model_name = rand_string (r, "model");
  rec->model_json = g_strdup_printf ("{\"layers\": [%u, %u]}", g_rand_int (r), g_rand_int (r));
  rec->data_description = rand_string (r, "data");
  rec->data_hash = rand_string (r, "hash");
  rec->data_spec = g_strdup_printf ("{\"source\": \"%08x\"}", g_rand_int (r));
  rec->device_id = rand_string (r, "devid");
  rec->device_name = rand_string (r, "devname");
  rec->device_vendor = rand_string (r, "vendor");
  rec->device_type = rand_string (r, "type");
  rec->device_driver = rand_string (r, "driver");
  rec->device_opencl_version = rand_string (r, "OpenCL");
  rec->kilt_version = rand_string (r, "kilt");
  rec->clblast_version = rand_string (r, "clblast");
  rec->platform_name = rand_string (r, "platform");
  rec->platform_version = rand_string (r, "pv");
  rec->config.device_id = rand_string (r, "cfgdev");
  rec->config.epochs = g_rand_int_range (r, 1, 100);
  rec->config.batch = g_rand_int_range (r, 1, 512);
  rec->config.on_oom = g_rand_boolean (r) ? KILT_ON_OOM_RESUME_SMALLER : KILT_ON_OOM_FAIL;
  rec->config.seed = g_rand_int (r);
  rec->config.val_fraction = (float)g_rand_double (r);
  rec->config.opt.type = (KiltOptimizerType)g_rand_int_range (r, 0, KILT_OPT_N_TYPES);
  rec->config.opt.lr = (float)g_rand_double (r);
  rec->config.opt.momentum = (float)g_rand_double (r);
  rec->config.opt.nesterov = g_rand_boolean (r);
  rec->config.opt.lookahead = g_rand_boolean (r);
  rec->config.opt.rho = (float)g_rand_double (r);
  rec->config.opt.beta1 = (float)g_rand_double (r);
  rec->config.opt.beta2 = (float)g_rand_double (r);
  rec->config.opt.epsilon = (float)g_rand_double_range (r, 1e-9, 1e-5);
  rec->config.opt.decay = (float)g_rand_double (r);
  rec->config.opt.weight_decay = (float)g_rand_double (r);
  rec->config.opt.schedule.type = (KiltLrScheduleType)g_rand_int_range (r, 0, KILT_LR_N_SCHEDULES);
  if (g_rand_boolean (r))
    rec->config.opt.schedule.warmup_epochs = (float)g_rand_double_range (r, 0.1, 5);
  else
    rec->config.opt.schedule.warmup_steps = g_rand_int_range (r, 0, 100000);
  rec->config.opt.schedule.start = (float)g_rand_double (r);
  rec->config.opt.schedule.final = (float)g_rand_double (r);
  rec->config.opt.schedule.peak = (float)g_rand_double (r);
  rec->config.label_smoothing = (float)g_rand_double (r);
  rec->config.translate = g_rand_int_range (r, 0, 5);
  rec->config.tta_flip = g_rand_boolean (r);
  rec->config.alternate_flip = g_rand_boolean (r);
  rec->config.augment = g_rand_boolean (r);
  rec->config.preprocess = g_rand_boolean (r) ? KILT_PREPROCESS_STANDARD : KILT_PREPROCESS_SCALE;
  rec->config.max_train_samples = g_rand_int_range (r, 0, 100000);
  rec->config.checkpoint_path = rand_string (r, "/tmp/ckpt");
  rec->config.resume = g_rand_boolean (r);
  rec->config.run_name = rand_string (r, "runname");
  rec->config.profile = g_rand_boolean (r);
  rec->flops_per_sample = (guint64)g_rand_int (r) * 7;
  rec->n_params = g_rand_int (r);
  rec->train_samples = g_rand_int_range (r, 1, 60000);
  rec->steps_per_epoch = g_rand_int_range (r, 1, 2000);
  rec->compile_seconds = g_rand_double_range (r, 0, 30);
  rec->compile_cached = g_rand_boolean (r);
}

static void
make_epoch (GRand *r, guint epoch, KiltEpochRecord *e)
{
  e->epoch = epoch;
  e->train_loss = g_rand_double_range (r, 0, 3);
  e->train_accuracy = g_rand_double (r);
  /* Every third epoch has no validation figures: NaN must survive the round trip. */
  e->val_loss = epoch % 3 == 0 ? NAN : g_rand_double_range (r, 0, 3);
  e->val_accuracy = epoch % 3 == 0 ? NAN : g_rand_double (r);
  e->wall_seconds = g_rand_double_range (r, 0.5, 100);
  e->elapsed_seconds = epoch * 100.0 + g_rand_double (r);
  e->samples_per_second = g_rand_double_range (r, 10, 10000);
  e->compile_seconds = g_rand_double_range (r, 0, 5);
  e->busy_percent = g_rand_double_range (r, 0, 100);
  e->peak_total = 0;
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    {
      e->peak_bytes[c] = (gint64)g_rand_int (r) * 1000;
      e->peak_total += e->peak_bytes[c];
    }
}

static void
assert_same_real (double a, double b)
{
  if (isnan (a) || isnan (b))
    g_assert_true (isnan (a) && isnan (b));
  else
    g_assert_cmpfloat (a, ==, b);
}

static void
assert_epoch_equal (const KiltEpochRecord *a, const KiltEpochRecord *b)
{
  g_assert_cmpuint (a->epoch, ==, b->epoch);
  assert_same_real (a->train_loss, b->train_loss);
  assert_same_real (a->train_accuracy, b->train_accuracy);
  assert_same_real (a->val_loss, b->val_loss);
  assert_same_real (a->val_accuracy, b->val_accuracy);
  assert_same_real (a->wall_seconds, b->wall_seconds);
  assert_same_real (a->elapsed_seconds, b->elapsed_seconds);
  assert_same_real (a->samples_per_second, b->samples_per_second);
  assert_same_real (a->compile_seconds, b->compile_seconds);
  assert_same_real (a->busy_percent, b->busy_percent);
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    g_assert_cmpint (a->peak_bytes[c], ==, b->peak_bytes[c]);
  g_assert_cmpint (a->peak_total, ==, b->peak_total);
}

static void
assert_record_equal (const KiltRunRecord *a, const KiltRunRecord *b)
{
  g_assert_cmpstr (a->name, ==, b->name);
  g_assert_cmpstr (a->model_name, ==, b->model_name);
  g_assert_cmpstr (a->model_json, ==, b->model_json);
  g_assert_cmpstr (a->data_description, ==, b->data_description);
  g_assert_cmpstr (a->data_hash, ==, b->data_hash);
  g_assert_cmpstr (a->data_spec, ==, b->data_spec);
  g_assert_cmpstr (a->device_id, ==, b->device_id);
  g_assert_cmpstr (a->device_name, ==, b->device_name);
  g_assert_cmpstr (a->device_vendor, ==, b->device_vendor);
  g_assert_cmpstr (a->device_type, ==, b->device_type);
  g_assert_cmpstr (a->device_driver, ==, b->device_driver);
  g_assert_cmpstr (a->device_opencl_version, ==, b->device_opencl_version);
  g_assert_cmpstr (a->kilt_version, ==, b->kilt_version);
  g_assert_cmpstr (a->clblast_version, ==, b->clblast_version);
  g_assert_cmpstr (a->platform_name, ==, b->platform_name);
  g_assert_cmpstr (a->platform_version, ==, b->platform_version);
  g_assert_cmpstr (a->config.device_id, ==, b->config.device_id);
  g_assert_cmpuint (a->config.epochs, ==, b->config.epochs);
  g_assert_cmpuint (a->config.batch, ==, b->config.batch);
  g_assert_cmpuint (a->config.seed, ==, b->config.seed);
  g_assert_cmpfloat (a->config.val_fraction, ==, b->config.val_fraction);
  g_assert_cmpint (a->config.opt.type, ==, b->config.opt.type);
  g_assert_cmpfloat (a->config.opt.lr, ==, b->config.opt.lr);
  g_assert_cmpfloat (a->config.opt.momentum, ==, b->config.opt.momentum);
  g_assert_cmpint (a->config.opt.nesterov, ==, b->config.opt.nesterov);
  g_assert_cmpint (a->config.opt.lookahead, ==, b->config.opt.lookahead);
  g_assert_cmpfloat (a->config.opt.rho, ==, b->config.opt.rho);
  g_assert_cmpfloat (a->config.opt.beta1, ==, b->config.opt.beta1);
  g_assert_cmpfloat (a->config.opt.beta2, ==, b->config.opt.beta2);
  g_assert_cmpfloat (a->config.opt.epsilon, ==, b->config.opt.epsilon);
  g_assert_cmpfloat (a->config.opt.decay, ==, b->config.opt.decay);
  g_assert_cmpfloat (a->config.opt.weight_decay, ==, b->config.opt.weight_decay);
  g_assert_cmpint (a->config.opt.schedule.type, ==, b->config.opt.schedule.type);
  g_assert_cmpfloat (a->config.opt.schedule.warmup_epochs, ==,
                     b->config.opt.schedule.warmup_epochs);
  g_assert_cmpuint (a->config.opt.schedule.warmup_steps, ==, b->config.opt.schedule.warmup_steps);
  g_assert_cmpfloat (a->config.opt.schedule.start, ==, b->config.opt.schedule.start);
  g_assert_cmpfloat (a->config.opt.schedule.final, ==, b->config.opt.schedule.final);
  g_assert_cmpfloat (a->config.opt.schedule.peak, ==, b->config.opt.schedule.peak);
  g_assert_cmpfloat (a->config.label_smoothing, ==, b->config.label_smoothing);
  g_assert_cmpuint (a->config.translate, ==, b->config.translate);
  g_assert_cmpint (a->config.tta_flip, ==, b->config.tta_flip);
  g_assert_cmpint (a->config.alternate_flip, ==, b->config.alternate_flip);
  g_assert_cmpint (a->config.augment, ==, b->config.augment);
  g_assert_cmpint (a->config.preprocess, ==, b->config.preprocess);
  g_assert_cmpuint (a->config.max_train_samples, ==, b->config.max_train_samples);
  g_assert_cmpstr (a->config.checkpoint_path, ==, b->config.checkpoint_path);
  g_assert_cmpint (a->config.resume, ==, b->config.resume);
  g_assert_cmpstr (a->config.run_name, ==, b->config.run_name);
  g_assert_cmpint (a->config.profile, ==, b->config.profile);
  g_assert_cmpint (a->config.on_oom, ==, b->config.on_oom);
  g_assert_cmpuint (a->flops_per_sample, ==, b->flops_per_sample);
  g_assert_cmpuint (a->n_params, ==, b->n_params);
  g_assert_cmpuint (a->train_samples, ==, b->train_samples);
  g_assert_cmpuint (a->steps_per_epoch, ==, b->steps_per_epoch);
  g_assert_cmpfloat (a->compile_seconds, ==, b->compile_seconds);
  g_assert_cmpint (a->compile_cached, ==, b->compile_cached);
}

static void
test_round_trip (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GArray) timings = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
  g_autoptr (GPtrArray) list = NULL;
  KiltRunRecord rec;
  KiltEpochRecord epochs[5];
  gint64 id = -1, other = -1;
  double sum = 0, best = -1, samples = 0;

  g_assert_no_error (error);
  g_assert_cmpint (kilt_run_store_get_schema_version (store), ==, KILT_RUN_STORE_SCHEMA_VERSION);
  make_record (r, &rec);
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  g_assert_no_error (error);
  g_assert_cmpint (id, >, 0);

  /* While running, it reads back as running and with its pid. */
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpint (run->status, ==, KILT_RUN_RUNNING);
  g_assert_cmpint (run->pid, ==, getpid ());
  g_assert_cmpuint (run->epochs->len, ==, 0);
  g_clear_pointer (&run, kilt_run_free);

  for (guint i = 0; i < G_N_ELEMENTS (epochs); i++)
    {
      make_epoch (r, i + 1, &epochs[i]);
      g_assert_true (kilt_run_store_add_epoch (store, id, &epochs[i], &error));
      g_assert_no_error (error);
      sum += epochs[i].wall_seconds;
      samples += epochs[i].wall_seconds * epochs[i].samples_per_second;
      if (!isnan (epochs[i].val_accuracy) && epochs[i].val_accuracy > best)
        best = epochs[i].val_accuracy;
    }
  for (int i = 0; i < 4; i++)
    {
      KiltLayerTiming t = { .layer = rand_string (r, "layer"),
                            .type = rand_string (r, "type"),
                            .forward_ms = g_rand_double (r),
                            .backward_ms = g_rand_double (r),
                            .update_ms = g_rand_double (r),
                            .algo = i % 2 ? rand_string (r, "algo") : NULL };
      g_array_append_val (timings, t);
    }
  g_assert_true (kilt_run_store_set_layer_timings (store, id, timings, &error));
  g_assert_no_error (error);
  g_assert_true (
      kilt_run_store_finish_run (store, id, KILT_RUN_FAILED, "device lost", 0.75, 0.5, &error));
  g_assert_no_error (error);

  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  assert_record_equal (&rec, &run->record);
  g_assert_cmpint (run->status, ==, KILT_RUN_FAILED);
  g_assert_cmpstr (run->error_message, ==, "device lost");
  g_assert_cmpfloat (run->test_loss, ==, 0.75);
  g_assert_cmpfloat (run->test_accuracy, ==, 0.5);
  g_assert_cmpint (run->ended_at, >=, run->started_at);
  g_assert_cmpuint (run->epochs->len, ==, G_N_ELEMENTS (epochs));
  for (guint i = 0; i < G_N_ELEMENTS (epochs); i++)
    assert_epoch_equal (&epochs[i], &g_array_index (run->epochs, KiltEpochRecord, i));
  g_assert_cmpuint (run->layer_timings->len, ==, timings->len);
  for (guint i = 0; i < timings->len; i++)
    {
      KiltLayerTiming *a = &g_array_index (timings, KiltLayerTiming, i);
      KiltLayerTiming *b = &g_array_index (run->layer_timings, KiltLayerTiming, i);
      g_assert_cmpstr (a->layer, ==, b->layer);
      g_assert_cmpstr (a->type, ==, b->type);
      g_assert_cmpfloat (a->forward_ms, ==, b->forward_ms);
      g_assert_cmpfloat (a->backward_ms, ==, b->backward_ms);
      g_assert_cmpfloat (a->update_ms, ==, b->update_ms);
      g_assert_cmpstr (a->algo, ==, b->algo);
      kilt_layer_timing_clear (a);
    }
  /* Derived figures against sums made here. */
  g_assert_cmpfloat_with_epsilon (kilt_run_train_seconds (run), sum, 1e-9 * sum);
  g_assert_cmpfloat_with_epsilon (kilt_run_mean_epoch_seconds (run), sum / 5, 1e-9 * sum);
  g_assert_cmpfloat (kilt_run_best_val_accuracy (run), ==, best);
  g_assert_cmpfloat_with_epsilon (kilt_run_mean_samples_per_second (run), samples / sum,
                                  1e-9 * samples / sum);
  g_assert_cmpfloat_with_epsilon (kilt_run_gflops (run),
                                  3.0 * rec.flops_per_sample * (samples / sum) / 1e9,
                                  1e-9 * kilt_run_gflops (run));
  g_clear_pointer (&run, kilt_run_free);

  /* A second run; the list is newest first. */
  g_assert_true (kilt_run_store_begin_run (store, &rec, &other, &error));
  list = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, 2);
  g_assert_cmpint (((KiltRun *)list->pdata[0])->id, ==, other);
  g_assert_cmpint (((KiltRun *)list->pdata[1])->id, ==, id);
  g_assert_cmpuint (((KiltRun *)list->pdata[1])->epochs->len, ==, 5);

  /* Rename, tag, untag, delete. */
  g_assert_true (kilt_run_store_rename (store, id, "renamed", &error));
  g_assert_true (kilt_run_store_add_tag (store, id, "gpu", &error));
  g_assert_true (kilt_run_store_add_tag (store, id, "baseline", &error));
  g_assert_true (kilt_run_store_add_tag (store, id, "gpu", &error));
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_cmpstr (run->record.name, ==, "renamed");
  g_assert_cmpuint (run->tags->len, ==, 2);
  g_assert_cmpstr (run->tags->pdata[0], ==, "baseline");
  g_assert_cmpstr (run->tags->pdata[1], ==, "gpu");
  g_clear_pointer (&run, kilt_run_free);
  g_assert_false (kilt_run_store_add_tag (store, id, "  ", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_true (kilt_run_store_remove_tag (store, id, "gpu", &error));
  run = kilt_run_store_get (store, id, &error);
  g_assert_cmpuint (run->tags->len, ==, 1);
  g_clear_pointer (&run, kilt_run_free);

  g_assert_true (kilt_run_store_delete (store, id, &error));
  g_assert_no_error (error);
  g_assert_null (kilt_run_store_get (store, id, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (kilt_run_store_rename (store, id, "x", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (kilt_run_store_add_epoch (store, id, &epochs[0], &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  /* The cascade took its epochs, timings and tags: no orphans left. */
  {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_prepare_v2 (db,
                                         "SELECT (SELECT count(*) FROM epochs) + (SELECT"
                                         " count(*) FROM layer_timings) + (SELECT count(*) FROM"
                                         " run_tags)",
                                         -1, &stmt, NULL),
                     ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
    g_assert_cmpint (sqlite3_column_int (stmt, 0), ==, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
  }
  kilt_run_record_clear (&rec);
}

/* A run that went on from its checkpoint at a smaller batch: the notes say so, one line per
 * change; the configuration and steps per epoch are the new ones; what it trains again
 * (steps past the resumption's, epochs past its checkpoint) is gone, the rest kept. */
static void
test_change (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GArray) steps = NULL;
  KiltRunRecord rec;
  KiltTrainConfig smaller;
  gint64 id = -1;
  guint64 last = 0;

  g_assert_no_error (error);
  make_record (r, &rec);
  rec.config.batch = 32;
  rec.steps_per_epoch = 10;
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  g_assert_no_error (error);
  /* Three epochs of ten steps, and four steps of the fourth, one sampled every 0.2 s. */
  for (guint i = 1; i <= 34; i++)
    {
      KiltStepRecord st = { (i - 1) / 10 + 1, (i - 1) % 10 + 1, i, i * 0.2, 1.0 / i, 0.5, 100 };
      g_assert_true (kilt_run_store_add_step (store, id, &st, NULL, &error));
      g_assert_no_error (error);
      if (i % 10 == 0)
        {
          KiltEpochRecord e;
          make_epoch (r, i / 10, &e);
          g_assert_true (kilt_run_store_add_epoch (store, id, &e, &error));
        }
    }
  /* It failed in epoch 4; its checkpoint holds 2 epochs (the third's was not written). */
  kilt_train_config_copy (&smaller, &rec.config);
  smaller.batch = 24;
  g_assert_true (kilt_run_store_add_change (store, id,
                                            "out of device memory at step 34; resumed from "
                                            "epoch 2 at batch 24 (was 32)",
                                            &smaller, 14, 2, 20, &error));
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (run->notes, ==,
                   "out of device memory at step 34; resumed from epoch 2 at batch 24 (was 32)");
  g_assert_cmpuint (run->record.config.batch, ==, 24);
  g_assert_cmpuint (run->record.steps_per_epoch, ==, 14);
  g_assert_cmpuint (run->epochs->len, ==, 2);
  g_assert_cmpint (run->status, ==, KILT_RUN_RUNNING);
  steps = kilt_run_store_get_steps (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (steps->len, ==, 20);
  for (guint i = 0; i < steps->len; i++)
    last = MAX (last, g_array_index (steps, KiltStepRecord, i).global_step);
  g_assert_cmpuint (last, ==, 20);
  g_clear_pointer (&steps, g_array_unref);
  /* The run's steps go on from step 21 at once, though their times are the run's own. */
  {
    KiltStepRecord st = { 3, 1, 21, 34 * 0.2 + 0.01, 0.1, 0.5, 100 };
    gboolean kept = FALSE;
    g_assert_true (kilt_run_store_add_step (store, id, &st, &kept, &error));
    g_assert_true (kept);
  }
  /* A second change adds a line; text that is not UTF-8 is mended, not stored as bytes. */
  smaller.batch = 18;
  g_assert_true (
      kilt_run_store_add_change (store, id, "again \xff at batch 18", &smaller, 19, 2, 21, &error));
  g_assert_no_error (error);
  g_clear_pointer (&run, kilt_run_free);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_true (g_utf8_validate (run->notes, -1, NULL));
  g_assert_true (g_str_has_prefix (run->notes, "out of device memory at step 34; resumed from "
                                               "epoch 2 at batch 24 (was 32)\nagain "));
  g_assert_true (g_str_has_suffix (run->notes, " at batch 18"));
  g_assert_cmpuint (run->record.config.batch, ==, 18);
  /* No such run. */
  g_assert_false (kilt_run_store_add_change (store, id + 1, "x", &smaller, 1, 0, 0, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  kilt_train_config_clear (&smaller);
  kilt_run_record_clear (&rec);
}

/* ---- host memory running out inside SQLite ------------------------------------------------ */

/* SQLite's allocator, wrapped so that the armed allocation fails (as SQLite's own tests fail
 * the Nth malloc): one-shot, or with @fail_after that one and every later one. */
static sqlite3_mem_methods real_mem;
static gint mem_calls;   /* atomic */
static gint mem_fail_at; /* atomic: 0, none */
static gboolean mem_fail_after;

static void *
faulty_malloc (int n)
{
  gint call = g_atomic_int_add (&mem_calls, 1) + 1;
  gint at = g_atomic_int_get (&mem_fail_at);

  if (at > 0 && (call == at || (mem_fail_after && call > at)))
    return NULL;
  return real_mem.xMalloc (n);
}

static void *
faulty_realloc (void *p, int n)
{
  gint call = g_atomic_int_add (&mem_calls, 1) + 1;
  gint at = g_atomic_int_get (&mem_fail_at);

  if (at > 0 && (call == at || (mem_fail_after && call > at)))
    return NULL;
  return real_mem.xRealloc (p, n);
}

static void
faulty_mem_install (gboolean install)
{
  sqlite3_mem_methods m;

  g_assert_cmpint (sqlite3_shutdown (), ==, SQLITE_OK);
  if (install)
    {
      g_assert_cmpint (sqlite3_config (SQLITE_CONFIG_GETMALLOC, &real_mem), ==, SQLITE_OK);
      m = real_mem;
      m.xMalloc = faulty_malloc;
      m.xRealloc = faulty_realloc;
      g_assert_cmpint (sqlite3_config (SQLITE_CONFIG_MALLOC, &m), ==, SQLITE_OK);
    }
  else
    g_assert_cmpint (sqlite3_config (SQLITE_CONFIG_MALLOC, &real_mem), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_initialize (), ==, SQLITE_OK);
}

static void
mem_arm (gint at)
{
  g_atomic_int_set (&mem_calls, 0);
  g_atomic_int_set (&mem_fail_at, at);
}

/* What a recorder does for a run of two epochs, from opening the store to listing it; FALSE
 * at the first failure, with @error set. */
static gboolean
store_session (const char *path, GRand *r, GError **error)
{
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, error);
  g_autoptr (GPtrArray) list = NULL;
  KiltRunRecord rec;
  gint64 id = 0;
  gboolean ok;

  if (store == NULL)
    return FALSE;
  if (kilt_run_store_is_read_only (store))
    {
      /* Not what a full memory is: a store that can be written must not pass for read-only. */
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "opened read-only (test: it is writable)");
      return FALSE;
    }
  make_record (r, &rec);
  ok = kilt_run_store_begin_run (store, &rec, &id, error);
  for (guint e = 1; ok && e <= 2; e++)
    {
      KiltEpochRecord ep;
      KiltStepRecord st = { e, 1, e, e * 1.0, 0.5, 0.5, 10 };
      make_epoch (r, e, &ep);
      ok = kilt_run_store_add_step (store, id, &st, NULL, error)
           && kilt_run_store_add_epoch (store, id, &ep, error);
    }
  ok = ok && kilt_run_store_finish_run (store, id, KILT_RUN_FINISHED, NULL, 0.5, 0.75, error)
       && (list = kilt_run_store_list (store, error)) != NULL;
  kilt_run_record_clear (&rec);
  return ok;
}

/* The store as it must be after any failure: it opens, passes SQLite's integrity check, and
 * holds the run recorded before every session whole; every later run it holds is whole too
 * (a transaction either landed or did not) or unfinished. */
static void
assert_store_intact (const char *path, guint sessions_done)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  g_autoptr (GPtrArray) runs = NULL;
  sqlite3 *db;
  sqlite3_stmt *stmt;
  guint finished = 0;

  g_assert_no_error (error);
  g_assert_false (kilt_run_store_is_read_only (store));
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < runs->len; i++)
    {
      KiltRun *run = runs->pdata[i];
      if (run->status == KILT_RUN_FINISHED)
        {
          g_assert_cmpuint (run->epochs->len, ==, 2);
          g_assert_cmpfloat (run->test_accuracy, ==, 0.75);
          finished++;
        }
      else
        g_assert_cmpuint (run->epochs->len, <=, 2);
    }
  g_assert_cmpuint (finished, >=, sessions_done);
  g_assert_cmpint (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &stmt, NULL), ==,
                   SQLITE_OK);
  g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
  g_assert_cmpstr ((const char *)sqlite3_column_text (stmt, 0), ==, "ok");
  sqlite3_finalize (stmt);
  sqlite3_close (db);
}

/* A fresh copy of the store at @base, at @path (its WAL files gone). */
static void
restore_store (const char *base, const char *path)
{
  g_autofree char *data = NULL;
  g_autofree char *wal = g_strconcat (path, "-wal", NULL);
  g_autofree char *shm = g_strconcat (path, "-shm", NULL);
  gsize len = 0;

  g_assert_true (g_file_get_contents (base, &data, &len, NULL));
  g_unlink (wal);
  g_unlink (shm);
  /* No fsync (g_file_set_contents makes one): a few thousand copies. */
  {
    FILE *f = fopen (path, "wb");
    g_assert_nonnull (f);
    g_assert_cmpuint (fwrite (data, 1, len, f), ==, len);
    g_assert_cmpint (fclose (f), ==, 0);
  }
}

/* The allocations SQLite makes while a run is recorded, failed in turn: one-shot, each of the
 * first 200 (opening the store) and every 7th after; then with every later one failing too,
 * every 13th (from a random offset, so that runs of the suite cover them all), on a store that
 * holds one run: each failure is an
 * error that names the store (never a crash, an abort or a store that passes for read-only), and
 * afterwards the store opens, is consistent, and has lost nothing committed before. */
static void
test_alloc_failure (void)
{
  g_autofree char *base = fresh_db ();
  g_autofree char *dir = g_path_get_dirname (base);
  g_autofree char *path = g_build_filename (dir, "faulty.db", NULL);
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (GError) error = NULL;
  guint calls, done = 0, failures = 0;

  g_assert_true (store_session (base, r, &error));
  g_assert_no_error (error);
  faulty_mem_install (TRUE);
  restore_store (base, path);
  mem_arm (0);
  g_assert_true (store_session (path, r, &error));
  calls = (guint)g_atomic_int_get (&mem_calls);
  g_test_message ("a recorded run makes %u SQLite allocations", calls);
  g_assert_cmpuint (calls, >, 20);
  for (guint pass = 0; pass < 2; pass++)
    {
      mem_fail_after = pass == 1;
      guint offset = (guint)g_test_rand_int_range (0, 13);
      for (guint at = pass ? 1 + offset : 1; at <= calls + 1; at += pass ? 13 : at < 200 ? 1 : 7)
        {
          gboolean ok;
          g_clear_error (&error);
          restore_store (base, path);
          mem_arm ((gint)at);
          ok = store_session (path, r, &error);
          mem_arm (0);
          if (ok)
            done++;
          else
            {
              failures++;
              g_assert_nonnull (error);
              if (error->domain != KILT_ENGINE_ERROR || strstr (error->message, path) == NULL)
                g_error ("allocation %u%s: an error that does not name the store: %s", at,
                         pass ? " and after" : "", error->message);
              if (at % 97 == 1)
                g_test_message ("allocation %u%s: %s", at, pass ? " and after" : "",
                                error->message);
            }
          assert_store_intact (path, ok ? 2 : 1);
        }
    }
  faulty_mem_install (FALSE);
  g_test_message ("%u sessions recorded, %u failed", done, failures);
  g_assert_cmpuint (failures, >, 0);
}

static void
test_step_sampling (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  g_autoptr (GArray) kept = g_array_new (FALSE, FALSE, sizeof (KiltStepRecord));
  g_autoptr (GArray) steps = NULL;
  KiltRunRecord rec = { 0 };
  gint64 id;
  double t = 0, last = -1e9;

  rec.name = g_strdup ("steps");
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  g_assert_no_error (error);
  /* Steps arrive at random intervals of 1..60 ms: only those 0.1 s past the last kept stay. */
  for (guint i = 1; i <= 400; i++)
    {
      KiltStepRecord s = { .epoch = 1 + i / 100,
                           .step = 1 + i % 100,
                           .global_step = i,
                           .elapsed_seconds = t,
                           .loss = g_rand_double (r),
                           .accuracy = g_rand_double (r),
                           .samples_per_second = g_rand_double_range (r, 1, 1000) };
      gboolean was_kept = FALSE;
      g_assert_true (kilt_run_store_add_step (store, id, &s, &was_kept, &error));
      g_assert_no_error (error);
      g_assert_cmpint (was_kept, ==, t - last >= 0.1);
      if (was_kept)
        {
          g_array_append_val (kept, s);
          last = t;
        }
      t += g_rand_double_range (r, 0.001, 0.06);
    }
  g_assert_cmpuint (kept->len, <=, (guint)(t / 0.1) + 1);
  g_assert_cmpuint (kept->len, >, 10);
  steps = kilt_run_store_get_steps (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (steps->len, ==, kept->len);
  for (guint i = 0; i < kept->len; i++)
    {
      KiltStepRecord *a = &g_array_index (kept, KiltStepRecord, i);
      KiltStepRecord *b = &g_array_index (steps, KiltStepRecord, i);
      g_assert_cmpuint (a->global_step, ==, b->global_step);
      g_assert_cmpuint (a->epoch, ==, b->epoch);
      g_assert_cmpuint (a->step, ==, b->step);
      g_assert_cmpfloat (a->elapsed_seconds, ==, b->elapsed_seconds);
      g_assert_cmpfloat (a->loss, ==, b->loss);
      g_assert_cmpfloat (a->accuracy, ==, b->accuracy);
      g_assert_cmpfloat (a->samples_per_second, ==, b->samples_per_second);
    }
  kilt_run_record_clear (&rec);
}

/* The child writes @n_epochs epochs (each reported on @fd once committed), then writes steps
 * of the next epoch forever: the parent kills it mid-epoch. */
static G_GNUC_NORETURN void
killed_writer_child (const char *path, guint32 seed, guint n_epochs, int fd)
{
  GError *error = NULL;
  KiltRunStore *store = kilt_run_store_open (path, &error);
  GRand *r = g_rand_new_with_seed (seed);
  KiltRunRecord rec;
  gint64 id;
  char byte = 'e';

  if (store == NULL)
    _exit (3);
  make_record (r, &rec);
  if (!kilt_run_store_begin_run (store, &rec, &id, &error))
    _exit (4);
  if (write (fd, &id, sizeof id) != sizeof id)
    _exit (5);
  for (guint e = 1; e <= n_epochs; e++)
    {
      KiltEpochRecord ep;
      make_epoch (r, e, &ep);
      if (!kilt_run_store_add_epoch (store, id, &ep, &error))
        _exit (6);
      if (write (fd, &byte, 1) != 1)
        _exit (7);
    }
  for (guint64 s = 1;; s++)
    {
      KiltStepRecord st = { .epoch = n_epochs + 1,
                            .step = s,
                            .global_step = s,
                            .elapsed_seconds = s * 0.2,
                            .loss = 1,
                            .accuracy = 0.5,
                            .samples_per_second = 100 };
      kilt_run_store_add_step (store, id, &st, NULL, NULL);
      if (s == 3 && write (fd, &byte, 1) != 1)
        _exit (8);
      g_usleep (2000);
    }
}

static void
test_killed_writer (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (KiltRun) run = NULL;
  guint32 seed = g_test_rand_int ();
  const guint n_epochs = 3 + g_test_rand_int_range (0, 4);
  int fds[2];
  pid_t pid;
  gint64 id = 0;
  char byte;
  int status;
  KiltRunRecord rec;
  GRand *r;

  /* Create the file first, so the child opens an existing store as a second process would. */
  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  g_clear_pointer (&store, kilt_run_store_close);

  g_assert_cmpint (pipe (fds), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      close (fds[0]);
      killed_writer_child (path, seed, n_epochs, fds[1]);
    }
  close (fds[1]);
  g_assert_cmpint (read (fds[0], &id, sizeof id), ==, sizeof id);
  /* n_epochs committed, then three steps of the next epoch. */
  for (guint i = 0; i < n_epochs + 1; i++)
    g_assert_cmpint (read (fds[0], &byte, 1), ==, 1);

  /* Opened while the writer lives, the run stays running: the process is there. */
  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpint (run->status, ==, KILT_RUN_RUNNING);
  g_clear_pointer (&run, kilt_run_free);
  g_clear_pointer (&store, kilt_run_store_close);

  g_assert_cmpint (kill (pid, SIGKILL), ==, 0);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
  close (fds[0]);

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpint (run->status, ==, KILT_RUN_INTERRUPTED);
  g_assert_nonnull (strstr (run->error_message, "ended before the run finished"));
  g_assert_cmpint (run->ended_at, >=, run->started_at);

  /* Every finished epoch is there, exactly as the child wrote it. */
  r = g_rand_new_with_seed (seed);
  make_record (r, &rec);
  assert_record_equal (&rec, &run->record);
  g_assert_cmpuint (run->epochs->len, ==, n_epochs);
  for (guint e = 1; e <= n_epochs; e++)
    {
      KiltEpochRecord ep;
      make_epoch (r, e, &ep);
      assert_epoch_equal (&ep, &g_array_index (run->epochs, KiltEpochRecord, e - 1));
    }
  {
    g_autoptr (GArray) steps = kilt_run_store_get_steps (store, id, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (steps->len, >=, 3);
  }
  kilt_run_record_clear (&rec);
  g_rand_free (r);
}

/* Our own running run stays running; one whose pid now belongs to another process (another
 * start time) becomes interrupted. */
static void
test_pid_reuse (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  g_autoptr (KiltRun) a = NULL;
  g_autoptr (KiltRun) b = NULL;
  KiltRunRecord rec = { 0 };
  gint64 mine, reused;
  sqlite3 *db;
  g_autofree char *sql = NULL;

  rec.name = g_strdup ("x");
  g_assert_true (kilt_run_store_begin_run (store, &rec, &mine, &error));
  g_assert_true (kilt_run_store_begin_run (store, &rec, &reused, &error));
  g_assert_no_error (error);
  g_clear_pointer (&store, kilt_run_store_close);

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  sql = g_strdup_printf (
      "UPDATE runs SET process_start = process_start + 12345 WHERE id = %" G_GINT64_FORMAT, reused);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  a = kilt_run_store_get (store, mine, &error);
  b = kilt_run_store_get (store, reused, &error);
  g_assert_no_error (error);
  g_assert_cmpint (a->status, ==, KILT_RUN_RUNNING);
  g_assert_cmpint (b->status, ==, KILT_RUN_INTERRUPTED);
  kilt_run_record_clear (&rec);
}

/* A data source with every option set off its default comes back the same. */
static void
test_data_spec (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (GError) error = NULL;
  g_autofree char *label = rand_string (r, "label");
  g_autofree char *source = rand_string (r, "/data/set");
  g_autofree char *json = NULL;
  KiltLoadOptions o;
  KiltDataSpec a, b, c;

  kilt_load_options_init (&o);
  o.image_width = g_rand_int_range (r, 1, 4096);
  o.image_height = g_rand_int_range (r, 1, 4096);
  o.grayscale = TRUE;
  o.fit = KILT_FIT_CROP;
  o.max_bad_fraction = g_rand_double (r);
  o.delimiter = ';';
  o.header = KILT_HEADER_NO;
  o.label_column = label;
  o.drop_bad_rows = TRUE;
  o.task = KILT_TASK_REGRESSION;
  o.cifar100_coarse = TRUE;
  o.max_samples = g_rand_int_range (r, 1, 100000);
  kilt_data_spec_init (&a, source, &o);
  /* The spec keeps its own copy of the label column. */
  g_assert_true (a.options.label_column != label);
  json = kilt_data_spec_to_json (&a);
  g_assert_true (kilt_data_spec_from_json (json, &b, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (b.source, ==, source);
  g_assert_cmpuint (b.options.image_width, ==, o.image_width);
  g_assert_cmpuint (b.options.image_height, ==, o.image_height);
  g_assert_true (b.options.grayscale);
  g_assert_cmpint (b.options.fit, ==, KILT_FIT_CROP);
  g_assert_cmpfloat (b.options.max_bad_fraction, ==, o.max_bad_fraction);
  g_assert_cmpint (b.options.delimiter, ==, ';');
  g_assert_cmpint (b.options.header, ==, KILT_HEADER_NO);
  g_assert_cmpstr (b.options.label_column, ==, label);
  g_assert_true (b.options.drop_bad_rows);
  g_assert_cmpint (b.options.task, ==, KILT_TASK_REGRESSION);
  g_assert_true (b.options.cifar100_coarse);
  g_assert_cmpuint (b.options.max_samples, ==, o.max_samples);
  kilt_data_spec_copy (&c, &b);
  g_assert_cmpstr (c.options.label_column, ==, label);
  g_assert_true (c.options.label_column == c.label_column);
  kilt_data_spec_clear (&a);
  kilt_data_spec_clear (&b);
  kilt_data_spec_clear (&c);

  /* Defaults stay defaults; bad input is an error, not a crash. */
  kilt_data_spec_init (&a, "sample", NULL);
  g_clear_pointer (&json, g_free);
  json = kilt_data_spec_to_json (&a);
  g_assert_true (kilt_data_spec_from_json (json, &b, &error));
  g_assert_null (b.options.label_column);
  g_assert_cmpint (b.options.delimiter, ==, 0);
  g_assert_cmpuint (b.options.max_samples, ==, 0);
  kilt_data_spec_clear (&a);
  kilt_data_spec_clear (&b);
  g_assert_false (kilt_data_spec_from_json ("[1]", &b, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (kilt_data_spec_from_json ("{\"source\": 3}", &b, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_false (kilt_data_spec_from_json (NULL, &b, &error));
  g_assert_nonnull (strstr (error->message, "older"));
}

static int
user_version (const char *path)
{
  sqlite3 *db;
  sqlite3_stmt *stmt;
  int v;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA user_version", -1, &stmt, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
  v = sqlite3_column_int (stmt, 0);
  sqlite3_finalize (stmt);
  sqlite3_close (db);
  return v;
}

/* A run on several devices: what its STARTED and EPOCH events say about each device goes into
 * its record and back, with the speed-up and scaling efficiency computed from the calibration
 * the events carry (random figures, checked against the sums done here). */
static void
test_scaling (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  g_autoptr (KiltRunScaling) sc = kilt_run_scaling_new ();
  g_autoptr (KiltRun) run = NULL;
  g_autofree char *said = NULL;
  KiltReplicaShare shares[3];
  KiltEvent started
      = { .type = KILT_EVENT_STARTED, .n_replicas = 3, .replicas = shares, .n_ranks = 1 };
  KiltEvent epoch = started;
  double speed_sum = 0, speed_max = 0, mix, alone;
  KiltRunRecord rec;
  gint64 id;

  for (guint i = 0; i < 3; i++)
    {
      shares[i] = (KiltReplicaShare){ .device_name = i == 0   ? "GPU"
                                                     : i == 1 ? "CPU"
                                                              : "iGPU",
                                      .share = g_rand_int_range (r, 1, 500),
                                      .samples_per_second = g_rand_double_range (r, 100, 1e5),
                                      .busy_percent = g_rand_double_range (r, 0, 100),
                                      .live_bytes = g_rand_int_range (r, 0, 1 << 30),
                                      .peak_bytes = g_rand_int_range (r, 0, 1 << 30) };
      speed_sum += shares[i].samples_per_second;
      speed_max = MAX (speed_max, shares[i].samples_per_second);
    }
  shares[2].busy_percent = NAN; /* not sampled */
  mix = g_rand_double_range (r, 1, 50);
  alone = g_rand_double_range (r, 1, 50);
  epoch.type = KILT_EVENT_EPOCH;
  epoch.dist_step_ms = mix;
  epoch.alone_step_ms = alone;
  epoch.reduce_ms = 0.25;
  epoch.samples_per_second = 1234;
  g_assert_true (kilt_run_scaling_update (sc, &started));
  g_assert_true (kilt_run_scaling_update (sc, &epoch));
  /* A later epoch with no calibration keeps the first one's step times. */
  epoch.dist_step_ms = epoch.alone_step_ms = 0;
  g_assert_true (kilt_run_scaling_update (sc, &epoch));
  g_assert_cmpfloat_with_epsilon (kilt_run_scaling_speedup (sc), alone / mix, 1e-12);
  g_assert_cmpfloat_with_epsilon (kilt_run_scaling_efficiency (sc),
                                  alone / mix / (speed_sum / speed_max), 1e-12);

  g_assert_no_error (error);
  make_record (r, &rec);
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  g_assert_true (kilt_run_store_set_scaling (store, id, sc, &error));
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_nonnull (run->scaling);
  g_assert_cmpuint (run->scaling->asked->len, ==, 3);
  g_assert_cmpstr (run->scaling->asked->pdata[1], ==, "CPU");
  g_assert_cmpuint (run->scaling->devices->len, ==, 3);
  for (guint i = 0; i < 3; i++)
    {
      const KiltRunDevice *d = &g_array_index (run->scaling->devices, KiltRunDevice, i);
      g_assert_cmpstr (d->name, ==, shares[i].device_name);
      g_assert_cmpuint (d->share, ==, shares[i].share);
      g_assert_cmpfloat_with_epsilon (d->samples_per_second, shares[i].samples_per_second, 1e-9);
      g_assert_cmpint (d->peak_bytes, ==, shares[i].peak_bytes);
      if (i < 2)
        g_assert_cmpfloat_with_epsilon (d->busy_percent, shares[i].busy_percent, 1e-9);
      else
        g_assert_true (isnan (d->busy_percent));
    }
  g_assert_cmpfloat_with_epsilon (kilt_run_scaling_speedup (run->scaling), alone / mix, 1e-9);
  said = kilt_run_scaling_describe (run->scaling);
  g_assert_nonnull (strstr (said, "data-parallel on 3 devices"));
  g_assert_nonnull (strstr (said, "scaling efficiency"));
  g_clear_pointer (&said, g_free);
  g_clear_pointer (&run, kilt_run_free);

  /* The fastest alone won: one device left, and the record says it was chosen. */
  epoch.n_replicas = 1;
  epoch.dist_step_ms = 9;
  epoch.alone_step_ms = 3;
  g_assert_true (kilt_run_scaling_update (sc, &epoch));
  said = kilt_run_scaling_describe (sc);
  g_assert_nonnull (strstr (said, "trained on GPU alone of 3 devices"));
  g_assert_nonnull (strstr (said, "3.00 ms there, 9.00 ms on all"));
  g_assert_true (isnan (kilt_run_scaling_efficiency (sc)));

  /* A record that no longer parses leaves the rest of the run readable. */
  {
    sqlite3 *db;
    g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
    g_assert_cmpint (
        sqlite3_exec (db, "UPDATE runs SET scaling_json = '{\"devices\": 7'", NULL, NULL, NULL), ==,
        SQLITE_OK);
    sqlite3_close (db);
  }
  g_test_expect_message ("kilt-run-store", G_LOG_LEVEL_WARNING, "*device record*");
  run = kilt_run_store_get (store, id, &error);
  g_test_assert_expected_messages ();
  g_assert_no_error (error);
  g_assert_null (run->scaling);
  g_assert_cmpstr (run->record.name, ==, rec.name);
  g_clear_pointer (&run, kilt_run_free);
  kilt_run_record_clear (&rec);

  /* Hostile records: refused with the reason, never trusted. */
  g_assert_null (kilt_run_scaling_from_json ("[]", &error));
  g_assert_nonnull (strstr (error->message, "not an object"));
  g_clear_error (&error);
  g_assert_null (kilt_run_scaling_from_json ("{\"devices\":[{\"share\":3}]}", &error));
  g_assert_nonnull (strstr (error->message, "no name"));
  g_clear_error (&error);
  g_assert_null (kilt_run_scaling_from_json ("{\"devices\":[{\"name\":5}]}", &error));
  g_assert_nonnull (strstr (error->message, "no name"));
  g_clear_error (&error);
  g_assert_null (kilt_run_scaling_from_json ("{\"devices\":[\"\xff\"]}", &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  {
    g_autoptr (KiltRunScaling) odd = kilt_run_scaling_from_json (
        "{\"devices\":[{\"name\":\"x\",\"share\":-4,\"peak_bytes\":1e300}],"
        "\"ranks\":-2,\"step_ms\":null}",
        &error);
    g_assert_no_error (error);
    g_assert_cmpuint (g_array_index (odd->devices, KiltRunDevice, 0).share, ==, 0);
    g_assert_cmpuint (odd->ranks, ==, 1);
    g_assert_cmpfloat (odd->step_ms, ==, 0);
    g_assert_true (isnan (kilt_run_scaling_speedup (odd)));
  }
}

/* Schema 7 keeps the learning rate of each step and epoch; a store of version 6 migrates, its
 * old rows reading as not known. */
static void
test_learning_rate (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (KiltRunStore) store = kilt_run_store_open_version (path, 6, &error);
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GArray) steps = NULL;
  KiltRunRecord rec;
  KiltEpochRecord ep1, ep2;
  double lr2 = g_rand_double_range (r, 1e-5, 1e-2), lr_step = g_rand_double_range (r, 1e-5, 1e-2);
  KiltStepRecord old = { .epoch = 1,
                         .step = 3,
                         .global_step = 3,
                         .elapsed_seconds = 1,
                         .loss = 2,
                         .accuracy = 0.25,
                         .samples_per_second = 9,
                         .learning_rate = 0.5 };
  KiltStepRecord st = { .epoch = 2,
                        .step = 1,
                        .global_step = 4,
                        .elapsed_seconds = 5,
                        .loss = 1,
                        .accuracy = 0.5,
                        .samples_per_second = 9,
                        .learning_rate = lr_step };
  gint64 id;

  g_assert_no_error (error);
  make_record (r, &rec);
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  make_epoch (r, 1, &ep1);
  ep1.learning_rate = 0.5;
  g_assert_true (kilt_run_store_add_epoch (store, id, &ep1, &error));
  g_assert_true (kilt_run_store_add_step (store, id, &old, NULL, &error));
  g_assert_no_error (error);
  g_clear_pointer (&store, kilt_run_store_close);

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (kilt_run_store_get_schema_version (store), ==, KILT_RUN_STORE_SCHEMA_VERSION);
  make_epoch (r, 2, &ep2);
  ep2.learning_rate = lr2;
  g_assert_true (kilt_run_store_add_epoch (store, id, &ep2, &error));
  g_assert_true (kilt_run_store_add_step (store, id, &st, NULL, &error));
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (run->epochs->len, ==, 2);
  g_assert_true (isnan (g_array_index (run->epochs, KiltEpochRecord, 0).learning_rate));
  g_assert_cmpfloat (g_array_index (run->epochs, KiltEpochRecord, 1).learning_rate, ==, lr2);
  steps = kilt_run_store_get_steps (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (steps->len, ==, 2);
  g_assert_true (isnan (g_array_index (steps, KiltStepRecord, 0).learning_rate));
  g_assert_cmpfloat (g_array_index (steps, KiltStepRecord, 1).learning_rate, ==, lr_step);
  kilt_run_record_clear (&rec);
}

static void
test_migration (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (KiltRunStore) store = kilt_run_store_open_version (path, 1, &error);
  g_autoptr (KiltRun) run = NULL;
  KiltRunRecord rec;
  KiltEpochRecord ep[3];
  gint64 id;
  gboolean kept = FALSE;
  KiltStepRecord st = { .epoch = 1,
                        .step = 1,
                        .global_step = 1,
                        .elapsed_seconds = 1,
                        .loss = 2,
                        .accuracy = 0.25,
                        .samples_per_second = 9 };

  g_assert_no_error (error);
  g_assert_cmpint (kilt_run_store_get_schema_version (store), ==, 1);
  make_record (r, &rec);
  /* Version 1 has no place for it: it is dropped, not an error. */
  g_clear_pointer (&rec.data_spec, g_free);
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  for (guint e = 0; e < 3; e++)
    {
      make_epoch (r, e + 1, &ep[e]);
      g_assert_true (kilt_run_store_add_epoch (store, id, &ep[e], &error));
    }
  g_assert_true (kilt_run_store_finish_run (store, id, KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
  g_assert_no_error (error);
  /* Version 1 has no tags: the call says so rather than failing in SQL. */
  g_assert_false (kilt_run_store_add_tag (store, id, "t", &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "version 2"));
  g_clear_error (&error);
  g_clear_pointer (&store, kilt_run_store_close);
  g_assert_cmpint (user_version (path), ==, 1);

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (user_version (path), ==, KILT_RUN_STORE_SCHEMA_VERSION);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  assert_record_equal (&rec, &run->record);
  g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
  g_assert_true (isnan (run->test_loss));
  g_assert_cmpuint (run->epochs->len, ==, 3);
  for (guint e = 0; e < 3; e++)
    assert_epoch_equal (&ep[e], &g_array_index (run->epochs, KiltEpochRecord, e));
  g_clear_pointer (&run, kilt_run_free);
  /* What version 2 added works on the migrated file. */
  g_assert_true (kilt_run_store_add_tag (store, id, "migrated", &error));
  g_assert_true (kilt_run_store_add_step (store, id, &st, &kept, &error));
  g_assert_no_error (error);
  g_assert_true (kept);
  run = kilt_run_store_get (store, id, &error);
  g_assert_cmpuint (run->tags->len, ==, 1);
  g_assert_cmpstr (run->tags->pdata[0], ==, "migrated");
  g_clear_pointer (&run, kilt_run_free);
  /* And what version 4 added: the algorithm a layer chose. */
  {
    g_autoptr (GArray) lt = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
    KiltLayerTiming t
        = { .layer = "conv2d", .type = "Conv2D", .forward_ms = 1, .algo = "implicit GEMM" };

    g_array_append_val (lt, t);
    g_assert_true (kilt_run_store_set_layer_timings (store, id, lt, &error));
    g_assert_no_error (error);
    run = kilt_run_store_get (store, id, &error);
    g_assert_cmpuint (run->layer_timings->len, ==, 1);
    g_assert_cmpstr (g_array_index (run->layer_timings, KiltLayerTiming, 0).algo, ==,
                     "implicit GEMM");
    g_clear_pointer (&run, kilt_run_free);
  }
  /* And what version 3 added: a new run keeps its data source. */
  {
    KiltRunRecord rec3;
    gint64 id3 = 0;
    g_autoptr (KiltRun) run3 = NULL;

    make_record (r, &rec3);
    g_assert_true (kilt_run_store_begin_run (store, &rec3, &id3, &error));
    run3 = kilt_run_store_get (store, id3, &error);
    g_assert_no_error (error);
    g_assert_nonnull (rec3.data_spec);
    g_assert_cmpstr (run3->record.data_spec, ==, rec3.data_spec);
    kilt_run_record_clear (&rec3);
  }
  g_clear_pointer (&store, kilt_run_store_close);

  /* A file from a newer Kilt is refused with a reason, not damaged. */
  {
    sqlite3 *db;
    g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_exec (db, "PRAGMA user_version = 99", NULL, NULL, NULL), ==,
                     SQLITE_OK);
    sqlite3_close (db);
  }
  g_assert_null (kilt_run_store_open (path, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "newer Kilt"));
  g_assert_cmpint (user_version (path), ==, 99);
  kilt_run_record_clear (&rec);
}

/* Concurrency: one writer thread, several readers, each with its own connection. */
typedef struct
{
  const char *path;
  gint64 id;
  guint n_epochs;
  gint done;
  gint reads;
  GRand *seed_rand;
  guint32 seed;
} Shared;

static gpointer
writer_thread (gpointer data)
{
  Shared *sh = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (sh->path, &error);
  g_autoptr (GRand) r = g_rand_new_with_seed (sh->seed);

  g_assert_no_error (error);
  for (guint e = 1; e <= sh->n_epochs; e++)
    {
      KiltEpochRecord ep;
      KiltStepRecord st = { .epoch = e,
                            .step = 1,
                            .global_step = e,
                            .elapsed_seconds = e,
                            .loss = 1,
                            .accuracy = 0.5,
                            .samples_per_second = 10 };
      make_epoch (r, e, &ep);
      g_assert_true (kilt_run_store_add_epoch (store, sh->id, &ep, &error));
      g_assert_no_error (error);
      g_assert_true (kilt_run_store_add_step (store, sh->id, &st, NULL, &error));
      g_assert_no_error (error);
    }
  g_assert_true (
      kilt_run_store_finish_run (store, sh->id, KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
  g_assert_no_error (error);
  g_atomic_int_set (&sh->done, 1);
  return NULL;
}

static gpointer
reader_thread (gpointer data)
{
  Shared *sh = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (sh->path, &error);
  guint last_len = 0;
  gboolean finished = FALSE;

  g_assert_no_error (error);
  while (!finished)
    {
      gboolean was_done = g_atomic_int_get (&sh->done);
      g_autoptr (KiltRun) run = kilt_run_store_get (store, sh->id, &error);
      g_autoptr (GRand) r = g_rand_new_with_seed (sh->seed);

      g_assert_no_error (error);
      /* Epochs only grow, and each one read is whole: equal to what the writer wrote. */
      g_assert_cmpuint (run->epochs->len, >=, last_len);
      last_len = run->epochs->len;
      for (guint i = 0; i < run->epochs->len; i++)
        {
          KiltEpochRecord ep;
          make_epoch (r, i + 1, &ep);
          assert_epoch_equal (&ep, &g_array_index (run->epochs, KiltEpochRecord, i));
        }
      /* A snapshot is consistent: a finished run has all its epochs. */
      if (run->status == KILT_RUN_FINISHED)
        g_assert_cmpuint (run->epochs->len, ==, sh->n_epochs);
      g_atomic_int_inc (&sh->reads);
      finished = was_done;
    }
  g_assert_cmpuint (last_len, ==, sh->n_epochs);
  return NULL;
}

static void
test_concurrent (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (path, &error);
  KiltRunRecord rec = { 0 };
  Shared sh = { .path = path, .n_epochs = 120, .seed = g_test_rand_int () };
  GThread *threads[4];

  rec.name = g_strdup ("concurrent");
  g_assert_true (kilt_run_store_begin_run (store, &rec, &sh.id, &error));
  g_assert_no_error (error);
  for (int i = 0; i < 3; i++)
    threads[i] = g_thread_new ("reader", reader_thread, &sh);
  threads[3] = g_thread_new ("writer", writer_thread, &sh);
  for (int i = 0; i < 4; i++)
    g_thread_join (threads[i]);
  g_assert_cmpint (sh.reads, >=, 3);
  g_test_message ("%d reads during %u committed epochs", sh.reads, sh.n_epochs);
  kilt_run_record_clear (&rec);
}

/* New checkpoint names are claimed (created empty) so no two runs share one; a folder that
 * cannot be made is named in the error. */
static void
test_checkpoint_paths (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *db = g_build_filename (dir, "runs.db", NULL);
  g_autofree char *blocker = g_build_filename (dir, "blocker", NULL);
  g_autofree char *blocked_db = g_build_filename (blocker, "runs.db", NULL);
  g_autofree char *folder = kilt_run_store_checkpoint_dir (db);
  g_autofree char *a = NULL, *b = NULL, *parent = NULL;
  g_autoptr (GError) error = NULL;

  a = kilt_run_store_new_checkpoint_path (db, "my model/v2", &error);
  g_assert_no_error (error);
  b = kilt_run_store_new_checkpoint_path (db, "my model/v2", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (a, !=, b);
  parent = g_path_get_dirname (a);
  g_assert_cmpstr (parent, ==, folder);
  g_assert_true (g_file_test (a, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_test (b, G_FILE_TEST_IS_REGULAR));
  g_assert_nonnull (strstr (a, "my_model_v2"));

  g_assert_true (g_file_set_contents (blocker, "a file, not a folder", -1, NULL));
  g_assert_null (kilt_run_store_new_checkpoint_path (blocked_db, "m", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "cannot make the checkpoint folder"));
  g_assert_nonnull (strstr (error->message, blocker));
}

static void
test_default_path (void)
{
  g_autofree char *p = NULL;

  g_setenv ("KILT_RUNS_DB", "/some/where/else.db", TRUE);
  p = kilt_run_store_default_path ();
  g_assert_cmpstr (p, ==, "/some/where/else.db");
  g_free (p);
  g_unsetenv ("KILT_RUNS_DB");
  p = kilt_run_store_default_path ();
  g_assert_true (g_str_has_prefix (p, g_get_user_data_dir ()));
  g_assert_true (g_str_has_suffix (p, "/kilt/runs.db"));

  /* The window's checkpoints sit beside the store, by an absolute path even when the store's
   * is relative: runs record it, and may be resumed from another folder. */
  g_free (p);
  p = kilt_run_store_checkpoint_dir ("/some/where/else.db");
  g_assert_cmpstr (p, ==, "/some/where/checkpoints");
  g_free (p);
  p = kilt_run_store_checkpoint_dir ("runs.db");
  {
    g_autofree char *cwd = g_get_current_dir ();
    g_autofree char *want = g_build_filename (cwd, "checkpoints", NULL);
    g_assert_cmpstr (p, ==, want);
  }
}

/* A configuration holding non-finite numbers is written as JSON that parses (null, read back as
 * the default), and a store written before that, with bare nan.0 tokens, still reads. */
static void
test_config_non_finite (void)
{
  KiltTrainConfig c = kilt_train_config_default (), back = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *json = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  const char *old = "{\"epochs\":7,\"batch\":16,\"val_fraction\":nan.0,"
                    "\"optimizer\":{\"type\":\"rmsprop\",\"lr\":0.01,\"rho\":-inf.0,"
                    "\"epsilon\":inf.0}}";

  c.epochs = 5;
  c.batch = 64;
  c.val_fraction = NAN;
  c.opt = kilt_optimizer_config_default (KILT_OPT_ADAM);
  c.opt.lr = INFINITY;
  c.opt.decay = -INFINITY;
  json = kilt_run_config_to_json (&c);
  g_assert_null (strstr (json, "nan"));
  g_assert_null (strstr (json, "inf"));
  g_assert_true (json_parser_load_from_data (parser, json, -1, &error));
  g_assert_no_error (error);
  g_assert_true (kilt_run_config_from_json (json, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (back.epochs, ==, 5);
  g_assert_cmpuint (back.batch, ==, 64);
  g_assert_cmpfloat (back.val_fraction, ==, 0);
  g_assert_cmpint (back.opt.type, ==, KILT_OPT_ADAM);
  g_assert_cmpfloat (back.opt.lr, ==, kilt_optimizer_config_default (KILT_OPT_ADAM).lr);
  g_assert_cmpfloat (back.opt.decay, ==, 0);
  g_assert_cmpfloat (back.opt.beta2, ==, c.opt.beta2);
  kilt_train_config_clear (&back);
  kilt_train_config_clear (&c);

  g_assert_true (kilt_run_config_from_json (old, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (back.epochs, ==, 7);
  g_assert_cmpuint (back.batch, ==, 16);
  g_assert_cmpfloat (back.val_fraction, ==, 0);
  g_assert_cmpint (back.opt.type, ==, KILT_OPT_RMSPROP);
  g_assert_cmpfloat (back.opt.lr, ==, 0.01f);
  g_assert_cmpfloat (back.opt.rho, ==, kilt_optimizer_config_default (KILT_OPT_RMSPROP).rho);
  g_assert_cmpfloat (back.opt.epsilon, ==,
                     kilt_optimizer_config_default (KILT_OPT_RMSPROP).epsilon);
  /* Recorded before schedules and label smoothing: a constant rate, one-hot targets. */
  g_assert_cmpint (back.opt.schedule.type, ==, KILT_LR_CONSTANT);
  g_assert_true (kilt_lr_schedule_is_flat (&back.opt.schedule));
  g_assert_cmpfloat (back.opt.schedule.peak, ==, kilt_lr_schedule_default ().peak);
  g_assert_cmpfloat (back.label_smoothing, ==, 0);
  g_assert_cmpuint (back.translate, ==, 0);
  g_assert_false (back.tta_flip);
  g_assert_false (back.alternate_flip);
  g_assert_false (back.opt.lookahead);
  kilt_train_config_clear (&back);

  /* Something that is not JSON at all still fails, saying so. */
  g_assert_false (kilt_run_config_from_json ("{\"epochs\": 3, oops}", &back, &error));
  g_assert_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_BAREWORD);
  g_assert_nonnull (strstr (error->message, "stored run configuration"));
  kilt_train_config_clear (&back);
}

/* The devices of a run on several come back in order; a stored list that is not one is
 * refused with what was wrong, and nothing half-read is left behind. */
static void
test_config_devices (void)
{
  KiltTrainConfig c = kilt_train_config_default (), back = { 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *json = NULL;
  g_autoptr (GString) many = g_string_new ("{\"devices\":[");
  const char *bad[][2] = {
    { "{\"devices\":\"gpu\"}", "list of 2 to" },
    { "{\"devices\":[\"gpu\"]}", "list of 2 to" },
    { "{\"devices\":{}}", "list of 2 to" },
    { "{\"device_id\":\"x\",\"devices\":[\"a\",\"b\",7]}", "entry 3 is not a string" },
    { "{\"devices\":[\"a\",null]}", "entry 2 is not a string" },
  };
  const char *names[] = { "NVIDIA H200", "1", "portable-computing-language/pthread/0", NULL };

  c.devices = g_strdupv ((char **)names);
  json = kilt_run_config_to_json (&c);
  g_assert_true (kilt_run_config_from_json (json, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (back.devices), ==, 3);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpstr (back.devices[i], ==, names[i]);
  kilt_train_config_clear (&back);
  kilt_train_config_clear (&c);

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (kilt_run_config_from_json (bad[i][0], &back, &error));
      g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
      g_assert_nonnull (strstr (error->message, bad[i][1]));
      g_assert_null (back.devices);
      g_assert_null (back.device_id);
      g_clear_error (&error);
    }
  for (guint i = 0; i <= KILT_MAX_DEVICES; i++)
    g_string_append_printf (many, "%s\"d%u\"", i ? "," : "", i);
  g_string_append (many, "]}");
  g_assert_false (kilt_run_config_from_json (many->str, &back, &error));
  g_assert_nonnull (strstr (error->message, "list of 2 to"));
}

static void
write_checkpoint (const char *path, guint epochs, guint64 token)
{
  float params[2] = { 1, 2 };
  KiltCheckpoint ck = { 0 };
  g_autoptr (GError) error = NULL;

  ck.n_params = 2;
  ck.params = params;
  ck.epochs_done = epochs;
  ck.global_step = epochs * 10;
  ck.run_token = token;
  g_assert_true (kilt_checkpoint_save (&ck, path, &error));
  g_assert_no_error (error);
}

/* A run resumes only from its own checkpoint: the token it recorded must be the file's (a file
 * shared with a later run holds that run's weights), or for a run recorded without one, the
 * epoch count. When its own file holds another count than the store (the store missed
 * epochs), the checkpoint's count is where it goes on, with a note saying so. */
static void
test_resume_point (void)
{
  g_autofree char *path = fresh_db ();
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *ckpt = g_build_filename (dir, "shared.ckpt", NULL);
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (11);
  const guint64 token = 0x5eed5eed12345677ull;
  gint64 ids[2];

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  for (guint k = 0; k < 2; k++)
    {
      KiltRunRecord rec;
      make_record (r, &rec);
      rec.config.epochs = 5;
      g_free (rec.config.checkpoint_path);
      rec.config.checkpoint_path = g_strdup (ckpt);
      rec.checkpoint_token = k == 0 ? token : 0; /* the second as an older Kilt recorded it */
      g_assert_true (kilt_run_store_begin_run (store, &rec, &ids[k], &error));
      g_assert_no_error (error);
      for (guint e = 1; e <= 2; e++)
        {
          KiltEpochRecord ep = { 0 };
          make_epoch (r, e, &ep);
          g_assert_true (kilt_run_store_add_epoch (store, ids[k], &ep, &error));
          g_assert_no_error (error);
        }
      g_assert_true (
          kilt_run_store_finish_run (store, ids[k], KILT_RUN_STOPPED, NULL, NAN, NAN, &error));
      g_assert_no_error (error);
      kilt_run_record_clear (&rec);
    }
  {
    g_autoptr (KiltRun) run = kilt_run_store_get (store, ids[0], &error);
    g_autoptr (KiltRun) old = kilt_run_store_get (store, ids[1], &error);
    g_autofree char *note = NULL;
    guint epochs = 0;

    g_assert_no_error (error);
    g_assert_cmpuint (run->record.checkpoint_token, ==, token);
    g_assert_cmpuint (old->record.checkpoint_token, ==, 0);

    /* Its own file, as the store says. */
    write_checkpoint (ckpt, 2, token);
    g_assert_true (kilt_run_resume_point (run, &epochs, &note, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (epochs, ==, 2);
    g_assert_null (note);
    /* Its own file, one epoch further than the store knows. */
    write_checkpoint (ckpt, 3, token);
    g_assert_true (kilt_run_resume_point (run, &epochs, &note, &error));
    g_assert_cmpuint (epochs, ==, 3);
    g_assert_nonnull (note);
    g_assert_nonnull (strstr (note, "recorded 2 epochs"));
    g_assert_nonnull (strstr (note, "holds 3"));
    g_clear_pointer (&note, g_free);
    /* Another run's: refused, naming the file, for both runs. */
    write_checkpoint (ckpt, 4, token + 2);
    for (guint k = 0; k < 2; k++)
      {
        g_assert_false (kilt_run_resume_point (k ? old : run, &epochs, &note, &error));
        g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
        g_test_message ("%s", error->message);
        g_assert_nonnull (strstr (error->message, "another run's weights"));
        g_assert_nonnull (strstr (error->message, ckpt));
        g_clear_error (&error);
        g_assert_false (kilt_run_can_resume (k ? old : run, &error));
        g_clear_error (&error);
      }
    /* Its own, but with all the epochs: nothing to go on from. */
    write_checkpoint (ckpt, 5, token);
    g_assert_false (kilt_run_resume_point (run, &epochs, NULL, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
    g_assert_nonnull (strstr (error->message, "holds 5 of its 5 epochs"));
    g_clear_error (&error);
    /* A run recorded without a token goes by the epochs of a file without one. */
    write_checkpoint (ckpt, 2, 0);
    g_assert_true (kilt_run_resume_point (old, &epochs, NULL, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (epochs, ==, 2);
    write_checkpoint (ckpt, 3, 0);
    g_assert_false (kilt_run_resume_point (old, &epochs, NULL, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
    g_clear_error (&error);
    /* Not a checkpoint at all. */
    g_assert_true (g_file_set_contents (ckpt, "garbage", -1, NULL));
    g_assert_false (kilt_run_resume_point (run, &epochs, NULL, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
    g_assert_nonnull (strstr (error->message, "not a Kilt checkpoint"));
  }
}

static void
sql (const char *path, const char *text)
{
  sqlite3 *db = NULL;
  char *msg = NULL;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  if (sqlite3_exec (db, text, NULL, NULL, &msg) != SQLITE_OK)
    g_error ("%s: %s", text, msg);
  sqlite3_close (db);
}

static gint64
begin_one (KiltRunStore *store, GRand *r)
{
  g_autoptr (GError) error = NULL;
  KiltRunRecord rec;
  gint64 id = 0;

  make_record (r, &rec);
  g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
  g_assert_no_error (error);
  kilt_run_record_clear (&rec);
  return id;
}

/* A store that may not be written is still listed and read (it failed on the WAL pragma);
 * writes say it is read-only; a missing file is named, never made. */
static void
test_read_only (void)
{
  g_autofree char *path = fresh_db ();
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *missing = g_build_filename (dir, "none", "runs.db", NULL);
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (5);
  g_autoptr (GPtrArray) runs = NULL;
  gint64 done, gone;

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  g_assert_false (kilt_run_store_is_read_only (store));
  done = begin_one (store, r);
  g_assert_true (
      kilt_run_store_finish_run (store, done, KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
  gone = begin_one (store, r);
  g_clear_pointer (&store, kilt_run_store_close);
  /* The second as a process that is gone left it: this pid, another start time. */
  {
    g_autofree char *q = g_strdup_printf (
        "UPDATE runs SET process_start = 1, hostname = '%s' WHERE id = %" G_GINT64_FORMAT,
        g_get_host_name (), gone);
    sql (path, q);
  }

  store = kilt_run_store_open_read_only (path, &error);
  g_assert_no_error (error);
  g_assert_true (kilt_run_store_is_read_only (store));
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (runs->len, ==, 2);
  for (guint i = 0; i < runs->len; i++)
    {
      KiltRun *run = runs->pdata[i];
      g_assert_cmpint (run->status, ==, run->id == done ? KILT_RUN_FINISHED : KILT_RUN_INTERRUPTED);
    }
  g_assert_false (kilt_run_store_rename (store, done, "x", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "read-only"));
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_assert_false (kilt_run_store_delete (store, done, &error));
  g_assert_nonnull (strstr (error->message, "read-only"));
  g_clear_error (&error);
  g_clear_pointer (&store, kilt_run_store_close);

  /* Where permissions bite (not as root): a folder and file without write access. */
  if (geteuid () != 0)
    {
      g_assert_cmpint (g_chmod (path, 0444), ==, 0);
      g_assert_cmpint (g_chmod (dir, 0555), ==, 0);
      store = kilt_run_store_open (path, &error);
      g_assert_no_error (error);
      g_assert_true (kilt_run_store_is_read_only (store));
      g_clear_pointer (&runs, g_ptr_array_unref);
      runs = kilt_run_store_list (store, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (runs->len, ==, 2);
      g_clear_pointer (&store, kilt_run_store_close);
      g_chmod (dir, 0755);
      g_chmod (path, 0644);
    }
  else
    g_test_message ("as root, permissions do not make a store read-only: that part skipped");

  g_assert_null (kilt_run_store_open_read_only (missing, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, missing));
  g_clear_error (&error);
  g_assert_false (g_file_test (missing, G_FILE_TEST_EXISTS));
}

/* A run still running cannot be deleted: its process would go on writing to it. */
static void
test_delete_running (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (6);
  g_autofree char *pid = g_strdup_printf ("in process %d", (int)getpid ());
  gint64 id;

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  id = begin_one (store, r);
  g_assert_false (kilt_run_store_delete (store, id, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "still running"));
  g_assert_nonnull (strstr (error->message, pid));
  g_clear_error (&error);
  /* Another machine's: we cannot know, so no. */
  {
    g_autofree char *q = g_strdup_printf (
        "UPDATE runs SET hostname = 'elsewhere' WHERE id = %" G_GINT64_FORMAT, id);
    sql (path, q);
  }
  g_assert_false (kilt_run_store_delete (store, id, &error));
  g_assert_nonnull (strstr (error->message, "elsewhere"));
  g_clear_error (&error);
  /* Here again, and its process gone (another start time): it may go. */
  {
    g_autofree char *q = g_strdup_printf (
        "UPDATE runs SET hostname = '%s', process_start = 1 WHERE id = %" G_GINT64_FORMAT,
        g_get_host_name (), id);
    sql (path, q);
  }
  g_assert_true (kilt_run_store_delete (store, id, &error));
  g_assert_no_error (error);
  /* A finished one may go too. */
  id = begin_one (store, r);
  g_assert_true (kilt_run_store_finish_run (store, id, KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
  g_assert_true (kilt_run_store_delete (store, id, &error));
  g_assert_no_error (error);
}

static void
feed (KiltRunRecorder *rec, KiltEventType type, guint epoch)
{
  KiltEvent ev = { .type = type };

  ev.epoch = epoch;
  ev.loss = 1.0 / (epoch + 1);
  ev.val_loss = ev.val_accuracy = ev.busy_percent = NAN;
  ev.test_loss = ev.test_accuracy = NAN;
  ev.status = KILT_RUN_FINISHED;
  ev.run_token = 77;
  kilt_run_recorder_event (rec, &ev);
}

/* A write that fails mid-run (a full disk, here a trigger) stops the recording, but the end is
 * still recorded (finished, not left to look interrupted) with a note of what is missing, and
 * the recorder says so for the person; when the end cannot be written either, it says that. */
static void
test_recorder_failure (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  KiltTrainConfig cfg = kilt_train_config_default ();
  KiltShape shape = { 1, 4, 4 };
  g_autoptr (KiltModel) model = kilt_model_load_preset ("mlp", &shape, 3, &error);
  KiltDataset *ds = g_new0 (KiltDataset, 1);

  g_assert_no_error (error);
  ds->name = g_strdup ("toy");
  cfg.epochs = 5;
  for (guint k = 0; k < 2; k++)
    {
      g_autofree char *warning = NULL;
      g_autoptr (KiltRunStore) store = NULL;
      g_autoptr (KiltRun) run = NULL;
      KiltRunRecorder *rec = kilt_run_recorder_new (path, model, ds, &cfg, &warning);
      gint64 id;

      g_assert_null (warning);
      feed (rec, KILT_EVENT_STARTED, 0);
      feed (rec, KILT_EVENT_EPOCH, 1);
      id = kilt_run_recorder_id (rec);
      sql (path, "CREATE TRIGGER full BEFORE INSERT ON epochs BEGIN"
                 " SELECT RAISE (ABORT, 'database or disk is full (test)'); END;");
      if (k == 1)
        sql (path, "CREATE TRIGGER full_end BEFORE UPDATE OF status ON runs BEGIN"
                   " SELECT RAISE (ABORT, 'still full (test)'); END;");
      g_test_expect_message ("kilt-run-recorder", G_LOG_LEVEL_WARNING, "*stopped recording*");
      feed (rec, KILT_EVENT_EPOCH, 2);
      g_test_assert_expected_messages ();
      feed (rec, KILT_EVENT_EPOCH, 3);
      feed (rec, KILT_EVENT_FINISHED, 3);
      g_assert_nonnull (kilt_run_recorder_get_failure (rec));
      g_test_message ("%s", kilt_run_recorder_get_failure (rec));
      g_assert_nonnull (strstr (kilt_run_recorder_get_failure (rec), "up to epoch 1"));
      g_assert_nonnull (strstr (kilt_run_recorder_get_failure (rec), "disk is full (test)"));
      if (k == 1)
        g_assert_nonnull (strstr (kilt_run_recorder_get_failure (rec), "as interrupted"));
      kilt_run_recorder_free (rec);
      sql (path, k == 0 ? "DROP TRIGGER full;" : "DROP TRIGGER full; DROP TRIGGER full_end;");

      store = kilt_run_store_open (path, &error);
      g_assert_no_error (error);
      run = kilt_run_store_get (store, id, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (run->epochs->len, ==, 1);
      g_assert_cmpuint (run->record.checkpoint_token, ==, 77);
      if (k == 0)
        {
          g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
          g_assert_nonnull (strstr (run->error_message, "up to epoch 1"));
        }
      else /* this process lives: still 'running' until it is gone */
        g_assert_cmpint (run->status, ==, KILT_RUN_RUNNING);
    }
  kilt_dataset_free (ds);
}

/* The recorder keeps the trainer's training time (pauses left out) and the learning rate of each
 * step and epoch, so that the Runs page's time axis and rate chart show what the run did. */
static void
test_recorder_training_time (void)
{
  g_autofree char *path = fresh_db ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  KiltTrainConfig cfg = kilt_train_config_default ();
  KiltShape shape = { 1, 4, 4 };
  g_autoptr (KiltModel) model = kilt_model_load_preset ("mlp", &shape, 3, &error);
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  g_autofree char *warning = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (KiltRun) run = NULL;
  g_autoptr (GArray) steps = NULL;
  KiltRunRecorder *rec;
  double t[3], lr[3];
  gint64 id;

  g_assert_no_error (error);
  ds->name = g_strdup ("toy");
  rec = kilt_run_recorder_new (path, model, ds, &cfg, &warning);
  g_assert_null (warning);
  feed (rec, KILT_EVENT_STARTED, 0);
  /* Long after the recorder began (a paused run): what the events say is kept. */
  t[0] = g_rand_double_range (r, 100, 200);
  for (guint i = 0; i < 3; i++)
    {
      KiltEvent ev = { .type = i < 2 ? KILT_EVENT_STEP : KILT_EVENT_EPOCH };
      if (i > 0)
        t[i] = t[i - 1] + g_rand_double_range (r, 0.2, 5);
      lr[i] = g_rand_double_range (r, 1e-5, 1e-2);
      ev.epoch = 1;
      ev.step = ev.global_step = i + 1;
      ev.loss = 1, ev.accuracy = 0.5;
      ev.val_loss = ev.val_accuracy = ev.busy_percent = NAN;
      ev.elapsed_seconds = t[i];
      ev.learning_rate = lr[i];
      kilt_run_recorder_event (rec, &ev);
    }
  id = kilt_run_recorder_id (rec);
  feed (rec, KILT_EVENT_FINISHED, 1);
  kilt_run_recorder_free (rec);

  store = kilt_run_store_open (path, &error);
  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (run->epochs->len, ==, 1);
  g_assert_cmpfloat (g_array_index (run->epochs, KiltEpochRecord, 0).elapsed_seconds, ==, t[2]);
  g_assert_cmpfloat (g_array_index (run->epochs, KiltEpochRecord, 0).learning_rate, ==, lr[2]);
  steps = kilt_run_store_get_steps (store, id, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (steps->len, ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      g_assert_cmpfloat (g_array_index (steps, KiltStepRecord, i).elapsed_seconds, ==, t[i]);
      g_assert_cmpfloat (g_array_index (steps, KiltStepRecord, i).learning_rate, ==, lr[i]);
    }
  kilt_dataset_free (ds);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/run-store/default-path", test_default_path);
  g_test_add_func ("/run-store/checkpoint-paths", test_checkpoint_paths);
  g_test_add_func ("/run-store/round-trip", test_round_trip);
  g_test_add_func ("/run-store/step-sampling", test_step_sampling);
  g_test_add_func ("/run-store/change", test_change);
  g_test_add_func ("/run-store/alloc-failure", test_alloc_failure);
  g_test_add_func ("/run-store/killed-writer", test_killed_writer);
  g_test_add_func ("/run-store/pid-reuse", test_pid_reuse);
  g_test_add_func ("/run-store/scaling", test_scaling);
  g_test_add_func ("/run-store/migration", test_migration);
  g_test_add_func ("/run-store/learning-rate", test_learning_rate);
  g_test_add_func ("/run-store/recorder-training-time", test_recorder_training_time);
  g_test_add_func ("/run-store/data-spec", test_data_spec);
  g_test_add_func ("/run-store/concurrent", test_concurrent);
  g_test_add_func ("/run-store/config-non-finite", test_config_non_finite);
  g_test_add_func ("/run-store/config-devices", test_config_devices);
  g_test_add_func ("/run-store/resume-point", test_resume_point);
  g_test_add_func ("/run-store/read-only", test_read_only);
  g_test_add_func ("/run-store/delete-running", test_delete_running);
  g_test_add_func ("/run-store/recorder-failure", test_recorder_failure);
  return g_test_run ();
}
