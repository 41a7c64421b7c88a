/* Learning-rate schedules: every shape against its plain formula at random steps of random
 * runs, the time decay kept exact, resumption, and the settings' checks. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-lr-schedule.h"
#include "kilt-optimizer.h"
#include "kilt-error.h"
#include "kilt-rng.h"

#include <math.h>
#include <string.h>

/* ---- the plain formulas ------------------------------------------------------------------- */

/* np.interp over knots (x increasing): the end values beyond the ends. */
static double
interp (double pos, const double *x, const double *y, guint n)
{
  if (pos <= x[0])
    return y[0];
  for (guint i = 0; i + 1 < n; i++)
    if (pos < x[i + 1])
      return y[i] + (y[i + 1] - y[i]) * (pos - x[i]) / (x[i + 1] - x[i]);
  return y[n - 1];
}

/* The schedule's factor at run step @pos of @total, with @warm warm-up steps, written from
 * the definitions: warm-up and linear decay as knots, cosine as half a period. */
static double
reference (const KiltLrSchedule *s, double warm, double total, double pos)
{
  if (s->type == KILT_LR_ONE_CYCLE)
    {
      double x[3] = { 0, floor (s->peak * total), total }, y[3] = { s->start, 1, s->final };
      return interp (pos, x, y, 3);
    }
  if (pos < warm)
    {
      double x[2] = { 0, warm }, y[2] = { s->start, 1 };
      return interp (pos, x, y, 2);
    }
  if (s->type == KILT_LR_LINEAR)
    {
      double x[2] = { warm, total }, y[2] = { 1, s->final };
      return interp (pos, x, y, 2);
    }
  if (s->type == KILT_LR_COSINE)
    {
      double p = MIN ((pos - warm) / (total - warm), 1.0), f = s->final;
      return f + (1 - f) * (1 + cos (M_PI * p)) / 2;
    }
  return 1;
}

/* A random schedule on a random run; @warm gets its warm-up in steps. */
static KiltLrSchedule
random_schedule (KiltRng *rng, guint *spe, guint *epochs, double *warm)
{
  KiltLrSchedule s = kilt_lr_schedule_default ();
  double u;

  s.type = (KiltLrScheduleType)kilt_rng_below (rng, KILT_LR_N_SCHEDULES);
  *spe = 1 + kilt_rng_below (rng, 60);
  *epochs = 1 + kilt_rng_below (rng, 12);
  s.start = (float)kilt_rng_uniform (rng);
  s.final = (float)kilt_rng_uniform (rng);
  s.peak = (float)(0.05 + 0.9 * kilt_rng_uniform (rng));
  *warm = 0;
  u = kilt_rng_uniform (rng);
  if (s.type != KILT_LR_ONE_CYCLE && u < 0.4)
    {
      s.warmup_epochs = (float)(0.1 + kilt_rng_uniform (rng) * 2);
      *warm = MAX (1, round ((double)s.warmup_epochs * *spe));
    }
  else if (s.type != KILT_LR_ONE_CYCLE && u < 0.8)
    {
      s.warmup_steps = 1 + kilt_rng_below (rng, *spe * 2);
      *warm = s.warmup_steps;
    }
  return s;
}

static void
test_names (void)
{
  for (int t = 0; t < KILT_LR_N_SCHEDULES; t++)
    {
      KiltLrScheduleType back = KILT_LR_N_SCHEDULES;
      g_autofree char *upper = g_ascii_strup (kilt_lr_schedule_name (t), -1);
      g_assert_true (kilt_lr_schedule_from_name (upper, &back));
      g_assert_cmpint (back, ==, t);
    }
  g_assert_false (kilt_lr_schedule_from_name ("onecycle", NULL));
  g_assert_false (kilt_lr_schedule_from_name ("", NULL));
}

/* Without a schedule the rate is Keras' time decay to the bit, as before schedules. */
static void
test_flat_keeps_decay (void)
{
  KiltRng rng;

  kilt_rng_init (&rng, 7);
  for (int i = 0; i < 500; i++)
    {
      KiltOptimizerConfig c = kilt_optimizer_config_default ((KiltOptimizerType)(i % 5));
      guint64 it = kilt_rng_next (&rng) >> (20 + kilt_rng_below (&rng, 40));
      c.lr = (float)(1e-5 + kilt_rng_uniform (&rng));
      c.decay = i % 3 ? (float)(kilt_rng_uniform (&rng) * 1e-3) : 0.0f;
      g_assert_true (kilt_lr_schedule_is_flat (&c.schedule));
      g_assert_cmpfloat (kilt_optimizer_scheduled_lr (&c, it), ==,
                         (double)c.lr / (1.0 + (double)c.decay * (double)it));
    }
}

static void
test_against_formula (void)
{
  KiltRng rng;
  guint checked = 0, refused = 0;

  kilt_rng_init (&rng, 12);
  for (int i = 0; i < 400; i++)
    {
      guint spe, epochs;
      double warm;
      KiltLrSchedule s = random_schedule (&rng, &spe, &epochs, &warm);
      double total = (double)spe * epochs;
      g_autoptr (GError) error = NULL;
      gboolean ok = kilt_lr_schedule_resolve (&s, spe, epochs, 0, 0, &error);

      if (warm >= total)
        {
          /* A warm-up as long as the run leaves nothing to schedule: refused, by name. */
          g_assert_false (ok);
          g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
          g_assert_nonnull (strstr (error->message, "warm-up"));
          refused++;
          continue;
        }
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpuint (kilt_lr_schedule_total_steps (&s), ==, (guint64)total);
      g_assert_cmpuint (kilt_lr_schedule_warmup_steps (&s), ==, (guint64)warm);
      for (int k = 0; k < 25; k++)
        {
          /* Random steps, the warm-up's end and the run's last steps among them. */
          guint64 it = k == 0   ? 0
                       : k == 1 ? (guint64)warm
                       : k == 2 ? (guint64)total - 1
                       : k == 3 ? (guint64)total + 3
                                : kilt_rng_below (&rng, (guint32)total);
          double want = reference (&s, warm, total, (double)it);
          double got = kilt_lr_schedule_factor (&s, it);
          if (fabs (got - want) > 1e-12)
            g_error (
                "%s (start %g final %g peak %g, warm-up %g, %g steps) at step %" G_GUINT64_FORMAT
                ": %.15g, the formula %.15g",
                kilt_lr_schedule_name (s.type), s.start, s.final, s.peak, warm, total, it, got,
                want);
          g_assert_cmpfloat (got, >=, 0);
          g_assert_cmpfloat (got, <=, 1);
          checked++;
        }
      /* The rate the optimizer uses is the rate times the factor, with the time decay. */
      {
        KiltOptimizerConfig c = kilt_optimizer_config_default (KILT_OPT_SGD);
        guint64 it = kilt_rng_below (&rng, (guint32)total);
        c.lr = 0.4f;
        c.decay = 1e-3f;
        c.schedule = s;
        g_assert_cmpfloat_with_epsilon (kilt_optimizer_scheduled_lr (&c, it),
                                        (double)c.lr * reference (&s, warm, total, (double)it)
                                            / (1 + (double)c.decay * (double)it),
                                        1e-12);
      }
    }
  g_test_message ("%u steps of %u schedules against the formulas, %u warm-ups refused", checked,
                  400 - refused, refused);
  g_assert_cmpuint (refused, >, 0);
  g_assert_cmpuint (checked, >, 5000);
}

/* airbench's triangle: 0.2 up to 1 at int (0.23 T), down to 0 at T. */
static void
test_one_cycle_ends (void)
{
  KiltLrSchedule s = kilt_lr_schedule_default ();
  guint64 peak;

  s.type = KILT_LR_ONE_CYCLE;
  s.start = 0.2f;
  s.final = 0.0f;
  s.peak = 0.23f;
  g_assert_true (kilt_lr_schedule_resolve (&s, 49, 10, 0, 0, NULL));
  peak = (guint64)floor (0.23f * 490.0);
  g_assert_cmpfloat_with_epsilon (kilt_lr_schedule_factor (&s, 0), 0.2, 1e-7);
  g_assert_cmpfloat (kilt_lr_schedule_factor (&s, peak), ==, 1.0);
  g_assert_cmpfloat (kilt_lr_schedule_factor (&s, peak - 1), <, 1.0);
  g_assert_cmpfloat (kilt_lr_schedule_factor (&s, peak + 1), <, 1.0);
  g_assert_cmpfloat_with_epsilon (kilt_lr_schedule_factor (&s, 489), 1.0 / (490 - peak), 1e-12);
  g_assert_cmpfloat (kilt_lr_schedule_factor (&s, 490), ==, 0.0);
  /* A peak at 0 has no rise: it starts at the rate. */
  s.peak = 0;
  g_assert_true (kilt_lr_schedule_resolve (&s, 49, 10, 0, 0, NULL));
  g_assert_cmpfloat (kilt_lr_schedule_factor (&s, 0), ==, 1.0);
}

/* A resumption after e epochs goes on exactly where the uninterrupted run was, and one at
 * another batch (other steps per epoch) goes on from epoch e of its own steps. */
static void
test_resume (void)
{
  KiltRng rng;

  kilt_rng_init (&rng, 99);
  for (int i = 0; i < 200; i++)
    {
      guint spe, epochs, spe2;
      double warm;
      KiltLrSchedule full = random_schedule (&rng, &spe, &epochs, &warm), part, other, other_full;
      guint e = kilt_rng_below (&rng, epochs);
      guint64 g0 = kilt_rng_below (&rng, 1000);

      part = full;
      if (!kilt_lr_schedule_resolve (&full, spe, epochs, 0, 0, NULL))
        continue;
      g_assert_true (kilt_lr_schedule_resolve (&part, spe, epochs, e, (guint64)e * spe, NULL));
      for (guint64 it = (guint64)e * spe; it < (guint64)spe * epochs; it++)
        g_assert_cmpfloat (kilt_lr_schedule_factor (&part, it), ==,
                           kilt_lr_schedule_factor (&full, it));

      spe2 = spe * 2 + 1;
      other = full;
      other_full = full;
      if (!kilt_lr_schedule_resolve (&other_full, spe2, epochs, 0, 0, NULL))
        continue;
      g_assert_true (kilt_lr_schedule_resolve (&other, spe2, epochs, e, g0, NULL));
      for (guint k = 0; k < (epochs - e) * spe2; k += 1 + k / 4)
        g_assert_cmpfloat (kilt_lr_schedule_factor (&other, g0 + k), ==,
                           kilt_lr_schedule_factor (&other_full, (guint64)e * spe2 + k));
    }
}

static void
expect_refused (const KiltLrSchedule *s, const char *word)
{
  g_autoptr (GError) error = NULL;
  KiltOptimizerConfig c = kilt_optimizer_config_default (KILT_OPT_SGD);

  g_assert_false (kilt_lr_schedule_check (s, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_test_message ("refused: %s", error->message);
  g_assert_nonnull (strstr (error->message, word));
  g_clear_error (&error);
  /* The optimizer's own check says the same. */
  c.schedule = *s;
  g_assert_false (kilt_optimizer_config_check (&c, &error));
  g_assert_nonnull (strstr (error->message, word));
}

static void
test_checks (void)
{
  KiltLrSchedule good = kilt_lr_schedule_default (), s;
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_lr_schedule_check (&good, NULL));
  s = good, s.type = KILT_LR_ONE_CYCLE, s.warmup_epochs = 1;
  expect_refused (&s, "one-cycle");
  s = good, s.type = KILT_LR_COSINE, s.warmup_epochs = 1, s.warmup_steps = 10;
  expect_refused (&s, "both");
  s = good, s.warmup_epochs = -0.5f;
  expect_refused (&s, "warm-up epochs");
  s = good, s.warmup_epochs = NAN;
  expect_refused (&s, "warm-up epochs");
  s = good, s.start = 1.5f;
  expect_refused (&s, "start");
  s = good, s.final = -0.1f;
  expect_refused (&s, "final");
  s = good, s.peak = NAN;
  expect_refused (&s, "peak");
  s = good, s.type = KILT_LR_N_SCHEDULES;
  expect_refused (&s, "schedule");
  /* A schedule needs a run of some steps; a flat one does not. */
  s = good, s.type = KILT_LR_COSINE;
  g_assert_false (kilt_lr_schedule_resolve (&s, 10, 0, 0, 0, &error));
  g_assert_nonnull (strstr (error->message, "cosine"));
  s = good;
  g_assert_true (kilt_lr_schedule_resolve (&s, 0, 0, 0, 0, NULL));
}

static void
test_describe (void)
{
  KiltLrSchedule s = kilt_lr_schedule_default ();
  g_autofree char *flat = kilt_lr_schedule_describe (&s), *cos = NULL, *one = NULL;

  g_assert_cmpstr (flat, ==, "constant");
  s.type = KILT_LR_COSINE;
  s.final = 0.01f;
  s.warmup_epochs = 1;
  cos = kilt_lr_schedule_describe (&s);
  g_assert_nonnull (strstr (cos, "cosine to 0.01"));
  g_assert_nonnull (strstr (cos, "warm-up 1 epoch"));
  s = kilt_lr_schedule_default ();
  s.type = KILT_LR_ONE_CYCLE;
  s.start = 0.2f;
  s.peak = 0.25f;
  one = kilt_lr_schedule_describe (&s);
  g_assert_nonnull (strstr (one, "one-cycle 0.2"));
  g_assert_nonnull (strstr (one, "25%"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/lr-schedule/names", test_names);
  g_test_add_func ("/lr-schedule/flat-keeps-decay", test_flat_keeps_decay);
  g_test_add_func ("/lr-schedule/against-formula", test_against_formula);
  g_test_add_func ("/lr-schedule/one-cycle-ends", test_one_cycle_ends);
  g_test_add_func ("/lr-schedule/resume", test_resume);
  g_test_add_func ("/lr-schedule/checks", test_checks);
  g_test_add_func ("/lr-schedule/describe", test_describe);
  return g_test_run ();
}
