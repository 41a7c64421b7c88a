/* Helpers shared by the data-set tests: crafted files and error checks. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-dataset.h"
#include "kilt-error.h"
#include "kilt-test-util.h"

#include <string.h>
#include <glib/gstdio.h>
#include <math.h>
#include <zlib.h>

/* Writes @len bytes to @path (gzip-compressed when @gz). */
static inline void
data_test_write (const char *path, const void *bytes, gsize len, gboolean gz)
{
  if (gz)
    {
      gzFile f = gzopen (path, "wb");
      g_assert_nonnull (f);
      g_assert_cmpint (gzwrite (f, bytes, (unsigned)len), ==, (int)len);
      g_assert_cmpint (gzclose (f), ==, Z_OK);
    }
  else
    g_assert_true (g_file_set_contents (path, bytes, (gssize)len, NULL));
}

/* An IDX file: magic, big-endian dims, payload. */
static inline GByteArray *
data_test_idx (guint8 type, guint ndims, const guint32 *dims, const void *payload, gsize len)
{
  GByteArray *b = g_byte_array_new ();
  guint8 head[4] = { 0, 0, type, (guint8)ndims };

  g_byte_array_append (b, head, 4);
  for (guint i = 0; i < ndims; i++)
    {
      guint8 d[4] = { dims[i] >> 24, dims[i] >> 16, dims[i] >> 8, dims[i] };
      g_byte_array_append (b, d, 4);
    }
  g_byte_array_append (b, payload, (guint)len);
  return b;
}

/* The error is a data error whose message holds every one of the NULL-terminated strings. */
static inline void
data_test_assert_error (const GError *error, gint code, ...)
{
  va_list ap;
  const char *want;

  g_assert_nonnull (error);
  if (g_test_verbose ())
    g_printerr ("  error: %s\n", error->message);
  g_assert_true (error->domain == KILT_ENGINE_ERROR);
  g_assert_cmpint (error->code, ==, code);
  va_start (ap, code);
  while ((want = va_arg (ap, const char *)))
    if (strstr (error->message, want) == NULL)
      g_error ("expected \"%s\" in the message: %s", want, error->message);
  va_end (ap);
}

/* Loads @spec and expects a KILT_ENGINE_ERROR_DATA naming all of the strings. */
#define data_test_expect_fail(spec, opts, ...)                                                     \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_autoptr (GError) _e = NULL;                                                                  \
    KiltDataset *_ds = kilt_dataset_load ((spec), (opts), NULL, NULL, NULL, &_e);                  \
    g_assert_null (_ds);                                                                           \
    data_test_assert_error (_e, KILT_ENGINE_ERROR_DATA, __VA_ARGS__, NULL);                        \
  }                                                                                                \
  G_STMT_END

static inline void
data_test_fill_random (guint8 *p, gsize n, guint32 seed)
{
  KiltRng rng;

  kilt_rng_init (&rng, seed);
  for (gsize i = 0; i < n; i++)
    p[i] = (guint8)kilt_rng_next (&rng);
}
