/* Learning-rate schedules: the factor a run's rate is multiplied by at each step. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  KILT_LR_CONSTANT,  /* the rate throughout (after any warm-up) */
  KILT_LR_LINEAR,    /* straight down from the rate to rate * final by the run's end */
  KILT_LR_COSINE,    /* half a cosine from the rate down to rate * final */
  KILT_LR_ONE_CYCLE, /* straight up from rate * start to the rate at peak, then down to final */
  KILT_LR_N_SCHEDULES
} KiltLrScheduleType;

typedef struct
{
  KiltLrScheduleType type;
  /* A linear warm-up from rate * start to the rate, before constant, linear or cosine: in
   * epochs (may be a fraction), or in steps when warmup_epochs is 0. One-cycle has its own
   * rise and takes neither. */
  float warmup_epochs;
  guint warmup_steps;
  float start; /* fraction of the rate at step 0 of the warm-up or of one-cycle, in [0, 1] */
  float final; /* fraction of the rate at the run's end (linear, cosine, one-cycle), [0, 1] */
  float peak;  /* one-cycle: where the rate peaks, as a fraction of the run's steps, [0, 1] */
  /* Set by the trainer when the run starts (kilt_lr_schedule_resolve), not stored with the
   * run: the steps of an epoch, the run's epochs, and where this session took up the run
   * (a resumption's epochs done and global step). */
  guint steps_per_epoch;
  guint epochs;
  guint origin_epoch;
  guint64 origin_step;
} KiltLrSchedule;

/* Constant, no warm-up; start 0, final 0, peak 0.3 for when a schedule is chosen. */
KiltLrSchedule kilt_lr_schedule_default (void);
/* "constant", "linear", "cosine", "one-cycle". */
const char *kilt_lr_schedule_name (KiltLrScheduleType type);
gboolean kilt_lr_schedule_from_name (const char *name, KiltLrScheduleType *out);

/* TRUE when the factor is 1 at every step (constant without warm-up), so the run's length
 * is not needed. */
gboolean kilt_lr_schedule_is_flat (const KiltLrSchedule *s);

/* An error naming the setting when @s is out of range or inconsistent (warm-up with
 * one-cycle, warm-up in both epochs and steps). */
gboolean kilt_lr_schedule_check (const KiltLrSchedule *s, GError **error);

/* Fixes the run's length: @epochs of @steps_per_epoch, taken up after @origin_epoch epochs
 * at 0-based global step @origin_step (0 and 0 for a fresh run). Fails, naming the setting,
 * when the warm-up would be as long as the run or longer. */
gboolean kilt_lr_schedule_resolve (KiltLrSchedule *s, guint steps_per_epoch, guint epochs,
                                   guint origin_epoch, guint64 origin_step, GError **error);

/* The run's steps and warm-up steps once resolved. */
guint64 kilt_lr_schedule_total_steps (const KiltLrSchedule *s);
guint64 kilt_lr_schedule_warmup_steps (const KiltLrSchedule *s);

/* The factor at 0-based global @iteration (the step count before the update), in double.
 * A step of a resumption counts from where the run was taken up, in this session's steps,
 * so a run resumed at another batch still ends its schedule at its last epoch. Past the
 * run's end it stays at its last value. Needs kilt_lr_schedule_resolve unless flat. */
double kilt_lr_schedule_factor (const KiltLrSchedule *s, guint64 iteration);

/* A line for reports and `runs show`: "cosine to 0.01 after 1 epoch of warm-up from 0",
 * "one-cycle 0.2 -> 1 at 23% -> 0", "constant". */
char *kilt_lr_schedule_describe (const KiltLrSchedule *s);

G_END_DECLS
