/* BatchNormalization over channels: batch statistics in training, running ones in inference. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"
#include "kilt-error.h"

#include <math.h>

/* Parameters: gamma[C] then beta[C], either left out when Keras' scale or center is false.
 * State: running mean[C] then running variance[C].
 * Saved between forward and backward: batch mean[C] then 1/sqrt(var + eps)[C], then room for
 * the per-slice partial sums of the two-level reductions (2 x BN_GROUPS_MAX x C).
 *
 * The batch is normalised with the biased variance (divided by N = batch * H * W), as
 * tf.nn.moments and every framework do; the running variance takes the unbiased
 * N / (N - 1) estimate, as tf.keras' fused kernel (tensorflow/tensorflow#55545), multi-backend
 * Keras since keras-team/keras#9028 and PyTorch do. The two differ noticeably only for small N
 * (flat inputs, small batches). */

/* At most this many slices (work-groups) per channel in the reductions. */
#define BN_GROUPS_MAX 64

/* Without gamma or beta (Keras' scale / center false), the kernels read a full gamma, beta
 * block the layer keeps in its saved buffer after the partial sums (1 or 0 where a parameter
 * is absent), and write both gradients beside it; the ones that exist are copied to grads. */
static gboolean
bn_partial (const KiltNode *node)
{
  return node->cfg.bn_no_scale || node->cfg.bn_no_center;
}

static gsize
bn_eff_offset (const KiltNode *node)
{
  return 2 * (gsize)node->in_shape[0].c * (1 + BN_GROUPS_MAX);
}

/* Copies @n floats between buffers at float offsets, or fills them with @value (src NULL). */
static gboolean
bn_copy (KiltExec *ex, cl_mem dst, gsize dst_off, cl_mem src, gsize src_off, gsize n, float value,
         GError **error)
{
  cl_int err;

  if (n == 0)
    return TRUE;
  if (src)
    err = clEnqueueCopyBuffer (ex->ctx->queue, src, dst, 4 * src_off, 4 * dst_off, 4 * n, 0, NULL,
                               NULL);
  else
    err = clEnqueueFillBuffer (ex->ctx->queue, dst, &value, sizeof value, 4 * dst_off, 4 * n, 0,
                               NULL, NULL);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ex->ctx->info->name,
                         "filling batch normalization's gamma and beta");
      return FALSE;
    }
  return TRUE;
}

/* Where the kernels read gamma, beta (@buf, @off) and write their gradients (@gbuf, @goff). */
static gboolean
bn_params (KiltNode *node, KiltExec *ex, gboolean fill, cl_mem *buf, cl_uint *off, cl_mem *gbuf,
           cl_uint *goff, GError **error)
{
  gsize c = node->in_shape[0].c, e = bn_eff_offset (node), pofs = node->param_offset;
  gboolean scale = !node->cfg.bn_no_scale, center = !node->cfg.bn_no_center;

  if (!bn_partial (node))
    {
      *buf = ex->params;
      *gbuf = ex->grads;
      *off = (cl_uint)pofs;
      *goff = (cl_uint)node->grad_offset;
      return TRUE;
    }
  *buf = *gbuf = node->saved;
  *off = (cl_uint)e;
  *goff = (cl_uint)(e + 2 * c);
  if (!fill)
    return TRUE;
  return bn_copy (ex, node->saved, e, scale ? ex->params : NULL, pofs, c, 1.0f, error)
         && bn_copy (ex, node->saved, e + c, center ? ex->params : NULL, pofs + (scale ? c : 0), c,
                     0.0f, error);
}

static gboolean
bn_infer (KiltNode *node, GError **error)
{
  if (!(node->cfg.epsilon > 0.0f))
    {
      kilt_layer_set_error (error, node, "epsilon must be positive, got %g", node->cfg.epsilon);
      return FALSE;
    }
  if (!(node->cfg.momentum >= 0.0f && node->cfg.momentum <= 1.0f))
    {
      kilt_layer_set_error (error, node, "momentum must be in [0, 1], got %g", node->cfg.momentum);
      return FALSE;
    }
  node->out_shape = node->in_shape[0];
  node->n_params = (gsize)node->in_shape[0].c * (!node->cfg.bn_no_scale + !node->cfg.bn_no_center);
  node->n_state = 2 * (gsize)node->in_shape[0].c;
  return TRUE;
}

static void
bn_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  guint c = node->in_shape[0].c;

  guint beta_at = node->cfg.bn_no_scale ? 0 : c;

  for (guint i = 0; i < c; i++)
    {
      if (!node->cfg.bn_no_scale)
        params[i] = 1.0f;
      if (!node->cfg.bn_no_center)
        params[beta_at + i] = 0.0f;
      state[i] = 0.0f;
      state[c + i] = 1.0f;
    }
}

static guint64
bn_flops (const KiltNode *node)
{
  /* Subtract, scale, multiply, add per element. */
  return 4ull * kilt_shape_size (&node->in_shape[0]);
}

static gsize
bn_saved_floats (const KiltNode *node, guint batch)
{
  return bn_eff_offset (node) + (bn_partial (node) ? 4 * (gsize)node->in_shape[0].c : 0);
}

/* A power-of-two work-group size for the per-channel reductions: no larger than the kernel and
 * device allow, nor than the number of elements each channel has. */
static size_t
bn_group_size (KiltExec *ex, cl_kernel k, gsize per_channel)
{
  size_t limit = MIN ((size_t)256, ex->ctx->info->max_work_group), kernel_max = 0, size = 1;

  if (clGetKernelWorkGroupInfo (k, ex->ctx->info->device, CL_KERNEL_WORK_GROUP_SIZE,
                                sizeof kernel_max, &kernel_max, NULL)
          == CL_SUCCESS
      && kernel_max > 0)
    limit = MIN (limit, kernel_max);
  while (size * 2 <= limit && size < per_channel)
    size *= 2;
  return size;
}

/* Slices per channel for the reductions: enough work-groups in all to give every compute
 * unit several (one group per channel left most of a large GPU idle: ResNet-20's 16-channel
 * layers at batch 128 took 0.24 ms per reduction on an H200), while each slice keeps at least
 * 256 elements. $KILT_BN_GROUPS overrides, for tests and tuning. */
static guint
bn_groups (KiltExec *ex, guint channels, gsize per_channel)
{
  const char *forced = g_getenv ("KILT_BN_GROUPS");
  gsize want;

  if (forced)
    want = (gsize)CLAMP (g_ascii_strtoll (forced, NULL, 10), 1, BN_GROUPS_MAX);
  else
    {
      want = (8 * (gsize)MAX (ex->ctx->info->compute_units, 1) + channels - 1) / channels;
      want = MIN (want, per_channel / 256);
    }
  return (guint)CLAMP (want, 1, MIN ((gsize)BN_GROUPS_MAX, MAX (per_channel, 1)));
}

/* A (groups x channels) grid of work-groups, each reducing one slice of a channel; @arg is the
 * kernel's local-memory argument. */
static gboolean
bn_launch_slices (KiltExec *ex, cl_kernel k, guint arg, guint channels, guint groups,
                  gsize per_channel, GError **error)
{
  size_t local[2] = { bn_group_size (ex, k, (per_channel + groups - 1) / groups), 1 };
  size_t global[2] = { local[0] * groups, channels };
  G_GNUC_UNUSED cl_int err = clSetKernelArg (k, arg, sizeof (float) * local[0], NULL);

  g_assert (err == CL_SUCCESS);
  return kilt_context_launch (ex->ctx, k, 2, global, local, error);
}

static gboolean
bn_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_uint c = node->in_shape[0].c, sp = node->in_shape[0].h * node->in_shape[0].w;
  cl_uint batch = ex->batch, n = batch * c * sp, pofs = (cl_uint)node->param_offset;
  cl_uint sofs = (cl_uint)node->state_offset, zero = 0;
  /* Frozen, it runs as in inference also while training (as Keras does): the running
   * statistics normalise and are not updated. A recomputed forward (activation recompute)
   * computes the same batch statistics again but must not update them a second time. */
  gboolean batch_stats = ex->training && !node->frozen;
  cl_int err = CL_SUCCESS, update = !ex->recompute, as_var = !batch_stats;
  float eps = node->cfg.epsilon, momentum = node->cfg.momentum;
  cl_mem stats = batch_stats ? node->saved : ex->state, pbuf, gbuf;
  cl_uint gofs;
  cl_uint stats_off = batch_stats ? zero : sofs;
  cl_kernel k;

  if (batch_stats)
    {
      cl_uint groups = bn_groups (ex, c, (gsize)batch * sp), part_off = 2 * c;

      k = kilt_context_kernel (ex->ctx, "kilt_bn_stats_partial", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, src->out, err);
      KILT_ARG (k, 1, batch, err);
      KILT_ARG (k, 2, c, err);
      KILT_ARG (k, 3, sp, err);
      KILT_ARG (k, 4, groups, err);
      KILT_ARG (k, 5, node->saved, err);
      KILT_ARG (k, 6, part_off, err);
      g_assert (err == CL_SUCCESS);
      if (!bn_launch_slices (ex, k, 7, c, groups, (gsize)batch * sp, error))
        return FALSE;
      k = kilt_context_kernel (ex->ctx, "kilt_bn_stats_finish", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, node->saved, err);
      KILT_ARG (k, 1, part_off, err);
      KILT_ARG (k, 2, batch, err);
      KILT_ARG (k, 3, c, err);
      KILT_ARG (k, 4, sp, err);
      KILT_ARG (k, 5, groups, err);
      KILT_ARG (k, 6, node->saved, err);
      KILT_ARG (k, 7, ex->state, err);
      KILT_ARG (k, 8, sofs, err);
      KILT_ARG (k, 9, momentum, err);
      KILT_ARG (k, 10, eps, err);
      KILT_ARG (k, 11, update, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ex->ctx, k, c, error))
        return FALSE;
    }
  k = kilt_context_kernel (ex->ctx, "kilt_bn_apply", error);
  if (!k)
    return FALSE;
  if (!bn_params (node, ex, TRUE, &pbuf, &pofs, &gbuf, &gofs, error))
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, pbuf, err);
  KILT_ARG (k, 3, pofs, err);
  KILT_ARG (k, 4, stats, err);
  KILT_ARG (k, 5, stats_off, err);
  KILT_ARG (k, 6, c, err);
  KILT_ARG (k, 7, sp, err);
  KILT_ARG (k, 8, n, err);
  KILT_ARG (k, 9, eps, err);
  KILT_ARG (k, 10, as_var, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

/* A frozen layer's backward: its forward is y = gamma (x - mean) / sqrt (var + eps) + beta with
 * the running statistics as constants, so dx = gamma / sqrt (var + eps) dy, and no parameter
 * gradients. */
static gboolean
bn_backward_frozen (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_uint c = node->in_shape[0].c, sp = node->in_shape[0].h * node->in_shape[0].w;
  cl_uint n = ex->batch * c * sp, pofs, gofs, sofs = (cl_uint)node->state_offset;
  float eps = node->cfg.epsilon;
  cl_int err = CL_SUCCESS;
  cl_mem pbuf, gbuf;
  cl_kernel k;

  if (!node->din_needed[0])
    return TRUE;
  if (!bn_params (node, ex, FALSE, &pbuf, &pofs, &gbuf, &gofs, error)
      || !(k = kilt_context_kernel (ex->ctx, "kilt_bn_backward_frozen", error)))
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, pbuf, err);
  KILT_ARG (k, 3, pofs, err);
  KILT_ARG (k, 4, ex->state, err);
  KILT_ARG (k, 5, sofs, err);
  KILT_ARG (k, 6, c, err);
  KILT_ARG (k, 7, sp, err);
  KILT_ARG (k, 8, n, err);
  KILT_ARG (k, 9, eps, err);
  KILT_ARG (k, 10, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

/* Backward for the training forward (batch statistics), which is what a step runs unless the
 * layer is frozen. */
static gboolean
bn_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_uint c = node->in_shape[0].c, sp = node->in_shape[0].h * node->in_shape[0].w;
  cl_uint batch = ex->batch, n = batch * c * sp, pofs = (cl_uint)node->param_offset;
  float count = (float)batch * sp;
  cl_uint groups = bn_groups (ex, c, (gsize)batch * sp), part_off = 2 * c, gofs;
  cl_int err = CL_SUCCESS;
  cl_kernel k;
  cl_mem pbuf, gbuf;

  if (node->frozen)
    return bn_backward_frozen (node, ex, error);
  if (!bn_params (node, ex, FALSE, &pbuf, &pofs, &gbuf, &gofs, error))
    return FALSE;

  k = kilt_context_kernel (ex->ctx, "kilt_bn_backward_partial", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->dout, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, node->saved, err);
  KILT_ARG (k, 3, batch, err);
  KILT_ARG (k, 4, c, err);
  KILT_ARG (k, 5, sp, err);
  KILT_ARG (k, 6, groups, err);
  KILT_ARG (k, 7, node->saved, err);
  KILT_ARG (k, 8, part_off, err);
  g_assert (err == CL_SUCCESS);
  if (!bn_launch_slices (ex, k, 9, c, groups, (gsize)batch * sp, error))
    return FALSE;
  k = kilt_context_kernel (ex->ctx, "kilt_bn_backward_finish", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->saved, err);
  KILT_ARG (k, 1, part_off, err);
  KILT_ARG (k, 2, c, err);
  KILT_ARG (k, 3, groups, err);
  KILT_ARG (k, 4, gbuf, err);
  KILT_ARG (k, 5, gofs, err);
  g_assert (err == CL_SUCCESS);
  if (!kilt_context_launch_1d (ex->ctx, k, c, error))
    return FALSE;
  if (bn_partial (node))
    {
      gsize pofs_real = node->grad_offset;
      if (!node->cfg.bn_no_scale
          && !bn_copy (ex, ex->grads, pofs_real, node->saved, gofs, c, 0, error))
        return FALSE;
      if (!node->cfg.bn_no_center
          && !bn_copy (ex, ex->grads, pofs_real + (node->cfg.bn_no_scale ? 0 : c), node->saved,
                       gofs + c, c, 0, error))
        return FALSE;
    }
  if (!node->din_needed[0])
    return TRUE;

  k = kilt_context_kernel (ex->ctx, "kilt_bn_backward_apply", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, src->out, err);
  KILT_ARG (k, 3, node->saved, err);
  KILT_ARG (k, 4, pbuf, err);
  KILT_ARG (k, 5, gbuf, err);
  KILT_ARG (k, 6, pofs, err);
  KILT_ARG (k, 7, gofs, err);
  KILT_ARG (k, 8, c, err);
  KILT_ARG (k, 9, sp, err);
  KILT_ARG (k, 10, n, err);
  KILT_ARG (k, 11, count, err);
  KILT_ARG (k, 12, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

/* Gamma and beta of channel @ch: 1 and 0 where Keras' scale or center leaves them out. */
static double
bn_ref_gamma (const KiltNode *node, const double *params, gsize ch)
{
  return node->cfg.bn_no_scale ? 1.0 : params[ch];
}

static double
bn_ref_beta (const KiltNode *node, const double *params, gsize ch)
{
  if (node->cfg.bn_no_center)
    return 0.0;
  return params[(node->cfg.bn_no_scale ? 0 : node->in_shape[0].c) + ch];
}

/* Batch mean and biased variance of channel @ch. */
static void
bn_ref_moments (const KiltNode *node, guint batch, const double *x, guint ch, double *mean,
                double *var)
{
  gsize c = node->in_shape[0].c, sp = (gsize)node->in_shape[0].h * node->in_shape[0].w;
  double n = (double)batch * sp, m = 0, v = 0;

  for (guint b = 0; b < batch; b++)
    for (gsize s = 0; s < sp; s++)
      m += x[(b * c + ch) * sp + s];
  m /= n;
  for (guint b = 0; b < batch; b++)
    for (gsize s = 0; s < sp; s++)
      {
        double d = x[(b * c + ch) * sp + s] - m;
        v += d * d;
      }
  *mean = m;
  *var = v / n;
}

static void
bn_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                const double *const *in, const double *params, double *state, double *out)
{
  gsize c = node->in_shape[0].c, sp = (gsize)node->in_shape[0].h * node->in_shape[0].w;
  double eps = node->cfg.epsilon, mom = node->cfg.momentum;

  for (gsize ch = 0; ch < c; ch++)
    {
      double mean, var, istd;
      if (training && !node->frozen)
        {
          bn_ref_moments (node, batch, in[0], (guint)ch, &mean, &var);
          state[ch] = mom * state[ch] + (1 - mom) * mean;
          {
            /* The running variance is the unbiased estimate, as in kernels/batchnorm.cl. */
            double n = (double)batch * sp;
            state[c + ch] = mom * state[c + ch] + (1 - mom) * (n > 1 ? var * n / (n - 1) : var);
          }
        }
      else
        {
          mean = state[ch];
          var = state[c + ch];
        }
      istd = 1.0 / sqrt (var + eps);
      for (guint b = 0; b < batch; b++)
        for (gsize s = 0; s < sp; s++)
          {
            gsize i = (b * c + ch) * sp + s;
            out[i] = bn_ref_gamma (node, params, ch) * (in[0][i] - mean) * istd
                     + bn_ref_beta (node, params, ch);
          }
    }
}

static void
bn_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                 const double *const *in, const double *params, const double *state,
                 const double *out, const double *dout, double **din, double *dparams)
{
  gsize c = node->in_shape[0].c, sp = (gsize)node->in_shape[0].h * node->in_shape[0].w;
  double n = (double)batch * sp;

  if (node->frozen)
    {
      /* Through the inference transform, with the running statistics as constants. */
      for (gsize i = 0; i < node->n_params; i++)
        dparams[i] = 0.0;
      if (din[0])
        for (gsize ch = 0; ch < c; ch++)
          {
            double k = bn_ref_gamma (node, params, ch) / sqrt (state[c + ch] + node->cfg.epsilon);
            for (guint b = 0; b < batch; b++)
              for (gsize s = 0; s < sp; s++)
                din[0][(b * c + ch) * sp + s] = k * dout[(b * c + ch) * sp + s];
          }
      return;
    }
  for (gsize ch = 0; ch < c; ch++)
    {
      double mean, var, istd, sdy = 0, sdyx = 0;
      bn_ref_moments (node, batch, in[0], (guint)ch, &mean, &var);
      istd = 1.0 / sqrt (var + node->cfg.epsilon);
      for (guint b = 0; b < batch; b++)
        for (gsize s = 0; s < sp; s++)
          {
            gsize i = (b * c + ch) * sp + s;
            sdy += dout[i];
            sdyx += dout[i] * (in[0][i] - mean) * istd;
          }
      if (!node->cfg.bn_no_scale)
        dparams[ch] = sdyx;
      if (!node->cfg.bn_no_center)
        dparams[(node->cfg.bn_no_scale ? 0 : c) + ch] = sdy;
      if (din[0])
        for (guint b = 0; b < batch; b++)
          for (gsize s = 0; s < sp; s++)
            {
              gsize i = (b * c + ch) * sp + s;
              double xhat = (in[0][i] - mean) * istd;
              din[0][i]
                  = bn_ref_gamma (node, params, ch) * istd / n * (n * dout[i] - sdy - xhat * sdyx);
            }
    }
}

const KiltLayerClass kilt_batch_norm_class = {
  .type = KILT_LAYER_BATCH_NORM,
  .name = "BatchNormalization",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = bn_infer,
  .init = bn_init,
  .flops = bn_flops,
  .saved_floats = bn_saved_floats,
  .forward = bn_forward,
  .backward = bn_backward,
  .ref_forward = bn_ref_forward,
  .ref_backward = bn_ref_backward,
};
