/* The input node: holds the batch the trainer gathers; nothing to compute. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-layer.h"

static gboolean
input_forward (KiltNode *node, KiltExec *ex, GError **error)
{
  return TRUE;
}

const KiltLayerClass kilt_input_class = {
  .type = KILT_LAYER_INPUT,
  .name = "InputLayer",
  .min_inputs = 0,
  .max_inputs = 0,
  .forward = input_forward,
};
