/* ONNX export: every layer of a built model as ONNX operators (opset 17), through protobuf-c
 * and the C bindings generated at build time from the onnx.proto the system ships. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-onnx"

#include "config.h"

#include "kilt-onnx-export.h"
#include "kilt-error.h"
#include "kilt-model-json.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

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

#include "onnx.pb-c.h"

/* Values Keras uses (kernels/common.cl has the same). */
#define SELU_ALPHA     1.6732632423543772848170429916717
#define SELU_SCALE     1.0507009873554804934193349852946
#define GELU_C         0.79788456080286535587989211986876 /* sqrt (2 / pi) */
#define NORM_EPS       1e-7f                              /* Keras' backend.epsilon () */

/* protobuf's hard limit on one message. */
#define ONNX_MAX_BYTES ((gsize)G_MAXINT32)

typedef struct
{
  KiltModel *model;
  const float *params, *state;
  GPtrArray *arena;     /* everything allocated for the messages, freed at the end */
  GPtrArray *ops;       /* Onnx__NodeProto* */
  GPtrArray *inits;     /* Onnx__TensorProto* */
  GHashTable *names;    /* value names taken */
  const char **value;   /* per Kilt node: the ONNX value holding its output */
  guint *rank;          /* per Kilt node: 2 ((batch, C), for 1x1 values) or 4 (NCHW) */
  const KiltNode *node; /* the layer being written, for names and errors */
} Export;

static gpointer
ex_alloc (Export *e, gsize size)
{
  gpointer p = g_malloc0 (size);

  g_ptr_array_add (e->arena, p);
  return p;
}

static char *
ex_strdup (Export *e, const char *s)
{
  char *p = g_strdup (s);

  g_ptr_array_add (e->arena, p);
  return p;
}

/* A value name no other value has: "<layer>/<what>" (@what NULL: the layer's own name). */
static const char *
ex_name (Export *e, const char *what)
{
  g_autofree char *base
      = what ? g_strdup_printf ("%s/%s", e->node->name, what) : g_strdup (e->node->name);
  char *name = ex_strdup (e, base);

  for (guint i = 1; g_hash_table_contains (e->names, name); i++)
    {
      g_autofree char *numbered = g_strdup_printf ("%s_%u", base, i);
      name = ex_strdup (e, numbered);
    }
  g_hash_table_add (e->names, name);
  return name;
}

/* ---- tensors ------------------------------------------------------------------------------- */

static Onnx__TensorProto *
ex_tensor (Export *e, const char *name, int32_t type, const gint64 *dims, guint rank)
{
  Onnx__TensorProto *t = ex_alloc (e, sizeof *t);

  onnx__tensor_proto__init (t);
  t->name = (char *)name;
  t->has_data_type = TRUE;
  t->data_type = type;
  t->n_dims = rank;
  t->dims = ex_alloc (e, sizeof (int64_t) * MAX (rank, 1));
  for (guint i = 0; i < rank; i++)
    t->dims[i] = dims[i];
  g_ptr_array_add (e->inits, t);
  return t;
}

/* A float initializer holding @n values of @data. The weights themselves are not copied on a
 * little-endian machine (the model's buffers outlive the export). */
static const char *
ex_floats (Export *e, const char *what, const float *data, gsize n, const gint64 *dims, guint rank)
{
  const char *name = ex_name (e, what);
  Onnx__TensorProto *t = ex_tensor (e, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, rank);

  t->has_raw_data = TRUE;
  t->raw_data.len = n * sizeof (float);
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  t->raw_data.data = (uint8_t *)data;
#else
  {
    guint32 *copy = ex_alloc (e, n * sizeof (float));
    memcpy (copy, data, n * sizeof (float));
    for (gsize i = 0; i < n; i++)
      copy[i] = GUINT32_TO_LE (copy[i]);
    t->raw_data.data = (uint8_t *)copy;
  }
#endif
  return name;
}

/* A float initializer of @n copies of @v. */
static const char *
ex_fill (Export *e, const char *what, float v, gsize n, const gint64 *dims, guint rank)
{
  float *data = ex_alloc (e, sizeof (float) * MAX (n, 1));

  for (gsize i = 0; i < n; i++)
    data[i] = v;
  return ex_floats (e, what, data, n, dims, rank);
}

static const char *
ex_scalar (Export *e, float v)
{
  return ex_fill (e, "const", v, 1, NULL, 0);
}

static const char *
ex_ints (Export *e, const char *what, const gint64 *v, guint n)
{
  const char *name = ex_name (e, what);
  gint64 dims[1] = { n };
  Onnx__TensorProto *t = ex_tensor (e, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims, 1);

  t->n_int64_data = n;
  t->int64_data = ex_alloc (e, sizeof (int64_t) * MAX (n, 1));
  for (guint i = 0; i < n; i++)
    t->int64_data[i] = v[i];
  return name;
}

/* Per-channel values shaped to broadcast over a value of @rank: (1, C) or (1, C, 1, 1). */
static const char *
ex_channels (Export *e, const char *what, const float *data, guint c, guint rank)
{
  gint64 dims[4] = { 1, c, 1, 1 };

  return ex_floats (e, what, data, c, dims, rank);
}

/* ---- operators ----------------------------------------------------------------------------- */

/* An operator with @n_in inputs (NULL-terminated varargs after @in0; "" for an optional input
 * left out) writing @out. */
static Onnx__NodeProto *
ex_op (Export *e, const char *op_type, const char *out, const char *in0, ...)
{
  Onnx__NodeProto *n = ex_alloc (e, sizeof *n);
  const char *ins[8];
  guint n_in = 0;
  va_list ap;

  onnx__node_proto__init (n);
  va_start (ap, in0);
  for (const char *s = in0; s && n_in < G_N_ELEMENTS (ins); s = va_arg (ap, const char *))
    ins[n_in++] = s;
  va_end (ap);
  n->op_type = (char *)op_type;
  n->n_input = n_in;
  n->input = ex_alloc (e, sizeof (char *) * MAX (n_in, 1));
  for (guint i = 0; i < n_in; i++)
    n->input[i] = (char *)ins[i];
  n->n_output = 1;
  n->output = ex_alloc (e, sizeof (char *));
  n->output[0] = (char *)out;
  n->name = (char *)out;
  g_ptr_array_add (e->ops, n);
  return n;
}

/* The same with an input list. */
static Onnx__NodeProto *
ex_op_n (Export *e, const char *op_type, const char *out, const char *const *ins, guint n_in)
{
  Onnx__NodeProto *n = ex_op (e, op_type, out, NULL);

  n->n_input = n_in;
  n->input = ex_alloc (e, sizeof (char *) * MAX (n_in, 1));
  for (guint i = 0; i < n_in; i++)
    n->input[i] = (char *)ins[i];
  return n;
}

static Onnx__AttributeProto *
ex_attr (Export *e, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType type)
{
  Onnx__AttributeProto *a = ex_alloc (e, sizeof *a);
  Onnx__AttributeProto **list = ex_alloc (e, sizeof (*list) * (n->n_attribute + 1));

  onnx__attribute_proto__init (a);
  a->name = (char *)name;
  a->has_type = TRUE;
  a->type = type;
  if (n->n_attribute)
    memcpy (list, n->attribute, sizeof (*list) * n->n_attribute);
  list[n->n_attribute++] = a;
  n->attribute = list;
  return a;
}

static void
ex_attr_int (Export *e, Onnx__NodeProto *n, const char *name, gint64 v)
{
  Onnx__AttributeProto *a = ex_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);

  a->has_i = TRUE;
  a->i = v;
}

static void
ex_attr_float (Export *e, Onnx__NodeProto *n, const char *name, float v)
{
  Onnx__AttributeProto *a = ex_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);

  a->has_f = TRUE;
  a->f = v;
}

static void
ex_attr_ints (Export *e, Onnx__NodeProto *n, const char *name, const gint64 *v, guint count)
{
  Onnx__AttributeProto *a = ex_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);

  a->n_ints = count;
  a->ints = ex_alloc (e, sizeof (int64_t) * MAX (count, 1));
  for (guint i = 0; i < count; i++)
    a->ints[i] = v[i];
}

static void
ex_attr_string (Export *e, Onnx__NodeProto *n, const char *name, const char *v)
{
  Onnx__AttributeProto *a = ex_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);

  a->has_s = TRUE;
  a->s.data = (uint8_t *)v;
  a->s.len = strlen (v);
}

/* ---- ranks: 1x1 values travel as (batch, C), others as NCHW -------------------------------- */

static const char *
ex_to4 (Export *e, const char *x, guint rank)
{
  static const gint64 axes[] = { 2, 3 };
  const char *out;

  if (rank == 4)
    return x;
  out = ex_name (e, "nchw");
  ex_op (e, "Unsqueeze", out, x, ex_ints (e, "axes", axes, 2), NULL);
  return out;
}

static const char *
ex_to2 (Export *e, const char *x, guint rank, const char *out)
{
  Onnx__NodeProto *n;

  if (rank == 2)
    return x;
  n = ex_op (e, "Flatten", out ? out : ex_name (e, "flat"), x, NULL);
  ex_attr_int (e, n, "axis", 1);
  return n->output[0];
}

/* Input @i of the layer being written. */
static const char *
ex_in (Export *e, guint i, guint *rank)
{
  guint src = e->node->inputs[i];

  if (rank)
    *rank = e->rank[src];
  return e->value[src];
}

/* Input 0 as NCHW, or as (batch, C). */
static const char *
ex_in4 (Export *e)
{
  guint r;
  const char *x = ex_in (e, 0, &r);

  return ex_to4 (e, x, r);
}

static const char *
ex_in2 (Export *e)
{
  guint r;
  const char *x = ex_in (e, 0, &r);

  return ex_to2 (e, x, r, NULL);
}

/* ---- activations --------------------------------------------------------------------------- */

/* Keras' ReLU with threshold t, cap m and slope s below t: x > t ? clip (x, 0, m) : s (x - t). */
static void
ex_relu_options (Export *e, const char *x, const KiltLayerConfig *c, const char *out)
{
  gboolean plain_below = c->threshold == 0.0f && c->negative_slope == 0.0f;
  const char *top;

  if (plain_below && isinf (c->max_value))
    {
      ex_op (e, "Relu", out, x, NULL);
      return;
    }
  if (plain_below)
    {
      ex_op (e, "Clip", out, x, ex_scalar (e, 0.0f), ex_scalar (e, c->max_value), NULL);
      return;
    }
  top = ex_name (e, "relu_top");
  if (isinf (c->max_value))
    ex_op (e, "Relu", top, x, NULL);
  else
    ex_op (e, "Clip", top, x, ex_scalar (e, 0.0f), ex_scalar (e, c->max_value), NULL);
  {
    const char *above = ex_name (e, "relu_above"), *shifted = ex_name (e, "relu_shifted");
    const char *below = ex_name (e, "relu_below"), *t = ex_scalar (e, c->threshold);

    ex_op (e, "Greater", above, x, t, NULL);
    ex_op (e, "Sub", shifted, x, t, NULL);
    ex_op (e, "Mul", below, shifted, ex_scalar (e, c->negative_slope), NULL);
    ex_op (e, "Where", out, above, top, below, NULL);
  }
}

/* @act of @x into @out. @relu: the Activation layer's ReLU options (NULL: a plain ReLU, as
 * Conv2D, Dense and DepthwiseConv2D apply it). */
static void
ex_activation (Export *e, const char *x, KiltActivation act, float alpha,
               const KiltLayerConfig *relu, const char *out)
{
  Onnx__NodeProto *n;
  const char *a, *b, *c;

  switch (act)
    {
      case KILT_ACT_LINEAR:
        ex_op (e, "Identity", out, x, NULL);
        return;
      case KILT_ACT_RELU:
        if (relu)
          ex_relu_options (e, x, relu, out);
        else
          ex_op (e, "Relu", out, x, NULL);
        return;
      case KILT_ACT_LEAKY_RELU:
        n = ex_op (e, "LeakyRelu", out, x, NULL);
        ex_attr_float (e, n, "alpha", alpha);
        return;
      case KILT_ACT_SIGMOID:
        ex_op (e, "Sigmoid", out, x, NULL);
        return;
      case KILT_ACT_TANH:
        ex_op (e, "Tanh", out, x, NULL);
        return;
      case KILT_ACT_SOFTMAX:
        /* Over channels at each position, as Kilt computes it. */
        n = ex_op (e, "Softmax", out, x, NULL);
        ex_attr_int (e, n, "axis", 1);
        return;
      case KILT_ACT_RELU6:
        ex_op (e, "Clip", out, x, ex_scalar (e, 0.0f), ex_scalar (e, 6.0f), NULL);
        return;
      case KILT_ACT_ELU:
        n = ex_op (e, "Elu", out, x, NULL);
        ex_attr_float (e, n, "alpha", alpha);
        return;
      case KILT_ACT_SELU:
        n = ex_op (e, "Selu", out, x, NULL);
        ex_attr_float (e, n, "alpha", (float)SELU_ALPHA);
        ex_attr_float (e, n, "gamma", (float)SELU_SCALE);
        return;
      case KILT_ACT_SOFTPLUS:
        ex_op (e, "Softplus", out, x, NULL);
        return;
      case KILT_ACT_SOFTSIGN:
        ex_op (e, "Softsign", out, x, NULL);
        return;
      case KILT_ACT_EXPONENTIAL:
        ex_op (e, "Exp", out, x, NULL);
        return;
      case KILT_ACT_SWISH:
        a = ex_name (e, "sigmoid");
        ex_op (e, "Sigmoid", a, x, NULL);
        ex_op (e, "Mul", out, x, a, NULL);
        return;
      case KILT_ACT_GELU:
        /* 0.5 x (1 + erf (x / sqrt 2)) */
        a = ex_name (e, "gelu_scaled");
        b = ex_name (e, "gelu_erf");
        c = ex_name (e, "gelu_sum");
        ex_op (e, "Mul", a, x, ex_scalar (e, (float)(1.0 / G_SQRT2)), NULL);
        ex_op (e, "Erf", b, a, NULL);
        ex_op (e, "Add", c, b, ex_scalar (e, 1.0f), NULL);
        a = ex_name (e, "gelu_half");
        ex_op (e, "Mul", a, x, ex_scalar (e, 0.5f), NULL);
        ex_op (e, "Mul", out, a, c, NULL);
        return;
      case KILT_ACT_GELU_TANH:
        /* 0.5 x (1 + tanh (sqrt (2 / pi) (x + 0.044715 x^3))) */
        a = ex_name (e, "gelu_cube");
        ex_op (e, "Mul", a, x, x, NULL);
        b = ex_name (e, "gelu_cube3");
        ex_op (e, "Mul", b, a, x, NULL);
        a = ex_name (e, "gelu_cubec");
        ex_op (e, "Mul", a, b, ex_scalar (e, 0.044715f), NULL);
        b = ex_name (e, "gelu_inner");
        ex_op (e, "Add", b, x, a, NULL);
        a = ex_name (e, "gelu_innerc");
        ex_op (e, "Mul", a, b, ex_scalar (e, (float)GELU_C), NULL);
        b = ex_name (e, "gelu_tanh");
        ex_op (e, "Tanh", b, a, NULL);
        c = ex_name (e, "gelu_sum");
        ex_op (e, "Add", c, b, ex_scalar (e, 1.0f), NULL);
        a = ex_name (e, "gelu_half");
        ex_op (e, "Mul", a, x, ex_scalar (e, 0.5f), NULL);
        ex_op (e, "Mul", out, a, c, NULL);
        return;
      case KILT_ACT_HARD_SIGMOID:
      case KILT_ACT_HARD_SIGMOID_K2:
        n = ex_op (e, "HardSigmoid", out, x, NULL);
        ex_attr_float (e, n, "alpha", act == KILT_ACT_HARD_SIGMOID ? 1.0f / 6.0f : 0.2f);
        ex_attr_float (e, n, "beta", 0.5f);
        return;
      case KILT_ACT_HARD_SWISH:
        /* ONNX's HardSwish is Keras 3's: x max (0, min (1, x / 6 + 0.5)). */
        ex_op (e, "HardSwish", out, x, NULL);
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
ex_conv (Export *e, const char *out, guint *rank)
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
  const char *x = ex_in4 (e), *w, *conv;
  Onnx__NodeProto *n;

  ex_pads (in->h, (cfg->kh - 1) * dh + 1, cfg->sh, cfg->same, &pads[0], &pads[2]);
  ex_pads (in->w, (cfg->kw - 1) * dwid + 1, cfg->sw, cfg->same, &pads[1], &pads[3]);
  strides[0] = cfg->sh;
  strides[1] = cfg->sw;
  dil[0] = dh;
  dil[1] = dwid;
  w = ex_floats (e, dw ? "depthwise_kernel" : "kernel", p, nw, wdims, 4);
  conv = cfg->activation == KILT_ACT_LINEAR ? out : ex_name (e, "conv");
  if (cfg->use_bias)
    n = ex_op (e, "Conv", conv, x, w, ex_floats (e, "bias", p + nw, f, bdims, 1), NULL);
  else
    n = ex_op (e, "Conv", conv, x, w, NULL);
  ex_attr_ints (e, n, "kernel_shape", kernel, 2);
  ex_attr_ints (e, n, "strides", strides, 2);
  ex_attr_ints (e, n, "pads", pads, 4);
  ex_attr_ints (e, n, "dilations", dil, 2);
  ex_attr_int (e, n, "group", groups);
  if (cfg->activation != KILT_ACT_LINEAR)
    ex_activation (e, conv, cfg->activation, cfg->alpha, NULL, out);
  *rank = 4;
  return TRUE;
}

static gboolean
ex_dense (Export *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  gsize nin = kilt_shape_size (&node->in_shape[0]);
  gint64 wdims[2] = { (gint64)nin, cfg->units }, bdims[1] = { cfg->units };
  const float *p = e->params + node->param_offset;
  const char *x = ex_in2 (e), *w, *y;

  w = ex_floats (e, "kernel", p, nin * cfg->units, wdims, 2);
  y = cfg->activation == KILT_ACT_LINEAR ? out : ex_name (e, "gemm");
  if (cfg->use_bias)
    ex_op (e, "Gemm", y, x, w, ex_floats (e, "bias", p + nin * cfg->units, cfg->units, bdims, 1),
           NULL);
  else
    ex_op (e, "Gemm", y, x, w, NULL);
  if (cfg->activation != KILT_ACT_LINEAR)
    ex_activation (e, y, cfg->activation, cfg->alpha, NULL, out);
  *rank = 2;
  return TRUE;
}

static gboolean
ex_pool (Export *e, const char *out, guint *rank)
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
  n = ex_op (e, is_max ? "MaxPool" : "AveragePool", out, ex_in4 (e), NULL);
  ex_attr_ints (e, n, "kernel_shape", kernel, 2);
  ex_attr_ints (e, n, "strides", strides, 2);
  ex_attr_ints (e, n, "pads", pads, 4);
  /* Keras averages over the window's part inside the input. */
  if (!is_max)
    ex_attr_int (e, n, "count_include_pad", 0);
  *rank = 4;
  return TRUE;
}

static gboolean
ex_global_pool (Export *e, const char *out, guint *rank)
{
  const char *pooled = ex_name (e, "pooled");

  ex_op (e, e->node->type == KILT_LAYER_GLOBAL_MAX_POOL2D ? "GlobalMaxPool" : "GlobalAveragePool",
         pooled, ex_in4 (e), NULL);
  ex_to2 (e, pooled, 4, out);
  *rank = 2;
  return TRUE;
}

/* BatchNormalization (inference: the moving statistics) and LayerNormalization. */
static gboolean
ex_norm_layer (Export *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const KiltLayerConfig *cfg = &node->cfg;
  guint c = node->in_shape[0].c, r;
  const float *p = e->params + node->param_offset;
  gint64 dims[1] = { c };
  const char *x = ex_in (e, 0, &r), *gamma, *beta;
  Onnx__NodeProto *n;

  gamma = cfg->bn_no_scale ? ex_fill (e, "gamma", 1.0f, c, dims, 1)
                           : ex_floats (e, "gamma", p, c, dims, 1);
  beta = cfg->bn_no_center ? ex_fill (e, "beta", 0.0f, c, dims, 1)
                           : ex_floats (e, "beta", p + (cfg->bn_no_scale ? 0 : c), c, dims, 1);
  *rank = r;
  if (node->type == KILT_LAYER_BATCH_NORM)
    {
      const float *s = e->state + node->state_offset;
      n = ex_op (e, "BatchNormalization", out, x, gamma, beta,
                 ex_floats (e, "moving_mean", s, c, dims, 1),
                 ex_floats (e, "moving_variance", s + c, c, dims, 1), NULL);
      ex_attr_float (e, n, "epsilon", cfg->epsilon);
      return TRUE;
    }
  /* LayerNormalization over channels: ONNX normalises over the last axes, so an NCHW value
   * goes through NHWC. */
  if (r == 2)
    {
      n = ex_op (e, "LayerNormalization", out, x, gamma, beta, NULL);
      ex_attr_int (e, n, "axis", -1);
      ex_attr_float (e, n, "epsilon", cfg->epsilon);
      return TRUE;
    }
  {
    static const gint64 to_nhwc[] = { 0, 2, 3, 1 }, to_nchw[] = { 0, 3, 1, 2 };
    const char *t = ex_name (e, "nhwc"), *ln = ex_name (e, "normalised");
    n = ex_op (e, "Transpose", t, x, NULL);
    ex_attr_ints (e, n, "perm", to_nhwc, 4);
    n = ex_op (e, "LayerNormalization", ln, t, gamma, beta, NULL);
    ex_attr_int (e, n, "axis", -1);
    ex_attr_float (e, n, "epsilon", cfg->epsilon);
    n = ex_op (e, "Transpose", out, ln, NULL);
    ex_attr_ints (e, n, "perm", to_nchw, 4);
  }
  return TRUE;
}

/* Normalization: (x - mean) / max (sqrt (variance), eps), per channel. */
static gboolean
ex_normalization (Export *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  guint c = node->in_shape[0].c, r;
  const char *x = ex_in (e, 0, &r), *mean, *var;
  const char *centred = ex_name (e, "centred"), *sd = ex_name (e, "stddev");
  const char *sd_eps = ex_name (e, "stddev_eps");

  if (node->cfg.norm_n)
    {
      mean = ex_channels (e, "mean", node->cfg.norm_mean, c, r);
      var = ex_channels (e, "variance", node->cfg.norm_var, c, r);
    }
  else
    {
      mean = ex_channels (e, "mean", e->state + node->state_offset, c, r);
      var = ex_channels (e, "variance", e->state + node->state_offset + c, c, r);
    }
  ex_op (e, "Sub", centred, x, mean, NULL);
  ex_op (e, "Sqrt", sd, var, NULL);
  ex_op (e, "Max", sd_eps, sd, ex_scalar (e, NORM_EPS), NULL);
  ex_op (e, "Div", out, centred, sd_eps, NULL);
  *rank = r;
  return TRUE;
}

/* The merge layers: inputs of one rank (NCHW when any is), then one operator. */
static gboolean
ex_merge (Export *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const char *ins[KILT_MAX_INPUTS];
  guint r = 2;
  Onnx__NodeProto *n;

  for (guint i = 0; i < node->n_inputs; i++)
    {
      guint ri;
      ex_in (e, i, &ri);
      r = MAX (r, ri);
    }
  for (guint i = 0; i < node->n_inputs; i++)
    {
      guint ri;
      const char *v = ex_in (e, i, &ri);
      ins[i] = r == 4 ? ex_to4 (e, v, ri) : v;
    }
  *rank = r;
  switch (node->type)
    {
      case KILT_LAYER_ADD:
        ex_op_n (e, "Sum", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_SUBTRACT:
        ex_op (e, "Sub", out, ins[0], ins[1], NULL);
        return TRUE;
      case KILT_LAYER_AVERAGE:
        ex_op_n (e, "Mean", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_MAXIMUM:
        ex_op_n (e, "Max", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_MINIMUM:
        ex_op_n (e, "Min", out, ins, node->n_inputs);
        return TRUE;
      case KILT_LAYER_MULTIPLY:
        {
          /* Mul is binary (and broadcasts a (C, 1, 1) input over the planes, as Kilt does). */
          const char *acc = ins[0];
          for (guint i = 1; i < node->n_inputs; i++)
            {
              const char *y = i + 1 == node->n_inputs ? out : ex_name (e, "product");
              ex_op (e, "Mul", y, acc, ins[i], NULL);
              acc = y;
            }
          return TRUE;
        }
      case KILT_LAYER_CONCATENATE:
        n = ex_op_n (e, "Concat", out, ins, node->n_inputs);
        ex_attr_int (e, n, "axis", 1);
        return TRUE;
      default:
        g_assert_not_reached ();
    }
}

static gboolean
ex_pad_crop (Export *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  const guint *p = node->cfg.pad; /* top, bottom, left, right */
  const KiltShape *in = &node->in_shape[0];
  const char *x = ex_in4 (e);

  *rank = 4;
  if (node->type == KILT_LAYER_ZERO_PADDING2D)
    {
      gint64 pads[8] = { 0, 0, p[0], p[2], 0, 0, p[1], p[3] };
      ex_op (e, "Pad", out, x, ex_ints (e, "pads", pads, 8), NULL);
      return TRUE;
    }
  {
    gint64 starts[2] = { p[0], p[2] }, ends[2] = { in->h - p[1], in->w - p[3] }, axes[2] = { 2, 3 };
    ex_op (e, "Slice", out, x, ex_ints (e, "starts", starts, 2), ex_ints (e, "ends", ends, 2),
           ex_ints (e, "axes", axes, 2), NULL);
  }
  return TRUE;
}

static gboolean
ex_upsampling (Export *e, const char *out, guint *rank)
{
  const KiltNode *node = e->node;
  float *scales = ex_alloc (e, 4 * sizeof (float));
  gint64 dims[1] = { 4 };
  const char *x = ex_in4 (e);
  Onnx__NodeProto *n;

  /* Nearest with integer scales: output (y, x) reads input (floor (y / sy), floor (x / sx)). */
  scales[0] = scales[1] = 1.0f;
  scales[2] = (float)node->cfg.kh;
  scales[3] = (float)node->cfg.kw;
  n = ex_op (e, "Resize", out, x, "", ex_floats (e, "scales", scales, 4, dims, 1), NULL);
  ex_attr_string (e, n, "mode", "nearest");
  ex_attr_string (e, n, "coordinate_transformation_mode", "asymmetric");
  ex_attr_string (e, n, "nearest_mode", "floor");
  *rank = 4;
  return TRUE;
}

/* Layers that pass their input on (Dropout at inference) take its value; shape changes
 * between (C) and (1, 1, C) take the rank their output shape asks for. */
static gboolean
ex_node (Export *e, guint index, GError **error)
{
  const KiltNode *node = e->node;
  const char *out = NULL;
  guint r = 0;
  gboolean ok = TRUE;

  switch (node->type)
    {
      case KILT_LAYER_INPUT:
        out = node->name;
        g_hash_table_add (e->names, (gpointer)out);
        r = node->out_shape.h == 1 && node->out_shape.w == 1 ? 2 : 4;
        break;
      case KILT_LAYER_CONV2D:
      case KILT_LAYER_DEPTHWISE_CONV2D:
        ok = ex_conv (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_DENSE:
        ok = ex_dense (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_MAX_POOL2D:
      case KILT_LAYER_AVG_POOL2D:
        ok = ex_pool (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_GLOBAL_AVG_POOL2D:
      case KILT_LAYER_GLOBAL_MAX_POOL2D:
        ok = ex_global_pool (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_ACTIVATION:
        out = ex_name (e, NULL);
        ex_activation (e, ex_in (e, 0, &r), node->cfg.activation, node->cfg.alpha, &node->cfg, out);
        break;
      case KILT_LAYER_DROPOUT:
        out = ex_in (e, 0, &r);
        break;
      case KILT_LAYER_FLATTEN:
        out = ex_in (e, 0, &r);
        if (r == 4)
          out = ex_to2 (e, out, r, ex_name (e, NULL));
        r = 2;
        break;
      case KILT_LAYER_RESHAPE:
        out = ex_in (e, 0, &r);
        if (node->out_shape.h == 1 && node->out_shape.w == 1 && r == 4)
          out = ex_to2 (e, out, r, ex_name (e, NULL));
        r = node->out_shape.h == 1 && node->out_shape.w == 1 ? 2 : r;
        break;
      case KILT_LAYER_BATCH_NORM:
      case KILT_LAYER_LAYER_NORM:
        ok = ex_norm_layer (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_NORMALIZATION:
        ok = ex_normalization (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_RESCALING:
        {
          const char *scaled = ex_name (e, "scaled");
          out = ex_name (e, NULL);
          ex_op (e, "Mul", scaled, ex_in (e, 0, &r), ex_scalar (e, node->cfg.scale), NULL);
          ex_op (e, "Add", out, scaled, ex_scalar (e, node->cfg.offset), NULL);
          break;
        }
      case KILT_LAYER_ADD:
      case KILT_LAYER_SUBTRACT:
      case KILT_LAYER_AVERAGE:
      case KILT_LAYER_MAXIMUM:
      case KILT_LAYER_MINIMUM:
      case KILT_LAYER_MULTIPLY:
      case KILT_LAYER_CONCATENATE:
        ok = ex_merge (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_ZERO_PADDING2D:
      case KILT_LAYER_CROPPING2D:
        ok = ex_pad_crop (e, out = ex_name (e, NULL), &r);
        break;
      case KILT_LAYER_UPSAMPLING2D:
        ok = ex_upsampling (e, out = ex_name (e, NULL), &r);
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

/* ---- the model ----------------------------------------------------------------------------- */

/* A float tensor's type: (batch, C) or (batch, C, H, W), the batch symbolic. */
static Onnx__ValueInfoProto *
ex_value_info (Export *e, const char *name, const KiltShape *s, guint rank)
{
  Onnx__ValueInfoProto *v = ex_alloc (e, sizeof *v);
  Onnx__TypeProto *type = ex_alloc (e, sizeof *type);
  Onnx__TypeProto__Tensor *tensor = ex_alloc (e, sizeof *tensor);
  Onnx__TensorShapeProto *shape = ex_alloc (e, sizeof *shape);
  gint64 dims[4] = { -1, s->c, s->h, s->w };

  onnx__value_info_proto__init (v);
  onnx__type_proto__init (type);
  onnx__type_proto__tensor__init (tensor);
  onnx__tensor_shape_proto__init (shape);
  shape->n_dim = rank;
  shape->dim = ex_alloc (e, sizeof (*shape->dim) * rank);
  for (guint i = 0; i < rank; i++)
    {
      Onnx__TensorShapeProto__Dimension *d = ex_alloc (e, sizeof *d);
      onnx__tensor_shape_proto__dimension__init (d);
      if (i == 0)
        {
          d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
          d->dim_param = (char *)"batch";
        }
      else
        {
          d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
          d->dim_value = dims[i];
        }
      shape->dim[i] = d;
    }
  tensor->has_elem_type = TRUE;
  tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tensor->shape = shape;
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  type->tensor_type = tensor;
  v->name = (char *)name;
  v->type = type;
  return v;
}

/* protobuf-c's output sink, into a file. */
typedef struct
{
  ProtobufCBuffer base;
  FILE *f;
  gboolean failed;
} FileSink;

static void
file_sink_append (ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
  FileSink *sink = (FileSink *)buffer;

  if (!sink->failed && len > 0 && fwrite (data, 1, len, sink->f) != len)
    sink->failed = TRUE;
}

/* Writes @model next to @path and renames it there, so a failure leaves no half file. */
static gboolean
ex_write (Onnx__ModelProto *model, const char *path, gsize *bytes, GError **error)
{
  g_autofree char *tmp = g_strdup_printf ("%s.partial", path);
  FileSink sink = { { NULL }, NULL, FALSE };
  int saved = 0;

  *bytes = onnx__model_proto__get_packed_size (model);
  if (*bytes > ONNX_MAX_BYTES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "cannot write %s: the model would take %" G_GSIZE_FORMAT
                   " bytes, over protobuf's limit of 2 GiB for one ONNX file",
                   path, *bytes);
      return FALSE;
    }
  if (!(sink.f = g_fopen (tmp, "wb")))
    {
      saved = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write %s: %s", tmp,
                   g_strerror (saved));
      return FALSE;
    }
  sink.base.append = file_sink_append;
  onnx__model_proto__pack_to_buffer (model, &sink.base);
  if (sink.failed)
    saved = errno;
  if (fclose (sink.f) != 0 && !sink.failed)
    {
      sink.failed = TRUE;
      saved = errno;
    }
  if (!sink.failed && g_rename (tmp, path) != 0)
    {
      sink.failed = TRUE;
      saved = errno;
    }
  if (sink.failed)
    {
      g_unlink (tmp);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write %s: %s", path,
                   g_strerror (saved ? saved : EIO));
      return FALSE;
    }
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
  Export e = { 0 };
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
      name = ex_name (&e, "output");
    if (r == 4 && last->out_shape.h == 1 && last->out_shape.w == 1)
      r = (ex_to2 (&e, e.value[last->index], r, name), 2);
    else
      ex_op (&e, "Identity", name, e.value[last->index], NULL);
    output = ex_value_info (&e, name, &last->out_shape, r);
  }
  input = ex_value_info (&e, first->name, &first->out_shape, e.rank[0]);

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
  if (!ex_write (&m, path, &bytes, error))
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
