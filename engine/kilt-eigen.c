/* Eigen decomposition of small symmetric matrices (cyclic Jacobi), in double. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-eigen"

#include "kilt-eigen.h"
#include "kilt-error.h"

#include <math.h>
#include <string.h>

/* Cyclic Jacobi converges quadratically once the off-diagonal part is small; ten sweeps are
 * plenty for the sizes here, fifty leave room for badly scaled matrices. */
#define MAX_SWEEPS 50

static double
off_norm2 (const double *m, guint n)
{
  double s = 0.0;

  for (guint i = 0; i < n; i++)
    for (guint j = i + 1; j < n; j++)
      s += m[i * n + j] * m[i * n + j];
  return s;
}

gboolean
kilt_eigen_symmetric (const double *a, guint n, double *values, double *vectors, GError **error)
{
  g_autofree double *m = NULL;
  g_autofree guint *order = NULL;
  g_autofree double *v = NULL;
  double scale = 0.0;
  guint sweep;

  g_return_val_if_fail (a != NULL && values != NULL && vectors != NULL && n > 0, FALSE);
  for (guint i = 0; i < n; i++)
    for (guint j = 0; j < n; j++)
      {
        double x = a[i * n + j], y = a[j * n + i];
        if (!isfinite (x))
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                         "eigen decomposition: element (%u, %u) of the %u x %u matrix is %g", i, j,
                         n, n, x);
            return FALSE;
          }
        if (fabs (x - y) > 1e-12 * MAX (fabs (x), fabs (y)) && x != y)
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                         "eigen decomposition: the %u x %u matrix is not symmetric (element "
                         "(%u, %u) is %g, (%u, %u) is %g)",
                         n, n, i, j, x, j, i, y);
            return FALSE;
          }
        scale = MAX (scale, fabs (x));
      }
  m = g_memdup2 (a, sizeof (double) * n * n);
  v = g_new0 (double, (gsize)n *n);
  for (guint i = 0; i < n; i++)
    v[i * n + i] = 1.0;
  for (sweep = 0; sweep < MAX_SWEEPS; sweep++)
    {
      /* Done when what is left off the diagonal is rounding of the matrix's own scale. */
      if (off_norm2 (m, n) <= (1e-15 * scale) * (1e-15 * scale) * n * n)
        break;
      for (guint p = 0; p < n; p++)
        for (guint q = p + 1; q < n; q++)
          {
            double apq = m[p * n + q], app, aqq, theta, t, c, s;
            if (apq == 0.0)
              continue;
            app = m[p * n + p];
            aqq = m[q * n + q];
            /* The rotation that zeroes (p, q): t = tan of its angle, the smaller root, which
             * keeps the rotation at 45 degrees or less. */
            theta = (aqq - app) / (2.0 * apq);
            t = (theta >= 0 ? 1.0 : -1.0) / (fabs (theta) + sqrt (theta * theta + 1.0));
            c = 1.0 / sqrt (t * t + 1.0);
            s = t * c;
            for (guint k = 0; k < n; k++)
              {
                /* Columns p and q of M, then rows: M' = J^T M J. */
                double mkp = m[k * n + p], mkq = m[k * n + q];
                m[k * n + p] = c * mkp - s * mkq;
                m[k * n + q] = s * mkp + c * mkq;
              }
            for (guint k = 0; k < n; k++)
              {
                double mpk = m[p * n + k], mqk = m[q * n + k];
                m[p * n + k] = c * mpk - s * mqk;
                m[q * n + k] = s * mpk + c * mqk;
              }
            m[p * n + q] = m[q * n + p] = 0.0;
            for (guint k = 0; k < n; k++)
              {
                double vkp = v[k * n + p], vkq = v[k * n + q];
                v[k * n + p] = c * vkp - s * vkq;
                v[k * n + q] = s * vkp + c * vkq;
              }
          }
    }
  if (sweep == MAX_SWEEPS)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "eigen decomposition of a %u x %u matrix did not converge in %d sweeps", n, n,
                   MAX_SWEEPS);
      return FALSE;
    }
  /* Descending, as airbench orders its whitening filters (largest variance first). */
  order = g_new (guint, n);
  for (guint i = 0; i < n; i++)
    order[i] = i;
  for (guint i = 1; i < n; i++)
    for (guint j = i; j > 0 && m[order[j] * n + order[j]] > m[order[j - 1] * n + order[j - 1]]; j--)
      {
        guint tmp = order[j];
        order[j] = order[j - 1];
        order[j - 1] = tmp;
      }
  for (guint i = 0; i < n; i++)
    {
      values[i] = m[order[i] * n + order[i]];
      for (guint k = 0; k < n; k++)
        vectors[k * n + i] = v[k * n + order[i]];
    }
  return TRUE;
}
