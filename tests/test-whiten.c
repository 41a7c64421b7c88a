/* The whitening initialiser: the patch covariance against a plain double reference on
 * awkward shapes, its filters whitening the patches (W S W^T = diag (l / (l + eps)), the
 * second half the negatives), a model's layer set from normalised training images, its
 * gradient layout (kernel fixed, bias for its epochs), the JSON round trip and bad input. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-whiten.h"
#include "kilt-batcher.h"
#include "kilt-error.h"
#include "kilt-model-json.h"
#include "kilt-rng.h"

#include <math.h>
#include <string.h>

/* Random images whose channels and neighbouring pixels are correlated, as photographs are:
 * a smooth field per image plus noise, mixed across channels. */
static void
random_images (KiltRng *rng, const KiltShape *sh, gsize n, float *x)
{
  for (gsize s = 0; s < n; s++)
    for (guint c = 0; c < sh->c; c++)
      for (guint y = 0; y < sh->h; y++)
        for (guint xx = 0; xx < sh->w; xx++)
          {
            double base = sin (0.7 * y + 0.3 * xx + s) + 0.5 * c;
            x[((s * sh->c + c) * sh->h + y) * sh->w + xx]
                = (float)(base + 0.4 * kilt_rng_normal (rng));
          }
}

/* Written from the definition, another way round: every patch as a vector, then sums. */
static void
reference_covariance (const float *x, gsize n, const KiltShape *sh, guint kh, guint kw, double *cov)
{
  guint k = sh->c * kh * kw;
  gsize m = 0;
  g_autofree double *v = g_new (double, k);

  memset (cov, 0, sizeof (double) * k * k);
  for (gsize s = 0; s < n; s++)
    for (guint y = 0; y <= sh->h - kh; y++)
      for (guint xx = 0; xx <= sh->w - kw; xx++)
        {
          guint idx = 0;
          for (guint c = 0; c < sh->c; c++)
            for (guint i = 0; i < kh; i++)
              for (guint j = 0; j < kw; j++)
                v[idx++] = x[((s * sh->c + c) * sh->h + y + i) * sh->w + xx + j];
          for (guint a = 0; a < k; a++)
            for (guint b = 0; b < k; b++)
              cov[a * k + b] += v[a] * v[b];
          m++;
        }
  for (guint a = 0; a < k * k; a++)
    cov[a] /= (double)m;
}

static void
test_covariance (void)
{
  static const struct
  {
    KiltShape sh;
    guint kh, kw;
    gsize n;
  } cases[] = {
    { { 3, 32, 32 }, 2, 2, 3 }, /* airbench's */
    { { 2, 5, 7 }, 2, 3, 4 },   /* odd sizes, a kernel that is not square */
    { { 1, 3, 4 }, 3, 1, 2 },
    { { 3, 2, 2 }, 2, 2, 5 }, /* one patch an image */
  };
  KiltRng rng;

  kilt_rng_init (&rng, 11);
  for (guint t = 0; t < G_N_ELEMENTS (cases); t++)
    {
      const KiltShape *sh = &cases[t].sh;
      guint k = sh->c * cases[t].kh * cases[t].kw;
      g_autofree float *x = g_new (float, cases[t].n *kilt_shape_size (sh));
      g_autofree double *got = g_new (double, k *k), *want = g_new (double, k *k);
      double worst = 0, scale = 0;

      random_images (&rng, sh, cases[t].n, x);
      kilt_whiten_patch_covariance (x, cases[t].n, sh, cases[t].kh, cases[t].kw, got);
      reference_covariance (x, cases[t].n, sh, cases[t].kh, cases[t].kw, want);
      for (guint a = 0; a < k * k; a++)
        {
          worst = MAX (worst, fabs (got[a] - want[a]));
          scale = MAX (scale, fabs (want[a]));
        }
      g_test_message ("%ux%ux%u, %ux%u patches: covariance error %.2e of %.2e", sh->c, sh->h, sh->w,
                      cases[t].kh, cases[t].kw, worst, scale);
      g_assert_cmpfloat (worst, <=, 1e-12 * scale);
    }
}

/* The filters' outputs on the patches have covariance W S W^T: diagonal, l_i / (l_i + eps),
 * in descending order; filter K + i is -filter i. */
static void
test_filters (void)
{
  const KiltShape sh = { 3, 9, 11 };
  const guint kh = 2, kw = 2, k = 12, n = 6;
  const double eps = 5e-4;
  KiltRng rng;
  g_autofree float *x = g_new (float, n *kilt_shape_size (&sh));
  g_autofree double *cov = g_new (double, k *k);
  g_autofree float *w = g_new (float, 2 * k * k);
  double values[12], worst = 0;
  g_autoptr (GError) error = NULL;

  kilt_rng_init (&rng, 5);
  random_images (&rng, &sh, n, x);
  reference_covariance (x, n, &sh, kh, kw, cov);
  g_assert_true (kilt_whiten_filters (cov, k, eps, w, values, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < k; i++)
    {
      if (i > 0)
        g_assert_cmpfloat (values[i], <=, values[i - 1]);
      g_assert_cmpfloat (values[i], >, 0);
      for (guint j = 0; j < k; j++)
        {
          double wsw = 0;
          g_assert_cmpfloat (w[(k + i) * k + j], ==, -w[i * k + j]);
          for (guint a = 0; a < k; a++)
            for (guint b = 0; b < k; b++)
              wsw += (double)w[i * k + a] * cov[a * k + b] * w[j * k + b];
          worst = MAX (worst, fabs (wsw - (i == j ? values[i] / (values[i] + eps) : 0.0)));
        }
    }
  g_test_message ("W S W^T off its target by %.2e (eigenvalues %.3g to %.3g)", worst, values[0],
                  values[k - 1]);
  /* Float weights: a few float roundings of O(1) outputs. */
  g_assert_cmpfloat (worst, <=, 1e-5);
}

static const char *model_json
    = "{ \"format\": \"kilt-model\", \"version\": 1, \"name\": \"w\", \"loss\": "
      "\"softmax_cross_entropy\", \"input\": { \"name\": \"input\", \"channels\": 2, "
      "\"height\": 5, \"width\": 6 }, \"layers\": ["
      "{ \"name\": \"white\", \"type\": \"Conv2D\", \"filters\": 16, \"kernel_size\": [2, 2], "
      "\"padding\": \"valid\", \"kernel_initializer\": { \"whiten\": { \"samples\": 7, "
      "\"epsilon\": 0.001, \"bias_epochs\": 2 } } },"
      "{ \"name\": \"flat\", \"type\": \"Flatten\" },"
      "{ \"name\": \"out\", \"type\": \"Dense\", \"units\": 3, \"activation\": \"softmax\" } ] }";

static KiltDataset *
byte_images (const KiltShape *sh, gsize n, guint64 seed)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  gsize size = kilt_shape_size (sh);
  KiltRng rng;

  kilt_rng_init (&rng, seed);
  ds->name = g_strdup ("bytes");
  ds->shape = *sh;
  ds->type = KILT_SAMPLE_U8;
  ds->n_classes = 3;
  ds->n_targets = 1;
  ds->train.n = n;
  ds->train.u8 = g_new (guint8, n * size);
  ds->train.labels = g_new0 (gint32, n);
  for (gsize i = 0; i < n * size; i++)
    ds->train.u8[i] = (guint8)(i % 7 * 20 + kilt_rng_below (&rng, 100));
  kilt_dataset_compute_stats (ds);
  return ds;
}

/* The layer's kernel is the filters of the first 7 images, standardised per channel as the
 * batches are; the rest of the parameters are untouched. */
static void
test_model (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = kilt_model_load_json_data (model_json, -1, "test", &error);
  const KiltShape sh = { 2, 5, 6 };
  KiltDataset *ds = byte_images (&sh, 20, 3);
  gsize size = kilt_shape_size (&sh);
  g_autofree float *x = g_new (float, 7 * size);
  g_autofree float *params = NULL, *orig = NULL, *want = g_new (float, 16 * 8);
  g_autofree double *cov = g_new (double, 64);
  g_autofree float *norm = NULL;
  g_autoptr (GString) note = g_string_new (NULL);
  KiltNode *white;

  g_assert_no_error (error);
  white = kilt_model_find (m, "white");
  g_assert_cmpint (white->cfg.init, ==, KILT_INIT_WHITEN);
  g_assert_cmpuint (white->cfg.whiten_samples, ==, 7);
  g_assert_cmpuint (white->cfg.whiten_bias_epochs, ==, 2);
  g_assert_true (kilt_whiten_model_has (m));
  params = g_new (float, m->n_params);
  orig = g_new (float, m->n_params);
  kilt_model_init_params (m, 1, params, NULL);
  memcpy (orig, params, sizeof (float) * m->n_params);

  /* Standardised by hand from the data set's own statistics. */
  for (gsize s = 0; s < 7; s++)
    for (gsize i = 0; i < size; i++)
      {
        guint c = (guint)(i / 30);
        x[s * size + i] = (float)(((double)ds->train.u8[s * size + i] - ds->channel_mean[c])
                                  / ds->channel_std[c]);
      }
  reference_covariance (x, 7, &sh, 2, 2, cov);
  g_assert_true (kilt_whiten_filters (cov, 8, 0.001, want, NULL, &error));
  g_assert_true (kilt_whiten_init (m, ds, KILT_PREPROCESS_STANDARD, params, note, &error));
  g_assert_no_error (error);
  g_test_message ("%s", note->str);
  g_assert_nonnull (strstr (note->str, "white set from 7 training images' 2x2 patches"));
  for (guint i = 0; i < 16 * 8; i++)
    g_assert_cmpfloat (fabs (params[white->param_offset + i] - want[i]), <=,
                       1e-5 * MAX (1.0, fabs (want[i])));
  for (gsize i = white->param_offset + 16 * 8; i < m->n_params; i++)
    g_assert_cmpfloat (params[i], ==, orig[i]);

  /* The optimizer's view: the kernel fixed, the bias for two epochs, the Dense always. */
  g_assert_cmpuint (m->n_grad_ranges, ==, 3);
  g_assert_true (m->grad_ranges[0].fixed);
  g_assert_cmpuint (m->grad_ranges[0].n, ==, 16 * 8);
  g_assert_false (m->grad_ranges[1].fixed);
  g_assert_cmpuint (m->grad_ranges[1].n, ==, 16);
  g_assert_cmpuint (m->grad_ranges[1].until_epoch, ==, 2);
  g_assert_cmpuint (m->grad_ranges[2].until_epoch, ==, 0);
  g_assert_cmpuint (m->grad_ranges[2].param_offset, ==, white->param_offset + 16 * 9);

  /* Saved and read back as it was. */
  {
    g_autofree char *text = kilt_model_to_json (m);
    g_autoptr (KiltModel) back = kilt_model_load_json_data (text, -1, "saved", &error);
    g_assert_no_error (error);
    g_assert_nonnull (strstr (text, "\"whiten\": { \"samples\": 7, \"epsilon\": 0.001, "
                                    "\"bias_epochs\": 2 }"));
    g_assert_cmpint (kilt_model_find (back, "white")->cfg.init, ==, KILT_INIT_WHITEN);
    g_assert_cmpfloat (kilt_model_find (back, "white")->cfg.whiten_epsilon, ==, 0.001f);
  }
  kilt_dataset_free (ds);
}

static void
expect_error (const char *json, const KiltDataset *ds, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) m = kilt_model_load_json_data (json, -1, "bad.json", &error);

  if (m)
    {
      g_autofree float *params = g_new0 (float, m->n_params);
      g_assert_false (kilt_whiten_init (m, ds, KILT_PREPROCESS_SCALE, params, NULL, &error));
    }
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, what));
}

static void
test_bad (void)
{
  const KiltShape sh = { 2, 5, 6 };
  KiltDataset *ds = byte_images (&sh, 4, 1);
  const char *head = "{ \"format\": \"kilt-model\", \"version\": 1, \"name\": \"w\", \"loss\": "
                     "\"softmax_cross_entropy\", \"input\": { \"channels\": 2, \"height\": 5, "
                     "\"width\": 6 }, \"layers\": [";
  g_autofree char *filters = g_strconcat (
      head,
      "{ \"name\": \"w12\", \"type\": \"Conv2D\", \"filters\": 12, \"kernel_size\": 2, "
      "\"kernel_initializer\": \"whiten\" }, { \"type\": \"Flatten\" }, { \"type\": \"Dense\", "
      "\"units\": 3, \"activation\": \"softmax\" } ] }",
      NULL);
  g_autofree char *deep = g_strconcat (
      head,
      "{ \"name\": \"first\", \"type\": \"Conv2D\", \"filters\": 2, \"kernel_size\": 1 }, "
      "{ \"name\": \"second\", \"type\": \"Conv2D\", \"filters\": 16, \"kernel_size\": 2, "
      "\"kernel_initializer\": \"whiten\" }, { \"type\": \"Flatten\" }, { \"type\": \"Dense\", "
      "\"units\": 3, \"activation\": \"softmax\" } ] }",
      NULL);
  g_autofree char *dense = g_strconcat (
      head,
      "{ \"type\": \"Flatten\" }, { \"name\": \"d\", \"type\": \"Dense\", \"units\": 3, "
      "\"activation\": \"softmax\", \"kernel_initializer\": \"whiten\" } ] }",
      NULL);
  g_autofree char *field = g_strconcat (
      head,
      "{ \"name\": \"c\", \"type\": \"Conv2D\", \"filters\": 16, \"kernel_size\": 2, "
      "\"kernel_initializer\": { \"whiten\": { \"sample\": 3 } } }, { \"type\": \"Flatten\" }, "
      "{ \"type\": \"Dense\", \"units\": 3, \"activation\": \"softmax\" } ] }",
      NULL);

  expect_error (filters, ds,
                "layer w12 (Conv2D): a whitening Conv2D needs 2 x channels x "
                "kernel height x kernel width = 16 filters");
  expect_error (deep, ds, "layer second (Conv2D): a whitening Conv2D must read the model's input");
  expect_error (dense, ds, "layer d (Dense): kernel_initializer \"whiten\" is for a Conv2D");
  expect_error (field, ds, "layer c (Conv2D): kernel_initializer whiten: unknown field \"sample\"");
  kilt_dataset_free (ds);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/whiten/covariance", test_covariance);
  g_test_add_func ("/whiten/filters", test_filters);
  g_test_add_func ("/whiten/model", test_model);
  g_test_add_func ("/whiten/bad", test_bad);
  return g_test_run ();
}
