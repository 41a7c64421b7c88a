/* Keras import of masks: which layers make, carry, use or drop a sequence's mask, as Keras 3
 * and tf.keras propagate it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras"

#include "kilt-keras-private.h"

#include <string.h>

/* Layers that pass their input's mask on unchanged (supports_masking, no use of it) in both
 * Keras 3 and tf.keras 2.15; merges combine their inputs' masks (below). */
static const char *const passing[] = {
  "Dropout",     "SpatialDropout1D",   "Activation", "ReLU",    "LeakyReLU", "ELU",
  "Add",         "Subtract",           "Multiply",   "Average", "Maximum",   "Minimum",
  "Concatenate", "LayerNormalization",
};

/* Layers whose call reads the mask in a way Kilt's do not compute: refused when one arrives. */
static const struct
{
  const char *cls;
  const char *why;
} using[] = {
  { "BatchNormalization",
    "Keras leaves the masked steps out of its batch statistics, which Kilt does not" },
  { "Softmax", "Keras pushes the masked positions to minus infinity before the softmax, "
               "which Kilt does not" },
};

KerasMask
keras_mask_none (void)
{
  return (KerasMask){ G_MAXUINT, KILT_STEP_MASK_NONE, 0.0f };
}

static gboolean
mask_present (const KerasMask *m)
{
  return m->src != G_MAXUINT;
}

static gboolean
mask_equal (const KerasMask *a, const KerasMask *b)
{
  return a->src == b->src && a->kind == b->kind && a->value == b->value;
}

static gboolean
class_in (const char *cls, const char *const *list, guint n)
{
  for (guint i = 0; i < n; i++)
    if (g_str_equal (cls, list[i]))
      return TRUE;
  return FALSE;
}

/* The mask of @n inputs together: Keras' merges keep a step where every input that has a mask
 * keeps it. Kilt's step masks have one source, so inputs whose masks differ give a mixed
 * mask, which layers may carry or drop but not use. */
static KerasMask
inputs_mask (Import *imp, guint n, const guint *inputs)
{
  KerasMask out = keras_mask_none ();

  for (guint i = 0; i < n; i++)
    {
      const KerasMask *m = &g_array_index (imp->mask, KerasMask, inputs[i]);
      if (!mask_present (m))
        continue;
      if (mask_present (&out) && !mask_equal (&out, m))
        out.src = KERAS_MASK_MIXED;
      else
        out = *m;
    }
  return out;
}

static gboolean
refuse_mixed (Import *imp, const KerasMask *in, GError **error)
{
  if (in->src != KERAS_MASK_MIXED)
    return FALSE;
  keras_set_error (error, imp,
                   "reads a mask that combines the masks of different Embedding or Masking "
                   "layers (through a merge), which Keras does; Kilt's layers skip the steps of "
                   "one mask only");
  return TRUE;
}

gboolean
keras_mask_for_node (Import *imp, KiltLayerType type, KiltLayerConfig *cfg, guint *n_inputs,
                     guint *inputs, KerasMask *out, GError **error)
{
  const char *cls = imp->cur ? imp->cur->class_name : "";
  gboolean rnn = type == KILT_LAYER_LSTM || type == KILT_LAYER_GRU;
  gboolean mean
      = type == KILT_LAYER_GLOBAL_AVG_POOL2D
        && (g_str_equal (cls, "GlobalAveragePooling1D") || g_str_equal (cls, "GlobalAvgPool1D"));
  KerasMask in;

  *out = keras_mask_none ();
  in = inputs_mask (imp, *n_inputs, inputs);
  if (mask_present (&imp->made))
    {
      /* Embedding (mask_zero) or Masking: its own mask, whatever came in. */
      *out = imp->made;
      return TRUE;
    }
  if (!mask_present (&in))
    return TRUE;
  if ((rnn || mean) && refuse_mixed (imp, &in, error))
    return FALSE;
  if (rnn || mean)
    {
      /* The layer skips the masked steps: the mask's source becomes its last input. An LSTM
       * or GRU giving every step's state passes the mask on (Keras: return_sequences). */
      g_return_val_if_fail (*n_inputs + 1 <= KILT_MAX_INPUTS, FALSE);
      cfg->step_mask = in.kind;
      cfg->mask_value = in.value;
      inputs[(*n_inputs)++] = in.src;
      if (rnn && cfg->return_sequences)
        *out = in;
      return TRUE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (using); i++)
    if (g_str_equal (cls, using[i].cls))
      {
        if (refuse_mixed (imp, &in, error))
          return FALSE;
        keras_set_error (error, imp,
                         "reads a mask (from an Embedding with mask_zero or a Masking layer "
                         "before it): %s",
                         using[i].why);
        return FALSE;
      }
  /* A Bidirectional's merge of its halves carries their mask (return_sequences). */
  if (class_in (cls, passing, G_N_ELEMENTS (passing)) || g_str_equal (cls, "Bidirectional")
      || (imp->keras3 && (g_str_equal (cls, "Rescaling") || g_str_equal (cls, "Normalization"))))
    {
      *out = in;
      return TRUE;
    }
  /* Every other layer drops the mask, in Keras as here (Keras 3 warns): what comes after sees
   * every step, padding included. */
  keras_add_note (imp, "drops the mask of its input, as Keras does: the layers after it see "
                       "every step, padding included");
  return TRUE;
}
