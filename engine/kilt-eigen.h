/* Eigen decomposition of small symmetric matrices (cyclic Jacobi), in double. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Diagonalises the symmetric @n x @n matrix @a (row-major; only read) by cyclic Jacobi
 * rotations: @values gets its n eigenvalues in descending order and @vectors (n x n,
 * row-major) the matching unit eigenvectors as its columns, so that A = V diag (values) V^T.
 * FALSE with an error when @a is not symmetric or holds a value that is not finite, or when
 * the rotations do not converge (which for a symmetric matrix they always do well before the
 * sweep limit). Meant for the tens of rows of a patch covariance: O(n^3) per sweep. */
gboolean kilt_eigen_symmetric (const double *a, guint n, double *values, double *vectors,
                               GError **error);

G_END_DECLS
