/* One device in use: its OpenCL context and queue, the kernel library, memory and profiling. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-device.h"
#include "kilt-memory.h"
#include "kilt-precision.h"

G_BEGIN_DECLS

struct _KiltContext
{
  KiltDeviceInfo *info; /* a copy owned by the context */
  cl_context context;
  cl_command_queue queue; /* in-order, profiling enabled */
  cl_program program;
  GHashTable *kernels;    /* name -> cl_kernel */
  double compile_seconds; /* time spent building (0 when the cache was used) */
  gboolean from_cache;
  KiltMemStats mem;
  guint64 budget; /* bytes Kilt lets itself allocate on this device */

  /* Profiling: when profiling is on, each launch records an event tagged with prof_tag. */
  gboolean igemm;             /* the implicit-GEMM convolution kernels are built and can run */
  gboolean gemm_wide;         /* kernels/gemm.cl was built with its wide tiles (kilt_gemm_wide) */
  KiltPrecision precision;    /* what GEMMs compute in (kilt_context_set_precision) */
  cl_program tf32_program[2]; /* kernels/gemm-tf32.cl, built on first use of TF32, with */
  cl_kernel tf32_kernel[2];   /* 64 x 64 and 128 x 128 tiles */
  /* Its builds for one layout of the operands (kilt_gemm_tf32_lay), made on first use: by
   * tile, then by transposes and 16-byte loads (kilt-gemm-tf32.c's layout_index ()). */
  cl_program tf32_lay_program[2][16];
  cl_kernel tf32_lay_kernel[2][16];
  /* kilt_conv_igemm_tf32 and kilt_conv_igemm_wgrad_tf32, by tile (kilt-gemm-tf32.c) */
  cl_program tf32_conv_program[3][2];
  cl_kernel tf32_conv_kernel[3][2];
  KiltBuffer *gemm_parts; /* the split-K GEMM's parts (engine/kilt-gemm.c), made on use */
  gboolean profiling;
  int prof_tag;
  GArray *prof_events; /* KiltProfEvent */
};

typedef struct
{
  cl_event event;
  int tag;
  cl_event begin; /* kilt_context_prof_span's marker, or NULL */
} KiltProfEvent;

/* Opens a context on @device, builds (or loads from the cache) the kernel library. */
/* The bytes a context on @device lets itself allocate: all but a twentieth (for the driver and
 * the display), or $KILT_MEMORY_BUDGET_MB when that is less. */
guint64 kilt_context_budget_for (const KiltDeviceInfo *device);
KiltContext *kilt_context_new (const KiltDeviceInfo *device, GError **error);
void kilt_context_free (KiltContext *ctx);

/* The named kernel from the library, or NULL with an error naming it. */
cl_kernel kilt_context_kernel (KiltContext *ctx, const char *name, GError **error);

/* Whether a device gets the implicit-GEMM convolution kernels (kernels/igemm.cl): groups of
 * 256 work-items and 18.5 KiB of local memory, with room to spare. */
#define KILT_IGEMM_GROUP     256
#define KILT_IGEMM_LOCAL_MEM (24 * 1024)
gboolean kilt_device_runs_igemm (const KiltDeviceInfo *info);

/* Enqueues a 1-3 D launch; @local may be NULL. Rounds @global up to a multiple of @local.
 * Honours fault injection and profiling. */
gboolean kilt_context_launch (KiltContext *ctx, cl_kernel kernel, guint dims, const size_t *global,
                              const size_t *local, GError **error);

/* Shorthand for a 1-D launch over @n items with the device's preferred group size. */
gboolean kilt_context_launch_1d (KiltContext *ctx, cl_kernel kernel, size_t n, GError **error);

/* Returns a cl_event* for a CLBlast call (NULL when not profiling) and records it. */
cl_event *kilt_context_prof_slot (KiltContext *ctx);
/* The same for a call that launches several kernels but returns the event of its last one
 * (CLBlast's GEMM pads and transposes around its main kernel): a marker enqueued first marks
 * where the call's work begins, so the profile counts all of it. */
cl_event *kilt_context_prof_span (KiltContext *ctx);
/* Drops the event kilt_context_prof_slot or _span recorded last (the call failed). */
void kilt_context_prof_drop_last (KiltContext *ctx);

gboolean kilt_context_finish (KiltContext *ctx, GError **error);

/* The folder for cached program binaries: $KILT_CACHE_DIR or $XDG_CACHE_HOME/kilt/kernels. */
char *kilt_kernel_cache_dir (void);

/* Test switch: make the Nth (1-based) allocation, enqueue or build from now fail. 0 = never.
 * SEGV, ABORT and HANG count training steps (kilt_fault_step): in the Nth step from now the
 * first kernel launch of a layer's backward pass raises SIGSEGV, calls abort () or sleeps for
 * ever, as a faulting or stuck driver would. Also read once from $KILT_FAULT, a comma-separated
 * list of "alloc:N", "enqueue:N", "build:N", "segv:N", "abort:N", "hang:N", "oom:N". OOM counts
 * kernel launches (GEMMs too) and fails the Nth with CL_OUT_OF_RESOURCES, as a driver that
 * allocates at first use does when the device is full. */
typedef enum
{
  KILT_FAULT_ALLOC,
  KILT_FAULT_ENQUEUE,
  KILT_FAULT_BUILD,
  KILT_FAULT_SEGV,
  KILT_FAULT_ABORT,
  KILT_FAULT_HANG,
  KILT_FAULT_OOM,
  KILT_FAULT_N
} KiltFaultKind;

void kilt_fault_set (KiltFaultKind kind, guint nth);
gboolean kilt_fault_hit (KiltFaultKind kind);
/* The trainer calls this once per training step. */
void kilt_fault_step (void);
/* The armed faults as $KILT_FAULT text ("enqueue:40"), disarmed here: a window hands them to
 * the worker process it starts. NULL when none is armed. Caller frees. */
char *kilt_fault_take (void);
/* Arms the faults of a $KILT_FAULT text (as kilt_fault_take gives). */
void kilt_fault_apply (const char *text);
/* @func is called (on the caller's thread) each time kilt_fault_set arms a fault, so that a
 * window can hand a fault a test arms mid-run to its worker. NULL: none. */
void kilt_fault_set_notify (void (*func) (void));

/* Sets a kernel argument by value; collects failures in *err. */
#define KILT_ARG(kernel, index, value, err)                                                        \
  ((err) |= clSetKernelArg ((kernel), (index), sizeof (value), &(value)))

G_END_DECLS
