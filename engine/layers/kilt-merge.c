/* Merge layers: Add, Subtract, Average, Maximum, Minimum and Multiply (element-wise over 2 to 8
 * inputs; Multiply also scales by a per-channel input) and Concatenate (along channels). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <string.h>

static gboolean
merge_check_count (KiltNode *node, GError **error)
{
  if (node->n_inputs < 2 || node->n_inputs > KILT_MAX_INPUTS)
    {
      kilt_layer_set_error (error, node, "takes 2 to %d inputs, got %u", KILT_MAX_INPUTS,
                            node->n_inputs);
      return FALSE;
    }
  return TRUE;
}

/* ---- Add ------------------------------------------------------------------------------------- */

static gboolean
add_infer (KiltNode *node, GError **error)
{
  const KiltShape *a = &node->in_shape[0];

  if (!merge_check_count (node, error))
    return FALSE;
  for (guint i = 1; i < node->n_inputs; i++)
    {
      const KiltShape *b = &node->in_shape[i];
      if (a->c != b->c || a->h != b->h || a->w != b->w)
        {
          kilt_layer_set_error (error, node,
                                "inputs must have the same shape: input 1 is %ux%ux%u, input "
                                "%u is %ux%ux%u (height x width x channels)",
                                a->h, a->w, a->c, i + 1, b->h, b->w, b->c);
          return FALSE;
        }
    }
  node->out_shape = *a;
  return TRUE;
}

static guint64
add_flops (const KiltNode *node)
{
  return (guint64)(node->n_inputs - 1) * kilt_shape_size (&node->out_shape);
}

static gboolean
add_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_int err = CL_SUCCESS;
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_add_n", error);
  cl_uint count = (cl_uint)n, n_inputs = node->n_inputs;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, count, err);
  KILT_ARG (k, 2, n_inputs, err);
  for (guint i = 0; i < KILT_MAX_INPUTS; i++)
    {
      /* The kernel reads only the first n_inputs; the rest must still be valid buffers. */
      KiltNode *src = kilt_exec_input (ex, node, i < node->n_inputs ? i : 0);
      KILT_ARG (k, 3 + i, src->out, err);
    }
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
add_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_uint count = (cl_uint)n;
  float one = 1.0f;

  /* In input order: the executor gives the first of repeated inputs beta 0, the rest 1. */
  for (guint i = 0; i < node->n_inputs; i++)
    {
      KiltNode *src = kilt_exec_input (ex, node, i);
      cl_int err = CL_SUCCESS;
      cl_kernel k;

      if (!node->din_needed[i])
        continue;
      k = kilt_context_kernel (ex->ctx, "kilt_axpby", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, src->dout, err);
      KILT_ARG (k, 1, node->dout, err);
      KILT_ARG (k, 2, one, err);
      KILT_ARG (k, 3, node->din_beta[i], err);
      KILT_ARG (k, 4, count, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ex->ctx, k, n, error))
        return FALSE;
    }
  return TRUE;
}

static void
add_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (gsize j = 0; j < n; j++)
    {
      double v = 0;
      for (guint i = 0; i < node->n_inputs; i++)
        v += in[i][j];
      out[j] = v;
    }
}

static void
add_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (guint i = 0; i < node->n_inputs; i++)
    if (din[i])
      memcpy (din[i], dout, sizeof (double) * n);
}

const KiltLayerClass kilt_add_class = {
  .type = KILT_LAYER_ADD,
  .name = "Add",
  .min_inputs = 2,
  .max_inputs = KILT_MAX_INPUTS,
  .infer = add_infer,
  .flops = add_flops,
  .forward = add_forward,
  .backward = add_backward,
  .ref_forward = add_ref_forward,
  .ref_backward = add_ref_backward,
};

/* ---- Concatenate along channels ----------------------------------------------------------- */

static gboolean
concat_infer (KiltNode *node, GError **error)
{
  const KiltShape *a = &node->in_shape[0];
  guint c = 0;

  if (!merge_check_count (node, error))
    return FALSE;
  for (guint i = 0; i < node->n_inputs; i++)
    {
      const KiltShape *b = &node->in_shape[i];
      if (a->h != b->h || a->w != b->w)
        {
          kilt_layer_set_error (error, node,
                                "joins along channels, so inputs must agree on height and "
                                "width: input 1 is %ux%ux%u, input %u is %ux%ux%u (height x "
                                "width x channels)",
                                a->h, a->w, a->c, i + 1, b->h, b->w, b->c);
          return FALSE;
        }
      c += b->c;
    }
  node->out_shape = (KiltShape){ c, a->h, a->w };
  return TRUE;
}

/* Forward copies input @i into channels from @c_off on; backward takes its slice of dout. */
static gboolean
concat_launch (KiltNode *node, KiltExec *ex, guint i, guint c_off, gboolean forward, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, i);
  cl_uint c_in = node->in_shape[i].c, c_out = node->out_shape.c, off = c_off;
  cl_uint sp = node->out_shape.h * node->out_shape.w;
  cl_uint n = ex->batch * c_in * sp;
  cl_mem dst = forward ? node->out : src->dout, from = forward ? src->out : node->dout;
  cl_int err = CL_SUCCESS;
  cl_kernel k;

  k = kilt_context_kernel (ex->ctx, forward ? "kilt_concat_forward" : "kilt_concat_backward",
                           error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, dst, err);
  KILT_ARG (k, 1, from, err);
  KILT_ARG (k, 2, c_in, err);
  KILT_ARG (k, 3, c_out, err);
  KILT_ARG (k, 4, off, err);
  KILT_ARG (k, 5, sp, err);
  KILT_ARG (k, 6, n, err);
  if (!forward)
    KILT_ARG (k, 7, node->din_beta[i], err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
concat_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  guint c_off = 0;

  for (guint i = 0; i < node->n_inputs; i++)
    {
      if (!concat_launch (node, ex, i, c_off, TRUE, error))
        return FALSE;
      c_off += node->in_shape[i].c;
    }
  return TRUE;
}

static gboolean
concat_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  guint c_off = 0;

  /* In input order, so a repeated input is overwritten first and added to after. */
  for (guint i = 0; i < node->n_inputs; i++)
    {
      if (node->din_needed[i] && !concat_launch (node, ex, i, c_off, FALSE, error))
        return FALSE;
      c_off += node->in_shape[i].c;
    }
  return TRUE;
}

static void
concat_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                    guint64 step, const double *const *in, const double *params, double *state,
                    double *out)
{
  gsize sp = (gsize)node->out_shape.h * node->out_shape.w, c_out = node->out_shape.c;
  gsize c_off = 0;

  for (guint i = 0; i < node->n_inputs; i++)
    {
      gsize c_in = node->in_shape[i].c;
      for (guint b = 0; b < batch; b++)
        for (gsize c = 0; c < c_in; c++)
          for (gsize s = 0; s < sp; s++)
            out[(b * c_out + c_off + c) * sp + s] = in[i][(b * c_in + c) * sp + s];
      c_off += c_in;
    }
}

static void
concat_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                     const double *const *in, const double *params, const double *state,
                     const double *out, const double *dout, double **din, double *dparams)
{
  gsize sp = (gsize)node->out_shape.h * node->out_shape.w, c_out = node->out_shape.c;
  gsize c_off = 0;

  for (guint i = 0; i < node->n_inputs; i++)
    {
      gsize c_in = node->in_shape[i].c;
      if (din[i])
        for (guint b = 0; b < batch; b++)
          for (gsize c = 0; c < c_in; c++)
            for (gsize s = 0; s < sp; s++)
              din[i][(b * c_in + c) * sp + s] = dout[(b * c_out + c_off + c) * sp + s];
      c_off += c_in;
    }
}

const KiltLayerClass kilt_concatenate_class = {
  .type = KILT_LAYER_CONCATENATE,
  .name = "Concatenate",
  .min_inputs = 2,
  .max_inputs = KILT_MAX_INPUTS,
  .infer = concat_infer,
  .forward = concat_forward,
  .backward = concat_backward,
  .ref_forward = concat_ref_forward,
  .ref_backward = concat_ref_backward,
};

/* ---- Subtract, Average, Maximum, Minimum ----------------------------------------------------- */

/* Values shared with kernels/merge.cl. */
typedef enum
{
  MERGE_SUBTRACT = 0,
  MERGE_AVERAGE = 1,
  MERGE_MAXIMUM = 2,
  MERGE_MINIMUM = 3,
} MergeOp;

static MergeOp
merge_op (const KiltNode *node)
{
  switch (node->type)
    {
      case KILT_LAYER_SUBTRACT:
        return MERGE_SUBTRACT;
      case KILT_LAYER_AVERAGE:
        return MERGE_AVERAGE;
      case KILT_LAYER_MAXIMUM:
        return MERGE_MAXIMUM;
      default:
        return MERGE_MINIMUM;
    }
}

static gboolean
merge_infer (KiltNode *node, GError **error)
{
  if (node->type == KILT_LAYER_SUBTRACT && node->n_inputs != 2)
    {
      kilt_layer_set_error (error, node, "takes exactly 2 inputs, got %u", node->n_inputs);
      return FALSE;
    }
  return add_infer (node, error);
}

static cl_int
merge_inputs (KiltNode *node, KiltExec *ex, cl_kernel k, cl_uint first)
{
  cl_int err = CL_SUCCESS;

  for (guint i = 0; i < KILT_MAX_INPUTS; i++)
    {
      KiltNode *src = kilt_exec_input (ex, node, i < node->n_inputs ? i : 0);
      err |= clSetKernelArg (k, first + i, sizeof (cl_mem), &src->out);
    }
  return err;
}

static gboolean
merge_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_int err = CL_SUCCESS, op = merge_op (node);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_merge_forward", error);
  cl_uint count = (cl_uint)n, n_inputs = node->n_inputs;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, count, err);
  KILT_ARG (k, 2, n_inputs, err);
  KILT_ARG (k, 3, op, err);
  err |= merge_inputs (node, ex, k, 4);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static gboolean
merge_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);
  cl_uint count = (cl_uint)n, n_inputs = node->n_inputs;
  cl_int op = merge_op (node);

  for (guint i = 0; i < node->n_inputs; i++)
    {
      KiltNode *src = kilt_exec_input (ex, node, i);
      cl_int err = CL_SUCCESS;
      cl_uint which = i;
      cl_kernel k;

      if (!node->din_needed[i])
        continue;
      k = kilt_context_kernel (ex->ctx, "kilt_merge_backward", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, src->dout, err);
      KILT_ARG (k, 1, node->dout, err);
      KILT_ARG (k, 2, count, err);
      KILT_ARG (k, 3, n_inputs, err);
      KILT_ARG (k, 4, op, err);
      KILT_ARG (k, 5, which, err);
      KILT_ARG (k, 6, node->din_beta[i], err);
      err |= merge_inputs (node, ex, k, 7);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ex->ctx, k, n, error))
        return FALSE;
    }
  return TRUE;
}

/* The input Maximum / Minimum takes at element @j: the first extreme. */
static guint
merge_ref_pick (const KiltNode *node, const double *const *in, gsize j)
{
  guint best = 0;

  for (guint i = 1; i < node->n_inputs; i++)
    if (merge_op (node) == MERGE_MAXIMUM ? in[i][j] > in[best][j] : in[i][j] < in[best][j])
      best = i;
  return best;
}

static void
merge_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                   const double *const *in, const double *params, double *state, double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (gsize j = 0; j < n; j++)
    switch (merge_op (node))
      {
        case MERGE_SUBTRACT:
          out[j] = in[0][j] - in[1][j];
          break;
        case MERGE_AVERAGE:
          {
            double v = 0;
            for (guint i = 0; i < node->n_inputs; i++)
              v += in[i][j];
            out[j] = v / node->n_inputs;
            break;
          }
        default:
          out[j] = in[merge_ref_pick (node, in, j)][j];
      }
}

static void
merge_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                    const double *const *in, const double *params, const double *state,
                    const double *out, const double *dout, double **din, double *dparams)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (guint i = 0; i < node->n_inputs; i++)
    if (din[i])
      for (gsize j = 0; j < n; j++)
        switch (merge_op (node))
          {
            case MERGE_SUBTRACT:
              din[i][j] = i == 0 ? dout[j] : -dout[j];
              break;
            case MERGE_AVERAGE:
              din[i][j] = dout[j] / node->n_inputs;
              break;
            default:
              din[i][j] = merge_ref_pick (node, in, j) == i ? dout[j] : 0.0;
          }
}

#define MERGE_CLASS(sym, t, keras)                                                                 \
  const KiltLayerClass sym = {                                                                     \
    .type = t,                                                                                     \
    .name = keras,                                                                                 \
    .min_inputs = 2,                                                                               \
    .max_inputs = KILT_MAX_INPUTS,                                                                 \
    .infer = merge_infer,                                                                          \
    .flops = add_flops,                                                                            \
    .forward = merge_forward,                                                                      \
    .backward = merge_backward,                                                                    \
    .ref_forward = merge_ref_forward,                                                              \
    .ref_backward = merge_ref_backward,                                                            \
  }

MERGE_CLASS (kilt_subtract_class, KILT_LAYER_SUBTRACT, "Subtract");
MERGE_CLASS (kilt_average_class, KILT_LAYER_AVERAGE, "Average");
MERGE_CLASS (kilt_maximum_class, KILT_LAYER_MAXIMUM, "Maximum");
MERGE_CLASS (kilt_minimum_class, KILT_LAYER_MINIMUM, "Minimum");

/* ---- Multiply: element-wise product; an input of shape (C, 1, 1) multiplies each channel's
 * plane (Keras broadcasts it so in squeeze-and-excitation blocks). ------------------------------
 */

static gboolean
mul_broadcasts (const KiltNode *node, guint i)
{
  const KiltShape *s = &node->in_shape[i];

  return s->h * s->w == 1 && node->out_shape.h * node->out_shape.w != 1;
}

static gboolean
mul_infer (KiltNode *node, GError **error)
{
  KiltShape out = node->in_shape[0];

  if (!merge_check_count (node, error))
    return FALSE;
  for (guint i = 1; i < node->n_inputs; i++)
    if (node->in_shape[i].h * node->in_shape[i].w > out.h * out.w)
      out = node->in_shape[i];
  for (guint i = 0; i < node->n_inputs; i++)
    {
      const KiltShape *b = &node->in_shape[i];
      gboolean same = b->c == out.c && b->h == out.h && b->w == out.w;
      if (!same && !(b->c == out.c && b->h == 1 && b->w == 1))
        {
          kilt_layer_set_error (error, node,
                                "input %u is %ux%ux%u; Multiply takes inputs of the output's "
                                "shape %ux%ux%u or 1x1x%u (height x width x channels)",
                                i + 1, b->h, b->w, b->c, out.h, out.w, out.c, out.c);
          return FALSE;
        }
    }
  node->out_shape = out;
  return TRUE;
}

static guint64
mul_flops (const KiltNode *node)
{
  return (guint64)(node->n_inputs - 1) * kilt_shape_size (&node->out_shape);
}

/* The product's gradient for input @skip goes in the workspace; backward needs it per input. */
static gsize
mul_workspace (const KiltNode *node, guint batch, const KiltDeviceInfo *info)
{
  return (gsize)batch * kilt_shape_size (&node->out_shape);
}

static gboolean
mul_launch (KiltExec *ex, const char *name, cl_mem y, cl_mem x, gsize n, guint group,
            GError **error)
{
  cl_kernel k = kilt_context_kernel (ex->ctx, name, error);
  cl_int err = CL_SUCCESS;
  cl_uint count = (cl_uint)n, g = group;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, y, err);
  KILT_ARG (k, 1, x, err);
  KILT_ARG (k, 2, count, err);
  KILT_ARG (k, 3, g, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, k, n, error);
}

static guint
mul_group (const KiltNode *node, guint i)
{
  return mul_broadcasts (node, i) ? node->out_shape.h * node->out_shape.w : 1;
}

static gboolean
mul_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);

  if (!mul_launch (ex, "kilt_mul_copy", node->out, kilt_exec_input (ex, node, 0)->out, n,
                   mul_group (node, 0), error))
    return FALSE;
  for (guint i = 1; i < node->n_inputs; i++)
    if (!mul_launch (ex, "kilt_mul_inplace", node->out, kilt_exec_input (ex, node, i)->out, n,
                     mul_group (node, i), error))
      return FALSE;
  return TRUE;
}

static gboolean
mul_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  gsize n = ex->batch * kilt_shape_size (&node->out_shape);

  for (guint i = 0; i < node->n_inputs; i++)
    {
      KiltNode *src = kilt_exec_input (ex, node, i);
      guint group = mul_group (node, i);
      cl_uint m = (cl_uint)(n / group), g = group;
      cl_int err = CL_SUCCESS;
      cl_kernel k;

      if (!node->din_needed[i])
        continue;
      if (!kilt_layer_copy_scaled (ex, ex->workspace, node->dout, n, 0.0f, error))
        return FALSE;
      for (guint j = 0; j < node->n_inputs; j++)
        if (j != i
            && !mul_launch (ex, "kilt_mul_inplace", ex->workspace,
                            kilt_exec_input (ex, node, j)->out, n, mul_group (node, j), error))
          return FALSE;
      k = kilt_context_kernel (ex->ctx, "kilt_mul_group_sum", error);
      if (!k)
        return FALSE;
      KILT_ARG (k, 0, src->dout, err);
      KILT_ARG (k, 1, ex->workspace, err);
      KILT_ARG (k, 2, m, err);
      KILT_ARG (k, 3, g, err);
      KILT_ARG (k, 4, node->din_beta[i], err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_context_launch_1d (ex->ctx, k, m, error))
        return FALSE;
    }
  return TRUE;
}

static void
mul_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (gsize j = 0; j < n; j++)
    {
      double v = 1;
      for (guint i = 0; i < node->n_inputs; i++)
        v *= in[i][j / mul_group (node, i)];
      out[j] = v;
    }
}

static void
mul_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  gsize n = batch * kilt_shape_size (&node->out_shape);

  for (guint i = 0; i < node->n_inputs; i++)
    {
      guint group = mul_group (node, i);
      if (!din[i])
        continue;
      memset (din[i], 0, sizeof (double) * (n / group));
      for (gsize j = 0; j < n; j++)
        {
          double v = dout[j];
          for (guint k = 0; k < node->n_inputs; k++)
            if (k != i)
              v *= in[k][j / mul_group (node, k)];
          din[i][j / group] += v;
        }
    }
}

const KiltLayerClass kilt_multiply_class = {
  .type = KILT_LAYER_MULTIPLY,
  .name = "Multiply",
  .min_inputs = 2,
  .max_inputs = KILT_MAX_INPUTS,
  .infer = mul_infer,
  .flops = mul_flops,
  .workspace_floats = mul_workspace,
  .forward = mul_forward,
  .backward = mul_backward,
  .ref_forward = mul_ref_forward,
  .ref_backward = mul_ref_backward,
};
