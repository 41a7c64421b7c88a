/* kilt-cli's subcommands and the option handling they share. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-compare.h"
#include "kilt-run-store.h"
#include "kilt-trainer.h"

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct
{
  char *device;
  char *data;
  char *model;
  char *weights; /* --weights: Keras weights onto --model */
  /* Transfer learning: freeze layers up to this one; unfreeze every layer first; a new head
   * when the model's outputs differ from the data's classes. */
  char *freeze_until;
  gboolean unfreeze_all;
  gboolean replace_head;
  char *loss;
  int epochs;
  int batch;
  char *optimizer;
  /* NAN: not given, the optimizer's default. kilt_cli_common_parse fills these from
   * number_text, refusing what is not a finite number in the option's range, so a NAN here can
   * only mean "unset". */
  double lr, momentum, rho, epsilon, decay;
  double weight_decay; /* 0 unless given */
  gboolean nesterov;
  gboolean lookahead; /* --lookahead: airbench's average of the weights */
  /* --lr-schedule and its settings; NULL and NAN (the schedule's default) unless given. */
  char *lr_schedule;
  double warmup_epochs, lr_start, lr_final, lr_peak;
  int warmup_steps;
  double label_smoothing; /* 0 unless given */
  int seed;
  double val_split; /* 0 unless given */
  int max_samples;
  gboolean augment;
  int translate;           /* --translate N: flip + shift by reflection; 0 unless given */
  gboolean alternate_flip; /* --alternate-flip */
  gboolean tta_flip;
  char *precision; /* NULL: fp32 */
  char *memory;    /* --memory auto|keep|recompute; NULL: auto */
  gboolean standardize;
  char *image_size;
  gboolean grayscale;
  char *label_column;
  gboolean regression;
  gboolean drop_bad_rows;
  gboolean raw_features; /* set by kilt_cli_data_for_model: the model reads ids */
  char *checkpoint;
  gboolean resume;
  char *run_name;
  gboolean json;
  /* --recipe NAME: its model and settings (kilt-recipe.h) in place of the defaults, before
   * the other options, which still override them. */
  char *recipe;
  /* What the floating-point options said, before checking (KiltCliNumber order). */
  char *number_text[12];
} KiltCliCommon;

void kilt_cli_common_init (KiltCliCommon *c);
void kilt_cli_common_clear (KiltCliCommon *c);
/* g_option_context_parse () for a context holding kilt_cli_common_entries (@c), then every
 * numeric option checked: NaN, infinities, text that is not a number and values out of the
 * option's range fail with G_OPTION_ERROR_BAD_VALUE naming the option and what it takes. */
gboolean kilt_cli_common_parse (KiltCliCommon *c, GOptionContext *oc, int *argc, char ***argv,
                                GError **error);
/* The shared options bound to @c; free the array with g_free. */
GOptionEntry *kilt_cli_common_entries (KiltCliCommon *c);
KiltDataset *kilt_cli_load_data (KiltCliCommon *c, GError **error);
/* Where --data and the loading options point, for recording and reloading. */
gboolean kilt_cli_data_spec (KiltCliCommon *c, KiltDataSpec *out, GError **error);
KiltDataset *kilt_cli_load_data_spec (const KiltDataSpec *spec, gboolean tell_notes,
                                      GError **error);
KiltModel *kilt_cli_load_model (KiltCliCommon *c, const KiltDataset *ds, GError **error);
/* A model that reads ids (an Embedding on its input) needs the features as they are: when *@ds
 * was standardised on loading, it is loaded again without (and @c records that for the run). */
gboolean kilt_cli_data_for_model (KiltCliCommon *c, KiltModel *model, KiltDataset **ds,
                                  GError **error);
/* Applies --unfreeze-all, --freeze-until and --replace-head (with @ds's classes; @ds may be
 * NULL) to built @model (app/kilt-cli-transfer.c). */
gboolean kilt_cli_transfer (KiltCliCommon *c, const KiltDataset *ds, KiltModel *model,
                            GError **error);
gboolean kilt_cli_train_config (KiltCliCommon *c, KiltTrainConfig *cfg, GError **error);
/* With --checkpoint, its weights become @model's starting weights (the checkpoint must be
 * this model's); without, nothing changes. */
gboolean kilt_cli_checkpoint_weights (KiltCliCommon *c, KiltModel *model, GError **error);
/* A run ID as typed ("12" or "#12"); 0 when @text is not one. */
gint64 kilt_cli_parse_run_id (const char *text);

/* The trainer's step time for @c's model and batch on @dev over @steps synthetic batches
 * (after as many warm-up steps), as `kilt-cli bench` measures it. */
gboolean kilt_cli_bench_step (const KiltDeviceInfo *dev, KiltCliCommon *c, int steps,
                              double *step_ms, GError **error);

/* Progress of a KiltCompare sequence on the terminal (kilt-cli compare, runs resume). */
typedef struct
{
  gboolean tty;
  guint epochs;
  guint steps_per_epoch;
  GMutex lock;
  KiltRunStatus *status; /* per device */
  char **errors;         /* per device */
} KiltCliSequence;

/* The KiltCompareFunc that prints a sequence's progress into a KiltCliSequence. */
void kilt_cli_sequence_event (const KiltCompareEvent *event, gpointer user_data);
/* Runs @compare (made with kilt_cli_sequence_event and @view; @n devices, @epochs each) to its
 * end with Ctrl+C stopping it, frees it, and sets *@run_ids to the recorded runs. Returns the
 * exit status: 130 when stopped, 1 when a run failed, else 0. */
int kilt_cli_run_sequence (KiltCompare *compare, KiltCliSequence *view, guint n, guint epochs,
                           GArray **run_ids);

int kilt_cli_train (int argc, char **argv);
int kilt_cli_eval (int argc, char **argv);
int kilt_cli_predict (int argc, char **argv);
int kilt_cli_export (int argc, char **argv);
int kilt_cli_summary (int argc, char **argv);
int kilt_cli_data (int argc, char **argv);
int kilt_cli_bench (int argc, char **argv);
int kilt_cli_compare (int argc, char **argv);
int kilt_cli_tune (int argc, char **argv);
int kilt_cli_worker (int argc, char **argv);

G_END_DECLS
