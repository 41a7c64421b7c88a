/* Transfer learning: frozen layers keep their weights and BN statistics, the trainable part's
 * gradients match the unfrozen model's, the memory saved, the flag through JSON and resume, a
 * new head on an imported Keras model, and kilt-cli's options. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-keras-file.h"
#include "kilt-keras.h"
#include "kilt-loss.h"
#include "kilt-model-json.h"
#include "kilt-onnx-export.h"
#include "kilt-run-store.h"
#include "kilt-optimizer.h"
#include "kilt-planner.h"
#include "kilt-reference.h"
#include "kilt-trainer.h"
#include "kilt-transfer.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>

#define SEED 7

/* ---- models and data ---------------------------------------------------------------------- */

static guint
add (KiltModel *m, KiltLayerType type, const char *name, KiltLayerConfig *c)
{
  guint prev = kilt_model_n_nodes (m) - 1;

  return kilt_model_add (m, type, name, c, 1, &prev);
}

/* conv_a (relu) -> conv_b (relu) [-> bn] -> pool -> flat -> hidden (relu) -> out (softmax),
 * on 1 x 8 x 8 inputs. */
static KiltModel *
small_model (gboolean with_bn)
{
  KiltModel *m = kilt_model_new ("small");
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  g_autoptr (GError) error = NULL;

  kilt_model_add_input (m, NULL, (KiltShape){ 1, 8, 8 });
  c.units = 4;
  c.same = TRUE;
  c.activation = KILT_ACT_RELU;
  add (m, KILT_LAYER_CONV2D, "conv_a", &c);
  add (m, KILT_LAYER_CONV2D, "conv_b", &c);
  if (with_bn)
    add (m, KILT_LAYER_BATCH_NORM, "bn", NULL);
  c = kilt_layer_config_default (KILT_LAYER_MAX_POOL2D);
  add (m, KILT_LAYER_MAX_POOL2D, "pool", &c);
  add (m, KILT_LAYER_FLATTEN, "flat", NULL);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = 8;
  c.activation = KILT_ACT_RELU;
  add (m, KILT_LAYER_DENSE, "hidden", &c);
  c.units = 3;
  c.activation = KILT_ACT_SOFTMAX;
  add (m, KILT_LAYER_DENSE, "out", &c);
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  return m;
}

static void
freeze (KiltModel *m, const char *const *names)
{
  for (guint i = 0; names[i]; i++)
    {
      KiltNode *n = kilt_model_find (m, names[i]);
      g_assert_nonnull (n);
      kilt_model_set_trainable (m, n->index, FALSE);
    }
}

/* @shape byte images of 3 classes: a bright band of rows whose place depends on the class. */
static KiltDataset *
bars (KiltShape shape, gsize n_train, gsize n_test)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  gsize size = kilt_shape_size (&shape);
  KiltRng rng;

  kilt_rng_init (&rng, 99);
  ds->name = g_strdup ("bars");
  ds->source = g_strdup ("test-transfer");
  ds->format = g_strdup ("sample");
  ds->shape = shape;
  ds->type = KILT_SAMPLE_U8;
  ds->n_classes = 3;
  ds->class_names = g_strsplit ("top middle bottom", " ", -1);
  ds->n_targets = 1;
  for (int s = 0; s < 2; s++)
    {
      KiltSplit *split = s ? &ds->test : &ds->train;
      split->n = s ? n_test : n_train;
      split->u8 = g_new (guint8, split->n * size);
      split->labels = g_new (gint32, split->n);
      for (gsize i = 0; i < split->n; i++)
        {
          guint label = kilt_rng_below (&rng, 3);
          split->labels[i] = (gint32)label;
          for (gsize p = 0; p < size; p++)
            {
              guint row = (guint)(p / shape.w % shape.h);
              gboolean bar = row * 3 / shape.h == label;
              split->u8[i * size + p] = (guint8)((bar ? 150 : 0) + kilt_rng_below (&rng, 100));
            }
        }
    }
  kilt_dataset_compute_stats (ds);
  kilt_dataset_compute_hash (ds);
  return ds;
}

/* ---- training runs ------------------------------------------------------------------------ */

typedef struct
{
  KiltRunStatus status;
  char *error;
} Outcome;

static void
on_event (const KiltEvent *ev, gpointer data)
{
  Outcome *o = data;

  if (ev->type == KILT_EVENT_FINISHED)
    {
      o->status = ev->status;
      o->error = ev->error ? g_strdup (ev->error->message) : NULL;
    }
}

/* Trains (the trainer takes @m and @ds) with Adam, batch 16, a checkpoint at @ckpt. */
static Outcome
train (KiltModel *m, KiltDataset *ds, guint epochs, const char *ckpt, gboolean resume)
{
  KiltTrainConfig c = kilt_train_config_default ();
  Outcome o = { KILT_RUN_RUNNING, NULL };
  KiltTrainer *t;

  c.epochs = epochs;
  c.batch = 16;
  c.seed = SEED;
  c.opt.lr = 0.01f;
  c.checkpoint_path = (char *)ckpt;
  c.resume = resume;
  c.profile = FALSE;
  t = kilt_trainer_new (m, ds, &c, on_event, &o);
  kilt_trainer_start (t);
  kilt_trainer_join (t);
  kilt_trainer_free (t);
  return o;
}

static KiltCheckpoint *
load_ckpt (const char *path)
{
  g_autoptr (GError) error = NULL;
  KiltCheckpoint *ck = kilt_checkpoint_load (path, &error);

  g_assert_no_error (error);
  return ck;
}

/* Every node with parameters: frozen ones bit for bit as they started, the others moved. */
static void
assert_frozen_kept (KiltModel *m, const float *p0, const float *s0, const KiltCheckpoint *ck)
{
  guint frozen = 0, trained = 0;

  g_assert_cmpuint (ck->n_params, ==, m->n_params);
  for (guint i = 0; i < kilt_model_n_nodes (m); i++)
    {
      KiltNode *n = kilt_model_node (m, i);
      gboolean same;
      if (n->n_params == 0)
        continue;
      same = memcmp (p0 + n->param_offset, ck->params + n->param_offset, 4 * n->n_params) == 0;
      if (n->frozen)
        g_assert_true (same);
      else
        g_assert_false (same);
      frozen += n->frozen;
      trained += !n->frozen;
      /* Running statistics: a frozen BN normalises with them and leaves them alone. */
      if (n->n_state)
        g_assert_true (
            (memcmp (s0 + n->state_offset, ck->state + n->state_offset, 4 * n->n_state) == 0)
            == n->frozen);
    }
  g_assert_cmpuint (frozen, >, 0);
  g_assert_cmpuint (trained, >, 0);
}

static void
test_frozen_kept (gconstpointer data)
{
  const char *const *names = data;
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *ckpt = g_build_filename (dir, "frozen.ckpt", NULL);
  KiltModel *m;
  g_autofree float *p0 = NULL, *s0 = NULL;
  Outcome o;
  g_autoptr (KiltCheckpoint) ck = NULL;
  gsize n_grads;
  guint n_ranges;

  if (kilt_test_context () == NULL)
    return;
  m = small_model (TRUE);
  freeze (m, names);
  n_grads = m->n_grads;
  n_ranges = m->n_grad_ranges;
  g_assert_cmpuint (n_grads, <, m->n_params);
  p0 = g_new (float, m->n_params);
  s0 = g_new (float, m->n_state);
  kilt_model_init_params (m, SEED, p0, s0);
  {
    g_autofree char *json = kilt_model_to_json (m);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltModel) copy = kilt_model_load_json_data (json, -1, "frozen", &error);
    g_assert_no_error (error);
    o = train (m, bars ((KiltShape){ 1, 8, 8 }, 64, 16), 1, ckpt, FALSE);
    g_assert_null (o.error);
    g_assert_cmpint (o.status, ==, KILT_RUN_FINISHED);
    ck = load_ckpt (ckpt);
    /* Adam: two state floats per trainable parameter, none for the frozen ones. */
    g_assert_cmpuint (ck->n_opt_state, ==, 2 * n_grads);
    g_assert_cmpuint (copy->n_grad_ranges, ==, n_ranges);
    assert_frozen_kept (copy, p0, s0, ck);
  }
}

/* The same model unfrozen moves every layer and the BN statistics: the checks above can fail. */
static void
test_unfrozen_moves (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *ckpt = g_build_filename (dir, "all.ckpt", NULL);
  KiltModel *m;
  g_autofree float *p0 = NULL, *s0 = NULL;
  g_autoptr (KiltCheckpoint) ck = NULL;
  g_autofree char *json = NULL;
  g_autoptr (KiltModel) copy = NULL;
  Outcome o;

  if (kilt_test_context () == NULL)
    return;
  m = small_model (TRUE);
  p0 = g_new (float, m->n_params);
  s0 = g_new (float, m->n_state);
  kilt_model_init_params (m, SEED, p0, s0);
  json = kilt_model_to_json (m);
  copy = kilt_model_load_json_data (json, -1, "all", NULL);
  o = train (m, bars ((KiltShape){ 1, 8, 8 }, 64, 16), 1, ckpt, FALSE);
  g_assert_cmpint (o.status, ==, KILT_RUN_FINISHED);
  ck = load_ckpt (ckpt);
  for (guint i = 0; i < kilt_model_n_nodes (copy); i++)
    {
      KiltNode *n = kilt_model_node (copy, i);
      if (n->n_params)
        g_assert_false (memcmp (p0 + n->param_offset, ck->params + n->param_offset, 4 * n->n_params)
                        == 0);
      if (n->n_state)
        g_assert_false (memcmp (s0 + n->state_offset, ck->state + n->state_offset, 4 * n->n_state)
                        == 0);
    }
}

/* ---- gradients and memory ----------------------------------------------------------------- */

/* One training forward, loss and backward of @m at batch 5 on fixed random data; returns the
 * gradient buffer (m->n_grads floats). */
static float *
step_grads (KiltContext *ctx, KiltModel *m, const float *params, const float *state)
{
  const guint batch = 5;
  gsize in_size = batch * kilt_shape_size (&kilt_model_node (m, 0)->out_shape);
  g_autofree float *x = g_new (float, in_size);
  float t[5], *grads = g_new0 (float, m->n_grads + 1);
  g_autoptr (GError) error = NULL;
  KiltExecutor *ex = kilt_executor_new (ctx, m, batch, TRUE, &error);
  KiltNode *out = kilt_model_output (m);
  KiltBuffer *tb, *mb;
  KiltRng rng;

  g_assert_no_error (error);
  kilt_rng_init (&rng, 2024);
  for (gsize i = 0; i < in_size; i++)
    x[i] = (float)kilt_rng_uniform (&rng);
  for (guint i = 0; i < batch; i++)
    t[i] = (float)kilt_rng_below (&rng, 3);
  tb = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, sizeof t, &error, "targets");
  mb = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * kilt_loss_metrics_floats (batch), &error,
                        "metrics");
  g_assert_no_error (error);
  ex->ex.softmax_fused_node = out->index;
  g_assert_true (kilt_executor_upload (ex, params, state, &error));
  g_assert_true (kilt_buffer_write (tb, 0, t, sizeof t, &error));
  g_assert_cmpint (clEnqueueWriteBuffer (ctx->queue, kilt_executor_input (ex), CL_TRUE, 0,
                                         4 * in_size, x, 0, NULL, NULL),
                   ==, CL_SUCCESS);
  g_assert_true (kilt_executor_forward (ex, TRUE, &error)
                 && kilt_loss_enqueue (ctx, m->loss, batch, batch, 3, out->out, tb->mem, out->dout,
                                       mb->mem, &error)
                 && kilt_executor_backward (ex, &error)
                 && kilt_buffer_read (ex->grads, 0, grads, 4 * m->n_grads, &error));
  g_assert_no_error (error);
  kilt_buffer_free (tb);
  kilt_buffer_free (mb);
  kilt_executor_free (ex);
  return grads;
}

static void
test_gradients_match (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (KiltModel) full = NULL, part = NULL;
  g_autofree float *p = NULL, *s = NULL, *gf = NULL, *gp = NULL;
  const char *frozen[] = { "conv_b", "hidden", NULL };
  guint compared = 0;

  if (ctx == NULL)
    return;
  full = small_model (FALSE);
  part = small_model (FALSE);
  freeze (part, frozen);
  /* Frozen in the middle: two runs of trainable parameters, conv_a and out. */
  g_assert_cmpuint (part->n_grad_ranges, ==, 2);
  p = g_new (float, full->n_params);
  s = g_new (float, full->n_state + 1);
  kilt_model_init_params (full, SEED, p, s);
  gf = step_grads (ctx, full, p, s);
  gp = step_grads (ctx, part, p, s);
  for (guint i = 0; i < kilt_model_n_nodes (part); i++)
    {
      KiltNode *n = kilt_model_node (part, i);
      KiltNode *nf = kilt_model_node (full, i);
      if (n->n_params == 0 || n->frozen)
        continue;
      /* The same kernels on the same values: equal to the bit, also below the frozen ones. */
      g_assert_cmpint (memcmp (gp + n->grad_offset, gf + nf->grad_offset, 4 * n->n_params), ==, 0);
      compared++;
    }
  g_assert_cmpuint (compared, ==, 2);
}

/* Freezing the two convolutions: no gradient for their weights nor for any output below the
 * first trainable layer, no optimizer state; the plan says so to the byte, as the executor
 * allocates. */
static void
test_memory_saved (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (KiltModel) full = NULL, part = NULL;
  const char *frozen[] = { "conv_a", "conv_b", NULL };
  KiltOptimizerConfig adam = kilt_optimizer_config_default (KILT_OPT_ADAM);
  g_autoptr (KiltPlan) pf = NULL, pp = NULL;
  g_autoptr (GError) error = NULL;
  guint64 bf[KILT_MEM_N_CATEGORIES], bp[KILT_MEM_N_CATEGORIES], saved;
  KiltNode *a, *b;
  KiltExecutor *ex;
  const guint batch = 4;
  gsize frozen_params;

  if (ctx == NULL)
    return;
  full = small_model (FALSE);
  part = small_model (FALSE);
  freeze (part, frozen);
  a = kilt_model_find (part, "conv_a");
  b = kilt_model_find (part, "conv_b");
  frozen_params = a->n_params + b->n_params;
  g_assert_cmpuint (part->n_grads, ==, part->n_params - frozen_params);
  kilt_executor_plan (full, batch, TRUE, ctx->info, bf);
  kilt_executor_plan (part, batch, TRUE, ctx->info, bp);
  /* Below the first trainable layer (hidden) no gradient flows: not through pool and flat
   * either. */
  saved = 4 * frozen_params;
  for (const char *const *n = (const char *const[]){ "conv_a", "conv_b", "pool", "flat", NULL }; *n;
       n++)
    saved += 4ull * batch * kilt_shape_size (&kilt_model_find (part, *n)->out_shape);
  g_assert_cmpuint (bf[KILT_MEM_GRADIENTS] - bp[KILT_MEM_GRADIENTS], ==, saved);
  pf = kilt_plan_compute (full, batch, &adam, 0, ctx->info, 0);
  pp = kilt_plan_compute (part, batch, &adam, 0, ctx->info, 0);
  g_assert_cmpuint (pp->bytes[KILT_MEM_OPTIMIZER], ==, 2 * 4 * part->n_grads);
  g_assert_cmpuint (pf->bytes[KILT_MEM_OPTIMIZER] - pp->bytes[KILT_MEM_OPTIMIZER], ==,
                    2 * 4 * frozen_params);
  ex = kilt_executor_new (ctx, part, batch, TRUE, &error);
  g_assert_no_error (error);
  g_assert_null (a->dout);
  g_assert_null (b->dout);
  g_assert_null (kilt_model_find (part, "pool")->dout);
  g_assert_null (kilt_model_find (part, "flat")->dout);
  g_assert_nonnull (kilt_model_find (part, "hidden")->dout);
  g_assert_false (kilt_model_find (part, "hidden")->din_needed[0]);
  g_assert_cmpuint (ex->grads->bytes, ==, 4 * part->n_grads);
  kilt_executor_free (ex);
}

/* A frozen BN under a trainable convolution: forward with the running statistics and dx through
 * that transform, against the plain-C reference. */
static void
test_frozen_bn_reference (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (KiltModel) m = NULL;
  const char *frozen[] = { "bn", NULL };
  g_autoptr (GError) error = NULL;
  double loss_error = -1, grad_error = -1;

  if (ctx == NULL)
    return;
  m = small_model (TRUE);
  freeze (m, frozen);
  g_assert_true (
      kilt_reference_check_step (ctx, m, 6, SEED, &loss_error, &grad_error, NULL, NULL, &error));
  g_assert_no_error (error);
  g_test_message ("frozen bn: loss error %.2g, gradient error %.2g", loss_error, grad_error);
  g_assert_cmpfloat (loss_error, <=, 1e-4);
  g_assert_cmpfloat (grad_error, >=, 0);
  g_assert_cmpfloat (grad_error, <=, 1e-4);
}

/* ---- the flag kept ------------------------------------------------------------------------ */

static void
test_json_and_resume (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *ckpt = g_build_filename (dir, "resume.ckpt", NULL);
  g_autoptr (KiltModel) probe = small_model (TRUE);
  const char *frozen[] = { "conv_a", "conv_b", "bn", NULL };
  g_autofree char *json = NULL;
  g_autofree float *p0 = NULL, *s0 = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltCheckpoint) ck = NULL;
  KiltModel *m, *again, *unfrozen;
  Outcome o;

  if (kilt_test_context () == NULL)
    return;
  freeze (probe, frozen);
  json = kilt_model_to_json (probe);
  g_assert_nonnull (strstr (json, "\"trainable\": false"));
  m = kilt_model_load_json_data (json, -1, "frozen.json", &error);
  g_assert_no_error (error);
  g_assert_true (kilt_model_build (m, &error));
  for (guint i = 0; i < kilt_model_n_nodes (m); i++)
    g_assert_cmpint (kilt_model_node (m, i)->frozen, ==, kilt_model_node (probe, i)->frozen);
  /* The structure hash leaves the flag out: a checkpoint evaluates with or without it. */
  {
    g_autoptr (KiltModel) plain = small_model (TRUE);
    g_assert_cmpuint (kilt_model_hash (plain), ==, kilt_model_hash (m));
  }
  p0 = g_new (float, m->n_params);
  s0 = g_new (float, m->n_state);
  kilt_model_init_params (m, SEED, p0, s0);
  o = train (m, bars ((KiltShape){ 1, 8, 8 }, 48, 16), 1, ckpt, FALSE);
  g_assert_cmpint (o.status, ==, KILT_RUN_FINISHED);

  /* Resumed from the model's JSON (as a run's record keeps it), the layers stay frozen. */
  again = kilt_model_load_json_data (json, -1, "frozen.json", &error);
  g_assert_no_error (error);
  o = train (again, bars ((KiltShape){ 1, 8, 8 }, 48, 16), 2, ckpt, TRUE);
  g_assert_null (o.error);
  g_assert_cmpint (o.status, ==, KILT_RUN_FINISHED);
  ck = load_ckpt (ckpt);
  g_assert_cmpuint (ck->epochs_done, ==, 2);
  assert_frozen_kept (probe, p0, s0, ck);

  /* Unfrozen, the optimizer state would not match: refused, not misread. */
  unfrozen = small_model (TRUE);
  o = train (unfrozen, bars ((KiltShape){ 1, 8, 8 }, 48, 16), 3, ckpt, TRUE);
  g_assert_cmpint (o.status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (o.error, "optimizer"));
  g_free (o.error);
}

/* ---- a new head --------------------------------------------------------------------------- */

static char *
keras_file (const char *name)
{
  return g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", name, NULL);
}

static void
test_replace_head (void)
{
  g_autofree char *path = keras_file ("weights-keras3-cnn.keras");
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *ckpt = g_build_filename (dir, "head.ckpt", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree float *w0 = NULL, *st0 = NULL;
  g_autofree char *json = NULL;
  g_autoptr (KiltCheckpoint) ck = NULL;
  g_autoptr (KiltModel) record = NULL;
  const float *wp, *ws;
  gsize base_params;
  KiltModel *m;
  Outcome o;

  if (kilt_test_context () == NULL)
    return;
  /* Without a new head the 5-class model is refused on 3 classes, saying what to do. */
  m = kilt_keras_file_load (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
  g_assert_no_error (error);
  o = train (m, bars ((KiltShape){ 3, 10, 10 }, 32, 16), 1, NULL, FALSE);
  g_assert_cmpint (o.status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (o.error, "use --replace-head to train a new 3-class head"));
  g_free (o.error);

  m = kilt_keras_file_load (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (kilt_model_n_outputs (m), ==, 5);
  g_assert_true (kilt_model_get_weights (m, &wp, &ws));
  w0 = g_memdup2 (wp, 4 * m->n_params);
  st0 = g_memdup2 (ws, 4 * (m->n_state + 1));
  g_assert_true (kilt_transfer_freeze_until (m, "max_pooling2d", &error));
  g_assert_true (kilt_transfer_replace_head (m, 3, SEED, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (kilt_model_n_outputs (m), ==, 3);
  g_assert_cmpstr (kilt_model_output (m)->name, ==, "head");
  g_assert_false (kilt_model_output (m)->frozen);
  g_assert_true (kilt_model_find (m, "conv2d")->frozen);
  g_assert_null (kilt_model_find (m, "dense_1"));
  /* Every layer before the head keeps its imported weights; the head is new. */
  g_assert_true (kilt_model_get_weights (m, &wp, &ws));
  base_params = kilt_model_output (m)->param_offset;
  g_assert_cmpint (memcmp (wp, w0, 4 * base_params), ==, 0);
  g_assert_cmpuint (m->n_params, ==, base_params + 12 * 3 + 3);
  json = kilt_model_to_json (m);
  record = kilt_model_load_json_data (json, -1, "head.json", &error);
  g_assert_no_error (error);
  g_assert_true (kilt_model_build (record, &error));
  o = train (m, bars ((KiltShape){ 3, 10, 10 }, 48, 16), 2, ckpt, FALSE);
  g_assert_null (o.error);
  g_assert_cmpint (o.status, ==, KILT_RUN_FINISHED);
  ck = load_ckpt (ckpt);
  g_assert_cmpuint (ck->n_params, ==, record->n_params);
  assert_frozen_kept (record, w0, st0, ck);
}

static void
test_bad_names (void)
{
  g_autoptr (KiltModel) m = small_model (TRUE);
  g_autoptr (GError) error = NULL;

  g_assert_false (kilt_transfer_freeze_until (m, "conv_c", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "no layer of that name"));
  g_assert_nonnull (strstr (error->message, "nearest are: conv_a, conv_b"));
  g_assert_cmpuint (kilt_model_n_frozen (m), ==, 0);
  g_clear_error (&error);
  m->loss = KILT_LOSS_MSE;
  g_assert_false (kilt_transfer_replace_head (m, 4, SEED, &error));
  g_assert_nonnull (strstr (error->message, "softmax"));
}

/* A Keras file's trainable = false freezes what the layer becomes, with a note. */
static void
test_keras_trainable (void)
{
  g_autofree char *path = keras_file ("keras3-cifar10_cnn.json");
  g_autofree char *text = NULL, *edited = NULL;
  g_autofree char *notes = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = NULL;
  char *at;
  guint frozen = 0;

  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  /* The model's own flag comes first; the next one is the first Conv2D's (the InputLayer has
   * none in Keras 3 files). */
  at = strstr (text, "\"trainable\": true");
  g_assert_nonnull (at);
  at = strstr (at + 1, "\"trainable\": true");
  g_assert_nonnull (at);
  edited = g_strdup_printf ("%.*s\"trainable\": false%s", (int)(at - text), text,
                            at + strlen ("\"trainable\": true"));
  m = kilt_keras_load_data (edited, -1, "frozen.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes,
                            &error);
  g_assert_no_error (error);
  g_assert_true (kilt_model_build (m, &error));
  for (guint i = 0; i < kilt_model_n_nodes (m); i++)
    frozen += kilt_model_node (m, i)->frozen;
  g_assert_cmpuint (frozen, >=, 1);
  g_assert_true (kilt_model_node (m, 1)->frozen);
  g_assert_cmpuint (kilt_model_node (m, 1)->type, ==, KILT_LAYER_CONV2D);
  g_assert_cmpuint (kilt_model_n_frozen (m), ==, 1);
  g_assert_nonnull (strstr (notes, "layer conv2d (Conv2D): frozen as in Keras"));
  g_clear_pointer (&m, kilt_model_free);
  g_clear_pointer (&notes, g_free);

  /* model.trainable = false: every layer. */
  at = strstr (text, "\"trainable\": true");
  g_free (edited);
  edited = g_strdup_printf ("%.*s\"trainable\": false%s", (int)(at - text), text,
                            at + strlen ("\"trainable\": true"));
  m = kilt_keras_load_data (edited, -1, "frozen.json", KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes,
                            &error);
  g_assert_no_error (error);
  g_assert_cmpuint (m->n_grads, ==, 0);
  g_assert_cmpuint (kilt_model_n_frozen (m), ==, 6);
  g_assert_nonnull (strstr (notes, "the whole model is frozen"));
}

/* ---- kilt-cli ----------------------------------------------------------------------------- */

static int
cli (const char *const *args, char **out, char **err)
{
  const char *exe = g_getenv ("KILT_CLI");
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  int status = -1;

  g_ptr_array_add (argv, (char *)exe);
  for (guint i = 0; args[i]; i++)
    g_ptr_array_add (argv, (char *)args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out,
                               err, &status, &error));
  g_assert_no_error (error);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
test_cli (void)
{
  g_autofree char *path = keras_file ("weights-keras3-cnn.keras");
  g_autofree char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
  const char *bad[] = { "summary", path, "--freeze-until", "bach_normalization", NULL };
  const char *good[] = { "summary", path, "--freeze-until", "max_pooling2d", NULL };

  if (g_getenv ("KILT_CLI") == NULL)
    {
      g_test_skip ("KILT_CLI does not name kilt-cli (meson sets it)");
      return;
    }
  g_assert_cmpint (cli (bad, &out, &err), !=, 0);
  g_assert_nonnull (strstr (err, "--freeze-until bach_normalization"));
  g_assert_nonnull (strstr (err, "nearest are: batch_normalization"));
  g_assert_cmpint (cli (good, &out2, &err2), ==, 0);
  /* Keras' counts: conv2d, batch_normalization (its 12 moving values too) frozen. */
  g_assert_nonnull (strstr (out2, "Trainable params: 1,389"));
  g_assert_nonnull (strstr (out2, "Non-trainable params: 208"));
  g_assert_nonnull (strstr (out2, "conv2d (Conv2D, frozen)"));
}

/* An image folder of @n_classes (3 or 5) classes of 10 x 10 RGB pictures, bars in a band of
 * rows per class. */
static char *
image_folder_of (guint n_classes)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  char *root = g_build_filename (dir, "bars", NULL);
  const char *classes[] = { "top", "middle", "bottom", "lower", "lowest" };
  KiltRng rng;

  kilt_rng_init (&rng, 5);
  for (guint c = 0; c < n_classes; c++)
    {
      g_autofree char *sub = g_build_filename (root, classes[c], NULL);
      g_assert_cmpint (g_mkdir_with_parents (sub, 0755), ==, 0);
      for (guint i = 0; i < 6; i++)
        {
          g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 10, 10);
          g_autofree char *name = g_strdup_printf ("%u.png", i);
          g_autofree char *png = g_build_filename (sub, name, NULL);
          g_autoptr (GError) error = NULL;
          for (int y = 0; y < 10; y++)
            for (int x = 0; x < 10; x++)
              {
                guint8 *p = gdk_pixbuf_get_pixels (pb) + y * gdk_pixbuf_get_rowstride (pb) + x * 3;
                gboolean bar = (guint)y * n_classes / 10 == c;
                for (int k = 0; k < 3; k++)
                  p[k] = (guint8)((bar ? 150 : 0) + kilt_rng_below (&rng, 100));
              }
          g_assert_true (gdk_pixbuf_save (pb, png, "png", &error, NULL));
        }
    }
  return root;
}

static char *
image_folder (void)
{
  return image_folder_of (3);
}

/* kilt-cli train on the 5-class Keras model and 3-class images: refused with the hint, then
 * trained with --replace-head and the base frozen. */
static void
test_cli_replace_head (void)
{
  g_autofree char *path = keras_file ("weights-keras3-cnn.keras");
  g_autofree char *data = NULL, *dir = kilt_test_tmpdir ();
  g_autofree char *ckpt = g_build_filename (dir, "cli.ckpt", NULL);
  g_autofree char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
  g_autoptr (KiltCheckpoint) ck = NULL;

  if (g_getenv ("KILT_CLI") == NULL || kilt_test_context () == NULL)
    {
      g_test_skip ("KILT_CLI does not name kilt-cli, or no device");
      return;
    }
  data = image_folder ();
  {
    const char *args[]
        = { "train", "--model", path, "--data", data, "--epochs", "1", "--batch", "4", NULL };
    g_assert_cmpint (cli (args, &out, &err), !=, 0);
    g_test_message ("%s", err);
    g_assert_nonnull (strstr (err, "use --replace-head to train a new 3-class head"));
  }
  {
    const char *args[] = { "train",
                           "--model",
                           path,
                           "--data",
                           data,
                           "--epochs",
                           "2",
                           "--batch",
                           "4",
                           "--replace-head",
                           "--freeze-until",
                           "max_pooling2d",
                           "--checkpoint",
                           ckpt,
                           NULL };
    g_assert_cmpint (cli (args, &out2, &err2), ==, 0);
    g_test_message ("%s%s", out2, err2);
    g_assert_nonnull (strstr (err2, "replaced by a new Dense \"head\" of 3 classes"));
    g_assert_nonnull (strstr (out2, "Finished"));
  }
  /* The file's 1,569 weights (and 28 running statistics) with a head of 12 x 3 + 3 instead of
   * 12 x 5 + 5; Adam state for the trainable part only (conv2d's 168 and
   * batch_normalization's 12 weights frozen). */
  ck = load_ckpt (ckpt);
  g_assert_cmpuint (ck->n_params, ==, 1569 - 65 + 39);
  g_assert_cmpuint (ck->n_state, ==, 28);
  g_assert_cmpuint (ck->n_opt_state, ==, 2 * (1569 - 65 + 39 - 168 - 12));
  /* predict rebuilds the same model from the same options, and names the data's classes. */
  {
    g_autofree char *png = g_build_filename (data, "top", "0.png", NULL);
    g_autofree char *pout = NULL, *perr = NULL, *kout = NULL, *kerr = NULL;
    g_autofree char *keras_out = g_build_filename (dir, "head.keras", NULL);
    const char *args[] = { "predict",        "--model",      path, "--data", data,
                           "--replace-head", "--checkpoint", ckpt, png,      NULL };
    const char *kargs[] = { "export",       "--model", path, "--data",  data, "--replace-head",
                            "--checkpoint", ckpt,      "-o", keras_out, NULL };
    g_assert_cmpint (cli (args, &pout, &perr), ==, 0);
    g_assert_nonnull (strstr (pout, "0.png: "));
    g_assert_nonnull (strstr (pout, "middle"));
    /* A .keras would carry the Keras file's old head: refused, not written wrong. */
    g_assert_cmpint (cli (kargs, &kout, &kerr), !=, 0);
    g_assert_nonnull (strstr (kerr, "write .onnx"));
    g_assert_false (g_file_test (keras_out, G_FILE_TEST_EXISTS));
  }
}

/* The model and the checkpoint's weights of run @id in the store at @db. */
static KiltModel *
run_model (const char *db, gint64 id, KiltCheckpoint **ck)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open_read_only (db, &error);
  g_autoptr (KiltRun) run = NULL;
  KiltModel *model;

  g_assert_no_error (error);
  run = kilt_run_store_get (store, id, &error);
  g_assert_no_error (error);
  model = kilt_model_load_json_data (run->record.model_json, -1, "run", &error);
  g_assert_no_error (error);
  *ck = load_ckpt (run->record.config.checkpoint_path);
  g_assert_cmpuint ((*ck)->n_params, ==, model->n_params);
  return model;
}

/* @model's weights (as kilt_model_set_weights got them) equal @ck's, bit for bit. */
static void
assert_weights_equal (KiltModel *model, const KiltCheckpoint *ck)
{
  const float *params, *state;

  g_assert_true (kilt_model_get_weights (model, &params, &state));
  g_assert_cmpmem (params, model->n_params * sizeof (float), ck->params,
                   ck->n_params * sizeof (float));
  g_assert_cmpmem (state, model->n_state * sizeof (float), ck->state, ck->n_state * sizeof (float));
}

/* kilt-cli export RUN-ID: a run of the Keras model goes out as .keras (the Keras file's own
 * architecture) and .weights.h5 holding the checkpoint's weights; a run with a new head goes
 * out as .weights.h5 and ONNX, and its .keras is refused, naming why. */
static void
test_cli_export_run (void)
{
  g_autofree char *path = keras_file ("weights-keras3-cnn.keras");
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *db = g_build_filename (dir, "runs.db", NULL);
  g_autofree char *ck5 = g_build_filename (dir, "five.ckpt", NULL);
  g_autofree char *ck3 = g_build_filename (dir, "three.ckpt", NULL);
  g_autofree char *five = NULL, *three = NULL;

  if (g_getenv ("KILT_CLI") == NULL || kilt_test_context () == NULL)
    {
      g_test_skip ("KILT_CLI does not name kilt-cli, or no device");
      return;
    }
  g_setenv ("KILT_RUNS_DB", db, TRUE);
  five = image_folder_of (5);
  {
    g_autofree char *out = NULL, *err = NULL;
    const char *args[] = { "train", "--model", path, "--data",       five, "--epochs",
                           "1",     "--batch", "4",  "--checkpoint", ck5,  NULL };
    g_assert_cmpint (cli (args, &out, &err), ==, 0);
  }
  three = image_folder ();
  {
    g_autofree char *out = NULL, *err = NULL;
    const char *args[]
        = { "train", "--model",        path,           "--data", three, "--epochs", "1", "--batch",
            "4",     "--replace-head", "--checkpoint", ck3,      NULL };
    g_assert_cmpint (cli (args, &out, &err), ==, 0);
  }

  /* Run 1, the Keras model as it came: .keras and .weights.h5 read back as trained. */
  {
    g_autoptr (KiltCheckpoint) ck = NULL;
    g_autoptr (KiltModel) model = run_model (db, 1, &ck);
    g_autofree char *keras = g_build_filename (dir, "run1.keras", NULL);
    g_autofree char *h5 = g_build_filename (dir, "run1.weights.h5", NULL);
    g_autofree char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *notes = NULL;
    g_autoptr (KiltModel) back = NULL;
    g_autoptr (GError) error = NULL;
    const char *a[] = { "export", "1", "-o", keras, NULL };
    const char *b[] = { "export", "#1", "-o", h5, NULL };

    g_assert_nonnull (model->keras_json);
    g_assert_cmpint (cli (a, &out, &err), ==, 0);
    g_test_message ("%s%s", out, err);
    g_assert_nonnull (strstr (out, "the Keras 3 architecture"));
    back = kilt_keras_file_load (keras, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (kilt_model_hash (back), ==, kilt_model_hash (model));
    assert_weights_equal (back, ck);
    /* The checkpoint's weights differ from the file's: training moved them. */
    {
      g_autoptr (KiltModel) orig
          = kilt_keras_file_load (path, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, NULL, &error);
      const float *p0, *s0;
      g_assert_no_error (error);
      g_assert_true (kilt_model_get_weights (orig, &p0, &s0));
      g_assert_true (memcmp (p0, ck->params, ck->n_params * sizeof (float)) != 0);
    }
    g_assert_cmpint (cli (b, &out2, &err2), ==, 0);
    g_assert_nonnull (strstr (out2, "tensors of Keras 3 weights"));
    g_assert_true (kilt_keras_file_load_weights (model, model->keras_json, h5, &error));
    g_assert_no_error (error);
    assert_weights_equal (model, ck);
  }

  /* Run 2 has a 3-class head the Keras file does not describe. */
  {
    g_autoptr (KiltCheckpoint) ck = NULL;
    g_autoptr (KiltModel) model = run_model (db, 2, &ck);
    g_autofree char *keras = g_build_filename (dir, "run2.keras", NULL);
    g_autofree char *h5 = g_build_filename (dir, "run2.weights.h5", NULL);
    g_autofree char *onnx = g_build_filename (dir, "run2.onnx", NULL);
    g_autofree char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
    g_autofree char *out3 = NULL, *err3 = NULL;
    g_autoptr (GError) error = NULL;
    const char *a[] = { "export", "2", "-o", keras, NULL };
    const char *b[] = { "export", "2", "-o", h5, NULL };
    const char *c[] = { "export", "2", "--format", "onnx", "-o", onnx, NULL };

    g_assert_cmpint (cli (a, &out, &err), ==, 1);
    g_assert_nonnull (strstr (err, "changed since it came from Keras"));
    g_assert_nonnull (strstr (err, "write .onnx or .weights.h5"));
    g_assert_false (g_file_test (keras, G_FILE_TEST_EXISTS));
    g_assert_cmpint (cli (b, &out2, &err2), ==, 0);
    g_assert_true (kilt_keras_file_load_weights (model, NULL, h5, &error));
    g_assert_no_error (error);
    assert_weights_equal (model, ck);
    if (kilt_onnx_export_available ())
      {
        g_assert_cmpint (cli (c, &out3, &err3), ==, 0);
        g_assert_nonnull (strstr (out3, "ONNX opset 17"));
        g_assert_true (g_file_test (onnx, G_FILE_TEST_IS_REGULAR));
      }
  }

  /* What cannot be exported says why. */
  {
    g_autofree char *o = g_build_filename (dir, "x.onnx", NULL);
    g_autofree char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
    const char *twice[] = { "export", "1", "--model", path, "-o", o, NULL };
    const char *missing[] = { "export", "7", "-o", o, NULL };
    g_assert_cmpint (cli (twice, &out, &err), ==, 2);
    g_assert_nonnull (strstr (err, "give one model"));
    g_assert_cmpint (cli (missing, &out2, &err2), ==, 1);
    g_assert_nonnull (strstr (err2, "7"));
    g_assert_false (g_file_test (o, G_FILE_TEST_EXISTS));
  }
  /* A name that says no format is refused, not written as something else. */
  {
    g_autofree char *o = g_build_filename (dir, "m.tflite", NULL);
    g_autofree char *out = NULL, *err = NULL;
    const char *args[] = { "export", "1", "-o", o, NULL };
    g_assert_cmpint (cli (args, &out, &err), ==, 2);
    g_assert_nonnull (strstr (err, "m.tflite: end the name in .keras"));
    g_assert_false (g_file_test (o, G_FILE_TEST_EXISTS));
  }
  /* A run that kept no weights, and one whose checkpoint is gone, say so. */
  {
    g_autofree char *o = g_build_filename (dir, "none.onnx", NULL);
    g_autofree char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *out3 = NULL;
    g_autofree char *err3 = NULL;
    const char *train[]
        = { "train", "--model", path, "--data", five, "--epochs", "1", "--batch", "4", NULL };
    const char *three_[] = { "export", "3", "-o", o, NULL };
    const char *two[] = { "export", "2", "-o", o, NULL };
    g_assert_cmpint (cli (train, &out, &err), ==, 0);
    g_assert_cmpint (cli (three_, &out2, &err2), ==, 1);
    g_assert_nonnull (strstr (err2, "run #3's model has no weights: its run kept none"));
    g_assert_cmpint (g_unlink (ck3), ==, 0);
    g_assert_cmpint (cli (two, &out3, &err3), ==, 1);
    g_assert_nonnull (strstr (err3, "three.ckpt is gone"));
    g_assert_false (g_file_test (o, G_FILE_TEST_EXISTS));
  }
  g_unsetenv ("KILT_RUNS_DB");
}

int
main (int argc, char **argv)
{
  static const char *const first[] = { "conv_a", "conv_b", "bn", NULL };
  static const char *const middle[] = { "hidden", NULL };

  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/transfer/frozen-kept/first-part", first, test_frozen_kept);
  g_test_add_data_func ("/transfer/frozen-kept/middle", middle, test_frozen_kept);
  g_test_add_func ("/transfer/unfrozen-moves", test_unfrozen_moves);
  g_test_add_func ("/transfer/gradients-match", test_gradients_match);
  g_test_add_func ("/transfer/memory-saved", test_memory_saved);
  g_test_add_func ("/transfer/frozen-bn-reference", test_frozen_bn_reference);
  g_test_add_func ("/transfer/json-and-resume", test_json_and_resume);
  g_test_add_func ("/transfer/replace-head", test_replace_head);
  g_test_add_func ("/transfer/bad-names", test_bad_names);
  g_test_add_func ("/transfer/keras-trainable", test_keras_trainable);
  g_test_add_func ("/transfer/cli", test_cli);
  g_test_add_func ("/transfer/cli-replace-head", test_cli_replace_head);
  g_test_add_func ("/transfer/cli-export-run", test_cli_export_run);
  return g_test_run ();
}
