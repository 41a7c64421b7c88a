/* Device optimizers (Keras update rules) over a flat parameter buffer, and their C reference. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-optimizer"

#include "kilt-optimizer.h"
#include "kilt-error.h"

#include <math.h>
#include <string.h>

/* tf.keras' Adagrad starts its accumulator here rather than at 0, so the first steps are not
 * lr * sign (g). */
#define ADAGRAD_INITIAL_ACCUMULATOR 0.1

#define MAX_SLOTS 2

struct _KiltOptimizer
{
  KiltContext *ctx;
  KiltOptimizerConfig cfg;
  gsize n_params;
  guint n_slots;
  KiltBuffer *slot[MAX_SLOTS];
  cl_kernel kernel;
  /* Where the n_params floats of state and gradients sit in the parameter buffer: one run at
   * 0 unless layers are frozen (kilt_optimizer_set_ranges). */
  KiltParamRange *ranges;
  guint n_ranges;
  guint epoch; /* 0-based, of the run: ranges with an until_epoch stop there */
};

static const char *optimizer_names[KILT_OPT_N_TYPES] = {
  "sgd", "rmsprop", "adam", "adadelta", "adagrad",
};

static const char *kernel_names[KILT_OPT_N_TYPES] = {
  "kilt_opt_sgd", "kilt_opt_rmsprop", "kilt_opt_adam", "kilt_opt_adadelta", "kilt_opt_adagrad",
};

KiltOptimizerConfig
kilt_optimizer_config_default (KiltOptimizerType type)
{
  KiltOptimizerConfig c = { 0 };

  c.type = type;
  c.epsilon = 1e-7f;
  c.rho = 0.9f;
  c.beta1 = 0.9f;
  c.beta2 = 0.999f;
  c.schedule = kilt_lr_schedule_default ();
  switch (type)
    {
      case KILT_OPT_SGD:
        c.lr = 0.01f;
        break;
      case KILT_OPT_RMSPROP:
        c.lr = 1e-3f;
        break;
      case KILT_OPT_ADAM:
        c.lr = 1e-3f;
        break;
      case KILT_OPT_ADADELTA:
        /* Keras 2's Adadelta (used by mnist_cnn as Adadelta ()) defaults to 1.0; tf.keras later
         * lowered it to 1e-3, which barely trains that example. */
        c.lr = 1.0f;
        c.rho = 0.95f;
        break;
      case KILT_OPT_ADAGRAD:
        c.lr = 0.01f;
        break;
      default:
        g_return_val_if_reached (c);
    }
  return c;
}

const char *
kilt_optimizer_name (KiltOptimizerType type)
{
  g_return_val_if_fail (type < KILT_OPT_N_TYPES, "?");
  return optimizer_names[type];
}

gboolean
kilt_optimizer_from_name (const char *name, KiltOptimizerType *out)
{
  g_return_val_if_fail (name != NULL, FALSE);
  for (int t = 0; t < KILT_OPT_N_TYPES; t++)
    if (g_ascii_strcasecmp (name, optimizer_names[t]) == 0)
      {
        if (out)
          *out = (KiltOptimizerType)t;
        return TRUE;
      }
  return FALSE;
}

guint
kilt_optimizer_state_slots (const KiltOptimizerConfig *cfg)
{
  switch (cfg->type)
    {
      case KILT_OPT_SGD:
        return cfg->momentum != 0.0f ? 1 : 0;
      case KILT_OPT_RMSPROP:
      case KILT_OPT_ADAGRAD:
        return 1;
      case KILT_OPT_ADAM:
      case KILT_OPT_ADADELTA:
        return 2;
      default:
        g_return_val_if_reached (0);
    }
}

gsize
kilt_optimizer_state_floats (const KiltOptimizerConfig *cfg, gsize n_params)
{
  return kilt_optimizer_state_slots (cfg) * n_params;
}

static gboolean
check_range (GError **error, const char *opt, const char *field, float v, float lo,
             gboolean lo_open, float hi, gboolean hi_open)
{
  gboolean ok = isfinite (v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);

  if (!ok)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                 "%s: %s is %g; it must be in %s%g, %g%s", opt, field, v, lo_open ? "(" : "[", lo,
                 hi, hi_open ? ")" : "]");
  return ok;
}

gboolean
kilt_optimizer_config_check (const KiltOptimizerConfig *cfg, GError **error)
{
  const char *name;

  if (cfg->type >= KILT_OPT_N_TYPES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "unknown optimizer type %d",
                   (int)cfg->type);
      return FALSE;
    }
  name = optimizer_names[cfg->type];
  if (!check_range (error, name, "learning rate", cfg->lr, 0, TRUE, G_MAXFLOAT, FALSE)
      || !check_range (error, name, "decay", cfg->decay, 0, FALSE, G_MAXFLOAT, FALSE)
      || !check_range (error, name, "weight decay", cfg->weight_decay, 0, FALSE, G_MAXFLOAT, FALSE)
      || !kilt_lr_schedule_check (&cfg->schedule, error))
    return FALSE;
  switch (cfg->type)
    {
      case KILT_OPT_SGD:
        return check_range (error, name, "momentum", cfg->momentum, 0, FALSE, 1, TRUE);
      case KILT_OPT_RMSPROP:
      case KILT_OPT_ADADELTA:
        return check_range (error, name, "rho", cfg->rho, 0, FALSE, 1, TRUE)
               && check_range (error, name, "epsilon", cfg->epsilon, 0, TRUE, G_MAXFLOAT, FALSE);
      case KILT_OPT_ADAM:
        return check_range (error, name, "beta1", cfg->beta1, 0, FALSE, 1, TRUE)
               && check_range (error, name, "beta2", cfg->beta2, 0, FALSE, 1, TRUE)
               && check_range (error, name, "epsilon", cfg->epsilon, 0, TRUE, G_MAXFLOAT, FALSE);
      case KILT_OPT_ADAGRAD:
        return check_range (error, name, "epsilon", cfg->epsilon, 0, TRUE, G_MAXFLOAT, FALSE);
      default:
        return FALSE;
    }
}

double
kilt_optimizer_scheduled_lr (const KiltOptimizerConfig *cfg, guint64 iteration)
{
  /* Keras' time decay uses the iteration count before this step's increment. A flat schedule's
   * factor is exactly 1, so the decay alone stays Keras' figure to the bit. */
  return (double)cfg->lr * kilt_lr_schedule_factor (&cfg->schedule, iteration)
         / (1.0 + (double)cfg->decay * (double)iteration);
}

double
kilt_optimizer_lr_at (const KiltOptimizerConfig *cfg, guint64 iteration)
{
  double lr = kilt_optimizer_scheduled_lr (cfg, iteration);

  if (cfg->type == KILT_OPT_ADAM)
    {
      /* tf.keras 2 Adam (keras/optimizer_v2/adam.py, _prepare_local) folds the bias
       * correction into the rate, lr * sqrt (1 - beta2^t) / (1 - beta1^t) with t = iterations
       * + 1, and then applies p -= lr_t * m / (sqrt (v) + epsilon) (ResourceApplyAdam). Its
       * epsilon is the paper's "epsilon hat" (the docstring says so): it is NOT scaled by
       * sqrt (1 - beta2^t). */
      double t = (double)iteration + 1.0;
      lr *= sqrt (1.0 - pow (cfg->beta2, t)) / (1.0 - pow (cfg->beta1, t));
    }
  return lr;
}

/* ---- device ------------------------------------------------------------------------------- */

KiltOptimizer *
kilt_optimizer_new (KiltContext *ctx, const KiltOptimizerConfig *cfg, gsize n_params,
                    GError **error)
{
  KiltOptimizer *opt;

  g_return_val_if_fail (ctx != NULL && cfg != NULL, NULL);
  if (!kilt_optimizer_config_check (cfg, error))
    return NULL;
  if (n_params == 0 || n_params > G_MAXUINT32)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: cannot optimise %" G_GSIZE_FORMAT " parameters (1 to %u)",
                   optimizer_names[cfg->type], n_params, G_MAXUINT32);
      return NULL;
    }
  opt = g_new0 (KiltOptimizer, 1);
  opt->ctx = ctx;
  opt->cfg = *cfg;
  opt->n_params = n_params;
  opt->n_ranges = 1;
  opt->ranges = g_new (KiltParamRange, 1);
  opt->ranges[0] = (KiltParamRange){ 0, 0, n_params, FALSE, 0, 1.0f };
  opt->n_slots = kilt_optimizer_state_slots (cfg);
  opt->kernel = kilt_context_kernel (ctx, kernel_names[cfg->type], error);
  if (opt->kernel == NULL)
    {
      kilt_optimizer_free (opt);
      return NULL;
    }
  /* One buffer per slot rather than one of n_slots * n: each is no larger than the parameter
   * buffer, so it fits the device's largest single allocation whenever the parameters do. */
  for (guint s = 0; s < opt->n_slots; s++)
    {
      opt->slot[s] = kilt_buffer_new (ctx, KILT_MEM_OPTIMIZER, n_params * sizeof (float), error,
                                      "%s optimizer state %u", optimizer_names[cfg->type], s);
      if (opt->slot[s] == NULL)
        {
          kilt_optimizer_free (opt);
          return NULL;
        }
    }
  if (cfg->type == KILT_OPT_ADAGRAD)
    {
      const float init = ADAGRAD_INITIAL_ACCUMULATOR;
      cl_int err = clEnqueueFillBuffer (ctx->queue, opt->slot[0]->mem, &init, sizeof init, 0,
                                        n_params * sizeof (float), 0, NULL, NULL);
      if (err != CL_SUCCESS)
        {
          kilt_set_cl_error (error, err, ctx->info->name, "setting the adagrad accumulator");
          kilt_optimizer_free (opt);
          return NULL;
        }
    }
  return opt;
}

void
kilt_optimizer_free (KiltOptimizer *opt)
{
  if (opt == NULL)
    return;
  for (guint s = 0; s < MAX_SLOTS; s++)
    kilt_buffer_free (opt->slot[s]);
  g_free (opt->ranges);
  g_free (opt);
}

const KiltOptimizerConfig *
kilt_optimizer_get_config (KiltOptimizer *opt)
{
  return &opt->cfg;
}

void
kilt_optimizer_set_schedule (KiltOptimizer *opt, const KiltLrSchedule *schedule)
{
  opt->cfg.schedule = *schedule;
}

gsize
kilt_optimizer_n_params (KiltOptimizer *opt)
{
  return opt->n_params;
}

void
kilt_optimizer_set_ranges (KiltOptimizer *opt, const KiltParamRange *ranges, guint n_ranges)
{
  gsize total = 0;

  for (guint r = 0; r < n_ranges; r++)
    {
      g_return_if_fail (ranges[r].grad_offset == total);
      total += ranges[r].n;
    }
  g_return_if_fail (n_ranges > 0 && total == opt->n_params);
  g_free (opt->ranges);
  opt->ranges = g_memdup2 (ranges, sizeof *ranges * n_ranges);
  opt->n_ranges = n_ranges;
}

void
kilt_optimizer_set_epoch (KiltOptimizer *opt, guint epoch)
{
  opt->epoch = epoch;
}

gboolean
kilt_optimizer_range_updates (const KiltParamRange *range, guint epoch)
{
  return !range->fixed && (range->until_epoch == 0 || epoch < range->until_epoch);
}

gboolean
kilt_optimizer_step (KiltOptimizer *opt, cl_mem params, cl_mem grads, guint64 iteration,
                     GError **error)
{
  const KiltOptimizerConfig *c = &opt->cfg;
  cl_kernel k = opt->kernel;
  float lr_t = (float)kilt_optimizer_lr_at (c, iteration);
  cl_uint n = (cl_uint)opt->n_params;
  /* A kernel argument must be a valid buffer even where the kernel never reads it. */
  cl_mem s0 = opt->slot[0] ? opt->slot[0]->mem : params;
  cl_mem s1 = opt->slot[1] ? opt->slot[1]->mem : s0;
  cl_int err = CL_SUCCESS;
  cl_uint a = 0, lr_arg, wd_arg;

  g_return_val_if_fail (params != NULL && grads != NULL, FALSE);
  KILT_ARG (k, a++, params, err);
  KILT_ARG (k, a++, grads, err);
  KILT_ARG (k, a++, s0, err);
  switch (c->type)
    {
      case KILT_OPT_SGD:
        {
          cl_int nesterov = c->nesterov ? 1 : 0;
          KILT_ARG (k, a++, lr_t, err);
          KILT_ARG (k, a++, c->momentum, err);
          KILT_ARG (k, a++, nesterov, err);
          break;
        }
      case KILT_OPT_RMSPROP:
        KILT_ARG (k, a++, lr_t, err);
        KILT_ARG (k, a++, c->rho, err);
        KILT_ARG (k, a++, c->epsilon, err);
        break;
      case KILT_OPT_ADAM:
        KILT_ARG (k, a++, s1, err);
        KILT_ARG (k, a++, lr_t, err);
        KILT_ARG (k, a++, c->beta1, err);
        KILT_ARG (k, a++, c->beta2, err);
        KILT_ARG (k, a++, c->epsilon, err);
        break;
      case KILT_OPT_ADADELTA:
        KILT_ARG (k, a++, s1, err);
        KILT_ARG (k, a++, lr_t, err);
        KILT_ARG (k, a++, c->rho, err);
        KILT_ARG (k, a++, c->epsilon, err);
        break;
      case KILT_OPT_ADAGRAD:
        KILT_ARG (k, a++, lr_t, err);
        KILT_ARG (k, a++, c->epsilon, err);
        break;
      default:
        g_return_val_if_reached (FALSE);
    }
  /* The rate follows the state buffers: set again per run below, with its multiplier. */
  lr_arg = c->type == KILT_OPT_ADAM || c->type == KILT_OPT_ADADELTA ? 4 : 3;
  wd_arg = a;
  KILT_ARG (k, a++, c->weight_decay, err);
  for (guint r = 0; r < opt->n_ranges && err == CL_SUCCESS; r++)
    {
      cl_uint p_off = (cl_uint)opt->ranges[r].param_offset;
      cl_uint g_off = (cl_uint)opt->ranges[r].grad_offset;
      n = (cl_uint)opt->ranges[r].n;
      float m = opt->ranges[r].lr_multiplier, lr_r = lr_t * m, wd_r = c->weight_decay / m;
      if (!kilt_optimizer_range_updates (&opt->ranges[r], opt->epoch))
        continue;
      KILT_ARG (k, lr_arg, lr_r, err);
      KILT_ARG (k, wd_arg, wd_r, err);
      KILT_ARG (k, a, n, err);
      KILT_ARG (k, a + 1, p_off, err);
      KILT_ARG (k, a + 2, g_off, err);
      if (err == CL_SUCCESS && !kilt_context_launch_1d (opt->ctx, k, n, error))
        return FALSE;
    }
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, opt->ctx->info->name, "setting arguments of %s",
                         kernel_names[c->type]);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_optimizer_read_state (KiltOptimizer *opt, float *dst, GError **error)
{
  for (guint s = 0; s < opt->n_slots; s++)
    if (!kilt_buffer_read (opt->slot[s], 0, dst + s * opt->n_params, opt->n_params * sizeof (float),
                           error))
      return FALSE;
  return TRUE;
}

gboolean
kilt_optimizer_write_state (KiltOptimizer *opt, const float *src, GError **error)
{
  for (guint s = 0; s < opt->n_slots; s++)
    if (!kilt_buffer_write (opt->slot[s], 0, src + s * opt->n_params,
                            opt->n_params * sizeof (float), error))
      return FALSE;
  return TRUE;
}

/* ---- plain-C reference -------------------------------------------------------------------- */

void
kilt_optimizer_reference_init (const KiltOptimizerConfig *cfg, gsize n, double *state)
{
  gsize total = kilt_optimizer_state_floats (cfg, n);
  double v = cfg->type == KILT_OPT_ADAGRAD ? ADAGRAD_INITIAL_ACCUMULATOR : 0.0;

  for (gsize i = 0; i < total; i++)
    state[i] = v;
}

void
kilt_optimizer_reference_step (const KiltOptimizerConfig *cfg, gsize n, double *p, const double *g,
                               double *state, guint64 iteration)
{
  double lr = kilt_optimizer_lr_at (cfg, iteration);
  double mom = cfg->momentum, rho = cfg->rho, b1 = cfg->beta1, b2 = cfg->beta2;
  double eps = cfg->epsilon, wd = cfg->weight_decay;
  double *s0 = state, *s1 = state ? state + n : NULL;

  for (gsize i = 0; i < n; i++)
    {
      double gi = g[i] + wd * p[i];
      switch (cfg->type)
        {
          case KILT_OPT_SGD:
            if (mom == 0.0)
              p[i] -= lr * gi;
            else
              {
                s0[i] = mom * s0[i] - lr * gi;
                p[i] += cfg->nesterov ? mom * s0[i] - lr * gi : s0[i];
              }
            break;
          case KILT_OPT_RMSPROP:
            s0[i] = rho * s0[i] + (1.0 - rho) * gi * gi;
            p[i] -= lr * gi / (sqrt (s0[i]) + eps);
            break;
          case KILT_OPT_ADAM:
            s0[i] = b1 * s0[i] + (1.0 - b1) * gi;
            s1[i] = b2 * s1[i] + (1.0 - b2) * gi * gi;
            p[i] -= lr * s0[i] / (sqrt (s1[i]) + eps);
            break;
          case KILT_OPT_ADADELTA:
            {
              double d;
              s0[i] = rho * s0[i] + (1.0 - rho) * gi * gi;
              d = sqrt (s1[i] + eps) / sqrt (s0[i] + eps) * gi;
              p[i] -= lr * d;
              s1[i] = rho * s1[i] + (1.0 - rho) * d * d;
              break;
            }
          case KILT_OPT_ADAGRAD:
            s0[i] += gi * gi;
            p[i] -= lr * gi / (sqrt (s0[i]) + eps);
            break;
          default:
            g_return_if_reached ();
        }
    }
}

void
kilt_optimizer_reference_step_ranges (const KiltOptimizerConfig *cfg, const KiltParamRange *ranges,
                                      guint n_ranges, guint epoch, gsize n_grads, double *p,
                                      const double *g, double *state, guint64 iteration)
{
  guint slots = kilt_optimizer_state_slots (cfg);
  g_autofree double *sub = g_new (double, MAX (slots, 1) * (n_grads + 1));
  KiltOptimizerConfig sub_cfg;

  for (guint r = 0; r < n_ranges; r++)
    {
      const KiltParamRange *rg = &ranges[r];
      if (!kilt_optimizer_range_updates (rg, epoch))
        continue;
      /* The run's own slots, gathered from the n_grads-long ones and put back. */
      for (guint sl = 0; sl < slots; sl++)
        memcpy (sub + sl * rg->n, state + sl * n_grads + rg->grad_offset, sizeof (double) * rg->n);
      /* The run's rate and decay: lr_at is linear in the configured rate. */
      sub_cfg = *cfg;
      sub_cfg.lr = (float)((double)cfg->lr * rg->lr_multiplier);
      sub_cfg.weight_decay = (float)((double)cfg->weight_decay / rg->lr_multiplier);
      kilt_optimizer_reference_step (&sub_cfg, rg->n, p + rg->param_offset, g + rg->grad_offset,
                                     slots ? sub : NULL, iteration);
      for (guint sl = 0; sl < slots; sl++)
        memcpy (state + sl * n_grads + rg->grad_offset, sub + sl * rg->n, sizeof (double) * rg->n);
    }
}
