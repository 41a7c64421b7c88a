/* Where a training process is, and the crash handlers that say it (async-signal-safe). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-breadcrumb.h"

#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Written by the trainer's thread, read by a signal handler (most often on that same thread,
 * the one that faulted) and by the worker's heartbeat thread. Every field is a relaxed atomic
 * and the writes are bracketed by a sequence number (odd while a write is under way), so a
 * reader on another thread retries instead of taking half of one layer's name and half of the
 * next (ThreadSanitizer found the heartbeat's torn reads). A reader that interrupted the
 * writer on its own thread cannot wait for it: after a few tries it takes what is there,
 * which can only garble the text, never crash the handler (the name always ends in a NUL). */
static guint crumb_seq;
static guint crumb_epoch;
static guint64 crumb_step;
static int crumb_phase = -1;
static const char *crumb_stage;
static char crumb_layer[64];
static int crumb_fd = -1;
static const char *crumb_prefix = KILT_BREADCRUMB_PREFIX;
static gboolean crumb_backtrace; /* KILT_BACKTRACE set: the handlers add the call stack */
static gint crumb_count;

/* Release stores and acquire loads rather than fences (which GCC's ThreadSanitizer does not
 * take): a reader that saw any of a write's data then sees the sequence number it moved. */
#define STORE(var, v) __atomic_store_n (&(var), (v), __ATOMIC_RELEASE)
#define LOAD(var)     __atomic_load_n (&(var), __ATOMIC_ACQUIRE)

static void
write_begin (void)
{
  STORE (crumb_seq, LOAD (crumb_seq) + 1);
}

static void
write_end (void)
{
  STORE (crumb_seq, LOAD (crumb_seq) + 1);
  g_atomic_int_inc (&crumb_count);
}

void
kilt_breadcrumb_step (guint epoch, guint64 global_step)
{
  write_begin ();
  STORE (crumb_epoch, epoch);
  STORE (crumb_step, global_step);
  write_end ();
}

gboolean
kilt_breadcrumb_in_backward (void)
{
  return LOAD (crumb_phase) == KILT_CRUMB_BACKWARD;
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
  write_begin ();
  for (gsize i = 0; i < n; i++)
    STORE (crumb_layer[i], layer[i]);
  STORE (crumb_layer[n], '\0');
  STORE (crumb_phase, (int)phase);
  STORE (crumb_stage, NULL);
  write_end ();
}

void
kilt_breadcrumb_stage (const char *what)
{
  write_begin ();
  STORE (crumb_stage, what);
  STORE (crumb_phase, -1);
  write_end ();
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
  const char *stage = NULL;
  char layer[sizeof crumb_layer];
  int phase = -1;
  guint64 step = 0;
  guint epoch = 0;

  if (size == 0)
    return 0;
  for (int tries = 0; tries < 64; tries++)
    {
      guint seq = LOAD (crumb_seq);
      stage = LOAD (crumb_stage);
      phase = LOAD (crumb_phase);
      step = LOAD (crumb_step);
      epoch = LOAD (crumb_epoch);
      for (gsize i = 0; i < sizeof layer; i++)
        layer[i] = LOAD (crumb_layer[i]);
      if (seq % 2 == 0 && LOAD (crumb_seq) == seq)
        break;
    }
  layer[sizeof layer - 1] = '\0';
  buf[0] = '\0';
  if (stage)
    put (&o, stage);
  else if (phase >= 0 && phase < (int)G_N_ELEMENTS (phases))
    {
      put (&o, layer);
      put (&o, " ");
      put (&o, phases[phase]);
    }
  else
    put (&o, "setting up");
  if (step > 0 || epoch > 0)
    {
      put (&o, ", step ");
      put_number (&o, step);
      put (&o, " (epoch ");
      put_number (&o, epoch);
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

  put (&o, crumb_prefix);
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
  if (crumb_backtrace && sig != SIGTERM)
    {
      /* One frame a line, "binary(+0x1d2f4)[0x...]": addr2line -e binary 0x1d2f4 names it. */
      void *frames[64];
      int n = backtrace (frames, G_N_ELEMENTS (frames));
      backtrace_symbols_fd (frames, n, crumb_fd);
    }
  /* Die of the same signal, so the parent sees what happened. */
  signal (sig, SIG_DFL);
  raise (sig);
}

void
kilt_breadcrumb_install_handlers (int fd)
{
  kilt_breadcrumb_install_handlers_as (fd, KILT_BREADCRUMB_PREFIX);
}

void
kilt_breadcrumb_install_handlers_as (int fd, const char *prefix)
{
  static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM };
  struct sigaction sa;

  crumb_fd = fd;
  crumb_prefix = prefix;
  crumb_backtrace = g_getenv ("KILT_BACKTRACE") && *g_getenv ("KILT_BACKTRACE");
  if (crumb_backtrace)
    {
      /* The first call loads libgcc's unwinder, which a signal handler must not do. */
      void *frame;
      backtrace (&frame, 1);
    }
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_fatal_signal;
  sigemptyset (&sa.sa_mask);
  /* SA_RESETHAND: a fault inside the handler itself kills at once instead of looping. */
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (gsize i = 0; i < G_N_ELEMENTS (sigs); i++)
    sigaction (sigs[i], &sa, NULL);
}
