/* Compare devices: runs in turn, recorded with a shared tag, same curves for the same seed, and
 * stopping between and during runs. Two "devices" are the test device named twice. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-compare.h"
#include "kilt-error.h"
#include "kilt-model-json.h"

#include <math.h>
#include <string.h>

typedef struct
{
  GMutex lock;
  GArray *log; /* Seen, in arrival order */
  gboolean ended;
  KiltRunStatus end_status;
  GArray *end_ids;
  /* Stop the sequence at the FINISHED event of this run (G_MAXUINT: never), or at the first
   * STEP of this run. */
  guint stop_after;
  guint stop_during;
  KiltCompare *compare;
} Watch;

typedef struct
{
  guint index;
  KiltEventType type;
  gint64 run_id;
  KiltRunStatus status;
} Seen;

static void
on_event (const KiltCompareEvent *ce, gpointer user_data)
{
  Watch *w = user_data;
  Seen s = { ce->index, 0, ce->run_id, 0 };

  g_mutex_lock (&w->lock);
  if (ce->event == NULL)
    {
      w->ended = TRUE;
      w->end_status = ce->status;
      w->end_ids = g_array_copy ((GArray *)ce->run_ids);
      g_mutex_unlock (&w->lock);
      return;
    }
  s.type = ce->event->type;
  s.status = ce->event->status;
  if (s.type != KILT_EVENT_STEP && s.type != KILT_EVENT_MEMORY)
    g_array_append_val (w->log, s);
  g_mutex_unlock (&w->lock);
  if ((s.type == KILT_EVENT_FINISHED && ce->index == w->stop_after)
      || (s.type == KILT_EVENT_STEP && ce->index == w->stop_during))
    kilt_compare_stop (w->compare);
}

typedef struct
{
  char *db;
  char *device_id;
  char *model_json;
  KiltDataSpec spec;
  KiltTrainConfig cfg;
} Setup;

static gboolean
setup (Setup *s, guint max_samples)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  g_autoptr (KiltModel) model = NULL;
  KiltLoadOptions o;
  KiltContext *ctx = kilt_test_context ();
  g_autofree char *dir = NULL;

  if (ctx == NULL)
    return FALSE;
  memset (s, 0, sizeof *s);
  dir = kilt_test_tmpdir ();
  s->db = g_build_filename (dir, "runs.db", NULL);
  s->device_id = g_strdup (ctx->info->id);
  kilt_load_options_init (&o);
  o.max_samples = max_samples;
  kilt_data_spec_init (&s->spec, "sample", &o);
  ds = kilt_dataset_load ("sample", &o, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  model = kilt_model_load_preset ("mlp", &ds->shape, ds->n_classes, &error);
  g_assert_no_error (error);
  s->model_json = kilt_model_to_json (model);
  s->cfg = kilt_train_config_default ();
  s->cfg.epochs = 2;
  s->cfg.batch = 32;
  /* A seed of its own each time: the same-seed runs must agree whatever it is. */
  s->cfg.seed = g_test_rand_int ();
  s->cfg.run_name = g_strdup ("compare test");
  s->cfg.opt = kilt_optimizer_config_default (KILT_OPT_ADAM);
  return TRUE;
}

static void
setup_clear (Setup *s)
{
  g_free (s->db);
  g_free (s->device_id);
  g_free (s->model_json);
  kilt_data_spec_clear (&s->spec);
  kilt_train_config_clear (&s->cfg);
}

static void
watch_init (Watch *w)
{
  memset (w, 0, sizeof *w);
  g_mutex_init (&w->lock);
  w->log = g_array_new (FALSE, FALSE, sizeof (Seen));
  w->stop_after = G_MAXUINT;
  w->stop_during = G_MAXUINT;
}

static void
watch_clear (Watch *w)
{
  g_array_unref (w->log);
  if (w->end_ids)
    g_array_unref (w->end_ids);
  g_mutex_clear (&w->lock);
}

static guint
count (Watch *w, guint index, KiltEventType type)
{
  guint n = 0;
  for (guint i = 0; i < w->log->len; i++)
    {
      Seen *s = &g_array_index (w->log, Seen, i);
      n += s->index == index && s->type == type;
    }
  return n;
}

static void
test_two_runs (void)
{
  Setup s;
  Watch w;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GArray) ids = NULL;
  g_autofree char *tag = kilt_compare_make_tag ();
  const char *devices[3];
  KiltRun *runs[2];
  guint last_index = 0;

  if (!setup (&s, 256))
    return;
  devices[0] = devices[1] = s.device_id;
  devices[2] = NULL;
  watch_init (&w);
  g_assert_true (g_str_has_prefix (tag, "compare-"));
  w.compare = kilt_compare_new (devices, s.model_json, &s.spec, &s.cfg, s.db, tag, on_event, &w);
  g_assert_cmpstr (kilt_compare_get_tag (w.compare), ==, tag);
  kilt_compare_start (w.compare);
  g_assert_cmpint (kilt_compare_join (w.compare), ==, KILT_RUN_FINISHED);
  ids = kilt_compare_dup_run_ids (w.compare);
  kilt_compare_free (w.compare);

  /* One after another: every event of run 0 before any of run 1, each run started and
   * finished once, with two epochs, and the closing event after them. */
  g_assert_true (w.ended);
  g_assert_cmpint (w.end_status, ==, KILT_RUN_FINISHED);
  for (guint i = 0; i < w.log->len; i++)
    {
      Seen *e = &g_array_index (w.log, Seen, i);
      g_assert_cmpuint (e->index, >=, last_index);
      last_index = e->index;
      if (e->type == KILT_EVENT_EPOCH || e->type == KILT_EVENT_FINISHED)
        g_assert_cmpint (e->run_id, >, 0);
    }
  for (guint d = 0; d < 2; d++)
    {
      g_assert_cmpuint (count (&w, d, KILT_EVENT_STARTED), ==, 1);
      g_assert_cmpuint (count (&w, d, KILT_EVENT_EPOCH), ==, 2);
      g_assert_cmpuint (count (&w, d, KILT_EVENT_FINISHED), ==, 1);
    }
  g_assert_cmpuint (ids->len, ==, 2);
  g_assert_cmpuint (w.end_ids->len, ==, 2);
  g_assert_cmpint (g_array_index (ids, gint64, 0), !=, g_array_index (ids, gint64, 1));
  for (guint i = 0; i < 2; i++)
    g_assert_cmpint (g_array_index (ids, gint64, i), ==, g_array_index (w.end_ids, gint64, i));

  /* Both in the store, finished, tagged, with their data source; the same curves. */
  store = kilt_run_store_open (s.db, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < 2; i++)
    {
      KiltDataSpec spec;
      runs[i] = kilt_run_store_get (store, g_array_index (ids, gint64, i), &error);
      g_assert_no_error (error);
      g_assert_cmpint (runs[i]->status, ==, KILT_RUN_FINISHED);
      g_assert_cmpstr (runs[i]->record.device_id, ==, s.device_id);
      g_assert_cmpuint (runs[i]->record.config.seed, ==, s.cfg.seed);
      g_assert_cmpstr (runs[i]->record.name, ==, "compare test");
      g_assert_cmpuint (runs[i]->tags->len, ==, 1);
      g_assert_cmpstr (runs[i]->tags->pdata[0], ==, tag);
      g_assert_true (kilt_data_spec_from_json (runs[i]->record.data_spec, &spec, &error));
      g_assert_cmpstr (spec.source, ==, "sample");
      g_assert_cmpuint (spec.options.max_samples, ==, 256);
      kilt_data_spec_clear (&spec);
      g_assert_cmpuint (runs[i]->epochs->len, ==, 2);
    }
  for (guint e = 0; e < 2; e++)
    {
      KiltEpochRecord *a = &g_array_index (runs[0]->epochs, KiltEpochRecord, e);
      KiltEpochRecord *b = &g_array_index (runs[1]->epochs, KiltEpochRecord, e);
      g_test_message ("epoch %u: loss %.6f / %.6f, val acc %.4f / %.4f", e + 1, a->train_loss,
                      b->train_loss, a->val_accuracy, b->val_accuracy);
      g_assert_true (isfinite (a->train_loss));
      g_assert_cmpfloat (a->train_loss, ==, b->train_loss);
      g_assert_cmpfloat (a->train_accuracy, ==, b->train_accuracy);
      g_assert_cmpfloat (a->val_loss, ==, b->val_loss);
      g_assert_cmpfloat (a->val_accuracy, ==, b->val_accuracy);
    }
  /* It learned something, so "the same" is not two empty curves. */
  g_assert_cmpfloat (g_array_index (runs[0]->epochs, KiltEpochRecord, 1).train_loss, <,
                     g_array_index (runs[0]->epochs, KiltEpochRecord, 0).train_loss);
  kilt_run_free (runs[0]);
  kilt_run_free (runs[1]);
  watch_clear (&w);
  setup_clear (&s);
}

/* Runs one sequence on the test device and returns its one run, read back from the store. */
static KiltRun *
run_sequence (Setup *s, guint epochs, gboolean keep, const char *resume_from)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GArray) ids = NULL;
  const char *devices[] = { s->device_id, NULL };
  KiltRun *run;
  Watch w;

  watch_init (&w);
  s->cfg.epochs = epochs;
  w.compare
      = kilt_compare_new (devices, s->model_json, &s->spec, &s->cfg, s->db, NULL, on_event, &w);
  kilt_compare_set_keep_weights (w.compare, keep);
  kilt_compare_set_resume_from (w.compare, resume_from);
  kilt_compare_start (w.compare);
  g_assert_cmpint (kilt_compare_join (w.compare), ==, KILT_RUN_FINISHED);
  ids = kilt_compare_dup_run_ids (w.compare);
  kilt_compare_free (w.compare);
  watch_clear (&w);
  g_assert_cmpuint (ids->len, ==, 1);
  store = kilt_run_store_open (s->db, &error);
  g_assert_no_error (error);
  run = kilt_run_store_get (store, g_array_index (ids, gint64, 0), &error);
  g_assert_no_error (error);
  return run;
}

/* The window's runs keep their weights: each run a checkpoint of its own in the store's folder,
 * named in its recorded settings. A stopped run goes on from a copy of its checkpoint as a new
 * run, which computes what the uninterrupted run did; deleting a run deletes its checkpoint. */
static void
test_keep_weights (void)
{
  Setup s;
  g_autoptr (KiltRun) plain = NULL, whole = NULL, first = NULL, rest = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = NULL, *first_dir = NULL, *foreign = NULL;
  const char *a, *b;
  KiltEpochRecord *e2, *r2;

  if (!setup (&s, 256))
    return;
  dir = kilt_run_store_checkpoint_dir (s.db);
  plain = run_sequence (&s, 1, FALSE, NULL);
  g_assert_null (plain->record.config.checkpoint_path);

  whole = run_sequence (&s, 2, TRUE, NULL);
  first = run_sequence (&s, 1, TRUE, NULL);
  a = first->record.config.checkpoint_path;
  g_assert_nonnull (a);
  g_assert_cmpstr (whole->record.config.checkpoint_path, !=, a);
  first_dir = g_path_get_dirname (a);
  g_assert_cmpstr (first_dir, ==, dir);
  g_assert_false (first->record.config.resume);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (a), ==, 1);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (whole->record.config.checkpoint_path), ==, 2);

  rest = run_sequence (&s, 2, TRUE, a);
  b = rest->record.config.checkpoint_path;
  g_assert_nonnull (b);
  g_assert_cmpstr (b, !=, a);
  g_assert_true (rest->record.config.resume);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (b), ==, 2);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (a), ==,
                    1); /* the stopped run's own is untouched */
  /* Only the second epoch ran, numbered 2, and it is the uninterrupted run's. */
  g_assert_cmpuint (rest->epochs->len, ==, 1);
  r2 = &g_array_index (rest->epochs, KiltEpochRecord, 0);
  e2 = &g_array_index (whole->epochs, KiltEpochRecord, 1);
  g_assert_cmpuint (r2->epoch, ==, 2);
  g_test_message ("epoch 2: loss %.7f uninterrupted, %.7f resumed", e2->train_loss, r2->train_loss);
  g_assert_cmpfloat (r2->train_loss, ==, e2->train_loss);
  g_assert_cmpfloat (r2->val_accuracy, ==, e2->val_accuracy);

  /* Resuming from a checkpoint that is gone fails the run, naming it. */
  {
    g_autofree char *gone = g_build_filename (dir, "gone.ckpt", NULL);
    const char *devices[] = { s.device_id, NULL };
    KiltCompare *c
        = kilt_compare_new (devices, s.model_json, &s.spec, &s.cfg, s.db, NULL, NULL, NULL);
    kilt_compare_set_resume_from (c, gone);
    kilt_compare_start (c);
    g_assert_cmpint (kilt_compare_join (c), ==, KILT_RUN_FAILED);
    kilt_compare_free (c);
  }

  /* Deleting runs deletes their checkpoints in the folder, and only those. */
  store = kilt_run_store_open (s.db, &error);
  g_assert_no_error (error);
  foreign = g_build_filename (first_dir, "..", "mine.ckpt", NULL);
  g_assert_true (g_file_set_contents (foreign, "x", 1, NULL));
  {
    KiltRunRecord rec = { 0 };
    gint64 id;
    rec.name = (char *)"from the command line";
    rec.config = kilt_train_config_default ();
    rec.config.checkpoint_path = foreign;
    g_assert_true (kilt_run_store_begin_run (store, &rec, &id, &error));
    /* (a run still running may not be deleted: /run-store/delete-running) */
    g_assert_true (
        kilt_run_store_finish_run (store, id, KILT_RUN_FINISHED, NULL, NAN, NAN, &error));
    g_assert_true (kilt_run_store_delete (store, id, &error));
    g_assert_true (g_file_test (foreign, G_FILE_TEST_EXISTS));
  }
  g_assert_true (kilt_run_store_delete (store, first->id, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (a, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (b, G_FILE_TEST_EXISTS));
  g_assert_true (kilt_run_store_delete (store, rest->id, &error));
  g_assert_false (g_file_test (b, G_FILE_TEST_EXISTS));
  setup_clear (&s);
}

/* Stop once the first run has finished: the second never starts. */
static void
test_stop_between (void)
{
  Setup s;
  Watch w;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GPtrArray) all = NULL;
  g_autoptr (GArray) ids = NULL;
  const char *devices[4];

  if (!setup (&s, 128))
    return;
  devices[0] = devices[1] = devices[2] = s.device_id;
  devices[3] = NULL;
  s.cfg.epochs = 1;
  watch_init (&w);
  w.stop_after = 0;
  w.compare
      = kilt_compare_new (devices, s.model_json, &s.spec, &s.cfg, s.db, "between", on_event, &w);
  kilt_compare_start (w.compare);
  g_assert_cmpint (kilt_compare_join (w.compare), ==, KILT_RUN_STOPPED);
  ids = kilt_compare_dup_run_ids (w.compare);
  kilt_compare_free (w.compare);

  g_assert_true (w.ended);
  g_assert_cmpint (w.end_status, ==, KILT_RUN_STOPPED);
  g_assert_cmpuint (count (&w, 0, KILT_EVENT_FINISHED), ==, 1);
  g_assert_cmpuint (count (&w, 1, KILT_EVENT_STARTED), ==, 0);
  g_assert_cmpuint (count (&w, 2, KILT_EVENT_STARTED), ==, 0);
  g_assert_cmpuint (ids->len, ==, 1);
  store = kilt_run_store_open (s.db, &error);
  all = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (all->len, ==, 1);
  /* The first run had ended on its own before the stop: it stays finished. */
  g_assert_cmpint (((KiltRun *)all->pdata[0])->status, ==, KILT_RUN_FINISHED);
  watch_clear (&w);
  setup_clear (&s);
}

/* Stop during the first run: it ends stopped and recorded; nothing follows. */
static void
test_stop_during (void)
{
  Setup s;
  Watch w;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GArray) ids = NULL;
  g_autoptr (KiltRun) run = NULL;
  const char *devices[3];

  if (!setup (&s, 0))
    return;
  devices[0] = devices[1] = s.device_id;
  devices[2] = NULL;
  s.cfg.epochs = 50;
  g_clear_pointer (&s.cfg.run_name, g_free);
  watch_init (&w);
  w.stop_during = 0;
  w.compare = kilt_compare_new (devices, s.model_json, &s.spec, &s.cfg, s.db, NULL, on_event, &w);
  kilt_compare_start (w.compare);
  g_assert_cmpint (kilt_compare_join (w.compare), ==, KILT_RUN_STOPPED);
  ids = kilt_compare_dup_run_ids (w.compare);
  kilt_compare_free (w.compare);

  g_assert_cmpuint (count (&w, 0, KILT_EVENT_FINISHED), ==, 1);
  g_assert_cmpuint (count (&w, 1, KILT_EVENT_STARTED), ==, 0);
  g_assert_cmpuint (ids->len, ==, 1);
  store = kilt_run_store_open (s.db, &error);
  run = kilt_run_store_get (store, g_array_index (ids, gint64, 0), &error);
  g_assert_no_error (error);
  g_assert_cmpint (run->status, ==, KILT_RUN_STOPPED);
  /* Unnamed: named after the model and the device. */
  {
    g_autofree char *name = g_strdup_printf ("mlp on %s", kilt_test_context ()->info->name);
    g_assert_cmpstr (run->record.name, ==, name);
  }
  g_assert_cmpuint (run->epochs->len, <, 50);
  /* No tag asked for, none given. */
  g_assert_cmpuint (run->tags->len, ==, 0);
  watch_clear (&w);
  setup_clear (&s);
}

/* Data that does not load: each run fails with the loader's error, the sequence says FAILED. */
static void
test_bad_data (void)
{
  Setup s;
  Watch w;
  g_autoptr (GArray) ids = NULL;
  const char *devices[3];

  if (!setup (&s, 64))
    return;
  devices[0] = devices[1] = s.device_id;
  devices[2] = NULL;
  g_free (s.spec.source);
  s.spec.source = g_strdup ("/nonexistent/kilt-data");
  watch_init (&w);
  w.compare = kilt_compare_new (devices, s.model_json, &s.spec, &s.cfg, s.db, "bad", on_event, &w);
  kilt_compare_start (w.compare);
  g_assert_cmpint (kilt_compare_join (w.compare), ==, KILT_RUN_FAILED);
  ids = kilt_compare_dup_run_ids (w.compare);
  kilt_compare_free (w.compare);
  g_assert_cmpuint (ids->len, ==, 0);
  for (guint d = 0; d < 2; d++)
    {
      g_assert_cmpuint (count (&w, d, KILT_EVENT_FINISHED), ==, 1);
      g_assert_cmpuint (count (&w, d, KILT_EVENT_STARTED), ==, 0);
    }
  g_assert_cmpint (g_array_index (w.log, Seen, 0).status, ==, KILT_RUN_FAILED);
  watch_clear (&w);
  setup_clear (&s);
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/compare/two-runs", test_two_runs);
  g_test_add_func ("/compare/stop-between", test_stop_between);
  g_test_add_func ("/compare/stop-during", test_stop_during);
  g_test_add_func ("/compare/bad-data", test_bad_data);
  g_test_add_func ("/compare/keep-weights", test_keep_weights);
  status = g_test_run ();
  kilt_test_context_close ();
  return status;
}
