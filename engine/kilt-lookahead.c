/* airbench's lookahead: a slow average of the weights that the weights are put back on. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-lookahead"

#include "kilt-lookahead.h"
#include "kilt-error.h"
#include "kilt-memory.h"

#include <math.h>

struct _KiltLookahead
{
  KiltContext *ctx;
  cl_kernel kernel;
  cl_mem weights[2];
  KiltBuffer *average[2];
  gsize n[2];
};

double
kilt_lookahead_decay (guint64 step, guint64 total)
{
  double frac = total ? (double)step / (double)total : 1.0;

  return pow (0.95, 5) * frac * frac * frac;
}

gboolean
kilt_lookahead_due (guint64 step, guint64 total, double *decay)
{
  /* airbench checks the period first and then the end: on a last step that is also a
   * period's, the update with the schedule's decay comes before the final one, which then
   * only copies. Both in one: the schedule's update leaves weights = average already. */
  if (step % KILT_LOOKAHEAD_PERIOD == 0)
    {
      *decay = kilt_lookahead_decay (step, total);
      return TRUE;
    }
  if (step == total)
    {
      *decay = 1.0;
      return TRUE;
    }
  return FALSE;
}

KiltLookahead *
kilt_lookahead_new (KiltContext *ctx, cl_mem params, gsize n_params, cl_mem state, gsize n_state,
                    GError **error)
{
  KiltLookahead *la = g_new0 (KiltLookahead, 1);
  const char *what[2] = { "parameters", "running statistics" };

  la->ctx = ctx;
  la->weights[0] = params;
  la->weights[1] = state;
  la->n[0] = n_params;
  la->n[1] = state ? n_state : 0;
  la->kernel = kilt_context_kernel (ctx, "kilt_lookahead", error);
  if (la->kernel == NULL)
    {
      kilt_lookahead_free (la);
      return NULL;
    }
  for (int i = 0; i < 2; i++)
    {
      cl_int err;
      if (la->n[i] == 0)
        continue;
      la->average[i] = kilt_buffer_new (ctx, KILT_MEM_OPTIMIZER, la->n[i] * sizeof (float), error,
                                        "lookahead average of the %s", what[i]);
      if (la->average[i] == NULL)
        {
          kilt_lookahead_free (la);
          return NULL;
        }
      err = clEnqueueCopyBuffer (ctx->queue, la->weights[i], la->average[i]->mem, 0, 0,
                                 la->n[i] * sizeof (float), 0, NULL, NULL);
      if (err != CL_SUCCESS)
        {
          kilt_set_cl_error (error, err, ctx->info->name, "starting the lookahead average");
          kilt_lookahead_free (la);
          return NULL;
        }
    }
  return la;
}

void
kilt_lookahead_free (KiltLookahead *la)
{
  if (la == NULL)
    return;
  for (int i = 0; i < 2; i++)
    kilt_buffer_free (la->average[i]);
  g_free (la);
}

gboolean
kilt_lookahead_update (KiltLookahead *la, double decay, GError **error)
{
  float d = (float)decay;

  for (int i = 0; i < 2; i++)
    {
      cl_uint n = (cl_uint)la->n[i];
      cl_int err = CL_SUCCESS;
      if (n == 0)
        continue;
      KILT_ARG (la->kernel, 0, la->average[i]->mem, err);
      KILT_ARG (la->kernel, 1, la->weights[i], err);
      KILT_ARG (la->kernel, 2, d, err);
      KILT_ARG (la->kernel, 3, n, err);
      if (err != CL_SUCCESS)
        {
          kilt_set_cl_error (error, err, la->ctx->info->name, "setting arguments of the lookahead");
          return FALSE;
        }
      if (!kilt_context_launch_1d (la->ctx, la->kernel, n, error))
        return FALSE;
    }
  return TRUE;
}

void
kilt_lookahead_reference_update (double *average, double *weights, gsize n, double decay)
{
  for (gsize i = 0; i < n; i++)
    {
      average[i] = decay * average[i] + (1.0 - decay) * weights[i];
      weights[i] = average[i];
    }
}
