/* LayerNormalization over the channel axis (Keras' axis -1): per position, the C values are
 * normalised with their own mean and biased variance, then scaled and shifted per channel. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <math.h>

/* Parameters: gamma[C] then beta[C], either left out (Keras' scale / center false), as
 * BatchNormalization lays them out. Saved: mean and 1/sqrt(var + eps) per position. */
static gboolean
ln_infer (KiltNode *node, GError **error)
{
  if (!(node->cfg.epsilon > 0.0f))
    {
      kilt_layer_set_error (error, node, "epsilon must be positive, got %g", node->cfg.epsilon);
      return FALSE;
    }
  node->out_shape = node->in_shape[0];
  node->n_params = (gsize)node->in_shape[0].c * (!node->cfg.bn_no_scale + !node->cfg.bn_no_center);
  return TRUE;
}

static void
ln_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  guint c = node->in_shape[0].c, beta_at = node->cfg.bn_no_scale ? 0 : c;

  for (guint i = 0; i < c; i++)
    {
      if (!node->cfg.bn_no_scale)
        params[i] = 1.0f;
      if (!node->cfg.bn_no_center)
        params[beta_at + i] = 0.0f;
    }
}

static guint64
ln_flops (const KiltNode *node)
{
  return 8ull * kilt_shape_size (&node->in_shape[0]);
}

static gsize
ln_saved_floats (const KiltNode *node, guint batch)
{
  return 2 * (gsize)batch * node->in_shape[0].h * node->in_shape[0].w;
}

static gboolean
ln_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_ln_forward", error);
  cl_int err = CL_SUCCESS, has_gamma = !node->cfg.bn_no_scale, has_beta = !node->cfg.bn_no_center;
  cl_uint pofs = (cl_uint)node->param_offset, c = node->in_shape[0].c;
  cl_uint sp = node->in_shape[0].h * node->in_shape[0].w, positions = ex->batch * sp;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, node->saved, err);
  KILT_ARG (k, 3, ex->params, err);
  KILT_ARG (k, 4, pofs, err);
  KILT_ARG (k, 5, has_gamma, err);
  KILT_ARG (k, 6, has_beta, err);
  KILT_ARG (k, 7, c, err);
  KILT_ARG (k, 8, sp, err);
  KILT_ARG (k, 9, positions, err);
  KILT_ARG (k, 10, node->cfg.epsilon, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, positions, error);
}

static gboolean
ln_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_int err = CL_SUCCESS, has_gamma = !node->cfg.bn_no_scale, has_beta = !node->cfg.bn_no_center;
  cl_uint pofs = (cl_uint)node->param_offset, c = node->in_shape[0].c, batch = ex->batch;
  cl_uint sp = node->in_shape[0].h * node->in_shape[0].w, positions = ex->batch * sp;
  cl_uint gofs = (cl_uint)node->grad_offset;
  cl_kernel k;

  if (node->n_params && !node->frozen)
    {
      if (!(k = kilt_context_kernel (ex->ctx, "kilt_ln_backward_params", error)))
        return FALSE;
      KILT_ARG (k, 0, ex->grads, err);
      KILT_ARG (k, 1, gofs, err);
      KILT_ARG (k, 2, has_gamma, err);
      KILT_ARG (k, 3, has_beta, err);
      KILT_ARG (k, 4, node->dout, err);
      KILT_ARG (k, 5, src->out, err);
      KILT_ARG (k, 6, node->saved, err);
      KILT_ARG (k, 7, batch, err);
      KILT_ARG (k, 8, c, err);
      KILT_ARG (k, 9, sp, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ex->ctx, k, c, error))
        return FALSE;
    }
  if (!node->din_needed[0])
    return TRUE;
  if (!(k = kilt_context_kernel (ex->ctx, "kilt_ln_backward_input", error)))
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, src->out, err);
  KILT_ARG (k, 3, node->saved, err);
  KILT_ARG (k, 4, ex->params, err);
  KILT_ARG (k, 5, pofs, err);
  KILT_ARG (k, 6, has_gamma, err);
  KILT_ARG (k, 7, c, err);
  KILT_ARG (k, 8, sp, err);
  KILT_ARG (k, 9, positions, err);
  KILT_ARG (k, 10, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, positions, error);
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

static void
ln_ref_moments (const KiltNode *node, const double *x, gsize b, gsize s, double *mean, double *istd)
{
  gsize c = node->in_shape[0].c, sp = (gsize)node->in_shape[0].h * node->in_shape[0].w;
  double m = 0, v = 0;

  for (gsize ch = 0; ch < c; ch++)
    m += x[(b * c + ch) * sp + s];
  m /= c;
  for (gsize ch = 0; ch < c; ch++)
    v += (x[(b * c + ch) * sp + s] - m) * (x[(b * c + ch) * sp + s] - m);
  *mean = m;
  *istd = 1.0 / sqrt (v / c + node->cfg.epsilon);
}

static double
ln_gamma (const KiltNode *node, const double *params, gsize ch)
{
  return node->cfg.bn_no_scale ? 1.0 : params[ch];
}

static void
ln_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                const double *const *in, const double *params, double *state, double *out)
{
  gsize c = node->in_shape[0].c, sp = (gsize)node->in_shape[0].h * node->in_shape[0].w;
  gsize beta_at = node->cfg.bn_no_scale ? 0 : c;

  for (gsize b = 0; b < batch; b++)
    for (gsize s = 0; s < sp; s++)
      {
        double mean, istd;
        ln_ref_moments (node, in[0], b, s, &mean, &istd);
        for (gsize ch = 0; ch < c; ch++)
          {
            gsize i = (b * c + ch) * sp + s;
            out[i] = ln_gamma (node, params, ch) * (in[0][i] - mean) * istd
                     + (node->cfg.bn_no_center ? 0.0 : params[beta_at + ch]);
          }
      }
}

static void
ln_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                 const double *const *in, const double *params, const double *state,
                 const double *out, const double *dout, double **din, double *dparams)
{
  gsize c = node->in_shape[0].c, sp = (gsize)node->in_shape[0].h * node->in_shape[0].w;
  gsize beta_at = node->cfg.bn_no_scale ? 0 : c;

  for (gsize i = 0; i < node->n_params; i++)
    dparams[i] = 0;
  for (gsize b = 0; b < batch; b++)
    for (gsize s = 0; s < sp; s++)
      {
        double mean, istd, s1 = 0, s2 = 0;
        ln_ref_moments (node, in[0], b, s, &mean, &istd);
        for (gsize ch = 0; ch < c; ch++)
          {
            gsize i = (b * c + ch) * sp + s;
            double xhat = (in[0][i] - mean) * istd, g = ln_gamma (node, params, ch) * dout[i];
            if (!node->cfg.bn_no_scale)
              dparams[ch] += dout[i] * xhat;
            if (!node->cfg.bn_no_center)
              dparams[beta_at + ch] += dout[i];
            s1 += g;
            s2 += g * xhat;
          }
        if (din[0])
          for (gsize ch = 0; ch < c; ch++)
            {
              gsize i = (b * c + ch) * sp + s;
              double xhat = (in[0][i] - mean) * istd, g = ln_gamma (node, params, ch) * dout[i];
              din[0][i] = istd / c * (c * g - s1 - xhat * s2);
            }
      }
}

const KiltLayerClass kilt_layer_norm_class = {
  .type = KILT_LAYER_LAYER_NORM,
  .name = "LayerNormalization",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = ln_infer,
  .init = ln_init,
  .flops = ln_flops,
  .saved_floats = ln_saved_floats,
  .forward = ln_forward,
  .backward = ln_backward,
  .ref_forward = ln_ref_forward,
  .ref_backward = ln_ref_backward,
};
