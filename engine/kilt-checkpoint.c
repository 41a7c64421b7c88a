/* Checkpoints: weights, running statistics, optimizer state, position and seed, in one file. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-checkpoint"

#include "kilt-checkpoint.h"
#include "kilt-error.h"

#include <string.h>

#define MAGIC   "KILTCKPT"
#define VERSION 2u

/* Layout, little-endian as written by the host (the file is not meant to move between
 * architectures): magic[8], u32 version, u32 epochs_done, u32 seed, u32 pad, u64 global_step,
 * u64 model_hash, u64 n_params, u64 n_state, u64 n_opt_state, then the three float arrays.
 * Version 2 goes on with u32 device id length, the id's bytes, u32 n_algos, then n_algos
 * KiltCheckpointAlgo records (5 x u32). */
typedef struct
{
  char magic[8];
  guint32 version;
  guint32 epochs_done;
  guint32 seed;
  guint32 pad;
  guint64 global_step;
  guint64 model_hash;
  guint64 n_params;
  guint64 n_state;
  guint64 n_opt_state;
} Header;

gboolean
kilt_checkpoint_save (const KiltCheckpoint *ckpt, const char *path, GError **error)
{
  Header h = { 0 };
  gsize total, id_len;
  guint32 u;
  guint n_algos;
  g_autofree char *buf = NULL;
  char *p;

  memcpy (h.magic, MAGIC, 8);
  h.version = VERSION;
  h.epochs_done = ckpt->epochs_done;
  h.seed = ckpt->seed;
  h.global_step = ckpt->global_step;
  h.model_hash = ckpt->model_hash;
  h.n_params = ckpt->n_params;
  h.n_state = ckpt->n_state;
  h.n_opt_state = ckpt->n_opt_state;
  id_len = ckpt->device_id ? strlen (ckpt->device_id) : 0;
  n_algos = ckpt->algos ? ckpt->algos->len : 0;
  total = sizeof h + 4 * (ckpt->n_params + ckpt->n_state + ckpt->n_opt_state) + 4 + id_len + 4
          + n_algos * sizeof (KiltCheckpointAlgo);
  buf = g_malloc (total);
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
  if (!g_file_set_contents (path, buf, total, error))
    {
      g_prefix_error (error, "writing checkpoint %s: ", path);
      return FALSE;
    }
  return TRUE;
}

static float *
copy_floats (const char *src, guint64 n)
{
  float *f = g_new0 (float, n + 1);

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
  guint64 want;

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
  if (h.version != 1 && h.version != VERSION)
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
    return truncated (path, len, error);
  p = buf + want;
  if (h.version >= 2)
    {
      const char *end = buf + len;
      guint32 id_len, n_algos;

      if (end - p < 4)
        return truncated (path, len, error);
      memcpy (&id_len, p, 4);
      p += 4;
      if ((gsize)(end - p) < (gsize)id_len + 4)
        return truncated (path, len, error);
      if (memchr (p, 0, id_len))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                       "checkpoint %s is corrupt: its device id holds a zero byte", path);
          return NULL;
        }
      device_id = g_strndup (p, id_len);
      p += id_len;
      memcpy (&n_algos, p, 4);
      p += 4;
      if ((gsize)(end - p) != (gsize)n_algos * sizeof (KiltCheckpointAlgo))
        return truncated (path, len, error);
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
  c = g_new0 (KiltCheckpoint, 1);
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
  c->params = copy_floats (p, h.n_params);
  p += 4 * h.n_params;
  c->state = copy_floats (p, h.n_state);
  p += 4 * h.n_state;
  c->opt_state = copy_floats (p, h.n_opt_state);
  return c;
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
