/* The driver's own figure for used device memory, where a vendor offers one. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-vendor-memory"

#include "kilt-vendor-memory.h"

#include <gmodule.h>
#include <string.h>

/* From the cl_amd_device_attribute_query and cl_nv_device_attribute_query extensions. */
#define KILT_CL_DEVICE_GLOBAL_FREE_MEMORY_AMD 0x4039
#define KILT_CL_DEVICE_PCI_BUS_ID_NV          0x4008
#define KILT_CL_DEVICE_PCI_SLOT_ID_NV         0x4009
#define KILT_CL_DEVICE_PCI_DOMAIN_ID_NV       0x400A

/* NVML's C ABI as documented by NVIDIA: nvmlReturn_t is an int, 0 = success. */
typedef struct
{
  unsigned long long total, free, used;
} NvmlMemory;
typedef int (*NvmlInit) (void);
typedef int (*NvmlByBusId) (const char *bus_id, void **device);
typedef int (*NvmlMemoryInfo) (void *device, NvmlMemory *memory);

static struct
{
  gsize once;
  NvmlByBusId by_bus_id;
  NvmlMemoryInfo memory_info;
} nvml;

static void
nvml_load (void)
{
  if (g_once_init_enter (&nvml.once))
    {
      GModule *m = g_module_open ("libnvidia-ml.so.1", G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
      NvmlInit init = NULL;

      /* Kept open for the life of the process: NVML has no safe unload while in use. */
      if (m && g_module_symbol (m, "nvmlInit_v2", (gpointer *)&init)
          && g_module_symbol (m, "nvmlDeviceGetHandleByPciBusId_v2", (gpointer *)&nvml.by_bus_id)
          && g_module_symbol (m, "nvmlDeviceGetMemoryInfo", (gpointer *)&nvml.memory_info)
          && init () == 0)
        g_debug ("NVML loaded: used-memory figures for NVIDIA devices");
      else
        {
          nvml.by_bus_id = NULL;
          nvml.memory_info = NULL;
          if (m)
            g_module_close (m);
        }
      g_once_init_leave (&nvml.once, 1);
    }
}

static gint64
nvidia_used (const KiltDeviceInfo *d)
{
  cl_uint bus = 0, slot = 0, domain = 0;
  char bus_id[32];
  void *handle = NULL;
  NvmlMemory mem = { 0 };

  if (clGetDeviceInfo (d->device, KILT_CL_DEVICE_PCI_BUS_ID_NV, sizeof bus, &bus, NULL)
          != CL_SUCCESS
      || clGetDeviceInfo (d->device, KILT_CL_DEVICE_PCI_SLOT_ID_NV, sizeof slot, &slot, NULL)
             != CL_SUCCESS)
    return -1;
  /* Older drivers lack the domain query; domain 0 is what they all use then. */
  clGetDeviceInfo (d->device, KILT_CL_DEVICE_PCI_DOMAIN_ID_NV, sizeof domain, &domain, NULL);
  nvml_load ();
  if (!nvml.by_bus_id)
    return -1;
  /* The slot id packs device (bits 3..7) and function (bits 0..2). */
  g_snprintf (bus_id, sizeof bus_id, "%08x:%02x:%02x.%x", domain, bus, slot >> 3, slot & 7);
  if (nvml.by_bus_id (bus_id, &handle) != 0 || nvml.memory_info (handle, &mem) != 0)
    return -1;
  return (gint64)mem.used;
}

static gint64
amd_used (const KiltDeviceInfo *d)
{
  size_t free_kib[2] = { 0, 0 };

  if (clGetDeviceInfo (d->device, KILT_CL_DEVICE_GLOBAL_FREE_MEMORY_AMD, sizeof free_kib, free_kib,
                       NULL)
      != CL_SUCCESS)
    return -1;
  return (gint64)d->global_mem - (gint64)free_kib[0] * 1024;
}

gint64
kilt_vendor_used_bytes (const KiltDeviceInfo *device)
{
  g_return_val_if_fail (device != NULL, -1);
  if (!g_str_equal (device->type, "GPU"))
    return -1;
  if (g_strrstr (device->vendor, "NVIDIA"))
    return nvidia_used (device);
  if (g_strrstr (device->vendor, "Advanced Micro Devices") || g_strrstr (device->vendor, "AMD"))
    return amd_used (device);
  return -1;
}
