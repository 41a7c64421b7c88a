/* kilt-cli: the headless front end to the Kilt engine (argument parsing only). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-cli-runs.h"
#include "kilt-device.h"
#include "kilt-doctor.h"
#include "kilt-error.h"
#include "kilt-gemm.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void
doctor_progress (double fraction, const char *what, gpointer user_data)
{
  if (isatty (fileno (stderr)))
    fprintf (stderr, "\r\033[K  testing: %3.0f%% %s", fraction * 100, what);
}

static int
cmd_devices (int argc, char **argv)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autofree char *report = kilt_device_list_report (list);
  g_autofree char *saved = kilt_device_get_saved_default ();
  gboolean test = FALSE;
  int status = 0;

  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "--test") == 0)
      test = TRUE;
  fputs (report, stdout);
  if (saved)
    printf ("default: %s%s\n", saved,
            g_getenv ("KILT_DEVICE") ? " (KILT_DEVICE overrides it)" : "");
  if (list->devices->len == 0)
    return 1;
  if (!test)
    return 0;
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      g_autoptr (KiltDoctorReport) r = kilt_doctor_run (d, doctor_progress, NULL, NULL);
      g_autofree char *text = kilt_doctor_report_text (r);
      if (isatty (fileno (stderr)))
        fprintf (stderr, "\r\033[K");
      printf ("\n%s", text);
      if (!r->usable)
        status = 1;
    }
  return status;
}

static int
cmd_setup (int argc, char **argv)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autoptr (GError) error = NULL;
  const KiltDeviceInfo *choice = NULL;
  const char *given = NULL;
  char line[256];

  for (int i = 1; i + 1 < argc; i++)
    if (strcmp (argv[i], "--device") == 0)
      given = argv[i + 1];
  for (guint i = 0; i < list->problems->len; i++)
    printf ("! %s\n", (const char *)g_ptr_array_index (list->problems, i));
  if (list->devices->len == 0)
    {
      fprintf (stderr, "kilt-cli: no OpenCL device to choose. Install your GPU vendor's OpenCL "
                       "driver, or pocl-opencl-icd for the CPU, and check with clinfo.\n");
      return 1;
    }
  printf ("OpenCL devices:\n");
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      g_autofree char *mem = kilt_format_bytes (d->global_mem);
      printf ("  [%u] %s (%s, %s, %s)%s%s\n", i, d->name, d->platform_name, d->type, mem,
              d->unusable_reason ? " - may not work: " : "",
              d->unusable_reason ? d->unusable_reason : "");
    }
  if (given == NULL)
    {
      const KiltDeviceInfo *def = kilt_device_list_choose_default (list, NULL);
      guint def_index = 0;
      for (guint i = 0; def && i < list->devices->len; i++)
        if (g_ptr_array_index (list->devices, i) == def)
          def_index = i;
      printf ("Default device [%u]: ", def_index);
      fflush (stdout);
      if (fgets (line, sizeof line, stdin) == NULL)
        {
          fprintf (stderr, "\nkilt-cli: no answer; nothing changed (use --device ID)\n");
          return 1;
        }
      g_strstrip (line);
      given = *line ? line : NULL;
      if (given == NULL)
        choice = def;
    }
  if (given)
    choice = kilt_device_list_find (list, given);
  if (choice == NULL)
    {
      fprintf (stderr, "kilt-cli: \"%s\" matches no device (or several)\n", given ? given : "");
      return 1;
    }
  if (!kilt_device_save_default (choice->id, &error))
    {
      fprintf (stderr, "kilt-cli: %s\n", error->message);
      return 1;
    }
  printf ("Default device: %s (%s). The window and kilt-cli both use it; KILT_DEVICE overrides "
          "it.\n",
          choice->name, choice->id);
  return 0;
}

static void
print_version (void)
{
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();

  printf ("kilt-cli %s\nCLBlast %s\n", KILT_VERSION, kilt_clblast_version ());
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      if (i == 0
          || g_strcmp0 (d->platform_name,
                        ((KiltDeviceInfo *)g_ptr_array_index (list->devices, i - 1))->platform_name)
                 != 0)
        printf ("OpenCL platform: %s (%s)\n", d->platform_name, d->platform_version);
    }
  for (guint i = 0; i < list->problems->len; i++)
    printf ("OpenCL: %s\n", (const char *)g_ptr_array_index (list->problems, i));
}

static void
usage (FILE *out)
{
  fprintf (out, "usage: kilt-cli COMMAND [options]\n"
                "\n"
                "  train      train a model (no options: lenet5 on the bundled sample data)\n"
                "  eval       evaluate a checkpoint on a data set's test split\n"
                "  predict    a model's top classes for images or CSV rows\n"
                "  export     a model's weights as a Keras 3 .weights.h5\n"
                "  summary    print a model's layer table (--list: the presets)\n"
                "  data info  describe a data set\n"
                "  devices    list OpenCL devices (--test: run the device doctor on each)\n"
                "  setup      choose the default device\n"
                "  bench      time training steps on one or more devices\n"
                "  compare    train one model on several devices in turn; speed-ups\n"
                "  runs       list, show, rename, tag, delete and resume runs\n"
                "  report     write a timing report for runs\n"
                "  tune       tune CLBlast's GEMM for a device; kept when a step gets faster\n"
                "  worker     train for a window: commands and events as JSON lines (stdin/out)\n"
                "  --version  Kilt, CLBlast and OpenCL platform versions\n"
                "\n"
                "kilt-cli COMMAND --help shows a command's options.\n");
}

int
main (int argc, char **argv)
{
  static const struct
  {
    const char *name;
    int (*run) (int argc, char **argv);
  } commands[] = {
    { "train", kilt_cli_train },     { "eval", kilt_cli_eval },     { "summary", kilt_cli_summary },
    { "data", kilt_cli_data },       { "devices", cmd_devices },    { "setup", cmd_setup },
    { "bench", kilt_cli_bench },     { "runs", kilt_cli_runs },     { "report", kilt_cli_report },
    { "compare", kilt_cli_compare }, { "tune", kilt_cli_tune },     { "worker", kilt_cli_worker },
    { "predict", kilt_cli_predict }, { "export", kilt_cli_export },
  };

  if (argc >= 2 && (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0))
    {
      print_version ();
      return 0;
    }
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0)
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "kilt-cli: unknown command \"%s\"\n\n", argv[1]);
  usage (stderr);
  return 2;
}
