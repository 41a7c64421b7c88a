/* Device batches from a data set split: resident or streamed data, gathered by one kernel. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-batcher"

#include "kilt-batcher.h"
#include "kilt-error.h"
#include "kilt-rng.h"

#include <string.h>

/* Streaming keeps two chunks on the device: one being gathered from, one being written. */
#define N_SLOTS 2

struct _KiltBatcher
{
  KiltContext *ctx;
  const KiltDataset *ds;
  const KiltSplit *split;
  guint batch;
  gboolean augment;
  guint translate;         /* flip + whole-pixel shift by reflection instead of augment; 0 = none */
  gboolean mirror;         /* every sample flipped (no augmentation): flip test-time augmentation */
  gboolean alternate_flip; /* each sample's flip drawn once and inverted in odd epochs */
  guint32 seed;
  gsize n;            /* samples */
  gsize sample_size;  /* values per sample */
  gsize sample_bytes; /* bytes per sample as stored */
  guint n_targets;
  cl_kernel kernel;

  KiltBuffer *data;    /* resident: every sample, by id */
  KiltBuffer *targets; /* n x n_targets floats, by id */
  KiltBuffer *order;   /* n uints: the epoch's order */
  KiltBuffer *norm;    /* (mul, add) per channel */
  guint32 *order_host;
  cl_event order_event; /* upload of order_host still reading it */
  guint epoch;
  guint32 aug_seed;

  /* Streaming. */
  gboolean streamed;
  gsize chunk; /* samples per chunk, a multiple of batch */
  guint n_chunks;
  cl_command_queue transfer;
  KiltBuffer *slot[N_SLOTS];
  cl_mem staging[N_SLOTS]; /* pinned host memory */
  guint8 *staging_ptr[N_SLOTS];
  gint64 slot_chunk[N_SLOTS]; /* the chunk of this epoch a slot holds, -1 none */
  cl_event write_event[N_SLOTS];
  gboolean need_barrier[N_SLOTS];
};

guint64
kilt_batcher_shuffle_seed (guint32 seed, guint epoch)
{
  return ((guint64)seed << 32) | epoch;
}

guint32
kilt_batcher_augment_seed (guint32 seed, guint epoch)
{
  return kilt_hash (seed, epoch, 0xA11A5EEDu);
}

guint64
kilt_batcher_default_max_resident (KiltContext *ctx)
{
  return MIN (ctx->info->max_alloc, ctx->budget / 4);
}

static gsize
element_bytes (const KiltDataset *ds)
{
  return ds->type == KILT_SAMPLE_U8 ? 1 : sizeof (float);
}

static guint
targets_per_row (const KiltDataset *ds)
{
  return ds->n_classes > 0 ? 1 : MAX (ds->n_targets, 1);
}

/* Samples per streamed chunk: half the resident limit each, at least one batch, at most the
 * largest allocation, and never more than the split (rounded up to whole batches). */
static gsize
chunk_samples (KiltContext *ctx, gsize n, gsize sample_bytes, guint batch, guint64 max_resident)
{
  guint64 per_slot = MIN (max_resident / N_SLOTS, ctx->info->max_alloc);
  gsize chunk = (gsize)(per_slot / sample_bytes) / batch * batch;
  gsize whole = (n + batch - 1) / batch * batch;

  return CLAMP (chunk, batch, whole);
}

guint64
kilt_batcher_device_bytes (KiltContext *ctx, const KiltDataset *ds, const KiltSplit *split,
                           guint batch, guint64 max_resident_bytes, gboolean *streamed)
{
  gsize sample_bytes = kilt_dataset_sample_size (ds) * element_bytes (ds);
  guint64 data = (guint64)split->n * sample_bytes;
  guint64 fixed = (guint64)split->n * (targets_per_row (ds) + 1) * sizeof (float)
                  + 2 * ds->shape.c * sizeof (float);
  gboolean s;

  if (max_resident_bytes == 0)
    max_resident_bytes = kilt_batcher_default_max_resident (ctx);
  s = data > max_resident_bytes;
  if (streamed)
    *streamed = s;
  if (s && batch > 0)
    data = (guint64)N_SLOTS * chunk_samples (ctx, split->n, sample_bytes, batch, max_resident_bytes)
           * sample_bytes;
  return data + fixed;
}

static gboolean
check_input (const KiltDataset *ds, const KiltSplit *split, guint batch, GError **error)
{
  const char *name = ds->name ? ds->name : "data set";

  if (batch == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: the batch size must be at least 1", name);
      return FALSE;
    }
  if (split->n == 0 || split->n >= G_MAXUINT32 - batch)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: a split of %" G_GSIZE_FORMAT " samples cannot be batched (1 to %u)", name,
                   split->n, G_MAXUINT32 - batch - 1);
      return FALSE;
    }
  if (kilt_dataset_sample_size (ds) == 0
      || (ds->type == KILT_SAMPLE_U8 ? split->u8 == NULL : split->f32 == NULL))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the split has no %s samples of shape %ux%ux%u", name,
                   ds->type == KILT_SAMPLE_U8 ? "byte" : "float", ds->shape.c, ds->shape.h,
                   ds->shape.w);
      return FALSE;
    }
  if (ds->n_classes > 0)
    {
      if (split->labels == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: %u classes but the split has no labels", name, ds->n_classes);
          return FALSE;
        }
      for (gsize i = 0; i < split->n; i++)
        if (split->labels[i] < 0 || (guint)split->labels[i] >= ds->n_classes)
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                         "%s: sample %" G_GSIZE_FORMAT " has label %d; expected 0 to %u", name, i,
                         split->labels[i], ds->n_classes - 1);
            return FALSE;
          }
    }
  else if (split->targets == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: no classes and no regression targets in the split", name);
      return FALSE;
    }
  return TRUE;
}

float *
kilt_batcher_norm_table (const KiltDataset *ds, KiltPreprocess pp, GError **error)
{
  guint C = ds->shape.c;
  float *t = g_new (float, 2 * C);
  gboolean standard = pp == KILT_PREPROCESS_STANDARD;

  for (guint c = 0; c < C; c++)
    {
      t[2 * c] = ds->type == KILT_SAMPLE_U8 && pp != KILT_PREPROCESS_RAW ? 1.0f / 255.0f : 1.0f;
      t[2 * c + 1] = 0.0f;
    }
  /* Float samples come standardised from the loader; image-like float data (<= 4 channels)
   * with statistics can still be standardised per channel. */
  if (standard && ds->type == KILT_SAMPLE_F32 && C > G_N_ELEMENTS (ds->channel_mean))
    return t;
  if (standard)
    for (guint c = 0; c < C; c++)
      {
        if (c >= G_N_ELEMENTS (ds->channel_mean) || !(ds->channel_std[c] > 0.0f))
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                         "%s: cannot standardise channel %u of %u (standard deviation %g); "
                         "use scaling instead",
                         ds->name ? ds->name : "data set", c, C,
                         c < G_N_ELEMENTS (ds->channel_std) ? ds->channel_std[c] : 0.0);
            g_free (t);
            return NULL;
          }
        t[2 * c] = 1.0f / ds->channel_std[c];
        t[2 * c + 1] = -ds->channel_mean[c] / ds->channel_std[c];
      }
  return t;
}

static gboolean
cl_check (KiltBatcher *b, cl_int err, GError **error, const char *what)
{
  if (err == CL_SUCCESS)
    return TRUE;
  kilt_set_cl_error (error, err, b->ctx->info->name, "%s", what);
  return FALSE;
}

static gboolean
setup_streaming (KiltBatcher *b, guint64 max_resident, GError **error)
{
  KiltContext *ctx = b->ctx;
  gsize bytes;
  cl_int err = CL_SUCCESS;

  b->chunk = chunk_samples (ctx, b->n, b->sample_bytes, b->batch, max_resident);
  b->n_chunks = (guint)((b->n + b->chunk - 1) / b->chunk);
  bytes = b->chunk * b->sample_bytes;
  /* Its own queue, so that writing the next chunk overlaps the steps using this one. */
  b->transfer = clCreateCommandQueue (ctx->context, ctx->info->device, 0, &err);
  if (!cl_check (b, err, error, "creating the data streaming queue"))
    return FALSE;
  for (guint s = 0; s < N_SLOTS; s++)
    {
      b->slot_chunk[s] = -1;
      b->slot[s] = kilt_buffer_new (ctx, KILT_MEM_DATASET, bytes, error, "data set chunk %u of %s",
                                    s, b->ds->name ? b->ds->name : "data");
      if (b->slot[s] == NULL)
        return FALSE;
      /* Pinned host memory is not device memory, so it is not in the accounting. */
      b->staging[s] = clCreateBuffer (ctx->context, CL_MEM_ALLOC_HOST_PTR | CL_MEM_READ_ONLY, bytes,
                                      NULL, &err);
      if (!cl_check (b, err, error, "allocating pinned staging memory for data streaming"))
        return FALSE;
      b->staging_ptr[s] = clEnqueueMapBuffer (b->transfer, b->staging[s], CL_TRUE, CL_MAP_WRITE, 0,
                                              bytes, 0, NULL, NULL, &err);
      if (!cl_check (b, err, error, "mapping the data streaming staging memory"))
        return FALSE;
    }
  return TRUE;
}

KiltBatcher *
kilt_batcher_new (KiltContext *ctx, const KiltDataset *ds, const KiltSplit *split, guint batch,
                  KiltPreprocess preprocess, gboolean augment, guint32 seed,
                  guint64 max_resident_bytes, GError **error)
{
  KiltBatcher *b;
  g_autofree float *norm = NULL;
  g_autofree float *tg = NULL;
  const char *name = ds->name ? ds->name : "data";

  g_return_val_if_fail (ctx != NULL && ds != NULL && split != NULL, NULL);
  if (!check_input (ds, split, batch, error))
    return NULL;
  norm = kilt_batcher_norm_table (ds, preprocess, error);
  if (norm == NULL)
    return NULL;
  if (max_resident_bytes == 0)
    max_resident_bytes = kilt_batcher_default_max_resident (ctx);

  b = g_new0 (KiltBatcher, 1);
  b->ctx = ctx;
  b->ds = ds;
  b->split = split;
  b->batch = batch;
  b->augment = augment;
  b->seed = seed;
  b->n = split->n;
  b->sample_size = kilt_dataset_sample_size (ds);
  b->sample_bytes = b->sample_size * element_bytes (ds);
  b->n_targets = targets_per_row (ds);
  b->order_host = g_new (guint32, b->n);
  b->kernel = kilt_context_kernel (
      ctx, ds->type == KILT_SAMPLE_U8 ? "kilt_gather_u8" : "kilt_gather_f32", error);
  if (b->kernel == NULL)
    goto fail;

  b->norm = kilt_buffer_new (ctx, KILT_MEM_DATASET, 2 * ds->shape.c * sizeof (float), error,
                             "normalisation of %s", name);
  if (b->norm == NULL || !kilt_buffer_write (b->norm, 0, norm, b->norm->bytes, error))
    goto fail;

  tg = g_new (float, b->n * b->n_targets);
  if (ds->n_classes > 0)
    for (gsize i = 0; i < b->n; i++)
      tg[i] = (float)split->labels[i];
  else
    memcpy (tg, split->targets, b->n * b->n_targets * sizeof (float));
  b->targets = kilt_buffer_new (ctx, KILT_MEM_DATASET, b->n * b->n_targets * sizeof (float), error,
                                "targets of %s", name);
  if (b->targets == NULL || !kilt_buffer_write (b->targets, 0, tg, b->targets->bytes, error))
    goto fail;
  b->order = kilt_buffer_new (ctx, KILT_MEM_DATASET, b->n * sizeof (guint32), error,
                              "sample order of %s", name);
  if (b->order == NULL)
    goto fail;

  b->streamed = (guint64)b->n * b->sample_bytes > max_resident_bytes;
  if (b->streamed)
    {
      if (!setup_streaming (b, max_resident_bytes, error))
        goto fail;
    }
  else
    {
      const void *src
          = ds->type == KILT_SAMPLE_U8 ? (const void *)split->u8 : (const void *)split->f32;
      b->data = kilt_buffer_new (ctx, KILT_MEM_DATASET, b->n * b->sample_bytes, error,
                                 "samples of %s", name);
      if (b->data == NULL || !kilt_buffer_write (b->data, 0, src, b->data->bytes, error))
        goto fail;
    }
  if (!kilt_batcher_begin_epoch (b, 0, FALSE, error))
    goto fail;
  return b;

fail:
  kilt_batcher_free (b);
  return NULL;
}

void
kilt_batcher_free (KiltBatcher *b)
{
  if (b == NULL)
    return;
  /* Pending gathers and writes read these buffers and host arrays. */
  clFinish (b->ctx->queue);
  if (b->transfer)
    clFinish (b->transfer);
  if (b->order_event)
    clReleaseEvent (b->order_event);
  for (guint s = 0; s < N_SLOTS; s++)
    {
      if (b->write_event[s])
        clReleaseEvent (b->write_event[s]);
      if (b->staging_ptr[s])
        clEnqueueUnmapMemObject (b->transfer, b->staging[s], b->staging_ptr[s], 0, NULL, NULL);
    }
  if (b->transfer)
    clFinish (b->transfer);
  for (guint s = 0; s < N_SLOTS; s++)
    {
      if (b->staging[s])
        clReleaseMemObject (b->staging[s]);
      kilt_buffer_free (b->slot[s]);
    }
  if (b->transfer)
    clReleaseCommandQueue (b->transfer);
  kilt_buffer_free (b->data);
  kilt_buffer_free (b->targets);
  kilt_buffer_free (b->order);
  kilt_buffer_free (b->norm);
  g_free (b->order_host);
  g_free (b);
}

/* Writes chunk @k of the epoch's order into slot @s: gathered on the host into pinned memory,
 * then copied without blocking once the gathers already queued on that slot have run. */
static gboolean
load_chunk (KiltBatcher *b, guint k, guint s, GError **error)
{
  KiltContext *ctx = b->ctx;
  gsize first = (gsize)k * b->chunk, count = MIN (b->chunk, b->n - first);
  const guint8 *src = b->ds->type == KILT_SAMPLE_U8 ? (const guint8 *)b->split->u8
                                                    : (const guint8 *)b->split->f32;
  cl_event slot_free = NULL;
  cl_int err;

  err = clEnqueueMarkerWithWaitList (ctx->queue, 0, NULL, &slot_free);
  if (!cl_check (b, err, error, "marking the end of a data chunk's use"))
    return FALSE;
  clFlush (ctx->queue);
  if (b->write_event[s])
    {
      /* The staging memory is still the source of this slot's previous write. */
      err = clWaitForEvents (1, &b->write_event[s]);
      clReleaseEvent (b->write_event[s]);
      b->write_event[s] = NULL;
      if (!cl_check (b, err, error, "waiting for a data chunk upload"))
        {
          clReleaseEvent (slot_free);
          return FALSE;
        }
    }
  for (gsize j = 0; j < count; j++)
    memcpy (b->staging_ptr[s] + j * b->sample_bytes,
            src + (gsize)b->order_host[first + j] * b->sample_bytes, b->sample_bytes);
  err = clEnqueueWriteBuffer (b->transfer, b->slot[s]->mem, CL_FALSE, 0, count * b->sample_bytes,
                              b->staging_ptr[s], 1, &slot_free, &b->write_event[s]);
  clReleaseEvent (slot_free);
  if (!cl_check (b, err, error, "uploading a data chunk"))
    return FALSE;
  clFlush (b->transfer);
  b->slot_chunk[s] = k;
  b->need_barrier[s] = TRUE;
  return TRUE;
}

gboolean
kilt_batcher_begin_epoch (KiltBatcher *b, guint epoch, gboolean shuffle, GError **error)
{
  cl_int err;

  if (b->order_event)
    {
      err = clWaitForEvents (1, &b->order_event);
      clReleaseEvent (b->order_event);
      b->order_event = NULL;
      if (!cl_check (b, err, error, "waiting for the previous sample order upload"))
        return FALSE;
    }
  for (gsize i = 0; i < b->n; i++)
    b->order_host[i] = (guint32)i;
  if (shuffle)
    {
      KiltRng rng;
      kilt_rng_init (&rng, kilt_batcher_shuffle_seed (b->seed, epoch));
      for (gsize i = b->n - 1; i > 0; i--)
        {
          guint32 j = kilt_rng_below (&rng, (guint32)i + 1), t = b->order_host[i];
          b->order_host[i] = b->order_host[j];
          b->order_host[j] = t;
        }
    }
  b->epoch = epoch;
  b->aug_seed = kilt_batcher_augment_seed (b->seed, epoch);
  /* In-order queue: gathers of the previous epoch still queued run before this write. */
  err = clEnqueueWriteBuffer (b->ctx->queue, b->order->mem, CL_FALSE, 0, b->n * sizeof (guint32),
                              b->order_host, 0, NULL, &b->order_event);
  if (!cl_check (b, err, error, "uploading the sample order"))
    return FALSE;
  if (b->streamed)
    {
      for (guint s = 0; s < N_SLOTS; s++)
        b->slot_chunk[s] = -1;
      return load_chunk (b, 0, 0, error);
    }
  return TRUE;
}

gboolean
kilt_batcher_set_translate (KiltBatcher *b, guint pixels, GError **error)
{
  const KiltShape *sh = &b->ds->shape;

  if (pixels > 0 && (pixels >= sh->w || pixels >= sh->h))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a translation of up to %u pixels needs images wider and taller than that; "
                   "%s's samples are %ux%u",
                   pixels, b->ds->name ? b->ds->name : "the data", sh->w, sh->h);
      return FALSE;
    }
  b->translate = pixels;
  return TRUE;
}

void
kilt_batcher_set_alternate_flip (KiltBatcher *b, gboolean alternate)
{
  b->alternate_flip = alternate;
}

void
kilt_batcher_set_mirror (KiltBatcher *b, gboolean mirror)
{
  g_return_if_fail (!mirror || (!b->augment && b->translate == 0));
  b->mirror = mirror;
}

guint
kilt_batcher_n_batches (KiltBatcher *b)
{
  return (guint)((b->n + b->batch - 1) / b->batch);
}

guint
kilt_batcher_batch_size (KiltBatcher *b)
{
  return b->batch;
}

guint
kilt_batcher_n_targets (KiltBatcher *b)
{
  return b->n_targets;
}

gboolean
kilt_batcher_is_streamed (KiltBatcher *b)
{
  return b->streamed;
}

const guint32 *
kilt_batcher_order (KiltBatcher *b, gsize *n)
{
  if (n)
    *n = b->n;
  return b->order_host;
}

guint64
kilt_batcher_get_device_bytes (KiltBatcher *b)
{
  guint64 sum = 0;
  KiltBuffer *bufs[] = { b->data, b->targets, b->order, b->norm, b->slot[0], b->slot[1] };

  for (guint i = 0; i < G_N_ELEMENTS (bufs); i++)
    if (bufs[i])
      sum += bufs[i]->bytes;
  return sum;
}

static gboolean
check_size (KiltBatcher *b, cl_mem mem, gsize need, const char *what, GError **error)
{
  size_t have = 0;
  cl_int err = clGetMemObjectInfo (mem, CL_MEM_SIZE, sizeof have, &have, NULL);

  if (!cl_check (b, err, error, "querying a batch buffer"))
    return FALSE;
  if (have < need)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "the batch %s buffer holds %" G_GSIZE_FORMAT
                   " bytes; a batch of %u needs %" G_GSIZE_FORMAT,
                   what, (gsize)have, b->batch, need);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_batcher_gather (KiltBatcher *b, guint batch_index, cl_mem input, cl_mem targets,
                     guint *n_valid, GError **error)
{
  return kilt_batcher_gather_slice (b, batch_index, 0, b->batch, input, targets, n_valid, error);
}

gboolean
kilt_batcher_gather_slice (KiltBatcher *b, guint batch_index, guint first, guint count,
                           cl_mem input, cl_mem targets, guint *n_valid, GError **error)
{
  KiltContext *ctx = b->ctx;
  const KiltShape *sh = &b->ds->shape;
  cl_kernel k = b->kernel;
  cl_uint pos0 = batch_index * b->batch + first, valid, chunk_pos = 0, a = 0;
  cl_uint batch = count, C = sh->c, H = sh->h, W = sh->w, T = b->n_targets;
  cl_uint aug_seed = b->aug_seed;
  cl_int streamed = b->streamed, augment = b->augment, translate = (cl_int)b->translate;
  cl_int mirror = b->mirror;
  /* Alternating flips: epoch 0's draws, inverted in odd epochs. */
  cl_uint flip_seed = kilt_batcher_augment_seed (b->seed, 0);
  cl_int flip_parity = b->alternate_flip ? (cl_int)(b->epoch & 1) : -1;
  cl_int err = CL_SUCCESS;
  float shift = KILT_BATCHER_SHIFT_RANGE;
  cl_mem data;

  if (batch_index >= kilt_batcher_n_batches (b))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "batch %u asked of an epoch of %u batches", batch_index,
                   kilt_batcher_n_batches (b));
      return FALSE;
    }
  if (count == 0 || first + count > b->batch)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "rows %u..%u asked of a batch of %u", first, first + count, b->batch);
      return FALSE;
    }
  if (!check_size (b, input, (gsize)batch * b->sample_size * sizeof (float), "input", error)
      || !check_size (b, targets, (gsize)batch * T * sizeof (float), "targets", error))
    return FALSE;
  if (n_valid)
    *n_valid = 0;
  if (pos0 >= b->n)
    return TRUE;
  valid = (cl_uint)MIN ((gsize)batch, b->n - pos0);

  if (b->streamed)
    {
      guint kc = (guint)(pos0 / b->chunk), s = kc % N_SLOTS, next = kc + 1;
      if (b->slot_chunk[s] != kc && !load_chunk (b, kc, s, error))
        return FALSE;
      if (b->need_barrier[s])
        {
          err = clEnqueueBarrierWithWaitList (ctx->queue, 1, &b->write_event[s], NULL);
          if (!cl_check (b, err, error, "waiting on a data chunk upload"))
            return FALSE;
          b->need_barrier[s] = FALSE;
        }
      /* Start writing the next chunk now; it overlaps the steps that use this one. */
      if (next < b->n_chunks && b->slot_chunk[next % N_SLOTS] != next
          && !load_chunk (b, next, next % N_SLOTS, error))
        return FALSE;
      data = b->slot[s]->mem;
      chunk_pos = (cl_uint)(kc * b->chunk);
    }
  else
    data = b->data->mem;

  KILT_ARG (k, a++, input, err);
  KILT_ARG (k, a++, targets, err);
  KILT_ARG (k, a++, data, err);
  KILT_ARG (k, a++, b->order->mem, err);
  KILT_ARG (k, a++, b->targets->mem, err);
  KILT_ARG (k, a++, b->norm->mem, err);
  KILT_ARG (k, a++, pos0, err);
  KILT_ARG (k, a++, valid, err);
  KILT_ARG (k, a++, batch, err);
  KILT_ARG (k, a++, chunk_pos, err);
  KILT_ARG (k, a++, streamed, err);
  KILT_ARG (k, a++, C, err);
  KILT_ARG (k, a++, H, err);
  KILT_ARG (k, a++, W, err);
  KILT_ARG (k, a++, T, err);
  KILT_ARG (k, a++, augment, err);
  KILT_ARG (k, a++, aug_seed, err);
  KILT_ARG (k, a++, shift, err);
  KILT_ARG (k, a++, translate, err);
  KILT_ARG (k, a++, mirror, err);
  KILT_ARG (k, a++, flip_seed, err);
  KILT_ARG (k, a++, flip_parity, err);
  if (!cl_check (b, err, error, "setting the batch gather arguments"))
    return FALSE;
  if (!kilt_context_launch_1d (ctx, k, (size_t)batch * MAX (b->sample_size, (gsize)T), error))
    return FALSE;
  if (n_valid)
    *n_valid = valid;
  return TRUE;
}
