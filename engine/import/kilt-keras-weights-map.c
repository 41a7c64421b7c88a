/* Keras weights: each layer's Keras class and options, the per-layer-type table of variables
 * (Keras' shapes and where each goes in Kilt's parameters), and the feature order after a
 * Flatten. Shared by the reader (kilt-keras-weights.c) and the writer. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras-weights"

#include "kilt-keras-weights-private.h"
#include "kilt-keras-private.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"
#include "kilt-model-json.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* Far above any real layer's variable count (BatchNormalization has 4). */
#define MAX_VARS_PER_LAYER 64

static void set_error (GError **error, const char *path, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
set_error (GError **error, const char *path, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: %s", path, msg);
}

static GMutex h5_lock;

void
kilt_keras_h5_lock (void)
{
  g_mutex_lock (&h5_lock);
}

void
kilt_keras_h5_unlock (void)
{
  g_mutex_unlock (&h5_lock);
}

/* ---- what the Keras architecture says of each layer ---------------------------------------- */

static void
layer_info_free (gpointer p)
{
  LayerInfo *li = p;

  g_free (li->class_name);
  g_free (li->key);
  g_free (li->key2);
  g_free (li->part_of);
  g_free (li);
}

/* keras.src.utils.naming.to_snake_case: "Conv2D" -> "conv2d", "BatchNormalization" ->
 * "batch_normalization", "ReLU" -> "re_lu". */
static char *
snake_case (const char *name)
{
  GString *a = g_string_new (NULL), *b = g_string_new (NULL), *c = g_string_new (NULL);
  gsize n;

  for (const char *p = name; *p; p++)
    if (g_ascii_isalnum (*p) || *p == '_' || (guchar)*p >= 0x80)
      g_string_append_c (a, *p);
  /* (.)([A-Z][a-z]+) -> \1_\2, left to right without overlaps. */
  n = a->len;
  for (gsize i = 0; i < n; i++)
    {
      if (i > 0 && g_ascii_isupper (a->str[i]) && i + 1 < n && g_ascii_islower (a->str[i + 1]))
        g_string_append_c (b, '_');
      g_string_append_c (b, a->str[i]);
    }
  /* ([a-z])([A-Z]) -> \1_\2 */
  for (gsize i = 0; i < b->len; i++)
    {
      g_string_append_c (c, g_ascii_tolower (b->str[i]));
      if (g_ascii_islower (b->str[i]) && i + 1 < b->len && g_ascii_isupper (b->str[i + 1]))
        g_string_append_c (c, '_');
    }
  g_string_free (a, TRUE);
  g_string_free (b, TRUE);
  return g_string_free (c, FALSE);
}

/* The layers array of a Keras model JSON (Keras 2 or 3, or a bare legacy list). */
static JsonArray *
json_layers (JsonNode *root)
{
  JsonObject *o, *cfg;
  JsonNode *c;

  if (JSON_NODE_HOLDS_ARRAY (root))
    return json_node_get_array (root);
  if (!JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  o = json_node_get_object (root);
  c = json_object_get_member (o, "config");
  if (c && JSON_NODE_HOLDS_ARRAY (c))
    return json_node_get_array (c);
  if (c == NULL || !JSON_NODE_HOLDS_OBJECT (c))
    return NULL;
  cfg = json_node_get_object (c);
  c = json_object_get_member (cfg, "layers");
  return c && JSON_NODE_HOLDS_ARRAY (c) ? json_node_get_array (c) : NULL;
}

static gboolean
json_bool (JsonObject *o, const char *key, gboolean def)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    return json_node_get_boolean (n);
  return def;
}

static const char *
json_str (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    return json_node_get_string (n);
  return NULL;
}

static gboolean
is_model_class (const char *cls)
{
  return g_str_equal (cls, "Sequential") || g_str_equal (cls, "Functional")
         || g_str_equal (cls, "Model");
}

static const char *
entry_name (JsonObject *lo, JsonObject *cfg, const char *cls)
{
  const char *name = json_str (cfg, "name");

  if (name == NULL)
    name = json_str (lo, "name");
  return name ? name : cls;
}

/* The importer's rule for names (kilt-keras.c, count_names): how many layers that become
 * Kilt nodes have each name, at every depth of nesting. */
static void
count_uses (JsonArray *arr, guint depth, GHashTable *uses)
{
  if (arr == NULL || depth > KILT_KERAS_WEIGHTS_MAX_NESTING)
    return;
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      JsonNode *ln = json_array_get_element (arr, i);
      JsonObject *lo, *cfg;
      JsonNode *cn;
      const char *cls, *name;

      if (!JSON_NODE_HOLDS_OBJECT (ln))
        continue;
      lo = json_node_get_object (ln);
      cn = json_object_get_member (lo, "config");
      cfg = cn && JSON_NODE_HOLDS_OBJECT (cn) ? json_node_get_object (cn) : NULL;
      if ((cls = json_str (lo, "class_name")) == NULL || cfg == NULL)
        continue;
      if (is_model_class (cls))
        {
          JsonNode *sub = json_object_get_member (cfg, "layers");
          count_uses (sub && JSON_NODE_HOLDS_ARRAY (sub) ? json_node_get_array (sub) : NULL,
                      depth + 1, uses);
          continue;
        }
      if (depth > 0 && g_str_equal (cls, "InputLayer"))
        continue;
      name = entry_name (lo, cfg, cls);
      g_hash_table_insert (
          uses, (gpointer)name,
          GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (uses, name)) + 1));
    }
}

/* Adds the LayerInfo of every layer of @arr (one model's list) to @infos under its Kilt node
 * name, with its Keras 3 group @key_prefix + class key; a nested model's layers follow under
 * its own key ("functional/layers/conv2d"), named as the importer names them (SCOPE/NAME
 * where another layer of the file has the name), and @outer, the top-level model layer they
 * are in (NULL at the top), gives their Keras 2 key. */
static void
collect_infos (JsonArray *arr, const char *key_prefix, const char *scope, const char *outer,
               guint depth, GHashTable *uses, GHashTable *infos, gboolean *channels_first)
{
  g_autoptr (GHashTable) used = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  if (depth > KILT_KERAS_WEIGHTS_MAX_NESTING)
    return;
  for (guint i = 0; i < json_array_get_length (arr); i++)
    {
      JsonNode *ln = json_array_get_element (arr, i);
      JsonObject *lo, *cfg;
      JsonNode *cn;
      const char *cls, *name, *df;
      g_autofree char *base = NULL, *key = NULL, *node_name = NULL;
      gpointer seen;
      guint count = 0;

      if (!JSON_NODE_HOLDS_OBJECT (ln))
        continue;
      lo = json_node_get_object (ln);
      cn = json_object_get_member (lo, "config");
      cfg = cn && JSON_NODE_HOLDS_OBJECT (cn) ? json_node_get_object (cn) : NULL;
      cls = json_str (lo, "class_name");
      name = json_str (cfg, "name");
      if (name == NULL)
        name = json_str (lo, "name");
      if (cls == NULL || name == NULL)
        continue;
      df = json_str (cfg, "data_format");
      if (df && g_str_equal (df, "channels_first"))
        *channels_first = TRUE;
      /* Keras 3 numbers repeats of a class within one model's list: conv2d, conv2d_1, ... */
      base = snake_case (cls);
      if (g_hash_table_lookup_extended (used, base, NULL, &seen))
        {
          count = GPOINTER_TO_UINT (seen) + 1;
          key = g_strdup_printf ("%s%s_%u", key_prefix, base, count);
        }
      else
        key = g_strdup_printf ("%s%s", key_prefix, base);
      g_hash_table_replace (used, g_strdup (base), GUINT_TO_POINTER (count));
      if (is_model_class (cls))
        {
          JsonNode *sub = json_object_get_member (cfg, "layers");
          g_autofree char *prefix = g_strconcat (key, "/layers/", NULL);
          if (sub && JSON_NODE_HOLDS_ARRAY (sub))
            collect_infos (json_node_get_array (sub), prefix, name, outer ? outer : name, depth + 1,
                           uses, infos, channels_first);
          continue;
        }
      if (scope && GPOINTER_TO_UINT (g_hash_table_lookup (uses, name)) >= 2)
        node_name = g_strdup_printf ("%s/%s", scope, name);
      else
        node_name = g_strdup (name);
      /* A Bidirectional's halves are Kilt nodes NAME/forward_lstm and NAME/backward_lstm
       * (kilt-keras-layers.c), Keras 3 groups KEY/forward_layer and KEY/backward_layer. */
      if (g_str_equal (cls, "Bidirectional"))
        {
          g_autofree char *fwd = NULL, *bwd = NULL;
          JsonNode *inner = json_object_get_member (cfg, "layer");
          const char *inner_cls = inner && JSON_NODE_HOLDS_OBJECT (inner)
                                      ? json_str (json_node_get_object (inner), "class_name")
                                      : NULL;
          keras_bidirectional_names (cfg, &fwd, &bwd);
          for (guint half = 0; half < 2; half++)
            {
              g_autofree char *hname = g_strdup_printf ("%s/%s", node_name, half ? bwd : fwd);
              LayerInfo *hi;
              if (g_hash_table_contains (infos, hname))
                continue;
              hi = g_new0 (LayerInfo, 1);
              hi->class_name = g_strdup (inner_cls ? inner_cls : "LSTM");
              hi->key = g_strdup_printf ("%s/%s", key, half ? "backward_layer" : "forward_layer");
              hi->center = hi->scale = TRUE;
              hi->known = TRUE;
              g_hash_table_insert (infos, g_steal_pointer (&hname), hi);
            }
        }
      /* A SeparableConv2D is two nodes (kilt-keras-layers.c): NAME/depthwise and NAME, the
       * pointwise part; Keras keeps the variables of both in the layer's one group. */
      if (g_str_equal (cls, "SeparableConv2D") || g_str_equal (cls, "SeparableConvolution2D"))
        {
          g_autofree char *dw = g_strdup_printf ("%s/depthwise", node_name);
          if (!g_hash_table_contains (infos, dw))
            {
              LayerInfo *di = g_new0 (LayerInfo, 1);
              di->class_name = g_strdup (cls);
              di->key = g_strdup (key);
              di->key2 = outer ? g_strdup_printf ("%s/%s", outer, name) : NULL;
              di->part_of = g_strdup (name);
              di->center = di->scale = TRUE;
              di->known = TRUE;
              di->use_bias = json_bool (cfg, "use_bias", TRUE);
              g_hash_table_insert (infos, g_steal_pointer (&dw), di);
            }
        }
      if (!g_hash_table_contains (infos, node_name))
        {
          LayerInfo *li = g_new0 (LayerInfo, 1);
          li->class_name = g_strdup (cls);
          li->key = g_steal_pointer (&key);
          li->key2 = outer ? g_strdup_printf ("%s/%s", outer, name) : NULL;
          li->center = json_bool (cfg, "center", TRUE);
          li->scale = json_bool (cfg, "scale", TRUE);
          li->known = TRUE;
          li->use_bias = json_bool (cfg, "use_bias", TRUE);
          g_hash_table_insert (infos, g_steal_pointer (&node_name), li);
        }
    }
}

/* Node name -> LayerInfo, from the JSON when there is one, else from the model's own types,
 * in the order Keras lists its layers; *channels_first from any layer's data_format. */
GHashTable *
kilt_keras_layer_infos (KiltModel *model, const char *keras_json, gboolean *channels_first)
{
  GHashTable *infos = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, layer_info_free);
  g_autoptr (GHashTable) used = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonArray *arr = NULL;

  *channels_first = FALSE;
  /* The JSON has been through kilt_keras_load_data (), which refuses what json-glib cannot
   * take safely; a failure here only means "no extra information". */
  if (keras_json && kilt_json_check_text (keras_json, -1, NULL)
      && json_parser_load_from_data (parser, keras_json, -1, NULL))
    arr = json_layers (json_parser_get_root (parser));
  if (arr)
    {
      g_autoptr (GHashTable) uses = g_hash_table_new (g_str_hash, g_str_equal);
      count_uses (arr, 0, uses);
      collect_infos (arr, "", NULL, NULL, 0, uses, infos, channels_first);
    }
  if (g_hash_table_size (infos) > 0)
    return infos;
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *node = kilt_model_node (model, i);
      LayerInfo *li;
      g_autofree char *base = snake_case (
          node->type == KILT_LAYER_INPUT ? "InputLayer" : kilt_layer_type_name (node->type));
      gpointer seen;
      guint count = 0;

      if (g_hash_table_contains (infos, node->name))
        continue;
      li = g_new0 (LayerInfo, 1);
      if (g_hash_table_lookup_extended (used, base, NULL, &seen))
        {
          count = GPOINTER_TO_UINT (seen) + 1;
          li->key = g_strdup_printf ("%s_%u", base, count);
        }
      else
        li->key = g_strdup (base);
      g_hash_table_replace (used, g_strdup (base), GUINT_TO_POINTER (count));
      li->class_name = g_strdup (
          node->type == KILT_LAYER_INPUT ? "InputLayer" : kilt_layer_type_name (node->type));
      li->center = li->scale = TRUE;
      li->known = FALSE;
      g_hash_table_insert (infos, g_strdup (node->name), li);
    }
  return infos;
}

/* ---- the per-layer-type table -------------------------------------------------------------- */

static gboolean
expect_dense (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
              guint *n, GError **error)
{
  gsize in = kilt_shape_size (&node->in_shape[0]), units = node->cfg.units;

  (void)li;
  (void)state;
  (void)error;
  v[0]
      = (Var){ "kernel", TRUE, 2, { in, units }, params, PLACE_DENSE_KERNEL, FALSE, 0, in * units };
  *n = 1;
  if (node->cfg.use_bias)
    v[(*n)++]
        = (Var){ "bias", TRUE, 1, { units }, params + in * units, PLACE_COPY, FALSE, 0, units };
  return TRUE;
}

static gboolean
is_separable (const LayerInfo *li)
{
  return li && li->class_name
         && (g_str_equal (li->class_name, "SeparableConv2D")
             || g_str_equal (li->class_name, "SeparableConvolution2D"));
}

static gboolean
expect_conv2d (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
               guint *n, GError **error)
{
  /* With groups, Keras' kernel is (kh, kw, C / groups, F), and so is each filter's part in Kilt. */
  gsize c = node->in_shape[0].c / MAX (node->cfg.groups, 1), f = node->cfg.units;
  gsize k = c * node->cfg.kh * node->cfg.kw;
  /* A Keras Conv1D is Kilt's Conv2D with a one-row kernel; its kernel is (k, C, F). */
  gboolean one_d = li->class_name && node->cfg.kh == 1
                   && (g_str_equal (li->class_name, "Conv1D")
                       || g_str_equal (li->class_name, "Convolution1D"));

  (void)state;
  (void)error;
  /* A SeparableConv2D's pointwise part: its (1, 1, C, F) kernel is the Keras layer's second
   * variable, after the depthwise part's kernel. */
  if (is_separable (li))
    {
      v[0] = (Var){ "depthwise_kernel", TRUE, 0, { 0 }, NULL, PLACE_COPY, FALSE, 0, 0, TRUE };
      v[1] = (Var){ "pointwise_kernel", TRUE,  4, { 1, 1, c, f }, params,
                    PLACE_CONV_KERNEL,  FALSE, 0, k * f };
      *n = 2;
      if (node->cfg.use_bias)
        v[(*n)++] = (Var){ "bias", TRUE, 1, { f }, params + k * f, PLACE_COPY, FALSE, 0, f };
      return TRUE;
    }
  /* A Keras Dense on an image is Kilt's 1x1 Conv2D; its kernel is (C, F). */
  if (li->class_name && g_str_equal (li->class_name, "Dense"))
    v[0] = (Var){ "kernel", TRUE, 2, { c, f }, params, PLACE_POINTWISE_KERNEL, FALSE, 0, k * f };
  else if (one_d)
    v[0] = (Var){ "kernel", TRUE, 3,    { node->cfg.kw, c, f }, params, PLACE_CONV1D_KERNEL,
                  FALSE,    0,    k * f };
  else
    v[0] = (Var){
      "kernel", TRUE, 4,    { node->cfg.kh, node->cfg.kw, c, f }, params, PLACE_CONV_KERNEL,
      FALSE,    0,    k * f
    };
  *n = 1;
  if (node->cfg.use_bias)
    v[(*n)++] = (Var){ "bias", TRUE, 1, { f }, params + k * f, PLACE_COPY, FALSE, 0, f };
  return TRUE;
}

/* Conv2DTranspose: Keras' (kh, kw, F, Cin) kernel is Kilt's (Cin, F, kh, kw), the layout
 * Conv2D's (kh, kw, C, F) -> (F, C, kh, kw) move gives with the last two axes' roles. */
static gboolean
expect_conv2d_transpose (const KiltNode *node, const LayerInfo *li, float *params, float *state,
                         Var *v, guint *n, GError **error)
{
  gsize c = node->in_shape[0].c, f = node->cfg.units, k = c * f * node->cfg.kh * node->cfg.kw;

  (void)li;
  (void)state;
  (void)error;
  v[0] = (Var){ "kernel", TRUE, 4, { node->cfg.kh, node->cfg.kw, f, c }, params, PLACE_CONV_KERNEL,
                FALSE,    0,    k };
  *n = 1;
  if (node->cfg.use_bias)
    v[(*n)++] = (Var){ "bias", TRUE, 1, { f }, params + k, PLACE_COPY, FALSE, 0, f };
  return TRUE;
}

static gboolean
expect_batch_norm (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
                   guint *n, GError **error)
{
  gsize c = node->in_shape[0].c;
  gboolean scale = !node->cfg.bn_no_scale, center = !node->cfg.bn_no_center;

  (void)li;
  /* gamma[C] (scale), then beta[C] (center): Keras leaves out of the file what the layer
   * leaves out, and so does Kilt of its parameters. Statistics are the node's state. */
  if (node->n_params != c * (scale + center) || node->n_state != 2 * c)
    {
      kilt_layer_set_error (error, node,
                            "holds %zu parameters and %zu statistics; the Keras weights map "
                            "expects %s%s mean and variance of %zu channels each",
                            node->n_params, node->n_state, scale ? "gamma, " : "",
                            center ? "beta, " : "", c);
      return FALSE;
    }
  v[0] = (Var){ "gamma", scale, 1, { c }, scale ? params : NULL, PLACE_COPY, TRUE, 1.0f, c };
  v[1] = (Var){ "beta",     center, 1,    { c }, center ? params + (scale ? c : 0) : NULL,
                PLACE_COPY, TRUE,   0.0f, c };
  v[2] = (Var){ "moving_mean", TRUE, 1, { c }, state, PLACE_COPY, TRUE, 0.0f, c };
  v[3] = (Var){ "moving_variance", TRUE, 1, { c }, state + c, PLACE_COPY, TRUE, 1.0f, c };
  *n = 4;
  return TRUE;
}

static gboolean
expect_depthwise (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
                  guint *n, GError **error)
{
  gsize c = node->in_shape[0].c, dm = node->cfg.units, k = c * dm * node->cfg.kh * node->cfg.kw;

  (void)state;
  (void)error;
  /* ConvNeXt's LayerScale, imported as a 1x1 depthwise kernel: Keras keeps gamma (C). */
  if (li && li->class_name && g_str_equal (li->class_name, "LayerScale"))
    {
      v[0] = (Var){ "gamma", TRUE, 1, { c }, params, PLACE_COPY, FALSE, 0, c };
      *n = 1;
      return TRUE;
    }
  /* A SeparableConv2D's depthwise part: the layer's first variable; its pointwise kernel and
   * bias follow in the same group, for the pointwise part. */
  if (is_separable (li) && li->part_of)
    {
      v[0] = (Var){ "depthwise_kernel",
                    TRUE,
                    4,
                    { node->cfg.kh, node->cfg.kw, c, dm },
                    params,
                    PLACE_DEPTHWISE_KERNEL,
                    FALSE,
                    0,
                    k };
      v[1] = (Var){ "pointwise_kernel", TRUE, 0, { 0 }, NULL, PLACE_COPY, FALSE, 0, 0, TRUE };
      *n = 2;
      if (li->use_bias)
        v[(*n)++] = (Var){ "bias", TRUE, 0, { 0 }, NULL, PLACE_COPY, FALSE, 0, 0, TRUE };
      return TRUE;
    }
  v[0] = (Var){ "depthwise_kernel",
                TRUE,
                4,
                { node->cfg.kh, node->cfg.kw, c, dm },
                params,
                PLACE_DEPTHWISE_KERNEL,
                FALSE,
                0,
                k };
  *n = 1;
  if (node->cfg.use_bias)
    v[(*n)++] = (Var){ "bias", TRUE, 1, { c * dm }, params + k, PLACE_COPY, FALSE, 0, c * dm };
  return TRUE;
}

static gboolean
expect_normalization (const KiltNode *node, const LayerInfo *li, float *params, float *state,
                      Var *v, guint *n, GError **error)
{
  gsize c = node->in_shape[0].c;

  (void)li;
  (void)params;
  /* Mean and variance given in the config (ConvNeXt's): constants, which Keras does not keep
   * as variables either. */
  if (node->cfg.norm_n > 0 && node->n_state == 0)
    {
      *n = 0;
      return TRUE;
    }
  if (node->n_state != 2 * c + 1)
    {
      kilt_layer_set_error (error, node,
                            "holds %zu statistics; the Keras weights map expects mean, variance "
                            "and count (%zu)",
                            node->n_state, 2 * c + 1);
      return FALSE;
    }
  /* Keras' adapted statistics, and its sample count (a scalar). */
  v[0] = (Var){ "mean", TRUE, 1, { c }, state, PLACE_COPY, TRUE, 0.0f, c };
  v[1] = (Var){ "variance", TRUE, 1, { c }, state + c, PLACE_COPY, TRUE, 1.0f, c };
  v[2] = (Var){ "count", TRUE, 0, { 0 }, state + 2 * c, PLACE_COPY, FALSE, 0.0f, 1 };
  *n = 3;
  return TRUE;
}

/* LayerNormalization: gamma[C] (scale), then beta[C] (center), as Kilt keeps them. */
static gboolean
expect_layer_norm (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
                   guint *n, GError **error)
{
  gsize c = node->in_shape[0].c;
  gboolean scale = !node->cfg.bn_no_scale, center = !node->cfg.bn_no_center;

  (void)li;
  (void)state;
  (void)error;
  v[0] = (Var){ "gamma", scale, 1, { c }, scale ? params : NULL, PLACE_COPY, FALSE, 1.0f, c };
  v[1] = (Var){ "beta",     center, 1,    { c }, center ? params + (scale ? c : 0) : NULL,
                PLACE_COPY, FALSE,  0.0f, c };
  *n = 2;
  return TRUE;
}

/* Embedding: `embeddings` (input_dim, output_dim), row r the vector of id r, as Kilt keeps it. */
static gboolean
expect_embedding (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
                  guint *n, GError **error)
{
  gsize rows = node->cfg.input_dim, dim = node->cfg.units;

  (void)li;
  (void)state;
  (void)error;
  v[0] = (Var){ "embeddings", TRUE, 2, { rows, dim }, params, PLACE_COPY, FALSE, 0, rows * dim };
  *n = 1;
  return TRUE;
}

/* LSTM, GRU: Kilt keeps Keras' kernel (features, G units), recurrent_kernel (units, G units)
 * and bias (G units, or a reset_after GRU's (2, 3 units)) as they are. */
static gboolean
expect_rnn (const KiltNode *node, const LayerInfo *li, float *params, float *state, Var *v,
            guint *n, GError **error)
{
  gsize f = node->in_shape[0].c, u = node->cfg.units,
        gu = (node->type == KILT_LAYER_LSTM ? 4 : 3) * u;
  gboolean two = node->type == KILT_LAYER_GRU && node->cfg.reset_after;

  (void)li;
  (void)state;
  (void)error;
  v[0] = (Var){ "kernel", TRUE, 2, { f, gu }, params, PLACE_COPY, FALSE, 0, f * gu };
  v[1] = (Var){ "recurrent_kernel", TRUE,  2, { u, gu }, params + f * gu,
                PLACE_COPY,         FALSE, 0, u * gu };
  *n = 2;
  if (node->cfg.use_bias && two)
    v[(*n)++]
        = (Var){ "bias", TRUE, 2, { 2, gu }, params + (f + u) * gu, PLACE_COPY, FALSE, 0, 2 * gu };
  else if (node->cfg.use_bias)
    v[(*n)++] = (Var){ "bias", TRUE, 1, { gu }, params + (f + u) * gu, PLACE_COPY, FALSE, 0, gu };
  return TRUE;
}

/* New layer types with weights add an entry here. A type absent from the table must have no
 * parameters or statistics, or the model cannot take Keras weights. */
static const struct
{
  KiltLayerType type;
  ExpectFunc expect;
} weight_table[] = {
  { KILT_LAYER_DENSE, expect_dense },
  { KILT_LAYER_CONV2D, expect_conv2d },
  { KILT_LAYER_CONV2D_TRANSPOSE, expect_conv2d_transpose },
  { KILT_LAYER_BATCH_NORM, expect_batch_norm },
  { KILT_LAYER_DEPTHWISE_CONV2D, expect_depthwise },
  { KILT_LAYER_NORMALIZATION, expect_normalization },
  { KILT_LAYER_LAYER_NORM, expect_layer_norm },
  { KILT_LAYER_EMBEDDING, expect_embedding },
  { KILT_LAYER_LSTM, expect_rnn },
  { KILT_LAYER_GRU, expect_rnn },
};

ExpectFunc
kilt_keras_find_expect (KiltLayerType type)
{
  for (gsize i = 0; i < G_N_ELEMENTS (weight_table); i++)
    if (weight_table[i].type == type)
      return weight_table[i].expect;
  return NULL;
}

/* ---- feature order after a Flatten ---------------------------------------------------------- */

/* perm[node][k]: for a vector that came from flattening a channels-last image, the Keras
 * index of Kilt's feature k (Keras flattens (h, w, c), Kilt (c, h, w)); NULL when the orders
 * agree. Followed through layers that keep the order of their features. */
guint **
kilt_keras_feature_orders (KiltModel *model, gboolean channels_first, const char *path,
                           GError **error)
{
  guint n = kilt_model_n_nodes (model);
  guint **perm = g_new0 (guint *, n + 1);

  if (channels_first)
    return perm;
  for (guint i = 0; i < n; i++)
    {
      KiltNode *node = kilt_model_node (model, i);
      const KiltShape *in = &node->in_shape[0];
      guint *p0 = node->n_inputs ? perm[node->inputs[0]] : NULL;
      switch (node->type)
        {
          case KILT_LAYER_FLATTEN:
            if (p0)
              perm[i] = g_memdup2 (p0, sizeof (guint) * kilt_shape_size (in));
            else if (in->h * in->w > 1 && in->c > 1)
              {
                gsize hw = (gsize)in->h * in->w;
                perm[i] = g_new (guint, kilt_shape_size (in));
                for (gsize c = 0; c < in->c; c++)
                  for (gsize s = 0; s < hw; s++)
                    perm[i][c * hw + s] = (guint)(s * in->c + c);
              }
            break;
          case KILT_LAYER_DROPOUT:
          case KILT_LAYER_ACTIVATION:
          case KILT_LAYER_BATCH_NORM:
            if (p0)
              perm[i] = g_memdup2 (p0, sizeof (guint) * kilt_shape_size (in));
            break;
          case KILT_LAYER_ADD:
            for (guint j = 1; j < node->n_inputs; j++)
              {
                guint *pj = perm[node->inputs[j]];
                if ((p0 == NULL) != (pj == NULL)
                    || (p0 && memcmp (p0, pj, sizeof (guint) * kilt_shape_size (in)) != 0))
                  {
                    set_error (error, path,
                               "layer %s adds vectors flattened from images of other shapes; "
                               "their Keras feature order cannot be mapped",
                               node->name);
                    for (guint k = 0; k < n; k++)
                      g_free (perm[k]);
                    g_free (perm);
                    return NULL;
                  }
              }
            if (p0)
              perm[i] = g_memdup2 (p0, sizeof (guint) * kilt_shape_size (in));
            break;
          case KILT_LAYER_CONCATENATE:
            {
              gboolean any = FALSE;
              gsize off = 0;
              for (guint j = 0; j < node->n_inputs; j++)
                any |= perm[node->inputs[j]] != NULL;
              if (!any || node->out_shape.h * node->out_shape.w != 1)
                break;
              perm[i] = g_new (guint, kilt_shape_size (&node->out_shape));
              for (guint j = 0; j < node->n_inputs; j++)
                {
                  gsize m = kilt_shape_size (&node->in_shape[j]);
                  guint *pj = perm[node->inputs[j]];
                  for (gsize k = 0; k < m; k++)
                    perm[i][off + k] = (guint)(off + (pj ? pj[k] : k));
                  off += m;
                }
              break;
            }
          default:
            break;
        }
    }
  return perm;
}

void
kilt_keras_free_orders (KiltModel *model, guint **perm)
{
  if (perm == NULL)
    return;
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    g_free (perm[i]);
  g_free (perm);
}

void
kilt_keras_place (const Var *v, float *keras, float *kilt, const guint *perm, gboolean to_kilt)
{
#define MOVE(ke, ki)                                                                               \
  do                                                                                               \
    {                                                                                              \
      if (to_kilt)                                                                                 \
        kilt[ki] = keras[ke];                                                                      \
      else                                                                                         \
        keras[ke] = kilt[ki];                                                                      \
    }                                                                                              \
  while (0)
  switch (v->place)
    {
      case PLACE_COPY:
        for (gsize i = 0; i < v->n; i++)
          MOVE (v->permute && perm ? perm[i] : i, i);
        break;
      case PLACE_DENSE_KERNEL:
        {
          gsize in = v->dims[0], units = v->dims[1];
          for (gsize k = 0; k < in; k++)
            for (gsize u = 0; u < units; u++)
              MOVE ((perm ? perm[k] : k) * units + u, k * units + u);
          break;
        }
      case PLACE_CONV_KERNEL:
        {
          gsize kh = v->dims[0], kw = v->dims[1], c = v->dims[2], fo = v->dims[3];
          for (gsize i = 0; i < kh; i++)
            for (gsize j = 0; j < kw; j++)
              for (gsize ci = 0; ci < c; ci++)
                for (gsize o = 0; o < fo; o++)
                  MOVE (((i * kw + j) * c + ci) * fo + o, o * c * kh * kw + (ci * kh + i) * kw + j);
          break;
        }
      case PLACE_POINTWISE_KERNEL:
        {
          gsize c = v->dims[0], fo = v->dims[1];
          for (gsize ci = 0; ci < c; ci++)
            for (gsize o = 0; o < fo; o++)
              MOVE (ci * fo + o, o * c + ci);
          break;
        }
      case PLACE_CONV1D_KERNEL:
        {
          gsize kw = v->dims[0], c = v->dims[1], fo = v->dims[2];
          for (gsize j = 0; j < kw; j++)
            for (gsize ci = 0; ci < c; ci++)
              for (gsize o = 0; o < fo; o++)
                MOVE ((j * c + ci) * fo + o, (o * c + ci) * kw + j);
          break;
        }
      case PLACE_DEPTHWISE_KERNEL:
        {
          gsize kh = v->dims[0], kw = v->dims[1], c = v->dims[2], dm = v->dims[3];
          for (gsize i = 0; i < kh; i++)
            for (gsize j = 0; j < kw; j++)
              for (gsize ci = 0; ci < c; ci++)
                for (gsize m = 0; m < dm; m++)
                  MOVE (((i * kw + j) * c + ci) * dm + m, ((ci * dm + m) * kh + i) * kw + j);
          break;
        }
    }
#undef MOVE
}
