/* Pooling: MaxPooling2D, AveragePooling2D (valid or Keras "same") and GlobalAveragePooling2D. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-pooling"

#include "kilt-layer.h"

#include <string.h>

typedef struct
{
  guint C, H, W, kh, kw, sh, sw, pt, pl, OH, OW;
} PoolGeom;

static void
pool_geom (const KiltNode *node, PoolGeom *g)
{
  g->C = node->in_shape[0].c;
  g->H = node->in_shape[0].h;
  g->W = node->in_shape[0].w;
  g->kh = node->cfg.kh;
  g->kw = node->cfg.kw;
  /* Keras: strides default to the pool size. */
  g->sh = node->cfg.sh ? node->cfg.sh : g->kh;
  g->sw = node->cfg.sw ? node->cfg.sw : g->kw;
  kilt_layer_out_dim (g->H, g->kh, g->sh, node->cfg.same, &g->OH, &g->pt);
  kilt_layer_out_dim (g->W, g->kw, g->sw, node->cfg.same, &g->OW, &g->pl);
}

static gboolean
pool_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  PoolGeom g = { 0 };
  guint o, pad;

  if (node->cfg.kh == 0 || node->cfg.kw == 0)
    {
      kilt_layer_set_error (error, node, "pool size %ux%u must be at least 1x1", node->cfg.kh,
                            node->cfg.kw);
      return FALSE;
    }
  if (in->c == 0 || in->h == 0 || in->w == 0)
    {
      kilt_layer_set_error (error, node, "input %ux%ux%u is empty", in->h, in->w, in->c);
      return FALSE;
    }
  pool_geom (node, &g);
  if (!kilt_layer_out_dim (in->h, g.kh, g.sh, node->cfg.same, &o, &pad)
      || !kilt_layer_out_dim (in->w, g.kw, g.sw, node->cfg.same, &o, &pad))
    {
      kilt_layer_set_error (error, node,
                            "a %ux%u pool with valid padding needs an input of at least that "
                            "size, got %ux%u",
                            g.kh, g.kw, in->h, in->w);
      return FALSE;
    }
  node->out_shape = (KiltShape){ g.C, g.OH, g.OW };
  node->n_params = 0;
  return TRUE;
}

static guint64
pool_flops (const KiltNode *node)
{
  PoolGeom g = { 0 };

  pool_geom (node, &g);
  return (guint64)g.C * g.OH * g.OW * g.kh * g.kw;
}

static gsize
max_pool_saved_floats (const KiltNode *node, guint batch)
{
  return (gsize)batch * kilt_shape_size (&node->out_shape);
}

/* Max pooling whose windows tile the plane (strides equal to the window, no padding before),
 * Keras' usual 2 x 2. */
static gboolean
pool_tiles (const KiltNode *node, const PoolGeom *g)
{
  return node->type == KILT_LAYER_MAX_POOL2D && g->sh == g->kh && g->sw == g->kw && g->pt == 0
         && g->pl == 0;
}

/* The row-per-work-item kernels for tiling max pooling on CPU devices; $KILT_POOL_KERNELS=rows
 * or items forces one. */
static gboolean
pool_rows (const KiltDeviceInfo *info)
{
  return kilt_layer_use_rows (info, "KILT_POOL_KERNELS");
}

/* Launches one of the tiling max-pooling kernels, whose first ten arguments are the same
 * (the backward one takes beta after them): over (OW, OH, planes) for the element kernels,
 * (OH, planes) for the row kernels. */
static gboolean
pool_tiles_launch (KiltExec *ex, const PoolGeom *g, const char *name, gboolean rows, cl_mem a0,
                   cl_mem a1, cl_mem a2, const float *beta, GError **error)
{
  cl_kernel k = kilt_context_kernel (ex->ctx, name, error);
  cl_uint planes = ex->batch * g->C;
  cl_int err = CL_SUCCESS;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, a0, err);
  KILT_ARG (k, 1, a1, err);
  KILT_ARG (k, 2, a2, err);
  KILT_ARG (k, 3, planes, err);
  KILT_ARG (k, 4, g->H, err);
  KILT_ARG (k, 5, g->W, err);
  KILT_ARG (k, 6, g->OH, err);
  KILT_ARG (k, 7, g->OW, err);
  KILT_ARG (k, 8, g->kh, err);
  KILT_ARG (k, 9, g->kw, err);
  if (beta)
    KILT_ARG (k, 10, *beta, err);
  g_assert (err == CL_SUCCESS);
  if (rows)
    return kilt_layer_launch3 (ex, k, g->OH, planes, 1, error);
  return kilt_layer_launch3 (ex, k, g->OW, g->OH, planes, error);
}

/* Arguments 3 to 14 of kilt_pool_forward and kilt_pool_backward: the count @n, the geometry
 * and whether it is max pooling. */
static void
pool_window_args (cl_kernel k, const PoolGeom *g, cl_uint n, cl_int is_max, cl_int *err)
{
  KILT_ARG (k, 3, n, *err);
  KILT_ARG (k, 4, g->H, *err);
  KILT_ARG (k, 5, g->W, *err);
  KILT_ARG (k, 6, g->OH, *err);
  KILT_ARG (k, 7, g->OW, *err);
  KILT_ARG (k, 8, g->kh, *err);
  KILT_ARG (k, 9, g->kw, *err);
  KILT_ARG (k, 10, g->sh, *err);
  KILT_ARG (k, 11, g->sw, *err);
  KILT_ARG (k, 12, g->pt, *err);
  KILT_ARG (k, 13, g->pl, *err);
  KILT_ARG (k, 14, is_max, *err);
}

static gboolean
pool_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k;
  cl_int err = CL_SUCCESS, is_max = node->type == KILT_LAYER_MAX_POOL2D;
  /* Average pooling has no indices to keep; any buffer satisfies the argument. */
  cl_mem arg = is_max ? node->saved : node->out;
  PoolGeom g = { 0 };
  cl_uint n;

  g_return_val_if_fail (!is_max || node->saved != NULL, FALSE);
  pool_geom (node, &g);
  if (pool_tiles (node, &g) && pool_rows (ex->ctx->info))
    return pool_tiles_launch (ex, &g, "kilt_maxpool_tiles_rows", TRUE, node->out, arg, src->out,
                              NULL, error);
  if (!(k = kilt_context_kernel (ex->ctx, "kilt_pool_forward", error)))
    return FALSE;
  n = ex->batch * g.C;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, arg, err);
  KILT_ARG (k, 2, src->out, err);
  pool_window_args (k, &g, n, is_max, &err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, g.OW, g.OH, n, error);
}

static gboolean
pool_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k;
  cl_int err = CL_SUCCESS, is_max = node->type == KILT_LAYER_MAX_POOL2D;
  cl_mem arg = is_max ? node->saved : node->out;
  PoolGeom g = { 0 };
  cl_uint n;

  if (!node->din_needed[0])
    return TRUE;
  pool_geom (node, &g);
  /* Keras' usual MaxPooling2D (2 x 2, strides 2) has windows that tile the plane: a work-item
   * per window (or, on a CPU, per row of windows) instead of a search per input. Measured on
   * PoCL (2 cores), cifar10_cnn batch 32: the first pooling's backward went from 5.9 to 1.9 ms,
   * the step from 72-78 to 68-69 ms. */
  if (pool_tiles (node, &g))
    {
      gboolean rows = pool_rows (ex->ctx->info);
      return pool_tiles_launch (
          ex, &g, rows ? "kilt_maxpool_backward_tiles_rows" : "kilt_maxpool_backward_tiles", rows,
          src->dout, node->dout, arg, &node->din_beta[0], error);
    }
  k = kilt_context_kernel (ex->ctx, "kilt_pool_backward", error);
  if (!k)
    return FALSE;
  n = ex->batch * g.C * g.H * g.W;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, arg, err);
  pool_window_args (k, &g, n, is_max, &err);
  KILT_ARG (k, 15, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

/* The real pixels of output (oy, ox)'s window: [y0, y1) x [x0, x1). */
static void
pool_window (const PoolGeom *g, guint oy, guint ox, gint *y0, gint *y1, gint *x0, gint *x1)
{
  gint ys = (gint)(oy * g->sh) - (gint)g->pt, xs = (gint)(ox * g->sw) - (gint)g->pl;

  *y0 = MAX (ys, 0);
  *y1 = MIN (ys + (gint)g->kh, (gint)g->H);
  *x0 = MAX (xs, 0);
  *x1 = MIN (xs + (gint)g->kw, (gint)g->W);
}

/* Reference forward and, when @din is not NULL, backward (max: to the first maximum). */
static void
pool_ref (const KiltNode *node, guint batch, const double *x, double *out, const double *dout,
          double *din)
{
  gboolean is_max = node->type == KILT_LAYER_MAX_POOL2D;
  PoolGeom g = { 0 };

  pool_geom (node, &g);
  if (din)
    for (gsize i = 0; i < (gsize)batch * g.C * g.H * g.W; i++)
      din[i] = 0.0;
  for (gsize bc = 0; bc < (gsize)batch * g.C; bc++)
    for (guint oy = 0; oy < g.OH; oy++)
      for (guint ox = 0; ox < g.OW; ox++)
        {
          const double *plane = x + bc * g.H * g.W;
          gsize o = (bc * g.OH + oy) * g.OW + ox, best_i = 0;
          double acc = 0;
          gint y0, y1, x0, x1;
          gboolean first = TRUE;

          pool_window (&g, oy, ox, &y0, &y1, &x0, &x1);
          for (gint y = y0; y < y1; y++)
            for (gint xx = x0; xx < x1; xx++)
              {
                gsize i = (gsize)y * g.W + (gsize)xx;
                if (!is_max)
                  acc += plane[i];
                else if (first || plane[i] > acc)
                  {
                    acc = plane[i];
                    best_i = i;
                    first = FALSE;
                  }
              }
          if (!is_max)
            acc /= (double)((y1 - y0) * (x1 - x0));
          if (out)
            out[o] = acc;
          if (!din)
            continue;
          if (is_max)
            din[bc * g.H * g.W + best_i] += dout[o];
          else
            for (gint y = y0; y < y1; y++)
              for (gint xx = x0; xx < x1; xx++)
                din[bc * g.H * g.W + (gsize)y * g.W + (gsize)xx]
                    += dout[o] / (double)((y1 - y0) * (x1 - x0));
        }
}

static void
pool_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                  const double *const *in, const double *params, double *state, double *out)
{
  pool_ref (node, batch, in[0], out, NULL, NULL);
}

static void
pool_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                   const double *const *in, const double *params, const double *state,
                   const double *out, const double *dout, double **din, double *dparams)
{
  if (din[0])
    pool_ref (node, batch, in[0], NULL, dout, din[0]);
}

/* ---- global average ------------------------------------------------------------------------ */

static gboolean
gap_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];

  if (in->c == 0 || in->h == 0 || in->w == 0)
    {
      kilt_layer_set_error (error, node, "input %ux%ux%u is empty", in->h, in->w, in->c);
      return FALSE;
    }
  if (node->cfg.step_mask == KILT_STEP_MASK_NONE && node->n_inputs > 1)
    {
      kilt_layer_set_error (error, node, "takes one input (and a step mask's source), got %u",
                            node->n_inputs);
      return FALSE;
    }
  if (node->cfg.step_mask && node->type != KILT_LAYER_GLOBAL_AVG_POOL2D)
    {
      kilt_layer_set_error (error, node, "takes no step mask (Keras' GlobalMaxPooling1D drops it)");
      return FALSE;
    }
  if (node->cfg.step_mask && in->h != 1)
    {
      kilt_layer_set_error (error, node, "a step mask needs a sequence (c, 1, steps), got %ux%ux%u",
                            in->c, in->h, in->w);
      return FALSE;
    }
  if (!kilt_layer_check_step_mask (node, in->w, error))
    return FALSE;
  node->out_shape = (KiltShape){ in->c, 1, 1 };
  node->n_params = 0;
  return TRUE;
}

static guint64
gap_flops (const KiltNode *node)
{
  return kilt_shape_size (&node->in_shape[0]);
}

/* With a step mask: one work-item per (channel, sample), over the steps. */
static gboolean
gap_masked_launch (KiltNode *node, KiltExec *ex, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (ex->ctx,
                                     forward ? "kilt_global_avg_pool_masked_forward"
                                             : "kilt_global_avg_pool_masked_backward",
                                     error);
  cl_int err = CL_SUCCESS;
  cl_uint channels = node->in_shape[0].c, steps = node->in_shape[0].w, batch = ex->batch;
  cl_uint i = 0;
  cl_mem y = forward ? node->out : src->dout, x = forward ? src->out : node->dout;

  if (!k)
    return FALSE;
  KILT_ARG (k, i++, y, err);
  KILT_ARG (k, i++, x, err);
  KILT_ARG (k, i++, channels, err);
  KILT_ARG (k, i++, steps, err);
  KILT_ARG (k, i++, batch, err);
  if (!forward)
    KILT_ARG (k, i++, node->din_beta[0], err);
  err |= kilt_layer_step_mask_args (node, ex, k, i);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, channels, batch, 1, error);
}

static gboolean
gap_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_global_avg_pool_forward", error);
  cl_int err = CL_SUCCESS;
  cl_uint spatial = node->in_shape[0].h * node->in_shape[0].w;
  size_t local = 1, global;

  if (node->cfg.step_mask)
    return gap_masked_launch (node, ex, TRUE, error);
  if (!k)
    return FALSE;
  while (local < spatial && local * 2 <= MIN ((size_t)256, ex->ctx->info->max_work_group))
    local *= 2;
  global = local * ex->batch * node->in_shape[0].c;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, spatial, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch (ex->ctx, k, 1, &global, &local, error);
}

static gboolean
gap_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k;
  cl_int err = CL_SUCCESS;
  cl_uint spatial = node->in_shape[0].h * node->in_shape[0].w;
  cl_uint n = ex->batch * node->in_shape[0].c * spatial;

  if (node->cfg.step_mask)
    return (!node->din_needed[0] || gap_masked_launch (node, ex, FALSE, error))
           && kilt_layer_step_mask_no_grad (node, ex, error);
  if (!node->din_needed[0])
    return TRUE;
  k = kilt_context_kernel (ex->ctx, "kilt_global_avg_pool_backward", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, src->dout, err);
  KILT_ARG (k, 1, node->dout, err);
  KILT_ARG (k, 2, n, err);
  KILT_ARG (k, 3, spatial, err);
  KILT_ARG (k, 4, node->din_beta[0], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static void
gap_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  gsize spatial = (gsize)node->in_shape[0].h * node->in_shape[0].w;

  for (gsize bc = 0; bc < (gsize)batch * node->in_shape[0].c; bc++)
    {
      double acc = 0, n = 0;
      for (gsize s = 0; s < spatial; s++)
        if (kilt_ref_step_kept (node, in[node->n_inputs - 1], bc / node->in_shape[0].c, s))
          {
            acc += in[0][bc * spatial + s];
            n++;
          }
      out[bc] = acc / n; /* no kept step: 0 / 0, NaN, as in Keras */
    }
}

static void
gap_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  gsize spatial = (gsize)node->in_shape[0].h * node->in_shape[0].w;

  gsize channels = node->in_shape[0].c;
  const double *m = in[node->n_inputs - 1];

  if (node->cfg.step_mask && din[node->n_inputs - 1])
    memset (din[node->n_inputs - 1], 0,
            sizeof (double) * batch * kilt_shape_size (&node->in_shape[node->n_inputs - 1]));
  if (din[0])
    for (gsize bc = 0; bc < (gsize)batch * channels; bc++)
      {
        double n = 0;
        for (gsize s = 0; s < spatial; s++)
          n += kilt_ref_step_kept (node, m, bc / channels, s);
        for (gsize s = 0; s < spatial; s++)
          din[0][bc * spatial + s]
              = kilt_ref_step_kept (node, m, bc / channels, s) ? dout[bc] / n : 0.0;
      }
}

/* ---- global max --------------------------------------------------------------------------- */

static gboolean
gmp_launch (KiltNode *node, KiltExec *ex, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (
      ex->ctx, forward ? "kilt_global_max_pool_forward" : "kilt_global_max_pool_backward", error);
  cl_int err = CL_SUCCESS;
  cl_uint planes = ex->batch * node->in_shape[0].c;
  cl_uint spatial = node->in_shape[0].h * node->in_shape[0].w;

  if (!k)
    return FALSE;
  if (forward)
    {
      KILT_ARG (k, 0, node->out, err);
      KILT_ARG (k, 1, src->out, err);
      KILT_ARG (k, 2, planes, err);
      KILT_ARG (k, 3, spatial, err);
    }
  else
    {
      KILT_ARG (k, 0, src->dout, err);
      KILT_ARG (k, 1, node->dout, err);
      KILT_ARG (k, 2, src->out, err);
      KILT_ARG (k, 3, planes, err);
      KILT_ARG (k, 4, spatial, err);
      KILT_ARG (k, 5, node->din_beta[0], err);
    }
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, planes, error);
}

static gboolean
gmp_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  return gmp_launch (node, ex, TRUE, error);
}

static gboolean
gmp_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  if (!node->din_needed[0])
    return TRUE;
  return gmp_launch (node, ex, FALSE, error);
}

static gsize
gmp_arg (const double *plane, gsize spatial)
{
  gsize arg = 0;

  for (gsize i = 1; i < spatial; i++)
    if (plane[i] > plane[arg])
      arg = i;
  return arg;
}

static void
gmp_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  gsize spatial = (gsize)node->in_shape[0].h * node->in_shape[0].w;

  for (gsize bc = 0; bc < (gsize)batch * node->in_shape[0].c; bc++)
    out[bc] = in[0][bc * spatial + gmp_arg (in[0] + bc * spatial, spatial)];
}

static void
gmp_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  gsize spatial = (gsize)node->in_shape[0].h * node->in_shape[0].w;

  if (!din[0])
    return;
  for (gsize bc = 0; bc < (gsize)batch * node->in_shape[0].c; bc++)
    {
      gsize arg = gmp_arg (in[0] + bc * spatial, spatial);
      for (gsize s = 0; s < spatial; s++)
        din[0][bc * spatial + s] = s == arg ? dout[bc] : 0.0;
    }
}

const KiltLayerClass kilt_max_pool2d_class = {
  .type = KILT_LAYER_MAX_POOL2D,
  .name = "MaxPooling2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = pool_infer,
  .flops = pool_flops,
  .saved_floats = max_pool_saved_floats,
  .forward = pool_forward,
  .backward = pool_backward,
  .ref_forward = pool_ref_forward,
  .ref_backward = pool_ref_backward,
};

const KiltLayerClass kilt_avg_pool2d_class = {
  .type = KILT_LAYER_AVG_POOL2D,
  .name = "AveragePooling2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = pool_infer,
  .flops = pool_flops,
  .forward = pool_forward,
  .backward = pool_backward,
  .ref_forward = pool_ref_forward,
  .ref_backward = pool_ref_backward,
};

const KiltLayerClass kilt_global_avg_pool2d_class = {
  .type = KILT_LAYER_GLOBAL_AVG_POOL2D,
  .name = "GlobalAveragePooling2D",
  .min_inputs = 1,
  .max_inputs = 2,
  .infer = gap_infer,
  .flops = gap_flops,
  .forward = gap_forward,
  .backward = gap_backward,
  .ref_forward = gap_ref_forward,
  .ref_backward = gap_ref_backward,
};

const KiltLayerClass kilt_global_max_pool2d_class = {
  .type = KILT_LAYER_GLOBAL_MAX_POOL2D,
  .name = "GlobalMaxPooling2D",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = gap_infer,
  .flops = gap_flops,
  .forward = gmp_forward,
  .backward = gmp_backward,
  .ref_forward = gmp_ref_forward,
  .ref_backward = gmp_ref_backward,
};
