/* A training session on its own thread: commands in, events out. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-trainer"

#include "config.h"

#include "kilt-trainer.h"
#include "kilt-gemm-tf32.h"
#include "kilt-batcher.h"
#include "kilt-breadcrumb.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-loss.h"
#include "kilt-optimizer.h"
#include "kilt-planner.h"
#include "kilt-profiler.h"
#include "kilt-vendor-memory.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* How many steps may be queued on the device ahead of the host: enough to keep it busy,
 * few enough that stop and pause answer within a few steps. */
#define STEPS_IN_FLIGHT 3
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
  KiltRunStatus status;
};

/* Everything the thread owns while it runs; freed in order by session_free. */
typedef struct
{
  KiltTrainer *trainer;
  KiltDeviceList *devices;
  KiltContext *ctx;
  KiltExecutor *exec;
  KiltOptimizer *opt;
  KiltBatcher *train_batcher;
  KiltBatcher *eval_batcher;
  const KiltSplit *eval_split;
  KiltBatcher *test_batcher; /* the test split when eval_split is the validation split */
  KiltBuffer *targets;
  KiltBuffer *metrics;
  KiltBuffer *eval_metrics;
  /* Evaluation alone builds an inference executor, with no gradient buffers: the loss kernel's
   * gradient output goes here instead (batch x outputs floats, never read). */
  KiltBuffer *eval_dout;
  KiltProfiler *profiler;
  guint64 global_step;
  guint64 first_global_step; /* where this run (or resumption) started */
  guint first_epoch;
  guint64 run_token; /* written into every checkpoint of this run */
  /* The last evaluation of eval_split and the step it was taken at (G_MAXUINT64: none). */
  double eval_loss, eval_accuracy;
  guint64 eval_step;
  /* Microseconds spent paused so far: kept out of epoch times, throughput and ETAs, so a
   * pause does not make a run look slower than it trained. */
  gint64 paused_us;
} Session;

const char *
kilt_run_status_name (KiltRunStatus status)
{
  static const char *names[] = { "running", "finished", "stopped", "failed", "interrupted" };

  g_return_val_if_fail ((guint)status < G_N_ELEMENTS (names), "?");
  return names[status];
}

KiltTrainConfig
kilt_train_config_default (void)
{
  KiltTrainConfig c = { 0 };

  c.epochs = 1;
  c.batch = 32;
  c.seed = 1;
  c.opt = kilt_optimizer_config_default (KILT_OPT_ADAM);
  c.preprocess = KILT_PREPROCESS_SCALE;
  c.profile = TRUE;
  return c;
}

void
kilt_train_config_clear (KiltTrainConfig *config)
{
  g_clear_pointer (&config->device_id, g_free);
  g_clear_pointer (&config->checkpoint_path, g_free);
  g_clear_pointer (&config->run_name, g_free);
}

void
kilt_layer_timing_copy (KiltLayerTiming *dst, const KiltLayerTiming *src)
{
  *dst = *src;
  dst->layer = g_strdup (src->layer);
  dst->type = g_strdup (src->type);
  dst->algo = g_strdup (src->algo);
}

void
kilt_layer_timing_clear (gpointer timing)
{
  KiltLayerTiming *t = timing;

  g_free (t->layer);
  g_free (t->type);
  g_free (t->algo);
}

/* ---- events ------------------------------------------------------------------------------- */

static void
emit (Session *s, KiltEvent *ev)
{
  s->trainer->func (ev, s->trainer->user_data);
}

static void emit_log (Session *s, GLogLevelFlags level, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
emit_log (Session *s, GLogLevelFlags level, const char *fmt, ...)
{
  KiltEvent ev = { .type = KILT_EVENT_LOG, .level = level };
  va_list ap;

  va_start (ap, fmt);
  ev.message = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  emit (s, &ev);
  g_free (ev.message);
}

static void
emit_memory (Session *s)
{
  KiltEvent ev = { .type = KILT_EVENT_MEMORY };

  kilt_mem_stats_snapshot (&s->ctx->mem, &ev.mem);
  ev.vendor_used_bytes = kilt_vendor_used_bytes (s->ctx->info);
  emit (s, &ev);
}

/* ---- commands ----------------------------------------------------------------------------- */

static gboolean
should_stop (KiltTrainer *t)
{
  return g_atomic_int_get (&t->stop) != 0;
}

/* Blocks while paused; returns FALSE when a stop arrived. */
static gboolean
wait_if_paused (Session *s)
{
  KiltTrainer *t = s->trainer;
  gboolean was_paused = FALSE;
  gint64 pause_t0 = 0;

  g_mutex_lock (&t->lock);
  while (t->paused && !should_stop (t))
    {
      if (!was_paused)
        {
          g_mutex_unlock (&t->lock);
          /* Let the device drain so the pause is a real pause. */
          clFinish (s->ctx->queue);
          emit_log (s, G_LOG_LEVEL_INFO, "Paused at step %" G_GUINT64_FORMAT, s->global_step);
          g_mutex_lock (&t->lock);
          was_paused = TRUE;
          /* The drain above was work the queued steps needed; the pause starts after it. */
          pause_t0 = g_get_monotonic_time ();
          continue;
        }
      g_cond_wait (&t->cond, &t->lock);
    }
  g_mutex_unlock (&t->lock);
  if (was_paused)
    s->paused_us += g_get_monotonic_time () - pause_t0;
  if (was_paused && !should_stop (t))
    emit_log (s, G_LOG_LEVEL_INFO, "Resumed");
  return !should_stop (t);
}

void
kilt_trainer_pause (KiltTrainer *trainer)
{
  g_mutex_lock (&trainer->lock);
  trainer->paused = TRUE;
  g_cond_broadcast (&trainer->cond);
  g_mutex_unlock (&trainer->lock);
}

void
kilt_trainer_resume (KiltTrainer *trainer)
{
  g_mutex_lock (&trainer->lock);
  trainer->paused = FALSE;
  g_cond_broadcast (&trainer->cond);
  g_mutex_unlock (&trainer->lock);
}

void
kilt_trainer_stop (KiltTrainer *trainer)
{
  g_atomic_int_set (&trainer->stop, 1);
  g_mutex_lock (&trainer->lock);
  g_cond_broadcast (&trainer->cond);
  g_mutex_unlock (&trainer->lock);
}

/* ---- set-up ------------------------------------------------------------------------------- */

static gboolean
open_device (Session *s, GError **error)
{
  const KiltDeviceInfo *info;

  s->devices = kilt_device_list_new ();
  if (s->trainer->config.device_id)
    {
      info = kilt_device_list_find (s->devices, s->trainer->config.device_id);
      if (info == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                       "No OpenCL device matches \"%s\" (or several do); `kilt-cli devices` "
                       "lists them",
                       s->trainer->config.device_id);
          return FALSE;
        }
    }
  else if ((info = kilt_device_list_choose_default (s->devices, error)) == NULL)
    return FALSE;
  if (info->unusable_reason)
    emit_log (s, G_LOG_LEVEL_WARNING, "%s may not work: %s", info->name, info->unusable_reason);
  s->ctx = kilt_context_new (info, error);
  if (s->ctx == NULL)
    return FALSE;
  emit_log (s, G_LOG_LEVEL_INFO, "Kernels for %s %s in %.2f s", info->name,
            s->ctx->from_cache ? "loaded from the cache" : "compiled", s->ctx->compile_seconds);
  if (s->trainer->config.precision != KILT_PRECISION_FP32)
    {
      if (!kilt_context_set_precision (s->ctx, s->trainer->config.precision, error))
        return FALSE;
      emit_log (s, G_LOG_LEVEL_INFO, "Training in %s on %s: GEMMs on tensor cores",
                kilt_precision_name (s->trainer->config.precision), info->name);
    }
  return TRUE;
}

static gboolean
check_loss_fits_model (Session *s, GError **error)
{
  KiltModel *m = s->trainer->model;
  KiltNode *out = kilt_model_output (m);
  KiltDataset *d = s->trainer->data;
  guint n_out = kilt_model_n_outputs (m);

  if (m->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
    {
      gboolean softmax = out->cfg.activation == KILT_ACT_SOFTMAX
                         && (out->type == KILT_LAYER_ACTIVATION || out->type == KILT_LAYER_DENSE
                             || out->type == KILT_LAYER_CONV2D);
      if (!softmax)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                       "model %s: softmax cross-entropy needs the last layer (%s) to end in a "
                       "softmax",
                       m->name, out->name);
          return FALSE;
        }
      if (d->n_classes == 0)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                       "data set %s has numeric targets; use the mse loss for regression", d->name);
          return FALSE;
        }
      if (n_out != d->n_classes)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                       "model %s has %u outputs but data set %s has %u classes", m->name, n_out,
                       d->name, d->n_classes);
          return FALSE;
        }
      s->exec->ex.softmax_fused_node = out->index;
    }
  else if (m->loss == KILT_LOSS_MSE && d->n_classes == 0 && n_out != MAX (d->n_targets, 1))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s has %u outputs but data set %s has %u targets", m->name, n_out,
                   d->name, MAX (d->n_targets, 1));
      return FALSE;
    }
  {
    KiltShape in = kilt_model_node (m, 0)->out_shape;
    if (in.c != d->shape.c || in.h != d->shape.h || in.w != d->shape.w)
      {
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                     "model %s takes %ux%ux%u (channels x height x width) inputs but data set %s "
                     "has %ux%ux%u samples",
                     m->name, in.c, in.h, in.w, d->name, d->shape.c, d->shape.h, d->shape.w);
        return FALSE;
      }
  }
  return TRUE;
}

/* The checkpoint's weights have this model's layout (structure hash and sizes). */
static gboolean
checkpoint_fits_model (const KiltCheckpoint *ck, KiltModel *model, const char *path, GError **error)
{
  if (ck->model_hash == kilt_model_hash (model) && ck->n_params == model->n_params
      && ck->n_state == model->n_state)
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
               "checkpoint %s belongs to a different model than %s (it holds %" G_GUINT64_FORMAT
               " parameters, %s has %zu)",
               path, model->name, ck->n_params, model->name, model->n_params);
  return FALSE;
}

G_STATIC_ASSERT (KILT_CHECKPOINT_MAX_ALGO == KILT_CONV_ALGO_IGEMM);

/* The algorithms the layers chose (measured on a GPU), for the checkpoint. */
static GArray *
chosen_algos (KiltModel *model)
{
  GArray *algos = g_array_new (FALSE, FALSE, sizeof (KiltCheckpointAlgo));

  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    {
      const KiltNode *n = kilt_model_node (model, i);
      KiltCheckpointAlgo a = { i, n->algo, n->algo_batch, n->algo_dw, n->algo_dw_batch };
      if (n->algo || n->algo_dw)
        g_array_append_val (algos, a);
    }
  return algos;
}

/* A resumed run on the device that chose them keeps the checkpoint's algorithms instead of
 * timing again: a close race could pick the other one, whose sums round differently, and the
 * resumed run would then not compute what the uninterrupted one did. */
static void
restore_algos (Session *s, const KiltCheckpoint *ck)
{
  KiltModel *model = s->trainer->model;
  guint n = 0;

  if (ck->algos == NULL || ck->algos->len == 0 || g_strcmp0 (ck->device_id, s->ctx->info->id))
    return;
  for (guint i = 0; i < ck->algos->len; i++)
    {
      const KiltCheckpointAlgo *a = &g_array_index (ck->algos, KiltCheckpointAlgo, i);
      KiltNode *node;
      /* Only convolutions choose; a file that says otherwise is not followed there. */
      if (a->node >= kilt_model_n_nodes (model)
          || kilt_model_node (model, a->node)->type != KILT_LAYER_CONV2D)
        continue;
      node = kilt_model_node (model, a->node);
      node->algo = a->algo;
      node->algo_batch = a->algo_batch;
      node->algo_dw = a->algo_dw;
      node->algo_dw_batch = a->algo_dw_batch;
      n++;
    }
  if (n)
    emit_log (s, G_LOG_LEVEL_INFO, "Kept the algorithms of %u layer%s that the checkpoint recorded",
              n, n == 1 ? "" : "s");
}

static gboolean
load_checkpoint (Session *s, GError **error)
{
  KiltTrainer *t = s->trainer;
  g_autoptr (KiltCheckpoint) ck = kilt_checkpoint_load (t->config.checkpoint_path, error);

  if (ck == NULL)
    return FALSE;
  if (!checkpoint_fits_model (ck, t->model, t->config.checkpoint_path, error))
    return FALSE;
  if (ck->n_opt_state != kilt_optimizer_state_floats (&t->config.opt, t->model->n_params))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "checkpoint %s holds another optimizer's state (%" G_GUINT64_FORMAT
                   " floats; %s here keeps %zu): resume with the optimizer it was trained with",
                   t->config.checkpoint_path, ck->n_opt_state,
                   kilt_optimizer_name (t->config.opt.type),
                   kilt_optimizer_state_floats (&t->config.opt, t->model->n_params));
      return FALSE;
    }
  /* Adam and Adadelta keep state of the same size: only the recorded kind tells them apart. */
  if (ck->optimizer && ck->optimizer - 1 != (guint32)t->config.opt.type)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "checkpoint %s holds %s's state, not %s's: resume with the optimizer it was "
                   "trained with (-o %s)",
                   t->config.checkpoint_path, kilt_optimizer_name (ck->optimizer - 1),
                   kilt_optimizer_name (t->config.opt.type),
                   kilt_optimizer_name (ck->optimizer - 1));
      return FALSE;
    }
  if (ck->epochs_done > t->config.epochs)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "checkpoint %s has %u epochs done, more than the %u this run trains",
                   t->config.checkpoint_path, ck->epochs_done, t->config.epochs);
      return FALSE;
    }
  if (!kilt_executor_upload (s->exec, ck->params, ck->state, error)
      || !kilt_optimizer_write_state (s->opt, ck->opt_state, error))
    return FALSE;
  restore_algos (s, ck);
  s->first_epoch = ck->epochs_done;
  s->global_step = ck->global_step;
  emit_log (s, G_LOG_LEVEL_INFO, "Resumed from %s after epoch %u (step %" G_GUINT64_FORMAT ")",
            t->config.checkpoint_path, ck->epochs_done, ck->global_step);
  return TRUE;
}

static gboolean
save_checkpoint (Session *s, guint epochs_done, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltCheckpoint ck = { 0 };
  gboolean ok;

  if (t->config.checkpoint_path == NULL)
    return TRUE;
  ck.n_params = t->model->n_params;
  ck.n_state = t->model->n_state;
  ck.n_opt_state = kilt_optimizer_state_floats (&t->config.opt, t->model->n_params);
  ck.epochs_done = epochs_done;
  ck.global_step = s->global_step;
  ck.seed = t->config.seed;
  ck.model_hash = kilt_model_hash (t->model);
  ck.params = g_new (float, ck.n_params + 1);
  ck.state = g_new (float, ck.n_state + 1);
  ck.opt_state = g_new (float, ck.n_opt_state + 1);
  ck.device_id = s->ctx->info->id;
  ck.algos = chosen_algos (t->model);
  ck.optimizer = (guint32)t->config.opt.type + 1;
  ck.run_token = s->run_token;
  ok = kilt_executor_download (s->exec, ck.params, ck.state, error)
       && kilt_optimizer_read_state (s->opt, ck.opt_state, error)
       && kilt_checkpoint_save (&ck, t->config.checkpoint_path, error);
  g_free (ck.params);
  g_free (ck.state);
  g_free (ck.opt_state);
  g_array_unref (ck.algos);
  return ok;
}

/* An unwritable checkpoint would otherwise fail only after the first epoch's work. */
static gboolean
check_checkpoint_folder (const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  gboolean is_dir = g_file_test (dir, G_FILE_TEST_IS_DIR);

  if (!is_dir || g_access (dir, W_OK) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "cannot write checkpoint %s: the folder %s %s", path, dir,
                   is_dir ? "is not writable" : "does not exist");
      return FALSE;
    }
  return TRUE;
}

static gboolean
prepare (Session *s, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltTrainConfig *c = &t->config;
  KiltDataset *d = t->data;
  g_autoptr (KiltPlan) plan = NULL;
  KiltEvent ev = { .type = KILT_EVENT_STARTED };
  const KiltSplit *train = &d->train;
  guint64 data_bytes;

  if (!t->model->built && !kilt_model_build (t->model, error))
    return FALSE;
  if (c->checkpoint_path && !check_checkpoint_folder (c->checkpoint_path, error))
    return FALSE;
  if (c->val_fraction > 0 && d->val.n == 0
      && !kilt_dataset_split_validation (d, c->val_fraction, c->seed, error))
    return FALSE;
  /* The trainer owns the data set, so a quick run can simply train on the first samples of
   * the (already shuffled by the loader or the split) training split. */
  if (c->max_train_samples > 0 && d->train.n > c->max_train_samples)
    {
      emit_log (s, G_LOG_LEVEL_INFO, "Training on the first %u of %zu training samples",
                c->max_train_samples, d->train.n);
      d->train.n = c->max_train_samples;
    }
  s->eval_split = d->val.n > 0 ? &d->val : d->test.n > 0 ? &d->test : NULL;
  if (train->n == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s has no training samples", d->name);
      return FALSE;
    }

  data_bytes
      = kilt_batcher_device_bytes (s->ctx, d, train, c->batch, 0, NULL)
        + (s->eval_split ? kilt_batcher_device_bytes (s->ctx, d, s->eval_split, c->batch, 0, NULL)
                         : 0)
        + (s->eval_split == &d->val && d->test.n > 0
               ? kilt_batcher_device_bytes (s->ctx, d, &d->test, c->batch, 0, NULL)
               : 0);
  plan = kilt_plan_compute (t->model, c->batch, &c->opt, data_bytes, s->ctx->info, s->ctx->budget);
  if (!kilt_plan_check (plan, error))
    {
      g_prefix_error (error, "model %s: ", t->model->name);
      return FALSE;
    }

  s->exec = kilt_executor_new (s->ctx, t->model, c->batch, TRUE, error);
  if (s->exec == NULL)
    return FALSE;
  s->exec->ex.seed = c->seed;
  if (!check_loss_fits_model (s, error))
    return FALSE;
  s->opt = kilt_optimizer_new (s->ctx, &c->opt, t->model->n_params, error);
  if (s->opt == NULL)
    return FALSE;
  s->train_batcher
      = kilt_batcher_new (s->ctx, d, train, c->batch, c->preprocess, c->augment, c->seed, 0, error);
  if (s->train_batcher == NULL)
    return FALSE;
  if (s->eval_split)
    {
      s->eval_batcher = kilt_batcher_new (s->ctx, d, s->eval_split, c->batch, c->preprocess, FALSE,
                                          c->seed, 0, error);
      if (s->eval_batcher == NULL)
        return FALSE;
    }
  /* Validation picks the epochs; the test split still gives the run's final figures. */
  if (s->eval_split == &d->val && d->test.n > 0)
    {
      s->test_batcher = kilt_batcher_new (s->ctx, d, &d->test, c->batch, c->preprocess, FALSE,
                                          c->seed, 0, error);
      if (s->test_batcher == NULL)
        return FALSE;
    }
  s->targets = kilt_buffer_new (s->ctx, KILT_MEM_WORKSPACE,
                                4 * (gsize)c->batch * MAX (kilt_model_n_outputs (t->model), 1),
                                error, "the batch targets");
  if (s->targets == NULL)
    return FALSE;
  s->metrics = kilt_buffer_new (s->ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (c->batch),
                                error, "the training metrics");
  if (s->metrics == NULL)
    return FALSE;
  s->eval_metrics
      = kilt_buffer_new (s->ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (c->batch), error,
                         "the evaluation metrics");
  if (s->eval_metrics == NULL)
    return FALSE;

  if (c->resume && c->checkpoint_path && g_file_test (c->checkpoint_path, G_FILE_TEST_EXISTS))
    {
      if (!load_checkpoint (s, error))
        return FALSE;
    }
  else
    {
      g_autofree float *params = g_new0 (float, t->model->n_params + 1);
      g_autofree float *state = g_new0 (float, t->model->n_state + 1);
      const float *wp, *ws;
      /* Weights the model came with (an imported Keras file) are its starting point. */
      if (kilt_model_get_weights (t->model, &wp, &ws))
        {
          memcpy (params, wp, sizeof (float) * t->model->n_params);
          memcpy (state, ws, sizeof (float) * t->model->n_state);
          emit_log (s, G_LOG_LEVEL_INFO, "Starts from the model's %s", t->model->weights_note);
        }
      else
        kilt_model_init_params (t->model, c->seed, params, state);
      if (!kilt_executor_upload (s->exec, params, state, error))
        return FALSE;
    }
  if (c->profile)
    s->profiler = kilt_profiler_new (t->model);
  s->first_global_step = s->global_step;

  ev.device = s->ctx->info;
  ev.device_name = s->ctx->info->name;
  ev.compile_seconds = s->ctx->compile_seconds;
  ev.compile_cached = s->ctx->from_cache;
  ev.planned_bytes = plan->total;
  ev.device_bytes = s->ctx->budget;
  ev.n_params = t->model->n_params;
  ev.flops_per_sample = kilt_model_flops (t->model);
  ev.steps_per_epoch = kilt_batcher_n_batches (s->train_batcher);
  /* Random and never 0 ("none"): a resume checks that a checkpoint is this run's. */
  s->run_token = ((guint64)g_random_int () << 32 | g_random_int ()) | 1;
  ev.run_token = s->run_token;
  emit (s, &ev);
  emit_memory (s);
  return TRUE;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static gboolean
zero_metrics (Session *s, KiltBuffer *metrics, GError **error)
{
  const float zero = 0.0f;
  cl_int err = clEnqueueFillBuffer (s->ctx->queue, metrics->mem, &zero, sizeof zero, 0,
                                    metrics->bytes, 0, NULL, NULL);

  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, s->ctx->info->name, "clearing %s", metrics->label);
      return FALSE;
    }
  return TRUE;
}

/* Mean loss and accuracy over everything accumulated in @metrics (blocking read). */
static gboolean
read_metrics (Session *s, KiltBuffer *metrics, double *loss, double *acc, GError **error)
{
  float m[METRICS_FLOATS];

  if (!kilt_buffer_read (metrics, 0, m, sizeof m, error))
    return FALSE;
  *loss = m[2] > 0 ? m[0] / m[2] : NAN;
  *acc = m[2] > 0 ? m[1] / m[2] : NAN;
  return TRUE;
}

static gboolean
evaluate (Session *s, KiltBatcher *batcher, double *loss, double *acc, GError **error)
{
  KiltTrainer *t = s->trainer;
  guint n_out = kilt_model_n_outputs (t->model);
  KiltNode *out = kilt_model_output (t->model);
  gboolean profiling = s->ctx->profiling;

  s->ctx->profiling = FALSE;
  if (!zero_metrics (s, s->eval_metrics, error)
      || !kilt_batcher_begin_epoch (batcher, 0, FALSE, error))
    return FALSE;
  for (guint b = 0; b < kilt_batcher_n_batches (batcher); b++)
    {
      guint n_valid = 0;
      if (should_stop (t))
        break;
      if (!kilt_batcher_gather (batcher, b, kilt_executor_input (s->exec), s->targets->mem,
                                &n_valid, error)
          || !kilt_executor_forward (s->exec, FALSE, error)
          || !kilt_loss_enqueue (s->ctx, t->model->loss, t->config.batch, n_valid, n_out, out->out,
                                 s->targets->mem, s->eval_dout ? s->eval_dout->mem : out->dout,
                                 s->eval_metrics->mem, error))
        {
          g_prefix_error (error, "evaluating on the %s split, batch %u: ",
                          s->eval_split == &t->data->val ? "validation" : "test", b + 1);
          return FALSE;
        }
    }
  s->ctx->profiling = profiling;
  return read_metrics (s, s->eval_metrics, loss, acc, error);
}

typedef struct
{
  gboolean pending;
  cl_event event;
  float values[METRICS_FLOATS];
  guint step; /* the step the read follows */
} MetricsRead;

static gboolean
check_finite_loss (Session *s, const char *which, double loss, guint64 step, GError **error)
{
  if (!isfinite (loss))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DIVERGED,
                   "the %s loss became %s by step %" G_GUINT64_FORMAT
                   "; lower the learning rate (now %g) or check the data",
                   which, isnan (loss) ? "NaN" : "infinite", step, s->trainer->config.opt.lr);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_finite (Session *s, const float *m, guint64 step, GError **error)
{
  return check_finite_loss (s, "training", m[0], step, error);
}

/* Says where a training step failed: the layer and phase the executor had reached (it sets
 * the profiling tag before each layer) or, around the layers, @stage. */
static void
prefix_step_error (Session *s, GError **error, const char *stage, guint epoch, guint step)
{
  static const char *phases[] = { "forward", "backward", "update" };
  int tag = s->ctx->prof_tag;
  guint node_index = (guint)tag / 3;

  if (stage == NULL && node_index > 0 && node_index < s->trainer->model->nodes->len)
    {
      KiltNode *node = kilt_model_node (s->trainer->model, node_index);
      g_prefix_error (error, "epoch %u, step %u, layer %s (%s) %s: ", epoch, step, node->name,
                      node->klass->name, phases[tag % 3]);
    }
  else
    g_prefix_error (error, "epoch %u, step %u, %s: ", epoch, step, stage ? stage : "a layer");
}

static gboolean
run_epoch (Session *s, guint epoch, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltTrainConfig *c = &t->config;
  guint n_batches = kilt_batcher_n_batches (s->train_batcher);
  guint n_out = kilt_model_n_outputs (t->model);
  KiltNode *out = kilt_model_output (t->model);
  gint64 t0 = g_get_monotonic_time (), last_report = 0;
  MetricsRead rd = { 0 };
  cl_event markers[STEPS_IN_FLIGHT] = { 0 };
  KiltEvent ev = { .type = KILT_EVENT_EPOCH };
  gboolean ok = FALSE;
  guint samples = 0;
  /* Drivers such as PoCL compile each kernel on its first launch: the run's first step is
   * timed on its own and kept out of the throughput, so compile time is not training time. */
  gint64 rate_t0 = t0;
  /* s->paused_us when the epoch, and its throughput window, began */
  gint64 paused0 = s->paused_us, rate_paused0 = s->paused_us;
  /* The samples of the warm-up step, left out of the step reports' throughput as well */
  double warm_samples = 0;
  double warmup = 0;
  const char *stage = NULL;
  guint step_in_epoch = 0;

  if (!zero_metrics (s, s->metrics, error)
      || !kilt_batcher_begin_epoch (s->train_batcher, epoch, TRUE, error))
    return FALSE;
  if (s->profiler)
    kilt_profiler_begin_epoch (s->profiler);

  for (guint b = 0; b < n_batches; b++)
    {
      guint n_valid = 0;
      cl_int err;
      gint64 now;
      /* Profile a window of steps in each epoch, past the warm-up. */
      gboolean profile = s->profiler && b >= MIN (2u, n_batches - 1)
                         && b < MIN (2u, n_batches - 1) + KILT_PROFILED_STEPS;

      if (!wait_if_paused (s))
        break;
      step_in_epoch = b + 1;
      /* Where a crash or hang happened, for the worker's crash handler; and the test faults
       * that make one. */
      kilt_breadcrumb_step (epoch + 1, s->global_step + 1);
      kilt_fault_step ();
      s->ctx->profiling = profile;
      s->exec->ex.step = s->global_step;
      s->ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_FORWARD);
      stage = "gathering the batch";
      kilt_breadcrumb_stage (stage);
      if (!kilt_batcher_gather (s->train_batcher, b, kilt_executor_input (s->exec), s->targets->mem,
                                &n_valid, error))
        goto step_failed;
      stage = NULL;
      if (!kilt_executor_forward (s->exec, TRUE, error))
        goto step_failed;
      s->ctx->prof_tag = KILT_PROF_TAG (out->index, KILT_PHASE_BACKWARD);
      stage = "the loss";
      kilt_breadcrumb_stage (stage);
      if (!kilt_loss_enqueue (s->ctx, t->model->loss, c->batch, n_valid, n_out, out->out,
                              s->targets->mem, out->dout, s->metrics->mem, error))
        goto step_failed;
      stage = NULL;
      if (!kilt_executor_backward (s->exec, error))
        goto step_failed;
      s->ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_UPDATE);
      stage = "the optimizer update";
      kilt_breadcrumb_stage (stage);
      if (!kilt_optimizer_step (s->opt, s->exec->params->mem, s->exec->grads->mem, s->global_step,
                                error))
        goto step_failed;
      s->global_step++;
      samples += n_valid;
      if (s->global_step == s->first_global_step + 1)
        {
          if (!kilt_context_finish (s->ctx, error))
            goto out;
          warmup = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
          rate_t0 = g_get_monotonic_time ();
          rate_paused0 = s->paused_us;
          warm_samples = samples;
          samples = 0;
          emit_log (s, G_LOG_LEVEL_INFO,
                    "The first step took %.2f s (it includes the driver's compilation of each "
                    "kernel on first use)",
                    warmup);
        }

      /* Keep at most STEPS_IN_FLIGHT steps queued: wait for the marker of an older step. */
      if (markers[b % STEPS_IN_FLIGHT])
        {
          err = clWaitForEvents (1, &markers[b % STEPS_IN_FLIGHT]);
          clReleaseEvent (markers[b % STEPS_IN_FLIGHT]);
          markers[b % STEPS_IN_FLIGHT] = NULL;
          if (err != CL_SUCCESS)
            {
              kilt_set_cl_error (error, err, s->ctx->info->name, "training step %u", b + 1);
              goto out;
            }
        }
      err = clEnqueueMarkerWithWaitList (s->ctx->queue, 0, NULL, &markers[b % STEPS_IN_FLIGHT]);
      if (err == CL_SUCCESS)
        err = clFlush (s->ctx->queue);
      if (err != CL_SUCCESS)
        {
          kilt_set_cl_error (error, err, s->ctx->info->name, "queueing training step %u", b + 1);
          goto out;
        }

      /* Metrics: a non-blocking read now and then; reported when it has landed. */
      if (rd.pending)
        {
          cl_int st = CL_QUEUED;
          clGetEventInfo (rd.event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
          if (st == CL_COMPLETE || st < 0)
            {
              KiltEvent sev = { .type = KILT_EVENT_STEP };
              double elapsed = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
              clReleaseEvent (rd.event);
              rd.pending = FALSE;
              if (st < 0)
                {
                  kilt_set_cl_error (error, st, s->ctx->info->name, "reading the metrics");
                  goto out;
                }
              if (!check_finite (s, rd.values, s->global_step - (b + 1 - rd.step), error))
                goto out;
              sev.epoch = epoch + 1;
              sev.step = rd.step;
              sev.global_step = s->global_step;
              sev.loss = rd.values[2] > 0 ? rd.values[0] / rd.values[2] : NAN;
              sev.accuracy = rd.values[2] > 0 ? rd.values[1] / rd.values[2] : NAN;
              /* Since the warm-up, as the epoch's figure: counted from the epoch's start, the
               * first reports of a run carried the compile time and the curve rose from 0.
               * 0 while nothing has been timed past the warm-up. */
              {
                double rate_s
                    = (g_get_monotonic_time () - rate_t0 - (s->paused_us - rate_paused0)) / 1e6;
                double n = rd.values[2] - warm_samples;
                sev.samples_per_second = n > 0 && rate_s > 0 ? n / rate_s : 0;
              }
              sev.eta_seconds = elapsed / MAX (rd.step, 1) * (n_batches - rd.step);
              sev.busy_percent = s->profiler ? kilt_profiler_busy_percent (s->profiler) : NAN;
              emit (s, &sev);
              emit_memory (s);
            }
        }
      now = g_get_monotonic_time ();
      if (!rd.pending && now - last_report >= REPORT_INTERVAL_US)
        {
          err = clEnqueueReadBuffer (s->ctx->queue, s->metrics->mem, CL_FALSE, 0, sizeof rd.values,
                                     rd.values, 0, NULL, &rd.event);
          if (err != CL_SUCCESS)
            {
              kilt_set_cl_error (error, err, s->ctx->info->name, "reading the metrics");
              goto out;
            }
          rd.pending = TRUE;
          rd.step = b + 1;
          last_report = now;
        }
    }
  ok = TRUE;
  goto out;

step_failed:
  prefix_step_error (s, error, stage, epoch + 1, step_in_epoch);

out:
  s->ctx->profiling = FALSE;
  /* Drain before anything is read or freed, even after an error. */
  clFinish (s->ctx->queue);
  if (s->profiler && !kilt_profiler_collect (s->profiler, s->ctx, ok ? error : NULL))
    ok = FALSE;
  for (guint i = 0; i < STEPS_IN_FLIGHT; i++)
    if (markers[i])
      clReleaseEvent (markers[i]);
  if (rd.pending)
    clReleaseEvent (rd.event);
  if (!ok || should_stop (t))
    return ok;

  ev.epoch = epoch + 1;
  ev.step = n_batches;
  ev.global_step = s->global_step;
  if (!read_metrics (s, s->metrics, &ev.loss, &ev.accuracy, error))
    return FALSE;
  {
    float m[METRICS_FLOATS] = { (float)ev.loss, 0, 1, 0 };
    if (!check_finite (s, m, s->global_step, error))
      return FALSE;
  }
  ev.samples_per_second
      = samples
        / MAX ((g_get_monotonic_time () - rate_t0 - (s->paused_us - rate_paused0)) / 1e6, 1e-9);
  ev.warmup_seconds = warmup;
  ev.val_loss = ev.val_accuracy = NAN;
  if (s->eval_batcher && !evaluate (s, s->eval_batcher, &ev.val_loss, &ev.val_accuracy, error))
    return FALSE;
  /* The last update can break the weights after the last training loss was taken. */
  if (s->eval_batcher && !should_stop (t)
      && !check_finite_loss (s, s->eval_split == &t->data->val ? "validation" : "test", ev.val_loss,
                             s->global_step, error))
    return FALSE;
  s->eval_loss = ev.val_loss;
  s->eval_accuracy = ev.val_accuracy;
  s->eval_step = s->global_step;
  ev.epoch_seconds = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
  kilt_mem_stats_snapshot (&s->ctx->mem, &ev.mem);
  ev.busy_percent = s->profiler ? kilt_profiler_busy_percent (s->profiler) : NAN;
  emit (s, &ev);
  emit_memory (s);
  if (s->profiler)
    {
      KiltEvent tev = { .type = KILT_EVENT_TIMINGS };
      tev.epoch = epoch + 1;
      tev.timings = kilt_profiler_timings (s->profiler);
      emit (s, &tev);
      g_array_unref (tev.timings);
    }
  return TRUE;
}

/* Everything but the context itself, so that its counters can still be read. */
static void
session_free_buffers (Session *s)
{
  if (s->ctx)
    clFinish (s->ctx->queue);
  g_clear_pointer (&s->profiler, kilt_profiler_free);
  g_clear_pointer (&s->eval_metrics, kilt_buffer_free);
  g_clear_pointer (&s->eval_dout, kilt_buffer_free);
  g_clear_pointer (&s->metrics, kilt_buffer_free);
  g_clear_pointer (&s->targets, kilt_buffer_free);
  g_clear_pointer (&s->test_batcher, kilt_batcher_free);
  g_clear_pointer (&s->eval_batcher, kilt_batcher_free);
  g_clear_pointer (&s->train_batcher, kilt_batcher_free);
  g_clear_pointer (&s->opt, kilt_optimizer_free);
  g_clear_pointer (&s->exec, kilt_executor_free);
}

static void
session_free (Session *s)
{
  session_free_buffers (s);
  g_clear_pointer (&s->ctx, kilt_context_free);
  kilt_device_list_free (s->devices);
}

static gpointer
trainer_thread (gpointer data)
{
  KiltTrainer *t = data;
  Session s = { .trainer = t, .eval_step = G_MAXUINT64 };
  KiltEvent fin = { .type = KILT_EVENT_FINISHED };
  GError *error = NULL;
  guint epoch;

  fin.test_loss = fin.test_accuracy = NAN;
  if (!open_device (&s, &error) || !prepare (&s, &error))
    goto done;
  for (epoch = s.first_epoch; epoch < t->config.epochs && !should_stop (t); epoch++)
    {
      if (!run_epoch (&s, epoch, &error))
        break;
      if (should_stop (t))
        break;
      if (!save_checkpoint (&s, epoch + 1, &error))
        break;
    }
  /* With no validation split the test split was evaluated after the last epoch already, on
   * the same weights: those are the figures. */
  if (error == NULL && !should_stop (t) && s.eval_split == &t->data->test
      && s.eval_step == s.global_step)
    {
      fin.test_loss = s.eval_loss;
      fin.test_accuracy = s.eval_accuracy;
    }
  else if (error == NULL && !should_stop (t)
           && (s.test_batcher || (s.eval_split == &t->data->test && s.eval_batcher)))
    {
      const KiltSplit *keep = s.eval_split;
      s.eval_split = &t->data->test; /* for evaluate's messages */
      if (evaluate (&s, s.test_batcher ? s.test_batcher : s.eval_batcher, &fin.test_loss,
                    &fin.test_accuracy, &error)
          && !should_stop (t))
        check_finite_loss (&s, "test", fin.test_loss, s.global_step, &error);
      s.eval_split = keep;
    }

done:
  if (error)
    fin.status = KILT_RUN_FAILED;
  else if (should_stop (t))
    fin.status = KILT_RUN_STOPPED;
  else
    fin.status = KILT_RUN_FINISHED;
  fin.error = error;
  fin.global_step = s.global_step;
  if (s.ctx)
    kilt_mem_stats_snapshot (&s.ctx->mem, &fin.mem);
  t->status = fin.status;
  /* Everything on the device is released before the last event, so a receiver may start
   * the next run at once. */
  session_free_buffers (&s);
  if (s.ctx)
    fin.leaked_bytes = __atomic_load_n (&s.ctx->mem.live_total, __ATOMIC_RELAXED);
  /* The device the run opened, so a run that fails before STARTED (a plan that does not fit)
   * is still recorded with its device rather than "–". A copy: the context is freed first. */
  fin.device = s.ctx ? kilt_device_info_copy (s.ctx->info) : NULL;
  fin.device_name = fin.device ? fin.device->name : NULL;
  session_free (&s);
  emit (&s, &fin);
  kilt_device_info_free ((KiltDeviceInfo *)fin.device);
  g_clear_error (&error);
  return NULL;
}

/* ---- public ------------------------------------------------------------------------------- */

KiltTrainer *
kilt_trainer_new (KiltModel *model, KiltDataset *data, const KiltTrainConfig *config,
                  KiltEventFunc func, gpointer user_data)
{
  KiltTrainer *t = g_new0 (KiltTrainer, 1);

  t->model = model;
  t->data = data;
  t->config = *config;
  t->config.device_id = g_strdup (config->device_id);
  t->config.checkpoint_path = g_strdup (config->checkpoint_path);
  t->config.run_name = g_strdup (config->run_name);
  if (t->config.batch == 0)
    t->config.batch = 32;
  t->func = func;
  t->user_data = user_data;
  t->status = KILT_RUN_RUNNING;
  g_mutex_init (&t->lock);
  g_cond_init (&t->cond);
  return t;
}

void
kilt_trainer_start (KiltTrainer *trainer)
{
  g_return_if_fail (trainer->thread == NULL);
  trainer->thread = g_thread_new ("kilt-trainer", trainer_thread, trainer);
}

KiltRunStatus
kilt_trainer_join (KiltTrainer *trainer)
{
  if (trainer->thread)
    {
      g_thread_join (trainer->thread);
      trainer->thread = NULL;
    }
  return trainer->status;
}

void
kilt_trainer_free (KiltTrainer *trainer)
{
  if (trainer == NULL)
    return;
  kilt_trainer_stop (trainer);
  kilt_trainer_join (trainer);
  kilt_model_free (trainer->model);
  kilt_dataset_free (trainer->data);
  kilt_train_config_clear (&trainer->config);
  g_mutex_clear (&trainer->lock);
  g_cond_clear (&trainer->cond);
  g_free (trainer);
}

/* ---- evaluation of a checkpoint ----------------------------------------------------------- */

static void
ignore_event (const KiltEvent *event, gpointer user_data)
{
}

gboolean
kilt_trainer_evaluate (KiltModel *model, KiltDataset *data, const KiltTrainConfig *config,
                       double *loss, double *accuracy, GError **error)
{
  KiltTrainer t = { 0 };
  Session s = { .trainer = &t };
  const KiltSplit *split = data->test.n > 0 ? &data->test : &data->val;
  g_autoptr (KiltCheckpoint) ck = NULL;
  const float *wp = NULL, *ws = NULL;
  gboolean ok = FALSE;

  t.model = model;
  t.data = data;
  t.config = *config;
  t.func = ignore_event;
  s.eval_split = split;
  if (split->n == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s has no test or validation samples to evaluate on", data->name);
      return FALSE;
    }
  /* Without a checkpoint, the weights the model came with (an imported Keras file). */
  if (config->checkpoint_path == NULL
      && (!model->built || !kilt_model_get_weights (model, &wp, &ws)))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "evaluation needs a checkpoint with the trained weights");
      return FALSE;
    }
  if (config->checkpoint_path && !(ck = kilt_checkpoint_load (config->checkpoint_path, error)))
    return FALSE;
  if ((!model->built && !kilt_model_build (model, error)) || !open_device (&s, error))
    goto out;
  if (ck && !checkpoint_fits_model (ck, model, config->checkpoint_path, error))
    goto out;
  /* Inference only: no gradients, which for a CNN are about as large as its activations. */
  s.exec = kilt_executor_new (s.ctx, model, config->batch, FALSE, error);
  if (!s.exec || !check_loss_fits_model (&s, error)
      || !kilt_executor_upload (s.exec, ck ? ck->params : wp, ck ? ck->state : ws, error))
    goto out;
  s.eval_dout = kilt_buffer_new (s.ctx, KILT_MEM_WORKSPACE,
                                 4 * (gsize)config->batch * MAX (kilt_model_n_outputs (model), 1),
                                 error, "the loss gradient (evaluation)");
  if (!s.eval_dout)
    goto out;
  s.eval_batcher = kilt_batcher_new (s.ctx, data, split, config->batch, config->preprocess, FALSE,
                                     config->seed, 0, error);
  if (!s.eval_batcher)
    goto out;
  s.targets = kilt_buffer_new (s.ctx, KILT_MEM_WORKSPACE,
                               4 * (gsize)config->batch * MAX (kilt_model_n_outputs (model), 1),
                               error, "the batch targets");
  if (!s.targets)
    goto out;
  s.eval_metrics
      = kilt_buffer_new (s.ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (config->batch),
                         error, "the evaluation metrics");
  if (!s.eval_metrics)
    goto out;
  ok = evaluate (&s, s.eval_batcher, loss, accuracy, error);

out:
  t.model = NULL;
  session_free (&s);
  return ok;
}
