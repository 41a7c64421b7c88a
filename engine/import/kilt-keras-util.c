/* Keras import: JSON accessors, messages and the options many layers share. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras"

#include "kilt-keras-private.h"
#include "kilt-error.h"

#include <math.h>
#include <stdarg.h>

void G_GNUC_PRINTF (3, 4) keras_set_error (GError **error, const Import *imp, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (imp->cur)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: layer %s (%s): %s",
                 imp->source, imp->cur->name, imp->cur->class_name, msg);
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: %s", imp->source, msg);
}

void G_GNUC_PRINTF (2, 3) keras_add_note (Import *imp, const char *fmt, ...)
{
  va_list ap;

  if (imp->notes->len)
    g_string_append_c (imp->notes, '\n');
  if (imp->cur)
    g_string_append_printf (imp->notes, "layer %s (%s): ", imp->cur->name, imp->cur->class_name);
  va_start (ap, fmt);
  g_string_append_vprintf (imp->notes, fmt, ap);
  va_end (ap);
}

/* ---- JSON helpers ------------------------------------------------------------------------- */

/* A member, with JSON null read as absent (Keras writes null for "not set"). */
JsonNode *
keras_member (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

gboolean
keras_node_is (JsonNode *n, GType type)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

const char *
keras_member_string (JsonObject *o, const char *key)
{
  JsonNode *n = keras_member (o, key);

  return keras_node_is (n, G_TYPE_STRING) ? json_node_get_string (n) : NULL;
}

JsonObject *
keras_member_object (JsonObject *o, const char *key)
{
  JsonNode *n = keras_member (o, key);

  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

JsonArray *
keras_member_array (JsonObject *o, const char *key)
{
  JsonNode *n = keras_member (o, key);

  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* A compact rendering of a JSON value for messages: (2, 2), "causal", 0.5. */
char *
keras_render (JsonNode *n)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();

  if (n == NULL)
    return g_strdup ("null");
  json_generator_set_root (gen, n);
  return json_generator_to_data (gen, NULL);
}

gboolean
keras_get_int (const Import *imp, JsonNode *n, const char *key, guint min, guint *out,
               GError **error)
{
  gint64 v;

  if (keras_node_is (n, G_TYPE_DOUBLE)
      && json_node_get_double (n) == floor (json_node_get_double (n)))
    v = (gint64)json_node_get_double (n);
  else if (keras_node_is (n, G_TYPE_INT64))
    v = json_node_get_int (n);
  else
    {
      g_autofree char *text = keras_render (n);
      keras_set_error (error, imp, "%s must be an integer, got %s", key, text);
      return FALSE;
    }
  if (v < min || v > KILT_KERAS_MAX_DIM)
    {
      keras_set_error (error, imp, "%s must be from %u to %u, got %" G_GINT64_FORMAT, key, min,
                       KILT_KERAS_MAX_DIM, v);
      return FALSE;
    }
  *out = (guint)v;
  return TRUE;
}

/* An int or a list of two ints; absent gives the defaults. */
gboolean
keras_get_pair (const Import *imp, JsonObject *cfg, const char *key, guint *a, guint *b,
                GError **error)
{
  JsonNode *n = keras_member (cfg, key);
  JsonArray *arr;

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    {
      if (!keras_get_int (imp, n, key, 1, a, error))
        return FALSE;
      *b = *a;
      return TRUE;
    }
  arr = json_node_get_array (n);
  if (json_array_get_length (arr) != 2)
    {
      g_autofree char *text = keras_render (n);
      keras_set_error (error, imp, "%s must hold two values (height, width), got %s", key, text);
      return FALSE;
    }
  return keras_get_int (imp, json_array_get_element (arr, 0), key, 1, a, error)
         && keras_get_int (imp, json_array_get_element (arr, 1), key, 1, b, error);
}

gboolean
keras_get_double (const Import *imp, JsonObject *cfg, const char *key, double lo, double hi,
                  double *out, GError **error)
{
  JsonNode *n = keras_member (cfg, key);

  if (n == NULL)
    return TRUE;
  if (!keras_node_is (n, G_TYPE_DOUBLE) && !keras_node_is (n, G_TYPE_INT64))
    {
      keras_set_error (error, imp, "%s must be a number", key);
      return FALSE;
    }
  *out = json_node_get_double (n);
  if (!(*out >= lo && *out <= hi))
    {
      keras_set_error (error, imp, "%s = %g is out of range [%g, %g]", key, *out, lo, hi);
      return FALSE;
    }
  return TRUE;
}

gboolean
keras_get_bool (const Import *imp, JsonObject *cfg, const char *key, gboolean *out, GError **error)
{
  JsonNode *n = keras_member (cfg, key);

  if (n == NULL)
    return TRUE;
  if (!keras_node_is (n, G_TYPE_BOOLEAN))
    {
      keras_set_error (error, imp, "%s must be true or false", key);
      return FALSE;
    }
  *out = json_node_get_boolean (n);
  return TRUE;
}

/* The class name of a serialised Keras object ({"class_name": ...} or a bare string). */
const char *
keras_object_class (JsonNode *n)
{
  if (n == NULL)
    return NULL;
  if (keras_node_is (n, G_TYPE_STRING))
    return json_node_get_string (n);
  if (JSON_NODE_HOLDS_OBJECT (n))
    return keras_member_string (json_node_get_object (n), "class_name");
  return "?";
}

/* ---- options shared by layers ------------------------------------------------------------- */

gboolean
keras_check_data_format (Import *imp, JsonObject *cfg, GError **error)
{
  const char *f = keras_member_string (cfg, "data_format");
  DataFormat want;

  if (f == NULL)
    return TRUE;
  if (g_str_equal (f, "channels_last"))
    want = FORMAT_CHANNELS_LAST;
  else if (g_str_equal (f, "channels_first"))
    want = FORMAT_CHANNELS_FIRST;
  else
    {
      keras_set_error (error, imp,
                       "data_format \"%s\" is not supported; expected channels_last or "
                       "channels_first",
                       f);
      return FALSE;
    }
  if (want != imp->format)
    {
      keras_set_error (error, imp,
                       "data_format %s differs from the model's %s; a model must use one layout "
                       "throughout",
                       f,
                       imp->format == FORMAT_CHANNELS_FIRST ? "channels_first" : "channels_last");
      return FALSE;
    }
  return TRUE;
}

/* Keras' activation names, as Keras 2 (tf.keras) and Keras 3 write them. */
static const struct
{
  const char *keras;
  KiltActivation act;
} keras_activations[] = {
  { "linear", KILT_ACT_LINEAR },
  { "relu", KILT_ACT_RELU },
  { "leaky_relu", KILT_ACT_LEAKY_RELU },
  { "sigmoid", KILT_ACT_SIGMOID },
  { "tanh", KILT_ACT_TANH },
  { "softmax", KILT_ACT_SOFTMAX },
  { "relu6", KILT_ACT_RELU6 },
  { "elu", KILT_ACT_ELU },
  { "selu", KILT_ACT_SELU },
  { "softplus", KILT_ACT_SOFTPLUS },
  { "softsign", KILT_ACT_SOFTSIGN },
  { "exponential", KILT_ACT_EXPONENTIAL },
  { "swish", KILT_ACT_SWISH },
  { "silu", KILT_ACT_SWISH },
  { "gelu", KILT_ACT_GELU }, /* Keras' default is the exact form (approximate = False) */
  { "hard_sigmoid", KILT_ACT_HARD_SIGMOID },
  { "hard_swish", KILT_ACT_HARD_SWISH },
  { "hard_silu", KILT_ACT_HARD_SWISH },
};

gboolean
keras_get_activation_name (Import *imp, const char *name, KiltLayerConfig *out, GError **error)
{
  for (guint i = 0; i < G_N_ELEMENTS (keras_activations); i++)
    if (g_str_equal (name, keras_activations[i].keras))
      {
        out->activation = keras_activations[i].act;
        /* Keras 2 defines hard_sigmoid as clip (0.2 x + 0.5), Keras 3 as relu6 (x + 3) / 6. */
        if (out->activation == KILT_ACT_HARD_SIGMOID && !imp->keras3)
          out->activation = KILT_ACT_HARD_SIGMOID_K2;
        /* The functions' own defaults: elu (alpha = 1), leaky_relu (negative_slope = 0.2). */
        if (out->activation == KILT_ACT_ELU)
          out->alpha = 1.0f;
        else if (out->activation == KILT_ACT_LEAKY_RELU)
          out->alpha = 0.2f;
        return TRUE;
      }
  {
    g_autoptr (GString) list = g_string_new (NULL);
    for (guint i = 0; i < G_N_ELEMENTS (keras_activations); i++)
      g_string_append_printf (list, "%s%s", i ? ", " : "", keras_activations[i].keras);
    keras_set_error (error, imp, "activation \"%s\" is not supported; Kilt has %s", name,
                     list->str);
  }
  return FALSE;
}

gboolean
keras_get_activation (Import *imp, JsonObject *cfg, KiltLayerConfig *out, GError **error)
{
  JsonNode *n = keras_member (cfg, "activation");
  const char *name;

  if (n == NULL)
    {
      out->activation = KILT_ACT_LINEAR;
      return TRUE;
    }
  name = keras_node_is (n, G_TYPE_STRING) ? json_node_get_string (n) : NULL;
  /* Keras 3 may serialise a built-in activation as {"class_name": "function", "config": "relu"}. */
  if (name == NULL && JSON_NODE_HOLDS_OBJECT (n))
    name = keras_member_string (json_node_get_object (n), "config");
  if (name == NULL)
    {
      g_autofree char *text = keras_render (n);
      keras_set_error (error, imp, "activation %s is not supported (a custom function?)", text);
      return FALSE;
    }
  return keras_get_activation_name (imp, name, out, error);
}

/* Weight-level options: Kilt trains from scratch, so these change training, not the function
 * the architecture computes. Accepted with a note. */
void
keras_note_weight_options (Import *imp, JsonObject *cfg, const char *prefix, KiltInit *init)
{
  static const char *ignored[] = { "regularizer", "constraint" };
  g_autofree char *init_key = g_strdup_printf ("%s_initializer", prefix);
  const char *init_class = keras_object_class (keras_member (cfg, init_key));

  for (guint i = 0; i < G_N_ELEMENTS (ignored); i++)
    {
      g_autofree char *key = g_strdup_printf ("%s_%s", prefix, ignored[i]);
      JsonNode *n = keras_member (cfg, key);
      if (n)
        {
          const char *cls = keras_object_class (n);
          keras_add_note (imp, "%s %s is ignored%s", key, cls ? cls : "(custom)",
                          g_str_equal (ignored[i], "regularizer")
                              ? " (set the optimizer's weight decay instead)"
                              : "");
        }
    }
  if (init_class == NULL)
    return;
  if (init == NULL)
    {
      /* Biases and batch-norm parameters: Kilt starts them at zeros (gamma at ones). */
      if (!g_str_equal (init_class, "Zeros") && !g_str_equal (init_class, "zeros")
          && !g_str_equal (init_class, "Ones") && !g_str_equal (init_class, "ones"))
        keras_add_note (imp, "%s %s is replaced by Kilt's default", init_key, init_class);
      return;
    }
  if (g_ascii_strcasecmp (init_class, "GlorotUniform") == 0
      || g_ascii_strcasecmp (init_class, "glorot_uniform") == 0)
    *init = KILT_INIT_GLOROT_UNIFORM;
  else if (g_ascii_strcasecmp (init_class, "HeNormal") == 0
           || g_ascii_strcasecmp (init_class, "he_normal") == 0)
    *init = KILT_INIT_HE_NORMAL;
  else
    {
      *init = KILT_INIT_GLOROT_UNIFORM;
      keras_add_note (imp, "%s %s is replaced by glorot_uniform", init_key, init_class);
    }
}

gboolean
keras_get_padding (Import *imp, JsonObject *cfg, gboolean *same, GError **error)
{
  const char *p = keras_member_string (cfg, "padding");

  if (p == NULL || g_str_equal (p, "valid"))
    *same = FALSE;
  else if (g_str_equal (p, "same"))
    *same = TRUE;
  else
    {
      keras_set_error (error, imp, "padding \"%s\" is not supported; Kilt has same and valid", p);
      return FALSE;
    }
  return TRUE;
}

/* The channel axis (counted with the batch) of a tensor of @rank, for either layout. */
gboolean
keras_is_channel_axis (const Import *imp, gint64 axis, guint rank)
{
  if (rank == 2)
    return axis == 1 || axis == -1;
  if (rank == 3) /* (steps, channels), or (channels, steps) */
    return imp->format == FORMAT_CHANNELS_FIRST ? axis == 1 || axis == -2 : axis == 2 || axis == -1;
  if (imp->format == FORMAT_CHANNELS_FIRST)
    return axis == 1 || axis == -3;
  return axis == 3 || axis == -1;
}

gboolean
keras_get_axis (Import *imp, JsonObject *cfg, const char *key, gint64 def, gint64 *axis,
                GError **error)
{
  JsonNode *n = keras_member (cfg, key);

  *axis = def;
  if (n == NULL)
    return TRUE;
  /* Keras 2's BatchNormalization resolves its axis to a list of one. */
  if (JSON_NODE_HOLDS_ARRAY (n) && json_array_get_length (json_node_get_array (n)) == 1)
    n = json_array_get_element (json_node_get_array (n), 0);
  if (!keras_node_is (n, G_TYPE_INT64))
    {
      g_autofree char *text = keras_render (keras_member (cfg, key));
      keras_set_error (error, imp, "%s %s is not supported; only the channel axis is", key, text);
      return FALSE;
    }
  *axis = json_node_get_int (n);
  return TRUE;
}
