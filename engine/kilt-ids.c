/* Models that read integer ids (an Embedding on the input): the preprocessing their data gets
 * and the check that every id names a row of the table. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-ids"

#include "kilt-ids.h"
#include "kilt-error.h"

#include <math.h>

static gboolean
reads_ids (KiltModel *model, const KiltNode *node)
{
  return node->type == KILT_LAYER_EMBEDDING && node->n_inputs == 1 && node->inputs[0] == 0
         && kilt_model_n_nodes (model) > 0;
}

KiltNode *
kilt_ids_reader (KiltModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    if (reads_ids (model, kilt_model_node (model, i)))
      return kilt_model_node (model, i);
  return NULL;
}

gboolean
kilt_ids_preprocess (KiltModel *model, KiltPreprocess asked, KiltPreprocess *use, GError **error)
{
  KiltNode *reader = kilt_ids_reader (model);

  *use = asked;
  if (reader == NULL)
    return TRUE;
  if (asked == KILT_PREPROCESS_STANDARD)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "model %s: standardising the data (--standardize, or the Data page's "
                   "Standardise per channel) would change the ids that layer %s (Embedding) "
                   "reads; scale instead (ids are then read as written)",
                   model->name, reader->name);
      return FALSE;
    }
  *use = KILT_PREPROCESS_RAW;
  return TRUE;
}

static gboolean
check_split (KiltModel *model, const KiltDataset *data, KiltSplitKind kind, GError **error)
{
  const KiltSplit *split = kilt_dataset_get_split ((KiltDataset *)data, kind);
  gsize ss = kilt_dataset_sample_size (data);

  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    {
      const KiltNode *node = kilt_model_node (model, i);
      guint rows = node->cfg.input_dim;
      if (!reads_ids (model, node))
        continue;
      for (gsize s = 0; s < split->n; s++)
        for (gsize j = 0; j < ss; j++)
          {
            double v = split->u8 ? split->u8[s * ss + j] : split->f32[s * ss + j];
            if (v >= 0 && v < rows && v == floor (v))
              continue;
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                         "data set %s: sample %" G_GSIZE_FORMAT " of the %s split holds %.9g at "
                         "feature %" G_GSIZE_FORMAT " (counting from 0); layer %s (Embedding) "
                         "takes whole-number ids from 0 to %u (input_dim %u)",
                         data->name ? data->name : "data", s, kilt_split_kind_name (kind), v, j,
                         node->name, rows - 1, rows);
            return FALSE;
          }
    }
  return TRUE;
}

gboolean
kilt_ids_check_data (KiltModel *model, const KiltDataset *data, GError **error)
{
  KiltNode *reader = kilt_ids_reader (model);

  g_return_val_if_fail (data != NULL, FALSE);
  if (reader == NULL)
    return TRUE;
  if (data->type == KILT_SAMPLE_F32 && data->feature_mean)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s: its features were standardised when it was loaded, which "
                   "changed the ids that layer %s (Embedding) reads; load it with its values as "
                   "they are (kilt-cli train does so for a model that starts with an Embedding)",
                   data->name ? data->name : "data", reader->name);
      return FALSE;
    }
  return check_split (model, data, KILT_SPLIT_TRAIN, error)
         && check_split (model, data, KILT_SPLIT_VAL, error)
         && check_split (model, data, KILT_SPLIT_TEST, error);
}
