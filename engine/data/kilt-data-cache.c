/* The on-disk cache of decoded data sets: one file per source and options, written atomically. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-data-cache"

#include "kilt-data-private.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Version 2 adds a CRC-32 of everything between the magic and the trailer: a cached file's
 * bytes are served as pixels and its hash is recorded for the run, so damage must not pass. */
/* Version 3 adds each sample's file path (an evaluation names the images it got wrong). */
#define CACHE_MAGIC  "KILTDS\x03\x00"
#define CACHE_ENDIAN 0x01020304u

char *
kilt_data_cache_dir (void)
{
  const char *env = g_getenv ("KILT_CACHE_DIR");

  if (env && *env)
    return g_build_filename (env, "datasets", NULL);
  return g_build_filename (g_get_user_cache_dir (), "kilt", "datasets", NULL);
}

typedef struct
{
  FILE *f;
  gboolean ok;
  uLong crc;
} Writer;

static void
put_raw (Writer *w, const void *p, gsize n)
{
  if (w->ok && n > 0 && fwrite (p, 1, n, w->f) != n)
    w->ok = FALSE;
}

static void
put (Writer *w, const void *p, gsize n)
{
  if (n > 0)
    w->crc = crc32_z (w->crc, p, n);
  put_raw (w, p, n);
}

static void
put_u32 (Writer *w, guint32 v)
{
  put (w, &v, sizeof v);
}

static void
put_str (Writer *w, const char *s)
{
  guint32 n = s ? (guint32)strlen (s) : 0;

  put_u32 (w, n);
  put (w, s, n);
}

gboolean
kilt_data_cache_write (const KiltDataset *ds, const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *tmp = g_strconcat (path, ".tmp-XXXXXX", NULL);
  const KiltSplit *splits[] = { &ds->train, &ds->val, &ds->test };
  gsize ss = kilt_dataset_sample_size (ds);
  Writer w = { NULL, TRUE, 0 };
  int fd;

  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot create %s: %s", dir,
                   g_strerror (errno));
      return FALSE;
    }
  fd = g_mkstemp (tmp);
  if (fd < 0 || (w.f = fdopen (fd, "wb")) == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write in %s: %s", dir,
                   g_strerror (errno));
      if (fd >= 0)
        close (fd);
      return FALSE;
    }
  put_raw (&w, CACHE_MAGIC, 8);
  w.crc = crc32_z (0, NULL, 0);
  put_u32 (&w, CACHE_ENDIAN);
  {
    guint32 head[7] = { ds->type,      ds->shape.c,   ds->shape.h, ds->shape.w,
                        ds->n_classes, ds->n_targets, ds->skipped };
    put (&w, head, sizeof head);
  }
  put (&w, ds->channel_mean, sizeof ds->channel_mean);
  put (&w, ds->channel_std, sizeof ds->channel_std);
  put_str (&w, ds->hash);
  put_str (&w, ds->notes);
  for (guint i = 0; i < ds->n_classes; i++)
    put_str (&w, ds->class_names[i]);
  for (guint s = 0; s < G_N_ELEMENTS (splits); s++)
    {
      const KiltSplit *sp = splits[s];
      guint64 n = sp->n;
      guint32 flags = (sp->u8 ? 1 : 0) | (sp->f32 ? 2 : 0) | (sp->labels ? 4 : 0)
                      | (sp->targets ? 8 : 0) | (sp->paths ? 16 : 0);
      put (&w, &n, sizeof n);
      put_u32 (&w, flags);
      if (sp->u8)
        put (&w, sp->u8, n * ss);
      if (sp->f32)
        put (&w, sp->f32, n * ss * sizeof (float));
      if (sp->labels)
        put (&w, sp->labels, n * sizeof (gint32));
      if (sp->targets)
        put (&w, sp->targets, n * ds->n_targets * sizeof (float));
      for (guint64 i = 0; sp->paths && i < n; i++)
        put_str (&w, sp->paths[i]);
    }
  {
    guint32 crc = (guint32)w.crc;
    put_raw (&w, &crc, sizeof crc);
  }
  put_raw (&w, CACHE_MAGIC, 8); /* a trailer: a file cut short never reads back */
  if (fclose (w.f) != 0)
    w.ok = FALSE;
  if (!w.ok || g_rename (tmp, path) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write %s: %s", path,
                   g_strerror (errno));
      g_unlink (tmp);
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  const guint8 *p;
  gsize left;
} Reader;

static gboolean
get (Reader *r, void *out, gsize n)
{
  if (n > r->left)
    return FALSE;
  memcpy (out, r->p, n);
  r->p += n;
  r->left -= n;
  return TRUE;
}

static gboolean
get_str (Reader *r, char **out)
{
  guint32 n;

  if (!get (r, &n, sizeof n) || n > r->left)
    return FALSE;
  *out = n ? g_strndup ((const char *)r->p, n) : NULL;
  r->p += n;
  r->left -= n;
  return TRUE;
}

/* Copies @n bytes out of the reader into a fresh buffer, checking @count * @size first. */
static gboolean
get_array (Reader *r, guint64 count, gsize size, gpointer *out)
{
  if (size != 0 && count > r->left / size)
    return FALSE;
  *out = g_malloc (MAX (count * size, 1));
  return get (r, *out, count * size);
}

KiltDataset *
kilt_data_cache_read (const char *path, char **damaged)
{
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, NULL);
  g_autoptr (KiltDataset) ds = NULL;
  KiltSplit *splits[3];
  char magic[8];
  guint32 endian, head[7];
  const guint8 *trailer;
  Reader r;
  gsize ss;

  if (damaged)
    *damaged = NULL;
  if (map == NULL)
    return NULL;
  r.p = (const guint8 *)g_mapped_file_get_contents (map);
  r.left = g_mapped_file_get_length (map);
  /* Another version (or not a cache file at all) is stale, not damaged: decoded again. */
  if (!get (&r, magic, 8) || memcmp (magic, CACHE_MAGIC, 8) != 0)
    return NULL;
  if (r.left < 4 + 4 + 8)
    {
      if (damaged)
        *damaged = g_strdup ("cut short");
      return NULL;
    }
  {
    guint32 stored;
    uLong crc = crc32_z (crc32_z (0, NULL, 0), r.p, r.left - 12);
    memcpy (&stored, r.p + r.left - 12, 4);
    if (stored != (guint32)crc)
      {
        if (damaged)
          *damaged
              = g_strdup_printf ("its checksum is %08x, its bytes give %08x", stored, (guint32)crc);
        return NULL;
      }
    r.left -= 12;
    trailer = r.p + r.left + 4;
  }
  if (memcmp (trailer, CACHE_MAGIC, 8) != 0 || !get (&r, &endian, 4) || endian != CACHE_ENDIAN
      || !get (&r, head, sizeof head))
    goto damaged;
  ds = kilt_data_new (NULL, NULL, NULL);
  ds->type = head[0];
  ds->shape = (KiltShape){ head[1], head[2], head[3] };
  ds->n_classes = head[4];
  ds->n_targets = head[5];
  ds->skipped = head[6];
  ss = kilt_dataset_sample_size (ds);
  if (ds->type > KILT_SAMPLE_F32 || ss == 0 || ds->n_classes > 1u << 20
      || !get (&r, ds->channel_mean, sizeof ds->channel_mean)
      || !get (&r, ds->channel_std, sizeof ds->channel_std) || !get_str (&r, &ds->hash)
      || !get_str (&r, &ds->notes))
    goto damaged;
  ds->class_names = g_new0 (char *, ds->n_classes + 1);
  for (guint i = 0; i < ds->n_classes; i++)
    if (!get_str (&r, &ds->class_names[i]) || ds->class_names[i] == NULL)
      goto damaged;
  splits[0] = &ds->train, splits[1] = &ds->val, splits[2] = &ds->test;
  for (guint s = 0; s < 3; s++)
    {
      guint64 n;
      guint32 flags;
      KiltSplit *sp = splits[s];
      if (!get (&r, &n, sizeof n) || !get (&r, &flags, sizeof flags) || n > r.left)
        goto damaged;
      sp->n = n;
      if (((flags & 1) && !get_array (&r, n, ss, (gpointer *)&sp->u8))
          || ((flags & 2) && !get_array (&r, n, ss * sizeof (float), (gpointer *)&sp->f32))
          || ((flags & 4) && !get_array (&r, n, sizeof (gint32), (gpointer *)&sp->labels))
          || ((flags & 8)
              && !get_array (&r, n, ds->n_targets * sizeof (float), (gpointer *)&sp->targets)))
        goto damaged;
      if (flags & 16)
        {
          sp->paths = g_new0 (char *, n + 1);
          for (guint64 i = 0; i < n; i++)
            if (!get_str (&r, &sp->paths[i]) || sp->paths[i] == NULL)
              goto damaged;
        }
      for (gsize i = 0; sp->labels && i < n; i++)
        if (sp->labels[i] < 0 || (guint)sp->labels[i] >= ds->n_classes)
          goto damaged;
    }
  if (r.left != 0)
    goto damaged;
  ds->from_cache = TRUE;
  return g_steal_pointer (&ds);

damaged:
  /* The checksum matched, so the writer itself wrote this: still, never serve it. */
  if (damaged)
    *damaged = g_strdup ("its contents do not parse");
  return NULL;
}
