/* IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST): raw or gzip, any dimensions a header declares.
 */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-data-idx"

#include "kilt-data-private.h"

#include <string.h>

static guint
idx_elem_size (guint8 type)
{
  switch (type)
    {
      case 0x08:
      case 0x09:
        return 1;
      case 0x0B:
        return 2;
      case 0x0C:
      case 0x0D:
        return 4;
      case 0x0E:
        return 8;
      default:
        return 0;
    }
}

static guint32
be32 (const guint8 *p)
{
  return ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3];
}

/* The magic number and dimensions: out->count is their product, *header the header's size. */
static gboolean
parse_header (const char *name, const guint8 *bytes, gsize len, KiltIdxArray *out,
              gsize *header_out, GError **error)
{
  gsize header, esize, count = 1;

  memset (out, 0, sizeof *out);
  if (len < 4)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %" G_GSIZE_FORMAT " bytes is too short for an IDX header (4 bytes of "
                   "magic number, then the dimensions)",
                   name, len);
      return FALSE;
    }
  esize = idx_elem_size (bytes[2]);
  if (bytes[0] != 0 || bytes[1] != 0 || esize == 0 || bytes[3] == 0 || bytes[3] > 8)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: wrong magic number %02x %02x %02x %02x at byte offset 0; an IDX file "
                   "starts with 00 00, a type (08 09 0B 0C 0D 0E) and 1 to 8 dimensions",
                   name, bytes[0], bytes[1], bytes[2], bytes[3]);
      return FALSE;
    }
  out->type = bytes[2];
  out->ndims = bytes[3];
  header = 4 + 4 * (gsize)out->ndims;
  if (len < header)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: truncated header: %u dimensions need %" G_GSIZE_FORMAT
                   " bytes but the file ends at byte offset %" G_GSIZE_FORMAT,
                   name, out->ndims, header, len);
      return FALSE;
    }
  for (guint i = 0; i < out->ndims; i++)
    {
      out->dims[i] = be32 (bytes + 4 + 4 * i);
      /* Checked against the real length below, so an absurd size can never be allocated. */
      if (out->dims[i] != 0 && count > (G_MAXSIZE / esize) / out->dims[i])
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: dimension %u (%u, at byte offset %u) makes the declared size "
                       "overflow",
                       name, i, out->dims[i], 4 + 4 * i);
          return FALSE;
        }
      count *= out->dims[i];
    }
  out->count = count;
  *header_out = header;
  return TRUE;
}

static char *
dims_text (const KiltIdxArray *a)
{
  GString *dims = g_string_new (NULL);

  for (guint i = 0; i < a->ndims; i++)
    g_string_append_printf (dims, "%s%u", i ? " x " : "", a->dims[i]);
  return g_string_free (dims, FALSE);
}

gboolean
kilt_idx_parse (const char *name, const guint8 *bytes, gsize len, KiltIdxArray *out, GError **error)
{
  gsize header, esize, count, payload;

  if (!parse_header (name, bytes, len, out, &header, error))
    return FALSE;
  esize = idx_elem_size (out->type);
  count = out->count;
  payload = len - header;
  if (payload / esize < count || payload % esize != 0 || payload / esize > count)
    {
      g_autofree char *dims = dims_text (out);
      if (payload / esize < count)
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                     "%s: truncated: the header declares %s elements (%" G_GSIZE_FORMAT
                     " bytes after the %" G_GSIZE_FORMAT "-byte header) but the data ends at "
                     "byte offset %" G_GSIZE_FORMAT,
                     name, dims, count * esize, header, len);
      else
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                     "%s: %" G_GSIZE_FORMAT " unexpected bytes after the %s elements the header "
                     "declares, from byte offset %" G_GSIZE_FORMAT,
                     name, payload - count * esize, dims, header + count * esize);
      return FALSE;
    }
  out->data = bytes + header;
  return TRUE;
}

gboolean
kilt_idx_read_file (const char *path, guint8 **data, gsize *len, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, &local);
  g_autofree guint8 *head = NULL;
  g_autofree char *dims = NULL;
  const guint8 *bytes;
  gsize n, head_len = 0, header, declared;
  KiltIdxArray a;

  if (map == NULL
      || !kilt_data_is_gzip ((const guint8 *)g_mapped_file_get_contents (map),
                             g_mapped_file_get_length (map)))
    return kilt_data_read_file (path, KILT_DATA_MAX_IDX_BYTES, data, len, error);
  bytes = (const guint8 *)g_mapped_file_get_contents (map);
  n = g_mapped_file_get_length (map);
  /* The header first (4 bytes and at most 8 dimensions), then exactly what it declares: a
   * small file that inflates to gigabytes is refused at the size it claims to be. */
  if (!kilt_data_gunzip_head (path, bytes, n, 4 + 4 * 8, &head, &head_len, error)
      || !parse_header (path, head, head_len, &a, &header, error))
    return FALSE;
  dims = dims_text (&a);
  if (a.count > (KILT_DATA_MAX_IDX_BYTES - header) / idx_elem_size (a.type))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header declares %s elements of %u bytes, more than the %" G_GSIZE_FORMAT
                   " GiB Kilt reads from one IDX file",
                   path, dims, idx_elem_size (a.type), KILT_DATA_MAX_IDX_BYTES >> 30);
      return FALSE;
    }
  declared = header + a.count * idx_elem_size (a.type);
  if (!kilt_data_gunzip_head (path, bytes, n, declared + 1, data, len, error))
    return FALSE;
  if (*len > declared)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: decompresses to more than the %" G_GSIZE_FORMAT
                   " bytes its header declares (%s elements after a %" G_GSIZE_FORMAT
                   "-byte header); refused there",
                   path, declared, dims, header);
      g_clear_pointer (data, g_free);
      return FALSE;
    }
  return TRUE;
}

static gboolean
idx_label (const KiltIdxArray *a, gsize i, gint64 *value)
{
  const guint8 *p = a->data + i * idx_elem_size (a->type);

  switch (a->type)
    {
      case 0x08:
        *value = p[0];
        return TRUE;
      case 0x09:
        *value = (gint8)p[0];
        return TRUE;
      case 0x0B:
        *value = (gint16)(((guint16)p[0] << 8) | p[1]);
        return TRUE;
      case 0x0C:
        *value = (gint32)be32 (p);
        return TRUE;
      default:
        return FALSE;
    }
}

gboolean
kilt_idx_fill_split (const char *images_name, const guint8 *images, gsize images_len,
                     const char *labels_name, const guint8 *labels, gsize labels_len,
                     guint max_samples, KiltShape *shape, guint n_classes, KiltIdxLabelSeen *seen,
                     KiltSplit *split, GError **error)
{
  KiltIdxArray im, lb;
  KiltShape s = { 1, 1, 1 };
  gsize n, ss;
  gboolean nhwc = FALSE;

  if (!kilt_idx_parse (images_name, images, images_len, &im, error)
      || !kilt_idx_parse (labels_name, labels, labels_len, &lb, error))
    return FALSE;
  if (im.type != 0x08 || im.ndims < 2)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: not an image file: Kilt reads images as unsigned bytes (type 08) with at "
                   "least 2 dimensions, this one has type %02x and %u dimension%s",
                   images_name, im.type, im.ndims, im.ndims == 1 ? "" : "s");
      return FALSE;
    }
  if (lb.type == 0x0D || lb.type == 0x0E || lb.ndims != 1)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: not a label file: labels are one integer per sample (1 dimension, "
                   "integer type), this one has type %02x and %u dimensions",
                   labels_name, lb.type, lb.ndims);
      return FALSE;
    }
  if (im.dims[0] != lb.dims[0])
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s holds %u images but %s holds %u labels; they must be equal", images_name,
                   im.dims[0], labels_name, lb.dims[0]);
      return FALSE;
    }
  if (im.ndims == 2)
    s.c = im.dims[1];
  else if (im.ndims == 3)
    s.h = im.dims[1], s.w = im.dims[2];
  else if (im.ndims == 4 && im.dims[3] <= 4)
    s.h = im.dims[1], s.w = im.dims[2], s.c = im.dims[3], nhwc = TRUE;
  else if (im.ndims == 4)
    s.c = im.dims[1], s.h = im.dims[2], s.w = im.dims[3];
  else
    s.c = (guint)(im.count / MAX (im.dims[0], 1));
  ss = kilt_shape_size (&s);
  if (ss == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header declares samples of size zero", images_name);
      return FALSE;
    }
  if (kilt_shape_size (shape) == 0)
    *shape = s;
  else if (shape->c != s.c || shape->h != s.h || shape->w != s.w)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: samples are %u x %u x %u but the training samples are %u x %u x %u",
                   images_name, s.c, s.h, s.w, shape->c, shape->h, shape->w);
      return FALSE;
    }

  n = im.dims[0];
  if (max_samples && n > max_samples)
    n = max_samples;
  split->u8 = kilt_data_try_alloc (n * ss, images_name, "its samples", error);
  if (split->u8 == NULL)
    return FALSE;
  split->n = n;
  split->labels = g_new (gint32, MAX (n, 1));
  if (nhwc)
    {
      gsize plane = (gsize)s.h * s.w;
      for (gsize i = 0; i < n; i++)
        for (gsize p = 0; p < plane; p++)
          for (guint c = 0; c < s.c; c++)
            split->u8[i * ss + c * plane + p] = im.data[i * ss + p * s.c + c];
    }
  else
    memcpy (split->u8, im.data, n * ss);
  for (gsize i = 0; i < n; i++)
    {
      gint64 v = 0;
      idx_label (&lb, i, &v);
      gsize off = 8 + i * idx_elem_size (lb.type);
      if (v < 0 || v >= (n_classes ? n_classes : KILT_DATA_MAX_CLASSES))
        {
          if (v < 0)
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                         "%s: label %" G_GINT64_FORMAT " of record %" G_GSIZE_FORMAT
                         " (byte offset %" G_GSIZE_FORMAT ") is not a class index",
                         labels_name, v, i, off);
          else if (n_classes == 0)
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                         "%s: label %" G_GINT64_FORMAT " of record %" G_GSIZE_FORMAT
                         " (byte offset %" G_GSIZE_FORMAT ") is beyond the %u classes Kilt "
                         "allows (a damaged label?)",
                         labels_name, v, i, off, KILT_DATA_MAX_CLASSES);
          else
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                         "%s: label %" G_GINT64_FORMAT " of record %" G_GSIZE_FORMAT
                         " (byte offset %" G_GSIZE_FORMAT ") is beyond the %u classes",
                         labels_name, v, i, off, n_classes);
          kilt_split_clear (split);
          return FALSE;
        }
      split->labels[i] = (gint32)v;
      if (v > seen->max)
        *seen = (KiltIdxLabelSeen){ v, labels_name, i, off };
    }
  return TRUE;
}

/* "train-images-idx3-ubyte.gz" -> "train-labels-idx1-ubyte.gz" (and without .gz). */
static char *
find_labels_for (const char *images_path)
{
  g_autofree char *dir = g_path_get_dirname (images_path);
  g_autofree char *base = g_path_get_basename (images_path);
  g_autoptr (GString) name = g_string_new (base);
  const char *suffixes[] = { "", ".gz" };

  if (strstr (name->str, "images") == NULL)
    return NULL;
  g_string_replace (name, "images", "labels", 1);
  g_string_replace (name, "-idx3-", "-idx1-", 1);
  g_string_replace (name, "-idx4-", "-idx1-", 1);
  g_string_replace (name, ".idx3", ".idx1", 1);
  if (g_str_has_suffix (name->str, ".gz"))
    g_string_truncate (name, name->len - 3);
  for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++)
    {
      g_autofree char *cand = g_strconcat (dir, G_DIR_SEPARATOR_S, name->str, suffixes[i], NULL);
      if (g_file_test (cand, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&cand);
    }
  return NULL;
}

static gboolean
is_images_name (const char *name)
{
  return strstr (name, "images") && (strstr (name, "idx") || strstr (name, "ubyte"));
}

gboolean
kilt_data_looks_idx_dir (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)))
    if (is_images_name (name))
      return TRUE;
  return FALSE;
}

static gboolean
load_pair (const char *images_path, char *labels_path, const KiltLoadOptions *opts,
           KiltShape *shape, guint n_classes, KiltIdxLabelSeen *seen, KiltSplit *split,
           GError **error)
{
  g_autofree guint8 *im = NULL, *lb = NULL;
  gsize im_len = 0, lb_len = 0;

  if (labels_path == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: no labels file next to it (for \"x-images-idx3-ubyte\" Kilt looks for "
                   "\"x-labels-idx1-ubyte\", raw or .gz)",
                   images_path);
      return FALSE;
    }
  if (!kilt_idx_read_file (images_path, &im, &im_len, error)
      || !kilt_idx_read_file (labels_path, &lb, &lb_len, error))
    return FALSE;
  return kilt_idx_fill_split (images_path, im, im_len, labels_path, lb, lb_len, opts->max_samples,
                              shape, n_classes, seen, split, error);
}

/* Classes are numbered up to the largest label, so one damaged label byte (200 among 0..9)
 * makes a class for every number in between: say which classes have no samples and where the
 * largest label is. */
static void
note_label_gaps (KiltDataset *ds, const KiltIdxLabelSeen *seen)
{
  g_autofree guint *counts = g_new0 (guint, MAX (ds->n_classes, 1));
  g_autoptr (GString) ranges = g_string_new (NULL);
  const KiltSplit *splits[] = { &ds->train, &ds->test };
  guint missing = 0, listed = 0, below_max = 0;
  g_autofree char *file = NULL;

  for (guint s = 0; s < G_N_ELEMENTS (splits); s++)
    for (gsize i = 0; i < splits[s]->n; i++)
      counts[splits[s]->labels[i]]++;
  for (guint c = 0; c < ds->n_classes; c++)
    {
      guint end = c;
      if (counts[c])
        continue;
      while (end + 1 < ds->n_classes && counts[end + 1] == 0)
        end++;
      missing += end - c + 1;
      if (listed++ < 8)
        g_string_append_printf (ranges, end > c ? "%s%u-%u" : "%s%u", listed > 1 ? ", " : "", c,
                                end);
      else if (listed == 9)
        g_string_append (ranges, ", ...");
      c = end;
    }
  if (missing == 0)
    return;
  /* The largest label stands alone when the one below it is far off. */
  for (guint c = ds->n_classes - 1; c-- > 0;)
    if (counts[c])
      {
        below_max = c;
        break;
      }
  file = g_path_get_basename (seen->file);
  kilt_data_note (ds,
                  "labels run from 0 to %" G_GINT64_FORMAT " but %u of those %u classes have no "
                  "samples (%s); the largest label, %" G_GINT64_FORMAT ", first appears in record "
                  "%" G_GSIZE_FORMAT " of %s (byte offset %" G_GSIZE_FORMAT ")%s%s",
                  seen->max, missing, ds->n_classes, ranges->str, seen->max, seen->record, file,
                  seen->offset,
                  seen->max > 2 * (gint64)below_max + 1 ? ", far above the next largest" : "",
                  seen->max > 2 * (gint64)below_max + 1
                      ? ": a damaged label? Every number up to it became a class"
                      : "");
}

KiltDataset *
kilt_data_load_idx (const char *path, const KiltLoadOptions *opts, KiltProgressFunc progress,
                    gpointer user_data, GCancellable *cancel, GError **error)
{
  g_autoptr (KiltDataset) ds = NULL;
  g_autofree char *train_path = NULL, *test_path = NULL, *names_path = NULL, *folder = NULL;
  g_autofree char *train_labels = NULL, *test_labels = NULL;
  g_auto (GStrv) names = NULL;
  KiltIdxLabelSeen seen = { -1, NULL, 0, 0 };
  guint n_names = 0;

  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
      g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      while (dir && (name = g_dir_read_name (dir)))
        if (is_images_name (name))
          g_ptr_array_add (found, g_strdup (name));
      g_ptr_array_sort (found, kilt_data_compare_names);
      for (guint i = 0; i < found->len; i++)
        {
          const char *f = g_ptr_array_index (found, i);
          char **slot = (strstr (f, "t10k") || strstr (f, "test")) ? &test_path : &train_path;
          /* A raw copy next to the gzip one: the first (raw, by sort order) wins. */
          if (*slot == NULL)
            *slot = g_build_filename (path, f, NULL);
        }
      if (train_path == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: no training images file (a name with \"images\" but not \"test\" "
                       "or \"t10k\", e.g. train-images-idx3-ubyte.gz)",
                       path);
          return NULL;
        }
      folder = g_strdup (path);
    }
  else
    {
      train_path = g_strdup (path);
      folder = g_path_get_dirname (path);
    }

  names_path = g_build_filename (folder, "classes.txt", NULL);
  if (g_file_test (names_path, G_FILE_TEST_IS_REGULAR))
    {
      g_autofree char *text = NULL;
      gsize len;
      if (!g_file_get_contents (names_path, &text, &len, NULL))
        len = 0;
      names = kilt_data_parse_names (text ? text : "", len);
      n_names = g_strv_length (names);
    }

  {
    g_autofree char *base = g_path_get_basename (folder);
    ds = kilt_data_new (base, path, "idx");
  }
  kilt_data_progress (progress, user_data, 0.0, "reading %s", train_path);
  train_labels = find_labels_for (train_path);
  if (!load_pair (train_path, train_labels, opts, &ds->shape, n_names, &seen, &ds->train, error))
    return NULL;
  if (!kilt_data_check_cancel (cancel, error))
    return NULL;
  if (test_path)
    {
      kilt_data_progress (progress, user_data, 0.7, "reading %s", test_path);
      test_labels = find_labels_for (test_path);
      if (!load_pair (test_path, test_labels, opts, &ds->shape, n_names, &seen, &ds->test, error))
        return NULL;
    }
  ds->type = KILT_SAMPLE_U8;
  if (n_names)
    {
      ds->n_classes = n_names;
      ds->class_names = g_steal_pointer (&names);
    }
  else
    {
      ds->n_classes = (guint)(seen.max + 1);
      ds->class_names = kilt_data_number_names (ds->n_classes);
      note_label_gaps (ds, &seen);
    }
  ds->n_targets = 1;
  return g_steal_pointer (&ds);
}
