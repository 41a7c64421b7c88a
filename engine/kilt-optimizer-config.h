/* Optimizer settings, shared by the trainer, the CLI, the window and the run store. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-lr-schedule.h"

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  KILT_OPT_SGD,
  KILT_OPT_RMSPROP,
  KILT_OPT_ADAM,
  KILT_OPT_ADADELTA,
  KILT_OPT_ADAGRAD,
  KILT_OPT_N_TYPES
} KiltOptimizerType;

typedef struct
{
  KiltOptimizerType type;
  float lr;           /* learning rate */
  float momentum;     /* SGD */
  gboolean nesterov;  /* SGD */
  float rho;          /* RMSprop, Adadelta */
  float beta1, beta2; /* Adam */
  float epsilon;
  float decay;             /* Keras' time decay: lr / (1 + decay * iterations) */
  float weight_decay;      /* L2: adds weight_decay * w to each gradient */
  KiltLrSchedule schedule; /* times the rate at each step, with the time decay */
  /* airbench's lookahead (kilt-lookahead.h): every KILT_LOOKAHEAD_PERIOD steps the weights
   * and running statistics move to an average of themselves over the run's steps, and the run
   * ends on that average. */
  gboolean lookahead;
} KiltOptimizerConfig;

/* Keras' defaults for @type (e.g. RMSprop lr 1e-3, rho 0.9, eps 1e-7). */
KiltOptimizerConfig kilt_optimizer_config_default (KiltOptimizerType type);
const char *kilt_optimizer_name (KiltOptimizerType type);
gboolean kilt_optimizer_from_name (const char *name, KiltOptimizerType *out);

G_END_DECLS
