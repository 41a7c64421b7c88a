/* Training steps on several devices (replicas) and across an MPI job's ranks. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-dist"

#include "config.h"

#include "kilt-trainer-private.h"
#include "kilt-breadcrumb.h"
#include "kilt-error.h"
#include "kilt-loss.h"
#include "kilt-shares.h"

#include <math.h>
#include <string.h>

/* Calibration of several replicas, in steps since the run (or resumption) began: step 0 warms
 * up (kernels compile), 1-2 time each device at equal shares, then the shares follow the
 * measured speed; 3 warms up the new batch sizes, 4-5 time the whole step; 6-8 do the same for
 * the fastest device alone, when it can hold the whole batch, and the faster way wins. */
enum
{
  CAL_SPEED_FIRST = 1,
  CAL_SPEED_LAST = 2,
  CAL_MIX_FIRST = 4,
  CAL_MIX_LAST = 5,
  CAL_ALONE_WARM = 6,
  CAL_ALONE_FIRST = 7,
  CAL_ALONE_LAST = 8,
};

/* Once the shares are settled, one step in this many is timed on every device for its busy
 * figure: the host waits for each device's marker then, a few microseconds a device. */
#define BUSY_EVERY 8

/* $KILT_REDUCE_BUCKET (floats) for tests that want several buckets of a small model. */
static gsize
bucket_floats (void)
{
  const char *env = g_getenv ("KILT_REDUCE_BUCKET");
  guint64 v = env ? g_ascii_strtoull (env, NULL, 10) : 0;

  return v > 0 ? (gsize)v : KILT_REDUCE_BUCKET_FLOATS;
}

static gboolean
make_reducer (Session *s, GError **error)
{
  KiltExecutor **execs = g_newa (KiltExecutor *, s->n_rep);

  for (guint i = 0; i < s->n_rep; i++)
    execs[i] = s->rep[i].exec;
  s->reducer = kilt_grad_reducer_new (execs, s->n_rep, s->comm, bucket_floats (), error);
  return s->reducer != NULL;
}

static char *
describe_shares (Session *s)
{
  GString *str = g_string_new (NULL);

  for (guint i = 0; i < s->n_rep; i++)
    {
      g_string_append_printf (str, "%s[%u] %s %u", i ? ", " : "", i, s->rep[i].ctx->info->name,
                              s->rep[i].share);
      if (s->rep[i].step_ms > 0)
        g_string_append_printf (str, " (%.2f ms)", s->rep[i].step_ms);
    }
  return g_string_free (str, FALSE);
}

gboolean
kilt_session_dist_prepare (Session *s, GError **error)
{
  KiltTrainConfig *c = &s->trainer->config;

  if (s->comm)
    {
      /* Rank 0 read the checkpoint, if any: every rank starts where it does. */
      guint64 where[2] = { s->first_epoch, s->global_step };
      if (!kilt_comm_broadcast (s->comm, where, sizeof where, error))
        return FALSE;
      s->first_epoch = (guint)where[0];
      s->global_step = where[1];
    }
  if (!kilt_replicas_sync (s->rep, s->n_rep, 0, s->comm, error) || !make_reducer (s, error))
    return FALSE;
  s->fastest = -1;
  {
    g_autofree char *shares = describe_shares (s);
    if (s->comm)
      kilt_session_log (
          s, G_LOG_LEVEL_INFO, "Rank %d of %d on %s: rows %u..%u of every batch of %u, on %s",
          kilt_comm_rank (s->comm), kilt_comm_size (s->comm), kilt_comm_host (s->comm),
          s->rank_first, s->rank_first + s->rank_count - 1, c->batch, shares);
    else
      kilt_session_log (s, G_LOG_LEVEL_INFO,
                        "Data-parallel on %u devices, rows of every batch of %u: %s; gradients "
                        "summed on the host in %u bucket%s",
                        s->n_rep, c->batch, shares, kilt_grad_reducer_n_buckets (s->reducer),
                        kilt_grad_reducer_n_buckets (s->reducer) == 1 ? "" : "s");
  }
  return TRUE;
}

void
kilt_session_dist_free (Session *s)
{
  g_clear_pointer (&s->reducer, kilt_grad_reducer_free);
}

static gboolean
cl_ok (KiltReplica *rp, cl_int err, GError **error, const char *what)
{
  if (err == CL_SUCCESS)
    return TRUE;
  kilt_set_cl_error (error, err, rp->ctx->info->name, "%s", what);
  return FALSE;
}

static gboolean
finish_all (Session *s, GError **error)
{
  for (guint i = 0; i < s->n_rep; i++)
    if (!cl_ok (&s->rep[i], clFinish (s->rep[i].ctx->queue), error, "finishing a step"))
      return FALSE;
  return TRUE;
}

/* Rows of batch @b that count (the last batch may be short). */
static guint
global_valid (Session *s, KiltBatcher *batcher, gsize n, guint b)
{
  guint batch = kilt_batcher_batch_size (batcher);
  gsize pos = (gsize)b * batch;

  return pos >= n ? 0 : (guint)MIN ((gsize)batch, n - pos);
}

/* Waits for each replica's @done marker, noting when each one's work ended. */
static gboolean
time_replicas (Session *s, cl_event *done, gint64 t0, double *ms, GError **error)
{
  guint left = 0;

  for (guint i = 0; i < s->n_rep; i++)
    if (done[i])
      left++;
  while (left > 0)
    {
      for (guint i = 0; i < s->n_rep; i++)
        {
          cl_int st = CL_QUEUED;
          if (!done[i])
            continue;
          clGetEventInfo (done[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
          if (st < 0)
            return cl_ok (&s->rep[i], st, error, "timing a step");
          if (st == CL_COMPLETE)
            {
              ms[i] = (g_get_monotonic_time () - t0) / 1e3;
              clReleaseEvent (done[i]);
              done[i] = NULL;
              left--;
            }
        }
      if (left > 0)
        g_usleep (20);
    }
  return TRUE;
}

/* One training step of every replica on its rows of batch @b; @alone: the fastest replica
 * alone on the whole batch (calibration), without summing. */
static gboolean
dist_step (Session *s, guint b, gboolean alone, gboolean timed, guint epoch, guint *n_global,
           GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltTrainConfig *c = &t->config;
  gsize n = t->data->train.n;
  guint nv_all = global_valid (s, s->rep[0].train_batcher, n, b);
  double *w = g_newa (double, s->n_rep), *ms = g_newa (double, s->n_rep);
  cl_event *done = g_newa (cl_event, s->n_rep);
  gint64 t0 = g_get_monotonic_time ();
  const char *stage = NULL;
  guint fail_rep = 0;

  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      guint first = alone ? 0 : s->rank_first + rp->first;
      gsize pos = (gsize)b * c->batch + first;
      guint count = alone ? c->batch : rp->share;
      rp->n_valid = (alone && (gint)i != s->fastest) || pos >= n || count == 0
                        ? 0
                        : (guint)MIN ((gsize)count, n - pos);
      w[i] = nv_all > 0 ? (double)rp->n_valid / nv_all : 0;
      done[i] = NULL;
      ms[i] = 0;
    }
  *n_global = nv_all;
  if (s->reducer && !alone && !kilt_grad_reducer_begin (s->reducer, w, error))
    return FALSE;
  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      KiltNode *out = kilt_model_output (rp->model);
      guint first = alone ? 0 : s->rank_first + rp->first;
      guint count = alone ? c->batch : rp->share, got = 0;
      if (rp->n_valid == 0)
        continue;
      fail_rep = i;
      rp->exec->ex.batch = count;
      rp->exec->ex.step = s->global_step;
      rp->exec->ex.sample_offset = first;
      rp->ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_FORWARD);
      stage = "gathering the batch";
      if (!kilt_batcher_gather_slice (rp->train_batcher, b, first, count,
                                      kilt_executor_input (rp->exec), rp->targets->mem, &got,
                                      error))
        goto fail;
      stage = NULL;
      if (!kilt_executor_forward (rp->exec, TRUE, error))
        goto fail;
      stage = "the loss";
      if (!kilt_loss_enqueue_smoothed (rp->ctx, rp->model->loss, s->trainer->config.label_smoothing,
                                       count, got, kilt_model_n_outputs (rp->model), out->out,
                                       rp->targets->mem, out->dout, rp->metrics->mem, error))
        goto fail;
      stage = NULL;
      if (!kilt_executor_backward (rp->exec, error))
        goto fail;
      stage = "queueing the step";
      if (timed
          && !cl_ok (rp, clEnqueueMarkerWithWaitList (rp->ctx->queue, 0, NULL, &done[i]), error,
                     "timing a step"))
        goto fail;
      if (!cl_ok (rp, clFlush (rp->ctx->queue), error, "queueing a step"))
        goto fail;
    }
  if (timed && !time_replicas (s, done, t0, ms, error))
    return FALSE;
  for (guint i = 0; i < s->n_rep; i++)
    if (timed && s->rep[i].n_valid > 0)
      {
        if (s->settled)
          s->rep[i].busy_ms += ms[i];
        else
          s->rep[i].step_ms += ms[i];
      }
  stage = "summing the gradients";
  if (s->reducer && !alone && !kilt_grad_reducer_finish (s->reducer, error))
    goto fail;
  stage = "the optimizer update";
  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      if (alone && (gint)i != s->fastest)
        continue;
      fail_rep = i;
      rp->ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_UPDATE);
      if (!kilt_optimizer_step (rp->opt, rp->exec->params->mem, rp->exec->grads->mem,
                                s->global_step, error)
          || !cl_ok (rp, clFlush (rp->ctx->queue), error, "queueing a step"))
        goto fail;
    }
  return TRUE;

fail:
  for (guint i = 0; i < s->n_rep; i++)
    if (done[i])
      clReleaseEvent (done[i]);
  {
    /* The layer named by the failing replica's profiling tag, as on one device. */
    KiltReplica keep = s->rep[0];
    s->rep[0] = s->rep[fail_rep];
    kilt_session_prefix_step_error (s, error, stage, epoch + 1, b + 1);
    s->rep[0] = keep;
  }
  if (s->n_rep > 1)
    g_prefix_error (error, "on device [%u] %s: ", fail_rep, s->rep[fail_rep].ctx->info->name);
  return FALSE;
}

/* Frees every replica but @keep, which becomes the only one, on the whole batch. */
static void
keep_only (Session *s, guint keep)
{
  KiltTrainer *t = s->trainer;

  kilt_session_dist_free (s);
  if (keep != 0)
    {
      KiltReplica tmp = s->rep[0];
      s->rep[0] = s->rep[keep];
      s->rep[keep] = tmp;
    }
  for (guint i = 1; i < s->n_rep; i++)
    {
      kilt_replica_clear (&s->rep[i], s->rep[i].model != t->model);
      g_clear_pointer (&s->rep[i].ctx, kilt_context_free);
    }
  s->n_rep = 1;
  s->fastest = 0;
  s->rep[0].first = 0;
  s->rep[0].share = t->config.batch;
  s->rep[0].exec->ex.batch = t->config.batch;
  s->rep[0].exec->ex.sample_offset = 0;
}

/* Steps 1-2 measured each device: shares follow speed (rows per ms). */
static void
rebalance (Session *s)
{
  double *speed = g_newa (double, s->n_rep);
  guint *caps = g_newa (guint, s->n_rep), *parts = g_newa (guint, s->n_rep);
  double best = 0;

  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      rp->step_ms /= (CAL_SPEED_LAST - CAL_SPEED_FIRST + 1);
      speed[i] = rp->step_ms > 0 ? rp->share / rp->step_ms : 0;
      caps[i] = rp->cap;
      if (speed[i] > best)
        {
          best = speed[i];
          s->fastest = (gint)i;
        }
    }
  {
    g_autofree char *before = describe_shares (s);
    kilt_shares_split (s->rank_count, s->n_rep, speed, caps, parts);
    for (guint i = 0; i < s->n_rep; i++)
      {
        s->rep[i].share = parts[i];
        s->rep[i].first = kilt_shares_first (parts, i);
        /* The time this share should take, at the speed measured. */
        s->rep[i].step_ms = speed[i] > 0 ? parts[i] / speed[i] : 0;
      }
    g_autofree char *after = describe_shares (s);
    kilt_session_log (s, G_LOG_LEVEL_INFO,
                      "Measured at equal shares: %s; rows of each batch by speed now: %s", before,
                      after);
  }
}

/* Adds the training metrics of every replica but @keep to @keep's, before keep_only () frees
 * them: the rows those devices trained in the epoch's calibration steps stay in its loss and
 * accuracy (they were dropped: an epoch that went on alone counted 218 of 290 samples). */
static gboolean
fold_metrics (Session *s, guint keep, GError **error)
{
  float v[METRICS_FLOATS], sum[3] = { 0, 0, 0 };

  for (guint i = 0; i < s->n_rep; i++)
    {
      if (i == keep)
        continue;
      if (!kilt_buffer_read (s->rep[i].metrics, 0, v, sizeof v, error))
        return FALSE;
      for (guint k = 0; k < 3; k++)
        sum[k] += v[k];
    }
  if (!kilt_buffer_read (s->rep[keep].metrics, 0, v, sizeof v, error))
    return FALSE;
  for (guint k = 0; k < 3; k++)
    v[k] += sum[k];
  return kilt_buffer_write (s->rep[keep].metrics, 0, v, 3 * sizeof (float), error);
}

/* After the calibration's last step: all devices, or the fastest alone, whichever is faster
 * ($KILT_DIST_ALONE=1: alone whenever it can, for the test of that path). */
static gboolean
decide (Session *s, GError **error)
{
  KiltReplica *fast = &s->rep[s->fastest];
  double mix = s->calib_mix_ms / MAX (s->calib_mix_n, 1);
  double alone = s->calib_alone_ms / MAX (s->calib_alone_n, 1);

  /* $KILT_DIST_KEEP_ALL: the tests that compare N devices with one keep all N. */
  if ((alone <= mix || g_getenv ("KILT_DIST_ALONE")) && !g_getenv ("KILT_DIST_KEEP_ALL"))
    {
      GString *why = g_string_new (NULL);
      for (guint i = 0; i < s->n_rep; i++)
        if ((gint)i != s->fastest)
          g_string_append_printf (why, "%s%s would take %.2f ms for its %u rows",
                                  why->len ? "; " : "", s->rep[i].ctx->info->name,
                                  s->rep[i].step_ms, s->rep[i].share);
      kilt_session_log (s, G_LOG_LEVEL_WARNING,
                        "Training on %s alone: a step takes %.2f ms there, %.2f ms with every "
                        "device (%s)",
                        fast->ctx->info->name, alone, mix, why->str);
      g_string_free (why, TRUE);
      if (!fold_metrics (s, (guint)s->fastest, error))
        return FALSE;
      keep_only (s, (guint)s->fastest);
      return TRUE;
    }
  kilt_session_log (s, G_LOG_LEVEL_INFO,
                    "Training on all %u devices: a step takes %.2f ms, %.2f ms on %s alone "
                    "(%.2fx)",
                    s->n_rep, mix, alone, fast->ctx->info->name, alone / mix);
  /* The others sat out the fastest one's steps alone: they take its weights. */
  return kilt_replicas_sync (s->rep, s->n_rep, (guint)s->fastest, NULL, error);
}

/* Whether calibration also times the fastest device alone: one process (ranks must step
 * together), and that device can hold the whole batch. */
static gboolean
can_go_alone (Session *s)
{
  return s->comm == NULL && s->fastest >= 0 && s->rep[s->fastest].cap >= s->trainer->config.batch;
}

/* Sums [loss, correct, count] over replicas (and ranks) of @which metrics. */
static gboolean
sum_metrics (Session *s, gboolean eval, double m[3], GError **error)
{
  m[0] = m[1] = m[2] = 0;
  for (guint i = 0; i < s->n_rep; i++)
    {
      float v[METRICS_FLOATS];
      KiltBuffer *buf = eval ? s->rep[i].eval_metrics : s->rep[i].metrics;
      if (!kilt_buffer_read (buf, 0, v, sizeof v, error))
        return FALSE;
      for (guint k = 0; k < 3; k++)
        m[k] += v[k];
    }
  return s->comm == NULL || kilt_comm_sum_doubles (s->comm, m, 3, error);
}

/* Replica @rp's rows of evaluation batch @b from @bt, into its eval metrics. */
static gboolean
eval_rows (Session *s, KiltReplica *rp, KiltBatcher *bt, guint b, GError **error)
{
  KiltNode *out = kilt_model_output (rp->model);
  guint first = s->rank_first + rp->first, got = 0;

  if (rp->share == 0)
    return TRUE;
  rp->exec->ex.batch = rp->share;
  rp->exec->ex.sample_offset = first;
  if (!kilt_batcher_gather_slice (bt, b, first, rp->share, kilt_executor_input (rp->exec),
                                  rp->targets->mem, &got, error))
    return FALSE;
  if (got == 0)
    return TRUE;
  return kilt_executor_forward (rp->exec, FALSE, error)
         && kilt_loss_enqueue_smoothed (rp->ctx, rp->model->loss,
                                        s->trainer->config.label_smoothing, rp->share, got,
                                        kilt_model_n_outputs (rp->model), out->out,
                                        rp->targets->mem, out->dout, rp->eval_metrics->mem, error)
         && cl_ok (rp, clFlush (rp->ctx->queue), error, "queueing an evaluation");
}

gboolean
kilt_session_dist_evaluate (Session *s, gboolean test, double *loss, double *acc, GError **error)
{
  KiltTrainer *t = s->trainer;
  KiltBatcher *first_batcher = NULL;
  const KiltSplit *split;
  double m[3];
  guint n_batches;

  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      KiltBatcher *bt = test && rp->test_batcher ? rp->test_batcher : rp->eval_batcher;
      if (bt == NULL)
        {
          *loss = *acc = NAN;
          return TRUE;
        }
      first_batcher = first_batcher ? first_batcher : bt;
      if (!kilt_session_zero_metrics (s, rp->eval_metrics, error)
          || !kilt_batcher_begin_epoch (bt, 0, FALSE, error))
        return FALSE;
    }
  split = test && s->rep[0].test_batcher ? &t->data->test : s->eval_split;
  n_batches = kilt_batcher_n_batches (first_batcher);
  for (guint b = 0; b < n_batches && !kilt_session_should_stop (t); b++)
    for (guint i = 0; i < s->n_rep; i++)
      {
        KiltReplica *rp = &s->rep[i];
        KiltBatcher *bt = test && rp->test_batcher ? rp->test_batcher : rp->eval_batcher;
        if (!eval_rows (s, rp, bt, b, error))
          {
            if (s->n_rep > 1)
              g_prefix_error (error, "on device [%u] %s: ", i, rp->ctx->info->name);
            g_prefix_error (error, "evaluating on the %s split, batch %u: ",
                            split == &t->data->val ? "validation" : "test", b + 1);
            return FALSE;
          }
      }
  if (!sum_metrics (s, TRUE, m, error))
    return FALSE;
  *loss = m[2] > 0 ? m[0] / m[2] : NAN;
  *acc = m[2] > 0 ? m[1] / m[2] : NAN;
  return TRUE;
}

gboolean
kilt_session_agree_stop (Session *s, GError **error)
{
  KiltTrainer *t = s->trainer;
  double wanted;

  if (s->comm == NULL)
    return TRUE;
  wanted = g_atomic_int_get (&t->stop_wanted) || kilt_session_should_stop (t) ? 1 : 0;
  if (!kilt_comm_sum_doubles (s->comm, &wanted, 1, error))
    return FALSE;
  if (wanted > 0 && !kilt_session_should_stop (t))
    {
      kilt_session_log (s, G_LOG_LEVEL_INFO,
                        "Stopping at step %" G_GUINT64_FORMAT ": %.0f of %d ranks asked to stop",
                        s->global_step, wanted, kilt_comm_size (s->comm));
      g_atomic_int_set (&t->stop, 1);
    }
  return TRUE;
}

gboolean
kilt_session_dist_epoch (Session *s, guint epoch, GError **error)
{
  KiltTrainer *t = s->trainer;
  guint n_batches = kilt_batcher_n_batches (s->rep[0].train_batcher);
  /* An MPI job reports every few steps, at the same step on every rank (the figures are
   * summed over ranks); one process, a few times a second. */
  guint every = s->comm ? MAX (1u, n_batches / 20) : 0;
  gint64 t0 = g_get_monotonic_time (), last_report = t0, rate_t0 = t0;
  gint64 paused0 = s->paused_us, rate_paused0 = s->paused_us;
  KiltEvent ev = { .type = KILT_EVENT_EPOCH };
  KiltReplicaShare *shares;
  double samples = 0, warmup = 0, reduce_ms = 0, m[3];
  guint reduce_n = 0;

  for (guint i = 0; i < s->n_rep; i++)
    {
      if (!kilt_session_zero_metrics (s, s->rep[i].metrics, error)
          || !kilt_batcher_begin_epoch (s->rep[i].train_batcher, epoch, TRUE, error))
        return FALSE;
      s->rep[i].busy_ms = 0;
    }
  s->busy_wall_ms = 0;
  s->busy_t0 = 0;

  for (guint b = 0; b < n_batches; b++)
    {
      guint64 k = s->global_step - s->first_global_step;
      gboolean calibrating = s->n_rep > 1 && s->reducer && !s->settled;
      gboolean alone = FALSE, timed = FALSE, measure_wall = FALSE;
      guint n_global = 0;
      gint64 step_t0;

      if (!kilt_session_wait_if_paused (s))
        break;
      kilt_breadcrumb_step (epoch + 1, s->global_step + 1);
      kilt_fault_step ();
      if (calibrating && s->n_rep > 1)
        {
          gboolean can_alone = can_go_alone (s);
          timed = k >= CAL_SPEED_FIRST && k <= CAL_SPEED_LAST;
          measure_wall = (k >= CAL_MIX_FIRST && k <= CAL_MIX_LAST)
                         || (can_alone && k >= CAL_ALONE_FIRST && k <= CAL_ALONE_LAST);
          alone = can_alone && k >= CAL_ALONE_WARM && k <= CAL_ALONE_LAST;
          if (measure_wall && !finish_all (s, error))
            return FALSE;
        }
      step_t0 = g_get_monotonic_time ();
      if (s->busy_t0)
        {
          s->busy_wall_ms += (step_t0 - s->busy_t0) / 1e3;
          s->busy_t0 = 0;
        }
      if (s->settled && s->n_rep > 1 && b % BUSY_EVERY == BUSY_EVERY / 2 && b + 1 < n_batches)
        {
          timed = TRUE;
          s->busy_t0 = step_t0;
        }
      if (!dist_step (s, b, alone, timed, epoch, &n_global, error))
        return FALSE;
      if (s->reducer && !alone)
        {
          reduce_ms += kilt_grad_reducer_last_ms (s->reducer);
          reduce_n++;
        }
      if (measure_wall)
        {
          if (!finish_all (s, error))
            return FALSE;
          if (alone)
            {
              s->calib_alone_ms += (g_get_monotonic_time () - step_t0) / 1e3;
              s->calib_alone_n++;
            }
          else
            {
              s->calib_mix_ms += (g_get_monotonic_time () - step_t0) / 1e3;
              s->calib_mix_n++;
            }
        }
      s->global_step++;
      samples += n_global;
      if (s->global_step == s->first_global_step + 1)
        {
          if (!finish_all (s, error))
            return FALSE;
          warmup = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
          rate_t0 = g_get_monotonic_time ();
          rate_paused0 = s->paused_us;
          samples = 0;
        }
      if (calibrating && s->n_rep > 1)
        {
          gboolean can_alone = can_go_alone (s);
          if (k == CAL_SPEED_LAST)
            rebalance (s);
          else if ((k == CAL_MIX_LAST && !can_alone) || k == CAL_ALONE_LAST)
            {
              if (k == CAL_ALONE_LAST && !decide (s, error))
                return FALSE;
              if (k == CAL_MIX_LAST)
                kilt_session_log (s, G_LOG_LEVEL_INFO,
                                  "Training on all %u devices: a step takes %.2f ms (%s cannot "
                                  "hold the whole batch alone)",
                                  s->n_rep, s->calib_mix_ms / MAX (s->calib_mix_n, 1),
                                  s->rep[s->fastest].ctx->info->name);
              s->settled = TRUE;
            }
        }
      if (every ? (b + 1) % every == 0 || b + 1 == n_batches
                : g_get_monotonic_time () - last_report >= REPORT_INTERVAL_US)
        {
          KiltEvent sev = { .type = KILT_EVENT_STEP };
          double elapsed = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
          double rate_s = (g_get_monotonic_time () - rate_t0 - (s->paused_us - rate_paused0)) / 1e6;
          if (!sum_metrics (s, FALSE, m, error) || !kilt_session_agree_stop (s, error))
            return FALSE;
          last_report = g_get_monotonic_time ();
          if (!kilt_session_check_finite_loss (s, "training", m[2] > 0 ? m[0] / m[2] : 0,
                                               s->global_step, error))
            return FALSE;
          sev.epoch = epoch + 1;
          sev.step = b + 1;
          sev.global_step = s->global_step;
          sev.loss = m[2] > 0 ? m[0] / m[2] : NAN;
          sev.accuracy = m[2] > 0 ? m[1] / m[2] : NAN;
          sev.samples_per_second = samples > 0 && rate_s > 0 ? samples / rate_s : 0;
          sev.eta_seconds = elapsed / (b + 1) * (n_batches - b - 1);
          sev.busy_percent = NAN;
          kilt_session_emit (s, &sev);
          kilt_session_emit_memory (s);
        }
    }
  if (!finish_all (s, error) || !kilt_session_agree_stop (s, error))
    return FALSE;
  if (kilt_session_should_stop (t))
    return TRUE;

  ev.epoch = epoch + 1;
  ev.step = n_batches;
  ev.global_step = s->global_step;
  if (!sum_metrics (s, FALSE, m, error))
    return FALSE;
  ev.loss = m[2] > 0 ? m[0] / m[2] : NAN;
  ev.accuracy = m[2] > 0 ? m[1] / m[2] : NAN;
  if (!kilt_session_check_finite_loss (s, "training", ev.loss, s->global_step, error))
    return FALSE;
  ev.samples_per_second
      = samples
        / MAX ((g_get_monotonic_time () - rate_t0 - (s->paused_us - rate_paused0)) / 1e6, 1e-9);
  ev.warmup_seconds = warmup;
  /* Each replica's running statistics came from its own rows: one average for all, and
   * rank 0's weights everywhere, before evaluating and checkpointing. */
  if (s->n_rep > 1 || s->comm)
    if (!kilt_replicas_sync (s->rep, s->n_rep, 0, s->comm, error))
      return FALSE;
  ev.val_loss = ev.val_accuracy = NAN;
  if (s->eval_split
      && !kilt_session_dist_evaluate (s, FALSE, &ev.val_loss, &ev.val_accuracy, error))
    return FALSE;
  if (s->eval_split && !kilt_session_should_stop (t)
      && !kilt_session_check_finite_loss (s, s->eval_split == &t->data->val ? "validation" : "test",
                                          ev.val_loss, s->global_step, error))
    return FALSE;
  s->eval_loss = ev.val_loss;
  s->eval_accuracy = ev.val_accuracy;
  s->eval_step = s->global_step;
  ev.epoch_seconds = (g_get_monotonic_time () - t0 - (s->paused_us - paused0)) / 1e6;
  kilt_mem_stats_snapshot (&s->rep[0].ctx->mem, &ev.mem);
  ev.busy_percent = NAN;
  shares = g_newa (KiltReplicaShare, s->n_rep);
  for (guint i = 0; i < s->n_rep; i++)
    {
      KiltReplica *rp = &s->rep[i];
      KiltMemStats mem;
      kilt_mem_stats_snapshot (&rp->ctx->mem, &mem);
      shares[i] = (KiltReplicaShare){
        .device_name = rp->ctx->info->name,
        .share = rp->share,
        .step_ms = rp->step_ms,
        .samples_per_second = rp->step_ms > 0 ? rp->share / rp->step_ms * 1e3 : 0,
        .busy_percent
        = s->busy_wall_ms > 0 ? MIN (100.0, 100.0 * rp->busy_ms / s->busy_wall_ms) : NAN,
        .live_bytes = mem.live_total,
        .peak_bytes = mem.peak_total,
      };
    }
  ev.n_replicas = s->n_rep;
  ev.replicas = shares;
  ev.dist_step_ms = s->calib_mix_n ? s->calib_mix_ms / s->calib_mix_n : 0;
  ev.alone_step_ms = s->calib_alone_n ? s->calib_alone_ms / s->calib_alone_n : 0;
  ev.n_ranks = s->comm ? (guint)kilt_comm_size (s->comm) : 1;
  ev.reduce_ms = reduce_n ? reduce_ms / reduce_n : 0;
  kilt_session_emit (s, &ev);
  kilt_session_emit_memory (s);
  return TRUE;
}
