/* How a run on several devices or MPI ranks shared its work, as its record keeps it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-trainer.h"

G_BEGIN_DECLS

/* One device of a run on several. */
typedef struct
{
  char *name;
  guint share;               /* rows of every global batch */
  double samples_per_second; /* its speed alone at that share, as calibration timed it (0: not) */
  double busy_percent;       /* NaN: not sampled */
  gint64 peak_bytes;         /* its device memory's peak; -1: unknown */
} KiltRunDevice;

/* From the run's STARTED event and its latest EPOCH of several devices. */
typedef struct
{
  GPtrArray *asked; /* char *: the devices the run was started on */
  GArray *devices;  /* KiltRunDevice: those it trained on (the fastest alone when that won) */
  double step_ms;   /* a step on every asked device, as calibration timed it (0: not timed) */
  double alone_ms;  /* a step on the fastest device alone (0: not timed) */
  guint ranks;      /* MPI ranks; 1: one process */
  double reduce_ms; /* host time summing gradients, per step */
  double samples_per_second; /* the latest epoch's, over every device (and rank) */
} KiltRunScaling;

KiltRunScaling *kilt_run_scaling_new (void);
void kilt_run_scaling_free (KiltRunScaling *scaling);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltRunScaling, kilt_run_scaling_free)

/* A STARTED event names the devices asked (and the ranks); an EPOCH one the shares, busy
 * figures and timings. Other events and runs on one device leave it alone. Returns whether
 * @scaling changed. */
gboolean kilt_run_scaling_update (KiltRunScaling *scaling, const KiltEvent *ev);

char *kilt_run_scaling_to_json (const KiltRunScaling *scaling);
/* NULL with @error set when @json is not a scaling record. */
KiltRunScaling *kilt_run_scaling_from_json (const char *json, GError **error);

/* The fastest device alone's step time over every device's (above 1: the devices together
 * are faster); NaN unless calibration timed both. */
double kilt_run_scaling_speedup (const KiltRunScaling *scaling);
/* The speed-up over the best one possible, the sum of the asked devices' speeds over the
 * fastest one's: 1 is perfect scaling; NaN unless timed. */
double kilt_run_scaling_efficiency (const KiltRunScaling *scaling);
/* One sentence: what trained where, and how it scaled. Caller frees. */
char *kilt_run_scaling_describe (const KiltRunScaling *scaling);

G_END_DECLS
