/* kilt-cli's transfer-learning options: --unfreeze-all, --freeze-until and --replace-head. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-cli.h"
#include "kilt-error.h"
#include "kilt-transfer.h"

#include <stdio.h>

gboolean
kilt_cli_transfer (KiltCliCommon *c, const KiltDataset *ds, KiltModel *model, GError **error)
{
  guint n_out = kilt_model_n_outputs (model);

  if (c->unfreeze_all)
    kilt_transfer_unfreeze_all (model);
  if (c->freeze_until && !kilt_transfer_freeze_until (model, c->freeze_until, error))
    return FALSE;
  if (!c->replace_head)
    return TRUE;
  if (ds == NULL || ds->n_classes == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--replace-head sizes the new head to the data set's classes: give --data "
                   "with labelled classes%s",
                   ds ? "" : " (kilt-cli summary: and --with-data)");
      return FALSE;
    }
  if (n_out == ds->n_classes)
    {
      fprintf (stderr,
               "kilt-cli: note: model %s already has %u outputs, one per class; its head is "
               "kept\n",
               model->name, n_out);
      return TRUE;
    }
  if (!kilt_transfer_replace_head (model, ds->n_classes, (guint32)c->seed, error))
    return FALSE;
  fprintf (stderr,
           "kilt-cli: note: model %s: its %u-output head is replaced by a new Dense \"%s\" of %u "
           "classes (softmax, Glorot-uniform)\n",
           model->name, n_out, kilt_model_output (model)->name, ds->n_classes);
  return TRUE;
}
