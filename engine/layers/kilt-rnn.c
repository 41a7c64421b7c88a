/* LSTM and GRU over a sequence (features, 1, steps), Keras' gate orders and weight layouts:
 * the input projection of every step as one GEMM, then per step a GEMM for the recurrent
 * part and one fused gate kernel (kernels/rnn.cl); backward through time the mirror. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"
#include "kilt-gemm.h"

#include <math.h>
#include <string.h>

/* The parameters, as Keras keeps them (so its weights copy as they are): kernel
 * (features, G units), recurrent_kernel (units, G units), bias (G units; a GRU with
 * reset_after (2, 3 units), the input's row then the recurrent's), G = 4 for LSTM (i, f, c,
 * o), 3 for GRU (z, r, h). */
typedef struct
{
  gsize f, steps, u, gates, batch;
  gsize w_off, u_off, b_off; /* from the node's first parameter */
  gsize n_bias;
} Dims;

static Dims
dims_of (const KiltNode *node, guint batch)
{
  Dims d;

  d.f = node->in_shape[0].c;
  d.steps = node->in_shape[0].w;
  d.u = node->cfg.units;
  d.gates = node->type == KILT_LAYER_LSTM ? 4 : 3;
  d.batch = batch;
  d.w_off = 0;
  d.u_off = d.f * d.gates * d.u;
  d.b_off = d.u_off + d.u * d.gates * d.u;
  d.n_bias = !node->cfg.use_bias                                     ? 0
             : node->type == KILT_LAYER_GRU && node->cfg.reset_after ? 2 * d.gates * d.u
                                                                     : d.gates * d.u;
  return d;
}

/* ---- shapes, parameters --------------------------------------------------------------------- */

static gboolean
rnn_infer (KiltNode *node, GError **error)
{
  const KiltShape *in = &node->in_shape[0];
  KiltActivation ra = node->cfg.recurrent_activation;
  Dims d;

  if (node->cfg.units == 0)
    {
      kilt_layer_set_error (error, node, "units must be at least 1");
      return FALSE;
    }
  if (in->h != 1)
    {
      kilt_layer_set_error (
          error, node,
          "expects a sequence (steps, features), Kilt's (features, 1, steps); got "
          "%ux%ux%u (an image?)",
          in->c, in->h, in->w);
      return FALSE;
    }
  if (node->cfg.activation != KILT_ACT_TANH)
    {
      kilt_layer_set_error (error, node, "activation %s is not supported; only tanh is",
                            kilt_activation_name (node->cfg.activation));
      return FALSE;
    }
  if (ra != KILT_ACT_SIGMOID && ra != KILT_ACT_HARD_SIGMOID && ra != KILT_ACT_HARD_SIGMOID_K2)
    {
      kilt_layer_set_error (error, node,
                            "recurrent_activation %s is not supported; sigmoid or hard_sigmoid is",
                            kilt_activation_name (ra));
      return FALSE;
    }
  if (node->cfg.step_mask == KILT_STEP_MASK_NONE && node->n_inputs > 1)
    {
      kilt_layer_set_error (error, node,
                            "takes one sequence (and a step mask's source), got %u "
                            "inputs",
                            node->n_inputs);
      return FALSE;
    }
  if (!kilt_layer_check_step_mask (node, in->w, error))
    return FALSE;
  d = dims_of (node, 1);
  node->out_shape
      = node->cfg.return_sequences ? (KiltShape){ d.u, 1, d.steps } : (KiltShape){ d.u, 1, 1 };
  node->n_params = d.b_off + d.n_bias;
  return TRUE;
}

/* Keras' Orthogonal for a (units, G units) matrix: the QR of a (G units, units) Gaussian
 * matrix with R's diagonal made positive, transposed; Gram-Schmidt gives that Q directly. */
static void
init_orthogonal (float *w, gsize rows, gsize cols, KiltRng *rng)
{
  /* a[k][j]: k < cols (the tall side), j < rows: column j of the tall matrix. */
  g_autofree double *a = g_new (double, rows *cols);

  for (gsize j = 0; j < rows; j++)
    for (;;)
      {
        double norm = 0;
        for (gsize k = 0; k < cols; k++)
          a[k * rows + j] = kilt_rng_normal (rng);
        /* Twice, for orthogonality to rounding (modified Gram-Schmidt, reorthogonalised). */
        for (int pass = 0; pass < 2; pass++)
          for (gsize i = 0; i < j; i++)
            {
              double dot = 0;
              for (gsize k = 0; k < cols; k++)
                dot += a[k * rows + i] * a[k * rows + j];
              for (gsize k = 0; k < cols; k++)
                a[k * rows + j] -= dot * a[k * rows + i];
            }
        for (gsize k = 0; k < cols; k++)
          norm += a[k * rows + j] * a[k * rows + j];
        norm = sqrt (norm);
        if (norm < 1e-6)
          continue; /* a draw (nearly) in the span of the others: draw again */
        for (gsize k = 0; k < cols; k++)
          a[k * rows + j] /= norm;
        break;
      }
  for (gsize j = 0; j < rows; j++)
    for (gsize k = 0; k < cols; k++)
      w[j * cols + k] = (float)a[k * rows + j];
}

static void
rnn_init (const KiltNode *node, float *params, float *state, KiltRng *rng)
{
  Dims d = dims_of (node, 1);
  gsize gu = d.gates * d.u;

  (void)state;
  kilt_layer_init_weights (params + d.w_off, d.f * gu, &node->cfg, (guint)d.f, (guint)gu, rng);
  init_orthogonal (params + d.u_off, d.u, gu, rng);
  for (gsize i = 0; i < d.n_bias; i++)
    params[d.b_off + i] = 0.0f;
  if (node->type == KILT_LAYER_LSTM && node->cfg.use_bias && node->cfg.unit_forget_bias)
    for (gsize i = 0; i < d.u; i++)
      params[d.b_off + d.u + i] = 1.0f;
}

static guint64
rnn_flops (const KiltNode *node)
{
  Dims d = dims_of (node, 1);

  return 2ull * d.steps * (d.f + d.u) * d.gates * d.u + 10ull * d.steps * d.u;
}

/* Saved from forward to backward, time-major: the activated gates (G units a row), LSTM's
 * cell states or GRU's recurrent candidate term (or r h), and the states. */
static gsize
rnn_saved_floats (const KiltNode *node, guint batch)
{
  Dims d = dims_of (node, batch);

  return d.steps * d.batch * (d.gates + 2) * d.u;
}

/* Where each scratch array sits in the workspace: the steps' input rows first (forward's
 * projection and backward's weight gradient), then the gates' gradients and the carried
 * state gradients; GRU's forward puts its per-step recurrent product after the input rows. */
typedef struct
{
  gsize xt, dz, dz2, dh, dc, r, total;
} Ws;

static Ws
ws_of (const Dims *d)
{
  Ws w;
  gsize rows = d->steps * d->batch, gu = d->gates * d->u;

  w.xt = 0;
  w.r = w.dz = rows * d->f;
  w.dz2 = w.dz + rows * gu;
  w.dh = w.dz2 + (d->gates == 3 ? rows * gu : 0);
  w.dc = w.dh + d->batch * d->u; /* LSTM's carried dc, GRU's d(r h) */
  w.total = w.dc + d->batch * d->u;
  return w;
}

static gsize
rnn_workspace_floats (const KiltNode *node, guint batch, const KiltDeviceInfo *info)
{
  Dims d = dims_of (node, batch);

  (void)info;
  return ws_of (&d).total;
}

/* ---- device ---------------------------------------------------------------------------------- */

/* The kernels' output mode: 0 the last state, 1 every step's in processing order, 2 every
 * step's in the input's order (go_backwards with keep_time_order). */
static gint
seq_mode (const KiltNode *node)
{
  if (!node->cfg.return_sequences)
    return 0;
  return node->cfg.go_backwards && node->cfg.keep_time_order ? 2 : 1;
}

typedef struct
{
  cl_kernel k;
  cl_uint i;
  cl_int err;
} Args;

static gboolean
args_begin (Args *a, KiltExec *ex, const char *name, GError **error)
{
  a->k = kilt_context_kernel (ex->ctx, name, error);
  a->i = 0;
  a->err = CL_SUCCESS;
  return a->k != NULL;
}

static void
arg_mem (Args *a, cl_mem m)
{
  a->err |= clSetKernelArg (a->k, a->i++, sizeof m, &m);
}

static void
arg_uint (Args *a, gsize v)
{
  cl_uint u = (cl_uint)v;

  a->err |= clSetKernelArg (a->k, a->i++, sizeof u, &u);
}

static void
arg_int (Args *a, gint v)
{
  cl_int i = v;

  a->err |= clSetKernelArg (a->k, a->i++, sizeof i, &i);
}

static void
arg_float (Args *a, float v)
{
  a->err |= clSetKernelArg (a->k, a->i++, sizeof v, &v);
}

/* The step mask's arguments, which every step kernel takes last, and the direction. */
static void
arg_mask (Args *a, KiltNode *node, KiltExec *ex)
{
  a->err |= kilt_layer_step_mask_args (node, ex, a->k, a->i);
  a->i += 4;
  arg_int (a, node->cfg.go_backwards);
}

/* One work-item per (unit, sample). */
static gboolean
launch_units (KiltExec *ex, Args *a, const Dims *d, GError **error)
{
  g_assert (a->err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, a->k, d->u, d->batch, 1, error);
}

static gboolean
to_steps (KiltExec *ex, const KiltNode *node, const Dims *d, cl_mem x, GError **error)
{
  Args a;

  if (!args_begin (&a, ex, "kilt_rnn_to_steps", error))
    return FALSE;
  arg_mem (&a, ex->workspace);
  arg_uint (&a, 0);
  arg_mem (&a, x);
  arg_uint (&a, d->f);
  arg_uint (&a, d->steps);
  arg_uint (&a, d->batch);
  arg_int (&a, node->cfg.go_backwards);
  g_assert (a.err == CL_SUCCESS);
  return kilt_layer_launch3 (ex, a.k, d->f, d->steps, d->batch, error);
}

static gboolean
bias_grad (KiltExec *ex, gsize db_off, gsize dz_off, const Dims *d, GError **error)
{
  Args a;
  gsize gu = d->gates * d->u;

  if (!args_begin (&a, ex, "kilt_rnn_bias_grad", error))
    return FALSE;
  arg_mem (&a, ex->grads);
  arg_uint (&a, db_off);
  arg_mem (&a, ex->workspace);
  arg_uint (&a, dz_off);
  arg_uint (&a, d->steps * d->batch);
  arg_uint (&a, gu);
  g_assert (a.err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, a.k, gu, error);
}

static gboolean
zero_grads (KiltExec *ex, gsize off, gsize n, GError **error)
{
  Args a;

  if (!args_begin (&a, ex, "kilt_rnn_zero", error))
    return FALSE;
  arg_mem (&a, ex->grads);
  arg_uint (&a, off);
  arg_uint (&a, n);
  g_assert (a.err == CL_SUCCESS);
  return kilt_context_launch_1d (ex->ctx, a.k, n, error);
}

/* Common to both: the steps' input rows and their projection x W into the saved gate rows. */
static gboolean
project_input (KiltNode *node, KiltExec *ex, const Dims *d, GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize gu = d->gates * d->u;

  return to_steps (ex, node, d, src->out, error)
         && kilt_gemm (ex->ctx, FALSE, FALSE, d->steps * d->batch, gu, d->f, 1.0f, ex->workspace, 0,
                       d->f, ex->params, node->param_offset + d->w_off, gu, 0.0f, node->saved, 0,
                       gu, error);
}

static gboolean
lstm_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  Dims d = dims_of (node, ex->batch);
  gsize rows = d.steps * d.batch, gu = 4 * d.u;
  gsize c_off = rows * gu, h_off = c_off + rows * d.u, p = node->param_offset;

  if (!project_input (node, ex, &d, error))
    return FALSE;
  for (gsize t = 0; t < d.steps; t++)
    {
      Args a;
      if (t > 0
          && !kilt_gemm (ex->ctx, FALSE, FALSE, d.batch, gu, d.u, 1.0f, node->saved,
                         h_off + (t - 1) * d.batch * d.u, d.u, ex->params, p + d.u_off, gu, 1.0f,
                         node->saved, t * d.batch * gu, gu, error))
        return FALSE;
      if (!args_begin (&a, ex, "kilt_lstm_step", error))
        return FALSE;
      arg_mem (&a, node->saved);
      arg_uint (&a, 0);
      arg_uint (&a, c_off);
      arg_uint (&a, h_off);
      arg_mem (&a, node->out);
      arg_mem (&a, ex->params);
      arg_uint (&a, p + d.b_off);
      arg_int (&a, node->cfg.use_bias);
      arg_uint (&a, t);
      arg_uint (&a, d.batch);
      arg_uint (&a, d.u);
      arg_uint (&a, d.steps);
      arg_int (&a, node->cfg.recurrent_activation);
      arg_int (&a, seq_mode (node));
      arg_mask (&a, node, ex);
      if (!launch_units (ex, &a, &d, error))
        return FALSE;
    }
  return TRUE;
}

/* Common to both after the steps: the weight gradients from the gates' gradients at dz
 * (input side) and dzr (recurrent side; the same for LSTM), and the input's gradient. */
static gboolean
finish_backward (KiltNode *node, KiltExec *ex, const Dims *d, gsize dz, gsize dzr, gsize h_off,
                 GError **error)
{
  KiltNode *src = kilt_exec_input (ex, node, 0);
  gsize rows = d->steps * d->batch, gu = d->gates * d->u, g = node->grad_offset;
  gboolean split = node->type == KILT_LAYER_GRU && !node->cfg.reset_after;

  if (!node->frozen)
    {
      /* dW = X^T dz over every (step, sample) row. */
      if (!to_steps (ex, node, d, src->out, error)
          || !kilt_gemm (ex->ctx, TRUE, FALSE, d->f, gu, rows, 1.0f, ex->workspace, 0, d->f,
                         ex->workspace, dz, gu, 0.0f, ex->grads, g + d->w_off, gu, error))
        return FALSE;
      /* dU = h_{t-1}^T dz_t for t >= 1 (h_{-1} is 0); a reset-before GRU's candidate columns
       * take (r h)_{t}^T instead, every step. */
      if (d->steps == 1 && !zero_grads (ex, g + d->u_off, d->u * gu, error))
        return FALSE;
      if (d->steps > 1
          && !kilt_gemm (ex->ctx, TRUE, FALSE, d->u, split ? 2 * d->u : gu, rows - d->batch, 1.0f,
                         node->saved, h_off, d->u, ex->workspace, dzr + d->batch * gu, gu, 0.0f,
                         ex->grads, g + d->u_off, gu, error))
        return FALSE;
      if (split
          && !kilt_gemm (ex->ctx, TRUE, FALSE, d->u, d->u, rows, 1.0f, node->saved, rows * gu, d->u,
                         ex->workspace, dz + 2 * d->u, gu, 0.0f, ex->grads, g + d->u_off + 2 * d->u,
                         gu, error))
        return FALSE;
      if (node->cfg.use_bias && !bias_grad (ex, g + d->b_off, dz, d, error))
        return FALSE;
      if (d->n_bias == 2 * gu && !bias_grad (ex, g + d->b_off + gu, dzr, d, error))
        return FALSE;
    }
  if (node->din_needed[0])
    {
      Args a;
      if (!kilt_gemm (ex->ctx, FALSE, TRUE, rows, d->f, gu, 1.0f, ex->workspace, dz, gu, ex->params,
                      node->param_offset + d->w_off, gu, 0.0f, ex->workspace, 0, d->f, error))
        return FALSE;
      if (!args_begin (&a, ex, "kilt_rnn_from_steps", error))
        return FALSE;
      arg_mem (&a, src->dout);
      arg_mem (&a, ex->workspace);
      arg_uint (&a, 0);
      arg_uint (&a, d->f);
      arg_uint (&a, d->steps);
      arg_uint (&a, d->batch);
      arg_int (&a, node->cfg.go_backwards);
      arg_float (&a, node->din_beta[0]);
      g_assert (a.err == CL_SUCCESS);
      if (!kilt_layer_launch3 (ex, a.k, d->f, d->steps, d->batch, error))
        return FALSE;
    }
  return kilt_layer_step_mask_no_grad (node, ex, error);
}

static gboolean
lstm_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  Dims d = dims_of (node, ex->batch);
  Ws w = ws_of (&d);
  gsize rows = d.steps * d.batch, gu = 4 * d.u;
  gsize c_off = rows * gu, h_off = c_off + rows * d.u;

  for (gsize t = d.steps; t-- > 0;)
    {
      Args a;
      if (!args_begin (&a, ex, "kilt_lstm_step_backward", error))
        return FALSE;
      arg_mem (&a, node->saved);
      arg_uint (&a, 0);
      arg_uint (&a, c_off);
      arg_mem (&a, node->dout);
      arg_mem (&a, ex->workspace);
      arg_uint (&a, w.dz);
      arg_uint (&a, w.dh);
      arg_uint (&a, w.dc);
      arg_uint (&a, t);
      arg_uint (&a, d.batch);
      arg_uint (&a, d.u);
      arg_uint (&a, d.steps);
      arg_int (&a, node->cfg.recurrent_activation);
      arg_int (&a, seq_mode (node));
      arg_mask (&a, node, ex);
      if (!launch_units (ex, &a, &d, error))
        return FALSE;
      /* dh_{t-1} = dz_t U^T, added to what the kernel left: 0, or at a masked step the
       * gradient passed through */
      if (t > 0
          && !kilt_gemm (ex->ctx, FALSE, TRUE, d.batch, d.u, gu, 1.0f, ex->workspace,
                         w.dz + t * d.batch * gu, gu, ex->params, node->param_offset + d.u_off, gu,
                         1.0f, ex->workspace, w.dh, d.u, error))
        return FALSE;
    }
  return finish_backward (node, ex, &d, w.dz, w.dz, h_off, error);
}

static gboolean
gru_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  Dims d = dims_of (node, ex->batch);
  Ws w = ws_of (&d);
  gsize rows = d.steps * d.batch, gu = 3 * d.u, p = node->param_offset;
  gsize rh_off = rows * gu, h_off = rh_off + rows * d.u;
  gboolean after = node->cfg.reset_after;

  if (!project_input (node, ex, &d, error))
    return FALSE;
  for (gsize t = 0; t < d.steps; t++)
    {
      Args a;
      gsize hprev = h_off + (t > 0 ? t - 1 : 0) * d.batch * d.u;
      /* h U (all three parts with reset_after, else the gates' two) */
      if (t > 0
          && !kilt_gemm (ex->ctx, FALSE, FALSE, d.batch, after ? gu : 2 * d.u, d.u, 1.0f,
                         node->saved, hprev, d.u, ex->params, p + d.u_off, gu, 0.0f, ex->workspace,
                         w.r, gu, error))
        return FALSE;
      if (!args_begin (&a, ex, after ? "kilt_gru_step" : "kilt_gru_gates", error))
        return FALSE;
      arg_mem (&a, node->saved);
      arg_uint (&a, 0);
      arg_uint (&a, rh_off);
      arg_uint (&a, h_off);
      if (after)
        arg_mem (&a, node->out);
      arg_mem (&a, ex->params);
      arg_uint (&a, p + d.b_off);
      arg_int (&a, node->cfg.use_bias);
      arg_mem (&a, ex->workspace);
      arg_uint (&a, w.r);
      arg_int (&a, t > 0);
      arg_uint (&a, t);
      arg_uint (&a, d.batch);
      arg_uint (&a, d.u);
      if (after)
        arg_uint (&a, d.steps);
      arg_int (&a, node->cfg.recurrent_activation);
      if (after)
        {
          arg_int (&a, seq_mode (node));
          arg_mask (&a, node, ex);
        }
      if (!launch_units (ex, &a, &d, error))
        return FALSE;
      if (after)
        continue;
      /* (r h) U_h, then the candidate and the state */
      if (t > 0
          && !kilt_gemm (ex->ctx, FALSE, FALSE, d.batch, d.u, d.u, 1.0f, node->saved,
                         rh_off + t * d.batch * d.u, d.u, ex->params, p + d.u_off + 2 * d.u, gu,
                         0.0f, ex->workspace, w.r + 2 * d.u, gu, error))
        return FALSE;
      if (!args_begin (&a, ex, "kilt_gru_candidate", error))
        return FALSE;
      arg_mem (&a, node->saved);
      arg_uint (&a, 0);
      arg_uint (&a, h_off);
      arg_mem (&a, node->out);
      arg_mem (&a, ex->params);
      arg_uint (&a, p + d.b_off);
      arg_int (&a, node->cfg.use_bias);
      arg_mem (&a, ex->workspace);
      arg_uint (&a, w.r);
      arg_int (&a, t > 0);
      arg_uint (&a, t);
      arg_uint (&a, d.batch);
      arg_uint (&a, d.u);
      arg_uint (&a, d.steps);
      arg_int (&a, seq_mode (node));
      arg_mask (&a, node, ex);
      if (!launch_units (ex, &a, &d, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
gru_backward (KiltNode *node, KiltExec *ex, GError **error)
{
  Dims d = dims_of (node, ex->batch);
  Ws w = ws_of (&d);
  gsize rows = d.steps * d.batch, gu = 3 * d.u, p = node->param_offset;
  gsize rh_off = rows * gu, h_off = rh_off + rows * d.u;
  gboolean after = node->cfg.reset_after;

  for (gsize t = d.steps; t-- > 0;)
    {
      Args a;
      gsize dzt = w.dz + t * d.batch * gu;
      if (!args_begin (&a, ex, after ? "kilt_gru_step_backward" : "kilt_gru_backward_a", error))
        return FALSE;
      arg_mem (&a, node->saved);
      arg_uint (&a, 0);
      if (after)
        arg_uint (&a, rh_off);
      arg_uint (&a, h_off);
      arg_mem (&a, node->dout);
      arg_mem (&a, ex->workspace);
      arg_uint (&a, w.dz);
      if (after)
        arg_uint (&a, w.dz2);
      arg_uint (&a, w.dh);
      arg_uint (&a, t);
      arg_uint (&a, d.batch);
      arg_uint (&a, d.u);
      arg_uint (&a, d.steps);
      arg_int (&a, node->cfg.recurrent_activation);
      arg_int (&a, seq_mode (node));
      arg_mask (&a, node, ex);
      if (!launch_units (ex, &a, &d, error))
        return FALSE;
      if (after)
        {
          /* dh_{t-1} = dh_t z + dzr_t U^T */
          if (t > 0
              && !kilt_gemm (ex->ctx, FALSE, TRUE, d.batch, d.u, gu, 1.0f, ex->workspace,
                             w.dz2 + t * d.batch * gu, gu, ex->params, p + d.u_off, gu, 1.0f,
                             ex->workspace, w.dh, d.u, error))
            return FALSE;
          continue;
        }
      /* d(r h) = dz_h U_h^T, into the spare carried array */
      if (!kilt_gemm (ex->ctx, FALSE, TRUE, d.batch, d.u, d.u, 1.0f, ex->workspace, dzt + 2 * d.u,
                      gu, ex->params, p + d.u_off + 2 * d.u, gu, 0.0f, ex->workspace, w.dc, d.u,
                      error))
        return FALSE;
      if (!args_begin (&a, ex, "kilt_gru_backward_b", error))
        return FALSE;
      arg_mem (&a, node->saved);
      arg_uint (&a, 0);
      arg_uint (&a, h_off);
      arg_mem (&a, ex->workspace);
      arg_uint (&a, w.dz);
      arg_uint (&a, w.dh);
      arg_uint (&a, w.dc);
      arg_uint (&a, t);
      arg_uint (&a, d.batch);
      arg_uint (&a, d.u);
      arg_int (&a, node->cfg.recurrent_activation);
      if (!launch_units (ex, &a, &d, error))
        return FALSE;
      /* dh_{t-1} += dz_{z,r} U_{z,r}^T */
      if (t > 0
          && !kilt_gemm (ex->ctx, FALSE, TRUE, d.batch, d.u, 2 * d.u, 1.0f, ex->workspace, dzt, gu,
                         ex->params, p + d.u_off, gu, 1.0f, ex->workspace, w.dh, d.u, error))
        return FALSE;
    }
  return finish_backward (node, ex, &d, w.dz, after ? w.dz2 : w.dz, h_off, error);
}

/* ---- plain-C reference ---------------------------------------------------------------------- */

static double
ref_gate (KiltActivation act, double x)
{
  switch (act)
    {
      case KILT_ACT_HARD_SIGMOID:
        return CLAMP (x / 6.0 + 0.5, 0.0, 1.0);
      case KILT_ACT_HARD_SIGMOID_K2:
        return CLAMP (0.2 * x + 0.5, 0.0, 1.0);
      default:
        return 1.0 / (1.0 + exp (-x));
    }
}

static double
ref_gate_grad (KiltActivation act, double y)
{
  switch (act)
    {
      case KILT_ACT_HARD_SIGMOID:
        return y > 0 && y < 1 ? 1.0 / 6.0 : 0.0;
      case KILT_ACT_HARD_SIGMOID_K2:
        return y > 0 && y < 1 ? 0.2 : 0.0;
      default:
        return y * (1 - y);
    }
}

/* x_s of sample b at processing step s (go_backwards reads the steps last to first). */
static double
ref_x (const KiltNode *node, const Dims *d, const double *x, gsize b, gsize i, gsize s)
{
  gsize t = node->cfg.go_backwards ? d->steps - 1 - s : s;

  return x[(b * d->f + i) * d->steps + t];
}

static double *
ref_dx (const KiltNode *node, const Dims *d, double *dx, gsize b, gsize i, gsize s)
{
  gsize t = node->cfg.go_backwards ? d->steps - 1 - s : s;

  return &dx[(b * d->f + i) * d->steps + t];
}

/* Where processing step s's state is in a return_sequences output. */
static gsize
ref_out_step (const KiltNode *node, const Dims *d, gsize s)
{
  return node->cfg.go_backwards && node->cfg.keep_time_order ? d->steps - 1 - s : s;
}

/* Whether processing step s of sample b is kept by the node's step mask (source @m). */
static gboolean
ref_kept (const KiltNode *node, const Dims *d, const double *m, gsize b, gsize s)
{
  return kilt_ref_step_kept (node, m, b, node->cfg.go_backwards ? d->steps - 1 - s : s);
}

/* One sample's forward, keeping per step the activated gates g[s][G u], the cell states (LSTM)
 * or recurrent candidate terms / r h (GRU) k[s][u] and the states h[s][u]. A masked step keeps
 * the state of the step before (h and LSTM's c); its g and k are then what it computed,
 * unused. */
static void
ref_run (const KiltNode *node, const Dims *d, const double *x, const double *m, gsize b,
         const double *p, double *g, double *k, double *h)
{
  gsize u = d->u, gu = d->gates * u;
  const double *W = p + d->w_off, *U = p + d->u_off, *bias = d->n_bias ? p + d->b_off : NULL;
  KiltActivation ra = node->cfg.recurrent_activation;
  g_autofree double *zx = g_new (double, gu);
  g_autofree double *zh = g_new (double, gu);

  for (gsize s = 0; s < d->steps; s++)
    {
      const double *hp = s > 0 ? h + (s - 1) * u : NULL;
      for (gsize j = 0; j < gu; j++)
        {
          double ax = bias ? bias[j] : 0, ah = d->n_bias == 2 * gu ? bias[gu + j] : 0;
          for (gsize i = 0; i < d->f; i++)
            ax += ref_x (node, d, x, b, i, s) * W[i * gu + j];
          for (gsize i = 0; hp && i < u; i++)
            ah += hp[i] * U[i * gu + j];
          zx[j] = ax;
          zh[j] = ah;
        }
      for (gsize j = 0; j < u; j++)
        {
          double *gs = g + s * gu, hprev = hp ? hp[j] : 0;
          if (node->type == KILT_LAYER_LSTM)
            {
              double cprev = s > 0 ? k[(s - 1) * u + j] : 0;
              gs[j] = ref_gate (ra, zx[j] + zh[j]);
              gs[u + j] = ref_gate (ra, zx[u + j] + zh[u + j]);
              gs[2 * u + j] = tanh (zx[2 * u + j] + zh[2 * u + j]);
              gs[3 * u + j] = ref_gate (ra, zx[3 * u + j] + zh[3 * u + j]);
              k[s * u + j] = gs[u + j] * cprev + gs[j] * gs[2 * u + j];
              h[s * u + j] = gs[3 * u + j] * tanh (k[s * u + j]);
              continue;
            }
          gs[j] = ref_gate (ra, zx[j] + zh[j]);
          gs[u + j] = ref_gate (ra, zx[u + j] + zh[u + j]);
          if (node->cfg.reset_after)
            {
              k[s * u + j] = zh[2 * u + j];
              gs[2 * u + j] = tanh (zx[2 * u + j] + gs[u + j] * zh[2 * u + j]);
            }
          else
            k[s * u + j] = gs[u + j] * hprev; /* r h, whose product with U_h comes below */
        }
      if (node->type == KILT_LAYER_GRU && !node->cfg.reset_after)
        for (gsize j = 0; j < u; j++)
          {
            double a = zx[2 * u + j];
            for (gsize i = 0; i < u; i++)
              a += k[s * u + i] * U[i * gu + 2 * u + j];
            g[s * gu + 2 * u + j] = tanh (a);
          }
      if (node->type == KILT_LAYER_GRU)
        for (gsize j = 0; j < u; j++)
          {
            double *gs = g + s * gu, hprev = hp ? hp[j] : 0;
            h[s * u + j] = gs[j] * hprev + (1 - gs[j]) * gs[2 * u + j];
          }
      if (!ref_kept (node, d, m, b, s))
        for (gsize j = 0; j < u; j++)
          {
            h[s * u + j] = hp ? hp[j] : 0;
            if (node->type == KILT_LAYER_LSTM)
              k[s * u + j] = s > 0 ? k[(s - 1) * u + j] : 0;
          }
    }
}

static void
rnn_ref_forward (const KiltNode *node, guint batch, gboolean training, guint32 seed, guint64 step,
                 const double *const *in, const double *params, double *state, double *out)
{
  Dims d = dims_of (node, batch);
  g_autofree double *g = g_new (double, d.steps *d.gates *d.u);
  g_autofree double *k = g_new (double, d.steps *d.u);
  g_autofree double *h = g_new (double, d.steps *d.u);
  const double *m = node->cfg.step_mask ? in[node->n_inputs - 1] : NULL;

  for (gsize b = 0; b < batch; b++)
    {
      ref_run (node, &d, in[0], m, b, params, g, k, h);
      for (gsize j = 0; j < d.u; j++)
        if (node->cfg.return_sequences)
          for (gsize s = 0; s < d.steps; s++)
            out[(b * d.u + j) * d.steps + ref_out_step (node, &d, s)] = h[s * d.u + j];
        else
          out[b * d.u + j] = h[(d.steps - 1) * d.u + j];
    }
}

static void
rnn_ref_backward (const KiltNode *node, guint batch, guint32 seed, guint64 step,
                  const double *const *in, const double *params, const double *state,
                  const double *out, const double *dout, double **din, double *dparams)
{
  Dims d = dims_of (node, batch);
  gsize u = d.u, gu = d.gates * u;
  const double *U = params + d.u_off, *W = params + d.w_off;
  double *dW = dparams + d.w_off, *dU = dparams + d.u_off, *db = dparams + d.b_off;
  KiltActivation ra = node->cfg.recurrent_activation;
  gboolean lstm = node->type == KILT_LAYER_LSTM;
  g_autofree double *g = g_new (double, d.steps *gu);
  g_autofree double *k = g_new (double, d.steps *u);
  g_autofree double *h = g_new (double, d.steps *u);
  g_autofree double *dzx = g_new (double, gu); /* input side: W, the input bias, x */
  g_autofree double *dzh = g_new (double, gu); /* recurrent side: U, its bias, h_{s-1} */
  g_autofree double *dh = g_new0 (double, u);  /* d/d h_s from later steps */
  g_autofree double *dc = g_new0 (double, u);  /* LSTM: d/d c_s from later steps */
  g_autofree double *drh = g_new0 (double, u); /* reset-before GRU: d/d (r h) */
  g_autofree double *dnext = g_new0 (double, u);

  const double *m = node->cfg.step_mask ? in[node->n_inputs - 1] : NULL;

  (void)out;
  if (m && din[node->n_inputs - 1])
    memset (din[node->n_inputs - 1], 0,
            sizeof (double) * batch * kilt_shape_size (&node->in_shape[node->n_inputs - 1]));
  memset (dparams, 0, sizeof (double) * (d.b_off + d.n_bias));
  if (din[0])
    memset (din[0], 0, sizeof (double) * batch * d.f * d.steps);
  for (gsize b = 0; b < batch; b++)
    {
      ref_run (node, &d, in[0], m, b, params, g, k, h);
      memset (dh, 0, sizeof (double) * u);
      memset (dc, 0, sizeof (double) * u);
      for (gsize s = d.steps; s-- > 0;)
        {
          const double *gs = g + s * gu, *hp = s > 0 ? h + (s - 1) * u : NULL;
          for (gsize j = 0; j < u; j++)
            dh[j] += node->cfg.return_sequences
                         ? dout[(b * u + j) * d.steps + ref_out_step (node, &d, s)]
                     : s == d.steps - 1 ? dout[b * u + j]
                                        : 0;
          /* A masked step passes dh (and dc) to the step before untouched. */
          if (!ref_kept (node, &d, m, b, s))
            continue;
          memset (dnext, 0, sizeof (double) * u);
          for (gsize j = 0; j < u; j++)
            {
              double hprev = hp ? hp[j] : 0;
              if (lstm)
                {
                  double i = gs[j], f = gs[u + j], cc = gs[2 * u + j], o = gs[3 * u + j];
                  double tc = tanh (k[s * u + j]), cprev = s > 0 ? k[(s - 1) * u + j] : 0;
                  double dct = dh[j] * o * (1 - tc * tc) + dc[j];
                  dzx[j] = dct * cc * ref_gate_grad (ra, i);
                  dzx[u + j] = dct * cprev * ref_gate_grad (ra, f);
                  dzx[2 * u + j] = dct * i * (1 - cc * cc);
                  dzx[3 * u + j] = dh[j] * tc * ref_gate_grad (ra, o);
                  dc[j] = dct * f;
                  continue;
                }
              {
                double z = gs[j], hh = gs[2 * u + j];
                dzx[j] = dh[j] * (hprev - hh) * ref_gate_grad (ra, z);
                dzx[2 * u + j] = dh[j] * (1 - z) * (1 - hh * hh);
                dnext[j] = dh[j] * z;
              }
            }
          if (!lstm && node->cfg.reset_after)
            for (gsize j = 0; j < u; j++)
              {
                double r = gs[u + j];
                dzx[u + j] = dzx[2 * u + j] * k[s * u + j] * ref_gate_grad (ra, r);
              }
          else if (!lstm)
            {
              /* d(r h) = dz_h U_h^T; its product with U_h uses (r h) for dU_h. */
              for (gsize i = 0; i < u; i++)
                {
                  double acc = 0;
                  for (gsize j = 0; j < u; j++)
                    acc += dzx[2 * u + j] * U[i * gu + 2 * u + j];
                  drh[i] = acc;
                }
              for (gsize j = 0; j < u; j++)
                {
                  double hprev = hp ? hp[j] : 0, r = gs[u + j];
                  dzx[u + j] = drh[j] * hprev * ref_gate_grad (ra, r);
                  dnext[j] += drh[j] * r;
                }
            }
          /* The recurrent side's gradient: LSTM's and reset-before GRU's gates equal the
           * input side's (dz_h's U_h is handled through r h); reset_after scales by r. */
          for (gsize j = 0; j < gu; j++)
            dzh[j] = dzx[j];
          if (!lstm && node->cfg.reset_after)
            for (gsize j = 0; j < u; j++)
              dzh[2 * u + j] = dzx[2 * u + j] * gs[u + j];
          /* Parameters. */
          for (gsize i = 0; i < d.f; i++)
            {
              double xv = ref_x (node, &d, in[0], b, i, s);
              for (gsize j = 0; j < gu; j++)
                dW[i * gu + j] += xv * dzx[j];
            }
          for (gsize i = 0; i < u; i++)
            {
              double hv = hp ? hp[i] : 0;
              gsize cols = !lstm && !node->cfg.reset_after ? 2 * u : gu;
              for (gsize j = 0; j < cols; j++)
                dU[i * gu + j] += hv * dzh[j];
              if (cols < gu)
                for (gsize j = 2 * u; j < gu; j++)
                  dU[i * gu + j] += k[s * u + i] * dzx[j];
            }
          if (d.n_bias)
            for (gsize j = 0; j < gu; j++)
              {
                db[j] += dzx[j];
                if (d.n_bias == 2 * gu)
                  db[gu + j] += dzh[j];
              }
          if (din[0])
            for (gsize i = 0; i < d.f; i++)
              {
                double acc = 0;
                for (gsize j = 0; j < gu; j++)
                  acc += dzx[j] * W[i * gu + j];
                *ref_dx (node, &d, din[0], b, i, s) += acc;
              }
          /* dh_{s-1}: the direct part (GRU) plus dz_h U^T (a reset-before GRU's candidate
           * part came through d(r h) above). */
          for (gsize i = 0; i < u; i++)
            {
              gsize cols = !lstm && !node->cfg.reset_after ? 2 * u : gu;
              double acc = lstm ? 0 : dnext[i];
              for (gsize j = 0; j < cols; j++)
                acc += dzh[j] * U[i * gu + j];
              dh[i] = acc;
            }
        }
    }
}

const KiltLayerClass kilt_lstm_class = {
  .type = KILT_LAYER_LSTM,
  .name = "LSTM",
  .min_inputs = 1,
  .max_inputs = 2,
  .infer = rnn_infer,
  .init = rnn_init,
  .flops = rnn_flops,
  .workspace_floats = rnn_workspace_floats,
  .saved_floats = rnn_saved_floats,
  .forward = lstm_forward,
  .backward = lstm_backward,
  .ref_forward = rnn_ref_forward,
  .ref_backward = rnn_ref_backward,
};

const KiltLayerClass kilt_gru_class = {
  .type = KILT_LAYER_GRU,
  .name = "GRU",
  .min_inputs = 1,
  .max_inputs = 2,
  .infer = rnn_infer,
  .init = rnn_init,
  .flops = rnn_flops,
  .workspace_floats = rnn_workspace_floats,
  .saved_floats = rnn_saved_floats,
  .forward = gru_forward,
  .backward = gru_backward,
  .ref_forward = rnn_ref_forward,
  .ref_backward = rnn_ref_backward,
};
