/* LSTM and GRU against the plain-C reference and finite differences, on awkward shapes (odd
 * units, one step and seven, batch 3), every option, with step masks (trailing and leading
 * padding, every step masked, random holes); GlobalAveragePooling1D's mean over the kept
 * steps; and the orthogonal initialiser. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-layer-check.h"

#include "test-layer-cases.h"

#include <math.h>

static void
rnn_case (const char *label, KiltLayerType type, guint features, guint steps, guint units,
          guint batch, void (*tweak) (KiltLayerConfig *cfg))
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = kilt_layer_config_default (type);
  c.cfg.units = units;
  if (tweak)
    tweak (&c.cfg);
  c.n_inputs = 1;
  c.in[0] = (KiltShape){ features, 1, steps };
  c.batch = batch;
  c.training = TRUE;
  c.seed = 41 + steps;
  kilt_test_layer_case (&c);
  c.accumulate = TRUE;
  kilt_test_layer_case (&c);
}

/* With a step mask from ids (Embedding's mask_zero) or from values (Masking): the layer's
 * second input is the mask's source, batch 6 so every pattern of the check comes up. */
static void
masked_case (const char *label, KiltLayerType type, guint features, guint steps, guint units,
             KiltStepMask mask, void (*tweak) (KiltLayerConfig *cfg))
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = kilt_layer_config_default (type);
  c.cfg.units = units;
  if (tweak)
    tweak (&c.cfg);
  c.cfg.step_mask = mask;
  c.cfg.mask_value = 0.5f;
  c.n_inputs = 2;
  c.in[0] = (KiltShape){ features, 1, steps };
  c.in[1] = mask == KILT_STEP_MASK_IDS ? (KiltShape){ steps, 1, 1 } : (KiltShape){ 3, 1, steps };
  c.batch = 6;
  c.training = TRUE;
  c.seed = 7 + steps + units;
  kilt_test_layer_case (&c);
  c.accumulate = TRUE;
  kilt_test_layer_case (&c);
}

static void
sequences (KiltLayerConfig *cfg)
{
  cfg->return_sequences = TRUE;
}

static void
backwards_sequences (KiltLayerConfig *cfg)
{
  cfg->return_sequences = TRUE;
  cfg->go_backwards = TRUE;
}

static void
backwards (KiltLayerConfig *cfg)
{
  cfg->go_backwards = TRUE;
}

/* A Bidirectional's backward half: the steps read last to first, the outputs in their order. */
static void
backwards_time_order (KiltLayerConfig *cfg)
{
  cfg->return_sequences = TRUE;
  cfg->go_backwards = TRUE;
  cfg->keep_time_order = TRUE;
}

static void
gru_backwards_time_order (KiltLayerConfig *cfg)
{
  backwards_time_order (cfg);
  cfg->reset_after = FALSE;
}

static void
no_bias (KiltLayerConfig *cfg)
{
  cfg->use_bias = FALSE;
}

static void
hard_sigmoid (KiltLayerConfig *cfg)
{
  cfg->recurrent_activation = KILT_ACT_HARD_SIGMOID;
  cfg->return_sequences = TRUE;
}

static void
hard_sigmoid_k2 (KiltLayerConfig *cfg)
{
  cfg->recurrent_activation = KILT_ACT_HARD_SIGMOID_K2;
}

static void
reset_before (KiltLayerConfig *cfg)
{
  cfg->reset_after = FALSE;
}

static void
reset_before_sequences (KiltLayerConfig *cfg)
{
  cfg->reset_after = FALSE;
  cfg->return_sequences = TRUE;
  cfg->go_backwards = TRUE;
}

static void
reset_before_no_bias (KiltLayerConfig *cfg)
{
  cfg->reset_after = FALSE;
  cfg->use_bias = FALSE;
}

static void
test_lstm (void)
{
  rnn_case ("lstm 7 steps", KILT_LAYER_LSTM, 5, 7, 3, 3, NULL);
  rnn_case ("lstm 1 step", KILT_LAYER_LSTM, 4, 1, 5, 3, NULL);
  rnn_case ("lstm sequences", KILT_LAYER_LSTM, 3, 7, 5, 3, sequences);
  rnn_case ("lstm go_backwards", KILT_LAYER_LSTM, 2, 7, 3, 2, backwards);
  rnn_case ("lstm go_backwards sequences", KILT_LAYER_LSTM, 3, 6, 1, 3, backwards_sequences);
  rnn_case ("lstm no bias", KILT_LAYER_LSTM, 6, 4, 7, 1, no_bias);
  rnn_case ("lstm backwards in time order", KILT_LAYER_LSTM, 3, 7, 4, 3, backwards_time_order);
  rnn_case ("lstm hard_sigmoid", KILT_LAYER_LSTM, 3, 5, 3, 3, hard_sigmoid);
  rnn_case ("lstm hard_sigmoid keras 2", KILT_LAYER_LSTM, 3, 5, 3, 3, hard_sigmoid_k2);
}

static void
test_gru (void)
{
  rnn_case ("gru 7 steps", KILT_LAYER_GRU, 5, 7, 3, 3, NULL);
  rnn_case ("gru 1 step", KILT_LAYER_GRU, 4, 1, 5, 3, NULL);
  rnn_case ("gru sequences", KILT_LAYER_GRU, 3, 7, 5, 3, sequences);
  rnn_case ("gru go_backwards sequences", KILT_LAYER_GRU, 3, 6, 1, 3, backwards_sequences);
  rnn_case ("gru no bias", KILT_LAYER_GRU, 6, 4, 7, 1, no_bias);
  rnn_case ("gru backwards in time order", KILT_LAYER_GRU, 3, 7, 4, 3, backwards_time_order);
  rnn_case ("gru reset_before backwards in time order", KILT_LAYER_GRU, 3, 7, 4, 3,
            gru_backwards_time_order);
  rnn_case ("gru hard_sigmoid", KILT_LAYER_GRU, 3, 5, 3, 3, hard_sigmoid);
  rnn_case ("gru reset_before 7 steps", KILT_LAYER_GRU, 5, 7, 3, 3, reset_before);
  rnn_case ("gru reset_before 1 step", KILT_LAYER_GRU, 4, 1, 5, 3, reset_before);
  rnn_case ("gru reset_before sequences backwards", KILT_LAYER_GRU, 3, 7, 5, 3,
            reset_before_sequences);
  rnn_case ("gru reset_before no bias", KILT_LAYER_GRU, 2, 5, 3, 2, reset_before_no_bias);
}

static void
test_masked (void)
{
  const KiltLayerType types[] = { KILT_LAYER_LSTM, KILT_LAYER_GRU };
  const KiltStepMask masks[] = { KILT_STEP_MASK_IDS, KILT_STEP_MASK_VALUES };

  for (guint ti = 0; ti < G_N_ELEMENTS (types); ti++)
    for (guint mi = 0; mi < G_N_ELEMENTS (masks); mi++)
      {
        KiltLayerType t = types[ti];
        KiltStepMask m = masks[mi];
        masked_case ("masked last", t, 3, 7, 3, m, NULL);
        masked_case ("masked 1 step", t, 4, 1, 5, m, NULL);
        masked_case ("masked sequences", t, 3, 6, 4, m, sequences);
        masked_case ("masked go_backwards", t, 2, 7, 3, m, backwards);
        masked_case ("masked go_backwards sequences", t, 3, 5, 2, m, backwards_sequences);
        masked_case ("masked backwards in time order", t, 3, 7, 4, m, backwards_time_order);
        masked_case ("masked hard_sigmoid", t, 3, 5, 3, m, hard_sigmoid);
        if (t == KILT_LAYER_GRU)
          {
            masked_case ("masked reset_before", t, 5, 7, 3, m, reset_before);
            masked_case ("masked reset_before sequences backwards", t, 3, 7, 5, m,
                         reset_before_sequences);
            masked_case ("masked reset_before backwards in time order", t, 3, 6, 2, m,
                         gru_backwards_time_order);
          }
      }
}

/* A masked step keeps the state: a sequence padded after its end ends where the unpadded one
 * does, and one padded before it as well, in the reference and so (through the checks above)
 * on the device. */
static void
test_masked_padding (void)
{
  const KiltLayerType types[] = { KILT_LAYER_LSTM, KILT_LAYER_GRU };

  for (guint ti = 0; ti < G_N_ELEMENTS (types); ti++)
    for (guint back = 0; back < 2; back++)
      {
        KiltNode node = { 0 }, short_node = { 0 };
        g_autoptr (GError) error = NULL;
        g_autofree float *p = NULL;
        g_autofree double *dp = NULL;
        const guint f = 3, u = 4, steps = 7, len = 4;
        double x[2 * 3 * 7] = { 0 }, ids[2 * 7] = { 0 }, xs[3 * 4], ids_s[4];
        double out[2 * 4], out_s[4];
        const double *in[2] = { x, ids }, *in_s[2] = { xs, ids_s };
        KiltRng rng;

        kilt_rng_init (&rng, 5 + ti);
        node.name = (char *)"rnn";
        node.type = types[ti];
        node.klass = kilt_layer_class_get (types[ti]);
        node.cfg = kilt_layer_config_default (types[ti]);
        node.cfg.units = u;
        node.cfg.go_backwards = back;
        node.cfg.step_mask = KILT_STEP_MASK_IDS;
        node.n_inputs = 2;
        node.in_shape[0] = (KiltShape){ f, 1, steps };
        node.in_shape[1] = (KiltShape){ steps, 1, 1 };
        g_assert_true (node.klass->infer (&node, &error));
        g_assert_no_error (error);
        short_node = node;
        short_node.in_shape[0].w = len;
        short_node.in_shape[1].c = len;
        g_assert_true (short_node.klass->infer (&short_node, &error));
        p = g_new0 (float, node.n_params);
        dp = g_new (double, node.n_params);
        node.klass->init (&node, p, NULL, &rng);
        for (gsize i = 0; i < node.n_params; i++)
          dp[i] = p[i] + 0.2 * (kilt_rng_uniform (&rng) - 0.5);
        /* Sample 0 right-padded, sample 1 left-padded, with random data under the padding. */
        for (guint i = 0; i < G_N_ELEMENTS (x); i++)
          x[i] = 2 * kilt_rng_uniform (&rng) - 1;
        for (guint t = 0; t < len; t++)
          {
            ids[t] = ids[steps + steps - len + t] = ids_s[t] = 1 + t;
            for (guint i = 0; i < f; i++)
              {
                xs[i * len + t] = x[i * steps + t];
                x[(f + i) * steps + steps - len + t] = x[i * steps + t];
              }
          }
        node.klass->ref_forward (&node, 2, FALSE, 0, 0, in, dp, NULL, out);
        short_node.klass->ref_forward (&short_node, 1, FALSE, 0, 0, in_s, dp, NULL, out_s);
        for (guint j = 0; j < u; j++)
          {
            g_assert_cmpfloat (fabs (out[j] - out_s[j]), <, 1e-12);
            g_assert_cmpfloat (fabs (out[u + j] - out_s[j]), <, 1e-12);
            g_assert_cmpfloat (fabs (out_s[j]), >, 1e-4);
          }
      }
}

/* GlobalAveragePooling1D with a step mask: the mean over the kept steps, from either source;
 * every sample keeps a step here (test_masked_mean_empty has the one that keeps none). */
static void
test_masked_mean (void)
{
  const KiltStepMask masks[] = { KILT_STEP_MASK_IDS, KILT_STEP_MASK_VALUES };
  const guint steps[] = { 1, 6, 9 };

  for (guint mi = 0; mi < G_N_ELEMENTS (masks); mi++)
    for (guint si = 0; si < G_N_ELEMENTS (steps); si++)
      {
        KiltLayerCheck c = { 0 };
        c.label = "masked global average";
        c.type = KILT_LAYER_GLOBAL_AVG_POOL2D;
        c.cfg = kilt_layer_config_default (c.type);
        c.cfg.step_mask = masks[mi];
        c.cfg.mask_value = -0.25f;
        c.n_inputs = 2;
        c.in[0] = (KiltShape){ 5, 1, steps[si] };
        c.in[1] = masks[mi] == KILT_STEP_MASK_IDS ? (KiltShape){ steps[si], 1, 1 }
                                                  : (KiltShape){ 2, 1, steps[si] };
        c.batch = 7;
        c.training = TRUE;
        c.seed = 3 + si;
        c.mask_keep_one = TRUE;
        kilt_test_layer_case (&c);
        c.accumulate = TRUE;
        kilt_test_layer_case (&c);
      }
}

/* Masking: the steps whose features all equal mask_value become zeros and pass no gradient,
 * others pass as they are, even where some of their features equal mask_value. */
static void
test_masking (void)
{
  const KiltShape shapes[] = { { 3, 1, 7 }, { 1, 1, 5 }, { 4, 1, 1 } };
  const float values[] = { 0.0f, 0.5f, -2.0f };

  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    {
      KiltLayerCheck c = { 0 };
      c.label = "masking";
      c.type = KILT_LAYER_MASKING;
      c.cfg = kilt_layer_config_default (c.type);
      c.cfg.mask_value = values[i];
      c.n_inputs = 1;
      c.in[0] = shapes[i];
      c.batch = 6;
      c.training = TRUE;
      c.seed = 11 + i;
      c.masking_input = TRUE;
      kilt_test_layer_case (&c);
      c.accumulate = TRUE;
      kilt_test_layer_case (&c);
    }
}

/* A sample with every step masked: Keras divides 0 by 0, and so does the reference. */
static void
test_masked_mean_empty (void)
{
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;
  double x[2 * 2 * 3] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 },
                   ids[2 * 3] = { 0, 4, 0, 0, 0, 0 };
  const double *in[2] = { x, ids };
  double out[4];

  node.name = (char *)"mean";
  node.type = KILT_LAYER_GLOBAL_AVG_POOL2D;
  node.klass = &kilt_global_avg_pool2d_class;
  node.cfg = kilt_layer_config_default (node.type);
  node.cfg.step_mask = KILT_STEP_MASK_IDS;
  node.n_inputs = 2;
  node.in_shape[0] = (KiltShape){ 2, 1, 3 };
  node.in_shape[1] = (KiltShape){ 3, 1, 1 };
  g_assert_true (node.klass->infer (&node, &error));
  g_assert_no_error (error);
  node.klass->ref_forward (&node, 2, FALSE, 0, 0, in, NULL, NULL, out);
  g_assert_cmpfloat (out[0], ==, 2);
  g_assert_cmpfloat (out[1], ==, 5);
  g_assert_true (isnan (out[2]) && isnan (out[3]));
  /* The mask's source must have one id per step. */
  node.in_shape[1] = (KiltShape){ 4, 1, 1 };
  g_assert_false (node.klass->infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "layer mean (GlobalAveragePooling2D): its step mask "
                                            "reads ids, one per step: expected 3 ids, got 4x1x1"));
}

/* The recurrent kernel starts orthogonal (U U^T = I, Keras' Orthogonal), the kernel Glorot
 * uniform within its limit, the LSTM's forget bias at one and the others at zero. */
static void
test_init (void)
{
  const KiltLayerType types[] = { KILT_LAYER_LSTM, KILT_LAYER_GRU };

  for (guint ti = 0; ti < G_N_ELEMENTS (types); ti++)
    {
      KiltNode node = { 0 };
      g_autoptr (GError) error = NULL;
      g_autofree float *p = NULL;
      guint f = 6, u = 5, g = types[ti] == KILT_LAYER_LSTM ? 4 : 3;
      double limit = sqrt (6.0 / (f + g * u)), worst = 0, wmax = 0;
      KiltRng rng;

      node.name = (char *)"rnn";
      node.type = types[ti];
      node.klass = kilt_layer_class_get (types[ti]);
      node.cfg = kilt_layer_config_default (types[ti]);
      node.cfg.units = u;
      node.in_shape[0] = (KiltShape){ f, 1, 9 };
      g_assert_true (node.klass->infer (&node, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (node.n_params, ==,
                        f * g * u + u * g * u + (types[ti] == KILT_LAYER_GRU ? 2 : 1) * g * u);
      p = g_new0 (float, node.n_params);
      kilt_rng_init (&rng, 99);
      node.klass->init (&node, p, NULL, &rng);
      for (guint i = 0; i < f * g * u; i++)
        wmax = MAX (wmax, fabs (p[i]));
      g_assert_cmpfloat (wmax, <=, limit);
      g_assert_cmpfloat (wmax, >, 0.5 * limit);
      for (guint a = 0; a < u; a++)
        for (guint b = 0; b < u; b++)
          {
            const float *U = p + f * g * u;
            double dot = 0;
            for (guint k = 0; k < g * u; k++)
              dot += (double)U[a * g * u + k] * U[b * g * u + k];
            worst = MAX (worst, fabs (dot - (a == b ? 1.0 : 0.0)));
          }
      g_assert_cmpfloat (worst, <, 1e-5);
      for (guint i = 0; i < node.n_params - (f + u) * g * u; i++)
        {
          float want = types[ti] == KILT_LAYER_LSTM && i >= u && i < 2 * u ? 1.0f : 0.0f;
          g_assert_cmpfloat (p[(f + u) * g * u + i], ==, want);
        }
    }
}

static void
test_refused (void)
{
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;

  node.name = (char *)"seq";
  node.type = KILT_LAYER_LSTM;
  node.klass = &kilt_lstm_class;
  node.cfg = kilt_layer_config_default (KILT_LAYER_LSTM);
  node.cfg.units = 4;
  node.in_shape[0] = (KiltShape){ 3, 5, 7 };
  g_assert_false (node.klass->infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "layer seq (LSTM): expects a sequence"));
  g_clear_error (&error);
  node.in_shape[0] = (KiltShape){ 3, 1, 7 };
  node.cfg.activation = KILT_ACT_RELU;
  g_assert_false (node.klass->infer (&node, &error));
  g_assert_nonnull (strstr (error->message, "activation relu is not supported"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/layers/lstm", test_lstm);
  g_test_add_func ("/layers/gru", test_gru);
  g_test_add_func ("/layers/rnn-masked", test_masked);
  g_test_add_func ("/layers/rnn-masked-padding", test_masked_padding);
  g_test_add_func ("/layers/masked-mean", test_masked_mean);
  g_test_add_func ("/layers/masking", test_masking);
  g_test_add_func ("/layers/masked-mean-empty", test_masked_mean_empty);
  g_test_add_func ("/layers/rnn-init", test_init);
  g_test_add_func ("/layers/rnn-refused", test_refused);
  return g_test_run ();
}
