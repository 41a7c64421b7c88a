/* Data-set operations: seeded validation split, statistics, hash, thumbnails, description. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-data-util.h"

static KiltDataset *
load_sample (void)
{
  g_autoptr (GError) error = NULL;
  KiltDataset *ds = kilt_dataset_load ("sample", NULL, NULL, NULL, NULL, &error);

  g_assert_no_error (error);
  return ds;
}

/* Each sample's bytes and label as one string, for multiset comparisons. */
static GPtrArray *
sample_keys (const KiltDataset *ds, const KiltSplit *sp)
{
  GPtrArray *keys = g_ptr_array_new_with_free_func (g_free);
  gsize ss = kilt_dataset_sample_size (ds);

  for (gsize i = 0; i < sp->n; i++)
    {
      g_autofree char *sum = g_compute_checksum_for_data (G_CHECKSUM_SHA1, sp->u8 + i * ss, ss);
      g_ptr_array_add (keys, g_strdup_printf ("%s/%d", sum, sp->labels[i]));
    }
  return keys;
}

static gint
cmp_keys (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

static void
test_split (void)
{
  g_autoptr (KiltDataset) a = load_sample (), b = load_sample (), c = load_sample ();
  g_autoptr (KiltDataset) orig = load_sample ();
  g_autoptr (GPtrArray) all = sample_keys (orig, &orig->train);
  g_autoptr (GPtrArray) joined = NULL, tr = NULL, va = NULL;
  g_autoptr (GError) error = NULL;
  double sum = 0;

  g_assert_true (kilt_dataset_split_validation (a, 0.2, 42, &error));
  g_assert_no_error (error);
  g_assert_true (kilt_dataset_split_validation (b, 0.2, 42, &error));
  g_assert_true (kilt_dataset_split_validation (c, 0.2, 43, &error));
  g_assert_cmpuint (a->val.n, ==, 200);
  g_assert_cmpuint (a->train.n, ==, 800);
  g_assert_cmpuint (a->test.n, ==, 250);
  g_assert_cmpmem (a->val.u8, 200 * 784, b->val.u8, 200 * 784);
  g_assert_true (memcmp (a->val.u8, c->val.u8, 200 * 784) != 0);

  /* Together the two splits are exactly the original training samples. */
  tr = sample_keys (a, &a->train);
  va = sample_keys (a, &a->val);
  joined = g_ptr_array_new ();
  for (guint i = 0; i < tr->len; i++)
    g_ptr_array_add (joined, g_ptr_array_index (tr, i));
  for (guint i = 0; i < va->len; i++)
    g_ptr_array_add (joined, g_ptr_array_index (va, i));
  g_ptr_array_sort (joined, cmp_keys);
  g_ptr_array_sort (all, cmp_keys);
  g_assert_cmpuint (joined->len, ==, all->len);
  for (guint i = 0; i < all->len; i++)
    g_assert_cmpstr (g_ptr_array_index (joined, i), ==, g_ptr_array_index (all, i));

  /* Statistics now describe the smaller training split. */
  for (gsize i = 0; i < a->train.n * 784; i++)
    sum += a->train.u8[i];
  g_assert_cmpfloat_with_epsilon (a->channel_mean[0], sum / (a->train.n * 784.0), 1e-3);

  /* Splitting again first returns the old validation samples: nothing is lost or doubled. */
  g_assert_true (kilt_dataset_split_validation (c, 0.1, 42, &error));
  g_assert_cmpuint (c->val.n, ==, 100);
  g_assert_cmpuint (c->train.n, ==, 900);
  {
    g_autoptr (GPtrArray) t2 = sample_keys (c, &c->train), v2 = sample_keys (c, &c->val);
    for (guint i = 0; i < v2->len; i++)
      g_ptr_array_add (t2, g_strdup (g_ptr_array_index (v2, i)));
    g_ptr_array_sort (t2, cmp_keys);
    for (guint i = 0; i < all->len; i++)
      g_assert_cmpstr (g_ptr_array_index (t2, i), ==, g_ptr_array_index (all, i));
  }

  g_assert_false (kilt_dataset_split_validation (a, 1.0, 1, &error));
  data_test_assert_error (error, KILT_ENGINE_ERROR_INVALID, "between 0 and 1", NULL);
  g_clear_error (&error);
  g_assert_false (kilt_dataset_split_validation (a, 0.0001, 1, &error));
  data_test_assert_error (error, KILT_ENGINE_ERROR_INVALID, "empty", NULL);
  g_assert_cmpuint (a->train.n + a->val.n, ==, 1000);
}

/* Tabular data is standardised again with the statistics of what is left to train on. */
static void
test_split_tabular (void)
{
  const char *src = g_getenv ("KILT_SOURCE_DIR");
  g_autofree char *iris = g_build_filename (src ? src : "..", "tests", "data", "iris.csv", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = kilt_dataset_load (iris, NULL, NULL, NULL, NULL, &error);
  float before[4];

  g_assert_no_error (error);
  memcpy (before, ds->feature_mean, sizeof before);
  g_assert_true (kilt_dataset_split_validation (ds, 0.3, 7, &error));
  g_assert_cmpuint (ds->val.n, ==, 45);
  for (guint j = 0; j < 4; j++)
    {
      double m = 0, v = 0;
      for (gsize i = 0; i < ds->train.n; i++)
        m += ds->train.f32[i * 4 + j];
      m /= ds->train.n;
      for (gsize i = 0; i < ds->train.n; i++)
        v += (ds->train.f32[i * 4 + j] - m) * (ds->train.f32[i * 4 + j] - m);
      g_assert_cmpfloat (fabs (m), <, 1e-5);
      g_assert_cmpfloat_with_epsilon (v / ds->train.n, 1.0, 1e-4);
    }
  g_assert_true (memcmp (before, ds->feature_mean, sizeof before) != 0);
}

static void
test_describe_thumbnail_hash (void)
{
  g_autoptr (KiltDataset) ds = load_sample ();
  g_autofree char *text = kilt_dataset_describe (ds);
  g_autofree guint *counts = kilt_dataset_class_counts (ds, KILT_SPLIT_TEST);
  guint8 rgba[28 * 28 * 4], small[7 * 7 * 4];
  g_autofree char *old_hash = g_strdup (ds->hash);
  guint total = 0;

  g_assert_nonnull (strstr (text, "1000 train, 0 validation, 250 test"));
  g_assert_nonnull (strstr (text, "Classes:  10"));
  g_assert_nonnull (strstr (text, "T-shirt/top"));
  g_assert_nonnull (strstr (text, ds->hash));
  for (guint c = 0; c < 10; c++)
    total += counts[c];
  g_assert_cmpuint (total, ==, 250);

  /* Same size: the grey pixel in R, G and B. Quarter size: every fourth pixel. */
  g_assert_true (kilt_dataset_thumbnail_rgba (ds, KILT_SPLIT_TEST, 17, rgba, 28, 28));
  for (guint k = 0; k < 784; k++)
    {
      guint8 v = ds->test.u8[17 * 784 + k];
      g_assert_cmpuint (rgba[k * 4], ==, v);
      g_assert_cmpuint (rgba[k * 4 + 2], ==, v);
      g_assert_cmpuint (rgba[k * 4 + 3], ==, 255);
    }
  g_assert_true (kilt_dataset_thumbnail_rgba (ds, KILT_SPLIT_TRAIN, 3, small, 7, 7));
  for (guint y = 0; y < 7; y++)
    for (guint x = 0; x < 7; x++)
      g_assert_cmpuint (small[(y * 7 + x) * 4 + 1], ==, ds->train.u8[3 * 784 + y * 4 * 28 + x * 4]);
  g_assert_false (kilt_dataset_thumbnail_rgba (ds, KILT_SPLIT_VAL, 0, small, 7, 7));
  g_assert_false (kilt_dataset_thumbnail_rgba (ds, KILT_SPLIT_TEST, 250, small, 7, 7));

  /* One changed byte changes the hash; changing it back restores it. */
  ds->train.u8[500] ^= 1;
  kilt_dataset_compute_hash (ds);
  g_assert_cmpstr (ds->hash, !=, old_hash);
  ds->train.u8[500] ^= 1;
  kilt_dataset_compute_hash (ds);
  g_assert_cmpstr (ds->hash, ==, old_hash);
}

static void
test_load_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GCancellable) cancel = g_cancellable_new ();

  data_test_expect_fail ("/nonexistent/kilt-data", NULL, "/nonexistent/kilt-data",
                         "neither a built-in");
  g_cancellable_cancel (cancel);
  g_assert_null (kilt_dataset_load ("sample", NULL, NULL, NULL, cancel, &error));
  data_test_assert_error (error, KILT_ENGINE_ERROR_CANCELLED, "cancelled", NULL);
  g_setenv ("KILT_FASHION_MNIST_DIR", "/nonexistent/fmnist", TRUE);
  data_test_expect_fail ("fashion-mnist", NULL, "dataset-fashion-mnist", "/nonexistent/fmnist");
  g_unsetenv ("KILT_FASHION_MNIST_DIR");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/data/dataset/split", test_split);
  g_test_add_func ("/data/dataset/split-tabular", test_split_tabular);
  g_test_add_func ("/data/dataset/describe-thumbnail-hash", test_describe_thumbnail_hash);
  g_test_add_func ("/data/dataset/load-errors", test_load_errors);
  return g_test_run ();
}
