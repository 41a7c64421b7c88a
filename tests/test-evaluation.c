/* The evaluation of a trained classifier: per-sample predictions against the plain-C model,
 * the confusion matrix against the trainer's accuracy and a hand count, JSON and bad input. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-evaluation.h"
#include "kilt-reference.h"
#include "kilt-rng.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define N_CLASSES 4
#define SIDE      6
#define N_TEST    61 /* two batches of 32 less three: the last one partial */

/* Conv2D (3 filters, relu) -> Flatten -> Dense softmax over 4 classes of 1 x 6 x 6 images. */
static KiltModel *
small_model (void)
{
  KiltModel *m = kilt_model_new ("small");
  KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_CONV2D);
  g_autoptr (GError) error = NULL;

  kilt_model_add_input (m, NULL, (KiltShape){ 1, SIDE, SIDE });
  c.units = 3;
  c.same = TRUE;
  c.activation = KILT_ACT_RELU;
  kilt_model_append (m, KILT_LAYER_CONV2D, &c);
  kilt_model_append (m, KILT_LAYER_FLATTEN, NULL);
  c = kilt_layer_config_default (KILT_LAYER_DENSE);
  c.units = N_CLASSES;
  c.activation = KILT_ACT_SOFTMAX;
  kilt_model_append (m, KILT_LAYER_DENSE, &c);
  m->loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
  g_assert_true (kilt_model_build (m, &error));
  g_assert_no_error (error);
  return m;
}

/* Random bytes and random labels: a random model gets some right and most wrong. */
static KiltDataset *
random_data (gsize n_test, gsize n_val)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  KiltSplit *splits[] = { &ds->train, &ds->test, &ds->val };
  gsize sizes[] = { 8, n_test, n_val };
  gsize ss = SIDE * SIDE;
  KiltRng rng;

  kilt_rng_init (&rng, 99);
  ds->name = g_strdup ("random");
  ds->source = g_strdup ("test-evaluation");
  ds->format = g_strdup ("sample");
  ds->shape = (KiltShape){ 1, SIDE, SIDE };
  ds->type = KILT_SAMPLE_U8;
  ds->n_classes = N_CLASSES;
  ds->class_names = g_strsplit ("cat dog bird fish", " ", -1);
  ds->n_targets = 1;
  for (guint s = 0; s < 3; s++)
    {
      KiltSplit *sp = splits[s];
      sp->n = sizes[s];
      sp->u8 = g_new (guint8, MAX (sp->n, 1) * ss);
      sp->labels = g_new (gint32, MAX (sp->n, 1));
      for (gsize i = 0; i < sp->n; i++)
        {
          sp->labels[i] = (gint32)kilt_rng_below (&rng, N_CLASSES);
          for (gsize p = 0; p < ss; p++)
            sp->u8[i * ss + p] = (guint8)kilt_rng_below (&rng, 256);
        }
    }
  kilt_dataset_compute_stats (ds);
  kilt_dataset_compute_hash (ds);
  return ds;
}

/* A checkpoint of @m's seeded initial weights, written into a fresh folder. */
static char *
write_checkpoint (KiltModel *m, float **params_out)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  char *path = g_build_filename (dir, "eval.ckpt", NULL);
  KiltCheckpoint ck = { 0 };
  g_autoptr (GError) error = NULL;

  ck.n_params = m->n_params;
  ck.n_state = m->n_state;
  ck.params = g_new0 (float, MAX (m->n_params, 1));
  ck.state = g_new0 (float, MAX (m->n_state, 1));
  ck.model_hash = kilt_model_hash (m);
  ck.seed = 5;
  ck.epochs_done = 1;
  ck.global_step = 3;
  kilt_model_init_params (m, 5, ck.params, ck.state);
  /* Larger weights than Glorot's make confident, varied predictions. */
  for (gsize i = 0; i < m->n_params; i++)
    ck.params[i] *= 4.0f;
  kilt_checkpoint_save (&ck, path, &error);
  g_assert_no_error (error);
  *params_out = ck.params;
  g_free (ck.state);
  return path;
}

static KiltTrainConfig
eval_config (const char *checkpoint)
{
  KiltTrainConfig c = kilt_train_config_default ();

  c.batch = 32;
  c.checkpoint_path = (char *)checkpoint;
  return c;
}

/* The device's per-sample figures are the plain-C model's; the matrix sums to the sample
 * count, its diagonal is the trainer's accuracy, and every per-class figure is a hand count. */
static void
test_against_reference (void)
{
  g_autoptr (KiltModel) m = small_model ();
  g_autoptr (KiltDataset) ds = random_data (N_TEST, 0);
  g_autofree float *params = NULL;
  g_autofree char *ck = write_checkpoint (m, &params);
  KiltTrainConfig cfg = eval_config (ck);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltEvaluation) ev = NULL;
  KiltReference *ref;
  g_autofree double *input = NULL, *targets = NULL;
  gsize ss = SIDE * SIDE;
  guint64 sum = 0, diag = 0;
  double loss = NAN, acc = NAN, worst = 0;
  guint n_out, distinct = 0, agree = 0;
  gboolean seen[N_CLASSES] = { FALSE };

  if (kilt_test_context () == NULL)
    return;
  ev = kilt_evaluation_run (m, ds, &cfg, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ev);
  g_assert_cmpuint (ev->n_samples, ==, N_TEST);
  g_assert_cmpint (ev->split, ==, KILT_SPLIT_TEST);
  g_assert_cmpstr (ev->class_names[1], ==, "dog");

  /* The plain-C model on the same inputs (x / 255) and weights. */
  ref = kilt_reference_new (m, N_TEST);
  for (gsize i = 0; i < m->n_params; i++)
    ref->params[i] = params[i];
  input = g_new (double, N_TEST *ss);
  targets = g_new (double, N_TEST);
  for (gsize i = 0; i < N_TEST * ss; i++)
    input[i] = ds->test.u8[i] / 255.0;
  for (gsize i = 0; i < N_TEST; i++)
    targets[i] = ds->test.labels[i];
  kilt_reference_forward (ref, input, targets, FALSE, 0, 0);
  n_out = kilt_model_n_outputs (m);
  for (gsize i = 0; i < N_TEST; i++)
    {
      const double *y = ref->out[kilt_model_n_nodes (m) - 1] + i * n_out;
      guint best = 0, second;
      for (guint j = 1; j < n_out; j++)
        if (y[j] > y[best])
          best = j;
      second = best == 0 ? 1 : 0;
      for (guint j = 0; j < n_out; j++)
        if (j != best && (y[j] > y[second] || second == best))
          second = j;
      worst = MAX (worst, fabs (y[ev->predicted[i]] - ev->probability[i]));
      worst = MAX (worst, fabs (y[ds->test.labels[i]] - ev->p_truth[i]));
      g_assert_cmpint (ev->truth[i], ==, ds->test.labels[i]);
      /* A near tie may go either way in float; anything clearer must agree. */
      if (y[best] - y[second] > 1e-4)
        {
          g_assert_cmpuint (ev->predicted[i], ==, best);
          agree++;
        }
      if (!seen[ev->predicted[i]])
        distinct++;
      seen[ev->predicted[i]] = TRUE;
    }
  kilt_reference_free (ref);
  g_test_message ("largest probability difference from the C reference %.2e; %u of %d clear", worst,
                  agree, N_TEST);
  g_assert_cmpfloat (worst, <, 1e-4);
  g_assert_cmpuint (agree, >, N_TEST / 2);
  g_assert_cmpuint (distinct, >=, 2); /* the figures below are not about one column */

  for (guint t = 0; t < N_CLASSES; t++)
    for (guint p = 0; p < N_CLASSES; p++)
      {
        sum += ev->confusion[t * N_CLASSES + p];
        if (t == p)
          diag += ev->confusion[t * N_CLASSES + p];
      }
  g_assert_cmpuint (sum, ==, N_TEST);
  g_assert_cmpuint (diag, ==, ev->correct);
  g_assert_cmpfloat_with_epsilon (ev->accuracy, (double)diag / N_TEST, 1e-12);

  g_assert_true (kilt_trainer_evaluate (m, ds, &cfg, &loss, &acc, &error));
  g_assert_no_error (error);
  g_test_message ("accuracy %.4f (trainer %.4f), loss %.5f (trainer %.5f)", ev->accuracy, acc,
                  ev->loss, loss);
  /* The trainer tallies in float on the device: the same count, to float's precision. */
  g_assert_cmpint (lround (acc * N_TEST), ==, (long)ev->correct);
  g_assert_cmpfloat_with_epsilon (ev->accuracy, acc, 1e-6);
  g_assert_cmpfloat_with_epsilon (ev->loss, loss, 1e-4 * fabs (loss));

  /* Per class, counted by hand from the per-sample predictions. */
  for (guint c = 0; c < N_CLASSES; c++)
    {
      guint tp = 0, fp = 0, fn = 0;
      for (gsize i = 0; i < N_TEST; i++)
        {
          gboolean is_t = ev->truth[i] == (gint32)c, is_p = ev->predicted[i] == c;
          tp += is_t && is_p;
          fp += !is_t && is_p;
          fn += is_t && !is_p;
        }
      g_assert_cmpuint (ev->support[c], ==, tp + fn);
      g_assert_cmpuint (ev->n_predicted[c], ==, tp + fp);
      if (tp + fp)
        g_assert_cmpfloat_with_epsilon (ev->precision[c], (double)tp / (tp + fp), 1e-12);
      else
        g_assert_true (isnan (ev->precision[c]));
      if (tp + fn)
        g_assert_cmpfloat_with_epsilon (ev->recall[c], (double)tp / (tp + fn), 1e-12);
      else
        g_assert_true (isnan (ev->recall[c]));
      if (tp)
        g_assert_cmpfloat_with_epsilon (ev->f1[c], 2.0 * tp / (2.0 * tp + fp + fn), 1e-12);
    }

  /* Every misclassified sample, most confident first, and no correct one. */
  g_assert_cmpuint (ev->misclassified->len, ==, N_TEST - diag);
  for (guint i = 0; i < ev->misclassified->len; i++)
    {
      const KiltMisclassified *x = &g_array_index (ev->misclassified, KiltMisclassified, i);
      g_assert_cmpuint (x->truth, !=, x->predicted);
      g_assert_cmpuint (x->predicted, ==, ev->predicted[x->index]);
      g_assert_cmpint ((gint32)x->truth, ==, ds->test.labels[x->index]);
      if (i > 0)
        g_assert_cmpfloat (x->probability, <=,
                           g_array_index (ev->misclassified, KiltMisclassified, i - 1).probability);
    }
}

/* Without a test split the validation split is evaluated, and says so. */
static void
test_validation_split (void)
{
  g_autoptr (KiltModel) m = small_model ();
  g_autoptr (KiltDataset) ds = random_data (0, 20);
  g_autofree float *params = NULL;
  g_autofree char *ck = write_checkpoint (m, &params);
  KiltTrainConfig cfg = eval_config (ck);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltEvaluation) ev = NULL;

  if (kilt_test_context () == NULL)
    return;
  ev = kilt_evaluation_run (m, ds, &cfg, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ev->split, ==, KILT_SPLIT_VAL);
  g_assert_cmpuint (ev->n_samples, ==, 20);
}

/* The JSON form reads back to the same figures; a damaged one is refused, saying what. */
static void
test_json_round_trip (void)
{
  g_autoptr (KiltEvaluation) ev = kilt_evaluation_new (3, NULL, 6);
  g_autoptr (KiltEvaluation) back = NULL;
  g_autoptr (GError) error = NULL;
  gint32 truth[] = { 0, 0, 1, 2, 2, 2 };
  guint32 pred[] = { 0, 1, 1, 2, 0, 2 };
  JsonNode *node;
  g_autofree char *text = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();

  memcpy (ev->truth, truth, sizeof truth);
  memcpy (ev->predicted, pred, sizeof pred);
  for (guint i = 0; i < 6; i++)
    ev->probability[i] = ev->p_truth[i] = 0.5f + 0.05f * i;
  g_assert_true (kilt_evaluation_tally (ev, &error));
  g_assert_cmpuint (ev->correct, ==, 4);
  g_assert_cmpfloat_with_epsilon (ev->precision[0], 0.5, 1e-12); /* predicted 0 twice, once right */
  g_assert_cmpfloat_with_epsilon (ev->recall[2], 2.0 / 3, 1e-12);
  g_assert_cmpstr (ev->class_names[2], ==, "2");
  /* Most confident first: sample 4 (0.70) before sample 1 (0.55). */
  g_assert_cmpuint (ev->misclassified->len, ==, 2);
  g_assert_cmpuint (g_array_index (ev->misclassified, KiltMisclassified, 0).index, ==, 4);

  node = kilt_evaluation_to_json (ev, 1);
  back = kilt_evaluation_from_json (node, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (back->n_samples, ==, 6);
  g_assert_cmpuint (back->correct, ==, 4);
  g_assert_cmpmem (back->confusion, 9 * sizeof (guint64), ev->confusion, 9 * sizeof (guint64));
  for (guint c = 0; c < 3; c++)
    {
      g_assert_cmpfloat_with_epsilon (back->recall[c], ev->recall[c], 1e-12);
      g_assert_cmpfloat_with_epsilon (back->f1[c], ev->f1[c], 1e-12);
    }
  g_assert_cmpuint (back->misclassified->len, ==, 1); /* bounded by the writer */
  g_assert_null (back->truth);
  g_assert_null (g_array_index (back->misclassified, KiltMisclassified, 0).path);
  json_node_unref (node);

  /* With each sample's file (an image folder), the misclassified name theirs, in JSON too. */
  {
    const char *files[]
        = { "d/0.png", "d/1.png", "d/2.png", "d/3.png", "d/4.png", "d/5.png", NULL };
    g_autoptr (KiltEvaluation) again = NULL;
    ev->paths = g_strdupv ((char **)files);
    g_assert_true (kilt_evaluation_tally (ev, &error));
    g_assert_cmpstr (g_array_index (ev->misclassified, KiltMisclassified, 0).path, ==, "d/4.png");
    g_assert_cmpstr (g_array_index (ev->misclassified, KiltMisclassified, 1).path, ==, "d/1.png");
    node = kilt_evaluation_to_json (ev, 2);
    again = kilt_evaluation_from_json (node, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (again->misclassified->len, ==, 2);
    g_assert_cmpstr (g_array_index (again->misclassified, KiltMisclassified, 0).path, ==,
                     "d/4.png");
    g_assert_cmpstr (g_array_index (again->misclassified, KiltMisclassified, 1).path, ==,
                     "d/1.png");
    /* A path that is not a string is refused, naming the entry. */
    json_object_set_int_member (
        json_array_get_object_element (
            json_object_get_array_member (json_node_get_object (node), "misclassified"), 1),
        "path", 3);
    g_clear_pointer (&again, kilt_evaluation_free);
    again = kilt_evaluation_from_json (node, &error);
    g_assert_null (again);
    g_assert_nonnull (strstr (error->message, "misclassified entry 1: path"));
    g_clear_error (&error);
  }

  /* A matrix that does not sum to the samples. */
  json_object_set_int_member (json_node_get_object (node), "samples", 7);
  g_clear_pointer (&back, kilt_evaluation_free);
  back = kilt_evaluation_from_json (node, &error);
  g_assert_null (back);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "summing to the 7 samples"));
  g_clear_error (&error);
  json_node_unref (node);

  g_assert_true (json_parser_load_from_data (
      parser,
      "{\"classes\": 2, \"samples\": 1, \"class_names\": [\"a\", \"b\"], "
      "\"confusion\": [[0, 1], [0, 0]], \"misclassified\": [{\"index\": 5, \"true\": 0, "
      "\"predicted\": 1}]}",
      -1, NULL));
  back = kilt_evaluation_from_json (json_parser_get_root (parser), &error);
  g_assert_null (back);
  g_assert_nonnull (strstr (error->message, "misclassified entry 0"));
  g_assert_nonnull (strstr (error->message, "\"index\""));
  g_clear_error (&error);

  /* A label outside the classes. */
  ev->truth[3] = 3;
  g_assert_false (kilt_evaluation_tally (ev, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA);
  g_assert_nonnull (strstr (error->message, "sample 3 has label 3"));
}

/* What cannot be evaluated says why, naming the model, the data or the file. */
static void
test_refusals (void)
{
  g_autoptr (KiltModel) m = small_model ();
  g_autoptr (KiltDataset) ds = random_data (10, 0);
  g_autoptr (KiltDataset) none = random_data (0, 0);
  g_autofree float *params = NULL;
  g_autofree char *ck = write_checkpoint (m, &params);
  KiltTrainConfig cfg = eval_config (ck), bare = eval_config (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  KiltEvaluation *ev;

  if (kilt_test_context () == NULL)
    return;
  ev = kilt_evaluation_run (m, none, &cfg, NULL, NULL, NULL, &error);
  g_assert_null (ev);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA);
  g_clear_error (&error);

  ev = kilt_evaluation_run (m, ds, &bare, NULL, NULL, NULL, &error);
  g_assert_null (ev);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "checkpoint"));
  g_clear_error (&error);

  g_cancellable_cancel (cancel);
  ev = kilt_evaluation_run (m, ds, &cfg, NULL, NULL, cancel, &error);
  g_assert_null (ev);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Three classes of data for a four-class model. */
  ds->n_classes = 3;
  ev = kilt_evaluation_run (m, ds, &cfg, NULL, NULL, NULL, &error);
  g_assert_null (ev);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "4 outputs"));
  g_clear_error (&error);
  ds->n_classes = N_CLASSES;

  /* Another model's checkpoint. */
  {
    g_autoptr (KiltModel) other = kilt_model_new ("other");
    KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_DENSE);
    kilt_model_add_input (other, NULL, (KiltShape){ 1, SIDE, SIDE });
    kilt_model_append (other, KILT_LAYER_FLATTEN, NULL);
    c.units = N_CLASSES;
    c.activation = KILT_ACT_SOFTMAX;
    kilt_model_append (other, KILT_LAYER_DENSE, &c);
    ev = kilt_evaluation_run (other, ds, &cfg, NULL, NULL, NULL, &error);
    g_assert_null (ev);
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL);
    g_assert_nonnull (strstr (error->message, ck));
    g_clear_error (&error);
  }
}

/* One image file classified as the same pixels are as a test sample; a file that is no image
 * is refused, naming it. */
static void
test_classify_file (void)
{
  g_autoptr (KiltModel) m = small_model ();
  g_autoptr (KiltDataset) ds = random_data (3, 0);
  g_autofree float *params = NULL;
  g_autofree char *ck = write_checkpoint (m, &params);
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *png = g_build_filename (dir, "one.png", NULL);
  g_autofree char *txt = g_build_filename (dir, "not-an-image.png", NULL);
  KiltTrainConfig cfg = eval_config (ck);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltEvaluation) ev = NULL;
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, SIDE, SIDE);
  g_autofree float *scores = NULL;
  guint n = 0;

  if (kilt_test_context () == NULL)
    return;
  for (guint y = 0; y < SIDE; y++)
    for (guint x = 0; x < SIDE; x++)
      {
        guint8 *p = gdk_pixbuf_get_pixels (pb) + y * gdk_pixbuf_get_rowstride (pb) + x * 3;
        p[0] = p[1] = p[2] = ds->test.u8[2 * SIDE * SIDE + y * SIDE + x];
      }
  g_assert_true (gdk_pixbuf_save (pb, png, "png", &error, NULL));
  ev = kilt_evaluation_run (m, ds, &cfg, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (kilt_evaluation_classify_file (m, ds, &cfg, png, &scores, &n, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, N_CLASSES);
  g_assert_cmpfloat_with_epsilon (scores[ev->predicted[2]], ev->probability[2], 1e-6);
  for (guint j = 0; j < n; j++)
    g_assert_cmpfloat (scores[j], <=, scores[ev->predicted[2]]);

  g_assert_true (g_file_set_contents (txt, "hello\n", -1, NULL));
  g_clear_pointer (&scores, g_free);
  g_assert_false (kilt_evaluation_classify_file (m, ds, &cfg, txt, &scores, &n, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA);
  g_assert_nonnull (strstr (error->message, txt));
  g_assert_null (scores);
}

/* The mean loss and accuracy of the plain-C model's predictions on the test split, of each
 * image alone or averaged with its mirror's (flip test-time augmentation). */
static void
reference_figures (KiltModel *m, const KiltDataset *ds, const float *params, gboolean tta,
                   double *loss, double *acc)
{
  KiltReference *ref = kilt_reference_new (m, N_TEST);
  g_autofree double *input = g_new (double, N_TEST *SIDE *SIDE);
  g_autofree double *mirrored = g_new (double, N_TEST *SIDE *SIDE);
  g_autofree double *targets = g_new (double, N_TEST);
  g_autofree double *y = g_new (double, N_TEST *N_CLASSES);
  guint out = kilt_model_n_nodes (m) - 1;

  for (gsize i = 0; i < m->n_params; i++)
    ref->params[i] = params[i];
  for (gsize i = 0; i < N_TEST; i++)
    {
      targets[i] = ds->test.labels[i];
      for (guint r = 0; r < SIDE; r++)
        for (guint c = 0; c < SIDE; c++)
          {
            gsize at = (i * SIDE + r) * SIDE;
            input[at + c] = ds->test.u8[at + c] / 255.0;
            mirrored[at + c] = ds->test.u8[at + SIDE - 1 - c] / 255.0;
          }
    }
  kilt_reference_forward (ref, input, targets, FALSE, 0, 0);
  memcpy (y, ref->out[out], sizeof (double) * N_TEST * N_CLASSES);
  if (tta)
    {
      kilt_reference_forward (ref, mirrored, targets, FALSE, 0, 0);
      for (gsize i = 0; i < N_TEST * N_CLASSES; i++)
        y[i] = (y[i] + ref->out[out][i]) / 2;
    }
  *loss = *acc = 0;
  for (gsize i = 0; i < N_TEST; i++)
    {
      const double *p = y + i * N_CLASSES;
      guint best = 0;
      for (guint j = 1; j < N_CLASSES; j++)
        if (p[j] > p[best])
          best = j;
      *loss -= log (CLAMP (p[ds->test.labels[i]], 1e-7, 1 - 1e-7)) / N_TEST;
      *acc += (best == (guint)ds->test.labels[i]) / (double)N_TEST;
    }
  kilt_reference_free (ref);
}

/* Flip test-time augmentation: the trainer's test figures are those of the mean of each image's
 * and its mirror's predicted probabilities, as the plain-C model gives them, and not the
 * figures without it; data that are not images are refused. */
static void
test_tta_flip (void)
{
  g_autoptr (KiltModel) m = small_model ();
  g_autoptr (KiltDataset) ds = random_data (N_TEST, 0);
  g_autofree float *params = NULL;
  g_autofree char *ck = write_checkpoint (m, &params);
  KiltTrainConfig cfg = eval_config (ck);
  g_autoptr (GError) error = NULL;
  double loss = NAN, acc = NAN, plain_loss = NAN, plain_acc = NAN, ref_loss, ref_acc;
  double ref_plain_loss, ref_plain_acc;

  if (kilt_test_context () == NULL)
    return;
  g_assert_true (kilt_trainer_evaluate (m, ds, &cfg, &plain_loss, &plain_acc, &error));
  g_assert_no_error (error);
  cfg.tta_flip = TRUE;
  g_assert_true (kilt_trainer_evaluate (m, ds, &cfg, &loss, &acc, &error));
  g_assert_no_error (error);
  reference_figures (m, ds, params, FALSE, &ref_plain_loss, &ref_plain_acc);
  reference_figures (m, ds, params, TRUE, &ref_loss, &ref_acc);
  g_test_message ("plain: loss %.6f acc %.4f (C %.6f %.4f); flip TTA: loss %.6f acc %.4f (C %.6f "
                  "%.4f)",
                  plain_loss, plain_acc, ref_plain_loss, ref_plain_acc, loss, acc, ref_loss,
                  ref_acc);
  g_assert_cmpfloat_with_epsilon (plain_loss, ref_plain_loss, 1e-5 * ref_plain_loss);
  g_assert_cmpfloat_with_epsilon (loss, ref_loss, 1e-5 * ref_loss);
  /* A near tie could go either way in float: at most one sample's worth. */
  g_assert_cmpfloat (fabs (acc - ref_acc), <=, 1.0 / N_TEST + 1e-9);
  g_assert_cmpfloat (fabs (loss - plain_loss), >, 1e-3);

  {
    /* The per-sample evaluation (eval --confusion, the window's Evaluate view) averages the
     * same two predictions: its figures are the C model's too. */
    KiltEvaluation *ev = kilt_evaluation_run (m, ds, &cfg, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_test_message ("per-sample flip TTA: loss %.6f acc %.4f", ev->loss, ev->accuracy);
    g_assert_cmpfloat_with_epsilon (ev->loss, ref_loss, 1e-5 * ref_loss);
    g_assert_cmpfloat (fabs (ev->accuracy - ref_acc), <=, 1.0 / N_TEST + 1e-9);
    kilt_evaluation_free (ev);
  }

  {
    /* A CSV-like data set of 1-wide samples has nothing to mirror. */
    g_autoptr (KiltDataset) flat = random_data (N_TEST, 0);
    g_autoptr (KiltModel) dense = kilt_model_new ("dense");
    KiltLayerConfig c = kilt_layer_config_default (KILT_LAYER_DENSE);
    flat->shape = (KiltShape){ 1, SIDE * SIDE, 1 };
    kilt_model_add_input (dense, NULL, flat->shape);
    kilt_model_append (dense, KILT_LAYER_FLATTEN, NULL);
    c.units = N_CLASSES;
    c.activation = KILT_ACT_SOFTMAX;
    kilt_model_append (dense, KILT_LAYER_DENSE, &c);
    dense->loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
    g_assert_true (kilt_model_build (dense, &error));
    g_assert_no_error (error);
    g_autofree float *dense_params = NULL;
    g_autofree char *dense_ck = write_checkpoint (dense, &dense_params);
    cfg.checkpoint_path = dense_ck;
    g_assert_false (kilt_trainer_evaluate (dense, flat, &cfg, &loss, &acc, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
    g_test_message ("%s", error->message);
    g_assert_nonnull (strstr (error->message, "mirrors images"));
  }
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/evaluation/against-reference", test_against_reference);
  g_test_add_func ("/evaluation/tta-flip", test_tta_flip);
  g_test_add_func ("/evaluation/validation-split", test_validation_split);
  g_test_add_func ("/evaluation/json", test_json_round_trip);
  g_test_add_func ("/evaluation/refusals", test_refusals);
  g_test_add_func ("/evaluation/classify-file", test_classify_file);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
