/* kilt-cli: the headless front end to the Kilt engine (argument parsing only). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-device.h"
#include "kilt-error.h"
#include "kilt-gemm.h"

#include <stdio.h>
#include <string.h>

static int
cmd_devices (int argc, char **argv)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autofree char *report = kilt_device_list_report (list);

  fputs (report, stdout);
  return list->devices->len > 0 ? 0 : 1;
}

static void
print_version (void)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();

  printf ("kilt-cli %s\nCLBlast %s\n", KILT_VERSION, kilt_clblast_version ());
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      if (i == 0 || g_strcmp0 (d->platform_name,
                               ((KiltDeviceInfo *) g_ptr_array_index (list->devices, i - 1))
                                   ->platform_name)
                        != 0)
        printf ("OpenCL platform: %s (%s)\n", d->platform_name, d->platform_version);
    }
  for (guint i = 0; i < list->problems->len; i++)
    printf ("OpenCL: %s\n", (const char *) g_ptr_array_index (list->problems, i));
}

int
main (int argc, char **argv)
{
  if (argc >= 2 && (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0))
    {
      print_version ();
      return 0;
    }
  if (argc >= 2 && strcmp (argv[1], "devices") == 0)
    return cmd_devices (argc - 1, argv + 1);
  fprintf (stderr, "usage: kilt-cli devices | --version\n");
  return 2;
}
