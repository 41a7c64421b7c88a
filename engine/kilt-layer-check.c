/* Checks one layer on a device against its plain-C reference and finite differences. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-layer-check"

#include "kilt-layer-check.h"
#include "kilt-gemm-tf32.h"
#include "kilt-error.h"

#include <math.h>
#include <string.h>

static double
max_rel (const float *dev, const double *ref, gsize n)
{
  double diff = 0, scale = 0;

  for (gsize i = 0; i < n; i++)
    {
      diff = MAX (diff, fabs ((double)dev[i] - ref[i]));
      scale = MAX (scale, fabs (ref[i]));
      if (isnan (dev[i]))
        return INFINITY;
    }
  return diff / MAX (scale, 1e-12);
}

typedef struct
{
  const KiltLayerCheck *check;
  KiltNode *node;
  guint batch;
  double **in;
  double *params;
  double *state;
  double *out;
  double *r; /* the random "upstream gradient"; the scalar is sum (out * r) */
  gsize n_out;
} Ref;

static double
ref_objective (Ref *ref)
{
  double l = 0;
  g_autofree double *state = g_memdup2 (ref->state, sizeof (double) * MAX (ref->node->n_state, 1));

  ref->node->klass->ref_forward (ref->node, ref->batch, ref->check->training, ref->check->seed, 1,
                                 (const double *const *)ref->in, ref->params, state, ref->out);
  for (gsize i = 0; i < ref->n_out; i++)
    l += ref->out[i] * ref->r[i];
  return l;
}

static double
fd_check (Ref *ref, double *x, const double *analytic, gsize n, KiltRng *rng, guint points,
          guint *counted)
{
  double worst = 0;
  guint tries = 0;

  /* Left-out elements (masking_input) do not count: up to 20 draws a point. */
  for (guint p = 0; p < points && n > 0 && tries < 20 * points; p++, tries++)
    {
      gsize i = kilt_rng_below (rng, (guint32)n);
      double keep = x[i], h = 1e-6 * MAX (1.0, fabs (keep)), lp, lm, fd, err;
      if (ref->check->masking_input && x == ref->in[0] && (float)keep == ref->check->cfg.mask_value)
        {
          p--;
          continue;
        }
      x[i] = keep + h;
      lp = ref_objective (ref);
      x[i] = keep - h;
      lm = ref_objective (ref);
      x[i] = keep;
      fd = (lp - lm) / (2 * h);
      err = fabs (fd - analytic[i]) / MAX (1.0, MAX (fabs (fd), fabs (analytic[i])));
      worst = MAX (worst, err);
      (*counted)++;
    }
  return worst;
}

/* A step mask's source for @batch samples of shape @shape (KiltLayerCheck.cfg.step_mask). */
static void
fill_step_mask (const KiltLayerCheck *check, const KiltShape *shape, guint batch, KiltRng *rng,
                float *x)
{
  gboolean ids = check->cfg.step_mask == KILT_STEP_MASK_IDS;
  guint steps = ids ? shape->c : shape->w, feats = ids ? 1 : shape->c;

  for (guint b = 0; b < batch; b++)
    {
      guint len = 1 + kilt_rng_below (rng, steps);
      for (guint t = 0; t < steps; t++)
        {
          gboolean kept = b % 4 == 0   ? t < len
                          : b % 4 == 1 ? t >= steps - len
                          : b % 4 == 2 ? check->mask_keep_one && t == steps / 2
                                       : kilt_rng_below (rng, 2) == 0;
          for (guint f = 0; f < feats; f++)
            {
              float *v = &x[(gsize)(b * feats + f) * steps + t];
              if (ids)
                *v = kept ? (float)(1 + kilt_rng_below (rng, 9)) : 0.0f;
              else if (!kept || (feats > 1 && f % 2 == 0))
                *v = check->cfg.mask_value;
              else
                *v = (float)(2.0 * kilt_rng_uniform (rng) - 1.0);
            }
        }
    }
}

gboolean
kilt_layer_check_run (KiltContext *ctx, const KiltLayerCheck *check, KiltLayerCheckResult *result,
                      GError **error)
{
  KiltNode inputs[KILT_MAX_INPUTS];
  KiltNode node = { 0 };
  GPtrArray *nodes = g_ptr_array_new ();
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_buffer_free);
  KiltExec ex = { 0 };
  KiltRng rng;
  guint batch = check->batch;
  gsize n_out, ws = 0;
  gboolean ok = FALSE;
  Ref ref = { 0 };
  double *din[KILT_MAX_INPUTS] = { 0 };
  double *prefill[KILT_MAX_INPUTS] = { 0 };
  g_autofree double *dparams = NULL;
  g_autofree float *fbuf = NULL;
  g_autofree float *hparams = NULL;
  g_autofree float *hstate = NULL;
  KiltBuffer *b, *pb = NULL, *gb = NULL, *sb = NULL, *ob = NULL, *dob = NULL;
  G_GNUC_UNUSED KiltBuffer *wb = NULL, *svb = NULL;
  KiltBuffer *inb[KILT_MAX_INPUTS] = { 0 }, *indb[KILT_MAX_INPUTS] = { 0 };
  KiltPrecision was = ctx->precision;

#define ALLOC(holder, dst, cat, bytes, what)                                                       \
  do                                                                                               \
    {                                                                                              \
      b = kilt_buffer_new (ctx, cat, (bytes), error, "%s %s", check->label, what);                 \
      if (!b)                                                                                      \
        goto out;                                                                                  \
      g_ptr_array_add (bufs, b);                                                                   \
      (holder) = b;                                                                                \
      (dst) = b->mem;                                                                              \
    }                                                                                              \
  while (0)

  memset (result, 0, sizeof *result);
  if (check->at_tf32 && !kilt_context_set_precision (ctx, KILT_PRECISION_TF32, error))
    goto out;
  kilt_rng_init (&rng, check->seed + 17);
  memset (inputs, 0, sizeof inputs);
  for (guint i = 0; i < check->n_inputs; i++)
    {
      inputs[i].index = i;
      inputs[i].name = (char *)"input";
      inputs[i].type = KILT_LAYER_INPUT;
      inputs[i].klass = &kilt_input_class;
      inputs[i].out_shape = check->in[i];
      g_ptr_array_add (nodes, &inputs[i]);
    }
  node.index = check->n_inputs;
  node.name = (char *)check->label;
  node.type = check->type;
  node.klass = kilt_layer_class_get (check->type);
  node.cfg = check->cfg;
  node.algo_forced = check->algo;
  node.n_inputs = check->n_inputs;
  for (guint i = 0; i < check->n_inputs; i++)
    {
      node.inputs[i] = i;
      node.in_shape[i] = check->in[i];
    }
  g_ptr_array_add (nodes, &node);
  if (node.klass == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "%s: layer type %d is not built", check->label, check->type);
      goto out;
    }
  if (!node.klass->infer (&node, error))
    goto out;
  n_out = batch * kilt_shape_size (&node.out_shape);

  /* Host data: inputs in [-1, 1], parameters from the initialiser plus noise so biases and
   * batch-norm scales are not trivially 0 or 1. */
  ref.check = check;
  ref.node = &node;
  ref.batch = batch;
  ref.in = g_new0 (double *, check->n_inputs);
  hparams = g_new0 (float, MAX (node.n_params, 1));
  hstate = g_new0 (float, MAX (node.n_state, 1));
  if (node.klass->init)
    node.klass->init (&node, hparams, hstate, &rng);
  ref.params = g_new0 (double, MAX (node.n_params, 1));
  ref.state = g_new0 (double, MAX (node.n_state, 1));
  for (gsize i = 0; i < node.n_params; i++)
    {
      hparams[i] += (float)(0.2 * (kilt_rng_uniform (&rng) - 0.5));
      if (check->tf32_values)
        hparams[i] = kilt_tf32_round (hparams[i]);
      ref.params[i] = hparams[i];
    }
  for (gsize i = 0; i < node.n_state; i++)
    {
      /* Running variance must stay positive. */
      hstate[i] = (float)(0.5 + kilt_rng_uniform (&rng));
      ref.state[i] = hstate[i];
    }
  ref.out = g_new0 (double, n_out);
  ref.r = g_new0 (double, n_out);
  ref.n_out = n_out;

  ex.ctx = ctx;
  ex.nodes = nodes;
  ex.batch = batch;
  ex.training = check->training;
  ex.seed = check->seed;
  ex.step = 1;
  ex.softmax_fused_node = G_MAXUINT;
  ALLOC (pb, ex.params, KILT_MEM_WEIGHTS, 4 * MAX (node.n_params, 1), "parameters");
  ALLOC (gb, ex.grads, KILT_MEM_GRADIENTS, 4 * MAX (node.n_params, 1), "gradients");
  ALLOC (sb, ex.state, KILT_MEM_WEIGHTS, 4 * MAX (node.n_state, 1), "state");
  if (node.klass->workspace_floats)
    ws = node.klass->workspace_floats (&node, batch, ctx->info);
  ALLOC (wb, ex.workspace, KILT_MEM_WORKSPACE, 4 * MAX (ws, 1), "workspace");
  if (node.klass->saved_floats && node.klass->saved_floats (&node, batch))
    ALLOC (svb, node.saved, KILT_MEM_ACTIVATIONS, 4 * node.klass->saved_floats (&node, batch),
           "saved");
  ALLOC (ob, node.out, KILT_MEM_ACTIVATIONS, 4 * n_out, "output");
  ALLOC (dob, node.dout, KILT_MEM_GRADIENTS, 4 * n_out, "output gradient");
  if (!kilt_buffer_write (pb, 0, hparams, 4 * node.n_params, error)
      || !kilt_buffer_write (sb, 0, hstate, 4 * node.n_state, error))
    goto out;

  for (guint i = 0; i < check->n_inputs; i++)
    {
      gsize n = batch * kilt_shape_size (&check->in[i]);
      g_autofree float *x = g_new (float, n);
      ref.in[i] = g_new (double, n);
      gboolean pattern
          = (check->cfg.step_mask && i == check->n_inputs - 1) || (check->masking_input && i == 0);
      if (pattern)
        fill_step_mask (check, &check->in[i], batch, &rng, x);
      for (gsize j = 0; j < n && !pattern; j++)
        {
          if (check->ids)
            {
              /* One in eight outside the table (either side), one in eight with a fraction. */
              guint32 kind = kilt_rng_below (&rng, 8), id = kilt_rng_below (&rng, check->ids);
              x[j] = kind == 0
                         ? (kilt_rng_below (&rng, 2) ? -1.0f - (float)id : (float)(check->ids + id))
                     : kind == 1 ? (float)id + 0.75f
                                 : (float)id;
            }
          else
            x[j] = (float)((check->input_scale > 0 ? check->input_scale : 1.0)
                           * (2.0 * kilt_rng_uniform (&rng) - 1.0));
          if (check->tf32_values)
            x[j] = kilt_tf32_round (x[j]);
          ref.in[i][j] = x[j];
        }
      if (pattern)
        for (gsize j = 0; j < n; j++)
          ref.in[i][j] = x[j];
      ALLOC (inb[i], inputs[i].out, KILT_MEM_ACTIVATIONS, 4 * n, "input");
      ALLOC (indb[i], inputs[i].dout, KILT_MEM_GRADIENTS, 4 * n, "input gradient");
      if (!kilt_buffer_write (inb[i], 0, x, 4 * n, error))
        goto out;
      /* Pre-fill the gradient with values so an "overwrite" that adds shows up; when
       * accumulating, with values of the gradient's size that must be kept and added to. */
      prefill[i] = g_new (double, n);
      for (gsize j = 0; j < n; j++)
        {
          x[j] = check->accumulate ? (float)(1.0 + kilt_rng_uniform (&rng)) : 1000.0f;
          prefill[i][j] = x[j];
        }
      if (!kilt_buffer_write (indb[i], 0, x, 4 * n, error))
        goto out;
      node.din_needed[i] = TRUE;
      node.din_beta[i] = check->accumulate ? 1.0f : 0.0f;
    }

  /* Forward. */
  if (!node.klass->forward (&node, &ex, error))
    goto out;
  fbuf = g_new (float, MAX (n_out, MAX (node.n_params, node.n_state)) + 1);
  {
    g_autofree double *st = g_memdup2 (ref.state, sizeof (double) * MAX (node.n_state, 1));
    if (!kilt_buffer_read (ob, 0, fbuf, 4 * n_out, error))
      goto out;
    node.klass->ref_forward (&node, batch, check->training, check->seed, 1,
                             (const double *const *)ref.in, ref.params, st, ref.out);
    result->forward = max_rel (fbuf, ref.out, n_out);
    if (node.n_state)
      {
        if (!kilt_buffer_read (sb, 0, fbuf, 4 * node.n_state, error))
          goto out;
        result->state = max_rel (fbuf, st, node.n_state);
      }
  }
  if (!check->training || node.klass->backward == NULL)
    {
      ok = kilt_context_finish (ctx, error);
      goto out;
    }

  /* Backward with a random upstream gradient. */
  {
    g_autofree float *r = g_new (float, n_out);
    for (gsize j = 0; j < n_out; j++)
      {
        r[j] = (float)(2.0 * kilt_rng_uniform (&rng) - 1.0);
        if (check->tf32_values)
          r[j] = kilt_tf32_round (r[j]);
        ref.r[j] = r[j];
      }
    if (!kilt_buffer_write (dob, 0, r, 4 * n_out, error))
      goto out;
  }
  if (!node.klass->backward (&node, &ex, error))
    goto out;
  dparams = g_new0 (double, MAX (node.n_params, 1));
  for (guint i = 0; i < check->n_inputs; i++)
    din[i] = g_new0 (double, batch *kilt_shape_size (&check->in[i]));
  node.klass->ref_backward (&node, batch, check->seed, 1, (const double *const *)ref.in, ref.params,
                            ref.state, ref.out, ref.r, din, dparams);
  for (guint i = 0; i < check->n_inputs; i++)
    {
      gsize n = batch * kilt_shape_size (&check->in[i]);
      g_autofree float *g = g_new (float, n);
      if (!kilt_buffer_read (indb[i], 0, g, 4 * n, error))
        goto out;
      if (check->accumulate)
        {
          /* Expect reference + pre-fill; din[i] itself stays the reference for FD below. */
          g_autofree double *expect = g_new (double, n);
          for (gsize j = 0; j < n; j++)
            expect[j] = din[i][j] + prefill[i][j];
          result->backward_input = MAX (result->backward_input, max_rel (g, expect, n));
          continue;
        }
      result->backward_input = MAX (result->backward_input, max_rel (g, din[i], n));
    }
  if (node.n_params)
    {
      if (!kilt_buffer_read (gb, 0, fbuf, 4 * node.n_params, error))
        goto out;
      result->backward_param = max_rel (fbuf, dparams, node.n_params);
    }

  /* Finite differences on the reference, in double precision (not through a step mask's
   * source). Each check runs once (MAX () would evaluate it twice, drawing new points and
   * counting them again). */
  for (guint i = 0;
       i < check->n_inputs - (check->cfg.step_mask != KILT_STEP_MASK_NONE) && !check->ids; i++)
    {
      double fd = fd_check (&ref, ref.in[i], din[i], batch * kilt_shape_size (&check->in[i]), &rng,
                            24, &result->fd_points);
      result->finite_diff = MAX (result->finite_diff, fd);
    }
  {
    double fd = fd_check (&ref, ref.params, dparams, node.n_params, &rng, 24, &result->fd_points);
    result->finite_diff = MAX (result->finite_diff, fd);
  }
  ok = kilt_context_finish (ctx, error);

out:
  for (guint i = 0; i < check->n_inputs; i++)
    {
      g_free (din[i]);
      g_free (prefill[i]);
      if (ref.in)
        g_free (ref.in[i]);
    }
  g_free (ref.in);
  g_free (ref.params);
  g_free (ref.state);
  g_free (ref.out);
  g_free (ref.r);
  if (ctx)
    clFinish (ctx->queue);
  if (check->at_tf32)
    kilt_context_set_precision (ctx, was, NULL);
  g_ptr_array_unref (bufs);
  g_ptr_array_unref (nodes);
#undef ALLOC
  return ok;
}
