/* Learning-rate schedules: the factor a run's rate is multiplied by at each step. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-lr-schedule"

#include "kilt-lr-schedule.h"
#include "kilt-error.h"

#include <math.h>

static const char *schedule_names[KILT_LR_N_SCHEDULES] = {
  "constant",
  "linear",
  "cosine",
  "one-cycle",
};

KiltLrSchedule
kilt_lr_schedule_default (void)
{
  /* One-cycle's peak at 30% of the run, as PyTorch's OneCycleLR (pct_start). */
  KiltLrSchedule s = { .type = KILT_LR_CONSTANT, .peak = 0.3f };

  return s;
}

const char *
kilt_lr_schedule_name (KiltLrScheduleType type)
{
  g_return_val_if_fail (type < KILT_LR_N_SCHEDULES, "?");
  return schedule_names[type];
}

gboolean
kilt_lr_schedule_from_name (const char *name, KiltLrScheduleType *out)
{
  g_return_val_if_fail (name != NULL, FALSE);
  for (int t = 0; t < KILT_LR_N_SCHEDULES; t++)
    if (g_ascii_strcasecmp (name, schedule_names[t]) == 0)
      {
        if (out)
          *out = (KiltLrScheduleType)t;
        return TRUE;
      }
  return FALSE;
}

static gboolean
has_warmup (const KiltLrSchedule *s)
{
  return s->warmup_epochs != 0.0f || s->warmup_steps != 0;
}

gboolean
kilt_lr_schedule_is_flat (const KiltLrSchedule *s)
{
  return s->type == KILT_LR_CONSTANT && !has_warmup (s);
}

static gboolean
check_fraction (const char *field, float v, GError **error)
{
  if (isfinite (v) && v >= 0.0f && v <= 1.0f)
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "learning-rate schedule: %s is %g; it must be a fraction of the rate in [0, 1]",
               field, v);
  return FALSE;
}

gboolean
kilt_lr_schedule_check (const KiltLrSchedule *s, GError **error)
{
  if ((guint)s->type >= KILT_LR_N_SCHEDULES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown learning-rate schedule %d (constant, linear, cosine or one-cycle)",
                   (int)s->type);
      return FALSE;
    }
  if (!isfinite (s->warmup_epochs) || s->warmup_epochs < 0.0f)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "learning-rate schedule: warm-up epochs is %g; it must be 0 or more",
                   s->warmup_epochs);
      return FALSE;
    }
  if (s->warmup_epochs != 0.0f && s->warmup_steps != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "learning-rate schedule: warm-up is given both in epochs (%g) and in steps "
                   "(%u); give one",
                   s->warmup_epochs, s->warmup_steps);
      return FALSE;
    }
  if (s->type == KILT_LR_ONE_CYCLE && has_warmup (s))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "learning-rate schedule: one-cycle rises by itself (from start to the rate "
                   "at peak) and takes no warm-up; warm-up goes with constant, linear or cosine");
      return FALSE;
    }
  return check_fraction ("start", s->start, error) && check_fraction ("final", s->final, error)
         && check_fraction ("peak", s->peak, error);
}

guint64
kilt_lr_schedule_total_steps (const KiltLrSchedule *s)
{
  return (guint64)s->steps_per_epoch * s->epochs;
}

guint64
kilt_lr_schedule_warmup_steps (const KiltLrSchedule *s)
{
  if (s->type == KILT_LR_ONE_CYCLE)
    return 0;
  if (s->warmup_epochs > 0.0f)
    return MAX (1, (guint64)llround ((double)s->warmup_epochs * s->steps_per_epoch));
  return s->warmup_steps;
}

gboolean
kilt_lr_schedule_resolve (KiltLrSchedule *s, guint steps_per_epoch, guint epochs,
                          guint origin_epoch, guint64 origin_step, GError **error)
{
  guint64 total, warm;

  if (!kilt_lr_schedule_check (s, error))
    return FALSE;
  if ((steps_per_epoch == 0 || epochs == 0) && !kilt_lr_schedule_is_flat (s))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a learning-rate schedule (%s) needs a run of at least one step (%u epochs "
                   "of %u steps)",
                   kilt_lr_schedule_name (s->type), epochs, steps_per_epoch);
      return FALSE;
    }
  s->steps_per_epoch = steps_per_epoch;
  s->epochs = epochs;
  s->origin_epoch = origin_epoch;
  s->origin_step = origin_step;
  total = kilt_lr_schedule_total_steps (s);
  warm = kilt_lr_schedule_warmup_steps (s);
  if (warm >= total && warm > 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "learning-rate warm-up of %" G_GUINT64_FORMAT " steps is as long as the run "
                   "(%u epochs of %u steps) or longer: give a shorter warm-up",
                   warm, epochs, steps_per_epoch);
      return FALSE;
    }
  return TRUE;
}

/* The step within the run: a resumption's steps count on from its epochs done. */
static guint64
run_position (const KiltLrSchedule *s, guint64 iteration)
{
  guint64 base = (guint64)s->origin_epoch * s->steps_per_epoch;

  if (iteration >= s->origin_step)
    return base + (iteration - s->origin_step);
  return base > s->origin_step - iteration ? base - (s->origin_step - iteration) : 0;
}

static double
ramp (double from, double to, double done, double len)
{
  return from + (to - from) * MIN (done / len, 1.0);
}

double
kilt_lr_schedule_factor (const KiltLrSchedule *s, guint64 iteration)
{
  guint64 pos, total, warm;
  double start = s->start, final = s->final;

  if (kilt_lr_schedule_is_flat (s))
    return 1.0;
  g_return_val_if_fail (s->steps_per_epoch > 0 && s->epochs > 0, 1.0);
  pos = run_position (s, iteration);
  total = kilt_lr_schedule_total_steps (s);
  if (s->type == KILT_LR_ONE_CYCLE)
    {
      /* airbench's np.interp over [0, int (peak * total), total]. */
      guint64 peak = (guint64)floor ((double)s->peak * (double)total);
      if (pos < peak)
        return ramp (start, 1.0, (double)pos, (double)peak);
      if (pos >= total)
        return final;
      return ramp (1.0, final, (double)(pos - peak), (double)(total - peak));
    }
  warm = kilt_lr_schedule_warmup_steps (s);
  if (pos < warm)
    return ramp (start, 1.0, (double)pos, (double)warm);
  if (total <= warm)
    return s->type == KILT_LR_CONSTANT ? 1.0 : final;
  {
    double p = MIN ((double)(pos - warm) / (double)(total - warm), 1.0);
    switch (s->type)
      {
        case KILT_LR_LINEAR:
          return 1.0 + (final - 1.0) * p;
        case KILT_LR_COSINE:
          return final + (1.0 - final) * 0.5 * (1.0 + cos (G_PI * p));
        default:
          return 1.0;
      }
  }
}

char *
kilt_lr_schedule_describe (const KiltLrSchedule *s)
{
  GString *str = g_string_new (NULL);

  switch (s->type)
    {
      case KILT_LR_LINEAR:
        g_string_append_printf (str, "linear to %g", s->final);
        break;
      case KILT_LR_COSINE:
        g_string_append_printf (str, "cosine to %g", s->final);
        break;
      case KILT_LR_ONE_CYCLE:
        g_string_append_printf (str, "one-cycle %g -> 1 at %g%% -> %g", s->start, 100.0 * s->peak,
                                s->final);
        return g_string_free (str, FALSE);
      default:
        g_string_append (str, "constant");
        break;
    }
  if (s->warmup_epochs > 0.0f)
    g_string_append_printf (str, ", warm-up %g epoch%s from %g", s->warmup_epochs,
                            s->warmup_epochs == 1.0f ? "" : "s", s->start);
  else if (s->warmup_steps > 0)
    g_string_append_printf (str, ", warm-up %u step%s from %g", s->warmup_steps,
                            s->warmup_steps == 1 ? "" : "s", s->start);
  return g_string_free (str, FALSE);
}
