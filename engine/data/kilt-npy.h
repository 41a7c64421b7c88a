/* NumPy .npy arrays in and out: what Keras users hand model.predict () and get back. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define KILT_NPY_MAX_RANK 8

/* An array read from a .npy file, its values converted to float. */
typedef struct
{
  guint rank;
  guint64 shape[KILT_NPY_MAX_RANK];
  guint64 n;   /* the product of shape (1 for a rank-0 array) */
  float *data; /* n values in C (row-major) order, owned */
  char *dtype; /* the file's descr, e.g. "<f4" */
} KiltNpy;

/* Reads @path: format versions 1 to 3, C order, of dtype float32 or float64, signed or
 * unsigned integers of 1, 2, 4 or 8 bytes, or bool, in either byte order. Refuses, with an
 * error naming @path and what was expected (KILT_ENGINE_ERROR_DATA), a file that is not
 * .npy, a header that does not parse, Fortran order, another dtype (objects, strings,
 * complex, structured), a shape whose product overflows or that the file's length does not
 * hold, a non-finite float, or more than @max_values values. */
gboolean kilt_npy_read (const char *path, guint64 max_values, KiltNpy *out, GError **error);
void kilt_npy_clear (KiltNpy *npy);

/* Writes @n_values floats (C order) of shape @shape (@rank dims, their product @n_values) as
 * a version 1.0 .npy of dtype "<f4", beside @path and renamed over it. */
gboolean kilt_npy_write_f32 (const char *path, const float *data, const guint64 *shape, guint rank,
                             GError **error);

G_END_DECLS
