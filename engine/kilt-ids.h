/* Models that read integer ids (an Embedding on the input): the preprocessing their data gets
 * and the check that every id names a row of the table. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"
#include "data/kilt-dataset.h"

G_BEGIN_DECLS

/* The first Embedding that reads @model's input, or NULL when none does. */
KiltNode *kilt_ids_reader (KiltModel *model);

/* The preprocessing @model's data gets when @asked is what the run asked for: @asked for a
 * model that reads no ids, else the values as stored (no scaling: ids stay ids). Standardising
 * ids is refused with an error naming the layer. */
gboolean kilt_ids_preprocess (KiltModel *model, KiltPreprocess asked, KiltPreprocess *use,
                              GError **error);

/* For a model that reads ids: every value of every split of @data is a whole number from 0 to
 * input_dim - 1 of each Embedding on the input, and the features were not standardised on
 * loading. The error names the split, the sample, the feature, the value and the layer.
 * TRUE at once for a model that reads no ids. */
gboolean kilt_ids_check_data (KiltModel *model, const KiltDataset *data, GError **error);

G_END_DECLS
