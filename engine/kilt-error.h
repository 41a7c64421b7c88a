/* Kilt's one error domain, and the translation of OpenCL / CLBlast codes into words. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <CL/cl.h>

G_BEGIN_DECLS

#define KILT_ENGINE_ERROR (kilt_engine_error_quark ())

typedef enum
{
  KILT_ENGINE_ERROR_NO_PLATFORM,   /* no OpenCL driver installed */
  KILT_ENGINE_ERROR_NO_DEVICE,     /* a device id that matches nothing */
  KILT_ENGINE_ERROR_OPENCL,        /* an OpenCL call failed */
  KILT_ENGINE_ERROR_OUT_OF_MEMORY, /* allocation failed or the plan does not fit */
  KILT_ENGINE_ERROR_BUILD,         /* kernel build failed; message holds the log */
  KILT_ENGINE_ERROR_CLBLAST,       /* a CLBlast routine failed */
  KILT_ENGINE_ERROR_MODEL,         /* a model that cannot be built as described */
  KILT_ENGINE_ERROR_DATA,          /* a data set that cannot be read or used */
  KILT_ENGINE_ERROR_DIVERGED,      /* NaN or Inf in the loss */
  KILT_ENGINE_ERROR_CANCELLED,     /* stopped on request */
  KILT_ENGINE_ERROR_IO,            /* a file could not be read or written */
  KILT_ENGINE_ERROR_INVALID,       /* an argument a person gave is out of range */
  KILT_ENGINE_ERROR_FAULT,         /* injected by the test fault switch */
  KILT_ENGINE_ERROR_WORKER,        /* the training worker process died or hung */
  KILT_ENGINE_ERROR_PEER,          /* another rank of an MPI job failed or did not answer */
  /* CL_OUT_OF_RESOURCES: the device ran out of memory late (NVIDIA allocates at first use),
   * or a kernel faulted; either way the context is lost. */
  KILT_ENGINE_ERROR_OUT_OF_RESOURCES,
} KiltEngineError;

GQuark kilt_engine_error_quark (void);

/* "CL_MEM_OBJECT_ALLOCATION_FAILURE" for -4, "unknown OpenCL error -1234" otherwise. */
const char *kilt_cl_error_name (cl_int code);

/* A sentence a person can act on for a code, e.g. "the device ran out of memory". */
const char *kilt_cl_error_hint (cl_int code);

/* Sets @error to "<what> failed on <device>: <hint> (<name>)" with the right error code. */
void kilt_set_cl_error (GError **error, cl_int code, const char *device_name, const char *what_fmt,
                        ...) G_GNUC_PRINTF (4, 5);

/* The same for a CLBlast status (which includes the OpenCL codes). */
void kilt_set_clblast_error (GError **error, int status, const char *device_name,
                             const char *what_fmt, ...) G_GNUC_PRINTF (4, 5);

/* Whether @error says the device ran out of memory or resources (OUT_OF_MEMORY or
 * OUT_OF_RESOURCES of KILT_ENGINE_ERROR, not CL_OUT_OF_HOST_MEMORY): what a smaller batch may
 * mend. Host allocations of Kilt's own that fail are OUT_OF_MEMORY too: their callers know. */
gboolean kilt_error_is_device_memory (const GError *error);

/* Human-readable byte count: "1.2 GiB", "512 MiB", "980 B". Caller frees. */
char *kilt_format_bytes (guint64 bytes);

G_END_DECLS
