/* Normalization, Keras' preprocessing layer once adapted: (x - mean) / max (sqrt (var), eps)
 * per channel, with mean, variance and Keras' sample count kept as non-trainable state. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"
#include "kilt-error.h"

#include <math.h>

/* Keras' backend.epsilon (). */
#define NORM_EPS 1e-7f

/* State: mean[C], variance[C], count (Keras adapts all three; Kilt reads the first two). */
/* With constants (cfg.norm_n > 0) the state is empty: forward writes them into the saved
 * buffer, [mean C][variance C], where the kernels read them as they read the state. */
static gboolean
norm_infer (KiltNode *node, GError **error)
{
  const KiltLayerConfig *cfg = &node->cfg;
  guint c = node->in_shape[0].c;

  node->out_shape = node->in_shape[0];
  if (cfg->norm_n == 0)
    {
      node->n_state = 2 * (gsize)c + 1;
      return TRUE;
    }
  if (c > KILT_NORM_CONST_MAX || (cfg->norm_n != 1 && cfg->norm_n != c))
    {
      kilt_layer_set_error (error, node,
                            "%u constant means and variances for %u channels; Kilt takes one, or "
                            "one per channel up to %d",
                            cfg->norm_n, c, KILT_NORM_CONST_MAX);
      return FALSE;
    }
  /* One value for every channel is spread over them, so the kernels read one per channel. */
  if (cfg->norm_n == 1)
    {
      for (guint i = 1; i < c; i++)
        {
          node->cfg.norm_mean[i] = cfg->norm_mean[0];
          node->cfg.norm_var[i] = cfg->norm_var[0];
        }
      node->cfg.norm_n = c;
    }
  for (guint i = 0; i < cfg->norm_n; i++)
    if (!isfinite (cfg->norm_mean[i]) || !(cfg->norm_var[i] >= 0) || isinf (cfg->norm_var[i]))
      {
        kilt_layer_set_error (error, node,
                              "mean %g and variance %g must be finite, variance 0 or "
                              "more",
                              cfg->norm_mean[i], cfg->norm_var[i]);
        return FALSE;
      }
  return TRUE;
}

static gsize
norm_saved_floats (const KiltNode *node, guint batch)
{
  return node->cfg.norm_n ? 2 * (gsize)node->in_shape[0].c : 0;
}

/* The constants, one per channel, as the kernels read them. */
static void
norm_constants (const KiltNode *node, float *out)
{
  guint c = node->in_shape[0].c, one = node->cfg.norm_n == 1;

  for (guint i = 0; i < c; i++)
    {
      out[i] = node->cfg.norm_mean[one ? 0 : i];
      out[c + i] = node->cfg.norm_var[one ? 0 : i];
    }
}

static void
norm_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  guint c = node->in_shape[0].c;

  if (node->cfg.norm_n)
    return; /* constants: no state */
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
  cl_uint n = ex->batch * c * sp, sofs = node->cfg.norm_n ? 0 : (cl_uint)node->state_offset;
  cl_mem stats = node->cfg.norm_n ? node->saved : ex->state;
  cl_kernel k
      = kilt_context_kernel (ex->ctx, forward ? "kilt_norm_forward" : "kilt_norm_backward", error);
  cl_int err = CL_SUCCESS;
  cl_mem dst = forward ? node->out : src->dout, from = forward ? src->out : node->dout;
  float eps = NORM_EPS;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, from, err);
  KILT_ARG (k, 2, stats, err);
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
  if (node->cfg.norm_n)
    {
      gsize bytes = sizeof (float) * node->in_shape[0].c;
      /* Not blocking: the constants live in the node's config as long as the model does. */
      cl_int err = clEnqueueWriteBuffer (ex->ctx->queue, node->saved, CL_FALSE, 0, bytes,
                                         node->cfg.norm_mean, 0, NULL, NULL);
      if (err == CL_SUCCESS)
        err = clEnqueueWriteBuffer (ex->ctx->queue, node->saved, CL_FALSE, bytes, bytes,
                                    node->cfg.norm_var, 0, NULL, NULL);
      if (err != CL_SUCCESS)
        {
          kilt_set_cl_error (error, err, ex->ctx->info->name,
                             "writing Normalization's mean and variance");
          return FALSE;
        }
    }
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

/* The statistics the reference uses: the state, or the constants. */
static const double *
norm_ref_stats (const KiltNode *node, const double *state, double *buf)
{
  float f[2 * KILT_NORM_CONST_MAX];
  guint c = node->in_shape[0].c;

  if (node->cfg.norm_n == 0)
    return state;
  norm_constants (node, f);
  for (guint i = 0; i < 2 * c; i++)
    buf[i] = f[i];
  return buf;
}

static void
norm_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                  const double *const *in, const double *params, double *state_in, double *out)
{
  guint c = node->in_shape[0].c;
  gsize sp = (gsize)node->in_shape[0].h * node->in_shape[0].w, n = batch * c * sp;
  double buf[2 * KILT_NORM_CONST_MAX];
  const double *state = norm_ref_stats (node, state_in, buf);

  for (gsize i = 0; i < n; i++)
    {
      gsize ch = (i / sp) % c;
      out[i] = (in[0][i] - state[ch]) * norm_ref_scale (state, c, ch);
    }
}

static void
norm_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                   const double *const *in, const double *params, const double *state_in,
                   const double *out, const double *dout, double **din, double *dparams)
{
  guint c = node->in_shape[0].c;
  gsize sp = (gsize)node->in_shape[0].h * node->in_shape[0].w, n = batch * c * sp;
  double buf[2 * KILT_NORM_CONST_MAX];
  const double *state = norm_ref_stats (node, state_in, buf);

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
  .saved_floats = norm_saved_floats,
  .forward = norm_forward,
  .backward = norm_backward,
  .ref_forward = norm_ref_forward,
  .ref_backward = norm_ref_backward,
};
