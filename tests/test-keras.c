/* Keras to_json () import: real files from Keras 2 and 3 against what Keras reported, and
 * errors that name the layer and the option. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-error.h"
#include "kilt-keras.h"
#include "kilt-model-json.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <pthread.h>
#include <string.h>

static gboolean
have_all_layers (void)
{
  for (int t = 0; t < KILT_LAYER_N_TYPES; t++)
    if (kilt_layer_class_get (t) == NULL)
      {
        g_test_skip_printf ("layer class %s is not linked in yet", kilt_layer_type_name (t));
        return FALSE;
      }
  return TRUE;
}

static char *
data_file (const char *name)
{
  return g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", name, NULL);
}

/* Keras' (None, h, w, c), (None, steps, c) or (None, n) as Kilt's channels-first shape. */
static KiltShape
keras_shape (JsonArray *a)
{
  guint n = json_array_get_length (a);

  g_assert_true (JSON_NODE_HOLDS_NULL (json_array_get_element (a, 0)));
  if (n == 2)
    return (KiltShape){ (guint)json_array_get_int_element (a, 1), 1, 1 };
  if (n == 3)
    return (KiltShape){ (guint)json_array_get_int_element (a, 2), 1,
                        (guint)json_array_get_int_element (a, 1) };
  g_assert_cmpuint (n, ==, 4);
  return (KiltShape){ (guint)json_array_get_int_element (a, 3),
                      (guint)json_array_get_int_element (a, 1),
                      (guint)json_array_get_int_element (a, 2) };
}

/* Loads tests/data/keras/<stem>.json and checks it against <stem>.counts.json, which the
 * Python script wrote from Keras itself: total and trainable parameters, and per layer the
 * output shape and parameter count. */
static void
check_paths (const char *stem, const char *path, const char *counts_path)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autoptr (GHashTable) listed = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *notes = NULL;
  JsonObject *counts;
  JsonArray *layers;
  gboolean has_input_row = FALSE;
  guint extra = 0;

  g_test_message ("%s", stem);
  m = kilt_keras_load_file (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  if (notes)
    g_test_message ("notes:\n%s", notes);
  g_assert_true (json_parser_load_from_file (parser, counts_path, &error));
  g_assert_no_error (error);
  counts = json_node_get_object (json_parser_get_root (parser));

  g_assert_cmpuint (m->n_params + m->n_state, ==,
                    (gsize)json_object_get_int_member (counts, "count_params"));
  /* Trainable: neither state (BatchNormalization's moving statistics) nor frozen layers. */
  g_assert_cmpuint (m->n_grads, ==, (gsize)json_object_get_int_member (counts, "trainable_params"));
  layers = json_object_get_array_member (counts, "layers");
  for (guint i = 0; i < json_array_get_length (layers); i++)
    g_hash_table_add (listed, (gpointer)json_object_get_string_member (
                                  json_array_get_object_element (layers, i), "name"));
  for (guint i = 0; i < json_array_get_length (layers); i++)
    {
      JsonObject *l = json_array_get_object_element (layers, i);
      const char *name = json_object_get_string_member (l, "name");
      KiltNode *node = kilt_model_find (m, name);
      KiltShape want = keras_shape (json_object_get_array_member (l, "output_shape"));

      if (node == NULL)
        g_error ("%s: Keras layer %s has no Kilt node", stem, name);
      if (node->index == 0)
        has_input_row = TRUE;
      g_assert_cmpuint (node->out_shape.c, ==, want.c);
      g_assert_cmpuint (node->out_shape.h, ==, want.h);
      g_assert_cmpuint (node->out_shape.w, ==, want.w);
      /* A Keras layer Kilt splits (SeparableConv2D: "NAME/depthwise" and "NAME") counts all
       * its nodes; "NAME/..." that Keras lists itself is another layer (tf.keras'
       * MobileNetV3 has "Conv" and "Conv/BatchNorm"). */
      {
        g_autofree char *prefix = g_strconcat (name, "/", NULL);
        gsize params = 0;
        for (guint j = 0; j < kilt_model_n_nodes (m); j++)
          {
            KiltNode *part = kilt_model_node (m, j);
            if (g_str_equal (part->name, name)
                || (g_str_has_prefix (part->name, prefix)
                    && !g_hash_table_contains (listed, part->name)))
              params += part->n_params + part->n_state;
          }
        g_assert_cmpuint (params, ==, (gsize)json_object_get_int_member (l, "params"));
      }
    }
  /* Keras lists a Sequential model's layers without its input: one node each, plus ours,
   * plus the "LAYER/activation" nodes Kilt adds after a Conv2D or Dense (a nested model's
   * "SCOPE/LAYER" is a listed layer, not an extra node). */
  for (guint i = 0; i < kilt_model_n_nodes (m); i++)
    {
      const char *node_name = kilt_model_node (m, i)->name;
      extra += !g_hash_table_contains (listed, node_name) && strchr (node_name, '/') != NULL;
    }
  g_assert_cmpuint (kilt_model_n_nodes (m) - extra, ==,
                    json_array_get_length (layers) + (has_input_row ? 0 : 1));
  g_assert_cmpint (m->loss, ==, KILT_LOSS_SOFTMAX_CROSS_ENTROPY);
}

static void
check_file (const char *stem)
{
  g_autofree char *json_name = g_strconcat (stem, ".json", NULL);
  g_autofree char *counts_name = g_strconcat (stem, ".counts.json", NULL);
  g_autofree char *path = data_file (json_name);
  g_autofree char *counts_path = data_file (counts_name);

  check_paths (stem, path, counts_path);
}

/* Writes the gzip file @gz uncompressed to @dir/@name; returns its path. */
static char *
gunzip_to (const char *gz, const char *dir, const char *name)
{
  g_autoptr (GFile) in_file = g_file_new_for_path (gz);
  g_autofree char *out_path = g_build_filename (dir, name, NULL);
  g_autoptr (GFile) out_file = g_file_new_for_path (out_path);
  g_autoptr (GError) error = NULL;
  g_autoptr (GFileInputStream) in = g_file_read (in_file, NULL, &error);
  g_autoptr (GFileOutputStream) out = NULL;
  g_autoptr (GZlibDecompressor) z = NULL;
  g_autoptr (GInputStream) plain = NULL;

  g_assert_no_error (error);
  out = g_file_replace (out_file, NULL, FALSE, G_FILE_CREATE_NONE, NULL, &error);
  g_assert_no_error (error);
  z = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
  plain = g_converter_input_stream_new (G_INPUT_STREAM (in), G_CONVERTER (z));
  g_assert_cmpint (g_output_stream_splice (G_OUTPUT_STREAM (out), plain,
                                           G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE
                                               | G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                           NULL, &error),
                   >, 0);
  g_assert_no_error (error);
  return g_steal_pointer (&out_path);
}

/* Every keras.applications network of Keras 3 and of tf.keras 2.15 at a small input
 * (tests/data/keras/make-keras-apps.py wrote them, gzip-compressed: the JSON of the big ones
 * runs to a megabyte): Keras' parameter counts and every layer's output shape.
 * KILT_TEST_APPS_DIR names another folder of such files: the same check by hand on the
 * default-size ones the script writes with --size default (too big to commit). */
static void
test_applications (void)
{
  g_autofree char *dir = g_getenv ("KILT_TEST_APPS_DIR")
                             ? g_strdup (g_getenv ("KILT_TEST_APPS_DIR"))
                             : data_file ("apps");
  g_autoptr (GDir) d = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) stems = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *tmp = NULL;
  const char *name;
  guint keras2 = 0, keras3 = 0;

  if (!have_all_layers ())
    return;
  d = g_dir_open (dir, 0, &error);
  g_assert_no_error (error);
  while ((name = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (name, ".counts.json.gz"))
      g_ptr_array_add (stems, g_strndup (name, strlen (name) - strlen (".counts.json.gz")));
  tmp = g_dir_make_tmp ("kilt-apps-XXXXXX", &error);
  g_assert_no_error (error);
  for (guint i = 0; i < stems->len; i++)
    {
      const char *stem = stems->pdata[i];
      g_autofree char *gz = g_strdup_printf ("%s/%s.json.gz", dir, stem);
      g_autofree char *counts_gz = g_strdup_printf ("%s/%s.counts.json.gz", dir, stem);
      g_autofree char *path = gunzip_to (gz, tmp, "model.json");
      g_autofree char *counts_path = gunzip_to (counts_gz, tmp, "counts.json");

      check_paths (stem, path, counts_path);
      keras2 += g_str_has_prefix (stem, "keras2-");
      keras3 += g_str_has_prefix (stem, "keras3-");
      g_unlink (path);
      g_unlink (counts_path);
    }
  g_rmdir (tmp);
  /* The 35 the issue names (ResNets and their V2s, EfficientNet B0-B7 and V2 B0-B3, S, M,
   * L ...) from both Kerases: a file lost from the folder fails here, not silently. */
  g_assert_cmpuint (keras2 + keras3, >, 0);
  g_assert_cmpuint (keras3, ==, g_getenv ("KILT_TEST_APPS_DIR") && keras3 == 0 ? 0 : 35);
  g_assert_cmpuint (keras2, ==, g_getenv ("KILT_TEST_APPS_DIR") && keras2 == 0 ? 0 : 35);
}

static void
test_sequential (void)
{
  if (!have_all_layers ())
    return;
  check_file ("keras2-cifar10_cnn");
  check_file ("keras3-cifar10_cnn");
  check_file ("keras2-mnist_cnn");
  check_file ("keras3-mnist_cnn");
  check_file ("keras2-mnist_mlp");
  check_file ("keras3-mnist_mlp");
}

static void
test_legacy (void)
{
  if (!have_all_layers ())
    return;
  check_file ("legacy-mnist_cnn");
}

static void
test_functional (void)
{
  g_autofree char *path = data_file ("keras3-resnet20.json");
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autofree char *notes = NULL;
  guint adds = 0;

  if (!have_all_layers ())
    return;
  check_file ("keras2-residual");
  check_file ("keras3-residual");
  check_file ("keras2-resnet20");
  check_file ("keras3-resnet20");

  /* The wiring, not just the counts: nine residual additions of two branches each, and the
   * regularizers Keras' example sets reported as ignored. */
  m = kilt_keras_load_file (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < kilt_model_n_nodes (m); i++)
    {
      KiltNode *n = kilt_model_node (m, i);
      if (n->type != KILT_LAYER_ADD)
        continue;
      adds++;
      g_assert_cmpuint (n->n_inputs, ==, 2);
      g_assert_cmpuint (n->inputs[0], !=, n->inputs[1]);
    }
  g_assert_cmpuint (adds, ==, 9);
  g_assert_nonnull (notes);
  g_assert_nonnull (strstr (notes, "kernel_regularizer L2 is ignored"));
  g_assert_cmpint (kilt_model_output (m)->cfg.activation, ==, KILT_ACT_SOFTMAX);
}

static KiltNode *
find (KiltModel *m, const char *name)
{
  KiltNode *n = kilt_model_find (m, name);

  if (n == NULL)
    g_error ("no node %s", name);
  return n;
}

static KiltModel *
load_data_file (const char *file)
{
  g_autofree char *path = data_file (file);
  g_autoptr (GError) error = NULL;
  KiltModel *m = kilt_keras_load_file (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);

  g_assert_no_error (error);
  return m;
}

/* ZeroPadding2D, Cropping2D and activations Conv2D and Dense do not fold in, from both
 * generations, against Keras' own counts and shapes. */
static void
test_padding_files (void)
{
  const char *stems[] = { "keras2-padding", "keras3-padding" };

  if (!have_all_layers ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (stems); i++)
    {
      g_autofree char *file = g_strconcat (stems[i], ".json", NULL);
      g_autoptr (KiltModel) m = NULL;
      KiltNode *n;

      check_file (stems[i]);
      m = load_data_file (file);
      n = find (m, "pad_sides");
      g_assert_cmpuint (n->cfg.pad[0], ==, 1);
      g_assert_cmpuint (n->cfg.pad[1], ==, 2);
      g_assert_cmpuint (n->cfg.pad[2], ==, 0);
      g_assert_cmpuint (n->cfg.pad[3], ==, 3);
      n = find (m, "crop_hw");
      g_assert_cmpint (n->type, ==, KILT_LAYER_CROPPING2D);
      g_assert_cmpuint (n->cfg.pad[0], ==, 2);
      g_assert_cmpuint (n->cfg.pad[1], ==, 2);
      g_assert_cmpuint (n->cfg.pad[2], ==, 1);
      g_assert_cmpuint (n->cfg.pad[3], ==, 1);
      /* The Conv2D keeps its name (and weights) and computes linearly; the swish follows. */
      g_assert_cmpint (find (m, "conv_swish")->cfg.activation, ==, KILT_ACT_LINEAR);
      n = find (m, "conv_swish/activation");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_SWISH);
      g_assert_cmpuint (n->inputs[0], ==, find (m, "conv_swish")->index);
      g_assert_cmpuint (find (m, "pad_2")->inputs[0], ==, n->index);
      g_assert_cmpint (find (m, "conv_gelu/activation")->cfg.activation, ==, KILT_ACT_GELU);
      g_assert_cmpint (find (m, "dense_hard_sigmoid/activation")->cfg.activation, ==,
                       i == 0 ? KILT_ACT_HARD_SIGMOID_K2 : KILT_ACT_HARD_SIGMOID);
    }
}

/* 1-D layers on a (steps, channels) input, from both generations, against Keras' counts and
 * shapes: Conv1D (causal: a padding node on the left of a valid convolution; same with
 * strides and groups; valid), the 1-D poolings and global poolings with keepdims. */
static void
test_sequence_files (void)
{
  const char *stems[] = { "keras2-sequence", "keras3-sequence" };

  if (!have_all_layers ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (stems); i++)
    {
      g_autofree char *file = g_strconcat (stems[i], ".json", NULL);
      g_autoptr (KiltModel) m = NULL;
      KiltNode *n;

      check_file (stems[i]);
      m = load_data_file (file);
      g_assert_cmpuint (kilt_model_node (m, 0)->out_shape.c, ==, 5);
      g_assert_cmpuint (kilt_model_node (m, 0)->out_shape.h, ==, 1);
      g_assert_cmpuint (kilt_model_node (m, 0)->out_shape.w, ==, 17);
      n = find (m, "c_causal/causal_pad");
      g_assert_cmpint (n->type, ==, KILT_LAYER_ZERO_PADDING2D);
      g_assert_cmpuint (n->cfg.pad[2], ==, 9); /* (4 - 1) * 3 */
      g_assert_cmpuint (n->cfg.pad[0] + n->cfg.pad[1] + n->cfg.pad[3], ==, 0);
      n = find (m, "c_causal");
      g_assert_cmpint (n->type, ==, KILT_LAYER_CONV2D);
      g_assert_false (n->cfg.same);
      g_assert_cmpuint (n->cfg.kh, ==, 1);
      g_assert_cmpuint (n->cfg.kw, ==, 4);
      g_assert_cmpuint (n->cfg.dil_w, ==, 3);
      g_assert_cmpuint (n->inputs[0], ==, find (m, "c_causal/causal_pad")->index);
      n = find (m, "c_same");
      g_assert_cmpuint (n->cfg.groups, ==, 3);
      g_assert_cmpuint (n->cfg.sw, ==, 2);
      g_assert_true (n->cfg.same);
      g_assert_cmpint (find (m, "c_same/activation")->cfg.activation, ==, KILT_ACT_SWISH);
      g_assert_cmpint (find (m, "p_max")->type, ==, KILT_LAYER_MAX_POOL2D);
      g_assert_cmpint (find (m, "p_avg")->type, ==, KILT_LAYER_AVG_POOL2D);
      g_assert_cmpint (find (m, "g_max")->type, ==, KILT_LAYER_GLOBAL_MAX_POOL2D);
    }
}

static void
test_activation_files (void)
{
  if (!have_all_layers ())
    return;
  for (int k3 = 0; k3 < 2; k3++)
    {
      g_autoptr (KiltModel) m = NULL;
      KiltNode *n;

      check_file (k3 ? "keras3-activations" : "keras2-activations");
      m = load_data_file (k3 ? "keras3-activations.json" : "keras2-activations.json");
      n = find (m, "dense_elu/activation");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_ELU);
      g_assert_cmpfloat (n->cfg.alpha, ==, 1.0f);
      g_assert_cmpint (find (m, "act_selu")->cfg.activation, ==, KILT_ACT_SELU);
      g_assert_cmpint (find (m, "act_softplus")->cfg.activation, ==, KILT_ACT_SOFTPLUS);
      g_assert_cmpint (find (m, "act_softsign")->cfg.activation, ==, KILT_ACT_SOFTSIGN);
      g_assert_cmpint (find (m, "act_exponential")->cfg.activation, ==, KILT_ACT_EXPONENTIAL);
      g_assert_cmpint (find (m, "act_swish")->cfg.activation, ==, KILT_ACT_SWISH);
      g_assert_cmpint (find (m, "act_gelu")->cfg.activation, ==, KILT_ACT_GELU);
      g_assert_cmpint (find (m, "act_hard_sigmoid")->cfg.activation, ==,
                       k3 ? KILT_ACT_HARD_SIGMOID : KILT_ACT_HARD_SIGMOID_K2);
      g_assert_cmpint (find (m, "act_linear")->cfg.activation, ==, KILT_ACT_LINEAR);
      n = find (m, "act_leaky_relu");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_LEAKY_RELU);
      g_assert_cmpfloat (n->cfg.alpha, ==, 0.2f); /* the function's default, not the layer's */
      g_assert_cmpint (find (m, "act_relu6")->cfg.activation, ==, KILT_ACT_RELU6);
      g_assert_cmpint (find (m, "relu_6")->cfg.activation, ==, KILT_ACT_RELU6);
      n = find (m, "relu_all");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_RELU);
      g_assert_cmpfloat (n->cfg.max_value, ==, 4.0f);
      g_assert_cmpfloat (n->cfg.threshold, ==, 0.5f);
      g_assert_cmpfloat (n->cfg.negative_slope, ==, 0.1f);
      n = find (m, "relu_leaky");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_LEAKY_RELU);
      g_assert_cmpfloat (n->cfg.alpha, ==, 0.2f);
      n = find (m, "elu_layer");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_ELU);
      g_assert_cmpfloat (n->cfg.alpha, ==, 0.5f);
      n = find (m, "leaky_default");
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_LEAKY_RELU);
      g_assert_cmpfloat (n->cfg.alpha, ==, 0.3f);
      if (k3)
        {
          g_assert_cmpint (find (m, "act_silu")->cfg.activation, ==, KILT_ACT_SWISH);
          g_assert_cmpint (find (m, "act_hard_silu")->cfg.activation, ==, KILT_ACT_HARD_SWISH);
          g_assert_cmpint (find (m, "act_hard_swish")->cfg.activation, ==, KILT_ACT_HARD_SWISH);
        }
    }
}

/* Rescaling, BatchNormalization without gamma or beta, squeeze-and-excitation through
 * keepdims or Reshape and Multiply, and dropout per channel, as applications use them. */
static void
test_block_files (void)
{
  if (!have_all_layers ())
    return;
  for (int k3 = 0; k3 < 2; k3++)
    {
      g_autoptr (KiltModel) m = NULL;
      KiltNode *n;

      check_file (k3 ? "keras3-blocks" : "keras2-blocks");
      m = load_data_file (k3 ? "keras3-blocks.json" : "keras2-blocks.json");
      n = find (m, "rescale");
      g_assert_cmpfloat_with_epsilon (n->cfg.scale, 1 / 127.5, 1e-9);
      g_assert_cmpfloat (n->cfg.offset, ==, -1.0f);
      g_assert_cmpint (find (m, "head_max")->type, ==, KILT_LAYER_GLOBAL_MAX_POOL2D);
      g_assert_cmpint (find (m, "norm")->type, ==, KILT_LAYER_NORMALIZATION);
      g_assert_cmpuint (find (m, "norm")->n_state, ==, 2 * 3 + 1);
      g_assert_true (find (m, "bn_no_scale")->cfg.bn_no_scale);
      g_assert_false (find (m, "bn_no_scale")->cfg.bn_no_center);
      g_assert_true (find (m, "bn_neither")->cfg.bn_no_center);
      g_assert_cmpint (find (m, "stem_relu6")->cfg.activation, ==, KILT_ACT_RELU6);
      g_assert_cmpint (find (m, "drop_channels")->cfg.dropout_mask, ==, KILT_DROPOUT_CHANNEL);
      g_assert_cmpint (find (m, "spatial_drop")->cfg.dropout_mask, ==, KILT_DROPOUT_CHANNEL);
      n = find (m, "se2_excite");
      g_assert_cmpint (n->type, ==, KILT_LAYER_MULTIPLY);
      g_assert_cmpuint (n->inputs[0], ==, find (m, "se2_back")->index);
      g_assert_cmpint (find (m, "se_expand/activation")->cfg.activation, ==,
                       k3 ? KILT_ACT_HARD_SIGMOID : KILT_ACT_HARD_SIGMOID_K2);
    }
}

/* DepthwiseConv2D with depth_multiplier, strides and dilation; SeparableConv2D as a
 * depthwise node and the pointwise Conv2D under the layer's name. */
static void
test_separable_files (void)
{
  if (!have_all_layers ())
    return;
  for (int k3 = 0; k3 < 2; k3++)
    {
      g_autoptr (KiltModel) m = NULL;
      KiltNode *n;

      check_file (k3 ? "keras3-separable" : "keras2-separable");
      m = load_data_file (k3 ? "keras3-separable.json" : "keras2-separable.json");
      n = find (m, "dw_stride");
      g_assert_cmpint (n->type, ==, KILT_LAYER_DEPTHWISE_CONV2D);
      g_assert_cmpuint (n->cfg.units, ==, 2);
      g_assert_cmpint (n->cfg.activation, ==, KILT_ACT_RELU);
      g_assert_cmpuint (find (m, "dw_dilated")->cfg.dil_h, ==, 2);
      g_assert_false (find (m, "dw_dilated")->cfg.use_bias);
      g_assert_cmpint (find (m, "dw_relu6/activation")->cfg.activation, ==, KILT_ACT_RELU6);
      n = find (m, "sep/depthwise");
      g_assert_cmpint (n->type, ==, KILT_LAYER_DEPTHWISE_CONV2D);
      g_assert_false (n->cfg.use_bias);
      n = find (m, "sep");
      g_assert_cmpint (n->type, ==, KILT_LAYER_CONV2D);
      g_assert_cmpuint (n->cfg.kh, ==, 1);
      g_assert_cmpuint (n->cfg.units, ==, 6);
      g_assert_cmpuint (n->inputs[0], ==, find (m, "sep/depthwise")->index);
      g_assert_cmpint (find (m, "sep/activation")->cfg.activation, ==, KILT_ACT_SWISH);
      g_assert_cmpuint (find (m, "sep_stride/depthwise")->cfg.units, ==, 3);
    }
}

/* keras.applications.MobileNetV2 (weights=None, 32x32, 10 classes) from both generations:
 * Keras' 2,270,794 parameters and every one of its layers' output shapes and counts. */
static void
test_merge_files (void)
{
  if (!have_all_layers ())
    return;
  for (int k3 = 0; k3 < 2; k3++)
    {
      g_autoptr (KiltModel) m = NULL;

      check_file (k3 ? "keras3-merges" : "keras2-merges");
      m = load_data_file (k3 ? "keras3-merges.json" : "keras2-merges.json");
      g_assert_cmpint (find (m, "sub")->type, ==, KILT_LAYER_SUBTRACT);
      g_assert_cmpuint (find (m, "sub")->inputs[0], ==, find (m, "left")->index);
      g_assert_cmpint (find (m, "avg")->type, ==, KILT_LAYER_AVERAGE);
      g_assert_cmpuint (find (m, "avg")->n_inputs, ==, 3);
      g_assert_cmpint (find (m, "max")->type, ==, KILT_LAYER_MAXIMUM);
      g_assert_cmpint (find (m, "min")->type, ==, KILT_LAYER_MINIMUM);
      g_assert_cmpuint (find (m, "up")->cfg.kw, ==, 3);
      g_assert_cmpint (find (m, "ln")->type, ==, KILT_LAYER_LAYER_NORM);
      g_assert_cmpfloat (find (m, "ln")->cfg.epsilon, ==, 1e-6f);
      g_assert_true (find (m, "ln_no_beta")->cfg.bn_no_center);
    }
}

static void
test_application_files (void)
{
  if (!have_all_layers ())
    return;
  check_file ("keras2-app-mobilenetv2");
  check_file ("keras3-app-mobilenetv2");
}

static void expect_error_named (const char *doc, const char *source, const char *want1,
                                const char *want2);

static void expect_error (const char *doc, const char *want1, const char *want2);

/* tf.keras 2's spelling of a nested model: inbound_nodes as [[layer, node, tensor, kwargs]],
 * the outer model reading the base's second node (its first is the base's own graph), and a
 * name ("c") used inside and outside. */
static void
test_nested_keras2 (void)
{
  static const char *doc
      = "{\"class_name\": \"Functional\", \"keras_version\": \"2.15.0\", \"config\": "
        "{\"name\": \"outer\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"input_2\", \"config\": {\"name\": "
        "\"input_2\", \"batch_input_shape\": [null, 4, 4, 3]}, \"inbound_nodes\": []},"
        "{\"class_name\": \"Functional\", \"name\": \"base\", \"config\": {\"name\": "
        "\"base\", \"trainable\": false, \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"input_1\", \"config\": {\"name\": "
        "\"input_1\", \"batch_input_shape\": [null, 4, 4, 3]}, \"inbound_nodes\": []},"
        "{\"class_name\": \"Conv2D\", \"name\": \"c\", \"config\": {\"name\": \"c\", "
        "\"filters\": 2, \"kernel_size\": [3, 3]}, \"inbound_nodes\": [[[\"input_1\", 0, 0, "
        "{}]]]}], \"input_layers\": [[\"input_1\", 0, 0]], \"output_layers\": [[\"c\", 0, "
        "0]]}, \"inbound_nodes\": [[[\"input_2\", 0, 0, {}]]]},"
        "{\"class_name\": \"Flatten\", \"name\": \"f\", \"config\": {\"name\": \"f\"}, "
        "\"inbound_nodes\": [[[\"base\", 1, 0, {}]]]},"
        "{\"class_name\": \"Dense\", \"name\": \"c\", \"config\": {\"name\": \"c\", "
        "\"units\": 3}, \"inbound_nodes\": [[[\"f\", 0, 0, {}]]]}],"
        "\"input_layers\": [[\"input_2\", 0, 0]], \"output_layers\": [[\"c\", 0, 0]]}}";
  g_autoptr (GError) error = NULL;
  g_autofree char *notes = NULL;
  g_autoptr (KiltModel) m
      = kilt_keras_load_data (doc, -1, "k2", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (kilt_model_n_nodes (m), ==, 4);
  g_assert_cmpint (find (m, "base/c")->type, ==, KILT_LAYER_CONV2D);
  g_assert_cmpuint (find (m, "base/c")->inputs[0], ==, 0);
  g_assert_cmpuint (find (m, "base/c")->out_shape.c * find (m, "base/c")->out_shape.h, ==, 2 * 2);
  g_assert_cmpuint (find (m, "base/c")->n_params, ==, 3 * 3 * 3 * 2 + 2);
  g_assert_true (find (m, "base/c")->frozen);
  g_assert_cmpuint (find (m, "f")->inputs[0], ==, find (m, "base/c")->index);
  g_assert_cmpint (find (m, "c")->type, ==, KILT_LAYER_DENSE);
  g_assert_false (find (m, "c")->frozen);
  g_assert_cmpuint (find (m, "c")->n_params, ==, 8 * 3 + 3);
  g_assert_nonnull (strstr (notes, "of nested model base is named base/c"));

  /* A nested model that reads two tensors is refused by name. */
  expect_error ("{\"class_name\": \"Functional\", \"config\": {\"name\": \"o\", \"layers\": ["
                "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": "
                "\"x\", \"batch_input_shape\": [null, 4]}, \"inbound_nodes\": []},"
                "{\"class_name\": \"Sequential\", \"name\": \"two\", \"config\": {\"name\": "
                "\"two\", \"layers\": [{\"class_name\": \"Dense\", \"config\": {\"name\": "
                "\"d\", \"units\": 2}}]}, \"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"x\", 0, 0, "
                "{}]]]}], \"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"two\", 0, "
                "0]]}}",
                "layer two (Sequential)", "the nested model reads 2 inputs");
}

/* ConvNeXt's LayerScale: a 1x1 depthwise kernel without bias holding gamma, which starts at
 * init_values (Keras' 1e-6), and keeps that start through Kilt's own model format. Dense on
 * an image: a 1x1 Conv2D. */
static void
test_layer_scale (void)
{
  g_autoptr (KiltModel) m = NULL;
  g_autoptr (KiltModel) again = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *doc = NULL;
  g_autofree float *params = NULL, *state = NULL;
  KiltNode *scale, *pw;

  if (!have_all_layers ())
    return;
  m = load_data_file ("weights-keras3-layer_scale.json");
  scale = find (m, "scale");
  g_assert_cmpint (scale->type, ==, KILT_LAYER_DEPTHWISE_CONV2D);
  g_assert_cmpuint (scale->cfg.kh * scale->cfg.kw * scale->cfg.units, ==, 1);
  g_assert_false (scale->cfg.use_bias);
  g_assert_cmpuint (scale->n_params, ==, 6);
  g_assert_cmpint (scale->cfg.init, ==, KILT_INIT_CONSTANT);
  pw = find (m, "pw_1");
  g_assert_cmpint (pw->type, ==, KILT_LAYER_CONV2D);
  g_assert_cmpuint (pw->out_shape.c, ==, 8);
  g_assert_cmpuint (pw->out_shape.h * pw->out_shape.w, ==, 5 * 4);
  g_assert_cmpuint (pw->n_params, ==, 6 * 8 + 8);

  doc = kilt_model_to_json (m);
  g_assert_nonnull (strstr (doc, "\"kernel_initializer\": {\"constant\": 1e-06}"));
  again = kilt_model_load_json_data (doc, -1, "round trip", &error);
  g_assert_no_error (error);
  scale = find (again, "scale");
  g_assert_cmpint (scale->cfg.init, ==, KILT_INIT_CONSTANT);
  g_assert_cmpfloat (scale->cfg.init_value, ==, 1e-6f);
  params = g_new0 (float, again->n_params + 1);
  state = g_new0 (float, again->n_state + 1);
  kilt_model_init_params (again, 7, params, state);
  for (guint i = 0; i < 6; i++)
    g_assert_cmpfloat (params[scale->param_offset + i], ==, 1e-6f);
  /* The other kernels still draw at random. */
  g_assert_cmpfloat (params[find (again, "pw_1")->param_offset], !=,
                     params[find (again, "pw_1")->param_offset + 1]);

  expect_error ("{\"class_name\": \"Sequential\", \"config\": {\"layers\": ["
                "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"in\", "
                "\"batch_input_shape\": [null, 4, 4, 3]}},"
                "{\"class_name\": \"LayerScale\", \"config\": {\"name\": \"ls\", "
                "\"init_values\": 0.1, \"projection_dim\": 5}, "
                "\"build_config\": {\"input_shape\": [null, 4, 4, 3]}}]}}",
                "layer ls (LayerScale)", "projection_dim 5 differs from its input's 3 channels");
}

/* Models inside models, flattened into one graph: MobileNetV2 as the base of a Sequential
 * (Keras' 2,270,794 parameters and every inner layer's shape), and blocks nested two deep
 * with clashing names, a frozen nested model and residual wiring across the nesting. */
static void
test_nested_files (void)
{
  g_autofree char *path = data_file ("keras3-nested-blocks.json");
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autofree char *notes = NULL;

  if (!have_all_layers ())
    return;
  check_file ("keras3-nested-mobilenetv2");
  check_file ("keras3-nested-blocks");
  /* Nested Sequential stem and downsampling blocks, Dense on images, LayerScale. */
  check_file ("keras3-app-convnexttiny");

  m = kilt_keras_load_file (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  /* The nested models' inputs are what the outer model feeds them; their outputs feed on. */
  g_assert_cmpuint (find (m, "stem/conv")->inputs[0], ==, 0);
  g_assert_cmpuint (find (m, "stem_ln")->inputs[0], ==, find (m, "stem/conv")->index);
  g_assert_cmpuint (find (m, "inner/conv")->inputs[0], ==, find (m, "stem_ln")->index);
  g_assert_cmpuint (find (m, "block_add")->inputs[0], ==, find (m, "inner_bn")->index);
  g_assert_cmpuint (find (m, "block_add")->inputs[1], ==, find (m, "stem_ln")->index);
  g_assert_cmpuint (find (m, "outer_add")->inputs[0], ==, find (m, "stem_ln")->index);
  g_assert_cmpuint (find (m, "outer_add")->inputs[1], ==, find (m, "block_relu")->index);
  g_assert_cmpuint (find (m, "frozen/fc")->inputs[0], ==, find (m, "outer_add")->index);
  g_assert_cmpuint (find (m, "flat")->inputs[0], ==, find (m, "frozen/fc")->index);
  /* The outer "fc" keeps its name; the nested model's frozen state reaches its layers. */
  g_assert_cmpint (find (m, "fc")->type, ==, KILT_LAYER_DENSE);
  g_assert_true (find (m, "frozen/fc")->frozen);
  g_assert_false (find (m, "stem/conv")->frozen);
  g_assert_nonnull (notes);
  g_assert_nonnull (strstr (notes, "of nested model inner is named inner/conv"));
  g_assert_nonnull (strstr (notes, "of nested model frozen is named frozen/fc"));
  g_assert_null (strstr (notes, "stem_ln (LayerNormalization) of nested"));
}

/* x + 3 and x * (1 / 6) with constants, as MobileNetV3's hard_sigmoid writes them: Keras 3 as
 * an Add / Multiply with a float among its args, tf.keras as TFOpLambda layers whose one call
 * is written unwrapped with the constant in its kwargs. Both become Rescaling nodes. */
static void
test_scalar_ops (void)
{
  const char *k3
      = "{\"module\": \"keras\", \"class_name\": \"Functional\", \"config\": {\"name\": \"k3\", "
        "\"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\", "
        "\"batch_shape\": [null, 4, 4, 2]}, \"inbound_nodes\": []},"
        "{\"module\": \"keras.src.ops.numpy\", \"class_name\": \"Add\", \"name\": \"add\", "
        "\"config\": {\"name\": \"add\"}, \"inbound_nodes\": [{\"args\": [{\"class_name\": "
        "\"__keras_tensor__\", \"config\": {\"keras_history\": [\"x\", 0, 0]}}, 3.0], "
        "\"kwargs\": {}}]},"
        "{\"module\": \"keras.src.ops.numpy\", \"class_name\": \"Multiply\", \"name\": \"mul\", "
        "\"config\": {\"name\": \"mul\"}, \"inbound_nodes\": [{\"args\": [{\"class_name\": "
        "\"__keras_tensor__\", \"config\": {\"keras_history\": [\"add\", 0, 0]}}, "
        "0.16666666666666666], \"kwargs\": {}}]}],"
        "\"input_layers\": [\"x\", 0, 0], \"output_layers\": [\"mul\", 0, 0]}}";
  const char *k2
      = "{\"class_name\": \"Functional\", \"config\": {\"name\": \"k2\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\", "
        "\"batch_input_shape\": [null, 4, 4, 2]}, \"inbound_nodes\": []},"
        "{\"class_name\": \"TFOpLambda\", \"name\": \"tf.__operators__.add\", \"config\": "
        "{\"name\": \"tf.__operators__.add\", \"function\": \"__operators__.add\"}, "
        "\"inbound_nodes\": [[\"x\", 0, 0, {\"y\": 3.0, \"name\": null}]]},"
        "{\"class_name\": \"TFOpLambda\", \"name\": \"tf.math.multiply\", \"config\": "
        "{\"name\": \"tf.math.multiply\", \"function\": \"math.multiply\"}, "
        "\"inbound_nodes\": [[\"tf.__operators__.add\", 0, 0, {\"y\": 0.5, \"name\": null}]]}],"
        "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"tf.math.multiply\", 0, 0]]}, "
        "\"keras_version\": \"2.15.0\"}";
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m3 = kilt_keras_load_data (k3, -1, "k3.json", KILT_LOSS_MSE, NULL, &error);
  g_autoptr (KiltModel) m2 = NULL;

  g_assert_no_error (error);
  g_assert_cmpint (find (m3, "add")->type, ==, KILT_LAYER_RESCALING);
  g_assert_cmpfloat (find (m3, "add")->cfg.offset, ==, 3.0f);
  g_assert_cmpfloat (find (m3, "add")->cfg.scale, ==, 1.0f);
  g_assert_cmpfloat (find (m3, "mul")->cfg.scale, ==, (float)(1.0 / 6));
  g_assert_cmpfloat (find (m3, "mul")->cfg.offset, ==, 0.0f);
  m2 = kilt_keras_load_data (k2, -1, "k2.json", KILT_LOSS_MSE, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (find (m2, "tf.__operators__.add")->cfg.offset, ==, 3.0f);
  g_assert_cmpfloat (find (m2, "tf.math.multiply")->cfg.scale, ==, 0.5f);
  g_assert_cmpuint (kilt_model_output (m2)->out_shape.c, ==, 2);

  /* InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale. */
  {
    const char *cs
        = "{\"class_name\": \"Functional\", \"config\": {\"name\": \"cs\", \"layers\": ["
          "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\", "
          "\"batch_input_shape\": [null, 4, 4, 2]}, \"inbound_nodes\": []},"
          "{\"class_name\": \"Activation\", \"name\": \"a\", \"config\": {\"name\": \"a\", "
          "\"activation\": \"tanh\"}, \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
          "{\"class_name\": \"CustomScaleLayer\", \"name\": \"up\", \"config\": {\"name\": "
          "\"up\", \"scale\": 0.17}, \"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"a\", 0, 0, "
          "{}]]]}],"
          "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"up\", 0, 0]]}}";
    g_autoptr (KiltModel) m = kilt_keras_load_data (cs, -1, "cs.json", KILT_LOSS_MSE, NULL, &error);
    KiltNode *up, *scaled;
    g_assert_no_error (error);
    up = find (m, "up");
    scaled = find (m, "up/scale");
    g_assert_cmpint (up->type, ==, KILT_LAYER_ADD);
    g_assert_cmpint (scaled->type, ==, KILT_LAYER_RESCALING);
    g_assert_cmpfloat (scaled->cfg.scale, ==, 0.17f);
    g_assert_cmpuint (scaled->inputs[0], ==, find (m, "a")->index);
    g_assert_cmpuint (up->inputs[0], ==, 0);
    g_assert_cmpuint (up->inputs[1], ==, scaled->index);
  }

  /* tf.keras' x * y of two tensors (ConvNeXt writes its residual x + y so): a Multiply of both;
   * y naming another output of its layer is refused by name. */
  {
    g_auto (GStrv) parts = g_strsplit (k2, "{\"y\": 0.5, ", -1);
    g_autofree char *two = g_strjoinv ("{\"y\": [\"x\", 0, 0], ", parts);
    g_auto (GStrv) parts_bad = g_strsplit (k2, "{\"y\": 0.5, ", -1);
    g_autofree char *bad = g_strjoinv ("{\"y\": [\"x\", 0, 1], ", parts_bad);
    g_autoptr (KiltModel) mt = NULL;
    KiltNode *n;

    g_assert_cmpuint (g_strv_length (parts), ==, 2);
    mt = kilt_keras_load_data (two, -1, "k2.json", KILT_LOSS_MSE, NULL, &error);
    g_assert_no_error (error);
    n = find (mt, "tf.math.multiply");
    g_assert_cmpint (n->type, ==, KILT_LAYER_MULTIPLY);
    g_assert_cmpuint (n->n_inputs, ==, 2);
    g_assert_cmpuint (n->inputs[0], ==, find (mt, "tf.__operators__.add")->index);
    g_assert_cmpuint (n->inputs[1], ==, 0);
    expect_error_named (bad, "k2.json", "layer tf.math.multiply (TFOpLambda)",
                        "reads output 1 of layer x");
  }

  /* Another op, and an Add of one tensor with no constant, are refused by name. */
  {
    g_autofree char *other = g_strdup (k2);
    char *at = strstr (other, "\"function\": \"math.multiply\"");
    memcpy (at, "\"function\": \"math.subtrac\" ", strlen ("\"function\": \"math.multiply\""));
    expect_error_named (other, "k2.json", "layer tf.math.multiply (TFOpLambda)",
                        "TensorFlow op math.subtrac is not supported");
  }
  {
    g_autofree char *lone = g_strdup (k3);
    char *at = strstr (lone, "}}, 3.0]");
    memcpy (at, "}}     ]", strlen ("}}, 3.0]"));
    expect_error_named (lone, "k3.json", "layer add (Add)",
                        "expected one tensor and one constant operand");
  }
}

static void
expect_file_error (const char *file, const char *layer, const char *option)
{
  g_autofree char *path = data_file (file);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = kilt_keras_load_file (path, KILT_LOSS_MSE, NULL, &error);

  g_assert_null (m);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, file));
  g_assert_nonnull (strstr (error->message, layer));
  g_assert_nonnull (strstr (error->message, option));
}

static void
test_unsupported_files (void)
{
  if (!have_all_layers ())
    return;
  expect_file_error ("keras2-unsupported_layer.json", "layer noise (GaussianNoise)",
                     "GaussianNoise is not supported");
  expect_file_error ("keras3-unsupported_layer.json", "layer noise (GaussianNoise)",
                     "GaussianNoise is not supported");
  expect_file_error ("keras2-unsupported_option.json", "layer renorm (BatchNormalization)",
                     "renorm = true is not supported");
  expect_file_error ("keras3-unsupported_option.json", "layer renorm (BatchNormalization)",
                     "renorm = true is not supported");
}

/* Small hand-written documents in the shapes Keras writes, for the paths the real files do
 * not take. They use only Dense, Activation and Flatten where they must build. */
#define K2_SEQ(layers)                                                                             \
  "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", "                                \
  "\"layers\": [" layers "]}}"
#define K2_INPUT(shape)                                                                            \
  "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"in\", "                               \
  "\"batch_input_shape\": " shape "}}"
#define K2_DENSE(name, extra)                                                                      \
  "{\"class_name\": \"Dense\", \"config\": {\"name\": \"" name "\", \"units\": 3" extra "}}"

static void
expect_error (const char *doc, const char *want1, const char *want2)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m
      = kilt_keras_load_data (doc, -1, "k.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);

  g_assert_null (m);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_test_message ("%s", error->message);
  g_assert_true (g_str_has_prefix (error->message, "k.json: "));
  g_assert_nonnull (strstr (error->message, want1));
  if (want2)
    g_assert_nonnull (strstr (error->message, want2));
}

static void
expect_error_named (const char *doc, const char *source, const char *want1, const char *want2)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = kilt_keras_load_data (doc, -1, source, KILT_LOSS_MSE, NULL, &error);

  g_assert_null (m);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, want1));
  g_assert_nonnull (strstr (error->message, want2));
}

/* Embedding's mask_zero: the mask goes through Dropout and an LSTM giving every step, and the
 * LSTM, the GRU after it and GlobalAveragePooling1D read it from the ids (the model's input,
 * their last input); a GRU giving its last state carries none; Flatten drops it, as Keras
 * does, with a note. */
static void
test_mask_import (void)
{
  const char *doc = K2_SEQ (
      K2_INPUT ("[null, 6]") ",{\"class_name\": \"Embedding\", \"config\": {\"name\": \"emb\", "
                             "\"input_dim\": 9, \"output_dim\": 4, \"mask_zero\": true}},"
                             "{\"class_name\": \"Dropout\", \"config\": {\"name\": \"d\", "
                             "\"rate\": 0.25}},"
                             "{\"class_name\": \"LSTM\", \"config\": {\"name\": \"l\", "
                             "\"units\": 3, \"return_sequences\": true}},"
                             "{\"class_name\": \"GRU\", \"config\": {\"name\": \"g\", "
                             "\"units\": 2, \"return_sequences\": true}},"
                             "{\"class_name\": \"GlobalAveragePooling1D\", \"config\": "
                             "{\"name\": \"avg\"}},"
                             "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", "
                             "\"units\": 2}}");
  const char *last = K2_SEQ (
      K2_INPUT ("[null, 6]") ",{\"class_name\": \"Embedding\", \"config\": {\"name\": \"emb\", "
                             "\"input_dim\": 9, \"output_dim\": 4, \"mask_zero\": true}},"
                             "{\"class_name\": \"GRU\", \"config\": {\"name\": \"g\", "
                             "\"units\": 2}},"
                             "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", "
                             "\"units\": 2}}");
  const char *flat = K2_SEQ (
      K2_INPUT ("[null, 6]") ",{\"class_name\": \"Embedding\", \"config\": {\"name\": \"emb\", "
                             "\"input_dim\": 9, \"output_dim\": 4, \"mask_zero\": true}},"
                             "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"f\"}},"
                             "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", "
                             "\"units\": 2}}");
  const char *names[] = { "l", "g", "avg" };
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autofree char *notes = NULL;
  KiltNode *n;

  m = kilt_keras_load_data (doc, -1, "mask.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      n = kilt_model_find (m, names[i]);
      g_assert_cmpuint (n->cfg.step_mask, ==, KILT_STEP_MASK_IDS);
      g_assert_cmpuint (n->n_inputs, ==, 2);
      g_assert_cmpuint (n->inputs[1], ==, 0);
    }
  n = kilt_model_find (m, "out");
  g_assert_cmpuint (n->n_inputs, ==, 1);
  g_assert_cmpuint (n->cfg.step_mask, ==, KILT_STEP_MASK_NONE);
  g_assert_null (notes ? strstr (notes, "drops the mask") : NULL);
  g_clear_pointer (&m, kilt_model_free);
  m = kilt_keras_load_data (last, -1, "mask.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kilt_model_find (m, "g")->cfg.step_mask, ==, KILT_STEP_MASK_IDS);
  g_assert_cmpuint (kilt_model_find (m, "out")->n_inputs, ==, 1);
  g_clear_pointer (&m, kilt_model_free);
  g_clear_pointer (&notes, g_free);
  m = kilt_keras_load_data (flat, -1, "mask.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  g_assert_nonnull (strstr (notes, "layer f (Flatten): drops the mask of its input, as Keras "
                                   "does"));
  g_assert_cmpuint (kilt_model_find (m, "out")->n_inputs, ==, 1);
  /* Masking: the GRU reads the steps whose features all equal mask_value from its input. */
  g_clear_pointer (&m, kilt_model_free);
  m = kilt_keras_load_data (
      K2_SEQ (K2_INPUT ("[null, 5, 3]") ",{\"class_name\": \"Masking\", \"config\": {\"name\": "
                                        "\"mk\", \"mask_value\": 0.5}},"
                                        "{\"class_name\": \"GRU\", \"config\": {\"name\": \"g\", "
                                        "\"units\": 2}}"),
      -1, "mask.json", KILT_LOSS_MSE, NULL, &error);
  g_assert_no_error (error);
  n = kilt_model_find (m, "mk");
  g_assert_cmpuint (n->type, ==, KILT_LAYER_MASKING);
  g_assert_cmpfloat (n->cfg.mask_value, ==, 0.5f);
  n = kilt_model_find (m, "g");
  g_assert_cmpuint (n->cfg.step_mask, ==, KILT_STEP_MASK_VALUES);
  g_assert_cmpfloat (n->cfg.mask_value, ==, 0.5f);
  g_assert_cmpuint (n->n_inputs, ==, 2);
  g_assert_cmpuint (n->inputs[0], ==, 1);
  g_assert_cmpuint (n->inputs[1], ==, 0);

  /* A merge of an Embedding's output (masked by its ids) and a Masking of it (masked by its
   * values): Keras keeps a step where both masks do, which one step mask cannot say, so an
   * LSTM after it is refused; a Flatten after it drops the mask, as in Keras. */
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *mixed = g_strdup_printf (
          "{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": ["
          "{\"class_name\": \"InputLayer\", \"name\": \"ids\", \"config\": {\"name\": "
          "\"ids\", \"batch_input_shape\": [null, 6]}, \"inbound_nodes\": []},"
          "{\"class_name\": \"Embedding\", \"name\": \"emb\", \"config\": {\"name\": \"emb\", "
          "\"input_dim\": 9, \"output_dim\": 4, \"mask_zero\": true}, \"inbound_nodes\": "
          "[[[\"ids\", 0, 0, {}]]]},"
          "{\"class_name\": \"Masking\", \"name\": \"mk\", \"config\": {\"name\": \"mk\", "
          "\"mask_value\": 1.0}, \"inbound_nodes\": [[[\"emb\", 0, 0, {}]]]},"
          "{\"class_name\": \"Add\", \"name\": \"add\", \"config\": {\"name\": \"add\"}, "
          "\"inbound_nodes\": [[[\"emb\", 0, 0, {}], [\"mk\", 0, 0, {}]]]},"
          "{\"class_name\": \"%s\", \"name\": \"after\", \"config\": {\"name\": \"after\", "
          "\"units\": 2}, \"inbound_nodes\": [[[\"add\", 0, 0, {}]]]}],"
          "\"input_layers\": [[\"ids\", 0, 0]], \"output_layers\": [[\"after\", 0, 0]]}}",
          i ? "Flatten" : "LSTM");
      g_clear_pointer (&m, kilt_model_free);
      m = kilt_keras_load_data (mixed, -1, "mixed.json", KILT_LOSS_MSE, NULL, &error);
      if (i == 0)
        {
          g_assert_null (m);
          g_assert_nonnull (strstr (error->message,
                                    "layer after (LSTM): reads a mask that combines the masks of "
                                    "different Embedding or Masking layers"));
          g_clear_error (&error);
        }
      else
        {
          g_assert_no_error (error);
          g_assert_cmpuint (kilt_model_find (m, "after")->type, ==, KILT_LAYER_FLATTEN);
        }
    }
}

/* Embedding's options: a symmetric RandomUniform keeps its limit, another initialiser is
 * noted and replaced; mask_zero false and Keras 2's input_length are accepted; the output is
 * the sequence (output_dim, 1, steps). */
static void
test_embedding (void)
{
  const char *doc = K2_SEQ (K2_INPUT (
      "[null, 10]") ",{\"class_name\": \"Embedding\", \"config\": {\"name\": \"emb\", "
                    "\"input_dim\": 100, \"output_dim\": 4, \"mask_zero\": false, "
                    "\"input_length\": 10, \"embeddings_initializer\": {\"class_name\": "
                    "\"RandomUniform\", \"config\": {\"minval\": -0.1, \"maxval\": 0.1}}}},"
                    "{\"class_name\": \"Embedding\", \"config\": {\"name\": \"bad\", "
                    "\"input_dim\": 5, \"output_dim\": 3}}");
  const char *other = K2_SEQ (
      K2_INPUT ("[null, 6]") ",{\"class_name\": \"Embedding\", \"config\": {\"name\": \"emb\", "
                             "\"input_dim\": 7, \"output_dim\": 2, \"embeddings_initializer\": "
                             "{\"class_name\": \"GlorotUniform\", \"config\": {}}}}");
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autofree char *notes = NULL;
  KiltNode *n;

  /* An Embedding reads ids, not the sequence another gives. */
  m = kilt_keras_load_data (doc, -1, "emb.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
  g_assert_null (m);
  g_assert_nonnull (strstr (error->message, "layer bad (Embedding): expects a vector of ids"));
  g_clear_error (&error);
  m = kilt_keras_load_data (other, -1, "emb.json", KILT_LOSS_MSE, &notes, &error);
  g_assert_no_error (error);
  g_assert_nonnull (strstr (notes, "embeddings_initializer GlorotUniform is replaced"));
  n = kilt_model_find (m, "emb");
  g_assert_cmpuint (n->out_shape.c, ==, 2);
  g_assert_cmpuint (n->out_shape.w, ==, 6);
  g_assert_cmpfloat (n->cfg.init_value, ==, 0.05f);
  g_clear_pointer (&m, kilt_model_free);
  g_clear_pointer (&notes, g_free);
  doc = K2_SEQ (K2_INPUT ("[null, 10]") ",{\"class_name\": \"Embedding\", \"config\": {\"name\": "
                                        "\"emb\", \"input_dim\": 100, \"output_dim\": 4, "
                                        "\"mask_zero\": false, \"input_length\": 10, "
                                        "\"embeddings_initializer\": {\"class_name\": "
                                        "\"RandomUniform\", \"config\": {\"minval\": -0.1, "
                                        "\"maxval\": 0.1}}}}");
  m = kilt_keras_load_data (doc, -1, "emb.json", KILT_LOSS_MSE, &notes, &error);
  g_assert_no_error (error);
  n = kilt_model_find (m, "emb");
  g_assert_cmpuint (n->cfg.input_dim, ==, 100);
  g_assert_cmpuint (n->cfg.units, ==, 4);
  g_assert_cmpuint (n->n_params, ==, 400);
  g_assert_cmpuint (n->out_shape.c, ==, 4);
  g_assert_cmpuint (n->out_shape.h, ==, 1);
  g_assert_cmpuint (n->out_shape.w, ==, 10);
  g_assert_cmpfloat (n->cfg.init_value, ==, 0.1f);
}

/* LSTM and GRU: their options as Keras wrote them (Keras 2's hard_sigmoid is not Keras 3's),
 * and what Kilt does not compute refused naming the layer and the option. */
#define K2_RNN(cls, extra)                                                                         \
  K2_SEQ (K2_INPUT ("[null, 7, 3]") ", {\"class_name\": \"" cls "\", \"config\": {\"name\": "      \
                                    "\"r\", \"units\": 4" extra "}}")

static void
test_rnn (void)
{
  const char *files[] = { "weights-keras2-rnn_stack.json", "weights-keras3-rnn_stack.json" };

  if (!have_all_layers ())
    return;
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *path = data_file (files[i]);
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) m = kilt_keras_load_file (path, KILT_LOSS_MSE, NULL, &error);
      KiltNode *n;

      g_assert_no_error (error);
      g_assert_true (kilt_model_build (m, &error));
      n = kilt_model_find (m, "lstm_seq");
      g_assert_cmpuint (n->type, ==, KILT_LAYER_LSTM);
      g_assert_true (n->cfg.return_sequences);
      g_assert_cmpuint (n->out_shape.c, ==, 5);
      g_assert_cmpuint (n->out_shape.w, ==, 7); /* 9 steps through a valid Conv1D of 3 */
      n = kilt_model_find (m, "gru_seq");
      g_assert_cmpuint (n->type, ==, KILT_LAYER_GRU);
      g_assert_true (n->cfg.go_backwards);
      g_assert_true (n->cfg.reset_after);
      g_assert_cmpuint (n->cfg.recurrent_activation, ==,
                        i == 0 ? KILT_ACT_HARD_SIGMOID_K2 : KILT_ACT_HARD_SIGMOID);
      n = kilt_model_find (m, "lstm_last");
      g_assert_false (n->cfg.return_sequences);
      g_assert_false (n->cfg.use_bias);
      g_assert_cmpuint (n->out_shape.c, ==, 4);
      g_assert_cmpuint (n->out_shape.w, ==, 1);
    }
  /* Bidirectional: two halves and their merge, named as both Keras name their weights. */
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *path = data_file (i ? "weights-keras3-bidirectional.json"
                                           : "weights-keras2-bidirectional.json");
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) m = kilt_keras_load_file (path, KILT_LOSS_MSE, NULL, &error);
      KiltNode *f, *b, *cat;

      g_assert_no_error (error);
      g_assert_true (kilt_model_build (m, &error));
      f = kilt_model_find (m, "bi_lstm/forward_lstm");
      b = kilt_model_find (m, "bi_lstm/backward_lstm");
      cat = kilt_model_find (m, "bi_lstm");
      g_assert_nonnull (f);
      g_assert_nonnull (b);
      g_assert_false (f->cfg.go_backwards);
      g_assert_true (b->cfg.go_backwards);
      g_assert_true (b->cfg.keep_time_order);
      g_assert_cmpuint (cat->type, ==, KILT_LAYER_CONCATENATE);
      g_assert_cmpuint (cat->out_shape.c, ==, 8);
      g_assert_cmpuint (cat->out_shape.w, ==, 6);
      g_assert_cmpuint (kilt_model_find (m, "bi_gru")->type, ==, KILT_LAYER_ADD);
      g_assert_cmpuint (kilt_model_find (m, "bi_gru/backward_gru")->type, ==, KILT_LAYER_GRU);
    }
  expect_error (K2_SEQ (K2_INPUT ("[null, 7, 3]") ", {\"class_name\": \"Bidirectional\", "
                                                  "\"config\": {\"name\": \"bi\", \"merge_mode\": "
                                                  "null, \"layer\": {\"class_name\": \"LSTM\", "
                                                  "\"config\": {\"name\": \"l\", \"units\": 2}}}}"),
                "layer bi (Bidirectional)", "merge_mode None");
  expect_error (K2_SEQ (K2_INPUT ("[null, 7, 3]") ", {\"class_name\": \"Bidirectional\", "
                                                  "\"config\": {\"name\": \"bi\", \"layer\": "
                                                  "{\"class_name\": \"SimpleRNN\", \"config\": "
                                                  "{\"name\": \"l\", \"units\": 2}}}}"),
                "layer bi (Bidirectional)", "wraps SimpleRNN");
  /* A wrapped layer without its config (found by fuzz-model: it failed without an error). */
  expect_error (K2_SEQ (K2_INPUT ("[null, 7, 3]") ", {\"class_name\": \"Bidirectional\", "
                                                  "\"config\": {\"name\": \"bi\", \"layer\": "
                                                  "{\"class_name\": \"LSTM\", \"con/fig\": "
                                                  "{\"name\": \"l\", \"units\": 2}}}}"),
                "layer bi (Bidirectional)", "its layer (LSTM) has no config");
  expect_error (K2_RNN ("LSTM", ", \"return_state\": true"), "layer r (LSTM)",
                "return_state true is not supported");
  expect_error (K2_RNN ("GRU", ", \"stateful\": true"), "layer r (GRU)",
                "stateful true is not supported");
  expect_error (K2_RNN ("LSTM", ", \"dropout\": 0.25"), "layer r (LSTM)",
                "dropout 0.25 is not supported inside LSTM");
  expect_error (K2_RNN ("GRU", ", \"recurrent_dropout\": 0.1"), "layer r (GRU)",
                "recurrent_dropout 0.1 is not supported");
  expect_error (K2_RNN ("LSTM", ", \"activation\": \"relu\""), "layer r (LSTM)",
                "activation relu is not supported inside LSTM; only tanh is");
  expect_error (K2_RNN ("GRU", ", \"recurrent_activation\": \"tanh\""), "layer r (GRU)",
                "recurrent_activation tanh is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, 5, 5, 3]") ", {\"class_name\": \"LSTM\", \"config\": "
                                                     "{\"name\": \"r\", \"units\": 4}}"),
                "layer r (LSTM)", "expects a sequence input");
}

static void
test_errors (void)
{
  expect_error ("not json", "not valid JSON", NULL);
  /* Whitespace alone parses to no root at all (fuzz-model found json-glib warned on it). */
  expect_error (" \n ", "not a Keras model", NULL);
  expect_error ("{\"format\": \"kilt-model\"}", "not a Keras model", NULL);
  expect_error ("{\"class_name\": \"Bidirectional\", \"config\": {}}",
                "model class Bidirectional is not supported", NULL);
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") "," K2_DENSE ("d", ", \"activation\": \"mish\"")),
                "layer d (Dense)", "activation \"mish\" is not supported");
  /* A (steps, channels) input is a sequence now; Dense on it is Keras' per-step Dense. */
  expect_error (K2_SEQ (K2_INPUT ("[null, 28, 28]") "," K2_DENSE ("d", "")), "layer d (Dense)",
                "Keras applies Dense at every step");
  expect_error (K2_SEQ (K2_INPUT ("[null, 2, 3, 4, 5]") "," K2_DENSE ("d", "")),
                "layer in (InputLayer)", "4 dimensions per sample is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Conv1D\", \"config\": "
                                                     "{\"name\": \"c1\", \"filters\": 2, "
                                                     "\"kernel_size\": [3]}}"),
                "layer c1 (Conv1D)", "expects a sequence input (steps, channels)");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 3]") ",{\"class_name\": \"MaxPooling2D\", "
                                                  "\"config\": {\"name\": \"p\"}}"),
                "layer p (MaxPooling2D)", "expects an image input");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 3]") ",{\"class_name\": \"Conv1D\", \"config\": "
                                                  "{\"name\": \"c1\", \"filters\": 2, "
                                                  "\"kernel_size\": [3, 3]}}"),
                "layer c1 (Conv1D)", "kernel_size must hold one value (steps)");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Permute\", \"config\": "
                                                     "{\"name\": \"pm\", \"dims\": [1, 1, 3]}}"),
                "layer pm (Permute)", "dims [1,1,3] must hold 1 to 3 once each");
  /* A mask that reaches a layer which would use it in a way Kilt's does not is refused by
   * name; ids come as a vector. */
  expect_error (K2_SEQ (K2_INPUT ("[null, 10]") ",{\"class_name\": \"Embedding\", \"config\": "
                                                "{\"name\": \"emb\", \"input_dim\": 100, "
                                                "\"output_dim\": 4, \"mask_zero\": true}},"
                                                "{\"class_name\": \"BatchNormalization\", "
                                                "\"config\": {\"name\": \"bn\"}}"),
                "layer bn (BatchNormalization)",
                "reads a mask (from an Embedding with mask_zero or a Masking layer before it): "
                "Keras leaves the masked steps out of its batch statistics");
  expect_error (K2_SEQ (K2_INPUT ("[null, 10]") ",{\"class_name\": \"Embedding\", \"config\": "
                                                "{\"name\": \"emb\", \"input_dim\": 100, "
                                                "\"output_dim\": 4, \"mask_zero\": true}},"
                                                "{\"class_name\": \"Dropout\", \"config\": "
                                                "{\"name\": \"d\", \"rate\": 0.5}},"
                                                "{\"class_name\": \"Softmax\", "
                                                "\"config\": {\"name\": \"sm\"}}"),
                "layer sm (Softmax)", "reads a mask");
  expect_error (K2_SEQ (K2_INPUT ("[null, 10, 2]") ",{\"class_name\": \"Embedding\", "
                                                   "\"config\": {\"name\": \"emb\", "
                                                   "\"input_dim\": 100, \"output_dim\": 4}}"),
                "layer emb (Embedding)", "expects a vector of ids (steps)");
  expect_error (K2_SEQ (K2_INPUT ("[null, 10]") ",{\"class_name\": \"Embedding\", \"config\": "
                                                "{\"name\": \"emb\", \"output_dim\": 4}}"),
                "layer emb (Embedding)", "expected input_dim and output_dim");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"UpSampling2D\", "
                                                     "\"config\": {\"name\": \"up\", "
                                                     "\"interpolation\": \"bicubic\"}}"),
                "layer up (UpSampling2D)", "interpolation \"bicubic\" is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, null]") "," K2_DENSE ("d", "")), "layer in (InputLayer)",
                "is None");
  expect_error (K2_SEQ (K2_DENSE ("d", "")), "layer d (Dense)", "declares no input shape");
  expect_error (K2_SEQ (K2_INPUT ("[null, 4, 2]") ",{\"class_name\": \"SimpleRNN\", \"config\": "
                                                  "{\"name\": \"rnn\", \"units\": 4}}"),
                "layer rnn (SimpleRNN)", "SimpleRNN is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") ",{\"class_name\": \"ReLU\", \"config\": "
                                               "{\"name\": \"r6\", \"max_value\": -1}}"),
                "layer r6 (ReLU)", "max_value = -1 is out of range");
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") ",{\"class_name\": \"ZeroPadding2D\", "
                                               "\"config\": {\"name\": \"zp\"}}"),
                "layer zp (ZeroPadding2D)", "expects an image input");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"ZeroPadding2D\", "
                                                     "\"config\": {\"name\": \"zp\", "
                                                     "\"padding\": [[1, 2, 3], [0, 0]]}}"),
                "layer zp (ZeroPadding2D)", "padding must be n, (height, width) or ((top");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Cropping2D\", "
                                                     "\"config\": {\"name\": \"cr\", "
                                                     "\"cropping\": [[4, 4], [0, 0]]}}"),
                "layer cr (Cropping2D)", "leaves nothing of a 8x8 input");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Dropout\", \"config\": "
                                                     "{\"name\": \"dr\", \"rate\": 0.5, "
                                                     "\"noise_shape\": [null, 8, 8, 1]}}"),
                "layer dr (Dropout)", "noise_shape [null,8,8,1] is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") ",{\"class_name\": \"Sequential\", \"config\": "
                                               "{\"name\": \"inner\", \"layers\": []}}"),
                "layer inner (Sequential)", "the nested model has no layers list");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Flatten\", \"config\": "
                                                     "{\"name\": \"f1\", \"data_format\": "
                                                     "\"channels_first\"}}, "
                                                     "{\"class_name\": \"Flatten\", \"config\": "
                                                     "{\"name\": \"f2\", \"data_format\": "
                                                     "\"channels_last\"}}"),
                "layer f2 (Flatten)", "data_format channels_last differs");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Conv2D\", \"config\": "
                                                     "{\"name\": \"c\", \"filters\": 2, "
                                                     "\"kernel_size\": [3, 3], \"groups\": 2}}"),
                "layer c (Conv2D)", "groups = 2 must divide both the input's 3 channels");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Conv2D\", \"config\": "
                                                     "{\"name\": \"c\", \"filters\": 2, "
                                                     "\"kernel_size\": 3, \"padding\": "
                                                     "\"causal\"}}"),
                "layer c (Conv2D)", "padding \"causal\" is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"BatchNormalization\", "
                                                     "\"config\": {\"name\": \"bn\", \"axis\": "
                                                     "[1]}}"),
                "layer bn (BatchNormalization)", "axis 1 is not supported");

  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Normalization\", "
                                                     "\"config\": {\"name\": \"n\", \"mean\": "
                                                     "[1, 2, 3]}}"),
                "layer n (Normalization)", "mean and variance must both be given");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Normalization\", "
                                                     "\"config\": {\"name\": \"n\", \"mean\": "
                                                     "[1, 2], \"variance\": [1, 1, 1]}}"),
                "layer n (Normalization)", "mean and variance must both be given");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Reshape\", "
                                                     "\"config\": {\"name\": \"r\", "
                                                     "\"target_shape\": [16, 12]}}"),
                "layer r (Reshape)", "changes the order of values in memory");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Reshape\", "
                                                     "\"config\": {\"name\": \"r\", "
                                                     "\"target_shape\": [2, 2, 12, 4]}}"),
                "layer r (Reshape)", "target_shape [2,2,12,4] is not supported");
  expect_error (K2_SEQ (K2_INPUT ("[null, 8, 8, 3]") ",{\"class_name\": \"Reshape\", "
                                                     "\"config\": {\"name\": \"r\", "
                                                     "\"target_shape\": [4, 16, 3]}}"),
                "layer r (Reshape)", "changes the order of values in memory");

  /* Functional: a non-channel concatenation, a shared layer, two inputs. */
  expect_error (
      "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
      "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\", "
      "\"batch_input_shape\": [null, 8, 8, 3]}, \"inbound_nodes\": []},"
      "{\"class_name\": \"Activation\", \"name\": \"a\", \"config\": {\"name\": \"a\", "
      "\"activation\": \"relu\"}, \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
      "{\"class_name\": \"Activation\", \"name\": \"b\", \"config\": {\"name\": \"b\", "
      "\"activation\": \"tanh\"}, \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
      "{\"class_name\": \"Concatenate\", \"name\": \"cat\", \"config\": {\"name\": \"cat\", "
      "\"axis\": 1}, \"inbound_nodes\": [[[\"a\", 0, 0, {}], [\"b\", 0, 0, {}]]]}],"
      "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"cat\", 0, 0]]}}",
      "layer cat (Concatenate)", "axis 1 is not supported");
  expect_error (
      "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
      "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\", "
      "\"batch_input_shape\": [null, 4]}, \"inbound_nodes\": []},"
      "{\"class_name\": \"Dense\", \"name\": \"d\", \"config\": {\"name\": \"d\", \"units\": 4}, "
      "\"inbound_nodes\": [[[\"x\", 0, 0, {}]], [[\"d\", 0, 0, {}]]]}],"
      "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"d\", 1, 0]]}}",
      "layer d (Dense)", "shared layers are not supported");
  expect_error (
      "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": [],"
      "\"input_layers\": [[\"x\", 0, 0], [\"y\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}",
      "2 input_layers", "one input");
}

static void
test_normalization_constants (void)
{
  g_autoptr (GError) error = NULL;

  /* EfficientNetV2's Normalization with constants: a mean list and one variance number. */
  {
    const char *nc = K2_SEQ (K2_INPUT ("[null, 4, 4, 3]") ",{\"class_name\": \"Normalization\", "
                                                          "\"config\": {\"name\": \"n\", "
                                                          "\"axis\": [3], \"mean\": [0.485, "
                                                          "0.456, 0.406], \"variance\": 0.05}}");
    g_autoptr (KiltModel) m = kilt_keras_load_data (nc, -1, "nc.json", KILT_LOSS_MSE, NULL, &error);
    KiltNode *n;
    g_assert_no_error (error);
    n = find (m, "n");
    g_assert_cmpuint (n->cfg.norm_n, ==, 3);
    g_assert_cmpfloat (n->cfg.norm_mean[2], ==, 0.406f);
    g_assert_cmpfloat (n->cfg.norm_var[2], ==, 0.05f);
    g_assert_cmpuint (n->n_state + n->n_params, ==, 0); /* Keras counts no weights */
  }
}

/* Runs @body in a child process: a stack overflow there fails this test, not the binary. */
static void
in_child (void (*body) (void))
{
  if (g_test_subprocess ())
    {
      body ();
      return;
    }
  g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

static void
hostile_depth (void)
{
  static const char *head = "{\"class_name\": \"Sequential\", \"config\": ";
  static const char *open_close[][2] = { { "[", "]" }, { "{\"a\": ", "}" } };

  /* 100,000 levels of lists (200 KB) or objects overflowed json-glib's recursive parser. The
   * document's object is level 1, so the 512th opening is the first past the cap. */
  for (guint k = 0; k < G_N_ELEMENTS (open_close); k++)
    {
      g_autoptr (GString) s = g_string_new (head);
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) m = NULL;
      g_autofree char *at
          = g_strdup_printf ("k.json: line 1, column %zu (byte %zu): nesting deeper than 512 "
                             "levels",
                             strlen (head) + 511 * strlen (open_close[k][0]) + 1,
                             strlen (head) + 511 * strlen (open_close[k][0]));
      for (guint i = 0; i < 100000; i++)
        g_string_append (s, open_close[k][0]);
      g_string_append (s, "1");
      for (guint i = 0; i < 100000; i++)
        g_string_append (s, open_close[k][1]);
      g_string_append (s, "}");
      m = kilt_keras_load_data (s->str, (gssize)s->len, "k.json", KILT_LOSS_MSE, NULL, &error);
      g_assert_null (m);
      g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
      g_test_message ("%s", error->message);
      g_assert_cmpstr (error->message, ==, at);
    }
}

static void
test_hostile_depth (void)
{
  in_child (hostile_depth);
}

/* A functional chain of @n Activation layers after an input, as Keras 2 writes it. */
static char *
functional_chain (guint n)
{
  GString *s = g_string_new ("{\"class_name\": \"Functional\", \"config\": {\"name\": \"chain\", "
                             "\"layers\": [{\"class_name\": \"InputLayer\", \"name\": \"a0\", "
                             "\"config\": {\"name\": \"a0\", \"batch_input_shape\": [null, 4]}, "
                             "\"inbound_nodes\": []}");

  for (guint i = 1; i <= n; i++)
    g_string_append_printf (s,
                            ", {\"class_name\": \"Activation\", \"name\": \"a%u\", \"config\": "
                            "{\"name\": \"a%u\", \"activation\": \"relu\"}, \"inbound_nodes\": "
                            "[[[\"a%u\", 0, 0, {}]]]}",
                            i, i, i - 1);
  g_string_append_printf (s,
                          "], \"input_layers\": [[\"a0\", 0, 0]], \"output_layers\": "
                          "[[\"a%u\", 0, 0]]}}",
                          n);
  return g_string_free (s, FALSE);
}

typedef struct
{
  const char *text;
  KiltModel *model;
  GError *error;
  double seconds;
} ChainImport;

static void *
import_thread (void *data)
{
  ChainImport *ci = data;
  gint64 t0 = g_get_monotonic_time ();

  ci->model = kilt_keras_load_data (ci->text, -1, "chain.json", KILT_LOSS_MSE, NULL, &ci->error);
  ci->seconds = (g_get_monotonic_time () - t0) / 1e6;
  return NULL;
}

static void
long_chain (void)
{
  g_autofree char *text = functional_chain (60000);
  ChainImport ci = { text, NULL, NULL, 0 };
  pthread_attr_t attr;
  pthread_t thread;
  g_autoptr (GString) over = g_string_new ("{\"class_name\": \"Sequential\", \"config\": "
                                           "{\"name\": \"s\", \"layers\": [");
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;

  /* 60,000 layers overflowed the recursive visit (its depth guard was 100,000), and 30,000
   * took 10 s with names found by linear search. Now on a thread with a 256 KiB stack (the
   * visit keeps its own), in about a second here and a few under sanitizers on a busy
   * machine. */
  g_assert_cmpint (pthread_attr_init (&attr), ==, 0);
  g_assert_cmpint (pthread_attr_setstacksize (&attr, 256 * 1024), ==, 0);
  g_assert_cmpint (pthread_create (&thread, &attr, import_thread, &ci), ==, 0);
  g_assert_cmpint (pthread_join (thread, NULL), ==, 0);
  pthread_attr_destroy (&attr);
  g_test_message ("60,000 layers imported in %.2f s", ci.seconds);
  g_assert_no_error (ci.error);
  g_assert_cmpuint (kilt_model_n_nodes (ci.model), ==, 60001);
  for (guint i = 1; i < 60001; i++)
    g_assert_cmpuint (kilt_model_node (ci.model, i)->inputs[0], ==, i - 1);
  g_assert_true (kilt_model_find (ci.model, "a59999") == kilt_model_node (ci.model, 59999));
  g_assert_cmpfloat (ci.seconds, <, 20.0);
  kilt_model_free (ci.model);

  /* Past the layer cap: refused from the count, before any layer is read. */
  for (guint i = 0; i < KILT_MODEL_MAX_LAYERS + 2; i++)
    g_string_append (over, i ? ", {}" : "{}");
  g_string_append (over, "]}}");
  m = kilt_keras_load_data (over->str, -1, "over.json", KILT_LOSS_MSE, NULL, &error);
  g_assert_null (m);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_cmpstr (error->message, ==,
                   "over.json: the model has 100002 layers; Kilt takes at most 100000");
}

static void
test_long_chain (void)
{
  in_child (long_chain);
}

/* Two layers of one name: Keras refuses them, and reading the name as either layer rewired
 * the graph (a model of 11,881 parameters imported as 9,561, with only a note). */
static void
test_duplicate_names (void)
{
  expect_error (
      "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
      "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"name\": \"x\", "
      "\"batch_input_shape\": [null, 10]}, \"inbound_nodes\": []},"
      "{\"class_name\": \"Dense\", \"name\": \"h\", \"config\": {\"name\": \"h\", \"units\": 100}, "
      "\"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
      "{\"class_name\": \"Dense\", \"name\": \"h\", \"config\": {\"name\": \"h\", \"units\": 80}, "
      "\"inbound_nodes\": [[[\"h\", 0, 0, {}]]]},"
      "{\"class_name\": \"Dense\", \"name\": \"out\", \"config\": {\"name\": \"out\", \"units\": "
      "10}, \"inbound_nodes\": [[[\"h\", 0, 0, {}]]]}],"
      "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"out\", 0, 0]]}}",
      "layers 2 (Dense) and 3 (Dense) are both named \"h\"", "names must be unique");
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") "," K2_DENSE ("d", "") "," K2_DENSE (
                    "e", "") "," K2_DENSE ("d", "")),
                "layers 2 (Dense) and 4 (Dense) are both named \"d\"", NULL);
  /* The input layer is one of the layers. */
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") "," K2_DENSE ("in", "")),
                "layers 1 (InputLayer) and 2 (Dense) are both named \"in\"", NULL);
  /* Unnamed layers are called by their class name. */
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") ",{\"class_name\": \"Dense\", \"config\": "
                                               "{\"units\": 3}},{\"class_name\": \"Dense\", "
                                               "\"config\": {\"units\": 3}}"),
                "layers 2 and 3 are both called \"Dense\"", "give them unique names");
}

/* Names must be UTF-8 (json-glib takes nothing else); the error says where the bad byte is. */
static void
test_hostile_utf8 (void)
{
  static const char doc[] = K2_SEQ (K2_INPUT ("[null, 4]") "," K2_DENSE ("d\x80", ""));
  const char *bad = strchr (doc, '\x80');
  g_autofree char *at = g_strdup_printf ("k.json: line 1, column %zu (byte %zu): invalid UTF-8 "
                                         "(byte 0x80)",
                                         (gsize)(bad - doc) + 1, (gsize)(bad - doc));

  expect_error (doc, at, NULL);
  expect_error (K2_SEQ (K2_INPUT ("[null, 4]") "," K2_DENSE ("d\\u0000x", "")),
                "\\u0000 (NUL) escape in a string", NULL);
}

/* Keras 3's call records, channels_first, notes, Keras-1 spellings and a Softmax layer. */
static void
test_hand_written (void)
{
  static const char *k3
      = "{\"module\": \"keras\", \"class_name\": \"Functional\", \"config\": {\"name\": \"k3\", "
        "\"layers\": ["
        "{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", \"name\": \"x\", "
        "\"config\": {\"name\": \"x\", \"batch_shape\": [null, 2, 3, 5], \"dtype\": \"float32\"}, "
        "\"inbound_nodes\": []},"
        "{\"module\": \"keras.layers\", \"class_name\": \"Flatten\", \"name\": \"f\", \"config\": "
        "{\"name\": \"f\", \"data_format\": \"channels_first\", \"dtype\": {\"module\": \"keras\", "
        "\"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"mixed_float16\"}}}, "
        "\"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": "
        "{\"shape\": [null, 2, 3, 5], \"dtype\": \"float32\", \"keras_history\": [\"x\", 0, 0]}}], "
        "\"kwargs\": {}}]},"
        "{\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"name\": \"d\", \"config\": "
        "{\"name\": \"d\", \"units\": 4, \"use_bias\": false, \"trainable\": false, "
        "\"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": "
        "\"VarianceScaling\", \"config\": {}}, \"bias_constraint\": {\"class_name\": \"NonNeg\"}}, "
        "\"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": "
        "{\"keras_history\": [\"f\", 0, 0]}}], \"kwargs\": {}}]},"
        "{\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"name\": \"unused\", "
        "\"config\": "
        "{\"name\": \"unused\", \"units\": 4}, \"inbound_nodes\": [{\"args\": [{\"class_name\": "
        "\"__keras_tensor__\", \"config\": {\"keras_history\": [\"f\", 0, 0]}}]}]},"
        "{\"module\": \"keras.layers\", \"class_name\": \"LeakyReLU\", \"name\": \"lr\", "
        "\"config\": {\"name\": \"lr\", \"negative_slope\": 0.25}, \"inbound_nodes\": [{\"args\": "
        "[{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"d\", 0, "
        "0]}}]}]},"
        "{\"module\": \"keras.layers\", \"class_name\": \"Softmax\", \"name\": \"sm\", \"config\": "
        "{\"name\": \"sm\", \"axis\": -1}, \"inbound_nodes\": [{\"args\": [{\"class_name\": "
        "\"__keras_tensor__\", \"config\": {\"keras_history\": [\"lr\", 0, 0]}}]}]}],"
        "\"input_layers\": [\"x\", 0, 0], \"output_layers\": [\"sm\", 0, 0]}}";
  g_autoptr (GError) error = NULL;
  g_autofree char *notes = NULL;
  g_autoptr (KiltModel) m = kilt_keras_load_data (k3, -1, "k3.json", KILT_LOSS_MSE, &notes, &error);
  KiltNode *in, *d, *lr;

  g_assert_no_error (error);
  g_assert_cmpstr (m->name, ==, "k3");
  g_assert_cmpint (m->loss, ==, KILT_LOSS_MSE);
  /* The unused branch is left out: x, f, d, lr, sm. */
  g_assert_cmpuint (kilt_model_n_nodes (m), ==, 5);
  in = kilt_model_node (m, 0);
  /* channels_first: (None, 2, 3, 5) is 2 channels of 3x5. */
  g_assert_cmpuint (in->out_shape.c, ==, 2);
  g_assert_cmpuint (in->out_shape.h, ==, 3);
  g_assert_cmpuint (in->out_shape.w, ==, 5);
  d = kilt_model_find (m, "d");
  g_assert_false (d->cfg.use_bias);
  g_assert_cmpuint (d->n_params, ==, 30 * 4);
  lr = kilt_model_find (m, "lr");
  g_assert_cmpint (lr->cfg.activation, ==, KILT_ACT_LEAKY_RELU);
  g_assert_cmpfloat (lr->cfg.alpha, ==, 0.25f);
  g_assert_cmpint (kilt_model_output (m)->cfg.activation, ==, KILT_ACT_SOFTMAX);
  g_assert_nonnull (notes);
  g_test_message ("notes:\n%s", notes);
  g_assert_nonnull (strstr (notes, "layer f (Flatten): dtype mixed_float16"));
  g_assert_nonnull (strstr (notes, "layer d (Dense): frozen"));
  g_assert_nonnull (strstr (notes, "kernel_initializer VarianceScaling is replaced by "
                                   "glorot_uniform"));
  g_assert_nonnull (strstr (notes, "bias_constraint NonNeg is ignored"));
  g_assert_nonnull (strstr (notes, "layer unused (Dense) does not lead to the output"));
}

/* A Keras 2.0 Sequential: config is the list itself, the input shape on the first layer. */
static void
test_bare_list (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *notes = NULL;
  g_autoptr (KiltModel) m = kilt_keras_load_data (
      "{\"class_name\": \"Sequential\", \"config\": ["
      "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"units\": 16, "
      "\"activation\": \"relu\", \"batch_input_shape\": [null, 20], \"kernel_initializer\": "
      "{\"class_name\": \"he_normal\", \"config\": {}}}},"
      "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_2\", \"units\": 1, "
      "\"activation\": \"sigmoid\"}}], \"keras_version\": \"2.0.8\"}",
      -1, "old.json", KILT_LOSS_BINARY_CROSS_ENTROPY, &notes, &error);

  g_assert_no_error (error);
  g_assert_null (notes);
  g_assert_cmpuint (kilt_model_n_nodes (m), ==, 3);
  g_assert_cmpuint (kilt_model_node (m, 0)->out_shape.c, ==, 20);
  g_assert_cmpint (kilt_model_node (m, 1)->cfg.init, ==, KILT_INIT_HE_NORMAL);
  g_assert_cmpuint (m->n_params, ==, 20 * 16 + 16 + 16 + 1);
  g_assert_cmpint (kilt_model_output (m)->cfg.activation, ==, KILT_ACT_SIGMOID);
}

/* An imported model saves as a Kilt model and loads back the same. */
static void
test_to_kilt_format (void)
{
  g_autofree char *path = data_file ("keras3-residual.json");
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  g_autoptr (KiltModel) back = NULL;
  g_autofree char *text = NULL;
  g_autofree char *again = NULL;

  if (!have_all_layers ())
    return;
  m = kilt_keras_load_file (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
  g_assert_no_error (error);
  text = kilt_model_to_json (m);
  back = kilt_model_load_json_data (text, -1, "converted", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (back->n_params, ==, m->n_params);
  g_assert_cmpuint (back->n_state, ==, m->n_state);
  again = kilt_model_to_json (back);
  g_assert_cmpstr (text, ==, again);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/keras/sequential", test_sequential);
  g_test_add_func ("/keras/legacy", test_legacy);
  g_test_add_func ("/keras/functional", test_functional);
  g_test_add_func ("/keras/unsupported-files", test_unsupported_files);
  g_test_add_func ("/keras/padding-files", test_padding_files);
  g_test_add_func ("/keras/activation-files", test_activation_files);
  g_test_add_func ("/keras/sequence-files", test_sequence_files);
  g_test_add_func ("/keras/block-files", test_block_files);
  g_test_add_func ("/keras/separable-files", test_separable_files);
  g_test_add_func ("/keras/application-files", test_application_files);
  g_test_add_func ("/keras/applications", test_applications);
  g_test_add_func ("/keras/merge-files", test_merge_files);
  g_test_add_func ("/keras/nested-files", test_nested_files);
  g_test_add_func ("/keras/layer-scale", test_layer_scale);
  g_test_add_func ("/keras/nested-keras2", test_nested_keras2);
  g_test_add_func ("/keras/scalar-ops", test_scalar_ops);
  g_test_add_func ("/keras/normalization-constants", test_normalization_constants);
  g_test_add_func ("/keras/errors", test_errors);
  g_test_add_func ("/keras/embedding", test_embedding);
  g_test_add_func ("/keras/mask-import", test_mask_import);
  g_test_add_func ("/keras/rnn", test_rnn);
  g_test_add_func ("/keras/hand-written", test_hand_written);
  g_test_add_func ("/keras/hostile-depth", test_hostile_depth);
  g_test_add_func ("/keras/long-chain", test_long_chain);
  g_test_add_func ("/keras/duplicate-names", test_duplicate_names);
  g_test_add_func ("/keras/hostile-utf8", test_hostile_utf8);
  g_test_add_func ("/keras/bare-list", test_bare_list);
  g_test_add_func ("/keras/to-kilt-format", test_to_kilt_format);
  return g_test_run ();
}
