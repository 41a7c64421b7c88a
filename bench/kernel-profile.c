/* A preload that times every OpenCL kernel launch on its own, by name: each
 * clEnqueueNDRangeKernel is bracketed by clFinish, so what PoCL would overlap runs one launch at
 * a time (a step takes longer; the shares still show where the work is, though a launch's
 * fixed cost weighs more than in the overlapped step: bench/NOTES.md section 19). At exit it
 * prints one line per kernel to stderr: seconds, share and launches.
 *   gcc -O2 -shared -fPIC -o /tmp/kernel-profile.so bench/kernel-profile.c -ldl -lOpenCL
 *   LD_PRELOAD=/tmp/kernel-profile.so build-rel/app/kilt-cli bench --steps 30 --no-check
 * KPROF_DIMS=1 keys the lines by name and global size, which tells one layer's launches from
 * another's. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef cl_int (*EnqueueFn) (cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *,
                             const size_t *, cl_uint, const cl_event *, cl_event *);

typedef struct
{
  char name[80];
  double seconds;
  long launches;
} Entry;

static Entry entries[256];
static int n_entries;

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
by_time (const void *a, const void *b)
{
  double d = ((const Entry *)b)->seconds - ((const Entry *)a)->seconds;

  return (d > 0) - (d < 0);
}

static void
report (void)
{
  double total = 0;

  for (int i = 0; i < n_entries; i++)
    total += entries[i].seconds;
  qsort (entries, n_entries, sizeof entries[0], by_time);
  for (int i = 0; i < n_entries; i++)
    fprintf (stderr, "KPROF %-44s %8.3f s %5.1f%% %7ld launches\n", entries[i].name,
             entries[i].seconds, total > 0 ? 100 * entries[i].seconds / total : 0,
             entries[i].launches);
}

cl_int
clEnqueueNDRangeKernel (cl_command_queue queue, cl_kernel kernel, cl_uint dims,
                        const size_t *offset, const size_t *global, const size_t *local,
                        cl_uint n_wait, const cl_event *wait, cl_event *event)
{
  static EnqueueFn real;
  char name[64] = "", key[80];
  double t0;
  cl_int err;
  int i;

  if (!real)
    {
      real = (EnqueueFn)dlsym (RTLD_NEXT, "clEnqueueNDRangeKernel");
      atexit (report);
    }
  clGetKernelInfo (kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
  if (getenv ("KPROF_DIMS"))
    snprintf (key, sizeof key, "%s %zux%zux%zu", name, global[0], dims > 1 ? global[1] : 1,
              dims > 2 ? global[2] : 1);
  else
    snprintf (key, sizeof key, "%s", name);
  clFinish (queue);
  t0 = now ();
  err = real (queue, kernel, dims, offset, global, local, n_wait, wait, event);
  clFinish (queue);
  for (i = 0; i < n_entries && strcmp (entries[i].name, key) != 0; i++)
    ;
  if (i == n_entries && n_entries < (int)(sizeof entries / sizeof entries[0]))
    snprintf (entries[n_entries++].name, sizeof entries[0].name, "%s", key);
  if (i < n_entries)
    {
      entries[i].seconds += now () - t0;
      entries[i].launches++;
    }
  return err;
}
