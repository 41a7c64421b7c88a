/* Model page: presets, Keras import, our JSON, the layer table, memory plan, hyper-parameters. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "kilt-device.h"
#include "kilt-model.h"
#include "kilt-optimizer-config.h"
#include "kilt-recompute.h"

G_BEGIN_DECLS

#define KILT_TYPE_MODEL_PAGE (kilt_model_page_get_type ())
G_DECLARE_FINAL_TYPE (KiltModelPage, kilt_model_page, KILT, MODEL_PAGE, AdwBin)

/* The data the model must take: its per-sample shape and class count (0 keeps the model's). */
void kilt_model_page_set_input (KiltModelPage *self, const KiltShape *shape, guint n_classes,
                                guint64 dataset_bytes);
/* The device the memory plan is made for (borrowed; NULL for none). */
void kilt_model_page_set_device (KiltModelPage *self, const KiltDeviceInfo *device);
/* Chooses a preset by name; FALSE when there is none by that name. */
gboolean kilt_model_page_choose_preset (KiltModelPage *self, const char *name);
/* What the preset row says about the chosen preset (its description). */
const char *kilt_model_page_get_preset_subtitle (KiltModelPage *self);
/* A fresh, built copy of the chosen model for a run (caller owns it), or NULL with @error. */
KiltModel *kilt_model_page_create_model (KiltModelPage *self, GError **error);
const char *kilt_model_page_get_model_name (KiltModelPage *self);
/* Loads a source as the page's choosers do: "keras:<path>" (JSON, .h5 or .keras), "json:<path>"
 * (Kilt's format) or a preset name; FALSE (the page shows why) when it does not load. */
gboolean kilt_model_page_open (KiltModelPage *self, const char *source);
/* The Trainable tick of layer @layer (a run's model gets it too); FALSE when no layer has that
 * name. */
gboolean kilt_model_page_set_trainable (KiltModelPage *self, const char *layer, gboolean trainable);
/* "Replace Head (N Classes)" when the data set's classes differ from the model's outputs and
 * its head can be replaced, else NULL; kilt_model_page_replace_head () does it (FALSE when not
 * offered). */
const char *kilt_model_page_get_head_offer (KiltModelPage *self);
/* The Freeze row's choice: every layer up to and including @layer frozen, the later ones
 * trainable; FALSE when no layer has that name. */
gboolean kilt_model_page_freeze_until (KiltModelPage *self, const char *layer);
gboolean kilt_model_page_replace_head (KiltModelPage *self);
/* The optimizer and the settings shown for it (those it does not use keep its defaults). */
KiltOptimizerConfig kilt_model_page_get_optimizer (KiltModelPage *self);
void kilt_model_page_set_optimizer (KiltModelPage *self, const KiltOptimizerConfig *opt);
/* Keras' label smoothing for categorical cross-entropy, in [0, 0.99]. */
float kilt_model_page_get_label_smoothing (KiltModelPage *self);
void kilt_model_page_set_label_smoothing (KiltModelPage *self, float smoothing);
guint kilt_model_page_get_batch (KiltModelPage *self);
void kilt_model_page_set_batch (KiltModelPage *self, guint batch);
/* FALSE, with @error saying what fits, when the memory plan shown says the model does not
 * fit on the device at the chosen batch (TRUE when there is no plan to go by). */
gboolean kilt_model_page_check_fits (KiltModelPage *self, GError **error);
/* How the run holds activations (the Activations row, next to the plan). */
KiltMemoryMode kilt_model_page_get_memory (KiltModelPage *self);
void kilt_model_page_set_memory (KiltModelPage *self, KiltMemoryMode mode);
/* Whether the plan row answers the page's current model, batch and settings; the plan is worked
 * out in a thread a short while after each change. */
gboolean kilt_model_page_plan_is_current (KiltModelPage *self);
/* "Use Batch N" on the plan: sets the batch to the largest that fits; FALSE when not offered. */
gboolean kilt_model_page_use_fitting_batch (KiltModelPage *self);
guint kilt_model_page_get_epochs (KiltModelPage *self);
guint32 kilt_model_page_get_seed (KiltModelPage *self);
void kilt_model_page_set_epochs (KiltModelPage *self, guint epochs);

G_END_DECLS
