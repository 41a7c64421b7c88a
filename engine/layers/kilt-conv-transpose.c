/* Conv2DTranspose: the data gradient of a convolution, run forward. NCHW, Keras' same/valid
 * padding and output sizes (output_padding None), bias and a fused activation. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-conv-transpose"

#include "kilt-layer.h"
#include "kilt-gemm.h"

/* A transposed convolution from (Cin, H, W) to (F, OH, OW) is what a convolution from
 * (F, OH, OW) to (Cin, H, W) with the same kernel, strides and padding does to its gradient.
 * So it reuses Conv2D's kernels (kernels/conv.cl) with that convolution's geometry:
 * forward    col (K x nb P) = W^T x, then col2im onto the output (K = F kh kw, P = H W);
 * backward   the column matrix of dz (im2col), then dW = x col^T and dx = W col.
 * The weights are (Cin, F, kh, kw), row-major: Keras' (kh, kw, F, Cin) kernel with the
 * convolution's filters first, as Conv2D keeps (F, C, kh, kw). */

/* Floats of column matrix + gathered input per chunk of the batch, as Conv2D caps them. */
#define CONVT_CHUNK_MIN ((gsize)1 << 25)
#define CONVT_CHUNK_MAX ((gsize)1 << 28)
#define CONVT_CHUNK_CPU ((gsize)1 << 19)

typedef struct
{
  guint Cin, H, W; /* input */
  guint F, OH, OW; /* output */
  guint kh, kw, sh, sw;
  guint pt, pl;   /* the padding of the convolution from the output back to the input */
  gsize K, P, OP; /* F kh kw; H W; OH OW */
} ConvtGeom;

/* Keras' deconv_output_length without output_padding: same -> in * s; valid ->
 * in * s + max (k - s, 0). The padding is then that of the convolution from the output size
 * back to the input, as TensorFlow's conv2d_transpose has it (total max ((in - 1) s + k - out,
 * 0), the odd pixel after). */
static guint
convt_out_dim (guint in, guint k, guint s, gboolean same)
{
  guint64 o = (guint64)in * s + (same ? 0 : (k > s ? k - s : 0));

  return o > G_MAXUINT32 / 2 ? 0 : (guint)o;
}

static void
convt_geom (const KiltNode *node, ConvtGeom *g)
{
  const KiltShape *in = &node->in_shape[0];
  guint back;

  g->Cin = in->c;
  g->H = in->h;
  g->W = in->w;
  g->F = node->cfg.units;
  g->kh = node->cfg.kh;
  g->kw = node->cfg.kw;
  g->sh = node->cfg.sh;
  g->sw = node->cfg.sw;
  g->OH = convt_out_dim (g->H, g->kh, g->sh, node->cfg.same);
  g->OW = convt_out_dim (g->W, g->kw, g->sw, node->cfg.same);
  kilt_layer_out_dim (g->OH, g->kh, g->sh, node->cfg.same, &back, &g->pt);
  kilt_layer_out_dim (g->OW, g->kw, g->sw, node->cfg.same, &back, &g->pl);
  g->K = (gsize)g->F * g->kh * g->kw;
  g->P = (gsize)g->H * g->W;
  g->OP = (gsize)g->OH * g->OW;
}

static gboolean
convt_infer (KiltNode *node, GError **error)
{
  const KiltLayerConfig *cfg = &node->cfg;
  const KiltShape *in = &node->in_shape[0];
  ConvtGeom g = { 0 };

  if (cfg->units == 0)
    {
      kilt_layer_set_error (error, node, "filters must be at least 1");
      return FALSE;
    }
  if (cfg->kh == 0 || cfg->kw == 0 || cfg->sh == 0 || cfg->sw == 0 || cfg->kh > 1024
      || cfg->kw > 1024 || cfg->sh > 1024 || cfg->sw > 1024)
    {
      kilt_layer_set_error (error, node, "kernel %ux%u and strides %ux%u must be 1 to 1024",
                            cfg->kh, cfg->kw, cfg->sh, cfg->sw);
      return FALSE;
    }
  if (in->c == 0 || in->h == 0 || in->w == 0)
    {
      kilt_layer_set_error (error, node, "input %ux%ux%u is empty", in->h, in->w, in->c);
      return FALSE;
    }
  if (!kilt_activation_fusable (cfg->activation) || cfg->activation == KILT_ACT_SOFTMAX)
    {
      kilt_layer_set_error (error, node,
                            "activation %s is not one Conv2DTranspose applies itself (linear, "
                            "relu, leaky_relu, sigmoid, tanh); add an Activation layer after it",
                            kilt_activation_name (cfg->activation));
      return FALSE;
    }
  convt_geom (node, &g);
  if (g.OH == 0 || g.OW == 0 || (guint64)g.K * MAX (g.P, g.Cin) > G_MAXUINT32 / 2
      || (guint64)g.F * g.OP > G_MAXUINT32 / 2)
    {
      kilt_layer_set_error (error, node,
                            "too large: %ux%ux%u to %u filters of %ux%u, strides %ux%u", in->h,
                            in->w, in->c, cfg->units, cfg->kh, cfg->kw, cfg->sh, cfg->sw);
      return FALSE;
    }
  node->out_shape = (KiltShape){ g.F, g.OH, g.OW };
  node->n_params = g.Cin * g.K + (cfg->use_bias ? g.F : 0);
  return TRUE;
}

static void
convt_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  ConvtGeom g = { 0 };

  convt_geom (node, &g);
  /* Keras' fans of a (kh, kw, F, Cin) kernel: F kh kw in, Cin kh kw out. */
  kilt_layer_init_weights (params, g.Cin * g.K, &node->cfg, (guint)g.K, g.Cin * g.kh * g.kw, rng);
  if (node->cfg.use_bias)
    for (guint f = 0; f < g.F; f++)
      params[g.Cin * g.K + f] = 0.0f;
}

static guint64
convt_flops (const KiltNode *node)
{
  ConvtGeom g = { 0 };

  convt_geom (node, &g);
  return 2ull * g.Cin * g.K * g.P;
}

static guint
convt_chunk (const ConvtGeom *g, guint batch, const KiltDeviceInfo *info)
{
  gsize per = (g->K + g->Cin) * g->P;
  gsize cap = CLAMP (info->max_alloc / sizeof (float) / 4, CONVT_CHUNK_MIN, CONVT_CHUNK_MAX);
  gsize nb = cap / MAX (per, 1);
  const char *e = g_getenv ("KILT_CONV_CHUNK");
  gint64 forced = e ? g_ascii_strtoll (e, NULL, 10) : 0;

  if (info->type && g_str_equal (info->type, "CPU"))
    nb = MIN (nb, CONVT_CHUNK_CPU / MAX (g->K * g->P, 1));
  if (forced > 0)
    nb = MIN (nb, (gsize)forced);
  return (guint)CLAMP (nb, 1, MAX (batch, 1));
}

static gsize
convt_workspace_floats (const KiltNode *node, guint batch, const KiltDeviceInfo *info)
{
  ConvtGeom g = { 0 };

  convt_geom (node, &g);
  return (g.K + g.Cin) * convt_chunk (&g, batch, info) * g.P;
}

/* ---- device ----------------------------------------------------------------------------- */

/* The convolution's geometry as im2col and col2im take it (kernels/conv.cl), from argument
 * @first on: b0, nb, C, H, W, kh, kw, sh, sw, pt, pl, OH, OW, then (after the kernel's ones
 * or beta) the dilation, 1. */
static cl_int
convt_geom_args (cl_kernel k, guint first, const ConvtGeom *g, guint b0, guint nb)
{
  const cl_uint v[]
      = { b0, nb, g->F, g->OH, g->OW, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->H, g->W };
  const cl_uint one = 1;
  cl_int err = CL_SUCCESS;

  for (guint i = 0; i < G_N_ELEMENTS (v); i++)
    KILT_ARG (k, first + i, v[i], err);
  KILT_ARG (k, first + G_N_ELEMENTS (v) + 1, one, err);
  KILT_ARG (k, first + G_N_ELEMENTS (v) + 2, one, err);
  return err;
}

static gboolean
convt_rows (const KiltDeviceInfo *info)
{
  return kilt_layer_use_rows (info, "KILT_CONV_IM2COL");
}

/* The column matrix of dz (F x OH x OW per sample) for samples b0 .. b0 + nb at 0. */
static gboolean
convt_im2col (KiltExec *ex, const ConvtGeom *g, cl_mem x, guint b0, guint nb, GError **error)
{
  gboolean rows = convt_rows (ex->ctx->info);
  cl_kernel k
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_im2col_rows" : "kilt_conv_im2col", error);
  cl_int err = CL_SUCCESS, ones = 0;
  cl_uint zero = 0;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, ex->workspace, err);
  KILT_ARG (k, 1, zero, err);
  KILT_ARG (k, 2, x, err);
  err |= convt_geom_args (k, 3, g, b0, nb);
  KILT_ARG (k, 16, ones, err);
  g_assert (err == CL_SUCCESS);
  if (rows)
    return kilt_layer_launch3 (ex, k, g->K, nb, 1, error);
  return kilt_layer_launch3 (ex, k, g->W, g->H, (gsize)g->F * nb, error);
}

/* out (samples b0 .. b0 + nb) = the column matrix at 0 gathered onto (F, OH, OW). */
static gboolean
convt_col2im (KiltExec *ex, const ConvtGeom *g, cl_mem out, guint b0, guint nb, GError **error)
{
  gboolean rows = convt_rows (ex->ctx->info);
  cl_kernel k
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_col2im_rows" : "kilt_conv_col2im", error);
  cl_int err = CL_SUCCESS;
  cl_uint zero = 0;
  float beta = 0.0f;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, out, err);
  KILT_ARG (k, 1, ex->workspace, err);
  KILT_ARG (k, 2, zero, err);
  err |= convt_geom_args (k, 3, g, b0, nb);
  KILT_ARG (k, 16, beta, err);
  g_assert (err == CL_SUCCESS);
  if (rows)
    return kilt_layer_launch3 (ex, k, g->OH, g->F, nb, error);
  return kilt_layer_launch3 (ex, k, g->OW, g->OH, (gsize)g->F * nb, error);
}

/* The input of samples b0 .. b0 + nb as a (Cin, nb P) matrix at @off in the workspace. */
static gboolean
convt_gather_input (KiltExec *ex, const ConvtGeom *g, cl_mem x, guint b0, guint nb, gsize off,
                    GError **error)
{
  gboolean rows = convt_rows (ex->ctx->info);
  cl_kernel k
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_gather_rows" : "kilt_conv_gather", error);
  cl_uint dz_off = (cl_uint)off, C = g->Cin, P = (cl_uint)g->P;
  cl_int act = KILT_ACT_LINEAR, err = CL_SUCCESS;
  float alpha = 0.0f;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, ex->workspace, err);
  KILT_ARG (k, 1, dz_off, err);
  KILT_ARG (k, 2, x, err);
  KILT_ARG (k, 3, x, err);
  KILT_ARG (k, 4, b0, err);
  KILT_ARG (k, 5, nb, err);
  KILT_ARG (k, 6, C, err);
  KILT_ARG (k, 7, P, err);
  KILT_ARG (k, 8, act, err);
  KILT_ARG (k, 9, alpha, err);
  g_assert (err == CL_SUCCESS);
  if (rows)
    return kilt_layer_launch3 (ex, k, g->Cin, nb, 1, error);
  return kilt_layer_launch3 (ex, k, g->P, g->Cin, nb, error);
}

/* dst (samples b0 .. b0 + nb, NCHW) = beta dst + the (Cin, nb P) matrix at @off. */
static gboolean
convt_ungather (KiltExec *ex, const ConvtGeom *g, cl_mem dst, guint b0, guint nb, gsize off,
                float beta, GError **error)
{
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_conv_ungather", error);
  cl_uint src_off = (cl_uint)off, C = g->Cin, P = (cl_uint)g->P;
  cl_int err = CL_SUCCESS;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, ex->workspace, err);
  KILT_ARG (k, 2, src_off, err);
  KILT_ARG (k, 3, b0, err);
  KILT_ARG (k, 4, nb, err);
  KILT_ARG (k, 5, C, err);
  KILT_ARG (k, 6, P, err);
  KILT_ARG (k, 7, beta, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, g->P, g->Cin, nb, error);
}

static gboolean
convt_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  ConvtGeom g = { 0 };
  guint chunk;

  convt_geom (node, &g);
  chunk = convt_chunk (&g, ex->batch, ex->ctx->info);
  for (guint b0 = 0; b0 < ex->batch; b0 += chunk)
    {
      guint nb = MIN (chunk, ex->batch - b0);
      gsize np = (gsize)nb * g.P, x_off = g.K * np;

      /* col (K x np) = W^T x, then each column's taps added onto the output. */
      if (!convt_gather_input (ex, &g, src->out, b0, nb, x_off, error)
          || !kilt_gemm (ex->ctx, TRUE, FALSE, g.K, np, g.Cin, 1.0f, ex->params, node->param_offset,
                         g.K, ex->workspace, x_off, np, 0.0f, ex->workspace, 0, np, error)
          || !convt_col2im (ex, &g, node->out, b0, nb, error))
        return FALSE;
    }
  return kilt_layer_bias_act (ex, node->out, node->param_offset + g.Cin * g.K, node->cfg.use_bias,
                              g.F, (guint)g.OP, kilt_node_act (node), kilt_node_alpha (node),
                              error);
}

static gboolean
convt_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  ConvtGeom g = { 0 };
  guint chunk;

  convt_geom (node, &g);
  chunk = convt_chunk (&g, ex->batch, ex->ctx->info);
  /* dz in place of dout, then the bias gradient over it. */
  if (!kilt_layer_act_backward (ex, node, kilt_node_act (node), kilt_node_alpha (node), g.F,
                                (guint)g.OP, error)
      || (node->cfg.use_bias && !node->frozen
          && !kilt_layer_bias_grad (ex, node->dout, node->grad_offset + g.Cin * g.K, g.F,
                                    (guint)g.OP, error)))
    return FALSE;
  for (guint b0 = 0; b0 < ex->batch; b0 += chunk)
    {
      guint nb = MIN (chunk, ex->batch - b0);
      gsize np = (gsize)nb * g.P, x_off = g.K * np;

      /* dW (Cin x K) (+)= x col(dz)^T over the chunk (not when frozen; dx needs col(dz)). */
      if (!convt_im2col (ex, &g, node->dout, b0, nb, error)
          || (!node->frozen
              && (!convt_gather_input (ex, &g, src->out, b0, nb, x_off, error)
                  || !kilt_gemm (ex->ctx, FALSE, TRUE, g.Cin, g.K, np, 1.0f, ex->workspace, x_off,
                                 np, ex->workspace, 0, np, b0 > 0 ? 1.0f : 0.0f, ex->grads,
                                 node->grad_offset, g.K, error))))
        return FALSE;
      if (!node->din_needed[0])
        continue;
      /* dx = W col(dz), the convolution's forward pass, over the gathered input's place. */
      if (!kilt_gemm (ex->ctx, FALSE, FALSE, g.Cin, np, g.K, 1.0f, ex->params, node->param_offset,
                      g.K, ex->workspace, 0, np, 0.0f, ex->workspace, x_off, np, error)
          || !convt_ungather (ex, &g, src->dout, b0, nb, x_off, node->din_beta[0], error))
        return FALSE;
    }
  return TRUE;
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

/* Where input (y, x) lands through tap (i, j): output (y sh + i - pt, x sw + j - pl), or
 * G_MAXSIZE outside the output. */
static inline gsize
ref_dst (const ConvtGeom *g, guint b, guint f, guint y, guint x, guint i, guint j)
{
  gint64 oy = (gint64)y * g->sh + i - g->pt, ox = (gint64)x * g->sw + j - g->pl;

  if (oy < 0 || oy >= g->OH || ox < 0 || ox >= g->OW)
    return G_MAXSIZE;
  return (((gsize)b * g->F + f) * g->OH + (gsize)oy) * g->OW + (gsize)ox;
}

static void
convt_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                   const double *const *in, const double *params, double *state, double *out)
{
  ConvtGeom g = { 0 };

  convt_geom (node, &g);
  for (guint b = 0; b < batch; b++)
    for (guint f = 0; f < g.F; f++)
      for (gsize p = 0; p < g.OP; p++)
        out[((gsize)b * g.F + f) * g.OP + p] = node->cfg.use_bias ? params[g.Cin * g.K + f] : 0.0;
  for (guint b = 0; b < batch; b++)
    for (guint c = 0; c < g.Cin; c++)
      for (guint y = 0; y < g.H; y++)
        for (guint x = 0; x < g.W; x++)
          {
            double v = in[0][(((gsize)b * g.Cin + c) * g.H + y) * g.W + x];
            for (guint f = 0; f < g.F; f++)
              for (guint i = 0; i < g.kh; i++)
                for (guint j = 0; j < g.kw; j++)
                  {
                    gsize o = ref_dst (&g, b, f, y, x, i, j);
                    if (o != G_MAXSIZE)
                      out[o] += v * params[c * g.K + (f * g.kh + i) * g.kw + j];
                  }
          }
  kilt_ref_activate (out, batch, g.F, g.OP, node->cfg.activation, node->cfg.alpha);
}

static void
convt_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                    const double *const *in, const double *params, const double *state,
                    const double *out, const double *dout, double **din, double *dparams)
{
  ConvtGeom g = { 0 };
  g_autofree double *dz = NULL;

  convt_geom (node, &g);
  dz = g_new (double, (gsize)batch *g.F *g.OP);
  kilt_ref_act_backward (dz, dout, out, batch, g.F, g.OP, node->cfg.activation, node->cfg.alpha);
  for (gsize i = 0; i < node->n_params; i++)
    dparams[i] = 0.0;
  if (node->cfg.use_bias)
    for (guint b = 0; b < batch; b++)
      for (guint f = 0; f < g.F; f++)
        for (gsize p = 0; p < g.OP; p++)
          dparams[g.Cin * g.K + f] += dz[((gsize)b * g.F + f) * g.OP + p];
  for (guint b = 0; b < batch; b++)
    for (guint c = 0; c < g.Cin; c++)
      for (guint y = 0; y < g.H; y++)
        for (guint x = 0; x < g.W; x++)
          {
            gsize xi = (((gsize)b * g.Cin + c) * g.H + y) * g.W + x;
            double v = in[0][xi], acc = 0.0;
            for (guint f = 0; f < g.F; f++)
              for (guint i = 0; i < g.kh; i++)
                for (guint j = 0; j < g.kw; j++)
                  {
                    gsize o = ref_dst (&g, b, f, y, x, i, j),
                          w = c * g.K + (f * g.kh + i) * g.kw + j;
                    if (o == G_MAXSIZE)
                      continue;
                    dparams[w] += v * dz[o];
                    acc += params[w] * dz[o];
                  }
            if (din[0])
              din[0][xi] = acc;
          }
}

const KiltLayerClass kilt_conv2d_transpose_class = {
  .type = KILT_LAYER_CONV2D_TRANSPOSE,
  .name = "Conv2DTranspose",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = convt_infer,
  .init = convt_init,
  .flops = convt_flops,
  .workspace_floats = convt_workspace_floats,
  .forward = convt_forward,
  .backward = convt_backward,
  .ref_forward = convt_ref_forward,
  .ref_backward = convt_ref_backward,
};
