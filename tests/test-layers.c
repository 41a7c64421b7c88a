/* Dense, activation and flatten layers against the plain-C reference and finite differences. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-layer-check.h"

#include "test-layer-cases.h"

static const KiltLayerCheck *
dense_case (const char *label, guint in, guint units, KiltActivation act, gboolean bias,
            guint batch)
{
  static KiltLayerCheck c;

  memset (&c, 0, sizeof c);
  c.label = label;
  c.type = KILT_LAYER_DENSE;
  c.cfg = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.cfg.units = units;
  c.cfg.activation = act;
  c.cfg.use_bias = bias;
  c.n_inputs = 1;
  c.in[0] = (KiltShape){ in, 1, 1 };
  c.batch = batch;
  c.training = TRUE;
  c.seed = 7;
  return &c;
}

static void
test_dense (void)
{
  kilt_test_layer_case (dense_case ("dense linear", 13, 7, KILT_ACT_LINEAR, TRUE, 3));
  kilt_test_layer_case (dense_case ("dense relu", 5, 9, KILT_ACT_RELU, TRUE, 4));
  kilt_test_layer_case (dense_case ("dense tanh no bias", 17, 3, KILT_ACT_TANH, FALSE, 1));
  kilt_test_layer_case (dense_case ("dense softmax", 11, 10, KILT_ACT_SOFTMAX, TRUE, 5));
  kilt_test_layer_case (dense_case ("dense sigmoid", 3, 1, KILT_ACT_SIGMOID, TRUE, 7));
}

static void
act_case (const char *label, KiltActivation act, KiltShape shape, guint batch)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = KILT_LAYER_ACTIVATION;
  c.cfg = kilt_layer_config_default (KILT_LAYER_ACTIVATION);
  c.cfg.activation = act;
  c.cfg.alpha = 0.1f;
  c.n_inputs = 1;
  c.in[0] = shape;
  c.batch = batch;
  c.training = TRUE;
  c.seed = 11;
  kilt_test_layer_case (&c);
}

static void
test_activations (void)
{
  act_case ("relu", KILT_ACT_RELU, (KiltShape){ 3, 5, 7 }, 3);
  act_case ("leaky relu", KILT_ACT_LEAKY_RELU, (KiltShape){ 2, 3, 3 }, 2);
  act_case ("sigmoid", KILT_ACT_SIGMOID, (KiltShape){ 1, 9, 1 }, 3);
  act_case ("tanh", KILT_ACT_TANH, (KiltShape){ 4, 1, 5 }, 1);
  act_case ("softmax", KILT_ACT_SOFTMAX, (KiltShape){ 10, 1, 1 }, 6);
  act_case ("linear", KILT_ACT_LINEAR, (KiltShape){ 3, 2, 2 }, 3);
}

static void
test_flatten (void)
{
  KiltLayerCheck c = { 0 };

  c.label = "flatten";
  c.type = KILT_LAYER_FLATTEN;
  c.n_inputs = 1;
  c.in[0] = (KiltShape){ 3, 5, 4 };
  c.batch = 3;
  c.training = TRUE;
  c.seed = 3;
  kilt_test_layer_case (&c);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/layers/dense", test_dense);
  g_test_add_func ("/layers/activation", test_activations);
  g_test_add_func ("/layers/flatten", test_flatten);
  return g_test_run ();
}
