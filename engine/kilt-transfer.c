/* Transfer learning on a built model: freezing a first part, and a new head for other classes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-transfer"

#include "kilt-transfer.h"
#include "kilt-error.h"

#include <string.h>

/* How many near names an unknown-name error lists. */
#define NEAR_NAMES 5

/* Edit distance, case-insensitive, with two rows. */
static guint
distance (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  g_autofree guint *prev = g_new (guint, lb + 1), *cur = g_new (guint, lb + 1);

  for (gsize j = 0; j <= lb; j++)
    prev[j] = (guint)j;
  for (gsize i = 1; i <= la; i++)
    {
      guint *t;
      cur[0] = (guint)i;
      for (gsize j = 1; j <= lb; j++)
        {
          guint sub = prev[j - 1] + (g_ascii_tolower (a[i - 1]) != g_ascii_tolower (b[j - 1]));
          cur[j] = MIN (MIN (prev[j] + 1, cur[j - 1] + 1), sub);
        }
      t = prev;
      prev = cur;
      cur = t;
    }
  return prev[lb];
}

typedef struct
{
  guint dist;
  guint index;
} Near;

static int
near_cmp (gconstpointer a, gconstpointer b)
{
  const Near *x = a, *y = b;

  if (x->dist != y->dist)
    return x->dist < y->dist ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

gboolean
kilt_transfer_freeze_until (KiltModel *model, const char *name, GError **error)
{
  KiltNode *last = kilt_model_find (model, name);
  guint n = kilt_model_n_nodes (model);

  if (last == NULL)
    {
      g_autofree Near *near = g_new (Near, MAX (n, 1));
      GString *list = g_string_new (NULL);
      for (guint i = 0; i < n; i++)
        {
          const char *other = kilt_model_node (model, i)->name;
          /* A name that holds the one given (or is held by it) comes first. */
          gboolean part = g_strstr_len (other, -1, name) || g_strstr_len (name, -1, other);
          near[i] = (Near){ part ? 0 : distance (name, other), i };
        }
      qsort (near, n, sizeof *near, near_cmp);
      for (guint i = 0; i < MIN (n, NEAR_NAMES); i++)
        g_string_append_printf (list, "%s%s", i ? ", " : "",
                                kilt_model_node (model, near[i].index)->name);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--freeze-until %s: model %s has no layer of that name; the nearest are: %s "
                   "(kilt-cli summary lists them all)",
                   name, model->name, list->str);
      g_string_free (list, TRUE);
      return FALSE;
    }
  for (guint i = 0; i <= last->index; i++)
    kilt_model_set_trainable (model, i, FALSE);
  return TRUE;
}

void
kilt_transfer_unfreeze_all (KiltModel *model)
{
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    kilt_model_set_trainable (model, i, TRUE);
}

/* The head's first node: the last one with parameters, when only a chain of parameterless
 * shape and activation nodes follows it. */
static gboolean
find_head (KiltModel *model, guint *head, GError **error)
{
  guint n = kilt_model_n_nodes (model);

  g_return_val_if_fail (model->built, FALSE);
  for (guint i = n - 1; i >= 1; i--)
    {
      KiltNode *node = kilt_model_node (model, i);
      gboolean flat_out = node->out_shape.h == 1 && node->out_shape.w == 1;

      if (node->n_inputs != 1 || (i + 1 < n && kilt_model_node (model, i + 1)->inputs[0] != i))
        break;
      if (node->n_params == 0)
        {
          if (node->type == KILT_LAYER_ACTIVATION || node->type == KILT_LAYER_FLATTEN
              || node->type == KILT_LAYER_RESHAPE || node->type == KILT_LAYER_DROPOUT)
            continue;
          break;
        }
      if (node->type == KILT_LAYER_DENSE || (node->type == KILT_LAYER_CONV2D && flat_out))
        {
          *head = i;
          return TRUE;
        }
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s: its last layer with weights, %s (%s), is not a Dense (or a 1x1 "
                   "Conv2D): Kilt cannot tell which layers make its head",
                   model->name, node->name, node->klass->name);
      return FALSE;
    }
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
               "model %s does not end in a Dense layer followed only by its activation (or "
               "Flatten, Reshape, Dropout): Kilt cannot tell which layers make its head",
               model->name);
  return FALSE;
}

gboolean
kilt_transfer_can_replace_head (KiltModel *model, GError **error)
{
  guint head;

  if (model->loss != KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s: a new head is a softmax classifier, but the model's loss is %s",
                   model->name, kilt_loss_name (model->loss));
      return FALSE;
    }
  return find_head (model, &head, error);
}

/* @base, or @base_N with the first N that no node has. */
static char *
unique_name (KiltModel *model, const char *base)
{
  char *name = g_strdup (base);

  for (guint i = 1; kilt_model_find (model, name); i++)
    {
      g_free (name);
      name = g_strdup_printf ("%s_%u", base, i);
    }
  return name;
}

gboolean
kilt_transfer_replace_head (KiltModel *model, guint n_classes, guint32 seed, GError **error)
{
  guint head, src;
  const float *wp = NULL, *ws = NULL;
  g_autofree float *keep_params = NULL, *keep_state = NULL;
  g_autofree char *note = NULL, *dense_name = NULL;
  gsize keep_p = 0, keep_s = 0;
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DENSE);

  g_return_val_if_fail (n_classes > 0, FALSE);
  if (!kilt_transfer_can_replace_head (model, error) || !find_head (model, &head, error))
    return FALSE;
  src = kilt_model_node (model, head)->inputs[0];
  /* The layers before the head keep their parameters and state, which come first. */
  if (kilt_model_get_weights (model, &wp, &ws))
    {
      keep_p = kilt_model_node (model, head)->param_offset;
      keep_s = kilt_model_node (model, head)->state_offset;
      keep_params = g_memdup2 (wp, sizeof (float) * (keep_p + 1));
      keep_state = g_memdup2 (ws, sizeof (float) * (keep_s + 1));
      note = g_strdup_printf ("%s; a new %u-class head", model->weights_note, n_classes);
    }
  kilt_model_set_weights (model, NULL, NULL, NULL);
  kilt_model_truncate (model, head);
  if (kilt_model_node (model, src)->out_shape.h != 1
      || kilt_model_node (model, src)->out_shape.w != 1)
    {
      g_autofree char *flat = unique_name (model, "head_flatten");
      src = kilt_model_add (model, KILT_LAYER_FLATTEN, flat, NULL, 1, &src);
    }
  cfg.units = n_classes;
  cfg.activation = KILT_ACT_SOFTMAX;
  cfg.use_bias = TRUE;
  cfg.init = KILT_INIT_GLOROT_UNIFORM;
  dense_name = unique_name (model, "head");
  kilt_model_add (model, KILT_LAYER_DENSE, dense_name, &cfg, 1, &src);
  if (!kilt_model_build (model, error))
    return FALSE;
  if (keep_params)
    {
      float *params = g_new (float, model->n_params + 1);
      float *state = g_new (float, model->n_state + 1);
      kilt_model_init_params (model, seed, params, state);
      memcpy (params, keep_params, sizeof (float) * keep_p);
      memcpy (state, keep_state, sizeof (float) * MIN (keep_s, model->n_state));
      kilt_model_set_weights (model, params, state, note);
    }
  return TRUE;
}
