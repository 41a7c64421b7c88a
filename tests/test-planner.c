/* The memory planner: its figures against what the executor really allocates on the device,
 * the largest batch that fits, and the "does not fit" path on a really small device. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-loss.h"
#include "kilt-model-json.h"
#include "kilt-optimizer.h"
#include "kilt-planner.h"

#include <string.h>

static gboolean
have_all_layers (void)
{
  for (int t = 0; t < KILT_LAYER_N_TYPES; t++)
    if (kilt_layer_class_get (t) == NULL)
      {
        g_test_message ("layer class %s is not linked in yet: presets left out",
                        kilt_layer_type_name (t));
        return FALSE;
      }
  return TRUE;
}

/* input (c x h x w) -> Flatten -> Dense hidden relu -> Dense classes softmax. */
static KiltModel *
dense_model (KiltShape in, guint hidden, guint classes)
{
  KiltModel *m = kilt_model_new ("dense");
  KiltLayerConfig d = kilt_layer_config_default (KILT_LAYER_DENSE);
  g_autoptr (GError) error = NULL;

  kilt_model_add_input (m, NULL, in);
  kilt_model_append (m, KILT_LAYER_FLATTEN, NULL);
  d.units = hidden;
  d.activation = KILT_ACT_RELU;
  kilt_model_append (m, KILT_LAYER_DENSE, &d);
  d.units = classes;
  d.activation = KILT_ACT_SOFTMAX;
  kilt_model_append (m, KILT_LAYER_DENSE, &d);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  return m;
}

static KiltDeviceInfo
fake_device (guint64 global, guint64 max_alloc)
{
  KiltDeviceInfo d = { 0 };

  d.name = (char *)"Test Device";
  d.global_mem = global;
  d.max_alloc = max_alloc;
  return d;
}

static void
test_optimizer_slots (void)
{
  KiltOptimizerConfig o = { 0 };

  g_assert_cmpuint (kilt_plan_optimizer_slots (NULL), ==, 0);
  o.type = KILT_OPT_SGD;
  g_assert_cmpuint (kilt_plan_optimizer_slots (&o), ==, 0);
  o.momentum = 0.9f;
  g_assert_cmpuint (kilt_plan_optimizer_slots (&o), ==, 1);
  o.type = KILT_OPT_RMSPROP;
  g_assert_cmpuint (kilt_plan_optimizer_slots (&o), ==, 1);
  o.type = KILT_OPT_ADAM;
  g_assert_cmpuint (kilt_plan_optimizer_slots (&o), ==, 2);
  o.type = KILT_OPT_ADADELTA;
  g_assert_cmpuint (kilt_plan_optimizer_slots (&o), ==, 2);
  o.type = KILT_OPT_ADAGRAD;
  g_assert_cmpuint (kilt_plan_optimizer_slots (&o), ==, 1);
}

/* The buffers the trainer allocates for a step beside the executor, as prepare_replica ()
 * does: the batch targets and the training and evaluation metrics. NULL when one does not
 * allocate. */
static GPtrArray *
step_buffers_try (KiltContext *ctx, KiltModel *m, guint batch, GError **error)
{
  GPtrArray *b = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_buffer_free);
  gsize sizes[] = { 4 * (gsize)batch * MAX (kilt_model_n_outputs (m), 1),
                    4 * kilt_loss_metrics_floats (batch), 4 * kilt_loss_metrics_floats (batch) };

  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
    {
      KiltBuffer *buf
          = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, sizes[k], error, "test step %u", k);
      if (buf == NULL)
        {
          g_ptr_array_unref (b);
          return NULL;
        }
      g_ptr_array_add (b, buf);
    }
  return b;
}

static GPtrArray *
step_buffers_new (KiltContext *ctx, KiltModel *m, guint batch)
{
  g_autoptr (GError) error = NULL;
  GPtrArray *b = step_buffers_try (ctx, m, batch, &error);

  g_assert_no_error (error);
  return b;
}

/* Allocates an executor, the optimizer's state and a step's buffers on the test device and compares
 * what the context's counters saw with the plan, category by category, and the largest buffer with
 * the plan's. */
static void
compare_with_executor (KiltContext *ctx, KiltModel *m, guint batch, KiltOptimizerType opt_type)
{
  KiltOptimizerConfig opt_cfg = kilt_optimizer_config_default (opt_type);
  g_autoptr (KiltPlan) plan = kilt_plan_compute (m, batch, &opt_cfg, 0, ctx->info, ctx->budget);
  KiltOptimizer *opt;
  g_autoptr (GError) error = NULL;
  KiltMemStats before, after, freed;
  KiltExecutor *exec;
  GPtrArray *step;
  guint64 largest = 0, total = 0;

  g_test_message ("%s at batch %u with %s: %s", m->name, batch, kilt_optimizer_name (opt_type),
                  plan->message);
  g_assert_true (plan->fits);
  kilt_mem_stats_snapshot (&ctx->mem, &before);
  exec = kilt_executor_new (ctx, m, batch, TRUE, &error);
  g_assert_no_error (error);
  opt = kilt_optimizer_new (ctx, &opt_cfg, m->n_params, &error);
  g_assert_no_error (error);
  step = step_buffers_new (ctx, m, batch);
  kilt_mem_stats_snapshot (&ctx->mem, &after);
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    {
      g_assert_cmpint (after.live[c] - before.live[c], ==, (gint64)plan->bytes[c]);
      /* The peak counters saw at least this executor. */
      g_assert_cmpint (after.peak[c], >=, after.live[c]);
      total += after.live[c] - before.live[c];
    }
  g_assert_cmpuint (total, ==, plan->total);
  g_assert_cmpint (after.peak_total, >=, (gint64)plan->total);

  largest = MAX (exec->params->bytes, exec->state->bytes);
  largest = MAX (largest, exec->grads->bytes);
  largest = MAX (largest, exec->workspace->bytes);
  for (guint i = 0; i < exec->node_buffers->len; i++)
    largest = MAX (largest, ((KiltBuffer *)g_ptr_array_index (exec->node_buffers, i))->bytes);
  g_assert_cmpuint (largest, ==, plan->largest_alloc);

  g_ptr_array_unref (step);
  kilt_optimizer_free (opt);
  kilt_executor_free (exec);
  kilt_mem_stats_snapshot (&ctx->mem, &freed);
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    g_assert_cmpint (freed.live[c], ==, before.live[c]);
}

static void
test_matches_executor (void)
{
  KiltContext *ctx = kilt_test_context ();
  static const struct
  {
    const char *preset;
    guint batch;
    KiltShape in;
  } presets[] = {
    { "cifar10_cnn", 5, { 3, 32, 32 } }, { "mnist_cnn", 3, { 1, 28, 28 } },
    { "mlp", 7, { 1, 28, 28 } },         { "lenet5", 4, { 1, 28, 28 } },
    { "small_vgg", 2, { 3, 32, 32 } },   { "resnet20", 3, { 3, 33, 31 } },
  };

  if (ctx == NULL)
    return;
  {
    g_autoptr (KiltModel) m = dense_model ((KiltShape){ 3, 5, 7 }, 33, 4);
    compare_with_executor (ctx, m, 1, KILT_OPT_SGD);
    compare_with_executor (ctx, m, 13, KILT_OPT_ADAM);
  }
  if (!have_all_layers ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) m
          = kilt_model_load_preset (presets[i].preset, &presets[i].in, 0, &error);
      g_assert_no_error (error);
      compare_with_executor (ctx, m, presets[i].batch, (KiltOptimizerType)(i % KILT_OPT_N_TYPES));
    }
}

static gboolean
fits_at (KiltModel *m, guint batch, const KiltOptimizerConfig *opt, guint64 data,
         const KiltDeviceInfo *dev)
{
  g_autoptr (KiltPlan) p = kilt_plan_compute (m, batch, opt, data, dev, 0);

  return p->fits;
}

static void
test_categories (void)
{
  g_autoptr (KiltModel) m = dense_model ((KiltShape){ 1, 20, 20 }, 64, 10);
  KiltDeviceInfo dev = fake_device ((guint64)1 << 30, (guint64)1 << 28);
  KiltOptimizerConfig adam = { .type = KILT_OPT_ADAM };
  g_autoptr (KiltPlan) p = kilt_plan_compute (m, 32, &adam, 12345, &dev, 0);
  guint64 exec_bytes[KILT_MEM_N_CATEGORIES], sum = 0;

  kilt_executor_plan (m, 32, TRUE, &dev, exec_bytes);
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    sum += p->bytes[c];
  g_assert_cmpuint (p->total, ==, sum);
  g_assert_cmpuint (p->bytes[KILT_MEM_OPTIMIZER], ==, 2 * 4 * m->n_params);
  g_assert_cmpuint (p->bytes[KILT_MEM_DATASET], ==, 12345);
  g_assert_cmpuint (p->bytes[KILT_MEM_ACTIVATIONS], ==, exec_bytes[KILT_MEM_ACTIVATIONS]);
  g_assert_cmpuint (p->bytes[KILT_MEM_WEIGHTS], ==, exec_bytes[KILT_MEM_WEIGHTS]);
  g_assert_true (p->fits);
  g_assert_cmpuint (p->max_batch, ==, 32);
  g_assert_true (kilt_plan_check (p, NULL));
  /* 400 -> 64 -> 10: the weights (25,674 floats) outweigh any activation at batch 32. */
  g_assert_cmpstr (p->largest_what, ==, "the model's parameters");
  g_assert_cmpuint (p->largest_alloc, ==, 4 * m->n_params);
  g_assert_nonnull (strstr (p->message, "on Test Device at batch 32"));
}

/* Not enough memory in all: the largest batch that fits, found by bisection, is the edge. */
static void
test_largest_batch (void)
{
  g_autoptr (KiltModel) m = dense_model ((KiltShape){ 3, 32, 32 }, 512, 10);
  KiltDeviceInfo dev = fake_device ((guint64)64 << 20, (guint64)1 << 30);
  KiltOptimizerConfig rms = { .type = KILT_OPT_RMSPROP };
  g_autoptr (KiltPlan) p = kilt_plan_compute (m, 100000, &rms, 1 << 20, &dev, 0);
  g_autoptr (GError) error = NULL;
  g_autofree char *tail = NULL;

  g_test_message ("%s", p->message);
  g_assert_false (p->fits);
  g_assert_cmpuint (p->max_batch, >=, 1);
  g_assert_true (fits_at (m, p->max_batch, &rms, 1 << 20, &dev));
  g_assert_false (fits_at (m, p->max_batch + 1, &rms, 1 << 20, &dev));
  g_assert_true (g_str_has_prefix (p->message, "needs "));
  g_assert_nonnull (strstr (p->message, " of 64.0 MiB on Test Device at batch 100000"));
  tail = g_strdup_printf ("; batch %u fits", p->max_batch);
  g_assert_true (g_str_has_suffix (p->message, tail));
  g_assert_false (kilt_plan_check (p, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_assert_cmpstr (error->message, ==, p->message);

  /* A budget below global memory is what the plan is held to. */
  {
    g_autoptr (KiltPlan) q = kilt_plan_compute (m, 4, &rms, 0, &dev, 1 << 20);
    g_assert_false (q->fits);
    g_assert_cmpuint (q->capacity, ==, 1 << 20);
    g_assert_nonnull (strstr (q->message, "of 1.0 MiB on Test Device"));
  }
}

/* Enough memory in all, but one buffer above the device's max single allocation. */
static void
test_max_alloc (void)
{
  g_autoptr (KiltModel) m = dense_model ((KiltShape){ 300, 1, 1 }, 10, 2);
  KiltDeviceInfo dev = fake_device ((guint64)1 << 30, 1 << 20);
  g_autoptr (KiltPlan) p = kilt_plan_compute (m, 1000, NULL, 0, &dev, 0);

  g_test_message ("%s", p->message);
  g_assert_false (p->fits);
  g_assert_cmpuint (p->total, <, dev.global_mem);
  /* 1000 x 300 floats of input: 1.2 MB in one buffer; 873 x 300 x 4 <= 1 MiB < 874 x 1200. */
  g_assert_cmpuint (p->largest_alloc, ==, 1000 * 300 * 4);
  g_assert_cmpstr (p->largest_what, ==, "layer input activations");
  g_assert_cmpuint (p->max_batch, ==, (1 << 20) / 1200);
  g_assert_nonnull (strstr (p->message, "layer input activations need one allocation of"));
  g_assert_nonnull (strstr (p->message, "more than the 1.0 MiB Test Device allows at once"));
}

static void
test_not_even_batch_1 (void)
{
  /* 2048 -> 1024 -> 10: 2,098,176 + 10,250 parameters, 8 MiB of weights, as much of gradients. */
  g_autoptr (KiltModel) m = dense_model ((KiltShape){ 2048, 1, 1 }, 1024, 10);
  KiltDeviceInfo small = fake_device (4 << 20, 1 << 30);
  KiltDeviceInfo narrow = fake_device ((guint64)1 << 30, 1 << 20);
  g_autoptr (KiltPlan) p = kilt_plan_compute (m, 64, NULL, 0, &small, 0);
  g_autoptr (KiltPlan) q = kilt_plan_compute (m, 64, NULL, 0, &narrow, 0);

  g_test_message ("%s", p->message);
  g_assert_false (p->fits);
  g_assert_cmpuint (p->max_batch, ==, 0);
  g_assert_true (g_str_has_prefix (p->message, "does not fit even at batch 1: needs "));
  /* 2 x 4 x 2,108,426 bytes of weights and gradients, 4 bytes of (no) running statistics. */
  g_assert_nonnull (strstr (p->message, "of 4.0 MiB on Test Device; the model's 2108426 "
                                        "parameters take 16.1 MiB of that"));

  g_test_message ("%s", q->message);
  g_assert_false (q->fits);
  g_assert_cmpuint (q->max_batch, ==, 0);
  g_assert_nonnull (strstr (q->message, "does not fit even at batch 1 on Test Device: the "
                                        "model's parameters need one allocation of 8.0 MiB"));
}

/* PoCL with POCL_MEMORY_LIMIT=1: a real 1 GiB device with 256 MiB buffers at most. The
 * planner refuses what is too big, names the largest batch that fits, and the device agrees:
 * that batch allocates, one more does not. */
static void
check_small_device_edge (KiltContext *ctx, KiltModel *m, guint batch)
{
  g_autoptr (KiltPlan) p = kilt_plan_compute (m, batch, NULL, 0, ctx->info, ctx->budget);
  g_autoptr (GError) error = NULL;
  g_autofree char *want = NULL;
  KiltExecutor *exec;
  GPtrArray *step;
  KiltMemStats st;

  g_test_message ("%s: %s", m->name, p->message);
  g_assert_false (p->fits);
  g_assert_cmpuint (p->max_batch, >=, 1);
  g_assert_false (kilt_plan_check (p, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_clear_error (&error);
  want = g_strdup_printf ("; batch %u fits", p->max_batch);
  g_assert_true (g_str_has_suffix (p->message, want));
  g_free (want);
  want = g_strdup_printf ("at batch %u", batch);
  g_assert_nonnull (strstr (p->message, want));
  g_assert_nonnull (strstr (p->message, ctx->info->name));

  exec = kilt_executor_new (ctx, m, p->max_batch, TRUE, &error);
  g_assert_no_error (error);
  step = step_buffers_new (ctx, m, p->max_batch);
  kilt_mem_stats_snapshot (&ctx->mem, &st);
  g_test_message ("batch %u allocated %" G_GINT64_FORMAT " bytes", p->max_batch, st.live_total);
  g_ptr_array_unref (step);
  kilt_executor_free (exec);

  /* One more: the executor or the step's buffers after it run out. */
  exec = kilt_executor_new (ctx, m, p->max_batch + 1, TRUE, &error);
  step = exec ? step_buffers_try (ctx, m, p->max_batch + 1, &error) : NULL;
  g_assert_null (step);
  kilt_executor_free (exec);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_test_message ("batch %u: %s", p->max_batch + 1, error->message);
  kilt_mem_stats_snapshot (&ctx->mem, &st);
  g_assert_cmpint (st.live_total, ==, 0);
}

static void
test_small_device (void)
{
  KiltContext *ctx = kilt_test_context ();

  if (ctx == NULL)
    return;
  if (ctx->info->global_mem != (guint64)1 << 30 || ctx->info->max_alloc != (guint64)256 << 20)
    {
      g_test_skip_printf ("%s is not PoCL with POCL_MEMORY_LIMIT=1 (global %" G_GUINT64_FORMAT
                          ", max alloc %" G_GUINT64_FORMAT ")",
                          ctx->info->name, ctx->info->global_mem, ctx->info->max_alloc);
      return;
    }
  {
    /* 12,288 -> 4096 -> 10: 192 MiB of weights in one buffer, as much of gradients; the
     * budget holds the batch near 4,700 (no gradient flows into the input, below the first
     * layer with weights), before the 256 MiB buffer limit (5,461) would. */
    g_autoptr (KiltModel) m = dense_model ((KiltShape){ 3, 64, 64 }, 4096, 10);
    check_small_device_edge (ctx, m, 8192);
  }
  if (have_all_layers ())
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) vgg = kilt_model_load_preset ("small_vgg", NULL, 0, &error);
      g_assert_no_error (error);
      check_small_device_edge (ctx, vgg, 4096);
    }
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_setenv ("KILT_DATA_DIR", KILT_SOURCE_DIR "/resources", TRUE);
  /* One source, two programs: the small-device one runs under POCL_MEMORY_LIMIT=1. */
#ifdef KILT_TEST_SMALL_DEVICE
  const gboolean small_device = TRUE;
#else
  const gboolean small_device = FALSE;
#endif
  if (small_device)
    g_test_add_func ("/planner/small-device", test_small_device);
  else
    {
      g_test_add_func ("/planner/optimizer-slots", test_optimizer_slots);
      g_test_add_func ("/planner/categories", test_categories);
      g_test_add_func ("/planner/largest-batch", test_largest_batch);
      g_test_add_func ("/planner/max-alloc", test_max_alloc);
      g_test_add_func ("/planner/not-even-batch-1", test_not_even_batch_1);
      g_test_add_func ("/planner/matches-executor", test_matches_executor);
    }
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
