/* kilt-cli tune: tunes CLBlast's GEMM kernels for a device with CLBlast's own tuners, keeps the
 * result only when a training step of a real model gets faster, and stores it per device. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-error.h"
#include "kilt-tuning.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

/* A new tuning is kept only when the step gets at least this much faster: run-to-run noise on
 * a GPU step is about 1%. */
#define TUNE_MIN_GAIN 0.02

/* The platform and device positions the CLBlast tuners take (-platform, -device). */
static gboolean
device_indices (const KiltDeviceInfo *dev, guint *platform, guint *device)
{
  cl_uint np = 0, nd = 0;
  g_autofree cl_platform_id *ps = NULL;
  g_autofree cl_device_id *ds = NULL;

  if (clGetPlatformIDs (0, NULL, &np) != CL_SUCCESS || np == 0)
    return FALSE;
  ps = g_new (cl_platform_id, np);
  clGetPlatformIDs (np, ps, NULL);
  for (*platform = 0; *platform < np && ps[*platform] != dev->platform; (*platform)++)
    ;
  if (*platform == np
      || clGetDeviceIDs (dev->platform, CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS)
    return FALSE;
  ds = g_new (cl_device_id, nd);
  clGetDeviceIDs (dev->platform, CL_DEVICE_TYPE_ALL, nd, ds, NULL);
  for (*device = 0; *device < nd && ds[*device] != dev->device; (*device)++)
    ;
  return *device < nd;
}

/* The "Found best result" line of each phase in a tuner's log, without its colours. */
static void
print_bests (const char *log_path)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (log_path, &text, NULL, NULL))
    return;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    if (strstr (lines[i], "Found best result"))
      {
        GString *clean = g_string_new (NULL);
        for (const char *c = lines[i]; *c; c++)
          if (*c == '\033')
            while (c[1] && *c != 'm')
              c++;
          else
            g_string_append_c (clean, *c);
        printf ("  %s\n", g_strstrip (clean->str));
        g_string_free (clean, TRUE);
      }
}

/* Runs @tuner in @dir for at most @minutes, with the problem size @size ("M,N,K") or, when
 * NULL, the tuner's own sizes. CLBlast's tuners write a result file after each of their phases,
 * so a run cut short still leaves the phases it finished. */
static gboolean
run_tuner (const char *tuner, const KiltDeviceInfo *dev, const char *dir, const char *size,
           double minutes, GError **error)
{
  g_auto (GStrv) dims = g_strsplit (size ? size : "-,-,-", ",", -1);
  g_autofree char *base = g_path_get_basename (tuner);
  g_autofree char *log_name = g_strconcat (base, ".log", NULL);
  g_autofree char *log_path = g_build_filename (dir, log_name, NULL);
  g_autofree char *p = NULL, *d = NULL;
  GPid pid;
  int status = 0, fd;
  guint pi, di;
  gint64 until = g_get_monotonic_time () + (gint64)(minutes * 60 * G_USEC_PER_SEC);
  gboolean cut = FALSE;

  if (size && g_strv_length (dims) != 3)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--size takes M,N,K (e.g. 1024,1024,1024), got \"%s\"", size);
      return FALSE;
    }
  if (!device_indices (dev, &pi, &di))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                   "cannot find %s among the OpenCL platforms for the tuner", dev->name);
      return FALSE;
    }
  p = g_strdup_printf ("%u", pi);
  d = g_strdup_printf ("%u", di);
  {
    const char *argv[] = { tuner,   "-platform",  p,       "-device",
                           d,       "-precision", "32",    size ? "-m" : NULL,
                           dims[0], "-n",         dims[1], "-k",
                           dims[2], NULL };
    fd = g_open (log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0
        || !g_spawn_async_with_fds (dir, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                                    &pid, -1, fd, fd, error))
      {
        if (fd >= 0)
          close (fd);
        else
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "%s: %s", log_path,
                       g_strerror (errno));
        return FALSE;
      }
    close (fd);
  }
  printf ("Running %s on %s for at most %.0f s (log: %s) ...\n", tuner, dev->name, minutes * 60,
          log_path);
  fflush (stdout);
  while (waitpid (pid, &status, WNOHANG) == 0)
    {
      if (g_get_monotonic_time () > until)
        {
          kill (pid, SIGTERM);
          waitpid (pid, &status, 0);
          cut = TRUE;
          break;
        }
      g_usleep (200 * 1000);
    }
  g_spawn_close_pid (pid);
  print_bests (log_path);
  if (cut)
    printf ("Stopped the tuner after %.0f s; keeping the phases it finished.\n", minutes * 60);
  else if (WIFSIGNALED (status))
    printf ("The tuner was killed by signal %d (%s); keeping the phases it finished.\n",
            WTERMSIG (status), g_strsignal (WTERMSIG (status)));
  else if (WEXITSTATUS (status) != 0)
    printf ("The tuner exited with status %d; keeping the phases it finished.\n",
            WEXITSTATUS (status));
  return TRUE;
}

/* The best result per CLBlast kernel among @files, into @t. */
static gboolean
collect (KiltTuning *t, const KiltDeviceInfo *dev, GPtrArray *files, GError **error)
{
  for (guint i = 0; i < files->len; i++)
    {
      const char *path = g_ptr_array_index (files, i);
      KiltTunedKernel *k = kilt_tuned_kernel_from_clblast (path, dev, error);
      guint j;

      if (k == NULL)
        return FALSE;
      for (j = 0; j < t->kernels->len; j++)
        {
          KiltTunedKernel *o = g_ptr_array_index (t->kernels, j);
          if (g_str_equal (o->kernel, k->kernel))
            break;
        }
      if (j == t->kernels->len)
        g_ptr_array_add (t->kernels, k);
      else if (k->best_ms > 0 && k->best_ms < ((KiltTunedKernel *)t->kernels->pdata[j])->best_ms)
        {
          kilt_tuned_kernel_free (t->kernels->pdata[j]);
          t->kernels->pdata[j] = k;
        }
      else
        kilt_tuned_kernel_free (k);
    }
  if (t->kernels->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "the tuner left no result files; its log says why");
      return FALSE;
    }
  return TRUE;
}

static GPtrArray *
result_files (const char *dir)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    if (g_str_has_prefix (name, "clblast_") && g_str_has_suffix (name, "_32.json"))
      g_ptr_array_add (files, g_build_filename (dir, name, NULL));
  g_ptr_array_sort (files, (GCompareFunc)g_strcmp0);
  return files;
}

/* Drops (and says so) any kernel whose parameters CLBlast refuses, so that one bad result file
 * does not sink the others. FALSE when none is left. */
static gboolean
check_each (const KiltDeviceInfo *dev, KiltTuning *t)
{
  for (guint i = 0; i < t->kernels->len;)
    {
      g_autoptr (KiltTuning) one = kilt_tuning_new (dev);
      g_autoptr (GError) error = NULL;

      g_ptr_array_set_free_func (one->kernels, NULL);
      g_ptr_array_add (one->kernels, g_ptr_array_index (t->kernels, i));
      if (kilt_tuning_apply (dev, one, &error))
        {
          i++;
          continue;
        }
      printf ("Left out: %s\n", error->message);
      g_ptr_array_remove_index (t->kernels, i);
    }
  if (t->kernels->len == 0)
    fprintf (stderr, "kilt-cli tune: CLBlast accepted none of the tuned parameters\n");
  return t->kernels->len > 0;
}

static void
show (const KiltDeviceInfo *dev)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = kilt_tuning_path (dev);
  g_autoptr (KiltTuning) t = kilt_tuning_load (dev, &error);

  if (t == NULL)
    {
      printf ("%s: %s\n", dev->name,
              error ? error->message : "no tuning; CLBlast uses its built-in parameters");
      return;
    }
  printf ("%s (driver %s): %s\n", dev->name, dev->driver_version, path);
  if (t->note)
    printf ("  measured: %s\n", t->note);
  if (t->source)
    printf ("  from:     %s\n", t->source);
  for (guint i = 0; i < t->kernels->len; i++)
    {
      g_autofree char *line = kilt_tuned_kernel_describe (g_ptr_array_index (t->kernels, i));
      printf ("  %s\n", line);
    }
}

int
kilt_cli_tune (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("- tune CLBlast's GEMM for a device");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autoptr (KiltTuning) t = NULL;
  g_autoptr (GPtrArray) files = NULL;
  g_autofree char *tmp = NULL;
  g_auto (GStrv) imports = NULL;
  char *tuner_dir = NULL, *size = NULL;
  double minutes = 6, before = 0, after = 0;
  int steps = 100, rc = 1;
  gboolean do_show = FALSE, forget = FALSE;
  const KiltDeviceInfo *dev;
  GOptionEntry extra[] = {
    { "import", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &imports,
      "Use these CLBlast tuner result files instead of running the tuner", "FILE" },
    { "tuner-dir", 0, 0, G_OPTION_ARG_FILENAME, &tuner_dir,
      "Where CLBlast's tuners are (default: the PATH)", "DIR" },
    { "size", 0, 0, G_OPTION_ARG_STRING, &size,
      "The tuner's problem size M,N,K (default 1024,1024,1024)", "M,N,K" },
    { "minutes", 0, 0, G_OPTION_ARG_DOUBLE, &minutes,
      "Time for the three tuners together; each stops at its share, keeping the phases it "
      "finished (default 6)",
      "MIN" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps,
      "Training steps timed before and after (default 100)", "N" },
    { "show", 0, 0, G_OPTION_ARG_NONE, &do_show, "Show the device's saved tuning", NULL },
    { "forget", 0, 0, G_OPTION_ARG_NONE, &forget,
      "Remove the device's saved tuning (CLBlast's built-in parameters again)", NULL },
    { NULL },
  };

  kilt_cli_common_init (&c);
  g_free (c.model);
  c.model = g_strdup ("cifar10_cnn");
  g_free (c.optimizer);
  c.optimizer = g_strdup ("rmsprop");
  c.batch = 128;
  /* Timed on the model's own input shape unless --data is given, as bench does. */
  g_clear_pointer (&c.data, g_free);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (
      oc, "Runs CLBlast's GEMM tuners (Debian: clblast-utils) on the device, times a training "
          "step of --model at --batch (default cifar10_cnn at 128) before and after, and keeps "
          "the new parameters for the device only when the step got faster. Every later run "
          "on the device uses them.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error) || steps < 1 || minutes <= 0)
    {
      fprintf (stderr, "kilt-cli tune: %s\n",
               error ? error->message : "--steps and --minutes must be positive");
      rc = 2;
      goto out;
    }
  dev = c.device ? kilt_device_list_find (list, c.device)
                 : kilt_device_list_choose_default (list, &error);
  if (dev == NULL)
    {
      fprintf (stderr, "kilt-cli tune: %s\n",
               error ? error->message : "no device matches --device");
      rc = 2;
      goto out;
    }
  if (do_show || forget)
    {
      if (forget && !kilt_tuning_forget (dev, &error))
        {
          fprintf (stderr, "kilt-cli tune: %s\n", error->message);
          goto out;
        }
      if (forget)
        printf ("%s: saved tuning removed; CLBlast uses its built-in parameters.\n", dev->name);
      else
        show (dev);
      rc = 0;
      goto out;
    }

  if (dev->type && g_str_equal (dev->type, "CPU") && g_strcmp0 (g_getenv ("KILT_GEMM"), "clblast"))
    {
      fprintf (stderr,
               "kilt-cli tune: on CPU devices such as %s Kilt runs its own GEMM kernels, "
               "not CLBlast's, so there is nothing to tune (KILT_GEMM=clblast makes Kilt "
               "use CLBlast there).\n",
               dev->name);
      goto out;
    }
  t = kilt_tuning_new (dev);
  if (imports)
    {
      files = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; imports[i]; i++)
        g_ptr_array_add (files, g_strdup (imports[i]));
      t->source = g_strjoinv (", ", imports);
    }
  else
    {
      /* The tiled kernel, the direct one (which CLBlast runs for all but the largest
       * products), then the switch between them, which reads the first two's results from
       * the folder they share. */
      static const char *const tuners[]
          = { "clblast_tuner_xgemm_direct", "clblast_tuner_xgemm", "clblast_tuner_routine_xgemm" };
      g_autoptr (GString) ran = g_string_new (NULL);

      tmp = g_dir_make_tmp ("kilt-tune-XXXXXX", &error);
      if (tmp == NULL)
        {
          fprintf (stderr, "kilt-cli tune: %s\n", error->message);
          goto out;
        }
      for (guint i = 0; i < G_N_ELEMENTS (tuners); i++)
        {
          g_autofree char *path = NULL;
          if (tuner_dir)
            {
              path = g_build_filename (tuner_dir, tuners[i], NULL);
              if (!g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
                g_clear_pointer (&path, g_free);
            }
          else
            path = g_find_program_in_path (tuners[i]);
          if (path == NULL)
            {
              printf ("%s not found; skipped.\n", tuners[i]);
              continue;
            }
          if (!run_tuner (path, dev, tmp, i < 2 ? (size ? size : "1024,1024,1024") : NULL,
                          minutes / G_N_ELEMENTS (tuners), &error))
            {
              fprintf (stderr, "kilt-cli tune: %s\n", error->message);
              goto out;
            }
          g_string_append_printf (ran, "%s%s", ran->len ? ", " : "", tuners[i]);
        }
      if (ran->len == 0)
        {
          fprintf (stderr, "kilt-cli tune: CLBlast's tuners (clblast_tuner_xgemm_direct, "
                           "clblast_tuner_xgemm, clblast_tuner_routine_xgemm) are not on the "
                           "PATH. Install them (Debian: apt-get install clblast-utils), pass "
                           "--tuner-dir DIR, or --import their result files.\n");
          goto out;
        }
      files = result_files (tmp);
      t->source = g_strdup_printf ("%s, M,N,K %s", ran->str, size ? size : "1024,1024,1024");
    }
  if (!collect (t, dev, files, &error))
    {
      fprintf (stderr, "kilt-cli tune: %s\n", error->message);
      goto out;
    }
  for (guint i = 0; i < t->kernels->len; i++)
    {
      KiltTunedKernel *k = g_ptr_array_index (t->kernels, i);
      g_autofree char *line = kilt_tuned_kernel_describe (k);
      printf ("Tuner's best: %s (%.3f ms on its problem)\n", line, k->best_ms);
    }

  printf ("Timing %s at batch %d on %s, %d steps, with the parameters in use now ...\n", c.model,
          c.batch, dev->name, steps);
  fflush (stdout);
  if (!kilt_cli_bench_step (dev, &c, steps, &before, &error))
    {
      fprintf (stderr, "kilt-cli tune: %s\n", error->message);
      goto out;
    }
  if (!check_each (dev, t))
    goto out;
  if (!kilt_tuning_apply (dev, t, &error) || !kilt_cli_bench_step (dev, &c, steps, &after, &error))
    {
      fprintf (stderr, "kilt-cli tune: with the tuned parameters: %s\n", error->message);
      goto out;
    }
  printf ("Step: %.3f ms before, %.3f ms with the tuned parameters (%+.1f%%)\n", before, after,
          100.0 * (after - before) / before);
  if (after < before * (1.0 - TUNE_MIN_GAIN))
    {
      g_autofree char *path = kilt_tuning_path (dev);
      t->note = g_strdup_printf ("%s batch %d: %.3f -> %.3f ms per step", c.model, c.batch, before,
                                 after);
      if (!kilt_tuning_save (dev, t, &error))
        {
          fprintf (stderr, "kilt-cli tune: %s\n", error->message);
          goto out;
        }
      printf ("Saved for %s: %s\n", dev->name, path);
    }
  else
    printf ("Not %.0f%% faster: nothing saved; the parameters in use stay.\n", 100 * TUNE_MIN_GAIN);
  rc = 0;

out:
  if (tmp && rc == 0)
    {
      g_autoptr (GDir) d = g_dir_open (tmp, 0, NULL);
      const char *name;
      while (d && (name = g_dir_read_name (d)))
        {
          g_autofree char *f = g_build_filename (tmp, name, NULL);
          g_unlink (f);
        }
      g_rmdir (tmp);
    }
  else if (tmp)
    fprintf (stderr, "kilt-cli tune: the tuners' logs and results are kept in %s\n", tmp);
  g_free (tuner_dir);
  g_free (size);
  kilt_cli_common_clear (&c);
  return rc;
}
