/* The device doctor: compile, check every op against the reference, measure, and judge. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-device.h"

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  char *op; /* "Conv2D 3x3 same" */
  gboolean passed;
  double max_error; /* worst of forward / backward / finite differences, relative */
  char *error;      /* set when the op could not run */
} KiltDoctorCheck;

typedef struct
{
  char *device_id;
  char *device_name;
  double compile_seconds;
  gboolean compile_cached;
  GArray *checks;          /* KiltDoctorCheck */
  double gemm_gflops;      /* SGEMM 1024^3 (512^3 on CPUs) */
  double gemm_tf32_gflops; /* 2048^3 at tf32, where the device offers it; else 0 */
  double copy_gbps;        /* device-to-device copy */
  double upload_gbps;      /* host-to-device */
  double launch_us;        /* empty-kernel launch + completion, averaged */
  gboolean usable;
  char *verdict; /* one sentence with the reason */
} KiltDoctorReport;

/* Progress: fraction done and what is running; called on the caller's thread. */
typedef void (*KiltDoctorProgress) (double fraction, const char *what, gpointer user_data);

/* Runs everything on @device. Returns NULL only when cancelled; a device that fails gets a
 * report whose verdict says why. */
KiltDoctorReport *kilt_doctor_run (const KiltDeviceInfo *device, KiltDoctorProgress progress,
                                   gpointer user_data, GCancellable *cancellable);
void kilt_doctor_report_free (KiltDoctorReport *report);
char *kilt_doctor_report_text (const KiltDoctorReport *report);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltDoctorReport, kilt_doctor_report_free)

G_END_DECLS
