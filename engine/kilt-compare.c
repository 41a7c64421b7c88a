/* Compare devices: one configuration trained on each chosen device in turn, every run recorded. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-compare"

#include "config.h"

#include "kilt-compare.h"
#include "kilt-error.h"
#include "kilt-model-json.h"
#include "kilt-run-recorder.h"

#include <glib/gstdio.h>
#include <math.h>

struct _KiltCompare
{
  char **device_ids;
  char **device_names; /* found on the sequence's thread, for run names */
  guint n_devices;
  char *model_json;
  KiltDataSpec data;
  KiltTrainConfig config;
  char *db_path;
  char *tag;
  KiltCompareFunc func;
  gpointer user_data;
  KiltDataset *first_ds;
  gboolean keep_weights;
  char *resume_from;

  GThread *thread;
  GCancellable *cancel; /* data loading */
  GMutex lock;          /* guards what follows */
  KiltTrainer *current;
  gboolean stop_requested;
  gboolean paused;
  GArray *run_ids;
  KiltRunStatus status;
};

/* One run's context, passed to its trainer. */
typedef struct
{
  KiltCompare *compare;
  guint index;
  KiltRunRecorder *recorder;
} RunCtx;

static void
forward (KiltCompare *c, guint index, gint64 run_id, const KiltEvent *event)
{
  KiltCompareEvent ce = { 0 };

  ce.index = index;
  ce.n_devices = c->n_devices;
  ce.device_id = index < c->n_devices ? c->device_ids[index] : NULL;
  ce.run_id = run_id;
  ce.event = event;
  if (c->func)
    c->func (&ce, c->user_data);
}

/* On the trainer's thread. */
static void
on_trainer_event (const KiltEvent *event, gpointer user_data)
{
  RunCtx *ctx = user_data;

  kilt_run_recorder_event (ctx->recorder, event);
  forward (ctx->compare, ctx->index, kilt_run_recorder_id (ctx->recorder), event);
}

/* A run that could not begin (its data or model did not load) ends as the trainer's would. */
static void
forward_failure (KiltCompare *c, guint index, GError *error)
{
  KiltEvent ev = { 0 };

  ev.type = KILT_EVENT_FINISHED;
  ev.status = g_error_matches (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED)
                      || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)
                  ? KILT_RUN_STOPPED
                  : KILT_RUN_FAILED;
  ev.error = ev.status == KILT_RUN_FAILED ? error : NULL;
  ev.test_loss = ev.test_accuracy = NAN;
  ev.val_loss = ev.val_accuracy = NAN;
  forward (c, index, 0, &ev);
}

static gboolean
stop_requested (KiltCompare *c)
{
  gboolean stop;

  g_mutex_lock (&c->lock);
  stop = c->stop_requested;
  g_mutex_unlock (&c->lock);
  return stop;
}

/* A new checkpoint file for run @i in the store's folder; the first run of a resumed sequence
 * starts from a copy of the one it resumes, which stays with its own run. */
static char *
run_checkpoint (KiltCompare *c, guint i, const char *model_name, GError **error)
{
  g_autofree char *path = kilt_run_store_new_checkpoint_path (c->db_path, model_name, error);
  g_autofree char *bytes = NULL;
  gsize len = 0;

  if (path == NULL || i > 0 || c->resume_from == NULL)
    return g_steal_pointer (&path);
  if (!g_file_get_contents (c->resume_from, &bytes, &len, error)
      || !g_file_set_contents (path, bytes, len, error))
    {
      g_prefix_error (error, "cannot resume from checkpoint %s: ", c->resume_from);
      g_unlink (path);
      return NULL;
    }
  return g_steal_pointer (&path);
}

/* Trains on device @i; returns its status and sets *out_id to the recorded run. */
static KiltRunStatus
run_one (KiltCompare *c, guint i, gint64 *out_id)
{
  g_autoptr (GError) error = NULL;
  KiltDataset *ds = NULL;
  KiltModel *model = NULL;
  KiltTrainConfig cfg;
  RunCtx ctx = { c, i, NULL };
  g_autofree char *warning = NULL;
  KiltTrainer *trainer;
  KiltRunStatus status;
  g_autofree char *run_name = NULL;
  g_autofree char *checkpoint = NULL;

  *out_id = 0;
  if (i == 0 && c->first_ds)
    ds = g_steal_pointer (&c->first_ds);
  else
    ds = kilt_dataset_load (c->data.source, &c->data.options, NULL, NULL, c->cancel, &error);
  if (ds)
    {
      model = kilt_model_load_json_data (c->model_json, -1, "the compared model", &error);
      if (model && !model->built && !kilt_model_build (model, &error))
        g_clear_pointer (&model, kilt_model_free);
    }
  if (ds == NULL || model == NULL)
    {
      kilt_dataset_free (ds);
      forward_failure (c, i, error);
      return g_error_matches (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED)
                     || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)
                 ? KILT_RUN_STOPPED
                 : KILT_RUN_FAILED;
    }

  cfg = c->config;
  cfg.device_id = c->device_ids[i];
  if (c->keep_weights && !(checkpoint = run_checkpoint (c, i, model->name, &error)))
    {
      kilt_dataset_free (ds);
      kilt_model_free (model);
      forward_failure (c, i, error);
      return KILT_RUN_FAILED;
    }
  cfg.checkpoint_path = checkpoint;
  cfg.resume = checkpoint && i == 0 && c->resume_from;
  /* Unnamed runs of a comparison are told apart by their device. */
  if (cfg.run_name == NULL)
    cfg.run_name = run_name = g_strdup_printf ("%s on %s", model->name, c->device_names[i]);
  ctx.recorder = kilt_run_recorder_new (c->db_path, model, ds, &cfg, &warning);
  kilt_run_recorder_set_data_spec (ctx.recorder, &c->data);
  if (warning)
    {
      KiltEvent log = { 0 };
      log.type = KILT_EVENT_LOG;
      log.level = G_LOG_LEVEL_WARNING;
      log.message = warning;
      forward (c, i, 0, &log);
    }

  trainer = kilt_trainer_new (model, ds, &cfg, on_trainer_event, &ctx);
  g_mutex_lock (&c->lock);
  c->current = trainer;
  kilt_trainer_start (trainer);
  if (c->paused)
    kilt_trainer_pause (trainer);
  /* A stop that came while the data loaded. */
  if (c->stop_requested)
    kilt_trainer_stop (trainer);
  g_mutex_unlock (&c->lock);

  status = kilt_trainer_join (trainer);

  g_mutex_lock (&c->lock);
  c->current = NULL;
  g_mutex_unlock (&c->lock);
  *out_id = kilt_run_recorder_id (ctx.recorder);
  /* The store missed part of the run (a full disk, say): the person must hear of it. */
  if (kilt_run_recorder_get_failure (ctx.recorder))
    {
      KiltEvent log = { 0 };
      log.type = KILT_EVENT_LOG;
      log.level = G_LOG_LEVEL_WARNING;
      log.message = (char *)kilt_run_recorder_get_failure (ctx.recorder);
      forward (c, i, *out_id, &log);
    }
  kilt_trainer_free (trainer);
  kilt_run_recorder_free (ctx.recorder);
  return status;
}

static gpointer
compare_thread (gpointer data)
{
  KiltCompare *c = data;
  g_autoptr (KiltRunStore) store = NULL;
  guint failed = 0, ran = 0;
  gboolean stopped = FALSE;
  KiltCompareEvent end = { 0 };

  {
    g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
    c->device_names = g_new0 (char *, c->n_devices + 1);
    for (guint i = 0; i < c->n_devices; i++)
      {
        const KiltDeviceInfo *d = kilt_device_list_find (list, c->device_ids[i]);
        c->device_names[i] = g_strdup (d ? d->name : c->device_ids[i]);
      }
  }
  for (guint i = 0; i < c->n_devices && !stopped; i++)
    {
      gint64 id = 0;
      KiltRunStatus status;

      if (stop_requested (c))
        {
          stopped = TRUE;
          break;
        }
      status = run_one (c, i, &id);
      ran++;
      failed += status == KILT_RUN_FAILED;
      stopped = status == KILT_RUN_STOPPED || stop_requested (c);
      if (id == 0)
        continue;
      g_mutex_lock (&c->lock);
      g_array_append_val (c->run_ids, id);
      g_mutex_unlock (&c->lock);
      if (c->tag)
        {
          g_autoptr (GError) error = NULL;
          if (store == NULL)
            store = kilt_run_store_open (c->db_path, &error);
          if (store == NULL || !kilt_run_store_add_tag (store, id, c->tag, &error))
            g_warning ("run %" G_GINT64_FORMAT " was not tagged %s: %s", id, c->tag,
                       error->message);
        }
    }

  g_mutex_lock (&c->lock);
  c->status = stopped                    ? KILT_RUN_STOPPED
              : ran > 0 && failed == ran ? KILT_RUN_FAILED
                                         : KILT_RUN_FINISHED;
  end.run_ids = c->run_ids;
  end.status = c->status;
  g_mutex_unlock (&c->lock);
  end.index = c->n_devices;
  end.n_devices = c->n_devices;
  if (c->func)
    c->func (&end, c->user_data);
  return NULL;
}

KiltCompare *
kilt_compare_new (const char *const *device_ids, const char *model_json, const KiltDataSpec *data,
                  const KiltTrainConfig *config, const char *db_path, const char *tag,
                  KiltCompareFunc func, gpointer user_data)
{
  KiltCompare *c;

  g_return_val_if_fail (device_ids != NULL && device_ids[0] != NULL, NULL);
  g_return_val_if_fail (model_json != NULL && data != NULL && config != NULL, NULL);

  c = g_new0 (KiltCompare, 1);
  c->device_ids = g_strdupv ((char **)device_ids);
  c->n_devices = g_strv_length (c->device_ids);
  c->model_json = g_strdup (model_json);
  kilt_data_spec_copy (&c->data, data);
  c->config = *config;
  c->config.device_id = NULL;
  c->config.devices = NULL;         /* each run is on one of device_ids */
  c->config.checkpoint_path = NULL; /* each run would overwrite the last one's */
  c->config.resume = FALSE;
  c->config.run_name = g_strdup (config->run_name);
  c->db_path = g_strdup (db_path);
  c->tag = g_strdup (tag);
  c->func = func;
  c->user_data = user_data;
  c->cancel = g_cancellable_new ();
  c->run_ids = g_array_new (FALSE, FALSE, sizeof (gint64));
  c->status = KILT_RUN_RUNNING;
  g_mutex_init (&c->lock);
  return c;
}

void
kilt_compare_set_first_dataset (KiltCompare *c, KiltDataset *ds)
{
  g_return_if_fail (c != NULL && c->thread == NULL);
  kilt_dataset_free (c->first_ds);
  c->first_ds = ds;
}

void
kilt_compare_set_keep_weights (KiltCompare *c, gboolean keep)
{
  c->keep_weights = keep;
}

void
kilt_compare_set_resume_from (KiltCompare *c, const char *checkpoint)
{
  g_free (c->resume_from);
  c->resume_from = g_strdup (checkpoint);
  if (checkpoint)
    c->keep_weights = TRUE;
}

void
kilt_compare_start (KiltCompare *c)
{
  g_return_if_fail (c != NULL && c->thread == NULL);
  c->thread = g_thread_new ("kilt-compare", compare_thread, c);
}

void
kilt_compare_stop (KiltCompare *c)
{
  g_return_if_fail (c != NULL);
  g_mutex_lock (&c->lock);
  c->stop_requested = TRUE;
  if (c->current)
    kilt_trainer_stop (c->current);
  g_mutex_unlock (&c->lock);
  g_cancellable_cancel (c->cancel);
}

void
kilt_compare_pause (KiltCompare *c)
{
  g_return_if_fail (c != NULL);
  g_mutex_lock (&c->lock);
  c->paused = TRUE;
  if (c->current)
    kilt_trainer_pause (c->current);
  g_mutex_unlock (&c->lock);
}

void
kilt_compare_resume (KiltCompare *c)
{
  g_return_if_fail (c != NULL);
  g_mutex_lock (&c->lock);
  c->paused = FALSE;
  if (c->current)
    kilt_trainer_resume (c->current);
  g_mutex_unlock (&c->lock);
}

KiltRunStatus
kilt_compare_join (KiltCompare *c)
{
  g_return_val_if_fail (c != NULL, KILT_RUN_FAILED);
  if (c->thread)
    {
      g_thread_join (c->thread);
      c->thread = NULL;
    }
  return c->status;
}

GArray *
kilt_compare_dup_run_ids (KiltCompare *c)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint64));

  g_mutex_lock (&c->lock);
  g_array_append_vals (ids, c->run_ids->data, c->run_ids->len);
  g_mutex_unlock (&c->lock);
  return ids;
}

const char *
kilt_compare_get_tag (KiltCompare *c)
{
  return c->tag;
}

void
kilt_compare_free (KiltCompare *c)
{
  if (c == NULL)
    return;
  if (c->thread)
    {
      kilt_compare_stop (c);
      kilt_compare_join (c);
    }
  g_strfreev (c->device_ids);
  g_strfreev (c->device_names);
  g_free (c->model_json);
  kilt_data_spec_clear (&c->data);
  g_free (c->config.run_name);
  g_free (c->resume_from);
  g_free (c->db_path);
  g_free (c->tag);
  kilt_dataset_free (c->first_ds);
  g_object_unref (c->cancel);
  g_array_unref (c->run_ids);
  g_mutex_clear (&c->lock);
  g_free (c);
}

char *
kilt_compare_make_tag (void)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  return g_date_time_format (now, "compare-%Y%m%d-%H%M%S");
}
