/* A KiltCompare sequence run from the terminal: progress lines, Ctrl+C to stop (kilt-cli compare
 * and kilt-cli runs resume). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static KiltCompare *running;

static void
on_sigint (int sig)
{
  static int count;

  if (running && count++ == 0)
    {
      kilt_compare_stop (running);
      return;
    }
  signal (SIGINT, SIG_DFL);
  raise (SIGINT);
}

/* On the trainers' threads, one call at a time. */
void
kilt_cli_sequence_event (const KiltCompareEvent *ce, gpointer user_data)
{
  KiltCliSequence *v = user_data;
  const KiltEvent *ev = ce->event;

  if (ev == NULL)
    return;
  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        printf ("[%u/%u] %s (%s): kernels %s in %.2f s\n", ce->index + 1, ce->n_devices,
                ev->device_name, ce->device_id, ev->compile_cached ? "loaded" : "compiled",
                ev->compile_seconds);
        v->steps_per_epoch = ev->steps_per_epoch;
        break;
      case KILT_EVENT_STEP:
        if (v->tty)
          fprintf (stderr, "\r\033[K[%u/%u] epoch %u/%u step %u/%u  %.0f samples/s  loss %.4f",
                   ce->index + 1, ce->n_devices, ev->epoch, v->epochs, ev->step, v->steps_per_epoch,
                   ev->samples_per_second, ev->loss);
        break;
      case KILT_EVENT_EPOCH:
        if (v->tty)
          fprintf (stderr, "\r\033[K");
        printf ("[%u/%u] epoch %u/%u: %.2f s, loss %.4f, accuracy %.4f", ce->index + 1,
                ce->n_devices, ev->epoch, v->epochs, ev->epoch_seconds, ev->loss, ev->accuracy);
        if (isfinite (ev->val_accuracy))
          printf (", val_accuracy %.4f", ev->val_accuracy);
        printf ("\n");
        break;
      case KILT_EVENT_LOG:
        if (ev->level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
          fprintf (stderr, "%skilt-cli: warning: %s\n", v->tty ? "\r\033[K" : "", ev->message);
        break;
      case KILT_EVENT_FINISHED:
        if (v->tty)
          fprintf (stderr, "\r\033[K");
        g_mutex_lock (&v->lock);
        v->status[ce->index] = ev->status;
        if (ev->error)
          v->errors[ce->index] = g_strdup (ev->error->message);
        g_mutex_unlock (&v->lock);
        if (ev->error)
          fprintf (stderr, "[%u/%u] %s failed: %s\n", ce->index + 1, ce->n_devices, ce->device_id,
                   ev->error->message);
        break;
      default:
        break;
    }
  fflush (stdout);
}

int
kilt_cli_run_sequence (KiltCompare *compare, KiltCliSequence *v, guint n, guint epochs,
                       GArray **run_ids)
{
  KiltRunStatus status;
  int rc;

  v->tty = isatty (fileno (stderr));
  v->epochs = epochs;
  v->status = g_new0 (KiltRunStatus, n);
  v->errors = g_new0 (char *, n + 1);
  g_mutex_init (&v->lock);
  for (guint i = 0; i < n; i++)
    v->status[i] = KILT_RUN_STOPPED; /* until it says otherwise: never started */
  running = compare;
  signal (SIGINT, on_sigint);
  kilt_compare_start (compare);
  status = kilt_compare_join (compare);
  running = NULL;
  signal (SIGINT, SIG_DFL);
  *run_ids = kilt_compare_dup_run_ids (compare);
  kilt_compare_free (compare);
  rc = status == KILT_RUN_STOPPED ? 130 : 0;
  for (guint i = 0; i < n; i++)
    if (v->status[i] == KILT_RUN_FAILED)
      rc = rc ? rc : 1;
  g_free (v->status);
  g_strfreev (v->errors);
  g_mutex_clear (&v->lock);
  return rc;
}
