/* Kilt's own JSON model format (load, save) and the model presets shipped with Kilt. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-model-json"

#include "config.h"

#include "kilt-model-json.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Ints above this are refused: they would overflow shape arithmetic long before they fit. */
#define MAX_DIM (1u << 24)

static const char *type_names[KILT_LAYER_N_TYPES] = {
  [KILT_LAYER_INPUT] = "InputLayer",
  [KILT_LAYER_CONV2D] = "Conv2D",
  [KILT_LAYER_DENSE] = "Dense",
  [KILT_LAYER_MAX_POOL2D] = "MaxPooling2D",
  [KILT_LAYER_AVG_POOL2D] = "AveragePooling2D",
  [KILT_LAYER_GLOBAL_AVG_POOL2D] = "GlobalAveragePooling2D",
  [KILT_LAYER_ACTIVATION] = "Activation",
  [KILT_LAYER_DROPOUT] = "Dropout",
  [KILT_LAYER_FLATTEN] = "Flatten",
  [KILT_LAYER_BATCH_NORM] = "BatchNormalization",
  [KILT_LAYER_ADD] = "Add",
  [KILT_LAYER_CONCATENATE] = "Concatenate",
  [KILT_LAYER_ZERO_PADDING2D] = "ZeroPadding2D",
  [KILT_LAYER_CROPPING2D] = "Cropping2D",
  [KILT_LAYER_RESCALING] = "Rescaling",
  [KILT_LAYER_RESHAPE] = "Reshape",
  [KILT_LAYER_MULTIPLY] = "Multiply",
  [KILT_LAYER_DEPTHWISE_CONV2D] = "DepthwiseConv2D",
  [KILT_LAYER_NORMALIZATION] = "Normalization",
  [KILT_LAYER_GLOBAL_MAX_POOL2D] = "GlobalMaxPooling2D",
  [KILT_LAYER_SUBTRACT] = "Subtract",
  [KILT_LAYER_AVERAGE] = "Average",
  [KILT_LAYER_MAXIMUM] = "Maximum",
  [KILT_LAYER_MINIMUM] = "Minimum",
  [KILT_LAYER_UPSAMPLING2D] = "UpSampling2D",
  [KILT_LAYER_CONV2D_TRANSPOSE] = "Conv2DTranspose",
  [KILT_LAYER_PERMUTE] = "Permute",
  [KILT_LAYER_EMBEDDING] = "Embedding",
  [KILT_LAYER_LAYER_NORM] = "LayerNormalization",
  [KILT_LAYER_LSTM] = "LSTM",
  [KILT_LAYER_GRU] = "GRU",
  [KILT_LAYER_MASKING] = "Masking",
};

const char *
kilt_layer_type_name (KiltLayerType type)
{
  if ((guint)type >= KILT_LAYER_N_TYPES)
    return NULL;
  return type_names[type];
}

gboolean
kilt_layer_type_from_name (const char *name, KiltLayerType *out)
{
  for (int t = 0; t < KILT_LAYER_N_TYPES; t++)
    if (g_ascii_strcasecmp (name, type_names[t]) == 0)
      {
        *out = (KiltLayerType)t;
        return TRUE;
      }
  return FALSE;
}

/* ---- fields ------------------------------------------------------------------------------- */

typedef enum
{
  F_FILTERS = 1 << 0,
  F_UNITS = 1 << 1,
  F_KERNEL_SIZE = 1 << 2,
  F_POOL_SIZE = 1 << 3,
  F_STRIDES = 1 << 4,
  F_PADDING = 1 << 5,
  F_USE_BIAS = 1 << 6,
  F_ACTIVATION = 1 << 7,
  F_ALPHA = 1 << 8,
  F_INIT = 1 << 9,
  F_RATE = 1 << 10,
  F_MOMENTUM = 1 << 11,
  F_EPSILON = 1 << 12,
  F_SIDES = 1 << 13,
  F_NEGATIVE_SLOPE = 1 << 14,
  F_MAX_VALUE = 1 << 15,
  F_THRESHOLD = 1 << 16,
  F_SCALE = 1 << 17,
  F_OFFSET = 1 << 18,
  F_TARGET_SHAPE = 1 << 19,
  F_MASK = 1 << 20,
  F_GAMMA = 1 << 21,
  F_BETA = 1 << 22,
  F_DEPTH_MULTIPLIER = 1 << 23,
  F_DILATION = 1 << 24,
  F_MEAN = 1 << 25,
  F_VARIANCE = 1 << 26,
  F_SIZE = 1 << 27,
  F_GROUPS = 1 << 28,
  F_INTERPOLATION = 1 << 29,
  F_PERMUTATION = 1 << 30,
} Field;
/* Past an int's bits: the masks are 64-bit. */
#define F_INPUT_DIM            (G_GUINT64_CONSTANT (1) << 31)
#define F_OUTPUT_DIM           (G_GUINT64_CONSTANT (1) << 32)
#define FBIT(f)                (G_GUINT64_CONSTANT (1) << (f))
#define F_RECURRENT_ACTIVATION FBIT (33)
#define F_RETURN_SEQUENCES     FBIT (34)
#define F_GO_BACKWARDS         FBIT (35)
#define F_RESET_AFTER          FBIT (36)
#define F_KEEP_TIME_ORDER      FBIT (37)
#define F_STEP_MASK            FBIT (38)
#define F_MASK_VALUE           FBIT (39)

static const char *field_names[] = {
  "filters",
  "units",
  "kernel_size",
  "pool_size",
  "strides",
  "padding",
  "use_bias",
  "activation",
  "alpha",
  "kernel_initializer",
  "rate",
  "momentum",
  "epsilon",
  "sides",
  "negative_slope",
  "max_value",
  "threshold",
  "scale",
  "offset",
  "target_shape",
  "mask",
  "gamma",
  "beta",
  "depth_multiplier",
  "dilation_rate",
  "mean",
  "variance",
  "size",
  "groups",
  "interpolation",
  "permutation",
  "input_dim",
  "output_dim",
  "recurrent_activation",
  "return_sequences",
  "go_backwards",
  "reset_after",
  "keep_time_order",
  "step_mask",
  "mask_value",
};
/* One name per field bit: a bit without its name is a field no file can give. */
G_STATIC_ASSERT (G_N_ELEMENTS (field_names) == 40 && F_OUTPUT_DIM == FBIT (32)
                 && F_MASK_VALUE == FBIT (39));

/* Allowed fields per type, and the ones a file must give. */
static const struct
{
  guint64 allowed, required;
} type_fields[KILT_LAYER_N_TYPES] = {
  [KILT_LAYER_CONV2D] = { F_FILTERS | F_KERNEL_SIZE | F_STRIDES | F_PADDING | F_USE_BIAS
                              | F_ACTIVATION | F_ALPHA | F_INIT | F_DILATION | F_GROUPS,
                          F_FILTERS },
  [KILT_LAYER_DENSE] = { F_UNITS | F_USE_BIAS | F_ACTIVATION | F_ALPHA | F_INIT, F_UNITS },
  [KILT_LAYER_MAX_POOL2D] = { F_POOL_SIZE | F_STRIDES | F_PADDING, 0 },
  [KILT_LAYER_AVG_POOL2D] = { F_POOL_SIZE | F_STRIDES | F_PADDING, 0 },
  [KILT_LAYER_GLOBAL_AVG_POOL2D] = { F_STEP_MASK | F_MASK_VALUE, 0 },
  [KILT_LAYER_MASKING] = { F_MASK_VALUE, 0 },
  [KILT_LAYER_ACTIVATION]
  = { F_ACTIVATION | F_ALPHA | F_NEGATIVE_SLOPE | F_MAX_VALUE | F_THRESHOLD, F_ACTIVATION },
  [KILT_LAYER_DROPOUT] = { F_RATE | F_MASK, F_RATE },
  [KILT_LAYER_FLATTEN] = { 0, 0 },
  [KILT_LAYER_BATCH_NORM] = { F_MOMENTUM | F_EPSILON | F_GAMMA | F_BETA, 0 },
  [KILT_LAYER_ADD] = { 0, 0 },
  [KILT_LAYER_CONCATENATE] = { 0, 0 },
  [KILT_LAYER_ZERO_PADDING2D] = { F_SIDES, F_SIDES },
  [KILT_LAYER_CROPPING2D] = { F_SIDES, F_SIDES },
  [KILT_LAYER_RESCALING] = { F_SCALE | F_OFFSET, F_SCALE },
  [KILT_LAYER_RESHAPE] = { F_TARGET_SHAPE, F_TARGET_SHAPE },
  [KILT_LAYER_MULTIPLY] = { 0, 0 },
  [KILT_LAYER_DEPTHWISE_CONV2D] = { F_DEPTH_MULTIPLIER | F_KERNEL_SIZE | F_STRIDES | F_PADDING
                                        | F_USE_BIAS | F_ACTIVATION | F_ALPHA | F_INIT | F_DILATION,
                                    0 },
  [KILT_LAYER_NORMALIZATION] = { F_MEAN | F_VARIANCE, 0 },
  [KILT_LAYER_UPSAMPLING2D] = { F_SIZE | F_INTERPOLATION, 0 },
  [KILT_LAYER_PERMUTE] = { F_PERMUTATION, F_PERMUTATION },
  [KILT_LAYER_CONV2D_TRANSPOSE] = { F_FILTERS | F_KERNEL_SIZE | F_STRIDES | F_PADDING | F_USE_BIAS
                                        | F_ACTIVATION | F_ALPHA | F_INIT,
                                    F_FILTERS },
  [KILT_LAYER_LAYER_NORM] = { F_EPSILON | F_GAMMA | F_BETA, 0 },
  [KILT_LAYER_EMBEDDING] = { F_INPUT_DIM | F_OUTPUT_DIM, F_INPUT_DIM | F_OUTPUT_DIM },
  [KILT_LAYER_LSTM]
  = { F_UNITS | F_USE_BIAS | F_RECURRENT_ACTIVATION | F_RETURN_SEQUENCES | F_GO_BACKWARDS
          | F_KEEP_TIME_ORDER | F_INIT | F_STEP_MASK | F_MASK_VALUE,
      F_UNITS },
  [KILT_LAYER_GRU]
  = { F_UNITS | F_USE_BIAS | F_RECURRENT_ACTIVATION | F_RETURN_SEQUENCES | F_GO_BACKWARDS
          | F_KEEP_TIME_ORDER | F_RESET_AFTER | F_INIT | F_STEP_MASK | F_MASK_VALUE,
      F_UNITS },
};

static int
field_index (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (field_names); i++)
    if (g_str_equal (name, field_names[i]))
      return (int)i;
  return -1;
}

static char *
field_list (guint64 mask)
{
  GString *s = g_string_new (NULL);

  g_string_append (s, "name, type, inputs");
  for (guint i = 0; i < G_N_ELEMENTS (field_names); i++)
    if (mask & FBIT (i))
      g_string_append_printf (s, ", %s", field_names[i]);
  g_string_append (s, ", trainable, lr_multiplier");
  return g_string_free (s, FALSE);
}

/* ---- parsing ------------------------------------------------------------------------------ */

typedef struct
{
  const char *source;
  const char *layer; /* NULL at the top level */
  const char *type;
} Where;

static void G_GNUC_PRINTF (3, 4) set_error (GError **error, const Where *w, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (w->layer)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: layer %s (%s): %s",
                 w->source, w->layer, w->type ? w->type : "?", msg);
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: %s", w->source, msg);
}

static gboolean
is_int (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64;
}

static gboolean
is_number (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node)
         && (json_node_get_value_type (node) == G_TYPE_INT64
             || json_node_get_value_type (node) == G_TYPE_DOUBLE);
}

static gboolean
is_string (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING;
}

static gboolean
get_dim (JsonNode *node, const Where *w, const char *field, guint min, guint *out, GError **error)
{
  gint64 v;

  if (!is_int (node))
    {
      set_error (error, w, "%s must be an integer", field);
      return FALSE;
    }
  v = json_node_get_int (node);
  if (v < min || v > MAX_DIM)
    {
      set_error (error, w, "%s must be an integer from %u to %u, got %" G_GINT64_FORMAT, field, min,
                 MAX_DIM, v);
      return FALSE;
    }
  *out = (guint)v;
  return TRUE;
}

/* An int n (n x n) or a pair [h, w]. */
static gboolean
get_pair (JsonNode *node, const Where *w, const char *field, guint *h, guint *wd, GError **error)
{
  JsonArray *a;

  if (is_int (node))
    {
      if (!get_dim (node, w, field, 1, h, error))
        return FALSE;
      *wd = *h;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_ARRAY (node) || json_array_get_length (a = json_node_get_array (node)) != 2)
    {
      set_error (error, w, "%s must be an integer or a pair of integers [height, width]", field);
      return FALSE;
    }
  return get_dim (json_array_get_element (a, 0), w, field, 1, h, error)
         && get_dim (json_array_get_element (a, 1), w, field, 1, wd, error);
}

static gboolean
get_float (JsonNode *node, const Where *w, const char *field, double lo, double hi,
           gboolean hi_open, float *out, GError **error)
{
  double v;

  if (!is_number (node))
    {
      set_error (error, w, "%s must be a number", field);
      return FALSE;
    }
  v = json_node_get_double (node);
  if (!(v >= lo && (hi_open ? v < hi : v <= hi)))
    {
      set_error (error, w, "%s must be in [%g, %g%s, got %g", field, lo, hi, hi_open ? ")" : "]",
                 v);
      return FALSE;
    }
  *out = (float)v;
  return TRUE;
}

/* "whiten", or {"whiten": {"samples": N, "epsilon": e, "bias_epochs": k}} with any of the
 * three left at airbench94's values. */
static gboolean
parse_whiten (JsonNode *node, const Where *w, KiltLayerConfig *cfg, GError **error)
{
  JsonNode *opts;
  g_autoptr (GList) members = NULL;

  if (g_strcmp0 (w->type, "Conv2D") != 0)
    {
      set_error (error, w, "kernel_initializer \"whiten\" is for a Conv2D");
      return FALSE;
    }
  cfg->init = KILT_INIT_WHITEN;
  if (is_string (node))
    return TRUE;
  opts = json_object_get_member (json_node_get_object (node), "whiten");
  if (!JSON_NODE_HOLDS_OBJECT (opts))
    {
      set_error (error, w,
                 "kernel_initializer whiten must be an object {\"samples\": N, \"epsilon\": e, "
                 "\"bias_epochs\": k}");
      return FALSE;
    }
  members = json_object_get_members (json_node_get_object (opts));
  for (GList *l = members; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (json_node_get_object (opts), l->data);
      if (g_str_equal (l->data, "samples"))
        {
          if (!get_dim (v, w, "kernel_initializer whiten samples", 1, &cfg->whiten_samples, error))
            return FALSE;
        }
      else if (g_str_equal (l->data, "bias_epochs"))
        {
          if (!get_dim (v, w, "kernel_initializer whiten bias_epochs", 0, &cfg->whiten_bias_epochs,
                        error))
            return FALSE;
        }
      else if (g_str_equal (l->data, "epsilon"))
        {
          if (!get_float (v, w, "kernel_initializer whiten epsilon", 0.0, 1e30, FALSE,
                          &cfg->whiten_epsilon, error))
            return FALSE;
        }
      else
        {
          set_error (error, w,
                     "kernel_initializer whiten: unknown field \"%s\"; expected samples, "
                     "epsilon, bias_epochs",
                     (const char *)l->data);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
parse_field (int f, JsonNode *node, const Where *w, KiltLayerConfig *cfg, GError **error)
{
  const char *name = field_names[f];

  switch (FBIT (f))
    {
      case F_FILTERS:
      case F_UNITS:
      case F_DEPTH_MULTIPLIER:
      case F_OUTPUT_DIM:
        return get_dim (node, w, name, 1, &cfg->units, error);
      case F_INPUT_DIM:
        return get_dim (node, w, name, 1, &cfg->input_dim, error);
      case F_INTERPOLATION:
        if (is_string (node) && g_str_equal (json_node_get_string (node), "bilinear"))
          cfg->bilinear = TRUE;
        else if (is_string (node) && g_str_equal (json_node_get_string (node), "nearest"))
          cfg->bilinear = FALSE;
        else
          {
            set_error (error, w, "interpolation must be \"nearest\" or \"bilinear\"");
            return FALSE;
          }
        return TRUE;
      case F_PERMUTATION:
        {
          JsonArray *a = JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
          guint seen = 0;
          if (a == NULL || json_array_get_length (a) != 3)
            {
              set_error (error, w,
                         "permutation must list the input axes (0 c, 1 h, 2 w) of the "
                         "three output axes");
              return FALSE;
            }
          for (guint i = 0; i < 3; i++)
            {
              if (!get_dim (json_array_get_element (a, i), w, name, 0, &cfg->perm[i], error))
                return FALSE;
              if (cfg->perm[i] > 2 || (seen & (1u << cfg->perm[i])))
                {
                  set_error (error, w, "permutation must hold 0, 1 and 2 once each");
                  return FALSE;
                }
              seen |= 1u << cfg->perm[i];
            }
          return TRUE;
        }
      case F_GROUPS:
        if (!get_dim (node, w, name, 1, &cfg->groups, error))
          return FALSE;
        cfg->groups = cfg->groups > 1 ? cfg->groups : 0; /* 1 is stored as 0, as dilation */
        return TRUE;
      case F_KERNEL_SIZE:
      case F_POOL_SIZE:
      case F_SIZE:
        return get_pair (node, w, name, &cfg->kh, &cfg->kw, error);
      case F_STRIDES:
        return get_pair (node, w, name, &cfg->sh, &cfg->sw, error);
      case F_PADDING:
        if (is_string (node) && g_str_equal (json_node_get_string (node), "same"))
          cfg->same = TRUE;
        else if (is_string (node) && g_str_equal (json_node_get_string (node), "valid"))
          cfg->same = FALSE;
        else
          {
            set_error (error, w, "padding must be \"same\" or \"valid\"");
            return FALSE;
          }
        return TRUE;
      case F_USE_BIAS:
      case F_RETURN_SEQUENCES:
      case F_GO_BACKWARDS:
      case F_RESET_AFTER:
      case F_KEEP_TIME_ORDER:
        {
          guint64 bit = (guint64)1 << f;
          gboolean *dst = bit == F_USE_BIAS           ? &cfg->use_bias
                          : bit == F_RETURN_SEQUENCES ? &cfg->return_sequences
                          : bit == F_GO_BACKWARDS     ? &cfg->go_backwards
                          : bit == F_KEEP_TIME_ORDER  ? &cfg->keep_time_order
                                                      : &cfg->reset_after;
          if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
            {
              set_error (error, w, "%s must be true or false", name);
              return FALSE;
            }
          *dst = json_node_get_boolean (node);
          return TRUE;
        }
      case F_RECURRENT_ACTIVATION:
        if (!is_string (node)
            || !kilt_activation_from_name (json_node_get_string (node), &cfg->recurrent_activation)
            || (cfg->recurrent_activation != KILT_ACT_SIGMOID
                && cfg->recurrent_activation != KILT_ACT_HARD_SIGMOID
                && cfg->recurrent_activation != KILT_ACT_HARD_SIGMOID_K2))
          {
            set_error (error, w,
                       "recurrent_activation must be \"sigmoid\", \"hard_sigmoid\" or "
                       "\"hard_sigmoid_keras2\"");
            return FALSE;
          }
        return TRUE;
      case F_ACTIVATION:
        if (!is_string (node)
            || !kilt_activation_from_name (json_node_get_string (node), &cfg->activation))
          {
            GString *names = g_string_new (NULL);
            for (int a = 0; a < KILT_ACT_N_TYPES; a++)
              g_string_append_printf (names, "%s%s", a ? ", " : "", kilt_activation_name (a));
            set_error (error, w, "activation must be one of %s", names->str);
            g_string_free (names, TRUE);
            return FALSE;
          }
        return TRUE;
      case F_SIDES:
        {
          JsonArray *a;
          if (!JSON_NODE_HOLDS_ARRAY (node)
              || json_array_get_length (a = json_node_get_array (node)) != 4)
            {
              set_error (error, w, "sides must be four integers [top, bottom, left, right]");
              return FALSE;
            }
          for (guint i = 0; i < 4; i++)
            if (!get_dim (json_array_get_element (a, i), w, name, 0, &cfg->pad[i], error))
              return FALSE;
          return TRUE;
        }
      case F_NEGATIVE_SLOPE:
        return get_float (node, w, name, 0.0, 1e6, FALSE, &cfg->negative_slope, error);
      case F_MAX_VALUE:
        return get_float (node, w, name, 0.0, 1e30, FALSE, &cfg->max_value, error);
      case F_THRESHOLD:
        return get_float (node, w, name, -1e30, 1e30, FALSE, &cfg->threshold, error);
      case F_SCALE:
        return get_float (node, w, name, -1e30, 1e30, FALSE, &cfg->scale, error);
      case F_OFFSET:
        return get_float (node, w, name, -1e30, 1e30, FALSE, &cfg->offset, error);
      case F_TARGET_SHAPE:
        {
          JsonArray *a;
          if (!JSON_NODE_HOLDS_ARRAY (node)
              || json_array_get_length (a = json_node_get_array (node)) != 3)
            {
              set_error (error, w, "target_shape must be [channels, height, width]");
              return FALSE;
            }
          /* 0: what the others leave. */
          return get_dim (json_array_get_element (a, 0), w, name, 0, &cfg->target.c, error)
                 && get_dim (json_array_get_element (a, 1), w, name, 0, &cfg->target.h, error)
                 && get_dim (json_array_get_element (a, 2), w, name, 0, &cfg->target.w, error);
        }
      case F_MEAN:
      case F_VARIANCE:
        {
          JsonArray *a = JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
          guint n = a ? json_array_get_length (a) : 0;
          float *dst = FBIT (f) == F_MEAN ? cfg->norm_mean : cfg->norm_var;
          if (n == 0 || n > KILT_NORM_CONST_MAX || (cfg->norm_n && cfg->norm_n != n))
            {
              set_error (error, w,
                         "%s must be a list of 1 to %d numbers, as long as the other of mean and "
                         "variance",
                         name, KILT_NORM_CONST_MAX);
              return FALSE;
            }
          for (guint i = 0; i < n; i++)
            if (!get_float (json_array_get_element (a, i), w, name, -1e30, 1e30, FALSE, &dst[i],
                            error))
              return FALSE;
          if (cfg->norm_n == 0)
            for (guint i = 0; i < n; i++)
              {
                /* The other list's defaults until it is read: mean 0, variance 1. */
                if (FBIT (f) == F_MEAN)
                  cfg->norm_var[i] = 1.0f;
                else
                  cfg->norm_mean[i] = 0.0f;
              }
          cfg->norm_n = n;
          return TRUE;
        }
      case F_DILATION:
        if (!get_pair (node, w, name, &cfg->dil_h, &cfg->dil_w, error))
          return FALSE;
        /* 1 is stored as 0 ("none"), as the importer and the defaults have it. */
        cfg->dil_h = cfg->dil_h > 1 ? cfg->dil_h : 0;
        cfg->dil_w = cfg->dil_w > 1 ? cfg->dil_w : 0;
        return TRUE;
      case F_GAMMA:
      case F_BETA:
        if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
          {
            set_error (error, w, "%s must be true or false", name);
            return FALSE;
          }
        if (FBIT (f) == F_GAMMA)
          cfg->bn_no_scale = !json_node_get_boolean (node);
        else
          cfg->bn_no_center = !json_node_get_boolean (node);
        return TRUE;
      case F_MASK:
        {
          const char *masks[] = { "element", "channel", "sample" };
          for (guint i = 0; i < G_N_ELEMENTS (masks); i++)
            if (is_string (node) && g_str_equal (json_node_get_string (node), masks[i]))
              {
                cfg->dropout_mask = (KiltDropoutMask)i;
                return TRUE;
              }
          set_error (error, w, "mask must be \"element\", \"channel\" or \"sample\"");
          return FALSE;
        }
      case F_STEP_MASK:
        /* The layer's last input is the mask's source. */
        if (is_string (node) && g_str_equal (json_node_get_string (node), "ids"))
          cfg->step_mask = KILT_STEP_MASK_IDS;
        else if (is_string (node) && g_str_equal (json_node_get_string (node), "values"))
          cfg->step_mask = KILT_STEP_MASK_VALUES;
        else
          {
            set_error (error, w, "step_mask must be \"ids\" or \"values\"");
            return FALSE;
          }
        return TRUE;
      case F_MASK_VALUE:
        return get_float (node, w, name, -1e30, 1e30, FALSE, &cfg->mask_value, error);
      case F_ALPHA:
        return get_float (node, w, name, 0.0, 1e6, FALSE, &cfg->alpha, error);
      case F_INIT:
        if (is_string (node) && g_str_equal (json_node_get_string (node), "glorot_uniform"))
          cfg->init = KILT_INIT_GLOROT_UNIFORM;
        else if (is_string (node) && g_str_equal (json_node_get_string (node), "he_normal"))
          cfg->init = KILT_INIT_HE_NORMAL;
        else if (JSON_NODE_HOLDS_OBJECT (node)
                 && json_object_get_size (json_node_get_object (node)) == 1
                 && json_object_get_member (json_node_get_object (node), "constant"))
          {
            /* {"constant": v}: every weight starts at v (Keras' LayerScale). */
            cfg->init = KILT_INIT_CONSTANT;
            return get_float (json_object_get_member (json_node_get_object (node), "constant"), w,
                              "kernel_initializer constant", -1e30, 1e30, FALSE, &cfg->init_value,
                              error);
          }
        else if ((is_string (node) && g_str_equal (json_node_get_string (node), "whiten"))
                 || (JSON_NODE_HOLDS_OBJECT (node)
                     && json_object_get_size (json_node_get_object (node)) == 1
                     && json_object_get_member (json_node_get_object (node), "whiten")))
          return parse_whiten (node, w, cfg, error);
        else
          {
            set_error (error, w,
                       "kernel_initializer must be \"glorot_uniform\", \"he_normal\", "
                       "{\"constant\": value} or \"whiten\" (Conv2D)");
            return FALSE;
          }
        return TRUE;
      case F_RATE:
        return get_float (node, w, name, 0.0, 1.0, TRUE, &cfg->rate, error);
      case F_MOMENTUM:
        return get_float (node, w, name, 0.0, 1.0, FALSE, &cfg->momentum, error);
      case F_EPSILON:
        if (!get_float (node, w, name, 0.0, 1.0, FALSE, &cfg->epsilon, error))
          return FALSE;
        if (cfg->epsilon <= 0.0f)
          {
            set_error (error, w, "epsilon must be above 0");
            return FALSE;
          }
        return TRUE;
      default:
        g_assert_not_reached ();
    }
}

static gboolean
parse_input (JsonNode *node, const Where *top, KiltModel *model, GError **error)
{
  Where w = { top->source, "input", "InputLayer" };
  JsonObject *o;
  const char *name = "input";
  KiltShape shape = { 0, 1, 1 };
  const char *dims[] = { "channels", "height", "width" };
  guint *out[] = { &shape.c, &shape.h, &shape.w };

  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    {
      set_error (error, top,
                 "expected an \"input\" object: {\"name\": ..., \"channels\": C, \"height\": H, "
                 "\"width\": W}");
      return FALSE;
    }
  o = json_node_get_object (node);
  if (json_object_has_member (o, "name"))
    {
      JsonNode *n = json_object_get_member (o, "name");
      if (!is_string (n) || *json_node_get_string (n) == '\0')
        {
          set_error (error, &w, "name must be a non-empty string");
          return FALSE;
        }
      name = json_node_get_string (n);
      w.layer = name;
    }
  for (guint i = 0; i < 3; i++)
    {
      JsonNode *n = json_object_get_member (o, dims[i]);
      if (n == NULL && i == 0)
        {
          set_error (error, &w, "expected a field \"channels\" (then \"height\", \"width\")");
          return FALSE;
        }
      if (n && !get_dim (n, &w, dims[i], 1, out[i], error))
        return FALSE;
    }
  {
    g_autoptr (GList) members = json_object_get_members (o);
    for (GList *l = members; l; l = l->next)
      if (!g_str_equal (l->data, "name") && !g_str_equal (l->data, "channels")
          && !g_str_equal (l->data, "height") && !g_str_equal (l->data, "width"))
        {
          set_error (error, &w, "unknown field \"%s\"; expected name, channels, height, width",
                     (const char *)l->data);
          return FALSE;
        }
  }
  kilt_model_add_input (model, name, shape);
  return TRUE;
}

static gboolean
parse_layer (JsonNode *node, guint index, const Where *top, KiltModel *model, GError **error)
{
  g_autofree char *fallback = g_strdup_printf ("#%u", index + 1);
  Where w = { top->source, fallback, NULL };
  JsonObject *o;
  JsonNode *n;
  KiltLayerType type;
  KiltLayerConfig cfg;
  guint inputs[KILT_MAX_INPUTS];
  guint n_inputs = 0;
  const char *name = NULL;
  guint64 seen = 0;
  gboolean trainable = TRUE;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      set_error (error, &w, "expected an object {\"name\": ..., \"type\": ..., ...}");
      return FALSE;
    }
  o = json_node_get_object (node);
  if ((n = json_object_get_member (o, "name")))
    {
      if (!is_string (n) || *json_node_get_string (n) == '\0')
        {
          set_error (error, &w, "name must be a non-empty string");
          return FALSE;
        }
      name = w.layer = json_node_get_string (n);
    }
  n = json_object_get_member (o, "type");
  if (n == NULL || !is_string (n))
    {
      set_error (error, &w, "expected a field \"type\" naming the layer type (\"Conv2D\", ...)");
      return FALSE;
    }
  w.type = json_node_get_string (n);
  if (!kilt_layer_type_from_name (w.type, &type) || type == KILT_LAYER_INPUT)
    {
      /* Every type the format has (the list above kept drifting from the table). */
      g_autoptr (GString) names = g_string_new (NULL);
      for (int t = KILT_LAYER_INPUT + 1; t < KILT_LAYER_N_TYPES; t++)
        g_string_append_printf (names, "%s%s", t == KILT_LAYER_INPUT + 1 ? "" : ", ",
                                type_names[t]);
      set_error (error, &w, "unknown layer type; expected one of %s", names->str);
      return FALSE;
    }
  w.type = type_names[type];
  if (name && kilt_model_find (model, name))
    {
      set_error (error, &w, "the name is used by an earlier layer; names must be unique");
      return FALSE;
    }
  if (kilt_layer_class_get (type) == NULL)
    {
      set_error (error, &w, "layer type %s is not available in this build of Kilt", w.type);
      return FALSE;
    }

  if ((n = json_object_get_member (o, "inputs")))
    {
      JsonArray *a;
      if (!JSON_NODE_HOLDS_ARRAY (n)
          || (a = json_node_get_array (n), json_array_get_length (a) == 0)
          || json_array_get_length (a) > KILT_MAX_INPUTS)
        {
          set_error (error, &w, "inputs must be a list of 1 to %d earlier layer names",
                     KILT_MAX_INPUTS);
          return FALSE;
        }
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          KiltNode *src;
          if (!is_string (e))
            {
              set_error (error, &w, "inputs must be a list of earlier layer names");
              return FALSE;
            }
          src = kilt_model_find (model, json_node_get_string (e));
          if (src == NULL)
            {
              set_error (error, &w, "input \"%s\" names no earlier layer",
                         json_node_get_string (e));
              return FALSE;
            }
          inputs[n_inputs++] = src->index;
        }
    }
  else
    inputs[n_inputs++] = kilt_model_n_nodes (model) - 1; /* a chain: the layer before */

  /* Any layer may be frozen (transfer learning); true is the default and not written. */
  if ((n = json_object_get_member (o, "trainable")))
    {
      if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
        {
          set_error (error, &w, "trainable must be true or false");
          return FALSE;
        }
      trainable = json_node_get_boolean (n);
    }

  cfg = kilt_layer_config_default (type);
  /* Any layer's rate may be scaled (airbench94's BatchNorm biases); 1 is not written. */
  if ((n = json_object_get_member (o, "lr_multiplier"))
      && (!get_float (n, &w, "lr_multiplier", 0.0, 1e6, FALSE, &cfg.lr_multiplier, error)))
    return FALSE;
  if (n && cfg.lr_multiplier <= 0.0f)
    {
      set_error (error, &w, "lr_multiplier must be above 0 (freeze a layer with trainable false)");
      return FALSE;
    }
  {
    g_autoptr (GList) members = json_object_get_members (o);
    for (GList *l = members; l; l = l->next)
      {
        const char *key = l->data;
        int f;
        if (g_str_equal (key, "name") || g_str_equal (key, "type") || g_str_equal (key, "inputs")
            || g_str_equal (key, "trainable") || g_str_equal (key, "lr_multiplier"))
          continue;
        f = field_index (key);
        if (f < 0 || !(type_fields[type].allowed & FBIT (f)))
          {
            g_autofree char *expected = field_list (type_fields[type].allowed);
            set_error (error, &w, "unknown field \"%s\"; expected %s", key, expected);
            return FALSE;
          }
        if (!parse_field (f, json_object_get_member (o, key), &w, &cfg, error))
          return FALSE;
        seen |= FBIT (f);
      }
  }
  for (guint f = 0; f < G_N_ELEMENTS (field_names); f++)
    if ((type_fields[type].required & FBIT (f)) && !(seen & FBIT (f)))
      {
        set_error (error, &w, "expected a field \"%s\"", field_names[f]);
        return FALSE;
      }
  kilt_model_set_trainable (model, kilt_model_add (model, type, name, &cfg, n_inputs, inputs),
                            trainable);
  return TRUE;
}

/* Parses without building, so that presets can adapt the shapes first. */
static KiltModel *
parse_model (const char *data, gssize length, const char *source, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (KiltModel) model = NULL;
  Where top = { source, NULL, NULL };
  JsonObject *root;
  JsonNode *n;
  JsonArray *layers;

  /* Before json-glib, whose parser recurses per level and whose strings stop at a NUL. */
  if (!kilt_json_check_text (data, length, &local))
    {
      set_error (error, &top, "%s", local->message);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, data, length, &local))
    {
      g_autofree char *msg = kilt_json_clean_message (local->message);
      set_error (error, &top, "not valid JSON: %s", msg);
      return NULL;
    }
  if (json_parser_get_root (parser) == NULL
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      set_error (error, &top, "expected a JSON object with \"format\": \"%s\"",
                 KILT_MODEL_FORMAT_NAME);
      return NULL;
    }
  root = json_node_get_object (json_parser_get_root (parser));
  n = json_object_get_member (root, "format");
  if (n == NULL || !is_string (n)
      || !g_str_equal (json_node_get_string (n), KILT_MODEL_FORMAT_NAME))
    {
      if (json_object_has_member (root, "class_name"))
        set_error (error, &top,
                   "this looks like a Keras model (to_json); import it as a Keras file instead");
      else
        set_error (error, &top, "expected \"format\": \"%s\" at the top level",
                   KILT_MODEL_FORMAT_NAME);
      return NULL;
    }
  n = json_object_get_member (root, "version");
  if (n == NULL || !is_int (n))
    {
      set_error (error, &top, "expected an integer \"version\" (this Kilt reads version %d)",
                 KILT_MODEL_FORMAT_VERSION);
      return NULL;
    }
  if (json_node_get_int (n) != KILT_MODEL_FORMAT_VERSION)
    {
      set_error (error, &top,
                 "format version %" G_GINT64_FORMAT " is not supported; this Kilt reads version "
                 "%d",
                 json_node_get_int (n), KILT_MODEL_FORMAT_VERSION);
      return NULL;
    }
  n = json_object_get_member (root, "name");
  if (n && !is_string (n))
    {
      set_error (error, &top, "name must be a string");
      return NULL;
    }
  model = kilt_model_new (n ? json_node_get_string (n) : NULL);
  {
    static const char *known[] = { "format", "version", "name",   "description",
                                   "loss",   "input",   "layers", "keras_architecture",
                                   NULL };
    g_autoptr (GList) members = json_object_get_members (root);
    for (GList *l = members; l; l = l->next)
      if (!g_strv_contains (known, l->data))
        {
          set_error (error, &top,
                     "unknown field \"%s\" at the top level; expected format, version, name, "
                     "description, loss, input, layers, keras_architecture",
                     (const char *)l->data);
          return NULL;
        }
  }
  if ((n = json_object_get_member (root, "loss")))
    {
      if (!is_string (n) || !kilt_loss_from_name (json_node_get_string (n), &model->loss))
        {
          set_error (error, &top,
                     "loss must be one of softmax_cross_entropy, binary_cross_entropy, mse");
          return NULL;
        }
    }
  if ((n = json_object_get_member (root, "keras_architecture")))
    {
      if (!is_string (n))
        {
          set_error (error, &top, "keras_architecture must be a string (Keras' to_json text)");
          return NULL;
        }
      model->keras_json = g_strdup (json_node_get_string (n));
    }
  if (!parse_input (json_object_get_member (root, "input"), &top, model, error))
    return NULL;
  n = json_object_get_member (root, "layers");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    {
      set_error (error, &top, "expected a \"layers\" list");
      return NULL;
    }
  layers = json_node_get_array (n);
  if (json_array_get_length (layers) > KILT_MODEL_MAX_LAYERS)
    {
      set_error (error, &top, "the model has %u layers; Kilt takes at most %u",
                 json_array_get_length (layers), KILT_MODEL_MAX_LAYERS);
      return NULL;
    }
  for (guint i = 0; i < json_array_get_length (layers); i++)
    if (!parse_layer (json_array_get_element (layers, i), i, &top, model, error))
      return NULL;
  return g_steal_pointer (&model);
}

KiltModel *
kilt_model_load_json_data (const char *data, gssize length, const char *source, GError **error)
{
  g_autoptr (KiltModel) model = NULL;

  g_return_val_if_fail (data != NULL, NULL);
  if (source == NULL)
    source = "model";
  model = parse_model (data, length, source, error);
  if (model == NULL)
    return NULL;
  if (!kilt_model_build (model, error))
    {
      g_prefix_error (error, "%s: ", source);
      return NULL;
    }
  return g_steal_pointer (&model);
}

KiltModel *
kilt_model_load_json_file (const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize length = 0;

  if (!kilt_json_read_file (path, "model", &data, &length, error))
    return NULL;
  return kilt_model_load_json_data (data, (gssize)length, path, error);
}

/* ---- writing ------------------------------------------------------------------------------ */

static void
append_string (GString *s, const char *str)
{
  /* Names made through the API may hold any bytes; the file must stay UTF-8 (json-glib refuses
   * anything else), so invalid sequences become U+FFFD. */
  g_autofree char *valid = g_utf8_make_valid (str, -1);

  g_string_append_c (s, '"');
  for (const unsigned char *p = (const unsigned char *)valid; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_printf (s, "\\%c", *p);
      else if (*p < 0x20)
        g_string_append_printf (s, "\\u%04x", *p);
      else
        g_string_append_c (s, (char)*p);
    }
  g_string_append_c (s, '"');
}

static void
append_float (GString *s, const char *key, float v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  /* The fewest digits that read back as the same float: 0.99, not 0.99000001. */
  for (int digits = 6; digits <= 9; digits++)
    {
      char fmt[8];
      g_snprintf (fmt, sizeof fmt, "%%.%dg", digits);
      g_ascii_formatd (buf, sizeof buf, fmt, v);
      if ((float)g_ascii_strtod (buf, NULL) == v)
        break;
    }
  g_string_append_printf (s, ", \"%s\": %s", key, buf);
}

static void
append_pair (GString *s, const char *key, guint a, guint b)
{
  g_string_append_printf (s, ", \"%s\": [%u, %u]", key, a, b);
}

static void
append_layer (GString *s, KiltModel *model, KiltNode *node)
{
  const KiltLayerConfig *c = &node->cfg;
  guint64 allowed = type_fields[node->type].allowed;

  g_string_append (s, "    { \"name\": ");
  append_string (s, node->name);
  g_string_append_printf (s, ", \"type\": \"%s\", \"inputs\": [", type_names[node->type]);
  for (guint i = 0; i < node->n_inputs; i++)
    {
      if (i)
        g_string_append (s, ", ");
      append_string (s, kilt_model_node (model, node->inputs[i])->name);
    }
  g_string_append_c (s, ']');
  if (allowed & F_FILTERS)
    g_string_append_printf (s, ", \"filters\": %u", c->units);
  if (allowed & F_UNITS)
    g_string_append_printf (s, ", \"units\": %u", c->units);
  if (allowed & F_INPUT_DIM)
    g_string_append_printf (s, ", \"input_dim\": %u, \"output_dim\": %u", c->input_dim, c->units);
  if (allowed & F_KERNEL_SIZE)
    append_pair (s, "kernel_size", c->kh, c->kw);
  if (allowed & F_POOL_SIZE)
    append_pair (s, "pool_size", c->kh, c->kw);
  if (allowed & F_SIZE)
    append_pair (s, "size", c->kh, c->kw);
  /* Pooling strides of 0 mean "the window", as Keras' None does: leave them out. */
  if ((allowed & F_STRIDES) && c->sh && c->sw)
    append_pair (s, "strides", c->sh, c->sw);
  if (allowed & F_PADDING)
    g_string_append_printf (s, ", \"padding\": \"%s\"", c->same ? "same" : "valid");
  if (allowed & F_USE_BIAS)
    g_string_append_printf (s, ", \"use_bias\": %s", c->use_bias ? "true" : "false");
  if (allowed & F_ACTIVATION)
    g_string_append_printf (s, ", \"activation\": \"%s\"", kilt_activation_name (c->activation));
  if (allowed & F_RECURRENT_ACTIVATION)
    g_string_append_printf (s, ", \"recurrent_activation\": \"%s\"",
                            kilt_activation_name (c->recurrent_activation));
  if (allowed & F_RETURN_SEQUENCES)
    g_string_append_printf (s, ", \"return_sequences\": %s",
                            c->return_sequences ? "true" : "false");
  if ((allowed & F_GO_BACKWARDS) && c->go_backwards)
    g_string_append (s, ", \"go_backwards\": true");
  if ((allowed & F_KEEP_TIME_ORDER) && c->keep_time_order)
    g_string_append (s, ", \"keep_time_order\": true");
  if ((allowed & F_STEP_MASK) && c->step_mask != KILT_STEP_MASK_NONE)
    g_string_append_printf (s, ", \"step_mask\": \"%s\"",
                            c->step_mask == KILT_STEP_MASK_IDS ? "ids" : "values");
  if ((allowed & F_MASK_VALUE)
      && (c->step_mask == KILT_STEP_MASK_VALUES || !(allowed & F_STEP_MASK)))
    append_float (s, "mask_value", c->mask_value);
  if (allowed & F_RESET_AFTER)
    g_string_append_printf (s, ", \"reset_after\": %s", c->reset_after ? "true" : "false");
  if ((allowed & F_ALPHA)
      && (c->activation == KILT_ACT_LEAKY_RELU || c->activation == KILT_ACT_ELU))
    append_float (s, "alpha", c->alpha);
  if ((allowed & F_NEGATIVE_SLOPE) && c->negative_slope != 0)
    append_float (s, "negative_slope", c->negative_slope);
  if ((allowed & F_MAX_VALUE) && isfinite (c->max_value))
    append_float (s, "max_value", c->max_value);
  if ((allowed & F_THRESHOLD) && c->threshold != 0)
    append_float (s, "threshold", c->threshold);
  if (allowed & F_SCALE)
    append_float (s, "scale", c->scale);
  if ((allowed & F_OFFSET) && c->offset != 0)
    append_float (s, "offset", c->offset);
  if (allowed & F_TARGET_SHAPE)
    g_string_append_printf (s, ", \"target_shape\": [%u, %u, %u]", c->target.c, c->target.h,
                            c->target.w);
  if ((allowed & F_MASK) && c->dropout_mask != KILT_DROPOUT_ELEMENT)
    g_string_append_printf (s, ", \"mask\": \"%s\"",
                            c->dropout_mask == KILT_DROPOUT_CHANNEL ? "channel" : "sample");
  if (allowed & F_DEPTH_MULTIPLIER)
    g_string_append_printf (s, ", \"depth_multiplier\": %u", c->units);
  if ((allowed & F_DILATION) && (c->dil_h > 1 || c->dil_w > 1))
    append_pair (s, "dilation_rate", MAX (c->dil_h, 1), MAX (c->dil_w, 1));
  if ((allowed & F_INTERPOLATION) && c->bilinear)
    g_string_append (s, ", \"interpolation\": \"bilinear\"");
  if (allowed & F_PERMUTATION)
    g_string_append_printf (s, ", \"permutation\": [%u, %u, %u]", c->perm[0], c->perm[1],
                            c->perm[2]);
  if ((allowed & F_GROUPS) && c->groups > 1)
    g_string_append_printf (s, ", \"groups\": %u", c->groups);
  if ((allowed & F_MEAN) && c->norm_n)
    {
      for (int list = 0; list < 2; list++)
        {
          g_string_append_printf (s, ", \"%s\": [", list ? "variance" : "mean");
          for (guint i = 0; i < c->norm_n; i++)
            {
              char buf[G_ASCII_DTOSTR_BUF_SIZE];
              g_ascii_formatd (buf, sizeof buf, "%.9g", list ? c->norm_var[i] : c->norm_mean[i]);
              g_string_append_printf (s, "%s%s", i ? ", " : "", buf);
            }
          g_string_append_c (s, ']');
        }
    }
  if ((allowed & F_GAMMA) && c->bn_no_scale)
    g_string_append (s, ", \"gamma\": false");
  if ((allowed & F_BETA) && c->bn_no_center)
    g_string_append (s, ", \"beta\": false");
  if (allowed & F_SIDES)
    g_string_append_printf (s, ", \"sides\": [%u, %u, %u, %u]", c->pad[0], c->pad[1], c->pad[2],
                            c->pad[3]);
  if ((allowed & F_INIT) && c->init == KILT_INIT_CONSTANT)
    {
      g_autoptr (GString) v = g_string_new (NULL);
      append_float (v, "constant", c->init_value); /* ", \"constant\": V" */
      g_string_append_printf (s, ", \"kernel_initializer\": {%s}", v->str + 2);
    }
  else if ((allowed & F_INIT) && c->init == KILT_INIT_WHITEN)
    {
      g_string_append_printf (s, ", \"kernel_initializer\": { \"whiten\": { \"samples\": %u",
                              c->whiten_samples);
      append_float (s, "epsilon", c->whiten_epsilon);
      g_string_append_printf (s, ", \"bias_epochs\": %u } }", c->whiten_bias_epochs);
    }
  else if (allowed & F_INIT)
    g_string_append_printf (s, ", \"kernel_initializer\": \"%s\"",
                            c->init == KILT_INIT_HE_NORMAL ? "he_normal" : "glorot_uniform");
  if (allowed & F_RATE)
    append_float (s, "rate", c->rate);
  if (allowed & F_MOMENTUM)
    append_float (s, "momentum", c->momentum);
  if (allowed & F_EPSILON)
    append_float (s, "epsilon", c->epsilon);
  if (c->lr_multiplier != 1.0f)
    append_float (s, "lr_multiplier", c->lr_multiplier);
  if (node->frozen)
    g_string_append (s, ", \"trainable\": false");
  g_string_append (s, " }");
}

char *
kilt_model_to_json (KiltModel *model)
{
  GString *s = g_string_new (NULL);
  KiltNode *in;

  g_return_val_if_fail (model != NULL && kilt_model_n_nodes (model) > 0, NULL);
  in = kilt_model_node (model, 0);
  g_string_append_printf (s, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"name\": ",
                          KILT_MODEL_FORMAT_NAME, KILT_MODEL_FORMAT_VERSION);
  append_string (s, model->name);
  g_string_append_printf (
      s, ",\n  \"loss\": \"%s\",\n  \"input\": { \"name\": ", kilt_loss_name (model->loss));
  append_string (s, in->name);
  g_string_append_printf (s, ", \"channels\": %u, \"height\": %u, \"width\": %u },\n",
                          in->out_shape.c, in->out_shape.h, in->out_shape.w);
  g_string_append (s, "  \"layers\": [\n");
  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    {
      append_layer (s, model, kilt_model_node (model, i));
      g_string_append (s, i + 1 < kilt_model_n_nodes (model) ? ",\n" : "\n");
    }
  g_string_append (s, "  ]");
  if (model->keras_json)
    {
      g_string_append (s, ",\n  \"keras_architecture\": ");
      append_string (s, model->keras_json);
    }
  g_string_append (s, "\n}\n");
  return g_string_free (s, FALSE);
}

gboolean
kilt_model_save_json_file (KiltModel *model, const char *path, GError **error)
{
  g_autofree char *text = kilt_model_to_json (model);
  g_autoptr (GError) local = NULL;

  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot save model %s: %s", path,
                   local->message);
      return FALSE;
    }
  return TRUE;
}

/* ---- presets ------------------------------------------------------------------------------ */

char *
kilt_model_preset_dir (void)
{
  const char *env = g_getenv ("KILT_DATA_DIR");
#ifdef G_OS_WIN32
  /* Installed wherever the user chose: share\kilt beside the program's bin folder. */
  g_autofree char *inst = g_win32_get_package_installation_directory_of_module (NULL);
  g_autofree char *pkgdatadir = g_build_filename (inst, "share", "kilt", NULL);
#else
  const char *pkgdatadir = KILT_PKGDATADIR;
#endif
  char *candidates[3] = {
    env && *env ? g_build_filename (env, "presets", NULL) : NULL,
    g_build_filename (pkgdatadir, "presets", NULL),
    g_build_filename (KILT_SOURCE_DIR, "resources", "presets", NULL),
  };
  char *found = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (candidates); i++)
    {
      if (found == NULL && candidates[i] && g_file_test (candidates[i], G_FILE_TEST_IS_DIR))
        found = g_steal_pointer (&candidates[i]);
      g_free (candidates[i]);
    }
  return found;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char *const *)a, *(char *const *)b);
}

char **
kilt_model_preset_list (void)
{
  g_autofree char *dir = kilt_model_preset_dir ();
  GPtrArray *names = g_ptr_array_new ();
  GDir *d = dir ? g_dir_open (dir, 0, NULL) : NULL;
  const char *entry;

  while (d && (entry = g_dir_read_name (d)))
    if (g_str_has_suffix (entry, ".json") && entry[0] != '.')
      g_ptr_array_add (names, g_strndup (entry, strlen (entry) - 5));
  if (d)
    g_dir_close (d);
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return (char **)g_ptr_array_free (names, FALSE);
}

static gboolean
valid_preset_name (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-')
      return FALSE;
  return TRUE;
}

KiltModel *
kilt_model_load_preset (const char *name, const KiltShape *input, guint n_classes, GError **error)
{
  g_autofree char *dir = kilt_model_preset_dir ();
  g_autofree char *file = NULL;
  g_autofree char *path = NULL;
  g_autofree char *data = NULL;
  g_autoptr (KiltModel) model = NULL;
  KiltNode *last_dense = NULL;
  gsize length;

  g_return_val_if_fail (name != NULL, NULL);
  if (dir == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "the model presets were not found (looked in $KILT_DATA_DIR/presets, %s/presets "
                   "and the source tree); is Kilt installed?",
                   KILT_PKGDATADIR);
      return NULL;
    }
  file = g_strconcat (name, ".json", NULL);
  path = g_build_filename (dir, file, NULL);
  if (!valid_preset_name (name) || !g_file_get_contents (path, &data, &length, NULL))
    {
      g_auto (GStrv) names = kilt_model_preset_list ();
      g_autofree char *list = g_strjoinv (", ", names);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "no model preset \"%s\"; the presets are %s", name, list);
      return NULL;
    }
  model = parse_model (data, (gssize)length, path, error);
  if (model == NULL)
    return NULL;

  if (input)
    {
      if (kilt_shape_size (input) == 0)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "preset %s: the input shape %ux%ux%u has a zero dimension", name, input->c,
                       input->h, input->w);
          return NULL;
        }
      kilt_model_node (model, 0)->out_shape = *input;
      /* A whitening layer has a filter and its negative per direction of its input's patches,
       * whose count follows the channels. */
      for (guint i = 1; i < kilt_model_n_nodes (model); i++)
        {
          KiltNode *n = kilt_model_node (model, i);
          if (n->type == KILT_LAYER_CONV2D && n->cfg.init == KILT_INIT_WHITEN && n->inputs[0] == 0)
            n->cfg.units = 2 * input->c * n->cfg.kh * n->cfg.kw;
        }
    }
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    if (kilt_model_node (model, i)->type == KILT_LAYER_DENSE)
      last_dense = kilt_model_node (model, i);
  if (n_classes)
    {
      if (last_dense == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                       "preset %s has no Dense layer to take %u classes", name, n_classes);
          return NULL;
        }
      if (n_classes < 2 && model->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "preset %s is a softmax classifier and needs at least 2 classes, got %u",
                       name, n_classes);
          return NULL;
        }
      last_dense->cfg.units = n_classes;
    }
  if (!kilt_model_build (model, error))
    {
      KiltShape s = kilt_model_node (model, 0)->out_shape;
      g_prefix_error (error, "preset %s on a %ux%ux%u input (channels x height x width): ", name,
                      s.c, s.h, s.w);
      return NULL;
    }
  return g_steal_pointer (&model);
}
