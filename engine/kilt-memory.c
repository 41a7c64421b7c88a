/* Device memory accounting: every buffer has a category; live and peak bytes per category. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-memory"

#include "kilt-context.h"
#include "kilt-error.h"

#include <stdarg.h>

static const char *category_names[KILT_MEM_N_CATEGORIES] = {
  "weights", "gradients", "optimizer state", "activations", "workspace", "data set",
};

const char *
kilt_mem_category_name (KiltMemCategory category)
{
  g_return_val_if_fail (category < KILT_MEM_N_CATEGORIES, "?");
  return category_names[category];
}

static void
raise_peak (gint64 *peak, gint64 value)
{
  gint64 old = __atomic_load_n (peak, __ATOMIC_RELAXED);
  while (
      value > old
      && !__atomic_compare_exchange_n (peak, &old, value, TRUE, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    ;
}

static void
account (KiltContext *ctx, KiltMemCategory category, gint64 delta)
{
  gint64 live = __atomic_add_fetch (&ctx->mem.live[category], delta, __ATOMIC_RELAXED);
  gint64 total = __atomic_add_fetch (&ctx->mem.live_total, delta, __ATOMIC_RELAXED);

  if (delta > 0)
    {
      raise_peak (&ctx->mem.peak[category], live);
      raise_peak (&ctx->mem.peak_total, total);
    }
}

void
kilt_mem_stats_snapshot (const KiltMemStats *stats, KiltMemStats *out)
{
  for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
    {
      out->live[i] = __atomic_load_n (&stats->live[i], __ATOMIC_RELAXED);
      out->peak[i] = __atomic_load_n (&stats->peak[i], __ATOMIC_RELAXED);
    }
  out->live_total = __atomic_load_n (&stats->live_total, __ATOMIC_RELAXED);
  out->peak_total = __atomic_load_n (&stats->peak_total, __ATOMIC_RELAXED);
}

KiltBuffer *
kilt_buffer_new (KiltContext *ctx, KiltMemCategory category, gsize bytes, GError **error,
                 const char *label_fmt, ...)
{
  va_list ap;
  g_autofree char *label = NULL;
  g_autofree char *size = NULL;
  KiltBuffer *buf;
  cl_int err = CL_SUCCESS;
  cl_mem mem;
  guint64 live;
  const cl_uchar zero = 0;

  g_return_val_if_fail (ctx != NULL, NULL);
  va_start (ap, label_fmt);
  label = g_strdup_vprintf (label_fmt, ap);
  va_end (ap);
  if (bytes == 0)
    bytes = 4;
  size = kilt_format_bytes (bytes);

  if (kilt_fault_hit (KILT_FAULT_ALLOC))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT,
                   "allocation of %s for %s failed on %s: injected fault (KILT_FAULT)", size, label,
                   ctx->info->name);
      return NULL;
    }
  if (bytes > ctx->info->max_alloc)
    {
      g_autofree char *max = kilt_format_bytes (ctx->info->max_alloc);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
                   "allocation of %s for %s is larger than %s's largest single allocation (%s)",
                   size, label, ctx->info->name, max);
      return NULL;
    }
  live = __atomic_load_n (&ctx->mem.live_total, __ATOMIC_RELAXED);
  if (live + bytes > ctx->budget)
    {
      g_autofree char *have = kilt_format_bytes (ctx->budget);
      g_autofree char *used = kilt_format_bytes (live);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
                   "allocation of %s for %s would exceed %s's memory (%s in use of %s)", size,
                   label, ctx->info->name, used, have);
      return NULL;
    }

  mem = clCreateBuffer (ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err == CL_SUCCESS)
    /* Drivers may allocate lazily; touching the buffer now makes a failure show up here,
     * with its name, instead of inside the training loop. */
    err = clEnqueueFillBuffer (ctx->queue, mem, &zero, 1, 0, bytes, 0, NULL, NULL);
  if (err == CL_SUCCESS)
    err = clFinish (ctx->queue);
  if (err != CL_SUCCESS)
    {
      if (mem)
        clReleaseMemObject (mem);
      kilt_set_cl_error (error, err, ctx->info->name, "allocation of %s for %s", size, label);
      return NULL;
    }
  buf = g_new0 (KiltBuffer, 1);
  buf->mem = mem;
  buf->bytes = bytes;
  buf->category = category;
  buf->label = g_steal_pointer (&label);
  buf->ctx = ctx;
  account (ctx, category, (gint64)bytes);
  return buf;
}

void
kilt_buffer_free (KiltBuffer *buffer)
{
  if (buffer == NULL)
    return;
  account (buffer->ctx, buffer->category, -(gint64)buffer->bytes);
  clReleaseMemObject (buffer->mem);
  g_free (buffer->label);
  g_free (buffer);
}

gboolean
kilt_buffer_write (KiltBuffer *buffer, gsize offset, const void *src, gsize bytes, GError **error)
{
  cl_int err;

  g_return_val_if_fail (offset + bytes <= buffer->bytes, FALSE);
  if (bytes == 0)
    return TRUE;
  err = clEnqueueWriteBuffer (buffer->ctx->queue, buffer->mem, CL_TRUE, offset, bytes, src, 0, NULL,
                              NULL);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, buffer->ctx->info->name, "writing %s", buffer->label);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_buffer_read (KiltBuffer *buffer, gsize offset, void *dst, gsize bytes, GError **error)
{
  cl_int err;

  g_return_val_if_fail (offset + bytes <= buffer->bytes, FALSE);
  if (bytes == 0)
    return TRUE;
  err = clEnqueueReadBuffer (buffer->ctx->queue, buffer->mem, CL_TRUE, offset, bytes, dst, 0, NULL,
                             NULL);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, buffer->ctx->info->name, "reading %s", buffer->label);
      return FALSE;
    }
  return TRUE;
}
