/* The memory planner: what training a model at a batch size needs, and whether it fits. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-device.h"
#include "kilt-memory.h"
#include "kilt-model.h"
#include "kilt-optimizer-config.h"
#include "kilt-recompute.h"

G_BEGIN_DECLS

typedef struct
{
  guint batch;
  guint64 bytes[KILT_MEM_N_CATEGORIES]; /* per category, as the engine allocates them */
  guint64 total;
  guint64 largest_alloc; /* the biggest single buffer */
  char *largest_what;    /* what it holds: "layer conv2d activations" */
  guint64 capacity;      /* the budget the plan is checked against */
  guint64 max_alloc;     /* the device's max single allocation */
  char *device_name;
  gboolean fits;
  guint max_batch; /* largest batch that fits (0: none; = batch when it fits) */
  char *message;   /* one line: what it needs against what there is, and
                    * when it does not fit, the largest batch that does */
  /* Activation recompute (kilt_plan_compute_memory ()). */
  KiltMemoryMode mode;      /* what was asked */
  gboolean recompute;       /* the plan recomputes activations in the backward pass */
  guint8 *keep;             /* per node, for kilt_executor_new_recompute (); NULL: keeps all */
  guint n_blocks;           /* the pieces a checkpoint may separate */
  guint n_blocks_kept;      /* those of which nothing is recomputed */
  double recompute_percent; /* compute a step adds */
  guint64 keep_total;       /* what keeping every activation needs */
  gboolean recompute_fits;  /* KILT_MEMORY_KEEP that does not fit: recomputing would */
  /* KILT_MEMORY_KEEP that does not fit: what recomputing would fit ("recomputing activations,
   * batch 32 fits in 1.8 GiB (keeps ...)"), or NULL; not part of ->message. */
  char *hint;
  /* "keeps 6 of 19 blocks, recomputes the rest: +28% compute, fits in 1.8 of 2.0 GiB", or
   * "keeps every layer's activations: fits in 1.2 of 2.0 GiB" (or "does not fit in") */
  char *memory_line;
} KiltPlan;

/* Floats of optimizer state per trainable parameter: SGD 1 with momentum (0 without),
 * RMSprop 1, Adam 2, Adadelta 2, Adagrad 1. The planner's own count, kept beside the optimizer
 * code it predicts (which allocates one buffer of n_params floats per slot). */
guint kilt_plan_optimizer_slots (const KiltOptimizerConfig *opt);
/* The optimizer's device bytes for @model: its slots over the trainable parameters, and with
 * lookahead a copy of every parameter and running statistic. */
guint64 kilt_plan_optimizer_bytes (KiltModel *model, const KiltOptimizerConfig *opt);

/* The bytes a training run allocates for a step beside the executor and the optimizer: the
 * batch's targets and the training and evaluation metrics (workspace). The plan counts them:
 * left out, a run planned to its last few hundred bytes failed on them. */
guint64 kilt_plan_step_bytes (KiltModel *model, guint batch);

/* Plans training of built @model at @batch with @opt (NULL: no optimizer state) and a data set
 * holding @dataset_bytes on the device (one buffer; 0 for none). The capacity is @budget, or
 * the device's global memory when @budget is 0; single buffers must stay within the device's
 * max allocation. Never fails: read ->fits and ->message. */
KiltPlan *kilt_plan_compute (KiltModel *model, guint batch, const KiltOptimizerConfig *opt,
                             guint64 dataset_bytes, const KiltDeviceInfo *device, guint64 budget);
/* The same with a choice of how activations are held: KILT_MEMORY_KEEP is kilt_plan_compute ()
 * (and says when recomputing would fit); KILT_MEMORY_AUTO keeps everything when that fits and
 * otherwise recomputes, redoing the least compute that fits; KILT_MEMORY_RECOMPUTE keeps the
 * checkpoints that need the least memory. The largest batch accounts for recompute unless
 * @mode is KILT_MEMORY_KEEP. */
KiltPlan *kilt_plan_compute_memory (KiltModel *model, guint batch, const KiltOptimizerConfig *opt,
                                    guint64 dataset_bytes, const KiltDeviceInfo *device,
                                    guint64 budget, KiltMemoryMode mode);
void kilt_plan_free (KiltPlan *plan);

/* TRUE when the plan fits; otherwise a KILT_ENGINE_ERROR_OUT_OF_MEMORY error with ->message. */
gboolean kilt_plan_check (const KiltPlan *plan, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltPlan, kilt_plan_free)

G_END_DECLS
