/* Keras import: one converter per Keras layer class, from its config to a Kilt node. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras"

#include "kilt-keras-private.h"
#include "kilt-model-json.h"

#include <math.h>
#include <string.h>

/* ---- layers ------------------------------------------------------------------------------- */

guint
keras_node_rank (const Import *imp, guint node)
{
  return g_array_index (imp->rank, guint, node);
}

gboolean
keras_add_node (Import *imp, KiltLayerType type, const KiltLayerConfig *cfg, guint n_inputs,
                const guint *inputs, guint rank, GError **error)
{
  return keras_add_node_as (imp, NULL, type, cfg, n_inputs, inputs, rank, error);
}

gboolean
keras_add_node_as (Import *imp, const char *suffix, KiltLayerType type, const KiltLayerConfig *cfg,
                   guint n_inputs, const guint *inputs, guint rank, GError **error)
{
  g_autofree char *name = suffix ? g_strdup_printf ("%s/%s", imp->cur->name, suffix) : NULL;
  guint index, ins[KILT_MAX_INPUTS], n_ins = n_inputs;
  KiltLayerConfig c = *cfg;
  KerasMask mask;

  if (kilt_layer_class_get (type) == NULL)
    {
      keras_set_error (error, imp, "layer type %s is not available in this build of Kilt",
                       kilt_layer_type_name (type));
      return FALSE;
    }
  if (kilt_model_find (imp->model, name ? name : imp->cur->name))
    {
      keras_set_error (error, imp, "the name %s is used by another layer; names must be unique",
                       name ? name : imp->cur->name);
      return FALSE;
    }
  g_return_val_if_fail (n_inputs < KILT_MAX_INPUTS, FALSE);
  memcpy (ins, inputs, sizeof (guint) * n_inputs);
  if (!keras_mask_for_node (imp, type, &c, &n_ins, ins, &mask, error))
    return FALSE;
  index = kilt_model_add (imp->model, type, name ? name : imp->cur->name, &c, n_ins, ins);
  g_array_append_val (imp->rank, rank);
  g_array_append_val (imp->mask, mask);
  g_hash_table_insert (imp->node_of, (gpointer)imp->cur->name, GUINT_TO_POINTER (index + 1));
  return TRUE;
}

gboolean
keras_add_extra_node (Import *imp, KiltLayerType type, const KiltLayerConfig *cfg,
                      const char *suffix, GError **error)
{
  g_autofree char *name = g_strdup_printf ("%s/%s", imp->cur->name, suffix);
  guint last = kilt_model_n_nodes (imp->model) - 1, index, rank, ins[2] = { last }, n_ins = 1;
  KiltLayerConfig c = *cfg;
  KerasMask mask;

  if (kilt_model_find (imp->model, name))
    {
      keras_set_error (error, imp, "the name %s is used by another layer", name);
      return FALSE;
    }
  if (!keras_mask_for_node (imp, type, &c, &n_ins, ins, &mask, error))
    return FALSE;
  index = kilt_model_add (imp->model, type, name, &c, n_ins, ins);
  rank = g_array_index (imp->rank, guint, last); /* a copy: the append may move the array */
  g_array_append_val (imp->rank, rank);
  g_array_append_val (imp->mask, mask);
  g_hash_table_insert (imp->node_of, (gpointer)imp->cur->name, GUINT_TO_POINTER (index + 1));
  return TRUE;
}

static gboolean
convert_conv (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  guint dh = 1, dw = 1, groups = 1;

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (keras_member (c, "filters") == NULL)
    {
      keras_set_error (error, imp, "expected filters");
      return FALSE;
    }
  if (!keras_get_int (imp, keras_member (c, "filters"), "filters", 1, &cfg->units, error)
      || !keras_get_pair (imp, c, "kernel_size", &cfg->kh, &cfg->kw, error)
      || !keras_get_pair (imp, c, "strides", &cfg->sh, &cfg->sw, error)
      || !keras_get_pair (imp, c, "dilation_rate", &dh, &dw, error)
      || !keras_get_padding (imp, c, &cfg->same, error)
      || !keras_get_activation (imp, c, cfg, error)
      || !keras_get_bool (imp, c, "use_bias", &cfg->use_bias, error)
      || !keras_check_data_format (imp, c, error))
    return FALSE;
  if (keras_member (c, "kernel_size") == NULL)
    {
      keras_set_error (error, imp, "expected kernel_size");
      return FALSE;
    }
  if (keras_member (c, "groups")
      && (!keras_get_int (imp, keras_member (c, "groups"), "groups", 1, &groups, error)))
    return FALSE;
  /* 1 is stored as 0 (none); the layer checks that groups divide channels and filters. */
  cfg->dil_h = dh > 1 ? dh : 0;
  cfg->dil_w = dw > 1 ? dw : 0;
  cfg->groups = groups > 1 ? groups : 0;
  if (cfg->activation == KILT_ACT_SOFTMAX)
    {
      keras_set_error (error, imp, "activation softmax inside Conv2D is not supported");
      return FALSE;
    }
  keras_note_weight_options (imp, c, "kernel", &cfg->init);
  keras_note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

/* ---- 1-D layers: a sequence (steps, channels) is Kilt's (channels, 1, steps), so Conv1D and
 * the 1-D poolings are the 2-D layers with a window of one row (the same arithmetic: a
 * (1, k) kernel over a one-row image is a k-tap filter along the steps). */

/* An int or a list of one (Keras writes both for 1-D layers); absent leaves *@v. */
static gboolean
keras_get_single (const Import *imp, JsonObject *cfg, const char *key, guint *v, GError **error)
{
  JsonNode *n = keras_member (cfg, key);

  if (n == NULL)
    return TRUE;
  if (JSON_NODE_HOLDS_ARRAY (n))
    {
      JsonArray *a = json_node_get_array (n);
      if (json_array_get_length (a) != 1)
        {
          g_autofree char *text = keras_render (n);
          keras_set_error (error, imp, "%s must hold one value (steps), got %s", key, text);
          return FALSE;
        }
      n = json_array_get_element (a, 0);
    }
  return keras_get_int (imp, n, key, 1, v, error);
}

static gboolean
expect_sequence (Import *imp, const KerasCall *call, GError **error)
{
  if (call->rank == 3)
    return TRUE;
  keras_set_error (error, imp, "expects a sequence input (steps, channels)");
  return FALSE;
}

/* Conv1D: filters, kernel_size, strides, dilation_rate, groups, padding valid, same or causal
 * (a ZeroPadding2D of (k - 1) * dilation steps on the left before a valid convolution, as
 * Keras pads), activation and bias. */
static gboolean
convert_conv1d (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  const char *padding = keras_member_string (c, "padding");
  guint k = 1, s = 1, d = 1, groups = 1;

  if (!expect_sequence (imp, call, error))
    return FALSE;
  if (keras_member (c, "filters") == NULL || keras_member (c, "kernel_size") == NULL)
    {
      keras_set_error (error, imp, "expected filters and kernel_size");
      return FALSE;
    }
  if (!keras_get_int (imp, keras_member (c, "filters"), "filters", 1, &cfg->units, error)
      || !keras_get_single (imp, c, "kernel_size", &k, error)
      || !keras_get_single (imp, c, "strides", &s, error)
      || !keras_get_single (imp, c, "dilation_rate", &d, error)
      || !keras_get_activation (imp, c, cfg, error)
      || !keras_get_bool (imp, c, "use_bias", &cfg->use_bias, error)
      || !keras_check_data_format (imp, c, error))
    return FALSE;
  if (keras_member (c, "groups")
      && !keras_get_int (imp, keras_member (c, "groups"), "groups", 1, &groups, error))
    return FALSE;
  if (padding && g_str_equal (padding, "causal"))
    {
      if ((guint64)(k - 1) * d > 1u << 20)
        {
          keras_set_error (error, imp, "causal padding of (%u - 1) x %u steps is too large", k, d);
          return FALSE;
        }
      call->causal = (k - 1) * d;
    }
  else if (!keras_get_padding (imp, c, &cfg->same, error))
    return FALSE;
  if (cfg->activation == KILT_ACT_SOFTMAX)
    {
      keras_set_error (error, imp, "activation softmax inside Conv1D is not supported");
      return FALSE;
    }
  cfg->kh = 1;
  cfg->kw = k;
  cfg->sh = 1;
  cfg->sw = s;
  cfg->dil_w = d > 1 ? d : 0;
  cfg->groups = groups > 1 ? groups : 0;
  keras_note_weight_options (imp, c, "kernel", &cfg->init);
  keras_note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

/* MaxPooling1D, AveragePooling1D: pool_size, strides (None: the window), padding. */
static gboolean
convert_pool1d (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  guint k = 2, s = 0;

  if (!expect_sequence (imp, call, error) || !keras_get_single (imp, c, "pool_size", &k, error)
      || !keras_get_single (imp, c, "strides", &s, error)
      || !keras_get_padding (imp, c, &cfg->same, error) || !keras_check_data_format (imp, c, error))
    return FALSE;
  cfg->kh = 1;
  cfg->kw = k;
  /* Strides equal to the window (or None) are Kilt's 0, "the window". */
  cfg->sh = cfg->sw = 0;
  if (s && s != k)
    {
      cfg->sh = 1;
      cfg->sw = s;
    }
  return TRUE;
}

/* GlobalAveragePooling1D, GlobalMaxPooling1D: (channels, 1, 1), a vector, or with keepdims a
 * sequence of one step. */
static gboolean
convert_global_pool1d (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  gboolean keepdims = FALSE;

  if (!expect_sequence (imp, call, error) || !keras_check_data_format (imp, call->c, error)
      || !keras_get_bool (imp, call->c, "keepdims", &keepdims, error))
    return FALSE;
  call->rank = keepdims ? 3 : 2;
  return TRUE;
}

/* LSTM, GRU: over a sequence, the state at every step (return_sequences, a sequence again)
 * or the last one (a vector). What Kilt does not compute is refused by name: returned
 * states, stateful layers, dropout inside the cell, a cell activation other than tanh. */
static gboolean
convert_rnn (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  gboolean gru = g_str_equal (call->cls, "GRU");
  static const char *refused[] = { "return_state", "stateful", "time_major" };
  static const char *rates[] = { "dropout", "recurrent_dropout" };
  const char *init;

  if (!expect_sequence (imp, call, error))
    return FALSE;
  if (keras_member (c, "units") == NULL)
    {
      keras_set_error (error, imp, "expected units");
      return FALSE;
    }
  if (!keras_get_int (imp, keras_member (c, "units"), "units", 1, &cfg->units, error)
      || !keras_get_bool (imp, c, "use_bias", &cfg->use_bias, error)
      || !keras_get_bool (imp, c, "return_sequences", &cfg->return_sequences, error)
      || !keras_get_bool (imp, c, "go_backwards", &cfg->go_backwards, error))
    return FALSE;
  /* Files from before Keras 2.1.3 have no reset_after: their GRU resets before. */
  cfg->reset_after = FALSE;
  if (gru && !keras_get_bool (imp, c, "reset_after", &cfg->reset_after, error))
    return FALSE;
  if (!gru && !keras_get_bool (imp, c, "unit_forget_bias", &cfg->unit_forget_bias, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      gboolean on = FALSE;
      if (!keras_get_bool (imp, c, refused[i], &on, error))
        return FALSE;
      if (on)
        {
          keras_set_error (error, imp,
                           "%s true is not supported; Kilt's %s returns its output only",
                           refused[i], call->cls);
          return FALSE;
        }
    }
  for (guint i = 0; i < G_N_ELEMENTS (rates); i++)
    {
      double rate = 0;
      if (!keras_get_double (imp, c, rates[i], 0, 1, &rate, error))
        return FALSE;
      if (rate > 0)
        {
          keras_set_error (error, imp,
                           "%s %g is not supported inside %s; set it to 0 (a Dropout layer "
                           "before or after the layer drops whole features instead)",
                           rates[i], rate, call->cls);
          return FALSE;
        }
    }
  if (keras_member (c, "activation"))
    {
      KiltLayerConfig act = *cfg;
      if (!keras_get_activation (imp, c, &act, error))
        return FALSE;
      if (act.activation != KILT_ACT_TANH)
        {
          keras_set_error (error, imp, "activation %s is not supported inside %s; only tanh is",
                           kilt_activation_name (act.activation), call->cls);
          return FALSE;
        }
    }
  if (keras_member (c, "recurrent_activation"))
    {
      KiltLayerConfig act = *cfg;
      JsonObject *o = keras_member_object (c, "recurrent_activation");
      const char *name = keras_member_string (c, "recurrent_activation");
      if (name == NULL && o)
        name = keras_member_string (o, "config");
      if (name == NULL)
        {
          keras_set_error (error, imp, "recurrent_activation is not a built-in activation's name");
          return FALSE;
        }
      if (!keras_get_activation_name (imp, name, &act, error))
        return FALSE;
      if (act.activation != KILT_ACT_SIGMOID && act.activation != KILT_ACT_HARD_SIGMOID
          && act.activation != KILT_ACT_HARD_SIGMOID_K2)
        {
          keras_set_error (error, imp,
                           "recurrent_activation %s is not supported; sigmoid or hard_sigmoid is",
                           name);
          return FALSE;
        }
      cfg->recurrent_activation = act.activation;
    }
  keras_note_weight_options (imp, c, "kernel", &cfg->init);
  init = keras_object_class (keras_member (c, "recurrent_initializer"));
  if (init && g_ascii_strcasecmp (init, "Orthogonal") != 0)
    keras_add_note (imp, "recurrent_initializer %s is replaced by orthogonal", init);
  for (guint i = 0; i < 2; i++)
    {
      const char *key = i ? "recurrent_constraint" : "recurrent_regularizer";
      const char *cls = keras_object_class (keras_member (c, key));
      if (cls)
        keras_add_note (imp, "%s %s is ignored", key, cls);
    }
  keras_note_weight_options (imp, c, "bias", NULL);
  call->rank = cfg->return_sequences ? 3 : 2;
  return TRUE;
}

/* The Kilt node names of a Bidirectional's halves, as both Keras name their weights:
 * "forward_NAME" and "backward_NAME" for the wrapped layer NAME (Keras 3 names the wrapped
 * layer forward_NAME itself, and the backward one in backward_layer). Free with g_free. */
void
keras_bidirectional_names (JsonObject *c, char **forward, char **backward)
{
  JsonObject *layer = keras_member_object (c, "layer");
  JsonObject *back = keras_member_object (c, "backward_layer");
  const char *name
      = layer ? keras_member_string (keras_member_object (layer, "config"), "name") : NULL;
  const char *bname
      = back ? keras_member_string (keras_member_object (back, "config"), "name") : NULL;

  if (name == NULL)
    name = "rnn";
  if (g_str_has_prefix (name, "forward_"))
    name += strlen ("forward_");
  *forward = g_strconcat ("forward_", name, NULL);
  *backward = bname ? g_strdup (bname) : g_strconcat ("backward_", name, NULL);
}

/* Bidirectional (LSTM or GRU): the layer forwards ("NAME/forward_lstm"), its copy going
 * backwards with its outputs in the input's order ("NAME/backward_lstm"), and their merge
 * (concat, sum, mul or ave) under the wrapper's name. */
static gboolean
convert_bidirectional (Import *imp, JsonObject *c, guint n_inputs, const guint *inputs,
                       GError **error)
{
  JsonObject *layer = keras_member_object (c, "layer");
  JsonObject *back = keras_member_object (c, "backward_layer");
  const char *cls = layer ? keras_member_string (layer, "class_name") : NULL;
  const char *mode = keras_member_string (c, "merge_mode");
  static const struct
  {
    const char *mode;
    KiltLayerType type;
  } merges[] = { { "concat", KILT_LAYER_CONCATENATE },
                 { "sum", KILT_LAYER_ADD },
                 { "mul", KILT_LAYER_MULTIPLY },
                 { "ave", KILT_LAYER_AVERAGE } };
  KiltLayerType type, merge = KILT_LAYER_N_TYPES;
  KiltLayerConfig fwd, bwd, m;
  g_autofree char *fname = NULL, *bname = NULL;
  guint halves[2], rank;

  if (cls == NULL || !(g_str_equal (cls, "LSTM") || g_str_equal (cls, "GRU")))
    {
      keras_set_error (error, imp, "wraps %s; Kilt's Bidirectional takes an LSTM or a GRU",
                       cls ? cls : "no layer");
      return FALSE;
    }
  if (json_object_has_member (c, "merge_mode") && mode == NULL)
    {
      keras_set_error (error, imp,
                       "merge_mode None (the two halves as two outputs) is not supported; use "
                       "concat, sum, mul or ave");
      return FALSE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (merges); i++)
    if (g_str_equal (mode ? mode : "concat", merges[i].mode))
      merge = merges[i].type;
  if (merge == KILT_LAYER_N_TYPES)
    {
      keras_set_error (error, imp, "merge_mode \"%s\" is not supported; concat, sum, mul or ave is",
                       mode);
      return FALSE;
    }
  if (n_inputs != 1)
    {
      keras_set_error (error, imp, "takes one input, got %u", n_inputs);
      return FALSE;
    }
  type = g_str_equal (cls, "LSTM") ? KILT_LAYER_LSTM : KILT_LAYER_GRU;
  fwd = kilt_layer_config_default (type);
  {
    KerasCall call = { keras_member_object (layer, "config"), cls, n_inputs, inputs,
                       keras_node_rank (imp, inputs[0]) };
    if (call.c == NULL)
      {
        keras_set_error (error, imp, "its layer (%s) has no config", cls);
        return FALSE;
      }
    if (!convert_rnn (imp, &call, &fwd, error))
      return FALSE;
    rank = call.rank;
  }
  bwd = fwd;
  if (back)
    {
      const char *bcls = keras_member_string (back, "class_name");
      KerasCall call = { keras_member_object (back, "config"), bcls, n_inputs, inputs,
                         keras_node_rank (imp, inputs[0]) };
      bwd = kilt_layer_config_default (type);
      if (bcls == NULL || !g_str_equal (bcls, cls) || call.c == NULL
          || !convert_rnn (imp, &call, &bwd, error))
        {
          if (error && *error == NULL)
            keras_set_error (error, imp, "backward_layer must be a %s like its layer", cls);
          return FALSE;
        }
    }
  else
    bwd.go_backwards = !fwd.go_backwards;
  if (fwd.go_backwards || !bwd.go_backwards || fwd.units != bwd.units
      || fwd.return_sequences != bwd.return_sequences)
    {
      keras_set_error (error, imp,
                       "the backward layer must be the forward one going backwards (same units "
                       "and return_sequences, the forward one not going backwards)");
      return FALSE;
    }
  bwd.keep_time_order = TRUE;
  keras_bidirectional_names (c, &fname, &bname);
  halves[0] = kilt_model_n_nodes (imp->model);
  if (!keras_add_node_as (imp, fname, type, &fwd, n_inputs, inputs, rank, error))
    return FALSE;
  halves[1] = kilt_model_n_nodes (imp->model);
  if (!keras_add_node_as (imp, bname, type, &bwd, n_inputs, inputs, rank, error))
    return FALSE;
  m = kilt_layer_config_default (merge);
  return keras_add_node (imp, merge, &m, 2, halves, rank, error);
}

/* Permute: Keras' dims (1-based, without the batch) as Kilt's channels-first axes. For an
 * image, Keras' axes 1, 2, 3 are (h, w, c), Kilt's 1, 2, 0 (channels_first: (c, h, w)); for a
 * sequence, 1, 2 are (steps, channels), Kilt's 2, 0 (channels_first: 0, 2), the single row
 * (axis 1) staying. */
static gboolean
convert_permute (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  static const guint image_last[] = { 1, 2, 0 }, image_first[] = { 0, 1, 2 };
  static const guint seq_last[] = { 2, 0 }, seq_first[] = { 0, 2 };
  gboolean first = imp->format == FORMAT_CHANNELS_FIRST;
  JsonArray *dims = keras_member_array (call->c, "dims");
  guint n = call->rank - 1, seen = 0;
  const guint *axis;

  if (call->rank != 3 && call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image or a sequence input");
      return FALSE;
    }
  axis = n == 3 ? (first ? image_first : image_last) : (first ? seq_first : seq_last);
  if (dims == NULL || json_array_get_length (dims) != n)
    {
      keras_set_error (error, imp, "dims must list the %u axes 1 to %u", n, n);
      return FALSE;
    }
  cfg->perm[0] = 0;
  cfg->perm[1] = 1;
  cfg->perm[2] = 2;
  for (guint j = 0; j < n; j++)
    {
      guint d;
      if (!keras_get_int (imp, json_array_get_element (dims, j), "dims", 1, &d, error))
        return FALSE;
      if (d > n || (seen & (1u << d)))
        {
          g_autofree char *text = keras_render (keras_member (call->c, "dims"));
          keras_set_error (error, imp, "dims %s must hold 1 to %u once each", text, n);
          return FALSE;
        }
      seen |= 1u << d;
      /* Keras' output axis j + 1 takes its input axis d. */
      cfg->perm[axis[j]] = axis[d - 1];
    }
  return TRUE;
}

/* Conv2DTranspose: strides, same/valid padding, bias and activation; output_padding must be
 * None (Keras' default, the output size from the input's) and dilation_rate 1. */
static gboolean
convert_conv_transpose (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  JsonNode *op = keras_member (c, "output_padding");
  guint dh = 1, dw = 1;

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (keras_member (c, "filters") == NULL || keras_member (c, "kernel_size") == NULL)
    {
      keras_set_error (error, imp, "expected filters and kernel_size");
      return FALSE;
    }
  if (!keras_get_int (imp, keras_member (c, "filters"), "filters", 1, &cfg->units, error)
      || !keras_get_pair (imp, c, "kernel_size", &cfg->kh, &cfg->kw, error)
      || !keras_get_pair (imp, c, "strides", &cfg->sh, &cfg->sw, error)
      || !keras_get_pair (imp, c, "dilation_rate", &dh, &dw, error)
      || !keras_get_padding (imp, c, &cfg->same, error)
      || !keras_get_activation (imp, c, cfg, error)
      || !keras_get_bool (imp, c, "use_bias", &cfg->use_bias, error)
      || !keras_check_data_format (imp, c, error))
    return FALSE;
  if (op && !JSON_NODE_HOLDS_NULL (op))
    {
      keras_set_error (error, imp,
                       "output_padding other than None is not supported; Kilt takes the output "
                       "size Keras derives from the input");
      return FALSE;
    }
  if (dh != 1 || dw != 1)
    {
      keras_set_error (error, imp, "dilation_rate (%u, %u) is not supported; Kilt takes 1", dh, dw);
      return FALSE;
    }
  if (cfg->activation == KILT_ACT_SOFTMAX)
    {
      keras_set_error (error, imp, "activation softmax inside Conv2DTranspose is not supported");
      return FALSE;
    }
  keras_note_weight_options (imp, c, "kernel", &cfg->init);
  keras_note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

/* DepthwiseConv2D, and SeparableConv2D's depthwise half (call->filters its pointwise's). */
static gboolean
convert_depthwise (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  gboolean separable = g_str_equal (call->cls, "SeparableConv2D");
  guint dh = 1, dw = 1;

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (separable
      && (keras_member (c, "filters") == NULL
          || !keras_get_int (imp, keras_member (c, "filters"), "filters", 1, &call->filters,
                             error)))
    {
      if (error && *error == NULL)
        keras_set_error (error, imp, "expected filters");
      return FALSE;
    }
  if (keras_member (c, "depth_multiplier")
      && !keras_get_int (imp, keras_member (c, "depth_multiplier"), "depth_multiplier", 1,
                         &cfg->units, error))
    return FALSE;
  if (!keras_get_pair (imp, c, "kernel_size", &cfg->kh, &cfg->kw, error)
      || !keras_get_pair (imp, c, "strides", &cfg->sh, &cfg->sw, error)
      || !keras_get_pair (imp, c, "dilation_rate", &dh, &dw, error)
      || !keras_get_padding (imp, c, &cfg->same, error)
      || !keras_get_activation (imp, c, cfg, error)
      || !keras_get_bool (imp, c, "use_bias", &cfg->use_bias, error)
      || !keras_check_data_format (imp, c, error))
    return FALSE;
  if (keras_member (c, "kernel_size") == NULL)
    {
      keras_set_error (error, imp, "expected kernel_size");
      return FALSE;
    }
  if (cfg->activation == KILT_ACT_SOFTMAX)
    {
      keras_set_error (error, imp, "activation softmax inside %s is not supported", call->cls);
      return FALSE;
    }
  cfg->dil_h = dh > 1 ? dh : 0;
  cfg->dil_w = dw > 1 ? dw : 0;
  keras_note_weight_options (imp, c, "depthwise", &cfg->init);
  if (separable)
    {
      KiltInit pointwise = cfg->init; /* the pointwise Conv2D takes the depthwise's */
      keras_note_weight_options (imp, c, "pointwise", &pointwise);
    }
  keras_note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

static gboolean
convert_dense (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  JsonNode *units = keras_member (c, "units");

  if (units == NULL)
    units = keras_member (c, "output_dim"); /* Keras 1 */
  if (units == NULL)
    {
      keras_set_error (error, imp, "expected units");
      return FALSE;
    }
  if (call->rank == 3)
    {
      keras_set_error (error, imp,
                       "on a sequence (steps, channels) Keras applies Dense at every step, "
                       "which Kilt's Dense does not; use a Conv1D with kernel_size 1, or "
                       "Flatten first");
      return FALSE;
    }
  if (!keras_get_int (imp, units, "units", 1, &cfg->units, error)
      || !keras_get_activation (imp, c, cfg, error)
      || !keras_get_bool (imp, c, "use_bias", &cfg->use_bias, error))
    return FALSE;
  keras_note_weight_options (imp, c, "kernel", &cfg->init);
  keras_note_weight_options (imp, c, "bias", NULL);
  return TRUE;
}

static gboolean
convert_pool (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  cfg->kh = cfg->kw = 2;
  cfg->sh = cfg->sw = 0;
  if (!keras_get_pair (imp, c, "pool_size", &cfg->kh, &cfg->kw, error)
      || !keras_get_pair (imp, c, "strides", &cfg->sh, &cfg->sw, error)
      || !keras_get_padding (imp, c, &cfg->same, error) || !keras_check_data_format (imp, c, error))
    return FALSE;
  /* Strides equal to the window are Keras' default: keep Kilt's 0 ("the window"). */
  if (cfg->sh == cfg->kh && cfg->sw == cfg->kw)
    cfg->sh = cfg->sw = 0;
  return TRUE;
}

static gboolean
convert_batch_norm (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  guint rank = call->rank;
  gint64 axis;
  gboolean center = TRUE, scale = TRUE, renorm = FALSE, sync = FALSE;
  double momentum = cfg->momentum, epsilon = cfg->epsilon;

  if (!keras_get_axis (imp, c, "axis", -1, &axis, error)
      || !keras_get_double (imp, c, "momentum", 0.0, 1.0, &momentum, error)
      || !keras_get_double (imp, c, "epsilon", 0.0, 1.0, &epsilon, error)
      || !keras_get_bool (imp, c, "center", &center, error)
      || !keras_get_bool (imp, c, "scale", &scale, error)
      || !keras_get_bool (imp, c, "renorm", &renorm, error)
      || !keras_get_bool (imp, c, "synchronized", &sync, error))
    return FALSE;
  if (!keras_is_channel_axis (imp, axis, rank))
    {
      keras_set_error (error, imp,
                       "axis %" G_GINT64_FORMAT
                       " is not supported; Kilt normalises over the channel "
                       "axis only",
                       axis);
      return FALSE;
    }
  cfg->bn_no_center = !center;
  cfg->bn_no_scale = !scale;
  if (renorm)
    {
      keras_set_error (error, imp, "renorm = true is not supported");
      return FALSE;
    }
  if (epsilon <= 0)
    {
      keras_set_error (error, imp, "epsilon must be above 0");
      return FALSE;
    }
  cfg->momentum = (float)momentum;
  cfg->epsilon = (float)epsilon;
  keras_note_weight_options (imp, c, "beta", NULL);
  keras_note_weight_options (imp, c, "gamma", NULL);
  return TRUE;
}

/* GlobalAveragePooling2D and GlobalMaxPooling2D. */
static gboolean
convert_global_avg_pool (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  gboolean keepdims = FALSE;

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (!keras_check_data_format (imp, call->c, error)
      || !keras_get_bool (imp, call->c, "keepdims", &keepdims, error))
    return FALSE;
  /* Kilt's output is (C, 1, 1) either way; keepdims keeps it an image for what follows. */
  call->rank = keepdims ? 4 : 2;
  return TRUE;
}

static gboolean
convert_activation (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  return keras_get_activation (imp, call->c, cfg, error);
}

/* Keras' ReLU layer: max_value, negative_slope, threshold. A plain ReLU or leaky ReLU stays
 * one Conv2D and Dense can fold in. */
static gboolean
convert_relu (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  double slope = 0, threshold = 0, max_value = INFINITY;

  if (!keras_get_double (imp, c, "negative_slope", 0, 1e6, &slope, error)
      || !keras_get_double (imp, c, "threshold", -1e30, 1e30, &threshold, error)
      || !keras_get_double (imp, c, "max_value", 0, 1e30, &max_value, error))
    return FALSE;
  if (threshold == 0 && isinf (max_value))
    {
      cfg->activation = slope > 0 ? KILT_ACT_LEAKY_RELU : KILT_ACT_RELU;
      cfg->alpha = (float)slope;
      return TRUE;
    }
  if (threshold == 0 && slope == 0 && max_value == 6)
    {
      cfg->activation = KILT_ACT_RELU6;
      return TRUE;
    }
  cfg->activation = KILT_ACT_RELU;
  cfg->negative_slope = (float)slope;
  cfg->threshold = (float)threshold;
  cfg->max_value = (float)max_value;
  return TRUE;
}

static gboolean
convert_elu (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  double alpha = 1.0; /* Keras' default */

  if (!keras_get_double (imp, call->c, "alpha", -1e6, 1e6, &alpha, error))
    return FALSE;
  cfg->activation = KILT_ACT_ELU;
  cfg->alpha = (float)alpha;
  return TRUE;
}

/* ZeroPadding2D's padding and Cropping2D's cropping: n, (h, w) or ((top, bottom), (left,
 * right)), into top, bottom, left, right. */
static gboolean
get_sides (Import *imp, JsonObject *c, const char *key, guint side[4], GError **error)
{
  JsonNode *n = keras_member (c, key);
  JsonArray *a;

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    {
      if (!keras_get_int (imp, n, key, 0, &side[0], error))
        return FALSE;
      side[1] = side[2] = side[3] = side[0];
      return TRUE;
    }
  a = json_node_get_array (n);
  if (json_array_get_length (a) != 2)
    goto bad;
  for (guint i = 0; i < 2; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (JSON_NODE_HOLDS_ARRAY (e))
        {
          JsonArray *p = json_node_get_array (e);
          if (json_array_get_length (p) != 2
              || !keras_get_int (imp, json_array_get_element (p, 0), key, 0, &side[2 * i], error)
              || !keras_get_int (imp, json_array_get_element (p, 1), key, 0, &side[2 * i + 1],
                                 error))
            goto bad_or_error;
        }
      else
        {
          if (!keras_get_int (imp, e, key, 0, &side[2 * i], error))
            return FALSE;
          side[2 * i + 1] = side[2 * i];
        }
    }
  return TRUE;

bad_or_error:
  if (error && *error)
    return FALSE;
bad:
  {
    g_autofree char *text = keras_render (n);
    keras_set_error (error, imp,
                     "%s must be n, (height, width) or ((top, bottom), (left, right)), got %s", key,
                     text);
  }
  return FALSE;
}

static gboolean
convert_padding (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  gboolean crop = g_str_equal (call->cls, "Cropping2D");

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (!crop)
    cfg->pad[0] = cfg->pad[1] = cfg->pad[2] = cfg->pad[3] = 1; /* Keras' default */
  return keras_check_data_format (imp, call->c, error)
         && get_sides (imp, call->c, crop ? "cropping" : "padding", cfg->pad, error);
}

static gboolean
convert_leaky_relu (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  double alpha = 0.3; /* Keras' default */

  if (!keras_get_double (imp, call->c, "alpha", 0, 1e6, &alpha, error)
      || !keras_get_double (imp, call->c, "negative_slope", 0, 1e6, &alpha, error))
    return FALSE;
  cfg->activation = KILT_ACT_LEAKY_RELU;
  cfg->alpha = (float)alpha;
  return TRUE;
}

static gboolean
convert_softmax (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  gint64 axis;

  if (!keras_get_axis (imp, call->c, "axis", -1, &axis, error))
    return FALSE;
  if (!keras_is_channel_axis (imp, axis, call->rank))
    {
      keras_set_error (error, imp,
                       "axis %" G_GINT64_FORMAT " is not supported; Kilt's softmax runs over "
                       "the channel axis",
                       axis);
      return FALSE;
    }
  cfg->activation = KILT_ACT_SOFTMAX;
  return TRUE;
}

/* Dropout's noise_shape: one draw per element, per channel's plane ((None, 1, 1, C) for an
 * image) or per sample (all ones); a dimension is None, its full size, or 1. */
static gboolean
get_noise_shape (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonNode *n = keras_member (call->c, "noise_shape");
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  guint len = a ? json_array_get_length (a) : 0, ones = 0, spatial_ones = 0;
  gboolean channel_one = FALSE;

  if (a == NULL || len != call->rank)
    goto bad;
  for (guint i = 1; i < len; i++)
    {
      JsonNode *d = json_array_get_element (a, i);
      gboolean one = keras_node_is (d, G_TYPE_INT64) && json_node_get_int (d) == 1;
      /* The channel axis: last for channels_last, first after the batch for channels_first. */
      gboolean is_channel
          = len == 2 || (imp->format == FORMAT_CHANNELS_FIRST ? i == 1 : i == len - 1);
      if (!one && !JSON_NODE_HOLDS_NULL (d) && !keras_node_is (d, G_TYPE_INT64))
        goto bad;
      ones += one;
      if (is_channel)
        channel_one = one;
      else
        spatial_ones += one;
    }
  if (ones == 0)
    cfg->dropout_mask = KILT_DROPOUT_ELEMENT;
  else if (ones == len - 1)
    cfg->dropout_mask = KILT_DROPOUT_SAMPLE;
  else if (len == 4 && spatial_ones == 2 && !channel_one)
    cfg->dropout_mask = KILT_DROPOUT_CHANNEL;
  else
    goto bad;
  return TRUE;

bad:
  {
    g_autofree char *text = keras_render (n);
    keras_set_error (error, imp,
                     "noise_shape %s is not supported; Kilt draws per element, per channel "
                     "((None, 1, 1, C)) or per sample",
                     text);
  }
  return FALSE;
}

static gboolean
convert_upsampling (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  const char *interp = keras_member_string (call->c, "interpolation");

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (interp && g_str_equal (interp, "bilinear"))
    cfg->bilinear = TRUE;
  else if (interp && !g_str_equal (interp, "nearest"))
    {
      keras_set_error (error, imp,
                       "interpolation \"%s\" is not supported; Kilt has nearest and bilinear",
                       interp);
      return FALSE;
    }
  cfg->kh = cfg->kw = 2; /* Keras' default */
  return keras_get_pair (imp, call->c, "size", &cfg->kh, &cfg->kw, error)
         && keras_check_data_format (imp, call->c, error);
}

/* LayerNormalization over the channel axis, as ConvNeXt and transformers use it. */
static gboolean
convert_layer_norm (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  gint64 axis;
  gboolean center = TRUE, scale = TRUE, rms = FALSE;
  double epsilon = cfg->epsilon;

  if (!keras_get_axis (imp, c, "axis", -1, &axis, error)
      || !keras_get_double (imp, c, "epsilon", 0.0, 1.0, &epsilon, error)
      || !keras_get_bool (imp, c, "center", &center, error)
      || !keras_get_bool (imp, c, "scale", &scale, error)
      || !keras_get_bool (imp, c, "rms_scaling", &rms, error))
    return FALSE;
  if (!keras_is_channel_axis (imp, axis, call->rank))
    {
      keras_set_error (error, imp,
                       "axis %" G_GINT64_FORMAT " is not supported; Kilt normalises over the "
                       "channel axis only",
                       axis);
      return FALSE;
    }
  if (rms)
    {
      keras_set_error (error, imp, "rms_scaling = true is not supported");
      return FALSE;
    }
  if (epsilon <= 0)
    {
      keras_set_error (error, imp, "epsilon must be above 0");
      return FALSE;
    }
  cfg->epsilon = (float)epsilon;
  cfg->bn_no_center = !center;
  cfg->bn_no_scale = !scale;
  keras_note_weight_options (imp, c, "beta", NULL);
  keras_note_weight_options (imp, c, "gamma", NULL);
  return TRUE;
}

static gboolean
convert_rescaling (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  double scale = 1, offset = 0;

  if (!keras_get_double (imp, call->c, "scale", -1e30, 1e30, &scale, error)
      || !keras_get_double (imp, call->c, "offset", -1e30, 1e30, &offset, error))
    return FALSE;
  cfg->scale = (float)scale;
  cfg->offset = (float)offset;
  return TRUE;
}

/* Reshape's target_shape, channels last or first; a -1 (Kilt's 0) takes what is left. */
static gboolean
convert_reshape (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonArray *a = keras_member_array (call->c, "target_shape");
  guint len = a ? json_array_get_length (a) : 0, dims[3] = { 1, 1, 1 };
  gboolean any_free = FALSE;

  if (len < 1 || len > 3)
    {
      g_autofree char *text = keras_render (keras_member (call->c, "target_shape"));
      keras_set_error (error, imp,
                       "target_shape %s is not supported; Kilt takes (features), (steps, "
                       "features) or (height, width, channels)",
                       text);
      return FALSE;
    }
  for (guint i = 0; i < len; i++)
    {
      JsonNode *d = json_array_get_element (a, i);
      if (keras_node_is (d, G_TYPE_INT64) && json_node_get_int (d) == -1 && !any_free)
        {
          dims[i] = 0;
          any_free = TRUE;
        }
      else if (!keras_get_int (imp, d, "target_shape", 1, &dims[i], error))
        return FALSE;
    }
  if (len == 1)
    cfg->target = (KiltShape){ dims[0], 1, 1 };
  else if (len == 2) /* a sequence (steps, features): Kilt's (features, 1, steps) */
    cfg->target = (KiltShape){ dims[1], 1, dims[0] };
  else if (imp->format == FORMAT_CHANNELS_FIRST)
    cfg->target = (KiltShape){ dims[0], dims[1], dims[2] };
  else
    cfg->target = (KiltShape){ dims[2], dims[0], dims[1] };
  call->rank = len + 1;
  return TRUE;
}

/* Normalization's mean and variance given in the config: numbers or lists of one per channel
 * (at most KILT_NORM_CONST_MAX); Keras keeps them as constants, not weights. */
static gboolean
get_norm_constants (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  const char *keys[] = { "mean", "variance" };
  float *dst[] = { cfg->norm_mean, cfg->norm_var };
  guint len[2] = { 0, 0 }, n;

  for (guint k = 0; k < 2; k++)
    {
      JsonNode *node = keras_member (call->c, keys[k]);
      JsonArray *a = node && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
      guint count = a ? json_array_get_length (a) : 1;
      if (node == NULL || count == 0 || count > KILT_NORM_CONST_MAX)
        goto bad;
      for (guint i = 0; i < count; i++)
        {
          JsonNode *v = a ? json_array_get_element (a, i) : node;
          if (!keras_node_is (v, G_TYPE_DOUBLE) && !keras_node_is (v, G_TYPE_INT64))
            goto bad;
          dst[k][i] = (float)json_node_get_double (v);
        }
      len[k] = count;
    }
  /* One of them a single number: spread it to the other's length. */
  n = MAX (len[0], len[1]);
  for (guint k = 0; k < 2; k++)
    {
      if (len[k] != n && len[k] != 1)
        goto bad;
      for (guint i = len[k]; i < n; i++)
        dst[k][i] = dst[k][0];
    }
  cfg->norm_n = n;
  return TRUE;

bad:
  keras_set_error (error, imp,
                   "mean and variance must both be given, as numbers or lists of 1 to %d numbers "
                   "(one per channel)",
                   KILT_NORM_CONST_MAX);
  return FALSE;
}

/* Normalization as Keras adapts it (mean, variance and count become weights), or with a mean
 * and variance written into the config (constants Keras does not count). */
static gboolean
convert_normalization (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  gint64 axis;
  gboolean invert = FALSE;

  if (!keras_get_axis (imp, call->c, "axis", -1, &axis, error)
      || !keras_get_bool (imp, call->c, "invert", &invert, error))
    return FALSE;
  if (!keras_is_channel_axis (imp, axis, call->rank))
    {
      keras_set_error (error, imp,
                       "axis %" G_GINT64_FORMAT " is not supported; Kilt normalises over the "
                       "channel axis only",
                       axis);
      return FALSE;
    }
  if (invert)
    {
      keras_set_error (error, imp, "invert = true is not supported");
      return FALSE;
    }
  if (keras_member (call->c, "mean") || keras_member (call->c, "variance"))
    return get_norm_constants (imp, call, cfg, error);
  return TRUE;
}

static gboolean
convert_multiply (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  if (call->n_inputs < 2)
    {
      keras_set_error (error, imp, "needs at least two inputs, got %u", call->n_inputs);
      return FALSE;
    }
  for (guint i = 0; i < call->n_inputs; i++)
    call->rank = MAX (call->rank, keras_node_rank (imp, call->inputs[i]));
  return TRUE;
}

static gboolean
convert_dropout (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  double rate = 0;

  if (g_str_equal (call->cls, "SpatialDropout2D"))
    {
      if (call->rank != 4)
        {
          keras_set_error (error, imp, "expects an image input (height, width, channels)");
          return FALSE;
        }
      cfg->dropout_mask = KILT_DROPOUT_CHANNEL;
    }
  else if (keras_member (c, "noise_shape") && !get_noise_shape (imp, call, cfg, error))
    return FALSE;
  if (!keras_get_double (imp, c, "rate", 0, 0.999999, &rate, error)
      || !keras_get_double (imp, c, "p", 0, 0.999999, &rate, error)) /* Keras 1 */
    return FALSE;
  cfg->rate = (float)rate;
  return TRUE;
}

static gboolean
convert_flatten (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  if (!keras_check_data_format (imp, call->c, error))
    return FALSE;
  call->rank = 2;
  return TRUE;
}

/* Add, Subtract, Average, Maximum, Minimum: shapes are checked when the model is built. */
static gboolean
convert_add (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  if (call->n_inputs < 2)
    {
      keras_set_error (error, imp, "needs at least two inputs, got %u", call->n_inputs);
      return FALSE;
    }
  return TRUE;
}

static gboolean
convert_concatenate (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  gint64 axis;

  if (!keras_get_axis (imp, call->c, "axis", -1, &axis, error))
    return FALSE;
  if (call->n_inputs < 2)
    {
      keras_set_error (error, imp, "needs at least two inputs, got %u", call->n_inputs);
      return FALSE;
    }
  for (guint i = 1; i < call->n_inputs; i++)
    if (keras_node_rank (imp, call->inputs[i]) != call->rank)
      {
        keras_set_error (error, imp, "its inputs mix images and vectors");
        return FALSE;
      }
  if (!keras_is_channel_axis (imp, axis, call->rank))
    {
      keras_set_error (error, imp,
                       "axis %" G_GINT64_FORMAT " is not supported; Kilt concatenates along the "
                       "channel axis only",
                       axis);
      return FALSE;
    }
  return TRUE;
}

/* Masking: mask_value (0); the steps whose features all equal it become zeros, and the layers
 * after it that skip masked steps read them from its input. */
static gboolean
convert_masking (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  double value = 0;

  if (!expect_sequence (imp, call, error)
      || !keras_get_double (imp, call->c, "mask_value", -1e30, 1e30, &value, error))
    return FALSE;
  cfg->mask_value = (float)value;
  imp->made = (KerasMask){ call->inputs[0], KILT_STEP_MASK_VALUES, cfg->mask_value };
  return TRUE;
}

/* Embedding: input_dim, output_dim; ids (steps,) become the sequence (steps, output_dim),
 * Kilt's (output_dim, 1, steps). Keras starts the table uniform in [-0.05, 0.05]; a
 * symmetric RandomUniform keeps its limit, other initialisers are noted and replaced. */
static gboolean
convert_embedding (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  JsonNode *init = keras_member (c, "embeddings_initializer");
  const char *init_class = keras_object_class (init);
  gboolean mask_zero = FALSE, sparse = FALSE;
  guint lora = 0;

  if (call->rank != 2)
    {
      keras_set_error (error, imp, "expects a vector of ids (steps) per sample");
      return FALSE;
    }
  if (imp->format == FORMAT_CHANNELS_FIRST)
    {
      keras_set_error (error, imp,
                       "gives (steps, output_dim), which a channels_first model's 1-D layers "
                       "read the other way round; this is not supported");
      return FALSE;
    }
  if (keras_member (c, "input_dim") == NULL || keras_member (c, "output_dim") == NULL)
    {
      keras_set_error (error, imp, "expected input_dim and output_dim");
      return FALSE;
    }
  if (!keras_get_int (imp, keras_member (c, "input_dim"), "input_dim", 1, &cfg->input_dim, error)
      || !keras_get_int (imp, keras_member (c, "output_dim"), "output_dim", 1, &cfg->units, error)
      || !keras_get_bool (imp, c, "mask_zero", &mask_zero, error)
      || !keras_get_bool (imp, c, "sparse", &sparse, error))
    return FALSE;
  /* Id 0 is still looked up (row 0); the steps it marks are what later layers skip. */
  if (mask_zero)
    imp->made = (KerasMask){ call->inputs[0], KILT_STEP_MASK_IDS, 0.0f };
  if (sparse)
    {
      keras_set_error (error, imp, "sparse = true (sparse gradients) is not supported");
      return FALSE;
    }
  if (keras_member (c, "lora_rank")
      && !keras_get_int (imp, keras_member (c, "lora_rank"), "lora_rank", 0, &lora, error))
    return FALSE;
  if (lora)
    {
      keras_set_error (error, imp, "lora_rank %u (LoRA) is not supported", lora);
      return FALSE;
    }
  if (init_class
      && (g_ascii_strcasecmp (init_class, "RandomUniform") == 0
          || g_ascii_strcasecmp (init_class, "uniform") == 0
          || g_ascii_strcasecmp (init_class, "random_uniform") == 0))
    {
      JsonObject *ic = JSON_NODE_HOLDS_OBJECT (init)
                           ? keras_member_object (json_node_get_object (init), "config")
                           : NULL;
      double lo = -0.05, hi = 0.05;
      if (!keras_get_double (imp, ic, "minval", -1e30, 1e30, &lo, error)
          || !keras_get_double (imp, ic, "maxval", -1e30, 1e30, &hi, error))
        return FALSE;
      if (hi > 0 && lo == -hi)
        cfg->init_value = (float)hi;
      else
        keras_add_note (imp,
                        "embeddings_initializer RandomUniform (%g, %g) is replaced by (-0.05, "
                        "0.05)",
                        lo, hi);
    }
  else if (init_class)
    keras_add_note (imp, "embeddings_initializer %s is replaced by RandomUniform (-0.05, 0.05)",
                    init_class);
  keras_note_weight_options (imp, c, "embeddings", NULL);
  if (keras_member (c, "activity_regularizer"))
    keras_add_note (imp, "activity_regularizer is ignored");
  call->rank = 3;
  return TRUE;
}

/* ---- the table ---------------------------------------------------------------------------- */

/* One Keras class (or alias) and how it becomes a Kilt node. */
/* ConvNeXt's LayerScale: gamma * x with one learned gamma per channel (the last axis),
 * starting at init_values. That is a 1x1 DepthwiseConv2D without bias, whose kernel holds
 * gamma, so it runs (forward and backward) on the depthwise kernels. */
static gboolean
convert_layer_scale (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error)
{
  JsonObject *c = call->c;
  JsonArray *built
      = keras_member_array (keras_member_object (imp->cur->layer, "build_config"), "input_shape");
  double init = 1e-6;
  guint dim = 0;

  if (call->rank != 4)
    {
      keras_set_error (error, imp, "expects an image input (height, width, channels)");
      return FALSE;
    }
  if (imp->format == FORMAT_CHANNELS_FIRST)
    {
      keras_set_error (error, imp,
                       "scales the last axis, which is not the channels of a channels_first "
                       "model; this is not supported");
      return FALSE;
    }
  if (!keras_get_double (imp, c, "init_values", -1e30, 1e30, &init, error))
    return FALSE;
  if (keras_member (c, "projection_dim") == NULL
      || !keras_get_int (imp, keras_member (c, "projection_dim"), "projection_dim", 1, &dim, error))
    {
      if (error && *error == NULL)
        keras_set_error (error, imp, "expected projection_dim");
      return FALSE;
    }
  /* Kilt's shapes come later, when the model is built; Keras 3 states the input it saw. */
  if (built && json_array_get_length (built) == 4
      && keras_node_is (json_array_get_element (built, 3), G_TYPE_INT64)
      && json_array_get_int_element (built, 3) != (gint64)dim)
    {
      keras_set_error (error, imp,
                       "projection_dim %u differs from its input's %" G_GINT64_FORMAT " channels",
                       dim, json_array_get_int_element (built, 3));
      return FALSE;
    }
  cfg->units = 1;
  cfg->kh = cfg->kw = cfg->sh = cfg->sw = 1;
  cfg->same = FALSE;
  cfg->use_bias = FALSE;
  cfg->activation = KILT_ACT_LINEAR;
  cfg->init = KILT_INIT_CONSTANT;
  cfg->init_value = (float)init;
  return TRUE;
}

typedef struct
{
  const char *keras_class;
  KiltLayerType type;
  gboolean many_inputs; /* merge layers; the rest take one input */
  gboolean (*convert) (Import *imp, KerasCall *call, KiltLayerConfig *cfg, GError **error);
  gboolean alias; /* another spelling of the row above: left out of the list of layers */
} Converter;

static const Converter converters[] = {
  { "Conv2D", KILT_LAYER_CONV2D, FALSE, convert_conv },
  { "Dense", KILT_LAYER_DENSE, FALSE, convert_dense },
  { "MaxPooling2D", KILT_LAYER_MAX_POOL2D, FALSE, convert_pool },
  { "MaxPool2D", KILT_LAYER_MAX_POOL2D, FALSE, convert_pool, TRUE },
  { "AveragePooling2D", KILT_LAYER_AVG_POOL2D, FALSE, convert_pool },
  { "AvgPool2D", KILT_LAYER_AVG_POOL2D, FALSE, convert_pool, TRUE },
  { "GlobalAveragePooling2D", KILT_LAYER_GLOBAL_AVG_POOL2D, FALSE, convert_global_avg_pool },
  { "GlobalAvgPool2D", KILT_LAYER_GLOBAL_AVG_POOL2D, FALSE, convert_global_avg_pool, TRUE },
  { "GlobalMaxPooling2D", KILT_LAYER_GLOBAL_MAX_POOL2D, FALSE, convert_global_avg_pool },
  { "GlobalMaxPool2D", KILT_LAYER_GLOBAL_MAX_POOL2D, FALSE, convert_global_avg_pool, TRUE },
  { "Activation", KILT_LAYER_ACTIVATION, FALSE, convert_activation },
  { "ReLU", KILT_LAYER_ACTIVATION, FALSE, convert_relu },
  { "LeakyReLU", KILT_LAYER_ACTIVATION, FALSE, convert_leaky_relu },
  { "Softmax", KILT_LAYER_ACTIVATION, FALSE, convert_softmax },
  { "ELU", KILT_LAYER_ACTIVATION, FALSE, convert_elu },
  { "Dropout", KILT_LAYER_DROPOUT, FALSE, convert_dropout },
  { "SpatialDropout2D", KILT_LAYER_DROPOUT, FALSE, convert_dropout },
  { "Flatten", KILT_LAYER_FLATTEN, FALSE, convert_flatten },
  { "BatchNormalization", KILT_LAYER_BATCH_NORM, FALSE, convert_batch_norm },
  { "LayerNormalization", KILT_LAYER_LAYER_NORM, FALSE, convert_layer_norm },
  { "Add", KILT_LAYER_ADD, TRUE, convert_add },
  { "Subtract", KILT_LAYER_SUBTRACT, TRUE, convert_add },
  { "Average", KILT_LAYER_AVERAGE, TRUE, convert_add },
  { "Maximum", KILT_LAYER_MAXIMUM, TRUE, convert_add },
  { "Minimum", KILT_LAYER_MINIMUM, TRUE, convert_add },
  { "Concatenate", KILT_LAYER_CONCATENATE, TRUE, convert_concatenate },
  { "ZeroPadding2D", KILT_LAYER_ZERO_PADDING2D, FALSE, convert_padding },
  { "Cropping2D", KILT_LAYER_CROPPING2D, FALSE, convert_padding },
  { "UpSampling2D", KILT_LAYER_UPSAMPLING2D, FALSE, convert_upsampling },
  { "Permute", KILT_LAYER_PERMUTE, FALSE, convert_permute },
  { "Embedding", KILT_LAYER_EMBEDDING, FALSE, convert_embedding },
  { "Rescaling", KILT_LAYER_RESCALING, FALSE, convert_rescaling },
  { "Reshape", KILT_LAYER_RESHAPE, FALSE, convert_reshape },
  { "Multiply", KILT_LAYER_MULTIPLY, TRUE, convert_multiply },
  { "Normalization", KILT_LAYER_NORMALIZATION, FALSE, convert_normalization },
  { "DepthwiseConv2D", KILT_LAYER_DEPTHWISE_CONV2D, FALSE, convert_depthwise },
  { "LayerScale", KILT_LAYER_DEPTHWISE_CONV2D, FALSE, convert_layer_scale },
  { "Conv2DTranspose", KILT_LAYER_CONV2D_TRANSPOSE, FALSE, convert_conv_transpose },
  { "Conv1D", KILT_LAYER_CONV2D, FALSE, convert_conv1d },
  { "Convolution1D", KILT_LAYER_CONV2D, FALSE, convert_conv1d, TRUE },
  { "MaxPooling1D", KILT_LAYER_MAX_POOL2D, FALSE, convert_pool1d },
  { "MaxPool1D", KILT_LAYER_MAX_POOL2D, FALSE, convert_pool1d, TRUE },
  { "AveragePooling1D", KILT_LAYER_AVG_POOL2D, FALSE, convert_pool1d },
  { "AvgPool1D", KILT_LAYER_AVG_POOL2D, FALSE, convert_pool1d, TRUE },
  { "GlobalMaxPooling1D", KILT_LAYER_GLOBAL_MAX_POOL2D, FALSE, convert_global_pool1d },
  { "GlobalMaxPool1D", KILT_LAYER_GLOBAL_MAX_POOL2D, FALSE, convert_global_pool1d, TRUE },
  { "GlobalAveragePooling1D", KILT_LAYER_GLOBAL_AVG_POOL2D, FALSE, convert_global_pool1d },
  { "GlobalAvgPool1D", KILT_LAYER_GLOBAL_AVG_POOL2D, FALSE, convert_global_pool1d, TRUE },
  { "Convolution2DTranspose", KILT_LAYER_CONV2D_TRANSPOSE, FALSE, convert_conv_transpose, TRUE },
  { "SeparableConv2D", KILT_LAYER_DEPTHWISE_CONV2D, FALSE, convert_depthwise },
  { "SeparableConvolution2D", KILT_LAYER_DEPTHWISE_CONV2D, FALSE, convert_depthwise, TRUE },
  { "LSTM", KILT_LAYER_LSTM, FALSE, convert_rnn },
  { "GRU", KILT_LAYER_GRU, FALSE, convert_rnn },
  { "Masking", KILT_LAYER_MASKING, FALSE, convert_masking },
};

/* "InputLayer, Conv2D, ..., Add and Concatenate", from the table (aliases left out). */
static char *
supported_layers (void)
{
  GString *s = g_string_new ("InputLayer");
  guint n = G_N_ELEMENTS (converters), last = 0;

  for (guint i = 0; i < n; i++)
    if (!converters[i].alias)
      last = i;

  for (guint i = 0; i < n; i++)
    {
      if (!converters[i].alias)
        g_string_append_printf (s, i == last ? " and %s" : ", %s", converters[i].keras_class);
    }
  return g_string_free (s, FALSE);
}

/* Conv2D, Dense and DepthwiseConv2D apply only activations whose gradient follows from their
 * output; any other becomes an Activation node after them ("LAYER/activation"). */
static gboolean
add_with_activation (Import *imp, KiltLayerType type, KiltLayerConfig *cfg, guint n_inputs,
                     const guint *inputs, guint rank, GError **error)
{
  KiltLayerConfig act = kilt_layer_config_default (KILT_LAYER_ACTIVATION);

  if ((type != KILT_LAYER_CONV2D && type != KILT_LAYER_DENSE && type != KILT_LAYER_DEPTHWISE_CONV2D
       && type != KILT_LAYER_CONV2D_TRANSPOSE)
      || kilt_layer_config_act_fusable (cfg))
    return keras_add_node (imp, type, cfg, n_inputs, inputs, rank, error);
  act.activation = cfg->activation;
  act.alpha = cfg->alpha;
  cfg->activation = KILT_ACT_LINEAR;
  return keras_add_node (imp, type, cfg, n_inputs, inputs, rank, error)
         && keras_add_extra_node (imp, KILT_LAYER_ACTIVATION, &act, "activation", error);
}

/* A number the call gives beside its one tensor: Keras 3 writes x + 3.0 as an Add whose
 * args hold the float, tf.keras as a TFOpLambda whose call kwargs hold it as "y". */
static gboolean
scalar_operand (const Entry *e, double *value)
{
  JsonArray *nodes = keras_member_array (e->layer, "inbound_nodes");
  JsonNode *first
      = nodes && json_array_get_length (nodes) ? json_array_get_element (nodes, 0) : NULL;

  if (first && JSON_NODE_HOLDS_OBJECT (first))
    {
      JsonArray *args = keras_member_array (json_node_get_object (first), "args");
      for (guint i = 0; args && i < json_array_get_length (args); i++)
        {
          JsonNode *a = json_array_get_element (args, i);
          if (keras_node_is (a, G_TYPE_DOUBLE) || keras_node_is (a, G_TYPE_INT64))
            {
              *value = json_node_get_double (a);
              return TRUE;
            }
        }
    }
  else if (first && JSON_NODE_HOLDS_ARRAY (first)
           && json_array_get_length (json_node_get_array (first)) > 0)
    {
      /* [name, node, tensor, kwargs] (TFOpLambda's own form) or [[name, ...]]. */
      JsonArray *outer = json_node_get_array (first);
      JsonNode *call = keras_node_is (json_array_get_element (outer, 0), G_TYPE_STRING)
                           ? first
                           : json_array_get_element (outer, 0);
      JsonArray *c = JSON_NODE_HOLDS_ARRAY (call) ? json_node_get_array (call) : NULL;
      JsonNode *kw = c && json_array_get_length (c) == 4 ? json_array_get_element (c, 3) : NULL;
      JsonNode *y = kw && JSON_NODE_HOLDS_OBJECT (kw)
                        ? keras_member (json_node_get_object (kw), "y")
                        : NULL;
      if (keras_node_is (y, G_TYPE_DOUBLE) || keras_node_is (y, G_TYPE_INT64))
        {
          *value = json_node_get_double (y);
          return TRUE;
        }
    }
  return FALSE;
}

/* x + c and x * c with a constant c, as MobileNetV3's hard_sigmoid writes them: a Rescaling.
 * FALSE with nothing set when @e is not such a call. */
static gboolean
convert_scalar_op (Import *imp, const Entry *e, guint n_inputs, const guint *inputs,
                   gboolean *handled, GError **error)
{
  const char *fn = keras_member_string (e->config, "function");
  gboolean add, mul;
  double v;
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_RESCALING);

  *handled = FALSE;
  if (g_str_equal (e->class_name, "TFOpLambda"))
    {
      add = fn && (g_str_equal (fn, "__operators__.add") || g_str_equal (fn, "math.add"));
      mul = fn && g_str_equal (fn, "math.multiply");
      if (!add && !mul)
        {
          keras_set_error (error, imp,
                           "TensorFlow op %s is not supported; Kilt takes __operators__.add, "
                           "math.add and math.multiply with a constant",
                           fn ? fn : "(unnamed)");
          *handled = TRUE;
          return FALSE;
        }
    }
  else
    {
      add = g_str_equal (e->class_name, "Add");
      mul = g_str_equal (e->class_name, "Multiply");
      if (!(add || mul) || n_inputs != 1)
        return FALSE;
    }
  *handled = TRUE;
  if (n_inputs == 2 && g_str_equal (e->class_name, "TFOpLambda"))
    {
      /* Two tensors: tf.keras writes a residual x + y this way. */
      KiltLayerType t = add ? KILT_LAYER_ADD : KILT_LAYER_MULTIPLY;
      KiltLayerConfig m = kilt_layer_config_default (t);
      return keras_add_node (imp, t, &m, 2, inputs, keras_node_rank (imp, inputs[0]), error);
    }
  if (n_inputs != 1 || !scalar_operand (e, &v) || !isfinite (v))
    {
      keras_set_error (error, imp, "expected one tensor and one constant operand, or two tensors");
      return FALSE;
    }
  if (add)
    cfg.offset = (float)v;
  else
    cfg.scale = (float)v;
  return keras_add_node (imp, KILT_LAYER_RESCALING, &cfg, 1, inputs,
                         keras_node_rank (imp, inputs[0]), error);
}

/* keras.applications' InceptionResNetV2 CustomScaleLayer: inputs[0] + inputs[1] * scale, as a
 * Rescaling of the second input ("LAYER/scale") and an Add under the layer's name. */
static gboolean
convert_custom_scale (Import *imp, const Entry *e, guint n_inputs, const guint *inputs,
                      GError **error)
{
  KiltLayerConfig r = kilt_layer_config_default (KILT_LAYER_RESCALING);
  KiltLayerConfig add = kilt_layer_config_default (KILT_LAYER_ADD);
  double scale = NAN;
  guint sum[2];

  if (n_inputs != 2)
    {
      keras_set_error (error, imp, "takes two inputs, got %u", n_inputs);
      return FALSE;
    }
  if (!keras_get_double (imp, e->config, "scale", -1e30, 1e30, &scale, error))
    return FALSE;
  if (isnan (scale))
    {
      keras_set_error (error, imp, "expected scale");
      return FALSE;
    }
  r.scale = (float)scale;
  sum[0] = inputs[0];
  sum[1] = kilt_model_n_nodes (imp->model);
  return keras_add_node_as (imp, "scale", KILT_LAYER_RESCALING, &r, 1, &inputs[1],
                            keras_node_rank (imp, inputs[1]), error)
         && keras_add_node (imp, KILT_LAYER_ADD, &add, 2, sum, keras_node_rank (imp, inputs[0]),
                            error);
}

static gboolean convert_layer (Import *imp, const Entry *e, JsonObject *c, const char *cls,
                               guint n_inputs, const guint *inputs, GError **error);

gboolean
keras_convert_layer (Import *imp, const Entry *e, guint n_inputs, const guint *inputs,
                     GError **error)
{
  JsonObject *c = e->config;
  const char *cls = e->class_name;
  gboolean trainable = TRUE;

  imp->cur = e;
  imp->made = keras_mask_none ();
  if (!keras_get_bool (imp, c, "trainable", &trainable, error))
    return FALSE;
  if (!trainable)
    {
      /* Every node the layer becomes (a SeparableConv2D is two, an activation may be one
       * more) is frozen, as in Keras. */
      guint first = kilt_model_n_nodes (imp->model);
      if (!convert_layer (imp, e, c, cls, n_inputs, inputs, error))
        return FALSE;
      for (guint i = first; i < kilt_model_n_nodes (imp->model); i++)
        kilt_model_set_trainable (imp->model, i, FALSE);
      keras_add_note (imp, "frozen as in Keras (trainable = false)");
      return TRUE;
    }
  return convert_layer (imp, e, c, cls, n_inputs, inputs, error);
}

static gboolean
convert_layer (Import *imp, const Entry *e, JsonObject *c, const char *cls, guint n_inputs,
               const guint *inputs, GError **error)
{
  const Converter *conv = NULL;
  KiltLayerConfig cfg;
  KerasCall call = { c, cls, n_inputs, inputs, n_inputs ? keras_node_rank (imp, inputs[0]) : 2 };
  const char *dtype = keras_member_string (c, "dtype");

  /* Keras 3 writes a dtype policy object; older files a string. */
  if (dtype == NULL && keras_member_object (c, "dtype"))
    dtype = keras_member_string (keras_member_object (keras_member_object (c, "dtype"), "config"),
                                 "name");
  if (dtype && !g_str_equal (dtype, "float32"))
    keras_add_note (imp, "dtype %s; Kilt computes in float32", dtype);

  if (g_str_equal (cls, "CustomScaleLayer"))
    return convert_custom_scale (imp, e, n_inputs, inputs, error);
  if (g_str_equal (cls, "Bidirectional"))
    return convert_bidirectional (imp, c, n_inputs, inputs, error);
  {
    gboolean handled;
    gboolean ok = convert_scalar_op (imp, e, n_inputs, inputs, &handled, error);
    if (handled)
      return ok;
  }
  for (guint i = 0; i < G_N_ELEMENTS (converters) && conv == NULL; i++)
    if (g_str_equal (cls, converters[i].keras_class))
      conv = &converters[i];
  if (conv == NULL)
    {
      g_autofree char *list = NULL;
      if (g_str_equal (cls, "Sequential") || g_str_equal (cls, "Functional")
          || g_str_equal (cls, "Model"))
        return keras_convert_nested (imp, e, n_inputs, inputs, error);
      list = supported_layers ();
      keras_set_error (error, imp, "layer type %s is not supported; Kilt imports %s", cls, list);
      return FALSE;
    }
  cfg = kilt_layer_config_default (conv->type);
  if (!conv->convert (imp, &call, &cfg, error))
    return FALSE;
  if (!conv->many_inputs && n_inputs != 1)
    {
      keras_set_error (error, imp, "takes one input, got %u", n_inputs);
      return FALSE;
    }
  /* Dense on an image: Keras applies it at every pixel over the channels (ConvNeXt's
   * pointwise layers), which is a 1x1 Conv2D. */
  if (conv->type == KILT_LAYER_DENSE && call.rank == 4)
    {
      KiltLayerConfig point = kilt_layer_config_default (KILT_LAYER_CONV2D);
      if (imp->format == FORMAT_CHANNELS_FIRST)
        {
          keras_set_error (error, imp,
                           "on an image of a channels_first model Keras applies Dense over the "
                           "width; this is not supported");
          return FALSE;
        }
      point.units = cfg.units;
      point.kh = point.kw = 1;
      point.use_bias = cfg.use_bias;
      point.activation = cfg.activation;
      point.alpha = cfg.alpha;
      point.init = cfg.init;
      return add_with_activation (imp, KILT_LAYER_CONV2D, &point, 1, inputs, 4, error);
    }
  /* SeparableConv2D: a DepthwiseConv2D without bias ("LAYER/depthwise"), then the pointwise
   * 1x1 Conv2D under the layer's name with its filters, bias and activation. */
  if (g_str_equal (cls, "SeparableConv2D"))
    {
      KiltLayerConfig point = kilt_layer_config_default (KILT_LAYER_CONV2D);
      guint dw_index = kilt_model_n_nodes (imp->model);
      point.units = call.filters;
      point.kh = point.kw = 1;
      point.use_bias = cfg.use_bias;
      point.activation = cfg.activation;
      point.alpha = cfg.alpha;
      point.init = cfg.init;
      cfg.use_bias = FALSE;
      cfg.activation = KILT_ACT_LINEAR;
      if (!keras_add_node_as (imp, "depthwise", KILT_LAYER_DEPTHWISE_CONV2D, &cfg, n_inputs, inputs,
                              call.rank, error))
        return FALSE;
      return add_with_activation (imp, KILT_LAYER_CONV2D, &point, 1, &dw_index, call.rank, error);
    }
  /* Conv1D with causal padding: "LAYER/causal_pad" pads the steps on the left, then the
   * convolution (valid) under the layer's name. */
  if (call.causal)
    {
      KiltLayerConfig pad = kilt_layer_config_default (KILT_LAYER_ZERO_PADDING2D);
      guint pad_index = kilt_model_n_nodes (imp->model);
      pad.pad[2] = call.causal;
      cfg.same = FALSE;
      if (!keras_add_node_as (imp, "causal_pad", KILT_LAYER_ZERO_PADDING2D, &pad, n_inputs, inputs,
                              call.rank, error))
        return FALSE;
      return add_with_activation (imp, conv->type, &cfg, 1, &pad_index, call.rank, error);
    }
  return add_with_activation (imp, conv->type, &cfg, n_inputs, inputs, call.rank, error);
}
