/* A whole model in plain C double precision, and a device step checked against it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-reference"

#include "kilt-reference.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-loss.h"

#include <float.h>
#include <math.h>
#include <string.h>

KiltReference *
kilt_reference_new (KiltModel *model, guint batch)
{
  KiltReference *r = g_new0 (KiltReference, 1);
  guint n = model->nodes->len;

  g_return_val_if_fail (model->built, NULL);
  r->model = model;
  r->batch = batch;
  r->out = g_new0 (double *, n);
  r->dout = g_new0 (double *, n);
  for (guint i = 0; i < n; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      gsize size = (gsize)batch * kilt_shape_size (&node->out_shape);
      r->out[i] = g_new0 (double, size);
      r->dout[i] = g_new0 (double, size);
    }
  r->params = g_new0 (double, model->n_params + 1);
  r->state = g_new0 (double, model->n_state + 1);
  r->grads = g_new0 (double, model->n_params + 1);
  r->follow = g_new0 (double *, n);
  return r;
}

void
kilt_reference_free (KiltReference *ref)
{
  if (ref == NULL)
    return;
  for (guint i = 0; i < ref->model->nodes->len; i++)
    {
      g_free (ref->out[i]);
      g_free (ref->dout[i]);
      g_free (ref->follow[i]);
    }
  g_free (ref->follow);
  g_free (ref->out);
  g_free (ref->dout);
  g_free (ref->params);
  g_free (ref->state);
  g_free (ref->grads);
  g_free (ref);
}

double
kilt_reference_forward (KiltReference *ref, const double *input, const double *targets,
                        gboolean training, guint32 seed, guint64 step)
{
  KiltModel *m = ref->model;
  KiltNode *last = kilt_model_output (m);
  double metrics[3] = { 0 };

  memcpy (ref->out[0], input,
          sizeof (double) * ref->batch * kilt_shape_size (&kilt_model_node (m, 0)->out_shape));
  for (guint i = 1; i < m->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (m->nodes, i);
      const double *in[KILT_MAX_INPUTS];
      for (guint j = 0; j < node->n_inputs; j++)
        in[j] = ref->out[node->inputs[j]];
      node->klass->ref_forward (node, ref->batch, training, seed, step, in,
                                ref->params + node->param_offset, ref->state + node->state_offset,
                                ref->out[i]);
    }
  kilt_loss_reference (m->loss, ref->batch, ref->batch, kilt_model_n_outputs (m),
                       ref->out[last->index], targets, NULL, metrics);
  return metrics[0] / ref->batch;
}

void
kilt_reference_backward (KiltReference *ref, const double *input, const double *targets,
                         guint32 seed, guint64 step)
{
  KiltModel *m = ref->model;
  KiltNode *last = kilt_model_output (m);
  double metrics[3] = { 0 };
  guint n = m->nodes->len;
  g_autofree gboolean *written = g_new0 (gboolean, n);

  kilt_loss_reference (m->loss, ref->batch, ref->batch, kilt_model_n_outputs (m),
                       ref->out[last->index], targets, ref->dout[last->index], metrics);
  written[last->index] = TRUE;
  for (guint i = n - 1; i >= 1; i--)
    {
      KiltNode *node = g_ptr_array_index (m->nodes, i);
      const double *in[KILT_MAX_INPUTS];
      double *din[KILT_MAX_INPUTS] = { 0 };
      g_autofree double *followed = NULL;
      const double *dout = ref->dout[i];

      /* The loss gave the pre-softmax gradient for a softmax output; the node's own backward
       * expects d/d(softmax output). Turn it back by running a softmax output's backward on
       * a gradient whose Jacobian product is the given one: simplest is to skip the softmax
       * Jacobian, as the device does, by handing the layer its output as linear. */
      KiltActivation keep = node->cfg.activation;
      if (node == last && m->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
        node->cfg.activation = KILT_ACT_LINEAR;
      for (guint j = 0; j < node->n_inputs; j++)
        {
          guint src = node->inputs[j];
          gsize size = (gsize)ref->batch * kilt_shape_size (&node->in_shape[j]);
          in[j] = ref->out[src];
          if (src == 0)
            continue;
          din[j] = g_new0 (double, size);
        }
      if (ref->follow[i])
        {
          gsize size = (gsize)ref->batch * kilt_shape_size (&node->in_shape[0]);
          followed = g_memdup2 (in[0], sizeof (double) * size);
          for (gsize k = 0; k < size; k++)
            if (!isnan (ref->follow[i][k]))
              followed[k] = ref->follow[i][k];
          in[0] = followed;
        }
      if (node->klass->ref_backward)
        node->klass->ref_backward (node, ref->batch, seed, step, in,
                                   ref->params + node->param_offset,
                                   ref->state + node->state_offset, ref->out[i], dout, din,
                                   ref->grads + node->param_offset);
      node->cfg.activation = keep;
      for (guint j = 0; j < node->n_inputs; j++)
        {
          guint src = node->inputs[j];
          gsize size = (gsize)ref->batch * kilt_shape_size (&node->in_shape[j]);
          if (!din[j])
            continue;
          for (gsize k = 0; k < size; k++)
            ref->dout[src][k] = (written[src] ? ref->dout[src][k] : 0.0) + din[j][k];
          written[src] = TRUE;
          g_free (din[j]);
        }
    }
}

static double
max_rel (const float *dev, const double *ref, gsize n)
{
  double diff = 0, scale = 0;

  for (gsize i = 0; i < n; i++)
    {
      if (!isfinite (dev[i]))
        return INFINITY;
      diff = MAX (diff, fabs (dev[i] - ref[i]));
      scale = MAX (scale, fabs (ref[i]));
    }
  return diff / MAX (scale, 1e-30);
}

/* The kinked activations (ReLU, leaky ReLU) a check compares: for each node that applies one,
 * where the device holds its output. A Conv2D or Dense whose output holds a folded Activation's
 * result is left to that Activation node, which shares its buffer and whose reference output
 * is the activated one. */
static KiltActivation
kinked_act (const KiltNode *node)
{
  KiltActivation act = KILT_ACT_LINEAR;

  if (node->type == KILT_LAYER_ACTIVATION)
    act = node->cfg.activation;
  else if ((node->type == KILT_LAYER_CONV2D || node->type == KILT_LAYER_DENSE) && !node->act_fused)
    act = node->cfg.activation;
  switch (act)
    {
      case KILT_ACT_RELU:
      case KILT_ACT_LEAKY_RELU:
      case KILT_ACT_RELU6:
      case KILT_ACT_HARD_SIGMOID:
      case KILT_ACT_HARD_SIGMOID_K2:
      case KILT_ACT_HARD_SWISH:
        return act;
      default:
        return KILT_ACT_LINEAR;
    }
}

/* Where a kinked activation's output bends, as output values: below @lo (or at it) one side
 * of the lower kink, at or above @hi the upper one (NaN: none). ReLU6 and a capped ReLU bend
 * at 0 and at their cap, the hard sigmoids at 0 and 1; MobileNets have thousands of ReLU6
 * outputs, and one at 6 on one side and just under it on the other moves the gradients. */
static void
kink_outputs (const KiltNode *node, KiltActivation act, float *lo, float *hi)
{
  *lo = 0.0f;
  *hi = NAN;
  if (act == KILT_ACT_RELU6)
    *hi = 6.0f;
  else if (act == KILT_ACT_RELU && isfinite (node->cfg.max_value))
    *hi = node->cfg.max_value;
  else if (act == KILT_ACT_HARD_SIGMOID || act == KILT_ACT_HARD_SIGMOID_K2)
    *hi = 1.0f;
}

/* Reads the device's output of every kinked activation (after the forward pass), one array per
 * node (NULL for the others). */
static float **
read_kinks (KiltContext *ctx, KiltModel *model, guint batch, GError **error)
{
  float **dev = g_new0 (float *, model->nodes->len);

  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      gsize n = (gsize)batch * kilt_shape_size (&node->out_shape);

      if (kinked_act (node) == KILT_ACT_LINEAR)
        continue;
      dev[i] = g_new (float, n);
      if (clEnqueueReadBuffer (ctx->queue, node->out, CL_TRUE, 0, 4 * n, dev[i], 0, NULL, NULL)
          != CL_SUCCESS)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OPENCL,
                       "reading layer %s's output for the check failed on %s", node->name,
                       ctx->info->name);
          for (guint j = 0; j <= i; j++)
            g_free (dev[j]);
          g_free (dev);
          return NULL;
        }
    }
  return dev;
}

/* Whether the reference can take the device's side of @node's kinks: an Activation whose
 * derivative changes only at output 0 and at a cap, both where its input is 0 and the cap
 * (ReLU without a threshold, leaky ReLU, ReLU6). */
static gboolean
kink_followable (const KiltNode *node)
{
  if (node->type != KILT_LAYER_ACTIVATION || node->n_inputs != 1)
    return FALSE;
  switch (node->cfg.activation)
    {
      case KILT_ACT_RELU:
        return node->cfg.threshold == 0.0f;
      case KILT_ACT_LEAKY_RELU:
      case KILT_ACT_RELU6:
        return TRUE;
      default:
        return FALSE;
    }
}

/* Where an activation's input fell on the other side of a kink on the device than in the
 * reference (a value within float rounding of it), the two gradients differ legitimately:
 * through batch normalisation one flip moved a third of ResNet-20's gradients by 1e-5 to 1e-3
 * of their scale, and in ResNet-50 every draw of inputs has some (its forward pass drifts by
 * 1e-4 of the scale in float by its last stage, and it has 150 k ReLU inputs there at 4
 * samples). Such an element has no right side: both derivatives are the function's at a point
 * within rounding of the reference's. So the reference takes the device's side there
 * (ref->follow), but only where the flip is within the rounding the device shows on the same
 * layer's other elements: both the reference's input and the device's output lie no further
 * from the kink than the largest difference between device and reference among the layer's
 * elements that did not flip. A wrong kernel makes differences larger than that, or larger
 * differences elsewhere, which the loss and gradients show. Returns the first layer with a
 * flip that cannot be followed (too far from the kink, or a kinked activation the reference
 * cannot follow), or NULL; *@followed counts the elements followed. */
static const char *
kink_follow (KiltModel *model, KiltReference *ref, float **dev, guint *followed)
{
  *followed = 0;
  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      gsize n = (gsize)ref->batch * kilt_shape_size (&node->out_shape);
      const double *r = ref->out[i], *x;
      double rounding = 0;
      float lo, hi;

      if (!dev[i])
        continue;
      kink_outputs (node, kinked_act (node), &lo, &hi);
      /* The layer's rounding, from the elements on the same side of every kink. */
      for (gsize k = 0; k < n; k++)
        if ((dev[i][k] > lo) == (r[k] > lo)
            && (!isfinite (hi) || (dev[i][k] >= hi) == (r[k] >= hi)))
          rounding = MAX (rounding, fabs (dev[i][k] - r[k]));
      x = ref->out[node->inputs[0]];
      for (gsize k = 0; k < n; k++)
        {
          gboolean low = (dev[i][k] > lo) != (r[k] > lo);
          gboolean high = isfinite (hi) && (dev[i][k] >= hi) != (r[k] >= hi);
          double kink = low ? 0.0 : hi;
          if (!low && !high)
            continue;
          if (!kink_followable (node) || (low && high) || fabs (x[k] - kink) > rounding
              || fabs (dev[i][k] - (low ? lo : hi)) > rounding)
            return node->name;
          if (!ref->follow[i])
            {
              ref->follow[i] = g_new (double, n);
              for (gsize j = 0; j < n; j++)
                ref->follow[i][j] = NAN;
            }
          /* Just above 0 the derivative is the positive side's; at 0 the other side's (the
           * reference's derivatives test x > 0); at the cap the capped side's, just below
           * it the linear one's. */
          if (low)
            ref->follow[i][k] = dev[i][k] > lo ? DBL_MIN : 0.0;
          else
            ref->follow[i][k] = dev[i][k] >= hi ? (double)hi : nextafter ((double)hi, 0.0);
          (*followed)++;
        }
    }
  return NULL;
}

/* One draw of the check: random inputs and labels from @draw, the device step, the reference
 * step; *flipped names a layer where a kink decided differently and could not be followed,
 * *followed counts the elements where the reference took the device's side. */
static gboolean
check_draw (KiltContext *ctx, KiltModel *model, KiltExecutor *exec, guint batch, guint32 seed,
            guint draw, const float *params, const float *state, double *loss_error,
            double *grad_error, const char **flipped, guint *followed, GError **error)
{
  KiltReference *ref = NULL;
  KiltBuffer *targets = NULL, *metrics = NULL;
  guint n_out = kilt_model_n_outputs (model);
  gsize in_size = (gsize)batch * kilt_shape_size (&kilt_model_node (model, 0)->out_shape);
  gsize t_size = model->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY ? batch : (gsize)batch * n_out;
  g_autofree float *x = g_new (float, in_size);
  g_autofree double *xd = g_new (double, in_size);
  g_autofree float *t = g_new (float, t_size);
  g_autofree double *td = g_new (double, t_size);
  g_autofree float *grads = g_new0 (float, model->n_grads + 1);
  g_autofree double *ref_grads = g_new0 (double, model->n_grads + 1);
  float **dev = NULL;
  float m[3];
  gboolean ok = FALSE;
  KiltNode *last = kilt_model_output (model);
  KiltRng rng;
  double ref_loss;

  kilt_rng_init (&rng, (seed ^ 0x5eed) + draw);
  for (gsize i = 0; i < in_size; i++)
    xd[i] = x[i] = (float)kilt_rng_uniform (&rng);
  for (gsize i = 0; i < t_size; i++)
    {
      if (model->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
        t[i] = (float)kilt_rng_below (&rng, n_out);
      else if (model->loss == KILT_LOSS_BINARY_CROSS_ENTROPY)
        t[i] = (float)kilt_rng_below (&rng, 2);
      else
        t[i] = (float)(2 * kilt_rng_uniform (&rng) - 1);
      td[i] = t[i];
    }

  /* The parameters and state again: a training forward pass updates the running statistics. */
  if (!kilt_executor_upload (exec, params, state, error))
    goto out;
  exec->ex.seed = seed;
  exec->ex.step = 0;
  if (model->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
    exec->ex.softmax_fused_node = last->index;
  targets = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * t_size, error, "check targets");
  if (!targets)
    goto out;
  metrics = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (batch), error,
                             "check metrics");
  if (!metrics)
    goto out;
  {
    const float zero = 0;
    clEnqueueFillBuffer (ctx->queue, metrics->mem, &zero, 4, 0, metrics->bytes, 0, NULL, NULL);
  }
  if (!kilt_buffer_write (targets, 0, t, 4 * t_size, error)
      || clEnqueueWriteBuffer (ctx->queue, kilt_executor_input (exec), CL_TRUE, 0, 4 * in_size, x,
                               0, NULL, NULL)
             != CL_SUCCESS
      || !kilt_executor_forward (exec, TRUE, error)
      || (dev = read_kinks (ctx, model, batch, error)) == NULL
      || !kilt_loss_enqueue (ctx, model->loss, batch, batch, n_out, last->out, targets->mem,
                             last->dout, metrics->mem, error)
      || !kilt_executor_backward (exec, error) || !kilt_buffer_read (metrics, 0, m, sizeof m, error)
      || !kilt_buffer_read (exec->grads, 0, grads, 4 * model->n_grads, error))
    {
      if (error && *error == NULL)
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OPENCL,
                     "writing the check input failed on %s", ctx->info->name);
      goto out;
    }

  ref = kilt_reference_new (model, batch);
  for (gsize i = 0; i < model->n_params; i++)
    ref->params[i] = params[i];
  for (gsize i = 0; i < model->n_state; i++)
    ref->state[i] = state[i];
  ref_loss = kilt_reference_forward (ref, xd, td, TRUE, seed, 0);
  *flipped = kink_follow (model, ref, dev, followed);
  kilt_reference_backward (ref, xd, td, seed, 0);
  *loss_error = fabs (m[0] / batch - ref_loss) / MAX (fabs (ref_loss), 1e-12);
  /* The device keeps the trainable parameters' gradients only, run after run. */
  for (guint r = 0; r < model->n_grad_ranges; r++)
    memcpy (ref_grads + model->grad_ranges[r].grad_offset,
            ref->grads + model->grad_ranges[r].param_offset,
            sizeof (double) * model->grad_ranges[r].n);
  *grad_error = max_rel (grads, ref_grads, model->n_grads);
  ok = TRUE;

out:
  if (dev)
    for (guint i = 0; i < model->nodes->len; i++)
      g_free (dev[i]);
  g_free (dev);
  kilt_reference_free (ref);
  kilt_buffer_free (metrics);
  kilt_buffer_free (targets);
  return ok;
}

/* At most this many draws of inputs, until one where no kinked activation decides differently
 * on the device beyond what the reference can follow (a flip further from the kink than the
 * layer's rounding elsewhere, or an activation it cannot follow such as hard swish). */
#define CHECK_DRAWS 6

/* Batch normalisation's statistics over few values make the check ill-conditioned rather than
 * strict: each channel is divided by its standard deviation over batch x H x W values, and over
 * a handful some channel's is small by chance (of 2048 channels with 4 values each, the
 * smallest is about a tenth of the typical one), which multiplies the rounding that reaches it
 * by as much, layer after layer. ResNet-50 rebuilt at 39x39 has 2x2 maps in its last stage:
 * with one sample its float step drifted from the double reference by 1e-2 of the gradients'
 * scale on PoCL and on an H200 alike, and the reference itself moved by 0.12 when its inputs
 * and weights moved by 1e-7. Measured on PoCL (seeds 1 and 2, kinks followed): 4 values a
 * channel 9e-3 and 2.9e-2, 8 values 3.3e-4 and 5.3e-4, 16 values 1.2e-4 to 1.4e-4 (three
 * seeds), against the 1e-3 a check allows. */
guint
kilt_reference_check_batch (KiltModel *model, guint batch, guint *min_values)
{
  guint need = MAX (batch, 1u), fewest = 0;

  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      guint sp = node->in_shape[0].h * node->in_shape[0].w;
      if (node->type != KILT_LAYER_BATCH_NORM || sp == 0)
        continue;
      need = MAX (
          need, MIN ((KILT_REFERENCE_BN_VALUES + sp - 1) / sp, (guint)KILT_REFERENCE_BN_MAX_BATCH));
    }
  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      guint sp = node->in_shape[0].h * node->in_shape[0].w;
      if (node->type == KILT_LAYER_BATCH_NORM && sp > 0)
        fewest = fewest ? MIN (fewest, need * sp) : need * sp;
    }
  if (min_values)
    *min_values = fewest;
  return need;
}

gboolean
kilt_reference_check_step (KiltContext *ctx, KiltModel *model, guint batch, guint32 seed,
                           double *loss_error, double *grad_error, guint *draws, guint *followed,
                           GError **error)
{
  g_autofree float *params = g_new0 (float, model->n_params + 1);
  g_autofree float *state = g_new0 (float, model->n_state + 1);
  KiltExecutor *exec;
  const char *flipped = NULL;
  gboolean ok = FALSE;
  guint n_followed = 0;

  kilt_model_init_params (model, seed, params, state);
  exec = kilt_executor_new (ctx, model, batch, TRUE, error);
  if (!exec)
    return FALSE;
  for (guint draw = 0; draw < CHECK_DRAWS; draw++)
    {
      ok = check_draw (ctx, model, exec, batch, seed, draw, params, state, loss_error, grad_error,
                       &flipped, &n_followed, error);
      if (draws)
        *draws = draw + 1;
      if (!ok || !flipped)
        break;
      g_debug ("check draw %u: an input to %s's activation is near a kink and fell on the other "
               "side on the device, further from it than the reference follows; drawing new "
               "inputs",
               draw, flipped);
    }
  if (followed)
    *followed = n_followed;
  if (n_followed)
    g_debug ("check: the reference took the device's side of a kink at %u elements", n_followed);
  kilt_executor_free (exec);
  return ok;
}
