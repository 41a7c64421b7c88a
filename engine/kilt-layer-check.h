/* Checks one layer on a device against its plain-C reference and finite differences. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-layer.h"

G_BEGIN_DECLS

typedef struct
{
  const char *label;
  KiltLayerType type;
  KiltLayerConfig cfg;
  guint n_inputs;
  KiltShape in[KILT_MAX_INPUTS];
  guint batch;
  gboolean training;
  guint32 seed;
  gboolean accumulate; /* backward with din_beta 1 (add to the input gradient), not 0 */
  guint algo;          /* a layer with several algorithms: this one (KiltNode.algo_forced) */
  float input_scale;   /* inputs are uniform in [-scale, scale] (0: 1), to reach kinks */
  /* A layer that reads ids (Embedding): > 0 makes the inputs whole numbers from 0 to ids - 1,
   * repeating, with some outside that range and some with a fraction; its input gets no
   * finite differences (ids are not differentiable). */
  guint ids;
  /* With cfg.step_mask, the last input is the mask's source: each sample gets one pattern in
   * turn (the steps after a random length masked, the steps before one masked, every step
   * masked, random steps masked), as ids (0 masked) or values (every feature mask_value
   * masked, some features of kept steps mask_value too); it gets no finite differences. */
  gboolean mask_keep_one; /* instead of every step masked, all but one (a mean over no step is
                           * NaN, which the comparisons cannot check) */
  /* The first input is a sequence with masked steps (every feature cfg.mask_value), in the
   * patterns above (Masking); finite differences leave out its elements equal to mask_value,
   * where a step's being masked is not differentiable. */
  gboolean masking_input;
  /* Parameters, inputs and the upstream gradient are TF32 values (10-bit mantissas): a TF32
   * product of two of them is exact, so a layer computing at tf32 meets FP32's tolerance as
   * long as what it multiplies is those values (linear or ReLU activations). */
  gboolean tf32_values;
  gboolean at_tf32; /* the context computes at tf32 for the check (as it was afterwards) */
} KiltLayerCheck;

typedef struct
{
  double forward;        /* max |device - reference| / max |reference|, outputs */
  double backward_input; /* the same for every input gradient */
  double backward_param; /* the same for parameter gradients */
  double finite_diff;    /* max relative error of the reference gradient against FD */
  guint fd_points;       /* how many elements FD checked */
  double state;          /* running statistics after a training forward, where kept */
} KiltLayerCheckResult;

/* Builds the layer as a stand-alone node with @check->n_inputs inputs filled with random
 * values, runs forward and (when training) backward on @ctx and on the reference, and
 * differentiates the reference numerically. FALSE only when the device fails. */
gboolean kilt_layer_check_run (KiltContext *ctx, const KiltLayerCheck *check,
                               KiltLayerCheckResult *result, GError **error);

G_END_DECLS
