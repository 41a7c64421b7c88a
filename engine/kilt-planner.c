/* The memory planner: what training a model at a batch size needs, and whether it fits. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-planner"

#include "kilt-planner.h"
#include "kilt-error.h"
#include "kilt-exec.h"

#include "kilt-optimizer.h"

#include <string.h>

guint
kilt_plan_optimizer_slots (const KiltOptimizerConfig *opt)
{
  return opt ? kilt_optimizer_state_slots (opt) : 0;
}

typedef struct
{
  guint64 bytes[KILT_MEM_N_CATEGORIES];
  guint64 total;
  guint64 largest;
  char *largest_what;
} Need;

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

/* Mirrors kilt_executor_new () buffer by buffer for the largest one; the category totals come
 * from the executor's own plan. */
static void
need_at (KiltModel *model, guint batch, const KiltDeviceInfo *dev, guint slots,
         guint64 dataset_bytes, Need *need)
{
  guint64 param_bytes = 4 * (guint64)MAX (model->n_params, 1);
  gsize ws = 0;

  g_free (need->largest_what);
  memset (need, 0, sizeof *need);
  kilt_executor_plan (model, batch, TRUE, dev, need->bytes);
  need->bytes[KILT_MEM_OPTIMIZER] = slots * 4 * (guint64)model->n_grads;
  need->bytes[KILT_MEM_DATASET] = dataset_bytes;
  for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
    need->total += need->bytes[c];

  consider (need, param_bytes, g_strdup ("the model's parameters"));
  consider (need, 4 * (guint64)MAX (model->n_state, 1), g_strdup ("the running statistics"));
  if (slots && model->n_grads)
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

KiltPlan *
kilt_plan_compute (KiltModel *model, guint batch, const KiltOptimizerConfig *opt,
                   guint64 dataset_bytes, const KiltDeviceInfo *device, guint64 budget)
{
  KiltPlan *plan;
  Need need = { 0 }, probe = { 0 };
  guint slots = kilt_plan_optimizer_slots (opt);
  g_autofree char *needed = NULL;
  g_autofree char *have = NULL;

  g_return_val_if_fail (model != NULL && model->built, NULL);
  g_return_val_if_fail (device != NULL, NULL);
  g_return_val_if_fail (batch > 0, NULL);

  plan = g_new0 (KiltPlan, 1);
  plan->batch = batch;
  plan->capacity = budget ? budget : device->global_mem;
  plan->max_alloc = device->max_alloc ? device->max_alloc : G_MAXUINT64;
  plan->device_name = g_strdup (device->name);

  need_at (model, batch, device, slots, dataset_bytes, &need);
  memcpy (plan->bytes, need.bytes, sizeof plan->bytes);
  plan->total = need.total;
  plan->largest_alloc = need.largest;
  plan->largest_what = g_steal_pointer (&need.largest_what);
  plan->fits = need_fits (&need, plan->capacity, plan->max_alloc);
  needed = kilt_format_bytes (plan->total);
  have = kilt_format_bytes (plan->capacity);

  if (plan->fits)
    {
      plan->max_batch = batch;
      plan->message = g_strdup_printf ("needs %s of %s on %s at batch %u (%.0f%%)", needed, have,
                                       plan->device_name, batch,
                                       100.0 * plan->total / MAX (plan->capacity, 1));
      return plan;
    }

  /* The largest batch that fits: needs grow with the batch, so bisect between 1 and @batch. */
  need_at (model, 1, device, slots, dataset_bytes, &probe);
  if (need_fits (&probe, plan->capacity, plan->max_alloc))
    {
      guint lo = 1, hi = batch; /* lo fits, hi does not */
      while (hi - lo > 1)
        {
          guint mid = lo + (hi - lo) / 2;
          need_at (model, mid, device, slots, dataset_bytes, &probe);
          if (need_fits (&probe, plan->capacity, plan->max_alloc))
            lo = mid;
          else
            hi = mid;
        }
      plan->max_batch = lo;
      if (plan->total > plan->capacity)
        plan->message = g_strdup_printf ("needs %s of %s on %s at batch %u; batch %u fits", needed,
                                         have, plan->device_name, batch, lo);
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
  g_free (probe.largest_what);
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
