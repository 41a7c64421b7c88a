/* Named training recipes: a model preset and the training settings that go with it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-trainer.h"

G_BEGIN_DECLS

typedef struct
{
  const char *name;
  const char *description;
  const char *preset; /* the model preset it trains */
  /* Everything but the device, the data and the paths: batch, epochs, optimizer, schedule,
   * label smoothing, augmentation, test-time augmentation, preprocessing. */
  KiltTrainConfig config;
} KiltRecipe;

/* The recipes' names ("airbench94"), NULL-terminated; g_strfreev them. */
char **kilt_recipe_list (void);

/* Fills @out with the recipe @name (its strings are static); FALSE with an error listing the
 * recipes when there is none of that name. */
gboolean kilt_recipe_get (const char *name, KiltRecipe *out, GError **error);

G_END_DECLS
