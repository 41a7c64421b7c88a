/* Data-initialised whitening convolutions (airbench's first layer), on the host. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"
#include "data/kilt-dataset.h"

G_BEGIN_DECLS

/* The uncentred covariance (1 / M) sum p p^T of the M = n x (H - kh + 1) x (W - kw + 1)
 * kh x kw patches (every position, stride 1) of the @n images at @x (n x C x H x W floats,
 * channels first): K x K doubles in @cov, K = C kh kw, a patch laid out as a Conv2D's
 * weights are (channel, row, column). */
void kilt_whiten_patch_covariance (const float *x, gsize n, const KiltShape *shape, guint kh,
                                   guint kw, double *cov);

/* The 2K filters from @cov (K x K): filter i < K is the eigenvector of the i-th largest
 * eigenvalue l_i over sqrt (l_i + @epsilon), filter K + i its negative (airbench94's). @weights
 * gets 2K x K floats, a Conv2D's layout; @eigenvalues (may be NULL) the K eigenvalues. */
gboolean kilt_whiten_filters (const double *cov, guint k, double epsilon, float *weights,
                              double *eigenvalues, GError **error);

/* Sets the kernel of every Conv2D of @model whose kernel_initializer is whiten, in @params
 * (the model's n_params floats), from the first whiten_samples training images of @data
 * normalised as @preprocess normalises batches. Such a layer must read the model's input, have
 * 2 x channels x kh x kw filters and neither groups nor dilation; the error names it
 * otherwise. @summary (may be NULL) gets a line per layer for the run's log. */
gboolean kilt_whiten_init (KiltModel *model, const KiltDataset *data, KiltPreprocess preprocess,
                           float *params, GString *summary, GError **error);

/* Whether @model has a whitening layer. */
gboolean kilt_whiten_model_has (KiltModel *model);

G_END_DECLS
