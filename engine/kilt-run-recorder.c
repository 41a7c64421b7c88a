/* Feeds a training run's events into the run store as they happen. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-run-recorder"

#include "config.h"

#include "kilt-run-recorder.h"
#include "kilt-error.h"
#include "kilt-gemm.h"
#include "kilt-model-json.h"

#include <math.h>

struct _KiltRunRecorder
{
  KiltRunStore *store;
  KiltRunRecord record;
  gint64 id;
  gint64 t0;
  gboolean failed;         /* a write failed: stop writing, keep training */
  char *failure;           /* what went unrecorded, for the person (NULL: all of it was recorded) */
  guint last_epoch;        /* the last epoch written */
  KiltRunScaling *scaling; /* a run on several devices or ranks; NULL: one device */
};

KiltRunRecorder *
kilt_run_recorder_new (const char *db_path, KiltModel *model, const KiltDataset *ds,
                       const KiltTrainConfig *cfg, char **warning)
{
  KiltRunRecorder *rec = g_new0 (KiltRunRecorder, 1);
  g_autoptr (GError) error = NULL;
  g_autofree char *path = db_path ? g_strdup (db_path) : kilt_run_store_default_path ();
  KiltRunRecord *r = &rec->record;

  rec->t0 = g_get_monotonic_time ();
  rec->store = kilt_run_store_open (path, &error);
  if (rec->store && kilt_run_store_is_read_only (rec->store))
    {
      g_set_error (&error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "run store %s is read-only here (no write access to it or its folder)", path);
      g_clear_pointer (&rec->store, kilt_run_store_close);
    }
  if (rec->store == NULL && warning)
    *warning = g_strdup_printf ("this run is not recorded: %s", error->message);
  r->name = g_strdup (cfg->run_name ? cfg->run_name : "");
  r->model_name = g_strdup (model->name);
  r->model_json = kilt_model_to_json (model);
  r->data_description
      = g_strdup_printf ("%s (%s), %zu train / %zu val / %zu test", ds->name,
                         ds->format ? ds->format : "?", ds->train.n, ds->val.n, ds->test.n);
  r->data_hash = g_strdup (ds->hash ? ds->hash : "");
  if (ds->source)
    {
      KiltDataSpec spec;
      kilt_data_spec_init (&spec, ds->source, NULL);
      r->data_spec = kilt_data_spec_to_json (&spec);
      kilt_data_spec_clear (&spec);
    }
  r->kilt_version = g_strdup (KILT_VERSION);
  r->clblast_version = g_strdup (kilt_clblast_version ());
  kilt_train_config_copy (&r->config, cfg);
  r->config.comm = NULL;
  r->flops_per_sample = kilt_model_flops (model);
  r->n_params = model->n_params;
  r->train_samples = ds->train.n;
  return rec;
}

void
kilt_run_recorder_set_data_spec (KiltRunRecorder *rec, const KiltDataSpec *spec)
{
  if (rec == NULL || spec == NULL)
    return;
  g_free (rec->record.data_spec);
  rec->record.data_spec = kilt_data_spec_to_json (spec);
}

static gboolean begin (KiltRunRecorder *rec, const KiltEvent *ev);

static void
note_failure (KiltRunRecorder *rec, GError *error)
{
  if (!rec->failed)
    {
      g_warning ("the run store stopped recording this run: %s", error->message);
      rec->failure
          = rec->last_epoch
                ? g_strdup_printf ("the run store recorded this run up to epoch %u, then "
                                   "failed: %s",
                                   rec->last_epoch, error->message)
                : g_strdup_printf ("the run store failed to record this run: %s", error->message);
    }
  rec->failed = TRUE;
}

/* The end is worth a try even after a failed write (a full disk may take a small update, a
 * lock may have gone): otherwise a run that finished is left 'running', and shown as
 * interrupted once this process is gone. */
static void
finish (KiltRunRecorder *rec, const KiltEvent *ev)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *message = NULL;
  const char *why = ev->error ? ev->error->message : NULL;

  if (rec->failed && rec->id == 0)
    return;
  if (!rec->failed && !begin (rec, ev))
    return;
  if (rec->failed && why == NULL)
    why = message = g_strdup_printf ("%s (the run itself %s)", rec->failure,
                                     kilt_run_status_name (ev->status));
  if (kilt_run_store_finish_run (rec->store, rec->id, ev->status, why, ev->test_loss,
                                 ev->test_accuracy, &error))
    return;
  if (rec->failed)
    {
      char *more = g_strdup_printf ("%s; its end could not be recorded either (%s), so the "
                                    "store will show run #%" G_GINT64_FORMAT " as interrupted",
                                    rec->failure, error->message, rec->id);
      g_free (rec->failure);
      rec->failure = more;
    }
  else
    {
      rec->failure
          = g_strdup_printf ("the run store could not record the end of run #%" G_GINT64_FORMAT
                             " (%s): it will show it as interrupted",
                             rec->id, error->message);
      rec->failed = TRUE;
    }
  /* Told by the caller (kilt_run_recorder_get_failure): the CLI, the window and compare. */
  g_message ("%s", rec->failure);
}

const char *
kilt_run_recorder_get_failure (KiltRunRecorder *rec)
{
  return rec ? rec->failure : NULL;
}

static gboolean
begin (KiltRunRecorder *rec, const KiltEvent *ev)
{
  KiltRunRecord *r = &rec->record;
  g_autoptr (GError) error = NULL;

  if (rec->id || rec->failed || !rec->store)
    return rec->id != 0;
  if (ev->device)
    {
      const KiltDeviceInfo *d = ev->device;
      r->device_id = g_strdup (d->id);
      /* Several devices: all their names ("A + B"), the first one's other facts. */
      r->device_name = g_strdup (ev->n_replicas > 1 && ev->device_name ? ev->device_name : d->name);
      r->device_vendor = g_strdup (d->vendor);
      r->device_type = g_strdup (d->type);
      r->device_driver = g_strdup (d->driver_version);
      r->device_opencl_version = g_strdup (d->opencl_version);
      r->platform_name = g_strdup (d->platform_name);
      r->platform_version = g_strdup (d->platform_version);
    }
  if (ev->type == KILT_EVENT_STARTED)
    {
      r->steps_per_epoch = ev->steps_per_epoch;
      r->compile_seconds = ev->compile_seconds;
      r->compile_cached = ev->compile_cached;
      r->checkpoint_token = ev->run_token;
    }
  if (!kilt_run_store_begin_run (rec->store, r, &rec->id, &error))
    {
      note_failure (rec, error);
      return FALSE;
    }
  return TRUE;
}

void
kilt_run_recorder_event (KiltRunRecorder *rec, const KiltEvent *ev)
{
  g_autoptr (GError) error = NULL;
  double elapsed;

  if (rec == NULL || rec->store == NULL)
    return;
  /* The trainer's training time leaves pauses (and the kernel builds) out, so that a paused run
   * does not look slower than it trained (issue 15, 3); a worker too old to send it: the
   * clock since the recorder began. */
  elapsed = (ev->type == KILT_EVENT_STEP || ev->type == KILT_EVENT_EPOCH)
                    && isfinite (ev->elapsed_seconds) && ev->elapsed_seconds >= 0
                ? ev->elapsed_seconds
                : (g_get_monotonic_time () - rec->t0) / 1e6;
  if (ev->type == KILT_EVENT_FINISHED)
    {
      finish (rec, ev);
      return;
    }
  if (rec->failed)
    return;
  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        /* Again, after running out of device memory: the same run, at a smaller batch. */
        if (rec->id && ev->change)
          {
            rec->record.config.batch = ev->batch;
            rec->record.steps_per_epoch = ev->steps_per_epoch;
            if (!kilt_run_store_add_change (rec->store, rec->id, ev->change, &rec->record.config,
                                            ev->steps_per_epoch, ev->epoch, ev->global_step,
                                            &error))
              note_failure (rec, error);
            else
              rec->last_epoch = MIN (rec->last_epoch, ev->epoch);
            break;
          }
        begin (rec, ev);
        if (ev->n_replicas > 1 || ev->n_ranks > 1)
          {
            rec->scaling = kilt_run_scaling_new ();
            kilt_run_scaling_update (rec->scaling, ev);
          }
        break;
      case KILT_EVENT_STEP:
        {
          KiltStepRecord s = { ev->epoch, ev->step,     ev->global_step,        elapsed,
                               ev->loss,  ev->accuracy, ev->samples_per_second, ev->learning_rate };
          if (rec->id && !kilt_run_store_add_step (rec->store, rec->id, &s, NULL, &error))
            note_failure (rec, error);
          break;
        }
      case KILT_EVENT_EPOCH:
        {
          KiltEpochRecord e = { 0 };
          e.epoch = ev->epoch;
          e.train_loss = ev->loss;
          e.train_accuracy = ev->accuracy;
          e.val_loss = ev->val_loss;
          e.val_accuracy = ev->val_accuracy;
          e.wall_seconds = ev->epoch_seconds;
          e.elapsed_seconds = elapsed;
          e.samples_per_second = ev->samples_per_second;
          e.compile_seconds
              = (ev->epoch == 1 ? rec->record.compile_seconds : 0) + ev->warmup_seconds;
          e.busy_percent = ev->busy_percent;
          e.learning_rate = ev->learning_rate;
          for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
            e.peak_bytes[i] = ev->mem.peak[i];
          e.peak_total = ev->mem.peak_total;
          if (rec->id && !kilt_run_store_add_epoch (rec->store, rec->id, &e, &error))
            note_failure (rec, error);
          else if (rec->id)
            rec->last_epoch = ev->epoch;
          if (rec->id && !rec->failed && rec->scaling && kilt_run_scaling_update (rec->scaling, ev)
              && !kilt_run_store_set_scaling (rec->store, rec->id, rec->scaling, &error))
            note_failure (rec, error);
          break;
        }
      case KILT_EVENT_TIMINGS:
        if (rec->id && !kilt_run_store_set_layer_timings (rec->store, rec->id, ev->timings, &error))
          note_failure (rec, error);
        break;
      default:
        break;
    }
}

gint64
kilt_run_recorder_id (KiltRunRecorder *rec)
{
  return rec ? rec->id : 0;
}

void
kilt_run_recorder_free (KiltRunRecorder *rec)
{
  if (rec == NULL)
    return;
  kilt_run_record_clear (&rec->record);
  kilt_run_store_close (rec->store);
  kilt_run_scaling_free (rec->scaling);
  g_free (rec->failure);
  g_free (rec);
}
