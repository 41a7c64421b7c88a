/* Image folders: exact pixels from lossless files, sizing, grey, splits, bad images, cancel. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-data-util.h"

#include "kilt-data-private.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <unistd.h>

/* Saves a w x h RGB image of seeded random pixels; returns the pixels (HWC). */
static guint8 *
save_image (const char *dir, const char *name, const char *type, int w, int h, guint32 seed)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, w, h);
  guint8 *px = g_malloc ((gsize)w * h * 3);
  guint8 *dst = gdk_pixbuf_get_pixels (pb);
  int stride = gdk_pixbuf_get_rowstride (pb);

  g_mkdir_with_parents (dir, 0755);
  data_test_fill_random (px, (gsize)w * h * 3, seed);
  for (int y = 0; y < h; y++)
    memcpy (dst + y * stride, px + (gsize)y * w * 3, (gsize)w * 3);
  g_assert_true (gdk_pixbuf_save (pb, path, type, NULL, NULL));
  return px;
}

static void
use_fresh_cache (void)
{
  g_autofree char *c = kilt_test_tmpdir ();
  g_setenv ("KILT_CACHE_DIR", c, TRUE);
}

typedef struct
{
  guint calls;
  double last;
  gboolean monotonic;
  GCancellable *cancel_at_first;
} Progress;

static void
on_progress (double fraction, const char *what, gpointer user_data)
{
  Progress *p = user_data;

  g_assert_nonnull (what);
  if (fraction < p->last)
    p->monotonic = FALSE;
  p->last = fraction;
  p->calls++;
  if (p->cancel_at_first)
    g_cancellable_cancel (p->cancel_at_first);
}

/* PNG and BMP are lossless, so the loaded bytes must be the written ones, planes first. */
static void
test_exact_pixels (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autofree char *a = g_build_filename (root, "train", "ants", NULL);
  g_autofree char *b = g_build_filename (root, "train", "bees", NULL);
  g_autofree char *t = g_build_filename (root, "val", "bees", NULL);
  g_autofree guint8 *p0 = save_image (a, "x.png", "png", 6, 5, 1);
  g_autofree guint8 *p1 = save_image (b, "y.bmp", "bmp", 6, 5, 2);
  g_autofree guint8 *p2 = save_image (b, "z.PNG", "png", 6, 5, 3);
  g_autofree guint8 *p3 = save_image (t, "w.png", "png", 6, 5, 4);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL, gray = NULL;
  const guint8 *want[3] = { p0, p1, p2 };
  Progress prog = { 0, 0, TRUE, NULL };
  KiltLoadOptions opts;

  use_fresh_cache ();
  ds = kilt_dataset_load (root, NULL, on_progress, &prog, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ds->train.n, ==, 3);
  g_assert_cmpuint (ds->test.n, ==, 1); /* val/ is the held-out split when there is no test/ */
  g_assert_cmpuint (ds->n_classes, ==, 2);
  g_assert_cmpstr (ds->class_names[1], ==, "bees");
  g_assert_cmpuint (ds->shape.w, ==, 6);
  g_assert_cmpuint (ds->shape.h, ==, 5);
  g_assert_cmpint (ds->train.labels[0], ==, 0);
  g_assert_cmpint (ds->train.labels[2], ==, 1);
  g_assert_cmpint (ds->test.labels[0], ==, 1);
  for (guint i = 0; i < 3; i++)
    for (guint c = 0; c < 3; c++)
      for (guint k = 0; k < 30; k++)
        g_assert_cmpuint (ds->train.u8[i * 90 + c * 30 + k], ==, want[i][k * 3 + c]);
  for (guint k = 0; k < 30; k++)
    g_assert_cmpuint (ds->test.u8[k], ==, p3[k * 3]);
  g_assert_cmpuint (prog.calls, >=, 2);
  g_assert_true (prog.monotonic);
  g_assert_cmpfloat (prog.last, ==, 1.0);

  /* Grey: rounded ITU-R 601 luma of the same pixels. */
  kilt_load_options_init (&opts);
  opts.grayscale = TRUE;
  gray = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gray->shape.c, ==, 1);
  for (guint i = 0; i < 3; i++)
    for (guint k = 0; k < 30; k++)
      {
        const guint8 *p = want[i] + k * 3;
        double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        g_assert_cmpfloat (fabs (gray->train.u8[i * 30 + k] - y), <=, 0.5 + 1e-9);
      }
}

/* Resize squeezes the whole picture; crop keeps the centre at the right scale. */
/* Each sample knows its file, in the split's order: decoded, read back from the cache, and
 * after a validation split is carved out (the evaluation names the images it got wrong). */
static void
test_sample_paths (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autofree char *a = g_build_filename (root, "train", "ants", NULL);
  g_autofree char *b = g_build_filename (root, "train", "bees", NULL);
  g_autofree char *t = g_build_filename (root, "test", "bees", NULL);
  const char *names[] = { "a1.png", "a2.png", "a3.png", "b1.png", "b2.png", "b3.png" };
  g_autofree char *test_file = g_build_filename (t, "t.png", NULL);

  use_fresh_cache ();
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_free (save_image (i < 3 ? a : b, names[i], "png", 4, 4, 10 + i));
  g_free (save_image (t, "t.png", "png", 4, 4, 99));
  for (guint pass = 0; pass < 2; pass++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltDataset) ds = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
      g_assert_no_error (error);
      /* The second load comes from the decoded cache, paths and all. */
      g_assert_cmpint (ds->from_cache, ==, pass == 1);
      g_assert_cmpuint (ds->train.n, ==, 6);
      g_assert_nonnull (ds->train.paths);
      for (guint i = 0; i < 6; i++)
        {
          g_autofree char *want = g_build_filename (i < 3 ? a : b, names[i], NULL);
          g_assert_cmpstr (ds->train.paths[i], ==, want);
          g_assert_cmpint (ds->train.labels[i], ==, i < 3 ? 0 : 1);
        }
      g_assert_null (ds->train.paths[6]);
      g_assert_cmpuint (ds->test.n, ==, 1);
      g_assert_cmpstr (ds->test.paths[0], ==, test_file);
      /* Carved: every sample keeps its own file and label, none lost or doubled. */
      g_assert_true (kilt_dataset_split_validation (ds, 0.5, 7, &error));
      g_assert_cmpuint (ds->val.n + ds->train.n, ==, 6);
      {
        g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
        KiltSplit *parts[2] = { &ds->train, &ds->val };
        for (guint p = 0; p < 2; p++)
          for (guint i = 0; i < parts[p]->n; i++)
            {
              g_autofree char *base = g_path_get_basename (parts[p]->paths[i]);
              g_assert_true (g_hash_table_add (seen, parts[p]->paths[i]));
              g_assert_cmpint (parts[p]->labels[i], ==, base[0] == 'a' ? 0 : 1);
            }
        g_assert_cmpuint (g_hash_table_size (seen), ==, 6);
      }
      /* Twice: the second call starts again from the whole. */
      g_assert_true (kilt_dataset_split_validation (ds, 0.34, 8, &error));
      g_assert_cmpuint (ds->val.n, ==, 2);
      g_assert_nonnull (ds->val.paths);
      g_assert_null (ds->val.paths[2]);
    }
}

static void
test_resize_and_crop (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autofree char *cls = g_build_filename (root, "only", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) rs = NULL, cr = NULL;
  KiltLoadOptions opts;

  /* 40 x 20, left half black, right half white, a 2-pixel red stripe down the middle. */
  g_mkdir_with_parents (cls, 0755);
  {
    g_autofree char *path = g_build_filename (cls, "a.png", NULL);
    g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 40, 20);
    guint8 *d = gdk_pixbuf_get_pixels (pb);
    int stride = gdk_pixbuf_get_rowstride (pb);
    for (int y = 0; y < 20; y++)
      for (int x = 0; x < 40; x++)
        {
          guint8 *p = d + y * stride + x * 3;
          gboolean red = x == 19 || x == 20;
          p[0] = red || x >= 20 ? 255 : 0;
          p[1] = p[2] = !red && x >= 20 ? 255 : 0;
        }
    g_assert_true (gdk_pixbuf_save (pb, path, "png", NULL, NULL));
  }
  use_fresh_cache ();
  kilt_load_options_init (&opts);
  opts.image_width = opts.image_height = 10;
  rs = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  opts.fit = KILT_FIT_CROP;
  cr = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rs->shape.w, ==, 10);
  g_assert_cmpuint (cr->shape.h, ==, 10);
  /* Resized: the far left column is black and the far right white. */
  g_assert_cmpuint (rs->train.u8[5 * 10 + 0], ==, 0);
  g_assert_cmpuint (rs->train.u8[100 + 5 * 10 + 9], ==, 255);
  /* Cropped (scaled to 20 x 10, centre 10 columns): columns 0..3 black, 6..9 white, and the
   * red stripe (now 1 pixel at x 9.5 of 20 -> 4.5 of 10) lands in columns 4 and 5. */
  for (guint x = 0; x < 3; x++)
    g_assert_cmpuint (cr->train.u8[100 + 5 * 10 + x], ==, 0);
  for (guint x = 7; x < 10; x++)
    g_assert_cmpuint (cr->train.u8[100 + 5 * 10 + x], ==, 255);
  g_assert_cmpuint (cr->train.u8[5 * 10 + 4], >, 100);
  g_assert_cmpuint (cr->train.u8[100 + 5 * 10 + 4], <, cr->train.u8[5 * 10 + 4]);
}

static void
test_bad_images (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autofree char *cat = g_build_filename (root, "cat", NULL);
  g_autofree char *dog = g_build_filename (root, "dog", NULL);
  g_autofree char *bad = g_build_filename (dog, "broken.jpg", NULL);
  g_autoptr (GError) error = NULL;
  KiltLoadOptions opts;

  use_fresh_cache ();
  for (guint i = 0; i < 120; i++)
    {
      g_autofree char *name = g_strdup_printf ("%03u.png", i);
      g_free (save_image (i % 2 ? cat : dog, name, "png", 4, 4, i));
    }
  data_test_write (bad, "\xff\xd8\xff\xe0 not really a jpeg", 22, FALSE); /* 4 + 18 bytes */
  /* 1 of 121 is under 1%: skipped, counted and named. */
  {
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 120);
    g_assert_cmpuint (ds->skipped, ==, 1);
    g_assert_nonnull (strstr (ds->notes, "broken.jpg"));
  }
  /* With no tolerance it is an error that names the file. */
  kilt_load_options_init (&opts);
  opts.max_bad_fraction = 0;
  data_test_expect_fail (root, &opts, "1 of 121 images", "broken.jpg");

  /* The first images all broken: refused after a few, naming the first, not tried to the end. */
  {
    g_autofree char *f = kilt_test_tmpdir ();
    g_autofree char *a = g_build_filename (f, "a", NULL);
    g_autofree char *b = g_build_filename (f, "b", NULL);
    g_mkdir (a, 0755);
    for (guint i = 0; i < 20; i++)
      {
        g_autofree char *name = g_strdup_printf ("%s/%02u.jpg", a, i);
        data_test_write (name, "\xff\xd8\xff\xe0 not really a jpeg", 22, FALSE);
      }
    g_free (save_image (b, "x.png", "png", 2, 2, 1));
    data_test_expect_fail (f, NULL, "none of the first 16 of 21 images", "00.jpg");
  }

  /* An empty class, an empty folder, loose images, a test class unknown to training. */
  {
    g_autofree char *empty = g_build_filename (root, "eel", NULL);
    g_mkdir (empty, 0755);
    data_test_expect_fail (root, NULL, "eel", "has no images");
    g_rmdir (empty);
  }
  {
    g_autofree char *e = kilt_test_tmpdir ();
    data_test_expect_fail (e, NULL, e, "no class folders", "empty");
    g_free (save_image (e, "a.png", "png", 2, 2, 1));
    data_test_expect_fail (e, NULL, e, "loose images");
  }
  {
    g_autofree char *s = kilt_test_tmpdir ();
    g_autofree char *tr = g_build_filename (s, "train", "a", NULL);
    g_autofree char *te = g_build_filename (s, "test", "b", NULL);
    g_free (save_image (tr, "a.png", "png", 2, 2, 1));
    g_free (save_image (te, "b.png", "png", 2, 2, 1));
    data_test_expect_fail (s, NULL, "test/b", "not among the training classes");
  }
}

static void
test_cancel_and_cap (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) capped = NULL;
  g_autofree guint *counts = NULL;
  Progress prog = { 0, 0, TRUE, cancel };
  KiltDataset *ds;
  KiltLoadOptions opts;

  use_fresh_cache ();
  for (guint c = 0; c < 3; c++)
    for (guint i = 0; i < 40; i++)
      {
        g_autofree char *dir = g_strdup_printf ("%s/class%u", root, c);
        g_autofree char *name = g_strdup_printf ("%02u.png", i);
        g_free (save_image (dir, name, "png", 8, 8, c * 100 + i));
      }
  ds = kilt_dataset_load (root, NULL, on_progress, &prog, NULL, &error);
  g_assert_no_error (error);
  kilt_dataset_free (ds);
  prog.calls = 0;
  use_fresh_cache ();
  ds = kilt_dataset_load (root, NULL, on_progress, &prog, cancel, &error);
  g_assert_null (ds);
  data_test_assert_error (error, KILT_ENGINE_ERROR_CANCELLED, "cancelled", NULL);

  /* A cap keeps an even share of every class. */
  kilt_load_options_init (&opts);
  opts.max_samples = 30;
  g_clear_error (&error);
  capped = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (capped->train.n, ==, 30);
  counts = kilt_dataset_class_counts (capped, KILT_SPLIT_TRAIN);
  for (guint c = 0; c < 3; c++)
    g_assert_cmpuint (counts[c], ==, 10);
}

static void
png_chunk (GByteArray *b, const char *type, const guint8 *data, guint32 len)
{
  guint8 be[4] = { len >> 24, len >> 16, len >> 8, len };
  guint32 crc = crc32 (0, (const Bytef *)type, 4);

  crc = crc32 (crc, data, len);
  g_byte_array_append (b, be, 4);
  g_byte_array_append (b, (const guint8 *)type, 4);
  g_byte_array_append (b, data, len);
  be[0] = crc >> 24, be[1] = crc >> 16, be[2] = crc >> 8, be[3] = crc;
  g_byte_array_append (b, be, 4);
}

/* A small PNG file whose header declares @w x @h RGB pixels (its data is a few zero rows). */
static void
write_png_header_only (const char *path, guint32 w, guint32 h)
{
  static const guint8 sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  guint8 ihdr[13] = { w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16, h >> 8, h, 8, 2, 0, 0, 0 };
  g_autofree guint8 *rows = g_malloc0 (4 * (1 + (gsize)w * 3));
  uLongf zlen = compressBound (4 * (1 + w * 3));
  g_autofree guint8 *z = g_malloc (zlen);
  g_autoptr (GByteArray) b = g_byte_array_new ();

  g_assert_cmpint (compress (z, &zlen, rows, 4 * (1 + w * 3)), ==, Z_OK);
  g_byte_array_append (b, sig, 8);
  png_chunk (b, "IHDR", ihdr, 13);
  png_chunk (b, "IDAT", z, (guint32)zlen);
  png_chunk (b, "IEND", NULL, 0);
  data_test_write (path, b->data, b->len, FALSE);
}

/* What a hostile folder can hold: files that cannot be read (each was a leaked decoder and a
 * GLib warning, which g_test makes fatal), an image that declares 1.2 GB of pixels, images of
 * another size, and a class folder that is a link to another. */
static void
test_hostile_folder (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autofree char *cat = g_build_filename (root, "cat", NULL);
  g_autofree char *dog = g_build_filename (root, "dog", NULL);
  g_autofree char *dangling = g_build_filename (dog, "gone.jpg", NULL);
  g_autofree char *dir_png = g_build_filename (dog, "folder.png", NULL);
  g_autofree char *huge = g_build_filename (dog, "huge.png", NULL);
  g_autofree char *link = g_build_filename (root, "kitten", NULL);
  KiltLoadOptions opts;

  use_fresh_cache ();
  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *name = g_strdup_printf ("%02u.png", i);
      g_free (save_image (i % 2 ? cat : dog, name, "png", 4, 4, i));
    }
  g_free (save_image (dog, "wide.png", "png", 8, 6, 99));
  g_assert_cmpint (symlink ("/nonexistent/kilt", dangling), ==, 0);
  g_assert_cmpint (g_mkdir (dir_png, 0755), ==, 0);
  write_png_header_only (huge, 20000, 20000);
  g_assert_cmpint (symlink ("cat", link), ==, 0);

  kilt_load_options_init (&opts);
  opts.max_bad_fraction = 0.5;
  {
    g_autoptr (GError) error = NULL;
    gint64 t0 = g_get_monotonic_time ();
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
    const char *wants[]
        = { "gone.jpg",
            "folder.png",
            "huge.png: 20000 x 20000 pixels is more than the 64 megapixels",
            "the class folder 'kitten' is the same folder as 'cat' (a link to it); skipped it",
            "images differ in size: 1 of 21 are not 4 x 4",
            "wide.png is 8 x 6); they were resized to 4 x 4" };
    g_assert_no_error (error);
    /* Refused from its header: not inflated (1.2 GB) nor decoded. */
    g_assert_cmpint (g_get_monotonic_time () - t0, <, 2 * G_TIME_SPAN_SECOND);
    g_assert_cmpuint (ds->n_classes, ==, 2);
    g_assert_cmpstr (ds->class_names[0], ==, "cat");
    g_assert_cmpstr (ds->class_names[1], ==, "dog");
    g_assert_cmpuint (ds->train.n, ==, 21);
    g_assert_cmpuint (ds->skipped, ==, 3);
    for (guint i = 0; i < G_N_ELEMENTS (wants); i++)
      if (strstr (ds->notes, wants[i]) == NULL)
        g_error ("expected \"%s\" in the notes: %s", wants[i], ds->notes);
  }
  /* A chosen size resizes without a word; a read from the cache keeps what was said. */
  opts.image_width = opts.image_height = 4;
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_null (strstr (ds->notes, "differ in size"));
    g_assert_nonnull (strstr (ds->notes, "kitten"));
  }
  opts.image_width = opts.image_height = 0;
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_true (ds->from_cache);
    g_assert_nonnull (strstr (ds->notes, "differ in size"));
  }
  /* A class folder whose name is not UTF-8 (Latin-1 'café') or holds a line break: shown
   * cleaned, and said. */
  {
    g_autofree char *f = kilt_test_tmpdir ();
    g_autofree char *latin = g_build_filename (f, "caf\xe9", NULL);
    g_autofree char *nl = g_build_filename (f, "two\nlines", NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = NULL;
    g_free (save_image (latin, "a.png", "png", 2, 2, 1));
    g_free (save_image (nl, "b.png", "png", 2, 2, 2));
    ds = kilt_dataset_load (f, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_classes, ==, 2);
    g_assert_cmpstr (ds->class_names[0], ==, "caf\xef\xbf\xbd");
    g_assert_cmpstr (ds->class_names[1], ==, "two?lines");
    g_assert_nonnull (strstr (ds->notes, "'caf\\351' is not one line of UTF-8 text"));
    g_assert_nonnull (strstr (ds->notes, "'two\\nlines'"));
  }
  /* Only the huge image in a class: the first-size probe refuses it with the reason. */
  {
    g_autofree char *f = kilt_test_tmpdir ();
    g_autofree char *a = g_build_filename (f, "a", "big.png", NULL);
    g_autofree char *ad = g_build_filename (f, "a", NULL);
    g_mkdir (ad, 0755);
    write_png_header_only (a, 40000, 100);
    data_test_expect_fail (f, NULL, "big.png", "40000 x 100 pixels", "32768 pixels a side");
  }
  /* A 40-byte BMP whose info header declares 2.3 GB: gdk-pixbuf reserved that much per
   * decoding thread before it read the image size (found by fuzz-folder). Refused from the
   * header, naming it. */
  {
    static const guint8 bmp[40] = { 'B', 'M',  40,   0,    0,    0, 0, 0, 0, 0, 26, 0, 0,
                                    0,   0x03, 0x05, 0x00, 0x89, 2, 0, 2, 0, 1, 0,  24 };
    g_autofree char *f = kilt_test_tmpdir ();
    g_autofree char *a = g_build_filename (f, "a", NULL);
    g_autofree char *b = g_build_filename (f, "b", NULL);
    g_autofree char *bad = g_build_filename (a, "bad.bmp", NULL);
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = NULL;
    g_free (save_image (a, "ok.png", "png", 2, 2, 3));
    g_free (save_image (a, "ok2.png", "png", 2, 2, 4));
    g_free (save_image (b, "ok.png", "png", 2, 2, 5));
    g_autofree char *far = g_build_filename (a, "far.bmp", NULL);
    guint8 far_bytes[40];
    data_test_write (bad, bmp, sizeof bmp, FALSE);
    /* And one whose pixel data would start 4 GB in (the loader buffered up to it). */
    memcpy (far_bytes, bmp, sizeof far_bytes);
    memcpy (far_bytes + 10, (const guint8[]){ 0x36, 0x00, 0x00, 0xfa }, 4);
    memcpy (far_bytes + 14, (const guint8[]){ 40, 0, 0, 0 }, 4);
    data_test_write (far, far_bytes, sizeof far_bytes, FALSE);
    /* And a 1-bit one of 100 bytes whose palette has 3,036,726,527 colours (the loader
     * reserved 3.5 GB for them). */
    {
      g_autofree char *pal = g_build_filename (b, "pal.bmp", NULL);
      guint8 pal_bytes[100] = { 'B', 'M', 100, 0, 0, 0, 0, 0,  0, 0, 54, 0, 0, 0, 40,
                                0,   0,   0,   3, 0, 0, 0, 10, 0, 0, 0,  1, 0, 1, 0 };
      memcpy (pal_bytes + 46, (const guint8[]){ 0xff, 0xff, 0x00, 0xb5 }, 4);
      data_test_write (pal, pal_bytes, sizeof pal_bytes, FALSE);
    }
    ds = kilt_dataset_load (f, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 3);
    g_assert_cmpuint (ds->skipped, ==, 3);
    if (strstr (ds->notes, "pal.bmp: not a readable image: its BMP palette of 3036741631 colours "
                           "(1 bits a pixel) runs past the end of the 100-byte file")
        == NULL)
      g_error ("expected the BMP palette refused in the notes: %s", ds->notes);
    if (strstr (ds->notes, "bad.bmp: not a readable image: its BMP info header (byte offset 14) "
                           "declares 2298479875 bytes, more than the 124")
        == NULL)
      g_error ("expected the BMP header refused in the notes: %s", ds->notes);
    if (strstr (ds->notes, "far.bmp: not a readable image: its BMP pixel data starts at byte "
                           "4194304054 (the offset at byte 10), past the end of the 40-byte file")
        == NULL)
      g_error ("expected the BMP offset refused in the notes: %s", ds->notes);
  }
}

/* The host allocations the images' count and size decide, failed in turn: an out-of-memory
 * error naming the folder each time, then, past the last, the same pixels as unfaulted. */
static void
test_alloc_failure (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autofree char *cat = g_build_filename (root, "cat", NULL);
  g_autofree char *dog = g_build_filename (root, "dog", NULL);
  g_autofree char *test_cat = g_build_filename (root, "test", "cat", NULL);
  g_autofree char *train = g_build_filename (root, "train", NULL);
  g_autoptr (KiltDataset) ref = NULL;
  g_autoptr (GError) error = NULL;
  KiltLoadOptions opts;
  guint calls, nth, failed = 0;

  kilt_load_options_init (&opts);
  opts.no_cache = TRUE;
  g_free (save_image (cat, "a.png", "png", 3, 2, 1));
  g_free (save_image (dog, "b.png", "png", 3, 2, 2));
  g_free (save_image (test_cat, "c.png", "png", 3, 2, 3));
  g_assert_cmpint (g_mkdir (train, 0755), ==, 0);
  {
    g_autofree char *to_cat = g_build_filename (train, "cat", NULL);
    g_autofree char *to_dog = g_build_filename (train, "dog", NULL);
    g_assert_cmpint (g_rename (cat, to_cat), ==, 0);
    g_assert_cmpint (g_rename (dog, to_dog), ==, 0);
  }
  kilt_data_fail_alloc (0);
  ref = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  calls = kilt_data_fail_alloc (0);
  g_assert_cmpuint (calls, >=, 3); /* all pixels, the training and the test split */
  for (nth = 1; nth <= calls + 1; nth++)
    {
      g_autoptr (KiltDataset) ds = NULL;
      g_clear_error (&error);
      kilt_data_fail_alloc (nth);
      ds = kilt_dataset_load (root, &opts, NULL, NULL, NULL, &error);
      kilt_data_fail_alloc (0);
      if (ds == NULL)
        {
          g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
          if (!g_str_has_prefix (error->message, root)
              || strstr (error->message, ": not enough memory for ") == NULL)
            g_error ("allocation %u: %s", nth, error->message);
          failed++;
          continue;
        }
      g_assert_no_error (error);
      g_assert_cmpuint (ds->train.n, ==, 2);
      g_assert_cmpuint (ds->test.n, ==, 1);
      g_assert_cmpmem (ds->train.u8, 36, ref->train.u8, 36);
      g_assert_cmpmem (ds->test.u8, 18, ref->test.u8, 18);
      break;
    }
  g_assert_cmpuint (failed, ==, calls);
  g_assert_cmpuint (nth, ==, calls + 1);
}

/* The one .kds file under $KILT_CACHE_DIR/datasets. */
static char *
find_cache_file (void)
{
  g_autofree char *dir = g_build_filename (g_getenv ("KILT_CACHE_DIR"), "datasets", NULL);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  char *found = NULL;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)))
    if (g_str_has_suffix (name, ".kds"))
      {
        g_assert_null (found);
        found = g_build_filename (dir, name, NULL);
      }
  g_assert_nonnull (found);
  return found;
}

/* Flipped bytes in the decoded cache are caught by its checksum: the images are decoded again
 * (the right pixels and hash), the load says so once, and the cache is written anew. */
static void
test_damaged_cache (void)
{
  g_autofree char *root = kilt_test_tmpdir ();
  g_autoptr (KiltDataset) first = NULL;
  g_autofree char *cache = NULL, *bytes = NULL;
  g_autoptr (GError) error = NULL;
  gsize len;

  use_fresh_cache ();
  for (guint i = 0; i < 60; i++)
    {
      g_autofree char *dir = g_strdup_printf ("%s/c%u", root, i % 3);
      g_autofree char *name = g_strdup_printf ("%02u.png", i);
      g_free (save_image (dir, name, "png", 6, 6, 500 + i));
    }
  first = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (first->from_cache);
  cache = find_cache_file ();
  g_assert_true (g_file_get_contents (cache, &bytes, &len, NULL));
  /* The middle of the file is pixels (60 x 108 bytes of 7 KB). */
  bytes[len / 2] ^= 0x10;
  data_test_write (cache, bytes, len, FALSE);
  {
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_false (ds->from_cache);
    g_assert_nonnull (ds->notes);
    g_assert_nonnull (strstr (ds->notes, "decoded-image cache"));
    g_assert_nonnull (strstr (ds->notes, "was damaged (its checksum is"));
    g_assert_cmpmem (ds->train.u8, first->train.n * 108, first->train.u8, first->train.n * 108);
    g_assert_cmpstr (ds->hash, ==, first->hash);
  }
  /* Written anew: served from the cache, with nothing said about the damage. */
  {
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_true (ds->from_cache);
    g_assert_true (ds->notes == NULL || strstr (ds->notes, "damaged") == NULL);
    g_assert_cmpmem (ds->train.u8, first->train.n * 108, first->train.u8, first->train.n * 108);
    g_assert_cmpstr (ds->hash, ==, first->hash);
  }
  /* Cut short, and a file of another version: decoded again, the short one named. */
  data_test_write (cache, bytes, 20, FALSE);
  {
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_false (ds->from_cache);
    g_assert_nonnull (strstr (ds->notes, "damaged (cut short)"));
  }
  g_free (bytes);
  g_assert_true (g_file_get_contents (cache, &bytes, &len, NULL));
  bytes[6] = 0x01; /* version 1, which had no checksum */
  data_test_write (cache, bytes, len, FALSE);
  {
    g_autoptr (KiltDataset) ds = kilt_dataset_load (root, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_false (ds->from_cache);
    g_assert_null (ds->notes);
    g_assert_cmpstr (ds->hash, ==, first->hash);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/data/folder/exact-pixels", test_exact_pixels);
  g_test_add_func ("/data/folder/resize-and-crop", test_resize_and_crop);
  g_test_add_func ("/data/folder/sample-paths", test_sample_paths);
  g_test_add_func ("/data/folder/bad-images", test_bad_images);
  g_test_add_func ("/data/folder/cancel-and-cap", test_cancel_and_cap);
  g_test_add_func ("/data/folder/hostile", test_hostile_folder);
  g_test_add_func ("/data/folder/damaged-cache", test_damaged_cache);
  g_test_add_func ("/data/folder/alloc-failure", test_alloc_failure);
  return g_test_run ();
}
