/* Device batches from a data set split: resident or streamed data, gathered by one kernel. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"
#include "data/kilt-dataset.h"

G_BEGIN_DECLS

typedef struct _KiltBatcher KiltBatcher;

/* Shift range of the augmentation, as a fraction of width and height (Keras' cifar10_cnn). */
#define KILT_BATCHER_SHIFT_RANGE 0.1f

/* Reproducibility contract (tests and other devices rely on it):
 * - epoch e's order is Fisher-Yates (i from n-1 down to 1, j = kilt_rng_below (i + 1)) with a
 *   KiltRng seeded by kilt_batcher_shuffle_seed (seed, e); without shuffle it is 0 .. n-1;
 * - sample id s in epoch e is flipped when kilt_hash_uniform (a, s, 0) < 0.5 and shifted by
 *   (2 u - 1) * KILT_BATCHER_SHIFT_RANGE * W (x, u from counter 1) and * H (y, counter 2),
 *   a = kilt_batcher_augment_seed (seed, e), sampled bilinearly with clamped coordinates;
 * - with a translation of t pixels (kilt_batcher_set_translate) instead: flipped as above and
 *   shifted by whole pixels, dx = min ((int) (u * (2t + 1)), 2t) - t (u from counter 1; dy
 *   from counter 2), out (y, x) = in (reflect (y + dy), reflect (x' + dx)) with x' the flipped
 *   column and reflect (-i) = i, reflect (W - 1 + i) = W - 1 - i (the edge is not repeated);
 * - with alternating flips (kilt_batcher_set_alternate_flip), either way: sample s is flipped
 *   when (kilt_hash_uniform (kilt_batcher_augment_seed (seed, 0), s, 0) < 0.5) differs from
 *   (e odd), so every image is seen mirrored every other epoch (airbench's). */

guint64 kilt_batcher_shuffle_seed (guint32 seed, guint epoch);
guint32 kilt_batcher_augment_seed (guint32 seed, guint epoch);

/* The default limit above which a split is streamed: the device's largest single allocation
 * or a quarter of Kilt's budget on it, whichever is smaller. */
guint64 kilt_batcher_default_max_resident (KiltContext *ctx);

/* Device bytes a batcher would allocate (for the planner); *streamed tells whether the split
 * would stay on the host. @max_resident_bytes 0 means the default. */
guint64 kilt_batcher_device_bytes (KiltContext *ctx, const KiltDataset *ds, const KiltSplit *split,
                                   guint batch, guint64 max_resident_bytes, gboolean *streamed);

/* (mul, add) per channel (2 x channels floats, g_free them) so that a sample's value x of
 * @ds, as stored, becomes x * mul + add under @preprocess, as the batches have it; NULL with
 * an error when the data cannot be standardised. */
float *kilt_batcher_norm_table (const KiltDataset *ds, KiltPreprocess preprocess, GError **error);

/* Uploads @split (KILT_MEM_DATASET) when its samples fit in @max_resident_bytes (0: the
 * default), else keeps them on the host and streams double-buffered chunks. @ds and @split
 * are borrowed and must outlive the batcher. Starts at epoch 0 in file order. */
KiltBatcher *kilt_batcher_new (KiltContext *ctx, const KiltDataset *ds, const KiltSplit *split,
                               guint batch, KiltPreprocess preprocess, gboolean augment,
                               guint32 seed, guint64 max_resident_bytes, GError **error);
void kilt_batcher_free (KiltBatcher *b);
/* Augments by a random flip and a whole-pixel translation of up to @pixels each way, the
 * image reflected at its edges (airbench's), in place of the Keras augmentation; 0 stops it.
 * Fails when @pixels is not smaller than the images' width and height. */
gboolean kilt_batcher_set_translate (KiltBatcher *b, guint pixels, GError **error);
/* Flips every sample horizontally in the gathers enqueued from now on (not with either
 * augmentation): the second half of flip test-time augmentation. */
void kilt_batcher_set_mirror (KiltBatcher *b, gboolean mirror);
/* With augment or a translation: each sample's flip is drawn once and inverted in odd epochs
 * instead of drawn anew each epoch. */
void kilt_batcher_set_alternate_flip (KiltBatcher *b, gboolean alternate);

/* Fixes the epoch's order (shuffled or not) and augmentation draws; uploads the order. */
gboolean kilt_batcher_begin_epoch (KiltBatcher *b, guint epoch, gboolean shuffle, GError **error);
guint kilt_batcher_n_batches (KiltBatcher *b);
guint kilt_batcher_batch_size (KiltBatcher *b);
/* Floats per target row: 1 (class index) for classification, else the regression outputs. */
guint kilt_batcher_n_targets (KiltBatcher *b);
gboolean kilt_batcher_is_streamed (KiltBatcher *b);
/* The epoch's order (n sample ids); owned by the batcher, valid until the next epoch. */
const guint32 *kilt_batcher_order (KiltBatcher *b, gsize *n);
guint64 kilt_batcher_get_device_bytes (KiltBatcher *b);

/* Enqueues batch @batch_index of the epoch into @input (batch x C x H x W floats) and @targets
 * (batch x n_targets floats). *n_valid is the number of real rows: the last batch may be
 * partial, and its remaining rows repeat the valid ones. Does not wait for the device. */
gboolean kilt_batcher_gather (KiltBatcher *b, guint batch_index, cl_mem input, cl_mem targets,
                              guint *n_valid, GError **error);
/* Rows @first .. @first + @count - 1 of batch @batch_index, into @input and @targets as
 * kilt_batcher_gather () fills a whole batch (@count rows of them): a replica's share of the
 * global batch (engine/dist). *@n_valid is 0, and nothing is enqueued, when the slice starts
 * past the end of the split (the short last batch). */
gboolean kilt_batcher_gather_slice (KiltBatcher *b, guint batch_index, guint first, guint count,
                                    cl_mem input, cl_mem targets, guint *n_valid, GError **error);

G_END_DECLS
