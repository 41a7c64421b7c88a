/* Summing the replicas' gradients: host-staged, by buckets, overlapped with the backward pass. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-comm.h"
#include "kilt-exec.h"

G_BEGIN_DECLS

/* 4 MiB of gradients a bucket: big enough for a transfer to run at the bus's speed, small
 * enough that the last layers' buckets travel while the first layers still compute. */
#define KILT_REDUCE_BUCKET_FLOATS (1u << 20)

typedef struct _KiltGradReducer KiltGradReducer;

/* For @n executors of the same model (one per device, each with gradients) and, with @comm,
 * the same on every rank. Each executor's backward pass gets a hook that sends each bucket to
 * the host as soon as the layers that write it are enqueued, on a queue of its own. */
KiltGradReducer *kilt_grad_reducer_new (KiltExecutor *const *execs, guint n, KiltComm *comm,
                                        gsize bucket_floats, GError **error);
void kilt_grad_reducer_free (KiltGradReducer *r);

/* Before a step's backward passes: replica i's gradients count @weights[i] times in the sum
 * (its share of the samples that count in the global batch); 0 leaves the replica out of the
 * sum (it computed nothing), but it still receives the sum and updates as the others do. */
gboolean kilt_grad_reducer_begin (KiltGradReducer *r, const double *weights, GError **error);
/* Once every active replica's backward pass is enqueued: waits for the buckets, sums them
 * (and across ranks), writes the sum into every replica's gradient buffer, and makes every
 * replica's queue wait for it before whatever is enqueued next (the optimizer step). */
gboolean kilt_grad_reducer_finish (KiltGradReducer *r, GError **error);
/* The last finish's host time past waiting for the devices' gradients: summing, across
 * ranks too, and sending the sum back (ms). */
double kilt_grad_reducer_last_ms (KiltGradReducer *r);
guint kilt_grad_reducer_n_buckets (KiltGradReducer *r);

/* Plain-C reference of one bucket's sum, as finish computes it: out = sum_i w[i] * in[i]
 * over replicas with w[i] != 0 (in float, replicas in order). */
void kilt_grad_reducer_sum (float *out, const float *const *in, const double *w, guint n_in,
                            gsize n);

G_END_DECLS
