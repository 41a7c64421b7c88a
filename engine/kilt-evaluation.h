/* How a trained classifier does per class: per-sample predictions, confusion matrix, metrics. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-trainer.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* The most classes an evaluation holds (its matrix is n_classes squared), and the most
 * misclassified samples one carries in JSON. */
#define KILT_EVALUATION_MAX_CLASSES       4096
#define KILT_EVALUATION_MAX_MISCLASSIFIED 100000

typedef struct
{
  guint64 index;     /* the sample's position in its split */
  guint truth;       /* its label */
  guint predicted;   /* the arg-max class */
  float probability; /* the predicted class's probability */
  char *path;        /* the sample's source file (image folders), else NULL; owned */
} KiltMisclassified;

typedef struct
{
  KiltSplitKind split; /* KILT_SPLIT_TEST, or KILT_SPLIT_VAL when the data had no test split */
  guint n_classes;
  char **class_names; /* n_classes names, NULL-terminated */
  guint64 n_samples;
  /* Per sample (n_samples each), in split order; NULL in an evaluation read from JSON, which
   * carries only the misclassified list below. */
  gint32 *truth;
  guint32 *predicted;   /* arg-max, the first of equal probabilities (as the loss kernel) */
  char **paths;         /* n_samples source files, NULL-terminated, or NULL when the data set
                         * has none (only image folders do); set before tallying */
  float *probability;   /* the predicted class's probability */
  float *p_truth;       /* the true class's probability (for the loss) */
  guint64 *confusion;   /* n_classes x n_classes, row = true class, column = predicted */
  guint64 *support;     /* per class: samples whose label it is (row sums) */
  guint64 *n_predicted; /* per class: samples predicted as it (column sums) */
  double *precision;    /* per class; NaN when no sample was predicted as it */
  double *recall;       /* per class; NaN when the class has no sample */
  double *f1;           /* NaN when precision or recall is, 0 when both are 0 */
  guint64 correct;      /* the diagonal's sum */
  double accuracy;      /* correct / n_samples */
  double loss;          /* mean cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7]) or NaN */
  /* The misclassified samples, most confident first (ties: split order); every one when the
   * per-sample arrays are here, else what the JSON carried. */
  GArray *misclassified; /* KiltMisclassified */
} KiltEvaluation;

/* An empty evaluation for @n_samples samples of @n_classes classes (names copied; NULL gives
 * "0", "1", ...), with per-sample arrays to fill and then kilt_evaluation_tally (). */
KiltEvaluation *kilt_evaluation_new (guint n_classes, const char *const *class_names,
                                     guint64 n_samples);
void kilt_evaluation_free (KiltEvaluation *ev);

/* From the per-sample arrays (and paths, when set): the confusion matrix, the misclassified list
 * and the figures.
 * Fails (KILT_ENGINE_ERROR_DATA, naming the sample) on a label or prediction outside
 * [0, n_classes). */
gboolean kilt_evaluation_tally (KiltEvaluation *ev, GError **error);

/* Runs @data's test split (else its validation split) through @model on the device @config
 * names (device_id, batch, preprocess, precision) with the weights of @config's
 * checkpoint_path, or without one the weights the model came with. Checks that the model is a
 * classifier of the data's classes and input shape. Data with neither split gets the
 * validation split the trainer carves (config->val_fraction, config->seed). @progress (may be NULL)
 * is called on this thread after each batch with the fraction done; @cancel stops between batches
 * (KILT_ENGINE_ERROR_CANCELLED). */
KiltEvaluation *kilt_evaluation_run (KiltModel *model, KiltDataset *data,
                                     const KiltTrainConfig *config, KiltProgressFunc progress,
                                     gpointer user_data, GCancellable *cancel, GError **error);

/* One image file through the model as @data's samples go (stretched to its shape, the same
 * preprocessing): *@scores gets n_classes probabilities (caller frees). */
gboolean kilt_evaluation_classify_file (KiltModel *model, KiltDataset *data,
                                        const KiltTrainConfig *config, const char *path,
                                        float **scores, guint *n_scores, GError **error);

/* The figures as JSON: split, classes, samples, correct, accuracy, loss, confusion (rows),
 * per_class (name, precision, recall, f1, support, predicted) and the first
 * @max_misclassified misclassified samples (index, true, predicted, probability). */
JsonNode *kilt_evaluation_to_json (const KiltEvaluation *ev, guint max_misclassified);
/* Reads what kilt_evaluation_to_json () wrote, checking every count and size, and computes
 * the figures again from the matrix. */
KiltEvaluation *kilt_evaluation_from_json (JsonNode *node, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltEvaluation, kilt_evaluation_free)

G_END_DECLS
