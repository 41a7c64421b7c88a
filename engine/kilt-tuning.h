/* CLBlast kernel parameters tuned for one device: taken from CLBlast's own tuners, kept per
 * device and driver, applied whenever a context opens on that device. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-device.h"

G_BEGIN_DECLS

/* One CLBlast kernel's parameters, e.g. "Xgemm" with MWG=64, NWG=64, ... */
typedef struct
{
  char *kernel;
  GStrv names;
  gsize *values;
  guint n;
  double best_ms; /* the tuner's time for its own problem size; 0 when unknown */
} KiltTunedKernel;

typedef struct
{
  char *device;       /* the device name the parameters were tuned on */
  char *driver;       /* its driver version */
  GPtrArray *kernels; /* KiltTunedKernel* */
  char *source;       /* where they came from, for people: the tuner and its problem size */
  char *note;         /* what tuning measured, e.g. "cifar10_cnn batch 256: 4.49 -> 3.90 ms" */
} KiltTuning;

KiltTuning *kilt_tuning_new (const KiltDeviceInfo *dev);
void kilt_tuning_free (KiltTuning *t);

/* Reads one result file of a CLBlast tuner (e.g. clblast_xgemm_1_32.json from
 * clblast_tuner_xgemm): its best parameters for single precision. Fails, naming @path, for a
 * file that is not such a result, another precision, or another device than @dev. */
KiltTunedKernel *kilt_tuned_kernel_from_clblast (const char *path, const KiltDeviceInfo *dev,
                                                 GError **error);
void kilt_tuned_kernel_free (KiltTunedKernel *k);

/* Where @dev's tuning lives: $XDG_CONFIG_HOME/kilt/clblast/<device>-<driver>.json. A new
 * driver starts again from CLBlast's built-in parameters. */
char *kilt_tuning_path (const KiltDeviceInfo *dev);

/* NULL without an error when @dev has none; an error naming the file when it is unreadable. */
KiltTuning *kilt_tuning_load (const KiltDeviceInfo *dev, GError **error);
gboolean kilt_tuning_save (const KiltDeviceInfo *dev, const KiltTuning *t, GError **error);
gboolean kilt_tuning_forget (const KiltDeviceInfo *dev, GError **error);

/* Hands the parameters to CLBlast for @dev (it recompiles those kernels on their next use). */
gboolean kilt_tuning_apply (const KiltDeviceInfo *dev, const KiltTuning *t, GError **error);

/* Applies @dev's saved tuning once per process; later calls do nothing. A broken file is
 * reported in @error and leaves CLBlast's built-in parameters in place. */
gboolean kilt_tuning_apply_saved (const KiltDeviceInfo *dev, GError **error);

/* One line for people: "Xgemm MWG=64 NWG=64 ...". */
char *kilt_tuned_kernel_describe (const KiltTunedKernel *k);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltTuning, kilt_tuning_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltTunedKernel, kilt_tuned_kernel_free)

G_END_DECLS
