/* Where a training process is, and the crash handlers that say it (async-signal-safe). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-breadcrumb.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Written by the trainer's thread, read by a signal handler (most often on that same thread,
 * the one that faulted). A torn read can only garble the text, never crash the handler: the
 * name is a fixed buffer that always ends in a NUL. */
static volatile guint crumb_epoch;
static volatile guint64 crumb_step;
static volatile int crumb_phase = -1;
static const char *volatile crumb_stage;
static char crumb_layer[64];
static int crumb_fd = -1;
static gint crumb_count;

void
kilt_breadcrumb_step (guint epoch, guint64 global_step)
{
  crumb_epoch = epoch;
  crumb_step = global_step;
  g_atomic_int_inc (&crumb_count);
}

gboolean
kilt_breadcrumb_in_backward (void)
{
  return crumb_phase == KILT_CRUMB_BACKWARD;
}

guint
kilt_breadcrumb_count (void)
{
  return (guint)g_atomic_int_get (&crumb_count);
}

void
kilt_breadcrumb_layer (const char *layer, KiltCrumbPhase phase)
{
  gsize n = layer ? strlen (layer) : 0;

  n = MIN (n, sizeof crumb_layer - 1);
  memcpy (crumb_layer, layer ? layer : "", n);
  crumb_layer[n] = '\0';
  crumb_phase = (int)phase;
  crumb_stage = NULL;
  g_atomic_int_inc (&crumb_count);
}

void
kilt_breadcrumb_stage (const char *what)
{
  crumb_stage = what;
  crumb_phase = -1;
  g_atomic_int_inc (&crumb_count);
}

typedef struct
{
  char *buf;
  gsize size, len;
} Out;

static void
put (Out *o, const char *s)
{
  for (; s && *s && o->len + 1 < o->size; s++)
    o->buf[o->len++] = *s;
  o->buf[o->len] = '\0';
}

/* @v with thousands separators, as people read step counts. */
static void
put_number (Out *o, guint64 v)
{
  char digits[32], out[48];
  int n = 0, m = 0;

  do
    digits[n++] = (char)('0' + v % 10), v /= 10;
  while (v && n < (int)sizeof digits);
  while (n > 0)
    {
      out[m++] = digits[--n];
      if (n > 0 && n % 3 == 0)
        out[m++] = ',';
    }
  out[m] = '\0';
  put (o, out);
}

gsize
kilt_breadcrumb_format (char *buf, gsize size)
{
  static const char *phases[] = { "forward", "backward", "forward (evaluation)" };
  Out o = { buf, size, 0 };
  const char *stage = crumb_stage;
  int phase = crumb_phase;
  guint64 step = crumb_step;

  if (size == 0)
    return 0;
  buf[0] = '\0';
  if (stage)
    put (&o, stage);
  else if (phase >= 0 && phase < (int)G_N_ELEMENTS (phases))
    {
      put (&o, crumb_layer);
      put (&o, " ");
      put (&o, phases[phase]);
    }
  else
    put (&o, "setting up");
  if (step > 0 || crumb_epoch > 0)
    {
      put (&o, ", step ");
      put_number (&o, step);
      put (&o, " (epoch ");
      put_number (&o, crumb_epoch);
      put (&o, ")");
    }
  return o.len;
}

const char *
kilt_breadcrumb_signal_name (int sig)
{
  switch (sig)
    {
      case SIGSEGV:
        return "SIGSEGV";
      case SIGBUS:
        return "SIGBUS";
      case SIGILL:
        return "SIGILL";
      case SIGFPE:
        return "SIGFPE";
      case SIGABRT:
        return "SIGABRT";
      case SIGTERM:
        return "SIGTERM";
      case SIGKILL:
        return "SIGKILL";
      default:
        return NULL;
    }
}

static void
on_fatal_signal (int sig)
{
  char line[256];
  Out o = { line, sizeof line, 0 };
  char where[160];
  ssize_t unused;

  put (&o, KILT_BREADCRUMB_PREFIX);
  put (&o, sig == SIGTERM ? "ended: " : "crashed: ");
  put (&o, kilt_breadcrumb_signal_name (sig) ? kilt_breadcrumb_signal_name (sig) : "a signal");
  put (&o, " during ");
  kilt_breadcrumb_format (where, sizeof where);
  put (&o, where);
  put (&o, "\n");
  if (o.len + 1 >= o.size)
    line[o.size - 2] = '\n';
  unused = write (crumb_fd, line, strlen (line));
  (void)unused;
  /* Die of the same signal, so the parent sees what happened. */
  signal (sig, SIG_DFL);
  raise (sig);
}

void
kilt_breadcrumb_install_handlers (int fd)
{
  static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM };
  struct sigaction sa;

  crumb_fd = fd;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_fatal_signal;
  sigemptyset (&sa.sa_mask);
  /* SA_RESETHAND: a fault inside the handler itself kills at once instead of looping. */
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (gsize i = 0; i < G_N_ELEMENTS (sigs); i++)
    sigaction (sigs[i], &sa, NULL);
}
