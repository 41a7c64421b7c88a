/* Dropout, batch normalisation, Add and Concatenate against the plain-C reference and finite
 * differences, plus the dropout mask's seeding and the merge layers' shape errors. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-layer-check.h"
#include "kilt-error.h"

#include "test-layer-cases.h"

static void
one_input_case (const char *label, KiltLayerType type, const KiltLayerConfig *cfg, KiltShape in,
                guint batch, gboolean training)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = *cfg;
  c.n_inputs = 1;
  c.in[0] = in;
  c.batch = batch;
  c.training = training;
  c.seed = 23;
  kilt_test_layer_case (&c);
}

static void
test_dropout (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DROPOUT);

  cfg.rate = 0.25f;
  one_input_case ("dropout .25 train", KILT_LAYER_DROPOUT, &cfg, (KiltShape){ 3, 5, 7 }, 3, TRUE);
  one_input_case ("dropout .25 infer", KILT_LAYER_DROPOUT, &cfg, (KiltShape){ 3, 5, 7 }, 3, FALSE);
  cfg.rate = 0.5f;
  one_input_case ("dropout .5 train flat", KILT_LAYER_DROPOUT, &cfg, (KiltShape){ 13, 1, 1 }, 5,
                  TRUE);
  one_input_case ("dropout .5 infer flat", KILT_LAYER_DROPOUT, &cfg, (KiltShape){ 13, 1, 1 }, 5,
                  FALSE);
  cfg.rate = 0.0f;
  one_input_case ("dropout 0 train", KILT_LAYER_DROPOUT, &cfg, (KiltShape){ 2, 3, 3 }, 2, TRUE);
}

/* ---- A bare one-layer harness for checks the layer checker does not make. --------------- */

typedef struct
{
  KiltContext *ctx;
  KiltNode inputs[KILT_MAX_INPUTS];
  KiltNode node;
  GPtrArray *nodes;
  GPtrArray *bufs;
  KiltExec ex;
} Bare;

static cl_mem
bare_alloc (Bare *b, gsize floats)
{
  g_autoptr (GError) error = NULL;
  KiltBuffer *buf
      = kilt_buffer_new (b->ctx, KILT_MEM_WORKSPACE, 4 * MAX (floats, 1), &error, "test buffer");

  g_assert_no_error (error);
  g_ptr_array_add (b->bufs, buf);
  return buf->mem;
}

static KiltBuffer *
bare_buffer_of (Bare *b, cl_mem mem)
{
  for (guint i = 0; i < b->bufs->len; i++)
    {
      KiltBuffer *buf = g_ptr_array_index (b->bufs, i);
      if (buf->mem == mem)
        return buf;
    }
  g_assert_not_reached ();
}

static void
bare_write (Bare *b, cl_mem mem, const float *x, gsize n)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_buffer_write (bare_buffer_of (b, mem), 0, x, 4 * n, &error));
  g_assert_no_error (error);
}

static void
bare_read (Bare *b, cl_mem mem, float *x, gsize n)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_buffer_read (bare_buffer_of (b, mem), 0, x, 4 * n, &error));
  g_assert_no_error (error);
}

/* Builds @type over @n_sources distinct input nodes; @wiring[i] says which source input i
 * reads (so a source can feed the layer twice). */
static gboolean
bare_init (Bare *b, KiltLayerType type, const KiltLayerConfig *cfg, guint n_sources,
           const KiltShape *shapes, guint n_inputs, const guint *wiring, guint batch)
{
  g_autoptr (GError) error = NULL;

  memset (b, 0, sizeof *b);
  b->ctx = kilt_test_context ();
  if (b->ctx == NULL)
    return FALSE;
  b->nodes = g_ptr_array_new ();
  b->bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_buffer_free);
  for (guint i = 0; i < n_sources; i++)
    {
      b->inputs[i].index = i;
      b->inputs[i].name = (char *)"source";
      b->inputs[i].type = KILT_LAYER_INPUT;
      b->inputs[i].klass = &kilt_input_class;
      b->inputs[i].out_shape = shapes[i];
      b->inputs[i].out = bare_alloc (b, batch * kilt_shape_size (&shapes[i]));
      b->inputs[i].dout = bare_alloc (b, batch * kilt_shape_size (&shapes[i]));
      g_ptr_array_add (b->nodes, &b->inputs[i]);
    }
  b->node.index = n_sources;
  b->node.name = (char *)"under_test";
  b->node.type = type;
  b->node.klass = kilt_layer_class_get (type);
  b->node.cfg = *cfg;
  b->node.n_inputs = n_inputs;
  for (guint i = 0; i < n_inputs; i++)
    {
      b->node.inputs[i] = wiring[i];
      b->node.in_shape[i] = shapes[wiring[i]];
      b->node.din_needed[i] = TRUE;
    }
  g_ptr_array_add (b->nodes, &b->node);
  g_assert_true (b->node.klass->infer (&b->node, &error));
  g_assert_no_error (error);
  b->node.out = bare_alloc (b, batch * kilt_shape_size (&b->node.out_shape));
  b->node.dout = bare_alloc (b, batch * kilt_shape_size (&b->node.out_shape));
  b->ex.ctx = b->ctx;
  b->ex.nodes = b->nodes;
  b->ex.batch = batch;
  b->ex.training = TRUE;
  b->ex.seed = 1234;
  b->ex.step = 1;
  b->ex.params = bare_alloc (b, 1);
  b->ex.grads = bare_alloc (b, 1);
  b->ex.state = bare_alloc (b, 1);
  b->ex.workspace = bare_alloc (b, 1);
  b->ex.softmax_fused_node = G_MAXUINT;
  return TRUE;
}

static void
bare_clear (Bare *b)
{
  g_ptr_array_unref (b->bufs);
  g_ptr_array_unref (b->nodes);
}

static void
bare_forward (Bare *b, float *y)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (b->node.klass->forward (&b->node, &b->ex, &error));
  g_assert_no_error (error);
  bare_read (b, b->node.out, y, b->ex.batch * kilt_shape_size (&b->node.out_shape));
}

static void
test_dropout_mask (void)
{
  const guint batch = 4;
  const KiltShape shape = { 16, 64, 64 };
  const gsize n = batch * kilt_shape_size (&shape);
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_DROPOUT);
  const float rates[] = { 0.25f, 0.5f };
  g_autofree float *ones = g_new (float, n);
  g_autofree float *a = g_new (float, n);
  g_autofree float *again = g_new (float, n);
  g_autofree float *other = g_new (float, n);
  g_autoptr (GError) error = NULL;
  guint zero = 0;
  Bare b;

  for (gsize i = 0; i < n; i++)
    ones[i] = 1.0f;
  for (guint ri = 0; ri < G_N_ELEMENTS (rates); ri++)
    {
      gsize kept = 0, same_step = 0, diff_step = 0, diff_seed = 0, diff_node = 0;
      float scale = 1.0f / (1.0f - rates[ri]);
      double frac, sigma;

      cfg.rate = rates[ri];
      if (!bare_init (&b, KILT_LAYER_DROPOUT, &cfg, 1, &shape, 1, &zero, batch))
        return;
      bare_write (&b, b.inputs[0].out, ones, n);
      bare_forward (&b, a);
      for (gsize i = 0; i < n; i++)
        {
          g_assert_true (a[i] == 0.0f || a[i] == scale);
          kept += a[i] != 0.0f;
        }
      /* The kept share is binomial: allow 6 standard deviations. */
      frac = (double)kept / n;
      sigma = sqrt (rates[ri] * (1.0 - rates[ri]) / n);
      g_test_message ("rate %.2f: kept %.5f of %" G_GSIZE_FORMAT " (sigma %.2g)", rates[ri], frac,
                      n, sigma);
      g_assert_cmpfloat (fabs (frac - (1.0 - rates[ri])), <, 6 * sigma);

      /* Same seed and step: the same mask. */
      bare_forward (&b, again);
      for (gsize i = 0; i < n; i++)
        same_step += a[i] == again[i];
      g_assert_cmpuint (same_step, ==, n);

      /* Backward recomputes the same mask: dx = dy * mask * scale with dy = 1. */
      bare_write (&b, b.node.dout, ones, n);
      g_assert_true (b.node.klass->backward (&b.node, &b.ex, &error));
      g_assert_no_error (error);
      bare_read (&b, b.inputs[0].dout, again, n);
      for (gsize i = 0; i < n; i++)
        g_assert_cmpfloat (again[i], ==, a[i]);

      /* Another step, another seed, another node: other masks (about 2 r (1 - r) differ). */
      b.ex.step = 2;
      bare_forward (&b, other);
      for (gsize i = 0; i < n; i++)
        diff_step += (a[i] != 0.0f) != (other[i] != 0.0f);
      b.ex.step = 1;
      b.ex.seed = 99;
      bare_forward (&b, other);
      for (gsize i = 0; i < n; i++)
        diff_seed += (a[i] != 0.0f) != (other[i] != 0.0f);
      b.ex.seed = 1234;
      b.node.index = 7;
      bare_forward (&b, other);
      for (gsize i = 0; i < n; i++)
        diff_node += (a[i] != 0.0f) != (other[i] != 0.0f);
      {
        double expect = 2.0 * rates[ri] * (1.0 - rates[ri]) * n;
        g_test_message ("differing elements: step %" G_GSIZE_FORMAT ", seed %" G_GSIZE_FORMAT
                        ", node %" G_GSIZE_FORMAT " (expected about %.0f)",
                        diff_step, diff_seed, diff_node, expect);
        g_assert_cmpfloat (fabs (diff_step - expect), <, 0.02 * n);
        g_assert_cmpfloat (fabs (diff_seed - expect), <, 0.02 * n);
        g_assert_cmpfloat (fabs (diff_node - expect), <, 0.02 * n);
      }

      /* Inference is the identity. */
      b.ex.training = FALSE;
      bare_forward (&b, other);
      for (gsize i = 0; i < n; i++)
        g_assert_cmpfloat (other[i], ==, 1.0f);
      bare_clear (&b);
    }
}

static void
test_dropout_rate_errors (void)
{
  const float bad[] = { 1.0f, -0.1f, 1.5f, NAN };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      KiltNode node = { 0 };
      g_autoptr (GError) error = NULL;

      node.name = (char *)"drop_1";
      node.klass = &kilt_dropout_class;
      node.cfg = kilt_layer_config_default (KILT_LAYER_DROPOUT);
      node.cfg.rate = bad[i];
      node.n_inputs = 1;
      node.in_shape[0] = (KiltShape){ 4, 1, 1 };
      g_assert_false (kilt_dropout_class.infer (&node, &error));
      g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
      g_assert_nonnull (strstr (error->message, "drop_1"));
    }
}

/* ---- Batch normalisation -------------------------------------------------------------------- */

static void
test_batch_norm (void)
{
  KiltLayerConfig cfg = kilt_layer_config_default (KILT_LAYER_BATCH_NORM);

  one_input_case ("bn 4-D train", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 4, 5, 3 }, 3, TRUE);
  one_input_case ("bn 4-D infer", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 4, 5, 3 }, 3, FALSE);
  one_input_case ("bn flat train", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 7, 1, 1 }, 5, TRUE);
  one_input_case ("bn flat infer", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 7, 1, 1 }, 5, FALSE);
  /* More elements per channel than one work-group holds, and a faster running average. */
  cfg.momentum = 0.9f;
  cfg.epsilon = 1e-5f;
  one_input_case ("bn wide train", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 3, 17, 19 }, 3, TRUE);
  one_input_case ("bn batch 1 train", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 2, 3, 5 }, 1, TRUE);
  /* Each channel reduced in several slices, as on a large GPU: slices that do not divide the
   * channel evenly (969 elements in 7), and one left empty (5 elements in 4 slices of 2). */
  g_setenv ("KILT_BN_GROUPS", "7", TRUE);
  one_input_case ("bn wide train, 7 slices", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 3, 17, 19 },
                  3, TRUE);
  g_setenv ("KILT_BN_GROUPS", "4", TRUE);
  one_input_case ("bn flat train, 4 slices", KILT_LAYER_BATCH_NORM, &cfg, (KiltShape){ 7, 1, 1 }, 5,
                  TRUE);
  g_unsetenv ("KILT_BN_GROUPS");
}

static void
test_batch_norm_errors (void)
{
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;

  node.name = (char *)"bn_3";
  node.klass = &kilt_batch_norm_class;
  node.cfg = kilt_layer_config_default (KILT_LAYER_BATCH_NORM);
  node.n_inputs = 1;
  node.in_shape[0] = (KiltShape){ 6, 2, 2 };
  g_assert_true (kilt_batch_norm_class.infer (&node, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (node.n_params, ==, 12);
  g_assert_cmpuint (node.n_state, ==, 12);
  node.cfg.epsilon = 0.0f;
  g_assert_false (kilt_batch_norm_class.infer (&node, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "bn_3"));
}

/* ---- Merge layers --------------------------------------------------------------------------- */

static void
merge_case (const char *label, KiltLayerType type, guint n, const KiltShape *shapes, guint batch)
{
  KiltLayerCheck c = { 0 };

  c.label = label;
  c.type = type;
  c.cfg = kilt_layer_config_default (type);
  c.n_inputs = n;
  for (guint i = 0; i < n; i++)
    c.in[i] = shapes[i];
  c.batch = batch;
  c.training = TRUE;
  c.seed = 31;
  kilt_test_layer_case (&c);
}

static void
test_add (void)
{
  const KiltShape s2[] = { { 3, 4, 5 }, { 3, 4, 5 } };
  const KiltShape s3[] = { { 7, 1, 1 }, { 7, 1, 1 }, { 7, 1, 1 } };
  KiltShape s8[8];

  for (guint i = 0; i < 8; i++)
    s8[i] = (KiltShape){ 2, 3, 1 };
  merge_case ("add 2", KILT_LAYER_ADD, 2, s2, 3);
  merge_case ("add 3 flat", KILT_LAYER_ADD, 3, s3, 2);
  merge_case ("add 8", KILT_LAYER_ADD, 8, s8, 3);
}

static void
test_concatenate (void)
{
  const KiltShape s2[] = { { 2, 3, 5 }, { 5, 3, 5 } };
  const KiltShape s3[] = { { 1, 1, 1 }, { 4, 1, 1 }, { 2, 1, 1 } };
  const KiltShape s4[] = { { 3, 2, 2 }, { 1, 2, 2 }, { 3, 2, 2 }, { 2, 2, 2 } };

  merge_case ("concat 2", KILT_LAYER_CONCATENATE, 2, s2, 3);
  merge_case ("concat 3 flat", KILT_LAYER_CONCATENATE, 3, s3, 3);
  merge_case ("concat 4", KILT_LAYER_CONCATENATE, 4, s4, 1);
}

/* One source feeding the layer twice: the first gradient write overwrites (beta 0), the second
 * adds (beta 1), as the executor arranges. */
static void
repeated_input_case (KiltLayerType type)
{
  const guint batch = 3, wiring[2] = { 0, 0 };
  const KiltShape shape = { 3, 2, 3 };
  const gsize n_in = batch * kilt_shape_size (&shape);
  KiltLayerConfig cfg = kilt_layer_config_default (type);
  g_autoptr (GError) error = NULL;
  g_autofree float *dy = NULL, *dx = g_new (float, n_in);
  gsize n_out;
  KiltRng rng;
  Bare b;

  if (!bare_init (&b, type, &cfg, 1, &shape, 2, wiring, batch))
    return;
  n_out = batch * kilt_shape_size (&b.node.out_shape);
  dy = g_new (float, n_out);
  kilt_rng_init (&rng, 5);
  for (gsize i = 0; i < n_out; i++)
    dy[i] = (float)(2 * kilt_rng_uniform (&rng) - 1);
  for (gsize i = 0; i < n_in; i++)
    dx[i] = 1000.0f;
  bare_write (&b, b.node.dout, dy, n_out);
  bare_write (&b, b.inputs[0].dout, dx, n_in);
  b.node.din_beta[0] = 0.0f;
  b.node.din_beta[1] = 1.0f;
  g_assert_true (b.node.klass->backward (&b.node, &b.ex, &error));
  g_assert_no_error (error);
  bare_read (&b, b.inputs[0].dout, dx, n_in);
  for (guint bi = 0; bi < batch; bi++)
    for (gsize j = 0; j < kilt_shape_size (&shape); j++)
      {
        gsize i = bi * kilt_shape_size (&shape) + j, o1, o2;
        if (type == KILT_LAYER_ADD)
          o1 = o2 = i;
        else
          {
            o1 = bi * 2 * kilt_shape_size (&shape) + j;
            o2 = o1 + kilt_shape_size (&shape);
          }
        g_assert_cmpfloat (fabs (dx[i] - (dy[o1] + dy[o2])), <, 1e-6);
      }
  bare_clear (&b);
}

static void
test_repeated_input (void)
{
  repeated_input_case (KILT_LAYER_ADD);
  repeated_input_case (KILT_LAYER_CONCATENATE);
}

static void
expect_infer_error (const KiltLayerClass *klass, guint n, const KiltShape *shapes,
                    const char *const *needles)
{
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;

  node.name = (char *)"merge_9";
  node.klass = klass;
  node.cfg = kilt_layer_config_default (klass->type);
  node.n_inputs = n;
  for (guint i = 0; i < n; i++)
    node.in_shape[i] = shapes[i];
  g_assert_false (klass->infer (&node, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "merge_9"));
  for (guint i = 0; needles[i]; i++)
    g_assert_nonnull (strstr (error->message, needles[i]));
}

static void
test_merge_errors (void)
{
  const KiltShape add_bad[] = { { 3, 4, 5 }, { 3, 4, 5 }, { 2, 4, 5 } };
  const KiltShape cat_bad[] = { { 3, 4, 5 }, { 6, 5, 4 } };
  const KiltShape one[] = { { 3, 1, 1 } };
  const char *add_needles[] = { "4x5x3", "input 3", "4x5x2", NULL };
  const char *cat_needles[] = { "4x5x3", "input 2", "5x4x6", NULL };
  const char *count_needles[] = { "got 1", NULL };
  KiltNode node = { 0 };
  g_autoptr (GError) error = NULL;

  expect_infer_error (&kilt_add_class, 3, add_bad, add_needles);
  expect_infer_error (&kilt_concatenate_class, 2, cat_bad, cat_needles);
  expect_infer_error (&kilt_add_class, 1, one, count_needles);
  expect_infer_error (&kilt_concatenate_class, 1, one, count_needles);

  /* Concatenate joins channels: the output has their sum. */
  node.name = (char *)"cat";
  node.klass = &kilt_concatenate_class;
  node.n_inputs = 2;
  node.in_shape[0] = (KiltShape){ 3, 4, 5 };
  node.in_shape[1] = (KiltShape){ 6, 4, 5 };
  g_assert_true (kilt_concatenate_class.infer (&node, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (node.out_shape.c, ==, 9);
  g_assert_cmpuint (node.out_shape.h, ==, 4);
  g_assert_cmpuint (node.out_shape.w, ==, 5);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/layers-misc/dropout", test_dropout);
  g_test_add_func ("/layers-misc/dropout-mask", test_dropout_mask);
  g_test_add_func ("/layers-misc/dropout-rate-errors", test_dropout_rate_errors);
  g_test_add_func ("/layers-misc/batch-norm", test_batch_norm);
  g_test_add_func ("/layers-misc/batch-norm-errors", test_batch_norm_errors);
  g_test_add_func ("/layers-misc/add", test_add);
  g_test_add_func ("/layers-misc/concatenate", test_concatenate);
  g_test_add_func ("/layers-misc/repeated-input", test_repeated_input);
  g_test_add_func ("/layers-misc/merge-errors", test_merge_errors);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
