/* Keras model files with their weights: Keras 2 model.save () .h5 and Keras 3 .keras archives. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras-file"

#include "kilt-keras-file.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"
#include "kilt-keras-weights.h"
#include "kilt-keras.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <zip.h>

static void set_error (GError **error, const char *path, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
set_error (GError **error, const char *path, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: %s", path, msg);
}

KiltKerasFileKind
kilt_keras_file_sniff (const char *path)
{
  guint8 buf[4] = { 0 };
  FILE *f;
  gsize n;

  if (kilt_keras_weights_is_hdf5 (path))
    return KILT_KERAS_FILE_HDF5;
  f = fopen (path, "rb");
  if (f == NULL)
    return KILT_KERAS_FILE_NONE;
  n = fread (buf, 1, 4, f);
  fclose (f);
  /* A local file header, or the end record of an empty archive. */
  if (n == 4 && buf[0] == 'P' && buf[1] == 'K'
      && ((buf[2] == 3 && buf[3] == 4) || (buf[2] == 5 && buf[3] == 6)))
    return KILT_KERAS_FILE_ARCHIVE;
  return KILT_KERAS_FILE_NONE;
}

/* ---- .keras archives ------------------------------------------------------------------------ */

typedef struct
{
  zip_t *zip;
  const char *path;
} Archive;

static gboolean
archive_open (Archive *a, const char *path, GError **error)
{
  int code = 0;
  zip_int64_t n;

  a->path = path;
  /* ZIP_CHECKCONS: the central directory must agree with the local headers, so a cut or
   * patched archive is refused at open rather than half read. */
  a->zip = zip_open (path, ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (a->zip == NULL)
    {
      zip_error_t ze;
      zip_error_init_with_code (&ze, code);
      set_error (error, path, "not a readable .keras archive: %s", zip_error_strerror (&ze));
      zip_error_fini (&ze);
      return FALSE;
    }
  n = zip_get_num_entries (a->zip, 0);
  if (n < 0 || n > KILT_KERAS_MAX_ARCHIVE_ENTRIES)
    {
      set_error (error, path,
                 "the archive holds %" G_GINT64_FORMAT " entries; a .keras file "
                 "has a few (at most %d taken)",
                 (gint64)n, KILT_KERAS_MAX_ARCHIVE_ENTRIES);
      zip_discard (a->zip);
      a->zip = NULL;
      return FALSE;
    }
  return TRUE;
}

/* The entry @name, whole, at most @max bytes unpacked; NULL with an error naming it. */
static char *
archive_read (Archive *a, const char *name, gsize max, gsize *len, GError **error)
{
  zip_int64_t index = zip_name_locate (a->zip, name, 0);
  zip_stat_t st;
  zip_file_t *zf;
  char *buf;
  gsize got = 0;

  if (index < 0)
    {
      set_error (error, a->path,
                 "the archive has no %s; a .keras file holds config.json and "
                 "model.weights.h5",
                 name);
      return NULL;
    }
  zip_stat_init (&st);
  if (zip_stat_index (a->zip, (zip_uint64_t)index, 0, &st) < 0 || !(st.valid & ZIP_STAT_SIZE))
    {
      set_error (error, a->path, "%s in the archive cannot be read", name);
      return NULL;
    }
  if (st.size > max)
    {
      set_error (error, a->path,
                 "%s in the archive is %" G_GUINT64_FORMAT " bytes; Kilt takes "
                 "at most %zu",
                 name, (guint64)st.size, max);
      return NULL;
    }
  buf = g_try_malloc ((gsize)st.size + 1);
  if (buf == NULL)
    {
      set_error (error, a->path, "no memory for %s (%" G_GUINT64_FORMAT " bytes)", name,
                 (guint64)st.size);
      return NULL;
    }
  zf = zip_fopen_index (a->zip, (zip_uint64_t)index, 0);
  if (zf == NULL)
    {
      set_error (error, a->path, "%s in the archive cannot be opened: %s", name,
                 zip_strerror (a->zip));
      g_free (buf);
      return NULL;
    }
  /* Read one byte past the declared size: an entry that inflates to more is refused there. */
  for (;;)
    {
      zip_int64_t r = zip_fread (zf, buf + got, (zip_uint64_t)(st.size + 1 - got));
      if (r < 0)
        {
          set_error (error, a->path, "%s in the archive is damaged: %s", name,
                     zip_file_strerror (zf));
          zip_fclose (zf);
          g_free (buf);
          return NULL;
        }
      if (r == 0)
        break;
      got += (gsize)r;
      if (got > st.size)
        break;
    }
  zip_fclose (zf);
  if (got != st.size)
    {
      set_error (error, a->path,
                 "%s in the archive holds %zu bytes, not the %" G_GUINT64_FORMAT
                 " its header declares",
                 name, got, (guint64)st.size);
      g_free (buf);
      return NULL;
    }
  buf[got] = '\0';
  *len = got;
  return buf;
}

static KiltModel *
load_archive (const char *path, KiltLossType loss, char **notes, GError **error)
{
  Archive a = { 0 };
  g_autofree char *config = NULL, *weights = NULL, *inner = NULL;
  gsize config_len = 0, weights_len = 0;
  KiltModel *model = NULL;

  if (!archive_open (&a, path, error))
    return NULL;
  config = archive_read (&a, "config.json", KILT_JSON_MAX_BYTES, &config_len, error);
  if (config)
    weights
        = archive_read (&a, "model.weights.h5", KILT_KERAS_MAX_WEIGHTS_IMAGE, &weights_len, error);
  zip_discard (a.zip);
  if (config == NULL || weights == NULL)
    return NULL;
  inner = g_strdup_printf ("%s (config.json)", path);
  model = kilt_keras_load_data (config, (gssize)config_len, inner, loss, notes, error);
  if (model == NULL)
    return NULL;
  g_free (inner);
  inner = g_strdup_printf ("%s (model.weights.h5)", path);
  if (!kilt_keras_weights_apply (model, config, inner, weights, weights_len, error))
    {
      kilt_model_free (model);
      return NULL;
    }
  return model;
}

/* ---- the loaders ---------------------------------------------------------------------------- */

static void
append_note (char **notes, const char *note)
{
  char *old;

  if (notes == NULL || note == NULL)
    return;
  old = *notes;
  *notes = old && *old ? g_strdup_printf ("%s\n%s", old, note) : g_strdup (note);
  g_free (old);
}

KiltModel *
kilt_keras_file_load (const char *path, KiltLossType loss, char **notes, GError **error)
{
  KiltModel *model = NULL;

  if (notes)
    *notes = NULL;
  switch (kilt_keras_file_sniff (path))
    {
      case KILT_KERAS_FILE_ARCHIVE:
        model = load_archive (path, loss, notes, error);
        break;
      case KILT_KERAS_FILE_HDF5:
        {
          g_autoptr (GError) local = NULL;
          g_autofree char *config = kilt_keras_weights_model_config (path, &local);
          g_autofree char *src = NULL;
          if (config == NULL)
            {
              if (local)
                g_propagate_error (error, g_steal_pointer (&local));
              else
                set_error (error, path,
                           "holds weights only (no model_config); give the architecture with "
                           "--model (a JSON file) and this file with --weights");
              return NULL;
            }
          src = g_strdup_printf ("%s (model_config)", path);
          model = kilt_keras_load_data (config, -1, src, loss, notes, error);
          if (model && !kilt_keras_weights_apply (model, config, path, NULL, 0, error))
            g_clear_pointer (&model, kilt_model_free);
          break;
        }
      case KILT_KERAS_FILE_NONE:
        set_error (error, path, "neither an HDF5 (.h5) nor a .keras (zip) file");
        return NULL;
    }
  if (model)
    append_note (notes, model->weights_note);
  return model;
}

gboolean
kilt_keras_file_load_weights (KiltModel *model, const char *keras_json, const char *path,
                              GError **error)
{
  switch (kilt_keras_file_sniff (path))
    {
      case KILT_KERAS_FILE_HDF5:
        return kilt_keras_weights_apply (model, keras_json, path, NULL, 0, error);
      case KILT_KERAS_FILE_ARCHIVE:
        {
          Archive a = { 0 };
          g_autofree char *weights = NULL, *inner = NULL;
          gsize len = 0;
          if (!archive_open (&a, path, error))
            return FALSE;
          weights
              = archive_read (&a, "model.weights.h5", KILT_KERAS_MAX_WEIGHTS_IMAGE, &len, error);
          zip_discard (a.zip);
          if (weights == NULL)
            return FALSE;
          inner = g_strdup_printf ("%s (model.weights.h5)", path);
          return kilt_keras_weights_apply (model, keras_json, inner, weights, len, error);
        }
      case KILT_KERAS_FILE_NONE:
        break;
    }
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    set_error (error, path, "no such file");
  else
    set_error (error, path, "neither an HDF5 weights file (.h5, .weights.h5) nor a .keras archive");
  return FALSE;
}

char *
kilt_keras_file_config (const char *path, GError **error)
{
  switch (kilt_keras_file_sniff (path))
    {
      case KILT_KERAS_FILE_HDF5:
        {
          g_autoptr (GError) local = NULL;
          char *config = kilt_keras_weights_model_config (path, &local);
          if (config == NULL && local == NULL)
            set_error (error, path, "holds weights only (no model_config)");
          else if (config == NULL)
            g_propagate_error (error, g_steal_pointer (&local));
          return config;
        }
      case KILT_KERAS_FILE_ARCHIVE:
        {
          Archive a = { 0 };
          char *config;
          gsize len = 0;
          if (!archive_open (&a, path, error))
            return NULL;
          config = archive_read (&a, "config.json", KILT_JSON_MAX_BYTES, &len, error);
          zip_discard (a.zip);
          return config;
        }
      case KILT_KERAS_FILE_NONE:
        break;
    }
  set_error (error, path, "neither an HDF5 (.h5) nor a .keras (zip) file");
  return NULL;
}

/* Keras 3 serialises a model as {"module": ..., "class_name": ..., "config": ...}; Keras 2's
 * configuration has no "module" at its top, and Keras 3's load_model cannot read it. */
static gboolean
is_keras3_config (const char *json)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root;

  if (json == NULL || !kilt_json_check_text (json, -1, NULL)
      || !json_parser_load_from_data (parser, json, -1, NULL))
    return FALSE;
  root = json_parser_get_root (parser);
  return root && JSON_NODE_HOLDS_OBJECT (root)
         && json_object_has_member (json_node_get_object (root), "module");
}

gboolean
kilt_keras_file_write_archive (KiltModel *model, const char *keras_json, const float *params,
                               const float *state, const char *path, GError **error)
{
  g_autofree char *tmp = g_strdup_printf ("%s.part", path);
  g_autofree char *weights_path = g_strdup_printf ("%s.weights.h5.part", path);
  g_autofree char *weights = NULL, *meta = NULL, *date = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  gsize weights_len = 0;
  zip_t *z;
  int code = 0;
  gboolean ok = FALSE;

  if (!is_keras3_config (keras_json))
    {
      set_error (error, path,
                 "a .keras file needs the model's Keras 3 architecture (a Keras 3 to_json or "
                 ".keras file as --model; Keras 3 cannot load a Keras 2 configuration); write a "
                 ".weights.h5 instead");
      return FALSE;
    }
  if (!kilt_keras_weights_write (model, keras_json, params, state, weights_path, NULL, error))
    return FALSE;
  if (!g_file_get_contents (weights_path, &weights, &weights_len, error))
    goto out;
  date = g_date_time_format (now, "%Y-%m-%d@%H:%M:%S");
  /* What Keras writes there; it reads the version to pick how to load older files. */
  meta = g_strdup_printf ("{\"keras_version\": \"3.0.0\", \"date_saved\": \"%s\", "
                          "\"exported_by\": \"Kilt\"}",
                          date);
  z = zip_open (tmp, ZIP_CREATE | ZIP_TRUNCATE, &code);
  if (z == NULL)
    {
      set_error (error, tmp, "cannot be written");
      goto out;
    }
  if (zip_file_add (z, "metadata.json", zip_source_buffer (z, meta, strlen (meta), 0), 0) < 0
      || zip_file_add (z, "config.json", zip_source_buffer (z, keras_json, strlen (keras_json), 0),
                       0)
             < 0
      || zip_file_add (z, "model.weights.h5", zip_source_buffer (z, weights, weights_len, 0), 0)
             < 0)
    {
      set_error (error, tmp, "cannot be written: %s", zip_strerror (z));
      zip_discard (z);
      goto out;
    }
  if (zip_close (z) < 0)
    {
      set_error (error, tmp, "cannot be written: %s", zip_strerror (z));
      zip_discard (z);
      goto out;
    }
  if (g_rename (tmp, path) != 0)
    {
      set_error (error, path, "cannot be written: %s", g_strerror (errno));
      goto out;
    }
  ok = TRUE;
out:
  g_unlink (weights_path);
  if (!ok)
    g_unlink (tmp);
  return ok;
}
