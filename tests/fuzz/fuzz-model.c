/* libFuzzer target: model files, as Keras to_json () text and as Kilt's own JSON. A model that
 * loads must also write itself out and load back as the same structure. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-keras.h"
#include "kilt-model-json.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static void
round_trip (KiltModel *model)
{
  g_autofree char *json = kilt_model_to_json (model);
  g_autoptr (GError) error = NULL;
  KiltModel *back = kilt_model_load_json_data (json, -1, "round trip", &error);

  /* Names come from the file; what Kilt writes must still be UTF-8, which json-glib requires. */
  if (!g_utf8_validate (json, -1, NULL) || !g_utf8_validate (model->name, -1, NULL))
    {
      g_printerr ("a loaded model wrote text that is not UTF-8\n");
      __builtin_trap ();
    }
  if (back == NULL)
    {
      g_printerr ("a loaded model did not load back: %s\n%s\n", error->message, json);
      __builtin_trap ();
    }
  if (kilt_model_hash (back) != kilt_model_hash (model) || back->n_params != model->n_params)
    {
      g_printerr ("a model changed on its way through JSON:\n%s\n", json);
      __builtin_trap ();
    }
  kilt_model_flops (back);
  kilt_model_free (back);
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *notes = NULL;
  KiltModel *model;

  model = kilt_keras_load_data ((const char *)data, size, "fuzz.json",
                                KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  if (model)
    {
      round_trip (model);
      kilt_model_free (model);
    }
  else
    g_assert (error != NULL && error->message[0] && g_utf8_validate (error->message, -1, NULL));
  g_clear_error (&error);
  model = kilt_model_load_json_data ((const char *)data, size, "fuzz.json", &error);
  if (model)
    {
      round_trip (model);
      kilt_model_free (model);
    }
  else
    g_assert (error != NULL && error->message[0] && g_utf8_validate (error->message, -1, NULL));
  return 0;
}
