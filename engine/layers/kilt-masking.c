/* Masking (Keras' Masking layer): the steps of a sequence whose features all equal mask_value
 * become zeros. Later layers skip those steps through their own step masks
 * (KILT_STEP_MASK_VALUES), which read this layer's input. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <math.h>

static gboolean
masking_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];

  if (in->h != 1)
    {
      kilt_layer_set_error (error, node,
                            "expects a sequence (steps, features), Kilt's (features, 1, steps); "
                            "got %ux%ux%u",
                            in->c, in->h, in->w);
      return FALSE;
    }
  if (!isfinite (node->cfg.mask_value))
    {
      kilt_layer_set_error (error, node, "mask_value must be finite, got %g", node->cfg.mask_value);
      return FALSE;
    }
  node->out_shape = *in;
  node->n_params = 0;
  return TRUE;
}

static gboolean
masking_launch (KiltNode *node, KiltExec *ex, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (
      ex->ctx, forward ? "kilt_masking_forward" : "kilt_masking_backward", error);
  cl_int err = CL_SUCCESS;
  cl_uint features = node->in_shape[0].c, steps = node->in_shape[0].w, batch = ex->batch, i = 0;
  cl_mem y = forward ? node->out : src->dout, x = forward ? src->out : node->dout;

  if (!k)
    return FALSE;
  KILT_ARG (k, i++, y, err);
  KILT_ARG (k, i++, x, err);
  if (!forward)
    KILT_ARG (k, i++, src->out, err);
  KILT_ARG (k, i++, features, err);
  KILT_ARG (k, i++, steps, err);
  KILT_ARG (k, i++, batch, err);
  KILT_ARG (k, i++, node->cfg.mask_value, err);
  if (!forward)
    KILT_ARG (k, i++, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, features, steps, batch, error);
}

static gboolean
masking_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  return masking_launch (node, ex, TRUE, error);
}

static gboolean
masking_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  return !node->din_needed[0] || masking_launch (node, ex, FALSE, error);
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

static gboolean
ref_kept (const KiltNode *node, const double *x, gsize b, gsize t)
{
  gsize features = node->in_shape[0].c, steps = node->in_shape[0].w;

  for (gsize f = 0; f < features; f++)
    if ((float)x[(b * features + f) * steps + t] != node->cfg.mask_value)
      return TRUE;
  return FALSE;
}

static void
masking_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                     guint64 step, const double *const *in, const double *params, double *state,
                     double *out)
{
  gsize features = node->in_shape[0].c, steps = node->in_shape[0].w;

  for (gsize b = 0; b < batch; b++)
    for (gsize t = 0; t < steps; t++)
      {
        gboolean kept = ref_kept (node, in[0], b, t);
        for (gsize f = 0; f < features; f++)
          {
            gsize i = (b * features + f) * steps + t;
            out[i] = kept ? in[0][i] : 0.0;
          }
      }
}

static void
masking_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                      const double *const *in, const double *params, const double *state,
                      const double *out, const double *dout, double **din, double *dparams)
{
  gsize features = node->in_shape[0].c, steps = node->in_shape[0].w;

  if (!din[0])
    return;
  for (gsize b = 0; b < batch; b++)
    for (gsize t = 0; t < steps; t++)
      {
        gboolean kept = ref_kept (node, in[0], b, t);
        for (gsize f = 0; f < features; f++)
          {
            gsize i = (b * features + f) * steps + t;
            din[0][i] = kept ? dout[i] : 0.0;
          }
      }
}

const KiltLayerClass kilt_masking_class = {
  .type = KILT_LAYER_MASKING,
  .name = "Masking",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = masking_infer,
  .forward = masking_forward,
  .backward = masking_backward,
  .ref_forward = masking_ref_forward,
  .ref_backward = masking_ref_backward,
};
