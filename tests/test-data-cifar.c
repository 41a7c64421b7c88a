/* CIFAR-10 from the shared JPEG tarball: loaded as an image folder, converted to the binary
 * format here and loaded again by the binary loader; the two must agree byte for byte. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-data-util.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <utime.h>

static const char *const classes[] = {
  "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};

static char *folder; /* the extracted subset */
static char *cache;  /* this program's KILT_CACHE_DIR */

/* 50 training and 20 test images per class: enough to mean something, quick to decode. */
static gboolean
extract_subset (void)
{
  g_autofree char *tar = kilt_test_shared_file ("datasets/cifar10-jpeg.tar.gz");
  g_autoptr (GError) error = NULL;
  int status = 0;

  if (tar == NULL)
    return FALSE;
  if (folder)
    return TRUE;
  folder = kilt_test_tmpdir ();
  {
    const char *argv[] = { "tar",
                           "xzf",
                           tar,
                           "-C",
                           folder,
                           "--wildcards",
                           "train/*/00[0-4]?.jpg",
                           "test/*/001?.jpg",
                           "test/*/000?.jpg",
                           NULL };
    g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL,
                                 NULL, &status, &error));
  }
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  return TRUE;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

/* The test's own decode: every image of @split in class then file order, as CIFAR records
 * with @label_bytes label bytes (CIFAR-100: coarse = class / 2, fine = class). */
static GByteArray *
records_for (const char *split, guint label_bytes, guint *n_out)
{
  GByteArray *out = g_byte_array_new ();
  guint n = 0;

  for (guint c = 0; c < G_N_ELEMENTS (classes); c++)
    {
      g_autofree char *dir = g_build_filename (folder, split, classes[c], NULL);
      g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
      g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      g_assert_nonnull (d);
      while ((name = g_dir_read_name (d)))
        g_ptr_array_add (names, g_strdup (name));
      g_ptr_array_sort (names, compare_names);
      for (guint i = 0; i < names->len; i++)
        {
          g_autofree char *p = g_build_filename (dir, g_ptr_array_index (names, i), NULL);
          g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new_from_file (p, NULL);
          guint8 rec[2 + 3072];
          const guint8 *px;
          int stride, nch;
          g_assert_nonnull (pb);
          g_assert_cmpint (gdk_pixbuf_get_width (pb), ==, 32);
          g_assert_cmpint (gdk_pixbuf_get_height (pb), ==, 32);
          px = gdk_pixbuf_read_pixels (pb);
          stride = gdk_pixbuf_get_rowstride (pb);
          nch = gdk_pixbuf_get_n_channels (pb);
          if (label_bytes == 2)
            rec[0] = (guint8)(c / 2), rec[1] = (guint8)c;
          else
            rec[0] = (guint8)c;
          for (guint ch = 0; ch < 3; ch++)
            for (guint y = 0; y < 32; y++)
              for (guint x = 0; x < 32; x++)
                rec[label_bytes + ch * 1024 + y * 32 + x] = px[y * stride + x * nch + ch];
          g_byte_array_append (out, rec, label_bytes + 3072);
          n++;
        }
    }
  *n_out = n;
  return out;
}

static void
set_cache (void)
{
  if (cache == NULL)
    {
      cache = kilt_test_tmpdir ();
      g_setenv ("KILT_CACHE_DIR", cache, TRUE);
    }
}

static void
test_folder_and_binary (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) cold = NULL, warm = NULL, bin = NULL, bin100 = NULL, coarse = NULL;
  g_autoptr (GByteArray) train = NULL, test = NULL, train100 = NULL, test100 = NULL;
  g_autofree char *bindir = NULL, *bin100dir = NULL;
  g_autofree guint *counts = NULL;
  guint n_train, n_test;
  KiltLoadOptions opts;
  gint64 t0;

  if (!extract_subset ())
    return;
  set_cache ();

  t0 = g_get_monotonic_time ();
  cold = kilt_dataset_load (folder, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_test_message ("cold folder load: %.3f s", (g_get_monotonic_time () - t0) / 1e6);
  g_assert_false (cold->from_cache);
  g_assert_cmpstr (cold->format, ==, "image-folder");
  g_assert_cmpuint (cold->train.n, ==, 500);
  g_assert_cmpuint (cold->test.n, ==, 200);
  g_assert_cmpuint (cold->n_classes, ==, 10);
  for (guint c = 0; c < 10; c++)
    g_assert_cmpstr (cold->class_names[c], ==, classes[c]);
  g_assert_cmpuint (cold->shape.c, ==, 3);
  g_assert_cmpuint (cold->shape.h, ==, 32);
  counts = kilt_dataset_class_counts (cold, KILT_SPLIT_TEST);
  for (guint c = 0; c < 10; c++)
    g_assert_cmpuint (counts[c], ==, 20);

  t0 = g_get_monotonic_time ();
  warm = kilt_dataset_load (folder, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_test_message ("warm folder load: %.3f s", (g_get_monotonic_time () - t0) / 1e6);
  g_assert_true (warm->from_cache);
  g_assert_cmpstr (warm->hash, ==, cold->hash);
  g_assert_cmpmem (warm->train.u8, 500 * 3072, cold->train.u8, 500 * 3072);
  g_assert_cmpmem (warm->test.labels, 200 * 4, cold->test.labels, 200 * 4);
  g_assert_cmpfloat (warm->channel_mean[1], ==, cold->channel_mean[1]);

  /* CIFAR-10 binary: two training batches, a test batch and the class names. */
  train = records_for ("train", 1, &n_train);
  test = records_for ("test", 1, &n_test);
  g_assert_cmpuint (n_train, ==, 500);
  bindir = kilt_test_tmpdir ();
  {
    g_autofree char *b1 = g_build_filename (bindir, "data_batch_1.bin", NULL);
    g_autofree char *b2 = g_build_filename (bindir, "data_batch_2.bin", NULL);
    g_autofree char *bt = g_build_filename (bindir, "test_batch.bin", NULL);
    g_autofree char *meta = g_build_filename (bindir, "batches.meta.txt", NULL);
    g_autofree char *names = g_strjoinv (
        "\n", (char **)(const char *[]){ "airplane", "automobile", "bird", "cat", "deer", "dog",
                                         "frog", "horse", "ship", "truck", "", NULL });
    data_test_write (b1, train->data, 300 * 3073, FALSE);
    data_test_write (b2, train->data + 300 * 3073, 200 * 3073, FALSE);
    data_test_write (bt, test->data, test->len, FALSE);
    data_test_write (meta, names, strlen (names), FALSE);
  }
  bin = kilt_dataset_load (bindir, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bin->format, ==, "cifar-binary");
  g_assert_cmpuint (bin->train.n, ==, 500);
  g_assert_cmpuint (bin->test.n, ==, 200);
  g_assert_cmpmem (bin->train.u8, 500 * 3072, cold->train.u8, 500 * 3072);
  g_assert_cmpmem (bin->test.u8, 200 * 3072, cold->test.u8, 200 * 3072);
  g_assert_cmpmem (bin->train.labels, 500 * 4, cold->train.labels, 500 * 4);
  g_assert_cmpmem (bin->test.labels, 200 * 4, cold->test.labels, 200 * 4);
  g_assert_cmpstr (bin->class_names[3], ==, "cat");
  g_assert_cmpfloat_with_epsilon (bin->channel_mean[0], cold->channel_mean[0], 1e-4);

  /* A single batch file. */
  {
    g_autofree char *b2 = g_build_filename (bindir, "data_batch_2.bin", NULL);
    g_autoptr (KiltDataset) one = kilt_dataset_load (b2, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (one->train.n, ==, 200);
    g_assert_cmpmem (one->train.u8, 200 * 3072, cold->train.u8 + 300 * 3072, 200 * 3072);
  }

  /* CIFAR-100 layout: fine labels by default, coarse on request. */
  train100 = records_for ("train", 2, &n_train);
  test100 = records_for ("test", 2, &n_test);
  bin100dir = kilt_test_tmpdir ();
  {
    g_autofree char *tr = g_build_filename (bin100dir, "train.bin", NULL);
    g_autofree char *te = g_build_filename (bin100dir, "test.bin", NULL);
    data_test_write (tr, train100->data, train100->len, FALSE);
    data_test_write (te, test100->data, test100->len, FALSE);
  }
  bin100 = kilt_dataset_load (bin100dir, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (bin100->n_classes, ==, 100);
  g_assert_cmpmem (bin100->train.u8, 500 * 3072, cold->train.u8, 500 * 3072);
  g_assert_cmpmem (bin100->train.labels, 500 * 4, cold->train.labels, 500 * 4);
  kilt_load_options_init (&opts);
  opts.cifar100_coarse = TRUE;
  coarse = kilt_dataset_load (bin100dir, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (coarse->n_classes, ==, 20);
  for (guint i = 0; i < 200; i++)
    g_assert_cmpint (coarse->test.labels[i], ==, cold->test.labels[i] / 2);

  /* Touching one file makes the cached decode stale. */
  {
    g_autofree char *f = g_build_filename (folder, "train", "cat", "0007.jpg", NULL);
    g_autoptr (KiltDataset) again = NULL;
    struct utimbuf times = { 1000000000, 1000000000 };
    g_assert_cmpint (g_utime (f, &times), ==, 0);
    again = kilt_dataset_load (folder, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_false (again->from_cache);
    g_assert_cmpstr (again->hash, ==, cold->hash);
  }
}

static void
test_bad_batches (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *b1 = g_build_filename (dir, "data_batch_1.bin", NULL);
  g_autofree guint8 *bytes = g_malloc (4 * 3073);

  data_test_fill_random (bytes, 4 * 3073, 9);
  for (guint i = 0; i < 4; i++)
    bytes[i * 3073] = (guint8)(i % 10);

  /* Cut inside the fourth record. */
  data_test_write (b1, bytes, 3 * 3073 + 1000, FALSE);
  data_test_expect_fail (dir, NULL, "data_batch_1.bin", "truncated", "record 3",
                         "byte offset 9219");
  /* A label beyond the ten classes. */
  bytes[2 * 3073] = 10;
  data_test_write (b1, bytes, 4 * 3073, FALSE);
  data_test_expect_fail (dir, NULL, "data_batch_1.bin", "label 10 of record 2", "byte offset 6146",
                         "10 classes");
  /* Fewer class names than labels in use. */
  {
    g_autofree char *meta = g_build_filename (dir, "batches.meta.txt", NULL);
    bytes[2 * 3073] = 2;
    data_test_write (b1, bytes, 4 * 3073, FALSE);
    data_test_write (meta, "cat\ndog\n", 8, FALSE);
    data_test_expect_fail (dir, NULL, "data_batch_1.bin", "label 2 of record 2", "2 classes");
    g_unlink (meta);
  }
  /* Empty. */
  data_test_write (b1, "", 0, FALSE);
  data_test_expect_fail (dir, NULL, "data_batch_1.bin", "empty");
}

/* A batch missing from the middle: the others are loaded and the missing one is named (the
 * loader stopped at the first gap, dropping batches 3 to 5 without a word). */
static void
test_missing_batch (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree guint8 *bytes = g_malloc (2 * 3073);

  for (guint b = 1; b <= 5; b++)
    {
      g_autofree char *name = g_strdup_printf ("%s/data_batch_%u.bin", dir, b);
      if (b == 2)
        continue;
      data_test_fill_random (bytes, 2 * 3073, b);
      bytes[0] = (guint8)b;
      bytes[3073] = (guint8)(b + 1);
      data_test_write (name, bytes, 2 * 3073, FALSE);
    }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (dir, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 8);
    g_assert_cmpint (ds->train.labels[0], ==, 1);
    g_assert_cmpint (ds->train.labels[2], ==, 3); /* batch 3 follows batch 1 */
    g_assert_cmpint (ds->train.labels[7], ==, 6);
    g_assert_nonnull (ds->notes);
    g_assert_nonnull (strstr (ds->notes, "missing data_batch_2.bin"));
    g_assert_nonnull (strstr (ds->notes, "loaded the other 4 batches, 8 training images"));
  }
  /* All five: nothing to say. */
  {
    g_autofree char *name = g_strdup_printf ("%s/data_batch_2.bin", dir);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = NULL;
    data_test_write (name, bytes, 2 * 3073, FALSE);
    ds = kilt_dataset_load (dir, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 10);
    g_assert_null (ds->notes);
  }
  /* Batch 1 missing beside a test batch: the training batches still load, and 1 is named. */
  {
    g_autofree char *b1 = g_strdup_printf ("%s/data_batch_1.bin", dir);
    g_autofree char *tb = g_strdup_printf ("%s/test_batch.bin", dir);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = NULL;
    g_unlink (b1);
    data_test_write (tb, bytes, 2 * 3073, FALSE);
    ds = kilt_dataset_load (dir, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 8);
    g_assert_cmpuint (ds->test.n, ==, 2);
    g_assert_nonnull (strstr (ds->notes, "missing data_batch_1.bin"));
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/data/cifar/folder-and-binary", test_folder_and_binary);
  g_test_add_func ("/data/cifar/bad-batches", test_bad_batches);
  g_test_add_func ("/data/cifar/missing-batch", test_missing_batch);
  return g_test_run ();
}
