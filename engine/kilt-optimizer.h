/* Device optimizers (Keras update rules) over a flat parameter buffer, and their C reference. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"
#include "kilt-optimizer-config.h"
#include "kilt-model.h"

G_BEGIN_DECLS

typedef struct _KiltOptimizer KiltOptimizer;

/* State floats per parameter: SGD 1 (0 without momentum), RMSprop 1, Adam 2, Adadelta 2,
 * Adagrad 1. */
guint kilt_optimizer_state_slots (const KiltOptimizerConfig *cfg);
/* Floats of optimizer state for @n_params parameters, for the memory planner. */
gsize kilt_optimizer_state_floats (const KiltOptimizerConfig *cfg, gsize n_params);
/* An error naming the field when @cfg is out of range (negative rate, rho outside [0, 1) ...). */
gboolean kilt_optimizer_config_check (const KiltOptimizerConfig *cfg, GError **error);
/* The learning rate used at 0-based @iteration: kilt_optimizer_scheduled_lr, times Adam's
 * bias correction sqrt (1 - beta2^t) / (1 - beta1^t) with t = iteration + 1. */
double kilt_optimizer_lr_at (const KiltOptimizerConfig *cfg, guint64 iteration);
/* The scheduled rate at 0-based @iteration, lr * schedule factor / (1 + decay * iteration),
 * without Adam's bias correction: the figure Keras reports and the Train page charts. A
 * schedule other than flat must be resolved (kilt_lr_schedule_resolve) first. */
double kilt_optimizer_scheduled_lr (const KiltOptimizerConfig *cfg, guint64 iteration);

/* Allocates the state (KILT_MEM_OPTIMIZER, one buffer per slot) for @n_params parameters and
 * sets it to its starting value (0; Adagrad's accumulator 0.1). Free with kilt_optimizer_free. */
KiltOptimizer *kilt_optimizer_new (KiltContext *ctx, const KiltOptimizerConfig *cfg, gsize n_params,
                                   GError **error);
void kilt_optimizer_free (KiltOptimizer *opt);
const KiltOptimizerConfig *kilt_optimizer_get_config (KiltOptimizer *opt);
/* Replaces the schedule (once the trainer has resolved it to the run's length). */
void kilt_optimizer_set_schedule (KiltOptimizer *opt, const KiltLrSchedule *schedule);
gsize kilt_optimizer_n_params (KiltOptimizer *opt);

/* Where the optimizer's @n_params floats (of gradients and state) lie in the parameter
 * buffer: @n_ranges runs whose grad_offsets follow each other from 0 and whose sizes add up to
 * n_params (a model with frozen layers: its grad_ranges). Default: one run at 0. */
void kilt_optimizer_set_ranges (KiltOptimizer *opt, const KiltParamRange *ranges, guint n_ranges);

/* The 0-based epoch of the run the next steps belong to: runs with an until_epoch at or
 * below it are no longer updated. 0 until set. */
void kilt_optimizer_set_epoch (KiltOptimizer *opt, guint epoch);
/* Whether the optimizer updates @range in 0-based @epoch (not fixed, not past until_epoch). */
gboolean kilt_optimizer_range_updates (const KiltParamRange *range, guint epoch);

/* Enqueues one update of @params (n_params floats) from @grads; @iteration is the 0-based
 * step count before this update. One kernel launch per run of parameters, no wait for the
 * device. */
gboolean kilt_optimizer_step (KiltOptimizer *opt, cl_mem params, cl_mem grads, guint64 iteration,
                              GError **error);

/* State as host floats (kilt_optimizer_state_floats () of them, slot after slot), for
 * checkpoints. Blocking. */
gboolean kilt_optimizer_read_state (KiltOptimizer *opt, float *dst, GError **error);
gboolean kilt_optimizer_write_state (KiltOptimizer *opt, const float *src, GError **error);

/* Plain-C double reference. @state holds kilt_optimizer_state_floats (cfg, n) doubles, slot
 * after slot; kilt_optimizer_reference_init sets their starting values. */
void kilt_optimizer_reference_init (const KiltOptimizerConfig *cfg, gsize n, double *state);
void kilt_optimizer_reference_step (const KiltOptimizerConfig *cfg, gsize n, double *p,
                                    const double *g, double *state, guint64 iteration);
/* The same over a model's runs, as the device steps them: @p the whole parameter buffer, @g
 * and @state (slot after slot, n_grads each) the gradient layout's; runs the optimizer leaves
 * alone in @epoch keep their values and state. */
void kilt_optimizer_reference_step_ranges (const KiltOptimizerConfig *cfg,
                                           const KiltParamRange *ranges, guint n_ranges,
                                           guint epoch, gsize n_grads, double *p, const double *g,
                                           double *state, guint64 iteration);

G_END_DECLS
