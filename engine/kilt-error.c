/* Kilt's one error domain, and the translation of OpenCL / CLBlast codes into words. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-error.h"

#include <clblast_c.h>
#include <stdarg.h>
#include <string.h>

G_DEFINE_QUARK (kilt - engine - error - quark, kilt_engine_error)

typedef struct
{
  cl_int code;
  const char *name;
  const char *hint;
} CodeInfo;

static const CodeInfo codes[] = {
  { -1, "CL_DEVICE_NOT_FOUND", "no such device" },
  { -2, "CL_DEVICE_NOT_AVAILABLE", "the device is busy or switched off" },
  { -3, "CL_COMPILER_NOT_AVAILABLE", "the driver has no kernel compiler" },
  { -4, "CL_MEM_OBJECT_ALLOCATION_FAILURE",
    "the device could not allocate the memory (out of device memory)" },
  { -5, "CL_OUT_OF_RESOURCES",
    "the device ran out of resources, or a kernel faulted or hit the driver's watchdog; the "
    "device context is lost" },
  { -6, "CL_OUT_OF_HOST_MEMORY", "the computer ran out of memory" },
  { -7, "CL_PROFILING_INFO_NOT_AVAILABLE", "profiling information is not available" },
  { -11, "CL_BUILD_PROGRAM_FAILURE", "the kernels failed to compile" },
  { -30, "CL_INVALID_VALUE", "an argument was out of range (a bug in Kilt)" },
  { -33, "CL_INVALID_DEVICE", "the device is not valid" },
  { -34, "CL_INVALID_CONTEXT", "the device context is not valid" },
  { -36, "CL_INVALID_COMMAND_QUEUE", "the command queue is not valid" },
  { -38, "CL_INVALID_MEM_OBJECT", "a buffer is not valid (a bug in Kilt)" },
  { -42, "CL_INVALID_BINARY", "a cached kernel binary is not valid for this device" },
  { -45, "CL_INVALID_PROGRAM_EXECUTABLE", "the kernels were not built for this device" },
  { -46, "CL_INVALID_KERNEL_NAME", "a kernel is missing from the program (a bug in Kilt)" },
  { -48, "CL_INVALID_KERNEL", "a kernel object is not valid" },
  { -49, "CL_INVALID_ARG_INDEX", "a kernel argument index is wrong (a bug in Kilt)" },
  { -50, "CL_INVALID_ARG_VALUE", "a kernel argument is wrong (a bug in Kilt)" },
  { -51, "CL_INVALID_ARG_SIZE", "a kernel argument size is wrong (a bug in Kilt)" },
  { -52, "CL_INVALID_KERNEL_ARGS", "a kernel argument was not set (a bug in Kilt)" },
  { -54, "CL_INVALID_WORK_GROUP_SIZE", "the work-group size is not supported by the device" },
  { -55, "CL_INVALID_WORK_ITEM_SIZE", "the work-item size is not supported by the device" },
  { -61, "CL_INVALID_BUFFER_SIZE",
    "the buffer is larger than the device's largest single allocation" },
  { -1001, "CL_PLATFORM_NOT_FOUND_KHR",
    "no OpenCL driver is installed: install your GPU vendor's OpenCL driver, or "
    "pocl-opencl-icd for the CPU, and check with clinfo" },
};

const char *
kilt_cl_error_name (cl_int code)
{
  static char buf[64];

  for (gsize i = 0; i < G_N_ELEMENTS (codes); i++)
    if (codes[i].code == code)
      return codes[i].name;
  /* Only used for codes nobody documented; a static buffer is racy but never freed. */
  g_snprintf (buf, sizeof buf, "unknown OpenCL error %d", code);
  return buf;
}

const char *
kilt_cl_error_hint (cl_int code)
{
  for (gsize i = 0; i < G_N_ELEMENTS (codes); i++)
    if (codes[i].code == code)
      return codes[i].hint;
  return "the OpenCL driver reported an error";
}

static int
code_to_domain (cl_int code)
{
  switch (code)
    {
      case -4:
      case -6:
      case -61:
        return KILT_ENGINE_ERROR_OUT_OF_MEMORY;
      case -5:
        return KILT_ENGINE_ERROR_OUT_OF_RESOURCES;
      case -11:
        return KILT_ENGINE_ERROR_BUILD;
      case -1001:
        return KILT_ENGINE_ERROR_NO_PLATFORM;
      default:
        return KILT_ENGINE_ERROR_OPENCL;
    }
}

void
kilt_set_cl_error (GError **error, cl_int code, const char *device_name, const char *what_fmt, ...)
{
  va_list ap;
  char *what;

  if (error == NULL)
    return;
  va_start (ap, what_fmt);
  what = g_strdup_vprintf (what_fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, code_to_domain (code), "%s failed on %s: %s (%s)", what,
               device_name ? device_name : "the OpenCL device", kilt_cl_error_hint (code),
               kilt_cl_error_name (code));
  g_free (what);
}

void
kilt_set_clblast_error (GError **error, int status, const char *device_name, const char *what_fmt,
                        ...)
{
  va_list ap;
  char *what;
  const char *hint;

  if (error == NULL)
    return;
  va_start (ap, what_fmt);
  what = g_strdup_vprintf (what_fmt, ap);
  va_end (ap);
  if (status > -1024)
    {
      /* CLBlast passes OpenCL's own codes through unchanged. */
      g_set_error (error, KILT_ENGINE_ERROR, code_to_domain (status), "%s failed on %s: %s (%s)",
                   what, device_name ? device_name : "the OpenCL device",
                   kilt_cl_error_hint (status), kilt_cl_error_name (status));
      g_free (what);
      return;
    }
  switch (status)
    {
      case CLBlastNotImplemented:
        hint = "the routine is not implemented in CLBlast";
        break;
      case CLBlastInsufficientMemoryA:
      case CLBlastInsufficientMemoryB:
      case CLBlastInsufficientMemoryC:
        hint = "a matrix buffer is too small (a bug in Kilt)";
        break;
      case CLBlastInvalidLocalMemUsage:
        hint = "the routine needs more local memory than the device has";
        break;
      case CLBlastNoHalfPrecision:
        hint = "the device has no half precision";
        break;
      case CLBlastNoDoublePrecision:
        hint = "the device has no double precision";
        break;
      case CLBlastUnexpectedError:
        hint = "CLBlast failed unexpectedly";
        break;
      case CLBlastDatabaseError:
        hint = "CLBlast has no parameters for this device";
        break;
      case CLBlastMissingOverrideParameter:
        hint = "a parameter this kernel needs is missing (a tuner result cut short?)";
        break;
      case CLBlastInvalidOverrideKernel:
        hint = "CLBlast has no kernel of that name";
        break;
      default:
        hint = "CLBlast reported an error";
        break;
    }
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CLBLAST,
               "%s failed on %s: %s (CLBlast status %d)", what,
               device_name ? device_name : "the OpenCL device", hint, status);
  g_free (what);
}

gboolean
kilt_error_is_device_memory (const GError *error)
{
  /* The driver's own host memory (-6) shares OUT_OF_MEMORY; kilt_set_cl_error names it. */
  return error && error->domain == KILT_ENGINE_ERROR
         && (error->code == KILT_ENGINE_ERROR_OUT_OF_RESOURCES
             || (error->code == KILT_ENGINE_ERROR_OUT_OF_MEMORY
                 && !strstr (error->message, "(CL_OUT_OF_HOST_MEMORY)")));
}

char *
kilt_format_bytes (guint64 bytes)
{
  if (bytes >= (guint64)1 << 30)
    return g_strdup_printf ("%.1f GiB", bytes / (double)(1 << 30));
  if (bytes >= (guint64)1 << 20)
    return g_strdup_printf ("%.1f MiB", bytes / (double)(1 << 20));
  if (bytes >= (guint64)1 << 10)
    return g_strdup_printf ("%.1f KiB", bytes / 1024.0);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
}
