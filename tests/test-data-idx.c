/* IDX loading: Fashion-MNIST from Debian, the bundled sample, crafted shapes and broken files. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-data-util.h"

#include "kilt-data-private.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* Reads a gzip file with zlib's own reader, independent of the loader. */
static GByteArray *
gunzip_file (const char *path)
{
  gzFile f = gzopen (path, "rb");
  GByteArray *b = g_byte_array_new ();
  guint8 buf[65536];
  int n;

  g_assert_nonnull (f);
  while ((n = gzread (f, buf, sizeof buf)) > 0)
    g_byte_array_append (b, buf, (guint)n);
  gzclose (f);
  return b;
}

static void
test_fashion_mnist (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  g_autoptr (GByteArray) im = NULL, lb = NULL, tim = NULL, tlb = NULL;
  g_autofree guint *train_counts = NULL, *test_counts = NULL;
  g_autofree char *text = NULL;
  double sum = 0, sq = 0, mean, std;

  if (!g_file_test (FMNIST, G_FILE_TEST_IS_DIR))
    {
      g_test_skip ("Fashion-MNIST is absent: apt-get install dataset-fashion-mnist");
      return;
    }
  ds = kilt_dataset_load ("fashion-mnist", NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ds->train.n, ==, 60000);
  g_assert_cmpuint (ds->test.n, ==, 10000);
  g_assert_cmpuint (ds->shape.c, ==, 1);
  g_assert_cmpuint (ds->shape.h, ==, 28);
  g_assert_cmpuint (ds->shape.w, ==, 28);
  g_assert_cmpint (ds->type, ==, KILT_SAMPLE_U8);
  g_assert_cmpuint (ds->n_classes, ==, 10);
  g_assert_cmpstr (ds->class_names[0], ==, "T-shirt/top");
  g_assert_cmpstr (ds->class_names[9], ==, "Ankle boot");

  /* Every byte against the files as zlib reads them. */
  im = gunzip_file (FMNIST "/train-images-idx3-ubyte.gz");
  lb = gunzip_file (FMNIST "/train-labels-idx1-ubyte.gz");
  tim = gunzip_file (FMNIST "/t10k-images-idx3-ubyte.gz");
  tlb = gunzip_file (FMNIST "/t10k-labels-idx1-ubyte.gz");
  g_assert_cmpuint (im->len, ==, 16 + 60000 * 784);
  g_assert_cmpmem (ds->train.u8, 60000 * 784, im->data + 16, 60000 * 784);
  g_assert_cmpmem (ds->test.u8, 10000 * 784, tim->data + 16, 10000 * 784);
  for (guint i = 0; i < 60000; i++)
    g_assert_cmpint (ds->train.labels[i], ==, lb->data[8 + i]);
  for (guint i = 0; i < 10000; i++)
    g_assert_cmpint (ds->test.labels[i], ==, tlb->data[8 + i]);

  /* Fashion-MNIST is balanced: 6,000 and 1,000 of each class. */
  train_counts = kilt_dataset_class_counts (ds, KILT_SPLIT_TRAIN);
  test_counts = kilt_dataset_class_counts (ds, KILT_SPLIT_TEST);
  for (guint c = 0; c < 10; c++)
    {
      g_assert_cmpuint (train_counts[c], ==, 6000);
      g_assert_cmpuint (test_counts[c], ==, 1000);
    }

  for (gsize i = 0; i < 60000 * 784; i++)
    {
      double v = im->data[16 + i];
      sum += v;
      sq += v * v;
    }
  mean = sum / (60000.0 * 784);
  std = sqrt (sq / (60000.0 * 784) - mean * mean);
  g_assert_cmpfloat_with_epsilon (ds->channel_mean[0], mean, 1e-3 * mean);
  g_assert_cmpfloat_with_epsilon (ds->channel_std[0], std, 1e-3 * std);

  g_assert_cmpuint (strlen (ds->hash), ==, 64);
  text = kilt_dataset_describe (ds);
  g_assert_nonnull (strstr (text, "60000 train, 0 validation, 10000 test"));
  g_assert_nonnull (strstr (text, "1 x 28 x 28"));
  g_assert_nonnull (strstr (text, "0 .. 255"));
  g_assert_nonnull (strstr (text, "Ankle boot"));
  g_assert_nonnull (strstr (text, "6000"));
}

static void
test_sample (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = kilt_dataset_load ("sample", NULL, NULL, NULL, NULL, &error);
  g_autofree guint *counts = NULL;
  guint present = 0;

  g_assert_no_error (error);
  g_assert_cmpstr (ds->format, ==, "sample");
  g_assert_cmpuint (ds->train.n, ==, 1000);
  g_assert_cmpuint (ds->test.n, ==, 250);
  g_assert_cmpuint (ds->n_classes, ==, 10);
  g_assert_cmpstr (ds->class_names[7], ==, "Sneaker");
  counts = kilt_dataset_class_counts (ds, KILT_SPLIT_TRAIN);
  for (guint c = 0; c < 10; c++)
    present += counts[c] > 0;
  g_assert_cmpuint (present, ==, 10);

  /* The sample is the head of the real data set. */
  if (g_file_test (FMNIST, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GByteArray) im = gunzip_file (FMNIST "/train-images-idx3-ubyte.gz");
      g_autoptr (GByteArray) lb = gunzip_file (FMNIST "/t10k-labels-idx1-ubyte.gz");
      g_assert_cmpmem (ds->train.u8, 1000 * 784, im->data + 16, 1000 * 784);
      for (guint i = 0; i < 250; i++)
        g_assert_cmpint (ds->test.labels[i], ==, lb->data[8 + i]);
    }
}

/* $KILT_DATA_DIR comes first when looking for the sample. */
static void
test_sample_lookup (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  g_autofree char *dir = g_build_filename (tmp, "sample", NULL);
  g_autofree char *ip = g_build_filename (dir, "train-images-idx3-ubyte", NULL);
  g_autofree char *lp = g_build_filename (dir, "train-labels-idx1-ubyte", NULL);
  g_autofree char *found = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  guint32 dims[3] = { 3, 4, 4 }, ldims[1] = { 3 };
  guint8 px[48], labels[3] = { 2, 0, 1 };
  g_autoptr (GByteArray) a = NULL, b = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  data_test_fill_random (px, sizeof px, 5);
  a = data_test_idx (0x08, 3, dims, px, sizeof px);
  b = data_test_idx (0x08, 1, ldims, labels, 3);
  data_test_write (ip, a->data, a->len, FALSE);
  data_test_write (lp, b->data, b->len, FALSE);
  g_setenv ("KILT_DATA_DIR", tmp, TRUE);
  found = kilt_dataset_find_sample_dir ();
  g_assert_cmpstr (found, ==, dir);
  ds = kilt_dataset_load ("sample", NULL, NULL, NULL, NULL, &error);
  g_unsetenv ("KILT_DATA_DIR");
  g_assert_no_error (error);
  g_assert_cmpuint (ds->train.n, ==, 3);
  g_assert_cmpuint (ds->n_classes, ==, 3);
  g_assert_cmpmem (ds->train.u8, 48, px, 48);
}

/* A 4-D IDX file is height x width x channels per sample; the loader stores channels first. */
static void
test_dims_and_gzip (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  const guint n = 5, h = 3, w = 2, c = 3;
  guint32 dims[4] = { n, h, w, c }, ldims[1] = { n }, vdims[2] = { n, 7 };
  guint8 px[5 * 3 * 2 * 3], vec[35];
  guint8 labels32[20] = { 0 };
  g_autoptr (GByteArray) im = NULL, lb = NULL, vim = NULL;
  g_autoptr (KiltDataset) raw = NULL, gz = NULL, v = NULL, capped = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *rawdir = g_build_filename (tmp, "raw", NULL);
  g_autofree char *gzdir = g_build_filename (tmp, "gz", NULL);
  g_autofree char *vdir = g_build_filename (tmp, "vec", NULL);
  KiltLoadOptions opts;

  data_test_fill_random (px, sizeof px, 11);
  data_test_fill_random (vec, sizeof vec, 12);
  for (guint i = 0; i < n; i++)
    labels32[i * 4 + 3] = (guint8)(i % 4); /* big-endian int32 labels */
  im = data_test_idx (0x08, 4, dims, px, sizeof px);
  lb = data_test_idx (0x0C, 1, ldims, labels32, sizeof labels32);
  vim = data_test_idx (0x08, 2, vdims, vec, sizeof vec);
  g_mkdir (rawdir, 0755);
  g_mkdir (gzdir, 0755);
  g_mkdir (vdir, 0755);
  {
    g_autofree char *a = g_build_filename (rawdir, "train-images-idx4-ubyte", NULL);
    g_autofree char *b = g_build_filename (rawdir, "train-labels-idx1-ubyte", NULL);
    g_autofree char *ga = g_build_filename (gzdir, "train-images-idx4-ubyte.gz", NULL);
    g_autofree char *gb = g_build_filename (gzdir, "train-labels-idx1-ubyte.gz", NULL);
    g_autofree char *va = g_build_filename (vdir, "train-images.idx", NULL);
    g_autofree char *vb = g_build_filename (vdir, "train-labels.idx", NULL);
    data_test_write (a, im->data, im->len, FALSE);
    data_test_write (b, lb->data, lb->len, FALSE);
    data_test_write (ga, im->data, im->len, TRUE);
    data_test_write (gb, lb->data, lb->len, TRUE);
    data_test_write (va, vim->data, vim->len, FALSE);
    data_test_write (vb, lb->data, lb->len, FALSE);
  }
  raw = kilt_dataset_load (rawdir, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  gz = kilt_dataset_load (gzdir, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (raw->shape.c, ==, c);
  g_assert_cmpuint (raw->shape.h, ==, h);
  g_assert_cmpuint (raw->shape.w, ==, w);
  g_assert_cmpuint (raw->n_classes, ==, 4);
  for (guint i = 0; i < n; i++)
    {
      g_assert_cmpint (raw->train.labels[i], ==, i % 4);
      for (guint y = 0; y < h; y++)
        for (guint x = 0; x < w; x++)
          for (guint ch = 0; ch < c; ch++)
            g_assert_cmpuint (raw->train.u8[i * 18 + ch * 6 + y * w + x], ==,
                              px[i * 18 + (y * w + x) * c + ch]);
    }
  g_assert_cmpmem (raw->train.u8, sizeof px, gz->train.u8, sizeof px);
  g_assert_cmpstr (raw->hash, ==, gz->hash);

  v = kilt_dataset_load (vdir, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (v->shape.c, ==, 7);
  g_assert_cmpuint (v->shape.h, ==, 1);
  g_assert_cmpmem (v->train.u8, sizeof vec, vec, sizeof vec);

  kilt_load_options_init (&opts);
  opts.max_samples = 2;
  capped = kilt_dataset_load (gzdir, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (capped->train.n, ==, 2);
  g_assert_cmpmem (capped->train.u8, 36, raw->train.u8, 36);
}

/* One crafted pair in its own folder; returns the folder. */
static char *
write_pair (const char *tmp, const char *name, const GByteArray *im, const GByteArray *lb,
            gboolean gz)
{
  char *dir = g_build_filename (tmp, name, NULL);
  g_autofree char *a
      = g_build_filename (dir, gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte", NULL);
  g_autofree char *b = g_build_filename (dir, "train-labels-idx1-ubyte", NULL);

  g_mkdir (dir, 0755);
  if (im)
    data_test_write (a, im->data, im->len, gz);
  if (lb)
    data_test_write (b, lb->data, lb->len, FALSE);
  return dir;
}

static void
test_bad_files (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  guint32 dims[3] = { 4, 5, 5 }, ldims[1] = { 4 }, ldims3[1] = { 3 };
  guint8 px[100], labels[4] = { 0, 1, 2, 1 }, big_label[4] = { 0, 1, 7, 1 };
  g_autoptr (GByteArray) im = NULL, lb = NULL, lb3 = NULL, lbig = NULL;
  GByteArray *b;

  data_test_fill_random (px, sizeof px, 3);
  im = data_test_idx (0x08, 3, dims, px, sizeof px);
  lb = data_test_idx (0x08, 1, ldims, labels, 4);
  lb3 = data_test_idx (0x08, 1, ldims3, labels, 3);
  lbig = data_test_idx (0x08, 1, ldims, big_label, 4);

  /* Wrong magic. */
  b = g_byte_array_sized_new (im->len);
  g_byte_array_append (b, im->data, im->len);
  b->data[0] = 0x50;
  {
    g_autofree char *d = write_pair (tmp, "magic", b, lb, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "wrong magic", "byte offset 0");
  }
  /* Truncated data: the header still declares 4 images. */
  g_byte_array_set_size (b, 0);
  g_byte_array_append (b, im->data, im->len - 30);
  {
    g_autofree char *d = write_pair (tmp, "trunc", b, lb, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "truncated", "byte offset 86");
  }
  /* Truncated header. */
  g_byte_array_set_size (b, 0);
  g_byte_array_append (b, im->data, 10);
  {
    g_autofree char *d = write_pair (tmp, "trunchead", b, lb, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "truncated header",
                           "byte offset 10");
  }
  /* Trailing bytes. */
  g_byte_array_set_size (b, 0);
  g_byte_array_append (b, im->data, im->len);
  g_byte_array_append (b, px, 7);
  {
    g_autofree char *d = write_pair (tmp, "extra", b, lb, FALSE);
    data_test_expect_fail (d, NULL, "7 unexpected bytes", "byte offset 116");
  }
  /* A header that declares far more than the file holds must not be believed. */
  g_byte_array_set_size (b, 0);
  {
    guint32 huge[3] = { 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu };
    g_autoptr (GByteArray) h = data_test_idx (0x08, 3, huge, px, sizeof px);
    g_autofree char *d = write_pair (tmp, "huge", h, lb, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "overflow");
    huge[0] = 1000000;
    huge[1] = huge[2] = 28;
    g_autoptr (GByteArray) h2 = data_test_idx (0x08, 3, huge, px, sizeof px);
    g_autofree char *d2 = write_pair (tmp, "huge2", h2, lb, FALSE);
    data_test_expect_fail (d2, NULL, "train-images-idx3-ubyte", "truncated", "byte offset 116");
  }
  g_byte_array_unref (b);
  /* Counts differ. */
  {
    g_autofree char *d = write_pair (tmp, "counts", im, lb3, FALSE);
    data_test_expect_fail (d, NULL, "holds 4 images", "holds 3 labels", "train-labels-idx1-ubyte");
  }
  /* A label beyond the classes named in classes.txt. */
  {
    g_autofree char *d = write_pair (tmp, "label", im, lbig, FALSE);
    g_autofree char *names = g_build_filename (d, "classes.txt", NULL);
    data_test_write (names, "a\nb\nc\n", 6, FALSE);
    data_test_expect_fail (d, NULL, "train-labels-idx1-ubyte", "label 7 of record 2",
                           "byte offset 10", "3 classes");
  }
  /* Empty images file. */
  {
    g_autofree char *d = write_pair (tmp, "empty", NULL, lb, FALSE);
    g_autofree char *a = g_build_filename (d, "train-images-idx3-ubyte", NULL);
    data_test_write (a, "", 0, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "empty");
  }
  /* A gzip stream cut short, and one with damaged bytes. */
  {
    g_autofree char *d = write_pair (tmp, "gz", im, lb, TRUE);
    g_autofree char *a = g_build_filename (d, "train-images-idx3-ubyte.gz", NULL);
    g_autofree char *bytes = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (a, &bytes, &len, NULL));
    data_test_write (a, bytes, len - 12, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte.gz", "truncated", "byte offset");
    for (gsize i = 12; i < len - 8; i++)
      bytes[i] ^= 0x5a;
    data_test_write (a, bytes, len, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte.gz", "gzip", "byte offset");
  }
  /* No labels beside the images. */
  {
    g_autofree char *d = write_pair (tmp, "nolabels", im, NULL, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "no labels file");
  }
  /* Labels given as images (1-D). */
  {
    g_autofree char *d = write_pair (tmp, "swapped", lb, lb, FALSE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte", "not an image file");
  }
}

/* Labels a flipped byte could make, and a gzip stream far larger than its header declares. */
static void
test_hostile_files (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  guint32 dims[3] = { 4, 5, 5 }, ldims[1] = { 4 };
  guint8 px[100], odd[4] = { 0, 1, 2, 200 }, all[4] = { 0, 1, 2, 1 };
  guint8 huge32[16] = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0x7f, 0xff, 0xff, 0xff };
  g_autoptr (GByteArray) im = NULL, lodd = NULL, lall = NULL, lhuge = NULL;

  data_test_fill_random (px, sizeof px, 5);
  im = data_test_idx (0x08, 3, dims, px, sizeof px);
  lodd = data_test_idx (0x08, 1, ldims, odd, 4);
  lall = data_test_idx (0x08, 1, ldims, all, 4);
  lhuge = data_test_idx (0x0C, 1, ldims, huge32, 16);

  /* 2^31 - 1 would have built 2^31 class names: refused, naming the record and offset. */
  {
    g_autofree char *d = write_pair (tmp, "huge-label", im, lhuge, FALSE);
    data_test_expect_fail (d, NULL, "train-labels-idx1-ubyte", "label 2147483647 of record 3",
                           "byte offset 20", "65536 classes");
  }
  /* One odd label among 0..2: loaded, but the gap and where the odd label is are said. */
  {
    g_autofree char *d = write_pair (tmp, "odd-label", im, lodd, FALSE);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (d, NULL, NULL, NULL, NULL, &error);
    g_autofree char *text = NULL;
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_classes, ==, 201);
    g_assert_nonnull (ds->notes);
    {
      const char *wants[] = { "0 to 200", "197 of those 201 classes have no samples (3-199)",
                              "record 3 of train-labels-idx1-ubyte (byte offset 11)",
                              "far above the next largest" };
      for (guint i = 0; i < G_N_ELEMENTS (wants); i++)
        if (strstr (ds->notes, wants[i]) == NULL)
          g_error ("expected \"%s\" in the notes: %s", wants[i], ds->notes);
    }
    text = kilt_dataset_describe (ds);
    g_assert_nonnull (strstr (text, "no samples"));
  }
  /* Every class present: nothing to say. */
  {
    g_autofree char *d = write_pair (tmp, "all-labels", im, lall, FALSE);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (d, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_classes, ==, 3);
    g_assert_null (ds->notes);
  }
  /* 16 MiB of zeros after a header that declares 100 pixels: refused at the declared size. */
  {
    g_autoptr (GByteArray) bomb = g_byte_array_new ();
    g_autofree guint8 *zeros = g_malloc0 (16 << 20);
    g_autofree char *d = NULL;
    g_byte_array_append (bomb, im->data, im->len);
    g_byte_array_append (bomb, zeros, 16 << 20);
    d = write_pair (tmp, "bomb", bomb, lall, TRUE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte.gz",
                           "decompresses to more than the 116 bytes its header declares",
                           "4 x 5 x 5");
  }
  /* A gzip header that declares 9 GB is refused before any of it is inflated. */
  {
    guint32 big[3] = { 100000, 300, 300 };
    g_autoptr (GByteArray) h = data_test_idx (0x08, 3, big, px, sizeof px);
    g_autofree char *d = write_pair (tmp, "declared", h, lall, TRUE);
    data_test_expect_fail (d, NULL, "train-images-idx3-ubyte.gz", "100000 x 300 x 300",
                           "more than the 4 GiB");
  }
}

/* Every host allocation a file's size decides, failed in turn (as SQLite's tests fail the Nth
 * malloc): each ends in an out-of-memory error naming the file, never GLib's abort, and
 * nothing leaks (the sanitizer pass runs this); past the last one the load succeeds, equal to
 * an unfaulted load. Gzip and raw files take different paths. */
static void
test_alloc_failure (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  guint32 dims[3] = { 3, 6, 7 }, ldims[1] = { 3 };
  guint8 px[126], lb[3] = { 0, 1, 2 };
  g_autoptr (GByteArray) im = NULL, lbl = NULL;

  data_test_fill_random (px, sizeof px, 9);
  im = data_test_idx (0x08, 3, dims, px, sizeof px);
  lbl = data_test_idx (0x08, 1, ldims, lb, 3);
  for (guint gz = 0; gz < 2; gz++)
    {
      g_autofree char *d = write_pair (tmp, gz ? "gz" : "raw", im, lbl, gz);
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltDataset) ref = NULL;
      guint nth, failed = 0, calls;

      kilt_data_fail_alloc (0);
      ref = kilt_dataset_load (d, NULL, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      calls = kilt_data_fail_alloc (0);
      g_assert_cmpuint (calls, >=, gz ? 3 : 2);
      for (nth = 1; nth <= calls + 1; nth++)
        {
          g_autoptr (KiltDataset) ds = NULL;
          g_clear_error (&error);
          kilt_data_fail_alloc (nth);
          ds = kilt_dataset_load (d, NULL, NULL, NULL, NULL, &error);
          kilt_data_fail_alloc (0);
          if (ds == NULL)
            {
              g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
              /* Names the images or the labels file, whichever was being read. */
              if (!g_str_has_prefix (error->message, d)
                  || !g_regex_match_simple ("^[^:]*/train-(images-idx3|labels-idx1)-ubyte(\\.gz)?: "
                                            "not enough memory for ",
                                            error->message, 0, 0))
                g_error ("allocation %u: %s", nth, error->message);
              failed++;
              continue;
            }
          g_assert_no_error (error);
          g_assert_cmpuint (ds->train.n, ==, 3);
          g_assert_cmpmem (ds->train.u8, 126, ref->train.u8, 126);
          break;
        }
      /* Every counted allocation failed once, and the one after the last was not armed. */
      g_assert_cmpuint (failed, ==, calls);
      g_assert_cmpuint (nth, ==, calls + 1);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/data/idx/fashion-mnist", test_fashion_mnist);
  g_test_add_func ("/data/idx/sample", test_sample);
  g_test_add_func ("/data/idx/sample-lookup", test_sample_lookup);
  g_test_add_func ("/data/idx/dims-and-gzip", test_dims_and_gzip);
  g_test_add_func ("/data/idx/bad-files", test_bad_files);
  g_test_add_func ("/data/idx/hostile-files", test_hostile_files);
  g_test_add_func ("/data/idx/alloc-failure", test_alloc_failure);
  return g_test_run ();
}
