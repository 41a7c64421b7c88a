/* Where a training process is, kept cheaply so that a crash handler can say it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  KILT_CRUMB_FORWARD,
  KILT_CRUMB_BACKWARD,
  KILT_CRUMB_INFERENCE, /* a forward pass for validation or test */
} KiltCrumbPhase;

/* The trainer's step (1-based within the process's run, counted over epochs). */
void kilt_breadcrumb_step (guint epoch, guint64 global_step);
/* A layer's pass begins; @layer is copied (at most 63 bytes). */
void kilt_breadcrumb_layer (const char *layer, KiltCrumbPhase phase);
/* Work that is not a layer's pass: @what must be a static string ("the optimizer update"). */
void kilt_breadcrumb_stage (const char *what);

/* Whether the breadcrumb is in a layer's backward pass (the test faults fire there). */
gboolean kilt_breadcrumb_in_backward (void);

/* How many times the breadcrumb moved: a worker's heartbeat says it goes on while this grows. */
guint kilt_breadcrumb_count (void);

/* "conv2d_3 backward, step 1,204 (epoch 2)" into @buf (always terminated); returns its
 * length. Async-signal-safe: no allocation, no locks, no stdio. */
gsize kilt_breadcrumb_format (char *buf, gsize size);

/* From now on SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT and SIGTERM write one line to @fd,
 * "kilt-worker: crashed: SIGSEGV during conv2d_3 backward, step 1,204 (epoch 2)" (SIGTERM:
 * "ended: SIGTERM during ..."), then the process dies of the same signal as before. With
 * KILT_BACKTRACE set in the environment a crash also writes its call stack, a frame a line. */
void kilt_breadcrumb_install_handlers (int fd);
/* The same with another line prefix (@prefix must outlive the handlers: a static string). */
void kilt_breadcrumb_install_handlers_as (int fd, const char *prefix);

/* "SIGSEGV" for SIGSEGV, and so on for the signals a crash handler sees; NULL for others.
 * Async-signal-safe. */
const char *kilt_breadcrumb_signal_name (int sig);

/* The line prefix the handlers write, for whoever reads @fd. */
#define KILT_BREADCRUMB_PREFIX "kilt-worker: "

G_END_DECLS
