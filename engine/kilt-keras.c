/* Import of Keras model.to_json () files (Keras 2 / tf.keras, Keras 3, old bare-list files). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras"

#include "kilt-keras.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"
#include "kilt-model-json.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>

#define MAX_DIM (1u << 24)

typedef enum
{
  FORMAT_UNKNOWN,
  FORMAT_CHANNELS_LAST,
  FORMAT_CHANNELS_FIRST,
} DataFormat;

/* One Keras layer entry, whatever the file's generation. */
typedef struct
{
  const char *name;
  const char *class_name;
  JsonObject *config;
  GPtrArray *inbound; /* const char*: names of the layers it reads (functional models) */
  guint n_calls;      /* how many times the layer is called (shared layers: more than one) */
  guint position;     /* 1-based, in the file's layers list */
  gboolean named;     /* the file gave a name (else it is the class name) */
  int state;          /* ordering: 0 unseen, 1 on the stack, 2 done */
} Entry;

typedef struct
{
  const char *source;
  KiltModel *model;
  GString *notes;
  DataFormat format;
  GArray *rank;        /* guint per Kilt node: 2 (vector) or 4 (image), with the batch */
  GHashTable *node_of; /* Keras layer name -> Kilt node index + 1 */
  const Entry *cur;    /* the layer being converted, for messages */
} Import;

static void G_GNUC_PRINTF (3, 4) set_error (GError **error, const Import *imp, const char *fmt, ...)
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

static void G_GNUC_PRINTF (2, 3) add_note (Import *imp, const char *fmt, ...)
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
static JsonNode *
member (JsonObject *o, const char *key)
{
  JsonNode *n = o ? json_object_get_member (o, key) : NULL;

  return n && !JSON_NODE_HOLDS_NULL (n) ? n : NULL;
}

static gboolean
node_is (JsonNode *n, GType type)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type;
}

static const char *
member_string (JsonObject *o, const char *key)
{
  JsonNode *n = member (o, key);

  return node_is (n, G_TYPE_STRING) ? json_node_get_string (n) : NULL;
}

static JsonObject *
member_object (JsonObject *o, const char *key)
{
  JsonNode *n = member (o, key);

  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static JsonArray *
member_array (JsonObject *o, const char *key)
{
  JsonNode *n = member (o, key);

  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* A compact rendering of a JSON value for messages: (2, 2), "causal", 0.5. */
static char *
render (JsonNode *n)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();

  if (n == NULL)
    return g_strdup ("null");
  json_generator_set_root (gen, n);
  return json_generator_to_data (gen, NULL);
}

static gboolean
get_int (const Import *imp, JsonNode *n, const char *key, guint min, guint *out, GError **error)
{
  gint64 v;

  if (node_is (n, G_TYPE_DOUBLE) && json_node_get_double (n) == floor (json_node_get_double (n)))
    v = (gint64)json_node_get_double (n);
  else if (node_is (n, G_TYPE_INT64))
    v = json_node_get_int (n);
  else
    {
      g_autofree char *text = render (n);
      set_error (error, imp, "%s must be an integer, got %s", key, text);
      return FALSE;
    }
  if (v < min || v > MAX_DIM)
    {
      set_error (error, imp, "%s must be from %u to %u, got %" G_GINT64_FORMAT, key, min, MAX_DIM,
                 v);
      return FALSE;
    }
  *out = (guint)v;
  return TRUE;
}

/* An int or a list of two ints; absent gives the defaults. */
static gboolean
get_pair (const Import *imp, JsonObject *cfg, const char *key, guint *a, guint *b, GError **error)
{
  JsonNode *n = member (cfg, key);
  JsonArray *arr;

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    {
      if (!get_int (imp, n, key, 1, a, error))
        return FALSE;
      *b = *a;
      return TRUE;
    }
  arr = json_node_get_array (n);
  if (json_array_get_length (arr) != 2)
    {
      g_autofree char *text = render (n);
      set_error (error, imp, "%s must hold two values (height, width), got %s", key, text);
      return FALSE;
    }
  return get_int (imp, json_array_get_element (arr, 0), key, 1, a, error)
         && get_int (imp, json_array_get_element (arr, 1), key, 1, b, error);
}

static gboolean
get_double (const Import *imp, JsonObject *cfg, const char *key, double lo, double hi, double *out,
            GError **error)
{
  JsonNode *n = member (cfg, key);

  if (n == NULL)
    return TRUE;
  if (!node_is (n, G_TYPE_DOUBLE) && !node_is (n, G_TYPE_INT64))
    {
      set_error (error, imp, "%s must be a number", key);
      return FALSE;
    }
  *out = json_node_get_double (n);
  if (!(*out >= lo && *out <= hi))
    {
      set_error (error, imp, "%s = %g is out of range [%g, %g]", key, *out, lo, hi);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_bool (const Import *imp, JsonObject *cfg, const char *key, gboolean *out, GError **error)
{
  JsonNode *n = member (cfg, key);

  if (n == NULL)
    return TRUE;
  if (!node_is (n, G_TYPE_BOOLEAN))
    {
      set_error (error, imp, "%s must be true or false", key);
      return FALSE;
    }
  *out = json_node_get_boolean (n);
  return TRUE;
}

/* The class name of a serialised Keras object ({"class_name": ...} or a bare string). */
static const char *
object_class (JsonNode *n)
{
  if (n == NULL)
    return NULL;
  if (node_is (n, G_TYPE_STRING))
    return json_node_get_string (n);
  if (JSON_NODE_HOLDS_OBJECT (n))
    return member_string (json_node_get_object (n), "class_name");
  return "?";
}

/* ---- options shared by layers ------------------------------------------------------------- */

static gboolean
check_data_format (Import *imp, JsonObject *cfg, GError **error)
{
  const char *f = member_string (cfg, "data_format");
  DataFormat want;

  if (f == NULL)
    return TRUE;
  if (g_str_equal (f, "channels_last"))
    want = FORMAT_CHANNELS_LAST;
  else if (g_str_equal (f, "channels_first"))
    want = FORMAT_CHANNELS_FIRST;
  else
    {
      set_error (error, imp,
                 "data_format \"%s\" is not supported; expected channels_last or "
                 "channels_first",
                 f);
      return FALSE;
    }
  if (want != imp->format)
    {
      set_error (error, imp,
                 "data_format %s differs from the model's %s; a model must use one layout "
                 "throughout",
                 f, imp->format == FORMAT_CHANNELS_FIRST ? "channels_first" : "channels_last");
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_activation_name (Import *imp, const char *name, KiltActivation *out, GError **error)
{
  if (!kilt_activation_from_name (name, out))
    {
      set_error (error, imp,
                 "activation \"%s\" is not supported; Kilt has linear, relu, leaky_relu, sigmoid, "
                 "tanh and softmax",
                 name);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_activation (Import *imp, JsonObject *cfg, KiltActivation *out, GError **error)
{
  JsonNode *n = member (cfg, "activation");
  const char *name;

  if (n == NULL)
    {
      *out = KILT_ACT_LINEAR;
      return TRUE;
    }
  name = node_is (n, G_TYPE_STRING) ? json_node_get_string (n) : NULL;
  /* Keras 3 may serialise a built-in activation as {"class_name": "function", "config": "relu"}. */
  if (name == NULL && JSON_NODE_HOLDS_OBJECT (n))
    name = member_string (json_node_get_object (n), "config");
  if (name == NULL)
    {
      g_autofree char *text = render (n);
      set_error (error, imp, "activation %s is not supported (a custom function?)", text);
      return FALSE;
    }
  return get_activation_name (imp, name, out, error);
}

/* Weight-level options: Kilt trains from scratch, so these change training, not the function
 * the architecture computes. Accepted with a note. */
static void
note_weight_options (Import *imp, JsonObject *cfg, const char *prefix, KiltInit *init)
{
  static const char *ignored[] = { "regularizer", "constraint" };
  g_autofree char *init_key = g_strdup_printf ("%s_initializer", prefix);
  const char *init_class = object_class (member (cfg, init_key));

  for (guint i = 0; i < G_N_ELEMENTS (ignored); i++)
    {
      g_autofree char *key = g_strdup_printf ("%s_%s", prefix, ignored[i]);
      JsonNode *n = member (cfg, key);
      if (n)
        {
          const char *cls = object_class (n);
          add_note (imp, "%s %s is ignored%s", key, cls ? cls : "(custom)",
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
        add_note (imp, "%s %s is replaced by Kilt's default", init_key, init_class);
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
      add_note (imp, "%s %s is replaced by glorot_uniform", init_key, init_class);
    }
}

static gboolean
get_padding (Import *imp, JsonObject *cfg, gboolean *same, GError **error)
{
  const char *p = member_string (cfg, "padding");

  if (p == NULL || g_str_equal (p, "valid"))
    *same = FALSE;
  else if (g_str_equal (p, "same"))
    *same = TRUE;
  else
    {
      set_error (error, imp, "padding \"%s\" is not supported; Kilt has same and valid", p);
      return FALSE;
    }
  return TRUE;
}

/* The channel axis (counted with the batch) of a tensor of @rank, for either layout. */
static gboolean
is_channel_axis (const Import *imp, gint64 axis, guint rank)
{
  if (rank == 2)
    return axis == 1 || axis == -1;
  if (imp->format == FORMAT_CHANNELS_FIRST)
    return axis == 1 || axis == -3;
  return axis == 3 || axis == -1;
}

static gboolean
get_axis (Import *imp, JsonObject *cfg, const char *key, gint64 def, gint64 *axis, GError **error)
{
  JsonNode *n = member (cfg, key);

  *axis = def;
  if (n == NULL)
    return TRUE;
  /* Keras 2's BatchNormalization resolves its axis to a list of one. */
  if (JSON_NODE_HOLDS_ARRAY (n) && json_array_get_length (json_node_get_array (n)) == 1)
    n = json_array_get_element (json_node_get_array (n), 0);
  if (!node_is (n, G_TYPE_INT64))
    {
      g_autofree char *text = render (member (cfg, key));
      set_error (error, imp, "%s %s is not supported; only the channel axis is", key, text);
      return FALSE;
    }
  *axis = json_node_get_int (n);
  return TRUE;
}

/* ---- layers ------------------------------------------------------------------------------- */

static guint
node_rank (const Import *imp, guint node)
{
  return g_array_index (imp->rank, guint, node);
}

static gboolean
add_node (Import *imp, KiltLayerType type, const KiltLayerConfig *cfg, guint n_inputs,
          const guint *inputs, guint rank, GError **error)
{
  guint index;

  if (kilt_layer_class_get (type) == NULL)
    {
      set_error (error, imp, "layer type %s is not available in this build of Kilt",
                 kilt_layer_type_name (type));
      return FALSE;
    }
  if (kilt_model_find (imp->model, imp->cur->name))
    {
      set_error (error, imp, "the name is used by another layer; names must be unique");
      return FALSE;
    }
  index = kilt_model_add (imp->model, type, imp->cur->name, cfg, n_inputs, inputs);
  g_array_append_val (imp->rank, rank);
  g_hash_table_insert (imp->node_of, (gpointer)imp->cur->name, GUINT_TO_POINTER (index + 1));
  return TRUE;
}

static gboolean
convert_conv (Import *imp, JsonObject *c, KiltLayerConfig *cfg, GError **error)
{
  guint dh = 1, dw = 1, groups = 1;

  if (member (c, "filters") == NULL)
    {
      set_error (error, imp, "expected filters");
      return FALSE;
    }
  if (!get_int (imp, member (c, "filters"), "filters", 1, &cfg->units, error)
      || !get_pair (imp, c, "kernel_size", &cfg->kh, &cfg->kw, error)
      || !get_pair (imp, c, "strides", &cfg->sh, &cfg->sw, error)
      || !get_pair (imp, c, "dilation_rate", &dh, &dw, error)
      || !get_padding (imp, c, &cfg->same, error)
      || !get_activation (imp, c, &cfg->activation, error)
      || !get_bool (imp, c, "use_bias", &cfg->use_bias, error)
      || !check_data_format (imp, c, error))
    return FALSE;
  if (member (c, "kernel_size") == NULL)
    {
      set_error (error, imp, "expected kernel_size");
      return FALSE;
    }
  if (dh != 1 || dw != 1)
    {
      set_error (error, imp, "dilation_rate (%u, %u) is not supported; Kilt takes 1", dh, dw);
      return FALSE;
    }
  if (member (c, "groups") && (!get_int (imp, member (c, "groups"), "groups", 1, &groups, error)))
    return FALSE;
  if (groups != 1)
    {
      set_error (error, imp, "groups = %u is not supported; Kilt takes 1", groups);
      return FALSE;
    }
  if (cfg->activation == KILT_ACT_SOFTMAX)
    {
      set_error (error, imp, "activation softmax inside Conv2D is not supported");
      return FALSE;
    }
  note_weight_options (imp, c, "kernel", &cfg->init);
  note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

static gboolean
convert_dense (Import *imp, JsonObject *c, KiltLayerConfig *cfg, GError **error)
{
  JsonNode *units = member (c, "units");

  if (units == NULL)
    units = member (c, "output_dim"); /* Keras 1 */
  if (units == NULL)
    {
      set_error (error, imp, "expected units");
      return FALSE;
    }
  if (!get_int (imp, units, "units", 1, &cfg->units, error)
      || !get_activation (imp, c, &cfg->activation, error)
      || !get_bool (imp, c, "use_bias", &cfg->use_bias, error))
    return FALSE;
  note_weight_options (imp, c, "kernel", &cfg->init);
  note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

static gboolean
convert_pool (Import *imp, JsonObject *c, KiltLayerConfig *cfg, GError **error)
{
  cfg->kh = cfg->kw = 2;
  cfg->sh = cfg->sw = 0;
  if (!get_pair (imp, c, "pool_size", &cfg->kh, &cfg->kw, error)
      || !get_pair (imp, c, "strides", &cfg->sh, &cfg->sw, error)
      || !get_padding (imp, c, &cfg->same, error) || !check_data_format (imp, c, error))
    return FALSE;
  /* Strides equal to the window are Keras' default: keep Kilt's 0 ("the window"). */
  if (cfg->sh == cfg->kh && cfg->sw == cfg->kw)
    cfg->sh = cfg->sw = 0;
  return TRUE;
}

static gboolean
convert_batch_norm (Import *imp, JsonObject *c, KiltLayerConfig *cfg, guint rank, GError **error)
{
  gint64 axis;
  gboolean center = TRUE, scale = TRUE, renorm = FALSE, sync = FALSE;
  double momentum = cfg->momentum, epsilon = cfg->epsilon;

  if (!get_axis (imp, c, "axis", -1, &axis, error)
      || !get_double (imp, c, "momentum", 0.0, 1.0, &momentum, error)
      || !get_double (imp, c, "epsilon", 0.0, 1.0, &epsilon, error)
      || !get_bool (imp, c, "center", &center, error) || !get_bool (imp, c, "scale", &scale, error)
      || !get_bool (imp, c, "renorm", &renorm, error)
      || !get_bool (imp, c, "synchronized", &sync, error))
    return FALSE;
  if (!is_channel_axis (imp, axis, rank))
    {
      set_error (error, imp,
                 "axis %" G_GINT64_FORMAT " is not supported; Kilt normalises over the channel "
                 "axis only",
                 axis);
      return FALSE;
    }
  if (!center || !scale)
    {
      set_error (error, imp,
                 "%s = false is not supported; Kilt's batch normalization has both "
                 "gamma and beta",
                 !center ? "center" : "scale");
      return FALSE;
    }
  if (renorm)
    {
      set_error (error, imp, "renorm = true is not supported");
      return FALSE;
    }
  if (epsilon <= 0)
    {
      set_error (error, imp, "epsilon must be above 0");
      return FALSE;
    }
  cfg->momentum = (float)momentum;
  cfg->epsilon = (float)epsilon;
  note_weight_options (imp, c, "beta", NULL);
  note_weight_options (imp, c, "gamma", NULL);
  return TRUE;
}

static const char *supported_layers = "InputLayer, Conv2D, Dense, MaxPooling2D, "
                                      "AveragePooling2D, GlobalAveragePooling2D, Activation, "
                                      "ReLU, LeakyReLU, Softmax, Dropout, Flatten, "
                                      "BatchNormalization, Add and Concatenate";

/* Adds the Kilt node for one Keras layer reading @inputs (Kilt node indices). */
static gboolean
convert_layer (Import *imp, const Entry *e, guint n_inputs, const guint *inputs, GError **error)
{
  JsonObject *c = e->config;
  const char *cls = e->class_name;
  KiltLayerType type;
  KiltLayerConfig cfg;
  guint rank = n_inputs ? node_rank (imp, inputs[0]) : 2;
  gboolean trainable = TRUE;
  const char *dtype = member_string (c, "dtype");

  imp->cur = e;
  if (!get_bool (imp, c, "trainable", &trainable, error))
    return FALSE;
  if (!trainable)
    add_note (imp, "frozen (trainable = false) in Keras; Kilt trains it");
  /* Keras 3 writes a dtype policy object; older files a string. */
  if (dtype == NULL && member_object (c, "dtype"))
    dtype = member_string (member_object (member_object (c, "dtype"), "config"), "name");
  if (dtype && !g_str_equal (dtype, "float32"))
    add_note (imp, "dtype %s; Kilt computes in float32", dtype);

  if (g_str_equal (cls, "Conv2D"))
    type = KILT_LAYER_CONV2D;
  else if (g_str_equal (cls, "Dense"))
    type = KILT_LAYER_DENSE;
  else if (g_str_equal (cls, "MaxPooling2D") || g_str_equal (cls, "MaxPool2D"))
    type = KILT_LAYER_MAX_POOL2D;
  else if (g_str_equal (cls, "AveragePooling2D") || g_str_equal (cls, "AvgPool2D"))
    type = KILT_LAYER_AVG_POOL2D;
  else if (g_str_equal (cls, "GlobalAveragePooling2D") || g_str_equal (cls, "GlobalAvgPool2D"))
    type = KILT_LAYER_GLOBAL_AVG_POOL2D;
  else if (g_str_equal (cls, "Activation") || g_str_equal (cls, "ReLU")
           || g_str_equal (cls, "LeakyReLU") || g_str_equal (cls, "Softmax"))
    type = KILT_LAYER_ACTIVATION;
  else if (g_str_equal (cls, "Dropout"))
    type = KILT_LAYER_DROPOUT;
  else if (g_str_equal (cls, "Flatten"))
    type = KILT_LAYER_FLATTEN;
  else if (g_str_equal (cls, "BatchNormalization"))
    type = KILT_LAYER_BATCH_NORM;
  else if (g_str_equal (cls, "Add"))
    type = KILT_LAYER_ADD;
  else if (g_str_equal (cls, "Concatenate"))
    type = KILT_LAYER_CONCATENATE;
  else if (g_str_equal (cls, "Sequential") || g_str_equal (cls, "Functional")
           || g_str_equal (cls, "Model"))
    {
      set_error (error, imp, "nested models are not supported; flatten the model into one");
      return FALSE;
    }
  else
    {
      set_error (error, imp, "layer type %s is not supported; Kilt imports %s", cls,
                 supported_layers);
      return FALSE;
    }

  cfg = kilt_layer_config_default (type);
  switch (type)
    {
      case KILT_LAYER_CONV2D:
        if (rank != 4)
          {
            set_error (error, imp, "expects an image input (height, width, channels)");
            return FALSE;
          }
        if (!convert_conv (imp, c, &cfg, error))
          return FALSE;
        break;
      case KILT_LAYER_DENSE:
        if (!convert_dense (imp, c, &cfg, error))
          return FALSE;
        break;
      case KILT_LAYER_MAX_POOL2D:
      case KILT_LAYER_AVG_POOL2D:
        if (!convert_pool (imp, c, &cfg, error))
          return FALSE;
        break;
      case KILT_LAYER_GLOBAL_AVG_POOL2D:
        {
          gboolean keepdims = FALSE;
          if (!check_data_format (imp, c, error)
              || !get_bool (imp, c, "keepdims", &keepdims, error))
            return FALSE;
          if (keepdims)
            {
              set_error (error, imp, "keepdims = true is not supported");
              return FALSE;
            }
          rank = 2;
          break;
        }
      case KILT_LAYER_ACTIVATION:
        if (g_str_equal (cls, "Activation"))
          {
            if (!get_activation (imp, c, &cfg.activation, error))
              return FALSE;
          }
        else if (g_str_equal (cls, "ReLU"))
          {
            double slope = 0, threshold = 0;
            if (member (c, "max_value"))
              {
                g_autofree char *text = render (member (c, "max_value"));
                set_error (error, imp, "max_value %s is not supported (no capped ReLU)", text);
                return FALSE;
              }
            if (!get_double (imp, c, "negative_slope", 0, 1e6, &slope, error)
                || !get_double (imp, c, "threshold", -1e30, 1e30, &threshold, error))
              return FALSE;
            if (threshold != 0)
              {
                set_error (error, imp, "threshold %g is not supported; Kilt takes 0", threshold);
                return FALSE;
              }
            cfg.activation = slope > 0 ? KILT_ACT_LEAKY_RELU : KILT_ACT_RELU;
            cfg.alpha = (float)slope;
          }
        else if (g_str_equal (cls, "LeakyReLU"))
          {
            double alpha = 0.3; /* Keras' default */
            if (!get_double (imp, c, "alpha", 0, 1e6, &alpha, error)
                || !get_double (imp, c, "negative_slope", 0, 1e6, &alpha, error))
              return FALSE;
            cfg.activation = KILT_ACT_LEAKY_RELU;
            cfg.alpha = (float)alpha;
          }
        else
          {
            gint64 axis;
            if (!get_axis (imp, c, "axis", -1, &axis, error))
              return FALSE;
            if (!is_channel_axis (imp, axis, rank))
              {
                set_error (error, imp,
                           "axis %" G_GINT64_FORMAT " is not supported; Kilt's softmax runs over "
                           "the channel axis",
                           axis);
                return FALSE;
              }
            cfg.activation = KILT_ACT_SOFTMAX;
          }
        break;
      case KILT_LAYER_DROPOUT:
        {
          double rate = 0;
          if (member (c, "noise_shape"))
            {
              g_autofree char *text = render (member (c, "noise_shape"));
              set_error (error, imp, "noise_shape %s is not supported", text);
              return FALSE;
            }
          if (!get_double (imp, c, "rate", 0, 0.999999, &rate, error)
              || !get_double (imp, c, "p", 0, 0.999999, &rate, error)) /* Keras 1 */
            return FALSE;
          cfg.rate = (float)rate;
          break;
        }
      case KILT_LAYER_FLATTEN:
        if (!check_data_format (imp, c, error))
          return FALSE;
        rank = 2;
        break;
      case KILT_LAYER_BATCH_NORM:
        if (!convert_batch_norm (imp, c, &cfg, rank, error))
          return FALSE;
        break;
      case KILT_LAYER_ADD:
        if (n_inputs < 2)
          {
            set_error (error, imp, "needs at least two inputs, got %u", n_inputs);
            return FALSE;
          }
        break;
      case KILT_LAYER_CONCATENATE:
        {
          gint64 axis;
          if (!get_axis (imp, c, "axis", -1, &axis, error))
            return FALSE;
          if (n_inputs < 2)
            {
              set_error (error, imp, "needs at least two inputs, got %u", n_inputs);
              return FALSE;
            }
          for (guint i = 1; i < n_inputs; i++)
            if (node_rank (imp, inputs[i]) != rank)
              {
                set_error (error, imp, "its inputs mix images and vectors");
                return FALSE;
              }
          if (!is_channel_axis (imp, axis, rank))
            {
              set_error (error, imp,
                         "axis %" G_GINT64_FORMAT " is not supported; Kilt concatenates along the "
                         "channel axis only",
                         axis);
              return FALSE;
            }
          break;
        }
      default:
        g_assert_not_reached ();
    }
  if (type != KILT_LAYER_ADD && type != KILT_LAYER_CONCATENATE && n_inputs != 1)
    {
      set_error (error, imp, "takes one input, got %u", n_inputs);
      return FALSE;
    }
  return add_node (imp, type, &cfg, n_inputs, inputs, rank, error);
}

/* The per-sample input shape from a [null, ...] batch shape (or [...] without the batch). */
static gboolean
add_input (Import *imp, const char *name, JsonArray *shape, gboolean has_batch, GError **error)
{
  guint n = json_array_get_length (shape), first = has_batch ? 1 : 0;
  guint dims[3] = { 0 };
  KiltShape s;
  guint rank;

  if (n < first + 1 || n > first + 3 || n - first == 2)
    {
      set_error (error, imp,
                 "input shape with %u dimensions per sample is not supported; Kilt takes images "
                 "(height, width, channels) or vectors (features)",
                 n - first);
      return FALSE;
    }
  for (guint i = first; i < n; i++)
    {
      JsonNode *d = json_array_get_element (shape, i);
      if (JSON_NODE_HOLDS_NULL (d))
        {
          set_error (error, imp,
                     "input dimension %u is None; Kilt needs fixed input sizes (set them in "
                     "the Input layer)",
                     i);
          return FALSE;
        }
      if (!get_int (imp, d, "input dimension", 1, &dims[i - first], error))
        return FALSE;
    }
  if (n - first == 1)
    {
      s = (KiltShape){ dims[0], 1, 1 };
      rank = 2;
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
  g_hash_table_insert (imp->node_of, (gpointer)name, GUINT_TO_POINTER (1));
  return TRUE;
}

/* The batch shape a layer config declares, in any generation's spelling. */
static JsonArray *
declared_shape (JsonObject *cfg, gboolean *has_batch)
{
  JsonArray *a;

  *has_batch = TRUE;
  if ((a = member_array (cfg, "batch_shape")) || (a = member_array (cfg, "batch_input_shape")))
    return a;
  *has_batch = FALSE;
  return member_array (cfg, "input_shape");
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
      set_error (error, imp, "layer %u is not an object with class_name and config", index + 1);
      return FALSE;
    }
  o = json_node_get_object (node);
  e->class_name = member_string (o, "class_name");
  e->config = member_object (o, "config");
  e->name = member_string (o, "name");
  if (e->name == NULL)
    e->name = member_string (e->config, "name");
  if (e->class_name == NULL || e->config == NULL)
    {
      set_error (error, imp, "layer %u has no class_name and config", index + 1);
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
      JsonArray *h = member_array (member_object (o, "config"), "keras_history");
      const char *cls = member_string (o, "class_name");
      if (cls && g_str_equal (cls, "__keras_tensor__") && h && json_array_get_length (h) >= 1)
        g_ptr_array_add (out, (gpointer)json_array_get_string_element (h, 0));
    }
}

static gboolean
read_inbound (Import *imp, JsonObject *layer, Entry *e, GError **error)
{
  JsonArray *calls = member_array (layer, "inbound_nodes");

  e->inbound = g_ptr_array_new ();
  e->n_calls = calls ? json_array_get_length (calls) : 0;
  if (e->n_calls == 0)
    return TRUE;
  if (e->n_calls > 1)
    {
      imp->cur = e;
      set_error (error, imp, "the layer is called %u times; shared layers are not supported",
                 e->n_calls);
      return FALSE;
    }
  {
    JsonNode *call = json_array_get_element (calls, 0);
    if (JSON_NODE_HOLDS_OBJECT (call)) /* Keras 3: {"args": [...], "kwargs": {...}} */
      collect_history (member (json_node_get_object (call), "args"), e->inbound);
    else if (JSON_NODE_HOLDS_ARRAY (call)) /* Keras 2: [[name, node, tensor, kwargs], ...] */
      {
        JsonArray *a = json_node_get_array (call);
        for (guint i = 0; i < json_array_get_length (a); i++)
          {
            JsonNode *t = json_array_get_element (a, i);
            JsonArray *ta = JSON_NODE_HOLDS_ARRAY (t) ? json_node_get_array (t) : NULL;
            if (ta == NULL || json_array_get_length (ta) < 3
                || !node_is (json_array_get_element (ta, 0), G_TYPE_STRING))
              {
                imp->cur = e;
                set_error (error, imp, "inbound_nodes entry %u is not [layer, node, tensor]", i);
                return FALSE;
              }
            if (json_array_get_int_element (ta, 2) != 0)
              {
                imp->cur = e;
                set_error (error, imp,
                           "reads output %" G_GINT64_FORMAT " of layer %s; layers "
                           "with several outputs are not supported",
                           json_array_get_int_element (ta, 2),
                           json_array_get_string_element (ta, 0));
                return FALSE;
              }
            g_ptr_array_add (e->inbound, (gpointer)json_array_get_string_element (ta, 0));
          }
      }
  }
  if (e->inbound->len == 0)
    {
      imp->cur = e;
      set_error (error, imp, "inbound_nodes names no input layer");
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
      set_error (error, imp, "the model has %u layers; Kilt takes at most %u", n,
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
            set_error (error, imp,
                       "layers %u (%s) and %u (%s) are both named \"%s\"; layer names must be "
                       "unique",
                       first->position, first->class_name, e->position, e->class_name, e->name);
          else
            set_error (error, imp,
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
  JsonArray *a = member_array (cfg, key);
  JsonNode *first;

  if (a == NULL || json_array_get_length (a) == 0)
    {
      set_error (error, imp, "the functional model has no %s", key);
      return NULL;
    }
  first = json_array_get_element (a, 0);
  if (node_is (first, G_TYPE_STRING))
    return json_node_get_string (first);
  if (json_array_get_length (a) > 1)
    {
      set_error (error, imp, "the model has %u %s; Kilt models have one input and one output",
                 json_array_get_length (a), key);
      return NULL;
    }
  if (JSON_NODE_HOLDS_ARRAY (first) && json_array_get_length (json_node_get_array (first)) >= 1
      && node_is (json_array_get_element (json_node_get_array (first), 0), G_TYPE_STRING))
    return json_array_get_string_element (json_node_get_array (first), 0);
  set_error (error, imp, "%s is not [[layer, node, tensor]]", key);
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
      JsonArray *shape = declared_shape (e->config, &has_batch);
      if (kilt_model_n_nodes (imp->model) > 0)
        {
          set_error (error, imp, "the output depends on a second input; Kilt models have one");
          return FALSE;
        }
      if (shape == NULL)
        {
          set_error (error, imp, "expected batch_shape or batch_input_shape");
          return FALSE;
        }
      if (!add_input (imp, e->name, shape, has_batch, error))
        return FALSE;
    }
  else if (e->inbound->len == 0)
    {
      set_error (error, imp, "reads nothing (no inbound_nodes)");
      return FALSE;
    }
  else if (!convert_layer (imp, e, e->inbound->len, inputs, error))
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
      set_error (error, imp, "the graph has a cycle through this layer");
      return FALSE;
    }
  if (e->inbound->len > KILT_MAX_INPUTS)
    {
      set_error (error, imp, "has %u inputs; Kilt takes at most %d", e->inbound->len,
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
          set_error (error, imp, "reads layer \"%s\", which the file does not have", name);
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
  JsonArray *layers = member_array (config, "layers");
  g_autoptr (GArray) entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  g_autoptr (GHashTable) by_name = g_hash_table_new (g_str_hash, g_str_equal);
  const char *in_name, *out_name;
  Entry *out;

  g_array_set_clear_func (entries, entry_clear);
  if (layers == NULL)
    {
      set_error (error, imp, "the model config has no layers list");
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
      set_error (error, imp, "the model's input %s or output %s is not among its layers", in_name,
                 out_name);
      return FALSE;
    }
  if (!visit (imp, by_name, out, error))
    return FALSE;
  imp->cur = NULL;
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      if (e->state != 2)
        add_note (imp, "layer %s (%s) does not lead to the output; left out", e->name,
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
      set_error (error, imp, "the Sequential model has no layers");
      return FALSE;
    }

  {
    Entry *first = &g_array_index (entries, Entry, 0);
    gboolean has_batch;
    JsonArray *shape = declared_shape (first->config, &has_batch);
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
        shape = member_array (member_object (root, "build_config"), "input_shape");
        has_batch = TRUE;
      }
    if (shape == NULL)
      {
        set_error (error, imp,
                   "the first layer declares no input shape (batch_input_shape); "
                   "build the model with an Input before saving it");
        return FALSE;
      }
    if (!add_input (imp, in_name, shape, has_batch, error))
      return FALSE;
  }
  for (guint i = start; i < entries->len; i++)
    {
      Entry *e = &g_array_index (entries, Entry, i);
      guint prev = kilt_model_n_nodes (imp->model) - 1;
      imp->cur = e;
      if (g_str_equal (e->class_name, "InputLayer"))
        {
          set_error (error, imp, "an InputLayer in the middle of a Sequential model");
          return FALSE;
        }
      if (!convert_layer (imp, e, 1, &prev, error))
        return FALSE;
    }
  imp->cur = NULL;
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
      const char *f = member_string (o, "data_format");
      if (f && imp->format == FORMAT_UNKNOWN)
        imp->format
            = g_str_equal (f, "channels_first") ? FORMAT_CHANNELS_FIRST : FORMAT_CHANNELS_LAST;
      if (!scan_format (imp, member (o, "layers"), error)
          || !scan_format (imp, member (o, "config"), error))
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
  g_autoptr (GHashTable) node_of = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GString) note_text = g_string_new (NULL);
  Import imp
      = { source ? source : "Keras model", NULL, note_text, FORMAT_UNKNOWN, rank, node_of, NULL };
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
      set_error (error, &imp, "%s", local->message);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, data, length, &local))
    {
      g_autofree char *msg = kilt_json_clean_message (local->message);
      set_error (error, &imp, "not valid JSON: %s", msg);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))
      || !(cls = member_string (root = json_node_get_object (json_parser_get_root (parser)),
                                "class_name")))
    {
      set_error (error, &imp,
                 "not a Keras model: expected an object with class_name and "
                 "config, as model.to_json () writes");
      return NULL;
    }
  config = member (root, "config");
  if (config == NULL)
    {
      set_error (error, &imp, "the model has no config");
      return NULL;
    }
  if (JSON_NODE_HOLDS_OBJECT (config))
    name = member_string (json_node_get_object (config), "name");
  model = imp.model = kilt_model_new (name ? name : cls);
  model->loss = loss;
  if (!scan_format (&imp, config, error))
    return NULL;
  if (imp.format == FORMAT_UNKNOWN)
    imp.format = FORMAT_CHANNELS_LAST;

  if (g_str_equal (cls, "Sequential"))
    {
      /* Keras 2.0-2.1 wrote a Sequential's config as the bare list of its layers. */
      JsonArray *layers = JSON_NODE_HOLDS_ARRAY (config)
                              ? json_node_get_array (config)
                              : member_array (json_node_get_object (config), "layers");
      if (layers == NULL)
        {
          set_error (error, &imp, "the Sequential model has no layers list");
          return NULL;
        }
      ok = import_sequential (&imp, layers, root, error);
    }
  else if (g_str_equal (cls, "Functional") || g_str_equal (cls, "Model"))
    {
      if (!JSON_NODE_HOLDS_OBJECT (config))
        {
          set_error (error, &imp, "the functional model's config is not an object");
          return NULL;
        }
      ok = import_functional (&imp, json_node_get_object (config), error);
    }
  else
    {
      set_error (error, &imp,
                 "model class %s is not supported; Kilt imports Sequential and functional "
                 "(Model) architectures",
                 cls);
      return NULL;
    }
  if (!ok)
    return NULL;
  if (!kilt_model_build (model, error))
    {
      g_prefix_error (error, "%s: ", imp.source);
      return NULL;
    }
  if (notes && note_text->len)
    *notes = g_strdup (note_text->str);
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
