/* Dense: y = act (x W + b), W stored (in x units) row-major as Keras keeps its kernel. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"
#include "kilt-gemm.h"

static gboolean
dense_infer (KiltNode *node, GError **error)
{
  gsize in = kilt_shape_size (&node->in_shape[0]);

  if (!kilt_activation_fusable (node->cfg.activation))
    {
      kilt_layer_set_error (error, node,
                            "activation %s is not one Dense applies itself (linear, relu, "
                            "leaky_relu, sigmoid, tanh, softmax); add an Activation layer after it",
                            kilt_activation_name (node->cfg.activation));
      return FALSE;
    }
  if (node->cfg.units == 0)
    {
      kilt_layer_set_error (error, node, "units must be at least 1");
      return FALSE;
    }
  if (node->in_shape[0].h != 1 || node->in_shape[0].w != 1)
    {
      kilt_layer_set_error (error, node,
                            "expects a flat input, got %ux%ux%u; add a Flatten layer before it",
                            node->in_shape[0].h, node->in_shape[0].w, node->in_shape[0].c);
      return FALSE;
    }
  node->out_shape = (KiltShape){ node->cfg.units, 1, 1 };
  node->n_params = in * node->cfg.units + (node->cfg.use_bias ? node->cfg.units : 0);
  return TRUE;
}

static void
dense_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  guint in = (guint)kilt_shape_size (&node->in_shape[0]), units = node->cfg.units;

  kilt_layer_init_weights (params, (gsize)in * units, &node->cfg, in, units, rng);
  if (node->cfg.use_bias)
    for (guint i = 0; i < units; i++)
      params[(gsize)in * units + i] = 0.0f;
}

static guint64
dense_flops (const KiltNode *node)
{
  return 2ull * kilt_shape_size (&node->in_shape[0]) * node->cfg.units;
}

static gboolean
dense_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize in = kilt_shape_size (&node->in_shape[0]), units = node->cfg.units;

  if (!kilt_gemm (ex->ctx, FALSE, FALSE, ex->batch, units, in, 1.0f, src->out, 0, in, ex->params,
                  node->param_offset, units, 0.0f, node->out, 0, units, error))
    return FALSE;
  return kilt_layer_bias_act (ex, node->out, node->param_offset + in * units, node->cfg.use_bias,
                              units, 1, kilt_node_act (node), kilt_node_alpha (node), error);
}

static gboolean
dense_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize in = kilt_shape_size (&node->in_shape[0]), units = node->cfg.units;

  if (!kilt_layer_act_backward (ex, node, kilt_node_act (node), kilt_node_alpha (node), units, 1,
                                error))
    return FALSE;
  /* dW = x^T dz, unless frozen (then only dx, for trainable layers below) */
  if (!node->frozen
      && !kilt_gemm (ex->ctx, TRUE, FALSE, in, units, ex->batch, 1.0f, src->out, 0, in, node->dout,
                     0, units, 0.0f, ex->grads, node->grad_offset, units, error))
    return FALSE;
  if (!node->frozen && node->cfg.use_bias
      && !kilt_layer_bias_grad (ex, node->dout, node->grad_offset + in * units, units, 1, error))
    return FALSE;
  /* dx = dz W^T */
  if (node->din_needed[0]
      && !kilt_gemm (ex->ctx, FALSE, TRUE, ex->batch, in, units, 1.0f, node->dout, 0, units,
                     ex->params, node->param_offset, units, node->din_beta[0], src->dout, 0, in,
                     error))
    return FALSE;
  return TRUE;
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

static void
dense_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                   const double *const *in, const double *params, double *state, double *out)
{
  gsize nin = kilt_shape_size (&node->in_shape[0]), units = node->cfg.units;

  for (guint b = 0; b < batch; b++)
    for (gsize u = 0; u < units; u++)
      {
        double acc = node->cfg.use_bias ? params[nin * units + u] : 0.0;
        for (gsize i = 0; i < nin; i++)
          acc += in[0][b * nin + i] * params[i * units + u];
        out[b * units + u] = acc;
      }
  kilt_ref_activate (out, batch, units, 1, node->cfg.activation, node->cfg.alpha);
}

static void
dense_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                    const double *const *in, const double *params, const double *state,
                    const double *out, const double *dout, double **din, double *dparams)
{
  gsize nin = kilt_shape_size (&node->in_shape[0]), units = node->cfg.units;
  g_autofree double *dz = g_new (double, batch *units);

  kilt_ref_act_backward (dz, dout, out, batch, units, 1, node->cfg.activation, node->cfg.alpha);
  for (gsize i = 0; i < nin; i++)
    for (gsize u = 0; u < units; u++)
      {
        double acc = 0;
        for (guint b = 0; b < batch; b++)
          acc += in[0][b * nin + i] * dz[b * units + u];
        dparams[i * units + u] = acc;
      }
  if (node->cfg.use_bias)
    for (gsize u = 0; u < units; u++)
      {
        double acc = 0;
        for (guint b = 0; b < batch; b++)
          acc += dz[b * units + u];
        dparams[nin * units + u] = acc;
      }
  if (din[0])
    for (guint b = 0; b < batch; b++)
      for (gsize i = 0; i < nin; i++)
        {
          double acc = 0;
          for (gsize u = 0; u < units; u++)
            acc += dz[b * units + u] * params[i * units + u];
          din[0][b * nin + i] = acc;
        }
}

const KiltLayerClass kilt_dense_class = {
  .type = KILT_LAYER_DENSE,
  .name = "Dense",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = dense_infer,
  .init = dense_init,
  .flops = dense_flops,
  .forward = dense_forward,
  .backward = dense_backward,
  .ref_forward = dense_ref_forward,
  .ref_backward = dense_ref_backward,
};
