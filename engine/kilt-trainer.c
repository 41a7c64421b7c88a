/* A training session on its own thread: commands in, events out. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-trainer"

#include "config.h"

#include "kilt-trainer.h"
#include "kilt-trainer-private.h"
#include "kilt-gemm-tf32.h"
#include "kilt-batcher.h"
#include "kilt-breadcrumb.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-ids.h"
#include "kilt-loss.h"
#include "kilt-optimizer.h"
#include "kilt-planner.h"
#include "kilt-profiler.h"
#include "kilt-vendor-memory.h"
#include "kilt-whiten.h"
#include "data/kilt-data-private.h"
#include "dist/kilt-reduce.h"
#include "dist/kilt-replica.h"
#include "dist/kilt-shares.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* How many steps may be queued on the device ahead of the host: enough to keep it busy,
 * few enough that stop and pause answer within a few steps. */
#define STEPS_IN_FLIGHT 3

static const char *on_oom_names[] = { "fail", "resume-smaller" };

const char *
kilt_on_oom_name (KiltOnOom on_oom)
{
  g_return_val_if_fail ((guint)on_oom < G_N_ELEMENTS (on_oom_names), "fail");
  return on_oom_names[on_oom];
}

gboolean
kilt_on_oom_from_name (const char *name, KiltOnOom *out)
{
  for (guint i = 0; name && i < G_N_ELEMENTS (on_oom_names); i++)
    if (g_str_equal (name, on_oom_names[i]))
      {
        *out = (KiltOnOom)i;
        return TRUE;
      }
  return FALSE;
}

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
kilt_train_config_copy (KiltTrainConfig *dst, const KiltTrainConfig *src)
{
  *dst = *src;
  dst->device_id = g_strdup (src->device_id);
  dst->checkpoint_path = g_strdup (src->checkpoint_path);
  dst->run_name = g_strdup (src->run_name);
  dst->devices = g_strdupv (src->devices);
}

void
kilt_train_config_clear (KiltTrainConfig *config)
{
  g_clear_pointer (&config->device_id, g_free);
  g_clear_pointer (&config->checkpoint_path, g_free);
  g_clear_pointer (&config->run_name, g_free);
  g_clear_pointer (&config->devices, g_strfreev);
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

void
kilt_session_emit (Session *s, KiltEvent *ev)
{
  if (ev->type == KILT_EVENT_STEP || ev->type == KILT_EVENT_EPOCH)
    {
      /* Stamped here, so every training loop (one device or several) reports them alike. */
      ev->elapsed_seconds = MAX (g_get_monotonic_time () - s->train_t0_us - s->paused_us, 0) / 1e6;
      /* The rate the last step used (its 0-based iteration is global_step - 1). */
      ev->learning_rate = kilt_optimizer_scheduled_lr (&s->trainer->config.opt,
                                                       ev->global_step ? ev->global_step - 1 : 0);
    }
  s->trainer->func (ev, s->trainer->user_data);
}

void
kilt_session_log (Session *s, GLogLevelFlags level, const char *fmt, ...)
{
  KiltEvent ev = { .type = KILT_EVENT_LOG, .level = level };
  va_list ap;

  va_start (ap, fmt);
  ev.message = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  kilt_session_emit (s, &ev);
  g_free (ev.message);
}

void
kilt_session_emit_memory (Session *s)
{
  KiltEvent ev = { .type = KILT_EVENT_MEMORY };

  kilt_mem_stats_snapshot (&s->rep[0].ctx->mem, &ev.mem);
  ev.vendor_used_bytes = kilt_vendor_used_bytes (s->rep[0].ctx->info);
  kilt_session_emit (s, &ev);
}

/* ---- commands ----------------------------------------------------------------------------- */

gboolean
kilt_session_should_stop (KiltTrainer *t)
{
  return g_atomic_int_get (&t->stop) != 0;
}

/* Blocks while paused; returns FALSE when a stop arrived. */
gboolean
kilt_session_wait_if_paused (Session *s)
{
  KiltTrainer *t = s->trainer;
  gboolean was_paused = FALSE;
  gint64 pause_t0 = 0;

  g_mutex_lock (&t->lock);
  while (t->paused && !kilt_session_should_stop (t) && !g_atomic_int_get (&t->stop_wanted))
    {
      if (!was_paused)
        {
          g_mutex_unlock (&t->lock);
          /* Let the device drain so the pause is a real pause. */
          clFinish (s->rep[0].ctx->queue);
          kilt_session_log (s, G_LOG_LEVEL_INFO, "Paused at step %" G_GUINT64_FORMAT,
                            s->global_step);
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
  if (was_paused && !kilt_session_should_stop (t))
    kilt_session_log (s, G_LOG_LEVEL_INFO, "Resumed");
  return !kilt_session_should_stop (t);
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

static void
stop_now (KiltTrainer *trainer)
{
  g_atomic_int_set (&trainer->stop, 1);
  g_mutex_lock (&trainer->lock);
  g_cond_broadcast (&trainer->cond);
  g_mutex_unlock (&trainer->lock);
}

void
kilt_trainer_stop (KiltTrainer *trainer)
{
  /* A rank that stopped alone would leave the others waiting in a collective. */
  if (trainer->config.comm)
    {
      g_atomic_int_set (&trainer->stop_wanted, 1);
      g_mutex_lock (&trainer->lock);
      g_cond_broadcast (&trainer->cond);
      g_mutex_unlock (&trainer->lock);
      return;
    }
  stop_now (trainer);
}

/* ---- set-up ------------------------------------------------------------------------------- */

/* The device @name names, or an error saying what `kilt-cli devices` would list. */
static const KiltDeviceInfo *
find_device (Session *s, const char *name, GError **error)
{
  const KiltDeviceInfo *info = kilt_device_list_find (s->devices, name);

  if (info == NULL)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                 "No OpenCL device matches \"%s\" (or several do); `kilt-cli devices` lists them",
                 name);
  return info;
}

static KiltContext *
open_context (Session *s, const KiltDeviceInfo *info, GError **error)
{
  KiltContext *ctx;

  if (info->unusable_reason)
    kilt_session_log (s, G_LOG_LEVEL_WARNING, "%s may not work: %s", info->name,
                      info->unusable_reason);
  ctx = kilt_context_new (info, error);
  if (ctx == NULL)
    return NULL;
  kilt_session_log (s, G_LOG_LEVEL_INFO, "Kernels for %s %s in %.2f s", info->name,
                    ctx->from_cache ? "loaded from the cache" : "compiled", ctx->compile_seconds);
  if (s->trainer->config.precision != KILT_PRECISION_FP32)
    {
      if (!kilt_context_set_precision (ctx, s->trainer->config.precision, error))
        {
          kilt_context_free (ctx);
          return NULL;
        }
      kilt_session_log (s, G_LOG_LEVEL_INFO, "Training in %s on %s: GEMMs on tensor cores",
                        kilt_precision_name (s->trainer->config.precision), info->name);
    }
  return ctx;
}

static gboolean
open_device (Session *s, GError **error)
{
  KiltTrainConfig *c = &s->trainer->config;
  guint n = c->devices ? g_strv_length (c->devices) : 0;
  const KiltDeviceInfo **infos;

  s->devices = kilt_device_list_new ();
  s->comm = c->comm;
  if (n > KILT_MAX_DEVICES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%u devices asked for; Kilt trains on at most %d at once", n, KILT_MAX_DEVICES);
      return FALSE;
    }
  s->n_rep = MAX (n, 1);
  s->rep = g_new0 (KiltReplica, s->n_rep);
  infos = g_newa (const KiltDeviceInfo *, s->n_rep);
  if (n > 0)
    for (guint i = 0; i < n; i++)
      {
        if ((infos[i] = find_device (s, c->devices[i], error)) == NULL)
          return FALSE;
        for (guint j = 0; j < i; j++)
          if (infos[j] == infos[i])
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                           "--devices names %s twice (\"%s\" and \"%s\")", infos[i]->name,
                           c->devices[j], c->devices[i]);
              return FALSE;
            }
      }
  else if (c->device_id)
    {
      if ((infos[0] = find_device (s, c->device_id, error)) == NULL)
        return FALSE;
    }
  else if (s->comm && kilt_comm_size (s->comm) > 1)
    {
      /* One rank per device of its host, in the order `kilt-cli devices` lists them. */
      guint nd = s->devices->devices->len;
      if (nd == 0 && kilt_device_list_choose_default (s->devices, error) == NULL)
        return FALSE;
      infos[0] = g_ptr_array_index (s->devices->devices,
                                    (guint)kilt_comm_local_rank (s->comm) % MAX (nd, 1));
    }
  else if ((infos[0] = kilt_device_list_choose_default (s->devices, error)) == NULL)
    return FALSE;
  for (guint i = 0; i < s->n_rep; i++)
    if ((s->rep[i].ctx = open_context (s, infos[i], error)) == NULL)
      {
        if (s->n_rep > 1)
          g_prefix_error (error, "device %u of %u (%s): ", i + 1, s->n_rep, infos[i]->name);
        return FALSE;
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
                       "model %s has %u outputs but data set %s has %u classes; use "
                       "--replace-head to train a new %u-class head (the window: Replace head "
                       "on the Model page)",
                       m->name, n_out, d->name, d->n_classes, d->n_classes);
          return FALSE;
        }
      for (guint i = 0; i < s->n_rep; i++)
        if (s->rep[i].exec)
          s->rep[i].exec->ex.softmax_fused_node = out->index;
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
  /* An id outside the table would read zeros on the device; say which one it is instead. */
  return kilt_ids_check_data (m, d, error);
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

  if (ck->algos == NULL || ck->algos->len == 0
      || g_strcmp0 (ck->device_id, s->rep[0].ctx->info->id))
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
    kilt_session_log (s, G_LOG_LEVEL_INFO,
                      "Kept the algorithms of %u layer%s that the checkpoint recorded", n,
                      n == 1 ? "" : "s");
}

static gboolean
load_checkpoint (Session *s, GError **error)
{
  KiltTrainer *t = s->trainer;
  g_autoptr (KiltCheckpoint) ck = kilt_checkpoint_load (t->config.checkpoint_path, error);

  /* The file or the host's memory, not the device's. */
  s->host_memory = ck == NULL;
  if (ck == NULL)
    return FALSE;
  if (!checkpoint_fits_model (ck, t->model, t->config.checkpoint_path, error))
    return FALSE;
  if (ck->n_opt_state != kilt_optimizer_state_floats (&t->config.opt, t->model->n_grads))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "checkpoint %s holds another optimizer's state (%" G_GUINT64_FORMAT
                   " floats; %s here keeps %zu): resume with the optimizer it was trained with "
                   "and the same layers frozen",
                   t->config.checkpoint_path, ck->n_opt_state,
                   kilt_optimizer_name (t->config.opt.type),
                   kilt_optimizer_state_floats (&t->config.opt, t->model->n_grads));
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
  if (!kilt_executor_upload (s->rep[0].exec, ck->params, ck->state, error)
      || !kilt_optimizer_write_state (s->rep[0].opt, ck->opt_state, error))
    return FALSE;
  restore_algos (s, ck);
  s->first_epoch = ck->epochs_done;
  t->have_checkpoint = TRUE;
  t->checkpoint_epochs = ck->epochs_done;
  s->global_step = ck->global_step;
  kilt_session_log (s, G_LOG_LEVEL_INFO,
                    "Resumed from %s after epoch %u (step %" G_GUINT64_FORMAT ")",
                    t->config.checkpoint_path, ck->epochs_done, ck->global_step);
  return TRUE;
}

static gboolean
save_checkpoint (Session *s, guint epochs_done, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltCheckpoint ck = { 0 };
  gboolean ok;

  if (t->config.checkpoint_path == NULL || (s->comm && kilt_comm_rank (s->comm) > 0))
    return TRUE;
  ck.n_params = t->model->n_params;
  ck.n_state = t->model->n_state;
  ck.n_opt_state = kilt_optimizer_state_floats (&t->config.opt, t->model->n_grads);
  ck.epochs_done = epochs_done;
  ck.global_step = s->global_step;
  ck.seed = t->config.seed;
  ck.model_hash = kilt_model_hash (t->model);
  ck.device_id = s->rep[0].ctx->info->id;
  ck.algos = chosen_algos (s->rep[0].model);
  ck.optimizer = (guint32)t->config.opt.type + 1;
  ck.run_token = s->run_token;
  /* Host copies as large as the model: out of host memory, the run fails saying so and the
   * last checkpoint stays as it was. */
  ok = (ck.params = kilt_data_try_alloc (4 * (ck.n_params + 1), t->config.checkpoint_path,
                                         "a host copy of the weights", error))
       && (ck.state = kilt_data_try_alloc (4 * (ck.n_state + 1), t->config.checkpoint_path,
                                           "a host copy of the layers' state", error))
       && (ck.opt_state = kilt_data_try_alloc (4 * (ck.n_opt_state + 1), t->config.checkpoint_path,
                                               "a host copy of the optimizer state", error));
  s->host_memory = !ok;
  ok = ok && kilt_executor_download (s->rep[0].exec, ck.params, ck.state, error)
       && kilt_optimizer_read_state (s->rep[0].opt, ck.opt_state, error);
  /* Past the device: what fails now is the host's (its memory, its disk). */
  if (ok && !kilt_checkpoint_save (&ck, t->config.checkpoint_path, error))
    {
      ok = FALSE;
      s->host_memory = TRUE;
    }
  if (ok)
    {
      t->have_checkpoint = TRUE;
      t->checkpoint_epochs = epochs_done;
    }
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

/* One device's executor (for @exec_batch rows), optimizer, data and buffers, once its plan fits
 * (*@plan_out gets the plan). */
static gboolean
prepare_replica (Session *s, KiltReplica *rp, guint exec_batch, KiltPlan **plan_out, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltTrainConfig *c = &t->config;
  KiltDataset *d = t->data;
  KiltContext *ctx = rp->ctx;
  KiltPreprocess pp;
  guint64 data_bytes
      = kilt_batcher_device_bytes (ctx, d, &d->train, c->batch, 0, NULL)
        + (s->eval_split ? kilt_batcher_device_bytes (ctx, d, s->eval_split, c->batch, 0, NULL) : 0)
        + (s->eval_split == &d->val && d->test.n > 0
               ? kilt_batcher_device_bytes (ctx, d, &d->test, c->batch, 0, NULL)
               : 0);
  KiltPlan *plan = kilt_plan_compute_memory (rp->model, exec_batch, &c->opt, data_bytes, ctx->info,
                                             ctx->budget, c->memory);

  *plan_out = plan;
  if (rp == &s->rep[0])
    {
      s->planned_bytes = plan->total;
      s->data_bytes = data_bytes;
    }
  if (!kilt_plan_check (plan, error))
    {
      g_prefix_error (error, "model %s: ", rp->model->name);
      if (plan->hint && error && *error)
        {
          /* Keeping was asked for: say what --memory auto or recompute would do. */
          char *m = g_strdup_printf ("%s; %s", (*error)->message, plan->hint);
          g_free ((*error)->message);
          (*error)->message = m;
        }
      return FALSE;
    }
  rp->cap = exec_batch;
  rp->share = exec_batch;
  rp->exec = kilt_executor_new_recompute (ctx, rp->model, exec_batch,
                                          plan->recompute ? plan->keep : NULL, error);
  if (rp->exec == NULL)
    return FALSE;
  rp->exec->ex.seed = c->seed;
  /* Frozen layers' parameters have no optimizer state: it covers the trainable runs only. */
  rp->opt = kilt_optimizer_new (ctx, &c->opt, rp->model->n_grads, error);
  if (rp->opt == NULL)
    return FALSE;
  kilt_optimizer_set_ranges (rp->opt, rp->model->grad_ranges, rp->model->n_grad_ranges);
  /* A model that reads ids gets them as stored (no scaling); standardising them is refused. */
  if (!kilt_ids_preprocess (rp->model, c->preprocess, &pp, error))
    return FALSE;
  rp->train_batcher
      = kilt_batcher_new (ctx, d, &d->train, c->batch, pp, c->augment, c->seed, 0, error);
  if (rp->train_batcher == NULL
      || !kilt_batcher_set_translate (rp->train_batcher, c->translate, error))
    return FALSE;
  kilt_batcher_set_alternate_flip (rp->train_batcher, c->alternate_flip);
  if (s->eval_split)
    {
      rp->eval_batcher
          = kilt_batcher_new (ctx, d, s->eval_split, c->batch, pp, FALSE, c->seed, 0, error);
      if (rp->eval_batcher == NULL)
        return FALSE;
    }
  /* Validation picks the epochs; the test split still gives the run's final figures. */
  if (s->eval_split == &d->val && d->test.n > 0)
    {
      rp->test_batcher
          = kilt_batcher_new (ctx, d, &d->test, c->batch, pp, FALSE, c->seed, 0, error);
      if (rp->test_batcher == NULL)
        return FALSE;
    }
  /* These three are kilt_plan_step_bytes (): the plan counts them. */
  rp->targets = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE,
                                 4 * (gsize)exec_batch * MAX (kilt_model_n_outputs (rp->model), 1),
                                 error, "the batch targets");
  if (rp->targets == NULL)
    return FALSE;
  rp->metrics = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (exec_batch),
                                 error, "the training metrics");
  if (rp->metrics == NULL)
    return FALSE;
  rp->eval_metrics
      = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (exec_batch), error,
                         "the evaluation metrics");
  return rp->eval_metrics != NULL;
}

/* The buffer flip test-time augmentation keeps the first pass's outputs in, when asked for. */
static gboolean
prepare_tta (Session *s, GError **error)
{
  KiltReplica *rp = &s->rep[0];

  const KiltShape *shape = &s->trainer->data->shape;

  if (!s->trainer->config.tta_flip || rp->tta_out)
    return TRUE;
  if (shape->w < 2)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "flip test-time augmentation mirrors images left to right; %s's samples are "
                   "%u wide",
                   s->trainer->data->name ? s->trainer->data->name : "the data", shape->w);
      return FALSE;
    }
  rp->tta_out = kilt_buffer_new (rp->ctx, KILT_MEM_WORKSPACE,
                                 4 * (gsize)s->trainer->config.batch
                                     * MAX (kilt_model_n_outputs (rp->model), 1),
                                 error, "the unflipped predictions (flip test-time augmentation)");
  return rp->tta_out != NULL;
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

  if (!t->model->built && !kilt_model_build (t->model, error))
    return FALSE;
  if (c->augment && c->translate > 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "two augmentations asked for: Keras' flip and shift (--augment) and a flip "
                   "with a %u-pixel translation (--translate); give one",
                   c->translate);
      return FALSE;
    }
  if (c->alternate_flip && !c->augment && c->translate == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "alternating flips (--alternate-flip) need an augmentation that flips: "
                   "--translate N or --augment");
      return FALSE;
    }
  if (c->checkpoint_path && (c->comm == NULL || kilt_comm_rank (c->comm) == 0)
      && !check_checkpoint_folder (c->checkpoint_path, error))
    return FALSE;
  if (c->val_fraction > 0 && d->val.n == 0
      && !kilt_dataset_split_validation (d, c->val_fraction, c->seed, error))
    return FALSE;
  /* The trainer owns the data set, so a quick run can simply train on the first samples of
   * the (already shuffled by the loader or the split) training split. */
  if (c->max_train_samples > 0 && d->train.n > c->max_train_samples)
    {
      kilt_session_log (s, G_LOG_LEVEL_INFO, "Training on the first %u of %zu training samples",
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

  if (t->model->n_grads == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s has no trainable parameters: every layer with weights is frozen "
                   "(unfreeze some, e.g. with --unfreeze-all or a lower --freeze-until)",
                   t->model->name);
      return FALSE;
    }
  s->rep[0].model = t->model;
  s->rank_first = 0;
  s->rank_count = c->batch;
  if (s->comm)
    {
      guint n_ranks = (guint)kilt_comm_size (s->comm), rank = (guint)kilt_comm_rank (s->comm);
      guint *parts = g_newa (guint, n_ranks);
      kilt_shares_split (c->batch, n_ranks, NULL, NULL, parts);
      s->rank_first = kilt_shares_first (parts, rank);
      s->rank_count = parts[rank];
      if (s->rank_count < s->n_rep)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "a batch of %u cannot be shared by %u ranks of %u device%s each: give "
                       "--batch at least %u",
                       c->batch, n_ranks, s->n_rep, s->n_rep == 1 ? "" : "s", n_ranks * s->n_rep);
          return FALSE;
        }
    }
  else if (c->batch < s->n_rep)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a batch of %u cannot be shared by %u devices: give --batch at least %u",
                   c->batch, s->n_rep, s->n_rep);
      return FALSE;
    }
  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      gboolean dist = s->n_rep > 1 || s->comm;
      guint cap = dist ? kilt_shares_cap (s->rank_count, s->n_rep) : c->batch;
      g_autoptr (KiltPlan) p = NULL;
      if (i > 0 && (rp->model = kilt_replica_copy_model (t->model, error)) == NULL)
        return FALSE;
      if (!prepare_replica (s, rp, cap, i == 0 ? &plan : &p, error))
        {
          if (s->n_rep > 1)
            g_prefix_error (error, "on device [%u] %s: ", i, rp->ctx->info->name);
          return FALSE;
        }
    }
  if (!check_loss_fits_model (s, error)
      || !kilt_loss_check_smoothing (t->model->loss, c->label_smoothing, error))
    return FALSE;
  if (s->n_rep > 1 || s->comm)
    {
      guint *parts = g_newa (guint, s->n_rep), *caps = g_newa (guint, s->n_rep);
      for (guint i = 0; i < s->n_rep; i++)
        caps[i] = s->rep[i].cap;
      kilt_shares_split (s->rank_count, s->n_rep, NULL, caps, parts);
      for (guint i = 0; i < s->n_rep; i++)
        {
          s->rep[i].share = parts[i];
          s->rep[i].first = kilt_shares_first (parts, i);
        }
    }

  /* Rank 0 alone reads the checkpoint; the others get its weights below. */
  if (c->resume && c->checkpoint_path && (s->comm == NULL || kilt_comm_rank (s->comm) == 0)
      && g_file_test (c->checkpoint_path, G_FILE_TEST_EXISTS))
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
          kilt_session_log (s, G_LOG_LEVEL_INFO, "Starts from the model's %s",
                            t->model->weights_note);
        }
      else
        {
          g_autoptr (GString) note = g_string_new (NULL);
          KiltPreprocess pp;
          kilt_model_init_params (t->model, c->seed, params, state);
          /* Whitening layers take their filters from the training images, normalised as the
           * batches will be. */
          if (!kilt_ids_preprocess (t->model, c->preprocess, &pp, error)
              || !kilt_whiten_init (t->model, t->data, pp, params, note, error))
            return FALSE;
          if (note->len)
            kilt_session_log (s, G_LOG_LEVEL_INFO, "%s", note->str);
        }
      if (!kilt_executor_upload (s->rep[0].exec, params, state, error))
        return FALSE;
    }
  if ((s->n_rep > 1 || s->comm) && !kilt_session_dist_prepare (s, error))
    return FALSE;
  /* Per-layer times are taken on one device's queue. */
  if (c->profile && s->n_rep == 1 && s->comm == NULL)
    s->profiler = kilt_profiler_new (t->model);
  if (c->tta_flip && (s->n_rep > 1 || s->comm))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "flip test-time augmentation evaluates on one device; this run trains on %u "
                   "devices%s",
                   s->n_rep, s->comm ? " of several ranks" : "");
      return FALSE;
    }
  if (!prepare_tta (s, error))
    return FALSE;
  s->first_global_step = s->global_step;
  if (c->opt.lookahead)
    {
      /* The average starts from the weights the run starts from: a fresh run's (after any
       * whitening), or a resumption's checkpoint, which holds no average of its own. */
      KiltReplica *rp = &s->rep[0];
      if (s->n_rep > 1 || s->comm)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "lookahead averages the weights of one device; this run trains on %u "
                       "devices%s",
                       s->n_rep, s->comm ? " of several ranks" : "");
          return FALSE;
        }
      s->lookahead = kilt_lookahead_new (rp->ctx, rp->exec->params->mem, t->model->n_params,
                                         rp->exec->state ? rp->exec->state->mem : NULL,
                                         t->model->n_state, error);
      if (s->lookahead == NULL)
        return FALSE;
      s->lookahead_total = s->global_step
                           + (guint64)(c->epochs - MIN (s->first_epoch, c->epochs))
                                 * kilt_batcher_n_batches (rp->train_batcher);
      if (s->first_epoch > 0)
        kilt_session_log (s, G_LOG_LEVEL_INFO,
                          "Lookahead starts its average again from the checkpoint's weights");
    }
  /* The schedule's length is known only now: the steps of an epoch at this batch, and where a
   * resumption takes the run up. Every replica's optimizer and the reported rate follow it. */
  if (!kilt_lr_schedule_resolve (&c->opt.schedule, kilt_batcher_n_batches (s->rep[0].train_batcher),
                                 c->epochs, s->first_epoch, s->global_step, error))
    return FALSE;
  for (guint i = 0; i < s->n_rep; i++)
    kilt_optimizer_set_schedule (s->rep[i].opt, &c->opt.schedule);
  s->train_t0_us = g_get_monotonic_time ();

  ev.device = s->rep[0].ctx->info;
  ev.device_name = s->rep[0].ctx->info->name;
  ev.compile_seconds = s->rep[0].ctx->compile_seconds;
  ev.compile_cached = s->rep[0].ctx->from_cache;
  ev.planned_bytes = plan->total;
  ev.device_bytes = s->rep[0].ctx->budget;
  ev.recompute = plan->recompute;
  ev.blocks_kept = plan->n_blocks_kept;
  ev.blocks_total = plan->n_blocks;
  ev.recompute_percent = plan->recompute_percent;
  ev.max_batch = plan->max_batch;
  ev.message = plan->memory_line;
  ev.n_params = t->model->n_params;
  ev.flops_per_sample = kilt_model_flops (t->model);
  ev.steps_per_epoch = kilt_batcher_n_batches (s->rep[0].train_batcher);
  /* Random and never 0 ("none"): a resume checks that a checkpoint is this run's. The same
   * after an out-of-memory restart: it is the same run. */
  if (t->run_token == 0)
    t->run_token = ((guint64)g_random_int () << 32 | g_random_int ()) | 1;
  s->run_token = t->run_token;
  ev.run_token = s->run_token;
  ev.batch = c->batch;
  ev.change = t->change;
  ev.epoch = s->first_epoch;
  ev.global_step = s->global_step;
  {
    KiltReplicaShare *shares = g_newa (KiltReplicaShare, s->n_rep);
    g_autofree char *names = kilt_replicas_names (s->rep, s->n_rep);
    if (s->n_rep > 1)
      {
        for (guint i = 0; i < s->n_rep; i++)
          shares[i] = (KiltReplicaShare){ .device_name = s->rep[i].ctx->info->name,
                                          .share = s->rep[i].share,
                                          .busy_percent = NAN,
                                          .live_bytes = -1,
                                          .peak_bytes = -1 };
        ev.n_replicas = s->n_rep;
        ev.replicas = shares;
        ev.device_name = names;
      }
    ev.n_ranks = s->comm ? (guint)kilt_comm_size (s->comm) : 1;
    kilt_session_emit (s, &ev);
  }
  kilt_session_emit_memory (s);
  return TRUE;
}

/* ---- the loop ----------------------------------------------------------------------------- */

gboolean
kilt_session_zero_metrics (Session *s, KiltBuffer *metrics, GError **error)
{
  const float zero = 0.0f;
  cl_int err = clEnqueueFillBuffer (metrics->ctx->queue, metrics->mem, &zero, sizeof zero, 0,
                                    metrics->bytes, 0, NULL, NULL);

  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, metrics->ctx->info->name, "clearing %s", metrics->label);
      return FALSE;
    }
  return TRUE;
}

/* Mean loss and accuracy over everything accumulated in @metrics (blocking read). */
gboolean
kilt_session_read_metrics (Session *s, KiltBuffer *metrics, double *loss, double *acc,
                           GError **error)
{
  float m[METRICS_FLOATS];

  if (!kilt_buffer_read (metrics, 0, m, sizeof m, error))
    return FALSE;
  *loss = m[2] > 0 ? m[0] / m[2] : NAN;
  *acc = m[2] > 0 ? m[1] / m[2] : NAN;
  return TRUE;
}

/* Flip test-time augmentation after the first forward pass: keeps its outputs, runs the
 * mirrored batch and leaves the mean of the two in the output node. */
static gboolean
forward_mirrored (Session *s, KiltBatcher *batcher, guint b, GError **error)
{
  KiltReplica *rp = &s->rep[0];
  KiltNode *out = kilt_model_output (rp->model);
  cl_uint n = (cl_uint)((gsize)s->trainer->config.batch * kilt_model_n_outputs (rp->model));
  cl_int err;
  cl_kernel k;
  gboolean ok;

  err = clEnqueueCopyBuffer (rp->ctx->queue, out->out, rp->tta_out->mem, 0, 0, 4 * (size_t)n, 0,
                             NULL, NULL);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, rp->ctx->info->name, "keeping the unflipped predictions");
      return FALSE;
    }
  kilt_batcher_set_mirror (batcher, TRUE);
  ok = kilt_batcher_gather (batcher, b, kilt_executor_input (rp->exec), rp->targets->mem, NULL,
                            error);
  kilt_batcher_set_mirror (batcher, FALSE);
  if (!ok || !kilt_executor_forward (rp->exec, FALSE, error))
    return FALSE;
  k = kilt_context_kernel (rp->ctx, "kilt_mean_of_two", error);
  if (!k)
    return FALSE;
  err = CL_SUCCESS;
  KILT_ARG (k, 0, out->out, err);
  KILT_ARG (k, 1, rp->tta_out->mem, err);
  KILT_ARG (k, 2, n, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (rp->ctx, k, n, error);
}

static gboolean
evaluate (Session *s, KiltBatcher *batcher, double *loss, double *acc, GError **error)
{
  KiltTrainer *t = s->trainer;
  guint n_out = kilt_model_n_outputs (s->rep[0].model);
  KiltNode *out = kilt_model_output (s->rep[0].model);
  gboolean profiling = s->rep[0].ctx->profiling;

  s->rep[0].ctx->profiling = FALSE;
  if (!kilt_session_zero_metrics (s, s->rep[0].eval_metrics, error)
      || !kilt_batcher_begin_epoch (batcher, 0, FALSE, error))
    return FALSE;
  for (guint b = 0; b < kilt_batcher_n_batches (batcher); b++)
    {
      guint n_valid = 0;
      if (kilt_session_should_stop (t))
        break;
      if (!kilt_batcher_gather (batcher, b, kilt_executor_input (s->rep[0].exec),
                                s->rep[0].targets->mem, &n_valid, error)
          || !kilt_executor_forward (s->rep[0].exec, FALSE, error)
          || (t->config.tta_flip && !forward_mirrored (s, batcher, b, error))
          || !kilt_loss_enqueue_smoothed (
              s->rep[0].ctx, t->model->loss, t->config.label_smoothing, t->config.batch, n_valid,
              n_out, out->out, s->rep[0].targets->mem,
              s->rep[0].eval_dout ? s->rep[0].eval_dout->mem : out->dout,
              s->rep[0].eval_metrics->mem, error))
        {
          g_prefix_error (error, "evaluating on the %s split, batch %u: ",
                          s->eval_split == &t->data->val ? "validation" : "test", b + 1);
          return FALSE;
        }
    }
  s->rep[0].ctx->profiling = profiling;
  return kilt_session_read_metrics (s, s->rep[0].eval_metrics, loss, acc, error);
}

typedef struct
{
  gboolean pending;
  cl_event event;
  float values[METRICS_FLOATS];
  guint step; /* the step the read follows */
} MetricsRead;

gboolean
kilt_session_check_finite_loss (Session *s, const char *which, double loss, guint64 step,
                                GError **error)
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
  return kilt_session_check_finite_loss (s, "training", m[0], step, error);
}

/* Says where a training step failed: the layer and phase the executor had reached (it sets
 * the profiling tag before each layer) or, around the layers, @stage. */
void
kilt_session_prefix_step_error (Session *s, GError **error, const char *stage, guint epoch,
                                guint step)
{
  static const char *phases[] = { "forward", "backward", "update" };
  int tag = s->rep[0].ctx->prof_tag;
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
  guint n_batches = kilt_batcher_n_batches (s->rep[0].train_batcher);
  guint n_out = kilt_model_n_outputs (s->rep[0].model);
  KiltNode *out = kilt_model_output (s->rep[0].model);
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

  if (!kilt_session_zero_metrics (s, s->rep[0].metrics, error)
      || !kilt_batcher_begin_epoch (s->rep[0].train_batcher, epoch, TRUE, error))
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

      if (!kilt_session_wait_if_paused (s))
        break;
      step_in_epoch = b + 1;
      /* Where a crash or hang happened, for the worker's crash handler; and the test faults
       * that make one. */
      kilt_breadcrumb_step (epoch + 1, s->global_step + 1);
      kilt_fault_step ();
      s->rep[0].ctx->profiling = profile;
      s->rep[0].exec->ex.step = s->global_step;
      s->rep[0].ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_FORWARD);
      stage = "gathering the batch";
      kilt_breadcrumb_stage (stage);
      if (!kilt_batcher_gather (s->rep[0].train_batcher, b, kilt_executor_input (s->rep[0].exec),
                                s->rep[0].targets->mem, &n_valid, error))
        goto step_failed;
      stage = NULL;
      if (!kilt_executor_forward (s->rep[0].exec, TRUE, error))
        goto step_failed;
      s->rep[0].ctx->prof_tag = KILT_PROF_TAG (out->index, KILT_PHASE_BACKWARD);
      stage = "the loss";
      kilt_breadcrumb_stage (stage);
      if (!kilt_loss_enqueue_smoothed (s->rep[0].ctx, t->model->loss, c->label_smoothing, c->batch,
                                       n_valid, n_out, out->out, s->rep[0].targets->mem, out->dout,
                                       s->rep[0].metrics->mem, error))
        goto step_failed;
      stage = NULL;
      if (!kilt_executor_backward (s->rep[0].exec, error))
        goto step_failed;
      s->rep[0].ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_UPDATE);
      stage = "the optimizer update";
      kilt_breadcrumb_stage (stage);
      if (!kilt_optimizer_step (s->rep[0].opt, s->rep[0].exec->params->mem,
                                s->rep[0].exec->grads->mem, s->global_step, error))
        goto step_failed;
      if (profile)
        kilt_profiler_add_step (s->profiler);
      s->global_step++;
      {
        double decay;
        if (s->lookahead && kilt_lookahead_due (s->global_step, s->lookahead_total, &decay)
            && !kilt_lookahead_update (s->lookahead, decay, error))
          goto step_failed;
      }
      samples += n_valid;
      if (s->global_step == s->first_global_step + 1)
        {
          if (!kilt_context_finish (s->rep[0].ctx, error))
            goto out;
          warmup = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
          rate_t0 = g_get_monotonic_time ();
          rate_paused0 = s->paused_us;
          warm_samples = samples;
          samples = 0;
          kilt_session_log (
              s, G_LOG_LEVEL_INFO,
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
              kilt_set_cl_error (error, err, s->rep[0].ctx->info->name, "training step %u", b + 1);
              goto out;
            }
        }
      err = clEnqueueMarkerWithWaitList (s->rep[0].ctx->queue, 0, NULL,
                                         &markers[b % STEPS_IN_FLIGHT]);
      if (err == CL_SUCCESS)
        err = clFlush (s->rep[0].ctx->queue);
      if (err != CL_SUCCESS)
        {
          kilt_set_cl_error (error, err, s->rep[0].ctx->info->name, "queueing training step %u",
                             b + 1);
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
                  kilt_set_cl_error (error, st, s->rep[0].ctx->info->name, "reading the metrics");
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
              kilt_session_emit (s, &sev);
              kilt_session_emit_memory (s);
            }
        }
      now = g_get_monotonic_time ();
      if (!rd.pending && now - last_report >= REPORT_INTERVAL_US)
        {
          err = clEnqueueReadBuffer (s->rep[0].ctx->queue, s->rep[0].metrics->mem, CL_FALSE, 0,
                                     sizeof rd.values, rd.values, 0, NULL, &rd.event);
          if (err != CL_SUCCESS)
            {
              kilt_set_cl_error (error, err, s->rep[0].ctx->info->name, "reading the metrics");
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
  kilt_session_prefix_step_error (s, error, stage, epoch + 1, step_in_epoch);

out:
  s->rep[0].ctx->profiling = FALSE;
  /* Drain before anything is read or freed, even after an error. */
  clFinish (s->rep[0].ctx->queue);
  if (s->profiler && !kilt_profiler_collect (s->profiler, s->rep[0].ctx, ok ? error : NULL))
    ok = FALSE;
  for (guint i = 0; i < STEPS_IN_FLIGHT; i++)
    if (markers[i])
      clReleaseEvent (markers[i]);
  if (rd.pending)
    clReleaseEvent (rd.event);
  if (!ok || kilt_session_should_stop (t))
    return ok;

  ev.epoch = epoch + 1;
  ev.step = n_batches;
  ev.global_step = s->global_step;
  if (!kilt_session_read_metrics (s, s->rep[0].metrics, &ev.loss, &ev.accuracy, error))
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
  if (s->rep[0].eval_batcher
      && !evaluate (s, s->rep[0].eval_batcher, &ev.val_loss, &ev.val_accuracy, error))
    return FALSE;
  /* The last update can break the weights after the last training loss was taken. */
  if (s->rep[0].eval_batcher && !kilt_session_should_stop (t)
      && !kilt_session_check_finite_loss (s, s->eval_split == &t->data->val ? "validation" : "test",
                                          ev.val_loss, s->global_step, error))
    return FALSE;
  s->eval_loss = ev.val_loss;
  s->eval_accuracy = ev.val_accuracy;
  s->eval_step = s->global_step;
  ev.epoch_seconds = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
  kilt_mem_stats_snapshot (&s->rep[0].ctx->mem, &ev.mem);
  ev.busy_percent = s->profiler ? kilt_profiler_busy_percent (s->profiler) : NAN;
  kilt_session_emit (s, &ev);
  kilt_session_emit_memory (s);
  if (s->profiler)
    {
      KiltEvent tev = { .type = KILT_EVENT_TIMINGS };
      tev.epoch = epoch + 1;
      tev.timings = kilt_profiler_timings (s->profiler);
      kilt_session_emit (s, &tev);
      g_array_unref (tev.timings);
    }
  return TRUE;
}

/* Everything but the contexts themselves, so that their counters can still be read. */
static void
session_free_buffers (Session *s)
{
  kilt_session_dist_free (s);
  g_clear_pointer (&s->profiler, kilt_profiler_free);
  g_clear_pointer (&s->lookahead, kilt_lookahead_free);
  for (guint i = 0; i < s->n_rep; i++)
    kilt_replica_clear (&s->rep[i], s->rep[i].model != s->trainer->model);
}

static void
session_free (Session *s)
{
  session_free_buffers (s);
  for (guint i = 0; i < s->n_rep; i++)
    g_clear_pointer (&s->rep[i].ctx, kilt_context_free);
  g_clear_pointer (&s->rep, g_free);
  s->n_rep = 0;
  kilt_device_list_free (s->devices);
}

/* After the device ran out of memory mid-run (@error), with KILT_ON_OOM_RESUME_SMALLER: sets
 * the config for the next session (a smaller batch, the last checkpoint), says so, clears
 * @error and returns TRUE. FALSE (with @error kept, perhaps prefixed) when the run ends here.
 * The device's real capacity is unknown, only that it held less than the plan: when an
 * allocation failed, what it did hold; when a launch failed (drivers that allocate at first
 * use), the next plan takes three quarters of what the batch added to the model's fixed
 * needs, and the planner gives the largest batch within that. */
static gboolean
restart_after_oom (Session *s, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltTrainConfig *c = &t->config;
  KiltContext *ctx = s->rep && s->n_rep ? s->rep[0].ctx : NULL;
  g_autoptr (KiltPlan) one = NULL;
  g_autoptr (KiltPlan) smaller = NULL;
  g_autofree char *from = NULL;
  g_autofree char *cap_text = NULL;
  g_autofree char *need_text = NULL;
  guint64 live, fixed, capacity;
  guint batch;

  if (c->on_oom != KILT_ON_OOM_RESUME_SMALLER || !kilt_error_is_device_memory (*error)
      || s->host_memory || ctx == NULL || s->planned_bytes == 0 || kilt_session_should_stop (t))
    return FALSE;
  if (s->n_rep > 1 || s->comm)
    {
      kilt_session_log (s, G_LOG_LEVEL_WARNING,
                        "Out of device memory: a run on several devices or ranks is not resumed "
                        "at a smaller batch (one on a single device is)");
      return FALSE;
    }
  if (t->oom_restarts >= KILT_OOM_MAX_RESTARTS)
    {
      g_prefix_error (error, "out of device memory again after %u resumptions at smaller batches: ",
                      t->oom_restarts);
      return FALSE;
    }
  live = (guint64)__atomic_load_n (&ctx->mem.live_total, __ATOMIC_RELAXED);
  one = kilt_plan_compute_memory (t->model, 1, &c->opt, s->data_bytes, ctx->info, 0, c->memory);
  fixed = MIN (one->total, s->planned_bytes);
  capacity = fixed + (s->planned_bytes - fixed) / 4 * 3;
  if (live > fixed && live < capacity)
    capacity = live;
  /* As the run plans: with recompute when --memory lets it (auto, recompute). */
  smaller = kilt_plan_compute_memory (t->model, c->batch, &c->opt, s->data_bytes, ctx->info,
                                      capacity, c->memory);
  batch = MIN (smaller->max_batch, c->batch - 1);
  cap_text = kilt_format_bytes (capacity);
  need_text = kilt_format_bytes (s->planned_bytes);
  if (batch == 0)
    {
      if (c->batch <= 1)
        g_prefix_error (error, "out of device memory at batch 1, with no smaller batch to resume "
                               "at: ");
      else
        g_prefix_error (error,
                        "out of device memory at batch %u (planned %s), and no batch fits in "
                        "%s: ",
                        c->batch, need_text, cap_text);
      return FALSE;
    }
  c->resume = c->checkpoint_path && t->have_checkpoint
              && g_file_test (c->checkpoint_path, G_FILE_TEST_EXISTS);
  from = c->resume ? g_strdup_printf ("resumed from epoch %u", t->checkpoint_epochs)
                   : g_strdup ("restarted from the start (no checkpoint yet)");
  g_free (t->change);
  t->change = g_strdup_printf ("out of device memory at step %" G_GUINT64_FORMAT
                               "; %s at batch %u (was %u)",
                               s->global_step + 1, from, batch, c->batch);
  kilt_session_log (s, G_LOG_LEVEL_WARNING,
                    "%s. Batch %u planned %s; batch %u is the largest the plan fits in %s. (%s)",
                    t->change, c->batch, need_text, batch, cap_text, (*error)->message);
  t->oom_restarts++;
  t->oom_budget = capacity;
  c->batch = batch;
  g_clear_error (error);
  return TRUE;
}

static gpointer
trainer_thread (gpointer data)
{
  KiltTrainer *t = data;
  Session s = { .trainer = t, .eval_step = G_MAXUINT64 };
  KiltEvent fin = { .type = KILT_EVENT_FINISHED };
  GError *error = NULL;
  gboolean started = FALSE;
  guint epoch;

  fin.test_loss = fin.test_accuracy = NAN;
again:
  if (!open_device (&s, &error))
    goto done;
  if (t->oom_budget)
    s.rep[0].ctx->budget = MIN (s.rep[0].ctx->budget, t->oom_budget);
  if (!prepare (&s, &error))
    goto done;
  started = TRUE;
  for (epoch = s.first_epoch; epoch < t->config.epochs && !kilt_session_should_stop (t); epoch++)
    {
      /* A whitening layer's bias trains in the first epochs only. */
      for (guint i = 0; i < s.n_rep; i++)
        kilt_optimizer_set_epoch (s.rep[i].opt, epoch);
      if (!(s.reducer ? kilt_session_dist_epoch (&s, epoch, &error)
                      : run_epoch (&s, epoch, &error)))
        break;
      if (kilt_session_should_stop (t))
        break;
      if (!save_checkpoint (&s, epoch + 1, &error))
        break;
    }
  /* With no validation split the test split was evaluated after the last epoch already, on
   * the same weights: those are the figures. */
  if (error == NULL && !kilt_session_should_stop (t) && s.eval_split == &t->data->test
      && s.eval_step == s.global_step)
    {
      fin.test_loss = s.eval_loss;
      fin.test_accuracy = s.eval_accuracy;
    }
  else if (error == NULL && !kilt_session_should_stop (t)
           && (s.rep[0].test_batcher || (s.eval_split == &t->data->test && s.rep[0].eval_batcher)))
    {
      const KiltSplit *keep = s.eval_split;
      s.eval_split = &t->data->test; /* for evaluate's messages */
      if ((s.reducer
               ? kilt_session_dist_evaluate (&s, TRUE, &fin.test_loss, &fin.test_accuracy, &error)
               : evaluate (&s,
                           s.rep[0].test_batcher ? s.rep[0].test_batcher : s.rep[0].eval_batcher,
                           &fin.test_loss, &fin.test_accuracy, &error))
          && !kilt_session_should_stop (t))
        kilt_session_check_finite_loss (&s, "test", fin.test_loss, s.global_step, &error);
      s.eval_split = keep;
    }

done:
  /* Past the start (a plan that does not fit at first is the person's to change). */
  if (error && started && restart_after_oom (&s, &error))
    {
      session_free (&s);
      s = (Session){ .trainer = t, .eval_step = G_MAXUINT64 };
      goto again;
    }
  if (error)
    fin.status = KILT_RUN_FAILED;
  else if (kilt_session_should_stop (t))
    fin.status = KILT_RUN_STOPPED;
  else
    fin.status = KILT_RUN_FINISHED;
  fin.error = error;
  fin.global_step = s.global_step;
  if (s.rep[0].ctx)
    kilt_mem_stats_snapshot (&s.rep[0].ctx->mem, &fin.mem);
  t->status = fin.status;
  /* Everything on the device is released before the last event, so a receiver may start
   * the next run at once. */
  session_free_buffers (&s);
  if (s.rep[0].ctx)
    fin.leaked_bytes = __atomic_load_n (&s.rep[0].ctx->mem.live_total, __ATOMIC_RELAXED);
  /* The device the run opened, so a run that fails before STARTED (a plan that does not fit)
   * is still recorded with its device rather than "–". A copy: the context is freed first. */
  fin.device = s.rep[0].ctx ? kilt_device_info_copy (s.rep[0].ctx->info) : NULL;
  fin.device_name = fin.device ? fin.device->name : NULL;
  session_free (&s);
  kilt_session_emit (&s, &fin);
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
  kilt_train_config_copy (&t->config, config);
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
  stop_now (trainer);
  kilt_trainer_join (trainer);
  kilt_model_free (trainer->model);
  kilt_dataset_free (trainer->data);
  kilt_train_config_clear (&trainer->config);
  g_free (trainer->change);
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
  KiltPreprocess pp;
  gboolean ok = FALSE;

  t.model = model;
  t.data = data;
  t.config = *config;
  t.func = ignore_event;
  /* One device evaluates: the first of several. */
  if (config->devices && config->devices[0])
    t.config.device_id = config->devices[0];
  t.config.devices = NULL;
  t.config.comm = NULL;
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
  s.rep[0].model = model;
  if (ck && !checkpoint_fits_model (ck, model, config->checkpoint_path, error))
    goto out;
  /* Inference only: no gradients, which for a CNN are about as large as its activations. */
  s.rep[0].exec = kilt_executor_new (s.rep[0].ctx, model, config->batch, FALSE, error);
  if (!s.rep[0].exec || !check_loss_fits_model (&s, error)
      || !kilt_executor_upload (s.rep[0].exec, ck ? ck->params : wp, ck ? ck->state : ws, error))
    goto out;
  s.rep[0].eval_dout
      = kilt_buffer_new (s.rep[0].ctx, KILT_MEM_WORKSPACE,
                         4 * (gsize)config->batch * MAX (kilt_model_n_outputs (model), 1), error,
                         "the loss gradient (evaluation)");
  if (!s.rep[0].eval_dout)
    goto out;
  if (!kilt_ids_preprocess (model, config->preprocess, &pp, error))
    goto out;
  s.rep[0].eval_batcher = kilt_batcher_new (s.rep[0].ctx, data, split, config->batch, pp, FALSE,
                                            config->seed, 0, error);
  if (!s.rep[0].eval_batcher)
    goto out;
  s.rep[0].targets = kilt_buffer_new (
      s.rep[0].ctx, KILT_MEM_WORKSPACE,
      4 * (gsize)config->batch * MAX (kilt_model_n_outputs (model), 1), error, "the batch targets");
  if (!s.rep[0].targets)
    goto out;
  s.rep[0].eval_metrics = kilt_buffer_new (s.rep[0].ctx, KILT_MEM_WORKSPACE,
                                           4 * kilt_loss_metrics_floats (config->batch), error,
                                           "the evaluation metrics");
  if (!s.rep[0].eval_metrics)
    goto out;
  ok = prepare_tta (&s, error) && evaluate (&s, s.rep[0].eval_batcher, loss, accuracy, error);

out:
  session_free (&s);
  return ok;
}
