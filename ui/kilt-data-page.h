/* Data page: built-in data sets and files, format options, loading with progress, preview. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "data/kilt-dataset.h"
#include "kilt-run-store.h"

G_BEGIN_DECLS

#define KILT_TYPE_DATA_PAGE (kilt_data_page_get_type ())
G_DECLARE_FINAL_TYPE (KiltDataPage, kilt_data_page, KILT, DATA_PAGE, AdwBin)

/* Starts loading @spec ("sample", "fashion-mnist" or a path) on a worker thread. */
void kilt_data_page_load (KiltDataPage *self, const char *spec);
gboolean kilt_data_page_get_loading (KiltDataPage *self);
/* The loaded data set, or NULL. Borrowed. */
const KiltDataset *kilt_data_page_get_dataset (KiltDataPage *self);
/* Hands the data set to a run (the trainer owns it from then on); the page loads it again
 * when kilt_data_page_reload () is called after the run. */
KiltDataset *kilt_data_page_take_dataset (KiltDataPage *self);
void kilt_data_page_reload (KiltDataPage *self);
/* Where the loaded data set came from and the options it was loaded with (for repeating it in
 * other runs); FALSE (and @out zeroed) before anything loaded. Clear with kilt_data_spec_clear. */
gboolean kilt_data_page_get_spec (KiltDataPage *self, KiltDataSpec *out);
/* The error of the last load, or NULL. */
const char *kilt_data_page_get_error (KiltDataPage *self);
double kilt_data_page_get_val_split (KiltDataPage *self);
gboolean kilt_data_page_get_augment (KiltDataPage *self);
/* Pixels of the flip-and-translate augmentation (0: off); excludes get_augment. */
guint kilt_data_page_get_translate (KiltDataPage *self);
/* Whether validation and test figures come with flip test-time augmentation. */
gboolean kilt_data_page_get_tta_flip (KiltDataPage *self);
KiltPreprocess kilt_data_page_get_preprocess (KiltDataPage *self);

G_END_DECLS
