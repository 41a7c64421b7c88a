/* CIFAR-10 and CIFAR-100 binary batches: a label byte (or two) then 3 x 32 x 32 pixel planes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-data-cifar"

#include "kilt-data-private.h"

#include <glib/gstdio.h>
#include <string.h>

#define CIFAR_PIXELS    (3 * 32 * 32)
#define CIFAR10_BATCHES 5
/* data_batch_N.bin beyond this is not taken for a batch. */
#define MAX_BATCHES 1000

static const char *const cifar10_names[] = {
  "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck", NULL,
};

gboolean
kilt_cifar_parse_batch (const char *name, const guint8 *bytes, gsize len, guint label_bytes,
                        guint label_index, guint n_classes, guint max_samples, KiltSplit *split,
                        GError **error)
{
  gsize rec = label_bytes + CIFAR_PIXELS;
  gsize n, start = split->n;

  g_return_val_if_fail (label_index < label_bytes, FALSE);
  if (len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: the file is empty", name);
      return FALSE;
    }
  if (len % rec != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: truncated: %" G_GSIZE_FORMAT
                   " bytes is not a whole number of %" G_GSIZE_FORMAT
                   "-byte records; record %" G_GSIZE_FORMAT " at byte offset %" G_GSIZE_FORMAT
                   " has only %" G_GSIZE_FORMAT " bytes",
                   name, len, rec, len / rec, (len / rec) * rec, len % rec);
      return FALSE;
    }
  n = len / rec;
  if (max_samples)
    n = start >= max_samples ? 0 : MIN (n, max_samples - start);
  for (gsize i = 0; i < n; i++)
    {
      guint8 label = bytes[i * rec + label_index];
      if (label >= n_classes)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: label %u of record %" G_GSIZE_FORMAT " (byte offset %" G_GSIZE_FORMAT
                       ") is beyond the %u classes",
                       name, label, i, i * rec + label_index, n_classes);
          return FALSE;
        }
    }
  split->u8 = g_realloc (split->u8, MAX ((start + n) * CIFAR_PIXELS, 1));
  split->labels = g_realloc (split->labels, MAX ((start + n) * sizeof (gint32), 1));
  for (gsize i = 0; i < n; i++)
    {
      split->labels[start + i] = bytes[i * rec + label_index];
      memcpy (split->u8 + (start + i) * CIFAR_PIXELS, bytes + i * rec + label_bytes, CIFAR_PIXELS);
    }
  split->n = start + n;
  return TRUE;
}

static gboolean
parse_file (const char *path, guint label_bytes, guint label_index, guint n_classes,
            guint max_samples, KiltSplit *split, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, &local);

  if (map == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: cannot read: %s", path,
                   local->message);
      return FALSE;
    }
  return kilt_cifar_parse_batch (path, (const guint8 *)g_mapped_file_get_contents (map),
                                 g_mapped_file_get_length (map), label_bytes, label_index,
                                 n_classes, max_samples, split, error);
}

static gboolean
file_in (const char *dir, const char *name)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);

  return g_file_test (p, G_FILE_TEST_IS_REGULAR);
}

gboolean
kilt_data_looks_cifar (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return file_in (path, "data_batch_1.bin") || file_in (path, "test_batch.bin")
           || (file_in (path, "train.bin") && file_in (path, "test.bin"));
  if (g_str_has_suffix (path, ".bin"))
    {
      GStatBuf st;
      if (g_stat (path, &st) != 0 || st.st_size <= 0)
        return g_str_has_suffix (path, ".bin");
      return st.st_size % (1 + CIFAR_PIXELS) == 0 || st.st_size % (2 + CIFAR_PIXELS) == 0;
    }
  return FALSE;
}

/* The highest N of the data_batch_N.bin files in @dir (0 when there are none). */
static guint
last_batch (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  guint last = 0;

  while (d && (name = g_dir_read_name (d)))
    {
      guint64 n;
      g_autofree char *num = NULL;
      if (!g_str_has_prefix (name, "data_batch_") || !g_str_has_suffix (name, ".bin"))
        continue;
      num = g_strndup (name + 11, strlen (name) - 11 - 4);
      if (g_ascii_string_to_unsigned (num, 10, 1, MAX_BATCHES, &n, NULL))
        last = MAX (last, (guint)n);
    }
  return last;
}

/* Class names from @file in @dir, else @fallback (or numbers when NULL). */
static char **
read_names (const char *dir, const char *file, const char *const *fallback, guint n_default)
{
  g_autofree char *p = g_build_filename (dir, file, NULL);
  g_autofree char *text = NULL;
  gsize len;

  if (g_file_get_contents (p, &text, &len, NULL))
    {
      char **names = kilt_data_parse_names (text, len);
      if (names[0])
        return names;
      g_strfreev (names);
    }
  return fallback ? g_strdupv ((char **)fallback) : kilt_data_number_names (n_default);
}

KiltDataset *
kilt_data_load_cifar (const char *path, const KiltLoadOptions *opts, KiltProgressFunc progress,
                      gpointer user_data, GCancellable *cancel, GError **error)
{
  g_autoptr (KiltDataset) ds = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *base = g_path_get_basename (path);
  gboolean is_dir = g_file_test (path, G_FILE_TEST_IS_DIR);
  gboolean c100;
  guint label_bytes, label_index;

  dir = is_dir ? g_strdup (path) : g_path_get_dirname (path);
  if (is_dir)
    c100 = !file_in (dir, "data_batch_1.bin") && !file_in (dir, "test_batch.bin");
  else
    {
      GStatBuf st;
      c100 = g_stat (path, &st) == 0 && st.st_size > 0 && st.st_size % (1 + CIFAR_PIXELS) != 0;
    }
  label_bytes = c100 ? 2 : 1;
  label_index = c100 && !opts->cifar100_coarse ? 1 : 0;

  ds = kilt_data_new (base, path, "cifar-binary");
  ds->type = KILT_SAMPLE_U8;
  ds->shape = (KiltShape){ 3, 32, 32 };
  ds->n_targets = 1;
  if (!c100)
    ds->class_names = read_names (dir, "batches.meta.txt", cifar10_names, 10);
  else if (opts->cifar100_coarse)
    ds->class_names = read_names (dir, "coarse_label_names.txt", NULL, 20);
  else
    ds->class_names = read_names (dir, "fine_label_names.txt", NULL, 100);
  ds->n_classes = g_strv_length (ds->class_names);

  if (!is_dir)
    {
      if (!parse_file (path, label_bytes, label_index, ds->n_classes, opts->max_samples, &ds->train,
                       error))
        return NULL;
    }
  else if (!c100)
    {
      guint last = last_batch (dir), n_read = 0;
      g_autoptr (GString) missing = g_string_new (NULL);
      /* Every batch there is, and those missing named: stopping at the first gap dropped
       * batches 3 to 5 without a word when data_batch_2.bin was missing. */
      for (guint b = 1; b <= MAX (last, CIFAR10_BATCHES); b++)
        {
          g_autofree char *name = g_strdup_printf ("data_batch_%u.bin", b);
          g_autofree char *p = g_build_filename (dir, name, NULL);
          if (!g_file_test (p, G_FILE_TEST_IS_REGULAR))
            {
              if (last > 0)
                g_string_append_printf (missing, "%s%s", missing->len ? ", " : "", name);
              continue;
            }
          kilt_data_progress (progress, user_data, (b - 1) / 6.0, "reading %s", name);
          if (!parse_file (p, 1, 0, ds->n_classes, opts->max_samples, &ds->train, error)
              || !kilt_data_check_cancel (cancel, error))
            return NULL;
          n_read++;
        }
      if (missing->len)
        kilt_data_note (ds,
                        "%s: missing %s (CIFAR-10 has data_batch_1.bin to data_batch_%u.bin); "
                        "loaded the other %u batch%s, %" G_GSIZE_FORMAT " training images",
                        dir, missing->str, MAX (last, CIFAR10_BATCHES), n_read,
                        n_read == 1 ? "" : "es", ds->train.n);
      if (file_in (dir, "test_batch.bin"))
        {
          g_autofree char *p = g_build_filename (dir, "test_batch.bin", NULL);
          kilt_data_progress (progress, user_data, 5 / 6.0, "reading test_batch.bin");
          if (!parse_file (p, 1, 0, ds->n_classes, opts->max_samples, &ds->test, error))
            return NULL;
        }
      if (ds->train.n == 0)
        {
          /* Only a test batch: it is still a data set, used as the training split. */
          ds->train = ds->test;
          memset (&ds->test, 0, sizeof ds->test);
        }
    }
  else
    {
      g_autofree char *tr = g_build_filename (dir, "train.bin", NULL);
      g_autofree char *te = g_build_filename (dir, "test.bin", NULL);
      kilt_data_progress (progress, user_data, 0.0, "reading train.bin");
      if (!parse_file (tr, 2, label_index, ds->n_classes, opts->max_samples, &ds->train, error)
          || !kilt_data_check_cancel (cancel, error))
        return NULL;
      kilt_data_progress (progress, user_data, 0.8, "reading test.bin");
      if (!parse_file (te, 2, label_index, ds->n_classes, opts->max_samples, &ds->test, error))
        return NULL;
      g_free (ds->format);
      ds->format = g_strdup ("cifar100-binary");
    }
  return g_steal_pointer (&ds);
}
