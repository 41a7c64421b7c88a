/* Normalization, Keras' preprocessing layer once adapted: (x - mean) / max (sqrt (var), eps)
 * per channel, with mean, variance and Keras' sample count kept as non-trainable state. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <math.h>

/* Keras' backend.epsilon (). */
#define NORM_EPS 1e-7f

/* State: mean[C], variance[C], count (Keras adapts all three; Kilt reads the first two). */
static gboolean
norm_infer (KiltNode *node, GError **error)
{
  node->out_shape = node->in_shape[0];
  node->n_state = 2 * (gsize)node->in_shape[0].c + 1;
  return TRUE;
}

static void
norm_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  guint c = node->in_shape[0].c;

  for (guint i = 0; i < c; i++)
    {
      state[i] = 0.0f;
      state[c + i] = 1.0f;
    }
  state[2 * c] = 0.0f;
}

static guint64
norm_flops (const KiltNode *node)
{
  return 2ull * kilt_shape_size (&node->in_shape[0]);
}

static gboolean
norm_launch (KiltNode *node, KiltExec *ex, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_uint c = node->in_shape[0].c, sp = node->in_shape[0].h * node->in_shape[0].w;
  cl_uint n = ex->batch * c * sp, sofs = (cl_uint)node->state_offset;
  cl_kernel k
      = kilt_context_kernel (ex->ctx, forward ? "kilt_norm_forward" : "kilt_norm_backward", error);
  cl_int err = CL_SUCCESS;
  cl_mem dst = forward ? node->out : src->dout, from = forward ? src->out : node->dout;
  float eps = NORM_EPS;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, from, err);
  KILT_ARG (k, 2, ex->state, err);
  KILT_ARG (k, 3, sofs, err);
  KILT_ARG (k, 4, c, err);
  KILT_ARG (k, 5, sp, err);
  KILT_ARG (k, 6, n, err);
  KILT_ARG (k, 7, eps, err);
  if (!forward)
    KILT_ARG (k, 8, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
norm_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  return norm_launch (node, ex, TRUE, error);
}

static gboolean
norm_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  if (!node->din_needed[0])
    return TRUE;
  return norm_launch (node, ex, FALSE, error);
}

static double
norm_ref_scale (const double *state, guint c, gsize ch)
{
  return 1.0 / fmax (sqrt (state[c + ch]), NORM_EPS);
}

static void
norm_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                  const double *const *in, const double *params, double *state, double *out)
{
  guint c = node->in_shape[0].c;
  gsize sp = (gsize)node->in_shape[0].h * node->in_shape[0].w, n = batch * c * sp;

  for (gsize i = 0; i < n; i++)
    {
      gsize ch = (i / sp) % c;
      out[i] = (in[0][i] - state[ch]) * norm_ref_scale (state, c, ch);
    }
}

static void
norm_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                   const double *const *in, const double *params, const double *state,
                   const double *out, const double *dout, double **din, double *dparams)
{
  guint c = node->in_shape[0].c;
  gsize sp = (gsize)node->in_shape[0].h * node->in_shape[0].w, n = batch * c * sp;

  if (din[0])
    for (gsize i = 0; i < n; i++)
      din[0][i] = dout[i] * norm_ref_scale (state, c, (i / sp) % c);
}

const KiltLayerClass kilt_normalization_class = {
  .type = KILT_LAYER_NORMALIZATION,
  .name = "Normalization",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = norm_infer,
  .init = norm_init,
  .flops = norm_flops,
  .forward = norm_forward,
  .backward = norm_backward,
  .ref_forward = norm_ref_forward,
  .ref_backward = norm_ref_backward,
};
