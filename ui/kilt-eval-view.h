/* How a trained run does per class: confusion matrix, per-class table, misclassified gallery. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "kilt-evaluation.h"
#include "kilt-run-store.h"

G_BEGIN_DECLS

#define KILT_TYPE_EVAL_VIEW (kilt_eval_view_get_type ())
G_DECLARE_FINAL_TYPE (KiltEvalView, kilt_eval_view, KILT, EVAL_VIEW, GtkBox)

/* The most misclassified test images the gallery shows, and the most the worker lists (the
 * view keeps them for the figures people hover over). */
#define KILT_EVAL_VIEW_GALLERY_MAX        48
#define KILT_EVAL_VIEW_MISCLASSIFIED_KEPT 1000

GtkWidget *kilt_eval_view_new (void);

/* Evaluates @run's checkpoint on its data's test split in a worker process (kilt-cli worker;
 * the window keeps no OpenCL object) and loads the data here for the gallery's thumbnails.
 * FALSE when the run cannot be evaluated (no checkpoint, no recorded data) or no worker could
 * start; the error is shown in the view too. */
gboolean kilt_eval_view_evaluate (KiltEvalView *view, const KiltRun *run, GError **error);
/* Stops the evaluation or classification under way; the view says it was cancelled. */
void kilt_eval_view_cancel (KiltEvalView *view);
/* Runs @path through the run's model in a worker; the top three classes show in the view. */
gboolean kilt_eval_view_classify (KiltEvalView *view, const char *path, GError **error);

/* Whether an evaluation, a classification or the thumbnails' data load is under way. */
gboolean kilt_eval_view_get_busy (KiltEvalView *view);
/* The evaluation shown, or NULL before it arrived or when it failed. */
const KiltEvaluation *kilt_eval_view_get_evaluation (KiltEvalView *view);
/* What the view's error line says, or NULL. */
const char *kilt_eval_view_get_error (KiltEvalView *view);
/* The last classification's text ("cat 87.0%, dog 9.1%, bird 2.0%"), or NULL. */
const char *kilt_eval_view_get_classification (KiltEvalView *view);
/* Thumbnails in the gallery. */
guint kilt_eval_view_get_gallery_size (KiltEvalView *view);
/* What the gallery's image @i says it is: its file's name where the data set has files (image
 * folders), else "sample N". NULL past the end. */
const char *kilt_eval_view_get_gallery_source (KiltEvalView *view, guint i);
/* Scrolls the gallery of misclassified images to the top of the view. */
void kilt_eval_view_scroll_to_gallery (KiltEvalView *view);

G_END_DECLS
