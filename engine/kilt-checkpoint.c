/* Checkpoints: weights, running statistics, optimizer state, position and seed, in one file. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-checkpoint"

#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-optimizer-config.h"
#include "data/kilt-data-private.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <zlib.h>

#define MAGIC   "KILTCKPT"
#define VERSION 3u

/* Layout, little-endian as written by the host (the file is not meant to move between
 * architectures): magic[8], u32 version, u32 epochs_done, u32 seed, u32 optimizer (version 3;
 * zero padding before), u64 global_step, u64 model_hash, u64 n_params, u64 n_state,
 * u64 n_opt_state, then the three float arrays. Version 2 goes on with u32 device id length,
 * the id's bytes, u32 n_algos, then n_algos KiltCheckpointAlgo records (5 x u32). Version 3
 * then ends with u64 run_token and u32 CRC-32 (zlib's) of every byte before it. */
typedef struct
{
  char magic[8];
  guint32 version;
  guint32 epochs_done;
  guint32 seed;
  guint32 optimizer;
  guint64 global_step;
  guint64 model_hash;
  guint64 n_params;
  guint64 n_state;
  guint64 n_opt_state;
} Header;

#define TRAILER 12 /* version 3: run token + CRC */

/* The most optimizer kinds a checkpoint may name (KiltOptimizerType + 1). */
#define MAX_OPTIMIZER ((guint32)KILT_OPT_N_TYPES)

static gboolean
all_finite (const float *f, guint64 n, guint64 *at)
{
  for (guint64 i = 0; i < n; i++)
    if (!isfinite (f[i]))
      {
        *at = i;
        return FALSE;
      }
  return TRUE;
}

/* Non-finite weights or state: what a diverged run or a damaged file holds; never useful to
 * resume or evaluate. */
static gboolean
check_values (const float *params, guint64 n_params, const float *state, guint64 n_state,
              const float *opt, guint64 n_opt, const char *path, GError **error)
{
  const char *what = NULL;
  guint64 at = 0;

  if (!all_finite (params, n_params, &at))
    what = "weight";
  else if (!all_finite (state, n_state, &at))
    what = "running statistic";
  else if (!all_finite (opt, n_opt, &at))
    what = "optimizer state value";
  if (what == NULL)
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
               "checkpoint %s holds a non-finite %s (NaN or infinity) at index %" G_GUINT64_FORMAT
               ": the run diverged or the file is damaged",
               path, what, at);
  return FALSE;
}

static gboolean
check_epochs (guint32 epochs_done, guint64 global_step, const char *path, GError **error)
{
  /* Every epoch takes at least one step. */
  if (epochs_done <= KILT_CHECKPOINT_MAX_EPOCHS && global_step >= epochs_done)
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
               "checkpoint %s is corrupt: it claims %u epochs done in %" G_GUINT64_FORMAT
               " steps (at most %u epochs, each of at least one step)",
               path, epochs_done, global_step, KILT_CHECKPOINT_MAX_EPOCHS);
  return FALSE;
}

static guint32
checksum (const char *buf, gsize len)
{
  uLong crc = crc32 (0L, Z_NULL, 0);

  /* zlib takes a uInt length: a large model's file goes in pieces. */
  while (len > 0)
    {
      uInt n = (uInt)MIN (len, (gsize)1 << 30);
      crc = crc32 (crc, (const Bytef *)buf, n);
      buf += n;
      len -= n;
    }
  return (guint32)crc;
}

/* The folder's entry of a renamed file reaches the disk only when the folder is flushed. */
static void
sync_folder (const char *path)
{
#ifndef G_OS_WIN32
  g_autofree char *dir = g_path_get_dirname (path);
  int fd = g_open (dir, O_RDONLY, 0);

  if (fd >= 0)
    {
      fsync (fd);
      g_close (fd, NULL);
    }
#else
  (void)path;
#endif
}

gboolean
kilt_checkpoint_save (const KiltCheckpoint *ckpt, const char *path, GError **error)
{
  Header h = { 0 };
  gsize total, id_len;
  guint32 u, crc;
  guint n_algos;
  g_autofree char *buf = NULL;
  char *p;

  if (!check_values (ckpt->params, ckpt->n_params, ckpt->state, ckpt->n_state, ckpt->opt_state,
                     ckpt->n_opt_state, path, error)
      || !check_epochs (ckpt->epochs_done, ckpt->global_step, path, error))
    {
      g_prefix_error (error, "not writing: ");
      return FALSE;
    }
  g_return_val_if_fail (ckpt->optimizer <= MAX_OPTIMIZER, FALSE);
  memcpy (h.magic, MAGIC, 8);
  h.version = VERSION;
  h.epochs_done = ckpt->epochs_done;
  h.seed = ckpt->seed;
  h.optimizer = ckpt->optimizer;
  h.global_step = ckpt->global_step;
  h.model_hash = ckpt->model_hash;
  h.n_params = ckpt->n_params;
  h.n_state = ckpt->n_state;
  h.n_opt_state = ckpt->n_opt_state;
  id_len = ckpt->device_id ? strlen (ckpt->device_id) : 0;
  n_algos = ckpt->algos ? ckpt->algos->len : 0;
  total = sizeof h + 4 * (ckpt->n_params + ckpt->n_state + ckpt->n_opt_state) + 4 + id_len + 4
          + n_algos * sizeof (KiltCheckpointAlgo) + TRAILER;
  /* As large as the model's weights and optimizer state: a full host memory is an error the
   * person sees (the last checkpoint stays as it was), not GLib's abort. */
  buf = kilt_data_try_alloc (total, path, "the checkpoint to write", error);
  if (buf == NULL)
    {
      g_prefix_error (error, "not writing: ");
      return FALSE;
    }
  p = buf;
  memcpy (p, &h, sizeof h);
  p += sizeof h;
  if (ckpt->n_params)
    memcpy (p, ckpt->params, 4 * ckpt->n_params);
  p += 4 * ckpt->n_params;
  if (ckpt->n_state)
    memcpy (p, ckpt->state, 4 * ckpt->n_state);
  p += 4 * ckpt->n_state;
  if (ckpt->n_opt_state)
    memcpy (p, ckpt->opt_state, 4 * ckpt->n_opt_state);
  p += 4 * ckpt->n_opt_state;
  u = (guint32)id_len;
  memcpy (p, &u, 4);
  p += 4;
  if (id_len)
    memcpy (p, ckpt->device_id, id_len);
  p += id_len;
  u = n_algos;
  memcpy (p, &u, 4);
  p += 4;
  if (n_algos)
    memcpy (p, ckpt->algos->data, n_algos * sizeof (KiltCheckpointAlgo));
  p += n_algos * sizeof (KiltCheckpointAlgo);
  memcpy (p, &ckpt->run_token, 8);
  p += 8;
  crc = checksum (buf, total - 4);
  memcpy (p, &crc, 4);
  /* CONSISTENT: a temporary file renamed over the old one; DURABLE: flushed before the
   * rename, so a crash never leaves a file that is the new name with the old (or no) data. */
  if (!g_file_set_contents_full (path, buf, total,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0644,
                                 error))
    {
      g_prefix_error (error, "writing checkpoint %s: ", path);
      return FALSE;
    }
  sync_folder (path);
  return TRUE;
}

/* NULL (with @error) when host memory ran out. */
static float *
copy_floats (const char *src, guint64 n, const char *path, const char *what, GError **error)
{
  float *f = kilt_data_try_alloc (4 * (n + 1), path, what, error);

  if (f)
    memcpy (f, src, 4 * n);
  return f;
}

static KiltCheckpoint *
truncated (const char *path, gsize len, GError **error)
{
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
               "checkpoint %s is truncated or corrupt: its header promises more (or less) "
               "than its %zu bytes",
               path, len);
  return NULL;
}

KiltCheckpoint *
kilt_checkpoint_load (const char *path, GError **error)
{
  g_autofree char *buf = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &buf, &len, error))
    return NULL;
  return kilt_checkpoint_load_data (buf, len, path, error);
}

KiltCheckpoint *
kilt_checkpoint_load_data (const char *buf, gsize len, const char *path, GError **error)
{
  g_autofree char *device_id = NULL;
  g_autoptr (GArray) algos = NULL;
  Header h;
  KiltCheckpoint *c;
  const char *p;
  guint64 want, run_token = 0;
  gsize file_len = len;

  if (len >= 8 && len < sizeof h && memcmp (buf, MAGIC, 8) == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "checkpoint %s is truncated: %zu bytes, not even its %zu-byte header", path, len,
                   sizeof h);
      return NULL;
    }
  if (len < sizeof h || memcmp (buf, MAGIC, 8) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s is not a Kilt checkpoint (no KILTCKPT header)", path);
      return NULL;
    }
  memcpy (&h, buf, sizeof h);
  if (h.version < 1 || h.version > VERSION)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s is checkpoint version %u; this Kilt reads versions 1 to %u", path, h.version,
                   VERSION);
      return NULL;
    }
  /* Each count is bounded by the file length before any multiplication can overflow. */
  if (h.n_params > len / 4 || h.n_state > len / 4 || h.n_opt_state > len / 4
      || (want = sizeof h + 4 * (h.n_params + h.n_state + h.n_opt_state)) > len
      || (h.version == 1 && want != len))
    return truncated (path, file_len, error);
  p = buf + want;
  /* Sizes first (a cut file says "truncated"), then the checksum, then what the bytes say. */
  if (h.version >= 3)
    {
      if (len < want + TRAILER)
        return truncated (path, file_len, error);
      len -= TRAILER;
    }
  else
    h.optimizer = 0; /* padding before version 3 */
  if (h.version >= 2)
    {
      const char *end = buf + len;
      guint32 id_len, n_algos;

      if (end - p < 4)
        return truncated (path, file_len, error);
      memcpy (&id_len, p, 4);
      p += 4;
      if ((gsize)(end - p) < (gsize)id_len + 4)
        return truncated (path, file_len, error);
      if (memchr (p, 0, id_len))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                       "checkpoint %s is corrupt: its device id holds a zero byte", path);
          return NULL;
        }
      device_id = id_len ? g_strndup (p, id_len) : NULL; /* NULL: none recorded */
      p += id_len;
      memcpy (&n_algos, p, 4);
      p += 4;
      if ((gsize)(end - p) != (gsize)n_algos * sizeof (KiltCheckpointAlgo))
        return truncated (path, file_len, error);
      algos = g_array_sized_new (FALSE, FALSE, sizeof (KiltCheckpointAlgo), n_algos);
      g_array_append_vals (algos, p, n_algos);
      for (guint i = 0; i < n_algos; i++)
        {
          const KiltCheckpointAlgo *a = &g_array_index (algos, KiltCheckpointAlgo, i);
          if (a->algo > KILT_CHECKPOINT_MAX_ALGO || a->algo_dw > KILT_CHECKPOINT_MAX_ALGO)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                           "checkpoint %s is corrupt: it names algorithm %u for layer %u, where "
                           "there are %u",
                           path, MAX (a->algo, a->algo_dw), a->node, KILT_CHECKPOINT_MAX_ALGO);
              return NULL;
            }
        }
    }
  if (h.version >= 3)
    {
      guint32 crc;
      memcpy (&crc, buf + file_len - 4, 4);
      if (crc != checksum (buf, file_len - 4))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                       "checkpoint %s is corrupt: its CRC-32 does not match its %zu bytes (damaged "
                       "on disk or in a copy)",
                       path, file_len);
          return NULL;
        }
      memcpy (&run_token, buf + file_len - TRAILER, 8);
      if (h.optimizer > MAX_OPTIMIZER)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                       "checkpoint %s is corrupt: it names optimizer kind %u, where there are %u",
                       path, h.optimizer, MAX_OPTIMIZER);
          return NULL;
        }
    }
  if (!check_epochs (h.epochs_done, h.global_step, path, error))
    return NULL;
  c = g_new0 (KiltCheckpoint, 1);
  c->version = h.version;
  c->optimizer = h.optimizer;
  c->run_token = run_token;
  c->epochs_done = h.epochs_done;
  c->seed = h.seed;
  c->global_step = h.global_step;
  c->model_hash = h.model_hash;
  c->n_params = h.n_params;
  c->n_state = h.n_state;
  c->n_opt_state = h.n_opt_state;
  c->device_id = g_steal_pointer (&device_id);
  c->algos = g_steal_pointer (&algos);
  p = buf + sizeof h;
  if (!(c->params = copy_floats (p, h.n_params, path, "the checkpoint's weights", error))
      || !(c->state
           = copy_floats (p + 4 * h.n_params, h.n_state, path, "the checkpoint's state", error))
      || !(c->opt_state = copy_floats (p + 4 * (h.n_params + h.n_state), h.n_opt_state, path,
                                       "the checkpoint's optimizer state", error)))
    {
      kilt_checkpoint_free (c);
      return NULL;
    }
  /* Checked on the (aligned) copies. */
  if (!check_values (c->params, c->n_params, c->state, c->n_state, c->opt_state, c->n_opt_state,
                     path, error))
    {
      kilt_checkpoint_free (c);
      return NULL;
    }
  return c;
}

gboolean
kilt_checkpoint_read_info (const char *path, KiltCheckpointInfo *out, GError **error)
{
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, error);
  const char *buf;
  gsize len;
  Header h;

  memset (out, 0, sizeof *out);
  if (map == NULL)
    return FALSE;
  buf = g_mapped_file_get_contents (map);
  len = g_mapped_file_get_length (map);
  if (len < sizeof h || memcmp (buf, MAGIC, 8) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s is not a Kilt checkpoint (no KILTCKPT header%s)", path,
                   len == 0 ? "; the file is empty" : "");
      return FALSE;
    }
  memcpy (&h, buf, sizeof h);
  if (h.version < 1 || h.version > VERSION)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s is checkpoint version %u; this Kilt reads versions 1 to %u", path, h.version,
                   VERSION);
      return FALSE;
    }
  out->version = h.version;
  out->epochs_done = h.epochs_done;
  out->global_step = h.global_step;
  out->model_hash = h.model_hash;
  if (h.version >= 3)
    {
      if (len < sizeof h + TRAILER)
        {
          truncated (path, len, error);
          return FALSE;
        }
      out->optimizer = h.optimizer;
      memcpy (&out->run_token, buf + len - TRAILER, 8);
    }
  return TRUE;
}

void
kilt_checkpoint_free (KiltCheckpoint *ckpt)
{
  if (ckpt == NULL)
    return;
  g_free (ckpt->params);
  g_free (ckpt->state);
  g_free (ckpt->opt_state);
  g_free (ckpt->device_id);
  if (ckpt->algos)
    g_array_unref (ckpt->algos);
  g_free (ckpt);
}
