/* kilt-cli eval: a checkpoint's loss and accuracy on a data set's test split. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"

#include <stdio.h>

int
kilt_cli_eval (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("- evaluate a checkpoint");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  KiltTrainConfig cfg = { 0 };
  KiltDataset *ds = NULL;
  KiltModel *model = NULL;
  double loss = 0, acc = 0;
  int rc = 1;

  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_set_summary (oc, "Give the same --model and --data as for training, and "
                                    "--checkpoint FILE.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error)
      || !kilt_cli_train_config (&c, &cfg, &error) || !(ds = kilt_cli_load_data (&c, &error))
      || !(model = kilt_cli_load_model (&c, ds, &error))
      || !kilt_trainer_evaluate (model, ds, &cfg, &loss, &acc, &error))
    fprintf (stderr, "kilt-cli eval: %s\n", error->message);
  else
    {
      if (c.json)
        printf ("{\"loss\": %.6g, \"accuracy\": %.6g, \"samples\": %zu}\n", loss, acc,
                ds->test.n ? ds->test.n : ds->val.n);
      else
        printf ("Test loss %.4f, accuracy %.4f on %zu samples of %s\n", loss, acc,
                ds->test.n ? ds->test.n : ds->val.n, ds->name);
      rc = 0;
    }
  kilt_model_free (model);
  kilt_dataset_free (ds);
  kilt_train_config_clear (&cfg);
  kilt_cli_common_clear (&c);
  return rc;
}
