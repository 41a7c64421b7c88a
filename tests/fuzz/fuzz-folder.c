/* libFuzzer target: an image folder (class sub-folders of JPEG, PNG and BMP files, optionally
 * train/ and test/ splits) written from the input and read by kilt_data_load_folder, and a
 * second time from the decoded-image cache it wrote. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define _GNU_SOURCE /* memmem */
#include "kilt-data-private.h"

#include <glib/gstdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

/* Folder names as people (and hostile files) have them: one not UTF-8, one with a space. */
static const char *const class_names[] = { "cat", "dog", "b\xff\xfe", "two words" };
static const char *const split_names[] = { "train", "test", "val" };
static const char *const extensions[] = { ".png", ".jpg", ".bmp", ".JPEG" };

static char *root_dir;

static void
remove_tree (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (path, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR) && !g_file_test (p, G_FILE_TEST_IS_SYMLINK))
        remove_tree (p);
      else
        g_unlink (p);
    }
  if (d)
    g_dir_close (d);
  g_rmdir (path);
}

static void
check (KiltDataset *ds)
{
  g_autofree char *text = NULL;

  if (ds == NULL)
    return;
  /* Every label names a class, and the pixels are all there. */
  for (KiltSplit *s = &ds->train; s <= &ds->test; s++)
    for (gsize i = 0; i < s->n; i++)
      {
        if (s->labels[i] < 0 || (guint)s->labels[i] >= ds->n_classes)
          __builtin_trap ();
        (void)s->u8[(i + 1) * ds->shape.c * ds->shape.h * ds->shape.w - 1];
      }
  text = kilt_dataset_describe (ds);
}

/* Input: a flags byte, two size bytes, then images separated by "KIMG". Each image's first
 * byte picks its class, split and extension; the rest is the file. */
int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autofree char *dir = NULL;
  KiltLoadOptions opts;
  guint8 flags;
  const guint8 *at, *end = data + size;
  KiltDataset *ds;
  guint n = 0;

  if (size < 3)
    return 0;
  if (root_dir == NULL)
    {
      root_dir = g_dir_make_tmp ("kilt-fuzz-folder-XXXXXX", NULL);
      if (root_dir == NULL)
        __builtin_trap ();
      g_autofree char *cache = g_build_filename (root_dir, "cache", NULL);
      g_setenv ("KILT_CACHE_DIR", cache, TRUE);
    }
  flags = data[0];
  kilt_load_options_init (&opts);
  opts.grayscale = flags & 1;
  opts.fit = flags & 2 ? KILT_FIT_CROP : KILT_FIT_RESIZE;
  if (flags & 4)
    {
      opts.image_width = data[1] % 40 + 1;
      opts.image_height = data[2] % 40 + 1;
    }
  opts.max_samples = flags & 16 ? 2 : 0;
  opts.max_bad_fraction = (const double[]){ -1, 0, 0.5, 1 }[(flags >> 5) & 3];
  opts.no_cache = !(flags & 128);

  /* A fresh folder and cache each time: file times decide the cache key, so old entries
   * would only pile up. */
  {
    g_autofree char *cache = g_build_filename (root_dir, "cache", NULL);
    remove_tree (cache);
  }
  dir = g_build_filename (root_dir, "set", NULL);
  remove_tree (dir);
  at = data + 3;
  while (at < end && n < 64)
    {
      const guint8 *next = memmem (at, (gsize)(end - at), "KIMG", 4);
      const guint8 *stop = next ? next : end;
      /* An empty part ("KIMGKIMG") is an empty file with pick 0. */
      guint8 pick = stop > at ? *at : 0;
      gssize len = stop > at ? stop - at - 1 : 0;
      g_autofree char *cdir = NULL, *file = NULL, *name = NULL;

      if (flags & 8) /* train/ test/ val/ */
        cdir = g_build_filename (dir, split_names[(pick >> 2) % 3], class_names[pick & 3], NULL);
      else
        cdir = g_build_filename (dir, class_names[pick & 3], NULL);
      g_mkdir_with_parents (cdir, 0755);
      name = g_strdup_printf ("i%02u%s", n, extensions[(pick >> 4) & 3]);
      file = g_build_filename (cdir, name, NULL);
      g_file_set_contents (file, len ? (const char *)at + 1 : "", len, NULL);
      n++;
      at = next ? next + 4 : end;
    }
  g_mkdir_with_parents (dir, 0755);
  ds = kilt_data_load_folder (dir, &opts, NULL, NULL, NULL, NULL);
  check (ds);
  if (ds && !opts.no_cache)
    {
      /* Written to the cache just now: read back from it. */
      KiltDataset *again = kilt_data_load_folder (dir, &opts, NULL, NULL, NULL, NULL);
      if (again == NULL || again->train.n != ds->train.n || again->test.n != ds->test.n
          || again->n_classes != ds->n_classes
          || (ds->train.n
              && memcmp (again->train.u8, ds->train.u8,
                         ds->train.n * ds->shape.c * ds->shape.h * ds->shape.w)
                     != 0))
        __builtin_trap ();
      kilt_dataset_free (again);
    }
  kilt_dataset_free (ds);
  return 0;
}
