/* ZeroPadding2D and Cropping2D (each channel's plane grown by zeros or cut, per side),
 * UpSampling2D (nearest, bilinear) and Permute: copies of planes into other sizes and orders. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <string.h>

/* The pads are top, bottom, left, right (cfg.pad); padding adds them, cropping removes. */
static gboolean
pad_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  const guint *p = node->cfg.pad;
  const guint cap = 1u << 24;

  for (guint i = 0; i < 4; i++)
    if (p[i] > cap)
      {
        kilt_layer_set_error (error, node, "a side of %u is over the limit of %u", p[i], cap);
        return FALSE;
      }
  if (node->type == KILT_LAYER_ZERO_PADDING2D)
    {
      node->out_shape = (KiltShape){ in->c, in->h + p[0] + p[1], in->w + p[2] + p[3] };
      if (node->out_shape.h > cap || node->out_shape.w > cap)
        {
          kilt_layer_set_error (error, node, "the padded size %ux%u is over the limit of %u",
                                node->out_shape.h, node->out_shape.w, cap);
          return FALSE;
        }
      return TRUE;
    }
  if ((guint64)p[0] + p[1] >= in->h || (guint64)p[2] + p[3] >= in->w)
    {
      kilt_layer_set_error (error, node,
                            "cropping ((%u, %u), (%u, %u)) leaves nothing of a %ux%u input", p[0],
                            p[1], p[2], p[3], in->h, in->w);
      return FALSE;
    }
  node->out_shape = (KiltShape){ in->c, in->h - p[0] - p[1], in->w - p[2] - p[3] };
  return TRUE;
}

/* The shift from the destination back to the source: padding's forward reads at -top. */
static void
pad_shift (const KiltNode *node, gboolean forward, int *oy, int *ox)
{
  int sign = (node->type == KILT_LAYER_ZERO_PADDING2D) == forward ? -1 : 1;

  *oy = sign * (int)node->cfg.pad[0];
  *ox = sign * (int)node->cfg.pad[2];
}

static gboolean
shift_launch (KiltExec *ex, cl_mem dst, const KiltShape *ds, cl_mem src, const KiltShape *ss,
              int oy, int ox, float beta, GError **error)
{
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_shift2d", error);
  cl_int err = CL_SUCCESS;
  cl_uint planes = ex->batch * ds->c, sh = ss->h, sw = ss->w, dh = ds->h, dw = ds->w;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, src, err);
  KILT_ARG (k, 2, planes, err);
  KILT_ARG (k, 3, sh, err);
  KILT_ARG (k, 4, sw, err);
  KILT_ARG (k, 5, dh, err);
  KILT_ARG (k, 6, dw, err);
  KILT_ARG (k, 7, oy, err);
  KILT_ARG (k, 8, ox, err);
  KILT_ARG (k, 9, beta, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, dw, dh, planes, error);
}

static gboolean
pad_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  int oy, ox;

  pad_shift (node, TRUE, &oy, &ox);
  return shift_launch (ex, node->out, &node->out_shape, src->out, &node->in_shape[0], oy, ox, 0.0f,
                       error);
}

static gboolean
pad_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  int oy, ox;

  if (!node->din_needed[0])
    return TRUE;
  pad_shift (node, FALSE, &oy, &ox);
  return shift_launch (ex, src->dout, &node->in_shape[0], node->dout, &node->out_shape, oy, ox,
                       node->din_beta[0], error);
}

static void
ref_shift (double *dst, const KiltShape *ds, const double *src, const KiltShape *ss, guint batch,
           int oy, int ox)
{
  for (gsize p = 0; p < (gsize)batch * ds->c; p++)
    for (guint y = 0; y < ds->h; y++)
      for (guint x = 0; x < ds->w; x++)
        {
          int sy = (int)y + oy, sx = (int)x + ox;
          gboolean inside = sy >= 0 && sx >= 0 && sy < (int)ss->h && sx < (int)ss->w;
          dst[(p * ds->h + y) * ds->w + x] = inside ? src[(p * ss->h + sy) * ss->w + sx] : 0.0;
        }
}

static void
pad_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  int oy, ox;

  pad_shift (node, TRUE, &oy, &ox);
  ref_shift (out, &node->out_shape, in[0], &node->in_shape[0], batch, oy, ox);
}

static void
pad_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  int oy, ox;

  if (!din[0])
    return;
  pad_shift (node, FALSE, &oy, &ox);
  ref_shift (din[0], &node->in_shape[0], dout, &node->out_shape, batch, oy, ox);
}

const KiltLayerClass kilt_zero_padding2d_class = {
  .type = KILT_LAYER_ZERO_PADDING2D,
  .name = "ZeroPadding2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = pad_infer,
  .forward = pad_forward,
  .backward = pad_backward,
  .ref_forward = pad_ref_forward,
  .ref_backward = pad_ref_backward,
};

const KiltLayerClass kilt_cropping2d_class = {
  .type = KILT_LAYER_CROPPING2D,
  .name = "Cropping2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = pad_infer,
  .forward = pad_forward,
  .backward = pad_backward,
  .ref_forward = pad_ref_forward,
  .ref_backward = pad_ref_backward,
};

/* ---- UpSampling2D, nearest: each pixel repeated size (kh x kw) times; bilinear: TensorFlow's
 * resize with half-pixel centres. ------------------------------------------------------------ */

static gboolean
up_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  guint sy = node->cfg.kh, sx = node->cfg.kw;

  if (sy == 0 || sx == 0 || sy > 1024 || sx > 1024 || (guint64)in->h * sy > (1u << 24)
      || (guint64)in->w * sx > (1u << 24))
    {
      kilt_layer_set_error (error, node, "size %ux%u must be from 1 to 1024 and fit the input", sy,
                            sx);
      return FALSE;
    }
  node->out_shape = (KiltShape){ in->c, in->h * sy, in->w * sx };
  return TRUE;
}

static gboolean
up_launch (KiltNode *node, KiltExec *ex, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  const char *name
      = node->cfg.bilinear
            ? (forward ? "kilt_upsample_bilinear_forward" : "kilt_upsample_bilinear_backward")
            : (forward ? "kilt_upsample_forward" : "kilt_upsample_backward");
  cl_kernel k = kilt_context_kernel (ex->ctx, name, error);
  cl_int err = CL_SUCCESS;
  cl_uint planes = ex->batch * node->in_shape[0].c, ih = node->in_shape[0].h;
  cl_uint iw = node->in_shape[0].w, sy = node->cfg.kh, sx = node->cfg.kw;
  cl_mem dst = forward ? node->out : src->dout, from = forward ? src->out : node->dout;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, from, err);
  KILT_ARG (k, 2, planes, err);
  KILT_ARG (k, 3, ih, err);
  KILT_ARG (k, 4, iw, err);
  KILT_ARG (k, 5, sy, err);
  KILT_ARG (k, 6, sx, err);
  if (!forward)
    KILT_ARG (k, 7, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return forward ? kilt_layer_launch3 (ex, k, iw * sx, ih * sy, planes, error)
                 : kilt_layer_launch3 (ex, k, iw, ih, planes, error);
}

static gboolean
up_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  return up_launch (node, ex, TRUE, error);
}

static gboolean
up_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  if (!node->din_needed[0])
    return TRUE;
  return up_launch (node, ex, FALSE, error);
}

/* Bilinear, TensorFlow's half-pixel sampling (kernels/padding.cl says how): along one axis,
 * output o reads inputs *i0 and *i1 with weights 1 - *l and *l. */
static void
up_ref_tap (guint o, guint s, guint n, guint *i0, guint *i1, double *l)
{
  double f = MAX ((o + 0.5) / s - 0.5, 0.0);
  guint a = MIN ((guint)f, n - 1);

  *i0 = a;
  *i1 = MIN (a + 1, n - 1);
  *l = f - a;
}

/* out (+)= the bilinear upsampling of in (forward), or din (+)= its transpose applied to
 * dout (backward), over every plane. */
static void
up_ref_bilinear (const KiltNode *node, guint batch, const double *in, double *out, gboolean back)
{
  const KiltShape *s = &node->in_shape[0], *o = &node->out_shape;

  for (gsize p = 0; p < (gsize)batch * s->c; p++)
    for (guint y = 0; y < o->h; y++)
      for (guint x = 0; x < o->w; x++)
        {
          guint ys[2], xs[2];
          double ly, lx;
          gsize at = (p * o->h + y) * o->w + x;
          up_ref_tap (y, node->cfg.kh, s->h, &ys[0], &ys[1], &ly);
          up_ref_tap (x, node->cfg.kw, s->w, &xs[0], &xs[1], &lx);
          for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
              {
                double w = (a ? ly : 1 - ly) * (b ? lx : 1 - lx);
                gsize src = (p * s->h + ys[a]) * s->w + xs[b];
                if (back)
                  out[src] += w * in[at];
                else
                  out[at] += w * in[src];
              }
        }
}

static void
up_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                const double *const *in, const double *params, double *state, double *out)
{
  const KiltShape *s = &node->in_shape[0], *o = &node->out_shape;

  if (node->cfg.bilinear)
    {
      memset (out, 0, sizeof (double) * batch * kilt_shape_size (o));
      up_ref_bilinear (node, batch, in[0], out, FALSE);
      return;
    }
  for (gsize p = 0; p < (gsize)batch * s->c; p++)
    for (guint y = 0; y < o->h; y++)
      for (guint x = 0; x < o->w; x++)
        out[(p * o->h + y) * o->w + x]
            = in[0][(p * s->h + y / node->cfg.kh) * s->w + x / node->cfg.kw];
}

static void
up_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                 const double *const *in, const double *params, const double *state,
                 const double *out, const double *dout, double **din, double *dparams)
{
  const KiltShape *s = &node->in_shape[0], *o = &node->out_shape;

  if (!din[0])
    return;
  memset (din[0], 0, sizeof (double) * batch * kilt_shape_size (s));
  if (node->cfg.bilinear)
    {
      up_ref_bilinear (node, batch, dout, din[0], TRUE);
      return;
    }
  for (gsize p = 0; p < (gsize)batch * s->c; p++)
    for (guint y = 0; y < o->h; y++)
      for (guint x = 0; x < o->w; x++)
        din[0][(p * s->h + y / node->cfg.kh) * s->w + x / node->cfg.kw]
            += dout[(p * o->h + y) * o->w + x];
}

const KiltLayerClass kilt_upsampling2d_class = {
  .type = KILT_LAYER_UPSAMPLING2D,
  .name = "UpSampling2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = up_infer,
  .forward = up_forward,
  .backward = up_backward,
  .ref_forward = up_ref_forward,
  .ref_backward = up_ref_backward,
};

/* ---- Permute: the axes of a sample in another order (Keras' Permute). -------------------- */

static guint
perm_dim (const KiltShape *s, guint axis)
{
  return axis == 0 ? s->c : axis == 1 ? s->h : s->w;
}

static gboolean
perm_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  const guint *p = node->cfg.perm;

  if (p[0] > 2 || p[1] > 2 || p[2] > 2 || p[0] == p[1] || p[0] == p[2] || p[1] == p[2])
    {
      kilt_layer_set_error (error, node,
                            "permutation (%u, %u, %u) must hold the axes 0, 1 and 2 once each",
                            p[0], p[1], p[2]);
      return FALSE;
    }
  node->out_shape = (KiltShape){ perm_dim (in, p[0]), perm_dim (in, p[1]), perm_dim (in, p[2]) };
  return TRUE;
}

/* The input stride of input axis @axis (channels-first, one sample). */
static guint
perm_stride (const KiltShape *s, guint axis)
{
  return axis == 0 ? s->h * s->w : axis == 1 ? s->w : 1;
}

static gboolean
perm_launch (KiltNode *node, KiltExec *ex, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_permute", error);
  const KiltShape *in = &node->in_shape[0], *o = &node->out_shape;
  cl_uint v[] = { o->c,
                  o->h,
                  o->w,
                  perm_stride (in, node->cfg.perm[0]),
                  perm_stride (in, node->cfg.perm[1]),
                  perm_stride (in, node->cfg.perm[2]),
                  ex->batch };
  cl_mem dst = forward ? node->out : src->dout, from = forward ? src->out : node->dout;
  cl_int err = CL_SUCCESS, back = !forward;
  float beta = forward ? 0.0f : node->din_beta[0];

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, from, err);
  for (guint i = 0; i < G_N_ELEMENTS (v); i++)
    KILT_ARG (k, 2 + i, v[i], err);
  KILT_ARG (k, 9, back, err);
  KILT_ARG (k, 10, beta, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, o->w, o->h, (gsize)o->c * ex->batch, error);
}

static gboolean
perm_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  return perm_launch (node, ex, TRUE, error);
}

static gboolean
perm_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  return !node->din_needed[0] || perm_launch (node, ex, FALSE, error);
}

/* For output element (a0, a1, a2) of a sample, the input's index in that sample. */
static gsize
perm_ref_index (const KiltNode *node, guint a0, guint a1, guint a2)
{
  const KiltShape *in = &node->in_shape[0];
  const guint *p = node->cfg.perm;

  return (gsize)a0 * perm_stride (in, p[0]) + (gsize)a1 * perm_stride (in, p[1])
         + (gsize)a2 * perm_stride (in, p[2]);
}

static void
perm_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                  const double *const *in, const double *params, double *state, double *out)
{
  const KiltShape *o = &node->out_shape;
  gsize n = kilt_shape_size (o);

  for (guint b = 0; b < batch; b++)
    for (guint a0 = 0; a0 < o->c; a0++)
      for (guint a1 = 0; a1 < o->h; a1++)
        for (guint a2 = 0; a2 < o->w; a2++)
          out[b * n + ((gsize)a0 * o->h + a1) * o->w + a2]
              = in[0][b * n + perm_ref_index (node, a0, a1, a2)];
}

static void
perm_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                   const double *const *in, const double *params, const double *state,
                   const double *out, const double *dout, double **din, double *dparams)
{
  const KiltShape *o = &node->out_shape;
  gsize n = kilt_shape_size (o);

  if (!din[0])
    return;
  for (guint b = 0; b < batch; b++)
    for (guint a0 = 0; a0 < o->c; a0++)
      for (guint a1 = 0; a1 < o->h; a1++)
        for (guint a2 = 0; a2 < o->w; a2++)
          din[0][b * n + perm_ref_index (node, a0, a1, a2)]
              = dout[b * n + ((gsize)a0 * o->h + a1) * o->w + a2];
}

const KiltLayerClass kilt_permute_class = {
  .type = KILT_LAYER_PERMUTE,
  .name = "Permute",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = perm_infer,
  .forward = perm_forward,
  .backward = perm_backward,
  .ref_forward = perm_ref_forward,
  .ref_backward = perm_ref_backward,
};
