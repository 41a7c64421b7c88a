/* The memory planner: what training a model at a batch size needs, and whether it fits. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-planner"

#include "kilt-planner.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-loss.h"

#include "kilt-optimizer.h"

#include <string.h>

guint
kilt_plan_optimizer_slots (const KiltOptimizerConfig *opt)
{
  return opt ? kilt_optimizer_state_slots (opt) : 0;
}

guint64
kilt_plan_optimizer_bytes (KiltModel *model, const KiltOptimizerConfig *opt)
{
  guint64 bytes = kilt_plan_optimizer_slots (opt) * 4 * (guint64)model->n_grads;

  /* Lookahead keeps a copy of every parameter and running statistic. */
  if (opt && opt->lookahead)
    bytes += 4 * ((guint64)model->n_params + model->n_state);
  return bytes;
}

/* As the trainer's prepare_replica () allocates them. */
guint64
kilt_plan_step_bytes (KiltModel *model, guint batch)
{
  return 4 * (guint64)batch * MAX (kilt_model_n_outputs (model), 1)
         + 2 * 4 * (guint64)kilt_loss_metrics_floats (batch);
}

typedef struct
{
  guint64 bytes[KILT_MEM_N_CATEGORIES];
  guint64 total;
  guint64 largest;
  char *largest_what;
  KiltRecompute *layout; /* NULL: keeps every activation */
} Need;

/* How activations are held while planning one batch size. */
typedef enum
{
  HOLD_KEEP,
  HOLD_LEAST_COMPUTE, /* recompute as little as fits */
  HOLD_LEAST_MEMORY,
} Hold;

static void
consider (Need *need, guint64 bytes, char *what)
{
  if (bytes > need->largest || need->largest_what == NULL)
    {
      need->largest = bytes;
      g_free (need->largest_what);
      need->largest_what = what;
    }
  else
    g_free (what);
}

static void
need_clear (Need *need)
{
  g_free (need->largest_what);
  kilt_recompute_free (need->layout);
  memset (need, 0, sizeof *need);
}

/* Mirrors kilt_executor_new () buffer by buffer for the largest one; the category totals come
 * from the executor's own plan. With recompute the shared slots are each as large as one of
 * the buffers they stand for, so the largest buffer is the same. */
static void
need_at (KiltModel *model, guint batch, const KiltDeviceInfo *dev, const KiltOptimizerConfig *opt,
         guint64 dataset_bytes, Hold hold, guint64 capacity, Need *need)
{
  guint64 param_bytes = 4 * (guint64)MAX (model->n_params, 1);
  gsize ws = 0;

  need_clear (need);
  kilt_executor_plan (model, batch, TRUE, dev, need->bytes);
  need->bytes[KILT_MEM_OPTIMIZER] = kilt_plan_optimizer_bytes (model, opt);
  need->bytes[KILT_MEM_DATASET] = dataset_bytes;
  if (hold != HOLD_KEEP)
    {
      /* What does not depend on the checkpoints leaves the rest of the capacity to them. */
      g_autoptr (KiltRecompute) all = kilt_recompute_new (model, batch, TRUE, NULL);
      guint64 fixed = 0, room;
      for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
        fixed += need->bytes[c];
      fixed -= all->act_bytes + all->grad_bytes;
      fixed += kilt_plan_step_bytes (model, batch);
      room = capacity > fixed ? capacity - fixed : 0;
      need->layout = kilt_recompute_choose (model, batch, room, hold == HOLD_LEAST_MEMORY);
      kilt_executor_plan_recompute (model, batch, dev, need->layout->keep, need->bytes);
      need->bytes[KILT_MEM_OPTIMIZER] = kilt_plan_optimizer_bytes (model, opt);
      need->bytes[KILT_MEM_DATASET] = dataset_bytes;
    }
  need->bytes[KILT_MEM_WORKSPACE] += kilt_plan_step_bytes (model, batch);
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    need->total += need->bytes[c];

  consider (need, param_bytes, g_strdup ("the model's parameters"));
  consider (need, 4 * (guint64)MAX (model->n_state, 1), g_strdup ("the running statistics"));
  if (kilt_plan_optimizer_slots (opt) && model->n_grads)
    consider (need, 4 * (guint64)model->n_grads, g_strdup ("the optimizer state"));
  if (dataset_bytes)
    consider (need, dataset_bytes, g_strdup ("the data set"));
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *n = kilt_model_node (model, i);
      guint64 act = 4 * (guint64)batch * kilt_shape_size (&n->out_shape);
      if (kilt_executor_fuses (model, i))
        continue;
      consider (need, act, g_strdup_printf ("layer %s activations", n->name));
      if (n->klass->saved_floats)
        consider (need, 4 * (guint64)n->klass->saved_floats (n, batch),
                  g_strdup_printf ("layer %s saved values", n->name));
      if (n->klass->workspace_floats)
        ws = MAX (ws, n->klass->workspace_floats (n, batch, dev));
    }
  consider (need, 4 * (guint64)MAX (ws, 1), g_strdup ("the shared layer workspace"));
}

static gboolean
need_fits (const Need *need, guint64 capacity, guint64 max_alloc)
{
  return need->total <= capacity && need->largest <= max_alloc;
}

/* The largest batch below @batch that fits (0: not even 1; @probe then holds batch 1's
 * needs): needs grow with the batch, so bisect. */
static guint
largest_batch (KiltModel *model, guint batch, const KiltDeviceInfo *dev,
               const KiltOptimizerConfig *opt, guint64 dataset_bytes, Hold hold, guint64 capacity,
               guint64 max_alloc, Need *probe)
{
  guint lo = 1, hi = batch; /* lo fits, hi does not */

  need_at (model, 1, dev, opt, dataset_bytes, hold, capacity, probe);
  if (!need_fits (probe, capacity, max_alloc))
    return 0;
  while (hi - lo > 1)
    {
      guint mid = lo + (hi - lo) / 2;
      need_at (model, mid, dev, opt, dataset_bytes, hold, capacity, probe);
      if (need_fits (probe, capacity, max_alloc))
        lo = mid;
      else
        hi = mid;
    }
  return lo;
}

/* "keeps 6 of 19 blocks, recomputes the rest: +28% compute" */
static char *
recompute_words (const KiltRecompute *r)
{
  if (r->recompute_flops == 0)
    return g_strdup_printf (
        "keeps all %u blocks, sharing buffers by when each is alive: +0%% compute", r->n_blocks);
  return g_strdup_printf ("keeps %u of %u blocks, recomputes the rest: +%.0f%% compute",
                          r->n_blocks_kept, r->n_blocks, kilt_recompute_percent (r));
}

static void
set_memory_line (KiltPlan *plan, const Need *need)
{
  g_autofree char *used = kilt_format_bytes (need->total);
  g_autofree char *have = kilt_format_bytes (plan->capacity);
  const char *verdict = plan->fits ? "fits in" : "does not fit in";

  if (need->layout)
    {
      g_autofree char *words = recompute_words (need->layout);
      plan->memory_line = g_strdup_printf ("%s, %s %s of %s", words, verdict, used, have);
    }
  else
    plan->memory_line
        = g_strdup_printf ("keeps every layer's activations: %s %s of %s", verdict, used, have);
}

KiltPlan *
kilt_plan_compute (KiltModel *model, guint batch, const KiltOptimizerConfig *opt,
                   guint64 dataset_bytes, const KiltDeviceInfo *device, guint64 budget)
{
  return kilt_plan_compute_memory (model, batch, opt, dataset_bytes, device, budget,
                                   KILT_MEMORY_KEEP);
}

KiltPlan *
kilt_plan_compute_memory (KiltModel *model, guint batch, const KiltOptimizerConfig *opt,
                          guint64 dataset_bytes, const KiltDeviceInfo *device, guint64 budget,
                          KiltMemoryMode mode)
{
  KiltPlan *plan;
  Need need = { 0 }, probe = { 0 };
  guint slots = kilt_plan_optimizer_slots (opt);
  g_autofree char *needed = NULL;
  g_autofree char *have = NULL;
  Hold hold;

  g_return_val_if_fail (model != NULL && model->built, NULL);
  g_return_val_if_fail (device != NULL, NULL);
  g_return_val_if_fail (batch > 0, NULL);

  plan = g_new0 (KiltPlan, 1);
  plan->batch = batch;
  plan->mode = mode;
  plan->capacity = budget ? budget : device->global_mem;
  plan->max_alloc = device->max_alloc ? device->max_alloc : G_MAXUINT64;
  plan->device_name = g_strdup (device->name);

  need_at (model, batch, device, opt, dataset_bytes, HOLD_KEEP, plan->capacity, &need);
  plan->keep_total = need.total;
  hold = mode == KILT_MEMORY_RECOMPUTE ? HOLD_LEAST_MEMORY : HOLD_KEEP;
  if (mode == KILT_MEMORY_AUTO && !need_fits (&need, plan->capacity, plan->max_alloc))
    hold = HOLD_LEAST_COMPUTE;
  if (hold != HOLD_KEEP)
    need_at (model, batch, device, opt, dataset_bytes, hold, plan->capacity, &need);

  memcpy (plan->bytes, need.bytes, sizeof plan->bytes);
  plan->total = need.total;
  plan->largest_alloc = need.largest;
  plan->largest_what = g_strdup (need.largest_what);
  plan->fits = need_fits (&need, plan->capacity, plan->max_alloc);
  if (need.layout)
    {
      plan->recompute = TRUE;
      plan->keep = g_memdup2 (need.layout->keep, need.layout->n_nodes);
      plan->n_blocks = need.layout->n_blocks;
      plan->n_blocks_kept = need.layout->n_blocks_kept;
      plan->recompute_percent = kilt_recompute_percent (need.layout);
    }
  set_memory_line (plan, &need);
  needed = kilt_format_bytes (plan->total);
  have = kilt_format_bytes (plan->capacity);

  if (plan->fits)
    {
      plan->max_batch = batch;
      if (plan->recompute)
        {
          g_autofree char *kept = kilt_format_bytes (plan->keep_total);
          plan->message = g_strdup_printf (
              "needs %s of %s on %s at batch %u (%.0f%%): %s (keeping every activation needs %s)",
              needed, have, plan->device_name, batch, 100.0 * plan->total / MAX (plan->capacity, 1),
              plan->memory_line, kept);
        }
      else
        plan->message = g_strdup_printf ("needs %s of %s on %s at batch %u (%.0f%%)", needed, have,
                                         plan->device_name, batch,
                                         100.0 * plan->total / MAX (plan->capacity, 1));
      need_clear (&need);
      return plan;
    }

  /* The largest batch that fits, recomputing as much as it takes unless keeping was asked
   * for. */
  if (mode != KILT_MEMORY_KEEP)
    hold = HOLD_LEAST_MEMORY;
  plan->max_batch = largest_batch (model, batch, device, opt, dataset_bytes, hold, plan->capacity,
                                   plan->max_alloc, &probe);
  if (plan->max_batch)
    {
      guint lo = plan->max_batch;
      g_autofree char *tail = NULL;
      tail = hold != HOLD_KEEP ? g_strdup (" recomputing activations") : NULL;
      if (plan->total > plan->capacity)
        plan->message
            = g_strdup_printf ("needs %s of %s on %s at batch %u; batch %u fits%s", needed, have,
                               plan->device_name, batch, lo, tail ? tail : "");
      else
        {
          g_autofree char *big = kilt_format_bytes (plan->largest_alloc);
          g_autofree char *limit = kilt_format_bytes (plan->max_alloc);
          plan->message = g_strdup_printf (
              "at batch %u, %s need one allocation of %s, more than the %s %s allows at once; "
              "batch %u fits",
              batch, plan->largest_what, big, limit, plan->device_name, lo);
        }
    }
  else
    {
      /* Say what stands in the way at batch 1: one buffer too big, or the biggest category. */
      if (probe.largest > plan->max_alloc)
        {
          g_autofree char *big = kilt_format_bytes (probe.largest);
          g_autofree char *limit = kilt_format_bytes (plan->max_alloc);
          plan->message = g_strdup_printf (
              "does not fit even at batch 1 on %s: %s need one allocation of %s, more than the "
              "%s it allows at once",
              plan->device_name, probe.largest_what, big, limit);
        }
      else
        {
          /* At batch 1 the parameters usually dominate: their weights, gradients and
           * optimizer state do not shrink with the batch, so say so. */
          guint64 per_param = 4 * (guint64)model->n_params
                              + 4 * (guint64)model->n_grads * (1 + slots)
                              + 4 * (guint64)MAX (model->n_state, 1);
          g_autofree char *need1 = kilt_format_bytes (probe.total);
          g_autofree char *part = NULL;
          int top = 0;

          if (per_param * 2 >= probe.total)
            {
              g_autofree char *count = g_strdup_printf ("%zu", model->n_params);
              part = kilt_format_bytes (per_param);
              plan->message = g_strdup_printf (
                  "does not fit even at batch 1: needs %s of %s on %s; the model's %s "
                  "parameters take %s of that (weights, gradients and optimizer state)",
                  need1, have, plan->device_name, count, part);
            }
          else
            {
              for (int c = 1; c < KILT_MEM_N_CATEGORIES; c++)
                if (probe.bytes[c] > probe.bytes[top])
                  top = c;
              part = kilt_format_bytes (probe.bytes[top]);
              plan->message = g_strdup_printf (
                  "does not fit even at batch 1: needs %s of %s on %s, of which %s take %s", need1,
                  have, plan->device_name, kilt_mem_category_name (top), part);
            }
        }
    }

  /* Keeping was asked for and does not fit: say whether recomputing would. */
  if (mode == KILT_MEMORY_KEEP)
    {
      need_at (model, batch, device, opt, dataset_bytes, HOLD_LEAST_COMPUTE, plan->capacity,
               &probe);
      plan->recompute_fits = need_fits (&probe, plan->capacity, plan->max_alloc);
      if (plan->recompute_fits)
        {
          g_autofree char *words = recompute_words (probe.layout);
          g_autofree char *used = kilt_format_bytes (probe.total);
          plan->hint = g_strdup_printf ("recomputing activations, batch %u fits in %s (%s)", batch,
                                        used, words);
        }
      else
        {
          guint rc = largest_batch (model, batch, device, opt, dataset_bytes, HOLD_LEAST_MEMORY,
                                    plan->capacity, plan->max_alloc, &probe);
          if (rc > plan->max_batch)
            plan->hint = g_strdup_printf ("recomputing activations, batch %u fits", rc);
        }
    }
  need_clear (&probe);
  need_clear (&need);
  return plan;
}

void
kilt_plan_free (KiltPlan *plan)
{
  if (plan == NULL)
    return;
  g_free (plan->largest_what);
  g_free (plan->device_name);
  g_free (plan->message);
  g_free (plan->keep);
  g_free (plan->memory_line);
  g_free (plan->hint);
  g_free (plan);
}

gboolean
kilt_plan_check (const KiltPlan *plan, GError **error)
{
  if (plan->fits)
    return TRUE;
  g_set_error_literal (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY, plan->message);
  return FALSE;
}
