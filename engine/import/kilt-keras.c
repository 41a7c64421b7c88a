/* Import of Keras model.to_json () files (Keras 2 / tf.keras, Keras 3, old bare-list files):
 * the file's generations, its layer graph and its inputs. Layers convert in kilt-keras-layers.c. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras"

#include "kilt-keras-private.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"
#include "kilt-model-json.h"

/* The per-sample input shape from a [null, ...] batch shape (or [...] without the batch). */
static gboolean
keras_add_input (Import *imp, const char *name, JsonArray *shape, gboolean has_batch,
                 GError **error)
{
  guint n = json_array_get_length (shape), first = has_batch ? 1 : 0;
  guint dims[3] = { 0 };
  KiltShape s;
  guint rank;

  if (n < first + 1 || n > first + 3)
    {
      keras_set_error (
          error, imp,
          "input shape with %u dimensions per sample is not supported; Kilt takes images "
          "(height, width, channels), sequences (steps, channels) or vectors (features)",
          n - first);
      return FALSE;
    }
  for (guint i = first; i < n; i++)
    {
      JsonNode *d = json_array_get_element (shape, i);
      if (JSON_NODE_HOLDS_NULL (d))
        {
          keras_set_error (error, imp,
                           "input dimension %u is None; Kilt needs fixed input sizes (set them in "
                           "the Input layer)",
                           i);
          return FALSE;
        }
      if (!keras_get_int (imp, d, "input dimension", 1, &dims[i - first], error))
        return FALSE;
    }
  if (n - first == 1)
    {
      s = (KiltShape){ dims[0], 1, 1 };
      rank = 2;
    }
  else if (n - first == 2)
    {
      /* A sequence (steps, channels) is Kilt's (channels, 1, steps): 1-D layers are the 2-D
       * ones over a single row. */
      if (imp->format == FORMAT_CHANNELS_FIRST)
        s = (KiltShape){ dims[0], 1, dims[1] };
      else
        s = (KiltShape){ dims[1], 1, dims[0] };
      rank = 3;
    }
  else
    {
      if (imp->format == FORMAT_CHANNELS_FIRST)
        s = (KiltShape){ dims[0], dims[1], dims[2] };
      else
        s = (KiltShape){ dims[2], dims[0], dims[1] };
      rank = 4;
    }
  kilt_model_add_input (imp->model, name, s);
  g_array_append_val (imp->rank, rank);
  {
    KerasMask none = keras_mask_none ();
    g_array_append_val (imp->mask, none);
  }
  g_hash_table_insert (imp->node_of, (gpointer)name, GUINT_TO_POINTER (1));
  return TRUE;
}

/* The batch shape a layer config declares, in any generation's spelling. */
static JsonArray *
keras_declared_shape (JsonObject *cfg, gboolean *has_batch)
{
  JsonArray *a;

  *has_batch = TRUE;
  if ((a = keras_member_array (cfg, "batch_shape"))
      || (a = keras_member_array (cfg, "batch_input_shape")))
    return a;
  *has_batch = FALSE;
  return keras_member_array (cfg, "input_shape");
}

/* ---- model structure ---------------------------------------------------------------------- */

static void
entry_clear (gpointer data)
{
  Entry *e = data;

  g_clear_pointer (&e->inbound, g_ptr_array_unref);
}

static gboolean
read_entry (Import *imp, JsonNode *node, guint index, Entry *e, GError **error)
{
  JsonObject *o;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      keras_set_error (error, imp, "layer %u is not an object with class_name and config",
                       index + 1);
      return FALSE;
    }
  o = json_node_get_object (node);
  e->class_name = keras_member_string (o, "class_name");
  e->config = keras_member_object (o, "config");
  e->layer = o;
  e->name = keras_member_string (o, "name");
  if (e->name == NULL)
    e->name = keras_member_string (e->config, "name");
  if (e->class_name == NULL || e->config == NULL)
    {
      keras_set_error (error, imp, "layer %u has no class_name and config", index + 1);
      return FALSE;
    }
  e->position = index + 1;
  e->named = e->name != NULL;
  if (e->name == NULL)
    e->name = g_intern_string (e->class_name); /* names are optional in hand-written files */
  return TRUE;
}

/* Keras 3 call arguments: collect every keras_history name, in order. */
static void
collect_history (JsonNode *n, GPtrArray *out)
{
  if (n == NULL)
    return;
  if (JSON_NODE_HOLDS_ARRAY (n))
    {
      JsonArray *a = json_node_get_array (n);
      for (guint i = 0; i < json_array_get_length (a); i++)
        collect_history (json_array_get_element (a, i), out);
    }
  else if (JSON_NODE_HOLDS_OBJECT (n))
    {
      JsonObject *o = json_node_get_object (n);
      JsonArray *h = keras_member_array (keras_member_object (o, "config"), "keras_history");
      const char *cls = keras_member_string (o, "class_name");
      if (cls && g_str_equal (cls, "__keras_tensor__") && h && json_array_get_length (h) >= 1)
        g_ptr_array_add (out, (gpointer)json_array_get_string_element (h, 0));
    }
}

static gboolean
read_inbound (Import *imp, JsonObject *layer, Entry *e, GError **error)
{
  JsonArray *calls = keras_member_array (layer, "inbound_nodes");

  e->inbound = g_ptr_array_new ();
  e->n_calls = calls ? json_array_get_length (calls) : 0;
  if (e->n_calls == 0)
    return TRUE;
  if (e->n_calls > 1)
    {
      imp->cur = e;
      keras_set_error (error, imp, "the layer is called %u times; shared layers are not supported",
                       e->n_calls);
      return FALSE;
    }
  {
    JsonNode *call = json_array_get_element (calls, 0);
    if (JSON_NODE_HOLDS_OBJECT (call)) /* Keras 3: {"args": [...], "kwargs": {...}} */
      collect_history (keras_member (json_node_get_object (call), "args"), e->inbound);
    else if (JSON_NODE_HOLDS_ARRAY (call)) /* Keras 2: [[name, node, tensor, kwargs], ...] */
      {
        JsonArray *a = json_node_get_array (call);
        /* tf.keras' TFOpLambda writes its one call unwrapped: [name, node, tensor, kwargs]. */
        gboolean bare = json_array_get_length (a) > 0
                        && keras_node_is (json_array_get_element (a, 0), G_TYPE_STRING);
        for (guint i = 0; i < (bare ? 1 : json_array_get_length (a)); i++)
          {
            JsonNode *t = bare ? call : json_array_get_element (a, i);
            JsonArray *ta = JSON_NODE_HOLDS_ARRAY (t) ? json_node_get_array (t) : NULL;
            if (ta == NULL || json_array_get_length (ta) < 3
                || !keras_node_is (json_array_get_element (ta, 0), G_TYPE_STRING))
              {
                imp->cur = e;
                keras_set_error (error, imp, "inbound_nodes entry %u is not [layer, node, tensor]",
                                 i);
                return FALSE;
              }
            if (json_array_get_int_element (ta, 2) != 0)
              {
                imp->cur = e;
                keras_set_error (error, imp,
                                 "reads output %" G_GINT64_FORMAT " of layer %s; layers "
                                 "with several outputs are not supported",
                                 json_array_get_int_element (ta, 2),
                                 json_array_get_string_element (ta, 0));
                return FALSE;
              }
            g_ptr_array_add (e->inbound, (gpointer)json_array_get_string_element (ta, 0));
            /* x + y of two tensors (tf.keras' ConvNeXt): the TFOpLambda's kwargs give y as
             * [layer, node, tensor]; a number there is a constant (convert_scalar_op). */
            if (bare && json_array_get_length (ta) == 4
                && JSON_NODE_HOLDS_OBJECT (json_array_get_element (ta, 3)))
              {
                JsonNode *y
                    = keras_member (json_node_get_object (json_array_get_element (ta, 3)), "y");
                JsonArray *ya = y && JSON_NODE_HOLDS_ARRAY (y) ? json_node_get_array (y) : NULL;
                if (ya && json_array_get_length (ya) >= 3
                    && keras_node_is (json_array_get_element (ya, 0), G_TYPE_STRING))
                  {
                    if (json_array_get_int_element (ya, 2) != 0)
                      {
                        imp->cur = e;
                        keras_set_error (error, imp,
                                         "reads output %" G_GINT64_FORMAT " of layer %s; layers "
                                         "with several outputs are not supported",
                                         json_array_get_int_element (ya, 2),
                                         json_array_get_string_element (ya, 0));
                        return FALSE;
                      }
                    g_ptr_array_add (e->inbound, (gpointer)json_array_get_string_element (ya, 0));
                  }
              }
          }
      }
  }
  if (e->inbound->len == 0)
    {
      imp->cur = e;
      keras_set_error (error, imp, "inbound_nodes names no input layer");
      return FALSE;
    }
  return TRUE;
}

/* Reads every entry of @layers into @entries and indexes them by name in @by_name. Keras
 * refuses two layers of one name; a file that has them was edited, and reading one name as
 * either layer would quietly rewire the graph. */
static gboolean
read_entries (Import *imp, JsonArray *layers, gboolean functional, GArray *entries,
              GHashTable *by_name, GError **error)
{
  guint n = json_array_get_length (layers);

  /* Refused before anything is converted, so a hostile file costs one pass of json-glib. */
  if (n > KILT_MODEL_MAX_LAYERS + 1)
    {
      keras_set_error (error, imp, "the model has %u layers; Kilt takes at most %u", n,
                       KILT_MODEL_MAX_LAYERS);
      return FALSE;
    }
  g_array_set_size (entries, n);
  for (guint i = 0; i < n; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i), *first;
      JsonNode *node = json_array_get_element (layers, i);

      if (!read_entry (imp, node, i, e, error)
          || (functional && !read_inbound (imp, json_node_get_object (node), e, error)))
        return FALSE;
      if ((first = g_hash_table_lookup (by_name, e->name)))
        {
          imp->cur = NULL;
          if (first->named && e->named)
            keras_set_error (
                error, imp,
                "layers %u (%s) and %u (%s) are both named \"%s\"; layer names must be "
                "unique",
                first->position, first->class_name, e->position, e->class_name, e->name);
          else
            keras_set_error (
                error, imp,
                "layers %u and %u are both called \"%s\" (a layer without a name takes "
                "its class name); give them unique names",
                first->position, e->position, e->name);
          return FALSE;
        }
      g_hash_table_insert (by_name, (gpointer)e->name, e);
    }
  return TRUE;
}

/* The single layer name of input_layers / output_layers: [[name, 0, 0]] or [name, 0, 0]. */
static const char *
endpoint (Import *imp, JsonObject *cfg, const char *key, GError **error)
{
  JsonArray *a = keras_member_array (cfg, key);
  JsonNode *first;

  if (a == NULL || json_array_get_length (a) == 0)
    {
      keras_set_error (error, imp, "the functional model has no %s", key);
      return NULL;
    }
  first = json_array_get_element (a, 0);
  if (keras_node_is (first, G_TYPE_STRING))
    return json_node_get_string (first);
  if (json_array_get_length (a) > 1)
    {
      keras_set_error (error, imp, "the model has %u %s; Kilt models have one input and one output",
                       json_array_get_length (a), key);
      return NULL;
    }
  if (JSON_NODE_HOLDS_ARRAY (first) && json_array_get_length (json_node_get_array (first)) >= 1
      && keras_node_is (json_array_get_element (json_node_get_array (first), 0), G_TYPE_STRING))
    return json_array_get_string_element (json_node_get_array (first), 0);
  keras_set_error (error, imp, "%s is not [[layer, node, tensor]]", key);
  return NULL;
}

/* Converts one entry whose inputs are all converted. */
static gboolean
convert_entry (Import *imp, Entry *e, GError **error)
{
  guint inputs[KILT_MAX_INPUTS];

  imp->cur = e;
  for (guint i = 0; i < e->inbound->len; i++)
    inputs[i]
        = GPOINTER_TO_UINT (g_hash_table_lookup (imp->node_of, g_ptr_array_index (e->inbound, i)))
          - 1;
  if (g_str_equal (e->class_name, "InputLayer"))
    {
      gboolean has_batch;
      JsonArray *shape = keras_declared_shape (e->config, &has_batch);
      if (kilt_model_n_nodes (imp->model) > 0)
        {
          keras_set_error (error, imp,
                           "the output depends on a second input; Kilt models have one");
          return FALSE;
        }
      if (shape == NULL)
        {
          keras_set_error (error, imp, "expected batch_shape or batch_input_shape");
          return FALSE;
        }
      if (!keras_add_input (imp, e->name, shape, has_batch, error))
        return FALSE;
    }
  else if (e->inbound->len == 0)
    {
      keras_set_error (error, imp, "reads nothing (no inbound_nodes)");
      return FALSE;
    }
  else if (!keras_convert_layer (imp, e, e->inbound->len, inputs, error))
    return FALSE;
  e->state = 2;
  return TRUE;
}

/* Marks @e as on the path being followed, after checking it can be. */
static gboolean
enter (Import *imp, Entry *e, GError **error)
{
  imp->cur = e;
  if (e->state == 1)
    {
      keras_set_error (error, imp, "the graph has a cycle through this layer");
      return FALSE;
    }
  if (e->inbound->len > KILT_MAX_INPUTS)
    {
      keras_set_error (error, imp, "has %u inputs; Kilt takes at most %d", e->inbound->len,
                       KILT_MAX_INPUTS);
      return FALSE;
    }
  e->state = 1;
  return TRUE;
}

typedef struct
{
  Entry *entry;
  guint next; /* the next of its inbound layers to follow */
} Frame;

/* Converts every entry @out depends on, then @out: depth first, post-order, so the Kilt order
 * is topological and ends with the output. An explicit stack, since a chain of layers is as
 * deep as it is long and would overflow the thread's stack by recursion. */
static gboolean
visit (Import *imp, GHashTable *by_name, Entry *out, GError **error)
{
  g_autoptr (GArray) stack = g_array_new (FALSE, FALSE, sizeof (Frame));
  Frame f = { out, 0 };

  if (!enter (imp, out, error))
    return FALSE;
  g_array_append_val (stack, f);
  while (stack->len > 0)
    {
      Frame *top = &g_array_index (stack, Frame, stack->len - 1);
      Entry *e = top->entry, *src;
      const char *name;

      if (top->next == e->inbound->len)
        {
          g_array_set_size (stack, stack->len - 1);
          if (!convert_entry (imp, e, error))
            return FALSE;
          continue;
        }
      name = g_ptr_array_index (e->inbound, top->next++);
      src = g_hash_table_lookup (by_name, name);
      if (src == NULL)
        {
          imp->cur = e;
          keras_set_error (error, imp, "reads layer \"%s\", which the file does not have", name);
          return FALSE;
        }
      if (src->state == 2)
        continue;
      if (!enter (imp, src, error))
        return FALSE;
      f = (Frame){ src, 0 };
      g_array_append_val (stack, f); /* may move the array: @top is not used after this */
    }
  return TRUE;
}

static gboolean
import_functional (Import *imp, JsonObject *config, GError **error)
{
  JsonArray *layers = keras_member_array (config, "layers");
  g_autoptr (GArray) entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  g_autoptr (GHashTable) by_name = g_hash_table_new (g_str_hash, g_str_equal);
  const char *in_name, *out_name;
  Entry *out;

  g_array_set_clear_func (entries, entry_clear);
  if (layers == NULL)
    {
      keras_set_error (error, imp, "the model config has no layers list");
      return FALSE;
    }
  if (!read_entries (imp, layers, TRUE, entries, by_name, error))
    return FALSE;
  if (!(in_name = endpoint (imp, config, "input_layers", error))
      || !(out_name = endpoint (imp, config, "output_layers", error)))
    return FALSE;
  out = g_hash_table_lookup (by_name, out_name);
  if (out == NULL || g_hash_table_lookup (by_name, in_name) == NULL)
    {
      keras_set_error (error, imp, "the model's input %s or output %s is not among its layers",
                       in_name, out_name);
      return FALSE;
    }
  if (!visit (imp, by_name, out, error))
    return FALSE;
  imp->cur = NULL;
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      if (e->state != 2)
        keras_add_note (imp, "layer %s (%s) does not lead to the output; left out", e->name,
                        e->class_name);
    }
  return TRUE;
}

static gboolean
import_sequential (Import *imp, JsonArray *layers, JsonObject *root, GError **error)
{
  g_autoptr (GArray) entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  g_autoptr (GHashTable) by_name = g_hash_table_new (g_str_hash, g_str_equal);
  guint start = 0;

  g_array_set_clear_func (entries, entry_clear);
  if (!read_entries (imp, layers, FALSE, entries, by_name, error))
    return FALSE;
  if (entries->len == 0)
    {
      keras_set_error (error, imp, "the Sequential model has no layers");
      return FALSE;
    }

  {
    Entry *first = &g_array_index (entries, Entry, 0);
    gboolean has_batch;
    JsonArray *shape = keras_declared_shape (first->config, &has_batch);
    const char *in_name = "input";

    imp->cur = first;
    if (g_str_equal (first->class_name, "InputLayer"))
      {
        in_name = first->name;
        start = 1;
      }
    if (shape == NULL)
      {
        /* Keras 3 keeps a Sequential's input in the model's build_config. */
        shape = keras_member_array (keras_member_object (root, "build_config"), "input_shape");
        has_batch = TRUE;
      }
    if (shape == NULL)
      {
        keras_set_error (error, imp,
                         "the first layer declares no input shape (batch_input_shape); "
                         "build the model with an Input before saving it");
        return FALSE;
      }
    if (!keras_add_input (imp, in_name, shape, has_batch, error))
      return FALSE;
  }
  for (guint i = start; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      guint prev = kilt_model_n_nodes (imp->model) - 1;
      imp->cur = e;
      if (g_str_equal (e->class_name, "InputLayer"))
        {
          keras_set_error (error, imp, "an InputLayer in the middle of a Sequential model");
          return FALSE;
        }
      if (!keras_convert_layer (imp, e, 1, &prev, error))
        return FALSE;
    }
  imp->cur = NULL;
  return TRUE;
}

/* ---- nested models ------------------------------------------------------------------------ */

static gboolean
is_model_class (const char *cls)
{
  return g_str_equal (cls, "Sequential") || g_str_equal (cls, "Functional")
         || g_str_equal (cls, "Model");
}

/* Counts, in imp->name_uses, the names of the layers that become Kilt nodes, at every depth:
 * a nested model's own name does not (its layers do), nor does a nested model's InputLayer
 * (the outer model's tensor feeds it). */
static void
count_names (Import *imp, JsonArray *layers, guint depth)
{
  if (layers == NULL || depth > KILT_KERAS_MAX_NESTING)
    return;
  for (guint i = 0; i < json_array_get_length (layers); i++)
    {
      JsonNode *node = json_array_get_element (layers, i);
      JsonObject *o, *cfg;
      const char *cls, *name;
      guint uses;

      if (!JSON_NODE_HOLDS_OBJECT (node))
        continue;
      o = json_node_get_object (node);
      cls = keras_member_string (o, "class_name");
      cfg = keras_member_object (o, "config");
      if (cls == NULL || cfg == NULL)
        continue;
      if (is_model_class (cls))
        {
          count_names (imp, keras_member_array (cfg, "layers"), depth + 1);
          continue;
        }
      if (depth > 0 && g_str_equal (cls, "InputLayer"))
        continue;
      if (!(name = keras_member_string (o, "name")) && !(name = keras_member_string (cfg, "name")))
        name = cls;
      uses = GPOINTER_TO_UINT (g_hash_table_lookup (imp->name_uses, name));
      g_hash_table_insert (imp->name_uses, (gpointer)name, GUINT_TO_POINTER (uses + 1));
    }
}

/* Inside nested model @scope, a layer whose name another layer of the file also has becomes
 * "SCOPE/NAME", and the layers reading it read the new name. */
static void
rename_clashes (Import *imp, const char *scope, GArray *entries, GHashTable *by_name)
{
  g_autoptr (GHashTable) renamed = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      g_autofree char *full = NULL;

      if (g_str_equal (e->class_name, "InputLayer") || is_model_class (e->class_name)
          || GPOINTER_TO_UINT (g_hash_table_lookup (imp->name_uses, e->name)) < 2)
        continue;
      full = g_strdup_printf ("%s/%s", scope, e->name);
      imp->cur = NULL;
      keras_add_note (imp,
                      "layer %s (%s) of nested model %s is named %s, since another layer of "
                      "the file is also named %s",
                      e->name, e->class_name, scope, full, e->name);
      g_hash_table_insert (renamed, (gpointer)e->name, (gpointer)g_intern_string (full));
      /* The old name stays too: the model's input_layers and output_layers use it. */
      e->name = g_intern_string (full);
      g_hash_table_insert (by_name, (gpointer)e->name, e);
    }
  if (g_hash_table_size (renamed) == 0)
    return;
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      for (guint j = 0; e->inbound && j < e->inbound->len; j++)
        {
          const char *to = g_hash_table_lookup (renamed, g_ptr_array_index (e->inbound, j));
          if (to)
            g_ptr_array_index (e->inbound, j) = (gpointer)to;
        }
    }
}

static gboolean
nested_functional (Import *imp, const Entry *model, GArray *entries, GHashTable *by_name,
                   guint input, guint *output, GError **error)
{
  const char *in_name, *out_name;
  Entry *in, *out;

  imp->cur = model;
  if (!(in_name = endpoint (imp, model->config, "input_layers", error))
      || !(out_name = endpoint (imp, model->config, "output_layers", error)))
    return FALSE;
  in = g_hash_table_lookup (by_name, in_name);
  out = g_hash_table_lookup (by_name, out_name);
  if (in == NULL || out == NULL || !g_str_equal (in->class_name, "InputLayer"))
    {
      keras_set_error (error, imp,
                       "the nested model's input %s or output %s is not among its layers", in_name,
                       out_name);
      return FALSE;
    }
  /* The nested model's input is what the outer model feeds it. */
  in->state = 2;
  g_hash_table_insert (imp->node_of, (gpointer)in->name, GUINT_TO_POINTER (input + 1));
  if (!visit (imp, by_name, out, error))
    return FALSE;
  imp->cur = NULL;
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      if (e->state != 2)
        keras_add_note (imp,
                        "layer %s (%s) of nested model %s does not lead to its output; left out",
                        e->name, e->class_name, model->name);
    }
  *output = GPOINTER_TO_UINT (g_hash_table_lookup (imp->node_of, out->name)) - 1;
  return TRUE;
}

static gboolean
nested_sequential (Import *imp, GArray *entries, guint input, guint *output, GError **error)
{
  guint prev = input;

  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      imp->cur = e;
      if (g_str_equal (e->class_name, "InputLayer"))
        {
          if (i == 0)
            continue; /* fed by the outer model */
          keras_set_error (error, imp, "an InputLayer in the middle of a Sequential model");
          return FALSE;
        }
      if (!keras_convert_layer (imp, e, 1, &prev, error))
        return FALSE;
      prev = GPOINTER_TO_UINT (g_hash_table_lookup (imp->node_of, e->name)) - 1;
    }
  *output = prev;
  return TRUE;
}

gboolean
keras_convert_nested (Import *imp, const Entry *e, guint n_inputs, const guint *inputs,
                      GError **error)
{
  gboolean functional = !g_str_equal (e->class_name, "Sequential");
  JsonArray *layers = keras_member_array (e->config, "layers");
  g_autoptr (GArray) entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  g_autoptr (GHashTable) by_name = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) node_of = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTable *outer = imp->node_of;
  guint output = 0;
  gboolean ok;

  g_array_set_clear_func (entries, entry_clear);
  imp->cur = e;
  if (n_inputs != 1)
    {
      keras_set_error (error, imp, "the nested model reads %u inputs; Kilt takes one", n_inputs);
      return FALSE;
    }
  if (imp->depth >= KILT_KERAS_MAX_NESTING)
    {
      keras_set_error (error, imp, "models nest more than %d deep", KILT_KERAS_MAX_NESTING);
      return FALSE;
    }
  if (layers == NULL || json_array_get_length (layers) == 0)
    {
      keras_set_error (error, imp, "the nested model has no layers list");
      return FALSE;
    }
  if (!read_entries (imp, layers, functional, entries, by_name, error))
    return FALSE;
  rename_clashes (imp, e->name, entries, by_name);
  /* The nested model's layer names are its own: look them up in a table of their own. */
  imp->node_of = node_of;
  imp->depth++;
  ok = functional ? nested_functional (imp, e, entries, by_name, inputs[0], &output, error)
                  : nested_sequential (imp, entries, inputs[0], &output, error);
  imp->depth--;
  imp->node_of = outer;
  imp->cur = e;
  if (!ok)
    return FALSE;
  g_hash_table_insert (imp->node_of, (gpointer)e->name, GUINT_TO_POINTER (output + 1));
  return TRUE;
}

/* The model's layout, from the first layer that states one. */
static gboolean
scan_format (Import *imp, JsonNode *n, GError **error)
{
  if (n == NULL)
    return TRUE;
  if (JSON_NODE_HOLDS_ARRAY (n))
    {
      JsonArray *a = json_node_get_array (n);
      for (guint i = 0; i < json_array_get_length (a); i++)
        if (!scan_format (imp, json_array_get_element (a, i), error))
          return FALSE;
    }
  else if (JSON_NODE_HOLDS_OBJECT (n))
    {
      JsonObject *o = json_node_get_object (n);
      const char *f = keras_member_string (o, "data_format");
      if (f && imp->format == FORMAT_UNKNOWN)
        imp->format
            = g_str_equal (f, "channels_first") ? FORMAT_CHANNELS_FIRST : FORMAT_CHANNELS_LAST;
      if (!scan_format (imp, keras_member (o, "layers"), error)
          || !scan_format (imp, keras_member (o, "config"), error))
        return FALSE;
    }
  return TRUE;
}

KiltModel *
kilt_keras_load_data (const char *data, gssize length, const char *source, KiltLossType loss,
                      char **notes, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (KiltModel) model = NULL;
  g_autoptr (GArray) rank = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr (GArray) mask = g_array_new (FALSE, FALSE, sizeof (KerasMask));
  g_autoptr (GHashTable) node_of = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GString) note_text = g_string_new (NULL);
  g_autoptr (GHashTable) name_uses = g_hash_table_new (g_str_hash, g_str_equal);
  Import imp = { source ? source : "Keras model",
                 NULL,
                 note_text,
                 FORMAT_UNKNOWN,
                 rank,
                 node_of,
                 NULL,
                 FALSE,
                 name_uses,
                 0,
                 mask,
                 { G_MAXUINT, KILT_STEP_MASK_NONE, 0 } };
  JsonObject *root;
  JsonNode *config;
  const char *cls, *name = NULL;
  gboolean ok;

  g_return_val_if_fail (data != NULL, NULL);
  if (notes)
    *notes = NULL;
  /* Before json-glib, whose parser recurses per level and whose strings stop at a NUL. */
  if (!kilt_json_check_text (data, length, &local))
    {
      keras_set_error (error, &imp, "%s", local->message);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, data, length, &local))
    {
      g_autofree char *msg = kilt_json_clean_message (local->message);
      keras_set_error (error, &imp, "not valid JSON: %s", msg);
      return NULL;
    }
  if (json_parser_get_root (parser) == NULL
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))
      || !(cls = keras_member_string (root = json_node_get_object (json_parser_get_root (parser)),
                                      "class_name")))
    {
      keras_set_error (error, &imp,
                       "not a Keras model: expected an object with class_name and "
                       "config, as model.to_json () writes");
      return NULL;
    }
  /* Keras 3 writes "module" beside class_name; Keras 2 a keras_version of 2.x. */
  {
    const char *version = keras_member_string (root, "keras_version");
    imp.keras3 = keras_member (root, "module") != NULL || (version && version[0] == '3');
  }
  config = keras_member (root, "config");
  if (config == NULL)
    {
      keras_set_error (error, &imp, "the model has no config");
      return NULL;
    }
  if (JSON_NODE_HOLDS_OBJECT (config))
    name = keras_member_string (json_node_get_object (config), "name");
  model = imp.model = kilt_model_new (name ? name : cls);
  model->loss = loss;
  if (!scan_format (&imp, config, error))
    return NULL;
  if (imp.format == FORMAT_UNKNOWN)
    imp.format = FORMAT_CHANNELS_LAST;
  count_names (&imp,
               JSON_NODE_HOLDS_ARRAY (config)
                   ? json_node_get_array (config)
                   : keras_member_array (json_node_get_object (config), "layers"),
               0);

  if (g_str_equal (cls, "Sequential"))
    {
      /* Keras 2.0-2.1 wrote a Sequential's config as the bare list of its layers. */
      JsonArray *layers = JSON_NODE_HOLDS_ARRAY (config)
                              ? json_node_get_array (config)
                              : keras_member_array (json_node_get_object (config), "layers");
      if (layers == NULL)
        {
          keras_set_error (error, &imp, "the Sequential model has no layers list");
          return NULL;
        }
      ok = import_sequential (&imp, layers, root, error);
    }
  else if (g_str_equal (cls, "Functional") || g_str_equal (cls, "Model"))
    {
      if (!JSON_NODE_HOLDS_OBJECT (config))
        {
          keras_set_error (error, &imp, "the functional model's config is not an object");
          return NULL;
        }
      ok = import_functional (&imp, json_node_get_object (config), error);
    }
  else
    {
      keras_set_error (error, &imp,
                       "model class %s is not supported; Kilt imports Sequential and functional "
                       "(Model) architectures",
                       cls);
      return NULL;
    }
  if (!ok)
    return NULL;
  /* model.trainable = false in Keras freezes every layer (the base of a transfer model). */
  if (JSON_NODE_HOLDS_OBJECT (config))
    {
      JsonNode *t = keras_member (json_node_get_object (config), "trainable");
      if (t && JSON_NODE_HOLDS_VALUE (t) && json_node_get_value_type (t) == G_TYPE_BOOLEAN
          && !json_node_get_boolean (t))
        {
          for (guint i = 0; i < kilt_model_n_nodes (model); i++)
            kilt_model_set_trainable (model, i, FALSE);
          imp.cur = NULL;
          keras_add_note (&imp, "the whole model is frozen, as in Keras (trainable = false)");
        }
    }
  if (!kilt_model_build (model, error))
    {
      g_prefix_error (error, "%s: ", imp.source);
      return NULL;
    }
  if (notes && note_text->len)
    *notes = g_strdup (note_text->str);
  model->keras_json = length < 0 ? g_strdup (data) : g_strndup (data, (gsize)length);
  return g_steal_pointer (&model);
}

KiltModel *
kilt_keras_load_file (const char *path, KiltLossType loss, char **notes, GError **error)
{
  g_autofree char *data = NULL;
  gsize length = 0;

  if (notes)
    *notes = NULL;
  if (!kilt_json_read_file (path, "Keras model", &data, &length, error))
    return NULL;
  return kilt_keras_load_data (data, (gssize)length, path, loss, notes, error);
}
