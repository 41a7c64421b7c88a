/* The driver's own figure for used device memory, where a vendor offers one. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-device.h"

G_BEGIN_DECLS

/* Bytes in use on the whole device as its vendor reports them (every process, not only
 * Kilt): AMD through CL_DEVICE_GLOBAL_FREE_MEMORY_AMD, NVIDIA through NVML
 * (libnvidia-ml.so.1, loaded at run time when present). -1 where there is no such figure
 * (Intel, PoCL, or the library is missing). Call from the thread that owns the device. */
gint64 kilt_vendor_used_bytes (const KiltDeviceInfo *device);

G_END_DECLS
