/* Embedding: integer ids (steps of them per sample) looked up in a trainable table, giving the
 * sequence (output_dim, 1, steps) that Conv1D, the 1-D poolings, Flatten and Dense read. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

#include <math.h>

/* Parameters: the table, input_dim rows of output_dim floats, as Keras keeps `embeddings`.
 * The ids come as floats (the data set's features); ids are not differentiable, so the layer
 * gives its input no gradient (zeros, where one is asked for). */

/* Every integer up to 2^24 is a float, so every id of a larger table could not be told apart
 * from its neighbours once read as the data set's float. */
#define EMBEDDING_MAX_ROWS (1u << 24)

static gboolean
embedding_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  guint rows = node->cfg.input_dim, dim = node->cfg.units;

  if (rows == 0 || rows > EMBEDDING_MAX_ROWS)
    {
      kilt_layer_set_error (error, node, "input_dim must be from 1 to %u, got %u",
                            EMBEDDING_MAX_ROWS, rows);
      return FALSE;
    }
  if (dim == 0)
    {
      kilt_layer_set_error (error, node, "output_dim must be at least 1");
      return FALSE;
    }
  if (in->h != 1 || in->w != 1)
    {
      kilt_layer_set_error (error, node,
                            "expects a vector of ids (steps), got %ux%ux%u; Kilt embeds one "
                            "sequence of ids per sample",
                            in->h, in->w, in->c);
      return FALSE;
    }
  if ((guint64)rows * dim > G_MAXUINT32 || (guint64)in->c * dim > G_MAXUINT32)
    {
      kilt_layer_set_error (error, node, "a table of %u x %u (or its output) is too large", rows,
                            dim);
      return FALSE;
    }
  node->out_shape = (KiltShape){ dim, 1, in->c };
  node->n_params = (gsize)rows * dim;
  return TRUE;
}

/* Keras' default embeddings_initializer: uniform in [-0.05, 0.05] (init_value). */
static void
embedding_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  for (gsize i = 0; i < node->n_params; i++)
    params[i] = (float)((2.0 * kilt_rng_uniform (rng) - 1.0) * node->cfg.init_value);
}

static gboolean
embedding_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_kernel k = kilt_context_kernel (ex->ctx, "kilt_embedding_forward", error);
  cl_int err = CL_SUCCESS;
  cl_uint pofs = (cl_uint)node->param_offset, rows = node->cfg.input_dim, dim = node->cfg.units;
  cl_uint steps = node->in_shape[0].c, batch = ex->batch;

  if (!k)
    return FALSE;
  KILT_ARG (k, 0, node->out, err);
  KILT_ARG (k, 1, src->out, err);
  KILT_ARG (k, 2, ex->params, err);
  KILT_ARG (k, 3, pofs, err);
  KILT_ARG (k, 4, rows, err);
  KILT_ARG (k, 5, dim, err);
  KILT_ARG (k, 6, steps, err);
  KILT_ARG (k, 7, batch, err);
  g_assert (err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, k, steps, dim, batch, error);
}

/* How many work-items share one column of the table's gradient: each walks every position of
 * the batch, so a CPU (a few cores) wants few, a GPU enough to fill it. */
static guint
embedding_parts (const KiltNode *node, const KiltDeviceInfo *info)
{
  guint want = kilt_layer_use_rows (info, "KILT_EMBEDDING_KERNEL")
                   ? 2 * MAX (info->compute_units, 1)
                   : MAX (4096 / node->cfg.units, 1);

  return MIN (want, node->cfg.input_dim);
}

static gboolean
embedding_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  cl_int err = CL_SUCCESS;
  cl_uint gofs = (cl_uint)node->grad_offset, rows = node->cfg.input_dim, dim = node->cfg.units;
  cl_uint steps = node->in_shape[0].c, batch = ex->batch;
  cl_uint parts = embedding_parts (node, ex->ctx->info);
  cl_kernel k;

  if (!node->frozen)
    {
      if (!(k = kilt_context_kernel (ex->ctx, "kilt_embedding_backward", error)))
        return FALSE;
      KILT_ARG (k, 0, ex->grads, err);
      KILT_ARG (k, 1, gofs, err);
      KILT_ARG (k, 2, src->out, err);
      KILT_ARG (k, 3, node->dout, err);
      KILT_ARG (k, 4, rows, err);
      KILT_ARG (k, 5, dim, err);
      KILT_ARG (k, 6, steps, err);
      KILT_ARG (k, 7, batch, err);
      KILT_ARG (k, 8, parts, err);
      g_assert (err == CL_SUCCESS);
      if (!kilt_layer_launch3 (ex, k, dim, parts, 1, error))
        return FALSE;
    }
  /* The ids have no gradient: an input that asks for one (a layer below that trains) gets
   * zeros, or keeps what other consumers gave it. */
  if (node->din_needed[0] && node->din_beta[0] == 0.0f)
    {
      cl_float zero = 0.0f;
      err = clEnqueueFillBuffer (ex->ctx->queue, src->dout, &zero, sizeof zero, 0,
                                 4 * (gsize)batch * steps, 0, NULL, NULL);
      if (err != CL_SUCCESS)
        {
          kilt_layer_set_error (error, node, "clearing the input gradient failed (%d)", err);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

/* As the kernel: truncated towards zero, -1 outside the table (NaN included). */
static long
embedding_ref_row (double x, guint rows)
{
  return x >= 0.0 && x < (double)rows ? (long)x : -1;
}

static void
embedding_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed,
                       guint64 step, const double *const *in, const double *params, double *state,
                       double *out)
{
  gsize steps = node->in_shape[0].c, dim = node->cfg.units;

  for (gsize n = 0; n < batch; n++)
    for (gsize t = 0; t < steps; t++)
      {
        long r = embedding_ref_row (in[0][n * steps + t], node->cfg.input_dim);
        for (gsize d = 0; d < dim; d++)
          out[(n * dim + d) * steps + t] = r < 0 ? 0.0 : params[(gsize)r * dim + d];
      }
}

static void
embedding_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                        const double *const *in, const double *params, const double *state,
                        const double *out, const double *dout, double **din, double *dparams)
{
  gsize steps = node->in_shape[0].c, dim = node->cfg.units;

  for (gsize i = 0; i < node->n_params; i++)
    dparams[i] = 0.0;
  for (gsize n = 0; n < batch; n++)
    for (gsize t = 0; t < steps; t++)
      {
        long r = embedding_ref_row (in[0][n * steps + t], node->cfg.input_dim);
        if (din[0])
          din[0][n * steps + t] = 0.0;
        if (r < 0)
          continue;
        for (gsize d = 0; d < dim; d++)
          dparams[(gsize)r * dim + d] += dout[(n * dim + d) * steps + t];
      }
}

const KiltLayerClass kilt_embedding_class = {
  .type = KILT_LAYER_EMBEDDING,
  .name = "Embedding",
  .min_inputs = 1,
  .max_inputs = 1,
  .infer = embedding_infer,
  .init = embedding_init,
  /* A lookup: no multiply-adds (Keras and PyTorch count none either). */
  .forward = embedding_forward,
  .backward = embedding_backward,
  .ref_forward = embedding_ref_forward,
  .ref_backward = embedding_ref_backward,
};
