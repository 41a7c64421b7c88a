/* The layer registry and the helpers layers share (bias + activation, init, errors). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-layer"

#include "kilt-layer.h"
#include "kilt-error.h"

#include <math.h>
#include <stdarg.h>

const KiltLayerClass *
kilt_layer_class_get (KiltLayerType type)
{
  const KiltLayerClass *table[KILT_LAYER_N_TYPES] = {
    [KILT_LAYER_INPUT] = &kilt_input_class,
    [KILT_LAYER_CONV2D] = &kilt_conv2d_class,
    [KILT_LAYER_DENSE] = &kilt_dense_class,
    [KILT_LAYER_MAX_POOL2D] = &kilt_max_pool2d_class,
    [KILT_LAYER_AVG_POOL2D] = &kilt_avg_pool2d_class,
    [KILT_LAYER_GLOBAL_AVG_POOL2D] = &kilt_global_avg_pool2d_class,
    [KILT_LAYER_ACTIVATION] = &kilt_activation_class,
    [KILT_LAYER_DROPOUT] = &kilt_dropout_class,
    [KILT_LAYER_FLATTEN] = &kilt_flatten_class,
    [KILT_LAYER_BATCH_NORM] = &kilt_batch_norm_class,
    [KILT_LAYER_ADD] = &kilt_add_class,
    [KILT_LAYER_CONCATENATE] = &kilt_concatenate_class,
    [KILT_LAYER_ZERO_PADDING2D] = &kilt_zero_padding2d_class,
    [KILT_LAYER_CROPPING2D] = &kilt_cropping2d_class,
    [KILT_LAYER_RESCALING] = &kilt_rescaling_class,
    [KILT_LAYER_RESHAPE] = &kilt_reshape_class,
    [KILT_LAYER_MULTIPLY] = &kilt_multiply_class,
    [KILT_LAYER_DEPTHWISE_CONV2D] = &kilt_depthwise_conv2d_class,
    [KILT_LAYER_NORMALIZATION] = &kilt_normalization_class,
    [KILT_LAYER_GLOBAL_MAX_POOL2D] = &kilt_global_max_pool2d_class,
    [KILT_LAYER_SUBTRACT] = &kilt_subtract_class,
    [KILT_LAYER_AVERAGE] = &kilt_average_class,
    [KILT_LAYER_MAXIMUM] = &kilt_maximum_class,
    [KILT_LAYER_MINIMUM] = &kilt_minimum_class,
    [KILT_LAYER_UPSAMPLING2D] = &kilt_upsampling2d_class,
    [KILT_LAYER_LAYER_NORM] = &kilt_layer_norm_class,
    [KILT_LAYER_CONV2D_TRANSPOSE] = &kilt_conv2d_transpose_class,
    [KILT_LAYER_PERMUTE] = &kilt_permute_class,
    [KILT_LAYER_EMBEDDING] = &kilt_embedding_class,
    [KILT_LAYER_LSTM] = &kilt_lstm_class,
    [KILT_LAYER_GRU] = &kilt_gru_class,
    [KILT_LAYER_MASKING] = &kilt_masking_class,
  };

  if ((guint)type >= KILT_LAYER_N_TYPES)
    return NULL;
  return table[type];
}

const KiltLayerClass *
kilt_layer_class_find (const char *name)
{
  for (int t = 0; t < KILT_LAYER_N_TYPES; t++)
    {
      const KiltLayerClass *k = kilt_layer_class_get (t);
      if (k && g_ascii_strcasecmp (k->name, name) == 0)
        return k;
    }
  return NULL;
}

static const char *act_names[KILT_ACT_N_TYPES] = {
  "linear",
  "relu",
  "leaky_relu",
  "sigmoid",
  "tanh",
  "softmax",
  "relu6",
  "elu",
  "selu",
  "softplus",
  "softsign",
  "exponential",
  "swish",
  "gelu",
  "gelu_tanh",
  "hard_sigmoid",
  "hard_sigmoid_keras2",
  "hard_swish",
};

gboolean
kilt_activation_fusable (KiltActivation act)
{
  return act <= KILT_ACT_SOFTMAX;
}

gboolean
kilt_layer_config_act_fusable (const KiltLayerConfig *cfg)
{
  if (cfg->activation == KILT_ACT_RELU)
    return cfg->negative_slope == 0 && cfg->threshold == 0 && isinf (cfg->max_value);
  return kilt_activation_fusable (cfg->activation);
}

const char *
kilt_activation_name (KiltActivation act)
{
  g_return_val_if_fail ((guint)act < G_N_ELEMENTS (act_names), "?");
  return act_names[act];
}

gboolean
kilt_activation_from_name (const char *name, KiltActivation *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (act_names); i++)
    if (g_ascii_strcasecmp (name, act_names[i]) == 0)
      {
        *out = (KiltActivation)i;
        return TRUE;
      }
  if (g_ascii_strcasecmp (name, "leakyrelu") == 0)
    {
      *out = KILT_ACT_LEAKY_RELU;
      return TRUE;
    }
  if (g_ascii_strcasecmp (name, "silu") == 0)
    {
      *out = KILT_ACT_SWISH;
      return TRUE;
    }
  if (g_ascii_strcasecmp (name, "hard_silu") == 0)
    {
      *out = KILT_ACT_HARD_SWISH;
      return TRUE;
    }
  return FALSE;
}

KiltLayerConfig
kilt_layer_config_default (KiltLayerType type)
{
  KiltLayerConfig c = { 0 };

  gboolean conv = type == KILT_LAYER_CONV2D || type == KILT_LAYER_DEPTHWISE_CONV2D
                  || type == KILT_LAYER_CONV2D_TRANSPOSE;

  c.kh = c.kw = conv ? 3 : 2;
  c.sh = c.sw = conv ? 1 : 0; /* pooling: 0 = the window */
  if (type == KILT_LAYER_DEPTHWISE_CONV2D)
    c.units = 1; /* depth_multiplier */
  c.use_bias = TRUE;
  c.activation = KILT_ACT_LINEAR;
  c.alpha = 0.3f; /* Keras' LeakyReLU default */
  c.max_value = INFINITY;
  c.scale = 1.0f;
  c.rate = 0.5f;
  c.momentum = 0.99f;
  c.epsilon = 1e-3f;
  c.init = KILT_INIT_GLOROT_UNIFORM;
  c.whiten_samples = 5000;
  c.whiten_epsilon = 5e-4f;
  c.whiten_bias_epochs = 3;
  c.lr_multiplier = 1.0f;
  c.perm[0] = 0; /* Permute: the identity */
  c.perm[1] = 1;
  c.perm[2] = 2;
  c.init_value = type == KILT_LAYER_EMBEDDING ? 0.05f : 0.0f; /* Keras' uniform (-0.05, 0.05) */
  if (type == KILT_LAYER_LSTM || type == KILT_LAYER_GRU)
    {
      /* Keras 3's and tf.keras 2's defaults. */
      c.activation = KILT_ACT_TANH;
      c.recurrent_activation = KILT_ACT_SIGMOID;
      c.reset_after = TRUE;
      c.unit_forget_bias = TRUE;
    }
  return c;
}

void
kilt_layer_set_error (GError **error, const KiltNode *node, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "layer %s (%s): %s", node->name,
               node->klass ? node->klass->name : "?", msg);
}

double
kilt_ref_act (KiltActivation act, double x, double alpha)
{
  switch (act)
    {
      case KILT_ACT_RELU:
        return x > 0 ? x : 0;
      case KILT_ACT_LEAKY_RELU:
        return x > 0 ? x : alpha * x;
      case KILT_ACT_SIGMOID:
        return 1.0 / (1.0 + exp (-x));
      case KILT_ACT_TANH:
        return tanh (x);
      default:
        return x;
    }
}

double
kilt_ref_act_grad (KiltActivation act, double y, double alpha)
{
  switch (act)
    {
      case KILT_ACT_RELU:
        return y > 0 ? 1 : 0;
      case KILT_ACT_LEAKY_RELU:
        return y > 0 ? 1 : alpha;
      case KILT_ACT_SIGMOID:
        return y * (1 - y);
      case KILT_ACT_TANH:
        return 1 - y * y;
      default:
        return 1;
    }
}

gboolean
kilt_layer_bias_act (KiltExec *ex, cl_mem y, gsize bias_offset, gboolean has_bias, guint channels,
                     guint spatial, KiltActivation act, float alpha, GError **error)
{
  KiltContext *ctx = ex->ctx;
  cl_int err = CL_SUCCESS;
  cl_uint n = ex->batch * channels * spatial;

  if (has_bias || (act != KILT_ACT_LINEAR && act != KILT_ACT_SOFTMAX))
    {
      cl_kernel k = kilt_context_kernel (ctx, "kilt_bias_act", error);
      cl_uint off = (cl_uint)bias_offset, ch = channels, sp = spatial;
      cl_int a = act == KILT_ACT_SOFTMAX ? KILT_ACT_LINEAR : act, hb = has_bias;
      cl_mem bias = ex->params;
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, y, err);
      KILT_ARG (k, 1, bias, err);
      KILT_ARG (k, 2, off, err);
      KILT_ARG (k, 3, ch, err);
      KILT_ARG (k, 4, sp, err);
      KILT_ARG (k, 5, n, err);
      KILT_ARG (k, 6, a, err);
      KILT_ARG (k, 7, alpha, err);
      KILT_ARG (k, 8, hb, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ctx, k, n, error))
        return FALSE;
    }
  if (act == KILT_ACT_SOFTMAX)
    {
      cl_kernel k = kilt_context_kernel (ctx, "kilt_softmax_rows", error);
      cl_uint rows = ex->batch * spatial, cols = channels;
      if (!k)
        return FALSE;
      g_return_val_if_fail (spatial == 1, FALSE);
      KILT_ARG (k, 0, y, err);
      KILT_ARG (k, 1, rows, err);
      KILT_ARG (k, 2, cols, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ctx, k, rows, error))
        return FALSE;
    }
  return TRUE;
}

gboolean
kilt_layer_act_backward (KiltExec *ex, KiltNode *node, KiltActivation act, float alpha,
                         guint channels, guint spatial, GError **error)
{
  KiltContext *ctx = ex->ctx;
  cl_int err = CL_SUCCESS;
  cl_kernel k;

  if (act == KILT_ACT_LINEAR)
    return TRUE;
  if (act == KILT_ACT_SOFTMAX)
    {
      cl_uint rows = ex->batch * spatial, cols = channels;
      if (ex->softmax_fused_node == node->index)
        return TRUE;
      k = kilt_context_kernel (ctx, "kilt_softmax_backward_rows", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, node->dout, err);
      KILT_ARG (k, 1, node->out, err);
      KILT_ARG (k, 2, rows, err);
      KILT_ARG (k, 3, cols, err);
      g_assert (err == CL_SUCCESS);
      return kilt_context_launch_1d (ctx, k, rows, error);
    }
  else
    {
      cl_uint n = ex->batch * channels * spatial;
      cl_int a = act;
      float zero = 0.0f;
      k = kilt_context_kernel (ctx, "kilt_act_backward", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, node->dout, err);
      KILT_ARG (k, 1, node->dout, err);
      KILT_ARG (k, 2, node->out, err);
      KILT_ARG (k, 3, n, err);
      KILT_ARG (k, 4, a, err);
      KILT_ARG (k, 5, alpha, err);
      KILT_ARG (k, 6, zero, err);
      g_assert (err == CL_SUCCESS);
      return kilt_context_launch_1d (ctx, k, n, error);
    }
}

gboolean
kilt_layer_bias_grad (KiltExec *ex, cl_mem dz, gsize offset, guint channels, guint spatial,
                      GError **error)
{
  cl_int err = CL_SUCCESS;
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_bias_grad", error);
  cl_uint off = (cl_uint)offset, b = ex->batch, ch = channels, sp = spatial;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, ex->grads, err);
  KILT_ARG (k, 1, off, err);
  KILT_ARG (k, 2, dz, err);
  KILT_ARG (k, 3, b, err);
  KILT_ARG (k, 4, ch, err);
  KILT_ARG (k, 5, sp, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, channels, error);
}

void
kilt_layer_init_weights (float *w, gsize n, const KiltLayerConfig *cfg, guint fan_in, guint fan_out,
                         KiltRng *rng)
{
  if (cfg->init == KILT_INIT_CONSTANT)
    {
      for (gsize i = 0; i < n; i++)
        w[i] = cfg->init_value;
    }
  else if (cfg->init == KILT_INIT_HE_NORMAL)
    {
      /* Keras' he_normal: truncated normal (|z| < 2) with stddev sqrt(2 / fan_in) / .8796. */
      double sd = sqrt (2.0 / MAX (fan_in, 1)) / 0.87962566103423978;
      for (gsize i = 0; i < n; i++)
        {
          double z;
          do
            z = kilt_rng_normal (rng);
          while (fabs (z) >= 2.0);
          w[i] = (float)(z * sd);
        }
    }
  else
    {
      double limit = sqrt (6.0 / MAX (fan_in + fan_out, 1));
      for (gsize i = 0; i < n; i++)
        w[i] = (float)((2.0 * kilt_rng_uniform (rng) - 1.0) * limit);
    }
}

void
kilt_ref_activate (double *y, gsize batch, gsize channels, gsize spatial, KiltActivation act,
                   double alpha)
{
  if (act != KILT_ACT_SOFTMAX)
    {
      for (gsize i = 0; i < batch * channels * spatial; i++)
        y[i] = kilt_ref_act (act, y[i], alpha);
      return;
    }
  for (gsize b = 0; b < batch; b++)
    for (gsize s = 0; s < spatial; s++)
      {
        double *p = y + b * channels * spatial + s;
        double m = p[0], sum = 0;
        for (gsize c = 1; c < channels; c++)
          m = MAX (m, p[c * spatial]);
        for (gsize c = 0; c < channels; c++)
          sum += (p[c * spatial] = exp (p[c * spatial] - m));
        for (gsize c = 0; c < channels; c++)
          p[c * spatial] /= sum;
      }
}

void
kilt_ref_act_backward (double *dz, const double *dout, const double *y, gsize batch, gsize channels,
                       gsize spatial, KiltActivation act, double alpha)
{
  if (act != KILT_ACT_SOFTMAX)
    {
      for (gsize i = 0; i < batch * channels * spatial; i++)
        dz[i] = dout[i] * kilt_ref_act_grad (act, y[i], alpha);
      return;
    }
  for (gsize b = 0; b < batch; b++)
    for (gsize s = 0; s < spatial; s++)
      {
        gsize base = b * channels * spatial + s;
        double dot = 0;
        for (gsize c = 0; c < channels; c++)
          dot += dout[base + c * spatial] * y[base + c * spatial];
        for (gsize c = 0; c < channels; c++)
          dz[base + c * spatial] = y[base + c * spatial] * (dout[base + c * spatial] - dot);
      }
}

gboolean
kilt_layer_copy_scaled (KiltExec *ex, cl_mem y, cl_mem x, gsize n, float beta, GError **error)
{
  cl_int err = CL_SUCCESS;
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_axpby", error);
  float one = 1.0f;
  cl_uint count = (cl_uint)n;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, y, err);
  KILT_ARG (k, 1, x, err);
  KILT_ARG (k, 2, one, err);
  KILT_ARG (k, 3, beta, err);
  KILT_ARG (k, 4, count, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

gboolean
kilt_layer_out_dim (guint in, guint k, guint s, gboolean same, guint *out, guint *pad_before)
{
  *out = 0;
  *pad_before = 0;
  if (same)
    {
      guint o = (in + s - 1) / s;
      gint64 total = (gint64)(o - 1) * s + k - in;
      *out = o;
      *pad_before = (guint)(MAX (total, 0) / 2);
      return o > 0;
    }
  if (in < k)
    return FALSE;
  *out = (in - k) / s + 1;
  return TRUE;
}

gboolean
kilt_layer_launch3 (KiltExec *ex, cl_kernel k, gsize x, gsize y, gsize z, GError **error)
{
  size_t global[3] = { x, y, z }, local[3] = { 1, 1, 1 };
  size_t cap = MIN ((size_t)64, ex->ctx->info->max_work_group);

  while (local[0] < x && local[0] * 2 <= cap)
    local[0] *= 2;
  while (local[1] < y && local[0] * local[1] * 2 <= cap)
    local[1] *= 2;
  return kilt_context_launch (ex->ctx, k, 3, global, local, error);
}

gboolean
kilt_layer_use_rows (const KiltDeviceInfo *info, const char *env)
{
  const char *forced = g_getenv (env);

  if (forced && (g_str_equal (forced, "rows") || g_str_equal (forced, "items")))
    return g_str_equal (forced, "rows");
  return info->type && g_str_equal (info->type, "CPU");
}

gboolean
kilt_ref_step_kept (const KiltNode *node, const double *m, gsize b, gsize t)
{
  const KiltShape *src;

  if (node->cfg.step_mask == KILT_STEP_MASK_NONE || node->n_inputs < 2)
    return TRUE;
  src = &node->in_shape[node->n_inputs - 1];
  switch (node->cfg.step_mask)
    {
      case KILT_STEP_MASK_IDS:
        return m[b * src->c + t] != 0.0;
      case KILT_STEP_MASK_VALUES:
        for (gsize f = 0; f < src->c; f++)
          if ((float)m[(b * src->c + f) * src->w + t] != node->cfg.mask_value)
            return TRUE;
        return FALSE;
      default:
        return TRUE;
    }
}

gboolean
kilt_layer_check_step_mask (KiltNode *node, guint steps, GError **error)
{
  const KiltShape *src;

  if (node->cfg.step_mask == KILT_STEP_MASK_NONE)
    return TRUE;
  if (node->n_inputs < 2)
    {
      kilt_layer_set_error (error, node, "a step mask needs its source as the last input");
      return FALSE;
    }
  src = &node->in_shape[node->n_inputs - 1];
  if (node->cfg.step_mask == KILT_STEP_MASK_IDS && (src->c != steps || src->h != 1 || src->w != 1))
    {
      kilt_layer_set_error (error, node,
                            "its step mask reads ids, one per step: expected %u ids, got %ux%ux%u",
                            steps, src->c, src->h, src->w);
      return FALSE;
    }
  if (node->cfg.step_mask == KILT_STEP_MASK_VALUES && (src->h != 1 || src->w != steps))
    {
      kilt_layer_set_error (error, node, "its step mask reads a sequence of %u steps, got %ux%ux%u",
                            steps, src->c, src->h, src->w);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_layer_step_mask_no_grad (KiltNode *node, KiltExec *ex, GError **error)
{
  guint i = node->n_inputs - 1;
  KiltNode *src;
  cl_float zero = 0.0f;
  cl_int err;

  if (node->cfg.step_mask == KILT_STEP_MASK_NONE || !node->din_needed[i]
      || node->din_beta[i] != 0.0f)
    return TRUE;
  src = kilt_exec_input (ex, node, i);
  err = clEnqueueFillBuffer (ex->ctx->queue, src->dout, &zero, sizeof zero, 0,
                             sizeof (float) * ex->batch * kilt_shape_size (&src->out_shape), 0,
                             NULL, NULL);
  if (err != CL_SUCCESS)
    {
      kilt_layer_set_error (error, node, "clearing the step mask source's gradient failed (%d)",
                            err);
      return FALSE;
    }
  return TRUE;
}

cl_int
kilt_layer_step_mask_args (KiltNode *node, KiltExec *ex, cl_kernel k, cl_uint arg)
{
  gboolean on = node->cfg.step_mask != KILT_STEP_MASK_NONE;
  KiltNode *src = kilt_exec_input (ex, node, on ? node->n_inputs - 1 : 0);
  cl_int kind = (cl_int)node->cfg.step_mask, err = CL_SUCCESS;
  cl_float value = node->cfg.mask_value;
  cl_uint feats = on && node->cfg.step_mask == KILT_STEP_MASK_VALUES ? src->out_shape.c : 1;

  err |= clSetKernelArg (k, arg, sizeof src->out, &src->out);
  err |= clSetKernelArg (k, arg + 1, sizeof kind, &kind);
  err |= clSetKernelArg (k, arg + 2, sizeof value, &value);
  err |= clSetKernelArg (k, arg + 3, sizeof feats, &feats);
  return err;
}
