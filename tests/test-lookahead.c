/* Lookahead: the device update against the plain-C reference on random weights and running
 * statistics of awkward sizes, at the decays a run uses; the decay schedule and when a run
 * updates, written out from airbench94's loop. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-lookahead.h"
#include "kilt-memory.h"
#include "kilt-rng.h"

#include <math.h>

static void
test_schedule (void)
{
  /* alpha_schedule = 0.95**5 * (arange (total + 1) / total)**3 */
  const double base = 0.95 * 0.95 * 0.95 * 0.95 * 0.95;
  const guint64 totals[] = { 5, 12, 476, 490 };

  for (guint t = 0; t < G_N_ELEMENTS (totals); t++)
    {
      guint64 total = totals[t];
      guint n_due = 0;
      for (guint64 step = 1; step <= total; step++)
        {
          double want = base * pow ((double)step / (double)total, 3), decay = -1;
          gboolean due = kilt_lookahead_due (step, total, &decay);
          g_assert_cmpfloat (fabs (kilt_lookahead_decay (step, total) - want), <=, 1e-15);
          /* Every fifth step with the schedule's decay; the last step, when it is not one of
           * those, with 1. */
          if (step % 5 == 0)
            {
              g_assert_true (due);
              g_assert_cmpfloat (fabs (decay - want), <=, 1e-15);
            }
          else if (step == total)
            {
              g_assert_true (due);
              g_assert_cmpfloat (decay, ==, 1.0);
            }
          else
            g_assert_false (due);
          n_due += due;
        }
      g_assert_cmpuint (n_due, ==, total / 5 + (total % 5 != 0));
    }
}

static void
test_device (void)
{
  KiltContext *ctx = kilt_test_context ();
  const gsize np = 1001, ns = 37; /* not multiples of a work-group */
  const double decays[] = { 0.0, 0.0123, 0.4, kilt_lookahead_decay (470, 476), 1.0 };
  g_autoptr (GError) error = NULL;
  g_autofree float *pf = g_new (float, np), *sf = g_new (float, ns);
  g_autofree double *pd = g_new (double, np), *sd = g_new (double, ns);
  g_autofree double *pa = g_new (double, np), *sa = g_new (double, ns);
  KiltBuffer *params, *state;
  KiltLookahead *la;
  KiltRng rng;
  double worst = 0;

  if (ctx == NULL)
    return;
  kilt_rng_init (&rng, 3);
  params = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, np * 4, &error, "params");
  state = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, ns * 4, &error, "state");
  g_assert_no_error (error);
  for (gsize i = 0; i < np; i++)
    pa[i] = pd[i] = pf[i] = (float)kilt_rng_normal (&rng);
  for (gsize i = 0; i < ns; i++)
    sa[i] = sd[i] = sf[i] = (float)(1 + kilt_rng_uniform (&rng));
  g_assert_true (kilt_buffer_write (params, 0, pf, np * 4, &error));
  g_assert_true (kilt_buffer_write (state, 0, sf, ns * 4, &error));
  la = kilt_lookahead_new (ctx, params->mem, np, state->mem, ns, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ctx->mem.live[KILT_MEM_OPTIMIZER], ==, (np + ns) * 4);
  for (guint d = 0; d < G_N_ELEMENTS (decays); d++)
    {
      /* Some training between two updates moves the weights away from the average. */
      for (gsize i = 0; i < np; i++)
        pd[i] = pf[i] = (float)(pd[i] + 0.3 * kilt_rng_normal (&rng));
      for (gsize i = 0; i < ns; i++)
        sd[i] = sf[i] = (float)(sd[i] + 0.1 * kilt_rng_uniform (&rng));
      g_assert_true (kilt_buffer_write (params, 0, pf, np * 4, &error));
      g_assert_true (kilt_buffer_write (state, 0, sf, ns * 4, &error));
      g_assert_true (kilt_lookahead_update (la, decays[d], &error));
      g_assert_no_error (error);
      kilt_lookahead_reference_update (pa, pd, np, decays[d]);
      kilt_lookahead_reference_update (sa, sd, ns, decays[d]);
      g_assert_true (kilt_buffer_read (params, 0, pf, np * 4, &error));
      g_assert_true (kilt_buffer_read (state, 0, sf, ns * 4, &error));
      for (gsize i = 0; i < np; i++)
        worst = MAX (worst, fabs (pf[i] - pd[i]) / (1 + fabs (pd[i])));
      for (gsize i = 0; i < ns; i++)
        worst = MAX (worst, fabs (sf[i] - sd[i]) / (1 + fabs (sd[i])));
      /* Decay 1 puts the weights back on the average exactly. */
      if (decays[d] == 1.0)
        for (gsize i = 0; i < np; i++)
          g_assert_cmpfloat (fabs (pd[i] - pa[i]), ==, 0);
    }
  g_test_message ("device against reference: %.2e", worst);
  g_assert_cmpfloat (worst, <=, 1e-6);
  kilt_lookahead_free (la);
  g_assert_cmpint (ctx->mem.live[KILT_MEM_OPTIMIZER], ==, 0);
  kilt_buffer_free (params);
  kilt_buffer_free (state);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/lookahead/schedule", test_schedule);
  g_test_add_func ("/lookahead/device", test_device);
  return g_test_run ();
}
