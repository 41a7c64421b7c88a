/* Activation layers (Keras' ReLU with its options, LeakyReLU, softmax over channels and every
 * element-wise activation Keras names) and Flatten. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <math.h>
#include <string.h>

/* Keras' ReLU (x above threshold, clipped to [0, max_value]; below it negative_slope (x - t))
 * and every other element-wise activation, in double, through the input x. */
#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946
#define GELU_C     0.79788456080286535587989211986876 /* sqrt (2 / pi) */

static double
sigmoid (double x)
{
  return 1.0 / (1.0 + exp (-x));
}

static double
clampd (double x, double lo, double hi)
{
  return x < lo ? lo : x > hi ? hi : x;
}

static double
ref_act_x (const KiltLayerConfig *c, double x)
{
  double a = c->alpha;

  switch (c->activation)
    {
      case KILT_ACT_RELU:
        return x > c->threshold ? clampd (x, 0, c->max_value)
                                : c->negative_slope * (x - c->threshold);
      case KILT_ACT_LEAKY_RELU:
        return x > 0 ? x : a * x;
      case KILT_ACT_SIGMOID:
        return sigmoid (x);
      case KILT_ACT_TANH:
        return tanh (x);
      case KILT_ACT_RELU6:
        return clampd (x, 0, 6);
      case KILT_ACT_ELU:
        return x > 0 ? x : a * expm1 (x);
      case KILT_ACT_SELU:
        return SELU_SCALE * (x > 0 ? x : SELU_ALPHA * expm1 (x));
      case KILT_ACT_SOFTPLUS:
        return fmax (x, 0) + log1p (exp (-fabs (x)));
      case KILT_ACT_SOFTSIGN:
        return x / (1 + fabs (x));
      case KILT_ACT_EXPONENTIAL:
        return exp (x);
      case KILT_ACT_SWISH:
        return x * sigmoid (x);
      case KILT_ACT_GELU:
        return 0.5 * x * (1 + erf (x / G_SQRT2));
      case KILT_ACT_GELU_TANH:
        return 0.5 * x * (1 + tanh (GELU_C * (x + 0.044715 * x * x * x)));
      case KILT_ACT_HARD_SIGMOID:
        return clampd (x / 6 + 0.5, 0, 1);
      case KILT_ACT_HARD_SIGMOID_K2:
        return clampd (0.2 * x + 0.5, 0, 1);
      case KILT_ACT_HARD_SWISH:
        return x * clampd (x / 6 + 0.5, 0, 1);
      default:
        return x;
    }
}

static double
ref_act_x_grad (const KiltLayerConfig *c, double x)
{
  double a = c->alpha, s, t;

  switch (c->activation)
    {
      case KILT_ACT_RELU:
        return x > c->threshold ? (x > 0 && x < c->max_value ? 1 : 0) : c->negative_slope;
      case KILT_ACT_LEAKY_RELU:
        return x > 0 ? 1 : a;
      case KILT_ACT_SIGMOID:
        s = sigmoid (x);
        return s * (1 - s);
      case KILT_ACT_TANH:
        t = tanh (x);
        return 1 - t * t;
      case KILT_ACT_RELU6:
        return x > 0 && x < 6 ? 1 : 0;
      case KILT_ACT_ELU:
        return x > 0 ? 1 : a * exp (x);
      case KILT_ACT_SELU:
        return SELU_SCALE * (x > 0 ? 1 : SELU_ALPHA * exp (x));
      case KILT_ACT_SOFTPLUS:
        return sigmoid (x);
      case KILT_ACT_SOFTSIGN:
        return 1 / ((1 + fabs (x)) * (1 + fabs (x)));
      case KILT_ACT_EXPONENTIAL:
        return exp (x);
      case KILT_ACT_SWISH:
        s = sigmoid (x);
        return s + x * s * (1 - s);
      case KILT_ACT_GELU:
        return 0.5 * (1 + erf (x / G_SQRT2)) + x * exp (-0.5 * x * x) / sqrt (2 * G_PI);
      case KILT_ACT_GELU_TANH:
        t = tanh (GELU_C * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
      case KILT_ACT_HARD_SIGMOID:
        return x > -3 && x < 3 ? 1.0 / 6 : 0;
      case KILT_ACT_HARD_SIGMOID_K2:
        return x > -2.5 && x < 2.5 ? 0.2 : 0;
      case KILT_ACT_HARD_SWISH:
        return clampd (x / 6 + 0.5, 0, 1) + (x > -3 && x < 3 ? x / 6 : 0);
      default:
        return 1;
    }
}

static gboolean
act_infer (KiltNode *node, GError **error)
{
  const KiltLayerConfig *c = &node->cfg;

  if ((guint)c->activation >= KILT_ACT_N_TYPES)
    {
      kilt_layer_set_error (error, node, "unknown activation %d", (int)c->activation);
      return FALSE;
    }
  if (c->activation == KILT_ACT_SOFTMAX && node->in_shape[0].h * node->in_shape[0].w != 1)
    {
      kilt_layer_set_error (error, node,
                            "softmax is supported on flat inputs only, got %ux%ux%u; add a "
                            "Flatten or GlobalAveragePooling2D layer before it",
                            node->in_shape[0].h, node->in_shape[0].w, node->in_shape[0].c);
      return FALSE;
    }
  if (!(c->max_value >= 0) || !isfinite (c->threshold) || !isfinite (c->negative_slope)
      || !isfinite (c->alpha))
    {
      kilt_layer_set_error (error, node,
                            "max_value (%g) must be 0 or more, and threshold (%g), "
                            "negative_slope (%g) and alpha (%g) finite",
                            c->max_value, c->threshold, c->negative_slope, c->alpha);
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
  float slope = act == KILT_ACT_RELU ? node->cfg.negative_slope : node->cfg.alpha;

  if (node->cfg.activation == KILT_ACT_SOFTMAX || node->cfg.activation == KILT_ACT_LINEAR)
    {
      if (!kilt_layer_copy_scaled (ex, node->out, src->out, n, 0.0f, error))
        return FALSE;
      return kilt_layer_bias_act (ex, node->out, 0, FALSE, node->out_shape.c, 1,
                                  node->cfg.activation, node->cfg.alpha, error);
    }
  k = kilt_context_kernel (ex->ctx, "kilt_act_x_forward", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, count, err);
  KILT_ARG (k, 3, act, err);
  KILT_ARG (k, 4, slope, err);
  KILT_ARG (k, 5, node->cfg.max_value, err);
  KILT_ARG (k, 6, node->cfg.threshold, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

/* Through the input, which the executor keeps (the output alone does not give swish' etc.). */
static gboolean
act_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_int err = CL_SUCCESS;
  cl_kernel k;
  cl_uint count = (cl_uint)n;
  cl_int act = node->cfg.activation;
  float slope = act == KILT_ACT_RELU ? node->cfg.negative_slope : node->cfg.alpha;

  if (!node->din_needed[0])
    return TRUE;
  if (node->cfg.activation == KILT_ACT_SOFTMAX || node->cfg.activation == KILT_ACT_LINEAR)
    {
      if (!kilt_layer_act_backward (ex, node, node->cfg.activation, node->cfg.alpha,
                                    node->out_shape.c, 1, error))
        return FALSE;
      return kilt_layer_copy_scaled (ex, src->dout, node->dout, n, node->din_beta[0], error);
    }
  k = kilt_context_kernel (ex->ctx, "kilt_act_x_backward", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, src->out, err);
  KILT_ARG (k, 3, count, err);
  KILT_ARG (k, 4, act, err);
  KILT_ARG (k, 5, slope, err);
  KILT_ARG (k, 6, node->cfg.max_value, err);
  KILT_ARG (k, 7, node->cfg.threshold, err);
  KILT_ARG (k, 8, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static void
act_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  if (node->cfg.activation == KILT_ACT_SOFTMAX)
    {
      memcpy (out, in[0], sizeof (double) * n);
      kilt_ref_activate (out, batch, node->out_shape.c, node->out_shape.h * node->out_shape.w,
                         node->cfg.activation, node->cfg.alpha);
      return;
    }
  for (gsize i = 0; i < n; i++)
    out[i] = ref_act_x (&node->cfg, in[0][i]);
}

static void
act_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  if (!din[0])
    return;
  if (node->cfg.activation == KILT_ACT_SOFTMAX)
    {
      kilt_ref_act_backward (din[0], dout, out, batch, node->out_shape.c,
                             node->out_shape.h * node->out_shape.w, node->cfg.activation,
                             node->cfg.alpha);
      return;
    }
  for (gsize i = 0; i < n; i++)
    din[0][i] = dout[i] * ref_act_x_grad (&node->cfg, in[0][i]);
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

/* ---- Rescaling: y = scale x + offset (Keras' preprocessing layer). ------------------------- */

static gboolean
rescaling_infer (KiltNode *node, GError **error)
{
  if (!isfinite (node->cfg.scale) || !isfinite (node->cfg.offset))
    {
      kilt_layer_set_error (error, node, "scale (%g) and offset (%g) must be finite",
                            node->cfg.scale, node->cfg.offset);
      return FALSE;
    }
  node->out_shape = node->in_shape[0];
  return TRUE;
}

static gboolean
rescaling_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_affine_forward", error);
  cl_int err = CL_SUCCESS;
  cl_uint count = (cl_uint)n;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, count, err);
  KILT_ARG (k, 3, node->cfg.scale, err);
  KILT_ARG (k, 4, node->cfg.offset, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
rescaling_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_int err = CL_SUCCESS;
  cl_uint count = (cl_uint)n;
  cl_kernel k;

  if (!node->din_needed[0])
    return TRUE;
  k = kilt_context_kernel (ex->ctx, "kilt_affine_backward", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, count, err);
  KILT_ARG (k, 3, node->cfg.scale, err);
  KILT_ARG (k, 4, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static void
rescaling_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                       guint64 step, const double *const *in, const double *params, double *state,
                       double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (gsize i = 0; i < n; i++)
    out[i] = (double)node->cfg.scale * in[0][i] + node->cfg.offset;
}

static void
rescaling_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                        const double *const *in, const double *params, const double *state,
                        const double *out, const double *dout, double **din, double *dparams)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  if (din[0])
    for (gsize i = 0; i < n; i++)
      din[0][i] = (double)node->cfg.scale * dout[i];
}

const KiltLayerClass kilt_rescaling_class = {
  .type = KILT_LAYER_RESCALING,
  .name = "Rescaling",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = rescaling_infer,
  .flops = act_flops,
  .forward = rescaling_forward,
  .backward = rescaling_backward,
  .ref_forward = rescaling_ref_forward,
  .ref_backward = rescaling_ref_backward,
};

/* ---- Reshape: between layouts with the same memory order (Kilt is channels first, so only
 * between shapes whose channels-last and channels-first orders agree, one pixel or one
 * channel: (C) <-> (1, 1, C), a vector <-> a sequence of one feature; and the same shape;
 * others would need a transpose). ------------------------------------------------------------ */

static gboolean
reshape_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  KiltShape target = node->cfg.target, *t = &target;
  guint *dims[] = { &t->c, &t->h, &t->w }, n_free = 0;
  gsize known = 1;
  gboolean flat_in = in->h == 1 && in->w == 1, flat_out;
  gboolean agree_in = flat_in || in->c == 1;

  /* A dimension of 0 is whatever the others leave (Keras' -1). */
  for (guint i = 0; i < 3; i++)
    {
      n_free += *dims[i] == 0;
      known *= MAX (*dims[i], 1);
    }
  if (n_free > 1 || (n_free == 1 && kilt_shape_size (in) % known))
    {
      kilt_layer_set_error (error, node,
                            "the target %ux%ux%u does not fit the input's %zu values (one 0 "
                            "takes what is left)",
                            t->h, t->w, t->c, kilt_shape_size (in));
      return FALSE;
    }
  for (guint i = 0; i < 3; i++)
    if (*dims[i] == 0)
      *dims[i] = (guint)(kilt_shape_size (in) / known);
  flat_out = t->h == 1 && t->w == 1;
  if (kilt_shape_size (t) != kilt_shape_size (in))
    {
      kilt_layer_set_error (error, node,
                            "the target %ux%ux%u holds %zu values, the input %ux%ux%u %zu "
                            "(height x width x channels)",
                            t->h, t->w, t->c, kilt_shape_size (t), in->h, in->w, in->c,
                            kilt_shape_size (in));
      return FALSE;
    }
  if (!(agree_in && (flat_out || t->c == 1)) && !(in->h == t->h && in->w == t->w))
    {
      kilt_layer_set_error (error, node,
                            "reshaping %ux%ux%u to %ux%ux%u changes the order of values in "
                            "memory; Kilt reshapes only between (channels), (1, 1, channels) and "
                            "one-channel shapes",
                            in->h, in->w, in->c, t->h, t->w, t->c);
      return FALSE;
    }
  node->out_shape = *t;
  return TRUE;
}

const KiltLayerClass kilt_reshape_class = {
  .type = KILT_LAYER_RESHAPE,
  .name = "Reshape",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = reshape_infer,
  .forward = flatten_forward,
  .backward = flatten_backward,
  .ref_forward = flatten_ref_forward,
  .ref_backward = flatten_ref_backward,
};
