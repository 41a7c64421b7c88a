/* Runs a built model on a device for one batch size: buffers, forward and backward passes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-exec"

#include "kilt-exec.h"
#include "kilt-breadcrumb.h"
#include "kilt-error.h"

gboolean
kilt_executor_fuses (KiltModel *model, guint i)
{
  KiltNode *node = g_ptr_array_index (model->nodes, i), *src;
  guint consumers = 0;

  if (node->type != KILT_LAYER_ACTIVATION || node->n_inputs != 1 || node->inputs[0] == 0
      || node->cfg.activation == KILT_ACT_SOFTMAX || !kilt_layer_config_act_fusable (&node->cfg)
      || g_getenv ("KILT_NO_FUSE"))
    return FALSE;
  src = g_ptr_array_index (model->nodes, node->inputs[0]);
  if ((src->type != KILT_LAYER_CONV2D && src->type != KILT_LAYER_DENSE)
      || src->cfg.activation != KILT_ACT_LINEAR)
    return FALSE;
  for (guint j = 1; j < model->nodes->len; j++)
    {
      KiltNode *n = g_ptr_array_index (model->nodes, j);
      for (guint k = 0; k < n->n_inputs; k++)
        consumers += n->inputs[k] == node->inputs[0];
    }
  return consumers == 1;
}

/* Every figure here must match what kilt_executor_new () allocates. */
static void
plan_layout (KiltModel *model, guint batch, gboolean training, const KiltDeviceInfo *info,
             const guint8 *keep, guint64 bytes[KILT_MEM_N_CATEGORIES])
{
  gsize ws = 0;
  g_autoptr (KiltRecompute) layout = kilt_recompute_new (model, batch, training, keep);

  g_return_if_fail (model->built);
  for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
    bytes[i] = 0;
  bytes[KILT_MEM_WEIGHTS] = 4 * MAX (model->n_params, 1) + 4 * MAX (model->n_state, 1);
  if (training)
    bytes[KILT_MEM_GRADIENTS] = 4 * MAX (model->n_grads, 1);
  /* Activations, their gradients and saved values: a node's own, or the slots it shares. */
  bytes[KILT_MEM_ACTIVATIONS] = layout->act_bytes;
  bytes[KILT_MEM_GRADIENTS] += layout->grad_bytes;
  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      if (kilt_executor_fuses (model, i))
        continue; /* shares its input's buffers and has nothing of its own */
      if (node->klass->workspace_floats)
        ws = MAX (ws, node->klass->workspace_floats (node, batch, info));
    }
  bytes[KILT_MEM_WORKSPACE] = 4 * MAX (ws, 1);
}

void
kilt_executor_plan (KiltModel *model, guint batch, gboolean training, const KiltDeviceInfo *info,
                    guint64 bytes[KILT_MEM_N_CATEGORIES])
{
  plan_layout (model, batch, training, info, NULL, bytes);
}

void
kilt_executor_plan_recompute (KiltModel *model, guint batch, const KiltDeviceInfo *info,
                              const guint8 *keep, guint64 bytes[KILT_MEM_N_CATEGORIES])
{
  plan_layout (model, batch, TRUE, info, keep, bytes);
}

static cl_mem
node_alloc (KiltExecutor *exec, KiltMemCategory cat, gsize bytes, KiltNode *node, const char *what,
            GError **error)
{
  KiltBuffer *b
      = kilt_buffer_new (exec->ex.ctx, cat, bytes, error, "layer %s %s", node->name, what);
  if (b == NULL)
    return NULL;
  g_ptr_array_add (exec->node_buffers, b);
  return b->mem;
}

static KiltExecutor *executor_new (KiltContext *ctx, KiltModel *model, guint batch,
                                   gboolean training, const guint8 *keep, GError **error);

KiltExecutor *
kilt_executor_new (KiltContext *ctx, KiltModel *model, guint batch, gboolean training,
                   GError **error)
{
  return executor_new (ctx, model, batch, training, NULL, error);
}

KiltExecutor *
kilt_executor_new_recompute (KiltContext *ctx, KiltModel *model, guint batch, const guint8 *keep,
                             GError **error)
{
  return executor_new (ctx, model, batch, TRUE, keep, error);
}

static KiltBuffer *
slot_alloc (KiltExecutor *exec, KiltMemCategory cat, guint64 bytes, guint index, GError **error)
{
  KiltBuffer *b = kilt_buffer_new (
      exec->ex.ctx, cat, bytes, error, "the layers' shared buffer %u (%s)", index + 1,
      cat == KILT_MEM_ACTIVATIONS ? "activations and their gradients" : "activation gradients");
  if (b)
    g_ptr_array_add (exec->slots, b);
  return b;
}

static void
release_mem (gpointer mem)
{
  clReleaseMemObject (mem);
}

/* A node's @bytes at @off in a shared slot, as a buffer of their own (so that size checks
 * see the node's size, not the slot's). */
static cl_mem
slot_view (KiltExecutor *exec, KiltNode *node, guint slot, guint64 off, gsize bytes,
           const char *what, GError **error)
{
  KiltBuffer *b = g_ptr_array_index (exec->slots, slot);
  cl_buffer_region region = { off, bytes };
  cl_int err = CL_SUCCESS;
  cl_mem mem;

  if (off == 0 && bytes == b->bytes)
    return b->mem;
  mem = clCreateSubBuffer (b->mem, 0, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, exec->ex.ctx->info->name,
                         "placing layer %s %s at byte %" G_GUINT64_FORMAT " of a shared buffer",
                         node->name, what, off);
      return NULL;
    }
  g_ptr_array_add (exec->views, mem);
  return mem;
}

static KiltExecutor *
executor_new (KiltContext *ctx, KiltModel *model, guint batch, gboolean training,
              const guint8 *keep, GError **error)
{
  KiltExecutor *exec;
  gsize ws = 0;
  g_autofree int *last_writer = NULL;

  g_return_val_if_fail (model->built, NULL);
  g_return_val_if_fail (batch > 0, NULL);
  exec = g_new0 (KiltExecutor, 1);
  exec->model = model;
  exec->node_buffers = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_buffer_free);
  exec->slots = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_buffer_free);
  exec->views = g_ptr_array_new_with_free_func (release_mem);
  exec->ex.ctx = ctx;
  exec->ex.nodes = model->nodes;
  exec->ex.batch = batch;
  exec->ex.softmax_fused_node = G_MAXUINT;

  exec->params = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, 4 * MAX (model->n_params, 1), error,
                                  "the model's %zu parameters", model->n_params);
  if (!exec->params)
    goto fail;
  exec->state = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, 4 * MAX (model->n_state, 1), error,
                                 "the model's running statistics");
  if (!exec->state)
    goto fail;
  if (training)
    {
      /* Frozen layers' parameters have no gradients: the buffer holds the trainable ones. */
      exec->grads = kilt_buffer_new (ctx, KILT_MEM_GRADIENTS, 4 * MAX (model->n_grads, 1), error,
                                     "the parameter gradients");
      if (!exec->grads)
        goto fail;
    }
  exec->ex.params = exec->params->mem;
  exec->ex.state = exec->state->mem;
  exec->ex.grads = exec->grads ? exec->grads->mem : NULL;

  if (training && keep)
    {
      KiltRecompute *lo = exec->layout = kilt_recompute_new (model, batch, TRUE, keep);
      for (guint s = 0; s < lo->n_slots; s++)
        if (!slot_alloc (exec, lo->slot_grad[s] ? KILT_MEM_GRADIENTS : KILT_MEM_ACTIVATIONS,
                         lo->slot_bytes[s], s, error))
          goto fail;
    }

  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      gsize act = 4 * (gsize)batch * kilt_shape_size (&node->out_shape);

      /* Conv2D or Dense then Activation: the first applies the activation as it writes its
       * output (and its derivative as it reads the gradient), which saves the second a pass
       * over the activations each way and two launches. */
      node->fused = kilt_executor_fuses (model, i);
      if (node->fused)
        {
          KiltNode *src = g_ptr_array_index (model->nodes, node->inputs[0]);
          src->act_fused = TRUE;
          src->fused_act = node->cfg.activation;
          src->fused_alpha = node->cfg.alpha;
          node->out = src->out;
          node->dout = src->dout;
          node->saved = NULL;
          continue;
        }
      if (exec->layout)
        {
          KiltRecompute *lo = exec->layout;
          node->out
              = slot_view (exec, node, lo->slot_out[i], lo->off_out[i], act, "activations", error);
          if (!node->out)
            goto fail;
          node->saved = NULL;
          if (lo->slot_saved[i] != G_MAXUINT
              && !(node->saved = slot_view (exec, node, lo->slot_saved[i], lo->off_saved[i],
                                            4 * node->klass->saved_floats (node, batch),
                                            "saved values", error)))
            goto fail;
          node->dout = NULL;
          if (lo->slot_dout[i] != G_MAXUINT
              && !(node->dout = slot_view (exec, node, lo->slot_dout[i], lo->off_dout[i], act,
                                           "activation gradients", error)))
            goto fail;
          if (node->klass->workspace_floats)
            ws = MAX (ws, node->klass->workspace_floats (node, batch, ctx->info));
          continue;
        }
      node->out = node_alloc (exec, KILT_MEM_ACTIVATIONS, act, node, "activations", error);
      if (!node->out)
        goto fail;
      node->dout = NULL;
      /* Below the lowest trainable layer no gradient flows, so there is none to keep. */
      if (training && i > 0 && node->grad_path)
        {
          node->dout
              = node_alloc (exec, KILT_MEM_GRADIENTS, act, node, "activation gradients", error);
          if (!node->dout)
            goto fail;
        }
      node->saved = NULL;
      if (node->klass->saved_floats)
        {
          gsize s = node->klass->saved_floats (node, batch);
          if (s)
            {
              node->saved
                  = node_alloc (exec, KILT_MEM_ACTIVATIONS, 4 * s, node, "saved values", error);
              if (!node->saved)
                goto fail;
            }
        }
      if (node->klass->workspace_floats)
        ws = MAX (ws, node->klass->workspace_floats (node, batch, ctx->info));
    }
  exec->workspace = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * MAX (ws, 1), error,
                                     "the shared layer workspace");
  if (!exec->workspace)
    goto fail;
  exec->ex.workspace = exec->workspace->mem;

  /* In reverse order the first consumer to write an input's gradient overwrites it; later
   * ones (earlier nodes with the same input) add to it. The input node needs none. */
  last_writer = g_new0 (int, model->nodes->len);
  for (int i = (int)model->nodes->len - 1; i >= 0; i--)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      for (guint j = 0; j < node->n_inputs; j++)
        {
          guint src = node->inputs[j];
          node->din_needed[j] = training && src != 0
                                && ((KiltNode *)g_ptr_array_index (model->nodes, src))->grad_path;
          node->din_beta[j] = last_writer[src] ? 1.0f : 0.0f;
          if (node->din_needed[j])
            last_writer[src] = 1;
        }
    }
  return exec;

fail:
  kilt_executor_free (exec);
  return NULL;
}

void
kilt_executor_free (KiltExecutor *exec)
{
  if (exec == NULL)
    return;
  for (guint i = 0; i < exec->model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (exec->model->nodes, i);
      node->out = node->dout = node->saved = NULL;
      node->fused = node->act_fused = FALSE;
    }
  g_ptr_array_unref (exec->node_buffers);
  /* The views go before the slots they are part of, and last-made first: NVIDIA's driver
   * (580.159, H100) crashed in clReleaseMemObject on the second of a slot's sub-buffers
   * released in the order they were made, with other slots' made in between; in reverse
   * order every layout of test-recompute frees cleanly there. */
  while (exec->views->len > 0)
    g_ptr_array_remove_index (exec->views, exec->views->len - 1);
  g_ptr_array_unref (exec->views);
  g_ptr_array_unref (exec->slots);
  kilt_recompute_free (exec->layout);
  kilt_buffer_free (exec->workspace);
  kilt_buffer_free (exec->grads);
  kilt_buffer_free (exec->state);
  kilt_buffer_free (exec->params);
  g_free (exec);
}

gboolean
kilt_executor_upload (KiltExecutor *exec, const float *params, const float *state, GError **error)
{
  if (exec->model->n_params
      && !kilt_buffer_write (exec->params, 0, params, 4 * exec->model->n_params, error))
    return FALSE;
  if (exec->model->n_state && state
      && !kilt_buffer_write (exec->state, 0, state, 4 * exec->model->n_state, error))
    return FALSE;
  return TRUE;
}

gboolean
kilt_executor_download (KiltExecutor *exec, float *params, float *state, GError **error)
{
  if (exec->model->n_params && params
      && !kilt_buffer_read (exec->params, 0, params, 4 * exec->model->n_params, error))
    return FALSE;
  if (exec->model->n_state && state
      && !kilt_buffer_read (exec->state, 0, state, 4 * exec->model->n_state, error))
    return FALSE;
  return TRUE;
}

cl_mem
kilt_executor_input (KiltExecutor *exec)
{
  return ((KiltNode *)g_ptr_array_index (exec->model->nodes, 0))->out;
}

gboolean
kilt_executor_forward (KiltExecutor *exec, gboolean training, GError **error)
{
  exec->ex.training = training;
  for (guint i = 1; i < exec->model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (exec->model->nodes, i);
      if (node->fused)
        continue;
      exec->ex.ctx->prof_tag = KILT_PROF_TAG (i, KILT_PHASE_FORWARD);
      kilt_breadcrumb_layer (node->name, training ? KILT_CRUMB_FORWARD : KILT_CRUMB_INFERENCE);
      if (!node->klass->forward (node, &exec->ex, error))
        return FALSE;
    }
  return TRUE;
}

/* Redoes the forward of nodes @from .. @to - 1 (a segment between two checkpoints), which
 * reads only the checkpoint before @from and nodes of the segment. */
static gboolean
recompute_segment (KiltExecutor *exec, guint from, guint to, GError **error)
{
  gboolean ok = TRUE;

  exec->ex.training = TRUE;
  exec->ex.recompute = TRUE;
  for (guint j = from; j < to && ok; j++)
    {
      KiltNode *node = g_ptr_array_index (exec->model->nodes, j);
      if (node->fused)
        continue;
      exec->ex.ctx->prof_tag = KILT_PROF_TAG (j, KILT_PHASE_FORWARD);
      kilt_breadcrumb_layer (node->name, KILT_CRUMB_FORWARD);
      ok = node->klass->forward (node, &exec->ex, error);
    }
  exec->ex.recompute = FALSE;
  return ok;
}

gboolean
kilt_executor_backward (KiltExecutor *exec, GError **error)
{
  const KiltRecompute *lo = exec->layout;

  g_return_val_if_fail (exec->grads != NULL, FALSE);
  for (guint i = exec->model->nodes->len - 1; i >= 1; i--)
    {
      KiltNode *node = g_ptr_array_index (exec->model->nodes, i);
      /* A checkpoint before the last one ends a segment whose forward later segments have
       * overwritten in the shared slots: redo it, now that the backward pass needs it. */
      if (lo && lo->redo[i])
        {
          guint from = i;
          while (from > 1 && !lo->keep[from - 1])
            from--;
          if (from < i && !recompute_segment (exec, from, i, error))
            return FALSE;
        }
      /* A node off every gradient's path has neither trainable parameters nor an input
       * that needs its gradient: nothing to compute. */
      if (!node->fused && node->grad_path)
        {
          exec->ex.ctx->prof_tag = KILT_PROF_TAG (i, KILT_PHASE_BACKWARD);
          kilt_breadcrumb_layer (node->name, KILT_CRUMB_BACKWARD);
          if (node->klass->backward && !node->klass->backward (node, &exec->ex, error))
            return FALSE;
        }
      if (exec->backward_hook)
        exec->backward_hook (exec, i, exec->backward_hook_data);
    }
  return TRUE;
}
