/* The device doctor: compile, check every op against the reference, measure, and judge. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-doctor"

#include "kilt-doctor.h"
#include "kilt-context.h"
#include "kilt-error.h"
#include "kilt-gemm.h"
#include "kilt-gemm-tf32.h"
#include "kilt-layer-check.h"

#include <math.h>
#include <string.h>

/* The same bounds the test suite holds every layer to. */
#define TOL_FORWARD  2e-5
#define TOL_BACKWARD 1e-4
#define TOL_FD       1e-5

static KiltLayerCheck
make_check (const char *label, KiltLayerType type, KiltShape in, guint n_inputs)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = kilt_layer_config_default (type);
  c.n_inputs = n_inputs;
  for (guint i = 0; i < n_inputs; i++)
    c.in[i] = in;
  c.batch = 3;
  c.training = TRUE;
  c.seed = 5;
  return c;
}

static const char *const act_labels[KILT_ACT_N_TYPES] = {
  [KILT_ACT_RELU6] = "Activation relu6",
  [KILT_ACT_ELU] = "Activation elu",
  [KILT_ACT_SELU] = "Activation selu",
  [KILT_ACT_SOFTPLUS] = "Activation softplus",
  [KILT_ACT_SOFTSIGN] = "Activation softsign",
  [KILT_ACT_EXPONENTIAL] = "Activation exponential",
  [KILT_ACT_SWISH] = "Activation swish",
  [KILT_ACT_GELU] = "Activation gelu",
  [KILT_ACT_GELU_TANH] = "Activation gelu_tanh",
  [KILT_ACT_HARD_SIGMOID] = "Activation hard_sigmoid",
  [KILT_ACT_HARD_SIGMOID_K2] = "Activation hard_sigmoid_keras2",
  [KILT_ACT_HARD_SWISH] = "Activation hard_swish",
};

static GArray *
doctor_cases (void)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (KiltLayerCheck));
  KiltLayerCheck c;

  c = make_check ("Conv2D 3x3 same, ReLU", KILT_LAYER_CONV2D, (KiltShape){ 3, 9, 7 }, 1);
  c.cfg.units = 4;
  c.cfg.same = TRUE;
  c.cfg.activation = KILT_ACT_RELU;
  g_array_append_val (a, c);
  c = make_check ("Conv2D 5x5 valid, stride 2", KILT_LAYER_CONV2D, (KiltShape){ 2, 11, 9 }, 1);
  c.cfg.units = 3;
  c.cfg.kh = c.cfg.kw = 5;
  c.cfg.sh = c.cfg.sw = 2;
  g_array_append_val (a, c);
  c = make_check ("Dense, softmax", KILT_LAYER_DENSE, (KiltShape){ 13, 1, 1 }, 1);
  c.cfg.units = 10;
  c.cfg.activation = KILT_ACT_SOFTMAX;
  g_array_append_val (a, c);
  c = make_check ("MaxPooling2D 2x2", KILT_LAYER_MAX_POOL2D, (KiltShape){ 3, 7, 9 }, 1);
  g_array_append_val (a, c);
  c = make_check ("AveragePooling2D 3x3 same", KILT_LAYER_AVG_POOL2D, (KiltShape){ 2, 7, 5 }, 1);
  c.cfg.kh = c.cfg.kw = 3;
  c.cfg.same = TRUE;
  g_array_append_val (a, c);
  c = make_check ("GlobalAveragePooling2D", KILT_LAYER_GLOBAL_AVG_POOL2D, (KiltShape){ 4, 5, 3 },
                  1);
  g_array_append_val (a, c);
  c = make_check ("GlobalMaxPooling2D", KILT_LAYER_GLOBAL_MAX_POOL2D, (KiltShape){ 4, 5, 3 }, 1);
  g_array_append_val (a, c);
  c = make_check ("Activation tanh", KILT_LAYER_ACTIVATION, (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.activation = KILT_ACT_TANH;
  g_array_append_val (a, c);
  c = make_check ("Dropout 0.5", KILT_LAYER_DROPOUT, (KiltShape){ 3, 4, 5 }, 1);
  g_array_append_val (a, c);
  c = make_check ("BatchNormalization", KILT_LAYER_BATCH_NORM, (KiltShape){ 3, 4, 5 }, 1);
  g_array_append_val (a, c);
  c = make_check ("Add (2 inputs)", KILT_LAYER_ADD, (KiltShape){ 3, 4, 5 }, 2);
  g_array_append_val (a, c);
  c = make_check ("Concatenate (2 inputs)", KILT_LAYER_CONCATENATE, (KiltShape){ 3, 4, 5 }, 2);
  c.in[1].c = 2;
  g_array_append_val (a, c);
  c = make_check ("Subtract", KILT_LAYER_SUBTRACT, (KiltShape){ 3, 4, 5 }, 2);
  g_array_append_val (a, c);
  c = make_check ("Average (3 inputs)", KILT_LAYER_AVERAGE, (KiltShape){ 3, 4, 5 }, 3);
  g_array_append_val (a, c);
  c = make_check ("Maximum (3 inputs)", KILT_LAYER_MAXIMUM, (KiltShape){ 3, 4, 5 }, 3);
  g_array_append_val (a, c);
  c = make_check ("Minimum", KILT_LAYER_MINIMUM, (KiltShape){ 3, 4, 5 }, 2);
  g_array_append_val (a, c);
  c = make_check ("Flatten", KILT_LAYER_FLATTEN, (KiltShape){ 3, 4, 5 }, 1);
  g_array_append_val (a, c);
  c = make_check ("ZeroPadding2D ((1, 2), (0, 3))", KILT_LAYER_ZERO_PADDING2D,
                  (KiltShape){ 2, 5, 4 }, 1);
  memcpy (c.cfg.pad, (guint[4]){ 1, 2, 0, 3 }, sizeof c.cfg.pad);
  g_array_append_val (a, c);
  c = make_check ("Cropping2D ((1, 0), (2, 1))", KILT_LAYER_CROPPING2D, (KiltShape){ 3, 6, 7 }, 1);
  memcpy (c.cfg.pad, (guint[4]){ 1, 0, 2, 1 }, sizeof c.cfg.pad);
  g_array_append_val (a, c);
  c = make_check ("UpSampling2D (2, 3)", KILT_LAYER_UPSAMPLING2D, (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.kh = 2;
  c.cfg.kw = 3;
  g_array_append_val (a, c);
  c.label = "UpSampling2D (2, 3), bilinear";
  c.cfg.bilinear = TRUE;
  g_array_append_val (a, c);
  c = make_check ("Permute (2, 0, 1)", KILT_LAYER_PERMUTE, (KiltShape){ 3, 4, 5 }, 1);
  memcpy (c.cfg.perm, (guint[3]){ 2, 0, 1 }, sizeof c.cfg.perm);
  g_array_append_val (a, c);
  c = make_check ("Embedding 7 x 5, 11 steps", KILT_LAYER_EMBEDDING, (KiltShape){ 11, 1, 1 }, 1);
  c.cfg.input_dim = 7;
  c.cfg.units = 5;
  c.ids = 7;
  g_array_append_val (a, c);
  c = make_check ("ReLU max_value 6, threshold -0.5, negative_slope 0.1", KILT_LAYER_ACTIVATION,
                  (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.activation = KILT_ACT_RELU;
  c.cfg.max_value = 6;
  c.cfg.threshold = -0.5f;
  c.cfg.negative_slope = 0.1f;
  c.input_scale = 8;
  g_array_append_val (a, c);
  c = make_check ("BatchNormalization, scale false", KILT_LAYER_BATCH_NORM, (KiltShape){ 3, 4, 5 },
                  1);
  c.cfg.bn_no_scale = TRUE;
  g_array_append_val (a, c);
  c = make_check ("BatchNormalization, center false", KILT_LAYER_BATCH_NORM, (KiltShape){ 3, 4, 5 },
                  1);
  c.cfg.bn_no_center = TRUE;
  g_array_append_val (a, c);
  c = make_check ("LayerNormalization", KILT_LAYER_LAYER_NORM, (KiltShape){ 6, 4, 3 }, 1);
  g_array_append_val (a, c);
  c = make_check ("Rescaling 1/127.5, -1", KILT_LAYER_RESCALING, (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.scale = 1 / 127.5f;
  c.cfg.offset = -1;
  g_array_append_val (a, c);
  c = make_check ("Reshape (C) to (1, 1, C)", KILT_LAYER_RESHAPE, (KiltShape){ 6, 1, 1 }, 1);
  c.cfg.target = (KiltShape){ 6, 1, 1 };
  g_array_append_val (a, c);
  c = make_check ("Multiply, per-channel scale", KILT_LAYER_MULTIPLY, (KiltShape){ 3, 4, 5 }, 2);
  c.in[1] = (KiltShape){ 3, 1, 1 };
  g_array_append_val (a, c);
  c = make_check ("SpatialDropout2D 0.5", KILT_LAYER_DROPOUT, (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.dropout_mask = KILT_DROPOUT_CHANNEL;
  g_array_append_val (a, c);
  c = make_check ("DepthwiseConv2D 3x3 same, stride 2, multiplier 2", KILT_LAYER_DEPTHWISE_CONV2D,
                  (KiltShape){ 3, 9, 7 }, 1);
  c.cfg.units = 2;
  c.cfg.sh = c.cfg.sw = 2;
  c.cfg.same = TRUE;
  c.cfg.activation = KILT_ACT_RELU;
  g_array_append_val (a, c);
  c = make_check ("DepthwiseConv2D 3x3 valid, dilation 2", KILT_LAYER_DEPTHWISE_CONV2D,
                  (KiltShape){ 2, 8, 9 }, 1);
  c.cfg.dil_h = c.cfg.dil_w = 2;
  g_array_append_val (a, c);
  c = make_check ("Conv2D 3x3 same, dilation 2, groups 2", KILT_LAYER_CONV2D,
                  (KiltShape){ 4, 7, 6 }, 1);
  c.cfg.units = 6;
  c.cfg.same = TRUE;
  c.cfg.dil_h = c.cfg.dil_w = 2;
  c.cfg.groups = 2;
  c.cfg.activation = KILT_ACT_RELU;
  g_array_append_val (a, c);
  c = make_check ("Conv2DTranspose 3x3 same, stride 2", KILT_LAYER_CONV2D_TRANSPOSE,
                  (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.units = 4;
  c.cfg.sh = c.cfg.sw = 2;
  c.cfg.same = TRUE;
  c.cfg.activation = KILT_ACT_RELU;
  g_array_append_val (a, c);
  c = make_check ("Conv2DTranspose 2x2 valid, stride 3", KILT_LAYER_CONV2D_TRANSPOSE,
                  (KiltShape){ 2, 3, 4 }, 1);
  c.cfg.units = 3;
  c.cfg.kh = c.cfg.kw = 2;
  c.cfg.sh = c.cfg.sw = 3;
  g_array_append_val (a, c);
  c = make_check ("Normalization", KILT_LAYER_NORMALIZATION, (KiltShape){ 3, 4, 5 }, 1);
  g_array_append_val (a, c);
  c = make_check ("Normalization, constant mean and variance", KILT_LAYER_NORMALIZATION,
                  (KiltShape){ 3, 4, 5 }, 1);
  c.cfg.norm_n = 3;
  memcpy (c.cfg.norm_mean, (float[]){ 0.485f, 0.456f, 0.406f }, 3 * sizeof (float));
  memcpy (c.cfg.norm_var, (float[]){ 0.052441f, 0.050176f, 0.050625f }, 3 * sizeof (float));
  g_array_append_val (a, c);
  /* Recurrent layers over 7 steps of 3 features (the shape's h must be 1: a sequence). */
  c = make_check ("LSTM 5 units, return_sequences", KILT_LAYER_LSTM, (KiltShape){ 3, 1, 7 }, 1);
  c.cfg.units = 5;
  c.cfg.return_sequences = TRUE;
  g_array_append_val (a, c);
  c = make_check ("GRU 5 units, reset_after", KILT_LAYER_GRU, (KiltShape){ 3, 1, 7 }, 1);
  c.cfg.units = 5;
  g_array_append_val (a, c);
  c = make_check ("GRU 5 units, reset_after false, go_backwards", KILT_LAYER_GRU,
                  (KiltShape){ 3, 1, 7 }, 1);
  c.cfg.units = 5;
  c.cfg.reset_after = FALSE;
  c.cfg.go_backwards = TRUE;
  g_array_append_val (a, c);
  /* With step masks (Keras' mask_zero and Masking): the mask's source is the second input;
   * batch 6 gives each of the check's padding patterns a sample. */
  c = make_check ("LSTM 5 units, masked by ids", KILT_LAYER_LSTM, (KiltShape){ 3, 1, 7 }, 2);
  c.cfg.units = 5;
  c.cfg.return_sequences = TRUE;
  c.cfg.step_mask = KILT_STEP_MASK_IDS;
  c.in[1] = (KiltShape){ 7, 1, 1 };
  c.batch = 6;
  g_array_append_val (a, c);
  c = make_check ("GRU 5 units, reset_after false, go_backwards, masked by values", KILT_LAYER_GRU,
                  (KiltShape){ 3, 1, 7 }, 2);
  c.cfg.units = 5;
  c.cfg.reset_after = FALSE;
  c.cfg.go_backwards = TRUE;
  c.cfg.step_mask = KILT_STEP_MASK_VALUES;
  c.cfg.mask_value = 0.5f;
  c.batch = 6;
  g_array_append_val (a, c);
  c = make_check ("Masking", KILT_LAYER_MASKING, (KiltShape){ 3, 1, 7 }, 1);
  c.cfg.mask_value = 0.5f;
  c.batch = 6;
  c.masking_input = TRUE;
  g_array_append_val (a, c);
  c = make_check ("GlobalAveragePooling1D, masked by ids", KILT_LAYER_GLOBAL_AVG_POOL2D,
                  (KiltShape){ 4, 1, 9 }, 2);
  c.cfg.step_mask = KILT_STEP_MASK_IDS;
  c.in[1] = (KiltShape){ 9, 1, 1 };
  c.batch = 6;
  c.mask_keep_one = TRUE;
  g_array_append_val (a, c);
  /* Every element-wise activation the Activation layer computes itself. */
  for (int act = KILT_ACT_RELU6; act < KILT_ACT_N_TYPES; act++)
    {
      c = make_check (act_labels[act], KILT_LAYER_ACTIVATION, (KiltShape){ 3, 4, 5 }, 1);
      c.cfg.activation = act;
      c.cfg.alpha = 0.7f;
      c.input_scale = 4; /* past hard_sigmoid's and hard_swish's kinks at +-3 */
      g_array_append_val (a, c);
    }
  return a;
}

static double
seconds_since (gint64 t0)
{
  return (g_get_monotonic_time () - t0) / 1e6;
}

static gboolean
measure_gemm (KiltContext *ctx, KiltDoctorReport *r, GError **error)
{
  gsize n = g_str_equal (ctx->info->type, "CPU") ? 512 : 1024;
  g_autoptr (KiltBuffer) a = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * n * n, error, "GEMM A");
  g_autoptr (KiltBuffer) b = NULL;
  g_autoptr (KiltBuffer) c = NULL;
  gint64 t0;
  int reps = 3;

  if (!a || !(b = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * n * n, error, "GEMM B"))
      || !(c = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * n * n, error, "GEMM C")))
    return FALSE;
  /* The first call compiles CLBlast's kernels; time the ones after it. */
  if (!kilt_gemm (ctx, FALSE, FALSE, n, n, n, 1, a->mem, 0, n, b->mem, 0, n, 0, c->mem, 0, n, error)
      || !kilt_context_finish (ctx, error))
    return FALSE;
  t0 = g_get_monotonic_time ();
  for (int i = 0; i < reps; i++)
    if (!kilt_gemm (ctx, FALSE, FALSE, n, n, n, 1, a->mem, 0, n, b->mem, 0, n, 0, c->mem, 0, n,
                    error))
      return FALSE;
  if (!kilt_context_finish (ctx, error))
    return FALSE;
  r->gemm_gflops = 2.0 * n * n * n * reps / seconds_since (t0) / 1e9;
  return TRUE;
}

static gboolean
measure_copy_and_launch (KiltContext *ctx, KiltDoctorReport *r, GError **error)
{
  gsize bytes = 64 << 20;
  g_autoptr (KiltBuffer) a = NULL;
  g_autoptr (KiltBuffer) b = NULL;
  g_autofree char *host = NULL;
  cl_kernel k;
  cl_int err = CL_SUCCESS;
  gint64 t0;
  float v = 0;
  cl_uint zero = 0;
  int reps = 200;

  bytes = MIN (bytes, ctx->info->max_alloc / 2);
  a = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, bytes, error, "copy source");
  if (!a || !(b = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, bytes, error, "copy target")))
    return FALSE;
  host = g_malloc0 (bytes);
  t0 = g_get_monotonic_time ();
  if (!kilt_buffer_write (a, 0, host, bytes, error))
    return FALSE;
  r->upload_gbps = bytes / seconds_since (t0) / 1e9;
  t0 = g_get_monotonic_time ();
  for (int i = 0; i < 4 && err == CL_SUCCESS; i++)
    err = clEnqueueCopyBuffer (ctx->queue, a->mem, b->mem, 0, 0, bytes, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ctx->info->name, "copying between buffers");
      return FALSE;
    }
  if (!kilt_context_finish (ctx, error))
    return FALSE;
  /* A copy reads and writes each byte. */
  r->copy_gbps = 2.0 * 4 * bytes / seconds_since (t0) / 1e9;

  k = kilt_context_kernel (ctx, "kilt_fill", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, a->mem, err);
  KILT_ARG (k, 1, v, err);
  KILT_ARG (k, 2, zero, err);
  g_assert (err == CL_SUCCESS);
  if (!kilt_context_launch_1d (ctx, k, 1, error) || !kilt_context_finish (ctx, error))
    return FALSE;
  t0 = g_get_monotonic_time ();
  for (int i = 0; i < reps; i++)
    if (!kilt_context_launch_1d (ctx, k, 1, error))
      return FALSE;
  if (!kilt_context_finish (ctx, error))
    return FALSE;
  r->launch_us = seconds_since (t0) * 1e6 / reps;
  return TRUE;
}

static void
check_free (gpointer p)
{
  KiltDoctorCheck *c = p;

  g_free (c->op);
  g_free (c->error);
}

static void
judge (KiltDoctorReport *r, const KiltDeviceInfo *device, const char *failure)
{
  guint failed = 0;
  const char *first = NULL;

  for (guint i = 0; i < r->checks->len; i++)
    {
      KiltDoctorCheck *c = &g_array_index (r->checks, KiltDoctorCheck, i);
      if (!c->passed)
        {
          failed++;
          if (!first)
            first = c->op;
        }
    }
  if (failure)
    {
      r->usable = FALSE;
      r->verdict = g_strdup_printf ("Not usable: %s", failure);
    }
  else if (failed)
    {
      r->usable = FALSE;
      r->verdict = g_strdup_printf ("Not usable: %u of %u ops give wrong results (first: %s)",
                                    failed, r->checks->len, first);
    }
  else if (device->unusable_reason)
    {
      r->usable = FALSE;
      r->verdict = g_strdup_printf ("Not recommended: %s", device->unusable_reason);
    }
  else
    {
      r->usable = TRUE;
      r->verdict = g_strdup_printf ("Usable: every op matches the reference; GEMM %.0f GFLOP/s, "
                                    "launch %.0f µs",
                                    r->gemm_gflops, r->launch_us);
    }
}

KiltDoctorReport *
kilt_doctor_run (const KiltDeviceInfo *device, KiltDoctorProgress progress, gpointer user_data,
                 GCancellable *cancellable)
{
  KiltDoctorReport *r = g_new0 (KiltDoctorReport, 1);
  g_autoptr (GArray) cases = doctor_cases ();
  g_autoptr (GError) error = NULL;
  KiltContext *ctx = NULL;
  guint total = cases->len + 3;
  gint64 t0 = g_get_monotonic_time ();

  r->device_id = g_strdup (device->id);
  r->device_name = g_strdup (device->name);
  r->checks = g_array_new (FALSE, TRUE, sizeof (KiltDoctorCheck));
  g_array_set_clear_func (r->checks, check_free);

#define STEP(i, what)                                                                              \
  do                                                                                               \
    {                                                                                              \
      if (g_cancellable_is_cancelled (cancellable))                                                \
        goto cancelled;                                                                            \
      if (progress)                                                                                \
        progress ((double)(i) / total, what, user_data);                                           \
    }                                                                                              \
  while (0)

  STEP (0, "Compiling kernels");
  ctx = kilt_context_new (device, &error);
  if (ctx == NULL)
    {
      judge (r, device, error->message);
      return r;
    }
  r->compile_seconds = seconds_since (t0);
  r->compile_cached = ctx->from_cache;
  /* Convolutions both ways where the device has the implicit-GEMM kernels: training picks
   * whichever is faster, so each must be right. */
  if (ctx->igemm)
    for (guint i = 0; i < cases->len; i++)
      {
        KiltLayerCheck c = g_array_index (cases, KiltLayerCheck, i);
        g_autofree char *label = g_strconcat (c.label, ", implicit GEMM", NULL);

        /* Dilated or grouped convolutions have the im2col path only. */
        if (c.type != KILT_LAYER_CONV2D || c.cfg.groups > 1 || c.cfg.dil_h > 1 || c.cfg.dil_w > 1)
          continue;
        g_array_index (cases, KiltLayerCheck, i).algo = KILT_CONV_ALGO_IM2COL;
        c.algo = KILT_CONV_ALGO_IGEMM;
        c.label = g_intern_string (label);
        g_array_insert_val (cases, ++i, c);
        /* and at tf32 where the device computes at tf32 (on tensor cores with
         * KILT_TF32_CONV=1, kilt-conv2d.c): on TF32 values, whose products are exact, so
         * FP32's tolerances hold (ReLU for the other activations, whose derivatives are no
         * TF32 values). */
        if (kilt_precision_available (device, KILT_PRECISION_TF32, NULL))
          {
            g_autofree char *at = g_strconcat (c.label, " at tf32", NULL);

            c.label = g_intern_string (at);
            c.tf32_values = TRUE;
            c.at_tf32 = TRUE;
            if (c.cfg.activation != KILT_ACT_LINEAR)
              c.cfg.activation = KILT_ACT_RELU;
            g_array_insert_val (cases, ++i, c);
          }
      }
  total = cases->len + 3;

  for (guint i = 0; i < cases->len; i++)
    {
      KiltLayerCheck *c = &g_array_index (cases, KiltLayerCheck, i);
      KiltDoctorCheck dc = { 0 };
      KiltLayerCheckResult res;
      g_autoptr (GError) cerr = NULL;

      STEP (1 + i, c->label);
      dc.op = g_strdup (c->label);
      if (kilt_layer_class_get (c->type) == NULL)
        {
          dc.error = g_strdup ("not built into this Kilt");
          dc.passed = FALSE;
        }
      else if (!kilt_layer_check_run (ctx, c, &res, &cerr))
        {
          dc.error = g_strdup (cerr->message);
          dc.passed = FALSE;
        }
      else
        {
          dc.max_error
              = MAX (MAX (res.forward, res.state), MAX (res.backward_input, res.backward_param));
          dc.passed = res.forward <= TOL_FORWARD && res.state <= TOL_FORWARD
                      && res.backward_input <= TOL_BACKWARD && res.backward_param <= TOL_BACKWARD
                      && res.finite_diff <= TOL_FD;
        }
      g_array_append_val (r->checks, dc);
    }

  /* TF32 where the device offers it: the tensor-core GEMM against the reference. */
  if (kilt_precision_available (device, KILT_PRECISION_TF32, NULL))
    {
      KiltDoctorCheck dc = { 0 };
      g_autoptr (GError) terr = NULL;

      STEP (total - 2, "GEMM at tf32");
      dc.op = g_strdup ("GEMM at tf32");
      if (!kilt_gemm_tf32_check (ctx, &dc.max_error, &r->gemm_tf32_gflops, &terr))
        dc.error = g_strdup (terr->message);
      else
        dc.passed = dc.max_error <= KILT_TF32_CHECK_TOLERANCE;
      g_array_append_val (r->checks, dc);
    }
  STEP (total - 2, "Measuring GEMM");
  if (!measure_gemm (ctx, r, &error))
    {
      judge (r, device, error->message);
      kilt_context_free (ctx);
      return r;
    }
  STEP (total - 1, "Measuring copies and launches");
  if (!measure_copy_and_launch (ctx, r, &error))
    {
      judge (r, device, error->message);
      kilt_context_free (ctx);
      return r;
    }
  judge (r, device, NULL);
  if (progress)
    progress (1.0, "Done", user_data);
  kilt_context_free (ctx);
  return r;

cancelled:
  kilt_context_free (ctx);
  kilt_doctor_report_free (r);
  return NULL;
#undef STEP
}

void
kilt_doctor_report_free (KiltDoctorReport *report)
{
  if (report == NULL)
    return;
  g_free (report->device_id);
  g_free (report->device_name);
  g_array_unref (report->checks);
  g_free (report->verdict);
  g_free (report);
}

char *
kilt_doctor_report_text (const KiltDoctorReport *r)
{
  GString *s = g_string_new (NULL);

  g_string_append_printf (s, "Device doctor: %s (%s)\n", r->device_name, r->device_id);
  g_string_append_printf (s, "  kernels:     %.2f s (%s)\n", r->compile_seconds,
                          r->compile_cached ? "from the cache" : "compiled");
  int width = 28;

  for (guint i = 0; i < r->checks->len; i++)
    width = MAX (width, (int)strlen (g_array_index (r->checks, KiltDoctorCheck, i).op));
  for (guint i = 0; i < r->checks->len; i++)
    {
      KiltDoctorCheck *c = &g_array_index (r->checks, KiltDoctorCheck, i);
      if (c->error)
        g_string_append_printf (s, "  %-*s FAIL  %s\n", width, c->op, c->error);
      else
        g_string_append_printf (s, "  %-*s %s  max error %.1e\n", width, c->op,
                                c->passed ? "pass" : "FAIL", c->max_error);
    }
  if (r->gemm_gflops > 0)
    g_string_append_printf (s, "  GEMM:        %.1f GFLOP/s\n", r->gemm_gflops);
  if (r->gemm_tf32_gflops > 0)
    g_string_append_printf (s, "  GEMM tf32:   %.1f GFLOP/s\n", r->gemm_tf32_gflops);
  if (r->copy_gbps > 0)
    g_string_append_printf (s, "  copy:        %.1f GB/s on the device, %.1f GB/s upload\n",
                            r->copy_gbps, r->upload_gbps);
  if (r->launch_us > 0)
    g_string_append_printf (s, "  launch:      %.1f us per kernel\n", r->launch_us);
  g_string_append_printf (s, "  verdict:     %s\n", r->verdict);
  return g_string_free (s, FALSE);
}
