/* OpenCL platforms and devices: enumeration with facts, stable ids, the remembered default. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <CL/cl.h>

G_BEGIN_DECLS

typedef struct
{
  char *id; /* stable: "<platform>/<device>/<index>", lower case, no spaces */
  char *name;
  char *vendor;
  char *platform_name;
  char *platform_version;
  char *driver_version;
  char *opencl_version; /* CL_DEVICE_VERSION */
  char *type;           /* "GPU", "CPU", "accelerator", "other" */
  guint compute_units;
  guint clock_mhz;
  guint64 global_mem;
  guint64 max_alloc;
  guint64 local_mem;
  guint float_width; /* CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT: 16 on PoCL with AVX-512 */
  gsize max_work_group;
  gboolean fp64;
  gboolean fp16;
  gboolean available;
  gboolean compiler_available;
  char *unusable_reason; /* NULL when usable, else why not */
  cl_platform_id platform;
  cl_device_id device;
} KiltDeviceInfo;

/* A deep copy of @d's strings (the OpenCL handles are shared), and its free. */
KiltDeviceInfo *kilt_device_info_copy (const KiltDeviceInfo *d);
void kilt_device_info_free (KiltDeviceInfo *d);

typedef struct
{
  GPtrArray *devices;  /* KiltDeviceInfo */
  GPtrArray *problems; /* char*: platforms that failed to answer, with the reason */
} KiltDeviceList;

/* Never fails: a missing driver or a broken platform lands in ->problems. */
KiltDeviceList *kilt_device_list_new (void);
void kilt_device_list_free (KiltDeviceList *list);
const KiltDeviceInfo *kilt_device_list_find (KiltDeviceList *list, const char *id_or_index);

/* The device to use when none is named: $KILT_DEVICE, else the saved default, else the first
 * usable GPU, else the first usable device. Sets @error when there is none. */
const KiltDeviceInfo *kilt_device_list_choose_default (KiltDeviceList *list, GError **error);

/* The remembered default id (shared by kilt and kilt-cli): $XDG_CONFIG_HOME/kilt/device. */
char *kilt_device_get_saved_default (void);
gboolean kilt_device_save_default (const char *id, GError **error);

/* A multi-line report of every platform and device, for bug reports and `kilt-cli devices`. */
char *kilt_device_list_report (KiltDeviceList *list);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltDeviceList, kilt_device_list_free)

G_END_DECLS
