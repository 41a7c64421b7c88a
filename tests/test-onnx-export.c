/* ONNX export checked by another tool: every preset, Keras fixtures and models that hold every
 * layer type and activation, exported with random weights, run by onnxruntime (from PyPI,
 * installed by installer/deps.sh --test) on fixed random inputs against Kilt's own forward
 * pass on the test device; and kilt-cli export --format onnx end to end. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-keras.h"
#include "kilt-model-json.h"
#include "kilt-ids.h"
#include "kilt-onnx-export.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

/* Largest |onnxruntime - Kilt| over largest |Kilt|, per model: float32 on both sides. */
#define TOLERANCE "1e-4"
#define BATCH     3

/* The Python that has onnxruntime: $KILT_TEST_PYTHON, else the venv installer/deps.sh --test
 * makes ($KILT_TEST_VENV, default ~/.cache/kilt/test-venv). */
static char *
test_python (void)
{
  const char *py = g_getenv ("KILT_TEST_PYTHON"), *venv = g_getenv ("KILT_TEST_VENV");

  if (py && *py)
    return g_strdup (py);
  if (venv && *venv)
    return g_build_filename (venv, "bin", "python3", NULL);
  return g_build_filename (g_get_home_dir (), ".cache", "kilt", "test-venv", "bin", "python3",
                           NULL);
}

static char *
checker_script (void)
{
  return g_build_filename (KILT_SOURCE_DIR, "tests", "onnx-check.py", NULL);
}

/* Runs tests/onnx-check.py ARGS...; returns its exit status and its output in @out. */
static int
run_checker (const char *const *args, char **out)
{
  g_autofree char *py = test_python (), *script = checker_script ();
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *err = NULL;
  int status = -1;

  g_ptr_array_add (argv, py);
  g_ptr_array_add (argv, script);
  for (const char *const *a = args; *a; a++)
    g_ptr_array_add (argv, (gpointer)*a);
  g_ptr_array_add (argv, NULL);
  if (!g_spawn_sync (NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, &err,
                     &status, &error))
    {
      *out = g_strdup_printf ("cannot run %s (%s): run installer/deps.sh --test, which makes a "
                              "venv with onnxruntime and numpy there, or set KILT_TEST_PYTHON",
                              py, error->message);
      return -1;
    }
  {
    char *both = g_strconcat (*out, err, NULL);
    g_free (*out);
    *out = both;
  }
  return g_spawn_check_wait_status (status, NULL)
             ? 0
             : (WIFEXITED (status) ? WEXITSTATUS (status) : -1);
}

/* Weights that are not Kilt's initial ones (zero biases, unit gammas would hide a bias or
 * gamma put in the wrong place): each weight moved by up to 20% and 0.02, moving means of up
 * to 0.1 and variances from 0.5 to 1.5, so that outputs stay in range through VGG16. */
static void
random_weights (KiltModel *model, guint32 seed, float *params, float *state)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);

  kilt_model_init_params (model, seed, params, state);
  for (gsize i = 0; i < model->n_params; i++)
    params[i] = params[i] * (float)g_rand_double_range (rand, 0.8, 1.2)
                + (float)g_rand_double_range (rand, -0.02, 0.02);
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *n = kilt_model_node (model, i);
      float *s = state + n->state_offset;
      guint c = n->in_shape[0].c;
      if (n->type != KILT_LAYER_BATCH_NORM && n->type != KILT_LAYER_NORMALIZATION)
        continue;
      if (n->n_state < 2 * (gsize)c)
        continue;
      for (guint ch = 0; ch < c; ch++)
        {
          s[ch] = (float)g_rand_double_range (rand, -0.1, 0.1);
          s[c + ch] = (float)g_rand_double_range (rand, 0.5, 1.5);
        }
    }
}

/* Kilt's forward in inference mode on the test device: BATCH x output floats. */
static float *
kilt_forward (KiltModel *model, const float *params, const float *state, const float *x)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;
  gsize in_size = kilt_shape_size (&kilt_model_node (model, 0)->out_shape);
  gsize out_size = kilt_shape_size (&kilt_model_output (model)->out_shape);
  float *y = g_new (float, BATCH *out_size);
  KiltExecutor *exec;
  cl_int err;

  g_assert_nonnull (ctx);
  exec = kilt_executor_new (ctx, model, BATCH, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (kilt_executor_upload (exec, params, state, &error));
  err = clEnqueueWriteBuffer (ctx->queue, kilt_executor_input (exec), CL_TRUE, 0,
                              sizeof (float) * BATCH * in_size, x, 0, NULL, NULL);
  g_assert_cmpint (err, ==, CL_SUCCESS);
  g_assert_true (kilt_executor_forward (exec, FALSE, &error));
  g_assert_no_error (error);
  err = clEnqueueReadBuffer (ctx->queue, kilt_model_output (model)->out, CL_TRUE, 0,
                             sizeof (float) * BATCH * out_size, y, 0, NULL, NULL);
  g_assert_cmpint (err, ==, CL_SUCCESS);
  kilt_executor_free (exec);
  return y;
}

static void
write_floats (const char *path, const float *v, gsize n)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (path, (const char *)v, (gssize)(n * sizeof (float)), &error));
  g_assert_no_error (error);
}

/* Exports @model with random weights, runs it in Kilt and in onnxruntime on the same inputs,
 * and fails the test when they differ by more than TOLERANCE (relative). */
static void
check_model (KiltModel *model, guint32 seed)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *onnx = g_build_filename (dir, "model.onnx", NULL);
  g_autofree char *xin = g_build_filename (dir, "input.f32", NULL);
  g_autofree char *yout = g_build_filename (dir, "expected.f32", NULL);
  g_autofree float *params = g_new0 (float, MAX (model->n_params, 1));
  g_autofree float *state = g_new0 (float, MAX (model->n_state, 1));
  gsize in_size = kilt_shape_size (&kilt_model_node (model, 0)->out_shape);
  gsize out_size = kilt_shape_size (&kilt_model_output (model)->out_shape);
  g_autofree float *x = g_new (float, BATCH *in_size);
  g_autofree float *y = NULL;
  g_autofree char *out = NULL, *batch = g_strdup_printf ("%d", BATCH);
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed + 1);
  g_autoptr (GError) error = NULL;
  KiltOnnxExportInfo info = { 0 };
  int rc;

  if (!kilt_test_context ())
    return;
  random_weights (model, seed, params, state);
  for (gsize i = 0; i < BATCH * in_size; i++)
    {
      KiltNode *ids = kilt_ids_reader (model);
      if (ids)
        {
          /* Ids, repeating; some past the table on either side, some with a fraction. */
          gint32 rows = (gint32)ids->cfg.input_dim, id = g_rand_int_range (rand, 0, rows);
          switch (g_rand_int_range (rand, 0, 8))
            {
              case 0:
                x[i] = (float)(-1 - id);
                break;
              case 1:
                x[i] = (float)(rows + id);
                break;
              case 2:
                x[i] = (float)id + 0.75f;
                break;
              case 3:
                x[i] = -0.5f;
                break;
              default:
                x[i] = (float)id;
            }
        }
      else
        x[i] = (float)g_rand_double_range (rand, -1.5, 1.5);
    }
  g_assert_true (kilt_onnx_export (model, params, state, onnx, &info, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (info.n_nodes, >, 0);
  g_assert_true (g_file_test (onnx, G_FILE_TEST_IS_REGULAR));
  y = kilt_forward (model, params, state, x);
  write_floats (xin, x, BATCH * in_size);
  write_floats (yout, y, BATCH * out_size);
  {
    const char *args[] = { "compare", onnx, xin, yout, batch, TOLERANCE, NULL };
    rc = run_checker (args, &out);
  }
  g_test_message ("%s: %u operators, %u initializers, %zu bytes: %s", model->name, info.n_nodes,
                  info.n_initializers, info.bytes, g_strstrip (out));
  if (rc != 0)
    g_test_fail_printf ("%s: onnxruntime disagrees with Kilt or could not run (exit %d): %s",
                        model->name, rc, out);
}

/* ---- the models ---------------------------------------------------------------------------- */

static void
test_presets (void)
{
  g_auto (GStrv) names = kilt_model_preset_list ();
  /* Small inputs keep VGG16 and ResNet-20 to a second on two cores. */
  KiltShape image = { 3, 32, 32 };
  guint n = 0;

  g_assert_nonnull (names);
  for (char **p = names; *p; p++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) model = kilt_model_load_preset (*p, &image, 10, &error);
      g_assert_no_error (error);
      check_model (model, 1000 + n++);
    }
  g_assert_cmpuint (n, >=, 7);
}

static void
test_keras (void)
{
  static const char *const fixtures[] = {
    "keras3-activations", "keras2-activations", "keras3-blocks",   "keras3-merges",
    "keras3-padding",     "keras3-separable",   "keras3-residual", "keras3-app-mobilenetv2",
    "keras3-sequence",    "keras2-sequence",
  };

  for (guint i = 0; i < G_N_ELEMENTS (fixtures); i++)
    {
      g_autofree char *name = g_strconcat (fixtures[i], ".json", NULL);
      g_autofree char *path
          = g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", name, NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) model
          = kilt_keras_load_file (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
      g_assert_no_error (error);
      kilt_model_build (model, &error);
      g_assert_no_error (error);
      check_model (model, 2000 + i);
    }
}

/* Embedding through Gather: ids (with ones past the table and fractions, which Kilt reads as
 * zeros or truncates) looked up, flattened in Kilt's order and through a Conv1D-like Conv2D
 * and a softmax head. */
static void
test_embedding (void)
{
  g_autoptr (KiltModel) flat = kilt_model_new ("embedding-flat");
  g_autoptr (KiltModel) conv = kilt_model_new ("embedding-conv");
  g_autoptr (GError) error = NULL;
  KiltLayerConfig e = kilt_layer_config_default (KILT_LAYER_EMBEDDING);
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  KiltLayerConfig d = kilt_layer_config_default (KILT_LAYER_DENSE);

  e.input_dim = 30;
  e.units = 4;
  kilt_model_add_input (flat, "ids", (KiltShape){ 9, 1, 1 });
  kilt_model_append (flat, KILT_LAYER_EMBEDDING, &e);
  kilt_model_append (flat, KILT_LAYER_FLATTEN, NULL);
  g_assert_true (kilt_model_build (flat, &error));
  g_assert_no_error (error);
  check_model (flat, 3100);

  kilt_model_add_input (conv, "ids", (KiltShape){ 9, 1, 1 });
  kilt_model_append (conv, KILT_LAYER_EMBEDDING, &e);
  c.units = 5;
  c.kh = 1;
  c.kw = 3;
  c.activation = KILT_ACT_RELU;
  kilt_model_append (conv, KILT_LAYER_CONV2D, &c);
  kilt_model_append (conv, KILT_LAYER_FLATTEN, NULL);
  d.units = 3;
  d.activation = KILT_ACT_SOFTMAX;
  kilt_model_append (conv, KILT_LAYER_DENSE, &d);
  g_assert_true (kilt_model_build (conv, &error));
  g_assert_no_error (error);
  check_model (conv, 3200);
}

static guint
add_act (KiltModel *m, guint from, KiltActivation act)
{
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_ACTIVATION);

  c.activation = act;
  return kilt_model_add (m, KILT_LAYER_ACTIVATION, NULL, &c, 1, &from);
}

/* Every element-wise activation as a layer (ReLU with its options too) side by side, the
 * output their values themselves (no softmax to squash a wrong one; softmax is the presets'
 * and the fixtures' last layer). */
static void
test_activations (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("every-activation");
  g_autoptr (GError) error = NULL;
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  guint x, branches[KILT_ACT_N_TYPES + 4], n = 0, groups[KILT_MAX_INPUTS], n_groups = 0;

  x = kilt_model_add_input (m, "image", (KiltShape){ 2, 5, 5 });
  c.units = 4;
  x = kilt_model_add (m, KILT_LAYER_CONV2D, "conv", &c, 1, &x);
  for (guint a = 0; a < KILT_ACT_N_TYPES; a++)
    if (a != KILT_ACT_LINEAR && a != KILT_ACT_SOFTMAX) /* Kilt's softmax takes flat inputs */
      branches[n++] = add_act (m, x, (KiltActivation)a);
  {
    /* Keras' ReLU options: a cap, a threshold and a slope below it. */
    KiltLayerConfig r = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
    r.activation = KILT_ACT_RELU;
    r.max_value = 0.8f;
    r.threshold = 0.1f;
    r.negative_slope = 0.25f;
    branches[n++] = kilt_model_add (m, KILT_LAYER_ACTIVATION, "relu_options", &r, 1, &x);
    r.threshold = -0.3f;
    r.negative_slope = 0.0f;
    r.max_value = INFINITY;
    branches[n++] = kilt_model_add (m, KILT_LAYER_ACTIVATION, "relu_threshold", &r, 1, &x);
    r = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
    r.activation = KILT_ACT_ELU;
    r.alpha = 0.7f;
    branches[n++] = kilt_model_add (m, KILT_LAYER_ACTIVATION, "elu_alpha", &r, 1, &x);
    r.activation = KILT_ACT_LEAKY_RELU;
    r.alpha = 0.05f;
    branches[n++] = kilt_model_add (m, KILT_LAYER_ACTIVATION, "leaky_alpha", &r, 1, &x);
  }
  /* Concatenate takes at most KILT_MAX_INPUTS inputs: in groups, then the groups. */
  for (guint i = 0; i < n; i += KILT_MAX_INPUTS)
    {
      guint k = MIN (KILT_MAX_INPUTS, n - i);
      KiltLayerConfig cc = kilt_layer_config_default (KILT_LAYER_CONCATENATE);
      groups[n_groups++]
          = k == 1 ? branches[i]
                   : kilt_model_add (m, KILT_LAYER_CONCATENATE, NULL, &cc, k, branches + i);
    }
  {
    KiltLayerConfig cc = kilt_layer_config_default (KILT_LAYER_CONCATENATE);
    x = kilt_model_add (m, KILT_LAYER_CONCATENATE, "all", &cc, n_groups, groups);
  }
  m->loss = KILT_LOSS_MSE;
  kilt_model_build (m, &error);
  g_assert_no_error (error);
  check_model (m, 3000);
}

/* Conv2D, Dense and DepthwiseConv2D applying their own activations. */
static void
test_fused (void)
{
  static const KiltActivation acts[]
      = { KILT_ACT_RELU, KILT_ACT_LEAKY_RELU, KILT_ACT_SIGMOID, KILT_ACT_TANH };
  g_autoptr (KiltModel) m = kilt_model_new ("fused-activations");
  g_autoptr (GError) error = NULL;
  guint x = kilt_model_add_input (m, "image", (KiltShape){ 3, 7, 6 });

  for (guint i = 0; i < G_N_ELEMENTS (acts); i++)
    {
      KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_CONV2D);
      KiltLayerConfig d = kilt_layer_config_default (KILT_LAYER_DEPTHWISE_CONV2D);
      c.units = 4;
      c.activation = acts[i];
      c.alpha = 0.15f;
      c.same = TRUE;
      c.use_bias = i % 2 == 0;
      x = kilt_model_add (m, KILT_LAYER_CONV2D, NULL, &c, 1, &x);
      d.activation = acts[(i + 1) % G_N_ELEMENTS (acts)];
      d.same = TRUE;
      x = kilt_model_add (m, KILT_LAYER_DEPTHWISE_CONV2D, NULL, &d, 1, &x);
    }
  x = kilt_model_append (m, KILT_LAYER_FLATTEN, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (acts); i++)
    {
      KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_DENSE);
      c.units = 6;
      c.activation = acts[i];
      c.alpha = 0.2f;
      c.use_bias = i % 2 == 1;
      kilt_model_append (m, KILT_LAYER_DENSE, &c);
    }
  m->loss = KILT_LOSS_MSE;
  kilt_model_build (m, &error);
  g_assert_no_error (error);
  check_model (m, 3100);
}

/* The geometry that is easy to get wrong: Keras' "same" with strides where the padding is
 * uneven (more after than before), grouped and dilated convolutions, transposed ones, average
 * pooling that leaves the padding out, dilated depthwise convolutions with a depth multiplier,
 * uneven zero padding and cropping, upsampling, layer normalisation of planes and of vectors,
 * batch normalisation without gamma or beta, Normalization with constants, merges with a
 * (C, 1, 1) broadcast, global max pooling. */
static void
test_geometry (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("geometry");
  g_autoptr (GError) error = NULL;
  KiltLayerConfig c;
  guint x, a, b, se, ins[3];

  x = kilt_model_add_input (m, "image", (KiltShape){ 3, 8, 10 });
  c = kilt_layer_config_default (KILT_LAYER_NORMALIZATION);
  c.norm_n = 3;
  for (guint i = 0; i < 3; i++)
    {
      c.norm_mean[i] = 0.1f * (float)i - 0.05f;
      c.norm_var[i] = 0.5f + 0.4f * (float)i;
    }
  x = kilt_model_add (m, KILT_LAYER_NORMALIZATION, "norm_const", &c, 1, &x);
  c = kilt_layer_config_default (KILT_LAYER_RESCALING);
  c.scale = 1.5f;
  c.offset = -0.25f;
  x = kilt_model_add (m, KILT_LAYER_RESCALING, NULL, &c, 1, &x);
  c = kilt_layer_config_default (KILT_LAYER_ZERO_PADDING2D);
  c.pad[0] = 1, c.pad[1] = 2, c.pad[2] = 0, c.pad[3] = 3;
  x = kilt_model_add (m, KILT_LAYER_ZERO_PADDING2D, NULL, &c, 1, &x); /* 11 x 13 */
  c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.units = 6;
  c.sh = c.sw = 2;
  c.same = TRUE;
  a = kilt_model_add (m, KILT_LAYER_CONV2D, "conv_s2", &c, 1, &x); /* 6 x 7 */
  c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.units = 9;
  c.groups = 3;
  c.dil_h = 2;
  c.dil_w = 3;
  c.same = TRUE;
  a = kilt_model_add (m, KILT_LAYER_CONV2D, "conv_grouped_dilated", &c, 1, &a);
  c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.units = 6;
  c.kh = 1;
  c.kw = 2;
  a = kilt_model_add (m, KILT_LAYER_CONV2D, "conv_1x2", &c, 1, &a); /* 6 x 6 */
  c = kilt_layer_config_default (KILT_LAYER_DEPTHWISE_CONV2D);
  c.units = 2;
  c.dil_h = 2;
  c.dil_w = 2;
  c.same = TRUE;
  a = kilt_model_add (m, KILT_LAYER_DEPTHWISE_CONV2D, "dw_dilated", &c, 1, &a); /* 12 ch */
  c = kilt_layer_config_default (KILT_LAYER_BATCH_NORM);
  c.bn_no_scale = TRUE;
  a = kilt_model_add (m, KILT_LAYER_BATCH_NORM, "bn_no_scale", &c, 1, &a);
  c = kilt_layer_config_default (KILT_LAYER_BATCH_NORM);
  c.bn_no_center = TRUE;
  a = kilt_model_add (m, KILT_LAYER_BATCH_NORM, "bn_no_center", &c, 1, &a);
  c = kilt_layer_config_default (KILT_LAYER_MAX_POOL2D);
  c.kh = c.kw = 3;
  c.sh = c.sw = 2;
  c.same = TRUE;
  b = kilt_model_add (m, KILT_LAYER_MAX_POOL2D, "max_same", &c, 1, &a); /* 3 x 3 */
  c = kilt_layer_config_default (KILT_LAYER_AVG_POOL2D);
  c.kh = c.kw = 3;
  c.sh = c.sw = 2;
  c.same = TRUE;
  a = kilt_model_add (m, KILT_LAYER_AVG_POOL2D, "avg_same", &c, 1, &a); /* 3 x 3 */
  c = kilt_layer_config_default (KILT_LAYER_SUBTRACT);
  ins[0] = a, ins[1] = b;
  a = kilt_model_add (m, KILT_LAYER_SUBTRACT, NULL, &c, 2, ins);
  c = kilt_layer_config_default (KILT_LAYER_LAYER_NORM);
  c.epsilon = 1e-3f;
  a = kilt_model_add (m, KILT_LAYER_LAYER_NORM, "ln_planes", &c, 1, &a);
  /* Squeeze and excitation: a (C, 1, 1) scale over the planes. */
  c = kilt_layer_config_default (KILT_LAYER_GLOBAL_AVG_POOL2D);
  se = kilt_model_add (m, KILT_LAYER_GLOBAL_AVG_POOL2D, NULL, &c, 1, &a);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = 12;
  c.activation = KILT_ACT_SIGMOID;
  se = kilt_model_add (m, KILT_LAYER_DENSE, NULL, &c, 1, &se);
  c = kilt_layer_config_default (KILT_LAYER_RESHAPE);
  c.target = (KiltShape){ 12, 1, 1 };
  se = kilt_model_add (m, KILT_LAYER_RESHAPE, NULL, &c, 1, &se);
  c = kilt_layer_config_default (KILT_LAYER_MULTIPLY);
  ins[0] = a, ins[1] = se;
  a = kilt_model_add (m, KILT_LAYER_MULTIPLY, "se_scale", &c, 2, ins);
  c = kilt_layer_config_default (KILT_LAYER_UPSAMPLING2D);
  c.kh = 2, c.kw = 3;
  a = kilt_model_add (m, KILT_LAYER_UPSAMPLING2D, NULL, &c, 1, &a); /* 6 x 9 */
  /* Transposed convolutions: "same" with a kernel over the stride (pads), and "valid" with
   * one under it (output_padding). */
  c = kilt_layer_config_default (KILT_LAYER_CONV2D_TRANSPOSE);
  c.units = 5;
  c.kh = 3, c.kw = 4;
  c.sh = c.sw = 2;
  c.same = TRUE;
  c.activation = KILT_ACT_TANH;
  c.use_bias = FALSE;
  a = kilt_model_add (m, KILT_LAYER_CONV2D_TRANSPOSE, "deconv_same", &c, 1, &a); /* 12 x 18 */
  c = kilt_layer_config_default (KILT_LAYER_CONV2D_TRANSPOSE);
  c.units = 4;
  c.kh = 1, c.kw = 2;
  c.sh = 2, c.sw = 3;
  a = kilt_model_add (m, KILT_LAYER_CONV2D_TRANSPOSE, "deconv_valid", &c, 1, &a); /* 24 x 54 */
  /* Cropping keeps the last row and column, which only output_padding gives (bias there). */
  c = kilt_layer_config_default (KILT_LAYER_CROPPING2D);
  c.pad[0] = 1, c.pad[1] = 0, c.pad[2] = 2, c.pad[3] = 0;
  a = kilt_model_add (m, KILT_LAYER_CROPPING2D, NULL, &c, 1, &a); /* 23 x 52 */
  c = kilt_layer_config_default (KILT_LAYER_GLOBAL_MAX_POOL2D);
  b = kilt_model_add (m, KILT_LAYER_GLOBAL_MAX_POOL2D, NULL, &c, 1, &a);
  c = kilt_layer_config_default (KILT_LAYER_GLOBAL_AVG_POOL2D);
  a = kilt_model_add (m, KILT_LAYER_GLOBAL_AVG_POOL2D, NULL, &c, 1, &a);
  c = kilt_layer_config_default (KILT_LAYER_MAXIMUM);
  ins[0] = a, ins[1] = b;
  x = kilt_model_add (m, KILT_LAYER_MAXIMUM, NULL, &c, 2, ins);
  c = kilt_layer_config_default (KILT_LAYER_MINIMUM);
  se = kilt_model_add (m, KILT_LAYER_MINIMUM, NULL, &c, 2, ins);
  c = kilt_layer_config_default (KILT_LAYER_AVERAGE);
  ins[1] = x, ins[2] = se;
  x = kilt_model_add (m, KILT_LAYER_AVERAGE, NULL, &c, 3, ins);
  c = kilt_layer_config_default (KILT_LAYER_LAYER_NORM);
  c.epsilon = 1e-3f;
  c.bn_no_center = TRUE;
  x = kilt_model_add (m, KILT_LAYER_LAYER_NORM, "ln_vector", &c, 1, &x);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = 5;
  c.activation = KILT_ACT_SOFTMAX;
  kilt_model_add (m, KILT_LAYER_DENSE, NULL, &c, 1, &x);
  kilt_model_build (m, &error);
  g_assert_no_error (error);
  check_model (m, 3200);
}

/* kilt-cli export --format onnx from a Keras 3 file with Keras' trained weights: onnxruntime
 * on the exported file against Keras' own predictions (its .predict.json in tests/data/keras,
 * channels-last inputs), and the format following the extension. */
/* Sequences: a vector read as a sequence of one feature, a one-row convolution along the
 * steps, then LSTM and GRU returning every step (both going backwards, the GRU with its
 * outputs in the input's order, Keras 2's hard sigmoid gates and resetting before its matmul)
 * and an LSTM's last. */
static void
test_sequences (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("sequences");
  g_autoptr (GError) error = NULL;
  KiltLayerConfig c;
  guint x;

  x = kilt_model_add_input (m, "signal", (KiltShape){ 12, 1, 1 });
  c = kilt_layer_config_default (KILT_LAYER_RESHAPE);
  c.target = (KiltShape){ 1, 1, 12 };
  x = kilt_model_add (m, KILT_LAYER_RESHAPE, "steps", &c, 1, &x);
  c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.units = 4;
  c.kh = 1;
  c.kw = 3;
  x = kilt_model_add (m, KILT_LAYER_CONV2D, "conv1d", &c, 1, &x); /* 10 steps */
  c = kilt_layer_config_default (KILT_LAYER_LSTM);
  c.units = 5;
  c.return_sequences = TRUE;
  c.go_backwards = TRUE;
  x = kilt_model_add (m, KILT_LAYER_LSTM, "lstm_back", &c, 1, &x);
  c = kilt_layer_config_default (KILT_LAYER_GRU);
  c.units = 3;
  c.return_sequences = TRUE;
  c.reset_after = FALSE;
  c.recurrent_activation = KILT_ACT_HARD_SIGMOID_K2;
  c.go_backwards = TRUE;
  c.keep_time_order = TRUE; /* a Bidirectional's backward half */
  x = kilt_model_add (m, KILT_LAYER_GRU, "gru_before", &c, 1, &x);
  c = kilt_layer_config_default (KILT_LAYER_LSTM);
  c.units = 4;
  c.recurrent_activation = KILT_ACT_HARD_SIGMOID_K2;
  x = kilt_model_add (m, KILT_LAYER_LSTM, "lstm_last", &c, 1, &x);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  check_model (m, 3300);
}

static void
test_cli (void)
{
  const char *cli = g_getenv ("KILT_CLI");
  g_autofree char *dir = kilt_test_tmpdir ();
  static const char *const stems[]
      = { "weights-keras3-cnn",        "weights-keras3-conv_groups",
          "weights-keras3-bn_options", "weights-keras3-conv_transpose",
          "weights-keras3-conv1d",     "weights-keras3-lstm",
          "weights-keras3-gru",        "weights-keras3-gru_reset_before",
          "weights-keras3-rnn_stack",  "weights-keras3-bidirectional" };
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *model = g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras",
                                             "weights-keras3-cnn.keras", NULL);
  g_autoptr (GError) error = NULL;
  int status = 0;

  if (cli == NULL)
    {
      g_test_skip ("KILT_CLI is not set");
      return;
    }
  for (guint i = 0; i < G_N_ELEMENTS (stems); i++)
    {
      g_autofree char *keras = g_strconcat (stems[i], ".keras", NULL);
      g_autofree char *pred = g_strconcat (stems[i], ".predict.json", NULL);
      g_autofree char *onnx_name = g_strconcat (stems[i], ".onnx", NULL);
      g_autofree char *path
          = g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", keras, NULL);
      g_autofree char *predict
          = g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", pred, NULL);
      g_autofree char *onnx = g_build_filename (dir, onnx_name, NULL);
      g_autofree char *check = NULL;
      /* The format follows the extension for the first, --format says it for the others. */
      const char *argv[]
          = { cli, "export", "--model", path, "-o", onnx, i ? "--format" : NULL, "onnx", NULL };
      int rc;

      g_clear_pointer (&out, g_free);
      g_clear_pointer (&err, g_free);
      g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                   &err, &status, &error));
      g_assert_no_error (error);
      g_test_message ("kilt-cli export: %s%s", out, err);
      g_assert_true (g_spawn_check_wait_status (status, NULL));
      g_assert_nonnull (strstr (out, "ONNX opset 17"));
      {
        const char *args[] = { "keras", onnx, predict, TOLERANCE, NULL };
        rc = run_checker (args, &check);
      }
      g_test_message ("%s against Keras: %s", stems[i], g_strstrip (check));
      if (rc != 0)
        g_test_fail_printf ("onnxruntime on kilt-cli's export of %s disagrees with Keras (exit "
                            "%d): %s",
                            stems[i], rc, check);
    }
  /* An unknown format is refused by name, and nothing is written. */
  {
    g_autofree char *bad = g_build_filename (dir, "bad.onnx", NULL);
    const char *argv[] = { cli, "export", "--model", model, "--format", "tflite", "-o", bad, NULL };
    g_clear_pointer (&out, g_free);
    g_clear_pointer (&err, g_free);
    g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                                 &status, &error));
    g_assert_false (g_spawn_check_wait_status (status, NULL));
    g_assert_nonnull (strstr (err, "unknown export format \"tflite\""));
    g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
  }
}

/* Bad calls: an unbuilt model and an unwritable path are errors naming them, leaving no file. */
static void
test_errors (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("tiny");
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "no", "such", "folder", "m.onnx", NULL);
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_DENSE);
  float params[3 * 2 + 2] = { 0 };

  kilt_model_add_input (m, "in", (KiltShape){ 3, 1, 1 });
  c.units = 2;
  kilt_model_append (m, KILT_LAYER_DENSE, &c);
  g_assert_false (kilt_onnx_export (m, params, NULL, path, NULL, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "not built"));
  g_clear_error (&error);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_false (kilt_onnx_export (m, NULL, NULL, path, NULL, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (kilt_onnx_export (m, params, NULL, path, NULL, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "m.onnx"));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

/* A model that skips masked steps is refused by name: ONNX's sequence_lens says only how long a
 * right-padded sequence is, and its mean takes no mask. No file is left behind. */
static void
test_masked_refused (void)
{
  g_autoptr (KiltModel) m = kilt_model_new ("masked");
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "masked.onnx", NULL);
  g_autofree float *params = NULL;
  KiltLayerConfig e = kilt_layer_config_default (KILT_LAYER_EMBEDDING);
  KiltLayerConfig l = kilt_layer_config_default (KILT_LAYER_LSTM);
  guint in[2];

  in[1] = kilt_model_add_input (m, "ids", (KiltShape){ 5, 1, 1 });
  e.input_dim = 7;
  e.units = 3;
  in[0] = kilt_model_append (m, KILT_LAYER_EMBEDDING, &e);
  l.units = 2;
  l.step_mask = KILT_STEP_MASK_IDS;
  kilt_model_add (m, KILT_LAYER_LSTM, "lstm", &l, 2, in);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  params = g_new0 (float, m->n_params);
  g_assert_false (kilt_onnx_export (m, params, NULL, path, NULL, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "layer lstm (LSTM) skips masked steps (Keras' "
                                            "mask_zero or Masking), which has no ONNX export"));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

/* onnxruntime must be there: installer/deps.sh --test installs it, so its absence is a
 * failure with a message, not a skip. */
static void
test_runtime (void)
{
  const char *args[] = { "version", NULL };
  g_autofree char *out = NULL;
  int rc = run_checker (args, &out);

  g_test_message ("%s", g_strstrip (out));
  if (rc != 0)
    g_test_fail_printf ("onnxruntime is not importable (exit %d): %s", rc, out);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_assert_true (kilt_onnx_export_available ());
  g_test_add_func ("/onnx/runtime", test_runtime);
  g_test_add_func ("/onnx/errors", test_errors);
  g_test_add_func ("/onnx/masked-refused", test_masked_refused);
  g_test_add_func ("/onnx/activations", test_activations);
  g_test_add_func ("/onnx/fused", test_fused);
  g_test_add_func ("/onnx/geometry", test_geometry);
  g_test_add_func ("/onnx/sequences", test_sequences);
  g_test_add_func ("/onnx/presets", test_presets);
  g_test_add_func ("/onnx/keras", test_keras);
  g_test_add_func ("/onnx/embedding", test_embedding);
  g_test_add_func ("/onnx/cli", test_cli);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
