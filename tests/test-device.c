/* Device enumeration, default choice, kernel build and binary cache, memory accounting. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-error.h"

#include <glib/gstdio.h>
#include <string.h>

static void
test_enumerate (void)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autofree char *report = kilt_device_list_report (list);

  if (list->devices->len == 0)
    {
      g_test_skip ("no OpenCL device");
      return;
    }
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      g_assert_cmpstr (d->name, !=, "");
      g_assert_cmpuint (d->global_mem, >, 0);
      g_assert_cmpuint (d->max_alloc, <=, d->global_mem);
      g_assert_true (strchr (d->id, ' ') == NULL);
      /* Ids find their device again, by id and by index. */
      g_assert_true (kilt_device_list_find (list, d->id) == d);
    }
  g_assert_nonnull (strstr (report, "global"));
}

static void
test_default_and_env (void)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autoptr (GError) error = NULL;
  const KiltDeviceInfo *d;

  if (list->devices->len == 0)
    {
      g_test_skip ("no OpenCL device");
      return;
    }
  d = kilt_device_list_choose_default (list, &error);
  g_assert_no_error (error);
  g_assert_true (kilt_device_save_default (d->id, &error));
  g_assert_no_error (error);
  {
    g_autofree char *saved = kilt_device_get_saved_default ();
    g_assert_cmpstr (saved, ==, d->id);
  }
  g_setenv ("KILT_DEVICE", "no-such-device-anywhere", TRUE);
  g_assert_null (kilt_device_list_choose_default (list, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE);
  g_assert_nonnull (strstr (error->message, "no-such-device-anywhere"));
  g_unsetenv ("KILT_DEVICE");
}

static void
test_cache_and_memory (void)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = kilt_test_tmpdir ();
  const KiltDeviceInfo *d;
  KiltContext *a, *b;
  KiltBuffer *buf;
  float in[5] = { 1, -2, 3.5f, 4, 5 }, out[5] = { 0 };

  if (list->devices->len == 0)
    {
      g_test_skip ("no OpenCL device");
      return;
    }
  g_setenv ("KILT_CACHE_DIR", tmp, TRUE);
  d = kilt_device_list_choose_default (list, &error);
  a = kilt_context_new (d, &error);
  g_assert_no_error (error);
  g_assert_false (a->from_cache);
  b = kilt_context_new (d, &error);
  g_assert_no_error (error);
  g_assert_true (b->from_cache);
  g_assert_nonnull (kilt_context_kernel (b, "kilt_fill", &error));
  g_assert_null (kilt_context_kernel (b, "kilt_no_such_kernel", &error));
  g_assert_nonnull (strstr (error->message, "kilt_no_such_kernel"));
  g_clear_error (&error);

  buf = kilt_buffer_new (b, KILT_MEM_ACTIVATIONS, sizeof in, &error, "test buffer");
  g_assert_no_error (error);
  g_assert_cmpint (b->mem.live[KILT_MEM_ACTIVATIONS], ==, sizeof in);
  g_assert_true (kilt_buffer_write (buf, 0, in, sizeof in, &error));
  g_assert_true (kilt_buffer_read (buf, 0, out, sizeof out, &error));
  g_assert_cmpmem (in, sizeof in, out, sizeof out);
  kilt_buffer_free (buf);
  g_assert_cmpint (b->mem.live[KILT_MEM_ACTIVATIONS], ==, 0);
  g_assert_cmpint (b->mem.peak[KILT_MEM_ACTIVATIONS], ==, sizeof in);

  /* Larger than the largest single allocation: a clear error, not a driver code. */
  buf = kilt_buffer_new (b, KILT_MEM_WORKSPACE, b->info->max_alloc + 1, &error, "layer big ws");
  g_assert_null (buf);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (error->message, "layer big ws"));
  g_clear_error (&error);

  /* Injected allocation failure. */
  kilt_fault_set (KILT_FAULT_ALLOC, 1);
  buf = kilt_buffer_new (b, KILT_MEM_WORKSPACE, 64, &error, "faulty");
  g_assert_null (buf);
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT);
  g_clear_error (&error);

  /* Injected build failure reaches the caller. */
  kilt_fault_set (KILT_FAULT_BUILD, 1);
  g_assert_null (kilt_context_new (d, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT);

  kilt_context_free (a);
  kilt_context_free (b);
  g_unsetenv ("KILT_CACHE_DIR");
}

static void
test_error_names (void)
{
  g_autoptr (GError) error = NULL;

  kilt_set_cl_error (&error, CL_MEM_OBJECT_ALLOCATION_FAILURE, "Dev", "allocation of %s", "1 GiB");
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (error->message, "CL_MEM_OBJECT_ALLOCATION_FAILURE"));
  g_assert_nonnull (strstr (error->message, "out of device memory"));
  g_assert_nonnull (strstr (error->message, "Dev"));
}

/* The implicit-GEMM kernels are built only for devices that can run them (a device with
 * 16 KiB of local memory would fail the whole program on their local arrays); where they are
 * built, the kernels are there. */
static void
test_igemm_devices (void)
{
  KiltContext *ctx = kilt_test_context ();
  KiltDeviceInfo d = { 0 };
  g_autoptr (GError) error = NULL;

  d.max_work_group = 1024;
  d.local_mem = 16 * 1024;
  g_assert_false (kilt_device_runs_igemm (&d));
  d.local_mem = 48 * 1024;
  g_assert_true (kilt_device_runs_igemm (&d));
  d.max_work_group = 128;
  g_assert_false (kilt_device_runs_igemm (&d));
  if (!ctx)
    return;
  if (kilt_device_runs_igemm (ctx->info))
    g_assert_nonnull (kilt_context_kernel (ctx, "kilt_conv_igemm_32", &error));
  else
    g_assert_null (kilt_context_kernel (ctx, "kilt_conv_igemm_32", &error));
  /* Usable only where built (and, on PoCL, whose groups go to 4096, built means usable). */
  if (!kilt_device_runs_igemm (ctx->info))
    g_assert_false (ctx->igemm);
  else if (g_str_has_prefix (ctx->info->platform_name, "Portable Computing Language"))
    g_assert_true (ctx->igemm);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/device/enumerate", test_enumerate);
  g_test_add_func ("/device/default", test_default_and_env);
  g_test_add_func ("/device/cache-and-memory", test_cache_and_memory);
  g_test_add_func ("/device/error-names", test_error_names);
  g_test_add_func ("/device/igemm-kernels", test_igemm_devices);
  return g_test_run ();
}
