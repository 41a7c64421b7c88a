/* Activation recompute: where checkpoints may go, gradients and trained weights equal to keeping
 * everything, the plan against what the executor allocates, and a model that fits only so. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-loss.h"
#include "kilt-model-json.h"
#include "kilt-optimizer.h"
#include "kilt-planner.h"
#include "kilt-recompute.h"
#include "kilt-run-store.h"
#include "kilt-trainer.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ---- models ------------------------------------------------------------------------------- */

static guint
add1 (KiltModel *m, KiltLayerType type, const char *name, const KiltLayerConfig *c, guint in)
{
  return kilt_model_add (m, type, name, c, 1, &in);
}

static KiltLayerConfig
conv_cfg (guint filters, KiltActivation act)
{
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.units = filters;
  c.same = TRUE;
  c.activation = act;
  return c;
}

static KiltLayerConfig
act_cfg (KiltActivation act)
{
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
  c.activation = act;
  return c;
}

static KiltLayerConfig
dropout_cfg (float rate)
{
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_DROPOUT);
  c.rate = rate;
  return c;
}

/* A small conv net with BatchNormalization, Dropout, a residual Add and an Activation that the
 * executor folds into its Conv2D:
 *   conv1 (linear) -> bn1 -> relu1 -> conv2 (linear) -> relu2 (folded) -> add (relu1, relu2)
 *   -> pool -> drop1 -> conv3 (relu) -> bn2 -> drop2 -> flatten -> dense (relu) -> drop3
 *   -> out (softmax). */
static KiltModel *
conv_net (KiltShape in, guint classes)
{
  KiltModel *m = kilt_model_new ("recompute_net");
  KiltLayerConfig c;
  guint x, r1, r2, add;
  g_autoptr (GError) error = NULL;

  x = kilt_model_add_input (m, "input", in);
  c = conv_cfg (6, KILT_ACT_LINEAR);
  x = add1 (m, KILT_LAYER_CONV2D, "conv1", &c, x);
  x = add1 (m, KILT_LAYER_BATCH_NORM, "bn1", NULL, x);
  c = act_cfg (KILT_ACT_RELU);
  r1 = add1 (m, KILT_LAYER_ACTIVATION, "relu1", &c, x);
  c = conv_cfg (6, KILT_ACT_LINEAR);
  x = add1 (m, KILT_LAYER_CONV2D, "conv2", &c, r1);
  c = act_cfg (KILT_ACT_RELU);
  r2 = add1 (m, KILT_LAYER_ACTIVATION, "relu2", &c, x);
  add = kilt_model_add (m, KILT_LAYER_ADD, "add", NULL, 2, (guint[]){ r1, r2 });
  c = kilt_layer_config_default (KILT_LAYER_MAX_POOL2D);
  x = add1 (m, KILT_LAYER_MAX_POOL2D, "pool", &c, add);
  c = dropout_cfg (0.3f);
  x = add1 (m, KILT_LAYER_DROPOUT, "drop1", &c, x);
  c = conv_cfg (8, KILT_ACT_RELU);
  x = add1 (m, KILT_LAYER_CONV2D, "conv3", &c, x);
  x = add1 (m, KILT_LAYER_BATCH_NORM, "bn2", NULL, x);
  c = dropout_cfg (0.2f);
  x = add1 (m, KILT_LAYER_DROPOUT, "drop2", &c, x);
  x = add1 (m, KILT_LAYER_FLATTEN, "flatten", NULL, x);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = 16;
  c.activation = KILT_ACT_RELU;
  x = add1 (m, KILT_LAYER_DENSE, "dense", &c, x);
  c = dropout_cfg (0.5f);
  x = add1 (m, KILT_LAYER_DROPOUT, "drop3", &c, x);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = classes;
  c.activation = KILT_ACT_SOFTMAX;
  add1 (m, KILT_LAYER_DENSE, "out", &c, x);
  m->loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  return m;
}

static guint
node_index (KiltModel *m, const char *name)
{
  KiltNode *n = kilt_model_find (m, name);
  g_assert_nonnull (n);
  return n->index;
}

/* ---- where checkpoints may go ------------------------------------------------------------- */

static void
test_cuts (void)
{
  g_autoptr (KiltModel) m = conv_net ((KiltShape){ 3, 8, 8 }, 4);
  g_autofree guint8 *cuts = kilt_recompute_cuts (m);
  const char *yes[] = { "input", "conv1", "bn1",   "relu1",   "add",   "pool",  "drop1",
                        "conv3", "bn2",   "drop2", "flatten", "dense", "drop3", "out" };
  /* relu1 -> add passes over conv2 and relu2; relu2 is folded into conv2. */
  const char *no[] = { "conv2", "relu2" };
  g_autoptr (KiltRecompute) all = kilt_recompute_new (m, 4, TRUE, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (yes); i++)
    g_assert_cmpuint (cuts[node_index (m, yes[i])], ==, 1);
  for (guint i = 0; i < G_N_ELEMENTS (no); i++)
    g_assert_cmpuint (cuts[node_index (m, no[i])], ==, 0);

  /* Keeping everything recomputes nothing and owns every buffer. */
  g_assert_cmpuint (all->recompute_flops, ==, 0);
  g_assert_cmpuint (all->n_slots, ==, 0);
  g_assert_cmpuint (all->n_blocks, ==, G_N_ELEMENTS (yes) - 1);
  g_assert_cmpuint (all->n_blocks_kept, ==, all->n_blocks);

  /* A checkpoint only at the pool: everything before it but the input is recomputed once. */
  {
    g_autofree guint8 *keep = g_new0 (guint8, kilt_model_n_nodes (m));
    g_autoptr (KiltRecompute) r = NULL;
    guint64 want = 0;
    keep[node_index (m, "pool")] = 1;
    keep[node_index (m, "conv2")] = 1; /* not a place a checkpoint may go: ignored */
    r = kilt_recompute_new (m, 4, TRUE, keep);
    g_assert_cmpuint (r->keep[node_index (m, "conv2")], ==, 0);
    g_assert_cmpuint (r->keep[node_index (m, "pool")], ==, 1);
    g_assert_cmpuint (r->keep[0], ==, 1);
    g_assert_cmpuint (r->keep[node_index (m, "out")], ==, 1);
    for (guint i = 1; i < node_index (m, "pool"); i++)
      {
        KiltNode *n = kilt_model_node (m, i);
        want += n->klass->flops ? n->klass->flops (n) : 0;
      }
    g_assert_cmpuint (r->recompute_flops, ==, want);
    g_assert_cmpuint (r->n_blocks_kept, ==, r->n_blocks - 4); /* conv1 .. pool but relu1 */
    g_assert_cmpuint (r->act_bytes + r->grad_bytes, <, all->act_bytes + all->grad_bytes);
    g_assert_cmpfloat (kilt_recompute_percent (r), >, 0);
  }
}

/* ---- one step, keeping and recomputing ---------------------------------------------------- */

typedef struct
{
  float *grads, *state, *out, *params;
  float metrics[3];
} StepResult;

static void
step_result_clear (StepResult *r)
{
  g_free (r->grads);
  g_free (r->state);
  g_free (r->out);
  g_free (r->params);
}

#define BATCH 6

/* Uploads @params/@state, runs @steps training steps (forward, loss, backward, SGD with
 * momentum) on random @x/@t at seed 11 from step 5, and reads the last gradients, the running
 * statistics, the output and the weights back. @keep NULL keeps everything. */
static void
run_steps (KiltContext *ctx, KiltModel *m, const guint8 *keep, const float *params,
           const float *state, const float *x, const float *t, guint steps, StepResult *res)
{
  g_autoptr (GError) error = NULL;
  KiltExecutor *exec = kilt_executor_new_recompute (ctx, m, BATCH, keep, &error);
  KiltNode *last = kilt_model_output (m);
  guint n_out = kilt_model_n_outputs (m);
  gsize in_size = BATCH * kilt_shape_size (&kilt_model_node (m, 0)->out_shape);
  KiltOptimizerConfig oc = kilt_optimizer_config_default (KILT_OPT_SGD);
  KiltOptimizer *opt;
  g_autoptr (KiltBuffer) targets = NULL, metrics = NULL;

  g_assert_no_error (error);
  g_assert_true ((exec->layout != NULL) == (keep != NULL));
  oc.momentum = 0.9f;
  oc.lr = 0.05f;
  opt = kilt_optimizer_new (ctx, &oc, m->n_grads, &error);
  g_assert_no_error (error);
  kilt_optimizer_set_ranges (opt, m->grad_ranges, m->n_grad_ranges);
  g_assert_true (kilt_executor_upload (exec, params, state, &error));
  exec->ex.seed = 11;
  exec->ex.softmax_fused_node = last->index;
  targets = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * BATCH, &error, "test targets");
  metrics = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (BATCH), &error,
                             "test metrics");
  g_assert_no_error (error);
  g_assert_true (kilt_buffer_write (targets, 0, t, 4 * BATCH, &error));
  for (guint s = 0; s < steps; s++)
    {
      const float zero = 0;
      exec->ex.step = 5 + s;
      g_assert_cmpint (clEnqueueFillBuffer (ctx->queue, metrics->mem, &zero, 4, 0, metrics->bytes,
                                            0, NULL, NULL),
                       ==, CL_SUCCESS);
      g_assert_cmpint (clEnqueueWriteBuffer (ctx->queue, kilt_executor_input (exec), CL_TRUE, 0,
                                             4 * in_size, x + s * in_size, 0, NULL, NULL),
                       ==, CL_SUCCESS);
      g_assert_true (kilt_executor_forward (exec, TRUE, &error));
      g_assert_true (kilt_loss_enqueue (ctx, m->loss, BATCH, BATCH, n_out, last->out, targets->mem,
                                        last->dout, metrics->mem, &error));
      g_assert_true (kilt_executor_backward (exec, &error));
      g_assert_no_error (error);
      if (s + 1 < steps)
        g_assert_true (
            kilt_optimizer_step (opt, exec->params->mem, exec->grads->mem, 5 + s, &error));
      g_assert_no_error (error);
    }
  res->grads = g_new (float, MAX (m->n_grads, 1));
  res->params = g_new (float, m->n_params);
  res->state = g_new (float, m->n_state);
  res->out = g_new (float, BATCH *n_out);
  g_assert_true (kilt_buffer_read (exec->grads, 0, res->grads, 4 * m->n_grads, &error));
  g_assert_true (kilt_executor_download (exec, res->params, res->state, &error));
  /* The output is a checkpoint: the recomputed segments did not overwrite it. */
  g_assert_cmpint (clEnqueueReadBuffer (ctx->queue, last->out, CL_TRUE, 0, 4 * BATCH * n_out,
                                        res->out, 0, NULL, NULL),
                   ==, CL_SUCCESS);
  g_assert_true (kilt_buffer_read (metrics, 0, res->metrics, sizeof res->metrics, &error));
  g_assert_no_error (error);
  kilt_optimizer_free (opt);
  kilt_executor_free (exec);
}

static void
assert_same (const float *a, const float *b, gsize n, const char *what)
{
  for (gsize i = 0; i < n; i++)
    if (memcmp (&a[i], &b[i], sizeof (float)) != 0)
      g_error ("%s differ at %zu: %.9g kept, %.9g recomputed", what, i, a[i], b[i]);
}

/* Every buffer of @lo lies inside its slot at an aligned offset; returns how many do not start
 * at their slot's beginning. */
static guint
assert_placed (KiltModel *m, const KiltRecompute *lo)
{
  guint beside = 0;

  for (guint i = 0; i < lo->n_nodes; i++)
    {
      KiltNode *n = kilt_model_node (m, i);
      guint64 act = 4 * (guint64)BATCH * kilt_shape_size (&n->out_shape);
      guint64 saved = n->klass->saved_floats ? 4 * (guint64)n->klass->saved_floats (n, BATCH) : 0;
      const guint *slot[] = { lo->slot_out, lo->slot_saved, lo->slot_dout };
      const guint64 *off[] = { lo->off_out, lo->off_saved, lo->off_dout };
      guint64 bytes[] = { act, saved, act };

      if (kilt_executor_fuses (m, i))
        continue;
      g_assert_cmpuint (lo->slot_out[i], <, lo->n_slots);
      for (guint k = 0; k < 3; k++)
        {
          if (slot[k][i] == G_MAXUINT)
            continue;
          g_assert_cmpuint (slot[k][i], <, lo->n_slots);
          g_assert_cmpuint (off[k][i] % KILT_RECOMPUTE_ALIGN, ==, 0);
          g_assert_cmpuint (off[k][i] + bytes[k], <=, lo->slot_bytes[slot[k][i]]);
          beside += off[k][i] > 0;
        }
    }
  return beside;
}

/* Gradients, running statistics and weights after three steps equal the keep-everything path
 * bit for bit: a recomputed forward runs the same kernels on the same inputs (Dropout draws
 * from (seed, layer, step, element), BatchNormalization recomputes the same batch statistics),
 * so anything but identical bits would be a bug, not rounding. */
static void
test_equal_to_keep (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (KiltModel) m = NULL;
  g_autofree float *params = NULL, *state = NULL, *x = NULL, *t = NULL;
  g_autofree guint8 *cuts = NULL;
  StepResult kept = { 0 };
  const guint steps = 3;
  gsize in_size;
  KiltRng rng;
  double gnorm = 0;

  if (ctx == NULL)
    return;
  m = conv_net ((KiltShape){ 3, 8, 8 }, 4);
  in_size = BATCH * kilt_shape_size (&kilt_model_node (m, 0)->out_shape);
  params = g_new (float, m->n_params);
  state = g_new (float, m->n_state);
  kilt_model_init_params (m, 3, params, state);
  kilt_rng_init (&rng, 99);
  x = g_new (float, steps *in_size);
  for (gsize i = 0; i < steps * in_size; i++)
    x[i] = (float)(2 * kilt_rng_uniform (&rng) - 1);
  t = g_new (float, BATCH);
  for (guint i = 0; i < BATCH; i++)
    t[i] = (float)kilt_rng_below (&rng, 4);

  run_steps (ctx, m, NULL, params, state, x, t, steps, &kept);
  for (gsize i = 0; i < m->n_params; i++)
    gnorm += (double)kept.grads[i] * kept.grads[i];
  g_assert_cmpfloat (gnorm, >, 0);
  /* The running statistics moved (they start at 0 and 1): a second update would show. */
  g_assert_cmpfloat (fabsf (kept.state[0]), >, 0);

  cuts = kilt_recompute_cuts (m);
  {
    g_autofree guint8 *pool_only = g_new0 (guint8, kilt_model_n_nodes (m));
    g_autoptr (KiltRecompute) least = kilt_recompute_choose (m, BATCH, 0, TRUE);
    const guint8 *layouts[] = { cuts, pool_only, least->keep };
    const char *names[] = { "every checkpoint", "the pool alone", "least memory" };

    guint beside = 0;

    pool_only[node_index (m, "pool")] = 1;
    g_assert_cmpuint (least->recompute_flops, >, 0);
    for (guint l = 0; l < G_N_ELEMENTS (layouts); l++)
      {
        StepResult rc = { 0 };
        g_autoptr (KiltRecompute) lo = kilt_recompute_new (m, BATCH, TRUE, layouts[l]);
        g_test_message ("%s: %u of %u blocks kept, +%.0f%% compute", names[l], lo->n_blocks_kept,
                        lo->n_blocks, kilt_recompute_percent (lo));
        g_assert_cmpuint (lo->recompute_flops, >, 0);
        beside += assert_placed (m, lo);
        run_steps (ctx, m, layouts[l], params, state, x, t, steps, &rc);
        assert_same (kept.grads, rc.grads, m->n_params, "gradients");
        assert_same (kept.params, rc.params, m->n_params, "weights");
        assert_same (kept.state, rc.state, m->n_state, "running statistics");
        assert_same (kept.out, rc.out, BATCH * kilt_model_n_outputs (m), "outputs");
        assert_same (kept.metrics, rc.metrics, 3, "loss metrics");
        step_result_clear (&rc);
      }
    /* Some buffers sat beside others in a slot, so the steps above tried that too. */
    g_assert_cmpuint (beside, >, 0);
  }
  step_result_clear (&kept);
}

/* The same with the first block frozen (transfer learning): no gradient flows below conv2,
 * so the frozen layers' activations are needed in the forward pass only (and by a redone
 * segment after them: a checkpoint no backward reads must last until then), and segments
 * whose checkpoint runs no backward are not redone. */
static void
test_equal_frozen (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (KiltModel) m = NULL;
  g_autofree float *params = NULL, *state = NULL, *x = NULL, *t = NULL;
  g_autoptr (KiltRecompute) least = NULL, all = NULL;
  g_autoptr (GError) error = NULL;
  StepResult kept = { 0 }, rc = { 0 };
  gsize in_size;
  KiltRng rng;

  if (ctx == NULL)
    return;
  m = conv_net ((KiltShape){ 3, 8, 8 }, 4);
  kilt_model_set_trainable (m, node_index (m, "conv1"), FALSE);
  kilt_model_set_trainable (m, node_index (m, "bn1"), FALSE);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  g_assert_false (kilt_model_node (m, node_index (m, "relu1"))->grad_path);
  in_size = BATCH * kilt_shape_size (&kilt_model_node (m, 0)->out_shape);
  params = g_new (float, m->n_params);
  state = g_new (float, m->n_state);
  kilt_model_init_params (m, 8, params, state);
  kilt_rng_init (&rng, 17);
  x = g_new (float, 2 * in_size);
  for (gsize i = 0; i < 2 * in_size; i++)
    x[i] = (float)(2 * kilt_rng_uniform (&rng) - 1);
  t = g_new (float, BATCH);
  for (guint i = 0; i < BATCH; i++)
    t[i] = (float)kilt_rng_below (&rng, 4);
  least = kilt_recompute_choose (m, BATCH, 0, TRUE);
  all = kilt_recompute_new (m, BATCH, TRUE, NULL);
  g_test_message ("frozen, least memory: %u of %u blocks kept, +%.0f%% compute, %" G_GUINT64_FORMAT
                  " bytes against %" G_GUINT64_FORMAT,
                  least->n_blocks_kept, least->n_blocks, kilt_recompute_percent (least),
                  least->act_bytes + least->grad_bytes, all->act_bytes + all->grad_bytes);
  g_assert_cmpuint (least->recompute_flops, >, 0);
  g_assert_cmpuint (least->act_bytes + least->grad_bytes, <, all->act_bytes + all->grad_bytes);
  /* Nothing below the frozen block's output is redone: its backward never runs. */
  g_assert_cmpuint (least->redo[node_index (m, "conv1")] + least->redo[node_index (m, "bn1")], ==,
                    0);
  run_steps (ctx, m, NULL, params, state, x, t, 2, &kept);
  run_steps (ctx, m, least->keep, params, state, x, t, 2, &rc);
  assert_same (kept.grads, rc.grads, m->n_grads, "gradients");
  assert_same (kept.params, rc.params, m->n_params, "weights");
  assert_same (kept.state, rc.state, m->n_state, "running statistics");
  assert_same (kept.out, rc.out, BATCH * kilt_model_n_outputs (m), "outputs");
  step_result_clear (&kept);
  step_result_clear (&rc);
}

/* ---- the plan against the device ---------------------------------------------------------- */

static void
test_plan_matches_executor (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (KiltModel) m = NULL;
  g_autoptr (KiltPlan) keep = NULL, rc = NULL, legacy = NULL;
  g_autoptr (GError) error = NULL;
  KiltOptimizerConfig oc = kilt_optimizer_config_default (KILT_OPT_ADAM);
  KiltMemStats before, after, stepped;
  KiltExecutor *exec;
  KiltOptimizer *opt;
  guint batch = 16;
  guint64 step;

  if (ctx == NULL)
    return;
  m = conv_net ((KiltShape){ 3, 16, 16 }, 4);
  keep = kilt_plan_compute_memory (m, batch, &oc, 0, ctx->info, ctx->budget, KILT_MEMORY_KEEP);
  legacy = kilt_plan_compute (m, batch, &oc, 0, ctx->info, ctx->budget);
  rc = kilt_plan_compute_memory (m, batch, &oc, 0, ctx->info, ctx->budget, KILT_MEMORY_RECOMPUTE);
  g_test_message ("keep: %s", keep->message);
  g_test_message ("recompute: %s", rc->message);
  g_assert_false (keep->recompute);
  g_assert_null (keep->keep);
  g_assert_cmpuint (keep->total, ==, legacy->total);
  g_assert_true (rc->recompute && rc->fits);
  g_assert_nonnull (rc->keep);
  g_assert_cmpuint (rc->total, <, keep->total);
  g_assert_cmpuint (rc->keep_total, ==, keep->total);
  g_assert_cmpuint (rc->n_blocks_kept, <, rc->n_blocks);
  g_assert_cmpfloat (rc->recompute_percent, >, 0);
  g_assert_cmpfloat (rc->recompute_percent, <, 34); /* at most one more forward pass */
  g_assert_true (g_str_has_prefix (rc->memory_line, "keeps "));
  g_assert_nonnull (strstr (rc->memory_line, " blocks, recomputes the rest: +"));
  g_assert_nonnull (strstr (rc->memory_line, "% compute, fits in "));
  g_assert_true (g_str_has_prefix (keep->memory_line, "keeps every layer's activations: fits in"));
  /* Auto keeps everything when that fits. */
  {
    g_autoptr (KiltPlan) a
        = kilt_plan_compute_memory (m, batch, &oc, 0, ctx->info, ctx->budget, KILT_MEMORY_AUTO);
    g_assert_false (a->recompute);
    g_assert_cmpuint (a->total, ==, keep->total);
  }

  /* What the counters see, category by category, and nothing more during a step. */
  kilt_mem_stats_snapshot (&ctx->mem, &before);
  exec = kilt_executor_new_recompute (ctx, m, batch, rc->keep, &error);
  g_assert_no_error (error);
  opt = kilt_optimizer_new (ctx, &oc, m->n_params, &error);
  g_assert_no_error (error);
  kilt_mem_stats_snapshot (&ctx->mem, &after);
  /* The plan also counts the trainer's targets and metrics, which this test does not make. */
  step = kilt_plan_step_bytes (m, batch);
  g_assert_cmpuint (step, >, 0);
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    g_assert_cmpint (after.live[c] - before.live[c], ==,
                     (gint64)rc->bytes[c] - (c == KILT_MEM_WORKSPACE ? (gint64)step : 0));
  g_assert_cmpint (after.live_total - before.live_total, ==, (gint64)(rc->total - step));
  g_assert_true (kilt_executor_forward (exec, TRUE, &error));
  g_assert_true (kilt_executor_backward (exec, &error));
  g_assert_true (kilt_context_finish (ctx, &error));
  g_assert_no_error (error);
  kilt_mem_stats_snapshot (&ctx->mem, &stepped);
  g_assert_cmpint (stepped.live_total, ==, after.live_total);
  g_assert_cmpint (stepped.peak_total, ==, after.peak_total);
  kilt_optimizer_free (opt);
  kilt_executor_free (exec);
  kilt_mem_stats_snapshot (&ctx->mem, &stepped);
  g_assert_cmpint (stepped.live_total, ==, before.live_total);
}

/* The largest batch: recompute raises it, and it is what the device then allocates. */
static void
test_plan_max_batch (void)
{
  g_autoptr (KiltModel) m = conv_net ((KiltShape){ 3, 32, 32 }, 4);
  KiltDeviceInfo dev = { 0 };
  g_autoptr (KiltPlan) keep = NULL, autop = NULL;

  dev.name = (char *)"Test Device";
  dev.global_mem = (guint64)64 << 20;
  dev.max_alloc = (guint64)64 << 20;
  keep = kilt_plan_compute_memory (m, 4096, NULL, 0, &dev, 0, KILT_MEMORY_KEEP);
  autop = kilt_plan_compute_memory (m, 4096, NULL, 0, &dev, 0, KILT_MEMORY_AUTO);
  g_test_message ("keep: %s", keep->message);
  g_test_message ("auto: %s", autop->message);
  g_assert_false (keep->fits || autop->fits);
  g_assert_cmpuint (keep->max_batch, >=, 1);
  g_assert_cmpuint (autop->max_batch, >, keep->max_batch);
  g_assert_true (g_str_has_suffix (autop->message, " fits recomputing activations"));
  {
    /* At auto's largest batch, auto recomputes and fits; one more does not fit at all. */
    g_autoptr (KiltPlan) edge
        = kilt_plan_compute_memory (m, autop->max_batch, NULL, 0, &dev, 0, KILT_MEMORY_AUTO);
    g_autoptr (KiltPlan) over = kilt_plan_compute_memory (m, autop->max_batch + 1, NULL, 0, &dev, 0,
                                                          KILT_MEMORY_RECOMPUTE);
    g_assert_true (edge->fits && edge->recompute);
    g_assert_false (over->fits);
  }
  {
    /* Keep refuses, and says that recomputing fits. */
    guint b = (keep->max_batch + autop->max_batch) / 2;
    g_autoptr (KiltPlan) k = kilt_plan_compute_memory (m, b, NULL, 0, &dev, 0, KILT_MEMORY_KEEP);
    g_autofree char *want = g_strdup_printf ("recomputing activations, batch %u fits in", b);
    g_assert_false (k->fits);
    g_test_message ("keep at %u: %s; %s", b, k->message, k->hint);
    g_assert_true (k->recompute_fits);
    g_assert_true (g_str_has_prefix (k->hint, want));
    g_assert_null (keep->hint == NULL ? NULL : strstr (keep->hint, "fits in"));
    g_assert_nonnull (keep->hint); /* at 4096 only a smaller batch fits, recomputing */
    g_assert_true (g_str_has_suffix (keep->hint, " fits"));
  }
}

/* The case: VGG16 at 224x224, batch 32, plain SGD, on a PoCL device limited to 3 GiB
 * (POCL_MEMORY_LIMIT=3: 1 GiB per allocation, 2 compute units) under the trainer's budget
 * rule. Keeping every activation does not fit and is refused; auto recomputes and fits. Only
 * the plan is made here (no device memory), so it runs anywhere. */
static void
test_vgg16_fits (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) vgg = kilt_model_load_preset ("vgg16", NULL, 0, &error);
  g_autoptr (KiltPlan) keep = NULL, autop = NULL;
  KiltOptimizerConfig sgd = kilt_optimizer_config_default (KILT_OPT_SGD);
  KiltDeviceInfo dev = { 0 };
  guint64 budget;

  g_assert_no_error (error);
  dev.name = (char *)"PoCL limited to 3 GiB";
  dev.type = (char *)"CPU";
  dev.compute_units = 2;
  dev.global_mem = (guint64)3 << 30;
  dev.max_alloc = (guint64)1 << 30;
  budget = kilt_context_budget_for (&dev);
  sgd.momentum = 0;
  keep = kilt_plan_compute_memory (vgg, 32, &sgd, 0, &dev, budget, KILT_MEMORY_KEEP);
  autop = kilt_plan_compute_memory (vgg, 32, &sgd, 0, &dev, budget, KILT_MEMORY_AUTO);
  g_test_message ("keep: %s; %s", keep->message, keep->hint);
  g_test_message ("auto: %s", autop->message);
  g_assert_false (keep->fits);
  g_assert_cmpuint (keep->max_batch, <, 32);
  g_assert_true (keep->recompute_fits);
  g_assert_true (g_str_has_prefix (keep->hint, "recomputing activations, batch 32 fits in"));
  g_assert_true (autop->fits && autop->recompute);
  g_assert_cmpuint (autop->total, <=, budget);
  g_assert_cmpuint (autop->keep_total, ==, keep->total);
  g_assert_cmpuint (autop->n_blocks_kept, <, autop->n_blocks);
  g_assert_cmpuint (autop->largest_alloc, <=, dev.max_alloc);
}

/* ---- training through the trainer --------------------------------------------------------- */

typedef struct
{
  gboolean started, recompute;
  double recompute_percent;
  char *memory_line;
  guint steps;
  KiltRunStatus status;
  GError *error;
  gint64 leaked, peak;
  double loss;
} Run;

static void
on_event (const KiltEvent *ev, gpointer data)
{
  Run *r = data;

  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        r->started = TRUE;
        r->recompute = ev->recompute;
        r->recompute_percent = ev->recompute_percent;
        r->memory_line = g_strdup (ev->message);
        break;
      case KILT_EVENT_EPOCH:
        r->loss = ev->loss;
        r->steps = ev->step;
        break;
      case KILT_EVENT_FINISHED:
        r->status = ev->status;
        r->error = ev->error ? g_error_copy (ev->error) : NULL;
        r->leaked = ev->leaked_bytes;
        r->peak = ev->mem.peak_total;
        break;
      default:
        break;
    }
}

static void
run_clear (Run *r)
{
  g_free (r->memory_line);
  g_clear_error (&r->error);
}

/* @n byte images of @shape in 3 classes, each a bright band whose place depends on the class. */
static KiltDataset *
band_data (KiltShape shape, gsize n)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  gsize size = kilt_shape_size (&shape);
  KiltRng rng;

  kilt_rng_init (&rng, 4321);
  ds->name = g_strdup ("bands");
  ds->source = g_strdup ("test-recompute");
  ds->format = g_strdup ("sample");
  ds->shape = shape;
  ds->type = KILT_SAMPLE_U8;
  ds->n_classes = 3;
  ds->class_names = g_strsplit ("top middle bottom", " ", -1);
  ds->n_targets = 1;
  ds->train.n = n;
  ds->train.u8 = g_new (guint8, n * size);
  ds->train.labels = g_new (gint32, n);
  for (gsize i = 0; i < n; i++)
    {
      guint label = kilt_rng_below (&rng, 3);
      ds->train.labels[i] = (gint32)label;
      for (gsize p = 0; p < size; p++)
        {
          guint row = (guint)((p % (shape.h * shape.w)) / shape.w);
          gboolean band = row * 3 / shape.h == label;
          ds->train.u8[i * size + p] = (guint8)((band ? 140 : 0) + kilt_rng_below (&rng, 110));
        }
    }
  kilt_dataset_compute_stats (ds);
  kilt_dataset_compute_hash (ds);
  return ds;
}

static void
train_run (KiltModel *m, KiltDataset *ds, const KiltTrainConfig *cfg, Run *r)
{
  KiltTrainer *t = kilt_trainer_new (m, ds, cfg, on_event, r);

  kilt_trainer_start (t);
  g_assert_cmpint (kilt_trainer_join (t), ==, r->status);
  kilt_trainer_free (t);
  g_assert_cmpint (r->leaked, ==, 0);
}

/* Two epochs of SGD with momentum through the trainer: the checkpoint (weights, running
 * statistics, optimizer state) is the same bit for bit with --memory keep and recompute. */
static void
test_trainer_equal (void)
{
  g_autofree char *dir = NULL;
  g_autoptr (KiltCheckpoint) a = NULL, b = NULL;
  KiltMemoryMode modes[] = { KILT_MEMORY_KEEP, KILT_MEMORY_RECOMPUTE };
  KiltCheckpoint *ck[2] = { NULL, NULL };

  if (kilt_test_context () == NULL)
    return;
  dir = kilt_test_tmpdir ();
  for (guint i = 0; i < 2; i++)
    {
      KiltTrainConfig cfg = kilt_train_config_default ();
      g_autofree char *path = g_strdup_printf ("%s/%s.ckpt", dir, kilt_memory_mode_name (modes[i]));
      g_autoptr (GError) error = NULL;
      Run r = { 0 };

      cfg.epochs = 2;
      cfg.batch = 8;
      cfg.seed = 5;
      cfg.opt = kilt_optimizer_config_default (KILT_OPT_SGD);
      cfg.opt.momentum = 0.9f;
      cfg.opt.lr = 0.02f;
      cfg.memory = modes[i];
      cfg.checkpoint_path = path;
      train_run (conv_net ((KiltShape){ 1, 8, 8 }, 3), band_data ((KiltShape){ 1, 8, 8 }, 28), &cfg,
                 &r);
      g_assert_no_error (r.error);
      g_assert_cmpint (r.status, ==, KILT_RUN_FINISHED);
      g_assert_cmpuint (r.steps, ==, 4);
      g_assert_true (r.recompute == (modes[i] == KILT_MEMORY_RECOMPUTE));
      g_test_message ("%s: %s, loss %.6f", kilt_memory_mode_name (modes[i]), r.memory_line, r.loss);
      ck[i] = kilt_checkpoint_load (path, &error);
      g_assert_no_error (error);
      run_clear (&r);
    }
  a = ck[0];
  b = ck[1];
  g_assert_cmpuint (a->global_step, ==, 8);
  g_assert_cmpuint (a->n_params, ==, b->n_params);
  assert_same (a->params, b->params, a->n_params, "trained weights");
  assert_same (a->state, b->state, a->n_state, "running statistics");
  assert_same (a->opt_state, b->opt_state, a->n_opt_state, "optimizer state");
  kilt_test_remove_tree (dir);
}

/* 1 x 16 x 16 images blown up 8 times (UpSampling2D costs no compute), a Conv2D of 8 filters,
 * then four BatchNormalization -> tanh -> Dropout: thirteen layers of 8 x 128 x 128 floats
 * (512 KiB a sample each, and as much for its gradient), pooled away to 3 classes. */
static KiltModel *
wide_net (void)
{
  KiltModel *m = kilt_model_new ("wide_net");
  KiltLayerConfig c;
  guint x;
  g_autoptr (GError) error = NULL;

  x = kilt_model_add_input (m, "input", (KiltShape){ 1, 16, 16 });
  c = kilt_layer_config_default (KILT_LAYER_UPSAMPLING2D);
  c.kh = c.kw = 8;
  x = add1 (m, KILT_LAYER_UPSAMPLING2D, "up", &c, x);
  c = conv_cfg (8, KILT_ACT_LINEAR);
  x = add1 (m, KILT_LAYER_CONV2D, "conv", &c, x);
  for (guint i = 0; i < 4; i++)
    {
      x = add1 (m, KILT_LAYER_BATCH_NORM, NULL, NULL, x);
      c = act_cfg (KILT_ACT_TANH);
      x = add1 (m, KILT_LAYER_ACTIVATION, NULL, &c, x);
      c = dropout_cfg (0.1f);
      x = add1 (m, KILT_LAYER_DROPOUT, NULL, &c, x);
    }
  c = kilt_layer_config_default (KILT_LAYER_MAX_POOL2D);
  c.kh = c.kw = c.sh = c.sw = 8;
  x = add1 (m, KILT_LAYER_MAX_POOL2D, "pool", &c, x);
  x = add1 (m, KILT_LAYER_GLOBAL_AVG_POOL2D, "gap", NULL, x);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = 3;
  c.activation = KILT_ACT_SOFTMAX;
  add1 (m, KILT_LAYER_DENSE, "out", &c, x);
  m->loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  return m;
}

/* PoCL with POCL_MEMORY_LIMIT=1 (a 1 GiB device): at batch 160 keeping every activation needs
 * about 2 GiB, and keeping them all while sharing the gradients' buffers about 1.2 GiB.
 * --memory keep is refused with the plan, which says that recomputing fits; auto recomputes,
 * trains, and stays within the budget. */
static void
test_small_device (void)
{
  KiltContext *ctx;
  KiltTrainConfig cfg = kilt_train_config_default ();
  Run keep = { 0 }, autor = { 0 };
  g_autoptr (KiltModel) probe = NULL;
  g_autoptr (KiltPlan) plan = NULL;

  if (g_getenv ("POCL_MEMORY_LIMIT") == NULL)
    {
      g_test_skip ("runs as test-recompute-small-device, with POCL_MEMORY_LIMIT=1");
      return;
    }
  if ((ctx = kilt_test_context ()) == NULL)
    return;
  cfg.epochs = 1;
  cfg.batch = 160;
  cfg.seed = 3;
  cfg.opt = kilt_optimizer_config_default (KILT_OPT_SGD);
  cfg.opt.lr = 0.01f;

  probe = wide_net ();
  plan = kilt_plan_compute_memory (probe, cfg.batch, &cfg.opt, 0, ctx->info, ctx->budget,
                                   KILT_MEMORY_KEEP);
  g_test_message ("keep: %s", plan->message);
  g_assert_false (plan->fits);

  cfg.memory = KILT_MEMORY_KEEP;
  train_run (wide_net (), band_data ((KiltShape){ 1, 16, 16 }, cfg.batch), &cfg, &keep);
  g_assert_cmpint (keep.status, ==, KILT_RUN_FAILED);
  g_assert_false (keep.started);
  g_assert_error (keep.error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_test_message ("--memory keep: %s", keep.error->message);
  g_assert_nonnull (strstr (keep.error->message, "at batch 160"));
  g_assert_nonnull (strstr (keep.error->message, "recomputing activations, batch 160 fits in"));

  cfg.memory = KILT_MEMORY_AUTO;
  train_run (wide_net (), band_data ((KiltShape){ 1, 16, 16 }, cfg.batch), &cfg, &autor);
  g_assert_no_error (autor.error);
  g_assert_cmpint (autor.status, ==, KILT_RUN_FINISHED);
  g_assert_true (autor.recompute);
  g_assert_cmpfloat (autor.recompute_percent, >, 0);
  g_test_message ("auto: %s; peak %" G_GINT64_FORMAT " bytes", autor.memory_line, autor.peak);
  g_assert_true (g_str_has_prefix (autor.memory_line, "keeps "));
  g_assert_cmpuint (autor.steps, ==, 1);
  g_assert_true (isfinite (autor.loss));
  g_assert_cmpint (autor.peak, <=, (gint64)ctx->budget);
  g_assert_cmpint (autor.peak, <, (gint64)plan->total);
  run_clear (&keep);
  run_clear (&autor);
}

/* The run store keeps the choice (reports and resume read it back); runs recorded before it
 * existed read as auto. */
static void
test_config_round_trip (void)
{
  KiltTrainConfig cfg = kilt_train_config_default (), back = { 0 }, old = { 0 };
  g_autofree char *json = NULL;
  g_autoptr (GError) error = NULL;
  KiltMemoryMode m;

  g_assert_cmpint (cfg.memory, ==, KILT_MEMORY_AUTO);
  cfg.memory = KILT_MEMORY_RECOMPUTE;
  json = kilt_run_config_to_json (&cfg);
  g_assert_nonnull (strstr (json, "\"memory\":\"recompute\""));
  g_assert_true (kilt_run_config_from_json (json, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpint (back.memory, ==, KILT_MEMORY_RECOMPUTE);
  g_assert_true (kilt_run_config_from_json ("{\"epochs\": 1, \"batch\": 8}", &old, &error));
  g_assert_cmpint (old.memory, ==, KILT_MEMORY_AUTO);
  g_assert_true (kilt_memory_mode_from_name ("Keep", &m) && m == KILT_MEMORY_KEEP);
  g_assert_false (kilt_memory_mode_from_name ("sometimes", &m));
  kilt_train_config_clear (&back);
  kilt_train_config_clear (&old);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/recompute/cuts", test_cuts);
  g_test_add_func ("/recompute/config", test_config_round_trip);
  g_test_add_func ("/recompute/equal-to-keep", test_equal_to_keep);
  g_test_add_func ("/recompute/equal-frozen", test_equal_frozen);
  g_test_add_func ("/recompute/plan-matches-executor", test_plan_matches_executor);
  g_test_add_func ("/recompute/plan-max-batch", test_plan_max_batch);
  g_test_add_func ("/recompute/vgg16-fits", test_vgg16_fits);
  g_test_add_func ("/recompute/trainer-equal", test_trainer_equal);
  g_test_add_func ("/recompute/small-device", test_small_device);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
