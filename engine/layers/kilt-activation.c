/* Activation layers (ReLU, LeakyReLU, sigmoid, tanh, softmax over channels) and Flatten. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <string.h>

static gboolean
act_infer (KiltNode *node, GError **error)
{
  if (node->cfg.activation == KILT_ACT_SOFTMAX && node->in_shape[0].h * node->in_shape[0].w != 1)
    {
      kilt_layer_set_error (error, node,
                            "softmax is supported on flat inputs only, got %ux%ux%u; add a "
                            "Flatten or GlobalAveragePooling2D layer before it",
                            node->in_shape[0].h, node->in_shape[0].w, node->in_shape[0].c);
      return FALSE;
    }
  node->out_shape = node->in_shape[0];
  return TRUE;
}

static guint64
act_flops (const KiltNode *node)
{
  return kilt_shape_size (&node->in_shape[0]);
}

static gboolean
act_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_int err = CL_SUCCESS;
  cl_kernel k;
  cl_uint count = (cl_uint)n;
  cl_int act = node->cfg.activation;

  if (node->cfg.activation == KILT_ACT_SOFTMAX || node->cfg.activation == KILT_ACT_LINEAR)
    {
      if (!kilt_layer_copy_scaled (ex, node->out, src->out, n, 0.0f, error))
        return FALSE;
      return kilt_layer_bias_act (ex, node->out, 0, FALSE, node->out_shape.c, 1,
                                  node->cfg.activation, node->cfg.alpha, error);
    }
  k = kilt_context_kernel (ex->ctx, "kilt_act_forward", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, count, err);
  KILT_ARG (k, 3, act, err);
  KILT_ARG (k, 4, node->cfg.alpha, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
act_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_int err = CL_SUCCESS;
  cl_kernel k;
  cl_uint count = (cl_uint)n;
  cl_int act = node->cfg.activation;

  if (!node->din_needed[0])
    return TRUE;
  if (node->cfg.activation == KILT_ACT_SOFTMAX || node->cfg.activation == KILT_ACT_LINEAR)
    {
      if (!kilt_layer_act_backward (ex, node, node->cfg.activation, node->cfg.alpha,
                                    node->out_shape.c, 1, error))
        return FALSE;
      return kilt_layer_copy_scaled (ex, src->dout, node->dout, n, node->din_beta[0], error);
    }
  k = kilt_context_kernel (ex->ctx, "kilt_act_backward", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, node->out, err);
  KILT_ARG (k, 3, count, err);
  KILT_ARG (k, 4, act, err);
  KILT_ARG (k, 5, node->cfg.alpha, err);
  KILT_ARG (k, 6, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static void
act_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (gsize i = 0; i < n; i++)
    out[i] = in[0][i];
  kilt_ref_activate (out, batch, node->out_shape.c, node->out_shape.h * node->out_shape.w,
                     node->cfg.activation, node->cfg.alpha);
}

static void
act_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  if (din[0])
    kilt_ref_act_backward (din[0], dout, out, batch, node->out_shape.c,
                           node->out_shape.h * node->out_shape.w, node->cfg.activation,
                           node->cfg.alpha);
}

const KiltLayerClass kilt_activation_class = {
  .type = KILT_LAYER_ACTIVATION,
  .name = "Activation",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = act_infer,
  .flops = act_flops,
  .forward = act_forward,
  .backward = act_backward,
  .ref_forward = act_ref_forward,
  .ref_backward = act_ref_backward,
};

/* ---- Flatten: the memory layout is already flat; the copy keeps buffers per node. ---------- */

static gboolean
flatten_infer (KiltNode *node, GError **error)
{
  node->out_shape = (KiltShape){ (guint)kilt_shape_size (&node->in_shape[0]), 1, 1 };
  return TRUE;
}

static gboolean
flatten_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);

  return kilt_layer_copy_scaled (ex, node->out, src->out,
                                 ex->batch * kilt_shape_size (&node->out_shape), 0.0f, error);
}

static gboolean
flatten_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);

  if (!node->din_needed[0])
    return TRUE;
  return kilt_layer_copy_scaled (ex, src->dout, node->dout,
                                 ex->batch * kilt_shape_size (&node->out_shape), node->din_beta[0],
                                 error);
}

static void
flatten_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                     guint64 step, const double *const *in, const double *params, double *state,
                     double *out)
{
  memcpy (out, in[0], sizeof (double) * batch * kilt_shape_size (&node->out_shape));
}

static void
flatten_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                      const double *const *in, const double *params, const double *state,
                      const double *out, const double *dout, double **din, double *dparams)
{
  if (din[0])
    memcpy (din[0], dout, sizeof (double) * batch * kilt_shape_size (&node->out_shape));
}

const KiltLayerClass kilt_flatten_class = {
  .type = KILT_LAYER_FLATTEN,
  .name = "Flatten",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = flatten_infer,
  .forward = flatten_forward,
  .backward = flatten_backward,
  .ref_forward = flatten_ref_forward,
  .ref_backward = flatten_ref_backward,
};
