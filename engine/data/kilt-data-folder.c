/* Image folders: one sub-folder per class, decoded on every core, the result cached on disk. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-data-folder"

#include "kilt-data-private.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define CHUNK      64
#define MAX_LISTED 5

typedef struct
{
  char *path;
  guint split; /* KiltSplitKind */
  gint32 label;
  gint64 size;
  gint64 mtime;
} ImageFile;

static void
image_file_clear (gpointer p)
{
  g_free (((ImageFile *)p)->path);
}

static gboolean
is_image_name (const char *name)
{
  static const char *const exts[] = { ".jpg", ".jpeg", ".png", ".bmp" };
  g_autofree char *lower = g_ascii_strdown (name, -1);

  if (name[0] == '.')
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (exts); i++)
    if (g_str_has_suffix (lower, exts[i]))
      return TRUE;
  return FALSE;
}

/* Sorted names of the entries of @dir that are folders (or, @want_dirs FALSE, images). */
static GPtrArray *
list_dir (const char *dir, gboolean want_dirs)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    {
      if (name[0] == '.')
        continue;
      if (want_dirs)
        {
          g_autofree char *p = g_build_filename (dir, name, NULL);
          if (g_file_test (p, G_FILE_TEST_IS_DIR))
            g_ptr_array_add (out, g_strdup (name));
        }
      else if (is_image_name (name))
        g_ptr_array_add (out, g_strdup (name));
    }
  g_ptr_array_sort (out, kilt_data_compare_names);
  return out;
}

/* Lists the images of one split; class names come from the training split. */
/* A folder name as a class name: the window and the run record take one line of UTF-8, and a
 * file name may hold any byte but '/' (invalid bytes become U+FFFD, control characters '?'). */
static char *
display_class_name (const char *raw)
{
  char *name = g_utf8_make_valid (raw, -1);

  for (char *c = name; *c; c++)
    if ((guchar)*c < 0x20 || *c == 0x7f)
      *c = '?';
  return name;
}

/* Drops class folders that are the same folder as another (a link to it), keeping the one
 * that is not a link: its images would otherwise count twice, under two classes. */
static void
drop_duplicate_dirs (const char *root, GPtrArray *dirs, GString *warnings)
{
  guint n = dirs->len;
  g_autofree GStatBuf *st = g_new0 (GStatBuf, MAX (n, 1));
  g_autofree gboolean *link = g_new0 (gboolean, MAX (n, 1));
  g_autofree gboolean *drop = g_new0 (gboolean, MAX (n, 1));

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *p = g_build_filename (root, (const char *)g_ptr_array_index (dirs, i), NULL);
      link[i] = g_file_test (p, G_FILE_TEST_IS_SYMLINK);
      if (g_stat (p, &st[i]) != 0)
        memset (&st[i], 0, sizeof st[i]);
    }
  for (guint i = 0; i < n; i++)
    for (guint j = 0; j < n && !drop[i]; j++)
      {
        gboolean same = j != i && !drop[j] && st[i].st_ino != 0 && st[i].st_ino == st[j].st_ino
                        && st[i].st_dev == st[j].st_dev;
        /* i goes when it is a link and j is not, or both are alike and j comes first. */
        if (same && ((link[i] && !link[j]) || (link[i] == link[j] && j < i)))
          {
            drop[i] = TRUE;
            g_string_append_printf (
                warnings,
                "%s%s: the class folder '%s' is the same folder as '%s'%s; "
                "skipped it, so its images count once",
                warnings->len ? "\n" : "", root, (const char *)g_ptr_array_index (dirs, i),
                (const char *)g_ptr_array_index (dirs, j), link[i] ? " (a link to it)" : "");
          }
      }
  for (guint i = n; i-- > 0;)
    if (drop[i])
      g_ptr_array_remove_index (dirs, i);
}

static gboolean
scan_split (const char *root, KiltSplitKind kind, GPtrArray *classes, guint max_samples,
            GArray *files, GString *warnings, GError **error)
{
  g_autoptr (GPtrArray) dirs = list_dir (root, TRUE);
  g_autoptr (GArray) mine = g_array_new (FALSE, FALSE, sizeof (ImageFile));

  drop_duplicate_dirs (root, dirs, warnings);

  /* Frees the paths listed so far when a later class folder is refused. */
  g_array_set_clear_func (mine, image_file_clear);
  if (dirs->len == 0)
    {
      g_autoptr (GPtrArray) loose = list_dir (root, FALSE);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: no class folders%s; an image folder holds one sub-folder of images per "
                   "class",
                   root, loose->len ? " (only loose images)" : " (the folder is empty)");
      return FALSE;
    }
  for (guint c = 0; c < dirs->len; c++)
    {
      const char *cls = g_ptr_array_index (dirs, c);
      g_autofree char *cdir = g_build_filename (root, cls, NULL);
      g_autoptr (GPtrArray) imgs = list_dir (cdir, FALSE);
      gint32 label = -1;

      if (kind == KILT_SPLIT_TRAIN)
        {
          g_ptr_array_add (classes, g_strdup (cls));
          label = (gint32)classes->len - 1;
        }
      else
        for (guint k = 0; k < classes->len; k++)
          if (g_strcmp0 (g_ptr_array_index (classes, k), cls) == 0)
            label = (gint32)k;
      if (label < 0)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: class '%s' is not among the training classes", cdir, cls);
          return FALSE;
        }
      if (imgs->len == 0)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: the class folder '%s' has no images (JPEG, PNG or BMP)", cdir, cls);
          return FALSE;
        }
      for (guint i = 0; i < imgs->len; i++)
        {
          ImageFile f = { 0 };
          GStatBuf st;
          f.path = g_build_filename (cdir, (const char *)g_ptr_array_index (imgs, i), NULL);
          f.split = kind;
          f.label = label;
          if (g_stat (f.path, &st) == 0)
            {
              f.size = st.st_size;
              f.mtime = (gint64)st.st_mtime;
            }
          g_array_append_val (mine, f);
        }
    }
  /* An even stride over the sorted list keeps every class in a capped subset. */
  for (guint i = 0; i < mine->len; i++)
    {
      ImageFile *f = &g_array_index (mine, ImageFile, i);
      gboolean keep = TRUE;
      if (max_samples && mine->len > max_samples)
        keep
            = i == 0
              || (guint64)i * max_samples / mine->len != (guint64)(i - 1) * max_samples / mine->len;
      if (keep)
        g_array_append_val (files, *f);
      else
        g_free (f->path);
      f->path = NULL; /* now owned by @files, or freed */
    }
  return TRUE;
}

/* Images with more pixels than this (or a side longer than MAX_SIDE) are refused from their
 * header, before any pixel memory: a 1 MB PNG can declare 20000 x 20000 pixels, 1.2 GB decoded,
 * and every decoding thread may hold one. */
#define MAX_PIXELS ((gint64)64 << 20)
#define MAX_SIDE   32768
/* And files larger than this are not read at all. */
#define MAX_FILE_BYTES ((gint64)256 << 20)
/* Bytes handed to a loader at a time. */
#define FEED 4096

typedef struct
{
  int width, height;
  gboolean too_big;
} SizeCheck;

static void
on_size_prepared (GdkPixbufLoader *loader, int width, int height, gpointer user_data)
{
  SizeCheck *c = user_data;

  c->width = width;
  c->height = height;
  if (width > MAX_SIDE || height > MAX_SIDE || (gint64)width * height > MAX_PIXELS)
    {
      c->too_big = TRUE;
      /* A size of 0 x 0 makes every gdk-pixbuf loader stop before it allocates the image (as
       * gdk_pixbuf_get_file_info () does). */
      gdk_pixbuf_loader_set_size (loader, 0, 0);
    }
}

/* Feeds @bytes to @loader and always closes it: a loader dropped unclosed keeps its decoder
 * state (68 KB for JPEG) and warns. */
static GdkPixbuf *
decode_bytes (GdkPixbufLoader *loader, const guint8 *bytes, gsize len, SizeCheck *check,
              GError **error)
{
  g_autoptr (GError) write_error = NULL;
  GdkPixbuf *pb = NULL;
  gboolean ok;

  g_signal_connect (loader, "size-prepared", G_CALLBACK (on_size_prepared), check);
  /* In pieces, so that an image refused from its header is not inflated to its end anyway
   * (libpng goes on decompressing after the loader has stopped taking rows). */
  ok = TRUE;
  for (gsize at = 0; ok && at < len && !check->too_big; at += MIN (len - at, (gsize)FEED))
    ok = gdk_pixbuf_loader_write (loader, bytes + at, MIN (len - at, (gsize)FEED), &write_error);
  ok = ok && !check->too_big;
  /* A failed write has closed the loader already; closing again is harmless. */
  ok = gdk_pixbuf_loader_close (loader, ok ? error : NULL) && ok;
  if (ok)
    pb = gdk_pixbuf_loader_get_pixbuf (loader);
  if (!ok && write_error && error && *error == NULL)
    g_propagate_error (error, g_steal_pointer (&write_error));
  return pb ? g_object_ref (pb) : NULL;
}

/* gdk-pixbuf's BMP loader buffers a file's whole info header, and then everything up to its
 * pixel data, at the sizes the file declares, before it reads the image size: a 100-byte
 * file that declares 2 GB (or 4 GB) made every decoding thread reserve that much (found by
 * tests/fuzz/fuzz-folder.c). No BMP header is longer than BMP v5's, and pixel data that
 * starts past the end of the file is not there. */
#define MAX_BMP_INFO 124

static gboolean
check_bmp_header (const guint8 *bytes, gsize len, GError **error)
{
  guint32 info, offset;

  if (len < 18 || bytes[0] != 'B' || bytes[1] != 'M')
    return TRUE; /* not a BMP, or too short for a loader to take */
  offset
      = bytes[10] | (guint32)bytes[11] << 8 | (guint32)bytes[12] << 16 | (guint32)bytes[13] << 24;
  info = bytes[14] | (guint32)bytes[15] << 8 | (guint32)bytes[16] << 16 | (guint32)bytes[17] << 24;
  if (info > MAX_BMP_INFO)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "not a readable image: its BMP info header (byte offset 14) declares %u bytes, "
                   "more than the %d of any BMP version",
                   info, MAX_BMP_INFO);
      return FALSE;
    }
  if (offset > len)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "not a readable image: its BMP pixel data starts at byte %u (the offset at "
                   "byte 10), past the end of the %" G_GSIZE_FORMAT "-byte file",
                   offset, len);
      return FALSE;
    }
  /* The palette is buffered whole too, at the colour count the header gives (byte 46), or 2^bpp
   * for 8 bits or fewer: a 100-byte file declaring 3 x 10^9 colours made the loader reserve
   * 3.5 GB (fuzz-folder again). Its entries are 3 bytes after a 12-byte header, else 4. */
  if (len >= 14 + (gsize)info && info >= 12)
    {
      guint bpp = info == 12 ? (bytes[24] | bytes[25] << 8) : (bytes[28] | bytes[29] << 8);
      guint64 colours = 0, at = 14 + (guint64)info;

      if (info >= 40)
        colours = bytes[46] | (guint32)bytes[47] << 8 | (guint32)bytes[48] << 16
                  | (guint32)bytes[49] << 24;
      if (colours == 0 && bpp <= 8)
        colours = (guint64)1 << bpp;
      if (at + colours * (info == 12 ? 3 : 4) > len)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "not a readable image: its BMP palette of %" G_GUINT64_FORMAT
                       " colours (%u bits a pixel) runs past the end of the %" G_GSIZE_FORMAT
                       "-byte file",
                       colours, bpp, len);
          return FALSE;
        }
    }
  return TRUE;
}

/* gdk_pixbuf_new_from_file () sniffs every file against every loader; naming the loader from
 * the extension and handing it the bytes is markedly cheaper for many small images. A file
 * whose extension lies falls back to a loader that sniffs the bytes. Either way the image's
 * size is checked from its header before it is decoded. */
static GdkPixbuf *
load_pixbuf (const char *path, GError **error)
{
  g_autofree char *lower = g_ascii_strdown (path, -1);
  const char *type = g_str_has_suffix (lower, ".png")   ? "png"
                     : g_str_has_suffix (lower, ".bmp") ? "bmp"
                                                        : "jpeg";
  g_autofree char *contents = NULL;
  g_autoptr (GError) local = NULL;
  SizeCheck check = { 0, 0, FALSE };
  GdkPixbuf *pb = NULL;
  const guint8 *bytes;
  GStatBuf st;
  gsize len;

  if (g_stat (path, &st) == 0 && st.st_size > MAX_FILE_BYTES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%" G_GINT64_FORMAT " bytes is more than Kilt reads for one image",
                   (gint64)st.st_size);
      return NULL;
    }
  if (!g_file_get_contents (path, &contents, &len, error))
    return NULL;
  bytes = (const guint8 *)contents;
  if (len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "the file is empty");
      return NULL;
    }
  if (!check_bmp_header (bytes, len, error))
    return NULL;
  {
    g_autoptr (GdkPixbufLoader) typed = gdk_pixbuf_loader_new_with_type (type, NULL);
    if (typed)
      pb = decode_bytes (typed, bytes, len, &check, &local);
  }
  if (pb == NULL && !check.too_big)
    {
      g_autoptr (GdkPixbufLoader) sniffing = gdk_pixbuf_loader_new ();
      g_autoptr (GError) sniff_error = NULL;
      GdkPixbufFormat *format;
      g_autofree char *found = NULL;
      pb = decode_bytes (sniffing, bytes, len, &check, &sniff_error);
      format = gdk_pixbuf_loader_get_format (sniffing);
      found = format ? gdk_pixbuf_format_get_name (format) : NULL;
      /* The sniffing loader's reason only when it found another format than the name said. */
      if (local == NULL || (found && g_strcmp0 (found, type) != 0))
        {
          g_clear_error (&local);
          local = g_steal_pointer (&sniff_error);
        }
    }
  if (pb)
    return pb;
  if (check.too_big)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%d x %d pixels is more than the %" G_GINT64_FORMAT
                 " megapixels (or %d pixels a side) Kilt decodes; shrink the image first",
                 check.width, check.height, MAX_PIXELS >> 20, MAX_SIDE);
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "not a readable image: %s",
                 local ? local->message : "no decoder recognised it");
  return NULL;
}

/* Decodes one image into @out (channels first, w x h). */
static gboolean
decode_image (const char *path, guint w, guint h, gboolean gray, KiltImageFit fit, guint8 *out,
              guint *src_w, guint *src_h, char **err)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GdkPixbuf) pb = load_pixbuf (path, &error);
  g_autoptr (GdkPixbuf) scaled = NULL;
  GdkPixbuf *use;
  const guint8 *px;
  int stride, nch, pw, ph;
  gsize plane = (gsize)w * h;

  if (pb == NULL)
    {
      *err = g_strdup (error->message);
      return FALSE;
    }
  pw = gdk_pixbuf_get_width (pb);
  ph = gdk_pixbuf_get_height (pb);
  *src_w = (guint)pw;
  *src_h = (guint)ph;
  use = pb;
  if ((guint)pw != w || (guint)ph != h)
    {
      if (fit == KILT_FIT_CROP)
        {
          double s = MAX ((double)w / pw, (double)h / ph);
          int sw = MAX ((int)w, (int)ceil (pw * s - 1e-9));
          int sh = MAX ((int)h, (int)ceil (ph * s - 1e-9));
          g_autoptr (GdkPixbuf) big = gdk_pixbuf_scale_simple (pb, sw, sh, GDK_INTERP_BILINEAR);
          if (big)
            scaled = gdk_pixbuf_new_subpixbuf (big, (sw - (int)w) / 2, (sh - (int)h) / 2, (int)w,
                                               (int)h);
        }
      else
        scaled = gdk_pixbuf_scale_simple (pb, (int)w, (int)h, GDK_INTERP_BILINEAR);
      if (scaled == NULL)
        {
          *err = g_strdup ("out of memory while scaling");
          return FALSE;
        }
      use = scaled;
    }
  if (gdk_pixbuf_get_bits_per_sample (use) != 8 || gdk_pixbuf_get_n_channels (use) < 3)
    {
      *err = g_strdup ("unsupported pixel layout");
      return FALSE;
    }
  px = gdk_pixbuf_read_pixels (use);
  stride = gdk_pixbuf_get_rowstride (use);
  nch = gdk_pixbuf_get_n_channels (use);
  for (guint y = 0; y < h; y++)
    for (guint x = 0; x < w; x++)
      {
        const guint8 *p = px + (gsize)y * stride + (gsize)x * nch;
        gsize at = (gsize)y * w + x;
        if (gray)
          out[at] = (guint8)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
        else
          for (guint c = 0; c < 3; c++)
            out[c * plane + at] = p[c];
      }
  return TRUE;
}

typedef struct
{
  GArray *files; /* ImageFile */
  guint8 *pixels;
  char **errors;        /* per file: NULL or why it could not be read */
  guint *src_w, *src_h; /* per file: its size before scaling */
  guint w, h;
  gboolean gray;
  KiltImageFit fit;
  gsize ss;
  gint done; /* atomic: files handled */
  gint cancelled;
  GMutex lock;
  GCond cond;
} DecodeJob;

static void
decode_chunk (gpointer data, gpointer user_data)
{
  DecodeJob *job = user_data;
  guint start = GPOINTER_TO_UINT (data) - 1;
  guint end = MIN (start + CHUNK, job->files->len);

  for (guint i = start; i < end; i++)
    {
      const ImageFile *f = &g_array_index (job->files, ImageFile, i);
      if (g_atomic_int_get (&job->cancelled))
        break;
      decode_image (f->path, job->w, job->h, job->gray, job->fit, job->pixels + i * job->ss,
                    &job->src_w[i], &job->src_h[i], &job->errors[i]);
    }
  g_mutex_lock (&job->lock);
  g_atomic_int_add (&job->done, (gint)(end - start));
  g_cond_signal (&job->cond);
  g_mutex_unlock (&job->lock);
}

static void
job_clear (DecodeJob *job)
{
  for (guint i = 0; job->errors && i < job->files->len; i++)
    g_free (job->errors[i]);
  g_free (job->errors);
  g_free (job->src_w);
  g_free (job->src_h);
  g_free (job->pixels);
}

/* With no size chosen, the first image's size is every image's: say when others differ, since
 * they were stretched (or cropped) to it. */
static void
note_mixed_sizes (KiltDataset *ds, const DecodeJob *job)
{
  guint n_other = 0, n_read = 0, first = G_MAXUINT;

  for (guint i = 0; i < job->files->len; i++)
    {
      if (job->errors[i])
        continue;
      n_read++;
      if (job->src_w[i] == job->w && job->src_h[i] == job->h)
        continue;
      if (n_other++ == 0)
        first = i;
    }
  if (n_other == 0)
    return;
  kilt_data_note (ds,
                  "images differ in size: %u of %u are not %u x %u, the size of the first image "
                  "(e.g. %s is %u x %u); they were %s to %u x %u (choose the size with the image "
                  "size option, e.g. --image-size %ux%u)",
                  n_other, n_read, job->w, job->h,
                  g_array_index (job->files, ImageFile, first).path, job->src_w[first],
                  job->src_h[first], job->fit == KILT_FIT_CROP ? "scaled and cropped" : "resized",
                  job->w, job->h, job->w, job->h);
}

static char *
cache_key (const char *root, const KiltLoadOptions *opts, guint w, guint h, GArray *files)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree char *abs = g_canonicalize_filename (root, NULL);
  gsize root_len = strlen (abs);
  /* Whether the size was chosen or came from the first image: the notes differ. */
  guint32 o[6] = { w,
                   h,
                   (guint32)opts->grayscale,
                   opts->fit,
                   opts->max_samples,
                   opts->image_width && opts->image_height };

  g_checksum_update (sum, (const guchar *)"kilt-image-folder-2", -1);
  g_checksum_update (sum, (const guchar *)abs, (gssize)root_len + 1);
  g_checksum_update (sum, (const guchar *)o, sizeof o);
  for (guint i = 0; i < files->len; i++)
    {
      const ImageFile *f = &g_array_index (files, ImageFile, i);
      gint64 v[3] = { f->split, f->size, f->mtime };
      g_checksum_update (sum, (const guchar *)f->path, (gssize)strlen (f->path) + 1);
      g_checksum_update (sum, (const guchar *)v, sizeof v);
    }
  return g_strdup (g_checksum_get_string (sum));
}

/* The size of the first image that decodes, trying at most FIRST_SIZE_TRIES of them: a folder
 * whose first images all fail is refused at once with the first one's error, rather than
 * tried image by image. Decodes through load_pixbuf (), which names the loader: sniffing the
 * format instead (gdk_pixbuf_get_file_info) fails for every file on a system without the
 * shared-mime-info database, and took 30 ms a file there. */
#define FIRST_SIZE_TRIES 16

static gboolean
first_size (GArray *files, guint *w, guint *h, GError **error)
{
  g_autoptr (GError) first = NULL;

  for (guint i = 0; i < MIN (files->len, FIRST_SIZE_TRIES); i++)
    {
      g_autoptr (GError) local = NULL;
      g_autoptr (GdkPixbuf) pb = load_pixbuf (g_array_index (files, ImageFile, i).path, &local);
      if (pb && gdk_pixbuf_get_width (pb) > 0 && gdk_pixbuf_get_height (pb) > 0)
        {
          *w = (guint)gdk_pixbuf_get_width (pb);
          *h = (guint)gdk_pixbuf_get_height (pb);
          return TRUE;
        }
      if (first == NULL)
        first = g_error_new (KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: %s",
                             g_array_index (files, ImageFile, i).path,
                             local ? local->message : "not an image");
    }
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
               "none of the first %u of %u images can be read; the first: %s",
               MIN (files->len, FIRST_SIZE_TRIES), files->len,
               first ? first->message : "no images");
  return FALSE;
}

KiltDataset *
kilt_data_load_folder (const char *path, const KiltLoadOptions *opts, KiltProgressFunc progress,
                       gpointer user_data, GCancellable *cancel, GError **error)
{
  g_autoptr (GArray) files = g_array_new (FALSE, TRUE, sizeof (ImageFile));
  g_autoptr (GPtrArray) classes = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *train_root = g_build_filename (path, "train", NULL);
  g_autofree char *test_root = g_build_filename (path, "test", NULL);
  g_autofree char *val_root = g_build_filename (path, "val", NULL);
  g_autofree char *key = NULL, *cache_path = NULL, *cache_dir = NULL, *cache_damaged = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  g_autofree char *base = g_path_get_basename (path);
  DecodeJob job = { 0 };
  GThreadPool *pool;
  guint w = opts->image_width, h = opts->image_height, n_bad = 0, limit;
  gsize counts[3] = { 0 }, fill[3] = { 0 };
  KiltSplit *splits[3];
  g_autoptr (GString) listed = g_string_new (NULL);
  g_autoptr (GString) warnings = g_string_new (NULL);
  double max_bad = opts->max_bad_fraction < 0 ? 0.01 : opts->max_bad_fraction;
  gint64 t0 = g_get_monotonic_time ();

  g_array_set_clear_func (files, image_file_clear);
  kilt_data_progress (progress, user_data, 0.0, "listing %s", path);
  if (g_file_test (train_root, G_FILE_TEST_IS_DIR))
    {
      if (!scan_split (train_root, KILT_SPLIT_TRAIN, classes, opts->max_samples, files, warnings,
                       error))
        return NULL;
      if (g_file_test (test_root, G_FILE_TEST_IS_DIR)
          && !scan_split (test_root, KILT_SPLIT_TEST, classes, opts->max_samples, files, warnings,
                          error))
        return NULL;
      if (g_file_test (val_root, G_FILE_TEST_IS_DIR)
          && !scan_split (val_root,
                          g_file_test (test_root, G_FILE_TEST_IS_DIR) ? KILT_SPLIT_VAL
                                                                      : KILT_SPLIT_TEST,
                          classes, opts->max_samples, files, warnings, error))
        return NULL;
    }
  else if (!scan_split (path, KILT_SPLIT_TRAIN, classes, opts->max_samples, files, warnings, error))
    return NULL;

  if ((w == 0 || h == 0) && !first_size (files, &w, &h, error))
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }

  cache_dir = kilt_data_cache_dir ();
  key = cache_key (path, opts, w, h, files);
  cache_path = g_strconcat (cache_dir, G_DIR_SEPARATOR_S, key, ".kds", NULL);
  ds = opts->no_cache ? NULL : kilt_data_cache_read (cache_path, &cache_damaged);
  if (cache_damaged)
    g_unlink (cache_path);
  /* A cached load that skipped more than this call tolerates: decode again for the error. */
  if (ds && ds->skipped > (guint)floor (max_bad * files->len))
    g_clear_pointer (&ds, kilt_dataset_free);
  if (ds)
    {
      g_free (ds->name);
      g_free (ds->format);
      ds->name = g_strdup (base);
      ds->format = g_strdup ("image-folder");
      g_debug ("%s: read from the cache %s in %.2f s", path, cache_path,
               (g_get_monotonic_time () - t0) / 1e6);
      return g_steal_pointer (&ds);
    }

  job.files = files;
  job.w = w;
  job.h = h;
  job.gray = opts->grayscale;
  job.fit = opts->fit;
  job.ss = (gsize)(opts->grayscale ? 1 : 3) * w * h;
  {
    g_autofree char *what = g_strdup_printf ("%u images of %u x %u", files->len, w, h);
    job.pixels = kilt_data_try_alloc (job.ss * files->len, path, what, error);
  }
  job.errors = g_new0 (char *, MAX (files->len, 1));
  job.src_w = g_new0 (guint, MAX (files->len, 1));
  job.src_h = g_new0 (guint, MAX (files->len, 1));
  if (job.pixels == NULL)
    goto fail;
  g_mutex_init (&job.lock);
  g_cond_init (&job.cond);
  pool
      = g_thread_pool_new (decode_chunk, &job, (gint)MAX (g_get_num_processors (), 1), FALSE, NULL);
  for (guint i = 0; i < files->len; i += CHUNK)
    g_thread_pool_push (pool, GUINT_TO_POINTER (i + 1), NULL);
  g_mutex_lock (&job.lock);
  while ((guint)g_atomic_int_get (&job.done) < files->len)
    {
      gint64 until = g_get_monotonic_time () + 100 * G_TIME_SPAN_MILLISECOND;
      g_cond_wait_until (&job.cond, &job.lock, until);
      if (cancel && g_cancellable_is_cancelled (cancel))
        {
          g_atomic_int_set (&job.cancelled, 1);
          break;
        }
      g_mutex_unlock (&job.lock);
      kilt_data_progress (progress, user_data, 0.98 * g_atomic_int_get (&job.done) / files->len,
                          "decoding images: %d of %u", g_atomic_int_get (&job.done), files->len);
      g_mutex_lock (&job.lock);
    }
  g_mutex_unlock (&job.lock);
  g_thread_pool_free (pool, FALSE, TRUE);
  g_mutex_clear (&job.lock);
  g_cond_clear (&job.cond);

  ds = kilt_data_new (base, path, "image-folder");
  if (g_atomic_int_get (&job.cancelled))
    {
      kilt_data_check_cancel (cancel, error);
      goto fail;
    }

  for (guint i = 0; i < files->len; i++)
    if (job.errors[i])
      {
        if (n_bad < MAX_LISTED)
          g_string_append_printf (listed, "\n  %s: %s", g_array_index (files, ImageFile, i).path,
                                  job.errors[i]);
        n_bad++;
      }
    else
      counts[g_array_index (files, ImageFile, i).split]++;
  limit = (guint)floor (max_bad * files->len);
  if (n_bad > limit)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %u of %u images cannot be read (more than %g%% allowed):%s%s", path, n_bad,
                   files->len, max_bad * 100.0, listed->str, n_bad > MAX_LISTED ? "\n  ..." : "");
      goto fail;
    }

  ds->type = KILT_SAMPLE_U8;
  ds->shape = (KiltShape){ opts->grayscale ? 1 : 3, h, w };
  ds->n_targets = 1;
  ds->n_classes = classes->len;
  ds->class_names = g_new0 (char *, classes->len + 1);
  for (guint c = 0; c < classes->len; c++)
    {
      const char *raw = g_ptr_array_index (classes, c);
      ds->class_names[c] = display_class_name (raw);
      if (strcmp (ds->class_names[c], raw) != 0)
        {
          g_autofree char *escaped = g_strescape (raw, NULL);
          kilt_data_note (ds,
                          "the class folder name '%s' is not one line of UTF-8 text; the class "
                          "is shown as '%s'",
                          escaped, ds->class_names[c]);
        }
    }
  splits[0] = &ds->train, splits[1] = &ds->val, splits[2] = &ds->test;
  for (guint s = 0; s < 3; s++)
    {
      if (counts[s] == 0)
        continue;
      splits[s]->u8 = kilt_data_try_alloc (counts[s] * job.ss, path, "the decoded images", error);
      if (splits[s]->u8 == NULL)
        goto fail;
      splits[s]->n = counts[s];
      splits[s]->labels = g_new (gint32, counts[s]);
      /* Each sample's file, so that an evaluation can name the image it got wrong. */
      splits[s]->paths = g_new0 (char *, counts[s] + 1);
    }
  for (guint i = 0; i < files->len; i++)
    {
      const ImageFile *f = &g_array_index (files, ImageFile, i);
      KiltSplit *sp = splits[f->split];
      if (job.errors[i])
        continue;
      memcpy (sp->u8 + fill[f->split] * job.ss, job.pixels + i * job.ss, job.ss);
      sp->paths[fill[f->split]] = g_strdup (f->path);
      sp->labels[fill[f->split]++] = f->label;
    }
  ds->skipped = n_bad;
  if (warnings->len)
    kilt_data_note (ds, "%s", warnings->str);

  if (n_bad)
    kilt_data_note (ds, "skipped %u unreadable image%s:%s%s", n_bad, n_bad == 1 ? "" : "s",
                    listed->str, n_bad > MAX_LISTED ? "\n  ..." : "");
  if (opts->image_width == 0 || opts->image_height == 0)
    note_mixed_sizes (ds, &job);
  g_debug ("%s: decoded %u images in %.2f s", path, files->len,
           (g_get_monotonic_time () - t0) / 1e6);

  /* Statistics and hash go into the cache, so a warm load needs no pass over the pixels. */
  kilt_dataset_compute_stats (ds);
  kilt_dataset_compute_hash (ds);
  {
    g_autoptr (GError) cache_error = NULL;
    if (!kilt_data_cache_write (ds, cache_path, &cache_error))
      kilt_data_note (ds, "the decoded images could not be cached: %s", cache_error->message);
  }
  /* Said for this load only, so after the cache is written. */
  if (cache_damaged)
    kilt_data_note (ds, "the decoded-image cache %s was damaged (%s); decoded the images again",
                    cache_path, cache_damaged);

  job_clear (&job);
  return g_steal_pointer (&ds);

fail:
  job_clear (&job);
  return NULL;
}
