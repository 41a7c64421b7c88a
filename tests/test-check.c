/* The first-step check against the C reference: its batch for batch normalisation, and ResNet-50.
 */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-keras.h"
#include "kilt-model-json.h"
#include "kilt-reference.h"

#include <math.h>
#include <string.h>

/* What kilt-cli bench accepts (app/kilt-cli-bench.c). */
#define CHECK_LOSS_TOLERANCE 1e-4
#define CHECK_GRAD_TOLERANCE 1e-3

static void
build_or_fail (KiltModel *m)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
}

/* Conv2D -> BatchNormalization on a @side x @side map, then, with @flat_bn, Flatten -> Dense ->
 * BatchNormalization (one value a channel per sample) -> Dense softmax. */
static KiltModel *
bn_model (guint side, gboolean flat_bn)
{
  KiltModel *m = kilt_model_new ("bn");
  KiltLayerConfig c;

  kilt_model_add_input (m, NULL, (KiltShape){ 2, side, side });
  c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  c.units = 3;
  c.same = TRUE;
  kilt_model_append (m, KILT_LAYER_CONV2D, &c);
  kilt_model_append (m, KILT_LAYER_BATCH_NORM, NULL);
  kilt_model_append (m, KILT_LAYER_FLATTEN, NULL);
  if (flat_bn)
    {
      c = kilt_layer_config_default (KILT_LAYER_DENSE);
      c.units = 5;
      kilt_model_append (m, KILT_LAYER_DENSE, &c);
      kilt_model_append (m, KILT_LAYER_BATCH_NORM, NULL);
    }
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = 3;
  c.activation = KILT_ACT_SOFTMAX;
  kilt_model_append (m, KILT_LAYER_DENSE, &c);
  m->loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
  build_or_fail (m);
  return m;
}

/* The check takes enough samples for every batch normalisation to see
 * KILT_REFERENCE_BN_VALUES values a channel, never fewer than it was given, and no more than
 * KILT_REFERENCE_BN_MAX_BATCH. */
static void
test_check_batch (void)
{
  g_autoptr (KiltModel) two = bn_model (2, FALSE);
  g_autoptr (KiltModel) three = bn_model (3, FALSE);
  g_autoptr (KiltModel) eight = bn_model (8, FALSE);
  g_autoptr (KiltModel) flat = bn_model (4, TRUE);
  g_autoptr (KiltModel) none = kilt_model_load_preset ("mlp", NULL, 0, NULL);
  guint values = 99;

  g_assert_cmpuint (KILT_REFERENCE_BN_VALUES, ==, 16);
  g_assert_cmpuint (kilt_reference_check_batch (two, 1, &values), ==, 4);
  g_assert_cmpuint (values, ==, 16);
  g_assert_cmpuint (kilt_reference_check_batch (two, 6, &values), ==, 6);
  g_assert_cmpuint (values, ==, 24);
  /* 9 values a sample: two samples give 18. */
  g_assert_cmpuint (kilt_reference_check_batch (three, 1, &values), ==, 2);
  g_assert_cmpuint (values, ==, 18);
  g_assert_cmpuint (kilt_reference_check_batch (eight, 1, &values), ==, 1);
  g_assert_cmpuint (values, ==, 64);
  /* A BatchNormalization after a Dense has one value a sample: the cap. */
  g_assert_cmpuint (kilt_reference_check_batch (flat, 1, &values), ==, KILT_REFERENCE_BN_MAX_BATCH);
  g_assert_cmpuint (values, ==, KILT_REFERENCE_BN_MAX_BATCH);
  g_assert_nonnull (none);
  g_assert_cmpuint (kilt_reference_check_batch (none, 3, &values), ==, 3);
  g_assert_cmpuint (values, ==, 0);
}

/* Keras' ResNet-50 (bench/models/keras3-resnet50.json) rebuilt at 39x39, as kilt-cli bench
 * checks it: its last stage has 2x2 maps. With one sample (4 values a channel for each of
 * its batch normalisations) the device drifted from the reference by 1e-2 to 3e-2 of the
 * gradients' scale; at the check's batch (4) it stays within 2e-4 on PoCL, though every draw
 * of inputs puts a few ReLU inputs on the other side of 0 on the device, which the reference
 * follows. About 10 s with a release build on two cores: set KILT_TEST_SLOW=1. */
static void
test_resnet50 (void)
{
  KiltContext *ctx;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL, *text = NULL, *notes = NULL, *json = NULL;
  g_autoptr (KiltModel) keras = NULL, m = NULL;
  double loss_error = -1, grad_error = -1;
  guint draws = 0, followed = 0, values = 0, batch;
  KiltShape *in;

  if (!g_getenv ("KILT_TEST_SLOW"))
    {
      g_test_skip ("set KILT_TEST_SLOW=1 to check ResNet-50's first step (about 10 s)");
      return;
    }
  if ((ctx = kilt_test_context ()) == NULL)
    return;
  path = g_build_filename (g_getenv ("KILT_SOURCE_DIR"), "bench", "models", "keras3-resnet50.json",
                           NULL);
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  g_assert_no_error (error);
  keras = kilt_keras_load_data (text, -1, path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  /* The same layers on a 39x39 image, as bench rebuilds it. */
  json = kilt_model_to_json (keras);
  m = kilt_model_load_json_data (json, -1, path, &error);
  g_assert_no_error (error);
  in = &kilt_model_node (m, 0)->out_shape;
  in->h = in->w = 39;
  build_or_fail (m);
  g_assert_cmpuint (m->n_params, >, 25000000);

  batch = kilt_reference_check_batch (m, 1, &values);
  g_assert_cmpuint (batch, ==, 4);
  g_assert_cmpuint (values, ==, 16);
  g_assert_true (kilt_reference_check_step (ctx, m, batch, 1, &loss_error, &grad_error, &draws,
                                            &followed, &error));
  g_assert_no_error (error);
  g_test_message ("ResNet-50 at 39x39, batch %u: loss error %.2e, gradient error %.2e, %u draw%s, "
                  "%u kink element%s followed",
                  batch, loss_error, grad_error, draws, draws == 1 ? "" : "s", followed,
                  followed == 1 ? "" : "s");
  g_assert_cmpfloat (loss_error, >=, 0);
  g_assert_cmpfloat (loss_error, <, CHECK_LOSS_TOLERANCE);
  g_assert_cmpfloat (grad_error, >=, 0);
  g_assert_cmpfloat (grad_error, <, CHECK_GRAD_TOLERANCE);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/check/batch", test_check_batch);
  g_test_add_func ("/check/resnet50", test_resnet50);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
