/* Conv2D: im2col over a chunk of the batch + one CLBlast GEMM, NCHW, Keras' same/valid padding. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-conv2d"

#include "kilt-layer.h"
#include "kilt-gemm.h"
#include "kilt-gemm-tf32.h"

/* At most this many floats of column matrix + GEMM output per chunk of the batch on a GPU: a
 * quarter of the device's largest allocation, within 128 MiB .. 1 GiB. Bigger batches are
 * processed in several chunks, each still one large GEMM. With a fixed 128 MiB, cifar10_cnn's
 * second convolution ran at batch 256 as chunks of 116, 116 and 24 samples. */
#define CONV_CHUNK_MIN ((gsize)1 << 25)
#define CONV_CHUNK_MAX ((gsize)1 << 28)
/* On CPU devices, at most this many floats of column matrix per chunk (2 MiB). */
#define CONV_CHUNK_CPU ((gsize)1 << 19)
/* Split-K of the weight gradient: at most this many partial products, and only for weight
 * matrices small enough that CLBlast would run them on a handful of work-groups. */
#define CONV_SPLIT_MAX 256
/* The split-K parts of one layer's weight gradient share a workspace of at most this many
 * floats (64 MiB): VGG16's 128 x 576 gradients of block 2 get 29 parts on an H200, its
 * 512 x 4608 ones of block 5 up to 7. */
#define CONV_SPLIT_MAX_FLOATS ((gsize)1 << 24)
#define CONV_SPLIT_MIN_INNER  256
/* The direct convolution of CPU devices (kernels/conv-cpu.cl) pads at most this many floats
 * of input at a time (8 MiB): a chunk of samples, like im2col's. */
#define CONV_DIRECT_CPU ((gsize)1 << 21)

typedef struct
{
  guint C, H, W, F, kh, kw, sh, sw, pt, pl, OH, OW;
  guint dh, dw; /* dilation_rate: tap (i, j) reads input (y + i dh, x + j dw) */
  guint G;      /* groups: filter f sees the C / G channels of its group, f / (F / G) */
  gsize K, P;
  gsize Kc; /* rows of the column matrix: K, plus a row of ones for the bias gradient */
  gsize Kg; /* weights per filter: K / G, rows (cg, i, j) of its group's part of the column */
  guint Fg; /* filters per group */
} ConvGeom;

static inline guint
conv_one (guint v)
{
  return MAX (v, 1);
}

/* Dilation or groups: the im2col path with a GEMM per group, the implicit-GEMM kernels and
 * the split-K weight gradient do not know them. */
static inline gboolean
conv_general (const KiltNode *node)
{
  return node->cfg.dil_h > 1 || node->cfg.dil_w > 1 || node->cfg.groups > 1;
}

static void
conv_geom (const KiltNode *node, ConvGeom *g)
{
  const KiltShape *in = &node->in_shape[0];

  g->C = in->c;
  g->H = in->h;
  g->W = in->w;
  g->F = node->cfg.units;
  g->kh = node->cfg.kh;
  g->kw = node->cfg.kw;
  g->sh = node->cfg.sh;
  g->sw = node->cfg.sw;
  g->dh = conv_one (node->cfg.dil_h);
  g->dw = conv_one (node->cfg.dil_w);
  g->G = conv_one (node->cfg.groups);
  /* A dilated kernel covers (k - 1) d + 1 pixels, which is what padding and output sizes see. */
  kilt_layer_out_dim (g->H, (g->kh - 1) * g->dh + 1, g->sh, node->cfg.same, &g->OH, &g->pt);
  kilt_layer_out_dim (g->W, (g->kw - 1) * g->dw + 1, g->sw, node->cfg.same, &g->OW, &g->pl);
  g->K = (gsize)g->C * g->kh * g->kw;
  g->P = (gsize)g->OH * g->OW;
  g->Kc = g->K + (node->cfg.use_bias ? 1 : 0);
  g->Kg = g->K / g->G;
  g->Fg = g->F / g->G;
}

/* A tuning and test knob from the environment: 0 when unset. Read on each use so that a
 * test can change it between cases. */
static guint
conv_env (const char *name, guint max)
{
  const char *e = g_getenv (name);
  gint64 v = e ? g_ascii_strtoll (e, NULL, 10) : 0;

  return (guint)CLAMP (v, 0, (gint64)max);
}

/* Samples per chunk: on a GPU the whole batch when its column matrix fits the cap, so that
 * each GEMM is as large as can be. On a CPU (PoCL) a chunk whose column matrix stays near
 * the caches: measured with PoCL on 2 cores, cifar10_cnn's second convolution (32x32x32 ->
 * 32, valid) took 447 ms forward + backward at batch 32 in one chunk, 165 ms in chunks of 2.
 * $KILT_CONV_CHUNK caps it further (tests use it to run several chunks). */
static guint
conv_chunk (const ConvGeom *g, guint batch, const KiltDeviceInfo *info)
{
  gsize per = (g->Kc + g->F) * g->P;
  gsize cap = CLAMP (info->max_alloc / sizeof (float) / 4, CONV_CHUNK_MIN, CONV_CHUNK_MAX);
  gsize nb = cap / MAX (per, 1);
  guint forced = conv_env ("KILT_CONV_CHUNK", G_MAXUINT32 / 2);

  if (info->type && g_str_equal (info->type, "CPU"))
    nb = MIN (nb, CONV_CHUNK_CPU / MAX (g->Kc * g->P, 1));
  if (forced > 0)
    nb = MIN (nb, forced);
  return (guint)CLAMP (nb, 1, MAX (batch, 1));
}

/* How many weight-gradient parts of this layer the workspace may hold (1: no split). It was
 * a flat 2^16 floats of weights, so every layer of VGG16 from block 2 on ran its gradient as
 * one GEMM of 18 to 576 tiles with an inner dimension of 10^4 to 10^5: 2.4 TFLOP/s on an H200
 * for block 2, whose 12 ms were half of the step's weight gradients. */
static gsize
conv_part_room (const ConvGeom *g)
{
  return CONV_SPLIT_MAX_FLOATS / MAX (g->F * g->Kc, 1);
}

static gboolean
conv_may_split (const ConvGeom *g)
{
  return conv_part_room (g) >= 2;
}

/* The most split-K parts a device gets: four per compute unit, within CONV_SPLIT_MAX. A small
 * weight matrix (cifar10_cnn's first convolution: 32 x 28) is one or two GEMM tiles, so a GPU
 * needs hundreds of parts to be busy; a 2-core CPU needs eight. */
static guint
conv_split_cap (const KiltDeviceInfo *info)
{
  return (guint)CLAMP (4 * (gsize)MAX (info->compute_units, 1), 1, CONV_SPLIT_MAX);
}

/* How many split-K parts for a weight gradient with inner dimension @np on this device:
 * enough work-groups (CLBlast tiles C in blocks of about 64 x 64) to give each compute unit
 * a few, while every part keeps a long inner loop. $KILT_CONV_SPLIT overrides, for tuning. */
static guint
conv_splits (const ConvGeom *g, gsize np, const KiltDeviceInfo *info)
{
  guint forced = conv_env ("KILT_CONV_SPLIT", CONV_SPLIT_MAX);
  gsize tiles, want;

  if (!conv_may_split (g))
    return 1;
  if (forced > 0)
    return (guint)MIN (MIN ((gsize)forced, MAX (np, 1)), conv_part_room (g));
  tiles = ((g->F + 63) / 64) * ((g->Kc + 63) / 64);
  want = 4 * (gsize)MAX (info->compute_units, 1) / tiles;
  want = CLAMP (MIN (MIN (want, np / CONV_SPLIT_MIN_INNER), conv_part_room (g)), 1,
                conv_split_cap (info));
  /* Parts that divide np save the extra GEMM call for the remainder (about as long as the
   * batched call itself at these sizes). */
  for (gsize p = want; p > want / 2; p--)
    if (np % p == 0)
      return (guint)p;
  return (guint)want;
}

static gboolean
conv_infer (KiltNode *node, GError **error)
{
  const KiltLayerConfig *cfg = &node->cfg;
  const KiltShape *in = &node->in_shape[0];
  ConvGeom g = { 0 };
  guint oh, ow, pad;

  if (cfg->units == 0)
    {
      kilt_layer_set_error (error, node, "filters must be at least 1");
      return FALSE;
    }
  if (cfg->kh == 0 || cfg->kw == 0 || cfg->sh == 0 || cfg->sw == 0)
    {
      kilt_layer_set_error (error, node, "kernel %ux%u and strides %ux%u must all be at least 1",
                            cfg->kh, cfg->kw, cfg->sh, cfg->sw);
      return FALSE;
    }
  if (in->c == 0 || in->h == 0 || in->w == 0)
    {
      kilt_layer_set_error (error, node, "input %ux%ux%u is empty", in->h, in->w, in->c);
      return FALSE;
    }
  if (cfg->dil_h > 1024 || cfg->dil_w > 1024 || cfg->kh > 1024 || cfg->kw > 1024)
    {
      kilt_layer_set_error (error, node, "kernel %ux%u or dilation %ux%u is over 1024", cfg->kh,
                            cfg->kw, cfg->dil_h, cfg->dil_w);
      return FALSE;
    }
  if ((cfg->dil_h > 1 && cfg->sh > 1) || (cfg->dil_w > 1 && cfg->sw > 1))
    {
      kilt_layer_set_error (error, node,
                            "strides %ux%u with dilation_rate %ux%u: Keras allows one of them "
                            "above 1 per axis, not both",
                            cfg->sh, cfg->sw, cfg->dil_h, cfg->dil_w);
      return FALSE;
    }
  if (cfg->groups > 1 && (in->c % cfg->groups != 0 || cfg->units % cfg->groups != 0))
    {
      kilt_layer_set_error (error, node,
                            "groups = %u must divide both the input's %u channels and the %u "
                            "filters",
                            cfg->groups, in->c, cfg->units);
      return FALSE;
    }
  if (!kilt_activation_fusable (node->cfg.activation))
    {
      kilt_layer_set_error (error, node,
                            "activation %s is not one Conv2D applies itself (linear, relu, "
                            "leaky_relu, sigmoid, tanh); add an Activation layer after it",
                            kilt_activation_name (node->cfg.activation));
      return FALSE;
    }
  if (cfg->activation == KILT_ACT_SOFTMAX)
    {
      kilt_layer_set_error (error, node,
                            "softmax as a Conv2D activation is not supported; "
                            "use a linear Conv2D and a Softmax layer after Flatten");
      return FALSE;
    }
  if (!kilt_layer_out_dim (in->h, (cfg->kh - 1) * conv_one (cfg->dil_h) + 1, cfg->sh, cfg->same,
                           &oh, &pad)
      || !kilt_layer_out_dim (in->w, (cfg->kw - 1) * conv_one (cfg->dil_w) + 1, cfg->sw, cfg->same,
                              &ow, &pad))
    {
      kilt_layer_set_error (error, node,
                            "a %ux%u kernel (dilation %ux%u) with valid padding needs an input of "
                            "at least the size it covers, got %ux%u",
                            cfg->kh, cfg->kw, conv_one (cfg->dil_h), conv_one (cfg->dil_w), in->h,
                            in->w);
      return FALSE;
    }
  conv_geom (node, &g);
  if ((guint64)g.K * MAX (g.P, g.F) > G_MAXUINT32 / 2)
    {
      kilt_layer_set_error (error, node, "too large: %zu x %zu column matrix per sample", g.K, g.P);
      return FALSE;
    }
  node->out_shape = (KiltShape){ g.F, g.OH, g.OW };
  node->n_params = g.F * g.Kg + (cfg->use_bias ? g.F : 0);
  return TRUE;
}

static void
conv_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  ConvGeom g = { 0 };

  conv_geom (node, &g);
  /* Keras' fans of a (kh, kw, C / groups, F) kernel. */
  kilt_layer_init_weights (params, g.F * g.Kg, &node->cfg, (guint)g.Kg, g.F * g.kh * g.kw, rng);
  if (node->cfg.use_bias)
    for (guint f = 0; f < g.F; f++)
      params[g.F * g.Kg + f] = 0.0f;
}

static guint64
conv_flops (const KiltNode *node)
{
  ConvGeom g = { 0 };

  conv_geom (node, &g);
  return 2ull * g.Kg * g.F * g.P;
}

/* The direct convolution's padded planes: Hp rows of Wp floats, every 16-wide tile's vector
 * loads inside them (kernels/conv-cpu.cl), for an output of OH x OW; chunks of samples of at
 * most CONV_DIRECT_CPU floats of C such planes. */
typedef struct
{
  guint Hp, Wp, ntx, chunk;
} ConvPadded;

/* Whether a layer's forward pass convolves directly: CPU devices, stride 1, no dilation or
 * groups; $KILT_CONV_DIRECT=0 turns it off (the im2col path stays tested that way), and
 * =forward keeps the backward pass on im2col's path (col2im of W^T dz, dz col^T). */
static gboolean
conv_direct (const KiltNode *node, const ConvGeom *g, const KiltDeviceInfo *info)
{
  const char *forced = g_getenv ("KILT_CONV_DIRECT");

  if (conv_general (node) || g->sh != 1 || g->sw != 1 || (forced && g_str_equal (forced, "0")))
    return FALSE;
  return info->type && g_str_equal (info->type, "CPU");
}

/* Whether the backward pass convolves directly too (where the forward pass does), for layers
 * of CONV_DIRECT_MIN_CHANNELS input channels or more. The direct weight gradient reads dz once
 * per input channel and kernel row, so on few channels it loses to a GEMM over the small
 * column matrix: cifar10_cnn's first layer (3 channels, 32 filters) took 2.3-2.5 ms backward
 * directly on this 2-core Zen 4, 0.8-1.0 ms by im2col + GEMM; its other layers (32 and 64
 * channels) are faster directly. */
#define CONV_DIRECT_MIN_CHANNELS 8

static gboolean
conv_direct_backward (const KiltNode *node, const ConvGeom *g, const KiltDeviceInfo *info)
{
  const char *forced = g_getenv ("KILT_CONV_DIRECT");

  return conv_direct (node, g, info) && g->C >= CONV_DIRECT_MIN_CHANNELS
         && !(forced && g_str_equal (forced, "forward"));
}

static void
conv_padded (guint C, guint OH, guint OW, guint kh, guint kw, guint batch, ConvPadded *p)
{
  guint forced = conv_env ("KILT_CONV_CHUNK", G_MAXUINT32 / 2);
  gsize nb;

  p->ntx = (OW + 15) / 16;
  p->Wp = p->ntx * 16 + kw - 1;
  p->Hp = OH + kh - 1;
  nb = CONV_DIRECT_CPU / MAX ((gsize)C * p->Hp * p->Wp, 1);

  p->chunk = (guint)CLAMP (forced ? MIN (nb, forced) : nb, 1, MAX (batch, 1));
}

/* The direct backward pass's workspace: the flipped weights (C x F x kh x kw) at its start,
 * rounded to 16 floats, then per chunk of samples the padded planes of the output gradient
 * (@dz: F per sample, for an output of H x W) and of the input (@x: C per sample, as the
 * forward pass pads them), both chunks of dz's @chunk samples. */
static gsize
conv_flip_floats (const ConvGeom *g)
{
  return ((gsize)g->C * g->F * g->kh * g->kw + 15) / 16 * 16;
}

static void
conv_backward_padded (const ConvGeom *g, guint batch, ConvPadded *dz, ConvPadded *x)
{
  guint forced = conv_env ("KILT_CONV_CHUNK", G_MAXUINT32 / 2);
  gsize per, nb;

  conv_padded (g->F, g->H, g->W, g->kh, g->kw, batch, dz);
  conv_padded (g->C, g->OH, g->OW, g->kh, g->kw, batch, x);
  per = (gsize)g->F * dz->Hp * dz->Wp + (gsize)g->C * x->Hp * x->Wp;
  nb = 2 * CONV_DIRECT_CPU / MAX (per, 1);
  dz->chunk = (guint)CLAMP (forced ? MIN (nb, forced) : nb, 1, MAX (batch, 1));
}

static gsize
conv_workspace_floats (const KiltNode *node, guint batch, const KiltDeviceInfo *info)
{
  ConvGeom g = { 0 };
  guint nb;
  gsize ws;

  conv_geom (node, &g);
  nb = conv_chunk (&g, batch, info);
  /* Column matrix, dz (or the forward GEMM's result), then the weight-gradient parts. */
  ws = (g.Kc + g.F) * nb * g.P;
  ws += (conv_may_split (&g)
             ? MIN (MAX (conv_split_cap (info), conv_env ("KILT_CONV_SPLIT", CONV_SPLIT_MAX)),
                    conv_part_room (&g))
             : 1)
        * g.F * g.Kc;
  if (conv_direct (node, &g, info))
    {
      ConvPadded p;
      conv_padded (g.C, g.OH, g.OW, g.kh, g.kw, batch, &p);
      ws = MAX (ws, (gsize)p.chunk * g.C * p.Hp * p.Wp);
    }
  if (conv_direct_backward (node, &g, info))
    {
      ConvPadded dz, x;
      conv_backward_padded (&g, batch, &dz, &x);
      ws = MAX (ws, conv_flip_floats (&g)
                        + (gsize)dz.chunk * (g.F * dz.Hp * dz.Wp + g.C * x.Hp * x.Wp));
    }
  return ws;
}

/* ---- device ----------------------------------------------------------------------------- */

/* The workspace of a chunk of np = nb * P columns: col (Kc x np) at 0, the forward GEMM's
 * result or dz (F x np) after it, then the weight-gradient parts (F x Kc each). */
static inline gsize
ws_dz (const ConvGeom *g, gsize np)
{
  return g->Kc * np;
}

static inline gsize
ws_parts (const ConvGeom *g, gsize np)
{
  return (g->Kc + g->F) * np;
}

/* im2col, col2im, scatter and gather a row per work-item (kernels/conv.cl) on CPU devices,
 * where the element-wise kernels' scattered stores were slower than the GEMMs;
 * $KILT_CONV_IM2COL=rows or items forces one. */
static gboolean
conv_rows (const KiltDeviceInfo *info)
{
  return kilt_layer_use_rows (info, "KILT_CONV_IM2COL");
}

/* The arguments im2col and col2im share, from @first on: b0, nb, then the geometry. */
static cl_int
conv_geom_args (cl_kernel k, guint first, const ConvGeom *g, guint b0, guint nb)
{
  const cl_uint v[]
      = { b0, nb, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->OH, g->OW };
  const cl_uint dil[] = { g->dh, g->dw };
  cl_int err = CL_SUCCESS;

  for (guint i = 0; i < G_N_ELEMENTS (v); i++)
    KILT_ARG (k, first + i, v[i], err);
  /* After the last argument of each kernel (ones, beta). */
  for (guint i = 0; i < G_N_ELEMENTS (dil); i++)
    KILT_ARG (k, first + G_N_ELEMENTS (v) + 1 + i, dil[i], err);
  return err;
}

static gboolean
conv_im2col (KiltExec *ex, const ConvGeom *g, cl_mem x, guint b0, guint nb, GError **error)
{
  gboolean rows = conv_rows (ex->ctx->info);
  cl_kernel k
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_im2col_rows" : "kilt_conv_im2col", error);
  cl_int err = CL_SUCCESS, ones = g->Kc > g->K;
  cl_uint zero = 0;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, ex->workspace, err);
  KILT_ARG (k, 1, zero, err);
  KILT_ARG (k, 2, x, err);
  err |= conv_geom_args (k, 3, g, b0, nb);
  KILT_ARG (k, 16, ones, err);
  g_assert (err == CL_SUCCESS);
  if (rows)
    return kilt_layer_launch3 (ex, k, g->K, nb, 1, error);
  return kilt_layer_launch3 (ex, k, g->OW, g->OH, (gsize)g->C * nb, error);
}

static gboolean
conv_col2im (KiltExec *ex, const ConvGeom *g, cl_mem din, guint b0, guint nb, float beta,
             GError **error)
{
  gboolean rows = conv_rows (ex->ctx->info);
  cl_kernel k
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_col2im_rows" : "kilt_conv_col2im", error);
  cl_int err = CL_SUCCESS;
  cl_uint zero = 0;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, din, err);
  KILT_ARG (k, 1, ex->workspace, err);
  KILT_ARG (k, 2, zero, err);
  err |= conv_geom_args (k, 3, g, b0, nb);
  KILT_ARG (k, 16, beta, err);
  g_assert (err == CL_SUCCESS);
  if (rows)
    return kilt_layer_launch3 (ex, k, g->H, g->C, nb, error);
  return kilt_layer_launch3 (ex, k, g->W, g->H, (gsize)g->C * nb, error);
}

/* The two algorithms (KILT_CONV_ALGO_*): im2col into the workspace + one GEMM per chunk of the
 * batch, or the implicit-GEMM kernels, which do the forward pass, the weight gradient and the
 * data gradient of stride-1 convolutions. */
static const char *const conv_algo_names[] = { NULL, "im2col + GEMM", "implicit GEMM" };

/* For reports: one name where the forward pass and the weight gradient use the same. */
static const char *
conv_algo_label (guint algo, guint algo_dw)
{
  if (!algo_dw || algo == algo_dw)
    return conv_algo_names[algo];
  return algo == KILT_CONV_ALGO_IGEMM ? "implicit GEMM, weights by im2col + GEMM"
                                      : "im2col + GEMM, weights by implicit GEMM";
}

/* Whether the implicit-GEMM kernels can run over @columns output columns: the device has them
 * (kilt-context.c), and the column indices fit 32 bits. */
static gboolean
conv_igemm_fits (KiltContext *ctx, gsize columns)
{
  return columns <= G_MAXUINT32 && ctx->igemm;
}

/* One implicit GEMM: out = act (A G + bias) (+ beta out); the fields are the kernel's
 * arguments, in its order (kernels/igemm.cl says what each means). */
typedef struct
{
  cl_mem out;
  cl_ulong out_off;
  cl_uint out_bs;
  cl_mem a;
  cl_ulong a_off;
  cl_uint a_ms, a_cs;
  cl_int a_flip;
  cl_mem img;
  cl_ulong img_off;
  cl_uint img_bs, img_cs;
  cl_mem bias;
  cl_ulong bias_off;
  cl_int has_bias;
  cl_uint M, N, IC, IH, IW, kh, kw, sh, sw;
  cl_int pt, pl;
  cl_uint OW, OP;
  cl_int act;
  float alpha, beta;
} IgemmArgs;

/* Whether the implicit-GEMM kernels run on tensor cores (kernels/gemm-tf32.cl's): where the
 * run computes at tf32 and $KILT_TF32_CONV=1. Not yet by default: they pass every check on
 * PoCL (emulated) and compile for sm_80 and sm_90, but no GPU has run or timed them yet. */
static gboolean
conv_tf32 (const KiltExec *ex)
{
  return ex->ctx->precision == KILT_PRECISION_TF32
         && g_strcmp0 (g_getenv ("KILT_TF32_CONV"), "1") == 0;
}

/* On tensor cores (kilt_conv_igemm_tf32) where conv_tf32 (), its groups over (rows, columns);
 * else kernels/igemm.cl's, over (columns, rows). */
static gboolean
conv_igemm_launch (KiltExec *ex, const IgemmArgs *a, GError **error)
{
  gboolean tf32 = conv_tf32 (ex);
  gboolean wide = a->M > 32;
  gsize tm = wide ? 64 : 32, tn = 8192 / tm, threads = KILT_IGEMM_GROUP;
  cl_kernel k = tf32 ? kilt_conv_tf32_kernel (ex->ctx, FALSE, a->M, a->N, &tm, &tn, &threads, error)
                     : kilt_context_kernel (
                         ex->ctx, wide ? "kilt_conv_igemm_64" : "kilt_conv_igemm_32", error);
  size_t global[2] = { (a->N + tn - 1) / tn * threads, (a->M + tm - 1) / tm };
  size_t local[2] = { threads, 1 };
  cl_int err = CL_SUCCESS;
  guint i = 0;

  if (!k)
    return FALSE;
  if (tf32)
    {
      global[0] = (a->M + tm - 1) / tm * threads;
      global[1] = (a->N + tn - 1) / tn;
    }
  KILT_ARG (k, i++, a->out, err);
  KILT_ARG (k, i++, a->out_off, err);
  KILT_ARG (k, i++, a->out_bs, err);
  KILT_ARG (k, i++, a->a, err);
  KILT_ARG (k, i++, a->a_off, err);
  KILT_ARG (k, i++, a->a_ms, err);
  KILT_ARG (k, i++, a->a_cs, err);
  KILT_ARG (k, i++, a->a_flip, err);
  KILT_ARG (k, i++, a->img, err);
  KILT_ARG (k, i++, a->img_off, err);
  KILT_ARG (k, i++, a->img_bs, err);
  KILT_ARG (k, i++, a->img_cs, err);
  KILT_ARG (k, i++, a->bias, err);
  KILT_ARG (k, i++, a->bias_off, err);
  KILT_ARG (k, i++, a->has_bias, err);
  KILT_ARG (k, i++, a->M, err);
  KILT_ARG (k, i++, a->N, err);
  KILT_ARG (k, i++, a->IC, err);
  KILT_ARG (k, i++, a->IH, err);
  KILT_ARG (k, i++, a->IW, err);
  KILT_ARG (k, i++, a->kh, err);
  KILT_ARG (k, i++, a->kw, err);
  KILT_ARG (k, i++, a->sh, err);
  KILT_ARG (k, i++, a->sw, err);
  KILT_ARG (k, i++, a->pt, err);
  KILT_ARG (k, i++, a->pl, err);
  KILT_ARG (k, i++, a->OW, err);
  KILT_ARG (k, i++, a->OP, err);
  KILT_ARG (k, i++, a->act, err);
  KILT_ARG (k, i++, a->alpha, err);
  KILT_ARG (k, i++, a->beta, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch (ex->ctx, k, 2, global, local, error);
}

/* The forward pass as one implicit GEMM over the whole batch: W (F x K) times the input's
 * column matrix, bias and activation in the epilogue, written as NCHW. */
static gboolean
conv_forward_igemm (KiltNode *node, KiltExec *ex, const ConvGeom *g, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  IgemmArgs a = {
    .out = node->out,
    .out_bs = (cl_uint)(g->F * g->P),
    .a = ex->params,
    .a_off = node->param_offset,
    .a_ms = (cl_uint)g->K,
    .a_cs = g->kh * g->kw,
    .img = src->out,
    .img_bs = g->C * g->H * g->W,
    .img_cs = g->H * g->W,
    .bias = ex->params,
    .bias_off = node->param_offset + g->F * g->K,
    .has_bias = node->cfg.use_bias,
    .M = g->F,
    .N = (cl_uint)(ex->batch * g->P),
    .IC = g->C,
    .IH = g->H,
    .IW = g->W,
    .kh = g->kh,
    .kw = g->kw,
    .sh = g->sh,
    .sw = g->sw,
    .pt = (cl_int)g->pt,
    .pl = (cl_int)g->pl,
    .OW = g->OW,
    .OP = (cl_uint)g->P,
    .act = kilt_node_act (node),
    .alpha = kilt_node_alpha (node),
  };

  return conv_igemm_launch (ex, &a, error);
}

/* The data gradient of a stride-1 convolution for samples b0 .. b0 + nb, as the forward pass
 * of dz (F x nb P in the workspace) with the weights flipped and transposed: din (C x H x W per
 * sample) = beta din + the sum over (f, i, j) of W[f, c, i, j] dz[f, y + pt - i, x + pl - j]. */
static gboolean
conv_data_grad_igemm (KiltNode *node, KiltExec *ex, const ConvGeom *g, cl_mem din, guint b0,
                      guint nb, float beta, GError **error)
{
  gsize np = (gsize)nb * g->P;
  IgemmArgs a = {
    .out = din,
    .out_off = (cl_ulong)b0 * g->C * g->H * g->W,
    .out_bs = g->C * g->H * g->W,
    .a = ex->params,
    .a_off = node->param_offset,
    .a_ms = g->kh * g->kw,
    .a_cs = (cl_uint)g->K,
    .a_flip = 1,
    .img = ex->workspace,
    .img_off = ws_dz (g, np),
    .img_bs = (cl_uint)g->P,
    .img_cs = (cl_uint)np,
    .bias = ex->params,
    .M = g->C,
    .N = nb * g->H * g->W,
    .IC = g->F,
    .IH = g->OH,
    .IW = g->OW,
    .kh = g->kh,
    .kw = g->kw,
    .sh = 1,
    .sw = 1,
    .pt = (cl_int)g->kh - 1 - (cl_int)g->pt,
    .pl = (cl_int)g->kw - 1 - (cl_int)g->pl,
    .OW = g->W,
    .OP = g->H * g->W,
    .act = KILT_ACT_LINEAR,
    .alpha = 0.0f,
    .beta = beta,
  };

  return conv_igemm_launch (ex, &a, error);
}

static gboolean
conv_forward_im2col (KiltNode *node, KiltExec *ex, const ConvGeom *g, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gboolean rows = conv_rows (ex->ctx->info);
  cl_kernel scatter
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_scatter_rows" : "kilt_conv_scatter", error);
  guint chunk;

  if (!scatter)
    return FALSE;
  chunk = conv_chunk (g, ex->batch, ex->ctx->info);
  for (guint b0 = 0; b0 < ex->batch; b0 += chunk)
    {
      guint nb = MIN (chunk, ex->batch - b0);
      gsize np = nb * g->P;
      cl_uint y_off = (cl_uint)ws_dz (g, np);
      cl_uint bias_off = (cl_uint)(node->param_offset + g->F * g->Kg);
      cl_uint F = g->F, P = (cl_uint)g->P;
      cl_int has_bias = node->cfg.use_bias, act = kilt_node_act (node);
      float alpha = kilt_node_alpha (node);
      cl_int err = CL_SUCCESS;

      /* y = W col over the chunk; the ones row, when there, is not part of the product. With
       * groups, one GEMM per group: its filters' rows of W times its channels' rows of col. */
      if (!conv_im2col (ex, g, src->out, b0, nb, error))
        return FALSE;
      for (guint gi = 0; gi < g->G; gi++)
        if (!kilt_gemm (ex->ctx, FALSE, FALSE, g->Fg, np, g->Kg, 1.0f, ex->params,
                        node->param_offset + gi * g->Fg * g->Kg, g->Kg, ex->workspace,
                        gi * g->Kg * np, np, 0.0f, ex->workspace, y_off + gi * g->Fg * np, np,
                        error))
          return FALSE;
      KILT_ARG (scatter, 0, node->out, err);
      KILT_ARG (scatter, 1, ex->workspace, err);
      KILT_ARG (scatter, 2, y_off, err);
      KILT_ARG (scatter, 3, ex->params, err);
      KILT_ARG (scatter, 4, bias_off, err);
      KILT_ARG (scatter, 5, has_bias, err);
      KILT_ARG (scatter, 6, b0, err);
      KILT_ARG (scatter, 7, nb, err);
      KILT_ARG (scatter, 8, F, err);
      KILT_ARG (scatter, 9, P, err);
      KILT_ARG (scatter, 10, act, err);
      KILT_ARG (scatter, 11, alpha, err);
      g_assert (err == CL_SUCCESS);
      if (!(rows ? kilt_layer_launch3 (ex, scatter, g->F, nb, 1, error)
                 : kilt_layer_launch3 (ex, scatter, g->P, g->F, nb, error)))
        return FALSE;
    }
  return TRUE;
}

/* What the node's builder (node->algo_forced), $KILT_CONV_IGEMM and the device settle before
 * any timing: im2col on CPU devices, where PoCL runs it faster than kernels built around local
 * memory and barriers, and where the implicit-GEMM kernels do not fit; 0 where the two are to
 * be timed. $KILT_CONV_IGEMM=1 or 0 forces one; =measure times them on a CPU too. */
static guint
conv_settled (const KiltNode *node, KiltExec *ex, gsize columns)
{
  const char *forced = g_getenv ("KILT_CONV_IGEMM");
  gboolean measure = forced && g_str_equal (forced, "measure");
  gboolean fits = conv_igemm_fits (ex->ctx, columns);

  if (conv_general (node))
    return KILT_CONV_ALGO_IM2COL;
  if (node->algo_forced)
    return fits && node->algo_forced == KILT_CONV_ALGO_IGEMM ? KILT_CONV_ALGO_IGEMM
                                                             : KILT_CONV_ALGO_IM2COL;
  if (forced && *forced && !measure)
    return fits && g_str_equal (forced, "1") ? KILT_CONV_ALGO_IGEMM : KILT_CONV_ALGO_IM2COL;
  if (!fits || (!measure && ex->ctx->info->type && g_str_equal (ex->ctx->info->type, "CPU")))
    return KILT_CONV_ALGO_IM2COL;
  return 0;
}

/* One run of one algorithm of a layer's pass, for conv_measure (). */
typedef gboolean (*ConvRun) (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint algo,
                             gconstpointer data, GError **error);

/* Times @run with each algorithm, alternately, four times each, each run waited for; the best
 * of the last three decides (like cuDNN's benchmark mode, so the choice, and with it the last
 * bits of the results, can differ between runs where the two are close). When the
 * implicit-GEMM kernels fail to run on the device, im2col is chosen and their error only
 * logged. 0, with @error set, when im2col itself fails. */
static guint
conv_measure (KiltNode *node, KiltExec *ex, const ConvGeom *g, ConvRun run, gconstpointer data,
              const char *what, double *ms, GError **error)
{
  gboolean profiling = ex->ctx->profiling;
  gint64 t[3] = { 0, G_MAXINT64, G_MAXINT64 };
  g_autoptr (GError) igemm_error = NULL;
  guint choice = 0;

  ex->ctx->profiling = FALSE;
  for (guint r = 0; r < 8; r++)
    {
      guint algo = r % 2 ? KILT_CONV_ALGO_IGEMM : KILT_CONV_ALGO_IM2COL;
      GError **e = algo == KILT_CONV_ALGO_IGEMM ? &igemm_error : error;
      gint64 t0 = g_get_monotonic_time ();

      if (algo == KILT_CONV_ALGO_IGEMM && igemm_error)
        continue;
      if (!run (node, ex, g, algo, data, e) || !kilt_context_finish (ex->ctx, e))
        {
          if (algo == KILT_CONV_ALGO_IM2COL)
            goto out;
          continue;
        }
      if (r >= 2)
        t[algo] = MIN (t[algo], g_get_monotonic_time () - t0);
    }
  if (igemm_error)
    g_debug ("%s %s: the implicit-GEMM kernels failed (%s); using im2col", node->name, what,
             igemm_error->message);
  choice = t[KILT_CONV_ALGO_IGEMM] < t[KILT_CONV_ALGO_IM2COL] ? KILT_CONV_ALGO_IGEMM
                                                              : KILT_CONV_ALGO_IM2COL;
  for (guint a = 0; a < 2; a++)
    ms[a] = t[a + 1] == G_MAXINT64 ? 0 : t[a + 1] / 1e3;
  g_debug ("%s %s at batch %u: im2col %.3f ms, implicit GEMM %.3f ms", node->name, what, ex->batch,
           t[KILT_CONV_ALGO_IM2COL] / 1e3,
           t[KILT_CONV_ALGO_IGEMM] == G_MAXINT64 ? NAN : t[KILT_CONV_ALGO_IGEMM] / 1e3);
out:
  ex->ctx->profiling = profiling;
  return choice;
}

/* Pads @planes planes of H x W from @src (from src_off) into the workspace from @dst_off as
 * @p says, at (pt, pl), multiplied by the derivative of @act at @y (linear: as they are). */
static gboolean
conv_pad (KiltExec *ex, const ConvPadded *p, cl_ulong dst_off, cl_mem src, cl_ulong src_off,
          cl_mem y, cl_int act, float alpha, cl_uint planes, guint H, guint W, guint pt, guint pl,
          GError **error)
{
  cl_kernel pad = kilt_context_kernel (ex->ctx, "kilt_conv_pad_rows", error);
  cl_int err = CL_SUCCESS;
  guint i = 0;

  if (!pad)
    return FALSE;
  KILT_ARG (pad, i++, ex->workspace, err);
  KILT_ARG (pad, i++, dst_off, err);
  KILT_ARG (pad, i++, src, err);
  KILT_ARG (pad, i++, src_off, err);
  KILT_ARG (pad, i++, y, err);
  KILT_ARG (pad, i++, act, err);
  KILT_ARG (pad, i++, alpha, err);
  KILT_ARG (pad, i++, planes, err);
  KILT_ARG (pad, i++, H, err);
  KILT_ARG (pad, i++, W, err);
  KILT_ARG (pad, i++, p->Hp, err);
  KILT_ARG (pad, i++, p->Wp, err);
  KILT_ARG (pad, i++, pt, err);
  KILT_ARG (pad, i++, pl, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, pad, planes, 1, 1, error);
}

/* One launch of kilt_conv_direct (kernels/conv-cpu.cl) over nb samples from b0 of planes
 * padded as @p says from @xp_off of the workspace: out (F planes of OH x OW a sample) =
 * act (W x + bias) + beta out, W (F x C x kh x kw) at w_off of @w. */
typedef struct
{
  cl_mem out, w;
  guint C, F, OH, OW;
  cl_uint w_off, bias_off;
  cl_int has_bias, act;
  float alpha, beta;
  cl_uint r0, r1; /* the padded input's rows that hold data (the others are zeros) */
} DirectRun;

static gboolean
conv_direct_launch (KiltExec *ex, const ConvGeom *g, const DirectRun *d, const ConvPadded *p,
                    cl_ulong xp_off, cl_uint b0, cl_uint nb, GError **error)
{
  cl_kernel conv = kilt_context_kernel (ex->ctx, "kilt_conv_direct", error);
  guint rows = ex->ctx->gemm_wide ? 8 : 4;
  cl_int err = CL_SUCCESS;
  guint i = 0;

  if (!conv)
    return FALSE;
  KILT_ARG (conv, i++, d->out, err);
  KILT_ARG (conv, i++, ex->workspace, err);
  KILT_ARG (conv, i++, xp_off, err);
  KILT_ARG (conv, i++, d->w, err);
  KILT_ARG (conv, i++, d->w_off, err);
  KILT_ARG (conv, i++, d->bias_off, err);
  KILT_ARG (conv, i++, d->has_bias, err);
  KILT_ARG (conv, i++, d->C, err);
  KILT_ARG (conv, i++, d->F, err);
  KILT_ARG (conv, i++, g->kh, err);
  KILT_ARG (conv, i++, g->kw, err);
  KILT_ARG (conv, i++, p->Hp, err);
  KILT_ARG (conv, i++, p->Wp, err);
  KILT_ARG (conv, i++, d->OH, err);
  KILT_ARG (conv, i++, d->OW, err);
  KILT_ARG (conv, i++, p->ntx, err);
  KILT_ARG (conv, i++, b0, err);
  KILT_ARG (conv, i++, d->act, err);
  KILT_ARG (conv, i++, d->alpha, err);
  KILT_ARG (conv, i++, d->beta, err);
  KILT_ARG (conv, i++, d->r0, err);
  KILT_ARG (conv, i++, d->r1, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, conv, (d->F + rows - 1) / rows, (gsize)d->OH * p->ntx, nb, error);
}

/* The forward pass on a CPU device without a column matrix: per chunk of samples, their input
 * padded into the workspace, then the direct kernel writing act (W x + b) in place. */
static gboolean
conv_forward_direct (KiltNode *node, KiltExec *ex, const ConvGeom *g, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_uint w_off = (cl_uint)node->param_offset;
  DirectRun d = { .out = node->out,
                  .w = ex->params,
                  .C = g->C,
                  .F = g->F,
                  .OH = g->OH,
                  .OW = g->OW,
                  .w_off = w_off,
                  .bias_off = (cl_uint)(w_off + g->F * g->K),
                  .has_bias = node->cfg.use_bias,
                  .act = kilt_node_act (node),
                  .alpha = kilt_node_alpha (node),
                  .r0 = g->pt,
                  .r1 = g->pt + g->H };
  ConvPadded p;

  conv_padded (g->C, g->OH, g->OW, g->kh, g->kw, ex->batch, &p);
  for (guint b0 = 0; b0 < ex->batch; b0 += p.chunk)
    {
      cl_uint nb = MIN (p.chunk, ex->batch - b0);

      if (!conv_pad (ex, &p, 0, src->out, (cl_ulong)b0 * g->C * g->H * g->W, src->out,
                     KILT_ACT_LINEAR, 0.0f, nb * g->C, g->H, g->W, g->pt, g->pl, error)
          || !conv_direct_launch (ex, g, &d, &p, 0, b0, nb, error))
        return FALSE;
    }
  return TRUE;
}

/* grads (+)= the weight and bias gradients of nb samples from padded dz and x
 * (kilt_conv_wgrad_direct). */
static gboolean
conv_wgrad_direct (KiltNode *node, KiltExec *ex, const ConvGeom *g, const ConvPadded *pd,
                   cl_ulong dz_off, const ConvPadded *px, cl_ulong x_off, cl_uint nb, float beta,
                   GError **error)
{
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_conv_wgrad_direct", error);
  cl_uint g_off = (cl_uint)node->grad_offset, dt = g->kh - 1 - g->pt, dl = g->kw - 1 - g->pl;
  cl_int has_bias = node->cfg.use_bias, err = CL_SUCCESS;
  guint i = 0;

  if (!k)
    return FALSE;
  KILT_ARG (k, i++, ex->grads, err);
  KILT_ARG (k, i++, g_off, err);
  KILT_ARG (k, i++, has_bias, err);
  KILT_ARG (k, i++, beta, err);
  KILT_ARG (k, i++, ex->workspace, err);
  KILT_ARG (k, i++, dz_off, err);
  KILT_ARG (k, i++, pd->Hp, err);
  KILT_ARG (k, i++, pd->Wp, err);
  KILT_ARG (k, i++, dt, err);
  KILT_ARG (k, i++, dl, err);
  KILT_ARG (k, i++, x_off, err);
  KILT_ARG (k, i++, px->Hp, err);
  KILT_ARG (k, i++, px->Wp, err);
  KILT_ARG (k, i++, g->F, err);
  KILT_ARG (k, i++, g->C, err);
  KILT_ARG (k, i++, g->kh, err);
  KILT_ARG (k, i++, g->kw, err);
  KILT_ARG (k, i++, g->OH, err);
  KILT_ARG (k, i++, px->ntx, err);
  KILT_ARG (k, i++, nb, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, (gsize)g->C * g->kh * ((g->kw + 2) / 3), (g->F + 3) / 4, 1,
                             error);
}

/* The backward pass on a CPU device without a column matrix: per chunk of samples, the output
 * gradient padded through the activation's derivative (by k - 1 - p at the top and left);
 * the input gradient as its direct convolution with the weights turned by 180 degrees and
 * transposed (kilt_conv_flip, once); the input padded as the forward pass pads it, and the
 * weight and bias gradients from the two. */
static gboolean
conv_backward_direct (KiltNode *node, KiltExec *ex, const ConvGeom *g, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gboolean dx = node->din_needed[0], dw = !node->frozen;
  cl_ulong zero = 0, dz_off = conv_flip_floats (g), x_off;
  cl_uint w_off = (cl_uint)node->param_offset;
  DirectRun d = { .out = src->dout,
                  .w = ex->workspace,
                  .C = g->F,
                  .F = g->C,
                  .OH = g->H,
                  .OW = g->W,
                  .act = KILT_ACT_LINEAR,
                  .beta = node->din_beta[0],
                  .r0 = g->kh - 1 - g->pt,
                  .r1 = g->kh - 1 - g->pt + g->OH };
  ConvPadded pd, px;
  cl_int err = CL_SUCCESS;

  /* Recorded as im2col's (the direct kernels are its CPU form), so that checkpoints and
   * resumed runs keep the choice. */
  node->algo_dw = KILT_CONV_ALGO_IM2COL;
  node->algo_dw_batch = ex->batch;
  conv_backward_padded (g, ex->batch, &pd, &px);
  x_off = dz_off + (cl_ulong)pd.chunk * g->F * pd.Hp * pd.Wp;
  if (dx)
    {
      cl_kernel flip = kilt_context_kernel (ex->ctx, "kilt_conv_flip", error);

      if (!flip)
        return FALSE;
      KILT_ARG (flip, 0, ex->workspace, err);
      KILT_ARG (flip, 1, zero, err);
      KILT_ARG (flip, 2, ex->params, err);
      KILT_ARG (flip, 3, w_off, err);
      KILT_ARG (flip, 4, g->F, err);
      KILT_ARG (flip, 5, g->C, err);
      KILT_ARG (flip, 6, g->kh, err);
      KILT_ARG (flip, 7, g->kw, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_layer_launch3 (ex, flip, g->K, g->F, 1, error))
        return FALSE;
    }
  for (guint b0 = 0; b0 < ex->batch && (dx || dw); b0 += pd.chunk)
    {
      cl_uint nb = MIN (pd.chunk, ex->batch - b0);

      if (!conv_pad (ex, &pd, dz_off, node->dout, (cl_ulong)b0 * g->F * g->P, node->out,
                     kilt_node_act (node), kilt_node_alpha (node), nb * g->F, g->OH, g->OW,
                     g->kh - 1 - g->pt, g->kw - 1 - g->pl, error))
        return FALSE;
      if (dx && !conv_direct_launch (ex, g, &d, &pd, dz_off, b0, nb, error))
        return FALSE;
      if (dw
          && (!conv_pad (ex, &px, x_off, src->out, (cl_ulong)b0 * g->C * g->H * g->W, src->out,
                         KILT_ACT_LINEAR, 0.0f, nb * g->C, g->H, g->W, g->pt, g->pl, error)
              || !conv_wgrad_direct (node, ex, g, &pd, dz_off, &px, x_off, nb, b0 > 0 ? 1.0f : 0.0f,
                                     error)))
        return FALSE;
    }
  return TRUE;
}

static gboolean
conv_forward_run (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint algo, gconstpointer data,
                  GError **error)
{
  if (algo == KILT_CONV_ALGO_IM2COL && conv_direct (node, g, ex->ctx->info))
    return conv_forward_direct (node, ex, g, error);
  if (algo == KILT_CONV_ALGO_IGEMM)
    return conv_forward_igemm (node, ex, g, error);
  return conv_forward_im2col (node, ex, g, error);
}

/* Sets *@algo for one pass: settled over @columns, kept from an earlier choice at this batch
 * size (*@batch; a resumed run's come from its checkpoint), or measured now with @run; the
 * layer's label follows. */
static gboolean
conv_pick (KiltNode *node, KiltExec *ex, const ConvGeom *g, gsize columns, guint *algo,
           guint *batch, ConvRun run, gconstpointer data, const char *what, double *ms,
           GError **error)
{
  guint a = conv_settled (node, ex, columns);

  if (!a && *batch == ex->batch && *algo)
    a = *algo;
  else if (!a && !(a = conv_measure (node, ex, g, run, data, what, ms, error)))
    return FALSE;
  *batch = ex->batch;
  *algo = a;
  if (node->algo == KILT_CONV_ALGO_IM2COL && conv_direct_backward (node, g, ex->ctx->info))
    node->algo_name = "direct";
  else if (node->algo == KILT_CONV_ALGO_IM2COL && conv_direct (node, g, ex->ctx->info))
    node->algo_name = node->algo_dw == KILT_CONV_ALGO_IGEMM ? "direct, weights by implicit GEMM"
                                                            : "direct, weights by im2col + GEMM";
  else
    node->algo_name = conv_algo_label (node->algo, node->algo_dw);
  return TRUE;
}

/* Sets node->algo, for the forward pass and the data gradient, measured on the real step's
 * forward pass. */
static gboolean
conv_choose (KiltNode *node, KiltExec *ex, const ConvGeom *g, GError **error)
{
  return conv_pick (node, ex, g, (gsize)ex->batch * g->P, &node->algo, &node->algo_batch,
                    conv_forward_run, NULL, "forward", node->algo_ms[0], error);
}

static gboolean
conv_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  ConvGeom g = { 0 };

  conv_geom (node, &g);
  return conv_choose (node, ex, &g, error)
         && conv_forward_run (node, ex, &g, node->algo, NULL, error);
}

/* How many split-K parts a weight gradient over np columns writes: conv_splits (), within
 * what the workspace holds. It was sized when the executor was made; $KILT_CONV_SPLIT may
 * have changed since (tests change it between cases). */
static cl_uint
conv_parts (KiltExec *ex, const ConvGeom *g, gsize np)
{
  cl_uint parts = conv_splits (g, np, ex->ctx->info);
  size_t ws_bytes = 0;

  if (clGetMemObjectInfo (ex->workspace, CL_MEM_SIZE, sizeof ws_bytes, &ws_bytes, NULL)
      == CL_SUCCESS)
    parts = (cl_uint)CLAMP ((ws_bytes / sizeof (float) - ws_parts (g, np)) / (g->F * g->Kc), 1,
                            parts);
  return parts;
}

/* The parts of dz (F x np) * col^T (np x Kc) from the column matrix (im2col first): one batched
 * GEMM, CLBlast giving a GEMM with so small an output and so long an inner dimension too few
 * work-groups to fill a GPU. */
static gboolean
conv_parts_im2col (KiltExec *ex, const ConvGeom *g, gsize np, cl_uint parts, GError **error)
{
  gsize dz_off = ws_dz (g, np), part_off = ws_parts (g, np), fk = g->F * g->Kc;
  gsize len = np / parts, rest = np - len * parts;

  if (!kilt_gemm_strided_batched (ex->ctx, FALSE, TRUE, g->F, g->Kc, len, 1.0f, ex->workspace,
                                  dz_off, np, len, ex->workspace, 0, np, len, 0.0f, ex->workspace,
                                  part_off, g->Kc, fk, parts, error))
    return FALSE;
  /* The columns left over after equal parts go into the first part. */
  return !rest
         || kilt_gemm (ex->ctx, FALSE, TRUE, g->F, g->Kc, rest, 1.0f, ex->workspace,
                       dz_off + len * parts, np, ex->workspace, len * parts, np, 1.0f,
                       ex->workspace, part_off, g->Kc, error);
}

/* The same parts by the implicit-GEMM kernel, from the input of samples b0 .. b0 + nb: on tensor
 * cores where conv_tf32 (), tiles of tf x tn. */
static gboolean
conv_parts_igemm (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint b0, guint nb,
                  cl_uint parts, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gboolean tf32 = conv_tf32 (ex);
  gboolean wide = g->F > 32;
  gsize threads = wide ? 256 : 128, tf = wide ? 64 : 32, tn = 64;
  cl_kernel k
      = tf32 ? kilt_conv_tf32_kernel (ex->ctx, TRUE, g->F, g->Kc, &tf, &tn, &threads, error)
             : kilt_context_kernel (
                 ex->ctx, wide ? "kilt_conv_igemm_wgrad_64" : "kilt_conv_igemm_wgrad_32", error);
  cl_uint np = nb * (cl_uint)g->P, len = (np + parts - 1) / parts;
  cl_ulong parts_off = ws_parts (g, np), dz_off = ws_dz (g, np);
  cl_ulong img_off = (cl_ulong)b0 * g->C * g->H * g->W;
  cl_uint img_bs = g->C * g->H * g->W, img_cs = g->H * g->W, Kc = (cl_uint)g->Kc;
  cl_uint OP = (cl_uint)g->P;
  cl_int pt = (cl_int)g->pt, pl = (cl_int)g->pl;
  size_t global[3] = { (g->Kc + tn - 1) / tn * threads, (g->F + tf - 1) / tf, parts };
  size_t local[3] = { threads, 1, 1 };
  cl_int err = CL_SUCCESS;
  guint i = 0;

  if (!k)
    return FALSE;
  if (tf32)
    {
      global[0] = (g->F + tf - 1) / tf * threads;
      global[1] = (g->Kc + tn - 1) / tn;
    }
  KILT_ARG (k, i++, ex->workspace, err);
  KILT_ARG (k, i++, parts_off, err);
  KILT_ARG (k, i++, ex->workspace, err);
  KILT_ARG (k, i++, dz_off, err);
  KILT_ARG (k, i++, np, err);
  KILT_ARG (k, i++, len, err);
  KILT_ARG (k, i++, src->out, err);
  KILT_ARG (k, i++, img_off, err);
  KILT_ARG (k, i++, img_bs, err);
  KILT_ARG (k, i++, img_cs, err);
  KILT_ARG (k, i++, g->F, err);
  KILT_ARG (k, i++, Kc, err);
  KILT_ARG (k, i++, g->C, err);
  KILT_ARG (k, i++, g->H, err);
  KILT_ARG (k, i++, g->W, err);
  KILT_ARG (k, i++, g->kh, err);
  KILT_ARG (k, i++, g->kw, err);
  KILT_ARG (k, i++, g->sh, err);
  KILT_ARG (k, i++, g->sw, err);
  KILT_ARG (k, i++, pt, err);
  KILT_ARG (k, i++, pl, err);
  KILT_ARG (k, i++, g->OW, err);
  KILT_ARG (k, i++, OP, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch (ex->ctx, k, 3, global, local, error);
}

static gboolean
conv_parts_run (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint algo, guint b0, guint nb,
                cl_uint parts, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize np = (gsize)nb * g->P;

  if (algo == KILT_CONV_ALGO_IGEMM)
    return conv_parts_igemm (node, ex, g, b0, nb, parts, error);
  return conv_im2col (ex, g, src->out, b0, nb, error)
         && conv_parts_im2col (ex, g, np, parts, error);
}

/* grads (+)= the sum of the parts: the weights and, from column K, the bias. */
static gboolean
conv_sum_parts (KiltNode *node, KiltExec *ex, const ConvGeom *g, gsize np, cl_uint parts,
                float beta, GError **error)
{
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_conv_sum_parts", error);
  cl_int err = CL_SUCCESS;
  cl_uint dst_off = (cl_uint)node->grad_offset, src_off = (cl_uint)ws_parts (g, np);
  cl_uint F = g->F, K = (cl_uint)g->K, Kc = (cl_uint)g->Kc;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, ex->grads, err);
  KILT_ARG (k, 1, dst_off, err);
  KILT_ARG (k, 2, ex->workspace, err);
  KILT_ARG (k, 3, src_off, err);
  KILT_ARG (k, 4, F, err);
  KILT_ARG (k, 5, K, err);
  KILT_ARG (k, 6, Kc, err);
  KILT_ARG (k, 7, parts, err);
  KILT_ARG (k, 8, beta, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, g->F * g->Kc, error);
}

/* The samples and parts of a weight gradient, for conv_parts_measured (). */
typedef struct
{
  guint b0, nb;
  cl_uint parts;
} PartsRun;

static gboolean
conv_parts_measured (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint algo,
                     gconstpointer data, GError **error)
{
  const PartsRun *p = data;

  return conv_parts_run (node, ex, g, algo, p->b0, p->nb, p->parts, error);
}

/* Sets node->algo_dw for the weight gradient as conv_choose () does for the forward pass: both
 * ways write only the parts, in the workspace, so they can be timed on the real step. dz of
 * samples b0 .. b0 + nb must be in place. */
static gboolean
conv_choose_dw (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint b0, guint nb, cl_uint parts,
                GError **error)
{
  PartsRun run = { b0, nb, parts };

  return conv_pick (node, ex, g, (gsize)nb * g->P, &node->algo_dw, &node->algo_dw_batch,
                    conv_parts_measured, &run, "weight gradient", node->algo_ms[1], error);
}

/* The weight and bias gradients of a chunk where the layer has dilation or groups: its column
 * matrix (with the ones row when there is a bias), then per group grads (+)= dz_g col_g^T, and
 * the bias gradient as dz times the ones row. No split-K: these layers are rare and small. */
static gboolean
conv_wgrad_general (KiltNode *node, KiltExec *ex, const ConvGeom *g, guint b0, guint nb,
                    GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize np = (gsize)nb * g->P, dz_off = ws_dz (g, np);
  float beta = b0 > 0 ? 1.0f : 0.0f;

  if (!conv_im2col (ex, g, src->out, b0, nb, error))
    return FALSE;
  for (guint gi = 0; gi < g->G; gi++)
    if (!kilt_gemm (ex->ctx, FALSE, TRUE, g->Fg, g->Kg, np, 1.0f, ex->workspace,
                    dz_off + gi * g->Fg * np, np, ex->workspace, gi * g->Kg * np, np, beta,
                    ex->grads, node->grad_offset + gi * g->Fg * g->Kg, g->Kg, error))
      return FALSE;
  return !node->cfg.use_bias
         || kilt_gemm (ex->ctx, FALSE, TRUE, g->F, 1, np, 1.0f, ex->workspace, dz_off, np,
                       ex->workspace, g->K * np, np, beta, ex->grads,
                       node->grad_offset + g->F * g->Kg, 1, error);
}

static gboolean
conv_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gboolean rows = conv_rows (ex->ctx->info);
  ConvGeom g = { 0 };
  cl_kernel gather;
  guint chunk;

  conv_geom (node, &g);
  if (node->algo == KILT_CONV_ALGO_IM2COL && conv_direct_backward (node, &g, ex->ctx->info))
    return conv_backward_direct (node, ex, &g, error);
  gather
      = kilt_context_kernel (ex->ctx, rows ? "kilt_conv_gather_rows" : "kilt_conv_gather", error);
  if (!gather)
    return FALSE;
  chunk = conv_chunk (&g, ex->batch, ex->ctx->info);
  for (guint b0 = 0; b0 < ex->batch; b0 += chunk)
    {
      guint nb = MIN (chunk, ex->batch - b0);
      gsize np = nb * g.P;
      cl_uint dz_off = (cl_uint)ws_dz (&g, np), F = g.F, P = (cl_uint)g.P;
      cl_uint parts = conv_parts (ex, &g, np);
      cl_int act = kilt_node_act (node);
      float alpha = kilt_node_alpha (node);
      cl_int err = CL_SUCCESS;

      KILT_ARG (gather, 0, ex->workspace, err);
      KILT_ARG (gather, 1, dz_off, err);
      KILT_ARG (gather, 2, node->dout, err);
      KILT_ARG (gather, 3, node->out, err);
      KILT_ARG (gather, 4, b0, err);
      KILT_ARG (gather, 5, nb, err);
      KILT_ARG (gather, 6, F, err);
      KILT_ARG (gather, 7, P, err);
      KILT_ARG (gather, 8, act, err);
      KILT_ARG (gather, 9, alpha, err);
      g_assert (err == CL_SUCCESS);
      if (!(rows ? kilt_layer_launch3 (ex, gather, g.F, nb, 1, error)
                 : kilt_layer_launch3 (ex, gather, g.P, g.F, nb, error)))
        return FALSE;
      /* A frozen layer computes only dx, for trainable layers below it. */
      if (!node->frozen
          && (conv_general (node)
                  ? !conv_wgrad_general (node, ex, &g, b0, nb, error)
                  : ((b0 == 0 && !conv_choose_dw (node, ex, &g, b0, nb, parts, error))
                     || !conv_parts_run (node, ex, &g, node->algo_dw, b0, nb, parts, error)
                     || !conv_sum_parts (node, ex, &g, np, parts, b0 > 0 ? 1.0f : 0.0f, error))))
        return FALSE;
      if (!node->din_needed[0])
        continue;
      if (node->algo == KILT_CONV_ALGO_IGEMM && g.sh == 1 && g.sw == 1
          && conv_igemm_fits (ex->ctx, (gsize)nb * g.H * g.W))
        {
          if (!conv_data_grad_igemm (node, ex, &g, src->dout, b0, nb, node->din_beta[0], error))
            return FALSE;
          continue;
        }
      /* dcol = W^T dz into the column matrix's place (which the weight gradient has used, or
       * never needed), then gathered back onto the input; a GEMM per group, each writing its
       * channels' rows. */
      for (guint gi = 0; gi < g.G; gi++)
        if (!kilt_gemm (ex->ctx, TRUE, FALSE, g.Kg, np, g.Fg, 1.0f, ex->params,
                        node->param_offset + gi * g.Fg * g.Kg, g.Kg, ex->workspace,
                        dz_off + gi * g.Fg * np, np, 0.0f, ex->workspace, gi * g.Kg * np, np,
                        error))
          return FALSE;
      if (!conv_col2im (ex, &g, src->dout, b0, nb, node->din_beta[0], error))
        return FALSE;
    }
  return TRUE;
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

/* The input value under kernel tap (c, i, j) for output (oy, ox) of sample b, 0 in padding. */
static inline double
ref_tap (const ConvGeom *g, const double *x, guint b, guint c, guint i, guint j, guint oy, guint ox,
         gsize *index)
{
  gint64 y = (gint64)oy * g->sh + (gint64)i * g->dh - g->pt;
  gint64 xx = (gint64)ox * g->sw + (gint64)j * g->dw - g->pl;

  if (y < 0 || y >= g->H || xx < 0 || xx >= g->W)
    return (*index = G_MAXSIZE, 0.0);
  *index = (((gsize)b * g->C + c) * g->H + (gsize)y) * g->W + (gsize)xx;
  return x[*index];
}

static void
conv_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                  const double *const *in, const double *params, double *state, double *out)
{
  ConvGeom g = { 0 };
  gsize idx;

  conv_geom (node, &g);
  for (guint b = 0; b < batch; b++)
    for (guint f = 0; f < g.F; f++)
      for (guint oy = 0; oy < g.OH; oy++)
        for (guint ox = 0; ox < g.OW; ox++)
          {
            double acc = node->cfg.use_bias ? params[g.F * g.Kg + f] : 0.0;
            guint c0 = f / g.Fg * (g.C / g.G);
            for (guint c = 0; c < g.C / g.G; c++)
              for (guint i = 0; i < g.kh; i++)
                for (guint j = 0; j < g.kw; j++)
                  acc += params[f * g.Kg + (c * g.kh + i) * g.kw + j]
                         * ref_tap (&g, in[0], b, c0 + c, i, j, oy, ox, &idx);
            out[(((gsize)b * g.F + f) * g.OH + oy) * g.OW + ox] = acc;
          }
  kilt_ref_activate (out, batch, g.F, g.P, node->cfg.activation, node->cfg.alpha);
}

static void
conv_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                   const double *const *in, const double *params, const double *state,
                   const double *out, const double *dout, double **din, double *dparams)
{
  ConvGeom g = { 0 };
  gsize n_out, n_in, idx;
  g_autofree double *dz = NULL;

  conv_geom (node, &g);
  n_out = (gsize)batch * g.F * g.P;
  n_in = (gsize)batch * g.C * g.H * g.W;
  dz = g_new (double, n_out);
  kilt_ref_act_backward (dz, dout, out, batch, g.F, g.P, node->cfg.activation, node->cfg.alpha);
  for (gsize i = 0; i < node->n_params; i++)
    dparams[i] = 0.0;
  if (din[0])
    for (gsize i = 0; i < n_in; i++)
      din[0][i] = 0.0;
  for (guint b = 0; b < batch; b++)
    for (guint f = 0; f < g.F; f++)
      for (guint oy = 0; oy < g.OH; oy++)
        for (guint ox = 0; ox < g.OW; ox++)
          {
            double d = dz[(((gsize)b * g.F + f) * g.OH + oy) * g.OW + ox];
            guint c0 = f / g.Fg * (g.C / g.G);
            if (node->cfg.use_bias)
              dparams[g.F * g.Kg + f] += d;
            for (guint c = 0; c < g.C / g.G; c++)
              for (guint i = 0; i < g.kh; i++)
                for (guint j = 0; j < g.kw; j++)
                  {
                    gsize w = f * g.Kg + (c * g.kh + i) * g.kw + j;
                    double v = ref_tap (&g, in[0], b, c0 + c, i, j, oy, ox, &idx);
                    if (idx == G_MAXSIZE)
                      continue;
                    dparams[w] += d * v;
                    if (din[0])
                      din[0][idx] += d * params[w];
                  }
          }
}

const KiltLayerClass kilt_conv2d_class = {
  .type = KILT_LAYER_CONV2D,
  .name = "Conv2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = conv_infer,
  .init = conv_init,
  .flops = conv_flops,
  .workspace_floats = conv_workspace_floats,
  .forward = conv_forward,
  .backward = conv_backward,
  .ref_forward = conv_ref_forward,
  .ref_backward = conv_ref_backward,
};
