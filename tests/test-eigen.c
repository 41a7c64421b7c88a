/* The symmetric eigen solver: random SPD matrices of known spectrum (a random orthogonal basis
 * and random eigenvalues, repeated ones too), checked as V^T V = I, V^T A V diagonal with the
 * eigenvalues, A = V diag V^T and the known eigenvalues in descending order; bad input. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-eigen.h"
#include "kilt-error.h"
#include "kilt-rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A random orthogonal n x n matrix: Gram-Schmidt (twice, for accuracy) over normal columns. */
static void
random_orthogonal (KiltRng *rng, guint n, double *q)
{
  for (guint j = 0; j < n; j++)
    {
      for (guint k = 0; k < n; k++)
        q[k * n + j] = kilt_rng_normal (rng);
      for (int pass = 0; pass < 2; pass++)
        for (guint i = 0; i < j; i++)
          {
            double d = 0.0;
            for (guint k = 0; k < n; k++)
              d += q[k * n + i] * q[k * n + j];
            for (guint k = 0; k < n; k++)
              q[k * n + j] -= d * q[k * n + i];
          }
      {
        double norm = 0.0;
        for (guint k = 0; k < n; k++)
          norm += q[k * n + j] * q[k * n + j];
        norm = sqrt (norm);
        for (guint k = 0; k < n; k++)
          q[k * n + j] /= norm;
      }
    }
}

static int
cmp_desc (gconstpointer a, gconstpointer b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* A = Q diag (lambda) Q^T, solved and checked; @repeat: every eigenvalue twice where it can. */
static void
check_spectrum (guint n, guint64 seed, gboolean repeat, double spread)
{
  KiltRng rng;
  g_autofree double *q = g_new (double, n *n);
  g_autofree double *a = g_new (double, n *n);
  g_autofree double *lambda = g_new (double, n);
  g_autofree double *values = g_new (double, n);
  g_autofree double *v = g_new (double, n *n);
  g_autoptr (GError) error = NULL;
  double top = 0.0, worst_orth = 0.0, worst_diag = 0.0, worst_rec = 0.0, worst_val = 0.0;

  kilt_rng_init (&rng, seed);
  random_orthogonal (&rng, n, q);
  for (guint i = 0; i < n; i++)
    {
      /* Positive, spread over @spread decades, as a patch covariance's are. */
      lambda[i] = repeat && i % 2 == 1 ? lambda[i - 1]
                                       : pow (10.0, -spread * kilt_rng_uniform (&rng)) + 1e-9;
      top = MAX (top, lambda[i]);
    }
  for (guint i = 0; i < n; i++)
    for (guint j = 0; j < n; j++)
      {
        double s = 0.0;
        for (guint k = 0; k < n; k++)
          s += q[i * n + k] * lambda[k] * q[j * n + k];
        a[i * n + j] = s;
      }
  /* Exactly symmetric, as a covariance computed as a sum of products is. */
  for (guint i = 0; i < n; i++)
    for (guint j = i + 1; j < n; j++)
      a[j * n + i] = a[i * n + j];

  g_assert_true (kilt_eigen_symmetric (a, n, values, v, &error));
  g_assert_no_error (error);
  qsort (lambda, n, sizeof (double), cmp_desc);
  for (guint i = 0; i < n; i++)
    {
      if (i > 0)
        g_assert_cmpfloat (values[i], <=, values[i - 1]);
      worst_val = MAX (worst_val, fabs (values[i] - lambda[i]) / top);
    }
  for (guint i = 0; i < n; i++)
    for (guint j = 0; j < n; j++)
      {
        double vtv = 0.0, vtav = 0.0, rec = 0.0;
        for (guint k = 0; k < n; k++)
          {
            vtv += v[k * n + i] * v[k * n + j];
            rec += v[i * n + k] * values[k] * v[j * n + k];
            for (guint l = 0; l < n; l++)
              vtav += v[k * n + i] * a[k * n + l] * v[l * n + j];
          }
        worst_orth = MAX (worst_orth, fabs (vtv - (i == j ? 1.0 : 0.0)));
        worst_diag = MAX (worst_diag, fabs (vtav - (i == j ? values[i] : 0.0)) / top);
        worst_rec = MAX (worst_rec, fabs (rec - a[i * n + j]) / top);
      }
  g_test_message ("n %u%s, %g decades: eigenvalues %.2e, V^T V %.2e, V^T A V %.2e, "
                  "reconstruction %.2e",
                  n, repeat ? " (pairs)" : "", spread, worst_val, worst_orth, worst_diag,
                  worst_rec);
  g_assert_cmpfloat (worst_val, <=, 1e-12);
  g_assert_cmpfloat (worst_orth, <=, 1e-12);
  g_assert_cmpfloat (worst_diag, <=, 1e-12);
  g_assert_cmpfloat (worst_rec, <=, 1e-12);
}

static void
test_random (void)
{
  /* 12 is a 2x2 whitening patch of an RGB image, 27 a 3x3 one; odd sizes on purpose. */
  static const guint sizes[] = { 1, 2, 3, 5, 12, 17, 27 };

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      check_spectrum (sizes[i], 100 + i, FALSE, 3.0);
      check_spectrum (sizes[i], 200 + i, TRUE, 3.0);
      check_spectrum (sizes[i], 300 + i, FALSE, 8.0);
    }
}

/* A diagonal matrix is its own decomposition: sorted, the basis a permutation. */
static void
test_diagonal (void)
{
  const double a[9] = { 2, 0, 0, 0, 7, 0, 0, 0, 0.5 };
  double values[3], v[9];
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_eigen_symmetric (a, 3, values, v, &error));
  g_assert_cmpfloat (values[0], ==, 7);
  g_assert_cmpfloat (values[1], ==, 2);
  g_assert_cmpfloat (values[2], ==, 0.5);
  g_assert_cmpfloat (fabs (v[1 * 3 + 0]), ==, 1);
  g_assert_cmpfloat (fabs (v[0 * 3 + 1]), ==, 1);
  g_assert_cmpfloat (fabs (v[2 * 3 + 2]), ==, 1);
}

static void
test_bad (void)
{
  const double skew[4] = { 1, 2, 3, 1 };
  const double nan_in[4] = { 1, NAN, NAN, 1 };
  double values[2], v[4];
  g_autoptr (GError) error = NULL;

  g_assert_false (kilt_eigen_symmetric (skew, 2, values, v, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "not symmetric"));
  g_clear_error (&error);
  g_assert_false (kilt_eigen_symmetric (nan_in, 2, values, v, &error));
  g_assert_nonnull (strstr (error->message, "(0, 1)"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/eigen/random-spd", test_random);
  g_test_add_func ("/eigen/diagonal", test_diagonal);
  g_test_add_func ("/eigen/bad", test_bad);
  return g_test_run ();
}
