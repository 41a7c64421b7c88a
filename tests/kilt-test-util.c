/* Shared by the test programs: one device context per process, random data, skips. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-breadcrumb.h"
#include "kilt-checkpoint.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <unistd.h>

static KiltContext *test_ctx;

KiltContext *
kilt_test_context (void)
{
  g_autoptr (KiltDeviceList) list = NULL;
  g_autoptr (GError) error = NULL;
  const KiltDeviceInfo *d;

  if (test_ctx)
    return test_ctx;
  list = kilt_device_list_new ();
  d = kilt_device_list_choose_default (list, &error);
  if (d == NULL)
    {
      g_test_skip_printf ("no OpenCL device: %s", error->message);
      return NULL;
    }
  test_ctx = kilt_context_new (d, &error);
  g_assert_no_error (error);
  /* On a GPU machine without a debugger, KILT_BACKTRACE=1 makes a crash print its stack. */
  if (g_getenv ("KILT_BACKTRACE"))
    kilt_breadcrumb_install_handlers_as (STDERR_FILENO, "test: ");
  return test_ctx;
}

void
kilt_test_context_close (void)
{
  kilt_context_free (test_ctx);
  test_ctx = NULL;
}

char *
kilt_test_shared_file (const char *relative)
{
  const char *shared = g_getenv ("KILT_SHARED_DIR");
  char *path;

  if (shared == NULL)
    shared = "../shared";
  path = g_build_filename (shared, relative, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_test_skip_printf ("%s is absent; this test needs it", path);
      g_free (path);
      return NULL;
    }
  return path;
}

void
kilt_test_remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir)
    {
      while ((name = g_dir_read_name (dir)))
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          if (g_file_test (child, G_FILE_TEST_IS_DIR)
              && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
            kilt_test_remove_tree (child);
          else
            g_unlink (child);
        }
      g_dir_close (dir);
    }
  g_rmdir (path);
}

static GPtrArray *tmpdirs;

static void
cleanup_tmpdirs (void)
{
  for (guint i = 0; tmpdirs && i < tmpdirs->len; i++)
    kilt_test_remove_tree (g_ptr_array_index (tmpdirs, i));
}

char *
kilt_test_tmpdir (void)
{
  char *dir = g_dir_make_tmp ("kilt-test-XXXXXX", NULL);

  g_assert_nonnull (dir);
  if (tmpdirs == NULL)
    {
      tmpdirs = g_ptr_array_new_with_free_func (g_free);
      atexit (cleanup_tmpdirs);
    }
  g_ptr_array_add (tmpdirs, g_strdup (dir));
  return dir;
}

guint
kilt_test_checkpoint_epochs (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltCheckpoint) ck = kilt_checkpoint_load (path, &error);

  g_assert_no_error (error);
  return ck->epochs_done;
}
