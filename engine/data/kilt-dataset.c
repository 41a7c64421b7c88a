/* Data sets: loading by name or path, validation split, statistics, hash, description, previews. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-dataset"

#include "config.h"
#include "kilt-data-private.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const fashion_names[] = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

void
kilt_load_options_init (KiltLoadOptions *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->max_bad_fraction = 0.01;
}

void
kilt_split_clear (KiltSplit *split)
{
  g_free (split->u8);
  g_free (split->f32);
  g_free (split->labels);
  g_free (split->targets);
  g_strfreev (split->paths);
  memset (split, 0, sizeof *split);
}

void
kilt_dataset_free (KiltDataset *ds)
{
  if (ds == NULL)
    return;
  g_free (ds->name);
  g_free (ds->source);
  g_free (ds->format);
  g_strfreev (ds->class_names);
  kilt_split_clear (&ds->train);
  kilt_split_clear (&ds->test);
  kilt_split_clear (&ds->val);
  g_free (ds->hash);
  g_free (ds->notes);
  g_free (ds->feature_mean);
  g_free (ds->feature_std);
  g_free (ds);
}

KiltDataset *
kilt_data_new (const char *name, const char *source, const char *format)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);

  ds->name = g_strdup (name);
  ds->source = g_strdup (source);
  ds->format = g_strdup (format);
  return ds;
}

char **
kilt_data_number_names (guint n)
{
  char **names = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    names[i] = g_strdup_printf ("%u", i);
  return names;
}

char **
kilt_data_parse_names (const char *text, gsize len)
{
  g_autofree char *copy = g_strndup (text, len);
  g_auto (GStrv) lines = g_strsplit (copy, "\n", -1);
  GPtrArray *names = g_ptr_array_new ();

  for (guint i = 0; lines[i]; i++)
    {
      char *s = g_strstrip (lines[i]);
      if (*s)
        g_ptr_array_add (names, g_strdup (s));
    }
  g_ptr_array_add (names, NULL);
  return (char **)g_ptr_array_free (names, FALSE);
}

gint
kilt_data_compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

gboolean
kilt_data_check_cancel (GCancellable *cancel, GError **error)
{
  if (cancel && g_cancellable_is_cancelled (cancel))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED,
                   "loading the data set was cancelled");
      return FALSE;
    }
  return TRUE;
}

void
kilt_data_progress (KiltProgressFunc progress, gpointer user_data, double fraction, const char *fmt,
                    ...)
{
  va_list ap;
  g_autofree char *what = NULL;

  if (progress == NULL)
    return;
  va_start (ap, fmt);
  what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  progress (CLAMP (fraction, 0.0, 1.0), what, user_data);
}

void
kilt_data_note (KiltDataset *ds, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *line = NULL;
  char *old = ds->notes;

  va_start (ap, fmt);
  line = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  ds->notes = old ? g_strconcat (old, "\n", line, NULL) : g_strdup (line);
  g_free (old);
}

gboolean
kilt_data_is_gzip (const guint8 *data, gsize len)
{
  return len >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

/* With @head, output stops without an error at @max_bytes: the first bytes of a stream. */
static gboolean
gunzip (const char *name, const guint8 *in, gsize in_len, gsize max_bytes, gboolean head,
        guint8 **out, gsize *out_len, GError **error)
{
  z_stream z = { 0 };
  gsize cap = MIN (MAX (in_len * 4, (gsize)4096), max_bytes);
  gsize done = 0;
  guint8 *buf;
  int rc;

  /* 15 + 32: zlib or gzip, detected from the header. */
  if (inflateInit2 (&z, 15 + 32) != Z_OK)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: could not start the gzip decoder", name);
      return FALSE;
    }
  buf = kilt_data_try_alloc (cap, name, "its decompressed contents", error);
  if (buf == NULL)
    goto fail;
  z.next_in = (Bytef *)in;
  for (;;)
    {
      gsize in_left = in_len - (gsize)((const guint8 *)z.next_in - in);
      z.avail_in = (uInt)MIN (in_left, (gsize)G_MAXUINT32);
      if (done == cap)
        {
          if (cap >= max_bytes && head)
            break;
          if (cap >= max_bytes)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                           "%s: decompresses to more than %" G_GSIZE_FORMAT " bytes", name,
                           max_bytes);
              goto fail;
            }
          guint8 *more;
          cap = MIN (cap * 2, max_bytes);
          more = kilt_data_try_realloc (buf, cap, name, "its decompressed contents", error);
          if (more == NULL)
            goto fail;
          buf = more;
        }
      z.next_out = buf + done;
      z.avail_out = (uInt)MIN (cap - done, (gsize)G_MAXUINT32);
      rc = inflate (&z, Z_NO_FLUSH);
      done = (gsize)(z.next_out - buf);
      if (rc == Z_STREAM_END)
        {
          gsize used = (gsize)((const guint8 *)z.next_in - in);
          /* gzip allows several members one after another. */
          if (used < in_len && kilt_data_is_gzip (in + used, in_len - used))
            {
              inflateReset (&z);
              continue;
            }
          break;
        }
      if (rc == Z_OK)
        continue;
      if (rc == Z_BUF_ERROR && z.avail_in == 0)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: the gzip stream is truncated (it ends at byte offset %" G_GSIZE_FORMAT
                       " before its end marker)",
                       name, in_len);
          goto fail;
        }
      if (rc == Z_BUF_ERROR)
        continue;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: corrupt gzip data near byte offset %" G_GSIZE_FORMAT " (%s)", name,
                   (gsize)((const guint8 *)z.next_in - in), z.msg ? z.msg : "bad data");
      goto fail;
    }
  inflateEnd (&z);
  *out = buf;
  *out_len = done;
  return TRUE;

fail:
  inflateEnd (&z);
  g_free (buf);
  return FALSE;
}

static gint fail_alloc_at; /* atomic: the armed call's number, 0: none */
static gint alloc_calls;   /* atomic: calls since the last arming */

guint
kilt_data_fail_alloc (guint nth)
{
  guint calls = (guint)g_atomic_int_get (&alloc_calls);

  g_atomic_int_set (&alloc_calls, 0);
  g_atomic_int_set (&fail_alloc_at, (gint)nth);
  return calls;
}

static gboolean
alloc_fault (void)
{
  gint at = g_atomic_int_get (&fail_alloc_at);
  gint call = g_atomic_int_add (&alloc_calls, 1) + 1;

  return at > 0 && call == at;
}

static void
set_no_memory (gsize bytes, const char *name, const char *what, GError **error)
{
  g_autofree char *size = g_format_size (bytes);

  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
               "%s: not enough memory for %s (%s)", name, what, size);
}

gpointer
kilt_data_try_alloc (gsize bytes, const char *name, const char *what, GError **error)
{
  gpointer mem = alloc_fault () ? NULL : g_try_malloc (MAX (bytes, 1));

  if (mem == NULL)
    set_no_memory (bytes, name, what, error);
  return mem;
}

gpointer
kilt_data_try_realloc (gpointer mem, gsize bytes, const char *name, const char *what,
                       GError **error)
{
  gpointer out = alloc_fault () ? NULL : g_try_realloc (mem, MAX (bytes, 1));

  if (out == NULL)
    set_no_memory (bytes, name, what, error);
  return out;
}

gboolean
kilt_data_gunzip (const char *name, const guint8 *in, gsize in_len, gsize max_bytes, guint8 **out,
                  gsize *out_len, GError **error)
{
  return gunzip (name, in, in_len, max_bytes, FALSE, out, out_len, error);
}

gboolean
kilt_data_gunzip_head (const char *name, const guint8 *in, gsize in_len, gsize max_bytes,
                       guint8 **out, gsize *out_len, GError **error)
{
  return gunzip (name, in, in_len, max_bytes, TRUE, out, out_len, error);
}

gboolean
kilt_data_read_file (const char *path, gsize max_bytes, guint8 **data, gsize *len, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) map = NULL;
  const guint8 *bytes;
  gsize n;

  map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: cannot read: %s", path,
                   local->message);
      return FALSE;
    }
  bytes = (const guint8 *)g_mapped_file_get_contents (map);
  n = g_mapped_file_get_length (map);
  if (n == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: the file is empty", path);
      return FALSE;
    }
  if (kilt_data_is_gzip (bytes, n))
    return kilt_data_gunzip (path, bytes, n, max_bytes, data, len, error);
  if (n > max_bytes)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %" G_GSIZE_FORMAT " bytes is more than Kilt reads from one file", path, n);
      return FALSE;
    }
  *data = kilt_data_try_alloc (n, path, "its contents", error);
  if (*data == NULL)
    return FALSE;
  memcpy (*data, bytes, n);
  *len = n;
  return TRUE;
}

GBytes *
kilt_data_read_bytes (const char *path, gsize max_bytes, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, &local);
  const guint8 *bytes;
  guint8 *out;
  gsize n, len;

  if (map == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: cannot read: %s", path,
                   local->message);
      return NULL;
    }
  bytes = (const guint8 *)g_mapped_file_get_contents (map);
  n = g_mapped_file_get_length (map);
  if (n == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: the file is empty", path);
      return NULL;
    }
  if (kilt_data_is_gzip (bytes, n))
    return kilt_data_gunzip (path, bytes, n, max_bytes, &out, &len, error)
               ? g_bytes_new_take (out, len)
               : NULL;
  if (n > max_bytes)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %" G_GSIZE_FORMAT " bytes is more than Kilt reads from one file", path, n);
      return NULL;
    }
  /* The mapping itself: a large text file is not copied. */
  return g_mapped_file_get_bytes (map);
}

char *
kilt_dataset_find_sample_dir (void)
{
  const char *env = g_getenv ("KILT_DATA_DIR");
  const char *src = g_getenv ("KILT_SOURCE_DIR");
  char *candidates[4] = { NULL };
  char *found = NULL;

  candidates[0] = env ? g_build_filename (env, "sample", NULL) : NULL;
#ifdef G_OS_WIN32
  {
    /* Installed wherever the user chose: share\kilt beside the program's bin folder. */
    g_autofree char *inst = g_win32_get_package_installation_directory_of_module (NULL);
    candidates[1] = g_build_filename (inst, "share", "kilt", "sample", NULL);
  }
#else
  candidates[1] = g_build_filename (KILT_PKGDATADIR, "sample", NULL);
#endif
  /* A build tree run: the environment's source folder, else the one configured. */
  candidates[2] = g_build_filename (src ? src : KILT_SOURCE_DIR, "resources", "sample", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (candidates); i++)
    {
      if (found == NULL && candidates[i] && g_file_test (candidates[i], G_FILE_TEST_IS_DIR))
        found = g_strdup (candidates[i]);
      g_free (candidates[i]);
    }
  return found;
}

static gboolean
has_ext (const char *path, const char *const *exts)
{
  g_autofree char *lower = g_ascii_strdown (path, -1);

  for (guint i = 0; exts[i]; i++)
    if (g_str_has_suffix (lower, exts[i]))
      return TRUE;
  return FALSE;
}

static KiltDataset *
load_path (const char *path, const KiltLoadOptions *opts, KiltProgressFunc progress,
           gpointer user_data, GCancellable *cancel, GError **error)
{
  static const char *const csv_exts[] = { ".csv", ".tsv", ".txt", ".data", ".csv.gz", NULL };
  static const char *const image_exts[] = { ".jpg", ".jpeg", ".png", ".bmp", NULL };
  guint8 head[4] = { 0 };
  FILE *f;

  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autofree char *train_csv = g_build_filename (path, "train.csv", NULL);
      if (kilt_data_looks_cifar (path))
        return kilt_data_load_cifar (path, opts, progress, user_data, cancel, error);
      if (kilt_data_looks_idx_dir (path))
        return kilt_data_load_idx (path, opts, progress, user_data, cancel, error);
      if (g_file_test (train_csv, G_FILE_TEST_IS_REGULAR))
        return kilt_data_load_csv (path, opts, progress, user_data, cancel, error);
      return kilt_data_load_folder (path, opts, progress, user_data, cancel, error);
    }
  if (has_ext (path, csv_exts))
    return kilt_data_load_csv (path, opts, progress, user_data, cancel, error);
  if (has_ext (path, image_exts))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: a single image is not a data set; give the folder that holds one "
                   "sub-folder per class",
                   path);
      return NULL;
    }
  f = fopen (path, "rb");
  if (f)
    {
      if (fread (head, 1, sizeof head, f) < 1)
        memset (head, 0, sizeof head);
      fclose (f);
    }
  if (kilt_data_is_gzip (head, sizeof head) || (head[0] == 0 && head[1] == 0 && head[2] >= 0x08))
    return kilt_data_load_idx (path, opts, progress, user_data, cancel, error);
  if (kilt_data_looks_cifar (path))
    return kilt_data_load_cifar (path, opts, progress, user_data, cancel, error);
  return kilt_data_load_csv (path, opts, progress, user_data, cancel, error);
}

KiltDataset *
kilt_dataset_load (const char *spec, const KiltLoadOptions *opts, KiltProgressFunc progress,
                   gpointer user_data, GCancellable *cancel, GError **error)
{
  KiltLoadOptions defaults;
  KiltDataset *ds = NULL;

  g_return_val_if_fail (spec != NULL, NULL);
  if (opts == NULL)
    {
      kilt_load_options_init (&defaults);
      opts = &defaults;
    }
  if (!kilt_data_check_cancel (cancel, error))
    return NULL;

  if (g_strcmp0 (spec, "fashion-mnist") == 0)
    {
      const char *dir = g_getenv ("KILT_FASHION_MNIST_DIR");
      if (dir == NULL)
        dir = FASHION_MNIST_DIR;
      if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "Fashion-MNIST is not installed (no folder %s); install Debian's "
                       "dataset-fashion-mnist package",
                       dir);
          return NULL;
        }
      ds = kilt_data_load_idx (dir, opts, progress, user_data, cancel, error);
      if (ds && ds->n_classes <= G_N_ELEMENTS (fashion_names))
        {
          g_strfreev (ds->class_names);
          ds->n_classes = G_N_ELEMENTS (fashion_names);
          ds->class_names = g_new0 (char *, ds->n_classes + 1);
          for (guint i = 0; i < ds->n_classes; i++)
            ds->class_names[i] = g_strdup (fashion_names[i]);
        }
      if (ds)
        {
          g_free (ds->name);
          ds->name = g_strdup ("fashion-mnist");
        }
    }
  else if (g_strcmp0 (spec, "sample") == 0)
    {
      g_autofree char *dir = kilt_dataset_find_sample_dir ();
      if (dir == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "the bundled sample data set is missing (looked in $KILT_DATA_DIR/sample, "
                       "%s/sample and %s/resources/sample)",
                       KILT_PKGDATADIR, KILT_SOURCE_DIR);
          return NULL;
        }
      ds = kilt_data_load_idx (dir, opts, progress, user_data, cancel, error);
      if (ds)
        {
          g_free (ds->name);
          g_free (ds->format);
          ds->name = g_strdup ("sample (Fashion-MNIST subset)");
          ds->format = g_strdup ("sample");
        }
    }
  else if (g_file_test (spec, G_FILE_TEST_EXISTS))
    ds = load_path (spec, opts, progress, user_data, cancel, error);
  else
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "'%s' is neither a built-in data set (fashion-mnist, sample) nor an existing "
                   "file or folder",
                   spec);
      return NULL;
    }
  if (ds == NULL)
    return NULL;

  g_free (ds->source);
  ds->source = g_strdup (spec);
  if (!ds->from_cache)
    kilt_dataset_compute_stats (ds);
  if (ds->hash == NULL)
    kilt_dataset_compute_hash (ds);
  kilt_data_progress (progress, user_data, 1.0, "loaded %s", ds->name);
  return ds;
}

KiltSplit *
kilt_dataset_get_split (KiltDataset *ds, KiltSplitKind kind)
{
  switch (kind)
    {
      case KILT_SPLIT_TRAIN:
        return &ds->train;
      case KILT_SPLIT_VAL:
        return &ds->val;
      case KILT_SPLIT_TEST:
        return &ds->test;
    }
  g_return_val_if_reached (NULL);
}

const char *
kilt_split_kind_name (KiltSplitKind kind)
{
  static const char *const names[] = { "train", "validation", "test" };

  return kind <= KILT_SPLIT_TEST ? names[kind] : "?";
}

void
kilt_data_standardise (KiltDataset *ds)
{
  guint nf = ds->shape.c * ds->shape.h * ds->shape.w;
  KiltSplit *splits[] = { &ds->train, &ds->val, &ds->test };

  g_free (ds->feature_mean);
  g_free (ds->feature_std);
  ds->feature_mean = g_new0 (float, nf);
  ds->feature_std = g_new0 (float, nf);
  for (guint j = 0; j < nf; j++)
    {
      double sum = 0, sq = 0, mean, var;
      for (gsize i = 0; i < ds->train.n; i++)
        sum += ds->train.f32[i * nf + j];
      mean = ds->train.n ? sum / (double)ds->train.n : 0.0;
      for (gsize i = 0; i < ds->train.n; i++)
        {
          double d = ds->train.f32[i * nf + j] - mean;
          sq += d * d;
        }
      var = ds->train.n ? sq / (double)ds->train.n : 0.0;
      ds->feature_mean[j] = (float)mean;
      /* A constant column stays at zero rather than dividing by nothing. */
      ds->feature_std[j] = var > 1e-24 ? (float)sqrt (var) : 1.0f;
    }
  for (guint s = 0; s < G_N_ELEMENTS (splits); s++)
    for (gsize i = 0; i < splits[s]->n; i++)
      for (guint j = 0; j < nf; j++)
        {
          float *v = &splits[s]->f32[i * nf + j];
          *v = (*v - ds->feature_mean[j]) / ds->feature_std[j];
        }
}

static void
unstandardise (KiltDataset *ds)
{
  guint nf = (guint)kilt_dataset_sample_size (ds);
  KiltSplit *splits[] = { &ds->train, &ds->val, &ds->test };

  for (guint s = 0; s < G_N_ELEMENTS (splits); s++)
    for (gsize i = 0; i < splits[s]->n; i++)
      for (guint j = 0; j < nf; j++)
        {
          float *v = &splits[s]->f32[i * nf + j];
          *v = *v * ds->feature_std[j] + ds->feature_mean[j];
        }
}

/* Copies samples @idx[0..n) of @from into a fresh split. */
static void
gather (const KiltDataset *ds, const KiltSplit *from, const gsize *idx, gsize n, KiltSplit *to)
{
  gsize ss = kilt_dataset_sample_size (ds);
  guint nt = ds->n_targets;

  memset (to, 0, sizeof *to);
  to->n = n;
  if (from->u8)
    to->u8 = g_malloc (MAX (n * ss, 1));
  if (from->f32)
    to->f32 = g_new (float, MAX (n * ss, 1));
  if (from->labels)
    to->labels = g_new (gint32, MAX (n, 1));
  if (from->targets)
    to->targets = g_new (float, MAX (n * nt, 1));
  if (from->paths)
    to->paths = g_new0 (char *, n + 1);
  for (gsize i = 0; i < n; i++)
    {
      gsize k = idx[i];
      if (to->paths)
        to->paths[i] = g_strdup (from->paths[k]);
      if (to->u8)
        memcpy (to->u8 + i * ss, from->u8 + k * ss, ss);
      if (to->f32)
        memcpy (to->f32 + i * ss, from->f32 + k * ss, ss * sizeof (float));
      if (to->labels)
        to->labels[i] = from->labels[k];
      if (to->targets)
        memcpy (to->targets + i * nt, from->targets + k * nt, nt * sizeof (float));
    }
}

gboolean
kilt_dataset_split_validation (KiltDataset *ds, double fraction, guint32 seed, GError **error)
{
  KiltSplit all, train, val;
  g_autofree gsize *perm = NULL;
  g_autofree gsize *rest = NULL;
  g_autofree gboolean *in_val = NULL;
  gsize n, n_val;
  KiltRng rng;

  g_return_val_if_fail (ds != NULL, FALSE);
  if (!(fraction > 0.0 && fraction < 1.0))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "the validation fraction must be between 0 and 1 (got %g)", fraction);
      return FALSE;
    }
  if (ds->type == KILT_SAMPLE_F32 && ds->feature_mean)
    unstandardise (ds);

  /* Any earlier validation split goes back first, so a second call starts from the whole. */
  n = ds->train.n + ds->val.n;
  perm = g_new (gsize, MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    perm[i] = i;
  if (ds->val.n > 0)
    {
      KiltSplit parts[2] = { ds->train, ds->val };
      gsize ss = kilt_dataset_sample_size (ds), nt = ds->n_targets;
      memset (&all, 0, sizeof all);
      all.n = n;
      if (parts[0].u8)
        all.u8 = g_malloc (n * ss);
      if (parts[0].f32)
        all.f32 = g_new (float, n *ss);
      if (parts[0].labels)
        all.labels = g_new (gint32, n);
      if (parts[0].targets)
        all.targets = g_new (float, n *nt);
      if (parts[0].paths && parts[1].paths)
        all.paths = g_new0 (char *, n + 1);
      for (guint p = 0, off = 0; p < 2; off += (guint)parts[p].n, p++)
        {
          if (all.u8)
            memcpy (all.u8 + off * ss, parts[p].u8, parts[p].n * ss);
          if (all.f32)
            memcpy (all.f32 + off * ss, parts[p].f32, parts[p].n * ss * sizeof (float));
          if (all.labels)
            memcpy (all.labels + off, parts[p].labels, parts[p].n * sizeof (gint32));
          if (all.targets)
            memcpy (all.targets + off * nt, parts[p].targets, parts[p].n * nt * sizeof (float));
          for (gsize i = 0; all.paths && i < parts[p].n; i++)
            all.paths[off + i] = g_strdup (parts[p].paths[i]);
        }
      kilt_split_clear (&ds->train);
      kilt_split_clear (&ds->val);
      ds->train = all;
    }

  n_val = (gsize)llround (fraction * (double)n);
  if (n_val == 0 || n_val >= n)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a validation fraction of %g of %" G_GSIZE_FORMAT
                   " training samples leaves one split empty",
                   fraction, n);
      if (ds->type == KILT_SAMPLE_F32 && ds->feature_mean)
        kilt_data_standardise (ds);
      return FALSE;
    }

  kilt_rng_init (&rng, seed);
  for (gsize i = n - 1; i > 0; i--)
    {
      gsize j = (gsize)(kilt_rng_next (&rng) % (guint64)(i + 1));
      gsize t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  in_val = g_new0 (gboolean, n);
  for (gsize i = 0; i < n_val; i++)
    in_val[perm[i]] = TRUE;
  rest = g_new (gsize, n - n_val);
  for (gsize i = 0, k = 0; i < n; i++)
    if (!in_val[i])
      rest[k++] = i;

  gather (ds, &ds->train, perm, n_val, &val);
  gather (ds, &ds->train, rest, n - n_val, &train);
  kilt_split_clear (&ds->train);
  ds->train = train;
  ds->val = val;

  if (ds->type == KILT_SAMPLE_F32 && ds->feature_mean)
    kilt_data_standardise (ds);
  kilt_dataset_compute_stats (ds);
  return TRUE;
}

void
kilt_dataset_compute_stats (KiltDataset *ds)
{
  guint c = ds->shape.c;
  gsize plane = (gsize)ds->shape.h * ds->shape.w;
  gsize ss = kilt_dataset_sample_size (ds);

  memset (ds->channel_mean, 0, sizeof ds->channel_mean);
  memset (ds->channel_std, 0, sizeof ds->channel_std);
  if (c > G_N_ELEMENTS (ds->channel_mean) || ds->train.n == 0 || plane == 0)
    return;
  for (guint ch = 0; ch < c; ch++)
    {
      double sum = 0, sq = 0, count = (double)ds->train.n * (double)plane, mean;
      for (gsize i = 0; i < ds->train.n; i++)
        {
          gsize base = i * ss + ch * plane;
          /* Integer sums per sample keep this exact and fast for bytes. */
          if (ds->train.u8)
            {
              guint64 s = 0, q = 0;
              for (gsize k = 0; k < plane; k++)
                {
                  guint v = ds->train.u8[base + k];
                  s += v;
                  q += v * v;
                }
              sum += (double)s;
              sq += (double)q;
            }
          else
            for (gsize k = 0; k < plane; k++)
              {
                double v = ds->train.f32[base + k];
                sum += v;
                sq += v * v;
              }
        }
      mean = sum / count;
      ds->channel_mean[ch] = (float)mean;
      ds->channel_std[ch] = (float)sqrt (MAX (sq / count - mean * mean, 0.0));
    }
}

void
kilt_dataset_compute_hash (KiltDataset *ds)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  const KiltSplit *splits[] = { &ds->train, &ds->val, &ds->test };
  gsize ss = kilt_dataset_sample_size (ds);
  guint32 head[6] = { 1, ds->shape.c, ds->shape.h, ds->shape.w, ds->type, ds->n_classes };

  g_checksum_update (sum, (const guchar *)head, sizeof head);
  for (guint i = 0; ds->class_names && ds->class_names[i]; i++)
    g_checksum_update (sum, (const guchar *)ds->class_names[i],
                       (gssize)strlen (ds->class_names[i]) + 1);
  for (guint s = 0; s < G_N_ELEMENTS (splits); s++)
    {
      const KiltSplit *sp = splits[s];
      guint64 n = sp->n;
      g_checksum_update (sum, (const guchar *)&n, sizeof n);
      if (sp->u8)
        g_checksum_update (sum, sp->u8, (gssize)(sp->n * ss));
      if (sp->f32)
        g_checksum_update (sum, (const guchar *)sp->f32, (gssize)(sp->n * ss * sizeof (float)));
      if (sp->labels)
        g_checksum_update (sum, (const guchar *)sp->labels, (gssize)(sp->n * sizeof (gint32)));
      if (sp->targets)
        g_checksum_update (sum, (const guchar *)sp->targets,
                           (gssize)(sp->n * ds->n_targets * sizeof (float)));
    }
  g_free (ds->hash);
  ds->hash = g_strdup (g_checksum_get_string (sum));
}

guint *
kilt_dataset_class_counts (const KiltDataset *ds, KiltSplitKind kind)
{
  const KiltSplit *sp = kilt_dataset_get_split ((KiltDataset *)ds, kind);
  guint *counts;

  if (ds->n_classes == 0 || sp == NULL)
    return NULL;
  counts = g_new0 (guint, ds->n_classes);
  for (gsize i = 0; sp->labels && i < sp->n; i++)
    if (sp->labels[i] >= 0 && (guint)sp->labels[i] < ds->n_classes)
      counts[sp->labels[i]]++;
  return counts;
}

static void
value_range (const KiltDataset *ds, double *lo, double *hi)
{
  gsize total = ds->train.n * kilt_dataset_sample_size (ds);

  *lo = INFINITY;
  *hi = -INFINITY;
  for (gsize i = 0; i < total; i++)
    {
      double v = ds->train.u8 ? ds->train.u8[i] : ds->train.f32[i];
      *lo = MIN (*lo, v);
      *hi = MAX (*hi, v);
    }
}

char *
kilt_dataset_describe (const KiltDataset *ds)
{
  GString *s = g_string_new (NULL);
  KiltSplitKind kinds[] = { KILT_SPLIT_TRAIN, KILT_SPLIT_VAL, KILT_SPLIT_TEST };
  guint *counts[3] = { NULL };
  double lo, hi;

  g_string_append_printf (s, "Data set: %s\n", ds->name);
  g_string_append_printf (s, "Source:   %s (%s)\n", ds->source ? ds->source : "?", ds->format);
  g_string_append_printf (s,
                          "Samples:  %" G_GSIZE_FORMAT " train, %" G_GSIZE_FORMAT
                          " validation, %" G_GSIZE_FORMAT " test\n",
                          ds->train.n, ds->val.n, ds->test.n);
  if (ds->shape.h == 1 && ds->shape.w == 1)
    g_string_append_printf (s, "Shape:    %u features (%s)\n", ds->shape.c,
                            ds->type == KILT_SAMPLE_U8 ? "bytes" : "floats");
  else
    g_string_append_printf (s, "Shape:    %u x %u x %u (channels x height x width, %s)\n",
                            ds->shape.c, ds->shape.h, ds->shape.w,
                            ds->type == KILT_SAMPLE_U8 ? "bytes" : "floats");
  value_range (ds, &lo, &hi);
  if (ds->train.n > 0)
    g_string_append_printf (s, "Values:   %g .. %g in the training split%s\n", lo, hi,
                            ds->type == KILT_SAMPLE_F32 ? " (standardised)" : "");
  if (ds->shape.c <= 4 && ds->train.n > 0)
    {
      g_string_append (s, "Channels: mean");
      for (guint c = 0; c < ds->shape.c; c++)
        g_string_append_printf (s, " %.3f", ds->channel_mean[c]);
      g_string_append (s, ", std");
      for (guint c = 0; c < ds->shape.c; c++)
        g_string_append_printf (s, " %.3f", ds->channel_std[c]);
      g_string_append_c (s, '\n');
    }
  if (ds->n_classes == 0)
    g_string_append_printf (s, "Task:     regression, %u target%s\n", ds->n_targets,
                            ds->n_targets == 1 ? "" : "s");
  else
    {
      guint width = 5;
      for (guint k = 0; k < 3; k++)
        counts[k] = kilt_dataset_class_counts (ds, kinds[k]);
      for (guint i = 0; i < ds->n_classes; i++)
        width = MAX (width, (guint)strlen (ds->class_names[i]));
      g_string_append_printf (s, "Classes:  %u\n", ds->n_classes);
      g_string_append_printf (s, "  %3s  %-*s %8s %8s %8s\n", "#", (int)width, "class", "train",
                              "val", "test");
      for (guint i = 0; i < ds->n_classes; i++)
        g_string_append_printf (s, "  %3u  %-*s %8u %8u %8u\n", i, (int)width, ds->class_names[i],
                                counts[0][i], counts[1][i], counts[2][i]);
    }
  for (guint k = 0; k < 3; k++)
    g_free (counts[k]);
  if (ds->hash)
    g_string_append_printf (s, "SHA-256:  %s\n", ds->hash);
  if (ds->skipped)
    g_string_append_printf (s, "Skipped:  %u\n", ds->skipped);
  if (ds->notes)
    g_string_append_printf (s, "Notes:    %s\n", ds->notes);
  return g_string_free (s, FALSE);
}

gboolean
kilt_dataset_thumbnail_rgba (const KiltDataset *ds, KiltSplitKind kind, gsize index,
                             guint8 *rgba_out, guint width, guint height)
{
  const KiltSplit *sp = kilt_dataset_get_split ((KiltDataset *)ds, kind);
  gsize ss = kilt_dataset_sample_size (ds);
  gsize plane = (gsize)ds->shape.h * ds->shape.w;

  g_return_val_if_fail (rgba_out != NULL, FALSE);
  if (sp == NULL || index >= sp->n || width == 0 || height == 0 || ss == 0)
    return FALSE;
  for (guint y = 0; y < height; y++)
    for (guint x = 0; x < width; x++)
      {
        guint8 *px = rgba_out + ((gsize)y * width + x) * 4;
        if (sp->u8)
          {
            const guint8 *img = sp->u8 + index * ss;
            gsize sy = (gsize)y * ds->shape.h / height, sx = (gsize)x * ds->shape.w / width;
            gsize at = sy * ds->shape.w + sx;
            for (guint c = 0; c < 3; c++)
              px[c] = img[(ds->shape.c >= 3 ? c : 0) * plane + at];
          }
        else
          {
            /* Tabular: one grey cell per feature, mid-grey at the mean, +-2.5 std to the ends. */
            const float *row = sp->f32 + index * ss;
            float v = row[(gsize)x * ss / width];
            double g = 127.5 + 51.0 * v;
            guint8 b = (guint8)CLAMP (g, 0.0, 255.0);
            px[0] = px[1] = px[2] = b;
          }
        px[3] = 255;
      }
  return TRUE;
}
