/* The layers of Keras applications that Kilt first lacked: ZeroPadding2D, Cropping2D and the
 * Activation layer's further functions (Keras' ReLU options, relu6, swish, gelu, hard_sigmoid,
 * ...), against the plain-C reference and finite differences, with Keras' values at points. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-layer-check.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-model.h"

#include "test-layer-cases.h"

#include <math.h>

static void
pad_case (const char *label, KiltLayerType type, KiltShape in, guint t, guint b, guint l, guint r,
          guint batch, gboolean accumulate)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = kilt_layer_config_default (type);
  c.cfg.pad[0] = t;
  c.cfg.pad[1] = b;
  c.cfg.pad[2] = l;
  c.cfg.pad[3] = r;
  c.n_inputs = 1;
  c.in[0] = in;
  c.batch = batch;
  c.training = TRUE;
  c.seed = 31;
  c.accumulate = accumulate;
  kilt_test_layer_case (&c);
}

static void
test_zero_padding (void)
{
  pad_case ("pad 1 all sides", KILT_LAYER_ZERO_PADDING2D, (KiltShape){ 3, 5, 7 }, 1, 1, 1, 1, 2,
            FALSE);
  pad_case ("pad ((0, 3), (2, 0))", KILT_LAYER_ZERO_PADDING2D, (KiltShape){ 2, 4, 3 }, 0, 3, 2, 0,
            3, FALSE);
  pad_case ("pad ((1, 0), (0, 1)) accumulate", KILT_LAYER_ZERO_PADDING2D, (KiltShape){ 5, 1, 9 }, 1,
            0, 0, 1, 1, TRUE);
  pad_case ("pad none", KILT_LAYER_ZERO_PADDING2D, (KiltShape){ 1, 3, 3 }, 0, 0, 0, 0, 2, FALSE);
}

static void
test_cropping (void)
{
  pad_case ("crop 1 all sides", KILT_LAYER_CROPPING2D, (KiltShape){ 3, 5, 7 }, 1, 1, 1, 1, 2,
            FALSE);
  pad_case ("crop ((2, 0), (1, 3))", KILT_LAYER_CROPPING2D, (KiltShape){ 2, 6, 5 }, 2, 0, 1, 3, 3,
            FALSE);
  pad_case ("crop ((0, 1), (0, 0)) accumulate", KILT_LAYER_CROPPING2D, (KiltShape){ 4, 2, 3 }, 0, 1,
            0, 0, 2, TRUE);
}

static void
test_padding_infer (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("pad");
  g_autoptr (GError) error = NULL;
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_ZERO_PADDING2D);
  guint in, p;

  in = kilt_model_add_input (m, "in", (KiltShape){ 3, 6, 5 });
  memcpy (cfg.pad, (guint[4]){ 1, 2, 3, 0 }, sizeof cfg.pad);
  p = kilt_model_add (m, KILT_LAYER_ZERO_PADDING2D, "pad", &cfg, 1, &in);
  memcpy (cfg.pad, (guint[4]){ 0, 4, 2, 2 }, sizeof cfg.pad);
  kilt_model_add (m, KILT_LAYER_CROPPING2D, "crop", &cfg, 1, &p);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (kilt_model_find (m, "pad")->out_shape.h, ==, 9);
  g_assert_cmpuint (kilt_model_find (m, "pad")->out_shape.w, ==, 8);
  g_assert_cmpuint (kilt_model_find (m, "crop")->out_shape.c, ==, 3);
  g_assert_cmpuint (kilt_model_find (m, "crop")->out_shape.h, ==, 5);
  g_assert_cmpuint (kilt_model_find (m, "crop")->out_shape.w, ==, 4);
  g_assert_cmpuint (m->n_params, ==, 0);

  /* Cropping all of a side away is refused, naming the layer and the sizes. */
  {
    g_autoptr (KiltModel) bad = kilt_model_new ("crop");
    in = kilt_model_add_input (bad, "in", (KiltShape){ 3, 6, 5 });
    memcpy (cfg.pad, (guint[4]){ 0, 0, 3, 2 }, sizeof cfg.pad);
    kilt_model_add (bad, KILT_LAYER_CROPPING2D, "crop", &cfg, 1, &in);
    g_assert_false (kilt_model_build (bad, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "layer crop (Cropping2D)"));
    g_assert_nonnull (strstr (error->message, "leaves nothing of a 6x5 input"));
  }
}

static void
act_case (const char *label, const KiltLayerConfig *cfg, KiltShape shape, guint batch, float scale,
          gboolean accumulate)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = KILT_LAYER_ACTIVATION;
  c.cfg = *cfg;
  c.n_inputs = 1;
  c.in[0] = shape;
  c.batch = batch;
  c.training = TRUE;
  c.seed = 13;
  c.input_scale = scale;
  c.accumulate = accumulate;
  kilt_test_layer_case (&c);
}

static void
test_activations (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_ACTIVATION);

  for (int act = KILT_ACT_RELU6; act < KILT_ACT_N_TYPES; act++)
    {
      cfg.activation = act;
      cfg.alpha = 0.6f;
      /* Inputs to +-8: past hard_sigmoid's kinks and relu6's cap. */
      act_case (kilt_activation_name (act), &cfg, (KiltShape){ 3, 5, 7 }, 3, 8, FALSE);
      act_case (kilt_activation_name (act), &cfg, (KiltShape){ 13, 1, 1 }, 2, 1, TRUE);
    }
  /* Keras' ReLU with each option, alone and together. */
  cfg = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
  cfg.activation = KILT_ACT_RELU;
  cfg.max_value = 0.5f;
  act_case ("ReLU max_value 0.5", &cfg, (KiltShape){ 2, 3, 5 }, 3, 1, FALSE);
  cfg.max_value = INFINITY;
  cfg.threshold = 0.25f;
  act_case ("ReLU threshold 0.25", &cfg, (KiltShape){ 2, 3, 5 }, 3, 1, FALSE);
  cfg.threshold = -0.5f;
  cfg.negative_slope = 0.3f;
  act_case ("ReLU threshold -0.5 slope 0.3", &cfg, (KiltShape){ 2, 3, 5 }, 3, 1, FALSE);
  cfg.max_value = 0.7f;
  act_case ("ReLU all three", &cfg, (KiltShape){ 4, 1, 3 }, 5, 1, TRUE);
}

/* The reference at points, against values Keras' definitions give. */
static double
ref_at (KiltActivation act, double alpha, double x)
{
  KiltNode node = { 0 };
  const double *in[1] = { &x };
  double y = NAN;

  node.name = (char *)"a";
  node.type = KILT_LAYER_ACTIVATION;
  node.klass = kilt_layer_class_get (KILT_LAYER_ACTIVATION);
  node.cfg = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
  node.cfg.activation = act;
  node.cfg.alpha = (float)alpha;
  node.n_inputs = 1;
  node.in_shape[0] = node.out_shape = (KiltShape){ 1, 1, 1 };
  node.klass->ref_forward (&node, 1, FALSE, 0, 0, in, NULL, NULL, &y);
  return y;
}

static void
test_activation_values (void)
{
  /* Keras 2: 0.2 x + 0.5 within +-2.5; Keras 3: x / 6 + 0.5 within +-3. */
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_HARD_SIGMOID_K2, 0, 1.0), 0.7, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_HARD_SIGMOID_K2, 0, -2.6), 0.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_HARD_SIGMOID, 0, 1.0), 1.0 / 6 + 0.5, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_HARD_SIGMOID, 0, 2.9), 2.9 / 6 + 0.5, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_HARD_SWISH, 0, 1.0), 1.0 * (1.0 / 6 + 0.5),
                                  1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_RELU6, 0, 7.5), 6.0, 1e-12);
  /* gelu (1) = 0.5 (1 + erf (1 / sqrt 2)) = 0.8413447460685429; tanh form 0.8411919906082768. */
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_GELU, 0, 1.0), 0.8413447460685429, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_GELU_TANH, 0, 1.0), 0.8411919906082768, 1e-12);
  /* selu (-1) = 1.0507 * 1.6733 * (e^-1 - 1) = -1.1113307378125625. */
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_SELU, 0, -1.0), -1.1113307378125625, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_ELU, 0.5, -1.0), 0.5 * (exp (-1.0) - 1), 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_SWISH, 0, 2.0), 2.0 / (1 + exp (-2.0)), 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_SOFTPLUS, 0, 40.0), 40.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_SOFTPLUS, 0, 0.0), log (2.0), 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_SOFTSIGN, 0, -3.0), -0.75, 1e-12);
  g_assert_cmpfloat_with_epsilon (ref_at (KILT_ACT_EXPONENTIAL, 0, 1.0), G_E, 1e-12);
}

/* Conv2D and Dense keep to the activations whose gradient their output gives; the executor
 * does not fold the others into them. */
static void
test_activation_not_fused (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("fuse");
  g_autoptr (GError) error = NULL;
  KiltLayerConfig conv = kilt_layer_config_default (KILT_LAYER_CONV2D);
  KiltLayerConfig act = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
  guint in, c;

  in = kilt_model_add_input (m, "in", (KiltShape){ 2, 5, 5 });
  conv.units = 3;
  c = kilt_model_add (m, KILT_LAYER_CONV2D, "conv", &conv, 1, &in);
  act.activation = KILT_ACT_SWISH;
  c = kilt_model_add (m, KILT_LAYER_ACTIVATION, "swish", &act, 1, &c);
  act.activation = KILT_ACT_RELU;
  act.max_value = 6;
  conv.units = 2;
  c = kilt_model_add (m, KILT_LAYER_CONV2D, "conv2", &conv, 1, &c);
  kilt_model_add (m, KILT_LAYER_ACTIVATION, "capped", &act, 1, &c);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  g_assert_false (kilt_executor_fuses (m, 2));
  g_assert_false (kilt_executor_fuses (m, 4));

  {
    g_autoptr (KiltModel) bad = kilt_model_new ("bad");
    KiltLayerConfig dense = kilt_layer_config_default (KILT_LAYER_DENSE);
    in = kilt_model_add_input (bad, "in", (KiltShape){ 4, 1, 1 });
    dense.units = 2;
    dense.activation = KILT_ACT_GELU;
    kilt_model_add (bad, KILT_LAYER_DENSE, "d", &dense, 1, &in);
    g_assert_false (kilt_model_build (bad, &error));
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "layer d (Dense): activation gelu"));
    g_assert_nonnull (strstr (error->message, "add an Activation layer"));
  }
}

static void
one_case (const char *label, KiltLayerType type, const KiltLayerConfig *cfg, guint n_inputs,
          const KiltShape *in, guint batch, gboolean training, gboolean accumulate)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = *cfg;
  c.n_inputs = n_inputs;
  for (guint i = 0; i < n_inputs; i++)
    c.in[i] = in[i];
  c.batch = batch;
  c.training = training;
  c.seed = 17;
  c.accumulate = accumulate;
  kilt_test_layer_case (&c);
}

static void
test_upsampling (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_UPSAMPLING2D);
  KiltShape in = { 3, 4, 5 };

  cfg.kh = cfg.kw = 2;
  one_case ("upsampling 2x2", KILT_LAYER_UPSAMPLING2D, &cfg, 1, &in, 2, TRUE, FALSE);
  cfg.kh = 3;
  cfg.kw = 1;
  one_case ("upsampling (3, 1) accumulate", KILT_LAYER_UPSAMPLING2D, &cfg, 1, &in, 3, TRUE, TRUE);
}

/* UpSampling2D interpolation="bilinear" against the reference and finite differences, and
 * the reference against values of TensorFlow's resize (half-pixel centres) worked by hand:
 * a row (0, 1) doubled is (0, .25, .75, 1), tripled (0, 0, 1/3, 2/3, 1, 1). */
static void
test_upsampling_bilinear (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_UPSAMPLING2D);
  KiltShape in = { 3, 4, 5 }, row = { 1, 1, 2 };
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;
  const double x[2] = { 0, 1 }, *ins[1] = { x };
  const double twice[4] = { 0, 0.25, 0.75, 1 }, thrice[6] = { 0, 0, 1 / 3.0, 2 / 3.0, 1, 1 };
  double y[6];

  cfg.bilinear = TRUE;
  cfg.kh = cfg.kw = 2;
  one_case ("bilinear 2x2", KILT_LAYER_UPSAMPLING2D, &cfg, 1, &in, 2, TRUE, FALSE);
  cfg.kh = 3;
  cfg.kw = 1;
  one_case ("bilinear (3, 1) accumulate", KILT_LAYER_UPSAMPLING2D, &cfg, 1, &in, 3, TRUE, TRUE);
  cfg.kh = 1;
  cfg.kw = 4;
  in = (KiltShape){ 2, 1, 1 };
  one_case ("bilinear (1, 4) of 1x1", KILT_LAYER_UPSAMPLING2D, &cfg, 1, &in, 2, TRUE, FALSE);
  in = (KiltShape){ 2, 3, 2 };
  cfg.kh = 5;
  cfg.kw = 3;
  one_case ("bilinear (5, 3)", KILT_LAYER_UPSAMPLING2D, &cfg, 1, &in, 2, TRUE, FALSE);

  node.name = "up";
  node.type = KILT_LAYER_UPSAMPLING2D;
  node.klass = &kilt_upsampling2d_class;
  node.cfg = cfg;
  node.in_shape[0] = row;
  for (guint s = 2; s <= 3; s++)
    {
      node.cfg.kh = 1;
      node.cfg.kw = s;
      g_assert_true (node.klass->infer (&node, &error));
      g_assert_no_error (error);
      node.klass->ref_forward (&node, 1, FALSE, 0, 0, ins, NULL, NULL, y);
      for (guint i = 0; i < 2 * s; i++)
        g_assert_cmpfloat_with_epsilon (y[i], s == 2 ? twice[i] : thrice[i], 1e-12);
    }
}

/* Permute: every order of the three axes, against the reference and finite differences, and
 * the shape it gives. */
static void
test_permute (void)
{
  static const guint orders[][3]
      = { { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 }, { 0, 1, 2 } };
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_PERMUTE);
  KiltShape in = { 3, 4, 5 };
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (orders); i++)
    {
      g_autofree char *label
          = g_strdup_printf ("permute (%u, %u, %u)", orders[i][0], orders[i][1], orders[i][2]);
      memcpy (cfg.perm, orders[i], sizeof cfg.perm);
      one_case (label, KILT_LAYER_PERMUTE, &cfg, 1, &in, 2, TRUE, i == 2);
    }
  node.name = "perm";
  node.type = KILT_LAYER_PERMUTE;
  node.klass = &kilt_permute_class;
  node.in_shape[0] = in;
  memcpy (node.cfg.perm, orders[3], sizeof node.cfg.perm);
  g_assert_true (node.klass->infer (&node, &error));
  g_assert_cmpuint (node.out_shape.c, ==, 5);
  g_assert_cmpuint (node.out_shape.h, ==, 3);
  g_assert_cmpuint (node.out_shape.w, ==, 4);
  node.cfg.perm[2] = 0;
  g_assert_false (node.klass->infer (&node, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "layer perm (Permute): permutation (2, 0, 0)"));
}

/* Embedding: ids repeating within the batch (the gradient's scatter-add sums them), ids outside
 * the table and with fractions, against the reference (whose table gradient finite
 * differences check); both ways of splitting the table's gradient; the shape and count. */
static void
test_embedding (void)
{
  static const char *const kinds[] = { "rows", "items" };
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_EMBEDDING);
  KiltLayerCheck c = { 0 };
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;

  c.type = KILT_LAYER_EMBEDDING;
  c.n_inputs = 1;
  c.training = TRUE;
  c.seed = 23;
  for (guint k = 0; k < G_N_ELEMENTS (kinds); k++)
    {
      g_setenv ("KILT_EMBEDDING_KERNEL", kinds[k], TRUE);
      /* 4 rows for 3 x 13 positions: every row is hit many times. */
      c.label = k ? "embedding 4 x 3, 13 steps (items)" : "embedding 4 x 3, 13 steps (rows)";
      c.cfg = cfg;
      c.cfg.input_dim = c.ids = 4;
      c.cfg.units = 3;
      c.in[0] = (KiltShape){ 13, 1, 1 };
      c.batch = 3;
      c.accumulate = FALSE;
      kilt_test_layer_case (&c);
      /* More rows than work-items share a column, an odd width, accumulating into the input. */
      c.label
          = k ? "embedding 301 x 7, accumulate (items)" : "embedding 301 x 7, accumulate (rows)";
      c.cfg.input_dim = c.ids = 301;
      c.cfg.units = 7;
      c.in[0] = (KiltShape){ 5, 1, 1 };
      c.batch = 4;
      c.accumulate = TRUE;
      kilt_test_layer_case (&c);
    }
  g_unsetenv ("KILT_EMBEDDING_KERNEL");
  c.label = "embedding, inference";
  c.training = FALSE;
  c.cfg.input_dim = c.ids = 9;
  c.cfg.units = 2;
  c.in[0] = (KiltShape){ 6, 1, 1 };
  kilt_test_layer_case (&c);

  node.name = "emb";
  node.type = KILT_LAYER_EMBEDDING;
  node.klass = &kilt_embedding_class;
  node.cfg = cfg;
  node.cfg.input_dim = 20000;
  node.cfg.units = 16;
  node.in_shape[0] = (KiltShape){ 40, 1, 1 };
  g_assert_true (node.klass->infer (&node, &error));
  g_assert_no_error (error);
  /* (output_dim, 1, steps): a Keras sequence (steps, output_dim). */
  g_assert_cmpuint (node.out_shape.c, ==, 16);
  g_assert_cmpuint (node.out_shape.h, ==, 1);
  g_assert_cmpuint (node.out_shape.w, ==, 40);
  g_assert_cmpuint (node.n_params, ==, 20000 * 16);
  node.in_shape[0] = (KiltShape){ 4, 5, 1 };
  g_assert_false (node.klass->infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "layer emb (Embedding): expects a vector of ids"));
  g_clear_error (&error);
  node.in_shape[0] = (KiltShape){ 4, 1, 1 };
  node.cfg.input_dim = 0;
  g_assert_false (node.klass->infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "input_dim must be from 1"));
}

static void
test_batch_norm_partial (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_BATCH_NORM);
  KiltShape in = { 3, 5, 7 }, flat = { 11, 1, 1 };

  cfg.bn_no_scale = TRUE;
  one_case ("bn scale false", KILT_LAYER_BATCH_NORM, &cfg, 1, &in, 3, TRUE, FALSE);
  one_case ("bn scale false, inference", KILT_LAYER_BATCH_NORM, &cfg, 1, &in, 2, FALSE, FALSE);
  cfg.bn_no_scale = FALSE;
  cfg.bn_no_center = TRUE;
  one_case ("bn center false", KILT_LAYER_BATCH_NORM, &cfg, 1, &flat, 5, TRUE, TRUE);
  cfg.bn_no_scale = TRUE;
  one_case ("bn neither", KILT_LAYER_BATCH_NORM, &cfg, 1, &in, 2, TRUE, FALSE);

  /* Keras' counts: C per parameter kept, plus the 2C running statistics. */
  {
    g_autoptr (KiltModel) m = kilt_model_new ("bn");
    g_autoptr (GError) error = NULL;
    guint i = kilt_model_add_input (m, "in", in);
    cfg.bn_no_scale = TRUE;
    cfg.bn_no_center = FALSE;
    i = kilt_model_add (m, KILT_LAYER_BATCH_NORM, "a", &cfg, 1, &i);
    cfg.bn_no_scale = TRUE;
    cfg.bn_no_center = TRUE;
    kilt_model_add (m, KILT_LAYER_BATCH_NORM, "b", &cfg, 1, &i);
    g_assert_true (kilt_model_build (m, &error));
    g_assert_cmpuint (kilt_model_find (m, "a")->n_params, ==, 3);
    g_assert_cmpuint (kilt_model_find (m, "b")->n_params, ==, 0);
    g_assert_cmpuint (kilt_model_find (m, "b")->n_state, ==, 6);
  }
}

/* Normalization with its statistics as state (the checker fills them, variances positive). */
static void
test_normalization (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_NORMALIZATION);
  KiltShape in = { 3, 4, 5 }, flat = { 7, 1, 1 };

  one_case ("normalization", KILT_LAYER_NORMALIZATION, &cfg, 1, &in, 3, TRUE, FALSE);
  one_case ("normalization flat, accumulate", KILT_LAYER_NORMALIZATION, &cfg, 1, &flat, 2, TRUE,
            TRUE);
  one_case ("normalization inference", KILT_LAYER_NORMALIZATION, &cfg, 1, &in, 2, FALSE, FALSE);
  /* Constants, as EfficientNetV2 and ConvNeXt give them: no state, Keras counts nothing. */
  cfg.norm_n = 3;
  memcpy (cfg.norm_mean, (float[]){ 0.485f, 0.456f, 0.406f }, 3 * sizeof (float));
  memcpy (cfg.norm_var, (float[]){ 0.052441f, 0.050176f, 0.050625f }, 3 * sizeof (float));
  one_case ("normalization constants", KILT_LAYER_NORMALIZATION, &cfg, 1, &in, 3, TRUE, FALSE);
  cfg.norm_n = 1;
  cfg.norm_mean[0] = -0.5f;
  cfg.norm_var[0] = 4.0f;
  one_case ("normalization one constant", KILT_LAYER_NORMALIZATION, &cfg, 1, &flat, 2, TRUE, TRUE);
  {
    g_autoptr (KiltModel) m = kilt_model_new ("n");
    g_autoptr (GError) error = NULL;
    guint i = kilt_model_add_input (m, "in", (KiltShape){ 9, 2, 2 });
    cfg.norm_n = 3;
    kilt_model_add (m, KILT_LAYER_NORMALIZATION, "n", &cfg, 1, &i);
    g_assert_false (kilt_model_build (m, &error));
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "layer n (Normalization): 3 constant means and "
                                              "variances for 9 channels"));
  }
  {
    g_autoptr (KiltModel) m = kilt_model_new ("n");
    g_autoptr (GError) error = NULL;
    guint i = kilt_model_add_input (m, "in", (KiltShape){ 3, 2, 2 });
    cfg.norm_n = 3;
    cfg.norm_var[1] = -1;
    kilt_model_add (m, KILT_LAYER_NORMALIZATION, "n", &cfg, 1, &i);
    g_assert_false (kilt_model_build (m, &error));
    g_assert_nonnull (strstr (error->message, "variance 0 or more"));
  }
}

static void
test_layer_norm (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_LAYER_NORM);
  KiltShape img = { 7, 3, 4 }, flat = { 9, 1, 1 };

  one_case ("layer norm image", KILT_LAYER_LAYER_NORM, &cfg, 1, &img, 2, TRUE, FALSE);
  cfg.epsilon = 1e-6f;
  one_case ("layer norm flat, accumulate", KILT_LAYER_LAYER_NORM, &cfg, 1, &flat, 3, TRUE, TRUE);
  cfg.bn_no_scale = TRUE;
  one_case ("layer norm no gamma", KILT_LAYER_LAYER_NORM, &cfg, 1, &img, 2, TRUE, FALSE);
  cfg.bn_no_scale = FALSE;
  cfg.bn_no_center = TRUE;
  one_case ("layer norm no beta", KILT_LAYER_LAYER_NORM, &cfg, 1, &flat, 2, TRUE, FALSE);
}

static void
test_rescaling (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_RESCALING);
  KiltShape in = { 3, 4, 5 };

  cfg.scale = 1 / 127.5f;
  cfg.offset = -1;
  one_case ("rescaling", KILT_LAYER_RESCALING, &cfg, 1, &in, 3, TRUE, FALSE);
  cfg.scale = -2.5f;
  cfg.offset = 0.25f;
  one_case ("rescaling accumulate", KILT_LAYER_RESCALING, &cfg, 1, &in, 2, TRUE, TRUE);
}

static void
test_reshape (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_RESHAPE);
  KiltShape flat = { 12, 1, 1 }, img = { 4, 3, 5 };

  cfg.target = (KiltShape){ 12, 1, 1 };
  one_case ("reshape (12) to (1, 1, 12)", KILT_LAYER_RESHAPE, &cfg, 1, &flat, 3, TRUE, TRUE);
  /* A vector as a sequence of one feature (Keras' Reshape ((12, 1))): the same order. */
  cfg.target = (KiltShape){ 1, 1, 12 };
  one_case ("reshape (12) to a sequence (12, 1)", KILT_LAYER_RESHAPE, &cfg, 1, &flat, 3, TRUE,
            FALSE);
  {
    g_autoptr (KiltModel) m = kilt_model_new ("r");
    g_autoptr (GError) error = NULL;
    guint i = kilt_model_add_input (m, "in", flat);
    cfg.target = (KiltShape){ 3, 1, 4 }; /* (4 steps, 3 features): Keras' order is not Kilt's */
    kilt_model_add (m, KILT_LAYER_RESHAPE, "r", &cfg, 1, &i);
    g_assert_false (kilt_model_build (m, &error));
    g_assert_nonnull (strstr (error->message, "changes the order of values in memory"));
  }
  cfg.target = (KiltShape){ 4, 3, 0 }; /* the width is what is left */
  one_case ("reshape same shape", KILT_LAYER_RESHAPE, &cfg, 1, &img, 2, TRUE, FALSE);
  {
    g_autoptr (KiltModel) m = kilt_model_new ("r");
    g_autoptr (GError) error = NULL;
    guint i = kilt_model_add_input (m, "in", img);
    cfg.target = (KiltShape){ 4, 5, 3 };
    kilt_model_add (m, KILT_LAYER_RESHAPE, "r", &cfg, 1, &i);
    g_assert_false (kilt_model_build (m, &error));
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "layer r (Reshape): reshaping 3x5x4 to 5x3x4"));
  }
  {
    g_autoptr (KiltModel) m = kilt_model_new ("r");
    g_autoptr (GError) error = NULL;
    guint i = kilt_model_add_input (m, "in", flat);
    cfg.target = (KiltShape){ 5, 0, 1 };
    kilt_model_add (m, KILT_LAYER_RESHAPE, "r", &cfg, 1, &i);
    g_assert_false (kilt_model_build (m, &error));
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "does not fit the input's 12 values"));
  }
}

static void
test_multiply (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_MULTIPLY);
  KiltShape same[3] = { { 3, 4, 5 }, { 3, 4, 5 }, { 3, 4, 5 } };
  KiltShape se[2] = { { 6, 5, 3 }, { 6, 1, 1 } };
  KiltShape se_first[3] = { { 2, 1, 1 }, { 2, 7, 3 }, { 2, 7, 3 } };

  one_case ("multiply 3 inputs", KILT_LAYER_MULTIPLY, &cfg, 3, same, 2, TRUE, FALSE);
  one_case ("multiply by a channel scale", KILT_LAYER_MULTIPLY, &cfg, 2, se, 3, TRUE, FALSE);
  one_case ("multiply, scale first, accumulate", KILT_LAYER_MULTIPLY, &cfg, 3, se_first, 2, TRUE,
            TRUE);
  {
    g_autoptr (KiltModel) m = kilt_model_new ("m");
    g_autoptr (GError) error = NULL;
    guint in[2];
    in[0] = kilt_model_add_input (m, "in", (KiltShape){ 6, 5, 3 });
    in[1] = kilt_model_add (m, KILT_LAYER_GLOBAL_AVG_POOL2D, "g", NULL, 1, in);
    kilt_model_add (m, KILT_LAYER_MULTIPLY, "se", &cfg, 2, in);
    g_assert_true (kilt_model_build (m, &error));
    g_assert_cmpuint (kilt_model_output (m)->out_shape.h, ==, 5);
  }
  {
    g_autoptr (KiltModel) m = kilt_model_new ("m");
    g_autoptr (GError) error = NULL;
    guint in[2];
    in[0] = kilt_model_add_input (m, "in", (KiltShape){ 6, 5, 3 });
    in[1] = kilt_model_add (m, KILT_LAYER_FLATTEN, "f", NULL, 1, in);
    kilt_model_add (m, KILT_LAYER_MULTIPLY, "bad", &cfg, 2, in);
    g_assert_false (kilt_model_build (m, &error));
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "layer bad (Multiply): input 2 is 1x1x90"));
  }
}

/* noise_shape (None, 1, 1, C) and SpatialDropout2D: a channel's plane is kept or dropped
 * whole; (None, 1, 1, 1): a sample. Checked on the reference the device is held to. */
static void
test_dropout_masks (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DROPOUT);
  KiltShape in = { 4, 3, 5 };

  cfg.rate = 0.5f;
  for (int mask = KILT_DROPOUT_CHANNEL; mask <= KILT_DROPOUT_SAMPLE; mask++)
    {
      KiltNode node = { 0 };
      guint batch = 6;
      gsize n = batch * kilt_shape_size (&in), group;
      g_autofree double *x = g_new (double, n);
      g_autofree double *y = g_new (double, n);
      const double *ins[1] = { x };
      guint kept = 0, groups;

      cfg.dropout_mask = mask;
      one_case (mask == KILT_DROPOUT_CHANNEL ? "dropout per channel" : "dropout per sample",
                KILT_LAYER_DROPOUT, &cfg, 1, &in, 3, TRUE, FALSE);
      node.name = (char *)"d";
      node.index = 3;
      node.type = KILT_LAYER_DROPOUT;
      node.klass = kilt_layer_class_get (KILT_LAYER_DROPOUT);
      node.cfg = cfg;
      node.n_inputs = 1;
      node.in_shape[0] = node.out_shape = in;
      for (gsize i = 0; i < n; i++)
        x[i] = 1.0;
      node.klass->ref_forward (&node, batch, TRUE, 99, 4, ins, NULL, NULL, y);
      group = mask == KILT_DROPOUT_CHANNEL ? 15 : kilt_shape_size (&in);
      groups = (guint)(n / group);
      for (gsize g = 0; g < groups; g++)
        {
          for (gsize j = 1; j < group; j++)
            g_assert_cmpfloat (y[g * group + j], ==, y[g * group]);
          kept += y[g * group] != 0;
        }
      /* Not all kept, not all dropped (24 planes or 6 samples at rate 0.5, fixed seed). */
      g_assert_cmpuint (kept, >, 0);
      g_assert_cmpuint (kept, <, groups);
    }
}

static void
dw_case (const char *label, KiltShape in, guint dm, guint k_h, guint k_w, guint s_h, guint s_w,
         guint d_h, guint d_w, gboolean same, gboolean bias, KiltActivation act, guint batch,
         gboolean accumulate)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DEPTHWISE_CONV2D);

  cfg.units = dm;
  cfg.kh = k_h;
  cfg.kw = k_w;
  cfg.sh = s_h;
  cfg.sw = s_w;
  cfg.dil_h = d_h;
  cfg.dil_w = d_w;
  cfg.same = same;
  cfg.use_bias = bias;
  cfg.activation = act;
  one_case (label, KILT_LAYER_DEPTHWISE_CONV2D, &cfg, 1, &in, batch, TRUE, accumulate);
}

static void
test_depthwise (void)
{
  dw_case ("dw 3x3 same", (KiltShape){ 3, 7, 5 }, 1, 3, 3, 1, 1, 0, 0, TRUE, TRUE, KILT_ACT_LINEAR,
           2, FALSE);
  dw_case ("dw 3x3 same stride 2, dm 2, relu", (KiltShape){ 4, 9, 8 }, 2, 3, 3, 2, 2, 0, 0, TRUE,
           TRUE, KILT_ACT_RELU, 3, FALSE);
  dw_case ("dw 5x5 valid stride (2, 1), no bias", (KiltShape){ 2, 11, 7 }, 1, 5, 5, 2, 1, 0, 0,
           FALSE, FALSE, KILT_ACT_LINEAR, 2, TRUE);
  dw_case ("dw (3, 2) dilated (2, 3) same, dm 3, tanh", (KiltShape){ 2, 10, 9 }, 3, 3, 2, 1, 1, 2,
           3, TRUE, TRUE, KILT_ACT_TANH, 2, FALSE);
  dw_case ("dw 1x1 dm 4 valid", (KiltShape){ 5, 3, 4 }, 4, 1, 1, 1, 1, 0, 0, FALSE, TRUE,
           KILT_ACT_LINEAR, 1, TRUE);
  /* 323 outputs a plane, over a group of 128 work-items: each sums several of every sample's
   * (the weight gradient's strided loop and its tree). */
  dw_case ("dw 3x3 same on 19x17, dm 2, batch 3", (KiltShape){ 2, 19, 17 }, 2, 3, 3, 1, 1, 0, 0,
           TRUE, TRUE, KILT_ACT_RELU, 3, FALSE);
  {
    g_autoptr (KiltModel) m = kilt_model_new ("dw");
    g_autoptr (GError) error = NULL;
    KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DEPTHWISE_CONV2D);
    guint i = kilt_model_add_input (m, "in", (KiltShape){ 3, 8, 8 });
    cfg.units = 2;
    cfg.use_bias = TRUE;
    i = kilt_model_add (m, KILT_LAYER_DEPTHWISE_CONV2D, "dw", &cfg, 1, &i);
    g_assert_true (kilt_model_build (m, &error));
    /* Keras: kh kw C dm + C dm. */
    g_assert_cmpuint (kilt_model_find (m, "dw")->n_params, ==, 9 * 3 * 2 + 6);
    g_assert_cmpuint (kilt_model_find (m, "dw")->out_shape.c, ==, 6);
  }
  {
    g_autoptr (KiltModel) m = kilt_model_new ("dw");
    g_autoptr (GError) error = NULL;
    KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DEPTHWISE_CONV2D);
    guint i = kilt_model_add_input (m, "in", (KiltShape){ 3, 4, 4 });
    cfg.kh = cfg.kw = 3;
    cfg.dil_h = cfg.dil_w = 2;
    kilt_model_add (m, KILT_LAYER_DEPTHWISE_CONV2D, "dw", &cfg, 1, &i);
    g_assert_false (kilt_model_build (m, &error));
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "layer dw (DepthwiseConv2D): a 3x3 kernel "
                                              "(dilation 2x2, strides 1x1) does not fit a 4x4"));
  }
}

static void
test_global_max_pool (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_GLOBAL_MAX_POOL2D);
  KiltShape in = { 3, 5, 7 }, one = { 4, 1, 1 };

  one_case ("global max", KILT_LAYER_GLOBAL_MAX_POOL2D, &cfg, 1, &in, 3, TRUE, FALSE);
  one_case ("global max accumulate", KILT_LAYER_GLOBAL_MAX_POOL2D, &cfg, 1, &in, 2, TRUE, TRUE);
  one_case ("global max of 1x1", KILT_LAYER_GLOBAL_MAX_POOL2D, &cfg, 1, &one, 2, TRUE, FALSE);
}

static void
test_merges (void)
{
  KiltShape two[2] = { { 3, 4, 5 }, { 3, 4, 5 } },
            three[3] = { { 2, 3, 3 }, { 2, 3, 3 }, { 2, 3, 3 } };
  const KiltLayerType types[]
      = { KILT_LAYER_SUBTRACT, KILT_LAYER_AVERAGE, KILT_LAYER_MAXIMUM, KILT_LAYER_MINIMUM };

  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    {
      KiltLayerConfig cfg = kilt_layer_config_default (types[t]);
      const char *name = kilt_layer_class_get (types[t])->name;
      one_case (name, types[t], &cfg, 2, two, 3, TRUE, FALSE);
      if (types[t] != KILT_LAYER_SUBTRACT)
        one_case (name, types[t], &cfg, 3, three, 2, TRUE, TRUE);
    }
  {
    g_autoptr (KiltModel) m = kilt_model_new ("s");
    g_autoptr (GError) error = NULL;
    guint in[3];
    in[0] = kilt_model_add_input (m, "in", (KiltShape){ 3, 2, 2 });
    in[1] = in[2] = in[0];
    kilt_model_add (m, KILT_LAYER_SUBTRACT, "sub", NULL, 3, in);
    g_assert_false (kilt_model_build (m, &error));
    g_assert_nonnull (strstr (error->message, "layer sub (Subtract): takes exactly 2 inputs"));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/layers-shape/zero-padding", test_zero_padding);
  g_test_add_func ("/layers-shape/cropping", test_cropping);
  g_test_add_func ("/layers-shape/padding-infer", test_padding_infer);
  g_test_add_func ("/layers-shape/upsampling", test_upsampling);
  g_test_add_func ("/layers-shape/upsampling-bilinear", test_upsampling_bilinear);
  g_test_add_func ("/layers-shape/permute", test_permute);
  g_test_add_func ("/layers-shape/embedding", test_embedding);
  g_test_add_func ("/layers-shape/activations", test_activations);
  g_test_add_func ("/layers-shape/activation-values", test_activation_values);
  g_test_add_func ("/layers-shape/activation-not-fused", test_activation_not_fused);
  g_test_add_func ("/layers-shape/batch-norm-partial", test_batch_norm_partial);
  g_test_add_func ("/layers-shape/rescaling", test_rescaling);
  g_test_add_func ("/layers-shape/layer-norm", test_layer_norm);
  g_test_add_func ("/layers-shape/normalization", test_normalization);
  g_test_add_func ("/layers-shape/reshape", test_reshape);
  g_test_add_func ("/layers-shape/multiply", test_multiply);
  g_test_add_func ("/layers-shape/dropout-masks", test_dropout_masks);
  g_test_add_func ("/layers-shape/depthwise", test_depthwise);
  g_test_add_func ("/layers-shape/global-max-pool", test_global_max_pool);
  g_test_add_func ("/layers-shape/merges", test_merges);
  return g_test_run ();
}
