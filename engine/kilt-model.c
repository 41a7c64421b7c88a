/* A model: a directed acyclic graph of layer nodes, its loss, and the flat parameter layout. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-model"

#include "kilt-model.h"
#include "kilt-error.h"

static void
node_free (gpointer data)
{
  KiltNode *n = data;

  g_free (n->name);
  g_free (n);
}

KiltModel *
kilt_model_new (const char *name)
{
  KiltModel *m = g_new0 (KiltModel, 1);

  m->name = g_strdup (name ? name : "model");
  m->nodes = g_ptr_array_new_with_free_func (node_free);
  m->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  m->loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
  return m;
}

void
kilt_model_free (KiltModel *model)
{
  if (model == NULL)
    return;
  kilt_model_set_weights (model, NULL, NULL, NULL);
  g_free (model->grad_ranges);
  g_hash_table_unref (model->by_name);
  g_ptr_array_unref (model->nodes);
  g_free (model->name);
  g_free (model->keras_json);
  g_free (model);
}

static char *
default_name (KiltModel *model, const KiltLayerClass *klass)
{
  g_autofree char *base = NULL;
  GString *s = g_string_new (NULL);
  guint *seq = &model->name_seq[klass->type];

  /* "Conv2D" -> "conv2d", "MaxPooling2D" -> "max_pooling2d", as Keras names layers. */
  for (const char *p = klass->name; *p; p++)
    {
      if (g_ascii_isupper (*p) && p != klass->name && g_ascii_islower (p[-1]))
        g_string_append_c (s, '_');
      g_string_append_c (s, g_ascii_tolower (*p));
    }
  base = g_string_free (s, FALSE);
  /* The suffix counts the type's nodes so far and skips names a file gave other nodes; it
   * never goes back, so naming n layers stays linear whatever names the file holds. */
  for (;;)
    {
      char *name = *seq == 0 ? g_strdup (base) : g_strdup_printf ("%s_%u", base, *seq);
      if (!g_hash_table_contains (model->by_name, name))
        return name;
      g_free (name);
      ++*seq;
    }
}

guint
kilt_model_add (KiltModel *model, KiltLayerType type, const char *name, const KiltLayerConfig *cfg,
                guint n_inputs, const guint *inputs)
{
  KiltNode *n = g_new0 (KiltNode, 1);

  g_return_val_if_fail (n_inputs <= KILT_MAX_INPUTS, G_MAXUINT);
  n->index = model->nodes->len;
  n->type = type;
  n->klass = kilt_layer_class_get (type);
  g_return_val_if_fail (n->klass != NULL, G_MAXUINT);
  n->cfg = cfg ? *cfg : kilt_layer_config_default (type);
  n->name = name ? g_strdup (name) : default_name (model, n->klass);
  n->n_inputs = n_inputs;
  for (guint i = 0; i < n_inputs; i++)
    n->inputs[i] = inputs[i];
  g_ptr_array_add (model->nodes, n);
  model->name_seq[type]++;
  if (!g_hash_table_contains (model->by_name, n->name))
    g_hash_table_insert (model->by_name, n->name, n);
  model->built = FALSE;
  return n->index;
}

guint
kilt_model_add_input (KiltModel *model, const char *name, KiltShape shape)
{
  guint i = kilt_model_add (model, KILT_LAYER_INPUT, name ? name : "input", NULL, 0, NULL);
  KiltNode *n = g_ptr_array_index (model->nodes, i);

  n->out_shape = shape;
  return i;
}

guint
kilt_model_append (KiltModel *model, KiltLayerType type, const KiltLayerConfig *cfg)
{
  guint prev;

  g_return_val_if_fail (model->nodes->len > 0, G_MAXUINT);
  prev = model->nodes->len - 1;
  return kilt_model_add (model, type, NULL, cfg, 1, &prev);
}

void
kilt_model_truncate (KiltModel *model, guint n_nodes)
{
  g_return_if_fail (n_nodes >= 1 && n_nodes <= model->nodes->len);
  for (guint i = n_nodes; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      if (g_hash_table_lookup (model->by_name, node->name) == node)
        g_hash_table_remove (model->by_name, node->name);
    }
  g_ptr_array_set_size (model->nodes, n_nodes);
  model->built = FALSE;
}

KiltNode *
kilt_model_node (KiltModel *model, guint index)
{
  g_return_val_if_fail (index < model->nodes->len, NULL);
  return g_ptr_array_index (model->nodes, index);
}

guint
kilt_model_n_nodes (KiltModel *model)
{
  return model->nodes->len;
}

KiltNode *
kilt_model_output (KiltModel *model)
{
  g_return_val_if_fail (model->nodes->len > 0, NULL);
  return g_ptr_array_index (model->nodes, model->nodes->len - 1);
}

KiltNode *
kilt_model_find (KiltModel *model, const char *name)
{
  return g_hash_table_lookup (model->by_name, name);
}

/* Adds @r to @ranges, joined to the last run when it follows it and is treated the same. */
static void
append_range (GArray *ranges, const KiltParamRange *r)
{
  if (ranges->len > 0)
    {
      KiltParamRange *last = &g_array_index (ranges, KiltParamRange, ranges->len - 1);
      if (last->param_offset + last->n == r->param_offset
          && last->grad_offset + last->n == r->grad_offset && last->fixed == r->fixed
          && last->until_epoch == r->until_epoch && last->lr_multiplier == r->lr_multiplier)
        {
          last->n += r->n;
          return;
        }
    }
  g_array_append_val (ranges, *r);
}

/* The gradient layout and which nodes lie on a gradient's path, from the frozen flags. */
static void
layout_grads (KiltModel *model)
{
  GArray *ranges = g_array_new (FALSE, FALSE, sizeof (KiltParamRange));
  gsize grads = 0;

  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      gboolean trains = node->n_params > 0 && !node->frozen;

      node->grad_offset = trains ? grads : 0;
      node->grad_path = trains;
      for (guint j = 0; j < node->n_inputs && node->inputs[j] < i; j++)
        node->grad_path
            |= ((KiltNode *)g_ptr_array_index (model->nodes, node->inputs[j]))->grad_path;
      if (!trains)
        continue;
      /* Every config comes from kilt_layer_config_default, whose multiplier is 1. */
      g_warn_if_fail (node->cfg.lr_multiplier > 0.0f);
      if (node->cfg.init == KILT_INIT_WHITEN && node->type == KILT_LAYER_CONV2D)
        {
          /* The kernel (the node's first floats, the bias after it) is set from the data and
           * kept; the bias trains for its first epochs, or never. */
          gsize n_bias = node->cfg.use_bias ? node->out_shape.c : 0;
          guint bias_epochs = node->cfg.whiten_bias_epochs;
          append_range (ranges, &(KiltParamRange){ node->param_offset, grads,
                                                   node->n_params - n_bias, TRUE, 0, 1.0f });
          if (n_bias)
            append_range (ranges, &(KiltParamRange){ node->param_offset + node->n_params - n_bias,
                                                     grads + node->n_params - n_bias, n_bias,
                                                     bias_epochs == 0, bias_epochs,
                                                     node->cfg.lr_multiplier });
        }
      else
        append_range (ranges, &(KiltParamRange){ node->param_offset, grads, node->n_params, FALSE,
                                                 0, node->cfg.lr_multiplier });
      grads += node->n_params;
    }
  g_free (model->grad_ranges);
  model->n_grads = grads;
  model->n_grad_ranges = ranges->len;
  model->grad_ranges = (KiltParamRange *)g_array_free (ranges, FALSE);
}

void
kilt_model_set_trainable (KiltModel *model, guint index, gboolean trainable)
{
  KiltNode *node;

  g_return_if_fail (index < model->nodes->len);
  node = g_ptr_array_index (model->nodes, index);
  node->frozen = !trainable;
  if (model->built)
    layout_grads (model);
}

guint
kilt_model_n_frozen (KiltModel *model)
{
  guint n = 0;

  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      n += node->frozen && node->n_params > 0;
    }
  return n;
}

gboolean
kilt_model_build (KiltModel *model, GError **error)
{
  g_autofree guint *consumers = NULL;
  gsize params = 0, state = 0;
  guint n = model->nodes->len;

  if (n < 2)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s has no layers after its input", model->name);
      return FALSE;
    }
  if (n - 1 > KILT_MODEL_MAX_LAYERS)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s has %u layers after its input; Kilt takes at most %u", model->name,
                   n - 1, KILT_MODEL_MAX_LAYERS);
      return FALSE;
    }
  consumers = g_new0 (guint, n);
  for (guint i = 0; i < n; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);

      if (node->type == KILT_LAYER_INPUT && i != 0)
        {
          kilt_layer_set_error (error, node, "a model has exactly one input, and it comes first");
          return FALSE;
        }
      if (i == 0 && node->type != KILT_LAYER_INPUT)
        {
          kilt_layer_set_error (error, node, "the first node must be the input");
          return FALSE;
        }
      if (node->n_inputs < node->klass->min_inputs || node->n_inputs > node->klass->max_inputs)
        {
          kilt_layer_set_error (error, node, "takes %u to %u inputs, got %u",
                                node->klass->min_inputs, node->klass->max_inputs, node->n_inputs);
          return FALSE;
        }
      for (guint j = 0; j < node->n_inputs; j++)
        {
          KiltNode *src;
          if (node->inputs[j] >= i)
            {
              kilt_layer_set_error (
                  error, node, "input %u refers to a node that is not earlier in the graph", j);
              return FALSE;
            }
          src = g_ptr_array_index (model->nodes, node->inputs[j]);
          node->in_shape[j] = src->out_shape;
          consumers[node->inputs[j]]++;
        }
      node->n_params = node->n_state = 0;
      if (node->type != KILT_LAYER_INPUT && !node->klass->infer (node, error))
        return FALSE;
      if (node->type == KILT_LAYER_INPUT && kilt_shape_size (&node->out_shape) == 0)
        {
          kilt_layer_set_error (error, node, "the input shape has a zero dimension");
          return FALSE;
        }
      node->param_offset = params;
      node->state_offset = state;
      params += node->n_params;
      state += node->n_state;
    }
  for (guint i = 0; i + 1 < n; i++)
    if (consumers[i] == 0)
      {
        kilt_layer_set_error (error, g_ptr_array_index (model->nodes, i),
                              "its output is used by nothing; a model has one output, its last "
                              "node");
        return FALSE;
      }
  model->n_params = params;
  model->n_state = state;
  layout_grads (model);
  model->built = TRUE;
  return TRUE;
}

void
kilt_model_set_weights (KiltModel *model, float *params, float *state, const char *note)
{
  g_free (model->weights_params);
  g_free (model->weights_state);
  g_free (model->weights_note);
  model->weights_params = params;
  model->weights_state = params ? state : (g_free (state), NULL);
  model->weights_n_params = params ? model->n_params : 0;
  model->weights_n_state = params ? model->n_state : 0;
  model->weights_note = params && note ? g_strdup (note) : NULL;
}

gboolean
kilt_model_get_weights (KiltModel *model, const float **params, const float **state)
{
  if (model->weights_params == NULL || !model->built || model->weights_n_params != model->n_params
      || model->weights_n_state != model->n_state)
    return FALSE;
  *params = model->weights_params;
  *state = model->weights_state;
  return TRUE;
}

void
kilt_model_init_params (KiltModel *model, guint64 seed, float *params, float *state)
{
  g_return_if_fail (model->built);
  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      /* One stream per node, so adding a layer does not change the others' initial values. */
      KiltRng rng;
      kilt_rng_init (&rng, seed * 1000003u + i);
      if (node->klass->init)
        node->klass->init (node, params + node->param_offset, state + node->state_offset, &rng);
    }
}

guint64
kilt_model_flops (KiltModel *model)
{
  guint64 total = 0;

  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      if (node->klass->flops)
        total += node->klass->flops (node);
    }
  return total;
}

guint
kilt_model_n_outputs (KiltModel *model)
{
  KiltNode *out = kilt_model_output (model);

  return (guint)kilt_shape_size (&out->out_shape);
}

static guint64
fnv (guint64 h, const void *data, gsize n)
{
  const guint8 *p = data;

  for (gsize i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

guint64
kilt_model_hash (KiltModel *model)
{
  guint64 h = 0xcbf29ce484222325ull;

  g_return_val_if_fail (model->built, 0);
  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *n = g_ptr_array_index (model->nodes, i);
      guint64 v[6]
          = { n->type, n->out_shape.c, n->out_shape.h, n->out_shape.w, n->n_params, n->n_state };
      h = fnv (h, v, sizeof v);
      h = fnv (h, n->inputs, sizeof (guint) * n->n_inputs);
    }
  return h;
}

static const char *loss_names[] = { "softmax_cross_entropy", "binary_cross_entropy", "mse" };

const char *
kilt_loss_name (KiltLossType loss)
{
  return loss_names[loss];
}

gboolean
kilt_loss_from_name (const char *name, KiltLossType *out)
{
  static const struct
  {
    const char *name;
    KiltLossType loss;
  } aliases[] = {
    { "softmax_cross_entropy", KILT_LOSS_SOFTMAX_CROSS_ENTROPY },
    { "categorical_crossentropy", KILT_LOSS_SOFTMAX_CROSS_ENTROPY },
    { "sparse_categorical_crossentropy", KILT_LOSS_SOFTMAX_CROSS_ENTROPY },
    { "binary_cross_entropy", KILT_LOSS_BINARY_CROSS_ENTROPY },
    { "binary_crossentropy", KILT_LOSS_BINARY_CROSS_ENTROPY },
    { "mse", KILT_LOSS_MSE },
    { "mean_squared_error", KILT_LOSS_MSE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (aliases); i++)
    if (g_ascii_strcasecmp (name, aliases[i].name) == 0)
      {
        *out = aliases[i].loss;
        return TRUE;
      }
  return FALSE;
}
