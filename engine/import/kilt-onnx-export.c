/* ONNX export: every layer of a built model as ONNX operators (opset 17), and the model around
 * them (kilt-onnx-graph.c builds the messages). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-onnx"

#include "config.h"

#include "kilt-onnx-export.h"
#include "kilt-error.h"
#include "kilt-model-json.h"

#include <math.h>

#ifndef KILT_HAVE_ONNX

gboolean
kilt_onnx_export_available (void)
{
  return FALSE;
}

gboolean
kilt_onnx_export (KiltModel *model, const float *params, const float *state, const char *path,
                  KiltOnnxExportInfo *info, GError **error)
{
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "cannot write %s: this Kilt was built without ONNX export (it needs protobuf-c "
               "and the onnx.proto of libonnx-dev at build time; installer/deps.sh installs them)",
               path);
  return FALSE;
}

#else

#include "kilt-onnx-private.h"

/* Values Keras uses (kernels/common.cl has the same). */
#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946
#define GELU_C     0.79788456080286535587989211986876 /* sqrt (2 / pi) */
#define NORM_EPS   1e-7f                              /* Keras' backend.epsilon () */

/* ---- activations --------------------------------------------------------------------------- */

/* Keras' ReLU with threshold t, cap m and slope s below t: x > t ? clip (x, 0, m) : s (x - t). */
static void
ex_relu_options (KiltOnnxGraph *e, const char *x, const KiltLayerConfig *c, const char *out)
{
  gboolean plain_below = c->threshold == 0.0f && c->negative_slope == 0.0f;
  const char *top;

  if (plain_below && isinf (c->max_value))
    {
      kilt_onnx_op (e, "Relu", out, x, NULL);
      return;
    }
  if (plain_below)
    {
      kilt_onnx_op (e, "Clip", out, x, kilt_onnx_scalar (e, 0.0f),
                    kilt_onnx_scalar (e, c->max_value), NULL);
      return;
    }
  top = kilt_onnx_name (e, "relu_top");
  if (isinf (c->max_value))
    kilt_onnx_op (e, "Relu", top, x, NULL);
  else
    kilt_onnx_op (e, "Clip", top, x, kilt_onnx_scalar (e, 0.0f), kilt_onnx_scalar (e, c->max_value),
                  NULL);
  {
    const char *above = kilt_onnx_name (e, "relu_above"),
               *shifted = kilt_onnx_name (e, "relu_shifted");
    const char *below = kilt_onnx_name (e, "relu_below"), *t = kilt_onnx_scalar (e, c->threshold);

    kilt_onnx_op (e, "Greater", above, x, t, NULL);
    kilt_onnx_op (e, "Sub", shifted, x, t, NULL);
    kilt_onnx_op (e, "Mul", below, shifted, kilt_onnx_scalar (e, c->negative_slope), NULL);
    kilt_onnx_op (e, "Where", out, above, top, below, NULL);
  }
}

/* @act of @x into @out. @relu: the Activation layer's ReLU options (NULL: a plain ReLU, as
 * Conv2D, Dense and DepthwiseConv2D apply it). */
static void
ex_activation (KiltOnnxGraph *e, const char *x, KiltActivation act, float alpha,
               const KiltLayerConfig *relu, const char *out)
{
  Onnx__NodeProto *n;
  const char *a, *b, *c;

  switch (act)
    {
      case KILT_ACT_LINEAR:
        kilt_onnx_op (e, "Identity", out, x, NULL);
        return;
      case KILT_ACT_RELU:
        if (relu)
          ex_relu_options (e, x, relu, out);
        else
          kilt_onnx_op (e, "Relu", out, x, NULL);
        return;
      case KILT_ACT_LEAKY_RELU:
        n = kilt_onnx_op (e, "LeakyRelu", out, x, NULL);
        kilt_onnx_attr_float (e, n, "alpha", alpha);
        return;
      case KILT_ACT_SIGMOID:
        kilt_onnx_op (e, "Sigmoid", out, x, NULL);
        return;
      case KILT_ACT_TANH:
        kilt_onnx_op (e, "Tanh", out, x, NULL);
        return;
      case KILT_ACT_SOFTMAX:
        /* Over channels at each position, as Kilt computes it. */
        n = kilt_onnx_op (e, "Softmax", out, x, NULL);
        kilt_onnx_attr_int (e, n, "axis", 1);
        return;
      case KILT_ACT_RELU6:
        kilt_onnx_op (e, "Clip", out, x, kilt_onnx_scalar (e, 0.0f), kilt_onnx_scalar (e, 6.0f),
                      NULL);
        return;
      case KILT_ACT_ELU:
        n = kilt_onnx_op (e, "Elu", out, x, NULL);
        kilt_onnx_attr_float (e, n, "alpha", alpha);
        return;
      case KILT_ACT_SELU:
        n = kilt_onnx_op (e, "Selu", out, x, NULL);
        kilt_onnx_attr_float (e, n, "alpha", (float)SELU_ALPHA);
        kilt_onnx_attr_float (e, n, "gamma", (float)SELU_SCALE);
        return;
      case KILT_ACT_SOFTPLUS:
        kilt_onnx_op (e, "Softplus", out, x, NULL);
        return;
      case KILT_ACT_SOFTSIGN:
        kilt_onnx_op (e, "Softsign", out, x, NULL);
        return;
      case KILT_ACT_EXPONENTIAL:
        kilt_onnx_op (e, "Exp", out, x, NULL);
        return;
      case KILT_ACT_SWISH:
        a = kilt_onnx_name (e, "sigmoid");
        kilt_onnx_op (e, "Sigmoid", a, x, NULL);
        kilt_onnx_op (e, "Mul", out, x, a, NULL);
        return;
      case KILT_ACT_GELU:
        /* 0.5 x (1 + erf (x / sqrt 2)) */
        a = kilt_onnx_name (e, "gelu_scaled");
        b = kilt_onnx_name (e, "gelu_erf");
        c = kilt_onnx_name (e, "gelu_sum");
        kilt_onnx_op (e, "Mul", a, x, kilt_onnx_scalar (e, (float)(1.0 / G_SQRT2)), NULL);
        kilt_onnx_op (e, "Erf", b, a, NULL);
        kilt_onnx_op (e, "Add", c, b, kilt_onnx_scalar (e, 1.0f), NULL);
        a = kilt_onnx_name (e, "gelu_half");
        kilt_onnx_op (e, "Mul", a, x, kilt_onnx_scalar (e, 0.5f), NULL);
        kilt_onnx_op (e, "Mul", out, a, c, NULL);
        return;
      case KILT_ACT_GELU_TANH:
        /* 0.5 x (1 + tanh (sqrt (2 / pi) (x + 0.044715 x^3))) */
        a = kilt_onnx_name (e, "gelu_cube");
        kilt_onnx_op (e, "Mul", a, x, x, NULL);
        b = kilt_onnx_name (e, "gelu_cube3");
        kilt_onnx_op (e, "Mul", b, a, x, NULL);
        a = kilt_onnx_name (e, "gelu_cubec");
        kilt_onnx_op (e, "Mul", a, b, kilt_onnx_scalar (e, 0.044715f), NULL);
        b = kilt_onnx_name (e, "gelu_inner");
        kilt_onnx_op (e, "Add", b, x, a, NULL);
        a = kilt_onnx_name (e, "gelu_innerc");
        kilt_onnx_op (e, "Mul", a, b, kilt_onnx_scalar (e, (float)GELU_C), NULL);
        b = kilt_onnx_name (e, "gelu_tanh");
        kilt_onnx_op (e, "Tanh", b, a, NULL);
        c = kilt_onnx_name (e, "gelu_sum");
        kilt_onnx_op (e, "Add", c, b, kilt_onnx_scalar (e, 1.0f), NULL);
        a = kilt_onnx_name (e, "gelu_half");
        kilt_onnx_op (e, "Mul", a, x, kilt_onnx_scalar (e, 0.5f), NULL);
        kilt_onnx_op (e, "Mul", out, a, c, NULL);
        return;
      case KILT_ACT_HARD_SIGMOID:
      case KILT_ACT_HARD_SIGMOID_K2:
        n = kilt_onnx_op (e, "HardSigmoid", out, x, NULL);
        kilt_onnx_attr_float (e, n, "alpha", act == KILT_ACT_HARD_SIGMOID ? 1.0f / 6.0f : 0.2f);
        kilt_onnx_attr_float (e, n, "beta", 0.5f);
        return;
      case KILT_ACT_HARD_SWISH:
        /* ONNX's HardSwish is Keras 3's: x max (0, min (1, x / 6 + 0.5)). */
        kilt_onnx_op (e, "HardSwish", out, x, NULL);
        return;
      case KILT_ACT_N_TYPES:
        break;
    }
  g_assert_not_reached ();
}

/* ---- layers -------------------------------------------------------------------------------- */

/* ONNX pads (begin, end) for one axis of a convolution or pooling with Keras' padding. */
static void
ex_pads (guint in, guint k, guint s, gboolean same, gint64 *begin, gint64 *end)
{
  guint o = 0, before = 0;
  gint64 after;

  kilt_layer_out_dim (in, k, s, same, &o, &before);
  after = (gint64)(o - 1) * s + k - in - before;
  *begin = before;
  *end = same ? MAX (after, 0) : 0;
}

/* Conv2D and DepthwiseConv2D: a (grouped) Conv with explicit pads, then the activation. */
static gboolean
ex_conv (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  const KiltShape *in = &node->in_shape[0];
  gboolean dw = node->type == KILT_LAYER_DEPTHWISE_CONV2D;
  guint dh = MAX (cfg->dil_h, 1), dwid = MAX (cfg->dil_w, 1);
  /* Conv2D's groups: filter f sees the C / G channels of group f / (F / G), its weights
   * (C / G, kh, kw) one after another, as ONNX's grouped Conv lays them out. */
  guint groups = dw ? in->c : MAX (cfg->groups, 1);
  guint f = dw ? in->c * cfg->units : cfg->units;
  gint64 wdims[4] = { f, in->c / groups, cfg->kh, cfg->kw }, pads[4], strides[2], dil[2];
  gint64 kernel[2] = { cfg->kh, cfg->kw }, bdims[1] = { f };
  gsize nw = (gsize)f * wdims[1] * cfg->kh * cfg->kw;
  const float *p = e->params + node->param_offset;
  const char *x = kilt_onnx_in4 (e), *w, *conv;
  Onnx__NodeProto *n;

  ex_pads (in->h, (cfg->kh - 1) * dh + 1, cfg->sh, cfg->same, &pads[0], &pads[2]);
  ex_pads (in->w, (cfg->kw - 1) * dwid + 1, cfg->sw, cfg->same, &pads[1], &pads[3]);
  strides[0] = cfg->sh;
  strides[1] = cfg->sw;
  dil[0] = dh;
  dil[1] = dwid;
  w = kilt_onnx_floats (e, dw ? "depthwise_kernel" : "kernel", p, nw, wdims, 4);
  conv = cfg->activation == KILT_ACT_LINEAR ? out : kilt_onnx_name (e, "conv");
  if (cfg->use_bias)
    n = kilt_onnx_op (e, "Conv", conv, x, w, kilt_onnx_floats (e, "bias", p + nw, f, bdims, 1),
                      NULL);
  else
    n = kilt_onnx_op (e, "Conv", conv, x, w, NULL);
  kilt_onnx_attr_ints (e, n, "kernel_shape", kernel, 2);
  kilt_onnx_attr_ints (e, n, "strides", strides, 2);
  kilt_onnx_attr_ints (e, n, "pads", pads, 4);
  kilt_onnx_attr_ints (e, n, "dilations", dil, 2);
  kilt_onnx_attr_int (e, n, "group", groups);
  if (cfg->activation != KILT_ACT_LINEAR)
    ex_activation (e, conv, cfg->activation, cfg->alpha, NULL, out);
  *rank = 4;
  return TRUE;
}

/* Conv2DTranspose as ConvTranspose: Kilt's weights (Cin, F, kh, kw) are ONNX's layout. Kilt's
 * output size (Keras': in s for "same", in s + max (k - s, 0) for "valid") and padding (that
 * of the convolution from the output back to the input) become pads, plus output_padding
 * where that convolution's padding was clamped at 0 (a kernel smaller than the stride). */
static gboolean
ex_conv_transpose (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  const KiltShape *in = &node->in_shape[0], *o = &node->out_shape;
  guint f = cfg->units, k[2] = { cfg->kh, cfg->kw }, s[2] = { cfg->sh, cfg->sw };
  guint isz[2] = { in->h, in->w }, osz[2] = { o->h, o->w };
  gint64 wdims[4] = { in->c, f, cfg->kh, cfg->kw }, bdims[1] = { f }, pads[4], opad[2];
  gint64 kernel[2] = { cfg->kh, cfg->kw }, strides[2] = { cfg->sh, cfg->sw };
  gsize nw = (gsize)in->c * f * cfg->kh * cfg->kw;
  const float *p = e->params + node->param_offset;
  const char *x = kilt_onnx_in4 (e), *w, *y;
  Onnx__NodeProto *n;

  for (guint a = 0; a < 2; a++)
    {
      guint back = 0, before = 0;
      gint64 total, natural;
      kilt_layer_out_dim (osz[a], k[a], s[a], cfg->same, &back, &before);
      total = cfg->same ? MAX ((gint64)(isz[a] - 1) * s[a] + k[a] - osz[a], 0) : 0;
      pads[a] = before;
      pads[a + 2] = total - before;
      natural = (gint64)(isz[a] - 1) * s[a] + k[a] - total;
      opad[a] = (gint64)osz[a] - natural;
    }
  w = kilt_onnx_floats (e, "kernel", p, nw, wdims, 4);
  y = cfg->activation == KILT_ACT_LINEAR ? out : kilt_onnx_name (e, "deconv");
  if (cfg->use_bias)
    n = kilt_onnx_op (e, "ConvTranspose", y, x, w,
                      kilt_onnx_floats (e, "bias", p + nw, f, bdims, 1), NULL);
  else
    n = kilt_onnx_op (e, "ConvTranspose", y, x, w, NULL);
  kilt_onnx_attr_ints (e, n, "kernel_shape", kernel, 2);
  kilt_onnx_attr_ints (e, n, "strides", strides, 2);
  kilt_onnx_attr_ints (e, n, "pads", pads, 4);
  kilt_onnx_attr_ints (e, n, "output_padding", opad, 2);
  if (cfg->activation != KILT_ACT_LINEAR)
    ex_activation (e, y, cfg->activation, cfg->alpha, NULL, out);
  *rank = 4;
  return TRUE;
}

static gboolean
ex_dense (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  gsize nin = kilt_shape_size (&node->in_shape[0]);
  gint64 wdims[2] = { (gint64)nin, cfg->units }, bdims[1] = { cfg->units };
  const float *p = e->params + node->param_offset;
  const char *x = kilt_onnx_in2 (e), *w, *y;

  w = kilt_onnx_floats (e, "kernel", p, nin * cfg->units, wdims, 2);
  y = cfg->activation == KILT_ACT_LINEAR ? out : kilt_onnx_name (e, "gemm");
  if (cfg->use_bias)
    kilt_onnx_op (e, "Gemm", y, x, w,
                  kilt_onnx_floats (e, "bias", p + nin * cfg->units, cfg->units, bdims, 1), NULL);
  else
    kilt_onnx_op (e, "Gemm", y, x, w, NULL);
  if (cfg->activation != KILT_ACT_LINEAR)
    ex_activation (e, y, cfg->activation, cfg->alpha, NULL, out);
  *rank = 2;
  return TRUE;
}

static gboolean
ex_pool (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  const KiltShape *in = &node->in_shape[0];
  guint sh = cfg->sh ? cfg->sh : cfg->kh, sw = cfg->sw ? cfg->sw : cfg->kw;
  gint64 kernel[2] = { cfg->kh, cfg->kw }, strides[2] = { sh, sw }, pads[4];
  gboolean is_max = node->type == KILT_LAYER_MAX_POOL2D;
  Onnx__NodeProto *n;

  ex_pads (in->h, cfg->kh, sh, cfg->same, &pads[0], &pads[2]);
  ex_pads (in->w, cfg->kw, sw, cfg->same, &pads[1], &pads[3]);
  n = kilt_onnx_op (e, is_max ? "MaxPool" : "AveragePool", out, kilt_onnx_in4 (e), NULL);
  kilt_onnx_attr_ints (e, n, "kernel_shape", kernel, 2);
  kilt_onnx_attr_ints (e, n, "strides", strides, 2);
  kilt_onnx_attr_ints (e, n, "pads", pads, 4);
  /* Keras averages over the window's part inside the input. */
  if (!is_max)
    kilt_onnx_attr_int (e, n, "count_include_pad", 0);
  *rank = 4;
  return TRUE;
}

static gboolean
ex_global_pool (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const char *pooled = kilt_onnx_name (e, "pooled");

  kilt_onnx_op (
      e, e->node->type == KILT_LAYER_GLOBAL_MAX_POOL2D ? "GlobalMaxPool" : "GlobalAveragePool",
      pooled, kilt_onnx_in4 (e), NULL);
  kilt_onnx_to2 (e, pooled, 4, out);
  *rank = 2;
  return TRUE;
}

/* BatchNormalization (inference: the moving statistics) and LayerNormalization. */
static gboolean
ex_norm_layer (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  guint c = node->in_shape[0].c, r;
  const float *p = e->params + node->param_offset;
  gint64 dims[1] = { c };
  const char *x = kilt_onnx_in (e, 0, &r), *gamma, *beta;
  Onnx__NodeProto *n;

  gamma = cfg->bn_no_scale ? kilt_onnx_fill (e, "gamma", 1.0f, c, dims, 1)
                           : kilt_onnx_floats (e, "gamma", p, c, dims, 1);
  beta = cfg->bn_no_center
             ? kilt_onnx_fill (e, "beta", 0.0f, c, dims, 1)
             : kilt_onnx_floats (e, "beta", p + (cfg->bn_no_scale ? 0 : c), c, dims, 1);
  *rank = r;
  if (node->type == KILT_LAYER_BATCH_NORM)
    {
      const float *s = e->state + node->state_offset;
      n = kilt_onnx_op (e, "BatchNormalization", out, x, gamma, beta,
                        kilt_onnx_floats (e, "moving_mean", s, c, dims, 1),
                        kilt_onnx_floats (e, "moving_variance", s + c, c, dims, 1), NULL);
      kilt_onnx_attr_float (e, n, "epsilon", cfg->epsilon);
      return TRUE;
    }
  /* LayerNormalization over channels: ONNX normalises over the last axes, so an NCHW value
   * goes through NHWC. */
  if (r == 2)
    {
      n = kilt_onnx_op (e, "LayerNormalization", out, x, gamma, beta, NULL);
      kilt_onnx_attr_int (e, n, "axis", -1);
      kilt_onnx_attr_float (e, n, "epsilon", cfg->epsilon);
      return TRUE;
    }
  {
    static const gint64 to_nhwc[] = { 0, 2, 3, 1 }, to_nchw[] = { 0, 3, 1, 2 };
    const char *t = kilt_onnx_name (e, "nhwc"), *ln = kilt_onnx_name (e, "normalised");
    n = kilt_onnx_op (e, "Transpose", t, x, NULL);
    kilt_onnx_attr_ints (e, n, "perm", to_nhwc, 4);
    n = kilt_onnx_op (e, "LayerNormalization", ln, t, gamma, beta, NULL);
    kilt_onnx_attr_int (e, n, "axis", -1);
    kilt_onnx_attr_float (e, n, "epsilon", cfg->epsilon);
    n = kilt_onnx_op (e, "Transpose", out, ln, NULL);
    kilt_onnx_attr_ints (e, n, "perm", to_nchw, 4);
  }
  return TRUE;
}

/* Normalization: (x - mean) / max (sqrt (variance), eps), per channel. */
static gboolean
ex_normalization (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  guint c = node->in_shape[0].c, r;
  const char *x = kilt_onnx_in (e, 0, &r), *mean, *var;
  const char *centred = kilt_onnx_name (e, "centred"), *sd = kilt_onnx_name (e, "stddev");
  const char *sd_eps = kilt_onnx_name (e, "stddev_eps");

  if (node->cfg.norm_n)
    {
      mean = kilt_onnx_channels (e, "mean", node->cfg.norm_mean, c, r);
      var = kilt_onnx_channels (e, "variance", node->cfg.norm_var, c, r);
    }
  else
    {
      mean = kilt_onnx_channels (e, "mean", e->state + node->state_offset, c, r);
      var = kilt_onnx_channels (e, "variance", e->state + node->state_offset + c, c, r);
    }
  kilt_onnx_op (e, "Sub", centred, x, mean, NULL);
  kilt_onnx_op (e, "Sqrt", sd, var, NULL);
  kilt_onnx_op (e, "Max", sd_eps, sd, kilt_onnx_scalar (e, NORM_EPS), NULL);
  kilt_onnx_op (e, "Div", out, centred, sd_eps, NULL);
  *rank = r;
  return TRUE;
}

/* The merge layers: inputs of one rank (NCHW when any is), then one operator. */
static gboolean
ex_merge (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const char *ins[KILT_MAX_INPUTS];
  guint r = 2;
  Onnx__NodeProto *n;

  for (guint i = 0; i < node->n_inputs; i++)
    {
      guint ri;
      kilt_onnx_in (e, i, &ri);
      r = MAX (r, ri);
    }
  for (guint i = 0; i < node->n_inputs; i++)
    {
      guint ri;
      const char *v = kilt_onnx_in (e, i, &ri);
      ins[i] = r == 4 ? kilt_onnx_to4 (e, v, ri) : v;
    }
  *rank = r;
  switch (node->type)
    {
      case KILT_LAYER_ADD:
        kilt_onnx_op_n (e, "Sum", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_SUBTRACT:
        kilt_onnx_op (e, "Sub", out, ins[0], ins[1], NULL);
        return TRUE;
      case KILT_LAYER_AVERAGE:
        kilt_onnx_op_n (e, "Mean", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_MAXIMUM:
        kilt_onnx_op_n (e, "Max", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_MINIMUM:
        kilt_onnx_op_n (e, "Min", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_MULTIPLY:
        {
          /* Mul is binary (and broadcasts a (C, 1, 1) input over the planes, as Kilt does). */
          const char *acc = ins[0];
          for (guint i = 1; i < node->n_inputs; i++)
            {
              const char *y = i + 1 == node->n_inputs ? out : kilt_onnx_name (e, "product");
              kilt_onnx_op (e, "Mul", y, acc, ins[i], NULL);
              acc = y;
            }
          return TRUE;
        }
      case KILT_LAYER_CONCATENATE:
        n = kilt_onnx_op_n (e, "Concat", out, ins, node->n_inputs);
        kilt_onnx_attr_int (e, n, "axis", 1);
        return TRUE;
      default:
        g_assert_not_reached ();
    }
}

static gboolean
ex_pad_crop (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const guint *p = node->cfg.pad; /* top, bottom, left, right */
  const KiltShape *in = &node->in_shape[0];
  const char *x = kilt_onnx_in4 (e);

  *rank = 4;
  if (node->type == KILT_LAYER_ZERO_PADDING2D)
    {
      gint64 pads[8] = { 0, 0, p[0], p[2], 0, 0, p[1], p[3] };
      kilt_onnx_op (e, "Pad", out, x, kilt_onnx_ints (e, "pads", pads, 8), NULL);
      return TRUE;
    }
  {
    gint64 starts[2] = { p[0], p[2] }, ends[2] = { in->h - p[1], in->w - p[3] }, axes[2] = { 2, 3 };
    kilt_onnx_op (e, "Slice", out, x, kilt_onnx_ints (e, "starts", starts, 2),
                  kilt_onnx_ints (e, "ends", ends, 2), kilt_onnx_ints (e, "axes", axes, 2), NULL);
  }
  return TRUE;
}

/* Embedding as Gather: the ids (batch, steps) are truncated to int64 as Kilt's kernel does,
 * an id outside [0, input_dim) (NaN too) is sent to an extra row of zeros past the table, so
 * that onnxruntime gives what Kilt gives (Gather itself fails on such ids, or counts negative
 * ones from the end); (batch, steps, dim) is turned into Kilt's (batch, dim, 1, steps). */
static gboolean
ex_embedding (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  gsize rows = node->cfg.input_dim, dim = node->cfg.units;
  float *table = kilt_onnx_alloc (e, sizeof (float) * (rows + 1) * dim);
  gint64 tdims[2] = { (gint64)rows + 1, (gint64)dim }, past[1] = { (gint64)rows };
  static const gint64 perm[] = { 0, 2, 1 }, axes[] = { 2 };
  const char *x = kilt_onnx_in2 (e);
  const char *ge = kilt_onnx_name (e, "id_at_least_0"), *lt = kilt_onnx_name (e, "id_below_rows");
  const char *ok = kilt_onnx_name (e, "id_in_table"), *id = kilt_onnx_name (e, "id");
  const char *row = kilt_onnx_name (e, "row"), *looked = kilt_onnx_name (e, "looked_up");
  const char *seq = kilt_onnx_name (e, "sequence");
  Onnx__NodeProto *n;

  memcpy (table, e->params + node->param_offset, sizeof (float) * rows * dim);
  memset (table + rows * dim, 0, sizeof (float) * dim);
  kilt_onnx_op (e, "GreaterOrEqual", ge, x, kilt_onnx_scalar (e, 0.0f), NULL);
  kilt_onnx_op (e, "Less", lt, x, kilt_onnx_scalar (e, (float)rows), NULL);
  kilt_onnx_op (e, "And", ok, ge, lt, NULL);
  n = kilt_onnx_op (e, "Cast", id, x, NULL);
  kilt_onnx_attr_int (e, n, "to", ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
  kilt_onnx_op (e, "Where", row, ok, id, kilt_onnx_ints (e, "past_table", past, 1), NULL);
  kilt_onnx_op (e, "Gather", looked,
                kilt_onnx_floats (e, "embeddings", table, (rows + 1) * dim, tdims, 2), row, NULL);
  n = kilt_onnx_op (e, "Transpose", seq, looked, NULL);
  kilt_onnx_attr_ints (e, n, "perm", perm, 3);
  kilt_onnx_op (e, "Unsqueeze", out, seq, kilt_onnx_ints (e, "axes", axes, 1), NULL);
  *rank = 4;
  return TRUE;
}

static gboolean
ex_upsampling (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  float *scales = kilt_onnx_alloc (e, 4 * sizeof (float));
  gint64 dims[1] = { 4 };
  const char *x = kilt_onnx_in4 (e);
  Onnx__NodeProto *n;

  /* Nearest with integer scales: output (y, x) reads input (floor (y / sy), floor (x / sx)). */
  scales[0] = scales[1] = 1.0f;
  scales[2] = (float)node->cfg.kh;
  scales[3] = (float)node->cfg.kw;
  n = kilt_onnx_op (e, "Resize", out, x, "", kilt_onnx_floats (e, "scales", scales, 4, dims, 1),
                    NULL);
  kilt_onnx_attr_string (e, n, "mode", "nearest");
  kilt_onnx_attr_string (e, n, "coordinate_transformation_mode", "asymmetric");
  kilt_onnx_attr_string (e, n, "nearest_mode", "floor");
  *rank = 4;
  return TRUE;
}

/* LSTM and GRU as ONNX's LSTM and GRU over (steps, batch, features). ONNX orders the LSTM's
 * gates i, o, f, c (Keras i, f, c, o) and keeps each gate's weights as rows; GRU's z, r, h
 * agree, reset_after is linear_before_reset. Keras' go_backwards is ONNX's reverse direction,
 * whose step outputs come in the input's order: reversed back to Keras' (processing) order. */
static gboolean
ex_rnn (KiltOnnxGraph *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  gboolean lstm = node->type == KILT_LAYER_LSTM;
  gsize f = node->in_shape[0].c, u = cfg->units, g = lstm ? 4 : 3, gu = g * u;
  static const guint lstm_order[] = { 0, 3, 1, 2 }, gru_order[] = { 0, 1, 2 };
  const guint *order = lstm ? lstm_order : gru_order;
  const float *p = e->params + node->param_offset;
  const float *kernel = p, *rec = p + f * gu, *bias = cfg->use_bias ? p + (f + u) * gu : NULL;
  /* In the graph's arena: the initialisers point at them until the file is written. */
  float *w = kilt_onnx_alloc (e, sizeof (float) * gu * f);
  float *r = kilt_onnx_alloc (e, sizeof (float) * gu * u);
  float *b = kilt_onnx_alloc (e, sizeof (float) * 2 * gu);
  gint64 wdims[3] = { 1, (gint64)gu, (gint64)f }, rdims[3] = { 1, (gint64)gu, (gint64)u };
  gint64 bdims[2] = { 1, 2 * (gint64)gu };
  static const gint64 perm_in[] = { 2, 0, 1 }, perm_out[] = { 1, 2, 0 };
  static const gint64 axis0[] = { 0 }, axis1[] = { 1 }, axis2[] = { 2 };
  const char *x, *seq;
  const char *y = kilt_onnx_name (e, "y"), *yh = kilt_onnx_name (e, "y_h");
  Onnx__NodeProto *n;

  for (gsize k = 0; k < g; k++)
    for (gsize j = 0; j < u; j++)
      {
        gsize col = order[k] * u + j, row = k * u + j;
        for (gsize i = 0; i < f; i++)
          w[row * f + i] = kernel[i * gu + col];
        for (gsize i = 0; i < u; i++)
          r[row * u + i] = rec[i * gu + col];
        if (bias)
          {
            b[row] = bias[col];
            /* A reset_after GRU's second row is the recurrent bias, ONNX's Rb. */
            if (!lstm && cfg->reset_after)
              b[gu + row] = bias[gu + col];
          }
      }
  /* (N, f, 1, T) -> (N, f, T) -> (T, N, f) */
  x = kilt_onnx_in4 (e);
  seq = kilt_onnx_name (e, "steps");
  kilt_onnx_op (e, "Squeeze", seq, x, kilt_onnx_ints (e, "axes", axis2, 1), NULL);
  x = kilt_onnx_name (e, "time_major");
  n = kilt_onnx_op (e, "Transpose", x, seq, NULL);
  kilt_onnx_attr_ints (e, n, "perm", perm_in, 3);
  n = kilt_onnx_op (e, lstm ? "LSTM" : "GRU", y, x, kilt_onnx_floats (e, "W", w, gu * f, wdims, 3),
                    kilt_onnx_floats (e, "R", r, gu * u, rdims, 3),
                    kilt_onnx_floats (e, "B", b, 2 * gu, bdims, 2), NULL);
  n->n_output = 2;
  n->output = kilt_onnx_alloc (e, 2 * sizeof (char *));
  n->output[0] = (char *)y;
  n->output[1] = (char *)yh;
  kilt_onnx_attr_int (e, n, "hidden_size", (gint64)u);
  if (cfg->go_backwards)
    kilt_onnx_attr_string (e, n, "direction", "reverse");
  if (!lstm)
    kilt_onnx_attr_int (e, n, "linear_before_reset", cfg->reset_after ? 1 : 0);
  if (cfg->recurrent_activation != KILT_ACT_SIGMOID)
    {
      /* The gates' HardSigmoid with Keras 3's or Keras 2's slope; tanh for the rest. */
      static const char *const acts[] = { "HardSigmoid", "Tanh", "Tanh" };
      float alpha = cfg->recurrent_activation == KILT_ACT_HARD_SIGMOID ? 1.0f / 6.0f : 0.2f,
            beta = 0.5f;
      kilt_onnx_attr_strings (e, n, "activations", acts, lstm ? 3 : 2);
      kilt_onnx_attr_floats (e, n, "activation_alpha", &alpha, 1);
      kilt_onnx_attr_floats (e, n, "activation_beta", &beta, 1);
    }
  if (!cfg->return_sequences)
    {
      /* Y_h (1, N, u) -> (N, u) */
      kilt_onnx_op (e, "Squeeze", out, yh, kilt_onnx_ints (e, "axes", axis0, 1), NULL);
      *rank = 2;
      return TRUE;
    }
  /* Y (T, 1, N, u) -> (T, N, u) [reversed in time] -> (N, u, T) -> (N, u, 1, T) */
  seq = kilt_onnx_name (e, "y_steps");
  kilt_onnx_op (e, "Squeeze", seq, y, kilt_onnx_ints (e, "axes", axis1, 1), NULL);
  if (cfg->go_backwards && !cfg->keep_time_order)
    {
      static const gint64 start[] = { -1 }, end[] = { G_MININT64 }, step[] = { -1 };
      const char *rev = kilt_onnx_name (e, "y_reversed");
      kilt_onnx_op (e, "Slice", rev, seq, kilt_onnx_ints (e, "starts", start, 1),
                    kilt_onnx_ints (e, "ends", end, 1), kilt_onnx_ints (e, "axes", axis0, 1),
                    kilt_onnx_ints (e, "steps", step, 1), NULL);
      seq = rev;
    }
  x = kilt_onnx_name (e, "y_nct");
  n = kilt_onnx_op (e, "Transpose", x, seq, NULL);
  kilt_onnx_attr_ints (e, n, "perm", perm_out, 3);
  kilt_onnx_op (e, "Unsqueeze", out, x, kilt_onnx_ints (e, "axes", axis2, 1), NULL);
  *rank = 4;
  return TRUE;
}

/* Layers that pass their input on (Dropout at inference) take its value; shape changes
 * between (C) and (1, 1, C) take the rank their output shape asks for. */
static gboolean
ex_node (KiltOnnxGraph *e, guint index, GError **error)
{
  const KiltNode *node = e->node;
  const char *out = NULL;
  guint r = 0;
  gboolean ok = TRUE;

  /* ONNX's LSTM and GRU take sequence_lens, lengths of right-padded sequences, which a mask of
   * left padding or holes is not, and ONNX's means have no mask: a model that skips steps is
   * refused rather than written as one that does not. */
  if (node->cfg.step_mask != KILT_STEP_MASK_NONE)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "layer %s (%s) skips masked steps (Keras' mask_zero or Masking), which has no "
                   "ONNX export",
                   node->name, kilt_layer_type_name (node->type));
      return FALSE;
    }
  switch (node->type)
    {
      case KILT_LAYER_INPUT:
        out = node->name;
        g_hash_table_add (e->names, (gpointer)out);
        r = node->out_shape.h == 1 && node->out_shape.w == 1 ? 2 : 4;
        break;
      case KILT_LAYER_CONV2D:
      case KILT_LAYER_DEPTHWISE_CONV2D:
        ok = ex_conv (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_CONV2D_TRANSPOSE:
        ok = ex_conv_transpose (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_DENSE:
        ok = ex_dense (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_MAX_POOL2D:
      case KILT_LAYER_AVG_POOL2D:
        ok = ex_pool (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_GLOBAL_AVG_POOL2D:
      case KILT_LAYER_GLOBAL_MAX_POOL2D:
        ok = ex_global_pool (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_ACTIVATION:
        out = kilt_onnx_name (e, NULL);
        ex_activation (e, kilt_onnx_in (e, 0, &r), node->cfg.activation, node->cfg.alpha,
                       &node->cfg, out);
        break;
      case KILT_LAYER_DROPOUT:
        out = kilt_onnx_in (e, 0, &r);
        break;
      case KILT_LAYER_FLATTEN:
        out = kilt_onnx_in (e, 0, &r);
        if (r == 4)
          out = kilt_onnx_to2 (e, out, r, kilt_onnx_name (e, NULL));
        r = 2;
        break;
      case KILT_LAYER_RESHAPE:
        out = kilt_onnx_in (e, 0, &r);
        if (node->out_shape.h == 1 && node->out_shape.w == 1 && r == 4)
          out = kilt_onnx_to2 (e, out, r, kilt_onnx_name (e, NULL));
        else if (!(node->out_shape.h == 1 && node->out_shape.w == 1))
          {
            /* To NCHW of the new shape (a vector as a sequence: (N, 1, 1, steps)); 0 keeps
             * the batch. */
            const gint64 dims[] = { 0, node->out_shape.c, node->out_shape.h, node->out_shape.w };
            const char *y = kilt_onnx_name (e, NULL);
            kilt_onnx_op (e, "Reshape", y, out, kilt_onnx_ints (e, "shape", dims, 4), NULL);
            out = y;
            r = 4;
          }
        r = node->out_shape.h == 1 && node->out_shape.w == 1 ? 2 : r;
        break;
      case KILT_LAYER_BATCH_NORM:
      case KILT_LAYER_LAYER_NORM:
        ok = ex_norm_layer (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_NORMALIZATION:
        ok = ex_normalization (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_RESCALING:
        {
          const char *scaled = kilt_onnx_name (e, "scaled");
          out = kilt_onnx_name (e, NULL);
          kilt_onnx_op (e, "Mul", scaled, kilt_onnx_in (e, 0, &r),
                        kilt_onnx_scalar (e, node->cfg.scale), NULL);
          kilt_onnx_op (e, "Add", out, scaled, kilt_onnx_scalar (e, node->cfg.offset), NULL);
          break;
        }
      case KILT_LAYER_ADD:
      case KILT_LAYER_SUBTRACT:
      case KILT_LAYER_AVERAGE:
      case KILT_LAYER_MAXIMUM:
      case KILT_LAYER_MINIMUM:
      case KILT_LAYER_MULTIPLY:
      case KILT_LAYER_CONCATENATE:
        ok = ex_merge (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_ZERO_PADDING2D:
      case KILT_LAYER_CROPPING2D:
        ok = ex_pad_crop (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_EMBEDDING:
        ok = ex_embedding (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_LSTM:
      case KILT_LAYER_GRU:
        ok = ex_rnn (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      case KILT_LAYER_UPSAMPLING2D:
        /* Resize's linear modes clamp and centre differently from TensorFlow's bilinear
         * resize, and no test compares them yet: refuse rather than write nearest. */
        if (node->cfg.bilinear)
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                         "layer %s (UpSampling2D, interpolation bilinear) has no ONNX export yet "
                         "(nearest has)",
                         node->name);
            return FALSE;
          }
        ok = ex_upsampling (e, out = kilt_onnx_name (e, NULL), &r);
        break;
      default:
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                     "layer %s (%s) has no ONNX export", node->name,
                     kilt_layer_type_name (node->type));
        return FALSE;
    }
  if (!ok)
    return FALSE;
  e->value[index] = out;
  e->rank[index] = r;
  return TRUE;
}

gboolean
kilt_onnx_export_available (void)
{
  return TRUE;
}

gboolean
kilt_onnx_export (KiltModel *model, const float *params, const float *state, const char *path,
                  KiltOnnxExportInfo *info, GError **error)
{
  KiltOnnxGraph e = { 0 };
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
  Onnx__OperatorSetIdProto *opsets[1] = { &opset };
  Onnx__ValueInfoProto *input, *output;
  KiltNode *first, *last;
  guint n_nodes;
  gsize bytes = 0;
  gboolean ok = FALSE;

  g_return_val_if_fail (model != NULL && path != NULL, FALSE);
  if (!model->built || kilt_model_n_nodes (model) == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "cannot write %s: model %s is not built", path, model->name);
      return FALSE;
    }
  if ((model->n_params && !params) || (model->n_state && !state))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "cannot write %s: model %s has no weights to export", path, model->name);
      return FALSE;
    }
  n_nodes = kilt_model_n_nodes (model);
  first = kilt_model_node (model, 0);
  last = kilt_model_output (model);
  e.model = model;
  e.params = params;
  e.state = state;
  e.arena = g_ptr_array_new_with_free_func (g_free);
  e.ops = g_ptr_array_new ();
  e.inits = g_ptr_array_new ();
  e.names = g_hash_table_new (g_str_hash, g_str_equal);
  e.value = g_new0 (const char *, n_nodes);
  e.rank = g_new0 (guint, n_nodes);
  if (first->type != KILT_LAYER_INPUT)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "cannot write %s: model %s does not start with its input", path, model->name);
      goto out;
    }
  for (guint i = 0; i < n_nodes; i++)
    {
      e.node = kilt_model_node (model, i);
      if (!ex_node (&e, i, error))
        {
          g_prefix_error (error, "cannot write %s: ", path);
          goto out;
        }
    }
  /* The output: (batch, classes) for a flat one, whatever the last layer left it as. */
  e.node = last;
  {
    const char *name = "output";
    guint r = e.rank[last->index];
    if (g_hash_table_contains (e.names, name))
      name = kilt_onnx_name (&e, "output");
    if (r == 4 && last->out_shape.h == 1 && last->out_shape.w == 1)
      r = (kilt_onnx_to2 (&e, e.value[last->index], r, name), 2);
    else
      kilt_onnx_op (&e, "Identity", name, e.value[last->index], NULL);
    output = kilt_onnx_value_info (&e, name, &last->out_shape, r);
  }
  input = kilt_onnx_value_info (&e, first->name, &first->out_shape, e.rank[0]);

  g.name = model->name;
  g.n_node = e.ops->len;
  g.node = (Onnx__NodeProto **)e.ops->pdata;
  g.n_initializer = e.inits->len;
  g.initializer = (Onnx__TensorProto **)e.inits->pdata;
  g.n_input = 1;
  g.input = &input;
  g.n_output = 1;
  g.output = &output;
  g.doc_string = model->weights_note;
  opset.domain = (char *)"";
  opset.has_version = TRUE;
  opset.version = KILT_ONNX_OPSET;
  m.has_ir_version = TRUE;
  m.ir_version = 8; /* ONNX 1.12's, the first with opset 17 */
  m.n_opset_import = 1;
  m.opset_import = opsets;
  m.producer_name = (char *)"Kilt";
  m.producer_version = (char *)KILT_VERSION;
  m.graph = &g;
  if (!kilt_onnx_write (&m, path, &bytes, error))
    goto out;
  if (info)
    {
      info->n_nodes = e.ops->len;
      info->n_initializers = e.inits->len;
      info->bytes = bytes;
    }
  ok = TRUE;
out:
  g_free (e.value);
  g_free (e.rank);
  g_hash_table_unref (e.names);
  g_ptr_array_unref (e.inits);
  g_ptr_array_unref (e.ops);
  g_ptr_array_unref (e.arena);
  return ok;
}

#endif /* KILT_HAVE_ONNX */
