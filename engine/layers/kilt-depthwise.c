/* DepthwiseConv2D: per-channel convolution with depth_multiplier filters per input channel,
 * strides, same/valid padding and dilation; bias and activation as Conv2D applies them. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <string.h>

/* Parameters: w[C][dm][kh][kw], then (use_bias) b[C dm]. Output channel c dm + m. */
typedef struct
{
  guint c, dm, ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, pad_t, pad_l;
} DwGeom;

static guint
dil (guint d)
{
  return d ? d : 1;
}

static gboolean
dw_geom (const KiltNode *node, DwGeom *g)
{
  const KiltLayerConfig *cfg = &node->cfg;
  const KiltShape *in = &node->in_shape[0];

  *g = (DwGeom){ in->c,
                 cfg->units,
                 in->h,
                 in->w,
                 0,
                 0,
                 cfg->kh,
                 cfg->kw,
                 cfg->sh,
                 cfg->sw,
                 dil (cfg->dil_h),
                 dil (cfg->dil_w),
                 0,
                 0 };
  if (g->kh == 0 || g->kw == 0 || g->sh == 0 || g->sw == 0)
    return FALSE;
  return kilt_layer_out_dim (g->ih, (g->kh - 1) * g->dh + 1, g->sh, cfg->same, &g->oh, &g->pad_t)
         && kilt_layer_out_dim (g->iw, (g->kw - 1) * g->dw + 1, g->sw, cfg->same, &g->ow,
                                &g->pad_l);
}

static gboolean
dw_infer (KiltNode *node, GError **error)
{
  const KiltLayerConfig *cfg = &node->cfg;
  DwGeom g;

  if (cfg->units == 0 || cfg->units > 4096)
    {
      kilt_layer_set_error (error, node, "depth_multiplier must be from 1 to 4096, got %u",
                            cfg->units);
      return FALSE;
    }
  if (cfg->dil_h > 1024 || cfg->dil_w > 1024 || cfg->kh > 1024 || cfg->kw > 1024)
    {
      kilt_layer_set_error (error, node, "kernel %ux%u or dilation %ux%u is over 1024", cfg->kh,
                            cfg->kw, cfg->dil_h, cfg->dil_w);
      return FALSE;
    }
  if (!kilt_activation_fusable (cfg->activation) || cfg->activation == KILT_ACT_SOFTMAX)
    {
      kilt_layer_set_error (error, node,
                            "activation %s is not one DepthwiseConv2D applies itself (linear, "
                            "relu, leaky_relu, sigmoid, tanh); add an Activation layer after it",
                            kilt_activation_name (cfg->activation));
      return FALSE;
    }
  if ((cfg->dil_h > 1 && cfg->sh > 1) || (cfg->dil_w > 1 && cfg->sw > 1))
    {
      kilt_layer_set_error (error, node,
                            "strides %ux%u with dilation_rate %ux%u: Keras allows one of them "
                            "above 1, not both",
                            cfg->sh, cfg->sw, cfg->dil_h, cfg->dil_w);
      return FALSE;
    }
  if (!dw_geom (node, &g))
    {
      kilt_layer_set_error (error, node,
                            "a %ux%u kernel (dilation %ux%u, strides %ux%u) does not fit a %ux%u "
                            "input",
                            cfg->kh, cfg->kw, dil (cfg->dil_h), dil (cfg->dil_w), cfg->sh, cfg->sw,
                            node->in_shape[0].h, node->in_shape[0].w);
      return FALSE;
    }
  node->out_shape = (KiltShape){ g.c * g.dm, g.oh, g.ow };
  node->n_params = (gsize)g.c * g.dm * g.kh * g.kw + (cfg->use_bias ? (gsize)g.c * g.dm : 0);
  return TRUE;
}

static void
dw_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  DwGeom g;
  gsize n;

  dw_geom (node, &g);
  n = (gsize)g.c * g.dm * g.kh * g.kw;
  /* Keras' fans for a (kh, kw, C, dm) kernel. */
  kilt_layer_init_weights (params, n, &node->cfg, g.kh * g.kw * g.c, g.kh * g.kw * g.dm, rng);
  if (node->cfg.use_bias)
    memset (params + n, 0, sizeof (float) * g.c * g.dm);
}

static guint64
dw_flops (const KiltNode *node)
{
  DwGeom g;

  dw_geom (node, &g);
  return 2ull * g.c * g.dm * g.oh * g.ow * g.kh * g.kw;
}

/* Arguments 4 to 17 shared by the kernels, from @first on: C, dm, ih, iw, oh, ow, kh, kw, sh,
 * sw, dh, dw, pad_t, pad_l. */
static cl_int
dw_geom_args (cl_kernel k, cl_uint first, const DwGeom *g)
{
  const guint v[] = { g->c,  g->dm, g->ih, g->iw, g->oh, g->ow,    g->kh,
                      g->kw, g->sh, g->sw, g->dh, g->dw, g->pad_t, g->pad_l };
  cl_int err = CL_SUCCESS;

  for (guint i = 0; i < G_N_ELEMENTS (v); i++)
    {
      cl_uint x = v[i];
      err |= clSetKernelArg (k, first + i, sizeof x, &x);
    }
  return err;
}

static gboolean
dw_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_dw_forward", error);
  cl_uint w_off = (cl_uint)node->param_offset, planes;
  cl_int err = CL_SUCCESS;
  DwGeom g;

  if (!k)
    return FALSE;
  dw_geom (node, &g);
  planes = ex->batch * g.c * g.dm;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, ex->params, err);
  KILT_ARG (k, 3, w_off, err);
  err |= dw_geom_args (k, 4, &g);
  KILT_ARG (k, 18, planes, err);
  g_assert (err == CL_SUCCESS);
  if (!kilt_layer_launch3 (ex, k, g.ow, g.oh, planes, error))
    return FALSE;
  return kilt_layer_bias_act (ex, node->out, node->param_offset + (gsize)g.c * g.dm * g.kh * g.kw,
                              node->cfg.use_bias, g.c * g.dm, g.oh * g.ow, kilt_node_act (node),
                              kilt_node_alpha (node), error);
}

static gboolean
dw_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_uint w_off = (cl_uint)node->param_offset, batch = ex->batch, planes;
  cl_int err = CL_SUCCESS;
  gsize nw;
  cl_kernel k;
  DwGeom g;

  dw_geom (node, &g);
  nw = (gsize)g.c * g.dm * g.kh * g.kw;
  if (!kilt_layer_act_backward (ex, node, kilt_node_act (node), kilt_node_alpha (node), g.c * g.dm,
                                g.oh * g.ow, error))
    return FALSE;
  if (!node->frozen)
    {
      cl_uint g_off = (cl_uint)node->grad_offset;
      if (node->cfg.use_bias
          && !kilt_layer_bias_grad (ex, node->dout, node->grad_offset + nw, g.c * g.dm, g.oh * g.ow,
                                    error))
        return FALSE;
      if (!(k = kilt_context_kernel (ex->ctx, "kilt_dw_backward_weight", error)))
        return FALSE;
      KILT_ARG (k, 0, ex->grads, err);
      KILT_ARG (k, 1, g_off, err);
      KILT_ARG (k, 2, node->dout, err);
      KILT_ARG (k, 3, src->out, err);
      KILT_ARG (k, 4, batch, err);
      err |= dw_geom_args (k, 5, &g);
      g_assert (err == CL_SUCCESS);
      {
        /* A group of KILT_DW_GROUP (depthwise.cl) per weight. */
        size_t global = nw * 128, local = 128;
        if (!kilt_context_launch (ex->ctx, k, 1, &global, &local, error))
          return FALSE;
      }
    }
  if (!node->din_needed[0])
    return TRUE;
  if (!(k = kilt_context_kernel (ex->ctx, "kilt_dw_backward_input", error)))
    return FALSE;
  planes = ex->batch * g.c;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, ex->params, err);
  KILT_ARG (k, 3, w_off, err);
  err |= dw_geom_args (k, 4, &g);
  KILT_ARG (k, 18, planes, err);
  KILT_ARG (k, 19, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, g.iw, g.ih, planes, error);
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

/* Calls @fn for every (b, c, m, oy, ox, ky, kx) whose input pixel lies inside. */
#define DW_FOR_EACH(g, batch, body)                                                                \
  for (guint b = 0; b < (batch); b++)                                                              \
    for (guint c = 0; c < (g).c; c++)                                                              \
      for (guint m = 0; m < (g).dm; m++)                                                           \
        for (guint oy = 0; oy < (g).oh; oy++)                                                      \
          for (guint ox = 0; ox < (g).ow; ox++)                                                    \
            for (guint ky = 0; ky < (g).kh; ky++)                                                  \
              for (guint kx = 0; kx < (g).kw; kx++)                                                \
                {                                                                                  \
                  int iy = (int)(oy * (g).sh + ky * (g).dh) - (int)(g).pad_t;                      \
                  int ix = (int)(ox * (g).sw + kx * (g).dw) - (int)(g).pad_l;                      \
                  gsize o = (gsize)c * (g).dm + m;                                                 \
                  gsize xi = (((gsize)b * (g).c + c) * (g).ih + iy) * (g).iw + ix;                 \
                  gsize yi = (((gsize)b * (g).c * (g).dm + o) * (g).oh + oy) * (g).ow + ox;        \
                  gsize wi = (o * (g).kh + ky) * (g).kw + kx;                                      \
                  if (iy < 0 || ix < 0 || iy >= (int)(g).ih || ix >= (int)(g).iw)                  \
                    continue;                                                                      \
                  body;                                                                            \
                }

static void
dw_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                const double *const *in, const double *params, double *state, double *out)
{
  DwGeom g;
  gsize n_out, nw, sp;

  dw_geom (node, &g);
  sp = (gsize)g.oh * g.ow;
  n_out = (gsize)batch * g.c * g.dm * sp;
  nw = (gsize)g.c * g.dm * g.kh * g.kw;
  for (gsize i = 0; i < n_out; i++)
    out[i] = node->cfg.use_bias ? params[nw + (i / sp) % (g.c * g.dm)] : 0.0;
  DW_FOR_EACH (g, batch, out[yi] += in[0][xi] * params[wi]);
  kilt_ref_activate (out, batch, g.c * g.dm, sp, node->cfg.activation, node->cfg.alpha);
}

static void
dw_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                 const double *const *in, const double *params, const double *state,
                 const double *out, const double *dout, double **din, double *dparams)
{
  DwGeom g;
  gsize n_out, nw, sp;
  g_autofree double *dz = NULL;

  dw_geom (node, &g);
  sp = (gsize)g.oh * g.ow;
  n_out = (gsize)batch * g.c * g.dm * sp;
  nw = (gsize)g.c * g.dm * g.kh * g.kw;
  dz = g_new (double, n_out);
  kilt_ref_act_backward (dz, dout, out, batch, g.c * g.dm, sp, node->cfg.activation,
                         node->cfg.alpha);
  memset (dparams, 0, sizeof (double) * node->n_params);
  if (node->cfg.use_bias)
    for (gsize i = 0; i < n_out; i++)
      dparams[nw + (i / sp) % (g.c * g.dm)] += dz[i];
  if (din[0])
    memset (din[0], 0, sizeof (double) * batch * kilt_shape_size (&node->in_shape[0]));
  DW_FOR_EACH (g, batch, {
    dparams[wi] += dz[yi] * in[0][xi];
    if (din[0])
      din[0][xi] += dz[yi] * params[wi];
  });
}

const KiltLayerClass kilt_depthwise_conv2d_class = {
  .type = KILT_LAYER_DEPTHWISE_CONV2D,
  .name = "DepthwiseConv2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = dw_infer,
  .init = dw_init,
  .flops = dw_flops,
  .forward = dw_forward,
  .backward = dw_backward,
  .ref_forward = dw_ref_forward,
  .ref_backward = dw_ref_backward,
};
