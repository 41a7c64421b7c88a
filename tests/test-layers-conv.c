/* Conv2D and pooling layers against the plain-C reference and finite differences. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-layer-check.h"
#include "kilt-model.h"

#include "test-layer-cases.h"
#include "kilt-gemm-tf32.h"
#include "kilt-error.h"

#include <math.h>

typedef struct
{
  guint c, h, w; /* input */
  guint filters;
  guint kh, kw, sh, sw;
  gboolean same, bias;
  KiltActivation act;
  guint batch;
} ConvCase;

static KiltLayerCheck
conv_check (const char *label, const ConvCase *cc)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = KILT_LAYER_CONV2D;
  c.cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.cfg.units = cc->filters;
  c.cfg.kh = cc->kh;
  c.cfg.kw = cc->kw;
  c.cfg.sh = cc->sh;
  c.cfg.sw = cc->sw;
  c.cfg.same = cc->same;
  c.cfg.use_bias = cc->bias;
  c.cfg.activation = cc->act;
  c.cfg.alpha = 0.2f;
  c.n_inputs = 1;
  c.in[0] = (KiltShape){ cc->c, cc->h, cc->w };
  c.batch = cc->batch;
  c.training = TRUE;
  c.seed = 23;
  return c;
}

static void
conv_case (const char *label, ConvCase cc)
{
  KiltLayerCheck c = conv_check (label, &cc);

  kilt_test_layer_case (&c);
}

static void
test_conv_shapes (void)
{
  /*                                     c  h  w  F kh kw sh sw same  bias   act          batch */
  conv_case ("conv 3x3 same relu",
             (ConvCase){ 3, 7, 9, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 });
  conv_case ("conv 3x3 valid tanh",
             (ConvCase){ 2, 6, 5, 3, 3, 3, 1, 1, FALSE, TRUE, KILT_ACT_TANH, 2 });
  conv_case ("conv 1x1 no bias",
             (ConvCase){ 3, 5, 5, 2, 1, 1, 1, 1, FALSE, FALSE, KILT_ACT_LINEAR, 3 });
  conv_case ("conv 5x5 same stride 2 cin 1",
             (ConvCase){ 1, 9, 8, 3, 5, 5, 2, 2, TRUE, TRUE, KILT_ACT_LINEAR, 3 });
  conv_case ("conv 2x3 valid stride 2",
             (ConvCase){ 3, 7, 8, 2, 2, 3, 2, 2, FALSE, TRUE, KILT_ACT_RELU, 3 });
  conv_case ("conv 2x3 same tanh",
             (ConvCase){ 2, 6, 7, 3, 2, 3, 1, 1, TRUE, FALSE, KILT_ACT_TANH, 3 });
  conv_case ("conv 3x3 same on 1x1",
             (ConvCase){ 3, 1, 1, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_LINEAR, 3 });
  conv_case ("conv 3x3 valid to 1x1",
             (ConvCase){ 2, 3, 3, 5, 3, 3, 1, 1, FALSE, TRUE, KILT_ACT_TANH, 3 });
  conv_case ("conv 3x3 same stride 2 odd",
             (ConvCase){ 3, 7, 7, 2, 3, 3, 2, 2, TRUE, TRUE, KILT_ACT_SIGMOID, 2 });
  conv_case ("conv 1x1 stride 3 skips pixels",
             (ConvCase){ 2, 5, 5, 3, 1, 1, 3, 3, FALSE, TRUE, KILT_ACT_LINEAR, 3 });
  /* ResNet-50's projection shortcuts: 1x1, stride 2, with a bias (Keras' default). */
  conv_case ("conv 1x1 stride 2 bias",
             (ConvCase){ 4, 6, 7, 5, 1, 1, 2, 2, FALSE, TRUE, KILT_ACT_LINEAR, 2 });
  conv_case ("conv 3x2 strides 1x2 leaky",
             (ConvCase){ 1, 5, 6, 3, 3, 2, 1, 2, TRUE, TRUE, KILT_ACT_LEAKY_RELU, 3 });
  conv_case ("conv 8x12x12 to 16",
             (ConvCase){ 8, 12, 12, 16, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 2 });
}

/* Batches split into chunks (the last one short) and the weight gradient split in parts
 * (with a remainder), both forced through the environment knobs the layer honours. */
static void
test_conv_chunks (void)
{
  ConvCase cc = { 3, 6, 7, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 5 };

  g_setenv ("KILT_CONV_CHUNK", "2", TRUE);
  conv_case ("conv chunks of 2 of 5", cc);
  g_setenv ("KILT_CONV_SPLIT", "3", TRUE);
  conv_case ("conv chunks and split-K 3", cc);
  g_unsetenv ("KILT_CONV_CHUNK");
  cc.same = FALSE;
  conv_case ("conv split-K 3 whole batch", cc);
  g_setenv ("KILT_CONV_SPLIT", "16", TRUE);
  cc.kh = cc.kw = 1;
  cc.bias = FALSE;
  conv_case ("conv split-K 16 of 1x1", cc);
  /* A weight gradient above the 2^16 floats that once kept a layer from splitting at all
   * (VGG16's from block 2 on): 520 x 16 x 3 x 3. */
  g_setenv ("KILT_CONV_SPLIT", "3", TRUE);
  conv_case ("conv split-K 3 of 520 x 144",
             (ConvCase){ 16, 5, 4, 520, 3, 3, 1, 1, TRUE, FALSE, KILT_ACT_LINEAR, 2 });
  g_unsetenv ("KILT_CONV_SPLIT");
  /* ... and its workspace has room for the parts (it had room for one). */
  {
    KiltContext *ctx = kilt_test_context ();
    g_autoptr (KiltModel) m = kilt_model_new ("wide");
    g_autoptr (GError) error = NULL;
    KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
    KiltNode *conv;
    gsize fk = 520 * 16 * 3 * 3;

    if (!ctx)
      return;
    cfg.units = 520;
    cfg.kh = cfg.kw = 3;
    cfg.use_bias = FALSE;
    kilt_model_add_input (m, NULL, (KiltShape){ 16, 5, 4 });
    kilt_model_append (m, KILT_LAYER_CONV2D, &cfg);
    g_assert_true (kilt_model_build (m, &error));
    conv = kilt_model_node (m, 1);
    g_assert_cmpuint (conv->klass->workspace_floats (conv, 2, ctx->info), >=, 3 * fk);
  }
}

/* The kernels a device of the other kind gets: per-element im2col/col2im/scatter/gather and
 * CLBlast's GEMM where the tests run on a CPU (PoCL), per-row kernels and Kilt's GEMM where
 * they run on a GPU. */
static void
test_conv_other_kernels (void)
{
  KiltContext *ctx = kilt_test_context ();
  gboolean cpu = ctx && g_str_equal (ctx->info->type, "CPU");

  if (!ctx)
    return;
  g_setenv ("KILT_CONV_IM2COL", cpu ? "items" : "rows", TRUE);
  g_setenv ("KILT_GEMM", cpu ? "clblast" : "kilt", TRUE);
  conv_case ("conv 3x3 same relu, other kernels",
             (ConvCase){ 3, 7, 9, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 });
  conv_case ("conv 5x5 same stride 2, other kernels",
             (ConvCase){ 1, 9, 8, 3, 5, 5, 2, 2, TRUE, TRUE, KILT_ACT_LINEAR, 3 });
  conv_case ("conv 3x2 strides 1x2 leaky, other kernels",
             (ConvCase){ 1, 5, 6, 3, 3, 2, 1, 2, TRUE, TRUE, KILT_ACT_LEAKY_RELU, 3 });
  conv_case ("conv 2x3 valid stride 2 tanh, other kernels",
             (ConvCase){ 3, 7, 8, 2, 2, 3, 2, 2, FALSE, FALSE, KILT_ACT_TANH, 2 });
  g_unsetenv ("KILT_CONV_IM2COL");
  g_unsetenv ("KILT_GEMM");
}

/* A direct-convolution case whose input gradient is added to what is there (a tensor read by
 * two layers). */
static void
conv_case_adds (const char *label, ConvCase cc)
{
  KiltLayerCheck c = conv_check (label, &cc);

  c.accumulate = TRUE;
  kilt_test_layer_case (&c);
}

/* The direct convolution CPU devices run at stride 1 (kernels/conv-cpu.cl), forward and, from
 * 8 input channels, backward (the output gradient convolved with the flipped weights, the
 * weight gradient reduced over padded dz and x): output rows across several 16-wide tiles with
 * a short last one, filter and channel counts off the 4- and 8-row tiles, kernels of 1 to 4
 * columns (the weight gradient takes 3 taps at a time), Keras' uneven 'same' padding, the
 * activations it applies itself and through kilt_act (and their derivatives as it pads the
 * gradient), chunks of samples, an input gradient added to what is there, fewer channels
 * (backward by im2col); and the im2col paths it replaces, forced. */
static void
test_conv_direct (void)
{
  conv_case ("conv 3x3 same relu, 3 tiles a row",
             (ConvCase){ 9, 5, 37, 11, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 2 });
  conv_case ("conv 2x4 same tanh (uneven padding)",
             (ConvCase){ 10, 6, 17, 9, 2, 4, 1, 1, TRUE, TRUE, KILT_ACT_TANH, 2 });
  conv_case ("conv 3x2 valid linear, 16 filters",
             (ConvCase){ 8, 7, 16, 16, 3, 2, 1, 1, FALSE, FALSE, KILT_ACT_LINEAR, 3 });
  conv_case ("conv 1x1 sigmoid, 5 filters",
             (ConvCase){ 12, 3, 20, 5, 1, 1, 1, 1, FALSE, TRUE, KILT_ACT_SIGMOID, 2 });
  conv_case ("conv 3x3 same relu, 3 channels: backward by im2col",
             (ConvCase){ 3, 5, 37, 11, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 2 });
  g_setenv ("KILT_CONV_CHUNK", "2", TRUE);
  conv_case ("conv 3x3 valid relu, chunks of 2 of 5",
             (ConvCase){ 8, 8, 19, 7, 3, 3, 1, 1, FALSE, TRUE, KILT_ACT_RELU, 5 });
  conv_case_adds ("conv 2x4 same leaky adds, chunks of 2 of 5",
                  (ConvCase){ 13, 6, 18, 6, 2, 4, 1, 1, TRUE, TRUE, KILT_ACT_LEAKY_RELU, 5 });
  g_unsetenv ("KILT_CONV_CHUNK");
  conv_case_adds ("conv 3x3 same relu adds, 3 tiles a row",
                  (ConvCase){ 9, 5, 37, 7, 3, 3, 1, 1, TRUE, FALSE, KILT_ACT_RELU, 2 });
  conv_case_adds ("conv 3x1 valid linear adds",
                  (ConvCase){ 11, 6, 17, 10, 3, 1, 1, 1, FALSE, TRUE, KILT_ACT_LINEAR, 3 });
  g_setenv ("KILT_CONV_DIRECT", "0", TRUE);
  conv_case ("conv 3x3 same relu, im2col forced",
             (ConvCase){ 9, 5, 37, 11, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 2 });
  g_setenv ("KILT_CONV_DIRECT", "forward", TRUE);
  conv_case_adds ("conv 3x3 same relu adds, backward by im2col forced",
                  (ConvCase){ 9, 5, 37, 7, 3, 3, 1, 1, TRUE, FALSE, KILT_ACT_RELU, 2 });
  g_unsetenv ("KILT_CONV_DIRECT");
  /* The narrow tiles (4 filters) of devices without AVX-512, in a context of their own. */
  kilt_test_context_close ();
  g_setenv ("KILT_GEMM_TILES", "narrow", TRUE);
  conv_case ("conv 3x3 same relu, narrow tiles",
             (ConvCase){ 9, 5, 37, 11, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 2 });
  kilt_test_context_close ();
  g_unsetenv ("KILT_GEMM_TILES");
}

/* Conv2D with dilation_rate and groups (the im2col path with a GEMM per group), against the
 * reference and finite differences: each alone and together, same and valid padding, with and
 * without bias, in chunks, adding to the input gradient, both kinds of im2col/col2im kernels,
 * and with the implicit GEMM asked for (which knows neither, so im2col runs). */
static void
dilated_case (const char *label, ConvCase cc, guint dil_h, guint dil_w, guint groups,
              gboolean accumulate)
{
  KiltLayerCheck c = conv_check (label, &cc);

  c.cfg.dil_h = dil_h;
  c.cfg.dil_w = dil_w;
  c.cfg.groups = groups;
  c.accumulate = accumulate;
  kilt_test_layer_case (&c);
}

static void
dilated_cases (const char *suffix)
{
  /*                                                  c  h  w  F kh kw sh sw same  bias */
  g_autofree char *l1 = g_strconcat ("conv 3x3 same dilation 2", suffix, NULL);
  g_autofree char *l2 = g_strconcat ("conv 3x2 valid dilation (3, 2)", suffix, NULL);
  g_autofree char *l3 = g_strconcat ("conv 3x3 same groups 2", suffix, NULL);
  g_autofree char *l4 = g_strconcat ("conv 2x2 valid stride 2 groups 3 no bias", suffix, NULL);
  g_autofree char *l5 = g_strconcat ("conv 3x3 same dilation 2 groups 4, adds", suffix, NULL);
  g_autofree char *l6 = g_strconcat ("conv groups = channels (depthwise-like)", suffix, NULL);

  dilated_case (l1, (ConvCase){ 3, 8, 9, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 }, 2, 2, 0,
                FALSE);
  dilated_case (l2, (ConvCase){ 2, 9, 7, 3, 3, 2, 1, 1, FALSE, TRUE, KILT_ACT_TANH, 2 }, 3, 2, 0,
                FALSE);
  dilated_case (l3, (ConvCase){ 4, 6, 7, 6, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_LINEAR, 3 }, 0, 0, 2,
                FALSE);
  dilated_case (l4, (ConvCase){ 6, 7, 8, 3, 2, 2, 2, 2, FALSE, FALSE, KILT_ACT_SIGMOID, 2 }, 0, 0,
                3, FALSE);
  dilated_case (l5, (ConvCase){ 8, 7, 6, 8, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_TANH, 3 }, 2, 2, 4,
                TRUE);
  dilated_case (l6, (ConvCase){ 3, 5, 5, 6, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_LINEAR, 2 }, 0, 0, 3,
                FALSE);
}

static void
test_conv_dilation_groups (void)
{
  KiltContext *ctx = kilt_test_context ();
  gboolean cpu = ctx && g_str_equal (ctx->info->type, "CPU");

  if (!ctx)
    return;
  dilated_cases ("");
  g_setenv ("KILT_CONV_IM2COL", cpu ? "items" : "rows", TRUE);
  dilated_cases (", other kernels");
  g_unsetenv ("KILT_CONV_IM2COL");
  g_setenv ("KILT_CONV_CHUNK", "2", TRUE);
  g_setenv ("KILT_CONV_IGEMM", "1", TRUE);
  dilated_cases (", chunks of 2, implicit GEMM asked for");
  g_unsetenv ("KILT_CONV_IGEMM");
  g_unsetenv ("KILT_CONV_CHUNK");
}

/* Parameters, output shape and FLOPs of a grouped, dilated Conv2D as Keras counts them, and
 * the errors for groups that do not divide and for strides with dilation. */
static void
test_conv_dilation_groups_infer (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
  g_autoptr (GError) error = NULL;
  KiltNode node = { 0 };

  cfg.units = 8;
  cfg.groups = 4;
  cfg.dil_h = 2;
  cfg.dil_w = 3;
  node.name = "g";
  node.type = KILT_LAYER_CONV2D;
  node.klass = &kilt_conv2d_class;
  node.cfg = cfg;
  node.in_shape[0] = (KiltShape){ 12, 10, 11 };
  g_assert_true (kilt_conv2d_class.infer (&node, &error));
  g_assert_no_error (error);
  /* Keras: (3 * 3 * 12 / 4) * 8 + 8; valid output 10 - 4, 11 - 6. */
  g_assert_cmpuint (node.n_params, ==, 3 * 3 * 3 * 8 + 8);
  g_assert_cmpuint (node.out_shape.c, ==, 8);
  g_assert_cmpuint (node.out_shape.h, ==, 6);
  g_assert_cmpuint (node.out_shape.w, ==, 5);
  g_assert_cmpuint (kilt_conv2d_class.flops (&node), ==, 2ull * 27 * 8 * 30);
  node.cfg.same = TRUE;
  g_assert_true (kilt_conv2d_class.infer (&node, &error));
  g_assert_cmpuint (node.out_shape.h, ==, 10);
  g_assert_cmpuint (node.out_shape.w, ==, 11);
  node.cfg.groups = 5;
  g_assert_false (kilt_conv2d_class.infer (&node, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "groups = 5 must divide"));
  g_clear_error (&error);
  node.cfg.groups = 4;
  node.cfg.sh = 2;
  g_assert_false (kilt_conv2d_class.infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "strides 2x1 with dilation_rate 2x3"));
  g_clear_error (&error);
  node.cfg.sh = 1;
  node.cfg.same = FALSE;
  node.in_shape[0] = (KiltShape){ 12, 4, 11 };
  g_assert_false (kilt_conv2d_class.infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "dilation 2x3"));
}

/* Conv2DTranspose against the reference and finite differences: strides below, at and above
 * the kernel size, same and valid, with and without bias, fused activations, chunks of the
 * batch, an accumulated input gradient, and both kinds of im2col/col2im kernels. */
static void
transpose_case (const char *label, ConvCase cc, gboolean accumulate)
{
  KiltLayerCheck c = conv_check (label, &cc);

  c.type = KILT_LAYER_CONV2D_TRANSPOSE;
  c.accumulate = accumulate;
  kilt_test_layer_case (&c);
}

static void
transpose_cases (const char *suffix)
{
  /*                                               c  h  w  F kh kw sh sw same  bias */
  static const struct
  {
    const char *label;
    ConvCase cc;
    gboolean acc;
  } cases[] = {
    { "convT 3x3 same", { 3, 5, 6, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 }, FALSE },
    { "convT 3x3 same stride 2",
      { 2, 4, 5, 3, 3, 3, 2, 2, TRUE, TRUE, KILT_ACT_LINEAR, 3 },
      FALSE },
    { "convT 3x3 valid stride 2",
      { 2, 4, 3, 3, 3, 3, 2, 2, FALSE, TRUE, KILT_ACT_TANH, 2 },
      FALSE },
    { "convT 2x2 valid stride 2 no bias",
      { 3, 3, 4, 2, 2, 2, 2, 2, FALSE, FALSE, KILT_ACT_LINEAR, 3 },
      FALSE },
    { "convT 1x2 valid stride 3 (gaps)",
      { 2, 3, 3, 3, 1, 2, 3, 3, FALSE, TRUE, KILT_ACT_SIGMOID, 2 },
      FALSE },
    { "convT 4x3 same strides 2x1, adds",
      { 3, 4, 5, 2, 4, 3, 2, 1, TRUE, TRUE, KILT_ACT_LEAKY_RELU, 3 },
      TRUE },
    { "convT 5x5 same stride 3",
      { 1, 3, 2, 3, 5, 5, 3, 3, TRUE, TRUE, KILT_ACT_LINEAR, 2 },
      FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *label = g_strconcat (cases[i].label, suffix, NULL);
      transpose_case (label, cases[i].cc, cases[i].acc);
    }
}

static void
test_conv_transpose (void)
{
  KiltContext *ctx = kilt_test_context ();
  gboolean cpu = ctx && g_str_equal (ctx->info->type, "CPU");

  if (!ctx)
    return;
  transpose_cases ("");
  g_setenv ("KILT_CONV_IM2COL", cpu ? "items" : "rows", TRUE);
  g_setenv ("KILT_GEMM", cpu ? "clblast" : "kilt", TRUE);
  transpose_cases (", other kernels");
  g_unsetenv ("KILT_GEMM");
  g_unsetenv ("KILT_CONV_IM2COL");
  g_setenv ("KILT_CONV_CHUNK", "2", TRUE);
  transpose_cases (", chunks of 2");
  g_unsetenv ("KILT_CONV_CHUNK");
}

/* Output sizes as Keras' deconv_output_length gives them (same: in * s; valid:
 * in * s + max (k - s, 0)), parameters (kh kw F Cin + F), and the errors. */
static void
test_conv_transpose_infer (void)
{
  static const struct
  {
    guint in, k, s;
    gboolean same;
    guint out;
  } dims[] = {
    { 5, 3, 1, TRUE, 5 },  { 5, 3, 2, TRUE, 10 }, { 5, 3, 2, FALSE, 11 }, { 4, 2, 2, FALSE, 8 },
    { 3, 1, 3, FALSE, 9 }, { 3, 5, 1, FALSE, 7 }, { 1, 4, 3, TRUE, 3 },
  };
  g_autoptr (GError) error = NULL;
  KiltNode node = { 0 };

  node.name = "up";
  node.type = KILT_LAYER_CONV2D_TRANSPOSE;
  node.klass = &kilt_conv2d_transpose_class;
  for (guint i = 0; i < G_N_ELEMENTS (dims); i++)
    {
      node.cfg = kilt_layer_config_default (KILT_LAYER_CONV2D_TRANSPOSE);
      node.cfg.units = 4;
      node.cfg.kh = dims[i].k;
      node.cfg.kw = 1;
      node.cfg.sh = dims[i].s;
      node.cfg.same = dims[i].same;
      node.in_shape[0] = (KiltShape){ 3, dims[i].in, 2 };
      g_assert_true (kilt_conv2d_transpose_class.infer (&node, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (node.out_shape.c, ==, 4);
      g_assert_cmpuint (node.out_shape.h, ==, dims[i].out);
      g_assert_cmpuint (node.out_shape.w, ==, 2);
      g_assert_cmpuint (node.n_params, ==, dims[i].k * 1 * 4 * 3 + 4);
    }
  node.cfg.units = 0;
  g_assert_false (kilt_conv2d_transpose_class.infer (&node, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "layer up (Conv2DTranspose): filters"));
  g_clear_error (&error);
  node.cfg.units = 2;
  node.cfg.activation = KILT_ACT_SOFTMAX;
  g_assert_false (kilt_conv2d_transpose_class.infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "activation softmax"));
}

/* The implicit-GEMM kernels (kernels/igemm.cl), forced on, on shapes that reach both tile shapes
 * (up to 32 rows, more), partial tiles in every dimension, several tap tiles, uneven taps (flipped
 * for the data gradient), strides (the data gradient then takes im2col), chunks, uneven parts of
 * the weight gradient and an accumulated input gradient. */
static void
test_conv_implicit_gemm (void)
{
  ConvCase acc = { 3, 7, 6, 5, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_TANH, 3 };
  KiltLayerCheck c = conv_check ("conv adds to the input gradient, implicit GEMM", &acc);

  g_setenv ("KILT_CONV_IGEMM", "1", TRUE);
  /*                                     c  h  w  F kh kw sh sw same  bias   act          batch */
  conv_case ("igemm 3x3 same relu",
             (ConvCase){ 3, 7, 9, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 });
  conv_case ("igemm 40 filters over 8 channels",
             (ConvCase){ 8, 12, 12, 40, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 });
  conv_case ("igemm 40 channels to 6",
             (ConvCase){ 40, 6, 5, 6, 3, 3, 1, 1, FALSE, TRUE, KILT_ACT_LINEAR, 2 });
  conv_case ("igemm 2x3 valid tanh",
             (ConvCase){ 2, 6, 7, 3, 2, 3, 1, 1, FALSE, TRUE, KILT_ACT_TANH, 3 });
  conv_case ("igemm 3x2 same, no bias",
             (ConvCase){ 3, 5, 6, 3, 3, 2, 1, 1, TRUE, FALSE, KILT_ACT_LEAKY_RELU, 2 });
  conv_case ("igemm 5x5 same stride 2",
             (ConvCase){ 1, 9, 8, 3, 5, 5, 2, 2, TRUE, TRUE, KILT_ACT_SIGMOID, 3 });
  conv_case ("igemm 1x1", (ConvCase){ 5, 4, 4, 3, 1, 1, 1, 1, FALSE, FALSE, KILT_ACT_LINEAR, 3 });
  c.accumulate = TRUE;
  kilt_test_layer_case (&c);
  g_setenv ("KILT_CONV_CHUNK", "2", TRUE);
  c.label = "conv adds to the input gradient, implicit GEMM in chunks of 2";
  kilt_test_layer_case (&c);
  /* Parts of the weight gradient's inner dimension: 84 columns a chunk in 5 parts of 17, the
   * last one 16. */
  g_setenv ("KILT_CONV_SPLIT", "5", TRUE);
  c.label = "conv adds to the input gradient, implicit GEMM in chunks and parts";
  kilt_test_layer_case (&c);
  g_unsetenv ("KILT_CONV_SPLIT");
  g_unsetenv ("KILT_CONV_CHUNK");
  g_unsetenv ("KILT_CONV_IGEMM");
}

/* Whether an injected launch failure is still pending (it did not fire): kilt_fault_hit ()
 * counts it down to TRUE only then. Clears it either way. */
static gboolean
fault_pending (void)
{
  gboolean pending = FALSE;

  for (guint i = 0; i < 1000 && !pending; i++)
    pending = kilt_fault_hit (KILT_FAULT_ENQUEUE);
  kilt_fault_set (KILT_FAULT_ENQUEUE, 0);
  return pending;
}

/* While a layer times its two algorithms, an implicit-GEMM launch that fails makes it keep
 * im2col and go on, with right results; a failing im2col launch, or any launch after the
 * choice, fails the step with a message naming the kernel. Every launch of one checked step is
 * failed in turn, until the injected failure no longer fires. */
/* The implicit-GEMM convolution on tensor cores (KILT_TF32_CONV=1: kilt_conv_igemm_tf32, each mma
 * emulated from the lanes' fragments), each of its tiles forced, on TF32 values, where its products
 * are exact: the FP32 tolerances hold, so a misplaced tap, column or fragment shows. Shapes reach
 * partial tiles of rows and columns, several slices of taps, flipped taps (the data gradient),
 * strides, an accumulated input gradient, a batch whose columns cross samples inside a chunk of
 * four, and the weight gradient (kilt_conv_igemm_wgrad_tf32) over uneven parts of a chunk's
 * columns. */
static void
test_conv_implicit_gemm_tf32 (void)
{
  static const char *const tiles[] = { "32", "64", "128" };
  static const struct
  {
    const char *label;
    ConvCase cc;
    gboolean adds;
  } cases[] = {
    /*                    c  h   w   F kh kw sh sw same  bias   act            batch */
    { "3x3 same relu", { 3, 7, 9, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 }, FALSE },
    { "40 filters over 8 channels",
      { 8, 12, 11, 40, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 },
      FALSE },
    { "40 channels to 6, adds",
      { 40, 6, 5, 6, 3, 3, 1, 1, FALSE, TRUE, KILT_ACT_LINEAR, 2 },
      TRUE },
    { "130 filters, 5x5 stride 2",
      { 3, 9, 8, 130, 5, 5, 2, 2, TRUE, FALSE, KILT_ACT_LINEAR, 2 },
      FALSE },
    { "1x1 no bias", { 5, 4, 4, 3, 1, 1, 1, 1, FALSE, FALSE, KILT_ACT_RELU, 3 }, FALSE },
  };
  KiltContext *ctx = kilt_test_context ();

  if (!ctx)
    return;
  g_setenv ("KILT_TF32_EMULATE", "1", TRUE);
  g_setenv ("KILT_TF32_CONV", "1", TRUE);
  g_setenv ("KILT_CONV_IGEMM", "1", TRUE);
  /* Every case on the middle tile, the ones that reach partial tiles on the other two. */
  for (guint t = 0; t < G_N_ELEMENTS (tiles); t++)
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      if (t == 1 || i == 1 || i == 3)
        {
          g_autofree char *label
              = g_strdup_printf ("tf32 igemm, tiles of %s: %s", tiles[t], cases[i].label);
          KiltLayerCheck c = conv_check (label, &cases[i].cc);

          g_setenv ("KILT_TF32_CONV_TILE", tiles[t], TRUE);
          c.tf32_values = TRUE;
          c.accumulate = cases[i].adds;
          kilt_test_layer_case (&c);
        }
  /* The weight gradient's uneven parts (5 of a chunk of 2 samples' columns). */
  {
    KiltLayerCheck c = conv_check ("tf32 igemm, chunks of 2 in 5 parts", &cases[1].cc);

    g_setenv ("KILT_CONV_CHUNK", "2", TRUE);
    g_setenv ("KILT_CONV_SPLIT", "5", TRUE);
    c.tf32_values = TRUE;
    c.at_tf32 = TRUE;
    kilt_test_layer_case (&c);
    g_unsetenv ("KILT_CONV_SPLIT");
    g_unsetenv ("KILT_CONV_CHUNK");
  }
  /* A build the driver refuses (the big tile's tuning options asking for slices of 8) fails
   * the layer with the build's reason, and the context is back at fp32. */
  {
    KiltLayerCheck c = conv_check ("tf32 igemm that does not build", &cases[3].cc);
    KiltLayerCheckResult r;
    g_autoptr (GError) error = NULL;

    g_setenv ("KILT_TF32_CONV_TILE", "128", TRUE);
    g_setenv ("KILT_TF32_OPTIONS", "-DTF_BK=8", TRUE);
    kilt_context_free_tf32 (ctx);
    c.tf32_values = TRUE;
    c.at_tf32 = TRUE;
    g_assert_false (kilt_layer_check_run (ctx, &c, &r, &error));
    g_assert_nonnull (error);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "TF32 tensor-core convolution"));
    g_assert_nonnull (strstr (error->message, "train in fp32"));
    g_assert_nonnull (strstr (error->message, "stages slices of 16"));
    g_assert_nonnull (strstr (error->message, "-DTF_BK=8"));
    g_unsetenv ("KILT_TF32_OPTIONS");
    kilt_context_free_tf32 (ctx);
  }
  /* Each check put the context back as it was. */
  g_assert_cmpint (ctx->precision, ==, KILT_PRECISION_FP32);
  g_unsetenv ("KILT_TF32_CONV_TILE");
  g_unsetenv ("KILT_TF32_CONV");
  g_unsetenv ("KILT_CONV_IGEMM");
  g_unsetenv ("KILT_TF32_EMULATE");
}

static void
test_conv_igemm_fallback (void)
{
  KiltContext *ctx = kilt_test_context ();
  ConvCase cc = { 3, 6, 7, 4, 3, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 2 };
  KiltLayerCheck c = conv_check ("conv timed, a launch failing", &cc);
  guint absorbed = 0, failed = 0, nth;

  if (!ctx || !ctx->igemm)
    {
      g_test_skip ("the device has no implicit-GEMM kernels");
      return;
    }
  g_setenv ("KILT_CONV_IGEMM", "measure", TRUE);
  for (nth = 1; nth < 200; nth++)
    {
      KiltLayerCheckResult r;
      g_autoptr (GError) error = NULL;
      gboolean ok;

      kilt_fault_set (KILT_FAULT_ENQUEUE, nth);
      ok = kilt_layer_check_run (ctx, &c, &r, &error);
      if (fault_pending ())
        {
          g_assert_true (ok);
          break;
        }
      if (ok)
        {
          absorbed++;
          g_assert_cmpfloat (r.forward, <=, KILT_TEST_TOL_FORWARD);
          g_assert_cmpfloat (r.backward_input, <=, KILT_TEST_TOL_BACKWARD);
          g_assert_cmpfloat (r.backward_param, <=, KILT_TEST_TOL_BACKWARD);
        }
      else
        {
          failed++;
          g_assert_nonnull (error);
          g_assert_nonnull (strstr (error->message, "injected fault"));
          /* It names what failed: the kernel, or the GEMM with its shape. */
          g_assert_true (strstr (error->message, "kernel kilt_")
                         || g_str_has_prefix (error->message, "GEMM "));
        }
    }
  g_unsetenv ("KILT_CONV_IGEMM");
  g_test_message ("%u launches: %u failures absorbed by the timing, %u failed the step", nth - 1,
                  absorbed, failed);
  g_assert_cmpuint (nth, <, 200);
  /* Forward and weight gradient each time the implicit kernels four times; their failures are
   * absorbed. */
  g_assert_cmpuint (absorbed, >=, 2);
  g_assert_cmpuint (failed, >, 0);
}

static void
test_conv_accumulate (void)
{
  ConvCase cc = { 2, 5, 6, 3, 3, 3, 2, 1, TRUE, TRUE, KILT_ACT_TANH, 3 };
  KiltLayerCheck c = conv_check ("conv adds to the input gradient", &cc);

  c.accumulate = TRUE;
  kilt_test_layer_case (&c);
  g_setenv ("KILT_CONV_CHUNK", "1", TRUE);
  c.label = "conv adds to the input gradient, per sample";
  kilt_test_layer_case (&c);
  g_unsetenv ("KILT_CONV_CHUNK");
}

/* Output shapes, parameter counts and FLOPs as Keras computes them, and refusals. */
static void
test_conv_infer (void)
{
  struct
  {
    guint h, w, kh, kw, sh, sw;
    gboolean same;
    guint oh, ow;
  } t[] = {
    { 32, 32, 3, 3, 1, 1, TRUE, 32, 32 }, { 32, 32, 3, 3, 1, 1, FALSE, 30, 30 },
    { 7, 8, 3, 3, 2, 2, TRUE, 4, 4 },     { 7, 8, 3, 3, 2, 2, FALSE, 3, 3 },
    { 5, 5, 1, 1, 3, 3, FALSE, 2, 2 },    { 1, 1, 5, 5, 1, 1, TRUE, 1, 1 },
    { 6, 9, 2, 4, 1, 3, TRUE, 6, 3 },     { 6, 9, 2, 4, 1, 3, FALSE, 5, 2 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    {
      KiltNode node = { 0 };
      g_autoptr (GError) error = NULL;

      node.name = (char *)"conv";
      node.klass = &kilt_conv2d_class;
      node.cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
      node.cfg.units = 5;
      node.cfg.kh = t[i].kh;
      node.cfg.kw = t[i].kw;
      node.cfg.sh = t[i].sh;
      node.cfg.sw = t[i].sw;
      node.cfg.same = t[i].same;
      node.in_shape[0] = (KiltShape){ 3, t[i].h, t[i].w };
      g_assert_true (kilt_conv2d_class.infer (&node, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (node.out_shape.c, ==, 5);
      g_assert_cmpuint (node.out_shape.h, ==, t[i].oh);
      g_assert_cmpuint (node.out_shape.w, ==, t[i].ow);
      g_assert_cmpuint (node.n_params, ==, 5 * 3 * t[i].kh * t[i].kw + 5);
      g_assert_cmpuint (kilt_conv2d_class.flops (&node), ==,
                        2ull * 3 * t[i].kh * t[i].kw * 5 * t[i].oh * t[i].ow);
    }

  {
    KiltNode node = { 0 };
    g_autoptr (GError) error = NULL;

    node.name = (char *)"conv_small";
    node.klass = &kilt_conv2d_class;
    node.cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
    node.cfg.units = 4;
    node.in_shape[0] = (KiltShape){ 3, 2, 8 };
    g_assert_false (kilt_conv2d_class.infer (&node, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
    g_assert_nonnull (strstr (error->message, "conv_small"));
    g_clear_error (&error);
    node.cfg.same = TRUE;
    node.cfg.activation = KILT_ACT_SOFTMAX;
    g_assert_false (kilt_conv2d_class.infer (&node, &error));
    g_assert_nonnull (strstr (error->message, "softmax"));
    g_clear_error (&error);
    node.cfg.activation = KILT_ACT_RELU;
    node.cfg.sh = 0;
    g_assert_false (kilt_conv2d_class.infer (&node, &error));
  }
}

/* cifar10_cnn's first layers at a small batch: the weights' initial scale follows Keras'
 * Glorot fans (fan_in = cin * kh * kw, fan_out = filters * kh * kw). */
static void
test_conv_init (void)
{
  KiltNode node = { 0 };
  KiltRng rng;
  g_autofree float *w = NULL;
  double limit = sqrt (6.0 / (3 * 9 + 32 * 9)), maxabs = 0;

  node.name = (char *)"conv";
  node.klass = &kilt_conv2d_class;
  node.cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
  node.cfg.units = 32;
  node.cfg.same = TRUE;
  node.in_shape[0] = (KiltShape){ 3, 32, 32 };
  g_assert_true (kilt_conv2d_class.infer (&node, NULL));
  g_assert_cmpuint (node.n_params, ==, 896);
  w = g_new (float, node.n_params);
  for (gsize i = 0; i < node.n_params; i++)
    w[i] = 99.0f;
  kilt_rng_init (&rng, 5);
  kilt_conv2d_class.init (&node, w, NULL, &rng);
  for (gsize i = 0; i < 864; i++)
    maxabs = MAX (maxabs, fabs (w[i]));
  g_assert_cmpfloat (maxabs, <=, limit);
  g_assert_cmpfloat (maxabs, >, 0.9 * limit);
  for (gsize i = 864; i < 896; i++)
    g_assert_cmpfloat (w[i], ==, 0.0f);
}

static void
pool_case (const char *label, KiltLayerType type, KiltShape in, guint kh, guint kw, guint sh,
           guint sw, gboolean same, guint batch, gboolean accumulate)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = kilt_layer_config_default (type);
  c.cfg.kh = kh;
  c.cfg.kw = kw;
  c.cfg.sh = sh;
  c.cfg.sw = sw;
  c.cfg.same = same;
  c.n_inputs = 1;
  c.in[0] = in;
  c.batch = batch;
  c.training = TRUE;
  c.seed = 31;
  c.accumulate = accumulate;
  kilt_test_layer_case (&c);
}

/* The 1-D layers Keras import maps onto the 2-D ones: a sequence (steps, channels) is
 * (channels, 1, steps), Conv1D a (1, k) Conv2D (dilated, strided, grouped), the 1-D poolings
 * (1, k) windows, the global ones the 2-D global poolings over a single row. */
static void
test_one_dimensional (void)
{
  KiltShape seq = { 4, 1, 13 };

  /*                                                       c  h  w  F kh kw sh sw same  bias */
  dilated_case ("conv1d k3 same",
                (ConvCase){ 4, 1, 13, 3, 1, 3, 1, 1, TRUE, TRUE, KILT_ACT_RELU, 3 }, 0, 0, 0,
                FALSE);
  dilated_case ("conv1d k4 valid dilation 3 (after a causal pad)",
                (ConvCase){ 4, 1, 22, 3, 1, 4, 1, 1, FALSE, TRUE, KILT_ACT_LINEAR, 3 }, 0, 3, 0,
                FALSE);
  dilated_case ("conv1d k3 same stride 2 groups 2",
                (ConvCase){ 4, 1, 13, 6, 1, 3, 1, 2, TRUE, FALSE, KILT_ACT_TANH, 2 }, 0, 0, 2,
                TRUE);
  pool_case ("max1d 3 stride 2 same", KILT_LAYER_MAX_POOL2D, seq, 1, 3, 1, 2, TRUE, 3, FALSE);
  pool_case ("max1d 2", KILT_LAYER_MAX_POOL2D, seq, 1, 2, 0, 0, FALSE, 3, FALSE);
  pool_case ("avg1d 3 stride 1 same", KILT_LAYER_AVG_POOL2D, seq, 1, 3, 1, 1, TRUE, 3, TRUE);
  pool_case ("avg1d 2", KILT_LAYER_AVG_POOL2D, seq, 1, 2, 0, 0, FALSE, 2, FALSE);
  pool_case ("global max1d", KILT_LAYER_GLOBAL_MAX_POOL2D, seq, 1, 1, 0, 0, FALSE, 3, FALSE);
  pool_case ("global avg1d", KILT_LAYER_GLOBAL_AVG_POOL2D, seq, 1, 1, 0, 0, FALSE, 3, FALSE);
}

static void
test_max_pool (void)
{
  KiltLayerType t = KILT_LAYER_MAX_POOL2D;

  pool_case ("max 2x2", t, (KiltShape){ 2, 6, 6 }, 2, 2, 0, 0, FALSE, 3, FALSE);
  pool_case ("max 2x2 odd drops the edge", t, (KiltShape){ 3, 7, 5 }, 2, 2, 0, 0, FALSE, 3, FALSE);
  pool_case ("max 3x3 stride 1", t, (KiltShape){ 2, 5, 7 }, 3, 3, 1, 1, FALSE, 2, FALSE);
  pool_case ("max 3x3 stride 2 same", t, (KiltShape){ 2, 7, 8 }, 3, 3, 2, 2, TRUE, 3, FALSE);
  /* ResNet-50's pool1: valid 3x3 windows at stride 2 (they overlap) after a ZeroPadding2D. */
  pool_case ("max 3x3 stride 2 valid", t, (KiltShape){ 2, 10, 11 }, 3, 3, 2, 2, FALSE, 2, FALSE);
  pool_case ("max 2x2 same odd", t, (KiltShape){ 1, 5, 5 }, 2, 2, 0, 0, TRUE, 3, FALSE);
  pool_case ("max 2x3 strides 1x2 same", t, (KiltShape){ 2, 4, 7 }, 2, 3, 1, 2, TRUE, 2, FALSE);
  pool_case ("max 2x2 on 1x1 same", t, (KiltShape){ 3, 1, 1 }, 2, 2, 0, 0, TRUE, 3, FALSE);
  pool_case ("max 3x3 stride 1 adds", t, (KiltShape){ 2, 5, 6 }, 3, 3, 1, 1, TRUE, 3, TRUE);
  /* Windows that tile the plane take their own backward kernel: with pixels past the last
   * window, with accumulation, and with 3 x 3 tiles over a 7 x 8 plane. */
  pool_case ("max 2x2 odd adds", t, (KiltShape){ 2, 7, 5 }, 2, 2, 0, 0, FALSE, 3, TRUE);
  pool_case ("max 3x3 tiles odd", t, (KiltShape){ 2, 7, 8 }, 3, 3, 0, 0, FALSE, 2, FALSE);
  pool_case ("max 3x3 tiles same", t, (KiltShape){ 1, 8, 8 }, 3, 3, 0, 0, TRUE, 2, TRUE);
  /* The same tiling cases through the kernels the other kind of device gets: a row of windows
   * per work-item (CPUs) or a window per work-item (GPUs). */
  for (guint v = 0; v < 2; v++)
    {
      g_setenv ("KILT_POOL_KERNELS", v ? "rows" : "items", TRUE);
      pool_case ("max 2x2, forced", t, (KiltShape){ 2, 6, 6 }, 2, 2, 0, 0, FALSE, 3, FALSE);
      pool_case ("max 2x2 odd adds, forced", t, (KiltShape){ 2, 7, 5 }, 2, 2, 0, 0, FALSE, 3, TRUE);
      pool_case ("max 3x3 tiles same, forced", t, (KiltShape){ 1, 8, 8 }, 3, 3, 0, 0, TRUE, 2,
                 TRUE);
      pool_case ("max 2x2 same odd, forced", t, (KiltShape){ 3, 5, 7 }, 2, 2, 0, 0, TRUE, 3, FALSE);
    }
  g_unsetenv ("KILT_POOL_KERNELS");
}

static void
test_avg_pool (void)
{
  KiltLayerType t = KILT_LAYER_AVG_POOL2D;

  pool_case ("avg 2x2", t, (KiltShape){ 2, 6, 7 }, 2, 2, 0, 0, FALSE, 3, FALSE);
  pool_case ("avg 3x3 stride 1 same", t, (KiltShape){ 2, 5, 6 }, 3, 3, 1, 1, TRUE, 3, FALSE);
  pool_case ("avg 3x3 stride 2 valid", t, (KiltShape){ 1, 7, 9 }, 3, 3, 2, 2, FALSE, 3, FALSE);
  pool_case ("avg 2x3 strides 1x2 same", t, (KiltShape){ 3, 5, 7 }, 2, 3, 1, 2, TRUE, 2, FALSE);
  pool_case ("avg 2x2 same odd adds", t, (KiltShape){ 2, 5, 3 }, 2, 2, 0, 0, TRUE, 3, TRUE);
}

static void
test_global_avg_pool (void)
{
  KiltLayerType t = KILT_LAYER_GLOBAL_AVG_POOL2D;

  pool_case ("global avg", t, (KiltShape){ 3, 5, 7 }, 0, 0, 0, 0, FALSE, 3, FALSE);
  pool_case ("global avg 1x1", t, (KiltShape){ 4, 1, 1 }, 0, 0, 0, 0, FALSE, 2, FALSE);
  pool_case ("global avg 20x20", t, (KiltShape){ 2, 20, 20 }, 0, 0, 0, 0, FALSE, 3, FALSE);
  pool_case ("global avg adds", t, (KiltShape){ 2, 3, 4 }, 0, 0, 0, 0, FALSE, 3, TRUE);
}

/* Keras' pooling output shapes (strides 0 default to the window), and refusals. */
static void
test_pool_infer (void)
{
  struct
  {
    guint h, w, kh, kw, sh, sw;
    gboolean same;
    guint oh, ow;
  } t[] = {
    { 30, 30, 2, 2, 0, 0, FALSE, 15, 15 }, { 13, 13, 2, 2, 0, 0, FALSE, 6, 6 },
    { 13, 13, 2, 2, 0, 0, TRUE, 7, 7 },    { 5, 7, 3, 3, 1, 1, FALSE, 3, 5 },
    { 5, 7, 3, 3, 1, 1, TRUE, 5, 7 },      { 8, 9, 3, 2, 2, 3, FALSE, 3, 3 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (t); i++)
    {
      KiltNode node = { 0 };

      node.name = (char *)"pool";
      node.klass = &kilt_max_pool2d_class;
      node.cfg = kilt_layer_config_default (KILT_LAYER_MAX_POOL2D);
      node.cfg.kh = t[i].kh;
      node.cfg.kw = t[i].kw;
      node.cfg.sh = t[i].sh;
      node.cfg.sw = t[i].sw;
      node.cfg.same = t[i].same;
      node.in_shape[0] = (KiltShape){ 4, t[i].h, t[i].w };
      g_assert_true (kilt_max_pool2d_class.infer (&node, NULL));
      g_assert_cmpuint (node.out_shape.c, ==, 4);
      g_assert_cmpuint (node.out_shape.h, ==, t[i].oh);
      g_assert_cmpuint (node.out_shape.w, ==, t[i].ow);
      g_assert_cmpuint (node.n_params, ==, 0);
      g_assert_cmpuint (kilt_max_pool2d_class.saved_floats (&node, 3), ==,
                        3 * 4 * t[i].oh * t[i].ow);
    }

  {
    KiltNode node = { 0 };
    g_autoptr (GError) error = NULL;

    node.name = (char *)"pool_small";
    node.klass = &kilt_avg_pool2d_class;
    node.cfg = kilt_layer_config_default (KILT_LAYER_AVG_POOL2D);
    node.cfg.kh = node.cfg.kw = 3;
    node.in_shape[0] = (KiltShape){ 2, 2, 5 };
    g_assert_false (kilt_avg_pool2d_class.infer (&node, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
    g_assert_nonnull (strstr (error->message, "pool_small"));
    node.cfg.same = TRUE;
    g_assert_true (kilt_avg_pool2d_class.infer (&node, NULL));
    g_assert_cmpuint (node.out_shape.h, ==, 1);
    g_assert_cmpuint (node.out_shape.w, ==, 2);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_unsetenv ("KILT_CONV_CHUNK");
  g_unsetenv ("KILT_CONV_SPLIT");
  g_test_add_func ("/layers/conv2d/infer", test_conv_infer);
  g_test_add_func ("/layers/conv2d/init", test_conv_init);
  g_test_add_func ("/layers/conv2d/shapes", test_conv_shapes);
  g_test_add_func ("/layers/conv2d/chunks", test_conv_chunks);
  g_test_add_func ("/layers/conv2d/accumulate", test_conv_accumulate);
  g_test_add_func ("/layers/conv2d/other-kernels", test_conv_other_kernels);
  g_test_add_func ("/layers/conv2d/direct", test_conv_direct);
  g_test_add_func ("/layers/conv2d/dilation-groups", test_conv_dilation_groups);
  g_test_add_func ("/layers/conv2d/dilation-groups-infer", test_conv_dilation_groups_infer);
  g_test_add_func ("/layers/one-dimensional", test_one_dimensional);
  g_test_add_func ("/layers/conv2d-transpose/shapes", test_conv_transpose);
  g_test_add_func ("/layers/conv2d-transpose/infer", test_conv_transpose_infer);
  g_test_add_func ("/layers/conv2d/implicit-gemm", test_conv_implicit_gemm);
  g_test_add_func ("/layers/conv2d/implicit-gemm-fallback", test_conv_igemm_fallback);
  g_test_add_func ("/layers/conv2d/implicit-gemm-tf32", test_conv_implicit_gemm_tf32);
  g_test_add_func ("/layers/pool/infer", test_pool_infer);
  g_test_add_func ("/layers/pool/max", test_max_pool);
  g_test_add_func ("/layers/pool/avg", test_avg_pool);
  g_test_add_func ("/layers/pool/global-avg", test_global_avg_pool);
  return g_test_run ();
}
