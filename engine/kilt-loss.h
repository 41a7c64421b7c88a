/* Loss functions on the device (value, accuracy, output gradient) and their plain-C reference. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* The metrics buffer: [0] sum of per-sample losses, [1] number correct, [2] number of samples,
 * [3] reserved (never written), then scratch: batch per-sample losses and batch per-sample
 * correctness values, rewritten by every call. kilt_loss_enqueue () only adds to [0..2], so a
 * caller zeroes them when it starts a new tally (an epoch) and reads them when it likes. */
#define KILT_LOSS_METRIC_LOSS    0
#define KILT_LOSS_METRIC_CORRECT 1
#define KILT_LOSS_METRIC_COUNT   2

/* Floats the metrics buffer must hold for @batch rows. */
gsize kilt_loss_metrics_floats (guint batch);

/* Enqueues the loss of a batch (nothing waits). @out is batch x n_out model outputs (softmax
 * cross-entropy: softmax probabilities); @targets are floats: softmax cross-entropy one class
 * index per row, binary cross-entropy and MSE batch x n_out values. Only the first @n_valid
 * rows (1..batch) count. Writes @dout (batch x n_out) with the gradient of the mean loss over
 * those rows, zero on later rows; for softmax cross-entropy it is the gradient w.r.t. the
 * pre-softmax logits, (p - onehot) / n_valid, and the caller sets ex.softmax_fused_node to
 * the output node. Adds to @metrics as described above.
 *
 * As Keras does, probabilities are clipped to [1e-7, 1 - 1e-7] (as float32 holds them) in the
 * loss value. The binary cross-entropy gradient is taken at the clipped probability; the
 * softmax one is exact. Per-sample binary cross-entropy and MSE are means over the n_out
 * outputs; binary accuracy is the share of a sample's outputs on the right side of 0.5. A
 * class index outside [0, n_out) costs -log(1e-7), is never correct and has no one-hot term.
 * Returns FALSE (KILT_ENGINE_ERROR_INVALID) when a buffer is smaller than the call needs. */
gboolean kilt_loss_enqueue (KiltContext *ctx, KiltLossType loss, guint batch, guint n_valid,
                            guint n_out, cl_mem out, cl_mem targets, cl_mem dout, cl_mem metrics,
                            GError **error);

/* kilt_loss_enqueue with Keras' label smoothing @smoothing in [0, 1) for softmax
 * cross-entropy: the target is onehot (1 - s) + s / n_out, the loss -sum_j y_j log (clip
 * (p_j)) and the logits' gradient (p - y) / n_valid. 0 is kilt_loss_enqueue to the bit. Fails
 * (KILT_ENGINE_ERROR_INVALID) as kilt_loss_check_smoothing does. */
gboolean kilt_loss_enqueue_smoothed (KiltContext *ctx, KiltLossType loss, float smoothing,
                                     guint batch, guint n_valid, guint n_out, cl_mem out,
                                     cl_mem targets, cl_mem dout, cl_mem metrics, GError **error);

/* An error naming the setting unless @smoothing is in [0, 1) and, when not 0, @loss is
 * softmax cross-entropy. */
gboolean kilt_loss_check_smoothing (KiltLossType loss, float smoothing, GError **error);

/* The same in double precision on the host. @dout (may be NULL) gets what the device writes;
 * @metrics[0..2] are overwritten with this batch's sums. */
void kilt_loss_reference (KiltLossType loss, guint batch, guint n_valid, guint n_out,
                          const double *out, const double *targets, double *dout,
                          double metrics[3]);
void kilt_loss_reference_smoothed (KiltLossType loss, double smoothing, guint batch, guint n_valid,
                                   guint n_out, const double *out, const double *targets,
                                   double *dout, double metrics[3]);

G_END_DECLS
