/* Dropout: inverted dropout in training, identity in inference; the mask is recomputed, not kept.
 */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <string.h>

/* Each node draws from its own stream: the run seed mixed with the node index (an odd constant
 * unlike the ones inside kilt_hash, so node streams do not line up with element counters). */
static guint32
dropout_seed (guint32 seed, guint node_index)
{
  return seed ^ (node_index * 0x27D4EB2Fu);
}

/* How many consecutive elements share one draw: 1, a channel's plane, or a whole sample. */
static guint
dropout_group (const KiltNode *node)
{
  const KiltShape *s = &node->out_shape;

  switch (node->cfg.dropout_mask)
    {
      case KILT_DROPOUT_CHANNEL:
        return s->h * s->w;
      case KILT_DROPOUT_SAMPLE:
        return (guint)kilt_shape_size (s);
      default:
        return 1;
    }
}

static gboolean
dropout_infer (KiltNode *node, GError **error)
{
  if ((guint)node->cfg.dropout_mask > KILT_DROPOUT_SAMPLE)
    {
      kilt_layer_set_error (error, node, "unknown dropout mask %d", (int)node->cfg.dropout_mask);
      return FALSE;
    }
  /* Written so that NaN fails too. */
  if (!(node->cfg.rate >= 0.0f && node->cfg.rate < 1.0f))
    {
      kilt_layer_set_error (error, node, "rate must be in [0, 1), got %g", node->cfg.rate);
      return FALSE;
    }
  node->out_shape = node->in_shape[0];
  return TRUE;
}

static guint64
dropout_flops (const KiltNode *node)
{
  return kilt_shape_size (&node->in_shape[0]);
}

/* One launch for forward (beta < 0) or backward (dst = beta * dst + mask * src). */
static gboolean
dropout_launch (KiltNode *node, KiltExec *ex, cl_mem dst, cl_mem src, float beta, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  gboolean forward = beta < 0.0f;
  cl_int err = CL_SUCCESS;
  cl_kernel k;
  cl_uint count = (cl_uint)n, seed = dropout_seed (ex->seed, node->index);
  cl_uint step = (cl_uint)ex->step;
  float rate = node->cfg.rate, scale = 1.0f / (1.0f - node->cfg.rate);
  cl_uint group = dropout_group (node);
  cl_uint first = (cl_uint)(ex->sample_offset * kilt_shape_size (&node->out_shape));

  k = kilt_context_kernel (ex->ctx, forward ? "kilt_dropout_forward" : "kilt_dropout_backward",
                           error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, src, err);
  KILT_ARG (k, 2, count, err);
  KILT_ARG (k, 3, seed, err);
  KILT_ARG (k, 4, step, err);
  KILT_ARG (k, 5, rate, err);
  KILT_ARG (k, 6, scale, err);
  if (!forward)
    KILT_ARG (k, 7, beta, err);
  KILT_ARG (k, forward ? 7 : 8, group, err);
  KILT_ARG (k, forward ? 8 : 9, first, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
dropout_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);

  if (!ex->training || node->cfg.rate == 0.0f)
    return kilt_layer_copy_scaled (ex, node->out, src->out,
                                   ex->batch * kilt_shape_size (&node->out_shape), 0.0f, error);
  return dropout_launch (node, ex, node->out, src->out, -1.0f, error);
}

static gboolean
dropout_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);

  if (!node->din_needed[0])
    return TRUE;
  if (!ex->training || node->cfg.rate == 0.0f)
    return kilt_layer_copy_scaled (ex, src->dout, node->dout,
                                   ex->batch * kilt_shape_size (&node->out_shape),
                                   node->din_beta[0], error);
  return dropout_launch (node, ex, src->dout, node->dout, node->din_beta[0], error);
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

/* The kept-element factor, drawn exactly as kernels/dropout.cl draws it (float compare). */
static double
dropout_ref_factor (const KiltNode *node, guint32 seed, guint64 step, gsize i)
{
  float u = kilt_hash_uniform (dropout_seed (seed, node->index), (guint32)step,
                               (guint32)(i / dropout_group (node)));

  return u >= node->cfg.rate ? 1.0 / (1.0 - (double)node->cfg.rate) : 0.0;
}

static void
dropout_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                     guint64 step, const double *const *in, const double *params, double *state,
                     double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  if (!training)
    {
      memcpy (out, in[0], sizeof (double) * n);
      return;
    }
  for (gsize i = 0; i < n; i++)
    out[i] = in[0][i] * dropout_ref_factor (node, seed, step, i);
}

static void
dropout_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                      const double *const *in, const double *params, const double *state,
                      const double *out, const double *dout, double **din, double *dparams)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  if (din[0])
    for (gsize i = 0; i < n; i++)
      din[0][i] = dout[i] * dropout_ref_factor (node, seed, step, i);
}

const KiltLayerClass kilt_dropout_class = {
  .type = KILT_LAYER_DROPOUT,
  .name = "Dropout",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = dropout_infer,
  .flops = dropout_flops,
  .forward = dropout_forward,
  .backward = dropout_backward,
  .ref_forward = dropout_ref_forward,
  .ref_backward = dropout_ref_backward,
};
