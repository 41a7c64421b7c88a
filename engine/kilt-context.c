/* One device in use: its OpenCL context and queue, the kernel library, memory and profiling. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-context"

#include "kilt-context.h"
#include "kilt-gemm.h"
#include "kilt-gemm-tf32.h"
#include "kilt-error.h"
#include "kilt-breadcrumb.h"
#include "kilt-tuning.h"
#include "kilt-kernel-sources.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BUILD_OPTIONS "-cl-std=CL1.2"

gboolean
kilt_device_runs_igemm (const KiltDeviceInfo *info)
{
  return info->max_work_group >= KILT_IGEMM_GROUP && info->local_mem >= KILT_IGEMM_LOCAL_MEM;
}

/* Whether the implicit-GEMM kernels, once built, take the group sizes kernels/igemm.cl
 * requires: a compiler that needs more registers may allow fewer work-items. */
static gboolean
igemm_kernels_run (KiltContext *ctx)
{
  static const struct
  {
    const char *name;
    size_t group;
  } kernels[] = { { "kilt_conv_igemm_32", 256 },
                  { "kilt_conv_igemm_64", 256 },
                  { "kilt_conv_igemm_wgrad_32", 128 },
                  { "kilt_conv_igemm_wgrad_64", 256 } };

  if (!kilt_device_runs_igemm (ctx->info))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (kernels); i++)
    {
      cl_kernel k = kilt_context_kernel (ctx, kernels[i].name, NULL);
      size_t most = 0;

      if (!k
          || clGetKernelWorkGroupInfo (k, ctx->info->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most,
                                       &most, NULL)
                 != CL_SUCCESS
          || most < kernels[i].group)
        {
          g_debug ("%s: the implicit-GEMM kernel %s takes at most %zu work-items a group; "
                   "convolutions keep im2col",
                   ctx->info->name, kernels[i].name, most);
          return FALSE;
        }
    }
  return TRUE;
}

/* kernels/igemm.cl is compiled only for devices that can run it: its 18.5 KiB of local arrays
 * would fail the whole program's build on a device with 16 KiB. */
static const char *
build_options (const KiltDeviceInfo *info)
{
  static const char *const options[2][2] = {
    { BUILD_OPTIONS, BUILD_OPTIONS " -DKILT_GEMM_WIDE" },
    { BUILD_OPTIONS " -DKILT_IGEMM", BUILD_OPTIONS " -DKILT_IGEMM -DKILT_GEMM_WIDE" },
  };

  return options[kilt_device_runs_igemm (info) != 0][kilt_gemm_wide (info) != 0];
}

/* ---- fault injection ---------------------------------------------------------------------- */

static gint fault_countdown[KILT_FAULT_N];
static gsize fault_env_read;
static const char *fault_names[KILT_FAULT_N]
    = { "alloc", "enqueue", "build", "segv", "abort", "hang", "oom" };
/* A step fault whose step came: the kind, fired by the next backward-pass launch; 0: none. */
static gint fault_armed;

static void (*fault_notify) (void);

static void
parse_faults (const char *text)
{
  g_auto (GStrv) parts = text ? g_strsplit (text, ",", -1) : NULL;

  for (guint i = 0; parts && parts[i]; i++)
    for (int k = 0; k < KILT_FAULT_N; k++)
      {
        gsize len = strlen (fault_names[k]);
        if (strncmp (parts[i], fault_names[k], len) == 0 && parts[i][len] == ':')
          g_atomic_int_set (&fault_countdown[k], atoi (parts[i] + len + 1));
      }
}

static void
fault_read_env (void)
{
  if (g_once_init_enter (&fault_env_read))
    {
      parse_faults (g_getenv ("KILT_FAULT"));
      g_once_init_leave (&fault_env_read, 1);
    }
}

void
kilt_fault_set (KiltFaultKind kind, guint nth)
{
  fault_read_env ();
  g_atomic_int_set (&fault_countdown[kind], (gint)nth);
  if (nth > 0 && fault_notify)
    fault_notify ();
}

void
kilt_fault_apply (const char *text)
{
  fault_read_env ();
  parse_faults (text);
}

void
kilt_fault_set_notify (void (*func) (void))
{
  fault_notify = func;
}

gboolean
kilt_fault_hit (KiltFaultKind kind)
{
  gint old;

  fault_read_env ();
  do
    {
      old = g_atomic_int_get (&fault_countdown[kind]);
      if (old <= 0)
        return FALSE;
    }
  while (!g_atomic_int_compare_and_exchange (&fault_countdown[kind], old, old - 1));
  return old == 1;
}

void
kilt_fault_step (void)
{
  for (int k = KILT_FAULT_SEGV; k <= KILT_FAULT_HANG; k++)
    if (kilt_fault_hit (k))
      g_atomic_int_set (&fault_armed, k);
}

char *
kilt_fault_take (void)
{
  GString *s = g_string_new (NULL);

  fault_read_env ();
  for (int k = 0; k < KILT_FAULT_N; k++)
    {
      gint n = g_atomic_int_and (&fault_countdown[k], 0);
      if (n > 0)
        g_string_append_printf (s, "%s%s:%d", s->len ? "," : "", fault_names[k], n);
    }
  return g_string_free (s, s->len == 0);
}

/* A driver that faults, aborts or never returns, for the worker's crash and hang tests. */
static void
fault_fire (gint kind)
{
  g_atomic_int_set (&fault_armed, 0);
  if (kind == KILT_FAULT_SEGV)
    {
      /* A real fault, not raise (): the compiler libraries of some drivers (LLVM in PoCL)
       * catch SIGSEGV and return, which only a faulting access survives into the next
       * handler. */
      volatile int *page = mmap (NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (page != MAP_FAILED)
        *page = 1;
      raise (SIGSEGV);
    }
  else if (kind == KILT_FAULT_ABORT)
    abort ();
  else
    for (;;)
      g_usleep (G_USEC_PER_SEC);
}

/* ---- program build and binary cache ------------------------------------------------------- */

char *
kilt_kernel_cache_dir (void)
{
  const char *env = g_getenv ("KILT_CACHE_DIR");

  if (env && *env)
    return g_build_filename (env, "kernels", NULL);
  return g_build_filename (g_get_user_cache_dir (), "kilt", "kernels", NULL);
}

static char *
full_source (void)
{
  GString *s = g_string_new (NULL);

  for (const KiltKernelSource *k = kilt_kernel_sources; k->name; k++)
    {
      g_string_append_printf (s, "/* ---- %s ---- */\n", k->name);
      g_string_append (s, k->source);
    }
  return g_string_free (s, FALSE);
}

static char *
cache_key (const KiltDeviceInfo *info, const char *source)
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  char *key;

  g_checksum_update (sum, (const guchar *)info->name, -1);
  g_checksum_update (sum, (const guchar *)info->vendor, -1);
  g_checksum_update (sum, (const guchar *)info->driver_version, -1);
  g_checksum_update (sum, (const guchar *)info->platform_version, -1);
  g_checksum_update (sum, (const guchar *)build_options (info), -1);
  g_checksum_update (sum, (const guchar *)source, -1);
  key = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  return key;
}

static char *
build_log (KiltContext *ctx)
{
  size_t n = 0;
  char *log;

  clGetProgramBuildInfo (ctx->program, ctx->info->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
  log = g_malloc0 (n + 1);
  clGetProgramBuildInfo (ctx->program, ctx->info->device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
  return log;
}

static gboolean
try_cached (KiltContext *ctx, const char *path)
{
  g_autofree char *bin = NULL;
  gsize len = 0;
  cl_int err = CL_SUCCESS, status = CL_SUCCESS;
  const unsigned char *ptr;

  if (!g_file_get_contents (path, &bin, &len, NULL) || len == 0)
    return FALSE;
  ptr = (const unsigned char *)bin;
  ctx->program
      = clCreateProgramWithBinary (ctx->context, 1, &ctx->info->device, &len, &ptr, &status, &err);
  if (err == CL_SUCCESS && status == CL_SUCCESS)
    err = clBuildProgram (ctx->program, 1, &ctx->info->device, build_options (ctx->info), NULL,
                          NULL);
  if (err != CL_SUCCESS || status != CL_SUCCESS)
    {
      /* A stale or foreign binary: fall back to building from source. */
      g_debug ("cached binary %s unusable (%d/%d); rebuilding", path, err, status);
      if (ctx->program)
        clReleaseProgram (ctx->program);
      ctx->program = NULL;
      g_unlink (path);
      return FALSE;
    }
  return TRUE;
}

static void
save_binary (KiltContext *ctx, const char *dir, const char *path)
{
  size_t size = 0;
  unsigned char *bin;

  if (clGetProgramInfo (ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL)
          != CL_SUCCESS
      || size == 0)
    return;
  bin = g_malloc (size);
  if (clGetProgramInfo (ctx->program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS
      && g_mkdir_with_parents (dir, 0700) == 0)
    g_file_set_contents (path, (const char *)bin, size, NULL);
  g_free (bin);
}

static gboolean
build_program (KiltContext *ctx, GError **error)
{
  g_autofree char *source = full_source ();
  g_autofree char *key = cache_key (ctx->info, source);
  g_autofree char *dir = kilt_kernel_cache_dir ();
  g_autofree char *path = g_build_filename (dir, key, NULL);
  gint64 t0 = g_get_monotonic_time ();
  const char *src = source;
  cl_int err;

  if (kilt_fault_hit (KILT_FAULT_BUILD))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT,
                   "building the kernels failed on %s: injected fault (KILT_FAULT)",
                   ctx->info->name);
      return FALSE;
    }
  if (try_cached (ctx, path))
    {
      ctx->from_cache = TRUE;
      ctx->compile_seconds = (g_get_monotonic_time () - t0) / 1e6;
      return TRUE;
    }
  ctx->program = clCreateProgramWithSource (ctx->context, 1, &src, NULL, &err);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ctx->info->name, "creating the kernel program");
      return FALSE;
    }
  err = clBuildProgram (ctx->program, 1, &ctx->info->device, build_options (ctx->info), NULL, NULL);
  if (err != CL_SUCCESS)
    {
      g_autofree char *log = build_log (ctx);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_BUILD,
                   "building the kernels failed on %s (%s). Build log:\n%s", ctx->info->name,
                   kilt_cl_error_name (err), log);
      return FALSE;
    }
  ctx->compile_seconds = (g_get_monotonic_time () - t0) / 1e6;
  save_binary (ctx, dir, path);
  return TRUE;
}

/* ---- context ------------------------------------------------------------------------------ */

static void
release_kernel (gpointer kernel)
{
  clReleaseKernel (kernel);
}

guint64
kilt_context_budget_for (const KiltDeviceInfo *device)
{
  const char *budget_env = g_getenv ("KILT_MEMORY_BUDGET_MB");
  guint64 budget = device->global_mem - device->global_mem / 20;

  if (budget_env && atoll (budget_env) > 0)
    budget = MIN (budget, (guint64)atoll (budget_env) << 20);
  return budget;
}

KiltContext *
kilt_context_new (const KiltDeviceInfo *device, GError **error)
{
  KiltContext *ctx = g_new0 (KiltContext, 1);
  cl_context_properties props[]
      = { CL_CONTEXT_PLATFORM, (cl_context_properties)device->platform, 0 };
  cl_int err = CL_SUCCESS;
  g_autoptr (GError) tuning_error = NULL;

  ctx->info = kilt_device_info_copy (device);
  ctx->gemm_wide = kilt_gemm_wide (ctx->info);
  ctx->kernels = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, release_kernel);
  ctx->prof_events = g_array_new (FALSE, FALSE, sizeof (KiltProfEvent));
  ctx->budget = kilt_context_budget_for (device);

  ctx->context = clCreateContext (props, 1, &device->device, NULL, NULL, &err);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, device->name, "opening the device");
      kilt_context_free (ctx);
      return NULL;
    }
  ctx->queue = clCreateCommandQueue (ctx->context, device->device, CL_QUEUE_PROFILING_ENABLE, &err);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, device->name, "creating a command queue");
      kilt_context_free (ctx);
      return NULL;
    }
  if (!build_program (ctx, error))
    {
      kilt_context_free (ctx);
      return NULL;
    }
  ctx->igemm = igemm_kernels_run (ctx);
  /* Parameters `kilt-cli tune` found for this device; a broken file is not worth failing the
   * run for, but a person should hear of it. */
  if (!kilt_tuning_apply_saved (device, &tuning_error))
    g_warning ("%s; CLBlast keeps its built-in parameters", tuning_error->message);
  return ctx;
}

static void
prof_clear (KiltContext *ctx)
{
  for (guint i = 0; i < ctx->prof_events->len; i++)
    {
      KiltProfEvent *pe = &g_array_index (ctx->prof_events, KiltProfEvent, i);
      clReleaseEvent (pe->event);
      if (pe->begin)
        clReleaseEvent (pe->begin);
    }
  g_array_set_size (ctx->prof_events, 0);
}

void
kilt_context_free (KiltContext *ctx)
{
  if (ctx == NULL)
    return;
  if (ctx->queue)
    clFinish (ctx->queue);
  prof_clear (ctx);
  kilt_context_free_tf32 (ctx);
  g_clear_pointer (&ctx->gemm_parts, kilt_buffer_free);
  g_array_unref (ctx->prof_events);
  g_hash_table_unref (ctx->kernels);
  if (ctx->program)
    clReleaseProgram (ctx->program);
  if (ctx->queue)
    clReleaseCommandQueue (ctx->queue);
  if (ctx->context)
    clReleaseContext (ctx->context);
  if (ctx->mem.live_total != 0)
    g_warning ("%" G_GINT64_FORMAT " bytes of device memory still allocated at context close",
               ctx->mem.live_total);
  kilt_device_info_free (ctx->info);
  g_free (ctx);
}

cl_kernel
kilt_context_kernel (KiltContext *ctx, const char *name, GError **error)
{
  cl_kernel k = g_hash_table_lookup (ctx->kernels, name);
  cl_int err = CL_SUCCESS;

  if (k)
    return k;
  k = clCreateKernel (ctx->program, name, &err);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ctx->info->name, "creating kernel %s", name);
      return NULL;
    }
  g_hash_table_insert (ctx->kernels, g_strdup (name), k);
  return k;
}

cl_event *
kilt_context_prof_slot (KiltContext *ctx)
{
  KiltProfEvent pe = { NULL, ctx->prof_tag, NULL };

  if (!ctx->profiling)
    return NULL;
  g_array_append_val (ctx->prof_events, pe);
  return &g_array_index (ctx->prof_events, KiltProfEvent, ctx->prof_events->len - 1).event;
}

cl_event *
kilt_context_prof_span (KiltContext *ctx)
{
  KiltProfEvent pe = { NULL, ctx->prof_tag, NULL };

  if (!ctx->profiling)
    return NULL;
  /* Without the marker the span is the last kernel's alone: a profile that undercounts. */
  if (clEnqueueMarkerWithWaitList (ctx->queue, 0, NULL, &pe.begin) != CL_SUCCESS)
    pe.begin = NULL;
  g_array_append_val (ctx->prof_events, pe);
  return &g_array_index (ctx->prof_events, KiltProfEvent, ctx->prof_events->len - 1).event;
}

void
kilt_context_prof_drop_last (KiltContext *ctx)
{
  KiltProfEvent *pe;

  g_return_if_fail (ctx->prof_events->len > 0);
  pe = &g_array_index (ctx->prof_events, KiltProfEvent, ctx->prof_events->len - 1);
  if (pe->begin)
    clReleaseEvent (pe->begin);
  g_array_set_size (ctx->prof_events, ctx->prof_events->len - 1);
}

gboolean
kilt_context_launch (KiltContext *ctx, cl_kernel kernel, guint dims, const size_t *global,
                     const size_t *local, GError **error)
{
  size_t g[3];
  cl_int err;
  cl_event *ev;

  g_return_val_if_fail (dims >= 1 && dims <= 3, FALSE);
  if (G_UNLIKELY (g_atomic_int_get (&fault_armed)) && kilt_breadcrumb_in_backward ())
    fault_fire (g_atomic_int_get (&fault_armed));
  if (kilt_fault_hit (KILT_FAULT_ENQUEUE))
    {
      char name[128] = "";
      clGetKernelInfo (kernel, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT,
                   "launching kernel %s failed on %s: injected fault (KILT_FAULT)", name,
                   ctx->info->name);
      return FALSE;
    }
  if (kilt_fault_hit (KILT_FAULT_OOM))
    {
      char name[128] = "";
      clGetKernelInfo (kernel, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
      kilt_set_cl_error (error, CL_OUT_OF_RESOURCES, ctx->info->name,
                         "launching kernel %s (injected: KILT_FAULT oom)", name);
      return FALSE;
    }
  for (guint i = 0; i < dims; i++)
    {
      g[i] = global[i];
      if (local && local[i] > 0)
        g[i] = (g[i] + local[i] - 1) / local[i] * local[i];
      if (g[i] == 0)
        return TRUE;
    }
  ev = kilt_context_prof_slot (ctx);
  err = clEnqueueNDRangeKernel (ctx->queue, kernel, dims, NULL, g, local, 0, NULL, ev);
  if (err != CL_SUCCESS)
    {
      char name[128] = "";
      if (ev)
        kilt_context_prof_drop_last (ctx);
      clGetKernelInfo (kernel, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
      kilt_set_cl_error (error, err, ctx->info->name, "launching kernel %s", name);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_context_launch_1d (KiltContext *ctx, cl_kernel kernel, size_t n, GError **error)
{
  size_t local = MIN ((size_t)256, ctx->info->max_work_group);

  return kilt_context_launch (ctx, kernel, 1, &n, &local, error);
}

gboolean
kilt_context_finish (KiltContext *ctx, GError **error)
{
  cl_int err = clFinish (ctx->queue);

  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ctx->info->name, "waiting for the device");
      return FALSE;
    }
  return TRUE;
}
